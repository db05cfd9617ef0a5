// The steps of a Formpack build, as its log names them. A subpath of its own
// (`@formation/interface/build-steps`) with no imports, so the browser app can load it.

/** The steps every fresh build goes through, in order: what a progress bar counts. */
export const BUILD_PROGRESS_STEPS = [
  'context',
  'base',
  'packages',
  'rootfs',
  'configure',
  'run',
  'disk',
  'boot-files',
  'manifest',
] as const;

/**
 * Every step a build's log may name: the progress steps, `cached` (this Formpack was built before;
 * nothing else follows but `done`), `wait` (another build of the same Formpack runs first) and `done`.
 */
export const BUILD_STEPS = ['cached', 'wait', ...BUILD_PROGRESS_STEPS, 'done'] as const;

export type BuildStep = (typeof BUILD_STEPS)[number];
