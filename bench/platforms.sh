#!/bin/sh
# Multi-platform benchmark: a cross-compiling Dockerfile (a build stage on
# $BUILDPLATFORM doing the slow part once, a target stage per platform) built cold
# for linux/amd64,linux/arm64 at once, against the sum of the two single-platform
# cold builds. The shared vertices make the one build cost less than the sum.
# Needs root, qemu-user-static registered for arm64, and the arm64 busybox-static
# package in target/debs/ (scripts/test.sh fetches it).
# Usage: sh bench/platforms.sh   (BUILDER_BIN=path skips the build)
set -eu
cd "$(dirname "$0")/.."
if [ -n "${BUILDER_BIN:-}" ]; then
    bin=$BUILDER_BIN
else
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/builder
fi
deb=$(ls target/debs/busybox-static_*_arm64.deb | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/arm64"
sh testdata/make-busybox-rootfs.sh "$work/amd64.tar"
BUSYBOX="$work/arm64/bin/busybox" BUSYBOX_LIST=/bin/busybox sh testdata/make-busybox-rootfs.sh "$work/arm64.tar"

ctx="$work/ctx"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
ARG TARGETARCH
FROM bb-$TARGETARCH:1 AS base
FROM --platform=$BUILDPLATFORM bb-amd64:1 AS build
# The slow, platform-independent part (a stand-in for fetching and compiling).
RUN i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo compiled > /artifact
ARG TARGETARCH
RUN echo "$TARGETARCH" > /target
FROM base
RUN uname -m > /arch
COPY --from=build /artifact /target /
DOCKERFILE

fresh() {
    rm -rf "$work/store"
    export BUILDER_ROOT="$work/store"
    "$bin" import --platform linux/amd64 "$work/amd64.tar" bb-amd64:1 >/dev/null
    "$bin" import --platform linux/arm64 "$work/arm64.tar" bb-arm64:1 >/dev/null
}
now() { date +%s.%N; }
build() {
    start=$(now)
    "$bin" build --progress=plain --platform "$1" "$ctx" >/dev/null 2>"$work/log"
    echo "$(now) - $start" | bc
}

fresh; amd=$(build linux/amd64)
fresh; arm=$(build linux/arm64)
fresh; both=$(build linux/amd64,linux/arm64)
sum=$(echo "$amd + $arm" | bc)
printf 'platforms: cold linux/amd64,linux/arm64 %.2fs vs linux/amd64 %.2fs + linux/arm64 %.2fs = %.2fs (%.0f%% of the sum)\n' \
    "$both" "$amd" "$arm" "$sum" "$(echo "100 * $both / $sum" | bc -l)"
