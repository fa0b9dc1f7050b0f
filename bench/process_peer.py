"""process_peer.py - the Python peer of process_bench: multiprocessing.Process
start+join per second.  usage: python3 process_peer.py [N]
Prints "python <N> <seconds> <per-second>"."""
import multiprocessing
import sys
import time


def nothing():
    pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    t0 = time.perf_counter()
    for _ in range(n):
        p = multiprocessing.Process(target=nothing)
        p.start()
        p.join()
    dt = time.perf_counter() - t0
    print("python %d %.6f %.1f" % (n, dt, n / dt))


if __name__ == "__main__":
    main()
