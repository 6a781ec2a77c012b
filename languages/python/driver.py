"""polyrun session driver for Python: docs/sessions.md (protocol version 1).

Cells run like IPython's: every statement but a trailing expression is executed, the trailing
expression's value (unless None or the line ends in ';') becomes the `result`. Values get
IPython-style MIME bundles (_repr_html_ & co., _repr_mimebundle_, matplotlib figures as PNG);
open pyplot figures are displayed and closed after every execution and on plt.show().

An idle session should cost little memory (start.py, which starts the driver, is about that
too). Python runs with -S: _site() does site's work, deferring what an idle session does not
need. The driver imports only built-in and small modules at start-up: _ast, _json and _signal
stand in for ast, json and signal, whose imports (re, enum, tokenize) would add about 2 MB.
Those imports happen before the user's cwd is on sys.path, so a user's os.py cannot replace the
driver's; later ones go through _import(), and the modules the driver patches (_PATCHES) are
patched when the user's code imports them.
"""

import __future__
import _ast
import _frozen_importlib_external
import _json
import _signal
import _thread
import atexit
import binascii
import builtins
import io
import itertools
import os
import site
import sys
import types


class _NamespacePackages:
    """The deferred *-nspkg.pth files. Each of their lines makes a package, *('mpl_toolkits',),
    a module created from its spec in the site directory without running its __init__.py
    (mpl_toolkits' would import pkg_resources); find_spec does that on the first import."""

    def __init__(self):
        self.dirs = {}  # package -> its folders, in the order site would have run the files

    def defer(self, sitedir, name):
        """Takes on the .pth file; False when it is not in the expected form."""
        found = []
        try:
            with open(os.path.join(sitedir, name), encoding="locale") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    start = line.find("*(")
                    end = line.find(")", start)
                    if not line.startswith("import") or start < 0 or end < 0:
                        return False
                    parts = [p.strip().strip("'\"") for p in line[start + 2 : end].split(",")]
                    found.append([p for p in parts if p])
        except (OSError, ValueError):
            return False
        for parts in found:
            self.dirs.setdefault(".".join(parts), []).append(os.path.join(sitedir, *parts))
        return True

    def find_spec(self, name, path, target=None):
        dirs = self.dirs.get(name)
        if dirs is None:
            return None
        finder = _frozen_importlib_external.PathFinder
        spec = finder.find_spec(name, [os.path.dirname(dirs[0])])
        if spec is None or spec.submodule_search_locations is None:
            return None

        def add_dirs(module):  # instead of running __init__.py
            module.__path__.extend(d for d in dirs if d not in module.__path__)

        spec.loader.exec_module = add_dirs
        return spec


def _site():
    """What site.main() does at start-up without -S, with the user site off (-s), except that
    *-nspkg.pth files are deferred: running them imports importlib.util, most of a megabyte."""
    folder = sys.path.pop(0)
    deferred = _NamespacePackages()
    site.ENABLE_USER_SITE = site.check_enableusersite()
    known = site.removeduppaths()
    for sitedir in site.getsitepackages():
        if not os.path.isdir(sitedir):
            continue
        sitedir, case = site.makepath(sitedir)
        if case not in known:
            sys.path.append(sitedir)
            known.add(case)
        try:
            names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth") and n[:1] != ".")
        except OSError:
            continue
        for name in names:
            if not (name.endswith("-nspkg.pth") and deferred.defer(sitedir, name)):
                site.addpackage(sitedir, name, known)
    if deferred.dirs:
        sys.meta_path.insert(0, deferred)
    site.setquit()
    site.setcopyright()
    site.sethelper()
    site.enablerlcompleter()
    site.execsitecustomize()
    sys.path.insert(0, folder)


if sys.flags.no_site:  # as start.py runs the driver; `python3 -s driver.py` works as well
    _site()

FRAME_LIMIT = 32 << 20  # the host ends the session on a longer frame line
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag

# Descriptors (docs/sessions.md): the command channel and the frame channel move to private
# close-on-exec descriptors (os.dup makes non-inheritable ones), /dev/null becomes fd 0.
_cmd_fd = os.dup(0)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
_frame_fd = os.dup(3)
os.close(3)

_SYS_PATH = sys.path[1:]  # the interpreter's own path, without the driver's folder
_PID = os.getpid()
_MAIN_THREAD = _thread.get_ident()
_send_lock = _thread.allocate_lock()

