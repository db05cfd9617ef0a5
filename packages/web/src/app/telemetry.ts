import type { ReplicaMetricsInfo } from '@formation/interface/web-api';

/** One point of the instance page's plots, derived from two consecutive samples. */
export interface RatePoint {
  at: number;
  /** % of one core over the interval; null across a restart (the counter went back). */
  cpuPercent: number | null;
  rssMiB: number | null;
  memMiB: number;
  /** Bytes per second over the interval (all disks; guest side for the network). */
  diskReadBps: number | null;
  diskWriteBps: number | null;
  netRxBps: number | null;
  netTxBps: number | null;
}

const rate = (a: number | null | undefined, b: number | null | undefined, secs: number): number | null =>
  a === null || a === undefined || b === null || b === undefined || b < a ? null : (b - a) / secs;
const sum = (s: ReplicaMetricsInfo, k: 'readBytes' | 'writtenBytes'): number | null =>
  s.disks.length ? s.disks.reduce((n, d) => n + d[k], 0) : null;

/**
 * Rates between consecutive samples (the VMM's counters are totals): CPU %, disk and network bytes/s.
 * Pure; a sample that goes back in time or a counter that went down (a restart) gives nulls, never a
 * negative rate.
 *
 * @example deriveRates([s0, s1]) // [{ at: s1.at, cpuPercent: 12.5, diskReadBps: 4096, … }]
 */
export function deriveRates(samples: readonly ReplicaMetricsInfo[]): RatePoint[] {
  const out: RatePoint[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as ReplicaMetricsInfo;
    const b = samples[i] as ReplicaMetricsInfo;
    const secs = (b.at - a.at) / 1000;
    if (!(secs > 0)) continue;
    const cpu = rate(a.cpuSeconds, b.cpuSeconds, secs);
    out.push({
      at: b.at,
      cpuPercent: cpu === null ? null : Math.round(cpu * 1000) / 10,
      rssMiB: b.rssBytes === null ? null : b.rssBytes / 1048576,
      memMiB: b.memMiB,
      diskReadBps: rate(sum(a, 'readBytes'), sum(b, 'readBytes'), secs),
      diskWriteBps: rate(sum(a, 'writtenBytes'), sum(b, 'writtenBytes'), secs),
      netRxBps: rate(a.net?.rxBytes, b.net?.rxBytes, secs),
      netTxBps: rate(a.net?.txBytes, b.net?.txBytes, secs),
    });
  }
  return out;
}

/** `1.5 KiB/s`, `3.2 MiB/s`: a byte rate for a caption. */
export function formatRate(bps: number | null): string {
  if (bps === null) return 'n/a';
  if (bps < 1024) return `${Math.round(bps)} B/s`;
  if (bps < 1048576) return `${(bps / 1024).toFixed(1)} KiB/s`;
  return `${(bps / 1048576).toFixed(1)} MiB/s`;
}
