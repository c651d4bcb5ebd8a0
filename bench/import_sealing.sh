#!/usr/bin/env bash
# What sealing personal-data fields (docs/erasure.md) costs `stele import`: the same
# real Kubernetes audit events imported without and with an [erasure] rule that seals
# the user name (the subject), the source addresses and the impersonated user, each
# into a fresh data directory, durable. Prints the median of RUNS runs of each and the
# ratio.
#
# usage: bench/import_sealing.sh [MB] [RUNS]     (default 100 MB, 3 runs)
# needs: a release build (cargo build --release -p stele), python3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mb=${1:-100}
runs=${2:-3}
work=${STELE_BENCH_DIR:-/tmp/stele-bench-sealing}
stele="$repo/target/release/stele"
mkdir -p "$work"
events="$work/k8s-$mb.jsonl"
[ -s "$events" ] || python3 "$here/gen_k8s.py" --mb "$mb" > "$events"
bytes=$(stat -c %s "$events")
count=$(wc -l < "$events")
echo "data: $count events, $bytes bytes"

umask 077
[ -s "$work/master.key" ] || python3 -c "import os; print(os.urandom(32).hex())" > "$work/master.key"
: > "$work/plain.toml"
cat > "$work/sealed.toml" <<TOML
[erasure]
master_key = "$work/master.key"
[[erasure.rule]]
stream = "default"
format = "k8s-audit"
subject = "/user/username"
fields = ["/sourceIPs", "/impersonatedUser"]
TOML

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
run() {
  rm -rf "$work/data"; sync; sleep 1
  "$stele" init --data "$work/data" --origin bench.example/log >/dev/null 2>&1
  s=$(now); "$stele" --config "$work/$1.toml" import --data "$work/data" --stream default "$events" >/dev/null 2>"$work/$1.err"; e=$(now)
  secs "$s" "$e"
}
declare -A t
for kind in plain sealed; do
  t[$kind]=$(for i in $(seq "$runs"); do run "$kind"; done | median)
  python3 -c "import sys; s=float(sys.argv[1]); print('%s: %.3f s, %.0f events/s, %.0f MB/s' % (sys.argv[2], s, $count/s, $bytes/1e6/s))" "${t[$kind]}" "$kind"
done
python3 -c "import sys; print('sealed / plain time: %.3f' % (float(sys.argv[2]) / float(sys.argv[1])))" "${t[plain]}" "${t[sealed]}"
