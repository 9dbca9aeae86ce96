#!/usr/bin/env bash
#
# localpg.sh - a project-local PostgreSQL cluster for development and tests.
#
#   scripts/localpg.sh url           make sure the cluster exists and runs, then print its
#                                    superuser URL (one line on stdout, nothing else)
#   scripts/localpg.sh stop          stop it if it runs
#   scripts/localpg.sh reset         stop it and delete its data; the next `url` starts afresh
#   scripts/localpg.sh status        say whether it runs and where (exit 0 running, 3 not)
#   scripts/localpg.sh psql [ARGS]   run psql against it as the superuser (given a full
#                                    connection string via -d, psql just uses that one)
#
# Files (the state folder is <repo>/.local/pg; when the checkout cannot hold it, for instance
# because the `postgres` user cannot enter a clone under /root, it is
# ${TMPDIR:-/tmp}/convrelay-pg-<hash of the checkout path> instead):
#   <state>/<major>/        data folder (initdb), owned by `postgres` when run as root
#   <state>/port            TCP port remembered for this checkout (54329 and up)
#   <state>/run/            unix socket folder
#   <state>/server.log      server log
#   <state>/lock            flock(1) lock: one creation/start/stop/reset at a time
#   <repo>/.local/pg-password   generated superuser password, mode 600
#                               (<state>/password when .local is not writable)
#
# The server listens on 127.0.0.1 only and requires the password (scram-sha-256) for
# every connection, over TCP and over the socket. Progress and errors go to stderr.

set -euo pipefail

readonly SUPERUSER=convrelay
readonly FIRST_PORT=54329
readonly PORT_TRIES=500
readonly LOCAL_CONF=convrelay-local.conf

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(dirname -- "$SCRIPT_DIR")
readonly SCRIPT_DIR REPO_ROOT

# fd 3 is the caller's stdout, kept for the one line `url` prints (and for status/psql);
# everything else the script or its helpers write goes to stderr.
exec 3>&1 1>&2

IS_ROOT=0
if [[ $(id -u) -eq 0 ]]; then IS_ROOT=1; fi
if ((IS_ROOT)); then PG_USER=postgres; else PG_USER=$(id -un); fi

BINDIR='' PG_MAJOR='' PSQL='' PG_ISREADY=''
LOCATION='' STATE_DIR='' DATA_DIR='' PW_FILE='' PORT_FILE='' LOG_FILE='' LOCK_FILE='' SOCK_DIR=''
PW='' PORT=''

CLEANUP=()
cleanup() {
    local f
    for f in ${CLEANUP[@]+"${CLEANUP[@]}"}; do rm -rf -- "$f"; done
}
trap cleanup EXIT

say() { printf 'localpg: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    cat <<'EOF'
usage: scripts/localpg.sh COMMAND
  url           ensure the project-local PostgreSQL cluster runs; print its superuser URL
  stop          stop it if it runs
  reset         stop it and delete its data folder
  status        say whether it runs and where (exit status 3 when it does not run)
  psql [ARGS]   run psql against it as the superuser
EOF
}

# ---------------------------------------------------------------------------------------------
# Small helpers

owner_of() { stat -c %U -- "$1" 2>/dev/null || stat -f %Su -- "$1"; }

file_size() {
    local n
    n=$(wc -c <"$1" 2>/dev/null) || n=0
    printf '%s\n' "$((n))"
}

checkout_id() {
    local sum
    if command -v sha256sum >/dev/null 2>&1; then
        sum=$(printf '%s' "$REPO_ROOT" | sha256sum)
    else
        sum=$(printf '%s' "$REPO_ROOT" | shasum -a 256)
    fi
    printf '%s\n' "${sum:0:12}"
}

# Close every inherited descriptor above 2 (the caller's stdout on fd 3, the lock on fd 9,
# pipes of whoever started us): a postmaster that inherited them would keep the lock held
# and keep `$(scripts/localpg.sh url)` waiting for end of file forever.
close_extra_fds() {
    local fd
    if [[ -d /proc/$BASHPID/fd ]]; then
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
                { exec {fd}>&-; } 2>/dev/null || true
            fi
        done
    else
        exec 3>&- 9>&-
    fi
}

