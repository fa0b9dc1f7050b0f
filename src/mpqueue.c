/* SPDX-License-Identifier: MIT */
/* mpqueue.c - multiprocessing.Queue for C: byte messages between processes,
 * safe against the death of any process at any instruction.
 *
 * The queue is one anonymous shared mapping: a header (struct mpq_sh) and a
 * ring of `ringsz` bytes (about 2 x maxbytes of address space, MAP_NORESERVE)
 * holding records laid end to end.  A record is a 16-byte header - a word
 * (state | op slot << 32) and the message length - and the payload rounded
 * up to 16 bytes, always contiguous: a record that would cross the end of
 * the ring is put at the start of the next lap, after a PAD record.  Ring
 * positions are 64-bit and only grow; a position's byte is at pos % ringsz.
 *
 * Invariants (all under the lock; "record at p" = the record starting at p):
 * - head <= rd <= wr.  [head, wr) holds the records the ring still owns;
 *   everything outside it is free.  wr - head <= ringsz.
 * - Walking from head by record sizes (a PAD jumps to the next lap) reaches
 *   wr exactly.  Records at or beyond wr do not exist, whatever the bytes
 *   there say: a put writes its record there first and makes it exist by
 *   moving wr, in one store of the journal (below).
 * - States: WRITING (a put copies the payload in, outside the lock), READY
 *   (whole, visible), CLAIMED (a get copies it out, outside the lock),
 *   FREEING (got; its get gives the pages back before releasing the room),
 *   DONE (got, discarded, or abandoned by a dead writer), PAD.  No READY record
 *   lies before rd; head stops at the first WRITING, READY or CLAIMED one.
 * - nready counts READY records, nwriting WRITING ones, nbytes the payload
 *   bytes of WRITING, READY and CLAIMED ones; unfinished is puts committed
 *   minus task_done calls and immediate discards.
 * - A WRITING or CLAIMED record names an op slot, whose bit is set in
 *   slot_busy and whose robust mutex the copying thread holds.  A thread that
 *   dies copying leaves that mutex "owner died"; any process that finds a
 *   busy slot's mutex not held by a live thread (trylock succeeds) reaps the
 *   op: a dead writer's record becomes DONE (never delivered), a dead
 *   reader's record becomes READY again (so a message is removed only by a
 *   get that returns it).  Messages up to SMALL_MAX bytes, or when all op
 *   slots are busy, are copied under the lock instead; a death there is a
 *   death holding the lock, which leaves no trace but the journal.
 *
 * The journal.  Every change of the header or of a record that exists is
 * made as a redo log: the new values (absolute, never increments) go into
 * j[], then jvalid = 1 is the commit point, then they are applied, then
 * jvalid = 0.  A process that takes the lock with EOWNERDEAD replays a valid
 * journal (applying twice is harmless) and marks the lock consistent.  So an
 * owner that died at any instruction left either none or all of its change.
 * Compiler fences order these stores: a dead process's retired stores are
 * all visible to the next owner of the lock (the kernel's exit path and the
 * futex hand-over are full barriers), and stores retire in program order.
 *
 * Waiting.  Sleepers set bit 0 of a futex word (fw_get, fw_put, fw_join)
 * under the lock and sleep on that value; a change that may let them go
 * bumps the word under the lock and wakes all its sleepers after unlocking.
 * A process may die between its change and its wake-up, and a sleeper cannot
 * see deaths, so every sleep is bounded: POLL_BUSY while ops are in flight
 * (to reap dead ones soon), POLL_IDLE otherwise; then the sleeper looks
 * again.  Before sleeping a waiter spins briefly without the lock.
 *
 * Memory.  The first KEEP bytes of the ring stay mapped and warm; a record
 * is put at the start of the next lap instead of beyond KEEP whenever it
 * fits there, and an empty queue restarts at a lap's start.  The payload
 * pages of a large record beyond KEEP are given back (MADV_REMOVE) by the
 * get that copied it out, after removing the message (FREEING) and before
 * releasing its room (DONE).
 *
 * The lane, a lock-free ring for small messages, is mpqueue_lane.c; its
 * invariants are there.
 *
 * Tags: I set at creation, read-only after; L under `lock`, changed only
 * through the journal, read without the lock only as an atomic snapshot; J
 * the journal, under `lock`; F futex words, changed under `lock`, read by
 * anyone; O an op slot's mutex, held by the thread doing that op; S the
 * lane's words, changed by CAS by anyone (DISC only under `lock`), and `enq`
 * (producers) and `deq` (consumers), each moved by CAS, on lines of their own.
 * Lock order: `lock` may be taken while holding an op slot's mutex (a copy
 * outside the lock finishing), and a slot's mutex is only ever try-locked
 * while holding `lock`, so neither order can wait on the other.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "manyhands/mpqueue.h"
#include "mpqueue_internal.h"
#include "spin.h"


/* ---- small helpers ------------------------------------------------------- */

static bool bad_timeout(double t) { return !(t >= 0) && t != MH_FOREVER; }

static inline rec_t *rec_at(const mh_mpqueue_t *q, uint64_t pos) {
  return (rec_t *)(void *)(q->ring + pos % q->ringsz);
}

static inline uint64_t rec_bytes(uint64_t len) { return 16 + ((len + 15) & ~(uint64_t)15); }

static inline uint64_t next_lap(const mh_mpqueue_t *q, uint64_t pos) {
  return (pos / q->ringsz + 1) * q->ringsz;
}

