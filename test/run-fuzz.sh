#!/bin/sh
# Runs each libFuzzer driver for a bounded number of seconds with its corpus dir.
set -eu
secs="$1"; shift
for f in "$@"; do
    name=$(basename "$f")
    corpus="build-fuzz/corpus-$name"
    mkdir -p "$corpus"
    seeds="test/fuzz/seeds/$name"
    dict=""
    [ -f "test/fuzz/$name.dict" ] && dict="-dict=test/fuzz/$name.dict"
    echo "fuzz: $name for ${secs}s"
    if [ -d "$seeds" ]; then
        "$f" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 $dict "$corpus" "$seeds" 2>build-fuzz/$name.log || { tail -40 build-fuzz/$name.log; exit 1; }
    else
        "$f" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 $dict "$corpus" 2>build-fuzz/$name.log || { tail -40 build-fuzz/$name.log; exit 1; }
    fi
    grep -E "^Done|DONE" build-fuzz/$name.log | tail -1 || true
done
