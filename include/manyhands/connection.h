/* SPDX-License-Identifier: MIT */
/* manyhands/connection.h - pipes of byte messages between processes
 * (multiprocessing.Pipe, Connection, multiprocessing.connection.wait).
 *
 * mh_pipe() makes two connected ends.  Each message sent on one end is
 * received whole, once, on the other, with its boundaries kept, whatever
 * its size (0 bytes up to what memory holds): a message is a frame of an
 * 8-byte length and the bytes, on a SOCK_STREAM Unix socket pair.
 *
 * Guarantees:
 * - End of file is a clear code, never a hang: once every copy of the other
 *   end is closed - by mh_conn_close(), or by the kernel when the process
 *   holding it died, even by SIGKILL half-way through a send - a receive
 *   returns MH_EEOF (after the messages sent before it, which are still
 *   delivered); a partly sent message is dropped, never delivered torn.
 *   A send to an end whose peer is gone returns MH_EPIPE; SIGPIPE is never
 *   raised (MSG_NOSIGNAL), so it never kills the caller.
 * - A receive buffer too small loses nothing: mh_conn_recv() reports the
 *   message's size with MH_EOVERFLOW and keeps the message for the next
 *   receive; mh_conn_recv_alloc() allocates a buffer of the right size.
 * - Ends are inherited by processes forked after mh_pipe() (mh_process_start
 *   children, for example), as Python's are under the fork start method.
 *   As in Python, end of file comes only when EVERY copy of the other end
 *   is closed: after starting a child that uses one end, close the parent's
 *   copy of it (mh_conn_close() in the parent), and the child's copy of the
 *   parent's end in the child.  The descriptors are close-on-exec.
 *
 * Threads: one end may be used by several threads at once; sends are
 * serialised with each other (a message is never interleaved with another),
 * receives with each other, and a send may run beside a receive.
 * mh_conn_close() must be the last call on the handle.
 *
 * Difference from Python: messages are bytes (send_bytes / recv_bytes);
 * there is no pickling.  Send structures as plain data.
 */
#ifndef MANYHANDS_CONNECTION_H
#define MANYHANDS_CONNECTION_H

/** @defgroup mh_connection connection.h: pipes and connections between processes (multiprocessing.Pipe, Connection, connection.wait)
 * @brief Pipes and connections between processes (multiprocessing.Pipe, Connection, connection.wait).
 *
 * Part of <manyhands.h>.  The overview of the module opens the header
 * <manyhands/connection.h>.
 * @{
 */

#include "common.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque handle on one end of a pipe (Python's Connection). */
typedef struct mh_conn_s mh_conn_t;

/** Make a pipe (Python's Pipe(duplex)).  With `duplex` non-zero both ends
 * send and receive.  With `duplex` zero, as in Python, *a can only receive
 * and *b can only send.
 * @param a       receives the first end; set to NULL on failure
 * @param b       receives the second end; set to NULL on failure
 * @param duplex  non-zero for a two-way pipe, zero for a one-way pipe b -> a
 * @return 0, or MH_EINVAL (`a` or `b` NULL), MH_ENOMEM, MH_EMFILE or
 *         MH_ENFILE (no file descriptors). */
MH_EXTERN int mh_pipe(mh_conn_t **a, mh_conn_t **b, int duplex);

/** Send one message of `len` bytes (Python's send_bytes).  Blocks until the
 * whole message is handed to the kernel, which for a large message means
 * until the receiver has read most of it.  Interrupting signals are retried.
 * @param conn  an end that can send
 * @param buf   the bytes; may be NULL only when `len` is 0
 * @param len   the message size; 0 sends an empty message
 * @return 0, or MH_EINVAL (NULL conn, NULL buf with len > 0), MH_EBADF (a
 *         receive-only end), MH_EPIPE (the other end is closed or its
 *         process died; a message half sent when this happened is lost), or
 *         another code of a failed send. */
MH_EXTERN int mh_conn_send(mh_conn_t *conn, const void *buf, size_t len);

/** Receive one message into the caller's buffer (Python's
 * recv_bytes_into).  Blocks until a message comes or end of file.
 * @param conn  an end that can receive
 * @param buf   where the message goes; may be NULL only when `cap` is 0
 * @param cap   the size of `buf`
 * @param len   receives the message's size (also on MH_EOVERFLOW); may be NULL
 * @return 0, or MH_EOVERFLOW (the message is larger than `cap`: nothing was
 *         copied, *len says the size, and the message stays for the next
 *         receive), MH_EEOF (the other end is closed and every message sent
 *         before was received), MH_EINVAL (NULL conn, NULL buf with cap > 0),
 *         MH_EBADF (a send-only end), or another code of a failed receive. */
