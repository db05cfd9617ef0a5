import { relative } from 'node:path';
import { type BuildStep, FormError, type FormpackManifest } from '@formation/interface';
// Types only at load time: @formation/pack (Fastify, tar) is imported when a pack command runs, so it
// does not slow down every other `form` command.
import type { BuildEvent, Builder, BuildLogLine } from '@formation/pack';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';

interface PackBuildOptions {
  file: string;
  json?: boolean;
  verbose?: boolean;
  local?: boolean;
  node?: string;
}

/** Every step's label: a Record over BuildStep, so a new step cannot go unlabelled. */
const STEP_LABEL: Record<BuildStep, string> = {
  context: 'hash build context',
  cached: 'already built',
  wait: 'wait for the same build',
  base: 'base image',
  packages: 'install packages',
  rootfs: 'copy root filesystem',
  configure: 'users, files, environment',
  run: 'RUN',
  disk: 'disk image',
  'boot-files': 'kernel + initramfs',
  manifest: 'manifest',
  done: 'done',
};

/** The Builder on this machine (same data and cache dirs as the node's pack service). */
export async function localBuilder(): Promise<Builder> {
  const { Builder, loadPackConfig } = await import('@formation/pack');
  const cfg = loadPackConfig({ env: process.env });
  return new Builder({
    dataDir: cfg.dataDir,
    cacheDir: cfg.cacheDir,
    suite: cfg.suite,
    mirror: cfg.mirror,
    ...(cfg.kernel ? { kernel: cfg.kernel } : {}),
  });
}

/** Resolve a full ID or a unique prefix among local Formpacks. */
export function resolveLocalId(builder: Builder, idOrPrefix: string): string {
  const found = builder.list().filter((m) => m.id.startsWith(idOrPrefix.toLowerCase()));
  if (found.length === 1) return found[0]!.id;
  if (found.length > 1) {
    throw new FormError('CLI_USAGE', `Cannot pick a Formpack: ${idOrPrefix} matches ${found.length} IDs`, {
      hint: 'Give more characters of the ID.',
    });
  }
  throw new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${idOrPrefix}`, {
    hint: 'List them with `form pack list`.',
  });
}

/** Shows build steps with elapsed time: a spinner line on a terminal, plain lines otherwise. */
class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly verbose: boolean;
  private readonly quiet: boolean;
  private current: { label: string; detail: string; at: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly t0 = Date.now();
  private frame = 0;

  constructor(verbose: boolean, quiet: boolean) {
    this.verbose = verbose;
    this.quiet = quiet;
  }

  event(e: BuildEvent | BuildLogLine): void {
    if (this.quiet && !this.verbose) return;
    if (e.type === 'step') {
      this.finishLine();
      const label = STEP_LABEL[e.step] ?? e.step;
      this.current = { label, detail: e.detail ?? '', at: Date.now() };
      if (!this.tty) process.stderr.write(`${this.stamp()} ${label}${e.detail ? ` ${pc.dim(e.detail)}` : ''}\n`);
      else if (!this.timer) this.timer = setInterval(() => this.draw(), 100);
    } else if (e.type === 'log' && this.verbose) {
      if (this.tty) process.stderr.write('\r\x1b[K');
      process.stderr.write(`${pc.dim(`    ${e.line}`)}\n`);
    }
  }

  private stamp(): string {
    return pc.dim(`[${((Date.now() - this.t0) / 1000).toFixed(1).padStart(5)}s]`);
  }

  private draw(): void {
    if (!this.current) return;
    const spin = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'[this.frame++ % 10];
    const secs = ((Date.now() - this.current.at) / 1000).toFixed(1);
    process.stderr.write(
      `\r\x1b[K${pc.cyan(spin ?? '')} ${this.current.label} ${pc.dim(this.current.detail)} ${pc.dim(`${secs}s`)}`,
    );
  }

  private finishLine(): void {
    if (this.tty && this.current) {
      const secs = ((Date.now() - this.current.at) / 1000).toFixed(1);
      process.stderr.write(
        `\r\x1b[K${pc.green('✔')} ${this.current.label} ${pc.dim(this.current.detail)} ${pc.dim(`${secs}s`)}\n`,
      );
    }
    this.current = null;
  }

  end(ok: boolean): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (ok) this.finishLine();
    else if (this.tty && this.current) {
      process.stderr.write(`\r\x1b[K${pc.red('✖')} ${this.current.label}\n`);
      this.current = null;
    }
  }
}

export async function packBuild(dir: string, opts: PackBuildOptions): Promise<number> {
  const t0 = Date.now();
  const { loadSpec, PackClient } = await import('@formation/pack');
  const { spec, dir: absDir } = await loadSpec(
    dir,
    opts.file,
    relative(process.cwd(), `${dir}/${opts.file}`) || opts.file,
  );
  const progress = new Progress(opts.verbose === true, opts.json === true);
  let id: string;
  let manifest: FormpackManifest;
  let cached: boolean;
  try {
    if (opts.local) {
      const owner = await developerKey()
        .then((k) => k.address as string)
        .catch(() => 'local');
      const r = await (await localBuilder()).build({ spec, dir: absDir, owner, onEvent: (e) => progress.event(e) });
      ({ id, manifest, cached } = r);
    } else {
      const client = new PackClient(await serviceUrl('pack', opts.node), await developerKey());
      ({ id, manifest, cached } = await client.buildAndWait(spec, absDir, {
        formfile: opts.file,
        onEvent: (e) => progress.event(e),
      }));
    }
    progress.end(true);
  } catch (err) {
    progress.end(false);
    throw err;
  }
  if (opts.json) {
    printJson({ id, name: manifest.name, manifest });
  } else {
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const size = (manifest.artifacts.disk.bytes / 2 ** 20).toFixed(0);
    process.stdout.write(
      `${pc.green('✔')} ${cached ? 'Already built' : 'Built'} ${pc.bold(manifest.name)} in ${secs}s (disk ${size} MiB qcow2, ${manifest.resources.diskGiB} GiB)\n`,
    );
    process.stdout.write(`Formpack ID: ${id}\n`);
  }
  return 0;
}
