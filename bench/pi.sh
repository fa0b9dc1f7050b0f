#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/pi.sh - the pi job side by side with its peers (run by bench/run pi).
#
# manyhands (library, bench/pi_bench) on threads at 1 and 2 workers and on
# processes when that backend is built; the tutorial's Python job
# (bench/pi_peer.py); the OpenMP peers (bench/pi_omp: scalar and 16-lane).
# Medians of PI_REPS (default 5) runs each, in the same session; points/s and
# the ratios to Python and to the lane-parallel OpenMP version; the parallel
# efficiency at 2 workers; the job time of N = 1000.  The machine is shared:
# the load average, the rate per CPU second and the best run are printed too,
# so that contention can be told from slowness.
set -euo pipefail
bin=${MH_BENCH_BIN:?run through bench/run}
dir=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
reps=${PI_REPS:-5}
nbig=${PI_N:-10000000000}      # manyhands and the 16-lane OpenMP peer
nomp=${PI_N_OMP_SCALAR:-1000000000}
npy=${PI_N_PY:-10000000}
out=$(mktemp)
eff=$(mktemp)
trap 'rm -f "$out" "$eff"' EXIT

# row NAME WORKERS N CMD...: run CMD (it prints "seconds cpu-seconds ..." per
# repetition) and record the medians.
row() {
  local name=$1 workers=$2 n=$3
  shift 3
  local lines
  if ! lines=$("$@" 2>/dev/null); then
    echo "$name $workers $n skip - -" >>"$out"
    return
  fi
  local med cpu best
  med=$(printf '%s\n' "$lines" | awk '{print $1}' | median)
  cpu=$(printf '%s\n' "$lines" | awk '{print $2}' | median)
  best=$(printf '%s\n' "$lines" | awk '{print $1}' | sort -g | head -1)
  echo "$name $workers $n $med $cpu $best" >>"$out"
}

