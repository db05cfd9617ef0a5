// A real formationd with --public-address in a namespace (fdi<n>-m, 203.0.113.10) answers public DNS
// for a visitor namespace (fdi<n>-v, 203.0.113.200): a developer's instance name resolves to the node's
// public address (TTL 30), an unknown name is NXDOMAIN, another zone REFUSED; a custom domain is a 404
// "unknown host" at the ingress and REFUSED in DNS until the node sees its TXT through its
// publicResolver (a dns-packet server in the visitor namespace), then routed and answered. ~30 s.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns } from '@formation/net';
import { startFormationd } from './fixtures/formationd.ts';
import { vethLink } from './fixtures/netns-link.ts';

const sh = promisify(execFile);
const N = process.pid % 10000;
const NODE_NS = `fdi${N}-m`;
const VIS_NS = `fdi${N}-v`;
const IP = '203.0.113.10';
const DEV = fileURLToPath(new URL('./fixtures/public-dns-dev.ts', import.meta.url));
const FAKE_DNS = fileURLToPath(new URL('./fixtures/fake-public-dns.ts', import.meta.url));
const skip = requireOrSkip('public DNS formationd test', {
  root: true,
  programs: ['ip', 'dig', 'curl', 'wg', 'wireguard-go'],
});

async function dig(name: string): Promise<{ status: string; answers: string[][] }> {
  const { stdout } = await sh('ip', ['netns', 'exec', VIS_NS, 'dig', `@${IP}`, name, 'A', '+tries=1', '+time=2']);
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'none';
  const answers = stdout
    .split('\n')
    .filter((l) => /\sIN\s+A\s/.test(l) && !l.startsWith(';'))
    .map((l) => l.trim().split(/\s+/));
  return { status, answers };
}

describe('formationd answers public DNS on its public address', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'fdi-formationd-'));
  const nodes: ChildProcess[] = [];
  let fakeDns: ChildProcess | undefined;
  const recordsFile = join(dir, 'records.json');

  before(async () => {
    await createNetns(NODE_NS);
    await createNetns(VIS_NS);
    await vethLink(
      { dev: `fdi${N}m`, ns: NODE_NS, addrs: [`${IP}/24`] },
      { dev: `fdi${N}v`, ns: VIS_NS, addrs: ['203.0.113.200/24'] },
    );
    writeFileSync(recordsFile, '{}');
    fakeDns = spawn('ip', ['netns', 'exec', VIS_NS, process.execPath, FAKE_DNS, '203.0.113.200', '53', recordsFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((resolve, reject) => {
      fakeDns?.stdout?.once('data', resolve);
      fakeDns?.once('exit', (c) => reject(new Error(`fake public DNS exited ${c}`)));
    });
    const node = await startFormationd({
      ns: NODE_NS,
      logFile: join(dir, 'node.log'),
      children: nodes,
      args: [
        ...['--data-dir', join(dir, 'n'), '--netns', NODE_NS, '--public-address', IP],
        ...['--port-offset', '0', '--instance-cidr', '10.129.204.0/24'],
      ],
      env: { FORM_WEB: 'off', FORM_PUBLIC_RESOLVER: '203.0.113.200:53' },
    });
    assert.match(node.log(), new RegExp(`"address":"${IP.replace(/\./g, '\\.')}".*"port":53.*DNS responder listening`));
  });

  after(async () => {
    // stopChildren clears its grace timer: a bare 15 s timer kept this file alive 15 s after its tests.
    await stopChildren(nodes, 15_000);
    if (fakeDns && fakeDns.exitCode === null) fakeDns.kill('SIGTERM');
    await deleteNetns(NODE_NS);
    await deleteNetns(VIS_NS);
    rmSync(dir, { recursive: true, force: true });
  });

  let token = '';
  test('an instance name → the node’s public address; unknown → NXDOMAIN; another zone → REFUSED', async () => {
    assert.equal((await dig('hello.dev.formation.local')).status, 'NXDOMAIN');
    const { stdout } = await sh('ip', ['netns', 'exec', NODE_NS, process.execPath, DEV, 'http://127.0.0.1:3004']);
    token = (JSON.parse(stdout.trim()) as { token: string }).token;
    const a = await until('hello to resolve', async () => {
      const r = await dig('hello.dev.formation.local');
      return r.answers.length > 0 ? r : undefined;
    });
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual(
      a.answers.map((x) => [x[1], x[4]]),
      [['30', IP]],
    );
    assert.equal((await dig('nope.dev.formation.local')).status, 'NXDOMAIN');
    assert.equal((await dig('example.org')).status, 'REFUSED');
  });

  test('a custom domain: unknown host and REFUSED until its TXT is seen, then routed and answered', async () => {
    const get = async () => {
      const { stdout } = await sh('ip', [
        'netns',
        'exec',
        VIS_NS,
        'curl',
        '-s',
        '-w',
        '\n%{http_code}',
        '-H',
        'Host: shop.example.com',
        `http://${IP}/`,
      ]);
      return stdout;
    };
    const before = await get();
    assert.match(before, /No instance is served at shop\.example\.com here/);
    assert.match(before, /\n404$/);
    assert.equal((await dig('shop.example.com')).status, 'REFUSED');
    writeFileSync(recordsFile, JSON.stringify({ '_formation.shop.example.com': { TXT: [token] } }));
    const a = await until(
      'the node to verify shop.example.com',
      async () => {
        const r = await dig('shop.example.com');
        return r.answers.length > 0 ? r : undefined;
      },
      60_000,
      500,
    );
    assert.deepEqual(
      a.answers.map((x) => x[4]),
      [IP],
    );
    // Routed now: the ingress knows the host (its only replica never started, so no healthy one).
    const after = await get();
    assert.doesNotMatch(after, /No instance is served/);
    assert.match(after, /shop\.example\.com has no healthy replica right now|\n50[23]$/);
  });
});
