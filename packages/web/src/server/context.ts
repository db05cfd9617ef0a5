import type { DelegatedKey } from '@formation/identity';
import { FormError } from '@formation/interface';
import { vmNameFor } from '@formation/scheduler';
import type { Logger } from '@formation/service';
import { httpStateClient, type InstanceView } from '@formation/state';
import type { FastifyRequest } from 'fastify';
import type { Metrics } from './metrics.ts';
import { readCookie, type Session, type SessionStore } from './sessions.ts';
import type { NodeApis, NodeApiUrls, VmSummary } from './upstream.ts';
import { type InstanceContext, instanceContextFrom, ownInstance } from './views.ts';

export const SESSION_COOKIE = 'form_session';

/** What the route plugins share: node API clients, sessions, logger, URLs and options. */
export interface WebContext {
  urls: NodeApiUrls;
  apis: NodeApis;
  sessions: SessionStore;
  log: Logger;
  metrics: Metrics;
  /** Writes ops to the state API (signed by the session key). */
  stateClient: ReturnType<typeof httpStateClient>;
  /** Largest build-context upload from the browser. */
  maxUploadBytes: number;
  /** The built front end (absolute). */
  staticDir: string;
  /** The signed-in session of a request; AUTH_MISSING when there is none. */
  session(req: FastifyRequest): Session;
  /** The session's acting key; refuses read-only sessions and requests from another origin. */
  manager(req: FastifyRequest): { s: Session; key: DelegatedKey };
  /** Instances, nodes, DNS names and this node, read together for the instance views. */
  instanceContext(): Promise<InstanceContext>;
  /**
   * One of `address`'s instances (by id or name; another's is INSTANCE_NOT_FOUND before the VMM is asked)
   * and its replica on this node, if one runs here.
   */
  localReplica(id: string, address: string): Promise<LocalReplica>;
}

/** An instance, the VM name its replicas run under, and this node's VM of it (undefined: none here). */
export interface LocalReplica {
  inst: InstanceView;
  vmName: string;
  vm: VmSummary | undefined;
}

/** The replica's VM on this node, or VM_NOT_FOUND with the route's `message` and `hint`. */
export function vmHere(r: LocalReplica, message: string, hint: string): VmSummary {
  if (!r.vm) throw new FormError('VM_NOT_FOUND', message, { hint });
  return r.vm;
}

export interface WebContextOptions {
  urls: NodeApiUrls;
  apis: NodeApis;
  sessions: SessionStore;
  log: Logger;
  metrics: Metrics;
  maxUploadBytes: number;
  staticDir: string;
}

export function createWebContext(o: WebContextOptions): WebContext {
  const session = (req: FastifyRequest): Session => {
    const s = o.sessions.get(readCookie(req.headers.cookie, SESSION_COOKIE));
    if (!s) {
      throw new FormError('AUTH_MISSING', 'Not signed in', {
        hint: 'Run `form web login` and open the link it prints.',
      });
    }
    return s;
  };
  const manager = (req: FastifyRequest): { s: Session; key: DelegatedKey } => {
    const s = session(req);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host = '';
      try {
        host = new URL(origin).host;
      } catch {}
      if (host !== req.headers.host) {
        throw new FormError('AUTH_FORBIDDEN', `Cannot act for a request from another site (${origin})`);
      }
    }
    if (!s.key) {
      throw new FormError('AUTH_FORBIDDEN', 'This dashboard session is read-only', {
        hint: 'Sign in with `form web login` (without --read-only) to ship, start, stop, delete and commit here.',
      });
    }
    return { s, key: s.key };
  };
  const instanceContext = async (): Promise<InstanceContext> => {
    const [instances, nodes, dns, self] = await Promise.all([
      o.apis.instances(),
      o.apis.nodes(),
      o.apis.dns(),
      o.apis.self().catch(() => null),
    ]);
    return instanceContextFrom(instances, nodes, dns, self);
  };
  const localReplica = async (id: string, address: string): Promise<LocalReplica> => {
    const inst = ownInstance(await o.apis.instances(), id, address);
    const vmName = vmNameFor(inst);
    return { inst, vmName, vm: (await o.apis.vms()).find((v) => v.name === vmName) };
  };
  return { ...o, stateClient: httpStateClient(o.urls.state), session, manager, instanceContext, localReplica };
}

/** How long a node may miss heartbeats and still count for placement (FORM_NODE_TIMEOUT_MS, default 30 s). */
export function nodeTimeoutMs(): number {
  return Number(process.env.FORM_NODE_TIMEOUT_MS) || 30_000;
}
