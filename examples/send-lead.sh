#!/usr/bin/env bash
# Send the seed lead: a person signed up after clicking an ad (clickId) and is known by your own
# user id. `"mode": "deferred"` only links the identifiers (user_123 <-> clickid_123); a later
# sale of user_123 is then attributed to that click.
#
#   CONVRELAY_KEY=cr_... examples/send-lead.sh     (a key with the ingest scope)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the ingest scope}

echo "# POST /v1/events (lead). Look at: HTTP 202, \"status\":\"accepted\", \"duplicate\":false and the evt_ id."
curl -sS --fail-with-body "$url/v1/events" \
  -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' \
  -d '{"event":"lead","clickId":"clickid_123","customerExternalId":"user_123","email":"user@gmail.com","name":"user","mode":"deferred"}' \
  -w '\nHTTP %{http_code}\n'
