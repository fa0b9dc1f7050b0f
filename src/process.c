/* SPDX-License-Identifier: MIT */
/* process.c - child processes: start, join, exit codes, signals, reaping.
 *
 * Invariants:
 * - `mutex` guards `state` and `exitcode`, and serialises every waitpid() on
 *   the child and every signal sent to it.  While `state` is RUNNING the child
 *   has not been reaped, so its pid cannot have been reused: a signal or a
 *   waitpid under the mutex after checking `state` always reaches our child.
 * - `pid` and `pidfd` never change after mh_process_start() returns; they are
 *   read without the lock.  `pidfd` is -1 when the kernel has no pidfds.
 * - Waiting (waitid or poll on the pidfd, or sleeping) happens without the
 *   mutex held, so is_alive/exitcode/kill from other threads never block
 *   behind a join; the reaping itself is always done under the mutex.
 * - Every child started here and not yet reaped has an entry in `kids`
 *   (with a pidfd of its own, dup'ed), also after its handle was freed; the
 *   entry goes when the child is reaped.  Entries are looked at through
 *   their pidfds only (poll: readable once the child ended), never reaped
 *   through, so `kids` never races a handle's waitpid().  A forked process
 *   starts with no entries (its parent's children are not its own).
 * - Locks: each handle's `mutex`, `launcher.mutex` (see the launcher
 *   section) and `ps.kids.mutex`.  ps.kids.mutex may be taken under a handle's
 *   mutex (a reap unregisters), never the other way round; launcher.mutex
 *   is never held with either.
 *
 * Starting a child costs, above the fork() itself, as little as we could
 * make it (fork is slow under some hypervisors and every system call, page
 * fault or context switch on the way counts):
 * - The child's set-up (the parent-death signal, SIGINT ignored) cannot fail
 *   on Linux unless a seccomp filter denies it.  So when the forking thread
 *   runs without a seccomp filter (prctl(PR_GET_SECCOMP) says 0), the child
 *   reports nothing and mh_process_start() returns as soon as fork() does.
 *   Under a filter the child reports the result of its set-up over a pipe
 *   before it runs the user's function, and the parent waits for it.  The
 *   parent reads exactly one int rather than waiting for end-of-file: a
 *   sibling forked at the same moment by another thread may hold a copy of
 *   the write end (close-on-exec does not help without exec).
 * - The child calls libc through function pointers bound when the library
 *   was loaded, not through lazily bound PLT entries: those would be resolved
 *   again in every child (a symbol lookup plus copy-on-write faults).
 * - A join without a timeout blocks in waitid(P_PIDFD, WNOWAIT) and then
 *   reaps under the mutex: one sleep, no poll.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manyhands/process.h"
#include "internal.h"
#include "thread_internal.h"

enum { MH__PROC_RUNNING, MH__PROC_DONE, MH__PROC_LOST };

/* Tags: I set at start, read-only after; M the handle's mutex. */
struct mh_process_s {
  pthread_mutex_t mutex;
  pid_t pid;      /* I */
  int pidfd;      /* I */
  int state;      /* M: MH__PROC_* */
  int exitcode;   /* M: valid when state == DONE */
  int daemon;     /* I */
  char ident[64]; /* I: "N", or the parent's ident + ":N" */
  char name[];    /* I */
};

/* ---- who this process is, and its children ----------------------------- */

/* An entry of ps.kids: a child started here and not yet reaped. */
typedef struct kid {
  pid_t pid;
  int pidfd; /* our own, closed when the entry goes */
  int daemon;
} kid_t;

/* The state a child writes between fork() and the user's function (the
 * fork handler resets `kids`, child_main() sets `cur`), in one 128-byte
 * block, so that it costs the child one copy-on-write page fault, not
 * several.  In the main process `cur` is
 * "MainProcess", no ident, no parent.  Tags: K ps.kids.mutex; C written
 * only in a new child before it runs the user's function, read-only after. */
