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
noops=${NOOPS:-5}
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

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# as WHO STORE ARGS...: builder as root or as the user, with STORE as its store, both
# through the same setpriv and env.
as() {
    _who=$1 _store=$2
    shift 2
    setpriv --reuid="$_who" --regid="$_who" --clear-groups -- \
        env -i PATH="$PATH" HOME="$work/home-$_who" BUILDER_ROOT="$_store" "$@"
}

# timed WHO STORE OUT ARGS...: `builder ARGS` as WHO, its wall time (seconds) appended to
# OUT. The clock is read by a shell already running as WHO: the time is builder's
# alone, not setpriv's and env's (they cost root and the user alike, a few ms).
timed() {
    _who=$1 _store=$2 _out=$3
    shift 3
    # shellcheck disable=SC2016 # expanded by the inner shell
    as "$_who" "$_store" sh -c 't0=$(date +%s%N); "$0" "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $((t1 - t0))' \
        "$work/builder" "$@" | awk '{ printf "%.6f\n", $1 / 1e9 }' >> "$_out"
}

mkdir -p "$work/home-$user" "$work/home-root"
chown "$user:" "$work/home-$user"
for who in root "$user"; do : > "$work/cold-$who"; : > "$work/noop-$who"; done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
i=0
while [ "$i" -lt "$runs" ]; do
    for who in root "$user"; do
        store=$work/home-$user/store-$who-$i
        [ "$who" = root ] && store=$work/store-root-$i
        as "$who" "$store" "$work/builder" import "$work/busybox.tar" busybox:latest >/dev/null
        timed "$who" "$store" "$work/cold-$who" build --progress=plain -t demo "$work/demo"
        # A no-op rebuild takes milliseconds: several samples per store.
        j=0
        while [ "$j" -lt "$noops" ]; do
            timed "$who" "$store" "$work/noop-$who" build --progress=plain -t demo "$work/demo"
            j=$((j + 1))
        done
        rm -rf "$store"
    done
    i=$((i + 1))
done

cold_root=$(median < "$work/cold-root"); cold_user=$(median < "$work/cold-$user")
noop_root=$(median < "$work/noop-root"); noop_user=$(median < "$work/noop-$user")
tun=usable
setpriv --reuid="$user" --regid="$user" --clear-groups -- sh -c ': <> /dev/net/tun' 2>/dev/null || tun="not usable by $user: rootless steps get lo only"
echo "testdata/demo, median of $runs cold and $((runs * noops)) no-op builds each ($src_bin); /dev/net/tun $tun"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'cold build   root %8.4fs  rootless %8.4fs  ratio %s (goal <= 1.2)\n' "$cold_root" "$cold_user" "$(echo "scale=2; $cold_user / $cold_root" | bc -l)"
printf 'no-op build  root %8.4fs  rootless %8.4fs  ratio %s (goal <= 1.1)\n' "$noop_root" "$noop_user" "$(echo "scale=2; $noop_user / $noop_root" | bc -l)"
