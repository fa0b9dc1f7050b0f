/* SPDX-License-Identifier: MIT */
/* executor_threads.c - the thread backend: N worker threads over one FIFO,
 * plus a work-stealing deque per worker for the tasks workers submit.
 *
 * The queue is intrusive (futures are linked through mh__future_link), so
 * queueing allocates nothing and costs the same at any length.  Submitters
 * never take the lock: they push onto `inbox`, a lock-free stack (one
 * compare-and-swap, the only shared write of a submit), and a worker holding
 * `lock` moves the whole stack, in submission order, to the FIFO
 * head..tail.  On two cores the cache lines bouncing between a submitter and
 * the workers are the main cost of a tiny task, so the fields a submit
 * writes, the ones it only reads and the workers' own sit on separate lines.
 * `lock` guards head, tail and the writes of len; workers sleep on `cond`
 * only when both are empty.
 *
 * Wake-ups.  Only a push onto an EMPTY inbox looks at the workers, and it
 * signals only when one is idle and none is spinning: a busy pool, or a burst
 * of submits, makes no system call per task.  No lost wake-up: a worker
 * counts itself in `idle` (under the lock) before it looks at inbox for the
 * last time, a submitter pushes before it reads idle (all sequentially
 * consistent), and a submitter that saw an idle worker signals while holding
 * the lock, which the worker holds from its last look until it waits.  A
 * push onto a non-empty inbox needs no check: the futures already there
 * were pushed by a submitter that made that check, so someone awake will
 * take the whole inbox, this future included.  A spinning worker counts
 * itself in `spinning` while it looks; when it gives up it counts itself in
 * `idle` and then re-checks the inbox under the lock, so a submitter that
 * read idle == 0 before that and spinning == 0 after it still misses
 * nobody: the re-check sees its push.
 *
 * No lost task at shutdown: shutdown sets the CLOSED bit of the inbox word
 * before `stopping`.  A push is a compare-and-swap on that word, so it either
 * lands before CLOSED (and is in the inbox for whoever looks after) or sees
 * CLOSED and fails with MH_ESHUTDOWN.  Workers leave only when stopping is
 * set and both queues are empty.
 *
 * A worker takes a small batch of futures per visit to the lock (at most
 * BATCH_MAX, and at most its share len / (2 * workers) so that the others
 * keep work): with many tiny tasks the lock is taken once per batch, not
 * once per task, and with few long tasks the batch is one.  Futures in a
 * worker's batch are still PENDING, so they can be cancelled until the
 * worker starts them (mh__future_set_running fails for a cancelled one).
 *
 * No backend lock is held while a task runs or a future completes, so
 * callbacks may submit, cancel or wait freely.
 *
 * Fork-join.  A task that submits to its own executor pushes onto
 * its worker's Chase-Lev deque (tworker_t; memory orders after Le et al.,
 * "Correct and efficient work-stealing for weak memory models", 2013): the
 * owner takes from the bottom, idle workers steal from the top, and no lock
 * is taken.  Each worker sets mh__helper to help_once for its thread, so a
 * wait inside a task (future.c, forkjoin.c) runs pending work instead of
 * sleeping: the worker's own deque, the rest of its batch, a steal, then one
 * future off the FIFO.  A deque push wakes a sleeper by the inbox's rule,
 * and a worker counts itself idle before its last look at every deque.  At
 * shutdown a worker leaves only with its own deque empty (only its own tasks
 * push onto it); after a cancelling shutdown what it pops from a deque is
 * cancelled, not run.
 *
 * Spawn records (mh_spawn / mh_spawn_join) share the deques: an item is a
 * future or, tagged with the low bit, a record on the spawning task's
 * stack.  The record's fields are written before the push (whose release
 * store of bottom publishes them), only the thread that took the item off a
 * deque runs it, and a thief's last touch is the exchange of the record's
 * state word: after it the joiner may return and the frame end.
 *
 * Roots from outside (mh__threads_run_outside, for parallel_for and
 * parallel_reduce called by a thread that is not a worker) skip the future:
 * the caller pushes a record of its own stack onto `roots` (a compare-and-
 * swap, refused once CLOSED is set), wakes a worker by the inbox's rule and
 * sleeps on the record's state word; the worker that pops it (under `lock`,
 * the only popper at a time, so the pop has no ABA) runs it as a stolen
 * spawn record, whose last touch is the exchange of that word.  No future,
 * so the first parallel_for of a process faults in no slab of futures.
 * Workers count `roots` as work wherever they count the inbox, and leave
 * only with it empty.
 *
 * Invariants: head..tail holds `len` futures, each PENDING or CANCELLED and
 * holding the queue's reference; the inbox holds futures not yet counted in
 * len; a deque's slots top..bottom-1 hold futures with the deque's reference
 * or spawn records not yet taken,
 * and a ring replaced by a bigger one stays allocated until pool_free; `idle` counts the workers inside worker_main's sleep loop; alive <=
 * nthreads.
 *
 * Who may touch what (the tags on tpool_t):
 *   I: set by tp_start before the pool is published, read-only after.
 *   A: atomic; any thread.
 *   L: p->lock.  "A, L": changed only under p->lock, read without it.
 *   W: the worker running the batch (a batch taken off the FIFO is linked
 *      through the futures' `link` fields and is that worker's alone), and
 *      the fields of tworker_t that only its own thread touches.
 *
 * Lock order: p->lock is taken alone, never with another lock of the library
 * held under it, and never held while a task runs or a future completes.
 * The executor shell may hold its slock when it calls tp_shutdown
 * (slock -> p->lock).
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "executor_internal.h"
#include "internal.h"
#include "spin.h"
#include "thread_internal.h"
#include "trace_internal.h"

/* ---- the pool record --------------------------------------------------- */

#define BATCH_MAX 32
#define WORKER_STACK ((size_t)64 << 20)
/* Seconds: how long a worker's first nap lasts before it looks at the
 * deques again and sleeps for good (see wake_for_deque). */
#define SLEEP_RECHECK 1e-3

