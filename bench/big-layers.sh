#!/bin/sh
# Big-layer benchmark (issue 19): a generated context of FILES files and MB megabytes
# (default 20000 files, 500 MB; a third random, the rest compressible text), built
# as `COPY . /data/` then a RUN. Times, in one run: a cold build into the store
# (`-t`), a no-op rebuild, a one-file-change rebuild and a `-o type=docker` export
# (gzip) and a `-o type=oci,compression=zstd` export of the built image, next to
# physical references measured on the same tree in the same run: `cp -a` of the
# tree, `tar -c | sha256sum`, `tar -c | openssl sha256` (SHA-NI where the CPU has
# it: the floor of any diffID), `tar -c | gzip -1`, `tar -c | pigz -1` (if installed)
# and `tar -c | zstd -T0`. Prints each goal as a ratio:
#   one-file change <= 0.3x cp -a;  cold <= 1.5x (cp -a + tar|sha256sum);
#   docker export <= 1.2x tar|pigz;  zstd export <= 1.0x tar|zstd -T0;
# and a one-file change under SOURCE_DATE_EPOCH, where the layer's hash resumes from
# the previous layer's checkpoints (without it the COPY's new destination directory
# is dated now, its first tar entry, so every byte of the tar is hashed again);
# and the peak RSS of every builder run, also for a context a tenth the size, which
# must be flat. Every run starts from a synced disk; each figure is the best of
# RUNS rounds (default 3), each round with a fresh store.
# BENCH_TMPFS=1 runs everything on a tmpfs of its own: the page cache's speed, without
# the state of the disk's filesystem (on an ext4 whose free space churned, `cp -a` of
# the same tree took 0.8 s or 5 s from one minute to the next).
# Needs root. Usage: sh bench/big-layers.sh [MB] [FILES]   (BUILDER_BIN=path skips the build)
set -eu
cd "$(dirname "$0")/.."
mb=${1:-500}
files=${2:-20000}
runs=${RUNS:-3}
target=${CARGO_TARGET_DIR:-target}
if [ -n "${BUILDER_BIN:-}" ]; then
    bin=$BUILDER_BIN
else
    cargo build --release --quiet
    bin=$target/release/builder
fi
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
work=$(mktemp -d)
if [ "${BENCH_TMPFS:-}" = 1 ]; then
    mount -t tmpfs -o size=$((mb * 16 + 2048))m bench-big-layers "$work"
    trap 'umount "$work"; rmdir "$work"' EXIT
    where="a tmpfs"
else
    trap 'rm -rf "$work"' EXIT
    where="$(df --output=fstype "$work" | tail -1) ($(df --output=source "$work" | tail -1))"
fi
# Every round writes into a directory of its own and nothing is removed until the end:
# on ext4 (here mounted with `discard`) the first large write after a large removal
# can take ten times as long, which would weigh on whichever run came next.
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"

# $1: directory, $2: MB, $3: files, in 100 directories; a third of the bytes random
# (does not compress), the rest log-like text.
make_context() {
    python3 bench/make-context.py "$1" "$2" "$3"
    printf 'FROM busybox\nCOPY . /data/\nRUN ls /data/data | wc -l > /dirs\n' > "$1/Dockerfile"
}

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
# Wall seconds of a shell command, from a synced disk.
timed() {
    sync
    t0=$(now); sh -c "$1"; t1=$(now)
    secs "$t0" "$t1"
}
# One builder run under /usr/bin/time -v: prints "<wall seconds> <max RSS kB>".
timed_rss() {
    sync
    t0=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$bin" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
    t1=$(now)
    rss=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/time.txt")
    echo "$(secs "$t0" "$t1") $rss"
}

ctx=$work/ctx
make_context "$ctx" "$mb" "$files"
tar_mb=$(tar -cf - -C "$ctx" . | wc -c | awk '{ printf "%.1f", $1 / 1e6 }')

results=$work/results.txt
: > "$results"
# One builder run, appended to the results as "<name> <seconds> <max RSS kB>".
ours() {
    name=$1; shift
    echo "$name $(timed_rss "$@")" >> "$results"
}
# One reference run, appended as "<name> <seconds>".
ref() {
    echo "$1 $(timed "$2")" >> "$results"
}
best() { awk -v n="$1" '$1 == n { print $2 }' "$results" | awk 'NR == 1 || $1 < m { m = $1 } END { print m }'; }
peak() { awk -v n="$1" '$1 == n { print $3 }' "$results" | awk 'NR == 1 || $1 > m { m = $1 } END { print m }'; }

