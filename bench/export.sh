#!/bin/sh
# Export benchmark: an image with a ~500 MB layer (half random, half compressible
# text) exported as gzip and as zstd (`-o type=oci,compression=...`), the layer
# recompressed from an uncompressed blob each time. Prints throughput (MB of tar per
# second) as ratios against references measured in the same run on the same data:
# `tar | gzip`, `tar | pigz` (if installed) and `tar | zstd -T0`, and peak memory
# (max RSS from /usr/bin/time -v), also for a ~50 MB layer to show it does not grow
# with the layer. Target: ratios >= 1, flat memory.
# Each figure is the best of its runs (RUNS rounds, default 3; three zstd runs per
# round), the references and builder taking turns, each run starting from a synced
# disk and without the file it writes, so that neither leftover writeback nor freeing
# an old file lands in another run's time.
# Needs root. Usage: sh bench/export.sh [MB]   (default 500; BUILDER_BIN=path skips the build)
set -eu
cd "$(dirname "$0")/.."
mb=${1:-500}
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
trap 'rm -rf "$work"' EXIT
export BUILDER_ROOT="$work/store"
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
"$bin" import "$work/busybox.tar" busybox:latest >/dev/null

# $1: directory, $2: MB of data, half random, half text.
make_context() {
    mkdir -p "$1/data"
    half=$(($2 / 2))
    head -c "${half}M" /dev/urandom > "$1/data/random.bin"
    seq 1 100000000 | sed 's/$/ INFO request served in 12ms status=200 path=\/api\/v1\/items/' | head -c "${half}M" > "$1/data/log.txt"
    printf 'FROM busybox\nCOPY data/ /data/\n' > "$1/Dockerfile"
}

now() { date +%s.%N; }
min() { awk 'NR == 1 || $1 < m { m = $1 } END { print m }'; }
max() { awk 'NR == 1 || $1 > m { m = $1 } END { print m }'; }
# Best wall seconds of a shell command ($2) over $runs runs, removing the file $1
# and syncing before each.
timed() {
    i=0
    while [ "$i" -lt "$runs" ]; do
        rm -f "$1"; sync
        t0=$(now)
        sh -c "$2"
        t1=$(now)
        echo "$t1 - $t0" | bc -l
        i=$((i + 1))
    done | min
}
# One run of a command under /usr/bin/time -v: "<wall seconds> <max RSS kB>".
timed_rss() {
    t0=$(now)
    /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
    t1=$(now)
    rss=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$work/time.txt")
    echo "$(echo "$t1 - $t0" | bc -l) $rss"
}

ctx=$work/ctx
make_context "$ctx" "$mb"
tar_mb=$(tar -cf - -C "$ctx" data | wc -c | awk '{ printf "%.1f", $1 / 1e6 }')
# The layer is stored uncompressed, so each export below compresses all of it.
"$bin" build --progress=plain -o type=image,compression=uncompressed -t bench "$ctx" >/dev/null 2>&1

# Drops the layer's compressed variants (index entries and blobs), so that the next
# export compresses the layer again.
drop_variants() {
    for v in "$BUILDER_ROOT"/variants/*.gzip*.json "$BUILDER_ROOT"/variants/*.zstd*.json; do
        [ -e "$v" ] || continue
        digest=$(sed 's/.*"digest":"sha256:\([0-9a-f]*\)".*/\1/' "$v")
        rm -f "$BUILDER_ROOT/blobs/sha256/$digest" "$v"
    done
}
results=$work/results.txt
: > "$results"
# One export of context $2 in compression $1, the layer compressed again: appends
# "$3 <seconds> <max RSS kB>" to the results.
export_once() {
    out=$work/out-$3.tar
    drop_variants; rm -f "$out"; sync
    echo "$3 $(timed_rss "$bin" build --progress=plain -o "type=oci,dest=$out,compression=$1" "$2")" >> "$results"
}
# One run of the shell command $3, which writes the file $2: appends "$1 <seconds>".
ref_once() {
    rm -f "$2"; sync
    t0=$(now); sh -c "$3"; t1=$(now)
    echo "$1 $(echo "$t1 - $t0" | bc -l)" >> "$results"
}
best() { awk -v n="$1" '$1 == n { print $2 }' "$results" | min; }
peak() { awk -v n="$1" '$1 == n { print $3 }' "$results" | max; }

