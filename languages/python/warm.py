"""polyrun's warm bootstrap for Python (docs/performance.md, "Warm pools").

Started ahead of need in a fresh sandbox with [run]'s environment. Once the interpreter is up it
writes b"R" on fd 3 and closes it, then reads one run from stdin: a line with the byte length
of a JSON header, the header {"entry", "args", "files": [{"name", "size", "executable"}]}, the
files' bytes in that order, and then the program's own stdin. It writes the files into /work
and runs the entry as `python3 -s ENTRY ARGS` would: __main__ is a fresh module, sys.argv and
sys.path[0] are the entry's, and a traceback shows none of this file's frames.

Everything here is read unbuffered (os.read) so that sys.stdin starts exactly at the program's
stdin.
"""

import gc
import json
import os
import sys


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


if __name__ == "__main__":  # zygote.py imports _run and runs it in each forked run
    # The interpreter's own start-up objects will never be garbage: moved out of the collector's
    # sight, the final collection at exit skips them (it costs ~6 ms of a ~10 ms run otherwise).
    gc.freeze()
    os.write(3, b"R")
    os.close(3)
    _run()