typedef struct tpool {
  /* Written by submitters (one compare-and-swap each) and emptied by
   * workers: the only line a submit writes.  Futures are pushed newest
   * first; the low bit is CLOSED once shutdown began, so the push itself
   * tells a submitter whether it was in time. */
  _Alignas(64) _Atomic uintptr_t inbox; /* A */
  /* Read by a submitter that found the inbox empty; written rarely (when a
   * worker starts or stops looking for work), so it stays shared in the
   * submitter's cache. */
  _Alignas(64) _Atomic int idle; /* A, L: workers waiting on cond; changed under lock */
  _Atomic int spinning;          /* A: workers looking for work without sleeping */
  _Atomic int stopping;          /* A: no more submits; set after CLOSED */
  /* Roots run from outside (mh__threads_run_outside): a lock-free stack of
   * records on their callers' stacks, newest first, with the inbox's CLOSED
   * bit.  Pushed once per parallel_for or parallel_reduce called from
   * outside, so it may share the line submitters only read; popped under
   * `lock`. */
  _Atomic uintptr_t roots; /* A: pushed by any thread, popped under L */
  /* A: sticky, 0 until the deques are seen in use: a submit from a task
   * sets it before its push, a worker that finds a deque item on its way to
   * sleep (a spawn's) sets it then.  Until then the workers skip the deques
   * after each batch and while they spin, so a pool fed only from outside
   * pays nothing for fork-join.  The sleep path and the exit look at the
   * deques whatever it says, so a stale flag delays an item at most until
   * a worker's spin ends, once per pool.  On this line because a push reads
   * idle and spinning here anyway. */
  _Atomic int deques_used;
  /* The workers' side. */
  _Alignas(64) pthread_mutex_t lock; /* I */
  pthread_cond_t cond;               /* I */
  mh_future_t *head, *tail;          /* L: the FIFO */
  /* A, L: written under lock; read without it by spinning workers, which
   * then re-check under the lock. */
  _Atomic size_t len;
  int alive;          /* L: workers not yet ended */
  int nthreads;       /* I */
  pthread_t *threads; /* I: filled by tp_start; read by tp_shutdown */
  mh_worker_init_fn init; /* I */
  void *initarg;          /* I */
  mh_executor_t *ex;      /* I: the shell, for mh__worker_executor */
  struct tworker *workers; /* I: nthreads records, one per worker */
  /* A: a cancelling shutdown began; workers cancel what they pop from
   * their deques instead of running it. */
  _Atomic int cancelling;
} tpool_t;

/* ---- the work-stealing deques (Chase-Lev, after Le et al. 2013) -------- */

/* A ring of 2^k slots.  Grown by the owner only; the old ring stays valid
 * (thieves may still read it) until the pool is freed. */
typedef struct dq_ring {
  struct dq_ring *older; /* W: rings replaced by this one, freed at the end */
  int64_t mask;          /* I */
  _Atomic uintptr_t slot[]; /* A: an item (see "items" below) */
} dq_ring_t;

/* One worker: its deque and its state.  top is CASed by thieves and by the
 * owner taking the last element; bottom is written by the owner only. */
typedef struct tworker {
  _Alignas(64) _Atomic int64_t top; /* A */
  _Alignas(64) _Atomic int64_t bottom; /* A: written by the owner only */
  _Atomic(dq_ring_t *) ring;           /* A: replaced by the owner only */
  /* I: the pool's only worker.  Nobody steals from it (steal_any needs a
   * second worker, and threads from outside never steal), so its deque is
   * a plain stack: a take needs no fence and no race for the last item. */
  int solo;
  mh_future_t *batch; /* W: the rest of the batch taken off the FIFO */
  tpool_t *p;         /* I */
  int index;          /* I */
  unsigned rng;       /* W: victim choice */
  int broken;         /* W: the initializer's code */
  uintptr_t stack_lo; /* W: the low end of the stack it runs on now (0: unknown) */
  char *spare;        /* W: a stack segment kept for the next hop (help_hop) */
} tworker_t;

#define DQ_FIRST 256

/* Items of a deque: a future (a task submitted by a worker), or a spawn
 * record (mh_spawn: a join-in-scope task on its parent's stack) tagged with
 * the low bit.  Both are at least 8-byte aligned.  0 is no item. */
#define SPAWN_TAG ((uintptr_t)1)

/* A spawn record's state word: queued, done, or queued with its joiner
 * asleep on the word (the thief that finishes it must wake it). */
#define SP_QUEUED 0
#define SP_DONE 1
#define SP_SLEEPER 2

/* A root run from outside: a spawn record and the link of `roots`. */
typedef struct outside {
  mh_spawn_t sp;
  struct outside *next; /* written before the push, read by the popper */
} outside_t;

/* The worker running on this thread (NULL elsewhere).  Initial-exec: the
 * library is linked, not dlopen'ed, and a spawn reads this on every call,
 * where the general-dynamic model would cost a call to __tls_get_addr. */
static _Thread_local tworker_t *tls_self __attribute__((tls_model("initial-exec")));

static dq_ring_t *ring_new(int64_t cap) {
  dq_ring_t *r = mh__malloc(sizeof *r + (size_t)cap * sizeof r->slot[0]);
  if (!r) return NULL;
  r->older = NULL;
  r->mask = cap - 1;
  return r;
}

/* Owner: replace a full ring by one twice its size; the new ring, or NULL
 * when out of memory.  Rare, so kept out of the push's inlined path. */
static __attribute__((noinline, cold)) dq_ring_t *dq_grow(tworker_t *w, dq_ring_t *r,
                                                          int64_t t, int64_t b) {
  dq_ring_t *n = ring_new(2 * (r->mask + 1));
  if (!n) return NULL;
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&n->slot[i & n->mask],
                          atomic_load_explicit(&r->slot[i & r->mask], memory_order_relaxed),
                          memory_order_relaxed);
  n->older = r;
  atomic_store_explicit(&w->ring, n, memory_order_release);
  return n;
}

/* Owner: push item f at the bottom.  0, or MH_ENOMEM when the ring cannot
 * grow.  Inlined: a spawn is little more than this. */
static inline __attribute__((always_inline)) int dq_push(tworker_t *w, uintptr_t f) {
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
  int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
  dq_ring_t *r = atomic_load_explicit(&w->ring, memory_order_relaxed);
  if (b - t > r->mask && !(r = dq_grow(w, r, t, b))) return MH_ENOMEM;
  atomic_store_explicit(&r->slot[b & r->mask], f, memory_order_relaxed);
  /* The paper's release fence before the store of bottom, as a release
   * store: a thief that acquires bottom sees the slot and f's fields (and
   * TSan, which does not model fences, sees it too). */
  atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
  return 0;
}

