#!/usr/bin/env bash
# Reports at scale, part of `make bench` (BENCH_REPORTS=0 skips it): one workspace holding
# BENCH_REPORTS_CONVERSIONS (1,000,000) credited conversions over 180 days, seeded in SQL
# (generate_series) into the rollups' source (report_conversions with their touches: 1 to 4
# touches each, 8 channels, 24 campaigns, 4 event names, USD and EUR, waits from a second to 57
# days spread evenly over the time histogram's buckets) plus half a year of registered
# clicks, then `convrelay reports rebuild`, then every report shape asked BENCH_REPORTS_RUNS (20)
# times over HTTP: p50 and p95 per shape. The whole range holds all the conversions.
#
# First, the credit stage's speed: BENCH_REPORTS_CREDIT_SECONDS (10; 0 skips it) of loadgen's
# repeat load (4,000 repeat customers, a click on every sale) stored by `serve --no-workers`, then
# drained by `convrelay worker`: the matcher's events/s until its queue is empty, then the report
# stage's conversions/s over what it still had to credit (it yields to the matcher until then).
#
# BENCH_REPORTS_BUILD=debug uses the dev build instead of building the release one;
# BENCH_REPORTS_KEEP=1 keeps the seeded database (convrelay_bench_reports) for EXPLAIN ANALYZE.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

conversions=${BENCH_REPORTS_CONVERSIONS:-1000000}
runs=${BENCH_REPORTS_RUNS:-20}
bench_db=convrelay_bench_reports
say() { printf 'bench-reports: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
[[ $conversions =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPORTS_CONVERSIONS must be a whole number"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPORTS_RUNS must be a whole number"

credit_seconds=${BENCH_REPORTS_CREDIT_SECONDS:-10}
[[ $credit_seconds =~ ^[0-9]+$ ]] || die "BENCH_REPORTS_CREDIT_SECONDS must be a whole number"
if [[ ${BENCH_REPORTS_BUILD:-release} == debug ]]; then
  cargo build --locked -q -p ingest-api -p loadgen
  server_bin=$ROOT/target/debug/convrelay
  loadgen_bin=$ROOT/target/debug/convrelay-loadgen
else
  cargo build --release --locked -q -p ingest-api -p loadgen
  server_bin=$ROOT/target/release/convrelay
  loadgen_bin=$ROOT/target/release/convrelay-loadgen
fi
workdir=$(mktemp -d "${TMPDIR:-/tmp}/convrelay-bench-reports.XXXXXX")
server_pid=""
cleanup() {
  local status=$?
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf -- "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

admin=${DATABASE_URL:-$(scripts/localpg.sh url)}
psql_admin() { scripts/localpg.sh psql -d "$admin" -v ON_ERROR_STOP=1 -qAt "$@"; }
# fresh_database NAME: drops and creates it, and points DATABASE_URL at it.
fresh_database() {
  psql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()" >/dev/null
  PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $1" >/dev/null
  ensure_database "$admin" "$1"
  DATABASE_URL=$(with_database "$admin" "$1")
}
export CONVRELAY_RATE_LIMIT=0 CONVRELAY_LOG=warn
q() { scripts/localpg.sh psql -d "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "$1"; }
# The touches a conversion keeps: one varint (its last byte below 128) each, two with more than
# one group.
touch_count="(SELECT count(*) FROM generate_series(0, length(touches) - 1) AS b WHERE get_byte(touches, b) < 128)
  / CASE WHEN cardinality(groups) > 4 THEN 2 ELSE 1 END"
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }

# --- the credit stage behind the matcher, on the repeat load ----------------------------------
if ((credit_seconds > 0)); then
  credit_db=convrelay_bench_credit
  fresh_database "$credit_db"
  export DATABASE_URL
  "$server_bin" migrate
  ingest_key=$("$server_bin" keys create --workspace bench-credit --scope ingest)
  say "credit stage: ${credit_seconds}s of the repeat load, then drained by convrelay worker"
  port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000)) # below the ephemeral ports clients use
  CONVRELAY_LISTEN=127.0.0.1:$port "$server_bin" serve --no-workers >>"$workdir/server.log" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 300; i++)); do
    kill -0 "$server_pid" 2>/dev/null || die "convrelay serve exited: $(tail -n 5 "$workdir/server.log")"
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
  done
  CONVRELAY_LOADGEN_KEY=$ingest_key timeout --foreground 300 "$loadgen_bin" --url "http://127.0.0.1:$port" \
    --scenario repeat --connections 16 --duration "${credit_seconds}s" --warmup 0s --batch-size 100 \
    --server-pid "$server_pid" --run-id "credit-$RANDOM$RANDOM" >"$workdir/load.out" || die "loadgen failed"
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  backlog=$(q "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM match_queue")
  started=$(now)
  "$server_bin" worker >>"$workdir/server.log" 2>&1 &
  server_pid=$!
  matched="" credit_backlog=0
  for ((i = 0; i < 30000; i++)); do
    kill -0 "$server_pid" 2>/dev/null || die "convrelay worker exited: $(tail -n 5 "$workdir/server.log")"
    if [[ -z $matched && $(q "SELECT count(*) FROM match_queue") == 0 ]]; then
      matched=$(now)
      credit_backlog=$(q "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM credit_batches")
    fi
    [[ -n $matched && $(q "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM credit_batches") == 0 ]] && break
    sleep 0.05
  done
  credited=$(now)
  [[ -n $matched && $(q "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM credit_batches") == 0 ]] || die "the worker did not drain its queues within 25 minutes"
  worker_rss=$(awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null || echo 0)
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  touches=$(q "SELECT round(avg(coalesce($touch_count, 1)), 1) FROM report_conversions WHERE credited_at IS NOT NULL")
  match_rate=$(calc "$backlog / ($matched - $started)")
  credit_rate=$(calc "$credit_backlog / ($credited - $matched)")
  printf '\ncredit stage (repeat load, %s touches per conversion)\n' "$touches"
  printf '  matcher      %7d events in %6.2f s = %6d events/s\n' "$backlog" "$(calc "$matched - $started" 2)" "$match_rate"
  printf '  report stage %7d conversions in %6.2f s = %6d conversions/s (%s x the matcher); worker peak RSS %s MB\n' \
    "$credit_backlog" "$(calc "$credited - $matched" 2)" "$credit_rate" "$(calc "$credit_rate / $match_rate" 2)" "$worker_rss"
  PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $credit_db" >/dev/null || true
