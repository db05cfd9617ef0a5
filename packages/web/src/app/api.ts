import type {
  ActionResult,
  ApiErrorBody,
  BuildLogEvent,
  BuildStarted,
  CommitResultInfo,
  ConsoleInfo,
  DiskInfo,
  FormpackDetail,
  FormpackInfo,
  InstanceInfo,
  LogsInfo,
  NetworkInfo,
  ReplicaMetricsInfo,
  SessionInfo,
  ShipResultInfo,
} from '@formation/interface/web-api';

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

async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  opts: { timeoutMs?: number; raw?: { body: Blob; type: string } } = {},
): Promise<T> {
  let res: Response;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: opts.raw
        ? { 'content-type': opts.raw.type }
        : body === undefined
          ? {}
          : { 'content-type': 'application/json' },
      body: opts.raw ? opts.raw.body : body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const timeout = (err as Error).name === 'TimeoutError';
    throw new ApiError(0, {
      code: timeout ? 'TIMEOUT' : 'UNAVAILABLE',
      message: timeout
        ? `The dashboard server did not answer within ${timeoutMs / 1000} s`
        : 'Cannot reach the dashboard server',
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
  disk: (id: string) => call<DiskInfo>('GET', `/api/instances/${encodeURIComponent(id)}/disk`),
  console: (id: string) => call<ConsoleInfo>('GET', `/api/instances/${encodeURIComponent(id)}/console?bytes=65536`),
  logs: (id: string, after?: number) =>
    call<LogsInfo>(
      'GET',
      `/api/instances/${encodeURIComponent(id)}/logs${after !== undefined ? `?after=${after}` : ''}`,
    ),
  metrics: (id: string) => call<ReplicaMetricsInfo>('GET', `/api/instances/${encodeURIComponent(id)}/metrics`),
  formpacks: () => call<FormpackInfo[]>('GET', '/api/formpacks'),
  formpack: (id: string) => call<FormpackDetail>('GET', `/api/formpacks/${encodeURIComponent(id)}`),
  network: () => call<NetworkInfo>('GET', '/api/network'),
  // Actions: the server makes them with this session's key under your delegation (`form web login`).
  start: (id: string) => call<ActionResult>('POST', `/api/instances/${encodeURIComponent(id)}/start`),
  stop: (id: string) => call<ActionResult>('POST', `/api/instances/${encodeURIComponent(id)}/stop`),
  remove: (id: string) => call<ActionResult>('DELETE', `/api/instances/${encodeURIComponent(id)}`),
  scale: (id: string, replicas: number) =>
    call<ActionResult>('POST', `/api/instances/${encodeURIComponent(id)}/replicas`, { replicas }),
  // A commit freezes the guest and copies its disk: allow it time.
  commit: (id: string) =>
    call<CommitResultInfo>('POST', `/api/instances/${encodeURIComponent(id)}/commit`, undefined, {
      timeoutMs: 600_000,
    }),
  ship: (id: string, body: { replicas?: number; new?: boolean }) =>
    call<ShipResultInfo>('POST', `/api/formpacks/${encodeURIComponent(id)}/ship`, body, { timeoutMs: 60_000 }),
  build: (archive: Blob, type: 'application/x-tar' | 'application/gzip', formfile: string) =>
    call<BuildStarted>('POST', `/api/builds?formfile=${encodeURIComponent(formfile)}`, undefined, {
      timeoutMs: 600_000,
      raw: { body: archive, type },
    }),
};

/**
 * Follow a build's log as it happens (NDJSON), calling `onEvent` per line; resolves with the end line.
 * Throws an ApiError when the log cannot be read or ends without an end line.
 */
export async function followBuild(
  buildId: string,
  onEvent: (e: BuildLogEvent) => void,
  signal?: AbortSignal,
): Promise<Extract<BuildLogEvent, { type: 'end' }>> {
  const path = `/api/builds/${encodeURIComponent(buildId)}/log`;
  let res: Response;
  try {
    res = await fetch(path, { credentials: 'same-origin', ...(signal ? { signal } : {}) });
  } catch {
    throw new ApiError(0, { code: 'UNAVAILABLE', message: 'Cannot reach the dashboard server to follow the build' });
  }
  if (!res.ok || !res.body) {
    const e = ((await res.json().catch(() => undefined)) as ApiErrorBody | undefined)?.error;
    throw new ApiError(res.status, e ?? { code: 'INTERNAL', message: `HTTP ${res.status}` });
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += value;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (!line) continue;
      const e = JSON.parse(line) as BuildLogEvent;
      onEvent(e);
      if (e.type === 'end') return e;
    }
    if (done) break;
  }
  throw new ApiError(0, { code: 'UNAVAILABLE', message: 'The build log ended before the build did' });
}