static struct {
  struct {
    const char *name;  /* C */
    const char *ident; /* C */
    int daemon;        /* C */
    pid_t parent;      /* C */
  } cur;
  struct {
    pthread_mutex_t mutex;
    kid_t *v;      /* K */
    size_t n, cap; /* K */
    int no_pidfd;  /* K: a child got no pidfd: exit cannot wait for it */
  } kids;
  atomic_uint child_counter; /* for "Process-N" */
} ps __attribute__((aligned(128))) = {{"MainProcess", "", 0, 0},
                                      {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0}, 0};

static pthread_once_t kids_once = PTHREAD_ONCE_INIT;

static void kids_fork_prepare(void) { pthread_mutex_lock(&ps.kids.mutex); }

static void kids_fork_parent(void) { pthread_mutex_unlock(&ps.kids.mutex); }

static void kids_fork_child(void) {
  /* The parent's children are not ours: drop their entries (the array
   * itself stays allocated; it is reused). */
  for (size_t i = 0; i < ps.kids.n; i++) close(ps.kids.v[i].pidfd);
  ps.kids.n = 0;
  ps.kids.no_pidfd = 0;
  atomic_store(&ps.child_counter, 0);
  /* The forking thread took the lock in kids_fork_prepare and is this
   * child's only thread: it unlocks it (a re-initialisation instead would
   * leave ThreadSanitizer thinking the lock is still held, and report a
   * lock-order inversion at the child's exit). */
  pthread_mutex_unlock(&ps.kids.mutex);
}

static void kids_at_exit(void);

static void kids_init(void) {
  pthread_atfork(kids_fork_prepare, kids_fork_parent, kids_fork_child);
  atexit(kids_at_exit);
}

/* Register a child just started.  Without memory for the entry the child
 * still runs; only exit does not wait for it. */
static void kids_add(pid_t pid, int pidfd, int daemon) {
  int fd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 0) : -1;
  pthread_mutex_lock(&ps.kids.mutex);
  if (fd < 0) {
    ps.kids.no_pidfd = 1;
  } else {
    if (ps.kids.n == ps.kids.cap) {
      size_t cap = ps.kids.cap ? ps.kids.cap * 2 : 16;
      kid_t *v = mh__realloc(ps.kids.v, cap * sizeof *v);
      if (v) {
        ps.kids.v = v;
        ps.kids.cap = cap;
      }
    }
    if (ps.kids.n < ps.kids.cap) {
      ps.kids.v[ps.kids.n++] = (kid_t){pid, fd, daemon};
      fd = -1;
    }
  }
  pthread_mutex_unlock(&ps.kids.mutex);
  if (fd >= 0) close(fd);
}

/* The child `pid` was reaped: drop its entry.  The oldest entry of that
 * pid is the one (a reused pid is registered after its reap). */
static void kids_remove(pid_t pid) {
  int fd = -1;
  pthread_mutex_lock(&ps.kids.mutex);
  for (size_t i = 0; i < ps.kids.n; i++) {
    if (ps.kids.v[i].pid != pid) continue;
    fd = ps.kids.v[i].pidfd;
    memmove(&ps.kids.v[i], &ps.kids.v[i + 1], (ps.kids.n - i - 1) * sizeof *ps.kids.v);
    ps.kids.n--;
    break;
  }
  /* Nothing is kept while no child runs (a leak checker sees no block). */
  kid_t *drop = NULL;
  if (ps.kids.n == 0) {
    drop = ps.kids.v;
    ps.kids.v = NULL;
    ps.kids.cap = 0;
  }
  pthread_mutex_unlock(&ps.kids.mutex);
  mh__free(drop);
  if (fd >= 0) close(fd);
}

static int pidfd_ended(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  for (;;) {
    int r = poll(&p, 1, ms);
    if (r >= 0) return r > 0;
    if (errno != EINTR) return 1; /* should not happen: do not hang on it */
  }
}

/* Python's exit: non-daemon threads first, then SIGTERM to the daemon
 * children, then wait for every child. */
