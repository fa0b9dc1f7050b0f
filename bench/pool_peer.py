# SPDX-License-Identifier: MIT
"""pool_peer.py - Python peers of bench/pool_bench.c, one figure per run.

    python3 pool_peer.py pool-map N CHUNKSIZE   multiprocessing.Pool.map (0 = default chunksize)
    python3 pool_peer.py ppe-map N CHUNKSIZE    ProcessPoolExecutor.map
    python3 pool_peer.py pool-apply N           apply_async(...).get() round trips, us each
    python3 pool_peer.py ppe-submit N           submit(...).result() round trips, us each
"""
import sys
import time
import multiprocessing
import concurrent.futures


def inc(x):
    return x + 1


def main():
    mode, n = sys.argv[1], int(float(sys.argv[2]))
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if mode == "pool-map":
        with multiprocessing.Pool() as p:
            p.map(inc, range(1000), chunksize=chunk or None)
            t0 = time.perf_counter()
            r = p.map(inc, range(n), chunksize=chunk or None)
            t = time.perf_counter() - t0
        assert r[-1] == n
        print(f"{n / t:.0f}")
    elif mode == "ppe-map":
        with concurrent.futures.ProcessPoolExecutor() as ex:
            list(ex.map(inc, range(100), chunksize=chunk or 1))
            t0 = time.perf_counter()
            r = list(ex.map(inc, range(n), chunksize=chunk or 1))
            t = time.perf_counter() - t0
        assert r[-1] == n
        print(f"{n / t:.0f}")
    elif mode == "pool-apply":
        with multiprocessing.Pool() as p:
            for _ in range(100):
                p.apply_async(inc, (1,)).get()
            t0 = time.perf_counter()
            for _ in range(n):
                p.apply_async(inc, (1,)).get()
            print(f"{(time.perf_counter() - t0) / n * 1e6:.2f}")
    elif mode == "ppe-submit":
        with concurrent.futures.ProcessPoolExecutor() as ex:
            for _ in range(100):
                ex.submit(inc, 1).result()
            t0 = time.perf_counter()
            for _ in range(n):
                ex.submit(inc, 1).result()
            print(f"{(time.perf_counter() - t0) / n * 1e6:.2f}")
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
