/* SPDX-License-Identifier: MIT */
/* executor.c - the executor shell: options, the backend table, submit,
 * shutdown, and map / imap built from chunk futures.
 *
 * The shell owns mh_executor_t and nothing else: futures are future.c's
 * (future.h), running them is a backend's (executor_internal.h).  Every
 * public call checks its arguments here, then hands the work down.
 *
 * Shutdown.  `closed` is set first (submit checks it without a lock, and a
 * backend refuses late submits itself).  The first call tells the backend; a
 * later call tells it again only when it adds MH_SHUTDOWN_WAIT, and a second
 * waiting call waits for the first to end, as Python's does.
 *
 * Map.  mh_executor_map / imap cut the n items into chunks; each chunk is
 * one future (mh__task_t with count > 1).  At most `window` chunks (a few per
 * worker) are in flight: when one is consumed the next is submitted into its
 * slot, so memory stays bounded for any n.  A backend with a `map` op (the
 * process backend) may run a whole mh_executor_map itself instead.
 *
 * Invariants: `called` implies `first_flags` holds the first call's flags;
 * `waited` implies `waiting`.  In an iterator, ring[s] (when not NULL) is the
 * future of chunk slot_chunk[s], and chunks are submitted in order, so chunk
 * c lives in slot c % w in the ordered case.
 *
 * Who may touch what:
 *   I: set by mh_executor_new / mh_executor_imap before the record is
 *      handed out, read-only after.
 *   A: atomic.
 *   L: ex->slock.
 *   O: the iterator's owner (the thread that calls next / free).
 *
 * Lock order: slock -> the backend's locks (a non-waiting shutdown calls the
 * backend with slock held, and cancelled futures complete there).  A waiting
 * shutdown runs without slock.  No other lock is taken here.  This file calls
 * future.c and the backends, and neither calls back into it; the MPI backend
 * reaches this file only to register itself (backend_table, A).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor_ctx.h"
#include "executor_internal.h"
#include "future.h"
#include "future_alloc.h"
#include "internal.h"

/* ---- the executor record ----------------------------------------------- */

struct mh_executor_s {
  const mh__backend_ops_t *ops; /* I */
  void *impl;                   /* I: set by the backend's start */
  mh_executor_options_t opts;   /* I: workers resolved */
  _Atomic int closed;           /* A: a shutdown has begun (fast check) */
  pthread_mutex_t slock;        /* I */
  pthread_cond_t scond;         /* I; waited on under slock */
  /* L: whether the backend's shutdown was called, with which flags, whether
   * a waiting call is under way and whether it completed. */
  int called, waiting, waited;
  unsigned first_flags; /* L */
  /* I: the process that made the executor.  The process and MPI backends'
   * workers are other processes holding a copy of this record; their way
   * back to the executor does not exist, so a submit from one of them fails
   * with MH_EPERM instead of writing into a dead copy of the queues. */
  pid_t owner;
  /* X (under ax_mu): the list of live executors the exit handler waits for,
   * and whether the handler is shutting this one down now or did already. */
  mh_executor_t *ax_prev, *ax_next;
  int ax_busy, ax_done;
  mh__exctx_t *cx;      /* I: the context area and the ctx check */
  /* I: the thread backend.  Its workers share this record and it checks no
   * ctx pointer, so a submit skips the ctx and foreign-process checks and
   * calls mh__tp_submit directly: one predictable branch on the fast path
   * instead of three checks and an indirect call. */
  int direct;
};

/* MH_EPERM when called from a worker process of a process-based executor
 * (the thread backend's workers share the record, and pay no getpid). */
static int foreign_process(const mh_executor_t *ex) {
  return ex->ops != &mh__backend_threads && getpid() != ex->owner;
}

