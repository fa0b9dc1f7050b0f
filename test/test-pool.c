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
