#!/usr/bin/env bash
# Where did the conversions go? The latest dispatches, the queue statistics, and one dispatch
# with every attempt (the newest, or the dsp_ id given as the first argument).
#
#   CONVRELAY_KEY=cr_... examples/dispatch-status.sh [dsp_...]    (a key with the read scope)
set -euo pipefail
url=${CONVRELAY_URL:-http://127.0.0.1:8080}
key=${CONVRELAY_KEY:?set CONVRELAY_KEY to an API key with the read scope}

get() {
  curl -sS --fail-with-body "$url$1" -H "Authorization: Bearer $key" -w '\nHTTP %{http_code}\n'
}

echo "# GET /v1/dispatches?limit=10. Look at: each dispatch's status, type, attempts and lastError;"
echo "# pass nextCursor as ?cursor= for the next page (add ?status=failed to see only failures)."
list=$(get '/v1/dispatches?limit=10')
echo "$list"

echo
echo "# GET /v1/dispatches/stats. Look at: totals per status and oldestQueuedAgeSeconds (null when nothing waits)."
get /v1/dispatches/stats

id=${1:-$(grep -o '"id":"dsp_[^"]*"' <<<"$list" | head -n 1 | cut -d'"' -f4)}
if [[ -z $id ]]; then
  echo
  echo "# No dispatch yet: create a destination (create-destinations.sh) and send an event first."
  exit 0
fi
echo
echo "# GET /v1/dispatches/$id. Look at: attempts[] with at, durationMs, httpStatus, outcome, error, responseExcerpt."
get "/v1/dispatches/$id"
