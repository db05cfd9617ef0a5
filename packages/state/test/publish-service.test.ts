// formpack.publish carries what the owner declares for public reach (EXPOSE ports, HEALTHCHECK), so
// every node's ingress can route without the Formpack. It is the owner's word about the owner's own
// instance; its bounds are the Formfile's, and nothing else rides along.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { openStateStore } from '../src/index.ts';
import { FORMPACK_ID, instanceBody } from './helpers.ts';

const publish = (service: unknown) => ({ id: FORMPACK_ID, name: 'web', sha256s: {}, size: 1, service });

test('a publish with service metadata reaches the Formpack and the instance views', () => {
  const store = openStateStore({ path: ':memory:' });
  const dev = generateKeyPair();
  const service = {
    expose: [8080, 443],
    healthcheck: {
      test: { type: 'http', port: 8080, path: '/healthz' },
      intervalMs: 5000,
      timeoutMs: 2000,
      retries: 3,
      startPeriodMs: 0,
    },
  };
  store.author(dev, 'formpack.publish', { ...publish(service), owner: dev.address });
  store.author(dev, 'instance.create', instanceBody());
  assert.deepEqual(store.views().formpacks[0]?.service, service);
  assert.deepEqual(store.views().instances[0]?.formpack?.service, service);
});

test('a publish without it still works (service null); bad service metadata is refused and stores nothing', () => {
  const store = openStateStore({ path: ':memory:' });
  const dev = generateKeyPair();
  store.author(dev, 'formpack.publish', { id: FORMPACK_ID, name: 'web', owner: dev.address, sha256s: {}, size: 1 });
  assert.equal(store.views().formpacks[0]?.service, null);
  const other = openStateStore({ path: ':memory:' });
  for (const bad of [
    { expose: [0] },
    { expose: [70000] },
    { expose: [80, 80] },
    { expose: Array.from({ length: 65 }, (_, i) => i + 1) },
    { expose: [80], extra: true },
    { expose: [80], healthcheck: { test: { type: 'http', port: 80, path: '/x\r\nHost: evil' } } },
    { expose: [80], healthcheck: { test: { type: 'exec', argv: ['rm'] } } },
    { healthcheck: { test: { type: 'tcp', port: 80 } } },
  ]) {
    assert.throws(
      () => other.author(dev, 'formpack.publish', { ...publish(bad), owner: dev.address }),
      (e: unknown) => e instanceof FormError && /service/.test(e.message),
      JSON.stringify(bad),
    );
  }
  assert.equal(other.views().formpacks.length, 0);
});
