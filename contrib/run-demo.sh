#!/usr/bin/env bash
# shellcheck disable=SC2317  # (functions run through wait_for and the traps)
# `make run`: start Maestro and one Core on 127.0.0.1, pair the Core with Maestro, and
# print what a person needs: the URL to open, the default-admin password, the Core's
# admin token, the CLI sign-in command and how to stop. Ctrl-C stops both cleanly.
#
#   contrib/run-demo.sh BIN_DIR        (make run passes build/bin)
#
# Environment:
#   CONDRIX_DEMO_DIR      data directory (default ./.condrix-demo): maestro/ and core/
#                         under it (0700), the servers' logs, and demo-secrets.txt (0600)
#   CONDRIX_MAESTRO_PORT  Maestro's port (default 9200)
#   CONDRIX_CORE_PORT     the Core's port (default 9100)
#   CONDRIX_DEMO_WAIT     seconds to wait for each step (default 20)
#
# A second run reuses the directory: same users, same Core, same tokens; nothing is
# paired twice. Start afresh by deleting the directory.
set -u

die() {
    printf 'run-demo: %s\n' "$*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 BIN_DIR"
BIN=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
for b in condrix-maestro condrix-core condrix; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is not built (run make)"
done

DEMO_DIR=${CONDRIX_DEMO_DIR:-$(pwd)/.condrix-demo}
MPORT=${CONDRIX_MAESTRO_PORT:-9200}
CPORT=${CONDRIX_CORE_PORT:-9100}
WAIT=${CONDRIX_DEMO_WAIT:-20}
case "$MPORT$CPORT$WAIT" in *[!0-9]*) die "ports and CONDRIX_DEMO_WAIT must be numbers" ;; esac

umask 077
mkdir -p "$DEMO_DIR/maestro" "$DEMO_DIR/core" || die "cannot create $DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
chmod 700 "$DEMO_DIR" "$DEMO_DIR/maestro" "$DEMO_DIR/core"
MDIR=$DEMO_DIR/maestro
CDIR=$DEMO_DIR/core
SECRETS=$DEMO_DIR/demo-secrets.txt
MLOG=$DEMO_DIR/maestro.log
CLOG=$DEMO_DIR/core.log
MURL_WS=ws://127.0.0.1:$MPORT/
MURL_HTTP=http://127.0.0.1:$MPORT/
CURL_WS=ws://127.0.0.1:$CPORT/

# The servers' own environment: nothing CONDRIX_ leaks in from the caller's shell but
# the log level, so that e.g. a CONDRIX_HOME or CONDRIX_MAESTRO_TOKEN set for something
# else cannot point the demo elsewhere.
CLEAN_ENV=()
for name in $(compgen -e); do
    case "$name" in CONDRIX_LOG_LEVEL) ;; CONDRIX_*) CLEAN_ENV+=(-u "$name") ;; esac
done

# demo-secrets.txt: NAME=value lines, read back as data (never sourced).
secret() {
    [ -f "$SECRETS" ] && sed -n "s/^$1=//p" "$SECRETS" | head -n 1
}
MAESTRO_PASSWORD=$(secret MAESTRO_PASSWORD)
CORE_TOKEN=$(secret CORE_TOKEN)

save_secrets() {
    local tmp=$SECRETS.tmp
    {
        echo "# condrix demo: the first-start secrets, kept so that later runs can show them."
        echo "# Anyone who can read this file can sign in. Delete the demo directory to forget."
        echo "MAESTRO_PASSWORD=$MAESTRO_PASSWORD"
        echo "CORE_TOKEN=$CORE_TOKEN"
    } > "$tmp" && chmod 600 "$tmp" && mv -f "$tmp" "$SECRETS"
}

MPID=
CPID=
STOPPING=

# Stop both (SIGTERM), wait for both, bounded: after 15 s whoever is left is killed.
# (bash reaps its children as they exit, so kill -0 fails once one is gone.)
stop_all() {
    local p rc=0 i=0 left
    for p in $CPID $MPID; do
        kill -TERM "$p" 2>/dev/null
    done
    while :; do
        left=
        for p in $CPID $MPID; do
            kill -0 "$p" 2>/dev/null && left="$left $p"
        done
        [ -n "$left" ] || break
        i=$((i + 1))
        if [ $i -gt 150 ]; then
            printf 'run-demo: still running after 15 s, killing:%s\n' "$left" >&2
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null
            break
        fi
        sleep 0.1
    done
    for p in $CPID $MPID; do
        wait "$p" 2>/dev/null || rc=$?
    done
    MPID=
    CPID=
    return $rc
}

