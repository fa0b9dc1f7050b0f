# SPDX-License-Identifier: MIT
"""bytes_peer.py - Python peer of bench/bytes_bench.c: Pool.map whose items
return bytes of a size they decide, one figure per run (items/s).

    python3 bytes_peer.py map N MAXSIZE
"""
import sys
import time
import multiprocessing

MAX = 0


def size_of(i, mx):
    return (i * 2654435761) % (2**32) % (mx + 1)


def var(a):
    i, mx = a
    return bytes([i & 0x7F]) * size_of(i, mx)


def main():
    n, mx = int(float(sys.argv[2])), int(float(sys.argv[3]))
    args = [(i, mx) for i in range(n)]
    with multiprocessing.Pool() as p:
        p.map(var, args[:1000])
        t0 = time.perf_counter()
        r = p.map(var, args)
        t = time.perf_counter() - t0
    assert len(r[-1]) == size_of(n - 1, mx)
    print(f"{n / t:.0f}")


if __name__ == "__main__":
    main()
