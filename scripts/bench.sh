#!/usr/bin/env bash
# `make bench`: build the release server and convrelay-loadgen, serve a fresh database
# (convrelay_bench, dropped and created again each time) on a free loopback port, and drive it
# with each scenario in turn — single, batch, dup30, paced — BENCH_RUNS times each. After each
# run it waits for the attribution queue to drain, so that no run pays for the one before. Prints
# every run, then the median of each figure per scenario next to the targets, then the
# attribution lag (accept -> first decision) per scenario.
#
# Scenarios: single (one sale per POST, as fast as answers come), batch (batches of
# BENCH_BATCH_SIZE, as fast as answers come), dup30 (single, 30% repeats), paced (batches sent at
# a steady BENCH_PACED_RATE events/s: can attribution keep up with a sustained batch load?).
#
# Settings (environment):
#   DATABASE_URL       a PostgreSQL server to use instead of the project's local cluster; the
#                      bench works in its convrelay_bench database
#   BENCH_RUNS         runs per scenario (3)
#   BENCH_DURATION     measured time per run (10s)
#   BENCH_WARMUP       unmeasured time before it (2s)
#   BENCH_CONNECTIONS  keep-alive connections (64)
#   BENCH_BATCH_SIZE   events per batch request (100)
#   BENCH_STRICT       1: exit 1 when a target is missed
#   BENCH_SCENARIOS    which scenarios, in order ("single batch dup30 paced")
#   BENCH_PACED_RATE   events/s of the paced scenario (20000)
#   BENCH_PRIOR_SALES  earlier sales whose invoiceIds the workspace holds before the runs
#                      (1000000, over the past 395 days)
#   BENCH_DRAIN        0 skips the forwarder drain run
#   BENCH_SERVE_ARGS   arguments of `convrelay serve` ("--no-workers" measures the API alone)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

runs=${BENCH_RUNS:-3}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
connections=${BENCH_CONNECTIONS:-64}
batch_size=${BENCH_BATCH_SIZE:-100}
strict=${BENCH_STRICT:-0}
bench_db=convrelay_bench
paced_rate=${BENCH_PACED_RATE:-20000}
prior_sales=${BENCH_PRIOR_SALES:-1000000}
read -r -a scenarios <<<"${BENCH_SCENARIOS:-single batch dup30 paced}"

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number, not '$runs'"
[[ $prior_sales =~ ^[0-9]+$ ]] || die "BENCH_PRIOR_SALES must be a number, not '$prior_sales'"
[[ $paced_rate =~ ^[1-9][0-9]*$ ]] || die "BENCH_PACED_RATE must be a positive number, not '$paced_rate'"
for scenario in "${scenarios[@]}"; do
  case $scenario in single | batch | dup30 | paced) ;; *) die "unknown scenario '$scenario' (single, batch, dup30, paced)" ;; esac
done

say "building the release binaries"
cargo build --release --locked -p ingest-api -p loadgen
server_bin=$ROOT/target/release/convrelay
loadgen_bin=$ROOT/target/release/convrelay-loadgen

workdir=$(mktemp -d "${TMPDIR:-/tmp}/convrelay-bench.XXXXXX")
server_log=$workdir/server.log
server_pid=''

