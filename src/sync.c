/* SPDX-License-Identifier: MIT */
/* sync.c - Lock, RLock, Condition, Semaphore, Event and Barrier.
 *
 * Invariants:
 * - mh_lock_t / mh_rlock_t: `owner` is the kernel thread id of the holder, or
 *   0.  Only the holder writes it (set right after the mutex is taken, cleared
 *   right before it is released), and others only compare it against their
 *   own id, so relaxed atomic access is enough: a thread reading its own id
 *   there knows it holds the lock.  Checking it before calling pthreads turns
 *   "release a lock you do not hold" and "acquire a Lock you hold" into
 *   MH_EINVAL / MH_EDEADLK without ever giving pthreads (or a sanitizer) an
 *   invalid call.  An RLock's `count` is touched only by its holder.
 * - An Event's `gen` counts set() calls: a waiter returns success when the
 *   flag is set or the generation moved since it first looked, so a set()
 *   followed at once by clear() still releases everyone who was waiting.
 *   `waiters` counts threads inside wait(), so that a set() with nobody
 *   waiting makes no futex call.  A process that dies inside wait() leaves
 *   `waiters` one too high, which costs only a needless broadcast.
 * - Semaphore, Event and Barrier keep all their state under their own
 *   `mutex`, and signal their `cond` with the mutex held, so that a waiter
 *   that wakes, sees the final state and destroys the object cannot race
 *   with the signalling thread.
 * - A condition's wait releases and re-takes the bound lock's mutex, so the
 *   lock's owner mark is cleared before and set again after the wait.  Its
 *   `waiters` count is guarded by the bound lock.
 * Lock order: none - no function here holds two mutexes at once (a barrier
 * action runs under the barrier's mutex and must not touch the barrier).
 *
 * Process-shared objects use robust PTHREAD_PROCESS_SHARED mutexes, and a
 * futex word of their own in place of a condition variable (see "conditions"
 * below).  The internal mutexes of shared semaphores, events and barriers
 * are repaired on the spot (their state is updated by single stores, never
 * left half-done), and shared objects wake all their waiters: a waiter
 * killed between its wake-up and its re-take of the lock would otherwise
 * take a single wake-up with it.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#include "manyhands/sync.h"
#include "internal.h"
#include "thread_internal.h"
#include "spin.h"

/* ---- small helpers ------------------------------------------------------ */

static int owner_get(const int *owner) {
  return __atomic_load_n(owner, __ATOMIC_RELAXED);
}

static void owner_set(int *owner, int tid) {
  __atomic_store_n(owner, tid, __ATOMIC_RELAXED);
}

/* Initialise a mutex of `type`; shared ones are also robust. */
static int mutex_init(pthread_mutex_t *m, int type, unsigned flags) {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc) return -rc;
  rc = pthread_mutexattr_settype(&attr, type);
  if (!rc && (flags & MH_SYNC_PROCESS_SHARED)) {
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!rc) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == EINVAL) rc = ENOTSUP;
  }
  if (!rc) rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return -rc;
}

static int flags_ok(unsigned flags) {
  return (flags & ~MH_SYNC_PROCESS_SHARED) == 0;
}

/* A valid timeout: MH_FOREVER, or >= 0 (infinity included). */
static int timeout_ok(double timeout) {
  return timeout == MH_FOREVER || timeout >= 0; /* NaN fails both */
}

/* Take a user-visible mutex within `timeout` (already checked).  Returns 0,
 * MH_ETIMEDOUT, MH_EOWNERDEAD, MH_ENOTRECOVERABLE or another negative code.
 * A timed acquire tries the lock first, so the uncontended case costs no
 * clock reading. */
/* How long one futex sleep on a contended mutex may last before the
 * waiter looks again.  When the owner of a robust mutex dies, the kernel
 * marks the lock word owner-died and wakes ONE waiter; if that waiter is
 * itself killed before it takes the lock (a process group being torn down,
 * chaos kills), the wake-up is lost, the word stays "free, owner died", and
 * every other waiter would sleep to its deadline, or forever.  Sleeping in
 * slices bounds that loss: the next look takes the lock (EOWNERDEAD).  A
 * waiter that waits longer than a slice wakes once per slice, which costs
 * nothing next to the wait itself. */
#define MUTEX_SLICE_NS 20000000L /* 20 ms */