fi

# --- reports over 1,000,000 conversions -----------------------------------------------------
fresh_database "$bench_db"
export DATABASE_URL

"$server_bin" migrate
key=$("$server_bin" keys create --workspace bench-reports --scope read)
workspace=$(q "SELECT id FROM workspaces WHERE name = 'bench-reports'")

say "seeding $conversions conversions"
t0=$(now)
q "
INSERT INTO report_conversions
    (workspace_id, event_id, kind, occurred_at, event_name, tier, amount, currency, retracted, credited_at)
SELECT '$workspace', gen_random_uuid(),
       CASE WHEN i % 10 < 7 THEN 'lead' ELSE 'sale' END,
       timestamptz '2026-01-01' + (i % 180) * interval '1 day' + (i * 7919 % 86400) * interval '1 second',
       (ARRAY['signup', 'demo_booked', 'purchase', 'newsletter'])[1 + i % 4],
       CASE WHEN i % 4 = 3 THEN 'micro' ELSE 'macro' END,
       CASE WHEN i % 10 >= 7 THEN 10 + (i * 31 % 49000) / 100.0 WHEN i % 5 = 0 THEN 50 END,
       CASE WHEN i % 10 >= 7 OR i % 5 = 0 THEN (CASE WHEN i % 6 = 0 THEN 'EUR' ELSE 'USD' END) END,
       false, now()
FROM generate_series(1::bigint, $conversions) AS i;
ANALYZE report_conversions;"
q "
UPDATE report_conversions AS r
SET last_touch = s.last_touch, first_touch = s.first_touch,
    touches = report_touches_encode(s.touched_at, s.touch_groups), groups = s.groups
FROM (
SELECT x.workspace_id, x.event_id, (x.k - 1)::smallint AS last_touch, 0::smallint AS first_touch,
       array_agg(x.clicked_at ORDER BY x.clicked_at, x.n) FILTER (WHERE v.j = 1) AS touched_at,
       array_agg(v.value ORDER BY x.clicked_at, x.n, v.j) AS groups,
       CASE WHEN x.k > 1 THEN array_agg(x.g ORDER BY x.clicked_at, x.n) FILTER (WHERE v.j = 1) END AS touch_groups
FROM (
    SELECT c.workspace_id, c.event_id, t.n, t.k,
           c.occurred_at - exp((c.h::bigint * (t.k - t.n + 3) % 10000) / 10000.0 * 15.4) * interval '1 second' AS clicked_at,
           (rank() OVER (PARTITION BY c.event_id ORDER BY c.occurred_at - exp((c.h::bigint * (t.k - t.n + 3) % 10000) / 10000.0 * 15.4) * interval '1 second', t.n) - 1)::smallint AS g,
           ch.channel, ch.source, ch.medium, ch.channel || '_' || ((c.h + t.n) % 3) AS campaign
    FROM (SELECT *, abs(hashtext(event_id::text)) AS h FROM report_conversions) AS c
    CROSS JOIN LATERAL (SELECT n, 1 + c.h % 4 AS k FROM generate_series(0, c.h % 4) AS n) AS t
    CROSS JOIN LATERAL (
        SELECT (ARRAY['google_ads', 'meta', 'tiktok', 'microsoft', 'linkedin', 'newsletter', 'partner', 'direct'])[1 + (c.h / 4 + t.n) % 8] AS channel,
               (ARRAY['google', 'facebook', 'tiktok', 'bing', 'linkedin', 'newsletter', 'partner', NULL])[1 + (c.h / 4 + t.n) % 8] AS source,
               (ARRAY['cpc', 'paid_social', 'paid_social', 'cpc', 'paid_social', 'email', 'referral', NULL])[1 + (c.h / 4 + t.n) % 8] AS medium
    ) AS ch
) AS x
CROSS JOIN LATERAL unnest(ARRAY[x.channel, x.source, x.medium, x.campaign]) WITH ORDINALITY AS v(value, j)
GROUP BY x.workspace_id, x.event_id, x.k
) AS s
WHERE r.workspace_id = s.workspace_id AND r.event_id = s.event_id;
ANALYZE report_conversions;"
q "
INSERT INTO report_clicks (workspace_id, dim, day, key, clicks)
SELECT '$workspace', d.dim, date '2026-01-01' + day, d.key, 200 + (day * 13 + d.dim) % 300
FROM generate_series(0, 179) AS day
CROSS JOIN (VALUES (0, 'google_ads'), (0, 'meta'), (0, 'tiktok'), (0, 'microsoft'), (0, 'linkedin'),
                   (0, 'newsletter'), (0, 'partner'), (1, 'google'), (1, 'facebook'), (2, 'cpc'),
                   (2, 'paid_social'), (3, 'google_ads_0'), (3, 'meta_1')) AS d(dim, key);"
