#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""pi_peer.py N P [REPS] - the tutorial's montecarlo2.py job, as a benchmark peer.

find_pi is the tutorial's function; a Pool of P processes maps it over
[N//P]*P, as montecarlo2.py does.  Prints one line per repetition:
"seconds - pi" (no CPU figure: the work is in the pool's processes) (the pool is created once, like the tutorial's timeit loop).
"""
import sys
import time
from multiprocessing import Pool
from random import random


def find_pi(n):
    """Function to estimate the value of Pi (the tutorial's)."""
    inside = 0
    for i in range(0, n):
        x = random()
        y = random()
        if (x * x + y * y) ** (0.5) <= 1:  # if i falls inside the circle
            inside += 1
    pi = 4 * inside / n
    return pi


if __name__ == '__main__':
    N = int(sys.argv[1])
    P = int(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    with Pool(P) as p:
        for _ in range(reps):
            t0 = time.perf_counter()
            pi = sum(p.map(find_pi, [N // P] * P)) / P
            print(f'{time.perf_counter() - t0:.6f} - {pi:.5f}', flush=True)
