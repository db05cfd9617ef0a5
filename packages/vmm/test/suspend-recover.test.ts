import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { createLogger } from '@formation/service';
import { MemoryDriver } from '../src/memory-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { memoryVmmConfig } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

// Suspend across VMM restarts (memory driver, no root): a suspended VM stays suspended and resumable;
// guest memory that an unfinished suspend left on disk is removed at start.

const tmp = mkdtempSync('/tmp/fvmm-susp-');
const made: VmmService[] = [];
after(async () => {
  for (const v of made) {
    await v.manager.destroyAll();
    await v.close({ stopVms: true });
  }
  rmSync(tmp, { recursive: true, force: true });
});

async function vmm(): Promise<VmmService> {
  const config = memoryVmmConfig(tmp);
  const v = await createVmmService({ config, logger: createLogger('silent'), driver: new MemoryDriver(), logs: false });
  made.push(v);
  return v;
}

test('a VMM restart keeps a suspended VM resumable and removes guest memory an unfinished suspend left', async () => {
  mkdirSync(`${tmp}/images`, { recursive: true });
  const fp = memoryFormpack(`${tmp}/formpacks`);
  const a = await vmm();
  const sleeping = await a.manager.create({ formpack: fp, name: 'sleeping' });
  const awake = await a.manager.create({ formpack: fp, name: 'awake' });
  await a.manager.exec(sleeping.id, '/bin/sh', ['-c', 'echo kept > /tmp/m']);
  await a.manager.suspend(sleeping.id);
  // What a suspend cut short by a crash leaves: an image beside a VM that is not suspended.
  const stale = `${tmp}/vms/${awake.id}/suspend/memory.mig`;
  mkdirSync(`${tmp}/vms/${awake.id}/suspend`, { recursive: true });
  writeFileSync(stale, 'guest memory', { mode: 0o600 });
  await a.close();
  made.length = 0;

  const b = await vmm();
  assert.equal(existsSync(stale), false, 'leftover guest memory is removed at start');
  assert.equal(b.manager.get(awake.id).state, 'running', 're-attached as before');
  const s = b.manager.get(sleeping.id);
  assert.equal(s.state, 'suspended');
  assert.equal(statSync(`${tmp}/vms/${sleeping.id}/suspend/memory.mig`).mode & 0o777, 0o600);
  assert.equal((await b.manager.resume(sleeping.id)).state, 'running');
  assert.equal((await b.manager.exec(sleeping.id, '/bin/sh', ['-c', 'cat /tmp/m'])).stdout, 'kept\n');
});
