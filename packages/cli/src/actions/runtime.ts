import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FormError } from '@formation/interface';
import type { ApiClient } from '@formation/service/client';
import pc from 'picocolors';
import { parseNodeUrl } from '../cli-config.ts';
import { developerKey } from '../node-client.ts';
import { printJson } from '../output.ts';

// The bodies of `form runtime …` (registered in commands/runtime.ts).

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

/** Print `value` as JSON with --json, else the human line(s). */
function out(opts: Common, value: unknown, human: () => string): number {
  if (opts.json) printJson(value);
  else process.stdout.write(`${human()}\n`);
  return 0;
}

export async function imageImport(archive: string, opts: Common & { expectId?: string }): Promise<number> {
  const r = await (await client(opts)).post<{ id: string; repoTags: string[] }>('/images/import', {
    path: resolve(archive),
    ...(opts.expectId ? { expectId: opts.expectId } : {}),
  });
  return out(opts, r, () => `imported ${r.id} ${r.repoTags.join(', ')}`);
}

export async function imageBuildJs(opts: Common): Promise<number> {
  const r = await (await client(opts)).post<{ id: string; repoTags: string[]; archive: string }>(
    '/images/build-js',
    {},
  );
  return out(opts, r, () => `built ${r.repoTags.join(', ')} ${r.id}\narchive: ${r.archive}`);
}

export async function imageList(opts: Common): Promise<number> {
  const r = await (await client(opts, false)).get<{ images: Array<{ id: string; repoTags: string[] }> }>('/images');
  return out(opts, r, () => r.images.map((i) => `${i.id}  ${i.repoTags.join(', ')}`).join('\n') || '(no images)');
}

export async function moduleAdd(file: string, opts: Common): Promise<number> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new FormError('CLI_USAGE', `Cannot read module ${file}: ${(err as Error).message}`);
  }
  const r = await (await client(opts)).post<{ id: string; ModuleFormat: string }>('/modules', raw);
  return out(opts, r, () => `module ${r.id} (${r.ModuleFormat})`);
}

export async function moduleList(opts: Common): Promise<number> {
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
}

export async function spawnProcess(
  module: string,
  opts: Common & { data?: string; file?: string; tag?: string[] },
): Promise<number> {
  const data = opts.file ? await readFile(opts.file, 'utf8') : (opts.data ?? '');
  const tags = Object.entries(pairs(opts.tag, '--tag')).map(([name, value]) => ({ name, value }));
  const r = await (await client(opts)).post<{ id: string }>('/processes', { module, data, tags });
  return out(opts, r, () => r.id);
}

export async function listProcesses(opts: Common): Promise<number> {
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
}

export async function sendMessage(
  pid: string,
  act: string,
  opts: Common & { data: string; param?: string[]; dryRun?: boolean },
): Promise<number> {
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
}

export async function messageResult(pid: string, ref: string, opts: Common): Promise<number> {
  const r = await (await client(opts, false)).get<unknown>(
    `/processes/${encodeURIComponent(pid)}/results/${encodeURIComponent(ref)}`,
  );
  printJson(r);
  return 0;
}

export async function checkpoint(pid: string, opts: Common): Promise<number> {
  const r = await (await client(opts)).post<{ sha256: string; sequence: number; size: number }>(
    `/processes/${encodeURIComponent(pid)}/checkpoint`,
    {},
  );
  return out(opts, r, () => `checkpoint ${r.sha256} at sequence ${r.sequence} (${r.size} bytes)`);
}

export async function restore(pid: string, sha: string | undefined, opts: Common & { file?: string }): Promise<number> {
  if (!sha && !opts.file) throw new FormError('CLI_USAGE', 'Cannot restore: give a checkpoint sha256 or --file <blob>');
  const body = opts.file ? { data: await readFile(opts.file, 'utf8') } : { sha256: sha };
  const r = await (await client(opts)).post<{ id: string; lastSequence: number }>(
    `/processes/${encodeURIComponent(pid)}/restore`,
    body,
  );
  return out(opts, r, () => `restored ${r.id}; next message is sequence ${r.lastSequence + 1}`);
}
