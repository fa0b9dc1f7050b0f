/* SPDX-License-Identifier: MIT */
/* spin.h - the one way to wait: a pause, a spin-then-yield ladder, a futex.
 *
 * Every waiter in the library that looks again before it sleeps goes through
 * this module, so that the pause instruction, the order of the rungs (pause,
 * then yield, then sleep) and the tuning numbers are written once.  A waiter
 * keeps an mh__spin_t on its stack, calls mh__spin_again() each time it found
 * nothing, and sleeps (futex, condition variable, poll) when that says 0.
 *
 * The ladder of a policy:
 *   1. `pauses` rounds of mh__cpu_relax(): the peer on another core usually
 *      answers within a microsecond, and then nobody makes a system call;
 *   2. then sched_yield(), `yields` times, or for as long as the spell has
 *      lasted less than `yield_for` seconds (counted from the start of this
 *      rung, or from `since` when the caller set it): with more runnable
 *      threads than cores the thread we wait for may be waiting for this
 *      very core;
 *   3. then give up: the caller sleeps.
 * A policy is plain data passed in, so a caller may adapt it (the process
 * pool's dispatcher shortens its busy poll when polls end in sleep).
 *
 * Futexes: 32-bit words, private (one process) or shared (a word in memory
 * mapped by several processes).  A wait returns 0 when woken, when the word no
 * longer holds `val`, or spuriously: callers re-check their condition.
 * Linux-only, like the rest of the library's waiting.
 *
 * Everything here is stateless; an mh__spin_t belongs to one thread.
 */
#ifndef MH_SPIN_H
#define MH_SPIN_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- the pause ------------------------------------------------------------ */

/* Tell the core this is a spin-wait: on x86 `pause` lets the sibling
 * hyperthread run and avoids a memory-order flush on exit from the loop. */
static inline void mh__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---- the ladder ----------------------------------------------------------- */

typedef struct mh__spin_policy {
  unsigned pauses;   /* rung 1: rounds of mh__cpu_relax() */
  unsigned yields;   /* rung 2 by count: sched_yield() this many times ... */
  double yield_for;  /* ... or, when yields == 0, until the spell is this old */
  double yield_slow; /* > 0 (count rung only): a yield that took longer than
                        this gave the core to another runnable task, so the
                        thread skips rung 2 for a while (see below) */
} mh__spin_policy_t;

/* A yield that returns after `yield_slow` means the core is shared with a
 * busy task: the kernel let it run for its whole slice (milliseconds) while
 * the yielder, still runnable, cannot be woken with preference as a futex
 * sleeper would be when its peer answers.  So after a slow yield the thread
 * goes straight from the pauses to sleeping for MH__SPIN_SKIP_SPELLS spells,
 * doubled (up to << MH__SPIN_SKIP_MAX_SHIFT) after each further slow probe,
 * and back to the base after a quick one: on a loaded machine a probe costs
 * a slice only every few thousand waits, on an idle one nothing changes.
 * Per thread, and per file that includes this header (its own static). */
#define MH__SPIN_SKIP_SPELLS 1024u
#define MH__SPIN_SKIP_MAX_SHIFT 6u

typedef struct mh__spin_yield_state {
  unsigned skip;   /* spells left that skip rung 2 */
  unsigned streak; /* slow probes in a row */
} mh__spin_yield_state_t;

static inline mh__spin_yield_state_t *mh__spin_yield_state(void) {
  static _Thread_local mh__spin_yield_state_t st;
  return &st;
}

typedef struct mh__spin {
  unsigned rounds; /* looks so far in this spell */
  double since;    /* when the time bound began (time-bounded policies), or
                      0: set at the start of rung 2.  A caller that already
                      read the clock when its spell began may set it, so that
                      the bound counts the pauses too. */
} mh__spin_t;

#define MH__SPIN_INIT {0, 0.0}

/* Start a new spell (after progress, or after a sleep). */
static inline void mh__spin_reset(mh__spin_t *s) {
  s->rounds = 0;
  s->since = 0.0;
}

/* One rung: pause or yield and return 1 (look again), or return 0 (the
 * budget of `p` is spent: sleep).  The clock is read only on the time-bounded
 * rung, and there only every eighth round: most waits end within the pauses,
 * and a clock read (tens of ns) costs as much as a short item of a
 * chunksize-1 map. */
static inline int mh__spin_again(mh__spin_t *s, const mh__spin_policy_t *p) {
  unsigned r = s->rounds++;
  if (r < p->pauses) {
    mh__cpu_relax();
    return 1;
  }
  if (p->yields) {
    if (r - p->pauses >= p->yields) return 0;
    if (p->yield_slow > 0) {
      mh__spin_yield_state_t *st = mh__spin_yield_state();
      if (st->skip) {
        st->skip--; /* once per spell: the spell ends here */
        return 0;
      }
      double t0 = mh__now();
      sched_yield();
      if (mh__now() - t0 > p->yield_slow) {
        unsigned shift = st->streak < MH__SPIN_SKIP_MAX_SHIFT ? st->streak : MH__SPIN_SKIP_MAX_SHIFT;
        st->skip = MH__SPIN_SKIP_SPELLS << shift;
        st->streak++;
      } else if (r == p->pauses) {
        st->streak = 0;
      }
      return 1;
    }
    sched_yield();
    return 1;
  }
  if (p->yield_for <= 0) return 0;
  if (s->since == 0.0) {
    s->since = mh__now();
  } else if (((r - p->pauses) & 7u) == 0 && mh__now() - s->since >= p->yield_for) {
    return 0;
  }
  sched_yield();
  return 1;
}

