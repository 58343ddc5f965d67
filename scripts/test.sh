#!/usr/bin/env bash
# The test command: brings up PostgreSQL and Redis (scripts/services.sh), then runs every test
# of the workspace against them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two steps, so a failure to bring the services up stops here with its own message.
exports=$(bash scripts/services.sh)
eval "$exports"
exec cargo test --workspace "$@"