static void kids_at_exit(void) {
  mh__threads_wait_at_exit();
  pthread_mutex_lock(&ps.kids.mutex);
  kid_t *v = ps.kids.v;
  size_t n = ps.kids.n;
  /* Taken out of the registry: a thread reaping one now finds no entry. */
  ps.kids.v = NULL;
  ps.kids.n = ps.kids.cap = 0;
  pthread_mutex_unlock(&ps.kids.mutex);
  for (size_t i = 0; i < n; i++) {
    if (!v[i].daemon || pidfd_ended(v[i].pidfd, 0)) continue;
#ifdef SYS_pidfd_send_signal
    syscall(SYS_pidfd_send_signal, v[i].pidfd, SIGTERM, NULL, 0);
#endif
  }
  for (size_t i = 0; i < n; i++) {
    pidfd_ended(v[i].pidfd, -1);
    close(v[i].pidfd);
  }
  mh__free(v);
}

/* ---- small system-call wrappers that retry on EINTR -------------------- */

static ssize_t read_full(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static pid_t waitpid_eintr(pid_t pid, int *status, int options) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR);
  return r;
}

/* waitid()'s id type for a pidfd (Linux 5.4); older headers lack it. */
#ifdef P_PIDFD
#define MH__P_PIDFD P_PIDFD
#else
#define MH__P_PIDFD 3
#endif

static int pidfd_open_compat(pid_t pid) {
#ifdef SYS_pidfd_open
  /* pidfd_open(2) returns a close-on-exec descriptor; ENOSYS before 5.3. */
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : (int)fd;
#else
  (void)pid;
  return -1;
#endif
}

/* Turn a wait status into Python's exitcode convention. */
static int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return -WTERMSIG(st);
  return -1;
}

/* Reap the child if it has ended.  Caller holds the mutex. */
static void try_reap_locked(mh_process_t *p) {
  if (p->state != MH__PROC_RUNNING) return;
  int st = 0;
  pid_t r = waitpid_eintr(p->pid, &st, WNOHANG);
  if (r == p->pid) {
    p->exitcode = decode_status(st);
    p->state = MH__PROC_DONE;
    kids_remove(p->pid);
  } else if (r < 0 && errno == ECHILD) {
    /* Reaped elsewhere (SIGCHLD ignored, waitpid(-1) in the program), or the
     * handle was inherited by a process that is not the child's parent. */
    p->state = MH__PROC_LOST;
    kids_remove(p->pid);
  }
}

/* ---- the child side ----------------------------------------------------- */

/* What the child calls before the user's function, through pointers bound at
 * load time (see the top of the file).  volatile, so that the compiler calls
 * through them instead of turning the calls back into PLT calls. */
static int (*volatile child_prctl)(int, ...) = prctl;
static pid_t (*volatile child_getppid)(void) = getppid;
static ssize_t (*volatile child_write)(int, const void *, size_t) = write;
static int (*volatile child_close)(int) = close;
static void (*volatile child_exit)(int) = _exit;
static size_t (*volatile child_fpending)(FILE *) = __fpending;

/* Runs in the child between fork() and the user's function.  Returns 0 or a
 * negative code to report to the parent. */
static int child_setup(pid_t parent, unsigned flags, const sigset_t *mask) {
  if (child_prctl(PR_SET_PDEATHSIG, (unsigned long)SIGKILL, 0UL, 0UL, 0UL) != 0) return -errno;
  /* The parent may have died between fork() and prctl(); then the signal
   * will never come, and we were re-parented: leave at once.  A ppid of 0
   * says the parent is outside our PID namespace (it unshared
   * CLONE_NEWPID and we are the first of the new one): no pid of its to
   * compare, so that short window goes unchecked there. */
  pid_t pp = child_getppid();
  if (pp != parent && pp != 0) child_exit(1);
  if (flags & MH_PROCESS_IGNORE_SIGINT) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGINT, &sa, NULL) != 0) return -errno;
    /* SIGINT was blocked across the fork (see fork_child): one that came
     * in the meantime was pending, and SIG_IGN has discarded it.  Undo only
     * that block: a whole-mask restore would also undo what the fork
     * handlers changed in the child (mpi_core.c unblocks SIGTERM there). */
    if (!sigismember(mask, SIGINT)) {
      sigset_t intr;
      sigemptyset(&intr);
      sigaddset(&intr, SIGINT);
      if (pthread_sigmask(SIG_UNBLOCK, &intr, NULL) != 0) return MH_EINVAL;
    }
  }
  return 0;
}

