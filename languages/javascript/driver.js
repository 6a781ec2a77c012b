"use strict";
// The JavaScript session driver (docs/sessions.md, protocol 1). languages/typescript's driver runs
// this same file with a transpile step in front (start() below takes the differences).
//
// Cells run in the driver's own realm (vm.Script#runInThisContext), not in a vm context: modules
// that cells require() live in this realm, and with one realm their arrays, errors and Buffers
// pass instanceof and assert.deepStrictEqual like in a plain script.

const fs = require("node:fs");
const vm = require("node:vm");
const util = require("node:util");
const { Writable } = require("node:stream");
const { Console } = require("node:console");
const { createRequire } = require("node:module");
const acorn = require("acorn");

// A cell's top-level `let process`, `JSON = …` or `class Promise` shadows the global for every
// script of the realm, this one included: keep the driver's own references.
const { process, Buffer, JSON, Promise, Object, Array, Symbol, Atomics, Number, String } =
  globalThis;
const { SharedArrayBuffer, Int32Array, ArrayBuffer, Error, SyntaxError, Set, Map, RegExp } =
  globalThis;
const { setInterval, clearInterval, Math } = globalThis;

// ---- descriptors ----------------------------------------------------------------------------

// Node has no dup(): reopening a pipe through /proc gives a private descriptor for it, and Node
// opens everything close-on-exec. Without /proc the driver keeps the inherited descriptor.
function reopen(fd, flags) {
  try {
    const copy = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return copy;
  } catch {
    return fd;
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function writeAll(fd, data) {
  const buf = typeof data === "string" ? Buffer.from(data) : data;
  for (let off = 0; off < buf.length;) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      // EAGAIN: some library made the shared pipe non-blocking; wait for the host to read.
      if (e.code === "EAGAIN") Atomics.wait(sleepCell, 0, 0, 1);
      else if (e.code !== "EINTR") throw e;
    }
  }
}

// process.stdout on a pipe is asynchronous in Node: a cell's output could still sit in its
// buffer when `done` is written. These streams write through before returning, so everything
// a cell printed is in the pipe before any frame that follows it. write() bypasses Writable's
// state machine: an interrupt terminates JavaScript wherever it is, and a Writable stopped
// halfway through a write would buffer everything after it for good.
function syncStream(fd) {
  const toBuffer = (chunk, encoding) =>
    typeof chunk === "string" ? Buffer.from(chunk, encoding) : chunk;
  const stream = new Writable({
    write(chunk, encoding, done) {
      writeAll(fd, toBuffer(chunk, encoding));
      done();
    },
  });
  stream.write = (chunk, encoding, callback) => {
    if (typeof encoding === "function") [callback, encoding] = [encoding, undefined];
    writeAll(fd, toBuffer(chunk, typeof encoding === "string" ? encoding : "utf8"));
    if (callback) process.nextTick(callback);
    return true;
  };
  return Object.assign(stream, { fd, isTTY: false });
}

let frameFd = 3;
function frame(obj) {
  writeAll(frameFd, JSON.stringify(obj) + "\n");
}

// ---- commands -------------------------------------------------------------------------------

let cmdFd = 0;
const readBuf = Buffer.alloc(1 << 16);
let partial = []; // pieces of a command line not yet ended by '\n'
const lines = []; // complete command lines not handled yet
let eof = false;

function feed(n) {
  const chunk = readBuf.subarray(0, n);
  let start = 0;
  for (let i; (i = chunk.indexOf(10, start)) >= 0; start = i + 1) {
    partial.push(chunk.subarray(start, i));
    lines.push(Buffer.concat(partial).toString("utf8"));
    partial = [];
  }
  if (start < n) partial.push(Buffer.from(chunk.subarray(start)));
}

// Blocks until an input_reply arrives (null at end of file). Only called while a cell runs, when
// no asynchronous read of the command channel is outstanding.
function nextInputReply() {
  for (;;) {
    for (let i = 0; i < lines.length; i++) {
      const msg = parseCommand(lines[i]);
      if (msg && msg.type === "input_reply") {
        lines.splice(i, 1);
        return msg;
      }
    }
    if (eof) return null;
    let n;
    try {
      n = fs.readSync(cmdFd, readBuf, 0, readBuf.length, null);
    } catch (e) {
      if (e.code === "EINTR" || e.code === "EAGAIN") continue;
      throw e;
    }
    if (n === 0) eof = true;
    else feed(n);
  }
}

