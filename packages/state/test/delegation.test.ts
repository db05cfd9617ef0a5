import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDelegation, delegatedKey, generateKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createOp, openStateStore } from '../src/index.ts';
import { FORMPACK_ID, instanceBody } from './helpers.ts';

const rejected = (code: string, re: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === code && re.test(e.message);

test('a dashboard session key acts for its developer: ship, stop, delete count as the owner', () => {
  const store = openStateStore({ path: ':memory:' });
  const dev = generateKeyPair();
  const sessionKey = generateKeyPair();
  const acting = delegatedKey(sessionKey, createDelegation(dev, sessionKey.publicKey, Date.now() + 3600_000));
  assert.equal(acting.address, dev.address, 'a delegated key reports the account it acts for');

  store.author(acting, 'formpack.publish', {
    id: FORMPACK_ID,
    name: 'web',
    owner: dev.address,
    sha256s: {},
    size: 1,
  });
  const create = store.author(acting, 'instance.create', instanceBody());
  assert.equal(create.author, sessionKey.publicKey, 'the session key signs');
  const [inst] = store.views().instances;
  assert.equal(inst?.owner, dev.publicKey, 'the developer owns what the session created');
  assert.equal(inst?.ownerAddress, dev.address);
  assert.equal(store.views().formpacks[0]?.owner, dev.address);

  // The developer's own key and the session key manage the same instance.
  store.author(acting, 'instance.update', { instanceId: inst!.id, desired: 'stopped' });
  assert.equal(store.views().instances[0]?.desired, 'stopped');
  store.author(dev, 'instance.update', { instanceId: inst!.id, desired: 'running' });
  assert.equal(store.views().instances[0]?.desired, 'running');
  store.author(acting, 'instance.commit', { instanceId: inst!.id, revision: 1, hash: 'c'.repeat(64) });
  assert.equal(store.views().instances[0]?.revision, 1);
  store.author(acting, 'instance.delete', { instanceId: inst!.id });
  assert.equal(store.views().instances[0]?.deleted, true);
  store.close();
});

test('delegations are checked: wrong key, expired, forged, other owner, out-of-scope kinds', () => {
  const store = openStateStore({ path: ':memory:' });
  const dev = generateKeyPair();
  const other = generateKeyPair();
  const create = store.author(dev, 'instance.create', instanceBody());
  const id = create.body.id as string;
  const sessionKey = generateKeyPair();
  const now = Date.now();
  const good = createDelegation(dev, sessionKey.publicKey, now + 3600_000);

  // A delegation for another key, carried by this one.
  const stolen = createDelegation(dev, generateKeyPair().publicKey, now + 3600_000);
  assert.throws(
    () => store.submit(createOp(sessionKey, 'instance.delete', { instanceId: id, onBehalfOf: stolen }, [create.hash])),
    rejected('STATE_OP_FORBIDDEN', /delegation is for key/),
  );
  // Expired at the op's time.
  const expired = createDelegation(dev, sessionKey.publicKey, now - 1000);
  assert.throws(
    () => store.submit(createOp(sessionKey, 'instance.delete', { instanceId: id, onBehalfOf: expired }, [create.hash])),
    rejected('STATE_OP_FORBIDDEN', /expired/),
  );
  // Forged: the session key signs a delegation "from" the developer with its own key.
  const forged = { ...createDelegation(sessionKey, sessionKey.publicKey, now + 3600_000), owner: dev.publicKey };
  assert.throws(
    () => store.submit(createOp(sessionKey, 'instance.delete', { instanceId: id, onBehalfOf: forged }, [create.hash])),
    rejected('STATE_OP_FORBIDDEN', /signature does not verify/),
  );
  // Extended: the expiry changed after signing.
  const extended = { ...good, expiresAt: good.expiresAt + 1 };
  assert.throws(
    () =>
      store.submit(createOp(sessionKey, 'instance.delete', { instanceId: id, onBehalfOf: extended }, [create.hash])),
    rejected('STATE_OP_FORBIDDEN', /signature does not verify/),
  );
  // A valid delegation from another developer does not reach this developer's instance.
  const otherSession = delegatedKey(sessionKey, createDelegation(other, sessionKey.publicKey, now + 3600_000));
  assert.throws(
    () => store.author(otherSession, 'instance.update', { instanceId: id, desired: 'stopped' }),
    rejected('STATE_OP_FORBIDDEN', /only the owner/),
  );
  // Kinds outside the scope: refused before signing, and by the state if forced.
  const acting = delegatedKey(sessionKey, good);
  assert.throws(() => store.author(acting, 'formnet.leave', {}), rejected('AUTH_FORBIDDEN', /delegated key/));
  assert.throws(
    () => store.submit(createOp(sessionKey, 'account.update', { name: 'x', onBehalfOf: good })),
    rejected('STATE_OP_INVALID', /must NOT have additional properties|onBehalfOf/),
  );
  // An update that carries only the delegation changes nothing and is refused.
  assert.throws(
    () => store.author(acting, 'instance.update', { instanceId: id }),
    rejected('STATE_OP_INVALID', /changes nothing/),
  );
  const [inst] = store.views().instances;
  assert.equal(inst?.deleted, false, 'nothing refused changed the instance');
  assert.equal(inst?.desired, 'running');
  store.close();
});

test('delegated ops reach the same views on every replica, whatever the order', () => {
  const dev = generateKeyPair();
  const sessionKey = generateKeyPair();
  const acting = delegatedKey(sessionKey, createDelegation(dev, sessionKey.publicKey, Date.now() + 3600_000));
  const a = openStateStore({ path: ':memory:' });
  const create = a.author(acting, 'instance.create', instanceBody());
  a.author(acting, 'instance.update', { instanceId: create.body.id as string, replicas: 2 });
  a.author(dev, 'instance.update', { instanceId: create.body.id as string, desired: 'stopped' });
  const ops = a.opsSince([]);
  const b = openStateStore({ path: ':memory:' });
  const r = b.applyBatch([...ops].reverse());
  assert.equal(r.rejected.length, 0);
  assert.equal(b.digest(), a.digest());
  assert.equal(b.views().instances[0]?.owner, dev.publicKey);
  assert.equal(b.views().instances[0]?.replicas, 2);
  a.close();
  b.close();
});
