/* SPDX-License-Identifier: MIT */
/* procpool.h - the process pool engine under the process backend.  Never
 * installed.
 *
 * The engine knows nothing of futures: it runs "jobs" (an mh__task_t chunk
 * plus an opaque user pointer) on worker processes forked from a fork
 * server, and reports what happens to each job through the hooks below, all
 * called on the engine's dispatcher thread.  executor_procs.c maps the hooks
 * onto the future state machine; the tests drive the engine directly too.
 */
#ifndef MH_PROCPOOL_H
#define MH_PROCPOOL_H

#include "executor/executor_internal.h"

typedef struct mh__pp mh__pp_t;

typedef struct mh__pp_hooks {
  void *arg;
  /* The job is about to be handed to a worker: return 1 to run it, 0 to drop
   * it (it was cancelled meanwhile; the engine forgets it). */
  int (*begin)(void *arg, void *user);
  /* A job that had begun goes back to the queue (its worker died before
   * starting it, or retries re-run it). */
  void (*requeue)(void *arg, void *user);
  /* The job ended with `code`.  pid > 0 when a worker died running one of its
   * items (exitcode: status >= 0 or minus the signal), else pid == 0. */
  void (*finish)(void *arg, void *user, int code, int pid, int exitcode);
  /* A cancelling shutdown removed the job before it ran; `began` says
   * whether begin() had been called for it. */
  void (*cancel)(void *arg, void *user, int began);
} mh__pp_hooks_t;

typedef struct mh__pp_config {
  int workers;                   /* 1..4096 */
  mh_worker_init_fn initializer; /* may be NULL */
  void *initarg;
  int max_tasks_per_child; /* 0 = never replace */
  int retries;             /* re-runs of an item whose worker died */
  double grace;            /* seconds between SIGTERM and SIGKILL */
  double task_timeout;     /* seconds an item may run (0 = none); a task's
                              own timeout (mh__task_t) overrides it */
  mh__pp_hooks_t hooks;
} mh__pp_config_t;

/* Fork the server and the workers.  MH_EINVAL, MH_ENOMEM, MH_EAGAIN (no
 * process or thread could be made), MH_EMFILE. */
int mh__pp_new(mh__pp_t **pp, const mh__pp_config_t *cfg);

/* Queue a job.  The task must stay valid until the job's finish or cancel
 * hook ran.  MH_ESHUTDOWN after shutdown began, MH_EINVAL (a chunk whose
 * byte size overflows), MH_ENOMEM. */
int mh__pp_submit(mh__pp_t *pp, void *user, const mh__task_t *t);

/* Queue n jobs at once (one lock, one wake-up).  All or none are queued. */
int mh__pp_submit_many(mh__pp_t *pp, void *const *users,
                       const mh__task_t *const *ts, size_t n);

/* Run a whole map with the claim-based protocol (procpool_map.c): the
 * arguments and results of mh_executor_map.  Returns MH__MAP_GENERIC,
 * having started nothing, when it cannot (chunks too big for the window,
 * another thread's map running, a broken pool): the caller then uses job
 * futures.  MH_ESHUTDOWN after shutdown began. */
int mh__pp_map(mh__pp_t *pp, mh_task_fn fn, void *ctx, const void *in,
               size_t in_size, void *out, size_t out_size, size_t n,
               size_t chunksize, int *status, double timeout);

/* The bytes path (executor_bytes.c): while set, the calling thread's
 * mh__pp_map calls fn(arg, lo, cnt) right after it copied the results of
 * items [lo, lo + cnt) out of the window, so that their bytes are taken
 * while the workers run on (and the workers' blocks come free).  A map that
 * does not take this path (MH__MAP_GENERIC) never calls it.  max_slots > 1
 * also caps the chunks the window holds at once (0: no cap), so that the
 * results in flight fit the workers' blocks. */
typedef void (*mh__pp_take_fn)(void *arg, size_t lo, size_t cnt);
void mh__pp_take_hook(mh__pp_take_fn fn, void *arg, size_t max_slots);

/* MH_SHUTDOWN_WAIT / MH_SHUTDOWN_CANCEL_FUTURES / MH_SHUTDOWN_TERMINATE as
 * in executor.h (TERMINATE implies CANCEL_FUTURES).  A later call may add
 * TERMINATE to a shutdown already under way (also while another thread
 * waits in it). */
int mh__pp_shutdown(mh__pp_t *pp, unsigned flags);

/* Shut down (waiting) if not done, and free.  NULL ignored. */
void mh__pp_free(mh__pp_t *pp);

/* Test hook: copy up to n live worker pids into pids; returns how many. */
int mh__pp_worker_pids(mh__pp_t *pp, int *pids, int n);

/* Test hook: pid of the fork server (0 once it is gone). */
int mh__pp_server_pid(mh__pp_t *pp);

#endif /* MH_PROCPOOL_H */