/* ---- executors at exit ---------------------------------------
 * Like Python's ThreadPoolExecutor and ProcessPoolExecutor, an executor
 * still alive when the program calls exit() (or returns from main) runs the
 * tasks it was given first: an atexit handler shuts each one down and waits
 * (MH_SHUTDOWN_WAIT), unless its `daemon` option says to abandon it.
 *   - Only executors made by this process: a fork child that exits inherits
 *     the list but not the threads, and must not wait for them.
 *   - An executor freed meanwhile (by another thread, or by an atexit
 *     handler of the program) leaves the list under ax_mu; one the handler
 *     is shutting down is freed only after that (ax_busy).
 *   - The handler never holds ax_mu while it waits: a task may make or free
 *     executors.  ax_mu is taken around fork (atfork) so a child finds it
 *     free.
 * Lock order: ax_mu is taken alone (never with slock). */
static pthread_mutex_t ax_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ax_cv = PTHREAD_COND_INITIALIZER;
static mh_executor_t *ax_head; /* X */
static pthread_once_t ax_once = PTHREAD_ONCE_INIT;

static void ax_prepare(void) { pthread_mutex_lock(&ax_mu); }
static void ax_release(void) { pthread_mutex_unlock(&ax_mu); }

static void ax_at_exit(void) {
  pid_t me = getpid();
  pthread_mutex_lock(&ax_mu);
  for (;;) {
    mh_executor_t *ex = ax_head;
    while (ex && (ex->owner != me || ex->ax_done || ex->opts.daemon))
      ex = ex->ax_next;
    if (!ex) break;
    ex->ax_done = 1;
    ex->ax_busy = 1;
    pthread_mutex_unlock(&ax_mu);
    mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT);
    pthread_mutex_lock(&ax_mu);
    ex->ax_busy = 0;
    pthread_cond_broadcast(&ax_cv);
  }
  pthread_mutex_unlock(&ax_mu);
}

static void ax_setup(void) {
  pthread_atfork(ax_prepare, ax_release, ax_release);
  atexit(ax_at_exit);
}

static void ax_add(mh_executor_t *ex) {
  pthread_once(&ax_once, ax_setup);
  pthread_mutex_lock(&ax_mu);
  ex->ax_prev = NULL;
  ex->ax_next = ax_head;
  if (ax_head) ax_head->ax_prev = ex;
  ax_head = ex;
  pthread_mutex_unlock(&ax_mu);
}

static void ax_remove(mh_executor_t *ex) {
  pthread_mutex_lock(&ax_mu);
  while (ex->ax_busy) pthread_cond_wait(&ax_cv, &ax_mu);
  if (ex->ax_prev)
    ex->ax_prev->ax_next = ex->ax_next;
  else if (ax_head == ex)
    ax_head = ex->ax_next;
  if (ex->ax_next) ex->ax_next->ax_prev = ex->ax_prev;
  ex->ax_prev = ex->ax_next = NULL;
  pthread_mutex_unlock(&ax_mu);
}
/* ---- end of executors at exit ---- */

/* ---- the backend table ------------------------------------------------- */

/* The backends.  Threads and processes are always part of the library and
 * sit in the table from the start.  MPI lives in the optional manyhands_mpi
 * library, which is built on this one: mh_mpi_init registers its backend
 * here (mh__executor_register_backend), so this file names no symbol of it.
 * A slot nobody registered gives MH_ENOTSUP from mh_executor_new: a program
 * built without MPI, or one that has not called mh_mpi_init yet, is told so
 * plainly.  Slots are atomic: a registration may come from one thread while
 * another makes an executor. */
static _Atomic(const mh__backend_ops_t *) backend_table[MH_BACKEND_MPI + 1] = {
    [MH_BACKEND_THREADS] = &mh__backend_threads,
    [MH_BACKEND_PROCESSES] = &mh__backend_processes,
};

int mh__executor_register_backend(mh_backend_t b, const mh__backend_ops_t *ops) {
  /* The built-in slots are not replaceable: only MPI is registered. */
  if (b != MH_BACKEND_MPI || !ops) return MH_EINVAL;
  atomic_store(&backend_table[b], ops);
  return 0;
}

static const mh__backend_ops_t *backend_ops(mh_backend_t b) {
  if ((unsigned)b > (unsigned)MH_BACKEND_MPI) return NULL;
  return atomic_load(&backend_table[b]);
}

/* ---- the shell: life, submit, shutdown --------------------------------- */

void mh__executor_set_impl(mh_executor_t *ex, void *impl) { ex->impl = impl; }
void *mh__executor_impl(const mh_executor_t *ex) { return ex->impl; }

