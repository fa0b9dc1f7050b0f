/* manyhands/executor.h - thread and process pools with futures.
 *
 * concurrent.futures and multiprocessing.Pool in one interface.  An executor
 * runs tasks on a backend (threads, processes, or MPI ranks); each submitted
 * task gives a future that carries the task's status code the way a Python
 * future carries a result or an exception.
 *
 * The task signature is the same for every backend:
 *
 *     int task(const void *in, size_t in_size, void *out, size_t out_size,
 *              void *ctx);
 *
 * `in` and `out` are plain-data buffers owned by the caller, who keeps them
 * alive until the future is done.  The thread backend passes the pointers
 * through; the process backend copies `in` into shared memory for the worker
 * and copies the worker's `out` back before the future completes, so `out`
 * must not contain pointers meant for the parent.  `ctx` is passed through
 * unchanged: on the process backend it must point at memory that existed when
 * the executor was created (workers inherit it by fork) or at shared memory.
 * A task returns 0 or a negative code (MH_E* or <= MH_EUSER).
 */
#ifndef MANYHANDS_EXECUTOR_H
#define MANYHANDS_EXECUTOR_H

/** @defgroup mh_executor executor.h: thread and process pools with futures
 * @brief Thread and process pools with futures.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/executor.h>.
 * @{
 */


#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A pool of workers (threads, processes or MPI ranks); opaque. */
typedef struct mh_executor_s mh_executor_t;
/** The pending result of one submitted task (reference counted); opaque. */
typedef struct mh_future_s mh_future_t;
/** The iterator mh_executor_imap() returns; opaque. */
typedef struct mh_map_iter_s mh_map_iter_t;
/** The iterator mh_as_completed_new() returns; opaque. */
typedef struct mh_as_completed_s mh_as_completed_t;

/** The task signature shared by every backend (see the file comment). */
typedef int (*mh_task_fn)(const void *in, size_t in_size, void *out,
                          size_t out_size, void *ctx);

/** Run once in each worker before its first task.  A non-zero return marks
 * the worker broken: tasks it would have run fail with that code. */
typedef int (*mh_worker_init_fn)(void *arg);

/** Where an executor runs its tasks. */
typedef enum {
  MH_BACKEND_THREADS = 0,
  MH_BACKEND_PROCESSES = 1,
  MH_BACKEND_MPI = 2
} mh_backend_t;

/** Executor options.  Zero-initialise (or call mh_executor_options_init) and
 * set what you need; more fields may be added at the end. */
typedef struct mh_executor_options_s {
  unsigned flags;                /**< reserved, 0 */
  mh_backend_t backend;          /**< default MH_BACKEND_THREADS */
  int workers;                   /**< 0 = online CPUs; 1..4096 */
  mh_worker_init_fn initializer; /**< optional, run in each worker */
  void *initarg;                 /**< argument of the initializer */
  int max_tasks_per_child;       /**< processes: replace a worker after this
                                      many tasks; 0 = never */
  int retries;                   /**< processes: how often a task whose worker
                                      died is re-run on a new worker before it
                                      fails with MH_EWORKERDIED; 0 = never */
  double grace;                  /**< processes: seconds a cancelling shutdown
                                      waits before SIGKILL; <= 0 = 1.0 */
} mh_executor_options_t;

/** Fill `opts` with the defaults (threads, one worker per online CPU).
 * @param opts the options to fill */
MH_EXTERN void mh_executor_options_init(mh_executor_options_t *opts);

/** Create an executor and start its workers.  `opts` may be NULL (defaults).
 * @param ex receives the new executor
 * @param opts the options; NULL for the defaults
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL `ex`, workers < 0 or > 4096, unknown backend,
 * negative retries or max_tasks_per_child), MH_ENOTSUP (backend not built in),
 * MH_ENOMEM (also: no memory for a worker thread's stack), MH_EAGAIN (the
 * system refused a thread or process). */
MH_EXTERN int mh_executor_new(mh_executor_t **ex,
                              const mh_executor_options_t *opts);

/** Number of workers, or MH_EINVAL for NULL.
 * @param ex the executor
 * @return what the description above says */
MH_EXTERN int mh_executor_workers(const mh_executor_t *ex);

/** The backend, or MH_EINVAL for NULL.
 * @param ex the executor
 * @return what the description above says */
MH_EXTERN int mh_executor_backend(const mh_executor_t *ex);

/** Schedule fn(in, in_size, out, out_size, ctx) and return its future in
 * `*fut` (the caller owns one reference: mh_future_release it).
 * @param ex the executor
 * @param fn the function to run
 * @param in the input buffer: item i starts at in + i * in_size
 * @param in_size bytes of one input item (may be 0)
 * @param out the output buffer: item i starts at out + i * out_size
 * @param out_size bytes of one output item (may be 0)
 * @param ctx passed unchanged to every call of the task
 * @param fut receives the new future (one reference, the caller's)
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL ex/fn/fut, NULL buffer with non-zero size),
 * MH_ESHUTDOWN (the executor was shut down), MH_ENOMEM. */
