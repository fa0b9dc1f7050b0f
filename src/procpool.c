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
 * Maps (mh__pp_map) bypass jobs: the calling thread fills a shared window,
 * the dispatcher gives each live worker one K_MAP entry, and workers claim
 * chunks from the window themselves (see "shared layout of the claim-based
 * map" below).  The dispatcher only settles the chunk of a worker that dies.
 *
 * Locking: `mu` guards the submission queue (qh/qt/nq), the record free list
 * and the shutdown flags (`shut` is also readable atomically), and map_busy,
 * map_on and map_attached (the last two also read atomically).  The map's
 * parameters in msh are written by the map's thread only while no worker is
 * attached (map_attached == 0); its window slots belong to the map's thread
 * while not READY/owned, to their owner while owned.  Everything
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
enum { K_RUN = 1, K_EXIT = 2, K_MAP = 3 };

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
  /* Claim-based map: the worker stores i + 1 in m_started before it runs
   * item i of its chunk and in m_done after; the dispatcher reads them when
   * the worker died (the dispatcher resets both before each spawn). */
  _Atomic uint64_t m_started, m_done;
  _Alignas(MH__CACHE_LINE) pp_entry_t ring[PP_RING];
} pp_slot_t;

typedef struct pp_ctl {
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t parent_sleeping;
  _Alignas(MH__CACHE_LINE) pp_slot_t slots[];
} pp_ctl_t;

/* ---- shared layout of the claim-based map ------------------------------- *
 *
 * A map's items are cut into chunks on a fixed grid (chunk j is items
 * [j*chunk, min(n, (j+1)*chunk))).  The parent copies the inputs of chunks
 * j .. j+wc-1 into a window of wc chunk slots (slot j % wc) in `pp_mdata`,
 * a shared mapping made with the pool and reused by every map, so its pages
 * fault once.  Each slot has a state word: the chunk's tag (j + 1) in the
 * high bits, and in the low 16 bits READY, DONE, or the number of the
 * worker slot that owns it.  A worker claims a chunk with one
 * compare-and-swap READY -> owner, so the owner is recorded in the same
 * atomic step that takes the chunk: a worker killed at any instant either
 * owns the chunk (the dispatcher settles it) or does not (it stays READY).
 * `hint` is only where to look first: workers advance it past chunks they
 * see taken, and the dispatcher lowers it when it puts a chunk back.
 *
 * The worker writes outputs, item statuses (when the caller wants them) and
 * the chunk's first failing code straight into the window, then stores DONE
 * (release).  The parent collects DONE chunks in order, copies the results
 * out and refills the slot with chunk j + wc.  Wake-ups: workers that find
 * nothing to claim spin, then sleep on `ready_seq`; the parent sleeps on
 * `done_seq` until `ndone` reaches `wake_at`.  Both are Dekker-style (own
 * flag, seq_cst, re-check the other side). */
#define PP_MAP_DATA (1u << 21) /* bytes of the window */
#define PP_MAP_SLOTS 4096u     /* most chunk slots in the window */
#define PP_MAP_CHUNK_CAP 16384u /* automatic chunks have at most this many items */
#define MS_READY 0xFFFFu
#define MS_DONE 0xFFFEu
#define MS_PARENT 0xFFFDu /* the map's own thread settles it */
#define MS_TAG(j, k) ((((uint64_t)(j) + 1) << 16) | (k))

typedef struct pp_map_sh {
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t hint;
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t ready_seq;
  _Atomic uint32_t wwait; /* workers sleeping on ready_seq */
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t ndone;
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t done_seq;
  _Atomic uint32_t pwait;    /* the parent sleeps on done_seq */
  _Atomic uint64_t wake_at;  /* ... until ndone reaches this */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t stop; /* 1 = over, 2 = cancelled */
  _Atomic uint32_t gen;                            /* map number */
  /* Parameters: written before the workers are told (K_MAP entries). */
  mh_task_fn fn;
  void *ctx;
  uint64_t n, chunk, nchunks, wc, in_size, out_size, want_st;
  uint64_t out_off, st_off; /* in the window; inputs at 0 */
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t state[PP_MAP_SLOTS];
  uint64_t start[PP_MAP_SLOTS]; /* first item still to run */
  int32_t code[PP_MAP_SLOTS];   /* code of the chunk's lowest failing item */
} pp_map_sh_t;

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
  int in_map;        /* a K_MAP entry of the current map is in its ring */
  unsigned char kmap[PP_RING]; /* the entry is a K_MAP */
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

  /* Claim-based map.  map_on, map_busy and map_attached are changed under
   * mu (map_on and map_attached also read atomically); msh/mdata are
   * shared with the workers; mtries is the dispatcher's, per window slot,
   * reset by the map's thread before the slot is READY. */
  pp_map_sh_t *msh;
  char *mdata;
  size_t msh_len;
  /* A thread runs a claim-based map (from before it fills the window, so
   * that a shutdown arriving meanwhile waits for it). */
  _Atomic int map_busy;
  _Atomic int map_on;        /* workers should join the map */
  _Atomic uint32_t map_attached; /* K_MAP entries in rings (futex word) */
  _Atomic int broken_flag;   /* pp->broken, for the map's thread */
  int *mtries;
  int mpopulated; /* the parent faulted the window in */
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

