import type { FormfileSpec } from './formfile.ts';

/**
 * A built Formpack on disk: `<dataDir>/formpacks/<id>/` holding
 *   manifest.json   this manifest
 *   disk.qcow2      the root filesystem (ext4 inside, sized to DISK)
 *   vmlinuz         the kernel to boot directly
 *   initramfs.img   the initramfs (virtio + ext4 modules, switch_root into the guest init)
 * The directory appears only when complete (built in a temp dir, then renamed).
 *
 * The file names are fixed (`FORMPACK_ARTIFACT_FILES`): a manifest names them, but a reader never
 * takes a file name from a manifest it did not write itself — `parseFormpackManifest` refuses any
 * other name, so a manifest served by a peer cannot point a write at `../../etc/ld.so.preload`.
 */
export interface FormpackManifest {
  /** sha256 over the normalized Formfile and the build context content. */
  id: string;
  name: string;
  /** Address of the developer who built it. */
  owner: string;
  createdAt: string;
  formfile: FormfileSpec;
  resources: { vcpu: number; memMiB: number; diskGiB: number };
  /** Kernel command line the builder expects (the VMM adds per-instance vm_* parameters). */
  cmdline: string;
  /** Guest init path inside the image. */
  init: string;
  artifacts: {
    disk: FormpackArtifact;
    kernel: FormpackArtifact;
    initramfs: FormpackArtifact;
  };
  /** What the image offers the host: agent channel name etc. */
  guest: { agent: 'qemu-ga'; agentChannel: string; sshd: 'dropbear' | 'openssh' };
}

/**
 * What the guest's init prints on the serial console when it has started everything
 * (`FORM-INIT-READY <uptime>`): the contract between the guest (`@formation/guest`) and the VMM, which
 * waits for it (readiness, boot templates).
 */
export const GUEST_READY_MARKER = 'FORM-INIT-READY';

export interface FormpackArtifact {
  file: string;
  sha256: string;
  bytes: number;
}

/** The artifacts of every Formpack and their file names in its directory (ours, never a manifest's). */
export const FORMPACK_ARTIFACT_FILES = {
  disk: 'disk.qcow2',
  kernel: 'vmlinuz',
  initramfs: 'initramfs.img',
} as const;
export type FormpackArtifactName = keyof typeof FORMPACK_ARTIFACT_FILES;
export const FORMPACK_ARTIFACTS = Object.keys(FORMPACK_ARTIFACT_FILES) as FormpackArtifactName[];

/** Upper bounds on what a Formpack may hold (bytes); a peer's manifest above them is refused. */
export const FORMPACK_LIMITS = {
  manifestBytes: 1024 * 1024,
  artifactBytes: { disk: 16_384 * 2 ** 30 + 256 * 2 ** 20, kernel: 128 * 2 ** 20, initramfs: 1024 * 2 ** 20 },
  /** A qcow2 file of a `diskGiB` disk holds at most that many GiB plus metadata. */
  diskOverheadBytes: 256 * 2 ** 20,
} as const;
