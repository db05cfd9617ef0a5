// HTTPS that ends in the guest (issue 19): the node tells each local replica whose Formfile says
// `HTTPS <port>` the names it is reached by (`<name>.<domain>` and verified custom domains, exactly the
// ingress's hosts) and the ACME directory; the guest gets and renews its certificate itself. Only public
// data crosses the agent: names, a URL, a CA certificate. Pure planning apart from the agent calls.
import { readFileSync } from 'node:fs';
import { type AcmeSettings, configureGuestTls, type GuestExec } from '@formation/attest';
import { FormError } from '@formation/interface';
import { vmNameFor } from '@formation/scheduler';
import type { Logger } from '@formation/service';
import type { StateStore } from '@formation/state';
import { ingressPlan } from './ingress.ts';

type Views = ReturnType<StateStore['views']>;

/**
 * The ACME settings a node hands its guests, from the environment: `FORM_ACME_DIRECTORY` (an https
 * RFC 8555 directory URL; unset = guests get no names, so no certificates) and `FORM_ACME_CA_FILE` (PEM
 * of the CA of that directory's own HTTPS, for private/test CAs such as Pebble). Bad values are
 * `CONFIG_INVALID`.
 *
 * @example
 * acmeSettingsFromEnv({ FORM_ACME_DIRECTORY: 'https://acme-v02.api.letsencrypt.org/directory' })
 */
export function acmeSettingsFromEnv(env: NodeJS.ProcessEnv): AcmeSettings | undefined {
  const directory = env.FORM_ACME_DIRECTORY?.trim();
  if (!directory) return undefined;
  if (!/^https:\/\/[A-Za-z0-9:/._~%?=&-]+$/.test(directory)) {
    throw new FormError(
      'CONFIG_INVALID',
      `Cannot use FORM_ACME_DIRECTORY=${JSON.stringify(directory)}: not an https:// URL`,
      {
        hint: 'Give the https URL of an RFC 8555 directory, e.g. https://acme-v02.api.letsencrypt.org/directory.',
      },
    );
  }
  const caFile = env.FORM_ACME_CA_FILE?.trim();
  if (!caFile) return { directory };
  let caPem: string;
  try {
    caPem = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new FormError('CONFIG_INVALID', `Cannot read FORM_ACME_CA_FILE=${caFile}: ${(err as Error).message}`);
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(caPem) || caPem.length > 64 * 1024) {
    throw new FormError('CONFIG_INVALID', `Cannot use FORM_ACME_CA_FILE=${caFile}: not a PEM certificate (≤ 64 KiB)`);
  }
  return { directory, caPem };
}

export interface GuestTlsTarget {
  vmId: string;
  instanceId: string;
  /** Sorted, lower case: what the certificate is for. */
  names: string[];
}

/** The local VMs the agent can reach, as the VMM lists them. */
export interface LocalVm {
  id: string;
  name: string;
  state: string;
}

/**
 * Which local VMs should hold a certificate for which names (pure): running VMs of instances whose
 * owner's publish exposes 443 and that the ingress routes (same hosts, so a certificate never names
 * a host this network would not send to the instance). At most 20 names per VM (ACME orders are small).
 *
 * @example
 * guestTlsTargets(store.views(), 'dev.formation.local', vmm.list()) // [{ vmId, instanceId, names: ['hello.dev.formation.local'] }]
 */
export function guestTlsTargets(
  views: Pick<Views, 'instances' | 'dns'> & Partial<Pick<Views, 'domains'>>,
  domain: string,
  vms: LocalVm[],
): GuestTlsTarget[] {
  const out: GuestTlsTarget[] = [];
  const plan = ingressPlan(views, domain, Date.now());
  for (const route of plan.instances) {
    if (!route.expose.includes(443) || route.hosts.length === 0) continue;
    const inst = views.instances.find((i) => i.id === route.id);
    if (!inst) continue;
    const vm = vms.find((v) => v.name === vmNameFor(inst) && v.state === 'running');
    if (!vm) continue;
    out.push({ vmId: vm.id, instanceId: inst.id, names: [...new Set(route.hosts)].sort().slice(0, 20) });
  }
  return out;
}

export interface GuestTlsOptions {
  store: Pick<StateStore, 'views' | 'onAccepted'>;
  vmm: GuestExec & { list(): LocalVm[] };
  domain: string;
  acme: AcmeSettings;
  logger: Logger;
  /** Re-check period (ms); also runs on accepted ops. Default 5 s. */
  intervalMs?: number;
}

export interface GuestTls {
  /** One pass now (tests); resolves when every agent call of the pass is done. */
  sync(): Promise<void>;
  /** What each VM was last told: names, or why not. */
  status(): Map<string, { names: string[] } | { error: string }>;
  close(): void;
}

/**
 * Keep guests' HTTPS names current. A VM is told again only when its names change (or after a failed
 * call, on the next pass); a VM whose image has no HTTPS is remembered and not asked again.
 */
export function startGuestTls(o: GuestTlsOptions): GuestTls {
  const log = o.logger.child({ component: 'guest-tls' });
  const told = new Map<string, string>();
  const state = new Map<string, { names: string[] } | { error: string }>();
  const noHttps = new Set<string>();
  let running: Promise<void> | undefined;
  let again = false;
  const pass = async () => {
    const targets = guestTlsTargets(o.store.views(), o.domain, o.vmm.list());
    const live = new Set(targets.map((t) => t.vmId));
    for (const id of [...told.keys()]) if (!live.has(id)) told.delete(id);
    for (const t of targets) {
      const key = t.names.join(' ');
      if (noHttps.has(t.vmId) || told.get(t.vmId) === key) continue;
      try {
        const r = await configureGuestTls(o.vmm, t.vmId, o.acme, t.names);
        told.set(t.vmId, key);
        state.set(t.vmId, { names: t.names });
        log.info({ vm: t.vmId, instance: t.instanceId, names: t.names, result: r }, 'guest HTTPS names set');
      } catch (err) {
        const e = err as FormError;
        if (e instanceof FormError && e.code === 'BAD_REQUEST' && /does not serve HTTPS/.test(e.message)) {
          noHttps.add(t.vmId);
        }
        state.set(t.vmId, { error: e.message });
        log.warn({ vm: t.vmId, err: e.message }, 'guest HTTPS names not set');
      }
    }
  };
  const sync = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await pass().catch((err) => log.warn({ err }, 'guest HTTPS pass failed'));
      } while (again);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
  const off = o.store.onAccepted(() => void sync());
  const timer = setInterval(() => void sync(), o.intervalMs ?? 5000);
  timer.unref();
  void sync();
  return {
    sync,
    status: () => new Map(state),
    close() {
      clearInterval(timer);
      off();
    },
  };
}
