#!/usr/bin/env bash
# make bench: measures the Core against a reference peer (peer.js: Node.js on the npm ws
# package, the stack of the original Condrix) with the same load generator, and prints
# each figure with the ratio ours/peer next to the issue's targets. It builds nothing
# (make does), reports rather than gates (exit 0 when a target is missed, MISSED says
# so), uses only 127.0.0.0/8, and kills every process it started.
#
# usage: test/bench/run.sh BIN_DIR          (BIN_DIR holds condrix-core and condrix-bench)
# knobs: BENCH_SECONDS (5)   measured window of each load phase
#        BENCH_IDLE_CONNS (10000), BENCH_MAX_CONNS (19900)   idle phases
#        BENCH_CORE_LOG_LEVEL (info, the Core's default: one log line per session)
#        BENCH_NO_PEER=1     measure the Core alone
#
# Phases, for each server in turn, with rate limits lifted:
#   handshake  16 workers looping connect, upgrade, core/auth, reply, close
#   requests   64 authenticated connections, core/health, 1 and then 8 in flight each
#   idle       a fresh server, warmed up, then 10,000 idle authenticated connections:
#              (VmRSS with them - VmRSS before) / 10,000
#   fd limit   as many idle connections as the descriptor limit allows (19,900 asked)
# Server CPU is utime + stime of the server process from /proc/PID/stat over the window.
set -uo pipefail

BIN_DIR=${1:?usage: run.sh BIN_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
CORE=$BIN_DIR/condrix-core
BENCH=$BIN_DIR/condrix-bench
SECS=${BENCH_SECONDS:-5}
IDLE_N=${BENCH_IDLE_CONNS:-10000}
MAX_N=${BENCH_MAX_CONNS:-19900}
LOG_LEVEL=${BENCH_CORE_LOG_LEVEL:-info}
PHASE_TIMEOUT=$((SECS * 2 + 30))

for f in "$CORE" "$BENCH"; do
    if [ ! -x "$f" ]; then
        echo "bench: $f is missing; run it through 'make bench'" >&2
        exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/condrix-bench.XXXXXX")
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every connection needs a descriptor, on both sides; take what the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# A 64-hex token of our own: CONDRIX_CORE_TOKEN pre-seeds it with every scope.
TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export CONDRIX_BENCH_TOKEN=$TOKEN

free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# GET /healthz answers 200 "ok" once the server is up; wait at most 15 s.
wait_ready() {
    local port=$1 pid=$2 reply
    for _ in $(seq 1 75); do
        kill -0 "$pid" 2>/dev/null || return 1
        reply=$(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port &&
            printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
            cat <&3" 2>/dev/null)
        case $reply in "HTTP/1.1 200"*ok*) return 0 ;; esac
        sleep 0.2
    done
    return 1
}

# start_core / start_peer set SRV_PID and SRV_PORT.
start_core() {
    local home
    home=$(mktemp -d "$WORK/core.XXXXXX")
    SRV_PORT=$(free_port)
    CONDRIX_HOME=$home CONDRIX_CORE_TOKEN=$TOKEN CONDRIX_LOG_LEVEL=$LOG_LEVEL \
        CONDRIX_RATE_CONN_MAX=0 CONDRIX_RATE_AUTH_MAX=0 CONDRIX_RATE_MSG_MAX=0 \
        "$CORE" --port "$SRV_PORT" --host 127.0.0.1 >"$home/stdout" 2>"$home/stderr" </dev/null &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_ready "$SRV_PORT" "$SRV_PID"; then
        echo "bench: condrix-core did not come up; its log:" >&2
        tail -5 "$home/stderr" >&2
        return 1
    fi
}

start_peer() {
    SRV_PORT=$(free_port)
    CONDRIX_CORE_TOKEN=$TOKEN bash -c 'ulimit -n "$(ulimit -Hn)"; exec node "$0" --port "$1"' \
        "$HERE/peer.js" "$SRV_PORT" >"$WORK/peer.log" 2>&1 </dev/null &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_ready "$SRV_PORT" "$SRV_PID"; then
        echo "bench: peer.js did not come up; its log:" >&2
        tail -5 "$WORK/peer.log" >&2
        return 1
    fi
}

stop_server() {
    local pid=$1
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 25); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# Run the load generator with a bounded time; print its result line (or a failure line).
bench() {
    local out
    out=$(timeout "$PHASE_TIMEOUT" "$BENCH" "$@" 2>"$WORK/bench.err" | grep '^mode=' | tail -1)
    if [ -z "$out" ]; then
        out="mode=$1 failed=1 error=\"$(head -c 200 "$WORK/bench.err" | tr '\n"' "  ")\""
    fi
    echo "$out"
}

# kv LINE KEY: the value of KEY in a key=value line, or empty.
kv() {
    local w
    for w in $1; do
        case $w in "$2="*) echo "${w#*=}"; return ;; esac
    done
}

