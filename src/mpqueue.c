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
 * The lane: small messages without the lock.  Messages up to LANE_MAX
 * bytes travel through a second ring of `scap` fixed slots (a power of two)
 * whenever the record ring holds nothing (nlive == 0); otherwise they go to
 * the record ring like any other.  A slot's word says, in one 64-bit value,
 * the position it serves (40 bits), its state and its claimant's pid:
 * EMPTY(p) (free for the message at position p), WRITING(p, pid), READY(p)
 * and DISC(p) (being taken out unread, only under `lock`).  A put claims
 * EMPTY(e) with one CAS that names it (so a claimed slot always says who
 * claimed it), helps `enq` past it, copies the message in and publishes
 * READY(e) with one store.  A get scans from `deq` for the first READY slot,
 * copies the message out, and only then removes it with one CAS READY(p) ->
 * EMPTY(p + scap), which also frees the slot for the next lap: a consumer that
 * dies before that CAS removed nothing, and no consumer ever owns a slot.
 * A slot whose claimant died stays WRITING; whoever finds it there while
 * waiting for room or for a message checks the pid (gone, a zombie, or a new
 * process with another start time) and, under `lock`, takes the slot out
 * unread (DISC, then the journal).  Gets skip WRITING slots, so a slow or
 * dead producer holds up nobody but itself.  Invariants:
 * - deq <= enq; every position below enq is claimed; a slot not EMPTY(p)
 *   at a position p >= deq is WRITING(p), READY(p) or DISC(p); a slot whose
 *   word names another position than p was got (or taken out) for p.
 * - Order: a producer uses the lane only while the record ring is empty, and
 *   a get takes from the lane first and takes a record only after finding no
 *   READY slot, looked for after it saw the record: so a producer's
 *   messages come out in the order it put them.  (A message that could not
 *   find a slot goes to the record ring, and those after it follow it.)
 * - Bounds: scap <= maxsize (when bounded) and scap * LANE_MAX <= maxbytes;
 *   a record put counts the lane's messages and bytes as well.  A lane put
 *   racing a record put onto an empty record ring may pass maxsize by the
 *   number of such racing puts, for as long as the race lasts.
 * - unfinished (L) counts record puts minus task_done calls and every
 *   message taken out unread; the total a join waits for is unfinished +
 *   enq - (slots WRITING), since every lane position below enq is a message
 *   put, one being put, or one taken out (counted in unfinished).
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
#include "spin.h"

#define MPQ_MAGIC 0x6d686d7071756575ull /* "mhmpqueu" */

/* Op slots: how many large copies may run outside the lock at once. */
#define NSLOTS 64
/* Journal entries: the largest change (a put's reservation) needs 9. */
#define JMAX 24
/* Messages up to this many bytes are copied under the lock: cheaper than the
 * op slot's two extra lock round trips, and a copy this short holds the lock
 * for less time than those would. */
#define SMALL_MAX ((uint64_t)4096)
/* The warm part of the ring (see Memory above). */
#define KEEP ((uint64_t)8 << 20)
/* Bounded sleeps, seconds (see Waiting above). */
#define POLL_BUSY 0.02
#define POLL_IDLE 0.2
/* Spinning before sleeping (MH__SPIN_MPQ_WAIT) and try-locks before
 * blocking on the lock (MH__SPIN_MPQ_LOCK) are policies of spin.h. */

/* The lane (see above): at most LANE_SLOTS slots of 128 bytes, each holding
 * a message of up to LANE_MAX bytes. */
#define LANE_SLOTS 1024u
#define LANE_MAX ((uint64_t)104)

enum { R_PAD = 1, R_WRITING, R_READY, R_CLAIMED, R_FREEING, R_DONE };
enum { S_EMPTY = 0, S_WRITING = 1, S_READY = 2, S_DISC = 3 };
enum { OP_FREE = 0, OP_PUT, OP_GET };
enum { W_GET = 1, W_PUT = 2, W_JOIN = 4 };