static inline unsigned rec_state(const rec_t *r) { return (unsigned)(LD(r->word) & 0xff); }

static uint64_t rec_next(const mh_mpqueue_t *q, uint64_t pos) {
  const rec_t *r = rec_at(q, pos);
  if (rec_state(r) == R_PAD) return next_lap(q, pos);
  return pos + rec_bytes(LD(r->len));
}

/* ---- the journal --------------------------------------------------------- */

void jset(ctx_t *c, _Atomic uint64_t *field, uint64_t val) {
  mpq_sh_t *sh = c->sh;
  if (c->n == JMAX) abort(); /* a bug in this file, never the caller's input */
  atomic_store_explicit(&sh->j[c->n].off, (uint64_t)((uintptr_t)field - (uintptr_t)sh),
                        memory_order_relaxed);
  atomic_store_explicit(&sh->j[c->n].val, val, memory_order_relaxed);
  c->n++;
}

/* Journal a compare-and-swap: for a lane word, which others change without
 * the lock.  Applying it twice is harmless too: the word it expects names a
 * position, so once changed it never holds that value again. */
void jcas(ctx_t *c, _Atomic uint64_t *field, uint64_t exp, uint64_t val) {
  mpq_sh_t *sh = c->sh;
  jset(c, field, val);
  atomic_store_explicit(&sh->j[c->n - 1].exp, exp, memory_order_relaxed);
  atomic_store_explicit(&sh->j[c->n - 1].off, LD(sh->j[c->n - 1].off) | 1,
                        memory_order_relaxed);
}

static void japply(mpq_sh_t *sh, uint64_t n) {
  for (uint64_t i = 0; i < n && i < JMAX; i++) {
    uint64_t off = LD(sh->j[i].off), cas = off & 1;
    off &= ~(uint64_t)1;
    /* A journal of ours only names 8-byte fields inside the mapping. */
    if (off > sh->map_len - 8 || (off & 7)) continue;
    _Atomic uint64_t *f = (_Atomic uint64_t *)(void *)((char *)sh + off);
    if (cas) {
      uint64_t exp = LD(sh->j[i].exp);
      atomic_compare_exchange_strong(f, &exp, LD(sh->j[i].val));
    } else {
      atomic_store_explicit(f, LD(sh->j[i].val), memory_order_relaxed);
    }
  }
}

void jcommit(ctx_t *c) {
  mpq_sh_t *sh = c->sh;
  if (!c->n) return;
  atomic_store_explicit(&sh->jn, c->n, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&sh->jvalid, 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  japply(sh, c->n);
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&sh->jvalid, 0, memory_order_relaxed);
  c->n = 0;
}

/* ---- lock, wake-ups, waits ----------------------------------------------- */

/* A change may let sleepers of `which` go: bump their word if any sleep. */
void mark_wake(ctx_t *c, unsigned which) {
  _Atomic uint32_t *w[3] = {&c->sh->fw_get, &c->sh->fw_put, &c->sh->fw_join};
  for (int i = 0; i < 3; i++)
    if ((which & (1u << i)) && take_sleepers(w[i])) c->wake |= 1u << i;
}

/* Whether the lock looks held, read without writing its cache line: a
 * try-lock is a locked read-modify-write that takes the line away from the
 * holder even when it fails.  glibc keeps the owner's id in the first int
 * of the mutex (0: free); elsewhere we do not know, and say "free". */
static inline bool lock_looks_held(pthread_mutex_t *m) {
#if defined(__GLIBC__)
  return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) != 0;
#else
  (void)m;
  return false;
#endif
}

int q_lock(ctx_t *c) {
  mpq_sh_t *sh = c->sh;
  const mh__spin_policy_t pol = MH__SPIN_MPQ_LOCK;
  mh__spin_t sp = MH__SPIN_INIT;
  int rc;
  for (;;) {
    if (lock_looks_held(&sh->lock)) {
      rc = EBUSY;
    } else if ((rc = pthread_mutex_trylock(&sh->lock)) != EBUSY) {
      break;
    }
    if (!mh__spin_again(&sp, &pol)) break;
  }
  if (rc == EBUSY) rc = pthread_mutex_lock(&sh->lock);
  if (rc == EOWNERDEAD) {
    /* The owner died holding the lock: replay its change if it committed
     * one, and wake everybody, since the wake-ups it owed are lost. */
    if (LD(sh->jvalid)) japply(sh, LD(sh->jn));
    atomic_store_explicit(&sh->jvalid, 0, memory_order_relaxed);
    atomic_store(&sh->rput, 0); /* a record put's decision died with it */
    pthread_mutex_consistent(&sh->lock);
    lane_recover(c);
    atomic_fetch_or(&sh->fw_get, 1);
    atomic_fetch_or(&sh->fw_put, 1);
    atomic_fetch_or(&sh->fw_join, 1);
    mark_wake(c, W_GET | W_PUT | W_JOIN);
    rc = 0;
  }
  return -rc;
}

static void do_wakes(ctx_t *c) {
  if (c->wake & W_GET) mh__futex_wake(&c->sh->fw_get, INT_MAX, MH__FUTEX_SHARED);
  if (c->wake & W_PUT) mh__futex_wake(&c->sh->fw_put, INT_MAX, MH__FUTEX_SHARED);
  if (c->wake & W_JOIN) mh__futex_wake(&c->sh->fw_join, INT_MAX, MH__FUTEX_SHARED);
  c->wake = 0;
}

