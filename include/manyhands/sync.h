/* SPDX-License-Identifier: MIT */
/* manyhands/sync.h - Lock, RLock, Condition, Semaphore, Event, Barrier.
 *
 * Python's threading primitives as small caller-allocated objects: `init` then
 * `destroy`, no allocation.  Every wait takes a timeout in seconds
 * (MH_FOREVER, 0 = do not block, > 0 measured on the monotonic clock); NaN and
 * negative values other than MH_FOREVER give MH_EINVAL.  A wait that gives up
 * returns MH_ETIMEDOUT, also when the timeout was 0.
 *
 * Process sharing: pass MH_SYNC_PROCESS_SHARED to an `init_ex` call on an
 * object that lives in memory shared between processes (mmap MAP_SHARED, or
 * shared.h, which hands out ready-made shared ones).  Initialise it once, in
 * one process, before the others use it.  Shared locks are robust: when a
 * process (or thread) dies holding one, the next acquirer gets the lock
 * together with MH_EOWNERDEAD.  The recovery recipe:
 *
 *     int rc = mh_lock_acquire(lock, MH_FOREVER);
 *     if (rc == MH_EOWNERDEAD) {
 *       repair_the_data_the_lock_guards();   // it may be half-updated
 *       mh_lock_consistent(lock);            // the lock is usable again
 *       rc = 0;
 *     }
 *     if (rc == 0) { ...; mh_lock_release(lock); }
 *
 * Releasing the lock without calling mh_lock_consistent() first marks it
 * permanently unusable: every later acquire returns MH_ENOTRECOVERABLE.
 * The internal locks of shared semaphores, events and barriers repair
 * themselves (their state is one or two words that are never half-updated),
 * so their waiters simply carry on when another process died inside a call.
 *
 * Differences from Python, on purpose: a Lock remembers its owner, so
 * releasing a lock the calling thread does not hold is MH_EINVAL (Python
 * allows another thread to release a Lock), and acquiring a Lock the calling
 * thread already holds returns MH_EDEADLK instead of hanging forever.
 */
#ifndef MANYHANDS_SYNC_H
#define MANYHANDS_SYNC_H

/** @defgroup mh_sync sync.h: Lock, RLock, Condition, Semaphore, Event, Barrier
 * @brief Lock, RLock, Condition, Semaphore, Event, Barrier.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/sync.h>.
 * @{
 */


#include <pthread.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Flag for the `init_ex` calls: the object lives in shared memory and is
 * used by several processes. */
#define MH_SYNC_PROCESS_SHARED 1u

/* The fields below are private; they are shown only so that the objects can be
 * embedded and allocated by the caller.  Do not copy an initialised object. */

/** threading.Lock: a non-recursive mutex that knows its owner. */
typedef struct mh_lock_s {
  pthread_mutex_t mutex; /**< private */
  int owner; /**< private: kernel thread id of the holder, 0 when free (atomic access) */
  unsigned flags; /**< private */
} mh_lock_t;

/** threading.RLock: the owning thread may acquire it again. */
typedef struct mh_rlock_s {
  pthread_mutex_t mutex; /**< private */
  int owner; /**< private: kernel thread id of the holder, 0 when free */
  unsigned long count; /**< private: recursion depth, touched only by the holder */
  unsigned flags; /**< private */
} mh_rlock_t;

/** threading.Condition, bound to an mh_lock_t (its own one or the caller's). */
typedef struct mh_cond_s {
  pthread_cond_t cond; /**< private */
  mh_lock_t *lock; /**< private: NULL: own_lock (unless rlock is set) */
  mh_lock_t own_lock; /**< private */
  mh_rlock_t *rlock; /**< private: non-NULL: bound to this RLock instead */
  unsigned long waiters; /**< private: guarded by the lock */
  unsigned flags; /**< private */
} mh_cond_t;

/** threading.Semaphore and BoundedSemaphore. */
typedef struct mh_sem_s {
  pthread_mutex_t mutex; /**< private */
  pthread_cond_t cond; /**< private */
  unsigned long value; /**< private */
  unsigned long bound; /**< private: 0 = unbounded */
  unsigned flags; /**< private */
} mh_sem_t;

/** threading.Event. */
typedef struct mh_event_s {
  pthread_mutex_t mutex; /**< private */
  pthread_cond_t cond; /**< private */
  int is_set; /**< private: guarded by mutex */
  unsigned gen; /**< private: guarded by mutex: set() calls so far (wraps) */
  unsigned waiters; /**< private: guarded by mutex: threads inside wait() */
  unsigned flags; /**< private */
} mh_event_t;

