#!/usr/bin/env bash
# bench/executor.sh - the thread executor against Python's ThreadPoolExecutor
# and OpenMP tasks: submit+result of N no-op tasks, map over N items (2
# workers), and the memory of 10^6 pending futures.  Medians of RUNS runs
# (default 5), side by side in one run.  Run through bench/run executor.
set -euo pipefail
here=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
bin=${MH_BENCH_BIN:?run through bench/run}
runs=${RUNS:-5}
N=${N:-1000000}        # manyhands and OpenMP tasks
NMAP=${NMAP:-100000000} # manyhands map items
NPY=${NPY:-20000}       # Python (about 100x slower)
NPYMEM=${NPYMEM:-200000}

# median CMD...: run CMD $runs times, print the median of the numbers.
median() {
  local vals=()
  for _ in $(seq "$runs"); do vals+=("$("$@")"); done
  printf '%s\n' "${vals[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

py="python3 $here/executor_peer.py"
mh_submit=$(median "$bin/executor_bench" submit "$N" 2)
mh_warm=$(median "$bin/executor_bench" warm "$N" 2)
mh_batch=$(median "$bin/executor_bench" batch "$N" 2)
mh_map=$(median "$bin/executor_bench" map "$NMAP" 2)
mh_mem=$(median "$bin/executor_bench" mem 1000000)
py_submit=$(median $py submit "$NPY" 2)
py_warm=$(median $py warm "$NPY" 2)
py_batch=$(median $py batch "$NPY" 2)
py_map=$(median $py map "$NPY" 2)
py_mem=$(median $py mem "$NPYMEM")
omp="-"
if [ -x "$bin/executor_omp" ]; then omp=$(median "$bin/executor_omp" "$N" 2); fi

python3 - "$mh_submit" "$mh_warm" "$mh_batch" "$mh_map" "$mh_mem" \
  "$py_submit" "$py_warm" "$py_batch" "$py_map" "$py_mem" "$omp" "$NPYMEM" <<'PY'
import sys
(mh_submit, mh_warm, mh_batch, mh_map, mh_mem, py_submit, py_warm, py_batch,
 py_map, py_mem, omp, npymem) = sys.argv[1:]
f = float
def rate(x): return f"{f(x)/1e6:8.2f} M/s"
omp_txt = rate(omp) if omp != "-" else "      -"
print(f"median of runs; 2 workers; manyhands N tasks as set by N/NMAP, Python NPY")
print(f"{'benchmark':34} {'manyhands':>12} {'Python TPE':>12} {'ratio':>8} {'OpenMP tasks':>13}")
rows = [
    ("submit+result, fresh memory", mh_submit, py_submit),
    ("submit+result, second round", mh_warm, py_warm),
    ("submit+result, rounds of 1024", mh_batch, py_batch),
    ("map over no-op items", mh_map, py_map),
]
for name, a, b in rows:
    extra = omp_txt if name.startswith("submit+result, fresh") else ""
    print(f"{name:34} {rate(a):>12} {rate(b):>12} {f(a)/f(b):7.0f}x {extra:>13}")
py_mem_1m = f(py_mem) * 1e6 / f(npymem)
print(f"{'memory of 10^6 pending futures':34} {f(mh_mem):9.1f} MB {py_mem_1m:9.1f} MB "
      f"{py_mem_1m/f(mh_mem):7.1f}x  (Python measured at {int(f(npymem))}, scaled)")
PY
