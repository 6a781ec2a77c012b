"""polyrun's warm bootstrap for Python (docs/performance.md, "Warm pools").

Started ahead of need in a fresh sandbox with [run]'s environment. Once the interpreter is up it
writes b"R" on fd 3 (keeping it, moved, for the end below), then reads one run from stdin: a line
with the byte length of a JSON header, the header {"entry", "args", "files": [{"name", "size",
"executable"}]}, the files' bytes in that order, and then the program's own stdin. It writes the
files into /work and runs the entry as `python3 -s ENTRY ARGS` would: __main__ is a fresh module,
sys.argv and sys.path[0] are the entry's, and a traceback shows none of this file's frames. When
the program has ended, and the run's objects are finalized as the interpreter's exit would
(_finish), it writes b"E" and the exit status on that descriptor: the host answers then, not after
this process's exit and teardown (~2 ms).

Everything here is read unbuffered (os.read) so that sys.stdin starts exactly at the program's
stdin.
"""

import atexit
import gc
import json
import os
import sys

# The compiler's first use builds the syntax tree's types (~0.6 ms of a run), which a cold
# interpreter has done by the time its script runs: done here, ahead of any run (and in the
# zygote, which imports this file, once for all of its runs).
compile("pass", "<polyrun>", "exec")


def _read_exact(n):
    chunks = []
    while n:
        chunk = os.read(0, min(n, 1 << 20))
        if not chunk:
            raise EOFError("polyrun warm: stdin ended inside the run's header")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_line():
    line = bytearray()
    while (byte := os.read(0, 1)) != b"\n":
        if not byte:
            raise EOFError("polyrun warm: stdin ended before the run's header")
        line += byte
    return bytes(line)


def _write_file(path, data, executable):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _run():
    own = sys._getframe().f_code.co_filename  # this file, as tracebacks name it
    header = json.loads(_read_exact(int(_read_line())))
    for f in header["files"]:
        _write_file(os.path.join("/work", f["name"]), _read_exact(f["size"]), f["executable"])
    entry = header["entry"]
    path = os.path.join("/work", entry)
    sys.argv = [entry] + header["args"]
    sys.path[0] = os.path.dirname(path)
    with open(path, "rb") as f:
        source = f.read()
    main = type(sys)("__main__")
    main.__file__ = path
    main.__cached__ = None
    sys.modules["__main__"] = main
    try:
        exec(compile(source, path, "exec"), vars(main))
    except SystemExit:
        raise
    except BaseException as e:  # printed as the interpreter would, without this file's frames
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == own:
            tb = tb.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        raise SystemExit(1) from None


def _run_program():
    """The run, as `python3 main.py` would run it: its SystemExit code, or None."""
    try:
        _run()
    except SystemExit as e:
        return e.code
    return None


def _flush_std_files():
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:  # noqa: BLE001: as the interpreter, which reports it by the status
            ok = False
    return ok


def _finish(code, baseline, end):
    """Ends the run as the interpreter's exit (Py_FinalizeEx) would, for what the run created.

    The interpreter's exit would also tear down every module and object loaded before the run
    (`baseline`): in a zygote's run each of their pages, shared with the server until written, is
    copied only to be freed (8 ms, most of a run); a warm bootstrap's interpreter spends 1-1.5 ms
    on them. So this follows its steps for the run's own: SystemExit's code and message, joining
    non-daemon threads, atexit handlers, flushing the standard streams, then the run's modules (and
    __main__) taken out of sys.modules, a collection, their namespaces cleared as the interpreter
    clears them (underscored names first, in reverse order of import: objects die by reference
    count, so an unclosed file flushes before its descriptor closes) and a last collection; exit
    status 120 when a final flush fails. Then, with `end`, it tells the host the run is over ("E"
    and the status on that descriptor): everything the run wrote is in its pipes, and the host
    answers without waiting for this process's exit and teardown."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        try:
            print(code, file=sys.stderr)
        except Exception:  # noqa: BLE001: as the interpreter, which ignores it
            pass
        status = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    _flush_std_files()
    names = [n for n in sys.modules if n not in baseline or n == "__main__"]
    modules = [sys.modules.pop(n) for n in names]
    gc.collect()
    for module in reversed(modules):
        namespace = vars(module)
        for underscored in (True, False):
            for key in list(namespace):
                private = key.startswith("_") and not key.startswith("__")
                if private == underscored and key != "__builtins__":
                    namespace[key] = None
    del modules, module, namespace
    gc.collect()
    if not _flush_std_files() and status == 0:
        status = 120
    if end is not None:
        try:
            os.write(end, bytes((ord("E"), status)))
        except OSError:
            pass  # the program closed it: the host hears of the end from the init
    os._exit(status)


def run_and_exit(baseline, end=None):
    """Runs the program, then ends the process as the interpreter's exit would (_finish) for
    everything not in `baseline` (the modules loaded before the run)."""
    _finish(_run_program(), baseline, end)


if __name__ == "__main__":  # zygote.py imports this file and runs each forked run with it
    # The interpreter's own start-up objects will never be garbage: moved out of the collector's
    # sight, the final collection at exit skips them (it costs ~6 ms of a ~10 ms run otherwise).
    gc.freeze()
    os.write(3, b"R")
    # Kept for the run's end, on a descriptor no exec'd child inherits (os.dup's are not).
    _end = os.dup(3)
    os.close(3)
    run_and_exit(frozenset(sys.modules), _end)
