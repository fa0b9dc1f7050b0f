/* SPDX-License-Identifier: MIT */
/* mpi_core.c - MPI start-up, the rank table, the sentinel that names a dead
 * rank and the watchdog that ends a rank stopped by the launcher.
 *
 * A rank cannot report its own death, and the launcher (mpirun, or Slurm's
 * srun) tears the job down within milliseconds, so mh_mpi_init forks, before
 * MPI starts, a small sentinel process beside each rank.  It holds the read
 * end of a pipe whose write end only the rank holds: when the pipe reaches
 * end-of-file without a "quiet" byte first, the rank is gone without our
 * say-so (killed, crashed, out of memory), and the sentinel writes the message
 * the rank prepared for it at start-up ("manyhands: MPI rank 1 (pid 123 on
 * node7) died ...") to the rank's own stderr, which the launcher forwards to
 * the user from any node, then exits.  The rank sends the quiet byte when it
 * ends normally (mh_mpi_finalize), when it ends the job on purpose
 * (mh__mpi_fatal, which prints its own message) and when the launcher stops
 * it (the watchdog), so a sentinel speaks only for a real death, and nothing
 * is left on disk: the pipe and the sentinel vanish with the rank.  The
 * sentinel ignores SIGTERM/SIGINT/SIGHUP (the launcher signals the rank's
 * whole process group) so that it can still speak; the launcher's SIGKILL, a
 * second later, finds it already gone.
 *
 * Open MPI (like the other launchers) puts every rank in its own process
 * group, so Ctrl-C reaches only mpirun; when mpirun is interrupted, when a
 * rank dies, or when a rank calls MPI_Abort, the launcher sends SIGTERM to the
 * surviving ranks and SIGKILL a second later.  mh_mpi_init blocks SIGTERM in
 * the calling thread (so every thread started afterwards, MPI's included,
 * inherits the block) and a watchdog thread takes it with sigwaitinfo(),
 * quiets the sentinel, and exits: rank 0 says that the launcher ends the job,
 * and a rank sent SIGTERM by anyone but the launcher (its parent) names
 * itself, since a SIGTERM is handled here and never reaches the sentinel.
 *
 * mh__mpi is written only on the main thread while the watchdog does not run
 * (see mpi_internal.h); the watchdog reads it.  sentinel_fd is written by
 * mh_mpi_init/finalize only; the quiet byte may be written by two threads at
 * once (fatal and the watchdog), which is harmless: it is one byte.
 *
 * Layering: the core calls nothing in mpi_map.c or mpi_pi.c, which are built
 * on it.  The public mh_mpi_init / mh_mpi_finalize are in mpi.c, on top of
 * both: they call mh__mpi_core_init / mh__mpi_core_finalize here.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../trace_internal.h"
#include "mpi_internal.h"

mh__mpi_state_t mh__mpi;

static pthread_t watchdog;
static _Atomic int watchdog_stop; /* set by mh__mpi_core_finalize */
static sigset_t watched, old_mask;
/* 1 while SIGTERM is blocked by mh_mpi_init (it was not before): a child
 * forked meanwhile unblocks it again (see sentinel_forget_in_child). */
static _Atomic int term_blocked_by_us;

const char *mh__mpi_host(int r) {
  return mh__mpi.hosts + (size_t)r * MH__MPI_HOST_MAX;
}

int mh__mpi_err(int mpi_rc) { return mpi_rc == MPI_SUCCESS ? 0 : MH_EMPI; }

