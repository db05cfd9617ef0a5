import type { FormfileSpec } from './formfile.ts';

/**
 * A built Formpack on disk: `<dataDir>/formpacks/<id>/` holding
 *   manifest.json   this manifest
 *   disk.qcow2      the root filesystem (ext4 inside, sized to DISK)
 *   vmlinuz         the kernel to boot directly
 *   initramfs.img   the initramfs (virtio + ext4 modules, switch_root into the guest init)
 * The directory appears only when complete (built in a temp dir, then renamed).
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

export interface FormpackArtifact {
  file: string;
  sha256: string;
  bytes: number;
}
