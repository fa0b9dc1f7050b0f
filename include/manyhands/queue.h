/* SPDX-License-Identifier: MIT */
/* manyhands/queue.h - queue.Queue: bounded and unbounded FIFO, LIFO and priority queues.
 *
 * A queue holds items of one fixed size, given when it is created.  Items are
 * copied in by put and copied out by get, so ints, structs and pointers all
 * work, and the queue never owns what a pointer item points to.  Storage is
 * one array that grows by doubling when the queue is unbounded: there is no
 * allocation per item, and the cost of a put or get does not depend on how
 * many items are queued.
 *
 * Python -> C:
 *   queue.Queue(maxsize)          mh_queue_new(&q, sizeof(T), maxsize)
 *   queue.LifoQueue(maxsize)      mh_queue_new_lifo(&q, sizeof(T), maxsize)
 *   queue.PriorityQueue(maxsize)  mh_queue_new_priority(&q, sizeof(T), maxsize, cmp, arg)
 *   q.put(x) / q.get()            mh_queue_put(q, &x, MH_FOREVER) / mh_queue_get(q, &x, MH_FOREVER)
 *   q.put(x, timeout=t)           mh_queue_put(q, &x, t)            (MH_ETIMEDOUT = queue.Full)
 *   q.put_nowait(x)               mh_queue_put(q, &x, 0)            (MH_EAGAIN = queue.Full)
 *   q.get_nowait()                mh_queue_get(q, &x, 0)            (MH_EAGAIN = queue.Empty)
 *   q.qsize() / empty() / full()  mh_queue_qsize / mh_queue_empty / mh_queue_full
 *   q.task_done() / q.join()      mh_queue_task_done / mh_queue_join
 *   q.shutdown(immediate)         mh_queue_shutdown(q, immediate)   (3.13; MH_ESHUTDOWN = queue.ShutDown)
 *
 * All functions are thread-safe, except mh_queue_free(), which must be the
 * last call on a queue that no thread uses any more.
 */
#ifndef MANYHANDS_QUEUE_H
#define MANYHANDS_QUEUE_H

/** @defgroup mh_queue queue.h: queue.Queue: bounded and unbounded FIFO, LIFO and priority queues
 * @brief Queue.Queue: bounded and unbounded FIFO, LIFO and priority queues.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/queue.h>.
 * @{
 */


#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque queue. */
typedef struct mh_queue mh_queue_t;

/** Orders a priority queue: negative when item `a` must come out before item
 * `b`, positive when after, 0 when equal (equal items come out in the order
 * they were put).  `arg` is the pointer given to mh_queue_new_priority(). */
typedef int (*mh_queue_cmp_fn)(const void *a, const void *b, void *arg);

/** Largest item size accepted, in bytes (1 MiB). */
#define MH_QUEUE_MAX_ITEM_SIZE ((size_t)1 << 20)

/** Create a FIFO queue (queue.Queue) of items of `item_size` bytes holding at
 * most `maxsize` items; 0 means unbounded.
 * @param out receives the new queue
 * @param item_size bytes of one item (copied in and out)
 * @param maxsize the most items the queue holds; 0: unbounded
 * @return 0 and sets *out, or:
 *   MH_EINVAL  out is NULL, item_size is 0 or above MH_QUEUE_MAX_ITEM_SIZE, or
 *              maxsize items could never fit in memory;
 *   MH_ENOMEM  out of memory (nothing is leaked). */
MH_EXTERN int mh_queue_new(mh_queue_t **out, size_t item_size, size_t maxsize);

/** Create a LIFO queue (queue.LifoQueue): get returns the newest item.
 * Arguments and codes as mh_queue_new().
 * @param out receives the new queue
 * @param item_size bytes of one item (copied in and out)
 * @param maxsize the most items the queue holds; 0: unbounded
 * @return what the description above says */
MH_EXTERN int mh_queue_new_lifo(mh_queue_t **out, size_t item_size, size_t maxsize);

/** Create a priority queue (queue.PriorityQueue): get returns the item that
 * `cmp` orders first (the smallest, as Python's heapq), equal items in the
 * order they were put.  `arg` is passed to every call of `cmp`.
 * Codes as mh_queue_new(), and MH_EINVAL when cmp is NULL.
 * @param out receives the new queue
 * @param item_size bytes of one item (copied in and out)
 * @param maxsize the most items the queue holds; 0: unbounded
 * @param cmp orders two items like strcmp (negative: a comes first)
 * @param arg passed to cmp
 * @return what the description above says */
MH_EXTERN int mh_queue_new_priority(mh_queue_t **out, size_t item_size, size_t maxsize,
                                    mh_queue_cmp_fn cmp, void *arg);

/** Destroy a queue and its remaining items.  No thread may be using it or
 * waiting on it.  NULL is ignored.
 * @param q the queue */
MH_EXTERN void mh_queue_free(mh_queue_t *q);

/** Copy the item at `item` into the queue, waiting up to `timeout` seconds
 * for room when the queue is full (MH_FOREVER: as long as it takes; 0: do
 * not wait).
 * @param q the queue
 * @param item the item (item_size bytes)
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, or:
 *   MH_EAGAIN     timeout was 0 and the queue was full (queue.Full);
 *   MH_ETIMEDOUT  the queue stayed full for `timeout` seconds (queue.Full);
 *   MH_ESHUTDOWN  the queue was shut down before or while waiting;
 *   MH_ENOMEM     an unbounded queue could not grow (the item is not put);
 *   MH_EINVAL     q or item is NULL, or timeout is negative (not MH_FOREVER) or NaN. */