on_signal() {
    [ -n "$STOPPING" ] && return
    STOPPING=1
    trap '' INT TERM HUP
    echo
    echo "Stopping Condrix (Maestro and the Core)..."
    if stop_all; then
        echo "Stopped. Run it again to continue with the same data ($DEMO_DIR)."
        exit 0
    fi
    echo "run-demo: a server did not stop cleanly; see $MLOG and $CLOG" >&2
    exit 1
}

fail() {
    printf 'run-demo: %s\n' "$1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        printf -- '--- last lines of %s ---\n' "$2" >&2
        tail -n 20 "$2" >&2
    fi
    STOPPING=1
    stop_all
    exit 1
}

trap on_signal INT TERM HUP

# The servers run in their own session: Ctrl-C in the terminal reaches only this script,
# which then stops each server with exactly one SIGTERM. (A second signal while a server
# is already shutting down would end it at once, without its clean stop.)
SETSID=()
command -v setsid >/dev/null 2>&1 && SETSID=(setsid)

# Poll "$@" every 0.1 s until it succeeds, at most $WAIT seconds; stop early if the
# process $PID_TO_WATCH is gone.
wait_for() {
    local pid=$1 i=0
    shift
    while ! "$@"; do
        kill -0 "$pid" 2>/dev/null || return 2
        i=$((i + 1))
        [ $i -le $((WAIT * 10)) ] || return 1
        sleep 0.1
    done
}

healthy() {
    curl -fsS --max-time 2 "$1" 2>/dev/null | grep -qx ok
}

rotate_log() {
    [ -f "$1" ] && mv -f "$1" "$1.prev"
    : > "$1"
}

# Something already listening (another demo still running?) would answer our health
# checks in place of the servers we start: refuse rather than be fooled.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in "$MPORT" "$CPORT"; do
    if listening "$port"; then
        die "127.0.0.1:$port is already in use (another demo still running?); stop it, or set CONDRIX_MAESTRO_PORT / CONDRIX_CORE_PORT"
    fi
done
[ "$MPORT" != "$CPORT" ] || die "CONDRIX_MAESTRO_PORT and CONDRIX_CORE_PORT must differ"

# ---- Maestro -------------------------------------------------------------------------

MAESTRO_FIRST=1
[ -f "$MDIR/maestro.db" ] && MAESTRO_FIRST=
MOUT=$DEMO_DIR/.maestro.stdout
rm -f "$MOUT"
rotate_log "$MLOG"
env "${CLEAN_ENV[@]}" "${SETSID[@]}" "$BIN/condrix-maestro" --host 127.0.0.1 --port "$MPORT" \
    --data-dir "$MDIR" > "$MOUT" 2>> "$MLOG" < /dev/null &
MPID=$!

wait_for "$MPID" healthy "http://127.0.0.1:$MPORT/healthz" ||
    fail "condrix-maestro did not start on 127.0.0.1:$MPORT (port in use? set CONDRIX_MAESTRO_PORT)" "$MLOG"

first_password() {
    awk '/created the user "default-admin"/ { n = NR } n && NR == n + 2 { print; exit }' "$MOUT"
}
if [ -n "$MAESTRO_FIRST" ]; then
    MAESTRO_PASSWORD=
    have_password() { [ -n "$(first_password)" ]; }
    if wait_for "$MPID" have_password; then
        MAESTRO_PASSWORD=$(first_password)
        save_secrets || fail "cannot write $SECRETS"
    fi
fi
rm -f "$MOUT"  # the password is in $SECRETS now; no second copy

# ---- the Core ------------------------------------------------------------------------

# Paired already? Maestro has a Core that finished pairing (it acknowledged the permanent
# token it stored in its core.db), and that core.db is still there: then the Core
# presents its stored token and needs no code. Otherwise: a fresh one-time code.
PAIRING_CODE=
if [ -f "$CDIR/core.db" ] &&
    env "${CLEAN_ENV[@]}" "$BIN/condrix-maestro" --data-dir "$MDIR" cores list --json 2>/dev/null |
    grep -q '"pairedAt":"'; then
    PAIRED_BEFORE=1
