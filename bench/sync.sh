#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/sync.sh - lock acquire+release pairs per second, 1 thread
# (uncontended) and 2 threads (contended), medians of 5 runs, manyhands'
# Lock/RLock/Semaphore beside a plain pthread mutex and Python's
# threading.Lock/RLock.  Run by bench/run sync.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
dir=${MH_BENCH_DIR:-$(dirname "$0")}
runs=5
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # command... -> median ops/s of $runs runs
  for _ in $(seq $runs); do "$@"; done | median
}
printf '%-22s %8s %14s %10s\n' "lock" "threads" "pairs/s" "vs pthread"
for threads in 1 2; do
  n=$((2000000 / threads))
  base=
  for kind in pthread mh_lock mh_lock_timed mh_lock_shared mh_rlock mh_sem; do
    v=$(measure "$bin/sync_lock" $kind $threads $n)
    [ -n "$base" ] || base=$v
    printf '%-22s %8d %14.0f %10.2f\n' "$kind" $threads "$v" "$(echo "$v / $base" | bc -l)"
  done
  pn=$((200000 / threads))
  for kind in lock rlock; do
    v=$(measure python3 "$dir/sync_lock.py" $kind $threads $pn)
    printf '%-22s %8d %14.0f %10.2f\n' "python threading.$kind" $threads "$v" "$(echo "$v / $base" | bc -l)"
  done
done
