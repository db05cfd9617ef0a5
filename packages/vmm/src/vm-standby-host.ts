// The manager's side of standby VMs (vm-standby.ts): making one (a VM kept out of the list, restored
// paused from its template), removing one, when one may be made, and taking one for a create.
import type { Resources } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { BootTemplates, TemplateWant } from './boot-snapshot.ts';
import type { VmManagerOptions } from './manager.ts';
import type { VmRecord } from './types.ts';
import { releaseIdentity } from './vm-boot.ts';
import { type CreateVmRequest, resolveBootSource, vmName } from './vm-create.ts';
import { newVm } from './vm-new.ts';
import { bootBegan, bootRunning, setVmState } from './vm-runtime.ts';
import { type StandbyHost, StandbyPool } from './vm-standby.ts';
import { quietFor, templateRoom } from './vm-templates.ts';

/** What making and taking standbys uses of the manager. */
export interface StandbyManager {
  readonly o: VmManagerOptions;
  readonly log: Logger;
  readonly templates: BootTemplates;
  /** Every VM record, standbys included (taken addresses, a quiet node). */
  allRecords(): Iterable<VmRecord>;
  capacity(): { capacity: Resources; used: Resources };
}

/** End a standby VM's process and remove it: driver, network, record (never throws). */
export async function removeStandbyVm(
  m: Pick<StandbyManager, 'o' | 'log'>,
  rec: VmRecord,
  reason: string,
): Promise<void> {
  await m.o.driver.destroy(rec.driver).catch((err: unknown) => {
    m.log.warn({ id: rec.id, err: (err as Error).message }, 'standby VM not destroyed');
  });
  await m.o.network.detach(rec.network).catch(() => undefined);
  m.o.store.remove(rec.id);
  m.log.info({ id: rec.id, reason }, 'standby VM removed');
}

/** The standby pool of the manager `m` (`bootStandby` standbys). */
export function standbyPool(m: StandbyManager): StandbyPool {
  const max = m.o.bootStandby ?? 0;
  return new StandbyPool({ host: standbyHost(m), logger: m.o.logger, max, retryMs: m.o.templateTiming?.retryMs });
}

/** The pool's host over the manager `m`. */
export function standbyHost(m: StandbyManager): StandbyHost {
  let noTemplate = 0;
  let builtAt = 0;
  const discard = (rec: VmRecord, reason: string): Promise<void> => removeStandbyVm(m, rec, reason);
  return {
    discard,
    async blocked(want: TemplateWant) {
      const quietMs = m.o.templateQuietMs ?? 10_000;
      const quiet = quietFor(m.allRecords(), quietMs, Date.now());
      if (quiet) return { reason: quiet, final: false };
      // A build just ended: a VM of the Formpack may be on its way (a second ship often follows the
      // first closely); it is not made to share the CPU with a standby being restored.
      if (m.templates.busy) {
        builtAt = Date.now();
        return { reason: 'a boot template is being built', final: false };
      }
      if (Date.now() - builtAt < quietMs) return { reason: 'a boot template was just built', final: false };
      const r: Resources = { vcpu: want.vcpu, memMiB: want.memMiB, diskGiB: want.diskGiB };
      const { capacity, used } = m.capacity();
      const room = templateRoom(r, used, capacity);
      if (room) return { reason: room, final: false };
      if (await m.templates.has(want)) {
        noTemplate = 0;
        return undefined;
      }
      // No template and none being built: its build is about to be queued (the first VM just became
      // ready), or it failed or was skipped. Looked at a few times before giving up.
      noTemplate++;
      return { reason: 'the Formpack has no boot template', final: noTemplate >= 3 };
    },
    async make(req: CreateVmRequest, hold: (rec: VmRecord) => void): Promise<VmRecord> {
      const rec = await newVm(
        {
          o: m.o,
          log: m.log,
          templates: m.templates,
          records: () => m.allRecords(),
          add: (r) => {
            r.standby = true; // saved with it: a VMM that finds it at start removes it
            hold(r);
          },
        },
        { ...req, start: false },
        null,
      );
      try {
        const plan = rec.bootSnapshot;
        if (plan?.identity !== 'agent') throw new Error('its guest does not take its identity over the agent');
        await m.o.network.attach(rec.network);
        setVmState(rec, 'starting', 'standby: restoring its template');
        m.o.store.save(rec);
        const fit = await m.templates.find(plan.want);
        if (!fit.ok) throw new Error(fit.reason);
        await m.templates.restore(rec.driver, fit, { paused: true });
        setVmState(rec, 'paused', 'standby: restored from its template, waiting to be taken');
        m.o.store.save(rec);
        return rec;
      } catch (err) {
        await discard(rec, `not made: ${(err as Error).message}`);
        throw err;
      }
    },
  };
}

/**
 * Make the standby `rec` the VM of `req` for `owner`: its name, owner and restart policy set, then
 * resumed and released with its identity in the background (ready when its guest says so). The caller
 * adds it to its list before and runs this inside the VM's lock; on a throw it removes the VM.
 */
export async function takeStandby(
  m: StandbyManager,
  rec: VmRecord,
  req: CreateVmRequest,
  owner: string | null,
): Promise<void> {
  const launchedAt = new Date().toISOString();
  // The Formpack must still be here (and gives the default name).
  const src = await resolveBootSource(req, m.o);
  const name = vmName(req.name, src.defaultName, rec.id);
  rec.name = name;
  rec.driver.spec.name = name;
  rec.owner = owner;
  rec.restartPolicy = req.restartPolicy ?? m.o.restartPolicy ?? 'never';
  rec.createdAt = launchedAt;
  rec.standby = undefined;
  bootBegan(rec);
  await m.o.driver.resume(rec.driver);
  rec.boot = { kind: 'snapshot', launchedAt, standby: true };
  bootRunning(rec, owner ? `started by ${owner} from a standby` : 'started from a standby');
  m.o.store.save(rec);
  m.log.info({ id: rec.id, name, resumeMs: Date.now() - Date.parse(launchedAt) }, 'vm started from a standby');
  releaseIdentity(rec, m.templates, m.log, Date.now() - Date.parse(launchedAt));
}
