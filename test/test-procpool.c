/* SPDX-License-Identifier: MIT */
/* test-procpool.c - the process pool engine: the dispatcher, the fork server
 * and the worker loops driven directly through mh__pp_*, a pool forked while
 * other threads hold locks, and the claim-based map under SIGKILL stress.
 * The process backend seen through the executor API is test-pool.c. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "executor/procpool.h"
#include "pool-common.h"

/* ---- engine harness ------------------------------------------------------ */

/* A job record whose hooks (set by e_config) track its state, and a count of
 * the jobs settled (finished or cancelled). */
typedef struct ejob {
  mh__task_t t;
  _Atomic int state; /* 0 queued, 1 running, 2 finished, 3 cancelled */
  int code, pid, exitcode, requeues;
} ejob_t;

static _Atomic int e_settled;

static int e_begin(void *arg, void *user) {
  ejob_t *j = user;
  atomic_store(&j->state, 1);
  return 1;
}
static void e_requeue(void *arg, void *user) {
  ejob_t *j = user;
  j->requeues++;
  atomic_store(&j->state, 0);
}
static void e_finish(void *arg, void *user, int code, int pid, int exitcode) {
  ejob_t *j = user;
  j->code = code;
  j->pid = pid;
  j->exitcode = exitcode;
  atomic_store(&j->state, 2);
  atomic_fetch_add(&e_settled, 1);
}
static void e_cancel(void *arg, void *user, int began) {
  ejob_t *j = user;
  atomic_store(&j->state, 3);
  atomic_fetch_add(&e_settled, 1);
}

static mh__pp_config_t e_config(int workers) {
  mh__pp_config_t c;
  memset(&c, 0, sizeof c);
  c.workers = workers;
  c.hooks.begin = e_begin;
  c.hooks.requeue = e_requeue;
  c.hooks.finish = e_finish;
  c.hooks.cancel = e_cancel;
  atomic_store(&e_settled, 0);
  return c;
}

static void e_wait(int n, double timeout) {
  double end = mht_now() + timeout;
  while (atomic_load(&e_settled) < n) {
    if (mht_now() > end)
      mht_fail(__FILE__, __LINE__, "only %d of %d jobs settled",
               atomic_load(&e_settled), n);
    mht_sleep(0.001);
  }
}

static int t_square(const void *in, size_t isz, void *out, size_t osz,
                    void *ctx) {
  long v;
  memcpy(&v, in, sizeof v);
  v *= v;
  memcpy(out, &v, sizeof v);
  return 0;
}

TEST(engine_chunks) {
  mh__pp_t *pp;
  mh__pp_config_t c = e_config(2);
  ASSERT_OK(mh__pp_new(&pp, &c));
  enum { J = 200, C = 37 };
  static long in[J * C], out[J * C];
  static int st[J * C];
  static ejob_t jobs[J];
  for (int i = 0; i < J * C; i++) in[i] = i, out[i] = -1, st[i] = 99;
  for (int k = 0; k < J; k++) {
    jobs[k].t = (mh__task_t){t_square, NULL, in + k * C, sizeof(long),
                             out + k * C, sizeof(long), C, st + k * C, 0};
    ASSERT_OK(mh__pp_submit(pp, &jobs[k], &jobs[k].t));
  }
  e_wait(J, 30);
  for (int i = 0; i < J * C; i++) {
    ASSERT_EQ(out[i], (long)i * i);
    ASSERT_EQ(st[i], 0);
  }
  for (int k = 0; k < J; k++) ASSERT_EQ(jobs[k].code, 0);
  mh__pp_free(pp);
  ASSERT_EQ(mht_count_children(), 0);
}

/* Item i sleeps a little so that a kill lands mid-run; item values < 0 make
 * the task crash in the way the value says. */
static int t_slow(const void *in, size_t isz, void *out, size_t osz,
                  void *ctx) {
  long v;
  memcpy(&v, in, sizeof v);
  if (v == -1) raise(SIGSEGV);
  if (v == -2) exit(7);
  if (v == -3)
    for (;;) pause();
  if (ctx) mht_sleep(*(double *)ctx);
  v *= v;
  memcpy(out, &v, sizeof v);
  return 0;
}

