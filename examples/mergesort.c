/* SPDX-License-Identifier: MIT */
/* mergesort.c - a parallel merge sort by fork-join on the thread executor.
 *
 *   mergesort [N [WORKERS]]   sorts N random ints (default 10^6), checks the
 *                             result and prints "sorted N ints on W workers"
 *
 * Each task sorts its left half as a new task, its right half itself, waits
 * for the left half and merges.  The wait inside a task is safe: a worker
 * that waits runs other pending work meanwhile (help first), so this never
 * deadlocks, even on one worker.  Below CUTOFF elements a task sorts alone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_args.h"
#include "manyhands.h"

#define CUTOFF 4096

typedef struct {
  mh_executor_t *ex;
  int *a, *tmp; /* sort a[0..n) using tmp[0..n) */
  size_t n;
} job_t;

static int cmp_int(const void *x, const void *y) {
  int a = *(const int *)x, b = *(const int *)y;
  return (a > b) - (a < b);
}

static int sort_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx);

static int sort(const job_t *j) {
  if (j->n <= CUTOFF) {
    qsort(j->a, j->n, sizeof *j->a, cmp_int);
    return 0;
  }
  size_t h = j->n / 2;
  job_t left = {j->ex, j->a, j->tmp, h};
  job_t right = {j->ex, j->a + h, j->tmp + h, j->n - h};
  mh_future_t *f;
  int rc = mh_executor_submit(j->ex, sort_task, &left, sizeof left, NULL, 0, NULL, &f);
  if (rc) return rc;
  int rrc = sort(&right);
  int lrc = mh_future_result(f, MH_FOREVER); /* helps while it waits */
  mh_future_release(f);
  if (lrc || rrc) return lrc ? lrc : rrc;
  /* Merge the two sorted halves through tmp. */
  size_t i = 0, k = h, o = 0;
  while (i < h && k < j->n) j->tmp[o++] = j->a[i] <= j->a[k] ? j->a[i++] : j->a[k++];
  while (i < h) j->tmp[o++] = j->a[i++];
  while (k < j->n) j->tmp[o++] = j->a[k++];
  memcpy(j->a, j->tmp, j->n * sizeof *j->a);
  return 0;
}

static int sort_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx) {
  (void)in_size;
  (void)out;
  (void)out_size;
  (void)ctx;
  return sort(in);
}

int main(int argc, char **argv) {
  arg_usage("mergesort", argc, argv, 2,
            "usage: mergesort [N [WORKERS]]\nSorts N pseudo-random ints with a fork-join merge sort on a thread pool.\n"
            "N defaults to 1000000, WORKERS (1..4096) to 2.\n");
  size_t n = argc > 1 ? (size_t)arg_number("mergesort", argv[1], "N", 0, 100000000L) : 1000000;
  int workers = argc > 2 ? (int)arg_number("mergesort", argv[2], "WORKERS", 1, 4096) : 2;
  int *a = malloc((n ? n : 1) * sizeof *a), *tmp = malloc((n ? n : 1) * sizeof *tmp);
  if (!a || !tmp) {
    fprintf(stderr, "mergesort: out of memory\n");
    return 2;
  }
  unsigned s = 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    a[i] = (int)(s >> 1);
  }
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = workers;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc) {
    fprintf(stderr, "mergesort: %s\n", mh_strerror(rc));
    return 2;
  }
  job_t root = {ex, a, tmp, n};
  mh_future_t *f;
  rc = mh_executor_submit(ex, sort_task, &root, sizeof root, NULL, 0, NULL, &f);
  if (!rc) {
    rc = mh_future_result(f, MH_FOREVER);
    mh_future_release(f);
  }
  mh_executor_free(ex);
  if (rc) {
    fprintf(stderr, "mergesort: %s\n", mh_strerror(rc));
    return 1;
  }
  for (size_t i = 1; i < n; i++)
    if (a[i - 1] > a[i]) {
      fprintf(stderr, "mergesort: not sorted at %zu\n", i);
      return 1;
    }
  printf("sorted %zu ints on %d workers\n", n, workers);
  free(a);
  free(tmp);
  return 0;
}
