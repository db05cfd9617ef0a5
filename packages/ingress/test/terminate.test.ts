// TLS ended at the ingress (`HTTPS <port> TERMINATE=ingress`) on loopback: the ingress holds a
// self-signed certificate for web.test, decrypts, and sends plain HTTP to the replica's app port; an
// HTTP-01 challenge it holds is answered on :80, any other challenge path is routed; a host without a
// certificate is closed; a passthrough host next to it is still passed through. No root needed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSecureContext, connect as tlsConnect } from 'node:tls';
import { requireOrSkip } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { buildRouteTable, type Ingress, startIngress } from '../src/index.ts';

const skip = requireOrSkip('ingress TLS termination test', { programs: ['openssl'] });

describe('TLS ended at the ingress (loopback)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'fh3-term-'));
  let app: Server;
  let ingress: Ingress;
  let cert = '';
  const seen: string[] = [];
  const relayed: string[] = [];

  before(async () => {
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=web.test'],
        ...['-addext', 'subjectAltName=DNS:web.test'],
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(join(dir, 'c.pem'), 'utf8');
    const ctx = createSecureContext({ key: readFileSync(join(dir, 'k.pem')), cert });
    // The replica's app: plain HTTP, records what it received.
    app = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['x-marker'] ?? ''}`);
      res.end(`app: ${req.url} for ${req.headers.host}`);
    });
    app.listen(0, '127.0.0.2');
    await once(app, 'listening');
    const port = (app.address() as { port: number }).port;
    const routes = buildRouteTable({
      instances: [
        {
          id: 'web',
          hosts: ['web.test', 'nocert.test'],
          expose: [port],
          healthchecked: false,
          ingressTls: { port },
          replicas: [{ id: 'r1', address: '127.0.0.2', running: true }],
        },
      ],
      health: () => undefined,
      addressAllowed: () => true,
    });
    ingress = await startIngress({
      listen: { http: { host: '127.0.0.1', port: 0 }, tls: { host: '127.0.0.1', port: 0 } },
      routes: () => routes,
      logger: createLogger('silent'),
      terminate: {
        context: (h) => (h === 'web.test' ? ctx : undefined),
        challenge: (h, t) => (h === 'web.test' && t === 'tok123' ? 'tok123.thumb' : undefined),
        relay: async (h, t) => {
          relayed.push(`${h} ${t}`);
          return t === 'peer456' ? 'peer456.peerthumb' : undefined;
        },
      },
    });
  });
  after(async () => {
    await ingress?.close();
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const httpsGet = (servername: string, path: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: ingress.tls!.port, servername, ca: cert });
      let got = '';
      s.on('secureConnect', () =>
        s.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nX-Marker: m-42\r\nConnection: close\r\n\r\n`),
      );
      s.on('data', (d) => {
        got += d;
      });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });

  test('the visitor verifies the ingress’s certificate and gets the app, which received plain HTTP', async () => {
    const got = await httpsGet('web.test', '/hello');
    assert.match(got, /^HTTP\/1\.1 200 OK/);
    assert.match(got, /app: \/hello for web\.test$/);
    assert.deepEqual(seen, ['GET /hello m-42']);
    assert.equal(ingress.stats().terminated, 1);
    // Several in a row, each a new connection and handshake.
    for (let i = 0; i < 5; i++) assert.match(await httpsGet('web.test', `/n${i}`), /app: \/n\d for web\.test$/);
    assert.equal(ingress.stats().terminated, 6);
  });

  test('a host with no certificate yet is closed, counted as no-certificate', async () => {
    seen.length = 0;
    const r = await httpsGet('nocert.test', '/').catch((err: Error) => `closed: ${err.message}`);
    assert.match(r, /^closed: .*disconnected before secure TLS connection|^$/);
    assert.deepEqual(seen, [], 'nothing reached the app');
    assert.equal(ingress.stats().refused['no-certificate'], 1);
  });

  test('HTTP-01: the token the node holds is answered on :80; another node’s is relayed; nobody’s is routed to the app', async () => {
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<string>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: ingress.http!.port,
            path,
            headers: { host: 'web.test', ...headers },
            agent: false,
          },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () => resolve(`${res.statusCode} ${body}`));
          },
        );
        req.on('error', reject);
        req.end();
      });
    assert.equal(await get('/.well-known/acme-challenge/tok123'), '200 tok123.thumb');
    assert.deepEqual(relayed, [], 'a token held here is not relayed');
    // Another node's token: relayed to the peers, their answer returned.
    assert.equal(await get('/.well-known/acme-challenge/peer456'), '200 peer456.peerthumb');
    // Nobody's: relayed, then routed to the app like any request.
    assert.equal(
      await get('/.well-known/acme-challenge/other'),
      '200 app: /.well-known/acme-challenge/other for web.test',
    );
    assert.deepEqual(relayed, ['web.test peer456', 'web.test other']);
    // A request that is itself a relay is never relayed again (no loops between nodes).
    assert.equal(
      await get('/.well-known/acme-challenge/peer456', { 'x-formation-acme-relay': '1' }),
      '200 app: /.well-known/acme-challenge/peer456 for web.test',
    );
    assert.equal(relayed.length, 2);
    assert.ok(!seen.includes('GET /.well-known/acme-challenge/tok123 '), 'the held token never reached the app');
  });
});
