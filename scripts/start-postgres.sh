#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the test suite and print its URL.
# Installs the Debian packages when missing. Usage: eval "$(scripts/start-postgres.sh)"
# It prints MODELYARD_TEST_PG_STARTED=1 when it started the server (not when one was running),
# so the caller knows to stop it afterwards with `scripts/start-postgres.sh --stop`.
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGDATA="${PGDATA:-/tmp/modelyard-pg}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
RUN=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --create-home postgres
  RUN=(runuser -u postgres --)
fi
if [ "${1:-}" = --stop ]; then
  exec "${RUN[@]}" "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop
fi
STARTED=0
if ! "${RUN[@]}" "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  STARTED=1
  rm -rf "$PGDATA"
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
  "${RUN[@]}" "$BIN/initdb" -D "$PGDATA" -U modelyard --auth=trust >/dev/null
  "${RUN[@]}" "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >&2
fi
echo "export MODELYARD_TEST_PG_STARTED=$STARTED"
echo "export MODELYARD_TEST_POSTGRES_URL=postgresql+psycopg://modelyard@127.0.0.1:$PGPORT/postgres"
