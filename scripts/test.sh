#!/bin/sh
# Runs everything CI runs, on a fresh Debian machine, as root: installs the tools the
# tests use, checks formatting, lints and unused dependencies, and runs every test
# (unit, conformance, the crate map in tests/architecture.rs, integration against the
# real binary and a real registry on 127.0.0.1).
set -eu
cd "$(dirname "$0")/.."
need=""
for pkg in busybox-static docker-registry skopeo umoci runc podman slirp4netns iproute2 keyutils uidmap git openssh-client; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
cargo fmt --all --check
cargo machete
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