# Interrupt state. SIGINT raises KeyboardInterrupt only while an execution runs (_armed) and
# never in the middle of writing a frame (_holding: it is raised once the frame is whole).
# CPython runs signal handlers only at calls and backward jumps, so "x = False" right after a
# call or in an except clause cannot be interrupted first.
_armed = False
_holding = False
_pending = False


def _on_sigint(signum, frame):
    global _pending
    if _holding:
        _pending = True
    elif _armed:
        raise KeyboardInterrupt


def _flush_std():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


class _Decoding:
    """json.JSONDecoder's defaults, for _json's scanner (json itself would import re)."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": -float("inf"), "Infinity": float("inf"), "NaN": float("nan")}
    parse_constant = parse_constant.__getitem__


_scan = _json.make_scanner(_Decoding())


def _loads(line):
    """json.loads for a UTF-8 line; ValueError or StopIteration when it is not one value."""
    text = line.decode("utf-8", "surrogatepass")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    value, end = _scan(text, start)
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data")
    return value


def _dumps(frame):
    """json.dumps(frame, ensure_ascii=False, default=str) with a fresh circularity memo."""
    encode = _json.make_encoder({}, str, _json.encode_basestring, None, ": ", ", ", 0, 0, 1)
    return "".join(encode(frame, 0))  # (markers, default, ..., sort_keys, skipkeys, allow_nan)


def send(frame):
    """Writes one frame after the user's buffered output (the ordering rule). User threads may
    call display() too: the lock keeps frames whole; only the main thread defers interrupts."""
    global _holding, _pending
    line = (_dumps(frame) + "\n").encode("utf-8", "replace")
    if len(line) > FRAME_LIMIT:
        line = _shrink(frame, len(line))
    _flush_std()
    main = _thread.get_ident() == _MAIN_THREAD
    with _send_lock:
        _holding = main
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(_frame_fd, view) :]
        except OSError:
            os._exit(1)  # the host is gone
        finally:
            _holding = False
    if main and _pending:
        _pending = False
        if _armed:
            raise KeyboardInterrupt


def _shrink(frame, size):
    note = f"[output dropped: {size} bytes exceed the {FRAME_LIMIT >> 20} MiB frame limit]"
    if "data" in frame:
        frame = dict(frame, data={"text/plain": note})
    else:  # errors are capped when built; anything else this large is a driver bug
        frame = {"type": "protocol_error", "message": note}
    return (_dumps(frame) + "\n").encode("utf-8", "replace")


class _Commands:
    """Line reader on the command descriptor; a KeyboardInterrupt in os.read loses nothing."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()
        self.scanned = 0

    def readline(self):
        """The next line without its newline, or None at end of file."""
        while True:
            end = self.buf.find(b"\n", self.scanned)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 1]
                self.scanned = 0
                return line
            self.scanned = len(self.buf)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk


_commands = _Commands(_cmd_fd)


def _next_command():
    """The next command as a dict; None at end of file. Bad lines get a protocol_error."""
    while True:
        line = _commands.readline()
        if line is None:
            return None
        try:
            msg = _loads(line)
        except Exception:  # ValueError, StopIteration; _json imports json.decoder on some errors
            send({"type": "protocol_error", "message": "a command is not a JSON line"})
            continue
        if isinstance(msg, dict):
            return msg
        send({"type": "protocol_error", "message": "a command is not a JSON object"})


def _import(name):
    """Imports a stdlib module lazily without letting the user's files shadow it."""
    if name not in sys.modules:
        saved = sys.path[:]
        sys.path[:] = _SYS_PATH
        try:
            __import__(name)
        finally:
            sys.path[:] = saved
    return sys.modules[name]


# ---- input ---------------------------------------------------------------------------------


def _read_input(prompt, password):
    """Asks the client for one line; None when it answers end of file."""
    send({"type": "input_request", "prompt": str(prompt), "password": password})
    while True:
        msg = _next_command()
        if msg is None:  # the host closed the session while the cell waited
            _flush_std()
            os._exit(0)
        if msg.get("type") == "input_reply":
            if msg.get("eof"):
                return None
            value = str(msg.get("value", ""))
            return value[:-1] if value.endswith("\n") else value
        got = msg.get("type")
        send({"type": "protocol_error", "message": f"expected input_reply, got {got!r}"})


def _input(prompt=""):
    value = _read_input(prompt, False)
    if value is None:
        raise EOFError("EOF when reading a line")
    return value


