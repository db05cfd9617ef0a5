import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, test } from 'node:test';
import { FormError } from '@formation/interface';
import { ContextStore, type ContextStoreOptions } from '../src/context-store.ts';
import { handTar } from './context-fixtures.ts';

// The store on its own (no Fastify, no root): what it keeps, what it refuses, and that a refusal
// leaves no file behind.

const work = mkdtempSync(join(tmpdir(), 'form-pack-ctxstore-'));
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function store(opts: Partial<ContextStoreOptions> = {}): ContextStore {
  return new ContextStore({ dir: join(work, `store-${++n}`, 'contexts'), ...opts });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const body = (b: Buffer) => Readable.from([b]);
const code = (c: string, re?: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === c && (!re || re.test(e.message));

const GOOD = handTar([
  { path: 'Formfile', body: 'NAME ok\n' },
  { path: 'www', type: 'Directory' },
  { path: 'www/index.html', body: 'hello\n' },
  { path: 'www/home.html', type: 'SymbolicLink', linkpath: 'index.html' },
]);

test('an upload is extracted, held for its owner, taken once, and released', async () => {
  const s = store();
  const put = await s.put('alice', body(GOOD), sha(GOOD));
  assert.match(put.contextId, /^[0-9a-f]{24}$/);
  assert.equal(put.entries, 4);
  assert.equal(put.bytes, 'NAME ok\n'.length + 'hello\n'.length);
  assert.equal(s.heldBy('alice'), 1);
  assert.deepEqual(readdirSync(s.dir), [put.contextId], 'the uploaded archive itself is not kept');

  const ctx = s.take(put.contextId, 'alice');
  assert.equal(ctx.owner, 'alice');
  assert.equal(ctx.dir, join(s.dir, put.contextId));
  assert.equal(readFileSync(join(ctx.dir, 'Formfile'), 'utf8'), 'NAME ok\n');
  assert.equal(readFileSync(join(ctx.dir, 'www/index.html'), 'utf8'), 'hello\n');
  assert.equal(readlinkSync(join(ctx.dir, 'www/home.html')), 'index.html');
  assert.equal(s.heldBy('alice'), 0, 'a taken context no longer counts against its owner');
  assert.throws(() => s.take(put.contextId, 'alice'), code('NOT_FOUND', /no uploaded context/), 'used once');

  ctx.release();
  assert.equal(existsSync(ctx.dir), false);
  ctx.release(); // idempotent
});

test('a body that does not match the signed sha256 is refused and leaves nothing', async () => {
  const s = store();
  await assert.rejects(
    s.put('alice', body(GOOD), 'a'.repeat(64)),
    code('AUTH_BAD_SIGNATURE', /does not match x-form-content-sha256/),
  );
  assert.deepEqual(readdirSync(s.dir), []);
  assert.equal(s.heldBy('alice'), 0);
});

test('hostile and broken archives are refused with PACK_BAD_ARCHIVE, nothing written anywhere', async () => {
  const s = store({ limits: { maxBytes: 1000, maxEntries: 3 } });
  const cases: Array<[string, Buffer, RegExp]> = [
    ['traversal', handTar([{ path: '../evil.txt', body: 'x' }]), /outside the build directory/],
    ['absolute', handTar([{ path: '/tmp/evil.txt', body: 'x' }]), /absolute path/],
    ['symlink out', handTar([{ path: 'l', type: 'SymbolicLink', linkpath: '/etc/passwd' }]), /symlink l -> \/etc/],
    [
      'write through a symlink',
      handTar([
        { path: 'd', type: 'SymbolicLink', linkpath: 'sub' },
        { path: 'd/f', body: 'x' },
      ]),
      /through the symlink/,
    ],
    [
      'hard link',
      handTar([
        { path: 'a', body: 'x' },
        { path: 'b', type: 'Link', linkpath: 'a' },
      ]),
      /hard link/,
    ],
    ['device', handTar([{ path: 'null', type: 'CharacterDevice' }]), /device file/],
    ['over maxBytes extracted', handTar([{ path: 'big', body: 'x'.repeat(1001) }]), /expands to more than/],
    ['over maxEntries', handTar(['a', 'b', 'c', 'd'].map((p) => ({ path: p, body: p }))), /more than 3 entries/],
    ['truncated', handTar([{ path: 'f', body: 'y'.repeat(900) }]).subarray(0, 700), /damaged or truncated/],
    ['fifo', handTar([{ path: 'p', type: 'FIFO' }]), /FIFO/],
  ];
  for (const [name, tar, re] of cases) {
    await assert.rejects(s.put('alice', body(tar), sha(tar)), code('PACK_BAD_ARCHIVE', re), name);
    assert.deepEqual(readdirSync(s.dir), [], `${name}: nothing left in the store`);
  }
  assert.equal(s.heldBy('alice'), 0);
  assert.deepEqual(readdirSync(join(s.dir, '..')), ['contexts'], 'nothing written beside the store');
  assert.equal(existsSync('/tmp/evil.txt'), false);
});

test('an upload over maxUploadBytes is cut off and refused', async () => {
  const s = store({ maxUploadBytes: 2 ** 20 });
  const big = Buffer.alloc(2 ** 20 + 1);
  await assert.rejects(s.put('alice', body(big), sha(big)), code('PACK_BAD_ARCHIVE', /the upload is over 1 MiB/));
  assert.deepEqual(readdirSync(s.dir), []);
});

test('one owner holds at most maxPerOwner contexts; the refused body is drained; others are not held back', async () => {
  const s = store({ maxPerOwner: 2 });
  const first = await s.put('alice', body(GOOD), sha(GOOD));
  await s.put('alice', body(GOOD), sha(GOOD));
  const third = new PassThrough();
  third.end(GOOD);
  await assert.rejects(
    s.put('alice', third, sha(GOOD)),
    code('PACK_QUEUE_FULL', /^Cannot accept the build context: alice already has 2 uploaded contexts not built yet$/),
  );
  assert.equal(third.readableFlowing, true, 'the refused upload is read to its end, not left hanging');
  assert.throws(() => s.assertRoom('alice'), code('PACK_QUEUE_FULL'));
  assert.equal(s.heldBy('alice'), 2);
  assert.equal(readdirSync(s.dir).length, 2);

  await s.put('bob', body(GOOD), sha(GOOD));
  assert.equal(s.heldBy('bob'), 1);

  s.take(first.contextId, 'alice').release();
  s.assertRoom('alice'); // building one makes room again
  await s.put('alice', body(GOOD), sha(GOOD));
  assert.equal(s.heldBy('alice'), 2);
});

test("another owner's context cannot be taken and stays stored; unknown IDs are NOT_FOUND", async () => {
  const s = store();
  const put = await s.put('alice', body(GOOD), sha(GOOD));
  assert.throws(() => s.take(put.contextId, 'mallory'), code('AUTH_FORBIDDEN', /uploaded by another key/));
  assert.equal(s.heldBy('alice'), 1);
  assert.ok(existsSync(join(s.dir, put.contextId, 'Formfile')));
  assert.throws(() => s.take('f'.repeat(24), 'alice'), code('NOT_FOUND', /no uploaded context f{24}/));
  assert.equal(s.take(put.contextId, 'alice').owner, 'alice');
});

test('contexts expire after ttlMs: swept from disk and from the owner quota', async () => {
  let now = 1_000_000;
  const s = store({ ttlMs: 60_000, maxPerOwner: 1, now: () => now });
  const put = await s.put('alice', body(GOOD), sha(GOOD));
  now += 60_000;
  s.sweep();
  assert.equal(s.heldBy('alice'), 1, 'kept until its time is up');
  now += 1;
  s.sweep();
  assert.equal(s.heldBy('alice'), 0);
  assert.equal(existsSync(join(s.dir, put.contextId)), false, 'its files are deleted');
  assert.throws(() => s.take(put.contextId, 'alice'), code('NOT_FOUND'));

  // An upload sweeps first, so an expired context does not block its owner's next one.
  await s.put('alice', body(GOOD), sha(GOOD));
  now += 60_001;
  const next = await s.put('alice', body(GOOD), sha(GOOD));
  assert.deepEqual(readdirSync(s.dir), [next.contextId]);
});

test('opening empties what an earlier run left; closing deletes held and taken contexts', async () => {
  const dir = join(work, 'reopen', 'contexts');
  mkdirSync(join(dir, 'stale'), { recursive: true });
  writeFileSync(join(dir, 'stale', 'Formfile'), 'NAME old\n');
  const s = new ContextStore({ dir });
  assert.deepEqual(readdirSync(dir), []);
  const held = await s.put('alice', body(GOOD), sha(GOOD));
  const taken = s.take((await s.put('alice', body(GOOD), sha(GOOD))).contextId, 'alice');
  assert.equal(readdirSync(dir).length, 2);
  s.close();
  assert.deepEqual(readdirSync(dir), []);
  assert.equal(existsSync(taken.dir), false);
  assert.throws(() => s.take(held.contextId, 'alice'), code('NOT_FOUND'));
});

test('an expired context cannot be built even before a sweep has deleted it', async () => {
  let now = 1_000_000;
  const s = store({ ttlMs: 60_000, now: () => now });
  const put = await s.put('alice', body(GOOD), sha(GOOD));
  now += 60_001; // no upload since, so nothing has swept
  assert.throws(() => s.take(put.contextId, 'alice'), code('NOT_FOUND', /no uploaded context/));
  assert.deepEqual(readdirSync(s.dir), [], 'its files are deleted on the spot');
  assert.equal(s.heldBy('alice'), 0);
});
