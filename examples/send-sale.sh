#!/usr/bin/env bash
# Send the seed sale with an Idempotency-Key, send it again, then read the stored event with its
# attribution and dispatches.
#
#   CONVRELAY_KEY=cr_... examples/send-sale.sh     (a key with the ingest and read scopes)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the ingest and read scopes}
sale='{"event":"sale","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}'

send() {
  curl -sS --fail-with-body "$url/v1/events" \
    -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: sale-inv_987' \
    -d "$sale" \
    -D "$headers" -w '\nHTTP %{http_code}\n'
}
headers=$(mktemp)
trap 'rm -f "$headers"' EXIT

echo "# POST /v1/events (sale). Look at: HTTP 202, \"duplicate\":false and the evt_ id. (inv_987 sent again under"
echo "# another Idempotency-Key answers 200 with \"duplicate\":true and this same id.)"
answer=$(send)
echo "$answer"

echo
echo "# The same request again. Look at: the same status and body, and the Idempotent-Replayed header."
send
grep -i '^idempotent-replayed' "$headers" || echo "(no Idempotent-Replayed header)"

id=$(sed -n 's/.*"id":"\(evt_[^"]*\)".*/\1/p' <<<"$answer" | head -n 1)
echo
echo "# GET /v1/events/$id. Look at: attribution.status (matched, pending or unmatched), attribution.matchedBy,"
echo "# attribution.click, and dispatches[] with each destination's status."
curl -sS --fail-with-body "$url/v1/events/$id" \
  -H "Authorization: Bearer $key" \
  -w '\nHTTP %{http_code}\n'
