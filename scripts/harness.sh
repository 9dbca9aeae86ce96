# The real binary on a fresh database, with the ad platforms and webhooks played by
# scripts/fake-platforms.py: shared by scripts/examples.sh and scripts/ui-test.sh.
#
#   harness_init NAME            a work folder and the database cr_NAME_<pid>; cleans up on exit
#   harness_fake [STATUS]        start the fake platforms (webhook answers STATUS, default 200); sets FAKE_URL
#   harness_serve                migrate, start `convrelay serve` against the fake; sets BASE
#   harness_key SCOPE...         print a new key of the workspace "demo" with these scopes
#
# The caller sets `say` and may export CONVRELAY_* settings before harness_serve.
# shellcheck shell=bash

HARNESS_BIN=target/debug/convrelay
HARNESS_SERVER_PID=""
HARNESS_FAKE_PID=""
HARNESS_DB=""
HARNESS_ADMIN=""
HARNESS_WORK=""

harness_cleanup() {
  local status=$?
  local pid
  for pid in "$HARNESS_SERVER_PID" "$HARNESS_FAKE_PID"; do
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n $HARNESS_DB ]]; then
    scripts/localpg.sh psql -d "$HARNESS_ADMIN" -qc "DROP DATABASE IF EXISTS $HARNESS_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [[ $status -ne 0 && -s $HARNESS_WORK/server.log ]]; then
    say "server log (last lines):"
    tail -n 30 "$HARNESS_WORK/server.log" >&2
  fi
  if [[ -n $HARNESS_WORK ]]; then rm -rf "$HARNESS_WORK"; fi
  exit "$status"
}

harness_init() {
  local name=$1 stale
  HARNESS_ADMIN=${DATABASE_URL:-$(scripts/localpg.sh url)}
  HARNESS_WORK=$(mktemp -d)
  trap harness_cleanup EXIT
  trap 'exit 130' INT TERM
  # Databases of earlier runs that were killed before their trap ran.
  for stale in $(scripts/localpg.sh psql -d "$HARNESS_ADMIN" -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'cr\_${name}\_%'"); do
    if ! kill -0 "${stale#cr_"${name}"_}" 2>/dev/null; then
      scripts/localpg.sh psql -d "$HARNESS_ADMIN" -qc "DROP DATABASE IF EXISTS $stale WITH (FORCE)" >/dev/null
    fi
  done
  HARNESS_DB="cr_${name}_$$"
  scripts/localpg.sh psql -d "$HARNESS_ADMIN" -qc "CREATE DATABASE $HARNESS_DB" >/dev/null
  DATABASE_URL=$(with_database "$HARNESS_ADMIN" "$HARNESS_DB")
  export DATABASE_URL
  export CONVRELAY_LOG=${CONVRELAY_LOG:-warn}
  if ! "$HARNESS_BIN" migrate >"$HARNESS_WORK/migrate.log" 2>&1; then
    cat "$HARNESS_WORK/migrate.log" >&2
    exit 1
  fi
}

harness_fake() {
  local status=${1:-200} port_file=$HARNESS_WORK/fake.port
  python3 scripts/fake-platforms.py "$port_file" --webhook-status "$status" 2>"$HARNESS_WORK/fake.log" &
  HARNESS_FAKE_PID=$!
  for _ in $(seq 1 100); do
    [[ -s $port_file ]] && break
    kill -0 "$HARNESS_FAKE_PID" 2>/dev/null || { say "the fake platforms stopped"; cat "$HARNESS_WORK/fake.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -s $port_file ]] || { say "the fake platforms did not start"; exit 1; }
  FAKE_URL="http://127.0.0.1:$(<"$port_file")"
}

harness_serve() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BASE="http://127.0.0.1:$port"
  CONVRELAY_LISTEN="127.0.0.1:$port" \
    CONVRELAY_SECRET_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n') \
    CONVRELAY_RATE_LIMIT=0 \
    CONVRELAY_GOOGLE_OAUTH_URL="$FAKE_URL/token" \
    CONVRELAY_GOOGLE_DATA_MANAGER_URL="$FAKE_URL" \
    CONVRELAY_GOOGLE_ADS_URL="$FAKE_URL" \
    CONVRELAY_META_URL="$FAKE_URL" \
    "$HARNESS_BIN" serve >"$HARNESS_WORK/server.log" 2>&1 &
  HARNESS_SERVER_PID=$!
  for _ in $(seq 1 300); do
    if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$HARNESS_SERVER_PID" 2>/dev/null || { say "the server stopped"; exit 1; }
    sleep 0.1
  done
  say "the server did not become ready on $BASE"
  exit 1
}

harness_key() {
  local args=() scope
  for scope in "$@"; do args+=(--scope "$scope"); done
  "$HARNESS_BIN" keys create --workspace demo "${args[@]}"
}
