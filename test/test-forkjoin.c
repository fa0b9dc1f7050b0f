/* test-forkjoin.c - tasks that wait on tasks: help-first waits, work
 * stealing, task groups, parallel_for and parallel_reduce (issue 11). */
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---- a recursive sum: each node spawns its left half and runs the right */

typedef struct {
  uint64_t lo, hi;   /* the leaves lo..hi-1; leaf i adds i */
  unsigned sleep_us; /* a random sleep of up to this at each leaf, or 0 */
  uint64_t fail_at;  /* the leaf that fails with MH_EUSER - 1, or UINT64_MAX */
  int inline_waits;  /* 0: mh_future_result; 1: mh_futures_wait; 2: as_completed */
} span_t;

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size,
                     void *ctx);

static uint64_t rnd_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static int tree_sum(mh_executor_t *ex, const span_t *sp, uint64_t *sum) {
  if (sp->hi - sp->lo == 1) {
    if (sp->sleep_us) {
      uint64_t s = sp->lo * 0x9e3779b97f4a7c15ull + 1;
      usleep((useconds_t)(rnd_next(&s) % sp->sleep_us));
    }
    if (sp->lo == sp->fail_at) return MH_EUSER - 1;
    *sum = sp->lo;
    return 0;
  }
  uint64_t mid = sp->lo + (sp->hi - sp->lo) / 2;
  span_t left = *sp, right = *sp;
  left.hi = mid;
  right.lo = mid;
  uint64_t ls = 0, rs = 0;
  mh_future_t *f;
  int rc = mh_executor_submit(ex, tree_task, &left, sizeof left, &ls, sizeof ls, ex, &f);
  if (rc == MH_ESHUTDOWN) {
    /* Shut down meanwhile: do it here. */
    rc = tree_sum(ex, &left, &ls);
    f = NULL;
  } else if (rc) {
    return rc;
  }
  int rrc = tree_sum(ex, &right, &rs);
  int lrc = rc;
  if (f) {
    if (sp->inline_waits == 1) {
      size_t nd = 0;
      ASSERT_EQ(mh_futures_wait(&f, 1, MH_FIRST_COMPLETED, MH_FOREVER, &nd), 0);
      ASSERT_EQ(nd, 1);
    } else if (sp->inline_waits == 2) {
      mh_as_completed_t *ac;
      ASSERT_EQ(mh_as_completed_new(&ac, &f, 1), 0);
      mh_future_t *g;
      ASSERT_EQ(mh_as_completed_next(ac, MH_FOREVER, &g), 0);
      ASSERT(g == f);
      mh_as_completed_free(ac);
    }
    lrc = mh_future_result(f, MH_FOREVER);
    mh_future_release(f);
  }
  *sum = ls + rs;
  return lrc ? lrc : rrc;
}

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size,
                     void *ctx) {
  (void)in_size;
  (void)out_size;
  return tree_sum(ctx, in, out);
}

static mh_executor_t *threads(int n) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = n;
  mh_executor_t *ex;
  ASSERT_EQ(mh_executor_new(&ex, &o), 0);
  return ex;
}

/* Run the whole tree as one task submitted from outside. */
static int run_tree(mh_executor_t *ex, span_t sp, uint64_t *sum) {
  mh_future_t *f;
  int rc = mh_executor_submit(ex, tree_task, &sp, sizeof sp, sum, sizeof *sum, ex, &f);
  if (rc) return rc;
  rc = mh_future_result(f, MH_FOREVER);
  mh_future_release(f);
  return rc;
}

