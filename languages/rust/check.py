"""polyrun check for Rust: rustc's own front end, no codegen, nothing of the user's is run.

`rustc --emit=metadata` parses, expands, resolves and type-checks the crate (stable rustc has no
parse-only mode; `-Z no-codegen` is nightly). Its JSON errors become syntax_error records, except
the resolver's "this crate / module file does not exist" errors, which become missing imports.
Imports are the crate roots of `use` trees, `extern crate` names and file modules (`mod x;`),
found by a small Rust tokenizer (comments, strings, raw strings, chars vs lifetimes); whether a
root resolves is rustc's verdict. Prints the check protocol of docs/languages.md.
"""
import json
import os
import re
import subprocess
import sys

RUSTC = "/usr/bin/rustc"
# Crates of the sysroot: std and core are in every 2021 crate's extern prelude; the others need
# an `extern crate` first (rustc then reports nothing, or E0432/E0433 when it is missing).
PRELUDE = {"std", "core"}
SYSROOT = {"alloc", "proc_macro", "test"}
PATH_KEYWORDS = {"crate", "self", "super", "Self"}
ITEM_KEYWORDS = {"fn", "struct", "enum", "union", "trait", "type", "mod", "const", "static"}

# Resolver errors that mean "no such crate or module file"; group 1 is its name.
MISSING = [
    ("E0463", re.compile(r"^can't find crate for `([A-Za-z_][A-Za-z0-9_]*)`")),
    ("E0432", re.compile(r"^unresolved import `([A-Za-z_][A-Za-z0-9_]*)`$")),
    ("E0433", re.compile(r"^failed to resolve: use of undeclared crate or module `([A-Za-z_][A-Za-z0-9_]*)`$")),
    ("E0583", re.compile(r"^file not found for module `([A-Za-z_][A-Za-z0-9_]*)`$")),
]

RAW_STRING = re.compile(r'[bc]?r(#*)"')
CHAR = re.compile(r"b?'(?:\\(?:u\{[0-9A-Fa-f_]*\}|x[0-9A-Fa-f]{2}|.)|[^\\'\n])'")
LIFETIME = re.compile(r"'[A-Za-z_]\w*")
IDENT = re.compile(r"(?:r#)?[^\W\d]\w*")
NUMBER = re.compile(r"[0-9][\w.]*")


