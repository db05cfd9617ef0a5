import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { redactFormfile } from '@formation/formfile';
import { GUEST_CONTRACT } from '@formation/guest';
import {
  type BuildStep,
  FormError,
  type FormfileSpec,
  type FormpackArtifact,
  type FormpackManifest,
} from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import { cachePaths, checkPackages, ensureBase, ensureLayer, sweepTemps } from './base.ts';
import { DEFAULT_SANDBOX, type SandboxLimits } from './chroot.ts';
import { formpackId, readBuildContext } from './context.ts';
import { ensurePrivateDir } from './dirs.ts';
import { runOk } from './exec.ts';
import { buildTimeout, customizeRootfs, makeDisk } from './image.ts';
import { ensureInitramfs, findKernel } from './kernel.ts';
import { alive, withLock } from './lock.ts';
import { normalizeSpec } from './normalize.ts';

export interface BuilderOptions {
  /** Formpacks live in `<dataDir>/formpacks/<id>/`. */
  dataDir: string;
  /** Base rootfs, package layers, .deb cache, initramfs (shared by all builds; may be shared across data dirs). */
  cacheDir: string;
  /** Debian suite of the base image. */
  suite?: string;
  /** Debian mirror; empty = mmdebstrap's default. */
  mirror?: string;
  /** Kernel to boot; default the host's newest /boot/vmlinuz-*-cloud-amd64. */
  kernel?: string;
  logger?: Logger;
  /** Longest a whole build may take (default DEFAULT_BUILD_TIMEOUT_MS); then PACK_BUILD_TIMEOUT. */
  buildTimeoutMs?: number;
  /** Longest one RUN step may take (default: buildTimeoutMs). */
  runTimeoutMs?: number;
  /** uid/gid range and process limit of the build sandbox (default DEFAULT_SANDBOX). */
  sandbox?: SandboxLimits;
}

/** Default longest time of one build (base image and package layer included). */
export const DEFAULT_BUILD_TIMEOUT_MS = 10 * 60_000;

/** Progress of a build: a step starts, or a line of tool output. */
export type BuildEvent =
  | { type: 'step'; step: BuildStep; detail?: string; elapsedMs: number }
  | { type: 'log'; line: string; elapsedMs: number };

/** The steps a build's log names (`@formation/interface/build-steps`: the dashboard and CLI read the same list). */
export type { BuildStep };

export interface BuildRequest {
  spec: FormfileSpec;
  /** The build directory (COPY sources are relative to it). */
  dir: string;
  /** Address of the developer (the manifest's owner). */
  owner: string;
  /**
   * Key of the password HMACs in the Formpack ID (64 hex; see normalizeSpec). Default: this node's
   * own key (<dataDir>/pack-id.key), so the ID of a Formfile with passwords is not a guessing oracle.
   */
  idKey?: string;
  onEvent?: (e: BuildEvent) => void;
  signal?: AbortSignal;
}

export interface BuildResult {
  id: string;
  manifest: FormpackManifest;
  /** True when the Formpack already existed (nothing was built). */
  cached: boolean;
}

export const ARTIFACT_FILES = { disk: 'disk.qcow2', kernel: 'vmlinuz', initramfs: 'initramfs.img' } as const;
export type ArtifactName = keyof typeof ARTIFACT_FILES;

const ID_RE = /^[0-9a-f]{64}$/;

async function artifact(dir: string, file: string): Promise<FormpackArtifact> {
  const p = join(dir, file);
  return { file, sha256: await sha256File(p), bytes: statSync(p).size };
}

/** The spec as recorded in a manifest: each password replaced by "[redacted]" (the image only has its hash). */
export function redactSpec(spec: FormfileSpec): FormfileSpec {
  return redactFormfile(spec);
}

/**
 * Builds Formpacks: Formfile spec + build directory -> `<dataDir>/formpacks/<id>/` (manifest.json,
 * disk.qcow2, vmlinuz, initramfs.img), content-addressed and written atomically.
 *
 * @example
 * const b = new Builder({ dataDir, cacheDir });
 * const { id, manifest } = await b.build({ spec, dir: 'examples/hello-server', owner: key.address });
 */
export class Builder {
  readonly dataDir: string;
  readonly cacheDir: string;
  readonly formpacksDir: string;
  private readonly opts: BuilderOptions;
  private readonly inflight = new Map<string, Promise<BuildResult>>();

  constructor(opts: BuilderOptions) {
    this.opts = opts;
    this.dataDir = opts.dataDir;
    this.cacheDir = opts.cacheDir;
    this.formpacksDir = join(opts.dataDir, 'formpacks');
    ensurePrivateDir(opts.cacheDir, 'the pack cache');
    ensurePrivateDir(opts.dataDir, 'the data directory');
    ensurePrivateDir(this.formpacksDir, 'the Formpack directory');
    sweepTemps(this.formpacksDir, alive);
    sweepTemps(cachePaths(this.cacheDir).tmp, alive);
  }

