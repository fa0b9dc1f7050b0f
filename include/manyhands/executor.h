/* SPDX-License-Identifier: MIT */
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
 * must not contain pointers meant for the parent.  A task returns 0 or a
 * negative code (MH_E* or <= MH_EUSER).
 *
 * The context rule.  `ctx` is passed to the task unchanged.  On the thread
 * backend it may point anywhere.  On the process backend a worker is a copy
 * of the parent made when the executor was created, so plain memory the
 * parent changes later would be read stale; submit, map and imap therefore
 * accept only a `ctx` that is
 *   - NULL,
 *   - inside the executor's own context: mh_executor_set_context(ex, &v,
 *     sizeof v) copies `v` there, and mh_executor_context(ex) is the pointer
 *     to pass (on every backend); set it again to change it,
 *   - inside shared memory that existed before mh_executor_new (mh_shared_*
 *     of shared.h, or any MAP_SHARED mapping): both sides see every write,
 *   - inside memory that was read-only then (string literals, const data),
 * and fail with MH_EINVAL otherwise (a plain global, the heap, the stack,
 * or an integer cast to a pointer: put the integer in the context).  Not
 * detected: shared memory freed after mh_executor_new and a new block mapped
 * at the same address.  Python differs: its Pool pickles the arguments of
 * each call, and a global is copied at fork the same silent way.
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
  double task_timeout;           /**< processes: seconds one task (one item
                                      of a map) may run; past it its worker
                                      is SIGKILLed and replaced and the task
                                      fails with MH_ETIMEDOUT (or re-runs,
                                      within `retries`); 0 = no limit.  The
                                      thread backend cannot stop a thread:
                                      non-zero there is MH_EINVAL. */
  int daemon;                    /**< 0 (default): when the program calls
                                      exit() or returns from main, the
                                      executor first runs the tasks it was
                                      given (an atexit handler shuts it down
                                      and waits), as Python's executors do;
                                      1: abandon them (the process ends,
                                      its workers with it), like a daemon
                                      thread.  Not in fork children: an
                                      executor belongs to the process that
                                      made it. */
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
 * system refused a thread or process), MH_ENOTSUP also in a process that
 * called unshare(CLONE_NEWPID), where Linux allows no new thread (either
 * backend needs one; see mh_thread_start). */
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
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL ex/fn/fut, NULL buffer with non-zero size, a
 * ctx the process backend refuses: see "The context rule" above),
 * MH_ESHUTDOWN (the executor was shut down), MH_ENOMEM, MH_EPERM (called
 * from a worker process of a process or MPI executor: see "fork-join"). */
MH_EXTERN int mh_executor_submit(mh_executor_t *ex, mh_task_fn fn,
                                 const void *in, size_t in_size, void *out,
                                 size_t out_size, void *ctx,
                                 mh_future_t **fut);

/* ---- per-call time limits (process backend) ---------------------------- */

/** mh_executor_submit with a time limit of its own: `timeout` seconds > 0
 * replaces the executor's task_timeout for this task, 0 keeps it, < 0 means
 * no limit.  A task past its limit gets its worker SIGKILLed (a stopped or
 * hung worker included), the worker is replaced, and the future fails with
 * MH_ETIMEDOUT (or the task re-runs, within `retries`).  The time is counted
 * from when the task began on its worker, as seen by the pool's dispatcher
 * (it may notice up to a few ms late).  Thread backend: a timeout > 0 is
 * MH_EINVAL.
 * @param ex the executor
 * @param fn the function to run
 * @param in the input buffer
 * @param in_size bytes of the input (may be 0)
 * @param out the output buffer
 * @param out_size bytes of the output (may be 0)
 * @param ctx passed unchanged to the task (see "The context rule")
 * @param timeout seconds: > 0 this task's limit, 0 the executor's, < 0 none
 * @param fut receives the new future (one reference, the caller's)
 * @return the codes of mh_executor_submit */