typedef struct rec {
  _Atomic uint64_t word; /* state | slot << 32 */
  _Atomic uint64_t len;
} rec_t;

typedef struct mpq_slot {
  pthread_mutex_t m;      /* O: robust, process-shared */
  _Atomic uint64_t kind;  /* L: OP_* */
  _Atomic uint64_t pos;   /* L: the record's position */
} __attribute__((aligned(64))) mpq_slot_t;

/* A lane slot.  `own` is written by the claimant right after its claim:
 * (position << 24 | its start time's low 24 bits), so that a pid reused by
 * a new process is told from the claimant. */
typedef struct mpq_lslot {
  _Atomic uint64_t word;     /* S: pos:40 | state:2 | pid:22 */
  _Atomic uint64_t own;      /* the claimant's */
  _Atomic uint64_t len;      /* the claimant's; stable while READY */
  _Atomic uint64_t data[13]; /* the claimant's; stable while READY */
} __attribute__((aligned(128))) mpq_lslot_t;

_Static_assert(sizeof(mpq_lslot_t) == 128 && LANE_MAX == sizeof(((mpq_lslot_t *)0)->data),
               "a slot is two cache lines");

#define SW_POSMASK (((uint64_t)1 << 40) - 1)
#define SW_PIDMASK ((uint64_t)0x3fffff)
#define SW(pos, st, pid) \
  (((uint64_t)(pos)&SW_POSMASK) << 24 | (uint64_t)(st) << 22 | ((uint64_t)(pid)&SW_PIDMASK))
#define SW_POS(w) ((w) >> 24)
#define SW_ST(w) ((unsigned)((w) >> 22) & 3u)
#define SW_PID(w) ((pid_t)((w)&SW_PIDMASK))

typedef struct mpq_sh {
  uint64_t magic;    /* I */
  uint64_t ringsz;   /* I: bytes in the ring, a multiple of the page size */
  uint64_t maxsize;  /* I: 0 = no bound */
  uint64_t maxbytes; /* I */
  uint64_t data_off; /* I: the ring's offset in the mapping */
  uint64_t map_len;  /* I */
  pthread_mutex_t lock; /* robust, process-shared */
  _Atomic uint64_t head, rd, wr;              /* L */
  _Atomic uint64_t nready, nwriting, nbytes;  /* L */
  _Atomic uint64_t nlive; /* L: records WRITING, READY or CLAIMED */
  uint64_t scap;          /* I: lane slots, 0 = no lane */
  uint64_t lane_off;      /* I: the lane's offset in the mapping */
  _Atomic uint64_t unfinished;                /* L */
  _Atomic uint64_t shut;                      /* L: 0, 1, 2 = immediate */
  _Atomic uint64_t slot_busy;                 /* L: bit i = slot i in use */
  _Atomic uint64_t jvalid, jn;                /* J */
  struct {
    _Atomic uint64_t off, val, exp; /* off | 1: compare-and-swap from exp */
  } j[JMAX];                                  /* J */
  char pad0[64];
  _Atomic uint32_t fw_get, fw_put, fw_join;   /* F */
  char pad1[64];
  _Atomic uint64_t enq __attribute__((aligned(64))); /* S: next lane position to claim */
  char pad2[56];
  _Atomic uint64_t deq __attribute__((aligned(64))); /* S: no READY slot below */
  char pad3[56];
  mpq_slot_t slots[NSLOTS];
} mpq_sh_t;

_Static_assert(NSLOTS <= 64, "slot_busy is one word");

struct mh_mpqueue_s {
  mpq_sh_t *sh;
  mpq_lslot_t *lane; /* NULL: no lane */
  uint64_t scap;
  unsigned char *ring;
  uint64_t ringsz;
  size_t map_len;
  _Atomic bool closed; /* this process called close (a forked copy keeps its own) */
};

/* What one call has under way: its journal and the wake-ups it owes. */
typedef struct ctx {
  mh_mpqueue_t *q;
  mpq_sh_t *sh;
  unsigned n;    /* journal entries filled */
  unsigned wake; /* W_* owed after unlocking */
} ctx_t;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

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