function parseCommand(line) {
  try {
    const msg = JSON.parse(line);
    return msg && typeof msg === "object" ? msg : null;
  } catch {
    return null;
  }
}

// ---- cells: rewriting top-level declarations -----------------------------------------------

const ACORN = {
  ecmaVersion: "latest",
  sourceType: "script",
  allowAwaitOutsideFunction: true,
  allowImportExportEverywhere: true,
  allowHashBang: true,
};
// Cells without these words run exactly as written, unparsed.
const NEEDS_REWRITE = /\b(?:let|const|class|await|import|export)\b/;

// Names a cell declared with let/const/class/import: they live in the realm's global lexical
// scope and later cells assign them instead of declaring them again.
const lexicalNames = new Set();

function isKnownGlobal(name) {
  if (lexicalNames.has(name)) return true;
  // var and function declarations make non-configurable properties of the global object.
  const desc = Object.getOwnPropertyDescriptor(globalThis, name);
  return desc !== undefined && !desc.configurable;
}

function patternNames(node, out) {
  switch (node.type) {
    case "Identifier":
      out.push(node.name);
      break;
    case "ObjectPattern":
      for (const p of node.properties) patternNames(p.type === "RestElement" ? p : p.value, out);
      break;
    case "ArrayPattern":
      for (const e of node.elements) if (e) patternNames(e, out);
      break;
    case "AssignmentPattern":
      patternNames(node.left, out);
      break;
    case "RestElement":
      patternNames(node.argument, out);
      break;
  }
  return out;
}

function hasTopLevelAwait(node) {
  if (node === null || typeof node !== "object") return false;
  if (Array.isArray(node)) return node.some(hasTopLevelAwait);
  if (node.type === "AwaitExpression" || node.type === "ImportDeclaration") return true;
  if (node.type === "ForOfStatement" && node.await) return true;
  if (/Function/.test(node.type)) return false;
  for (const key in node) if (key !== "type" && hasTopLevelAwait(node[key])) return true;
  return false;
}

// Replacement text keeps the replaced text's line count, so positions after it stay put.
function padLines(text, replaced) {
  const missing = (replaced.match(/\n/g) || []).length - (text.match(/\n/g) || []).length;
  return missing > 0 ? text + "\n".repeat(missing) : text;
}
const blank = (s) => s.replace(/[^\n]/g, " ");

