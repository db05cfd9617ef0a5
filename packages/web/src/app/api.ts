import type {
  ApiErrorBody,
  ConsoleInfo,
  FormpackDetail,
  FormpackInfo,
  InstanceInfo,
  NetworkInfo,
  SessionInfo,
} from '../api-types.ts';

/** An error from the dashboard API, with the same code/message/hint the CLI prints. */
export class ApiError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly status: number;
  constructor(status: number, body: ApiErrorBody['error']) {
    super(body.message);
    this.status = status;
    this.code = body.code;
    this.hint = body.hint;
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const timeout = (err as Error).name === 'TimeoutError';
    throw new ApiError(0, {
      code: timeout ? 'TIMEOUT' : 'UNAVAILABLE',
      message: timeout ? 'The dashboard server did not answer within 15 s' : 'Cannot reach the dashboard server',
      hint: 'Is the node running? Check `form node status`.',
    });
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed as ApiErrorBody | undefined)?.error;
    throw new ApiError(res.status, e ?? { code: 'INTERNAL', message: `HTTP ${res.status}` });
  }
  return parsed as T;
}

/** The typed client of the BFF (paths are checked by test/bff.test.ts). */
export const api = {
  session: () => call<SessionInfo>('GET', '/api/session'),
  signIn: (token: string) => call<SessionInfo>('POST', '/api/session', { token }),
  signOut: () => call<{ ok: boolean }>('DELETE', '/api/session'),
  instances: () => call<InstanceInfo[]>('GET', '/api/instances'),
  instance: (id: string) => call<InstanceInfo>('GET', `/api/instances/${encodeURIComponent(id)}`),
  console: (id: string) => call<ConsoleInfo>('GET', `/api/instances/${encodeURIComponent(id)}/console?bytes=65536`),
  formpacks: () => call<FormpackInfo[]>('GET', '/api/formpacks'),
  formpack: (id: string) => call<FormpackDetail>('GET', `/api/formpacks/${encodeURIComponent(id)}`),
  network: () => call<NetworkInfo>('GET', '/api/network'),
};