#if !MH__TSAN
/* Lock m, sleeping at most MUTEX_SLICE_NS at a time, until `end`
 * (CLOCK_MONOTONIC; NULL: no limit).  Returns what pthread_mutex_clocklock
 * returns, ETIMEDOUT only once `end` has passed. */
static int mutex_lock_sliced(pthread_mutex_t *m, const struct timespec *end) {
  for (;;) {
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    at.tv_nsec += MUTEX_SLICE_NS;
    if (at.tv_nsec >= 1000000000L) {
      at.tv_sec++;
      at.tv_nsec -= 1000000000L;
    }
    int last = end && (at.tv_sec > end->tv_sec ||
                       (at.tv_sec == end->tv_sec && at.tv_nsec >= end->tv_nsec));
    int rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, last ? end : &at);
    if (rc != ETIMEDOUT || last) return rc;
  }
}
#else
/* ThreadSanitizer builds (tests only): clang 14's runtime does not know
 * pthread_mutex_clocklock and its timedlock misses EOWNERDEAD, so the slices
 * are polls with trylock, which it follows fully, backing off up to 1 ms: a
 * lost owner-died wake-up then costs at most one poll here too, instead of
 * an unbounded pthread_mutex_lock.  `end` as above (NULL: no limit). */
static int mutex_lock_sliced(pthread_mutex_t *m, const struct timespec *end) {
  double pause = 1e-5;
  double until = end ? (double)end->tv_sec + (double)end->tv_nsec * 1e-9 : 0;
  int rc;
  while ((rc = pthread_mutex_trylock(m)) == EBUSY) {
    double left = end ? until - mh__now() : pause;
    if (left <= 0) return ETIMEDOUT;
    mh__sleep(pause < left ? pause : left);
    if (pause < 1e-3) pause *= 2;
  }
  return rc;
}
#endif

static int mutex_take(pthread_mutex_t *m, double timeout) {
  int rc;
  mh__deadline_t dl;
  if ((rc = pthread_mutex_trylock(m)) != EBUSY) {
    /* taken, or an owner-died / unrecoverable answer */
  } else if (timeout == 0) {
    return MH_ETIMEDOUT;
  } else if (timeout == MH_FOREVER ||
             (mh__deadline_init(&dl, timeout) == 0 && dl.kind == MH__DL_FOREVER)) {
    /* (beyond ~30 years counts as forever) */
    rc = mutex_lock_sliced(m, NULL);
  } else {
#if MH__TSAN
    /* ThreadSanitizer (clang 14) does not know pthread_mutex_clocklock, and
     * its pthread_mutex_timedlock misses EOWNERDEAD, so it would lose track
     * of the lock.  Test builds only: poll with trylock, which it follows
     * fully, backing off up to 1 ms, until the monotonic deadline. */
    double pause = 1e-5;
    double end = (double)dl.at.tv_sec + (double)dl.at.tv_nsec * 1e-9;
    while ((rc = pthread_mutex_trylock(m)) == EBUSY) {
      double left = end - mh__now();
      if (left <= 0) {
        rc = ETIMEDOUT;
        break;
      }
      mh__sleep(pause < left ? pause : left);
      if (pause < 1e-3) pause *= 2;
    }
#else
    rc = mutex_lock_sliced(m, &dl.at);
#endif
  }
  switch (rc) {
  case 0:
    return 0;
  case ETIMEDOUT:
    return MH_ETIMEDOUT;
  case EOWNERDEAD:
    return MH_EOWNERDEAD;
  case ENOTRECOVERABLE:
    return MH_ENOTRECOVERABLE;
  default:
    return -rc;
  }
}

/* The caller was checked not to own the mutex, so EDEADLK from pthreads can
 * only be glibc's answer of pthread_mutex_clocklock() on a robust mutex that
 * was made unrecoverable (trylock and lock say ENOTRECOVERABLE there). */
static int fix_deadlk(int rc, unsigned flags) {
  if (rc == MH_EDEADLK && (flags & MH_SYNC_PROCESS_SHARED)) return MH_ENOTRECOVERABLE;
  return rc;
}

/* Take an internal mutex (of a semaphore, event or barrier), repairing it
 * when a process died holding it. */
static int imutex_lock(pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == EBUSY) rc = mutex_lock_sliced(m, NULL); /* see MUTEX_SLICE_NS */
  if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(m);
  return -rc;
}

static void imutex_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

