// The world devnet (issue 18): node hosts with public addresses on an "internet" bridge, each running
// its formationd inside; a visitor HTTP server; a laptop behind a NAT router. Nothing of it is linked
// to the root namespace. One 2-node world shared by the file (prefix fdw).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isFormError } from '@formation/interface';
import { requireOrSkip, tempDevnet, until } from '@formation/interface/testing';
import type { NodeInfo } from '../src/config.ts';
import { pidAlive } from '../src/daemon-files.ts';
import {
  type DevnetNode,
  type DevnetState,
  devnetDown,
  devnetExecEnv,
  devnetExecTarget,
  devnetStatus,
  devnetUp,
  publicMultiaddr,
  readVisitorLog,
} from '../src/devnet.ts';
import {
  inNetns,
  netnsList,
  netnsPids,
  routerNatRules,
  worldNamespaces,
  worldPlan,
  worldVethNames,
} from '../src/devnet-world.ts';

const run = promisify(execFile);
const PREFIX = 'fdw';
const FORM = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isFormError(err) ? (err as { code: string }).code : `not a FormError: ${(err as Error).message}`;
  }
  return 'no error';
}

describe('world devnet plan (pure)', () => {
  it('gives every namespace its public address, the laptop a LAN behind the router', () => {
    const p = worldPlan('fdn', 3);
    assert.deepEqual(
      p.hosts.map((h) => [h.netns, h.ip]),
      [
        ['fdn1', '198.51.100.11'],
        ['fdn2', '198.51.100.12'],
        ['fdn3', '198.51.100.13'],
      ],
    );
    assert.deepEqual(p.visitor, { netns: 'fdnvis', ip: '198.51.100.200', port: 80 });
    assert.deepEqual(p.router, { netns: 'fdnrtr', publicIp: '198.51.100.50', lanIp: '192.168.50.1' });
    assert.deepEqual(p.laptop, { netns: 'fdnlap', ip: '192.168.50.2', gateway: '192.168.50.1' });
    assert.equal(worldNamespaces(p).at(-1), 'fdnnet', 'the switch goes last');
    assert.match(routerNatRules(p), /ip saddr 192\.168\.50\.0\/24 oifname "eth0" masquerade/);
  });

  it('keeps every interface and namespace name under 16 characters at the longest prefix and 16 nodes', () => {
    const p = worldPlan('abcdefgh', 16);
    for (const name of [...worldNamespaces(p), ...worldVethNames(p)]) assert.ok(name.length <= 15, name);
    assert.equal(new Set(worldVethNames(p)).size, worldVethNames(p).length, 'temporary veth names are distinct');
  });

  it('refuses a bad prefix or node count with CLI_USAGE', () => {
    for (const bad of ['', '1abc', 'ABC', 'abcdefghi', 'a-b', 'a b'])
      assert.equal(
        code(() => worldPlan(bad, 2)),
        'CLI_USAGE',
        bad,
      );
    for (const n of [0, 17, 1.5, Number.NaN])
      assert.equal(
        code(() => worldPlan('fdn', n)),
        'CLI_USAGE',
        String(n),
      );
  });

  it('resolves exec targets: nodes, laptop (own FORM_HOME and form on PATH), visitor; refuses the rest', () => {
    const plan = worldPlan('fdn', 2);
    const s = {
      version: 1,
      dir: '/tmp/x',
      prefix: 'fdn',
      bridgeNetns: 'fdnnet',
      subnet: plan.internet.cidr,
      portBase: 0,
      createdAt: '',
      env: {},
      mode: 'world',
      nodes: plan.hosts.map((h) => ({
        name: `node${h.index}`,
        index: h.index,
        netns: h.netns,
        dataDir: `/tmp/x/node${h.index}`,
        portOffset: 0,
        underlayIp: h.ip,
        instanceCidr: `10.129.${h.index}.0/24`,
        pid: null,
        apiBase: 'http://127.0.0.1',
        publicAddress: h.ip,
      })),
      world: { plan, visitorPid: null, visitorLog: '/tmp/x/visitor/requests.log', laptopHome: '/tmp/x/laptop' },
    } satisfies DevnetState;
    assert.equal(devnetExecTarget(s, 'n2').netns, 'fdn2');
    assert.equal(devnetExecTarget(s, '1').netns, 'fdn1');
    const lap = devnetExecTarget(s, 'laptop', '/usr/bin');
    assert.equal(lap.netns, 'fdnlap');
    assert.equal(lap.env.FORM_HOME, '/tmp/x/laptop');
    assert.match(lap.env.PATH ?? '', /^\/tmp\/x\/laptop\/bin:/);
    // The caller's FORM_* (a port offset, another node, another home) never leak into the laptop.
    const env = devnetExecEnv(lap, {
      FORM_PORT_OFFSET: '1000',
      FORM_NODE: 'http://127.0.0.1',
      HOME: '/root',
      FORM_HOME: '/root/.form',
    });
    assert.deepEqual(
      [env.FORM_PORT_OFFSET, env.FORM_NODE, env.FORM_HOME, env.HOME],
      [undefined, undefined, '/tmp/x/laptop', '/root'],
    );
    assert.equal(devnetExecEnv(devnetExecTarget(s, 'n1'), { FORM_PORT_OFFSET: '7' }).FORM_PORT_OFFSET, '7');
    assert.equal(devnetExecTarget(s, 'visitor').netns, 'fdnvis');
    for (const bad of ['node3', 'root', '', '../fdn1'])
      assert.equal(
        code(() => devnetExecTarget(s, bad)),
        'NOT_FOUND',
      );
    const local = { ...s, mode: 'local' as const, world: undefined };
    assert.equal(
      code(() => devnetExecTarget(local, 'laptop')),
      'NOT_FOUND',
      'no laptop in local mode',
    );
  });
});