void q_unlock(ctx_t *c) {
  pthread_mutex_unlock(&c->sh->lock);
  do_wakes(c);
}

static bool deadline_passed(const mh__deadline_t *dl) {
  if (dl->kind == 0) return true;
  if (dl->kind != 1) return false;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > dl->at.tv_sec ||
         (now.tv_sec == dl->at.tv_sec && now.tv_nsec >= dl->at.tv_nsec);
}

static double deadline_left(const mh__deadline_t *dl) {
  if (dl->kind != 1) return 1e9;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(dl->at.tv_sec - now.tv_sec) + (double)(dl->at.tv_nsec - now.tv_nsec) * 1e-9;
}

/* Sleep on `w` (lock held on entry and on return) until woken, the deadline
 * or the poll interval.  `lane` (W_GET, W_PUT or 0) names the lane change
 * that would also end the wait: lane puts and gets do not take the lock, so
 * the bit is set first and the lane looked at after (each side writes, then
 * reads the other's word: one of the two sees the other).  Returns the
 * lock's code. */
static int q_wait(ctx_t *c, _Atomic uint32_t *w, const mh__deadline_t *dl, unsigned lane) {
  uint32_t v = atomic_fetch_or(w, 1) | 1;
  if ((lane == W_GET && lane_has_ready(c->q)) || (lane == W_PUT && lane_has_room(c->q)))
    return 0;
  double t = LD(c->sh->slot_busy) || lane_has_writing(c->q) ? POLL_BUSY : POLL_IDLE;
  double left = deadline_left(dl);
  if (left < t) t = left;
  q_unlock(c);
  (void)mh__futex_wait_for(w, v, t, MH__FUTEX_SHARED);
  return q_lock(c);
}

/* ---- records ------------------------------------------------------------- */

/* The state of the record at pos, where the record at `done` counts as
 * DONE (a get journaled that change but has not committed it yet). */
static inline unsigned state_as(const mh_mpqueue_t *q, uint64_t pos, uint64_t done) {
  return pos == done ? R_DONE : rec_state(rec_at(q, pos));
}

/* Journal the moves of head past records that no longer hold anything, and
 * of rd past those no get can take now, counting the record at `done` as
 * DONE (UINT64_MAX: none).  Lock held; the caller commits.  A get journals
 * its removal and these moves together: one commit, not two. */
static void advance_j(ctx_t *c, uint64_t done) {
  mh_mpqueue_t *q = c->q;
  mpq_sh_t *sh = c->sh;
  uint64_t wr = LD(sh->wr), h = LD(sh->head), r = LD(sh->rd);
  while (h != wr) {
    unsigned st = state_as(q, h, done);
    if (st != R_PAD && st != R_DONE) break;
    h = rec_next(q, h);
  }
  if (r < h) r = h;
  while (r != wr && state_as(q, r, done) != R_READY) r = rec_next(q, r);
  if (h != LD(sh->head)) jset(c, &sh->head, h);
  if (r != LD(sh->rd)) jset(c, &sh->rd, r);
}

/* advance_j with nothing pending, committed. */
static void advance(ctx_t *c) {
  advance_j(c, UINT64_MAX);
  jcommit(c);
}

/* The first READY record at or after rd, or UINT64_MAX. */
static uint64_t find_ready(ctx_t *c) {
  mh_mpqueue_t *q = c->q;
  uint64_t wr = LD(c->sh->wr);
  for (uint64_t r = LD(c->sh->rd); r != wr; r = rec_next(q, r))
    if (rec_state(rec_at(q, r)) == R_READY) return r;
  return UINT64_MAX;
}

/* Where a record of `s` bytes can go, or false when the ring has no room.
 * Writes the PAD that skips to the next lap (beyond wr, so it does not exist
 * until wr moves).  *reset: the queue is empty and head and rd move too. */
static bool place(ctx_t *c, uint64_t s, uint64_t *pos, bool *reset) {
  mh_mpqueue_t *q = c->q;
  uint64_t head = LD(c->sh->head), wr = LD(c->sh->wr), R = q->ringsz;
  uint64_t o = wr % R;
  *reset = false;
  if (head == wr) {
    *pos = o ? next_lap(q, wr) : wr;
    *reset = true;
    return s <= R;
  }
  bool a = o + s <= R && wr - head + s <= R;
  bool b = o != 0 && next_lap(q, wr) + s - head <= R;
  uint64_t p;
  if (b && (o >= KEEP && R > 2 * KEEP))
    p = next_lap(q, wr);
  else if (a)
    p = wr;
  else if (b)
    p = next_lap(q, wr);
  else
    return false;
  if (p != wr) {
    rec_t *pad = rec_at(q, wr);
    atomic_store_explicit(&pad->word, R_PAD, memory_order_relaxed);
    atomic_store_explicit(&pad->len, 0, memory_order_relaxed);
  }
  *pos = p;
  return true;
}

/* An op slot whose mutex we now hold, or -1 when all are busy.  Lock held. */
static int slot_acquire(ctx_t *c) {
  uint64_t busy = LD(c->sh->slot_busy);
  for (int i = 0; i < NSLOTS; i++) {
    if (busy >> i & 1) continue;
    int rc = pthread_mutex_trylock(&c->sh->slots[i].m);
    if (rc == EOWNERDEAD) {
      /* It died after giving the slot back, before unlocking it. */
      pthread_mutex_consistent(&c->sh->slots[i].m);
      rc = 0;
    }
    if (rc == 0) return i;
  }
  return -1;
}