/* ---- conditions: private ones are pthreads', shared ones a futex word --
 * A process-shared condition is not used as a pthread_cond_t: its storage
 * holds a sequence word.  A waiter reads the word with the mutex held, lets
 * the mutex go, sleeps on the word (a shared futex) while it is unchanged,
 * and re-takes the mutex as any locker does, in slices of MUTEX_SLICE_NS.
 * A notifier, holding the mutex, bumps the word and wakes every sleeper, so
 * no wake-up is lost between a waiter's look and its sleep.  Why not
 * glibc's: pthread_cond_wait and pthread_cond_timedwait re-take the mutex
 * with an unbounded futex sleep, whatever the deadline.  When the owner of
 * a robust mutex dies, the kernel wakes ONE sleeper on it; if that one is
 * killed before it takes the lock, a kernel without the 2022 fix of
 * handle_futex_death (which passes the wake-up on when the dying waiter's
 * pending lock word has no owner, owner-died included) leaves every waiter
 * re-taking it after a notify asleep for ever: the lock side's slices
 * (MUTEX_SLICE_NS) never reached them.  Newer kernels pass it on (6.18
 * here: 200 rounds of shared_cond_owner_and_waiters_killed never lost one
 * with glibc's condition), so this is for the older ones.  And a process
 * that dies anywhere in this wait leaves nothing behind in the word:
 * nothing to confirm, nothing to destroy. */
static _Atomic uint32_t *pcond_word(pthread_cond_t *c) {
  return (_Atomic uint32_t *)(void *)c;
}

static int xcond_init(pthread_cond_t *c, unsigned flags) {
  if (!(flags & MH_SYNC_PROCESS_SHARED)) return mh__cond_init(c, false);
  memset(c, 0, sizeof *c);
  atomic_init(pcond_word(c), 0);
  return 0;
}

/* Wake the waiters: all of them, or (private conditions only) one. */
static void xcond_wake(pthread_cond_t *c, unsigned flags, int all) {
  if (flags & MH_SYNC_PROCESS_SHARED) {
    atomic_fetch_add(pcond_word(c), 1);
    mh__futex_wake(pcond_word(c), INT_MAX, MH__FUTEX_SHARED);
  } else if (all) {
    pthread_cond_broadcast(c);
  } else {
    pthread_cond_signal(c);
  }
}

/* Re-take m after a wait, however long it takes (a condition wait returns
 * holding its mutex, deadline or not).  Returns a pthreads code. */
static int mutex_retake(pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == EBUSY) rc = mutex_lock_sliced(m, NULL); /* see MUTEX_SLICE_NS */
  return rc;
}

/* One wait, m held: 0 (woken, perhaps spuriously), MH_ETIMEDOUT,
 * MH_EOWNERDEAD (m held, to be made consistent) or MH_ENOTRECOVERABLE (m
 * not held). */
static int xcond_wait(pthread_cond_t *c, pthread_mutex_t *m,
                      const mh__deadline_t *dl, unsigned flags) {
  if (!(flags & MH_SYNC_PROCESS_SHARED)) return mh__cond_wait(c, m, dl);
  if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
  uint32_t seq = atomic_load(pcond_word(c));
  pthread_mutex_unlock(m);
  int rc = mh__futex_wait(pcond_word(c), seq, dl, MH__FUTEX_SHARED);
  int lrc = mutex_retake(m);
  if (lrc == EOWNERDEAD) return MH_EOWNERDEAD;
  if (lrc == ENOTRECOVERABLE) return MH_ENOTRECOVERABLE;
  if (lrc) return -lrc;
  return rc;
}

/* Wait on an internal condition; an owner-died re-acquisition is repaired
 * and reported as an ordinary (possibly spurious) wake-up. */
static int icond_wait(pthread_cond_t *c, pthread_mutex_t *m,
                      const mh__deadline_t *dl, unsigned flags) {
  int rc = xcond_wait(c, m, dl, flags);
  if (rc == MH_EOWNERDEAD) {
    pthread_mutex_consistent(m);
    rc = 0;
  }
  return rc;
}

/* Destroy a condition variable.  Shared ones hold no pthreads state (see
 * above) and nothing beyond their memory. */
static void icond_destroy(pthread_cond_t *c, unsigned flags) {
  if (!(flags & MH_SYNC_PROCESS_SHARED)) pthread_cond_destroy(c);
}

