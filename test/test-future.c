/* SPDX-License-Identifier: MIT */
/* test-future.c - futures on the thread backend: result timeouts,
 * cancellation and its races with the start, done callbacks, wait and
 * as_completed, futures recycled across threads, and fork while futures are
 * being allocated.  The executor shell (submit, shutdown, map / imap, bad
 * input, allocation failure) is test-executor.c. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor-common.h"

/* ---- futures ----------------------------------------------------------- */

TEST(result_timeout) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &f));
  ASSERT_ERR(mh_future_result(f, 0), MH_ETIMEDOUT);
  double t0 = mht_now();
  ASSERT_ERR(mh_future_result(f, 0.1), MH_ETIMEDOUT);
  double dt = mht_now() - t0;
  ASSERT(dt >= 0.099);
  ASSERT_ERR(mh_future_wait(f, 0.05), MH_ETIMEDOUT);
  ASSERT_EQ(mh_future_done(f), 0);
  while (!mh_future_running(f)) mht_sleep(0.001);
  ASSERT_EQ(mh_future_running(f), 1);
  ASSERT_ERR(mh_future_cancel(f), MH_EBUSY);
  atomic_store(&gate, 1);
  ASSERT_OK(mh_future_result(f, 10));
  mh_future_release(f);
  mh_executor_free(ex);
}

TEST(cancel_pending) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  static atomic_int runs[4];
  size_t idx[4] = {0, 1, 2, 3};
  mh_future_t *blocker, *fs[4];
  ASSERT_OK(
      mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blocker));
  for (int i = 0; i < 4; i++)
    ASSERT_OK(mh_executor_submit(ex, t_count, &idx[i], sizeof idx[i], NULL, 0,
                                 runs, &fs[i]));
  ASSERT_OK(mh_future_cancel(fs[1]));
  ASSERT_OK(mh_future_cancel(fs[1])); /* cancelling twice is fine */
  ASSERT_OK(mh_future_cancel(fs[3]));
  ASSERT_EQ(mh_future_cancelled(fs[1]), 1);
  ASSERT_EQ(mh_future_done(fs[1]), 1);
  ASSERT_ERR(mh_future_result(fs[1], 0), MH_ECANCELED);
  ASSERT_OK(mh_future_wait(fs[3], 0));
  atomic_store(&gate, 1);
  ASSERT_OK(mh_future_result(fs[0], MH_FOREVER));
  ASSERT_OK(mh_future_result(fs[2], MH_FOREVER));
  mh_executor_free(ex);
  ASSERT_EQ(atomic_load(&runs[0]), 1);
  ASSERT_EQ(atomic_load(&runs[1]), 0);
  ASSERT_EQ(atomic_load(&runs[2]), 1);
  ASSERT_EQ(atomic_load(&runs[3]), 0);
  for (int i = 0; i < 4; i++) mh_future_release(fs[i]);
  mh_future_release(blocker);
}

typedef struct {
  mh_future_t **fs;
  size_t n;
  int backwards;
  atomic_int *started; /* counts the cancellers that have begun */
} sweep_t;

static void *canceller(void *arg) {
  sweep_t *s = arg;
  for (size_t k = 0; k < s->n; k++) {
    size_t i = s->backwards ? s->n - 1 - k : k;
    if (mht_rand() & 1) (void)mh_future_cancel(s->fs[i]);
    /* Say so once a few futures have been tried: the gate opens only then,
     * so the sweep and the workers overlap however the threads are
     * scheduled. */
    if (k == (s->n > 32 ? 32 : s->n - 1)) atomic_fetch_add(s->started, 1);
    if ((mht_rand() & 255) == 0) mht_jitter(20);
  }
  return NULL;
}