/* Reap the ops of threads that died copying.  Lock held.  Returns whether
 * any was found. */
static bool reap(ctx_t *c) {
  mh_mpqueue_t *q = c->q;
  mpq_sh_t *sh = c->sh;
  uint64_t busy = LD(sh->slot_busy);
  bool any = false;
  while (busy) {
    int i = __builtin_ctzll(busy);
    busy &= busy - 1;
    mpq_slot_t *sl = &sh->slots[i];
    int rc = pthread_mutex_trylock(&sl->m);
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&sl->m);
      rc = 0;
    }
    if (rc != 0) continue; /* a live thread is copying */
    uint64_t kind = LD(sl->kind), pos = LD(sl->pos);
    rec_t *r = rec_at(q, pos);
    uint64_t len = LD(r->len);
    if (kind == OP_PUT) {
      jset(c, &r->word, R_DONE);
      jset(c, &sh->nwriting, LD(sh->nwriting) - 1);
      jset(c, &sh->nbytes, LD(sh->nbytes) - len);
      jset(c, &sh->nlive, LD(sh->nlive) - 1);
    } else if (kind == OP_GET && rec_state(r) == R_FREEING) {
      /* It had got the message and was giving pages back. */
      jset(c, &r->word, R_DONE);
      jset(c, &sh->nbytes, LD(sh->nbytes) - len);
    } else if (kind == OP_GET && LD(sh->shut) == 2) {
      uint64_t u = LD(sh->unfinished);
      jset(c, &r->word, R_DONE);
      jset(c, &sh->nbytes, LD(sh->nbytes) - len);
      jset(c, &sh->nlive, LD(sh->nlive) - 1);
      /* Modular: with the lane's puts counted apart, it may pass 0. */
      jset(c, &sh->unfinished, u - 1);
      mark_wake(c, W_JOIN);
    } else if (kind == OP_GET) {
      jset(c, &r->word, R_READY);
      jset(c, &sh->nready, LD(sh->nready) + 1);
      if (pos < LD(sh->rd)) jset(c, &sh->rd, pos);
      mark_wake(c, W_GET);
    }
    jset(c, &sl->kind, OP_FREE);
    jset(c, &sh->slot_busy, LD(sh->slot_busy) & ~((uint64_t)1 << i));
    jcommit(c);
    pthread_mutex_unlock(&sl->m);
    mark_wake(c, W_PUT);
    any = true;
  }
  if (any) advance(c);
  return any;
}

/* ---- creation ------------------------------------------------------------ */

static int robust_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc) return -rc;
  if (pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
      pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) {
    pthread_mutexattr_destroy(&a);
    return MH_ENOTSUP;
  }
  rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return -rc;
}

int mh_mpqueue_new(mh_mpqueue_t **out, size_t maxsize, size_t maxbytes) {
  if (!out) return MH_EINVAL;
  *out = NULL;
  if (maxbytes == 0 || maxbytes > MH_MPQUEUE_MAX_MAXBYTES) return MH_EINVAL;
  long ps = sysconf(_SC_PAGESIZE);
  uint64_t page = ps > 0 ? (uint64_t)ps : 4096;
  /* Twice the bound plus the largest record's header and padding: then a
   * message that fits the byte bound always finds a contiguous place (the
   * free room, split in two at most, has a part at least as large), and
   * a queue of many small messages fills its count or byte bound first. */
  uint64_t ringsz = 2 * (uint64_t)maxbytes + ((uint64_t)64 << 10);
  ringsz = (ringsz + page - 1) / page * page;
  /* The lane: as many slots as the bounds allow, a power of two, at least
   * two (else none). */
  uint64_t scap = LANE_SLOTS;
  while (scap > 1 && maxsize && scap > maxsize) scap >>= 1;
  while (scap > 1 && scap * LANE_MAX > maxbytes) scap >>= 1;
  if (scap < 2) scap = 0;
  uint64_t lane_off = (sizeof(mpq_sh_t) + page - 1) / page * page;
  uint64_t data_off = (lane_off + scap * sizeof(mpq_lslot_t) + page - 1) / page * page;
  size_t map_len = (size_t)(data_off + ringsz);

  mh_mpqueue_t *q = mh__calloc(1, sizeof *q);
  if (!q) return MH_ENOMEM;
  void *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    mh__free(q);
    return MH_ENOMEM;
  }
  mpq_sh_t *sh = m;
  int rc = robust_init(&sh->lock);
  for (int i = 0; i < NSLOTS && !rc; i++) rc = robust_init(&sh->slots[i].m);
  if (rc) {
    munmap(m, map_len);
    mh__free(q);
    return rc;
  }
  sh->magic = MPQ_MAGIC;
  sh->ringsz = ringsz;
  sh->maxsize = maxsize;
  sh->maxbytes = maxbytes;
  sh->data_off = data_off;
  sh->map_len = map_len;
  sh->scap = scap;
  sh->lane_off = lane_off;
  q->sh = sh;
  q->scap = scap;
  q->lane = scap ? (mpq_lslot_t *)(void *)((unsigned char *)m + lane_off) : NULL;
  for (uint64_t i = 0; i < scap; i++) atomic_init(&q->lane[i].word, SW(i, S_EMPTY, 0));
  q->ring = (unsigned char *)m + data_off;
  q->ringsz = ringsz;
  q->map_len = map_len;
  *out = q;
  return 0;
}

void mh_mpqueue_free(mh_mpqueue_t *q) {
  if (!q) return;
  /* The mutexes are not destroyed: other processes may still use them, and
   * the mapping's memory goes with its last view. */
  munmap(q->sh, q->map_len);
  mh__free(q);
}