  /** The ID a build of `spec` in `dir` would have (hashes the context; builds nothing). */
  async idOf(spec: FormfileSpec, dir: string, idKey?: string): Promise<string> {
    const ctx = await readBuildContext(spec, dir);
    return formpackId(normalizeSpec(spec, idKey ?? this.nodeIdKey()), ctx.digest);
  }

  /** This node's Formpack ID key (created once, 0600), used when a build names none. */
  nodeIdKey(): string {
    const file = join(this.dataDir, 'pack-id.key');
    if (!existsSync(file)) {
      try {
        writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return readFileSync(file, 'utf8').trim();
  }

  /** Directory of a built Formpack (whether or not it exists). */
  pathOf(id: string): string {
    if (!ID_RE.test(id)) throw new FormError('BAD_REQUEST', `Cannot use Formpack ID ${id}: expected 64 hex characters`);
    return join(this.formpacksDir, id);
  }

  /** The manifest of a built Formpack, or null. */
  get(id: string): FormpackManifest | null {
    const p = join(this.pathOf(id), 'manifest.json');
    if (!existsSync(p)) return null;
    return JSON.parse(readFileSync(p, 'utf8')) as FormpackManifest;
  }

  /** All built Formpacks, newest first. */
  list(): FormpackManifest[] {
    const out: FormpackManifest[] = [];
    for (const name of readdirSync(this.formpacksDir)) {
      if (!ID_RE.test(name)) continue;
      const m = this.get(name);
      if (m) out.push(m);
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  }

  /** Delete a Formpack (atomically: renamed away, then removed). False when it did not exist. */
  remove(id: string): boolean {
    const dir = this.pathOf(id);
    if (!existsSync(dir)) return false;
    const trash = join(this.formpacksDir, `.rm-${id}-${process.pid}-${randomBytes(4).toString('hex')}`);
    renameSync(dir, trash);
    rmSync(trash, { recursive: true, force: true });
    return true;
  }

  /** Path of one artifact of a built Formpack (PACK_NOT_FOUND when absent). */
  artifactPath(id: string, name: ArtifactName): string {
    if (!this.get(id)) throw new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${id}`);
    return join(this.pathOf(id), ARTIFACT_FILES[name]);
  }

  /**
   * Signers other than the owner who asked for this Formpack and got it from the cache (same inputs):
   * they may download it too (see the pack API), so whoever builds a Formfile first cannot lock
   * out the others who build the same one.
   */
  requesters(id: string): string[] {
    const p = join(this.pathOf(id), 'requesters');
    return existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean) : [];
  }

  /** Record `address` as a requester of Formpack `id` (no-op for its owner or when already there). */
  addRequester(id: string, address: string): void {
    const m = this.get(id);
    if (!m || m.owner === address || this.requesters(id).includes(address)) return;
    appendFileSync(join(this.pathOf(id), 'requesters'), `${address}\n`);
  }

  /** Build (or return the existing) Formpack. Two builds of one ID, in or across processes, do the work once. */
  async build(req: BuildRequest): Promise<BuildResult> {
    const r = await this.buildOrReuse(req);
    if (r.cached) this.addRequester(r.id, req.owner);
    return r;
  }

  private async buildOrReuse(req: BuildRequest): Promise<BuildResult> {
    const t0 = Date.now();
    const emit = (e: { type: 'step'; step: BuildStep; detail?: string } | { type: 'log'; line: string }) =>
      req.onEvent?.({ ...e, elapsedMs: Date.now() - t0 } as BuildEvent);
    emit({ type: 'step', step: 'context' });
    const ctx = await readBuildContext(req.spec, req.dir);
    const id = formpackId(normalizeSpec(req.spec, req.idKey ?? this.nodeIdKey()), ctx.digest);
    const existing = this.get(id);
    if (existing) {
      emit({ type: 'step', step: 'cached', detail: id });
      return { id, manifest: existing, cached: true };
    }
    const running = this.inflight.get(id);
    if (running) {
      emit({ type: 'step', step: 'wait', detail: 'another build of this Formpack is running' });
      return { ...(await running), cached: true };
    }
    const limitMs = this.opts.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    let current = 'context';
    const tracked = (e: Parameters<typeof emit>[0]) => {
      if (e.type === 'step') current = e.step === 'run' && e.detail ? `RUN ${e.detail}` : `step ${e.step}`;
      emit(e);
    };
    const p = withLock(
      join(this.formpacksDir, '.locks', `${id}.lock`),
      async () => {
        const again = this.get(id);
        if (again) return { id, manifest: again, cached: true };
        const timer = AbortSignal.timeout(limitMs);
        const signal = req.signal ? AbortSignal.any([req.signal, timer]) : timer;
        try {
          return await this.buildNew(id, { ...req, signal }, tracked);
        } catch (err) {
          if (timer.aborted && !req.signal?.aborted) {
            throw buildTimeout(`the build (at ${current})`, limitMs, 'buildTimeoutMs');
          }
          throw err;
        }
      },
      () => emit({ type: 'step', step: 'wait', detail: 'another process is building this Formpack' }),
    );
    this.inflight.set(id, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(id);
    }
  }

  private async buildNew(
    id: string,
    req: BuildRequest,
    emit: (e: { type: 'step'; step: BuildStep; detail?: string } | { type: 'log'; line: string }) => void,
  ): Promise<BuildResult> {
    const { spec } = req;
    const log = this.opts.logger?.child({ component: 'pack-builder', formpack: id });
    const onLine = (line: string) => emit({ type: 'log', line });
    const base = {
      cacheDir: this.cacheDir,
      suite: this.opts.suite ?? 'bookworm',
      mirror: this.opts.mirror ?? '',
      onLine,
      signal: req.signal,
    };
    if (process.getuid?.() !== 0) {
      throw new FormError(
        'HOST_UNSUPPORTED',
        'Cannot build a Formpack: building needs root (mmdebstrap, chroot, mount namespaces)',
        {
          hint: 'Run the node (or `form pack build --local`) as root.',
        },
      );
    }
    const kernel = findKernel(this.opts.kernel);
    emit({ type: 'step', step: 'base' });
    const b = await ensureBase(base);
    // `HTTPS <port>` brings the in-guest ACME client and TLS front (only to images that ask for it).
    const install =
      spec.https && spec.https.terminate !== 'ingress'
        ? [...new Set([...spec.install, ...GUEST_CONTRACT.httpsPackages])]
        : spec.install;
    checkPackages(install, b.available, base.suite);
    emit({ type: 'step', step: 'packages', detail: install.join(' ') || '(none)' });
    const layer = await ensureLayer(base, b, install);
    const tmp = join(this.formpacksDir, `.tmp-${id.slice(0, 12)}-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(join(tmp, 'out'), { recursive: true });
    try {
      emit({ type: 'step', step: 'rootfs' });
      const rootfs = join(tmp, 'rootfs');
      await runOk(['cp', '-a', '--reflink=auto', layer, rootfs], 'copy the package layer', { signal: req.signal });
      emit({ type: 'step', step: 'configure' });
      await customizeRootfs({
        rootfs,
        spec,
        contextDir: req.dir,
        id,
        onLine,
        onRun: (i, cmd) => emit({ type: 'step', step: 'run', detail: `${i + 1}/${spec.run.length}: ${cmd}` }),
        signal: req.signal,
        runTimeoutMs: this.opts.runTimeoutMs ?? this.opts.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
        sandbox: this.opts.sandbox ?? DEFAULT_SANDBOX,
      });
      emit({ type: 'step', step: 'disk', detail: `${spec.diskGiB} GiB ext4 -> qcow2` });
      const qcow2 = await makeDisk(rootfs, spec, tmp, req.signal);
      rmSync(rootfs, { recursive: true, force: true });
      const out = join(tmp, 'out');
      renameSync(qcow2, join(out, ARTIFACT_FILES.disk));
      emit({ type: 'step', step: 'boot-files', detail: kernel.version });
      copyFileSync(kernel.path, join(out, ARTIFACT_FILES.kernel));
      copyFileSync(await ensureInitramfs(this.cacheDir, kernel), join(out, ARTIFACT_FILES.initramfs));
      emit({ type: 'step', step: 'manifest' });
      const manifest: FormpackManifest = {
        id,
        name: spec.name,
        owner: req.owner,
        createdAt: new Date().toISOString(),
        formfile: redactSpec(spec),
        resources: { vcpu: spec.vcpu, memMiB: spec.memMiB, diskGiB: spec.diskGiB },
        cmdline: GUEST_CONTRACT.cmdline,
        init: GUEST_CONTRACT.init,
        artifacts: {
          disk: await artifact(out, ARTIFACT_FILES.disk),
          kernel: await artifact(out, ARTIFACT_FILES.kernel),
          initramfs: await artifact(out, ARTIFACT_FILES.initramfs),
        },
        guest: { agent: 'qemu-ga', agentChannel: GUEST_CONTRACT.agentChannel, sshd: 'openssh' },
      };
      writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      renameSync(out, this.pathOf(id));
      log?.info({ name: spec.name, disk: manifest.artifacts.disk.bytes }, 'formpack built');
      emit({ type: 'step', step: 'done', detail: id });
      return { id, manifest, cached: false };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        throw new FormError('DISK_FULL', 'Cannot build the Formpack: no space left on the host disk', {
          hint: 'Free space in the data directory; the cache and earlier Formpacks are intact.',
          cause: err,
        });
      }
      throw err;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}
