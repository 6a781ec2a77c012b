"""polyrun check for Python: the check protocol (docs/languages.md) on stdout.

Usage: check.py FILE  (relative to the cwd, /work, which holds all the user's files). Uses
CPython's own parser and compiler (ast.parse, compile) and import machinery; nothing of the user's
is executed or imported: only top-level names go through find_spec, which for them locates the
module without running it (a dotted name would import its parents).
"""

import ast
import importlib.machinery
import importlib.util
import os
import sys
import warnings


def emit(*fields):
    clean = (str(f).replace("\t", " ").replace("\r", " ").replace("\n", " ") for f in fields)
    print("\t".join(clean))


def char_column(source, line, byte_column):
    """1-based UTF-8 byte column -> 1-based character column, like the parser's own errors."""
    if isinstance(source, bytes):
        return byte_column
    lines = source.split("\n")  # decode_source made every newline "\n"
    if line > len(lines):
        return byte_column
    return len(lines[line - 1].encode()[: byte_column - 1].decode("utf-8", "replace")) + 1


def prefix_tree(source, line):
    """The statements before a syntax error's line, for their imports; None if none parse."""
    newline = "\n" if isinstance(source, str) else b"\n"
    lines = source.split(newline)
    for end in range(line - 1, max(line - 21, 0), -1):  # back out of an unfinished statement
        try:
            return ast.parse(newline.join(lines[:end]))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def read_tree(path):
    """The module's AST, or what of it parses; prints the syntax_error record."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        # Decoded text (coding cookie, BOM) so that SyntaxError.offset counts characters.
        source = importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError):
        source = data  # the parser then reports the undecodable line itself
    tree = None
    try:
        tree = ast.parse(source, path)
        # The compiler's own checks ('return' outside function, misplaced __future__ import,
        # nonlocal without binding): still no execution, just a code object thrown away.
        compile(tree, path, "exec", dont_inherit=True)
        return tree
    except SyntaxError as e:
        line, column = e.lineno or 0, e.offset or 0
        if tree is not None and line and column:
            column = char_column(source, line, column)  # the compiler counts bytes
        if not line and b"\0" in data:
            line, column = data.count(b"\n", 0, data.index(b"\0")) + 1, 0
        emit("syntax_error", path, max(line, 1), max(column, 0), e.msg)
        # Imports are still worth reporting: all of them when only the compiler objected,
        # else those of the statements before the error.
        return tree if tree is not None else prefix_tree(source, line)
    except ValueError as e:  # a NUL byte, on Python versions that do not make it a SyntaxError
        line = data.count(b"\n", 0, data.index(b"\0")) + 1 if b"\0" in data else 1
        emit("syntax_error", path, line, 0, str(e))
    except (RecursionError, MemoryError) as e:
        # Nesting too deep for the parser: the program would not start either.
        emit("syntax_error", path, 1, 0, f"too deeply nested to parse ({type(e).__name__})")
    return None


def user_module(directory, parts):
    """Does the dotted path resolve to a module or package among the user's files?"""
    for i, part in enumerate(parts):
        base = os.path.join(directory, part)
        if i == len(parts) - 1 and os.path.isfile(base + ".py"):
            return True
        if not os.path.isdir(base):
            return False
        directory = base
    return True


def installed(name, search_dirs):
    """Resolves a top-level name the way `python3 main.py` would: the user's folders first."""
    if name == "__main__" or name in sys.builtin_module_names:
        return True
    try:
        if importlib.machinery.PathFinder.find_spec(name, search_dirs) is not None:
            return True
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def relative(path, level, module):
    """A level>0 import's target folder and dotted parts, or None when it leaves /work."""
    directory = os.path.dirname(os.path.abspath(path))
    for _ in range(level - 1):
        directory = os.path.dirname(directory)
    work = os.getcwd()
    if directory != work and not directory.startswith(work + os.sep):
        return None
    return directory, module.split(".") if module else []


def imports(path, tree, search_dirs):
    seen = set()

    def report(name, line, available):
        if name not in seen:
            seen.add(name)
            emit("import", name, line, 1 if available else 0)

    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                report(top, node.lineno, installed(top, search_dirs))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            report(top, node.lineno, installed(top, search_dirs))
        elif isinstance(node, ast.ImportFrom):
            # Relative: only the user's own files can satisfy it.
            dots = "." * node.level
            target = relative(path, node.level, node.module)
            if node.module:
                ok = target is not None and user_module(*target)
                report(dots + node.module, node.lineno, ok)
                continue
            for alias in node.names:
                # `from . import x`: a submodule, or a name the package's __init__ may define.
                ok = target is not None and (
                    user_module(target[0], [alias.name])
                    or os.path.isfile(os.path.join(target[0], "__init__.py")))
                report(dots + alias.name, node.lineno, ok)


def main(argv):
    warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "\d": not the protocol's business
    sys.stdout.reconfigure(errors="replace")
    if not argv:
        return 0
    path = os.path.relpath(os.path.abspath(argv[0]))  # the protocol's FILE: relative to /work
    # sys.path[0] of a run: the entry's folder, this file's if it is the entry, else most
    # likely /work.
    search_dirs = list(dict.fromkeys([os.path.dirname(os.path.abspath(path)), os.getcwd()]))
    tree = read_tree(path)
    if tree is not None:
        imports(path, tree, search_dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