// Turns a parsed cell into scripts that can run again and again in one realm:
// - top-level let/const/class/import become assignments (`void (x = …)`) to bindings that a
//   prelude script declares once with `let` (so a later cell re-declaring x just assigns it, and
//   a throwing initializer leaves x undefined instead of uninitialized forever);
// - with top-level await the cell body runs in an async arrow function whose value is the last
//   expression; its var and function declarations move to the prelude so they stay global.
// Lines stay where they were: edits keep line counts, the wrapper's head line is cancelled by
// lineOffset, hoisted functions sit at their own positions in a blanked copy of the cell, and
// `shift` maps columns on edited lines back.
function rewrite(code, ast) {
  const wrap = hasTopLevelAwait(ast.body);
  const edits = []; // { start, end, text }: replace code.slice(start, end) with text
  const edit = (start, end, text) => edits.push({ start, end, text, seq: edits.length });
  const blankOut = (start, end) => edit(start, end, blank(code.slice(start, end)));
  const lets = [];
  const vars = [];
  const hoisted = [];
  const declare = (names, list) => {
    for (const n of names) if (!isKnownGlobal(n) && !list.includes(n)) list.push(n);
  };
  let last = null;
  for (const statement of ast.body) {
    let node = statement;
    if (node.type === "ExportNamedDeclaration" || node.type === "ExportDefaultDeclaration") {
      if (!node.declaration) {
        blankOut(node.start, node.end);
        continue;
      }
      blankOut(node.start, node.declaration.start);
      node = node.declaration;
      if (statement.type === "ExportDefaultDeclaration" && !node.type.endsWith("Declaration")) {
        node = {
          type: "ExpressionStatement",
          expression: node,
          start: node.start,
          end: statement.end,
        };
      }
    } else if (node.type === "ExportAllDeclaration") {
      blankOut(node.start, node.end);
      continue;
    }
    last = node;
    if (node.type === "VariableDeclaration" && (node.kind !== "var" || wrap)) {
      declare(
        node.declarations.flatMap((d) => patternNames(d.id, [])),
        node.kind === "var" ? vars : lets,
      );
      // `let a = 1, {b} = o, c;` → `void ( a = 1, {b} = o, c = void 0);`
      edit(node.start, node.start + node.kind.length, "void (");
      for (const d of node.declarations) if (!d.init) edit(d.end, d.end, " = void 0");
      const end = node.declarations[node.declarations.length - 1].end;
      edit(end, end, ")");
    } else if (node.type === "ClassDeclaration" && node.id) {
      declare([node.id.name], lets);
      edit(node.start, node.start, `void (${node.id.name} = `);
      edit(node.end, node.end, ");");
    } else if (node.type === "FunctionDeclaration" && node.id && wrap) {
      hoisted.push(node);
      blankOut(node.start, node.end);
    } else if (node.type === "ImportDeclaration") {
      declare(
        node.specifiers.map((s) => s.local.name),
        lets,
      );
      edit(
        node.start,
        node.end,
        padLines(importText(code, node), code.slice(node.start, node.end)),
      );
    }
  }
  if (wrap && last && last.type === "ExpressionStatement") {
    edit(last.start, last.expression.start, "return (");
    edit(last.expression.end, last.expression.end, ")");
  }

  // Later edits first, so that earlier offsets stay valid; at one offset, in the order made.
  edits.sort((a, b) => b.start - a.start || b.seq - a.seq);
  let body = code;
  for (const e of edits) body = body.slice(0, e.start) + e.text + body.slice(e.end);
  let prelude = "";
  let at = 0;
  for (const f of hoisted) {
    prelude += blank(code.slice(at, f.start)) + code.slice(f.start, f.end);
    at = f.end;
  }
  if (lets.length) prelude += `;let ${lets.join(", ")};`;
  if (vars.length) prelude += `;var ${vars.join(", ")};`;
  if (wrap) body = `(async () => {\n${body}\n})()`;
  return {
    prelude,
    body,
    lineOffset: wrap ? -1 : 0,
    lets,
    shift: columnShift(code, edits.reverse()),
  };
}

// (line, column) in the rewritten cell → in the cell, given its one-line edits in source order.
function columnShift(code, edits) {
  const shifts = new Map(); // line → [{ at: rewritten column, by: columns inserted }]
  let line = 1;
  let lineStart = 0;
  let moved = 0; // columns the edits so far inserted on this line
  for (const e of edits) {
    for (let i; (i = code.indexOf("\n", lineStart)) >= 0 && i < e.start; lineStart = i + 1) {
      line++;
      moved = 0;
    }
    const by = e.text.length - (e.end - e.start);
    if (by === 0 || e.text.includes("\n")) continue;
    const list = shifts.get(line) || [];
    list.push({ at: e.start - lineStart + 1 + moved, by });
    shifts.set(line, list);
    moved += by;
  }
  return (l, column) => {
    let back = 0;
    for (const s of shifts.get(l) || []) if (column > s.at) back += Math.min(s.by, column - s.at);
    return { line: l, column: column - back };
  };
}

function importText(code, node) {
  const source = code.slice(node.source.start, node.source.end);
  const attrs =
    node.attributes && node.attributes.length
      ? `, { with: { ${node.attributes.map((a) => code.slice(a.start, a.end)).join(", ")} } }`
      : "";
  const load = `await import(${source}${attrs})`;
  const all = node.specifiers.find((s) => s.type === "ImportNamespaceSpecifier");
  const def = node.specifiers.find((s) => s.type === "ImportDefaultSpecifier");
  if (node.specifiers.length === 0) return `void (${load});`;
  if (all) {
    return `void (${all.local.name} = ${load}${def ? `, ${def.local.name} = ${all.local.name}.default` : ""});`;
  }
  const fields = node.specifiers.map((s) => {
    if (s.type === "ImportDefaultSpecifier") return `default: ${s.local.name}`;
    const imported =
      s.imported.type === "Literal" ? JSON.stringify(s.imported.value) : s.imported.name;
    return `${imported}: ${s.local.name}`;
  });
  return `void ({ ${fields.join(", ")} } = ${load});`;
}

