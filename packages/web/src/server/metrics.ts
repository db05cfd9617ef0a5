import { cpus, freemem, loadavg, totalmem } from 'node:os';
import type { MetricSample } from '@formation/interface/web-api';
import type { NodeApis } from './upstream.ts';
import { metricSample, usedByNode } from './views.ts';

/** Load samples per node, taken by the BFF on a timer so the plots have history when a page opens. */
export class Metrics {
  private readonly apis: NodeApis;
  private readonly max: number;
  private readonly series = new Map<string, MetricSample[]>();

  constructor(apis: NodeApis, max: number) {
    this.apis = apis;
    this.max = max;
  }

  async sample(now = Date.now()): Promise<void> {
    const [nodes, self, instances] = await Promise.all([
      this.apis.nodes(),
      this.apis.self().catch(() => null),
      this.apis.instances(),
    ]);
    const usedBy = usedByNode(instances);
    for (const n of nodes) {
      const local = self !== null && n.address === self.node;
      const host = local
        ? { cpu: Math.min(1, (loadavg()[0] ?? 0) / Math.max(1, cpus().length)), mem: 1 - freemem() / totalmem() }
        : null;
      const s = metricSample(n, n.heartbeat?.used ?? usedBy.get(n.id), host, now);
      const list = this.series.get(n.id) ?? [];
      list.push(s);
      if (list.length > this.max) list.splice(0, list.length - this.max);
      this.series.set(n.id, list);
    }
  }

  all(): MetricSample[] {
    return [...this.series.values()].flat();
  }
}
