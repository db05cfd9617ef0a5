import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, generateWireGuardKeyPair, type KeyPair } from '@formation/identity';
import { createLogger, setApiIdentity } from '@formation/service';
import { createOp, openStateStore } from '@formation/state';
import {
  allocateNodeSlice,
  createFormnetService,
  desiredPeers,
  formnetPeerOp,
  type JoinResponse,
  StateFormnetAdapter,
} from '../src/index.ts';
import { AUDIENCE, signedPost } from './signed-post.ts';

const logger = createLogger('silent');
const signed = (key: KeyPair, body: unknown) => signedPost(key, '/join', body);

test('join API backed by the real state store: members are formnet.peer + formnet.allocate ops', async () => {
  const store = openStateStore({ path: ':memory:' });
  try {
    const node = generateKeyPair();
    const nodeWg = generateWireGuardKeyPair();
    const slice = allocateNodeSlice([]);
    store.author(node, 'node.register', {
      capacity: { vcpu: 2, memMiB: 4096, diskGiB: 20 },
      endpoint: '192.168.77.1:3005',
      p2pPeerId: 'peer',
      wgPublicKey: nodeWg.publicKey,
      formnetRange: slice,
    });
    const state = new StateFormnetAdapter({ store, nodeKey: node });
    const self = await state.upsertMember({
      id: node.address,
      publicKey: node.publicKey,
      kind: 'node',
      wgPublicKey: nodeWg.publicKey,
      endpoint: '192.168.77.1:51820',
    });
    assert.equal(self.kind, 'node');
    assert.equal(self.slice, slice);
    assert.match(self.address, /^10\.128\./);

    const app = await createFormnetService({ state, logger });
    setApiIdentity(app, AUDIENCE);
    const dev = generateKeyPair();
    const wg = generateWireGuardKeyPair();
    const res = await app.inject(signed(dev, { wgPublicKey: wg.publicKey, peerOp: formnetPeerOp(dev, wg.publicKey) }));
    assert.equal(res.statusCode, 200, res.body);
    const j = res.json() as JoinResponse;
    assert.notEqual(j.address, self.address);
    assert.deepEqual(
      j.peers.map((p) => [p.id, p.endpoint, p.allowedIps]),
      [[node.address, '192.168.77.1:51820', [`${self.address}/32`, slice]]],
    );
    // The state now holds the developer's own op and the node's allocation: every replica derives the same members.
    const v = store.views();
    assert.equal(v.formnetPeers.length, 2);
    assert.equal(v.allocations.filter((a) => a.peer === dev.publicKey).length, 1);
    assert.deepEqual(
      desiredPeers(node.address, await state.listMembers()).map((p) => p.publicKey),
      [wg.publicKey],
    );
    // Joining again keeps the address and allocates nothing new.
    const again = await app.inject(
      signed(dev, { wgPublicKey: wg.publicKey, peerOp: formnetPeerOp(dev, wg.publicKey) }),
    );
    assert.equal((again.json() as JoinResponse).address, j.address);
    assert.equal(store.views().allocations.length, 2);

    // A formnet.peer op signed by someone else than the request signer is refused.
    const mallory = generateKeyPair();
    const stolen = await app.inject(
      signed(mallory, { wgPublicKey: wg.publicKey, peerOp: formnetPeerOp(dev, wg.publicKey) }),
    );
    assert.equal(stolen.statusCode, 400);
    const noOp = await app.inject(signed(mallory, { wgPublicKey: generateWireGuardKeyPair().publicKey }));
    assert.equal(noOp.statusCode, 400);
    assert.equal(store.views().allocations.length, 2);

    // Leaving needs the member's own signed formnet.leave; someone else's is refused.
    const leave = (key: KeyPair, leaveOp: unknown) => signedPost(key, '/leave', { leaveOp });
    const forged = await app.inject(leave(dev, createOp(mallory, 'formnet.leave', {}, [])));
    assert.equal(forged.statusCode, 400);
    assert.equal(store.views().formnetPeers.length, 2);
    const left = await app.inject(leave(dev, createOp(dev, 'formnet.leave', {}, [])));
    assert.equal(left.statusCode, 200, left.body);
    assert.deepEqual(
      (await state.listMembers()).map((m) => m.id),
      [node.address],
    );
    // Rejoining gets the same address back: addresses are never handed to someone else.
    const rejoin = await app.inject(
      signed(dev, { wgPublicKey: wg.publicKey, peerOp: formnetPeerOp(dev, wg.publicKey) }),
    );
    assert.equal((rejoin.json() as JoinResponse).address, j.address);
  } finally {
    store.close();
  }
});
