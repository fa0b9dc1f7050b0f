/* SPDX-License-Identifier: MIT */
/* connection.c - pipes of byte messages: framing, receive buffer, wait().
 *
 * A pipe is a SOCK_STREAM Unix socket pair (SOCK_SEQPACKET would keep the
 * boundaries for us, but caps a message at the socket's buffer size).  A
 * message travels as a frame: an 8-byte length in host byte order (both
 * ends are on one machine) followed by that many bytes.  A send writes the
 * frame with one sendmsg() of two iovecs; a receive reads into a per-end
 * buffer of RBUF_SIZE bytes, so a small message usually costs one read()
 * for its header and body together, and reads a large body's rest straight
 * into the caller's memory.
 *
 * Invariants:
 * - The receive buffer holds the bytes [rpos, rend) of the stream that came
 *   in and were not yet handed out; they always start at a frame boundary,
 *   except while a receive that has taken a header is copying that frame's
 *   body (and then it holds recv_mu until it is done).
 * - A header is consumed only once the caller's buffer is known to be
 *   large enough, so MH_EOVERFLOW and MH_ENOMEM leave the message in place.
 * - `broken` is set when a receive failed in the middle of a body (not by
 *   end of file: then the torn message is simply dropped); the stream's
 *   position is lost, and later receives report MH_EIO.
 *
 * Who may touch what:
 *   I: set in mh_pipe(), read-only after
 *   R: recv_mu
 *   S: send_mu (serialises whole frames; no field of its own)
 *   A: atomic, written under recv_mu, read anywhere (by poll and wait)
 * Lock order: send_mu and recv_mu are never held together; nothing else is
 * locked under either.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "manyhands/connection.h"
#include "manyhands/process.h"
#include "spin.h"

/* Receive buffer per end: large enough that a read of a small message and
 * the headers of a burst come in one call, small next to the socket's own
 * buffer (about 200 KiB by default). */
#define RBUF_SIZE (64u * 1024u)
#define HDR_SIZE 8u

enum { CAN_RECV = 1u, CAN_SEND = 2u };

struct mh_conn_s {
  int fd;                 /* I */
  unsigned mode;          /* I: CAN_RECV | CAN_SEND */
  pthread_mutex_t send_mu;
  pthread_mutex_t recv_mu;
  char *rbuf;             /* R: RBUF_SIZE bytes, allocated on first receive */
  size_t rpos, rend;      /* R: the unread bytes are rbuf[rpos, rend) */
  int broken;             /* R */
  unsigned spin;          /* R: looks before blocking (see read_spin) */
  unsigned spin_probe;    /* R: receives since spin fell to 0 */
  atomic_size_t buffered; /* A: rend - rpos */
  atomic_int eof;         /* A: read() returned 0 (or the peer reset) */
};

/* ---- making and closing ------------------------------------------------ */

static void conn_free(mh_conn_t *c) {
  pthread_mutex_destroy(&c->send_mu);
  pthread_mutex_destroy(&c->recv_mu);
  mh__free(c->rbuf);
  mh__free(c);
}

static mh_conn_t *conn_new(int fd, unsigned mode) {
  mh_conn_t *c = mh__calloc(1, sizeof *c);
  if (!c) return NULL;
  if (pthread_mutex_init(&c->send_mu, NULL) != 0) {
    mh__free(c);
    return NULL;
  }
  if (pthread_mutex_init(&c->recv_mu, NULL) != 0) {
    pthread_mutex_destroy(&c->send_mu);
    mh__free(c);
    return NULL;
  }
  c->fd = fd;
  c->mode = mode;
  atomic_init(&c->buffered, 0);
  atomic_init(&c->eof, 0);
  return c;
}

