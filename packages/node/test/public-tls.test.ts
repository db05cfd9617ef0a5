// Two formationd processes on two "hosts" (network namespaces fdb1, fdb2 joined by a veth pair,
// 198.51.100.21/.22): libp2p converges over the public addresses, a client in fdb2 reaches fdb1's APIs
// only over TLS pinned to its node key, another key is refused, and a capture of the link shows no
// plaintext API traffic.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type KeyPair, loadOrCreateKey } from '@formation/identity';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { nodePaths } from '../src/config.ts';
import { startFormationd } from './fixtures/formationd.ts';
import { formpackManifest, publishedSha256s, sha256Hex } from './fixtures/formpack-manifest.ts';
import { vethLink } from './fixtures/netns-link.ts';

const run = promisify(execFile);
const CLIENT = fileURLToPath(new URL('./fixtures/pinned-client.ts', import.meta.url));
const NS = ['fdb1', 'fdb2'] as const;
const IP = ['198.51.100.21', '198.51.100.22'] as const;
const VETH = ['fdbv1', 'fdbv2'] as const;
const CIDR = ['10.129.201.0/24', '10.129.202.0/24'] as const;

const skip = requireOrSkip('public TLS test', {
  root: true,
  programs: ['ip', 'tcpdump', 'openssl', 'wg', 'wireguard-go'],
});

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

/** Run the pinned client inside `ns`; its one JSON line. */
async function client(ns: string, ...args: string[]): Promise<Record<string, unknown>> {
  const out = await sh('ip', ['netns', 'exec', ns, process.execPath, CLIENT, ...args]);
  return JSON.parse(out.trim().split('\n').pop() as string) as Record<string, unknown>;
}

interface Info {
  ready: boolean;
  pid: number;
  genesis: string | null;
  p2p: string[];
  nodeKey: string;
  publicAddress: string | null;
}

function readInfo(dataDir: string): Info | undefined {
  try {
    return JSON.parse(readFileSync(nodePaths(dataDir).infoFile, 'utf8')) as Info;
  } catch {
    return undefined;
  }
}

/** The plaintext API markers found in a capture. */
async function plaintextIn(file: string): Promise<string[]> {
  const text = await sh('tcpdump', ['-r', file, '-n', '-A']);
  return [
    'HTTP/1.1',
    'x-form-signature',
    '"digest"',
    '"identity"',
    'node.admit',
    'application/json',
    '"owner"',
    'tls-transfer',
  ].filter((m) => text.includes(m));
}