MH_EXTERN int mh_executor_submit(mh_executor_t *ex, mh_task_fn fn,
                                 const void *in, size_t in_size, void *out,
                                 size_t out_size, void *ctx,
                                 mh_future_t **fut);

/** Flags of mh_executor_shutdown. */
#define MH_SHUTDOWN_WAIT 1u           /**< wait for running and queued tasks */
#define MH_SHUTDOWN_CANCEL_FUTURES 2u /**< cancel tasks not yet started */

/** Stop accepting work.  With MH_SHUTDOWN_CANCEL_FUTURES pending tasks are
 * cancelled (their futures give MH_ECANCELED); otherwise queued tasks still
 * run.  With MH_SHUTDOWN_WAIT the call returns when every worker has
 * finished.  On the process backend a cancelling shutdown also ends running
 * tasks: SIGTERM, then SIGKILL after `grace`.  Calling it again is harmless:
 * a later call that adds MH_SHUTDOWN_WAIT waits; one that only adds
 * MH_SHUTDOWN_CANCEL_FUTURES has no effect.  A task may call it with flags 0
 * on its own executor.
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL ex, unknown flags).
 * @param ex the executor
 * @param flags MH_SHUTDOWN_WAIT and/or MH_SHUTDOWN_CANCEL_FUTURES, or 0 */
MH_EXTERN int mh_executor_shutdown(mh_executor_t *ex, unsigned flags);

/** Shut down with MH_SHUTDOWN_WAIT (if not done yet) and free the executor.
 * Futures still referenced stay valid.  NULL is ignored.  Must not be called
 * from one of the executor's own tasks or callbacks.
 * @param ex the executor */
MH_EXTERN void mh_executor_free(mh_executor_t *ex);

/* ---- map ---------------------------------------------------------------- */

/** Apply `fn` to n items: item i reads in + i*in_size and writes
 * out + i*out_size.  Items are grouped into chunks of `chunksize` (0 picks a
 * size from n and the worker count, as Pool.map does); at most a few chunks
 * per worker are in flight, so memory does not grow with n.  Blocks until all
 * items are done.  `status`, if not NULL, receives each item's code.
 * @param ex the executor
 * @param fn the function to run
 * @param ctx passed unchanged to every call of the task
 * @param in the input buffer: item i starts at in + i * in_size
 * @param in_size bytes of one input item (may be 0)
 * @param out the output buffer: item i starts at out + i * out_size
 * @param out_size bytes of one output item (may be 0)
 * @param n the number of items
 * @param chunksize items per chunk; 0 picks one from n and the worker count
 * @param status NULL, or where each item's code is written
 * @return 0 when every item returned 0, else the code of the lowest-indexed
 * failing item (every item still runs).  Errors also: MH_EINVAL, MH_ESHUTDOWN,
 * MH_ENOMEM. */
MH_EXTERN int mh_executor_map(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                              const void *in, size_t in_size, void *out,
                              size_t out_size, size_t n, size_t chunksize,
                              int *status);

/** Flag of mh_executor_imap: yield items as they complete, not in order. */
#define MH_MAP_UNORDERED 1u

/** Like mh_executor_map but returns at once with an iterator; items are
 * yielded by mh_map_iter_next in index order (or as they complete with
 * MH_MAP_UNORDERED).  The buffers must stay valid until mh_map_iter_free.
 * A chunksize of 0 picks Pool.map's size, at most 256 (item statuses of the
 * chunks in flight are buffered).
 * @return 0 on success, or one of these errors: MH_EINVAL, MH_ESHUTDOWN,
 * MH_ENOMEM.
 * @param ex the executor
 * @param fn the function to run
 * @param ctx passed unchanged to every call of the task
 * @param in the input buffer: item i starts at in + i * in_size
 * @param in_size bytes of one input item (may be 0)
 * @param out the output buffer: item i starts at out + i * out_size
 * @param out_size bytes of one output item (may be 0)
 * @param n the number of items
 * @param chunksize items per chunk; 0 picks one from n and the worker count
 * @param flags 0, or MH_MAP_UNORDERED
 * @param it receives the iterator */
MH_EXTERN int mh_executor_imap(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                               const void *in, size_t in_size, void *out,
                               size_t out_size, size_t n, size_t chunksize,
                               unsigned flags, mh_map_iter_t **it);

/** Next finished item: its index in `*index` and its code in `*status`
 * (MH_ECANCELED or MH_ESHUTDOWN for items whose chunk never ran).
 * @param it the map iterator
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @param index receives the item's index
 * @param status receives the item's code
 * @return 0, MH_EEOF when every item has been yielded, MH_ETIMEDOUT,
 * MH_EINVAL (NULL argument, bad timeout). */
MH_EXTERN int mh_map_iter_next(mh_map_iter_t *it, double timeout,
                               size_t *index, int *status);

/** Cancel what has not started, wait for what runs, free.  NULL ignored.
 * @param it the map iterator */
MH_EXTERN void mh_map_iter_free(mh_map_iter_t *it);

/* ---- futures ------------------------------------------------------------ */