void mh__mpi_nap(long microseconds) {
  struct timespec ts = {microseconds / 1000000, (microseconds % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

/* ---- the sentinel ----------------------------------------------------- */

static int sentinel_fd = -1;  /* write end of the pipe to our sentinel */
static pid_t sentinel_pid = -1; /* our child: reaped by sentinel_stop */
static _Atomic int aborting;  /* this rank ends the job on purpose */

enum { SENTINEL_MSG_MAX = 512 };

/* Tell the sentinel to exit without a word: this rank's end is known. */
static void sentinel_quiet(void) {
  int fd = sentinel_fd;
  if (fd >= 0 && write(fd, "Q", 1) < 0) { /* it is gone already: fine */
  }
}

/* The sentinel's life: read what the rank sends; at end-of-file, if the rank
 * neither said "quiet" nor is unknown, write its death notice.  Only
 * async-signal-safe calls: the rank may already run other threads.
 *
 * A pipe is a byte stream: a sentinel slow to read (a busy machine) gets
 * several messages in one read(), "M<notice>\nM<notice>\nQ" say.  So the
 * bytes are parsed one by one: outside a notice, 'Q' means quiet and 'M'
 * starts a notice, which runs up to and including its one '\n'. */
static void sentinel_main(int rfd) {
  static char notice[SENTINEL_MSG_MAX], next[SENTINEL_MSG_MAX];
  size_t len = 0, nlen = 0;
  int in_notice = 0;
  for (;;) {
    char buf[SENTINEL_MSG_MAX];
    ssize_t got = read(rfd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (ssize_t i = 0; i < got; i++) {
      char c = buf[i];
      if (!in_notice) {
        if (c == 'Q') _exit(0);
        if (c == 'M') in_notice = 1, nlen = 0;
        continue;
      }
      if (nlen < sizeof next) next[nlen++] = c;
      if (c == '\n') { /* complete: it replaces the previous one */
        memcpy(notice, next, nlen);
        len = nlen;
        in_notice = 0;
      }
    }
  }
  if (len > 0 && write(STDERR_FILENO, notice, len) < 0) _exit(1);
  _exit(0);
}

/* A child the rank forks (a process pool, say) must not hold the pipe
 * open: the rank's death would then go unnoticed while the child lives. */
static void sentinel_forget_in_child(void) {
  if (sentinel_fd >= 0) close(sentinel_fd);
  sentinel_fd = -1;
  sentinel_pid = -1; /* the sentinel is not the child's child */
  /* SIGTERM is blocked in the rank's threads only so that its watchdog can
   * take it; no watchdog runs in the child, and with the block inherited a
   * SIGTERM (mh_process_terminate, a pool's shutdown) would never end it. */
  if (term_blocked_by_us) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &term, NULL);
    term_blocked_by_us = 0;
  }
}

/* Fork the sentinel (before MPI starts, when the process is normally still
 * single-threaded).  0, or -1 (the job then runs without one). */
static int sentinel_start(void) {
  static int atfork_done;
  if (!atfork_done && pthread_atfork(NULL, NULL, sentinel_forget_in_child) == 0)
    atfork_done = 1;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    /* Keep stderr and the pipe only: holding the rank's stdout or its
     * sockets would keep them open after the rank's death. */
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, STDIN_FILENO);
      dup2(null, STDOUT_FILENO);
    }
    for (int fd = 3; fd < 1024; fd++)
      if (fd != p[0]) close(fd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_NAME, "mh-sentinel", 0, 0, 0);
    /* If the rank died before we got here, the pipe is already at EOF and
     * we leave without a word (no notice yet). */
    sentinel_main(p[0]);
  }
  close(p[0]);
  sentinel_fd = p[1];
  sentinel_pid = pid;
  /* A first notice, for a death while MPI starts: the launchers tell each
   * process its rank in the environment. */
  static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                          "PMI_RANK", "SLURM_PROCID"};
  const char *rank = NULL;
  for (size_t i = 0; i < sizeof rank_vars / sizeof rank_vars[0] && !rank; i++)
    rank = getenv(rank_vars[i]);
  char host[MH__MPI_HOST_MAX] = {0}, msg[SENTINEL_MSG_MAX];
  gethostname(host, sizeof host - 1);
  int len = snprintf(msg, sizeof msg,
                     "Mmanyhands: MPI rank %s (pid %d on %s) died while MPI "
                     "was starting; the launcher stops the other ranks\n",
                     rank ? rank : "?", (int)getpid(), host);
  if (len > 0 && len < (int)sizeof msg &&
      write(sentinel_fd, msg, (size_t)len) < 0) { /* it is gone: fine */
  }
  return 0;
}

/* Hand the sentinel the notice to print if this rank dies. */
static void sentinel_arm(void) {
  if (sentinel_fd < 0) return;
  char msg[SENTINEL_MSG_MAX];
  int len = snprintf(msg, sizeof msg,
                     "Mmanyhands: MPI rank %d (pid %d on %s) died (killed or "
                     "crashed); the launcher stops the other ranks\n",
                     mh__mpi.rank, (int)mh__mpi.pids[mh__mpi.rank],
                     mh__mpi_host(mh__mpi.rank));
  if (len > 0 && len < (int)sizeof msg &&
      write(sentinel_fd, msg, (size_t)len) < 0) { /* no sentinel: fine */
  }
}

