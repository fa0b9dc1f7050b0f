#!/usr/bin/env bash
# bench/trace.sh - what tracing costs: the pi job and a map of 10^6 small
# items, on threads and on processes, with the trace off and on.  Runs are
# interleaved (off, on, off, on, ...) in the same run so that the machine's
# load falls on both alike; medians of RUNS runs (default 5).  Run through
# bench/run trace.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-5}
NPI=${NPI:-2000000000}  # points of the pi job
NMAP=${NMAP:-1000000}   # items of the map
W=${W:-2}

med() { python3 -c 'import sys, statistics; print(statistics.median(map(float, sys.argv[1:])))' "$@"; }

printf '%-28s %12s %12s %9s %12s\n' job "off s" "on s" "cost" "write s"
for job in "pi $NPI" "map $NMAP"; do
  for be in threads processes; do
    off=() on=() wr=()
    for _ in $(seq "$runs"); do
      read -r s _ < <("$bin/trace_bench" $job "$be" "$W" off)
      off+=("$s")
      read -r s w < <("$bin/trace_bench" $job "$be" "$W" on)
      on+=("$s")
      wr+=("$w")
    done
    a=$(med "${off[@]}") b=$(med "${on[@]}") c=$(med "${wr[@]}")
    printf '%-28s %12.4f %12.4f %+8.1f%% %12.4f\n' "${job% *} ${job#* } $be W=$W" \
      "$a" "$b" "$(python3 -c "print(100*($b/$a-1))")" "$c"
  done
done
