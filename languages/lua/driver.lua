-- polyrun's Lua session driver: docs/sessions.md (protocol version 1).
--
-- Globals persist across cells; a `local` lives only in its own cell (each cell is a chunk).
-- A cell that is an expression list, or ends in one (`x = 41\nx + 1`), shows its values as the
-- result (tables as {1, 2, k = v}; metatable fields __html/__markdown/__svg/__png/__jpeg add
-- rich forms) unless they are nothing/nil or the cell ends in ";". polyrun.display(v[, mime])
-- shows a value on the spot; io.read/io.lines()/io.stdin ask the host for input lines.
--
-- Interrupts need lua.c itself. Plain Lua has no signal API; the only way to stop a running
-- `while true do end` is the SIGINT handler lua.c installs around each chunk it runs
-- (docall). That handler is one-shot: it resets SIGINT to the default (terminate) and makes the
-- next Lua instruction raise "interrupted!". To be armed again, control must go back to lua.c
-- and through docall once more. So session.sh starts `lua5.4 -i driver.lua FIFO` with the FIFO
-- on fd 0: this file sets up and queues one REPL line (REARM) that calls serve(); serve() does
-- the work until an interrupt has been used, queues the next REARM line and returns. The REPL
-- reads that line, and its docall arms the handler again. session.sh passes SIGINTs on only
-- while the handler is armed: one arriving in between would kill lua.
--
-- session.sh puts the command channel on fd 4, the real stdout on fd 5, and
-- /dev/null on fd 1, where lua.c's banner and readline's echo of REARM lines go. Lua can open
-- inherited descriptors only as /proc/self/fd/N (new, inheritable descriptors), so user output
-- is rerouted here (print, io.write, io.stdout) and the shell commands of os.execute/io.popen
-- get no command channel as stdin, the real stdout and none of the driver's descriptors (3-9).
--
-- The driver logic runs in a coroutine created before any interrupt (DRIVER below). lua.c
-- sets its "interrupted!" hook on the main thread only, so frames, replies and command reads
-- are never cut in half by it. Cells run on the main thread, where the hook can reach them.
local REARM = "debug.getregistry().polyrun()\n"
local CLOSE_FDS = "3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-"

local rearm = assert(io.open(assert(arg[1], "usage: lua5.4 -i driver.lua FIFO"), "w"))
rearm:setvbuf("no")
os.remove(arg[1])
local GENERATION = arg[1] .. ".gen"
arg[1] = nil
local frames = assert(io.open("/proc/self/fd/3", "a"))
frames:setvbuf("no")
local commands = assert(io.open("/proc/self/fd/4", "r"))
-- Line-buffered so output of a long cell shows up as it is printed.
local stdout = assert(io.open("/proc/self/fd/5", "a"))
stdout:setvbuf("line")

-- The standard Debian dkjson, found by path: package.path starts with the user's ./?.lua.
local json = assert(loadfile(assert(package.searchpath("dkjson",
  "/usr/share/lua/5.4/?.lua;/usr/local/share/lua/5.4/?.lua"))))()
local OBJECT = { __jsontype = "object" }
local ARRAY = { __jsontype = "array" }

local EINTR = 4
local SIGINT_BIT = 1 << 1 -- SIGINT (2) in /proc/self/stat's mask of caught signals

-- Valid UTF-8 for JSON: invalid bytes become U+FFFD.
local function utf8safe(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1) .. "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

