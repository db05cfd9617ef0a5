import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Type } from '@sinclair/typebox';
import { loadConfig } from '../src/config.ts';

const Schema = Type.Object({
  port: Type.Integer({ minimum: 1, maximum: 65535, default: 3000 }),
  ratio: Type.Number({ default: 0.5 }),
  name: Type.String({ default: 'x' }),
});

test('loadConfig: env strings become numbers; a non-whole number for an integer is refused, never truncated', () => {
  assert.deepEqual(loadConfig(Schema, { env: { port: '8080', ratio: '0.25' } }), {
    port: 8080,
    ratio: 0.25,
    name: 'x',
  });
  assert.deepEqual(loadConfig(Schema, {}), { port: 3000, ratio: 0.5, name: 'x' });
  // Value.Convert alone turned "80.5" into 80: the operator's typo ran with another port.
  for (const [what, sources] of [
    ['env', { env: { port: '80.5' } }],
    ['flags', { flags: { port: 80.5 } }],
  ] as const) {
    assert.throws(
      () => loadConfig(Schema, sources),
      (e: Error & { code?: string }) =>
        e.code === 'CONFIG_INVALID' && /\/port: Expected integer \(got 80\.5\)/.test(e.message),
      what,
    );
  }
  assert.throws(
    () => loadConfig(Schema, { env: { port: 'big', ratio: 'half' } }),
    (e: Error & { code?: string }) =>
      e.code === 'CONFIG_INVALID' && /\/port/.test(e.message) && /\/ratio/.test(e.message),
  );
});