static void child_write_full(int fd, const void *buf, size_t len) {
  size_t put = 0;
  while (put < len) {
    ssize_t n = child_write(fd, (const char *)buf + put, len - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    put += (size_t)n;
  }
}

static void child_main(int report_fd, pid_t parent, unsigned flags, const sigset_t *mask,
                       mh_process_fn fn, void *arg, mh_process_t *handle) {
  /* The child's copy of the parent's new handle stays referenced from this
   * frame until _exit(), so leak checkers do not call it lost.  Freeing it
   * instead would cost copy-on-write faults on the heap pages. */
  mh_process_t *volatile keep = handle;
  (void)keep;
  /* Who we are: pointers into our copy of the handle, which stays. */
  ps.cur.name = handle->name;
  ps.cur.ident = handle->ident;
  ps.cur.daemon = handle->daemon;
  ps.cur.parent = parent;
  int rc = child_setup(parent, flags, mask);
  if (report_fd >= 0) {
    child_write_full(report_fd, &rc, sizeof rc);
    child_close(report_fd);
  } else if (rc != 0) {
    /* Nobody waits for a report (no seccomp filter was in force when we
     * were forked, so this should not happen): say why on stderr. */
    static const char msg[] = "manyhands: child process set-up failed\n";
    child_write_full(2, msg, sizeof msg - 1);
  }
  if (rc != 0) child_exit(127);
  int status = fn(arg);
  /* As a Python child: wait for our non-daemon threads, end our daemon
   * children and wait for all of them, then exit. */
  kids_at_exit();
  /* Python's child flushes sys.stdout/stderr and then os._exit()s: the
   * prints appear, but the parent's atexit handlers do not run twice.  Only
   * a stream that holds output is flushed: fflush() writes to the stream's
   * lock, and a write to memory shared with the parent costs a page copy
   * (fflush(NULL) took more time than all the rest of a start+join). */
  if (child_fpending(stdout) > 0) fflush(stdout);
  if (child_fpending(stderr) > 0) fflush(stderr);
  child_exit(status & 0xff);
}

/* ---- forking, directly or through the launcher thread -------------------
 *
 * Linux sends the parent-death signal when the *thread* that forked the
 * child ends, not the process.  So that a child started from a short-lived
 * thread is not killed when that thread returns (Python's children survive
 * it), calls from any thread but the main one hand the fork() itself to one
 * long-lived "launcher" thread, made on first need, which lives until the
 * process ends.  The main thread forks directly (the fast path).
 *
 * The launcher state is guarded by launcher.mutex; a request lives on the
 * requester's stack until its `done` is set under that mutex.  The launcher
 * blocks every signal, except that it takes on the requester's signal mask
 * around the fork(), so the child inherits the mask it would have had. */

typedef struct fork_req {
  mh_process_fn fn;
  void *arg;
  unsigned flags;
  int fds[2];           /* the report pipe, or -1 -1 when no report is needed */
  pid_t parent;         /* the pid of the process that forks */
  mh_process_t *handle; /* the child frees its copy */
  sigset_t mask;        /* the requester's signal mask */
  pid_t pid;            /* result: the child's pid, or -1 */
  int err;              /* errno of a failed fork() */
  int done;
  struct fork_req *next;
} fork_req_t;

static struct {
  pthread_mutex_t mutex;
  pthread_cond_t cond; /* broadcast: new request, or a request done */
  fork_req_t *head, *tail;
  int state; /* 0 no launcher, 1 running, -1 could not be created */
} launcher = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0};

static pthread_once_t launcher_atfork_once = PTHREAD_ONCE_INIT;

