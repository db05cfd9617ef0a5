import { createDelegation } from '@formation/identity';
import { createOp, instanceIdOf, type Op, type OpKind } from '../src/index.ts';
import { FORMPACK_ID, instanceBody, key, memStore, nodeBody, rng, wgKey } from './helpers.ts';

/**
 * A random but valid op history: a few nodes and developers acting concurrently (deps are random
 * subsets of earlier ops, not always the heads), with clashing timestamps, equivocations and
 * competing address allocations, node admissions and removals (odd seeds run an `admins` network,
 * even seeds a legacy one), delegated ops and revocations. Every op is checked by applying it to a
 * generator store.
 */
export function randomHistory(seed: number, count: number): { ops: Op[]; digest: string; genesis?: string } {
  const r = rng(seed);
  const nodes = [key(100), key(101), key(102)];
  const devs = [key(200), key(201)];
  const admin = key(300);
  const session = key(301);
  const delegation = createDelegation(devs[0]!, session.publicKey, 1_000_000, 0);
  const store = memStore();
  const ops: Op[] = [];
  let genesis: string | undefined;
  if (seed % 2 === 1) {
    const init = createOp(
      admin,
      'network.init',
      {
        name: `n${seed}`,
        admission: 'admins',
        admins: [admin.publicKey],
        quotas: { instancesPerAccount: 4, replicasPerAccount: 6 },
      },
      [],
      1_000,
    );
    store.submit(init);
    ops.push(init);
    genesis = init.hash;
  }
  const instances: Array<{ id: string; create: string; owner: string }> = [];
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
    const roll = r.int(genesis ? 16 : 15);
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
      op = createOp(author, kind, body, kind === 'instance.status' ? deps : withCreate, ts());
    } else if (roll === 10) {
      const i = r.int(nodes.length);
      const n = nodes[i]!;
      const reg = regs.get(n.publicKey);
      if (!reg) continue;
      const peer = r.next() < 0.5 ? r.pick(devs).publicKey : n.publicKey;
      const inst = instances.length && r.next() < 0.3 ? r.pick(instances) : undefined;
      const body = inst
        ? { address: `10.129.${r.int(5)}.${2 + r.int(3)}`, peer: inst.id, kind: 'instance' }
        : { address: `10.128.9.${r.int(6)}`, peer, kind: peer === n.publicKey ? 'node' : 'developer' };
      op = createOp(n, 'formnet.allocate', body, [...deps, reg], ts());
    } else if (roll === 13) {
      // Delegated ops by a session of devs[0], and its revocation.
      const own = instances.filter((x) => x.owner === devs[0]!.publicKey);
      if (r.next() < 0.2) op = createOp(devs[0]!, 'delegation.revoke', { delegate: session.publicKey }, deps, ts());
      else if (own.length) {
        const inst = r.pick(own);
        const body = { instanceId: inst.id, replicas: 1 + r.int(3), onBehalfOf: delegation };
        op = createOp(session, 'instance.update', body, [...deps, inst.create], ts());
      }
    } else if (roll === 14) {
      op = createOp(r.pick(nodes), 'node.heartbeat', { status: 'healthy' }, deps, ts());
    } else if (roll === 15 && genesis) {
      const n = r.pick(nodes);
      op =
        r.next() < 0.75
          ? createOp(
              admin,
              'node.admit',
              { node: n.publicKey, formnetRange: `10.129.${r.int(5)}.0/24` },
              [...deps, genesis],
              ts(),
            )
          : createOp(admin, 'node.remove', { node: n.publicKey }, [...deps, genesis], ts());
    } else if (roll === 11) {
      op = createOp(
        r.pick([...nodes, ...devs]),
        'formnet.peer',
        {
          wgPublicKey: r.pick([nodeBody(0).wgPublicKey, nodeBody(1).wgPublicKey, wgKey(9), wgKey(10)]),
          ...(r.next() < 0.5 ? { endpoint: `127.0.0.1:${51820 + r.int(3)}` } : {}),
          allowedIps: [r.next() < 0.5 ? `10.128.9.${r.int(6)}/32` : `10.129.${r.int(3)}.0/24`],
        },
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
    if (op.kind === 'node.register' && !regs.has(op.author)) regs.set(op.author, op.hash);
  }
  const digest = store.digest();
  store.close();
  return { ops, digest, genesis };
}