/** Action run by exactly one party (the last to arrive) when a barrier trips,
 * before any party is released, with the barrier's lock held.  A non-zero
 * return breaks the barrier. */
typedef int (*mh_barrier_action_fn)(void *arg);

/** threading.Barrier. */
typedef struct mh_barrier_s {
  pthread_mutex_t mutex; /**< private */
  pthread_cond_t cond; /**< private */
  unsigned parties; /**< private */
  unsigned count; /**< private */
  int state; /**< private: 0 filling, 1 draining, -1 resetting, -2 broken */
  double timeout; /**< private */
  mh_barrier_action_fn action; /**< private */
  void *action_arg; /**< private */
  unsigned flags; /**< private */
} mh_barrier_t;

/* ---- Lock ------------------------------------------------------------- */

/** Initialise an unlocked lock for the threads of this process.
 * @param lock the lock
 * @return 0, MH_EINVAL (NULL), or MH_ENOMEM / MH_EAGAIN from pthreads. */
MH_EXTERN int mh_lock_init(mh_lock_t *lock);

/** As mh_lock_init(); `flags` is 0 or MH_SYNC_PROCESS_SHARED (robust,
 * process-shared).
 * @return 0, MH_EINVAL (NULL, unknown flag), MH_ENOTSUP
 * (the system lacks robust or shared mutexes), MH_ENOMEM, MH_EAGAIN.
 * @param lock the lock
 * @param flags a bit set of the flags named above (0: none) */
MH_EXTERN int mh_lock_init_ex(mh_lock_t *lock, unsigned flags);

/** Destroy an unlocked lock.
 * @return 0, MH_EINVAL (NULL), MH_EBUSY (it is
 * held; it is left alone).
 * @param lock the lock */
MH_EXTERN int mh_lock_destroy(mh_lock_t *lock);

/** Lock.acquire(timeout): take the lock, waiting up to `timeout` seconds.
 * @param lock the lock
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0 (held), MH_ETIMEDOUT (not acquired in time; timeout 0: it was
 * held), MH_EINVAL (NULL, bad timeout), MH_EDEADLK (the caller already holds
 * it), MH_EOWNERDEAD (shared lock: acquired, but its previous owner died
 * holding it; repair and call mh_lock_consistent()), MH_ENOTRECOVERABLE
 * (shared lock released unrepaired after an owner died; not acquired). */
MH_EXTERN int mh_lock_acquire(mh_lock_t *lock, double timeout);

/** Lock.release().
 * @return 0, MH_EINVAL (NULL, or the caller does not hold
 * the lock).
 * @param lock the lock */
MH_EXTERN int mh_lock_release(mh_lock_t *lock);

/** Lock.locked(): 1 if some thread holds the lock, 0 if not, MH_EINVAL for
 * NULL.  The answer may be stale by the time the caller reads it.  A shared
 * lock whose owner died holding it counts as held until someone acquires
 * it (and gets MH_EOWNERDEAD).
 * @param lock the lock
 * @return what the description above says */
MH_EXTERN int mh_lock_locked(mh_lock_t *lock);

/** After MH_EOWNERDEAD: mark the (now repaired) state guarded by the lock as
 * consistent, so that the lock works normally again.  The caller holds the
 * lock and still must release it.
 * @return 0, MH_EINVAL (NULL, the caller
 * does not hold the lock, or the lock is not in the owner-died state).
 * @param lock the lock */
MH_EXTERN int mh_lock_consistent(mh_lock_t *lock);

/* ---- RLock ------------------------------------------------------------ */

/** Initialise a recursive lock.
 * @return as mh_lock_init().
 * @param rlock the re-entrant lock */
MH_EXTERN int mh_rlock_init(mh_rlock_t *rlock);
/** As mh_rlock_init() with flags (0 or MH_SYNC_PROCESS_SHARED).
 * @return as
 * mh_lock_init_ex().
 * @param rlock the re-entrant lock
 * @param flags a bit set of the flags named above (0: none) */
MH_EXTERN int mh_rlock_init_ex(mh_rlock_t *rlock, unsigned flags);
/** Destroy an unheld recursive lock: 0, MH_EINVAL (NULL), MH_EBUSY (held).
 * @param rlock the re-entrant lock
 * @return what the description above says */
