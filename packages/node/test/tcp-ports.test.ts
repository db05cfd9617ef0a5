// Plain TCP port mappings from "the internet" (issue 19), in three namespaces this test makes (prefix fdi):
//   fdi<n>-ting: the node — public 198.51.100.11, formnet 10.129.1.1; its ingress and port granter run
//                over a real state store (fixtures/tcp-node.ts), with a second granting node in-process
//   fdi<n>-tbe:  the replicas — 10.129.1.2 (alice's `db`) and 10.129.1.3 (mallory's `evil`), each a
//                TCP server on 5432 answering "<name>:<what it got>"
//   fdi<n>-tvis: the visitor at 198.51.100.200, which reaches only the public address
// A claim becomes a listener once two nodes granted it; the visitor's bytes reach the holder's replica.
// Restricted ports, the quota, another owner's claim (through the API and backdated past it), this
// node's own ports, and the hand-over after a release are each checked from the visitor's side.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns } from '@formation/net';
import { netnsPrograms, vethLink } from './fixtures/netns-link.ts';

const sh = promisify(execFile);
const N = process.pid % 10000;
const NS = { ing: `fdi${N}-ting`, be: `fdi${N}-tbe`, vis: `fdi${N}-tvis` };
const PUBLIC = '198.51.100.11';
const FIXTURES = join(import.meta.dirname, 'fixtures');
const P = 50_000 + (N % 1000); // this helper's port range
const RESERVED = P + 9; // plays one of the node's own ports (an API under a port offset)
const skip = requireOrSkip('TCP port mapping namespace test', { root: true, programs: ['ip'] });

const children: ChildProcess[] = [];
let node: ChildProcess;
const answers: Array<Record<string, unknown>> = [];

const echo = (ip: string, name: string) =>
  `require('node:net').createServer((c) => c.on('data', (d) => c.end('${name}:' + d))).listen(5432, '${ip}', () => console.log('ready'))`;

const { startIn } = netnsPrograms(children);

/** Send one command to the node fixture; its answer. */
async function command(c: Record<string, unknown>): Promise<Record<string, unknown>> {
  const n = answers.length;
  node.stdin?.write(`${JSON.stringify(c)}\n`);
  await until('the node fixture to answer', () => answers.length > n, 10_000);
  return answers.at(-1) as Record<string, unknown>;
}

/** The visitor connects to the public address at `port`, sends "hi": the reply, '' when closed, or 'refused'. */
async function visit(port: number): Promise<string> {
  const script = `const c = require('node:net').connect(${port}, '${PUBLIC}'); let got = '';
    c.on('connect', () => c.write('hi')); c.on('data', (d) => (got += d));
    c.on('error', (e) => { process.stdout.write(e.code === 'ECONNREFUSED' ? 'refused' : 'error ' + e.code); process.exit(0); });
    c.on('close', () => { process.stdout.write(got); process.exit(0); });
    setTimeout(() => { process.stdout.write('timeout'); process.exit(0); }, 4000);`;
  const { stdout } = await sh('ip', ['netns', 'exec', NS.vis, process.execPath, '-e', script]);
  return stdout;
}

const portState = (a: Record<string, unknown>, port: number, owner: string) =>
  (a.ports as Array<{ port: number; owner: string; state: string }>).find((p) => p.port === port && p.owner === owner)
    ?.state;

