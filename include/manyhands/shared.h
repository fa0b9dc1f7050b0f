/* SPDX-License-Identifier: MIT */
/* manyhands/shared.h - values, arrays and locks in shared memory
 * (multiprocessing.Value, Array, Lock, RLock, Semaphore, Event, Condition,
 * Barrier).
 *
 * Every object here lives in an anonymous shared mapping (mmap MAP_SHARED |
 * MAP_ANONYMOUS): nothing is created in /dev/shm or anywhere in the file
 * system, and the memory goes away with the last process that maps it - after
 * a normal exit, a crash or a kill alike.
 *
 * Rules:
 * - Create the objects BEFORE starting (forking) the processes that use them:
 *   a child sees the mappings its parent had when it was forked, at the same
 *   addresses, and nothing made later.
 * - The creator frees.  A free call in any other process (a child) only
 *   unmaps that process's view and leaves the object working for the others.
 *   Free an object only when no other process uses it any more (join them).
 * - The locks are robust and process-shared.  When a process dies while
 *   holding one, the next acquirer gets the lock together with
 *   MH_EOWNERDEAD instead of hanging.  Recovery recipe:
 *
 *       int rc = mh_lock_acquire(lock, MH_FOREVER);
 *       if (rc == MH_EOWNERDEAD) {
 *         repair_what_the_lock_guards();   // the dead owner may have left it
 *                                          // half-updated
 *         mh_lock_consistent(lock);        // the lock works normally again
 *         rc = 0;
 *       }
 *       if (rc == 0) { ...; mh_lock_release(lock); }
 *
 *   Releasing without mh_lock_consistent() makes the lock unusable for
 *   everyone (MH_ENOTRECOVERABLE).  The same holds for the recursive lock of
 *   a value or array (mh_rlock_acquire / mh_rlock_consistent).
 * - The get/set/add calls below take care of their own lock: each element is
 *   written with one store, so an owner that died cannot have left an element
 *   torn, and they mark the lock consistent and go on.  Code that keeps an
 *   invariant across several elements under get_lock() must check for
 *   MH_EOWNERDEAD itself.
 */
#ifndef MANYHANDS_SHARED_H
#define MANYHANDS_SHARED_H

/** @defgroup mh_shared shared.h: values, arrays and locks in shared memory (multiprocessing.Value, Array, Lock, RLock, Semaphore, Event, Condition, Barrier)
 * @brief Values, arrays and locks in shared memory (multiprocessing.Value, Array, Lock, RLock, Semaphore, Event, Condition, Barrier).
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/shared.h>.
 * @{
 */


#include "common.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every `new` call below sets its out-pointer to NULL when it fails. */

/* ---- raw shared memory ---------------------------------------------------- */

/** Map `size` bytes of zeroed memory shared with every process forked
 * afterwards; the block is aligned to 64 bytes.
 * @return 0, MH_EINVAL (NULL
 * `mem`, size 0 or absurdly large), MH_ENOMEM (the mapping failed).
 * @param mem receives the new block
 * @param size bytes to map (zero-filled) */
MH_EXTERN int mh_shared_mem_new(void **mem, size_t size);

/** Unmap a block from mh_shared_mem_new().
 * @return 0, or MH_EINVAL for NULL
 * or a pointer that did not come from mh_shared_mem_new().
 * @param mem the shared memory block */
MH_EXTERN int mh_shared_mem_free(void *mem);

/** The size asked for when the block was made (0 for an invalid pointer).
 * @param mem the shared memory block
 * @return what the description above says */
MH_EXTERN size_t mh_shared_mem_size(const void *mem);

/* ---- Value and Array -------------------------------------------------------- */

/** Element types (Python's typecodes in brackets). */
typedef enum mh_shared_type {
  MH_SHARED_INT8 = 1, /**< int8_t   ('b') */
  MH_SHARED_UINT8,    /**< uint8_t  ('B') */
  MH_SHARED_INT16,    /**< int16_t  ('h') */
  MH_SHARED_UINT16,   /**< uint16_t ('H') */
  MH_SHARED_INT32,    /**< int32_t  ('i') */
  MH_SHARED_UINT32,   /**< uint32_t ('I') */
  MH_SHARED_INT64,    /**< int64_t  ('q') */
  MH_SHARED_UINT64,   /**< uint64_t ('Q') */
  MH_SHARED_FLOAT,    /**< float    ('f') */
  MH_SHARED_DOUBLE    /**< double   ('d') */
} mh_shared_type_t;

/** multiprocessing.Value: one typed element with its own lock. */
typedef struct mh_shared_value_s mh_shared_value_t;
/** multiprocessing.Array: `len` typed elements with one lock. */
typedef struct mh_shared_array_s mh_shared_array_t;

/** Value(typecode, initial): a new shared value of `type`, set from
 * `*initial` (an object of that C type, e.g. an int32_t for
 * MH_SHARED_INT32), or zero when `initial` is NULL.
 * @param value receives the new shared value
 * @param type the element type
 * @param initial NULL (zero), or the initial value
 * @return 0, MH_EINVAL (NULL `value`, unknown type), MH_ENOMEM, or a code of
 * the lock's set-up (MH_ENOTSUP: no robust shared mutexes). */
