import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isFormError } from '@formation/interface';
import { MAX_AUTOSTOP_MINUTES, parseIdleMinutes } from '../src/actions/autostop.ts';

test('form manage autostop: whole minutes 1..10080 (15, 15m, 2h, 1d) or off; anything else is CLI_USAGE saying what to give', () => {
  assert.equal(parseIdleMinutes('15'), 15);
  assert.equal(parseIdleMinutes(' 1 '), 1);
  assert.equal(parseIdleMinutes('15m'), 15);
  assert.equal(parseIdleMinutes('2h'), 120);
  assert.equal(parseIdleMinutes('1h30m'), 90);
  assert.equal(parseIdleMinutes('1d'), 1440);
  assert.equal(parseIdleMinutes(String(MAX_AUTOSTOP_MINUTES)), MAX_AUTOSTOP_MINUTES);
  assert.equal(parseIdleMinutes('off'), 0);
  assert.equal(parseIdleMinutes('OFF'), 0);
  const isUsage = (why: RegExp) => (e: unknown) =>
    isFormError(e) && e.code === 'CLI_USAGE' && why.test(e.message) && /1 to 10080/.test(e.hint ?? '');
  for (const bad of ['-5', '1.5', '15x', '', 'never', '1e3', '0x10', 'm', '1m1d']) {
    assert.throws(() => parseIdleMinutes(bad), isUsage(/expected whole minutes from 1 to 10080/), bad);
  }
  for (const bad of ['0', '0m', '10081', '8d']) {
    assert.throws(() => parseIdleMinutes(bad), isUsage(/outside 1 minute to 7 days/), bad);
  }
  assert.throws(() => parseIdleMinutes('30s'), isUsage(/whole minutes .*write 1m or more/));
});