/** Wait until the future is done.  0 when done (finished or cancelled),
 * MH_ETIMEDOUT, MH_EINVAL.
 * @param f the future
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return what the description above says */
MH_EXTERN int mh_future_wait(mh_future_t *f, double timeout);

/** Wait, then return the task's own code (0 on success).  MH_ECANCELED when
 * the future was cancelled, MH_EWORKERDIED when its worker died,
 * MH_ETIMEDOUT when it is not done in time (use mh_future_wait first to tell
 * that apart from a task that itself returned MH_ETIMEDOUT), MH_EINVAL.
 * @param f the future
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return what the description above says */
MH_EXTERN int mh_future_result(mh_future_t *f, double timeout);

/** 1 if finished or cancelled, else 0 (0 also for NULL).
 * @param f the future
 * @return what the description above says */
MH_EXTERN int mh_future_done(const mh_future_t *f);
/** 1 if a worker is running it now, else 0.
 * @param f the future
 * @return what the description above says */
MH_EXTERN int mh_future_running(const mh_future_t *f);
/** 1 if it was cancelled, else 0.
 * @param f the future
 * @return what the description above says */
MH_EXTERN int mh_future_cancelled(const mh_future_t *f);

/** Cancel the task if it has not started.  0 if it is (now) cancelled,
 * MH_EBUSY if it is running or finished, MH_EINVAL.
 * @param f the future
 * @return what the description above says */
MH_EXTERN int mh_future_cancel(mh_future_t *f);

/** A done callback: called with the future and the arg given with it. */
typedef void (*mh_future_cb)(mh_future_t *f, void *arg);

/** Call cb(f, arg) once the future is done, on the thread that completes it;
 * at once, on the caller's thread, if it is already done.  Callbacks run in
 * the order they were added, before threads waiting in mh_future_wait or
 * mh_future_result wake up.
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL f or cb), MH_ENOMEM.
 * @param f the future
 * @param cb the callback
 * @param arg passed to cb */
MH_EXTERN int mh_future_add_done_callback(mh_future_t *f, mh_future_cb cb,
                                          void *arg);

/** For a future that failed with MH_EWORKERDIED: the pid of the worker and
 * how it ended (exit status >= 0, or minus the signal number).
 * MH_EINVAL if the future did not fail that way.
 * @param f the future
 * @param pid receives the worker's process id
 * @param exitcode receives the exit status (>= 0) or minus the signal number
 * @return what the description above says */
MH_EXTERN int mh_future_worker_exit(const mh_future_t *f, int *pid,
                                    int *exitcode);

/** Take one more reference to the future (each mh_future_release() drops one).
 * @param f the future; NULL is ignored */
MH_EXTERN void mh_future_retain(mh_future_t *f);
/** Drop a reference; the last one frees the future.  NULL ignored.
 * @param f the future */
MH_EXTERN void mh_future_release(mh_future_t *f);

/** Conditions of mh_futures_wait (concurrent.futures.wait). */
typedef enum {
  MH_FIRST_COMPLETED = 1,
  MH_FIRST_EXCEPTION = 2,
  MH_ALL_COMPLETED = 3
} mh_wait_mode_t;

/** Wait until `mode` holds over fs[0..n).  `*ndone` (optional) receives how
 * many are done.  MH_FIRST_EXCEPTION holds when a future finished with a
 * non-zero code (cancelled ones do not count, as in Python) or all are done.
 * 0, MH_ETIMEDOUT, MH_EINVAL (NULL fs with n > 0, a NULL future, bad mode or
 * timeout), MH_ENOMEM (FIRST_* modes register with each future).
 * @param fs the futures, n of them
 * @param n the number of items
 * @param mode which condition ends the wait
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @param ndone NULL, or receives how many futures are done
 * @return what the description above says */
MH_EXTERN int mh_futures_wait(mh_future_t *const *fs, size_t n,
                              mh_wait_mode_t mode, double timeout,
                              size_t *ndone);

/** concurrent.futures.as_completed: an iterator over fs[0..n) that yields
 * each future once, as it completes.
 * @return 0 on success, or one of these errors: MH_EINVAL, MH_ENOMEM.
 * @param ac receives the new iterator
 * @param fs the futures, n of them
 * @param n the number of items */
MH_EXTERN int mh_as_completed_new(mh_as_completed_t **ac,
                                  mh_future_t *const *fs, size_t n);
/** Next completed future (not a new reference; the iterator holds one until
 * mh_as_completed_free).  0, MH_EEOF when all were yielded, MH_ETIMEDOUT,
 * MH_EINVAL.  A future listed twice is yielded once.
 * @param ac the as-completed iterator
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @param f receives the next completed future
 * @return what the description above says */
MH_EXTERN int mh_as_completed_next(mh_as_completed_t *ac, double timeout,
                                   mh_future_t **f);
/** Free the iterator and drop the references it holds.  NULL is ignored.
 * @param ac the iterator */
MH_EXTERN void mh_as_completed_free(mh_as_completed_t *ac);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_EXECUTOR_H */