static void engine_kill_run(int retries) {
  mh__pp_t *pp;
  mh__pp_config_t c = e_config(2);
  c.retries = retries;
  ASSERT_OK(mh__pp_new(&pp, &c));
  enum { N = 10000, C = 50, J = N / C };
  static long in[N], out[N];
  static int st[N];
  static ejob_t jobs[J];
  static double delay = 20e-6;
  for (int i = 0; i < N; i++) in[i] = i, out[i] = -1, st[i] = 99;
  memset(jobs, 0, sizeof jobs);
  for (int k = 0; k < J; k++) {
    jobs[k].t = (mh__task_t){t_slow, &delay, in + k * C, sizeof(long),
                             out + k * C, sizeof(long), C, st + k * C, 0};
    ASSERT_OK(mh__pp_submit(pp, &jobs[k], &jobs[k].t));
  }
  while (atomic_load(&e_settled) < J / 4) mht_sleep(0.001);
  int pids[2];
  ASSERT_EQ(mh__pp_worker_pids(pp, pids, 2), 2);
  ASSERT_OK(kill(pids[0], SIGKILL));
  e_wait(J, 60);
  int died = 0;
  for (int i = 0; i < N; i++) {
    if (st[i] == MH_EWORKERDIED) {
      died++;
      ASSERT_EQ(jobs[i / C].code, MH_EWORKERDIED);
      ASSERT_EQ(jobs[i / C].pid, pids[0]);
      ASSERT_EQ(jobs[i / C].exitcode, -SIGKILL);
    } else {
      ASSERT_EQ(st[i], 0);
      ASSERT_EQ(out[i], (long)i * i);
    }
  }
  ASSERT_LE(died, 1);
  if (retries) ASSERT_EQ(died, 0);
  /* The same pool runs another batch correctly. */
  atomic_store(&e_settled, 0);
  for (int k = 0; k < J; k++) {
    jobs[k].t.ctx = NULL;
    ASSERT_OK(mh__pp_submit(pp, &jobs[k], &jobs[k].t));
  }
  e_wait(J, 60);
  for (int i = 0; i < N; i++) ASSERT_EQ(out[i], (long)i * i);
  int now[2];
  ASSERT_EQ(mh__pp_worker_pids(pp, now, 2), 2);
  ASSERT(now[0] != pids[0] && now[1] != pids[0]);
  mh__pp_free(pp);
  ASSERT_EQ(mht_count_children(), 0);
}

TEST(engine_kill_worker) { engine_kill_run(0); }
TEST(engine_kill_worker_retry) { engine_kill_run(1); }

TEST(engine_crashed_task_fails_alone) {
  mh__pp_t *pp;
  mh__pp_config_t c = e_config(2);
  c.grace = 0.2;
  ASSERT_OK(mh__pp_new(&pp, &c));
  long in[4] = {-1, 3, -2, 5}, out[4] = {0};
  int st[4] = {9, 9, 9, 9};
  static ejob_t jobs[4];
  for (int k = 0; k < 4; k++) {
    jobs[k].t = (mh__task_t){t_slow, NULL, in + k, sizeof(long), out + k,
                             sizeof(long), 1, st + k, 0};
    ASSERT_OK(mh__pp_submit(pp, &jobs[k], &jobs[k].t));
  }
  e_wait(4, 30);
  ASSERT_EQ(st[0], MH_EWORKERDIED);
  ASSERT_EQ(jobs[0].exitcode, -SIGSEGV);
  ASSERT_EQ(st[2], MH_EWORKERDIED);
  ASSERT_EQ(jobs[2].exitcode, 7);
  ASSERT_EQ(out[1], 9);
  ASSERT_EQ(out[3], 25);
  /* A task that never returns; a cancelling shutdown ends it in bounded time. */
  long hang = -3, o;
  int s = 0;
  ejob_t hj;
  memset(&hj, 0, sizeof hj);
  hj.t = (mh__task_t){t_slow, NULL, &hang, sizeof hang, &o, sizeof o, 1, &s, 0};
  atomic_store(&e_settled, 0);
  ASSERT_OK(mh__pp_submit(pp, &hj, &hj.t));
  while (atomic_load(&hj.state) != 1) mht_sleep(0.001);
  mht_sleep(0.05);
  double t0 = mht_now();
  ASSERT_OK(mh__pp_shutdown(pp, MH_SHUTDOWN_WAIT | MH_SHUTDOWN_TERMINATE));
  ASSERT_LT(mht_now() - t0, 5.0);
  ASSERT_EQ(atomic_load(&e_settled), 1);
  ASSERT_EQ(s, MH_ECANCELED);
  ASSERT_ERR(mh__pp_submit(pp, &hj, &hj.t), MH_ESHUTDOWN);
  mh__pp_free(pp);
  ASSERT_EQ(mht_count_children(), 0);
}

