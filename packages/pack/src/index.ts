export * from './api.ts';
export { DEFAULT_ARCHIVE_LIMITS, extractContext, safeEntryPath } from './archive.ts';
export { BASE_PACKAGES, checkPackages, packageIndex } from './base.ts';
export {
  type BuildInfo,
  type BuildJob,
  BuildJobs,
  type BuildJobsOptions,
  type BuildLogLine,
  type BuildStatus,
  DEFAULT_BUILD_JOBS,
} from './build-jobs.ts';
export * from './builder.ts';
export { PackClient, packContext } from './client.ts';
export * from './config.ts';
export { type BuildContext, type ContextEntry, contextDigest, formpackId, readBuildContext } from './context.ts';
export {
  ContextStore,
  type ContextStoreOptions,
  DEFAULT_CONTEXT_STORE,
  type StoredContext,
  type TakenContext,
} from './context-store.ts';
export { loadSpec } from './formfile.ts';
export { type FormpackCatalog, findFormpack, publicManifest } from './formpack-lookup.ts';
export { contentBytes, hashPassword, usableBytes } from './image.ts';
export { findKernel } from './kernel.ts';
export { formpackIdKey, normalizeSpec } from './normalize.ts';
export { BuildQueue, type BuildQueueOptions, DEFAULT_BUILD_QUEUE } from './queue.ts';