/* Owner: take from the bottom (newest first); 0 when empty. */
static inline __attribute__((always_inline)) uintptr_t dq_take(tworker_t *w) {
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed) - 1;
  dq_ring_t *r = atomic_load_explicit(&w->ring, memory_order_relaxed);
  if (w->solo) {
    /* No thief can move top, so nothing to order against: the store of
     * bottom stays atomic only for the readers of dq_nonempty. */
    if (atomic_load_explicit(&w->top, memory_order_relaxed) > b) return 0;
    atomic_store_explicit(&w->bottom, b, memory_order_relaxed);
    return atomic_load_explicit(&r->slot[b & r->mask], memory_order_relaxed);
  }
  atomic_store_explicit(&w->bottom, b, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
  int64_t t = atomic_load_explicit(&w->top, memory_order_relaxed);
  uintptr_t f = 0;
  if (t <= b) {
    f = atomic_load_explicit(&r->slot[b & r->mask], memory_order_relaxed);
    if (t == b) {
      /* The last one: race the thieves for it. */
      if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1,
                                                   memory_order_seq_cst,
                                                   memory_order_relaxed))
        f = 0;
      atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
    }
  } else {
    atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
  }
  return f;
}

/* Any thread: take from the top (oldest first); 0 when empty or when
 * another thief won the race. */
static uintptr_t dq_steal(tworker_t *w) {
  int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
  atomic_thread_fence(memory_order_seq_cst);
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_acquire);
  if (t >= b) return 0;
  dq_ring_t *r = atomic_load_explicit(&w->ring, memory_order_acquire);
  uintptr_t f = atomic_load_explicit(&r->slot[t & r->mask], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1,
                                               memory_order_seq_cst,
                                               memory_order_relaxed))
    return 0;
  return f;
}

static int dq_nonempty(tworker_t *w) {
  return atomic_load_explicit(&w->bottom, memory_order_acquire) >
         atomic_load_explicit(&w->top, memory_order_acquire);
}

static int any_deque_nonempty(tpool_t *p) {
  for (int i = 0; i < p->nthreads; i++)
    if (dq_nonempty(&p->workers[i])) return 1;
  return 0;
}

/* Before a push onto a deque: say that the deques are in use.  Relaxed is
 * enough: the push's release store of bottom follows, so a worker that sees
 * the item (an acquire load of bottom) sees the flag too; one that reads the
 * flag stale only skips a look it does again before it sleeps.  Read first
 * so that the line stays shared once the flag is set. */
static inline void mark_deques_used(tpool_t *p) {
  if (!atomic_load_explicit(&p->deques_used, memory_order_relaxed))
    atomic_store_explicit(&p->deques_used, 1, memory_order_relaxed);
}

static inline int deques_used(tpool_t *p) {
  return atomic_load_explicit(&p->deques_used, memory_order_relaxed);
}

/* Steal one item from another worker, starting at a random victim. */
static uintptr_t steal_any(tworker_t *self) {
  tpool_t *p = self->p;
  int n = p->nthreads;
  if (n < 2) return 0;
  self->rng = self->rng * 1103515245u + 12345u;
  int start = (int)((self->rng >> 16) % (unsigned)n);
  for (int k = 0; k < n; k++) {
    tworker_t *v = &p->workers[(start + k) % n];
    if (v == self) continue;
    for (int tries = 0; tries < 4 && dq_nonempty(v); tries++) {
      uintptr_t f = dq_steal(v);
      if (f) return f;
    }
  }
  return 0;
}

/* ---- the inbox and the FIFO -------------------------------------------- */

#define CLOSED ((uintptr_t)1)

/* The futures in the inbox word (without the CLOSED bit). */
static inline mh_future_t *inbox_list(uintptr_t w) {
  return (mh_future_t *)(w & ~CLOSED);
}

