// Formation Lua process runtime (web.vmdocker-lua-ao): the program inside a Lua runtime container.
// Same VMDocker runtime container protocol as server.mjs (vmm-protocol.mjs, HTTP on a unix socket).
// The process is AO Lua (lua-process.mjs + ao-process.lua) in WebAssembly inside this container.
import { LuaProcess } from './lua-process.mjs';
import { fail, serveVmmProtocol, APPLY_TIMEOUT_MS as TIMEOUT_MS } from './vmm-protocol.mjs';

let proc; // LuaProcess

/** When the spawn's data is process code: AO's On-Boot=Data, or no On-Boot tag and data that is not blank. */
function bootCode(data, tags) {
  const onBoot = tags.find((t) => t.name === 'On-Boot')?.value;
  if (onBoot === 'Data') return data;
  if (onBoot !== undefined) return '';
  return data.trim() === '' || data === '1984' ? '' : data;
}

async function spawnProcess(b, pid) {
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

serveVmmProtocol({
  current: () => proc?.info,
  spawn: spawnProcess,
  apply,
  checkpoint: () => proc.checkpoint(),
  restore,
});
