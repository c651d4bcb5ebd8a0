#!/usr/bin/env bash
# Memory of `stele serve` under a sender that outruns it: stele-load drives the
# server far past what the disk commits (many clients, large batches, no pacing), so
# most requests are refused with 503/429 + Retry-After while the queue stays full.
# Samples the server's RSS every 5 s; the figure is whether it stays flat.
#
# usage: bench/overload_rss.sh [SECONDS] [ROUTE]   (default 300 s; ROUTE events|k8s)
# needs: a release build (cargo build --release -p stele -p stele-server)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
secs=${1:-300}
route=${2:-events}
work=${STELE_BENCH_DIR:-/tmp/stele-overload}
port=${STELE_BENCH_PORT:-7391}
bin="$repo/target/release"
rm -rf "$work"; mkdir -p "$work"
"$bin/stele" init --data "$work/data" --origin bench.example/overload >/dev/null 2>&1
"$bin/stele" serve --data "$work/data" --listen "127.0.0.1:$port" 2>"$work/serve.log" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
sleep 1
flag=""; [ "$route" = k8s ] && flag="--k8s"
"$bin/stele-load" --url "http://127.0.0.1:$port" $flag --concurrency 256 --batch 2000 --duration "${secs}s" \
  > "$work/load.txt" 2>&1 &
load=$!
echo "t_s rss_mb"
t=0
while kill -0 "$load" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "$t $((rss / 1024))"
  sleep 5; t=$((t + 5))
done
wait "$load" || true
cat "$work/load.txt"
awk '/VmHWM/ {print "peak rss: " int($2/1024) " MB"}' "/proc/$pid/status"