/* Move the inbox to the FIFO's tail, oldest first; under lock. */
static void absorb(tpool_t *p) {
  if (!inbox_list(atomic_load_explicit(&p->inbox, memory_order_relaxed))) return;
  /* Take the list and keep the CLOSED bit. */
  mh_future_t *f = inbox_list(
      atomic_fetch_and_explicit(&p->inbox, CLOSED, memory_order_acquire));
  mh_future_t *rev = NULL, *last = f;
  size_t n = 0;
  while (f) {
    mh_future_t *next = *mh__future_link(f);
    *mh__future_link(f) = rev;
    rev = f;
    f = next;
    n++;
  }
  if (!rev) return;
  if (p->tail)
    *mh__future_link(p->tail) = rev;
  else
    p->head = rev;
  p->tail = last;
  atomic_store_explicit(&p->len, atomic_load_explicit(&p->len, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

/* ---- roots from outside (mh__threads_run_outside) ----------------------- */

static inline int roots_nonempty(tpool_t *p) {
  return (atomic_load_explicit(&p->roots, memory_order_relaxed) & ~CLOSED) != 0;
}

/* Pop the newest root; under lock (so one popper at a time: a record in the
 * stack stays there, alive, until its popper takes it, and no ABA). */
static outside_t *take_root(tpool_t *p) {
  uintptr_t old = atomic_load_explicit(&p->roots, memory_order_acquire);
  for (;;) {
    outside_t *o = (outside_t *)(old & ~CLOSED);
    if (!o) return NULL;
    uintptr_t next = (uintptr_t)o->next | (old & CLOSED);
    if (atomic_compare_exchange_weak_explicit(&p->roots, &old, next, memory_order_acquire,
                                              memory_order_acquire))
      return o;
  }
}

/* ---- the workers (W: a batch is its worker's) -------------------------- */

/* Run one future the worker holds (the backend's reference is dropped).
 * `spawned`: it came from a deque, where a cancelling shutdown cannot reach
 * it; it is cancelled here then. */
static void run_one(tworker_t *w, mh_future_t *f, int spawned) {
  if (spawned && atomic_load_explicit(&w->p->cancelling, memory_order_relaxed)) {
    mh__future_cancel_queued(f);
    mh_future_release(f);
  } else if (mh__future_set_running(f)) {
    uint64_t t0 = mh__trace_begin();
    int code = w->broken ? w->broken : mh__task_run(mh__future_task(f));
    mh__trace_end(t0, MH__TR_TASK, MH__TR_SEQ, mh__future_task(f)->count, code);
    mh__future_finish_release(f, code);
  } else {
    mh_future_release(f);
  }
}

/* Run a spawn record this worker took off a deque (its own, or a steal).
 * After the exchange on `state` the record may be gone (its joiner returns
 * and its frame ends): the wake-up only hands the word's address to the
 * kernel, which looks it up and finds nobody when nobody waits. */
static void run_spawn(tworker_t *w, mh_spawn_t *t) {
  uint64_t t0 = mh__trace_begin();
  int rc = atomic_load_explicit(&w->p->cancelling, memory_order_relaxed)
               ? MH_ECANCELED
               : t->fn_(t->arg_);
  mh__trace_end(t0, MH__TR_SPAWN, MH__TR_SEQ, 1, rc); /* while t is ours */
  t->rc_ = rc;
  if (__atomic_exchange_n(&t->state_, SP_DONE, __ATOMIC_ACQ_REL) == SP_SLEEPER)
    mh__futex_wake(&t->state_, 1, MH__FUTEX_PRIVATE);
}

/* Run a root popped off `roots`, as a task would run: a broken worker gives
 * its initializer's code.  The exchange is the last touch, as for a stolen
 * spawn: after it the caller returns and the record's frame ends. */
static void run_outside_root(tworker_t *w, outside_t *o) {
  mh_spawn_t *t = &o->sp;
  /* Traced as the task it stands for (a timeline shows the worker busy). */
  uint64_t t0 = mh__trace_begin();
  int rc = atomic_load_explicit(&w->p->cancelling, memory_order_relaxed)
               ? MH_ECANCELED
               : (w->broken ? w->broken : t->fn_(t->arg_));
  mh__trace_end(t0, MH__TR_TASK, MH__TR_SEQ, 1, rc);
  t->rc_ = rc;
  if (__atomic_exchange_n(&t->state_, SP_DONE, __ATOMIC_ACQ_REL) == SP_SLEEPER)
    mh__futex_wake(&t->state_, 1, MH__FUTEX_PRIVATE);
}

/* Run an item taken off a deque. */
static void run_item(tworker_t *w, uintptr_t it) {
  if (it & SPAWN_TAG)
    run_spawn(w, (mh_spawn_t *)(it & ~SPAWN_TAG));
  else
    run_one(w, (mh_future_t *)it, 1);
}

/* Run the worker's batch.  It is kept in w->batch, not on the stack, so that
 * a task of the batch that waits can run the rest of it (help first). */
static void run_batch(tworker_t *w, mh_future_t *f) {
  w->batch = f;
  while ((f = w->batch)) {
    w->batch = *mh__future_link(f);
    run_one(w, f, 0);
  }
}

/* Take one future off the FIFO (or the inbox) for a helping waiter. */
static mh_future_t *take_shared(tpool_t *p) {
  if (!atomic_load_explicit(&p->len, memory_order_relaxed) &&
      !inbox_list(atomic_load_explicit(&p->inbox, memory_order_relaxed)))
    return NULL;
  pthread_mutex_lock(&p->lock);
  if (!p->head) absorb(p);
  mh_future_t *f = p->head;
  if (f) {
    p->head = *mh__future_link(f);
    if (!p->head) p->tail = NULL;
    atomic_store_explicit(&p->len, atomic_load_explicit(&p->len, memory_order_relaxed) - 1,
                          memory_order_relaxed);
  }
  pthread_mutex_unlock(&p->lock);
  return f;
}

/* Run one pending task for a helping waiter, looking first at the worker's
 * own deque (its newest child, the one a fork-join parent most likely waits
 * for), then the rest of its batch, then other workers' deques, then the
 * shared FIFO.  1 if it ran one. */
static int help_here(tworker_t *w) {
  uintptr_t it = dq_take(w);
  if (!it) it = w->batch ? 0 : steal_any(w);
  if (it) {
    run_item(w, it);
    return 1;
  }
  mh_future_t *f = w->batch;
  if (f) {
    w->batch = *mh__future_link(f);
  } else {
    if ((it = steal_any(w))) {
      run_item(w, it);
      return 1;
    }
    f = take_shared(w->p);
    if (!f) {
      /* Last, a root from outside: it runs to its end inside this wait,
       * on this worker's deque, so the waiter's own frames stay intact. */
      if (!roots_nonempty(w->p)) return 0;
      pthread_mutex_lock(&w->p->lock);
      outside_t *o = take_root(w->p);
      pthread_mutex_unlock(&w->p->lock);
      if (!o) return 0;
      run_outside_root(w, o);
      return 1;
    }
  }
  run_one(w, f, 0);
  return 1;
}

/* ---- helping on a fresh stack -------------------------------------------
 * A helping waiter runs tasks on top of the waiting one, so nested waits
 * grow its stack: a level took about 350 bytes with a small task, and the
 * 64 MiB of a worker overflowed (SIGSEGV) at about 1.9 x 10^5 levels.  So
 * when less than HELP_ROOM is left, help_once runs the task it helps with
 * on a stack segment of SEG_BYTES (swapcontext: the same thread, so the
 * same deque, thread-locals and tls_self), and returns to the old stack
 * when that task is done.  The nesting is then bounded by memory, not by
 * one stack.  A worker keeps one segment for its next hop, unmapped when it
 * exits.  No mapping: it helps where it is, as before.  Not under TSan:
 * its fixed shadow stack is the tighter bound there (docs/forkjoin.md), and
 * switching stacks would need its fiber calls.  Under ASan the switches
 * are announced to it (its fiber calls), or it would take the new stack for
 * an overflow. */
#define HELP_ROOM ((size_t)2 << 20)
#define SEG_BYTES WORKER_STACK

static uintptr_t thread_stack_lo(void) {
  pthread_attr_t a;
  void *lo = NULL;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &a) == 0) {
    if (pthread_attr_getstack(&a, &lo, &size)) lo = NULL;
    pthread_attr_destroy(&a);
  }
  return (uintptr_t)lo;
}

#if !MH__TSAN
#if MH__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                    size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif

/* One hop onto a segment: the context to go back to, and what the help
 * found.  It lives on the old stack, which waits below the hop. */
typedef struct hop {
  ucontext_t back, seg;
  tworker_t *w;
  char *mem; /* the segment */
  int ran;
#if MH__ASAN
  void *fake;
  const void *old_bottom;
  size_t old_size;
#endif
} hop_t;

/* The hop being entered: read by hop_main first thing, before any other
 * hop of this thread can start. */
static _Thread_local hop_t *tls_hop;

static void hop_main(void) {
  hop_t *h = tls_hop;
#if MH__ASAN
  __sanitizer_finish_switch_fiber(NULL, &h->old_bottom, &h->old_size);
#endif
  h->ran = help_here(h->w);
#if MH__ASAN
  __sanitizer_start_switch_fiber(NULL, h->old_bottom, h->old_size);
#endif
  /* Returning resumes uc_link: h->back. */
}

/* Switch to h->mem and help there; 0, or -1 if the switch failed.  Apart
 * from help_hop, and with little but *h live across the switches, so that
 * gcc need not warn of locals clobbered across getcontext's second return. */
static __attribute__((noinline)) int hop_switch(hop_t *h) {
  if (getcontext(&h->seg)) return -1;
  h->seg.uc_stack.ss_sp = h->mem;
  h->seg.uc_stack.ss_size = SEG_BYTES;
  h->seg.uc_link = &h->back;
  makecontext(&h->seg, hop_main, 0);
  tls_hop = h;
#if MH__ASAN
  __sanitizer_start_switch_fiber(&h->fake, h->mem, SEG_BYTES);
#endif
  int rc = swapcontext(&h->back, &h->seg);
#if MH__ASAN
  __sanitizer_finish_switch_fiber(h->fake, NULL, NULL); /* also after a failed switch */
#endif
  return rc ? -1 : 0;
}

static int help_hop(tworker_t *w) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *seg = w->spare;
  w->spare = NULL;
  if (!seg) {
    seg = mmap(NULL, SEG_BYTES, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (seg == MAP_FAILED) return help_here(w);
    (void)mprotect(seg, page, PROT_NONE); /* a guard page at the low end */
  }
  hop_t h;
  memset(&h, 0, sizeof h);
  h.w = w;
  h.mem = seg;
  uintptr_t lo = w->stack_lo;
  w->stack_lo = (uintptr_t)seg + page;
  int rc = hop_switch(&h);
  w->stack_lo = lo;
  if (w->spare)
    munmap(seg, SEG_BYTES); /* a deeper hop left one already */
  else
    w->spare = seg;
  return rc ? help_here(w) : h.ran;
}
#endif /* !MH__TSAN */

/* mh__helper for worker threads: help_here, on a fresh stack segment when
 * this one is nearly spent. */
static int help_once(void) {
  tworker_t *w = tls_self;
#if !MH__TSAN
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  if (w->stack_lo && sp > w->stack_lo && sp - w->stack_lo < HELP_ROOM) return help_hop(w);
#endif
  return help_here(w);
}

mh_executor_t *mh__worker_executor(void) {
  return tls_self ? tls_self->p->ex : NULL;
}

/* Run what the worker's own deque holds, and what it can steal; 1 if it ran
 * anything.  No lock is held. */
static int run_local(tworker_t *w) {
  int ran = 0;
  for (;;) {
    uintptr_t it = dq_take(w);
    if (!it) it = steal_any(w);
    if (!it) return ran;
    run_item(w, it);
    ran = 1;
  }
}

/* Spin for new work, by the MH__SPIN_WORKER_IDLE ladder; 1 if some may be
 * there.  A submitter that sees a spinning worker need not wake anybody,
 * which saves a system call on each side per task when tasks come a little
 * slower than workers take them. */
static int spin_for_work(tpool_t *p) {
  /* Idle time is the right time to get the futures' next slab ready. */
  mh__futures_prepare();
  atomic_fetch_add(&p->spinning, 1);
  const mh__spin_policy_t pol = MH__SPIN_WORKER_IDLE;
  mh__spin_t sp = MH__SPIN_INIT;
  int found = 0;
  do {
    if (atomic_load_explicit(&p->len, memory_order_relaxed) ||
        inbox_list(atomic_load_explicit(&p->inbox, memory_order_relaxed)) ||
        atomic_load_explicit(&p->stopping, memory_order_relaxed) ||
        roots_nonempty(p) || (deques_used(p) && any_deque_nonempty(p)))
      found = 1;
  } while (!found && mh__spin_again(&sp, &pol));
  atomic_fetch_sub(&p->spinning, 1);
  return found;
}

static void *worker_main(void *arg) {
  tworker_t *w = arg;
  tpool_t *p = w->p;
  tls_self = w;
  w->stack_lo = thread_stack_lo();
  mh__helper = help_once;
  mh__trace_role(MH__TR_ROLE_THREAD, -1);
  /* A failing initializer breaks this worker: the tasks it takes fail with
   * the initializer's code, as the header says. */
  w->broken = p->init ? p->init(p->initarg) : 0;
  size_t share_div = (size_t)p->nthreads * 2;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    outside_t *o = take_root(p);
    if (o) {
      pthread_mutex_unlock(&p->lock);
      run_outside_root(w, o);
      run_local(w);
      pthread_mutex_lock(&p->lock);
      continue;
    }
    if (!p->head) absorb(p);
    if (!p->head && deques_used(p) && any_deque_nonempty(p)) {
      pthread_mutex_unlock(&p->lock);
      run_local(w);
      pthread_mutex_lock(&p->lock);
      continue;
    }
    if (!p->head && !atomic_load(&p->stopping)) {
      pthread_mutex_unlock(&p->lock);
      int found = spin_for_work(p);
      pthread_mutex_lock(&p->lock);
      if (!found) {
        /* idle is counted before the last look at the deques: a worker
         * pushing onto its deque pushes before it reads idle (see
         * tp_submit), so one of the two sees the other. */
        atomic_fetch_add(&p->idle, 1);
        atomic_thread_fence(memory_order_seq_cst);
        int dq = 0;
        /* The first nap is timed: a spawn pushed as this worker went to
         * sleep may not have seen it (wake_for_deque), and is found here. */
        mh__deadline_t dl;
        int timed = 1;
        mh__deadline_init(&dl, SLEEP_RECHECK);
        while (!p->head && !inbox_list(atomic_load(&p->inbox)) &&
               !atomic_load(&p->stopping) && !roots_nonempty(p) &&
               !(dq = any_deque_nonempty(p))) {
          if (!timed)
            pthread_cond_wait(&p->cond, &p->lock);
          else if (mh__cond_wait(&p->cond, &p->lock, &dl) == MH_ETIMEDOUT)
            timed = 0;
        }
        atomic_fetch_sub(&p->idle, 1);
        /* A spawn does not set deques_used (it would cost every spawn a
         * load); the first worker that finds a deque item here does, and
         * from then on the workers look at the deques as they go. */
        if (dq) mark_deques_used(p);
      }
      continue;
    }
    if (!p->head) {
      /* Stopping: CLOSED was set before, so nothing more can come from
       * outside.  A root pushed before CLOSED may have landed after the
       * look at the top of the loop: look again.  Leave only with every
       * deque seen empty, this worker's own included (only its own tasks
       * push onto it), whatever deques_used says: a stale flag must not
       * strand an item. */
      absorb(p);
      if (!p->head) {
        if (roots_nonempty(p)) continue;
        if (!any_deque_nonempty(p)) break;
        mark_deques_used(p);
        continue;
      }
    }
    size_t len = atomic_load_explicit(&p->len, memory_order_relaxed);
    size_t take = len / share_div;
    if (take < 1) take = 1;
    if (take > BATCH_MAX) take = BATCH_MAX;
    mh_future_t *first = p->head, *last = first;
    for (size_t i = 1; i < take; i++) last = *mh__future_link(last);
    p->head = *mh__future_link(last);
    if (!p->head) p->tail = NULL;
    atomic_store_explicit(&p->len, len - take, memory_order_relaxed);
    *mh__future_link(last) = NULL;
    /* More work than this worker takes, idle workers, and nobody looking:
     * wake one more (a spinning worker would find it without help). */
    int wake = p->head && atomic_load(&p->idle) > 0 && atomic_load(&p->spinning) == 0;
    if (wake) pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    run_batch(w, first);
    if (deques_used(p)) run_local(w);
    pthread_mutex_lock(&p->lock);
  }
  /* The last one out tells tp_destroy, which may be waiting for a worker
   * that detached itself (a task that shut down its own executor). */
  char *spare = w->spare; /* w may be gone once alive is told */
  w->spare = NULL;
  if (--p->alive == 0) pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  if (spare) munmap(spare, SEG_BYTES);
  return NULL;
}