else
    PAIRED_BEFORE=
    PAIR_JSON=$(env "${CLEAN_ENV[@]}" CONDRIX_MAESTRO_PUBLIC_URL="$MURL_WS" \
        "$BIN/condrix-maestro" --data-dir "$MDIR" pair --json 2>> "$MLOG") ||
        fail "condrix-maestro pair failed" "$MLOG"
    PAIRING_CODE=$(printf '%s' "$PAIR_JSON" | sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
    unset PAIR_JSON
    [ -n "$PAIRING_CODE" ] || fail "condrix-maestro pair printed no code"
fi

CORE_FIRST=1
[ -f "$CDIR/core.db" ] && CORE_FIRST=
COUT=$DEMO_DIR/.core.stdout
rm -f "$COUT"
rotate_log "$CLOG"
if [ -n "$PAIRING_CODE" ]; then
    env "${CLEAN_ENV[@]}" CONDRIX_MAESTRO_URL="$MURL_WS" CONDRIX_MAESTRO_TOKEN="$PAIRING_CODE" \
        "${SETSID[@]}" "$BIN/condrix-core" --host 127.0.0.1 --port "$CPORT" --data-dir "$CDIR" \
        > "$COUT" 2>> "$CLOG" < /dev/null &
else
    env "${CLEAN_ENV[@]}" CONDRIX_MAESTRO_URL="$MURL_WS" \
        "${SETSID[@]}" "$BIN/condrix-core" --host 127.0.0.1 --port "$CPORT" --data-dir "$CDIR" \
        > "$COUT" 2>> "$CLOG" < /dev/null &
fi
CPID=$!
PAIRING_CODE=

wait_for "$CPID" healthy "http://127.0.0.1:$CPORT/healthz" ||
    fail "condrix-core did not start on 127.0.0.1:$CPORT (port in use? set CONDRIX_CORE_PORT)" "$CLOG"

first_token() { grep -E -m1 '^[0-9a-f]{64}$' "$COUT"; }
if [ -n "$CORE_FIRST" ]; then
    CORE_TOKEN=
    have_token() { [ -n "$(first_token)" ]; }
    if wait_for "$CPID" have_token; then
        CORE_TOKEN=$(first_token)
        save_secrets || fail "cannot write $SECRETS"
    fi
fi
rm -f "$COUT"

# Connected? The Core logs each time Maestro accepted it; a refused credential is logged
# too (and then retried only every 5 minutes, so there is no point waiting).
CONNECTED=
link_state() {
    grep -q 'maestro: connected to' "$CLOG" && { CONNECTED=1; return 0; }
    grep -q 'maestro: refused this Core' "$CLOG" && return 0
    return 1
}
wait_for "$CPID" link_state
if [ -z "$CONNECTED" ] && [ -n "$CORE_TOKEN" ] &&
    CONDRIX_CORE_TOKEN=$CORE_TOKEN "$BIN/condrix" core info --url "$CURL_WS" --json 2>/dev/null |
    grep -Eq '"connected": *true'; then
    CONNECTED=1  # (the log line may be filtered out by CONDRIX_LOG_LEVEL)
fi
kill -0 "$MPID" 2>/dev/null || fail "condrix-maestro stopped" "$MLOG"
kill -0 "$CPID" 2>/dev/null || fail "condrix-core stopped" "$CLOG"

# ---- what a person needs -------------------------------------------------------------

if [ -n "$CONNECTED" ]; then
    if [ -n "$PAIRED_BEFORE" ]; then
        LINK="connected to Maestro (paired on an earlier run: no new pairing code)"
    else
        LINK="paired with Maestro just now (one-time code, used up) and connected"
    fi
else
    LINK="NOT connected to Maestro yet: see $CLOG"
fi
[ -n "$MAESTRO_PASSWORD" ] ||
    MAESTRO_PASSWORD="(not known: $BIN/condrix-maestro --data-dir $MDIR user passwd default-admin)"
[ -n "$CORE_TOKEN" ] ||
    CORE_TOKEN="(not known: $BIN/condrix-core --data-dir $CDIR auth rotate default-admin)"
if [ -n "$MAESTRO_FIRST" ]; then
    KEPT="First start: these secrets were printed once by the servers; the demo keeps a copy in
  $SECRETS (mode 0600) and shows them again on the next run."
else
    KEPT="Same data as before (secrets shown again from $SECRETS, mode 0600)."
fi

cat <<MSG

  Condrix is running: Maestro and one Core, both on 127.0.0.1.

    Open:            $MURL_HTTP
    Username:        default-admin
    Password:        $MAESTRO_PASSWORD

    Core:            $CURL_WS
                     $LINK
    Core token:      $CORE_TOKEN
                     (default-admin token, for clients that talk to the Core directly)

  $KEPT

  Sign in with the CLI:
    $BIN/condrix login $MURL_WS --username default-admin
    $BIN/condrix cores
  Ask the Core directly:
    CONDRIX_CORE_TOKEN=<core token> $BIN/condrix core info --url $CURL_WS

  Data:  $DEMO_DIR   Logs: $MLOG, $CLOG
  Stop:  Ctrl-C (or kill -TERM $$) stops both servers cleanly.

MSG

# Run until a signal (the trap stops both) or until one server dies on its own.
wait -n "$MPID" "$CPID"
rc=$?
STOPPING=1
trap '' INT TERM HUP
if kill -0 "$MPID" 2>/dev/null; then who=condrix-core; log=$CLOG; else who=condrix-maestro; log=$MLOG; fi
printf 'run-demo: %s exited on its own (status %d); stopping the other one.\n' "$who" "$rc" >&2
tail -n 20 "$log" >&2
stop_all
exit 1
