/* SPDX-License-Identifier: MIT */
/* queue.c - queue.Queue for C: FIFO, LIFO and priority queues of fixed-size items.
 *
 * Two stores sit under one blocking layer.
 *
 * The ring (bounded FIFO queues whose storage is small enough to allocate up
 * front) is lock-free on its fast path: an array of `cap` slots, each a
 * sequence number followed by the item, in the manner of D. Vyukov's bounded
 * MPMC queue.  Invariants: `tail` counts the slots ever claimed by producers
 * and `head` those ever claimed by consumers, head <= tail <= head + cap.
 * Slot i % cap is free for the producer that claims position i when its
 * sequence equals i, holds a published item for the consumer of position i
 * when it equals i + 1, and is handed to the next lap by that consumer, who
 * stores i + cap.  Claims are CASes on tail / head, so several producers and
 * consumers may work at once, and a batch claims k consecutive ready slots
 * with one CAS.  Shutdown sets SHUT_BIT in `tail` with one atomic OR, so a
 * producer's claim either happened before the shutdown (and the item will be
 * got or discarded) or fails.  tail and head live on cache lines of their own.
 *
 * The locked store (unbounded FIFO, LIFO, priority, and bounded FIFO queues
 * too large to allocate up front) keeps its items in one array guarded by
 * `lock`: a growable power-of-two ring for FIFO, a stack for LIFO, a binary
 * heap of (sequence, item) slots for priority, so equal items leave in the
 * order they came.  It grows by doubling (realloc), never per item.
 *
 * The blocking layer is shared.  Threads that must wait sleep on `wait_lock`
 * with one of three conditions (not_empty, not_full, all_done), after
 * announcing themselves in the getters / putters / joiners counters; they
 * hold wait_lock whenever they are counted and not inside the condition
 * wait.  A thread that changes the queue takes wait_lock only when a counter
 * says someone sleeps.  No wake-up is lost, without a fence on the fast path:
 * the change is made by a sequentially consistent read-modify-write (the
 * CAS on tail or head; for the locked store, `lock` orders it), followed by
 * a sequentially consistent load of the counter; a waiter increments the
 * counter and then loads tail and head.  In the single total order of those
 * operations one side sees the other: either the changer sees the waiter, or
 * the waiter sees the claim.  A waiter that sees a claim whose item (or room)
 * is not yet there -- the peer is still copying -- yields and looks again
 * instead of sleeping.  A "woken" flag per condition, set when a signal is
 * sent and cleared (again sequentially consistent) by the thread that wakes,
 * keeps a burst of changes from signalling the same sleeper over and over;
 * the woken thread passes the baton on when there is more to take.  Before
 * sleeping a waiter spins and yields briefly, since on a busy queue the other
 * side usually answers within a microsecond.
 *
 * task_done/join count without a lock: unfinished = puts - done, where puts
 * is tail (ring) or `puts` (locked store), and `done` counts task_done calls
 * plus the items an immediate shutdown discarded.
 *
 * Locks: `lock` (locked store) and `wait_lock` may be held together only in
 * the order wait_lock -> lock.  Fields: item_size..buf(ring) are read-only
 * after creation; lcap, lhead, seq and the locked store's buf are guarded by
 * `lock`; lcount, puts and (for the locked store) shut are written under
 * `lock` and read without it; everything else is atomic.
 */
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "manyhands/queue.h"
#include "internal.h"
#include "spin.h"

enum { KIND_FIFO, KIND_LIFO, KIND_PRIO };

/* The ring is used for bounded FIFO queues up to this many bytes of slots;
 * larger bounds grow on demand in the locked store instead. */
#define RING_MAX_BYTES ((size_t)8 << 20)
/* Largest first capacity of a locked store (a power of two). */
#define LOCKED_MIN_CAP 16
#define SHUT_BIT ((uint64_t)1 << 63)
/* Before it sleeps, a thread that finds the queue full (empty) looks again
 * along the ladder of MH__SPIN_QUEUE (spin.h), which holds the numbers. */

#define PAD(name) char name[MH__CACHE_LINE]

