/* SPDX-License-Identifier: MIT */
/* test-executor.c - the executor shell on the thread backend: submit,
 * options, bad input, other backends, shutdown, many tasks, sparse submits,
 * worker initializers, map / imap and allocation failure.  Futures, wait and
 * as_completed are test-future.c. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor-common.h"

/* ---- basics ------------------------------------------------------------ */

TEST(submit_result) {
  mh_executor_t *ex = threads(3);
  ASSERT_EQ(mh_executor_workers(ex), 3);
  ASSERT_EQ(mh_executor_backend(ex), MH_BACKEND_THREADS);
  enum { N = 200 };
  long in[N], out[N];
  mh_future_t *fs[N];
  for (long i = 0; i < N; i++) {
    in[i] = i + 1000;
    out[i] = -1;
    ASSERT_OK(mh_executor_submit(ex, t_double, &in[i], sizeof in[i], &out[i],
                                 sizeof out[i], NULL, &fs[i]));
  }
  for (long i = 0; i < N; i++) {
    int want = (i + 1000) % 1000 == 13 ? MH_EUSER - (int)((i + 1000) % 7) : 0;
    ASSERT_ERR(mh_future_result(fs[i], MH_FOREVER), want);
    ASSERT_EQ(out[i], 2 * (i + 1000));
    ASSERT_EQ(mh_future_done(fs[i]), 1);
    ASSERT_EQ(mh_future_running(fs[i]), 0);
    ASSERT_EQ(mh_future_cancelled(fs[i]), 0);
    ASSERT_ERR(mh_future_cancel(fs[i]), MH_EBUSY);
    ASSERT_ERR(mh_future_wait(fs[i], 0), 0);
    int pid, code;
    ASSERT_ERR(mh_future_worker_exit(fs[i], &pid, &code), MH_EINVAL);
    mh_future_release(fs[i]);
  }
  /* A task's own code passes through unchanged, MH_E* ones included. */
  int codes[] = {0, MH_ETIMEDOUT, MH_EUSER, MH_EUSER - 12345, MH_EIO};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    mh_future_t *f;
    ASSERT_OK(mh_executor_submit(ex, t_code, &codes[i], sizeof codes[i], NULL,
                                 0, NULL, &f));
    ASSERT_ERR(mh_future_result(f, 5.0), codes[i]);
    mh_future_release(f);
  }
  mh_executor_free(ex);
}

TEST(default_options) {
  mh_executor_t *ex = NULL;
  ASSERT_OK(mh_executor_new(&ex, NULL));
  ASSERT_EQ(mh_executor_workers(ex), mh_cpu_count());
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f));
  ASSERT_OK(mh_future_result(f, MH_FOREVER));
  mh_future_release(f);
  mh_executor_free(ex);
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  ASSERT_EQ(o.backend, MH_BACKEND_THREADS);
  ASSERT_EQ(o.flags, 0);
}

