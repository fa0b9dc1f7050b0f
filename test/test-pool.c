/* test-pool.c - the process pool: the engine (procpool.c) driven directly,
 * and the process backend of the executor. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procpool.h"
#include "test.h"

/* ---- engine harness ------------------------------------------------------ */

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
                             out + k * C, sizeof(long), C, st + k * C};
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
                             out + k * C, sizeof(long), C, st + k * C};
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

TEST(engine_crashes) {
  mh__pp_t *pp;
  mh__pp_config_t c = e_config(2);
  c.grace = 0.2;
  ASSERT_OK(mh__pp_new(&pp, &c));
  long in[4] = {-1, 3, -2, 5}, out[4] = {0};
  int st[4] = {9, 9, 9, 9};
  static ejob_t jobs[4];
  for (int k = 0; k < 4; k++) {
    jobs[k].t = (mh__task_t){t_slow, NULL, in + k, sizeof(long), out + k,
                             sizeof(long), 1, st + k};
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
  hj.t = (mh__task_t){t_slow, NULL, &hang, sizeof hang, &o, sizeof o, 1, &s};
  atomic_store(&e_settled, 0);
  ASSERT_OK(mh__pp_submit(pp, &hj, &hj.t));
  while (atomic_load(&hj.state) != 1) mht_sleep(0.001);
  mht_sleep(0.05);
  double t0 = mht_now();
  ASSERT_OK(mh__pp_shutdown(pp, MH_SHUTDOWN_WAIT | MH_SHUTDOWN_CANCEL_FUTURES));
  ASSERT_LT(mht_now() - t0, 5.0);
  ASSERT_EQ(atomic_load(&e_settled), 1);
  ASSERT_EQ(s, MH_ECANCELED);
  ASSERT_ERR(mh__pp_submit(pp, &hj, &hj.t), MH_ESHUTDOWN);
  mh__pp_free(pp);
  ASSERT_EQ(mht_count_children(), 0);
}
