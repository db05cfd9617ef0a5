import { fileURLToPath } from 'node:url';
import { type ProgramRun, runProgram } from '@formation/interface/testing';

const bin = fileURLToPath(new URL('../bin/form.js', import.meta.url));

export type FormRun = ProgramRun;

/** Run the real `form` CLI in a child process (what a user runs), with extra env. */
export function runForm(
  args: string[],
  env: Record<string, string>,
  opts: { cwd?: string; input?: string } = {},
): Promise<FormRun> {
  return runProgram([process.execPath, bin, ...args], env, opts);
}
