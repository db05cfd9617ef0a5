export * from './builder.ts';
export { BASE_PACKAGES, checkPackages, packageIndex } from './base.ts';
export { type BuildContext, type ContextEntry, contextDigest, formpackId, readBuildContext } from './context.ts';
export { contentBytes, hashPassword, usableBytes } from './image.ts';
export { findKernel } from './kernel.ts';
export { normalizeSpec } from './normalize.ts';
export { loadSpec } from './formfile.ts';