MH_EXTERN int mh_shared_value_new(mh_shared_value_t **value, mh_shared_type_t type,
                                  const void *initial);

/** Release a value (see the ownership rules above).
 * @return 0 or MH_EINVAL.
 * @param value the shared value */
MH_EXTERN int mh_shared_value_free(mh_shared_value_t *value);

/** get_lock(): the value's robust, process-shared recursive lock (NULL for
 * NULL).  The get/set calls take it too, so they may be called with it held:
 *     mh_rlock_acquire(lk, MH_FOREVER);  get, compute, set;  mh_rlock_release(lk);
 * @param value the shared value
 * @return what the description above says */
MH_EXTERN mh_rlock_t *mh_shared_value_get_lock(mh_shared_value_t *value);

/** The value's storage, for direct access while holding its lock (or with
 * C11 atomics).  NULL for NULL.
 * @param value the shared value
 * @return what the description above says */
MH_EXTERN void *mh_shared_value_ptr(mh_shared_value_t *value);

/** The value's type, or MH_EINVAL for NULL.
 * @param value the shared value
 * @return what the description above says */
MH_EXTERN int mh_shared_value_type(const mh_shared_value_t *value);

/** value.value for integer types, under the lock.
 * @return 0, MH_EINVAL (NULL,
 * a floating-point value), MH_ERANGE (a uint64 above INT64_MAX).
 * @param value the shared value
 * @param out receives the value */
MH_EXTERN int mh_shared_value_get_i64(mh_shared_value_t *value, int64_t *out);

/** value.value = x for integer types, under the lock.
 * @return 0, MH_EINVAL
 * (NULL, floating-point value), MH_ERANGE (x does not fit the type; nothing
 * is stored).
 * @param value the shared value
 * @param x the value to store */
MH_EXTERN int mh_shared_value_set_i64(mh_shared_value_t *value, int64_t x);

/** value.value for MH_SHARED_FLOAT / MH_SHARED_DOUBLE, under the lock.
 * @param value the shared value
 * @param out receives the value
 * @return 0, MH_EINVAL (NULL, an integer value). */
MH_EXTERN int mh_shared_value_get_double(mh_shared_value_t *value, double *out);

/** value.value = x for MH_SHARED_FLOAT / MH_SHARED_DOUBLE, under the lock.
 * @param value the shared value
 * @param x the value to store
 * @return 0, MH_EINVAL (NULL, an integer value). */
MH_EXTERN int mh_shared_value_set_double(mh_shared_value_t *value, double x);

/** Atomically add `delta` to an integer value WITHOUT taking the lock (a C11
 * atomic fetch-and-add on the shared memory: exact across processes, and
 * cheaper than locking).  The result wraps around modulo the type's width.
 * When `old` is not NULL it receives the previous value (a uint64 above
 * INT64_MAX reads as its two's-complement int64).
 * @return 0, MH_EINVAL (NULL
 * value, floating-point value).
 * @param value the shared value
 * @param delta the amount to add
 * @param old NULL, or receives the value before the addition */
MH_EXTERN int mh_shared_value_add(mh_shared_value_t *value, int64_t delta, int64_t *old);

/** Array(typecode, len): `len` elements of `type`, copied from `initial`
 * (`len` objects of that C type) or zeroed when it is NULL.
 * @param array receives the new shared array
 * @param type the element type
 * @param len the number of elements
 * @param initial NULL (zeros), or the initial contents
 * @return 0, MH_EINVAL (NULL `array`, unknown type, len 0 or too large),
 * MH_ENOMEM, MH_ENOTSUP. */
MH_EXTERN int mh_shared_array_new(mh_shared_array_t **array, mh_shared_type_t type,
                                  size_t len, const void *initial);
/** Release an array (see the ownership rules).
 * @return 0 or MH_EINVAL.
 * @param array the shared array */
MH_EXTERN int mh_shared_array_free(mh_shared_array_t *array);
/** get_lock(): the array's recursive lock, as for values.
 * @param array the shared array
 * @return what the description above says */
MH_EXTERN mh_rlock_t *mh_shared_array_get_lock(mh_shared_array_t *array);
/** The elements, contiguous, for access under the lock.  NULL for NULL.
 * @param array the shared array
 * @return what the description above says */
MH_EXTERN void *mh_shared_array_ptr(mh_shared_array_t *array);
/** The number of elements (0 for NULL).
 * @param array the shared array
 * @return what the description above says */
MH_EXTERN size_t mh_shared_array_len(const mh_shared_array_t *array);
/** The element type, or MH_EINVAL for NULL.
 * @param array the shared array
 * @return what the description above says */
MH_EXTERN int mh_shared_array_type(const mh_shared_array_t *array);
/** array[i] as for the value calls; also MH_ERANGE when i >= len.
 * @param array the shared array
 * @param i the element's index, below the array's length
 * @param out receives the element
 * @return what the description above says */