MH_EXTERN int mh_executor_submit_timeout(mh_executor_t *ex, mh_task_fn fn,
                                         const void *in, size_t in_size,
                                         void *out, size_t out_size, void *ctx,
                                         double timeout, mh_future_t **fut);

/** mh_executor_map with a time limit per item (as in
 * mh_executor_submit_timeout): an item past it gives MH_ETIMEDOUT in its
 * status and its worker is replaced; the other items run as usual.
 * @return as mh_executor_map (MH_ETIMEDOUT when the lowest failing item ran
 * out of time).
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
 * @param timeout seconds per item: > 0 this map's, 0 the executor's, < 0 none */
MH_EXTERN int mh_executor_map_timeout(mh_executor_t *ex, mh_task_fn fn,
                                      void *ctx, const void *in,
                                      size_t in_size, void *out,
                                      size_t out_size, size_t n,
                                      size_t chunksize, int *status,
                                      double timeout);

/** Flags of mh_executor_shutdown. */
#define MH_SHUTDOWN_WAIT 1u           /**< wait for running and queued tasks */
#define MH_SHUTDOWN_CANCEL_FUTURES 2u /**< cancel tasks not yet started */
#define MH_SHUTDOWN_TERMINATE 4u      /**< also end running tasks (processes) */

/** Stop accepting work.  With MH_SHUTDOWN_CANCEL_FUTURES pending tasks are
 * cancelled (their futures give MH_ECANCELED and mh_future_cancelled 1);
 * running tasks finish, as with Python's shutdown(cancel_futures=True);
 * otherwise queued tasks still run.  MH_SHUTDOWN_TERMINATE (Python 3.14's
 * terminate_workers()) implies CANCEL_FUTURES and, on the process backend,
 * ends the running tasks too: SIGTERM, then SIGKILL after `grace`; their
 * futures are cancelled (mh_future_cancelled 1, MH_ECANCELED), a map's items
 * that were running or not begun give MH_ECANCELED.  Threads cannot be
 * stopped, nor a chunk running on an MPI rank without ending the job: on the
 * thread and MPI backends TERMINATE is CANCEL_FUTURES.  With
 * MH_SHUTDOWN_WAIT the call returns when every worker has finished.  Calling
 * it again is harmless: a later call that adds MH_SHUTDOWN_WAIT waits; one
 * that adds MH_SHUTDOWN_TERMINATE terminates at once, even while another
 * thread waits in a shutdown (so a signal-watching thread can escalate);
 * one that only adds MH_SHUTDOWN_CANCEL_FUTURES has no effect.  A task may
 * call it with flags 0 on its own executor.
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL ex, unknown flags).
 * @param ex the executor
 * @param flags MH_SHUTDOWN_WAIT, MH_SHUTDOWN_CANCEL_FUTURES and/or
 * MH_SHUTDOWN_TERMINATE, or 0 */
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

/* ---- the task context (see "The context rule" above) ------------------ */

/** Copy `size` bytes of `data` into the executor's context, which tasks of
 * every backend read through mh_executor_context(ex).  On the process
 * backend the context lives in memory shared with the workers, so a change
 * reaches them at once, with no copy made at pool creation to go stale.
 * Tasks read it live, not a snapshot: call it between maps, or when no task
 * that reads it is running (calls of it are not serialised with each other
 * either).  Errors: MH_EINVAL (NULL ex, NULL data with a non-zero size,
 * size over 64 MiB).
 * @param ex   the executor
 * @param data the bytes to copy (may be NULL when size is 0)
 * @param size their number, 0..64 MiB; 0 empties the context
 * @return 0 or MH_EINVAL */
MH_EXTERN int mh_executor_set_context(mh_executor_t *ex, const void *data,
                                      size_t size);

/** The pointer to pass as `ctx` to reach the executor's context (the same
 * address in the parent and in every worker).
 * @param ex the executor
 * @return the context's first byte, or NULL for a NULL ex */
MH_EXTERN void *mh_executor_context(const mh_executor_t *ex);

/** Bytes of the executor's context (the last mh_executor_set_context size).
 * @param ex the executor
 * @return the size, 0 for a NULL ex or a context never set */
