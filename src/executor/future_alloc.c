/* SPDX-License-Identifier: MIT */
/* future_alloc.c - the memory of futures: slabs, the slow paths of the
 * per-thread caches, and the fork handlers that keep them sound in a child.
 * The fast path (take from / give to this thread's hot list) is inline in
 * future_alloc.h.
 *
 * Submitting a task must not cost a trip through malloc, and a million
 * pending futures should not cost a million fresh 4 KiB page faults.  So
 * futures come from slabs of SLAB_BYTES, mapped on a 2 MiB boundary and
 * offered to transparent huge pages, and freed futures are recycled: each
 * thread keeps a small cache (mh__fa_tc, no locking), and overflow goes to
 * one global list guarded by fa_lock.  Slab memory is kept for reuse, never
 * returned: the footprint is the peak number of futures alive at once, plus
 * a few spare slabs (SPARE_MAX at most).  Fresh memory is the dearest part
 * of a burst of submits (the kernel clears every page), so while a slab is
 * carved an idle worker of the thread backend faults the next one in
 * (mh__futures_prepare) and the submitter finds it ready.
 *
 * The cache is used only with the C library's allocator: while a hook of
 * mh_replace_allocator is installed futures come from mh__malloc, so that
 * counting and failure injection see them; F_SLAB records the origin.
 * Under AddressSanitizer the cache is off, so it still catches misuse.
 *
 * Invariants:
 *   - every future on a list (fa_free, a cache's hot and spill) is dead
 *     (count 0), came from a slab, and is linked through its `link` field;
 *   - a list of a thread's cache holds exactly n futures from head to tail,
 *     and tail->link == NULL (fa_give relinks it onto fa_free);
 *   - [fa_bump, fa_end) is the uncarved rest of the current slab;
 *   - fa_nspare <= SPARE_MAX, fa_depth <= SPARE_MAX; at most one thread is
 *     SPARE_MAKING at a time (it won the CAS from SPARE_WANTED).
 *
 * Who may touch what:
 *   I: set once (under fa_once), read-only after.
 *   L: fa_lock.
 *   A: atomic (fa_spare_state: stored under fa_lock, except the claim CAS).
 *   T: the owning thread only (_Thread_local).
 *
 * Lock order: fa_lock is a leaf: nothing else is taken while it is held, and
 * it is never held across a slab's mmap/fault-in, a fork or a wait.  The fork
 * handlers take it around fork.  Calls nothing in future.c or the shell.
 * Under AddressSanitizer (future_alloc.h) only mh__futures_prepare is left.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "future_alloc.h"
#include "internal.h"

#ifndef MH__NO_SLAB
#include <sys/mman.h>

/* ---- the global pool (fa_lock) ----------------------------------------- */

#define SLAB_BYTES ((size_t)2 << 20)

static pthread_mutex_t fa_lock = PTHREAD_MUTEX_INITIALIZER;
static mh_future_t *fa_free;   /* L: dead futures, linked by `link` */
static char *fa_bump, *fa_end; /* L: the slab being carved */
/* Slabs faulted in ahead, at most fa_depth of them; guarded.  The depth
 * starts at one and grows (up to SPARE_MAX) each time a submitter found
 * none ready, that is when workers are too slow to keep one ahead. */
#define SPARE_MAX 4
static char *fa_spare[SPARE_MAX]; /* L */
static int fa_nspare, fa_depth = 1; /* L */
/* SPARE_WANTED when fewer than fa_depth spares are ready: an idle worker
 * may then prepare one (mh__futures_prepare).  SPARE_MAKING while one
 * does.  Written under fa_lock, except the claim (a CAS). */
enum { SPARE_NONE, SPARE_WANTED, SPARE_MAKING };
static _Atomic int fa_spare_state; /* A */
static pthread_key_t fa_key;       /* I */
static pthread_once_t fa_once = PTHREAD_ONCE_INIT;

/* ---- the per-thread caches (T) ----------------------------------------- */

_Thread_local mh__fa_cache_t mh__fa_tc; /* T */

/* Give a whole list to the global one. */
static void fa_give(mh__fa_list_t *l) {
  if (!l->n) return;
  pthread_mutex_lock(&fa_lock);
  l->tail->link = fa_free;
  fa_free = l->head;
  pthread_mutex_unlock(&fa_lock);
  *l = (mh__fa_list_t){NULL, NULL, 0};
}

/* At thread exit the thread's cache goes back to the global list. */
static void fa_thread_exit(void *unused) {
  (void)unused;
  fa_give(&mh__fa_tc.hot);
  fa_give(&mh__fa_tc.spill);
}

/* ---- fork and thread exit ---------------------------------------------- */

/* A child of fork has only the forking thread: the lock may have been held
 * by another, and a spare may have been half made.  The lock is taken
 * around fork (it is never held across anything that forks or waits): a
 * thread forked in the middle of an update (fa_bump set to a new slab but
 * fa_end still the old one's end, say) would leave the child carving
 * memory that is not a slab. */
static void fa_atfork_prepare(void) { pthread_mutex_lock(&fa_lock); }

static void fa_atfork_parent(void) { pthread_mutex_unlock(&fa_lock); }

static void fa_atfork_child(void) {
  pthread_mutex_init(&fa_lock, NULL);
  if (atomic_load(&fa_spare_state) == SPARE_MAKING)
    atomic_store(&fa_spare_state, SPARE_NONE);
}