void mh_executor_options_init(mh_executor_options_t *opts) {
  if (!opts) return;
  memset(opts, 0, sizeof *opts);
  opts->backend = MH_BACKEND_THREADS;
  opts->workers = 0;
  opts->grace = 1.0;
}

int mh_executor_new(mh_executor_t **out, const mh_executor_options_t *opts) {
  mh_executor_options_t o;
  if (!out) return MH_EINVAL;
  if (opts) {
    o = *opts;
  } else {
    mh_executor_options_init(&o);
  }
  if (o.flags || o.workers < 0 || o.workers > 4096 || o.retries < 0 ||
      o.max_tasks_per_child < 0 || o.grace != o.grace ||
      !(o.task_timeout >= 0) ||
      (o.task_timeout > 0 && o.backend != MH_BACKEND_PROCESSES))
    return MH_EINVAL;
  if ((unsigned)o.backend > (unsigned)MH_BACKEND_MPI) return MH_EINVAL;
  const mh__backend_ops_t *ops = backend_ops(o.backend);
  if (!ops) return MH_ENOTSUP;
  if (o.workers == 0) o.workers = mh_cpu_count();
  if (!(o.grace > 0)) o.grace = 1.0;
  mh_executor_t *ex = mh__calloc(1, sizeof *ex);
  if (!ex) return MH_ENOMEM;
  ex->ops = ops;
  ex->opts = o;
  ex->owner = getpid();
  ex->direct = ops == &mh__backend_threads;
  atomic_init(&ex->closed, 0);
  int rc = -pthread_mutex_init(&ex->slock, NULL);
  if (rc) goto fail_ex;
  rc = mh__cond_init(&ex->scond, false);
  if (rc) goto fail_mutex;
  /* Before the backend forks anything: the area must be inherited. */
  rc = mh__exctx_new(&ex->cx, o.backend == MH_BACKEND_PROCESSES);
  if (rc) goto fail_cond;
  rc = ops->start(ex, &ex->opts);
  if (rc) goto fail_cx;
  ax_add(ex);
  *out = ex;
  return 0;
fail_cx:
  mh__exctx_free(ex->cx);
fail_cond:
  pthread_cond_destroy(&ex->scond);
fail_mutex:
  pthread_mutex_destroy(&ex->slock);
fail_ex:
  mh__free(ex);
  return rc == -ENOMEM ? MH_ENOMEM : rc;
}

int mh_executor_workers(const mh_executor_t *ex) {
  return ex ? ex->opts.workers : MH_EINVAL;
}

int mh_executor_backend(const mh_executor_t *ex) {
  return ex ? (int)ex->opts.backend : MH_EINVAL;
}

static inline int submit_task(mh_executor_t *ex, const mh__task_t *t,
                              mh_future_t **fut);

/* ---- per-call time limits ---- */
_Thread_local double mh__call_timeout;

int mh_executor_submit_timeout(mh_executor_t *ex, mh_task_fn fn,
                               const void *in, size_t in_size, void *out,
                               size_t out_size, void *ctx, double timeout,
                               mh_future_t **fut) {
  if (!ex || !fn || !fut || (!in && in_size) || (!out && out_size) ||
      timeout != timeout ||
      (timeout > 0 && ex->opts.backend != MH_BACKEND_PROCESSES))
    return MH_EINVAL;
  mh__task_t t = {fn, ctx, in, in_size, out, out_size, 1, NULL, timeout};
  return submit_task(ex, &t, fut);
}

int mh_executor_map_timeout(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                            const void *in, size_t in_size, void *out,
                            size_t out_size, size_t n, size_t chunksize,
                            int *status, double timeout) {
  if (!ex || timeout != timeout ||
      (timeout > 0 && ex->opts.backend != MH_BACKEND_PROCESSES))
    return MH_EINVAL;
  double saved = mh__call_timeout;
  mh__call_timeout = timeout;
  int rc = mh_executor_map(ex, fn, ctx, in, in_size, out, out_size, n,
                           chunksize, status);
  mh__call_timeout = saved;
  return rc;
}
/* ---- end of per-call time limits ---- */

