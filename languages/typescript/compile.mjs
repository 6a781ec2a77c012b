// The compile stage: esbuild strips the types and bundles the entry with every user file it
// imports into one ES module, main.bundle.mjs. No type checking here (that is `polyrun check`),
// so a run costs a transpile of milliseconds, not a tsc program.
//
// usage: node compile.mjs ENTRY   (cwd /work; prints "file:line:col: severity: text" lines on
// stderr for [errors] diagnostic, exits 1 on errors)
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const OUTFILE = "main.bundle.mjs";
const entry = process.argv[2];

const oneLine = (s) => s.replace(/\s*\n\s*/g, " ").trim();

// esbuild gives 0-based byte columns; report 1-based UTF-16 columns like tsc and node do.
function fromEsbuild(m, severity) {
  const l = m.location;
  const col = l && Buffer.from(l.lineText, "utf8").subarray(0, l.column).toString("utf8").length;
  return {
    file: l?.file ?? "",
    line: l?.line ?? 0,
    col: l ? col + 1 : 0,
    severity,
    text: oneLine(m.text),
    notes: (m.notes ?? []).filter((n) => n.location).map((n) => fromEsbuild(n, "note")),
  };
}

// esbuild's parser stops at the first syntax error of a file. For each file esbuild failed on,
// TypeScript's error-recovering parser lists the syntax errors esbuild did not reach (only on
// this failure path: loading typescript costs ~0.3 s).
async function moreSyntaxErrors(errors) {
  const files = new Map(); // file -> lines esbuild already reported
  for (const e of errors) {
    if (!e.file || /\.(?![cm]?[jt]sx?$)[^./]+$/.test(e.file)) continue; // .json, .css, ...
    if (!files.has(e.file)) files.set(e.file, new Set());
    files.get(e.file).add(e.line);
  }
  if (files.size === 0) return [];
  let ts;
  try {
    ts = (await import("typescript")).default;
  } catch {
    return [];
  }
  const out = [];
  for (const [file, lines] of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const { diagnostics } = ts.transpileModule(text, { fileName: file, reportDiagnostics: true });
    for (const d of diagnostics ?? []) {
      if (!d.file || d.start === undefined || d.category !== ts.DiagnosticCategory.Error) continue;
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      if (lines.has(line + 1)) continue;  // esbuild's own message for that line stands
      const text = oneLine(ts.flattenDiagnosticMessageText(d.messageText, " "));
      out.push({ file, line: line + 1, col: character + 1, severity: "error",
                 text: `TS${d.code}: ${text}`, notes: [] });
    }
  }
  return out;
}

// Entry first, then by file, line and column, so the first diagnostic is the first error.
function byPlace(a, b) {
  const rank = (m) => (m.file === entry ? 0 : 1);
  return rank(a) - rank(b) || a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col;
}

function print(messages) {
  for (const m of messages) {
    for (const r of [m, ...m.notes]) {
      const where = r.file ? `${r.file}:${r.line}:${r.col}: ` : "";
      process.stderr.write(`${where}${r.severity}: ${r.text}\n`);
    }
  }
}

try {
  const result = await build({
    entryPoints: [entry],
    outfile: OUTFILE,
    bundle: true,
    platform: "node", // node built-ins stay external imports
    format: "esm", // so top-level await works
    target: "node20",
    sourcemap: "inline", // node --enable-source-maps maps stack frames back to the .ts lines
    sourcesContent: false, // node reads the sources from /work itself
    // Bundled CommonJS code (`require("fs")`) needs a real require in an ES module; esbuild
    // renames any user binding called `require`, so this one cannot clash.
    banner: {
      js:
        'import { createRequire as __polyrunCreateRequire } from "node:module"; ' +
        "const require = __polyrunCreateRequire(import.meta.url);",
    },
    // CommonJS globals that ES modules lack; only free uses are replaced.
    define: { __dirname: "import.meta.dirname", __filename: "import.meta.filename" },
    loader: { "": "ts" }, // an entry without an extension (language named by request) is TS
    logLevel: "silent", // we print every message ourselves, one line each
  });
  print(result.warnings.map((w) => fromEsbuild(w, "warning")).sort(byPlace));
} catch (e) {
  if (!e.errors) throw e;
  const errors = e.errors.map((m) => fromEsbuild(m, "error"));
  errors.push(...(await moreSyntaxErrors(errors)));
  print(errors.sort(byPlace));
  print((e.warnings ?? []).map((w) => fromEsbuild(w, "warning")).sort(byPlace));
  process.exitCode = 1;
}
