// Issue 17: property tests (fast-check, bounded time) for the parsers that take bytes from anyone:
// the tar reader, the docker-archive importer (layers that try to leave the root), the ANS-104
// parser. No crash, no hang, every failure a coded FormError.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { isFormError } from '@formation/interface';
import { fuzzParams } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import fc from 'fast-check';
import { createDataItem, parseDataItem, verifyDataItem } from '../src/ans104.ts';
import { writeDockerArchive } from '../src/docker-archive.ts';
import { ImageStore } from '../src/image-store.ts';
import { readTar } from '../src/tar-reader.ts';
import { rawTar, tinyArchive, tmp } from './helpers.ts';

const logger = createLogger('silent');
/** Time per property (fast-check stops starting new runs after it). */
const BUDGET_MS = Number(process.env.FORM_FUZZ_MS ?? 3000);
const params = (numRuns: number) => fuzzParams(numRuns, BUDGET_MS);

const dirs: string[] = [];
/** Cases run per property (printed as a diagnostic: how much each budget bought). */
const runs = new Map<string, number>();
const count = (name: string) => runs.set(name, (runs.get(name) ?? 0) + 1);
after(async () => {
  console.log(`# fuzz cases in ${BUDGET_MS} ms each: ${JSON.stringify(Object.fromEntries(runs))}`);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Rethrow anything that is not a coded FormError whose message starts with "Cannot ". */
function onlyCoded(err: unknown): void {
  if (isFormError(err) && /^Cannot /.test(err.message)) return;
  throw err;
}

async function* chunks(buf: Buffer, size: number): AsyncIterable<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** Recompute a ustar header's checksum so a mutation gets past it (and reaches the parser behind). */
function fixChecksums(buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  for (let off = 0; off + 512 <= b.length; off += 512) {
    if (b.subarray(off + 257, off + 262).toString('latin1') !== 'ustar') continue;
    b.fill(0x20, off + 148, off + 156);
    let sum = 0;
    for (let i = off; i < off + 512; i++) sum += b[i] ?? 0;
    b.write(`${sum.toString(8).padStart(6, '0')}\0 `, off + 148, 'latin1');
  }
  return b;
}

const SEEDS = [
  rawTar([
    { name: 'etc/', type: '5', mode: 0o755 },
    { name: 'etc/hosts', data: '127.0.0.1 localhost\n' },
    { name: 'bin/sh', type: '2', linkname: '/bin/busybox' },
    { name: 'hard', type: '1', linkname: 'etc/hosts' },
    { name: 'etc/.wh.gone' },
  ]),
  // a pax header and a GNU long name in front of an entry
  Buffer.concat([
    rawTar([{ name: 'PaxHeaders/x', type: 'x', data: '30 path=a/very/long/name/here\n18 uid=1000000000\n' }]).subarray(
      0,
      1024,
    ),
    rawTar([{ name: 'x', data: 'pax' }]).subarray(0, 1024),
    rawTar([{ name: '././@LongLink', type: 'L', data: `${'d/'.repeat(80)}f\0` }]).subarray(0, 1024),
    rawTar([{ name: 'short', data: 'gnu' }]),
  ]),
];

describe('fuzz: tar reader', () => {
  it('random bytes: resolves or throws a coded FormError, never hangs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.integer({ min: 1, max: 700 }), async (bytes, size) => {
        try {
          count('tar-random');
          await readTar(chunks(Buffer.from(bytes), size), async (_e, body) => {
            for await (const _ of body);
          });
        } catch (err) {
          onlyCoded(err);
        }
      }),
      params(100_000),
    );
  });

  it('mutated valid archives (checksums fixed or not): resolves or throws a coded FormError', async () => {
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...SEEDS),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        fc.option(fc.nat(), { nil: undefined }),
        async (seed, edits, fix, cut) => {
          let b: Buffer = Buffer.from(seed);
          for (const [pos, byte] of edits) b[pos % b.length] = byte;
          if (fix) b = fixChecksums(b);
          if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
          try {
            let n = 0;
            await readTar(chunks(b, 512), async (e, body) => {
              count('tar-mutated');
              assert.ok(e.size >= 0 && Number.isSafeInteger(e.size));
              assert.ok(e.path.length > 0);
              for await (const c of body) n += c.length;
            });
            assert.ok(n <= b.length, 'never more data than bytes');
            seen.ok++;
          } catch (err) {
            onlyCoded(err);
            seen.refused++;
          }
        },
      ),
      params(100_000),
    );
    assert.ok(seen.ok > 0 && seen.refused > 0, `both outcomes happen (${JSON.stringify(seen)})`);
  });
});

