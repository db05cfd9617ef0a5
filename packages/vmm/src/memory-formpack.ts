// A Formpack directory the VMM accepts, for tests on the memory driver (which never reads the artifacts'
// content): a manifest with hashed stand-in artifacts. One copy for every memory-driver test (the VMM's
// and the node's: `import { memoryFormpack } from '@formation/vmm/memory'`).
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';

/**
 * Writes `<formpacksDir>/<id>/` and returns the id. `owner` goes into the manifest (default the zero
 * address); `disk` is the stand-in disk's content (default `disk`: its sha256 is what a publish names).
 */
export function memoryFormpack(
  formpacksDir: string,
  opts: { id?: string; expose?: number[]; owner?: string; disk?: string } = {},
): string {
  const id = opts.id ?? 'c'.repeat(64);
  const fp = `${formpacksDir}/${id}`;
  mkdirSync(fp, { recursive: true });
  const artifact = (file: string, content: string) => {
    writeFileSync(`${fp}/${file}`, content);
    return { file, sha256: createHash('sha256').update(content).digest('hex'), bytes: content.length };
  };
  const manifest = {
    id,
    name: 'web',
    owner: opts.owner ?? `0x${'0'.repeat(40)}`,
    createdAt: '2026-01-01T00:00:00Z',
    resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
    cmdline: 'console=ttyS0',
    init: '/sbin/form-init',
    formfile: { expose: opts.expose ?? [80], entrypoint: null },
    artifacts: {
      disk: artifact('disk.qcow2', opts.disk ?? 'disk'),
      kernel: artifact('vmlinuz', 'kernel'),
      initramfs: artifact('initramfs.img', 'initramfs'),
    },
    guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'dropbear' },
  };
  writeFileSync(`${fp}/manifest.json`, JSON.stringify(manifest));
  return id;
}
