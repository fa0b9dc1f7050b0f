# SPDX-License-Identifier: MIT
"""connection_peer.py - the Python peer of connection_bench: a round trip
over multiprocessing.Pipe (send_bytes / recv_bytes), a child echoing.
usage: python3 connection_peer.py [N] [SIZE]
Prints "python <N> <seconds> <us-per-round-trip>"."""
import multiprocessing
import sys
import time


def echo(conn, other):
    other.close()  # else our copy of the parent's end hides its EOF
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=echo, args=(child, parent))
    p.start()
    child.close()
    msg = bytes(size)
    for _ in range(100):
        parent.send_bytes(msg)
        parent.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        parent.send_bytes(msg)
        parent.recv_bytes()
    dt = time.perf_counter() - t0
    parent.close()
    p.join()
    print("python %d %.6f %.3f" % (n, dt, dt / n * 1e6))


if __name__ == "__main__":
    main()
