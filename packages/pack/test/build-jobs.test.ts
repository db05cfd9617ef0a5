import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError, type FormpackManifest } from '@formation/interface';
import { BuildJobs, type BuildLogLine, findFormpack, publicManifest } from '../src/index.ts';

// The API's build records and Formpack lookup on their own (no Fastify, no Builder).

const code = (c: string, re?: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === c && (!re || re.test(e.message));

test('a build goes queued → running → done; its log and followers see each event, then the end', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const jobs = new BuildJobs({ now: () => now });
  const job = jobs.add({ id: 'f'.repeat(64), name: 'web', owner: 'alice', cached: false });
  assert.match(job.info.buildId, /^[0-9a-f]{16}$/);
  assert.deepEqual(
    { ...job.info, buildId: '' },
    {
      buildId: '',
      id: 'f'.repeat(64),
      name: 'web',
      owner: 'alice',
      status: 'queued',
      step: null,
      cached: false,
      startedAt: '2026-01-01T00:00:00.000Z',
      finishedAt: null,
      error: null,
    },
  );
  assert.equal(jobs.get(job.info.buildId), job);
  const seen: BuildLogLine[] = [];
  jobs.follow(job, (l) => seen.push(l));
  jobs.running(job);
  assert.equal(job.info.status, 'running');
  jobs.event(job, { type: 'step', step: 'base', elapsedMs: 1 });
  jobs.event(job, { type: 'log', line: 'apt says hi', elapsedMs: 2 });
  assert.equal(job.info.step, 'base', 'a step becomes the current step, a log line does not');
  jobs.done(job, false);
  now += 5000;
  jobs.end(job);
  assert.equal(job.info.status, 'done');
  assert.equal(job.info.finishedAt, '2026-01-01T00:00:05.000Z');
  const end = { type: 'end', status: 'done', error: null };
  assert.deepEqual(job.lines.at(-1), end);
  assert.deepEqual(seen, job.lines);
  jobs.event(job, { type: 'log', line: 'late', elapsedMs: 3 });
  assert.equal(seen.length, 3, 'followers are let go at the end');
});

test('a build of an existing Formpack is done at once, with a log that says cached', () => {
  const jobs = new BuildJobs();
  const job = jobs.add({ id: 'a'.repeat(64), name: 'web', owner: 'bob', cached: true });
  assert.equal(job.info.status, 'done');
  assert.equal(job.info.step, 'cached');
  assert.equal(job.info.cached, true);
  assert.equal(job.info.finishedAt, job.info.startedAt);
  assert.deepEqual(job.lines, [
    { type: 'step', step: 'cached', detail: 'a'.repeat(64), elapsedMs: 0 },
    { type: 'end', status: 'done', error: null },
  ]);
});

test('a failure is reported with its code and hint; anything else becomes INTERNAL', () => {
  const jobs = new BuildJobs();
  const a = jobs.add({ id: '1'.repeat(64), name: 'a', owner: 'o', cached: false });
  const fe = jobs.fail(a, new FormError('PACK_BUILD_FAILED', 'Cannot build: RUN exited 1', { hint: 'Read the log.' }));
  assert.equal(fe.code, 'PACK_BUILD_FAILED');
  assert.deepEqual(a.info.error, {
    code: 'PACK_BUILD_FAILED',
    message: 'Cannot build: RUN exited 1',
    hint: 'Read the log.',
  });
  jobs.end(a);
  assert.deepEqual(a.lines.at(-1), { type: 'end', status: 'failed', error: a.info.error });

  const b = jobs.add({ id: '2'.repeat(64), name: 'b', owner: 'o', cached: false });
  const internal = jobs.fail(b, new Error('EIO'));
  assert.equal(internal.status >= 500, true, 'logged by the service as its own fault');
  assert.deepEqual(b.info.error, { code: 'INTERNAL', message: 'Cannot build: EIO' });
});

test('unknown and forgotten builds are NOT_FOUND; finished builds are swept after keepMs, running ones never', () => {
  let now = 1_000_000;
  const jobs = new BuildJobs({ keepMs: 60_000, now: () => now });
  assert.throws(() => jobs.get('nope'), code('NOT_FOUND', /^Cannot find build nope$/));
  const finished = jobs.add({ id: '1'.repeat(64), name: 'a', owner: 'o', cached: true });
  const running = jobs.add({ id: '2'.repeat(64), name: 'b', owner: 'o', cached: false });
  const refused = jobs.add({ id: '3'.repeat(64), name: 'c', owner: 'o', cached: false });
  jobs.delete(refused.info.buildId);
  assert.throws(() => jobs.get(refused.info.buildId), code('NOT_FOUND'));
  now += 60_000;
  jobs.sweep();
  assert.equal(jobs.get(finished.info.buildId), finished, 'kept for keepMs');
  now += 1000;
  jobs.sweep();
  assert.throws(() => jobs.get(finished.info.buildId), code('NOT_FOUND'));
  assert.equal(jobs.get(running.info.buildId), running);
  jobs.abortUnfinished();
  assert.equal(running.abort.signal.aborted, true);
  assert.equal(finished.abort.signal.aborted, false);
});

test('the log keeps the newest maxLogLines lines', () => {
  const jobs = new BuildJobs({ maxLogLines: 3 });
  const job = jobs.add({ id: '1'.repeat(64), name: 'a', owner: 'o', cached: false });
  for (let i = 0; i < 5; i++) jobs.event(job, { type: 'log', line: `l${i}`, elapsedMs: i });
  assert.deepEqual(
    job.lines.map((l) => (l.type === 'log' ? l.line : l.type)),
    ['l2', 'l3', 'l4'],
  );
});

function manifest(id: string, env: Array<{ name: string; value: string }> = []): FormpackManifest {
  return { id, name: 'web', owner: 'alice', formfile: { env } } as unknown as FormpackManifest;
}

test('a Formpack is found by its ID or a unique prefix; an ambiguous or unknown one is refused', () => {
  const packs = [manifest(`abc123${'0'.repeat(58)}`), manifest(`abc124${'0'.repeat(58)}`), manifest('d'.repeat(64))];
  const catalog = { list: () => packs, get: (id: string) => packs.find((m) => m.id === id) ?? null };
  assert.equal(findFormpack(catalog, 'd'.repeat(64)), packs[2]);
  assert.equal(findFormpack(catalog, 'abc124'), packs[1]);
  assert.throws(
    () => findFormpack(catalog, 'abc12'),
    code('BAD_REQUEST', /^Cannot pick a Formpack: abc12 matches 2 IDs$/),
  );
  assert.throws(() => findFormpack(catalog, 'eeeeee'), code('PACK_NOT_FOUND', /^Cannot find Formpack eeeeee$/));
  assert.throws(() => findFormpack(catalog, 'e'.repeat(64)), code('PACK_NOT_FOUND'));
});

test('a manifest shown to others has its ENV values redacted, names kept, and the original untouched', () => {
  const m = manifest('d'.repeat(64), [{ name: 'TOKEN', value: 's3cret' }]);
  const shown = publicManifest(m);
  assert.deepEqual(shown.formfile.env, [{ name: 'TOKEN', value: '[redacted]' }]);
  assert.equal(m.formfile.env[0]!.value, 's3cret');
  assert.equal(shown.id, m.id);
});
