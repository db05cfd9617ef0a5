import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { tryRun } from './exec.ts';
import { removeLeakGuardIfUnused } from './leak-guard.ts';
import { deleteNetns } from './netns.ts';
import { endProcess, isSameProcess, type ProcessIdentity } from './process-identity.ts';
import { WG_RUN_DIR } from './wireguard.ts';

/**
 * A temporary formnet peer, written to `<FORM_HOME>/formnet/sessions/<tag>.json` before anything is
 * made, so that whatever a killed command left behind can be found and removed by the next one.
 */
export interface SessionRecord {
  /** 6 hex digits; names the file, the interface `fdw<tag>` and (same-host fallback) the namespace `fdev<tag>`. */
  tag: string;
  /** WireGuard interface of the session. */
  iface: string;
  /** The namespace the session made (same-host veth fallback); null when the interface lives in the CLI's own namespace. */
  netns: string | null;
  /** Our wireguard-go, once started. */
  wireguardGo: ProcessIdentity | null;
  /** The `form` process that owns the session: while it lives, the session is in use. */
  cli: ProcessIdentity;
  /** Formnet API URL of the node joined through (for the leave). */
  nodeUrl: string;
  /** The member id (developer address) that joined. */
  memberId: string;
  /** The session's WireGuard public key: a leave is sent only while the node still has this key for us. */
  wgPublicKey: string;
  /** Whether the session installed the leak guard in the CLI's namespace. */
  leakGuard: boolean;
  createdAt: string;
}

const TAG_RE = /^[0-9a-f]{6}$/;

/** Problems with a record read from disk (a hand-edited file must never make us delete `eth0`). Pure. */
export function sessionRecordProblem(r: unknown): string | undefined {
  const x = r as Partial<SessionRecord> | null;
  if (!x || typeof x !== 'object') return 'not an object';
  if (typeof x.tag !== 'string' || !TAG_RE.test(x.tag)) return 'tag is not 6 hex digits';
  if (x.iface !== `fdw${x.tag}`) return `iface must be fdw${x.tag}`;
  if (x.netns !== null && x.netns !== `fdev${x.tag}`) return `netns must be null or fdev${x.tag}`;
  const pid = (p: unknown) =>
    !!p &&
    typeof p === 'object' &&
    Number.isInteger((p as ProcessIdentity).pid) &&
    (p as ProcessIdentity).pid > 0 &&
    Number.isFinite((p as ProcessIdentity).start);
  if (!pid(x.cli)) return 'cli is not {pid, start}';
  if (x.wireguardGo !== null && !pid(x.wireguardGo)) return 'wireguardGo is not null or {pid, start}';
  if (typeof x.nodeUrl !== 'string' || typeof x.memberId !== 'string' || typeof x.wgPublicKey !== 'string') {
    return 'nodeUrl, memberId, wgPublicKey must be strings';
  }
  return undefined;
}

/** Write (or rewrite) a session record atomically, 0600. */
export async function writeSessionRecord(dir: string, rec: SessionRecord): Promise<void> {
  const bad = sessionRecordProblem(rec);
  if (bad) throw new FormError('BAD_REQUEST', `Cannot record formnet session: ${bad}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${rec.tag}.json`);
  await writeFile(`${file}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

export async function removeSessionRecord(dir: string, tag: string): Promise<void> {
  if (TAG_RE.test(tag)) await rm(join(dir, `${tag}.json`), { force: true });
}

/** Every record in `dir`; files that are not valid records are listed in `invalid` (and left alone). */
export async function readSessionRecords(dir: string): Promise<{ records: SessionRecord[]; invalid: string[] }> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  } catch {
    return { records: [], invalid: [] };
  }
  const records: SessionRecord[] = [];
  const invalid: string[] = [];
  for (const n of names.sort()) {
    try {
      const r = JSON.parse(await readFile(join(dir, n), 'utf8')) as SessionRecord;
      if (sessionRecordProblem(r) || n !== `${r.tag}.json`) invalid.push(n);
      else records.push(r);
    } catch {
      invalid.push(n);
    }
  }
  return { records, invalid };
}

/** Remove what a session made on this machine: its wireguard-go (by PID, if still that process), interface, namespace, UAPI socket. */
export async function removeSessionResources(rec: SessionRecord): Promise<void> {
  // wireguard-go deletes its TUN device when it ends; ending it first also frees a namespace it sits in.
  await endProcess(rec.wireguardGo);
  if (rec.netns) await deleteNetns(rec.netns);
  else await tryRun('ip', ['link', 'del', rec.iface]);
  await rm(`${WG_RUN_DIR}/${rec.iface}.sock`, { force: true });
  if (rec.leakGuard && !rec.netns) await removeLeakGuardIfUnused();
}

export interface ReapedSession {
  tag: string;
  iface: string;
  /** Whether the node was told (a signed leave); false when it had moved on or could not be reached. */
  left: boolean;
  error?: string;
}

/**
 * Reap sessions whose `form` process is gone (checked by PID and start time, so a reused PID is not
 * taken for it): remove their interface/namespace/wireguard-go, then call `leave` (the caller sends
 * the signed leave only if the node still holds the session's key). Records of live sessions stay.
 */
export async function reapSessions(
  dir: string,
  o: { leave: (rec: SessionRecord) => Promise<boolean>; logger?: Logger },
): Promise<ReapedSession[]> {
  const { records, invalid } = await readSessionRecords(dir);
  for (const n of invalid) o.logger?.warn({ file: join(dir, n) }, 'not a formnet session record: left alone');
  const reaped: ReapedSession[] = [];
  for (const rec of records) {
    if (isSameProcess(rec.cli)) continue;
    await removeSessionResources(rec);
    const r: ReapedSession = { tag: rec.tag, iface: rec.iface, left: false };
    try {
      r.left = await o.leave(rec);
    } catch (err) {
      r.error = (err as Error).message;
      o.logger?.warn({ tag: rec.tag, err: r.error }, 'reaped formnet session: leave failed');
    }
    await removeSessionRecord(dir, rec.tag);
    o.logger?.info({ tag: rec.tag, iface: rec.iface, cli: rec.cli.pid }, 'reaped formnet session');
    reaped.push(r);
  }
  return reaped;
}
