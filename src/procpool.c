/* procpool.c - worker processes from a fork server, fed through shared memory.
 *
 * Processes:
 *   parent   the program.  One dispatcher thread per pool does all the pool's
 *            work: it forks the fork server, feeds jobs to workers, collects
 *            results, notices deaths and asks for replacements.
 *   server   forked once, by the dispatcher thread, when the pool is made.
 *            Single-threaded; it only forks workers on request, kills them on
 *            request and reports each worker's exit status.  So workers are
 *            never forked from the multi-threaded parent after the pool
 *            exists.  PR_SET_PDEATHSIG(SIGKILL) is tied to the dispatcher
 *            thread, which lives exactly as long as the pool.
 *   workers  children of the server (PR_SET_PDEATHSIG too), so they die with
 *            it, and it dies with the parent.  They ignore SIGINT.
 *
 * Shared memory:
 *   ctl      one anonymous MAP_SHARED arena made before the server is forked
 *            (so every worker inherits it): per worker slot a ring of
 *            PP_RING entries, the ring's head (written by the parent) and
 *            tail (written by the worker), and a futex word to sleep on.
 *   data     one memfd per slot, passed to the server with SCM_RIGHTS and
 *            inherited by that slot's worker; the parent grows it with
 *            ftruncate when a chunk does not fit, the worker remaps it when
 *            an entry lies beyond its mapping.  Nothing is named in /dev/shm.
 *            Each entry's bytes (inputs, outputs, item statuses) are carved
 *            from the slot's data as a circular buffer: entries finish in
 *            ring order, so space is released in the order it was taken.
 *
 * Hand-off without a system call per item: the parent publishes entries by
 * a release store of `head`; the worker spins briefly on it before sleeping
 * on the futex, and the parent only calls FUTEX_WAKE when `wsleep` says the
 * worker sleeps.  The worker publishes each finished item in the entry's
 * `progress` and each finished entry in `tail`; it writes the parent's
 * eventfd only when `parent_sleeping` is set.  Both sleep protocols are
 * Dekker-style: store own flag, full fence (seq_cst), re-check the other side.
 *
 * Crash accounting: `progress` tells which items of an entry were finished
 * (they keep their results), which one was running when the worker died (it
 * fails with MH_EWORKERDIED or is re-run when retries allow) and which were
 * never started (re-queued).
 *
 * Locking: `mu` guards the submission queue (qh/qt/nq), the record free list
 * and the shutdown flags (`shut` is also readable atomically).  Everything
 * else of the parent side (wk[], the private queue, timers) belongs to the
 * dispatcher thread alone.  Hooks are called on the dispatcher thread with
 * no lock held.  `join_mu` serialises joining the dispatcher.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "procpool.h"

#define PP_RING 16u /* entries in a worker's ring */
/* Jobs handed to one worker ahead of time.  A handed job counts as running
 * (it can no longer be cancelled, as in ProcessPoolExecutor's call queue),
 * so the depth stays small; 4 covers the generic map's window of 4 chunks
 * per worker. */
#define PP_DEPTH 4u
#define PP_DATA_INIT (256u << 10) /* first size of a slot's data memfd */
/* Seconds to poll before sleeping: a worker waiting for work, the
 * dispatcher while entries are in flight, the dispatcher when idle.  After a
 * few pauses the polling yields the CPU, so that on a loaded machine it
 * hands the core to the process it waits for instead of burning it. */
#ifndef PP_SPIN_WORKER /* (overridable, to tune on another machine) */
#define PP_SPIN_WORKER 200e-6
#endif
#ifndef PP_SPIN_BUSY
#define PP_SPIN_BUSY 1e-3
#endif
#ifndef PP_SPIN_MIN /* the shortest the adaptive busy poll becomes */
#define PP_SPIN_MIN 20e-6
#endif
#ifndef PP_SPIN_IDLE
#define PP_SPIN_IDLE 50e-6
#endif
#define PP_ALIGN 64u

#if defined(__x86_64__) || defined(__i386__)
#define PP_RELAX() __builtin_ia32_pause()
#else
#define PP_RELAX() ((void)0)
#endif

/* ---- shared layout ------------------------------------------------------ */

enum { E_QUEUED = 0, E_TAKEN = 1, E_REVOKED = 2 };
enum { K_RUN = 1, K_EXIT = 2 };

typedef struct pp_entry {
  _Atomic uint32_t claim; /* QUEUED -> TAKEN (worker) or REVOKED (parent) */
  uint32_t kind;
  mh_task_fn fn;
  void *ctx;
  uint64_t first, count; /* run items first..count-1 */
  uint64_t in_off, in_size, out_off, out_size, st_off;
  _Atomic uint64_t progress; /* items < progress are finished */
  _Atomic uint64_t started;  /* items < started were begun */
} pp_entry_t;

typedef struct pp_slot {
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t head; /* parent: published */
  _Atomic uint32_t wsleep;                        /* worker sleeps on head */
  _Atomic uint64_t data_size;                     /* size of the memfd */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t tail; /* worker: finished */
  _Alignas(MH__CACHE_LINE) pp_entry_t ring[PP_RING];
} pp_slot_t;

typedef struct pp_ctl {
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t parent_sleeping;
  _Alignas(MH__CACHE_LINE) pp_slot_t slots[];
} pp_ctl_t;

/* Messages on the parent <-> server socket (SOCK_SEQPACKET). */
enum { M_SPAWN = 1, M_KILL, M_QUIT, M_SPAWNED, M_EXITED };
typedef struct pp_msg {
  int32_t op, slot, pid, arg; /* arg: signal, or wait status, or -errno */
} pp_msg_t;

/* ---- parent-side state -------------------------------------------------- */

typedef struct pp_job pp_job_t;
struct pp_job {
  pp_job_t *next;
  void *user;
  const mh__task_t *t;
  size_t next_item; /* first item not finished yet */
  int code;         /* code of the lowest failing item so far */
  int began;        /* begin() said yes and no requeue since */
  int tries;        /* deaths while running item next_item */
  int died, died_pid, died_exit;
};

enum { W_NONE = 0, W_SPAWNING, W_LIVE, W_DEAD };

