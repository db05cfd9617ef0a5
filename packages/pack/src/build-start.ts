import type { Logger } from '@formation/service';
import type { BuildJob, BuildJobs } from './build-jobs.ts';
import type { Builder } from './builder.ts';
import type { TakenContext } from './context-store.ts';
import { loadSpec } from './formfile.ts';
import type { BuildQueue } from './queue.ts';

/** What a build start needs from the service. */
export interface BuildStartDeps {
  builder: Builder;
  queue: BuildQueue;
  jobs: BuildJobs;
  log: Logger;
}

/**
 * Start building context `ctx` (taken from the ContextStore): read its Formfile, compute the Formpack
 * ID, then either record a cached build (the Formpack exists; its signer becomes a requester who may
 * download it) or queue the build. Returns at once with the job; the build runs on. The context's
 * files are released on every path: a bad Formfile, a cached build, a full queue, the build's end.
 * Refused: an invalid Formfile (FORMFILE_*), a full queue (PACK_QUEUE_FULL).
 *
 * @example
 * const job = await startBuild({ builder, queue, jobs, log }, contexts.take(contextId, signer), {});
 * reply.status(202).send(job.info);
 */
export async function startBuild(
  d: BuildStartDeps,
  ctx: TakenContext,
  req: { formfile?: string; idKey?: string },
): Promise<BuildJob> {
  let spec: Awaited<ReturnType<typeof loadSpec>>['spec'];
  let id: string;
  try {
    ({ spec } = await loadSpec(ctx.dir, req.formfile ?? 'Formfile', req.formfile ?? 'Formfile'));
    id = await d.builder.idOf(spec, ctx.dir, req.idKey);
  } catch (err) {
    ctx.release();
    throw err;
  }
  const { builder, jobs } = d;
  const owner = ctx.owner;
  const existing = builder.get(id);
  const job = jobs.add({ id, name: spec.name, owner, cached: !!existing });
  if (existing) {
    builder.addRequester(id, owner);
    ctx.release();
    return job;
  }
  let finished: Promise<void>;
  try {
    finished = d.queue
      .run(
        owner,
        () =>
          builder.build({
            spec,
            dir: ctx.dir,
            owner,
            ...(req.idKey ? { idKey: req.idKey } : {}),
            signal: job.abort.signal,
            onEvent: (e) => jobs.event(job, e),
          }),
        () => jobs.running(job),
      )
      .then((r) => jobs.done(job, r.cached));
  } catch (err) {
    jobs.delete(job.info.buildId);
    ctx.release();
    throw err;
  }
  void finished
    .catch((err: unknown) => {
      const fe = jobs.fail(job, err);
      if (fe.status >= 500) d.log.error({ err: fe, buildId: job.info.buildId }, 'build failed');
    })
    .finally(() => {
      ctx.release();
      jobs.end(job);
    });
  return job;
}
