#!/usr/bin/env bash
# scripts/with-localpg.sh COMMAND [ARGS]: run COMMAND with DATABASE_URL set, and leave the machine
# as it was found.
#
# - DATABASE_URL already set (a server of the caller's, or an outer run of this script): COMMAND
#   runs as it is; the local cluster is not touched.
# - Otherwise the project's local PostgreSQL (scripts/localpg.sh) is started if needed and
#   DATABASE_URL names it. When COMMAND ends, however it ends (failure, Ctrl-C, SIGTERM), the
#   cluster is stopped again if this run started it; one that was running before is left running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ -n ${DATABASE_URL:-} ]]; then
  exec "$@"
fi

localpg="$ROOT/scripts/localpg.sh"
was_running=0
if "$localpg" status >/dev/null 2>&1; then was_running=1; fi

finish() {
  local status=$?
  trap - EXIT INT TERM
  if ((!was_running)); then
    "$localpg" stop || true
    # The promise of `make test`: a machine as clean as it was. Fail loudly if it is not.
    if "$localpg" status >/dev/null 2>&1; then
      printf 'with-localpg: error: the local PostgreSQL this run started is still running\n' >&2
      if ((status == 0)); then status=1; fi
    fi
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DATABASE_URL=$("$localpg" url)
export DATABASE_URL
"$@"
