// polyrun's warm bootstrap for Node (docs/performance.md, "Warm pools").
//
// Started ahead of need in a fresh sandbox with [run]'s environment. Once Node is up it writes
// "R" on fd 3 (a pipe) and closes it, then reads one run from stdin: a line with the byte length
// of a JSON header, the header {"entry", "args", "files": [{"name", "size", "executable"}]}, the
// files' bytes in that order, and then the program's own stdin. It writes the files into /work
// and runs the entry as `node ENTRY ARGS` would (CommonJS or ES module), from a fresh task so
// that no frame of this file is on the program's stack.
//
// With an argument, `node warm.js FILE`, it runs FILE instead of the entry: a compiled language's
// run stage, as its [run] command names the compiler's output (TypeScript's bundle). TypeScript
// gets this file from here through npm, as it gets the session driver.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

const runFile = process.argv[2];

function readExact(n) {
  const buf = Buffer.alloc(n);
  for (let off = 0; off < n;) {
    const got = fs.readSync(0, buf, off, n - off, null);
    if (got === 0) throw new Error('polyrun warm: stdin ended inside the run\'s header');
    off += got;
  }
  return buf;
}

function readLine() {
  const byte = Buffer.alloc(1);
  let line = '';
  for (;;) {
    if (fs.readSync(0, byte, 0, 1, null) === 0) {
      throw new Error('polyrun warm: stdin ended before the run\'s header');
    }
    if (byte[0] === 10) return line;
    line += String.fromCharCode(byte[0]);
  }
}

// What a run's first file writes and CommonJS load do, done ahead on files of our own under /tmp,
// removed again: Node compiles that code on first use (~0.3 ms of a run).
{
  const dir = fs.mkdtempSync('/tmp/polyrun-warm-');
  const file = path.join(dir, 'sub', 'prime.js');
  fs.mkdirSync(path.dirname(file), {recursive: true});
  fs.writeFileSync(file, 'module.exports = 1;\n', {flag: 'wx', mode: 0o644});
  require(file);
  delete require.cache[file];
  fs.rmSync(dir, {recursive: true});
}

// Work every run's first console.log would do, done ahead of it (~6 ms of a run): Node makes
// its stream classes, its pipe binding and its formatting code on first use. Done here on a
// Console that writes nowhere and never colours (colouring looks at process.stderr), and below on
// the readiness pipe, so that fds 1 and 2 stay as a cold run finds them: making process.stdout or
// process.stderr for a pipe sets O_NONBLOCK on it, which a child would inherit.
const {Writable} = require('stream');
const nowhere = () => new Writable({write: (chunk, encoding, done) => done()});
new (require('console').Console)({stdout: nowhere(), stderr: nowhere(), colorMode: false})
    .log('%s %d %o', 'polyrun', 1, {warm: [1]});
// The pipe of "R" again, for the run's end (below), on a descriptor Node opens close-on-exec: no
// program the run starts inherits it.
const end = fs.openSync('/proc/self/fd/3', 'w');
// "R" comes last: the host hands this sandbox a run as soon as it reads it, so everything a run
// would otherwise wait for is done by then.
const ready = new (require('net').Socket)({fd: 3, readable: false, writable: true});
ready.on('error', () => {});  // only if the host gave up on us: it reads fd 3 no more
ready.write('R');
if (ready.writableLength !== 0) throw new Error('polyrun warm: fd 3 did not take "R" at once');
ready._handle.close();  // closes fd 3 now; ready.destroy() would look at process.stderr
if (fs.existsSync('/proc/self/fd/3')) throw new Error('polyrun warm: fd 3 is still open');
const header = JSON.parse(readExact(Number(readLine())).toString('utf8'));
for (const f of header.files) {
  const file = path.join('/work', f.name);
  fs.mkdirSync(path.dirname(file), {recursive: true});
  fs.writeFileSync(file, readExact(f.size), {flag: 'wx', mode: f.executable ? 0o755 : 0o644});
}
// The run's end, told to the host once every 'exit' listener has run ("E" and the exit code):
// the host answers then, not after Node's exit and teardown (~4 ms). Not after an uncaught
// exception: Node emits 'exit' before it prints the error, and the init reports that run's end.
let fatal = false;
process.on('uncaughtExceptionMonitor', () => { fatal = true; });
const emit = process.emit;
Object.defineProperty(process, 'emit', {
  configurable: true,
  enumerable: false,
  writable: true,
  value: function emit_(event, ...args) {
    const result = Reflect.apply(emit, this, [event, ...args]);
    if (event === 'exit' && !fatal) {
      try {
        fs.writeSync(end, Buffer.from([0x45, (process.exitCode ?? 0) & 0xff]));
      } catch {}  // the program closed it: the init reports the end
    }
    return result;
  },
});
process.argv = [process.argv[0], runFile ?? path.join('/work', header.entry), ...header.args];
setImmediate(Module.runMain);
