import { addressOf } from '@formation/identity';
import { actorOf } from './kinds.ts';
import type { Op } from './op.ts';
import { UPDATE_WINDOW_MS } from './releases.ts';

/**
 * An instance's history, derived from the op log (pure): what its owner asked for (create, ship a new
 * Formpack, scale, stop/start, commit, delete) and what the nodes did about it (claim a replica, report
 * it starting, running, failed, stopped, removed), plus what can be read from the nodes' heartbeats (a
 * replica's node going silent, a replica healed elsewhere). Times are the authors' clocks (ops carry
 * them; nodes are not trusted to keep good time, at most 5 minutes ahead is accepted).
 */
export type InstanceEventKind =
  | 'created'
  | 'updated'
  | 'scaled'
  | 'resized'
  | 'stopped'
  | 'started'
  | 'committed'
  | 'deleted'
  | 'claimed'
  | 'healed'
  | 'booting'
  | 'running'
  | 'failed'
  | 'replica-stopped'
  | 'replica-removed'
  | 'pending'
  | 'revision'
  | 'node-lost'
  | 'node-removed'
  | 'healthy'
  | 'unhealthy'
  | 'rolled-back'
  | 'suspended'
  | 'woken';

export interface InstanceEvent {
  /** Milliseconds since the epoch (the author's clock; for `node-lost`, last heartbeat + timeout). */
  at: number;
  kind: InstanceEventKind;
  /** The node (public key) the event is about, when it is about a replica. */
  node: string | null;
  /** Public key that signed the op (null for `node-lost`, which is inferred from missing heartbeats). */
  author: string | null;
  /** Account the op acted for (its delegation's owner, else its author), as an address. */
  actor: string | null;
  /** The op's hash (null for inferred events). */
  op: string | null;
  /** One line for people. */
  detail: string;
  revision?: number;
  reason?: string;
}

export interface InstanceEventOptions {
  instanceId: string;
  /** Now (ms): a replica's node silent for `nodeTimeoutMs` before now counts as lost. */
  now: number;
  /**
   * When each node was last seen alive (ms; the views' `heartbeat.ts`, with presence laid over it).
   * Liveness is gossiped, not logged (a `node.heartbeat` op is recorded only every 10 minutes), so
   * only a silence that lasts until now can be shown; earlier silences show as replicas healed elsewhere.
   */
  lastSeen?: Readonly<Record<string, number | null>>;
  /** How long without a heartbeat before a node counts as lost (ms); default 30 s as in placement. */
  nodeTimeoutMs?: number;
  /** Only events at or after this time (ms). */
  since?: number;
}

const short = (k: string): string => `${k.slice(0, 10)}…`;

/** Order ops as everyone can: by the author's clock, ties by hash. */
const byTime = (a: Op, b: Op): number => a.ts - b.ts || (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0);

/** The ops that concern instance `id`, plus the removals of the nodes that claimed it, in time order. */
export function opsForInstance(ops: Iterable<Op>, id: string): Op[] {
  const mine: Op[] = [];
  const removals: Op[] = [];
  for (const op of ops) {
    const b = op.body;
    if (op.kind === 'instance.create' ? b.id === id : op.kind.startsWith('instance.') && b.instanceId === id)
      mine.push(op);
    else if (op.kind === 'node.remove') removals.push(op);
  }
  const claimers = new Set(mine.filter((o) => o.kind === 'instance.claim').map((o) => o.author));
  for (const op of removals) if (claimers.has(op.body.node as string)) mine.push(op);
  return mine.sort(byTime);
}

interface ReplicaTrack {
  lastReport: string | null;
  /** Why this replica no longer serves (failed, node removed, removed on purpose), or null. */
  lost: string | null;
  /** Replaced by another node's claim, or not to be replaced (removed on purpose). */
  settled: boolean;
}

/**
 * Derive the time-ordered events of one instance from ops (any order; unrelated ops are ignored, so
 * the whole log may be passed). Pure: same ops, same `now`, same events.
 *
 * @example
 * const events = instanceEvents(store.opsSince([], Infinity), { instanceId, now: Date.now() });
 * // [{ at, kind: 'created', author, actor, op, detail: 'created web (Formpack 3f2a…, 2 replicas)' }, …]
 */