/* The engine checks its own arguments, apart from the executor's. */
TEST(engine_bad_input) {
  mh__pp_t *pp;
  mh__pp_config_t c = e_config(0);
  ASSERT_ERR(mh__pp_new(&pp, &c), MH_EINVAL);
  c.workers = 4097;
  ASSERT_ERR(mh__pp_new(&pp, &c), MH_EINVAL);
  c.workers = 1;
  c.hooks.finish = NULL;
  ASSERT_ERR(mh__pp_new(&pp, &c), MH_EINVAL);
  ASSERT_ERR(mh__pp_submit(NULL, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh__pp_shutdown(NULL, 0), MH_EINVAL);
  mh__pp_free(NULL);
}


/* ---- a pool made while other threads hold locks --------------------------- */

static pthread_mutex_t held[3] = {PTHREAD_MUTEX_INITIALIZER,
                                  PTHREAD_MUTEX_INITIALIZER,
                                  PTHREAD_MUTEX_INITIALIZER};
static _Atomic int stop_threads, threads_ready;

static void *lock_holder(void *arg) {
  pthread_mutex_t *m = arg;
  pthread_mutex_lock(m);
  atomic_fetch_add(&threads_ready, 1);
  while (!atomic_load(&stop_threads)) mht_sleep(0.001);
  pthread_mutex_unlock(m);
  return NULL;
}

static void *malloc_churn(void *arg) {
  atomic_fetch_add(&threads_ready, 1);
  void *keep[64] = {0};
  unsigned i = 0;
  while (!atomic_load(&stop_threads)) {
    unsigned k = i++ % 64;
    free(keep[k]);
    keep[k] = malloc(16 + (mht_rand() % 4096));
    char buf[64];
    snprintf(buf, sizeof buf, "%u", i);
  }
  for (int k = 0; k < 64; k++) free(keep[k]);
  return NULL;
}

static int t_malloc(const void *in, size_t isz, void *out, size_t osz,
                    void *ctx) {
  long v;
  memcpy(&v, in, sizeof v);
  char *p = malloc(1000 + (size_t)v % 5000);
  if (!p) return MH_ENOMEM;
  int len = snprintf(p, 1000, "%ld", v * 2);
  long r = strtol(p, NULL, 10) + len - len;
  free(p);
  memcpy(out, &r, sizeof r);
  return 0;
}

TEST(fork_server_safe_beside_threads_holding_locks) {
  pthread_t th[4];
  atomic_store(&stop_threads, 0);
  atomic_store(&threads_ready, 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(pthread_create(&th[i], NULL, lock_holder, &held[i]), 0);
  /* The sanitizers' allocators (unlike glibc's malloc) have no fork
   * handlers: a pool made while another thread is inside malloc can inherit
   * the sanitizer allocator's lock held, and its workers' mallocs hang.
   * That is the sanitizer's limitation, so under ASan/TSan the malloc-heavy
   * thread is left out (the lock-holding threads stay). */
  int churn = !(MH__ASAN || MH__TSAN);
  if (churn)
    ASSERT_EQ(pthread_create(&th[3], NULL, malloc_churn, NULL), 0);
  else
    fprintf(stderr, "skipping the malloc-heavy thread: sanitizer allocator "
                    "is not fork-safe\n");
  while (atomic_load(&threads_ready) < 3 + churn) mht_sleep(0.001);
  for (int round = 0; round < 5; round++) {
    mh_executor_t *ex = pool_new(2, 0);
    enum { N = 2000 };
    static long in[N], out[N];
    for (int i = 0; i < N; i++) in[i] = i;
    ASSERT_OK(mh_executor_map(ex, t_malloc, NULL, in, sizeof(long), out,
                              sizeof(long), N, 1, NULL));
    for (int i = 0; i < N; i++) ASSERT_EQ(out[i], 2L * i);
    /* Replacements come from the fork server too. */
    int pids[2];
    ASSERT_EQ(pool_pids(ex, pids, 2), 2);
    kill(pids[0], SIGKILL);
    ASSERT_OK(mh_executor_map(ex, t_malloc, NULL, in, sizeof(long), out,
                              sizeof(long), N, 0, NULL));
    for (int i = 0; i < N; i++) ASSERT_EQ(out[i], 2L * i);
    mh_executor_free(ex);
  }
  atomic_store(&stop_threads, 1);
  for (int i = 0; i < 3 + churn; i++) pthread_join(th[i], NULL);
  ASSERT_EQ(mht_count_children(), 0);
}

/* ---- the claim-based map under stress ------------------------------------- */

typedef struct rkill {
  mh_executor_t *ex;
  _Atomic int stop;
  int kills, max_kills;
} rkill_t;

/* SIGKILL a random live worker at random moments until told to stop. */
static void *random_killer(void *arg) {
  rkill_t *k = arg;
  while (!atomic_load(&k->stop) && k->kills < k->max_kills) {
    mht_jitter(30000);
    int pids[8];
    int n = mh__pp_worker_pids(mh__executor_impl(k->ex), pids, 8);
    if (n <= 0 || atomic_load(&k->stop)) continue;
    if (kill(pids[mht_rand() % (unsigned)n], SIGKILL) == 0) k->kills++;
  }
  return NULL;
}

/* Workers killed at random instants of claim-based maps (while claiming,
 * running, idle or starting): without retries at most one item per kill
 * fails, with MH_EWORKERDIED, and every other result is right; with enough
 * retries every item succeeds.  The pool then maps correctly again. */
static void map_kill_random(int retries) {
  mh_executor_t *ex = pool_new(2, retries);
  enum { N = 6000 };
  static long in[N], out[N];
  static int st[N];
  static const double delay = 30e-6;
  size_t chunks[] = {1, 0, 7};
  int total_kills = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) in[i] = i, out[i] = -1, st[i] = 99;
    rkill_t k = {.ex = ex, .max_kills = 4};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, random_killer, &k), 0);
    int rc = mh_executor_map(ex, t_slow, (void *)(uintptr_t)&delay, in, sizeof(long), out,
                             sizeof(long), N, chunks[round], st);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    int died = 0, first = 0;
    for (int i = 0; i < N; i++) {
      if (st[i] == MH_EWORKERDIED) {
        died++;
        if (!first) first = st[i];
      } else {
        ASSERT_ERR(st[i], 0);
        ASSERT_EQ(out[i], (long)i * i);
      }
    }
    ASSERT_LE(died, k.kills);
    total_kills += k.kills;
    if (retries) ASSERT_EQ(died, 0);
    ASSERT_ERR(rc, died ? MH_EWORKERDIED : 0);
    check_map(ex, 2000, chunks[round]);
  }
  ASSERT_GT(total_kills, 0); /* (each map lasts ~0.1 s, kills come <= 30 ms) */
  pool_free(ex);
}

