#!/usr/bin/env bash
# Attribution at scale, part of `make bench` (BENCH_MATCHER=0 skips it): realistic repeat-customer
# loads, measured as ratios of one run against the same PostgreSQL.
#
#   ceiling    pgbench: transactions of 100 event-shaped rows (450-byte jsonb, uuid key)
#   repeat     batches of 100 sales from 4,000 repeat customers (customerExternalId + email),
#              each sale with its own gclid, stored by `serve --no-workers`, then drained by
#              `convrelay worker` alone
#   history    the same load again over the same persons (each person then holds twice the clicks)
#   supernode  ~20,000 sales whose customers all give one placeholder email, drained the same way
#   e2e        the repeat load through one `convrelay serve` (API and workers in one process):
#              events over (load time + time until everything is attributed)
#   paced      the repeat load at half the e2e rate through the same `serve`: attribution lag
#   credit     after repeat and after history, the report stage's backlog (multi-touch shares,
#              rollups) credited by `convrelay worker`
#
# and the stored bytes per sale across all tables after repeat + history with everything credited,
# and the peak RSS of each process.
#
# The machines this runs on are noisy (one drain can take a fifth longer than the next one of the
# same backlog), so the ceiling is the median of three pgbench runs, and repeat and history are
# each the median of three drains of the same backlog: the first in the run's database, two more
# from copies of it taken before that drain, alternating repeat and history. Every sample is
# printed. Settings: BENCH_MATCHER_DURATION (10s of load per run), BENCH_CONNECTIONS (16).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