struct mh_queue {
  int kind;
  bool ring;
  size_t item_size;
  size_t slot_size;
  size_t maxsize;
  uint64_t cap;  /* ring: number of slots (= maxsize) */
  uint64_t mask; /* ring: cap - 1 when cap is a power of two, else 0 */
  mh_queue_cmp_fn cmp;
  void *cmp_arg;
  unsigned char *buf;
  PAD(pad0);
  _Atomic uint64_t tail; /* ring: producers' claims, | SHUT_BIT */
  PAD(pad1);
  _Atomic uint64_t head; /* ring: consumers' claims */
  PAD(pad2);
  _Atomic unsigned getters, putters, joiners; /* sleepers (changed under wait_lock) */
  /* A wake-up was sent and no sleeper has run since (set / cleared under
   * wait_lock); while it is set further wake-ups are skipped, and the woken
   * thread passes the baton on if there is more to take. */
  _Atomic bool getters_woken, putters_woken;
  _Atomic int shut; /* 0, 1 = shut down, 2 = shut down immediately */
  _Atomic uint64_t done;
  pthread_mutex_t wait_lock;
  pthread_cond_t not_empty, not_full, all_done;
  PAD(pad3);
  pthread_mutex_t lock;
  size_t lcap;
  size_t lhead;
  _Atomic size_t lcount;
  _Atomic uint64_t puts;
  uint64_t seq;
  unsigned char tmp[]; /* priority: one scratch slot */
};

/* ---- small helpers ----------------------------------------------------- */

static bool bad_timeout(double t) { return !(t >= 0) && t != MH_FOREVER; }

/* memcpy of a run-time size; the common small sizes become plain moves. */
static inline void copy_item(void *dst, const void *src, size_t n) {
  switch (n) {
  case 4: memcpy(dst, src, 4); break;
  case 8: memcpy(dst, src, 8); break;
  case 16: memcpy(dst, src, 16); break;
  default: memcpy(dst, src, n); break;
  }
}

static uint64_t total_puts(mh_queue_t *q) {
  if (q->ring) return atomic_load(&q->tail) & ~SHUT_BIT;
  return atomic_load(&q->puts);
}

/* Wake sleepers on `cond` if the counter says there are any and no earlier
 * wake-up is still on its way; `n` is how many items (or slots) became
 * available.  Called after the change is published.  `woken` may be NULL
 * (joiners: every wake-up is a broadcast). */
static void wake(mh_queue_t *q, _Atomic unsigned *waiters, _Atomic bool *woken,
                 pthread_cond_t *cond, size_t n, bool held) {
  /* Sequentially consistent loads: see the note on wake-ups at the top. */
  if (atomic_load(waiters) == 0) return;
  if (woken && atomic_load(woken)) return;
  if (!held) pthread_mutex_lock(&q->wait_lock);
  if (atomic_load_explicit(waiters, memory_order_relaxed) &&
      !(woken && atomic_load_explicit(woken, memory_order_relaxed))) {
    if (woken) atomic_store_explicit(woken, true, memory_order_relaxed);
    if (n > 1)
      pthread_cond_broadcast(cond);
    else
      pthread_cond_signal(cond);
  }
  if (!held) pthread_mutex_unlock(&q->wait_lock);
}

#define WAKE_GETTERS(q, n, held) wake(q, &(q)->getters, &(q)->getters_woken, &(q)->not_empty, n, held)
#define WAKE_PUTTERS(q, n, held) wake(q, &(q)->putters, &(q)->putters_woken, &(q)->not_full, n, held)

/* A sleeper that has just woken up: later changes must wake someone else.
 * The store is sequentially consistent, so it is ordered before the
 * sleeper's next look at the counters of the queue. */
static inline void woke_up(_Atomic bool *woken) { atomic_store(woken, false); }

/* ---- the ring ---------------------------------------------------------- */

static inline unsigned char *ring_slot(mh_queue_t *q, uint64_t pos) {
  uint64_t i = q->mask ? (pos & q->mask) : (pos % q->cap);
  return q->buf + i * q->slot_size;
}

static inline _Atomic uint64_t *slot_seq(unsigned char *slot) {
  return (_Atomic uint64_t *)(void *)slot;
}

/* Put up to n items; returns how many.  When 0, *err says why: MH_EAGAIN
 * (full) or MH_ESHUTDOWN. */
