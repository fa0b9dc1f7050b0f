#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/mpqueue.sh - the queue between processes, 1 -> 1: mh_mpqueue beside
# Python's multiprocessing.Queue (bench/mpqueue_peer.py), both with
# maxsize 1024, messages of 64 B (messages/s) and of 64 KiB (bytes/s).
# mh_mpqueue's byte bound is MAXBYTES (default 4 MiB: the ring then stays in
# cache; Python's Queue has no byte bound).  Medians of RUNS runs (default 5),
# interleaved so that load changes on a shared machine hit both alike.  Run
# by `bench/run mpqueue`.
# Env: MH_BENCH_BIN (dir of mpqueue_bench), N64 / PY_N64 (64 B messages per
# run, default 2e6 / 1e5), NBIG / PY_NBIG (64 KiB messages, 1e5 / 2e4), RUNS,
# MAXBYTES.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${MH_BENCH_BIN:-$here/../build-bench/bench}
runs=${RUNS:-5}
n64=${N64:-2e6}
py_n64=${PY_N64:-1e5}
nbig=${NBIG:-1e5}
py_nbig=${PY_NBIG:-2e4}
maxbytes=${MAXBYTES:-4194304}
. "$here/common.bash"
bench_start mpqueue mpqueue_bench

# Each run appends "msgs/s B/s" to the contender's file (record).
for ((r = 0; r < runs; r++)); do
  "$bin/mpqueue_bench" -s 64 -n "$n64" -B "$maxbytes" | record "$tmp/mh.64"
  "$bin/mpqueue_bench" -s 65536 -n "$nbig" -B "$maxbytes" | record "$tmp/mh.big"
  if [ $have_py = 1 ]; then
    python3 "$here/mpqueue_peer.py" -s 64 -n "$py_n64" | record "$tmp/py.64"
    python3 "$here/mpqueue_peer.py" -s 65536 -n "$py_nbig" | record "$tmp/py.big"
  fi
done

median() { bench_median_file "$@"; } # median FILE COLUMN
fmt() { awk -v x="$1" -v u="$2" 'BEGIN { if (x >= 1e9) printf "%.2f G%s", x / 1e9, u; else if (x >= 1e6) printf "%.2f M%s", x / 1e6, u; else printf "%.0f k%s", x / 1e3, u }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else printf "-" }'; }

echo "queue between two processes, 1 -> 1, maxsize 1024 (mh_mpqueue maxbytes $maxbytes): median of $runs runs"
echo "(C: $n64 / $nbig messages per run, Python: $py_n64 / $py_nbig; load average $load0 -> $(cut -d' ' -f1 /proc/loadavg) on $(nproc) CPUs)"
echo
printf '| %-22s | %-14s | %-26s | %-8s |\n' "messages" "mh_mpqueue" "multiprocessing.Queue" "C : Py"
printf '|%s|%s|%s|%s|\n' "------------------------" "----------------" "----------------------------" "----------"
m64=$(median "$tmp/mh.64" 1)
mbig=$(median "$tmp/mh.big" 2)
if [ $have_py = 1 ]; then
  p64=$(median "$tmp/py.64" 1)
  pbig=$(median "$tmp/py.big" 2)
  printf '| %-22s | %-14s | %-26s | %-8s |\n' "64 B, messages/s" "$(fmt "$m64" "")" "$(fmt "$p64" "")" "$(ratio "$m64" "$p64")"
  printf '| %-22s | %-14s | %-26s | %-8s |\n' "64 KiB, bytes/s" "$(fmt "$mbig" B)" "$(fmt "$pbig" B)" "$(ratio "$mbig" "$pbig")"
else
  printf '| %-22s | %-14s | %-26s | %-8s |\n' "64 B, messages/s" "$(fmt "$m64" "")" "absent" "-"
  printf '| %-22s | %-14s | %-26s | %-8s |\n' "64 KiB, bytes/s" "$(fmt "$mbig" B)" "absent" "-"
fi
