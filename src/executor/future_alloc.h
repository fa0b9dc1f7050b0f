/* SPDX-License-Identifier: MIT */
/* future_alloc.h - the fast path of the futures' allocator, inline in its
 * callers (future.c, and executor.c's submit through mh__future_make); the
 * slow paths are in future_alloc.c.  Never installed.
 *
 * A submit takes a future from this thread's hot list and a release pushes
 * it back: no lock, no call.  Only an empty or full hot list goes to
 * future_alloc.c.  (Measured: with the fast path behind a call into another
 * file, submit+result costs about 10% more CPU per task.)
 *
 * Invariants (see future_alloc.c for the global ones): a list holds exactly
 * n dead slab futures from head to tail, linked through `link`, and
 * tail->link == NULL; hot.n <= MH__FA_MOVE.
 *
 * Who may touch what: T: the owning thread only (the cache is
 * _Thread_local).  Lock order: the fast path takes no lock.
 */
#ifndef MH_EXECUTOR_FUTURE_ALLOC_H
#define MH_EXECUTOR_FUTURE_ALLOC_H

#include "future.h"
#include "internal.h"

/* ---- the sanitizer switch ---------------------------------------------- */

/* Under AddressSanitizer the cache is off (every future from mh__malloc), so
 * that it still catches misuse. */
#if MH__ASAN
#define MH__NO_SLAB 1
#endif

#ifndef MH__NO_SLAB

/* ---- the per-thread cache (T) ------------------------------------------ */

/* Futures moved at once between a thread's cache and the global list. */
#define MH__FA_MOVE 256

typedef struct mh__fa_list {
  mh_future_t *head, *tail;
  size_t n;
} mh__fa_list_t;

/* This thread's cache: a hot list of at most MH__FA_MOVE futures and, behind
 * it, one full list spilled from it.  Both lists know their tails, so moving
 * a whole list to or from the global one costs O(1): no walk over cold
 * futures. */
typedef struct mh__fa_cache {
  mh__fa_list_t hot, spill; /* T */
  int registered;           /* T: the thread-exit hook is set */
} mh__fa_cache_t;

/* Hidden: a TLS symbol the linker need not look up through the GOT. */
extern _Thread_local mh__fa_cache_t mh__fa_tc __attribute__((visibility("hidden")));

/* The slow paths (future_alloc.c).  Refill the empty hot list: 0 or
 * MH_ENOMEM. */
int mh__fa_refill(void);
/* The hot list is full: it becomes the spilled one, and what was spilled
 * before goes to the global list. */
void mh__fa_spill(void);
/* Set the hook that gives this thread's cache back when it ends. */
void mh__fa_register(void);

/* ---- allocation and release (any thread, for itself) ------------------- */

/* Memory for one future; *flags gets F_SLAB when it comes from a slab.  NULL
 * when out of memory.  The cache is used only with the C library's
 * allocator: while a hook of mh_replace_allocator is installed, futures come
 * from mh__malloc so that counting and failure injection see them. */
static inline mh_future_t *mh__fa_alloc(uint32_t *flags) {
  if (mh__allocator_is_default()) {
    mh__fa_cache_t *c = &mh__fa_tc;
    if (!c->hot.head) {
      c->hot = c->spill;
      c->spill = (mh__fa_list_t){NULL, NULL, 0};
    }
    if (c->hot.head || mh__fa_refill() == 0) {
      mh_future_t *f = c->hot.head;
      c->hot.head = f->link;
      if (!c->hot.head) {
        c->hot.tail = NULL;
      } else {
        /* The next submit's future is likely cold (fresh, or last touched
         * by a worker): start fetching both its lines now. */
        __builtin_prefetch(c->hot.head, 1);
        __builtin_prefetch((char *)c->hot.head + sizeof(mh_future_t) - 1, 1);
      }
      c->hot.n--;
      *flags = F_SLAB;
      return f;
    }
  }
  *flags = 0;
  return mh__malloc(sizeof(mh_future_t));
}

/* Give back the memory of a dead future; `state` is its last state word
 * (only F_SLAB is looked at). */
static inline void mh__fa_release(mh_future_t *f, uint32_t state) {
  if (!(state & F_SLAB)) {
    mh__free(f);
    return;
  }
  mh__fa_cache_t *c = &mh__fa_tc;
  if (!c->registered) mh__fa_register();
  if (c->hot.n == MH__FA_MOVE) mh__fa_spill();
  f->link = c->hot.head;
  c->hot.head = f;
  if (!c->hot.tail) c->hot.tail = f;
  c->hot.n++;
}

#else /* MH__NO_SLAB */

static inline mh_future_t *mh__fa_alloc(uint32_t *flags) {
  *flags = 0;
  return mh__malloc(sizeof(mh_future_t));
}

static inline void mh__fa_release(mh_future_t *f, uint32_t state) {
  (void)state;
  mh__free(f);
}

#endif /* MH__NO_SLAB */

/* ---- a new future, inline in the submit path --------------------------- */

/* For executor.c's submit (the one maker of futures), inline: a
 * PENDING future with one reference (the caller's) that will run `t`, or
 * NULL when out of memory.  Inlined there, the task's fields go straight
 * into the future instead of through a copy on the stack and a call. */
static inline mh_future_t *mh__future_make(const mh__task_t *t) {
  uint32_t flags;
  mh_future_t *f = mh__fa_alloc(&flags);
  if (!f) return NULL;
  atomic_init(&f->word, REF_ONE | S_PENDING | flags);
  f->code = 0;
  f->died_pid = 0;
  f->link = NULL;
  f->cbs = NULL;
  f->task = *t;
  return f;
}

#endif /* MH_EXECUTOR_FUTURE_ALLOC_H */
