#!/usr/bin/env bash
# `make test`: every script in examples/ and the Rust client example (crates/ingest-api/examples)
# against the real binary on a fresh database, with the ad platforms and the webhook receiver
# played by scripts/fake-platforms.py. Each must exit 0 and print the answers its comments promise.
# EXAMPLES_VERBOSE=1 shows what each one printed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

say() { printf 'examples: %s\n' "$*" >&2; }

cargo build --locked --quiet -p ingest-api --examples --bin convrelay
started=$SECONDS

source scripts/harness.sh
harness_init examples
harness_fake 200
export CONVRELAY_RETRY_INITIAL_MS=50 CONVRELAY_RETRY_MAX_MS=200
harness_serve
CONVRELAY_URL=$BASE
CONVRELAY_KEY=$(harness_key ingest read admin)
export CONVRELAY_URL CONVRELAY_KEY
# The placeholder webhook address is the caller's to choose: here, the fake receiver.
export WEBHOOK_URL=$FAKE_URL/hook

ran=()
passed=0
# check NAME OUTPUT_FILE 'fixed string'... ('!text': must not appear); the # comment lines the
# examples print are not looked at.
check() {
  local name=$1 out=$2 want
  shift 2
  for want in "$@"; do
    if [[ $want == '!'* ]]; then
      if grep -v '^#' "$out" | grep -qF -- "${want#!}"; then
        say "FAIL $name: printed '${want#!}'"
        cat "$out" >&2
        exit 1
      fi
    elif ! grep -v '^#' "$out" | grep -qiF -- "$want"; then
      say "FAIL $name: expected '$want' in:"
      cat "$out" >&2
      exit 1
    fi
  done
}
# example SCRIPT [ARG...] -- 'expected'...
example() {
  local script=$1 args=() out
  shift
  while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
  shift
  out=$HARNESS_WORK/$(basename "$script").$((${#ran[@]})).out
  if ! "examples/$script" ${args[@]+"${args[@]}"} >"$out" 2>&1; then
    say "FAIL $script exited non-zero:"
    cat "$out" >&2
    exit 1
  fi
  if [[ -n ${EXAMPLES_VERBOSE:-} ]]; then cat "$out" >&2; fi
  check "$script" "$out" "$@"
  ran+=("$script")
  passed=$((passed + 1))
  say "ok   $script ${args[*]+${args[*]}}"
}

example create-destinations.sh -- \
  'HTTP 201' '"type":"webhook"' '"type":"google_ads"' '"type":"meta"' '"api":"data_manager"' \
  '"type":"tiktok"' '"type":"microsoft_ads"' '"type":"linkedin"' '"type":"reddit"' \
  '"type":"snapchat"' '"type":"pinterest"' \
  '"hasCredentials":true' '!whsec_fake' '!fake-client-secret' '!fake-refresh-token' '!fake-meta-access-token' \
  '!fake-tiktok-access-token' '!fake-microsoft-refresh-token' '!fake-developer-token' '!fake-linkedin-access-token' \
  '!fake-reddit-access-token' '!fake-snapchat-access-token' '!fake-pinterest-access-token' \
  '!HTTP 4' '!HTTP 5'
[[ $(grep -c '^HTTP 201$' "$HARNESS_WORK/create-destinations.sh.0.out") -eq 9 ]] || { say "FAIL create-destinations.sh: not nine 201s"; exit 1; }
example register-click.sh -- 'HTTP 201' '"clickId":"clickid_123"' '"gclid":"Cj0KCQjw-example-gclid"' 'HTTP 200'
example register-click.sh -- '"clickId":"clickid_123"' '!HTTP 201'
example send-lead.sh -- 'HTTP 202' '"event":"lead"' '"status":"accepted"' '"duplicate":false' '"id":"evt_'
example send-sale.sh -- 'HTTP 202' '"event":"sale"' '"duplicate":false' 'idempotent-replayed: true' \
  'HTTP 200' '"invoiceId":"inv_987"' '"currency":"USD"'
example send-journeys.sh -- 'HTTP 200' '"credited":true' '"channel":"newsletter"' '"position_based":0.4' \
  '"model":"linear"' '"key":"linkedin"' '!HTTP 4' '!HTTP 5'
sale_id=$(sed -n 's/.*"id":"\(evt_[^"]*\)".*/\1/p' "$HARNESS_WORK/send-sale.sh.4.out" | head -n 1)

# The seed sale reaches every destination: matched through user_123's deferred lead to
# clickid_123 (gclid and fbclid), so Google Ads, Meta and the webhook each get it.
deadline=$((SECONDS + 20))
until curl -fsS "$BASE/v1/events/$sale_id" -H "Authorization: Bearer $CONVRELAY_KEY" >"$HARNESS_WORK/sale.json" &&
  python3 - "$HARNESS_WORK/sale.json" <<'PY'
import json, sys
event = json.load(open(sys.argv[1]))
status = {d["type"]: d["status"] for d in event.get("dispatches") or []}
# The examples send no timestamp: each is the time of receipt, within every platform's age
# limits (an older conversion would be skipped as too_old_for_platform).
ok = (
    (event.get("attribution") or {}).get("status") == "matched"
    and status.get("google_ads") == "succeeded"
    and status.get("webhook") == "succeeded"
    and status.get("meta") in ("succeeded", "skipped")
)
sys.exit(0 if ok else 1)
PY
do
  if ((SECONDS > deadline)); then
    say "FAIL the seed sale did not reach Google Ads, Meta and the webhook:"
    cat "$HARNESS_WORK/sale.json" >&2
    exit 1
  fi
  sleep 0.2
done
received=$(curl -fsS "$FAKE_URL/_control/received")
for path in /token /v1/events:ingest /hook; do
  grep -qF "\"$path\"" <<<"$received" || { say "FAIL the fake platforms never got $path: $received"; exit 1; }
done
say "ok   the seed sale was matched and delivered to google_ads and webhook"

example send-sale.sh -- 'HTTP 202' 'idempotent-replayed: true' "\"id\":\"$sale_id\"" '"status":"matched"' \
  '"matchedBy":"customerExternalId"' '"type":"google_ads"' '"status":"succeeded"'
# As send-sale.sh says: the same invoice under another Idempotency-Key is a duplicate.
curl -sS "$BASE/v1/events" -H "Authorization: Bearer $CONVRELAY_KEY" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: another-key' -w '\nHTTP %{http_code}\n' \
  -d '{"event":"sale","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}' \
  >"$HARNESS_WORK/again.out"
check "inv_987 again" "$HARNESS_WORK/again.out" 'HTTP 200' '"duplicate":true' "\"id\":\"$sale_id\""
say "ok   inv_987 under another Idempotency-Key is a duplicate of $sale_id"
example send-batch.sh -- 'HTTP 200' '"accepted":2' '"rejected":1' '"duplicates":0' '"field":"currency"' \
  '"index":2'
example send-batch.sh -- 'HTTP 200' '"accepted":0' '"duplicates":2' '"rejected":1'
# Let the batch's dispatches go out first, so that the newest one has an attempt to show.
deadline=$((SECONDS + 20))
until curl -fsS "$BASE/v1/dispatches/stats" -H "Authorization: Bearer $CONVRELAY_KEY" |
  python3 -c 'import json, sys; t = json.load(sys.stdin)["totals"]; sys.exit(t["queued"] + t["in_flight"] + t["retrying"])'; do
  ((SECONDS < deadline)) || { say "FAIL the dispatch queue did not drain"; exit 1; }
  sleep 0.2
done
example dispatch-status.sh -- '"data":[' '"nextCursor"' '"totals"' '"succeeded":' '"attempts":[' \
  '"httpStatus":200' '"outcome":"succeeded"' '"durationMs"' '!HTTP 4'
[[ $(grep -c '^HTTP 200$' "$HARNESS_WORK/dispatch-status.sh.$((${#ran[@]} - 1)).out") -eq 3 ]] ||
  { say "FAIL dispatch-status.sh: not three 200s"; exit 1; }

out=$HARNESS_WORK/client.out
if ! cargo run --locked --quiet -p ingest-api --example client >"$out" 2>&1; then
  say "FAIL cargo run --example client exited non-zero:"
  cat "$out" >&2
  exit 1
fi
if [[ -n ${EXAMPLES_VERBOSE:-} ]]; then cat "$out" >&2; fi
check client "$out" 'click clk_example_' 'HTTP 201' 'lead evt_' 'HTTP 202' \
  'attribution: status=matched matchedBy=customerExternalId click=clk_example_' 'model=last_click' \
  'Idempotent-Replayed: true, same id: true'
passed=$((passed + 1))
say "ok   cargo run -p ingest-api --example client"
# The client's sale is fresh, so Meta gets it (its click has an fbclid).
deadline=$((SECONDS + 20))
until curl -fsS "$FAKE_URL/_control/received" | grep -qE '"/v[0-9.]+/1234567890/events"'; do
  ((SECONDS < deadline)) || { say "FAIL Meta never got the client's sale"; exit 1; }
  sleep 0.2
done
say "ok   the client's sale reached Meta"

# Every example script ran.
for script in examples/*.sh; do
  name=$(basename "$script")
  [[ " ${ran[*]} " == *" $name "* ]] || { say "FAIL $name is not checked by scripts/examples.sh"; exit 1; }
done

say "took $((SECONDS - started)) s after the build"
say "$passed passed, 0 failed"
