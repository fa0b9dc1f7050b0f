#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""executor_peer.py - Python's ThreadPoolExecutor doing what executor_bench does.

    executor_peer.py submit N W   submit N no-op tasks, then result() each
    executor_peer.py warm N W     the same, timing a second round
    executor_peer.py batch N W    the same in rounds of 1024
    executor_peer.py map N W      list(ex.map(noop, range(N)))
    executor_peer.py mem N        RSS growth of N pending futures, in MB

Prints "<rate per second> <CPU ns per item>" (mem: megabytes), like
executor_bench.
"""
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def noop(*_):
    return None


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def report(n, t0, c0):
    dt, dc = time.perf_counter() - t0, cpu() - c0
    print(f"{n / dt:.0f} {dc * 1e9 / n:.1f}")


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main():
    mode, n = sys.argv[1], int(float(sys.argv[2]))
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    if mode in ("submit", "warm"):
        with ThreadPoolExecutor(workers) as ex:
            if mode == "warm":
                for f in [ex.submit(noop) for _ in range(n)]:
                    f.result()
            t0, c0 = time.perf_counter(), cpu()
            fs = [ex.submit(noop) for _ in range(n)]
            for f in fs:
                f.result()
            report(n, t0, c0)
    elif mode == "batch":
        with ThreadPoolExecutor(workers) as ex:
            t0, c0 = time.perf_counter(), cpu()
            for lo in range(0, n, 1024):
                fs = [ex.submit(noop) for _ in range(min(1024, n - lo))]
                for f in fs:
                    f.result()
            report(n, t0, c0)
    elif mode == "map":
        with ThreadPoolExecutor(workers) as ex:
            t0, c0 = time.perf_counter(), cpu()
            list(ex.map(noop, range(n)))
            report(n, t0, c0)
    elif mode == "mem":
        gate = threading.Event()
        with ThreadPoolExecutor(1) as ex:
            ex.submit(gate.wait)
            before = rss_mb()
            fs = [ex.submit(noop) for _ in range(n)]
            print(f"{rss_mb() - before:.1f}")
            gate.set()
            del fs
    else:
        sys.exit(2)


if __name__ == "__main__":
    main()