TEST(bad_input) {
  mh_executor_t *ex = NULL;
  mh_executor_options_t o;
  ASSERT_ERR(mh_executor_new(NULL, NULL), MH_EINVAL);
  mh_executor_options_init(&o);
  o.workers = -1;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.workers = 4097;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.workers = 1;
  o.backend = (mh_backend_t)7;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.backend = MH_BACKEND_THREADS;
  o.retries = -1;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.retries = 0;
  o.max_tasks_per_child = -3;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.max_tasks_per_child = 0;
  o.flags = 1;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  ASSERT(ex == NULL);
  ASSERT_EQ(mh_executor_workers(NULL), MH_EINVAL);
  ASSERT_EQ(mh_executor_backend(NULL), MH_EINVAL);
  ASSERT_ERR(mh_executor_shutdown(NULL, 0), MH_EINVAL);
  mh_executor_free(NULL);

  ex = threads(1);
  mh_future_t *f = NULL;
  long x = 1;
  ASSERT_ERR(mh_executor_submit(NULL, t_noop, NULL, 0, NULL, 0, NULL, &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, NULL, NULL, 0, NULL, 0, NULL, &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, t_noop, NULL, 8, NULL, 0, NULL, &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, t_noop, &x, 8, NULL, 8, NULL, &f),
             MH_EINVAL);
  ASSERT(f == NULL);
  ASSERT_ERR(mh_executor_shutdown(ex, 0x80), MH_EINVAL);

  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f));
  ASSERT_ERR(mh_future_result(f, -0.5), MH_EINVAL);
  ASSERT_ERR(mh_future_wait(f, -2), MH_EINVAL);
  ASSERT_OK(mh_future_wait(f, MH_FOREVER));
  ASSERT_ERR(mh_future_result(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_future_wait(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_future_cancel(NULL), MH_EINVAL);
  ASSERT_EQ(mh_future_done(NULL), 0);
  ASSERT_EQ(mh_future_running(NULL), 0);
  ASSERT_EQ(mh_future_cancelled(NULL), 0);
  ASSERT_ERR(mh_future_add_done_callback(NULL, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_future_add_done_callback(f, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_future_worker_exit(NULL, NULL, NULL), MH_EINVAL);
  mh_future_retain(NULL);
  mh_future_release(NULL);

  mh_future_t *fs[2] = {f, NULL};
  size_t nd;
  ASSERT_ERR(mh_futures_wait(NULL, 1, MH_ALL_COMPLETED, 0, &nd), MH_EINVAL);
  ASSERT_ERR(mh_futures_wait(fs, 2, MH_ALL_COMPLETED, 0, &nd), MH_EINVAL);
  ASSERT_ERR(mh_futures_wait(fs, 1, (mh_wait_mode_t)0, 0, &nd), MH_EINVAL);
  ASSERT_ERR(mh_futures_wait(fs, 1, MH_ALL_COMPLETED, -3, &nd), MH_EINVAL);
  ASSERT_OK(mh_futures_wait(NULL, 0, MH_ALL_COMPLETED, 0, &nd));
  ASSERT_EQ(nd, 0);
  mh_as_completed_t *ac = NULL;
  ASSERT_ERR(mh_as_completed_new(NULL, fs, 1), MH_EINVAL);
  ASSERT_ERR(mh_as_completed_new(&ac, NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_as_completed_new(&ac, fs, 2), MH_EINVAL);
  ASSERT_OK(mh_as_completed_new(&ac, fs, 1));
  mh_future_t *g;
  ASSERT_ERR(mh_as_completed_next(ac, -5, &g), MH_EINVAL);
  ASSERT_ERR(mh_as_completed_next(ac, 1, NULL), MH_EINVAL);
  ASSERT_ERR(mh_as_completed_next(NULL, 1, &g), MH_EINVAL);
  mh_as_completed_free(ac);
  mh_as_completed_free(NULL);
  mh_future_release(f);

  long in[4] = {0}, out[4];
  ASSERT_ERR(mh_executor_map(NULL, t_double, NULL, in, 8, out, 8, 4, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, NULL, NULL, in, 8, out, 8, 4, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, t_double, NULL, NULL, 8, out, 8, 4, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, t_double, NULL, in, 8, NULL, 8, 4, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, t_double, NULL, in, SIZE_MAX / 2, out, 8, 4,
                             0, NULL),
             MH_EINVAL);
  ASSERT_OK(mh_executor_map(ex, t_double, NULL, in, 8, out, 8, 0, 0, NULL));
  mh_map_iter_t *it = NULL;
  ASSERT_ERR(mh_executor_imap(ex, t_double, NULL, in, 8, out, 8, 4, 0, 0,
                              NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_imap(ex, t_double, NULL, in, 8, out, 8, 4, 0, 0x10,
                              &it),
             MH_EINVAL);
  ASSERT_OK(mh_executor_imap(ex, t_double, NULL, in, 8, out, 8, 4, 0, 0, &it));
  size_t idx;
  int st;
  ASSERT_ERR(mh_map_iter_next(it, -7, &idx, &st), MH_EINVAL);
  ASSERT_ERR(mh_map_iter_next(it, 1, NULL, &st), MH_EINVAL);
  ASSERT_ERR(mh_map_iter_next(NULL, 1, &idx, &st), MH_EINVAL);
  mh_map_iter_free(it);
  mh_map_iter_free(NULL);
  mh_executor_free(ex);
}

TEST(other_backends) {
  /* The process and MPI backends are separate parts: when one is not built
   * in, asking for it says so instead of failing to link. */
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 1;
  o.backend = MH_BACKEND_MPI;
  mh_executor_t *ex = NULL;
  int rc = mh_executor_new(&ex, &o);
  ASSERT(rc == MH_ENOTSUP || rc == 0 || rc == MH_EMPI);
  mh_executor_free(ex);
  ex = NULL;
  o.backend = MH_BACKEND_PROCESSES;
  rc = mh_executor_new(&ex, &o);
  ASSERT(rc == MH_ENOTSUP || rc == 0);
  mh_executor_free(ex);
}

/* ---- shutdown ---------------------------------------------------------- */

TEST(shutdown_semantics) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_future_t *blocker, *queued[10];
  ASSERT_OK(
      mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blocker));
  for (int i = 0; i < 10; i++)
    ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL,
                                 &queued[i]));
  /* A non-waiting shutdown returns at once; queued work still runs. */
  ASSERT_OK(mh_executor_shutdown(ex, 0));
  mh_future_t *f = NULL;
  ASSERT_ERR(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f),
             MH_ESHUTDOWN);
  ASSERT(f == NULL);
  long in = 1, out;
  ASSERT_ERR(mh_executor_map(ex, t_double, NULL, &in, 8, &out, 8, 1, 0, NULL),
             MH_ESHUTDOWN);
  mh_map_iter_t *it = NULL;
  ASSERT_ERR(
      mh_executor_imap(ex, t_double, NULL, &in, 8, &out, 8, 1, 0, 0, &it),
      MH_ESHUTDOWN);
  ASSERT_OK(mh_executor_shutdown(ex, 0));
  ASSERT_EQ(mh_future_done(queued[9]), 0);
  atomic_store(&gate, 1);
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT));
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(mh_future_done(queued[i]), 1);
    ASSERT_OK(mh_future_result(queued[i], 0));
    mh_future_release(queued[i]);
  }
  ASSERT_OK(mh_future_result(blocker, 0));
  mh_future_release(blocker);
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT));
  mh_executor_free(ex);
}

