import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sha256File } from '../src/files.ts';

test('sha256File is the hex sha256 of the contents; a missing file rejects', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-sha-'));
  try {
    const data = Buffer.alloc(200_000, 7); // more than one stream chunk
    writeFileSync(join(dir, 'f'), data);
    assert.equal(await sha256File(join(dir, 'f')), createHash('sha256').update(data).digest('hex'));
    writeFileSync(join(dir, 'empty'), '');
    assert.equal(await sha256File(join(dir, 'empty')), createHash('sha256').digest('hex'));
    await assert.rejects(sha256File(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
