/* SPDX-License-Identifier: MIT */
/* executor_bench.c - throughput of the thread executor, for bench/executor.sh.
 *
 *   executor_bench submit N W   submit N no-op tasks, then wait for each
 *   executor_bench warm N W     the same, timing a second round (memory of
 *                               the first is reused: the steady state)
 *   executor_bench batch N W    the same in rounds of 1024 (steady state)
 *   executor_bench map N W      map a no-op function over N items
 *   executor_bench mem N        RSS of N pending futures (one busy worker)
 *
 * Prints one line: "<rate per second> <CPU ns per item>" (CPU time of all
 * threads, user + system, from getrusage: on a shared machine it says what
 * the work costs when the wall-clock rate says how much CPU it was given),
 * or, for mem, "<megabytes>".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <manyhands.h>
#include "bench.h"

static int noop(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)in, (void)is, (void)out, (void)os, (void)ctx;
  return 0;
}

static int gate_task(const void *in, size_t is, void *out, size_t os,
                     void *ctx) {
  (void)in, (void)is, (void)out, (void)os;
  atomic_int *gate = ctx;
  struct timespec ts = {0, 1000000};
  while (!atomic_load(gate)) nanosleep(&ts, NULL);
  return 0;
}

static void report(size_t n, double dt, double cpu) {
  printf("%.0f %.1f\n", (double)n / dt, cpu * 1e9 / (double)n);
}

/* Resident set size now, in kB, from /proc/self/statm. */
static long rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return resident * 4;
}

static mh_executor_t *make(int workers) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = workers;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc) {
    fprintf(stderr, "mh_executor_new: %s\n", mh_strerror(rc));
    exit(1);
  }
  return ex;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s submit|map|mem N [workers]\n", argv[0]);
    return 2;
  }
  size_t n = (size_t)strtod(argv[2], NULL);
  int workers = argc > 3 ? atoi(argv[3]) : 2;
  if (!strcmp(argv[1], "submit") || !strcmp(argv[1], "warm")) {
    mh_executor_t *ex = make(workers);
    mh_future_t **fs = malloc(n * sizeof *fs);
    if (!strcmp(argv[1], "warm")) {
      for (size_t i = 0; i < n; i++)
        if (mh_executor_submit(ex, noop, NULL, 0, NULL, 0, NULL, &fs[i]))
          return 1;
      for (size_t i = 0; i < n; i++) {
        if (mh_future_result(fs[i], MH_FOREVER)) return 1;
        mh_future_release(fs[i]);
      }
    }
    double t0 = bench_now(), c0 = bench_cpu_seconds();
    for (size_t i = 0; i < n; i++)
      if (mh_executor_submit(ex, noop, NULL, 0, NULL, 0, NULL, &fs[i])) return 1;
    double t1 = bench_now();
    for (size_t i = 0; i < n; i++) {
      if (mh_future_result(fs[i], MH_FOREVER)) return 1;
      mh_future_release(fs[i]);
    }
    double dt = bench_now() - t0, cpu = bench_cpu_seconds() - c0;
    if (getenv("MH_BENCH_VERBOSE"))
      fprintf(stderr, "submit phase %.3f s, result phase %.3f s\n", t1 - t0,
              dt - (t1 - t0));
    report(n, dt, cpu);
    mh_executor_free(ex);
    free(fs);
  } else if (!strcmp(argv[1], "batch")) {
    mh_executor_t *ex = make(workers);
    enum { B = 1024 };
    mh_future_t *fs[B];
    double t0 = bench_now(), c0 = bench_cpu_seconds();
    for (size_t lo = 0; lo < n; lo += B) {
      size_t m = n - lo < B ? n - lo : B;
      for (size_t i = 0; i < m; i++)
        if (mh_executor_submit(ex, noop, NULL, 0, NULL, 0, NULL, &fs[i]))
          return 1;
      for (size_t i = 0; i < m; i++) {
        if (mh_future_result(fs[i], MH_FOREVER)) return 1;
        mh_future_release(fs[i]);
      }
    }
    double dt = bench_now() - t0, cpu = bench_cpu_seconds() - c0;
    report(n, dt, cpu);
    mh_executor_free(ex);
  } else if (!strcmp(argv[1], "map")) {
    mh_executor_t *ex = make(workers);
    double t0 = bench_now(), c0 = bench_cpu_seconds();
    if (mh_executor_map(ex, noop, NULL, NULL, 0, NULL, 0, n, 0, NULL)) return 1;
    double dt = bench_now() - t0, cpu = bench_cpu_seconds() - c0;
    report(n, dt, cpu);
    mh_executor_free(ex);
  } else if (!strcmp(argv[1], "mem")) {
    mh_executor_t *ex = make(1);
    atomic_int gate = 0;
    mh_future_t *blocker;
    mh_future_t **fs = malloc(n * sizeof *fs);
    /* Touch the array first so that it is not counted. */
    memset(fs, 0, n * sizeof *fs);
    if (mh_executor_submit(ex, gate_task, NULL, 0, NULL, 0, &gate, &blocker))
      return 1;
    long before = rss_kb();
    for (size_t i = 0; i < n; i++)
      if (mh_executor_submit(ex, noop, NULL, 0, NULL, 0, NULL, &fs[i])) return 1;
    long after = rss_kb();
    printf("%.1f\n", (double)(after - before) / 1024.0);
    atomic_store(&gate, 1);
    for (size_t i = 0; i < n; i++) mh_future_release(fs[i]);
    mh_future_release(blocker);
    mh_executor_free(ex);
    free(fs);
  } else {
    return 2;
  }
  return 0;
}