/* ---- put ------------------------------------------------------------------ */

/* Spin without the lock until `ok` holds or the budget is spent. */
#define SPIN_UNTIL(ok)                                   \
  do {                                                   \
    const mh__spin_policy_t pol_ = MH__SPIN_MPQ_WAIT;    \
    mh__spin_t sp_ = MH__SPIN_INIT;                      \
    while (!(ok) && mh__spin_again(&sp_, &pol_)) {       \
    }                                                    \
  } while (0)

/* Whether a record of `len` bytes fits the bounds, counting the lane's
 * messages too (its occupancy, then its bytes: first as a bound, and only
 * when that is too much, counted). */
static bool count_room(const mh_mpqueue_t *q, uint64_t len) {
  const mpq_sh_t *sh = q->sh;
  uint64_t occ = 0;
  if (q->lane) {
    uint64_t d = atomic_load(&sh->deq);
    occ = atomic_load(&sh->enq) - d;
  }
  if (sh->maxsize && LD(sh->nready) + LD(sh->nwriting) + occ >= sh->maxsize) return false;
  uint64_t b = LD(sh->nbytes) + len;
  if (b > sh->maxbytes) return false;
  if (occ && b + occ * LANE_MAX > sh->maxbytes) {
    uint64_t lb;
    lane_count(q, NULL, &lb, NULL);
    b += lb;
  }
  return b <= sh->maxbytes;
}

/* Whether a put may use the lane now: a small message, a lane, and a
 * record ring that holds nothing (so that order is kept, see above). */
static inline bool lane_now(const mh_mpqueue_t *q, bool lane_ok) {
  return lane_ok && LD(q->sh->nlive) == 0 && !LD(q->sh->shut);
}

int mh_mpqueue_put(mh_mpqueue_t *q, const void *msg, size_t len, double timeout) {
  if (!q || (!msg && len) || bad_timeout(timeout)) return MH_EINVAL;
  if (q->closed) return MH_EBADF;
  mpq_sh_t *sh = q->sh;
  if (len > sh->maxbytes) return MH_EMSGSIZE;
  ctx_t c = {q, sh, 0, 0};
  bool lane_ok = q->lane && len <= LANE_MAX;
  int rc;
  if (lane_ok && atomic_load_explicit(&q->reg_pid, memory_order_acquire) != (uint32_t)mh__pid()) {
    if ((rc = lane_register(q, &lane_ok))) return rc;
  } else if (lane_ok) {
    lane_ok = atomic_load_explicit(&q->reg_ok, memory_order_relaxed);
    /* No entry was free when this process came: look again now and then. */
    if (!lane_ok &&
        atomic_fetch_add_explicit(&q->reg_puts, 1, memory_order_relaxed) % LANE_REG_RETRY ==
            LANE_REG_RETRY - 1 &&
        (rc = lane_register(q, &lane_ok)))
      return rc;
  }
  uint64_t lp;
  bool spun = false, last = false, reset = false, raced = false;
  while (lane_now(q, lane_ok)) {
    int lr = lane_put(q, msg, len, false, &lp);
    if (lr == LANE_PUT) {
      lane_put_done(&c, lp, false);
      return 0;
    }
    if (lr == LANE_RACED) {
      raced = true;
      break;
    }
    /* The lane is full: when the record ring may not take it either (a
     * count bound), look again for a while before taking the lock. */
    if (spun || timeout == 0 || !sh->maxsize) break;
    spun = true;
    SPIN_UNTIL(lane_has_room_for(q, LANE_BATCH(q)) || !lane_now(q, lane_ok));
  }
  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  rc = q_lock(&c);
  if (rc) return rc;
  if (raced) lane_abandon(&c, lp);
  uint64_t s = rec_bytes(len), p = 0;
  int slot = -1;
  for (;;) {
    if (LD(sh->shut)) {
      rc = MH_ESHUTDOWN;
      break;
    }
    if (lane_now(q, lane_ok) && lane_put(q, msg, len, true, &lp) == LANE_PUT) {
      lane_put_done(&c, lp, true);
      rc = 0;
      break;
    }
    /* rput: lane puts racing this decision give their claims back (see
     * "Bounds" in mpqueue_lane.c); set before the count looks at the lane,
     * cleared once nlive says the record is there, or that it is not. */
    atomic_store(&sh->rput, 1);
    if (count_room(q, len) && place(&c, s, &p, &reset)) {
      rec_t *r = rec_at(q, p);
      if (len > SMALL_MAX) slot = slot_acquire(&c);
      if (reset) {
        jset(&c, &sh->head, p);
        jset(&c, &sh->rd, p);
      }
      jset(&c, &sh->wr, p + s);
      jset(&c, &sh->nbytes, LD(sh->nbytes) + len);
      if (slot < 0) {
        /* Copied under the lock; the record exists once wr moves. */
        atomic_store_explicit(&r->len, len, memory_order_relaxed);
        atomic_store_explicit(&r->word, R_READY, memory_order_relaxed);
        if (len) memcpy((unsigned char *)r + 16, msg, len);
        jset(&c, &sh->nready, LD(sh->nready) + 1);
        jset(&c, &sh->nlive, LD(sh->nlive) + 1);
        jset(&c, &sh->unfinished, LD(sh->unfinished) + 1);
        jcommit(&c);
        atomic_store(&sh->rput, 0);
        mark_wake(&c, W_GET);
        rc = 0;
        break;
      }
      /* Reserve, copy outside the lock, commit. */
      mpq_slot_t *sl = &sh->slots[slot];
      atomic_store_explicit(&r->len, len, memory_order_relaxed);
      atomic_store_explicit(&r->word, R_WRITING | (uint64_t)slot << 32, memory_order_relaxed);
      jset(&c, &sh->nwriting, LD(sh->nwriting) + 1);
      jset(&c, &sh->nlive, LD(sh->nlive) + 1);
      jset(&c, &sl->kind, OP_PUT);
      jset(&c, &sl->pos, p);
      jset(&c, &sh->slot_busy, LD(sh->slot_busy) | (uint64_t)1 << slot);
      jcommit(&c);
      atomic_store(&sh->rput, 0);
      q_unlock(&c);
      unsigned char *dst = (unsigned char *)r + 16;
      mh__prefault(dst, len);
      memcpy(dst, msg, len);
      rc = q_lock(&c);
      if (rc) {
        pthread_mutex_unlock(&sl->m);
        return rc;
      }
      bool discard = LD(sh->shut) == 2;
      jset(&c, &r->word, discard ? R_DONE : R_READY);
      jset(&c, &sh->nwriting, LD(sh->nwriting) - 1);
      if (discard) {
        jset(&c, &sh->nbytes, LD(sh->nbytes) - len);
        jset(&c, &sh->nlive, LD(sh->nlive) - 1);
      } else {
        jset(&c, &sh->nready, LD(sh->nready) + 1);
        jset(&c, &sh->unfinished, LD(sh->unfinished) + 1);
        if (p < LD(sh->rd)) jset(&c, &sh->rd, p);
      }
      jset(&c, &sl->kind, OP_FREE);
      jset(&c, &sh->slot_busy, LD(sh->slot_busy) & ~((uint64_t)1 << slot));
      jcommit(&c);
      advance(&c);
      mark_wake(&c, discard ? W_PUT : W_GET);
      q_unlock(&c);
      pthread_mutex_unlock(&sl->m);
      return 0;
    }
    atomic_store(&sh->rput, 0);
    c.n = 0; /* nothing was journaled, but be plain about it */
    if (LD(sh->slot_busy) && reap(&c)) continue;
    if (timeout == 0) {
      if (lane_reap(&c)) continue;
      rc = MH_EAGAIN;
      break;
    }
    if (last) {
      rc = MH_ETIMEDOUT;
      break;
    }
    if (!spun) {
      spun = true;
      q_unlock(&c);
      SPIN_UNTIL(count_room(q, len) || LD(sh->shut) || (lane_now(q, lane_ok) && lane_has_room(q)));
      if ((rc = q_lock(&c))) return rc;
      continue;
    }
    if (lane_reap(&c)) continue;
    if ((rc = q_wait(&c, &sh->fw_put, &dl, lane_now(q, lane_ok) ? W_PUT : 0))) return rc;
    last = deadline_passed(&dl);
  }
  q_unlock(&c);
  return rc;
}

