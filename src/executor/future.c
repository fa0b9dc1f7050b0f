/* SPDX-License-Identifier: MIT */
/* future.c - the future's state machine: the state word, callbacks,
 * completion queues, waiting on one future, wait and as_completed.
 *
 * The record and its states are described in future.h.  Every transition is
 * one compare-and-swap that keeps the flags, so the completing thread learns
 * in the same atomic step whether anybody has to be woken; a future nobody
 * waits on completes without a system call.
 *
 * Callbacks.  The list `cbs` is guarded by one of MH__STRIPES mutexes chosen
 * by the future's address (a future is too small for its own).  Adding sets
 * F_CBS with a CAS that fails once the future is done, while holding the
 * stripe; completing takes the stripe after its CAS and detaches the whole
 * list.  So a callback is either run by the completing thread or, when the
 * future is already done, at once by the adder: exactly once.  They run
 * right after the state CAS that makes the future done, so (as in Python,
 * whose set_result notifies waiters before invoking callbacks) a waiter that
 * sees the done state may return while callbacks are still running; the
 * futex wake of sleeping waiters comes after them.
 *
 * Waiting on many futures (wait, as_completed, the shell's unordered imap)
 * uses a completion queue `cq`: one internal callback node per future that,
 * when fired, appends its index to the cq's ready ring under the cq's mutex
 * and signals its condition variable.  A cq is reference counted (its owner
 * plus each armed node), because a node detached by a completing thread may
 * fire after the owner has given up on it; the last reference frees it.
 *
 * Invariants: a cq node is on at most one future's list, and then armed[i]
 * is 1 and it holds one reference on the cq; the ready ring holds each index
 * at most once (count <= cap).
 *
 * Who may touch what (tags of struct mh__cq; the future's own are in
 * future.h):
 *   I: set by mh__cq_new, read-only after.
 *   A: atomic.
 *   Q: cq->lock.
 *   O: the cq's owner thread only (the one that arms, pops and disarms).
 *
 * Lock order: a stripe mutex is held while taking nothing else; a cq mutex is
 * taken only by a node firing (no stripe held then) and by the cq's owner.
 * No lock of this file is held while a callback runs.  Backends' locks are
 * never held when futures complete (see executor_threads.c).  This file
 * calls the allocator (future_alloc.h) and spin.h, never the shell (executor.c).
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "future.h"
#include "future_alloc.h"
#include "internal.h"
#include "spin.h"

/* ---- the state word ---------------------------------------------------- */

static inline uint32_t st_load(const mh_future_t *f, memory_order mo) {
  return (uint32_t)atomic_load_explicit(&f->word, mo);
}

/* A compare-and-swap of the state half from *s to ns, keeping the
 * reference count whatever it is.  On failure *s is the state now. */
static inline int st_cas(mh_future_t *f, uint32_t *s, uint32_t ns) {
  uint64_t w = atomic_load_explicit(&f->word, memory_order_acquire);
  for (;;) {
    if ((uint32_t)w != *s) {
      *s = (uint32_t)w;
      return 0;
    }
    if (atomic_compare_exchange_weak_explicit(
            &f->word, &w, (w & ~(uint64_t)UINT32_MAX) | ns,
            memory_order_acq_rel, memory_order_acquire))
      return 1;
  }
}

/* The address of the state half, for the futex calls. */
static inline void *st_addr(mh_future_t *f) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return (char *)(uintptr_t)&f->word + 4;
#else
  return (void *)(uintptr_t)&f->word;
#endif
}

/* ---- callback stripes -------------------------------------------------- */

#define MH__STRIPES 64
static pthread_mutex_t stripes[MH__STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void) {
  for (int i = 0; i < MH__STRIPES; i++) pthread_mutex_init(&stripes[i], NULL);
}

static pthread_mutex_t *stripe_of(const mh_future_t *f) {
  uintptr_t a = (uintptr_t)f;
  pthread_once(&stripes_once, stripes_init);
  return &stripes[(a >> 7 ^ a >> 13) % MH__STRIPES];
}

/* ---- completion queues ------------------------------------------------- */

