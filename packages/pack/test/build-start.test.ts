import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormError, type FormpackManifest } from '@formation/interface';
import { until } from '@formation/interface/testing';
import type { Logger } from '@formation/service';
import { startBuild } from '../src/build-start.ts';
import {
  Builder,
  type BuildJob,
  BuildJobs,
  BuildQueue,
  type BuildRequest,
  type BuildResult,
  loadSpec,
  type TakenContext,
} from '../src/index.ts';

// Starting a build from a taken context, without Fastify or root: whatever happens, the context's
// files are released exactly when the build no longer needs them.

const work = mkdtempSync(join(tmpdir(), 'form-pack-start-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** A Builder whose builds end when the test says so; `existing` IDs count as built. */
class FakeBuilder extends Builder {
  readonly existing = new Set<string>();
  readonly requested: Array<[string, string]> = [];
  readonly builds: Array<{ req: BuildRequest; finish: (r: BuildResult | Error) => void }> = [];
  override get(id: string): FormpackManifest | null {
    return this.existing.has(id) ? ({ id, owner: 'someone-else' } as FormpackManifest) : null;
  }
  override addRequester(id: string, address: string): void {
    this.requested.push([id, address]);
  }
  override build(req: BuildRequest): Promise<BuildResult> {
    return new Promise((resolve, reject) => {
      this.builds.push({ req, finish: (r) => (r instanceof Error ? reject(r) : resolve(r)) });
    });
  }
}

let n = 0;
function setup(queue = new BuildQueue()) {
  const root = join(work, `s${++n}`);
  const builder = new FakeBuilder({ dataDir: join(root, 'data'), cacheDir: join(root, 'cache') });
  const errors: unknown[] = [];
  const log = { error: (o: unknown) => errors.push(o) } as unknown as Logger;
  const jobs = new BuildJobs();
  return { builder, jobs, errors, deps: { builder, queue, jobs, log } };
}

/** A taken context holding `formfile`, whose release the test can see. */
function context(formfile: string, owner = 'alice'): TakenContext & { released: () => number } {
  const dir = join(work, `ctx${++n}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'Formfile'), formfile);
  let count = 0;
  return {
    dir,
    owner,
    release: () => {
      count++;
      rmSync(dir, { recursive: true, force: true });
    },
    released: () => count,
  };
}

const code = (c: string) => (e: unknown) => e instanceof FormError && e.code === c;

test('an invalid Formfile is refused with its line and the context is released', async () => {
  const { deps, builder } = setup();
  const ctx = context('NAME ok\nVCPU lots\n');
  await assert.rejects(startBuild(deps, ctx, {}), (e: unknown) => {
    assert.ok(e instanceof FormError && e.code.startsWith('FORMFILE_'), String(e));
    assert.match(e.message, /^Cannot build: the Formfile is invalid\nFormfile:2:/);
    return true;
  });
  assert.equal(existsSync(ctx.dir), false);
  assert.equal(builder.builds.length, 0);
});

test('a Formfile of another name is read when the request names it', async () => {
  const { deps } = setup();
  const ctx = context('NAME wrong\nNOCOPY\n');
  writeFileSync(join(ctx.dir, 'web.formfile'), 'NAME right\nNOCOPY\n');
  const job = await startBuild(deps, ctx, { formfile: 'web.formfile' });
  assert.equal(job.info.name, 'right');
});

test('a Formpack that exists is a cached build: done at once, the signer a requester, the context released', async () => {
  const { deps, builder } = setup();
  const probe = context('NAME q\nNOCOPY\n');
  const id = await builder.idOf((await loadSpec(probe.dir)).spec, probe.dir);
  builder.existing.add(id);
  const ctx = context('NAME q\nNOCOPY\n', 'bob');
  const job = await startBuild(deps, ctx, {});
  assert.equal(job.info.id, id);
  assert.equal(job.info.status, 'done');
  assert.equal(job.info.cached, true);
  assert.deepEqual(builder.requested, [[id, 'bob']]);
  assert.equal(ctx.released(), 1);
  assert.equal(builder.builds.length, 0, 'nothing is built');
});

test('a full queue refuses the build, forgets its job and releases the context', async () => {
  const { deps, jobs, builder } = setup(new BuildQueue({ slots: 1, maxQueued: 64, maxQueuedPerOwner: 0 }));
  const added: BuildJob[] = [];
  const add = jobs.add.bind(jobs);
  jobs.add = (p) => {
    const j = add(p);
    added.push(j);
    return j;
  };
  const ctx = context('NAME q\nNOCOPY\n');
  await assert.rejects(startBuild(deps, ctx, {}), code('PACK_QUEUE_FULL'));
  assert.equal(ctx.released(), 1);
  assert.equal(added.length, 1);
  assert.throws(() => jobs.get(added[0]!.info.buildId), code('NOT_FOUND'));
  assert.equal(builder.builds.length, 0);
});

test('a queued build runs with the context, logs its events, and releases the context when it ends', async () => {
  const { deps, builder, errors } = setup();
  const ctx = context('NAME q\nNOCOPY\n');
  const job = await startBuild(deps, ctx, { idKey: 'ab'.repeat(32) });
  await until('the build to start', () => builder.builds.length === 1, 2000, 5);
  const b = builder.builds[0]!;
  assert.equal(b.req.dir, ctx.dir);
  assert.equal(b.req.owner, 'alice');
  assert.equal(b.req.idKey, 'ab'.repeat(32));
  assert.equal(job.info.status, 'running');
  b.req.onEvent?.({ type: 'step', step: 'base', elapsedMs: 1 });
  assert.equal(job.info.step, 'base');
  assert.equal(ctx.released(), 0, 'the build still needs its files');
  b.finish({ id: job.info.id, manifest: {} as FormpackManifest, cached: false });
  await until('the build to end', () => job.info.finishedAt !== null, 2000, 5);
  assert.equal(job.info.status, 'done');
  assert.equal(ctx.released(), 1);
  assert.deepEqual(job.lines.at(-1), { type: 'end', status: 'done', error: null });
  assert.deepEqual(errors, []);
});

test("a build that fails with the system's error is logged and reported INTERNAL; the context is released", async () => {
  const { deps, builder, errors } = setup();
  const ctx = context('NAME q\nNOCOPY\n');
  const job = await startBuild(deps, ctx, {});
  await until('the build to start', () => builder.builds.length === 1, 2000, 5);
  builder.builds[0]!.finish(new Error('EIO'));
  await until('the build to end', () => job.info.finishedAt !== null, 2000, 5);
  assert.equal(job.info.status, 'failed');
  assert.deepEqual(job.info.error, { code: 'INTERNAL', message: 'Cannot build: EIO' });
  assert.equal(errors.length, 1);
  assert.equal(ctx.released(), 1);
});
