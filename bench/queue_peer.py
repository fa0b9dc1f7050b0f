#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""queue_peer.py - Python's queue.Queue doing what queue_bench does.

usage: queue_peer.py [-p P] [-c C] [-n N] [-m MAXSIZE]

P producer threads put N small ints in all through queue.Queue(MAXSIZE) to C
consumer threads.  When the producers are done, one None per consumer tells
them to stop (queue.Queue.shutdown only exists from Python 3.13).  Prints
"<items/s> items/s <items/cpu-s> items/cpu-s" (the second per second of CPU
time the process used) and exits 1 if the items do not add up.
"""
import argparse
import queue
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", type=int, default=1)
    ap.add_argument("-c", type=int, default=1)
    ap.add_argument("-n", type=float, default=200000)
    ap.add_argument("-m", type=int, default=1024)
    a = ap.parse_args()
    n = int(a.n)
    q = queue.Queue(a.m)
    shares = [n // a.p + (1 if i < n % a.p else 0) for i in range(a.p)]
    totals = []
    lock = threading.Lock()
    start = threading.Barrier(a.p + a.c + 1)

    def producer(count):
        start.wait()
        put = q.put
        for i in range(1, count + 1):
            put(i)

    def consumer():
        start.wait()
        get = q.get
        s = c = 0
        while True:
            v = get()
            if v is None:
                break
            s += v
            c += 1
        with lock:
            totals.append((s, c))

    ps = [threading.Thread(target=producer, args=(k,)) for k in shares]
    cs = [threading.Thread(target=consumer) for _ in range(a.c)]
    for t in ps + cs:
        t.start()
    start.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for t in ps:
        t.join()
    for _ in cs:
        q.put(None)
    for t in cs:
        t.join()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    want = sum(k * (k + 1) // 2 for k in shares)
    if sum(s for s, _ in totals) != want or sum(c for _, c in totals) != n:
        print("queue_peer: lost or duplicated items", file=sys.stderr)
        return 1
    print(f"{n / secs:.0f} items/s {n / cpu:.0f} items/cpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