TEST(map_kill_random) { map_kill_random(0); }
TEST(map_kill_random_retry) { map_kill_random(100); }

static int t_add(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  long v = 0;
  if (isz) memcpy(&v, in, sizeof v);
  v += *(const long *)ctx; /* the executor's context */
  if (osz) memcpy(out, &v, sizeof v);
  return v % 97 == 0 ? MH_EUSER - 1 : 0;
}

/* Many maps in a row of every shape: tiny and large, chunksize 1, automatic
 * and odd, with and without statuses and inputs, chunks too big for the
 * window (the generic path), all on the same pool. */
TEST(map_many_in_a_row) {
  mh_executor_t *ex = pool_new(2, 0);
  enum { N = 70000 };
  long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
  int *st = malloc(N * sizeof *st);
  ASSERT(in && out && st);
  for (int i = 0; i < N; i++) in[i] = i;
  int rounds = (int)mht_scaled(200);
  for (int r = 0; r < rounds; r++) {
    size_t n = 1 + mht_rand() % (r % 10 == 0 ? N : 3000);
    size_t sizes[] = {0, 1, 2, 3, 7, 64, 1000, 40000};
    size_t chunk = sizes[mht_rand() % 8];
    long add = (long)(mht_rand() % 50);
    int want_st = (int)(mht_rand() % 2), no_in = r % 7 == 3;
    for (size_t i = 0; i < n; i++) out[i] = -1, st[i] = 99;
    ASSERT_OK(mh_executor_set_context(ex, &add, sizeof add));
    int rc = mh_executor_map(ex, t_add, mh_executor_context(ex),
                             no_in ? NULL : in, no_in ? 0 : sizeof(long), out,
                             sizeof(long), n, chunk, want_st ? st : NULL);
    int first = 0;
    for (size_t i = 0; i < n; i++) {
      long v = (no_in ? 0 : (long)i) + add;
      int code = v % 97 == 0 ? MH_EUSER - 1 : 0;
      if (code && !first) first = code;
      ASSERT_EQ(out[i], v);
      if (want_st) ASSERT_ERR(st[i], code);
    }
    ASSERT_ERR(rc, first);
  }
  free(in);
  free(out);
  free(st);
  pool_free(ex);
}