static size_t ring_put(mh_queue_t *q, const unsigned char *items, size_t n, int *err) {
  uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
  size_t k;
  for (;;) {
    if (t & SHUT_BIT) {
      *err = MH_ESHUTDOWN;
      return 0;
    }
    for (k = 0; k < n && k < q->cap; k++) {
      uint64_t s = atomic_load_explicit(slot_seq(ring_slot(q, t + k)), memory_order_acquire);
      if (s != t + k) break;
    }
    if (k == 0) {
      uint64_t s = atomic_load_explicit(slot_seq(ring_slot(q, t)), memory_order_acquire);
      if ((int64_t)(s - t) < 0) {
        /* The slot still holds the item of the previous lap: full. */
        *err = MH_EAGAIN;
        return 0;
      }
      t = atomic_load_explicit(&q->tail, memory_order_relaxed);
      continue;
    }
    /* Slots that were free stay free until claimed, so a successful CAS
     * owns all k of them. */
    if (atomic_compare_exchange_weak_explicit(&q->tail, &t, t + k, memory_order_seq_cst,
                                              memory_order_relaxed))
      break;
  }
  for (size_t j = 0; j < k; j++) {
    unsigned char *slot = ring_slot(q, t + j);
    copy_item(slot + 8, items + j * q->item_size, q->item_size);
    atomic_store_explicit(slot_seq(slot), t + j + 1, memory_order_release);
  }
  return k;
}

/* Take up to n items into out (NULL: discard them); returns how many.  When
 * 0, *err is MH_EAGAIN (empty, or a put still copying its item) or
 * MH_ESHUTDOWN (empty for good). */
static size_t ring_get(mh_queue_t *q, unsigned char *out, size_t n, int *err) {
  uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
  size_t k;
  for (;;) {
    for (k = 0; k < n && k < q->cap; k++) {
      uint64_t s = atomic_load_explicit(slot_seq(ring_slot(q, h + k)), memory_order_acquire);
      if (s != h + k + 1) break;
    }
    if (k == 0) {
      uint64_t s = atomic_load_explicit(slot_seq(ring_slot(q, h)), memory_order_acquire);
      if ((int64_t)(s - (h + 1)) < 0) {
        /* Nothing published at h.  It is final only when no producer has
         * claimed h either and no producer ever will.  The shut flag is
         * looked at first, so that a consumer polling an empty queue does
         * not pull the producers' cache line away from them. */
        if (!atomic_load_explicit(&q->shut, memory_order_acquire)) {
          *err = MH_EAGAIN;
          return 0;
        }
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        *err = ((t & SHUT_BIT) && (t & ~SHUT_BIT) == h) ? MH_ESHUTDOWN : MH_EAGAIN;
        return 0;
      }
      h = atomic_load_explicit(&q->head, memory_order_relaxed);
      continue;
    }
    if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + k, memory_order_seq_cst,
                                              memory_order_relaxed))
      break;
  }
  for (size_t j = 0; j < k; j++) {
    unsigned char *slot = ring_slot(q, h + j);
    if (out) copy_item(out + j * q->item_size, slot + 8, q->item_size);
    atomic_store_explicit(slot_seq(slot), h + j + q->cap, memory_order_release);
  }
  return k;
}

/* Ring: whether producers have claimed slots that no consumer has claimed
 * yet (items there, or still being copied in), and whether consumers have
 * left room that producers have not claimed (slots free, or still being
 * copied out).  Sequentially consistent loads: see the note at the top. */
static bool ring_items_claimed(mh_queue_t *q) {
  uint64_t h = atomic_load(&q->head);
  return (atomic_load(&q->tail) & ~SHUT_BIT) > h;
}

static bool ring_room_claimed(mh_queue_t *q) {
  uint64_t t = atomic_load(&q->tail) & ~SHUT_BIT;
  return t - atomic_load(&q->head) < q->cap;
}

/* For passing the baton: whether there is something for another getter
 * (room for another putter).  These must see every change whose maker
 * skipped a wake-up because ours was pending, hence the sequentially
 * consistent loads, and the lock for the locked store. */
static bool has_items(mh_queue_t *q) {
  if (q->ring) return ring_items_claimed(q);
  pthread_mutex_lock(&q->lock);
  bool r = atomic_load_explicit(&q->lcount, memory_order_relaxed) > 0;
  pthread_mutex_unlock(&q->lock);
  return r;
}

static bool has_room(mh_queue_t *q) {
  if (q->ring) return ring_room_claimed(q);
  pthread_mutex_lock(&q->lock);
  bool r = !q->maxsize || atomic_load_explicit(&q->lcount, memory_order_relaxed) < q->maxsize;
  pthread_mutex_unlock(&q->lock);
  return r;
}

static bool deadline_passed(const mh__deadline_t *dl) {
  if (dl->kind != MH__DL_AT) return false;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > dl->at.tv_sec ||
         (now.tv_sec == dl->at.tv_sec && now.tv_nsec >= dl->at.tv_nsec);
}

/* Whether a put / get would find a slot now (or the queue is shut down):
 * cheap looks for spinning that read only the slot the caller would use
 * next, not the other side's counter. */
