#!/usr/bin/env bash
# Runs every test of the workspace with the clock moved ahead (400 days by default), so a test
# that compares a fixed date with the clock fails here long before the calendar reaches it.
#
#   scripts/test-shifted-clock.sh            # +400 days
#   CHRONICLE_CLOCK_SHIFT=+800d scripts/test-shifted-clock.sh
#   scripts/test-shifted-clock.sh calls      # only the test executables whose name contains "calls"
#
# How (libfaketime, Debian's `faketime` package):
# - the tests are built normally (`cargo` itself hangs under libfaketime), and the executables
#   are listed from `cargo test --no-run --message-format=json`;
# - a PostgreSQL cluster of its own (port CHRONICLE_SHIFTED_PG_PORT, default 55433) runs with
#   the shifted clock: `postgres` is started under `faketime` in the background and polled with
#   `pg_isready` (`pg_ctl` itself stalls under libfaketime), and the script checks that the
#   server's `now()` really is shifted;
# - Redis is the one from scripts/services.sh, on the real clock (`redis-cli` hangs under
#   libfaketime);
# - each test executable runs under `faketime` in its package's directory, as `cargo test` runs
#   it. Programs the tests start (the `chronicle` binary) inherit the shifted clock; `pg_ctl`,
#   `initdb` and `pg_isready` that they call run on the real clock (FAKETIME_SKIP_CMDS), while the
#   `postgres` server they start keeps the shifted one. The browser tests start chromedriver
#   (and Chromium) without libfaketime: it traps under it, and the browser is not under test.
# Doc tests are not run here (rustdoc runs through cargo); they compare no date with the clock.
set -euo pipefail
cd "$(dirname "$0")/.."

SHIFT="${CHRONICLE_CLOCK_SHIFT:-+400d}"
FILTER="${1:-}"
SERVICES_DIR="${CHRONICLE_SERVICES_DIR:-/tmp/chronicle-services-$(id -u)}"
PG_PORT="${CHRONICLE_SHIFTED_PG_PORT:-55433}"
PG_DATA="$SERVICES_DIR/pg-shifted"

log() { echo "shifted-clock: $*" >&2; }

# PostgreSQL and Redis packages, and Redis itself (real clock).
exports=$(bash scripts/services.sh)
eval "$exports"

missing=()
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then log "missing: apt-get install ${missing[*]}"; exit 1; fi
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PG_BIN=""
for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then PG_BIN="$d"; break; fi
done
[ -n "$PG_BIN" ] || { log "PostgreSQL binaries not found"; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pg() {
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    local pid
    pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid" 2>/dev/null || true # fast shutdown
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
}

# A fresh cluster every run: databases made on another clock would only confuse.
stop_pg
rm -rf "$PG_DATA"
mkdir -p "$PG_DATA"
if [ "$(id -u)" -eq 0 ]; then chmod 755 "$SERVICES_DIR"; chown postgres:postgres "$PG_DATA"; fi
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
cat >>"$PG_DATA/postgresql.conf" <<CONF
# Chronicle's shifted-clock test cluster: the test cluster's settings on another port.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
trap stop_pg EXIT
log "starting PostgreSQL on 127.0.0.1:$PG_PORT with the clock at $SHIFT"
as_pg faketime -f "$SHIFT" "$PG_BIN/postgres" -D "$PG_DATA" >"$PG_DATA/server.log" 2>&1 &
ready=""
for _ in $(seq 1 600); do
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  log "PostgreSQL did not start; the end of $PG_DATA/server.log:"
  tail -n 5 "$PG_DATA/server.log" >&2 || true
  exit 1
fi
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export DATABASE_URL

# The server's clock must be the shifted one, or this run proves nothing.
server_day=$(psql -X -At "$DATABASE_URL" -c "SELECT (now() AT TIME ZONE 'UTC')::date")
shifted_day=$(faketime -f "$SHIFT" date -u +%F)
if [ "$server_day" != "$shifted_day" ]; then
  log "PostgreSQL's clock reads $server_day, expected $shifted_day: libfaketime did not take"; exit 1
fi
log "PostgreSQL's clock reads $server_day (today is $(date -u +%F))"

log "building the tests"
build_log="$SERVICES_DIR/shifted-build.log"
if ! cargo test --workspace --no-run --message-format=json >"$build_log.json" 2>"$build_log"; then
  log "the build failed:"; tail -n 40 "$build_log" >&2; exit 1
fi
executables=$(jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test == true)
  | "\(.manifest_path)\t\(.executable)"' "$build_log.json")
[ -n "$executables" ] || { log "no test executables found"; exit 1; }

export FAKETIME_SKIP_CMDS="pg_ctl,initdb,pg_isready,redis-cli,redis-server"
passed=0
failed=0
failures=()
while IFS=$'\t' read -r manifest exe; do
  name=$(basename "$exe")
  if [ -n "$FILTER" ] && [[ "$name" != *"$FILTER"* ]]; then continue; fi
  dir=$(dirname "$manifest")
  log "running $name under faketime $SHIFT"
  out=$(mktemp)
  set +e
  (cd "$dir" && CARGO_MANIFEST_DIR="$dir" faketime -f "$SHIFT" "$exe") 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+' | tail -n 1 || true)
  f=$(grep -Eo '; [0-9]+ failed' "$out" | grep -Eo '[0-9]+' | tail -n 1 || true)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [ "$status" -ne 0 ]; then
    failures+=("$name")
    # A crash with no summary line still counts as a failure.
    if [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
  fi
  rm -f "$out"
done <<<"$executables"

if [ ${#failures[@]} -gt 0 ]; then
  log "failed with the clock at $SHIFT: ${failures[*]}"
fi
echo "shifted-clock: $passed passed, $failed failed"
[ ${#failures[@]} -eq 0 ]
