// Boot templates as the manager wires them (boot-snapshot.ts): made when enabled and the driver can
// restore them; a build waits for room in the node's capacity and for a quiet node (both rules pure
// here), and is asked for once a Formpack VM's first cold boot is ready.
import { join } from 'node:path';
import type { Resources } from '@formation/interface';
import { BootTemplates, isTemplateDriver } from './boot-snapshot.ts';
import { checkCapacity } from './capacity.ts';
import type { VmManagerOptions } from './manager.ts';
import type { VmRecord } from './types.ts';

/** The node's boot templates when `bootSnapshots` is on and the driver can restore them, else undefined. */
export function makeTemplates(
  o: VmManagerOptions,
  node: { capacity(): { capacity: Resources; used: Resources }; records(): Iterable<VmRecord> },
): BootTemplates | undefined {
  if (!o.bootSnapshots || !isTemplateDriver(o.driver)) return undefined;
  return new BootTemplates({
    driver: o.driver,
    root: o.templatesDir ?? join(o.store.dir, '..', 'templates'),
    vmDir: o.store.dir,
    logger: o.logger,
    formpacksDir: o.formpacksDir,
    maxMiB: o.bootSnapshotMaxMiB,
    fits: (r) => {
      const { capacity, used } = node.capacity();
      return templateRoom(r, used, capacity);
    },
    quiet: () => quietFor(node.records(), o.templateQuietMs ?? 10_000, Date.now()),
    ...o.templateTiming,
  });
}

/** Why a template VM of `r` would not fit next to `used` in `capacity`, or undefined (a build waits until it does). Pure. */
export function templateRoom(r: Resources, used: Resources, capacity: Resources): string | undefined {
  try {
    checkCapacity('template', r, used, capacity);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Why the node is not quiet enough for a template boot (a VM booting, or one ready less than
 * `quietMs` ago), or undefined. Pure.
 */
export function quietFor(records: Iterable<VmRecord>, quietMs: number, now: number): string | undefined {
  for (const r of records) {
    if (r.state === 'starting' || r.state === 'restoring' || (r.state === 'running' && !r.ready)) {
      return `VM ${r.id} is booting`;
    }
    const readyAt = r.readyAt ? Date.parse(r.readyAt) : 0;
    if (r.state === 'running' && now - readyAt < quietMs) return `VM ${r.id} became ready ${now - readyAt} ms ago`;
  }
  return undefined;
}

/** After a Formpack VM's first boot: build its template once it is ready (never competing with its boot). */
export function scheduleTemplate(
  templates: BootTemplates | undefined,
  rec: VmRecord,
  waitReady: (id: string, timeoutMs: number) => Promise<unknown>,
  closed: () => boolean,
): void {
  const plan = rec.bootSnapshot;
  if (!templates || !plan || templates.capability(plan.want.formpackId).capable === false) return;
  if (rec.boot?.kind === 'snapshot') return;
  // Only after a boot that reached ready: a VM destroyed or failed before that says nothing about
  // whether a template can be made (and building one then kept a closing VMM busy).
  void waitReady(rec.id, 180_000).then(
    () => (closed() ? undefined : templates.ensure(plan.want)),
    () => undefined,
  );
}
