#!/usr/bin/env bash
# Import and verify throughput of stele on real Kubernetes audit events, beside the
# physical limits of this machine (openssl dgst -sha256; cat > file; sync) and the
# nearest tamper-evident peer (systemd journal with Forward Secure Sealing), on the
# same events, all durable. Prints one line per measurement.
#
# usage: bench/import_verify.sh [MB] [RUNS]     (default 200 MB, 3 runs; median shown)
# needs: a release build (cargo build --release), python3, openssl,
#        systemd-journal-remote (apt-get install systemd-journal-remote)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mb=${1:-200}
runs=${2:-3}
work=${STELE_BENCH_DIR:-/tmp/stele-bench}
stele="$repo/target/release/stele"
mkdir -p "$work"
events="$work/k8s-$mb.jsonl"
[ -s "$events" ] || python3 "$here/gen_k8s.py" --mb "$mb" > "$events"
bytes=$(stat -c %s "$events")
count=$(wc -l < "$events")
echo "data: $count events, $bytes bytes ($(python3 -c "print(round($bytes/$count))") bytes/event)"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate() { python3 -c "import sys; s=float(sys.argv[1]); print('%.0f MB/s, %.0f events/s' % ($bytes/1e6/s, $count/s))" "$1"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

# Baselines: the physical limits.
t=$(for i in $(seq "$runs"); do s=$(now); openssl dgst -sha256 "$events" >/dev/null; e=$(now); secs "$s" "$e"; done | median)
echo "baseline openssl dgst -sha256: $t s ($(rate "$t"))"
t=$(for i in $(seq "$runs"); do rm -f "$work/copy"; sync; s=$(now); cat "$events" > "$work/copy"; sync; e=$(now); secs "$s" "$e"; done | median)
echo "baseline cat > file; sync: $t s ($(rate "$t"))"
rm -f "$work/copy"

# stele import and verify.
t_imp=(); t_ver=()
for i in $(seq "$runs"); do
  rm -rf "$work/data"; sync; sleep 1
  "$stele" init --data "$work/data" --origin bench.example/log >/dev/null 2>&1
  s=$(now); "$stele" import --data "$work/data" "$events" >/dev/null 2>&1; e=$(now); t_imp+=("$(secs "$s" "$e")")
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  s=$(now); "$stele" verify --data "$work/data" >/dev/null 2>&1; e=$(now); t_ver+=("$(secs "$s" "$e")")
done
t=$(printf '%s\n' "${t_imp[@]}" | median); echo "stele import (fsynced): $t s ($(rate "$t"))"
t=$(printf '%s\n' "${t_ver[@]}" | median); echo "stele verify (cold cache): $t s ($(rate "$t"))"
disk=$(du -sb "$work/data" | cut -f1)
echo "stele bytes on disk: $disk ($(python3 -c "print('%.3f' % ($disk/$bytes))")x the raw JSON; tree and index included)"

# systemd journal with Forward Secure Sealing.
if [ -x /lib/systemd/systemd-journal-remote ]; then
  python3 "$here/journal_export.py" < "$events" > "$work/events.export"
  mkdir -p "/var/log/journal/$(cat /etc/machine-id)"
  key=$(journalctl --setup-keys --interval=15min --force 2>/dev/null)
  t=$(for i in $(seq "$runs"); do rm -f "$work"/out*.journal; sync; s=$(now); /lib/systemd/systemd-journal-remote --seal=yes --compress=yes -o "$work/out.journal" - < "$work/events.export" >/dev/null 2>&1; sync; e=$(now); secs "$s" "$e"; done | median)
  echo "journal FSS write (systemd-journal-remote, then sync): $t s ($(rate "$t"))"
  t=$(for i in $(seq "$runs"); do s=$(now); journalctl --file="$work/out*.journal" --verify --verify-key="$key" >/dev/null 2>&1; e=$(now); secs "$s" "$e"; done | median)
  echo "journal FSS verify: $t s ($(rate "$t"))"
  echo "journal files (it rotates at ~128 MB): $(ls "$work"/out*.journal | wc -l); bytes on disk: $(cat "$work"/out*.journal | wc -c)"
  journalctl --file="$work/out*.journal" --verify --verify-key="$key" 2>&1 | grep -c PASS | sed 's/^/journal files that PASS verification: /'
  rm -f "$work"/out*.journal
  rm -f "$work/events.export"
else
  echo "journal FSS: skipped (apt-get install systemd-journal-remote)"
fi
