#!/usr/bin/env bash
# `make test` (after the unit and integration tests): the request bodies the platforms' strict
# fakes accepted, checked with each platform's official client library.
#
#   1. crates/platforms/tests/sdk_bodies.rs runs with CONVRELAY_RECORD_REQUESTS set: every
#      platform gets every shape of conversion (value and products, lead, consent denied, no click
#      id, test modes) and every request its strict fake accepted is written to a directory,
#      credentials blanked (tests/support); SDK_CHECK_ALL=1 records every platform test instead;
#   2. scripts/contract/sdk_check.py loads each body into the library's models with strict
#      validation (Pinterest's generated client, Google Ads' and Data Manager's messages, msads),
#      or rebuilds it with the library's own builder and compares it field by field (LinkedIn's
#      Rest.li client, bingads' SOAP types, facebook-business' server-side Event); TikTok's and
#      Snap's libraries model only their retired APIs, so their bodies get the reference's checks
#      by hand and TikTok's library is held against our retry codes;
#   3. then every check must refuse bodies made wrong on purpose.
#
# The libraries live in .local/sdk-venv and .local/sdk-venv-msads (msads ships a `bingads` of its
# own), pinned in scripts/contract/sdk-requirements.txt and sdk-msads-requirements.txt and kept
# between runs. No network is used but the package registry on the first run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

say() { printf 'sdk-check: %s\n' "$*" >&2; }
started=$SECONDS

# venv DIR REQUIREMENTS: DIR holds exactly REQUIREMENTS (re-made when they change).
venv() {
  local dir=$1 requirements=$2 stamp want
  stamp="$dir/.requirements.sha256"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ ! -x $dir/bin/python || ! -f $stamp || $(<"$stamp") != "$want" ]]; then
    say "installing $(basename "$requirements") into $dir"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      else
        say "python3 with venv is needed (Debian: apt-get install python3-venv)"
        exit 1
      fi
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
  fi
}
venv .local/sdk-venv scripts/contract/sdk-requirements.txt
venv .local/sdk-venv-msads scripts/contract/sdk-msads-requirements.txt

recorded=$(mktemp -d)
trap 'rm -rf "$recorded"' EXIT
tests=(--test sdk_bodies)
[[ ${SDK_CHECK_ALL:-0} != 0 ]] && tests=()
say "recording what the strict fakes accept (platform tests: ${tests[*]:-all})"
if cargo nextest --version >/dev/null 2>&1; then
  CONVRELAY_RECORD_REQUESTS=$recorded cargo nextest run --locked -p platforms "${tests[@]}" \
    --no-fail-fast --status-level fail --final-status-level fail >&2
else
  CONVRELAY_RECORD_REQUESTS=$recorded cargo test --locked -p platforms "${tests[@]}" \
    --no-fail-fast -q >&2
fi
say "$(find "$recorded" -name '*.json' | wc -l) requests recorded"

SDK_MSADS_PYTHON=$ROOT/.local/sdk-venv-msads/bin/python \
  .local/sdk-venv/bin/python scripts/contract/sdk_check.py "$recorded"
say "passed in $((SECONDS - started)) s"
