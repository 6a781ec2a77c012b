# polyrun check for C: the check protocol (docs/languages.md) on stdout.
# Usage: sh check.sh FILE   (relative to the cwd, /work, which holds all the user's files)
#
# Everything comes from GCC's own front end, with the compile recipe's -std; nothing is linked
# or run.
# - syntax_error: every error of `gcc -fsyntax-only` (type errors too: it is the front end). A
#   missing header is not one: it stops the compiler, and is reported as an unavailable import.
# - import: the #include directives the preprocessor itself sees (`-E -dI` echoes each one, then
#   line markers tell where it was and which file it resolved to), so #if'd-out ones and macro
#   names are handled. When headers are missing, `-M -MG` lists them and empty stand-ins in a
#   last-resort include folder (-idirafter) let preprocessing go on past them; an include that
#   resolves to a stand-in is unavailable.

CC=/usr/bin/gcc
STD=-std=gnu17
export LC_ALL=C.UTF-8

tmp=$(mktemp -d /tmp/check.XXXXXX) || exit 0
trap 'rm -rf "$tmp"' EXIT
stubs=$tmp/1/2/3/include  # deep enough for "../x.h" stand-ins to stay inside $tmp
mkdir -p "$stubs"

# The file to check; the user's other files (headers) are beside it in /work.
f=${1-}
f=${f#./}
[ -n "$f" ] && [ -f "$f" ] || exit 0

# A stand-in for a missing header NAME; fails for names that cannot live under $stubs.
stub() {
  case $1 in /* | ../../../../* | */../* | '') return 1 ;; esac
  [ -e "$stubs/$1" ] && return 1  # already there: it did not help
  mkdir -p "$stubs/$(dirname -- "$1")" && : > "$stubs/$1"
}

# Reads `gcc -E -dI` output; prints the import records of the directives in FILE itself.
imports_awk='
function finish(available) {
  if (pending && !(name in seen)) {
    seen[name] = 1
    printf "import\t%s\t%d\t%d\n", name, where, available
  }
  pending = 0
}
/^# [0-9]+ "/ {
  n = $2 + 0
  f = $0; sub(/^# [0-9]+ "/, "", f)
  flags = f; sub(/"[^"]*$/, "", f); sub(/^.*"/, "", flags)
  if (pending) {
    # After a directive: a marker entering a file says what it resolved to; a marker leaving
    # the current file means the header was skipped (include guard, #pragma once): it exists.
    if (flags ~ /(^| )1( |$)/) finish(index(f, stubs "/") != 1)
    else if (flags ~ /(^| )2( |$)/) finish(1)
  }
  cur = f; line = n
  next
}
/^#(include|include_next|import) [<"]/ {
  finish(1)
  if (cur == file) {
    name = $0; sub(/^#[a-z_]+ [<"]/, "", name); sub(/[>"][^>"]*$/, "", name)
    pending = 1; where = line
  }
  line++
  next
}
{ finish(1); line++ }
# A directive that ended preprocessing (an unresolvable header) is reported from its error.
END { if (failed == "") finish(1) }
'

# Syntax, in the background while the preprocessor runs below (the two take about as long). A
# header is compiled on its own, as an editor would; errors in the headers a file includes come
# with that file's check.
$CC $STD -fsyntax-only -fdiagnostics-color=never -fno-diagnostics-show-caret "$f" 2>&1 >/dev/null |
  tr '\t' ' ' |
  sed -n -e '/: fatal error: .*: No such file or directory$/d' \
    -e 's/^\([^:]*\):\([0-9]*\):\([0-9]*\): \(fatal error\|error\): \(.*\)$/syntax_error\t\1\t\2\t\3\t\5/p' \
    -e 's/^\([^:]*\):\([0-9]*\): \(fatal error\|error\): \(.*\)$/syntax_error\t\1\t\2\t0\t\4/p' |
  awk '!seen[$0]++' >"$tmp/syntax" &

tries=0
while :; do
  out=$($CC $STD -E -dI -idirafter "$stubs" "$f" 2>&1 >"$tmp/out")
  missing=$(printf '%s\n' "$out" | sed -n 's/^[^:]*:[0-9]*:[0-9]*: fatal error: \(.*\): No such file or directory$/\1/p' | head -n 1)
  [ -n "$missing" ] && [ $tries -lt 32 ] || break
  if [ $tries = 0 ]; then
    # All the missing headers at once, as spelled: the dependency list keeps them unresolved.
    $CC $STD -M -MG "$f" 2>/dev/null | tr -s ' \\' '\n\n' | while IFS= read -r dep; do
      case $dep in '' | *: | /*) continue ;; esac
      [ -e "$dep" ] || stub "$dep"
    done
    [ -e "$stubs/$missing" ] || stub "$missing" || break
  else
    # Reachable only once others exist, or present in the cwd but not beside its includer.
    stub "$missing" || break
  fi
  tries=$((tries + 1))
done
awk -v file="$f" -v stubs="$tmp" -v failed="$missing" "$imports_awk" "$tmp/out"
# One that could not be stood in for (an absolute path) ended preprocessing: report it.
if [ -n "$missing" ]; then
  printf '%s\n' "$out" | sed -n "s/^\([^:]*\):\([0-9]*\):[0-9]*: fatal error: \(.*\): No such file or directory\$/\1\t\3\t\2/p" |
    head -n 1 | while IFS="$(printf '\t')" read -r at name n; do
      [ "$at" = "$f" ] && printf 'import\t%s\t%s\t0\n' "$name" "$n"
    done
fi

wait
cat "$tmp/syntax"
exit 0
