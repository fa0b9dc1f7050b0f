#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/connection.sh - pipe round trip of SIZE bytes (default 64): manyhands
# mh_pipe + mh_conn_send/recv vs Python's multiprocessing.Pipe send_bytes /
# recv_bytes, a child echoing each message.  The runs are interleaved, so a
# shared machine's load falls on both alike; medians of RUNS (default 5).
# Env: MH_BENCH_BIN, MH_BENCH_DIR, RUNS, N (C round trips, default 100000),
# PY_N (default 20000), SIZE.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
dir=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
runs=${RUNS:-5}
n=${N:-100000}
py_n=${PY_N:-20000}
size=${SIZE:-64}

. "$dir/common.bash"
median() { bench_median; }

declare -A vals us
for ((r = 0; r < runs; r++)); do
  vals[mh]+="$("$bin/connection_bench" "$n" "$size" | awk '{print $4}') "
  vals[python]+="$(python3 "$dir/connection_peer.py" "$py_n" "$size" | awk '{print $4}') "
done
for mode in mh python; do
  us[$mode]=$(tr ' ' '\n' <<<"${vals[$mode]}" | grep . | median)
done
printf '%-40s %14s %8s\n' "round trip of $size B (median of $runs)" "us each" "vs py"
printf '%-40s %14.2f %7.2fx\n' "manyhands mh_conn_send+recv" "${us[mh]}" \
  "$(awk -v a="${us[mh]}" -v b="${us[python]}" 'BEGIN {print a / b}')"
printf '%-40s %14.2f %7.2fx\n' "Python multiprocessing.Pipe" "${us[python]}" 1