describe('world devnet join address (pure)', () => {
  const node = (p2p: string[]) =>
    ({
      name: 'node1',
      index: 1,
      netns: 'fdn1',
      dataDir: '/tmp/x/node1',
      portOffset: 0,
      underlayIp: '198.51.100.11',
      instanceCidr: '10.129.1.0/24',
      pid: 1,
      apiBase: 'http://127.0.0.1',
      publicAddress: '198.51.100.11',
      info: { p2p } as unknown as NodeInfo,
    }) satisfies DevnetNode;
  it('joins node 1 at its public multiaddr, never its loopback one', () => {
    const pub = '/ip4/198.51.100.11/tcp/3005/p2p/16Uiu2HAm';
    assert.equal(publicMultiaddr(node(['/ip4/127.0.0.1/tcp/3005/p2p/16Uiu2HAm', pub])), pub);
  });
  it('refuses with UNAVAILABLE when node 1 does not listen on its public address', () => {
    assert.equal(
      code(() => publicMultiaddr(node(['/ip4/127.0.0.1/tcp/3005/p2p/16Uiu2HAm']))),
      'UNAVAILABLE',
    );
    // A lookalike prefix (198.51.100.111) is not the address.
    assert.equal(
      code(() => publicMultiaddr(node(['/ip4/198.51.100.111/tcp/3005/p2p/x']))),
      'UNAVAILABLE',
    );
  });
});

describe('form devnet CLI usage (no root)', () => {
  it('refuses --port-base without --local (every world host uses the standard ports) and makes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'form-devnet-usage-'));
    try {
      const r = await form(['devnet', 'up', '--nodes', '2', '--port-base', '140', '--dir', join(dir, 'd')]);
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /Cannot use --port-base in a world devnet/);
      assert.match(r.out, /--local/);
      assert.deepEqual(readdirSync(dir), [], 'no devnet dir made');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const skip = requireOrSkip('world devnet test', {
  root: true,
  programs: ['ip', 'wg', 'wireguard-go', 'nft', 'curl', 'nc', 'ss'],
});

/** TCP connect from namespace `ns` (nc -z): true when something accepted. */
async function canConnect(ns: string, ip: string, port: number): Promise<boolean> {
  try {
    await run('ip', ['netns', 'exec', ns, 'nc', '-z', '-w', '2', ip, String(port)]);
    return true;
  } catch {
    return false;
  }
}

async function form(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FORM, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: `${stdout}${stderr}` });
    });
  });
}

