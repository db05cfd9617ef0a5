import type { Logger } from '@formation/service';
import { type AccelProbe, probeAccel } from './accel.ts';
import type { DriverFingerprint } from './driver.ts';
import { execFileP } from './qemu-process.ts';

/**
 * What the QEMU binary `qemu` offers here: its version (and qemu-img's presence), capabilities, and the
 * accelerator (forced by configuration, else probed with `probeKernel`, else TCG) with the reason.
 */
export async function probeQemu(o: {
  name: string;
  qemu: string;
  log: Logger;
  accel?: 'auto' | 'kvm' | 'tcg' | undefined;
  probeKernel?: string | undefined;
  probeCacheFile?: string | undefined;
  sandbox?: boolean | undefined;
  cgroupLimits?: boolean | undefined;
}): Promise<{ fingerprint: DriverFingerprint; accel?: AccelProbe }> {
  let accel: AccelProbe;
  const caps = {
    pause: true,
    snapshot: true,
    networkModes: ['user', 'tap'] as Array<'user' | 'tap'>,
    diskFormats: ['qcow2', 'raw', 'vmdk'],
    sandbox: o.sandbox !== false,
    cgroupLimits: o.cgroupLimits !== false && process.getuid?.() === 0,
  };
  let version: string;
  try {
    const { stdout } = await execFileP(o.qemu, ['--version']);
    version = stdout.split('\n')[0]?.trim() ?? '';
    await execFileP('qemu-img', ['--version']);
  } catch (err) {
    return {
      fingerprint: {
        driver: o.name,
        available: false,
        reason: `${o.qemu} or qemu-img is not installed (${(err as Error).message.split('\n')[0]})`,
        accel: 'none',
        capabilities: caps,
      },
    };
  }
  const forced = o.accel ?? 'auto';
  if (forced !== 'auto') {
    accel = {
      accel: forced,
      reason: `forced by configuration (accel=${forced})`,
      host: '',
      kernel: '',
      probedAt: new Date().toISOString(),
    };
  } else if (o.probeKernel) {
    accel = await probeAccel({
      kernel: o.probeKernel,
      cacheFile: o.probeCacheFile,
      qemu: o.qemu,
    });
  } else {
    accel = {
      accel: 'tcg',
      reason: 'no kernel to probe KVM with',
      host: '',
      kernel: '',
      probedAt: new Date().toISOString(),
    };
  }
  o.log.info({ accel: accel.accel, reason: accel.reason }, 'qemu accelerator chosen');
  return {
    accel,
    fingerprint: {
      driver: o.name,
      available: true,
      accel: accel.accel,
      accelReason: accel.reason,
      version,
      capabilities: caps,
    },
  };
}
