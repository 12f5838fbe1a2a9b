#!/bin/sh
# Builds builder, makes a busybox base image offline, builds testdata/demo and runs it.
# Needs root (namespaces, overlayfs). Usage: sudo sh scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
command -v busybox >/dev/null 2>&1 && [ -x /bin/busybox ] || apt-get install -y busybox-static
cargo build --release --quiet
export BUILDER_ROOT="${BUILDER_ROOT:-/var/lib/builder}"
bin=${CARGO_TARGET_DIR:-target}/release/builder
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh testdata/make-busybox-rootfs.sh "$tmp/busybox.tar"
"$bin" import "$tmp/busybox.tar" busybox:latest
"$bin" build -t demo:latest testdata/demo
"$bin" run --rm demo:latest