MH_EXTERN int mh_rlock_destroy(mh_rlock_t *rlock);
/** RLock.acquire(timeout); the owner may acquire again (each acquire needs a
 * release).
 * @return 0, MH_ETIMEDOUT, MH_EINVAL, MH_EAGAIN (recursion count
 * exhausted), MH_EOWNERDEAD / MH_ENOTRECOVERABLE as mh_lock_acquire().
 * @param rlock the re-entrant lock
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block */
MH_EXTERN int mh_rlock_acquire(mh_rlock_t *rlock, double timeout);
/** RLock.release().
 * @return 0, MH_EINVAL (NULL, not held by the caller).
 * @param rlock the re-entrant lock */
MH_EXTERN int mh_rlock_release(mh_rlock_t *rlock);
/** As mh_lock_consistent() for a recursive lock.
 * @param rlock the re-entrant lock
 * @return what the description above says */
MH_EXTERN int mh_rlock_consistent(mh_rlock_t *rlock);

/* ---- Condition -------------------------------------------------------- */

/** Initialise a condition bound to `lock`, or to a lock of its own when
 * `lock` is NULL.
 * @return 0, MH_EINVAL (NULL cond), MH_ENOMEM, MH_EAGAIN.
 * @param cond the condition variable
 * @param lock the lock */
MH_EXTERN int mh_cond_init(mh_cond_t *cond, mh_lock_t *lock);

/** As mh_cond_init() with flags (0 or MH_SYNC_PROCESS_SHARED).  A shared
 * condition needs a shared lock (MH_EINVAL otherwise), and a condition bound
 * to an outside lock stores its address, so every process must map both at
 * the same address (true after fork()); a NULL `lock` avoids that.
 * @return
 * as mh_lock_init_ex().
 * @param cond the condition variable
 * @param lock the lock
 * @param flags a bit set of the flags named above (0: none) */
MH_EXTERN int mh_cond_init_ex(mh_cond_t *cond, mh_lock_t *lock, unsigned flags);

/** Condition(rlock): a condition bound to a recursive lock, as Python's
 * default Condition() is.  The holder may have acquired it several times;
 * mh_cond_wait() releases every level and restores them all before it
 * returns.  mh_cond_acquire/release then act on the RLock, and
 * mh_cond_lock() returns NULL (use mh_cond_rlock()).  Differences from
 * Python: the RLock is the caller's (NULL is MH_EINVAL), and only threads of
 * one process use it.
 * @param cond the condition variable to initialise
 * @param rlock the recursive lock it is bound to
 * @return 0, MH_EINVAL, MH_ENOMEM, MH_EAGAIN */
MH_EXTERN int mh_cond_init_rlock(mh_cond_t *cond, mh_rlock_t *rlock);

/** The RLock a condition from mh_cond_init_rlock() is bound to.
 * @param cond the condition variable
 * @return the RLock, or NULL (a condition over a plain lock, or NULL cond) */
MH_EXTERN mh_rlock_t *mh_cond_rlock(mh_cond_t *cond);

/** Destroy a condition nobody waits on (and its own lock).
 * @return 0,
 * MH_EINVAL (NULL), MH_EBUSY (its own lock is held).
 * @param cond the condition variable */
MH_EXTERN int mh_cond_destroy(mh_cond_t *cond);

/** The lock the condition is bound to (never NULL for an initialised cond;
 * NULL for a NULL argument).
 * @param cond the condition variable
 * @return what the description above says */
MH_EXTERN mh_lock_t *mh_cond_lock(mh_cond_t *cond);

/** `with cond:` - acquire / release the bound lock.  Return as
 * mh_lock_acquire() / mh_lock_release().
 * @param cond the condition variable
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return what the description above says */
MH_EXTERN int mh_cond_acquire(mh_cond_t *cond, double timeout);
/** Release the bound lock, as mh_lock_release().
 * @param cond the condition variable
 * @return as mh_lock_release() */
MH_EXTERN int mh_cond_release(mh_cond_t *cond);

/** Condition.wait(timeout): release the lock, sleep until notified or the
 * timeout passes, take the lock again.  Like Python's, a return of 0 may be
 * a spurious wake-up: re-check the predicate (or use mh_cond_wait_for).
 * @param cond the condition variable
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0 (woken, lock held), MH_ETIMEDOUT (lock held), MH_EINVAL (NULL,
 * bad timeout, the caller does not hold the lock), MH_EOWNERDEAD (shared:
 * re-acquired after an owner died; see mh_lock_consistent). */
MH_EXTERN int mh_cond_wait(mh_cond_t *cond, double timeout);

/** Predicate for mh_cond_wait_for: non-zero when the awaited state holds.
 * Called with the lock held. */