/* The named policies.  Each number was measured on the workloads of its user
 * (the benchmarks under bench/); change one only with a before/after run. */

/* A thread waiting for a future: a tiny task is often done within a
 * microsecond; a few yields help when threads outnumber cores. */
#define MH__SPIN_FUTURE_WAIT ((mh__spin_policy_t){100, 8, 0.0, 0.0})
/* A worker waiting inside a task (help first) that found nothing to run:
 * the awaited task is running elsewhere and a child is often done within a
 * few microseconds; new work to help with may also appear. */
#define MH__SPIN_HELP_WAIT ((mh__spin_policy_t){200, 4, 0.0, 0.0})
/* An idle thread-pool worker looking for new work: a submitter that sees a
 * spinning worker need not wake anybody (a system call saved on each side). */
#define MH__SPIN_WORKER_IDLE ((mh__spin_policy_t){400, 4, 0.0, 0.0})
/* A queue user that found the queue full (empty): on an idle machine the peer
 * on the other core answers within the pauses, and a few yields let a peer
 * that shares this core run (twice the items per CPU-second of sleeping at
 * once, queue_bench 1 -> 1).  On a machine with busy neighbours a yield costs
 * a whole slice: the yields stop after the first one that takes over 50 us
 * (queue_bench -P -l 4: 800-5000 us per hand-off with yields, 12-40 us
 * without; see docs/queue.md). */
#define MH__SPIN_QUEUE ((mh__spin_policy_t){64, 4, 0.0, 50e-6})
/* The inter-process queue (mpqueue.c): a put (get) that found the queue
 * full (empty) looks again without the lock before it sleeps on a futex; a
 * peer on the other core usually makes room within the pauses, and under
 * load the yields let it run on ours. */
#define MH__SPIN_MPQ_WAIT ((mh__spin_policy_t){256, 8, 0.0, 0.0})
/* Taking the queue's robust mutex: try-locks with a pause between them
 * before blocking in the kernel (the lock is held for tens of ns). */
#define MH__SPIN_MPQ_LOCK ((mh__spin_policy_t){64, 0, 0.0, 0.0})
/* A pipe's receive (connection.c) that found nothing: each look is a
 * non-blocking recv() (a few hundred ns) after a pause, so 48 looks span
 * about 20 us, the time a peer on the other core takes to answer a small
 * message.  No yields: on a loaded machine blocking is faster (see
 * connection.c, which also shortens the looks there). */
#define MH__SPIN_CONN_RECV ((mh__spin_policy_t){48, 0, 0.0, 0.0})
/* The process pool's waits: a few pauses, then yields for `seconds`.  A
 * worker waiting for a job or a chunk, and the map's caller waiting for
 * chunks, yield for up to 200 us. */
#define MH__SPIN_PP_POLL(seconds) ((mh__spin_policy_t){64, 0, (seconds), 0.0})
#define MH__SPIN_PP_WORKER_SECONDS 200e-6
#define MH__SPIN_PP_WORKER MH__SPIN_PP_POLL(MH__SPIN_PP_WORKER_SECONDS)
/* The process pool's dispatcher: poll for up to MH__SPIN_PP_BUSY seconds
 * while entries are in flight (halved down to MH__SPIN_PP_MIN each time a
 * poll ends in sleep, doubled back when work shows up while polling), and
 * MH__SPIN_PP_IDLE seconds when nothing is in flight. */
#define MH__SPIN_PP_BUSY 1e-3
#define MH__SPIN_PP_MIN 20e-6
#define MH__SPIN_PP_IDLE 50e-6

/* ---- futexes -------------------------------------------------------------- */

#define MH__FUTEX_PRIVATE 0
#define MH__FUTEX_SHARED 1

static inline int mh__futex_op(int op, int shared) {
  return shared ? op : (op | FUTEX_PRIVATE_FLAG);
}

/* Sleep while *addr == val, until woken or the deadline passes: 0 (woken, the
 * value changed, or spurious) or MH_ETIMEDOUT.  A deadline that never blocks
 * gives MH_ETIMEDOUT at once. */
static inline int mh__futex_wait(void *addr, uint32_t val, const mh__deadline_t *dl,
                                 int shared) {
  long rc;
  if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
  if (dl->kind == MH__DL_FOREVER) {
    rc = syscall(SYS_futex, addr, mh__futex_op(FUTEX_WAIT, shared), val, NULL, NULL, 0);
  } else {
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, the clock of
     * mh__deadline_t. */
    rc = syscall(SYS_futex, addr, mh__futex_op(FUTEX_WAIT_BITSET, shared), val, &dl->at,
                 NULL, FUTEX_BITSET_MATCH_ANY);
  }
  if (rc == -1 && errno == ETIMEDOUT) return MH_ETIMEDOUT;
  return 0;
}

/* Sleep while *addr == val, at most `seconds` (relative; <= 0: do not
 * sleep).  Returns as mh__futex_wait does. */
static inline int mh__futex_wait_for(void *addr, uint32_t val, double seconds, int shared) {
  if (!(seconds > 0)) return MH_ETIMEDOUT;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  long rc = syscall(SYS_futex, addr, mh__futex_op(FUTEX_WAIT, shared), val, &ts, NULL, 0);
  if (rc == -1 && errno == ETIMEDOUT) return MH_ETIMEDOUT;
  return 0;
}

/* Wake up to `n` sleepers on addr (INT_MAX: all). */
static inline void mh__futex_wake(void *addr, int n, int shared) {
  syscall(SYS_futex, addr, mh__futex_op(FUTEX_WAKE, shared), n, NULL, NULL, 0);
}

#endif /* MH_SPIN_H */
