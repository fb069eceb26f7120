#!/bin/sh
# `make run`: start a Core on 127.0.0.1 with a demo data directory and print what a
# person needs to connect. Ctrl-C stops it cleanly. A second run reuses the directory.
set -eu
BIN="$1"
DEMO_DIR="${CONDRIX_DEMO_DIR:-$(pwd)/.condrix-demo}"
PORT="${CONDRIX_CORE_PORT:-9100}"
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"
TOKEN_FILE="$DEMO_DIR/core-token.txt"
OUT="$DEMO_DIR/core.stdout"

: > "$OUT"
CONDRIX_HOME="$DEMO_DIR/core" "$BIN/condrix-core" --port "$PORT" > "$OUT" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; exit 0' INT TERM

# Wait (bounded) for the Core to answer its health check.
i=0
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $PID 2>/dev/null; then
        echo "condrix-core did not start; see the messages above" >&2
        exit 1
    fi
    sleep 0.1
done

# First start prints the default-admin token once; the demo keeps it (0600) to show again.
TOKEN=$(grep -E '^[0-9a-f]{64}$' "$OUT" || true)
if [ -n "$TOKEN" ]; then
    umask 077
    printf '%s\n' "$TOKEN" > "$TOKEN_FILE"
fi
[ -f "$TOKEN_FILE" ] && TOKEN=$(cat "$TOKEN_FILE")

cat <<MSG

  Condrix Core is running.

    WebSocket URL:   ws://127.0.0.1:$PORT/
    Health check:    http://127.0.0.1:$PORT/healthz
    Admin token:     ${TOKEN:-"(not known: see $TOKEN_FILE or make a new one below)"}
    Data directory:  $DEMO_DIR/core

  Manage tokens (works while the server runs):
    CONDRIX_HOME=$DEMO_DIR/core $BIN/condrix-core auth list
    CONDRIX_HOME=$DEMO_DIR/core $BIN/condrix-core auth create laptop --scopes read:files,chat:agent

  Stop with Ctrl-C.

MSG
wait $PID