duration=${BENCH_MATCHER_DURATION:-10}
connections=${BENCH_MATCHER_CONNECTIONS:-16}
bench_db=convrelay_bench_matcher
say() { printf 'bench-matcher: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "BENCH_MATCHER_DURATION must be a whole number of seconds"

cargo build --release --locked -q -p ingest-api -p loadgen
server_bin=$ROOT/target/release/convrelay
loadgen_bin=$ROOT/target/release/convrelay-loadgen
workdir=$(mktemp -d "${TMPDIR:-/tmp}/convrelay-bench-matcher.XXXXXX")
pids=()
cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf -- "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

admin=${DATABASE_URL:-$(scripts/localpg.sh url)}
psql_admin() { scripts/localpg.sh psql -d "$admin" -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$bench_db' AND pid <> pg_backend_pid()" >/dev/null
PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $bench_db" >/dev/null
ensure_database "$admin" "$bench_db"
DATABASE_URL=$(with_database "$admin" "$bench_db")
export DATABASE_URL CONVRELAY_RATE_LIMIT=0 CONVRELAY_LOG=warn
q() { scripts/localpg.sh psql -d "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "$1"; }

"$server_bin" migrate
key_repeat=$("$server_bin" keys create --workspace bench-repeat --scope ingest)
key_super=$("$server_bin" keys create --workspace bench-supernode --scope ingest)
key_e2e=$("$server_bin" keys create --workspace bench-e2e --scope ingest)

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }
peak_rss() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
queued() { q "SELECT coalesce(sum(coalesce(cardinality(event_ids), 1)), 0) FROM match_queue"; }

# The polls while a backlog drains go through one psql session that stays open, and ask only
# whether work is left: a psql started for each look (through localpg.sh) cost some 40 ms of CPU,
# twenty times a second, and summing a large queue 5 ms of the database's, both taken from the
# processes being measured.
coproc POLLER { scripts/localpg.sh psql -d "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 2>&1; }
pids+=("$POLLER_PID")
poll() {
  local answer
  printf '%s;\n' "$1" >&"${POLLER[1]}"
  IFS= read -r -t 30 answer <&"${POLLER[0]}" || die "the polling psql session did not answer"
  printf '%s\n' "$answer"
}
# 1 while the attribution queue holds work, else 0.
queued_left() { poll "SELECT EXISTS (SELECT 1 FROM match_queue WHERE coalesce(cardinality(event_ids), 1) > 0)::int"; }
# Points the polling session at database $1 (and waits until it is there).
poll_on() {
  printf '\\c %s\n' "$1" >&"${POLLER[1]}"
  [[ $(poll "SELECT current_database()") == "$1" ]] || die "the polling psql session did not move to $1"
}
# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Starts `convrelay ARGS…` serving on a free port; sets server_pid and port.
start() {
  local i
  port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000)) # below the ephemeral ports clients use
  CONVRELAY_LISTEN=127.0.0.1:$port "$server_bin" "$@" >>"$workdir/server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for ((i = 0; i < 300; i++)); do
    kill -0 "$server_pid" 2>/dev/null || die "convrelay $* exited: $(tail -n 5 "$workdir/server.log")"
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  die "convrelay $* was not ready within 30 s"
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# load KEY SCENARIO SECONDS [--rate N]: one loadgen run against the server on $port.
load() {
  local key=$1 scenario=$2 seconds=$3
  shift 3
  CONVRELAY_LOADGEN_KEY=$key timeout --foreground 300 "$loadgen_bin" --url "http://127.0.0.1:$port" \
    --scenario "$scenario" --connections "$connections" --duration "${seconds}s" --warmup 0s \
    --batch-size 100 --server-pid "$server_pid" --run-id "$scenario-$RANDOM$RANDOM" "$@" >"$workdir/load.out"
  grep -E '^RESULT' "$workdir/load.out" | sed -e 's/^RESULT //'
}

# Waits (up to 600 s) until the attribution queue is empty; prints the seconds it took.
drain() {
  local started i
  started=$(now)
  for ((i = 0; i < 6000; i++)); do
    (($(queued_left) == 0)) && break
    sleep 0.1
  done
  (($(queued_left) == 0)) || say "the attribution queue still holds work after 600 s"
  calc "$(now) - $started" 2
}

# fill KEY SCENARIO SECONDS [loadgen args]: stores a backlog with `serve --no-workers`.
fill() {
  start serve --no-workers
  load "$@" >"$workdir/fill.result"
  api_rss=$(peak_rss "$server_pid")
  stop "$server_pid"
}

# worker_drain WAITING SECONDS: runs `convrelay worker` alone until WAITING_left (a function
# printing 1 while work is left) answers 0, for at most SECONDS; sets backlog (WAITING, a function
# printing how much is left, before), secs, worker_rss.
worker_drain() {
  local waiting=$1 seconds=$2 started pid i
  backlog=$($waiting)
  # Each drain starts from vacuumed tables and clean buffers, as pgbench starts its runs: it
  # should not pay for vacuuming or writing out what the phase before it (a fill, the report
  # stage) left behind, which autovacuum would otherwise do during whichever drain it met.
  q "VACUUM (ANALYZE)" >/dev/null
  q "CHECKPOINT" >/dev/null
  started=$(now)
  "$server_bin" worker >>"$workdir/server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for ((i = 0; i < seconds * 20; i++)); do
    (($(${waiting}_left) == 0)) && break
    kill -0 "$pid" 2>/dev/null || die "convrelay worker exited: $(tail -n 5 "$workdir/server.log")"
    sleep 0.05
  done
  (($(${waiting}_left) == 0)) || say "the worker still holds work after $seconds s ($waiting)"
  secs=$(calc "$(now) - $started" 3)
  worker_rss=$(peak_rss "$pid")
  stop "$pid"
}

# Drains the attribution backlog; sets rate, worker_rss, backlog.
work() {
  worker_drain queued 300
  rate=$(calc "$backlog / $secs")
  printf '  %-10s %7d events drained by `convrelay worker` in %6.2f s = %6d events/s   worker peak RSS %4d MB   serve --no-workers peak RSS %4d MB\n' \
    "$1" "$backlog" "$secs" "$rate" "$worker_rss" "$api_rss"
}

# --- the ceiling: pgbench, 100 event-shaped rows per transaction -------------------------------
say "pgbench ceiling: transactions of 100 event-shaped rows, ${duration}s"
q "CREATE TABLE bench_ceiling (workspace_id uuid NOT NULL, id uuid NOT NULL, kind text NOT NULL,
   occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL, payload jsonb NOT NULL,
   PRIMARY KEY (workspace_id, id))"
# A sale as the journal keeps it: about 450 bytes of JSON.
payload='{"event":"sale","customerExternalId":"cust_1","email":"buyer1@mail.example","gclid":"Cj0KCQiA_bench_0_0_BwE","currency":"EUR","amount":84.9,"invoiceId":"ord_bench_0_0","utm":{"source":"google","medium":"cpc","campaign":"winter_sale_2026","term":"wool socks"},"pageUrl":"https://shop.example/checkout/thank-you?order=0","ip":"203.0.113.1","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}'
cat >"$workdir/ceiling.sql" <<SQL
INSERT INTO bench_ceiling SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(), 'sale', now(), now(), '${payload}'::jsonb FROM generate_series(1, 100);
SQL
pgbench_bin=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n 1)
[[ -x $pgbench_bin ]] || die "pgbench not found (it comes with the PostgreSQL server package)"
ceilings=()
for _ in 1 2 3; do
  tps=$("$pgbench_bin" -n -c 8 -j 2 -T "$duration" -f "$workdir/ceiling.sql" "$DATABASE_URL" 2>/dev/null |
    awk '/^tps = / { print $3; exit }')
  [[ -n $tps ]] || die "pgbench printed no tps"
  ceilings+=("$(calc "$tps * 100")")
  q "TRUNCATE bench_ceiling"