TEST(shutdown_cancel_futures) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_future_t *blocker, *queued[50];
  ASSERT_OK(
      mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blocker));
  while (!mh_future_running(blocker)) mht_sleep(0.001);
  for (int i = 0; i < 50; i++)
    ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL,
                                 &queued[i]));
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_CANCEL_FUTURES));
  for (int i = 0; i < 50; i++) {
    ASSERT_EQ(mh_future_cancelled(queued[i]), 1);
    ASSERT_ERR(mh_future_result(queued[i], 0), MH_ECANCELED);
    mh_future_release(queued[i]);
  }
  /* The running task is not cancelled. */
  ASSERT_EQ(mh_future_cancelled(blocker), 0);
  ASSERT_ERR(mh_future_cancel(blocker), MH_EBUSY);
  atomic_store(&gate, 1);
  mh_executor_free(ex);
  ASSERT_OK(mh_future_result(blocker, 0));
  mh_future_release(blocker);
}

/* Futures outlive their executor. */
TEST(future_outlives_executor) {
  mh_executor_t *ex = threads(2);
  long in = 21, out = 0;
  mh_future_t *f;
  ASSERT_OK(
      mh_executor_submit(ex, t_double, &in, sizeof in, &out, sizeof out, NULL,
                         &f));
  mh_executor_free(ex);
  ASSERT_OK(mh_future_result(f, 0));
  ASSERT_EQ(out, 42);
  mh_future_release(f);
}

