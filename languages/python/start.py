"""Starts the session driver, the file named by the first argument (driver.py), as __main__.

The driver is compiled by a forked child that sends back the marshalled code: compiling it here
would leave about 2 MB of the parser's freed memory resident (holes glibc does not return) for
the whole life of the session. If the child fails, it is compiled here. This file is compiled
here, so it stays small.
"""

import marshal
import os
import sys


def _compiled_by_child(path):
    """The code of the file at path, compiled in a child process; None when that failed."""
    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        try:
            os.close(r)
            with open(path, "rb") as f:
                view = memoryview(marshal.dumps(compile(f.read(), path, "exec")))
            while view:
                view = view[os.write(w, view) :]
        except BaseException:
            os._exit(1)  # the parent compiles the file itself and reports the error
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 20):
        chunks.append(chunk)
    os.close(r)
    if os.waitpid(pid, 0)[1] != 0:
        return None
    return marshal.loads(b"".join(chunks))


def _start(path):
    code = _compiled_by_child(path)
    if code is None:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
    main = type(sys)("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    exec(code, vars(main))


_start(sys.argv[1])