export function instanceEvents(allOps: Iterable<Op>, opts: InstanceEventOptions): InstanceEvent[] {
  const timeout = opts.nodeTimeoutMs ?? 30_000;
  const ops = opsForInstance(allOps, opts.instanceId);
  const create = ops.find((o) => o.kind === 'instance.create');
  if (!create) return [];
  const owner = create.author;
  const ownerAddress = addressOf(owner);
  // Only the owner (or its delegate) changes an instance, only a claiming node reports on its replica:
  // anything else in the log (refused by the rules, so normally absent) is not shown.
  const byOwner = (op: Op): boolean => actorOf(op) === owner;
  const out: InstanceEvent[] = [];
  const emit = (op: Op | null, at: number, kind: InstanceEventKind, node: string | null, detail: string, extra = {}) =>
    out.push({
      at,
      kind,
      node,
      author: op?.author ?? null,
      actor: op ? addressOf(actorOf(op)) : null,
      op: op?.hash ?? null,
      detail,
      ...extra,
    });

  let wanted = create.body.replicas as number;
  // Releases seen so far (number -> op ts), the latest, and those already shown as rolled back.
  const releaseTs = new Map<number, number>([[1, create.ts]]);
  let latestRelease = 1;
  let resources = JSON.stringify(create.body.resources);
  const rolledBack = new Set<number>();
  const health = new Map<string, string>();
  const healthyOn = new Set<string>();
  /** A replica of the latest release failed within its roll-out window: the nodes go back (releases.ts). */
  const failedRelease = (op: Op, release: unknown, reason: string) => {
    if (typeof release !== 'number' || release < 2 || release !== latestRelease || rolledBack.has(release)) return;
    const t = releaseTs.get(release) ?? 0;
    if (op.ts - t > UPDATE_WINDOW_MS) return;
    rolledBack.add(release);
    emit(
      op,
      op.ts,
      'rolled-back',
      op.author,
      `release ${release} failed on ${short(op.author)} (${reason}): rolled back`,
    );
  };
  const replicas = new Map<string, ReplicaTrack>();
  const removed = new Set<string>();
  let deleted = false;

  for (const op of ops) {
    const b = op.body;
    switch (op.kind) {
      case 'instance.create':
        if (op !== create) break;
        emit(
          op,
          op.ts,
          'created',
          null,
          `created ${b.name as string} (Formpack ${(b.formpackId as string).slice(0, 12)}, ${wanted} replica(s)) by ${ownerAddress}`,
        );
        break;
      case 'instance.update': {
        if (!byOwner(op)) break;
        if (typeof b.release === 'number') {
          releaseTs.set(b.release, op.ts);
          latestRelease = Math.max(latestRelease, b.release);
        }
        if (typeof b.rollbackOf === 'number')
          emit(
            op,
            op.ts,
            'rolled-back',
            null,
            `owner rolled back to release ${b.rollbackOf} (as release ${b.release})`,
          );
        else if (typeof b.formpackId === 'string')
          emit(
            op,
            op.ts,
            'updated',
            null,
            `shipped Formpack ${b.formpackId.slice(0, 12)}${typeof b.release === 'number' ? ` as release ${b.release}` : ''}`,
          );
        if (typeof b.replicas === 'number' && b.replicas !== wanted) {
          emit(op, op.ts, 'scaled', null, `scaled from ${wanted} to ${b.replicas} replica(s)`);
          wanted = b.replicas;
        }
        if (b.resources && typeof b.resources === 'object' && JSON.stringify(b.resources) !== resources) {
          // Only a change (every ship of a new Formpack repeats its resources).
          resources = JSON.stringify(b.resources);
          const r = b.resources as { vcpu: number; memMiB: number; diskGiB: number };
          emit(op, op.ts, 'resized', null, `resources ${r.vcpu} vCPU, ${r.memMiB} MiB, ${r.diskGiB} GiB`);
        }
        if (b.desired === 'stopped') emit(op, op.ts, 'stopped', null, 'owner asked to stop every replica');
        if (b.desired === 'running') emit(op, op.ts, 'started', null, 'owner asked to start every replica');
        break;
      }
      case 'instance.commit':
        if (!byOwner(op)) break;
        emit(
          op,
          op.ts,
          'committed',
          null,
          `committed revision ${b.revision as number} (${(b.hash as string).slice(0, 12)})`,
          {
            revision: b.revision as number,
          },
        );
        break;
      case 'instance.delete':
        if (!byOwner(op) || deleted) break;
        deleted = true;
        emit(op, op.ts, 'deleted', null, 'deleted by its owner');
        break;
      case 'instance.claim': {
        const node = op.author;
        if (b.node !== node || replicas.has(node)) break;
        // A claim while a replica is lost and not yet replaced is that replica healed here; a claim when
        // the instance already has every replica it wants replaces one whose node stopped answering
        // (liveness is gossiped, not logged, so which one is not in the log).
        const serving = [...replicas.values()].filter((r) => !r.lost).length;
        const gone = [...replicas.entries()].find(([, r]) => r.lost && !r.settled);
        replicas.set(node, { lastReport: null, lost: null, settled: false });
        if (gone && serving < wanted) {
          gone[1].settled = true;
          emit(op, op.ts, 'healed', node, `replica moved from ${short(gone[0])} (${gone[1].lost}) to ${short(node)}`);
        } else if (serving >= wanted)
          emit(
            op,
            op.ts,
            'healed',
            node,
            `replica started on ${short(node)} in place of one whose node stopped answering`,
          );
        else emit(op, op.ts, 'claimed', node, `replica placed on ${short(node)}`);
        break;
      }
      case 'instance.health': {
        const node = op.author;
        if (b.node !== node || !replicas.has(node)) break;
        const key = `${b.status as string}|${b.release as number}`;
        if (health.get(node) === key || b.status === 'starting') break;
        health.set(node, key);
        const why = typeof b.reason === 'string' ? `: ${b.reason}` : '';
        emit(
          op,
          op.ts,
          b.status === 'healthy' ? 'healthy' : 'unhealthy',
          node,
          `replica on ${short(node)} ${b.status as string} (release ${b.release as number})${why}`,
        );
        // Unhealthy before it was ever healthy fails the roll-out; a flap after a pass does not (releases.ts).
        if (b.status === 'healthy') healthyOn.add(`${b.release}/${node}`);
        else if (!healthyOn.has(`${b.release}/${node}`)) failedRelease(op, b.release, `unhealthy${why}`);
        break;
      }
      case 'instance.status': {
        const node = op.author;
        const r = replicas.get(node);
        if (b.node !== node || !r) break;
        const state = b.state as string;
        const reason = typeof b.reason === 'string' ? b.reason : undefined;
        const revision = b.revision as number;
        const key = `${state}|${revision}|${reason ?? ''}`;
        if (r.lastReport === key) break;
        const prevRevision = r.lastReport ? Number(r.lastReport.split('|')[1]) : null;
        const prevState = r.lastReport?.split('|')[0];
        r.lastReport = key;
        const at = `on ${short(node)}`;
        const extra = { revision, ...(reason ? { reason } : {}) };
        if (state === 'suspended')
          emit(op, op.ts, 'suspended', node, `replica ${at} suspended to disk${reason ? `: ${reason}` : ''}`, extra);
        else if (state === 'running' && prevState === 'suspended')
          emit(op, op.ts, 'woken', node, `replica ${at} woken by a connection, running again`, extra);
        else if (state === 'running' && prevState === 'running' && prevRevision !== revision)
          emit(op, op.ts, 'revision', node, `replica ${at} now runs revision ${revision}`, extra);
        else if (state === 'running')
          emit(op, op.ts, 'running', node, `replica ${at} running (healthy), revision ${revision}`, extra);
        else if (state === 'starting') emit(op, op.ts, 'booting', node, `replica ${at} booting`, extra);
        else if (state === 'failed')
          emit(op, op.ts, 'failed', node, `replica ${at} failed: ${reason ?? 'no reason given'}`, extra);
        else if (state === 'stopped')
          emit(op, op.ts, 'replica-stopped', node, `replica ${at} stopped${reason ? `: ${reason}` : ''}`, extra);
        else if (state === 'deleted')
          emit(op, op.ts, 'replica-removed', node, `replica ${at} removed${reason ? `: ${reason}` : ''}`, extra);
        else emit(op, op.ts, 'pending', node, `replica ${at} pending${reason ? `: ${reason}` : ''}`, extra);
        if (state === 'failed') failedRelease(op, b.release, reason ?? 'failed');
        if (state === 'failed' && !r.lost) r.lost = `failed: ${reason ?? 'no reason given'}`;
        else if (state === 'deleted') {
          r.lost = 'removed';
          r.settled = true;
        } else if ((state === 'running' || state === 'starting' || state === 'suspended') && !removed.has(node)) {
          r.lost = null;
          r.settled = false;
        }
        break;
      }
      case 'node.remove': {
        const node = b.node as string;
        if (removed.has(node)) break;
        removed.add(node);
        const r = replicas.get(node);
        if (r && !r.lost) r.lost = 'node removed from the network';
        emit(
          op,
          op.ts,
          'node-removed',
          node,
          `node ${short(node)} removed from the network by ${addressOf(op.author)}`,
        );
        break;
      }
      default:
        break;
    }
  }
  // A replica's node silent until now (not one removed on purpose or already replaced).
  for (const [node, r] of deleted ? [] : replicas) {
    const seen = opts.lastSeen?.[node];
    if (r.settled || removed.has(node) || seen === undefined || seen === null) continue;
    if (opts.now - seen > timeout)
      emit(null, seen + timeout, 'node-lost', node, `node ${short(node)} silent since ${new Date(seen).toISOString()}`);
  }
  out.sort((a, b) => a.at - b.at);
  return opts.since === undefined ? out : out.filter((e) => e.at >= opts.since!);
}

/** `10m`, `2h`, `30s`, `1d` → milliseconds; or an ISO time → epoch ms (relative to `now`). Null if neither. */
export function parseSince(text: string, now: number): number | null {
  const m = /^(\d{1,9})(s|m|h|d)$/.exec(text.trim());
  if (m) return now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's'];
  if (/^\d{4}-\d\d-\d\d/.test(text)) {
    const t = Date.parse(text);
    return Number.isNaN(t) ? null : t;
  }
  if (/^\d{10,16}$/.test(text)) return Number(text);
  return null;
}