typedef struct mapper {
  mh_executor_t *ex;
  long *in, *out;
  int *st;
  size_t n, chunk;
  double *delay;
  int rc;
} mapper_t;

static void *run_map(void *arg) {
  mapper_t *m = arg;
  m->rc = mh_executor_map(m->ex, t_slow, m->delay, m->in, sizeof(long), m->out,
                          sizeof(long), m->n, m->chunk, m->st);
  return NULL;
}

/* A shutdown races with a map running on another thread: a waiting one
 * lets every item finish; a cancelling one ends it in bounded time, each
 * item right or MH_ECANCELED.  Nothing is left behind. */
TEST(map_ends_under_concurrent_shutdown) {
  enum { N = 20000 };
  static long in[N], out[N];
  static int st[N];
  static const double delay = 20e-6;
  for (int i = 0; i < N; i++) in[i] = i;
  for (int round = 0; round < (int)mht_scaled(6); round++) {
    int cancel = round % 2;
    mh_executor_t *ex = pool_new(2, 0);
    for (int i = 0; i < N; i++) out[i] = -1, st[i] = 99;
    mapper_t m = {ex, in, out, st, N, round % 3 == 0 ? 1 : 0, (double *)(uintptr_t)&delay, 99};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, run_map, &m), 0);
    mht_jitter(50000);
    double t0 = mht_now();
    ASSERT_OK(mh_executor_shutdown(
        ex, MH_SHUTDOWN_WAIT | (cancel ? MH_SHUTDOWN_CANCEL_FUTURES : 0)));
    pthread_join(th, NULL);
    ASSERT_LT(mht_now() - t0, 20.0);
    if (m.rc == MH_ESHUTDOWN) {
      /* The shutdown came first: nothing ran, nothing was written. */
      for (int i = 0; i < N; i++) ASSERT_EQ(st[i], 99);
    } else {
      int first = 0;
      for (int i = 0; i < N; i++) {
        if (st[i] == 0) {
          ASSERT_EQ(out[i], (long)i * i);
        } else {
          ASSERT(cancel);
          ASSERT_ERR(st[i], MH_ECANCELED);
          if (!first) first = st[i];
        }
      }
      ASSERT_ERR(m.rc, first);
    }
    pool_free(ex);
  }
}