static void jset(ctx_t *c, _Atomic uint64_t *field, uint64_t val) {
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
static void jcas(ctx_t *c, _Atomic uint64_t *field, uint64_t exp, uint64_t val) {
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

static void jcommit(ctx_t *c) {
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

/* If anybody sleeps on `w` (bit 0), clear the bit and bump the word: true
 * when this call did, and so owes the futex wake-up.  Lane puts and gets
 * call it without the lock, so it is a CAS, never a plain store; a sleeper
 * sets the bit with an atomic OR and looks again before it sleeps. */
static inline bool take_sleepers(_Atomic uint32_t *w) {
  uint32_t v = LD(*w);
  while (v & 1)
    if (atomic_compare_exchange_weak(w, &v, (v + 2) & ~1u)) return true;
  return false;
}

/* A change may let sleepers of `which` go: bump their word if any sleep. */
static void mark_wake(ctx_t *c, unsigned which) {
  _Atomic uint32_t *w[3] = {&c->sh->fw_get, &c->sh->fw_put, &c->sh->fw_join};
  for (int i = 0; i < 3; i++)
    if ((which & (1u << i)) && take_sleepers(w[i])) c->wake |= 1u << i;
}

/* The lane's part of the lock's recovery (below, with the lane). */
static void lane_recover(ctx_t *c);

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

static int q_lock(ctx_t *c) {
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

static void q_unlock(ctx_t *c) {
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

/* Lane look-ups used by the waits (below, with the lane). */
static bool lane_has_ready(const mh_mpqueue_t *q);
static bool lane_has_room(const mh_mpqueue_t *q);
static bool lane_has_writing(const mh_mpqueue_t *q);

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

/* ---- the lane: small messages without the lock ----------------------------- */

/* This process's pid and start time, as claims name them; reset in a forked
 * child (every process that uses a queue was forked after it was made). */
static _Atomic uint32_t g_me_pid;
static _Atomic uint64_t g_me_stime;
static pthread_once_t g_me_once = PTHREAD_ONCE_INIT;

static void me_forked(void) { atomic_store(&g_me_pid, 0); }
static void me_register(void) { pthread_atfork(NULL, NULL, me_forked); }

/* Read /proc/<pid>/stat: 0 with its start time and whether it is a zombie,
 * 1 when there is no such process, -1 when it cannot be told. */
static int proc_stat(pid_t pid, uint64_t *stime, bool *zombie) {
  char path[48], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? 1 : -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return n < 0 && errno == ESRCH ? 1 : -1;
  buf[n] = 0;
  char *t = strrchr(buf, ')'); /* the name may hold anything but ends here */
  if (!t || t[1] != ' ') return -1;
  t += 2;
  *zombie = *t == 'Z' || *t == 'X';
  /* Field 3 is the state; the start time is field 22. */
  for (int f = 3; f < 22; f++) {
    t = strchr(t, ' ');
    if (!t) return -1;
    t++;
  }
  *stime = strtoull(t, NULL, 10);
  return 0;
}

static uint32_t me_pid(uint64_t *stime) {
  uint32_t p = atomic_load_explicit(&g_me_pid, memory_order_acquire);
  if (!p) {
    pthread_once(&g_me_once, me_register);
    pid_t self = getpid();
    uint64_t st = 0;
    bool z;
    if (proc_stat(self, &st, &z) != 0) st = 0;
    atomic_store_explicit(&g_me_stime, st, memory_order_relaxed);
    p = (uint32_t)self;
    atomic_store_explicit(&g_me_pid, p, memory_order_release);
  }
  *stime = LD(g_me_stime);
  return p;
}

/* Whether the claimant of a WRITING slot (word w) is dead: its pid is gone,
 * a zombie, or now a process that started at another time than the one
 * that claimed (when the claimant lived to write `own`).  Never true for a
 * live claimant, however slow: only its death frees its slot. */
static bool owner_dead(const mpq_lslot_t *s, uint64_t w) {
  pid_t pid = SW_PID(w);
  if (pid <= 0 || (kill(pid, 0) == -1 && errno == ESRCH)) return true;
  uint64_t st = 0;
  bool zombie = false;
  int rc = proc_stat(pid, &st, &zombie);
  if (rc == 1) return true;
  if (rc < 0) return false;
  if (zombie) return true;
  uint64_t own = LD(s->own);
  return (own >> 24) == SW_POS(w) && (own & 0xffffff) != (st & 0xffffff);
}

static inline mpq_lslot_t *lslot(const mh_mpqueue_t *q, uint64_t pos) {
  return &q->lane[pos & (q->scap - 1)];
}

/* Whole words: the reader may race a writer of the next lap (and then
 * throws its copy away), so both sides use atomic words. */
static inline void copy_in(_Atomic uint64_t *d, const void *msg, size_t len) {
  const unsigned char *m = msg;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, m + i, 8);
    atomic_store_explicit(&d[i / 8], v, memory_order_relaxed);
  }
  if (i < len) {
    uint64_t v = 0;
    memcpy(&v, m + i, len - i);
    atomic_store_explicit(&d[i / 8], v, memory_order_relaxed);
  }
}

static inline void copy_out(void *buf, const _Atomic uint64_t *d, size_t len) {
  unsigned char *b = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = atomic_load_explicit(&d[i / 8], memory_order_relaxed);
    memcpy(b + i, &v, 8);
  }
  if (i < len) {
    uint64_t v = atomic_load_explicit(&d[i / 8], memory_order_relaxed);
    memcpy(b + i, &v, len - i);
  }
}

/* Put a message into the lane: true with its position, false when the lane
 * is full.  Lock-free; the caller has checked that the record ring is empty
 * and the queue not shut down. */
static bool lane_put(mh_mpqueue_t *q, const void *msg, size_t len, uint64_t *pos) {
  mpq_sh_t *sh = q->sh;
  uint64_t scap = q->scap, stime;
  uint32_t pid = me_pid(&stime);
  uint64_t e = atomic_load_explicit(&sh->enq, memory_order_relaxed);
  mpq_lslot_t *s;
  for (;;) {
    s = lslot(q, e);
    /* Claim first, look after: a failed CAS says what the word holds, and
     * the line comes over once, for writing (a load first would fetch it
     * shared and the CAS fetch it again). */
    uint64_t w = SW(e, S_EMPTY, 0);
    if (atomic_compare_exchange_strong(&s->word, &w, SW(e, S_WRITING, pid))) break;
    uint64_t d = (SW_POS(w) - e) & SW_POSMASK;
    if (d == 0 && SW_ST(w) == S_EMPTY) {
      continue;
    } else if (d == 0) {
      /* Claimed by another put that has not moved enq yet: help it. */
      uint64_t x = e;
      e = atomic_compare_exchange_strong(&sh->enq, &x, e + 1) ? e + 1 : x;
    } else if (d == ((0 - scap) & SW_POSMASK)) {
      return false; /* the message of the lap before is still there */
    } else {
      e = atomic_load(&sh->enq); /* enq moved on meanwhile */
    }
  }
  uint64_t x = e;
  atomic_compare_exchange_strong(&sh->enq, &x, e + 1);
  atomic_store_explicit(&s->own, (e & SW_POSMASK) << 24 | (stime & 0xffffff),
                        memory_order_relaxed);
  atomic_store_explicit(&s->len, len, memory_order_relaxed);
  copy_in(s->data, msg, len);
  /* The one store that makes it visible; sequentially consistent, so that
   * the look at fw_get below cannot pass it (a sleeper sets its bit first,
   * then looks at the lane). */
  atomic_store(&s->word, SW(e, S_READY, 0));
  if (take_sleepers(&sh->fw_get)) mh__futex_wake(&sh->fw_get, INT_MAX, MH__FUTEX_SHARED);
  *pos = e;
  return true;
}

/* Move deq past the got slots from d on. */
static void lane_advance(mh_mpqueue_t *q, uint64_t d) {
  mpq_sh_t *sh = q->sh;
  for (;;) {
    uint64_t w = atomic_load_explicit(&lslot(q, d)->word, memory_order_acquire);
    if (SW_POS(w) == (d & SW_POSMASK)) return; /* not got yet (or not claimed) */
    uint64_t x = d;
    if (!atomic_compare_exchange_strong(&sh->deq, &x, d + 1) && x != d + 1) {
      if (x > d) d = x; /* another get moved it further */
      else return;
      continue;
    }
    d++;
  }
}

/* Take the READY message at p (word w): 1 (got), 0 (another get had it
 * first: our copy is void) or MH_ERANGE (longer than cap; it stays). */
static inline int lane_take(mh_mpqueue_t *q, uint64_t p, uint64_t w, void *buf, size_t cap,
                            size_t *len_out) {
  mpq_lslot_t *s = lslot(q, p);
  uint64_t l = LD(s->len);
  if (l > cap || l > LANE_MAX) {
    atomic_thread_fence(memory_order_acquire);
    if (LD(s->word) != w) return 0; /* it went meanwhile: l may be the next lap's */
    *len_out = (size_t)l;
    return MH_ERANGE;
  }
  copy_out(buf, s->data, (size_t)l);
  if (!atomic_compare_exchange_strong(&s->word, &w, SW(p + q->scap, S_EMPTY, 0))) return 0;
  *len_out = (size_t)l;
  return 1;
}

/* Take the first READY message of the lane: 1 (got, *len_out its length),
 * 0 (none READY), or MH_ERANGE (the next one is longer than cap; it stays,
 * *len_out says how long).  Lock-free; the copy comes first and the removal
 * is the CAS after it.  The slot at deq is looked at first, and enq (the
 * producers' line) is read only when that slot holds no message yet. */
static int lane_get(mh_mpqueue_t *q, void *buf, size_t cap, size_t *len_out) {
  mpq_sh_t *sh = q->sh;
  uint64_t scap = q->scap;
  for (;;) {
    uint64_t d = atomic_load_explicit(&sh->deq, memory_order_acquire);
    uint64_t w = atomic_load_explicit(&lslot(q, d)->word, memory_order_acquire), p = d;
    int rc = 0;
    if (SW_POS(w) != (d & SW_POSMASK)) {
      lane_advance(q, d); /* got already: move deq on and look again */
      continue;
    }
    if (SW_ST(w) == S_EMPTY) return 0; /* not claimed: nothing after it either */
    if (SW_ST(w) != S_READY) {
      /* Being written or taken out: a later slot may hold a message of
       * another producer.  Take the first READY one, and then look again
       * at the slots before it: a message put before that one (by the
       * same producer) was published before it, so the second look, made
       * after seeing it, sees the earlier one.  Repeat until no earlier
       * one shows up. */
      uint64_t e = atomic_load_explicit(&sh->enq, memory_order_acquire);
      for (p = d + 1; p != e && p - d < scap; p++) {
        w = atomic_load_explicit(&lslot(q, p)->word, memory_order_acquire);
        if (w == SW(p, S_READY, 0) || SW_ST(w) == S_EMPTY) break;
      }
      if (p == e || p - d >= scap || w != SW(p, S_READY, 0)) return 0;
      for (uint64_t r = d; r != p;) {
        uint64_t wr = atomic_load_explicit(&lslot(q, r)->word, memory_order_acquire);
        if (wr == SW(r, S_READY, 0)) {
          p = r;
          w = wr;
          r = d;
          continue;
        }
        r++;
      }
    }
    rc = lane_take(q, p, w, buf, cap, len_out);
    if (rc == 0) continue;
    if (rc == 1) {
      if (p == d) lane_advance(q, d);
      if (take_sleepers(&sh->fw_put)) mh__futex_wake(&sh->fw_put, INT_MAX, MH__FUTEX_SHARED);
    }
    return rc;
  }
}

/* Whether the slot at deq holds a message (a cheap look for spinning). */
static inline bool lane_next_ready(const mh_mpqueue_t *q) {
  uint64_t d = atomic_load_explicit(&q->sh->deq, memory_order_relaxed);
  /* EMPTY(d): position d is not claimed, so no later one is either. */
  return atomic_load_explicit(&lslot(q, d)->word, memory_order_relaxed) != SW(d, S_EMPTY, 0);
}

/* Count the lane's READY messages and their bytes, and its WRITING slots
 * (a snapshot; any pointer may be NULL). */
static void lane_count(const mh_mpqueue_t *q, uint64_t *nready, uint64_t *bytes,
                       uint64_t *nwriting) {
  uint64_t r = 0, b = 0, wr = 0;
  if (q->lane) {
    uint64_t d = atomic_load(&q->sh->deq), e = atomic_load(&q->sh->enq);
    for (uint64_t p = d; p != e && p - d < q->scap; p++) {
      uint64_t w = atomic_load(&lslot(q, p)->word);
      if (SW_POS(w) != (p & SW_POSMASK)) continue;
      if (SW_ST(w) == S_READY) {
        r++;
        b += LD(lslot(q, p)->len);
      } else if (SW_ST(w) == S_WRITING) {
        wr++;
      }
    }
  }
  if (nready) *nready = r;
  if (bytes) *bytes = b;
  if (nwriting) *nwriting = wr;
}

static bool lane_has_ready(const mh_mpqueue_t *q) {
  if (!q->lane) return false;
  uint64_t d = atomic_load(&q->sh->deq), e = atomic_load(&q->sh->enq);
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    uint64_t w = atomic_load(&lslot(q, p)->word);
    if (w == SW(p, S_READY, 0)) return true;
  }
  return false;
}

static bool lane_has_writing(const mh_mpqueue_t *q) {
  uint64_t n;
  lane_count(q, NULL, NULL, &n);
  return n != 0;
}

/* Whether the lane has room for `k` more messages (1 <= k <= scap).  A
 * put that found the lane full waits for room for several (LANE_BATCH):
 * then it fills slots the consumers have left, instead of taking each slot
 * line back from them the moment they free it. */
#define LANE_BATCH(q) ((q)->scap >= 256 ? 64u : (unsigned)((q)->scap / 4 ? (q)->scap / 4 : 1))
static bool lane_has_room_for(const mh_mpqueue_t *q, uint64_t k) {
  uint64_t e = atomic_load_explicit(&q->sh->enq, memory_order_relaxed) + k - 1;
  uint64_t w = atomic_load_explicit(&lslot(q, e)->word, memory_order_relaxed);
  return ((SW_POS(w) - e) & SW_POSMASK) != ((0 - q->scap) & SW_POSMASK);
}

static bool lane_has_room(const mh_mpqueue_t *q) {
  if (!q->lane) return false;
  uint64_t e = atomic_load(&q->sh->enq);
  uint64_t w = atomic_load(&lslot(q, e)->word);
  return ((SW_POS(w) - e) & SW_POSMASK) != ((0 - q->scap) & SW_POSMASK);
}

/* Messages the lane holds or held that task_done has not yet answered:
 * every position below enq, less those still being written (the rest of
 * the account is in `unfinished`).  Lock held. */
static uint64_t lane_puts(const mh_mpqueue_t *q) {
  if (!q->lane) return 0;
  /* One snapshot of enq for both terms: a claim made after it must not
   * count as being written (the total would then miss a message put). */
  uint64_t d = atomic_load(&q->sh->deq), e = atomic_load(&q->sh->enq), nw = 0;
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    uint64_t w = atomic_load(&lslot(q, p)->word);
    if (SW_POS(w) == (p & SW_POSMASK) && SW_ST(w) == S_WRITING) nw++;
  }
  return e - nw;
}

