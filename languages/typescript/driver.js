"use strict";
// The TypeScript session driver: languages/javascript/driver.js (npm copies it into node_modules
// from ../javascript, as the sandbox binds only this folder) with each cell transpiled first.
// Transpiling only strips types, like esbuild does for runs: cells are not type-checked.

const { SourceMap } = require("node:module");
const js = require("polyrun-language-javascript");

// Loading the compiler takes ~300 ms, which the session's start need not wait for: it is loaded
// once the driver is ready, or by the first cell that needs it if that comes first.
let compiler = null;
function typescript() {
  if (!compiler) {
    const ts = require("typescript");
    const options = {
      target: ts.ScriptTarget.ES2022,
      // Imports stay imports (the JavaScript driver turns them into import()), and none is
      // dropped for looking unused: later cells use them.
      module: ts.ModuleKind.ESNext,
      verbatimModuleSyntax: true,
      sourceMap: true,
    };
    ts.transpileModule("let warm: number = 1", { compilerOptions: options }); // JIT: ~70 ms
    compiler = { ts, options };
  }
  return compiler;
}

function transpileModule(code) {
  const { ts, options } = typescript();
  const out = ts.transpileModule(code, {
    compilerOptions: options,
    fileName: "cell.ts",
    reportDiagnostics: true,
  });
  const errors = out.diagnostics.filter(
    (d) => d.file && d.category === ts.DiagnosticCategory.Error,
  );
  return { ts, out, errors };
}

// transpileModule costs milliseconds (a program and a checker per call). TypeScript's own syntax
// needs one of these characters or words (annotations, generics, assertions, modifiers,
// declarations, imports); code with none of them is plain JavaScript and comes out unchanged.
const MAYBE_TYPESCRIPT = new RegExp(
  "[:<!?@]|\\b(?:" +
    "as|satisfies|is|keyof|infer|unique|asserts|interface|type|enum|namespace|module|declare|global|" +
    "abstract|implements|private|public|protected|readonly|override|accessor|import|export)\\b",
);

function transpile(code, cell) {
  if (!MAYBE_TYPESCRIPT.test(code)) return code;
  const { ts, out, errors } = transpileModule(code);
  if (errors.length) {
    const { line, character } = errors[0].file.getLineAndCharacterOfPosition(errors[0].start);
    const message = ts.flattenDiagnosticMessageText(errors[0].messageText, "\n");
    throw new js.CellError("SyntaxError", message, line + 1, character + 1);
  }
  // Positions in errors are the JavaScript's; the source map leads back to the cell (type-only
  // lines are gone from the JavaScript).
  const map = new SourceMap(JSON.parse(out.sourceMapText));
  js.positionMaps.set(cell, (line, column) => {
    const entry = map.findEntry(line - 1, column - 1);
    return entry.originalLine === undefined
      ? { line, column }
      : { line: entry.originalLine + 1, column: entry.originalColumn + 1 };
  });
  // A "use strict" prologue would be the value of a cell holding only types, and cells run
  // sloppy like JavaScript's: it is blanked, which keeps the lines where the map says.
  return out.outputText
    .replace(/\/\/# sourceMappingURL=\S*\s*$/, "")
    .replace(/^"use strict";/, (prologue) => " ".repeat(prologue.length));
}

// TypeScript's parser reports an unfinished cell as an error at its very end.
const UNTERMINATED = new Set([1010 /* '*\/' expected */, 1160 /* Unterminated template literal */]);
function isComplete(code) {
  const { errors } = transpileModule(code);
  if (!errors.length) return "complete";
  const first = errors[0];
  return first.start >= code.trimEnd().length || UNTERMINATED.has(first.code)
    ? "incomplete"
    : "invalid";
}

js.start({ transpile, isComplete });
setImmediate(typescript);
