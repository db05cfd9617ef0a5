// Fuzzing the op decoder (issue 17): whatever a peer or an HTTP client sends as an op — any JSON value,
// or a valid signed op with one field mutated, deleted or added — `submit` either accepts a genuine op
// or throws a coded FormError, `applyBatch` never throws and accounts for every input, and nothing
// refused changes the state (digest). Bounded by time (FORM_FUZZ_MS, default 2.5 s per property;
// FORM_FUZZ_SEED replays a run).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ERROR_CODES, isFormError } from '@formation/interface';
import { fuzzParams } from '@formation/interface/testing';
import fc from 'fast-check';
import { createOp } from '../src/index.ts';
import { key, memStore } from './helpers.ts';

const CODES = new Set<string>(Object.keys(ERROR_CODES));

const author = key(3);
const store = memStore();
const base = store.author(author, 'account.update', { name: 'base' });
const genuine = createOp(author, 'account.update', { name: 'genuine' }, [base.hash]);

/** submit(x): accepted/duplicate/pending, or a coded FormError; anything else fails the property. */
function submitChecked(x: unknown): 'ok' | 'refused' {
  try {
    store.submit(x);
    return 'ok';
  } catch (err) {
    assert.ok(isFormError(err), `not a FormError: ${(err as Error)?.stack ?? String(err)}`);
    assert.ok(CODES.has((err as { code: string }).code), `unknown code ${(err as { code: string }).code}`);
    assert.ok((err as Error).message.length > 0);
    return 'refused';
  }
}

const fieldNames = ['v', 'author', 'deps', 'kind', 'body', 'ts', 'sig', 'hash', 'extra'] as const;

describe('op decoder under fuzzing', () => {
  test('any JSON value as an op: refused with a coded error, state unchanged', () => {
    const digest = store.digest();
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (x) => {
        assert.equal(submitChecked(x), 'refused');
        assert.equal(store.digest(), digest);
      }),
      fuzzParams(20_000),
    );
  });

  test('a signed op with one field changed, dropped or added: refused unless it is the same op', () => {
    // The genuine op is held already: an input that still decodes to it (a dropped `hash`, which is
    // recomputed, or a dropped `v`, which defaults to 1) is a duplicate; anything else must be refused.
    store.submit(genuine);
    const digest = store.digest();
    const size = store.size;
    fc.assert(
      fc.property(
        fc.constantFrom(...fieldNames),
        fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined)),
        (field, value) => {
          const mutated: Record<string, unknown> = { ...(genuine as unknown as Record<string, unknown>) };
          if (value === undefined) delete mutated[field];
          else mutated[field] = value;
          submitChecked(mutated);
          assert.equal(store.size, size, `a new op from ${field} = ${JSON.stringify(value)}`);
          assert.equal(store.digest(), digest);
        },
      ),
      fuzzParams(20_000),
    );
  });

  test('a batch of anything: never throws, every input accounted for, only genuine ops accepted', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(genuine as unknown)), { maxLength: 20 }),
        (xs) => {
          const r = store.applyBatch(xs);
          const n = r.accepted.length + r.rejected.length + r.pending.length + r.duplicates.length;
          assert.ok(n >= xs.length - xs.filter((x) => x === genuine).length, 'every input is accounted for');
          for (const rej of r.rejected) assert.ok(CODES.has(rej.code), `unknown code ${rej.code}`);
          assert.deepEqual(r.accepted, [], 'nothing new: the genuine op is held already');
        },
      ),
      fuzzParams(5_000),
    );
  });
});
