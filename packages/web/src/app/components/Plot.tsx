import type { MetricSample, NodeSummary } from '@formation/interface/web-api';
import { short } from '../format.ts';

export function Plot({ node, samples }: { node: NodeSummary; samples: MetricSample[] }) {
  const W = 640;
  const H = 140;
  const pad = 28;
  if (samples.length < 2) {
    return <p>{node.name ?? short(node.address)}: collecting samples (one every few seconds)…</p>;
  }
  const t0 = samples[0]!.ts;
  const t1 = samples[samples.length - 1]!.ts;
  const x = (t: number) => pad + ((W - 2 * pad) * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v: number) => H - pad - (H - 2 * pad) * v;
  const line = (get: (s: MetricSample) => number | null) =>
    samples
      .filter((s) => get(s) !== null)
      .map((s, i) => `${i === 0 ? 'M' : 'L'}${x(s.ts).toFixed(1)},${y(get(s) ?? 0).toFixed(1)}`)
      .join(' ');
  const last = samples[samples.length - 1]!;
  const pct = (v: number | null) => (v === null ? 'n/a' : `${Math.round(v * 100)}%`);
  const label = `${node.name ?? node.address}: CPU allocated ${pct(last.cpuAllocated)}, memory allocated ${pct(last.memAllocated)}, host CPU ${pct(last.hostCpu)}, host memory ${pct(last.hostMem)}, over ${Math.round((t1 - t0) / 1000)} s`;
  return (
    <figure className="plot">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label}>
        <line x1={pad} y1={y(0)} x2={W - pad} y2={y(0)} className="axis" />
        <line x1={pad} y1={y(1)} x2={W - pad} y2={y(1)} className="axis dashed" />
        <text x={4} y={y(1) + 4}>
          100%
        </text>
        <text x={4} y={y(0) + 4}>
          0%
        </text>
        <path d={line((s) => s.cpuAllocated)} className="series cpu" />
        <path d={line((s) => s.memAllocated)} className="series mem" />
        <path d={line((s) => s.hostCpu)} className="series hostcpu" />
        <path d={line((s) => s.hostMem)} className="series hostmem" />
      </svg>
      <figcaption>
        {node.name ?? short(node.address)} — <span className="key cpu">CPU allocated</span>{' '}
        <span className="key mem">memory allocated</span> <span className="key hostcpu">host CPU load</span>{' '}
        <span className="key hostmem">host memory</span>. Now: {pct(last.cpuAllocated)} / {pct(last.memAllocated)} /{' '}
        {pct(last.hostCpu)} / {pct(last.hostMem)}
      </figcaption>
    </figure>
  );
}
