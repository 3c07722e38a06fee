#!/usr/bin/env bash
# Checks that scripts/check-doc-examples.py (the doc test) passes what works and fails what
# does not: a failing block, a transcript whose output differs, an unmarked `cargo test`, an
# HTTP error answer, a skip marker without a reason, a block past its time limit; and that
# nothing it started is left running, after a normal end or after SIGTERM. The fixtures are
# tests/docs/fixtures/*.md; they call neither bitrouter nor the mock, so stand-ins replace the
# binaries here.
# Usage: tests/docs/selftest.sh   (a few seconds; .ci/run runs it before the doc test)
set -euo pipefail
cd "$(dirname "$0")/../.."
fixtures=tests/docs/fixtures
tmp=$(mktemp -d)
runner_pid=
cleanup() {
  if [ -n "$runner_pid" ]; then kill "$runner_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/bin"
for b in bitrouter mock-upstream; do
  printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$b"
  chmod +x "$tmp/bin/$b"
done
run() { python3 scripts/check-doc-examples.py --bin-dir "$tmp/bin" --timeout "${TIMEOUT:-30}" "$@"; }

failures=0
bad() { echo "selftest: FAIL: $*"; failures=$((failures + 1)); }

# Processes the fixtures start, identified by arguments no other program uses.
MARKS=('sleep 4242.25' 'sleep 4242.5' 'http.server 18794' 'http.server 18795' 'sleep 4243.5' 'sleep 4243.75')
no_leftovers() {
  local m pids
  for m in "${MARKS[@]}"; do
    pids=$(pgrep -f -- "$m" || true)
    if [ -n "$pids" ]; then
      bad "$1 left '$m' running (pids $pids)"
      kill $pids 2>/dev/null || true
    fi
  done
}

expect_pass() {
  local f=$1
  if run "$fixtures/$f" > "$tmp/out" 2>&1; then
    echo "selftest: ok: $f passes"
  else
    bad "$f should pass:"; sed 's/^/    /' "$tmp/out"
  fi
  no_leftovers "$f"
}

# expect_fail FIXTURE TEXT...: exits 1 and prints each TEXT.
expect_fail() {
  local f=$1 status=0 t
  shift
  run "$fixtures/$f" > "$tmp/out" 2>&1 || status=$?
  if [ "$status" -ne 1 ]; then
    bad "$f: exit status $status, expected 1:"; sed 's/^/    /' "$tmp/out"
  else
    for t in "$@"; do
      grep -qF -- "$t" "$tmp/out" || { bad "$f: output lacks '$t':"; sed 's/^/    /' "$tmp/out"; }
    done
    echo "selftest: ok: $f fails as it should"
  fi
  no_leftovers "$f"
}

expect_pass pass.md
expect_fail failing-block.md "FAIL $fixtures/failing-block.md:7: exit status 1" "about to fail" "echo never printed"
expect_fail wrong-output.md "FAIL $fixtures/wrong-output.md:3: output differs" "-documented output" "+actual output"
expect_fail unmarked-cargo.md "FAIL $fixtures/unmarked-cargo.md:3: exit status 97" "is not run by the doc test"
expect_fail http-error.md "FAIL $fixtures/http-error.md:8: exit status 22" "404"
expect_fail bad-marker.md "$fixtures/bad-marker.md:4: doc-test: skip needs a reason"
TIMEOUT=1 expect_fail hangs.md "FAIL $fixtures/hangs.md:3: timed out after 1.0 s"

# Stopped half-way: SIGTERM to the runner kills what the running block started.
python3 scripts/check-doc-examples.py --bin-dir "$tmp/bin" --timeout 30 "$fixtures/hangs.md" > "$tmp/out" 2>&1 &
runner_pid=$!
for _ in $(seq 1 100); do
  pgrep -f -- 'sleep 4243.5' > /dev/null && break
  sleep 0.1
done
status=0
kill -TERM "$runner_pid"
wait "$runner_pid" || status=$?
runner_pid=
if [ "$status" -ne 130 ]; then
  bad "hangs.md: exit status $status after SIGTERM, expected 130:"; sed 's/^/    /' "$tmp/out"
else
  echo "selftest: ok: hangs.md stops on SIGTERM"
fi
no_leftovers "hangs.md after SIGTERM"

if [ "$failures" -ne 0 ]; then
  echo "selftest: $failures failed"
  exit 1
fi
echo "selftest: the doc test passes working examples and fails broken ones"
