/* SPDX-License-Identifier: MIT */
/* manyhands/mpqueue.h - a queue of byte messages between processes
 * (multiprocessing.Queue, JoinableQueue and SimpleQueue).
 *
 * A message is any run of bytes, 0 bytes included; put copies it into
 * shared memory and get copies it out, keeping its boundaries.  The queue is
 * bounded by a count of messages (maxsize, 0 = no bound, as in Python) and
 * by the total bytes of the messages in it (maxbytes, required).  It is
 * usable from every process forked after it was made, by any number of
 * producers and consumers at once: mh_process_start() children and the
 * workers of a process pool made after it alike.
 *
 * Python -> C:
 *   Queue(maxsize) / JoinableQueue(maxsize) / SimpleQueue()
 *                            mh_mpqueue_new(&q, maxsize, MH_MPQUEUE_DEFAULT_MAXBYTES)
 *                            (one type does all three; SimpleQueue is maxsize 0)
 *   q.put(b) / put(b, timeout=t) / put_nowait(b)
 *                            mh_mpqueue_put(q, b, len, MH_FOREVER / t / 0)
 *                            (MH_ETIMEDOUT / MH_EAGAIN = queue.Full)
 *   q.get() / get(timeout=t) / get_nowait()
 *                            mh_mpqueue_get(q, buf, cap, &len, MH_FOREVER / t / 0),
 *                            or mh_mpqueue_get_alloc(q, &msg, &len, ...)
 *                            (MH_ETIMEDOUT / MH_EAGAIN = queue.Empty)
 *   q.qsize() / empty() / full()   mh_mpqueue_qsize / _empty / _full
 *   q.task_done() / q.join()       mh_mpqueue_task_done / mh_mpqueue_join
 *   q.close()                      mh_mpqueue_close (this process only, as Python's)
 *   queue.Queue.shutdown(immediate) (3.13)  mh_mpqueue_shutdown: every process
 *   q.join_thread() / cancel_join_thread()  not needed: there is no feeder
 *                                  thread; put has copied the message when it
 *                                  returns.
 *
 * Differences from Python, all on purpose:
 * - Messages are bytes; what they mean is the caller's business (no pickle).
 * - put copies the message before it returns, so a process may exit (and be
 *   joined) right after putting a message of any size: the pipe-buffer
 *   deadlock of Python's Queue (cpython#73983) cannot happen.
 * - qsize() is exact (a snapshot) and works everywhere, also on macOS in
 *   Python's terms.
 * - A byte bound: a message larger than maxbytes is refused at once with
 *   MH_EMSGSIZE (nothing is queued or lost), and put waits while the queue
 *   holds too many bytes, as it waits while it holds maxsize messages.
 *
 * Guarantees when a process dies, at any instruction (SIGKILL included):
 * - The others keep using the queue: its lock is robust, every change made
 *   under it is written to a redo journal first and is replayed by the next
 *   process that takes the lock, and nobody waits on a dead process for
 *   longer than a fraction of a second.  Messages of up to 104 bytes go
 *   without the lock while no larger one is queued; a slot claimed by a
 *   producer that died is found by its pid and taken out unread (see
 *   docs/mpqueue.md for the two narrow limits: the count bound during a
 *   race, and a dead claimant's pid taken by a new process at once).
 * - A message becomes visible only when whole: a producer that dies inside
 *   put leaves either no message or the whole message, never a part; its
 *   half-written message is never delivered and its room is reclaimed.
 * - A message is removed from the queue only by a get that returns it: a
 *   consumer that dies inside get, however far it got in copying the message
 *   out, leaves the message in the queue for another get.  (The removal is
 *   one store just before get returns; a consumer killed after that store
 *   has the message, and it dies with it: at most one message per consumer
 *   killed, the one it was given last.)
 * - No message is ever delivered twice, torn, or mixed with another.
 * A process that dies after a get but before its task_done leaves that task
 * unfinished: join() then waits for it as Python's would (use a timeout).
 *
 * Memory: the queue is one anonymous shared mapping of about twice maxbytes
 * of address space, reserved but not used: pages are used as messages fill
 * them, the first few MiB stay as a warm ring, and the room of large
 * messages further out is given back to the system when they are got.
 * Nothing is created in the file system; the memory goes away with the last
 * process that maps the queue, however it ended.
 *
 * Ownership: create the queue before forking the processes that use it.
 * Each process (the creator and every child) releases its own view with
 * mh_mpqueue_free(); the queue lives on while any process maps it.
 */
#ifndef MANYHANDS_MPQUEUE_H
#define MANYHANDS_MPQUEUE_H