def _getpass(prompt="Password: ", stream=None):
    value = _read_input(prompt, True)
    if value is None:
        raise EOFError
    return value


class _Stdin(io.TextIOBase):
    """sys.stdin: every line read is an input_request."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self):
        self._buf = ""

    def readable(self):
        return True

    def fileno(self):
        return 0  # /dev/null, for subprocesses handed sys.stdin

    def close(self):  # exit() closes sys.stdin; the session goes on
        pass

    def _fill(self):
        value = _read_input("", False)
        if value is None:
            return False
        self._buf += value + "\n"
        return True

    def _take(self, n):
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readline(self, size=-1):
        while "\n" not in self._buf and self._fill():
            pass
        n = self._buf.find("\n") + 1 or len(self._buf)
        return self._take(n if size is None or size < 0 else min(n, size))

    def read(self, size=-1):
        while (size is None or size < 0 or len(self._buf) < size) and self._fill():
            pass
        return self._take(len(self._buf) if size is None or size < 0 else size)


# ---- rich output ---------------------------------------------------------------------------

_PLAIN_TYPES = frozenset((int, float, complex, bool, str, bytes, list, tuple, dict, set, range))
_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("text/latex", "_repr_latex_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("application/json", "_repr_json_"),
)
_shown_figures = set()  # ids of figures displayed during this execution


def _method(obj, name):
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _call_repr(method, what, **kwargs):
    """A _repr_*_ method's value; None (and a note on stderr) when it raises."""
    try:
        return method(**kwargs)
    except Exception as e:
        print(f"[{what} failed: {_exc_name(type(e))}: {e}]", file=sys.stderr)
        return None


def _plain(obj):
    try:
        return repr(obj)
    except Exception as e:
        return f"<{type(obj).__name__} object; repr() raised {_exc_name(type(e))}>"


def _figure_png(fig):
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format="png", bbox_inches="tight")
    _shown_figures.add(id(fig))
    return buf.getvalue()


def bundle(obj):
    """(data, metadata): obj's MIME bundle, as IPython's display formatter would build it."""
    data, meta = {}, {}
    # Classes carry unbound _repr_*_ functions; the canary catches objects that answer every
    # attribute (mocks, some proxies). Both get text/plain only, as in IPython.
    if (
        type(obj) not in _PLAIN_TYPES
        and not isinstance(obj, type)
        and _method(obj, "_ipython_canary_method_should_not_exist_") is None
    ):
        figure = sys.modules.get("matplotlib.figure")
        if figure is not None and isinstance(obj, figure.Figure):
            data["image/png"] = _figure_png(obj)
        method = _method(obj, "_repr_mimebundle_")
        if method is not None:
            got = _call_repr(method, "_repr_mimebundle_", include=None, exclude=None)
            if isinstance(got, tuple) and len(got) == 2:
                got, got_meta = got
                meta.update(got_meta or {})
            data.update(got or {})
        for mime, name in _REPR_METHODS:
            method = None if mime in data else _method(obj, name)
            if method is None:
                continue
            got = _call_repr(method, name)
            if isinstance(got, tuple) and len(got) == 2:
                got, meta[mime] = got
            if got is not None:
                data[mime] = got
        for mime, value in data.items():
            if isinstance(value, (bytes, bytearray)):
                if mime.startswith("image/") and mime != "image/svg+xml":
                    data[mime] = binascii.b2a_base64(value, newline=False).decode("ascii")
                else:
                    data[mime] = bytes(value).decode("utf-8", "replace")
    if "text/plain" not in data:
        data["text/plain"] = _plain(obj)
    return data, meta


def display(*objs, raw=False, metadata=None, **kwargs):
    """Sends each object as a display frame; raw=True: each object already is a MIME bundle."""
    for obj in objs:
        if raw:
            data, meta = dict(obj), {}
        else:
            data, meta = bundle(obj)
        if metadata:
            meta.update(metadata)
        send({"type": "display", "data": data, "metadata": meta})


