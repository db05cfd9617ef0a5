// One AO Lua process: Lua 5.4 compiled to WebAssembly (wasmoon's build, used through the raw C API)
// with Formation's AO environment (ao-process.lua). Used inside the Lua runtime container
// (lua-server.mjs) and by the unit tests.
//
// Determinism: the whole Lua state lives in the WebAssembly memory. Creation pins the clock the Lua
// library reads for its hash seed, so two processes with the same history have byte-identical memory
// (string hashing and `pairs` order included). A failed message or a dry run puts the memory back as it
// was before the message; a checkpoint is that memory (gzip), restored into a fresh instance built the
// same way — closures, upvalues and metatables survive, as in AO's own memory snapshots.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { LuaFactory } from 'wasmoon';

export const LUA_CHECKPOINT_FORMAT = 'formation-lua-process/1';
const LUA_OK = 0;
const LUA_MULTRET = -1;
const LUA_MASKCOUNT = 8;
const HOOK_EVERY = 10000;
/** Successful messages between two rollback copies of the memory. */
const REBASE_EVERY = 32;

const PRELUDE = readFileSync(new URL('./ao-process.lua', import.meta.url), 'utf8');

export class LuaProcessError extends Error {
  constructor(message, status = 400) {
    super(message);
    this.status = status;
  }
}

/** A fresh wasm instance with a Lua state and the prelude loaded, built identically every time. */
async function instantiate(wasmPath) {
  const realNow = Date.now;
  const realPerfNow = performance.now.bind(performance);
  // the Lua library seeds string hashing from time(): pin it so every instance starts identical
  Date.now = () => 0;
  performance.now = () => 0;
  try {
    const lw = await new LuaFactory(wasmPath).getLuaModule();
    const m = lw.module;
    const L = m._luaL_newstate();
    m._luaL_openlibs(L);
    const inst = { m, L, deadline: Infinity, hook: 0 };
    inst.hook = m.addFunction((state) => {
      if (realPerfNow() > inst.deadline) {
        inst.deadline = Infinity;
        pushString(inst, 'time limit exceeded', state);
        m._lua_error(state);
      }
    }, 'vii');
    m._lua_sethook(L, inst.hook, LUA_MASKCOUNT, HOOK_EVERY);
    const r = callChunk(inst, PRELUDE, 'ao-process.lua', []);
    if (r.error) throw new Error(`the AO prelude failed: ${r.error}`);
    return inst;
  } finally {
    Date.now = realNow;
    performance.now = realPerfNow;
  }
}

function pushString(inst, s, L = inst.L) {
  const bytes = Buffer.from(s, 'utf8');
  const p = inst.m._malloc(bytes.length + 1);
  inst.m.HEAPU8.set(bytes, p);
  inst.m._lua_pushlstring(L, p, bytes.length);
  inst.m._free(p);
}

function readString(inst, idx) {
  const lenp = inst.m._malloc(4);
  const p = inst.m._lua_tolstring(inst.L, idx, lenp);
  const len = inst.m.HEAPU32[lenp >> 2];
  inst.m._free(lenp);
  if (!p) return null;
  return Buffer.from(inst.m.HEAPU8.subarray(p, p + len)).toString('utf8');
}

/** Compile and run a chunk with string arguments; returns its first result as a string, or the error. */
function callChunk(inst, code, name, args) {
  const { m, L } = inst;
  const bytes = Buffer.from(code, 'utf8');
  const p = m._malloc(bytes.length + 1);
  m.HEAPU8.set(bytes, p);
  const np = m._malloc(name.length + 2);
  m.HEAPU8.set(Buffer.from(`=${name}\0`), np);
  const modep = m._malloc(2);
  m.HEAPU8.set(Buffer.from('t\0'), modep);
  const st = m._luaL_loadbufferx(L, p, bytes.length, np, modep);
  m._free(p);
  m._free(np);
  m._free(modep);
  if (st !== LUA_OK) {
    const e = readString(inst, -1);
    m._lua_settop(L, 0);
    return { error: e ?? 'load failed' };
  }
  return pcall(inst, args);
}