typedef int (*mh_cond_pred_fn)(void *arg);

/** Condition.wait_for(predicate, timeout): wait until pred(arg) is true or
 * the timeout passes (one deadline for the whole wait).
 * @return 0 (predicate
 * true, lock held), MH_ETIMEDOUT (still false, lock held), MH_EINVAL (NULL
 * cond or pred, bad timeout, lock not held), MH_EOWNERDEAD (as above; the
 * predicate was not evaluated after it).
 * @param cond the condition variable
 * @param pred the predicate, called with the lock held
 * @param arg passed to pred
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block */
MH_EXTERN int mh_cond_wait_for(mh_cond_t *cond, mh_cond_pred_fn pred, void *arg,
                               double timeout);

/** Condition.notify(n): wake up to `n` waiters.  The caller must hold the
 * lock.
 * @return 0, MH_EINVAL (NULL, lock not held).
 * @param cond the condition variable
 * @param n the number of items */
MH_EXTERN int mh_cond_notify(mh_cond_t *cond, unsigned n);

/** Condition.notify_all().
 * @return 0, MH_EINVAL (NULL, lock not held).
 * @param cond the condition variable */
MH_EXTERN int mh_cond_notify_all(mh_cond_t *cond);

/* ---- Semaphore, BoundedSemaphore ---------------------------------------- */

/** threading.Semaphore(value).
 * @return 0, MH_EINVAL (NULL), MH_ENOMEM,
 * MH_EAGAIN.
 * @param sem the semaphore
 * @param value the initial value */
MH_EXTERN int mh_sem_init(mh_sem_t *sem, unsigned long value);

/** threading.BoundedSemaphore(value): releasing above `value` is an error.
 * @param sem the semaphore
 * @param value the initial value, also its bound
 * @return what the description above says */
MH_EXTERN int mh_sem_init_bounded(mh_sem_t *sem, unsigned long value);

/** General form: `bound` 0 = unbounded, else the counter may never exceed it
 * (it must be >= value); `flags` 0 or MH_SYNC_PROCESS_SHARED.
 * @return 0,
 * MH_EINVAL (NULL, value > bound, unknown flag), MH_ENOTSUP, MH_ENOMEM,
 * MH_EAGAIN.
 * @param sem the semaphore
 * @param value the initial value
 * @param bound the highest value release may reach (BoundedSemaphore)
 * @param flags a bit set of the flags named above (0: none) */
MH_EXTERN int mh_sem_init_ex(mh_sem_t *sem, unsigned long value,
                             unsigned long bound, unsigned flags);

/** Destroy a semaphore nobody waits on.
 * @return 0, MH_EINVAL (NULL).
 * @param sem the semaphore */
MH_EXTERN int mh_sem_destroy(mh_sem_t *sem);

/** Semaphore.acquire(timeout): decrement, waiting while the counter is 0.
 * @param sem the semaphore
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, MH_ETIMEDOUT, MH_EINVAL (NULL, bad timeout). */
MH_EXTERN int mh_sem_acquire(mh_sem_t *sem, double timeout);

/** Semaphore.release(n): add `n` (>= 1) to the counter and wake waiters.
 * @param sem the semaphore
 * @param n the number of items
 * @return 0, MH_EINVAL (NULL, n == 0, or a bounded semaphore would go over
 * its bound: then nothing is added), MH_EOVERFLOW (the counter would wrap). */
MH_EXTERN int mh_sem_release(mh_sem_t *sem, unsigned long n);

/** The counter's current value (a snapshot), or 0 for NULL.
 * @param sem the semaphore
 * @return what the description above says */
MH_EXTERN unsigned long mh_sem_value(mh_sem_t *sem);

/* ---- Event ------------------------------------------------------------ */

/** threading.Event(): initially clear.
 * @return 0, MH_EINVAL, MH_ENOMEM,
 * MH_EAGAIN.
 * @param ev the event */
MH_EXTERN int mh_event_init(mh_event_t *ev);
/** As mh_event_init() with flags (0 or MH_SYNC_PROCESS_SHARED).
 * @param ev the event
 * @param flags a bit set of the flags named above (0: none)
 * @return what the description above says */
MH_EXTERN int mh_event_init_ex(mh_event_t *ev, unsigned flags);
/** Destroy an event nobody waits on.
 * @return 0, MH_EINVAL (NULL).
 * @param ev the event */
MH_EXTERN int mh_event_destroy(mh_event_t *ev);
/** Event.set(): set the flag and wake every waiter.  0 or MH_EINVAL.
 * @param ev the event
 * @return what the description above says */