typedef struct pp_wk {
  int state;
  _Atomic int pid; /* read by mh__pp_worker_pids from other threads */
  int data_fd;
  char *data;
  size_t cap;
  size_t dhead, dtail; /* circular allocation in data */
  uint32_t head, coll; /* published / collected entries */
  pp_job_t *job[PP_RING];
  size_t off[PP_RING], len[PP_RING];
  unsigned assigned; /* chunks given to this process */
  int exit_sent;
  double kill_at;    /* SIGKILL after SIGTERM, 0 = none */
  double respawn_at; /* retry a failed spawn, 0 = none */
} pp_wk_t;

struct mh__pp {
  mh__pp_config_t cfg;
  int n;
  pp_ctl_t *ctl;
  size_t ctl_len;
  int evfd;
  int srv;            /* parent end of the server socket, -1 when closed */
  _Atomic int srv_pid;
  int *srv_pids;      /* the server's own table (used in its copy only) */
  pp_wk_t *wk;

  pthread_t thread;
  int joined;
  pthread_mutex_t join_mu;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* start handshake */
  int start_done, start_rc;
  pp_job_t *qh, *qt, *freelist;
  _Atomic size_t nq;
  _Atomic int shut; /* 1 = shutting, 3 = shutting and cancelling */

  /* dispatcher only */
  pp_job_t *ph, *pt, *pfree;
  unsigned rr;
  int cancelling, exits_sent, broken;
  int bad_starts; /* workers in a row that died before doing anything */
  double exit_deadline;
};

static void pp_worker(mh__pp_t *pp, int slot, int dfd, pid_t server)
    __attribute__((noreturn));

/* ---- descriptors of every pool ------------------------------------------ */

/* A process of one pool must not keep another pool's descriptors open: a
 * copy of pool A's socket in pool B's server would keep A's server from
 * seeing its parent leave, and copies of A's memfds would keep A's memory
 * alive.  So every descriptor a pool makes in the parent is listed here
 * (lock-free: a freshly forked server reads the list without taking a lock
 * another thread might have held), and a new server closes those of other
 * pools.  A descriptor leaves the list before it is closed, so a number the
 * program reuses is never closed by mistake. */
#define PP_MAX_FDS 8192
static _Atomic int pp_fds[PP_MAX_FDS]; /* fd + 1, or 0 */

static void pp_fd_add(int fd) {
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int z = 0;
    if (atomic_compare_exchange_strong(&pp_fds[i], &z, fd + 1)) return;
  }
  /* Full: the descriptor is only inherited needlessly. */
}

static void pp_fd_close(int fd) {
  if (fd < 0) return;
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int v = fd + 1;
    if (atomic_compare_exchange_strong(&pp_fds[i], &v, 0)) break;
  }
  close(fd);
}

/* ---- small system helpers ---------------------------------------------- */

