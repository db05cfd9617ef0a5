import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countOption, MAX_REPLICAS, replicaCount } from '../src/replica-count.ts';

test('replicaCount: whole numbers from 1 to 16; anything else is CLI_USAGE naming what was asked', () => {
  assert.equal(replicaCount('1', 'x'), 1);
  assert.equal(replicaCount(String(MAX_REPLICAS), 'x'), 16);
  for (const bad of ['0', '17', '2.5', '-1', 'three', '']) {
    assert.throws(() => replicaCount(bad, `scale to ${bad} replicas`), {
      code: 'CLI_USAGE',
      message: `Cannot scale to ${bad} replicas: give a whole number from 1 to 16`,
    });
  }
});

test('countOption: undefined when the flag is not given; the flag and value in the refusal', () => {
  assert.equal(countOption('--replicas', undefined), undefined);
  assert.equal(countOption('--replicas', '3'), 3);
  assert.throws(() => countOption('--max-unavailable', '0'), {
    code: 'CLI_USAGE',
    message: 'Cannot use --max-unavailable 0: give a whole number from 1 to 16',
  });
});
