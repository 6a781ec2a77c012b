#!/bin/sh
# Usage: run.sh ENTRY [ARGS...]  (cwd /work). Runs ENTRY with the sqlite3 shell against a fresh
# in-memory database; a shell script because the run command cannot see which files came with
# the request:
#   - the first *.db / *.sqlite / *.sqlite3 file in /work (by name) seeds the database:
#     `.restore` copies it into memory with SQLite's backup API, which only reads the file
#     (unlike -deserialize, it also takes databases in WAL mode);
#   - ARGS are bound as the text parameters ?1, ?2, ... (sqlite3's temp.sqlite_parameters).
entry=$1
shift

# it's -> 'it''s': an SQL string literal.
sql_quote() {
  rest=$1 quoted=
  while :; do
    case $rest in
      *\'*) quoted="$quoted${rest%%\'*}''"; rest=${rest#*\'} ;;
      *) break ;;
    esac
  done
  quoted="'$quoted$rest'"
}

# a"b -> "a\"b": a dot-command argument (double quotes take backslash escapes).
dot_quote() {
  rest=$1 quoted=
  while :; do
    case $rest in
      *[\"\\]*)
        head=${rest%%[\"\\]*}
        rest=${rest#"$head"}
        quoted="$quoted$head\\${rest%"${rest#?}"}"
        rest=${rest#?} ;;
      *) break ;;
    esac
  done
  quoted="\"$quoted$rest\""
}

# The shell's commands, in order, take the place of ARGS in "$@".
nargs=$#
if [ "$nargs" -gt 0 ]; then
  set -- "$@" ".parameter init"
  i=0
  for arg in "$@"; do
    i=$((i + 1))
    [ "$i" -gt "$nargs" ] && break
    sql_quote "$arg"
    set -- "$@" "INSERT INTO temp.sqlite_parameters(key, value) VALUES ('?$i', $quoted)"
  done
  shift "$nargs"
fi
for f in *.db *.sqlite *.sqlite3; do
  if [ -f "$f" ]; then
    dot_quote "$f"
    set -- ".restore $quoted" "$@"
    break
  fi
done
dot_quote "$entry"

# -init /dev/null: no ~/.sqliterc (HOME is /work, the user's files). -bail: the first error
# ends the script, exit status 1. ASCII tables with headers, NULL shown as NULL.
exec /usr/bin/sqlite3 -init /dev/null -bail -table -nullvalue NULL :memory: "$@" ".read $quoted"
