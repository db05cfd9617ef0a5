import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeCheckpoint, encodeCheckpoint } from '../src/checkpoint.ts';
import type { Container, ContainerBackend, ContainerSpec } from '../src/container-backend.ts';
import { ContainerVm } from '../src/container-vm.ts';
import type { Meta } from '../src/types.ts';
import { COUNTER_SRC } from './helpers.ts';

// What every ContainerBackend must do for the process manager (issue 21): start a container that
// answers the /vmm protocol, run a process in it through ContainerVm (spawn, apply, checkpoint,
// restore into a fresh container), report death, and clean up. runc and the fake both pass it.

export interface BackendRig {
  backend: ContainerBackend;
  /** A spec for a new container with this id (bundle under the rig's own directory). */
  spec(id: string): ContainerSpec;
  /** Called once after the suite. */
  close(): Promise<void>;
}

/** The process owner (and sender) in container tests. */
export const OWNER = '0xowner';

/** The meta of message `seq` to `pid` from OWNER, a second after the one before; `more` overrides fields. */
export const meta = (pid: string, seq: number, action: string, data = '', more: Partial<Meta> = {}): Meta => ({
  itemId: `m-${seq}`,
  processId: pid,
  action,
  sender: OWNER,
  sequence: seq,
  nonce: seq,
  timestamp: 1_700_000_000_000 + seq * 1000,
  params: {},
  data,
  mode: 'apply',
  ...more,
});

/** Register the contract tests for one backend; `setup` runs before the first test (skipped when `skip`). */
export function containerBackendContract(
  name: string,
  setup: () => Promise<BackendRig>,
  opts: { skip?: string | false } = {},
): void {
  describe(`ContainerBackend contract: ${name}`, { skip: opts.skip ?? false }, () => {
    let rig: BackendRig | undefined;
    const started: Container[] = [];
    let n = 0;

    async function start(): Promise<Container> {
      rig ??= await setup();
      const c = await rig.backend.start(rig.spec(`formrt-contract-${process.pid}-${n++}`));
      started.push(c);
      return c;
    }
    async function spawned(pid: string): Promise<ContainerVm> {
      const vm = new ContainerVm(await start(), pid, 1000);
      await vm.spawn({ processId: pid, owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'http://node' });
      return vm;
    }

    after(async () => {
      for (const c of started) await c.destroy().catch(() => undefined);
      await rig?.close();
    });

    it('starts a container that is alive, named as asked, and answers /vmm/health', async () => {
      const c = await start();
      assert.match(c.id, /^formrt-contract-/);
      assert.equal(c.alive(), true);
      const res = await c.call('/vmm/health', {}, 2000);
      assert.equal(res.status, 200);
      assert.equal(res.body.status, 'ok');
    });

    it('runs a process: messages change its state, a failing handler changes nothing, a second spawn is refused', async () => {
      const vm = await spawned('contract-run');
      assert.equal(JSON.parse((await vm.apply(OWNER, meta('contract-run', 1, 'Inc', '5'))).data).count, 5);
      assert.equal(JSON.parse((await vm.apply(OWNER, meta('contract-run', 2, 'Inc', '2'))).data).count, 7);
      assert.equal((await vm.apply(OWNER, meta('contract-run', 3, 'Boom'))).error, 'kaboom');
      assert.equal((await vm.apply(OWNER, meta('contract-run', 4, 'Get'))).data, '7');
      await assert.rejects(vm.spawn({ processId: 'contract-run', owner: OWNER, data: '', tags: [], cuAddr: 'x' }), {
        code: 'BAD_REQUEST',
      });
    });

    it('a checkpoint restores into a fresh container with its workspace; a bad state is refused', async () => {
      const vm = await spawned('contract-cp');
      await vm.apply(OWNER, meta('contract-cp', 1, 'Inc', '5'));
      const cp = await vm.checkpoint();
      await vm.apply(OWNER, meta('contract-cp', 2, 'Inc', '10'));
      const fresh = new ContainerVm(await start(), 'contract-cp', 1000);
      await fresh.restore(cp);
      assert.equal((await fresh.apply(OWNER, meta('contract-cp', 2, 'Get'))).data, '5');
      assert.equal(readFileSync(join(fresh.container.workspaceDir, 'count.txt'), 'utf8'), '5');
      const bad = encodeCheckpoint('contract-cp', 'not a state', decodeCheckpoint(cp).workspace);
      await assert.rejects(vm.restore(bad), { code: 'RUNTIME_CHECKPOINT_INVALID' });
      assert.equal(
        (await vm.apply(OWNER, meta('contract-cp', 3, 'Get'))).data,
        '15',
        'the refused restore kept the state',
      );
    });

    it('destroy stops the container and removes its files; calls then fail; destroy and removeStale are idempotent', async () => {
      const c = await start();
      const ws = c.workspaceDir;
      assert.equal(existsSync(ws), true);
      await c.destroy();
      assert.equal(c.alive(), false);
      assert.equal(existsSync(ws), false);
      await assert.rejects(c.call('/vmm/health', {}, 1000));
      await c.destroy();
      await rig?.backend.removeStale(c.id);
      await rig?.backend.removeStale('formrt-contract-never-existed');
    });
  });
}
