// The AO Lua process environment (ao-process.lua in WebAssembly Lua), without runc: Handlers
// semantics, msg shape, outbox, Inbox, Eval rights, errors as results, determinism, checkpoints.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AoMessage, LuaProcess } from '../src/container/lua-process.mjs';

const OWNER = 'owner-wallet-address-0000000000000000000000';
const OTHER = 'other-wallet-address-0000000000000000000000';
let n = 0;
const msg = (action: string | undefined, data = '', extra: Record<string, string> = {}, from = OWNER): AoMessage => {
  n++;
  const tags = [
    ...(action ? [{ name: 'Action', value: action }] : []),
    ...Object.entries(extra).map(([name, value]) => ({ name, value })),
  ];
  return {
    Id: `m${n}`,
    From: from,
    Owner: from,
    Target: 'PROC',
    Timestamp: 1_700_000_000_000 + n,
    Data: data,
    Tags: tags,
  };
};
const spawn = (code: string) => LuaProcess.spawn({ pid: 'PROC', owner: OWNER, moduleId: 'MOD', code, timeoutMs: 1000 });
const evalOk = (p: LuaProcess, code: string) => {
  const r = p.apply(msg('Eval', code));
  assert.equal(r.error, undefined, r.error);
  return r.data;
};

describe('AO Lua process: Handlers', () => {
  it('add / append / prepend / remove / list keep order and replace by name', async () => {
    const p = await spawn(`
      Seen = {}
      Handlers.add('a', 'Ping', function() table.insert(Seen, 'a') end)
      Handlers.append('b', 'Ping', function() table.insert(Seen, 'b') end)
      Handlers.prepend('c', function(m) return m.Action == 'Ping' and 'continue' end, function() table.insert(Seen, 'c') end)
    `);
    assert.equal(evalOk(p, 'Handlers.list[1].name .. Handlers.list[2].name .. Handlers.list[3].name'), 'cab');
    p.apply(msg('Ping'));
    // c continues, a breaks (a true match stops), b never runs
    assert.equal(evalOk(p, 'table.concat(Seen, ",")'), 'c,a');
    evalOk(p, "Handlers.add('a', 'Ping', function() table.insert(Seen, 'A2') end)");
    assert.equal(evalOk(p, '#Handlers.list'), '3', 'same name replaces in place');
    evalOk(p, "Handlers.remove('c'); Seen = {}");
    p.apply(msg('Ping'));
    assert.equal(evalOk(p, 'table.concat(Seen, ",")'), 'A2');
    assert.equal(evalOk(p, "tostring(Handlers.remove('nope'))"), 'false');
  });

  it('patterns: action strings, tag tables (exact, Lua pattern, _ and functions), utils', async () => {
    const p = await spawn(`
      Hits = {}
      local function hit(name) return function() table.insert(Hits, name) end end
      Handlers.add('tagged', { Action = 'Order', Side = 'buy' }, hit('tagged'))
      Handlers.add('wild', { Action = 'Note', Topic = '_' }, hit('wild'))
      Handlers.add('luapat', { Action = 'Num', Value = '%d+' }, hit('luapat'))
      Handlers.add('fn', { Action = 'Big', Amount = function(v) return tonumber(v) > 10 end }, hit('fn'))
      Handlers.add('hasTag', Handlers.utils.hasMatchingTag('Action', 'Ping'), Handlers.utils.reply('pong'))
      Handlers.add('hasData', Handlers.utils.hasMatchingData('hello'), hit('data'))
      Handlers.add('shorthand', function() table.insert(Hits, 'shorthand') end)
    `);
    p.apply(msg('Order', '', { Side: 'buy' }));
    p.apply(msg('Order', '', { Side: 'sell' }));
    p.apply(msg('Note', '', { Topic: 'x' }));
    p.apply(msg('Note'));
    p.apply(msg('Num', '', { Value: '123' }));
    p.apply(msg('Num', '', { Value: '12a' }));
    p.apply(msg('Big', '', { Amount: '11' }));
    p.apply(msg('Big', '', { Amount: '3' }));
    p.apply(msg('Whatever', 'hello'));
    p.apply(msg('shorthand'));
    assert.equal(evalOk(p, 'table.concat(Hits, ",")'), 'tagged,wild,luapat,fn,data,shorthand');
    const pong = p.apply(msg('Ping', '', { Reference: '7' }, OTHER));
    assert.equal(pong.messages.length, 1);
    assert.equal(pong.messages[0]?.target, OTHER, 'reply goes to the sender');
    assert.equal(pong.messages[0]?.data, 'pong');
    assert.equal(pong.messages[0]?.tags['X-Reference'], '7');
  });

  it('once runs a handler one time; a bad pattern result is an error', async () => {
    const p = await spawn(`
      C = 0
      Handlers.once('one', 'Tick', function() C = C + 1 end)
    `);
    p.apply(msg('Tick'));
    p.apply(msg('Tick'));
    assert.equal(evalOk(p, 'C'), '1');
    assert.equal(evalOk(p, '#Inbox'), '1', 'the second Tick found no handler and went to the Inbox');
    evalOk(p, "Handlers.add('odd', function() return 'maybe' end, function() end)");
    assert.match(p.apply(msg('X')).error ?? '', /pattern must return/);
  });
});

