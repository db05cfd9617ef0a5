import { type Address, FormError } from '@formation/interface';
import { addressOf, type KeyPair, sign, verify } from './keys.ts';

/**
 * A delegation: the owner's signed statement that `delegate` (another secp256k1 key) may manage the
 * owner's Formpacks and instances from `issuedAt` until `expiresAt` (at most `MAX_DELEGATION_MS` apart). `form web login` signs one for the dashboard's
 * session key, so the dashboard can ship, stop, start, delete and commit for the developer without
 * ever holding the developer key. Ops and signed requests made by the delegate carry it; the state
 * and the APIs treat them as the owner's, within the scope below and only before the expiry.
 *
 * Signed bytes (UTF-8, `\n`-joined): `FORM-DELEGATION-V2`, scope, owner, delegate, issuedAt, expiresAt (ms).
 * The lifetime is part of what the owner signs, so every verifier enforces the same maximum: a leaked
 * delegate key is worth at most `MAX_DELEGATION_MS`, whatever expiry was asked for. V1 delegations (no
 * `issuedAt`) are refused. The state can also revoke one early (`delegation.revoke`, @formation/state).
 */
export interface Delegation {
  /** Compressed public key of the developer who delegates. */
  owner: string;
  /** Compressed public key allowed to act for the owner. */
  delegate: string;
  /** What the delegate may do: `manage` = Formpacks and instances (build, publish, ship, start, stop, delete, commit). */
  scope: 'manage';
  /** Milliseconds since the epoch when the owner signed it: nothing dated earlier counts. */
  issuedAt: number;
  /** Milliseconds since the epoch after which nothing signed by the delegate counts. */
  expiresAt: number;
  /** The owner's compact signature over the bytes above, hex. */
  sig: string;
}

/** Longest a delegation may live: a stolen dashboard key is worth at most this long. */
export const MAX_DELEGATION_MS = 7 * 24 * 3600_000;

/** How far before `issuedAt` a use may be dated (the owner's and the verifier's clocks differ a little). */
export const DELEGATION_CLOCK_SKEW_MS = 5 * 60_000;

/** Header carrying a delegation (base64url of its JSON) on a signed request made by the delegate. */
export const DELEGATION_HEADER = 'x-form-delegation';

export function delegationBytes(d: Omit<Delegation, 'sig'>): string {
  return ['FORM-DELEGATION-V2', d.scope, d.owner, d.delegate, String(d.issuedAt), String(d.expiresAt)].join('\n');
}

/**
 * The owner signs that `delegate` may manage for it from `issuedAt` (default now) until `expiresAt`.
 * Verifiers refuse it when `expiresAt - issuedAt > MAX_DELEGATION_MS`.
 */
export function createDelegation(
  owner: KeyPair,
  delegate: string,
  expiresAt: number,
  issuedAt: number = Date.now(),
): Delegation {
  const d = { owner: owner.publicKey, delegate, scope: 'manage' as const, issuedAt, expiresAt };
  return { ...d, sig: sign(owner.privateKey, delegationBytes(d)) };
}

const PUBKEY = /^0[23][0-9a-f]{64}$/;

/**
 * Why `d` does not let `delegate` act at time `at` (ms), or null when it does. Pure: the same inputs
 * give the same verdict everywhere (state replicas depend on that).
 */
export function delegationProblem(d: unknown, delegate: string, at: number): string | null {
  if (typeof d !== 'object' || d === null) return 'the delegation is not an object';
  const x = d as Record<string, unknown>;
  const keys = Object.keys(x).sort().join(',');
  if (keys === 'delegate,expiresAt,owner,scope,sig') {
    return 'the delegation has no issuedAt (an old, unbounded format): sign in again with `form web login`';
  }
  if (keys !== 'delegate,expiresAt,issuedAt,owner,scope,sig') {
    return 'the delegation must have exactly owner, delegate, scope, issuedAt, expiresAt and sig';
  }
  if (typeof x.owner !== 'string' || !PUBKEY.test(x.owner)) return 'delegation owner is not a compressed public key';
  if (typeof x.delegate !== 'string' || !PUBKEY.test(x.delegate)) {
    return 'delegation delegate is not a compressed public key';
  }
  if (x.scope !== 'manage') return `delegation scope ${String(x.scope)} is unknown (only "manage")`;
  if (typeof x.expiresAt !== 'number' || !Number.isSafeInteger(x.expiresAt) || x.expiresAt < 0) {
    return 'delegation expiresAt is not a time in milliseconds';
  }
  if (typeof x.issuedAt !== 'number' || !Number.isSafeInteger(x.issuedAt) || x.issuedAt < 0) {
    return 'delegation issuedAt is not a time in milliseconds';
  }
  if (typeof x.sig !== 'string') return 'delegation sig is missing';
  if (x.delegate !== delegate) return `the delegation is for key ${x.delegate.slice(0, 12)}…, not the signer`;
  if (x.owner === delegate) return 'a key cannot delegate to itself';
  if (!verify(x.owner, delegationBytes(x as unknown as Delegation), x.sig)) {
    return "the delegation's signature does not verify for its owner";
  }
  if (x.expiresAt - x.issuedAt > MAX_DELEGATION_MS) {
    return `the delegation lasts longer than ${MAX_DELEGATION_MS / 86_400_000} days (the maximum)`;
  }
  if (at > x.expiresAt) return `the delegation expired at ${new Date(x.expiresAt).toISOString()}`;
  if (at < x.issuedAt - DELEGATION_CLOCK_SKEW_MS) {
    return `the use is dated before it was issued (${new Date(x.issuedAt).toISOString()})`;
  }
  return null;
}

/** A key that acts for `delegation.owner`: signs as itself, carries the delegation, reports the owner's address. */
export interface DelegatedKey extends KeyPair {
  delegation: Delegation;
}

/** Pair a delegate's key with its delegation. `address` becomes the owner's (the account it acts for). */
export function delegatedKey(delegate: KeyPair, delegation: Delegation): DelegatedKey {
  if (delegation.delegate !== delegate.publicKey) {
    throw new FormError('AUTH_FORBIDDEN', 'Cannot use this delegation: it names another key');
  }
  return { ...delegate, address: addressOf(delegation.owner) as Address, delegation };
}

/** The public key a key acts for: the delegation's owner, or its own. */
export function actingPublicKey(key: KeyPair): string {
  return (key as Partial<DelegatedKey>).delegation?.owner ?? key.publicKey;
}

export function encodeDelegationHeader(d: Delegation): string {
  return Buffer.from(JSON.stringify(d)).toString('base64url');
}

export function decodeDelegationHeader(v: string): unknown {
  try {
    return JSON.parse(Buffer.from(v, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}
