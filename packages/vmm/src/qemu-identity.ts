import { createHash } from 'node:crypto';
import { sha256File } from '@formation/service/files';
import type { DriverVm } from './driver.ts';
import { qemuArgv } from './qemu-argv.ts';
import { safeRead, whichBinary } from './qemu-process.ts';

/** What a saved VM state was made under (see QemuDriver.templateIdentity). */
export interface QemuIdentity {
  version: string;
  binarySha256: string;
  machine: string;
  accel: string;
  cpu: string;
  devicesSha256: string;
}

/**
 * The identity of QEMU binary `qemu` (version as its fingerprint reported it) under `machine` and
 * `accel`: binary sha256, CPU model, and the sha256 of the device layout qemuArgv produces for a
 * reference VM.
 */
export async function qemuIdentity(o: {
  qemu: string;
  version: string | undefined;
  machine: 'pc' | 'q35' | 'microvm';
  accel: 'kvm' | 'tcg';
}): Promise<QemuIdentity> {
  const { machine, accel } = o;
  const bin = whichBinary(o.qemu);
  const binarySha256 = bin ? await sha256File(bin) : 'unknown';
  const cpu =
    accel === 'kvm' ? `host:${/model name\s*:\s*(.*)/.exec(safeRead('/proc/cpuinfo'))?.[1] ?? '?'}` : 'qemu64';
  const ref: DriverVm = {
    spec: {
      id: 'ref',
      name: 'ref',
      vcpu: 1,
      memMiB: 256,
      dir: '/ref',
      kernel: '/ref/k',
      cmdline: 'ref',
      baseDisk: '/ref/b',
      baseDiskFormat: 'qcow2',
      diskGiB: 1,
      dataDiskMiB: 1,
      network: { mode: 'user', forwards: [], mac: '52:54:00:00:00:00' },
      agentChannel: 'ref',
    },
    paths: { disk: '/r/d', qmp: '/r/q', qga: '/r/g', serial: '/r/s', pidfile: '/r/p', data: '/r/e' },
  };
  const argv = qemuArgv(ref, { incoming: false, machine, accel, sandbox: false }).join(' ');
  return {
    version: o.version ?? 'unknown',
    binarySha256,
    machine,
    accel,
    cpu,
    devicesSha256: createHash('sha256').update(argv).digest('hex'),
  };
}
