#!/bin/sh
# Remote-cache benchmark: a CI runner with an empty store builds a project twice —
# once with no cache at all, once importing a warm cache from a registry on
# 127.0.0.1 (`--cache-from type=registry,...`, exported beforehand with mode=max by
# another "runner"). Prints both wall times and their ratio; the work the cache
# saves is a toolchain stage (CPU-bound shell loops writing ~30 MB of "objects")
# and a test step. Target: the warm run costs a small fraction of the cold one.
# Needs root and docker-registry (apt-get install docker-registry).
# Usage: sh bench/cache-registry.sh [WORK]   (default 2000000 loop iterations)
set -eu
cd "$(dirname "$0")/.."
work_units=${1:-2000000}
[ -n "${BUILDER_BIN:-}" ] || cargo build --release --quiet
bin=${BUILDER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/builder}
command -v docker-registry >/dev/null || apt-get install -y -qq docker-registry >/dev/null
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
work=$(mktemp -d)
registry_pid=
cleanup() {
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "docker-registry did not start" >&2; exit 1; }
    sleep 0.1
done

export SOURCE_DATE_EPOCH=1700000000
sh testdata/make-busybox-rootfs.sh "$work/busybox.tar"
ctx="$work/ctx"
mkdir -p "$ctx/src"
for n in 1 2 3 4 5 6 7 8; do head -c 4096 /dev/urandom > "$ctx/src/m$n.c"; done
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM busybox AS toolchain
RUN i=0; while [ \$i -lt $work_units ]; do i=\$((i+1)); done; mkdir -p /opt/tc && head -c 30000000 /dev/urandom > /opt/tc/lib.a

FROM toolchain AS build
COPY src/ /src/
RUN i=0; while [ \$i -lt $((work_units / 2)) ]; do i=\$((i+1)); done; cat /src/*.c | sha256sum > /app.bin

FROM build AS test
RUN i=0; while [ \$i -lt $((work_units / 4)) ]; do i=\$((i+1)); done; test -s /app.bin && touch /tests-passed

FROM busybox
COPY --from=build /app.bin /app.bin
COPY --from=test /tests-passed /tests-passed
CMD ["cat", "/app.bin"]
DOCKERFILE

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
fresh_store() {
    rm -rf "$work/store"
    "$bin" --root "$work/store" import "$work/busybox.tar" busybox:latest >/dev/null
}
cache="127.0.0.1:$port/team/app-cache:main"

# The runner that warms the cache.
fresh_store
"$bin" --root "$work/store" build --progress=plain --cache-to "type=registry,ref=$cache,mode=max" \
    -t bench:warmup "$ctx" > "$work/warmup.log" 2>&1 || { cat "$work/warmup.log"; exit 1; }

# A fresh runner without a cache.
fresh_store
sync
t0=$(now)
"$bin" --root "$work/store" build --progress=plain -t bench:cold "$ctx" > "$work/cold.log" 2>&1
t1=$(now)
cold=$(elapsed "$t0" "$t1")

# A fresh runner with the warm remote cache.
fresh_store
sync
t0=$(now)
"$bin" --root "$work/store" build --progress=plain --cache-from "type=registry,ref=$cache" \
    -t bench:warm "$ctx" > "$work/warm.log" 2>&1
t1=$(now)
warm=$(elapsed "$t0" "$t1")
ran=$(grep -c ' DONE ' "$work/warm.log" || true)
cached=$(grep -c ' CACHED' "$work/warm.log" || true)

printf 'cold CI run, no cache:          %6.2f s\n' "$cold"
printf 'cold CI run, warm remote cache: %6.2f s  (%s steps cached, %s done)\n' "$warm" "$cached" "$ran"
printf 'ratio warm/cold: %.3f  (speed-up %.1fx)\n' "$(echo "$warm / $cold" | bc -l)" "$(echo "$cold / $warm" | bc -l)"