static void tree_on(int workers, uint64_t leaves, int inline_waits) {
  mh_executor_t *ex = threads(workers);
  span_t sp = {0, leaves, 0, UINT64_MAX, inline_waits};
  uint64_t sum = 0;
  ASSERT_EQ(run_tree(ex, sp, &sum), 0);
  ASSERT_EQ(sum, leaves * (leaves - 1) / 2);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

/* The deadlock of the executor before issue 11: one worker, a task that
 * waits for its child.  It hung forever there; here it must finish. */
TEST(child_wait_one_worker) { tree_on(1, 2, 0); }

TEST(tree_1e6_one_worker) { tree_on(1, 1000000, 0); }
TEST(tree_1e6_two_workers) { tree_on(2, 1000000, 0); }
TEST(tree_1e6_eight_workers) { tree_on(8, 1000000, 0); }
TEST(tree_futures_wait_inside) { tree_on(2, 100000, 1); }
TEST(tree_as_completed_inside) { tree_on(3, 100000, 2); }

/* Trees started from many outside threads at once share the workers. */
static void outside_thread(void *arg) {
  mh_executor_t *ex = arg;
  for (int i = 0; i < 20; i++) {
    span_t sp = {0, 5000, 0, UINT64_MAX, 0};
    uint64_t sum = 0;
    ASSERT_EQ(run_tree(ex, sp, &sum), 0);
    ASSERT_EQ(sum, 5000ull * 4999 / 2);
  }
}

TEST(trees_from_many_threads) {
  mh_executor_t *ex = threads(3);
  mh_thread_t *t[6];
  for (int i = 0; i < 6; i++) ASSERT_EQ(mh_thread_start(&t[i], outside_thread, ex, NULL), 0);
  for (int i = 0; i < 6; i++) ASSERT_EQ(mh_thread_join(t[i], MH_FOREVER), 0);
  for (int i = 0; i < 6; i++) mh_thread_free(t[i]);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

/* ---- a chain: each task submits one child and waits for it ------------ */

static int chain_task(const void *in, size_t in_size, void *out, size_t out_size,
                      void *ctx) {
  (void)in_size;
  (void)out_size;
  int depth = *(const int *)in;
  if (depth == 0) {
    *(int *)out = 0;
    return 0;
  }
  int next = depth - 1, got = -1;
  mh_future_t *f;
  int rc = mh_executor_submit(ctx, chain_task, &next, sizeof next, &got, sizeof got, ctx, &f);
  if (rc) return rc;
  rc = mh_future_result(f, MH_FOREVER);
  mh_future_release(f);
  *(int *)out = got + 1;
  return rc;
}

static void chain_on(int workers, int depth) {
  mh_executor_t *ex = threads(workers);
  int got = -1;
  mh_future_t *f;
  ASSERT_EQ(mh_executor_submit(ex, chain_task, &depth, sizeof depth, &got, sizeof got, ex, &f), 0);
  ASSERT_EQ(mh_future_result(f, MH_FOREVER), 0);
  mh_future_release(f);
  ASSERT_EQ(got, depth);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

TEST(chain_1e4_one_worker) { chain_on(1, 10000); }
TEST(chain_1e4_two_workers) { chain_on(2, 10000); }

/* ---- random sleeps, errors, shutdown ---------------------------------- */

TEST(tree_random_sleeps) {
  mh_executor_t *ex = threads(4);
  span_t sp = {0, 2000, 300, UINT64_MAX, 0};
  uint64_t sum = 0;
  ASSERT_EQ(run_tree(ex, sp, &sum), 0);
  ASSERT_EQ(sum, 2000ull * 1999 / 2);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

TEST(error_leaf_to_root) {
  for (int w = 1; w <= 4; w += 3) {
    mh_executor_t *ex = threads(w);
    span_t sp = {0, 100000, 0, 77777, 0};
    uint64_t sum = 0;
    ASSERT_EQ(run_tree(ex, sp, &sum), MH_EUSER - 1);
    ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
    mh_executor_free(ex);
  }
}

typedef struct {
  mh_executor_t *ex;
  int rc;
  uint64_t sum;
} bg_tree_t;

static void bg_tree(void *arg) {
  bg_tree_t *b = arg;
  span_t sp = {0, 1000000, 0, UINT64_MAX, 0};
  b->rc = run_tree(b->ex, sp, &b->sum);
}

/* Shut down (waiting, and cancelling) while a tree grows: no hang, and the
 * tree either completes right or says why it did not. */
TEST(shutdown_while_tree_runs) {
  for (int round = 0; round < 6; round++) {
    mh_executor_t *ex = threads(1 + round % 3);
    bg_tree_t b = {ex, 1, 0};
    mh_thread_t *t;
    ASSERT_EQ(mh_thread_start(&t, bg_tree, &b, NULL), 0);
    usleep((useconds_t)(1000 * (1 + round * 3)));
    unsigned fl = MH_SHUTDOWN_WAIT | ((round & 1) ? MH_SHUTDOWN_CANCEL_FUTURES : 0);
    ASSERT_EQ(mh_executor_shutdown(ex, fl), 0);
    ASSERT_EQ(mh_thread_join(t, MH_FOREVER), 0);
    mh_thread_free(t);
    if (b.rc == 0)
      ASSERT_EQ(b.sum, 1000000ull * 999999 / 2);
    else
      ASSERT(b.rc == MH_ECANCELED || b.rc == MH_ESHUTDOWN);
    mh_executor_free(ex);
  }
}