describe('AO Lua process: messages, outbox, Inbox, Eval', () => {
  it('msg has From, Owner, Id, Target, Tags as table and array, tags as fields; ao.id and ao.env', async () => {
    const p = await spawn(`
      Handlers.add('show', 'Show', function(m)
        print(m.From, m.Owner, m.Id, m.Target, m.Tags.Color, m.TagArray[2].name, m.Color, m.Data)
        print(ao.id, ao.env.Process.Owner, ao.env.Module.Id)
      end)
    `);
    const m = msg('Show', 'payload', { Color: 'red' }, OTHER);
    const r = p.apply(m);
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.output, `${OTHER}\t${OTHER}\t${m.Id}\tPROC\tred\tColor\tred\tpayload\nPROC\t${OWNER}\tMOD`);
  });

  it('Send, ao.send, Spawn and msg.reply fill the outbox with tags and references', async () => {
    const p = await spawn(`
      Handlers.add('go', 'Go', function(m)
        Send({ Target = 'B', Action = 'Hello', Data = 'hi', Tags = { Extra = 'x' } })
        ao.send({ Target = 'C', Data = { a = 1 }, Tags = { { name = 'Action', value = 'Json' } } })
        Spawn(ao.env.Module.Id, { Data = 'Count = 0', Tags = { Name = 'child' } })
        m.reply('done')
      end)
    `);
    const r = p.apply(msg('Go', '', { Reference: '3' }));
    assert.equal(r.error, undefined, r.error);
    assert.deepEqual(
      r.messages.map((x) => [x.target, x.action, x.data]),
      [
        ['B', 'Hello', 'hi'],
        ['C', 'Json', '{"a":1}'],
        [OWNER, undefined, 'done'],
      ],
    );
    assert.equal(r.messages[0]?.tags.Extra, 'x');
    assert.equal(r.messages[0]?.tags.Reference, '1');
    assert.equal(r.messages[2]?.tags['X-Reference'], '3');
    assert.deepEqual(r.spawns, [{ module: 'MOD', data: 'Count = 0', tags: { Name: 'child', Reference: '3' } }]);
  });

  it('unhandled messages land in the Inbox; print output is collected', async () => {
    const p = await spawn('');
    const r = p.apply(msg('Random', 'x', {}, OTHER));
    assert.match(r.output, new RegExp(`New Message From ${OTHER}: Action = Random`));
    assert.equal(
      evalOk(p, 'Inbox[1].From .. " " .. Inbox[1].Data .. " " .. Inbox[1].Tags.Action'),
      `${OTHER} x Random`,
    );
    const printed = p.apply(msg('Eval', 'print("a", 1, {x = 2}); return 5'));
    assert.equal(printed.output, 'a\t1\t{"x":2}');
    assert.equal(printed.data, '5');
  });

  it('Eval only by the owner; another sender gets an error result and nothing changes', async () => {
    const p = await spawn('X = 1');
    const refused = p.apply(msg('Eval', 'X = 99', {}, OTHER));
    assert.match(refused.error ?? '', /Eval is only allowed from the process owner/);
    assert.equal(evalOk(p, 'X'), '1');
  });

  it('the owner may hand the process on or renounce it through the global Owner', async () => {
    const p = await spawn('X = 1');
    evalOk(p, `Owner = '${OTHER}'`);
    assert.match(p.apply(msg('Eval', 'X = 2')).error ?? '', /only allowed from the process owner/);
    assert.equal(p.apply(msg('Eval', "Owner = ''", {}, OTHER)).error, undefined, 'the new owner may Eval');
    assert.match(p.apply(msg('Eval', 'X = 3', {}, OTHER)).error ?? '', /only allowed/, 'renounced: nobody may');
    assert.match(p.apply(msg('Eval', 'X = 3', {}, '')).error ?? '', /only allowed/, 'not even an empty sender');
  });

  it('a failing handler is an Error result and its changes are rolled back; a dry run keeps nothing', async () => {
    const p = await spawn(`
      N = 0
      Handlers.add('boom', 'Boom', function() N = 100; Send({ Target = 'B', Data = 'x' }); error('kaboom') end)
      Handlers.add('inc', 'Inc', function() N = N + 1; return N end)
    `);
    const r = p.apply(msg('Boom'));
    assert.match(r.error ?? '', /handler 'boom' failed: .*kaboom/);
    assert.deepEqual(r.messages, [], 'no outbox from a failed message');
    assert.equal(evalOk(p, 'N'), '0');
    p.apply(msg('Inc'), 'dry-run');
    assert.equal(evalOk(p, 'N'), '0');
    assert.match(p.apply(msg('Eval', 'this is not lua')).error ?? '', /syntax error|expected/);
  });

  it('a failure after many messages (past a rollback base) leaves memory byte-identical to a twin that never got it', async () => {
    const code = `
      T = {}
      Handlers.add('put', 'Put', function(m) T[#T + 1] = string.rep(m.Data, 100) end)
      Handlers.add('bad', 'Bad', function(m) for i = 1, 1000 do T[#T + 1] = i end; error('no') end)`;
    const a = await spawn(code);
    const b = await spawn(code);
    for (let i = 0; i < 45; i++) {
      const m = msg('Put', `x${i}`);
      a.apply(m);
      b.apply(m);
      if (i % 10 === 3) assert.match(a.apply(msg('Bad')).error ?? '', /no/);
    }
    assert.equal(Buffer.compare(Buffer.from(a.memory()), Buffer.from(b.memory())), 0);
    const last = msg('Eval', '#T');
    assert.equal(a.apply(last).data, '45');
  });

  it('an endless loop hits the time limit and the process lives on', async () => {
    const p = await spawn('Y = 1');
    assert.match(p.apply(msg('Eval', 'Y = 2; while true do end')).error ?? '', /time limit exceeded/);
    assert.match(p.apply(msg('Eval', 'coroutine.wrap(function() while true do end end)()')).error ?? '', /time limit/);
    assert.equal(evalOk(p, 'Y'), '1');
  });
});

