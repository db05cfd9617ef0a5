// What a VM wants of its Formpack's boot template (boot-snapshot.ts), from its record. Pure.
import { type BootTemplates, neutralCmdline } from './boot-snapshot.ts';
import type { VmRecord, VmSource } from './types.ts';

/**
 * Does a new VM of `source` take its identity over the guest agent (so it boots with the neutral
 * cmdline and can be restored from a template)? Only with boot snapshots on, for a Formpack whose
 * guest is known to wait for it.
 */
export function identityByAgent(
  templates: Pick<BootTemplates, 'capability'> | undefined,
  isFormpack: boolean,
  source: VmSource,
): boolean {
  return (
    templates !== undefined &&
    isFormpack &&
    source.kind === 'formpack' &&
    templates.capability(source.id).capable === true
  );
}

/** The boot-snapshot plan of a Formpack VM (undefined for other VMs or without a measurement). */
export function bootSnapshotPlan(
  rec: VmRecord,
  formpackCmdline: string,
  agentIdentity: boolean,
): VmRecord['bootSnapshot'] | undefined {
  if (rec.source.kind !== 'formpack' || !rec.measurement) return undefined;
  const s = rec.driver.spec;
  return {
    identity: agentIdentity ? 'agent' : 'cmdline',
    want: {
      formpackId: rec.source.id,
      kernelSha256: rec.measurement.kernel,
      initramfsSha256: rec.measurement.initramfs,
      diskSha256: rec.measurement.disk,
      kernel: s.kernel,
      initramfs: s.initramfs,
      baseDisk: s.baseDisk,
      baseDiskFormat: s.baseDiskFormat,
      diskGiB: s.diskGiB,
      cmdline: neutralCmdline(formpackCmdline),
      memMiB: s.memMiB,
      vcpu: s.vcpu,
      dataDiskMiB: s.dataDiskMiB ?? 0,
      agentChannel: s.agentChannel,
      netMode: s.network.mode,
      netns: s.network.mode === 'tap' ? s.network.netns : undefined,
    },
  };
}