static void fa_init(void) {
  pthread_key_create(&fa_key, fa_thread_exit);
  pthread_atfork(fa_atfork_prepare, fa_atfork_parent, fa_atfork_child);
}

/* Make sure this thread's cache is given back when the thread ends. */
void mh__fa_register(void) {
  pthread_once(&fa_once, fa_init);
  mh__fa_tc.registered = 1;
  pthread_setspecific(fa_key, &mh__fa_tc.registered);
}

/* ---- slabs ------------------------------------------------------------- */

/* Map one slab on a 2 MiB boundary and fault it in; NULL if out of memory.
 * Called without fa_lock: faulting 2 MiB in takes a while. */
static char *slab_map(void) {
  /* Map twice the size and trim, to get a 2 MiB-aligned slab that the
   * kernel may back with one huge page. */
  size_t len = 2 * SLAB_BYTES;
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (m == MAP_FAILED) return NULL;
  char *a =
      (char *)(((uintptr_t)m + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
  if (a > m) munmap(m, (size_t)(a - m));
  if (a + SLAB_BYTES < m + len)
    munmap(a + SLAB_BYTES, (size_t)(m + len - (a + SLAB_BYTES)));
#ifdef MADV_HUGEPAGE
  madvise(a, SLAB_BYTES, MADV_HUGEPAGE);
#endif
  /* Fault the whole slab in with one system call.  Where the kernel could
   * not give a huge page, carving would otherwise take 512 separate page
   * faults per slab, and a fault is far dearer than the kernel's own loop
   * (on a virtual machine, very much so).  Linux 5.14+; elsewhere carving
   * faults the pages in as it goes. */
  mh__prefault(a, SLAB_BYTES);
  return a;
}

int mh__futures_prepare(void) {
  int want = SPARE_WANTED;
  if (atomic_load_explicit(&fa_spare_state, memory_order_relaxed) != want ||
      !atomic_compare_exchange_strong(&fa_spare_state, &want, SPARE_MAKING))
    return 0;
  char *a = slab_map();
  pthread_mutex_lock(&fa_lock);
  if (a && fa_nspare < SPARE_MAX) {
    fa_spare[fa_nspare++] = a;
    a = NULL;
  }
  atomic_store(&fa_spare_state,
               fa_nspare < fa_depth ? SPARE_WANTED : SPARE_NONE);
  pthread_mutex_unlock(&fa_lock);
  if (a) munmap(a, SLAB_BYTES); /* cannot happen: only one maker at a time */
  return 1;
}

/* ---- allocation and release -------------------------------------------- */

/* Refill this thread's hot list (empty) with MH__FA_MOVE futures; 0 or
 * MH_ENOMEM. */
int mh__fa_refill(void) {
  if (!mh__fa_tc.registered) mh__fa_register();
  mh__fa_list_t l = {NULL, NULL, 0};
  pthread_mutex_lock(&fa_lock);
  while (l.n < MH__FA_MOVE && fa_free) {
    mh_future_t *f = fa_free;
    fa_free = f->link;
    f->link = l.head;
    l.head = f;
    if (!l.tail) l.tail = f;
    l.n++;
  }
  while (l.n < MH__FA_MOVE) {
    if ((size_t)(fa_end - fa_bump) < sizeof(mh_future_t)) {
      char *a = fa_nspare ? fa_spare[--fa_nspare] : NULL;
      if (!a) {
        if (fa_depth < SPARE_MAX &&
            atomic_load(&fa_spare_state) != SPARE_NONE)
          fa_depth++; /* a spare was wanted, and not ready in time */
        /* No spare ready: map one here, without the lock (others may give
         * futures back meanwhile, or carve the slab another thread maps). */
        pthread_mutex_unlock(&fa_lock);
        a = slab_map();
        pthread_mutex_lock(&fa_lock);
        if (!a) break;
        if ((size_t)(fa_end - fa_bump) >= sizeof(mh_future_t)) {
          /* Another thread installed a slab meanwhile: keep ours as a
           * spare (or drop it if there is no room). */
          if (fa_nspare < SPARE_MAX)
            fa_spare[fa_nspare++] = a;
          else
            munmap(a, SLAB_BYTES);
          continue;
        }
      }
      fa_bump = a;
      fa_end = a + SLAB_BYTES;
      /* Ask an idle worker to prepare the next slab while this one is
       * carved, so that a burst of submits does not wait for the kernel
       * to clear memory. */
      if (fa_nspare < fa_depth &&
          atomic_load(&fa_spare_state) == SPARE_NONE)
        atomic_store(&fa_spare_state, SPARE_WANTED);
    }
    mh_future_t *f = (mh_future_t *)(void *)fa_bump;
    fa_bump += sizeof(mh_future_t);
    f->link = l.head;
    l.head = f;
    if (!l.tail) l.tail = f;
    l.n++;
  }
  pthread_mutex_unlock(&fa_lock);
  mh__fa_tc.hot = l;
  return l.n ? 0 : MH_ENOMEM;
}

void mh__fa_spill(void) {
  fa_give(&mh__fa_tc.spill);
  mh__fa_tc.spill = mh__fa_tc.hot;
  mh__fa_tc.hot = (mh__fa_list_t){NULL, NULL, 0};
}

#else /* MH__NO_SLAB: every future from mh__malloc */
int mh__futures_prepare(void) { return 0; }
#endif /* MH__NO_SLAB */