describe('world devnet: 2 node hosts, a visitor, a laptop behind NAT', { skip }, () => {
  const devnet = tempDevnet(
    'form-devnet-world-',
    (dir) =>
      devnetUp({
        nodes: 2,
        dir,
        prefix: PREFIX,
        world: true,
        env: { FORM_HEARTBEAT_MS: '2000', FORM_LOG_LEVEL: 'info' },
        timeoutMs: 180_000,
      }),
    devnetDown,
  );
  let s: DevnetState;

  before(async () => {
    s = await devnet.up();
  });

  after(async () => {
    await devnet.down();
  });

  it('runs each formationd inside its host namespace; both converge to one digest (read inside each host)', async () => {
    for (const n of s.nodes) {
      assert.ok(n.pid, `${n.name} has a PID`);
      const ns = (await run('ip', ['netns', 'identify', String(n.pid)])).stdout.trim();
      assert.equal(ns, n.netns, `${n.name}'s formationd lives in ${n.netns}`);
      assert.equal(n.info?.publicAddress ?? n.publicAddress, `198.51.100.${10 + n.index}`);
    }
    const digest = await until(
      'one digest on both hosts',
      async () => {
        const rows = (await devnetStatus(s.dir)) ?? [];
        const d = new Set(rows.map((r) => r.digest));
        return rows.length === 2 && rows.every((r) => r.running && r.digest) && d.size === 1 ? rows[0]?.digest : null;
      },
      60_000,
      500,
    );
    assert.match(digest ?? '', /^[0-9a-f]{64}$/);
    const nodes = JSON.parse(await inNetns(`${PREFIX}2`, ['curl', '-sS', 'http://127.0.0.1:3004/nodes'])) as unknown[];
    assert.equal(nodes.length, 2, 'node 2 lists both nodes');
  });

  it('the laptop reaches a node only at its public address: not its loopback-only ports, not the root namespace', async () => {
    const lap = `${PREFIX}lap`;
    assert.ok(await canConnect(lap, '198.51.100.11', 3004), 'laptop -> node 1 state API port on its public address');
    // Ports node 1 serves on its loopback only (Redis, plain APIs …): reachable inside, never from the laptop.
    const listening = (await inNetns(`${PREFIX}1`, ['ss', '-Hltn'])).split('\n').filter(Boolean);
    const addrs = listening.map((l) => l.trim().split(/\s+/)[3] as string);
    const publicPorts = new Set(
      addrs
        .filter((a) => a.startsWith('198.51.100.11:') || a.startsWith('0.0.0.0:') || a.startsWith('*:'))
        .map((a) => a.split(':').pop()),
    );
    const loopOnly = [
      ...new Set(addrs.filter((a) => a.startsWith('127.0.0.1:')).map((a) => Number(a.split(':').pop()))),
    ].filter((p) => !publicPorts.has(String(p)));
    assert.ok(loopOnly.length > 0, `node 1 has loopback-only ports (${addrs.join(' ')})`);
    for (const port of loopOnly) {
      assert.ok(await canConnect(`${PREFIX}1`, '127.0.0.1', port), `control: ${port} answers inside node 1`);
      assert.equal(await canConnect(lap, '198.51.100.11', port), false, `laptop -> 198.51.100.11:${port}`);
    }
    // The root namespace: a listener on every address here answers locally, never from the laptop.
    const server: Server = createServer((c) => c.end());
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    try {
      const port = (server.address() as { port: number }).port;
      const rootIps = (
        JSON.parse((await run('ip', ['-j', '-4', 'addr', 'show'])).stdout) as Array<{
          addr_info: Array<{ local: string }>;
        }>
      ).flatMap((l) => l.addr_info.map((a) => a.local));
      assert.ok(rootIps.length > 0);
      for (const ip of rootIps) {
        if (ip.startsWith('127.')) {
          assert.equal(await canConnect(lap, ip, port), false, `laptop's ${ip} is its own loopback`);
          continue;
        }
        assert.equal(await canConnect(lap, ip, port), false, `laptop -> root namespace ${ip}:${port}`);
        for (const h of s.nodes)
          assert.equal(await canConnect(h.netns, ip, port), false, `${h.name} -> root ${ip}:${port}`);
      }
    } finally {
      server.close();
    }
  });

  it('the visitor answers a host, and sees the laptop as its router (NAT)', async () => {
    const tag = `t${process.pid}${Date.now() % 10000}`;
    const body = await inNetns(`${PREFIX}1`, ['curl', '-sS', '--max-time', '5', `http://198.51.100.200/${tag}-host`]);
    assert.equal(body.trim(), 'hello from the visitor');
    await inNetns(`${PREFIX}lap`, ['curl', '-sS', '--max-time', '5', `http://198.51.100.200/${tag}-laptop`]);
    const log = readVisitorLog(s);
    assert.equal(log.find((r) => r.url === `/${tag}-host`)?.from, '198.51.100.11');
    assert.equal(log.find((r) => r.url === `/${tag}-laptop`)?.from, '198.51.100.50', 'masqueraded by the router');
    // And nothing reaches the laptop from the internet: it has no public address.
    assert.equal(await canConnect(`${PREFIX}1`, '192.168.50.2', 22), false);
  });

  it('form devnet exec runs in the right namespace, the laptop with its own FORM_HOME and form; status shows the world', async () => {
    const lap = await form([
      'devnet',
      'exec',
      '--dir',
      s.dir,
      'laptop',
      '--',
      'sh',
      '-c',
      'ip -br -4 addr show eth0; echo "home=$FORM_HOME"; form --version',
    ]);
    assert.equal(lap.code, 0, lap.out);
    assert.match(lap.out, /192\.168\.50\.2\/24/);
    assert.match(lap.out, new RegExp(`home=${join(s.dir, 'laptop')}`));
    assert.match(lap.out, /^\d+\.\d+\.\d+$/m, 'form runs on the laptop');
    const n2 = await form(['devnet', 'exec', '--dir', s.dir, 'node2', '--', 'ip', '-br', '-4', 'addr', 'show', 'eth0']);
    assert.equal(n2.code, 0, n2.out);
    assert.match(n2.out, /198\.51\.100\.12\/24/);
    const vis = await form([
      'devnet',
      'exec',
      '--dir',
      s.dir,
      'visitor',
      '--',
      'ip',
      '-br',
      '-4',
      'addr',
      'show',
      'eth0',
    ]);
    assert.match(vis.out, /198\.51\.100\.200\/24/);
    const st = await form(['devnet', 'status', '--json', '--dir', s.dir]);
    assert.equal(st.code, 0, st.out);
    const status = JSON.parse(st.out) as {
      converged: boolean;
      nodes: Array<{ publicAddress: string }>;
      world: { visitor: { running: boolean; requests: number }; laptop: { interfaces: string[] } };
    };
    assert.deepEqual(
      status.nodes.map((n) => n.publicAddress),
      ['198.51.100.11', '198.51.100.12'],
    );
    assert.ok(status.world.visitor.running && status.world.visitor.requests >= 2);
    assert.deepEqual(status.world.laptop.interfaces, ['eth0']);
    const bad = await form(['devnet', 'exec', '--dir', s.dir, 'node9', '--', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /Cannot exec in node9: this devnet has no such namespace/);
  });

  it('down from inside a devnet namespace (through exec) is refused and ends nothing', async () => {
    const r = await form(['devnet', 'exec', '--dir', s.dir, 'laptop', '--', 'form', 'devnet', 'down', '--dir', s.dir]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /Cannot stop the devnet from inside its namespace fdwlap/);
    assert.ok(
      s.nodes.every((n) => n.pid && pidAlive(n.pid)),
      'both nodes still run',
    );
    assert.ok((await netnsList()).includes(`${PREFIX}1`));
  });

  it('a second world devnet with the same prefix is refused and leaves the running one alone', async () => {
    const other = mkdtempSync(join(tmpdir(), 'form-devnet-world-other-'));
    try {
      await assert.rejects(devnetUp({ nodes: 1, dir: other, prefix: PREFIX, world: true }), (err: unknown) => {
        assert.ok(isFormError(err));
        assert.equal((err as { code: string }).code, 'CONFLICT');
        return true;
      });
      assert.ok((await netnsList()).includes(`${PREFIX}1`));
      assert.ok(
        s.nodes.every((n) => n.pid && pidAlive(n.pid)),
        'both nodes still run',
      );
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("down ends every devnet process (a crashed node's wireguard-go, what the laptop started) and every namespace; twice is fine", async () => {
    // A crash: node 2's formationd SIGKILLed leaves its wireguard-go in fdw2.
    const n2 = s.nodes[1];
    assert.ok(n2?.pid);
    process.kill(n2.pid, 'SIGKILL');
    await until('node 2 gone', () => !pidAlive(n2.pid as number), 10_000);
    const orphans = await netnsPids(`${PREFIX}2`);
    assert.ok(orphans.length > 0, 'something (wireguard-go) outlives the killed node in its namespace');
    assert.ok(
      orphans.some((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('wireguard-go')),
      'wireguard-go among them',
    );
    // Something the laptop started and left running.
    const sleeper = spawn('ip', ['netns', 'exec', `${PREFIX}lap`, 'sleep', '600'], { detached: true, stdio: 'ignore' });
    sleeper.unref();
    await until('sleeper in the laptop', async () => (await netnsPids(`${PREFIX}lap`)).includes(sleeper.pid as number));
    const before = [
      ...s.nodes.map((n) => n.pid as number),
      s.world?.visitorPid as number,
      ...orphans,
      sleeper.pid as number,
    ];
    const r = await devnetDown(s.dir);
    assert.ok(r.leftoverProcesses >= orphans.length + 1, `leftovers ended: ${r.leftoverProcesses}`);
    for (const pid of before) assert.equal(pidAlive(pid), false, `pid ${pid} ended`);
    const mine = worldPlan(PREFIX, 2);
    const left = (await netnsList()).filter((ns) => worldNamespaces(mine).includes(ns));
    assert.deepEqual(left, []);
    const links = (await run('ip', ['-br', 'link'])).stdout.split('\n').map((l) => l.split(/[\s@]/)[0]);
    const veths = links.filter((l) => worldVethNames(mine).includes(l as string));
    assert.deepEqual(veths, [], 'no veth left in the root namespace');
    const again = await devnetDown(s.dir);
    assert.deepEqual(again, { stopped: 0, namespaces: [], leftoverProcesses: 0 });
  });
});

describe('world devnet: a half-failed up cleans up after itself', { skip }, () => {
  it('a formationd that cannot start fails up with its log, and leaves no namespace, veth or process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'form-devnet-world-fail-'));
    const prefix = 'fdwx';
    try {
      // A bad config value: formationd refuses to start (after the world and the visitor were made).
      await assert.rejects(
        devnetUp({ nodes: 1, dir, prefix, world: true, env: { FORM_LOG_LEVEL: 'loud' }, timeoutMs: 60_000 }),
        (err: unknown) => {
          assert.ok(isFormError(err), String(err));
          assert.equal((err as { code: string }).code, 'UNAVAILABLE');
          assert.match((err as Error).message, /Cannot start devnet node1: formationd exited/);
          return true;
        },
      );
      const plan = worldPlan(prefix, 1);
      assert.deepEqual(
        (await netnsList()).filter((ns) => worldNamespaces(plan).includes(ns)),
        [],
        'no namespace left',
      );
      const links = (await run('ip', ['-br', 'link'])).stdout.split('\n').map((l) => l.split(/[\s@]/)[0]);
      assert.deepEqual(
        links.filter((l) => worldVethNames(plan).includes(l as string)),
        [],
      );
      const visitorPid = JSON.parse(readFileSync(join(dir, 'devnet.json'), 'utf8')).world.visitorPid as number | null;
      assert.equal(visitorPid, null, 'the visitor was stopped');
      assert.deepEqual(
        await devnetDown(dir),
        { stopped: 0, namespaces: [], leftoverProcesses: 0 },
        'down again: nothing',
      );
    } finally {
      await devnetDown(dir).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
