import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FormError } from '@formation/interface';
import { nodePaths } from './config.ts';
import { pidAlive } from './daemon-files.ts';
import { isOurDaemon, readInfo, sh } from './devnet-daemon.ts';
import { type DevnetNode, type DevnetState, readDevnet, stateUrl } from './devnet-state.ts';
import { netnsPids, nsFetchJson } from './devnet-world.ts';

// What a devnet's nodes say: convergence, per-node status, the world's visitor and laptop.

/** Wait until every running node's state lists every node of the devnet (read inside each host in world mode). */
export async function waitConverged(s: DevnetState, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const up = s.nodes.filter((n) => n.pid && pidAlive(n.pid));
  while (Date.now() < deadline) {
    const counts = await Promise.all(
      up.map(async (n) => {
        try {
          const body = await nodeJson<unknown[] | { nodes: unknown[] }>(s, n, `${stateUrl(n)}/nodes`);
          return Array.isArray(body) ? body.length : body.nodes.length;
        } catch {
          return 0;
        }
      }),
    );
    if (counts.every((c) => c >= s.nodes.length)) return;
    await new Promise((r) => setTimeout(r, s.mode === 'world' ? 500 : 200));
  }
  throw new FormError('TIMEOUT', `Devnet nodes did not all see ${s.nodes.length} nodes within ${timeoutMs / 1000} s`, {
    hint: `See the nodes' logs: ${s.nodes.map((n) => nodePaths(n.dataDir).logFile).join(' ')}`,
  });
}

/** GET a node's API: from the root namespace in local mode, inside the node's host namespace in world mode. */
export async function nodeJson<T>(s: DevnetState, n: DevnetNode, url: string): Promise<T> {
  if (s.mode === 'world') return nsFetchJson<T>(n.netns, url);
  const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!r.ok) throw new FormError('UNAVAILABLE', `Cannot GET ${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

/** World mode: the visitor and the laptop, beside the nodes' rows of `devnetStatus`. */
export interface DevnetWorldStatus {
  visitor: { netns: string; ip: string; running: boolean; pid: number | null; requests: number };
  laptop: { netns: string; ip: string; formHome: string; processes: number; interfaces: string[] };
}

/** World mode: is the visitor up, how many requests it answered; what runs on the laptop (null for local mode). */
export async function devnetWorldStatus(dir: string): Promise<DevnetWorldStatus | null> {
  const s = readDevnet(resolve(dir));
  const w = s?.world;
  if (!s || !w) return null;
  const vpid = w.visitorPid;
  const running = !!vpid && pidAlive(vpid);
  let interfaces: string[] = [];
  try {
    const links = JSON.parse(await sh('ip', ['-n', w.plan.laptop.netns, '-j', 'link', 'show'])) as { ifname: string }[];
    interfaces = links.map((l) => l.ifname).filter((n) => n !== 'lo');
  } catch {
    // the laptop namespace is gone
  }
  return {
    visitor: {
      netns: w.plan.visitor.netns,
      ip: w.plan.visitor.ip,
      running,
      pid: running ? vpid : null,
      requests: readVisitorLog(s).length,
    },
    laptop: {
      netns: w.plan.laptop.netns,
      ip: w.plan.laptop.ip,
      formHome: w.laptopHome,
      processes: (await netnsPids(w.plan.laptop.netns)).length,
      interfaces,
    },
  };
}

/** World mode: the visitor's request log (who called it, from which address). */
export function readVisitorLog(s: DevnetState): Array<{ from: string; method: string; url: string; ts: string }> {
  const file = s.world?.visitorLog;
  if (!file || !existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { from: string; method: string; url: string; ts: string });
}

export interface DevnetNodeStatus {
  name: string;
  netns: string;
  pid: number | null;
  running: boolean;
  portOffset: number;
  apiBase: string;
  stateUrl: string;
  underlayIp: string;
  /** World mode: the node's public address. */
  publicAddress: string | null;
  instanceCidr: string;
  nodeAddress: string | null;
  formnetAddress: string | null;
  digest: string | null;
  ops: number | null;
}

/** Per node: running?, formnet address, state digest (equal digests = converged). */
export async function devnetStatus(dir: string): Promise<DevnetNodeStatus[] | null> {
  const s = readDevnet(resolve(dir));
  if (!s) return null;
  return Promise.all(
    s.nodes.map(async (n) => {
      const running = !!n.pid && pidAlive(n.pid) && isOurDaemon(n.pid, n.dataDir);
      const info = running ? readInfo(n.dataDir) : null;
      let digest: string | null = null;
      let ops: number | null = null;
      if (running) {
        try {
          const r = await nodeJson<{ digest: string; size: number }>(s, n, `${stateUrl(n)}/digest`);
          digest = r.digest;
          ops = r.size;
        } catch {
          // not answering
        }
      }
      return {
        name: n.name,
        netns: n.netns,
        pid: running ? n.pid : null,
        running,
        portOffset: n.portOffset,
        apiBase: n.apiBase,
        stateUrl: stateUrl(n),
        underlayIp: n.underlayIp,
        publicAddress: n.publicAddress ?? null,
        instanceCidr: n.instanceCidr,
        nodeAddress: info?.nodeAddress ?? null,
        formnetAddress: info?.formnetAddress ?? null,
        digest,
        ops,
      };
    }),
  );
}