typedef struct {
  mh_executor_t *ex;
  atomic_int *stop;
  long accepted, refused;
  mh_future_t **fs;
  size_t cap;
} submitter_t;

static void *submitter(void *arg) {
  submitter_t *s = arg;
  while (!atomic_load(s->stop) && (size_t)s->accepted < s->cap) {
    mh_future_t *f;
    int rc = mh_executor_submit(s->ex, t_noop, NULL, 0, NULL, 0, NULL, &f);
    if (rc == 0) {
      s->fs[s->accepted++] = f;
    } else {
      ASSERT_ERR(rc, MH_ESHUTDOWN);
      s->refused++;
      break;
    }
    if ((mht_rand() & 63) == 0) mht_jitter(50);
  }
  return NULL;
}

TEST(shutdown_while_submitting) {
  for (int round = 0; round < 20; round++) {
    mh_executor_t *ex = threads(2);
    atomic_int stop = 0;
    enum { T = 4 };
    submitter_t s[T];
    pthread_t th[T];
    size_t cap = (size_t)mht_scaled(20000);
    for (int i = 0; i < T; i++) {
      s[i] = (submitter_t){ex, &stop, 0, 0, calloc(cap, sizeof(mh_future_t *)),
                           cap};
      pthread_create(&th[i], NULL, submitter, &s[i]);
    }
    mht_jitter(3000);
    unsigned flags = round % 2 ? MH_SHUTDOWN_CANCEL_FUTURES : 0;
    ASSERT_OK(mh_executor_shutdown(ex, flags | (round % 4 < 2 ? MH_SHUTDOWN_WAIT : 0)));
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT));
    for (int i = 0; i < T; i++) {
      /* Every submitter either hit the shutdown or filled its array. */
      ASSERT(s[i].refused == 1 || (size_t)s[i].accepted == cap);
      for (long k = 0; k < s[i].accepted; k++) {
        mh_future_t *f = s[i].fs[k];
        /* Every accepted future completed: it ran, or was cancelled by a
         * cancelling shutdown. */
        ASSERT_EQ(mh_future_done(f), 1);
        int rc = mh_future_result(f, 0);
        if (flags)
          ASSERT(rc == 0 || rc == MH_ECANCELED);
        else
          ASSERT_OK(rc);
        mh_future_release(f);
      }
      free(s[i].fs);
    }
    mh_executor_free(ex);
  }
}

static int t_shutdown_own(const void *in, size_t is, void *out, size_t os,
                          void *ctx) {
  (void)is, (void)out, (void)os;
  unsigned flags = *(const unsigned *)in;
  return mh_executor_shutdown(ctx, flags);
}

/* A task may shut down its own executor, waiting or not; later submits fail
 * and freeing from the outside still waits for everything. */
TEST(shutdown_from_task) {
  for (int round = 0; round < 40; round++) {
    mh_executor_t *ex = threads(2);
    unsigned flags = round % 2 ? MH_SHUTDOWN_WAIT : 0;
    mh_future_t *f, *g = NULL;
    ASSERT_OK(mh_executor_submit(ex, t_shutdown_own, &flags, sizeof flags,
                                 NULL, 0, ex, &f));
    ASSERT_OK(mh_future_result(f, MH_FOREVER));
    ASSERT_ERR(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &g),
               MH_ESHUTDOWN);
    mh_future_release(f);
    if (round % 4 < 2) mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT);
    mh_executor_free(ex);
  }
}

/* 10^6 tiny tasks: each future completes exactly once (its callback runs
 * exactly once and its task runs exactly once). */