TEST(cancel_or_start_exactly_one_wins) {
  size_t n = (size_t)mht_scaled(100000);
  atomic_int *runs = calloc(n, sizeof *runs);
  size_t *idx = malloc(n * sizeof *idx);
  mh_future_t **fs = calloc(n + 1, sizeof *fs);
  mh_executor_t *ex = threads(2);
  /* Hold both workers until the cancellers run, so that the futures are
   * still pending when the race starts. */
  atomic_int gate = 0;
  mh_future_t *blk[2];
  for (int i = 0; i < 2; i++)
    ASSERT_OK(
        mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blk[i]));
  for (size_t i = 0; i < n; i++) {
    idx[i] = i;
    ASSERT_OK(mh_executor_submit(ex, t_count, &idx[i], sizeof idx[i], NULL, 0,
                                 runs, &fs[i]));
  }
  pthread_t th[2];
  /* Two cancellers sweep the futures, one from each end, while the workers
   * start them. */
  atomic_int started = 0;
  sweep_t sw[2] = {{fs, n, 0, &started}, {fs, n, 1, &started}};
  pthread_create(&th[0], NULL, canceller, &sw[0]);
  pthread_create(&th[1], NULL, canceller, &sw[1]);
  while (atomic_load(&started) < 2) sched_yield();
  mht_jitter(2000);
  atomic_store(&gate, 1);
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT));
  size_t cancelled = 0;
  for (size_t i = 0; i < n; i++) {
    int c = mh_future_cancelled(fs[i]);
    int rc = mh_future_result(fs[i], 0);
    /* Exactly one of cancelled / finished, and the task ran iff not
     * cancelled. */
    ASSERT_EQ(mh_future_done(fs[i]), 1);
    ASSERT_EQ(rc, c ? MH_ECANCELED : 0);
    ASSERT_EQ(atomic_load(&runs[i]), !c);
    cancelled += (size_t)c;
    mh_future_release(fs[i]);
  }
  ASSERT(cancelled > 0);
  mh_future_release(blk[0]);
  mh_future_release(blk[1]);
  mh_executor_free(ex);
  free(fs);
  free(idx);
  free(runs);
}

typedef struct {
  atomic_int calls;
  atomic_int order; /* records the order of two callbacks */
  pthread_t caller;
  int on_caller;
} cbstate_t;

static void cb_count(mh_future_t *f, void *arg) {
  cbstate_t *s = arg;
  ASSERT_EQ(mh_future_done(f), 1);
  if (pthread_equal(pthread_self(), s->caller)) s->on_caller = 1;
  atomic_fetch_add(&s->calls, 1);
}

static void cb_first(mh_future_t *f, void *arg) {
  (void)f;
  cbstate_t *s = arg;
  int zero = 0;
  atomic_compare_exchange_strong(&s->order, &zero, 1);
}

static void cb_second(mh_future_t *f, void *arg) {
  (void)f;
  cbstate_t *s = arg;
  int one = 1;
  atomic_compare_exchange_strong(&s->order, &one, 2);
}

TEST(callbacks) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_future_t *f;
  cbstate_t s = {0};
  s.caller = pthread_self();
  ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &f));
  ASSERT_OK(mh_future_add_done_callback(f, cb_count, &s));
  ASSERT_OK(mh_future_add_done_callback(f, cb_first, &s));
  ASSERT_OK(mh_future_add_done_callback(f, cb_second, &s));
  ASSERT_EQ(atomic_load(&s.calls), 0);
  atomic_store(&gate, 1);
  ASSERT_OK(mh_future_result(f, MH_FOREVER));
  /* Callbacks run on the worker, in the order added, right after the future
   * is done; as in Python, result() may return while they still run, so wait
   * (bounded) for the last one before looking. */
  double t0 = mht_now();
  while (atomic_load(&s.order) != 2 && mht_now() - t0 < 10) mht_sleep(0.001);
  ASSERT_EQ(atomic_load(&s.order), 2);
  ASSERT_EQ(atomic_load(&s.calls), 1);
  ASSERT_EQ(s.on_caller, 0);
  /* Already done: runs at once on the caller's thread. */
  ASSERT_OK(mh_future_add_done_callback(f, cb_count, &s));
  ASSERT_EQ(atomic_load(&s.calls), 2);
  ASSERT_EQ(s.on_caller, 1);
  mh_future_release(f);

  /* Cancelling runs the callbacks too. */
  cbstate_t c = {0};
  c.caller = pthread_self();
  mh_future_t *blocker, *g;
  atomic_store(&gate, 0);
  ASSERT_OK(
      mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blocker));
  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &g));
  ASSERT_OK(mh_future_add_done_callback(g, cb_count, &c));
  ASSERT_OK(mh_future_cancel(g));
  ASSERT_EQ(atomic_load(&c.calls), 1);
  ASSERT_EQ(c.on_caller, 1);
  atomic_store(&gate, 1);
  mh_future_release(g);
  mh_future_release(blocker);
  mh_executor_free(ex);
}

