import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/**
 * Disk and network numbers of one VM (issue 20 metrics): block I/O from QMP `query-blockstats`, disk
 * space the VM's qcow2 files take on the host, and its TAP's byte/packet counters — from the guest's
 * side (what the guest received is what the TAP sent). Parsing is pure; the readers are thin.
 */

export type { DiskIo, NetIo } from '@formation/interface';

import type { DiskIo, NetIo } from '@formation/interface';

export interface VmIo {
  disks: DiskIo[];
  /** Bytes the VM's qcow2 overlay (+ data disk) occupy on the host (allocated blocks), or null. */
  diskAllocatedBytes: number | null;
  net: NetIo | null;
}

const DRIVE_NAMES: Record<string, string> = { d0: 'root', d1: 'data' };
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/**
 * Parse a `query-blockstats` reply (an array of `{ device, qdev, stats: { rd_bytes, wr_bytes, … } }`).
 * Entries without a drive id or stats (the backing files QEMU also lists) are skipped; anything that is
 * not the expected shape gives [] rather than an error (a metrics read must never fail a VM).
 *
 * @example parseBlockstats([{ device: 'd0', stats: { rd_bytes: 512, wr_bytes: 0, rd_operations: 1, wr_operations: 0, flush_operations: 0 } }])
 * // [{ disk: 'root', readBytes: 512, writtenBytes: 0, readOps: 1, writeOps: 0, flushOps: 0 }]
 */
export function parseBlockstats(reply: unknown): DiskIo[] {
  if (!Array.isArray(reply)) return [];
  const out: DiskIo[] = [];
  for (const e of reply as Array<Record<string, unknown>>) {
    const device = typeof e?.device === 'string' ? e.device : '';
    const s = e?.stats as Record<string, unknown> | undefined;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(device) || !s || typeof s !== 'object') continue;
    out.push({
      disk: DRIVE_NAMES[device] ?? device,
      readBytes: num(s.rd_bytes),
      writtenBytes: num(s.wr_bytes),
      readOps: num(s.rd_operations),
      writeOps: num(s.wr_operations),
      flushOps: num(s.flush_operations),
    });
  }
  return out;
}

/**
 * Guest-side traffic from a TAP's host-side counters (`/sys/class/net/<tap>/statistics/*`): the TAP's
 * transmit is the guest's receive. Missing counters read as 0; null when none was there.
 */
export function netIoFromTapCounters(c: Partial<Record<string, number>>): NetIo | null {
  if (c.rx_bytes === undefined && c.tx_bytes === undefined) return null;
  return {
    rxBytes: num(c.tx_bytes),
    txBytes: num(c.rx_bytes),
    rxPackets: num(c.tx_packets),
    txPackets: num(c.rx_packets),
    rxDropped: num(c.tx_dropped),
    txDropped: num(c.rx_dropped),
  };
}

/** `ip -s -j link show dev <tap>` output as sysfs-named counters (for a TAP inside a network namespace). */
export function tapCountersFromIpJson(stdout: string): Partial<Record<string, number>> {
  try {
    const j = JSON.parse(stdout) as Array<{ stats64?: Record<'rx' | 'tx', Record<string, unknown>> }>;
    const st = j[0]?.stats64;
    if (!st?.rx || !st.tx) return {};
    const out: Record<string, number> = {};
    for (const dir of ['rx', 'tx'] as const) {
      for (const k of ['bytes', 'packets', 'dropped'] as const) {
        const v = st[dir][k];
        if (typeof v === 'number') out[`${dir}_${k}`] = v;
      }
    }
    return out;
  } catch {
    return {};
  }
}

const COUNTERS = ['rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets', 'rx_dropped', 'tx_dropped'] as const;
const TAP_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Read a TAP's counters: from `/sys/class/net/<tap>/statistics` (root namespace; `sysRoot` for tests),
 * or with `ip -n <netns> -s -j link show` when the TAP lives in a namespace. Null when unreadable.
 */
export async function readTapIo(
  tap: string | undefined,
  netns: string | undefined,
  sysRoot = '/sys',
): Promise<NetIo | null> {
  if (!tap || !TAP_NAME.test(tap)) return null;
  if (netns) {
    if (!NETNS_NAME.test(netns)) return null;
    try {
      const { stdout } = await execFileP('ip', ['-n', netns, '-s', '-j', 'link', 'show', 'dev', tap], {
        timeout: 2000,
      });
      return netIoFromTapCounters(tapCountersFromIpJson(stdout));
    } catch {
      return null;
    }
  }
  const c: Record<string, number> = {};
  for (const k of COUNTERS) {
    try {
      const v = Number((await readFile(join(sysRoot, 'class/net', tap, 'statistics', k), 'utf8')).trim());
      if (Number.isFinite(v)) c[k] = v;
    } catch {}
  }
  return netIoFromTapCounters(c);
}

/** Bytes the files take on disk (allocated blocks: a sparse qcow2 counts what it holds, not its size). */
export async function allocatedBytes(files: readonly string[]): Promise<number | null> {
  let total = 0;
  let any = false;
  for (const f of files) {
    try {
      const s = await stat(f);
      total += s.blocks * 512;
      any = true;
    } catch {}
  }
  return any ? total : null;
}