struct mh__cq {
  pthread_mutex_t lock; /* I */
  pthread_cond_t cond;  /* I */
  _Atomic size_t refs;  /* A: the owner + every armed node */
  size_t cap;           /* I: nodes and ready-ring slots */
  size_t head, count;   /* Q: the ready ring's window */
  int sleeping;         /* Q: the owner waits on cond */
  size_t *ready;        /* I; the slots: Q */
  mh__cb_t *nodes;      /* I; node i's `next`: the stripe of futs[i] */
  unsigned char *armed; /* O: node is (or was) on a list */
  mh_future_t **futs;   /* O: the future each node is armed on */
};

void mh__cq_unref(mh__cq_t *cq) {
  if (atomic_fetch_sub_explicit(&cq->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&cq->lock);
  pthread_cond_destroy(&cq->cond);
  mh__free(cq->ready);
  mh__free(cq->nodes);
  mh__free(cq->armed);
  mh__free(cq->futs);
  mh__free(cq);
}

int mh__cq_new(mh__cq_t **out, size_t cap) {
  mh__cq_t *cq = mh__calloc(1, sizeof *cq);
  if (!cq) return MH_ENOMEM;
  cq->cap = cap ? cap : 1;
  cq->ready = mh__malloc(cq->cap * sizeof *cq->ready);
  cq->nodes = mh__calloc(cq->cap, sizeof *cq->nodes);
  cq->armed = mh__calloc(cq->cap, 1);
  cq->futs = mh__calloc(cq->cap, sizeof *cq->futs);
  if (!cq->ready || !cq->nodes || !cq->armed || !cq->futs) goto fail;
  if (pthread_mutex_init(&cq->lock, NULL)) goto fail;
  if (mh__cond_init(&cq->cond, false)) {
    pthread_mutex_destroy(&cq->lock);
    goto fail;
  }
  for (size_t i = 0; i < cq->cap; i++) {
    cq->nodes[i].cq = cq;
    cq->nodes[i].u.index = i;
  }
  atomic_init(&cq->refs, 1);
  *out = cq;
  return 0;
fail:
  mh__free(cq->ready);
  mh__free(cq->nodes);
  mh__free(cq->armed);
  mh__free(cq->futs);
  mh__free(cq);
  return MH_ENOMEM;
}

void mh__cq_push(mh__cq_t *cq, size_t index) {
  pthread_mutex_lock(&cq->lock);
  cq->ready[(cq->head + cq->count) % cq->cap] = index;
  cq->count++;
  if (cq->sleeping) pthread_cond_signal(&cq->cond);
  pthread_mutex_unlock(&cq->lock);
}

static int cq_pop_plain(mh__cq_t *cq, const mh__deadline_t *dl, size_t *index);
static int dl_passed(const mh__deadline_t *dl);
static void nap_deadline(const mh__deadline_t *dl, mh__deadline_t *out);

/* Pop a ready index, waiting until the deadline.  0 or MH_ETIMEDOUT.  In a
 * worker thread the wait helps (runs other work) as mh__future_wait_dl does,
 * so mh_futures_wait and as_completed inside a task never deadlock. */
int mh__cq_pop(mh__cq_t *cq, const mh__deadline_t *dl, size_t *index) {
  mh__helper_fn help = mh__helper;
  if (!help || dl->kind == MH__DL_NOW) return cq_pop_plain(cq, dl, index);
  static const mh__deadline_t now = {MH__DL_NOW, {0, 0}};
  const mh__spin_policy_t pol = MH__SPIN_HELP_WAIT;
  mh__spin_t sp = MH__SPIN_INIT;
  for (;;) {
    if (!cq_pop_plain(cq, &now, index)) return 0;
    if (help()) {
      mh__spin_reset(&sp);
      continue;
    }
    if (mh__spin_again(&sp, &pol)) continue;
    if (dl_passed(dl)) return cq_pop_plain(cq, &now, index);
    mh__deadline_t nap;
    nap_deadline(dl, &nap);
    if (!cq_pop_plain(cq, &nap, index)) return 0;
    mh__spin_reset(&sp);
  }
}

static int cq_pop_plain(mh__cq_t *cq, const mh__deadline_t *dl, size_t *index) {
  int rc = 0;
  pthread_mutex_lock(&cq->lock);
  while (cq->count == 0) {
    cq->sleeping = 1;
    rc = mh__cond_wait(&cq->cond, &cq->lock, dl);
    cq->sleeping = 0;
    if (rc == MH_ETIMEDOUT && cq->count == 0) break;
    rc = 0;
  }
  if (cq->count) {
    *index = cq->ready[cq->head];
    cq->head = (cq->head + 1) % cq->cap;
    cq->count--;
    rc = 0;
    /* Its node fired (off every list) or was pushed without being armed:
     * nothing is left to disarm. */
    cq->armed[*index] = 0;
  }
  pthread_mutex_unlock(&cq->lock);
  return rc;
}

static void cq_fire(mh__cb_t *node) {
  mh__cq_t *cq = node->cq;
  mh__cq_push(cq, node->u.index);
  mh__cq_unref(cq);
}

/* Arm node `index` of cq on f: when f completes, index is pushed.  If f is
 * already done it is pushed now. */
void mh__cq_arm(mh__cq_t *cq, size_t index, mh_future_t *f) {
  pthread_mutex_t *m = stripe_of(f);
  mh__cb_t *node = &cq->nodes[index];
  cq->futs[index] = f;
  pthread_mutex_lock(m);
  uint32_t s = st_load(f, memory_order_acquire);
  for (;;) {
    if (IS_DONE(s)) {
      pthread_mutex_unlock(m);
      cq->armed[index] = 0;
      mh__cq_push(cq, index);
      return;
    }
    if (st_cas(f, &s, s | F_CBS)) break;
  }
  atomic_fetch_add_explicit(&cq->refs, 1, memory_order_relaxed);
  node->next = f->cbs;
  f->cbs = node;
  cq->armed[index] = 1;
  pthread_mutex_unlock(m);
}

/* Take node `index` off its future's list if it is still there.  If the
 * completing thread has already detached it, it fires (or fired) and drops
 * its own reference; either way the owner may forget it. */
void mh__cq_disarm(mh__cq_t *cq, size_t index) {
  if (!cq->armed[index]) return;
  mh_future_t *f = cq->futs[index];
  mh__cb_t *node = &cq->nodes[index];
  pthread_mutex_t *m = stripe_of(f);
  int found = 0;
  pthread_mutex_lock(m);
  for (mh__cb_t **p = &f->cbs; *p; p = &(*p)->next) {
    if (*p == node) {
      *p = node->next;
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(m);
  cq->armed[index] = 0;
  if (found) mh__cq_unref(cq);
}

/* ---- futures: life, references, transitions ---------------------------- */

void mh_future_retain(mh_future_t *f) {
  if (f) atomic_fetch_add_explicit(&f->word, REF_ONE, memory_order_relaxed);
}

void mh_future_release(mh_future_t *f) {
  if (!f) return;
  uint64_t w = atomic_fetch_sub_explicit(&f->word, REF_ONE, memory_order_acq_rel);
  if (REFS(w) != 1) return;
  /* Only user callbacks of a future that never completed can be left (it
   * was never submitted); completion queue nodes hold no reference to it
   * but their owners disarm them before releasing. */
  mh__cb_t *c = f->cbs;
  while (c) {
    mh__cb_t *next = c->next;
    if (!c->cq) mh__free(c);
    c = next;
  }
  mh__fa_release(f, (uint32_t)w);
}

const mh__task_t *mh__future_task(const mh_future_t *f) { return &f->task; }

mh_future_t **mh__future_link(mh_future_t *f) { return &f->link; }

/* Move f from state `from` to `to` keeping the flags; returns the old word,
 * or UINT32_MAX if f was not in `from`. */
static uint32_t transition(mh_future_t *f, uint32_t from, uint32_t to,
                           uint32_t add) {
  uint32_t s = st_load(f, memory_order_relaxed);
  do {
    if ((s & S_MASK) != from) return UINT32_MAX;
  } while (!st_cas(f, &s, (s & ~(uint32_t)S_MASK) | to | add));
  return s;
}

/* After the CAS that made f done: run its callbacks, then wake waiters. */
static void completed(mh_future_t *f, uint32_t old) {
  if (old & F_CBS) {
    pthread_mutex_t *m = stripe_of(f);
    pthread_mutex_lock(m);
    mh__cb_t *list = f->cbs;
    f->cbs = NULL;
    pthread_mutex_unlock(m);
    /* The list was built by pushing at the front; run in the order added. */
    mh__cb_t *rev = NULL;
    while (list) {
      mh__cb_t *next = list->next;
      list->next = rev;
      rev = list;
      list = next;
    }
    while (rev) {
      mh__cb_t *next = rev->next;
      if (rev->cq) {
        cq_fire(rev);
      } else {
        rev->u.user.fn(f, rev->u.user.arg);
        mh__free(rev);
      }
      rev = next;
    }
  }
  if (old & F_WAITERS) mh__futex_wake(st_addr(f), INT_MAX, MH__FUTEX_PRIVATE);
}

int mh__future_set_running(mh_future_t *f) {
  return transition(f, S_PENDING, S_RUNNING, 0) != UINT32_MAX;
}

void mh__future_set_pending(mh_future_t *f) {
  (void)transition(f, S_RUNNING, S_PENDING, 0);
}

void mh__future_finish(mh_future_t *f, int code) {
  f->code = code;
  uint32_t old = transition(f, S_RUNNING, S_FINISHED, 0);
  if (old != UINT32_MAX) completed(f, old);
}

void mh__future_finish_release(mh_future_t *f, int code) {
  f->code = code;
  uint64_t w = atomic_load_explicit(&f->word, memory_order_relaxed);
  for (;;) {
    uint32_t s = (uint32_t)w;
    /* With waiters or callbacks f must stay alive through completed(), and
     * with no other reference this one is the last: the long way. */
    if ((s & S_MASK) != S_RUNNING || (s & (F_WAITERS | F_CBS)) ||
        REFS(w) < 2) {
      mh__future_finish(f, code);
      mh_future_release(f);
      return;
    }
    uint64_t nw = w - REF_ONE - S_RUNNING + S_FINISHED;
    if (atomic_compare_exchange_weak_explicit(&f->word, &w, nw,
                                              memory_order_acq_rel,
                                              memory_order_relaxed))
      return;
  }
}

void mh__future_finish_worker_died(mh_future_t *f, int pid, int exitcode) {
  f->died_pid = pid;
  f->code = exitcode; /* the result is MH_EWORKERDIED: see done_code */
  uint32_t old = transition(f, S_RUNNING, S_FINISHED, F_DIED);
  if (old != UINT32_MAX) completed(f, old);
}

int mh__future_cancel_queued(mh_future_t *f) {
  uint32_t old = transition(f, S_PENDING, S_CANCELLED, 0);
  if (old == UINT32_MAX) return 0;
  completed(f, old);
  return 1;
}

int mh__task_run(const mh__task_t *t) {
  const char *in = t->in;
  char *out = t->out;
  int first = 0;
  for (size_t i = 0; i < t->count; i++) {
    /* Never form NULL + offset: a NULL buffer stays NULL for every item. */
    const void *ip = in ? in + i * t->in_size : NULL;
    void *op = out ? out + i * t->out_size : NULL;
    int rc = t->fn(ip, t->in_size, op, t->out_size, t->ctx);
    if (t->statuses) t->statuses[i] = rc;
    if (rc && !first) first = rc;
  }
  return first;
}

/* ---- helping waits (a worker waiting inside a task) -------------------- */

/* Set by a thread-pool worker for its own thread (executor_threads.c); NULL
 * in every other thread.  Thread-local, so only its thread reads it. */
_Thread_local mh__helper_fn mh__helper;

/* The shorter of dl and MH__HELP_NAP from now: a helping waiter that found
 * nothing to run sleeps this long at most, then looks for work again (new
 * work may appear that nobody would wake it for). */
static void nap_deadline(const mh__deadline_t *dl, mh__deadline_t *out) {
  mh__deadline_init(out, MH__HELP_NAP);
  if (dl->kind == MH__DL_AT &&
      (dl->at.tv_sec < out->at.tv_sec ||
       (dl->at.tv_sec == out->at.tv_sec && dl->at.tv_nsec < out->at.tv_nsec)))
    *out = *dl;
}

/* Has dl passed?  (FOREVER never; NOW always.) */
static int dl_passed(const mh__deadline_t *dl) {
  if (dl->kind != MH__DL_AT) return dl->kind == MH__DL_NOW;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > dl->at.tv_sec ||
         (now.tv_sec == dl->at.tv_sec && now.tv_nsec >= dl->at.tv_nsec);
}

/* Wait for f inside a worker: run the executor's other work until f is done
 * (help first), so that a task waiting on its children never deadlocks the
 * pool, whatever the number of workers.  With nothing to run, spin by the
 * helping ladder, then nap on f's futex for MH__HELP_NAP at most. */
static int future_wait_helping(mh_future_t *f, const mh__deadline_t *dl,
                               mh__helper_fn help) {
  const mh__spin_policy_t pol = MH__SPIN_HELP_WAIT;
  mh__spin_t sp = MH__SPIN_INIT;
  uint32_t s;
  while (!IS_DONE(s = st_load(f, memory_order_acquire))) {
    if (help()) {
      mh__spin_reset(&sp);
      continue;
    }
    if (mh__spin_again(&sp, &pol)) continue;
    if (dl_passed(dl)) return MH_ETIMEDOUT;
    if (!(s & F_WAITERS)) {
      if (!st_cas(f, &s, s | F_WAITERS)) continue;
      s |= F_WAITERS;
    }
    mh__deadline_t nap;
    nap_deadline(dl, &nap);
    mh__futex_wait(st_addr(f), s, &nap, MH__FUTEX_PRIVATE);
    mh__spin_reset(&sp);
  }
  return 0;
}

/* ---- waiting on one future --------------------------------------------- */

int mh__future_wait_dl(mh_future_t *f, const mh__deadline_t *dl) {
  uint32_t s = st_load(f, memory_order_acquire);
  mh__helper_fn help = mh__helper;
  if (help && !IS_DONE(s) && dl->kind != MH__DL_NOW)
    return future_wait_helping(f, dl, help);
  if (!IS_DONE(s) && dl->kind != MH__DL_NOW) {
    /* Before sleeping, look a little while: a tiny task is often done within
     * a microsecond, and then neither side makes a system call.  The
     * policy's yields help when threads outnumber cores: the worker that
     * will finish f may be waiting for this very core. */
    const mh__spin_policy_t pol = MH__SPIN_FUTURE_WAIT;
    mh__spin_t sp = MH__SPIN_INIT;
    while (!IS_DONE(s) && mh__spin_again(&sp, &pol))
      s = st_load(f, memory_order_acquire);
  }
  while (!IS_DONE(s)) {
    if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
    if (!(s & F_WAITERS)) {
      if (!st_cas(f, &s, s | F_WAITERS)) continue;
      s |= F_WAITERS;
    }
    if (mh__futex_wait(st_addr(f), s, dl, MH__FUTEX_PRIVATE) == MH_ETIMEDOUT) {
      s = st_load(f, memory_order_acquire);
      return IS_DONE(s) ? 0 : MH_ETIMEDOUT;
    }
    s = st_load(f, memory_order_acquire);
  }
  return 0;
}

/* The code of a done future (state already acquired). */
static int done_code(const mh_future_t *f, uint32_t s) {
  if ((s & S_MASK) == S_CANCELLED) return MH_ECANCELED;
  return (s & F_DIED) ? MH_EWORKERDIED : f->code;
}

int mh_future_wait(mh_future_t *f, double timeout) {
  mh__deadline_t dl;
  if (!f || mh__deadline_init(&dl, timeout)) return MH_EINVAL;
  return mh__future_wait_dl(f, &dl);
}

int mh_future_result(mh_future_t *f, double timeout) {
  /* Check the timeout cheaply first: a done future needs no deadline. */
  if (!f || timeout != timeout || (timeout < 0 && timeout != MH_FOREVER))
    return MH_EINVAL;
  uint32_t s = st_load(f, memory_order_acquire);
  if (!IS_DONE(s)) {
    mh__deadline_t dl;
    if (mh__deadline_init(&dl, timeout)) return MH_EINVAL;
    int rc = mh__future_wait_dl(f, &dl);
    if (rc) return rc;
    s = st_load(f, memory_order_acquire);
  }
  return done_code(f, s);
}

int mh_future_done(const mh_future_t *f) {
  if (!f) return 0;
  return IS_DONE(st_load(f, memory_order_acquire));
}

int mh_future_running(const mh_future_t *f) {
  if (!f) return 0;
  return (st_load(f, memory_order_acquire) & S_MASK) ==
         S_RUNNING;
}

int mh_future_cancelled(const mh_future_t *f) {
  if (!f) return 0;
  return (st_load(f, memory_order_acquire) & S_MASK) ==
         S_CANCELLED;
}

int mh_future_cancel(mh_future_t *f) {
  if (!f) return MH_EINVAL;
  uint32_t old = transition(f, S_PENDING, S_CANCELLED, 0);
  if (old != UINT32_MAX) {
    completed(f, old);
    return 0;
  }
  return mh_future_cancelled(f) ? 0 : MH_EBUSY;
}

int mh_future_add_done_callback(mh_future_t *f, mh_future_cb cb, void *arg) {
  if (!f || !cb) return MH_EINVAL;
  if (mh_future_done(f)) {
    cb(f, arg);
    return 0;
  }
  mh__cb_t *node = mh__malloc(sizeof *node);
  if (!node) return MH_ENOMEM;
  node->cq = NULL;
  node->u.user.fn = cb;
  node->u.user.arg = arg;
  pthread_mutex_t *m = stripe_of(f);
  pthread_mutex_lock(m);
  uint32_t s = st_load(f, memory_order_acquire);
  for (;;) {
    if (IS_DONE(s)) {
      pthread_mutex_unlock(m);
      mh__free(node);
      cb(f, arg);
      return 0;
    }
    if (st_cas(f, &s, s | F_CBS)) break;
  }
  node->next = f->cbs;
  f->cbs = node;
  pthread_mutex_unlock(m);
  return 0;
}

int mh_future_worker_exit(const mh_future_t *f, int *pid, int *exitcode) {
  if (!f) return MH_EINVAL;
  uint32_t s = st_load(f, memory_order_acquire);
  if ((s & S_MASK) != S_FINISHED || !(s & F_DIED)) return MH_EINVAL;
  if (pid) *pid = f->died_pid;
  if (exitcode) *exitcode = f->code; /* see the field's comment */
  return 0;
}

/* ---- wait and as_completed (many futures) ------------------------------ */

/* Does `mode` hold, given the number done and whether one failed? */
static int wait_satisfied(mh_wait_mode_t mode, size_t ndone, size_t n,
                          int failed) {
  if (ndone == n) return 1;
  if (mode == MH_FIRST_COMPLETED) return ndone > 0;
  if (mode == MH_FIRST_EXCEPTION) return failed;
  return 0;
}

/* A finished future whose task failed (Python's "raised"): cancelled ones do
 * not count, as in concurrent.futures. */
static int is_failure(const mh_future_t *f) {
  uint32_t s = st_load(f, memory_order_acquire);
  return (s & S_MASK) == S_FINISHED && ((s & F_DIED) || f->code != 0);
}

int mh_futures_wait(mh_future_t *const *fs, size_t n, mh_wait_mode_t mode,
                    double timeout, size_t *ndone) {
  mh__deadline_t dl;
  if ((!fs && n) || mh__deadline_init(&dl, timeout)) return MH_EINVAL;
  if (mode != MH_FIRST_COMPLETED && mode != MH_FIRST_EXCEPTION &&
      mode != MH_ALL_COMPLETED)
    return MH_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) return MH_EINVAL;
  size_t done = 0;
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (mh_future_done(fs[i])) {
      done++;
      failed |= is_failure(fs[i]);
    }
  }
  int rc = 0;
  if (wait_satisfied(mode, done, n, failed) || dl.kind == MH__DL_NOW) {
    rc = wait_satisfied(mode, done, n, failed) ? 0 : MH_ETIMEDOUT;
  } else if (mode == MH_ALL_COMPLETED) {
    /* Waiting for all needs no registration: wait for each in turn. */
    for (size_t i = 0; i < n && !rc; i++) rc = mh__future_wait_dl(fs[i], &dl);
    done = 0;
    for (size_t i = 0; i < n; i++) done += (size_t)mh_future_done(fs[i]);
  } else {
    mh__cq_t *cq;
    rc = mh__cq_new(&cq, n);
    if (rc) return rc;
    /* Count again from the ready ring: futures already done are pushed at
     * once by mh__cq_arm. */
    done = 0;
    failed = 0;
    for (size_t i = 0; i < n; i++) mh__cq_arm(cq, i, fs[i]);
    while (!rc && !wait_satisfied(mode, done, n, failed)) {
      size_t idx;
      rc = mh__cq_pop(cq, &dl, &idx);
      if (!rc) {
        done++;
        failed |= is_failure(fs[idx]);
      }
    }
    for (size_t i = 0; i < n; i++) mh__cq_disarm(cq, i);
    mh__cq_unref(cq);
    done = 0;
    for (size_t i = 0; i < n; i++) done += (size_t)mh_future_done(fs[i]);
    if (rc == MH_ETIMEDOUT) {
      failed = 0;
      for (size_t i = 0; i < n; i++) failed |= is_failure(fs[i]);
      if (wait_satisfied(mode, done, n, failed)) rc = 0;
    }
  }
  if (ndone) *ndone = done;
  return rc;
}

/* Used by one thread (O: its owner); completing threads reach only the cq. */
struct mh_as_completed_s {
  mh__cq_t *cq;     /* I */
  mh_future_t **fs; /* I: distinct futures, each with a reference */
  size_t n;         /* I */
  size_t yielded;   /* O */
};

typedef struct {
  mh_future_t *f;
  size_t i;
} mh__fpos_t;

static int fpos_cmp(const void *a, const void *b) {
  const mh__fpos_t *x = a, *y = b;
  if (x->f != y->f) return (uintptr_t)x->f < (uintptr_t)y->f ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

int mh_as_completed_new(mh_as_completed_t **out, mh_future_t *const *fs,
                        size_t n) {
  if (!out || (!fs && n) || n > SIZE_MAX / sizeof(mh__fpos_t)) return MH_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) return MH_EINVAL;
  mh_as_completed_t *ac = mh__calloc(1, sizeof *ac);
  mh__fpos_t *pos = n ? mh__malloc(n * sizeof *pos) : NULL;
  unsigned char *keep = n ? mh__calloc(n, 1) : NULL;
  if (!ac || (n && (!pos || !keep))) goto nomem;
  /* A future listed twice is yielded once, as Python's set() does; the
   * first occurrences keep the caller's order. */
  for (size_t i = 0; i < n; i++) {
    pos[i].f = fs[i];
    pos[i].i = i;
  }
  if (n) qsort(pos, n, sizeof *pos, fpos_cmp);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || pos[i].f != pos[i - 1].f) {
      keep[pos[i].i] = 1;
      m++;
    }
  }
  ac->fs = m ? mh__malloc(m * sizeof *ac->fs) : NULL;
  if (m && !ac->fs) goto nomem;
  if (mh__cq_new(&ac->cq, m)) goto nomem;
  for (size_t i = 0, k = 0; i < n; i++)
    if (keep[i]) ac->fs[k++] = fs[i];
  mh__free(pos);
  mh__free(keep);
  ac->n = m;
  for (size_t i = 0; i < m; i++) mh_future_retain(ac->fs[i]);
  for (size_t i = 0; i < m; i++) mh__cq_arm(ac->cq, i, ac->fs[i]);
  *out = ac;
  return 0;
nomem:
  mh__free(pos);
  mh__free(keep);
  if (ac) mh__free(ac->fs);
  mh__free(ac);
  return MH_ENOMEM;
}

int mh_as_completed_next(mh_as_completed_t *ac, double timeout,
                         mh_future_t **f) {
  mh__deadline_t dl;
  if (!ac || !f || mh__deadline_init(&dl, timeout)) return MH_EINVAL;
  if (ac->yielded == ac->n) return MH_EEOF;
  size_t idx;
  int rc = mh__cq_pop(ac->cq, &dl, &idx);
  if (rc) return rc;
  ac->yielded++;
  *f = ac->fs[idx];
  return 0;
}

void mh_as_completed_free(mh_as_completed_t *ac) {
  if (!ac) return;
  if (ac->cq) {
    for (size_t i = 0; i < ac->n; i++) mh__cq_disarm(ac->cq, i);
    mh__cq_unref(ac->cq);
  }
  for (size_t i = 0; i < ac->n; i++) mh_future_release(ac->fs[i]);
  mh__free(ac->fs);
  mh__free(ac);
}