// ---- cells: compiling and running -----------------------------------------------------------

// A cell's own error, reported as it is (syntax errors found before anything ran).
class CellError {
  constructor(name, message, line, column) {
    Object.assign(this, { name, message, line, column });
  }
}

// Cell name → function from a (line, column) that V8 reports to the position in the cell's code.
const positionMaps = new Map();
const dynamicImport = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;

function compile(code, filename, lineOffset = 0) {
  try {
    return new vm.Script(code, { filename, lineOffset, importModuleDynamically: dynamicImport });
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    // V8 heads a syntax error's stack with "<cell-N>:LINE", the line's text and a caret line.
    const [where, , caret] = String(e.stack).split("\n");
    const m = /:(\d+)$/.exec(where);
    const col = caret && caret.indexOf("^");
    throw new CellError(
      "SyntaxError",
      e.message,
      m ? Number(m[1]) : null,
      col >= 0 ? col + 1 : null,
    );
  }
}

// Returns the scripts that run the cell, in order; the last one's value is the cell's value.
function prepare(code, cell, lang) {
  let source = code;
  if (lang.transpile) source = lang.transpile(code, cell);
  let ast = null;
  if (NEEDS_REWRITE.test(source)) {
    try {
      ast = acorn.parse(source, ACORN);
    } catch (parseError) {
      // V8 has the final word (acorn may lag behind it); its message is the familiar one,
      // except where it only objects to top-level await or import, which acorn allowed.
      try {
        return [compile(source, cell)];
      } catch (e) {
        if (!(e instanceof CellError) || !/await|import|export/.test(e.message)) throw e;
        throw new CellError(
          "SyntaxError",
          parseError.message.replace(/ \(\d+:\d+\)$/, ""),
          parseError.loc.line,
          parseError.loc.column + 1,
        );
      }
    }
  }
  if (!ast) return [compile(source, cell)];
  const plan = rewrite(source, ast);
  const transpiled = positionMaps.get(cell);
  positionMaps.set(cell, (line, column) => {
    const pos = plan.shift(line, column);
    return transpiled ? transpiled(pos.line, pos.column) : pos;
  });
  const body = compile(plan.body, cell, plan.lineOffset);
  if (!plan.prelude) return [body];
  const prelude = compile(plan.prelude, cell);
  return [
    {
      runInThisContext: (o) => {
        prelude.runInThisContext(o);
        plan.lets.forEach((n) => lexicalNames.add(n));
      },
    },
    body,
  ];
}

// ---- results, display -----------------------------------------------------------------------

const JSON_MAX = 1 << 20; // larger values go as text/plain only (frames are capped at 32 MiB)
const DISPLAY = Symbol.for("Jupyter.display"); // Deno's convention for rich values

function jsonValue(v) {
  const t = typeof v;
  const plain =
    v === null ||
    t === "string" ||
    t === "boolean" ||
    (t === "number" && Number.isFinite(v)) ||
    (t === "object" &&
      (Array.isArray(v) || [Object.prototype, null].includes(Object.getPrototypeOf(v))));
  if (!plain) return undefined;
  try {
    const s = JSON.stringify(v);
    return s !== undefined && s.length <= JSON_MAX ? JSON.parse(s) : undefined;
  } catch {
    return undefined; // cycles, BigInt
  }
}

function bundle(value) {
  const data = { "text/plain": util.inspect(value) };
  const json = jsonValue(value);
  if (json !== undefined) data["application/json"] = json;
  if (value !== null && typeof value === "object" && typeof value[DISPLAY] === "function") {
    Object.assign(data, value[DISPLAY]());
  }
  return data;
}

function base64(data) {
  if (ArrayBuffer.isView(data))
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
  return String(data).replace(/\s+/g, "");
}

