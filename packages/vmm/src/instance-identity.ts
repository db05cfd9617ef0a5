// Identity of a VM restored from a boot template (boot-snapshot.ts): the instance-neutral cmdline the
// template boots with, the files that release a waiting guest with its own identity (pure, checked),
// the template boot's console marks, and the release itself over the guest agent.

import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormError, GUEST_READY_MARKER } from '@formation/interface';
import type { DriverVm, HypervisorDriver } from './driver.ts';

/** The cmdline word that makes the guest init wait for its identity (packages/guest/files/form-init). */
export const WAIT_WORD = 'vm_wait=identity';
/** Console mark of the guest init at the wait point (ready: GUEST_READY_MARKER). */
export const WAIT_MARK = 'FORM-INIT-WAIT';
/** The NIC address the template boots with; every instance sets its own after the release. */
export const TEMPLATE_MAC = '52:54:00:00:00:01';

/** The instance-neutral cmdline of a Formpack: its own, plus the wait word (no vm_ip/vm_name/…). */
export function neutralCmdline(formpackCmdline: string): string {
  const words = formpackCmdline.split(/\s+/).filter((w) => w && !w.startsWith('vm_'));
  return [...words, WAIT_WORD].join(' ');
}

/** What the guest learns at the release point. */
export interface InstanceIdentity {
  ip: string;
  gateway: string;
  dns: string;
  name: string;
  id: string;
  mac: string;
}

const IDENTITY_RULES: Record<keyof InstanceIdentity, RegExp> = {
  ip: /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/,
  gateway: /^(none|\d{1,3}(\.\d{1,3}){3})$/,
  dns: /^(none|\d{1,3}(\.\d{1,3}){3})$/,
  name: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  id: /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  mac: /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/,
};

/**
 * The files the host writes into a waiting guest, in order: host entropy (hex, mixed in and the RNG
 * reseeded before anything else runs), the identity (`vm_*` words the init reads after its cmdline),
 * then the release mark. The guest splits the identity on whitespace, so every value is checked against
 * a strict pattern first: a space, newline or glob in a name would add words of the caller's choosing.
 * Throws VM_BAD_ARGUMENT. Pure but for `seedHex`/`nowSec` given by the caller.
 *
 * @example
 * identityFiles({ ip: '10.129.0.2/24', gateway: '10.129.0.1', dns: '10.129.0.1', name: 'web-1', id: 'vm-ab', mac: '52:54:00:12:34:56' }, 'ab…', 1767225600)
 */
export function identityFiles(
  ident: InstanceIdentity,
  seedHex: string,
  nowSec: number,
): Array<{ path: string; data: string }> {
  for (const [k, re] of Object.entries(IDENTITY_RULES) as Array<[keyof InstanceIdentity, RegExp]>) {
    const v = ident[k];
    if (typeof v !== 'string' || !re.test(v)) {
      throw new FormError(
        'VM_BAD_ARGUMENT',
        `Cannot release VM ${JSON.stringify(ident.id)}: its ${k} ${JSON.stringify(v)} does not match ${re}`,
        { hint: 'Identity values go to the guest init as words; only addresses, DNS labels and ids pass.' },
      );
    }
  }
  if (!/^[0-9a-f]{64,}$/.test(seedHex)) {
    throw new FormError('VM_BAD_ARGUMENT', 'Cannot release a VM: the entropy seed is not at least 32 bytes of hex');
  }
  if (!Number.isInteger(nowSec) || nowSec < 0) {
    throw new FormError('VM_BAD_ARGUMENT', `Cannot release a VM: time ${nowSec} is not whole seconds`);
  }
  const words = [
    `vm_ip=${ident.ip}`,
    `vm_gw=${ident.gateway}`,
    `vm_dns=${ident.dns}`,
    `vm_name=${ident.name}`,
    `vm_id=${ident.id}`,
    `vm_mac=${ident.mac}`,
    `vm_time=${nowSec}`,
  ];
  return [
    { path: '/run/form/seed', data: `${seedHex}\n` },
    { path: '/run/form/identity', data: `${words.join('\n')}\n` },
    { path: '/run/form/release', data: '' },
  ];
}

/** What a template boot's console says so far: at the wait point, booted without one (an older guest), or neither yet. */
export function classifyTemplateBoot(consoleText: string): 'waiting' | 'no-wait-point' | 'pending' {
  if (consoleText.includes(WAIT_MARK)) return 'waiting';
  if (consoleText.includes(GUEST_READY_MARKER)) return 'no-wait-point';
  return 'pending';
}

/** The last `max` bytes of a file, '' when unreadable (a guest may print without end: never read all of it). */
export function consoleTail(path: string, max = 256 * 1024): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const n = Math.min(size, max);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Release a waiting guest: wait for its agent, then write entropy, identity and the release mark.
 * Throws TIMEOUT when the agent never answers, and VM_BAD_STATE at once when `wanted()` turns false
 * (the VM was stopped or destroyed) or `closed()` (the templates are closed): a release of a VM that is
 * gone must not poll its agent for the rest of the timeout (it kept a closed VMM's process alive ~90 s).
 */
export async function releaseIdentity(
  driver: Pick<HypervisorDriver, 'agent'> & {
    writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>, timeoutMs?: number): Promise<void>;
  },
  vm: DriverVm,
  ident: InstanceIdentity,
  opts: { timeoutMs?: number | undefined; wanted?: (() => boolean) | undefined; closed: () => boolean },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const files = identityFiles(ident, randomBytes(32).toString('hex'), Math.floor(Date.now() / 1000));
  const agent = driver.agent(vm);
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (opts.closed() || opts.wanted?.() === false) {
      throw new FormError('VM_BAD_STATE', `Cannot release VM ${vm.spec.id}: it was stopped or destroyed`);
    }
    try {
      await agent.ping(1000);
      break;
    } catch (err) {
      if (Date.now() > end) {
        throw new FormError(
          'TIMEOUT',
          `Cannot release VM ${vm.spec.id}: its guest agent did not answer in ${timeoutMs} ms`,
          {
            cause: err,
            hint: 'See the VM console; the guest waits for its identity at FORM-INIT-WAIT.',
          },
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await driver.writeGuestFiles(vm, files);
}
