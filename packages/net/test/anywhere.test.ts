// Formnet membership from anywhere, with real wireguard-go between two namespaces this test makes:
//   fdc<n>-node: 198.51.100.241 — a node (startNodeFormnet, join API on a real state store, DNS on its
//                formnet address :53), run as a child process inside the namespace
//   fdc<n>-lap:  198.51.100.242 — a laptop (default route via the node side, like an internet uplink);
//                every laptop step is a child process under `ip netns exec`, as the CLI would run there.
// No veth goes from the laptop into a node namespace for formnet: only the "internet" link.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { generateKeyPair, saveKey } from '@formation/identity';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns, isSameProcess, type ProcessIdentity, processIdentity, run } from '../src/index.ts';

const sh = promisify(execFile);
const N = process.pid % 10000;
const NODE_NS = `fdc${N}-node`;
const LAP_NS = `fdc${N}-lap`;
const NODE_WG = `fdcn${N}`;
const MEMBER_IF = `fdcm${N}`;
const DOMAIN = 'fdc.test';
const FIXTURES = join(import.meta.dirname, 'fixtures');
const skip = requireOrSkip('formnet-from-anywhere test', {
  root: true,
  programs: ['ip', 'wg', 'wireguard-go', 'getent'],
});

let home = '';
let nodeProc: ChildProcess | undefined;
let node: { nodeId: string; formnetAddress: string; apiUrl: string; endpoint: string; wgPid: number; dns: boolean };
const children: ChildProcess[] = [];

function cfg(): string {
  return JSON.stringify({
    home,
    keyFile: join(home, 'key.json'),
    apiUrl: node.apiUrl,
    nodeId: node.nodeId,
    endpoint: node.endpoint,
    formnetAddress: node.formnetAddress,
    domain: DOMAIN,
    iface: MEMBER_IF,
  });
}

/** Start a fixture in a namespace; resolves with the child and its first JSON line. */
function startIn<T>(ns: string, file: string, args: string[]): Promise<{ child: ChildProcess; first: T }> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(FIXTURES, file), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once('line', (l) => resolve({ child, first: JSON.parse(l) as T }));
    child.once('exit', (code) => reject(new Error(`${file} ${args[0]} exited ${code} before answering`)));
  });
}

