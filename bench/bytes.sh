#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/bytes.sh - a process-pool map whose items return variable-size bytes
# (mh_executor_map_bytes) beside Python's multiprocessing.Pool.map returning
# bytes of the same sizes; one worker per CPU, medians of RUNS runs (default
# 5).  Run through bench/run bytes (which sets MH_BENCH_BIN).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${MH_BENCH_BIN:-$here/../build-bench/bench}
runs=${RUNS:-5}
py=${PYTHON:-python3}
n=${N_BYTES:-1000000}      # items (manyhands)
npy=${N_BYTES_PY:-100000}  # items (Python)
# Items of 0..64 KiB: the same count for both.  The results are kept until
# the map returns (160 MiB at 5,000), and fresh memory is not a fixed cost
# per byte on every host: on the 2-core VM this was measured on, 20,000
# items (640 MiB) ran at a tenth of the items/s of 5,000 (the kernel's
# page clearing, 85% of the time), Python's Pool.map at three quarters.
nbig=${N_BIG:-5000}
nbigpy=${N_BIG_PY:-$nbig}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
med() { for _ in $(seq "$runs"); do "$@"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1fx", (b > 0 ? a / b : 0)}'; }

mh_s=$(med "$bin/bytes_bench" map "$n" 256)
py_s=$(med $py "$here/bytes_peer.py" map "$npy" 256)
mh_b=$(med "$bin/bytes_bench" map "$nbig" 65536)
py_b=$(med $py "$here/bytes_peer.py" map "$nbigpy" 65536)

echo "map returning variable-size bytes, $(nproc) CPUs, medians of $runs runs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-36s %14s %14s %9s\n' "case (items/s)" "manyhands" "Pool.map" "ratio"
printf '%-36s %14s %14s %9s\n' "results of 0..256 B" "$mh_s" "$py_s" "$(ratio "$mh_s" "$py_s")"
printf '%-36s %14s %14s %9s\n' "results of 0..64 KiB" "$mh_b" "$py_b" "$(ratio "$mh_b" "$py_b")"
echo "(target: >= 50x Pool.map)"