-- Text shown for a value or an error: the host ends the session on a frame over 32 MiB.
local TEXT_LIMIT = 1 << 20
local function clip(s)
  if #s <= TEXT_LIMIT then return s end
  return s:sub(1, TEXT_LIMIT) .. ("… (%d more bytes)"):format(#s - TEXT_LIMIT)
end

-- Writes one frame after the user's buffered output (docs/sessions.md: ordering).
local function send(frame)
  pcall(stdout.flush, stdout)
  frames:write(json.encode(frame) .. "\n") -- one write(2): frames is unbuffered
end

---------------------------------------------------------------------------- values as text

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
local function quote(s)
  local pattern = utf8.len(s) and '[%c"\\]' or '[%c"\\\128-\255]'
  return '"' .. s:gsub(pattern, function(c)
    return ESCAPES[c] or (c:byte() < 128 and ("\\%d"):format(c:byte()) or ("\\x%02X"):format(c:byte()))
  end) .. '"'
end

local KEY_RANK = { string = 1, number = 2, boolean = 3 }
local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (KEY_RANK[ta] or 4) < (KEY_RANK[tb] or 4) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local MAX_ITEMS, MAX_DEPTH = 100, 4

-- The result's text/plain: strings quoted, tables as {1, 2, k = v, ["a b"] = v}, a table
-- with __tostring through it. Raw access only: no __index/__pairs/__len runs.
local function pretty(v, depth, seen)
  local t = type(v)
  if t == "string" then return quote(v) end
  local mt = getmetatable(v)
  if t ~= "table" or (type(mt) == "table" and rawget(mt, "__tostring")) then return tostring(v) end
  depth, seen = depth or 0, seen or {}
  if seen[v] then return "<cycle>" end
  if depth >= MAX_DEPTH then return "{…}" end
  seen[v] = true
  local parts, n = {}, rawlen(v)
  for i = 1, math.min(n, MAX_ITEMS) do parts[#parts + 1] = pretty(rawget(v, i), depth + 1, seen) end
  local keys = {}
  for k in next, v do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  for _, k in ipairs(keys) do
    if #parts >= MAX_ITEMS then
      parts[#parts + 1] = "…"
      break
    end
    local name = (type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k]) and k
      or "[" .. pretty(k, depth + 1, seen) .. "]"
    parts[#parts + 1] = name .. " = " .. pretty(rawget(v, k), depth + 1, seen)
  end
  seen[v] = nil
  return #parts == 0 and "{}" or "{" .. table.concat(parts, ", ") .. "}"
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a << 16 | (b or 0) << 8 | (c or 0)
    local function digit(shift) local d = (n >> shift & 63) + 1 return B64:sub(d, d) end
    out[#out + 1] = digit(18) .. digit(12) .. (b and digit(6) or "=") .. (c and digit(0) or "=")
  end
  return table.concat(out)
end

local function is_binary(mime)
  return (mime:match("^image/") and mime ~= "image/svg+xml") or mime == "application/pdf"
end

local function encode(mime, s)
  s = tostring(s)
  return is_binary(mime) and base64(s) or utf8safe(s)
end

-- Metatable fields that give a value a rich representation: a string, or a function of the value.
local RICH = { { "__html", "text/html" }, { "__markdown", "text/markdown" },
  { "__svg", "image/svg+xml" }, { "__png", "image/png" }, { "__jpeg", "image/jpeg" } }

local function bundle(...)
  local n, texts = select("#", ...), {}
  for i = 1, n do texts[i] = pretty((select(i, ...))) end
  local data = { ["text/plain"] = utf8safe(clip(table.concat(texts, ", "))) }
  local mt = n == 1 and getmetatable((...))
  if type(mt) == "table" then
    for _, r in ipairs(RICH) do
      local how = rawget(mt, r[1])
      local ok, rep = true, how
      if type(how) == "function" then ok, rep = pcall(how, (...)) end
      if ok and rep ~= nil then data[r[2]] = encode(r[2], rep) end
    end
  end
  return data
end

-- polyrun.display(value): a display frame with value's bundle; polyrun.display(text, mime):
-- text as that MIME type (bytes for images, base64-encoded here).
polyrun = {
  display = function(value, mime)
    local data = mime and { ["text/plain"] = utf8safe(clip(pretty(value))), [mime] = encode(mime, value) }
      or bundle(value)
    send({ type = "display", data = data, metadata = setmetatable({}, OBJECT) })
  end,
}

---------------------------------------------------------------------------- input

-- Reads the next command line. EINTR (a SIGINT arrived) comes back as nil, true.
local function read_command()
  local line, err, code = commands:read("l")
  if line then return line end
  if code == EINTR then return nil, true end
  if err then io.stderr:write("polyrun driver: command channel: ", err, "\n") end
  stdout:flush()
  os.exit(0) -- end of file: the host closed the session
end

-- User code's standard input: io.read, io.lines(), io.stdin and io.input() read lines the
-- host sends in input_reply frames, asked for with input_request. Each cell starts afresh.
local input = { buf = "", eof = false }

local function fill()
  if input.eof then return false end
  send({ type = "input_request", prompt = "", password = false })
  while true do
    local line, interrupted = read_command()
    if interrupted then error("interrupted!", 0) end
    local cmd = json.decode(line)
    if type(cmd) == "table" and cmd.type == "input_reply" then
      if cmd.eof or type(cmd.value) ~= "string" then
        input.eof = true
        return false
      end
      input.buf = input.buf .. cmd.value .. "\n"
      return true
    end
    send({ type = "protocol_error", message = "expected input_reply" })
  end
end

local function read_one(fmt)
  if type(fmt) == "number" then
    while #input.buf < fmt and fill() do end
    if #input.buf == 0 and (fmt > 0 or input.eof) then return nil end
    local s = input.buf:sub(1, fmt)
    input.buf = input.buf:sub(fmt + 1)
    return s
  end
  fmt = tostring(fmt):gsub("^%*", ""):sub(1, 1)
  if fmt == "a" then
    while fill() do end
    local s = input.buf
    input.buf = ""
    return s
  elseif fmt == "l" or fmt == "L" then
    while not input.buf:find("\n", 1, true) and fill() do end
    if input.buf == "" then return nil end
    local line, rest = input.buf:match("^([^\n]*\n?)(.*)$")
    input.buf = rest
    return fmt == "l" and line:gsub("\n$", "") or line
  elseif fmt == "n" then
    while not input.buf:find("%S%s") and fill() do end
    local token, rest = input.buf:match("^%s*(%S*)(.*)$")
    input.buf = rest
    return math.tointeger(tonumber(token)) or tonumber(token)
  end
  error("bad argument #1 to 'read' (invalid format)", 3)
end

local stdin_methods = {}
function stdin_methods:read(...)
  local n = select("#", ...)
  if n == 0 then return read_one("l") end
  local out = {}
  for i = 1, n do
    out[i] = read_one((select(i, ...)))
    if out[i] == nil then return table.unpack(out, 1, i) end
  end
  return table.unpack(out, 1, n)
end
function stdin_methods:lines(...)
  local formats = table.pack(...)
  return function() return self:read(table.unpack(formats, 1, formats.n)) end
end
function stdin_methods:close() return true end
function stdin_methods:setvbuf() return true end
function stdin_methods:flush() return self end
function stdin_methods:seek() return nil, "Illegal seek", 29 end
function stdin_methods:write() return nil, "Bad file descriptor", 9 end
local stdin = setmetatable({}, { __index = stdin_methods, __name = "FILE*",
  __tostring = function() return "file (stdin)" end })

local current_input = stdin
local io_input, io_lines, io_type = io.input, io.lines, io.type
io.stdin = stdin
function io.input(file)
  if file == nil then return current_input end
  current_input = file == stdin and stdin or io_input(file)
  return current_input
end
function io.read(...) return current_input:read(...) end
function io.lines(name, ...)
  if name ~= nil then return io_lines(name, ...) end
  return current_input:lines(...)
end
function io.type(obj)
  if obj == stdin then return "file" end
  return io_type(obj)
end

---------------------------------------------------------------------------- output, processes

io.stdout = stdout
io.output(stdout)
local tostring_, concat, pack = tostring, table.concat, table.pack
function print(...)
  local args = pack(...)
  for i = 1, args.n do args[i] = tostring_(args[i]) end
  stdout:write(concat(args, "\t", 1, args.n), "\n")
end

-- The prefix runs in the command's shell before the command itself.
local function shell_prefix(keep_stdin, keep_stdout)
  return ("exec %s%s%s\n"):format(keep_stdin and "" or "</dev/null ", keep_stdout and "" or ">&5 ",
    CLOSE_FDS)
end

local os_execute, io_popen = os.execute, io.popen
-- Through popen, not system(): system() ignores SIGINT while it waits, and an interrupt sent
-- then would be lost to lua.c's handler (session.sh sends one per arming). The command's stdin
-- is the pipe, closed at once: end of file, as from /dev/null.
function os.execute(cmd)
  if cmd == nil then return os_execute() end
  stdout:flush()
  local child = io_popen(shell_prefix(true, false) .. cmd, "w")
  return child:close()
end
function io.popen(cmd, mode)
  stdout:flush()
  local writing = type(mode) == "string" and mode:find("w") ~= nil
  return io_popen(shell_prefix(writing, not writing) .. tostring(cmd), mode)
end

---------------------------------------------------------------------------- cells

local count = 0

-- `return expr`, with expr passed through a function so that a call in it is not a tail call
-- (which would drop the cell's frame from tracebacks). Lines keep their numbers.
local function returning(expr, name)
  return load("return (function(...) return ... end)(" .. expr .. "\n)", name)
    or load("return " .. expr, name) -- `1;`: no call to keep out of tail position anyway
end

-- The cell as a function: an expression (`return code`), else statements whose last line(s)
-- are an expression to show (`x = 41\nx + 1`), else plain statements. A split is taken only
-- where the head compiles alone, so the tail starts at the chunk's top level.
local function compile(code, name)
  if load("return " .. code, name) then return returning(code, name) end
  local lines = {}
  for l in (code .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  for k = 1, math.min(#lines - 1, 10) do
    local head = table.concat(lines, "\n", 1, #lines - k)
    local tail = table.concat(lines, "\n", #lines - k + 1)
    if tail:find("%S") and load("return " .. tail, name) and load(head, name) then
      local f = load(head .. "\nreturn (function(...) return ... end)(" .. tail .. "\n)", name)
        or load(head .. "\nreturn " .. tail, name)
      if f then return f end
    end
  end
  return load(code, name)
end

-- "cell 3:2: message" -> 2, "message" (only the positions of cells are dropped).
local function split_position(msg)
  local line, rest = msg:match("^cell %d+:(%d+): (.*)$")
  if line then return tonumber(line), rest end
  return nil, msg
end

-- The cell being run. Written only by run_cell/on_error (inside the cell's xpcall) and by the
-- driver coroutine, so an interrupt landing between them loses nothing (see serve()).
local current

local function on_error(e)
  local c = current
  c.started = true
  local msg
  if type(e) == "string" then
    msg = e
  else
    local ok, s = pcall(pretty, e)
    msg = ok and s or "(error object)"
  end
  local _, text = split_position(msg)
  -- lua.c's hook raises "where: interrupted!" in whatever Lua function runs at the time.
  local interrupted = text:match("interrupted!$") ~= nil
  if interrupted then text = "interrupted!" end
  local frames_, line = {}, nil
  for level = 2, math.huge do
    local info = debug.getinfo(level, "Sln")
    if not info then break end
    if info.source:match("^=cell %d+$") then
      line = line or (info.source == c.source and info.currentline or nil)
      local what = info.what == "main" and "main chunk"
        or (info.name and ("function '" .. info.name .. "'") or ("function <%s:%d>"):format(info.short_src, info.linedefined))
      frames_[#frames_ + 1] = ("%s:%d: in %s"):format(info.short_src, info.currentline, what)
    end
  end
  c.outcome = {
    status = interrupted and "interrupted" or "error",
    error = { name = interrupted and "interrupted" or "error", message = text, line = line },
    traceback = frames_,
  }
end

local function run_cell(c)
  c.started = true
  c.outcome = { status = "ok", result = (function(...)
    local n = select("#", ...)
    if n == 0 or (n == 1 and (...) == nil) then return nil end
    return bundle(...)
  end)(c.fn()) }
end

---------------------------------------------------------------------------- the driver coroutine

-- Field 34 of /proc/self/stat (sigcatch); the fields after the command name start at 3.
local SIGCATCH = "%) " .. ("%S+ "):rep(31) .. "(%d+)"

-- Whether lua.c's SIGINT handler is still installed: it uninstalls itself when it fires, also
-- when user code swallowed the "interrupted!" error with pcall.
local function interrupt_armed()
  local f = io.open("/proc/self/stat")
  if not f then return true end
  local caught = tonumber(f:read("a"):match(SIGCATCH))
  f:close()
  return not caught or caught & SIGINT_BIT ~= 0
end

local function error_frame(err, traceback)
  local tb = {}
  for i = #traceback, 1, -1 do tb[#tb + 1] = utf8safe(traceback[i]) end -- newest last
  return { type = "error", name = err.name, message = utf8safe(clip(err.message)), line = err.line,
    column = json.null, traceback = setmetatable(tb, ARRAY) }
end

local function execute(cmd)
  count = count + 1
  input.buf, input.eof = "", false
  local source = "=cell " .. count
  local fn, err = compile(tostring(cmd.code or ""), source)
  if not fn then
    local line, text = split_position(err)
    send(error_frame({ name = "syntax error", message = text, line = line }, {}))
    send({ type = "done", id = cmd.id, status = "error" })
    return
  end
  current = { fn = fn, source = source }
  coroutine.yield("run")
  local outcome = current.outcome
  current = nil
  if outcome.result and not tostring(cmd.code):match(";%s*$") then
    send({ type = "result", data = outcome.result })
  elseif outcome.error then
    send(error_frame(outcome.error, outcome.traceback))
  end
  send({ type = "done", id = cmd.id, status = outcome.status })
  if not interrupt_armed() then coroutine.yield("rearm") end
end

local function resolve(path)
  local value = _G
  for name in path:gmatch("[^%.:]+") do
    if type(value) == "string" then value = string end
    if type(value) ~= "table" then return nil end
    value = rawget(value, name)
  end
  return value
end

-- Completes a global or a field path (`string.fo`, `t:ins`) before the cursor.
local function complete(cmd)
  local code, cursor = tostring(cmd.code or ""), math.tointeger(cmd.cursor_pos) or 0
  local cut = utf8.len(code) and utf8.offset(code, cursor + 1) or math.min(cursor, #code) + 1
  local before = code:sub(1, cut - 1)
  local path = before:match("[%a_][%w_%.:]*$") or ""
  local base, sep, partial = path:match("^(.*)([%.:])([%w_]*)$")
  local names = {}
  if base then
    local value = resolve(base)
    if type(value) == "string" then value = string end
    local sources = { value }
    local mt = type(value) == "table" and getmetatable(value)
    if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then sources[2] = rawget(mt, "__index") end
    for _, t in ipairs(sources) do
      if type(t) == "table" then
        for k, v in next, t do
          if type(k) == "string" and (sep == "." or type(v) == "function") then names[#names + 1] = k end
        end
      end
    end
  else
    partial = path
    for k in next, _G do if type(k) == "string" then names[#names + 1] = k end end
    for k in pairs(KEYWORDS) do names[#names + 1] = k end
  end
  local matches, seen = {}, {}
  for _, k in ipairs(names) do
    if k:sub(1, #partial) == partial and k:match("^[%a_][%w_]*$") and not seen[k] then
      seen[k] = true
      matches[#matches + 1] = k
    end
  end
  table.sort(matches)
  return { type = "complete_reply", id = cmd.id, matches = setmetatable(matches, ARRAY),
    cursor_start = cursor - #partial, cursor_end = cursor }
end

local function is_complete(cmd)
  local code = tostring(cmd.code or "")
  local _, err = load(code, "=cell")
  if not err or load("return " .. code, "=cell") then
    return { type = "is_complete_reply", id = cmd.id, status = "complete", indent = "" }
  end
  if not err:find("<eof>'?$") then
    return { type = "is_complete_reply", id = cmd.id, status = "invalid", indent = "" }
  end
  local in_string = err:find("unfinished long") ~= nil
  local indent = in_string and "" or (code:match("([ \t]*)[^\n]*$") .. "  ")
  return { type = "is_complete_reply", id = cmd.id, status = "incomplete", indent = indent }
end

-- The value named at the cursor: its type and value, or where a function was defined.
local function inspect(cmd)
  local code, cursor = tostring(cmd.code or ""), math.tointeger(cmd.cursor_pos) or 0
  local cut = utf8.len(code) and utf8.offset(code, cursor + 1) or math.min(cursor, #code) + 1
  local path = (code:sub(1, cut - 1):match("[%a_][%w_%.:]*$") or "") .. (code:sub(cut):match("^[%w_]*") or "")
  local value = path ~= "" and resolve(path) or nil
  if value == nil then
    return { type = "inspect_reply", id = cmd.id, found = false, data = setmetatable({}, OBJECT) }
  end
  local text = type(value) .. ": " .. pretty(value)
  if type(value) == "function" then
    local info = debug.getinfo(value, "S")
    text = text .. (info.what == "C" and " (built in)" or (" defined at %s:%d"):format(info.short_src, info.linedefined))
  end
  return { type = "inspect_reply", id = cmd.id, found = true, data = { ["text/plain"] = utf8safe(text) } }
end

local REPLIES = { complete = complete, is_complete = is_complete, inspect = inspect }

local MAIN = coroutine.running()

local DRIVER = coroutine.create(function()
  send({ type = "ready" })
  while true do
    -- A SIGINT while this coroutine worked left lua.c's hook pending on the main thread, and
    -- SIGINT at its default: re-arm before waiting again.
    if debug.gethook(MAIN) == "external hook" then coroutine.yield("rearm") end
    local line, interrupted = read_command()
    if interrupted then
      coroutine.yield("rearm")
    else
      local cmd = json.decode(line)
      local kind = type(cmd) == "table" and cmd.type
      if kind == "execute" then
        execute(cmd)
      elseif REPLIES[kind] then
        local ok, reply = pcall(REPLIES[kind], cmd)
        send(ok and reply or { type = kind .. "_reply", id = cmd.id, status = "unknown",
          matches = setmetatable({}, ARRAY), cursor_start = 0, cursor_end = 0,
          found = false, data = setmetatable({}, OBJECT) })
      elseif kind ~= "input_reply" then -- a reply that arrived after its cell was interrupted
        send({ type = "protocol_error", message = "unknown command " .. utf8safe(tostring(kind or line)) })
      end
    end
  end
end)
debug.sethook(DRIVER) -- no hook in the driver coroutine, whatever the main thread had

---------------------------------------------------------------------------- the main thread

-- Runs the current cell (unless it already ran) and hands control to the driver coroutine,
-- until the driver asks for re-arming. An interrupt that lands here, outside a cell, ends it
-- too: state lives in `current` and in the coroutine, so the next serve() picks up where this
-- one stopped.
local function trampoline()
  while true do
    local c = current
    if c and not c.started then xpcall(run_cell, on_error, c) end
    if c and not c.outcome then -- the interrupt came while on_error ran
      c.outcome = { status = "interrupted", error = { name = "interrupted", message = "interrupted!" }, traceback = {} }
    end
    local ok, want = coroutine.resume(DRIVER)
    if not ok then
      io.stderr:write("polyrun driver: ", tostring(want), "\n")
      os.exit(70)
    end
    if want == "rearm" then return end
  end
end

-- Called by each REARM line, under lua.c's docall (SIGINT armed). session.sh passes a SIGINT
-- on once per arming, numbered in GENERATION; none can land before the new number is written.
local armings = 0
local function serve()
  rearm:write(REARM) -- the line for the REPL once this returns
  armings = armings + 1
  local g = io.open(GENERATION, "w")
  if g then
    g:write(armings, "\n")
    g:close()
  end
  pcall(trampoline)
end

debug.getregistry().polyrun = serve
rearm:write(REARM)
