import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { registerAttestRoutes } from '@formation/attest';
import { generateKeyPair } from '@formation/identity';
import { createPackService } from '@formation/pack';
import { createApiServer } from '@formation/service';
import { createStateService, openStateStore } from '@formation/state';
import { registerVmmRoutes, type VmManager } from '@formation/vmm';
import { UPSTREAM_CALLS } from '../src/index.ts';
import { logger, offlineDashboard } from './fixture.ts';
import { missingInOpenApi } from './openapi.ts';

test("every node API call of the BFF exists in that service's OpenAPI document (state, pack, vmm)", async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'formation-web-openapi-'));
  const store = openStateStore({ path: ':memory:' });
  const state = await createStateService({ store, logger });
  const pack = await createPackService({ dataDir: tmp, cacheDir: join(tmp, 'cache'), logger });
  const vmm = await createApiServer({ name: 'vmm', logger });
  // routes only: no handler runs here (the log routes exist where the VMM keeps logs, as formationd's does)
  registerVmmRoutes(vmm, {} as VmManager, undefined, {}, {} as Parameters<typeof registerVmmRoutes>[4]);
  // formationd mounts the attestation routes on the VMM API
  registerAttestRoutes(vmm, { nodeKey: generateKeyPair(), vmm: {} as VmManager, logger });
  try {
    const docs: Record<string, unknown> = {
      state: (await state.inject({ method: 'GET', url: '/openapi.json' })).json(),
      pack: (await pack.app.inject({ method: 'GET', url: '/openapi.json' })).json(),
      vmm: (await vmm.inject({ method: 'GET', url: '/openapi.json' })).json(),
    };
    let checked = 0;
    for (const call of UPSTREAM_CALLS) {
      // formnet's GET /node is added by formationd itself: test/e2e.test.ts checks it on a live node.
      if (call.service === 'formnet') continue;
      assert.equal(missingInOpenApi(docs[call.service], call), undefined);
      checked++;
    }
    assert.equal(checked, UPSTREAM_CALLS.length - 1);
    // The check itself can fail.
    assert.match(
      missingInOpenApi(docs.vmm, { method: 'get', path: '/vms', fields: ['nope'] }) ?? '',
      /lacks fields nope/,
    );
  } finally {
    await Promise.all([state.close(), pack.close(), vmm.close()]);
    store.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("every BFF path the browser client calls exists in the dashboard's own OpenAPI document", async () => {
  const web = await offlineDashboard();
  try {
    const doc = (await web.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const src = readFileSync(new URL('../src/app/api.ts', import.meta.url), 'utf8');
    const calls = [...src.matchAll(/call<[^>]+>\('(GET|POST|DELETE)', [`']([^`'?]+)/g)].map((m) => ({
      method: (m[1] as string).toLowerCase(),
      path: (m[2] as string).replace(/\$\{encodeURIComponent\(id\)\}/g, '{id}'),
      fields: [],
    }));
    assert.ok(calls.length >= 15, `found ${calls.length} calls in api.ts`);
    for (const c of calls) assert.equal(missingInOpenApi(doc, c), undefined);
  } finally {
    await web.close();
  }
});
