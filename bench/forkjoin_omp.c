/* SPDX-License-Identifier: MIT */
/* forkjoin_omp.c - the OpenMP peer of forkjoin_bench.c: the same tree with
 * task/taskwait, parallel for over a no-op body, reduction(+) over doubles.
 * The loops are forkjoin_body.c's, shared with the other programs: the
 * parallel for runs over one chunk per thread (what schedule(static) makes
 * of the index loop) and each chunk calls the shared loop once.
 *
 *   forkjoin_omp tree|for|reduce N THREADS -> seconds  wall-ns  cpu-ns per unit
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "forkjoin_body.h"

static long tree(long lo, long hi) {
  if (hi - lo == 1) return lo;
  long mid = lo + (hi - lo) / 2, ls = 0;
#pragma omp task shared(ls)
  ls = tree(lo, mid);
  long rs = tree(mid, hi);
#pragma omp taskwait
  return ls + rs;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s tree|for|reduce N THREADS\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  omp_set_num_threads(atoi(argv[3]));
  double t0, t1, c0, c1, per, units;
  if (!strcmp(argv[1], "tree")) {
    long sum = 0;
    /* One untimed tree first, as in the other two programs: the team's
     * threads start and the task pool warms up outside the timing. */
#pragma omp parallel
#pragma omp single
    sum = tree(0, n);
    if (sum != n * (n - 1) / 2) return 1;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
#pragma omp parallel
#pragma omp single
    sum = tree(0, n);
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (sum != n * (n - 1) / 2) return 1;
    units = (double)(n - 1);
    per = (t1 - t0) * 1e9 / units;
  } else if (!strcmp(argv[1], "for")) {
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    long nt = omp_get_max_threads();
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nt; c++) fj_noop_range((size_t)(n * c / nt), (size_t)(n * (c + 1) / nt));
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else if (!strcmp(argv[1], "reduce")) {
    double *x = malloc((size_t)n * sizeof *x);
    if (!x) return 1;
    for (long i = 0; i < n; i++) x[i] = (double)(i & 1023) * 0.5;
    double s = 0;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    long nt = omp_get_max_threads();
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (long c = 0; c < nt; c++)
      s += fj_sum_range(x, (size_t)(n * c / nt), (size_t)(n * (c + 1) / nt), 0.0);
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (s <= 0) return 1;
    free(x);
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else {
    return 2;
  }
  printf("%.6f %.3f %.3f\n", t1 - t0, per, (c1 - c0) * 1e9 / units);
  return 0;
}
