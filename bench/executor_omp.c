/* SPDX-License-Identifier: MIT */
/* executor_omp.c - the OpenMP-tasks peer of executor_bench: N empty tasks
 * created by one thread of a team of W, then taskwait.  Prints tasks/s and
 * CPU ns per task, as executor_bench does. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include "bench.h"

static volatile long sink;

int main(int argc, char **argv) {
  long n = argc > 1 ? (long)strtod(argv[1], NULL) : 1000000;
  int workers = argc > 2 ? atoi(argv[2]) : 2;
  double t0 = omp_get_wtime(), c0 = bench_cpu_seconds();
#pragma omp parallel num_threads(workers)
  {
#pragma omp single
    {
      for (long i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
        { sink = i; }
      }
#pragma omp taskwait
    }
  }
  double dt = omp_get_wtime() - t0, cpu = bench_cpu_seconds() - c0;
  printf("%.0f %.1f\n", (double)n / dt, cpu * 1e9 / (double)n);
  return 0;
}
