// The ingress dials formnet from the node's namespace (issue 19), in namespaces this test makes (fh3<n>…):
//   fh3<n>r: plays the host's root namespace, where formationd runs with `--netns fh3<n>n`: the public
//            address 198.51.100.11, and a "default route" for formnet (10.128.0.0/9 to a dead-end veth)
//            with an nft counter on everything it sends to formnet — what a leak would take
//   fh3<n>n: the node's namespace: the replica 10.129.0.2 (HTTP app + /health on 8080, a TCP service
//            that speaks first on 5432)
//   fh3<n>v: the visitor at 198.51.100.200, which reaches only the public address
// The node's ingress (fixtures/netns-ingress-node.ts: startNodeIngress with `netns`, as extra-services
// passes it) proxies HTTP and a TCP mapping and runs its health checks through a dial helper inside
// fh3<n>n; the counter in fh3<n>r stays at 0 (and counts a direct dial, the control). Then the dialer
// itself: a server that speaks first loses nothing, half-close, refusals, a killed helper restarts;
// dial time and throughput via the helper vs a direct dial from inside the namespace.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns, run } from '@formation/net';
import { netnsDialer } from '../src/netns-dialer.ts';
import { leakedPackets, leakTrap, netnsPrograms, vethLink } from './fixtures/netns-link.ts';

const sh = promisify(execFile);
const N = process.pid % 1000;
const NS = { root: `fh3${N}r`, node: `fh3${N}n`, vis: `fh3${N}v` };
const PUBLIC = '198.51.100.11';
const HTTP_PORT = 4580;
const TCP_PORT = 4590;
const REPLICA = '10.129.0.2';
const skip = requireOrSkip('ingress dials in the node namespace', { root: true, programs: ['ip', 'nft', 'curl'] });

const children: ChildProcess[] = [];
const lines: Array<Record<string, unknown>> = [];

/** The replica's services, in the node namespace. */
const REPLICA_JS = `const net = require('node:net'); let health = 0;
require('node:http').createServer((q, r) => { if (q.url === '/health') health++;
  r.end(q.url === '/count' ? String(health) : 'hello from ' + q.headers.host + ' via ' + q.socket.remoteAddress); })
  .listen(8080, '${REPLICA}', () => console.log('ready'));
net.createServer((c) => { c.on('error', () => {}); c.write('banner\\n'); c.on('data', (d) => c.write('db:' + d)); c.on('end', () => c.end('bye')); }).listen(5432, '${REPLICA}');
net.createServer((c) => { c.on('error', () => {}); const b = Buffer.alloc(1 << 20); let n = 0;
  const w = () => { while (n < 64) { n++; if (!c.write(b)) return c.once('drain', w); } c.end(); }; w(); }).listen(5433, '${REPLICA}');
net.createServer((c) => { c.on('error', () => {}); c.end(); }).listen(5434, '${REPLICA}');`;

const { startIn } = netnsPrograms(children);

/** Packets the "root" namespace sent to formnet (the nft counter). */
const leaked = (): Promise<number> => leakedPackets(NS.root);

async function visitorCurl(url: string, host: string): Promise<string> {
  const { stdout } = await sh('ip', [
    'netns',
    'exec',
    NS.vis,
    'curl',
    '-sS',
    '--max-time',
    '5',
    '-H',
    `Host: ${host}`,
    url,
  ]);
  return stdout;
}

async function visitorTcp(port: number, send: string): Promise<string> {
  const script = `const c = require('node:net').connect(${port}, '${PUBLIC}'); let got = '';
    let sent = false;
    c.on('data', (d) => { got += d; if (!sent && got.includes('banner')) { sent = true; c.end('${send}'); } });
    c.on('error', (e) => { process.stdout.write('error ' + e.code); process.exit(0); });
    c.on('close', () => { process.stdout.write(got); process.exit(0); });
    setTimeout(() => { process.stdout.write('timeout:' + got); process.exit(0); }, 4000);`;
  const { stdout } = await sh('ip', ['netns', 'exec', NS.vis, process.execPath, '-e', script]);
  return stdout;
}