/* Quiet the sentinel and close our end (it then exits). */
static void sentinel_stop(void) {
  if (sentinel_fd < 0) return;
  sentinel_quiet();
  close(sentinel_fd);
  sentinel_fd = -1;
  /* It exits at once on the quiet byte: reap it, or it stays a zombie
   * child of the rank for the rest of the program.  Bounded, in case it is
   * stopped; then it is left to the rank's end, as before. */
  for (int i = 0; i < 200 && sentinel_pid > 0; i++) {
    pid_t r = waitpid(sentinel_pid, NULL, WNOHANG);
    if (r == sentinel_pid || (r < 0 && errno != EINTR)) break;
    if (r == 0) mh__mpi_nap(1000);
  }
  sentinel_pid = -1;
}

void mh__mpi_fatal(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Our own message says what happened: the sentinel stays quiet, and so
   * does our watchdog when the launcher's SIGTERM reaches us too. */
  aborting = 1;
  sentinel_quiet();
  /* Rank 0's trace is written before MPI_Abort, which runs no atexit. */
  mh__mpi_trace_end(-1, 0);
  fprintf(stderr, "manyhands: %s\n", msg);
  fflush(stderr);
  MPI_Abort(mh__mpi.comm, 1);
  _exit(1); /* not reached: MPI_Abort does not return */
}

static void *watchdog_main(void *arg) {
  MH__UNUSED(arg);
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int sig = sigwaitinfo(&watched, &si);
    if (sig < 0) continue;
    if (watchdog_stop) return NULL;
    /* We end now, and our end is explained here or elsewhere: the
     * sentinel stays quiet. */
    sentinel_quiet();
    char msg[300];
    int len = 0;
    if (si.si_code == SI_USER && si.si_pid != getppid() &&
        si.si_pid != getpid()) {
      /* Not the launcher (our parent: mpirun's daemon, slurmstepd): someone
       * signalled this rank alone, and only it can say so. */
      len = snprintf(msg, sizeof msg,
                     "manyhands: MPI rank %d (pid %d on %s) was sent signal "
                     "%d by pid %d; the launcher stops the other ranks\n",
                     mh__mpi.rank, (int)getpid(), mh__mpi_host(mh__mpi.rank),
                     sig, (int)si.si_pid);
    } else if (mh__mpi.rank == 0 && !aborting) {
      /* The launcher stops every rank: whoever caused it (a dead rank's
       * sentinel, a rank's own fatal message, Ctrl-C on mpirun) has spoken
       * already; rank 0 alone says that the job ends. */
      len = snprintf(msg, sizeof msg,
                     "manyhands: rank 0 stopped by the launcher (signal %d): "
                     "mpirun was interrupted, or another rank died or ended "
                     "the job; every rank ends\n", sig);
    }
    if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0) {
    }
    /* The launcher's SIGKILL follows in a second: rank 0 writes what its
     * trace holds now, a dead rank marked. */
    mh__mpi_trace_end(-1, 0);
    _exit(128 + sig);
  }
}

/* A positive number of seconds from the environment, or `dflt`. */
static double env_seconds(const char *name, double dflt) {
  const char *s = getenv(name);
  if (s && *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == '\0' && v > 0) return v;
  }
  return dflt;
}