MH_EXTERN size_t mh_executor_context_size(const mh_executor_t *ex);

/* ---- results of any size ---------------------------------------------- *
 *
 * A task run by the *_bytes calls is an ordinary mh_task_fn called with
 * out = NULL and out_size = 0; it decides the size of its result while it
 * runs by calling mh_task_output(size), and writes the bytes there.  The
 * caller receives each result as a block it owns (free it with
 * mh_bytes_free), on every backend.  On threads the block is the one the task
 * filled.  On processes a result of up to 4 KiB is handed over where the
 * worker wrote it, uncopied: in the executor's result heap, memory shared
 * with its workers, packed with others into 1 MiB blocks; a block is
 * reused once all its results were freed (so an imap whose caller frees as
 * it goes stays in a few blocks), and up to 16 free blocks per executor keep
 * their pages for the next map.  A larger result is copied into the
 * caller's own memory and its shared memory reused or given back at once.
 * So, for the results of up to 4 KiB:
 *   - a result outlives its executor (the heap stays mapped until the last
 *     result in it is freed);
 *   - a process forked while the caller holds results shares their bytes
 *     (it reads the same memory, and writes to it are seen by the caller);
 *     mh_bytes_free there does nothing: the result is still the caller's.
 * A task that returns non-zero has no result (NULL, 0).  The ctx rule of
 * the file comment holds.
 */

/** Room for one result of mh_executor_submit_bytes; the caller keeps it
 * alive until mh_future_result_bytes took the result (or the future is
 * done and dropped). */
typedef struct mh_bytes_slot_s {
  unsigned long long opaque[8]; /**< private */
} mh_bytes_slot_t;

/** Iterator of mh_executor_imap_bytes. */
typedef struct mh_bytes_iter_s mh_bytes_iter_t;

/** Inside a task run by a *_bytes call: the buffer of its result, `size`
 * bytes.  Calling it again resizes the result and keeps the first bytes, as
 * realloc does (the pointer may change).
 * @param size bytes of the result (0 allowed: an empty result)
 * @return the buffer, or NULL outside such a task or when memory ran out
 *         (then the previous buffer stays the result) */
MH_EXTERN void *mh_task_output(size_t size);

/** Free a result handed out by a *_bytes call.  NULL is ignored.
 * @param data the block */
MH_EXTERN void mh_bytes_free(void *data);

/** Submit fn(in, in_size, NULL, 0, ctx), whose result is bytes of any size.
 * @param ex      the executor
 * @param fn      the task (calls mh_task_output)
 * @param in      its input (copied on processes), may be NULL if in_size 0
 * @param in_size bytes of the input
 * @param ctx     the context (see the context rule)
 * @param slot    where the result waits for mh_future_result_bytes
 * @param fut     receives the future (one reference: release it)
 * @return 0, MH_EINVAL (NULL ex/fn/slot/fut, NULL in with a size, a refused
 *         ctx), MH_ESHUTDOWN, MH_ENOMEM */
MH_EXTERN int mh_executor_submit_bytes(mh_executor_t *ex, mh_task_fn fn,
                                       const void *in, size_t in_size,
                                       void *ctx, mh_bytes_slot_t *slot,
                                       mh_future_t **fut);

/** Wait for a future of mh_executor_submit_bytes and take its result; call
 * it once per future (a second call gives NULL, 0).
 * @param f       the future
 * @param slot    the slot given to mh_executor_submit_bytes
 * @param timeout seconds, MH_FOREVER, or 0
 * @param data    receives the result (the caller frees it with
 *                mh_bytes_free), NULL when empty or on error
 * @param size    receives its size
 * @return the task's code (0 on success), or what mh_future_result returns
 *         (MH_ETIMEDOUT: try again later), MH_ENOMEM (the copy failed),
 *         MH_EINVAL (a NULL argument) */
MH_EXTERN int mh_future_result_bytes(mh_future_t *f, mh_bytes_slot_t *slot,
                                     double timeout, void **data,
                                     size_t *size);

