import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNodeConfig, nodePaths } from '../src/config.ts';

test('config: autostopMinuteMs (tests shorten the autostop minute) is 1000..60000 ms, default a minute', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fh2-cfg-'));
  try {
    assert.equal(loadNodeConfig({ dataDir }, {}).autostopMinuteMs, 60_000);
    assert.equal(loadNodeConfig({ dataDir }, { FORM_AUTOSTOP_MINUTE_MS: '8000' }).autostopMinuteMs, 8000);
    for (const v of ['999', '0', '-5', '60001', '8s', '1.5']) {
      assert.throws(
        () => loadNodeConfig({ dataDir }, { FORM_AUTOSTOP_MINUTE_MS: v }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /autostopMinuteMs/.test(err.message),
        v,
      );
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('config: bootSnapshotMaxMiB defaults to 2048, from FORM_BOOT_SNAPSHOT_MAX_MIB; bad values refused', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fh2-cfg-'));
  try {
    assert.equal(loadNodeConfig({ dataDir }, {}).bootSnapshotMaxMiB, 2048);
    assert.equal(loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOT_MAX_MIB: '512' }).bootSnapshotMaxMiB, 512);
    for (const v of ['0', '100', '-1', '1.5', 'lots']) {
      assert.throws(
        () => loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOT_MAX_MIB: v }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /bootSnapshotMaxMiB/.test(err.message),
        v,
      );
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('config: bootSnapshots from FORM_BOOT_SNAPSHOTS or the config file, flags win; bad values refused', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fh1-cfg-'));
  try {
    assert.equal(loadNodeConfig({ dataDir }, {}).bootSnapshots, true, 'on unless turned off');
    assert.equal(loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOTS: 'true' }).bootSnapshots, true);
    assert.equal(loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOTS: '0' }).bootSnapshots, false);
    assert.equal(
      loadNodeConfig({ dataDir, bootSnapshots: false }, { FORM_BOOT_SNAPSHOTS: 'true' }).bootSnapshots,
      false,
      'a flag wins over the environment',
    );
    const paths = nodePaths(dataDir);
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(paths.configFile, JSON.stringify({ bootSnapshots: true }));
    assert.equal(loadNodeConfig({ dataDir }, {}).bootSnapshots, true, 'from the config file');
    assert.equal(loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOTS: 'false' }).bootSnapshots, false, 'env over file');
    for (const v of ['yes', 'on', 'maybe']) {
      assert.throws(
        () => loadNodeConfig({ dataDir }, { FORM_BOOT_SNAPSHOTS: v }),
        (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && /bootSnapshots/.test(err.message),
        v,
      );
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
