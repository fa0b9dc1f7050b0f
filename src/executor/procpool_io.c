/* SPDX-License-Identifier: MIT */
/* procpool_io.c - the process pool's plumbing: socket messages with fds,
 * the registry of every pool's descriptors and mappings, and wake-ups.
 *
 * Invariants:
 *   - A registry entry holds fd + 1 (or a mapping's address), 0 when free;
 *     a descriptor leaves the registry before it is closed, so a number the
 *     program reuses is never closed by mistake in a new server.
 *   - The registry is lock-free: a freshly forked server reads it without
 *     taking a lock that another thread of the parent may have held at the
 *     fork.
 *   - Every wake-up here is the waker's half of a Dekker pair: the waiter
 *     stores its flag, then re-checks; the waker makes its change visible,
 *     then reads the flag (seq_cst on both sides).
 * Lock order: no locks.  Called by every role (dispatcher, callers, server,
 * workers); calls nothing else of the engine.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "procpool_internal.h"
#include "spin.h"

/* ==== descriptors and mappings of every pool ============================== */

/* A process of one pool must not keep another pool's descriptors open: a
 * copy of pool A's socket in pool B's server would keep A's server from
 * seeing its parent leave, and copies of A's memfds would keep A's memory
 * alive.  So every descriptor a pool makes in the parent is listed here,
 * and a new server closes those of other pools. */
#define PP_MAX_FDS 8192
static _Atomic int pp_fds[PP_MAX_FDS]; /* A: fd + 1, or 0 */

void mh__pp_io_fd_add(int fd) {
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int z = 0;
    if (atomic_compare_exchange_strong(&pp_fds[i], &z, fd + 1)) return;
  }
  /* Full: the descriptor is only inherited needlessly. */
}

void mh__pp_io_fd_close(int fd) {
  if (fd < 0) return;
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int v = fd + 1;
    if (atomic_compare_exchange_strong(&pp_fds[i], &v, 0)) break;
  }
  close(fd);
}

/* The same for shared mappings: a new server unmaps other pools' control
 * arenas and map windows, so its workers do not keep them alive after their
 * pool is freed.  An entry's length is stored before its address (1 marks
 * an entry being filled). */
#define PP_MAX_MAPS 1024
static struct {
  _Atomic uintptr_t addr; /* A: 0 free, 1 being filled, else the address */
  _Atomic size_t len;     /* A: valid once addr > 1 */
} pp_maps[PP_MAX_MAPS];

void mh__pp_io_maps_add(void *p, size_t len) {
  for (int i = 0; i < PP_MAX_MAPS; i++) {
    uintptr_t z = 0;
    if (atomic_compare_exchange_strong(&pp_maps[i].addr, &z, 1)) {
      atomic_store(&pp_maps[i].len, len);
      atomic_store(&pp_maps[i].addr, (uintptr_t)p);
      return;
    }
  }
  /* Full: the mapping is only inherited needlessly. */
}

void mh__pp_io_maps_del(void *p) {
  for (int i = 0; i < PP_MAX_MAPS; i++) {
    uintptr_t v = (uintptr_t)p;
    if (atomic_compare_exchange_strong(&pp_maps[i].addr, &v, 0)) return;
  }
}

void mh__pp_io_drop_others(int keep1, int keep2, const void *keep_a,
                           const void *keep_b) {
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int fd = atomic_load(&pp_fds[i]) - 1;
    if (fd >= 0 && fd != keep1 && fd != keep2) close(fd);
  }
  for (int i = 0; i < PP_MAX_MAPS; i++) {
    uintptr_t a = atomic_load(&pp_maps[i].addr);
    if (a > 1 && a != (uintptr_t)keep_a && a != (uintptr_t)keep_b)
      munmap((void *)a, atomic_load(&pp_maps[i].len));
  }
}

/* ==== messages on the server socket ======================================= */

/* One message and room for one descriptor, as sendmsg/recvmsg want them.
 * (Filled in place: msg_iov and msg_control point into the record.) */
typedef struct pp_io_pkt {
  struct iovec iov;
  struct msghdr mh;
  union { /* last: clang folds CMSG_SPACE only as an extension */
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
} pp_io_pkt_t;

static void pp_io_pkt_init(pp_io_pkt_t *p, pp_msg_t *m, int with_fd) {
  memset(p, 0, sizeof *p);
  p->iov.iov_base = m;
  p->iov.iov_len = sizeof *m;
  p->mh.msg_iov = &p->iov;
  p->mh.msg_iovlen = 1;
  if (with_fd) {
    p->mh.msg_control = p->u.buf;
    p->mh.msg_controllen = sizeof p->u.buf;
  }
}

int mh__pp_io_send(int sock, const pp_msg_t *m, int fd) {
  return mh__pp_io_send_flags(sock, m, fd, 0);
}

int mh__pp_io_send_flags(int sock, const pp_msg_t *m, int fd, int flags) {
  pp_io_pkt_t p;
  pp_io_pkt_init(&p, (pp_msg_t *)(uintptr_t)m, fd >= 0);
  if (fd >= 0) {
    struct cmsghdr *c = CMSG_FIRSTHDR(&p.mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t r = sendmsg(sock, &p.mh, MSG_NOSIGNAL | flags);
    if (r == (ssize_t)sizeof *m) return 0;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return MH_EAGAIN;
    return r < 0 ? -errno : MH_EIO;
  }
}

int mh__pp_io_recv(int sock, pp_msg_t *m, int *fd, int flags) {
  pp_io_pkt_t p;
  pp_io_pkt_init(&p, m, 1);
  if (fd) *fd = -1;
  for (;;) {
    ssize_t r = recvmsg(sock, &p.mh, flags | MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno == EWOULDBLOCK ? MH_EAGAIN : -errno;
    if (r == 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&p.mh); c; c = CMSG_NXTHDR(&p.mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int got;
        memcpy(&got, CMSG_DATA(c), sizeof got);
        if (fd && *fd < 0)
          *fd = got;
        else
          close(got);
      }
    }
    return r == (ssize_t)sizeof *m ? 1 : MH_EIO;
  }
}

/* ==== wake-ups ============================================================ */

void mh__pp_io_wake_fd(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void mh__pp_io_wake_disp(mh__pp_t *pp, int always) {
  if (always || atomic_load(&pp->ctl->parent_sleeping)) mh__pp_io_wake_fd(pp->evfd);
}

void mh__pp_io_publish(mh__pp_t *pp, int slot) {
  pp_slot_t *s = &pp->ctl->slots[slot];
  atomic_store(&s->head, pp->wk[slot].head);
  if (atomic_load(&s->wsleep)) mh__futex_wake(&s->head, 1, MH__FUTEX_SHARED);
}

void mh__pp_io_map_wake_workers(pp_map_sh_t *m) {
  /* Dekker with the worker's sleep (wwait++, then look at the slots): the
   * slots were made READY with release stores, which a later load may pass
   * (a store buffer); the fence keeps our look at wwait after them, or a
   * worker could miss both the slot and the wake-up and sleep for good. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&m->wwait)) mh__pp_io_map_bump_workers(m);
}

void mh__pp_io_map_bump_workers(pp_map_sh_t *m) {
  atomic_fetch_add(&m->ready_seq, 1);
  mh__futex_wake(&m->ready_seq, INT_MAX, MH__FUTEX_SHARED);
}

void mh__pp_io_map_wake_parent(pp_map_sh_t *m) {
  atomic_fetch_add(&m->done_seq, 1);
  mh__futex_wake(&m->done_seq, INT_MAX, MH__FUTEX_SHARED);
}