/* Take the message (READY) or claim (WRITING) at p out unread: DISC by CAS
 * (lock-free gets and puts leave a DISC slot alone), then, in the journal,
 * one task fewer and the slot free for the next lap.  Lock held.  Returns
 * whether it was still there to take. */
static bool lane_take_out(ctx_t *c, uint64_t p, uint64_t w) {
  mh_mpqueue_t *q = c->q;
  mpq_lslot_t *s = lslot(q, p);
  uint64_t disc = SW(p, S_DISC, 0);
  if (!atomic_compare_exchange_strong(&s->word, &w, disc)) return false;
  jset(c, &c->sh->unfinished, LD(c->sh->unfinished) - 1);
  jcas(c, &s->word, disc, SW(p + q->scap, S_EMPTY, 0));
  jcommit(c);
  lane_advance(q, atomic_load(&c->sh->deq));
  mark_wake(c, W_PUT | W_GET | W_JOIN);
  return true;
}

/* Take out the claims of dead producers.  Lock held.  Returns whether any. */
static bool lane_reap(ctx_t *c) {
  mh_mpqueue_t *q = c->q;
  if (!q->lane) return false;
  bool any = false;
  uint64_t d = atomic_load(&c->sh->deq), e = atomic_load(&c->sh->enq);
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    mpq_lslot_t *s = lslot(q, p);
    uint64_t w = atomic_load(&s->word);
    if (SW_POS(w) != (p & SW_POSMASK) || SW_ST(w) != S_WRITING) continue;
    if (owner_dead(s, w) && lane_take_out(c, p, w)) any = true;
  }
  return any;
}

