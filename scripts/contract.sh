#!/usr/bin/env bash
# `make test` (after the unit and integration tests): the running server against its contract.
#
#   1. openapi.yaml is a valid OpenAPI 3.1 document (openapi-spec-validator), its schemas valid
#      JSON Schemas, and every example valid against its schema;
#   2. the real binary, on a fresh database of the local cluster (or of DATABASE_URL's server),
#      answers every example of openapi.yaml and schemas/ as documented, and the documented
#      problem answers, idempotency, pagination, destinations, dispatches (failing against a
#      closed port, retried), retractions, reports, /metrics and /ui hold; a second server on the
#      same database, without CONVRELAY_SECRET_KEY and with CONVRELAY_METRICS_TOKEN, answers
#      `secret-key-missing` and guards /metrics (scripts/contract/examples.py);
#   3. schemathesis generates requests for every operation from openapi.yaml (served by the
#      binary itself, so that its schemas/ references resolve over HTTP) and checks each answer
#      against the document (status, headers, content type, body schema), with a real API key
#      that has every scope (ingest, read, admin);
#   4. headless Chromium renders /docs with no internet and finds the endpoints on the page.
#
# The server gets a CONVRELAY_SECRET_KEY of its own, and the ad platforms' addresses point at a
# loopback port where nothing listens: no request leaves the machine, and every dispatch fails
# (after CONVRELAY_RETRY_MAX_ATTEMPTS quick retries), which is what the dispatch checks need.
# The Python tools live in .local/venv (pinned in scripts/contract/requirements.txt) and Debian's
# chromium is installed when missing; both are kept between runs.
# CONTRACT_MAX_EXAMPLES (default 25) and CONTRACT_MAX_TIME (seconds, default 120) bound step 3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

say() { printf 'contract: %s\n' "$*" >&2; }
started=$SECONDS

# --- tools ------------------------------------------------------------------------------------
venv=.local/venv
requirements=scripts/contract/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/schemathesis || ! -f $stamp || $(<"$stamp") != "$want" ]]; then
  say "installing the contract tools into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      say "python3 with venv is needed (Debian: apt-get install python3-venv)"
      exit 1
    fi
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi
if ! command -v chromium >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium is needed for the /docs check (Debian: apt-get install chromium)"
    exit 1
  fi
fi

# --- 1. the documents -------------------------------------------------------------------------
say "validating openapi.yaml"
"$venv/bin/openapi-spec-validator" openapi.yaml

# --- the server -------------------------------------------------------------------------------
bin=target/debug/convrelay
cargo build --locked -p ingest-api --bin convrelay --quiet

