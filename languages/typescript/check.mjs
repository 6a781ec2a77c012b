// polyrun check for TypeScript: the check protocol (docs/languages.md) on stdout.
//
// usage: node check.mjs ENTRY [FILE...]   (paths relative to the cwd, /work)
// The TypeScript compiler API parses and type-checks the program like `tsc --noEmit --strict`
// would; syntax and type errors are both `syntax_error` records ("TS2322: Type 'string' is not
// assignable to type 'number'."). Records are about ENTRY only (polyrun checks each file in its
// own run); the other files are part of the program it is checked in. Nothing of the user's is
// executed.
import { existsSync, statSync } from "node:fs";
import { createRequire, isBuiltin } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const work = process.cwd();

function emit(...fields) {
  process.stdout.write(fields.map((f) => String(f).replace(/[\t\r\n]/g, " ")).join("\t") + "\n");
}

// What the run stage does (esbuild bundling an ES module for node 20), as tsconfig options.
const { options, errors: optionErrors } = ts.convertCompilerOptionsFromJson(
  {
    strict: true,
    noEmit: true,
    target: "es2023",
    lib: ["es2023"],
    module: "preserve", // imports left to the bundler: bundler resolution, top-level await
    moduleDetection: "force", // each file its own module, as in the bundle
    isolatedModules: true, // what a per-file transpiler like esbuild can compile
    allowImportingTsExtensions: true,
    resolveJsonModule: true,
    esModuleInterop: true,
    allowJs: true, // user .js files are bundled too: their exports get inferred types
    skipLibCheck: true, // @types/node is not the user's to fix (and checking it costs seconds)
    types: ["node"],
    typeRoots: [path.join(here, "node_modules", "@types")],
  },
  work,
);
for (const e of optionErrors) console.error(ts.flattenDiagnosticMessageText(e.messageText, " "));

const files = [...new Set(process.argv.slice(2).map((f) => path.resolve(work, f)))];
if (files.length === 0) process.exit(0);

// tsc takes only known extensions: a file without one (its language detected or requested)
// is read as "<name>.ts", and reported under its own name.
const KNOWN = /\.(?:[cm]?ts|tsx|[cm]?js|jsx|json)$/;
const alias = new Map(files.filter((f) => !KNOWN.test(f)).map((f) => [f + ".ts", f]));
const real = (f) => alias.get(f) ?? f;
const host = ts.createCompilerHost(options);
const { fileExists, readFile, getSourceFile } = host;
host.fileExists = (f) => alias.has(f) || fileExists.call(host, f);
host.readFile = (f) => readFile.call(host, real(f));
host.getSourceFile = (f, ...rest) => {
  if (!alias.has(f)) return getSourceFile.call(host, f, ...rest);
  const text = readFile.call(host, alias.get(f));
  return text === undefined ? undefined : ts.createSourceFile(f, text, rest[0]);
};
const roots = files.map((f) => (KNOWN.test(f) ? f : f + ".ts"));
const program = ts.createProgram(roots, options, host);

const entryFile = program.getSourceFile(roots[0]);
if (!entryFile) {
  console.error(`check: ${files[0]} is not part of the program`);
  process.exit(1);
}

// ---- imports ------------------------------------------------------------------------------

const SOURCE_EXTENSIONS = [".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs", ".json"];

function isFile(p) {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

// A relative or absolute specifier, resolved the way esbuild does: as written, with an
// extension added, ".js" standing for ".ts", or a folder's index file.
function resolvesToFile(target) {
  if (isFile(target)) return true;
  if (SOURCE_EXTENSIONS.some((ext) => isFile(target + ext))) return true;
  const js = target.match(/\.([cm]?)js$/);
  if (js && isFile(target.slice(0, -js[0].length) + `.${js[1]}ts`)) return true;
  if (SOURCE_EXTENSIONS.some((ext) => isFile(path.join(target, "index" + ext)))) return true;
  return existsSync(path.join(target, "package.json"));
}

// A bare specifier: a node_modules package reachable from the importing file (a user's own
// /work/node_modules; the toolchain's folder is not on that path, as in the run).
function resolvesAsPackage(spec, fromFile) {
  try {
    createRequire(fromFile).resolve(spec);
    return true;
  } catch (e) {
    // The package is there but exports that path only to `import`: still loadable.
    return e?.code === "ERR_PACKAGE_PATH_NOT_EXPORTED";
  }
}

function available(spec, fromFile) {
  if (isBuiltin(spec)) return true; // fs, node:fs, node:test
  if (spec.startsWith(".") || spec.startsWith("/")) {
    return resolvesToFile(path.resolve(path.dirname(fromFile), spec));
  }
  return resolvesAsPackage(spec, fromFile);
}

// Every module specifier in the file: import/export ... from, import x = require(),
// require("x") and import("x") with a literal argument.
function specifiers(sf) {
  const out = [];
  const add = (node) => {
    if (node && ts.isStringLiteralLike(node)) out.push(node);
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier);
    } else if (ts.isImportEqualsDeclaration(node) &&
               ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.arguments.length === 1 &&
               (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
                (ts.isIdentifier(node.expression) && node.expression.text === "require"))) {
      add(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const missing = new Set(); // specifiers that do not resolve
const reported = new Set();
for (const lit of specifiers(entryFile)) {
  if (reported.has(lit.text)) continue;
  reported.add(lit.text);
  const ok = available(lit.text, real(entryFile.fileName));
  if (!ok) missing.add(lit.text);
  const { line } = entryFile.getLineAndCharacterOfPosition(lit.getStart(entryFile));
  emit("import", lit.text, line + 1, ok ? 1 : 0);
}

// ---- syntax and type errors ---------------------------------------------------------------

// "Cannot find module 'x'" for an import already reported unavailable says nothing new.
const CANNOT_FIND_MODULE = new Set([2307, 2792]);
function isMissingImport(d) {
  if (!CANNOT_FIND_MODULE.has(d.code) || !d.file || d.start === undefined) return false;
  return missing.has(d.file.text.slice(d.start + 1, d.start + d.length - 1)); // the quoted name
}

// Like tsc: type errors only once the program parses (a recovered parse makes spurious ones).
// A syntax error elsewhere in the program is that file's own report.
const userFiles = program
  .getSourceFiles()
  .filter((sf) => sf.fileName.startsWith(work + "/") && !sf.fileName.includes("/node_modules/"));
const parses = userFiles.every((sf) => program.getSyntacticDiagnostics(sf).length === 0);
const diagnostics = [...program.getSyntacticDiagnostics(entryFile)];
// JavaScript files are bundled, not type-checked (checkJs is off): their syntax only.
if (parses && !/\.[cm]?jsx?$/.test(entryFile.fileName)) {
  diagnostics.push(...program.getSemanticDiagnostics(entryFile));
}
for (const d of program.getGlobalDiagnostics()) {
  console.error(ts.flattenDiagnosticMessageText(d.messageText, " "));
}
const records = diagnostics
  .filter((d) => d.category === ts.DiagnosticCategory.Error && !isMissingImport(d))
  .map((d) => {
    const { line, character } = entryFile.getLineAndCharacterOfPosition(d.start ?? 0);
    return {
      line: line + 1,
      column: character + 1,
      message: `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`,
    };
  })
  .sort((a, b) => a.line - b.line || a.column - b.column);
const name = path.relative(work, real(entryFile.fileName));
for (const r of records) emit("syntax_error", name, r.line, r.column, r.message);
