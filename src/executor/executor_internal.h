/* SPDX-License-Identifier: MIT */
/* executor_internal.h - the contract between the executor shell and its
 * backends.  Never installed.
 *
 * executor.c owns the mh_executor_t shell and map/imap; future.c the futures,
 * wait and as_completed; future_alloc.c their memory.  A backend
 * (executor_threads.c, executor_procs.c, src/mpi/) only runs work: it
 * receives futures through `submit`, and for each one calls
 * mh__future_set_running() before it starts and mh__future_finish() when it
 * ends.  A future handed to a backend is a chunk of `count` items (count == 1
 * for plain submit; map hands out larger chunks).
 *
 * Invariants a backend keeps: it holds one reference on every future it was
 * given, from submit until it finishes, cancels or drops it; only it touches
 * the future's link meanwhile; a future's task runs at most once per
 * set_running.
 *
 * Lock order: a backend never holds a lock of its own while it completes a
 * future (finish, cancel_queued, release): callbacks run there and may call
 * back into the executor.  The shell may call `shutdown` with its slock held.
 */
#ifndef MH_EXECUTOR_INTERNAL_H
#define MH_EXECUTOR_INTERNAL_H

#include "manyhands/executor.h"

/* What a backend needs to run a future: item i of the chunk reads
 * in + i*in_size and writes out + i*out_size; when `statuses` is not NULL the
 * code of item i goes to statuses[i].  The code of the whole future is that of
 * its lowest failing item, or 0. */
typedef struct mh__task {
  mh_task_fn fn;
  void *ctx;
  const void *in;
  size_t in_size;
  void *out;
  size_t out_size;
  size_t count;
  int *statuses;
  double timeout; /* process backend: seconds per item; 0 = the executor's
                     task_timeout, < 0 = none */
} mh__task_t;

/* The per-item limit of the mh_executor_map_timeout call running on this
 * thread (0 outside one): the chunk tasks and the claim-based map read it. */
extern _Thread_local double mh__call_timeout;

typedef struct mh__backend_ops {
  const char *name;
  /* Start the workers; store private state with mh__executor_set_impl. */
  int (*start)(mh_executor_t *ex, const mh_executor_options_t *opts);
  /* Take a reference (mh_future_retain) and queue the future; return
   * MH_ESHUTDOWN after shutdown began. */
  int (*submit)(mh_executor_t *ex, mh_future_t *f);
  /* Submit several at once (may be NULL: the generic code loops). */
  int (*submit_many)(mh_executor_t *ex, mh_future_t *const *fs, size_t n);
  /* Stop accepting; honour MH_SHUTDOWN_WAIT / MH_SHUTDOWN_CANCEL_FUTURES.
   * Pending futures that are cancelled go through mh__future_cancel_queued.
   * Called at most once with WAIT set after a call without it. */
  int (*shutdown)(mh_executor_t *ex, unsigned flags);
  /* Free the backend's state (after a waiting shutdown). */
  void (*destroy)(mh_executor_t *ex);
  /* Optional (may be NULL): run a whole mh_executor_map itself, with the
   * arguments already checked and n > 0.  Returns what mh_executor_map
   * returns, or MH__MAP_GENERIC to let the generic chunk-future path run it
   * (nothing was started then). */
  int (*map)(mh_executor_t *ex, mh_task_fn fn, void *ctx, const void *in,
             size_t in_size, void *out, size_t out_size, size_t n,
             size_t chunksize, int *status);
} mh__backend_ops_t;

/* The map op's "not handled here" answer (positive: never an error code). */
#define MH__MAP_GENERIC 1

extern const mh__backend_ops_t mh__backend_threads;
/* The thread backend's submit, called by the shell without going through
 * the table (`impl` is what its start stored); same contract as `submit`. */
int mh__tp_submit(void *impl, mh_future_t *f);
extern const mh__backend_ops_t mh__backend_processes; /* executor_procs.c */
extern const mh__backend_ops_t mh__backend_mpi;       /* src/mpi/mpi_map.c */

