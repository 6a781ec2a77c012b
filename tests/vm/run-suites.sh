#!/bin/bash
# Runs inside the cgroup-v2-only VM (see cgroup2-vm.sh): proves polyrun picked cgroup v2 and
# runs the sandbox, escape and CLI suites there. Usage: run-suites.sh BUILD_DIR
set -uo pipefail
BUILD=${1:?usage: run-suites.sh BUILD_DIR}
status=0

echo "== cgroup hierarchy in the VM"
grep cgroup /proc/mounts
doctor=$("$BUILD/polyrun" doctor --json) || { echo "polyrun doctor failed:"; echo "$doctor"; status=1; }
if grep -q '"detail": "cgroup v2' <<<"$doctor"; then
  echo "polyrun chose cgroup v2"
else
  echo "FAIL: polyrun did not choose cgroup v2:"; echo "$doctor"; status=1
fi

# Language self-tests: two languages (an interpreter and a compiler) stand for all of them here;
# the language-specific parts do not depend on the cgroup version, and the VM emulates its CPU.
# That holds for the CLI's self-tests and for the escape suite's replays of them in prebuilt
# sandboxes and warm ones (Python's alone there: C has no warm bootstrap). On an emulated CPU a
# TypeScript compile stage came within its 10 s CPU limit, and once past it.
replay='Languages/PrebuiltSelfTest.BehavesAsCold'
warm='Languages/WarmSelfTest.BehavesAsCold'
runs=(
  "src/sandbox/sandbox_test|*"
  "tests/escape/escape_test|-$replay/*:$warm/*"
  "tests/escape/escape_test|$replay/python_*:$replay/c_*:$warm/python_*"
  "tests/integration/cli_test|Cli.*:ArtifactCache.*:Check.*:Languages/LanguageSelfTest.Passes/python_*:Languages/LanguageSelfTest.Passes/c_*"
)
for run in "${runs[@]}"; do
  suite=${run%%|*}
  filter=${run#*|}
  echo "== $suite $filter (cgroup v2)"
  if [ -x "$BUILD/$suite" ]; then
    "$BUILD/$suite" --gtest_brief=1 --gtest_filter="$filter" || status=1
  else
    echo "FAIL: $BUILD/$suite is missing"; status=1
  fi
done
exit $status