static bool can_put(mh_queue_t *q) {
  if (atomic_load_explicit(&q->shut, memory_order_relaxed)) return true;
  if (!q->ring) return !q->maxsize || atomic_load_explicit(&q->lcount, memory_order_relaxed) < q->maxsize;
  uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
  return atomic_load_explicit(slot_seq(ring_slot(q, t)), memory_order_relaxed) == t;
}

static bool can_get(mh_queue_t *q) {
  if (atomic_load_explicit(&q->shut, memory_order_relaxed)) return true;
  if (!q->ring) return atomic_load_explicit(&q->lcount, memory_order_relaxed) > 0;
  uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
  return atomic_load_explicit(slot_seq(ring_slot(q, h)), memory_order_relaxed) == h + 1;
}

/* ---- the locked store -------------------------------------------------- */

static inline unsigned char *lslot(mh_queue_t *q, size_t i) { return q->buf + i * q->slot_size; }

/* Priority order of two slots: the comparator, then the put sequence. */
static inline bool prio_before(mh_queue_t *q, const unsigned char *a, const unsigned char *b) {
  int c = q->cmp(a + 8, b + 8, q->cmp_arg);
  if (c) return c < 0;
  uint64_t sa, sb;
  memcpy(&sa, a, 8);
  memcpy(&sb, b, 8);
  return sa < sb;
}

/* Make room for `need` items.  Caller holds lock. */
static int locked_reserve(mh_queue_t *q, size_t need) {
  if (need <= q->lcap) return 0;
  size_t ncap = q->lcap;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / q->slot_size) return MH_ENOMEM;
    ncap *= 2;
  }
  unsigned char *nb = mh__realloc(q->buf, ncap * q->slot_size);
  if (!nb) return MH_ENOMEM;
  size_t count = atomic_load_explicit(&q->lcount, memory_order_relaxed);
  if (q->kind == KIND_FIFO && q->lhead + count > q->lcap) {
    /* The ring wrapped: move the part at the front to just past the old end,
     * which is free because ncap >= 2 * lcap. */
    size_t wrapped = q->lhead + count - q->lcap;
    memcpy(nb + q->lcap * q->slot_size, nb, wrapped * q->slot_size);
  }
  q->buf = nb;
  q->lcap = ncap;
  return 0;
}

static void prio_push(mh_queue_t *q, size_t count, const void *item) {
  unsigned char *t = q->tmp;
  uint64_t s = q->seq++;
  memcpy(t, &s, 8);
  copy_item(t + 8, item, q->item_size);
  size_t i = count;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!prio_before(q, t, lslot(q, p))) break;
    memcpy(lslot(q, i), lslot(q, p), q->slot_size);
    i = p;
  }
  memcpy(lslot(q, i), t, q->slot_size);
}

/* Pop the first item of a heap of `count` (> 0) slots into out (may be NULL). */
static void prio_pop(mh_queue_t *q, size_t count, void *out) {
  if (out) copy_item(out, lslot(q, 0) + 8, q->item_size);
  size_t n = count - 1;
  if (n == 0) return;
  unsigned char *t = q->tmp;
  memcpy(t, lslot(q, n), q->slot_size);
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && prio_before(q, lslot(q, c + 1), lslot(q, c))) c++;
    if (!prio_before(q, lslot(q, c), t)) break;
    memcpy(lslot(q, i), lslot(q, c), q->slot_size);
    i = c;
  }
  memcpy(lslot(q, i), t, q->slot_size);
}

static size_t locked_put(mh_queue_t *q, const unsigned char *items, size_t n, int *err) {
  pthread_mutex_lock(&q->lock);
  size_t count = atomic_load_explicit(&q->lcount, memory_order_relaxed);
  size_t k = n;
  if (atomic_load_explicit(&q->shut, memory_order_relaxed)) {
    k = 0;
    *err = MH_ESHUTDOWN;
  } else if (q->maxsize && q->maxsize - count < k) {
    k = q->maxsize - count;
    if (k == 0) *err = MH_EAGAIN;
  }
  /* At most doubling per call, so a huge batch grows the array step by step
   * (and count + k cannot overflow); the caller comes back for the rest. */
  if (k > q->lcap) k = q->lcap;
  if (k && count + k > q->lcap && locked_reserve(q, count + k)) {
    /* Put what fits; the caller's next attempt reports MH_ENOMEM. */
    k = q->lcap - count;
    if (k == 0) *err = MH_ENOMEM;
  }
  for (size_t j = 0; j < k; j++) {
    const unsigned char *it = items + j * q->item_size;
    switch (q->kind) {
    case KIND_FIFO:
      copy_item(lslot(q, (q->lhead + count + j) & (q->lcap - 1)), it, q->item_size);
      break;
    case KIND_LIFO:
      copy_item(lslot(q, count + j), it, q->item_size);
      break;
    default:
      prio_push(q, count + j, it);
      break;
    }
  }
  if (k) {
    atomic_store_explicit(&q->lcount, count + k, memory_order_relaxed);
    atomic_store_explicit(&q->puts, atomic_load_explicit(&q->puts, memory_order_relaxed) + k,
                          memory_order_relaxed);
  }
  pthread_mutex_unlock(&q->lock);
  return k;
}

