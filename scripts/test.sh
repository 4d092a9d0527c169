#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole suite, after scripts/bootstrap.sh: type check, unit tests, then
# the Redis tests (a real redis-server per test), the Kubernetes tests (a
# fake API server speaking the real list/watch protocol), then the kernel tests
# (real BPF, real sockets, as root). KM_SKIP_KERNEL_TESTS=1
# skips the kernel tests on purpose; without it, a kernel test that cannot
# run fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/bin:$PATH"

passed=0 failed=0 skipped=0
status=0
tally() { # reads ava's summary lines from a log
  local log=$1 n
  n=$(grep -Eo '^ *[0-9]+ tests? passed' "$log" | grep -Eo '[0-9]+' | tail -1); passed=$((passed + ${n:-0}))
  n=$(grep -Eo '^ *[0-9]+ tests? failed' "$log" | grep -Eo '[0-9]+' | tail -1); failed=$((failed + ${n:-0}))
  n=$(grep -Eo '^ *[0-9]+ uncaught exceptions?' "$log" | grep -Eo '[0-9]+' | tail -1); failed=$((failed + ${n:-0}))
  n=$(grep -Eo '^ *[0-9]+ tests? skipped' "$log" | grep -Eo '[0-9]+' | tail -1); skipped=$((skipped + ${n:-0}))
}
run() { # name, command...
  local name=$1; shift
  local log; log=$(mktemp)
  echo "== $name"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  tally "$log"
  rm -f "$log"
  if [ "$rc" -ne 0 ]; then
    echo "== $name FAILED (exit $rc)"
    status=1
    # A failure ava could not count (a crash, a type error) still counts once.
    [ "$failed" -gt 0 ] || failed=1
  fi
}

run typecheck npx tsc -p tsconfig.json
run unit npx ava 'test/unit/**/*.test.ts'
run proxy npx ava 'test/proxy/**/*.test.ts'
run redis npx ava 'test/redis/**/*.test.ts'
run kube npx ava 'test/kube/**/*.test.ts'
run kernel npx ava --concurrency 1 'test/kernel/**/*.test.ts'

echo
echo "kernmesh: $passed passed, $failed failed, $skipped skipped"
exit $status