# Run a command as the user that owns the cluster (`postgres` when we are root: initdb and
# the server refuse to run as root). Runs from / so an unreachable working folder is no issue.
as_pg() {
    (
        close_extra_fds
        cd /
        if ((!IS_ROOT)); then
            exec "$@"
        elif command -v runuser >/dev/null 2>&1; then
            exec runuser -u "$PG_USER" -- "$@"
        else
            exec su -s /bin/bash -c "exec $(printf '%q ' "$@")" "$PG_USER"
        fi
    )
}

# True when the cluster's user can enter every existing folder from / down to $1.
pg_can_reach() {
    ((IS_ROOT)) || return 0
    local d=$1
    local dirs=()
    while [[ -n $d && $d != / ]]; do
        if [[ -d $d ]]; then dirs+=("$d"); fi
        d=${d%/*}
    done
    # shellcheck disable=SC2016 # expanded by the inner shell
    as_pg /bin/sh -c 'for d in / "$@"; do test -x "$d" || exit 1; done' sh ${dirs[@]+"${dirs[@]}"} 2>/dev/null
}

gen_password() {
    local pw
    pw=$(
        set +o pipefail
        LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32
    )
    [[ ${#pw} -eq 32 ]] || die "could not generate a password from /dev/urandom"
    printf '%s\n' "$pw"
}

conf_quote() { printf '%s' "${1//\'/\'\'}"; }

# ---------------------------------------------------------------------------------------------
# Server binaries

has_server() { [[ -n $1 && -x $1/initdb && -x $1/pg_ctl && -x $1/postgres ]]; }

find_server() {
    local d v best_v=0 ver
    BINDIR=''
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null) || d=''
        if has_server "$d"; then BINDIR=$d; fi
    fi
    if [[ -z $BINDIR ]]; then
        for d in /usr/lib/postgresql/*/bin; do
            v=${d#/usr/lib/postgresql/}
            v=${v%/bin}
            if [[ $v =~ ^[0-9]+$ ]] && ((v > best_v)) && has_server "$d"; then
                BINDIR=$d
                best_v=$v
            fi
        done
    fi
    if [[ -z $BINDIR ]]; then
        d=$(command -v initdb 2>/dev/null) || d=''
        d=${d%/*}
        if has_server "$d"; then BINDIR=$d; fi
    fi
    [[ -n $BINDIR ]] || return 1

    ver=$("$BINDIR/postgres" --version) || die "$BINDIR/postgres --version failed"
    ver=${ver#*) } # "postgres (PostgreSQL) 15.18 (Debian ...)" -> "15.18 (Debian ...)"
    PG_MAJOR=${ver%%[!0-9]*}
    [[ $PG_MAJOR =~ ^[0-9]+$ ]] || die "cannot read the PostgreSQL version from '$ver'"
    ((PG_MAJOR >= 10)) || die "PostgreSQL $PG_MAJOR in $BINDIR is too old (10 or newer needed)"

    if [[ -x $BINDIR/psql ]]; then PSQL=$BINDIR/psql; else PSQL=$(command -v psql) || PSQL=''; fi
    if [[ -x $BINDIR/pg_isready ]]; then
        PG_ISREADY=$BINDIR/pg_isready
    else
        PG_ISREADY=$(command -v pg_isready) || PG_ISREADY=''
    fi
    [[ -n $PSQL && -n $PG_ISREADY ]] || die "psql or pg_isready missing next to $BINDIR (install the PostgreSQL client too)"
}

explain_install() {
    cat >&2 <<'EOF'
localpg: error: the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found.
Install them, then run this again:
  Debian/Ubuntu:  sudo apt-get install postgresql
  Fedora/RHEL:    sudo dnf install postgresql-server postgresql
  Arch:           sudo pacman -S postgresql
  Alpine:         sudo apk add postgresql
  macOS:          brew install postgresql@16
If they live somewhere unusual, put that bin folder (with initdb and pg_ctl) on PATH,
or set DATABASE_URL to a server of your own.
EOF
    exit 1
}

install_server() {
    local lockf=/run/lock/convrelay-pg-install.lock log
    [[ -d /run/lock && -w /run/lock ]] || lockf=/tmp/convrelay-pg-install.lock
    exec 8>>"$lockf"
    if command -v flock >/dev/null 2>&1; then
        flock -w 1200 8 || die "timed out waiting for another PostgreSQL installation ($lockf)"
    fi
    if ! find_server; then
        say "PostgreSQL server binaries not found; installing the 'postgresql' package with apt-get"
        log=$(mktemp)
        CLEANUP+=("$log")
        export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none
        if ! apt-get -q update </dev/null >"$log" 2>&1; then
            say "apt-get update failed; trying the installation anyway"
        fi
        if ! apt-get -q -y -o DPkg::Lock::Timeout=600 \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            install postgresql </dev/null >>"$log" 2>&1; then
            tail -n 25 "$log" >&2
            die "apt-get install postgresql failed"
        fi
        find_server || die "the 'postgresql' package is installed but initdb/pg_ctl are still not found"
        say "installed PostgreSQL $PG_MAJOR ($BINDIR)"
    fi
    exec 8>&-
}

need_server() {
    if ! find_server; then
        if ((IS_ROOT)) && command -v apt-get >/dev/null 2>&1; then
            install_server
        else
            explain_install
        fi
    fi
    if ((IS_ROOT)) && ! id -u "$PG_USER" >/dev/null 2>&1; then
        die "running as root, but there is no '$PG_USER' system user to own the cluster (initdb refuses root); create it (useradd --system --user-group --create-home --home-dir /var/lib/postgresql $PG_USER) or run as a regular user"
    fi
}

# ---------------------------------------------------------------------------------------------
# Where the cluster lives

repo_dot_writable() {
    local dot=$REPO_ROOT/.local
    if [[ -e $dot ]]; then [[ -d $dot && -w $dot ]]; else [[ -w $REPO_ROOT ]]; fi
}

repo_state_usable() {
    local dot=$REPO_ROOT/.local
    if [[ -e $dot/pg ]]; then
        [[ -d $dot/pg && -w $dot/pg ]] || return 1
    else
        repo_dot_writable || return 1
    fi
    pg_can_reach "$dot/pg"
}

tmp_base() {
    local base=${TMPDIR:-/tmp}
    base=${base%/}
    if [[ $base != /* ]]; then base=/tmp; fi
    if [[ $base != /tmp ]] && ! { [[ -d $base && -w $base ]] && pg_can_reach "$base"; }; then
        base=/tmp
    fi
    printf '%s\n' "$base"
}

resolve_layout() {
    if repo_state_usable; then
        LOCATION=checkout
        STATE_DIR=$REPO_ROOT/.local/pg
        PW_FILE=$REPO_ROOT/.local/pg-password
    else
        LOCATION=temp
        STATE_DIR=$(tmp_base)/convrelay-pg-$(checkout_id)
        if repo_dot_writable; then
            PW_FILE=$REPO_ROOT/.local/pg-password
        else
            PW_FILE=$STATE_DIR/password
        fi
    fi
    DATA_DIR=$STATE_DIR/${PG_MAJOR:-unknown}
    PORT_FILE=$STATE_DIR/port
    LOG_FILE=$STATE_DIR/server.log
    LOCK_FILE=$STATE_DIR/lock
    SOCK_DIR=$STATE_DIR/run
    # A unix socket path must fit in ~107 bytes ("<dir>/.s.PGSQL.<port>").
    if ((${#SOCK_DIR} > 88)); then SOCK_DIR=/tmp/convrelay-pg-$(checkout_id).run; fi
}

# <repo>/.local, enterable by the server's user (the folder is git-ignored).
make_dot_local() {
    local dot=$REPO_ROOT/.local
    [[ -d $dot ]] || mkdir -m 755 "$dot" 2>/dev/null || [[ -d $dot ]] || die "cannot create $dot"
}

ensure_state_dir() {
    if [[ $LOCATION == checkout ]]; then
        make_dot_local
        mkdir -p "$STATE_DIR"
    else
        mkdir -m 700 "$STATE_DIR" 2>/dev/null || true
        if [[ -L $STATE_DIR || ! -d $STATE_DIR || ! -O $STATE_DIR ]]; then
            die "$STATE_DIR exists but does not belong to $(id -un); remove it or point TMPDIR elsewhere"
        fi
    fi
    # As root the folder stays root's (so the files root writes here cannot be swapped for
    # symlinks by the server's user); postgres only needs to pass through it.
    if ((IS_ROOT)); then chmod 711 "$STATE_DIR"; else chmod 700 "$STATE_DIR"; fi
}

# A folder owned by the cluster's user, mode 700.
pg_owned_dir() {
    local d=$1 owner
    if mkdir -m 700 "$d" 2>/dev/null && ((IS_ROOT)); then chown "$PG_USER:" "$d"; fi
    [[ -d $d && ! -L $d ]] || die "$d is not a folder"
    owner=$(owner_of "$d")
    [[ $owner == "$PG_USER" ]] || die "$d belongs to $owner, not $PG_USER; remove it or run: scripts/localpg.sh reset"
}

take_lock() {
    if ! command -v flock >/dev/null 2>&1; then
        say "flock not found; going on without a lock"
        ensure_state_dir
        return 0
    fi
    while :; do
        ensure_state_dir
        exec 9>>"$LOCK_FILE"
        if ! flock -n 9; then
            say "waiting for another localpg.sh run in this checkout"
            flock -w 900 9 || die "timed out waiting for $LOCK_FILE"
        fi
        # A concurrent reset may have deleted the file we waited on; lock the current one.
        if [[ $LOCK_FILE -ef /dev/fd/9 ]]; then return 0; fi
        exec 9>&-
    done
}

release_lock() { exec 9>&-; }

# ---------------------------------------------------------------------------------------------
# Cluster state

# Print the pid of the postmaster serving data folder $1, if one is alive.
live_postmaster_pid() {
    local dir=$1 pid cwd want
    [[ -r $dir/postmaster.pid ]] || return 1
    read -r pid <"$dir/postmaster.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -d /proc/$pid ]]; then
        # A pid recycled after a crash or reboot is not ours: the postmaster's working
        # folder is its data folder.
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
        want=$(cd -- "$dir" && pwd -P) || return 1
        [[ $cwd == "$want" ]] || return 1
    fi
    printf '%s\n' "$pid"
}

pid_port() {
    local port
    port=$(sed -n 4p "$1/postmaster.pid" 2>/dev/null) || return 1
    [[ $port =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$port"
}

is_ready() { "$PG_ISREADY" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1; }

# Port of our cluster when it runs and accepts connections.
running_port() {
    local port
    live_postmaster_pid "$DATA_DIR" >/dev/null || return 1
    port=$(pid_port "$DATA_DIR") || return 1
    is_ready "$port" || return 1
    printf '%s\n' "$port"
}

wait_ready() {
    local port=$1 deadline=$((SECONDS + 30))
    until is_ready "$port"; do
        ((SECONDS < deadline)) || die "PostgreSQL on 127.0.0.1:$port did not accept connections within 30 s; see $LOG_FILE"
        sleep 0.5
    done
}

wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2)) state
    while kill -0 "$pid" 2>/dev/null; do
        state=''
        if [[ -r /proc/$pid/stat ]]; then read -r _ _ state _ <"/proc/$pid/stat" 2>/dev/null || true; fi
        [[ $state != Z ]] || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

initialised() { [[ -f $DATA_DIR/PG_VERSION ]]; }

remembered_port() {
    local p=''
    [[ -r $PORT_FILE ]] || return 1
    read -r p <"$PORT_FILE" || true
    [[ $p =~ ^[0-9]+$ ]] && ((p > 0 && p < 65536)) || return 1
    printf '%s\n' "$p"
}

port_in_use() {
    local p=$1
    if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
        return 0
    fi
    (exec 5<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

find_free_port() {
    local skip=${1:-} p
    for ((p = FIRST_PORT; p < FIRST_PORT + PORT_TRIES && p < 65536; p++)); do
        if [[ $p != "$skip" ]] && ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    die "no free TCP port between $FIRST_PORT and $((FIRST_PORT + PORT_TRIES - 1))"
}

load_password() {
    [[ -r $PW_FILE ]] || die "cannot read $PW_FILE"
    PW=$(<"$PW_FILE")
    [[ $PW =~ ^[A-Za-z0-9]{16,}$ ]] || die "$PW_FILE does not hold a valid password; run: scripts/localpg.sh reset"
}

write_password_file() {
    local tmp
    if [[ $PW_FILE == "$REPO_ROOT/.local/"* ]]; then make_dot_local; fi
    tmp=$(umask 077 && mktemp "$PW_FILE.XXXXXX")
    CLEANUP+=("$tmp")
    printf '%s\n' "$1" >"$tmp"
    chmod 600 "$tmp"
    mv -f -- "$tmp" "$PW_FILE"
}

# Address, port and socket folder, included from postgresql.conf and rewritten before every
# start (the port may have moved, the checkout may have been moved).
write_local_conf() {
    as_pg tee "$DATA_DIR/$LOCAL_CONF" >/dev/null <<EOF
# Written by scripts/localpg.sh before every start; changes here are overwritten.
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$(conf_quote "$SOCK_DIR")'
unix_socket_permissions = 0700
EOF
}

init_cluster() {
    local work=$STATE_DIR/.init-$PG_MAJOR pwtmp log=$STATE_DIR/initdb.log
    if [[ -e $DATA_DIR ]]; then
        if [[ -d $DATA_DIR && -z $(ls -A -- "$DATA_DIR") ]]; then
            rmdir -- "$DATA_DIR"
        else
            die "$DATA_DIR exists but holds no cluster; move it away or run: scripts/localpg.sh reset"
        fi
    fi
    say "creating a PostgreSQL $PG_MAJOR cluster in $DATA_DIR"
    # initdb into a side folder and rename it when complete, so an interrupted run never
    # leaves a half-made cluster behind.
    rm -rf -- "$work"
    pg_owned_dir "$work"
    CLEANUP+=("$work")
    pwtmp=$(umask 077 && mktemp "$STATE_DIR/.pwfile.XXXXXX")
    CLEANUP+=("$pwtmp")
    printf '%s\n' "$PW" >"$pwtmp"
    if ((IS_ROOT)); then chown "$PG_USER:" "$pwtmp"; fi
    if ! as_pg "$BINDIR/initdb" -D "$work" -U "$SUPERUSER" --auth=scram-sha-256 \
        --pwfile="$pwtmp" -E UTF8 --locale=C >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "initdb failed (full output in $log)"
    fi
    rm -f -- "$pwtmp"
    as_pg tee -a "$work/postgresql.conf" >/dev/null <<EOF

# Development and test settings (scripts/localpg.sh).
# fsync and synchronous_commit keep their durable defaults on purpose.
max_connections = 200
shared_buffers = 256MB
max_wal_size = 1GB
log_min_messages = warning
# Address, port and socket folder:
include = '$LOCAL_CONF'
EOF
    mv -- "$work" "$DATA_DIR"
}

start_cluster() {
    local port old attempt offset news stale_done=0
    port=$(remembered_port) || port=''
    if [[ -z $port ]] || port_in_use "$port"; then
        old=$port
        port=$(find_free_port)
        if [[ -n $old ]]; then say "port $old is taken by another program; moving this cluster to $port"; fi
    fi
    pg_owned_dir "$SOCK_DIR"
    if [[ ! -e $LOG_FILE ]]; then
        : >"$LOG_FILE"
        chmod 640 "$LOG_FILE"
        if ((IS_ROOT)); then chown "$PG_USER:" "$LOG_FILE"; fi
    fi
    for attempt in 1 2 3 4 5; do
        printf '%s\n' "$port" >"$PORT_FILE"
        write_local_conf "$port"
        offset=$(file_size "$LOG_FILE")
        say "starting PostgreSQL $PG_MAJOR on 127.0.0.1:$port (data: $DATA_DIR)"
        if as_pg "$BINDIR/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 start >/dev/null; then
            PORT=$port
            wait_ready "$PORT"
            return 0
        fi
        news=$(tail -c "+$((offset + 1))" -- "$LOG_FILE" 2>/dev/null) || news=''
        if [[ $news == *'lock file'*'already exists'* ]] && ((!stale_done)); then
            if live_postmaster_pid "$DATA_DIR" >/dev/null; then
                PORT=$(pid_port "$DATA_DIR") || die "cannot read the port from $DATA_DIR/postmaster.pid"
                wait_ready "$PORT"
                return 0
            fi
            say "removing lock files left behind by a crash or reboot"
            as_pg rm -f -- "$DATA_DIR/postmaster.pid" "$SOCK_DIR/.s.PGSQL.$port.lock" "$SOCK_DIR/.s.PGSQL.$port"
            stale_done=1
            continue
        fi
        if [[ $news == *'could not bind'* || $news == *'could not create any TCP/IP sockets'* ]]; then
            old=$port
            port=$(find_free_port "$old")
            say "port $old was taken meanwhile (attempt $attempt); trying $port"
            continue
        fi
        if [[ -n $news ]]; then printf '%s\n' "$news" | tail -n 20 >&2; fi
        die "PostgreSQL did not start; see $LOG_FILE"
    done
    die "PostgreSQL did not start after several attempts; see $LOG_FILE"
}

# Stop the postmaster of data folder $1 (fast shutdown, then immediate). Fails if none runs.
stop_cluster() {
    local dir=$1 pid
    pid=$(live_postmaster_pid "$dir") || return 1
    say "stopping PostgreSQL in $dir (pid $pid)"
    kill -INT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 60; then
        say "fast shutdown did not finish within 60 s; forcing an immediate shutdown"
        kill -QUIT "$pid" 2>/dev/null || true
        wait_gone "$pid" 15 || die "could not stop PostgreSQL (pid $pid)"
    fi
}

# Stop every cluster in the state folder (any major version). Fails if none ran.
stop_all() {
    local d stopped=1
    for d in "$STATE_DIR"/*/; do
        d=${d%/}
        [[ -f $d/PG_VERSION ]] || continue
        if stop_cluster "$d"; then stopped=0; fi
    done
    return "$stopped"
}

# The password file is gone but the cluster is not: give the superuser a new password in
# single-user mode (the server must be down for that).
recover_password() {
    local pw err
    say "$PW_FILE is missing; setting a new password for $SUPERUSER in the existing cluster"
    stop_cluster "$DATA_DIR" || true
    pw=$(gen_password)
    write_local_conf "$(remembered_port || printf '%s' "$FIRST_PORT")"
    err=$(mktemp)
    CLEANUP+=("$err")
    if ! printf "ALTER ROLE %s PASSWORD '%s';\n" "$SUPERUSER" "$pw" |
        as_pg "$BINDIR/postgres" --single -D "$DATA_DIR" postgres >/dev/null 2>"$err"; then
        cat "$err" >&2
        die "could not set a new password; run: scripts/localpg.sh reset"
    fi
    write_password_file "$pw"
}

check_login() {
    local out
    if ! out=$(PGPASSWORD=$PW PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -q -A -t -h 127.0.0.1 -p "$1" \
        -U "$SUPERUSER" -d postgres -c 'select 1' 2>&1 </dev/null); then
        say "$out"
        die "cannot log in to the cluster on 127.0.0.1:$1 with the password in $PW_FILE; if that file belongs to another cluster, run: scripts/localpg.sh reset"
    fi
}

# Make sure the cluster exists and accepts connections; sets PORT and PW.
ensure_running() {
    local owner
    # Fast path: running already.
    if [[ -r $PW_FILE ]] && PORT=$(running_port); then
        load_password
        return 0
    fi

    if [[ $LOCATION == temp ]]; then
        say "cannot keep the cluster inside the checkout (not writable, or the $PG_USER user cannot enter $REPO_ROOT); using $STATE_DIR"
    fi
    take_lock
    if [[ -e $DATA_DIR ]]; then
        owner=$(owner_of "$DATA_DIR")
        [[ $owner == "$PG_USER" ]] || die "$DATA_DIR belongs to $owner, not $PG_USER; run this as $owner, or run: scripts/localpg.sh reset"
    fi
    if initialised && [[ ! -e $PW_FILE ]]; then recover_password; fi

    if live_postmaster_pid "$DATA_DIR" >/dev/null; then
        # Started by someone else meanwhile (or by hand).
        PORT=$(pid_port "$DATA_DIR") || die "cannot read the port from $DATA_DIR/postmaster.pid"
        wait_ready "$PORT"
        load_password
    else
        if [[ ! -e $PW_FILE ]]; then write_password_file "$(gen_password)"; fi
        load_password
        if ! initialised; then init_cluster; fi
        start_cluster
    fi
    check_login "$PORT"
    if [[ $(remembered_port || true) != "$PORT" ]]; then printf '%s\n' "$PORT" >"$PORT_FILE"; fi
    release_lock
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_status() {
    local pid port running=3
    out() { printf '%s\n' "$*" >&3; }
    if [[ -n $BINDIR ]] && pid=$(live_postmaster_pid "$DATA_DIR"); then
        port=$(pid_port "$DATA_DIR") || port='?'
        running=0
        if is_ready "$port"; then
            out "running: PostgreSQL $PG_MAJOR, pid $pid, on 127.0.0.1:$port"
        else
            out "running: PostgreSQL $PG_MAJOR, pid $pid, on 127.0.0.1:$port (not accepting connections yet)"
        fi
        out "url:           postgres://$SUPERUSER:<password>@127.0.0.1:$port/postgres  (scripts/localpg.sh url)"
    elif [[ -z $BINDIR ]]; then
        out "not running: the PostgreSQL server binaries are not installed"
    elif initialised; then
        out "not running (PostgreSQL $PG_MAJOR cluster exists; 'scripts/localpg.sh url' starts it)"
    else
        out "not running (no cluster yet; 'scripts/localpg.sh url' creates one)"
    fi
    if [[ $LOCATION == temp ]]; then
        out "location:      temp folder (the checkout cannot hold the cluster)"
    else
        out "location:      checkout"
    fi
    out "data folder:   $DATA_DIR"
    out "port file:     $PORT_FILE ($(remembered_port || printf 'none'))"
    out "socket folder: $SOCK_DIR"
    out "log:           $LOG_FILE"
    out "password file: $PW_FILE"
    out "binaries:      ${BINDIR:-not found}"
    return "$running"
}

cmd_stop() {
    if [[ ! -d $STATE_DIR ]]; then
        say "not running (no cluster in $STATE_DIR)"
        return 0
    fi
    take_lock
    if ! stop_all; then say "not running"; fi
}

cmd_reset() {
    if [[ -d $STATE_DIR ]]; then
        take_lock
        stop_all || true
        say "deleting $STATE_DIR"
        rm -rf -- "$STATE_DIR"
    fi
    if [[ $SOCK_DIR != "$STATE_DIR"/* && -d $SOCK_DIR ]]; then rm -rf -- "$SOCK_DIR"; fi
    rm -f -- "$PW_FILE"
    say "reset done; the next 'scripts/localpg.sh url' creates a fresh cluster"
}

# True when the psql arguments carry their own connection string (URI or key=value).
names_other_server() {
    local a next=0 conn=''
    for a in "$@"; do
        if ((next)); then
            conn=$a
            break
        fi
        case $a in
        -d | --dbname) next=1 ;;
        --dbname=*) conn=${a#--dbname=} && break ;;
        -d*) conn=${a#-d} && break ;;
        postgres://* | postgresql://*) conn=$a && break ;;
        esac
    done
    [[ $conn == postgres://* || $conn == postgresql://* || $conn == *=* ]]
}

main() {
    local cmd=${1:-}
    if (($#)); then shift; fi
    case $cmd in
    url)
        need_server
        resolve_layout
        ensure_running
        printf 'postgres://%s:%s@127.0.0.1:%s/postgres\n' "$SUPERUSER" "$PW" "$PORT" >&3
        ;;
    psql)
        if names_other_server "$@"; then
            # A full connection string was given (e.g. an external DATABASE_URL): just run
            # psql with it and leave the local cluster alone.
            if find_server; then :; else PSQL=$(command -v psql) || explain_install; fi
            exec "$PSQL" "$@" 1>&3 3>&-
        fi
        need_server
        resolve_layout
        ensure_running
        export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=$SUPERUSER PGPASSWORD=$PW PGDATABASE=postgres
        exec "$PSQL" "$@" 1>&3 3>&-
        ;;
    stop | reset | status)
        find_server || true
        resolve_layout
        "cmd_$cmd"
        ;;
    help | -h | --help)
        usage >&3
        ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
