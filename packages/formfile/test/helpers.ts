import assert from 'node:assert/strict';
import type { FormfileSpec } from '@formation/interface';
import { type FormfileDiagnostic, parseFormfile } from '../src/index.ts';

/** Parse text that must be valid; fails the test with the diagnostics otherwise. */
export function ok(text: string): FormfileSpec {
  const r = parseFormfile(text);
  assert.deepEqual(r.errors, [], 'expected no errors');
  assert.ok(r.spec);
  return r.spec;
}

/** Parse text that must be invalid; returns the diagnostics. */
export function bad(text: string): FormfileDiagnostic[] {
  const r = parseFormfile(text);
  assert.equal(r.spec, null, 'expected spec to be null');
  assert.ok(r.errors.length > 0, 'expected errors');
  return r.errors;
}

/** Assert exactly one error (besides none other) with this code at line:column, message matching. */
export function one(text: string, code: string, line: number, column: number, message?: RegExp): FormfileDiagnostic {
  const errors = bad(text);
  assert.equal(errors.length, 1, `expected one error, got ${JSON.stringify(errors, null, 1)}`);
  const e = errors[0]!;
  assert.equal(e.code, code, e.message);
  assert.equal(e.line, line, `line of: ${e.message}`);
  assert.equal(e.column, column, `column of: ${e.message}`);
  if (message) assert.match(e.message, message);
  return e;
}