def field(text):
    return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def tokens(src):
    """Yields (kind, text, line) for identifiers and punctuation; skips comments and literals."""
    i, line, n = 0, 1, len(src)
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2  # block comments nest
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
        elif (m := RAW_STRING.match(src, i)):  # raw string
            end = src.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            line += src.count("\n", i, end)
            i = end
        elif c == '"' or src.startswith('b"', i):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            line += src.count("\n", i, j)
            i = j + 1
        elif c == "'" or src.startswith("b'", i):
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime/label ('a).
            m = CHAR.match(src, i)
            if m:
                i = m.end()
            else:
                m = LIFETIME.match(src, i)
                i = m.end() if m else i + 1
        elif c.isdigit():
            i = NUMBER.match(src, i).end()
        elif (m := IDENT.match(src, i)):
            text = m.group(0)
            yield ("ident", text[2:] if text.startswith("r#") else text, line)
            i = m.end()
        elif src.startswith("::", i):
            yield ("punct", "::", line)
            i += 2
        else:
            yield ("punct", c, line)
            i += 1


def scan(src):
    """Returns (use roots [(name, line)], extern crates {name: line}, file modules {name: line},
    local names)."""
    toks = list(tokens(src))
    roots, externs, mods, local = [], {}, {}, set()

    def tree(k):
        # One use tree from toks[k]: `a::…`, `::a::…` or a group `{a::…, b}` of trees; records
        # the root of each. Returns the index after it.
        if k < len(toks) and toks[k][1] == "::":
            k += 1
        if k < len(toks) and toks[k][1] == "{":
            k += 1
            while k < len(toks) and toks[k][1] != "}":
                k = tree(k)
                if k < len(toks) and toks[k][1] == ",":
                    k += 1
            return k + 1
        if k < len(toks) and toks[k][0] == "ident":
            roots.append((toks[k][1], toks[k][2]))
        # Skip the rest of this path up to the tree's end.
        level = 0
        while k < len(toks):
            t = toks[k][1]
            if t == "{":
                level += 1
            elif t == "}":
                if level == 0:
                    return k
                level -= 1
            elif t in (",", ";") and level == 0:
                return k
            k += 1
        return k

    for k, (kind, text, line) in enumerate(toks):
        if kind != "ident":
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else ("", "", 0)
        if text == "use":
            tree(k + 1)
        elif text == "extern" and nxt[1] == "crate" and k + 2 < len(toks):
            name = toks[k + 2]
            if name[0] == "ident":
                externs.setdefault(name[1], name[2])
                if k + 4 < len(toks) and toks[k + 3][1] == "as" and toks[k + 4][0] == "ident":
                    local.add(toks[k + 4][1])
        elif text in ITEM_KEYWORDS and nxt[0] == "ident":
            local.add(nxt[1])
            after = toks[k + 2][1] if k + 2 < len(toks) else ""
            if text == "mod" and after == ";":
                mods.setdefault(nxt[1], nxt[2])
        elif text == "macro_rules" and nxt[1] == "!" and k + 2 < len(toks):
            local.add(toks[k + 2][1])
    return roots, externs, mods, local


def has_main(src):
    toks = [t[1] for t in tokens(src)]
    return any(a == "fn" and b == "main" for a, b in zip(toks, toks[1:]))


def module_files(root, read):
    """The files a crate root pulls in through `mod x;` (x.rs or x/mod.rs, nested modules of a
    non-mod.rs file in its own folder), as rustc looks them up without #[path]."""
    found, todo = set(), [(root, True)]
    while todo:
        path, owns_dir = todo.pop()
        src = read(path)
        if src is None or path in found:
            continue
        found.add(path)
        base = os.path.dirname(path)
        if not owns_dir:  # src/a.rs: its modules live in src/a/
            base = os.path.join(base, os.path.splitext(os.path.basename(path))[0])
        for name in scan(src)[2]:
            for candidate, owns in ((os.path.join(base, name + ".rs"), False),
                                    (os.path.join(base, name, "mod.rs"), True)):
                if read(candidate) is not None:
                    todo.append((os.path.normpath(candidate), owns))
                    break
    return found


def main():
    if len(sys.argv) < 2:
        print("usage: check.py FILE [SOURCES…]", file=sys.stderr)
        return 2
    entry = sys.argv[1]
    sources = [s for s in sys.argv[2:] if s != entry]
    cache = {}

    def read(path):
        if path not in cache:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    cache[path] = f.read()
            except OSError:
                cache[path] = None
        return cache[path]

    src = read(entry)
    if src is None:
        print(f"syntax_error\t{field(entry)}\t0\t0\tcannot read the file")
        return 0

    # A file without `fn main` is checked as the module it is of another file's crate (rustc
    # cannot check a module alone: `crate::`/`super::` paths need the crate), else as a library.
    root, crate_type = entry, "bin"
    if not has_main(src):
        crate_type = "lib"
        for candidate in sorted(sources, key=lambda s: not has_main(read(s) or "")):
            if os.path.normpath(entry) in module_files(candidate, read):
                root, crate_type = candidate, "bin" if has_main(read(candidate)) else "lib"
                break

    proc = subprocess.run(
        [RUSTC, "--edition", "2021", "--crate-name", "main", "--crate-type", crate_type,
         "--error-format=json", "--color=never", "--emit=metadata",
         "-o", "/tmp/polyrun-check.rmeta", root],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")

    missing = {}  # name -> line, from the resolver, entry file only
    errors = 0  # in any file: rustc may then have stopped before resolving everything
    for raw in proc.stderr.splitlines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        if d.get("level") not in ("error", "error: internal compiler error"):
            continue
        spans = [s for s in d.get("spans", []) if s.get("is_primary")]
        if not spans:
            continue  # "aborting due to …"
        errors += 1
        s = spans[0]
        code = (d.get("code") or {}).get("code")
        name = None
        for want, pattern in MISSING:
            m = pattern.match(d.get("message", ""))
            if code == want and m:
                name = m.group(1)
        if os.path.normpath(s["file_name"]) != os.path.normpath(entry):
            continue  # another file's error: it is in that file's own report
        if name is not None:
            missing.setdefault(name, s["line_start"])
            continue
        print("syntax_error\t%s\t%d\t%d\t%s" % (field(s["file_name"]), s["line_start"],
                                              s["column_start"], field(d.get("message", ""))))

    roots, externs, mods, local = scan(src)
    imports = {}  # name -> (line, available)
    for name, line in externs.items():
        imports[name] = (line, name not in missing)
    for name, line in mods.items():
        imports[name] = (line, name not in missing)
    for name, line in roots:
        if name in imports or name in PATH_KEYWORDS:
            continue
        if name in missing:
            imports[name] = (line, False)
        elif name in PRELUDE:
            imports[name] = (line, True)
        elif name in SYSROOT:
            imports[name] = (line, name in externs)  # `use alloc::…` needs `extern crate alloc;`
        elif name not in local and errors:
            imports[name] = (line, False)  # not resolved; no crates besides the sysroot's exist
        # else: an item or module of this crate (`use Color::*`), which rustc resolved
    for name, line in missing.items():  # paths like `regex::Regex::new()` without a `use`
        imports.setdefault(name, (line, False))
    for name, (line, available) in sorted(imports.items(), key=lambda kv: (kv[1][0], kv[0])):
        print("import\t%s\t%d\t%d" % (field(name), line, 1 if available else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
