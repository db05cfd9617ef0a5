import { type KeyPair, signRequest } from '@formation/identity';
import { FormError, formErrorFromBody } from '@formation/interface';

/**
 * A small JSON client for Formation APIs: signs requests when given a key, turns error bodies back
 * into FormErrors, and says "is the node running?" when nothing listens.
 */
export class ApiClient {
  readonly baseUrl: string;
  private readonly key: KeyPair | undefined;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, key?: KeyPair, timeoutMs = 30_000) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.key = key;
    this.timeoutMs = timeoutMs;
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { sign?: boolean; timeoutMs?: number } = {},
  ): Promise<T> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const mustSign = opts.sign ?? method !== 'GET';
    if (mustSign) {
      if (!this.key)
        throw new FormError('KEY_NOT_FOUND', `Cannot call ${method} ${path}: no key to sign with`, {
          hint: 'Run `form kit init`.',
        });
      Object.assign(headers, signRequest(this.key, { method, path, body: text }));
    }
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: text }),
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'ECONNREFUSED') {
        throw new FormError('CLI_NO_NODE', `Cannot reach ${this.baseUrl}: nothing is listening there`, {
          hint: 'Start a local node with `form node up`, or point at one with --node <url> / FORM_NODE.',
        });
      }
      if ((err as Error).name === 'TimeoutError') {
        throw new FormError(
          'TIMEOUT',
          `Cannot reach ${this.baseUrl}${path}: no answer within ${(opts.timeoutMs ?? this.timeoutMs) / 1000} s`,
        );
      }
      throw new FormError('UNAVAILABLE', `Cannot reach ${this.baseUrl}: ${(err as Error).message}`);
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