int mh_executor_submit(mh_executor_t *ex, mh_task_fn fn, const void *in,
                       size_t in_size, void *out, size_t out_size, void *ctx,
                       mh_future_t **fut) {
  if (!ex || !fn || !fut || (!in && in_size) || (!out && out_size))
    return MH_EINVAL;
  if (!ex->direct && mh__exctx_check(ex->cx, ctx)) return MH_EINVAL;
  mh__task_t t = {fn, ctx, in, in_size, out, out_size, 1, NULL, 0};
  return submit_task(ex, &t, fut);
}

int mh_executor_shutdown(mh_executor_t *ex, unsigned flags) {
  if (!ex || (flags & ~(MH_SHUTDOWN_WAIT | MH_SHUTDOWN_CANCEL_FUTURES |
                        MH_SHUTDOWN_TERMINATE)))
    return MH_EINVAL;
  /* ---- shutdown: terminating ---- */
  if (flags & MH_SHUTDOWN_TERMINATE) flags |= MH_SHUTDOWN_CANCEL_FUTURES;
  atomic_store(&ex->closed, 1);
  int rc = 0;
  pthread_mutex_lock(&ex->slock);
  if (ex->called && (flags & MH_SHUTDOWN_TERMINATE) &&
      !(ex->first_flags & MH_SHUTDOWN_TERMINATE)) {
    /* Terminating is the one thing a later call adds to a shutdown under
     * way, even while another thread waits in it (Ctrl-C escalates). */
    ex->first_flags |= MH_SHUTDOWN_TERMINATE | MH_SHUTDOWN_CANCEL_FUTURES;
    ex->ops->shutdown(ex, MH_SHUTDOWN_TERMINATE | MH_SHUTDOWN_CANCEL_FUTURES);
  }
  /* ---- end of terminating ---- */
  if (!ex->called) {
    ex->called = 1;
    ex->first_flags = flags;
    if (!(flags & MH_SHUTDOWN_WAIT)) {
      /* A non-waiting shutdown is quick; holding slock orders it before any
       * waiting call. */
      rc = ex->ops->shutdown(ex, flags);
      pthread_mutex_unlock(&ex->slock);
      return rc;
    }
  } else if (!(flags & MH_SHUTDOWN_WAIT)) {
    /* The backend is told once more only when a call adds WAIT. */
    pthread_mutex_unlock(&ex->slock);
    return 0;
  } else if (ex->waiting) {
    /* Another thread is in the waiting shutdown: wait for it to end, as
     * Python's second shutdown(wait=True) does. */
    while (!ex->waited) pthread_cond_wait(&ex->scond, &ex->slock);
    pthread_mutex_unlock(&ex->slock);
    return 0;
  } else {
    flags |= ex->first_flags & (MH_SHUTDOWN_CANCEL_FUTURES | MH_SHUTDOWN_TERMINATE);
  }
  ex->waiting = 1;
  pthread_mutex_unlock(&ex->slock);
  /* The waiting call runs without slock, so a task may itself call
   * mh_executor_shutdown(ex, 0) while we join its worker. */
  rc = ex->ops->shutdown(ex, flags);
  pthread_mutex_lock(&ex->slock);
  ex->waited = 1;
  pthread_cond_broadcast(&ex->scond);
  pthread_mutex_unlock(&ex->slock);
  return rc;
}

void mh_executor_free(mh_executor_t *ex) {
  if (!ex) return;
  mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT);
  ax_remove(ex);
  ex->ops->destroy(ex);
  pthread_cond_destroy(&ex->scond);
  pthread_mutex_destroy(&ex->slock);
  mh__exctx_free(ex->cx);
  mh__free(ex);
}

/* ---- the context (executor_ctx.c) ------------------------------------- */

int mh_executor_set_context(mh_executor_t *ex, const void *data, size_t size) {
  if (!ex) return MH_EINVAL;
  return mh__exctx_set(ex->cx, data, size);
}

void *mh_executor_context(const mh_executor_t *ex) {
  return ex ? mh__exctx_ptr(ex->cx) : NULL;
}

