import { type Address, FormError } from '@formation/interface';
import {
  DELEGATION_HEADER,
  type DelegatedKey,
  decodeDelegationHeader,
  delegationProblem,
  encodeDelegationHeader,
} from './delegation.ts';
import { addressOf, type KeyPair, randomHex, sha256Hex, sign, verify } from './keys.ts';

/**
 * Signed HTTP requests. The signer sends four headers; the server rebuilds the canonical string and
 * verifies it. The body hash binds the payload, the timestamp bounds replay to a window, and the nonce
 * (remembered by the server for that window) stops replay inside it.
 *
 * Canonical string (UTF-8, `\n`-joined):
 *   `FORM-SIG-V1`, METHOD (upper case), path with query, timestamp (ms), nonce, sha256hex(body)
 */
export const SIG_HEADERS = {
  publicKey: 'x-form-public-key',
  timestamp: 'x-form-timestamp',
  nonce: 'x-form-nonce',
  signature: 'x-form-signature',
} as const;

/** How far a request's timestamp may be from the server clock. */
export const DEFAULT_MAX_SKEW_MS = 5 * 60_000;

export interface RequestToSign {
  method: string;
  /** Path plus query string, e.g. `/vms/abc/start`. */
  path: string;
  body?: Uint8Array | string;
  /** For streamed bodies (uploads): the sha256 hex of the body, checked by the server after reading it. */
  bodySha256?: string;
}

export function canonicalRequest(req: RequestToSign, timestamp: string, nonce: string): string {
  const bodyHash = req.bodySha256 ?? sha256Hex(req.body ?? '');
  return ['FORM-SIG-V1', req.method.toUpperCase(), req.path, timestamp, nonce, bodyHash].join('\n');
}

/** Headers that authenticate `req` as coming from `key`. */
export function signRequest(key: KeyPair, req: RequestToSign, now: number = Date.now()): Record<string, string> {
  const timestamp = String(now);
  const nonce = randomHex(16);
  const delegation = (key as Partial<DelegatedKey>).delegation;
  return {
    [SIG_HEADERS.publicKey]: key.publicKey,
    [SIG_HEADERS.timestamp]: timestamp,
    [SIG_HEADERS.nonce]: nonce,
    [SIG_HEADERS.signature]: sign(key.privateKey, canonicalRequest(req, timestamp, nonce)),
    ...(delegation ? { [DELEGATION_HEADER]: encodeDelegationHeader(delegation) } : {}),
  };
}

/** Remembers nonces seen within the skew window so a captured request cannot be replayed. */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly max: number;

  constructor(ttlMs: number = 2 * DEFAULT_MAX_SKEW_MS, max = 100_000) {
    this.ttlMs = ttlMs;
    this.max = max;
  }

  /** Record `nonce`; false when it was already seen (a replay). */
  remember(nonce: string, now: number = Date.now()): boolean {
    if (this.seen.size >= this.max) this.evict(now);
    if (this.seen.has(nonce)) return false;
    this.seen.set(nonce, now + this.ttlMs);
    return true;
  }

  private evict(now: number): void {
    for (const [n, exp] of this.seen) if (exp <= now) this.seen.delete(n);
    // Still full of live nonces: drop the oldest half rather than grow without bound.
    if (this.seen.size >= this.max) {
      let drop = Math.floor(this.max / 2);
      for (const n of this.seen.keys()) {
        if (drop-- <= 0) break;
        this.seen.delete(n);
      }
    }
  }
}

export interface VerifyOptions {
  now?: number;
  maxSkewMs?: number;
  nonces?: NonceCache;
  /**
   * Accept a request signed by a delegate carrying the owner's delegation (x-form-delegation): the
   * signer is then the owner, with `delegate` set. Off by default: only calls within the delegation's
   * scope (managing Formpacks and instances) turn it on.
   */
  allowDelegation?: boolean;
}

/** The verified signer of a request: the account it acts for. */
export interface Signer {
  publicKey: string;
  address: Address;
  /** Set when a delegate signed for `publicKey` under a delegation: the delegate's public key. */
  delegate?: string;
}

type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Verify a signed request; returns the signer or throws a FormError with an `AUTH_*` code.
 *
 * @example
 * const signer = verifyRequest(req.headers, { method: 'POST', path: '/vms', body: raw });
 */
export function verifyRequest(headers: HeaderBag, req: RequestToSign, opts: VerifyOptions = {}): Signer {
  const publicKey = header(headers, SIG_HEADERS.publicKey);
  const timestamp = header(headers, SIG_HEADERS.timestamp);
  const nonce = header(headers, SIG_HEADERS.nonce);
  const signature = header(headers, SIG_HEADERS.signature);
  if (!publicKey || !timestamp || !nonce || !signature) {
    throw new FormError('AUTH_MISSING', 'Cannot accept request: it is not signed', {
      hint: 'Mutating calls must carry x-form-public-key, x-form-timestamp, x-form-nonce and x-form-signature; the form CLI adds them (run `form kit init` first).',
    });
  }
  const now = opts.now ?? Date.now();
  const ts = Number(timestamp);
  const skew = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (!Number.isFinite(ts) || Math.abs(now - ts) > skew) {
    throw new FormError(
      'AUTH_EXPIRED',
      `Cannot accept request: its timestamp is more than ${skew / 1000} s from the server clock`,
      {
        hint: 'Check the clock of the machine that sent it, then retry.',
      },
    );
  }
  let address: Address;
  try {
    address = addressOf(publicKey);
  } catch {
    throw new FormError('AUTH_BAD_SIGNATURE', 'Cannot accept request: x-form-public-key is not a secp256k1 public key');
  }
  if (!verify(publicKey, canonicalRequest(req, timestamp, nonce), signature)) {
    throw new FormError('AUTH_BAD_SIGNATURE', 'Cannot accept request: the signature does not match the request', {
      hint: 'The request was altered in transit or signed with another key.',
    });
  }
  if (opts.nonces && !opts.nonces.remember(nonce, now)) {
    throw new FormError('AUTH_REPLAYED', 'Cannot accept request: this signed request was already used (replay)');
  }
  const carried = header(headers, DELEGATION_HEADER);
  if (carried === undefined) return { publicKey, address };
  if (!opts.allowDelegation) {
    throw new FormError('AUTH_FORBIDDEN', 'Cannot accept request: this call cannot be made by a delegated key', {
      hint: 'Dashboard sessions may only manage Formpacks and instances; use the form CLI with your own key for this.',
    });
  }
  const d = decodeDelegationHeader(carried);
  const problem = delegationProblem(d, publicKey, now);
  if (problem) {
    throw new FormError('AUTH_FORBIDDEN', `Cannot accept delegated request: ${problem}`, {
      hint: 'Sign in to the dashboard again with `form web login`.',
    });
  }
  const owner = (d as { owner: string }).owner;
  return { publicKey: owner, address: addressOf(owner), delegate: publicKey };
}
