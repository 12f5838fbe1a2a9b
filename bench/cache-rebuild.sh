#!/bin/sh
# Cached-rebuild benchmark: a multi-stage project with a large context (thousands of
# files). Prints the wall time of a cold build, a fully cached rebuild and a
# one-file-change rebuild, as ratios against references measured in the same run:
# a stat walk of the context (find -printf, one lstat per file) and hashing every
# context file (sha256sum). Target: a cached rebuild costs a few stat walks.
# Needs root. Usage: sh bench/cache-rebuild.sh [FILES]   (default 5000; BUILDER_BIN=path skips the build)
set -eu
cd "$(dirname "$0")/.."
files=${1:-5000}
if [ -n "${BUILDER_BIN:-}" ]; then
    bin=$BUILDER_BIN
else
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/builder
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BUILDER_ROOT="$work/store"
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
"$bin" import "$work/busybox.tar" busybox:latest >/dev/null

ctx="$work/ctx"
mkdir -p "$ctx/src" "$ctx/assets" "$ctx/docs"
i=0
while [ $i -lt "$files" ]; do
    d=$((i % 50))
    mkdir -p "$ctx/src/m$d"
    head -c $((1024 + (i % 7) * 1024)) /dev/urandom > "$ctx/src/m$d/f$i.rs"
    i=$((i + 1))
done
head -c 20000000 /dev/urandom > "$ctx/assets/big.bin"
echo "docs" > "$ctx/docs/README.md"
printf 'docs/\n' > "$ctx/.dockerignore"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox AS deps
COPY assets/ /assets/
RUN sha256sum /assets/big.bin > /assets.sum

FROM busybox AS build
COPY src/ /src/
RUN find /src -type f | wc -l > /count && cat /src/m1/f1.rs | wc -c > /size

FROM busybox
COPY --from=deps /assets.sum /
COPY --from=build /count /size /
CMD ["cat", "/count"]
DOCKERFILE

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null

sync
t0=$(now); find "$ctx" -printf '%s %T@\n' > /dev/null; t1=$(now)
stat_walk=$(elapsed "$t0" "$t1")
t0=$(now); find "$ctx" -type f -print0 | xargs -0 sha256sum > /dev/null; t1=$(now)
hash_all=$(elapsed "$t0" "$t1")

t0=$(now); "$bin" build --progress=plain -t bench:1 "$ctx" >/dev/null 2>&1; t1=$(now)
cold=$(elapsed "$t0" "$t1")
t0=$(now); "$bin" build --progress=plain -t bench:2 "$ctx" >/dev/null 2>&1; t1=$(now)
cached=$(elapsed "$t0" "$t1")
echo "changed" >> "$ctx/src/m1/f1.rs"
t0=$(now); "$bin" build --progress=plain -t bench:3 "$ctx" >/dev/null 2>&1; t1=$(now)
one_file=$(elapsed "$t0" "$t1")

echo "context: $files source files + 20 MB asset"
printf 'reference  stat walk          %8.3fs\n' "$stat_walk"
printf 'reference  sha256sum all      %8.3fs\n' "$hash_all"
printf 'cold build                    %8.3fs  (%sx stat walk, %sx sha256sum)\n' "$cold" "$(ratio "$cold" "$stat_walk")" "$(ratio "$cold" "$hash_all")"
printf 'fully cached rebuild          %8.3fs  (%sx stat walk, %sx sha256sum)\n' "$cached" "$(ratio "$cached" "$stat_walk")" "$(ratio "$cached" "$hash_all")"
printf 'one-file-change rebuild       %8.3fs  (%sx stat walk, %sx sha256sum)\n' "$one_file" "$(ratio "$one_file" "$stat_walk")" "$(ratio "$one_file" "$hash_all")"