/* ---- get ------------------------------------------------------------------ */

/* The whole pages of a record's payload beyond the warm part of the ring,
 * [*lo, *hi) in ring offsets: whether there are any. */
static bool punch_range(const mh_mpqueue_t *q, uint64_t pos, uint64_t len, uint64_t *lo,
                        uint64_t *hi) {
  if (q->ringsz <= 2 * KEEP) return false;
  long ps = sysconf(_SC_PAGESIZE);
  uint64_t page = ps > 0 ? (uint64_t)ps : 4096;
  uint64_t a = pos % q->ringsz + 16, b = a + len;
  if (a < KEEP) a = KEEP;
  a = (a + page - 1) / page * page;
  b = b / page * page;
  if (lo) *lo = a;
  if (hi) *hi = b;
  return b > a;
}

/* Give back the pages of a got record beyond the warm part of the ring. */
static void punch(mh_mpqueue_t *q, uint64_t pos, uint64_t len) {
  uint64_t lo, hi;
  if (punch_range(q, pos, len, &lo, &hi)) (void)madvise(q->ring + lo, hi - lo, MADV_REMOVE);
}

/* get and get_alloc.  With `grow` set, *bufp / *capp are a buffer of ours
 * that grows to fit. */
static int get_common(mh_mpqueue_t *q, void **bufp, size_t *capp, bool grow, size_t *len_out,
                      double timeout) {
  mpq_sh_t *sh = q->sh;
  ctx_t c = {q, sh, 0, 0};
  int rc;
  if (grow && !*bufp) {
    /* Room for any lane message; a record's get grows it. */
    if (!(*bufp = mh__malloc(LANE_MAX))) return MH_ENOMEM;
    *capp = LANE_MAX;
  }
  /* The lane first, without the lock (see Order above); when it is empty
   * and the record ring too, look again for a while before taking the
   * lock: a lane put needs no lock and may come at any moment. */
  bool spun = false, last = false;
  while (q->lane) {
    rc = lane_get(q, *bufp, *capp, len_out);
    if (rc == 1) return 0;
    if (rc == MH_ERANGE) {
      if (!grow) return MH_ERANGE;
      void *nb = mh__realloc(*bufp, *len_out);
      if (!nb) return MH_ENOMEM;
      *bufp = nb;
      *capp = *len_out;
      continue;
    }
    if (spun || timeout == 0 || LD(sh->nlive) || LD(sh->shut)) break;
    spun = true;
    SPIN_UNTIL(lane_next_ready(q) || LD(sh->nlive) || LD(sh->shut));
  }
  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  if ((rc = q_lock(&c))) return rc;
  for (;;) {
    if (q->lane && (rc = lane_get(q, *bufp, *capp, len_out)) != 0) {
      if (rc == 1) {
        rc = 0;
        break;
      }
      if (!grow) break;
      q_unlock(&c);
      void *nb = mh__realloc(*bufp, *len_out);
      if (!nb) return MH_ENOMEM;
      *bufp = nb;
      *capp = *len_out;
      if ((rc = q_lock(&c))) return rc;
      continue;
    }
    uint64_t p = find_ready(&c);
    /* A record is taken only when the lane has no message READY, looked
     * for after the record was seen (see Order above). */
    if (p != UINT64_MAX && lane_has_ready(q)) continue;
    if (p != UINT64_MAX) {
      rec_t *r = rec_at(q, p);
      uint64_t len = LD(r->len);
      if (len > *capp || (grow && !*bufp)) {
        if (!grow) {
          *len_out = len;
          rc = MH_ERANGE;
          break;
        }
        /* Allocate without the lock, then look again: the message may
         * have gone to another get meanwhile. */
        q_unlock(&c);
        size_t want = len ? len : 1;
        void *nb = mh__realloc(*bufp, want);
        if (!nb) return MH_ENOMEM;
        *bufp = nb;
        *capp = want;
        if ((rc = q_lock(&c))) return rc;
        continue;
      }
      unsigned char *src = (unsigned char *)r + 16;
      int slot = len > SMALL_MAX ? slot_acquire(&c) : -1;
      if (slot < 0) {
        if (len) memcpy(*bufp, src, len);
        jset(&c, &r->word, R_DONE);
        jset(&c, &sh->nready, LD(sh->nready) - 1);
        jset(&c, &sh->nbytes, LD(sh->nbytes) - len);
        jset(&c, &sh->nlive, LD(sh->nlive) - 1);
        advance_j(&c, p);
        jcommit(&c);
        mark_wake(&c, W_PUT);
        *len_out = len;
        rc = 0;
        break;
      }
      /* Claim, copy outside the lock, release. */
      mpq_slot_t *sl = &sh->slots[slot];
      jset(&c, &r->word, R_CLAIMED | (uint64_t)slot << 32);
      jset(&c, &sh->nready, LD(sh->nready) - 1);
      jset(&c, &sl->kind, OP_GET);
      jset(&c, &sl->pos, p);
      jset(&c, &sh->slot_busy, LD(sh->slot_busy) | (uint64_t)1 << slot);
      jcommit(&c);
      advance(&c);
      q_unlock(&c);
      memcpy(*bufp, src, len);
      rc = q_lock(&c);
      if (rc) {
        pthread_mutex_unlock(&sl->m);
        return rc;
      }
      bool punched = punch_range(q, p, len, NULL, NULL);
      if (punched) {
        /* Pages to give back: the message is removed first (FREEING, the
         * one store that removes it), and the room is released only after
         * the pages are gone, so neither a reaper (who would make zeroed
         * pages gettable again) nor a producer (whose bytes they would
         * zero) can see them half-way. */
        jset(&c, &r->word, R_FREEING | (uint64_t)slot << 32);
        jset(&c, &sh->nlive, LD(sh->nlive) - 1);
        jcommit(&c);
        q_unlock(&c);
        punch(q, p, len);
        rc = q_lock(&c);
        if (rc) {
          pthread_mutex_unlock(&sl->m);
          return rc;
        }
      }
      /* Without pages to give back, this is the one store that removes
       * the message: DONE, in the journal. */
      jset(&c, &r->word, R_DONE);
      jset(&c, &sh->nbytes, LD(sh->nbytes) - len);
      if (!punched) jset(&c, &sh->nlive, LD(sh->nlive) - 1);
      jset(&c, &sl->kind, OP_FREE);
      jset(&c, &sh->slot_busy, LD(sh->slot_busy) & ~((uint64_t)1 << slot));
      jcommit(&c);
      advance(&c);
      mark_wake(&c, W_PUT);
      q_unlock(&c);
      pthread_mutex_unlock(&sl->m);
      *len_out = len;
      return 0;
    }
    if (LD(sh->slot_busy) && reap(&c)) continue;
    uint64_t shut = LD(sh->shut);
    if (shut == 2 || (shut && LD(sh->nwriting) == 0 && !lane_has_writing(q))) {
      rc = MH_ESHUTDOWN;
      break;
    }
    if (timeout == 0) {
      rc = MH_EAGAIN;
      break;
    }
    if (last) {
      rc = MH_ETIMEDOUT;
      break;
    }
    if (!spun) {
      spun = true;
      q_unlock(&c);
      SPIN_UNTIL(LD(sh->nready) || LD(sh->shut) || lane_has_ready(q));
      if ((rc = q_lock(&c))) return rc;
      continue;
    }
    if (lane_reap(&c)) continue;
    if ((rc = q_wait(&c, &sh->fw_get, &dl, W_GET))) return rc;
    last = deadline_passed(&dl);
  }
  q_unlock(&c);
  return rc;
}