function makeDisplay() {
  const show = (data) => frame({ type: "display", data, metadata: {} });
  const display = (value) => void show(bundle(value));
  display.mime = (type, data) => void show({ [type]: data });
  display.html = (html) => display.mime("text/html", String(html));
  display.markdown = (md) => display.mime("text/markdown", String(md));
  display.svg = (svg) => display.mime("image/svg+xml", String(svg));
  display.png = (png) => display.mime("image/png", base64(png));
  display.jpeg = (jpeg) => display.mime("image/jpeg", base64(jpeg));
  display.json = (value) => display.mime("application/json", jsonValue(value) ?? null);
  return display;
}

// ---- errors ---------------------------------------------------------------------------------

const FRAME = /^\s*at (?:async )?(?:(.*?) \()?(<cell-\d+>):(\d+):(\d+)\)?$/;

function cellFrames(stack) {
  const frames = [];
  for (const text of String(stack).split("\n")) {
    const m = FRAME.exec(text);
    if (!m) continue;
    const map = positionMaps.get(m[2]);
    const pos = map
      ? map(Number(m[3]), Number(m[4]))
      : { line: Number(m[3]), column: Number(m[4]) };
    frames.push({ fn: m[1], cell: m[2], ...pos });
  }
  return frames; // innermost first, as V8 lists them
}

function errorFrame(e, cell) {
  if (e instanceof CellError) {
    const map = positionMaps.get(cell);
    const pos = map && e.line ? map(e.line, e.column || 1) : { line: e.line, column: e.column };
    return {
      type: "error",
      name: e.name,
      message: e.message,
      line: pos.line,
      column: pos.column,
      traceback: [],
    };
  }
  const isError =
    util.types.isNativeError(e) ||
    (e !== null && typeof e === "object" && typeof e.stack === "string");
  const frames = isError ? cellFrames(e.stack) : [];
  const here = frames.find((f) => f.cell === cell);
  return {
    type: "error",
    name: isError ? String(e.name) : "Uncaught",
    message: isError ? String(e.message) : util.inspect(e),
    line: here ? here.line : null,
    column: here ? here.column : null,
    traceback: frames
      .reverse()
      .map((f) => `at ${f.fn ? f.fn + " (" : ""}${f.cell}:${f.line}:${f.column}${f.fn ? ")" : ""}`),
  };
}

// ---- interrupts -----------------------------------------------------------------------------

// The host interrupts with SIGINT. vm's breakOnSigint stops synchronous code, but around each
// run it swaps Node's SIGINT handlers when process.on('SIGINT') has listeners, and a SIGINT in
// between kills Node or is lost. Instead Node's SIGINT watchdog (what its REPL uses) stays
// started for the driver's life: SIGINT always goes to it, idle SIGINTs do nothing, and one that
// arrives while no script runs (a cell awaiting, or just ending) is kept as pending.
let takeSigint; // () → whether a SIGINT arrived since the last call
function watchSigint() {
  const emitWarning = process.emitWarning;
  try {
    process.emitWarning = () => {}; // process.binding is deprecated (still there in Node 22)
    const { startSigintWatchdog: start, stopSigintWatchdog: stop } = process.binding("contextify");
    start();
    // A nested start/stop reads and clears the pending flag; the first start keeps it running.
    takeSigint = () => (start(), stop());
  } catch {
    let pending = false;
    process.on("SIGINT", () => (pending = true));
    takeSigint = () => {
      const was = pending;
      pending = false;
      return was;
    };
  } finally {
    process.emitWarning = emitWarning;
  }
}

// ---- the driver -----------------------------------------------------------------------------

const isThenable = (v) =>
  v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";
