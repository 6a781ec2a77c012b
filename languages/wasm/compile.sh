#!/bin/sh
# Turns the entry into main.wasm, the single artifact run-wasi.mjs loads:
#   a binary module (it starts with "\0asm", whatever its name) -> wasm-validate, then itself
#   text (.wat)                                                  -> wat2wasm, names kept for traces
# The features enabled are the ones Node 20's V8 ships beyond wabt's defaults, so a module
# that passes here also compiles there. Usage: compile.sh ENTRY
set -e
entry=$1
features="--enable-tail-call --enable-threads --enable-exceptions"
if [ "$(head -c 4 "$entry" | od -An -tx1 | tr -d ' \n')" = 0061736d ]; then
  /usr/bin/wasm-validate $features "$entry"
  if [ "$entry" != main.wasm ]; then cp "$entry" /work/main.wasm; fi
else
  exec /usr/bin/wat2wasm $features --debug-names -o /work/main.wasm "$entry"
fi
