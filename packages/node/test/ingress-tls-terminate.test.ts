// TLS that ends at the ingress (Formfile `HTTPS 8080 TERMINATE=ingress`, issue 19), in namespaces this
// test makes (fh3<n>…), no VM:
//   fh3<n>h: two ingress nodes A (public 198.51.100.11) and B (198.51.100.12) on :80/:443, sharing one
//            state (fixtures/ingress-tls-node.ts, startNodeIngress with tlsTermination each), and the
//            replica's app at 10.129.0.2:8080 (plain HTTP)
//   fh3<n>c: the CA at 203.0.113.2 — Pebble (RFC 8555) and pebble-challtestsrv, which answers every
//            name with **B's** address only
//   fh3<n>v: the visitor at 198.51.100.200
// Each node obtains its own certificate for web.fh3.test by ACME (HTTP-01): B answers the CA itself;
// A's checks reach B, which relays them to A (the multi-node case). Keys stay 0600 under each node's
// dir, and the visitor's curl verifies https://web.fh3.test/ against Pebble's root through either node
// and gets the app, which received plain HTTP.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns, run } from '@formation/net';
import { vethLink } from './fixtures/netns-link.ts';
import { type PebbleCa, startPebble } from './fixtures/pebble.ts';

const sh = promisify(execFile);
const N = process.pid % 1000;
const NS = { node: `fh3${N}h`, ca: `fh3${N}c`, vis: `fh3${N}v` };
const PUBLIC = '198.51.100.11';
const PUBLIC_B = '198.51.100.12';
const CA_IP = '203.0.113.2';
const NAME = 'web.fh3.test';
const skip = requireOrSkip('TLS ended at the ingress', {
  root: true,
  programs: ['ip', 'curl', 'openssl', 'pebble', 'pebble-challtestsrv'],
});

const children: ChildProcess[] = [];
let stderr = '';
let ca: PebbleCa | undefined;
let tmp = '';
const lines: Array<Record<string, unknown>> = [];

function startIn(ns: string, argv: string[], onLine?: (l: string) => void, env: Record<string, string> = {}) {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  child.stderr?.on('data', (d) => {
    stderr = (stderr + d).slice(-20_000);
  });
  if (onLine) createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine);
  return child;
}

const APP = `require('node:http').createServer((q, r) => r.end('app got ' + q.method + ' ' + q.url + ' for ' + q.headers.host + ' in clear'))
  .listen(8080, '10.129.0.2', () => console.log('ready'));`;

async function visitor(args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr: e } = await sh('ip', ['netns', 'exec', NS.vis, 'curl', '-sS', '--max-time', '5', ...args]);
    return { code: 0, out: stdout, err: e };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout, err: e.stderr };
  }
}

