import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isFormError } from '@formation/interface';
import { MAX_AUTOSTOP_MINUTES, parseIdleMinutes } from '../src/actions/autostop.ts';

test('form manage autostop: whole minutes 1..10080 or off; anything else is CLI_USAGE saying what to give', () => {
  assert.equal(parseIdleMinutes('15'), 15);
  assert.equal(parseIdleMinutes(' 1 '), 1);
  assert.equal(parseIdleMinutes(String(MAX_AUTOSTOP_MINUTES)), MAX_AUTOSTOP_MINUTES);
  assert.equal(parseIdleMinutes('off'), 0);
  assert.equal(parseIdleMinutes('OFF'), 0);
  for (const bad of ['0', '-5', '1.5', '10081', '15m', '', 'never', '1e3', '0x10']) {
    assert.throws(
      () => parseIdleMinutes(bad),
      (e: unknown) => isFormError(e) && e.code === 'CLI_USAGE' && /1 to 10080, or off/.test(e.message),
      bad,
    );
  }
});