/* Destroy a mutex nobody holds: MH_EBUSY if it is held. */
static int mutex_destroy(pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == EBUSY) return MH_EBUSY;
  if (rc == EOWNERDEAD) pthread_mutex_consistent(m);
  /* Unlock only what the trylock took: an unrecoverable mutex is not held. */
  if (rc == 0 || rc == EOWNERDEAD) pthread_mutex_unlock(m);
  pthread_mutex_destroy(m);
  return 0;
}

/* ---- Lock --------------------------------------------------------------- */

int mh_lock_init(mh_lock_t *lock) { return mh_lock_init_ex(lock, 0); }

int mh_lock_init_ex(mh_lock_t *lock, unsigned flags) {
  if (!lock || !flags_ok(flags)) return MH_EINVAL;
  int rc = mutex_init(&lock->mutex, PTHREAD_MUTEX_ERRORCHECK, flags);
  if (rc) return rc;
  lock->owner = 0;
  lock->flags = flags;
  return 0;
}

int mh_lock_destroy(mh_lock_t *lock) {
  if (!lock) return MH_EINVAL;
  return mutex_destroy(&lock->mutex);
}

int mh_lock_acquire(mh_lock_t *lock, double timeout) {
  if (!lock) return MH_EINVAL;
  if (!timeout_ok(timeout)) return MH_EINVAL;
  int me = mh__tid();
  if (owner_get(&lock->owner) == me) return MH_EDEADLK;
  int rc = mutex_take(&lock->mutex, timeout);
  if (rc == 0 || rc == MH_EOWNERDEAD) owner_set(&lock->owner, me);
  return fix_deadlk(rc, lock->flags);
}

int mh_lock_release(mh_lock_t *lock) {
  if (!lock) return MH_EINVAL;
  int me = mh__tid();
  if (owner_get(&lock->owner) != me) return MH_EINVAL;
  owner_set(&lock->owner, 0);
  int rc = pthread_mutex_unlock(&lock->mutex);
  if (rc) {
    /* Only possible when a recycled thread id matched a dead owner's. */
    owner_set(&lock->owner, me);
    return MH_EINVAL;
  }
  return 0;
}

int mh_lock_locked(mh_lock_t *lock) {
  if (!lock) return MH_EINVAL;
  /* The owner mark, not a trylock: a trylock could take a lock whose owner
   * died, and then neither repairing nor releasing it would be right. */
  return owner_get(&lock->owner) != 0;
}

int mh_lock_consistent(mh_lock_t *lock) {
  if (!lock) return MH_EINVAL;
  if (owner_get(&lock->owner) != mh__tid()) return MH_EINVAL;
  return -pthread_mutex_consistent(&lock->mutex);
}

/* ---- RLock -------------------------------------------------------------- */

int mh_rlock_init(mh_rlock_t *rlock) { return mh_rlock_init_ex(rlock, 0); }

int mh_rlock_init_ex(mh_rlock_t *rlock, unsigned flags) {
  if (!rlock || !flags_ok(flags)) return MH_EINVAL;
  /* The recursion is counted here, so the mutex itself is a plain one. */
  int rc = mutex_init(&rlock->mutex, PTHREAD_MUTEX_ERRORCHECK, flags);
  if (rc) return rc;
  rlock->owner = 0;
  rlock->count = 0;
  rlock->flags = flags;
  return 0;
}

int mh_rlock_destroy(mh_rlock_t *rlock) {
  if (!rlock) return MH_EINVAL;
  return mutex_destroy(&rlock->mutex);
}

int mh_rlock_acquire(mh_rlock_t *rlock, double timeout) {
  if (!rlock) return MH_EINVAL;
  if (!timeout_ok(timeout)) return MH_EINVAL;
  int me = mh__tid();
  int rc;
  if (owner_get(&rlock->owner) == me) {
    if (rlock->count == ULONG_MAX) return MH_EAGAIN;
    rlock->count++;
    return 0;
  }
  rc = mutex_take(&rlock->mutex, timeout);
  if (rc == 0 || rc == MH_EOWNERDEAD) {
    owner_set(&rlock->owner, me);
    rlock->count = 1;
  }
  return fix_deadlk(rc, rlock->flags);
}

int mh_rlock_release(mh_rlock_t *rlock) {
  if (!rlock) return MH_EINVAL;
  int me = mh__tid();
  if (owner_get(&rlock->owner) != me) return MH_EINVAL;
  if (--rlock->count > 0) return 0;
  owner_set(&rlock->owner, 0);
  int rc = pthread_mutex_unlock(&rlock->mutex);
  if (rc) {
    owner_set(&rlock->owner, me);
    rlock->count = 1;
    return MH_EINVAL;
  }
  return 0;
}

