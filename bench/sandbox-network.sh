#!/bin/sh
# What the sandbox's own network costs a RUN step: the same N-step build (each step a
# plain `true`, no network use) with --no-cache under --network=host (the old default,
# the reference), --network=none (an empty namespace) and the default private network
# (a namespace behind slirp4netns). Prints seconds per step and the ratio against host.
# Needs root. Usage: sh bench/sandbox-network.sh [STEPS] [ROUNDS]  (default 20, 3)
set -eu
cd "$(dirname "$0")/.."
steps=${1:-20}
rounds=${2:-3}
if [ -z "${BUILDER_BIN:-}" ]; then
    cargo build --release --quiet
    BUILDER_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/builder
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BUILDER_ROOT="$work/store"
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
"$BUILDER_BIN" import "$work/busybox.tar" busybox:latest >/dev/null
mkdir -p "$work/ctx"
{
    echo "FROM busybox"
    i=0
    while [ $i -lt "$steps" ]; do echo "RUN echo $i > /step$i"; i=$((i + 1)); done
} > "$work/ctx/Dockerfile"

now() { date +%s.%N; }
time_mode() {
    total=0
    r=0
    while [ $r -lt "$rounds" ]; do
        t0=$(now)
        "$BUILDER_BIN" build --no-cache --progress=plain "$@" "$work/ctx" >/dev/null 2>&1
        t1=$(now)
        total=$(awk "BEGIN { print $total + $t1 - $t0 }")
        r=$((r + 1))
    done
    awk "BEGIN { print $total / $rounds / $steps }"
}
# Interleaved so that drift of the machine hits every mode alike.
host=$(time_mode --network=host --allow network.host)
none=$(time_mode --network=none)
private=$(time_mode)
awk "BEGIN { printf \"per step: host %.4f s, none %.4f s (%.2fx), private %.4f s (%.2fx)\\n\", \
    $host, $none, $none / $host, $private, $private / $host }"
