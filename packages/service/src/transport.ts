import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { type VerifiedTlsBinding, verifyTlsBinding } from '@formation/identity';
import { FormError } from '@formation/interface';

/**
 * How clients reach node APIs. `http://` goes through the global fetch (loopback: the local operator,
 * or nodes sharing one machine). `https://` goes through `nodeFetch`, which accepts exactly a server
 * whose certificate is bound to the expected node key (`@formation/identity` tls-binding): the binding
 * is checked on every connection, after the handshake and before a byte of the request is sent. CA
 * trust is not used (node certificates are self-signed); the node key is the trust anchor.
 *
 * The expected key for a URL is, in order: the `nodeKey` a caller passes (a peer's key from state, an
 * ApiClient's `audience`), the key pinned for the URL's origin (`pinNodeKey`, e.g. by the CLI from
 * its kit config), else the first key this process sees at that origin, which is then pinned
 * (trust on first use, for this process only).
 */

/** Expected node keys per origin (`https://host:port`). */
const pins = new Map<string, string>();

function originOf(url: string | URL): string {
  return new URL(url).origin;
}

/** Expect node `nodeKey` at the origin of `url` from now on (in this process). */
export function pinNodeKey(url: string | URL, nodeKey: string): void {
  pins.set(originOf(url), nodeKey.toLowerCase());
}

/** The node key expected at the origin of `url`, if any. */
export function pinnedNodeKey(url: string | URL): string | undefined {
  return pins.get(originOf(url));
}

/** Forget every pin (tests). */
export function clearNodeKeyPins(): void {
  pins.clear();
}

/**
 * Open a TLS connection to `host:port` and resolve once the peer's certificate binding is verified
 * (for `nodeKey` when given). The socket is destroyed on any refusal; the FormError says why.
 */
export function connectPinned(
  host: string,
  port: number,
  opts: { nodeKey?: string | undefined; timeoutMs?: number; signal?: AbortSignal | undefined } = {},
): Promise<{ socket: TLSSocket; binding: VerifiedTlsBinding }> {
  const h = host.replace(/^\[|\]$/g, '');
  const where = `https://${host}:${port}`;
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: h,
      port,
      // Self-signed by design: trust comes from the node-key binding checked below, not from a CA.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      ...(isIP(h) ? {} : { servername: h }),
    });
    const timer = opts.timeoutMs
      ? setTimeout(
          () =>
            socket.destroy(
              new FormError('TIMEOUT', `Cannot reach ${where}: no TLS handshake within ${opts.timeoutMs} ms`),
            ),
          opts.timeoutMs,
        )
      : undefined;
    // A caller that gives up (timeout, abort) while the handshake runs leaves no socket behind.
    const onAbort = () => socket.destroy(opts.signal?.reason as Error);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('close', () => opts.signal?.removeEventListener('abort', onAbort));
    socket.once('secureConnect', () => {
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      try {
        const cert = socket.getPeerCertificate(false);
        if (!cert?.raw)
          throw new FormError('AUTH_BAD_SIGNATURE', `Cannot trust ${where}: it presented no certificate`, {
            details: { tls: 'TLS_NO_BINDING' },
          });
        const binding = verifyTlsBinding(cert.raw, { nodeKey: opts.nodeKey, where });
        socket.removeListener('error', onError);
        resolve({ socket, binding });
      } catch (err) {
        socket.destroy();
        reject(err);
      }
    });
    const onError = (err: Error) => {
      if (timer) clearTimeout(timer);
      reject(err);
    };
    socket.once('error', onError);
  });
}

/**
 * Connect, verify the certificate binding, and return the node key the server at `url` is bound to
 * (no HTTP request is made). For `form kit init` (trust on first use, or a check of `--node-key`).
 */
export async function probeNodeKey(
  url: string,
  opts: { nodeKey?: string; timeoutMs?: number } = {},
): Promise<VerifiedTlsBinding> {
  const u = new URL(url);
  if (u.protocol !== 'https:') {
    throw new FormError('CLI_USAGE', `Cannot check the node key of ${url}: it is not an https:// URL`);
  }
  try {
    const { socket, binding } = await connectPinned(u.hostname, Number(u.port || 443), {
      nodeKey: opts.nodeKey,
      timeoutMs: opts.timeoutMs ?? 10_000,
    });
    socket.destroy();
    return binding;
  } catch (err) {
    throw asFetchError(err);
  }
}

/** A FormError passes as is; a socket error becomes what fetch throws (TypeError with `cause`), so callers handle both alike. */
function asFetchError(err: unknown): unknown {
  if (err instanceof FormError) return err;
  if ((err as Error)?.name === 'AbortError' || (err as Error)?.name === 'TimeoutError') return err;
  return new TypeError('fetch failed', { cause: err });
}

const NULL_BODY = new Set([101, 204, 205, 304]);

function headerRecord(h: RequestInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(h ?? {}).forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

function bodyBytes(body: RequestInit['body']): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  throw new FormError('INTERNAL', 'Cannot send this request body over a pinned connection: only strings and bytes');
}

/**
 * `fetch` for node APIs: `http://` URLs as the global fetch, `https://` URLs only to the expected node
 * (see the module comment). Returns a standard `Response`; throws the FormError of a refused
 * certificate, or what fetch throws for a network failure (TypeError with `cause.code`).
 *
 * @example
 * const res = await nodeFetch('https://198.51.100.11:3004/digest', {}, { nodeKey: peer.id });
 */
export async function nodeFetch(
  url: string,
  init: RequestInit = {},
  opts: { nodeKey?: string | undefined } = {},
): Promise<Response> {
  const u = new URL(url);
  if (u.protocol !== 'https:') return fetch(url, init);
  const expected = opts.nodeKey?.toLowerCase() ?? pinnedNodeKey(u);
  const signal = init.signal ?? undefined;
  signal?.throwIfAborted();
  const body = bodyBytes(init.body);
  const headers = headerRecord(init.headers);
  if (body && headers['content-length'] === undefined) headers['content-length'] = String(body.length);
  return new Promise<Response>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      reject(signal?.aborted ? signal.reason : asFetchError(err));
    };
    const req = httpsRequest({
      protocol: 'https:',
      hostname: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 443),
      path: `${u.pathname}${u.search}`,
      method: init.method ?? 'GET',
      headers,
      ...(signal ? { signal } : {}),
      // One verified connection per request (no pool): a socket verified for one key never serves another.
      createConnection: (_o, oncreate) => {
        connectPinned(u.hostname, Number(u.port || 443), { nodeKey: expected, signal }).then(
          ({ socket, binding }) => {
            if (!expected) pinNodeKey(u, binding.nodeKey); // trust on first use, for this process
            oncreate(null, socket);
          },
          (err: Error) => oncreate(err, undefined as never),
        );
        return undefined;
      },
    });
    req.once('error', fail);
    req.once('response', (res) => {
      if (settled) return;
      settled = true;
      const h = new Headers();
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2)
        h.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
      const status = res.statusCode ?? 502;
      if (NULL_BODY.has(status)) res.resume();
      resolve(
        new Response(NULL_BODY.has(status) ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>), {
          status,
          statusText: res.statusMessage ?? '',
          headers: h,
        }),
      );
    });
    req.end(body);
  });
}