typedef struct hang_map {
  mh_executor_t *ex;
  shm_t *s;
  long *in, *out;
  int *st;
  int rc;
} hang_map_t;

static void *hang_map_thread(void *arg) {
  hang_map_t *h = arg;
  h->rc = mh_executor_map(h->ex, t_sq, h->s, h->in, sizeof(long), h->out,
                          sizeof(long), 1000, 1, h->st);
  return NULL;
}

/* A map whose item 300 never returns, ended by a cancelling shutdown in
 * bounded time; the items that ran are right, the rest cancelled. */
TEST(map_hung_item_ended_by_cancelling_shutdown) {
  shm_t *s = shm_new();
  s->hang_item = 300;
  mh_executor_t *ex = pool_new(2, 0);
  static long in[1000], out[1000];
  static int st[1000];
  for (int i = 0; i < 1000; i++) in[i] = i, out[i] = -1, st[i] = 99;
  hang_map_t h = {ex, s, in, out, st, 99};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, hang_map_thread, &h), 0);
  while (!atomic_load(&s->hang_pid)) mht_sleep(0.001);
  mht_sleep(0.05);
  double t0 = mht_now();
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT |
                                         MH_SHUTDOWN_TERMINATE));
  pthread_join(th, NULL);
  ASSERT_LT(mht_now() - t0, 5.0);
  ASSERT_ERR(st[300], MH_ECANCELED);
  for (int i = 0; i < 1000; i++) {
    if (st[i] == 0)
      ASSERT_EQ(out[i], (long)i * i);
    else
      ASSERT_ERR(st[i], MH_ECANCELED);
  }
  ASSERT_ERR(h.rc, MH_ECANCELED);
  pool_free(ex);
  munmap(s, sizeof *s);
}

/* Two threads map on one pool at once (one of them through chunk futures):
 * both right. */