def _show_figures(*args, **kwargs):
    """Displays and closes every open pyplot figure (IPython's inline backend); pyplot.show."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in sorted(plt.get_fignums()):
        fig = plt.figure(num)
        if id(fig) not in _shown_figures:
            display(fig)
    plt.close("all")


# ---- modules the driver patches when the user imports them ----------------------------------


def _patched_pyplot(module):
    module.show = _show_figures


def _patched_getpass(module):
    module.getpass = _getpass


def _patched_linecache(module):
    cache = getattr(module, "cache", None)
    if isinstance(cache, dict):
        cache.update(_cells)


# Importing them at start-up would cost memory (linecache imports re) or, for pyplot, a third
# of a second in every session that never plots.
_PATCHES = {
    "matplotlib.pyplot": _patched_pyplot,
    "getpass": _patched_getpass,
    "linecache": _patched_linecache,
}


class _ImportHook:
    """Patches the modules in _PATCHES when they are imported."""

    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


# ---- execution -----------------------------------------------------------------------------

_user = types.ModuleType("__main__")  # cells run in a fresh __main__ so pickle finds their names
_user.__builtins__ = builtins
_ns = _user.__dict__
_driver = sys.modules["__main__"]  # keeps this module (and its globals) alive
_count = 0
_cells = {}  # filename -> the cell's linecache entry
_future = 0  # __future__ features a cell turned on stay on, as in the REPL
_loop = None


def _remember(filename, code):
    """Keeps a cell's source for error frames and, as linecache entries, for tracebacks and
    warnings the user's code prints."""
    entry = _cells[filename] = (len(code), None, code.splitlines(True), filename)
    cache = getattr(sys.modules.get("linecache"), "cache", None)
    if isinstance(cache, dict):
        cache[filename] = entry


def _cell_line(filename, lineno):
    """linecache.getline for a cell."""
    lines = _cells.get(filename, (0, None, []))[2]
    return lines[lineno - 1] if 1 <= lineno <= len(lines) else ""


def _exc_name(cls):
    module, name = getattr(cls, "__module__", None), cls.__qualname__
    return name if module in (None, "builtins", "__main__") else f"{module}.{name}"


def _cap(text, limit=1 << 20):
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more]"