TEST(million_tasks) {
  size_t n = (size_t)mht_scaled(1000000);
  atomic_int *runs = calloc(n, sizeof *runs);
  atomic_int *cbs = calloc(n, sizeof *cbs);
  size_t *idx = malloc(n * sizeof *idx);
  mh_executor_t *ex = threads(2);
  const size_t batch = 4096;
  mh_future_t **fs = malloc(batch * sizeof *fs);
  for (size_t lo = 0; lo < n; lo += batch) {
    size_t m = n - lo < batch ? n - lo : batch;
    for (size_t k = 0; k < m; k++) {
      size_t i = lo + k;
      idx[i] = i;
      ASSERT_OK(mh_executor_submit(ex, t_count, &idx[i], sizeof idx[i], NULL,
                                   0, runs, &fs[k]));
      ASSERT_OK(mh_future_add_done_callback(fs[k], cb_tick, &cbs[i]));
    }
    for (size_t k = 0; k < m; k++) {
      ASSERT_OK(mh_future_result(fs[k], MH_FOREVER));
      mh_future_release(fs[k]);
    }
  }
  mh_executor_free(ex);
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(atomic_load(&runs[i]), 1);
    ASSERT_EQ(atomic_load(&cbs[i]), 1);
  }
  free(fs);
  free(idx);
  free(cbs);
  free(runs);
}

/* Submitters that come and go at random intervals, so that workers keep
 * going to sleep and being woken (only a push onto an empty inbox looks for
 * a sleeping worker): a lost wake-up leaves a future pending, which the
 * finite timeout turns into a failure. */
typedef struct {
  mh_executor_t *ex;
  int rounds;
  atomic_int *bad;
} sparse_t;

static void *sparse_submitter(void *arg) {
  sparse_t *s = arg;
  for (int r = 0; r < s->rounds; r++) {
    mh_future_t *fs[3];
    long in[3], out[3];
    int k = 1 + r % 3;
    for (int i = 0; i < k; i++) {
      in[i] = r * 3 + i + 1; /* never 13 mod 1000: t_double then fails */
      if (in[i] % 1000 == 13) in[i]++;
      if (mh_executor_submit(s->ex, t_double, &in[i], sizeof in[i], &out[i],
                             sizeof out[i], NULL, &fs[i])) {
        atomic_fetch_add(s->bad, 1);
        return NULL;
      }
    }
    /* Sometimes long enough for the workers to stop spinning and sleep. */
    mht_jitter(r % 4 ? 50 : 400);
    for (int i = 0; i < k; i++) {
      if (mh_future_result(fs[i], 10.0) != 0 || out[i] != 2 * in[i])
        atomic_fetch_add(s->bad, 1);
      mh_future_release(fs[i]);
    }
  }
  return NULL;
}

TEST(sparse_submits_wake_workers) {
  for (int workers = 1; workers <= 3; workers++) {
    mh_executor_t *ex = threads(workers);
    atomic_int bad = 0;
    enum { T = 4 };
    sparse_t s = {ex, mht_scaled(600), &bad};
    pthread_t th[T];
    for (int i = 0; i < T; i++)
      ASSERT_EQ(pthread_create(&th[i], NULL, sparse_submitter, &s), 0);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&bad), 0);
    mh_executor_free(ex);
  }
}

static int t_init_fail(void *arg) { return *(int *)arg; }

TEST(worker_initializer) {
  int code = MH_EUSER - 3;
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 2;
  o.initializer = t_init_fail;
  o.initarg = &code;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f));
  ASSERT_ERR(mh_future_result(f, MH_FOREVER), MH_EUSER - 3);
  mh_future_release(f);
  mh_executor_free(ex);
  code = 0;
  ASSERT_OK(mh_executor_new(&ex, &o));
  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f));
  ASSERT_OK(mh_future_result(f, MH_FOREVER));
  mh_future_release(f);
  mh_executor_free(ex);
}

/* ---- map and imap ------------------------------------------------------ */

