/* mpi_core.c - MPI start-up, the rank table and the watchdog that names a
 * dead rank.
 *
 * Open MPI (like the other launchers) puts every rank in its own process
 * group, so Ctrl-C reaches only mpirun; when mpirun is interrupted, when a
 * rank dies, or when a rank calls MPI_Abort, the launcher sends SIGTERM to the
 * surviving ranks and SIGKILL a second later.  mh_mpi_init blocks SIGTERM in
 * the calling thread (so every thread started afterwards, MPI's included,
 * inherits the block) and a watchdog thread takes it with sigwait().  It then
 * looks at the ranks on its own host: a rank whose pid is gone is the one that
 * died (the launcher reaps it before it tears the job down), and the lowest
 * living rank on that host prints our message naming it.  The others wait a
 * moment before exiting, so that their own exit is not mistaken for a death.
 * A rank that ends the job on purpose (mh__mpi_fatal) first leaves a marker
 * file, so the watchdogs stay quiet about its exit.
 *
 * mh__mpi is written only on the main thread while the watchdog does not run
 * (see mpi_internal.h); the watchdog reads it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../executor_internal.h"
#include "mpi_internal.h"

mh__mpi_state_t mh__mpi;

/* The executor refers to the MPI backend only weakly (it links without
 * MPI); this reference pulls the backend out of the static archive into every
 * program that calls mh_mpi_init. */
__attribute__((used)) static const mh__backend_ops_t *const keep_backend =
    &mh__backend_mpi;

static pthread_t watchdog;
static _Atomic int watchdog_stop; /* set by mh_mpi_finalize */
static sigset_t watched, old_mask;

const char *mh__mpi_host(int r) {
  return mh__mpi.hosts + (size_t)r * MH__MPI_HOST_MAX;
}

int mh__mpi_err(int mpi_rc) { return mpi_rc == MPI_SUCCESS ? 0 : MH_EMPI; }

void mh__mpi_nap(long microseconds) {
  struct timespec ts = {microseconds / 1000000, (microseconds % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

/* The marker a deliberate abort leaves, named after rank 0's host and pid so
 * that it belongs to this job only. */
static void marker_path(char *buf, size_t len) {
  snprintf(buf, len, "/dev/shm/manyhands-%s-%d.abort", mh__mpi_host(0),
           (int)mh__mpi.pids[0]);
}

void mh__mpi_fatal(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "manyhands: %s\n", msg);
  fflush(stderr);
  char path[160];
  marker_path(path, sizeof path);
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  MPI_Abort(mh__mpi.comm, 1);
  _exit(1); /* not reached: MPI_Abort does not return */
}

/* The rank of a dead peer on this host, or -1. */
static int find_dead_local(void) {
  const char *me = mh__mpi_host(mh__mpi.rank);
  for (int r = 0; r < mh__mpi.size; r++) {
    if (r == mh__mpi.rank || strcmp(mh__mpi_host(r), me) != 0) continue;
    if (kill(mh__mpi.pids[r], 0) != 0 && errno == ESRCH) return r;
  }
  return -1;
}

/* The lowest rank on this host that is still alive (maybe this one). */
static int lowest_living_local(void) {
  const char *me = mh__mpi_host(mh__mpi.rank);
  for (int r = 0; r < mh__mpi.size; r++) {
    if (strcmp(mh__mpi_host(r), me) != 0) continue;
    if (r == mh__mpi.rank || kill(mh__mpi.pids[r], 0) == 0) return r;
  }
  return mh__mpi.rank;
}

static void *watchdog_main(void *arg) {
  MH__UNUSED(arg);
  for (;;) {
    int sig = 0;
    if (sigwait(&watched, &sig) != 0) continue;
    if (watchdog_stop) return NULL;
    /* Take stock at once: the other ranks are being stopped too. */
    int dead = find_dead_local();
    char path[160];
    marker_path(path, sizeof path);
    int deliberate = access(path, F_OK) == 0;
    char msg[320];
    int len = 0;
    if (dead >= 0 && !deliberate && lowest_living_local() == mh__mpi.rank) {
      len = snprintf(msg, sizeof msg,
                     "manyhands: MPI rank %d (pid %d on %s) died; stopping "
                     "the other ranks\n",
                     dead, (int)mh__mpi.pids[dead], mh__mpi_host(dead));
    } else if (dead < 0 && !deliberate && mh__mpi.rank == 0) {
      len = snprintf(msg, sizeof msg,
                     "manyhands: stopped by signal %d (mpirun interrupted, "
                     "or a rank on another node died); every rank ends\n",
                     sig);
    }
    if (len > 0) {
      if (write(STDERR_FILENO, msg, (size_t)len) < 0) { /* nothing to do */
      }
    } else {
      /* Stay alive a little so that a rank taking stock does not take our
       * exit for a death. */
      struct timespec ts = {0, 300000000};
      nanosleep(&ts, NULL);
    }
    /* By now every rank here has looked for the marker. */
    if (deliberate) unlink(path);
    _exit(128 + sig);
  }
}

static double env_timeout(void) {
  const char *s = getenv("MH_MPI_TIMEOUT");
  if (s && *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == '\0' && v > 0) return v;
  }
  return 30.0;
}

int mh_mpi_init(int *argc, char ***argv) {
  if (mh__mpi.inited) return MH_EBUSY;
  sigemptyset(&watched);
  sigaddset(&watched, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &watched, &old_mask);

  int flag = 0, provided = 0, rc;
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
  mh__mpi.timeout = env_timeout();

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
  if (mh__mpi.rank == 0) {
    char path[160];
    marker_path(path, sizeof path);
    unlink(path); /* a stale one from an earlier job with our pid */
  }

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
  return rc;
fail_mpi:
  if (mh__mpi.we_init_mpi) MPI_Finalize();
  mh__mpi.we_init_mpi = 0;
fail_mask:
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  return MH_EMPI;
}

int mh_mpi_finalize(void) {
  if (!mh__mpi.inited) return MH_EINVAL;
  /* Every rank > 0 receives rank 0's stop message exactly once, in
   * mh_mpi_serve or here. */
  if (mh__mpi.rank == 0 && !mh__mpi.serve_stopped) mh_mpi_serve_stop();
  if (mh__mpi.rank != 0) mh__mpi_take_stop();
  /* Wait for every rank before the watchdogs stop: a rank that dies now is
   * still reported. */
  MPI_Barrier(mh__mpi.comm);
  watchdog_stop = 1;
  pthread_kill(watchdog, SIGTERM);
  pthread_join(watchdog, NULL);
  MPI_Comm_free(&mh__mpi.comm);
  if (mh__mpi.we_init_mpi) MPI_Finalize();
  mh__free(mh__mpi.pids);
  mh__free(mh__mpi.hosts);
  memset(&mh__mpi, 0, sizeof mh__mpi);
  /* SIGTERM may be pending for the process (sent to it as a whole while
   * we stop); it would then be taken by the restored default action. */
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  return 0;
}

int mh_mpi_rank(void) { return mh__mpi.inited ? mh__mpi.rank : MH_EINVAL; }
int mh_mpi_size(void) { return mh__mpi.inited ? mh__mpi.size : MH_EINVAL; }
