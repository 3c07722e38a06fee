#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 20) on its committed corpus (fuzz/corpus/),
# writing what it finds to a scratch folder so the tree stays clean. A crash fails the run and
# leaves its input under fuzz/artifacts/<target>/. A longer run: scripts/fuzz-smoke.sh 600 --release
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
profile="${2:---dev}"
export RUSTC_BOOTSTRAP=1
targets=(request sse_stream jwt config)
cargo fuzz build -s none "$profile"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  # -rss_limit_mb: a decoder that buffers without bound is a finding, not a slow run.
  status=0
  cargo fuzz run -s none "$profile" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$scratch/$t.log" 2>&1 ||
    status=$?
  # libFuzzer's progress lines stay in the log; the summary and any crash are shown.
  grep -E '^(Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked)' "$scratch/$t.log" | sed "s/^/$t: /" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$scratch/$t.log"
    echo "fuzz target $t failed (exit $status); its input is under fuzz/artifacts/$t/"
    exit 1
  fi
done