MH_EXTERN int mh_shared_array_get_i64(mh_shared_array_t *array, size_t i, int64_t *out);
/** array[i] = x, as mh_shared_value_set_i64(); also MH_ERANGE when i >= len.
 * @param array the shared array
 * @param i the element's index, below the array's length
 * @param x the value to store
 * @return 0, MH_EINVAL, MH_ERANGE */
MH_EXTERN int mh_shared_array_set_i64(mh_shared_array_t *array, size_t i, int64_t x);
/** array[i] as a double, as mh_shared_value_get_double(); also MH_ERANGE when i >= len.
 * @param array the shared array
 * @param i the element's index, below the array's length
 * @param out receives the element
 * @return 0, MH_EINVAL, MH_ERANGE */
MH_EXTERN int mh_shared_array_get_double(mh_shared_array_t *array, size_t i, double *out);
/** array[i] = x, as mh_shared_value_set_double(); also MH_ERANGE when i >= len.
 * @param array the shared array
 * @param i the element's index, below the array's length
 * @param x the value to store
 * @return 0, MH_EINVAL, MH_ERANGE */
MH_EXTERN int mh_shared_array_set_double(mh_shared_array_t *array, size_t i, double x);
/** array[i] += delta atomically, as mh_shared_value_add(); also MH_ERANGE when i >= len.
 * @param array the shared array
 * @param i the element's index, below the array's length
 * @param delta the amount to add
 * @param old NULL, or receives the value before the addition
 * @return 0, MH_EINVAL, MH_ERANGE */
MH_EXTERN int mh_shared_array_add(mh_shared_array_t *array, size_t i, int64_t delta,
                                  int64_t *old);

/* ---- standalone process-shared primitives ----------------------------------
 * Each `new` maps a primitive of sync.h, initialised with
 * MH_SYNC_PROCESS_SHARED, and stores its address in *out; use it with the
 * ordinary sync.h calls (mh_lock_acquire, mh_sem_release, ...).  Each returns
 * 0, MH_EINVAL (NULL out, or the primitive's own bad arguments), MH_ENOMEM,
 * MH_ENOTSUP.  Each `free` destroys and unmaps it (0, or MH_EINVAL for a
 * pointer that did not come from the matching `new`). */

/** multiprocessing.Lock(): a robust process-shared lock.
 * @param out receives the new primitive
 * @return what the description above says */
MH_EXTERN int mh_shared_lock_new(mh_lock_t **out);
/** Destroy and unmap what mh_shared_lock_new() made.
 * @param lock the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_lock_new() */
MH_EXTERN int mh_shared_lock_free(mh_lock_t *lock);

/** multiprocessing.RLock().
 * @param out receives the new primitive
 * @return what the description above says */
MH_EXTERN int mh_shared_rlock_new(mh_rlock_t **out);
/** Destroy and unmap what mh_shared_rlock_new() made.
 * @param rlock the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_rlock_new() */
MH_EXTERN int mh_shared_rlock_free(mh_rlock_t *rlock);

/** multiprocessing.Semaphore(value) (bound 0) / BoundedSemaphore(value)
 * (bound == value).
 * @param out receives the new primitive
 * @param value the initial value
 * @param bound the highest value release may reach (BoundedSemaphore)
 * @return what the description above says */
MH_EXTERN int mh_shared_sem_new(mh_sem_t **out, unsigned long value, unsigned long bound);
/** Destroy and unmap what mh_shared_sem_new() made.
 * @param sem the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_sem_new() */
MH_EXTERN int mh_shared_sem_free(mh_sem_t *sem);

/** multiprocessing.Event().
 * @param out receives the new primitive
 * @return what the description above says */
MH_EXTERN int mh_shared_event_new(mh_event_t **out);
/** Destroy and unmap what mh_shared_event_new() made.
 * @param ev the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_event_new() */
MH_EXTERN int mh_shared_event_free(mh_event_t *ev);

/** multiprocessing.Condition() with a lock of its own.
 * @param out receives the new primitive
 * @return what the description above says */
MH_EXTERN int mh_shared_cond_new(mh_cond_t **out);
/** Destroy and unmap what mh_shared_cond_new() made.
 * @param cond the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_cond_new() */
MH_EXTERN int mh_shared_cond_free(mh_cond_t *cond);

/** multiprocessing.Barrier(parties, action, timeout).  The action runs in
 * whichever process arrives last; it must exist at the same address in every
 * process (true for functions of the program when the processes were forked).
 * @param out receives the new primitive
 * @param parties how many threads must call wait before all pass
 * @param action NULL, or run by one thread each time the barrier opens
 * @param action_arg passed to action
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return what the description above says */
MH_EXTERN int mh_shared_barrier_new(mh_barrier_t **out, unsigned parties,
                                    mh_barrier_action_fn action, void *action_arg,
                                    double timeout);
/** Destroy and unmap what mh_shared_barrier_new() made.
 * @param b the primitive
 * @return 0, or MH_EINVAL for a pointer that did not come from mh_shared_barrier_new() */
MH_EXTERN int mh_shared_barrier_free(mh_barrier_t *b);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_SHARED_H */