int mh_mpqueue_get(mh_mpqueue_t *q, void *buf, size_t cap, size_t *len, double timeout) {
  if (!q || !len || (!buf && cap) || bad_timeout(timeout)) return MH_EINVAL;
  if (q->closed) return MH_EBADF;
  void *b = buf;
  return get_common(q, &b, &cap, false, len, timeout);
}

int mh_mpqueue_get_alloc(mh_mpqueue_t *q, void **msg, size_t *len, double timeout) {
  if (msg) *msg = NULL;
  if (!q || !msg || !len || bad_timeout(timeout)) return MH_EINVAL;
  if (q->closed) return MH_EBADF;
  void *b = NULL;
  size_t cap = 0;
  int rc = get_common(q, &b, &cap, true, len, timeout);
  if (rc) {
    mh__free(b);
    return rc;
  }
  *msg = b;
  return 0;
}

void mh_mpqueue_msg_free(void *msg) { mh__free(msg); }

/* ---- sizes ------------------------------------------------------------------ */

/* The lane's part of a size is counted slot by slot: a snapshot, as the
 * record ring's counters are. */
size_t mh_mpqueue_qsize(mh_mpqueue_t *q) {
  if (!q) return 0;
  uint64_t n;
  lane_count(q, &n, NULL, NULL);
  return (size_t)(atomic_load(&q->sh->nready) + n);
}