static void pp_wake_fd(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void pp_futex_wait(_Atomic uint32_t *addr, uint32_t val) {
  syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void pp_futex_wake(_Atomic uint32_t *addr) {
  syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static size_t pp_round(size_t n) { return (n + PP_ALIGN - 1) & ~(size_t)(PP_ALIGN - 1); }

/* Bytes a job's remaining items need in a slot's data; 0 on overflow. */
static size_t pp_job_len(const mh__task_t *t, size_t first) {
  size_t n = t->count - first, a, b, c;
  if (__builtin_mul_overflow(n, t->in_size, &a) ||
      __builtin_mul_overflow(n, t->out_size, &b) ||
      __builtin_mul_overflow(n, sizeof(int), &c))
    return 0;
  if (a > SIZE_MAX / 4 || b > SIZE_MAX / 4 || c > SIZE_MAX / 4) return 0;
  return pp_round(a) + pp_round(b) + pp_round(c);
}

static int pp_send(int sock, const pp_msg_t *m, int fd) {
  struct iovec iov = {.iov_base = (void *)(uintptr_t)m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (r == (ssize_t)sizeof *m) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -errno : MH_EIO;
  }
}

/* Receive one message (and an fd if one came).  Returns 1, 0 at EOF, or a
 * negative code (MH_EAGAIN when non-blocking and nothing is there). */
static int pp_recv(int sock, pp_msg_t *m, int *fd, int flags) {
  struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  if (fd) *fd = -1;
  for (;;) {
    ssize_t r = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno == EWOULDBLOCK ? MH_EAGAIN : -errno;
    if (r == 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
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

/* In a freshly forked server or worker: signals the parent may have set up
 * must not change how we end.  SIGINT is ignored (Ctrl-C is the parent's to
 * handle); crash and termination signals get their default action so that a
 * crash is reported as the signal (a sanitizer's or the program's handler
 * would otherwise turn it into an exit status). */
static void pp_child_signals(void) {
  static const int dfl[] = {SIGTERM, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                            SIGABRT, SIGCHLD, SIGPIPE, SIGHUP, SIGQUIT};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++)
    sigaction(dfl[i], &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGINT, &sa, NULL);
}

/* ---- the fork server ---------------------------------------------------- */

/* Runs in the server process: only system calls, no locks, no allocation. */
static void pp_server(mh__pp_t *pp, int sock, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0); /* the parent died before prctl */
  pp_child_signals();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, NULL);
  for (int i = 0; i < PP_MAX_FDS; i++) {
    int fd = atomic_load(&pp_fds[i]) - 1;
    if (fd >= 0 && fd != pp->evfd && fd != sock) close(fd);
  }
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) _exit(127);
  int *pids = pp->srv_pids;
  for (;;) {
    struct pollfd p[2] = {{.fd = sock, .events = POLLIN},
                          {.fd = sfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int st;
      pid_t w;
      while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
        pp_msg_t m = {M_EXITED, -1, (int32_t)w, st};
        for (int i = 0; i < pp->n; i++)
          if (pids[i] == w) {
            pids[i] = 0;
            m.slot = i;
          }
        pp_send(sock, &m, -1);
      }
    }
    if (p[0].revents) {
      pp_msg_t m;
      int fd;
      int r = pp_recv(sock, &m, &fd, 0);
      if (r == MH_EAGAIN) continue;
      if (r <= 0 || m.op == M_QUIT) break; /* the parent is done, or died */
      if (m.op == M_SPAWN && m.slot >= 0 && m.slot < pp->n && fd >= 0) {
        pid_t me = getpid();
        pid_t pid = fork();
        if (pid == 0) {
          close(sock);
          close(sfd);
          pp_worker(pp, m.slot, fd, me);
        }
        int err = errno;
        close(fd);
        if (pid > 0) pids[m.slot] = pid;
        pp_msg_t rep = {M_SPAWNED, m.slot, pid > 0 ? pid : 0,
                        pid > 0 ? 0 : -err};
        pp_send(sock, &rep, -1);
      } else if (m.op == M_KILL && m.slot >= 0 && m.slot < pp->n) {
        /* Only a child not yet reaped is signalled, so a recycled pid is
         * never hit. */
        if (m.pid > 0 && pids[m.slot] == m.pid) kill(m.pid, m.arg);
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  for (int i = 0; i < pp->n; i++)
    if (pids[i] > 0) kill(pids[i], SIGKILL);
  for (;;) {
    pid_t w = waitpid(-1, NULL, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
  }
  _exit(0);
}

/* ---- the worker --------------------------------------------------------- */

static void pp_worker_exit(int status) {
  /* Hand over what tasks printed, as a normal exit would, without running
   * the parent program's atexit handlers. */
  fflush(NULL);
  _exit(status);
}

static void pp_worker(mh__pp_t *pp, int slot, int dfd, pid_t server) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != server) _exit(0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Output the parent had buffered when the server was forked is the
   * parent's to print, not ours. */
  __fpurge(stdout);
  __fpurge(stderr);
  pp_slot_t *s = &pp->ctl->slots[slot];
  _Atomic uint32_t *psleep = &pp->ctl->parent_sleeping;
  int evfd = pp->evfd;
  char *data = NULL;
  size_t mapped = 0;
  int init = 0;
  if (pp->cfg.initializer) init = pp->cfg.initializer(pp->cfg.initarg);
  unsigned max = (unsigned)pp->cfg.max_tasks_per_child, done = 0;
  uint32_t tail = atomic_load(&s->tail);
  for (;;) {
    /* Wait for an entry: spin a little, then sleep on the futex. */
    if (atomic_load_explicit(&s->head, memory_order_acquire) == tail) {
      double t0 = mh__now();
      for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&s->head, memory_order_acquire) != tail)
          break;
        if (i < 64) {
          PP_RELAX();
          continue;
        }
        sched_yield();
        if ((i & 7) == 0 && mh__now() - t0 > PP_SPIN_WORKER) {
          atomic_store(&s->wsleep, 1);
          if (atomic_load(&s->head) == tail) pp_futex_wait(&s->head, tail);
          atomic_store(&s->wsleep, 0);
        }
      }
    }
    pp_entry_t *e = &s->ring[tail % PP_RING];
    if (e->kind == K_EXIT) pp_worker_exit(0);
    uint32_t q = E_QUEUED;
    int took = atomic_compare_exchange_strong(&e->claim, &q, E_TAKEN);
    if (took) {
      uint64_t n = e->count - e->first;
      uint64_t need = e->st_off + n * sizeof(int);
      if (need > mapped) {
        size_t sz = (size_t)atomic_load_explicit(&s->data_size,
                                                 memory_order_acquire);
        if (data) munmap(data, mapped);
        data = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
        if (data == MAP_FAILED) _exit(126);
        mapped = sz;
      }
      const char *in = e->in_size ? data + e->in_off : NULL;
      char *out = e->out_size ? data + e->out_off : NULL;
      int *st = (int *)(void *)(data + e->st_off);
      size_t isz = (size_t)e->in_size, osz = (size_t)e->out_size;
      mh_task_fn fn = e->fn;
      void *ctx = e->ctx;
      for (uint64_t i = 0; i < n; i++) {
        atomic_store_explicit(&e->started, e->first + i + 1,
                              memory_order_relaxed);
        st[i] = init ? init
                     : fn(in ? in + i * isz : NULL, isz,
                          out ? out + i * osz : NULL, osz, ctx);
        atomic_store_explicit(&e->progress, e->first + i + 1,
                              memory_order_release);
      }
    }
    atomic_store(&s->tail, ++tail);
    if (atomic_load(psleep)) pp_wake_fd(evfd);
    if (took && max && ++done >= max) pp_worker_exit(0);
  }
}

/* ---- dispatcher: jobs --------------------------------------------------- */

static void pp_recycle(mh__pp_t *pp, pp_job_t *j) {
  j->next = pp->pfree;
  pp->pfree = j;
}

static void pp_push_front(mh__pp_t *pp, pp_job_t *first, pp_job_t *last) {
  last->next = pp->ph;
  pp->ph = first;
  if (!pp->pt) pp->pt = last;
}

/* Copy the results of items [e->first, upto) of job j out of w's data. */
static void pp_take(pp_wk_t *w, const pp_entry_t *e, pp_job_t *j,
                    uint64_t upto) {
  const mh__task_t *t = j->t;
  size_t first = (size_t)e->first, n = (size_t)(upto - e->first);
  if (upto <= e->first) return;
  if (t->out_size && t->out)
    memcpy((char *)t->out + first * t->out_size, w->data + e->out_off,
           n * t->out_size);
  const int *st = (const int *)(const void *)(w->data + e->st_off);
  for (size_t i = 0; i < n; i++) {
    if (t->statuses) t->statuses[first + i] = st[i];
    if (!j->code && st[i]) j->code = st[i];
  }
  j->next_item = (size_t)upto;
}

static void pp_finish(mh__pp_t *pp, pp_job_t *j) {
  pp->cfg.hooks.finish(pp->cfg.hooks.arg, j->user, j->code,
                       j->died ? j->died_pid : 0, j->died_exit);
  pp_recycle(pp, j);
}

/* Release the data of the oldest entry of w (it was just collected). */
static void pp_release(pp_wk_t *w) {
  w->job[w->coll % PP_RING] = NULL;
  w->coll++;
  if (w->coll == w->head)
    w->dhead = w->dtail = 0;
  else
    w->dtail = w->off[w->coll % PP_RING];
}

static int pp_collect(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  pp_slot_t *s = &pp->ctl->slots[slot];
  uint32_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
  int did = 0;
  while (w->coll != tail && w->coll != w->head) {
    unsigned idx = w->coll % PP_RING;
    pp_job_t *j = w->job[idx];
    if (j) {
      pp_entry_t *e = &s->ring[idx];
      pp_take(w, e, j, e->count);
      pp_finish(pp, j);
    }
    pp_release(w);
    did++;
  }
  return did;
}

/* Circular allocation of len bytes in w's data. */
static int pp_fit(pp_wk_t *w, size_t len, size_t *off) {
  if (w->head == w->coll) {
    w->dhead = w->dtail = 0;
    *off = 0;
    return len <= w->cap;
  }
  if (w->dhead >= w->dtail) {
    if (w->cap - w->dhead >= len) {
      *off = w->dhead;
      return 1;
    }
    if (w->dtail > len) {
      *off = 0;
      return 1;
    }
    return 0;
  }
  if (w->dtail - w->dhead > len) {
    *off = w->dhead;
    return 1;
  }
  return 0;
}

static int pp_grow(mh__pp_t *pp, int slot, size_t len) {
  pp_wk_t *w = &pp->wk[slot];
  size_t cap = w->cap;
  while (cap < len) {
    if (cap > SIZE_MAX / 2) return MH_ENOMEM;
    cap *= 2;
  }
  if (ftruncate(w->data_fd, (off_t)cap) < 0) return MH_ENOMEM;
  void *p = mremap(w->data, w->cap, cap, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    if (ftruncate(w->data_fd, (off_t)w->cap) < 0) {
    }
    return MH_ENOMEM;
  }
  w->data = p;
  w->cap = cap;
  atomic_store_explicit(&pp->ctl->slots[slot].data_size, cap,
                        memory_order_release);
  return 0;
}

static void pp_publish(mh__pp_t *pp, int slot) {
  pp_slot_t *s = &pp->ctl->slots[slot];
  atomic_store(&s->head, pp->wk[slot].head);
  if (atomic_load(&s->wsleep)) pp_futex_wake(&s->head);
}

static int pp_can_take(const mh__pp_t *pp, const pp_wk_t *w) {
  return w->state == W_LIVE && !w->exit_sent && w->head - w->coll < PP_DEPTH &&
         (!pp->cfg.max_tasks_per_child ||
          w->assigned < (unsigned)pp->cfg.max_tasks_per_child);
}

/* Hand queued jobs to workers with room, round robin.  Returns how many. */
static int pp_assign(mh__pp_t *pp) {
  int did = 0;
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    const mh__task_t *t = j->t;
    size_t len = pp_job_len(t, j->next_item), off = 0;
    int slot = -1, empty = -1;
    for (int k = 0; k < pp->n; k++) {
      int i = (int)((pp->rr + (unsigned)k) % (unsigned)pp->n);
      pp_wk_t *w = &pp->wk[i];
      if (!pp_can_take(pp, w)) continue;
      if (w->head == w->coll && empty < 0) empty = i;
      if (pp_fit(w, len, &off)) {
        slot = i;
        break;
      }
    }
    if (slot < 0 && empty >= 0) {
      /* Too big for every worker with entries in flight: grow an idle one. */
      int rc = pp_grow(pp, empty, len);
      if (rc < 0) {
        pp->ph = j->next;
        if (!pp->ph) pp->pt = NULL;
        if (j->began || pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
          j->code = rc;
          pp_finish(pp, j);
        } else {
          pp_recycle(pp, j);
        }
        did++;
        continue;
      }
      slot = empty;
      off = 0;
      pp->wk[slot].dhead = pp->wk[slot].dtail = 0;
    }
    if (slot < 0) break;
    pp->ph = j->next;
    if (!pp->ph) pp->pt = NULL;
    did++;
    if (!j->began) {
      if (!pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
        pp_recycle(pp, j);
        continue;
      }
      j->began = 1;
    }
    pp_wk_t *w = &pp->wk[slot];
    pp_slot_t *s = &pp->ctl->slots[slot];
    unsigned idx = w->head % PP_RING;
    pp_entry_t *e = &s->ring[idx];
    size_t first = j->next_item, n = t->count - first;
    e->kind = K_RUN;
    e->fn = t->fn;
    e->ctx = t->ctx;
    e->first = first;
    e->count = t->count;
    e->in_size = t->in_size;
    e->out_size = t->out_size;
    e->in_off = off;
    e->out_off = off + pp_round(n * t->in_size);
    e->st_off = e->out_off + pp_round(n * t->out_size);
    if (n && t->in_size)
      memcpy(w->data + off, (const char *)t->in + first * t->in_size,
             n * t->in_size);
    atomic_store_explicit(&e->progress, first, memory_order_relaxed);
    atomic_store_explicit(&e->started, first, memory_order_relaxed);
    atomic_store_explicit(&e->claim, E_QUEUED, memory_order_relaxed);
    w->job[idx] = j;
    w->off[idx] = off;
    w->len[idx] = len;
    w->dhead = off + len;
    w->head++;
    w->assigned++;
    pp_publish(pp, slot);
    pp->rr = (unsigned)slot + 1;
  }
  return did;
}

/* ---- dispatcher: workers ------------------------------------------------ */

static int pp_spawn(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  pp_slot_t *s = &pp->ctl->slots[slot];
  if (w->data_fd < 0) {
    int fd = memfd_create("manyhands-pool", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    pp_fd_add(fd);
    if (ftruncate(fd, PP_DATA_INIT) < 0) {
      int err = -errno;
      pp_fd_close(fd);
      return err;
    }
    void *p = mmap(NULL, PP_DATA_INIT, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      pp_fd_close(fd);
      return MH_ENOMEM;
    }
    w->data_fd = fd;
    w->data = p;
    w->cap = PP_DATA_INIT;
    atomic_store(&s->data_size, w->cap);
  }
  atomic_store(&s->head, 0);
  atomic_store(&s->tail, 0);
  atomic_store(&s->wsleep, 0);
  w->head = w->coll = 0;
  w->dhead = w->dtail = 0;
  w->assigned = 0;
  w->exit_sent = 0;
  w->kill_at = 0;
  w->respawn_at = 0;
  pp_msg_t m = {M_SPAWN, slot, 0, 0};
  int rc = pp_send(pp->srv, &m, w->data_fd);
  if (rc < 0) return rc;
  w->state = W_SPAWNING;
  return 0;
}

static void pp_kill(mh__pp_t *pp, int slot, int sig) {
  pp_wk_t *w = &pp->wk[slot];
  int pid = atomic_load(&w->pid);
  if (pid <= 0 || pp->srv < 0) return;
  pp_msg_t m = {M_KILL, slot, pid, sig};
  pp_send(pp->srv, &m, -1);
}

static void pp_send_exit(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  if (w->exit_sent || w->head - w->coll >= PP_RING) return;
  unsigned idx = w->head % PP_RING;
  pp_entry_t *e = &pp->ctl->slots[slot].ring[idx];
  e->kind = K_EXIT;
  w->job[idx] = NULL;
  w->off[idx] = w->dhead;
  w->len[idx] = 0;
  w->head++;
  w->exit_sent = 1;
  pp_publish(pp, slot);
}

static void pp_broken(mh__pp_t *pp);

/* The worker of `slot` ended with wait status st: settle what it held. */
static void pp_exited(mh__pp_t *pp, int slot, int pid, int st) {
  pp_wk_t *w = &pp->wk[slot];
  if (w->state != W_LIVE || atomic_load(&w->pid) != pid) return;
  int exitcode = WIFEXITED(st) ? WEXITSTATUS(st)
                 : WIFSIGNALED(st) ? -WTERMSIG(st)
                                   : st;
  pp_collect(pp, slot);
  pp_slot_t *s = &pp->ctl->slots[slot];
  /* A worker that dies before finishing or even starting anything (its
   * initializer crashes, say) would be replaced forever; after a few such
   * deaths in a row the pool is declared broken instead of hanging. */
  int productive = w->coll > 0;
  for (uint32_t i = w->coll; i != w->head; i++)
    productive |= atomic_load(&s->ring[i % PP_RING].claim) == E_TAKEN;
  pp->bad_starts = productive ? 0 : pp->bad_starts + 1;
  pp_job_t *rh = NULL, *rt = NULL; /* jobs to re-queue, in order */
  for (uint32_t i = w->coll; i != w->head; i++) {
    unsigned idx = i % PP_RING;
    pp_job_t *j = w->job[idx];
    w->job[idx] = NULL;
    if (!j) continue;
    pp_entry_t *e = &s->ring[idx];
    int requeue = 0;
    if (atomic_load(&e->claim) == E_TAKEN) {
      uint64_t prog = atomic_load_explicit(&e->progress, memory_order_acquire);
      pp_take(w, e, j, prog);
      if (prog < e->count && atomic_load(&e->started) <= prog) {
        requeue = 1; /* died between two items: none of the rest began */
      } else if (prog < e->count) {
        size_t d = (size_t)prog;
        if (pp->cancelling) {
          for (size_t k = d; k < j->t->count; k++)
            if (j->t->statuses) j->t->statuses[k] = MH_ECANCELED;
          if (!j->code) j->code = MH_ECANCELED;
          j->next_item = j->t->count;
        } else if (j->tries < pp->cfg.retries) {
          j->tries++;
          j->next_item = d;
          requeue = 1;
        } else {
          if (j->t->statuses) j->t->statuses[d] = MH_EWORKERDIED;
          if (!j->code) j->code = MH_EWORKERDIED;
          if (!j->died) {
            j->died = 1;
            j->died_pid = pid;
            j->died_exit = exitcode;
          }
          j->tries = 0;
          j->next_item = d + 1;
          requeue = j->next_item < j->t->count;
        }
      }
    } else {
      requeue = 1; /* never started */
    }
    if (requeue && pp->cancelling && j->next_item > 0) {
      /* Part of it ran: the rest is cancelled item by item. */
      for (size_t k = j->next_item; k < j->t->count; k++)
        if (j->t->statuses) j->t->statuses[k] = MH_ECANCELED;
      if (!j->code) j->code = MH_ECANCELED;
      pp_finish(pp, j);
    } else if (requeue && pp->cancelling) {
      pp->cfg.hooks.requeue(pp->cfg.hooks.arg, j->user);
      pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, 0);
      pp_recycle(pp, j);
    } else if (requeue) {
      pp->cfg.hooks.requeue(pp->cfg.hooks.arg, j->user);
      j->began = 0;
      j->next = NULL;
      if (rt)
        rt->next = j;
      else
        rh = j;
      rt = j;
    } else {
      pp_finish(pp, j);
    }
  }
  if (rh) pp_push_front(pp, rh, rt);
  w->coll = w->head;
  w->dhead = w->dtail = 0;
  w->state = W_DEAD;
  atomic_store(&w->pid, 0);
  if (pp->bad_starts >= 3 + pp->n && !pp->broken) {
    pp_broken(pp);
    return;
  }
  if (!pp->cancelling && !pp->exits_sent && !pp->broken) {
    if (pp_spawn(pp, slot) < 0) w->respawn_at = mh__now() + 0.05;
  }
}

/* The server is gone (killed from outside): the workers die with it.  Fail
 * everything, now and later, rather than hang. */
static void pp_broken(mh__pp_t *pp) {
  pp->broken = 1;
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    int pid = atomic_load(&w->pid);
    if (w->state == W_LIVE) {
      int saved = pp->cfg.retries;
      pp->cfg.retries = 0;
      pp_exited(pp, i, pid, SIGKILL); /* wait status of "killed by SIGKILL" */
      pp->cfg.retries = saved;
    }
    w->state = W_DEAD;
    atomic_store(&w->pid, 0);
  }
  pp_fd_close(pp->srv);
  pp->srv = -1;
}

