#!/bin/bash
# `make run` until the server exists: show what polyrun does on this host.
set -euo pipefail
POLYRUN=${1:-./build/polyrun}
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say polyrun doctor
"$POLYRUN" doctor
say polyrun languages
"$POLYRUN" languages
say "polyrun run -l python -c 'print(sum(range(10)))'"
"$POLYRUN" run -l python -c 'print(sum(range(10)))'
say "polyrun run -l javascript -c 'console.log([1,2,3].map(x => x * 2))'"
"$POLYRUN" run -l javascript -c 'console.log([1,2,3].map(x => x * 2))'
say "polyrun run -l c -c '#include <stdio.h> ... printf(\"hello from C\\n\")'"
"$POLYRUN" run -l c -c $'#include <stdio.h>\nint main(void) { printf("hello from C\\n"); return 0; }'
say "polyrun run -l bash -c 'sleep 10' --wall-time 500ms   # a limit, and why the run ended"
"$POLYRUN" run -l bash -c 'sleep 10' --wall-time 500ms || echo "(exit code $?)"
say "polyrun run --json -l python -c '1/0'   # a structured result with the user's line"
"$POLYRUN" run --json -l python -c $'x = 1\n1/0' | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("status","exit_code","error","usage")}, indent=2))'
say "polyrun run -l rust -c 'fn main() { ... }'   # compiled once; the same source again hits the cache"
rust_hello=$'fn main() {\n    let v: Vec<u64> = (1..=10).collect();\n    println!("sum from Rust: {}", v.iter().sum::<u64>());\n}'
"$POLYRUN" run --json -l rust -c "$rust_hello" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["stdout"], end=""); print("compile cached:", r["compile"]["cached"])'
"$POLYRUN" run --json -l rust -c "$rust_hello" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["stdout"], end=""); print("compile cached:", r["compile"]["cached"])'
say "polyrun check -l typescript -c 'let n: number = \"one\"'   # type errors and imports, nothing runs"
"$POLYRUN" check -l typescript -c $'import { readFileSync } from "node:fs";\nimport leftPad from "left-pad";\nlet n: number = "one";' || echo "(exit code $?: findings)"
