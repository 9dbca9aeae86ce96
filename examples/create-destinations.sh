#!/usr/bin/env bash
# Create one destination of each type: a signed webhook, Google Ads (Data Manager API), Meta
# (Conversions API), TikTok, Microsoft Advertising, LinkedIn, Reddit, Snapchat and Pinterest. The credentials below are placeholders: put your own in the environment.
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
tiktok_pixel_code=${TIKTOK_PIXEL_CODE:-CABC123PIXEL}
tiktok_access_token=${TIKTOK_ACCESS_TOKEN:-fake-tiktok-access-token}
microsoft_customer_id=${MICROSOFT_ADS_CUSTOMER_ID:-251186883}
microsoft_account_id=${MICROSOFT_ADS_ACCOUNT_ID:-149615541}
microsoft_client_id=${MICROSOFT_CLIENT_ID:-fake-microsoft-client-id}
microsoft_refresh_token=${MICROSOFT_REFRESH_TOKEN:-fake-microsoft-refresh-token}
microsoft_developer_token=${MICROSOFT_DEVELOPER_TOKEN:-fake-developer-token}
linkedin_lead_rule=${LINKEDIN_LEAD_RULE:-104012}
linkedin_sale_rule=${LINKEDIN_SALE_RULE:-104013}
linkedin_access_token=${LINKEDIN_ACCESS_TOKEN:-fake-linkedin-access-token}
reddit_pixel_id=${REDDIT_PIXEL_ID:-t2_abc123}
reddit_access_token=${REDDIT_ACCESS_TOKEN:-fake-reddit-access-token}
snapchat_pixel_id=${SNAPCHAT_PIXEL_ID:-7a3b1c2d-4e5f-6789-abcd-ef0123456789}
snapchat_access_token=${SNAPCHAT_ACCESS_TOKEN:-fake-snapchat-access-token}
pinterest_ad_account_id=${PINTEREST_AD_ACCOUNT_ID:-549755885175}
pinterest_access_token=${PINTEREST_ACCESS_TOKEN:-fake-pinterest-access-token}

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

echo
echo "# POST /v1/destinations (tiktok). Look at: HTTP 201 and the defaults (\"eventSource\":\"web\", Lead / Purchase)."
create "{\"type\":\"tiktok\",\"name\":\"TikTok pixel\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"pixelCode\":\"$tiktok_pixel_code\"},
  \"credentials\":{\"accessToken\":\"$tiktok_access_token\"}}"

echo
echo "# POST /v1/destinations (microsoft_ads). Look at: HTTP 201 and the goal names per kind."
create "{\"type\":\"microsoft_ads\",\"name\":\"Microsoft Advertising\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"customerId\":\"$microsoft_customer_id\",\"accountId\":\"$microsoft_account_id\",
             \"conversionNames\":{\"lead\":\"CRM Lead\",\"sale\":\"Offline Purchase\"}},
  \"credentials\":{\"clientId\":\"$microsoft_client_id\",\"refreshToken\":\"$microsoft_refresh_token\",
                  \"developerToken\":\"$microsoft_developer_token\"}}"

echo
echo "# POST /v1/destinations (linkedin). Look at: HTTP 201 and the conversion rules per kind."
create "{\"type\":\"linkedin\",\"name\":\"LinkedIn\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"conversionRules\":{\"lead\":\"$linkedin_lead_rule\",\"sale\":\"$linkedin_sale_rule\"}},
  \"credentials\":{\"accessToken\":\"$linkedin_access_token\"}}"

echo
echo "# POST /v1/destinations (reddit). Look at: HTTP 201 and the tracking types (LEAD / PURCHASE)."
create "{\"type\":\"reddit\",\"name\":\"Reddit pixel\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"pixelId\":\"$reddit_pixel_id\"},
  \"credentials\":{\"accessToken\":\"$reddit_access_token\"}}"

echo
echo "# POST /v1/destinations (snapchat). Look at: HTTP 201 and the event names (SIGN_UP / PURCHASE)."
create "{\"type\":\"snapchat\",\"name\":\"Snap pixel\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"pixelId\":\"$snapchat_pixel_id\"},
  \"credentials\":{\"accessToken\":\"$snapchat_access_token\"}}"

echo
echo "# POST /v1/destinations (pinterest). Look at: HTTP 201 and the event names (lead / checkout)."
create "{\"type\":\"pinterest\",\"name\":\"Pinterest\",\"events\":[\"lead\",\"sale\"],
  \"config\":{\"adAccountId\":\"$pinterest_ad_account_id\"},
  \"credentials\":{\"accessToken\":\"$pinterest_access_token\"}}"
