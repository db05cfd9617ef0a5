import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, generateWireGuardKeyPair } from '@formation/identity';
import { createLogger, setApiIdentity } from '@formation/service';
import { createFormnetService, type FormnetMember, type JoinResponse, MemoryFormnetState } from '../src/index.ts';
import { AUDIENCE, signedPost } from './signed-post.ts';

const logger = createLogger('silent');

async function setup() {
  const state = new MemoryFormnetState();
  const changes: string[] = [];
  const node = generateKeyPair();
  const nodeWg = generateWireGuardKeyPair();
  await state.upsertMember({
    id: node.address,
    kind: 'node',
    wgPublicKey: nodeWg.publicKey,
    endpoint: '192.168.77.1:51820',
  });
  const app = await createFormnetService({
    state,
    logger,
    dns: { server: '10.128.0.1', port: 53, domain: 'dev.formation.local' },
    onChange: (m, c) => {
      changes.push(`${c}:${m.id}`);
    },
  });
  setApiIdentity(app, AUDIENCE);
  return { state, app, changes, node };
}

const signed = (key = generateKeyPair(), body: unknown = {}, path = '/join') => signedPost(key, path, body);

test('a signed join gets an address, interface settings and the other members as peers', async () => {
  const { app, changes, node, state } = await setup();
  const dev = generateKeyPair();
  const wg = generateWireGuardKeyPair();
  const res = await app.inject(signed(dev, { wgPublicKey: wg.publicKey }));
  assert.equal(res.statusCode, 200, res.body);
  const j = res.json() as JoinResponse;
  assert.match(j.address, /^10\.128\.\d+\.\d+$/);
  assert.equal(j.interface.address, `${j.address}/32`);
  assert.equal(j.interface.network, '10.128.0.0/9');
  assert.equal(j.interface.dns?.domain, 'dev.formation.local');
  assert.equal(j.member.id, dev.address, 'the signer is the identity');
  assert.equal(j.peers.length, 1);
  assert.equal(j.peers[0]?.id, node.address);
  assert.equal(j.peers[0]?.endpoint, '192.168.77.1:51820');
  assert.equal(j.peers[0]?.allowedIps.length, 2, 'node peer carries its /32 and its instance slice');
  assert.deepEqual(changes, [`join:${dev.address}`]);

  // Joining again (new WireGuard key, e.g. after a reinstall) keeps the address.
  const again = await app.inject(signed(dev, { wgPublicKey: generateWireGuardKeyPair().publicKey }));
  assert.equal((again.json() as JoinResponse).address, j.address);
  assert.equal((await state.listMembers()).length, 2);

  const peers = await app.inject({ method: 'GET', url: '/peers' });
  assert.equal(peers.statusCode, 200);
  assert.equal((peers.json() as { peers: FormnetMember[] }).peers.length, 2);

  const leave = await app.inject(signed(dev, {}, '/leave'));
  assert.equal(leave.statusCode, 200, leave.body);
  assert.equal((await state.listMembers()).length, 1);
  assert.equal((await app.inject(signed(dev, {}, '/leave'))).statusCode, 404);
});

test('bad or missing signatures are refused with 401 and change nothing', async () => {
  const { app, state } = await setup();
  const wg = generateWireGuardKeyPair();
  const unsigned = await app.inject({
    method: 'POST',
    url: '/join',
    payload: JSON.stringify({ wgPublicKey: wg.publicKey }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(unsigned.statusCode, 401);
  assert.equal(unsigned.json().error.code, 'AUTH_MISSING');

  const req = signed(generateKeyPair(), { wgPublicKey: wg.publicKey });
  req.payload = JSON.stringify({ wgPublicKey: generateWireGuardKeyPair().publicKey }); // tampered body
  const tampered = await app.inject(req);
  assert.equal(tampered.statusCode, 401);
  assert.equal(tampered.json().error.code, 'AUTH_BAD_SIGNATURE');

  const other = signed(generateKeyPair(), { wgPublicKey: wg.publicKey });
  other.headers['x-form-public-key'] = generateKeyPair().publicKey; // claims to be someone else
  assert.equal((await app.inject(other)).statusCode, 401);

  const ok = signed(generateKeyPair(), { wgPublicKey: wg.publicKey });
  assert.equal((await app.inject(ok)).statusCode, 200);
  assert.equal((await app.inject(ok)).statusCode, 401, 'replayed request');
  assert.equal((await state.listMembers()).length, 2);
});

test('malformed join bodies are refused with 400', async () => {
  const { app } = await setup();
  for (const body of [
    { wgPublicKey: 'not-a-key' },
    { wgPublicKey: generateWireGuardKeyPair().publicKey, endpoint: 'no-port' },
    { wgPublicKey: generateWireGuardKeyPair().publicKey, endpoint: '1.2.3.4:70000' },
    {},
  ]) {
    const res = await app.inject(signed(generateKeyPair(), body));
    assert.equal(res.statusCode, 400, JSON.stringify(body));
  }
});

test('a WireGuard key already used by another member is a conflict', async () => {
  const { app } = await setup();
  const wg = generateWireGuardKeyPair();
  assert.equal((await app.inject(signed(generateKeyPair(), { wgPublicKey: wg.publicKey }))).statusCode, 200);
  assert.equal((await app.inject(signed(generateKeyPair(), { wgPublicKey: wg.publicKey }))).statusCode, 409);
});