static void pp_fail_queue(mh__pp_t *pp) {
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    pp->ph = j->next;
    if (j->began || pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
      if (!j->code) j->code = MH_EWORKERDIED;
      pp_finish(pp, j);
    } else {
      pp_recycle(pp, j);
    }
  }
  pp->pt = NULL;
}

/* Read what the server has to say.  Returns how many messages. */
static int pp_server_msgs(mh__pp_t *pp, int block) {
  int did = 0;
  while (pp->srv >= 0) {
    pp_msg_t m;
    int r = pp_recv(pp->srv, &m, NULL, block && !did ? 0 : MSG_DONTWAIT);
    if (r == MH_EAGAIN) break;
    if (r <= 0) {
      pp_broken(pp);
      return did + 1;
    }
    did++;
    if (m.slot < 0 || m.slot >= pp->n) continue;
    pp_wk_t *w = &pp->wk[m.slot];
    if (m.op == M_SPAWNED) {
      if (m.pid > 0) {
        atomic_store(&w->pid, m.pid);
        w->state = W_LIVE;
        if (pp->exits_sent) pp_send_exit(pp, m.slot);
      } else {
        w->state = W_DEAD;
        w->respawn_at = mh__now() + 0.05;
      }
    } else if (m.op == M_EXITED) {
      pp_exited(pp, m.slot, m.pid, m.arg);
    }
  }
  return did;
}

