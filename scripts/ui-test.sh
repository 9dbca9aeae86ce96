#!/usr/bin/env bash
# `make test`: the conversion log page (/ui) and the dashboard (/ui/dashboard) in headless
# Chromium (tests/ui/). The real binary on a fresh database sends a sale to a webhook that answers
# 500 until the dispatch has failed; the receiver then recovers and the browser test finds,
# filters, opens and retries the dispatch. Then clicks and conversions of April 2026 go in, and
# the dashboard test drives every view, checks its numbers against the API and keeps a
# screenshot of each in UI_SCREENSHOTS (default .local/ui-dashboard/).
#
# Debian's chromium is installed when missing (root, apt-get); playwright-core drives it, from
# the npm registry into .local/ui-test (kept between runs; no browser is ever downloaded).
# UI_SCREENSHOT (default .local/ui.png) is where the page's picture goes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

say() { printf 'ui-test: %s\n' "$*" >&2; }

# --- tools ------------------------------------------------------------------------------------
need_apt() {
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian's $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    say "$* needed (Debian: apt-get install $*)"
    exit 1
  fi
}
command -v chromium >/dev/null || need_apt chromium
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then need_apt nodejs npm; fi
modules=.local/ui-test
want=$(sha256sum tests/ui/package.json | cut -d' ' -f1)
if [[ ! -d $modules/node_modules/playwright-core || $(cat "$modules/.package.sha256" 2>/dev/null) != "$want" ]]; then
  say "installing playwright-core into $modules"
  mkdir -p "$modules"
  cp tests/ui/package.json "$modules/package.json"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$modules" --no-audit --no-fund --silent
  echo "$want" >"$modules/.package.sha256"
fi

cargo build --locked --quiet -p ingest-api --bin convrelay
started=$SECONDS

# --- a failed dispatch ------------------------------------------------------------------------
source scripts/harness.sh
harness_init ui
harness_fake 500
export CONVRELAY_RETRY_INITIAL_MS=10 CONVRELAY_RETRY_MAX_MS=50 CONVRELAY_RETRY_MAX_ATTEMPTS=2
harness_serve
admin_key=$(harness_key ingest admin)
read_key=$(harness_key read)

post() {
  curl -fsS "$BASE$1" -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' -d "$2"
}
destination=$(post /v1/destinations "{\"type\":\"webhook\",\"name\":\"CRM webhook\",\"events\":[\"sale\"],
  \"config\":{\"url\":\"$FAKE_URL/hook\"},\"credentials\":{\"secret\":\"whsec_ui_test_0123456789\"}}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
# Two sales, so that the list has a second page at ?limit=1; the test retries the newer one.
post /v1/events '{"event":"sale","timestamp":"2026-04-10T12:40:00.000Z","customerExternalId":"user_122","currency":"EUR","amount":20.0,"invoiceId":"inv_986"}' >/dev/null
post /v1/events '{"event":"sale","timestamp":"2026-04-10T12:45:10.000Z","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}' >/dev/null

dispatch=""
deadline=$((SECONDS + 20))
while [[ -z $dispatch ]]; do
  dispatch=$(curl -fsS "$BASE/v1/dispatches?status=failed" -H "Authorization: Bearer $read_key" |
    python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print(d[0]["id"] if len(d) == 2 else "")')
  if [[ -z $dispatch ]]; then
    ((SECONDS < deadline)) || { say "the webhook dispatches never failed"; exit 1; }
    sleep 0.1
  fi
done
curl -fsS -X POST "$FAKE_URL/_control/webhook-status/200" >/dev/null
say "dispatch $dispatch (and an older one) failed; the receiver answers 200 from now on"

# --- the browser ------------------------------------------------------------------------------
mkdir -p .local
UI_BASE=$BASE UI_READ_KEY=$read_key UI_ADMIN_KEY=$admin_key UI_DISPATCH_ID=$dispatch \
  UI_DESTINATION=$destination UI_SCREENSHOT=${UI_SCREENSHOT:-$ROOT/.local/ui.png} \
  UI_NODE_MODULES=$ROOT/$modules/node_modules \
  timeout 120 node --test --test-reporter=spec tests/ui/conversion-log.test.mjs

# --- the dashboard: clicks and conversions of April 2026 --------------------------------------
# Ann clicks a Google ad, a Meta ad and a newsletter link and buys through the newsletter; Bob
# clicks a Google ad and buys; Cy signs up through Meta. The webhook gets the sales (it answers 200
# now), so delivery health shows them beside the dispatch that failed.
post /v1/clicks/batch '{"clicks":[
  {"clickId":"c-google","gclid":"g-1","timestamp":"2026-04-01T10:00:00.000Z","utm":{"source":"google","medium":"cpc","campaign":"spring"}},
  {"clickId":"c-meta","fbclid":"f-1","timestamp":"2026-04-08T10:00:00.000Z","utm":{"source":"facebook","medium":"paid_social","campaign":"spring"}},
  {"clickId":"c-news","timestamp":"2026-04-15T10:00:00.000Z","utm":{"source":"newsletter","medium":"email","campaign":"april"}},
  {"clickId":"c-bob","gclid":"g-2","timestamp":"2026-04-20T09:00:00.000Z","utm":{"source":"google","medium":"cpc","campaign":"spring"}},
  {"clickId":"c-cy","fbclid":"f-2","timestamp":"2026-04-21T09:00:00.000Z","utm":{"source":"facebook","medium":"paid_social","campaign":"retarget"}},
  {"clickId":"c-idle","gclid":"g-3","timestamp":"2026-04-21T10:00:00.000Z","utm":{"source":"google","medium":"cpc","campaign":"spring"}}]}' >/dev/null
post /v1/events/batch '{"events":[
  {"event":"lead","timestamp":"2026-04-01T10:05:00.000Z","clickId":"c-google","customerExternalId":"ann","eventName":"signup"},
  {"event":"lead","timestamp":"2026-04-08T10:05:00.000Z","clickId":"c-meta","customerExternalId":"ann","eventName":"signup"},
  {"event":"lead","timestamp":"2026-04-21T09:30:00.000Z","clickId":"c-cy","customerExternalId":"cy","eventName":"signup"}]}' >/dev/null
journey_event=$(post /v1/events '{"event":"sale","timestamp":"2026-04-15T10:00:00.000Z","clickId":"c-news","customerExternalId":"ann","invoiceId":"inv-ann","currency":"USD","amount":100.0}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
post /v1/events '{"event":"sale","timestamp":"2026-04-21T09:00:00.000Z","clickId":"c-bob","customerExternalId":"bob","invoiceId":"inv-bob","currency":"USD","amount":50.0}' >/dev/null
deadline=$((SECONDS + 20))
until curl -fsS "$BASE/v1/dispatches?eventId=$journey_event" -H "Authorization: Bearer $read_key" |
  python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; sys.exit(0 if d and d[0]["status"] == "succeeded" else 1)'; do
  ((SECONDS < deadline)) || { say "the dashboard's sale was never delivered"; exit 1; }
  sleep 0.1
done

shots=${UI_SCREENSHOTS:-$ROOT/.local/ui-dashboard}
mkdir -p "$shots"
UI_BASE=$BASE UI_READ_KEY=$read_key UI_JOURNEY_EVENT=$journey_event UI_SCREENSHOTS=$shots \
  UI_NODE_MODULES=$ROOT/$modules/node_modules \
  timeout 180 node --test --test-reporter=spec tests/ui/dashboard.test.mjs

say "took $((SECONDS - started)) s after the build; screenshots: ${UI_SCREENSHOT:-.local/ui.png} and $shots/"
say "2 passed, 0 failed"
