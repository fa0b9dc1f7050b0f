#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/executor.sh - the thread executor against Python's ThreadPoolExecutor
# and OpenMP tasks: submit+result of N no-op tasks, map over N items (2
# workers), and the memory of 10^6 pending futures.  Medians of RUNS runs
# (default 5), side by side in one run.  Run through bench/run executor.
#
# Each row gives the wall-clock rate and the CPU time per item (all threads,
# user + system).  On a machine shared with other jobs the wall-clock rate
# says how much CPU the program was given; the CPU time says what the work
# costs.
set -euo pipefail
here=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-5}
N=${N:-1000000}          # manyhands and OpenMP tasks
NMAP=${NMAP:-100000000}  # manyhands map items
NPY=${NPY:-20000}        # Python (about 100x slower)
NPYMEM=${NPYMEM:-100000} # Python pending futures (scaled to 10^6)

# median CMD...: run CMD $runs times; print the median of each column.
. "$here/common.bash"
median() { bench_median_cols "$@"; }

py="python3 $here/executor_peer.py"
res=()
for mode in submit warm batch; do
  res+=("$(median "$bin/executor_bench" "$mode" "$N" 2)")
  res+=("$(median $py "$mode" "$NPY" 2)")
done
res+=("$(median "$bin/executor_bench" map "$NMAP" 2)")
res+=("$(median $py map "$NPY" 2)")
res+=("$(median "$bin/executor_bench" mem 1000000)")
res+=("$(median $py mem "$NPYMEM")")
omp="- -"
if [ -x "$bin/executor_omp" ]; then omp=$(median "$bin/executor_omp" "$N" 2); fi
load=$(cut -d' ' -f1 /proc/loadavg)

python3 - "$NPYMEM" "$load" "$omp" "${res[@]}" <<'PY'
import sys
npymem, load, omp, *r = sys.argv[1:]
def pair(s): return [float(x) for x in s.split()]
names = ["submit N, then result each (fresh)", "the same, second round (warm)",
         "submit+result in rounds of 1024", "map over no-op items"]
print(f"2 workers, medians; load average {load} on {__import__('os').cpu_count()} CPUs")
print(f"{'benchmark':36} {'manyhands':>10} {'Python':>10} {'ratio':>7}   "
      f"{'CPU ns/item: mh':>15} {'Python':>8} {'ratio':>6}")
for i, name in enumerate(names):
    (a, ac), (b, bc) = pair(r[2 * i]), pair(r[2 * i + 1])
    print(f"{name:36} {a/1e6:7.2f} M/s {b/1e6:7.3f} M/s {a/b:6.0f}x   "
          f"{ac:15.1f} {bc:8.0f} {bc/ac:5.0f}x")
if omp != "- -":
    o, oc = pair(omp)
    a, ac = pair(r[0])
    print(f"{'OpenMP tasks (peer of row 1)':36} {o/1e6:7.2f} M/s {'':>10} "
          f"{'':>7}   {oc:15.1f}   (manyhands rate {a/o:.2f}x OpenMP's, "
          f"CPU per task {ac/oc:.1f}x OpenMP's)")
mh_mem, py_mem = float(r[8]), float(r[9]) * 1e6 / float(npymem)
print(f"{'memory of 10^6 pending futures':36} {mh_mem:7.1f} MB {py_mem:7.0f} MB "
      f"{py_mem/mh_mem:6.1f}x   (Python measured with {int(float(npymem))}, scaled)")
PY
