#!/usr/bin/env bash
# Runtime tests' services (issue 4): PostgreSQL on loopback and Chromium, both from Debian packages.
# Idempotent and quick when already done; prints the PostgreSQL URL for TRIPWIRE_TEST_PG_URL.
set -euo pipefail
bash "$(dirname "$0")/system-deps.sh" >&2
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA=${TRIPWIRE_PGDATA:-/tmp/tripwire-test-pg}
PGPORT=${TRIPWIRE_PGPORT:-54329}
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chown postgres "$PGDATA"
  su postgres -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
fi
if ! su postgres -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
  su postgres -c "$PGBIN/pg_ctl -D $PGDATA -w -l $PGDATA/server.log -o \"-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on\" start" >/dev/null
fi
echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
