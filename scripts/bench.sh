#!/usr/bin/env bash
# The benchmark suite (issue 6): brings up the test services, builds release binaries, and runs
# chronicle-bench. Results: bench-results/results.{md,json} and appends.svg.
#
#   scripts/bench.sh                 # full scale: 1 M events, up to 64 clients, 1,000 subscribers
#   scripts/bench.sh --scale smoke   # a few thousand events, in seconds (CI runs it; asserts nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
exports=$(bash scripts/services.sh)
eval "$exports"
# Many WebSocket subscribers need many file descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p chronicle-api --bin chronicle -p chronicle-tests --bin chronicle-bench
exec target/release/chronicle-bench "$@"
