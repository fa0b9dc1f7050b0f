#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/trace.sh - what tracing costs: the pi job and a map of 10^6 small
# items, on threads and on processes, with the trace off and on.  Runs are
# interleaved (off, on, off, on, ...) in the same run so that the machine's
# load falls on both alike; medians of RUNS runs (default 5).  Run through
# bench/run trace.  Wall-clock seconds of the work and CPU seconds of the
# whole program (with its workers) are both given: on a loaded machine the
# CPU time is the steadier measure of what tracing adds.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-5}
NPI=${NPI:-2000000000}  # points of the pi job
NMAP=${NMAP:-1000000}   # items of the map
W=${W:-2}

med() { python3 -c 'import sys, statistics; print(statistics.median(map(float, sys.argv[1:])))' "$@"; }

printf '%-28s %9s %9s %8s %9s %9s %8s %8s\n' job "off s" "on s" "cost" \
  "off cpu" "on cpu" "cost" "write s"
for job in "pi $NPI" "map $NMAP"; do
  for be in threads processes; do
    off=() on=() wr=() offc=() onc=()
    for _ in $(seq "$runs"); do
      read -r s _ c < <("$bin/trace_bench" $job "$be" "$W" off)
      off+=("$s")
      offc+=("$c")
      read -r s w c < <("$bin/trace_bench" $job "$be" "$W" on)
      on+=("$s")
      onc+=("$c")
      wr+=("$w")
    done
    a=$(med "${off[@]}") b=$(med "${on[@]}") c=$(med "${wr[@]}")
    ca=$(med "${offc[@]}") cb=$(med "${onc[@]}")
    printf '%-28s %9.4f %9.4f %+7.1f%% %9.4f %9.4f %+7.1f%% %8.4f\n' \
      "${job% *} ${job#* } $be W=$W" "$a" "$b" "$(python3 -c "print(100*($b/$a-1))")" \
      "$ca" "$cb" "$(python3 -c "print(100*($cb/$ca-1))")" "$c"
  done
done
