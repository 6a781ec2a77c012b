// polyrun check for JavaScript: the check protocol (docs/languages.md) on stdout.
//
// usage: node check.mjs ENTRY [FILE...]   (paths relative to the cwd, /work)
// acorn parses ENTRY (nothing of the user's is executed); its imports are the ES import/export
// declarations, import("x") and require("x") with a literal argument. The other files are
// there to resolve imports against (polyrun checks each file in its own run).
import { readFileSync, statSync } from "node:fs";
import { createRequire, isBuiltin } from "node:module";
import path from "node:path";
import { parse } from "acorn";
import { simple as walk } from "acorn-walk";

const work = process.cwd();

function emit(...fields) {
  process.stdout.write(fields.map((f) => String(f).replace(/[\t\r\n]/g, " ")).join("\t") + "\n");
}

// node 20 runs a .js file as CommonJS unless it only parses as an ES module (import/export,
// top-level await); .mjs and .cjs say which. Returns the AST or the error to report.
function parseLikeNode(file, text) {
  const common = { ecmaVersion: "latest", locations: true, allowHashBang: true };
  const asModule = () => parse(text, { ...common, sourceType: "module" });
  // The CommonJS wrapper makes a top-level `return` legal.
  const asScript = () =>
    parse(text, { ...common, sourceType: "script", allowReturnOutsideFunction: true });
  if (file.endsWith(".mjs")) return tryParse(asModule);
  if (file.endsWith(".cjs")) return tryParse(asScript);
  const script = tryParse(asScript);
  if (script.ast) return script;
  const module = tryParse(asModule);
  if (module.ast) return module;
  // Neither: the parse that got further is the one the author meant.
  return module.error.pos > script.error.pos ? module : script;
}

function tryParse(fn) {
  try {
    return { ast: fn() };
  } catch (e) {
    if (!(e instanceof SyntaxError) || !e.loc) throw e;
    return { error: e };
  }
}

function isFile(p) {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

// import "x" of a relative file: ES modules take the path exactly as written. Everything else
// (require, bare package names) goes through node's own require.resolve from the importing
// file: user files, /work/node_modules, NODE_PATH, as in the run.
function available(spec, fromFile, esm) {
  if (isBuiltin(spec)) return true;
  if (esm && /^\.{0,2}\//.test(spec)) return isFile(path.resolve(path.dirname(fromFile), spec));
  try {
    createRequire(fromFile).resolve(spec);
    return true;
  } catch (e) {
    // The package is there but exports that path only to `import`: still loadable.
    return e?.code === "ERR_PACKAGE_PATH_NOT_EXPORTED";
  }
}

function imports(ast) {
  const out = []; // { spec, line, esm }
  const literal = (node, esm) => {
    if (node?.type === "Literal" && typeof node.value === "string") {
      out.push({ spec: node.value, line: node.loc.start.line, esm });
    }
  };
  walk(ast, {
    ImportDeclaration: (n) => literal(n.source, true),
    ExportNamedDeclaration: (n) => literal(n.source, true),
    ExportAllDeclaration: (n) => literal(n.source, true),
    ImportExpression: (n) => literal(n.source, true),
    CallExpression: (n) => {
      const { callee, arguments: args } = n;
      if (callee.type === "Identifier" && callee.name === "require" && args.length === 1) {
        literal(args[0], false);
      }
    },
  });
  return out.sort((a, b) => a.line - b.line);
}

const entry = process.argv[2];
if (!entry) process.exit(0);
const file = path.relative(work, path.resolve(work, entry));
const { ast, error } = parseLikeNode(file, readFileSync(file, "utf8"));
if (error) {
  // acorn: "Unexpected token (3:14)", 0-based column in UTF-16 units like node's.
  emit("syntax_error", file, error.loc.line, error.loc.column + 1,
       error.message.replace(/ \(\d+:\d+\)$/, ""));
} else {
  const abs = path.resolve(work, file);
  const reported = new Set();
  for (const { spec, line, esm } of imports(ast)) {
    if (reported.has(spec)) continue;
    reported.add(spec);
    emit("import", spec, line, available(spec, abs, esm) ? 1 : 0);
  }
}