mh__exctx_t *mh__executor_ctx(const mh_executor_t *ex) { return ex->cx; }

size_t mh_executor_context_size(const mh_executor_t *ex) {
  return ex ? mh__exctx_size(ex->cx) : 0;
}

/* ---- map and imap ------------------------------------------------------ */

/* Pool.map's rule: about four chunks per worker. */
static size_t auto_chunksize(size_t n, int workers) {
  size_t per = (size_t)workers * 4;
  size_t c = n / per + (n % per != 0);
  return c ? c : 1;
}

/* Chunks in flight at once: a few per worker. */
static size_t window_of(const mh_executor_t *ex, size_t nchunks) {
  size_t w = (size_t)ex->opts.workers * 4;
  return w < nchunks ? w : nchunks;
}

static int map_check(const mh_executor_t *ex, mh_task_fn fn, const void *in,
                     size_t in_size, const void *out, size_t out_size,
                     size_t n) {
  if (!ex || !fn) return MH_EINVAL;
  if (n && ((!in && in_size) || (!out && out_size))) return MH_EINVAL;
  if (in_size && n > SIZE_MAX / in_size) return MH_EINVAL;
  if (out_size && n > SIZE_MAX / out_size) return MH_EINVAL;
  if (n > SIZE_MAX / 2) return MH_EINVAL;
  if (foreign_process(ex)) return MH_EPERM;
  return 0;
}

/* The task of chunk c: items [c*chunk, min(n, (c+1)*chunk)). */
static mh__task_t chunk_task(mh_task_fn fn, void *ctx, const void *in,
                             size_t in_size, void *out, size_t out_size,
                             size_t n, size_t chunk, size_t c, int *statuses) {
  size_t lo = c * chunk, cnt = n - lo < chunk ? n - lo : chunk;
  mh__task_t t = {fn,       ctx, in ? (const char *)in + lo * in_size : NULL,
                  in_size,  out ? (char *)out + lo * out_size : NULL,
                  out_size, cnt, statuses, mh__call_timeout};
  return t;
}

/* Inlined in every caller, so that the task a caller builds on its stack
 * is written straight into the new future (no copy, no call). */
static inline __attribute__((always_inline)) int
submit_task(mh_executor_t *ex, const mh__task_t *t, mh_future_t **fut) {
  if (atomic_load_explicit(&ex->closed, memory_order_relaxed))
    return MH_ESHUTDOWN;
  if (!ex->direct && foreign_process(ex)) return MH_EPERM;
  mh_future_t *f = mh__future_make(t); /* inline: the hot path */
  if (!f) return MH_ENOMEM;
  int rc = ex->direct ? mh__tp_submit(ex->impl, f) : ex->ops->submit(ex, f);
  if (rc) {
    mh_future_release(f);
    return rc;
  }
  *fut = f;
  return 0;
}

static void fill_status(int *status, size_t lo, size_t cnt, int code) {
  if (status)
    for (size_t i = 0; i < cnt; i++) status[lo + i] = code;
}

