import { createHash } from 'node:crypto';
import type { FormpackManifest } from '@formation/interface';

/**
 * The measurement of an instance: what the hypervisor boots, in a fixed order. It has two parts:
 *
 * 1. The **Formpack part** (`MeasurementInputs`), recomputable from the Formpack alone
 *    (`form pack inspect <id> --measurement`): the sha256 of the kernel, of the initramfs, of the
 *    Formpack's kernel command line, of the base disk (the Formpack's disk.qcow2; an instance's
 *    overlay starts empty on top of it), and VCPU / MEM. Its digest is sha256 over the text
 *
 *      formation-measurement-v1\n
 *      kernel sha256:<hex>\n
 *      initramfs sha256:<hex | none>\n
 *      cmdline sha256:<sha256 of the Formpack cmdline, UTF-8>\n
 *      disk sha256:<hex>\n
 *      vcpu <n>\n
 *      memMiB <n>\n
 *
 * 2. The **instance part**: the parameters the VMM appends to the command line for this VM only
 *    (`vm_ip= vm_gw= vm_dns= vm_name= vm_id=`, and `tsc_early_khz=` for microvm under TCG). The full
 *    command line must be exactly `<Formpack cmdline> <instance params>`, with only these keys, each once,
 *    and no spaces in values; the verifier checks that rule and that `vm_id` is the attested VM.
 */
export const MEASUREMENT_VERSION = 'formation-measurement-v1';

/** Keys the VMM may append to the Formpack's command line (the instance part). */
export const INSTANCE_PARAM_KEYS = [
  'vm_ip',
  'vm_gw',
  'vm_dns',
  'vm_name',
  'vm_id',
  'tsc_early_khz',
  'vm_wait',
] as const;

/**
 * The instance part of a VM booted with boot snapshots (issue 22): instance-neutral, the same for every
 * VM of a Formpack, restored or cold; the guest waits for its identity (name, address, id) over the
 * agent. Such a VM is bound to the report by the report's signed VM id and the guest key it makes after
 * the release, not by `vm_id` on its command line.
 */
export const NEUTRAL_INSTANCE_PARAMS = 'vm_wait=identity';

export interface MeasurementInputs {
  kernel: string;
  initramfs: string | null;
  /** sha256 (hex) of the Formpack part of the kernel command line. */
  cmdline: string;
  disk: string;
  vcpu: number;
  memMiB: number;
}

/** Whitespace-normalized command line (single spaces, trimmed): what the cmdline hash is taken over. */
export function normalizeCmdline(s: string): string {
  return s.trim().split(/\s+/).join(' ');
}

export function sha256Text(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** The canonical text the digest is taken over (see the module comment). */
export function measurementText(m: MeasurementInputs): string {
  return [
    MEASUREMENT_VERSION,
    `kernel sha256:${m.kernel}`,
    `initramfs ${m.initramfs ? `sha256:${m.initramfs}` : 'none'}`,
    `cmdline sha256:${m.cmdline}`,
    `disk sha256:${m.disk}`,
    `vcpu ${m.vcpu}`,
    `memMiB ${m.memMiB}`,
    '',
  ].join('\n');
}

export function measurementDigest(m: MeasurementInputs): string {
  return sha256Text(measurementText(m));
}

/**
 * The expected measurement of an instance of `manifest`, from the manifest alone (its artifact
 * sha256s and cmdline). `resources` overrides VCPU / MEM when the instance asked for other sizes.
 */
export function expectedMeasurement(
  manifest: Pick<FormpackManifest, 'artifacts' | 'cmdline' | 'resources'>,
  resources?: { vcpu?: number; memMiB?: number },
): { inputs: MeasurementInputs; digest: string } {
  const inputs: MeasurementInputs = {
    kernel: manifest.artifacts.kernel.sha256,
    initramfs: manifest.artifacts.initramfs?.sha256 ?? null,
    cmdline: sha256Text(normalizeCmdline(manifest.cmdline)),
    disk: manifest.artifacts.disk.sha256,
    vcpu: resources?.vcpu ?? manifest.resources.vcpu,
    memMiB: resources?.memMiB ?? manifest.resources.memMiB,
  };
  return { inputs, digest: measurementDigest(inputs) };
}

/**
 * Split a full kernel command line into the Formpack part and the instance parameters. The
 * Formpack part is everything before the first instance key; every token after it must be an
 * allowed `key=value` (each key once). Returns an error message instead of throwing.
 */
export function splitCmdline(full: string): { formpack: string; params: Record<string, string> } | { error: string } {
  const tokens = full.trim().split(/\s+/);
  const isInstance = (t: string): boolean =>
    (INSTANCE_PARAM_KEYS as readonly string[]).includes(t.slice(0, t.indexOf('=')));
  const first = tokens.findIndex((t) => t.includes('=') && isInstance(t));
  const cut = first < 0 ? tokens.length : first;
  const params: Record<string, string> = {};
  for (const t of tokens.slice(cut)) {
    const eq = t.indexOf('=');
    const k = eq > 0 ? t.slice(0, eq) : t;
    if (eq <= 0 || !isInstance(t)) return { error: `instance part of the command line has a foreign token "${t}"` };
    if (k in params) return { error: `instance parameter ${k} appears twice` };
    params[k] = t.slice(eq + 1);
  }
  return { formpack: tokens.slice(0, cut).join(' '), params };
}