static size_t locked_get(mh_queue_t *q, unsigned char *out, size_t n, int *err) {
  pthread_mutex_lock(&q->lock);
  size_t count = atomic_load_explicit(&q->lcount, memory_order_relaxed);
  size_t k = n < count ? n : count;
  if (k == 0)
    *err = atomic_load_explicit(&q->shut, memory_order_relaxed) ? MH_ESHUTDOWN : MH_EAGAIN;
  for (size_t j = 0; j < k; j++) {
    unsigned char *o = out ? out + j * q->item_size : NULL;
    switch (q->kind) {
    case KIND_FIFO:
      if (o) copy_item(o, lslot(q, q->lhead), q->item_size);
      q->lhead = (q->lhead + 1) & (q->lcap - 1);
      break;
    case KIND_LIFO:
      if (o) copy_item(o, lslot(q, count - 1 - j), q->item_size);
      break;
    default:
      prio_pop(q, count - j, o);
      break;
    }
  }
  if (k) atomic_store_explicit(&q->lcount, count - k, memory_order_relaxed);
  pthread_mutex_unlock(&q->lock);
  return k;
}

static inline size_t do_put(mh_queue_t *q, const unsigned char *items, size_t n, int *err) {
  return q->ring ? ring_put(q, items, n, err) : locked_put(q, items, n, err);
}

static inline size_t do_get(mh_queue_t *q, unsigned char *out, size_t n, int *err) {
  return q->ring ? ring_get(q, out, n, err) : locked_get(q, out, n, err);
}

/* ---- creation ---------------------------------------------------------- */

static int create(mh_queue_t **out, int kind, size_t item_size, size_t maxsize,
                  mh_queue_cmp_fn cmp, void *arg) {
  if (!out) return MH_EINVAL;
  *out = NULL;
  if (item_size == 0 || item_size > MH_QUEUE_MAX_ITEM_SIZE) return MH_EINVAL;
  if (kind == KIND_PRIO && !cmp) return MH_EINVAL;
  size_t padded = (item_size + 7) & ~(size_t)7;
  /* One slot cannot tell "published at i" (i + 1) from "free for i + 1", so
   * the ring needs two or more. */
  bool ring = kind == KIND_FIFO && maxsize >= 2 && maxsize <= RING_MAX_BYTES / (8 + padded);
  size_t slot = (ring || kind == KIND_PRIO) ? 8 + padded : item_size;
  /* Storage for maxsize items, and the doubling that reaches it, must be
   * expressible; such a bound is meaningless anyway. */
  if (maxsize > SIZE_MAX / 4 / slot) return MH_EINVAL;

  int rc = MH_ENOMEM;
  size_t extra = kind == KIND_PRIO ? slot : 0;
  mh_queue_t *q = mh__calloc(1, sizeof *q + extra);
  if (!q) return MH_ENOMEM;
  q->kind = kind;
  q->ring = ring;
  q->item_size = item_size;
  q->slot_size = slot;
  q->maxsize = maxsize;
  q->cmp = cmp;
  q->cmp_arg = arg;
  if (ring) {
    q->cap = maxsize;
    q->mask = (maxsize & (maxsize - 1)) == 0 ? maxsize - 1 : 0;
    q->buf = mh__malloc(maxsize * slot);
    if (!q->buf) goto fail_q;
    for (uint64_t i = 0; i < q->cap; i++) atomic_init(slot_seq(ring_slot(q, i)), i);
  } else {
    /* Start small for big items and small bounds: at most LOCKED_MIN_CAP
     * slots, at most about 64 KiB unless one slot is larger, and no more
     * than the bound needs. */
    q->lcap = LOCKED_MIN_CAP;
    while (q->lcap > 1 && (q->lcap * slot > ((size_t)64 << 10) ||
                           (maxsize && q->lcap / 2 >= maxsize)))
      q->lcap /= 2;
    q->buf = mh__malloc(q->lcap * slot);
    if (!q->buf) goto fail_q;
  }
  pthread_mutexattr_t ma;
  if ((rc = -pthread_mutexattr_init(&ma))) goto fail_buf;
  /* Adaptive: spin a little in the kernel-free path before sleeping, which
   * suits critical sections of a few dozen instructions. */
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  rc = -pthread_mutex_init(&q->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  if (rc) goto fail_buf;
  if ((rc = -pthread_mutex_init(&q->wait_lock, NULL))) goto fail_lock;
  if ((rc = mh__cond_init(&q->not_empty, false))) goto fail_wait_lock;
  if ((rc = mh__cond_init(&q->not_full, false))) goto fail_ne;
  if ((rc = mh__cond_init(&q->all_done, false))) goto fail_nf;
  *out = q;
  return 0;

fail_nf:
  pthread_cond_destroy(&q->not_full);
fail_ne:
  pthread_cond_destroy(&q->not_empty);
fail_wait_lock:
  pthread_mutex_destroy(&q->wait_lock);
fail_lock:
  pthread_mutex_destroy(&q->lock);
fail_buf:
  mh__free(q->buf);
fail_q:
  mh__free(q);
  return rc;
}

int mh_queue_new(mh_queue_t **out, size_t item_size, size_t maxsize) {
  return create(out, KIND_FIFO, item_size, maxsize, NULL, NULL);
}

int mh_queue_new_lifo(mh_queue_t **out, size_t item_size, size_t maxsize) {
  return create(out, KIND_LIFO, item_size, maxsize, NULL, NULL);
}

int mh_queue_new_priority(mh_queue_t **out, size_t item_size, size_t maxsize,
                          mh_queue_cmp_fn cmp, void *arg) {
  return create(out, KIND_PRIO, item_size, maxsize, cmp, arg);
}

void mh_queue_free(mh_queue_t *q) {
  if (!q) return;
  pthread_cond_destroy(&q->all_done);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->not_empty);
  pthread_mutex_destroy(&q->wait_lock);
  pthread_mutex_destroy(&q->lock);
  mh__free(q->buf);
  mh__free(q);
}