int mh_executor_map(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                    const void *in, size_t in_size, void *out,
                    size_t out_size, size_t n, size_t chunksize, int *status) {
  int rc = map_check(ex, fn, in, in_size, out, out_size, n);
  if (rc) return rc;
  if (mh__exctx_check(ex->cx, ctx)) return MH_EINVAL;
  if (n == 0) return 0;
  if (ex->ops->map) {
    /* The backend may run the whole map itself (the process backend's
     * claim-based map); it says MH__MAP_GENERIC when it does not. */
    if (atomic_load_explicit(&ex->closed, memory_order_relaxed))
      return MH_ESHUTDOWN;
    rc = ex->ops->map(ex, fn, ctx, in, in_size, out, out_size, n, chunksize,
                      status);
    if (rc != MH__MAP_GENERIC) return rc;
  }
  size_t chunk = chunksize ? chunksize : auto_chunksize(n, ex->opts.workers);
  size_t nchunks = n / chunk + (n % chunk != 0);
  size_t w = window_of(ex, nchunks);
  mh_future_t **ring = mh__calloc(w, sizeof *ring);
  if (!ring) return MH_ENOMEM;
  int first = 0, submit_rc = 0;
  size_t next = 0; /* next chunk to submit */
  for (size_t c = 0; c < nchunks; c++) {
    /* Keep the window full: chunks c .. c+w-1 are submitted. */
    while (!submit_rc && next < nchunks && next < c + w) {
      mh__task_t t = chunk_task(fn, ctx, in, in_size, out, out_size, n, chunk,
                                next, status ? status + next * chunk : NULL);
      submit_rc = submit_task(ex, &t, &ring[next % w]);
      if (!submit_rc) next++;
    }
    size_t lo = c * chunk, cnt = n - lo < chunk ? n - lo : chunk;
    int code;
    if (c >= next) {
      code = submit_rc;
      fill_status(status, lo, cnt, code);
    } else {
      mh_future_t *f = ring[c % w];
      code = mh_future_result(f, MH_FOREVER);
      /* A backend writes each item's status itself, also when a worker died
       * (the process backend fails only the item that worker was running);
       * only a chunk cancelled before it ran has none. */
      if (mh_future_cancelled(f)) fill_status(status, lo, cnt, code);
      mh_future_release(f);
      ring[c % w] = NULL;
    }
    if (code && !first) first = code;
  }
  mh__free(ring);
  return first;
}


/* One thread uses an iterator; the tasks it submitted write only into the
 * caller's buffers and into st[], which is read after their future is done. */
struct mh_map_iter_s {
  mh_executor_t *ex; /* I */
  mh_task_fn fn;     /* I */
  void *ctx;         /* I */
  const void *in;    /* I */
  void *out;         /* I */
  size_t in_size, out_size, n, chunk, nchunks, w; /* I */
  unsigned flags;                                 /* I */
  mh_future_t **ring; /* O: slot s holds chunk slot_chunk[s] */
  size_t *slot_chunk; /* O */
  int *st;            /* O: w * chunk statuses, written by the chunks' tasks */
  mh__cq_t *cq;       /* I: unordered: ready slots */
  size_t next_submit; /* O: chunks submitted (or failed to submit) so far */
  int submit_rc;      /* O */
  size_t yielded;     /* O */
  /* O: the chunk being yielded. */
  int have_cur;
  size_t cur_slot, cur_item, cur_cnt;
  int cur_all; /* O: when != 0, every item of the chunk gets this code */
};

/* Submit the next chunk into slot s.  On failure the slot is marked empty
 * and its chunk yields the error for each item. */
static void iter_fill(mh_map_iter_t *it, size_t s) {
  size_t c = it->next_submit++;
  it->slot_chunk[s] = c;
  it->ring[s] = NULL;
  if (!it->submit_rc) {
    mh__task_t t = chunk_task(it->fn, it->ctx, it->in, it->in_size, it->out,
                              it->out_size, it->n, it->chunk, c,
                              it->st + s * it->chunk);
    it->submit_rc = submit_task(it->ex, &t, &it->ring[s]);
  }
  if (it->cq) {
    if (it->ring[s]) {
      mh__cq_arm(it->cq, s, it->ring[s]);
    } else {
      mh__cq_push(it->cq, s);
    }
  }
}