describe('formationd outside its node namespace: the ingress dials formnet from inside it', { skip }, () => {
  before(async () => {
    for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
    for (const ns of Object.values(NS)) await createNetns(ns);
    await vethLink(
      { dev: `fh3${N}a`, ns: NS.vis, addrs: ['198.51.100.200/24'] },
      { dev: `fh3${N}b`, ns: NS.root, addrs: [`${PUBLIC}/24`] },
    );
    // The way out a leak would take: formnet routed to a link that goes nowhere, every packet counted.
    await leakTrap(NS.root, [`fh3${N}d`, `fh3${N}e`]);
    // The node namespace: the replica's address (formationd would put it behind its bridge).
    await run('ip', ['addr', 'add', `${REPLICA}/32`, 'dev', 'lo'], { netns: NS.node });
    await startIn(NS.node, ['-e', REPLICA_JS], () => {});
    const cfg = { host: PUBLIC, httpPort: HTTP_PORT, tcpPort: TCP_PORT, netns: NS.node };
    await startIn(NS.root, [join(import.meta.dirname, 'fixtures', 'netns-ingress-node.ts'), JSON.stringify(cfg)], (l) =>
      lines.push(JSON.parse(l)),
    );
  });

  after(async () => {
    await stopChildren(children);
    for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
  });

  test('health checks pass, the visitor gets the app over HTTP and a TCP mapping; nothing left for formnet from "root"', async () => {
    // The fixture's first line comes once the prober found the replica healthy and the TCP port listens.
    assert.deepEqual(lines[0], { backends: 1, listening: [TCP_PORT], proxied: 0, connectFailures: 0, refused: {} });
    for (let i = 0; i < 20; i++) {
      assert.equal(
        await visitorCurl(`http://${PUBLIC}:${HTTP_PORT}/`, 'web.fh3.test'),
        `hello from web.fh3.test via ${REPLICA}`,
      );
    }
    assert.equal(await visitorTcp(TCP_PORT, 'hi'), 'banner\ndb:hibye');
    const { stdout: count } = await sh('ip', ['netns', 'exec', NS.node, 'curl', '-sS', `http://${REPLICA}:8080/count`]);
    assert.ok(Number(count) >= 1, `the replica saw ${count} health checks`);
    assert.equal(await leaked(), 0, 'no packet to formnet from the "root" namespace');
    // The control: a dial from "root" itself does take the leak's way, and is counted.
    await sh('ip', ['netns', 'exec', NS.root, 'curl', '-sS', '--max-time', '1', `http://${REPLICA}:8080/`]).catch(
      () => undefined,
    );
    assert.ok((await leaked()) > 0, 'the counter sees a direct dial from "root"');
  });

  test('the dialer: speaks-first server, half-close, refusal, bad target, a killed helper restarts; cost measured', async (t) => {
    const d = netnsDialer(NS.node);
    try {
      assert.equal(d.helper, true);
      const s = await d.dial(REPLICA, 5432, { timeoutMs: 2000 });
      // The banner sent at accept, before anyone read, arrives intact after the hand-over.
      await new Promise((r) => setTimeout(r, 100));
      let got = '';
      s.on('data', (x) => {
        got += x;
      });
      s.resume();
      s.end('x');
      await new Promise((r) => s.once('close', r));
      assert.equal(got, 'banner\ndb:xbye', 'half-closed: the server still answered after our end');
      await assert.rejects(d.dial(REPLICA, 5999, { timeoutMs: 2000 }), { code: 'ECONNREFUSED' });
      await assert.rejects(d.dial('127.0.0.1; rm -rf /', 1, { timeoutMs: 2000 }), { code: 'EINVAL' });
      // The helper killed under it: pending dials fail, the next one starts a new helper.
      const helperPid = d.pid() as number;
      const inNode = (await sh('ip', ['netns', 'pids', NS.node])).stdout.trim().split('\n').map(Number);
      assert.ok(inNode.includes(helperPid), 'the helper runs in the node namespace');
      process.kill(helperPid, 'SIGKILL');
      await until(
        'a dial after the helper was killed',
        async () => {
          (await d.dial(REPLICA, 5434, { timeoutMs: 2000 })).destroy();
          return true;
        },
        10_000,
        100,
      );
      // Cost: dials per second and bytes per second, via the helper vs from inside the namespace.
      const DIALS = 200;
      let t0 = performance.now();
      for (let i = 0; i < DIALS; i++) (await d.dial(REPLICA, 5434, { timeoutMs: 2000 })).destroy();
      const viaMs = (performance.now() - t0) / DIALS;
      const measureInside = `const net = require('node:net'); (async () => { let t0 = performance.now();
        for (let i = 0; i < ${DIALS}; i++) await new Promise((r, j) => { const s = net.connect(5434, '${REPLICA}'); s.once('connect', () => { s.destroy(); r(); }); s.once('error', j); });
        const dial = (performance.now() - t0) / ${DIALS}; t0 = performance.now(); let n = 0;
        const s = net.connect(5433, '${REPLICA}'); s.on('data', (b) => (n += b.length));
        s.on('end', () => console.log(JSON.stringify({ dial, mibs: n / 1048576 / ((performance.now() - t0) / 1000) }))); })();`;
      const inside = JSON.parse(
        (await sh('ip', ['netns', 'exec', NS.node, process.execPath, '-e', measureInside])).stdout,
      );
      t0 = performance.now();
      const big = await d.dial(REPLICA, 5433, { timeoutMs: 2000 });
      let bytes = 0;
      big.on('data', (b: Buffer) => {
        bytes += b.length;
      });
      big.resume();
      await new Promise((r) => big.once('end', r));
      const viaMibs = bytes / 1048576 / ((performance.now() - t0) / 1000);
      assert.equal(bytes, 64 * 1048576);
      t.diagnostic(
        `dial: ${viaMs.toFixed(2)} ms via the helper vs ${inside.dial.toFixed(2)} ms inside; ` +
          `64 MiB: ${viaMibs.toFixed(0)} MiB/s via the helper vs ${inside.mibs.toFixed(0)} MiB/s inside`,
      );
    } finally {
      d.close();
    }
  });
});