done
ceiling=$(median "${ceilings[@]}")
q "DROP TABLE bench_ceiling"
printf '\nattribution at scale\n  %-10s %7s rows/s (pgbench, 100 event-shaped rows per transaction, 8 clients; median of %s)\n' \
  ceiling "$ceiling" "${ceilings[*]}"

# The report stage credits what the matcher decided (multi-touch shares, rollups) behind it: after
# each drain a worker finishes that, so that the next drain does not share the worker with it, and
# its rate is printed; the storage is measured with everything credited.
credits_waiting() { q "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM credit_batches"; }
credits_waiting_left() { poll "SELECT EXISTS (SELECT 1 FROM credit_batches WHERE cardinality(event_ids) > 0)::int"; }
credit() {
  worker_drain credits_waiting 1800
  max_rss=$((worker_rss > max_rss ? worker_rss : max_rss))
  printf '  %-10s %7d conversions credited by `convrelay worker` in %6.2f s = %6d/s   worker peak RSS %4d MB\n' \
    "$1" "$backlog" "$secs" "$(calc "$backlog / $secs")" "$worker_rss"
}

# snapshot NAME: a copy of the run's database as it is now (its files copied: nothing connected).
snapshot() {
  poll_on postgres
  PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS ${bench_db}_$1" \
    -c "CREATE DATABASE ${bench_db}_$1 TEMPLATE $bench_db STRATEGY file_copy"
  poll_on "$bench_db"
}
# resample NAME: drains a fresh copy of snapshot NAME's backlog again; appends its rate to
# NAME_rates and its worker's peak RSS to max_rss.
resample() {
  local scratch=${bench_db}_scratch url=$DATABASE_URL
  poll_on postgres
  PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $scratch" \
    -c "CREATE DATABASE $scratch TEMPLATE ${bench_db}_$1 STRATEGY file_copy"
  DATABASE_URL=$(with_database "$admin" "$scratch")
  poll_on "$scratch"
  work "$1"
  eval "$1_rates+=(\"\$rate\")"
  max_rss=$((worker_rss > max_rss ? worker_rss : max_rss))
  DATABASE_URL=$url
  poll_on postgres
  psql_admin -c "DROP DATABASE $scratch"
  poll_on "$bench_db"
}

# --- repeat, history: backlogs drained by `convrelay worker` alone -----------------------------
fill "$key_repeat" repeat "$duration"
snapshot repeat
work repeat
repeat_rates=("$rate")
max_rss=$((worker_rss > api_rss ? worker_rss : api_rss))
credit credit
fill "$key_repeat" repeat "$duration"
snapshot history
work history
history_rates=("$rate")
max_rss=$((worker_rss > max_rss ? worker_rss : max_rss))
max_rss=$((api_rss > max_rss ? api_rss : max_rss))
credit credit

# Stored bytes per sale, all tables together, after repeat + history, every conversion credited
# (one workspace so far).
storage=$(q "SELECT round((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind = 'r')
                    / greatest((SELECT count(*) FROM events), 1))")
tables=$(q "SELECT string_agg(format('%s %s', relname, (pg_total_relation_size(c.oid) / greatest((SELECT count(*) FROM events), 1))), ', ' ORDER BY pg_total_relation_size(c.oid) DESC)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' AND pg_total_relation_size(c.oid) > 65536")
persons=$(q "SELECT count(*) FROM persons WHERE merged_into IS NULL")
events=$(q "SELECT count(*) FROM events")

# Two more drains of each backlog, alternating, from the copies taken before the first.
for _ in 1 2; do
  resample repeat
  resample history
done
poll_on postgres
psql_admin -c "DROP DATABASE ${bench_db}_repeat" -c "DROP DATABASE ${bench_db}_history"
poll_on "$bench_db"
repeat_rate=$(median "${repeat_rates[@]}")
history_rate=$(median "${history_rates[@]}")
printf '  %-10s %7s events/s (median of %s)\n  %-10s %7s events/s (median of %s)\n' \
  repeat "$repeat_rate" "${repeat_rates[*]}" history "$history_rate" "${history_rates[*]}"

