#!/usr/bin/env bash
# Send three events in one batch. Valid items are accepted even when others are not: the third
# one is a sale without a currency and comes back rejected, with the offending field named.
#
#   CONVRELAY_KEY=cr_... examples/send-batch.sh    (a key with the ingest scope)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the ingest scope}

echo "# POST /v1/events/batch. Look at: HTTP 200, \"accepted\":2, \"rejected\":1 (run it again: \"accepted\":0,"
echo "# \"duplicates\":2, as leadId and invoiceId are already known), and results[2].errors naming \"currency\"."
curl -sS --fail-with-body "$url/v1/events/batch" \
  -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' \
  -d @- -w '\nHTTP %{http_code}\n' <<'JSON'
{"events": [
  {"event": "lead", "leadId": "lead_batch_1", "eventName": "Demo booked", "email": "dana@example.com",
   "utm": {"source": "newsletter", "medium": "email", "campaign": "april"}},
  {"event": "sale", "invoiceId": "inv_batch_1", "customerExternalId": "user_456", "currency": "EUR", "amount": 49.9,
   "products": [{"id": "sku_1", "name": "Starter plan", "quantity": 1, "price": 49.9}]},
  {"event": "sale", "invoiceId": "inv_batch_2", "customerExternalId": "user_789", "amount": 10}
]}
JSON