typedef struct {
  mh_future_t **fs;
  atomic_int *counts;
  size_t n;
} adder_t;

static void *add_callbacks(void *arg) {
  adder_t *a = arg;
  for (size_t i = 0; i < a->n; i++) {
    ASSERT_OK(mh_future_add_done_callback(a->fs[i], cb_tick, &a->counts[i]));
    if ((mht_rand() & 127) == 0) mht_jitter(30);
  }
  return NULL;
}

static int t_jitter(const void *in, size_t is, void *out, size_t os,
                    void *ctx) {
  (void)in, (void)is, (void)out, (void)os, (void)ctx;
  if ((mht_rand() & 63) == 0) mht_jitter(20);
  return 0;
}

/* Callbacks added by two threads while the futures complete: each runs
 * exactly once, whether added before or after completion. */
TEST(callbacks_run_once_around_completion) {
  size_t n = (size_t)mht_scaled(50000);
  mh_future_t **fs = malloc(n * sizeof *fs);
  atomic_int *counts = calloc(n, sizeof *counts);
  mh_executor_t *ex = threads(2);
  for (size_t i = 0; i < n; i++)
    ASSERT_OK(mh_executor_submit(ex, t_jitter, NULL, 0, NULL, 0, NULL, &fs[i]));
  adder_t a = {fs, counts, n};
  pthread_t th[2];
  pthread_create(&th[0], NULL, add_callbacks, &a);
  pthread_create(&th[1], NULL, add_callbacks, &a);
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  for (size_t i = 0; i < n; i++) ASSERT_OK(mh_future_result(fs[i], MH_FOREVER));
  mh_executor_free(ex);
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(atomic_load(&counts[i]), 2);
    mh_future_release(fs[i]);
  }
  free(fs);
  free(counts);
}

/* as_completed and wait(FIRST_COMPLETED) over futures that are completing
 * while they register: every future is yielded exactly once. */
TEST(as_completed_yields_completing_futures_once) {
  mh_executor_t *ex = threads(2);
  for (int round = 0; round < 20; round++) {
    size_t n = (size_t)mht_scaled(5000) + 1;
    mh_future_t **fs = malloc(n * sizeof *fs);
    unsigned char *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++)
      ASSERT_OK(
          mh_executor_submit(ex, t_jitter, NULL, 0, NULL, 0, NULL, &fs[i]));
    size_t nd;
    ASSERT_OK(mh_futures_wait(fs, n, MH_FIRST_COMPLETED, MH_FOREVER, &nd));
    ASSERT_GE(nd, 1);
    mh_as_completed_t *ac;
    ASSERT_OK(mh_as_completed_new(&ac, fs, n));
    mh_future_t *f;
    size_t count = 0;
    int rc;
    while ((rc = mh_as_completed_next(ac, 30, &f)) == 0) {
      /* Futures are distinct; find f by a linear scan from a hint. */
      size_t k = 0;
      while (fs[k] != f) k++;
      ASSERT_EQ(seen[k], 0);
      seen[k] = 1;
      count++;
      if (round % 2 && count == n / 2) break; /* free it half-way */
    }
    if (!(round % 2)) {
      ASSERT_ERR(rc, MH_EEOF);
      ASSERT_EQ(count, n);
    }
    mh_as_completed_free(ac);
    ASSERT_OK(mh_futures_wait(fs, n, MH_ALL_COMPLETED, MH_FOREVER, &nd));
    ASSERT_EQ(nd, n);
    for (size_t i = 0; i < n; i++) mh_future_release(fs[i]);
    free(fs);
    free(seen);
  }
  mh_executor_free(ex);
}

