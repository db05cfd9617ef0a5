-- Formation's AO process environment for Lua 5.4 (the web.vmdocker-lua-ao runtime).
-- Written from AO's public process specification (messages, Handlers, ao.send/spawn, Inbox, Eval);
-- it is not aos's source. The host (lua-process.mjs) calls __ao_boot once and __ao_handle per
-- message, both with JSON strings, and snapshots the whole Lua memory around each call: a failed
-- message or a dry run leaves no trace, and a checkpoint is that memory.

local rawnext, rawtype, rawtostring, rawpcall, rawload = next, type, tostring, pcall, load
local sort, concat, insert, remove = table.sort, table.concat, table.insert, table.remove
local sformat, sbyte, schar, ssub, sfind, sgsub, smatch = string.format, string.byte, string.char, string.sub,
  string.find, string.gsub, string.match

---------------------------------------------------------------------------------------------------
-- JSON (objects with sorted keys, so every encoding is deterministic)
---------------------------------------------------------------------------------------------------
local json = {}
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function isArray(t)
  local n = 0
  for k in rawnext, t do
    if math.type(k) ~= 'integer' or k < 1 then return false end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return false end end
  return true, n
end

local function encode(v, seen)
  local t = rawtype(v)
  if t == 'nil' then return 'null' end
  if t == 'boolean' then return v and 'true' or 'false' end
  if t == 'number' then
    if v ~= v or v == math.huge or v == -math.huge then return 'null' end
    if math.type(v) == 'integer' then return sformat('%d', v) end
    if v == math.floor(v) and v > -1e15 and v < 1e15 then return sformat('%d', math.floor(v)) end
    return sformat('%.17g', v)
  end
  if t == 'string' then
    return '"' .. sgsub(v, '[%c"\\]', function(c) return escapes[c] or sformat('\\u%04x', sbyte(c)) end) .. '"'
  end
  if t == 'table' then
    seen = seen or {}
    if seen[v] then error('json: cannot encode a table that contains itself', 0) end
    seen[v] = true
    local out = {}
    local arr, n = isArray(v)
    if arr and n > 0 then
      for i = 1, n do out[i] = encode(v[i], seen) end
      seen[v] = nil
      return '[' .. concat(out, ',') .. ']'
    end
    local keys = {}
    for k in rawnext, v do
      local kt = rawtype(k)
      if kt == 'string' or kt == 'number' then keys[#keys + 1] = rawtostring(k) end
    end
    sort(keys)
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      if rawtype(val) ~= 'function' then out[#out + 1] = encode(k) .. ':' .. encode(val, seen) end
    end
    seen[v] = nil
    return '{' .. concat(out, ',') .. '}'
  end
  return encode(rawtostring(v))
end
json.encode = function(v) return encode(v) end

local function decodeError(s, i, what) error(sformat('json: %s at character %d', what, i), 0) end
local function skip(s, i) local _, e = sfind(s, '^[ \t\r\n]*', i); return e + 1 end
local decodeValue
local function decodeString(s, i)
  local out, j = {}, i + 1
  while true do
    local c = ssub(s, j, j)
    if c == '' then decodeError(s, j, 'unterminated string') end
    if c == '"' then return concat(out), j + 1 end
    if c == '\\' then
      local e = ssub(s, j + 1, j + 1)
      local map = { b = '\b', f = '\f', n = '\n', r = '\r', t = '\t', ['"'] = '"', ['\\'] = '\\', ['/'] = '/' }
      if map[e] then out[#out + 1] = map[e]; j = j + 2
      elseif e == 'u' then
        local hex = ssub(s, j + 2, j + 5)
        if not smatch(hex, '^%x%x%x%x$') then decodeError(s, j, 'bad \\u escape') end
        local cp = tonumber(hex, 16)
        j = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and ssub(s, j, j + 1) == '\\u' then
          local lo = tonumber(ssub(s, j + 2, j + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00); j = j + 6 end
        end
        out[#out + 1] = utf8.char(cp)
      else decodeError(s, j, 'bad escape') end
    else
      local k = sfind(s, '["\\]', j) or (#s + 1)
      out[#out + 1] = ssub(s, j, k - 1)
      j = k
    end
  end
end
decodeValue = function(s, i, depth)
  if depth > 200 then decodeError(s, i, 'nesting too deep') end
  i = skip(s, i)
  local c = ssub(s, i, i)
  if c == '{' then
    local t = {}
    i = skip(s, i + 1)
    if ssub(s, i, i) == '}' then return t, i + 1 end
    while true do
      i = skip(s, i)
      if ssub(s, i, i) ~= '"' then decodeError(s, i, 'expected a string key') end
      local k; k, i = decodeString(s, i)
      i = skip(s, i)
      if ssub(s, i, i) ~= ':' then decodeError(s, i, "expected ':'") end
      local v; v, i = decodeValue(s, i + 1, depth + 1)
      t[k] = v
      i = skip(s, i)
      local d = ssub(s, i, i)
      if d == '}' then return t, i + 1 end
      if d ~= ',' then decodeError(s, i, "expected ',' or '}'") end
      i = i + 1
    end
  elseif c == '[' then
    local t, n = {}, 0
    i = skip(s, i + 1)
    if ssub(s, i, i) == ']' then return t, i + 1 end
    while true do
      local v; v, i = decodeValue(s, i, depth + 1)
      n = n + 1; t[n] = v
      i = skip(s, i)
      local d = ssub(s, i, i)
      if d == ']' then return t, i + 1 end
      if d ~= ',' then decodeError(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then return decodeString(s, i)
  elseif ssub(s, i, i + 3) == 'true' then return true, i + 4
  elseif ssub(s, i, i + 4) == 'false' then return false, i + 5
  elseif ssub(s, i, i + 3) == 'null' then return nil, i + 4
  else
    local num = smatch(s, '^-?%d+%.?%d*[eE]?[-+]?%d*', i)
    if not num or num == '' then decodeError(s, i, 'unexpected character') end
    local v = math.tointeger(tonumber(num)) or tonumber(num)
    if v == nil then decodeError(s, i, 'bad number') end
    return v, i + #num
  end
end
json.decode = function(s)
  if rawtype(s) ~= 'string' then error('json.decode expects a string', 2) end
  local v, i = decodeValue(s, 1, 0)
  i = skip(s, i)
  if i <= #s then decodeError(s, i, 'trailing characters') end
  return v
end

---------------------------------------------------------------------------------------------------
-- Output (print) and stringify
---------------------------------------------------------------------------------------------------
local output = {}
local function stringify(v)
  if rawtype(v) == 'table' then
    local ok, s = rawpcall(encode, v)
    return ok and s or rawtostring(v)
  end
  return rawtostring(v)
end
function print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = stringify((select(i, ...))) end
  output[#output + 1] = concat(parts, '\t')
end

---------------------------------------------------------------------------------------------------
-- Messages: tags as a table and as an array; tags also readable as message fields
---------------------------------------------------------------------------------------------------
local function tagsToTable(list)
  local t = {}
  for _, tag in ipairs(list or {}) do
    if rawtype(tag) == 'table' and tag.name ~= nil then t[tag.name] = tag.value end
  end
  return t
end

local function tagList(m)
  -- an outgoing message: Tags may be a table or an array; other string fields are tags as well
  local list, seen = {}, {}
  local function add(name, value)
    if rawtype(name) ~= 'string' or value == nil or seen[name] then return end
    seen[name] = true
    list[#list + 1] = { name = name, value = rawtostring(value) }
  end
  local reserved = { Target = true, Data = true, Tags = true, Module = true, Anchor = true, Id = true, From = true, Owner = true }
  local fields = {}
  for k in rawnext, m do if rawtype(k) == 'string' and not reserved[k] then fields[#fields + 1] = k end end
  sort(fields)
  for _, k in ipairs(fields) do
    local v = m[k]
    if rawtype(v) == 'string' or rawtype(v) == 'number' or rawtype(v) == 'boolean' then add(k, v) end
  end
  local tags = m.Tags
  if rawtype(tags) == 'table' then
    if isArray(tags) then
      for _, t in ipairs(tags) do if rawtype(t) == 'table' then add(t.name, t.value) end end
    else
      local names = {}
      for k in rawnext, tags do if rawtype(k) == 'string' then names[#names + 1] = k end end
      sort(names)
      for _, k in ipairs(names) do add(k, tags[k]) end
    end
  end
  return list
end

local function dataText(d)
  if d == nil then return '' end
  if rawtype(d) == 'table' then return encode(d) end
  return rawtostring(d)
end

---------------------------------------------------------------------------------------------------
-- ao
---------------------------------------------------------------------------------------------------
ao = { id = '', env = {}, _module = '', reference = 0 }
ao.outbox = { Messages = {}, Spawns = {}, Output = {} }

local function receiveUnsupported()
  error('receive() is not supported by this runtime: add a handler for the reply instead', 2)
end

function ao.send(m)
  if rawtype(m) ~= 'table' then error('ao.send expects a message table {Target=..., Data=..., Tags=...}', 2) end
  if rawtype(m.Target) ~= 'string' or m.Target == '' then error('ao.send: the message needs a Target (process id)', 2) end
  ao.reference = ao.reference + 1
  local tags = tagList(m)
  local hasRef = false
  for _, t in ipairs(tags) do if t.name == 'Reference' then hasRef = true end end
  if not hasRef then tags[#tags + 1] = { name = 'Reference', value = rawtostring(ao.reference) } end
  local out = { Target = m.Target, Data = dataText(m.Data), Tags = tags }
  insert(ao.outbox.Messages, out)
  return { Target = out.Target, Data = out.Data, Tags = tagsToTable(tags), receive = receiveUnsupported }
end

function ao.spawn(module, m)
  if rawtype(module) ~= 'string' or module == '' then error('ao.spawn: the first argument is the module id', 2) end
  m = m or {}
  if rawtype(m) ~= 'table' then error('ao.spawn expects a message table as its second argument', 2) end
  ao.reference = ao.reference + 1
  local tags = tagList(m)
  tags[#tags + 1] = { name = 'Reference', value = rawtostring(ao.reference) }
  insert(ao.outbox.Spawns, { Module = module, Data = dataText(m.Data), Tags = tags })
  return { Module = module, Tags = tagsToTable(tags), receive = receiveUnsupported }
end

function ao.isTrusted(msg) return (Owner ~= nil and Owner ~= '' and msg.From == Owner) or msg.From == ao.id end

Send = function(m) return ao.send(m) end
Spawn = function(module, m) return ao.spawn(module, m) end
Inbox = {}
local INBOX_MAX = 10000

---------------------------------------------------------------------------------------------------
-- Handlers
---------------------------------------------------------------------------------------------------
Handlers = { list = {}, utils = {} }

local function hasMagic(s) return sfind(s, '[%^%$%(%)%%%.%[%]%*%+%-%?]') ~= nil end

-- does one tag/field value match one pattern: '_' any value, a string (exact, or a Lua pattern when
-- it has pattern characters), a function(value, msg), or a list of those (any)
local function valueMatches(pattern, value, msg)
  local pt = rawtype(pattern)
  if pattern == '_' then return value ~= nil end
  if pt == 'function' then return pattern(value, msg) and true or false end
  if value == nil then return false end
  if pt == 'string' then
    if value == pattern then return true end
    return rawtype(value) == 'string' and hasMagic(pattern) and smatch(value, '^' .. pattern .. '$') ~= nil
  end
  if pt == 'table' then
    for _, p in ipairs(pattern) do if valueMatches(p, value, msg) then return true end end
    return false
  end
  return value == pattern
end

-- a pattern's verdict: -1 run and stop, 1 run and continue, 0 skip
local function verdict(pattern, msg)
  local r
  local pt = rawtype(pattern)
  if pt == 'function' then r = pattern(msg)
  elseif pt == 'string' then r = msg.Action == pattern
  elseif pt == 'table' then
    r = true
    for k, p in pairs(pattern) do
      local v = msg[k]
      if v == nil and rawtype(msg.Tags) == 'table' then v = msg.Tags[k] end
      if not valueMatches(p, v, msg) then r = false; break end
    end
  else r = false end
  if r == true then return -1 end
  if r == false or r == nil then return 0 end
  if r == 'continue' or r == 1 then return 1 end
  if r == 'break' or r == -1 then return -1 end
  if r == 'skip' or r == 0 then return 0 end
  error('a handler pattern must return true/false, -1/0/1 or "break"/"skip"/"continue" (got ' .. rawtostring(r) .. ')', 0)
end

local function findHandler(name)
  for i, h in ipairs(Handlers.list) do if h.name == name then return i end end
end

local function newHandler(name, pattern, handle, maxRuns)
  if rawtype(name) ~= 'string' then error('Handlers: the first argument is the handler name (a string)', 3) end
  if handle == nil and rawtype(pattern) == 'function' then handle, pattern = pattern, name end
  if rawtype(handle) ~= 'function' then error('Handlers: the handler must be a function', 3) end
  if maxRuns ~= nil and (math.type(maxRuns) ~= 'integer' or maxRuns < 1) then error('Handlers: maxRuns must be a positive integer', 3) end
  return { name = name, pattern = pattern, handle = handle, maxRuns = maxRuns }
end

local function place(h, at)
  local i = findHandler(h.name)
  if i then Handlers.list[i] = h else insert(Handlers.list, at or (#Handlers.list + 1), h) end
  return #Handlers.list
end

function Handlers.add(name, pattern, handle, maxRuns) return place(newHandler(name, pattern, handle, maxRuns)) end
function Handlers.append(name, pattern, handle, maxRuns) return place(newHandler(name, pattern, handle, maxRuns)) end
function Handlers.prepend(name, pattern, handle, maxRuns) return place(newHandler(name, pattern, handle, maxRuns), 1) end
function Handlers.once(name, pattern, handle)
  if handle == nil and rawtype(pattern) == 'function' then handle, pattern = pattern, name end
  if rawtype(name) ~= 'string' then name, pattern, handle = '_once_' .. rawtostring(#Handlers.list), name, pattern end
  return place(newHandler(name, pattern, handle, 1))
end
function Handlers.before(target)
  return { add = function(name, pattern, handle, maxRuns)
    local h = newHandler(name, pattern, handle, maxRuns)
    local old = findHandler(name); if old then remove(Handlers.list, old) end
    local i = findHandler(target) or (#Handlers.list + 1)
    insert(Handlers.list, i, h)
    return #Handlers.list
  end }
end
function Handlers.after(target)
  return { add = function(name, pattern, handle, maxRuns)
    local h = newHandler(name, pattern, handle, maxRuns)
    local old = findHandler(name); if old then remove(Handlers.list, old) end
    local i = findHandler(target)
    insert(Handlers.list, i and (i + 1) or (#Handlers.list + 1), h)
    return #Handlers.list
  end }
end
function Handlers.remove(name)
  local i = findHandler(name)
  if i then remove(Handlers.list, i); return true end
  return false
end

function Handlers.utils.hasMatchingTag(name, value)
  return function(msg) return rawtype(msg.Tags) == 'table' and msg.Tags[name] == value end
end
function Handlers.utils.hasMatchingTagOf(name, values)
  return function(msg)
    for _, v in ipairs(values) do if rawtype(msg.Tags) == 'table' and msg.Tags[name] == v then return true end end
    return false
  end
end
function Handlers.utils.hasMatchingData(value) return function(msg) return msg.Data == value end end
function Handlers.utils.reply(input)
  return function(msg)
    if rawtype(input) == 'string' then msg.reply({ Data = input }) else msg.reply(input) end
  end
end
function Handlers.utils.continue(pattern)
  return function(msg) if verdict(pattern, msg) ~= 0 then return 1 end return 0 end
end

-- run the handlers in order; true when a handler took the message (a -1 verdict)
function Handlers.evaluate(msg, env)
  local handled, value = false, nil
  local i = 1
  while i <= #Handlers.list do
    local h = Handlers.list[i]
    local v = verdict(h.pattern, msg)
    local removed = false
    if v ~= 0 then
      if v < 0 then handled = true end
      local ok, err = rawpcall(h.handle, msg, env)
      if not ok then error(sformat("handler '%s' failed: %s", rawtostring(h.name), rawtostring(err)), 0) end
      if err ~= nil then value = err end
      if h.maxRuns then
        h.maxRuns = h.maxRuns - 1
        if h.maxRuns <= 0 and Handlers.list[i] == h then remove(Handlers.list, i); removed = true end
      end
      if v < 0 then return true, value end
    end
    if not removed then i = i + 1 end
  end
  return handled, value
end

---------------------------------------------------------------------------------------------------
-- Sandbox: no files, no OS, no binary chunks; time is the message's, randomness seeded per process
---------------------------------------------------------------------------------------------------
local currentTimestamp = 0
local safeLoad = function(chunk, name, _, env) return rawload(chunk, name, 't', env or _G) end
load = safeLoad
io, debug, dofile, loadfile = nil, nil, nil, nil
string.dump = nil
os = {
  time = function(t)
    if t ~= nil then error('os.time(table) is not available: the process clock is the message Timestamp', 2) end
    return currentTimestamp
  end,
  clock = function() return 0 end,
}
package.loaded.io, package.loaded.os, package.loaded.debug = nil, os, nil
package.path, package.cpath = '', ''
package.loadlib = nil
package.searchers = { package.searchers[1] }
package.preload.json = function() return json end
package.preload['.json'] = function() return json end
package.preload.ao = function() return ao end
package.preload['.handlers'] = function() return Handlers end
package.preload['.handlers-utils'] = function() return Handlers.utils end

---------------------------------------------------------------------------------------------------
-- Host entry points
---------------------------------------------------------------------------------------------------
local function seedFrom(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ sbyte(s, i)) * 16777619) & 0xffffffff end
  return h
end

local function normalize(m)
  local msg = {}
  for k, v in rawnext, m do msg[k] = v end
  msg.TagArray = m.Tags or {}
  msg.Tags = tagsToTable(msg.TagArray)
  for _, t in ipairs(msg.TagArray) do if msg[t.name] == nil then msg[t.name] = t.value end end
  msg.Data = msg.Data or ''
  msg.reply = function(r)
    if rawtype(r) == 'string' then r = { Data = r } end
    r = r or {}
    local out = {}
    for k, v in rawnext, r do out[k] = v end
    out.Target = msg.Tags['Reply-To'] or msg.From
    if out.Target == nil then error('reply: the message has no sender', 2) end
    out['X-Reference'] = msg.Tags.Reference
    return ao.send(out)
  end
  msg.forward = function(target, fwd)
    local out = { Target = target, Data = msg.Data, ['X-Origin'] = msg.From, ['X-Reference'] = msg.Tags.Reference }
    for _, t in ipairs(msg.TagArray) do if out[t.name] == nil and t.name ~= 'Reference' then out[t.name] = t.value end end
    for k, v in rawnext, fwd or {} do out[k] = v end
    return ao.send(out)
  end
  return msg
end

local function resultOf(data, err)
  local r = { Messages = ao.outbox.Messages, Spawns = ao.outbox.Spawns, Output = concat(output, '\n'), Data = data or '' }
  if err then r.Error = err; r.Messages = {}; r.Spawns = {} end
  ao.outbox = { Messages = {}, Spawns = {}, Output = {} }
  output = {}
  return encode(r)
end

local function evaluate(code)
  local fn, err = rawload('return ' .. code, 'Eval', 't', _G)
  if not fn then fn, err = rawload(code, 'Eval', 't', _G) end
  if not fn then error(err, 0) end
  local res = table.pack(fn())
  if res.n == 0 or res[1] == nil then return '' end
  local parts = {}
  for i = 1, res.n do parts[i] = stringify(res[i]) end
  return concat(parts, '\t')
end

-- spawn: env = {Process = {Id, Owner, Tags}, Module = {Id, Tags}}, code run when the spawn asks for it
function __ao_boot(envJson, code)
  local env = json.decode(envJson)
  env.Process.TagArray = env.Process.Tags or {}
  env.Process.Tags = tagsToTable(env.Process.TagArray)
  env.Module = env.Module or { Id = '', Tags = {} }
  env.Module.TagArray = env.Module.Tags or {}
  env.Module.Tags = tagsToTable(env.Module.TagArray)
  ao.id, ao.env, ao._module = env.Process.Id, env, env.Module.Id
  Owner = env.Process.Owner
  Name = env.Process.Tags.Name or 'aos'
  math.randomseed(seedFrom(ao.id))
  currentTimestamp = 0
  if code and code ~= '' then
    local fn, err = rawload(code, 'process', 't', _G)
    if not fn then error('process code does not compile: ' .. rawtostring(err), 0) end
    fn()
  end
  return resultOf('', nil)
end

function __ao_handle(input)
  local ok, res = rawpcall(function()
    local msg = normalize(json.decode(input))
    currentTimestamp = math.tointeger(msg.Timestamp) or 0
    if msg.Action == 'Eval' then
      -- the global Owner (the spawner at first): the owner may hand the process on or renounce it
      -- (Owner = '') by Eval, as aos processes do
      if rawtype(Owner) ~= 'string' or Owner == '' or msg.From ~= Owner then
        error('Eval is only allowed from the process owner (' .. rawtostring(Owner) .. '), not from ' .. rawtostring(msg.From), 0)
      end
      return evaluate(msg.Data)
    end
    local handled, value = Handlers.evaluate(msg, ao.env)
    if not handled then
      local copy = {}
      for k, v in rawnext, msg do if rawtype(v) ~= 'function' then copy[k] = v end end
      Inbox[#Inbox + 1] = copy
      if #Inbox > INBOX_MAX then remove(Inbox, 1) end
      print('New Message From ' .. rawtostring(msg.From) .. ': Action = ' .. rawtostring(msg.Action))
    end
    if value == nil then return '' end
    return stringify(value)
  end)
  if ok then return resultOf(res, nil) end
  return resultOf('', rawtostring(res))
end
