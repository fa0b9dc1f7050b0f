/* SPDX-License-Identifier: MIT */
// forkjoin_tbb.cpp - the oneTBB peer of forkjoin_bench.c: the same tree
// with task_group run/wait, parallel_for over a no-op body, parallel_reduce
// of a sum of doubles (default auto partitioner).  The loops are
// forkjoin_body.c's, shared with the other programs.
//
//   forkjoin_tbb tree|for|reduce N THREADS -> seconds  wall-ns  cpu-ns per unit
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_group.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "bench.h"
}
#include "forkjoin_body.h"

static long tree(long lo, long hi) {
  if (hi - lo == 1) return lo;
  long mid = lo + (hi - lo) / 2, ls = 0;
  tbb::task_group g;
  g.run([&] { ls = tree(lo, mid); });
  long rs = tree(mid, hi);
  g.wait();
  return ls + rs;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s tree|for|reduce N THREADS\n", argv[0]);
    return 2;
  }
  long n = std::atol(argv[2]);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                         (size_t)std::atoi(argv[3]));
  double t0, t1, c0, c1, per, units;
  if (!std::strcmp(argv[1], "tree")) {
    // One untimed tree first, as in the other two programs: the arena's
    // workers start outside the timing.
    if (tree(0, n) != n * (n - 1) / 2) return 1;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    long sum = tree(0, n);
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (sum != n * (n - 1) / 2) return 1;
    units = (double)(n - 1);
    per = (t1 - t0) * 1e9 / units;
  } else if (!std::strcmp(argv[1], "for")) {
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    tbb::parallel_for(tbb::blocked_range<long>(0, n), [](const tbb::blocked_range<long> &r) {
      fj_noop_range((size_t)r.begin(), (size_t)r.end());
    });
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else if (!std::strcmp(argv[1], "reduce")) {
    std::vector<double> x((size_t)n);
    for (long i = 0; i < n; i++) x[(size_t)i] = (double)(i & 1023) * 0.5;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    double s = tbb::parallel_reduce(
        tbb::blocked_range<long>(0, n), 0.0,
        [&](const tbb::blocked_range<long> &r, double acc) {
          return fj_sum_range(x.data(), (size_t)r.begin(), (size_t)r.end(), acc);
        },
        [](double a, double b) { return a + b; });
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (s <= 0) return 1;
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else {
    return 2;
  }
  std::printf("%.6f %.3f %.3f\n", t1 - t0, per, (c1 - c0) * 1e9 / units);
  return 0;
}
