// Launching a VM's process, with boot snapshots (boot-snapshot.ts): a Formpack VM whose guest takes
// its identity over the agent is restored from its template when one fits, else cold-booted; it is then
// released with its identity in the background.
import type { Logger } from '@formation/service';
import type { BootTemplates } from './boot-snapshot.ts';
import type { HypervisorDriver } from './driver.ts';
import { hasProcess } from './state-machine.ts';
import type { VmRecord } from './types.ts';

/**
 * Launch the VM's process. The first boot of a VM whose guest takes its identity over the agent
 * restores the Formpack's template when one fits (else cold-boots, logging why); every boot of such a
 * VM is then released with its identity. Other VMs simply start.
 */
export async function launchVm(
  rec: VmRecord,
  driver: HypervisorDriver,
  templates: BootTemplates | undefined,
  log: Logger,
): Promise<void> {
  const launchedAt = new Date().toISOString();
  const plan = rec.bootSnapshot;
  if (!templates || plan?.identity !== 'agent') {
    await driver.start(rec.driver);
    rec.boot = { kind: 'cold', launchedAt };
    return;
  }
  let fallback: string | undefined;
  if (rec.boot === undefined) {
    const fit = await templates
      .find(plan.want)
      .catch((err: unknown) => ({ ok: false, reason: (err as Error).message, rebuild: false }) as const);
    if (fit.ok) {
      try {
        const findMs = Date.now() - Date.parse(launchedAt);
        await templates.restore(rec.driver, fit);
        rec.boot = { kind: 'snapshot', launchedAt };
        log.info(
          { id: rec.id, findMs, restoreMs: Date.now() - Date.parse(launchedAt) - findMs },
          'vm restored from its template',
        );
        releaseIdentity(rec, templates, log, Date.now() - Date.parse(launchedAt));
        return;
      } catch (err) {
        fallback = `template restore failed: ${(err as Error).message}`;
        await templates.discard(fit.dir, fallback);
        // The restore wrote the template's disk over the overlay: a fresh one for the cold boot.
        await driver.create(rec.driver.spec);
      }
    } else {
      fallback = fit.reason;
    }
    log.warn({ id: rec.id, reason: fallback }, 'boot snapshot not used: cold boot');
  }
  await driver.start(rec.driver);
  rec.boot = { kind: 'cold', launchedAt, fallback };
  releaseIdentity(rec, templates, log, Date.now() - Date.parse(launchedAt));
}

/** In the background: hand the waiting guest its identity (the boot is ready when its init says so). */
export function releaseIdentity(
  rec: VmRecord,
  templates: BootTemplates | undefined,
  log: Logger,
  launchMs: number,
): void {
  const boot = rec.boot;
  if (!templates) return;
  const ip = rec.network.ip;
  // Only while this boot lasts: a VM stopped or destroyed before its agent answered is not waited for.
  const wanted = () => rec.boot === boot && hasProcess(rec.state);
  void templates
    .release(
      rec.driver,
      {
        ip,
        gateway: rec.network.gateway,
        dns: rec.network.dns,
        name: rec.name,
        id: rec.id,
        mac: rec.network.mac.toLowerCase(),
      },
      { wanted },
    )
    .then(() =>
      log.info(
        {
          id: rec.id,
          kind: boot?.kind,
          launchMs,
          sinceLaunchMs: boot ? Date.now() - Date.parse(boot.launchedAt) : null,
        },
        'identity released',
      ),
    )
    .catch((err: unknown) => {
      if (!wanted()) return;
      log.error({ id: rec.id, err: (err as Error).message }, 'identity not released: the guest stays waiting');
    });
}