int mh_rlock_consistent(mh_rlock_t *rlock) {
  if (!rlock) return MH_EINVAL;
  if (owner_get(&rlock->owner) != mh__tid()) return MH_EINVAL;
  return -pthread_mutex_consistent(&rlock->mutex);
}

/* ---- Condition ---------------------------------------------------------- */

int mh_cond_init(mh_cond_t *cond, mh_lock_t *lock) {
  return mh_cond_init_ex(cond, lock, 0);
}

int mh_cond_init_ex(mh_cond_t *cond, mh_lock_t *lock, unsigned flags) {
  if (!cond || !flags_ok(flags)) return MH_EINVAL;
  int shared = (flags & MH_SYNC_PROCESS_SHARED) != 0;
  if (lock && shared && !(lock->flags & MH_SYNC_PROCESS_SHARED)) return MH_EINVAL;
  int rc;
  if (!lock) {
    rc = mh_lock_init_ex(&cond->own_lock, flags);
    if (rc) return rc;
  }
  rc = xcond_init(&cond->cond, flags);
  if (rc) {
    if (!lock) mh_lock_destroy(&cond->own_lock);
    return rc;
  }
  /* NULL means "the own lock": a stored address of own_lock would be wrong
   * in a process that maps the shared condition elsewhere. */
  cond->lock = lock;
  cond->rlock = NULL;
  cond->waiters = 0;
  cond->flags = flags;
  return 0;
}

int mh_cond_init_rlock(mh_cond_t *cond, mh_rlock_t *rlock) {
  if (!cond || !rlock) return MH_EINVAL;
  int rc = mh__cond_init(&cond->cond, false);
  if (rc) return rc;
  cond->lock = NULL;
  cond->rlock = rlock;
  cond->waiters = 0;
  cond->flags = 0;
  return 0;
}

mh_rlock_t *mh_cond_rlock(mh_cond_t *cond) { return cond ? cond->rlock : NULL; }

int mh_cond_destroy(mh_cond_t *cond) {
  if (!cond) return MH_EINVAL;
  if (!cond->lock && !cond->rlock) {
    int rc = mh_lock_destroy(&cond->own_lock);
    if (rc) return rc;
  }
  icond_destroy(&cond->cond, cond->flags);
  return 0;
}

static mh_lock_t *cond_lock(mh_cond_t *cond) {
  return cond->lock ? cond->lock : &cond->own_lock;
}

mh_lock_t *mh_cond_lock(mh_cond_t *cond) {
  return cond && !cond->rlock ? cond_lock(cond) : NULL;
}

/* The owner mark of the bound lock, whichever kind it is. */
static int *cond_owner(mh_cond_t *cond) {
  return cond->rlock ? &cond->rlock->owner : &cond_lock(cond)->owner;
}

int mh_cond_acquire(mh_cond_t *cond, double timeout) {
  if (!cond) return MH_EINVAL;
  if (cond->rlock) return mh_rlock_acquire(cond->rlock, timeout);
  return mh_lock_acquire(cond_lock(cond), timeout);
}

int mh_cond_release(mh_cond_t *cond) {
  if (!cond) return MH_EINVAL;
  if (cond->rlock) return mh_rlock_release(cond->rlock);
  return mh_lock_release(cond_lock(cond));
}

/* One wait against an absolute deadline; the caller checked ownership.  An
 * RLock is released whole, whatever its depth, and its depth restored after
 * (Python's _release_save / _acquire_restore): the mutex is held once, the
 * depth is only a count kept by the holder. */
static int cond_wait_dl(mh_cond_t *cond, const mh__deadline_t *dl, int me) {
  if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
  cond->waiters++;
  int rc;
  if (cond->rlock) {
    mh_rlock_t *r = cond->rlock;
    unsigned long depth = r->count;
    r->count = 0;
    owner_set(&r->owner, 0);
    rc = mh__cond_wait(&cond->cond, &r->mutex, dl); /* (never shared) */
    owner_set(&r->owner, me);
    r->count = depth;
  } else {
    mh_lock_t *lock = cond_lock(cond);
    owner_set(&lock->owner, 0);
    rc = xcond_wait(&cond->cond, &lock->mutex, dl, cond->flags);
    /* (An unrecoverable lock was not taken again.) */
    if (rc != MH_ENOTRECOVERABLE) owner_set(&lock->owner, me);
  }
  cond->waiters--;
  return rc;
}

