/* SPDX-License-Identifier: MIT */
/* chaos_map.c - the pool half of bench/chaos.sh: process-pool maps and
 * submits in a loop for a set time, each result checked, while the script
 * kills, stops and continues our workers and fork server from outside.
 *
 * Usage: chaos_map SECONDS WORKERS.  Prints one line per round that went
 * wrong ("round R: ...") and at the end "rounds R wrong W failed F": a round
 * fails (a code, reported per item) when the pool broke or an item timed out,
 * which chaos may cause; it is wrong when an item says 0 with a wrong value,
 * which it never may.  A killed fork server is replaced by the pool itself;
 * a pool that broke all the same (one that gave up) is replaced here.
 * Items have a 2 s limit, so a stopped worker costs a time-out, not a hang.
 * Exit 0 when nothing was wrong, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manyhands.h"

static int sq(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)isz, (void)osz, (void)ctx;
  long v;
  memcpy(&v, in, sizeof v);
  volatile long spin = 0;
  for (long i = 0; i < 20000; i++) spin += i;
  (void)spin; /* the loop is the work: a stand-in for a task that computes */
  v = v * v + 1;
  memcpy(out, &v, sizeof v);
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static mh_executor_t *pool(int workers) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = workers;
  o.retries = 3;
  o.task_timeout = 2.0;
  o.grace = 0.2;
  mh_executor_t *ex = NULL;
  int rc = mh_executor_new(&ex, &o);
  if (rc) {
    fprintf(stderr, "chaos_map: cannot start a pool: %s\n", mh_strerror(rc));
    exit(2);
  }
  return ex;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: chaos_map SECONDS WORKERS\n");
    return 2;
  }
  double secs = atof(argv[1]);
  int workers = atoi(argv[2]);
  enum { N = 2000 };
  static long in[N], out[N];
  static int st[N];
  for (long i = 0; i < N; i++) in[i] = i;
  mh_executor_t *ex = pool(workers);
  long rounds = 0, wrong = 0, failed = 0;
  double end = now() + secs;
  while (now() < end) {
    rounds++;
    memset(out, 0, sizeof out);
    int rc = mh_executor_map(ex, sq, NULL, in, sizeof in[0], out, sizeof out[0],
                             N, rounds % 3 ? 0 : 1, st);
    int bad = 0, fails = 0;
    for (long i = 0; i < N; i++) {
      if (st[i] == 0 && out[i] != i * i + 1) bad++;
      if (st[i] != 0) fails++;
    }
    mh_future_t *f;
    long v = rounds, r = 0;
    int frc = mh_executor_submit(ex, sq, &v, sizeof v, &r, sizeof r, NULL, &f);
    if (frc == 0) {
      frc = mh_future_result(f, 30);
      if (frc == MH_ETIMEDOUT && !mh_future_done(f)) {
        printf("round %ld: a submit hung\n", rounds);
        wrong++;
      }
      if (frc == 0 && r != v * v + 1) bad++;
      mh_future_release(f);
    }
    if (bad) {
      printf("round %ld: %d items wrong\n", rounds, bad);
      wrong++;
    }
    if (rc || fails || frc) {
      failed++;
      printf("round %ld: map %s (%d items failed), submit %s\n", rounds,
             mh_err_name(rc), fails, mh_err_name(frc));
      if (rc == MH_EWORKERDIED || frc == MH_EWORKERDIED || frc == MH_ESHUTDOWN) {
        mh_executor_free(ex); /* it may have broken: a new pool */
        ex = pool(workers);
      }
    }
    fflush(stdout);
  }
  mh_executor_free(ex);
  printf("rounds %ld wrong %ld failed %ld\n", rounds, wrong, failed);
  return wrong ? 1 : 0;
}