describe('fuzz: docker-archive importer', () => {
  const NAMES = ['up', 'a', 'b', '.wh.a', '.wh.up', '.wh..wh..opq', '..', '.', ''];

  it('random layer stacks of links, whiteouts, files and hard links never touch the host, and fail coded', async () => {
    const victim = tmp('fuzz-victim');
    dirs.push(victim);
    writeFileSync(join(victim, 'marker'), 'host data');
    const rel = victim.slice(1);
    const w = tmp('fuzz-import');
    dirs.push(w);
    const store = new ImageStore(join(w, 'store'), logger);
    const targets = [
      '/',
      '/.',
      `/${rel}`,
      `/${rel}/marker`,
      '..',
      '../..',
      `../../../../../../..${victim}`,
      'a',
      'up/a',
    ];
    const path = fc
      .array(fc.constantFrom(...NAMES, rel, `${rel}/marker`), { minLength: 1, maxLength: 4 })
      .map((p) => p.join('/'));
    const entry = fc.oneof(
      fc.record({ name: path, type: fc.constant('2'), linkname: fc.constantFrom(...targets) }),
      fc.record({ name: path, type: fc.constant('1'), linkname: fc.oneof(path, fc.constantFrom(...targets)) }),
      fc.record({ name: path, data: fc.constantFrom('owned', '') }),
      fc.record({ name: path.map((p) => `${p}/`), type: fc.constant('5'), mode: fc.constantFrom(0o755, 0o777) }),
    );
    let n = 0;
    const seen = { ok: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(entry, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 3 }),
        async (layers) => {
          const d = join(w, `case-${n++}`);
          mkdirSync(d);
          try {
            const files = layers.map((entries, i) => {
              count('layers-hostile');
              const f = join(d, `l${i}.tar`);
              writeFileSync(f, rawTar(entries));
              return { tarFile: f };
            });
            await writeDockerArchive({ out: join(d, 'a.tar'), repoTag: 'f:1', layers: files, config: { Cmd: ['/x'] } });
            try {
              await store.import(join(d, 'a.tar'));
              seen.ok++;
            } catch (err) {
              onlyCoded(err);
              seen.refused++;
            }
            assert.deepEqual(readdirSync(victim), ['marker'], 'nothing created next to the host file');
            assert.equal(readFileSync(join(victim, 'marker'), 'utf8'), 'host data', 'host file untouched');
          } finally {
            await rm(d, { recursive: true, force: true });
          }
        },
      ),
      params(100_000),
    );
    assert.ok(seen.ok > 0 && seen.refused > 0, `both outcomes happen (${JSON.stringify(seen)})`);
  });

  it('mutated docker archives: import resolves or throws a coded FormError', async () => {
    const w = tmp('fuzz-archive');
    dirs.push(w);
    const seed = readFileSync((await tinyArchive(w)).archive);
    const store = new ImageStore(join(w, 'store'), logger);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (edits, fix) => {
          count('archive-mutated');
          let b: Buffer = Buffer.from(seed);
          for (const [pos, byte] of edits) b[pos % b.length] = byte;
          if (fix) b = fixChecksums(b);
          const f = join(w, `m-${n++}.tar`);
          writeFileSync(f, b);
          try {
            await store.import(f);
          } catch (err) {
            onlyCoded(err);
          } finally {
            await rm(f, { force: true });
          }
        },
      ),
      params(100_000),
    );
  });
});

describe('fuzz: ANS-104 parser (src/ans104.ts, not modified here)', () => {
  const key = generateKeyPair();
  const valid = createDataItem(key, {
    target: Buffer.alloc(32, 7).toString('base64url'),
    tags: [
      { name: 'Type', value: 'Message' },
      { name: 'Action', value: 'Inc' },
    ],
    data: 'hello',
  });

  const parse = (b: Buffer) => {
    try {
      verifyDataItem(b);
    } catch (err) {
      onlyCoded(err);
    }
    try {
      parseDataItem(b);
    } catch (err) {
      onlyCoded(err);
    }
  };

  it('random bytes: parse and verify throw only coded FormErrors', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        count('ans104-random');
        return parse(Buffer.from(bytes));
      }),
      params(100_000),
    );
  });

  it('mutated valid items: parse and verify throw only coded FormErrors', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.option(fc.nat(), { nil: undefined }),
        (edits, cut) => {
          count('ans104-mutated');
          let b: Buffer = Buffer.from(valid);
          for (const [pos, byte] of edits) b[pos % b.length] = byte;
          if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
          parse(b);
        },
      ),
      params(100_000),
    );
  });

  it('valid frames with a random tag block: parse and verify throw only coded FormErrors', () => {
    // layout: type(2) signature(65) owner(65) target flag+32 anchor flag, tag count(8), tag bytes(8), tags, data
    const at = 2 + 65 + 65 + 33 + 1;
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { nil: undefined }),
        (tagBytes, tagCount, lengthField) => {
          count('ans104-tags');
          const head = Buffer.from(valid.subarray(0, at + 16));
          head.writeBigUInt64LE(tagCount, at);
          head.writeBigUInt64LE(lengthField ?? BigInt(tagBytes.length), at + 8);
          parse(Buffer.concat([head, Buffer.from(tagBytes), Buffer.from('data')]));
        },
      ),
      params(100_000),
    );
  });
});
