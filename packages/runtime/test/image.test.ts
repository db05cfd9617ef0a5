import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '@formation/service';
import * as tar from 'tar';
import { writeDockerArchive } from '../src/docker-archive.ts';
import { ImageStore } from '../src/image-store.ts';
import { readTar } from '../src/tar-reader.ts';
import { rawTar, tinyArchive, tmp } from './helpers.ts';

const logger = createLogger('silent');

const dirs: string[] = [];
after(async () => {
  const { rm } = await import('node:fs/promises');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
function work(name: string): string {
  const d = tmp(name);
  dirs.push(d);
  return d;
}

describe('image store: docker save archives without Docker', () => {
  it('imports a gzip archive, verifies its id and applies whiteouts layer by layer', async () => {
    const w = work('layers');
    const l1 = join(w, 'l1');
    mkdirSync(join(l1, 'etc'), { recursive: true });
    mkdirSync(join(l1, 'data/sub'), { recursive: true });
    writeFileSync(join(l1, 'etc/keep'), 'keep');
    writeFileSync(join(l1, 'etc/gone'), 'gone');
    writeFileSync(join(l1, 'data/sub/old'), 'old');
    const l2tar = join(w, 'l2.tar');
    writeFileSync(
      l2tar,
      rawTar([
        { name: 'etc/.wh.gone' },
        { name: 'data/.wh..wh..opq' },
        { name: 'data/new', data: 'new' },
        { name: 'etc/added', data: 'added' },
        { name: 'etc/link', type: '2', linkname: '/etc/keep' },
      ]),
    );
    const archive = join(w, 'img.tar.gz');
    const { imageId } = await writeDockerArchive({
      out: archive,
      repoTag: 'test/tiny:1',
      layers: [{ dir: l1 }, { tarFile: l2tar }],
      config: { Cmd: ['/bin/true'] },
      gzip: true,
    });
    assert.equal(readFileSync(archive)[0], 0x1f, 'archive is gzip');
    const store = new ImageStore(join(w, 'store'), logger);
    const img = await store.import(archive, { expectId: imageId });
    assert.equal(img.id, imageId);
    assert.deepEqual(img.repoTags, ['test/tiny:1']);
    assert.equal(readFileSync(join(img.rootfs, 'etc/keep'), 'utf8'), 'keep');
    assert.equal(readFileSync(join(img.rootfs, 'etc/added'), 'utf8'), 'added');
    assert.equal(existsSync(join(img.rootfs, 'etc/gone')), false, 'whiteout removed a lower file');
    assert.equal(existsSync(join(img.rootfs, 'etc/.wh.gone')), false, 'whiteout marker not extracted');
    assert.equal(existsSync(join(img.rootfs, 'data/sub')), false, 'opaque whiteout emptied the directory');
    assert.equal(readFileSync(join(img.rootfs, 'data/new'), 'utf8'), 'new');
    assert.equal(
      readlinkSync(join(img.rootfs, 'etc/link')),
      '/etc/keep',
      'absolute symlink target kept as in the image',
    );
    assert.equal((await store.verified(imageId)).id, imageId);
    assert.deepEqual(
      (await store.list()).map((i) => i.id),
      [imageId],
    );
  });

  it('refuses an archive whose id is not the expected Image-ID, storing nothing', async () => {
    const w = work('mismatch');
    const { archive } = await tinyArchive(w);
    const store = new ImageStore(join(w, 'store'), logger);
    await assert.rejects(
      store.import(archive, { expectId: `sha256:${'0'.repeat(64)}` }),
      /its image id is sha256:[0-9a-f]{64}, expected sha256:0000/,
    );
    assert.deepEqual(await store.list(), []);
    await assert.rejects(
      store.verified(`sha256:${'0'.repeat(64)}`),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_NOT_FOUND',
    );
  });

  it('refuses a layer whose content does not match the config diff id (tampered archive)', async () => {
    const w = work('tamper');
    const { archive, imageId } = await tinyArchive(w, { content: 'original' });
    const ex = join(w, 'ex');
    mkdirSync(ex);
    await tar.x({ file: archive, cwd: ex });
    const manifest = JSON.parse(readFileSync(join(ex, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
    writeFileSync(join(ex, manifest[0]?.Layers[0] ?? ''), rawTar([{ name: 'f', data: 'evil' }]));
    await tar.c({ file: join(w, 'b.tar'), cwd: ex }, ['.']);
    const store = new ImageStore(join(w, 'store'), logger);
    await assert.rejects(
      store.import(join(w, 'b.tar'), { expectId: imageId }),
      /layer .* has content sha256:.*config says/,
    );
  });

  it('detects a stored image altered after import (config no longer hashes to Image-ID)', async () => {
    const w = work('altered');
    const { archive, imageId } = await tinyArchive(w);
    const store = new ImageStore(join(w, 'store'), logger);
    await store.import(archive);
    writeFileSync(join(w, 'store', imageId.slice(7), 'config.json'), '{"config":{"Cmd":["/bin/evil"]}}');
    await assert.rejects(
      store.verified(imageId),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_INVALID' && /hashes to/.test(e.message),
    );
  });

  for (const [what, entries, pattern] of [
    ['path traversal', [{ name: '../../escape', data: 'x' }], /outside the root/],
    ['an absolute path', [{ name: '/etc/evil', data: 'x' }], /outside the root/],
    ['a hard link out of the root', [{ name: 'l', type: '1', linkname: '../../etc/shadow' }], /outside the root/],
    ['a character device', [{ name: 'dev/mem', type: '3' }], /character device/],
    ['a FIFO', [{ name: 'fifo', type: '6' }], /FIFO/],
    [
      'a write through a symlink',
      [
        { name: 'up', type: '2', linkname: '/tmp' },
        { name: 'up/escape', data: 'x' },
      ],
      /TAR_SYMLINK_ERROR|symbolic link/,
    ],
  ] as const) {
    it(`refuses a layer holding ${what}`, async () => {
      const w = work('hostile');
      writeFileSync(join(w, 'l.tar'), rawTar([...entries]));
      await writeDockerArchive({
        out: join(w, 'a.tar'),
        repoTag: 't:1',
        layers: [{ tarFile: join(w, 'l.tar') }],
        config: { Cmd: ['/x'] },
      });
      const store = new ImageStore(join(w, 'store'), logger);
      await assert.rejects(
        store.import(join(w, 'a.tar')),
        (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_INVALID' && pattern.test(e.message),
      );
      assert.deepEqual(await store.list(), []);
      assert.equal(existsSync(join(w, 'escape')), false);
    });
  }

  it('reads pax paths and ids, GNU long names and links, and refuses a bad checksum', async () => {
    const long = `${'d/'.repeat(80)}f`;
    const buf = Buffer.concat([
      rawTar([
        { name: 'PaxHeaders/x', type: 'x', data: '30 path=a/very/long/name/here\n18 uid=1000000000\n' },
      ]).subarray(0, 1024),
      rawTar([{ name: 'x', data: 'pax' }]).subarray(0, 1024),
      rawTar([{ name: '././@LongLink', type: 'L', data: `${long}\0` }]).subarray(0, 1024),
      rawTar([{ name: 'short', data: 'gnu' }]).subarray(0, 1024),
      rawTar([{ name: '././@LongLink', type: 'K', data: `/${long}\0` }]).subarray(0, 1024),
      rawTar([{ name: 'ln', type: '2', linkname: 'short' }]),
    ]);
    const seen: Array<[string, string, number, string]> = [];
    await readTar([buf], async (e, body) => {
      let data = '';
      for await (const c of body) data += c.toString();
      seen.push([e.path, e.type, e.uid, e.linkpath || data]);
    });
    assert.deepEqual(seen, [
      ['a/very/long/name/here', 'file', 1_000_000_000, 'pax'],
      [long, 'file', 0, 'gnu'],
      ['ln', 'symlink', 0, `/${long}`],
    ]);
    const bad = Buffer.from(buf);
    bad[0] = (bad[0] ?? 0) ^ 1;
    await assert.rejects(
      readTar([bad], () => undefined),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_INVALID' && /checksum/.test(e.message),
    );
  });

  it('refuses something that is not a docker save archive', async () => {
    const w = work('notimage');
    writeFileSync(join(w, 'x.tar'), rawTar([{ name: 'hello', data: 'hi' }]));
    writeFileSync(join(w, 'junk.tar'), 'not a tar at all');
    const store = new ImageStore(join(w, 'store'), logger);
    await assert.rejects(store.import(join(w, 'x.tar')), /no valid manifest\.json/);
    await assert.rejects(store.import(join(w, 'junk.tar')), /not a tar archive/);
  });
});
