#!/usr/bin/env bash
# Installs what the test suite needs when it is absent, as root with apt-get (Debian):
#  - the `postgresql` package, for its server binaries (/usr/lib/postgresql/*/bin): the tests
#    start their own throwaway cluster from them (tests/pg_cluster.py), they never use a
#    configured server unless SIGNOFF_TEST_PG_URL names one;
#  - `chromium`, for the console browser tests (Playwright drives /usr/bin/chromium).
set -euo pipefail

updated=
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$1 is missing: install Debian's $1 package (or run this script as root)" >&2
    exit 1
  fi
  echo "installing Debian package $1 (needed by the test suite)…"
  if [ -z "$updated" ]; then apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

if [ -z "${SIGNOFF_TEST_PG_URL:-}" ] && [ -z "${SIGNOFF_PG_BIN:-}" ] \
  && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  apt_install postgresql
fi

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
