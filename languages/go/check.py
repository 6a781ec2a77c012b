"""polyrun check for Go, with Go's own tools; nothing is compiled or run.

Syntax errors: `gofmt -e` (go/parser, every error, not only the first ten). Imports: the import
declarations of the file, and whether each resolves: `go list -e -json` resolves them as
`go build` would (GOROOT, a go.mod among the user's files), reporting each one that does not in
DepsErrors with its position. A compiled Go checker would be simpler but costs ~0.9s per check:
the sandbox's build cache is always cold. Prints the check protocol of docs/languages.md.
"""
import json
import os
import re
import subprocess
import sys

GO, GOFMT = "/usr/bin/go", "/usr/bin/gofmt"
GOROOT = os.path.dirname(os.path.dirname(os.path.realpath(GO)))  # /usr/lib/go-1.19
GOFMT_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")
TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>"(?:\\.|[^"\\\n])*"|`[^`]*`)
  | (?P<char>'(?:\\.|[^'\\\n])*')
  | (?P<ident>[^\W\d]\w*)
  | (?P<other>.)
""", re.S | re.X)


def field(text):
    return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def imports_of(src):
    """[(path, line)] of the file's import declarations, in order."""
    toks, line = [], 1
    for m in TOKEN.finditer(src):
        kind, text = m.lastgroup, m.group()
        if kind in ("ident", "string", "other"):
            toks.append((kind, text, line))
        line += text.count("\n")
    out = []

    def spec(k):
        # [name | . | _] "path"
        if k < len(toks) and (toks[k][0] == "ident" or toks[k][1] == "."):
            k += 1
        if k < len(toks) and toks[k][0] == "string":
            out.append((toks[k][1][1:-1], toks[k][2]))
            return k + 1
        return k

    for k, (kind, text, _) in enumerate(toks):
        if kind != "ident" or text != "import":  # a keyword: nothing else is spelt so
            continue
        if k + 1 < len(toks) and toks[k + 1][1] == "(":
            j = k + 2
            while j < len(toks) and toks[j][1] != ")":
                nj = spec(j)
                j = nj if nj > j else j + 1
        else:
            spec(k + 1)
    return out


def go_list_missing(entry, imported):
    """{path: line} of the imports `go list` cannot resolve; None when it could not tell."""
    proc = subprocess.run([GO, "list", "-e", "-json", entry],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          errors="replace")
    try:
        pkg = json.loads(proc.stdout)
    except ValueError:
        return None
    if pkg.get("Error") and not pkg.get("Imports"):
        return None  # e.g. a syntax error in the import block: nothing was resolved
    missing = {}
    by_line = {}
    for path, line in imported:
        by_line.setdefault(line, []).append(path)
    for err in pkg.get("DepsErrors") or []:
        if len(err.get("ImportStack") or []) > 1:
            continue  # a dependency's own import, not this file's
        m = re.match(r".*:(\d+):\d+$", err.get("Pos") or "")
        line = int(m.group(1)) if m else 0
        named = [p for p in imported if re.search(r'package "?' + re.escape(p[0]) + r'"?(?:\s|$)',
                                                  err.get("Err") or "")]
        if named:
            for path, l in named:
                missing.setdefault(path, l)
        elif len(by_line.get(line, [])) == 1:
            missing.setdefault(by_line[line][0], line)
    return missing


def main():
    if len(sys.argv) < 2:
        print("usage: check.py FILE", file=sys.stderr)
        return 2
    entry = sys.argv[1]
    try:
        with open(entry, encoding="utf-8", errors="replace") as f:
            src = f.read()
    except OSError as e:
        print(f"syntax_error\t{field(entry)}\t0\t0\t{field(e.strerror)}")
        return 0

    proc = subprocess.run([GOFMT, "-e", "-l", entry],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          errors="replace")
    seen = set()
    for raw in proc.stderr.splitlines():
        m = GOFMT_ERROR.match(raw)
        if not m or raw in seen:
            continue  # go/parser repeats some errors at EOF
        seen.add(raw)
        print("syntax_error\t%s\t%s\t%s\t%s" % (field(m["file"]), m["line"], m["column"],
                                              field(m["message"])))

    imported = imports_of(src)
    missing = go_list_missing(entry, imported) if imported else {}
    done = set()
    for path, line in imported:
        if path in done:
            continue
        done.add(path)
        if missing is not None:
            available = path not in missing
        else:  # unresolved: the standard library is what exists for sure
            available = path == "C" or os.path.isdir(os.path.join(GOROOT, "src", path))
        print("import\t%s\t%d\t%d" % (field(path), line, 1 if available else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
