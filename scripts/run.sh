#!/usr/bin/env bash
# The run command: serves Chronicle on http://127.0.0.1:8080 with the demo data set, on the
# embedded default (a private PostgreSQL cluster under .chronicle/, started by the server
# itself). Installs the PostgreSQL 15 server package first if the machine lacks it.
# Extra arguments go to `chronicle serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "run: installing postgresql-15 with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  else
    echo "run: PostgreSQL server binaries are missing: apt-get install postgresql-15 (or set DATABASE_URL)" >&2
    exit 1
  fi
fi
exec cargo run -p chronicle-api --bin chronicle -- serve --demo "$@"