/* One step of a blocked put's or get's wait, with wait_lock held and the
 * caller counted in *sleepers; false once the deadline has passed (the
 * caller then fails with MH_ETIMEDOUT after one last look).  When the other
 * side has claimed a slot and is still copying (other_mid_copy, asked only
 * while *last is false), it may have looked for sleepers before we
 * registered, so we do not sleep on the condition, which it might never
 * signal: we yield to let it finish, and the caller looks again.  Otherwise
 * we sleep on cond until woken or the deadline; on a timeout the caller
 * still looks once more, since the wake-up may have raced it. */
static bool wait_turn(mh_queue_t *q, _Atomic unsigned *sleepers, _Atomic bool *woken,
                      pthread_cond_t *cond, bool other_mid_copy, mh__deadline_t *dl,
                      bool *last) {
  if (other_mid_copy) {
    atomic_fetch_sub(sleepers, 1);
    pthread_mutex_unlock(&q->wait_lock);
    sched_yield();
    pthread_mutex_lock(&q->wait_lock);
    atomic_fetch_add(sleepers, 1);
    *last = deadline_passed(dl);
    return true;
  }
  if (*last) return false;
  int rc = mh__cond_wait(cond, &q->wait_lock, dl);
  woke_up(woken);
  if (rc == MH_ETIMEDOUT) *last = true;
  return true;
}

/* ---- put and get ------------------------------------------------------- */

