#!/usr/bin/env bash
# make bench: measures the Core against a reference peer (peer.js: Node.js on the npm ws
# package, the stack of the original Condrix) with the same load generator, and prints
# each figure with the ratio ours/peer next to the issue's targets. It builds nothing
# (make does), reports rather than gates (exit 0 when a target is missed, MISSED says
# so), uses only 127.0.0.0/8, and kills every process it started.
#
# usage: test/bench/run.sh BIN_DIR          (BIN_DIR holds condrix-core and condrix-bench,
#                                             condrix-bench-floor for the floor, and
#                                             condrix-maestro for the Maestro section)
# knobs: BENCH_SECONDS (5)   measured window of each load phase
#        BENCH_IDLE_CONNS (10000), BENCH_MAX_CONNS (19900)   idle phases
#        BENCH_CORE_LOG_LEVEL (info, the Core's default: one log line per session; Maestro too)
#        BENCH_NO_PEER=1     measure the Core alone
#        BENCH_NO_FLOOR=1    skip the floor
#        BENCH_NO_MAESTRO=1  skip the Maestro section
#        BENCH_RELAY_PIPELINES ("1 8")   pipelines of the direct/relay pairs
#
# Phases, for each server in turn, with rate limits lifted:
#   handshake  16 workers looping connect, upgrade, core/auth, reply, close
#   requests   64 authenticated connections, core/health, 1 and then 8 in flight each
#   idle       a fresh server, warmed up, then 10,000 idle authenticated connections:
#              (VmRSS with them - VmRSS before) / 10,000
#   fd limit   as many idle connections as the descriptor limit allows (19,900 asked)
# Server CPU is utime + stime of the server process from /proc/PID/stat over the window.
# The floor (floor.c: a bare epoll server with canned replies, only the system calls any
# WebSocket server makes for this traffic) gets handshake and requests, and its CPU rows
# show floor/peer: the lowest ratio any server could reach on this machine.
#
# Then Maestro (a fresh one, rate limits lifted), with a fresh Core paired to it:
#   direct     64 connections straight to the Core, core/health, K in flight each
#   relay      the same through Maestro (targetCoreId), the connections signed in with
#              maestro/auth on one session made beforehand: no password hashing in the window
#   logins     50 connections upgrade, then all send maestro/login at once: wall time
#              until all 50 are answered, and each one's latency
set -uo pipefail

