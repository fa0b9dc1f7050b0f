/* process.c - child processes: start, join, exit codes, signals, reaping.
 *
 * Invariants:
 * - `mutex` guards `state` and `exitcode`, and serialises every waitpid() on
 *   the child and every signal sent to it.  While `state` is RUNNING the child
 *   has not been reaped, so its pid cannot have been reused: a signal or a
 *   waitpid under the mutex after checking `state` always reaches our child.
 * - `pid` and `pidfd` never change after mh_process_start() returns; they are
 *   read without the lock.  `pidfd` is -1 when the kernel has no pidfds.
 * - Waiting (poll on the pidfd, or sleeping) happens without the mutex held,
 *   so is_alive/exitcode/kill from other threads never block behind a join.
 * - Locks: each handle's `mutex`, and `launcher.mutex` (see the launcher
 *   section).  They are never held together.
 *
 * The child reports the result of its own set-up over a pipe before it runs
 * the user's function.  The parent reads exactly one int rather than waiting
 * for end-of-file: a sibling forked at the same moment by another thread may
 * hold a copy of the write end (close-on-exec does not help without exec).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

enum { MH__PROC_RUNNING, MH__PROC_DONE, MH__PROC_LOST };

struct mh_process_s {
  pthread_mutex_t mutex;
  pid_t pid;
  int pidfd;
  int state;    /* MH__PROC_*, guarded by mutex */
  int exitcode; /* valid when state == DONE, guarded by mutex */
};

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

static void write_full(int fd, const void *buf, size_t len) {
  size_t put = 0;
  while (put < len) {
    ssize_t n = write(fd, (const char *)buf + put, len - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    put += (size_t)n;
  }
}

static pid_t waitpid_eintr(pid_t pid, int *status, int options) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR);
  return r;
}

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
  } else if (r < 0 && errno == ECHILD) {
    /* Reaped elsewhere (SIGCHLD ignored, waitpid(-1) in the program), or the
     * handle was inherited by a process that is not the child's parent. */
    p->state = MH__PROC_LOST;
  }
}

/* ---- the child side ----------------------------------------------------- */

/* Runs in the child between fork() and the user's function.  Returns 0 or a
 * negative code to report to the parent. */
static int child_setup(pid_t parent, unsigned flags) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -errno;
  /* The parent may have died between fork() and prctl(); then the signal
   * will never come, and we were re-parented: leave at once. */
  if (getppid() != parent) _exit(1);
  if (flags & MH_PROCESS_IGNORE_SIGINT) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGINT, &sa, NULL) != 0) return -errno;
  }
  return 0;
}

static void child_main(int report_fd, pid_t parent, unsigned flags,
                       mh_process_fn fn, void *arg, mh_process_t *handle) {
  /* The child's copy of the parent's new handle stays referenced from this
   * frame until _exit(), so leak checkers do not call it lost.  Freeing it
   * instead would cost copy-on-write faults on the heap pages. */
  mh_process_t *volatile keep = handle;
  (void)keep;
  int rc = child_setup(parent, flags);
  write_full(report_fd, &rc, sizeof rc);
  close(report_fd);
  if (rc != 0) _exit(127);
  int status = fn(arg);
  /* Python's child flushes sys.stdout/stderr and then os._exit()s: the
   * prints appear, but the parent's atexit handlers do not run twice. */
  fflush(NULL);
  _exit(status & 0xff);
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
  int fds[2];
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
  pid_t parent = getpid();
  /* Anything still buffered would otherwise be printed by both processes. */
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(r->fds[0]);
    child_main(r->fds[1], parent, r->flags, r->fn, r->arg, r->handle);
  }
  return pid;
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

static int is_main_thread(void) { return (pid_t)syscall(SYS_gettid) == getpid(); }

/* Fork for a request, through the launcher when not on the main thread.
 * Returns the pid or -1 with errno set. */
static pid_t start_fork(fork_req_t *r) {
  if (!is_main_thread()) {
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

  mh_process_t *p = mh__calloc(1, sizeof *p);
  if (!p) return MH_ENOMEM;
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
  int *fds = req.fds;
  if (pipe2(fds, O_CLOEXEC) != 0) {
    rc = -errno;
    goto fail_mutex;
  }
  pid_t pid = start_fork(&req);
  if (pid < 0) {
    rc = -errno;
    goto fail_pipe;
  }
  close(fds[1]);
  p->pid = pid;
  p->state = MH__PROC_RUNNING;
  /* Opened before the child can be reaped, so it names our child for sure. */
  p->pidfd = pidfd_open_compat(pid);

  int child_rc = 0;
  ssize_t n = read_full(fds[0], &child_rc, sizeof child_rc);
  close(fds[0]);
  if (n == (ssize_t)sizeof child_rc && child_rc != 0) {
    /* The child could not set itself up and is exiting: reap it. */
    waitpid_eintr(pid, NULL, 0);
    if (p->pidfd >= 0) close(p->pidfd);
    pthread_mutex_destroy(&p->mutex);
    mh__free(p);
    return child_rc < 0 ? child_rc : MH_EINVAL;
  }
  /* A short read means the child died before reporting (killed from
   * outside); it was started all the same, and join reports how it ended. */
  *process = p;
  return 0;

fail_pipe:
  close(fds[0]);
  close(fds[1]);
fail_mutex:
  pthread_mutex_destroy(&p->mutex);
  mh__free(p);
  return rc;
}

pid_t mh_process_pid(const mh_process_t *process) {
  return process ? process->pid : (pid_t)MH_EINVAL;
}

/* Wait for the child to end, at most until the deadline, without the lock.
 * Returns 0 when it may have ended (the caller re-checks) or MH_ETIMEDOUT. */
static int wait_exit(mh_process_t *p, const mh__deadline_t *dl, double *backoff) {
  double left = -1; /* forever */
  if (dl->kind == 0) return MH_ETIMEDOUT;
  if (dl->kind == 1) {
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

int mh_process_join(mh_process_t *process, double timeout) {
  if (!process) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
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
    }
  }
  if (process->pidfd >= 0) close(process->pidfd);
  pthread_mutex_destroy(&process->mutex);
  mh__free(process);
}
