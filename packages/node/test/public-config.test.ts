import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { checkPublicConfig } from '../src/daemon.ts';

test('a public node keeps its plain listeners on loopback; 0.0.0.0 or the public address as host is refused', () => {
  checkPublicConfig({ host: '127.0.0.1', publicAddress: '198.51.100.11' });
  checkPublicConfig({ host: '0.0.0.0' }); // no public address: the operator's choice, as before
  for (const host of ['0.0.0.0', '198.51.100.11', '10.0.0.5']) {
    assert.throws(
      () => checkPublicConfig({ host, publicAddress: '198.51.100.11' }),
      (err: unknown) =>
        err instanceof FormError && err.code === 'CONFIG_INVALID' && /must be loopback/.test(err.message),
    );
  }
});
