// The VMDocker runtime container protocol, as every runtime server in our images speaks it: HTTP with
// JSON bodies on a unix socket (the container has no network), one process per container:
//   /vmm/health  /vmm/spawn  /vmm/apply  /vmm/checkpoint  /vmm/restore
// The runtime servers (server.mjs: JavaScript, lua-server.mjs: AO Lua) supply only what a process is;
// the image builders (js-image.ts, lua-image.ts) copy this file beside them into /app.
import { mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';

const SOCKET = process.env.FORM_RT_SOCKET || '/run/formrt/api.sock';
const MAX_BODY = 64 * 1024 * 1024;

/** How long one handler (or process code at spawn) may run, in ms, before it fails. */
export const APPLY_TIMEOUT_MS = Number(process.env.FORM_RT_APPLY_TIMEOUT_MS || 2000);

/** An error the protocol answers with HTTP `status` and `{ status: 'error', error: message }`. */
export const fail = (message, status = 400) => Object.assign(new Error(message), { status });

/**
 * @typedef {object} ProcessRuntime What a runtime server supplies: the protocol checks the container's
 *   state (no process yet, one already) and answers; these do the work.
 * @property {() => { pid: string } | undefined} current the process in this container, if any
 * @property {(body: any, pid: string) => void | Promise<void>} spawn start the process `pid` (the
 *   protocol has checked that none runs and that `pid` is not empty)
 * @property {(body: any) => object} apply apply one message to the running process; its Result
 * @property {() => string} checkpoint the running process's state as text
 * @property {(body: any) => void | Promise<void>} restore replace the process by the checkpoint in
 *   `body.state`; a refused checkpoint leaves the old process untouched
 * @property {(err: unknown) => string} [errorText] the error text of a failed request (default: its message)
 */

/**
 * Serve the protocol for `runtime` on `$FORM_RT_SOCKET` and write `<socket>.ready` (holding this
 * process's pid) once it listens. Requests are handled one at a time, in the order they arrive: a
 * process is single-threaded and its state is snapshotted per message.
 *
 * @example
 * serveVmmProtocol({ current: () => proc, spawn: (b, pid) => { proc = start(pid, b.data); }, ... });
 *
 * @param {ProcessRuntime} runtime
 */
export function serveVmmProtocol(runtime) {
  const errorText = runtime.errorText ?? ((err) => err.message);
  const running = () => {
    if (!runtime.current()) throw fail('no process spawned in this container', 409);
  };
  const routes = {
    '/vmm/health': () => ({ status: 'ok', pid: runtime.current()?.pid ?? null }),
    '/vmm/spawn': async (b) => {
      const current = runtime.current();
      if (current) throw fail(`process ${current.pid} already runs in this container`, 409);
      const pid = String(b.pid || '');
      if (!pid) throw fail('spawn needs a pid');
      await runtime.spawn(b, pid);
      return { status: 'ok' };
    },
    '/vmm/apply': async (b) => {
      running();
      return { status: 'ok', result: JSON.stringify(await runtime.apply(b)) };
    },
    '/vmm/checkpoint': async () => {
      running();
      return { status: 'ok', state: await runtime.checkpoint() };
    },
    '/vmm/restore': async (b) => {
      await runtime.restore(b);
      return { status: 'ok' };
    },
  };

  let chain = Promise.resolve();
  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      chain = chain.then(async () => {
        let status = 200;
        let out;
        try {
          const route = routes[req.url];
          if (!route) throw fail(`no route ${req.url}`, 404);
          const text = Buffer.concat(chunks).toString('utf8');
          out = await route(text ? JSON.parse(text) : {});
        } catch (err) {
          status = err.status || 500;
          out = { status: 'error', error: errorText(err) };
        }
        const body = JSON.stringify(out);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    });
  });

  try {
    unlinkSync(SOCKET);
  } catch {}
  mkdirSync(dirname(SOCKET), { recursive: true });
  rmSync(`${SOCKET}.ready`, { force: true });
  server.listen(SOCKET, () => writeFileSync(`${SOCKET}.ready`, String(process.pid)));
  process.on('SIGTERM', () => process.exit(0));
}
