import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, test } from 'node:test';
import { generateKeyPair, type KeyPair, sign, spkiOf, tlsBindingMessage, verifyTlsBinding } from '@formation/identity';
import { FormError } from '@formation/interface';
import {
  ApiClient,
  clearNodeKeyPins,
  createApiServer,
  createLogger,
  listenTls,
  loadOrCreateTlsIdentity,
  nodeFetch,
  pinNodeKey,
  probeNodeKey,
  requireSigner,
  setApiIdentity,
  type TlsListener,
} from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'form-tls-'));
const open: TlsListener[] = [];
after(async () => {
  for (const l of open) await l.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => clearNodeKeyPins());

const nodeA = generateKeyPair();
const nodeB = generateKeyPair();

/** A node API for `identity` over TLS on 127.0.0.1 (random port), counting the requests that reached it. */
async function serve(identity: string, tls: { key: string; cert: string }) {
  const app = await createApiServer({ name: 'test', logger: createLogger('silent'), identity });
  const hits = { n: 0 };
  app.addHook('onRequest', async () => {
    hits.n++;
  });
  app.get('/hello', async () => ({ hello: 'world' }));
  app.post('/signed', { preHandler: requireSigner() }, async (req) => ({ signer: req.signer?.publicKey }));
  app.server.on('upgrade', (_req, socket) =>
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n'),
  );
  const l = await listenTls(app, { host: '127.0.0.1', port: 0, ...tls });
  open.push(l);
  const url = `https://127.0.0.1:${(l.server.address() as AddressInfo).port}`;
  return { app, url, hits };
}

/** A key + certificate whose binding is forged: claims `claimed` but is signed by `signer`. */
function forgedTls(claimed: KeyPair, signer: KeyPair): { key: string; cert: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyFile = join(dir, `forged-${Math.random()}.pem`);
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(keyFile, key, { mode: 0o600 });
  const sig = sign(signer.privateKey, tlsBindingMessage(spkiOf(createPublicKey(privateKey))));
  const cert = execFileSync('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    keyFile,
    '-days',
    '30',
    '-subj',
    '/CN=forged',
    '-addext',
    `subjectAltName=URI:form-node:${claimed.publicKey},URI:form-tls-sig:${sig}`,
  ]).toString();
  return { key, cert };
}

