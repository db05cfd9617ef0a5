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
  /**
   * `HEALTHCHECK`: how the node decides a replica is healthy (ingress and DNS route only to healthy ones).
   * Absent when the Formfile has none or says `HEALTHCHECK NONE` (the same thing), so Formpack ids of
   * Formfiles without one are unchanged.
   */
  healthcheck?: HealthcheckSpec;
  /**
   * `HTTPS <port>`: the guest obtains an ACME certificate for the instance's names (its key made in the
   * guest, never leaving it), serves TLS on 443 (added to `expose`) and forwards to `port`. Absent = off.
   * `HTTPS <port> TERMINATE=ingress`: `terminate: 'ingress'` — the ingress nodes hold the certificate
   * and key, end TLS and forward plain HTTP to `port` (added to `expose`): the nodes see the traffic.
   */
  https?: { port: number; terminate?: 'ingress' };
  /**
   * `AUTOSTOP <idle time>|off` (scale to zero): the instance's autostop in minutes when shipped (0 = off).
   * Absent when the Formfile has none (new instances: off; an update keeps the instance's setting).
   */
  autostopMinutes?: number;
}

/** A normalized `HEALTHCHECK`: every option filled in with its default. */
export interface HealthcheckSpec {
  test: HealthcheckTest;
  /** Time between the start of two checks. */
  intervalMs: number;
  /** A check that takes longer fails. Never more than `intervalMs`. */
  timeoutMs: number;
  /** Consecutive failures (outside the start period) that make a replica unhealthy. */
  retries: number;
  /** After boot, failures during this time do not count (a success ends it early). */
  startPeriodMs: number;
}

/**
 * What one check does: `http` GETs `path` on the replica's formnet address and `port` (200-399 is
 * healthy), `tcp` connects, `cmd` runs a command inside the guest (exit status 0 is healthy).
 */
export type HealthcheckTest =
  | { type: 'http'; port: number; path: string }
  | { type: 'tcp'; port: number }
  | { type: 'cmd'; command: { form: 'exec'; argv: string[] } | { form: 'shell'; command: string } };

/** Defaults of the HEALTHCHECK options, and their bounds (milliseconds, except retries). */
export const HEALTHCHECK_DEFAULTS = {
  intervalMs: 10_000,
  timeoutMs: 3_000,
  retries: 3,
  startPeriodMs: 30_000,
} as const;

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
