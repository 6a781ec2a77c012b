#!/bin/bash
# Cold one-shot runs through `polyrun run`, beside the bare toolchain and bubblewrap with
# comparable isolation (user, pid, mount, net, ipc, uts and cgroup namespaces, a read-only /usr,
# fresh /proc, /dev and /tmp, no capabilities), all measured in the same run with hyperfine.
# Prints medians and the overhead over bare; writes bench/results/cold_start.json.
# Usage: bench/cold_start.sh [POLYRUN_BINARY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
POLYRUN=$(realpath "${1:-./build-release/polyrun}")
RUNS=${2:-60}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/hello.c" <<'C'
#include <stdio.h>
int main(void) { puts("1"); return 0; }
C
/usr/bin/gcc -O2 -o "$WORK/hello" "$WORK/hello.c"
# Compile+run means compiling every time: the artifact cache is off in this config.
printf 'artifact_cache_size = 0\n' > "$WORK/nocache.toml"

BWRAP=(bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL
       --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin
       --ro-bind /etc/ld.so.cache /etc/ld.so.cache --proc /proc --dev /dev --tmpfs /tmp --tmpfs /work
       --chdir /work)
q() { printf '%q ' "$@"; }

# name | bare | polyrun | bubblewrap
CASES=(
  "python|/usr/bin/python3 -c 'print(1)'|$POLYRUN run -l python -c 'print(1)'|$(q "${BWRAP[@]}") /usr/bin/python3 -c 'print(1)'"
  "node|/usr/bin/node -e 'console.log(1)'|$POLYRUN run -l javascript -c 'console.log(1)'|$(q "${BWRAP[@]}") /usr/bin/node -e 'console.log(1)'"
  "bash|/usr/bin/bash -c 'echo 1'|$POLYRUN run -l bash -c 'echo 1'|$(q "${BWRAP[@]}") /usr/bin/bash -c 'echo 1'"
  "c (compile+run)|/usr/bin/bash -c '/usr/bin/gcc -O2 -o $WORK/h2 $WORK/hello.c && $WORK/h2'|$POLYRUN --config $WORK/nocache.toml run $WORK/hello.c|$(q "${BWRAP[@]}" --bind "$WORK" "$WORK") /usr/bin/bash -c '/usr/bin/gcc -O2 -o $WORK/h3 $WORK/hello.c && $WORK/h3'"
  "c (cached compile+run)|$WORK/hello|$POLYRUN run $WORK/hello.c|$(q "${BWRAP[@]}" --ro-bind "$WORK" "$WORK") $WORK/hello"
  "c (run only)|$WORK/hello||$(q "${BWRAP[@]}" --ro-bind "$WORK" "$WORK") $WORK/hello"
)

# Warm the version cache and page cache so "cold" means a fresh process, not a cold disk.
"$POLYRUN" languages >/dev/null

for c in "${CASES[@]}"; do
  IFS='|' read -r name bare poly bw <<<"$c"
  # The host's environment stays out of the bare runs too (NODE_EXTRA_CA_CERTS alone costs
  # node ~80 ms), as it stays out of the sandbox.
  cmds=(-n bare "env -i PATH=/usr/bin:/bin LANG=C.UTF-8 $bare")
  [ -n "$poly" ] && cmds+=(-n polyrun "$poly")
  cmds+=(-n bubblewrap "$bw")
  slug=$(tr -c 'a-z0-9\n' '_' <<<"$name")
  hyperfine -N --warmup 5 --runs "$RUNS" --style none --export-json "$OUT/cold_$slug.json" "${cmds[@]}" >/dev/null
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
rows, summary = [], {}
print(f"{'case':<18}{'bare ms':>9}{'polyrun ms':>12}{'+ms':>8}{'x':>7}{'bwrap ms':>10}{'+ms':>8}{'x':>7}")
for f in sorted(os.listdir(out)):
    if not f.startswith("cold_") or f == "cold_start.json":
        continue
    res = {r["command"]: r for r in json.load(open(os.path.join(out, f)))["results"]}
    med = {k: statistics.median(v["times"]) * 1000 for k, v in res.items()}
    name = f[5:-5].rstrip("_").replace("_", " ")
    b = med["bare"]
    p = med.get("polyrun")
    w = med["bubblewrap"]
    ps = f"{p:12.2f}{p - b:8.2f}{p / b:7.2f}" if p else f"{'-':>12}{'-':>8}{'-':>7}"
    print(f"{name:<18}{b:9.2f}{ps}{w:10.2f}{w - b:8.2f}{w / b:7.2f}")
    summary[name] = {"bare_ms": b, "polyrun_ms": p, "bubblewrap_ms": w}
json.dump(summary, open(os.path.join(out, "cold_start.json"), "w"), indent=2)
print(f"\nmedians of hyperfine runs; '+ms' is the overhead over bare, 'x' the ratio. JSON: {out}/cold_start.json")
PY