static void launcher_atfork_child(void) {
  /* Only the forking thread exists in a child: no launcher there (a
   * thread of the child makes its own when it needs one). */
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t c = PTHREAD_COND_INITIALIZER;
  memcpy(&launcher.mutex, &m, sizeof m);
  memcpy(&launcher.cond, &c, sizeof c);
  launcher.head = launcher.tail = NULL;
  launcher.state = 0;
}

static void launcher_register_atfork(void) {
  pthread_atfork(NULL, NULL, launcher_atfork_child);
}

/* fork() and, in the child, run the function (never returns there). */
static pid_t fork_child(fork_req_t *r) {
  /* The child inherits the seccomp filters of this, the forking, thread:
   * only under a filter can its set-up fail, and need a report pipe. */
  r->fds[0] = r->fds[1] = -1;
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) > 0 && pipe2(r->fds, O_CLOEXEC) != 0) return -1;
  /* Anything still buffered would otherwise be printed by both processes.
   * Flushed before SIGINT is blocked below: a write to a full pipe (output
   * paged by `less`, say) can block for good, and Ctrl-C must still end us. */
  fflush(NULL);
  /* mh_process_start() does not wait for the child to ignore SIGINT, so
   * SIGINT is blocked across the fork: one sent to the child before it
   * ignores the signal waits, and is then discarded, instead of killing it. */
  sigset_t old;
  sigemptyset(&old);
  int blocked = 0;
  if (r->flags & MH_PROCESS_IGNORE_SIGINT) {
    sigset_t intr;
    sigemptyset(&intr);
    sigaddset(&intr, SIGINT);
    blocked = pthread_sigmask(SIG_BLOCK, &intr, &old) == 0;
    if (!blocked) {
      errno = EINVAL;
      goto fail;
    }
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (r->fds[0] >= 0) child_close(r->fds[0]);
    child_main(r->fds[1], r->parent, r->flags, &old, r->fn, r->arg, r->handle);
  }
  if (blocked) {
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
  }
  if (pid >= 0) return pid;
fail:
  if (r->fds[0] >= 0) {
    int e = errno;
    close(r->fds[0]);
    close(r->fds[1]);
    r->fds[0] = r->fds[1] = -1;
    errno = e;
  }
  return -1;
}

static void *launcher_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&launcher.mutex);
  for (;;) {
    while (!launcher.head) pthread_cond_wait(&launcher.cond, &launcher.mutex);
    fork_req_t *r = launcher.head;
    launcher.head = r->next;
    if (!launcher.head) launcher.tail = NULL;
    pthread_mutex_unlock(&launcher.mutex);
    sigset_t all;
    pthread_sigmask(SIG_SETMASK, &r->mask, &all);
    r->pid = fork_child(r);
    r->err = r->pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    pthread_mutex_lock(&launcher.mutex);
    r->done = 1;
    pthread_cond_broadcast(&launcher.cond);
  }
  return NULL;
}

/* Start a detached thread with every signal blocked (it inherits the mask
 * in force while it is created): the launcher and the reapers must never be
 * the thread that runs the program's signal handlers.  0 or an errno. */
static int start_quiet_thread(void *(*fn)(void *), void *arg) {
  pthread_attr_t attr;
  pthread_t tid;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_attr_init(&attr);
  if (!rc) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, fn, arg);
    pthread_attr_destroy(&attr);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* Start the launcher if needed; 1 when it runs.  Caller holds the mutex. */
static int launcher_ready_locked(void) {
  if (launcher.state != 0) return launcher.state > 0;
  int rc = start_quiet_thread(launcher_main, NULL);
  /* Without a launcher, fork directly (the thread caveat then applies). */
  launcher.state = rc ? -1 : 1;
  return launcher.state > 0;
}

/* Whether the calling thread is the process's main thread, asked of the
 * kernel once per thread.  In a forked child the cached answer of the
 * forking thread may say "no" for what is now a main thread; that only
 * sends its forks through a launcher, which is still correct. */
static _Thread_local int main_thread_cache; /* 0 unknown, 1 yes, 2 no */

