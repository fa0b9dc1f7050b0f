# SPDX-License-Identifier: MIT
# sync_lock.py - Python's peer of bench/sync_lock.c: acquire + release pairs
# of a threading.Lock (KIND lock) or RLock (KIND rlock) per second.
#   python3 sync_lock.py KIND THREADS N
import sys
import threading
import time

kind, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lock = threading.RLock() if kind == "rlock" else threading.Lock()
counter = 0


def run():
    global counter
    for _ in range(n):
        with lock:
            counter += 1


ts = [threading.Thread(target=run) for _ in range(threads)]
t0 = time.perf_counter()
for t in ts:
    t.start()
for t in ts:
    t.join()
s = time.perf_counter() - t0
assert counter == threads * n
print("%.0f" % (threads * n / s))
