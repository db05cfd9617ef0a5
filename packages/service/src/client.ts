import { type KeyPair, signRequest } from '@formation/identity';
import { FormError, formErrorFromBody } from '@formation/interface';
import { nodeFetch, pinNodeKey, pinnedNodeKey, probeNodeKey } from './transport.ts';

/** Identities learned from `GET /identity`, per base URL (a server may restart with another: see `request`). */
const learned = new Map<string, string>();

/**
 * A small JSON client for Formation APIs: signs requests when given a key, turns error bodies back
 * into FormErrors, and says "is the node running?" when nothing listens.
 *
 * Signed requests name their audience, the server they are for: `audience` when given (e.g. a peer
 * node's public key from state), else what the server answers on `GET /identity` (asked once per base
 * URL; asked again, and the request re-signed once, when the server says the request was for another).
 *
 * Over `https://` the audience is also the node the connection must reach (`nodeFetch`): the given
 * `audience`, else the key pinned for that origin (`pinNodeKey`), else the key the server's certificate
 * is bound to on first contact (then pinned for this process). `GET /identity` is never trusted there.
 */
export class ApiClient {
  readonly baseUrl: string;
  private readonly key: KeyPair | undefined;
  private readonly timeoutMs: number;
  private readonly fixedAudience: string | undefined;
  /** An https:// base: every connection must reach the expected node (see `nodeFetch`). */
  private readonly tls: boolean;

  constructor(baseUrl: string, key?: KeyPair, timeoutMs = 30_000, audience?: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.tls = this.baseUrl.startsWith('https:');
    this.key = key;
    this.timeoutMs = timeoutMs;
    this.fixedAudience = audience;
  }

  /** The identity this client signs for: the given audience, else the server's `GET /identity`. */
  async audience(refresh = false): Promise<string> {
    if (this.fixedAudience) return this.fixedAudience;
    if (this.tls) {
      const pinned = pinnedNodeKey(this.baseUrl);
      if (pinned) return pinned;
      let nodeKey: string;
      try {
        ({ nodeKey } = await probeNodeKey(this.baseUrl, { timeoutMs: Math.min(this.timeoutMs, 10_000) }));
      } catch (err) {
        throw this.networkError(err, '', this.timeoutMs);
      }
      pinNodeKey(this.baseUrl, nodeKey);
      return nodeKey;
    }
    const cached = learned.get(this.baseUrl);
    if (cached && !refresh) return cached;
    let identity: unknown;
    try {
      ({ identity } = await this.request<{ identity: string }>('GET', '/identity', undefined, { sign: false }));
    } catch (err) {
      if ((err as FormError).code !== 'NOT_FOUND') throw err;
    }
    if (typeof identity !== 'string' || identity === '') {
      throw new FormError(
        'UNAVAILABLE',
        `Cannot sign a request for ${this.baseUrl}: it does not say which node it is (GET /identity)`,
        { hint: 'It runs an older Formation than this client (or is not a Formation API): update the node.' },
      );
    }
    learned.set(this.baseUrl, identity);
    return identity;
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { sign?: boolean; timeoutMs?: number } = {},
  ): Promise<T> {
    try {
      return await this.send<T>(method, path, body, opts, false);
    } catch (err) {
      // Signed for an identity this server no longer has (it restarted, or another one took the port):
      // refused before anything ran, so learning who it is and signing again is safe.
      if ((err as FormError).code !== 'AUTH_WRONG_AUDIENCE' || this.fixedAudience || this.tls) throw err;
      return await this.send<T>(method, path, body, opts, true);
    }
  }

  private async send<T>(
    method: string,
    path: string,
    body: unknown,
    opts: { sign?: boolean; timeoutMs?: number },
    refreshAudience: boolean,
  ): Promise<T> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    // GETs too when we hold a key: some reads are the signer's alone (VM lists, consoles, artifacts).
    const mustSign = opts.sign ?? (method !== 'GET' || this.key !== undefined);
    if (mustSign) {
      if (!this.key)
        throw new FormError('KEY_NOT_FOUND', `Cannot call ${method} ${path}: no key to sign with`, {
          hint: 'Run `form kit init`.',
        });
      const audience = await this.audience(refreshAudience);
      Object.assign(headers, signRequest(this.key, { method, path, body: text, audience }));
    }
    let res: Response;
    try {
      res = await this.fetch(path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: text }),
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs),
      });
    } catch (err) {
      throw this.networkError(err, path, opts.timeoutMs ?? this.timeoutMs);
    }
    const raw = await res.text();
    let parsed: unknown;
    try {
      parsed = raw === '' ? undefined : JSON.parse(raw);
    } catch {
      parsed = raw;
    }
    if (!res.ok) throw formErrorFromBody(parsed, res.status);
    return parsed as T;
  }

  /**
   * A raw request to this API (streams, uploads) over the same transport as `request`: over https only
   * to the expected node. The expected key is settled first, so a first contact pins it.
   */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    if (!this.tls) return fetch(this.baseUrl + path, init);
    return nodeFetch(this.baseUrl + path, init, { nodeKey: await this.audience() });
  }

  /** What a failed connection means for the caller: nothing listening, no answer, or a refused certificate (as is). */
  private networkError(err: unknown, path: string, timeoutMs: number): FormError {
    if (err instanceof FormError) return err; // a refused certificate says why itself
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'ECONNREFUSED') {
      return new FormError('CLI_NO_NODE', `Cannot reach ${this.baseUrl}: nothing is listening there`, {
        hint: 'Start a local node with `form node up`, or point at one with --node <url> / FORM_NODE.',
      });
    }
    if ((err as Error).name === 'TimeoutError') {
      return new FormError('TIMEOUT', `Cannot reach ${this.baseUrl}${path}: no answer within ${timeoutMs / 1000} s`);
    }
    return new FormError('UNAVAILABLE', `Cannot reach ${this.baseUrl}: ${(err as Error).message}`);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body ?? {});
  }
  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }
}