MH_EXTERN int mh_conn_recv(mh_conn_t *conn, void *buf, size_t cap, size_t *len);

/** Receive one message into a buffer the library allocates (Python's
 * recv_bytes).  Free it with mh_conn_msg_free().
 * @param conn  an end that can receive
 * @param buf   receives the message (at least 1 byte is allocated, so it is
 *              never NULL on success, also for an empty message); NULL on
 *              failure
 * @param len   receives the message's size
 * @return 0, or MH_ENOMEM (the message stays for the next receive), MH_EEOF,
 *         MH_EINVAL (a NULL argument), MH_EBADF, as mh_conn_recv(). */
MH_EXTERN int mh_conn_recv_alloc(mh_conn_t *conn, void **buf, size_t *len);

/** Free a buffer from mh_conn_recv_alloc().
 * @param buf  the buffer; NULL is ignored */
MH_EXTERN void mh_conn_msg_free(void *buf);

/** Whether a receive would not block (Python's poll(timeout)): a message,
 * or its start, has arrived, or the other end is closed (the receive will
 * return MH_EEOF).
 * @param conn     an end that can receive
 * @param timeout  seconds to wait: 0 only looks, MH_FOREVER waits as long as
 *                 it takes
 * @return 1 when ready, 0 when the timeout passed, or MH_EINVAL (NULL conn,
 *         bad timeout), MH_EBADF (a send-only end). */
MH_EXTERN int mh_conn_poll(mh_conn_t *conn, double timeout);

/** The end's file descriptor (Python's fileno()), for the caller's own poll
 * loop.  Data may already sit in the handle's buffer: call mh_conn_poll()
 * with timeout 0 before sleeping on the descriptor.
 * @param conn  the end
 * @return the descriptor, or MH_EINVAL for NULL. */
MH_EXTERN int mh_conn_fileno(const mh_conn_t *conn);

/** Whether the end can receive (Python's readable).
 * @param conn  the end
 * @return 1 or 0, or MH_EINVAL for NULL. */
MH_EXTERN int mh_conn_readable(const mh_conn_t *conn);

/** Whether the end can send (Python's writable).
 * @param conn  the end
 * @return 1 or 0, or MH_EINVAL for NULL. */
MH_EXTERN int mh_conn_writable(const mh_conn_t *conn);

/** Close this process's copy of the end and free the handle (Python's
 * close()).  Copies inherited by other processes stay open until they close
 * them or end.
 * @param conn  the end; NULL is ignored */
MH_EXTERN void mh_conn_close(mh_conn_t *conn);

/* ---- waiting on many (multiprocessing.connection.wait) ---------------- */

/** What an mh_waitable_t names. */
typedef enum mh_wait_kind {
  MH_WAIT_CONN = 1,    /**< a connection end that can receive: ready as mh_conn_poll() */
  MH_WAIT_PROCESS = 2, /**< a child process: ready once it has ended */
  MH_WAIT_FD = 3       /**< a file descriptor (a sentinel from
                            mh_process_sentinel(), a socket): ready when
                            readable, hung up or in error */
} mh_wait_kind_t;

/** One object for mh_wait().  Zero-initialise it: more fields may be added. */
typedef struct mh_waitable_s {
  mh_wait_kind_t kind; /**< which of the members below is set */
  mh_conn_t *conn;       /**< for MH_WAIT_CONN */
  mh_process_t *process; /**< for MH_WAIT_PROCESS */
  int fd;                /**< for MH_WAIT_FD */
  int ready;             /**< out: 1 when ready, else 0 */
} mh_waitable_t;

/** Wait until at least one of `items` is ready, or the timeout passes
 * (Python's multiprocessing.connection.wait(object_list, timeout)).  Every
 * item's `ready` is set, so several may be reported at once.
 * @param items    the objects; `ready` is written in each
 * @param n        how many; 0 with a timeout just sleeps it
 * @param timeout  seconds: 0 only looks, MH_FOREVER waits as long as it takes
 * @return the number of ready items (0 when the timeout passed), or
 *         MH_EINVAL (NULL items with n > 0, a NULL or send-only conn, a
 *         negative fd, an unknown kind, a bad timeout), MH_ENOSYS (a process
 *         item on a kernel without pidfds), MH_ENOMEM. */
MH_EXTERN int mh_wait(mh_waitable_t *items, size_t n, double timeout);

/** @} */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_CONNECTION_H */