/* The same for shared mappings: a new server unmaps other pools' control
 * arenas and map windows, so its workers do not keep them alive after their
 * pool is freed.  An entry's length is stored before its address (1 marks
 * an entry being filled). */
#define PP_MAX_MAPS 1024
static struct {
  _Atomic uintptr_t addr;
  _Atomic size_t len;
} pp_maps[PP_MAX_MAPS];

static void pp_maps_add(void *p, size_t len) {
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

static void pp_maps_del(void *p) {
  for (int i = 0; i < PP_MAX_MAPS; i++) {
    uintptr_t v = (uintptr_t)p;
    if (atomic_compare_exchange_strong(&pp_maps[i].addr, &v, 0)) return;
  }
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
  for (int i = 0; i < PP_MAX_MAPS; i++) {
    uintptr_t a = atomic_load(&pp_maps[i].addr);
    if (a > 1 && a != (uintptr_t)pp->ctl && a != (uintptr_t)pp->msh)
      munmap((void *)a, atomic_load(&pp_maps[i].len));
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

static void pp_futex_wake_all(_Atomic uint32_t *addr) {
  syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAKE, INT32_MAX, NULL,
          NULL, 0);
}

/* Tell the parent a chunk is done when it sleeps and waits for this many. */
static void pp_map_done_one(pp_map_sh_t *m) {
  uint64_t nd = atomic_fetch_add(&m->ndone, 1) + 1;
  if (atomic_load(&m->pwait) && nd >= atomic_load(&m->wake_at)) {
    atomic_fetch_add(&m->done_seq, 1);
    pp_futex_wake_all(&m->done_seq);
  }
}

/* The spin-then-yield ladder of a side of the claim-based map that found
 * nothing to do: a few pauses, then yields until it has been idle for
 * PP_SPIN_WORKER, before it sleeps on a futex.  Reset it to {0, 0} after
 * any progress or sleep. */
typedef struct pp_idle {
  double since; /* when this idle spell began, or 0 */
  unsigned spins;
} pp_idle_t;

/* 1: paused or yielded, look again; 0: idle long enough, go to sleep. */
static int pp_idle_look_again(pp_idle_t *w) {
  if (++w->spins < 64) {
    PP_RELAX();
    return 1;
  }
  double now = mh__now();
  if (w->since == 0) w->since = now;
  if (now - w->since < PP_SPIN_WORKER) {
    sched_yield();
    return 1;
  }
  return 0;
}

/* Run chunk j (window slot k) from its first unfinished item. */
static void pp_map_run(const pp_map_sh_t *mc, pp_map_sh_t *m, char *data,
                       pp_slot_t *s, uint64_t j, uint64_t k, int init) {
  uint64_t chunk = mc->chunk, lo = j * chunk;
  uint64_t hi = lo + chunk < mc->n ? lo + chunk : mc->n;
  uint64_t first = m->start[k];
  atomic_store_explicit(&s->m_done, first, memory_order_relaxed);
  atomic_store_explicit(&s->m_started, first, memory_order_relaxed);
  size_t isz = (size_t)mc->in_size, osz = (size_t)mc->out_size;
  uint64_t base = k * chunk - lo; /* window item of item i: base + i */
  const char *in = data;
  char *out = data + mc->out_off;
  int *st = mc->want_st ? (int *)(void *)(data + mc->st_off) : NULL;
  mh_task_fn fn = mc->fn;
  void *ctx = mc->ctx;
  for (uint64_t i = first; i < hi; i++) {
    atomic_store_explicit(&s->m_started, i + 1, memory_order_relaxed);
    size_t w = (size_t)(base + i);
    int rc = init ? init
                  : fn(isz ? in + w * isz : NULL, isz, osz ? out + w * osz : NULL,
                       osz, ctx);
    if (st) st[w] = rc;
    if (rc && !m->code[k]) m->code[k] = rc;
    atomic_store_explicit(&s->m_done, i + 1, memory_order_release);
  }
}

/* A worker's part of a claim-based map: claim chunks until the parent says
 * the map is over.  Returns 1 when max_tasks_per_child says to exit. */
static int pp_worker_map(mh__pp_t *pp, int slot, uint32_t gen, int init,
                         unsigned max, unsigned *done, int *populated) {
  pp_map_sh_t *m = pp->msh;
  pp_slot_t *s = &pp->ctl->slots[slot];
  if (atomic_load(&m->gen) != gen) return 0; /* a stale entry */
  if (!*populated) {
    /* Fault the whole window in with one call instead of one fault per
     * page (page faults are what costs most in a VM). */
    *populated = 1;
    mh__prefault(pp->mdata, PP_MAP_DATA);
  }
  pp_map_sh_t mc; /* the parameters, read once */
  mc.fn = m->fn;
  mc.ctx = m->ctx;
  mc.n = m->n;
  mc.chunk = m->chunk;
  mc.nchunks = m->nchunks;
  mc.wc = m->wc;
  mc.in_size = m->in_size;
  mc.out_size = m->out_size;
  mc.want_st = m->want_st;
  mc.out_off = m->out_off;
  mc.st_off = m->st_off;
  uint64_t me = (uint64_t)slot;
  pp_idle_t idle = {0, 0};
  for (;;) {
    if (atomic_load_explicit(&m->stop, memory_order_acquire)) return 0;
    uint64_t j = atomic_load(&m->hint);
    if (j < mc.nchunks) {
      uint64_t k = j % mc.wc;
      uint64_t sv = atomic_load_explicit(&m->state[k], memory_order_acquire);
      uint64_t tj = sv >> 16, kind = sv & 0xFFFF;
      if (tj == j + 1 && kind == MS_READY) {
        /* Forget the last chunk's progress first: killed right after the
         * exchange, we would otherwise leave m_done of a chunk of an earlier
         * map, which may fall inside this chunk, and pp_map_dead would take
         * items never run for finished (stale outputs, status 0). */
        atomic_store_explicit(&s->m_done, UINT64_MAX, memory_order_relaxed);
        atomic_store_explicit(&s->m_started, UINT64_MAX, memory_order_relaxed);
        if (!atomic_compare_exchange_strong(&m->state[k], &sv, MS_TAG(j, me)))
          continue;
        uint64_t h = j; /* (a failed exchange overwrites h, not j) */
        atomic_compare_exchange_strong(&m->hint, &h, j + 1);
        pp_map_run(&mc, m, pp->mdata, s, j, k, init);
        /* An exchange, not a store: a broken pool gives its live workers up
         * for dead and settles their chunks (pp_broken) before they are
         * killed, and the parent may already have refilled the slot with
         * chunk j + wc; a plain store would mark that one DONE unrun, or
         * hide it from every claim and hang the map. */
        uint64_t mine = MS_TAG(j, me);
        if (atomic_compare_exchange_strong_explicit(
                &m->state[k], &mine, MS_TAG(j, MS_DONE), memory_order_acq_rel,
                memory_order_relaxed))
          pp_map_done_one(m);
        idle = (pp_idle_t){0, 0};
        if (max && ++*done >= max) return 1;
        continue;
      }
      if (tj > j + 1 || (tj == j + 1 && kind != MS_READY)) {
        /* Taken (or long done): look further. */
        uint64_t h = j;
        if (atomic_compare_exchange_strong(&m->hint, &h, j + 1) &&
            tj == j + 1) {
          /* Its owner may have died and pp_map_dead put it back between our
           * look and the exchange, while the hint was still j (so it did
           * not lower it): chunk j would stay READY behind the hint and the
           * map never end.  Dekker with pp_map_dead (it stores READY, then
           * reads the hint): look again and lower the hint back. */
          if (atomic_load(&m->state[k]) == MS_TAG(j, MS_READY)) {
            h = j + 1;
            while (h > j && !atomic_compare_exchange_weak(&m->hint, &h, j)) {
            }
          }
        }
        continue;
      }
    }
    /* Nothing to claim: the parent has not refilled yet, or every chunk is
     * taken.  Spin a little, then sleep until the parent or the dispatcher
     * bumps ready_seq. */
    if (pp_idle_look_again(&idle)) continue;
    atomic_fetch_add(&m->wwait, 1);
    uint32_t seq = atomic_load(&m->ready_seq);
    uint64_t j2 = atomic_load(&m->hint);
    int changed = j2 != j || atomic_load(&m->stop);
    if (!changed && j2 < mc.nchunks) {
      uint64_t sv = atomic_load(&m->state[j2 % mc.wc]);
      changed = (sv >> 16) >= j2 + 1;
    }
    if (!changed) pp_futex_wait(&m->ready_seq, seq);
    atomic_fetch_sub(&m->wwait, 1);
    idle = (pp_idle_t){0, 0};
  }
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
  int init = 0, populated = 0;
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
    if (took && e->kind == K_MAP) {
      if (pp_worker_map(pp, slot, (uint32_t)e->first, init, max, &done,
                        &populated))
        pp_worker_exit(0); /* max_tasks_per_child reached inside the map */
      took = 0;           /* counted per chunk already */
    } else if (took) {
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
static void pp_map_detach(mh__pp_t *pp, pp_wk_t *w);

static void pp_release(mh__pp_t *pp, pp_wk_t *w) {
  if (w->kmap[w->coll % PP_RING]) {
    w->kmap[w->coll % PP_RING] = 0;
    pp_map_detach(pp, w);
  }
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
    pp_release(pp, w);
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

/* ---- dispatcher: the claim-based map ----------------------------------- */

/* The K_MAP entry of w was collected, or w died holding it. */
static void pp_map_detach(mh__pp_t *pp, pp_wk_t *w) {
  if (!w->in_map) return;
  w->in_map = 0;
  if (atomic_fetch_sub(&pp->map_attached, 1) == 1)
    pp_futex_wake_all(&pp->map_attached);
}

/* While a map is on, every live worker gets a K_MAP entry (once). */
static int pp_map_post(mh__pp_t *pp) {
  if (!atomic_load_explicit(&pp->map_on, memory_order_relaxed) ||
      pp->cancelling)
    return 0; /* (a cancelled map's thread settles what is left itself) */
  int did = 0;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->map_on)) {
    for (int i = 0; i < pp->n; i++) {
      pp_wk_t *w = &pp->wk[i];
      if (w->state != W_LIVE || w->exit_sent || w->in_map ||
          w->head - w->coll >= PP_RING)
        continue;
      unsigned idx = w->head % PP_RING;
      pp_entry_t *e = &pp->ctl->slots[i].ring[idx];
      e->kind = K_MAP;
      e->first = atomic_load(&pp->msh->gen);
      e->count = 0;
      atomic_store_explicit(&e->claim, E_QUEUED, memory_order_relaxed);
      w->job[idx] = NULL;
      w->kmap[idx] = 1;
      w->off[idx] = w->dhead;
      w->len[idx] = 0;
      w->head++;
      w->in_map = 1;
      atomic_fetch_add(&pp->map_attached, 1);
      pp_publish(pp, i);
      did++;
    }
  }
  pthread_mutex_unlock(&pp->mu);
  return did;
}

/* Wake workers sleeping for chunks to claim. */
static void pp_map_wake_workers(pp_map_sh_t *m) {
  /* Dekker with the worker's sleep (wwait++, then look at the slots): the
   * slots were made READY with release stores, which a later load may pass
   * (a store buffer); the fence keeps our look at wwait after them, or a
   * worker could miss both the slot and the wake-up and sleep for good. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&m->wwait)) {
    atomic_fetch_add(&m->ready_seq, 1);
    pp_futex_wake_all(&m->ready_seq);
  }
}

static void pp_map_wake_parent(pp_map_sh_t *m) {
  atomic_fetch_add(&m->done_seq, 1);
  pp_futex_wake_all(&m->done_seq);
}

/* The worker of `slot` died during a map: settle the chunk it owned.  Items
 * it finished keep their results; the item it was running fails with
 * MH_EWORKERDIED (or runs again, within the retries), or is cancelled when a
 * cancelling shutdown is on; the items it had not begun go back to be
 * claimed by any worker. */
static void pp_map_dead(mh__pp_t *pp, int slot) {
  pp_map_sh_t *m = pp->msh;
  pp_slot_t *s = &pp->ctl->slots[slot];
  uint64_t wc = m->wc;
  for (uint64_t k = 0; k < wc; k++) {
    uint64_t sv = atomic_load_explicit(&m->state[k], memory_order_acquire);
    if ((sv & 0xFFFF) != (uint64_t)slot || (sv >> 16) == 0) continue;
    uint64_t j = (sv >> 16) - 1, lo = j * m->chunk;
    uint64_t hi = lo + m->chunk < m->n ? lo + m->chunk : m->n;
    uint64_t first = m->start[k];
    uint64_t d = atomic_load(&s->m_done), st = atomic_load(&s->m_started);
    uint64_t upto = d >= first && d <= hi ? d : first;
    int running = upto < hi && st == upto + 1;
    int *sts = m->want_st ? (int *)(void *)(pp->mdata + m->st_off) : NULL;
    size_t base = (size_t)(k * m->chunk - lo);
    uint64_t next = upto;
    int done = 0;
    if (pp->cancelling || pp->broken) {
      int code = pp->cancelling ? MH_ECANCELED : MH_EWORKERDIED;
      for (uint64_t i = upto; i < hi; i++)
        if (sts) sts[base + i] = code;
      if (upto < hi && !m->code[k]) m->code[k] = code;
      done = 1;
    } else if (running) {
      if (pp->mtries[k] < pp->cfg.retries) {
        pp->mtries[k]++;
      } else {
        if (sts) sts[base + upto] = MH_EWORKERDIED;
        if (!m->code[k]) m->code[k] = MH_EWORKERDIED;
        pp->mtries[k] = 0;
        next = upto + 1;
      }
    }
    if (next >= hi) done = 1;
    if (done) {
      atomic_store_explicit(&m->state[k], MS_TAG(j, MS_DONE),
                            memory_order_release);
      atomic_fetch_add(&m->ndone, 1);
      pp_map_wake_parent(m);
    } else {
      m->start[k] = next;
      atomic_store(&m->state[k], MS_TAG(j, MS_READY));
      uint64_t h = atomic_load(&m->hint);
      while (h > j && !atomic_compare_exchange_weak(&m->hint, &h, j)) {
      }
      atomic_fetch_add(&m->ready_seq, 1);
      pp_futex_wake_all(&m->ready_seq);
    }
  }
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
  atomic_store(&s->m_started, UINT64_MAX);
  atomic_store(&s->m_done, UINT64_MAX);
  memset(w->kmap, 0, sizeof w->kmap);
  w->in_map = 0;
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
  w->kmap[idx] = 0;
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
  if (w->in_map) {
    pp_map_dead(pp, slot);
    pp_map_detach(pp, w);
  }
  memset(w->kmap, 0, sizeof w->kmap);
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
/* Kill a worker of ours that is given up for dead, and wait (boundedly)
 * until it has exited.  It is the server's child, not ours, so we cannot
 * reap it; a pidfd still tells when it is gone.  A worker still running
 * after its chunk was settled could write into a window slot the map has
 * refilled since, and an item of another chunk would come back "done" with
 * its output.  (A pid already reaped by the server and reused is the one
 * risk left; the server reaps only after it reports, so the window is the
 * report's time in flight.) */
static void pp_kill_and_wait(int pid) {
  if (pid <= 0) return;
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    struct pollfd p = {fd, POLLIN, 0};
    for (int i = 0; i < 200; i++) { /* at most about 2 s */
      int r = poll(&p, 1, 10);
      if (r > 0 || (r < 0 && errno != EINTR)) break;
    }
    close(fd);
    return;
  }
  if (errno == ESRCH) return; /* gone already */
#endif
  kill(pid, SIGKILL); /* no pidfds: best effort, without the wait */
}

static void pp_broken(mh__pp_t *pp) {
  pp->broken = 1;
  atomic_store(&pp->broken_flag, 1);
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    int pid = atomic_load(&w->pid);
    if (w->state == W_LIVE) {
      pp_kill_and_wait(pid); /* before its chunk is settled below */
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
  pp_map_wake_parent(pp->msh); /* the map's thread sees broken_flag */
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
  /* A claim-based map stops handing out chunks; its thread cancels what
   * was not claimed. */
  atomic_store(&pp->msh->stop, 2);
  atomic_fetch_add(&pp->msh->ready_seq, 1);
  pp_futex_wake_all(&pp->msh->ready_seq);
  pp_map_wake_parent(pp->msh);
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
    if (w->in_map) running = 1;
    if (running && w->state == W_LIVE) {
      pp_kill(pp, i, SIGTERM);
      w->kill_at = now + pp->cfg.grace;
    }
  }
}

static int pp_in_flight(mh__pp_t *pp) {
  if (atomic_load(&pp->map_busy) || atomic_load(&pp->map_on) ||
      atomic_load(&pp->map_attached))
    return 1;
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
    did += pp_map_post(pp);
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
  if (pp->ctl) {
    pp_maps_del(pp->ctl);
    munmap(pp->ctl, pp->ctl_len);
  }
  if (pp->msh) {
    pp_maps_del(pp->msh);
    munmap(pp->msh, pp->msh_len);
  }
  mh__free(pp->mtries);
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
  pp_maps_add(ctl, pp->ctl_len);
  /* The map's shared state and window, inherited by every worker. */
  size_t head_len = (sizeof(pp_map_sh_t) + page - 1) & ~(page - 1);
  pp->msh_len = head_len + PP_MAP_DATA;
  void *msh = mmap(NULL, pp->msh_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (msh == MAP_FAILED) goto fail;
  pp->msh = msh;
  pp_maps_add(msh, pp->msh_len);
  pp->mdata = (char *)msh + head_len;
  pp->mtries = mh__calloc(PP_MAP_SLOTS, sizeof *pp->mtries);
  if (!pp->mtries) goto fail;
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

/* ---- the claim-based map (runs on the caller's thread) ------------------ */

static void pp_futex_wait_for(_Atomic uint32_t *addr, uint32_t val,
                              double secs) {
  struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
  syscall(SYS_futex, (void *)(uintptr_t)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

typedef struct pp_mapcall {
  const char *in;
  char *out;
  int *status;
  size_t in_size, out_size, n, chunk, nchunks, wc;
  int first; /* code of the lowest failing item collected so far */
  size_t pf_out, pf_st; /* bytes of out / status faulted in ahead so far */
} pp_mapcall_t;

/* The caller's output buffers are faulted in ahead of the copies into them,
 * a slice at a time: a fresh buffer would otherwise cost a page fault per
 * page, which on some virtual machines is dearer than the whole copy. */
#define PP_PREFAULT_SLICE ((size_t)4 << 20)

static void pp_map_prefault(char *base, size_t *done, size_t upto,
                            size_t total) {
  if (upto <= *done) return;
  size_t to = *done + PP_PREFAULT_SLICE;
  if (to < upto) to = upto;
  if (to > total) to = total;
  mh__prefault(base + *done, to - *done);
  *done = to;
}

/* Copy the inputs of chunk j into its window slot and make it READY. */
static void pp_map_fill(mh__pp_t *pp, pp_mapcall_t *c, size_t j) {
  pp_map_sh_t *m = pp->msh;
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t cnt = c->n - lo < c->chunk ? c->n - lo : c->chunk;
  if (c->in_size)
    memcpy(pp->mdata + k * c->chunk * c->in_size, c->in + lo * c->in_size,
           cnt * c->in_size);
  m->start[k] = lo;
  m->code[k] = 0;
  pp->mtries[k] = 0;
  atomic_store_explicit(&m->state[k], MS_TAG(j, MS_READY),
                        memory_order_release);
}

/* Copy the results of the DONE chunk j out of the window. */
static void pp_map_take(mh__pp_t *pp, pp_mapcall_t *c, size_t j) {
  pp_map_sh_t *m = pp->msh;
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t cnt = c->n - lo < c->chunk ? c->n - lo : c->chunk;
  if (c->out_size) {
    pp_map_prefault(c->out, &c->pf_out, (lo + cnt) * c->out_size,
                    c->n * c->out_size);
    memcpy(c->out + lo * c->out_size,
           pp->mdata + m->out_off + k * c->chunk * c->out_size,
           cnt * c->out_size);
  }
  if (c->status) {
    pp_map_prefault((char *)c->status, &c->pf_st, (lo + cnt) * sizeof(int),
                    c->n * sizeof(int));
    memcpy(c->status + lo,
           pp->mdata + m->st_off + k * c->chunk * sizeof(int),
           cnt * sizeof(int));
  }
  if (!c->first && m->code[k]) c->first = m->code[k];
}

/* Settle chunk j (window slot k, items from `from`) with `code` here. */
static void pp_map_settle(pp_mapcall_t *c, pp_map_sh_t *m, char *data,
                          size_t j, size_t from, int code) {
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t hi = lo + c->chunk < c->n ? lo + c->chunk : c->n;
  if (c->status)
    for (size_t i = from; i < hi; i++)
      ((int *)(void *)(data + m->st_off))[k * c->chunk + i - lo] = code;
  if (from < hi && !m->code[k]) m->code[k] = code;
}

int mh__pp_map(mh__pp_t *pp, mh_task_fn fn, void *ctx, const void *in,
               size_t in_size, void *out, size_t out_size, size_t n,
               size_t chunksize, int *status) {
  if (!pp || !fn || (n && ((!in && in_size) || (!out && out_size))))
    return MH_EINVAL;
  if (n == 0) return 0;
  if (in_size > PP_MAP_DATA || out_size > PP_MAP_DATA) return MH__MAP_GENERIC;
  size_t per = in_size + out_size + (status ? sizeof(int) : 0);
  size_t items = per ? (PP_MAP_DATA - 4 * PP_ALIGN) / per : SIZE_MAX;
  size_t w4 = (size_t)pp->n * 4, chunk = chunksize;
  if (!chunk) {
    /* Pool.map's rule (about four chunks per worker), but no bigger than
     * lets the window hold four chunks per worker: claims are cheap, and
     * the parent copies results out while workers run the next chunks. */
    chunk = n / w4 + (n % w4 != 0);
    size_t cap = items / w4;
    if (chunk > cap) chunk = cap;
    if (chunk > PP_MAP_CHUNK_CAP) chunk = PP_MAP_CHUNK_CAP;
    if (chunk < 1) chunk = 1;
  }
  if (chunk > n) chunk = n;
  size_t nchunks = n / chunk + (n % chunk != 0);
  size_t wc = per ? items / chunk : PP_MAP_SLOTS;
  if (wc > PP_MAP_SLOTS) wc = PP_MAP_SLOTS;
  if (wc > nchunks) wc = nchunks;
  if (wc < 2 && nchunks > 1) return MH__MAP_GENERIC; /* chunks too big */
  if (wc < 1) return MH__MAP_GENERIC;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->shut)) {
    pthread_mutex_unlock(&pp->mu);
    return MH_ESHUTDOWN;
  }
  if (atomic_load(&pp->map_busy) || atomic_load(&pp->broken_flag)) {
    /* Another thread maps (or the pool is broken): chunk futures do it. */
    pthread_mutex_unlock(&pp->mu);
    return MH__MAP_GENERIC;
  }
  atomic_store(&pp->map_busy, 1);
  pthread_mutex_unlock(&pp->mu);

  pp_map_sh_t *m = pp->msh;
  pp_mapcall_t c = {in, out, status, in_size, out_size, n, chunk, nchunks, wc, 0, 0, 0};
  atomic_fetch_add(&m->gen, 1);
  m->fn = fn;
  m->ctx = ctx;
  m->n = n;
  m->chunk = chunk;
  m->nchunks = nchunks;
  m->wc = wc;
  m->in_size = in_size;
  m->out_size = out_size;
  m->want_st = status != NULL;
  m->out_off = pp_round(wc * chunk * in_size);
  m->st_off = m->out_off + pp_round(wc * chunk * out_size);
  atomic_store(&m->hint, 0);
  atomic_store(&m->ndone, 0);
  atomic_store(&m->wake_at, 0);
  atomic_store(&m->pwait, 0);
  atomic_store(&m->stop, 0);
  for (size_t k = 0; k < wc; k++) atomic_store(&m->state[k], 0);
  if (!pp->mpopulated) {
    /* One call faults the window in instead of one fault per page. */
    pp->mpopulated = 1;
    mh__prefault(pp->mdata, PP_MAP_DATA);
  }
  size_t filled = 0, next = 0;
  for (; filled < wc; filled++) pp_map_fill(pp, &c, filled);
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_on, 1);
  pthread_mutex_unlock(&pp->mu);
  pp_wake(pp, 1); /* the dispatcher hands K_MAP entries to the workers */

  int stopping = 0; /* the code the rest gets: cancelled, or broken */
  pp_idle_t idle = {0, 0};
  while (next < filled) {
    int did = 0, refilled = 0;
    while (next < filled) {
      size_t k = next % wc;
      if (atomic_load_explicit(&m->state[k], memory_order_acquire) !=
          MS_TAG(next, MS_DONE))
        break;
      pp_map_take(pp, &c, next);
      if (filled < nchunks && !stopping) {
        pp_map_fill(pp, &c, filled++);
        refilled = 1;
      }
      next++;
      did = 1;
    }
    if (refilled) pp_map_wake_workers(m);
    if (!stopping) {
      if (atomic_load(&pp->shut) & 2)
        stopping = MH_ECANCELED;
      else if (atomic_load(&pp->broken_flag))
        stopping = MH_EWORKERDIED;
      if (stopping) {
        atomic_store(&m->stop, 2);
        atomic_fetch_add(&m->ready_seq, 1);
        pp_futex_wake_all(&m->ready_seq);
      }
    }
    if (stopping) {
      /* Nobody claims any more: settle what is still READY here.  Chunks
       * owned by workers end when they finish or their death is settled. */
      for (size_t j = next; j < filled; j++) {
        size_t k = j % wc;
        uint64_t sv = MS_TAG(j, MS_READY);
        if (atomic_compare_exchange_strong(&m->state[k], &sv,
                                           MS_TAG(j, MS_PARENT))) {
          pp_map_settle(&c, m, pp->mdata, j, (size_t)m->start[k], stopping);
          atomic_store_explicit(&m->state[k], MS_TAG(j, MS_DONE),
                                memory_order_release);
          did = 1;
        }
      }
      /* A broken pool gives its live workers up for dead (pp_broken) before
       * the server's end kills them, so one may still claim a chunk after
       * pp_map_dead settled its slot; nobody would settle that chunk and
       * the map would never end.  Once no worker is attached, every chunk
       * still owned is such a one: it fails here. */
      if (stopping == MH_EWORKERDIED && !atomic_load(&pp->map_attached)) {
        for (size_t j = next; j < filled; j++) {
          size_t k = j % wc;
          uint64_t sv = atomic_load(&m->state[k]);
          if ((sv >> 16) != j + 1 || (sv & 0xFFFF) >= MS_PARENT) continue;
          if (atomic_compare_exchange_strong(&m->state[k], &sv,
                                             MS_TAG(j, MS_PARENT))) {
            pp_map_settle(&c, m, pp->mdata, j, (size_t)m->start[k], stopping);
            atomic_store_explicit(&m->state[k], MS_TAG(j, MS_DONE),
                                  memory_order_release);
            did = 1;
          }
        }
      }
    }
    if (did) {
      idle = (pp_idle_t){0, 0};
      continue;
    }
    if (next >= filled) break;
    if (pp_idle_look_again(&idle)) continue;
    /* Sleep until about half of the chunks in the window are done (or the
     * next one, when fewer remain), or the dispatcher says something. */
    uint64_t nd = atomic_load(&m->ndone);
    uint64_t want = next + (filled - next + 1) / 2;
    atomic_store(&m->wake_at, want > nd + 1 ? want : nd + 1);
    uint32_t seq = atomic_load(&m->done_seq);
    atomic_store(&m->pwait, 1);
    if (atomic_load(&m->ndone) < atomic_load(&m->wake_at) &&
        atomic_load(&m->state[next % wc]) != MS_TAG(next, MS_DONE) &&
        !(atomic_load(&pp->shut) & 2) && !atomic_load(&pp->broken_flag))
      pp_futex_wait_for(&m->done_seq, seq, 0.1);
    atomic_store(&m->pwait, 0);
    idle = (pp_idle_t){0, 0};
  }
  /* Chunks never copied in (a cancelling shutdown or a broken pool). */
  for (size_t j = filled; j < nchunks; j++) {
    size_t lo = j * chunk, cnt = n - lo < chunk ? n - lo : chunk;
    if (status)
      for (size_t i = 0; i < cnt; i++) status[lo + i] = stopping;
    if (!c.first) c.first = stopping;
  }
  /* Tell the workers the map is over and wait until every one has left it
   * (or died), so that the next map can reuse the window. */
  atomic_store(&m->stop, 1);
  atomic_fetch_add(&m->ready_seq, 1);
  pp_futex_wake_all(&m->ready_seq);
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_on, 0);
  pthread_mutex_unlock(&pp->mu);
  pp_wake(pp, 1);
  uint32_t a;
  while ((a = atomic_load(&pp->map_attached)) != 0)
    pp_futex_wait_for(&pp->map_attached, a, 0.1);
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_busy, 0);
  pthread_mutex_unlock(&pp->mu);
  pp_wake(pp, 1); /* a shutdown may wait for this map */
  return c.first;
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