int mh_mpqueue_empty(mh_mpqueue_t *q) {
  if (!q) return MH_EINVAL;
  return mh_mpqueue_qsize(q) == 0;
}

int mh_mpqueue_full(mh_mpqueue_t *q) {
  if (!q) return MH_EINVAL;
  return q->sh->maxsize && mh_mpqueue_qsize(q) >= q->sh->maxsize;
}

size_t mh_mpqueue_qbytes(mh_mpqueue_t *q) {
  if (!q) return 0;
  uint64_t b;
  lane_count(q, NULL, &b, NULL);
  return (size_t)(atomic_load(&q->sh->nbytes) + b);
}

int mh_mpqueue_bounds(mh_mpqueue_t *q, size_t *maxsize, size_t *maxbytes) {
  if (!q) return MH_EINVAL;
  if (maxsize) *maxsize = (size_t)q->sh->maxsize;
  if (maxbytes) *maxbytes = (size_t)q->sh->maxbytes;
  return 0;
}

/* ---- task_done, join ---------------------------------------------------------- */

int mh_mpqueue_task_done(mh_mpqueue_t *q) {
  if (!q) return MH_EINVAL;
  ctx_t c = {q, q->sh, 0, 0};
  int rc = q_lock(&c);
  if (rc) return rc;
  uint64_t u = LD(q->sh->unfinished) + lane_puts(q);
  if (u == 0) {
    rc = MH_EINVAL;
  } else {
    jset(&c, &q->sh->unfinished, LD(q->sh->unfinished) - 1);
    jcommit(&c);
    if (u == 1) mark_wake(&c, W_JOIN);
  }
  q_unlock(&c);
  return rc;
}

int mh_mpqueue_join(mh_mpqueue_t *q, double timeout) {
  if (!q || bad_timeout(timeout)) return MH_EINVAL;
  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  ctx_t c = {q, q->sh, 0, 0};
  int rc = q_lock(&c);
  if (rc) return rc;
  bool last = false;
  while (LD(q->sh->unfinished) + lane_puts(q)) {
    if (timeout == 0 || last) {
      rc = MH_ETIMEDOUT;
      break;
    }
    if ((rc = q_wait(&c, &q->sh->fw_join, &dl, 0))) return rc;
    last = deadline_passed(&dl);
  }
  q_unlock(&c);
  return rc;
}

/* ---- shutdown, close -------------------------------------------------------- */

int mh_mpqueue_shutdown(mh_mpqueue_t *q, int immediate) {
  if (!q) return MH_EINVAL;
  mpq_sh_t *sh = q->sh;
  ctx_t c = {q, sh, 0, 0};
  int rc = q_lock(&c);
  if (rc) return rc;
  uint64_t mode = immediate ? 2 : 1;
  if (LD(sh->shut) < mode) {
    jset(&c, &sh->shut, mode);
    jcommit(&c);
  }
  if (immediate) {
    /* Lane puts look at shut after publishing: one side sees the other. */
    atomic_thread_fence(memory_order_seq_cst);
    lane_discard_all(&c);
    /* Discard every READY record, a journal's worth at a time; each batch
     * changes its records and the counters together. */
    uint64_t wr = LD(sh->wr), r = LD(sh->rd);
    while (r != wr) {
      uint64_t k = 0, bytes = 0;
      for (; r != wr && k < JMAX - 4; r = rec_next(q, r)) {
        rec_t *rr = rec_at(q, r);
        if (rec_state(rr) != R_READY) continue;
        jset(&c, &rr->word, R_DONE);
        bytes += LD(rr->len);
        k++;
      }
      uint64_t u = LD(sh->unfinished);
      jset(&c, &sh->nready, LD(sh->nready) - k);
      jset(&c, &sh->nbytes, LD(sh->nbytes) - bytes);
      jset(&c, &sh->nlive, LD(sh->nlive) - k);
      jset(&c, &sh->unfinished, u - k);
      jcommit(&c);
    }
    advance(&c);
  }
  mark_wake(&c, W_GET | W_PUT | W_JOIN);
  q_unlock(&c);
  return 0;
}

int mh_mpqueue_is_shutdown(mh_mpqueue_t *q) {
  if (!q) return MH_EINVAL;
  return atomic_load(&q->sh->shut) != 0;
}

int mh_mpqueue_close(mh_mpqueue_t *q) {
  if (!q) return MH_EINVAL;
  q->closed = true;
  return 0;
}