/* The start of every wait on a condition: the deadline from `timeout`, and
 * the caller's id in *me, which must own the condition's lock (MH_EINVAL
 * otherwise, as Python's RuntimeError). */
static int cond_wait_begin(mh_cond_t *cond, double timeout, mh__deadline_t *dl, int *me) {
  int rc = mh__deadline_init(dl, timeout);
  if (rc) return rc;
  *me = mh__tid();
  return owner_get(cond_owner(cond)) == *me ? 0 : MH_EINVAL;
}

int mh_cond_wait(mh_cond_t *cond, double timeout) {
  if (!cond) return MH_EINVAL;
  mh__deadline_t dl;
  int me;
  int rc = cond_wait_begin(cond, timeout, &dl, &me);
  return rc ? rc : cond_wait_dl(cond, &dl, me);
}

int mh_cond_wait_for(mh_cond_t *cond, mh_cond_pred_fn pred, void *arg,
                     double timeout) {
  if (!cond || !pred) return MH_EINVAL;
  mh__deadline_t dl;
  int me;
  int rc = cond_wait_begin(cond, timeout, &dl, &me);
  if (rc) return rc;
  while (!pred(arg)) {
    rc = cond_wait_dl(cond, &dl, me);
    if (rc == MH_ETIMEDOUT) return pred(arg) ? 0 : MH_ETIMEDOUT;
    if (rc) return rc;
  }
  return 0;
}

int mh_cond_notify(mh_cond_t *cond, unsigned n) {
  if (!cond) return MH_EINVAL;
  if (owner_get(cond_owner(cond)) != mh__tid()) return MH_EINVAL;
  if (n == 0) return 0;
  if (cond->flags & MH_SYNC_PROCESS_SHARED) {
    /* See the file comment: shared objects wake everyone. */
    xcond_wake(&cond->cond, cond->flags, 1);
    return 0;
  }
  /* Never more signals than waiters: notify(UINT_MAX) must not spin. */
  if (n >= cond->waiters) {
    pthread_cond_broadcast(&cond->cond);
  } else {
    for (unsigned i = 0; i < n; i++) pthread_cond_signal(&cond->cond);
  }
  return 0;
}

int mh_cond_notify_all(mh_cond_t *cond) {
  if (!cond) return MH_EINVAL;
  if (owner_get(cond_owner(cond)) != mh__tid()) return MH_EINVAL;
  xcond_wake(&cond->cond, cond->flags, 1);
  return 0;
}

/* ---- Semaphore ---------------------------------------------------------- */

int mh_sem_init(mh_sem_t *sem, unsigned long value) {
  return mh_sem_init_ex(sem, value, 0, 0);
}

int mh_sem_init_bounded(mh_sem_t *sem, unsigned long value) {
  /* A bound of 0 means "unbounded" in mh_sem_init_ex(), and a
   * BoundedSemaphore(0) could never be acquired nor released: reject it. */
  if (value == 0) return MH_EINVAL;
  return mh_sem_init_ex(sem, value, value, 0);
}

int mh_sem_init_ex(mh_sem_t *sem, unsigned long value, unsigned long bound,
                   unsigned flags) {
  if (!sem || !flags_ok(flags) || (bound && value > bound)) return MH_EINVAL;
  int rc = mutex_init(&sem->mutex, PTHREAD_MUTEX_NORMAL, flags);
  if (rc) return rc;
  rc = xcond_init(&sem->cond, flags);
  if (rc) {
    pthread_mutex_destroy(&sem->mutex);
    return rc;
  }
  sem->value = value;
  sem->bound = bound;
  sem->flags = flags;
  return 0;
}

int mh_sem_destroy(mh_sem_t *sem) {
  if (!sem) return MH_EINVAL;
  int rc = mutex_destroy(&sem->mutex);
  if (rc == 0) icond_destroy(&sem->cond, sem->flags);
  return rc;
}

int mh_sem_acquire(mh_sem_t *sem, double timeout) {
  if (!sem) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if ((rc = imutex_lock(&sem->mutex))) return rc;
  while (sem->value == 0) {
    rc = icond_wait(&sem->cond, &sem->mutex, &dl, sem->flags);
    if (rc == MH_ETIMEDOUT && sem->value == 0) break;
    rc = 0;
  }
  if (!rc) sem->value--;
  imutex_unlock(&sem->mutex);
  return rc;
}