int mh_pipe(mh_conn_t **a, mh_conn_t **b, int duplex) {
  if (a) *a = NULL;
  if (b) *b = NULL;
  if (!a || !b) return MH_EINVAL;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
  unsigned ma = duplex ? (CAN_RECV | CAN_SEND) : CAN_RECV;
  unsigned mb = duplex ? (CAN_RECV | CAN_SEND) : CAN_SEND;
  if (!duplex) {
    /* A one-way pipe: say so to the kernel too, so that a stray write on the
     * receiving end fails instead of queueing bytes nobody reads. */
    shutdown(sv[0], SHUT_WR);
    shutdown(sv[1], SHUT_RD);
  }
  mh_conn_t *ca = conn_new(sv[0], ma);
  mh_conn_t *cb = ca ? conn_new(sv[1], mb) : NULL;
  if (!cb) {
    if (ca) conn_free(ca);
    close(sv[0]);
    close(sv[1]);
    return MH_ENOMEM;
  }
  *a = ca;
  *b = cb;
  return 0;
}

void mh_conn_close(mh_conn_t *conn) {
  if (!conn) return;
  /* close() is not retried on EINTR: on Linux the descriptor is gone. */
  close(conn->fd);
  conn_free(conn);
}

int mh_conn_fileno(const mh_conn_t *conn) { return conn ? conn->fd : MH_EINVAL; }

int mh_conn_readable(const mh_conn_t *conn) {
  return conn ? (conn->mode & CAN_RECV) != 0 : MH_EINVAL;
}

int mh_conn_writable(const mh_conn_t *conn) {
  return conn ? (conn->mode & CAN_SEND) != 0 : MH_EINVAL;
}

void mh_conn_msg_free(void *buf) { mh__free(buf); }

/* ---- sending ------------------------------------------------------------ */

int mh_conn_send(mh_conn_t *conn, const void *buf, size_t len) {
  if (!conn || (!buf && len > 0)) return MH_EINVAL;
  if (!(conn->mode & CAN_SEND)) return MH_EBADF;
  uint64_t hdr = (uint64_t)len;
  struct iovec iov[2];
  iov[0].iov_base = &hdr;
  iov[0].iov_len = HDR_SIZE;
  iov[1].iov_base = (void *)(uintptr_t)buf;
  iov[1].iov_len = len;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = len ? 2 : 1;
  int rc = 0;
  pthread_mutex_lock(&conn->send_mu);
  for (;;) {
    /* MSG_NOSIGNAL: a peer that is gone gives EPIPE, never SIGPIPE. */
    ssize_t n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      rc = (errno == ECONNRESET || errno == ENOTCONN) ? MH_EPIPE : -errno;
      break;
    }
    /* A partial write (a large message, or a signal): move past what went. */
    size_t done = (size_t)n;
    while (msg.msg_iovlen > 0 && done >= msg.msg_iov[0].iov_len) {
      done -= msg.msg_iov[0].iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen == 0) break;
    msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + done;
    msg.msg_iov[0].iov_len -= done;
  }
  pthread_mutex_unlock(&conn->send_mu);
  return rc;
}

/* ---- receiving ---------------------------------------------------------- */

/* read() retried on EINTR; a reset peer counts as end of file. */
static ssize_t read_some(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t n = read(fd, buf, len);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0;
    return -1;
  }
}

/* Like read_some, but first look a few times without blocking: a peer
 * answering a small message on the other core usually does so within a few
 * microseconds, and a reader that never slept needs no wake-up (the sleep and
 * the wake-up are most of a blocking round trip on an idle machine).  On a
 * loaded machine the peer is seldom running, the looks find nothing, and a
 * reader that spun loses the scheduler's preference for a woken sleeper
 * (measured: round trips 1.5-3x slower).  So the looks adapt: `spin` is the
 * number of looks (MH__SPIN_CONN_RECV's pauses at most), doubled when one
 * found data, halved when all found nothing; at 0 one receive in
 * CONN_PROBE looks again with the full budget. */