# --- supernode: one placeholder email shared by every customer ---------------------------------
fill "$key_super" supernode 2 --rate 10000
work supernode
super_rate=$rate
max_rss=$((worker_rss > max_rss ? worker_rss : max_rss))
super_persons=$(q "SELECT max(n) FROM (SELECT count(*) AS n FROM identities i JOIN workspaces w ON w.id = i.workspace_id
                    WHERE w.name = 'bench-supernode' AND i.kind = 'customerExternalId' GROUP BY i.person_id) s")
super_flagged=$(q "SELECT count(*) FROM identities i JOIN workspaces w ON w.id = i.workspace_id WHERE w.name = 'bench-supernode' AND i.too_common")

# --- e2e: one `serve`, load then attribution -------------------------------------------------
start serve
started=$(now)
load "$key_e2e" repeat "$duration" >"$workdir/e2e.result"
load_secs=$(calc "$(now) - $started" 3)
drain_secs=$(drain)
e2e_events=$(q "SELECT count(*) FROM events e JOIN workspaces w ON w.id = e.workspace_id WHERE w.name = 'bench-e2e'")
e2e_rate=$(calc "$e2e_events / ($load_secs + $drain_secs)")
printf '  %-10s %7d events through one `convrelay serve`: loaded in %.1f s, all attributed %.1f s later = %d events/s\n' \
  e2e "$e2e_events" "$load_secs" "$drain_secs" "$e2e_rate"

# --- paced: half the e2e rate, attribution lag -------------------------------------------------
paced_rate=$((e2e_rate / 2))
((paced_rate >= 100)) || paced_rate=100
mark=$(q "SELECT now()")
load "$key_e2e" repeat "$duration" --rate "$paced_rate" --label paced >"$workdir/paced.result"
paced_drain=$(drain)
serve_rss=$(peak_rss "$server_pid")
max_rss=$((serve_rss > max_rss ? serve_rss : max_rss))
stop "$server_pid"
read -r lag50 lag99 < <(q "SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY l) * 1000)::numeric, 1),
                                  round((percentile_cont(0.99) WITHIN GROUP (ORDER BY l) * 1000)::numeric, 1)
                           FROM (SELECT extract(epoch FROM a.decided_at - e.received_at) AS l
                                 FROM events e JOIN attributions a ON a.workspace_id = e.workspace_id AND a.event_id = e.id
                                 WHERE e.received_at >= '$mark') s" | tr '|' ' ')
printf '  %-10s %7s events/s paced (half of e2e): attribution lag p50 %s ms, p99 %s ms; queue drained %s s after the load\n' \
  paced "$paced_rate" "$lag50" "$lag99" "$paced_drain"
printf '  storage    %s bytes per stored sale, all tables (%s events, %s persons): %s\n' "$storage" "$events" "$persons" "$tables"
printf '  supernode  largest person holds %s customer ids; %s identifier(s) marked too common\n' "${super_persons:-0}" "$super_flagged"
printf '  memory     peak RSS %s MB (serve --no-workers, worker, serve)\n' "$max_rss"

verdict() { awk "BEGIN { exit !($1) }" && echo met || echo MISSED; }
printf '\ntargets (attribution at scale)\n'
printf '  %-44s %-36s %s\n' "matcher alone >= 0.20 x ceiling" "$(calc "$repeat_rate / $ceiling" 3) x" "$(verdict "$repeat_rate >= 0.20 * $ceiling")"
printf '  %-44s %-36s %s\n' "history >= 0.90 x repeat" "$(calc "$history_rate / $repeat_rate" 3) x" "$(verdict "$history_rate >= 0.90 * $repeat_rate")"
printf '  %-44s %-36s %s\n' "supernode >= 0.50 x repeat" "$(calc "$super_rate / $repeat_rate" 3) x" "$(verdict "$super_rate >= 0.50 * $repeat_rate")"
printf '  %-44s %-36s %s\n' "e2e in one serve >= 0.10 x ceiling" "$(calc "$e2e_rate / $ceiling" 3) x" "$(verdict "$e2e_rate >= 0.10 * $ceiling")"
printf '  %-44s %-36s %s\n' "lag p99 < 1 s at half the e2e rate" "$lag99 ms" "$(verdict "${lag99:-1e9} < 1000")"
printf '  %-44s %-36s %s\n' "storage <= 2,000 bytes per sale" "$storage bytes" "$(verdict "$storage <= 2000")"
printf '  %-44s %-36s %s\n' "peak RSS <= 150 MB, every process" "$max_rss MB" "$(verdict "$max_rss <= 150")"