/* ---- the backend ops (any thread) -------------------------------------- */

static void pool_free(tpool_t *p) {
  for (int i = 0; p->workers && i < p->nthreads; i++) {
    dq_ring_t *r = atomic_load(&p->workers[i].ring);
    while (r) {
      dq_ring_t *older = r->older;
      mh__free(r);
      r = older;
    }
  }
  mh__free(p->workers);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  mh__free(p->threads);
  mh__free(p);
}

static int tp_start(mh_executor_t *ex, const mh_executor_options_t *opts) {
  tpool_t *p = mh__calloc(1, sizeof *p);
  if (!p) return MH_ENOMEM;
  p->nthreads = opts->workers;
  p->init = opts->initializer;
  p->initarg = opts->initarg;
  p->ex = ex;
  p->threads = mh__calloc((size_t)p->nthreads, sizeof *p->threads);
  p->workers = mh__calloc((size_t)p->nthreads, sizeof *p->workers);
  int ok = p->threads && p->workers;
  for (int i = 0; ok && i < p->nthreads; i++) {
    tworker_t *w = &p->workers[i];
    dq_ring_t *r = ring_new(DQ_FIRST);
    if (!r) ok = 0;
    atomic_init(&w->ring, r);
    w->p = p;
    w->index = i;
    w->solo = p->nthreads == 1;
    w->rng = 0x9e3779b9u * (unsigned)(i + 1);
  }
  if (!ok) {
    for (int i = 0; p->workers && i < p->nthreads; i++)
      mh__free(atomic_load(&p->workers[i].ring));
    mh__free(p->workers);
    mh__free(p->threads);
    mh__free(p);
    return MH_ENOMEM;
  }
  /* An adaptive mutex spins briefly before it sleeps: the lock is held for
   * a few instructions at a time. */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  int rc = -pthread_mutex_init(&p->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  if (rc) {
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pool_free(p);
    return rc;
  }
  /* On the monotonic clock: a worker's first nap before it sleeps is timed
   * (see worker_main). */
  rc = mh__cond_init(&p->cond, false);
  if (rc) {
    pthread_cond_init(&p->cond, NULL);
    pool_free(p);
    return rc;
  }
  p->alive = p->nthreads;
  /* Help-first waits nest tasks on a worker's stack (a chain of 10^4
   * nested waits is 10^4 task frames deep), so workers get a roomy stack;
   * untouched pages cost nothing.  Past it, help_hop moves to segments. */
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setstacksize(&ta, WORKER_STACK);
  for (int i = 0; i < p->nthreads; i++) {
    int err = pthread_create(&p->threads[i], &ta, worker_main, &p->workers[i]);
    if (err) {
      /* Told apart now, while the started workers still hold their stacks. */
      err = mh__thread_create_error(err, &ta);
      pthread_attr_destroy(&ta);
      pthread_mutex_lock(&p->lock);
      p->stopping = 1;
      p->alive -= p->nthreads - i; /* these never started */
      pthread_cond_broadcast(&p->cond);
      pthread_mutex_unlock(&p->lock);
      for (int j = 0; j < i; j++) pthread_join(p->threads[j], NULL);
      pool_free(p);
      return err;
    }
  }
  pthread_attr_destroy(&ta);
  mh__executor_set_impl(ex, p);
  return 0;
}

/* A worker's own spawn: onto its deque, where it (LIFO) or a thief (FIFO)
 * takes it.  The wake-up rule is the inbox's: an idle worker and nobody
 * spinning means somebody must be signalled, under the lock. */
static __attribute__((noinline, cold)) void wake_one(tpool_t *p) {
  pthread_mutex_lock(&p->lock);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

/* After a push onto a deque.  With `fence`, the push and the reads of idle
 * and spinning are ordered against a worker's way to sleep (it counts
 * itself idle, fences, then looks at the deques), so one of the two sees
 * the other.  Without it (a spawn record: the fence would be a third of a
 * spawn+join), a worker going to sleep at that very moment can miss the
 * push and the push miss the sleeper.  That is safe (the owner runs its
 * own records at its join, so nothing waits on a thief) and short: the
 * next spawn by any worker sees the sleeper, and a worker's first nap is
 * timed (SLEEP_RECHECK), so a lone spawn waits at most that long for a
 * thief.  oneTBB's spawn makes the same trade. */
static inline void wake_for_deque(tpool_t *p, int fence) {
  if (p->nthreads > 1) {
    if (fence) atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&p->idle, memory_order_relaxed) > 0 &&
        atomic_load_explicit(&p->spinning, memory_order_relaxed) == 0)
      wake_one(p);
  }
}

