// polyrun's Piston-compatible API (/api/v2) as Piston's own clients see it: the npm
// piston-client package for runtimes and execute, and the `ws` package for the
// /api/v2/connect WebSocket protocol. Starts a real `polyrun serve` on a fresh data directory.
//
//   node piston_client_test.mjs /path/to/polyrun
//
// Needs root (the sandbox) and this folder's node_modules (`make setup` runs npm ci here).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

const here = new URL('.', import.meta.url).pathname;
for (const dep of ['piston-client', 'ws']) {
  if (!existsSync(join(here, 'node_modules', dep))) {
    console.error(`piston_client_test: ${join(here, 'node_modules', dep)} is missing; ` +
                  'run `make setup` (it runs npm ci in tests/piston)');
    process.exit(1);
  }
}
const { piston } = await import('piston-client');
const { default: WebSocket } = await import('ws');

const polyrun = process.argv[2];
if (!polyrun || !existsSync(polyrun)) {
  console.error('usage: node piston_client_test.mjs /path/to/polyrun');
  process.exit(2);
}

// A failure timeout only: every wait below ends as soon as the awaited thing happens.
const kTimeoutMs = 60_000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), kTimeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const dataDir = mkdtempSync(join(tmpdir(), 'polyrun-piston-'));
let server;        // the child process
let serverExit;    // resolves to {code, signal}
let serverStderr = '';
let base;          // http://127.0.0.1:PORT
let client;        // piston-client
let pythonVersion; // as GET /v1/languages reports it

async function startServer() {
  server = spawn(polyrun, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir],
                 { stdio: ['ignore', 'pipe', 'pipe'] });
  serverExit = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
  server.stderr.setEncoding('utf8');
  server.stderr.on('data', (chunk) => { serverStderr += chunk; });
  server.stdout.setEncoding('utf8');
  let stdout = '';
  const listening = new Promise((resolve, reject) => {
    server.stdout.on('data', (chunk) => {
      stdout += chunk;
      const m = stdout.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) resolve(m[1]);
    });
    serverExit.then(({ code, signal }) =>
      reject(new Error(`polyrun serve exited (${code ?? signal}) before listening:\n${serverStderr}`)));
  });
  base = await withTimeout(listening, 'polyrun serve to listen');
}

before(async () => {
  await startServer();
  client = piston({ server: base });
  const languages = await (await fetch(`${base}/v1/languages`)).json();
  pythonVersion = languages.find((l) => l.id === 'python')?.version;
  assert.match(pythonVersion ?? '', /^\d+\.\d+/, 'GET /v1/languages gives python a version');
});

