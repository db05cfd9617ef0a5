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
 * Signed HTTP requests. The signer sends five headers; the server rebuilds the canonical string and
 * verifies it. The audience binds the request to the one node (or service) it was made for, the body
 * hash binds the payload, the timestamp bounds replay to a window, and the nonce (remembered by the
 * server until the timestamp leaves that window) stops replay inside it.
 *
 * Canonical string (UTF-8, `\n`-joined):
 *   `FORM-SIG-V2`, audience, METHOD (upper case), path with query, timestamp (ms), nonce, sha256hex(body)
 *
 * The audience is the receiving node's public key (every API of a node answers `GET /identity` with
 * it); a service that runs without a node key has its own service identity there instead.
 */
export const SIG_HEADERS = {
  publicKey: 'x-form-public-key',
  audience: 'x-form-audience',
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

/** A request plus who it is for: the receiving node's public key (or service identity). */
export interface RequestForAudience extends RequestToSign {
  audience: string;
}

const AUDIENCE_RE = /^[\x21-\x7e]{1,200}$/;

export function canonicalRequest(req: RequestToSign, audience: string, timestamp: string, nonce: string): string {
  const bodyHash = req.bodySha256 ?? sha256Hex(req.body ?? '');
  return ['FORM-SIG-V2', audience, req.method.toUpperCase(), req.path, timestamp, nonce, bodyHash].join('\n');
}

/** A public key or identity cut short for messages: `02ab12cd34…`. */
export function shortIdentity(id: string): string {
  return id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

/**
 * Headers that authenticate `req` as coming from `key`, for the node or service named by `req.audience`
 * (learn it from that node's `GET /identity`).
 */
export function signRequest(key: KeyPair, req: RequestForAudience, now: number = Date.now()): Record<string, string> {
  if (typeof req.audience !== 'string' || !AUDIENCE_RE.test(req.audience)) {
    throw new FormError('BAD_REQUEST', `Cannot sign ${req.method} ${req.path}: it names no audience`, {
      hint: "Pass the receiving node's public key as `audience` (its APIs answer GET /identity with it).",
    });
  }
  const timestamp = String(now);
  const nonce = randomHex(16);
  const delegation = (key as Partial<DelegatedKey>).delegation;
  return {
    [SIG_HEADERS.publicKey]: key.publicKey,
    [SIG_HEADERS.audience]: req.audience,
    [SIG_HEADERS.timestamp]: timestamp,
    [SIG_HEADERS.nonce]: nonce,
    [SIG_HEADERS.signature]: sign(key.privateKey, canonicalRequest(req, req.audience, timestamp, nonce)),
    ...(delegation ? { [DELEGATION_HEADER]: encodeDelegationHeader(delegation) } : {}),
  };
}

export interface NonceCacheOptions {
  /** Most nonces remembered at once; when full of nonces still inside the window, new requests are refused. */
  max?: number;
  /** Most nonces remembered for one signer (so one key cannot fill the cache for everyone). */
  perSigner?: number;
  /**
   * Refuse requests stamped before this time (ms; default: when the cache was made). A restarted node
   * has forgotten the nonces its previous process saw, so it must not accept what that one might have.
   */
  since?: number;
}

/** What `NonceCache.remember` decided. */
export type NonceVerdict = 'new' | 'replay' | 'full' | 'signer-full' | 'before-start';

/**
 * Remembers nonces until the request's timestamp leaves the skew window, so a captured request cannot
 * be replayed. It never forgets a nonce that could still be accepted: when full (in total, or for one
 * signer) it refuses new requests instead (a flood costs availability for a while, never replay safety).
 */
export class NonceCache {
  /** `signer nonce` -> when it may be forgotten (request timestamp + skew window). */
  private readonly seen = new Map<string, { expires: number; signer: string }>();
  private readonly bySigner = new Map<string, number>();
  readonly max: number;
  readonly perSigner: number;
  readonly since: number;
  private nextSweep = 0;

  constructor(opts: NonceCacheOptions = {}) {
    this.max = opts.max ?? 100_000;
    this.perSigner = opts.perSigner ?? Math.max(1, Math.floor(this.max / 10));
    this.since = opts.since ?? Date.now();
  }

  get size(): number {
    return this.seen.size;
  }

  /**
   * Record `nonce` of a request by `signer` stamped `timestamp`, accepted while within `windowMs` of the
   * clock: it is kept until `timestamp + windowMs`. `replay` when already seen; `full` / `signer-full`
   * when it cannot be remembered (the request must then be refused).
   */
  remember(signer: string, nonce: string, timestamp: number, windowMs: number, now: number = Date.now()): NonceVerdict {
    if (timestamp < this.since) return 'before-start';
    const id = `${signer} ${nonce}`;
    const known = this.seen.get(id);
    if (known && known.expires >= now) return 'replay';
    // Sweep expired entries when full (in total or for this signer), or once a minute; at most every
    // 250 ms, so a flood of refused requests does not turn each one into a full scan.
    const full = this.seen.size >= this.max || (this.bySigner.get(signer) ?? 0) >= this.perSigner;
    if ((full && now >= this.nextSweep) || now >= this.nextSweep + 60_000) this.sweep(now);
    if (known) this.forget(id, known.signer);
    if (this.seen.size >= this.max) return 'full';
    if ((this.bySigner.get(signer) ?? 0) >= this.perSigner) return 'signer-full';
    this.seen.set(id, { expires: timestamp + windowMs, signer });
    this.bySigner.set(signer, (this.bySigner.get(signer) ?? 0) + 1);
    return 'new';
  }

  private forget(id: string, signer: string): void {
    if (!this.seen.delete(id)) return;
    const n = (this.bySigner.get(signer) ?? 1) - 1;
    if (n <= 0) this.bySigner.delete(signer);
    else this.bySigner.set(signer, n);
  }

  private sweep(now: number): void {
    this.nextSweep = now + 250;
    for (const [id, e] of this.seen) if (e.expires < now) this.forget(id, e.signer);
  }
}

export interface VerifyOptions {
  /**
   * Who this verifier is: the node's public key (or the service identity) that requests must name as
   * their audience. A request signed for anyone else is refused with AUTH_WRONG_AUDIENCE.
   */
  audience: string;
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
export function verifyRequest(headers: HeaderBag, req: RequestToSign, opts: VerifyOptions): Signer {
  const publicKey = header(headers, SIG_HEADERS.publicKey);
  const audience = header(headers, SIG_HEADERS.audience);
  const timestamp = header(headers, SIG_HEADERS.timestamp);
  const nonce = header(headers, SIG_HEADERS.nonce);
  const signature = header(headers, SIG_HEADERS.signature);
  if (!publicKey || !timestamp || !nonce || !signature) {
    throw new FormError('AUTH_MISSING', 'Cannot accept request: it is not signed', {
      hint: 'Mutating calls must carry x-form-public-key, x-form-audience, x-form-timestamp, x-form-nonce and x-form-signature; the form CLI adds them (run `form kit init` first).',
    });
  }
  if (!audience) {
    throw new FormError(
      'AUTH_MISSING',
      'Cannot accept request: it does not name the node it is for (x-form-audience)',
      {
        hint: `Sign it for this node (${shortIdentity(opts.audience)}, from GET /identity); a form CLI older than this node does not, so update it.`,
      },
    );
  }
  if (audience !== opts.audience) {
    throw new FormError(
      'AUTH_WRONG_AUDIENCE',
      `Cannot accept this request: it was signed for node ${shortIdentity(audience)}, this is node ${shortIdentity(opts.audience)}`,
      {
        hint: 'Re-sign it for this node: its APIs answer GET /identity with the identity to sign for (the form CLI does this itself).',
        details: { audience, expected: opts.audience },
      },
    );
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
  if (!verify(publicKey, canonicalRequest(req, audience, timestamp, nonce), signature)) {
    throw new FormError('AUTH_BAD_SIGNATURE', 'Cannot accept request: the signature does not match the request', {
      hint: 'The request was altered in transit or signed with another key.',
    });
  }
  const verdict = opts.nonces?.remember(publicKey, nonce, ts, skew, now) ?? 'new';
  if (verdict === 'replay') {
    throw new FormError('AUTH_REPLAYED', 'Cannot accept request: this signed request was already used (replay)');
  }
  if (verdict === 'before-start') {
    throw new FormError(
      'AUTH_EXPIRED',
      `Cannot accept request: it was signed before this node started (${new Date(opts.nonces?.since ?? 0).toISOString()}), so it may have been used already`,
      { hint: 'Sign it again; if this repeats, the clock of the machine that signs is behind, so check it.' },
    );
  }
  if (verdict === 'full') {
    throw new FormError(
      'UNAVAILABLE',
      `Cannot accept request: this node's replay guard is full (${opts.nonces?.max} signed requests from the last ${(2 * skew) / 60_000} min)`,
      { hint: `Retry in a minute: entries are freed as their timestamps age past ${skew / 1000} s.` },
    );
  }
  if (verdict === 'signer-full') {
    throw new FormError(
      'RATE_LIMITED',
      `Cannot accept request: key ${shortIdentity(publicKey)} made more than ${opts.nonces?.perSigner} signed requests within ${skew / 1000} s`,
      { hint: 'Slow down and retry in a minute.' },
    );
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