describe('HTTPS TERMINATE=ingress: the node gets the certificate by ACME and ends TLS', { skip }, () => {
  before(async () => {
    tmp = mkdtempSync('/tmp/fh3-tls-');
    for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
    for (const ns of Object.values(NS)) await createNetns(ns);
    await vethLink(
      { dev: `fh3${N}hv`, ns: NS.node, addrs: [`${PUBLIC}/24`, `${PUBLIC_B}/24`] },
      { dev: `fh3${N}vh`, ns: NS.vis, addrs: ['198.51.100.200/24'] },
    );
    await vethLink(
      { dev: `fh3${N}hc`, ns: NS.node, addrs: ['203.0.113.1/24'] },
      { dev: `fh3${N}ch`, ns: NS.ca, addrs: [`${CA_IP}/24`] },
    );
    await run('ip', ['route', 'add', 'default', 'via', '203.0.113.1'], { netns: NS.ca });
    await run('ip', ['addr', 'add', '10.129.0.2/32', 'dev', 'lo'], { netns: NS.node });

    ca = await startPebble({
      netns: NS.ca,
      caIp: CA_IP,
      answerIp: PUBLIC_B,
      dir: tmp,
      start: (ns, argv, env) => startIn(ns, argv, undefined, env),
    });
    await new Promise<void>((resolve) => startIn(NS.node, [process.execPath, '-e', APP], () => resolve()));
    const cfg = {
      nodes: [
        { host: PUBLIC, dir: join(tmp, 'a', 'ingress-tls') },
        { host: PUBLIC_B, dir: join(tmp, 'b', 'ingress-tls') },
      ],
      directory: `https://${CA_IP}:14000/dir`,
      caPem: readFileSync(join(tmp, 'api.pem'), 'utf8'),
      waitMs: 60_000,
    };
    startIn(
      NS.node,
      [process.execPath, join(import.meta.dirname, 'fixtures', 'ingress-tls-node.ts'), JSON.stringify(cfg)],
      (l) => lines.push(JSON.parse(l)),
    );
  });

  after(async () => {
    await stopChildren(children);
    for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('each node is issued a certificate (A through B’s relay); the visitor verifies either against Pebble’s root and gets the app', async (t) => {
    const issued = (await until('the certificates', () => lines[0], 70_000, 100).catch((err) => {
      throw new Error(`${err.message}\nnode:\n${stderr.slice(-3000)}\npebble:\n${ca?.log().slice(-3000)}`);
    })) as { id: string; nodes: Array<{ notAfter?: string; error?: string; issuedMs?: number }> };
    const [a, b] = issued.nodes;
    assert.ok(b?.notAfter, `B (the CA reaches it): ${JSON.stringify(b)}\npebble:\n${ca?.log().slice(-3000)}`);
    assert.ok(
      a?.notAfter,
      `A (the CA's checks reach B, which relays): ${JSON.stringify(a)}\npebble:\n${ca?.log().slice(-3000)}`,
    );
    t.diagnostic(`certificate issued by ACME at the ingress in ${b.issuedMs} ms (B), ${a.issuedMs} ms (A, relayed)`);
    for (const [label, address, sub] of [
      ['A', PUBLIC, 'a'],
      ['B', PUBLIC_B, 'b'],
    ] as const) {
      // The key lives on the node, 0600, in a 0700 directory.
      const keyFile = join(tmp, sub, 'ingress-tls', issued.id, 'key.pem');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      assert.equal(statSync(join(tmp, sub, 'ingress-tls')).mode & 0o777, 0o700);
      const resolve = ['--resolve', `${NAME}:443:${address}`];
      const ok = await visitor([...resolve, '--cacert', join(tmp, 'root.pem'), `https://${NAME}/hello`]);
      assert.equal(ok.code, 0, `${label}: ${ok.err}`);
      assert.equal(ok.out, `app got GET /hello for ${NAME} in clear`);
      // The certificate the visitor got is the one whose key is on that node.
      const served = await sh('ip', [
        'netns',
        'exec',
        NS.vis,
        'sh',
        '-c',
        `openssl s_client -connect ${address}:443 -servername ${NAME} </dev/null 2>/dev/null | openssl x509 -noout -pubkey`,
      ]);
      const onNode = execFileSync('openssl', ['pkey', '-in', keyFile, '-pubout'], { encoding: 'utf8' });
      assert.equal(served.stdout.trim(), onNode.trim(), label);
    }
    const resolve = ['--resolve', `${NAME}:443:${PUBLIC}`];
    // Without Pebble's root the chain is not trusted (it is really checked).
    const untrusted = await visitor([...resolve, `https://${NAME}/`]);
    assert.equal(untrusted.code, 60, untrusted.err);
    // A name the node has no certificate for is closed (no fallback certificate).
    const other = await visitor(['--resolve', `other.fh3.test:443:${PUBLIC}`, '-k', 'https://other.fh3.test/']);
    assert.notEqual(other.code, 0);
    // Plain HTTP still reaches the app; the challenge path of a token nobody holds is routed, not answered.
    const plain = await visitor(['-H', `Host: ${NAME}`, `http://${PUBLIC}/.well-known/acme-challenge/abc`]);
    assert.equal(plain.out, `app got GET /.well-known/acme-challenge/abc for ${NAME} in clear`);
  });
});
