/* manyhands/sync.h - Lock, RLock, Condition, Semaphore, Event, Barrier.
 *
 * Python's threading primitives as small caller-allocated objects: `init` then
 * `destroy`, no allocation.  Every wait takes a timeout in seconds
 * (MH_FOREVER, 0 = do not block, > 0 measured on the monotonic clock).
 *
 * Process sharing: pass MH_SYNC_PROCESS_SHARED to an `init_ex` call on an
 * object that lives in memory shared between processes (see shared.h, which
 * also hands out ready-made shared ones).  Shared locks are robust: when a
 * process dies holding one, the next acquirer gets the lock together with
 * MH_EOWNERDEAD (see mh_lock_acquire).
 */
#ifndef MANYHANDS_SYNC_H
#define MANYHANDS_SYNC_H

#include <pthread.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Flag for the `init_ex` calls: the object lives in shared memory and is
 * used by several processes. */
#define MH_SYNC_PROCESS_SHARED 1u

/* The fields below are private; they are shown only so that the objects can be
 * embedded and allocated by the caller. */

/** threading.Lock: a non-recursive mutex that knows its owner. */
typedef struct mh_lock_s {
  pthread_mutex_t mutex;
  unsigned flags;
} mh_lock_t;

/** threading.RLock: the owning thread may acquire it again. */
typedef struct mh_rlock_s {
  pthread_mutex_t mutex;
  unsigned flags;
} mh_rlock_t;

/** threading.Condition, bound to an mh_lock_t. */
typedef struct mh_cond_s {
  pthread_cond_t cond;
  mh_lock_t *lock;
  mh_lock_t own_lock;
  unsigned flags;
} mh_cond_t;

/** threading.Semaphore and BoundedSemaphore. */
typedef struct mh_sem_s {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  unsigned long value;
  unsigned long bound; /* 0 = unbounded */
  unsigned long waiters;
  unsigned flags;
} mh_sem_t;

/** threading.Event. */
typedef struct mh_event_s {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int is_set;
  unsigned flags;
} mh_event_t;

/** Action run by exactly one party when a barrier trips (before any party is
 * released).  A non-zero return breaks the barrier. */
typedef int (*mh_barrier_action_fn)(void *arg);

/** threading.Barrier. */
typedef struct mh_barrier_s {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  unsigned parties;
  unsigned count;
  int state;
  unsigned long generation;
  double timeout;
  mh_barrier_action_fn action;
  void *action_arg;
  unsigned flags;
} mh_barrier_t;

/* Declarations of the calls (documented in the implementation file's header
 * comment and in docs/) are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_SYNC_H */