seeded=$(calc "$(now) - $t0" 1)
shares=$(q "SELECT coalesce(sum($touch_count), 0) FROM report_conversions")
say "seeded $conversions conversions with $shares touches in $seeded s; rebuilding the rollups"
t0=$(now)
"$server_bin" reports rebuild --workspace bench-reports
rebuilt=$(calc "$(now) - $t0" 1)
for table in report_rollups report_histograms report_clicks; do q "VACUUM ANALYZE $table"; done
rollup_rows=$(q "SELECT count(*) FROM report_rollups")
time_rows=$(q "SELECT count(*) FROM report_histograms")
counted=$(q "SELECT round(sum(leads + sales)) FROM report_rollups WHERE model = 0 AND dim = 0")
[[ $counted == "$conversions" ]] || die "the rollups count $counted conversions, not $conversions"

port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000)) # below the ephemeral ports clients use
CONVRELAY_LISTEN=127.0.0.1:$port "$server_bin" serve --no-workers >>"$workdir/server.log" 2>&1 &
server_pid=$!
for ((i = 0; i < 300; i++)); do
  kill -0 "$server_pid" 2>/dev/null || die "convrelay serve exited: $(tail -n 5 "$workdir/server.log")"
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  sleep 0.1
done

range="from=2026-01-01&to=2026-07-01"
shapes=(
  "$range"
  "$range&groupBy=campaign&model=linear"
  "$range&groupBy=source&model=position_based&interval=week"
  "$range&groupBy=channel&model=time_decay&interval=day"
  "$range&groupBy=campaign&model=first_click&interval=day"
  "$range&groupBy=eventName&interval=month&tier=macro"
  "$range&groupBy=medium&model=linear&interval=day&tier=micro"
  "csv:$range&groupBy=campaign&model=time_decay&interval=day"
)
printf '\n%-72s %9s %9s %6s\n' "report (${conversions} conversions in range)" "p50 ms" "p95 ms" "rows"
worst=0
for shape in "${shapes[@]}"; do
  accept="application/json"
  query=$shape
  if [[ $shape == csv:* ]]; then
    accept="text/csv"
    query=${shape#csv:}
  fi
  url="http://127.0.0.1:$port/v1/reports/conversions?$query"
  : >"$workdir/times"
  for ((i = 0; i < runs; i++)); do
    curl -fsS -o "$workdir/body" -w '%{time_total}\n' -H "Authorization: Bearer $key" \
      -H "Accept: $accept" "$url" >>"$workdir/times" || die "$query failed"
  done
  if [[ $accept == text/csv ]]; then
    rows=$(($(wc -l <"$workdir/body") - 1))
  else
    rows=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["data"]))' "$workdir/body")
  fi
  read -r p50 p95 < <(sort -n "$workdir/times" | awk '{ t[NR] = $1 } END {
    i50 = int(NR * 0.50 + 0.999); i95 = int(NR * 0.95 + 0.999);
    printf "%.0f %.0f\n", t[i50] * 1000, t[i95] * 1000 }')
  ((p95 > worst)) && worst=$p95
  label=$shape
  printf '%-72s %9s %9s %6s\n' "${label:0:72}" "$p50" "$p95" "$rows"
done
printf '\nseed %s s, rebuild %s s; rollup rows %s, time histograms %s; worst p95 %s ms\n' \
  "$seeded" "$rebuilt" "$rollup_rows" "$time_rows" "$worst"
size=$(q "SELECT pg_size_pretty(sum(pg_total_relation_size(c))) FROM unnest(ARRAY['report_conversions', 'report_rollups', 'report_histograms', 'report_clicks']::regclass[]) AS c")
printf 'stored: %s across the reports tables\n' "$size"
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
if [[ ${BENCH_REPORTS_KEEP:-0} == 1 ]]; then
  say "kept the database $bench_db"
else
  PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $bench_db" >/dev/null || true
fi
if ((worst >= 1000)); then
  say "a report took 1 s or more at p95"
  exit 1
fi