after(() => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('piston-client against /api/v2', () => {
  test('runtimes lists python with its version and aliases', async () => {
    const runtimes = await client.runtimes();
    assert.ok(Array.isArray(runtimes), JSON.stringify(runtimes));
    const python = runtimes.find((r) => r.language === 'python');
    assert.deepEqual(python, { language: 'python', version: pythonVersion,
                               aliases: ['py', 'python3'] });
    const c = runtimes.find((r) => r.language === 'c');
    assert.ok(c, 'c is listed');
    assert.ok(c.aliases.includes('gcc'), JSON.stringify(c));
    // The public instance's prefix serves the same list.
    const other = await (await fetch(`${base}/api/v2/piston/runtimes`)).json();
    assert.deepEqual(other, runtimes);
  });

  test('python hello world', async () => {
    const result = await client.execute('python', 'print("Hello, polyrun")');
    assert.equal(result.language, 'python');
    assert.equal(result.version, pythonVersion);
    assert.equal(result.compile, undefined);
    assert.equal(result.run.stdout, 'Hello, polyrun\n');
    assert.equal(result.run.stderr, '');
    assert.equal(result.run.output, 'Hello, polyrun\n');
    assert.equal(result.run.code, 0);
    assert.equal(result.run.signal, null);
    assert.equal(result.run.status, null);
    assert.equal(result.run.message, null);
    assert.ok(Number.isInteger(result.run.wall_time) && result.run.wall_time >= 0);
    assert.ok(Number.isInteger(result.run.memory) && result.run.memory > 0);
  });

  test('python runtime error: stderr, code 1, status RE', async () => {
    const result = await client.execute('python', 'print("before")\n1/0\n');
    assert.equal(result.run.stdout, 'before\n');
    assert.match(result.run.stderr, /ZeroDivisionError: division by zero/);
    assert.equal(result.run.code, 1);
    assert.equal(result.run.signal, null);
    assert.equal(result.run.status, 'RE');
    assert.equal(typeof result.run.message, 'string');
    assert.ok(result.run.output.startsWith('before\n'), result.run.output);
    assert.match(result.run.output, /ZeroDivisionError/);
  });

  test('C: a compile stage, then the run', async () => {
    const code = '#include <stdio.h>\nint main(int argc, char** argv) {\n' +
                 '  printf("C says %d\\n", 6 * 7);\n  return argc;\n}\n';
    const result = await client.execute('c', code, { args: ['x', 'y'] });
    assert.equal(result.language, 'c');
    assert.ok(result.compile, JSON.stringify(result));
    assert.equal(result.compile.code, 0);
    assert.equal(result.compile.status, null);
    assert.equal(result.run.stdout, 'C says 42\n');
    assert.equal(result.run.code, 3);  // argc: the program and two arguments
    assert.equal(result.run.status, 'RE');
  });

  test('C compile error: the compile stage fails and run repeats it', async () => {
    const result = await client.execute('c', 'int main(void) { return undefined_name; }\n');
    assert.equal(result.compile.status, 'RE');
    assert.notEqual(result.compile.code, 0);
    assert.match(result.compile.stderr, /undefined_name/);
    assert.deepEqual(result.run, result.compile);
  });

  test('stdin and args reach the program', async () => {
    const code = 'import sys\nprint(sys.argv[1:])\nprint(repr(sys.stdin.read()))\n';
    const result = await client.execute('python', code,
                                        { stdin: 'line one\nline two', args: ['a b', 'c'] });
    // Like Piston, a stdin without a trailing newline gets one.
    assert.equal(result.run.stdout, "['a b', 'c']\n'line one\\nline two\\n'\n");
    assert.equal(result.run.code, 0);
  });

  test('a run over run_timeout: status TO, killed by SIGKILL, no exit code', async () => {
    const result = await client.execute('python', 'print("spinning", flush=True)\nwhile True: pass\n',
                                        { runTimeout: 500 });
    assert.equal(result.run.status, 'TO');
    assert.equal(result.run.signal, 'SIGKILL');
    assert.equal(result.run.code, null);
    assert.equal(result.run.stdout, 'spinning\n');
    assert.match(result.run.message, /time limit/);
    assert.ok(result.run.wall_time >= 500, `wall_time ${result.run.wall_time}`);
  });

  test('an alias runs its language', async () => {
    const result = await client.execute('py', 'print(2 ** 10)', { version: '3' });
    assert.equal(result.language, 'python');
    assert.equal(result.run.stdout, '1024\n');
  });

  test('an unknown language: the client gets the 400 message', async () => {
    // piston-client finds no runtime, so it sends no version: Piston's first complaint.
    const unversioned = await client.execute('cobol', 'DISPLAY "HI".');
    assert.deepEqual(unversioned, { message: 'version is required as a string' });
    const versioned = await client.execute('cobol', 'DISPLAY "HI".', { version: '*' });
    assert.deepEqual(versioned, { message: 'cobol-* runtime is unknown' });
  });

  test('a version that is not installed is refused', async () => {
    const res = await fetch(`${base}/api/v2/piston/execute`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ language: 'python', version: '1.5', files: [{ content: 'print(1)' }] }),
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.match(body.message, /^version: python 1\.5 is not installed/);
  });

  test('malformed requests get Piston-style 400s and unknown routes 404', async () => {
    const post = (body) => fetch(`${base}/api/v2/execute`, { method: 'POST', body });
    let res = await post(JSON.stringify({ language: 'python', version: '*' }));
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { message: 'files is required as an array' });
    res = await post('{not json');
    assert.equal(res.status, 400);
    assert.equal(typeof (await res.json()).message, 'string');
    res = await fetch(`${base}/api/v2/execute`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    res = await fetch(`${base}/api/v2/nothing-here`);
    assert.equal(res.status, 404);
    assert.match((await res.json()).message, /^Not Found/);
  });
});