static int put_common(mh_queue_t *q, const unsigned char *items, size_t n, size_t *nput,
                      double timeout) {
  size_t moved = 0, k;
  int err = 0;

  /* Fast path: room right now (a batch may take several rounds). */
  while ((k = do_put(q, items + moved * q->item_size, n - moved, &err)) > 0) {
    moved += k;
    WAKE_GETTERS(q, k, false);
    if (moved == n) goto out;
  }
  if (err != MH_EAGAIN) goto out;
  if (timeout == 0) {
    /* In the ring a get that has claimed a slot but not yet copied its item
     * out keeps the slot busy although the queue has room; wait for it
     * rather than report a full queue that is not. */
    while (err == MH_EAGAIN && q->ring && mh_queue_qsize(q) < q->maxsize) {
      sched_yield();
      k = do_put(q, items + moved * q->item_size, n - moved, &err);
      if (k) {
        moved += k;
        WAKE_GETTERS(q, k, false);
        if (moved == n) goto out;
      }
    }
    goto out;
  }

  /* Spin briefly: a consumer on another core usually frees a slot soon. */
  mh__spin_t spin = MH__SPIN_INIT;
  const mh__spin_policy_t policy = MH__SPIN_QUEUE;
  while (mh__spin_again(&spin, &policy)) {
    if (!can_put(q)) continue;
    k = do_put(q, items + moved * q->item_size, n - moved, &err);
    if (k) {
      moved += k;
      WAKE_GETTERS(q, k, false);
      if (moved == n) goto out;
    } else if (err != MH_EAGAIN) {
      goto out;
    }
  }

  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  pthread_mutex_lock(&q->wait_lock);
  atomic_fetch_add(&q->putters, 1);
  bool last = false;
  for (;;) {
    k = do_put(q, items + moved * q->item_size, n - moved, &err);
    if (k) {
      moved += k;
      WAKE_GETTERS(q, k, true);
      if (moved == n) {
        err = 0;
        break;
      }
      continue;
    }
    if (err != MH_EAGAIN) break;
    /* A get that has claimed a slot and is still copying its item out may
     * have looked for sleepers before we registered. */
    if (!wait_turn(q, &q->putters, &q->putters_woken, &q->not_full,
                   q->ring && !last && ring_room_claimed(q), &dl, &last)) {
      err = MH_ETIMEDOUT;
      break;
    }
  }
  atomic_fetch_sub(&q->putters, 1);
  /* Pass the baton: wake-ups skipped while ours was pending are owed to the
   * other sleepers if there is still room. */
  if (moved && has_room(q)) WAKE_PUTTERS(q, 1, true);
  pthread_mutex_unlock(&q->wait_lock);
out:
  if (nput) *nput = moved;
  return moved == n ? 0 : err;
}

static int get_common(mh_queue_t *q, unsigned char *out, size_t max, size_t *ngot,
                      double timeout) {
  size_t k;
  int err = 0;

  k = do_get(q, out, max, &err);
  if (k) goto got;
  if (err != MH_EAGAIN) goto out;
  if (timeout == 0) {
    /* Likewise a put that has claimed a slot but is still copying its item
     * in: the queue is not empty, and later puts may be complete. */
    while (err == MH_EAGAIN && q->ring && mh_queue_qsize(q) > 0) {
      sched_yield();
      k = do_get(q, out, max, &err);
      if (k) goto got;
    }
    goto out;
  }

  mh__spin_t spin = MH__SPIN_INIT;
  const mh__spin_policy_t policy = MH__SPIN_QUEUE;
  while (mh__spin_again(&spin, &policy)) {
    if (!can_get(q)) continue;
    k = do_get(q, out, max, &err);
    if (k) goto got;
    if (err != MH_EAGAIN) goto out;
  }

  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  pthread_mutex_lock(&q->wait_lock);
  atomic_fetch_add(&q->getters, 1);
  bool last = false;
  for (;;) {
    k = do_get(q, out, max, &err);
    if (k || err != MH_EAGAIN) break;
    /* Likewise a put that has claimed a slot and is still copying its
     * item in. */
    if (!wait_turn(q, &q->getters, &q->getters_woken, &q->not_empty,
                   q->ring && !last && ring_items_claimed(q), &dl, &last)) {
      err = MH_ETIMEDOUT;
      break;
    }
  }
  atomic_fetch_sub(&q->getters, 1);
  if (k) {
    WAKE_PUTTERS(q, k, true);
    if (has_items(q)) WAKE_GETTERS(q, 1, true);
  }
  pthread_mutex_unlock(&q->wait_lock);
  if (k) goto done;
  goto out;
got:
  WAKE_PUTTERS(q, k, false);
done:
  if (ngot) *ngot = k;
  return 0;
out:
  if (ngot) *ngot = 0;
  return err;
}

int mh_queue_put(mh_queue_t *q, const void *item, double timeout) {
  if (!q || !item || bad_timeout(timeout)) return MH_EINVAL;
  return put_common(q, item, 1, NULL, timeout);
}

int mh_queue_get(mh_queue_t *q, void *item, double timeout) {
  if (!q || !item || bad_timeout(timeout)) return MH_EINVAL;
  return get_common(q, item, 1, NULL, timeout);
}

int mh_queue_put_many(mh_queue_t *q, const void *items, size_t count, size_t *nput,
                      double timeout) {
  if (nput) *nput = 0;
  if (!q || (!items && count) || bad_timeout(timeout)) return MH_EINVAL;
  if (count == 0) return 0;
  return put_common(q, items, count, nput, timeout);
}