/** mh_executor_map whose items return bytes of any size: item i reads
 * in + i*in_size; its result goes to outs[i] (owned by the caller, free each
 * with mh_bytes_free) and sizes[i].  Failed items give NULL, 0.
 * @param ex        the executor
 * @param fn        the task (calls mh_task_output)
 * @param ctx       the context (see the context rule)
 * @param in        n inputs of in_size bytes (NULL if in_size is 0)
 * @param in_size   bytes of one input
 * @param n         number of items
 * @param chunksize items per chunk, 0 = automatic
 * @param status    NULL or n codes, one per item
 * @param outs      n pointers, filled
 * @param sizes     n sizes, filled
 * @return 0 when every item returned 0, else the lowest-indexed failing
 *         item's code; MH_EINVAL, MH_ESHUTDOWN, MH_ENOMEM */
MH_EXTERN int mh_executor_map_bytes(mh_executor_t *ex, mh_task_fn fn,
                                    void *ctx, const void *in, size_t in_size,
                                    size_t n, size_t chunksize, int *status,
                                    void **outs, size_t *sizes);

/** mh_executor_imap whose items return bytes: each result is handed to the
 * caller by mh_bytes_iter_next and freed by the caller, so resident memory
 * stays flat however long the map (the iterator keeps a 64-byte record per
 * item).
 * @param ex        the executor
 * @param fn        the task (calls mh_task_output)
 * @param ctx       the context (see the context rule)
 * @param in        n inputs of in_size bytes, valid until the iterator is
 *                  freed
 * @param in_size   bytes of one input
 * @param n         number of items
 * @param chunksize items per chunk, 0 = automatic
 * @param flags     0 or MH_MAP_UNORDERED
 * @param it        receives the iterator
 * @return 0, MH_EINVAL, MH_ESHUTDOWN, MH_ENOMEM */
MH_EXTERN int mh_executor_imap_bytes(mh_executor_t *ex, mh_task_fn fn,
                                     void *ctx, const void *in,
                                     size_t in_size, size_t n,
                                     size_t chunksize, unsigned flags,
                                     mh_bytes_iter_t **it);

/** Next finished item of an mh_executor_imap_bytes.
 * @param it      the iterator
 * @param timeout seconds, MH_FOREVER, or 0
 * @param index   receives the item's index
 * @param status  receives its code (MH_ENOMEM when its copy failed)
 * @param data    receives its result (free with mh_bytes_free), or NULL
 * @param size    receives the result's size
 * @return 0, MH_EEOF when every item was yielded, MH_ETIMEDOUT, MH_EINVAL */
MH_EXTERN int mh_bytes_iter_next(mh_bytes_iter_t *it, double timeout,
                                 size_t *index, int *status, void **data,
                                 size_t *size);

/** Cancel what has not started, wait for what runs, free the results not
 * taken and the iterator.  NULL ignored.
 * @param it the iterator */
MH_EXTERN void mh_bytes_iter_free(mh_bytes_iter_t *it);

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

/* ---- fork-join (thread backend) ------------------------------------------ */

/* A task of a thread executor may submit to its own executor and wait for
 * what it submitted: a worker that waits (mh_future_result, mh_future_wait,
 * mh_futures_wait, as_completed, mh_task_group_wait) runs other pending work
 * of its executor meanwhile (help first), so such waits never deadlock, with
 * any number of workers, 1 included.  Python's ThreadPoolExecutor deadlocks
 * there instead.  Tasks a worker submits go onto its own deque (newest
 * first for itself, oldest first for idle workers that steal).  A waiting
 * task must not wait for a task that waits for it (a cycle deadlocks, as
 * everywhere).  The waited-for work runs on the waiting worker's stack
 * (64 MiB; a level of nested waits takes about 350 bytes with a small
 * task), and on a fresh stack segment of the same thread when less than
 * 2 MiB is left, so nesting depth is bounded by memory, not by one stack
 * (10^6 levels on one worker: about 450 MB).  Not under ThreadSanitizer,
 * whose shadow stack holds about 9,000 nested waits; see docs/forkjoin.md.
 * On the process and MPI backends a worker has no way back to its
 * executor: mh_executor_submit and map from a worker process give
 * MH_EPERM. */

