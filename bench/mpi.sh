#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/mpi.sh - pi over MPI ranks against the thread backend, same N, same
# answer: 2 ranks x 1 thread and 1 rank x 2 threads under mpiexec, vs
# `manyhands pi N 2` on threads.  Medians of MH_BENCH_RUNS (default 5) runs,
# points/s and the ratio to threads (target >= 0.95).  N defaults to 10^10
# (MH_BENCH_MPI_N to change it).  Needs manyhands-mpi (an MPI build).
set -euo pipefail
cli=${MH_CLI:-build-bench/manyhands}
mpicli=$(dirname "$cli")/manyhands-mpi
n=${MH_BENCH_MPI_N:-10000000000}
runs=${MH_BENCH_RUNS:-5}
if [ ! -x "$mpicli" ] || ! command -v mpiexec >/dev/null; then
  echo "MPI not found: skipped (install openmpi-bin libopenmpi-dev)"; exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
extra=""
# Open MPI binds each rank to one core by default (np <= 2): a rank with P
# threads must not be, or its threads share a core.
# (Open MPI 4's mpiexec calls itself OpenRTE.)
version=$(mpiexec --version 2>/dev/null || true)
case $version in *"Open MPI"* | *OpenRTE*) extra="--oversubscribe --bind-to none" ;; esac

# Points/s of one run, from the JSON line (rank 0's).
pps() { "$@" --json --quiet | sed -n 's/.*"points_per_second":\([0-9.e+]*\).*/\1/p' | head -1; }
. "${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}/common.bash"
median() { bench_median; }

declare -A res
for ((i = 0; i < runs; i++)); do
  # Interleaved, so that load from elsewhere hits all three alike.
  res[threads]+="$(pps "$cli" pi "$n" 2)"$'\n'
  res[r2t1]+="$(pps mpiexec -n 2 $extra "$mpicli" pi "$n" 1 --backend mpi)"$'\n'
  res[r1t2]+="$(pps mpiexec -n 1 $extra "$mpicli" pi "$n" 2 --backend mpi)"$'\n'
done
base=$(printf '%s' "${res[threads]}" | median)
printf '%-28s %14s %8s\n' "N = $n, median of $runs" "points/s" "ratio"
for k in threads r2t1 r1t2; do
  case $k in
    threads) label="threads, 2 workers" ;;
    r2t1) label="mpi, 2 ranks x 1 thread" ;;
    r1t2) label="mpi, 1 rank x 2 threads" ;;
  esac
  m=$(printf '%s' "${res[$k]}" | median)
  printf '%-28s %14.4g %8.3f\n' "$label" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{print a/b}')"
done