int mh_executor_imap(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                     const void *in, size_t in_size, void *out,
                     size_t out_size, size_t n, size_t chunksize,
                     unsigned flags, mh_map_iter_t **out_it) {
  int rc = map_check(ex, fn, in, in_size, out, out_size, n);
  if (rc || !out_it || (flags & ~MH_MAP_UNORDERED)) return MH_EINVAL;
  if (mh__exctx_check(ex->cx, ctx)) return MH_EINVAL;
  if (atomic_load_explicit(&ex->closed, memory_order_relaxed))
    return MH_ESHUTDOWN;
  /* Items are yielded one by one, so chunks stay small by default: the
   * statuses of the window's chunks are buffered. */
  size_t chunk = chunksize ? chunksize : auto_chunksize(n, ex->opts.workers);
  if (!chunksize && chunk > 256) chunk = 256;
  size_t nchunks = n ? n / chunk + (n % chunk != 0) : 0;
  size_t w = window_of(ex, nchunks);
  if (w == 0) w = 1;
  if (chunk > SIZE_MAX / sizeof(int) / w) return MH_ENOMEM;
  mh_map_iter_t *it = mh__calloc(1, sizeof *it);
  if (!it) return MH_ENOMEM;
  it->ex = ex;
  it->fn = fn;
  it->ctx = ctx;
  it->in = in;
  it->out = out;
  it->in_size = in_size;
  it->out_size = out_size;
  it->n = n;
  it->chunk = chunk;
  it->nchunks = nchunks;
  it->w = w;
  it->flags = flags;
  it->ring = mh__calloc(w, sizeof *it->ring);
  it->slot_chunk = mh__calloc(w, sizeof *it->slot_chunk);
  it->st = mh__malloc(w * chunk * sizeof *it->st);
  if (!it->ring || !it->slot_chunk || !it->st) goto nomem;
  if ((flags & MH_MAP_UNORDERED) && mh__cq_new(&it->cq, w)) goto nomem;
  for (size_t s = 0; s < w && s < nchunks; s++) iter_fill(it, s);
  if (it->submit_rc) {
    /* Nothing is half-started: undo what was submitted and report. */
    rc = it->submit_rc;
    mh_map_iter_free(it);
    return rc;
  }
  *out_it = it;
  return 0;
nomem:
  mh__free(it->ring);
  mh__free(it->slot_chunk);
  mh__free(it->st);
  mh__free(it);
  return MH_ENOMEM;
}

int mh_map_iter_next(mh_map_iter_t *it, double timeout, size_t *index,
                     int *status) {
  mh__deadline_t dl;
  if (!it || !index || !status || mh__deadline_init(&dl, timeout))
    return MH_EINVAL;
  if (it->yielded == it->n) return MH_EEOF;
  if (!it->have_cur) {
    size_t s;
    if (it->cq) {
      int rc = mh__cq_pop(it->cq, &dl, &s);
      if (rc) return rc;
    } else {
      /* In order: chunk number yielded/chunk lives in slot (that % w). */
      s = (it->yielded / it->chunk) % it->w;
      if (it->ring[s]) {
        int rc = mh__future_wait_dl(it->ring[s], &dl);
        if (rc) return rc;
      }
    }
    mh_future_t *f = it->ring[s];
    size_t c = it->slot_chunk[s];
    it->cur_slot = s;
    it->cur_item = 0;
    it->cur_cnt = it->n - c * it->chunk < it->chunk ? it->n - c * it->chunk
                                                    : it->chunk;
    it->cur_all = 0;
    if (!f) {
      it->cur_all = it->submit_rc;
    } else {
      int code = mh_future_result(f, 0);
      if (mh_future_cancelled(f)) it->cur_all = code; /* see map */
    }
    it->have_cur = 1;
  }
  size_t s = it->cur_slot;
  size_t k = it->cur_item++;
  *index = it->slot_chunk[s] * it->chunk + k;
  *status = it->cur_all ? it->cur_all : it->st[s * it->chunk + k];
  it->yielded++;
  if (it->cur_item == it->cur_cnt) {
    it->have_cur = 0;
    mh_future_release(it->ring[s]);
    it->ring[s] = NULL;
    if (it->next_submit < it->nchunks) iter_fill(it, s);
  }
  return 0;
}

void mh_map_iter_free(mh_map_iter_t *it) {
  if (!it) return;
  /* Cancel what has not started first, then wait for the rest, so that no
   * task touches the caller's buffers after this returns. */
  for (size_t s = 0; s < it->w; s++)
    if (it->ring[s]) (void)mh_future_cancel(it->ring[s]);
  for (size_t s = 0; s < it->w; s++) {
    if (!it->ring[s]) continue;
    (void)mh_future_wait(it->ring[s], MH_FOREVER);
  }
  if (it->cq) {
    for (size_t s = 0; s < it->w; s++) mh__cq_disarm(it->cq, s);
    mh__cq_unref(it->cq);
  }
  for (size_t s = 0; s < it->w; s++) mh_future_release(it->ring[s]);
  mh__free(it->ring);
  mh__free(it->slot_chunk);
  mh__free(it->st);
  mh__free(it);
}

