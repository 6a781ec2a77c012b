// Runs a WASI command module with Node's built-in WASI:
//   node run-wasi.mjs MODULE.wasm PROGRAM_NAME [ARGS...]
// The program gets PROGRAM_NAME + ARGS as argv, the sandbox's environment, stdin/stdout/stderr,
// and /work (also as ".", for wasi-libc's relative paths) and /tmp as preopened directories.
// proc_exit(n) and a return from _start end the process with that status. A trap prints
//   RuntimeError: divide by zero
//       at divide (main.wat:wasm-function[1]:0x6e)
// -- only the module's own frames, named after the user's file -- and exits 1.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [modulePath, programName, ...args] = process.argv.slice(2);
Error.stackTraceLimit = 100;

function report(err) {
  if (!(err instanceof Error)) {
    process.stderr.write(`Error: ${String(err)}\n`);
    return;
  }
  const frames = String(err.stack)
    .split('\n')
    .filter((line) => line.includes('wasm-function['))
    .map((line) => line.replace(/wasm:\/\/wasm\/[0-9a-f]+/, programName));
  process.stderr.write([`${err.name}: ${err.message}`, ...frames].join('\n') + '\n');
}

try {
  const module = new WebAssembly.Module(readFileSync(modulePath));
  // Modules built for the older WASI snapshot import "wasi_unstable" instead.
  const version = WebAssembly.Module.imports(module).some((i) => i.module === 'wasi_unstable')
    ? 'unstable'
    : 'preview1';
  const wasi = new WASI({
    version,
    args: [programName, ...args],
    env: process.env,
    preopens: { '/work': '/work', '.': '/work', '/tmp': '/tmp' },
    returnOnExit: true,
  });
  const imports = wasi.getImportObject();
  // V8 would say `TypeError: ... module is not an object or function` for an unknown module.
  const missing = WebAssembly.Module.imports(module)
    .filter((i) => !(imports[i.module] && i.name in imports[i.module]))
    .map((i) => `${i.module}.${i.name} (${i.kind})`);
  if (missing.length > 0) {
    throw new WebAssembly.LinkError(
      `unknown import${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: ` +
        `the host provides the ${Object.keys(imports)[0]} functions only`,
    );
  }
  const instance = new WebAssembly.Instance(module, imports);
  process.exitCode = wasi.start(instance);
} catch (err) {
  report(err);
  process.exitCode = 1;
}
