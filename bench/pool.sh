#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/pool.sh - the process pool side by side with Python's
# multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor, all with
# one worker per CPU, same trivial item (x + 1).  Medians of RUNS runs
# (default 5).  Run through bench/run pool (which sets MH_BENCH_BIN).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${MH_BENCH_BIN:-$here/../build-bench/bench}
runs=${RUNS:-5}
py=${PYTHON:-python3}
n1=${N_CHUNK1:-200000}     # items, chunksize 1 (manyhands)
n1py=${N_CHUNK1_PY:-20000} # items, chunksize 1 (Python peers: ~50x slower)
nauto=${N_AUTO:-10000000}  # items, automatic chunking (manyhands)
nautopy=${N_AUTO_PY:-2000000} # items, automatic chunking (Python Pool)
nlat=${N_LAT:-2000}        # submit+result round trips

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
med() { for _ in $(seq "$runs"); do "$@"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", (b > 0 ? a / b : 0)}'; }

mh_c1=$(med "$bin/pool_bench" map "$n1" 1)
mh_auto=$(med "$bin/pool_bench" map "$nauto" 0)
mh_cold=$(med "$bin/pool_bench" map "$nauto" 0 0 cold)
mh_lat=$(med "$bin/pool_bench" submit "$nlat")
py_c1=$(med $py "$here/pool_peer.py" pool-map "$n1py" 1)
py_auto=$(med $py "$here/pool_peer.py" pool-map "$nautopy" 0)
py_lat=$(med $py "$here/pool_peer.py" pool-apply "$nlat")
ppe_c1=$(med $py "$here/pool_peer.py" ppe-map "$((n1py / 4))" 1)
ppe_lat=$(med $py "$here/pool_peer.py" ppe-submit "$((nlat / 2))")

echo "process pool, $(nproc) CPUs, medians of $runs runs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-34s %14s %14s %14s %9s %9s\n' "case" "manyhands" "Pool" "PPExecutor" "vs Pool" "vs PPE"
printf '%-34s %14s %14s %14s %9s %9s\n' "map chunksize 1 (items/s)" "$mh_c1" "$py_c1" "$ppe_c1" \
  "$(ratio "$mh_c1" "$py_c1")" "$(ratio "$mh_c1" "$ppe_c1")"
printf '%-34s %14s %14s %14s %9s %9s\n' "map automatic chunks (items/s)" "$mh_auto" "$py_auto" "-" \
  "$(ratio "$mh_auto" "$py_auto")" "-"
printf '%-34s %14s %14s %14s %9s %9s\n' "  same, output buffer not faulted" "$mh_cold" "-" "-" \
  "$(ratio "$mh_cold" "$py_auto")" "-"
printf '%-34s %14s %14s %14s %9s %9s\n' "submit+result latency (us)" "$mh_lat" "$py_lat" "$ppe_lat" \
  "$(ratio "$py_lat" "$mh_lat")" "$(ratio "$ppe_lat" "$mh_lat")"
echo "(ratios: how many times faster manyhands is; targets on a quiet machine: chunksize 1 >= 1M items/s, automatic >= 100M items/s)"
echo "(the output buffer is written once before timing; the 'not faulted' row times its page faults too: ~25 us each on this VM)"
