/* SPDX-License-Identifier: MIT */
/* montecarlo.c - the tutorial's montecarlo.py: pi from N points, first on
 * one worker and then on five, ten estimates each, the time of each set, and
 * a last line comparing the two times.
 *
 *     montecarlo [--backend processes|threads] [[--n] N]
 *
 * N is 10^8 by default, ten times the tutorial's 10^7: C counts points about
 * a hundred times as fast as Python, and at 10^7 the ten estimates take a
 * tenth of a second, too little for five process start-ups to pay on a
 * 2-core machine (five processes then come out slower).  At 10^8 the ten
 * estimates take about a second on one worker, and more workers finish
 * sooner, as in the tutorial.
 *
 * The tutorial maps find_pi over a multiprocessing.Pool and times ten calls
 * with timeit.  Here the pool is an mh_executor (the process backend, as in
 * the tutorial, or threads when this build has no process backend) and each
 * estimate is one mh_pi_run.  Each of the ten estimates draws from its own
 * random stream (mh_pi_repeat_seed), so the ten lines differ from each other
 * but are the same on every run and for both worker counts: what the worker
 * count changes is only the time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <manyhands.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One set: ten estimates printed with seven decimals, then the time of the
 * ten (what timeit prints), then the tutorial's closing line. */
static int run_set(mh_backend_t backend, int procs, uint64_t n, double *took) {
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = backend;
  eo.workers = procs;
  mh_executor_t *pool;
  int rc = mh_executor_new(&pool, &eo);
  if (rc != 0) return rc;
  double t0 = now();
  for (uint64_t rep = 0; rep < 10 && rc == 0; rep++) {
    mh_pi_options_t o;
    mh_pi_options_init(&o);
    o.n = n;
    o.seed = mh_pi_repeat_seed(MH_PI_DEFAULT_SEED, rep);
    mh_pi_result_t res;
    rc = mh_pi_run(pool, &o, &res);
    if (rc == 0) printf("%0.7f\n", res.pi);
  }
  double seconds = now() - t0;
  mh_executor_free(pool); /* p.close(); p.join() */
  if (rc != 0) return rc;
  *took = seconds;
  printf("%.6f\n", seconds);
  printf("%llu total iterations with %d %s\n", (unsigned long long)n, procs,
         backend == MH_BACKEND_PROCESSES ? "processes" : "threads");
  fflush(stdout);
  return 0;
}

static int usage(const char *what) {
  fprintf(stderr, "montecarlo: %s\nusage: montecarlo [--backend processes|threads] [[--n] N]\n",
          what);
  return 2;
}

int main(int argc, char **argv) {
  mh_backend_t backend = MH_BACKEND_PROCESSES;
  int explicit_backend = 0;
  uint64_t n = 100000000; /* 10 x the tutorial's N = 10**7: see above */
  for (int i = 1; i < argc; i++) {
    const char *b = NULL;
    if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
      b = argv[++i];
    else if (strncmp(argv[i], "--backend=", 10) == 0)
      b = argv[i] + 10;
    if (b) {
      if (strcmp(b, "processes") == 0)
        backend = MH_BACKEND_PROCESSES;
      else if (strcmp(b, "threads") == 0)
        backend = MH_BACKEND_THREADS;
      else
        return usage("the backend is processes or threads");
      explicit_backend = 1;
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("usage: montecarlo [--backend processes|threads] [[--n] N]\n"
             "Estimates pi ten times from N points (default 10^8), timed with 1 and\n"
             "then 5 workers (processes by default), and compares the two times.\n");
      return 0;
    }
    const char *arg = argv[i];
    if (arg[0] == '-' && strcmp(arg, "--n") != 0 && strncmp(arg, "--n=", 4) != 0) {
      fprintf(stderr, "montecarlo: unknown option '%s'\n", arg);
      return usage("see --help");
    }
    if (strcmp(arg, "--n") == 0 && i + 1 < argc)
      arg = argv[++i];
    else if (strncmp(arg, "--n=", 4) == 0)
      arg += 4;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (arg[0] < '1' || arg[0] > '9' || *end || errno || v > 0x7fffffffffffffffULL)
      return usage("N is a whole number of points from 1 to 2^63-1");
    n = v;
  }
  static const int sets[] = {1, 5}; /* P = 1, then P = 5 */
  double took[2] = {0, 0};
  for (int s = 0; s < 2; s++) {
    int rc = run_set(backend, sets[s], n, &took[s]);
    if (rc == MH_ENOTSUP && backend == MH_BACKEND_PROCESSES && !explicit_backend) {
      fprintf(stderr, "montecarlo: no process backend in this build, using threads\n");
      backend = MH_BACKEND_THREADS;
      rc = run_set(backend, sets[s], n, &took[s]);
    }
    if (rc != 0) {
      fprintf(stderr, "montecarlo: %s\n", mh_strerror(rc));
      return 1;
    }
  }
  /* What the tutorial asks the reader to see: the two times side by side.
   * More workers than free CPUs cannot go faster than those CPUs allow, so
   * the load average is given too: on a machine that other programs keep
   * busy, five workers get no more CPU time than one. */
  const char *noun = backend == MH_BACKEND_PROCESSES ? "processes" : "threads";
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  double load = -1;
  if (getloadavg(&load, 1) != 1) load = -1;
  char where[96];
  if (load >= 0)
    snprintf(where, sizeof where, "%ld CPUs, load average %.2f", cpus, load);
  else
    snprintf(where, sizeof where, "%ld CPUs", cpus);
  if (took[1] > 0 && took[1] < took[0])
    printf("5 %s took %.4f s, 1 took %.4f s: %.1f times as fast on %s\n", noun, took[1],
           took[0], took[0] / took[1], where);
  else
    printf("5 %s took %.4f s, 1 took %.4f s: no faster on %s (the CPUs are busy with "
           "other programs, or N is too small for the workers' start-up to pay)\n",
           noun, took[1], took[0], where);
  return 0;
}
