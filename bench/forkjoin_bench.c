/* SPDX-License-Identifier: MIT */
/* forkjoin_bench.c - fork-join on the thread executor: a binary tree of
 * spawn + join per node, parallel_for of a no-op body, parallel_reduce of a
 * sum of doubles.  One measurement per run; bench/forkjoin.sh takes medians
 * beside the oneTBB and OpenMP peers.
 *
 *   forkjoin_bench tree LEAVES WORKERS   -> seconds  wall-ns  cpu-ns per spawn+join
 *     (mh_spawn / mh_spawn_join: records on the parent's stack)
 *   forkjoin_bench ftree LEAVES WORKERS  -> the same tree with futures
 *     (mh_executor_submit / mh_future_result from inside the tasks)
 *   forkjoin_bench for N WORKERS         -> seconds  wall-ns  cpu-ns per index
 *   forkjoin_bench reduce N WORKERS      -> seconds  wall-ns  cpu-ns per index
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "forkjoin_body.h"
#include "manyhands.h"

typedef struct {
  long lo, hi;
} span_t;

static mh_executor_t *g_ex;

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx);

/* Each inner node spawns its left half and computes its right half itself,
 * then joins: one spawn + join per inner node, leaves - 1 of them. */
static long tree(long lo, long hi) {
  if (hi - lo == 1) return lo;
  long mid = lo + (hi - lo) / 2;
  span_t left = {lo, mid};
  long ls = 0;
  mh_future_t *f;
  if (mh_executor_submit(g_ex, tree_task, &left, sizeof left, &ls, sizeof ls, NULL, &f))
    abort();
  long rs = tree(mid, hi);
  if (mh_future_result(f, MH_FOREVER)) abort();
  mh_future_release(f);
  return ls + rs;
}

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx) {
  (void)in_size;
  (void)out_size;
  (void)ctx;
  const span_t *s = in;
  *(long *)out = tree(s->lo, s->hi);
  return 0;
}

/* The same tree with spawn records: the left half is spawned, the right
 * half computed here, then the spawn joined. */
typedef struct {
  long lo, hi, sum;
} stree_t;

static int stree(void *arg) {
  stree_t *s = arg;
  if (s->hi - s->lo == 1) {
    s->sum = s->lo;
    return 0;
  }
  long mid = s->lo + (s->hi - s->lo) / 2;
  stree_t left = {s->lo, mid, 0}, right = {mid, s->hi, 0};
  mh_spawn_t t;
  mh_spawn(g_ex, &t, stree, &left);
  stree(&right);
  if (mh_spawn_join(&t)) abort();
  s->sum = left.sum + right.sum;
  return 0;
}

static int stree_task(const void *in, size_t in_size, void *out, size_t out_size,
                      void *ctx) {
  (void)in_size;
  (void)out_size;
  (void)ctx;
  stree_t s = *(const stree_t *)in;
  stree(&s);
  *(long *)out = s.sum;
  return 0;
}

/* One tree of n leaves as one task submitted from outside: the sum, or -1. */
static long run_tree(int spawn, long n) {
  span_t root = {0, n};
  stree_t sroot = {0, n, 0};
  long sum = -1;
  mh_future_t *f;
  if (spawn ? mh_executor_submit(g_ex, stree_task, &sroot, sizeof sroot, &sum, sizeof sum,
                                 NULL, &f)
            : mh_executor_submit(g_ex, tree_task, &root, sizeof root, &sum, sizeof sum, NULL,
                                 &f))
    return -1;
  if (mh_future_result(f, MH_FOREVER)) sum = -1;
  mh_future_release(f);
  return sum;
}

/* The loops themselves are forkjoin_body.c's, shared with the peers. */
static int noop_body(size_t lo, size_t hi, void *ctx) {
  (void)ctx;
  fj_noop_range(lo, hi);
  return 0;
}

static int sum_leaf(size_t lo, size_t hi, void *acc, void *ctx) {
  *(double *)acc = fj_sum_range(ctx, lo, hi, *(double *)acc);
  return 0;
}

static void sum_join(void *l, const void *r, void *ctx) {
  (void)ctx;
  *(double *)l += *(const double *)r;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s tree|ftree|for|reduce N WORKERS\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = atoi(argv[3]);
  if (mh_executor_new(&g_ex, &o)) return 1;
  double t0, t1, c0, c1, per, units;
  if (!strcmp(argv[1], "tree") || !strcmp(argv[1], "ftree")) {
    int spawn = !strcmp(argv[1], "tree");
    /* One untimed tree first, as in the peers: the workers start and their
     * deques grow outside the timing. */
    if (run_tree(spawn, n) != n * (n - 1) / 2) return 1;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    long sum = run_tree(spawn, n);
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (sum != n * (n - 1) / 2) return 1;
    units = (double)(n - 1);
    per = (t1 - t0) * 1e9 / units;
  } else if (!strcmp(argv[1], "for")) {
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    if (mh_parallel_for(g_ex, 0, (size_t)n, 0, noop_body, NULL)) return 1;
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else if (!strcmp(argv[1], "reduce")) {
    double *x = malloc((size_t)n * sizeof *x);
    if (!x) return 1;
    for (long i = 0; i < n; i++) x[i] = (double)(i & 1023) * 0.5;
    double zero = 0, got = 0;
    t0 = bench_now();
    c0 = bench_cpu_seconds();
    if (mh_parallel_reduce(g_ex, 0, (size_t)n, 0, sizeof got, &zero, sum_leaf, sum_join, x, &got))
      return 1;
    t1 = bench_now();
    c1 = bench_cpu_seconds();
    if (got <= 0) return 1;
    free(x);
    units = (double)n;
    per = (t1 - t0) * 1e9 / units;
  } else {
    return 2;
  }
  mh_executor_free(g_ex);
  printf("%.6f %.3f %.3f\n", t1 - t0, per, (c1 - c0) * 1e9 / units);
  return 0;
}