static int is_main_thread(pid_t self) {
  if (!main_thread_cache)
    main_thread_cache = (pid_t)syscall(SYS_gettid) == self ? 1 : 2;
  return main_thread_cache == 1;
}

/* Fork for a request, through the launcher when not on the main thread.
 * Returns the pid or -1 with errno set. */
static pid_t start_fork(fork_req_t *r) {
  if (!is_main_thread(r->parent)) {
    pthread_once(&launcher_atfork_once, launcher_register_atfork);
    pthread_mutex_lock(&launcher.mutex);
    if (launcher_ready_locked()) {
      pthread_sigmask(SIG_SETMASK, NULL, &r->mask);
      r->done = 0;
      r->next = NULL;
      if (launcher.tail)
        launcher.tail->next = r;
      else
        launcher.head = r;
      launcher.tail = r;
      pthread_cond_broadcast(&launcher.cond);
      while (!r->done) pthread_cond_wait(&launcher.cond, &launcher.mutex);
      pthread_mutex_unlock(&launcher.mutex);
      errno = r->err;
      return r->pid;
    }
    pthread_mutex_unlock(&launcher.mutex);
  }
  return fork_child(r);
}

/* ---- the parent side ---------------------------------------------------- */

int mh_process_start(mh_process_t **process, mh_process_fn fn, void *arg,
                     const mh_process_options_t *opts) {
  if (process) *process = NULL;
  if (!process || !fn) return MH_EINVAL;
  unsigned flags = opts ? opts->flags : 0u;
  if (flags & ~MH_PROCESS_IGNORE_SIGINT) return MH_EINVAL;
  /* Python: "daemonic processes are not allowed to have children". */
  if (ps.cur.daemon) return MH_EPERM;
  pthread_once(&kids_once, kids_init);

  char ident[64];
  unsigned num = atomic_fetch_add(&ps.child_counter, 1u) + 1u;
  if (ps.cur.ident[0])
    snprintf(ident, sizeof ident, "%.40s:%u", ps.cur.ident, num);
  else
    snprintf(ident, sizeof ident, "%u", num);
  char auto_name[80];
  const char *name = opts ? opts->name : NULL;
  if (!name) {
    snprintf(auto_name, sizeof auto_name, "Process-%s", ident);
    name = auto_name;
  }
  size_t name_len = strlen(name);
  mh_process_t *p = mh__calloc(1, sizeof *p + name_len + 1);
  if (!p) return MH_ENOMEM;
  memcpy(p->name, name, name_len + 1);
  memcpy(p->ident, ident, sizeof ident);
  p->daemon = opts && opts->daemon;
  int rc = pthread_mutex_init(&p->mutex, NULL);
  if (rc) {
    mh__free(p);
    return -rc;
  }
  fork_req_t req;
  memset(&req, 0, sizeof req);
  req.fn = fn;
  req.arg = arg;
  req.flags = flags;
  req.handle = p;
  req.parent = getpid();
  pid_t pid = start_fork(&req);
  if (pid < 0) {
    rc = -errno;
    pthread_mutex_destroy(&p->mutex);
    mh__free(p);
    return rc;
  }
  p->pid = pid;
  p->state = MH__PROC_RUNNING;
  /* Opened before the child can be reaped, so it names our child for sure. */
  p->pidfd = pidfd_open_compat(pid);
  kids_add(pid, p->pidfd, p->daemon);

  if (req.fds[0] >= 0) {
    close(req.fds[1]);
    int child_rc = 0;
    ssize_t n = read_full(req.fds[0], &child_rc, sizeof child_rc);
    close(req.fds[0]);
    if (n == (ssize_t)sizeof child_rc && child_rc != 0) {
      /* The child could not set itself up and is exiting: reap it. */
      waitpid_eintr(pid, NULL, 0);
      kids_remove(pid);
      if (p->pidfd >= 0) close(p->pidfd);
      pthread_mutex_destroy(&p->mutex);
      mh__free(p);
      return child_rc < 0 ? child_rc : MH_EINVAL;
    }
    /* A short read means the child died before reporting (killed from
     * outside); it was started all the same, and join reports how it
     * ended. */
  }
  *process = p;
  return 0;
}

