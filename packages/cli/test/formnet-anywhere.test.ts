// `form` on a "laptop" that reaches a node only at its public address (issue 18): kit init
// --join-formnet, formnet status/down, form proxy over the permanent membership and over a temporary
// peer in the laptop's own namespace, the root check. The node is @formation/net's test node (real
// wireguard-go, the join API on a real state store, GET /node, DNS on its formnet address), in a
// namespace of its own; the laptop namespace is linked to it only by a 198.51.100.0/24 veth.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns, run } from '@formation/net';
import { processAlive } from '@formation/service/process';

const sh = promisify(execFile);
const N = process.pid % 10000;
const NODE_NS = `fdc${N}-cn`;
const LAP_NS = `fdc${N}-cl`;
const IFACE = `fdcc${N}`;
const DOMAIN = 'fdc.test';
const root = fileURLToPath(new URL('../../../', import.meta.url));
const formBin = join(root, 'packages/cli/bin/form.js');
const skip = requireOrSkip('form formnet from a laptop namespace', {
  root: true,
  programs: ['ip', 'wg', 'wireguard-go', 'setpriv', 'nc'],
});

let home = '';
let nodeProc: ChildProcess | undefined;
let node: { nodeId: string; formnetAddress: string; apiUrl: string };

/** `form …` in the laptop namespace, as its user would run it. */
function form(args: string[], opts: { uid?: number } = {}) {
  const pre = opts.uid === undefined ? [] : ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups'];
  return sh('ip', ['netns', 'exec', LAP_NS, ...pre, process.execPath, formBin, ...args], {
    env: { ...process.env, NO_COLOR: '1', FORM_HOME: home, FORM_FORMNET_INTERFACE: IFACE },
    timeout: 60_000,
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
}

async function links(): Promise<string> {
  return run('ip', ['-o', 'link', 'show'], { netns: LAP_NS });
}

/** `form proxy <node formnet ip> <port>:7777 --for 6` in the laptop; what a client of the local port reads. */
async function throughProxy(
  port: number,
): Promise<{ got: string; proxy: { code: number; stdout: string; stderr: string } }> {
  const proxy = form(['proxy', node.formnetAddress, `${port}:7777`, '--for', '6']);
  const got = await until(
    'the proxy to relay',
    async () => {
      const { stdout } = await sh('ip', ['netns', 'exec', LAP_NS, 'nc', '-w', '3', '127.0.0.1', String(port)]).catch(
        () => ({ stdout: '' }),
      );
      return stdout.trim() || undefined;
    },
    30_000,
    300,
  );
  return { got, proxy: await proxy };
}

describe('form formnet and form proxy from a laptop namespace', { skip }, () => {
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'fdc-cli-'));
    await createNetns(NODE_NS);
    await createNetns(LAP_NS);
    await run('ip', ['link', 'add', `fdc${N}c`, 'type', 'veth', 'peer', 'name', `fdc${N}d`]);
    await run('ip', ['link', 'set', `fdc${N}c`, 'netns', NODE_NS]);
    await run('ip', ['link', 'set', `fdc${N}d`, 'netns', LAP_NS]);
    await run('ip', ['addr', 'add', '198.51.100.241/24', 'dev', `fdc${N}c`], { netns: NODE_NS });
    await run('ip', ['addr', 'add', '198.51.100.242/24', 'dev', `fdc${N}d`], { netns: LAP_NS });
    await run('ip', ['link', 'set', `fdc${N}c`, 'up'], { netns: NODE_NS });
    await run('ip', ['link', 'set', `fdc${N}d`, 'up'], { netns: LAP_NS });
    nodeProc = spawn(
      'ip',
      [
        'netns',
        'exec',
        NODE_NS,
        process.execPath,
        join(root, 'packages/net/test/fixtures/anywhere-node.ts'),
        JSON.stringify({
          wgName: `fdcn${N}c`,
          publicAddress: '198.51.100.241',
          apiPort: 3901,
          wgPort: 51820,
          domain: DOMAIN,
        }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    node = await new Promise((resolve, reject) => {
      createInterface({ input: nodeProc?.stdout as NodeJS.ReadableStream }).once('line', (l) => resolve(JSON.parse(l)));
      nodeProc?.once('exit', (c) => reject(new Error(`node fixture exited ${c}`)));
    });
  });

  after(async () => {
    await form(['formnet', 'down']);
    if (nodeProc) await stopChildren([nodeProc], 10_000);
    await deleteNetns(LAP_NS);
    await deleteNetns(NODE_NS);
    await rm(`/etc/netns/${LAP_NS}`, { recursive: true, force: true });
    if (home) await rm(home, { recursive: true, force: true });
  });

  test('without root, joining says it needs root for the interface (and nothing is made)', async () => {
    const r = await form(['formnet', 'up', '--node', node.apiUrl], { uid: 65534 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Cannot join formnet: making the WireGuard interface needs root \(CAP_NET_ADMIN\)/);
    assert.match(r.stderr, /hint: .*sudo/);
    assert.doesNotMatch(await links(), new RegExp(IFACE));
  });

  test('kit init --join-formnet joins; status shows the node as peer; proxy uses the membership; down leaves nothing', async () => {
    const init = await form(['kit', 'init', '--yes', '--json', '--node', node.apiUrl, '--join-formnet']);
    assert.equal(init.code, 0, init.stderr);
    assert.equal(JSON.parse(init.stdout).joinFormnet, true, 'stdout stays one JSON value');
    assert.match(init.stderr, new RegExp(`formnet up: 10\\.128\\.\\d+\\.\\d+ on ${IFACE}`));
    assert.match(await links(), new RegExp(`: ${IFACE}:`));

    const { got, proxy } = await throughProxy(18080);
    assert.equal(got, 'node-ok');
    assert.equal(proxy.code, 0, proxy.stderr);
    assert.doesNotMatch(await links(), /fdw[0-9a-f]{6}/, 'no temporary peer while the membership is up');

    const st = await form(['formnet', 'status', '--json']);
    const s = JSON.parse(st.stdout) as {
      running: boolean;
      iface: string;
      domain: string;
      peers: Array<{ endpoint: string; latestHandshake: number; persistentKeepalive: number }>;
    };
    assert.equal(s.running, true);
    assert.equal(s.domain, DOMAIN);
    assert.equal(s.peers.length, 1);
    assert.equal(s.peers[0]?.endpoint, '198.51.100.241:51820');
    assert.equal(s.peers[0]?.persistentKeepalive, 25);
    assert.ok((s.peers[0]?.latestHandshake ?? 0) > 0, 'handshake done');

    const again = await form(['formnet', 'up', '--node', node.apiUrl]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already up \(peers reconciled\)/);

    const down = await form(['formnet', 'down']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /formnet down: .* removed, left the network/);
    assert.doesNotMatch(await links(), new RegExp(IFACE));
    assert.equal(existsSync(`/etc/netns/${LAP_NS}/resolv.conf`), false);
    assert.match((await form(['formnet', 'status'])).stdout, /not joined from this machine/);
  });

  test('a form proxy killed with SIGKILL leaves its peer; form formnet status reaps it (interface, wireguard-go, leave)', async () => {
    const child = spawn(
      'ip',
      ['netns', 'exec', LAP_NS, process.execPath, formBin, 'proxy', node.formnetAddress, '18082:7777', '--for', '120'],
      { env: { ...process.env, FORM_HOME: home, FORM_FORMNET_INTERFACE: IFACE }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    // `ip netns exec` execs the command: the child's PID is the form process itself.
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    const iface = /(fdw[0-9a-f]{6})/.exec(await links())?.[1] as string;
    assert.ok(iface, 'the temporary peer is up');
    const [rec] = await readdir(join(home, 'formnet', 'sessions'));
    const wgPid = (
      JSON.parse(await readFile(join(home, 'formnet', 'sessions', rec as string), 'utf8')) as {
        wireguardGo: { pid: number };
      }
    ).wireguardGo.pid;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.match(await links(), new RegExp(iface), 'left behind by the killed process');

    const st = await form(['formnet', 'status', '--json']);
    const reaped = (JSON.parse(st.stdout) as { reapedSessions: Array<{ iface: string; left: boolean }> })
      .reapedSessions;
    assert.deepEqual(reaped, [{ tag: iface.slice(3), iface, left: true }]);
    assert.doesNotMatch(await links(), new RegExp(iface));
    // A zombie its parent (here PID 1, late if at all) has not reaped yet counts as ended.
    assert.equal(processAlive(wgPid), false, 'its wireguard-go ended');
    assert.deepEqual(await readdir(join(home, 'formnet', 'sessions')), []);
  });

  test('without a membership, form proxy makes a temporary peer in the laptop namespace and removes it', async () => {
    const { got, proxy } = await throughProxy(18081);
    assert.equal(got, 'node-ok');
    assert.equal(proxy.code, 0, proxy.stderr);
    assert.doesNotMatch(await links(), /fdw[0-9a-f]{6}/);
    assert.deepEqual(await readdir(join(home, 'formnet', 'sessions')), []);
    assert.doesNotMatch(await run('ip', ['-4', 'route', 'show'], { netns: LAP_NS }), /10\.12[89]\./);
  });
});
