import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FormError } from '@formation/interface';
import type { ApiClient } from '@formation/service/client';
import type { Command } from 'commander';
import pc from 'picocolors';
import { parseNodeUrl } from '../cli-config.ts';
import { developerKey } from '../node-client.ts';
import { action, printJson } from '../output.ts';
import type { CommandContext } from '../program.ts';

interface Common {
  node?: string;
  json?: boolean;
}

/** The runtime API: --node, then FORM_RUNTIME_URL, then http://127.0.0.1:8080 (seed 004's `port: :8080`). */
async function client(opts: Common, sign = true): Promise<ApiClient> {
  const url = parseNodeUrl(opts.node ?? process.env.FORM_RUNTIME_URL ?? 'http://127.0.0.1:8080');
  const key = sign ? await developerKey() : undefined;
  const { ApiClient } = await import('@formation/service/client');
  return new ApiClient(url, key, 300_000);
}

function pairs(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of list ?? []) {
    const i = p.indexOf('=');
    if (i <= 0) throw new FormError('CLI_USAGE', `Cannot use ${what} ${JSON.stringify(p)}: write name=value`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

const collect = (v: string, acc: string[] = []) => [...acc, v];

function out(opts: Common, value: unknown, human: () => string): number {
  if (opts.json) printJson(value);
  else process.stdout.write(`${human()}\n`);
  return 0;
}

function withCommon(c: Command): Command {
  return c
    .option('--node <url>', 'runtime API URL (default FORM_RUNTIME_URL or http://127.0.0.1:8080)')
    .option('--json', 'print JSON');
}

export function registerRuntime({ noun }: CommandContext): void {
  const rt = noun(
    'runtime',
    'Compute runtime (HyMatrix/VMDocker compatible): modules, processes, messages, checkpoints',
  );
  rt.addHelpText(
    'after',
    `
Examples:
  $ form runtime image build-js                 build our JS process runtime image and import it
  $ form runtime module add mod-js.json
  $ form runtime spawn <module-id> --file counter.js
  $ form runtime send <pid> Inc --data 5
  $ form runtime result <pid> 1
  $ form runtime checkpoint <pid>
  $ form runtime restore <pid> <sha256>`,
  );
  const image = rt.command('image').description('Images in the node-local store (docker save archives)');
  withCommon(
    image
      .command('import')
      .argument('<archive>', 'docker save archive (.tar or .tar.gz) on the node')
      .option('--expect-id <sha256:…>', 'refuse unless the image id is this'),
  )
    .description('Import a docker save archive into the node-local image store')
    .action(
      action(async (archive: string, opts: Common & { expectId?: string }) => {
        const r = await (await client(opts)).post<{ id: string; repoTags: string[] }>('/images/import', {
          path: resolve(archive),
          ...(opts.expectId ? { expectId: opts.expectId } : {}),
        });
        return out(opts, r, () => `imported ${r.id} ${r.repoTags.join(', ')}`);
      }),
    );
  withCommon(image.command('build-js'))
    .description('Build the JS process runtime image (no Docker needed) and import it')
    .action(
      action(async (opts: Common) => {
        const r = await (await client(opts)).post<{ id: string; repoTags: string[]; archive: string }>(
          '/images/build-js',
          {},
        );
        return out(opts, r, () => `built ${r.repoTags.join(', ')} ${r.id}\narchive: ${r.archive}`);
      }),
    );
  withCommon(image.command('list'))
    .description('List stored images')
    .action(
      action(async (opts: Common) => {
        const r = await (await client(opts, false)).get<{ images: Array<{ id: string; repoTags: string[] }> }>(
          '/images',
        );
        return out(opts, r, () => r.images.map((i) => `${i.id}  ${i.repoTags.join(', ')}`).join('\n') || '(no images)');
      }),
    );

  const mod = rt.command('module').description('Modules: which image runs a kind of process');
  withCommon(
    mod.command('add').argument('<file>', 'module JSON (ModuleFormat web.vmdocker-…, tags Image-Name and Image-ID)'),
  )
    .description('Register a module')
    .action(
      action(async (file: string, opts: Common) => {
        let raw: unknown;
        try {
          raw = JSON.parse(await readFile(file, 'utf8'));
        } catch (err) {
          throw new FormError('CLI_USAGE', `Cannot read module ${file}: ${(err as Error).message}`);
        }
        const r = await (await client(opts)).post<{ id: string; ModuleFormat: string }>('/modules', raw);
        return out(opts, r, () => `module ${r.id} (${r.ModuleFormat})`);
      }),
    );
  withCommon(mod.command('list'))
    .description('List modules')
    .action(
      action(async (opts: Common) => {
        const r = await (await client(opts, false)).get<{
          modules: Array<{ id: string; ModuleFormat: string; Tags: Array<{ name: string; value: string }> }>;
        }>('/modules');
        return out(
          opts,
          r,
          () =>
            r.modules
              .map((m) => `${m.id}  ${m.ModuleFormat}  ${m.Tags.find((t) => t.name === 'Image-Name')?.value ?? ''}`)
              .join('\n') || '(no modules)',
        );
      }),
    );

  withCommon(rt.command('spawn').argument('<module>', 'module id'))
    .description('Spawn a process from a module')
    .option('--data <text>', 'spawn data (for the JS runtime: the process code)')
    .option('--file <path>', 'read the spawn data from a file')
    .option('--tag <name=value>', 'process tag (repeatable)', collect)
    .action(
      action(async (module: string, opts: Common & { data?: string; file?: string; tag?: string[] }) => {
        const data = opts.file ? await readFile(opts.file, 'utf8') : (opts.data ?? '');
        const tags = Object.entries(pairs(opts.tag, '--tag')).map(([name, value]) => ({ name, value }));
        const r = await (await client(opts)).post<{ id: string }>('/processes', { module, data, tags });
        return out(opts, r, () => r.id);
      }),
    );
  withCommon(rt.command('list'))
    .description('List processes on the node')
    .action(
      action(async (opts: Common) => {
        const r = await (await client(opts, false)).get<{
          processes: Array<{
            id: string;
            moduleId: string;
            lastSequence: number;
            container: { alive: boolean } | null;
          }>;
        }>('/processes');
        return out(
          opts,
          r,
          () =>
            r.processes
              .map(
                (p) =>
                  `${p.id}  seq ${p.lastSequence}  ${p.container?.alive ? pc.green('running') : pc.yellow('stopped')}  module ${p.moduleId.slice(0, 12)}`,
              )
              .join('\n') || '(no processes)',
        );
      }),
    );
  withCommon(rt.command('send').argument('<pid>', 'process id').argument('<action>', 'message Action'))
    .description('Send a message to a process and print its result')
    .option('--data <text>', 'message data', '')
    .option('--param <name=value>', 'message tag (repeatable)', collect)
    .option('--dry-run', 'compute the result without changing the process')
    .action(
      action(async (pid: string, act: string, opts: Common & { data: string; param?: string[]; dryRun?: boolean }) => {
        const r = await (await client(opts)).post<{
          sequence: number;
          itemId: string;
          result: { data: string; output: string; error?: string };
        }>(`/processes/${encodeURIComponent(pid)}/messages`, {
          action: act,
          data: opts.data,
          params: pairs(opts.param, '--param'),
          ...(opts.dryRun ? { mode: 'dry-run' } : {}),
        });
        out(opts, r, () =>
          [
            `message ${r.itemId} (sequence ${r.sequence})`,
            r.result.output && `output: ${r.result.output}`,
            r.result.data && `data: ${r.result.data}`,
            r.result.error && pc.red(`error: ${r.result.error}`),
          ]
            .filter(Boolean)
            .join('\n'),
        );
        return r.result.error ? 1 : 0;
      }),
    );
  withCommon(
    rt.command('result').argument('<pid>', 'process id').argument('<message>', 'sequence number or message id'),
  )
    .description('Show the result of a message')
    .action(
      action(async (pid: string, ref: string, opts: Common) => {
        const r = await (await client(opts, false)).get<unknown>(
          `/processes/${encodeURIComponent(pid)}/results/${encodeURIComponent(ref)}`,
        );
        printJson(r);
        return 0;
      }),
    );
  withCommon(rt.command('checkpoint').argument('<pid>', 'process id'))
    .description('Checkpoint a process (state + workspace, content-hashed)')
    .action(
      action(async (pid: string, opts: Common) => {
        const r = await (await client(opts)).post<{ sha256: string; sequence: number; size: number }>(
          `/processes/${encodeURIComponent(pid)}/checkpoint`,
          {},
        );
        return out(opts, r, () => `checkpoint ${r.sha256} at sequence ${r.sequence} (${r.size} bytes)`);
      }),
    );
  withCommon(
    rt.command('restore').argument('<pid>', 'process id').argument('[sha256]', 'checkpoint stored on the node'),
  )
    .description('Restore a process from a checkpoint (a corrupt one is refused; the process keeps its state)')
    .option('--file <path>', 'checkpoint blob to upload instead of a stored sha256')
    .action(
      action(async (pid: string, sha: string | undefined, opts: Common & { file?: string }) => {
        if (!sha && !opts.file)
          throw new FormError('CLI_USAGE', 'Cannot restore: give a checkpoint sha256 or --file <blob>');
        const body = opts.file ? { data: await readFile(opts.file, 'utf8') } : { sha256: sha };
        const r = await (await client(opts)).post<{ id: string; lastSequence: number }>(
          `/processes/${encodeURIComponent(pid)}/restore`,
          body,
        );
        return out(opts, r, () => `restored ${r.id}; next message is sequence ${r.lastSequence + 1}`);
      }),
    );
}
