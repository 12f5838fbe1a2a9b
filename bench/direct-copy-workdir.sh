#!/bin/sh
# The usual Dockerfile shape (issue 19): `WORKDIR /app`, a manifest copied and a RUN,
# then `COPY . .` of a generated context of FILES files and MB megabytes (default
# 20000 files, 500 MB; bench/big-layers.sh's generator) into the /app the parent
# has. Times a one-file-change rebuild with the direct COPY (files unchanged since
# the previous result linked) and without it (BUILDER_DIRECT_COPY=0: the overlay
# path, what this shape always took before), each from a fresh store after a cold
# build, with and without SOURCE_DATE_EPOCH; best of RUNS rounds (default 3).
# Needs root. Usage: sh bench/direct-copy-workdir.sh [MB] [FILES]   (BUILDER_BIN=path skips the build)
set -eu
cd "$(dirname "$0")/.."
mb=${1:-500}
files=${2:-20000}
runs=${RUNS:-3}
if [ -n "${BUILDER_BIN:-}" ]; then
    bin=$BUILDER_BIN
else
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-target}/release/builder
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
ctx=$work/ctx
python3 bench/make-context.py "$ctx" "$mb" "$files"
echo '{"name": "app"}' > "$ctx/package.json"
printf 'FROM busybox\nWORKDIR /app\nCOPY package.json .\nRUN echo deps > deps.txt\nCOPY . .\n' > "$ctx/Dockerfile"

now() { date +%s.%N; }
# $1: BUILDER_DIRECT_COPY, $2: SOURCE_DATE_EPOCH or empty; prints the rebuild's seconds.
round() {
    store=$work/store-$1-${2:-none}-$(now)
    epoch=${2:-}
    run() { if [ -n "$epoch" ]; then SOURCE_DATE_EPOCH=$epoch "$@"; else env -u SOURCE_DATE_EPOCH "$@"; fi; }
    "$bin" --root "$store" import "$work/busybox.tar" busybox:latest >/dev/null
    BUILDER_DIRECT_COPY=$1 run "$bin" --root "$store" build --progress=plain -t app:1 "$ctx" >/dev/null 2>&1
    echo "changed $(now)" > "$ctx/data/d42/f04242.bin"
    sync
    t0=$(now)
    BUILDER_DIRECT_COPY=$1 run "$bin" --root "$store" build --progress=plain -t app:2 "$ctx" >/dev/null 2>&1
    t1=$(now)
    rm -rf "$store"
    echo "$t1 - $t0" | bc -l
}
best() {
    b=
    i=0
    while [ $i -lt "$runs" ]; do
        t=$(round "$1" "$2")
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
        i=$((i + 1))
    done
    printf '%.2f' "$b"
}
echo "one-file change, $files files / $mb MB, WORKDIR /app + COPY . . (best of $runs):"
for epoch in 1700000000 ""; do
    over=$(best 0 "$epoch")
    direct=$(best 1 "$epoch")
    echo "  SOURCE_DATE_EPOCH=${epoch:-unset}: through the overlay ${over}s, direct ${direct}s"
done