describe('TCP port mappings: visitor → 198.51.100.11:<port> → the holder’s replica over formnet', { skip }, () => {
  before(async () => {
    for (const ns of Object.values(NS)) await createNetns(ns);
    await vethLink(
      { dev: `fdi${N}tv`, ns: NS.vis, addrs: ['198.51.100.200/24'] },
      { dev: `fdi${N}ti`, ns: NS.ing, addrs: [`${PUBLIC}/24`] },
    );
    await vethLink(
      { dev: `fdi${N}tf`, ns: NS.ing, addrs: ['10.129.1.1/24'] },
      { dev: `fdi${N}tb`, ns: NS.be, addrs: ['10.129.1.2/24', '10.129.1.3/24'] },
    );
    await startIn(NS.be, ['-e', echo('10.129.1.2', 'db')], () => {});
    await startIn(NS.be, ['-e', echo('10.129.1.3', 'evil')], () => {});
    const cfg = { host: PUBLIC, reserved: [RESERVED] };
    node = await startIn(NS.ing, [join(FIXTURES, 'tcp-node.ts'), JSON.stringify(cfg)], (l) =>
      answers.push(JSON.parse(l)),
    );
  });

  after(async () => {
    await stopChildren(children);
    for (const ns of Object.values(NS)) await deleteNetns(ns);
  });

  test('a claim granted by two nodes becomes a listener; the visitor reaches alice’s db; other ports are closed', async () => {
    assert.equal(await visit(P), 'refused', 'nothing listens before the claim');
    const a = await command({ do: 'claim', who: 'alice', instance: 'db', port: P, target: 5432 });
    assert.equal(portState(a, P, 'alice'), 'active');
    assert.deepEqual(a.listening, [P]);
    assert.equal(await visit(P), 'db:hi');
    assert.equal(await visit(P + 1), 'refused');
  });

  test('refused with codes: node service ports, below 1024, another owner’s held port; the quota', async () => {
    for (const port of [22, 443, 3004, 51820]) {
      const r = await command({ do: 'claim', who: 'mallory', instance: 'evil', port, target: 22 });
      assert.equal(r.ok, false);
      assert.equal(r.code, 'STATE_OP_INVALID', String(port));
    }
    const taken = await command({ do: 'claim', who: 'mallory', instance: 'evil', port: P, target: 5432 });
    assert.equal(taken.code, 'CONFLICT');
    assert.match(taken.message as string, /another owner's instance holds it/);
    for (let i = 1; i <= 3; i++)
      assert.equal((await command({ do: 'claim', who: 'alice', instance: 'db', port: P + i, target: 5432 })).ok, true);
    const over = await command({ do: 'claim', who: 'alice', instance: 'db', port: P + 4, target: 5432 });
    assert.equal(over.code, 'CONFLICT');
    assert.match(over.message as string, /already has 4 port claims/);
    assert.equal(await visit(P + 3), 'db:hi');
    for (let i = 1; i <= 3; i++) await command({ do: 'release', who: 'alice', port: P + i });
    assert.equal(await visit(P + 3), 'refused', 'a released port is closed');
  });

  test('attack: mallory’s claim backdated an hour before alice’s, forced past the API, gets no grants and no traffic', async () => {
    const r = await command({ do: 'backdated', who: 'mallory', instance: 'evil', port: P, target: 5432 });
    assert.equal(r.ok, true, 'the op itself is valid');
    assert.equal(portState(r, P, 'mallory'), 'pending');
    assert.equal(portState(r, P, 'alice'), 'active');
    for (let i = 0; i < 3; i++) assert.equal(await visit(P), 'db:hi');
  });

  test('this node’s own port is never opened, even when the state grants it; said in tcpProblems', async () => {
    const r = await command({ do: 'claim', who: 'alice', instance: 'db', port: RESERVED, target: 5432 });
    assert.equal(portState(r, RESERVED, 'alice'), 'active');
    assert.ok(!(r.listening as number[]).includes(RESERVED));
    assert.deepEqual(r.problems, [{ port: RESERVED, error: 'one of this node’s own ports' }]);
    assert.equal(await visit(RESERVED), 'refused');
    await command({ do: 'release', who: 'alice', port: RESERVED });
  });

  test('alice releases: the port goes to the next claim by op order (mallory’s), and the visitor reaches evil', async () => {
    const r = await command({ do: 'release', who: 'alice', port: P });
    await until(
      'mallory’s claim granted',
      async () => portState(await command({ do: 'report' }), P, 'mallory') === 'active',
      10_000,
    );
    assert.equal(portState(r, P, 'alice'), undefined);
    await until('the listener to route to evil', async () => (await visit(P)) === 'evil:hi', 10_000);
  });
});
