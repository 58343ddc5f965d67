#!/usr/bin/env bash
# The benchmark suite (issues 6 and 19): brings up the test services, builds release binaries,
# and runs chronicle-bench against a PostgreSQL configured as users run it. Results:
# bench-results/results.{md,json} and appends.svg.
#
#   scripts/bench.sh                 # full scale: 1 M events, up to 64 clients, 1,000 subscribers
#   scripts/bench.sh --scale smoke   # a few thousand events, in seconds (CI runs it; asserts nothing)
#
# The database (the first that applies):
# - CHRONICLE_BENCH_DATABASE_URL: a server you give it (it creates chronicle_bench* databases);
# - CHRONICLE_BENCH_CLUSTER=test: the test cluster of scripts/services.sh (fsync and
#   synchronous_commit off: it hides the cost of a durable commit, the largest of the append
#   path; use it only to compare with older runs);
# - otherwise a cluster of its own with production settings (fsync, synchronous_commit and
#   full_page_writes on), in CHRONICLE_BENCH_PG_DIR (default /tmp/chronicle-bench-pg-$UID) on
#   port CHRONICLE_BENCH_PG_PORT (55460), started here and left running (stop it with
#   `scripts/bench.sh stop`).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR="${CHRONICLE_BENCH_PG_DIR:-/tmp/chronicle-bench-pg-$(id -u)}"
BENCH_PORT="${CHRONICLE_BENCH_PG_PORT:-55460}"
PG_BIN=/usr/lib/postgresql/15/bin

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = "stop" ]; then
  as_pg "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" -m fast stop
  exit 0
fi

exports=$(bash scripts/services.sh)
eval "$exports"

production_cluster() {
  mkdir -p "$BENCH_DIR"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$BENCH_DIR"; fi
  if [ ! -f "$BENCH_DIR/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$BENCH_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    cat >>"$BENCH_DIR/data/postgresql.conf" <<CONF
# Chronicle's benchmark cluster: durability as users run it (the defaults, stated).
listen_addresses = '127.0.0.1'
port = $BENCH_PORT
unix_socket_directories = '$BENCH_DIR'
max_connections = 400
shared_buffers = 512MB
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/server.log" -w -t 60 start >/dev/null
  fi
  echo "postgres://postgres@127.0.0.1:$BENCH_PORT/postgres"
}

if [ -n "${CHRONICLE_BENCH_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$CHRONICLE_BENCH_DATABASE_URL"
elif [ "${CHRONICLE_BENCH_CLUSTER:-}" = "test" ]; then
  : # DATABASE_URL from scripts/services.sh
else
  DATABASE_URL=$(production_cluster)
  export DATABASE_URL
fi

# Many WebSocket subscribers need many file descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p chronicle-api --bin chronicle -p chronicle-tests --bin chronicle-bench
exec target/release/chronicle-bench "$@"
