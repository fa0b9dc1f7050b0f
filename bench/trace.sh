#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/trace.sh - what tracing costs: the pi job and a map of 10^6 small
# items, on threads and on processes.  Three builds of the same program run
# side by side: the hooks compiled out (a second build, MH_TRACE_HOOKS=OFF,
# made here beside bench/run's), the hooks in but the trace off (what every
# user runs), and the trace on.  Two rows per job: "off vs out" is what the
# hooks cost when nobody traces, "on vs off" what recording costs.  Runs are
# interleaved, in turn out-off-on and on-off-out, so that the machine's
# load falls on all alike; medians of RUNS runs (default 9: a pi run is
# half a second, and five medians of it still moved by 5 %).  Run through
# bench/run trace.
# Wall-clock seconds of the work and CPU seconds of the whole program (with
# its workers) are both given: on a loaded machine the CPU time is the
# steadier measure of what tracing adds.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-9}
NPI=${NPI:-2000000000}  # points of the pi job
NMAP=${NMAP:-1000000}   # items of the map
W=${W:-2}

# The hooks-out build: only the library and this one program.
root=$(cd "${MH_BENCH_DIR:?run through bench/run}/.." && pwd)
out_build="$(dirname "$bin")-nohooks"
cmake -S "$root" -B "$out_build" -DCMAKE_BUILD_TYPE=Release -DMH_TRACE_HOOKS=OFF \
  -DMH_BUILD_TESTS=OFF -DMH_BUILD_EXAMPLES=OFF -DMH_BUILD_CLI=OFF -DMH_WITH_MPI=OFF >/dev/null
cmake --build "$out_build" -j2 --target trace_bench >/dev/null
outbin="$out_build/bench"

med() { python3 -c 'import sys, statistics; print(statistics.median(map(float, sys.argv[1:])))' "$@"; }
pct() { python3 -c "print(100*($2/$1-1))"; }

echo "medians of $runs runs, W=$W workers, $(nproc) CPUs; load average $(cut -d' ' -f1 /proc/loadavg)"
printf '%-40s %9s %9s %8s %9s %9s %8s %8s\n' job "base s" "with s" "cost" \
  "base cpu" "with cpu" "cost" "write s"
for job in "pi $NPI" "map $NMAP"; do
  for be in threads processes; do
    out=() off=() on=() wr=() outc=() offc=() onc=()
    for r in $(seq "$runs"); do
      # Odd runs go out, off, on; even runs on, off, out: a drift of the
      # machine's speed over a run (a neighbour starting, the page cache
      # warming) then falls on every build alike, not on the last one.
      order="out off on"
      ((r % 2)) || order="on off out"
      for m in $order; do
        case $m in
          out)
            read -r s _ c < <("$outbin/trace_bench" $job "$be" "$W" off)
            out+=("$s")
            outc+=("$c")
            ;;
          off)
            read -r s _ c < <("$bin/trace_bench" $job "$be" "$W" off)
            off+=("$s")
            offc+=("$c")
            ;;
          on)
            read -r s w c < <("$bin/trace_bench" $job "$be" "$W" on)
            on+=("$s")
            onc+=("$c")
            wr+=("$w")
            ;;
        esac
      done
    done
    x=$(med "${out[@]}") a=$(med "${off[@]}") b=$(med "${on[@]}") c=$(med "${wr[@]}")
    cx=$(med "${outc[@]}") ca=$(med "${offc[@]}") cb=$(med "${onc[@]}")
    name="${job% *} ${job#* } $be"
    printf '%-40s %9.4f %9.4f %+7.1f%% %9.4f %9.4f %+7.1f%% %8s\n' \
      "$name off vs out" "$x" "$a" "$(pct "$x" "$a")" "$cx" "$ca" "$(pct "$cx" "$ca")" "-"
    printf '%-40s %9.4f %9.4f %+7.1f%% %9.4f %9.4f %+7.1f%% %8.4f\n' \
      "$name on vs off" "$a" "$b" "$(pct "$a" "$b")" "$ca" "$cb" "$(pct "$ca" "$cb")" "$c"
  done
done