TEST(map_ordering_statuses) {
  mh_executor_t *ex = threads(3);
  size_t n = 10007;
  long *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
  int *st = malloc(n * sizeof *st);
  for (size_t i = 0; i < n; i++) in[i] = (long)i;
  size_t chunks[] = {0, 1, 7, 1000, 20000};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    memset(out, 0, n * sizeof *out);
    memset(st, 0x55, n * sizeof *st);
    int rc = mh_executor_map(ex, t_double, NULL, in, sizeof *in, out,
                             sizeof *out, n, chunks[c], st);
    /* The lowest failing item is 13, whose code is MH_EUSER - 13 % 7. */
    ASSERT_ERR(rc, MH_EUSER - 6);
    for (size_t i = 0; i < n; i++) {
      ASSERT_EQ(out[i], 2 * (long)i);
      int want = i % 1000 == 13 ? MH_EUSER - (int)(i % 7) : 0;
      ASSERT_EQ(st[i], want);
    }
  }
  /* Without statuses, and with all items succeeding. */
  for (size_t i = 0; i < n; i++) in[i] = (long)(i / 1000 * 1000);
  ASSERT_OK(mh_executor_map(ex, t_double, NULL, in, sizeof *in, out,
                            sizeof *out, n, 0, NULL));
  ASSERT_EQ(out[n - 1], 2 * in[n - 1]);
  /* Items with no buffers at all. */
  ASSERT_OK(mh_executor_map(ex, t_noop, NULL, NULL, 0, NULL, 0, 100000, 0,
                            NULL));
  free(in);
  free(out);
  free(st);
  mh_executor_free(ex);
}

/* Records the largest number of live allocations seen by any item. */
static atomic_long peak_live;
static int t_peak(const void *in, size_t is, void *out, size_t os,
                  void *ctx) {
  (void)in, (void)is, (void)out, (void)os, (void)ctx;
  long live = mht_alloc_live();
  long p = atomic_load(&peak_live);
  while (live > p && !atomic_compare_exchange_weak(&peak_live, &p, live)) {
  }
  return 0;
}

TEST(map_window_bounded) {
  mh_executor_t *ex = threads(2);
  /* Far more chunks than the window holds is enough to show the bound: 10^5
   * one-item chunks (twice) outran the time limit beside busy processes. */
  size_t n = (size_t)mht_scaled(20000);
  /* Count the library's allocations during a map of n one-item chunks:
   * the window keeps them to a few chunks per worker, not n. */
  mht_alloc_fail_after(-1);
  long base = mht_alloc_live();
  atomic_store(&peak_live, 0);
  ASSERT_OK(mh_executor_map(ex, t_peak, NULL, NULL, 0, NULL, 0, n, 1, NULL));
  ASSERT_LE(atomic_load(&peak_live) - base, 2 * 4 + 4);
  for (int i = 0; i < 1000 && mht_alloc_live() != base; i++) mht_sleep(0.001);
  ASSERT_EQ(mht_alloc_live(), base);
  mh_map_iter_t *it;
  atomic_store(&peak_live, 0);
  ASSERT_OK(mh_executor_imap(ex, t_peak, NULL, NULL, 0, NULL, 0, n, 1,
                             MH_MAP_UNORDERED, &it));
  size_t idx;
  int st;
  size_t count = 0;
  while (mh_map_iter_next(it, MH_FOREVER, &idx, &st) == 0) count++;
  ASSERT_EQ(count, n);
  mh_map_iter_free(it);
  ASSERT_LE(atomic_load(&peak_live) - base, 2 * 4 + 10);
  for (int i = 0; i < 1000 && mht_alloc_live() != base; i++) mht_sleep(0.001);
  ASSERT_EQ(mht_alloc_live(), base);
  mht_alloc_reset();
  mh_executor_free(ex);
}