/** Run a laptop step to completion; its JSON answer. */
async function laptop<T>(mode: string): Promise<T> {
  const { stdout } = await sh(
    'ip',
    ['netns', 'exec', LAP_NS, process.execPath, join(FIXTURES, 'anywhere-laptop.ts'), mode, cfg()],
    {
      timeout: 60_000,
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop() as string) as T;
}

async function nodeMembers(): Promise<Array<{ id: string; publicKey: string; address: string }>> {
  const { stdout } = await sh('ip', ['netns', 'exec', LAP_NS, 'curl', '-sf', `${node.apiUrl}/peers`]);
  return (JSON.parse(stdout) as { peers: Array<{ id: string; publicKey: string; address: string }> }).peers;
}

async function linkExists(ns: string, name: string): Promise<boolean> {
  return new RegExp(`^\\d+: ${name}[@:]`, 'm').test(await run('ip', ['-o', 'link', 'show'], { netns: ns }));
}

interface SessionFacts {
  tag: string;
  iface: string;
  address: string;
  wgPid: number;
  pid: number;
  dump: string;
  routes: string[];
  leak: { type: string; dev?: string };
  hello: string;
  dns: string[] | string;
  unknown: string[] | string;
}

describe('formnet from anywhere (wireguard-go, two namespaces)', { skip }, () => {
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'fdc-home-'));
    const key = generateKeyPair();
    await saveKey(key, join(home, 'key.json'));
    await mkdir(join(home, 'node'));
    await createNetns(NODE_NS);
    await createNetns(LAP_NS);
    await run('ip', ['link', 'add', `fdc${N}a`, 'type', 'veth', 'peer', 'name', `fdc${N}b`]);
    await run('ip', ['link', 'set', `fdc${N}a`, 'netns', NODE_NS]);
    await run('ip', ['link', 'set', `fdc${N}b`, 'netns', LAP_NS]);
    await run('ip', ['addr', 'add', '198.51.100.241/24', 'dev', `fdc${N}a`], { netns: NODE_NS });
    await run('ip', ['addr', 'add', '198.51.100.242/24', 'dev', `fdc${N}b`], { netns: LAP_NS });
    await run('ip', ['link', 'set', `fdc${N}a`, 'up'], { netns: NODE_NS });
    await run('ip', ['link', 'set', `fdc${N}b`, 'up'], { netns: LAP_NS });
    await run('ip', ['route', 'add', 'default', 'via', '198.51.100.241'], { netns: LAP_NS });
    await startNode();
  });

  /** (Re)start the node; with the same dir it is the same node (keys, state with its members). */
  async function startNode(): Promise<void> {
    const started = await startIn<typeof node>(NODE_NS, 'anywhere-node.ts', [
      JSON.stringify({
        wgName: NODE_WG,
        publicAddress: '198.51.100.241',
        apiPort: 3901,
        wgPort: 51820,
        domain: DOMAIN,
        dir: join(home, 'node'),
      }),
    ]);
    nodeProc = started.child;
    node = started.first;
  }

  after(async () => {
    // Whatever a failed test left: the member's wireguard-go and interface, sessions, the node.
    await laptop('down').catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c !== nodeProc) c.kill('SIGKILL');
    await laptop('reap').catch(() => undefined);
    if (nodeProc) await stopChildren([nodeProc], 10_000);
    await deleteNetns(LAP_NS);
    await deleteNetns(NODE_NS);
    await rm(`/etc/netns/${LAP_NS}`, { recursive: true, force: true });
    if (home) await rm(home, { recursive: true, force: true });
  });

  test('the node answers DNS on its formnet address, port 53', () => {
    assert.equal(node.dns, true);
  });

  test('a temporary peer lives in the laptop namespace: node at its public endpoint, keepalive 25, formnet routes only, leak guard; closing leaves nothing', async () => {
    const { child, first: s } = await startIn<SessionFacts>(LAP_NS, 'anywhere-laptop.ts', ['session', cfg()]);
    assert.match(s.iface, /^fdw[0-9a-f]{6}$/);
    // Over WireGuard, from the process's own namespace: TCP and DNS on the node's formnet address.
    assert.equal(s.hello, 'node-ok');
    assert.deepEqual(s.dns, ['10.129.0.2']);
    assert.equal(s.unknown, 'error: ENOTFOUND');
    const peer = s.dump.split('\n')[1]?.split('\t') ?? [];
    assert.equal(peer[2], node.endpoint, 'the node is the peer at its public endpoint');
    assert.equal(peer[7], '25', 'persistent keepalive 25 s');
    for (const r of s.routes) assert.match(r, /^10\.(12[89])\./, `route ${r} is inside formnet`);
    assert.ok(s.routes.includes(node.formnetAddress) || s.routes.includes(`${node.formnetAddress}/32`));
    assert.deepEqual(
      s.leak,
      { type: 'unreachable' },
      'formnet addresses nobody holds never leave by the default route',
    );
    assert.ok((await nodeMembers()).some((m) => m.address === s.address));
    const rec = join(home, 'formnet', 'sessions', `${s.tag}.json`);
    assert.ok(existsSync(rec), 'the session is recorded while it runs');
    assert.equal(JSON.parse(await readFile(rec, 'utf8')).wireguardGo.pid, s.wgPid);

    child.stdin?.write('close\n');
    await until('session to close', () => child.exitCode !== null, 15_000);
    assert.equal(await linkExists(LAP_NS, s.iface), false);
    assert.equal(existsSync(rec), false);
    assert.equal(existsSync(`/proc/${s.wgPid}`) && isSameProcess(processIdentity(s.wgPid)), false);
    assert.ok(!(await nodeMembers()).some((m) => m.address === s.address), 'left the node');
    const routes = await run('ip', ['-4', 'route', 'show'], { netns: LAP_NS });
    assert.doesNotMatch(routes, /10\.128\.0\.0\/9/, 'leak guard removed with the last session');
  });

  test('a session whose process is SIGKILLed is reaped by the next command: interface, wireguard-go, record, membership', async () => {
    const { child, first: s } = await startIn<SessionFacts>(LAP_NS, 'anywhere-laptop.ts', ['session', cfg()]);
    const wg = processIdentity(s.wgPid) as ProcessIdentity;
    child.kill('SIGKILL');
    await until('session process to die', () => child.exitCode !== null || child.signalCode !== null);
    // Left behind, as before this change.
    assert.equal(await linkExists(LAP_NS, s.iface), true);
    assert.equal(isSameProcess(wg), true);
    assert.ok((await nodeMembers()).some((m) => m.address === s.address));

    const r = await laptop<{ reaped: Array<{ tag: string; left: boolean }> }>('reap');
    assert.deepEqual(r.reaped, [{ tag: s.tag, iface: s.iface, left: true }]);
    assert.equal(await linkExists(LAP_NS, s.iface), false);
    assert.equal(isSameProcess(wg), false);
    assert.deepEqual(await readdir(join(home, 'formnet', 'sessions')), []);
    assert.ok(!(await nodeMembers()).some((m) => m.address === s.address));
    assert.doesNotMatch(await run('ip', ['-4', 'route', 'show'], { netns: LAP_NS }), /10\.128\.0\.0\/9/);
  });

  test('a hostile or broken session record is left alone (it cannot make the reaper delete another interface)', async () => {
    const dir = join(home, 'formnet', 'sessions');
    const bad = {
      tag: 'abcdef',
      iface: `fdc${N}b`, // the laptop's uplink
      netns: null,
      wireguardGo: null,
      cli: { pid: 999999, start: 1 },
      nodeUrl: node.apiUrl,
      memberId: '0x0',
      wgPublicKey: 'x',
      leakGuard: true,
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(dir, 'abcdef.json'), JSON.stringify(bad));
    await writeFile(join(dir, 'garbage.json'), '{');
    const r = await laptop<{ reaped: unknown[] }>('reap');
    assert.deepEqual(r.reaped, []);
    assert.equal(await linkExists(LAP_NS, `fdc${N}b`), true);
    assert.deepEqual((await readdir(dir)).sort(), ['abcdef.json', 'garbage.json']);
    await rm(join(dir, 'abcdef.json'));
    await rm(join(dir, 'garbage.json'));
  });

  test('permanent membership: up outlives its process, is idempotent, survives a laptop restart with the same key and address, down leaves nothing', async () => {
    type Up = {
      iface: string;
      address: string;
      created: boolean;
      peers: number;
      wireguardGo: ProcessIdentity;
      resolver: { kind: string; path?: string };
    };
    const first = await laptop<Up>('up');
    assert.equal(first.created, true);
    assert.equal(first.iface, MEMBER_IF);
    assert.equal(first.resolver.kind, 'netns-resolv', 'inside a named namespace: /etc/netns/<ns>/resolv.conf');
    // The `up` process is gone; its wireguard-go is not, and a fresh process reaches the node.
    assert.equal(isSameProcess(first.wireguardGo), true);
    const probe = await laptop<SessionFacts>('probe');
    assert.equal(probe.hello, 'node-ok');
    assert.deepEqual(probe.dns, ['10.129.0.2']);
    const peer = probe.dump.split('\n')[1]?.split('\t') ?? [];
    assert.equal(peer[2], node.endpoint);
    assert.equal(peer[7], '25');
    // Names resolve for plain programs started in the namespace afterwards (ssh, curl, getent).
    const { stdout: hosts } = await sh('ip', ['netns', 'exec', LAP_NS, 'getent', 'hosts', `hello.${DOMAIN}`]);
    assert.match(hosts, /^10\.129\.0\.2\s/);
    const mode = (await sh('stat', ['-c', '%a', join(home, 'formnet', 'member.json')])).stdout.trim();
    assert.equal(mode, '600');

    const again = await laptop<Up>('up');
    assert.equal(again.created, false, 'up again reconciles instead of failing');
    assert.equal(again.address, first.address);
    assert.deepEqual(again.wireguardGo, first.wireguardGo, 'same wireguard-go');

    // Laptop "restart": wireguard-go and the interface are gone, the member file stays.
    process.kill(first.wireguardGo.pid, 'SIGKILL');
    await until('interface gone with wireguard-go', async () => !(await linkExists(LAP_NS, MEMBER_IF)));
    const status = await laptop<{ configured: boolean; running: boolean }>('status');
    assert.deepEqual([status.configured, status.running], [true, false]);
    const restarted = await laptop<Up>('up');
    assert.equal(restarted.created, true);
    assert.equal(restarted.address, first.address, 'same key, same address');
    assert.equal((await laptop<SessionFacts>('probe')).hello, 'node-ok');

    const down = await laptop<{ wasUp: boolean; left: boolean }>('down');
    assert.deepEqual(down, { wasUp: true, iface: MEMBER_IF, left: true });
    assert.equal(await linkExists(LAP_NS, MEMBER_IF), false);
    assert.equal(isSameProcess(restarted.wireguardGo), false);
    assert.equal(existsSync(`/etc/netns/${LAP_NS}/resolv.conf`), false);
    assert.equal(existsSync(`/var/run/wireguard/${MEMBER_IF}.sock`), false);
    assert.doesNotMatch(await run('ip', ['-4', 'route', 'show'], { netns: LAP_NS }), /10\.12[89]\./);
    assert.ok(!(await nodeMembers()).some((m) => m.address === first.address));
    assert.deepEqual(await laptop('down'), { wasUp: false, left: false });

    // Down then up: the kept key gets the same address back from the node.
    const back = await laptop<Up>('up');
    assert.equal(back.address, first.address);
    assert.equal((await laptop<SessionFacts>('probe')).hello, 'node-ok');

    // The node restarts (new process, new WireGuard sessions): the member's entry comes back from its
    // state, the laptop's keepalive re-handshakes, and formnet works again without `up`.
    const oldNodeWg = node.wgPid;
    nodeProc?.kill('SIGTERM');
    await until('node to stop', () => nodeProc?.exitCode !== null, 15_000);
    await startNode();
    assert.notEqual(node.wgPid, oldNodeWg);
    assert.ok(
      (await nodeMembers()).some((m) => m.address === first.address),
      'member kept in the node state',
    );
    await until(
      'formnet again after the node restart',
      async () => (await laptop<SessionFacts>('probe')).hello === 'node-ok',
      60_000,
      1000,
    );
    await laptop('down');
  });
});