/* Put `ops` in the executor's backend table for `b` (only MH_BACKEND_MPI may
 * be registered; threads and processes are built in).  mh_mpi_init calls it,
 * so the base library never names the MPI library's symbols and a backend
 * nobody registered is MH_ENOTSUP, not a NULL.  0 or MH_EINVAL. */
int mh__executor_register_backend(mh_backend_t b, const mh__backend_ops_t *ops);

void mh__executor_set_impl(mh_executor_t *ex, void *impl);
void *mh__executor_impl(const mh_executor_t *ex);

/* The task of a future (valid for the future's lifetime). */
const mh__task_t *mh__future_task(const mh_future_t *f);

/* A link field inside the future that its backend may use for an intrusive
 * queue while it holds the future (so queueing allocates nothing).  Only the
 * backend the future was submitted to touches it. */
mh_future_t **mh__future_link(mh_future_t *f);

/* PENDING -> RUNNING.  Returns 1 if the caller now runs it, 0 if it had been
 * cancelled (the caller then drops it: mh_future_release). */
int mh__future_set_running(mh_future_t *f);

/* RUNNING -> PENDING, for a backend that re-queues a task whose worker died
 * (retries).  */
void mh__future_set_pending(mh_future_t *f);

/* Run every item of the chunk in this thread and return the future's code
 * (what the thread backend does; the process worker does the same on its
 * copies).  Writes statuses[] when set. */
int mh__task_run(const mh__task_t *t);

/* RUNNING -> FINISHED with `code`; wakes waiters, runs callbacks.  Does not
 * drop the backend's reference. */
void mh__future_finish(mh_future_t *f, int code);

/* mh__future_finish(f, code) then mh_future_release(f), the backend's
 * reference: in one atomic step when nobody sleeps on f and no callback is
 * attached, which saves a backend's worker a second atomic operation per
 * task and leaves the freeing of f to its owner's thread. */
void mh__future_finish_release(mh_future_t *f, int code);

/* Record that the worker running f died (pid, exit status or -signal) and
 * finish f with MH_EWORKERDIED. */
void mh__future_finish_worker_died(mh_future_t *f, int pid, int exitcode);

/* PENDING -> CANCELLED (used by a cancelling shutdown). Returns 1 if it was
 * cancelled by this call. */
int mh__future_cancel_queued(mh_future_t *f);

/* For a backend's idle worker thread: if the futures' allocator will soon
 * need fresh memory, get it and fault it in now, so that submitters do not
 * wait for the kernel to clear it.  Returns 1 if it did that (it took a
 * while: look for work again), 0 at once if nothing was needed.  Optional;
 * safe from any thread at any time. */
int mh__futures_prepare(void);

/* Help-first waits.  A thread-pool worker sets mh__helper for its own
 * thread to a function that runs one pending task of its executor and
 * returns 1, or returns 0 when it found none.  Waits on futures (future.c)
 * and on task groups (forkjoin.c) call it while they wait, instead of
 * sleeping, so that a task waiting on tasks never deadlocks the pool.  NULL
 * in threads that are not workers: their waits are unchanged. */
typedef int (*mh__helper_fn)(void);
extern _Thread_local mh__helper_fn mh__helper;

/* The longest a helping waiter sleeps before it looks for work again. */
#define MH__HELP_NAP 200e-6

/* The executor the calling thread is a worker of (thread backend), or NULL. */
mh_executor_t *mh__worker_executor(void);

/* Run fn(arg) on a worker of the thread executor ex and wait for it, from a
 * thread that is not one of ex's workers, without a future (parallel_for,
 * parallel_reduce and the pi job called from outside): fn's code;
 * MH_ESHUTDOWN once ex was shut down; MH_ECANCELED if a cancelling shutdown
 * came first; the initializer's code if a broken worker took it.  While it
 * waits, on_tick(tick_arg) is called about every `tick` seconds (on_tick NULL:
 * never), on the calling thread. */
int mh__threads_run_outside(mh_executor_t *ex, mh_spawn_fn fn, void *arg, double tick,
                            void (*on_tick)(void *), void *tick_arg);

#endif /* MH_EXECUTOR_INTERNAL_H */