/* Futures submitted by one thread and released by another, by threads that
 * then end with futures in their caches, over two executors in turn: the
 * recycled memory of futures must never be handed out twice.  Each task
 * writes its own fresh value, so a future in use by two owners shows up as
 * a wrong result. */
typedef struct {
  mh_executor_t *ex;
  pthread_mutex_t *lock;
  mh_future_t **pool; /* released futures' stack, guarded by lock */
  size_t *npool;
  long base;
  atomic_int *bad;
} recycle_t;

enum { RECYCLE_B = 300, RECYCLE_ROUNDS = 40 };

static void *recycler(void *arg) {
  recycle_t *r = arg;
  static _Thread_local long in[RECYCLE_B], out[RECYCLE_B];
  mh_future_t *fs[RECYCLE_B];
  int rounds = mht_scaled(RECYCLE_ROUNDS);
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < RECYCLE_B; i++) {
      in[i] = r->base + round * RECYCLE_B + i;
      if (in[i] % 1000 == 13) in[i]++;
      if (mh_executor_submit(r->ex, t_double, &in[i], sizeof in[i], &out[i],
                             sizeof out[i], NULL, &fs[i])) {
        atomic_fetch_add(r->bad, 1);
        return NULL;
      }
    }
    for (int i = 0; i < RECYCLE_B; i++)
      if (mh_future_result(fs[i], 10.0) != 0 || out[i] != 2 * in[i])
        atomic_fetch_add(r->bad, 1);
    /* Hand ours over; release up to as many of anybody's. */
    pthread_mutex_lock(r->lock);
    for (int i = 0; i < RECYCLE_B; i++) r->pool[(*r->npool)++] = fs[i];
    size_t take = *r->npool < RECYCLE_B ? *r->npool : RECYCLE_B;
    take -= (size_t)(round % 7); /* leave a few behind for the others */
    for (size_t i = 0; i < take; i++) fs[i] = r->pool[--*r->npool];
    pthread_mutex_unlock(r->lock);
    for (size_t i = 0; i < take; i++) mh_future_release(fs[i]);
  }
  return NULL;
}

TEST(futures_recycled_across_threads) {
  enum { T = 4 };
  size_t cap = (size_t)T * RECYCLE_B * (size_t)mht_scaled(RECYCLE_ROUNDS);
  mh_future_t **pool = malloc(cap * sizeof *pool);
  ASSERT(pool != NULL);
  for (int pass = 0; pass < 2; pass++) {
    mh_executor_t *ex = threads(2);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    size_t npool = 0;
    atomic_int bad = 0;
    recycle_t r[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
      r[i] = (recycle_t){ex, &lock, pool, &npool, (long)(pass * T + i) << 32,
                         &bad};
      ASSERT_EQ(pthread_create(&th[i], NULL, recycler, &r[i]), 0);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&bad), 0);
    /* Those left over are done; release them from here. */
    for (size_t i = 0; i < npool; i++) {
      ASSERT_EQ(mh_future_done(pool[i]), 1);
      mh_future_release(pool[i]);
    }
    mh_executor_free(ex);
  }
  free(pool);
}

/* ---- wait and as_completed --------------------------------------------- */

