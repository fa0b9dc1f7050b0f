#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/process.sh - process start+join per second: manyhands mh_process_*
# vs raw fork()+waitpid() vs Python's multiprocessing.Process, side by side
# in one run.  Medians of RUNS (default 5) runs each; ratios against the
# manyhands figure; also the CPU time (parent + children) per start+join,
# which a busy machine distorts less than the wall-clock rate.  Env: MH_BENCH_BIN (bench binaries), MH_BENCH_DIR,
# RUNS, N (C children per run, default 2000), PY_N (default 300).
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
dir=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
runs=${RUNS:-5}
n=${N:-2000}
py_n=${PY_N:-300}

. "$dir/common.bash"
median() { bench_median; }

# The runs of the three are interleaved (mh, fork, python, mh, ...), so that
# the load of a shared machine falls on all of them alike.
declare -A vals rate cvals cpu
for ((r = 0; r < runs; r++)); do
  for mode in mh fork python; do
    case $mode in
      python) line=$(python3 "$dir/process_peer.py" "$py_n") ;;
      *) line=$("$bin/process_bench" "$mode" "$n") ;;
    esac
    vals[$mode]+="$(awk '{print $4}' <<<"$line") "
    cvals[$mode]+="$(awk '{print $5}' <<<"$line") "
  done
done
for mode in mh fork python; do
  rate[$mode]=$(tr ' ' '\n' <<<"${vals[$mode]}" | grep . | median)
  cpu[$mode]=$(tr ' ' '\n' <<<"${cvals[$mode]}" | grep . | median)
done

printf '%-34s %12s %8s %14s %8s\n' "start+join (median of $runs)" "per second" "vs mh" "CPU us / each" "vs mh"
for mode in mh fork python; do
  case $mode in
    mh) label="manyhands mh_process_start+join" ;;
    fork) label="raw fork()+waitpid()" ;;
    python) label="Python multiprocessing.Process" ;;
  esac
  printf '%-34s %12.0f %7.2fx %14.1f %7.2fx\n' "$label" "${rate[$mode]}" \
    "$(awk -v a="${rate[$mode]}" -v b="${rate[mh]}" 'BEGIN {print a / b}')" \
    "${cpu[$mode]}" "$(awk -v a="${cpu[$mode]}" -v b="${cpu[mh]}" 'BEGIN {print a / b}')"
done
