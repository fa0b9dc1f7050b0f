/* SPDX-License-Identifier: MIT */
/* mpqueue_lane.c - the lane of mh_mpqueue: small messages between processes
 * without the lock, safe against the death of any process at any
 * instruction.  The record ring, the lock and the journal it falls back on
 * are mpqueue.c's.
 *
 * Messages up to LANE_MAX bytes travel through a second ring of `scap`
 * fixed slots (a power of two) whenever the record ring holds nothing
 * (nlive == 0); otherwise they go to the record ring like any other.  A
 * slot's word says, in one 64-bit value, the position it serves (40 bits),
 * its state and its claimant's pid:
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
 * process with another start time than the claimant's) and, under `lock`,
 * takes the slot out unread (DISC, then the journal).  The claimant's start
 * time is in `reg`, where a process enters itself (lane_register, under
 * `lock`) before its first claim; an entry changes only after every slot
 * that names its pid was taken out, so a slot's pid always leads to its
 * claimant's start time, whatever instruction the claimant died at.  Gets
 * skip WRITING slots, so a slow or dead producer holds up nobody but
 * itself.  Invariants:
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
 *   looks at nlive (0) before its claim, and a record put may count the
 *   lane in between and miss the claim.  So the two look at each other in
 *   Dekker's way, all sequentially consistent: a record put sets `rput`,
 *   then counts (enq, and the slot words); a lane put claims and moves
 *   enq, then reads rput and nlive, and when either is set it gives the
 *   claim back (LANE_RACED: taken out under `lock`, as a dead claimant's
 *   is) and puts a record instead.  Either the count sees the claim or the
 *   put sees the record put.
 * - unfinished (L) counts record puts minus task_done calls and every
 *   message taken out unread; the total a join waits for is unfinished +
 *   enq - (slots WRITING), since every lane position below enq is a message
 *   put, one being put, or one taken out (counted in unfinished).
 *
 * Tags (as in mpqueue.c): S the lane's words, changed by CAS by anyone (DISC
 * only under `lock`); L under `lock`, through the journal (rput: under
 * `lock`, stored directly, cleared by the lock's recovery).
 * Lock order: a lane put or get takes no lock; taking out a dead claimant's
 * slot and the lock's recovery run under `lock` (mpqueue.c's q_lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "mpqueue_internal.h"
#include "spin.h"

/* This process's start time, as claims name it, and the pid it is of (a
 * forked child finds its parent's here and reads its own). */
static _Atomic uint32_t g_me_pid;
static _Atomic uint64_t g_me_stime;

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
  uint32_t p = (uint32_t)mh__pid();
  if (atomic_load_explicit(&g_me_pid, memory_order_acquire) != p) {
    uint64_t st = 0;
    bool z;
    if (proc_stat((pid_t)p, &st, &z) != 0) st = 0;
    atomic_store_explicit(&g_me_stime, st, memory_order_relaxed);
    atomic_store_explicit(&g_me_pid, p, memory_order_release);
  }
  *stime = LD(g_me_stime);
  return p;
}

/* The entry of `reg` for pid, or -1.  Lock held. */
static int reg_find(const mpq_sh_t *sh, uint64_t pid) {
  for (int i = 0; i < LANE_PRODUCERS; i++)
    if (LD(sh->reg[i].pid) == pid) return i;
  return -1;
}

/* Whether the process `pid` that started at `stime` is dead: gone, a
 * zombie, or its pid now another process's.  Never true for a live one,
 * however slow; false when it cannot be told. */
static bool proc_dead(pid_t pid, uint64_t stime) {
  if (pid <= 0 || (kill(pid, 0) == -1 && errno == ESRCH)) return true;
  uint64_t st = 0;
  bool zombie = false;
  int rc = proc_stat(pid, &st, &zombie);
  if (rc != 0) return rc == 1;
  return zombie || st != stime;
}

/* Whether the claimant of a WRITING slot (word w) is dead.  Its start time
 * is in `reg`, written before it claimed anything (and changed only after
 * its slots were taken out): so a pid reused by a new process is told from
 * the claimant at every instruction of the claim.  Lock held. */