TEST(wait_modes) {
  mh_executor_t *ex = threads(3);
  atomic_int g1 = 0, g2 = 0;
  int fail = MH_EUSER - 1, ok = 0;
  mh_future_t *fs[3];
  ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &g1, &fs[0]));
  ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &g2, &fs[1]));
  ASSERT_OK(
      mh_executor_submit(ex, t_code, &ok, sizeof ok, NULL, 0, NULL, &fs[2]));
  size_t nd = 99;
  /* FIRST_COMPLETED returns when fs[2] is done. */
  ASSERT_OK(mh_futures_wait(fs, 3, MH_FIRST_COMPLETED, 10, &nd));
  ASSERT_EQ(nd, 1);
  ASSERT_EQ(mh_future_done(fs[2]), 1);
  /* Nothing failed: FIRST_EXCEPTION and ALL_COMPLETED time out. */
  double t0 = mht_now();
  ASSERT_ERR(mh_futures_wait(fs, 3, MH_FIRST_EXCEPTION, 0.05, &nd),
             MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 >= 0.049);
  ASSERT_EQ(nd, 1);
  ASSERT_ERR(mh_futures_wait(fs, 3, MH_ALL_COMPLETED, 0.05, &nd),
             MH_ETIMEDOUT);
  ASSERT_ERR(mh_futures_wait(fs, 3, MH_ALL_COMPLETED, 0, &nd), MH_ETIMEDOUT);
  ASSERT_EQ(nd, 1);
  ASSERT_ERR(mh_futures_wait(fs, 2, MH_FIRST_COMPLETED, 0.02, &nd),
             MH_ETIMEDOUT);
  ASSERT_EQ(nd, 0);
  /* A failing task ends FIRST_EXCEPTION. */
  mh_future_t *bad;
  ASSERT_OK(
      mh_executor_submit(ex, t_code, &fail, sizeof fail, NULL, 0, NULL, &bad));
  mh_future_t *fs4[4] = {fs[0], fs[1], fs[2], bad};
  ASSERT_OK(mh_futures_wait(fs4, 4, MH_FIRST_EXCEPTION, 10, &nd));
  ASSERT_EQ(nd, 2);
  /* ALL_COMPLETED waits for the gates. */
  atomic_store(&g1, 1);
  ASSERT_OK(mh_futures_wait(fs, 1, MH_ALL_COMPLETED, 10, &nd));
  atomic_store(&g2, 1);
  ASSERT_OK(mh_futures_wait(fs4, 4, MH_ALL_COMPLETED, MH_FOREVER, &nd));
  ASSERT_EQ(nd, 4);
  ASSERT_OK(mh_futures_wait(fs4, 4, MH_FIRST_EXCEPTION, 0, NULL));
  for (int i = 0; i < 3; i++) mh_future_release(fs[i]);
  mh_future_release(bad);
  mh_executor_free(ex);
}

TEST(wait_first_completed_wakes) {
  mh_executor_t *ex = threads(2);
  for (int round = 0; round < 50; round++) {
    double d[2] = {0.002 * (round % 3), 5.0};
    mh_future_t *fs[2];
    atomic_int gate = 0;
    ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &fs[1]));
    ASSERT_OK(
        mh_executor_submit(ex, t_sleep, &d[0], sizeof d[0], NULL, 0, NULL,
                           &fs[0]));
    size_t nd;
    ASSERT_OK(mh_futures_wait(fs, 2, MH_FIRST_COMPLETED, 10, &nd));
    ASSERT_EQ(nd, 1);
    ASSERT_EQ(mh_future_done(fs[0]), 1);
    atomic_store(&gate, 1);
    ASSERT_OK(mh_future_result(fs[1], MH_FOREVER));
    mh_future_release(fs[0]);
    mh_future_release(fs[1]);
  }
  mh_executor_free(ex);
}