int mh__mpi_core_init(int *argc, char ***argv) {
  if (mh__mpi.inited) return MH_EBUSY;
  sigemptyset(&watched);
  sigaddset(&watched, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &watched, &old_mask);
  term_blocked_by_us = !sigismember(&old_mask, SIGTERM);

  int flag = 0, provided = 0, rc;
  aborting = 0;
  /* Without a sentinel a death is still reported, by the launcher only. */
  sentinel_start();
  MPI_Initialized(&flag);
  if (!flag) {
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) !=
        MPI_SUCCESS)
      goto fail_mask;
    mh__mpi.we_init_mpi = 1;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) goto fail_mpi;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &mh__mpi.comm) != MPI_SUCCESS)
    goto fail_mpi;
  /* Errors come back to us as codes: we decide what to say and whom to
   * stop, instead of MPI's default abort with its own message. */
  MPI_Comm_set_errhandler(mh__mpi.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(mh__mpi.comm, &mh__mpi.rank);
  MPI_Comm_size(mh__mpi.comm, &mh__mpi.size);
  mh__mpi.timeout = env_seconds("MH_MPI_TIMEOUT", 30.0);
  mh__mpi.task_timeout = env_seconds("MH_MPI_TASK_TIMEOUT", 0.0);

  size_t n = (size_t)mh__mpi.size;
  mh__mpi.pids = mh__calloc(n, sizeof *mh__mpi.pids);
  mh__mpi.hosts = mh__calloc(n, MH__MPI_HOST_MAX);
  if (!mh__mpi.pids || !mh__mpi.hosts) {
    rc = MH_ENOMEM;
    goto fail_comm;
  }
  int mypid = (int)getpid();
  char host[MH__MPI_HOST_MAX] = {0};
  gethostname(host, sizeof host - 1);
  int *pids = mh__calloc(n, sizeof *pids);
  if (!pids) {
    rc = MH_ENOMEM;
    goto fail_comm;
  }
  if (MPI_Allgather(&mypid, 1, MPI_INT, pids, 1, MPI_INT, mh__mpi.comm) !=
          MPI_SUCCESS ||
      MPI_Allgather(host, MH__MPI_HOST_MAX, MPI_CHAR, mh__mpi.hosts,
                    MH__MPI_HOST_MAX, MPI_CHAR, mh__mpi.comm) != MPI_SUCCESS) {
    mh__free(pids);
    rc = MH_EMPI;
    goto fail_comm;
  }
  for (size_t i = 0; i < n; i++) mh__mpi.pids[i] = (pid_t)pids[i];
  mh__free(pids);
  /* A trace names each rank's tracks; only rank 0 writes the file. */
  mh__trace_mpi(mh__mpi.rank, mh__mpi.size, mh__mpi.hosts, MH__MPI_HOST_MAX);
  sentinel_arm();

  watchdog_stop = 0;
  if (pthread_create(&watchdog, NULL, watchdog_main, NULL) != 0) {
    rc = MH_EAGAIN;
    goto fail_comm;
  }
  mh__mpi.serve_stopped = 0;
  mh__mpi.inited = 1;
  return 0;

fail_comm:
  mh__free(mh__mpi.pids);
  mh__free(mh__mpi.hosts);
  mh__mpi.pids = NULL;
  mh__mpi.hosts = NULL;
  MPI_Comm_free(&mh__mpi.comm);
  if (mh__mpi.we_init_mpi) MPI_Finalize();
  mh__mpi.we_init_mpi = 0;
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  term_blocked_by_us = 0;
  sentinel_stop();
  return rc;
fail_mpi:
  if (mh__mpi.we_init_mpi) MPI_Finalize();
  mh__mpi.we_init_mpi = 0;
fail_mask:
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  term_blocked_by_us = 0;
  sentinel_stop();
  return MH_EMPI;
}

void mh__mpi_core_finalize(void) {
  /* Wait for every rank before the watchdogs stop: a rank that dies now is
   * still reported. */
  MPI_Barrier(mh__mpi.comm);
  watchdog_stop = 1;
  pthread_kill(watchdog, SIGTERM);
  pthread_join(watchdog, NULL);
  /* From here on the rank ends normally, or fails in MPI_Finalize, which
   * reports itself. */
  sentinel_stop();
  MPI_Comm_free(&mh__mpi.comm);
  if (mh__mpi.we_init_mpi) MPI_Finalize();
  mh__free(mh__mpi.pids);
  mh__free(mh__mpi.hosts);
  memset(&mh__mpi, 0, sizeof mh__mpi);
  /* SIGTERM may be pending for the process (sent to it as a whole while
   * we stop); it would then be taken by the restored default action. */
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  term_blocked_by_us = 0;
}

int mh_mpi_rank(void) { return mh__mpi.inited ? mh__mpi.rank : MH_EINVAL; }
int mh_mpi_size(void) { return mh__mpi.inited ? mh__mpi.size : MH_EINVAL; }
