import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestFiles } from '@formation/guest';
import type { FormpackManifest } from '@formation/interface';
import { Builder } from './builder.ts';
import { DEFAULT_PACK_CACHE } from './config.ts';
import { loadSpec } from './formfile.ts';

/**
 * Test and bench support (`@formation/pack/testing`, not used by the service): Formpacks built with
 * the real builder, so they carry everything a real image does (the guest agent, /usr/sbin/form-attest,
 * form-disk), and cached under a directory of the caller's choice so a suite builds each one once.
 */

/** A Formpack built for tests: the store it is in, its ID and its manifest. */
export interface BuiltFormpack {
  formpacksDir: string;
  id: string;
  manifest: FormpackManifest;
}

/** A build-context file: its text, or its text and mode (for a script the entrypoint runs). */
export type ContextFile = string | { text: string; mode: number };

/**
 * Build the context `files` (a Formfile among them) with the real builder, once: the result is kept
 * under `cacheRoot`, keyed by the files' text and the guest files every image takes in, so a change
 * to either builds anew. The base image comes from FORM_PACK_CACHE (default the shared pack cache).
 */
export async function cachedFormpack(
  cacheRoot: string,
  files: Record<string, ContextFile>,
  owner: string,
): Promise<BuiltFormpack> {
  const h = createHash('sha256');
  for (const f of Object.values(files)) h.update(typeof f === 'string' ? f : f.text);
  for (const g of guestFiles()) h.update(readFileSync(g.source));
  const root = join(cacheRoot, h.digest('hex').slice(0, 16));
  const ctx = join(root, 'context');
  mkdirSync(ctx, { recursive: true });
  for (const [name, f] of Object.entries(files)) {
    writeFileSync(join(ctx, name), typeof f === 'string' ? f : f.text);
    if (typeof f !== 'string') chmodSync(join(ctx, name), f.mode);
  }
  const builder = new Builder({
    dataDir: join(root, 'data'),
    cacheDir: process.env.FORM_PACK_CACHE ?? DEFAULT_PACK_CACHE,
  });
  const { spec, dir } = await loadSpec(ctx);
  const { id, manifest } = await builder.build({ spec, dir, owner });
  return { formpacksDir: join(root, 'data', 'formpacks'), id, manifest };
}