const INTERRUPTED = Symbol("interrupted");
// Arrows, functions, classes, methods (`name(…) {`, with a TypeScript return type or not).
const MAY_DEFINE_FUNCTIONS = /=>|\bfunction\b|\bclass\b|\)\s*(?::[^{]*)?\{/;
let running = false; // an execution is in progress
let cells = 0;

async function execute(cmd, lang) {
  const cell = `<cell-${++cells}>`;
  const code = String(cmd.code ?? "");
  let status = "ok";
  running = true;
  try {
    const scripts = prepare(code, cell, lang);
    takeSigint(); // one that arrived while idle is not for this cell
    let value;
    for (const script of scripts)
      value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (isThenable(value)) {
      // Polling also keeps Node's event loop alive: with a promise that never settles and
      // nothing else to wait for, Node would exit.
      let poll;
      try {
        value = await new Promise((resolve, reject) => {
          poll = setInterval(() => takeSigint() && reject(INTERRUPTED), 10);
          if (takeSigint()) reject(INTERRUPTED);
          value.then(resolve, reject);
        });
      } finally {
        clearInterval(poll);
      }
    }
    if (value !== undefined) frame({ type: "result", data: bundle(value) });
  } catch (e) {
    if (e === INTERRUPTED || (e && e.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED")) {
      status = "interrupted";
      frame({
        type: "error",
        name: "Interrupted",
        message: "Script execution was interrupted by SIGINT",
        line: null,
        column: null,
        traceback: [],
      });
    } else {
      status = "error";
      frame(errorFrame(e, cell));
    }
  } finally {
    running = false;
  }
  // A cell's position map is needed later only if functions it defined can throw then.
  if (!MAY_DEFINE_FUNCTIONS.test(code)) positionMaps.delete(cell);
  frame({ type: "done", id: cmd.id, status });
}

// Resolves `a.b.c` to { value } (getters run, calls never do); null if it does not resolve.
const IDENT = "[\\p{ID_Start}$_][\\p{ID_Continue}$\\u200c\\u200d]*";
function resolvePath(path) {
  const [first, ...rest] = path.split(/\s*\??\.\s*/u);
  try {
    let value = new vm.Script(first).runInThisContext();
    for (const key of rest) value = value == null ? undefined : value[key];
    return { value };
  } catch {
    return null;
  }
}

function propertyNames(obj) {
  const names = new Set();
  for (let o = Object(obj); o !== null; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) names.add(n);
  }
  return names;
}

const KEYWORDS = (
  "await break case catch class const continue debugger default delete do else export extends " +
  "false finally for function if import in instanceof let new null return static super switch this throw true " +
  "try typeof undefined var void while with yield async of"
).split(" ");

function complete(code, at) {
  const chars = Array.from(code);
  const cursor = Math.max(0, Math.min(at, chars.length)) || 0;
  const before = chars.slice(0, cursor).join("");
  const word = new RegExp(`(?:${IDENT})?$`, "u").exec(before)[0];
  const head = before.slice(0, before.length - word.length);
  const member = new RegExp(`(${IDENT}(?:\\s*\\??\\.\\s*${IDENT})*)\\s*\\??\\.\\s*$`, "u").exec(
    head,
  );
  let names;
  if (member) {
    const found = resolvePath(member[1]);
    names = found && found.value != null ? propertyNames(found.value) : new Set();
  } else if (/\.\s*$/.test(head)) {
    names = new Set(); // a member of something that is not a name path, e.g. a call's result
  } else {
    names = propertyNames(globalThis);
    for (const n of lexicalNames) names.add(n);
    for (const n of KEYWORDS) names.add(n);
  }
  const ident = new RegExp(`^${IDENT}$`, "u");
  const matches = [...names].filter((n) => n.startsWith(word) && ident.test(n)).sort();
  return { matches, cursor_start: cursor - Array.from(word).length, cursor_end: cursor };
}

function inspectAt(code, cursor) {
  const chars = Array.from(code);
  const tail = new RegExp(`^(?:${IDENT.replace("[\\p{ID_Start}$_]", "")})`, "u").exec(
    chars.slice(cursor).join(""),
  )[0];
  const path = new RegExp(`${IDENT}(?:\\s*\\??\\.\\s*${IDENT})*$`, "u").exec(
    chars.slice(0, cursor).join("") + tail,
  );
  const found = path && resolvePath(path[0]);
  if (!found) return { found: false, data: {} };
  return { found: true, data: { "text/plain": util.inspect(found.value) } };
}

function isCompleteJs(code) {
  try {
    acorn.parse(code, ACORN);
    return "complete";
  } catch (e) {
    if (/Unterminated (template|comment)/.test(e.message) || e.pos >= code.trimEnd().length)
      return "incomplete";
    return "invalid";
  }
}

function nextIndent(code) {
  const lastLine = code.trimEnd().split("\n").pop();
  return /^\s*/.exec(lastLine)[0] + (/[{([]\s*$/.test(lastLine) ? "  " : "");
}

// lang: what a language built on this driver changes (languages/typescript/driver.js):
//   transpile(code, cell) → JavaScript for the cell (throws CellError for syntax errors),
//   isComplete(code) → 'complete' | 'incomplete' | 'invalid'.
function start(lang = {}) {
  cmdFd = reopen(0, fs.constants.O_RDONLY);
  if (cmdFd !== 0) fs.openSync("/dev/null", "r"); // the lowest free descriptor: 0
  frameFd = reopen(3, fs.constants.O_WRONLY);

  const stdout = syncStream(1);
  const stderr = syncStream(2);
  Object.defineProperty(process, "stdout", {
    configurable: true,
    enumerable: true,
    get: () => stdout,
  });
  Object.defineProperty(process, "stderr", {
    configurable: true,
    enumerable: true,
    get: () => stderr,
  });
  const display = makeDisplay();
  const input = (prompt = "") => {
    if (!running) throw new Error("input() is only available while a cell runs");
    frame({ type: "input_request", prompt: String(prompt), password: false });
    const reply = nextInputReply();
    return !reply || reply.eof ? null : String(reply.value ?? "");
  };
  const globals = {
    console: new Console({ stdout, stderr, colorMode: false }),
    require: createRequire(process.cwd() + "/"),
    display,
    input,
    prompt: input,
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(globalThis, name, {
      value,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }

  watchSigint();
  // Background callbacks from earlier cells must not take the session down.
  process.on("uncaughtException", (e) => writeAll(2, `Uncaught ${util.inspect(e)}\n`));
  process.on("unhandledRejection", (e) =>
    writeAll(2, `Uncaught (in promise) ${util.inspect(e)}\n`),
  );
  // Dynamic import() in cells uses Node's own loader; its one-time experimental warning (at the
  // first import) is noise.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  compile('import("node:fs")', "<warm-up>").runInThisContext();
  process.emitWarning = emitWarning;

  let busy = false;
  let reading = false;
  const handle = (line) => {
    const cmd = parseCommand(line);
    const reply = (type, fields) => frame({ type, id: cmd.id, ...fields });
    switch (cmd && cmd.type) {
      case "execute":
        busy = true;
        execute(cmd, lang).finally(() => {
          busy = false;
          pump();
        });
        break;
      case "complete": {
        const code = String(cmd.code ?? "");
        reply("complete_reply", complete(code, Number(cmd.cursor_pos ?? Array.from(code).length)));
        break;
      }
      case "is_complete": {
        const code = String(cmd.code ?? "");
        const status = (lang.isComplete || isCompleteJs)(code);
        reply("is_complete_reply", {
          status,
          indent: status === "incomplete" ? nextIndent(code) : "",
        });
        break;
      }
      case "inspect":
        reply("inspect_reply", inspectAt(String(cmd.code ?? ""), Number(cmd.cursor_pos ?? 0)));
        break;
      case "input_reply":
        break; // an answer that arrived after its cell was interrupted
      default:
        frame({
          type: "protocol_error",
          message: cmd
            ? `unknown command ${JSON.stringify(cmd.type)}`
            : "command is not a JSON object",
        });
    }
  };
  // Commands are read asynchronously (on libuv's thread pool) so that timers and promises of
  // earlier cells keep running between executions; input() reads synchronously meanwhile.
  const pump = () => {
    while (!busy && lines.length) handle(lines.shift());
    if (busy || reading) return;
    if (eof) process.exit(0);
    reading = true;
    fs.read(cmdFd, readBuf, 0, readBuf.length, null, (err, n) => {
      reading = false;
      if (err && err.code !== "EINTR" && err.code !== "EAGAIN") {
        writeAll(2, `polyrun session driver: reading commands: ${err.message}\n`);
        process.exit(1);
      }
      if (!err && n === 0) eof = true;
      else if (!err) feed(n);
      pump();
    });
  };
  frame({ type: "ready" });
  pump();
}

module.exports = { start, CellError, positionMaps };
if (require.main === module) start();
