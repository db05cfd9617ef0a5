// The integration-prerequisite checks every package's integration tests use.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { integrationPrerequisites, missingPrograms } from '../src/integration.ts';

const NONE = `form-no-such-program-${process.pid}`;

test('missingPrograms: what is on PATH is not missing, a made-up name is, in the order asked', () => {
  assert.deepEqual(missingPrograms(['sh']), []);
  assert.deepEqual(missingPrograms([NONE, 'sh', `${NONE}-2`]), [NONE, `${NONE}-2`]);
  assert.deepEqual(missingPrograms([]), []);
});

test('integrationPrerequisites: names what is missing; throws instead under FORM_REQUIRE_INTEGRATION=1', () => {
  const saved = process.env.FORM_REQUIRE_INTEGRATION;
  try {
    delete process.env.FORM_REQUIRE_INTEGRATION;
    assert.equal(integrationPrerequisites('x test', { programs: ['sh'] }), '');
    assert.equal(integrationPrerequisites('x test', { programs: ['sh', NONE] }), `missing ${NONE}`);
    process.env.FORM_REQUIRE_INTEGRATION = '1';
    assert.throws(() => integrationPrerequisites('x test', { programs: [NONE] }), new RegExp(`x test missing ${NONE}`));
  } finally {
    if (saved === undefined) delete process.env.FORM_REQUIRE_INTEGRATION;
    else process.env.FORM_REQUIRE_INTEGRATION = saved;
  }
});
