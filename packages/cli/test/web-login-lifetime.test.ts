// `form web login` signs a delegation for the dashboard's session key until the end the dashboard
// proposes. A dashboard (or a node that lies) asking for ten years got a ten-year delegation before
// issue 16; now the CLI refuses to sign anything longer than MAX_DELEGATION_MS and says why. The
// dashboard here is a fake HTTP server on 127.0.0.1 recording whether a delegation ever reached it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { developerKeyPath, generateKeyPair, MAX_DELEGATION_MS, saveKey } from '@formation/identity';
import { runForm } from './run-form.ts';

const dev = generateKeyPair();
const session = generateKeyPair();
const identity = generateKeyPair().publicKey;

describe('form web login refuses a delegation longer than the maximum lifetime', () => {
  const home = mkdtempSync(join(tmpdir(), 'form-web-login-'));
  let server: Server;
  let base = '';
  let sessionExpiresAt = 0;
  let delegations: Array<{ expiresAt: number; issuedAt: number }> = [];

  before(async () => {
    await saveKey(dev, developerKeyPath(home));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/identity') return res.end(JSON.stringify({ identity }));
        if (req.url === '/api/login/token') {
          return res.end(
            JSON.stringify({
              token: 't'.repeat(32),
              expiresAt: Date.now() + 300_000,
              path: '/login#t',
              delegate: session.publicKey,
              sessionExpiresAt,
            }),
          );
        }
        if (req.url === '/api/login/delegation') {
          delegations.push((JSON.parse(body) as { delegation: { expiresAt: number; issuedAt: number } }).delegation);
          return res.end('{}');
        }
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no' } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('a ten-year session: refused, nothing signed reaches the dashboard', async () => {
    delegations = [];
    sessionExpiresAt = Date.now() + 10 * 365 * 86_400_000;
    const r = await runForm(['web', 'login', '--web', base], { FORM_HOME: home });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /more than the 168 h a delegation may last/);
    assert.deepEqual(delegations, []);
  });

  test('a session within the maximum: signed, with issuedAt and that end', async () => {
    delegations = [];
    sessionExpiresAt = Date.now() + 12 * 3_600_000;
    const r = await runForm(['web', 'login', '--web', base], { FORM_HOME: home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(delegations.length, 1);
    const d = delegations[0] as { expiresAt: number; issuedAt: number };
    assert.equal(d.expiresAt, sessionExpiresAt);
    assert.ok(d.expiresAt - d.issuedAt <= MAX_DELEGATION_MS);
  });
});