static bool owner_dead(const mh_mpqueue_t *q, uint64_t w) {
  pid_t pid = SW_PID(w);
  int i = reg_find(q->sh, (uint64_t)pid);
  /* No entry: never the case for a claim (see lane_register); say alive,
   * since taking out a live claimant's slot would be far worse. */
  if (i < 0) return pid <= 0;
  return proc_dead(pid, LD(q->sh->reg[i].stime));
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

/* Put a message into the lane: LANE_PUT (*pos its position), LANE_FULL, or
 * LANE_RACED: a record put may have counted the queue without this claim
 * (see "Bounds" above), so the slot at *pos, claimed and not written, must
 * be taken out under the lock (lane_abandon) and the message put as a
 * record.  Lock-free; the caller has checked that the record ring is empty
 * and the queue not shut down, and registered this process (lane_register).
 * `locked`: the caller holds the lock, so no record put can race it. */
int lane_put(mh_mpqueue_t *q, const void *msg, size_t len, bool locked, uint64_t *pos) {
  mpq_sh_t *sh = q->sh;
  uint64_t scap = q->scap;
  uint32_t pid = (uint32_t)mh__pid();
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
      return LANE_FULL; /* the message of the lap before is still there */
    } else {
      e = atomic_load(&sh->enq); /* enq moved on meanwhile */
    }
  }
  uint64_t x = e;
  atomic_compare_exchange_strong(&sh->enq, &x, e + 1);
  *pos = e;
  /* After the claim and enq (sequentially consistent), look for a record
   * put: one that set rput before this look counts the lane after it, and
   * might have missed this claim; one that set it after sees the claim.
   * rput first: a record put clears it after it bumped nlive. */
  if (!locked && (atomic_load(&sh->rput) || atomic_load(&sh->nlive))) return LANE_RACED;
  atomic_store_explicit(&s->len, len, memory_order_relaxed);
  copy_in(s->data, msg, len);
  /* The one store that makes it visible; sequentially consistent, so that
   * the look at fw_get below cannot pass it (a sleeper sets its bit first,
   * then looks at the lane). */
  atomic_store(&s->word, SW(e, S_READY, 0));
  if (take_sleepers(&sh->fw_get)) mh__futex_wake(&sh->fw_get, INT_MAX, MH__FUTEX_SHARED);
  return LANE_PUT;
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
int lane_get(mh_mpqueue_t *q, void *buf, size_t cap, size_t *len_out) {
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
        /* A slot that names a later position was got already (gets skip
         * WRITING slots, so they take later slots first): look past it.
         * Stopping there, as this once did, made a get under the lock spin
         * for ever between this (nothing) and lane_has_ready (a READY slot
         * further on) while a dead producer's slot sat at deq. */
        if (w == SW(p, S_READY, 0) || w == SW(p, S_EMPTY, 0)) break;
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

/* Count the lane's READY messages and their bytes, and its WRITING slots
 * (a snapshot; any pointer may be NULL). */
void lane_count(const mh_mpqueue_t *q, uint64_t *nready, uint64_t *bytes,
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

bool lane_has_ready(const mh_mpqueue_t *q) {
  if (!q->lane) return false;
  uint64_t d = atomic_load(&q->sh->deq), e = atomic_load(&q->sh->enq);
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    uint64_t w = atomic_load(&lslot(q, p)->word);
    if (w == SW(p, S_READY, 0)) return true;
  }
  return false;
}

bool lane_has_writing(const mh_mpqueue_t *q) {
  uint64_t n;
  lane_count(q, NULL, NULL, &n);
  return n != 0;
}

/* Whether the lane has room for `k` more messages (1 <= k <= scap).  A
 * put that found the lane full waits for room for several (LANE_BATCH, in
 * mpqueue_internal.h). */
bool lane_has_room_for(const mh_mpqueue_t *q, uint64_t k) {
  uint64_t e = atomic_load_explicit(&q->sh->enq, memory_order_relaxed) + k - 1;
  uint64_t w = atomic_load_explicit(&lslot(q, e)->word, memory_order_relaxed);
  return ((SW_POS(w) - e) & SW_POSMASK) != ((0 - q->scap) & SW_POSMASK);
}

bool lane_has_room(const mh_mpqueue_t *q) {
  if (!q->lane) return false;
  uint64_t e = atomic_load(&q->sh->enq);
  uint64_t w = atomic_load(&lslot(q, e)->word);
  return ((SW_POS(w) - e) & SW_POSMASK) != ((0 - q->scap) & SW_POSMASK);
}

/* Messages the lane holds or held that task_done has not yet answered:
 * every position below enq, less those still being written (the rest of
 * the account is in `unfinished`).  Lock held. */
uint64_t lane_puts(const mh_mpqueue_t *q) {
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

/* Move enq past the slots already claimed for their position (a claimant
 * may die between its claim and moving enq), and return it.  Then every
 * claim is below enq, where a scan from deq finds it. */
static uint64_t settle_enq(mh_mpqueue_t *q) {
  uint64_t e = atomic_load(&q->sh->enq);
  for (;;) {
    uint64_t w = atomic_load(&lslot(q, e)->word);
    if (SW_POS(w) != (e & SW_POSMASK) || SW_ST(w) == S_EMPTY) return e;
    uint64_t x = e;
    e = atomic_compare_exchange_strong(&q->sh->enq, &x, e + 1) ? e + 1 : x;
  }
}

/* Take out the WRITING slots whose claimant is dead: every one, or (pid
 * > 0) those of that pid only.  Lock held.  Returns whether any. */
static bool reap(ctx_t *c, pid_t pid) {
  mh_mpqueue_t *q = c->q;
  if (!q->lane) return false;
  bool any = false;
  uint64_t d = atomic_load(&c->sh->deq), e = settle_enq(q);
  for (uint64_t p = d; p != e && p - d < q->scap; p++) {
    uint64_t w = atomic_load(&lslot(q, p)->word);
    if (SW_POS(w) != (p & SW_POSMASK) || SW_ST(w) != S_WRITING) continue;
    if (pid > 0 ? SW_PID(w) != pid : !owner_dead(q, w)) continue;
    if (lane_take_out(c, p, w)) any = true;
  }
  return any;
}

/* Take out the claims of dead producers.  Lock held.  Returns whether any. */
bool lane_reap(ctx_t *c) { return reap(c, 0); }

/* A lane put that raced a record put (LANE_RACED) gives its claim back.
 * Lock held. */
void lane_abandon(ctx_t *c, uint64_t p) {
  lane_take_out(c, p, SW(p, S_WRITING, (uint32_t)mh__pid()));
}

/* Make this process one of the lane's producers, before its first claim:
 * *ok says whether it may use the lane (no: every entry is a live
 * process's, and it puts records only).  Takes the lock.
 *
 * Its entry holds its start time.  An entry found with its pid but another
 * start time was a dead process's (its pid is ours now): its slots are
 * taken out before the entry is ours.  When no entry is free, those of dead
 * processes are freed, their slots taken out first.  So an entry changes
 * only once its process is dead and no slot names it any more, and a
 * WRITING slot's pid always finds the claimant's start time. */
int lane_register(mh_mpqueue_t *q, bool *ok) {
  ctx_t c = {q, q->sh, 0, 0};
  mpq_sh_t *sh = q->sh;
  uint64_t st;
  uint32_t pid = me_pid(&st);
  int rc = q_lock(&c);
  if (rc) return rc;
  int i = reg_find(sh, pid);
  if (i >= 0 && LD(sh->reg[i].stime) != st) {
    reap(&c, (pid_t)pid);
    jset(&c, &sh->reg[i].stime, st);
    jcommit(&c);
  } else if (i < 0) {
    i = reg_find(sh, 0);
    /* None free: free every dead process's at once, so that the next
     * ones to come find room without looking at them all again. */
    for (int j = 0; j < LANE_PRODUCERS; j++) {
      uint64_t pj = LD(sh->reg[j].pid);
      if (pj == 0 || !proc_dead((pid_t)pj, LD(sh->reg[j].stime))) continue;
      reap(&c, (pid_t)pj);
      jset(&c, &sh->reg[j].pid, 0);
      jcommit(&c);
      if (i < 0) i = j;
    }
    if (i >= 0) {
      jset(&c, &sh->reg[i].stime, st);
      jset(&c, &sh->reg[i].pid, pid);
      jcommit(&c);
    }
  }
  q_unlock(&c);
  *ok = i >= 0;
  atomic_store(&q->reg_ok, i >= 0);
  atomic_store(&q->reg_pid, pid);
  return 0;
}

/* Discard every READY message of the lane (immediate shutdown).  Lock held. */
void lane_discard_all(ctx_t *c) {
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
void lane_put_done(ctx_t *c, uint64_t p, bool locked) {
  if (atomic_load(&c->sh->shut) != 2) return;
  if (!locked && q_lock(c)) return;
  lane_take_out(c, p, SW(p, S_READY, 0));
  if (!locked) q_unlock(c);
}

/* The lock's owner died: finish the take-outs it began (a DISC slot whose
 * journal never committed; a committed one was replayed already). */
void lane_recover(ctx_t *c) {
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
