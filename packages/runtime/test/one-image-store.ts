import type { ImageStore, StoredImage } from '../src/image-store.ts';

/**
 * An image store that knows one image by id, so the manager runs on the FakeBackend without an
 * imported image (its rootfs is never read by the fake).
 */
export function oneImageStore(dir: string, image: { id: string; name: string }): ImageStore {
  const stored: StoredImage = {
    id: image.id,
    repoTags: [image.name],
    config: { Entrypoint: ['node', '/srv/server.mjs'] },
    rootfs: `${dir}/rootfs`,
    importedAt: new Date(0).toISOString(),
  };
  return {
    dir,
    async verified(id: string): Promise<StoredImage> {
      if (id !== image.id) throw Object.assign(new Error(`no image ${id}`), { code: 'RUNTIME_IMAGE_NOT_FOUND' });
      return stored;
    },
  } as unknown as ImageStore;
}
