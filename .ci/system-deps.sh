#!/usr/bin/env bash
# Debian packages the test suite needs; installs only what is missing (idempotent).
#   bubblewrap  the behaviour scenarios' sandbox
#   postgresql  the runtime service's PostgreSQL tests (started by .ci/services.sh)
#   chromium    the runtime dashboard's browser test (driven by Playwright)
#   wrk         bench/serve.py's load generator (a C client, so the bench measures the server)
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: missing system packages: ${missing[*]}; install them (Debian: apt-get install -y ${missing[*]})" >&2
  exit 2
fi
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2
