import { type BuiltImage, buildNodeImage, containerFiles, type ImageModule, imageModule } from './node-image.ts';

/** Name of the image our own JS process runtime is published as. */
export const JS_RUNTIME_IMAGE_NAME = 'formation/js-runtime:0.1.0';
/** Module format of processes that run on the JS runtime image. */
export const JS_RUNTIME_MODULE_FORMAT = 'web.vmdocker-js-ao.v0.1.0';

/**
 * Build the JS process runtime image without Docker: Node, its libraries and the runtime server
 * (`container/server.mjs` with `container/vmm-protocol.mjs`).
 *
 * @example
 * const img = await buildJsRuntimeImage('/var/tmp/formation-runtime-cache');
 * await store.import(img.archive, { expectId: img.imageId });
 */
export function buildJsRuntimeImage(cacheDir: string, opts: { gzip?: boolean } = {}): Promise<BuiltImage> {
  return buildNodeImage(
    cacheDir,
    {
      imageName: JS_RUNTIME_IMAGE_NAME,
      prefix: 'js-runtime',
      files: containerFiles('server.mjs'),
      main: '/app/server.mjs',
    },
    opts,
  );
}

/** A module (seed 004 JSON spelling) for the JS runtime image. */
export function jsRuntimeModule(imageId: string): ImageModule {
  return imageModule(JS_RUNTIME_MODULE_FORMAT, JS_RUNTIME_IMAGE_NAME, imageId);
}
