#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mpqueue_peer.py - Python's multiprocessing.Queue doing what mpqueue_bench does.

usage: mpqueue_peer.py [-s SIZE] [-n N] [-m MAXSIZE]

A producer process puts N bytes objects of SIZE bytes through
multiprocessing.Queue(MAXSIZE) to a consumer process (fork start method).
The clock runs from the moment both are ready until the consumer has got the
last message.  Prints "<messages/s> msgs/s <bytes/s> B/s".
"""
import argparse
import multiprocessing as mp
import sys
import time


def producer(q, ready, go, n, size):
    msg = b"\x5a" * size
    ready.release()
    go.wait()
    for _ in range(n):
        q.put(msg)


def consumer(q, ready, go, n, size, end, bad):
    ready.release()
    go.wait()
    for _ in range(n):
        if len(q.get()) != size:
            bad.value = 1
    end.value = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-s", type=float, default=64)
    ap.add_argument("-n", type=float, default=100000)
    ap.add_argument("-m", type=int, default=1024)
    a = ap.parse_args()
    n, size = int(a.n), int(a.s)
    ctx = mp.get_context("fork")
    q = ctx.Queue(a.m)
    ready, go = ctx.Semaphore(0), ctx.Event()
    end, bad = ctx.Value("d", 0.0), ctx.Value("i", 0)
    ps = [ctx.Process(target=producer, args=(q, ready, go, n, size)),
          ctx.Process(target=consumer, args=(q, ready, go, n, size, end, bad))]
    for p in ps:
        p.start()
    ready.acquire()
    ready.acquire()
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    if bad.value or any(p.exitcode for p in ps):
        print("mpqueue_peer: messages lost or wrong", file=sys.stderr)
        return 1
    secs = end.value - t0
    print(f"{n / secs:.0f} msgs/s {n * size / secs:.0f} B/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
