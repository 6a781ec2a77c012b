// polyrun's warm bootstrap for Node (docs/performance.md, "Warm pools").
//
// Started ahead of need in a fresh sandbox with [run]'s environment. Once Node is up it writes
// "R" on fd 3 and closes it, then reads one run from stdin: a line with the byte length of a
// JSON header, the header {"entry", "args", "files": [{"name", "size", "executable"}]}, the
// files' bytes in that order, and then the program's own stdin. It writes the files into /work
// and runs the entry as `node ENTRY ARGS` would (CommonJS or ES module), from a fresh task so
// that no frame of this file is on the program's stack.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

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

fs.writeSync(3, 'R');
fs.closeSync(3);
const header = JSON.parse(readExact(Number(readLine())).toString('utf8'));
for (const f of header.files) {
  const file = path.join('/work', f.name);
  fs.mkdirSync(path.dirname(file), {recursive: true});
  fs.writeFileSync(file, readExact(f.size), {flag: 'wx', mode: f.executable ? 0o755 : 0o644});
}
process.argv = [process.argv[0], path.join('/work', header.entry), ...header.args];
setImmediate(Module.runMain);