pid_t mh_process_pid(const mh_process_t *process) {
  return process ? process->pid : (pid_t)MH_EINVAL;
}

int mh_process_sentinel(const mh_process_t *process) {
  if (!process) return MH_EINVAL;
  return process->pidfd >= 0 ? process->pidfd : MH_ENOSYS;
}

/* Wait for the child to end, at most until the deadline, without the lock.
 * Returns 0 when it may have ended (the caller re-checks) or MH_ETIMEDOUT. */
static int wait_exit(mh_process_t *p, const mh__deadline_t *dl, double *backoff) {
  double left = -1; /* forever */
  if (dl->kind == MH__DL_NOW) return MH_ETIMEDOUT;
  if (dl->kind == MH__DL_AT) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left = (double)(dl->at.tv_sec - now.tv_sec) +
           (double)(dl->at.tv_nsec - now.tv_nsec) * 1e-9;
    if (left <= 0) return MH_ETIMEDOUT;
  }
  if (p->pidfd >= 0) {
    struct pollfd pfd = {p->pidfd, POLLIN, 0};
    /* Round up so that a wait never ends just before the deadline. */
    int ms = left < 0 ? -1 : (left > 3600.0 ? 3600000 : (int)ceil(left * 1000.0));
    int r = poll(&pfd, 1, ms);
    if (r < 0 && errno != EINTR) mh__sleep(0.001); /* should not happen */
    return 0;
  }
  /* No pidfd: sleep in growing steps (50 us up to 10 ms). */
  double step = *backoff;
  if (left >= 0 && step > left) step = left;
  mh__sleep(step);
  if (*backoff < 0.010) *backoff *= 2;
  return 0;
}

/* 1 until waitid(P_PIDFD) turned out to be missing (Linux before 5.4). */
static atomic_int have_waitid_pidfd = 1;

/* Join without a timeout: block in waitid() until the child is a zombie,
 * without reaping it (WNOWAIT), then reap it under the mutex.  Returns 0
 * once it is reaped, or 1 when waitid(P_PIDFD) is not available. */
static int join_forever(mh_process_t *p) {
  for (;;) {
    pthread_mutex_lock(&p->mutex);
    int running = p->state == MH__PROC_RUNNING;
    pthread_mutex_unlock(&p->mutex);
    if (!running) return 0;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r = waitid((idtype_t)MH__P_PIDFD, (id_t)p->pidfd, &info, WEXITED | WNOWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EINVAL) {
      atomic_store(&have_waitid_pidfd, 0);
      return 1;
    }
    /* Ended (or reaped by another thread, or elsewhere: ECHILD). */
    pthread_mutex_lock(&p->mutex);
    try_reap_locked(p);
    running = p->state == MH__PROC_RUNNING;
    pthread_mutex_unlock(&p->mutex);
    if (!running) return 0;
    if (r < 0) mh__sleep(0.001); /* should not happen: do not spin */
  }
}

int mh_process_join(mh_process_t *process, double timeout) {
  if (!process) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if (dl.kind == MH__DL_FOREVER && process->pidfd >= 0 && atomic_load(&have_waitid_pidfd) &&
      join_forever(process) == 0)
    return 0;
  double backoff = 50e-6;
  for (;;) {
    pthread_mutex_lock(&process->mutex);
    try_reap_locked(process);
    int running = process->state == MH__PROC_RUNNING;
    pthread_mutex_unlock(&process->mutex);
    if (!running) return 0;
    rc = wait_exit(process, &dl, &backoff);
    if (rc) {
      /* One last look: it may have ended exactly at the deadline. */
      pthread_mutex_lock(&process->mutex);
      try_reap_locked(process);
      running = process->state == MH__PROC_RUNNING;
      pthread_mutex_unlock(&process->mutex);
      return running ? rc : 0;
    }
  }
}

