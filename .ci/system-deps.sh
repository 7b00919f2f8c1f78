#!/usr/bin/env bash
# Debian packages the test suite needs; installs only what is missing (idempotent).
#   bwrap     - bubblewrap, the behaviour scenarios' sandbox
set -euo pipefail
declare -A need=([bwrap]=bubblewrap)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: missing system packages: ${missing[*]}; install them (Debian: apt-get install -y ${missing[*]})" >&2
  exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
