# SPDX-License-Identifier: MIT
"""process_peer.py - the Python peer of process_bench: multiprocessing.Process
start+join per second.  usage: python3 process_peer.py [N]
Prints "python <N> <seconds> <per-second> <cpu-us-per-op>" (CPU time of
this process and its children per start+join)."""
import multiprocessing
import os
import sys
import time


def nothing():
    pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    t0 = time.perf_counter()
    c0 = os.times()
    for _ in range(n):
        p = multiprocessing.Process(target=nothing)
        p.start()
        p.join()
    dt = time.perf_counter() - t0
    c1 = os.times()
    cpu = sum(c1[:4]) - sum(c0[:4])
    print("python %d %.6f %.1f %.1f" % (n, dt, n / dt, cpu / n * 1e6))


if __name__ == "__main__":
    main()