static void check_imap(mh_executor_t *ex, size_t n, size_t chunk,
                       unsigned flags) {
  long *in = malloc((n ? n : 1) * sizeof *in);
  long *out = malloc((n ? n : 1) * sizeof *out);
  unsigned char *seen = calloc(n ? n : 1, 1);
  for (size_t i = 0; i < n; i++) in[i] = (long)i;
  mh_map_iter_t *it;
  ASSERT_OK(mh_executor_imap(ex, t_double, NULL, in, sizeof *in, out,
                             sizeof *out, n, chunk, flags, &it));
  size_t idx, count = 0;
  int st, rc;
  while ((rc = mh_map_iter_next(it, 10, &idx, &st)) == 0) {
    ASSERT(idx < n);
    if (!(flags & MH_MAP_UNORDERED)) ASSERT_EQ(idx, count);
    ASSERT_EQ(seen[idx], 0);
    seen[idx] = 1;
    ASSERT_EQ(out[idx], 2 * (long)idx);
    ASSERT_EQ(st, idx % 1000 == 13 ? MH_EUSER - (int)(idx % 7) : 0);
    count++;
  }
  ASSERT_ERR(rc, MH_EEOF);
  ASSERT_ERR(mh_map_iter_next(it, 0, &idx, &st), MH_EEOF);
  ASSERT_EQ(count, n);
  mh_map_iter_free(it);
  free(seen);
  free(in);
  free(out);
}

TEST(imap_ordered_unordered) {
  mh_executor_t *ex = threads(3);
  size_t sizes[] = {0, 1, 5, 1001, 30011};
  size_t chunks[] = {0, 1, 3, 64, 5000};
  for (size_t a = 0; a < 5; a++)
    for (size_t b = 0; b < 5; b++) {
      check_imap(ex, sizes[a], chunks[b], 0);
      check_imap(ex, sizes[a], chunks[b], MH_MAP_UNORDERED);
    }
  mh_executor_free(ex);
}

TEST(imap_timeout_and_early_free) {
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_map_iter_t *it;
  ASSERT_OK(mh_executor_imap(ex, t_gate, &gate, NULL, 0, NULL, 0, 1000, 1, 0,
                             &it));
  size_t idx;
  int st;
  ASSERT_ERR(mh_map_iter_next(it, 0.02, &idx, &st), MH_ETIMEDOUT);
  atomic_store(&gate, 1);
  ASSERT_OK(mh_map_iter_next(it, MH_FOREVER, &idx, &st));
  ASSERT_EQ(idx, 0);
  /* Free with most items not yet run: the pending chunks are cancelled and
   * the call returns only when none runs any more. */
  mh_map_iter_free(it);
  ASSERT_OK(mh_executor_imap(ex, t_gate, &gate, NULL, 0, NULL, 0, 1000, 1,
                             MH_MAP_UNORDERED, &it));
  ASSERT_OK(mh_map_iter_next(it, MH_FOREVER, &idx, &st));
  mh_map_iter_free(it);
  mh_executor_free(ex);
}

/* Statuses of items whose chunks never ran: a cancelling shutdown during a
 * map gives MH_ECANCELED or MH_ESHUTDOWN for them and the map still ends. */
static atomic_int slow_ran;

/* Shut down once some items have run (not after a fixed time: a loaded
 * machine may not have started any by then). */
static void *shut_soon(void *arg) {
  while (atomic_load(&slow_ran) < 100) mht_sleep(0.001);
  mh_executor_shutdown(arg, MH_SHUTDOWN_CANCEL_FUTURES);
  return NULL;
}

static int t_slow(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)in, (void)is, (void)out, (void)os, (void)ctx;
  atomic_fetch_add(&slow_ran, 1);
  mht_sleep(0.0005);
  return 0;
}

TEST(map_during_shutdown) {
  mh_executor_t *ex = threads(2);
  size_t n = 20000;
  int *st = malloc(n * sizeof *st);
  pthread_t th;
  atomic_store(&slow_ran, 0);
  pthread_create(&th, NULL, shut_soon, ex);
  int rc = mh_executor_map(ex, t_slow, NULL, NULL, 0, NULL, 0, n, 4, st);
  pthread_join(th, NULL);
  ASSERT(rc == MH_ECANCELED || rc == MH_ESHUTDOWN);
  size_t ok = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (st[i] == 0)
      ok++;
    else if (st[i] == MH_ECANCELED || st[i] == MH_ESHUTDOWN)
      bad++;
  }
  ASSERT_EQ(ok + bad, n);
  ASSERT(ok > 0 && bad > 0);
  free(st);
  mh_executor_free(ex);
}

