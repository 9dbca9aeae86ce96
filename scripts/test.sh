#!/usr/bin/env bash
# `make test` (after lint): every test of the workspace against a real PostgreSQL — the project's
# local cluster unless DATABASE_URL names another server. Each test makes its own database.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DATABASE_URL=${DATABASE_URL:-$(scripts/localpg.sh url)}
export DATABASE_URL

# Databases left by earlier runs.
stale=$(scripts/localpg.sh psql -d "$DATABASE_URL" -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'cr\_test\_%' OR datname LIKE 'cr\_tpl\_%'")
for db in $stale; do
  scripts/localpg.sh psql -d "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
