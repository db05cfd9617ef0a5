import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormError } from '@formation/interface';
import { type ExpectedSourceInput, expectedMeasurementSource, parsePinnedMeasurement } from '../src/index.ts';

const D_OWN = 'a'.repeat(64); // the manifest's digest for its own VCPU/MEM
const D_INST = 'b'.repeat(64); // for the instance's sizes
const base = {
  digests: [D_OWN, D_INST],
  instance: 'web',
  formpackId: 'f'.repeat(64),
  sending: 'secret DB_PASSWORD',
} as const;

type Row = [
  string,
  Partial<ExpectedSourceInput> & Pick<ExpectedSourceInput, 'manifest' | 'use'>,
  { from: string; verified: boolean; counts: boolean; label: RegExp } | { throws: string; message: RegExp },
];

const rows: Row[] = [
  [
    'local build, attest',
    { manifest: 'local build', use: 'verify' },
    { from: 'local build', verified: true, counts: true, label: /local build/ },
  ],
  [
    'local build, secret',
    { manifest: 'local build', use: 'secret' },
    { from: 'local build', verified: true, counts: true, label: /local build/ },
  ],
  [
    'node manifest, attest',
    { manifest: 'node manifest', use: 'verify' },
    {
      from: 'node manifest',
      verified: false,
      counts: false,
      label: /^measurement from the node \(unverified\): the node could lie$/,
    },
  ],
  [
    'node manifest, attest --trust-node-measurement',
    { manifest: 'node manifest', use: 'verify', trustNode: true },
    { from: 'node manifest', verified: false, counts: true, label: /unverified.*accepted: --trust-node-measurement/ },
  ],
  [
    'node manifest, secret',
    { manifest: 'node manifest', use: 'secret' },
    { throws: 'SECRET_REFUSED', message: /^Cannot send secret DB_PASSWORD to web: .*from the node itself/ },
  ],
  [
    'node manifest, secret, --trust-node-measurement does not open the door',
    { manifest: 'node manifest', use: 'secret', trustNode: true },
    { throws: 'SECRET_REFUSED', message: /from the node itself/ },
  ],
  [
    'node manifest, secret, pin = Formpack digest',
    { manifest: 'node manifest', use: 'secret', pinned: `sha256:${D_OWN}` },
    { from: 'pinned measurement', verified: true, counts: true, label: /pinned measurement sha256:a{64}/ },
  ],
  [
    'node manifest, attest, pin = instance digest (upper case)',
    { manifest: 'node manifest', use: 'verify', pinned: D_INST.toUpperCase() },
    { from: 'pinned measurement', verified: true, counts: true, label: /pinned/ },
  ],
  [
    'node manifest, secret, pin differs',
    { manifest: 'node manifest', use: 'secret', pinned: 'c'.repeat(64) },
    { throws: 'SECRET_REFUSED', message: /is not the measurement you pinned \(sha256:c{64}\)/ },
  ],
  [
    'node manifest, attest, pin differs',
    { manifest: 'node manifest', use: 'verify', pinned: 'c'.repeat(64), trustNode: true },
    { throws: 'ATTEST_FAILED', message: /^Cannot attest web: .*not the measurement you pinned/ },
  ],
  [
    'local build, pin differs',
    { manifest: 'local build', use: 'verify', pinned: 'c'.repeat(64) },
    { throws: 'ATTEST_FAILED', message: /the local build of Formpack f{12} measures sha256:a{64}/ },
  ],
  [
    'malformed pin',
    { manifest: 'node manifest', use: 'secret', pinned: 'abc' },
    { throws: 'CLI_USAGE', message: /^Cannot use --measurement "abc": it is not a sha256/ },
  ],
];

describe('expectedMeasurementSource: where the expected measurement comes from, and what it allows', () => {
  for (const [name, input, want] of rows) {
    it(name, () => {
      const run = () => expectedMeasurementSource({ ...base, ...input });
      if ('throws' in want) {
        assert.throws(run, (e: unknown) => {
          assert.ok(e instanceof FormError);
          assert.equal(e.code, want.throws);
          assert.match(e.message, want.message);
          if (want.throws === 'SECRET_REFUSED') assert.match(e.hint ?? '', /--local --measurement/);
          return true;
        });
        return;
      }
      const got = run();
      assert.deepEqual(
        { from: got.from, verified: got.verified, counts: got.counts },
        {
          from: want.from,
          verified: want.verified,
          counts: want.counts,
        },
      );
      assert.match(got.label, want.label);
    });
  }

  it('parsePinnedMeasurement accepts what `form pack inspect --measurement` prints', () => {
    assert.equal(parsePinnedMeasurement(` sha256:${'A'.repeat(64)}\n`), 'a'.repeat(64));
    assert.throws(() => parsePinnedMeasurement(`sha512:${'a'.repeat(64)}`), /not a sha256/);
    assert.throws(() => parsePinnedMeasurement('a'.repeat(63)), /not a sha256/);
  });
});
