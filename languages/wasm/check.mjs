// polyrun's analyzer for WebAssembly (the check protocol of docs/languages.md):
//   node check.mjs FILE   (.wat text or a .wasm binary)
// wabt does the parsing: wat2wasm --no-check (text to binary, syntax and names only, no type
// checking) and wasm-objdump (the binary's import section; decoding errors of a .wasm). Nothing
// is instantiated or run.
//   syntax_error  FILE  LINE  COLUMN  MESSAGE   (a .wasm has no lines: 0 0, the byte offset in MESSAGE)
//   import        MODULE.NAME  LINE  AVAILABLE  (available: a WASI function Node provides)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const file = process.argv[2];
const features = ['--enable-tail-call', '--enable-threads', '--enable-exceptions'];
const clean = (s) => String(s).replace(/[\t\r\n]+/g, ' ');
const print = (...fields) => process.stdout.write(fields.map(clean).join('\t') + '\n');
const run = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' });

let binary = file;
let text = null;
// A binary module starts with "\0asm", whatever its name; anything else is read as text.
const bytes = readFileSync(file);
if (bytes.subarray(0, 4).toString('latin1') !== '\0asm') {
  text = bytes.toString('utf8');
  binary = '/tmp/check.wasm';
  const r = run('/usr/bin/wat2wasm', [...features, '--no-check', '-o', binary, file]);
  let errors = 0;
  for (const line of `${r.stderr}`.split('\n')) {
    // main.wat:3:5: error: unexpected token i32.const, expected ).
    const m = /^(.*):(\d+):(\d+): error: (.*)$/.exec(line);
    if (m) {
      print('syntax_error', m[1], m[2], m[3], m[4]);
      errors++;
    }
  }
  if (r.status !== 0) {
    if (errors === 0) print('syntax_error', file, 0, 0, r.stderr.trim() || `wat2wasm failed (${r.status})`);
    process.exit(0);
  }
}

const dump = run('/usr/bin/wasm-objdump', ['-x', '-j', 'Import', binary]);
if (dump.status !== 0 && !/Section not found/.test(dump.stderr)) {
  // 000000a: error: invalid section size: extends past end
  const m = /^([0-9a-f]+): error: (.*)$/m.exec(dump.stderr);
  const message = m ? `${m[2]} (at byte 0x${m[1].replace(/^0+(?=.)/, '')})` : dump.stderr.trim();
  print('syntax_error', file, 0, 0, message);
  process.exit(0);
}

// What Node's WASI provides, per module name.
const provided = new Map(
  ['preview1', 'unstable'].flatMap((version) =>
    Object.entries(new WASI({ version }).getImportObject()).map(([mod, fns]) => [mod, new Set(Object.keys(fns))]),
  ),
);

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
for (const line of dump.stdout.split('\n')) {
  //  - func[0] sig=2 <fd_write> <- wasi_snapshot_preview1.fd_write
  const m = / <- (\S+)$/.exec(line);
  if (!m) continue;
  const name = m[1];
  const available = [...provided].some(([mod, fns]) => name.startsWith(`${mod}.`) && fns.has(name.slice(mod.length + 1)));
  // Only for its line: the first `(import "module" "name"` of the text (0 when not found).
  let lineNo = 0;
  if (text !== null) {
    const dot = name.indexOf('.');
    const [mod, field] = [name.slice(0, dot), name.slice(dot + 1)];
    const at = new RegExp(`\\(\\s*import\\s+"${escape(mod)}"\\s+"${escape(field)}"`).exec(text);
    if (at) lineNo = text.slice(0, at.index).split('\n').length;
  }
  print('import', name, lineNo, available ? 1 : 0);
}
