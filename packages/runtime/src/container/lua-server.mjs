// Formation Lua process runtime (web.vmdocker-lua-ao): the program inside a Lua runtime container.
// Same VMDocker runtime container protocol as server.mjs, over HTTP on a unix socket (no network):
//   /vmm/health  /vmm/spawn  /vmm/apply  /vmm/checkpoint  /vmm/restore
// The process is AO Lua (lua-process.mjs + ao-process.lua) in WebAssembly inside this container.
import { mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';
import { LuaProcess } from './lua-process.mjs';

const SOCKET = process.env.FORM_RT_SOCKET || '/run/formrt/api.sock';
const TIMEOUT_MS = Number(process.env.FORM_RT_APPLY_TIMEOUT_MS || 2000);
const MAX_BODY = 64 * 1024 * 1024;

let proc; // LuaProcess

const fail = (message, status = 400) => Object.assign(new Error(message), { status });

/** When the spawn's data is process code: AO's On-Boot=Data, or no On-Boot tag and data that is not blank. */
function bootCode(data, tags) {
  const onBoot = tags.find((t) => t.name === 'On-Boot')?.value;
  if (onBoot === 'Data') return data;
  if (onBoot !== undefined) return '';
  return data.trim() === '' || data === '1984' ? '' : data;
}

async function spawnProcess(b) {
  if (proc) throw fail(`process ${proc.info.pid} already runs in this container`, 409);
  const pid = String(b.pid || '');
  if (!pid) throw fail('spawn needs a pid');
  const tags = Array.isArray(b.tags) ? b.tags.filter((t) => t && typeof t.name === 'string') : [];
  const data = typeof b.data === 'string' ? b.data : '';
  try {
    proc = await LuaProcess.spawn({
      pid,
      owner: String(b.owner || ''),
      moduleId: String(b.module || ''),
      tags,
      moduleTags: Array.isArray(b.module_tags) ? b.module_tags : [],
      code: bootCode(data, tags),
      timeoutMs: TIMEOUT_MS,
    });
  } catch (err) {
    throw fail(err.message, err.status ?? 400);
  }
}

function apply(b) {
  if (!proc) throw fail('no process spawned in this container', 409);
  const meta = b.meta || {};
  const params = b.params || meta.params || {};
  const tags = [{ name: 'Action', value: String(meta.action ?? '') }];
  for (const [name, value] of Object.entries(params)) if (name !== 'Action') tags.push({ name, value: String(value) });
  const msg = {
    Id: meta.itemId,
    From: b.from,
    Owner: b.from,
    Target: meta.processId,
    Timestamp: meta.timestamp,
    Nonce: meta.nonce,
    Sequence: meta.sequence,
    Data: meta.data ?? '',
    Module: proc.info.moduleId,
    Tags: tags,
  };
  return proc.apply(msg, meta.mode || 'apply');
}

async function restore(b) {
  if (typeof b.state !== 'string') throw fail('restore needs a state');
  try {
    proc = await LuaProcess.restore(b.state, { timeoutMs: TIMEOUT_MS });
  } catch (err) {
    throw fail(`checkpoint does not restore: ${err.message}`, 400);
  }
}

const routes = {
  '/vmm/health': async () => ({ status: 'ok', pid: proc?.info.pid ?? null }),
  '/vmm/spawn': async (b) => {
    await spawnProcess(b);
    return { status: 'ok' };
  },
  '/vmm/apply': async (b) => ({ status: 'ok', result: JSON.stringify(apply(b)) }),
  '/vmm/checkpoint': async () => {
    if (!proc) throw fail('no process spawned in this container', 409);
    return { status: 'ok', state: proc.checkpoint() };
  },
  '/vmm/restore': async (b) => {
    await restore(b);
    return { status: 'ok' };
  },
};

// one request at a time: a Lua process is single-threaded and its memory is snapshotted per message
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
        out = { status: 'error', error: err.message };
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