/* Out of line: kept out of mh__tp_submit, whose path from outside (the one
 * issue 11 measures) then saves fewer registers. */
static __attribute__((noinline)) int spawn_local(tpool_t *p, tworker_t *w, mh_future_t *f) {
  mh_future_retain(f);
  mark_deques_used(p);
  if (dq_push(w, (uintptr_t)f)) {
    mh_future_release(f);
    return MH_ENOMEM;
  }
  wake_for_deque(p, 1);
  return 0;
}

/* ---- spawn records (mh_spawn / mh_spawn_join) -------------------------- */

/* A spawn record lives on its parent's stack and is joined before that
 * frame ends, so a spawn allocates nothing, counts no reference and sets up
 * no callback: a push onto the worker's deque.  The join takes the newest
 * item off the same deque, and in the common case (nobody stole it) that
 * item is the record itself, run inline like a plain call, with no atomic
 * read-modify-write and nothing to publish.  Only a stolen record goes
 * through its state word (SP_*), which its thief writes last. */
/* mh_spawn's other cases, out of line so that the common one saves no
 * registers: bad arguments, a caller that is not a worker of ex, or a full
 * ring (which grows here, or, out of memory, runs the child here). */
static __attribute__((noinline)) int spawn_slow(mh_executor_t *ex, mh_spawn_t *t,
                                                mh_spawn_fn fn, void *arg) {
  if (!t || !fn || !ex) return MH_EINVAL;
  t->fn_ = fn;
  t->arg_ = arg;
  t->rc_ = 0;
  t->state_ = SP_QUEUED;
  tworker_t *w = tls_self;
  if (w && w->p->ex == ex && !dq_push(w, (uintptr_t)t | SPAWN_TAG)) {
    wake_for_deque(w->p, 1);
    return 0;
  }
  /* Not a worker of ex (or its deque could not grow): run it here, as a
   * serial program would. */
  t->rc_ = fn(arg);
  t->state_ = SP_DONE;
  return 0;
}

