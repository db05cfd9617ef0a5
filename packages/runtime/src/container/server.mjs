// Formation JS process runtime: the program inside a runtime container. It speaks the VMDocker
// runtime container protocol (vmm-protocol.mjs: /vmm/health, /vmm/spawn, /vmm/apply, /vmm/checkpoint,
// /vmm/restore over HTTP on a unix socket).
// A process is AO-style JavaScript: it registers handlers with Handlers.add(name, action|fn, fn) and
// keeps its state in the JSON-serializable global `State`. Handlers run in a node:vm context with a
// time limit; a failing or timed-out message rolls the state back and yields an error result.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import vm from 'node:vm';
import { fail, serveVmmProtocol, APPLY_TIMEOUT_MS as TIMEOUT_MS } from './vmm-protocol.mjs';

const WORKSPACE = process.env.FORM_RT_WORKSPACE || '/workspace';
const MAX_WRITES = 16 * 1024 * 1024;

const PRELUDE = `
globalThis.State = {};
const __handlers = [];
globalThis.Handlers = {
  add(name, match, fn) {
    const h = { name, match, fn };
    const i = __handlers.findIndex((x) => x.name === name);
    if (i >= 0) __handlers[i] = h; else __handlers.push(h);
  },
  remove(name) {
    const i = __handlers.findIndex((x) => x.name === name);
    if (i >= 0) __handlers.splice(i, 1);
  },
  list() { return __handlers.map((h) => h.name); },
};
globalThis.__dispatch = function (input, ctl) {
  const msg = JSON.parse(input);
  msg.reply = (data, tags) => ctl.send(JSON.stringify({ Target: msg.From, Data: data, Tags: tags || {} }));
  globalThis.ao = {
    send: (m) => ctl.send(JSON.stringify(m)),
    spawn: (module, m) => ctl.spawn(JSON.stringify({ Module: module, ...(m || {}) })),
    id: msg.Target,
  };
  globalThis.print = (...a) => ctl.print(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));
  Date.now = () => msg.Timestamp;
  let out;
  if (msg.Action === 'Eval') {
    if (msg.From !== ctl.owner) throw new Error('Eval is only allowed from the process owner');
    out = (0, eval)(msg.Data);
    ctl.evaluated(msg.Data);
  } else {
    const matched = __handlers.filter((h) => (typeof h.match === 'function' ? h.match(msg) : h.match === msg.Action));
    if (matched.length === 0) print('no handler for action ' + msg.Action);
    for (const h of matched) {
      const r = h.fn(msg);
      if (r !== undefined) out = r;
    }
  }
  return out === undefined ? '' : typeof out === 'string' ? out : JSON.stringify(out);
};
`;

let proc; // { pid, owner, sources, ctx, rng }

function safeName(name) {
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) || name.split('/').includes('..'))
    throw new Error(`bad workspace file name ${JSON.stringify(name)}`);
  return join(WORKSPACE, name);
}