function refused(code: string, tls: string) {
  return (err: unknown) => {
    assert.ok(err instanceof FormError, `expected a FormError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal((err.details as { tls?: string }).tls, tls);
    return true;
  };
}

test('loadOrCreateTlsIdentity makes a 0600 key and a certificate bound to the node key, keeps it, and renews it for another key', async () => {
  const d = join(dir, 'node-a');
  const first = await loadOrCreateTlsIdentity(d, nodeA);
  assert.equal(first.created, true);
  assert.equal(statSync(join(d, 'tls-key.pem')).mode & 0o777, 0o600);
  assert.equal(statSync(join(d, 'tls-cert.pem')).mode & 0o777, 0o600);
  assert.equal(verifyTlsBinding(Buffer.from(first.cert)).nodeKey, nodeA.publicKey);
  const again = await loadOrCreateTlsIdentity(d, nodeA);
  assert.equal(again.created, false);
  assert.equal(again.fingerprint, first.fingerprint);
  // The node key was replaced: a certificate for the old key is never served.
  const other = await loadOrCreateTlsIdentity(d, nodeB);
  assert.equal(other.created, true);
  assert.equal(verifyTlsBinding(Buffer.from(readFileSync(join(d, 'tls-cert.pem')))).nodeKey, nodeB.publicKey);
  // Close to expiry: renewed at start.
  const late = await loadOrCreateTlsIdentity(d, nodeB, { now: Date.now() + 380 * 86_400_000 });
  assert.equal(late.created, true);
});

test('listenTls serves the same app over TLS: routes, signed requests and upgrades', async () => {
  const tls = await loadOrCreateTlsIdentity(join(dir, 'node-a'), nodeA);
  const { url, app } = await serve(nodeA.publicKey, tls);
  setApiIdentity(app, nodeA.publicKey);
  const dev = generateKeyPair();
  const c = new ApiClient(url, dev, 5000, nodeA.publicKey);
  assert.deepEqual(await c.get('/hello'), { hello: 'world' });
  assert.deepEqual(await c.post('/signed', { x: 1 }), { signer: dev.publicKey });
  const upgraded = await new Promise<number>((resolve, reject) => {
    const req = httpsRequest(`${url}/ws`, {
      rejectUnauthorized: false,
      headers: { connection: 'Upgrade', upgrade: 'test' },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(upgraded, 101);
});

test('a pinned client accepts the right node, refuses a forged binding and another node, before sending anything', async () => {
  const good = await serve(nodeA.publicKey, await loadOrCreateTlsIdentity(join(dir, 'good'), nodeA));
  const forged = await serve(nodeA.publicKey, forgedTls(nodeA, nodeB));
  const other = await serve(nodeB.publicKey, await loadOrCreateTlsIdentity(join(dir, 'other'), nodeB));

  const res = await nodeFetch(`${good.url}/hello`, {}, { nodeKey: nodeA.publicKey });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { hello: 'world' });

  await assert.rejects(
    nodeFetch(`${forged.url}/hello`, {}, { nodeKey: nodeA.publicKey }),
    refused('AUTH_BAD_SIGNATURE', 'TLS_BAD_BINDING'),
  );
  // Even with no key expected (first use), a forged binding is never accepted.
  await assert.rejects(nodeFetch(`${forged.url}/hello`), refused('AUTH_BAD_SIGNATURE', 'TLS_BAD_BINDING'));
  await assert.rejects(
    new ApiClient(other.url, generateKeyPair(), 5000, nodeA.publicKey).post('/signed', {}),
    refused('NET_BAD_PEER', 'TLS_WRONG_NODE'),
  );
  assert.equal(forged.hits.n, 0, 'no request reached the forged server');
  assert.equal(other.hits.n, 0, 'no request reached the other node');
});

test('a client pinned to key K refuses a node that presents K′ at that address (pinNodeKey and trust on first use)', async () => {
  const a = await serve(nodeA.publicKey, await loadOrCreateTlsIdentity(join(dir, 'k'), nodeA));
  // Pinned explicitly (as the CLI does from its kit config) to A, but B answers there.
  const b = await serve(nodeB.publicKey, await loadOrCreateTlsIdentity(join(dir, 'k2'), nodeB));
  pinNodeKey(b.url, nodeA.publicKey);
  await assert.rejects(new ApiClient(b.url).get('/hello'), (err: unknown) => {
    assert.ok(err instanceof FormError && err.code === 'NET_BAD_PEER');
    assert.match(err.message, new RegExp(`node ${nodeB.publicKey}, not the pinned node ${nodeA.publicKey}`));
    assert.match(err.hint ?? '', /--node-key/);
    return true;
  });
  // First use: the client learns A from the certificate (not from GET /identity) and signs for it.
  const dev = generateKeyPair();
  const c = new ApiClient(a.url, dev, 5000);
  assert.equal(await c.audience(), nodeA.publicKey);
  assert.equal((await probeNodeKey(a.url)).nodeKey, nodeA.publicKey);
  assert.deepEqual(await c.post('/signed', {}), { signer: dev.publicKey });
  // Then A's address starts presenting B (the port now served by B's listener): refused.
  const port = new URL(a.url).port;
  await open.find((l) => (l.server.address() as AddressInfo).port === Number(port))?.close();
  const swapped = await listenTls(
    (await serve(nodeB.publicKey, await loadOrCreateTlsIdentity(join(dir, 'k2'), nodeB))).app,
    {
      host: '127.0.0.1',
      port: Number(port),
      ...(await loadOrCreateTlsIdentity(join(dir, 'k2'), nodeB)),
    },
  );
  open.push(swapped);
  await assert.rejects(c.get('/hello'), refused('NET_BAD_PEER', 'TLS_WRONG_NODE'));
});

test('nothing listening over https is CLI_NO_NODE, as over http', async () => {
  await assert.rejects(new ApiClient('https://127.0.0.1:1', generateKeyPair(), 2000).post('/x', {}), (err: unknown) => {
    assert.ok(err instanceof FormError && err.code === 'CLI_NO_NODE');
    return true;
  });
});

test('a handshake that never completes ends at the caller’s deadline, and the socket is closed', async () => {
  const { createServer } = await import('node:net');
  let opened = 0;
  let closed = 0;
  const silent = createServer((s) => {
    opened++;
    s.resume(); // read (and drop) the ClientHello, so the client's close is seen
    s.on('close', () => closed++);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  try {
    await assert.rejects(
      nodeFetch(`${url}/x`, { signal: AbortSignal.timeout(300) }, { nodeKey: nodeA.publicKey }),
      (err: unknown) => {
        assert.equal((err as Error).name, 'TimeoutError');
        return true;
      },
    );
    await assert.rejects(new ApiClient(url, generateKeyPair(), 300, nodeA.publicKey).post('/x', {}), (err: unknown) => {
      assert.ok(err instanceof FormError && err.code === 'TIMEOUT', String(err));
      return true;
    });
    // A connection the server saw (the abort may also come before the TCP connect) is closed by the client.
    await new Promise((r) => setTimeout(r, 500));
    const deadline = Date.now() + 5000;
    while (closed < opened && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, opened, `every connection was closed (${opened} made)`);
  } finally {
    silent.close();
  }
});