static int pp_fork_server(mh__pp_t *pp) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return -errno;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    close(sv[0]);
    close(sv[1]);
    return err == MH_ENOMEM ? MH_EAGAIN : err;
  }
  if (pid == 0) {
    close(sv[0]);
    pp_server(pp, sv[1], parent);
  }
  close(sv[1]);
  pp_fd_add(sv[0]);
  pp->srv = sv[0];
  atomic_store(&pp->srv_pid, pid);
  return 0;
}

static void pp_stop_server(mh__pp_t *pp) {
  if (pp->srv >= 0) {
    /* Say so rather than rely on EOF alone: a process forked by the program
     * in the meantime may hold a copy of our end. */
    pp_msg_t m = {M_QUIT, 0, 0, 0};
    pp_send(pp->srv, &m, -1);
  }
  pp_fd_close(pp->srv);
  pp->srv = -1;
  pid_t pid = atomic_load(&pp->srv_pid);
  if (pid > 0) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  atomic_store(&pp->srv_pid, 0);
}

/* Fork the server and the first workers; wait until each is running. */
static int pp_boot(mh__pp_t *pp) {
  int rc = pp_fork_server(pp);
  if (rc < 0) return rc;
  for (int i = 0; i < pp->n && rc == 0; i++) rc = pp_spawn(pp, i);
  for (;;) {
    int waiting = 0, failed = 0;
    for (int i = 0; i < pp->n; i++) {
      waiting += pp->wk[i].state == W_SPAWNING;
      failed += pp->wk[i].state == W_DEAD;
    }
    if (failed || pp->broken) rc = MH_EAGAIN;
    if (rc < 0 || !waiting) break;
    pp_server_msgs(pp, 1);
  }
  if (rc < 0) {
    pp_stop_server(pp); /* the server kills and reaps its workers */
    for (int i = 0; i < pp->n; i++) pp->wk[i].state = W_DEAD;
  }
  return rc;
}

