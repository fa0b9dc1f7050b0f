#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/cli.sh - how long the whole `manyhands pi` process takes for a tiny
# job (run by bench/run cli).  The target is under 5 ms for
# `manyhands pi 1000 2`: start, make the pool, count, print, stop the pool,
# exit.  Beside it, as peers: /bin/true (the floor: fork + exec + exit),
# the tutorial's job in Python at the same size, and Python doing nothing.
# Medians (and minima) of CLI_REPS runs each (default 21), in one session,
# with the CPU time each used, which a loaded machine disturbs less.
set -euo pipefail
cli=${MH_CLI:?run through bench/run}
dir=${MH_BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
reps=${CLI_REPS:-21}
python3 - "$cli" "$dir" "$reps" <<'PY'
import os, sys, time, statistics
cli, here, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
peer = os.path.join(here, "pi_peer.py")
def run(argv):
    null = os.open(os.devnull, os.O_WRONLY)
    t, cpu = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, null, 1),
                                           (os.POSIX_SPAWN_DUP2, null, 2)])
        _, st, ru = os.wait4(pid, 0)
        t.append(time.perf_counter() - t0)
        cpu.append(ru.ru_utime + ru.ru_stime)
        if os.waitstatus_to_exitcode(st) != 0:
            return None
    os.close(null)
    return statistics.median(t), min(t), statistics.median(cpu)
py = sys.executable
jobs = [
    ("/bin/true (floor)", ["/bin/true"]),
    ("manyhands pi 1000 2", [cli, "pi", "1000", "2"]),
    ("manyhands pi 1000 2 --json", [cli, "pi", "1000", "2", "--json"]),
    ("manyhands pi 1000 2 --backend processes", [cli, "pi", "1000", "2", "--backend", "processes"]),
    ("manyhands pi 1e7 2", [cli, "pi", "1e7", "2"]),
    ("python3 -c pass", [py, "-c", "pass"]),
]
if os.path.exists(peer):
    jobs.append(("python tutorial job, N=1000, 2 procs", [py, peer, "1000", "2", "1"]))
with open("/proc/loadavg") as f:
    load = f.read().split()[0]
print(f"whole-process wall time (median, minimum) and CPU time (median, user + "
      f"system, the command and its children) of {reps} runs; load average {load}")
print(f"{'command':<44}{'median ms':>10}{'min ms':>9}{'cpu ms':>8}{'x true':>8}")
base = None
for name, argv in jobs:
    r = run(argv)
    if r is None:
        print(f"{name:<44}{'(not available)':>35}")
        continue
    med, mn, cpu = r
    if base is None:
        base = med
    print(f"{name:<44}{med * 1e3:>10.2f}{mn * 1e3:>9.2f}{cpu * 1e3:>8.2f}{med / base:>8.1f}")
PY

# The tutorial's montecarlo (examples/montecarlo, its default N = 10^8): the
# seconds of its ten estimates on 1 process and on 5, medians of 3 runs.
mc="$(dirname "$cli")/examples/montecarlo"
if [ -x "$mc" ]; then
  python3 - "$mc" <<'PY'
import subprocess, sys, statistics
one, five = [], []
for _ in range(3):
    out = subprocess.run([sys.argv[1]], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    one.append(float(lines[10]))
    five.append(float(lines[22]))
a, b = statistics.median(one), statistics.median(five)
print(f"examples/montecarlo, N = 10^8, ten estimates: 1 process {a:.3f} s, "
      f"5 processes {b:.3f} s: {a / b:.2f}x (medians of 3)")
PY
fi
