import type { NetworkInfo } from '@formation/interface/web-api';
import { short } from '../format.ts';

export function Graph({ net }: { net: NetworkInfo }) {
  const W = 640;
  const H = 300;
  const nodes = net.nodes;
  const others = net.peers.filter((p) => p.kind !== 'node');
  const ring = (i: number, count: number, r: number) => {
    const a = (2 * Math.PI * i) / Math.max(1, count) - Math.PI / 2;
    return count === 1 && r < 100 ? { x: W / 2, y: H / 2 } : { x: W / 2 + r * Math.cos(a), y: H / 2 + r * Math.sin(a) };
  };
  const nodePos = new Map(nodes.map((n, i) => [n.id, ring(i, nodes.length, nodes.length === 1 ? 0 : 90)]));
  const desc = `${nodes.length} node(s) and ${others.length} other formnet peer(s). Nodes form a full WireGuard mesh; other peers connect to every node.`;
  return (
    <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={desc} className="graph">
      <title>{desc}</title>
      {nodes.flatMap((a, i) =>
        nodes.slice(i + 1).map((b) => {
          const p = nodePos.get(a.id)!;
          const q = nodePos.get(b.id)!;
          return <line key={`${a.id}-${b.id}`} x1={p.x} y1={p.y} x2={q.x} y2={q.y} className="edge" />;
        }),
      )}
      {others.map((o, i) => {
        const p = ring(i, others.length, 135);
        return nodes.map((n) => {
          const q = nodePos.get(n.id)!;
          return <line key={`${o.publicKey}-${n.id}`} x1={p.x} y1={p.y} x2={q.x} y2={q.y} className="edge dashed" />;
        });
      })}
      {nodes.map((n) => {
        const p = nodePos.get(n.id)!;
        return (
          <g key={n.id}>
            <circle cx={p.x} cy={p.y} r={22} className={n.self ? 'node self' : 'node'} />
            <text x={p.x} y={p.y + 38} textAnchor="middle">
              {n.name ?? short(n.address)}
            </text>
          </g>
        );
      })}
      {others.map((o, i) => {
        const p = ring(i, others.length, 135);
        return (
          <g key={o.publicKey}>
            <rect x={p.x - 9} y={p.y - 9} width={18} height={18} className={`peer peer-${o.kind}`} />
            <text x={p.x} y={p.y + 24} textAnchor="middle">
              {o.label}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
