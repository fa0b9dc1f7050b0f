/* SPDX-License-Identifier: MIT */
/* executor_procs.c - the process backend of mh_executor (Pool /
 * ProcessPoolExecutor).
 *
 * A thin adapter: the work is done by the engine in procpool.c (fork server,
 * workers, shared memory, crash accounting).  Here the engine's job hooks
 * drive the future state machine of future.c.  The backend holds one
 * reference on every future it was given, from submit until the future is
 * finished, cancelled or dropped; the hooks run on the engine's dispatcher
 * thread and are the only places that release it.  No lock of its own.
 */
#include <string.h>

#include "internal.h"
#include "executor_internal.h"
#include "procpool.h"

static int ps_begin(void *arg, void *user) {
  mh_future_t *f = user;
  if (mh__future_set_running(f)) return 1;
  mh_future_release(f); /* cancelled while queued */
  return 0;
}

static void ps_requeue(void *arg, void *user) {
  mh__future_set_pending((mh_future_t *)user);
}

static void ps_finish(void *arg, void *user, int code, int pid, int exitcode) {
  mh_future_t *f = user;
  if (pid > 0 && code == MH_EWORKERDIED)
    mh__future_finish_worker_died(f, pid, exitcode);
  else
    mh__future_finish(f, code);
  mh_future_release(f);
}

static void ps_cancel(void *arg, void *user, int began) {
  mh_future_t *f = user;
  if (began) mh__future_set_pending(f);
  mh__future_cancel_queued(f);
  mh_future_release(f);
}

static int ps_start(mh_executor_t *ex, const mh_executor_options_t *opts) {
  mh__pp_config_t c;
  memset(&c, 0, sizeof c);
  /* opts were checked by the shell (mh_executor_new), and the engine checks
   * its config again (mh__pp_new): no third copy of the rules here. */
  c.workers = opts->workers ? opts->workers : mh_cpu_count();
  c.initializer = opts->initializer;
  c.initarg = opts->initarg;
  c.max_tasks_per_child = opts->max_tasks_per_child;
  c.retries = opts->retries;
  c.grace = opts->grace;
  c.task_timeout = opts->task_timeout;
  c.hooks.arg = ex;
  c.hooks.begin = ps_begin;
  c.hooks.requeue = ps_requeue;
  c.hooks.finish = ps_finish;
  c.hooks.cancel = ps_cancel;
  mh__pp_t *pp;
  int rc = mh__pp_new(&pp, &c);
  if (rc < 0) return rc;
  mh__executor_set_impl(ex, pp);
  return 0;
}

static int ps_submit(mh_executor_t *ex, mh_future_t *f) {
  mh_future_retain(f);
  int rc = mh__pp_submit(mh__executor_impl(ex), f, mh__future_task(f));
  if (rc < 0) mh_future_release(f);
  return rc;
}

static int ps_submit_many(mh_executor_t *ex, mh_future_t *const *fs, size_t n) {
  enum { SMALL = 64 };
  const mh__task_t *small[SMALL];
  const mh__task_t **ts = small;
  if (n > SMALL) {
    ts = mh__malloc(n * sizeof *ts);
    if (!ts) return MH_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    ts[i] = mh__future_task(fs[i]);
    mh_future_retain(fs[i]);
  }
  int rc = mh__pp_submit_many(mh__executor_impl(ex), (void *const *)fs, ts, n);
  if (rc < 0)
    for (size_t i = 0; i < n; i++) mh_future_release(fs[i]);
  if (ts != small) mh__free(ts);
  return rc;
}

static int ps_shutdown(mh_executor_t *ex, unsigned flags) {
  return mh__pp_shutdown(mh__executor_impl(ex), flags);
}

static void ps_destroy(mh_executor_t *ex) {
  mh__pp_free(mh__executor_impl(ex));
  mh__executor_set_impl(ex, NULL);
}

/* The whole map runs on the engine's claim-based protocol: workers take
 * chunks from shared memory themselves, no future per chunk. */
static int ps_map(mh_executor_t *ex, mh_task_fn fn, void *ctx, const void *in,
                  size_t in_size, void *out, size_t out_size, size_t n,
                  size_t chunksize, int *status) {
  return mh__pp_map(mh__executor_impl(ex), fn, ctx, in, in_size, out, out_size,
                    n, chunksize, status, mh__call_timeout);
}

const mh__backend_ops_t mh__backend_processes = {
    "processes", ps_start,   ps_submit, ps_submit_many,
    ps_shutdown, ps_destroy, ps_map};
