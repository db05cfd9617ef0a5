// Shared by the end-to-end tests that run a real node through the real `form` CLI (deploy.e2e.test.ts,
// autostop.e2e.test.ts): the CLI bound to one FORM_HOME and port offset, the status poll, and what a
// test checks it left behind (QEMU processes of its data dir, the daemon's pid file, temporary peers).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { until } from '@formation/interface/testing';
import { type FormRun, runForm } from './run-form.ts';

/** `form manage get status --json`, the fields these tests read. */
export interface E2eStatus {
  status: string;
  reason?: string;
  revision: number;
  dnsName: string | null;
  autostopMinutes?: number;
  replicas: Array<{
    state: string;
    formnetIp: string | null;
    revision: number | null;
    reason?: string | null;
    health?: { status: string } | null;
  }>;
}

/** The CLI as a user of `env.FORM_HOME` runs it, `json` of a run that must succeed, and a status poll. */
export function formCli(env: Record<string, string>) {
  const form = (args: string[], extra: Record<string, string> = {}, cwd?: string): Promise<FormRun> =>
    runForm(args, { ...env, ...extra }, cwd ? { cwd } : {});
  const json = <T = Record<string, unknown>>(r: FormRun): T => {
    assert.equal(r.code, 0, `form failed (${r.code}): ${r.stderr}\n${r.stdout}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Polls the instance's status through the real CLI until `pred` holds; a timeout names the last status seen. */
  const waitFor = async (
    ref: string,
    pred: (s: E2eStatus) => boolean,
    what: string,
    timeoutMs = 150_000,
    everyMs = 1000,
  ): Promise<E2eStatus> => {
    let last: E2eStatus | undefined;
    const poll = async () => {
      const r = await form(['manage', 'get', 'status', ref, '--json']);
      if (r.code !== 0) throw new Error(`form manage get status ${ref}: ${r.stderr.trim()}`);
      last = JSON.parse(r.stdout) as E2eStatus;
      return pred(last) ? last : undefined;
    };
    return until(what, poll, timeoutMs, everyMs).catch((err: Error) => {
      throw new Error(`${err.message}; last status: ${JSON.stringify(last)}${daemonLogTail(env.FORM_HOME)}`);
    });
  };
  return { form, json, waitFor };
}

/**
 * The node's warnings and errors, last 40 (its formationd.log under `home`), for a failed wait: a CI run
 * keeps no test data, so what the daemon said is only in the failure message.
 */
export function daemonLogTail(home: string | undefined, max = 40): string {
  if (!home) return '';
  try {
    const lines = readFileSync(join(home, 'node', 'formationd.log'), 'utf8')
      .split('\n')
      .filter((l) => /"level":(4|5|6)0/.test(l));
    return `\nformationd warnings and errors (last ${max}):\n${lines.slice(-max).join('\n')}`;
  } catch (err) {
    return `\n(no formationd log: ${(err as Error).message})`;
  }
}

/**
 * QEMU processes whose command line names `dir` (a test's own data dir): its instances' VMs. A node also
 * runs VMs that are no instance's, left out unless `all`: a standby VM (restored ahead of time, paused:
 * packages/vmm "Standby VMs") and the VM a boot template is being built from (`guest=tpl-…`, booted once
 * the node is quiet, which may be while the only instance is suspended; it ends when the template is
 * saved).
 */
export function qemuPidsOf(dir: string, opts: { all?: boolean } = {}): number[] {
  const out = execFileSync('sh', ['-c', 'pgrep -f qemu-system-x86_64 || true']).toString().trim();
  return out
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmdline.includes(dir)) return false;
        return opts.all === true || !(isStandbyQemu(dir, cmdline) || TEMPLATE_BUILD_QEMU.test(cmdline));
      } catch {
        return false;
      }
    });
}

/** The id QEMU is given for a boot template's build VM (packages/vmm/src/template-build.ts). */
const TEMPLATE_BUILD_QEMU = /guest=tpl-[0-9a-f]{12}\b/;

/** Whether the QEMU with this command line runs a standby VM of the node in `dir` (its VM record says so). */
function isStandbyQemu(dir: string, cmdline: string): boolean {
  const id = /guest=([A-Za-z0-9._-]+)/.exec(cmdline)?.[1];
  if (!id) return false;
  try {
    const rec = JSON.parse(readFileSync(join(dir, 'vms', id, 'vm.json'), 'utf8')) as { standby?: boolean };
    return rec.standby === true;
  } catch {
    return false;
  }
}

/** The same-host temporary formnet peers' namespaces (`fdev<tag>`) that exist now. */
export function fdevNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'])
    .toString()
    .split('\n')
    .map((l) => l.split(' ')[0] as string)
    .filter((ns) => /^fdev[0-9a-f]{6}$/.test(ns));
}

/** The pid of the node daemon of `home` (its pid file), or null. */
export function formationdPid(home: string): number | null {
  try {
    return Number(readFileSync(join(home, 'node', 'formationd.pid'), 'utf8').trim()) || null;
  } catch {
    return null;
  }
}
