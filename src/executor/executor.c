/* executor.c - the generic executor: the shell over a backend, futures,
 * map / imap built from chunk futures, wait and as_completed.
 *
 * Futures.  A future is small (about 110 bytes) so that a million pending
 * ones fit in little memory: it has no mutex and no condition variable.  Its
 * life is one 32-bit state word (the low half of a 64-bit atomic whose high
 * half is the reference count):
 *
 *     PENDING -> RUNNING -> FINISHED        (a backend ran it)
 *     PENDING -> CANCELLED                  (mh_future_cancel, or a
 *                                            cancelling shutdown)
 *     RUNNING -> PENDING                    (a backend re-queues it)
 *
 * plus flag bits: F_WAITERS (a thread sleeps on the word with a futex, so the
 * thread that completes it must wake it), F_CBS (callbacks may be attached,
 * so the completing thread must look at the list), F_DIED (the worker died).
 * Every transition is one compare-and-swap that keeps the flags, so the
 * completing thread learns in the same atomic step whether anybody has to be
 * woken; a future nobody waits on completes without a system call.
 *
 * `code` and `died_pid` are written by the one thread that moves
 * the future to FINISHED, before the release-CAS; readers acquire the state
 * first.  A cancelled future's result comes from the state, never from
 * `code`, so a cancel racing with a start never writes the same field.
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
 * Waiting on many futures (wait, as_completed, unordered imap) uses a
 * completion queue `cq`: one internal callback node per future that, when
 * fired, appends its index to the cq's ready ring under the cq's mutex and
 * signals its condition variable.  A cq is reference counted (its owner plus
 * each armed node), because a node detached by a completing thread may fire
 * after the owner has given up on it; the last reference frees it.
 *
 * Lock order: a stripe mutex may be held while taking nothing else; a cq
 * mutex is taken only by a node firing (no stripe held then) and by the
 * cq's owner.  Backends' locks are never held when futures complete with
 * callbacks (see executor_threads.c).
 *
 * Map.  mh_executor_map / imap cut the n items into chunks; each chunk is
 * one future (mh__task_t with count > 1).  At most `window` chunks (a few per
 * worker) are in flight: when one is consumed the next is submitted into its
 * slot, so memory stays bounded for any n.  A backend with a `map` op (the
 * process backend) may run a whole mh_executor_map itself instead.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "executor_internal.h"
#include "internal.h"

/* ---- the state word ---------------------------------------------------- */

enum {
  S_PENDING = 0,
  S_RUNNING = 1,
  S_FINISHED = 2,
  S_CANCELLED = 3,
  S_MASK = 3,
  F_WAITERS = 4,
  F_CBS = 8,
  F_DIED = 16,
  F_SLAB = 32 /* the future's memory comes from the slab cache */
};

#define IS_DONE(s) (((s) & S_MASK) >= S_FINISHED)

typedef struct mh__cb mh__cb_t;
typedef struct mh__cq mh__cq_t;

/* A callback node: either a user callback (heap, freed after it ran) or a
 * completion-queue node (part of a cq's array). */
struct mh__cb {
  mh__cb_t *next;
  mh__cq_t *cq; /* NULL for a user callback */
  union {
    struct {
      mh_future_cb fn;
      void *arg;
    } user;
    size_t index; /* the node's index in its cq */
  } u;
};

/* The state word (low half) and the reference count (high half) share one
 * 64-bit atomic, so that a worker can finish a future and drop its own
 * reference in one step (mh__future_finish_release).  Waiters sleep with a
 * futex on the low half alone. */
#define REF_ONE ((uint64_t)1 << 32)
#define REFS(w) ((uint32_t)((w) >> 32))

struct mh_future_s {
  _Atomic uint64_t word;
  /* Valid once FINISHED (see the file comment).  With F_DIED it holds the
   * dead worker's exit status instead: the result is then MH_EWORKERDIED
   * whatever it says.  Sharing the field keeps a future at 96 bytes, which
   * matters when a million of them are pending (each is fresh memory the
   * kernel must clear). */
  int code;
  int died_pid; /* valid when F_DIED */
  mh_future_t *link; /* the backend's queue link (mh__future_link) */
  mh__cb_t *cbs;     /* guarded by the future's stripe */
  mh__task_t task;
};

