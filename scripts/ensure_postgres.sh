#!/usr/bin/env bash
# A private PostgreSQL server for the tests, on 127.0.0.1 and a free port.
#
#     scripts/ensure_postgres.sh          # ensure it runs; prints its URL on stdout
#     scripts/ensure_postgres.sh stop     # stop it (make clean does)
#
# On a Debian machine without PostgreSQL it installs Debian's `postgresql`
# package first (apt-get, as root or through sudo). The cluster lives in
# .dunning/pg/data (gitignored; under /var/tmp when the checkout is somewhere
# the server's user cannot enter) and belongs to this checkout alone; the
# SQLAlchemy URL of its superuser, with a random password, is written to
# .dunning/pg/url, where tests/conftest.py reads it. Running it again while the
# server is up changes nothing. Everything but the URL goes to stderr.
#
# The cluster is tuned for tests, not for data worth keeping: fsync,
# synchronous_commit and full_page_writes are off. Never point it at anything
# but tests.
#
# Environment: DUNNING_PG_DIR (default <repo>/.dunning/pg) puts the cluster
# elsewhere; DUNNING_PG_USER (default postgres) is the account the server runs
# as when this runs as root (PostgreSQL refuses to run as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGROOT="${DUNNING_PG_DIR:-$ROOT/.dunning/pg}"
RUN_AS="${DUNNING_PG_USER:-postgres}"
DB_USER=dunning

say() { echo "ensure_postgres: $*" >&2; }
die() { say "$*"; exit 1; }

# The newest installed server's binaries: Debian keeps them out of PATH in
# /usr/lib/postgresql/<version>/bin.
find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    return 1
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 ||
        die "initdb and pg_ctl are missing and this is not a Debian machine: install PostgreSQL, or set DUNNING_TEST_POSTGRES_URL"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        # -n: never wait for a password (make test must not hang); without
        # sudo rights, install it yourself once.
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
        sudo=(sudo -n)
    fi
    mkdir -p "$PGROOT"
    local log="$PGROOT/apt.log" started=$SECONDS
    say "installing Debian's postgresql package (apt-get update && apt-get install postgresql; log in $log)"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
           >"$log" 2>&1 </dev/null; then
        tail -20 "$log" >&2
        die "installing postgresql failed (as root: apt-get update && apt-get install postgresql)"
    fi
    say "installed in $((SECONDS - started)) s"
}

# PostgreSQL will not run as root: as root, run its programs as $RUN_AS.
as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$RUN_AS" -- "$@"
        else
            su -s /bin/sh "$RUN_AS" -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    while :; do  # a random high port that nothing answers on
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

BINDIR="$(find_bindir || true)"
# The cluster's directory: $PGROOT/data, unless the server user could not
# reach it when the cluster was made (a checkout under a private home, say):
# then a directory of its own under /var/tmp, recorded in $PGROOT/datadir.
DATA="$PGROOT/data"
[ -f "$PGROOT/datadir" ] && DATA="$(cat "$PGROOT/datadir")"

# The server of $DATA is alive (a killed one can linger as a zombie where
# nothing reaps it, and pg_ctl would take that for a running server).
server_alive() {
    local pid
    pid="$(head -1 "$DATA/postmaster.pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

running() {
    [ -n "$BINDIR" ] && [ -f "$PGROOT/url" ] && [ -f "$PGROOT/port" ] && server_alive &&
        "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PGROOT/port")" -t 5
}

if [ "${1:-}" = stop ]; then
    if [ -n "$BINDIR" ] && server_alive; then
        as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    fi
    exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [stop]"

if running; then
    cat "$PGROOT/url"
    exit 0
fi
if [ -f "$DATA/postmaster.pid" ]; then
    if server_alive; then
        say "a server runs on $DATA but not where $PGROOT/port says: restarting it"
        as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        rm -f "$DATA/postmaster.pid"  # left by a server that died
    fi
fi

if [ -z "$BINDIR" ]; then
    install_postgres
    BINDIR="$(find_bindir)" || die "the postgresql package installed no initdb/pg_ctl"
fi

mkdir -p "$PGROOT"
if [ ! -f "$DATA/PG_VERSION" ]; then
    DATA="$PGROOT/data"
    rm -f "$PGROOT/datadir"
    if [ "$(id -u)" = 0 ]; then
        id "$RUN_AS" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$RUN_AS"
        # The server user owns the cluster's directory; root writes the URL.
        chown "$RUN_AS" "$PGROOT"
        if ! as_server_user test -w "$PGROOT"; then
            elsewhere="/var/tmp/dunning-pg-$(printf '%s' "$PGROOT" | cksum | cut -d' ' -f1)"
            say "$RUN_AS cannot reach $PGROOT (a parent directory is private): the cluster goes to $elsewhere"
            mkdir -p "$elsewhere" && chown "$RUN_AS" "$elsewhere" && chmod 700 "$elsewhere"
            DATA="$elsewhere/data"
            echo "$DATA" > "$PGROOT/datadir"
        fi
    fi
    say "creating a cluster in $DATA with $BINDIR/initdb"
    rm -rf "$DATA"
    umask 077
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$PGROOT/password"
    # initdb reads the password from a file the server user can read, then it goes.
    pwfile="$(dirname "$DATA")/.initdb-password"
    cp "$PGROOT/password" "$pwfile"
    [ "$(id -u)" = 0 ] && chown "$RUN_AS" "$pwfile"
    as_server_user "$BINDIR/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --no-locale --no-sync >"$PGROOT/initdb.log" 2>&1 ||
        { rm -f "$pwfile"; cat "$PGROOT/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$DATA/postgresql.conf" <<'EOF'

# scripts/ensure_postgres.sh: a throwaway cluster for the tests.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    umask 022
fi
LOG="$(dirname "$DATA")/log/postgres.log"
as_server_user mkdir -p "$(dirname "$LOG")"

for attempt in 1 2 3; do
    # The port it had last time if there was one (a URL that stays put), else a free one.
    if [ "$attempt" = 1 ] && [ -f "$PGROOT/port" ]; then PORT="$(cat "$PGROOT/port")"; else PORT="$(free_port)"; fi
    say "starting PostgreSQL ($("$BINDIR/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PORT"
    if as_server_user "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT" start >/dev/null; then
        echo "$PORT" > "$PGROOT/port"
        (umask 077; echo "postgresql+psycopg://$DB_USER:$(cat "$PGROOT/password")@127.0.0.1:$PORT/postgres" > "$PGROOT/url")
        say "ready; URL in $PGROOT/url"
        cat "$PGROOT/url"
        exit 0
    fi
    say "start attempt $attempt failed (port taken?); the log's end:"
    tail -5 "$LOG" >&2 || true
done
die "PostgreSQL did not start; see $LOG"