function callGlobal(inst, fn, args) {
  const { m, L } = inst;
  const np = m._malloc(fn.length + 1);
  m.HEAPU8.set(Buffer.from(`${fn}\0`), np);
  m._lua_getglobal(L, np);
  m._free(np);
  return pcall(inst, args);
}

function pcall(inst, args) {
  const { m, L } = inst;
  for (const a of args) pushString(inst, a);
  const st = m._lua_pcallk(L, args.length, LUA_MULTRET, 0, 0, 0);
  const out = m._lua_gettop(L) > 0 ? readString(inst, 1) : null;
  m._lua_settop(L, 0);
  if (st !== LUA_OK) return { error: out ?? `Lua error ${st}` };
  return { value: out };
}

function parseResult(text) {
  const r = JSON.parse(text);
  const list = (x) => (Array.isArray(x) ? x : []);
  const tags = (t) => {
    const o = {};
    for (const x of list(t)) if (x && typeof x.name === 'string') o[x.name] = String(x.value ?? '');
    return o;
  };
  const result = {
    messages: list(r.Messages).map((x) => {
      const t = tags(x.Tags);
      return { target: String(x.Target ?? ''), action: t.Action, data: String(x.Data ?? ''), tags: t };
    }),
    spawns: list(r.Spawns).map((x) => ({
      module: String(x.Module ?? ''),
      data: String(x.Data ?? ''),
      tags: tags(x.Tags),
    })),
    output: String(r.Output ?? ''),
    data: typeof r.Data === 'string' ? r.Data : JSON.stringify(r.Data ?? ''),
  };
  if (r.Error !== undefined && r.Error !== null) result.error = String(r.Error);
  return result;
}

/**
 * An AO process in Lua. `spawn` boots it (optionally running code); `apply` hands it one message and
 * returns the Formation `Result` shape; `checkpoint`/`restore` move its whole memory.
 */
export class LuaProcess {
  constructor(inst, info, timeoutMs) {
    this.inst = inst;
    this.info = info; // { pid, owner, moduleId }
    this.timeoutMs = timeoutMs;
  }

  /**
   * @param {{ wasmPath?: string, pid: string, owner: string, moduleId?: string, tags?: Array<{name: string, value: string}>,
   *   moduleTags?: Array<{name: string, value: string}>, code?: string, timeoutMs?: number }} o
   */
  static async spawn(o) {
    const inst = await instantiate(o.wasmPath);
    const p = new LuaProcess(inst, { pid: o.pid, owner: o.owner, moduleId: o.moduleId ?? '' }, o.timeoutMs ?? 2000);
    const env = {
      Process: { Id: o.pid, Owner: o.owner, Tags: o.tags ?? [] },
      Module: { Id: o.moduleId ?? '', Tags: o.moduleTags ?? [] },
    };
    const r = p.run('__ao_boot', [JSON.stringify(env), o.code ?? '']);
    if (r.error) throw new LuaProcessError(`process code failed: ${r.error}`);
    return p;
  }

  run(fn, args, limit = true) {
    this.inst.deadline = limit ? performance.now() + this.timeoutMs : Infinity;
    try {
      return callGlobal(this.inst, fn, args);
    } finally {
      this.inst.deadline = Infinity;
    }
  }

  memory() {
    return this.inst.m.HEAPU8;
  }

  /** Copy the memory as the new rollback base; messages applied after it are kept to replay. */
  rebase() {
    const heap = this.memory();
    if (!this.base || this.base.length !== heap.length) this.base = new Uint8Array(heap.length);
    this.base.set(heap);
    this.since = [];
  }