describe('AO Lua process: sandbox and determinism', () => {
  it('has no io, no debug, no file loading, no binary chunks; os.time is the message time', async () => {
    const p = await spawn('');
    assert.equal(
      evalOk(p, 'tostring(io) .. tostring(debug) .. tostring(dofile) .. tostring(loadfile) .. tostring(string.dump)'),
      'nilnilnilnilnil',
    );
    assert.equal(evalOk(p, 'tostring(os.execute) .. tostring(os.getenv) .. tostring(os.remove)'), 'nilnilnil');
    const m = msg('Eval', 'os.time()');
    assert.equal(p.apply(m).data, String(m.Timestamp));
    assert.match(p.apply(msg('Eval', "require('io')")).error ?? '', /not found/);
    assert.equal(evalOk(p, "require('json').encode({b = 1, a = {1, 2}})"), '{"a":[1,2],"b":1}');
    assert.equal(evalOk(p, 'require(\'json\').decode(\'{"x":[true,null,"\\\\u00e9"]}\').x[3]'), 'é');
  });

  it('two processes with the same history have identical memory (random and pairs order included)', async () => {
    const code = `
      Log = {}
      Handlers.add('r', 'R', function(m)
        local keys = {}
        for k in pairs({ alpha = 1, beta = 2, gamma = 3, delta = 4, [m.Data] = 5 }) do keys[#keys + 1] = k end
        table.insert(Log, table.concat(keys, '') .. math.random(1000000))
        return Log[#Log]
      end)`;
    const a = await spawn(code);
    const b = await spawn(code);
    const ms = Array.from({ length: 20 }, (_, i) => msg('R', `k${i}`));
    const outA = ms.map((m) => a.apply(m).data);
    const outB = ms.map((m) => b.apply(m).data);
    assert.deepEqual(outA, outB);
    assert.equal(new Set(outA).size, 20);
    assert.equal(Buffer.compare(Buffer.from(a.memory()), Buffer.from(b.memory())), 0);
  });

  it('checkpoint + restore keeps globals, closures and Inbox; the restored process continues identically', async () => {
    const p = await spawn(`
      local hidden = 0
      Handlers.add('inc', 'Inc', function(m) hidden = hidden + tonumber(m.Data); return hidden end)
    `);
    p.apply(msg('Inc', '5'));
    p.apply(msg('Stray'));
    const cp = p.checkpoint();
    const later = [msg('Inc', '2'), msg('Inc', '3')];
    const r1 = later.map((m) => p.apply(m).data);
    const q = await LuaProcess.restore(cp, { timeoutMs: 1000 });
    const r2 = later.map((m) => q.apply(m).data);
    assert.deepEqual(r1, ['7', '10']);
    assert.deepEqual(r2, r1, 'the closure upvalue survived the checkpoint');
    assert.equal(Buffer.compare(Buffer.from(p.memory()), Buffer.from(q.memory())), 0);
    assert.equal(q.apply(msg('Eval', '#Inbox')).data, '1');
  });

  it('a tampered or foreign checkpoint is refused', async () => {
    const p = await spawn('Z = 1');
    const cp = JSON.parse(p.checkpoint()) as Record<string, unknown>;
    await assert.rejects(LuaProcess.restore('{oops'), /not JSON/);
    await assert.rejects(LuaProcess.restore(JSON.stringify({ ...cp, format: 'x' })), /not a formation-lua-process/);
    const mem = Buffer.from(String(cp.memory), 'base64');
    mem[mem.length - 10] = (mem[mem.length - 10] ?? 0) ^ 0xff;
    await assert.rejects(
      LuaProcess.restore(JSON.stringify({ ...cp, memory: mem.toString('base64') })),
      /does not unpack|does not match/,
    );
    await assert.rejects(
      LuaProcess.restore(JSON.stringify({ ...cp, memorySha256: '00'.repeat(32) })),
      /does not match its hash/,
    );
    await assert.rejects(LuaProcess.restore(JSON.stringify({ ...cp, L: 8 })), /another Lua runtime build/);
  });

  it('spawn code that does not compile refuses the spawn', async () => {
    await assert.rejects(spawn('this is not lua'), /process code/);
  });
});
