#!/usr/bin/env bash
# Installs and starts the PostgreSQL server that tests/test_tune_postgres.py shares a
# study in: Debian's `postgresql` package, its first cluster started, and a role and a
# database for the test (postgresql://edgekit:edgekit@127.0.0.1:5432/edgekit_tune).
# Idempotent; runs as root (CI's container); exports nothing.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1) || true
if [ -z "${version:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  cluster=main
  pg_createcluster "$version" "$cluster" >/dev/null
  read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
fi
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" "$cluster" start
fi
for _ in $(seq 1 30); do
  if su postgres -c "pg_isready -q -p $port"; then break; fi
  sleep 1
done
psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $port -tAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='edgekit'")" != "1" ]; then
  psql_admin "CREATE ROLE edgekit LOGIN PASSWORD 'edgekit'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='edgekit_tune'")" != "1" ]; then
  psql_admin "CREATE DATABASE edgekit_tune OWNER edgekit"
fi
echo "PostgreSQL $version/$cluster on port $port: database edgekit_tune, role edgekit"
