/**
 * The normalized Formfile: what the parser produces and the builder, the manifest and the API use.
 * Every field has its default filled in, so two Formfiles that mean the same thing normalize equally.
 */
export interface FormfileSpec {
  /** DNS label; the instance becomes `<name>.<domain>`. */
  name: string;
  users: FormfileUser[];
  /** Defaults: 1 vCPU, 512 MiB, 5 GiB. */
  vcpu: number;
  memMiB: number;
  diskGiB: number;
  /** `COPY <src> <dst>`; src is relative to the build directory. Empty + !noCopy = whole dir to workdir. */
  copy: Array<{ src: string; dst: string }>;
  /** Debian packages, in order, deduplicated. */
  install: string[];
  /** `RUN` commands (shell form), executed at build time in order. */
  run: string[];
  /** `ENV` entries with their scope. */
  env: Array<{ key: string; value: string; scope: EnvScope }>;
  /** `EXPOSE` ports (TCP), sorted, unique. */
  expose: number[];
  /** Absolute; default `/app`. */
  workdir: string;
  /** Exec form (argv) or shell form (`/bin/sh -c <cmd>`), or null when absent. */
  entrypoint: { form: 'exec'; argv: string[] } | { form: 'shell'; command: string } | null;
  noCopy: boolean;
  /** `GPU` requested (recorded; a node without one refuses to place it). */
  gpu: boolean;
}

export type EnvScope = { kind: 'system' } | { kind: 'user'; name: string } | { kind: 'service'; name: string };

export interface FormfileUser {
  username: string;
  /** Plaintext from the Formfile; the builder hashes it and never stores or logs it. */
  passwd: string | null;
  sudo: boolean;
  sshAuthorizedKeys: string[];
  sshPwauth: boolean;
  lockPasswd: boolean;
  shell: string;
  disableRoot: boolean;
  chpasswdExpire: boolean;
  groups: string[];
}

/** Defaults applied for what a Formfile omits. */
export const FORMFILE_DEFAULTS = {
  vcpu: 1,
  memMiB: 512,
  diskGiB: 5,
  workdir: '/app',
  shell: '/bin/bash',
} as const;
