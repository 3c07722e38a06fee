#!/usr/bin/env bash
# Builds the gateway and the harness in release mode, then runs the benchmark.
# Arguments go to the harness: bench/run.sh --smoke, bench/run.sh --scenario 1,4 --rounds 5, ...
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p bitrouter -p bitrouter-bench
exec target/release/bench "$@"