/* ---- dispatcher: the loop ----------------------------------------------- */

/* Move submitted jobs to the private queue; note the shutdown flags. */
static int pp_take_queue(mh__pp_t *pp, int *shut) {
  /* A submission that succeeded before the shutdown flag was set has
   * already counted itself in nq (both happen under mu). */
  *shut = atomic_load(&pp->shut);
  if (!atomic_load(&pp->nq)) return 0;
  pthread_mutex_lock(&pp->mu);
  pp_job_t *h = pp->qh, *t = pp->qt;
  pp->qh = pp->qt = NULL;
  atomic_store(&pp->nq, 0);
  if (pp->pfree) {
    pp_job_t *last = pp->pfree;
    while (last->next) last = last->next;
    last->next = pp->freelist;
    pp->freelist = pp->pfree;
    pp->pfree = NULL;
  }
  *shut = atomic_load(&pp->shut);
  pthread_mutex_unlock(&pp->mu);
  if (!h) return 0;
  if (pp->pt)
    pp->pt->next = h;
  else
    pp->ph = h;
  pp->pt = t;
  return 1;
}

/* First sight of a cancelling shutdown: drop what is queued, revoke what
 * waits in rings, SIGTERM what runs. */
static void pp_cancel_all(mh__pp_t *pp) {
  pp->cancelling = 1;
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    pp->ph = j->next;
    pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, j->began);
    pp_recycle(pp, j);
  }
  pp->pt = NULL;
  double now = mh__now();
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    pp_slot_t *s = &pp->ctl->slots[i];
    int running = 0;
    for (uint32_t k = w->coll; k != w->head; k++) {
      unsigned idx = k % PP_RING;
      pp_job_t *j = w->job[idx];
      if (!j) continue;
      uint32_t q = E_QUEUED;
      if (atomic_compare_exchange_strong(&s->ring[idx].claim, &q, E_REVOKED)) {
        w->job[idx] = NULL;
        pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, 1);
        pp_recycle(pp, j);
      } else {
        running = 1;
      }
    }
    if (running && w->state == W_LIVE) {
      pp_kill(pp, i, SIGTERM);
      w->kill_at = now + pp->cfg.grace;
    }
  }
}

static int pp_in_flight(const mh__pp_t *pp) {
  for (int i = 0; i < pp->n; i++) {
    const pp_wk_t *w = &pp->wk[i];
    for (uint32_t k = w->coll; k != w->head; k++)
      if (w->job[k % PP_RING]) return 1;
  }
  return 0;
}

/* Timers: respawns to retry, SIGKILLs due.  Returns the poll timeout in ms
 * until the next one (-1 = none). */
