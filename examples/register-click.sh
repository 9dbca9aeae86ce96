#!/usr/bin/env bash
# Register the ad click behind the seed lead, so that events naming clickid_123 (or the person
# it is linked to) are attributed to it: a gclid sends the conversion to Google Ads, an fbclid to
# Meta. Then read it back.
#
#   CONVRELAY_KEY=cr_... examples/register-click.sh    (a key with the ingest and read scopes)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the ingest and read scopes}

echo "# POST /v1/clicks. Look at: HTTP 201 {\"clickId\":\"clickid_123\"} the first time, 200 with the same clickId after."
curl -sS --fail-with-body "$url/v1/clicks" \
  -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' \
  -d '{"clickId":"clickid_123","gclid":"Cj0KCQjw-example-gclid","fbclid":"IwAR-example-fbclid","utm":{"source":"google","medium":"cpc","campaign":"spring_sale"},"url":"https://shop.example.com/pricing?gclid=Cj0KCQjw-example-gclid","userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}' \
  -w '\nHTTP %{http_code}\n'

echo
echo "# GET /v1/clicks/clickid_123. Look at: the click ids and utm as stored."
curl -sS --fail-with-body "$url/v1/clicks/clickid_123" \
  -H "Authorization: Bearer $key" \
  -w '\nHTTP %{http_code}\n'
