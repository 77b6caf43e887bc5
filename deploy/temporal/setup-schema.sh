#!/bin/sh
# Creates Temporal's two PostgreSQL databases when missing and brings their schemas to the
# newest version with the official tool: `temporal-sql-tool setup-schema -v 0.0` (version
# tables; a no-op when they exist) then `update-schema -d <versioned folder>`. Safe to run on
# every start and after an upgrade of the server image (docs/production.md, upgrade order).
# Run by the compose schema job (temporalio/admin-tools, POSIX sh) and by
# scripts/dev/temporal-cluster.ts on this machine: the same script, the same tool.
#
# Environment (the names deploy/temporal/config/patchnanny.yaml reads):
#   POSTGRES_SEEDS, DB_PORT (5432), POSTGRES_USER, POSTGRES_PWD, DBNAME (temporal),
#   VISIBILITY_DBNAME (temporal_visibility),
#   TEMPORAL_SCHEMA_DIR (/etc/temporal/schema/postgresql/v12, where admin-tools has it),
#   TEMPORAL_SQL_TOOL (temporal-sql-tool on PATH).
set -eu

tool="${TEMPORAL_SQL_TOOL:-temporal-sql-tool}"
schema_dir="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

# The tool reads its connection from these (the password stays out of argv).
SQL_PLUGIN=postgres12
SQL_HOST="${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) is required}"
SQL_PORT="${DB_PORT:-5432}"
SQL_USER="${POSTGRES_USER:?POSTGRES_USER is required}"
SQL_PASSWORD="${POSTGRES_PWD:-}"
export SQL_PLUGIN SQL_HOST SQL_PORT SQL_USER SQL_PASSWORD

create_database() {
  out="$("$tool" --db "$1" create-database 2>&1)" && { echo "created database $1"; return 0; }
  case "$out" in
    *"already exists"*) echo "database $1 exists" ;;
    *) printf '%s\n' "$out" >&2; return 1 ;;
  esac
}

migrate() {
  db="$1" dir="$schema_dir/$2/versioned"
  [ -d "$dir" ] || { echo "no schema folder $dir" >&2; return 1; }
  create_database "$db"
  "$tool" --db "$db" setup-schema -v 0.0
  "$tool" --db "$db" update-schema -d "$dir"
  echo "database $db: schema up to date ($2)"
}

migrate "${DBNAME:-temporal}" temporal
migrate "${VISIBILITY_DBNAME:-temporal_visibility}" visibility
