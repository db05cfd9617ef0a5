import type { KeyPair } from '@formation/identity';
import { createOp, type Op, type OpKind } from '@formation/state';

/**
 * What an attacker with nothing but keys and HTTP access to a node's state API (3004) can send, and
 * a tally of what the network did with it. Every attack is either refused at the door (an HTTP 4xx
 * with a coded error) or accepted into the log and then shown to change nothing that matters; the
 * suite records which, and `summary()` prints `N attacks tried, N refused`.
 */
export interface AttackRecord {
  name: string;
  refused: boolean;
  how: string;
}

export interface PostResult {
  status: number;
  body: { status?: string; hash?: string; error?: { code: string; message: string } } & Record<string, unknown>;
}

export class Attacker {
  readonly records: AttackRecord[] = [];

  /** POST one op to a state API as-is (no request signature: the op's own signature is its authority). */
  async post(stateUrl: string, op: unknown, path = '/ops'): Promise<PostResult> {
    const r = await fetch(`${stateUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(op),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let body: PostResult['body'] = {};
    try {
      body = JSON.parse(text) as PostResult['body'];
    } catch {
      body = { raw: text };
    }
    return { status: r.status, body };
  }

  /** The current heads of a node (what an honest author would cite). */
  async heads(stateUrl: string): Promise<string[]> {
    const r = await fetch(`${stateUrl}/heads`, { signal: AbortSignal.timeout(10_000) });
    return ((await r.json()) as { heads: string[] }).heads;
  }

  /** Sign an op with the attacker's key, citing the node's heads plus `extraDeps`. */
  async op(
    stateUrl: string,
    key: KeyPair,
    kind: OpKind,
    body: Record<string, unknown>,
    extraDeps: string[] = [],
    ts = Date.now(),
  ): Promise<Op> {
    const deps = [...new Set([...(await this.heads(stateUrl)), ...extraDeps])].sort();
    return createOp(key, kind, body, deps, ts);
  }

  /** Record an attack's outcome: `refused` must be decided by the caller from what the network did. */
  record(name: string, refused: boolean, how: string): void {
    this.records.push({ name, refused, how });
  }

  summary(): string {
    const refused = this.records.filter((r) => r.refused).length;
    return `${this.records.length} attacks tried, ${refused} refused`;
  }
}

/** Did the API refuse this op (4xx with an error body) rather than store it? */
export function refusedAtApi(r: PostResult): boolean {
  return r.status >= 400 && r.status < 500 && !!r.body.error?.code;
}
