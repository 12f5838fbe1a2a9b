#!/bin/sh
# Rootless benchmark: testdata/demo built as root and as an ordinary user (rootless:
# builder in a user namespace of its own) in the same run, alternating, RUNS times
# each. Prints the median wall time of a cold build (empty store but for the busybox
# base, imported beforehand) and of a no-op rebuild (everything cached), and the
# rootless/root ratios. Goal: <= 1.2 cold, <= 1.1 no-op.
# Needs root (it makes the user builder-rootless-test with subordinate ids if missing).
# Usage: sh bench/rootless.sh [RUNS]   (default 7; BUILDER_BIN=path skips the release build)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-7}
user=builder-rootless-test
[ -n "${BUILDER_BIN:-}" ] || cargo build --release --quiet
src_bin=${BUILDER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/builder}
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
id -u "$user" >/dev/null 2>&1 || useradd -M -s /bin/sh "$user"
if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0711 "$work"
# Copies both users may run and read.
cp "$src_bin" "$work/builder"
chmod 0755 "$work/builder"
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
cp -r testdata/demo "$work/demo"
chmod -R a+rX "$work/demo" "$work/busybox.tar"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# as WHO STORE ARGS...: builder as root or as the user, with STORE as its store.
as() {
    _who=$1 _store=$2
    shift 2
    if [ "$_who" = root ]; then
        BUILDER_ROOT=$_store "$work/builder" "$@"
    else
        setpriv --reuid="$user" --regid="$user" --clear-groups -- \
            env -i PATH="$PATH" HOME="$work/home-$user" BUILDER_ROOT="$_store" "$work/builder" "$@"
    fi
}

mkdir -p "$work/home-$user"
chown "$user:" "$work/home-$user"
for who in root "$user"; do : > "$work/cold-$who"; : > "$work/noop-$who"; done
i=0
while [ "$i" -lt "$runs" ]; do
    for who in root "$user"; do
        store=$work/home-$user/store-$who-$i
        [ "$who" = root ] && store=$work/store-root-$i
        as "$who" "$store" import "$work/busybox.tar" busybox:latest >/dev/null
        t0=$(now); as "$who" "$store" build --progress=plain -t demo "$work/demo" >/dev/null 2>&1; t1=$(now)
        elapsed "$t0" "$t1" >> "$work/cold-$who"
        t0=$(now); as "$who" "$store" build --progress=plain -t demo "$work/demo" >/dev/null 2>&1; t1=$(now)
        elapsed "$t0" "$t1" >> "$work/noop-$who"
        rm -rf "$store"
    done
    i=$((i + 1))
done

cold_root=$(median < "$work/cold-root"); cold_user=$(median < "$work/cold-$user")
noop_root=$(median < "$work/noop-root"); noop_user=$(median < "$work/noop-$user")
tun=usable
setpriv --reuid="$user" --regid="$user" --clear-groups -- sh -c ': <> /dev/net/tun' 2>/dev/null || tun="not usable by $user: rootless steps get lo only"
echo "testdata/demo, median of $runs runs each ($src_bin); /dev/net/tun $tun"
printf 'cold build   root %7.3fs  rootless %7.3fs  ratio %s (goal <= 1.2)\n' "$cold_root" "$cold_user" "$(echo "scale=2; $cold_user / $cold_root" | bc -l)"
printf 'no-op build  root %7.3fs  rootless %7.3fs  ratio %s (goal <= 1.1)\n' "$noop_root" "$noop_user" "$(echo "scale=2; $noop_user / $noop_root" | bc -l)"