/** @defgroup mh_mpqueue mpqueue.h: a queue between processes (multiprocessing.Queue, JoinableQueue, SimpleQueue)
 * @brief A queue between processes (multiprocessing.Queue, JoinableQueue, SimpleQueue).
 *
 * Part of <manyhands.h>.  The overview of the module opens the header
 * <manyhands/mpqueue.h>.
 * @{
 */

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque queue between processes: a process-local handle on a shared
 * mapping.  A forked child has its own copy of the handle. */
typedef struct mh_mpqueue_s mh_mpqueue_t;

/** A byte bound that suits most uses: 1 GiB (address space only; the memory
 * used follows the messages queued). */
#define MH_MPQUEUE_DEFAULT_MAXBYTES ((size_t)1 << 30)

/** The largest byte bound accepted: 64 GiB. */
#define MH_MPQUEUE_MAX_MAXBYTES ((size_t)64 << 30)

/** Create a queue shared with every process forked after this call.
 * @param out       receives the handle (set to NULL on failure)
 * @param maxsize   at most this many messages queued; 0 = no bound (Python's
 *                  maxsize <= 0)
 * @param maxbytes  at most this many bytes of messages queued (1 ..
 *                  MH_MPQUEUE_MAX_MAXBYTES); also the largest message
 * @return 0, or
 *   MH_EINVAL  out is NULL, maxbytes is 0 or above MH_MPQUEUE_MAX_MAXBYTES;
 *   MH_ENOMEM  no memory or address space for the handle or the mapping;
 *   MH_ENOTSUP the system has no robust process-shared mutexes. */
MH_EXTERN int mh_mpqueue_new(mh_mpqueue_t **out, size_t maxsize, size_t maxbytes);

/** Release this process's view of the queue.  Other processes keep using
 * it; the memory goes when the last view goes (or its process ends).  No
 * thread of this process may still be using the handle.
 * @param q  the queue; NULL is ignored */
MH_EXTERN void mh_mpqueue_free(mh_mpqueue_t *q);

/** Copy a message into the queue, waiting up to `timeout` seconds while the
 * queue is full (maxsize messages, or no room for `len` more bytes).
 * @param q        the queue
 * @param msg      the message's bytes (may be NULL when len is 0)
 * @param len      its length in bytes, 0 allowed
 * @param timeout  seconds to wait for room: MH_FOREVER, 0 (do not wait) or
 *                 a positive number, on the monotonic clock
 * @return 0 once the whole message is in the queue, or
 *   MH_EAGAIN     timeout 0 and the queue was full (queue.Full);
 *   MH_ETIMEDOUT  the queue stayed full for `timeout` seconds (queue.Full);
 *   MH_EMSGSIZE   len is above the queue's maxbytes: it could never fit
 *                 (nothing was queued);
 *   MH_ESHUTDOWN  the queue was shut down before or while waiting;
 *   MH_EBADF      this process closed the queue (mh_mpqueue_close);
 *   MH_EINVAL     q is NULL, msg is NULL with len > 0, or a bad timeout;
 *   MH_ENOTRECOVERABLE  the queue's lock was left unusable (cannot happen
 *                 through this API; reported rather than hidden). */
MH_EXTERN int mh_mpqueue_put(mh_mpqueue_t *q, const void *msg, size_t len, double timeout);

/** Remove the next message and copy it into `buf`, waiting up to `timeout`
 * seconds while the queue is empty.  After a shutdown, get still returns the
 * messages left (and those whose put was under way), then MH_ESHUTDOWN.
 * @param q        the queue
 * @param buf      where the message goes (may be NULL when cap is 0)
 * @param cap      bytes available at buf
 * @param len      receives the message's length (and, with MH_ERANGE, the
 *                 length a retry needs)
 * @param timeout  seconds to wait for a message (MH_FOREVER, 0 or positive)
 * @return 0 with the message in buf, or
 *   MH_ERANGE     the next message is longer than cap: it stays in the queue,
 *                 *len is its length; retry with a buffer that large;
 *   MH_EAGAIN     timeout 0 and the queue was empty (queue.Empty);
 *   MH_ETIMEDOUT  the queue stayed empty for `timeout` seconds (queue.Empty);
 *   MH_ESHUTDOWN  the queue is shut down and empty;
 *   MH_EBADF      this process closed the queue;
 *   MH_EINVAL     q or len is NULL, buf is NULL with cap > 0, bad timeout;
 *   MH_ENOTRECOVERABLE  as for mh_mpqueue_put(). */
MH_EXTERN int mh_mpqueue_get(mh_mpqueue_t *q, void *buf, size_t cap, size_t *len,
                             double timeout);