TEST(map_concurrent) {
  mh_executor_t *ex = pool_new(2, 0);
  enum { N = 30000 };
  static long in[2][N], out[2][N];
  static int st[2][N];
  mapper_t m[2];
  pthread_t th[2];
  /* The chunk-futures map (chunksize 1: one hand-off per item) gets a
   * quarter of the items: with busy processes beside the test a hand-off
   * costs milliseconds (the dispatcher yields its core to them), and 150,000
   * of them outran the time limit; the rule here is that both maps are
   * right, not how fast they are. */
  for (int r = 0; r < (int)mht_scaled(5); r++) {
    for (int k = 0; k < 2; k++) {
      for (int i = 0; i < N; i++) in[k][i] = i, out[k][i] = -1, st[k][i] = 99;
      m[k] = (mapper_t){ex, in[k], out[k], st[k], k ? N / 4 : N, k ? 1 : 0, NULL, 99};
      ASSERT_EQ(pthread_create(&th[k], NULL, run_map, &m[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
      pthread_join(th[k], NULL);
      ASSERT_OK(m[k].rc);
      for (int i = 0; i < (int)m[k].n; i++) {
        ASSERT_EQ(out[k][i], (long)i * i);
        ASSERT_EQ(st[k][i], 0);
      }
    }
  }
  pool_free(ex);
}

/* Workers SIGKILLed often while many tiny chunks are claimed (chunksize 1,
 * items that take no time), so that deaths land while other workers scan the
 * window.  A chunk put back by the dispatcher must be claimed again: a worker
 * that saw it owned just before, and moves the hint past it just after, once
 * left it READY behind the hint, and the map then never ended.  With
 * retries every item succeeds. */
static void *fast_killer(void *arg) {
  rkill_t *k = arg;
  /* Only workers seen alive a while ago are killed: killing fresh ones
   * before they take anything would (rightly) break the pool. */
  int old[8] = {0};
  double since[8] = {0};
  int nold = 0;
  while (!atomic_load(&k->stop) && k->kills < k->max_kills) {
    mht_jitter(8000);
    int pids[8];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double seen[8], now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    int n = mh__pp_worker_pids(mh__executor_impl(k->ex), pids, 8);
    if (n <= 0 || atomic_load(&k->stop)) continue;
    for (int i = 0; i < n; i++) {
      seen[i] = now;
      for (int o = 0; o < nold; o++)
        if (old[o] == pids[i]) seen[i] = since[o];
    }
    for (int i = 0; i < n; i++) old[i] = pids[i], since[i] = seen[i];
    nold = n;
    int v = (int)(mht_rand() % (unsigned)n);
    if (now - seen[v] > 0.1 && kill(pids[v], SIGKILL) == 0) k->kills++;
  }
  return NULL;
}

TEST(map_kill_claims) {
  mh_executor_t *ex = pool_new(4, 1000000);
  enum { N = 20000 };
  static long in[N], out[N];
  static int st[N];
  static const double delay = 5e-6;
  int rounds = (int)mht_scaled(10), total_kills = 0;
  if (rounds < 2) rounds = 2;
  alarm(120); /* a lost chunk hangs the map: fail rather than wait */
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < N; i++) in[i] = i, out[i] = -1, st[i] = 99;
    rkill_t k = {.ex = ex, .max_kills = 100};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, fast_killer, &k), 0);
    int rc = mh_executor_map(ex, t_slow, (void *)(uintptr_t)&delay, in, sizeof(long), out,
                             sizeof(long), N, 1 + (size_t)(round % 3), st);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    ASSERT_OK(rc);
    for (int i = 0; i < N; i++) {
      ASSERT_EQ(st[i], 0);
      ASSERT_EQ(out[i], (long)i * i);
    }
    total_kills += k.kills;
  }
  alarm(0);
  ASSERT_GT(total_kills, 0);
  pool_free(ex);
}

/* Workers killed so fast that the pool gives up (too many deaths in a row of
 * workers that did nothing) in the middle of a claim-based map: the map must
 * still end, with MH_EWORKERDIED, and every item said to succeed must have
 * its right result. */
static void *faster_killer(void *arg) {
  rkill_t *k = arg;
  while (!atomic_load(&k->stop) && k->kills < k->max_kills) {
    mht_jitter(1500);
    int pids[8];
    int n = mh__pp_worker_pids(mh__executor_impl(k->ex), pids, 8);
    if (n <= 0 || atomic_load(&k->stop)) continue;
    if (kill(pids[mht_rand() % (unsigned)n], SIGKILL) == 0) k->kills++;
  }
  return NULL;
}

TEST(map_ends_when_pool_gives_up_on_kills) {
  enum { N = 20000 };
  static long in[N], out[N];
  static int st[N];
  static const double delay = 5e-6;
  int rounds = (int)mht_scaled(8);
  if (rounds < 2) rounds = 2;
  alarm(100); /* a chunk left to a worker given up for dead hangs the map */
  for (int round = 0; round < rounds; round++) {
    mh_executor_t *ex = pool_new(4, 1000000);
    for (int i = 0; i < N; i++) in[i] = i, out[i] = -1, st[i] = 99;
    rkill_t k = {.ex = ex, .max_kills = 1000};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, faster_killer, &k), 0);
    int rc = mh_executor_map(ex, t_slow, (void *)(uintptr_t)&delay, in, sizeof(long), out,
                             sizeof(long), N, 1 + (size_t)(round % 2), st);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    if (rc) ASSERT_ERR(rc, MH_EWORKERDIED);
    for (int i = 0; i < N; i++) {
      if (st[i] == 0) ASSERT_EQ(out[i], (long)i * i);
      else ASSERT_ERR(st[i], MH_EWORKERDIED);
    }
    pool_free(ex);
  }
  alarm(0);
}