static int pp_timers(mh__pp_t *pp) {
  double now = mh__now(), next = -1;
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    if (w->kill_at > 0) {
      if (w->state != W_LIVE) {
        w->kill_at = 0;
      } else if (now >= w->kill_at) {
        pp_kill(pp, i, SIGKILL);
        w->kill_at = 0;
      } else if (next < 0 || w->kill_at < next) {
        next = w->kill_at;
      }
    }
    if (w->respawn_at > 0 && w->state == W_DEAD) {
      if (pp->cancelling || pp->exits_sent || pp->broken) {
        w->respawn_at = 0;
      } else if (now >= w->respawn_at) {
        w->respawn_at = 0;
        if (pp_spawn(pp, i) < 0) w->respawn_at = now + 0.05;
      }
      if (w->respawn_at > 0 && (next < 0 || w->respawn_at < next))
        next = w->respawn_at;
    }
  }
  if (pp->exits_sent && pp->exit_deadline > 0) {
    if (now >= pp->exit_deadline) {
      for (int i = 0; i < pp->n; i++)
        if (pp->wk[i].state == W_LIVE) pp_kill(pp, i, SIGKILL);
      pp->exit_deadline = 0;
    } else if (next < 0 || pp->exit_deadline < next) {
      next = pp->exit_deadline;
    }
  }
  if (next < 0) return -1;
  double ms = (next - now) * 1e3 + 1;
  return ms > 1e6 ? 1000000 : (int)ms;
}

/* Anything for the dispatcher to do right now? (Checked after announcing
 * that it sleeps.) */
static int pp_pending_work(mh__pp_t *pp) {
  if (atomic_load(&pp->nq)) return 1;
  for (int i = 0; i < pp->n; i++)
    if (pp->wk[i].coll != pp->wk[i].head &&
        atomic_load(&pp->ctl->slots[i].tail) != pp->wk[i].coll)
      return 1;
  return 0;
}

static void pp_loop(mh__pp_t *pp) {
  double idle_since = 0;
  unsigned iter = 0, spins = 0;
  /* How long to poll while entries are in flight, adapted to the work: when
   * a poll ends in sleep (tasks take longer than the poll), the next poll is
   * halved; when work shows up while polling, it doubles again up to
   * PP_SPIN_BUSY.  Short tasks keep the fast hand-off; long ones (pi blocks
   * of milliseconds) no longer lose a slice of a core to a parent that
   * polls for nothing after every completion. */
  double spin_busy = PP_SPIN_BUSY;
  for (;;) {
    int did = 0, shut;
    if ((++iter & 127) == 0) did += pp_server_msgs(pp, 0);
    for (int i = 0; i < pp->n; i++) did += pp_collect(pp, i);
    did += pp_take_queue(pp, &shut);
    if (shut == 3 && !pp->cancelling) pp_cancel_all(pp);
    if (pp->broken) pp_fail_queue(pp);
    did += pp_assign(pp);
    int timeout = pp_timers(pp);
    if (shut && !pp->ph && !atomic_load(&pp->nq) && !pp_in_flight(pp)) {
      if (!pp->exits_sent) {
        pp->exits_sent = 1;
        pp->exit_deadline = mh__now() + (pp->cfg.grace > 2 ? pp->cfg.grace : 2);
        for (int i = 0; i < pp->n; i++)
          if (pp->wk[i].state == W_LIVE) pp_send_exit(pp, i);
        did++;
      }
      int alive = 0;
      for (int i = 0; i < pp->n; i++)
        alive += pp->wk[i].state == W_LIVE || pp->wk[i].state == W_SPAWNING;
      if (!alive) break;
    }
    if (did) {
      if (idle_since != 0 && spin_busy < PP_SPIN_BUSY) spin_busy *= 2;
      idle_since = 0;
      spins = 0;
      continue;
    }
    double now = mh__now();
    if (idle_since == 0) idle_since = now;
    int busy = pp_in_flight(pp) != 0;
    if (now - idle_since < (busy ? spin_busy : PP_SPIN_IDLE)) {
      if (++spins < 64)
        PP_RELAX();
      else
        sched_yield();
      continue;
    }
    if (busy && spin_busy > PP_SPIN_MIN) spin_busy /= 2;
    /* Sleep until a worker, a submitter or the server wakes us. */
    atomic_store(&pp->ctl->parent_sleeping, 1);
    if (!pp_pending_work(pp)) {
      struct pollfd p[2] = {{.fd = pp->evfd, .events = POLLIN},
                            {.fd = pp->srv, .events = POLLIN}};
      int r = poll(p, pp->srv >= 0 ? 2 : 1, timeout);
      if (r > 0 && p[0].revents) {
        uint64_t v;
        while (read(pp->evfd, &v, sizeof v) < 0 && errno == EINTR) {
        }
      }
      if (r > 0 && pp->srv >= 0 && p[1].revents) pp_server_msgs(pp, 0);
    }
    atomic_store(&pp->ctl->parent_sleeping, 0);
    idle_since = 0;
    spins = 0;
  }
  pp_stop_server(pp);
}

static void *pp_main(void *arg) {
  mh__pp_t *pp = arg;
  int rc = pp_boot(pp);
  pthread_mutex_lock(&pp->mu);
  pp->start_rc = rc;
  pp->start_done = 1;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  if (rc == 0) pp_loop(pp);
  return NULL;
}

/* ---- API ---------------------------------------------------------------- */

static void pp_free_mem(mh__pp_t *pp) {
  pp_job_t *lists[3] = {pp->freelist, pp->pfree, pp->qh};
  for (int k = 0; k < 3; k++)
    for (pp_job_t *j = lists[k], *nx; j; j = nx) {
      nx = j->next;
      mh__free(j);
    }
  if (pp->wk)
    for (int i = 0; i < pp->n; i++) {
      if (pp->wk[i].data) munmap(pp->wk[i].data, pp->wk[i].cap);
      pp_fd_close(pp->wk[i].data_fd);
    }
  if (pp->ctl) munmap(pp->ctl, pp->ctl_len);
  pp_fd_close(pp->evfd);
  mh__free(pp->wk);
  mh__free(pp->srv_pids);
  mh__free(pp);
}

