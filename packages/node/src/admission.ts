import type { KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { StateStore, Views } from '@formation/state';

/**
 * Node admission as the daemon sees it. A network is its genesis (`network.init`): the first node of a
 * new network writes it, naming itself and the operator's keys as admins, and admits itself. A node
 * that joins follows the genesis its bootstrap node gives it (or the one it was told with `--genesis`)
 * and boots nothing — no VMM, no formnet slice, no claims — until an admin's `node.admit` gives it a
 * slice. Other nodes never count an unadmitted node anyway (the state views leave it out); waiting
 * here only keeps the node from acting on a slice nobody gave it.
 */

export interface GenesisSettings {
  name: string;
  admission: 'admins' | 'open';
  /** Admins besides this node's own key. */
  admins: readonly string[];
}

/**
 * The first node of a new network: write its genesis and admit this node with `range`. Returns the
 * genesis hash, or undefined when there is nothing to start: the store already follows a network, or
 * it holds nodes registered before admission existed (kept as the `legacy-open` policy, logged).
 */
export function startNetwork(store: StateStore, key: KeyPair, s: GenesisSettings, range: string): string | undefined {
  if (store.genesis) return undefined;
  if (store.viewIndex.hasRegisteredNodes()) return undefined;
  const admins = [...new Set([key.publicKey, ...s.admins])];
  const init = store.author(key, 'network.init', { name: s.name, admission: s.admission, admins });
  if (s.admission === 'admins') store.author(key, 'node.admit', { node: key.publicKey, formnetRange: range });
  return init.hash;
}

/** Where a node stands, decided from the network's policy and the admission ops about it. */
export type AdmissionState =
  | { kind: 'admitted'; range: string }
  /** Open network (or one made before admission existed): the node uses the slice it proposes. */
  | { kind: 'open'; range: string }
  /** A join that has not received the network's genesis yet. */
  | { kind: 'no-network' }
  | { kind: 'waiting' }
  | { kind: 'removed' };

export interface AdmissionInput {
  policy: 'admins' | 'open' | 'legacy-open';
  hasGenesis: boolean;
  /** Some node is registered (a network made before admission has nodes but no genesis). */
  hasRegisteredNodes: boolean;
  joining: boolean;
  admission: { admitted: boolean; formnetRange: string | null } | undefined;
  proposed: string;
}

/** Pure: what a starting node may do. */
export function admissionState(i: AdmissionInput): AdmissionState {
  if (!i.hasGenesis) {
    // Joining: until the bootstrap's history arrives we cannot tell a new network from an old one.
    if (i.joining && !i.hasRegisteredNodes) return { kind: 'no-network' };
    return { kind: 'open', range: i.proposed };
  }
  if (i.policy !== 'admins') return { kind: 'open', range: i.proposed };
  if (!i.admission) return { kind: 'waiting' };
  if (!i.admission.admitted) return { kind: 'removed' };
  return i.admission.formnetRange ? { kind: 'admitted', range: i.admission.formnetRange } : { kind: 'waiting' };
}

export interface WaitOptions {
  store: StateStore;
  key: KeyPair;
  joining: boolean;
  proposed: string;
  logger: Logger;
  /** 0 = forever. */
  timeoutMs: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/** The slice this node may use: at once when admitted (or open), else once an admin admits it. */
export async function waitForAdmission(o: WaitOptions): Promise<string> {
  const log = o.logger.child({ component: 'admission' });
  const t0 = Date.now();
  let said = '';
  for (;;) {
    const v = o.store.views();
    const st = admissionState({
      policy: v.network.policy,
      hasGenesis: !!o.store.genesis,
      hasRegisteredNodes: o.store.viewIndex.hasRegisteredNodes(),
      joining: o.joining,
      admission: o.store.viewIndex.admissionOf(o.key.publicKey),
      proposed: o.proposed,
    });
    if (st.kind === 'admitted' || st.kind === 'open') {
      if (said) log.info({ range: st.range, policy: v.network.policy }, 'admitted to the network');
      return st.range;
    }
    if (st.kind !== said) {
      said = st.kind;
      if (st.kind === 'no-network') log.info('waiting for the network genesis from the bootstrap nodes');
      else
        log.warn(
          { node: o.key.publicKey, genesis: o.store.genesis },
          st.kind === 'removed'
            ? `this node was removed from the network; an admin can admit it again: form node admit ${o.key.publicKey}`
            : `waiting for admission: an admin of the network runs \`form node admit ${o.key.publicKey}\``,
        );
    }
    if (o.timeoutMs > 0 && Date.now() - t0 > o.timeoutMs) {
      throw new FormError(
        'TIMEOUT',
        st.kind === 'no-network'
          ? `Cannot join: no network genesis arrived from the bootstrap nodes within ${o.timeoutMs / 1000} s`
          : `Cannot start this node: it was not admitted to the network within ${o.timeoutMs / 1000} s`,
        {
          hint:
            st.kind === 'no-network'
              ? 'Check the --join addresses and that those nodes run.'
              : `Ask an admin of the network to run \`form node admit ${o.key.publicKey}\`, then start again.`,
        },
      );
    }
    if (o.signal?.aborted)
      throw new FormError('UNAVAILABLE', 'Cannot start this node: stopped while waiting for admission');
    await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
  }
}

/**
 * May `signer` (a request's verified signer) fetch Formpack `formpackId` of `owner` (an address) from
 * this node's pack API? Only an admitted node (not a delegate) that claimed a replica of a live
 * instance of that same owner running that Formpack — so a node placed elsewhere, or a stranger who
 * ships an instance naming someone else's Formpack id, gets nothing. Pure.
 */
export function mayFetchFormpack(
  views: Pick<Views, 'nodes' | 'instances'>,
  signer: { publicKey: string; delegate?: string | undefined },
  formpackId: string,
  owner: string,
): boolean {
  if (signer.delegate) return false;
  if (!views.nodes.some((n) => n.id === signer.publicKey)) return false;
  return views.instances.some(
    (i) =>
      !i.deleted &&
      i.formpackId === formpackId &&
      i.ownerAddress === owner &&
      i.replicaSet.some((r) => r.node === signer.publicKey),
  );
}