int mh_queue_get_many(mh_queue_t *q, void *items, size_t max, size_t *ngot, double timeout) {
  if (ngot) *ngot = 0;
  if (!q || !items || !ngot || max == 0 || bad_timeout(timeout)) return MH_EINVAL;
  return get_common(q, items, max, ngot, timeout);
}

/* ---- sizes ------------------------------------------------------------- */

size_t mh_queue_qsize(mh_queue_t *q) {
  if (!q) return 0;
  if (!q->ring) return atomic_load(&q->lcount);
  /* head first: tail only grows, so the later tail is >= this head. */
  uint64_t h = atomic_load(&q->head);
  uint64_t t = atomic_load(&q->tail) & ~SHUT_BIT;
  return t - h > q->cap ? (size_t)q->cap : (size_t)(t - h);
}

int mh_queue_empty(mh_queue_t *q) {
  if (!q) return MH_EINVAL;
  return mh_queue_qsize(q) == 0;
}

int mh_queue_full(mh_queue_t *q) {
  if (!q) return MH_EINVAL;
  return q->maxsize > 0 && mh_queue_qsize(q) >= q->maxsize;
}

size_t mh_queue_maxsize(mh_queue_t *q) { return q ? q->maxsize : 0; }

/* ---- task_done, join --------------------------------------------------- */

int mh_queue_task_done(mh_queue_t *q) {
  if (!q) return MH_EINVAL;
  uint64_t d = atomic_load(&q->done);
  do {
    if (d >= total_puts(q)) return MH_EINVAL;
  } while (!atomic_compare_exchange_weak(&q->done, &d, d + 1));
  if (d + 1 >= total_puts(q)) wake(q, &q->joiners, NULL, &q->all_done, 2, false);
  return 0;
}

/* Count `n` discarded items as done, never beyond the number put. */
static void credit_done(mh_queue_t *q, uint64_t n) {
  uint64_t d = atomic_load(&q->done), add;
  do {
    uint64_t p = total_puts(q);
    add = p > d ? (p - d < n ? p - d : n) : 0;
  } while (add && !atomic_compare_exchange_weak(&q->done, &d, d + add));
}

int mh_queue_join(mh_queue_t *q, double timeout) {
  if (!q || bad_timeout(timeout)) return MH_EINVAL;
  if (atomic_load(&q->done) >= total_puts(q)) return 0;
  if (timeout == 0) return MH_ETIMEDOUT;
  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  int err = 0;
  pthread_mutex_lock(&q->wait_lock);
  atomic_fetch_add(&q->joiners, 1);
  while (atomic_load(&q->done) < total_puts(q)) {
    if (mh__cond_wait(&q->all_done, &q->wait_lock, &dl) == MH_ETIMEDOUT) {
      if (atomic_load(&q->done) < total_puts(q)) err = MH_ETIMEDOUT;
      break;
    }
  }
  atomic_fetch_sub(&q->joiners, 1);
  pthread_mutex_unlock(&q->wait_lock);
  return err;
}

/* ---- shutdown ---------------------------------------------------------- */

int mh_queue_shutdown(mh_queue_t *q, int immediate) {
  if (!q) return MH_EINVAL;
  int mode = immediate ? 2 : 1;
  if (q->ring) {
    atomic_fetch_or(&q->tail, SHUT_BIT);
  } else {
    pthread_mutex_lock(&q->lock);
  }
  int old = atomic_load(&q->shut);
  while (old < mode && !atomic_compare_exchange_weak(&q->shut, &old, mode)) {
  }
  if (!q->ring) pthread_mutex_unlock(&q->lock);

  if (immediate) {
    uint64_t discarded = 0;
    for (;;) {
      int err = 0;
      size_t k = do_get(q, NULL, SIZE_MAX, &err);
      discarded += k;
      if (k) continue;
      if (err == MH_ESHUTDOWN) break;
      /* A put claimed its slot before the shutdown and is still copying. */
      sched_yield();
    }
    credit_done(q, discarded);
  }
  /* Everyone waiting re-checks: getters and putters fail, joiners look at
   * the count again. */
  pthread_mutex_lock(&q->wait_lock);
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_cond_broadcast(&q->all_done);
  pthread_mutex_unlock(&q->wait_lock);
  return 0;
}

int mh_queue_is_shutdown(mh_queue_t *q) {
  if (!q) return MH_EINVAL;
  return atomic_load(&q->shut) != 0;
}