# Median of the numbers on stdin ("-" when they are not numbers).
median() {
  sort -g | awk '$1 ~ /^[0-9.]+$/ {a[++k]=$1}
    END {if (!k) print "-"; else print (k%2) ? a[(k+1)/2] : (a[k/2]+a[k/2+1])/2}'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores; other jobs share them)"
# PI_ROWS=0 skips these rows (for the efficiency rows alone).
if [ "${PI_ROWS:-1}" != 0 ]; then
row "manyhands-threads" 1 "$nbig" "$bin/pi_bench" "$nbig" 1 threads "$reps"
row "manyhands-threads" 2 "$nbig" "$bin/pi_bench" "$nbig" 2 threads "$reps"
row "manyhands-processes" 1 "$nbig" "$bin/pi_bench" "$nbig" 1 processes "$reps"
row "manyhands-processes" 2 "$nbig" "$bin/pi_bench" "$nbig" 2 processes "$reps"
if [ -x "$bin/pi_omp" ]; then
  row "openmp-scalar" 2 "$nomp" "$bin/pi_omp" scalar "$nomp" 2 "$reps"
  row "openmp-16-lanes" 1 "$nbig" "$bin/pi_omp" lanes "$nbig" 1 "$reps"
  row "openmp-16-lanes" 2 "$nbig" "$bin/pi_omp" lanes "$nbig" 2 "$reps"
fi
row "python-tutorial" 2 "$npy" python3 "$dir/pi_peer.py" "$npy" 2 "$reps"
row "manyhands-N=1000" 2 1000 "$bin/pi_bench" 1000 2 threads 21
fi

# The efficiency rows: the whole command (`manyhands pi N 1` against `... 2`,
# threads and processes, and the OpenMP 16-lane peer at 1 and 2 threads)
# under /usr/bin/time, interleaved rep by rep so that a change of the load
# falls on all of them alike.  Efficiency = T(1) / (2 T(2)), from the medians
# of the wall times and, paired, the median over reps of each rep's ratio;
# user CPU / wall says how many cores the 2-worker run kept busy.
# PI_EFF=0 skips them (they take about 6 x 2 N / rate seconds per rep).
eff_n=${PI_EFF_N:-20000000000}
eff_n=$(awk -v n="$eff_n" 'BEGIN {printf "%.0f", n}') # 2e10 too (pi_omp wants digits)
eff_reps=${PI_EFF_REPS:-5}
cli=${MH_CLI:-$(dirname "$bin")/manyhands}
if [ "${PI_EFF:-1}" != 0 ] && [ -x "$cli" ]; then
  tf=$(mktemp)
  timed() { # timed LABEL CMD...: append "LABEL wall user"
    local label=$1
    shift
    if /usr/bin/time -o "$tf" -f "%e %U" "$@" >/dev/null 2>&1; then
      echo "$label $(tail -1 "$tf")" >>"$eff"
    fi
  }
  for _ in $(seq "$eff_reps"); do
    for w in 1 2; do
      timed "threads-$w" "$cli" pi "$eff_n" "$w"
      timed "processes-$w" "$cli" pi "$eff_n" "$w" --backend processes
      if [ -x "$bin/pi_omp" ]; then timed "openmp-$w" "$bin/pi_omp" lanes "$eff_n" "$w" 1; fi
    done
  done
  rm -f "$tf"
fi

# The idle rows: on this shared VM a core's speed changes by +-15% from
# one run to the next, so wall-time efficiency moves by as much; what the
# code controls is how long a worker sits idle.  One 2-worker run per
# backend with --trace: each worker's time between its first task's start
# and the last task's end (of any worker) that no task covered, and the
# tail (the last task's end against this worker's).  PI_IDLE=0 skips them.
if [ "${PI_IDLE:-1}" != 0 ] && [ -x "$cli" ]; then
  tr=$(mktemp)
  for b in threads processes; do
    "$cli" pi "$eff_n" 2 --backend "$b" -q --trace "$tr" >/dev/null || continue
    python3 - "$tr" "$b" "$eff_n" <<'PY'
import json, sys
from collections import defaultdict
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"] if isinstance(d, dict) else d
spans = defaultdict(list)
for e in ev:
    if e.get("ph") == "X" and e.get("name") in ("task", "block"):
        spans[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
if not spans:
    sys.exit(0)
t0 = min(a for v in spans.values() for a, _ in v)
t1 = max(b for v in spans.values() for _, b in v)
parts = []
for k, v in sorted(spans.items()):
    v.sort()
    busy, end = 0.0, t0
    for a, b in v:  # union of the intervals (blocks nest in tasks)
        if b <= end:
            continue
        busy += b - max(a, end)
        end = b
    parts.append(f"worker {len(parts) + 1} idle {(1 - busy / (t1 - t0)) * 100:.2f}%"
                 f" (tail {(t1 - end) / 1e3:.1f} ms)")
print(f"idle at 2 workers, {sys.argv[2]}, N={sys.argv[3]}, a run of {(t1 - t0) / 1e6:.2f} s: " + "; ".join(parts))
PY
  done
  rm -f "$tr"
fi

python3 - "$eff" "$eff_n" "$eff_reps" <<'PY'
import sys, statistics
path, n, reps = sys.argv[1], int(float(sys.argv[2])), sys.argv[3]
runs = {}
for line in open(path):
    label, wall, user = line.split()
    runs.setdefault(label, []).append((float(wall), float(user)))
if runs:
    print(f"parallel efficiency at 2 workers, N={n}, whole command under /usr/bin/time, "
          f"{reps} interleaved reps; load average now "
          + " ".join(open("/proc/loadavg").read().split()[:3]))
    print(f"{'job':<12}{'wall 1':>9}{'wall 2':>9}{'user/wall 2':>13}{'eff (medians)':>15}"
          f"{'eff (paired median)':>21}{'eff per rep':>14}")
for job in ("threads", "processes", "openmp"):
    a, b = runs.get(job + "-1"), runs.get(job + "-2")
    if not a or not b:
        continue
    w1 = statistics.median(x[0] for x in a)
    w2 = statistics.median(x[0] for x in b)
    uw = statistics.median(x[1] / x[0] for x in b if x[0] > 0)
    per = [x[0] / (2 * y[0]) for x, y in zip(a, b) if y[0] > 0]
    print(f"{job:<12}{w1:>9.3f}{w2:>9.3f}{uw:>13.2f}{w1 / (2 * w2) * 100:>14.1f}%"
          f"{statistics.median(per) * 100:>20.1f}%  " + " ".join(f"{p * 100:.0f}" for p in per))
PY

python3 - "$out" "$reps" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
reps = sys.argv[2]
get = {(r[0], int(r[1])): r for r in rows}
def rate(r):
    return None if r[3] == "skip" else int(r[2]) / float(r[3])
py = get.get(("python-tutorial", 2))
omp = get.get(("openmp-16-lanes", 2))
pyr = rate(py) if py else None
ompr = rate(omp) if omp else None
print(f"medians of {reps} runs (N=1000: of 21); load average after: "
      + " ".join(open("/proc/loadavg").read().split()[:3]))
print(f"{'job':<22}{'workers':>8}{'N':>13}{'seconds':>10}{'points/s':>10}"
      f"{'x python':>10}{'x omp16':>9}{'pts/cpu-s':>11}{'best pts/s':>12}")
for r in rows:
    name, w, n = r[0], int(r[1]), int(r[2])
    if r[3] == "skip":
        print(f"{name:<22}{w:>8}{n:>13}   (not available)")
        continue
    s = float(r[3]); pr = n / s
    if name.endswith("N=1000"):
        print(f"{name:<22}{w:>8}{n:>13}{s * 1e6:>8.1f}us   (job time)")
        continue
    xp = f"{pr / pyr:.0f}" if pyr else "-"
    xo = f"{pr / ompr:.2f}" if ompr else "-"
    cpu = float(r[4]) if r[4] not in ("-", "0") and float(r[4]) > 0 else None
    pc = f"{n / cpu / 1e9:.2f}G" if cpu else "-"
    best = f"{n / float(r[5]) / 1e9:.2f}G"
    print(f"{name:<22}{w:>8}{n:>13}{s:>10.4f}{pr / 1e9:>9.2f}G{xp:>10}{xo:>9}{pc:>11}{best:>12}")
for b in ("manyhands-threads", "manyhands-processes", "openmp-16-lanes"):
    a, c = get.get((b, 1)), get.get((b, 2))
    if a and c and a[3] != "skip" and c[3] != "skip":
        print(f"parallel efficiency at 2 workers, {b}, N={a[2]}: "
              f"{float(a[3]) / (2 * float(c[3])) * 100:.1f}% of medians, "
              f"{float(a[5]) / (2 * float(c[5])) * 100:.1f}% of best runs")
PY
