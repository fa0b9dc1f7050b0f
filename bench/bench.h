/* SPDX-License-Identifier: MIT */
/* bench.h - the clocks every benchmark program reads: wall time on the
 * monotonic clock and the CPU time of this process (user + system).  Header
 * only, so each benchmark stays one self-contained program. */
#ifndef MH_BENCH_H
#define MH_BENCH_H

#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double bench_cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

#endif /* MH_BENCH_H */