int mh__pp_new(mh__pp_t **out, const mh__pp_config_t *cfg) {
  if (!out || !cfg || cfg->workers < 1 || cfg->workers > 4096 ||
      cfg->retries < 0 || cfg->max_tasks_per_child < 0 || !cfg->hooks.begin ||
      !cfg->hooks.requeue || !cfg->hooks.finish || !cfg->hooks.cancel ||
      cfg->grace != cfg->grace)
    return MH_EINVAL;
  *out = NULL;
  mh__pp_t *pp = mh__calloc(1, sizeof *pp);
  if (!pp) return MH_ENOMEM;
  pp->cfg = *cfg;
  if (!(pp->cfg.grace > 0)) pp->cfg.grace = 1.0;
  if (pp->cfg.grace > 1e6) pp->cfg.grace = 1e6;
  pp->n = cfg->workers;
  pp->evfd = -1;
  pp->srv = -1;
  int rc = MH_ENOMEM;
  pp->wk = mh__calloc((size_t)pp->n, sizeof *pp->wk);
  pp->srv_pids = mh__calloc((size_t)pp->n, sizeof *pp->srv_pids);
  if (!pp->wk || !pp->srv_pids) goto fail;
  for (int i = 0; i < pp->n; i++) pp->wk[i].data_fd = -1;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  pp->ctl_len = (sizeof(pp_ctl_t) + (size_t)pp->n * sizeof(pp_slot_t) + page - 1) &
                ~(page - 1);
  void *ctl = mmap(NULL, pp->ctl_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ctl == MAP_FAILED) goto fail;
  pp->ctl = ctl;
  pp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pp->evfd < 0) {
    rc = -errno;
    goto fail;
  }
  pp_fd_add(pp->evfd);
  if (pthread_mutex_init(&pp->mu, NULL)) goto fail;
  if (pthread_mutex_init(&pp->join_mu, NULL)) goto fail_mu;
  if (mh__cond_init(&pp->cv, false)) goto fail_jmu;
  /* Like Python before it forks: what the program printed so far is flushed
   * now, so that no process of the pool inherits it half-written. */
  fflush(stdout);
  fflush(stderr);
  /* The dispatcher blocks every signal: signals meant for the program are
   * handled by its own threads, and the server starts from a known mask. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&pp->thread, NULL, pp_main, pp);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err) {
    rc = MH_EAGAIN;
    goto fail_cv;
  }
  pthread_mutex_lock(&pp->mu);
  while (!pp->start_done) pthread_cond_wait(&pp->cv, &pp->mu);
  rc = pp->start_rc;
  pthread_mutex_unlock(&pp->mu);
  if (rc < 0) {
    pthread_join(pp->thread, NULL);
    goto fail_cv;
  }
  *out = pp;
  return 0;
fail_cv:
  pthread_cond_destroy(&pp->cv);
fail_jmu:
  pthread_mutex_destroy(&pp->join_mu);
fail_mu:
  pthread_mutex_destroy(&pp->mu);
fail:
  pp_free_mem(pp);
  return rc;
}

static void pp_wake(mh__pp_t *pp, int always) {
  if (always || atomic_load(&pp->ctl->parent_sleeping)) pp_wake_fd(pp->evfd);
}

int mh__pp_submit_many(mh__pp_t *pp, void *const *users,
                       const mh__task_t *const *ts, size_t n) {
  if (!pp || (n && (!users || !ts))) return MH_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!ts[i] || !ts[i]->fn || (ts[i]->count && !pp_job_len(ts[i], 0)) ||
        (!ts[i]->in && ts[i]->in_size) || (!ts[i]->out && ts[i]->out_size))
      return MH_EINVAL;
  if (!n) return 0;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->shut)) {
    pthread_mutex_unlock(&pp->mu);
    return MH_ESHUTDOWN;
  }
  pp_job_t *h = NULL, *t = NULL;
  for (size_t i = 0; i < n; i++) {
    pp_job_t *j = pp->freelist;
    if (j) {
      pp->freelist = j->next;
    } else {
      j = mh__malloc(sizeof *j);
      if (!j) {
        /* Give back what was taken: all or none. */
        while (h) {
          pp_job_t *nx = h->next;
          h->next = pp->freelist;
          pp->freelist = h;
          h = nx;
        }
        pthread_mutex_unlock(&pp->mu);
        return MH_ENOMEM;
      }
    }
    memset(j, 0, sizeof *j);
    j->user = users[i];
    j->t = ts[i];
    if (t)
      t->next = j;
    else
      h = j;
    t = j;
  }
  if (pp->qt)
    pp->qt->next = h;
  else
    pp->qh = h;
  pp->qt = t;
  atomic_fetch_add(&pp->nq, n);
  pthread_mutex_unlock(&pp->mu);
  pp_wake(pp, 0);
  return 0;
}

int mh__pp_submit(mh__pp_t *pp, void *user, const mh__task_t *t) {
  return mh__pp_submit_many(pp, &user, &t, 1);
}

int mh__pp_shutdown(mh__pp_t *pp, unsigned flags) {
  if (!pp) return MH_EINVAL;
  pthread_mutex_lock(&pp->mu);
  int s = atomic_load(&pp->shut) | 1 | ((flags & MH_SHUTDOWN_CANCEL_FUTURES) ? 2 : 0);
  atomic_store(&pp->shut, s);
  pthread_mutex_unlock(&pp->mu);
  pp_wake(pp, 1);
  if (!(flags & MH_SHUTDOWN_WAIT)) return 0;
  /* A hook that shuts its own pool down cannot wait for itself. */
  if (pthread_equal(pthread_self(), pp->thread)) return MH_EDEADLK;
  pthread_mutex_lock(&pp->join_mu);
  if (!pp->joined) {
    pthread_join(pp->thread, NULL);
    pp->joined = 1;
  }
  pthread_mutex_unlock(&pp->join_mu);
  return 0;
}

void mh__pp_free(mh__pp_t *pp) {
  if (!pp) return;
  mh__pp_shutdown(pp, MH_SHUTDOWN_WAIT);
  pthread_cond_destroy(&pp->cv);
  pthread_mutex_destroy(&pp->join_mu);
  pthread_mutex_destroy(&pp->mu);
  pp_free_mem(pp);
}

int mh__pp_worker_pids(mh__pp_t *pp, int *pids, int n) {
  if (!pp || !pids || n < 0) return MH_EINVAL;
  int k = 0;
  for (int i = 0; i < pp->n && k < n; i++) {
    int pid = atomic_load(&pp->wk[i].pid);
    if (pid > 0) pids[k++] = pid;
  }
  return k;
}

int mh__pp_server_pid(mh__pp_t *pp) { return pp ? atomic_load(&pp->srv_pid) : 0; }
