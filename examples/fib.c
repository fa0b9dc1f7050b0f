/* SPDX-License-Identifier: MIT */
/* fib.c - recursive Fibonacci by fork-join with task groups.
 *
 *   fib [N [WORKERS]]   prints "fib(N) = F on W workers" (default N = 32)
 *
 * fib(n) runs fib(n-1) as a member of a task group of its own, computes
 * fib(n-2) itself, then waits for the group: the naive exponential tree, the
 * classic test of a fork-join runtime.  The wait helps (the waiting worker
 * runs pending members), so any depth works on any number of workers.
 * Below CUTOFF a call computes alone; the group's wait returns the first
 * failing member's code. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "example_args.h"
#include "manyhands.h"

#define CUTOFF 16

typedef struct {
  mh_executor_t *ex;
  int n;
  long result;
} fib_t;

static long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

static int fib(mh_executor_t *ex, int n, long *out);

static int fib_member(void *arg, mh_task_group_t *g) {
  (void)g;
  fib_t *f = arg;
  return fib(f->ex, f->n, &f->result);
}

static int fib(mh_executor_t *ex, int n, long *out) {
  if (n < CUTOFF) {
    *out = fib_serial(n);
    return 0;
  }
  mh_task_group_t *g;
  int rc = mh_task_group_new(&g, ex);
  if (rc) return rc;
  fib_t child = {ex, n - 1, 0};
  rc = mh_task_group_run(g, fib_member, &child);
  long other = 0;
  int orc = fib(ex, n - 2, &other);
  int wrc = mh_task_group_wait(g); /* helps while it waits */
  mh_task_group_free(g);
  if (rc || orc || wrc) return rc ? rc : orc ? orc : wrc;
  *out = child.result + other;
  return 0;
}

static int root_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx) {
  (void)in_size;
  (void)out_size;
  return fib(ctx, *(const int *)in, out);
}

int main(int argc, char **argv) {
  arg_usage("fib", argc, argv, 2,
            "usage: fib [N [WORKERS]]\nComputes Fibonacci(N) by recursive fork-join on a thread pool.\n"
            "N defaults to 32, WORKERS (1..4096) to 2.\n");
  int n = argc > 1 ? (int)arg_number("fib", argv[1], "N", 0, 80) : 32;
  int workers = argc > 2 ? (int)arg_number("fib", argv[2], "WORKERS", 1, 4096) : 2;
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = workers;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc) {
    fprintf(stderr, "fib: %s\n", mh_strerror(rc));
    return 2;
  }
  long r = 0;
  mh_future_t *f;
  rc = mh_executor_submit(ex, root_task, &n, sizeof n, &r, sizeof r, ex, &f);
  if (!rc) {
    rc = mh_future_result(f, MH_FOREVER);
    mh_future_release(f);
  }
  mh_executor_free(ex);
  if (rc) {
    fprintf(stderr, "fib: %s\n", mh_strerror(rc));
    return 1;
  }
  printf("fib(%d) = %ld on %d workers\n", n, r, workers);
  return 0;
}