# All phases against one server kind; results go to $WORK/<name>.<phase>.
measure() {
    local name=$1 start=$2
    echo "bench: $name: handshakes, requests (${SECS} s windows)" >&2
    "$start" || return 1
    local pid=$SRV_PID port=$SRV_PORT
    bench handshake --port "$port" --conns 16 --seconds "$SECS" --server-pid "$pid" \
        >"$WORK/$name.handshake"
    bench requests --port "$port" --conns 64 --pipeline 1 --seconds "$SECS" \
        --server-pid "$pid" >"$WORK/$name.req1"
    bench requests --port "$port" --conns 64 --pipeline 8 --seconds "$SECS" \
        --server-pid "$pid" >"$WORK/$name.req8"
    stop_server "$pid"

    echo "bench: $name: idle connections (fresh server)" >&2
    "$start" || return 1
    pid=$SRV_PID port=$SRV_PORT
    # Warm up (code paths, allocator, JIT), then let it settle before the baseline.
    bench handshake --port "$port" --conns 16 --seconds 1 --warmup 0 >/dev/null
    sleep 2
    bench idle --port "$port" --conns "$IDLE_N" --settle 2 --server-pid "$pid" \
        >"$WORK/$name.idle"
    bench idle --port "$port" --conns "$MAX_N" --settle 1 --server-pid "$pid" \
        >"$WORK/$name.max"
    stop_server "$pid"
}

have_peer=1
if [ "${BENCH_NO_PEER:-0}" = 1 ]; then
    have_peer=0
elif ! command -v node >/dev/null 2>&1; then
    echo "bench: node is not installed: measuring the Core alone" >&2
    have_peer=0
elif [ ! -f "$HERE/node_modules/ws/package.json" ]; then
    echo "bench: installing the peer's ws package (npm ci)" >&2
    if ! timeout 180 npm ci --prefix "$HERE" --no-audit --no-fund >"$WORK/npm.log" 2>&1; then
        echo "bench: npm ci failed: measuring the Core alone" >&2
        tail -3 "$WORK/npm.log" >&2
        have_peer=0
    fi
fi

measure core start_core || echo "bench: the Core phases did not complete" >&2
if [ "$have_peer" = 1 ]; then
    measure peer start_peer || echo "bench: the peer phases did not complete" >&2
fi

val() { # val NAME PHASE KEY
    local f=$WORK/$1.$2
    [ -f "$f" ] && kv "$(cat "$f")" "$3"
}

VERDICTS=0
MISSES=0
row() { # row LABEL OURS PEER TARGET_RATIO (empty: informational; "all": ours must equal target)
    local label=$1 ours=${2:-} peer=${3:-} target=${4:-} ratio="-" verdict="" tgt="-"
    if [ -n "$ours" ] && [ -n "$peer" ] && [ "$peer" != 0 ]; then
        ratio=$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", a / b }')
    fi
    if [ -n "$target" ]; then
        tgt="<= $target"
        VERDICTS=$((VERDICTS + 1))
        if [ "$ratio" = "-" ]; then
            verdict="n/a"
        elif awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r <= t) }'; then
            verdict="PASS"
        else
            verdict="MISSED"
            MISSES=$((MISSES + 1))
        fi
    fi
    printf '%-44s %12s %12s %10s %9s  %s\n' "$label" "${ours:--}" "${peer:--}" "$ratio" "$tgt" \
        "$verdict"
}

