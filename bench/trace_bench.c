/* SPDX-License-Identifier: MIT */
/* trace_bench.c - what tracing costs, for bench/trace.sh.
 *
 *   trace_bench pi N threads|processes W off|on    the pi job of N points
 *   trace_bench map N threads|processes W off|on   map a tiny function over N items
 *
 * Prints one line: "<seconds of the work> <seconds to write the trace>
 * <CPU seconds>" (the second is 0 when off; the third is the user + system
 * time of the whole program and of its reaped children, the pool's fork
 * server and workers included, which a loaded machine disturbs less than
 * the wall clock).  The trace goes to a file in $TMPDIR (or /tmp)
 * that is removed after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <manyhands.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int square(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)is, (void)os, (void)ctx;
  *(double *)out = *(const double *)in * *(const double *)in;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s pi|map N threads|processes W off|on\n", argv[0]);
    return 2;
  }
  size_t n = (size_t)strtoull(argv[2], NULL, 10);
  int on = !strcmp(argv[5], "on");
  char path[256];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mh-trace-bench-%d.json", tmp ? tmp : "/tmp",
           (int)getpid());
  /* Tracing starts before the pool, so that process workers record too. */
  if (on && mh_trace_start(path)) return 1;
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = strcmp(argv[3], "processes") ? MH_BACKEND_THREADS : MH_BACKEND_PROCESSES;
  o.workers = atoi(argv[4]);
  mh_executor_t *ex;
  if (mh_executor_new(&ex, &o)) return 1;
  double t0 = now();
  if (!strcmp(argv[1], "pi")) {
    mh_pi_options_t po;
    mh_pi_options_init(&po);
    po.n = n;
    mh_pi_result_t r;
    if (mh_pi_run(ex, &po, &r)) return 1;
  } else {
    double *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    if (!in || !out) return 1;
    for (size_t i = 0; i < n; i++) in[i] = (double)i;
    if (mh_executor_map(ex, square, NULL, in, sizeof *in, out, sizeof *out, n, 0, NULL))
      return 1;
    free(in);
    free(out);
  }
  double t1 = now();
  mh_executor_free(ex);
  double t2 = now(), t3 = t2;
  if (on) {
    if (mh_trace_stop()) return 1;
    t3 = now();
    unlink(path);
  }
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  double cpu = (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec +
                        kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
               1e-6 * (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec +
                               kids.ru_utime.tv_usec + kids.ru_stime.tv_usec);
  printf("%.6f %.6f %.6f\n", t1 - t0, t3 - t2, cpu);
  return 0;
}