/* ---- the state word's accessors ---------------------------------------- */

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

/* ---- futex ------------------------------------------------------------- */

/* Sleep while *addr == val, until woken or the deadline passes.  0 (woken,
 * value changed, or spurious: callers re-check) or MH_ETIMEDOUT. */
static int futex_wait(void *addr, uint32_t val,
                      const mh__deadline_t *dl) {
  long rc;
  if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
  if (dl->kind == MH__DL_FOREVER) {
    rc = syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT_PRIVATE, val, NULL,
                 NULL, 0);
  } else {
    /* FUTEX_WAIT_BITSET takes an absolute time on CLOCK_MONOTONIC, the clock
     * of mh__deadline_t. */
    rc = syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT_BITSET_PRIVATE, val,
                 &dl->at, NULL, FUTEX_BITSET_MATCH_ANY);
  }
  if (rc == -1 && errno == ETIMEDOUT) return MH_ETIMEDOUT;
  return 0;
}

static void futex_wake_all(void *addr) {
  syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
          0);
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
  pthread_mutex_t lock;
  pthread_cond_t cond;
  _Atomic size_t refs; /* the owner + every armed node */
  size_t cap;          /* nodes and ready-ring slots */
  size_t head, count;  /* ready ring, guarded by lock */
  int sleeping;        /* the owner waits on cond; guarded by lock */
  size_t *ready;
  mh__cb_t *nodes;
  unsigned char *armed; /* owner only: node is (or was) on a list */
  mh_future_t **futs;   /* owner only: the future each node is armed on */
};

