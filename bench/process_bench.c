/* SPDX-License-Identifier: MIT */
/* process_bench.c - process start+join per second: mh_process_start/join
 * against raw fork()+waitpid().
 *
 * usage: process_bench mh|fork [N]
 * Prints one line: "<mode> <N> <seconds> <per-second> <cpu-us-per-op>", the
 * last being the CPU time (user + system) of the parent and its children per
 * start+join: less sensitive than wall time to the load of a shared machine.  Each child does
 * nothing and exits 0; the parent starts and joins them one at a time, as
 * Python's `p = Process(target=f); p.start(); p.join()` loop does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "manyhands.h"
#include "bench.h"

static double cpu_seconds(void) {
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                  kids.ru_stime.tv_sec) +
         (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                  kids.ru_stime.tv_usec) *
             1e-6;
}

static int nothing(void *arg) {
  (void)arg;
  return 0;
}

static int run_mh(long n) {
  for (long i = 0; i < n; i++) {
    mh_process_t *p;
    int rc = mh_process_start(&p, nothing, NULL, NULL);
    if (rc) {
      fprintf(stderr, "process_bench: start: %s\n", mh_strerror(rc));
      return 1;
    }
    rc = mh_process_join(p, MH_FOREVER);
    mh_process_free(p);
    if (rc) return 1;
  }
  return 0;
}

static int run_fork(long n) {
  for (long i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) _exit(0);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    fprintf(argc < 2 ? stderr : stdout, "usage: process_bench mh|fork [N]\n");
    return argc < 2 ? 2 : 0;
  }
  long n = argc > 2 ? atol(argv[2]) : 2000;
  if (n <= 0) n = 2000;
  double t0 = bench_now(), c0 = cpu_seconds();
  int rc;
  if (strcmp(argv[1], "mh") == 0)
    rc = run_mh(n);
  else if (strcmp(argv[1], "fork") == 0)
    rc = run_fork(n);
  else {
    fprintf(stderr, "process_bench: unknown mode %s\n", argv[1]);
    return 2;
  }
  double dt = bench_now() - t0, cpu = cpu_seconds() - c0;
  if (rc) return 1;
  printf("%s %ld %.6f %.1f %.1f\n", argv[1], n, dt, (double)n / dt, cpu / (double)n * 1e6);
  return 0;
}
