#!/bin/sh
# Runs everything CI runs, on a fresh Debian machine, as root: installs the tools the
# tests use, checks formatting, lints and unused dependencies, and runs every test
# (unit, conformance, the crate map in tests/architecture.rs, integration against the
# real binary and a real registry on 127.0.0.1).
set -eu
cd "$(dirname "$0")/.."
need=""
for pkg in busybox-static docker-registry skopeo umoci runc podman slirp4netns iproute2 keyutils uidmap fuse-overlayfs git openssh-client qemu-user-static; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
# Multi-platform tests: Debian's arm64 busybox-static (a second base, made offline
# by the tests) and QEMU registered in binfmt_misc with the F flag (qemu-user-static
# ships the registrations; without systemd or binfmt-support nothing loads them).
mkdir -p target/debs
if ! ls target/debs/busybox-static_*_arm64.deb >/dev/null 2>&1; then
    dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; } || true
    (cd target/debs && apt-get download -qq busybox-static:arm64) || echo "busybox-static:arm64 not downloaded: the two-platform test will skip"
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
        || echo "binfmt_misc: cannot register qemu-aarch64: the emulated RUN of the platform test will skip"
fi
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
cargo fmt --all --check
cargo machete
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