describe('nodes on their own hosts: TLS bound to the node key, pinned clients, no plaintext', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-fdb-'));
  const dataDirs = [join(dir, 'n1'), join(dir, 'n2')];
  const pcap = join(dir, 'link.pcap');
  const procs: ChildProcess[] = [];
  let tcpdump: ChildProcess | undefined;
  let admin: KeyPair;
  const keys: KeyPair[] = [];
  const infos: Info[] = [];

  async function startNode(i: 0 | 1, extra: string[]): Promise<Info> {
    await startFormationd({
      ns: NS[i],
      logFile: join(dir, `n${i + 1}.log`),
      children: procs,
      args: [
        ...['--data-dir', dataDirs[i] as string, '--netns', NS[i], '--public-address', IP[i]],
        ...['--port-offset', '0', '--instance-cidr', CIDR[i], ...extra],
      ],
    });
    const info = readInfo(dataDirs[i] as string);
    assert.ok(info?.ready, `node ${i + 1}: node.json is written before formationd logs that it is ready`);
    return info;
  }

  before(async () => {
    for (const ns of NS) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    for (const ns of NS) {
      await sh('ip', ['netns', 'add', ns]);
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await vethLink(
      { dev: VETH[0], ns: NS[0], addrs: [`${IP[0]}/24`] },
      { dev: VETH[1], ns: NS[1], addrs: [`${IP[1]}/24`] },
    );
    // Everything that crosses the link, from before the second node exists.
    tcpdump = spawn('ip', ['netns', 'exec', NS[0], 'tcpdump', '-i', VETH[0], '-n', '-U', '-s', '0', '-w', pcap], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      tcpdump?.stderr?.on('data', (d: Buffer) => {
        if (/listening on/.test(d.toString())) resolve();
      });
      tcpdump?.once('exit', (c) => reject(new Error(`tcpdump exited ${c}`)));
    });

    admin = await loadOrCreateKey(join(dir, 'admin-key.json'));
    keys[0] = await loadOrCreateKey(nodePaths(dataDirs[0] as string).keyFile);
    keys[1] = await loadOrCreateKey(nodePaths(dataDirs[1] as string).keyFile);
    infos[0] = await startNode(0, ['--admin', admin.publicKey]);
    const ma = infos[0].p2p.find((a) => a.startsWith(`/ip4/${IP[0]}/`) && a.includes('/p2p/'));
    assert.ok(ma, `node 1 listens for libp2p on its public address: ${infos[0].p2p.join(' ')}`);
    // The admin admits node 2 from fdb2, over TLS to node 1's public state API, pinned to node 1's key.
    const admitted = await client(
      NS[1],
      'admit',
      `https://${IP[0]}:3004`,
      keys[0].publicKey,
      join(dir, 'admin-key.json'),
      keys[1].publicKey,
      CIDR[1],
    );
    assert.ok(admitted.admitted, JSON.stringify(admitted));
    infos[1] = await startNode(1, ['--join', ma, '--genesis', infos[0].genesis as string]);
  });

  after(async () => {
    // stopChildren clears its grace timer: a bare 20 s timer kept this file alive ~20 s after its tests.
    await stopChildren(procs, 20_000);
    if (tcpdump?.pid && tcpdump.exitCode === null) process.kill(tcpdump.pid, 'SIGTERM');
    for (const ns of NS) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('node.json and node.register say the public address; the key in node.json is the node key', () => {
    assert.equal(infos[0]?.publicAddress, IP[0]);
    assert.equal(infos[0]?.nodeKey, keys[0]?.publicKey);
    assert.equal(infos[1]?.publicAddress, IP[1]);
  });

  it('the two nodes converge over libp2p on their public addresses; a pinned client in fdb2 reads fdb1 over https', async () => {
    const seen = await until(
      'equal digests at both nodes, both registered at their public addresses',
      async () => {
        const a = await client(NS[1], 'read', `https://${IP[0]}:3004`, keys[0]?.publicKey as string);
        const b = await client(NS[1], 'read', `https://${IP[1]}:3004`, keys[1]?.publicKey as string);
        const nodes = a.nodes as Array<{ id: string; endpoint: string }> | undefined;
        return a.digest && a.digest === b.digest && nodes?.length === 2 ? nodes : undefined;
      },
      90_000,
      1000,
    );
    assert.deepEqual(seen.map((n) => n.endpoint).sort(), [`${IP[0]}:3005`, `${IP[1]}:3005`]);
  });

  it('a registered node’s signed revision request reaches fdb1’s formnet API over pinned TLS; a non-node is refused', async () => {
    const sha = 'ab'.repeat(32);
    const asNode = await client(
      NS[1],
      'revision',
      `https://${IP[0]}:3001`,
      keys[0]?.publicKey as string,
      nodePaths(dataDirs[1] as string).keyFile,
      sha,
    );
    assert.equal(asNode.status, 404, JSON.stringify(asNode));
    assert.match(JSON.stringify(asNode.body), /Cannot find revision/);
    const asOther = await client(
      NS[1],
      'revision',
      `https://${IP[0]}:3001`,
      keys[0]?.publicKey as string,
      join(dir, 'admin-key.json'),
      sha,
    );
    assert.equal(asOther.status, 403, JSON.stringify(asOther));
  });

  it('a Formpack crosses from node 1 to fdb2 over pinned TLS: the real pack API and fetchFormpack, hashes checked', async () => {
    const owner = await loadOrCreateKey(join(dir, 'owner-key.json'));
    const bytes = {
      disk: randomBytes(4 * 1024 * 1024),
      kernel: randomBytes(64 * 1024),
      initramfs: randomBytes(64 * 1024),
    };
    const published = publishedSha256s(bytes);
    const id = sha256Hex(`public-tls formpack ${Date.now()}`);
    const manifest = formpackManifest({
      id,
      name: 'tls-transfer',
      owner: owner.address,
      createdAt: new Date().toISOString(),
      bytes,
    });
    // As if node 1 had built it for this owner.
    const at = join(dataDirs[0] as string, 'formpacks', id);
    mkdirSync(at, { recursive: true });
    writeFileSync(join(at, 'manifest.json'), JSON.stringify(manifest));
    writeFileSync(join(at, 'disk.qcow2'), bytes.disk);
    writeFileSync(join(at, 'vmlinuz'), bytes.kernel);
    writeFileSync(join(at, 'initramfs.img'), bytes.initramfs);
    const dest = join(dir, 'fetched', 'formpacks');
    const r = await client(
      NS[1],
      'formpack',
      `https://${IP[0]}:3003`,
      keys[0]?.publicKey as string,
      join(dir, 'owner-key.json'),
      id,
      JSON.stringify(published),
      dest,
    );
    assert.equal(r.source, `https://${IP[0]}:3003`, JSON.stringify(r));
    assert.deepEqual(readFileSync(join(dest, id, 'disk.qcow2')), bytes.disk);
    assert.deepEqual(readFileSync(join(dest, id, 'vmlinuz')), bytes.kernel);
  });

  it('a client pinned to key K refuses the node at that address presenting K′', async () => {
    // Expect node 2's key at node 1's address (as after a swap of the machine or a hijacked address).
    const r = await client(NS[1], 'read', `https://${IP[0]}:3004`, keys[1]?.publicKey as string);
    assert.equal(r.refused, 'NET_BAD_PEER', JSON.stringify(r));
    assert.equal(r.tls, 'TLS_WRONG_NODE');
    assert.match(String(r.message), new RegExp(`${keys[0]?.publicKey}.*${keys[1]?.publicKey}`));
  });

  it('nothing plain listens on the public address: dashboard, runtime and Redis ports are closed there', async () => {
    for (const port of [3010, 3006, 6379]) {
      const r = await client(NS[1], 'plain', `http://${IP[0]}:${port}/`, keys[0]?.publicKey as string);
      assert.equal(r.plain, 'refused', `port ${port}: ${JSON.stringify(r)}`);
      assert.equal(r.cause, 'ECONNREFUSED', `port ${port}: ${JSON.stringify(r)}`);
    }
  });

  it('the capture of the link holds TLS and Noise only: no HTTP/1.1 or JSON API text crossed it', async () => {
    assert.ok(tcpdump?.pid);
    const exited = new Promise((r) => tcpdump?.once('exit', r));
    process.kill(tcpdump.pid, 'SIGINT');
    await exited;
    assert.ok(existsSync(pcap));
    const api = await sh('tcpdump', ['-r', pcap, '-n', 'tcp port 3004 or tcp port 3003 or tcp port 3001']);
    const p2p = await sh('tcpdump', ['-r', pcap, '-n', 'tcp port 3005']);
    assert.ok(api.split('\n').length > 20, 'the API traffic of the test is in the capture');
    assert.ok(p2p.split('\n').length > 20, 'the libp2p traffic of the test is in the capture');
    assert.deepEqual(await plaintextIn(pcap), [], 'no API text crossed the link in clear');
    // The check can fail: a plain HTTP request sent across the link (to the TLS port, which refuses it) is caught.
    const control = join(dir, 'control.pcap');
    const cap = spawn('ip', ['netns', 'exec', NS[0], 'tcpdump', '-i', VETH[0], '-n', '-U', '-s', '0', '-w', control], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve) =>
      cap.stderr?.on('data', (d: Buffer) => /listening on/.test(d.toString()) && resolve()),
    );
    const sent = await client(NS[1], 'plain', `http://${IP[0]}:3004/identity`, keys[0]?.publicKey as string);
    try {
      // Read while tcpdump still writes (-U: each packet as it comes).
      await until(
        'the plaintext request in the control capture',
        async () => (await plaintextIn(control)).includes('HTTP/1.1'),
        10_000,
        250,
      );
    } finally {
      const capExited = new Promise((r) => cap.once('exit', r));
      if (cap.pid) process.kill(cap.pid, 'SIGINT');
      await capExited;
    }
    assert.ok(sent.plain === 'refused', `a plain request to the TLS port gets no HTTP answer: ${JSON.stringify(sent)}`);
  });
});
