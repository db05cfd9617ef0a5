import type { ReplicaMetricsInfo } from '@formation/interface/web-api';
import { useState } from 'react';
import { api } from '../api.ts';
import { usePoll } from '../poll.ts';
import { deriveRates, formatRate, type RatePoint } from '../telemetry.ts';
import { ErrorBox } from './ErrorBox.tsx';

/** Samples kept: one every 3 s, the last 3 minutes. */
const KEEP = 60;

/** Small plots of this node's replica: CPU, memory, disk and network, sampled while the page is open. */
export function ReplicaPlots({ id }: { id: string }) {
  const [samples, setSamples] = useState<ReplicaMetricsInfo[]>([]);
  const error = usePoll(
    id,
    3000,
    (id) => () => api.metrics(id),
    (s) => setSamples((old) => [...old, s].slice(-KEEP)),
  );
  const points = deriveRates(samples);
  const last = points[points.length - 1];
  return (
    <>
      {error ? <ErrorBox error={error} what="the metrics" /> : null}
      {points.length < 2 ? (
        <p>Collecting samples (one every 3 s)…</p>
      ) : (
        <div className="sparks">
          <Spark
            title={`CPU ${last?.cpuPercent ?? 'n/a'}% of a core`}
            points={points}
            series={[{ get: (p) => p.cpuPercent, cls: 'cpu' }]}
          />
          <Spark
            title={`Memory ${last?.rssMiB === null || last === undefined ? 'n/a' : Math.round(last.rssMiB)} of ${last?.memMiB} MiB`}
            points={points}
            series={[{ get: (p) => p.rssMiB, cls: 'mem' }]}
            max={last?.memMiB}
          />
          <Spark
            title={`Disk read ${formatRate(last?.diskReadBps ?? null)}, write ${formatRate(last?.diskWriteBps ?? null)}`}
            points={points}
            series={[
              { get: (p) => p.diskReadBps, cls: 'hostcpu' },
              { get: (p) => p.diskWriteBps, cls: 'hostmem' },
            ]}
          />
          <Spark
            title={`Network in ${formatRate(last?.netRxBps ?? null)}, out ${formatRate(last?.netTxBps ?? null)}`}
            points={points}
            series={[
              { get: (p) => p.netRxBps, cls: 'cpu' },
              { get: (p) => p.netTxBps, cls: 'mem' },
            ]}
          />
        </div>
      )}
    </>
  );
}

function Spark({
  title,
  points,
  series,
  max,
}: {
  title: string;
  points: RatePoint[];
  series: Array<{ get: (p: RatePoint) => number | null; cls: string }>;
  max?: number | undefined;
}) {
  const W = 300;
  const H = 60;
  const t0 = points[0]?.at ?? 0;
  const t1 = points[points.length - 1]?.at ?? 1;
  const top = Math.max(max ?? 0, 1e-9, ...series.flatMap((s) => points.map((p) => s.get(p) ?? 0)));
  const x = (t: number) => 2 + ((W - 4) * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v: number) => H - 2 - ((H - 4) * v) / top;
  const path = (get: (p: RatePoint) => number | null) =>
    points
      .filter((p) => get(p) !== null)
      .map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.at).toFixed(1)},${y(get(p) ?? 0).toFixed(1)}`)
      .join(' ');
  return (
    <figure className="plot spark">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
        <line x1={2} y1={y(0)} x2={W - 2} y2={y(0)} className="axis" />
        {series.map((s) => (
          <path key={s.cls} d={path(s.get)} className={`series ${s.cls}`} />
        ))}
      </svg>
      <figcaption>{title}</figcaption>
    </figure>
  );
}