TEST(as_completed) {
  mh_executor_t *ex = threads(3);
  enum { N = 30 };
  double d[N];
  mh_future_t *fs[N + 2];
  for (int i = 0; i < N; i++) {
    d[i] = 0.001 * (double)((i * 7) % 11);
    ASSERT_OK(mh_executor_submit(ex, t_sleep, &d[i], sizeof d[i], NULL, 0,
                                 NULL, &fs[i]));
  }
  /* Duplicates are yielded once. */
  fs[N] = fs[3];
  fs[N + 1] = fs[17];
  mh_as_completed_t *ac;
  ASSERT_OK(mh_as_completed_new(&ac, fs, N + 2));
  int seen[N] = {0};
  mh_future_t *f;
  int rc, count = 0;
  while ((rc = mh_as_completed_next(ac, 10, &f)) == 0) {
    ASSERT_EQ(mh_future_done(f), 1);
    int k = -1;
    for (int i = 0; i < N; i++)
      if (fs[i] == f) k = i;
    ASSERT(k >= 0);
    seen[k]++;
    count++;
  }
  ASSERT_ERR(rc, MH_EEOF);
  ASSERT_EQ(count, N);
  for (int i = 0; i < N; i++) ASSERT_EQ(seen[i], 1);
  mh_as_completed_free(ac);

  /* Timeout, and freeing an iterator whose futures are still pending. */
  atomic_int gate = 0;
  mh_future_t *g[2];
  ASSERT_OK(mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &g[0]));
  g[1] = fs[0];
  ASSERT_OK(mh_as_completed_new(&ac, g, 2));
  ASSERT_OK(mh_as_completed_next(ac, 10, &f));
  ASSERT(f == fs[0]);
  ASSERT_ERR(mh_as_completed_next(ac, 0.02, &f), MH_ETIMEDOUT);
  ASSERT_ERR(mh_as_completed_next(ac, 0, &f), MH_ETIMEDOUT);
  mh_as_completed_free(ac);
  atomic_store(&gate, 1);
  ASSERT_OK(mh_future_result(g[0], MH_FOREVER));
  mh_future_release(g[0]);
  for (int i = 0; i < N; i++) mh_future_release(fs[i]);
  ASSERT_OK(mh_as_completed_new(&ac, NULL, 0));
  ASSERT_ERR(mh_as_completed_next(ac, 0, &f), MH_EEOF);
  mh_as_completed_free(ac);
  mh_executor_free(ex);
}

/* ---- fork while futures are allocated ---------------------------------- */

/* Submit and release tiny tasks until told to stop: keeps the future
 * allocator's lock busy (thread caches refilled from fresh slabs). */
static void *churn(void *arg) {
  void **a = arg;
  mh_executor_t *ex = a[0];
  atomic_int *stop = a[1];
  mh_future_t *fs[512];
  while (!atomic_load(stop)) {
    size_t n = 0;
    for (; n < 512; n++)
      if (mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &fs[n]))
        break;
    for (size_t i = 0; i < n; i++) {
      (void)mh_future_result(fs[i], MH_FOREVER);
      mh_future_release(fs[i]);
    }
  }
  return NULL;
}

/* Other threads allocate futures while this one forks: each child must find
 * the allocator whole (the lock free, the slab being carved consistent) and
 * run an executor of its own with many futures. */

TEST(fork_while_allocating) {
#if MH__SANITIZED
  /* Not under the sanitizers: ThreadSanitizer cannot start threads after a
   * threaded fork, and AddressSanitizer's own allocator can be inherited
   * locked (the child then hangs in malloc, seen with gcc 12's libasan). */
  printf("skipped under a sanitizer whose runtime is not fork-safe\n");
  exit(77);
#endif
  mh_executor_t *ex = threads(2);
  atomic_int stop = 0;
  void *arg[2] = {ex, &stop};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, churn, arg), 0);
  int forks = (int)mht_scaled(40);
  if (forks < 5) forks = 5;
  for (int r = 0; r < forks; r++) {
    mht_jitter(2000);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
      alarm(20);
      mh_executor_t *cx = threads(2);
      enum { N = 3000 };
      static long in[N], out[N];
      static mh_future_t *fs[N];
      int bad = 0;
      for (long i = 0; i < N; i++) {
        in[i] = i;
        bad |= mh_executor_submit(cx, t_double, &in[i], sizeof(long), &out[i],
                                  sizeof(long), NULL, &fs[i]) != 0;
        if (bad) _exit(2);
      }
      for (long i = 0; i < N; i++) {
        int rc = mh_future_result(fs[i], MH_FOREVER);
        bad |= rc != (i % 1000 == 13 ? MH_EUSER - (int)(i % 7) : 0);
        bad |= out[i] != 2 * i;
        mh_future_release(fs[i]);
      }
      mh_executor_shutdown(cx, MH_SHUTDOWN_WAIT);
      mh_executor_free(cx);
      _exit(bad ? 3 : 0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT);
  mh_executor_free(ex);
}
