"""polyrun check for SQL (SQLite): the check protocol (docs/languages.md) on stdout.

Usage: check.py FILE  (relative to the cwd, /work). The file is cut into statements the way the
sqlite3 shell reads a script (whole lines until sqlite3_complete() says a statement ends;
dot-commands and '#' comments at the start of a line), and every statement goes through
sqlite3_prepare_v2() of the system's libsqlite3 (the shell's own library, through ctypes) on an
empty in-memory database. Preparing parses and compiles a statement without running it, so
nothing of the user's is executed.

Syntax errors: the parser's and tokenizer's ("near "x": syntax error", "unrecognized token",
"incomplete input"), placed with sqlite3_error_offset(). Errors about names ("no such table")
are not syntax errors and depend on the data the script builds or is seeded with; they are
not reported.

Imports: the files of `.read FILE`, `.import FILE TABLE` and `ATTACH 'FILE'`, available when
the file is among the user's files (all three resolve it from the cwd).
"""

import ctypes
import os
import re
import sys

lib = ctypes.CDLL("libsqlite3.so.0")
lib.sqlite3_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.sqlite3_prepare_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_void_p),
                                   ctypes.POINTER(ctypes.c_void_p)]
lib.sqlite3_finalize.argtypes = [ctypes.c_void_p]
lib.sqlite3_errmsg.argtypes = [ctypes.c_void_p]
lib.sqlite3_errmsg.restype = ctypes.c_char_p
lib.sqlite3_error_offset.argtypes = [ctypes.c_void_p]
lib.sqlite3_complete.argtypes = [ctypes.c_char_p]

SYNTAX = re.compile(r"syntax error|unrecognized token|incomplete input")
ATTACH = re.compile(rb"ATTACH\s+(?:DATABASE\s+)?'((?:[^']|'')*)'", re.IGNORECASE)
LEADING = re.compile(rb"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def emit(*fields):
    print("\t".join(str(f).replace("\t", " ").replace("\r", " ").replace("\n", " ")
                    for f in fields))


def all_whitespace(line):
    """The shell's _all_whitespace(): blanks and comments only."""
    return LEADING.fullmatch(line) is not None


def command_terminator(line):
    """A line holding just "/" (Oracle) or "go" (SQL Server) ends a statement in the shell."""
    s = line.strip()
    return s == b"/" or s.lower() == b"go"


def dot_args(line):
    """A dot-command's arguments as the shell splits them: blanks, '...' and "..." quoting."""
    args, i, n = [], 0, len(line)
    while i < n:
        while i < n and line[i:i + 1].isspace():
            i += 1
        if i >= n:
            break
        q = line[i:i + 1]
        if q in (b"'", b'"'):
            j = i + 1
            while j < n and line[j:j + 1] != q:
                j += 2 if q == b'"' and line[j:j + 1] == b"\\" else 1
            arg = line[i + 1:j]
            if q == b'"':
                arg = re.sub(rb"\\(.)", rb"\1", arg)
            args.append(arg)
            i = j + 1
        else:
            j = i
            while j < n and not line[j:j + 1].isspace():
                j += 1
            args.append(line[i:j])
            i = j
    return args


class Checker:
    def __init__(self, path):
        self.path = path
        self.seen = set()
        db = ctypes.c_void_p()
        lib.sqlite3_open(b":memory:", ctypes.byref(db))
        self.db = db

    def place(self, chunk, startline, offset):
        """(line, 1-based character column) of a byte offset into a chunk of whole lines."""
        before = chunk[:offset]
        line = startline + before.count(b"\n")
        text = before[before.rfind(b"\n") + 1:]
        return line, len(text.decode("utf-8", "replace")) + 1

    def file_import(self, name, line):
        name = name.decode("utf-8", "replace")
        # Not files: an in-memory database, a pipe from a command, stdin.
        if (not name or name == ":memory:" or name.startswith(("|", "/dev/"))
                or name in self.seen):
            return
        self.seen.add(name)
        emit("import", name, line, 1 if os.path.isfile(name) else 0)

    def meta(self, line, lineno):
        args = dot_args(line[1:])
        if not args:
            return
        cmd = args[0].decode("utf-8", "replace")
        if cmd == "read" and len(args) >= 2:
            self.file_import(args[1], lineno)
        elif cmd == "import":
            # `.import [--csv] [--skip N] [--schema S] FILE TABLE`: option values are not FILE.
            positional, skip_next = [], False
            for a in args[1:]:
                if skip_next:
                    skip_next = False
                elif a.lstrip(b"-") in (b"skip", b"schema"):
                    skip_next = True
                elif not a.startswith(b"-"):
                    positional.append(a)
            if positional:
                self.file_import(positional[0], lineno)

    def statements(self, chunk, startline):
        buf = ctypes.create_string_buffer(chunk)
        base = ctypes.addressof(buf)
        pos = 0
        while pos < len(chunk):
            rest = chunk[pos:]
            if all_whitespace(rest):
                return
            stmt, tail = ctypes.c_void_p(), ctypes.c_void_p()
            rc = lib.sqlite3_prepare_v2(self.db, base + pos, len(chunk) - pos,
                                        ctypes.byref(stmt), ctypes.byref(tail))
            if rc != 0:
                message = lib.sqlite3_errmsg(self.db).decode("utf-8", "replace")
                if SYNTAX.search(message):
                    offset = lib.sqlite3_error_offset(self.db)
                    if offset >= 0:
                        line, column = self.place(chunk, startline, pos + offset)
                    else:  # "incomplete input": the statement's own line, as the shell says
                        line = self.place(chunk, startline, pos + LEADING.match(rest).end())[0]
                        column = 0
                    emit("syntax_error", self.path, line, column, message)
                # Go on after this statement: the shortest prefix SQLite calls complete.
                end = self.statement_end(chunk, pos)
                if end is None:
                    return
                pos = end
                continue
            if stmt.value:
                lib.sqlite3_finalize(stmt)
            end = tail.value - base if tail.value else len(chunk)
            text = chunk[pos:end]
            lead = LEADING.match(text).end()
            m = ATTACH.match(text, lead)
            if m:
                name = m.group(1).replace(b"''", b"'")
                self.file_import(name, self.place(chunk, startline, pos + lead)[0])
            if end <= pos:
                return
            pos = end

    def statement_end(self, chunk, pos):
        for i in range(pos, len(chunk)):
            if chunk[i:i + 1] == b";" and lib.sqlite3_complete(chunk[pos:i + 1]):
                return i + 1
        return None

    def run(self, data):
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        chunk, startline = None, 0
        for lineno, line in enumerate(lines, 1):
            line = line.rstrip(b"\r")
            if chunk is not None and command_terminator(line) and \
                    lib.sqlite3_complete(chunk + b";"):
                line = b";"
            if chunk is None:
                if all_whitespace(line):
                    continue
                if line.startswith(b"."):
                    self.meta(line, lineno)
                    continue
                if line.startswith(b"#"):
                    continue
                chunk, startline = line, lineno
            else:
                chunk += b"\n" + line
            if lib.sqlite3_complete(chunk):
                self.statements(chunk, startline)
                chunk = None
        if chunk is not None and not all_whitespace(chunk):
            self.statements(chunk, startline)


def main(argv):
    if not argv:
        return 0
    path = os.path.relpath(os.path.abspath(argv[0]))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        emit("syntax_error", path, 1, 0, f"cannot read: {e.strerror}")
        return 0
    Checker(path).run(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
