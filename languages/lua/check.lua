-- polyrun check for Lua: compiles the file (loadfile: Lua's own parser, nothing runs) and reads
-- its require calls off luac's bytecode listing. Prints the check protocol (docs/languages.md).
local path = assert(arg[1], "usage: check.lua FILE")
local shown = path:gsub("^%./", "")

local function field(s)
  return (tostring(s):gsub("[\t\r\n]", " "))
end

local function record(...)
  local out = {}
  for i, v in ipairs({ ... }) do out[i] = field(v) end
  io.write(table.concat(out, "\t"), "\n")
end

-- loadfile skips a leading "#!" line, as lua itself does. Lua stops at the first error, which
-- comes as "main.lua:2: unexpected symbol near ')'" (no column).
local chunk, err = loadfile(path)
if not chunk then
  local line, msg = err:match(":(%d+): (.*)$")
  record("syntax_error", shown, line or 0, 0, msg or err)
  return
end

-- require "name" compiles to: GETTABUP A _ENV "require"; LOADK A+1 "name"; CALL A 2 (one
-- argument). Anything else (a computed name, a local alias of require) is not a static import.
-- luac prints a string constant with C escapes: \" \\ \n … and \ddd for any other byte.
local function unquote(s)
  local named = { a = "\a", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", v = "\v" }
  local out, i = {}, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c ~= "\\" then
      out[#out + 1], i = c, i + 1
    elseif s:match("^%d%d%d", i + 1) then
      out[#out + 1], i = string.char(tonumber(s:sub(i + 1, i + 3))), i + 4
    else
      local e = s:sub(i + 1, i + 1)
      out[#out + 1], i = named[e] or e, i + 2
    end
  end
  return table.concat(out)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local listing = io.popen("exec /usr/bin/luac5.4 -l -l -p -- " .. shell_quote(path) .. " 2>&1")
local imports = {}
local pending -- { reg, line, name }
for l in listing:lines() do
  local line, op, a, rest = l:match("^%s*%d+%s+%[(%d+)%]%s+([%u%d]+)%s*(%d*)(.*)$")
  if op == "GETTABUP" and rest:match('; _ENV "require"$') then
    pending = { reg = tonumber(a), line = tonumber(line) }
  elseif op == "LOADK" and pending and not pending.name and tonumber(a) == pending.reg + 1 then
    local s = rest:match('; "(.*)"$')
    if s then pending.name = unquote(s) else pending = nil end
  elseif op == "CALL" and pending and pending.name and tonumber(a) == pending.reg then
    if rest:match("^%s+(%d+)") == "2" then imports[#imports + 1] = pending end
    pending = nil
  elseif op then
    pending = nil
  end
end
listing:close()

-- Available: the standard libraries, or whatever package.path/cpath finds, which includes the
-- user's own files ("./?.lua" from /work).
local function available(name)
  if package.loaded[name] or package.preload[name] then return true end
  return package.searchpath(name, package.path) ~= nil
      or package.searchpath(name, package.cpath) ~= nil
      or package.searchpath(name:match("^[^.]+"), package.cpath) ~= nil -- "a.b" from a.so's luaopen_a_b
end

for _, imp in ipairs(imports) do
  record("import", imp.name, imp.line, available(imp.name) and 1 or 0)
end
