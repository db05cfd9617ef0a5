import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { attestationSummary, diskKeyPath, ensureDiskKey, loadDiskKey, parseDiskStatus } from '../src/index.ts';

describe('encrypted data disk: pure parts', () => {
  it('parses form-disk status and refuses what it does not understand', () => {
    assert.deepEqual(parseDiskStatus('state=unlocked\ndevice=/dev/vdb\nluks=yes\nmount=/data\n'), {
      state: 'unlocked',
      device: '/dev/vdb',
      luks: 'yes',
      mount: '/data',
    });
    assert.deepEqual(parseDiskStatus('state=absent\n'), { state: 'absent' });
    assert.equal(parseDiskStatus('state=open\n').state, 'unknown');
    assert.match(parseDiskStatus('garbage').error ?? '', /unexpected form-disk status output: garbage/);
    assert.equal(parseDiskStatus('state=locked\nluks=maybe').luks, undefined);
  });

  it('makes the disk key once (32 random bytes, hex, 0600) and loads the same key again', () => {
    const home = mkdtempSync('/tmp/fattest-diskkey-');
    try {
      assert.equal(loadDiskKey('inst1', home), null);
      const a = ensureDiskKey('inst1', home);
      assert.equal(a.created, true);
      assert.equal(a.key.length, 32);
      assert.equal(a.path, `${home}/keys/disks/inst1.key`);
      assert.equal(statSync(a.path).mode & 0o777, 0o600);
      assert.equal(readFileSync(a.path, 'utf8').trim(), a.key.toString('hex'));
      const b = ensureDiskKey('inst1', home);
      assert.equal(b.created, false);
      assert.deepEqual(b.key, a.key);
      assert.notDeepEqual(ensureDiskKey('inst2', home).key, a.key, 'one key per instance');
      writeFileSync(a.path, 'not hex\n');
      assert.throws(() => loadDiskKey('inst1', home), /expected 64 hex characters/);
      assert.throws(() => diskKeyPath('../etc/passwd', home), /bad id/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('summarises a verdict as ok or FAILED (reason)', () => {
    assert.equal(attestationSummary({ verdict: { ok: true, checks: [], reason: '' } }), 'ok');
    assert.equal(
      attestationSummary({ verdict: { ok: false, checks: [], reason: 'measurement.disk: base disk differs' } }),
      'FAILED (measurement.disk: base disk differs)',
    );
  });
});