/** As mh_mpqueue_get(), into a buffer this call allocates to fit.
 * @param q        the queue
 * @param msg      receives the message (release it with mh_mpqueue_msg_free;
 *                 NULL on error); a 0-byte message gives a valid 1-byte block
 * @param len      receives its length
 * @param timeout  as for mh_mpqueue_get()
 * @return the codes of mh_mpqueue_get() except MH_ERANGE, and MH_ENOMEM when
 *   the buffer could not be allocated (the message stays in the queue). */
MH_EXTERN int mh_mpqueue_get_alloc(mh_mpqueue_t *q, void **msg, size_t *len, double timeout);

/** Release a message from mh_mpqueue_get_alloc() (through the allocator of
 * mh_replace_allocator()).
 * @param msg  the message; NULL is ignored */
MH_EXTERN void mh_mpqueue_msg_free(void *msg);

/** The number of messages in the queue (a snapshot).  Messages being copied
 * in or out are not counted.
 * @param q  the queue
 * @return the count; 0 for NULL */
MH_EXTERN size_t mh_mpqueue_qsize(mh_mpqueue_t *q);

/** Whether the queue holds no message (a snapshot).
 * @param q  the queue
 * @return 1 if empty, 0 if not, MH_EINVAL for NULL */
MH_EXTERN int mh_mpqueue_empty(mh_mpqueue_t *q);

/** Whether the queue holds maxsize messages (never, when maxsize is 0).
 * @param q  the queue
 * @return 1 if full, 0 if not, MH_EINVAL for NULL */
MH_EXTERN int mh_mpqueue_full(mh_mpqueue_t *q);

/** The total length of the messages in the queue, counting those being
 * copied in or out (what maxbytes bounds).
 * @param q  the queue
 * @return bytes; 0 for NULL */
MH_EXTERN size_t mh_mpqueue_qbytes(mh_mpqueue_t *q);

/** The bounds the queue was created with.
 * @param q         the queue
 * @param maxsize   receives the count bound (0 = none); may be NULL
 * @param maxbytes  receives the byte bound; may be NULL
 * @return 0, or MH_EINVAL for NULL q */
MH_EXTERN int mh_mpqueue_bounds(mh_mpqueue_t *q, size_t *maxsize, size_t *maxbytes);

/** JoinableQueue.task_done(): one message taken by get has been processed,
 * in any process.
 * @param q  the queue
 * @return 0, or MH_EINVAL (NULL q, or more task_done calls than messages put:
 *   Python's ValueError), MH_ENOTRECOVERABLE */
MH_EXTERN int mh_mpqueue_task_done(mh_mpqueue_t *q);

/** JoinableQueue.join(): wait until every message put (by any process) has
 * been marked done with mh_mpqueue_task_done() or discarded by an immediate
 * shutdown.
 * @param q        the queue
 * @param timeout  seconds (MH_FOREVER, 0 = only check, or positive)
 * @return 0, or MH_ETIMEDOUT (tasks still unfinished), MH_EINVAL (NULL q,
 *   bad timeout), MH_ENOTRECOVERABLE */
MH_EXTERN int mh_mpqueue_join(mh_mpqueue_t *q, double timeout);

/** Shut the queue down for every process (the semantics of Python 3.13's
 * queue.Queue.shutdown, which multiprocessing's queues lack): puts fail with
 * MH_ESHUTDOWN, including those waiting for room; gets return what is left
 * and then MH_ESHUTDOWN.  With `immediate` nonzero the messages left are
 * discarded, each counted done for join, and every get fails at once.  A put
 * already copying its message when the shutdown comes completes (its
 * message is then got, or discarded when immediate).  Calling it again is
 * allowed (immediate after normal discards the rest).
 * @param q          the queue
 * @param immediate  nonzero to discard the messages left
 * @return 0, MH_EINVAL for NULL q, MH_ENOTRECOVERABLE */
MH_EXTERN int mh_mpqueue_shutdown(mh_mpqueue_t *q, int immediate);

/** Whether mh_mpqueue_shutdown() was called (by any process).
 * @param q  the queue
 * @return 1 or 0, MH_EINVAL for NULL */
MH_EXTERN int mh_mpqueue_is_shutdown(mh_mpqueue_t *q);

/** Queue.close(): this process will neither put nor get any more (both then
 * fail with MH_EBADF, Python's ValueError); other processes are not
 * affected.  The handle must still be released with mh_mpqueue_free().
 * @param q  the queue
 * @return 0, or MH_EINVAL for NULL */
MH_EXTERN int mh_mpqueue_close(mh_mpqueue_t *q);

/** @} */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_MPQUEUE_H */