MH_EXTERN int mh_queue_put(mh_queue_t *q, const void *item, double timeout);

/** Remove the next item and copy it to `item`, waiting up to `timeout`
 * seconds for one when the queue is empty.  After a shutdown, get still
 * returns the items left in the queue, then MH_ESHUTDOWN.
 * @param q the queue
 * @param item receives the item (item_size bytes)
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, or:
 *   MH_EAGAIN     timeout was 0 and the queue was empty (queue.Empty);
 *   MH_ETIMEDOUT  the queue stayed empty for `timeout` seconds (queue.Empty);
 *   MH_ESHUTDOWN  the queue is shut down and empty;
 *   MH_EINVAL     q or item is NULL, or the timeout is invalid. */
MH_EXTERN int mh_queue_get(mh_queue_t *q, void *item, double timeout);

/** Put the `count` items of the array `items` in order, taking the lock once
 * for as many as there is room for: the fast way to move many items.  Waits
 * for room as mh_queue_put() does; `timeout` covers the whole call.  Sets
 * *nput (if not NULL) to the number of items put, which is `count` on
 * success and may be less on error.
 * @param q the queue
 * @param items count items, item_size bytes each, one after the other
 * @param count the number of items
 * @param nput NULL, or receives how many items were put
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0 when all were put, or the codes of mh_queue_put() (MH_EAGAIN /
 * MH_ETIMEDOUT: the queue was full before all were put; MH_EINVAL also when
 * items is NULL while count > 0).  count = 0 returns 0 at once. */
MH_EXTERN int mh_queue_put_many(mh_queue_t *q, const void *items, size_t count,
                                size_t *nput, double timeout);

/** Remove up to `max` items into the array `items`, in the order get would
 * return them, taking the lock once.  Waits as mh_queue_get() does until at
 * least one item is there, then takes what is there without waiting for
 * more.  Sets *ngot to the number taken (>= 1 on success, 0 on error).
 * @param q the queue
 * @param items receives up to max items, one after the other
 * @param max the most items to take
 * @param ngot receives how many items were taken
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, or the codes of mh_queue_get() (MH_EINVAL also when ngot is
 * NULL, or max is 0). */
MH_EXTERN int mh_queue_get_many(mh_queue_t *q, void *items, size_t max, size_t *ngot,
                                double timeout);

/** The number of items in the queue (a snapshot; 0 for NULL).
 * @param q the queue
 * @return what the description above says */
MH_EXTERN size_t mh_queue_qsize(mh_queue_t *q);

/** 1 if the queue is empty, 0 if not, MH_EINVAL when q is NULL.
 * @param q the queue
 * @return what the description above says */
MH_EXTERN int mh_queue_empty(mh_queue_t *q);

/** 1 if the queue is bounded and holds maxsize items, 0 if not, MH_EINVAL
 * when q is NULL.
 * @param q the queue
 * @return what the description above says */
MH_EXTERN int mh_queue_full(mh_queue_t *q);

/** The maxsize the queue was created with (0 = unbounded; 0 for NULL).
 * @param q the queue
 * @return what the description above says */
MH_EXTERN size_t mh_queue_maxsize(mh_queue_t *q);

/** Tell the queue that one item taken by get has been processed.  Every put
 * adds one unfinished task; task_done removes one; join waits until none is
 * left.
 * @param q the queue
 * @return 0, or:
 *   MH_EINVAL  q is NULL, or task_done was called more times than items were
 *              put (Python's ValueError). */
MH_EXTERN int mh_queue_task_done(mh_queue_t *q);

/** Wait up to `timeout` seconds until every item ever put has been marked
 * done by mh_queue_task_done() (or discarded by an immediate shutdown).
 * @param q the queue
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0, or:
 *   MH_ETIMEDOUT  tasks were still unfinished when the timeout passed (at once
 *                 when timeout is 0);
 *   MH_EINVAL     q is NULL or the timeout is invalid. */
MH_EXTERN int mh_queue_join(mh_queue_t *q, double timeout);

/** Shut the queue down (Python 3.13's Queue.shutdown).  From now on put fails
 * with MH_ESHUTDOWN and so do the puts waiting for room; get returns what is
 * left and then MH_ESHUTDOWN, and getters waiting on an empty queue fail at
 * once.  With `immediate` nonzero the items left are discarded first, each
 * counted as done for join, so every waiting getter fails and joiners wake up
 * (join then waits only for the items already taken).  Calling it again is
 * allowed (an immediate call after a normal one discards the rest).
 * @param q the queue
 * @param immediate non-zero: drop what is queued; 0: getters drain it first
 * @return 0, or MH_EINVAL when q is NULL. */
MH_EXTERN int mh_queue_shutdown(mh_queue_t *q, int immediate);

/** 1 if mh_queue_shutdown() was called, 0 if not, MH_EINVAL when q is NULL.
 * @param q the queue
 * @return what the description above says */
MH_EXTERN int mh_queue_is_shutdown(mh_queue_t *q);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_QUEUE_H */
