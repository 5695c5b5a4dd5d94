#!/usr/bin/env bash
# Installs (from Debian packages) and starts the services the test suite needs: a PostgreSQL server on
# loopback and headless Chromium. Idempotent. Prints the variables to export, e.g.
#   eval "$(bash scripts/services.sh)"
set -euo pipefail
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi
# PostgreSQL: start the default cluster, create a role and a database for the tests.
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q online; then
  pg_lsclusters -h | grep -q . || pg_createcluster "$ver" main >&2
  pg_ctlcluster "$ver" main start >&2
fi
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='adapterhub'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE adapterhub LOGIN SUPERUSER PASSWORD 'adapterhub'\"" >&2
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='adapterhub_test'\"" | grep -q 1 ||
  su postgres -c "createdb -O adapterhub adapterhub_test" >&2
port=$(pg_lsclusters -h | awk '{print $3; exit}')
echo "export ADAPTERHUB_TEST_DATABASE_URL=postgresql+psycopg2://adapterhub:adapterhub@127.0.0.1:${port}/adapterhub_test"
echo "export ADAPTERHUB_TEST_CHROMIUM=/usr/bin/chromium"
