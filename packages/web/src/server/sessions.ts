import { randomBytes } from 'node:crypto';
import {
  type DelegatedKey,
  type Delegation,
  delegatedKey,
  delegationProblem,
  generateKeyPair,
  type KeyPair,
  MAX_DELEGATION_MS,
} from '@formation/identity';
import { type Address, FormError } from '@formation/interface';

/** A browser session: an httpOnly cookie bound to one developer address. */
export interface Session {
  address: Address;
  expiresAt: number;
  /**
   * The session key acting for the developer under their delegation, when `form web login` granted
   * one: with it the dashboard ships, starts, stops, deletes and commits. Absent = read-only session.
   */
  key?: DelegatedKey;
}

interface PendingLogin {
  address: Address;
  publicKey: string;
  expiresAt: number;
  /** Made for this login; used only once the developer signs a delegation to it. */
  sessionKey: KeyPair;
  key?: DelegatedKey;
}

/**
 * One-time login tokens (minted for a developer who proved their key to the server) and the sessions
 * they turn into. Each login gets a fresh session key; the developer may delegate to it (so the
 * dashboard can act for them until the delegation expires) or not (read-only). Tokens live `tokenTtlMs`
 * and work once; sessions live `sessionTtlMs`, never past their delegation. Everything is in memory
 * only: restarting the server signs everyone out and forgets every session key.
 */
export class SessionStore {
  private readonly tokens = new Map<string, PendingLogin>();
  private readonly sessions = new Map<string, Session>();
  private readonly tokenTtlMs: number;
  readonly sessionTtlMs: number;

  constructor(opts: { tokenTtlMs?: number | undefined; sessionTtlMs?: number | undefined } = {}) {
    this.tokenTtlMs = opts.tokenTtlMs ?? 5 * 60_000;
    this.sessionTtlMs = Math.min(opts.sessionTtlMs ?? 12 * 3600_000, MAX_DELEGATION_MS);
  }

  /** A fresh one-time login token for the developer `publicKey`, and the session key it may delegate to. */
  mintToken(
    address: Address,
    publicKey: string,
    now = Date.now(),
  ): { token: string; expiresAt: number; delegate: string; sessionExpiresAt: number } {
    this.sweep(now);
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + this.tokenTtlMs;
    const sessionKey = generateKeyPair();
    this.tokens.set(token, { address, publicKey, expiresAt, sessionKey });
    return { token, expiresAt, delegate: sessionKey.publicKey, sessionExpiresAt: now + this.sessionTtlMs };
  }

  /**
   * Attach the developer's delegation to a not-yet-used token. Refused when the token is unknown or
   * someone else's, or the delegation is not the developer's, not for this token's session key, expired
   * or longer than allowed.
   */
  delegate(token: string, publicKey: string, d: Delegation, now = Date.now()): { expiresAt: number } {
    const t = this.tokens.get(token);
    if (!t || t.expiresAt <= now || t.publicKey !== publicKey) {
      throw new FormError('AUTH_EXPIRED', 'Cannot attach the delegation: no such login link for your key', {
        hint: 'Run `form web login` again.',
      });
    }
    const problem =
      d.owner !== publicKey ? 'it is not signed by you' : delegationProblem(d, t.sessionKey.publicKey, now);
    if (problem) throw new FormError('AUTH_FORBIDDEN', `Cannot attach the delegation: ${problem}`);
    if (d.expiresAt > now + MAX_DELEGATION_MS) {
      throw new FormError('BAD_REQUEST', 'Cannot attach the delegation: it lasts longer than 7 days', {
        hint: 'Sign in for a shorter time.',
      });
    }
    t.key = delegatedKey(t.sessionKey, d);
    return { expiresAt: d.expiresAt };
  }

  /** Trade a login token for a session id; undefined when the token is unknown, used or expired. */
  redeem(token: string, now = Date.now()): { id: string; session: Session } | undefined {
    const t = this.tokens.get(token);
    this.tokens.delete(token);
    if (!t || t.expiresAt <= now) return undefined;
    const id = randomBytes(32).toString('base64url');
    const expiresAt = Math.min(now + this.sessionTtlMs, t.key?.delegation.expiresAt ?? Number.POSITIVE_INFINITY);
    const session: Session = { address: t.address, expiresAt, ...(t.key ? { key: t.key } : {}) };
    this.sessions.set(id, session);
    return { id, session };
  }

  get(id: string | undefined, now = Date.now()): Session | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= now) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  /** Sign out: the session and its session key are forgotten at once. */
  end(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private sweep(now: number): void {
    for (const [k, v] of this.tokens) if (v.expiresAt <= now) this.tokens.delete(k);
    for (const [k, v] of this.sessions) if (v.expiresAt <= now) this.sessions.delete(k);
  }
}

/** The value of cookie `name` in a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}
