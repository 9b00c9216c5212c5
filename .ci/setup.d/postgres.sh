#!/usr/bin/env bash
# PostgreSQL for the tests that run a real `mlflow server` on a PostgreSQL backend store
# (tests/fixtures/mlflow_server.py, docs/loop.md "Pointing driftloop at an MLflow server"):
#   - Debian's `postgresql` server binaries (initdb, postgres under /usr/lib/postgresql/<ver>/bin), installed
#     with apt only when they are absent. No cluster is created and no service is started: the test fixture
#     runs its own server in a temp dir on 127.0.0.1 and stops it by PID.
#   - The Python driver MLflow's SQLAlchemy store needs (psycopg2-binary) is a dev extra in pyproject.toml,
#     installed by .ci/setup with the rest.
# PostgreSQL refuses to run as root: run as root, the fixture starts it as the `postgres` user the Debian
# package creates. Idempotent: a second run only checks that the binaries are there.
set -euo pipefail

find_postgres() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$found" ]; then found=$(command -v postgres || true); fi
  echo "$found"
}

if [ -z "$(find_postgres)" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "[postgres] PostgreSQL's server binaries (initdb, postgres) are missing and apt-get is unavailable:" \
      "install PostgreSQL >= 13 so that /usr/lib/postgresql/<ver>/bin/postgres or 'postgres' on PATH exists" >&2
    exit 1
  fi
  as_root=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "[postgres] PostgreSQL is missing; installing it needs root: run 'apt-get install -y postgresql' as root" >&2
      exit 1
    fi
    as_root=(sudo)
  fi
  # The package would create and start a 'main' cluster on port 5432: the tests need neither.
  "${as_root[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | "${as_root[@]}" tee /etc/postgresql-common/createcluster.d/driftloop.conf >/dev/null
  echo "[postgres] installing PostgreSQL (Debian package postgresql)"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq postgresql >/dev/null
fi

POSTGRES=$(find_postgres)
if [ -z "$POSTGRES" ] || [ ! -x "$(dirname "$POSTGRES")/initdb" ]; then
  echo "[postgres] PostgreSQL installed but postgres/initdb not found under /usr/lib/postgresql/*/bin" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && ! getent passwd postgres >/dev/null; then
  echo "[postgres] running as root but there is no 'postgres' user to run the server as (PostgreSQL" \
    "refuses root): create one (useradd --system postgres) or reinstall the postgresql package" >&2
  exit 1
fi
echo "[postgres] ready: $("$POSTGRES" --version)"
