import { randomBytes } from 'node:crypto';
import { FormError, isFormError } from '@formation/interface';
import type { BuildEvent } from './builder.ts';

export type BuildStatus = 'queued' | 'running' | 'done' | 'failed';

/** A build as the API reports it. */
export interface BuildInfo {
  buildId: string;
  /** The Formpack ID this build produces. */
  id: string;
  name: string;
  owner: string;
  status: BuildStatus;
  step: string | null;
  cached: boolean;
  startedAt: string;
  finishedAt: string | null;
  error: { code: string; message: string; hint?: string } | null;
}

/** One line of `GET /builds/:id/log` (NDJSON): a build event, or the end of the build. */
export type BuildLogLine = BuildEvent | { type: 'end'; status: BuildStatus; error: BuildInfo['error'] };

/** One build the service runs or ran: what it reports, its log so far, who follows it live. */
export interface BuildJob {
  readonly info: BuildInfo;
  readonly lines: BuildLogLine[];
  readonly abort: AbortController;
}

interface Job extends BuildJob {
  listeners: Set<(l: BuildLogLine) => void>;
}

export interface BuildJobsOptions {
  /** How long a finished build stays readable (status, log) before a sweep forgets it (default 1 h). */
  keepMs?: number;
  /** Log lines kept per build; older ones are dropped (default 5000). */
  maxLogLines?: number;
  /** The clock in ms (tests move it). */
  now?: () => number;
}

export const DEFAULT_BUILD_JOBS = { keepMs: 60 * 60_000, maxLogLines: 5000 };

/**
 * The builds the pack API knows: each one's status and step, its log (bounded), live followers of
 * the log, and its end (`end` once, the last log line). Finished builds are forgotten after keepMs.
 *
 * @example
 * const jobs = new BuildJobs();
 * const job = jobs.add({ id, name: spec.name, owner, cached: false });
 * jobs.follow(job, (line) => res.write(`${JSON.stringify(line)}\n`));
 * builder.build({ ..., onEvent: (e) => jobs.event(job, e) }).then(..., (err) => jobs.fail(job, err)).finally(() => jobs.end(job));
 */
export class BuildJobs {
  private readonly keepMs: number;
  private readonly maxLogLines: number;
  private readonly now: () => number;
  private readonly jobs = new Map<string, Job>();

  constructor(opts: BuildJobsOptions = {}) {
    this.keepMs = opts.keepMs ?? DEFAULT_BUILD_JOBS.keepMs;
    this.maxLogLines = opts.maxLogLines ?? DEFAULT_BUILD_JOBS.maxLogLines;
    this.now = opts.now ?? Date.now;
  }

  /**
   * A new build of Formpack `id`: queued, or, when the Formpack exists already (`cached`), done at
   * once with a log that says so.
   */
  add(p: { id: string; name: string; owner: string; cached: boolean }): BuildJob {
    const now = new Date(this.now()).toISOString();
    const job: Job = {
      info: {
        buildId: randomBytes(8).toString('hex'),
        id: p.id,
        name: p.name,
        owner: p.owner,
        status: p.cached ? 'done' : 'queued',
        step: p.cached ? 'cached' : null,
        cached: p.cached,
        startedAt: now,
        finishedAt: p.cached ? now : null,
        error: null,
      },
      lines: [],
      listeners: new Set(),
      abort: new AbortController(),
    };
    this.jobs.set(job.info.buildId, job);
    if (p.cached) {
      this.push(job, { type: 'step', step: 'cached', detail: p.id, elapsedMs: 0 });
      this.push(job, { type: 'end', status: 'done', error: null });
    }
    return job;
  }

  /** The build `buildId`, or NOT_FOUND. */
  get(buildId: string): BuildJob {
    const j = this.jobs.get(buildId);
    if (!j) throw new FormError('NOT_FOUND', `Cannot find build ${buildId}`);
    return j;
  }

  /** Forget a build that never started (its queue refused it). */
  delete(buildId: string): void {
    this.jobs.delete(buildId);
  }

  /** The build left the queue and runs. */
  running(job: BuildJob): void {
    job.info.status = 'running';
  }

  /** A Builder event: logged, and a step becomes the build's current step. */
  event(job: BuildJob, e: BuildEvent): void {
    if (e.type === 'step') job.info.step = e.step;
    this.push(this.own(job), e);
  }

  /** The build succeeded (`cached`: the Builder found the Formpack already made). */
  done(job: BuildJob, cached: boolean): void {
    job.info.cached = cached;
    job.info.status = 'done';
  }

  /** The build failed with `err` (a non-FormError becomes INTERNAL); the error as reported. */
  fail(job: BuildJob, err: unknown): FormError {
    const fe = isFormError(err)
      ? (err as FormError)
      : new FormError('INTERNAL', `Cannot build: ${(err as Error).message}`);
    job.info.status = 'failed';
    job.info.error = { code: fe.code, message: fe.message, ...(fe.hint ? { hint: fe.hint } : {}) };
    return fe;
  }

  /** The build is over (after done or fail): its end time and its last log line; followers are let go. */
  end(job: BuildJob): void {
    const j = this.own(job);
    j.info.finishedAt = new Date(this.now()).toISOString();
    this.push(j, { type: 'end', status: j.info.status, error: j.info.error });
    j.listeners.clear();
  }

  /** Call `listener` with each new log line of `job` until the returned function is called or the build ends. */
  follow(job: BuildJob, listener: (l: BuildLogLine) => void): () => void {
    const j = this.own(job);
    j.listeners.add(listener);
    return () => j.listeners.delete(listener);
  }

  /** Forget the builds that finished more than keepMs ago. */
  sweep(): void {
    const now = this.now();
    for (const [id, j] of this.jobs) {
      if (j.info.finishedAt && Date.parse(j.info.finishedAt) + this.keepMs < now) this.jobs.delete(id);
    }
  }

  /** Abort every build not finished (the service is stopping). */
  abortUnfinished(): void {
    for (const j of this.jobs.values()) if (!j.info.finishedAt) j.abort.abort();
  }

  private own(job: BuildJob): Job {
    return job as Job;
  }

  private push(job: Job, line: BuildLogLine): void {
    job.lines.push(line);
    if (job.lines.length > this.maxLogLines) job.lines.splice(0, job.lines.length - this.maxLogLines);
    for (const l of job.listeners) l(line);
  }
}
