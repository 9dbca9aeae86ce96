#!/usr/bin/env bash
# A month of customer journeys across channels, for the reports and the dashboard: clicks on
# Google, Meta, TikTok, LinkedIn and Microsoft ads and a newsletter link, then the leads and sales
# of the people who clicked. Ann clicks three times before she buys, so the multi-touch models
# share her sale. Times are relative to now, so the dashboard's default range (the last 30 days)
# shows them. Sending it again changes nothing (the clicks and invoices are known).
#
#   CONVRELAY_KEY=cr_... examples/send-journeys.sh    (a key with the ingest and read scopes)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the ingest and read scopes}

ago() { date -u -d "-$1" +%Y-%m-%dT%H:%M:%S.000Z; }
post() {
  curl -sS --fail-with-body "$url$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$2"
}

echo "# POST /v1/clicks/batch. Look at: \"accepted\":9 (or 200s for clicks already registered)."
post /v1/clicks/batch "{\"clicks\":[
  {\"clickId\":\"demo-ann-google\",\"gclid\":\"demo-gclid-ann\",\"timestamp\":\"$(ago '20 days')\",\"utm\":{\"source\":\"google\",\"medium\":\"cpc\",\"campaign\":\"spring_sale\"}},
  {\"clickId\":\"demo-ann-meta\",\"fbclid\":\"demo-fbclid-ann\",\"timestamp\":\"$(ago '12 days')\",\"utm\":{\"source\":\"facebook\",\"medium\":\"paid_social\",\"campaign\":\"spring_sale\"}},
  {\"clickId\":\"demo-ann-news\",\"timestamp\":\"$(ago '5 days')\",\"utm\":{\"source\":\"newsletter\",\"medium\":\"email\",\"campaign\":\"weekly\"}},
  {\"clickId\":\"demo-bob-google\",\"gclid\":\"demo-gclid-bob\",\"timestamp\":\"$(ago '9 days')\",\"utm\":{\"source\":\"google\",\"medium\":\"cpc\",\"campaign\":\"brand\"}},
  {\"clickId\":\"demo-cy-tiktok\",\"ttclid\":\"demo-ttclid-cy\",\"timestamp\":\"$(ago '6 days')\",\"utm\":{\"source\":\"tiktok\",\"medium\":\"paid_social\",\"campaign\":\"creators\"}},
  {\"clickId\":\"demo-cy-linkedin\",\"liFatId\":\"demo-li-cy\",\"timestamp\":\"$(ago '3 days')\",\"utm\":{\"source\":\"linkedin\",\"medium\":\"paid_social\",\"campaign\":\"b2b\"}},
  {\"clickId\":\"demo-dee-meta\",\"fbclid\":\"demo-fbclid-dee\",\"timestamp\":\"$(ago '2 days')\",\"utm\":{\"source\":\"facebook\",\"medium\":\"paid_social\",\"campaign\":\"retarget\"}},
  {\"clickId\":\"demo-eve-microsoft\",\"msclkid\":\"demo-msclkid-eve\",\"timestamp\":\"$(ago '15 days')\",\"utm\":{\"source\":\"bing\",\"medium\":\"cpc\",\"campaign\":\"brand\"}},
  {\"clickId\":\"demo-idle-google\",\"gclid\":\"demo-gclid-idle\",\"timestamp\":\"$(ago '7 days')\",\"utm\":{\"source\":\"google\",\"medium\":\"cpc\",\"campaign\":\"spring_sale\"}}]}" \
  -w '\nHTTP %{http_code}\n'

echo
echo "# POST /v1/events/batch. Look at: \"accepted\" (leads and sales of the people who clicked)."
post /v1/events/batch "{\"events\":[
  {\"event\":\"lead\",\"timestamp\":\"$(ago '20 days')\",\"clickId\":\"demo-ann-google\",\"customerExternalId\":\"demo-ann\",\"eventName\":\"newsletter\",\"leadId\":\"demo-lead-ann-1\"},
  {\"event\":\"lead\",\"timestamp\":\"$(ago '12 days')\",\"clickId\":\"demo-ann-meta\",\"customerExternalId\":\"demo-ann\",\"eventName\":\"signup\",\"leadId\":\"demo-lead-ann-2\"},
  {\"event\":\"sale\",\"timestamp\":\"$(ago '4 days')\",\"clickId\":\"demo-ann-news\",\"customerExternalId\":\"demo-ann\",\"invoiceId\":\"demo-inv-ann\",\"currency\":\"USD\",\"amount\":240.0},
  {\"event\":\"sale\",\"timestamp\":\"$(ago '8 days')\",\"clickId\":\"demo-bob-google\",\"customerExternalId\":\"demo-bob\",\"invoiceId\":\"demo-inv-bob\",\"currency\":\"USD\",\"amount\":120.0},
  {\"event\":\"lead\",\"timestamp\":\"$(ago '6 days')\",\"clickId\":\"demo-cy-tiktok\",\"customerExternalId\":\"demo-cy\",\"eventName\":\"demo_booked\",\"leadId\":\"demo-lead-cy\"},
  {\"event\":\"sale\",\"timestamp\":\"$(ago '2 days')\",\"clickId\":\"demo-cy-linkedin\",\"customerExternalId\":\"demo-cy\",\"invoiceId\":\"demo-inv-cy\",\"currency\":\"USD\",\"amount\":480.0},
  {\"event\":\"lead\",\"timestamp\":\"$(ago '2 days')\",\"clickId\":\"demo-dee-meta\",\"customerExternalId\":\"demo-dee\",\"eventName\":\"signup\",\"leadId\":\"demo-lead-dee\"},
  {\"event\":\"sale\",\"timestamp\":\"$(ago '14 days')\",\"clickId\":\"demo-eve-microsoft\",\"customerExternalId\":\"demo-eve\",\"invoiceId\":\"demo-inv-eve\",\"currency\":\"USD\",\"amount\":60.0}]}" \
  -w '\nHTTP %{http_code}\n'

ann=$(curl -sS --fail-with-body "$url/v1/events?invoiceId=demo-inv-ann" -H "Authorization: Bearer $key" |
  sed -n 's/.*"id":"\(evt_[0-9a-f]*\)".*/\1/p' | head -n 1)
for _ in $(seq 1 100); do
  curl -sS "$url/v1/events/$ann/credit" -H "Authorization: Bearer $key" | grep -q '"credited":true' && break
  sleep 0.1
done

echo
echo "# GET /v1/events/$ann/credit. Look at: Ann's three touches and each one's share per model."
curl -sS --fail-with-body "$url/v1/events/$ann/credit" -H "Authorization: Bearer $key" -w '\nHTTP %{http_code}\n'

echo
echo "# GET /v1/reports/conversions, linear, the last 30 days. Look at: revenue shared between channels."
from=$(date -u -d '-29 days' +%Y-%m-%d)
to=$(date -u -d '+1 day' +%Y-%m-%d)
curl -sS --fail-with-body "$url/v1/reports/conversions?from=$from&to=$to&groupBy=channel&model=linear" \
  -H "Authorization: Bearer $key" -w '\nHTTP %{http_code}\n'

echo
echo "# The dashboard: $url/ui/dashboard (paste a key with the read scope)."