int mh_sem_release(mh_sem_t *sem, unsigned long n) {
  if (!sem || n == 0) return MH_EINVAL;
  int rc = imutex_lock(&sem->mutex);
  if (rc) return rc;
  if (sem->value > ULONG_MAX - n) {
    rc = MH_EOVERFLOW;
  } else if (sem->bound && sem->value + n > sem->bound) {
    rc = MH_EINVAL;
  } else {
    sem->value += n;
    xcond_wake(&sem->cond, sem->flags, n != 1);
  }
  imutex_unlock(&sem->mutex);
  return rc;
}

unsigned long mh_sem_value(mh_sem_t *sem) {
  if (!sem) return 0;
  unsigned long v = 0;
  if (imutex_lock(&sem->mutex) == 0) {
    v = sem->value;
    imutex_unlock(&sem->mutex);
  }
  return v;
}

/* ---- Event -------------------------------------------------------------- */

int mh_event_init(mh_event_t *ev) { return mh_event_init_ex(ev, 0); }

int mh_event_init_ex(mh_event_t *ev, unsigned flags) {
  if (!ev || !flags_ok(flags)) return MH_EINVAL;
  int rc = mutex_init(&ev->mutex, PTHREAD_MUTEX_NORMAL, flags);
  if (rc) return rc;
  rc = xcond_init(&ev->cond, flags);
  if (rc) {
    pthread_mutex_destroy(&ev->mutex);
    return rc;
  }
  ev->is_set = 0;
  ev->gen = 0;
  ev->waiters = 0;
  ev->flags = flags;
  return 0;
}

int mh_event_destroy(mh_event_t *ev) {
  if (!ev) return MH_EINVAL;
  int rc = mutex_destroy(&ev->mutex);
  if (rc == 0) icond_destroy(&ev->cond, ev->flags);
  return rc;
}

int mh_event_set(mh_event_t *ev) {
  if (!ev) return MH_EINVAL;
  int rc = imutex_lock(&ev->mutex);
  if (rc) return rc;
  ev->is_set = 1;
  /* A new generation tells every thread waiting now that a set happened,
   * whatever the flag says by the time it wakes up. */
  ev->gen++;
  if (ev->waiters) xcond_wake(&ev->cond, ev->flags, 1);
  imutex_unlock(&ev->mutex);
  return 0;
}

int mh_event_clear(mh_event_t *ev) {
  if (!ev) return MH_EINVAL;
  int rc = imutex_lock(&ev->mutex);
  if (rc) return rc;
  ev->is_set = 0;
  imutex_unlock(&ev->mutex);
  return 0;
}

int mh_event_is_set(mh_event_t *ev) {
  if (!ev) return MH_EINVAL;
  int rc = imutex_lock(&ev->mutex);
  if (rc) return rc;
  int v = ev->is_set;
  imutex_unlock(&ev->mutex);
  return v;
}

int mh_event_wait(mh_event_t *ev, double timeout) {
  if (!ev) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if ((rc = imutex_lock(&ev->mutex))) return rc;
  /* Wait for the flag or for a set() after this look (a set followed by a
   * clear before the wake-up still counts: CPython's bpo-13502).  32 bits
   * of generations cannot wrap around during one wake-up. */
  unsigned gen = ev->gen;
  ev->waiters++;
  while (!ev->is_set && ev->gen == gen) {
    rc = icond_wait(&ev->cond, &ev->mutex, &dl, ev->flags);
    if (rc == MH_ETIMEDOUT && !ev->is_set && ev->gen == gen) break;
    rc = 0;
  }
  ev->waiters--;
  imutex_unlock(&ev->mutex);
  return rc;
}

/* ---- Barrier ------------------------------------------------------------ *
 * The state machine of CPython's threading.Barrier: parties arrive while
 * "filling" (0); the last one runs the action and switches to "draining"
 * (1); the parties leave, and the last to leave switches back to filling.
 * New arrivals wait while the barrier drains or resets (-1), so one round
 * never mixes with the next.  "Broken" (-2) holds until reset. */

enum { B_FILLING = 0, B_DRAINING = 1, B_RESETTING = -1, B_BROKEN = -2 };

int mh_barrier_init(mh_barrier_t *b, unsigned parties,
                    mh_barrier_action_fn action, void *action_arg,
                    double timeout) {
  return mh_barrier_init_ex(b, parties, action, action_arg, timeout, 0);
}