/* ---- allocation failure ------------------------------------------------ */

/* Workers drop their references to futures just after completing them, so
 * the count of live blocks settles a moment after a call returns. */
static long live_settled(void) {
  for (int i = 0; i < 1000 && mht_alloc_live() != 0; i++) mht_sleep(0.001);
  return mht_alloc_live();
}

TEST(alloc_failure) {
  /* Every constructor fails with MH_ENOMEM at each of its allocations and
   * leaves nothing behind. */
  for (long k = 0;; k++) {
    mht_alloc_fail_after(k);
    mh_executor_t *ex = NULL;
    int rc = mh_executor_new(&ex, NULL);
    if (rc == 0) {
      mh_executor_free(ex);
      ASSERT_EQ(live_settled(), 0);
      break;
    }
    ASSERT_ERR(rc, MH_ENOMEM);
    ASSERT_EQ(live_settled(), 0);
  }
  mht_alloc_reset();
  mh_executor_t *ex = threads(1);
  atomic_int gate = 0;
  mh_future_t *blocker;
  ASSERT_OK(
      mh_executor_submit(ex, t_gate, NULL, 0, NULL, 0, &gate, &blocker));
  mh_future_t *done;
  ASSERT_OK(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &done));
  /* Nothing of these can be allocated. */
  mht_alloc_fail_after(0);
  mh_future_t *f = NULL;
  ASSERT_ERR(mh_executor_submit(ex, t_noop, NULL, 0, NULL, 0, NULL, &f),
             MH_ENOMEM);
  ASSERT_ERR(mh_future_add_done_callback(blocker, cb_tick, &gate), MH_ENOMEM);
  mh_future_t *two[2] = {blocker, done};
  ASSERT_ERR(mh_futures_wait(two, 2, MH_FIRST_EXCEPTION, 0.01, NULL),
             MH_ENOMEM);
  ASSERT_EQ(live_settled(), 0);
  mht_alloc_reset();
  /* Let the worker run, so that cancelled chunks leave its queue. */
  atomic_store(&gate, 1);
  long in[8] = {0}, out[8];
  for (long k = 0;; k++) {
    mht_alloc_fail_after(k);
    mh_as_completed_t *ac = NULL;
    int rc = mh_as_completed_new(&ac, two, 2);
    if (rc == 0) {
      mh_as_completed_free(ac);
      ASSERT_EQ(live_settled(), 0);
      break;
    }
    ASSERT_ERR(rc, MH_ENOMEM);
    ASSERT_EQ(live_settled(), 0);
  }
  for (unsigned fl = 0; fl < 2; fl++) {
    for (long k = 0;; k++) {
      mht_alloc_fail_after(k);
      mh_map_iter_t *it = NULL;
      int rc =
          mh_executor_imap(ex, t_double, NULL, in, 8, out, 8, 8, 1, fl, &it);
      if (rc == 0) {
        mht_alloc_fail_after(-1);
        mh_map_iter_free(it);
        ASSERT_EQ(live_settled(), 0);
        break;
      }
      ASSERT_ERR(rc, MH_ENOMEM);
      ASSERT_EQ(live_settled(), 0);
    }
  }
  mht_alloc_fail_after(0);
  ASSERT_ERR(mh_executor_map(ex, t_double, NULL, in, 8, out, 8, 8, 1, NULL),
             MH_ENOMEM);
  ASSERT_EQ(live_settled(), 0);
  mht_alloc_reset();
  mh_future_release(blocker);
  mh_future_release(done);
  mh_executor_free(ex);
}