  /**
   * Apply one AO message `{Id, From, Owner, Target, Timestamp, Data, Tags: [{name, value}], …}`.
   * mode 'dry-run' and any error leave the process exactly as before.
   *
   * Copying the whole memory before every message would dominate a small message's cost, so a
   * successful message only joins the list since the last base copy (taken every REBASE_EVERY
   * messages). A failed message puts the base back and replays that list — without the time limit,
   * as each of them finished before — which gives byte-identical memory (execution is
   * deterministic). A dry run copies and puts back, as it must not cost a replay.
   */
  apply(msg, mode = 'apply') {
    const input = JSON.stringify(msg);
    let dryBefore;
    if (mode === 'dry-run') {
      const heap = this.memory();
      if (!this.snap || this.snap.length !== heap.length) this.snap = new Uint8Array(heap.length);
      this.snap.set(heap);
      dryBefore = this.snap;
    } else if (!this.base) this.rebase();
    let result;
    const r = this.run('__ao_handle', [input]);
    if (r.error) result = { messages: [], spawns: [], output: '', data: '', error: r.error };
    else {
      try {
        result = parseResult(r.value ?? '');
      } catch (err) {
        result = { messages: [], spawns: [], output: '', data: '', error: `unreadable result: ${err.message}` };
      }
    }
    if (dryBefore) this.setMemory(dryBefore);
    else if (result.error) this.rollback();
    else {
      this.since.push(input);
      if (this.since.length >= REBASE_EVERY) this.rebase();
    }
    return result;
  }

  /** Back to the memory after the last successful message. */
  rollback() {
    this.setMemory(this.base);
    const replay = this.since;
    for (const input of replay) {
      const r = this.run('__ao_handle', [input], false);
      if (r.error) throw new LuaProcessError(`replay after a failed message diverged: ${r.error}`, 500);
    }
  }

  setMemory(bytes) {
    const m = this.inst.m;
    if (m.HEAPU8.length < bytes.length) {
      // grow through the module's own allocator so its views follow; the bytes below replace its state
      const p = m._malloc(bytes.length - m.HEAPU8.length + 65536);
      if (!p) throw new LuaProcessError('cannot grow the Lua memory to the checkpoint size', 500);
    }
    const heap = m.HEAPU8;
    heap.set(bytes.length === heap.length ? bytes : bytes.subarray(0, Math.min(bytes.length, heap.length)), 0);
    if (heap.length > bytes.length) heap.fill(0, bytes.length);
  }

  checkpoint() {
    const mem = Buffer.from(this.memory().slice().buffer);
    const z = gzipSync(mem, { level: 1 });
    return JSON.stringify({
      format: LUA_CHECKPOINT_FORMAT,
      pid: this.info.pid,
      owner: this.info.owner,
      moduleId: this.info.moduleId,
      L: this.inst.L,
      size: mem.length,
      memorySha256: createHash('sha256').update(mem).digest('hex'),
      memory: z.toString('base64'),
    });
  }

  /** A process from a checkpoint string; anything malformed or altered is refused (nothing replaced). */
  static async restore(state, o = {}) {
    let snap;
    try {
      snap = JSON.parse(state);
    } catch {
      throw new LuaProcessError('checkpoint state is not JSON');
    }
    if (snap?.format !== LUA_CHECKPOINT_FORMAT || typeof snap.memory !== 'string' || typeof snap.pid !== 'string')
      throw new LuaProcessError(`checkpoint state is not a ${LUA_CHECKPOINT_FORMAT} state`);
    let mem;
    try {
      mem = gunzipSync(Buffer.from(snap.memory, 'base64'), { maxOutputLength: 2 ** 31 });
    } catch (err) {
      throw new LuaProcessError(`checkpoint memory does not unpack: ${err.message}`);
    }
    if (createHash('sha256').update(mem).digest('hex') !== snap.memorySha256 || mem.length !== snap.size)
      throw new LuaProcessError('checkpoint memory does not match its hash');
    const inst = await instantiate(o.wasmPath);
    if (inst.L !== snap.L) throw new LuaProcessError('checkpoint was made by another Lua runtime build');
    const p = new LuaProcess(
      inst,
      { pid: snap.pid, owner: snap.owner, moduleId: snap.moduleId ?? '' },
      o.timeoutMs ?? 2000,
    );
    p.setMemory(mem);
    let probe;
    try {
      probe = p.run('__ao_handle', ['{}']);
    } catch (err) {
      probe = { error: err.message };
    }
    if (probe.error) throw new LuaProcessError(`checkpoint does not restore: ${probe.error}`);
    // the probe's own effects (an empty message goes to the Inbox) must not stay
    p.setMemory(mem);
    return p;
  }
}