/** A task group: structured concurrency over one thread executor. */
typedef struct mh_task_group_s mh_task_group_t;

/** A member of a task group: fn(arg, group).  A non-zero return fails the
 * member; the group's result is the first failing member's code. */
typedef int (*mh_group_fn)(void *arg, mh_task_group_t *g);

/** Make a group that runs its members on `ex`.
 * @param g receives the group
 * @param ex the executor (any backend whose workers are threads)
 * @return 0, MH_EINVAL (NULL argument), MH_ENOMEM */
MH_EXTERN int mh_task_group_new(mh_task_group_t **g, mh_executor_t *ex);

/** Run fn(arg, g) as a member of g.  Members may run more members.  A member
 * that has not started when the group is cancelled never runs.
 * @param g the group
 * @param fn the member
 * @param arg its argument (must stay valid until the member ran)
 * @return 0, MH_EINVAL, MH_ECANCELED (the group was cancelled: fn does not
 *         run), MH_ESHUTDOWN, MH_ENOMEM */
MH_EXTERN int mh_task_group_run(mh_task_group_t *g, mh_group_fn fn, void *arg);

/** Wait until every member (and every member they ran) has ended.  Inside
 * a worker the wait helps (runs pending work).
 * @param g the group
 * @return the first failing member's code; else MH_ECANCELED if the group
 *         was cancelled; else 0.  MH_EINVAL for NULL. */
MH_EXTERN int mh_task_group_wait(mh_task_group_t *g);

/** Cancel the group: members not yet started never run; running members
 * see mh_task_group_cancelled() return 1 and may stop early.
 * @param g the group
 * @return 0 or MH_EINVAL */
MH_EXTERN int mh_task_group_cancel(mh_task_group_t *g);

/** Has the group been cancelled?  Cheap (one load): members poll it.
 * @param g the group
 * @return 1 or 0 (0 for NULL) */
MH_EXTERN int mh_task_group_cancelled(const mh_task_group_t *g);

/** Free a group.  A group whose members have not all ended cannot be freed.
 * @param g the group (NULL is ignored)
 * @return 0, or MH_EBUSY (members still pending or running: nothing was
 *         freed; wait first) */
MH_EXTERN int mh_task_group_free(mh_task_group_t *g);

/** The body of a spawned task: fn(arg); its return is mh_spawn_join's. */
typedef int (*mh_spawn_fn)(void *arg);

/** A spawn record: a join-in-scope task that lives in its parent's frame
 * (usually on the stack), as in Cilk or libfork.  Caller-allocated; the
 * fields are private (read and written by the library only). */
typedef struct mh_spawn_s {
  mh_spawn_fn fn_; /**< private: the child */
  void *arg_;      /**< private: its argument */
  int state_;      /**< private: queued, running or done (accessed atomically) */
  int rc_;         /**< private: the child's return value */
} mh_spawn_t;

/** Spawn fn(arg) as a child of the running task: the cheapest fork of
 * fork-join (no future, no allocation, no reference count; a push onto the
 * worker's deque).  Idle workers may steal it; otherwise mh_spawn_join runs
 * it on the spot.  A spawn offers parallelism and does not promise it:
 * like oneTBB's, it looks for a sleeping worker to wake without a memory
 * fence, so a worker falling asleep at that instant can miss it for up to
 * a millisecond (its first nap is timed); nothing waits on that, as the
 * join runs the child itself.  The contract, as Cilk's: every spawn is joined, by
 * mh_spawn_join on the same thread, before `t` goes out of scope.  Called
 * from a thread that is not a worker of `ex` (or when the deque cannot
 * grow), fn runs at once on the calling thread and the join only returns
 * its code.  There is no Python equivalent (Python's executors only have
 * futures; mh_executor_submit + mh_future_result is the futures form).
 * @param ex the thread executor whose task is calling
 * @param t the record (stays valid until mh_spawn_join returns)
 * @param fn the child
 * @param arg its argument
 * @return 0, or MH_EINVAL for a NULL argument (then nothing was spawned) */