admin=${DATABASE_URL:-$(scripts/localpg.sh url)}
database="cr_contract_$$"
work=$(mktemp -d)
server_pid=""
other_pid=""
stop() {
  if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  local status=$?
  stop "$other_pid"
  stop "$server_pid"
  scripts/localpg.sh psql -d "$admin" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  if [[ $status -ne 0 && -s $work/server.log ]]; then
    # Warnings and errors say why a request failed; the whole log stays for a closer look.
    say "server log, warnings and errors (the last 100):"
    grep -E '"level":"(WARN|ERROR)"' "$work/server.log" | tail -n 100 >&2 || true
    say "server log (last lines):"
    tail -n 20 "$work/server.log" >&2
    mkdir -p target && cp "$work/server.log" target/contract-server.log &&
      say "the whole server log: target/contract-server.log"
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Databases of earlier runs that were killed before their trap ran.
for stale in $(scripts/localpg.sh psql -d "$admin" -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'cr\_contract\_%'"); do
  if ! kill -0 "${stale#cr_contract_}" 2>/dev/null; then
    scripts/localpg.sh psql -d "$admin" -qc "DROP DATABASE IF EXISTS $stale WITH (FORCE)" >/dev/null
  fi
done
scripts/localpg.sh psql -d "$admin" -qc "CREATE DATABASE $database" >/dev/null
DATABASE_URL=$(with_database "$admin" "$database")
export DATABASE_URL
export CONVRELAY_LOG=warn
"$bin" migrate 2>/dev/null
key=$("$bin" keys create --workspace contract --scope ingest --scope read --scope admin)
ingest_key=$("$bin" keys create --workspace contract --scope ingest)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() { # URL PID
  for _ in $(seq 1 300); do
    if curl -fsS "$1/readyz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then say "the server stopped"; exit 1; fi
    sleep 0.1
  done
  curl -fsS "$1/readyz" >/dev/null
}
closed="http://127.0.0.1:$(free_port)"
export CONTRACT_CLOSED_URL=$closed # where scripts/contract/hooks.py points generated webhooks
export CONVRELAY_GOOGLE_ADS_URL=$closed CONVRELAY_GOOGLE_DATA_MANAGER_URL=$closed
export CONVRELAY_GOOGLE_OAUTH_URL=$closed/token CONVRELAY_META_URL=$closed
export CONVRELAY_RETRY_INITIAL_MS=50 CONVRELAY_RETRY_MAX_MS=200 CONVRELAY_RETRY_MAX_ATTEMPTS=2
secret_key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
port=$(free_port)
base="http://127.0.0.1:$port"
CONVRELAY_SECRET_KEY=$secret_key CONVRELAY_LISTEN="127.0.0.1:$port" "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
# The second server: no secret key, /metrics behind a token, no workers of its own.
metrics_token="contract-metrics-$RANDOM$RANDOM"
other_port=$(free_port)
other="http://127.0.0.1:$other_port"
env -u CONVRELAY_SECRET_KEY CONVRELAY_METRICS_TOKEN="$metrics_token" CONVRELAY_LISTEN="127.0.0.1:$other_port" \
  "$bin" serve --no-workers >"$work/other.log" 2>&1 &
other_pid=$!
wait_ready "$base" "$server_pid"
wait_ready "$other" "$other_pid"

# --- 2. the examples --------------------------------------------------------------------------
say "checking the examples against the server"
"$venv/bin/python" scripts/contract/examples.py . "$base" "$key" "$ingest_key" "$other" "$metrics_token"
stop "$other_pid"
other_pid=""

# --- 3. schemathesis --------------------------------------------------------------------------
say "schemathesis against $base"
(
  cd "$work"
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$ROOT/scripts/contract" "$ROOT/$venv/bin/schemathesis" \
    --config-file "$ROOT/scripts/contract/schemathesis.toml" \
    run "$base/openapi.yaml" \
    --url "$base" \
    --header "Authorization: Bearer $key" \
    --phases examples,coverage,fuzzing \
    --max-examples "${CONTRACT_MAX_EXAMPLES:-25}" \
    --max-time "${CONTRACT_MAX_TIME:-120}" \
    --workers 2 \
    --seed "${CONTRACT_SEED:-20260410}" \
    --no-color
)

# --- 4. /docs in headless Chromium ------------------------------------------------------------
say "rendering /docs in headless chromium"
dom="$work/docs.html"
timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --virtual-time-budget=10000 \
  --dump-dom "$base/docs" >"$dom" 2>"$work/chromium.log" || true
missing=()
for text in "Convrelay API" "/v1/events/batch" "/v1/events/{id}" "/healthz" "/readyz" \
  "Send one event" "Send a batch of events" "Read one event" "List events" "/v1/clicks/{clickId}" \
  "Idempotency-Key" "customerExternalId" "invoiceId" "idempotency-key-reused" "missing_identifier" \
  "/v1/destinations/{id}" "/v1/dispatches/{id}/retry" "/v1/reports/conversions" "/v1/events/{id}/retract" \
  "/metrics" "Create a destination" "secret-key-missing"; do
  grep -qF -- "$text" "$dom" || missing+=("$text")
done
if ((${#missing[@]})); then
  say "/docs did not render: missing ${missing[*]}"
  head -c 2000 "$dom" >&2 || true
  exit 1
fi
say "/docs rendered the endpoints"

say "passed in $((SECONDS - started)) s"
