import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type BuiltImage, buildNodeImage, containerFiles, type ImageModule, imageModule } from './node-image.ts';

/** Name of the image our AO Lua process runtime is published as. */
export const LUA_RUNTIME_IMAGE_NAME = 'formation/lua-runtime:0.1.0';
/** Module format of processes that run on the Lua runtime image (aos-style AO Lua processes). */
export const LUA_RUNTIME_MODULE_FORMAT = 'web.vmdocker-lua-ao.v0.1.0';

/** wasmoon's files (Lua 5.4 compiled to WebAssembly, and its loader) as they are installed here. */
function wasmoonFiles(): Array<{ src: string; dest: string }> {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('wasmoon/package.json');
  const dir = dirname(pkg);
  return [
    { src: pkg, dest: 'app/node_modules/wasmoon/package.json' },
    { src: join(dir, 'dist/index.js'), dest: 'app/node_modules/wasmoon/dist/index.js' },
    { src: join(dir, 'dist/glue.wasm'), dest: 'app/node_modules/wasmoon/dist/glue.wasm' },
  ];
}

/**
 * Build the Lua process runtime image without Docker: Node and its libraries, Lua 5.4 as
 * WebAssembly (wasmoon), the AO environment (`container/ao-process.lua`) and its server
 * (`container/lua-server.mjs` with `container/vmm-protocol.mjs`). Cached in `cacheDir` like the JS image.
 *
 * @example
 * const img = await buildLuaRuntimeImage('/var/tmp/formation-runtime-cache');
 * await store.import(img.archive, { expectId: img.imageId });
 */
export function buildLuaRuntimeImage(cacheDir: string, opts: { gzip?: boolean } = {}): Promise<BuiltImage> {
  return buildNodeImage(
    cacheDir,
    {
      imageName: LUA_RUNTIME_IMAGE_NAME,
      prefix: 'lua-runtime',
      files: [...containerFiles('lua-server.mjs', 'lua-process.mjs', 'ao-process.lua'), ...wasmoonFiles()],
      main: '/app/lua-server.mjs',
    },
    opts,
  );
}

/**
 * A module (seed 004 JSON spelling) for the Lua runtime image, with the tags aoconnect's `spawn`
 * checks on a module (Data-Protocol, Type, Module-Format, Input-/Output-Encoding).
 */
export function luaRuntimeModule(imageId: string): ImageModule {
  return imageModule(LUA_RUNTIME_MODULE_FORMAT, LUA_RUNTIME_IMAGE_NAME, imageId, [
    { name: 'Data-Protocol', value: 'ao' },
    { name: 'Variant', value: 'ao.TN.1' },
    { name: 'Type', value: 'Module' },
    { name: 'Module-Format', value: LUA_RUNTIME_MODULE_FORMAT },
    { name: 'Input-Encoding', value: 'JSON-1' },
    { name: 'Output-Encoding', value: 'JSON-1' },
    { name: 'Content-Type', value: 'text/lua' },
  ]);
}
