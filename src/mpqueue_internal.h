/* SPDX-License-Identifier: MIT */
/* mpqueue_internal.h - what mpqueue.c (the record ring, the lock, the
 * journal and the API) and mpqueue_lane.c (the lock-free lane for small
 * messages) share: the layout of the shared mapping, the journal and lock
 * calls the lane's recovery uses, and the lane's calls.  Never installed.
 * The layout, its invariants and the field tags are described at the top of
 * mpqueue.c (the records) and mpqueue_lane.c (the lane).
 */
#ifndef MH_MPQUEUE_INTERNAL_H
#define MH_MPQUEUE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manyhands/mpqueue.h"

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
/* Processes that may put into the lane at once (more put records only). */
#define LANE_PRODUCERS 128
/* A process that found no free entry looks again at every this many puts
 * (entries free up as their processes end). */
#define LANE_REG_RETRY 4096u

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

/* A lane slot.  The claimant's start time is not here but in `reg`,
 * written before its first claim (see mpqueue_lane.c). */
typedef struct mpq_lslot {
  _Atomic uint64_t word;     /* S: pos:40 | state:2 | pid:22 */
  uint64_t spare;
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
  /* 1 while a record put, holding the lock, decides whether its record
   * fits (see "Bounds" in mpqueue_lane.c); cleared by the lock's recovery. */
  _Atomic uint64_t rput;                      /* L */
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
  /* The processes that may put into the lane: pid (0: a free entry) and
   * start time, written before the process's first claim. */
  struct {
    _Atomic uint64_t pid, stime;
  } reg[LANE_PRODUCERS];                      /* L */
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
  /* The pid that registered in `reg` through this handle (a forked child
   * finds its parent's and registers itself), and whether it found room. */
  _Atomic uint32_t reg_pid;
  _Atomic bool reg_ok;
  _Atomic uint32_t reg_puts; /* puts since reg_ok was found false */
};

/* What one call has under way: its journal and the wake-ups it owes. */
typedef struct ctx {
  mh_mpqueue_t *q;
  mpq_sh_t *sh;
  unsigned n;    /* journal entries filled */
  unsigned wake; /* W_* owed after unlocking */
} ctx_t;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

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

static inline mpq_lslot_t *lslot(const mh_mpqueue_t *q, uint64_t pos) {
  return &q->lane[pos & (q->scap - 1)];
}

/* Whether the slot at deq holds a message (a cheap look for spinning). */
static inline bool lane_next_ready(const mh_mpqueue_t *q) {
  uint64_t d = atomic_load_explicit(&q->sh->deq, memory_order_relaxed);
  /* EMPTY(d): position d is not claimed, so no later one is either. */
  return atomic_load_explicit(&lslot(q, d)->word, memory_order_relaxed) != SW(d, S_EMPTY, 0);
}

/* A put that found the lane full waits for room for this many slots: then
 * it fills slots the consumers have left, instead of taking each slot line
 * back from them the moment they free it. */
#define LANE_BATCH(q) ((q)->scap >= 256 ? 64u : (unsigned)((q)->scap / 4 ? (q)->scap / 4 : 1))

/* Shared between the two files; private to the library (mh__mpq_*, so a
 * static link cannot collide with a program's names). */
#define jset mh__mpq_jset
#define jcas mh__mpq_jcas
#define jcommit mh__mpq_jcommit
#define mark_wake mh__mpq_mark_wake
#define q_lock mh__mpq_q_lock
#define q_unlock mh__mpq_q_unlock
#define lane_put mh__mpq_lane_put
#define lane_get mh__mpq_lane_get
#define lane_count mh__mpq_lane_count
#define lane_has_ready mh__mpq_lane_has_ready
#define lane_has_writing mh__mpq_lane_has_writing
#define lane_has_room_for mh__mpq_lane_has_room_for
#define lane_has_room mh__mpq_lane_has_room
#define lane_puts mh__mpq_lane_puts
#define lane_reap mh__mpq_lane_reap
#define lane_discard_all mh__mpq_lane_discard_all
#define lane_put_done mh__mpq_lane_put_done
#define lane_register mh__mpq_lane_register
#define lane_abandon mh__mpq_lane_abandon
#define lane_recover mh__mpq_lane_recover

/* mpqueue.c: the journal and the lock (see there). */
void jset(ctx_t *c, _Atomic uint64_t *field, uint64_t val);
void jcas(ctx_t *c, _Atomic uint64_t *field, uint64_t exp, uint64_t val);
void jcommit(ctx_t *c);
void mark_wake(ctx_t *c, unsigned which);
int q_lock(ctx_t *c);
void q_unlock(ctx_t *c);

/* mpqueue_lane.c: the lane (see there). */
enum { LANE_FULL = 0, LANE_PUT = 1, LANE_RACED = 2 };
int lane_put(mh_mpqueue_t *q, const void *msg, size_t len, bool locked, uint64_t *pos);
void lane_abandon(ctx_t *c, uint64_t p);
int lane_register(mh_mpqueue_t *q, bool *ok);
int lane_get(mh_mpqueue_t *q, void *buf, size_t cap, size_t *len_out);
void lane_count(const mh_mpqueue_t *q, uint64_t *nready, uint64_t *bytes, uint64_t *nwriting);
bool lane_has_ready(const mh_mpqueue_t *q);
bool lane_has_writing(const mh_mpqueue_t *q);
bool lane_has_room_for(const mh_mpqueue_t *q, uint64_t k);
bool lane_has_room(const mh_mpqueue_t *q);
uint64_t lane_puts(const mh_mpqueue_t *q);
bool lane_reap(ctx_t *c);
void lane_discard_all(ctx_t *c);
void lane_put_done(ctx_t *c, uint64_t p, bool locked);
void lane_recover(ctx_t *c);

#endif
