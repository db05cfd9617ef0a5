import { createOp, instanceIdOf, type Op, type OpKind } from '../src/index.ts';
import { FORMPACK_ID, instanceBody, key, memStore, nodeBody, rng } from './helpers.ts';

/**
 * A random but valid op history: a few nodes and developers acting concurrently (deps are random
 * subsets of earlier ops, not always the heads), with clashing timestamps, equivocations and
 * competing address allocations. Every op is checked by applying it to a generator store.
 */
export function randomHistory(seed: number, count: number): { ops: Op[]; digest: string } {
  const r = rng(seed);
  const nodes = [key(100), key(101), key(102)];
  const devs = [key(200), key(201)];
  const store = memStore();
  const ops: Op[] = [];
  const instances: Array<{ id: string; create: string; owner: string }> = [];
  const claims = new Map<string, string>(); // `${instanceId}/${node}` -> claim hash
  const regs = new Map<string, string>();
  const pickDeps = (): string[] => {
    if (ops.length === 0 || r.next() < 0.05) return [];
    if (r.next() < 0.5) return store.heads();
    const n = 1 + r.int(3);
    return Array.from({ length: n }, () => (r.pick(ops) as Op).hash);
  };
  const ts = () => 1_000 + r.int(40); // few distinct values: many LWW ties broken by hash
  let attempts = 0;
  while (ops.length < count && attempts++ < count * 20) {
    const roll = r.int(13);
    let op: Op | undefined;
    const deps = pickDeps();
    if (roll === 0) {
      const n = r.pick(nodes);
      op = createOp(n, 'node.register', nodeBody(r.int(5)), deps, ts());
    } else if (roll === 1) {
      op = createOp(r.pick(nodes), 'node.update', { endpoint: `127.0.0.1:${r.int(9000)}` }, deps, ts());
    } else if (roll === 2) {
      op = createOp(r.pick(nodes), 'node.heartbeat', { status: r.pick(['healthy', 'degraded'] as const) }, deps, ts());
    } else if (roll === 3) {
      op = createOp(r.pick([...nodes, ...devs]), 'account.update', { name: `n${r.int(5)}` }, deps, ts());
    } else if (roll === 4) {
      const d = r.pick(devs);
      op = createOp(
        d,
        'formpack.publish',
        {
          id: FORMPACK_ID.slice(0, 62) + String(r.int(3)).padStart(2, '0'),
          name: 'p',
          owner: d.address,
          sha256s: { disk: FORMPACK_ID },
          size: r.int(1000),
        },
        deps,
        ts(),
      );
    } else if (roll === 5) {
      const d = r.pick(devs);
      const t = ts();
      const name = r.pick(['web', 'db', 'api']);
      const body = { ...instanceBody(name), replicas: 1 + r.int(2), id: instanceIdOf(d.publicKey, name, t) };
      op = createOp(d, 'instance.create', body, deps, t);
    } else if (instances.length && roll <= 9) {
      const inst = r.pick(instances);
      const owner = [...devs].find((d) => d.publicKey === inst.owner)!;
      const n = r.pick(nodes);
      const withCreate = [...deps, inst.create];
      const kinds: Array<[OpKind, Record<string, unknown>, typeof owner]> = [
        ['instance.update', { instanceId: inst.id, replicas: 1 + r.int(3) }, owner],
        ['instance.delete', { instanceId: inst.id }, owner],
        ['instance.claim', { instanceId: inst.id, node: n.publicKey }, n],
        [
          'instance.status',
          {
            instanceId: inst.id,
            node: n.publicKey,
            state: r.pick(['running', 'failed'] as const),
            formnetIp: `10.128.0.${r.int(4)}`,
            revision: r.int(3),
          },
          n,
        ],
        ['instance.commit', { instanceId: inst.id, revision: r.int(4), hash: FORMPACK_ID }, owner],
        ['dns.record', { name: `alias${r.int(3)}.example`, instanceId: inst.id }, owner],
      ];
      const [kind, body, author] = kinds[r.int(roll === 9 ? kinds.length : 5)]!;
      const claim = claims.get(`${inst.id}/${n.publicKey}`);
      if (kind === 'instance.commit' && claim && r.next() < 0.5) {
        op = createOp(n, kind, body, [...deps, claim], ts());
      } else {
        op = createOp(author, kind, body, kind === 'instance.status' ? deps : withCreate, ts());
      }
    } else if (roll === 10) {
      const n = r.pick(nodes);
      const reg = regs.get(n.publicKey);
      const peer = reg && r.next() < 0.5 ? r.pick(devs).publicKey : n.publicKey;
      op = createOp(
        n,
        'formnet.allocate',
        { address: `10.128.9.${r.int(6)}`, peer, kind: peer === n.publicKey ? 'node' : 'developer' },
        peer === n.publicKey ? deps : [...deps, reg!],
        ts(),
      );
    } else if (roll === 11) {
      op = createOp(
        r.pick([...nodes, ...devs]),
        'formnet.peer',
        { wgPublicKey: nodeBody(0).wgPublicKey, allowedIps: [`10.128.${r.int(3)}.0/24`] },
        deps,
        ts(),
      );
    } else if (roll === 12) {
      op = createOp(
        r.pick(devs),
        'dns.record',
        { name: `static${r.int(3)}.example`, addresses: [`10.128.7.${r.int(9)}`] },
        deps,
        ts(),
      );
    }
    if (!op) continue;
    const res = store.applyBatch([op]);
    if (res.accepted.length !== 1) throw new Error(`generator made an invalid op: ${JSON.stringify(res.rejected)}`);
    ops.push(op);
    if (op.kind === 'instance.create') instances.push({ id: op.body.id as string, create: op.hash, owner: op.author });
    if (op.kind === 'instance.claim') claims.set(`${op.body.instanceId}/${op.author}`, op.hash);
    if (op.kind === 'node.register' && !regs.has(op.author)) regs.set(op.author, op.hash);
  }
  const digest = store.digest();
  store.close();
  return { ops, digest };
}