echo
echo "condrix bench: rate limits LIFTED on both servers for this run (Core:" \
    "CONDRIX_RATE_CONN_MAX=0 CONDRIX_RATE_AUTH_MAX=0 CONDRIX_RATE_MSG_MAX=0; the peer has none)."
echo "Core log level: $LOG_LEVEL. Peer: Node $(node --version 2>/dev/null || echo n/a), ws" \
    "$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$HERE/node_modules/ws/package.json" 2>/dev/null | head -1)." \
    "$(nproc) CPUs shared by the servers and the load generator;" \
    "server CPU = utime+stime from /proc/PID/stat."
echo
printf '%-44s %12s %12s %10s %9s  %s\n' "metric" "condrix" "peer" "ours/peer" "target" "result"
printf '%-44s %12s %12s %10s %9s  %s\n' "------" "-------" "----" "---------" "------" "------"
row "handshakes/s (16 workers)" "$(val core handshake rate)" "$(val peer handshake rate)"
row "handshake latency p50 (us)" "$(val core handshake p50_us)" "$(val peer handshake p50_us)"
row "handshake latency p99 (us)" "$(val core handshake p99_us)" "$(val peer handshake p99_us)"
row "server CPU per handshake (us)" "$(val core handshake server_cpu_us_per_op)" \
    "$(val peer handshake server_cpu_us_per_op)" 0.20
row "  of which user space (us)" "$(val core handshake server_user_us_per_op)" \
    "$(val peer handshake server_user_us_per_op)"
for k in 1 8; do
    row "requests/s (64 conns, pipeline $k)" "$(val core req$k rate)" "$(val peer req$k rate)"
    row "request round trip p50 (us, pipeline $k)" "$(val core req$k p50_us)" "$(val peer req$k p50_us)"
    row "request round trip p99 (us, pipeline $k)" "$(val core req$k p99_us)" "$(val peer req$k p99_us)"
    row "server CPU per request (us, pipeline $k)" "$(val core req$k server_cpu_us_per_op)" \
        "$(val peer req$k server_cpu_us_per_op)" 0.40
    row "  of which user space (us)" "$(val core req$k server_user_us_per_op)" \
        "$(val peer req$k server_user_us_per_op)"
done
row "RSS per idle authed conn at $IDLE_N (bytes)" "$(val core idle bytes_per_conn)" \
    "$(val peer idle bytes_per_conn)" 0.25
row "server RSS with $IDLE_N idle conns (kB)" "$(val core idle rss_kb)" "$(val peer idle rss_kb)"

# The descriptor ceiling: each side needs one fd per connection, both have the same limit.
for name in core peer; do
    [ "$name" = peer ] && [ "$have_peer" = 0 ] && continue
    held=$(val $name max held)
    verdict=MISSED
    [ -n "$held" ] && [ "$held" -ge "$MAX_N" ] && verdict=PASS
    [ "$name" = core ] && { VERDICTS=$((VERDICTS + 1)); [ "$verdict" = MISSED ] && MISSES=$((MISSES + 1)); }
    [ "$name" = peer ] && verdict="(info)"
    printf '%-44s %12s %12s %10s %9s  %s\n' "idle conns held, $MAX_N asked ($name)" \
        "${held:--}" "" "" ">= $MAX_N" "$verdict"
done

echo
echo "raw results:"
for f in "$WORK"/core.* "$WORK"/peer.*; do
    [ -f "$f" ] || continue
    case $f in *.log) continue ;; esac
    echo "  $(basename "$f"): $(cat "$f")"
done
echo
if [ "$MISSES" -gt 0 ]; then
    echo "bench: $MISSES of $VERDICTS targets MISSED (benchmarks report; they do not gate)."
else
    echo "bench: all $VERDICTS targets met."
fi
exit 0
