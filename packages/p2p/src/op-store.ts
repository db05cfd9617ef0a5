/**
 * What p2p needs from the state store. The real implementation is `@formation/state`'s op log; p2p
 * codes only against this interface so it can be tested on loopback with any compliant store.
 * Every method may be sync or async.
 */

/** A state op as it travels: a JSON object whose `hash` is its content address. */
export interface Op {
  hash: string;
}

/** An entry of an apply result: the store may report hashes or whole ops / `{ hash, reason }` records. */
export type OpRef = string | { hash: string; reason?: string; clock?: boolean };

export interface ApplyResult {
  /** Ops newly in the log (a store may also list ones it already held, or report those separately). */
  accepted: readonly OpRef[];
  /** Ops that are invalid (bad signature, bad hash, not allowed): never stored, never forwarded. */
  rejected: readonly OpRef[];
  /** Ops whose parents are missing: kept aside until the parents arrive. */
  pending: readonly OpRef[];
}

type MaybePromise<T> = T | Promise<T>;

export interface OpStore {
  /** Hashes of the ops no other op builds on. */
  heads(): MaybePromise<string[]>;
  /** Ops the holder of `heads` lacks, parents before children, at most `limit`. Unknown heads are ignored. */
  opsSince(heads: string[], limit: number): MaybePromise<Op[]>;
  /** The ops among `hashes` that the store holds. */
  getOps(hashes: string[]): MaybePromise<Op[]>;
  /** Validate and add ops. */
  applyBatch(ops: Op[]): MaybePromise<ApplyResult>;
  /** Called once for every op the store accepts (from any source); may return an unsubscribe function. */
  onAccepted(cb: (op: Op) => void): unknown;
}

/**
 * Whether a rejection depends on this node's clock (an op dated too far ahead): `clock: true`, or the
 * state store's reason text. Such an op may be valid at the peer that relayed it, so the peer is not
 * penalised for it (otherwise an attacker dating ops at the edge of the window could get honest relays
 * graylisted by nodes whose clocks lag).
 */
export function clockDependent(ref: OpRef): boolean {
  if (typeof ref === 'string') return false;
  return ref.clock === true || /in the future|ahead of this node's clock/.test(ref.reason ?? '');
}

/** The hash of an apply-result entry. */
export function refHash(ref: OpRef): string {
  return typeof ref === 'string' ? ref : ref.hash;
}

/** True when `value` looks like an op (a plain object with a string `hash`). */
export function isOp(value: unknown): value is Op {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { hash?: unknown }).hash === 'string'
  );
}