MH_EXTERN int mh_spawn(mh_executor_t *ex, mh_spawn_t *t, mh_spawn_fn fn, void *arg);

/** Join a spawn: run the child here if nobody stole it, else help (run
 * other pending work) until its thief is done.
 * @param t a record passed to mh_spawn on this thread, not yet joined
 * @return the child's return value; MH_ECANCELED if a cancelling shutdown
 *         (MH_SHUTDOWN_CANCEL_FUTURES) began before it started; MH_EINVAL
 *         for NULL */
MH_EXTERN int mh_spawn_join(mh_spawn_t *t);

/** The body of mh_parallel_for: handle indices [lo, hi).
 * A non-zero return is the loop's result (the first failing chunk's). */
typedef int (*mh_range_fn)(size_t lo, size_t hi, void *ctx);

/** Run body over [begin, end) split into chunks of about `grain` indices,
 * by recursive halving on the executor's workers (the caller's worker
 * helps when called from a task).  Like OpenMP's `parallel for` or oneTBB's
 * parallel_for; Python has none (Executor.map over chunks comes closest).
 * @param ex a thread executor
 * @param begin first index
 * @param end one past the last index
 * @param grain the chunk size; 0 = automatic (about 8 chunks per worker)
 * @param body the body
 * @param ctx passed to body
 * @return 0, the first failing chunk's code, MH_EINVAL, MH_ESHUTDOWN,
 *         MH_ENOMEM, MH_ECANCELED (a cancelling shutdown of ex came while
 *         it ran: chunks not started then were skipped) */
MH_EXTERN int mh_parallel_for(mh_executor_t *ex, size_t begin, size_t end,
                              size_t grain, mh_range_fn body, void *ctx);

/** A leaf of mh_parallel_reduce: fold indices [lo, hi) into `acc` (which
 * starts as the identity).  Non-zero fails the reduction. */
typedef int (*mh_reduce_leaf_fn)(size_t lo, size_t hi, void *acc, void *ctx);

/** Combine two partial results: left = left (+) right. */
typedef void (*mh_reduce_join_fn)(void *left, const void *right, void *ctx);

/** The largest accumulator mh_parallel_reduce takes, in bytes. */
#define MH_REDUCE_MAX_ACC 256

/** Reduce [begin, end) by a fixed split tree: the range is halved until a
 * piece has at most `grain` indices, each piece is folded by `leaf` from the
 * identity, and pieces are joined pairwise in tree order.  The tree depends
 * only on the range and the grain, never on the worker count or on timing,
 * so a floating-point sum gives the same bits with 1 or 64 workers.
 * Python has none (functools.reduce is serial).
 * @param ex a thread executor
 * @param begin first index
 * @param end one past the last index
 * @param grain the largest piece; 0 = automatic, from the range alone
 *        (ceil(n / 4096), at least 1024)
 * @param acc_size bytes of an accumulator, 1..MH_REDUCE_MAX_ACC
 * @param identity the identity of join (acc_size bytes)
 * @param leaf the leaf fold
 * @param join the join
 * @param ctx passed to leaf and join
 * @param result receives the reduction (acc_size bytes)
 * @return 0, the first failing leaf's code, MH_EINVAL, MH_ESHUTDOWN,
 *         MH_ENOMEM, MH_ECANCELED (a cancelling shutdown of ex came while
 *         it ran: pieces not started then were skipped) */
MH_EXTERN int mh_parallel_reduce(mh_executor_t *ex, size_t begin, size_t end,
                                 size_t grain, size_t acc_size,
                                 const void *identity, mh_reduce_leaf_fn leaf,
                                 mh_reduce_join_fn join, void *ctx,
                                 void *result);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_EXECUTOR_H */