def _column(code, lasti, line):
    """1-based code-point column of the instruction at lasti, when it lies on line."""
    pos = next(itertools.islice(code.co_positions(), max(lasti, 0) // 2, None), None)
    if not pos or pos[0] != line or pos[2] is None:
        return None
    source = _cell_line(code.co_filename, line)
    return len(source.encode()[: pos[2]].decode("utf-8", "ignore")) + 1


def _error_frame(e, filename):
    """The error frame for an exception raised while the cell ran."""
    trace, line, column = [], None, None
    last, repeats = None, 0

    def flush_repeats():
        if repeats > 2:
            trace.append(f"  [Previous line repeated {repeats - 2} more times]")

    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<cell "):
            where = (code.co_filename, tb.tb_lineno, code.co_name)
            if where == last:
                repeats += 1
            else:
                flush_repeats()
                last, repeats = where, 0
            if repeats <= 2:
                trace.append(f'File "{where[0]}", line {where[1]}, in {where[2]}')
                source = _cell_line(where[0], where[1] or 0).strip()
                if source:
                    trace.append("    " + _cap(source, 1000))
            if code.co_filename == filename:
                line = tb.tb_lineno
                column = _column(code, tb.tb_lasti, line)
        tb = tb.tb_next
    flush_repeats()
    try:
        message = str(e)
    except Exception:
        message = "<str() of the exception failed>"
    notes = getattr(e, "__notes__", None)
    if isinstance(notes, list):
        message = "\n".join([message, *map(str, notes)])
    return {
        "type": "error",
        "name": _exc_name(type(e)),
        "message": _cap(message),
        "line": line,
        "column": column,
        "traceback": trace[-2000:],
    }


def _syntax_error_frame(e):
    """The error frame for a cell that does not compile: positions come from the exception."""
    trace = [f'File "{e.filename}", line {e.lineno}']
    text = (e.text or _cell_line(e.filename, e.lineno or 0)).rstrip("\n")
    if text.strip():
        indent = len(text) - len(text.lstrip())
        trace.append("    " + _cap(text.strip(), 1000))
        if e.offset and e.offset > indent:
            start = e.offset - 1 - indent
            end = (e.end_offset or 0) - 1 - indent if e.end_lineno == e.lineno else 0
            trace.append("    " + " " * start + "^" * max(1, end - start))
    return {
        "type": "error",
        "name": _exc_name(type(e)),
        "message": _cap(str(e.msg)),
        "line": e.lineno,
        "column": e.offset,
        "traceback": trace,
    }


def _silenced(code, node):
    """True when the trailing expression is followed by ';' (IPython's way to hide a value)."""
    line = code.split("\n")[node.end_lineno - 1].encode()[node.end_col_offset :]
    return line.decode("utf-8", "ignore").lstrip().startswith(";")


def _run(code):
    global _loop
    try:
        if code.co_flags & CO_COROUTINE:  # top-level await
            if _loop is None:
                _loop = _import("asyncio").new_event_loop()
            return _loop.run_until_complete(eval(code, _ns))
        return eval(code, _ns)
    finally:
        if os.getpid() != _PID:  # the child of a fork in the cell: it must not serve commands
            _flush_std()
            os._exit(0)


def _run_cell(code, filename):
    """Compiles and runs one cell, sending result and error frames; returns the status."""
    global _future
    _remember(filename, code)
    try:
        tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST)  # ast.parse(code, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
        flags = _future | _ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        body = compile(tree, filename, "exec", flags, True)
        expr = None
        if last is not None:
            expr = compile(_ast.Expression(last.value), filename, "eval", flags, True)
    except SyntaxError as e:
        send(_syntax_error_frame(e))
        return "error"
    _future |= body.co_flags & FUTURE_FLAGS
    try:
        _run(body)
        if expr is not None:
            value = _run(expr)
            if value is not None and not _silenced(code, last):
                _ns["_"] = value
                send({"type": "result", "data": bundle(value)[0]})
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (None, 0):
            return "ok"
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        send(_error_frame(e, filename))
        return "interrupted" if isinstance(e, KeyboardInterrupt) else "error"
    return "ok"


_reap_next = False  # the last cell was interrupted: its children may die only after it ended


def execute(msg):
    global _armed, _count, _pending, _reap_next
    if _reap_next:
        _reap_next = False
        _reap_abandoned()
    _count += 1
    filename = f"<cell {_count}>"
    code = msg.get("code")
    code = code if isinstance(code, str) else ""
    _shown_figures.clear()
    _pending = False
    _armed = True
    try:
        status = _run_cell(code, filename)
        _show_figures()
        _armed = False
    except BaseException as e:
        # An interrupt that hit the driver's own part of the execution (building a frame,
        # the figures), or a failure there.
        _armed = False
        frame = _error_frame(e, filename)
        send(frame)
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "error"
    if status == "interrupted":
        _stop_stragglers()
        _reap_next = True
    send({"type": "done", "id": msg.get("id"), "status": status})


def _stop_stragglers():
    """After an interrupted execution: SIGKILL whatever is left in the driver's process group.
    The interrupt cannot reach everything the cell started: a child forked while it was being
    delivered never got it, and one that got it while still in Python can exec before Python
    runs the handler (a fork bomb's children survived both a second SIGINT). Only the group:
    a process the user started in a session of its own is left alone."""
    me, group = os.getpid(), os.getpgrp()
    for _ in range(100):  # each pass kills all it sees; a pass finding none ends it
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if fields[0] != "Z" and int(fields[2]) == group:
                found = True
                try:
                    os.kill(int(name), _signal.SIGKILL)
                except OSError:
                    pass
        _reap_abandoned()
        if not found:
            return


def _reap_abandoned():
    """Children an interrupted cell forked and never waited for (os.fork, a fork bomb) stay
    zombies of the driver and hold the session's process slots: reap the dead ones. A live
    subprocess.Popen of the user's keeps its child (only exited children are collected, and
    Popen.wait then reports the exit as 0, as for any child reaped elsewhere)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ---- completion, is_complete, inspect ------------------------------------------------------

_DEDENTERS = ("return", "pass", "break", "continue", "raise")


def _resolve(dotted):
    """The object a dotted name denotes in the user's namespace (attribute access may run user
    code, as in rlcompleter); KeyError/AttributeError when there is none."""
    head, *rest = dotted.split(".")
    obj = _ns[head] if head in _ns else getattr(builtins, head)
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _completions(code, pos):
    match = _import("re").search(r"((?:[^\W\d]\w*\.)*)(\w*)$", code[:pos])
    start = pos - len(match.group(2))
    if match.start() > 0 and code[match.start() - 1] == ".":  # e.g. f().x: not a plain name
        return [], start
    owner, prefix = match.group(1)[:-1], match.group(2)
    if owner:
        try:
            names = dir(_resolve(owner))
        except Exception:
            return [], start
    else:
        keyword = _import("keyword")
        names = [*keyword.kwlist, *keyword.softkwlist, *_ns, *dir(builtins)]
    # rlcompleter's rule: _names only after "_", __names only after "__"
    hidden = "_" if not prefix else "__" if prefix == "_" else None
    found = {
        n for n in names if n.startswith(prefix) and not (hidden and n.startswith(hidden))
    }
    return sorted(found), start


def complete(msg):
    code, pos = _code_and_cursor(msg)
    try:
        matches, start = _completions(code, pos)
    except Exception:
        matches, start = [], pos
    send({
        "type": "complete_reply", "id": msg.get("id"), "matches": matches,
        "cursor_start": start, "cursor_end": pos,
    })


def _indent_after(lines):
    """Indentation for the next line after the last non-blank one."""
    line = next((l for l in reversed(lines) if l.strip()), "")
    indent = line[: len(line) - len(line.lstrip())]
    body = line.split("#", 1)[0].rstrip()
    if body.endswith(":"):
        return indent + "    "
    words = body.split()
    if words and words[0] in _DEDENTERS:
        return indent[:-4]
    return indent


def _is_complete(code):
    """(status, indent): 'incomplete' also while a block is open, until an empty line ends it
    (so a console can keep adding lines, as IPython's check_complete does)."""
    if not code.strip():
        return "complete", ""
    try:
        compiled = _import("codeop").compile_command(code, "<cell>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return "invalid", ""
    lines = code.split("\n")
    if compiled is None:
        return "incomplete", _indent_after(lines)
    last = lines[-1]
    if last.strip() and last[:1].isspace():
        return "incomplete", _indent_after(lines)
    return "complete", ""


def is_complete(msg):
    code = msg.get("code")
    try:
        status, indent = _is_complete(code if isinstance(code, str) else "")
    except Exception:
        status, indent = "unknown", ""
    send({"type": "is_complete_reply", "id": msg.get("id"), "status": status, "indent": indent})


def _inspect_text(code, pos):
    re = _import("re")
    left = re.search(r"[\w.]*$", code[:pos]).group()
    name = (left + re.match(r"\w*", code[pos:]).group()).strip(".")
    if not name:  # the cursor inside a call: f(|
        call = re.search(r"([^\W\d][\w.]*)\s*\(\s*$", code[:pos])
        name = call.group(1) if call else ""
    if not name:
        return None
    obj = _resolve(name)
    inspect = _import("inspect")
    head = f"{name}: {type(obj).__name__}"
    try:
        head = f"{name}{inspect.signature(obj)}: {type(obj).__name__}"
    except (TypeError, ValueError):
        pass
    doc = None if type(obj) in _PLAIN_TYPES else inspect.getdoc(obj)
    return head + (f"\n\n{doc}" if doc else f"\n\n{_cap(_plain(obj), 2000)}")


def inspect_(msg):
    code, pos = _code_and_cursor(msg)
    try:
        text = _inspect_text(code, pos)
    except Exception:
        text = None
    reply = {"type": "inspect_reply", "id": msg.get("id"), "found": text is not None, "data": {}}
    if text is not None:
        reply["data"] = {"text/plain": text}
    send(reply)


def _code_and_cursor(msg):
    code = msg.get("code")
    code = code if isinstance(code, str) else ""
    pos = msg.get("cursor_pos")
    pos = pos if isinstance(pos, int) and 0 <= pos <= len(code) else len(code)
    return code, pos


# ---- main ----------------------------------------------------------------------------------

_HANDLERS = {
    "execute": execute,
    "complete": complete,
    "is_complete": is_complete,
    "inspect": inspect_,
}


def main():
    sys.path[0] = ""  # the cwd (/work), as in the interactive interpreter
    sys.argv[:] = [""]
    sys.stdin = _Stdin()
    builtins.input = _input
    builtins.display = display
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _ImportHook())
    sys.modules["__main__"] = _user
    _signal.signal(_signal.SIGINT, _on_sigint)
    send({"type": "ready"})
    while True:
        msg = _next_command()
        if msg is None:
            break
        kind = msg.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(msg)
        elif kind != "input_reply":  # a late answer to an interrupted input() is dropped
            send({"type": "protocol_error", "message": f"unknown command {kind!r}"})
    # End of the session: the user's atexit handlers run, but threads the user left running
    # must not keep the sandbox alive, so no interpreter shutdown (it would join them).
    _flush_std()
    atexit._run_exitfuncs()
    _flush_std()
    os._exit(0)


main()