BIN_DIR=${1:?usage: run.sh BIN_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
CORE=$BIN_DIR/condrix-core
BENCH=$BIN_DIR/condrix-bench
FLOOR=$BIN_DIR/condrix-bench-floor
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

# Right after a server was put in the background: track it, wait for its /healthz.
# track_started NAME LOG
track_started() {
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    if ! wait_ready "$SRV_PORT" "$SRV_PID"; then
        echo "bench: $1 did not come up; its log:" >&2
        tail -5 "$2" >&2
        return 1
    fi
}

# start_core / start_peer / start_floor set SRV_PID and SRV_PORT.
start_core() {
    local home
    home=$(mktemp -d "$WORK/core.XXXXXX")
    SRV_PORT=$(free_port)
    CONDRIX_HOME=$home CONDRIX_CORE_TOKEN=$TOKEN CONDRIX_LOG_LEVEL=$LOG_LEVEL \
        CONDRIX_RATE_CONN_MAX=0 CONDRIX_RATE_AUTH_MAX=0 CONDRIX_RATE_MSG_MAX=0 \
        "$CORE" --port "$SRV_PORT" --host 127.0.0.1 >"$home/stdout" 2>"$home/stderr" </dev/null &
    track_started condrix-core "$home/stderr"
}

start_peer() {
    SRV_PORT=$(free_port)
    CONDRIX_CORE_TOKEN=$TOKEN bash -c 'ulimit -n "$(ulimit -Hn)"; exec node "$0" --port "$1"' \
        "$HERE/peer.js" "$SRV_PORT" >"$WORK/peer.log" 2>&1 </dev/null &
    track_started peer.js "$WORK/peer.log"
}

start_floor() {
    SRV_PORT=$(free_port)
    "$FLOOR" --port "$SRV_PORT" --host 127.0.0.1 >"$WORK/floor.log" 2>&1 </dev/null &
    track_started condrix-bench-floor "$WORK/floor.log"
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

# The load phases against one server kind; results go to $WORK/<name>.<phase>.
measure_load() {
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
}

# All phases against one server kind.
measure() {
    local name=$1 start=$2 pid port
    measure_load "$name" "$start" || return 1
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

# ---- Maestro: relay against direct, concurrent logins ----

MAESTRO=$BIN_DIR/condrix-maestro
RELAY_KS=${BENCH_RELAY_PIPELINES:-1 8}
MX_SKIPPED=""

# Sets MX_HOME, MX_PORT, MX_PID and MX_PASSWORD (the first-start admin password).
start_maestro() {
    MX_HOME=$(mktemp -d "$WORK/maestro.XXXXXX")
    MX_PORT=$(free_port)
    CONDRIX_HOME=$MX_HOME CONDRIX_LOG_LEVEL=$LOG_LEVEL \
        CONDRIX_RATE_CONN_MAX=0 CONDRIX_RATE_AUTH_MAX=0 CONDRIX_RATE_MSG_MAX=0 \
        "$MAESTRO" --data-dir "$MX_HOME" --host 127.0.0.1 --port "$MX_PORT" \
        >"$MX_HOME/stdout" 2>"$MX_HOME/stderr" </dev/null &
    SRV_PORT=$MX_PORT
    track_started condrix-maestro "$MX_HOME/stderr" || return 1
    MX_PID=$SRV_PID
    # The password is the line after this one; it is flushed before the listener opens.
    MX_PASSWORD=""
    for _ in $(seq 1 25); do
        MX_PASSWORD=$(awk 'p { print; exit } /shown only this once/ { p = 1 }' "$MX_HOME/stdout")
        [ -n "$MX_PASSWORD" ] && return 0
        sleep 0.2
    done
    echo "bench: condrix-maestro printed no first-start password" >&2
    return 1
}

# Sign in once and poll cores.list until the Core is online (at most 15 s). Prints the
# Core's Maestro id; the session token goes to the file $2, for the relay connections.
maestro_core_id() {
    local port=$1 session_file=$2
    CONDRIX_BENCH_PASSWORD=$MX_PASSWORD timeout 30 /usr/bin/python3 - "$port" "$session_file" \
        2>"$WORK/mx.setup.err" <<'EOF'
import asyncio, json, os, sys, time
import websockets

async def call(ws, rid, action, payload):
    await ws.send(json.dumps({"id": rid, "type": "request", "namespace": "maestro",
                              "action": action, "payload": payload,
                              "timestamp": "2025-01-01T00:00:00.000Z"}))
    while True:  # core.online events may come first
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m.get("correlationId") == rid:
            if not m.get("success"):
                raise SystemExit("maestro/%s failed: %s" % (action, m.get("error")))
            return m["payload"]

async def main():
    async with websockets.connect("ws://127.0.0.1:%s/" % sys.argv[1], open_timeout=10) as ws:
        p = await call(ws, "s1", "login", {"username": "default-admin",
                                           "password": os.environ["CONDRIX_BENCH_PASSWORD"]})
        fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (p["sessionToken"] + "\n").encode())
        os.close(fd)
        deadline = time.monotonic() + 15
        n = 0
        while time.monotonic() < deadline:
            n += 1
            cores = (await call(ws, "c%d" % n, "cores.list", {}))["cores"]
            online = [c["id"] for c in cores if c.get("status") == "online"]
            if online:
                print(online[0])
                return
            await asyncio.sleep(0.2)
        raise SystemExit("the Core did not come online within 15 s")

asyncio.run(main())
EOF
}

measure_maestro() {
    local code core_pid core_port mid k
    echo "bench: maestro: relay against direct (${SECS} s windows), 50 concurrent logins" >&2
    start_maestro || return 1
    code=$(timeout 10 "$MAESTRO" --data-dir "$MX_HOME" pair --json 2>"$WORK/mx.pair.err" |
        sed -n 's/.*"code" *: *"\([^"]*\)".*/\1/p')
    if [ -z "$code" ]; then
        echo "bench: condrix-maestro pair made no code: $(head -c 200 "$WORK/mx.pair.err")" >&2
        return 1
    fi
    # A fresh Core, joining this Maestro with the pairing code (start_core passes the
    # environment of its call on to the Core).
    CONDRIX_MAESTRO_URL=ws://127.0.0.1:$MX_PORT/ CONDRIX_MAESTRO_TOKEN=$code start_core || return 1
    core_pid=$SRV_PID core_port=$SRV_PORT
    mid=$(maestro_core_id "$MX_PORT" "$WORK/mx.session")
    if [ -z "$mid" ]; then
        echo "bench: no online Core in Maestro's cores.list: $(tail -c 300 "$WORK/mx.setup.err")" >&2
        return 1
    fi
    for k in $RELAY_KS; do
        bench requests --port "$core_port" --conns 64 --pipeline "$k" --seconds "$SECS" \
            --server-pid "$core_pid" >"$WORK/mx.direct$k"
        bench relay --port "$MX_PORT" --session-file "$WORK/mx.session" --target-core "$mid" \
            --conns 64 --pipeline "$k" --seconds "$SECS" --server-pid "$MX_PID" \
            --also-pid "$core_pid" >"$WORK/mx.relay$k"
    done
    CONDRIX_BENCH_PASSWORD=$MX_PASSWORD bench logins --port "$MX_PORT" --conns 50 \
        --server-pid "$MX_PID" >"$WORK/mx.logins"
    stop_server "$core_pid"
    stop_server "$MX_PID"
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

have_floor=1
if [ "${BENCH_NO_FLOOR:-0}" = 1 ]; then
    have_floor=0
elif [ ! -x "$FLOOR" ]; then
    echo "bench: $FLOOR is missing: no floor" >&2
    have_floor=0
fi

measure core start_core || echo "bench: the Core phases did not complete" >&2
if [ "$have_peer" = 1 ]; then
    measure peer start_peer || echo "bench: the peer phases did not complete" >&2
fi
if [ "$have_floor" = 1 ]; then
    measure_load floor start_floor || echo "bench: the floor phases did not complete" >&2
fi
if [ "${BENCH_NO_MAESTRO:-0}" = 1 ]; then
    MX_SKIPPED="BENCH_NO_MAESTRO=1"
elif [ ! -x "$MAESTRO" ]; then
    MX_SKIPPED="$MAESTRO is missing"
elif ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
    MX_SKIPPED="/usr/bin/python3 has no websockets module (python3-websockets)"
else
    measure_maestro || echo "bench: the Maestro phases did not complete" >&2
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

# floor_row PHASE: the floor's server CPU per op, with floor/peer in the ratio column.
floor_row() {
    [ "$have_floor" = 1 ] || return 0
    row "  floor: bare epoll server, canned replies" "$(val floor "$1" server_cpu_us_per_op)" \
        "$(val peer "$1" server_cpu_us_per_op)"
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
floor_row handshake
for k in 1 8; do
    row "requests/s (64 conns, pipeline $k)" "$(val core req$k rate)" "$(val peer req$k rate)"
    row "request round trip p50 (us, pipeline $k)" "$(val core req$k p50_us)" "$(val peer req$k p50_us)"
    row "request round trip p99 (us, pipeline $k)" "$(val core req$k p99_us)" "$(val peer req$k p99_us)"
    row "server CPU per request (us, pipeline $k)" "$(val core req$k server_cpu_us_per_op)" \
        "$(val peer req$k server_cpu_us_per_op)" 0.40
    row "  of which user space (us)" "$(val core req$k server_user_us_per_op)" \
        "$(val peer req$k server_user_us_per_op)"
    floor_row "req$k"
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

if [ "$have_floor" = 1 ]; then
    echo "floor: a bare epoll server with canned replies (test/bench/floor.c), making only the system"
    echo "calls any WebSocket server makes for this traffic; a target below its floor/peer ratio cannot"
    echo "be met on this machine by any server that makes the same system calls."
fi

echo
echo "raw results:"
for f in "$WORK"/core.* "$WORK"/peer.* "$WORK"/floor.*; do
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

# ---- the Maestro section ----

mrow() { # mrow LABEL DIRECT RELAY: relay/direct next to them
    local ratio="-"
    if [ -n "${2:-}" ] && [ -n "${3:-}" ] && [ "$2" != 0 ]; then
        ratio=$(awk -v a="$3" -v b="$2" 'BEGIN { printf "%.3f", a / b }')
    fi
    printf '%-44s %12s %12s %12s\n' "$1" "${2:--}" "${3:--}" "$ratio"
}

# ms MICROSECONDS: milliseconds with one decimal, or "-".
ms() {
    if [ -n "${1:-}" ]; then
        awk -v v="$1" 'BEGIN { printf "%.1f", v / 1000 }'
    else
        echo "-"
    fi
}

echo
if [ -n "$MX_SKIPPED" ]; then
    echo "maestro: skipped ($MX_SKIPPED)."
    exit 0
fi
echo "maestro relay: client -> Maestro -> Core -> back, against the same core/health sent straight"
echo "to the same Core in the same run; 64 connections, ${SECS} s windows, rate limits LIFTED on both"
echo "(CONDRIX_RATE_CONN_MAX=0 CONDRIX_RATE_AUTH_MAX=0 CONDRIX_RATE_MSG_MAX=0). Relay connections"
echo "sign in with maestro/auth on one session made beforehand: no password hashing in the window."
echo
printf '%-44s %12s %12s %12s\n' "metric" "direct" "relay" "relay/direct"
printf '%-44s %12s %12s %12s\n' "------" "------" "-----" "------------"
for k in $RELAY_KS; do
    d99=$(val mx direct$k p99_us)
    r99=$(val mx relay$k p99_us)
    added=""
    [ -n "$d99" ] && [ -n "$r99" ] && added=$((r99 - d99))
    mrow "requests/s (64 conns, pipeline $k)" "$(val mx direct$k rate)" "$(val mx relay$k rate)"
    mrow "round trip p50 (us, pipeline $k)" "$(val mx direct$k p50_us)" "$(val mx relay$k p50_us)"
    mrow "round trip p99 (us, pipeline $k)" "$d99" "$r99"
    printf '%-44s %12s %12s\n' "added p99: relay - direct (us, pipeline $k)" "" "${added:--}"
    mrow "Core CPU per request (us, pipeline $k)" "$(val mx direct$k server_cpu_us_per_op)" \
        "$(val mx relay$k also_cpu_us_per_op)"
    printf '%-44s %12s %12s\n' "Maestro CPU per relayed request (us)" "" \
        "$(val mx relay$k server_cpu_us_per_op)"
    printf '%-44s %12s %12s\n' "  of which user space (us)" "" \
        "$(val mx relay$k server_user_us_per_op)"
    printf '%-44s %12s %12s\n' "Maestro CPU in use (cores)" "" \
        "$(val mx relay$k server_cpu_util)"
done
echo
echo "50 concurrent maestro/login with the right password (Argon2id: 19 MiB, 2 passes; 2 hashes"
echo "at a time in Maestro's thread pool, 64 may wait); the clock starts once all 50 are sent:"
printf '%-44s %12s\n' "wall time until all 50 answered (ms)" "$(val mx logins wall_ms)"
printf '%-44s %12s\n' "signed in / answered" "$(val mx logins ops)/$(val mx logins answered)"
printf '%-44s %12s\n' "per login p50 (ms)" "$(ms "$(val mx logins p50_us)")"
printf '%-44s %12s\n' "per login p99 (ms)" "$(ms "$(val mx logins p99_us)")"
printf '%-44s %12s\n' "Maestro CPU per login (ms)" "$(ms "$(val mx logins server_cpu_us_per_op)")"
echo
echo "raw results:"
for f in "$WORK"/mx.direct* "$WORK"/mx.relay* "$WORK"/mx.logins; do
    [ -f "$f" ] || continue
    echo "  $(basename "$f"): $(cat "$f")"
done
exit 0