/* Discard every READY message of the lane (immediate shutdown).  Lock held. */
static void lane_discard_all(ctx_t *c) {
  mh_mpqueue_t *q = c->q;
  if (!q->lane) return;
  uint64_t d = atomic_load(&c->sh->deq), e = atomic_load(&c->sh->enq);
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    uint64_t w = atomic_load(&lslot(q, p)->word);
    if (w == SW(p, S_READY, 0)) lane_take_out(c, p, w);
  }
}

/* After a put into the lane: an immediate shutdown that came while it was
 * copying discards its message (unless a get had it first). */
static void lane_put_done(ctx_t *c, uint64_t p, bool locked) {
  if (atomic_load(&c->sh->shut) != 2) return;
  if (!locked && q_lock(c)) return;
  lane_take_out(c, p, SW(p, S_READY, 0));
  if (!locked) q_unlock(c);
}

/* The lock's owner died: finish the take-outs it began (a DISC slot whose
 * journal never committed; a committed one was replayed already). */
static void lane_recover(ctx_t *c) {
  mh_mpqueue_t *q = c->q;
  for (uint64_t i = 0; q->lane && i < q->scap; i++) {
    uint64_t w = atomic_load(&q->lane[i].word);
    if (SW_ST(w) != S_DISC) continue;
    uint64_t p = SW_POS(w);
    jset(c, &c->sh->unfinished, LD(c->sh->unfinished) - 1);
    jcas(c, &q->lane[i].word, w, SW(p + q->scap, S_EMPTY, 0));
    jcommit(c);
  }
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
  uint64_t lp;
  bool spun = false, last = false, reset = false;
  while (lane_now(q, lane_ok)) {
    if (lane_put(q, msg, len, &lp)) {
      lane_put_done(&c, lp, false);
      return 0;
    }
    /* The lane is full: when the record ring may not take it either (a
     * count bound), look again for a while before taking the lock. */
    if (spun || timeout == 0 || !sh->maxsize) break;
    spun = true;
    SPIN_UNTIL(lane_has_room_for(q, LANE_BATCH(q)) || !lane_now(q, lane_ok));
  }
  mh__deadline_t dl;
  mh__deadline_init(&dl, timeout);
  int rc = q_lock(&c);
  if (rc) return rc;
  uint64_t s = rec_bytes(len), p = 0;
  int slot = -1;
  for (;;) {
    if (LD(sh->shut)) {
      rc = MH_ESHUTDOWN;
      break;
    }
    if (lane_now(q, lane_ok) && lane_put(q, msg, len, &lp)) {
      lane_put_done(&c, lp, true);
      rc = 0;
      break;
    }
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