int mh_spawn(mh_executor_t *ex, mh_spawn_t *t, mh_spawn_fn fn, void *arg) {
  tworker_t *w = tls_self;
  if (__builtin_expect(!w || !t || !fn || w->p->ex != ex, 0)) return spawn_slow(ex, t, fn, arg);
  t->fn_ = fn;
  t->arg_ = arg;
  t->rc_ = 0;
  /* Written before the push, whose release store of bottom publishes the
   * record to thieves: a thief may finish it before mh_spawn returns. */
  t->state_ = SP_QUEUED;
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
  int64_t top = atomic_load_explicit(&w->top, memory_order_acquire);
  dq_ring_t *r = atomic_load_explicit(&w->ring, memory_order_relaxed);
  if (__builtin_expect(b - top > r->mask, 0)) return spawn_slow(ex, t, fn, arg);
  /* dq_push without the grow, which spawn_slow does. */
  atomic_store_explicit(&r->slot[b & r->mask], (uintptr_t)t | SPAWN_TAG, memory_order_relaxed);
  atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
  wake_for_deque(w->p, 0);
  return 0;
}

/* mh_spawn_join past its first take: `it` is what that take returned (0,
 * or an item pushed after t, spawned and not yet joined). */
static __attribute__((noinline)) int join_slow(tworker_t *w, mh_spawn_t *t, uintptr_t it) {
  const uintptr_t self = (uintptr_t)t | SPAWN_TAG;
  /* Items above t on the deque were pushed after it; if t was stolen,
   * everything older than it was stolen first, so taking from the bottom
   * meets t, or empties the deque. */
  for (; it; it = dq_take(w)) {
    if (it == self) {
      if (atomic_load_explicit(&w->p->cancelling, memory_order_relaxed))
        return MH_ECANCELED;
      return t->fn_(t->arg_);
    }
    run_item(w, it);
    if (__atomic_load_n(&t->state_, __ATOMIC_ACQUIRE) == SP_DONE) return t->rc_;
  }
  /* Stolen: help until the thief is done, then sleep on the word in short
   * naps (SP_SLEEPER asks the thief for a wake-up). */
  const mh__spin_policy_t pol = MH__SPIN_HELP_WAIT;
  mh__spin_t sp = MH__SPIN_INIT;
  int v;
  while ((v = __atomic_load_n(&t->state_, __ATOMIC_ACQUIRE)) != SP_DONE) {
    if (help_once()) {
      mh__spin_reset(&sp);
      continue;
    }
    if (mh__spin_again(&sp, &pol)) continue;
    if (v == SP_QUEUED &&
        !__atomic_compare_exchange_n(&t->state_, &v, SP_SLEEPER, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
      continue;
    mh__deadline_t dl;
    mh__deadline_init(&dl, MH__HELP_NAP);
    mh__futex_wait(&t->state_, SP_SLEEPER, &dl, MH__FUTEX_PRIVATE);
    mh__spin_reset(&sp);
  }
  return t->rc_;
}

/* The common case inline: the newest item is t itself, not stolen, run
 * here as a tail call.  Anything else goes to join_slow. */
int mh_spawn_join(mh_spawn_t *t) {
  if (!t) return MH_EINVAL;
  if (__atomic_load_n(&t->state_, __ATOMIC_ACQUIRE) == SP_DONE) return t->rc_;
  tworker_t *w = tls_self;
  uintptr_t it = dq_take(w);
  if (__builtin_expect(it == ((uintptr_t)t | SPAWN_TAG), 1) &&
      !atomic_load_explicit(&w->p->cancelling, memory_order_relaxed))
    return t->fn_(t->arg_);
  return join_slow(w, t, it);
}

/* A root from outside: the record lives on this frame, which returns only
 * once the worker that ran it has exchanged its state word (run_outside_root).
 * While it sleeps, on_tick (if given) is called about every `tick` seconds. */
int mh__threads_run_outside(mh_executor_t *ex, mh_spawn_fn fn, void *arg, double tick,
                            void (*on_tick)(void *), void *tick_arg) {
  tpool_t *p = mh__executor_impl(ex);
  outside_t o;
  o.sp.fn_ = fn;
  o.sp.arg_ = arg;
  o.sp.rc_ = 0;
  o.sp.state_ = SP_QUEUED;
  uintptr_t old = atomic_load_explicit(&p->roots, memory_order_relaxed);
  do {
    if (old & CLOSED) return MH_ESHUTDOWN;
    o.next = (outside_t *)(old & ~CLOSED);
  } while (!atomic_compare_exchange_weak(&p->roots, &old, (uintptr_t)&o));
  /* The inbox's wake-up rule (the push above is sequentially consistent,
   * and a worker counts itself idle before its last look at `roots`). */
  if (atomic_load(&p->idle) > 0 && atomic_load(&p->spinning) == 0) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  const mh__spin_policy_t pol = MH__SPIN_FUTURE_WAIT;
  mh__spin_t sp = MH__SPIN_INIT;
  int v;
  while ((v = __atomic_load_n(&o.sp.state_, __ATOMIC_ACQUIRE)) != SP_DONE) {
    if (mh__spin_again(&sp, &pol)) continue;
    if (v == SP_QUEUED &&
        !__atomic_compare_exchange_n(&o.sp.state_, &v, SP_SLEEPER, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
      continue;
    /* SLEEPER stays set across ticks: the worker wakes whoever sleeps. */
    mh__deadline_t dl;
    mh__deadline_init(&dl, on_tick ? tick : MH_FOREVER);
    if (mh__futex_wait(&o.sp.state_, SP_SLEEPER, &dl, MH__FUTEX_PRIVATE) == MH_ETIMEDOUT &&
        on_tick)
      on_tick(tick_arg);
  }
  return o.sp.rc_;
}

int mh__tp_submit(void *impl, mh_future_t *f) {
  tpool_t *p = impl;
  uintptr_t old = atomic_load_explicit(&p->inbox, memory_order_relaxed);
  if (old & CLOSED) return MH_ESHUTDOWN;
  tworker_t *w = tls_self;
  /* After CLOSED (checked above) a push may still land: its owner drains
   * its deque before it leaves, so it runs (or is cancelled) all the same. */
  if (w && w->p == p) return spawn_local(p, w, f);
  /* The queue's reference; taken before the push, after which a worker
   * may run and release f at once. */
  mh_future_retain(f);
  do {
    if (old & CLOSED) {
      mh_future_release(f); /* not the last reference: the caller holds one */
      return MH_ESHUTDOWN;
    }
    *mh__future_link(f) = inbox_list(old);
  } while (!atomic_compare_exchange_weak(&p->inbox, &old, (uintptr_t)f));
  /* Only the push onto an empty inbox may have to wake a worker: a later
   * push finds the earlier futures still there, so whoever takes them (a
   * worker that was awake, spinning or woken for them) takes this one too.
   * See the file comment for why no wake-up is lost. */
  if (!inbox_list(old) && atomic_load(&p->idle) > 0 &&
      atomic_load(&p->spinning) == 0) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  return 0;
}

static int tp_submit(mh_executor_t *ex, mh_future_t *f) {
  return mh__tp_submit(mh__executor_impl(ex), f);
}

static int tp_shutdown(mh_executor_t *ex, unsigned flags) {
  tpool_t *p = mh__executor_impl(ex);
  mh_future_t *cancel = NULL;
  /* After CLOSED no push succeeds, and every push that succeeded is in the
   * inbox: a submit that succeeded is queued before the cancellation below,
   * as when submits took the lock. */
  atomic_fetch_or(&p->inbox, CLOSED);
  atomic_fetch_or(&p->roots, CLOSED);
  atomic_store(&p->stopping, 1);
  pthread_mutex_lock(&p->lock);
  if (flags & MH_SHUTDOWN_CANCEL_FUTURES) {
    atomic_store(&p->cancelling, 1);
    absorb(p);
    cancel = p->head;
    p->head = p->tail = NULL;
    atomic_store(&p->len, 0);
  }
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  /* Complete the cancelled ones outside the lock: their callbacks may call
   * back into the executor. */
  if (cancel) mh__trace_mark(MH__TR_CANCEL, 0, -1, 0, MH_ECANCELED);
  while (cancel) {
    mh_future_t *next = *mh__future_link(cancel);
    mh__future_cancel_queued(cancel);
    mh_future_release(cancel);
    cancel = next;
  }
  if (flags & MH_SHUTDOWN_WAIT) {
    pthread_t self = pthread_self();
    for (int i = 0; i < p->nthreads; i++) {
      /* A task that shuts down its own executor cannot join itself; its
       * thread ends when the task returns and is detached here. */
      if (pthread_equal(self, p->threads[i])) {
        pthread_detach(self);
        continue;
      }
      pthread_join(p->threads[i], NULL);
    }
  }
  return 0;
}

static void tp_destroy(mh_executor_t *ex) {
  tpool_t *p = mh__executor_impl(ex);
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  while (p->alive > 0) pthread_cond_wait(&p->cond, &p->lock);
  pthread_mutex_unlock(&p->lock);
  pool_free(p);
}

const mh__backend_ops_t mh__backend_threads = {
    "threads", tp_start, tp_submit, NULL, tp_shutdown, tp_destroy, NULL};
