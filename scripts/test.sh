#!/usr/bin/env bash
# The test command: brings up PostgreSQL and Redis (scripts/services.sh), then runs every test
# of the workspace against them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/services.sh)"
exec cargo test --workspace "$@"
