#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server (Debian's postgresql package) on loopback:
#   scripts/with_postgres.sh python -m pytest
# The command sees MUMIC_TEST_DATABASE_URL (the server's maintenance database); the test suite
# makes one database per test there. The server and its files are removed afterwards.
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ]; then
  echo "PostgreSQL is not installed: apt-get install postgresql" >&2
  exit 1
fi
PORT=${MUMIC_TEST_PG_PORT:-55432}
DIR=$(mktemp -d /tmp/mumic-pg.XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
  chown postgres "$DIR"
  AS=(runuser -u postgres --)
fi
"${AS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U mumic --auth=trust -E UTF8 >/dev/null
stop() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap stop EXIT
# A test server: durability off (fsync) for speed; its data is thrown away anyway.
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"
MUMIC_TEST_DATABASE_URL="postgresql+psycopg://mumic@127.0.0.1:$PORT/postgres" "$@"
