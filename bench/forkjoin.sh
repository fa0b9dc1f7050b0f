#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/forkjoin.sh - fork-join on the thread executor beside oneTBB and
# OpenMP: a binary tree of spawn + join per node (LEAVES leaves) on 1 and 2
# workers, parallel_for of a no-op body over NFOR indices and
# parallel_reduce of a sum over NRED doubles on 2 workers.  Medians of RUNS
# runs (default 5), the peers interleaved run by run (manyhands, oneTBB,
# OpenMP, manyhands, ...) so that a change of the machine's load falls on
# all three alike.  Run through bench/run forkjoin.  A peer that was not
# built (no oneTBB, no OpenMP) shows "-".
#
# The tree rows use spawn records (mh_spawn / mh_spawn_join); the
# "futures" row is the same tree written with mh_executor_submit and
# mh_future_result inside the tasks (no peer: TBB and OpenMP have no
# futures form of a task).
#
# Each row gives wall-clock ns per unit and CPU ns per unit (all threads):
# on a loaded machine the wall clock says how much CPU the program got.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-5}
LEAVES=${LEAVES:-1000000}
NFOR=${NFOR:-100000000}
NRED=${NRED:-100000000}

. "${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}/common.bash"
median() { bench_median_lines; }

# rows MODE N WORKERS: the medians of manyhands, oneTBB and OpenMP, run
# interleaved, one result line each.
rows() {
  local peers=(forkjoin_bench forkjoin_tbb forkjoin_omp) outs=("" "" "")
  for _ in $(seq "$runs"); do
    for i in 0 1 2; do
      [ -x "$bin/${peers[$i]}" ] && outs[$i]+="$("$bin/${peers[$i]}" "$@")"$'\n'
    done
  done
  for i in 0 1 2; do printf '%s' "${outs[$i]}" | median; done
}

res=()
for spec in "tree $LEAVES 1" "tree $LEAVES 2" "for $NFOR 2" "reduce $NRED 2"; do
  while IFS= read -r l; do res+=("$l"); done < <(rows $spec)
done
ftree=""
for _ in $(seq "$runs"); do ftree+="$("$bin/forkjoin_bench" ftree "$LEAVES" 1)"$'\n'; done
res+=("$(printf '%s' "$ftree" | median)" "- - -" "- - -")
load=$(cut -d' ' -f1 /proc/loadavg)

python3 - "$load" "${res[@]}" <<'PY'
import sys, os
load, *r = sys.argv[1:]
names = ["fork-join tree, 1 worker (per spawn+join)",
         "fork-join tree, 2 workers (per spawn+join)",
         "parallel_for no-op, 2 workers (per index)",
         "parallel_reduce sum, 2 workers (per index)",
         "futures tree, 1 worker (per submit+result)"]
print(f"medians of runs; load average {load} on {os.cpu_count()} CPUs")
print(f"{'benchmark':44} {'wall ns: mh':>11} {'TBB':>8} {'OpenMP':>8}  "
      f"{'CPU ns: mh':>10} {'TBB':>8} {'OpenMP':>8}  {'mh/TBB':>7} {'mh/OMP':>7} (wall speed ratios)")
def f(s):
    v = s.split()
    return None if v[0] == "-" else (float(v[1]), float(v[2]))
def fmt(x, i): return f"{x[i]:8.2f}" if x else f"{'-':>8}"
for i, name in enumerate(names):
    m, t, o = (f(x) for x in r[3 * i:3 * i + 3])
    rt = f"{t[0] / m[0]:6.2f}x" if t else f"{'-':>7}"
    ro = f"{o[0] / m[0]:6.2f}x" if o else f"{'-':>7}"
    print(f"{name:44} {m[0]:11.2f} {fmt(t,0)} {fmt(o,0)}  {m[1]:10.2f} {fmt(t,1)} {fmt(o,1)}  {rt} {ro}")
PY