#define CONN_PROBE 64u
static ssize_t read_spin(mh_conn_t *c, void *buf, size_t len) {
  mh__spin_policy_t pol = MH__SPIN_CONN_RECV;
  unsigned budget = c->spin;
  if (budget == 0 && (++c->spin_probe % CONN_PROBE) == 0) budget = pol.pauses;
  pol.pauses = budget;
  mh__spin_t sp = MH__SPIN_INIT;
  while (budget && mh__spin_again(&sp, &pol)) {
    ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
    if (n > 0) {
      unsigned up = c->spin ? c->spin * 2 : 1;
      c->spin = up < MH__SPIN_CONN_RECV.pauses ? up : MH__SPIN_CONN_RECV.pauses;
      return n;
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
  }
  if (budget) c->spin /= 2;
  return read_some(c->fd, buf, len);
}

static void publish_buffered(mh_conn_t *c) {
  atomic_store_explicit(&c->buffered, c->rend - c->rpos, memory_order_release);
}

/* Make sure the buffer holds a whole header.  Caller holds recv_mu.
 * 0, MH_EEOF (the stream ended; a torn header is dropped), or a code. */
static int need_header(mh_conn_t *c) {
  if (!c->rbuf) {
    c->rbuf = mh__malloc(RBUF_SIZE);
    if (!c->rbuf) return MH_ENOMEM;
  }
  while (c->rend - c->rpos < HDR_SIZE) {
    if (atomic_load_explicit(&c->eof, memory_order_relaxed)) {
      c->rpos = c->rend = 0;
      publish_buffered(c);
      return MH_EEOF;
    }
    /* Move what is left to the front, so that a read has room. */
    if (c->rpos > 0) {
      memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
      c->rend -= c->rpos;
      c->rpos = 0;
    }
    ssize_t n = read_spin(c, c->rbuf + c->rend, RBUF_SIZE - c->rend);
    if (n < 0) return -errno;
    if (n == 0)
      atomic_store_explicit(&c->eof, 1, memory_order_release);
    else
      c->rend += (size_t)n;
    publish_buffered(c);
  }
  return 0;
}

/* Copy the body of the frame whose header is at rpos into `dst` (len
 * bytes), consuming the frame.  Caller holds recv_mu. */
static int take_body(mh_conn_t *c, char *dst, size_t len) {
  c->rpos += HDR_SIZE;
  size_t have = c->rend - c->rpos;
  size_t first = have < len ? have : len;
  if (first) memcpy(dst, c->rbuf + c->rpos, first);
  c->rpos += first;
  if (c->rpos == c->rend) c->rpos = c->rend = 0;
  publish_buffered(c);
  /* The buffer is empty now, if the body went on: read the rest straight
   * into the caller's memory. */
  size_t got = first;
  while (got < len) {
    ssize_t n = read_some(c->fd, dst + got, len - got);
    if (n < 0) {
      c->broken = 1;
      return -errno;
    }
    if (n == 0) {
      /* The sender died or closed half-way: the message is dropped. */
      atomic_store_explicit(&c->eof, 1, memory_order_release);
      return MH_EEOF;
    }
    got += (size_t)n;
  }
  return 0;
}

static uint64_t header_at(const mh_conn_t *c) {
  uint64_t h;
  memcpy(&h, c->rbuf + c->rpos, sizeof h);
  return h;
}

int mh_conn_recv(mh_conn_t *conn, void *buf, size_t cap, size_t *len) {
  if (!conn || (!buf && cap > 0)) return MH_EINVAL;
  if (!(conn->mode & CAN_RECV)) return MH_EBADF;
  pthread_mutex_lock(&conn->recv_mu);
  int rc = conn->broken ? MH_EIO : need_header(conn);
  if (!rc) {
    uint64_t n = header_at(conn);
    if (len) *len = n > SIZE_MAX ? SIZE_MAX : (size_t)n;
    if (n > cap)
      rc = MH_EOVERFLOW;
    else
      rc = take_body(conn, buf, (size_t)n);
  }
  pthread_mutex_unlock(&conn->recv_mu);
  return rc;
}

int mh_conn_recv_alloc(mh_conn_t *conn, void **buf, size_t *len) {
  if (buf) *buf = NULL;
  if (!conn || !buf || !len) return MH_EINVAL;
  if (!(conn->mode & CAN_RECV)) return MH_EBADF;
  pthread_mutex_lock(&conn->recv_mu);
  int rc = conn->broken ? MH_EIO : need_header(conn);
  char *mem = NULL;
  if (!rc) {
    uint64_t n = header_at(conn);
    if (n >= SIZE_MAX) {
      rc = MH_ENOMEM;
    } else {
      mem = mh__malloc(n ? (size_t)n : 1);
      if (!mem) rc = MH_ENOMEM;
    }
    if (!rc) {
      rc = take_body(conn, mem, (size_t)n);
      if (!rc) {
        *buf = mem;
        *len = (size_t)n;
        mem = NULL;
      }
    }
  }
  pthread_mutex_unlock(&conn->recv_mu);
  mh__free(mem);
  return rc;
}

/* ---- polling and waiting ------------------------------------------------ */

/* Milliseconds left before the deadline, rounded up so that a wait never
 * ends just before it; -1 for forever, 0 for "only look". */
static int ms_left(const mh__deadline_t *dl) {
  if (dl->kind == 0) return 0;
  if (dl->kind == 2) return -1;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double left = (double)(dl->at.tv_sec - now.tv_sec) +
                (double)(dl->at.tv_nsec - now.tv_nsec) * 1e-9;
  if (left <= 0) return 0;
  if (left > 3600.0) return 3600000;
  return (int)ceil(left * 1000.0);
}

/* Ready without a system call: bytes buffered, or end of file seen. */
static int conn_ready_now(mh_conn_t *c) {
  return atomic_load_explicit(&c->buffered, memory_order_acquire) > 0 ||
         atomic_load_explicit(&c->eof, memory_order_acquire);
}

int mh_conn_poll(mh_conn_t *conn, double timeout) {
  if (!conn) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if (!(conn->mode & CAN_RECV)) return MH_EBADF;
  if (conn_ready_now(conn)) return 1;
  for (;;) {
    struct pollfd p = {conn->fd, POLLIN, 0};
    int ms = ms_left(&dl);
    int r = poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -errno;
    if (r == 0 && (ms == 0 || ms_left(&dl) == 0)) return 0;
  }
}

/* Stack room for the usual call; more items take a heap array. */
#define WAIT_STACK 64

int mh_wait(mh_waitable_t *items, size_t n, double timeout) {
  if (!items && n > 0) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if (n > (size_t)INT_MAX) return MH_EINVAL;
  struct pollfd stack[WAIT_STACK];
  struct pollfd *pfd = stack;
  if (n > WAIT_STACK) {
    pfd = mh__malloc(n * sizeof *pfd);
    if (!pfd) return MH_ENOMEM;
  }
  /* Check every item and look up its descriptor first; an item already
   * ready makes the system call a look (timeout 0). */
  int nready = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    mh_waitable_t *it = &items[i];
    it->ready = 0;
    int fd = -1;
    switch (it->kind) {
      case MH_WAIT_CONN:
        if (!it->conn || !(it->conn->mode & CAN_RECV)) {
          rc = MH_EINVAL;
          break;
        }
        fd = it->conn->fd;
        if (conn_ready_now(it->conn)) {
          it->ready = 1;
          nready++;
        }
        break;
      case MH_WAIT_PROCESS:
        if (!it->process) {
          rc = MH_EINVAL;
          break;
        }
        fd = mh_process_sentinel(it->process);
        if (fd < 0) rc = fd;
        break;
      case MH_WAIT_FD:
        fd = it->fd;
        if (fd < 0) rc = MH_EINVAL;
        break;
      default:
        rc = MH_EINVAL;
    }
    pfd[i].fd = fd;
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
  }
  while (!rc) {
    int ms = nready ? 0 : ms_left(&dl);
    int r = poll(pfd, (nfds_t)n, ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    for (size_t i = 0; i < n; i++) {
      if (pfd[i].revents & POLLNVAL) rc = MH_EBADF;
      if (!items[i].ready && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        items[i].ready = 1;
        nready++;
      }
    }
    if (rc || nready || ms == 0 || ms_left(&dl) == 0) break;
  }
  if (pfd != stack) mh__free(pfd);
  return rc ? rc : nready;
}