static void cq_unref(mh__cq_t *cq) {
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

static int cq_new(mh__cq_t **out, size_t cap) {
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

static void cq_push(mh__cq_t *cq, size_t index) {
  pthread_mutex_lock(&cq->lock);
  cq->ready[(cq->head + cq->count) % cq->cap] = index;
  cq->count++;
  if (cq->sleeping) pthread_cond_signal(&cq->cond);
  pthread_mutex_unlock(&cq->lock);
}

/* Pop a ready index, waiting until the deadline.  0 or MH_ETIMEDOUT. */
static int cq_pop(mh__cq_t *cq, const mh__deadline_t *dl, size_t *index) {
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
  }
  pthread_mutex_unlock(&cq->lock);
  return rc;
}

static void cq_fire(mh__cb_t *node) {
  mh__cq_t *cq = node->cq;
  cq_push(cq, node->u.index);
  cq_unref(cq);
}

/* Arm node `index` of cq on f: when f completes, index is pushed.  If f is
 * already done it is pushed now. */
static void cq_arm(mh__cq_t *cq, size_t index, mh_future_t *f) {
  pthread_mutex_t *m = stripe_of(f);
  mh__cb_t *node = &cq->nodes[index];
  cq->futs[index] = f;
  pthread_mutex_lock(m);
  uint32_t s = st_load(f, memory_order_acquire);
  for (;;) {
    if (IS_DONE(s)) {
      pthread_mutex_unlock(m);
      cq->armed[index] = 0;
      cq_push(cq, index);
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
static void cq_disarm(mh__cq_t *cq, size_t index) {
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
  if (found) cq_unref(cq);
}

/* ---- futures ----------------------------------------------------------- */

/* ---- future memory ------------------------------------------------------
 *
 * Submitting a task must not cost a trip through malloc, and a million
 * pending futures should not cost a million fresh 4 KiB page faults.  So
 * futures come from slabs of SLAB_BYTES, mapped on a 2 MiB boundary and
 * offered to transparent huge pages, and freed futures are recycled: each
 * thread keeps a small cache (tc_*, no locking), and overflow goes to one
 * global list guarded by fa_lock.  Slab memory is kept for reuse, never
 * returned: the footprint is the peak number of futures alive at once, plus
 * a few spare slabs (SPARE_MAX at most).  Fresh memory is the dearest part of a burst of submits
 * (the kernel clears every page), so while a slab is carved an idle worker
 * of the thread backend faults the next one in (mh__futures_prepare) and
 * the submitter finds it ready.
 *
 * The cache is used only with the C library's allocator: while a hook of
 * mh_replace_allocator is installed futures come from mh__malloc, so that
 * counting and failure injection see them; F_SLAB records the origin.
 * Under AddressSanitizer the cache is off, so it still catches misuse. */

#if defined(__SANITIZE_ADDRESS__)
#define MH__NO_SLAB 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MH__NO_SLAB 1
#endif
#endif

#ifndef MH__NO_SLAB
#include <sys/mman.h>

#define SLAB_BYTES ((size_t)2 << 20)
#define TC_MOVE 256 /* futures moved between a thread and the global list */

static pthread_mutex_t fa_lock = PTHREAD_MUTEX_INITIALIZER;
static mh_future_t *fa_free;    /* guarded by fa_lock, linked by `link` */
static char *fa_bump, *fa_end;  /* the slab being carved; guarded */
/* Slabs faulted in ahead, at most fa_depth of them; guarded.  The depth
 * starts at one and grows (up to SPARE_MAX) each time a submitter found
 * none ready, that is when workers are too slow to keep one ahead. */
#define SPARE_MAX 4
static char *fa_spare[SPARE_MAX];
static int fa_nspare, fa_depth = 1;
/* SPARE_WANTED when fewer than fa_depth spares are ready: an idle worker
 * may then prepare one (mh__futures_prepare).  SPARE_MAKING while one
 * does.  Written under fa_lock, except the claim (a CAS). */
enum { SPARE_NONE, SPARE_WANTED, SPARE_MAKING };
static _Atomic int fa_spare_state;
static pthread_key_t fa_key;
static pthread_once_t fa_once = PTHREAD_ONCE_INIT;
/* This thread's cache: a hot list of at most TC_MOVE futures and, behind
 * it, one full list spilled from it.  Both lists know their tails, so
 * moving a whole list to or from the global one costs O(1): no walk over
 * cold futures. */
typedef struct tc_list {
  mh_future_t *head, *tail;
  size_t n;
} tc_list_t;
static _Thread_local tc_list_t tc_hot, tc_spill;
static _Thread_local int tc_registered;

/* Give a whole list to the global one. */
static void fa_give(tc_list_t *l) {
  if (!l->n) return;
  pthread_mutex_lock(&fa_lock);
  l->tail->link = fa_free;
  fa_free = l->head;
  pthread_mutex_unlock(&fa_lock);
  *l = (tc_list_t){NULL, NULL, 0};
}

/* At thread exit the thread's cache goes back to the global list. */
static void fa_thread_exit(void *unused) {
  (void)unused;
  fa_give(&tc_hot);
  fa_give(&tc_spill);
}

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
static void fa_register(void) {
  pthread_once(&fa_once, fa_init);
  tc_registered = 1;
  pthread_setspecific(fa_key, &tc_registered);
}

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

/* Refill this thread's hot list (empty) with TC_MOVE futures; 0 or
 * MH_ENOMEM. */
static int fa_refill(void) {
  if (!tc_registered) fa_register();
  tc_list_t l = {NULL, NULL, 0};
  pthread_mutex_lock(&fa_lock);
  while (l.n < TC_MOVE && fa_free) {
    mh_future_t *f = fa_free;
    fa_free = f->link;
    f->link = l.head;
    l.head = f;
    if (!l.tail) l.tail = f;
    l.n++;
  }
  while (l.n < TC_MOVE) {
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
  tc_hot = l;
  return l.n ? 0 : MH_ENOMEM;
}

static mh_future_t *fa_alloc(uint32_t *flags) {
  if (mh__allocator_is_default()) {
    if (!tc_hot.head) {
      tc_hot = tc_spill;
      tc_spill = (tc_list_t){NULL, NULL, 0};
    }
    if (tc_hot.head || fa_refill() == 0) {
      mh_future_t *f = tc_hot.head;
      tc_hot.head = f->link;
      if (!tc_hot.head) {
        tc_hot.tail = NULL;
      } else {
        /* The next submit's future is likely cold (fresh, or last touched
         * by a worker): start fetching both its lines now. */
        __builtin_prefetch(tc_hot.head, 1);
        __builtin_prefetch((char *)tc_hot.head + sizeof(mh_future_t) - 1, 1);
      }
      tc_hot.n--;
      *flags = F_SLAB;
      return f;
    }
  }
  *flags = 0;
  return mh__malloc(sizeof(mh_future_t));
}

static void fa_release(mh_future_t *f, uint32_t state) {
  if (!(state & F_SLAB)) {
    mh__free(f);
    return;
  }
  if (!tc_registered) fa_register();
  if (tc_hot.n == TC_MOVE) {
    /* The hot list is full: it becomes the spilled one, and what was
     * spilled before goes to the global list. */
    fa_give(&tc_spill);
    tc_spill = tc_hot;
    tc_hot = (tc_list_t){NULL, NULL, 0};
  }
  f->link = tc_hot.head;
  tc_hot.head = f;
  if (!tc_hot.tail) tc_hot.tail = f;
  tc_hot.n++;
}
#else
int mh__futures_prepare(void) { return 0; }

static mh_future_t *fa_alloc(uint32_t *flags) {
  *flags = 0;
  return mh__malloc(sizeof(mh_future_t));
}

static void fa_release(mh_future_t *f, uint32_t state) {
  (void)state;
  mh__free(f);
}
#endif

static mh_future_t *future_new(const mh__task_t *t) {
  uint32_t flags;
  mh_future_t *f = fa_alloc(&flags);
  if (!f) return NULL;
  atomic_init(&f->word, REF_ONE | S_PENDING | flags);
  f->code = 0;
  f->died_pid = 0;
  f->link = NULL;
  f->cbs = NULL;
  f->task = *t;
  return f;
}

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
  fa_release(f, (uint32_t)w);
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
  if (old & F_WAITERS) futex_wake_all(st_addr(f));
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

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Before sleeping, look a little while: a tiny task is often done within a
 * microsecond, and then neither side makes a system call. */
#define WAIT_SPINS 100
#define WAIT_YIELDS 8

static int wait_dl(mh_future_t *f, const mh__deadline_t *dl) {
  uint32_t s = st_load(f, memory_order_acquire);
  if (!IS_DONE(s) && dl->kind != MH__DL_NOW) {
    /* Then yield a few times: with more threads than cores the worker
     * that will finish f may be waiting for this very core. */
    for (int i = 0; i < WAIT_SPINS + WAIT_YIELDS && !IS_DONE(s); i++) {
      if (i < WAIT_SPINS)
        cpu_relax();
      else
        sched_yield();
      s = st_load(f, memory_order_acquire);
    }
  }
  while (!IS_DONE(s)) {
    if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
    if (!(s & F_WAITERS)) {
      if (!st_cas(f, &s, s | F_WAITERS)) continue;
      s |= F_WAITERS;
    }
    if (futex_wait(st_addr(f), s, dl) == MH_ETIMEDOUT) {
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
  return wait_dl(f, &dl);
}

int mh_future_result(mh_future_t *f, double timeout) {
  /* Check the timeout cheaply first: a done future needs no deadline. */
  if (!f || timeout != timeout || (timeout < 0 && timeout != MH_FOREVER))
    return MH_EINVAL;
  uint32_t s = st_load(f, memory_order_acquire);
  if (!IS_DONE(s)) {
    mh__deadline_t dl;
    if (mh__deadline_init(&dl, timeout)) return MH_EINVAL;
    int rc = wait_dl(f, &dl);
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

/* ---- wait and as_completed --------------------------------------------- */

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
    for (size_t i = 0; i < n && !rc; i++) rc = wait_dl(fs[i], &dl);
    done = 0;
    for (size_t i = 0; i < n; i++) done += (size_t)mh_future_done(fs[i]);
  } else {
    mh__cq_t *cq;
    rc = cq_new(&cq, n);
    if (rc) return rc;
    /* Count again from the ready ring: futures already done are pushed at
     * once by cq_arm. */
    done = 0;
    failed = 0;
    for (size_t i = 0; i < n; i++) cq_arm(cq, i, fs[i]);
    while (!rc && !wait_satisfied(mode, done, n, failed)) {
      size_t idx;
      rc = cq_pop(cq, &dl, &idx);
      if (!rc) {
        done++;
        failed |= is_failure(fs[idx]);
      }
    }
    for (size_t i = 0; i < n; i++) cq_disarm(cq, i);
    cq_unref(cq);
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

struct mh_as_completed_s {
  mh__cq_t *cq;
  mh_future_t **fs; /* distinct futures, each with a reference */
  size_t n, yielded;
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
  if (cq_new(&ac->cq, m)) goto nomem;
  for (size_t i = 0, k = 0; i < n; i++)
    if (keep[i]) ac->fs[k++] = fs[i];
  mh__free(pos);
  mh__free(keep);
  ac->n = m;
  for (size_t i = 0; i < m; i++) mh_future_retain(ac->fs[i]);
  for (size_t i = 0; i < m; i++) cq_arm(ac->cq, i, ac->fs[i]);
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
  int rc = cq_pop(ac->cq, &dl, &idx);
  if (rc) return rc;
  ac->yielded++;
  *f = ac->fs[idx];
  return 0;
}

void mh_as_completed_free(mh_as_completed_t *ac) {
  if (!ac) return;
  if (ac->cq) {
    for (size_t i = 0; i < ac->n; i++) cq_disarm(ac->cq, i);
    cq_unref(ac->cq);
  }
  for (size_t i = 0; i < ac->n; i++) mh_future_release(ac->fs[i]);
  mh__free(ac->fs);
  mh__free(ac);
}

/* ---- the executor shell ------------------------------------------------ */

/* The backends.  Threads and processes are always part of the library and
 * referred to directly.  MPI lives in the optional manyhands_mpi library: its
 * symbol is a weak reference, so a build without MPI links and says
 * MH_ENOTSUP. */
#ifndef MH_HAVE_EXECUTOR_MPI
extern const mh__backend_ops_t mh__backend_mpi __attribute__((weak));
#endif

static const mh__backend_ops_t *backend_ops(mh_backend_t b) {
  switch (b) {
  case MH_BACKEND_THREADS:
    return &mh__backend_threads;
  case MH_BACKEND_PROCESSES:
    return &mh__backend_processes;
  case MH_BACKEND_MPI:
    return &mh__backend_mpi;
  }
  return NULL;
}

struct mh_executor_s {
  const mh__backend_ops_t *ops;
  void *impl;
  mh_executor_options_t opts; /* workers resolved */
  _Atomic int closed;         /* a shutdown has begun (fast check) */
  /* Shutdown bookkeeping, guarded by slock: whether the backend's shutdown
   * was called, with which flags, and whether a waiting call completed. */
  pthread_mutex_t slock;
  pthread_cond_t scond;
  int called, waiting, waited;
  unsigned first_flags;
};

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
      o.max_tasks_per_child < 0 || o.grace != o.grace)
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
  atomic_init(&ex->closed, 0);
  int rc = -pthread_mutex_init(&ex->slock, NULL);
  if (rc) goto fail_ex;
  rc = mh__cond_init(&ex->scond, false);
  if (rc) goto fail_mutex;
  rc = ops->start(ex, &ex->opts);
  if (rc) goto fail_cond;
  *out = ex;
  return 0;
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

static int submit_task(mh_executor_t *ex, const mh__task_t *t,
                       mh_future_t **fut);

int mh_executor_submit(mh_executor_t *ex, mh_task_fn fn, const void *in,
                       size_t in_size, void *out, size_t out_size, void *ctx,
                       mh_future_t **fut) {
  if (!ex || !fn || !fut || (!in && in_size) || (!out && out_size))
    return MH_EINVAL;
  mh__task_t t = {fn, ctx, in, in_size, out, out_size, 1, NULL};
  return submit_task(ex, &t, fut);
}

int mh_executor_shutdown(mh_executor_t *ex, unsigned flags) {
  if (!ex || (flags & ~(MH_SHUTDOWN_WAIT | MH_SHUTDOWN_CANCEL_FUTURES)))
    return MH_EINVAL;
  atomic_store(&ex->closed, 1);
  int rc = 0;
  pthread_mutex_lock(&ex->slock);
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
    flags |= ex->first_flags & MH_SHUTDOWN_CANCEL_FUTURES;
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
  ex->ops->destroy(ex);
  pthread_cond_destroy(&ex->scond);
  pthread_mutex_destroy(&ex->slock);
  mh__free(ex);
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
  return 0;
}

/* The task of chunk c: items [c*chunk, min(n, (c+1)*chunk)). */
static mh__task_t chunk_task(mh_task_fn fn, void *ctx, const void *in,
                             size_t in_size, void *out, size_t out_size,
                             size_t n, size_t chunk, size_t c, int *statuses) {
  size_t lo = c * chunk, cnt = n - lo < chunk ? n - lo : chunk;
  mh__task_t t = {fn,       ctx, in ? (const char *)in + lo * in_size : NULL,
                  in_size,  out ? (char *)out + lo * out_size : NULL,
                  out_size, cnt, statuses};
  return t;
}

static int submit_task(mh_executor_t *ex, const mh__task_t *t,
                       mh_future_t **fut) {
  if (atomic_load_explicit(&ex->closed, memory_order_relaxed))
    return MH_ESHUTDOWN;
  mh_future_t *f = future_new(t);
  if (!f) return MH_ENOMEM;
  int rc = ex->ops->submit(ex, f);
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


struct mh_map_iter_s {
  mh_executor_t *ex;
  mh_task_fn fn;
  void *ctx;
  const void *in;
  void *out;
  size_t in_size, out_size, n, chunk, nchunks, w;
  unsigned flags;
  mh_future_t **ring; /* slot s holds chunk slot_chunk[s] */
  size_t *slot_chunk;
  int *st;            /* w * chunk statuses */
  mh__cq_t *cq;       /* unordered: ready slots */
  size_t next_submit; /* chunks submitted (or failed to submit) so far */
  int submit_rc;
  size_t yielded;
  /* The chunk being yielded. */
  int have_cur;
  size_t cur_slot, cur_item, cur_cnt;
  int cur_all; /* when != 0, every item of the chunk gets this code */
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
      cq_arm(it->cq, s, it->ring[s]);
    } else {
      cq_push(it->cq, s);
    }
  }
}

int mh_executor_imap(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                     const void *in, size_t in_size, void *out,
                     size_t out_size, size_t n, size_t chunksize,
                     unsigned flags, mh_map_iter_t **out_it) {
  int rc = map_check(ex, fn, in, in_size, out, out_size, n);
  if (rc || !out_it || (flags & ~MH_MAP_UNORDERED)) return MH_EINVAL;
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
  if ((flags & MH_MAP_UNORDERED) && cq_new(&it->cq, w)) goto nomem;
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
      int rc = cq_pop(it->cq, &dl, &s);
      if (rc) return rc;
      it->cq->armed[s] = 0; /* it fired: nothing to disarm */
    } else {
      /* In order: chunk number yielded/chunk lives in slot (that % w). */
      s = (it->yielded / it->chunk) % it->w;
      if (it->ring[s]) {
        int rc = wait_dl(it->ring[s], &dl);
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
    for (size_t s = 0; s < it->w; s++) cq_disarm(it->cq, s);
    cq_unref(it->cq);
  }
  for (size_t s = 0; s < it->w; s++) mh_future_release(it->ring[s]);
  mh__free(it->ring);
  mh__free(it->slot_chunk);
  mh__free(it->st);
  mh__free(it);
}
