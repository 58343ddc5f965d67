#!/usr/bin/env bash
# Brings up the services Chronicle's tests need on this machine: a private PostgreSQL 15
# cluster and a Redis server, both on loopback, both started by this script (no system service
# is touched). Installs the Debian packages first when they are missing (with Chromium and its
# driver, which the browser tests use).
#
#   source scripts/services.sh      # starts (or reuses) them and exports DATABASE_URL, REDIS_URL
#   scripts/services.sh stop        # stops them
#
# Settings (environment): CHRONICLE_SERVICES_DIR (default /tmp/chronicle-services-$UID),
# CHRONICLE_TEST_PG_PORT (55432), CHRONICLE_TEST_REDIS_PORT (56379).
set -euo pipefail

SERVICES_DIR="${CHRONICLE_SERVICES_DIR:-/tmp/chronicle-services-$(id -u)}"
PG_PORT="${CHRONICLE_TEST_PG_PORT:-55432}"
REDIS_PORT="${CHRONICLE_TEST_REDIS_PORT:-56379}"
PG_DATA="$SERVICES_DIR/pg"
PG_BIN=""

log() { echo "services: $*" >&2; }

find_pg_bin() {
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then PG_BIN="$d"; return 0; fi
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages: $*; install them (apt-get install $*) or run as root"; exit 1
  fi
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

ensure_packages() {
  local missing=()
  find_pg_bin || missing+=(postgresql-15)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # The browser tests (GraphiQL) drive the distribution's Chromium through its driver.
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  find_pg_bin || { log "PostgreSQL binaries not found after install"; exit 1; }
}

# As root, PostgreSQL must run as an unprivileged user: the Debian `postgres` user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {
  mkdir -p "$SERVICES_DIR"
  if [ "$(id -u)" -eq 0 ]; then chmod 755 "$SERVICES_DIR"; fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    mkdir -p "$PG_DATA"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_DATA"; fi
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    cat >>"$PG_DATA/postgresql.conf" <<CONF
# Chronicle test cluster: loopback only, many short-lived databases, speed over durability.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start >/dev/null; then
      log "PostgreSQL did not start (port $PG_PORT in use?); the end of $PG_DATA/server.log:"
      tail -n 5 "$PG_DATA/server.log" >&2 || true
      exit 1
    fi
  fi
  log "PostgreSQL ready on 127.0.0.1:$PG_PORT"
}

start_redis() {
  mkdir -p "$SERVICES_DIR/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' \
      --appendonly no --dir "$SERVICES_DIR/redis" --logfile "$SERVICES_DIR/redis/redis.log"
    for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
      log "Redis did not start on port $REDIS_PORT; see $SERVICES_DIR/redis/redis.log"; exit 1
    fi
  fi
  log "Redis ready on 127.0.0.1:$REDIS_PORT"
}

stop_all() {
  find_pg_bin || true
  if [ -n "$PG_BIN" ] && [ -f "$PG_DATA/PG_VERSION" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true
  fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

if [ "${1:-}" = "stop" ]; then stop_all; exit 0; fi

ensure_packages
start_pg
start_redis
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
echo "export DATABASE_URL=$DATABASE_URL"
echo "export REDIS_URL=$REDIS_URL"
