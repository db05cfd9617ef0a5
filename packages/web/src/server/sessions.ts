import { randomBytes } from 'node:crypto';
import type { Address } from '@formation/interface';

/** A browser session: an httpOnly cookie bound to one developer address. */
export interface Session {
  address: Address;
  expiresAt: number;
}

/**
 * One-time login tokens (minted for a developer who proved their key to the server) and the sessions
 * they turn into. Tokens live `tokenTtlMs` and work once; sessions live `sessionTtlMs`. Both are kept
 * in memory only: restarting the server signs everyone out.
 */
export class SessionStore {
  private readonly tokens = new Map<string, Session>();
  private readonly sessions = new Map<string, Session>();
  private readonly tokenTtlMs: number;
  private readonly sessionTtlMs: number;

  constructor(opts: { tokenTtlMs?: number; sessionTtlMs?: number } = {}) {
    this.tokenTtlMs = opts.tokenTtlMs ?? 5 * 60_000;
    this.sessionTtlMs = opts.sessionTtlMs ?? 12 * 3600_000;
  }

  /** A fresh one-time login token for `address`. */
  mintToken(address: Address, now = Date.now()): { token: string; expiresAt: number } {
    this.sweep(now);
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + this.tokenTtlMs;
    this.tokens.set(token, { address, expiresAt });
    return { token, expiresAt };
  }

  /** Trade a login token for a session id; undefined when the token is unknown, used or expired. */
  redeem(token: string, now = Date.now()): { id: string; session: Session } | undefined {
    const t = this.tokens.get(token);
    this.tokens.delete(token);
    if (!t || t.expiresAt <= now) return undefined;
    const id = randomBytes(32).toString('base64url');
    const session = { address: t.address, expiresAt: now + this.sessionTtlMs };
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