// mulberry32: a deterministic Math.random whose position is part of the checkpoint
function nextRandom(p) {
  p.rng = (p.rng + 0x6d2b79f5) | 0;
  let t = p.rng;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function newProcess(pid, owner, sources, rng) {
  const p = { pid, owner, sources: [], rng, ctx: undefined, pending: new Map() };
  const ws = {
    read: (name) => {
      const f = safeName(name);
      if (p.pending.has(f)) return p.pending.get(f);
      try {
        return readFileSync(f, 'utf8');
      } catch {
        return undefined;
      }
    },
    // writes become visible to the process at once and reach the disk only when the message succeeds
    write: (name, text) => {
      const t = String(text);
      let total = t.length;
      for (const v of p.pending.values()) total += v.length;
      if (total > MAX_WRITES) throw new Error(`workspace writes exceed ${MAX_WRITES} bytes in one message`);
      p.pending.set(safeName(name), t);
    },
    list: () => {
      try {
        return readdirSync(WORKSPACE, { recursive: true }).filter((n) => statSync(join(WORKSPACE, n)).isFile());
      } catch {
        return [];
      }
    },
  };
  p.ctx = vm.createContext({ Workspace: ws, __random: () => nextRandom(p) });
  vm.runInContext(PRELUDE, p.ctx, { timeout: TIMEOUT_MS });
  vm.runInContext('Math.random = __random;', p.ctx);
  for (const s of sources) {
    vm.runInContext(s, p.ctx, { timeout: TIMEOUT_MS, filename: 'process.js' });
    p.sources.push(s);
  }
  return p;
}

function seedOf(pid) {
  let h = 2166136261;
  for (const c of pid) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return h | 0;
}

function errText(err) {
  const m = err && typeof err === 'object' && 'message' in err ? String(err.message) : String(err);
  return /timed out/.test(m) ? `time limit exceeded: handler ran longer than ${TIMEOUT_MS} ms` : m;
}

function apply(body) {
  const meta = body.meta || {};
  const mode = meta.mode || 'apply';
  const params = body.params || meta.params || {};
  const msg = {
    Id: meta.itemId,
    From: body.from,
    Owner: body.from,
    Target: meta.processId,
    Action: meta.action,
    Data: meta.data ?? '',
    Tags: { ...params, Action: meta.action },
    Timestamp: meta.timestamp,
    Nonce: meta.nonce,
    Sequence: meta.sequence,
  };
  const result = { messages: [], spawns: [], output: '', data: '' };
  const outputs = [];
  const evaluated = [];
  const ctl = {
    owner: proc.owner,
    print: (s) => outputs.push(s),
    send: (j) => {
      const m = JSON.parse(j);
      const tags = { ...(m.Tags || {}) };
      if (m.Action) tags.Action = String(m.Action);
      result.messages.push({
        target: String(m.Target ?? ''),
        action: tags.Action,
        data: m.Data === undefined ? '' : typeof m.Data === 'string' ? m.Data : JSON.stringify(m.Data),
        tags,
      });
    },
    spawn: (j) => {
      const m = JSON.parse(j);
      result.spawns.push({ module: String(m.Module ?? ''), data: String(m.Data ?? ''), tags: { ...(m.Tags || {}) } });
    },
    evaluated: (code) => evaluated.push(code),
  };
  proc.ctx.__snap = vm.runInContext('JSON.stringify(State)', proc.ctx, { timeout: TIMEOUT_MS });
  const rngBefore = proc.rng;
  proc.pending.clear();
  let failed = false;
  try {
    proc.ctx.__in = JSON.stringify(msg);
    proc.ctx.__ctl = ctl;
    result.data = vm.runInContext('__dispatch(__in, __ctl)', proc.ctx, {
      timeout: TIMEOUT_MS,
      filename: 'dispatch.js',
    });
  } catch (err) {
    failed = true;
    result.error = errText(err);
    result.messages = [];
    result.spawns = [];
    result.data = '';
  }
  if (failed || mode === 'dry-run') {
    vm.runInContext('State = JSON.parse(__snap)', proc.ctx);
    proc.rng = rngBefore;
  } else {
    for (const [f, text] of proc.pending) {
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(f, text);
    }
    proc.sources.push(...evaluated);
  }
  proc.pending.clear();
  result.output = outputs.join('\n');
  return result;
}

function checkpoint() {
  const state = vm.runInContext('JSON.stringify(State)', proc.ctx, { timeout: TIMEOUT_MS });
  return JSON.stringify({
    format: 'formation-js-process/1',
    pid: proc.pid,
    owner: proc.owner,
    sources: proc.sources,
    rng: proc.rng,
    state,
  });
}

function restore(body) {
  let snap;
  try {
    snap = JSON.parse(body.state);
  } catch {
    throw fail('checkpoint state is not JSON');
  }
  if (snap?.format !== 'formation-js-process/1' || !Array.isArray(snap.sources) || typeof snap.state !== 'string')
    throw fail('checkpoint state has the wrong format');
  let p;
  try {
    p = newProcess(snap.pid, snap.owner, snap.sources, snap.rng | 0);
    p.ctx.__snap = snap.state;
    vm.runInContext('State = JSON.parse(__snap)', p.ctx, { timeout: TIMEOUT_MS });
  } catch (err) {
    throw fail(`checkpoint does not restore: ${errText(err)}`);
  }
  proc = p; // only now: a refused checkpoint leaves the old process untouched
}

function spawnProcess(body, pid) {
  const src = typeof body.data === 'string' ? body.data : '';
  try {
    proc = newProcess(pid, String(body.owner || ''), src ? [src] : [], seedOf(pid));
  } catch (err) {
    throw fail(`process code failed: ${errText(err)}`);
  }
}

serveVmmProtocol({
  current: () => proc,
  spawn: spawnProcess,
  apply,
  checkpoint,
  restore,
  errorText: errText,
});