int mh_barrier_init_ex(mh_barrier_t *b, unsigned parties,
                       mh_barrier_action_fn action, void *action_arg,
                       double timeout, unsigned flags) {
  mh__deadline_t dl;
  if (!b || parties == 0 || parties > INT_MAX || !flags_ok(flags) ||
      mh__deadline_init(&dl, timeout))
    return MH_EINVAL;
  int rc = mutex_init(&b->mutex, PTHREAD_MUTEX_NORMAL, flags);
  if (rc) return rc;
  rc = xcond_init(&b->cond, flags);
  if (rc) {
    pthread_mutex_destroy(&b->mutex);
    return rc;
  }
  b->parties = parties;
  b->count = 0;
  b->state = B_FILLING;
  b->timeout = timeout;
  b->action = action;
  b->action_arg = action_arg;
  b->flags = flags;
  return 0;
}

int mh_barrier_destroy(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  int rc = mutex_destroy(&b->mutex);
  if (rc == 0) icond_destroy(&b->cond, b->flags);
  return rc;
}

static void barrier_break(mh_barrier_t *b) {
  b->state = B_BROKEN;
  xcond_wake(&b->cond, b->flags, 1);
}

int mh_barrier_wait(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  return mh_barrier_wait_timeout(b, b->timeout);
}

int mh_barrier_wait_timeout(mh_barrier_t *b, double timeout) {
  if (!b) return MH_EINVAL;
  mh__deadline_t dl, forever;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  mh__deadline_init(&forever, MH_FOREVER);
  if ((rc = imutex_lock(&b->mutex))) return rc;

  /* Wait while the previous round drains or a reset completes. */
  while (b->state == B_DRAINING || b->state == B_RESETTING)
    icond_wait(&b->cond, &b->mutex, &forever, b->flags);
  if (b->state == B_BROKEN) {
    imutex_unlock(&b->mutex);
    return MH_EBROKEN;
  }

  int index = (int)b->count++;
  if ((unsigned)index + 1 == b->parties) {
    /* Last to arrive: run the action, then release everyone. */
    if (b->action && b->action(b->action_arg) != 0) {
      barrier_break(b);
      rc = MH_EBROKEN;
    } else {
      b->state = B_DRAINING;
      xcond_wake(&b->cond, b->flags, 1);
    }
  } else {
    while (b->state == B_FILLING) {
      if (icond_wait(&b->cond, &b->mutex, &dl, b->flags) == MH_ETIMEDOUT &&
          b->state == B_FILLING) {
        barrier_break(b);
        break;
      }
    }
    if (b->state < 0) rc = MH_EBROKEN;
  }

  /* Leave; the last one out of a drained or reset round re-opens it. */
  if (--b->count == 0 &&
      (b->state == B_DRAINING || b->state == B_RESETTING)) {
    b->state = B_FILLING;
    xcond_wake(&b->cond, b->flags, 1);
  }
  imutex_unlock(&b->mutex);
  return rc ? rc : index;
}

int mh_barrier_abort(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  int rc = imutex_lock(&b->mutex);
  if (rc) return rc;
  barrier_break(b);
  imutex_unlock(&b->mutex);
  return 0;
}

int mh_barrier_reset(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  int rc = imutex_lock(&b->mutex);
  if (rc) return rc;
  if (b->count > 0) {
    /* Parties still inside: filling ones are broken out; the last one to
     * leave turns "resetting" into "filling".  A draining round is left to
     * finish normally. */
    if (b->state == B_FILLING || b->state == B_BROKEN) b->state = B_RESETTING;
  } else {
    b->state = B_FILLING;
  }
  xcond_wake(&b->cond, b->flags, 1);
  imutex_unlock(&b->mutex);
  return 0;
}

int mh_barrier_parties(mh_barrier_t *b) {
  return b ? (int)b->parties : MH_EINVAL;
}

int mh_barrier_n_waiting(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  int rc = imutex_lock(&b->mutex);
  if (rc) return rc;
  int n = b->state == B_FILLING ? (int)b->count : 0;
  imutex_unlock(&b->mutex);
  return n;
}

int mh_barrier_broken(mh_barrier_t *b) {
  if (!b) return MH_EINVAL;
  int rc = imutex_lock(&b->mutex);
  if (rc) return rc;
  int v = b->state == B_BROKEN;
  imutex_unlock(&b->mutex);
  return v;
}
