#!/usr/bin/env bash
# Create one destination of each type: a signed webhook, Google Ads (Data Manager API) and Meta
# (Conversions API). The credentials below are placeholders: put your own in the environment.
# Credentials are write-only: the answers show "hasCredentials": true and never the secrets.
#
#   CONVRELAY_KEY=cr_... examples/create-destinations.sh    (a key with the admin scope)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the admin scope}

webhook_url=${WEBHOOK_URL:-http://127.0.0.1:9999/hook}
webhook_secret=${WEBHOOK_SECRET:-whsec_fake_0123456789abcdef}
google_customer_id=${GOOGLE_ADS_CUSTOMER_ID:-123-456-7890}
google_lead_action=${GOOGLE_ADS_LEAD_ACTION:-111111111}
google_sale_action=${GOOGLE_ADS_SALE_ACTION:-222222222}
google_client_id=${GOOGLE_CLIENT_ID:-fake-client-id.apps.googleusercontent.com}
google_client_secret=${GOOGLE_CLIENT_SECRET:-fake-client-secret}
google_refresh_token=${GOOGLE_REFRESH_TOKEN:-1//fake-refresh-token}
meta_pixel_id=${META_PIXEL_ID:-1234567890}
meta_access_token=${META_ACCESS_TOKEN:-fake-meta-access-token}

create() {
  curl -sS --fail-with-body "$url/v1/destinations" \
    -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' \
    -d "$1" -w '\nHTTP %{http_code}\n'
}

echo "# POST /v1/destinations (webhook). Look at: HTTP 201, the dst_ id, \"hasCredentials\":true, no secret."
create "{\"type\":\"webhook\",\"name\":\"CRM webhook\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"url\":\"$webhook_url\"},
  \"credentials\":{\"secret\":\"$webhook_secret\"}}"

echo
echo "# POST /v1/destinations (google_ads). Look at: HTTP 201 and the defaults filled in (\"api\":\"data_manager\", \"eventSource\":\"WEB\")."
create "{\"type\":\"google_ads\",\"name\":\"Google Ads\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"customerId\":\"$google_customer_id\",
             \"conversionActions\":{\"lead\":\"$google_lead_action\",\"sale\":\"$google_sale_action\"}},
  \"credentials\":{\"clientId\":\"$google_client_id\",\"clientSecret\":\"$google_client_secret\",
                  \"refreshToken\":\"$google_refresh_token\"}}"

echo
echo "# POST /v1/destinations (meta). Look at: HTTP 201 and \"eventNames\" (Lead / Purchase)."
create "{\"type\":\"meta\",\"name\":\"Meta pixel\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"pixelId\":\"$meta_pixel_id\"},
  \"credentials\":{\"accessToken\":\"$meta_access_token\"}}"