int mh_process_is_alive(mh_process_t *process) {
  if (!process) return MH_EINVAL;
  pthread_mutex_lock(&process->mutex);
  try_reap_locked(process);
  int alive = process->state == MH__PROC_RUNNING;
  pthread_mutex_unlock(&process->mutex);
  return alive;
}

int mh_process_exitcode(mh_process_t *process, int *exitcode) {
  if (!process || !exitcode) return MH_EINVAL;
  pthread_mutex_lock(&process->mutex);
  try_reap_locked(process);
  int rc = 0;
  if (process->state == MH__PROC_RUNNING)
    rc = MH_EBUSY;
  else if (process->state == MH__PROC_LOST)
    rc = MH_ECHILD;
  else
    *exitcode = process->exitcode;
  pthread_mutex_unlock(&process->mutex);
  return rc;
}

static int send_signal(mh_process_t *process, int sig) {
  if (!process) return MH_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&process->mutex);
  /* Only signal an unreaped child: its pid cannot belong to anyone else. */
  if (process->state == MH__PROC_RUNNING) {
    int r;
#ifdef SYS_pidfd_send_signal
    if (process->pidfd >= 0)
      r = (int)syscall(SYS_pidfd_send_signal, process->pidfd, sig, NULL, 0);
    else
#endif
      r = kill(process->pid, sig);
    if (r != 0 && errno != ESRCH) rc = -errno;
  }
  pthread_mutex_unlock(&process->mutex);
  return rc;
}

int mh_process_terminate(mh_process_t *process) { return send_signal(process, SIGTERM); }

int mh_process_kill(mh_process_t *process) { return send_signal(process, SIGKILL); }

/* The background reaper of a freed, still running child: one small detached
 * thread per such child, blocked in waitpid() until it ends.  The pid cannot
 * be reused before this waitpid, since only it reaps the child. */
static void *reaper_main(void *arg) {
  pid_t pid = (pid_t)(intptr_t)arg;
  waitpid_eintr(pid, NULL, 0);
  kids_remove(pid);
  return NULL;
}

void mh_process_free(mh_process_t *process) {
  if (!process) return;
  pthread_mutex_lock(&process->mutex);
  try_reap_locked(process);
  int running = process->state == MH__PROC_RUNNING;
  pthread_mutex_unlock(&process->mutex);
  if (running) {
    int rc = start_quiet_thread(reaper_main, (void *)(intptr_t)process->pid);
    if (rc) {
      /* No thread to wait for it: the only way left to avoid a zombie is
       * to end the child now (documented as a last resort). */
      kill(process->pid, SIGKILL);
      waitpid_eintr(process->pid, NULL, 0);
      kids_remove(process->pid);
    }
  }
  if (process->pidfd >= 0) close(process->pidfd);
  pthread_mutex_destroy(&process->mutex);
  mh__free(process);
}

/* ---- names, daemons, the current process -------------------------------- */

const char *mh_process_name(const mh_process_t *process) {
  return process ? process->name : NULL;
}

int mh_process_daemon(const mh_process_t *process) {
  return process ? process->daemon : MH_EINVAL;
}

int mh_process_active_children(pid_t *pids, size_t cap) {
  if (!pids && cap > 0) return MH_EINVAL;
  size_t count = 0;
  pthread_mutex_lock(&ps.kids.mutex);
  int rc = ps.kids.no_pidfd ? MH_ENOSYS : 0;
  for (size_t i = 0; i < ps.kids.n && !rc; i++) {
    if (pidfd_ended(ps.kids.v[i].pidfd, 0)) continue;
    if (count < cap) pids[count] = ps.kids.v[i].pid;
    count++;
  }
  pthread_mutex_unlock(&ps.kids.mutex);
  if (rc) return rc;
  return count > (size_t)INT32_MAX ? INT32_MAX : (int)count;
}

const char *mh_process_current_name(void) { return ps.cur.name; }

int mh_process_current_daemon(void) { return ps.cur.daemon; }

pid_t mh_process_parent_pid(void) { return ps.cur.parent; }