stop_server() {
  local pid=$server_pid i
  [[ -n $pid ]] || return 0
  server_pid=''
  kill -TERM "$pid" 2>/dev/null || return 0
  # The server drains for up to 30 s; past 40 s it is killed.
  for ((i = 0; i < 400; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "the server (pid $pid) did not stop within 40 s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  stop_server
  rm -rf -- "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the database ---------------------------------------------------------------------------
if [[ -n ${DATABASE_URL:-} ]]; then
  admin=$DATABASE_URL
else
  admin=$(scripts/localpg.sh url)
fi
psql_admin() { scripts/localpg.sh psql -d "$admin" -v ON_ERROR_STOP=1 -qAt "$@"; }
say "recreating the database $bench_db"
psql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$bench_db' AND pid <> pg_backend_pid()" >/dev/null
PGOPTIONS='--client-min-messages=warning' psql_admin -c "DROP DATABASE IF EXISTS $bench_db" >/dev/null
ensure_database "$admin" "$bench_db"
DATABASE_URL=$(with_database "$admin" "$bench_db")
export DATABASE_URL
export CONVRELAY_RATE_LIMIT=0 CONVRELAY_LOG=warn

"$server_bin" migrate
key=$("$server_bin" keys create --workspace bench --scope ingest)
[[ $key == cr_* ]] || die "convrelay keys create printed no key"

# --- the history -----------------------------------------------------------------------------
# A workspace that sells has sold before: the natural keys of BENCH_PRIOR_SALES earlier sales,
# spread over the 395 days before now, as ingest files them.
# Every new sale's invoiceId is then looked for among them.
if ((prior_sales > 0)); then
  say "filing the invoiceIds of $prior_sales earlier sales (the past 395 days)"
  psql_admin -d "$DATABASE_URL" -c "
    INSERT INTO natural_keys (workspace_id, digest, event_id)
    SELECT w.id,
           substring(sha256(convert_to('sale:prior-' || g, 'UTF8')) FROM 1 FOR 16),
           (lpad(to_hex((extract(epoch FROM at.t) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid
    FROM workspaces w, generate_series(1, $prior_sales) g,
         LATERAL (SELECT now() - (g % 395) * interval '1 day'
                        - (g % 86400) * interval '1 second') AS at(t)
    WHERE w.name = 'bench';
    ANALYZE natural_keys;"
fi

# --- the server -------------------------------------------------------------------------------
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_ready() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null
  else
    local answer
    # shellcheck disable=SC2016 # expanded by the inner shell
    answer=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
      printf "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3 &&
      head -n 1 <&3' _ "$1" 2>/dev/null) || return 1
    [[ $answer == "HTTP/1.1 200"* ]]
  fi
}

# Starts the server on $1; fails if it exits or is not ready within 30 s.
start_server() {
  local port=$1 i
  # Out of this script's process group (setsid): Ctrl-C reaches the script, which then stops
  # the server with SIGTERM, rather than the server itself.
  # shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of words
  CONVRELAY_LISTEN=127.0.0.1:$port ${setsid:+"$setsid"} "$server_bin" serve ${BENCH_SERVE_ARGS:-} >"$server_log" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null || true
      server_pid=''
      return 1
    fi
    if is_ready "$port"; then return 0; fi
    sleep 0.1
  done
  say "the server did not become ready within 30 s"
  stop_server
  return 1
}

setsid=$(command -v setsid || true)
port=''
for attempt in 1 2 3 4 5; do
  candidate=$((20000 + (RANDOM * 32768 + RANDOM) % 12000)) # below the ephemeral ports clients use
  port_taken "$candidate" && continue
  if start_server "$candidate"; then
    port=$candidate
    break
  fi
  say "the server did not start on port $candidate (attempt $attempt):"
  tail -n 5 "$server_log" >&2 || true
done
[[ -n $port ]] || die "could not start the server; its last log is above"
say "server pid $server_pid on http://127.0.0.1:$port; $runs run(s) of $duration (after $warmup warm-up) per scenario, $connections connections"

# --- the runs -------------------------------------------------------------------------------
# Waits (up to 120 s) for the attribution queue to drain; prints the seconds it took.
wait_for_matcher() {
  local started queued=1 i
  started=$(date +%s.%N)
  for ((i = 0; i < 1200; i++)); do
    queued=$(psql_admin -d "$DATABASE_URL" -c "SELECT count(*) FROM match_queue") || queued=1
    ((queued == 0)) && break
    sleep 0.1
  done
  ((queued == 0)) || say "the attribution queue still holds work after 120 s"
  awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

results=$workdir/results
: >"$results"
stamp=$(date +%s)
for scenario in "${scenarios[@]}"; do
  load_args=(--scenario "$scenario")
  if [[ $scenario == paced ]]; then
    load_args=(--scenario batch --rate "$paced_rate" --label paced)
  fi
  for ((i = 1; i <= runs; i++)); do
    kill -0 "$server_pid" 2>/dev/null || {
      tail -n 20 "$server_log" >&2
      die "the server has exited; its last log lines are above"
    }
    out=$workdir/run.out
    # The loadgen stops by itself; the timeout is only a guard.
    rc=0
    CONVRELAY_LOADGEN_KEY=$key timeout --foreground 300 "$loadgen_bin" \
      --url "http://127.0.0.1:$port" "${load_args[@]}" \
      --connections "$connections" --duration "$duration" --warmup "$warmup" \
      --batch-size "$batch_size" --server-pid "$server_pid" \
      --run-id "$scenario-$i-$stamp" >"$out" || rc=$?
    if ((rc == 130 || rc == 143)); then exit "$rc"; fi # interrupted
    if ((rc != 0)); then
      cat "$out" >&2
      die "convrelay-loadgen failed with status $rc ($scenario, run $i)"
    fi
    sed -e '/^RESULT /d' -e '/^CPU /d' -e "s/^/run $i  /" "$out"
    grep -q '^RESULT ' "$out" || die "convrelay-loadgen printed no RESULT line"
    grep -E '^(RESULT|CPU) ' "$out" >>"$results"
    drained=$(wait_for_matcher)
    printf 'run %d  attribution queue drained %s s after the load stopped\n' "$i" "$drained"
    printf 'DRAIN scenario=%s drain_s=%s\n' "$scenario" "$drained" >>"$results"
  done
done

printf '\n'
grep '^RESULT ' "$results"

# --- the summary ----------------------------------------------------------------------------
# The median of each figure per scenario (and of the CPU split), then each target: met or missed.
summary=$(awk -v runs="$runs" '
  # The median of figure f of scenario s over its n values.
  function median(s, f, n,   i, j, t, v) {
    for (i = 1; i <= n; i++) v[i] = val[s, f, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function verdict(ok) { if (!ok) missed++; return ok ? "met" : "MISSED" }
  {
    delete field
    for (k = 2; k <= NF; k++) { split($k, kv, "="); field[kv[1]] = kv[2] }
    s = field["scenario"]
    if ($1 == "DRAIN") next
    if ($1 == "CPU") { n = ++cpus[s] } else { n = ++count[s]; errors += field["errors"] }
    for (f in field) val[s, f, n] = field[f]
  }
  END {
    nf = split("events_per_s requests_per_s p50_ms p99_ms errors duplicates peak_rss_mb", fs, " ")
    nc = split("server_cores postgres_cores loadgen_cores other_cores", cs, " ")
    printf "\nmedians of %d run(s)\n", runs
    printf "%-8s %10s %10s %8s %8s %7s %10s %7s   %-34s\n", "scenario", "events/s", "requests/s", "p50 ms", "p99 ms", "errors", "duplicates", "RSS MB", "CPU cores: server/pg/loadgen/other"
    ns = split("single batch dup30 paced", order, " ")
    for (k = 1; k <= ns; k++) {
      s = order[k]
      if (!count[s]) continue
      for (i = 1; i <= nf; i++) m[s, fs[i]] = median(s, fs[i], count[s])
      cpu = "-"
      if (cpus[s]) {
        for (i = 1; i <= nc; i++) m[s, cs[i]] = median(s, cs[i], cpus[s])
        cpu = sprintf("%.2f / %.2f / %.2f / %.2f", m[s, "server_cores"], m[s, "postgres_cores"], m[s, "loadgen_cores"], m[s, "other_cores"])
        if (m[s, "other_cores"] > other) other = m[s, "other_cores"]
      }
      printf "%-8s %10.0f %10.0f %8.2f %8.2f %7.0f %10.0f %7.1f   %s\n", s, m[s, "events_per_s"], m[s, "requests_per_s"], m[s, "p50_ms"], m[s, "p99_ms"], m[s, "errors"], m[s, "duplicates"], m[s, "peak_rss_mb"], cpu
      if (m[s, "peak_rss_mb"] > rss) rss = m[s, "peak_rss_mb"]
    }
    printf "\ntargets\n"
    printf "  %-44s %-36s %s\n", "single >= 8,000 events/s", sprintf("%.0f events/s", m["single", "events_per_s"]), verdict(m["single", "events_per_s"] >= 8000)
    printf "  %-44s %-36s %s\n", "single p99 <= 50 ms", sprintf("%.2f ms", m["single", "p99_ms"]), verdict(m["single", "p99_ms"] <= 50)
    printf "  %-44s %-36s %s\n", "batch >= 40,000 events/s", sprintf("%.0f events/s", m["batch", "events_per_s"]), verdict(m["batch", "events_per_s"] >= 40000)
    printf "  %-44s %-36s %s\n", "server peak RSS <= 150 MB", sprintf("%.1f MB", rss), verdict(rss > 0 && rss <= 150)
    ratio = m["single", "events_per_s"] > 0 ? m["dup30", "events_per_s"] / m["single", "events_per_s"] : 0
    printf "  %-44s %-36s %s\n", "dup30 within 20% of single (>= 80% of it)", sprintf("%.0f events/s = %.0f%% of single", m["dup30", "events_per_s"], 100 * ratio), verdict(ratio >= 0.8)
    printf "  %-44s %-36s %s\n", "no errors", sprintf("%d in all runs", errors), verdict(errors == 0)
    if (other > 0.25)
      printf "\nnote: other work on this machine kept up to %.2f cores busy during the runs (median per scenario);\nthe figures above understate the service. Run again on a quiet machine.\n", other
    printf "MISSED_COUNT %d\n", missed
  }
' "$results")
grep -v '^MISSED_COUNT ' <<<"$summary"
missed=$(awk '/^MISSED_COUNT / { print $2 }' <<<"$summary")

# --- the matcher ------------------------------------------------------------------------------
# Attribution runs beside ingestion in the same process. The lag from accept to first decision is
# read from what it recorded; the paced scenario tells whether it keeps up with a sustained load.
printf '\nmatcher lag (accept -> first decision) per scenario, all runs; queue drain after each run (median)\n'
lag=$(psql_admin -d "$DATABASE_URL" -F ' ' -c "
  SELECT split_part(split_part(e.natural_key, '_', 2), '-', 1), count(*),
         round((percentile_cont(0.5) WITHIN GROUP (ORDER BY l.lag) * 1000)::numeric, 1),
         round((percentile_cont(0.99) WITHIN GROUP (ORDER BY l.lag) * 1000)::numeric, 1)
  FROM (SELECT a.workspace_id, a.event_id,
               extract(epoch FROM a.decided_at - e.received_at) AS lag
        FROM attributions a
        JOIN events e ON e.workspace_id = a.workspace_id AND e.id = a.event_id) l
  JOIN events e ON e.workspace_id = l.workspace_id AND e.id = l.event_id
  GROUP BY 1 ORDER BY 1")
lag_summary=$(awk -v paced_rate="$paced_rate" '
  FNR == NR {
    if ($1 != "DRAIN") next
    split($2, a, "="); split($3, b, "=")
    d[a[2], ++nd[a[2]]] = b[2]
    next
  }
  { decided[$1] = $2; p50[$1] = $3; p99[$1] = $4 }
  function median(s,   i, j, t, n, v) {
    n = nd[s]; if (!n) return -1
    for (i = 1; i <= n; i++) v[i] = d[s, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function verdict(ok) { if (!ok) missed++; return ok ? "met" : "MISSED" }
  END {
    ns = split("single batch dup30 paced", order, " ")
    for (k = 1; k <= ns; k++) {
      s = order[k]
      if (!(s in decided)) continue
      printf "  %-8s %9d events   p50 %9.1f ms   p99 %9.1f ms   drained %5.1f s after the load\n", s, decided[s], p50[s], p99[s], median(s)
    }
    printf "\ntargets (attribution)\n"
    if ("single" in decided)
      printf "  %-44s %-36s %s\n", "lag p99 < 1 s at the single rate", sprintf("%.1f ms", p99["single"]), verdict(p99["single"] < 1000)
    if ("paced" in decided) {
      printf "  %-44s %-36s %s\n", sprintf("lag p99 < 1 s, batches at %d events/s", paced_rate), sprintf("%.1f ms", p99["paced"]), verdict(p99["paced"] < 1000)
      printf "  %-44s %-36s %s\n", "keeps up: paced queue drained within 2 s", sprintf("%.1f s", median("paced")), verdict(median("paced") <= 2)
    }
    printf "MISSED_COUNT %d\n", missed
  }
' "$results" - <<<"$lag")
grep -v '^MISSED_COUNT ' <<<"$lag_summary"
missed=$((${missed:-0} + $(awk '/^MISSED_COUNT / { print $2 }' <<<"$lag_summary")))

say "stopping the server (SIGTERM)"
stop_server

# --- the forwarder ----------------------------------------------------------------------------
# 50,000 routed conversions drained to a local fake platform (BENCH_DRAIN=0 skips it).
if [[ ${BENCH_DRAIN:-1} != 0 ]]; then
  say "forwarder drain: ${DRAIN_CONVERSIONS:-50000} conversions to a local fake platform"
  DATABASE_URL=$admin DRAIN_CONVERSIONS=${DRAIN_CONVERSIONS:-50000} \
    cargo test --release --locked -q -p forwarder --test worker_drain -- --ignored --nocapture 2>&1 |
    grep -E '^forwarder drain' || say "the forwarder drain run printed nothing"
  printf 'target: forwarder >= 10,000 conversions/s\n'
fi

if [[ $strict == 1 && ${missed:-0} -gt 0 ]]; then
  die "$missed target(s) missed"
fi
