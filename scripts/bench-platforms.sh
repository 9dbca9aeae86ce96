#!/usr/bin/env bash
# `make bench` (BENCH_PLATFORMS=0 skips it): the forwarder's drain to each ad platform, in release.
# For each platform (Google through the Ads API and through Data Manager, Meta, Microsoft, LinkedIn,
# Reddit, TikTok, Snapchat, Pinterest, and the webhook), DRAIN_CONVERSIONS sales (20,000) are routed
# to one destination of that type whose API is a local fake answering success, and one forwarder
# drains them; prints conversions/s per platform against the target of 10,000/s, and (on the local
# cluster) the CPU one conversion costs the forwarder with its fake and PostgreSQL: on a machine
# busy with other work the wall-clock rate is what was left over, the CPU per conversion is what
# the drain costs. The write-ahead log per conversion is the server's (other databases' writes
# meanwhile count too). The webhook sends one conversion a request (its receiver's latency bounds
# it), so the target does not apply to it.
#
# Settings (environment):
#   DATABASE_URL          a PostgreSQL server to use instead of the project's local cluster
#   DRAIN_CONVERSIONS     conversions per platform (20000)
#   DRAIN_PLATFORMS       which, in order (all: google_ads google_data_manager meta microsoft_ads
#                         linkedin reddit tiktok snapchat pinterest webhook)
#   DRAIN_BATCH           conversions a forwarder step claims (1000)
#   DRAIN_PARALLEL_STEPS  steps at once (2)
#   BENCH_STRICT          1: exit 1 when a platform whose batch allows it is below 10,000/s
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

say() { printf 'bench-platforms: %s\n' "$*" >&2; }

if [[ -z ${DATABASE_URL:-} ]]; then
  DATABASE_URL=$(scripts/localpg.sh url)
  # The local cluster's postmaster: the CPU its backends spend is measured too.
  pidfile=$(ls .local/pg/*/postmaster.pid 2>/dev/null | head -n 1 || true)
  [[ -n $pidfile ]] && export DRAIN_POSTMASTER_PID=$(head -n 1 "$pidfile")
fi
export DATABASE_URL DRAIN_CONVERSIONS=${DRAIN_CONVERSIONS:-20000}

say "building the forwarder's drain measurement (release)"
cargo test --release --locked -p forwarder --test worker_drain --no-run 2>&1 | tail -n 1 >&2
say "draining ${DRAIN_CONVERSIONS} conversions to each platform's local fake"
output=$(cargo test --release --locked -q -p forwarder --test worker_drain -- --ignored \
  --nocapture --exact drain_to_each_platform 2>&1) || {
  printf '%s\n' "$output" >&2
  say "the drain run failed"
  exit 1
}
results=$(grep -E '^forwarder drain platform=' <<<"$output" || true)
[[ -n $results ]] || { printf '%s\n' "$output" >&2; say "the drain run printed nothing"; exit 1; }

printf '\nforwarder drain per platform (target: >= 10,000 conversions/s where the batch allows it)\n'
table=$(awk '
  {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if (v["platform"] == "webhook") verdict = "n/a (one conversion a request)"
    else if (v["per_second"] >= 10000) verdict = "met"
    else { verdict = "MISSED"; missed++ }
    cpu = ""
    if (v["process_cpu_us"] != "n/a" && v["postgres_cpu_us"] != "n/a") {
      total = v["process_cpu_us"] + v["postgres_cpu_us"]
      cpu = sprintf("   CPU/conversion: %4d us forwarder+fake, %4d us PostgreSQL = %6d conversions per CPU-second", v["process_cpu_us"], v["postgres_cpu_us"], total > 0 ? 1e6 / total : 0)
    }
    if (v["wal_bytes"] != "") cpu = cpu sprintf("   WAL/conversion: %5d bytes", v["wal_bytes"])
    printf "  %-20s %8d conversions in %7.2f s = %7d/s   %-32s%s\n", v["platform"], v["conversions"], v["seconds"], v["per_second"], verdict, cpu
  }
  END { printf "MISSED_COUNT %d\n", missed }' <<<"$results")
grep -v '^MISSED_COUNT ' <<<"$table"
missed=$(awk '/^MISSED_COUNT / { print $2 }' <<<"$table")
if [[ ${BENCH_STRICT:-0} == 1 && $missed -gt 0 ]]; then
  say "$missed platform(s) below 10,000 conversions/s"
  exit 1
fi
