/* SPDX-License-Identifier: MIT */
/* pool_bench.c - process pool throughput and latency.
 *
 *   pool_bench map N CHUNKSIZE [WORKERS [cold]]  map N trivial items (0 =
 *                                          automatic chunking); prints items/s;
 *                                          "cold": the output buffer is fresh
 *                                          (its page faults are timed)
 *   pool_bench submit N [WORKERS]          N submit+result round trips, one at
 *                                          a time; prints microseconds each
 * One line of output: the figure only, so scripts can take medians.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manyhands.h"
#include "bench.h"

/* The trivial item: out = in + 1 (Python peers: lambda x: x + 1 style). */
static int inc(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  *(long *)out = *(const long *)in + 1;
  return 0;
}

static mh_executor_t *pool(int workers) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = workers;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc < 0) {
    fprintf(stderr, "pool_bench: %s\n", mh_strerror(rc));
    exit(1);
  }
  return ex;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pool_bench map N CHUNKSIZE [WORKERS] | submit N [WORKERS]\n");
    return 2;
  }
  size_t n = (size_t)strtod(argv[2], NULL);
  if (!strcmp(argv[1], "map") && argc >= 4) {
    size_t chunk = (size_t)strtoull(argv[3], NULL, 10);
    mh_executor_t *ex = pool(argc > 4 ? atoi(argv[4]) : 0);
    long *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    if (!in || !out) return 1;
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    /* The output buffer is touched first (unless "cold"): on this VM a page
     * fault costs ~25 us, so the first write to 80 MB of fresh malloc'ed
     * memory alone takes ~0.5 s, whoever writes it.  The cold figure is
     * printed too by pool.sh. */
    if (!(argc > 5 && !strcmp(argv[5], "cold"))) memset(out, 0xff, n * sizeof *out);
    /* Warm up the workers and the shared memory, then time. */
    mh_executor_map(ex, inc, NULL, in, sizeof *in, out, sizeof *out,
                    n < 1000 ? n : 1000, chunk, NULL);
    double t0 = bench_now();
    int rc = mh_executor_map(ex, inc, NULL, in, sizeof *in, out, sizeof *out, n,
                             chunk, NULL);
    double t = bench_now() - t0;
    if (rc < 0 || out[n - 1] != (long)n) {
      fprintf(stderr, "pool_bench: map failed: %s\n", mh_strerror(rc));
      return 1;
    }
    printf("%.0f\n", (double)n / t);
    mh_executor_free(ex);
    free(in);
    free(out);
    return 0;
  }
  if (!strcmp(argv[1], "submit")) {
    mh_executor_t *ex = pool(argc > 3 ? atoi(argv[3]) : 0);
    long v = 1, o = 0;
    double t0 = 0;
    for (size_t i = 0; i < n + 100; i++) {
      if (i == 100) t0 = bench_now(); /* the first 100 warm up */
      mh_future_t *f;
      if (mh_executor_submit(ex, inc, &v, sizeof v, &o, sizeof o, NULL, &f) < 0 ||
          mh_future_result(f, MH_FOREVER) < 0)
        return 1;
      mh_future_release(f);
    }
    printf("%.2f\n", (bench_now() - t0) / (double)n * 1e6);
    mh_executor_free(ex);
    return 0;
  }
  fprintf(stderr, "pool_bench: unknown mode %s\n", argv[1]);
  return 2;
}
