#!/usr/bin/env bash
# `make run`: a database (the project's local PostgreSQL unless DATABASE_URL is set), migrations,
# a dev workspace and key (kept in .local/, shown each time), then serve on 127.0.0.1:8080.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [[ -z ${DATABASE_URL:-} ]]; then
  admin=$(scripts/localpg.sh url)
  ensure_database "$admin" convrelay
  DATABASE_URL=$(with_database "$admin" convrelay)
  export DATABASE_URL
fi

# Destination credentials are sealed with CONVRELAY_SECRET_KEY; the dev setup keeps its own.
mkdir -p .local
if [[ -z ${CONVRELAY_SECRET_KEY:-} ]]; then
  if [[ ! -s .local/secret-key ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.local/secret-key)
  fi
  CONVRELAY_SECRET_KEY=$(<.local/secret-key)
  export CONVRELAY_SECRET_KEY
fi

bin=${CONVRELAY_BIN:-target/debug/convrelay}
"$bin" migrate

keyfile=".local/dev-key-$(printf '%s' "$DATABASE_URL" | sha256sum | cut -c1-12)"
key=""
if [[ -s $keyfile ]]; then
  key=$(<"$keyfile")
  public="cr_$(cut -d_ -f2 <<<"$key")"
  # Still there and not revoked? (The listing names keys by their public part, cr_<prefix>.)
  if ! "$bin" keys list --workspace dev 2>/dev/null | awk -F'\t' -v p="$public" '$1 == p && $6 == "-" { found = 1 } END { exit !found }'; then
    key=""
  fi
fi
if [[ -z $key ]]; then
  key=$("$bin" keys create --workspace dev --scope ingest --scope read --scope admin)
  (umask 077 && printf '%s\n' "$key" >"$keyfile")
fi

listen=${CONVRELAY_LISTEN:-127.0.0.1:8080}
# The example sale is an hour old, whenever this runs: ad platforms skip old conversions
# (too_old_for_platform: Meta takes 7 days).
sold_at=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%S.000Z)
cat >&2 <<MSG

  Convrelay is starting on http://$listen
  Dev API key (workspace "dev", scopes ingest, read, admin):

    $key

  Try it:

    curl -sS http://$listen/v1/events -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
      -d '{"event":"sale","timestamp":"$sold_at","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}'

MSG
exec "$bin" serve