// ---- the WebSocket /api/v2/connect ---------------------------------------------------------

// A socket with its messages as a queue: next() waits for the next one, closed for the close.
function connect(path = '/api/v2/connect') {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${path}`);
  const queue = [];
  const waiters = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (waiters.length > 0) waiters.shift()(msg);
    else queue.push(msg);
  });
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  const opened = new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  return {
    ws,
    opened: withTimeout(opened, 'the socket to open'),
    closed: withTimeout(closed, 'the socket to close'),
    send: (msg) => ws.send(JSON.stringify(msg)),
    next: () => withTimeout(queue.length > 0 ? Promise.resolve(queue.shift())
                                             : new Promise((resolve) => waiters.push(resolve)),
                            'a message'),
  };
}

// Collects the output of `stream` up to (not including) the next non-data message, which it
// returns with the text.
async function readData(sock, stream = 'stdout') {
  let text = '';
  for (;;) {
    const msg = await sock.next();
    if (msg.type !== 'data') return { text, next: msg };
    assert.equal(msg.stream, stream, JSON.stringify(msg));
    text += msg.data;
  }
}

// Reads stdout until it holds `expected` (output may arrive in several messages).
async function readUntil(sock, expected) {
  let text = '';
  while (!text.includes(expected)) {
    const msg = await sock.next();
    assert.equal(msg.type, 'data', `waiting for ${JSON.stringify(expected)}, got ${JSON.stringify(msg)}`);
    text += msg.data;
  }
  return text;
}

describe('WebSocket /api/v2/connect', () => {
  test('init → runtime → stage → data → exit → close 4999', async () => {
    const sock = connect();
    await sock.opened;
    sock.send({ type: 'init', language: 'python', version: '*',
                files: [{ content: 'print("hi from the socket")' }] });
    assert.deepEqual(await sock.next(), { type: 'runtime', language: 'python', version: pythonVersion });
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'run' });
    const { text, next } = await readData(sock);
    assert.equal(text, 'hi from the socket\n');
    assert.deepEqual(next, { type: 'exit', stage: 'run', code: 0, signal: null });
    assert.deepEqual(await sock.closed, { code: 4999, reason: 'Job Completed' });
  });

  test('a compiled language has a compile stage before the run', async () => {
    const sock = connect('/api/v2/piston/connect');
    await sock.opened;
    sock.send({ type: 'init', language: 'c', version: '*',
                files: [{ content: '#include <stdio.h>\nint main(void) { puts("compiled"); return 0; }\n' }] });
    assert.equal((await sock.next()).type, 'runtime');
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'compile' });
    const compiled = await readData(sock);
    assert.deepEqual(compiled.next, { type: 'exit', stage: 'compile', code: 0, signal: null });
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'run' });
    const ran = await readData(sock);
    assert.equal(ran.text, 'compiled\n');
    assert.deepEqual(ran.next, { type: 'exit', stage: 'run', code: 0, signal: null });
    assert.equal((await sock.closed).code, 4999);
  });

  test('stdin data is echoed back while the program runs', async () => {
    const sock = connect();
    await sock.opened;
    const code = 'import sys\nwhile True:\n    line = sys.stdin.readline()\n' +
                 '    print("echo:", line.strip(), flush=True)\n' +
                 '    if line.strip() == "bye": break\n';
    // The init's stdin is discarded: input comes as data messages only. The runtime message
    // names the runtime, not the alias.
    sock.send({ type: 'init', language: 'py', version: '3', stdin: 'ignored\n',
                files: [{ content: code }] });
    assert.deepEqual(await sock.next(), { type: 'runtime', language: 'python', version: pythonVersion });
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'run' });
    sock.send({ type: 'data', stream: 'stdin', data: 'hello\n' });
    assert.equal(await readUntil(sock, '\n'), 'echo: hello\n');
    sock.send({ type: 'data', stream: 'stdin', data: 'bye\n' });
    const { text, next } = await readData(sock);
    assert.equal(text, 'echo: bye\n');
    assert.deepEqual(next, { type: 'exit', stage: 'run', code: 0, signal: null });
    assert.equal((await sock.closed).code, 4999);
  });

  test('signal SIGKILL ends the run', async () => {
    const sock = connect();
    await sock.opened;
    sock.send({ type: 'init', language: 'python', version: '*',
                files: [{ content: 'import time\nprint("ready", flush=True)\ntime.sleep(120)\n' }] });
    assert.equal((await sock.next()).type, 'runtime');
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'run' });
    assert.equal(await readUntil(sock, '\n'), 'ready\n');
    sock.send({ type: 'signal', signal: 'SIGKILL' });
    assert.deepEqual(await sock.next(), { type: 'exit', stage: 'run', code: null, signal: 'SIGKILL' });
    assert.deepEqual(await sock.closed, { code: 4999, reason: 'Job Completed' });
  });

  test('a socket that goes away mid-run takes its run with it', async () => {
    const sock = connect();
    await sock.opened;
    sock.send({ type: 'init', language: 'python', version: '*',
                files: [{ content: 'import time\nprint("waiting", flush=True)\ntime.sleep(120)\n' }] });
    assert.equal((await sock.next()).type, 'runtime');
    assert.deepEqual(await sock.next(), { type: 'stage', stage: 'run' });
    assert.equal(await readUntil(sock, '\n'), 'waiting\n');
    sock.ws.terminate();
    await sock.closed;
    // The newest execution is this one (the tests run one at a time); its event stream ends
    // with `finished`, so reading it to the end waits for the run to be over.
    const history = await (await fetch(`${base}/v1/executions?limit=1`)).json();
    const { id } = history.items[0];
    const events = await withTimeout(
      fetch(`${base}/v1/executions/${id}/events`).then((res) => res.text()), 'the run to end');
    assert.match(events, /event: finished/);
    const result = await (await fetch(`${base}/v1/executions/${id}`)).json();
    assert.equal(result.status, 'cancelled');
    assert.equal(result.stdout, 'waiting\n');
  });

  test('data before init closes with 4003', async () => {
    const sock = connect();
    await sock.opened;
    sock.send({ type: 'data', stream: 'stdin', data: 'too early\n' });
    assert.deepEqual(await sock.closed, { code: 4003, reason: 'Not yet initialized' });
  });

  test('no init within a second closes with 4001', async () => {
    const sock = connect();
    await sock.opened;
    const opened = Date.now();
    assert.deepEqual(await sock.closed, { code: 4001, reason: 'Initialization Timeout' });
    assert.ok(Date.now() - opened >= 900, `closed after ${Date.now() - opened} ms`);
  });

  test('an unknown language: an error message, then close 4002', async () => {
    const sock = connect();
    await sock.opened;
    sock.send({ type: 'init', language: 'cobol', version: '*', files: [{ content: 'x' }] });
    assert.deepEqual(await sock.next(), { type: 'error', message: 'cobol-* runtime is unknown' });
    assert.deepEqual(await sock.closed, { code: 4002, reason: 'Notified Error' });
  });
});

describe('shutdown', () => {
  test('SIGTERM stops polyrun serve with exit status 0', async () => {
    server.kill('SIGTERM');
    const { code, signal } = await withTimeout(serverExit, 'polyrun serve to exit');
    assert.equal(signal, null, serverStderr);
    assert.equal(code, 0, serverStderr);
  });
});
