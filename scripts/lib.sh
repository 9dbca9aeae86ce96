# Shared by the scripts: the repository root and the database URL helpers.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# with_database URL NAME: the same server, another database.
with_database() {
  local url=$1 db=$2 base query=""
  base=${url%%\?*}
  [[ $url == *\?* ]] && query="?${url#*\?}"
  echo "${base%/*}/${db}${query}"
}

# ensure_database ADMIN_URL NAME: create the database if it does not exist.
ensure_database() {
  local admin=$1 db=$2
  if [[ -z $("$ROOT/scripts/localpg.sh" psql -d "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
    "$ROOT/scripts/localpg.sh" psql -d "$admin" -qc "CREATE DATABASE $db" >/dev/null
  fi
}