# The references and builder take turns, so that a machine that speeds up or slows
# down during the benchmark weighs on both alike. zstd runs are short: three rounds
# of them per gzip round.
i=0
while [ "$i" -lt "$runs" ]; do
    ref_once ref_gzip "$work/ref.gz" "tar -cf - -C '$ctx' data | gzip -6 > '$work/ref.gz'"
    export_once gzip "$ctx" gzip
    # builder fsyncs the compressed blob it keeps in its store (not the output file):
    # the references made durable too, for a bound on that cost.
    ref_once ref_gzip_sync "$work/ref.gz" "tar -cf - -C '$ctx' data | gzip -6 > '$work/ref.gz' && sync '$work/ref.gz'"
    if command -v pigz >/dev/null 2>&1; then
        ref_once ref_pigz "$work/ref.pigz" "tar -cf - -C '$ctx' data | pigz -6 > '$work/ref.pigz'"
    fi
    for _ in 1 2 3; do
        ref_once ref_zstd "$work/ref.zst" "tar -cf - -C '$ctx' data | zstd -q -T0 -3 > '$work/ref.zst'"
        export_once zstd "$ctx" zstd
        ref_once ref_zstd_sync "$work/ref.zst" "tar -cf - -C '$ctx' data | zstd -q -T0 -3 > '$work/ref.zst' && sync '$work/ref.zst'"
    done
    i=$((i + 1))
done
ref_gzip=$(best ref_gzip); ref_gzip_sync=$(best ref_gzip_sync); ref_pigz=$(best ref_pigz)
ref_zstd=$(best ref_zstd); ref_zstd_sync=$(best ref_zstd_sync)
ours_gzip=$(best gzip); rss_gzip=$(peak gzip)
ours_zstd=$(best zstd); rss_zstd=$(peak zstd)

# Once compressed, a layer's variant is reused: a later zstd export only copies it.
"$bin" build --progress=plain -o "type=oci,dest=$work/warm.tar,compression=zstd" "$ctx" >/dev/null 2>&1
warm_zstd=$(timed "$work/warm.tar" "'$bin' build --progress=plain -o 'type=oci,dest=$work/warm.tar,compression=zstd' '$ctx' >/dev/null 2>&1")

# Memory for a layer a tenth the size: it must not grow with the layer.
small=$work/small
make_context "$small" $((mb / 10))
"$bin" build --progress=plain -o type=image,compression=uncompressed "$small" >/dev/null 2>&1
export_once gzip "$small" small-gzip; rss_small_gzip=$(peak small-gzip)
export_once zstd "$small" small-zstd; rss_small_zstd=$(peak small-zstd)

rate() { echo "$tar_mb / $1" | bc -l | awk '{ printf "%.0f", $1 }'; }
ratio() { echo "$2 / $1" | bc -l | awk '{ printf "%.2f", $1 }'; }
echo "layer: $tar_mb MB of tar ($(nproc) cores, best of $runs gzip and $((3 * runs)) zstd runs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-28s %8s %10s %12s\n' "" "seconds" "MB/s" "max RSS"
printf '%-28s %8.2f %10s %12s\n' "tar | gzip -6" "$ref_gzip" "$(rate "$ref_gzip")" ""
[ -n "$ref_pigz" ] && printf '%-28s %8.2f %10s %12s\n' "tar | pigz -6" "$ref_pigz" "$(rate "$ref_pigz")" ""
printf '%-28s %8.2f %10s %12s\n' "tar | zstd -T0 -3" "$ref_zstd" "$(rate "$ref_zstd")" ""
printf '%-28s %8.2f %10s %12s\n' "tar | gzip -6, fsynced" "$ref_gzip_sync" "$(rate "$ref_gzip_sync")" ""
printf '%-28s %8.2f %10s %12s\n' "tar | zstd -T0 -3, fsynced" "$ref_zstd_sync" "$(rate "$ref_zstd_sync")" ""
printf '%-28s %8.2f %10s %9s kB\n' "builder export gzip" "$ours_gzip" "$(rate "$ours_gzip")" "$rss_gzip"
printf '%-28s %8.2f %10s %9s kB\n' "builder export zstd" "$ours_zstd" "$(rate "$ours_zstd")" "$rss_zstd"
printf '%-28s %8.2f %10s %12s\n' "builder export zstd, reused" "$warm_zstd" "$(rate "$warm_zstd")" ""
printf '%-28s %8s %10s %9s kB\n' "  (layer of $((mb / 10)) MB) gzip" "" "" "$rss_small_gzip"
printf '%-28s %8s %10s %9s kB\n' "  (layer of $((mb / 10)) MB) zstd" "" "" "$rss_small_zstd"
echo "throughput ratio, builder gzip / tar|gzip:     $(ratio "$ours_gzip" "$ref_gzip")"
[ -n "$ref_pigz" ] && echo "throughput ratio, builder gzip / tar|pigz:     $(ratio "$ours_gzip" "$ref_pigz")"
echo "throughput ratio, builder zstd / tar|zstd -T0: $(ratio "$ours_zstd" "$ref_zstd")"
echo "same, against the fsynced references: gzip $(ratio "$ours_gzip" "$ref_gzip_sync"), zstd $(ratio "$ours_zstd" "$ref_zstd_sync")"
ls -l "$work/ref.gz" "$work/ref.zst" "$work/out-gzip.tar" "$work/out-zstd.tar" | awk '{ print $5, $9 }'