# Rounds (RUNS, default 3), each with a fresh store, the references and builder
# taking turns, so that a machine whose load changes weighs on both alike; each
# figure is the best of its rounds.
i=0
while [ "$i" -lt "$runs" ]; do
    out=$work/round-$i
    mkdir "$out"
    export BUILDER_ROOT="$out/store"
    ref cp "cp -a '$ctx' '$out/copy'"
    ref sha "tar -cf - -C '$ctx' . | sha256sum >/dev/null"
    if command -v openssl >/dev/null 2>&1; then
        ref sha_ni "tar -cf - -C '$ctx' . | openssl dgst -sha256 >/dev/null"
    fi
    "$bin" import "$work/busybox.tar" busybox:latest >/dev/null
    ours cold build --progress=plain -t big:1 "$ctx"
    ours noop build --progress=plain -t big:2 "$ctx"
    echo "changed in round $i" >> "$ctx/data/d07/f00007.bin"
    ours one build --progress=plain -t big:3 "$ctx"
    ref gzip "tar -cf - -C '$ctx' . | gzip -1 > '$out/ref.gz'"
    if command -v pigz >/dev/null 2>&1; then
        ref pigz "tar -cf - -C '$ctx' . | pigz -1 > '$out/ref.pigz'"
    fi
    ours docker build --progress=plain -o "type=docker,dest=$out/docker.tar" "$ctx"
    docker_size=$(stat -c %s "$out/docker.tar")
    ref zstd "tar -cf - -C '$ctx' . | zstd -q -T0 -3 > '$out/ref.zst'"
    # (Not named "zstd": that is the reference's row, and each figure is the best of its name.)
    ours zstd_oci build --progress=plain -o "type=oci,dest=$out/zstd.tar,compression=zstd" "$ctx"
    zstd_size=$(stat -c %s "$out/zstd.tar")
    # The one-file change under SOURCE_DATE_EPOCH (other cache keys: a cold build
    # first), the change in the middle of the tree; after the exports, which must
    # find the tree they export built already.
    SOURCE_DATE_EPOCH=1700000000 "$bin" build --progress=plain -t big:4 "$ctx" >/dev/null 2>&1
    echo "changed in round $i" >> "$ctx/data/d50/f00050.bin"
    export SOURCE_DATE_EPOCH=1700000000
    ours one_epoch build --progress=plain -t big:5 "$ctx"
    unset SOURCE_DATE_EPOCH
    i=$((i + 1))
done
ref_cp=$(best cp); ref_sha=$(best sha); ref_sha_ni=$(best sha_ni); ref_gzip=$(best gzip); ref_pigz=$(best pigz); ref_zstd=$(best zstd)
cold=$(best cold); rss_cold=$(peak cold); noop=$(best noop); rss_noop=$(peak noop); one=$(best one); rss_one=$(peak one)
one_epoch=$(best one_epoch); rss_one_epoch=$(peak one_epoch)
docker=$(best docker); rss_docker=$(peak docker); zstd=$(best zstd_oci); rss_zstd=$(peak zstd_oci)
store_mb=$(du -sm "$BUILDER_ROOT" | cut -f1)

# Memory for a context a tenth the size: it must not grow with the layer.
small=$work/small
make_context "$small" $((mb / 10)) $((files / 10))
set -- $(timed_rss build --progress=plain -t small:1 "$small"); rss_small_cold=$2
set -- $(timed_rss build --progress=plain -o "type=docker,dest=$work/out.tar" "$small"); rss_small_docker=$2
rm -f "$work/out.tar"

ratio() { echo "$1 / $2" | bc -l | awk '{ printf "%.2f", $1 }'; }
row() { printf '%-34s %8.2f %12s %s\n' "$1" "$2" "$3" "${4:-}"; }
echo "context: $files files, $tar_mb MB of tar on $where ($(nproc) cores, best of $runs rounds, load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-34s %8s %12s\n' "" "seconds" "max RSS kB"
row "cp -a" "$ref_cp" ""
row "tar | sha256sum" "$ref_sha" ""
[ -n "$ref_sha_ni" ] && row "tar | openssl sha256" "$ref_sha_ni" ""
row "tar | gzip -1" "$ref_gzip" ""
[ -n "$ref_pigz" ] && row "tar | pigz -1" "$ref_pigz" ""
row "tar | zstd -T0 -3" "$ref_zstd" ""
row "builder cold build (-t)" "$cold" "$rss_cold"
row "builder no-op rebuild" "$noop" "$rss_noop"
row "builder one-file-change rebuild" "$one" "$rss_one"
row "  the same, SOURCE_DATE_EPOCH" "$one_epoch" "$rss_one_epoch"
row "builder -o type=docker (gzip)" "$docker" "$rss_docker" "($docker_size bytes)"
row "builder -o type=oci,compression=zstd" "$zstd" "$rss_zstd" "($zstd_size bytes)"
printf '%-34s %8s %12s\n' "  context of $((mb / 10)) MB: cold build" "" "$rss_small_cold"
printf '%-34s %8s %12s\n' "  context of $((mb / 10)) MB: type=docker" "" "$rss_small_docker"
echo "store after the runs: $store_mb MB"
echo "goal one-file change <= 0.30x cp -a:              $(ratio "$one" "$ref_cp")x"
echo "   the same under SOURCE_DATE_EPOCH:              $(ratio "$one_epoch" "$ref_cp")x"
# The diffID is the SHA-256 of the whole tar, and the change (early in the tree) makes
# every byte after it new: making that tar and hashing it is the floor of the rebuild.
[ -n "$ref_sha_ni" ] && echo "   one-file change vs its floor, tar|openssl sha256: $(ratio "$one" "$ref_sha_ni")x (the floor is $(ratio "$ref_sha_ni" "$ref_cp")x cp -a)"
echo "goal cold <= 1.50x (cp -a + tar|sha256sum):       $(ratio "$cold" "$(echo "$ref_cp + $ref_sha" | bc -l)")x"
[ -n "$ref_pigz" ] && echo "goal docker export <= 1.20x tar|pigz -1:          $(ratio "$docker" "$ref_pigz")x"
echo "goal docker export vs tar|gzip -1 (one core):     $(ratio "$docker" "$ref_gzip")x"
echo "goal zstd export <= 1.00x tar|zstd -T0:           $(ratio "$zstd" "$ref_zstd")x"
echo "peak RSS, cold build: $rss_small_cold kB ($((mb / 10)) MB) vs $rss_cold kB ($mb MB)"
