#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/queue.sh - bounded queue throughput, 1 -> 1 and 2 -> 2 (maxsize 1024,
# 8-byte items): mh_queue with single put/get and with put_many/get_many
# batches of 64, beside Python's queue.Queue doing the same (bench/queue_peer.py).
# Medians of RUNS runs (default 5), interleaved so that load changes on a
# shared machine hit every contender alike.  Each cell is items per second of
# wall time, and in brackets items per second of CPU time the process used,
# which changes less with the load of a shared machine.  Run by
# `bench/run queue`.
# Env: MH_BENCH_BIN (dir of queue_bench), N (C items, default 4e6),
# PY_N (Python items, default 1e5), RUNS, MAXSIZE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${MH_BENCH_BIN:-$here/../build-bench/bench}
runs=${RUNS:-5}
n=${N:-4e6}
py_n=${PY_N:-1e5}
maxsize=${MAXSIZE:-1024}
. "$here/common.bash"
bench_start queue queue_bench

# Each run appends "wall cpu" to the contender's file (record).
for pc in 1 2; do
  for ((r = 0; r < runs; r++)); do
    "$bin/queue_bench" -p $pc -c $pc -n "$n" -m "$maxsize" | record "$tmp/mh1.$pc"
    "$bin/queue_bench" -p $pc -c $pc -n "$n" -m "$maxsize" -b 64 | record "$tmp/mh64.$pc"
    if [ $have_py = 1 ]; then
      python3 "$here/queue_peer.py" -p $pc -c $pc -n "$py_n" -m "$maxsize" | record "$tmp/py.$pc"
    fi
  done
done

median() { bench_median_file "$@"; } # median FILE COLUMN
fmt() { awk -v x="$1" 'BEGIN { if (x >= 1e6) printf "%.2fM", x / 1e6; else printf "%.0fk", x / 1e3 }'; }
cell() { echo "$(fmt "$(median "$1" 1)") ($(fmt "$(median "$1" 2)"))"; }
ratio() {
  awk -v a="$(median "$1" "$3")" -v b="$(median "$2" "$3")" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else printf "-" }'
}

echo "bounded queue, maxsize $maxsize, 8-byte items: items/s of wall time (items/s of CPU time), median of $runs runs"
echo "(C: $n items per run, Python: $py_n; load average $load0 -> $(cut -d' ' -f1 /proc/loadavg) on $(nproc) CPUs)"
echo
printf '| %-6s | %-18s | %-22s | %-16s | %-16s | %-16s |\n' \
  "P -> C" "mh_queue put/get" "mh_queue batches of 64" "Python queue" "put/get : Py" "batch : Py"
printf '|%s|%s|%s|%s|%s|%s|\n' "--------" "--------------------" "------------------------" \
  "------------------" "------------------" "------------------"
for pc in 1 2; do
  if [ $have_py = 1 ]; then
    py=$(cell "$tmp/py.$pc")
    r1="$(ratio "$tmp/mh1.$pc" "$tmp/py.$pc" 1) ($(ratio "$tmp/mh1.$pc" "$tmp/py.$pc" 2))"
    r64="$(ratio "$tmp/mh64.$pc" "$tmp/py.$pc" 1) ($(ratio "$tmp/mh64.$pc" "$tmp/py.$pc" 2))"
  else
    py="absent" r1="-" r64="-"
  fi
  printf '| %-6s | %-18s | %-22s | %-16s | %-16s | %-16s |\n' "$pc -> $pc" \
    "$(cell "$tmp/mh1.$pc")" "$(cell "$tmp/mh64.$pc")" "$py" "$r1" "$r64"
done

# Ping-pong: one item handed back and forth between two threads, per queue
# shape, beside a plain mutex + condition variable; idle, then with LOAD
# busy processes that queue_bench starts and stops itself (threads outnumber
# cores, as on a shared machine).
load=${LOAD:-4}
pp_n=${PP_N:-3000}
echo
echo "ping-pong, us per hand-off (one run each, $pp_n rounds): idle | with $load busy processes"
"$bin/queue_bench" -P -n "$pp_n" >"$tmp/pp.idle"
"$bin/queue_bench" -P -n "$pp_n" -l "$load" >"$tmp/pp.load"
paste -d' ' "$tmp/pp.idle" "$tmp/pp.load" |
  awk '{printf "| %-14s | %10s | %10s |\n", $1, $2, $5}'