MH_EXTERN int mh_event_set(mh_event_t *ev);
/** Event.clear().  0 or MH_EINVAL.
 * @param ev the event
 * @return what the description above says */
MH_EXTERN int mh_event_clear(mh_event_t *ev);
/** Event.is_set(): 1 or 0, MH_EINVAL for NULL.
 * @param ev the event
 * @return what the description above says */
MH_EXTERN int mh_event_is_set(mh_event_t *ev);
/** Event.wait(timeout): wait until the flag is set.
 * @return 0 (set, or a set() happened while waiting, even if a clear()
 * followed before this waiter woke, as in Python since bpo-13502),
 * MH_ETIMEDOUT (still clear and no set() since the call began), MH_EINVAL
 * (NULL, bad timeout).
 * @param ev the event
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block */
MH_EXTERN int mh_event_wait(mh_event_t *ev, double timeout);

/* ---- Barrier ---------------------------------------------------------- */

/** threading.Barrier(parties, action, timeout).  `action` may be NULL;
 * `timeout` (MH_FOREVER or >= 0) is the default for mh_barrier_wait().
 * @param b the barrier
 * @param parties how many threads must call wait before all pass
 * @param action NULL, or run by one thread each time the barrier opens
 * @param action_arg passed to action
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, MH_EINVAL (NULL, parties 0, bad timeout), MH_ENOMEM, MH_EAGAIN. */
MH_EXTERN int mh_barrier_init(mh_barrier_t *b, unsigned parties,
                              mh_barrier_action_fn action, void *action_arg,
                              double timeout);
/** As mh_barrier_init() with flags (0 or MH_SYNC_PROCESS_SHARED; a shared
 * barrier's action must be at the same address in every process, as after
 * fork()).
 * @param b the barrier
 * @param parties how many threads must call wait before all pass
 * @param action NULL, or run by one thread each time the barrier opens
 * @param action_arg passed to action
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @param flags a bit set of the flags named above (0: none)
 * @return what the description above says */
MH_EXTERN int mh_barrier_init_ex(mh_barrier_t *b, unsigned parties,
                                 mh_barrier_action_fn action, void *action_arg,
                                 double timeout, unsigned flags);
/** Destroy a barrier nobody waits on.
 * @return 0, MH_EINVAL (NULL).
 * @param b the barrier */
MH_EXTERN int mh_barrier_destroy(mh_barrier_t *b);

/** Barrier.wait(): wait with the barrier's default timeout.
 * @return the
 * arrival index (0 for the first party to arrive ... parties-1 for the last,
 * which runs the action), or MH_EBROKEN (the barrier is or became broken:
 * aborted, reset while waiting, the action failed, or a wait timed out - a
 * timeout breaks the barrier for everyone, as in Python), MH_EINVAL (NULL).
 * @param b the barrier */
MH_EXTERN int mh_barrier_wait(mh_barrier_t *b);

/** Barrier.wait(timeout) with an explicit timeout.
 * @return as
 * mh_barrier_wait(), and MH_EINVAL for a bad timeout.
 * @param b the barrier
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block */
MH_EXTERN int mh_barrier_wait_timeout(mh_barrier_t *b, double timeout);

/** Barrier.abort(): break the barrier; every waiting and future wait returns
 * MH_EBROKEN until mh_barrier_reset().  0 or MH_EINVAL.
 * @param b the barrier
 * @return what the description above says */
MH_EXTERN int mh_barrier_abort(mh_barrier_t *b);

/** Barrier.reset(): back to the empty state; parties waiting now get
 * MH_EBROKEN.  0 or MH_EINVAL.
 * @param b the barrier
 * @return what the description above says */
MH_EXTERN int mh_barrier_reset(mh_barrier_t *b);

/** Barrier.parties: how many parties the barrier waits for.
 * @param b the barrier
 * @return the count, or MH_EINVAL for NULL */
MH_EXTERN int mh_barrier_parties(mh_barrier_t *b);
/** Barrier.n_waiting: how many parties wait now.
 * @param b the barrier
 * @return the count, or MH_EINVAL for NULL */
MH_EXTERN int mh_barrier_n_waiting(mh_barrier_t *b);
/** Barrier.broken: 1 if broken, else 0.
 * @param b the barrier
 * @return 1, 0, or MH_EINVAL for NULL */
MH_EXTERN int mh_barrier_broken(mh_barrier_t *b);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_SYNC_H */
