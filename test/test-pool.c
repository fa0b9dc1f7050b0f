/* SPDX-License-Identifier: MIT */
/* test-pool.c - the process backend of the executor: submit, map and imap,
 * killed and crashing workers, cancellation, timeouts, the worker life cycle
 * and bad input, all through the executor API.  The engine underneath
 * (procpool*.c) is tested directly in test-procpool.c. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor/procpool.h"
#include "pool-common.h"

#if MH__ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* ---- the process backend of the executor --------------------------------- */

static int t_pid(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  int pid = (int)getpid();
  memcpy(out, &pid, sizeof pid);
  return 0;
}

TEST(submit_result) {
  mh_executor_t *ex = pool_new(2, 0);
  ASSERT_EQ(mh_executor_backend(ex), MH_BACKEND_PROCESSES);
  ASSERT_EQ(mh_executor_workers(ex), 2);
  enum { K = 64 };
  long in[K], out[K];
  mh_future_t *fs[K];
  for (int i = 0; i < K; i++) {
    in[i] = i;
    out[i] = -1;
    ASSERT_OK(mh_executor_submit(ex, t_sq, in + i, sizeof(long), out + i,
                                 sizeof(long), NULL, &fs[i]));
  }
  for (int i = 0; i < K; i++) {
    ASSERT_OK(mh_future_result(fs[i], 30));
    ASSERT_EQ(mh_future_done(fs[i]), 1);
    ASSERT_EQ(out[i], (long)i * i);
    int pid, code;
    ASSERT_ERR(mh_future_worker_exit(fs[i], &pid, &code), MH_EINVAL);
    mh_future_release(fs[i]);
  }
  /* The worker runs in another process. */
  int pid = 0;
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_pid, NULL, 0, &pid, sizeof pid, NULL, &f));
  ASSERT_OK(mh_future_result(f, 30));
  mh_future_release(f);
  ASSERT(pid > 0 && pid != (int)getpid());
  pool_free(ex);
}


TEST(map) {
  mh_executor_t *ex = pool_new(2, 0);
  check_map(ex, 1, 0);
  check_map(ex, 1000, 1);
  check_map(ex, 10007, 0);
  check_map(ex, 100000, 3);
  check_map(ex, (size_t)mht_scaled(1000000), 0);
  pool_free(ex);
}

TEST(imap) {
  mh_executor_t *ex = pool_new(3, 0);
  enum { N = 5000 };
  static long in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i;
  for (int mode = 0; mode < 2; mode++) {
    static char seen[N];
    memset(seen, 0, sizeof seen);
    memset(out, 0, sizeof out);
    mh_map_iter_t *it;
    ASSERT_OK(mh_executor_imap(ex, t_sq, NULL, in, sizeof(long), out,
                               sizeof(long), N, mode ? 7 : 0,
                               mode ? MH_MAP_UNORDERED : 0, &it));
    size_t idx, k = 0;
    int st, rc;
    while ((rc = mh_map_iter_next(it, 30, &idx, &st)) == 0) {
      if (!mode) ASSERT_UEQ(idx, k);
      ASSERT_ULE(idx, N - 1);
      ASSERT_EQ(seen[idx], 0);
      seen[idx] = 1;
      ASSERT_EQ(st, 0);
      ASSERT_EQ(out[idx], (long)(idx * idx));
      k++;
    }
    ASSERT_ERR(rc, MH_EEOF);
    ASSERT_UEQ(k, N);
    mh_map_iter_free(it);
  }
  pool_free(ex);
}

static void *killer(void *arg) {
  shm_t *s = arg;
  while (!atomic_load(&s->hang_pid)) mht_sleep(0.0005);
  kill(atomic_load(&s->hang_pid), SIGKILL);
  return NULL;
}

/* SIGKILL the worker that runs item 5000 of a 10,000-item map, in the middle
 * of its chunk: exactly that item fails (or, with retries, is re-run), every
 * other result is right, and the same pool then maps again. */
static void kill_in_map(int retries, size_t chunksize) {
  shm_t *s = shm_new();
  s->hang_item = 5000;
  mh_executor_t *ex = pool_new(2, retries);
  enum { N = 10000 };
  static long in[N], out[N];
  static int st[N];
  for (int i = 0; i < N; i++) in[i] = i, out[i] = -1, st[i] = 99;
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, killer, s), 0);
  int rc = mh_executor_map(ex, t_sq, s, in, sizeof(long), out, sizeof(long),
                           N, chunksize, st);
  pthread_join(th, NULL);
  ASSERT_ERR(rc, retries ? 0 : MH_EWORKERDIED);
  for (int i = 0; i < N; i++) {
    if (i == 5000 && !retries) {
      ASSERT_ERR(st[i], MH_EWORKERDIED);
    } else {
      ASSERT_ERR(st[i], 0);
      ASSERT_EQ(out[i], (long)i * i);
    }
  }
  ASSERT_EQ(atomic_load(&s->hang_runs), retries ? 2 : 1);
  int pids[2];
  ASSERT_EQ(pool_pids(ex, pids, 2), 2);
  ASSERT(pids[0] != s->hang_pid && pids[1] != s->hang_pid);
  check_map(ex, N, chunksize);
  /* submit: the future carries the pid and the signal. */
  atomic_store(&s->hang_runs, 0);
  atomic_store(&s->hang_pid, 0);
  ASSERT_EQ(pthread_create(&th, NULL, killer, s), 0);
  mh_future_t *f;
  long v = 5000, o;
  ASSERT_OK(mh_executor_submit(ex, t_sq, &v, sizeof v, &o, sizeof o, s, &f));
  rc = mh_future_result(f, 30);
  pthread_join(th, NULL);
  if (retries) {
    ASSERT_OK(rc);
    ASSERT_EQ(o, 5000L * 5000);
  } else {
    ASSERT_ERR(rc, MH_EWORKERDIED);
    int pid = 0, code = 0;
    ASSERT_OK(mh_future_worker_exit(f, &pid, &code));
    ASSERT_EQ(pid, atomic_load(&s->hang_pid));
    ASSERT_EQ(code, -SIGKILL);
  }
  mh_future_release(f);
  pool_free(ex);
  munmap(s, sizeof *s);
}

TEST(kill_worker_map) { kill_in_map(0, 0); }
TEST(kill_worker_map_chunksize1) { kill_in_map(0, 1); }
TEST(kill_worker_map_retry) { kill_in_map(1, 0); }

static int t_crash(const void *in, size_t isz, void *out, size_t osz,
                   void *ctx) {
  int how;
  memcpy(&how, in, sizeof how);
  if (how == 1) {
    /* A wild store (not NULL, which UBSan would catch first). */
    volatile uintptr_t addr = 64;
    *(volatile int *)addr = 1;
  }
  if (how == 2) {
#if MH__ASAN
    __lsan_disable(); /* the worker's heap is the parent's copy: no report */
#endif
    exit(3);
  }
  if (how == 3) abort();
  if (how == 4)
    for (;;) pause();
  if (how == 5) return MH_EUSER - 5;
  return 0;
}

TEST(crashing_task_fails_alone) {
  mh_executor_t *ex = pool_new(2, 0);
  int hows[] = {1, 0, 2, 0, 3, 5};
  int want[] = {-SIGSEGV, 0, 3, 0, -SIGABRT, 0};
  mh_future_t *fs[6];
  for (int i = 0; i < 6; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &hows[i], sizeof(int), NULL, 0,
                                 NULL, &fs[i]));
  for (int i = 0; i < 6; i++) {
    int rc = mh_future_result(fs[i], 30), pid = 0, code = 99;
    if (hows[i] == 0) {
      ASSERT_OK(rc);
    } else if (hows[i] == 5) {
      ASSERT_ERR(rc, MH_EUSER - 5);
    } else {
      ASSERT_ERR(rc, MH_EWORKERDIED);
      ASSERT_OK(mh_future_worker_exit(fs[i], &pid, &code));
      ASSERT_GT(pid, 0);
      ASSERT_EQ(code, want[i]);
    }
    mh_future_release(fs[i]);
  }
  check_map(ex, 1000, 1);
  pool_free(ex);
}

TEST(cancelling_shutdown_ends_hung_tasks) {
  mh_executor_t *ex = pool_new(2, 0);
  int hang = 4, ok = 0;
  mh_future_t *h[2], *q[8];
  for (int i = 0; i < 2; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &hang, sizeof hang, NULL, 0,
                                 NULL, &h[i]));
  for (int i = 0; i < 8; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &ok, sizeof ok, NULL, 0, NULL,
                                 &q[i]));
  double end = mht_now() + 10;
  while (!(mh_future_running(h[0]) && mh_future_running(h[1])))
  {
    ASSERT(mht_now() < end);
    mht_sleep(0.001);
  }
  mht_sleep(0.05);
  double t0 = mht_now();
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT |
                                         MH_SHUTDOWN_TERMINATE));
  ASSERT_LT(mht_now() - t0, 5.0);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(mh_future_done(h[i]), 1);
    ASSERT_EQ(mh_future_cancelled(h[i]), 1); /* as its result says */
    ASSERT_ERR(mh_future_result(h[i], 0), MH_ECANCELED);
    mh_future_release(h[i]);
  }
  for (int i = 0; i < 8; i++) {
    ASSERT_EQ(mh_future_done(q[i]), 1);
    int rc = mh_future_result(q[i], 0);
    ASSERT(rc == MH_ECANCELED || rc == 0);
    mh_future_release(q[i]);
  }
  mh_future_t *f;
  ASSERT_ERR(mh_executor_submit(ex, t_crash, &ok, sizeof ok, NULL, 0, NULL, &f),
             MH_ESHUTDOWN);
  pool_free(ex);
}

/* Issue 12 item 6: a cancelling shutdown cancels what has not started and
 * lets running tasks finish (Python's cancel_futures=True); before, it
 * SIGTERMed them and their futures said MH_ECANCELED with
 * mh_future_cancelled 0.  Every future's two answers agree. */
static int t_nap(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  mht_sleep(0.3);
  int v = 7;
  memcpy(out, &v, sizeof v);
  return 0;
}

/* Submit n t_nap tasks into f[] (results into out[]) and wait (up to 20 s)
 * until the first two run, one on each worker. */
static void submit_naps_until_two_run(mh_executor_t *ex, int n, mh_future_t **f, int *out) {
  for (int i = 0; i < n; i++)
    ASSERT_OK(mh_executor_submit(ex, t_nap, NULL, 0, &out[i], sizeof out[i],
                                 NULL, &f[i]));
  double end = mht_now() + 20;
  while (!(mh_future_running(f[0]) && mh_future_running(f[1]))) {
    ASSERT(mht_now() < end);
    mht_sleep(0.001);
  }
}

TEST(cancel_futures_lets_running_finish) {
  mh_executor_t *ex = pool_new(2, 0);
  mh_future_t *f[10];
  int out[10] = {0};
  submit_naps_until_two_run(ex, 10, f, out);
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT |
                                         MH_SHUTDOWN_CANCEL_FUTURES));
  int ran = 0, cancelled = 0;
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(mh_future_done(f[i]), 1);
    int rc = mh_future_result(f[i], 0);
    ASSERT_EQ(mh_future_cancelled(f[i]), rc == MH_ECANCELED);
    if (i < 2) ASSERT_OK(rc); /* the two that were running finished */
    if (rc == 0) {
      ASSERT_EQ(out[i], 7);
      ran++;
    } else {
      ASSERT_ERR(rc, MH_ECANCELED);
      cancelled++;
    }
    mh_future_release(f[i]);
  }
  ASSERT_GE(ran, 2);
  ASSERT_GE(cancelled, 1);
  pool_free(ex);
}

/* MH_SHUTDOWN_TERMINATE ends running tasks, also when added by a second
 * call while another thread waits in a plain shutdown: their futures are
 * cancelled, and say so both ways. */
static void *shut_wait(void *arg) {
  mh_executor_shutdown(arg, MH_SHUTDOWN_WAIT);
  return NULL;
}

TEST(terminate_while_another_waits) {
  mh_executor_t *ex = pool_new(2, 0);
  int hang = 4;
  mh_future_t *h[2], *q[4];
  for (int i = 0; i < 2; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &hang, sizeof hang, NULL, 0,
                                 NULL, &h[i]));
  for (int i = 0; i < 4; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &hang, sizeof hang, NULL, 0,
                                 NULL, &q[i]));
  double end = mht_now() + 20;
  while (!(mh_future_running(h[0]) && mh_future_running(h[1]))) {
    ASSERT(mht_now() < end);
    mht_sleep(0.001);
  }
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, shut_wait, ex), 0);
  mht_sleep(0.1);
  double t0 = mht_now();
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_TERMINATE));
  pthread_join(th, NULL);
  ASSERT_LT(mht_now() - t0, 5.0);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(mh_future_cancelled(h[i]), 1);
    ASSERT_ERR(mh_future_result(h[i], 0), MH_ECANCELED);
    mh_future_release(h[i]);
  }
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(mh_future_cancelled(q[i]), 1);
    mh_future_release(q[i]);
  }
  pool_free(ex);
}

/* Issue 12 item 3: a stopped or hung worker used to hang everything.  With
 * a time limit the watchdog SIGKILLs it, the task fails with MH_ETIMEDOUT,
 * the worker is replaced and the pool goes on. */
TEST(timeout_hung_task) {
  mh_executor_t *ex = pool_new(2, 0);
  int hang = 4, ok = 0;
  mh_future_t *h, *f[6];
  double t0 = mht_now();
  ASSERT_OK(mh_executor_submit_timeout(ex, t_crash, &hang, sizeof hang, NULL,
                                       0, NULL, 0.3, &h));
  for (int i = 0; i < 6; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &ok, sizeof ok, NULL, 0, NULL,
                                 &f[i]));
  ASSERT_ERR(mh_future_result(h, 30), MH_ETIMEDOUT);
  ASSERT_GE(mht_now() - t0, 0.29);
  ASSERT_EQ(mh_future_cancelled(h), 0);
  mh_future_release(h);
  for (int i = 0; i < 6; i++) {
    ASSERT_OK(mh_future_result(f[i], 30));
    mh_future_release(f[i]);
  }
  int pids[2];
  ASSERT_EQ(pool_pids(ex, pids, 2), 2); /* replaced */
  check_map(ex, 1000, 1);
  /* The per-call limit of a map: item 5 hangs, only it fails. */
  int in[40], st[40];
  for (int i = 0; i < 40; i++) in[i] = i == 5 ? 4 : 0, st[i] = 99;
  ASSERT_ERR(mh_executor_map_timeout(ex, t_crash, NULL, in, sizeof in[0], NULL,
                                     0, 40, 2, st, 0.3),
             MH_ETIMEDOUT);
  for (int i = 0; i < 40; i++) ASSERT_EQ(st[i], i == 5 ? MH_ETIMEDOUT : 0);
  pool_free(ex);
}

/* The one-minute load average, for failure messages. */
static double load1(void) {
  double l = -1;
  FILE *fp = fopen("/proc/loadavg", "r");
  if (fp) {
    if (fscanf(fp, "%lf", &l) != 1) l = -1;
    fclose(fp);
  }
  return l;
}

/* Fail with everything that tells the failure modes of the test below
 * apart: which future, in which phase, the future's state (not done after
 * the test's own wait, or done with the task's time limit, MH_ETIMEDOUT,
 * or another code), the stopped worker's state and the pool's workers. */
static void stopped_fail(int line, const char *phase, int i, mh_future_t *f,
                         int rc, double waited, int stopped, mh_executor_t *ex) {
  int now[2] = {0, 0};
  int k = mh__pp_worker_pids(mh__executor_impl(ex), now, 2);
  int done = mh_future_done(f);
  mht_fail(__FILE__, line,
           "%s: future %d %s after %.2f s (rc %d %s; running %d cancelled %d); "
           "stopped worker %d is '%c'; the pool's workers now: %d of 2 (%d '%c', "
           "%d '%c'); load %.1f",
           phase, i,
           done ? "done but failed" : "NOT done after the test's own wait",
           waited, rc, mh_strerror(rc), mh_future_running(f),
           mh_future_cancelled(f), stopped, mht_proc_state(stopped), k, now[0],
           now[0] ? mht_proc_state(now[0]) : '-', now[1],
           now[1] ? mht_proc_state(now[1]) : '-', load1());
}

TEST(timeout_sigstopped_worker) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = 2;
  /* A timed-out task runs again on a fresh worker.  The limit is well above
   * the 0.3 s nap and there are 2 re-runs, because beside busy processes a
   * nap that is not stopped can still overrun a tight limit once (seen at a
   * load average of 166); the rule checked is that a stopped worker's task
   * is re-run and the pool lives, not how tight a limit may be. */
  o.task_timeout = 2.0;
  o.retries = 2;
  mh_executor_t *ex = NULL;
  ASSERT_OK(mh_executor_new(&ex, &o));
  mh_future_t *f[2];
  int out[2] = {0};
  submit_naps_until_two_run(ex, 2, f, out);
  int pids[2];
  ASSERT_EQ(pool_pids(ex, pids, 2), 2);
  ASSERT_OK(kill(pids[0], SIGSTOP));
  /* Phase 1: one of the two naps sits on the stopped worker; it is killed
   * after 2 s and the nap re-run on the other or the replacement. */
  double t0 = mht_now();
  for (int i = 0; i < 2; i++) {
    int rc = mh_future_result(f[i], 30);
    if (rc || out[i] != 7)
      stopped_fail(__LINE__, "phase 1 (a nap on a stopped worker)", i, f[i],
                   rc, mht_now() - t0, pids[0], ex);
    mh_future_release(f[i]);
  }
  /* Phase 2, after the replacement: stopped again, the map goes on. */
  long in[64], outl[64];
  int st[64];
  for (int i = 0; i < 64; i++) in[i] = i, outl[i] = -1, st[i] = 99;
  ASSERT_EQ(pool_pids(ex, pids, 2), 2);
  ASSERT_OK(kill(pids[1], SIGSTOP));
  t0 = mht_now();
  int rc = mh_executor_map_timeout(ex, t_sq, NULL, in, sizeof in[0], outl,
                                   sizeof outl[0], 64, 1, st, 0.5);
  double took = mht_now() - t0;
  for (int i = 0; i < 64; i++)
    if (rc || st[i] || outl[i] != (long)i * i)
      mht_fail(__FILE__, __LINE__,
               "phase 2 (a map with a stopped worker): rc %d (%s) after %.2f "
               "s; item %d: status %d (%s), out %ld; stopped worker %d is "
               "'%c'; load %.1f",
               rc, mh_strerror(rc), took, i, st[i], mh_strerror(st[i]),
               outl[i], pids[1], mht_proc_state(pids[1]), load1());
  pool_free(ex);
}

/* Issue 12 item 5: an executor still alive at exit() runs the tasks it was
 * given first (CPython's test_interpreter_shutdown); `daemon` abandons them.
 * Each case runs in a child that counts finished tasks in shared memory,
 * in a counter of its own: the workers of an abandoned (daemon) process
 * pool die a moment after their parent is reaped (the kill goes parent ->
 * fork server -> workers), and a task they finish meanwhile must not count
 * for the next case (it did: 41 and 42 of 40 under AddressSanitizer). */
enum { AX_RUNS = 64 };
static _Atomic int *ax_counts, *ax_count;

static int t_count(const void *in, size_t isz, void *out, size_t osz,
                   void *ctx) {
  mht_sleep(0.01);
  atomic_fetch_add(ax_count, 1);
  return 0;
}

static mh_executor_t *ax_free_me;
static void ax_user_free(void) { mh_executor_free(ax_free_me); }

/* Under AddressSanitizer a fork child of a multi-threaded process must not
 * reach LeakSanitizer's exit check.  gcc 12's runtime does not take its
 * allocator's locks around fork (google/sanitizers#774; newer LLVM runtimes
 * do), so the check blocks for ever on a lock a worker thread held at the
 * fork (seen: the 300 s CTest timeout of this test, stuck in
 * __lsan::LockAllocator), and it reports as leaked the futures those
 * threads, absent in the child, were holding.  Registered before the
 * library's exit handlers, this one runs after them: what case 3 checks,
 * that they do not wait for the parent's executor, is still checked. */
static pid_t ax_maker;
static void ax_fork_child_end(void) {
  if (getpid() != ax_maker) _exit(0);
}

/* how: 0 plain exit, 1 daemon, 2 the program frees it from its own atexit
 * handler, 3 exit from a fork child of the process that made it, 4 the same
 * as 3 with `forks` children forked in a row while the tasks run (the fork
 * lands at random points of the dispatcher's and the workers' work). */
static int ax_run_n(mh_backend_t backend, int how, int forks) {
  static int run;
  ASSERT(run < AX_RUNS);
  ax_count = &ax_counts[run++];
  atomic_store(ax_count, 0);
  pid_t c = fork();
  ASSERT(c >= 0);
  if (c == 0) {
    ax_maker = getpid();
    if (MH__ASAN) atexit(ax_fork_child_end);
    mh_executor_options_t o;
    mh_executor_options_init(&o);
    o.backend = backend;
    o.workers = 2;
    o.daemon = how == 1;
    mh_executor_t *ex = NULL;
    if (mh_executor_new(&ex, &o)) _exit(3);
    for (int i = 0; i < 40; i++) {
      mh_future_t *f;
      if (mh_executor_submit(ex, t_count, NULL, 0, NULL, 0, NULL, &f)) _exit(4);
      mh_future_release(f);
    }
    if (how == 2) {
      ax_free_me = ex;
      atexit(ax_user_free);
    }
    for (int k = 0; k < forks; k++) {
      mht_jitter(2000);
      pid_t g = fork();
      if (g < 0) _exit(6);
      if (g == 0) exit(0); /* must not wait for its parent's executor */
      /* A child that does not end is the hang this case looks for. */
      int st = mht_wait_child_for(g, 45);
      if (st == -1) _exit(7);
      if (!WIFEXITED(st) || WEXITSTATUS(st)) _exit(5);
    }
    exit(0);
  }
  int st = mht_wait_child_for(c, 90);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
    mht_fail(__FILE__, __LINE__,
             "%s backend, case %d: the child %s (status %#x; 7: a fork child "
             "of it did not end in 45 s)",
             backend == MH_BACKEND_THREADS ? "threads" : "processes", how,
             st == -1 ? "did not end in 90 s" : "failed", st == -1 ? 0 : st);
  return atomic_load(ax_count);
}

static int ax_run(mh_backend_t backend, int how) {
  return ax_run_n(backend, how, how == 3 ? 1 : 0);
}

static void ax_setup(void) {
  ax_counts = mmap(NULL, AX_RUNS * sizeof *ax_counts, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(ax_counts != MAP_FAILED);
}

TEST(executors_at_exit) {
  ax_setup();
  mh_backend_t bs[2] = {MH_BACKEND_THREADS, MH_BACKEND_PROCESSES};
  for (int b = 0; b < 2; b++) {
    ASSERT_EQ(ax_run(bs[b], 0), 40);
    int abandoned = ax_run(bs[b], 1);
    /* (A sanitizer's own exit work is slow enough for all to finish.) */
    if (!MH__TSAN && !MH__ASAN) ASSERT_LT(abandoned, 40);
    ASSERT_EQ(ax_run(bs[b], 2), 40);
    ASSERT_EQ(ax_run(bs[b], 3), 40);
  }
  munmap(ax_counts, AX_RUNS * sizeof *ax_counts);
}

/* The same with many fork children exiting while the executor works: a
 * fork child inherits the parent's locks in whatever state the other
 * threads left them, and its exit must still end promptly. */
TEST(executors_at_exit_forks) {
  ax_setup();
  mh_backend_t bs[2] = {MH_BACKEND_THREADS, MH_BACKEND_PROCESSES};
  /* ThreadSanitizer sleeps 1 s in every exit (its atexit_sleep_ms). */
  int forks = MH__TSAN ? 2 : 12;
  for (int r = 0; r < 8; r++)
    for (int b = 0; b < 2; b++) ASSERT_EQ(ax_run_n(bs[b], 3, forks), 40);
  munmap(ax_counts, AX_RUNS * sizeof *ax_counts);
}

/* ---- worker life cycle ---------------------------------------------------- */

static int g_init_value;

static int init_worker(void *arg) {
  shm_t *s = arg;
  atomic_fetch_add(&s->inits, 1);
  g_init_value = 42;
  return 0;
}

static int t_init_value(const void *in, size_t isz, void *out, size_t osz,
                        void *ctx) {
  int v[2] = {g_init_value, (int)getpid()};
  memcpy(out, v, sizeof v);
  return 0;
}

static int init_fail(void *arg) { return MH_EUSER - 9; }

TEST(initializer_and_max_tasks) {
  shm_t *s = shm_new();
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = 2;
  o.initializer = init_worker;
  o.initarg = s;
  o.max_tasks_per_child = 3;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  enum { N = 30 };
  int out[N][2];
  ASSERT_OK(mh_executor_map(ex, t_init_value, NULL, NULL, 0, out,
                            sizeof out[0], N, 1, NULL));
  int distinct = 0;
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(out[i][0], 42);
    int seen = 0;
    for (int k = 0; k < i; k++) seen |= out[k][1] == out[i][1];
    distinct += !seen;
  }
  /* 30 tasks, 3 per process: at least 10 processes ran them. */
  ASSERT_GE(distinct, 10);
  pool_free(ex);
  ASSERT_GE(atomic_load(&s->inits), 10);
  /* A failing initializer fails the tasks of its worker with its code. */
  o.initializer = init_fail;
  o.max_tasks_per_child = 0;
  ASSERT_OK(mh_executor_new(&ex, &o));
  int st[4];
  ASSERT_ERR(mh_executor_map(ex, t_init_value, NULL, NULL, 0, out,
                             sizeof out[0], 4, 1, st),
             MH_EUSER - 9);
  for (int i = 0; i < 4; i++) ASSERT_ERR(st[i], MH_EUSER - 9);
  pool_free(ex);
  munmap(s, sizeof *s);
}

/* A worker still starting (its initializer runs) has not had its chance at
 * the task queued on it: the watchdog used to count that time against the
 * task's limit, killed every worker whose start took longer (a slow
 * initializer, or any start on a loaded machine), counted each as a bad
 * start and broke the pool. */
static int init_slow(void *arg) {
  mht_sleep(0.6);
  return 0;
}

TEST(timeout_slow_initializer) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = 2;
  o.initializer = init_slow;
  o.task_timeout = 0.2;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  enum { N = 8 };
  int in[N], st[N];
  for (int i = 0; i < N; i++) in[i] = 0, st[i] = 99;
  mh_future_t *f[N];
  for (int i = 0; i < N; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &in[i], sizeof in[i], NULL, 0,
                                 NULL, &f[i]));
  for (int i = 0; i < N; i++) {
    ASSERT_OK(mh_future_result(f[i], 60));
    mh_future_release(f[i]);
  }
  /* The same for the claim-based map, on fresh workers. */
  pool_free(ex);
  ASSERT_OK(mh_executor_new(&ex, &o));
  ASSERT_OK(mh_executor_map(ex, t_crash, NULL, in, sizeof in[0], NULL, 0, N, 1,
                            st));
  for (int i = 0; i < N; i++) ASSERT_EQ(st[i], 0);
  pool_free(ex);
}

static int t_big(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  unsigned char seed;
  memcpy(&seed, in, 1);
  unsigned char *o = out;
  for (size_t i = 0; i < osz; i++) o[i] = (unsigned char)(seed + i * 7);
  return 0;
}

TEST(large_outputs) {
  mh_executor_t *ex = pool_new(2, 0);
  size_t osz = 3u << 20; /* 3 MB each, far beyond a pipe buffer */
  enum { K = 6 };
  unsigned char *out = malloc(K * osz), in[K];
  ASSERT(out);
  for (int i = 0; i < K; i++) in[i] = (unsigned char)(i * 31);
  ASSERT_OK(mh_executor_map(ex, t_big, NULL, in, 1, out, osz, K, 1, NULL));
  for (int i = 0; i < K; i++)
    for (size_t b = 0; b < osz; b += 4099)
      ASSERT_EQ(out[i * osz + b], (unsigned char)(in[i] + b * 7));
  mh_future_t *f;
  memset(out, 0, osz);
  ASSERT_OK(mh_executor_submit(ex, t_big, in + 1, 1, out, osz, NULL, &f));
  ASSERT_OK(mh_future_result(f, 30));
  mh_future_release(f);
  ASSERT_EQ(out[osz - 1], (unsigned char)(in[1] + (osz - 1) * 7));
  free(out);
  pool_free(ex);
}

TEST(sigint_ignored) {
  mh_executor_t *ex = pool_new(2, 0);
  int pids[2];
  ASSERT_EQ(pool_pids(ex, pids, 2), 2);
  ASSERT_OK(kill(pids[0], SIGINT));
  ASSERT_OK(kill(pids[1], SIGINT));
  ASSERT_OK(kill(mh__pp_server_pid(mh__executor_impl(ex)), SIGINT));
  mht_sleep(0.1);
  int now[2];
  ASSERT_EQ(pool_pids(ex, now, 2), 2);
  ASSERT_EQ(now[0], pids[0]);
  ASSERT_EQ(now[1], pids[1]);
  check_map(ex, 100, 1);
  pool_free(ex);
}

HELPER(orphan) {
  mh_executor_t *ex = pool_new(2, 0);
  int pids[2];
  pool_pids(ex, pids, 2);
  printf("%d %d %d\n", mh__pp_server_pid(mh__executor_impl(ex)), pids[0],
         pids[1]);
  fflush(stdout);
  raise(SIGKILL);
  return 0;
}

TEST(die_with_parent) {
  mht_proc_result_t r;
  ASSERT_OK(mht_run_helper("orphan", NULL, 30, &r));
  ASSERT_EQ(r.exited, 0);
  ASSERT_EQ(r.status, SIGKILL);
  int p[3];
  ASSERT_EQ(sscanf(r.out, "%d %d %d", &p[0], &p[1], &p[2]), 3);
  mht_proc_free(&r);
  double end = mht_now() + 10;
  for (int i = 0; i < 3; i++) {
    while (kill(p[i], 0) == 0) {
      ASSERT(mht_now() < end);
      mht_sleep(0.005);
    }
  }
}

TEST(bad_input) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  mh_executor_t *ex;
  o.workers = 4097;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.workers = -1;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.workers = 1;
  o.retries = -1;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  o.retries = 0;
  o.max_tasks_per_child = -2;
  ASSERT_ERR(mh_executor_new(&ex, &o), MH_EINVAL);
  ASSERT_ERR(mh_executor_new(NULL, &o), MH_EINVAL);
  o.max_tasks_per_child = 0;
  o.workers = 0; /* the CPU count */
  ASSERT_OK(mh_executor_new(&ex, &o));
  ASSERT_EQ(mh_executor_workers(ex), mh_cpu_count());
  long v = 1, out;
  mh_future_t *f = NULL;
  ASSERT_ERR(mh_executor_submit(ex, NULL, &v, sizeof v, &out, sizeof out, NULL,
                                &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, t_sq, NULL, 8, &out, sizeof out, NULL, &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_submit(ex, t_sq, &v, sizeof v, NULL, 8, NULL, &f),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, NULL, NULL, &v, 8, &out, 8, 1, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, t_sq, NULL, NULL, 8, &out, 8, 1, 0, NULL),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map(ex, t_sq, NULL, &v, 8, &out, 8, SIZE_MAX / 4, 0,
                             NULL),
             MH_EINVAL);
  pool_free(ex);
}

TEST(many_workers_and_alloc_failures) {
  /* 64 workers start, run, and go away. */
  mh_executor_t *ex = pool_new(64, 0);
  check_map(ex, 5000, 1);
  pool_free(ex);
  /* Every allocation failure on the way to a pool leaks nothing. */
  for (long k = 0; k < 20; k++) {
    mht_alloc_fail_after(k);
    mh_executor_options_t o;
    mh_executor_options_init(&o);
    o.backend = MH_BACKEND_PROCESSES;
    o.workers = 2;
    int rc = mh_executor_new(&ex, &o);
    if (rc == 0) {
      long v = 3, out = 0;
      mh_future_t *f = NULL;
      rc = mh_executor_submit(ex, t_sq, &v, sizeof v, &out, sizeof out, NULL,
                              &f);
      if (rc == 0) {
        ASSERT_OK(mh_future_result(f, 30));
        ASSERT_EQ(out, 9);
        mh_future_release(f);
      } else {
        ASSERT_ERR(rc, MH_ENOMEM);
      }
      mh_executor_free(ex);
    } else {
      ASSERT_ERR(rc, MH_ENOMEM);
    }
    ASSERT_EQ(mht_alloc_live(), 0);
    mht_alloc_reset();
    ASSERT_EQ(mht_count_children(), 0);
  }
}

/* Issue 12 item 2: the dispatcher sends a spawn request per worker before it
 * reads a reply; a server that answered with blocking sends filled the
 * socket both ways after a few hundred forks and the pool never started.
 * 4096 (the documented maximum) start, and a map and submits run on them;
 * or, where RLIMIT_NPROC is lower, as many as it allows. */
TEST(start_4096_workers) {
  int n = 4096;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < 4096 + 512 && geteuid() != 0)
    n = (int)rl.rlim_cur / 2;
  if (MH__TSAN || MH__ASAN) n = n > 1024 ? 1024 : n;
  double t0 = mht_now();
  mh_executor_t *ex = pool_new(n, 0);
  double started = mht_now() - t0;
  ASSERT_LT(started, 120.0);
  int *pids = malloc((size_t)n * sizeof *pids);
  ASSERT(pids);
  ASSERT_EQ(pool_pids(ex, pids, n), n);
  free(pids);
  check_map(ex, (size_t)n * 4, 1);
  long v = 12, out = 0;
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_sq, &v, sizeof v, &out, sizeof out, NULL,
                               &f));
  ASSERT_OK(mh_future_result(f, 60));
  ASSERT_EQ(out, 144);
  mh_future_release(f);
  pool_free(ex);
  fprintf(stderr, "  %d workers started in %.2f s\n", n, started);
}

/* Past RLIMIT_NPROC the pool does not start, with a clear code, and leaves
 * no process behind . */
TEST(start_past_nproc_limit) {
  pid_t c = fork();
  ASSERT(c >= 0);
  if (c == 0) {
    struct rlimit rl = {64, 64};
    setrlimit(RLIMIT_NPROC, &rl);
    /* The limit does not bind root: become nobody (the uid of few or no
     * other processes here). */
    if (geteuid() == 0 && setuid(65534) != 0) _exit(3);
    mh_executor_options_t o;
    mh_executor_options_init(&o);
    o.backend = MH_BACKEND_PROCESSES;
    o.workers = 600;
    mh_executor_t *ex = NULL;
    int rc = mh_executor_new(&ex, &o);
    _exit(rc == MH_EAGAIN ? 0 : 1);
  }
  int st;
  ASSERT_EQ(waitpid(c, &st, 0), c);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

TEST(pooling_example) {
  static char path[] = MHT_BUILD_DIR "/examples/pooling";
  char *argv[] = {path, NULL};
  mht_proc_result_t r;
  ASSERT_OK(mht_run(argv, 30, &r));
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  for (int n = 1; n <= 5; n++) {
    char want[64];
    snprintf(want, sizeof want, "Worker process id for %d: ", n);
    char *p = strstr(r.out, want);
    ASSERT(p != NULL);
    int pid = atoi(p + strlen(want));
    ASSERT_GT(pid, 0);
  }
  const char *last = strstr(r.out, "[1, 4, 9, 16, 25]\n");
  ASSERT(last != NULL);
  ASSERT_EQ(strlen(last), strlen("[1, 4, 9, 16, 25]\n"));
  mht_proc_free(&r);
}

/* Pool B's server is forked while pool A exists: freeing A first must not
 * wait for B (B's processes must not hold A's descriptors). */
TEST(two_pools) {
  mh_executor_t *a = pool_new(2, 0);
  mh_executor_t *b = pool_new(2, 0);
  check_map(a, 1000, 1);
  check_map(b, 1000, 1);
  double t0 = mht_now();
  mh_executor_free(a);
  ASSERT_LT(mht_now() - t0, 5.0);
  check_map(b, 1000, 0);
  mh_executor_t *c = pool_new(1, 0);
  mh_executor_free(b);
  check_map(c, 100, 1);
  pool_free(c);
}

/* Threads keep submitting while the pool is shut down with cancellation:
 * every future they got ends (finished or cancelled), nothing hangs, and no
 * process is left. */
typedef struct racer {
  mh_executor_t *ex;
  mh_future_t *fs[400];
  int n;
  long in, out[400];
} racer_t;

static void *race_submit(void *arg) {
  racer_t *r = arg;
  while (r->n < 400) {
    int rc = mh_executor_submit(r->ex, t_sq, &r->in, sizeof r->in,
                                &r->out[r->n], sizeof(long), NULL,
                                &r->fs[r->n]);
    if (rc == MH_ESHUTDOWN) break;
    ASSERT_OK(rc);
    r->n++;
    mht_jitter(200);
  }
  return NULL;
}

TEST(shutdown_while_submitting_settles_all) {
  for (int round = 0; round < (int)mht_scaled(6); round++) {
    mh_executor_t *ex = pool_new(2, 0);
    static racer_t rs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
      memset(&rs[i], 0, sizeof rs[i]);
      rs[i].ex = ex;
      rs[i].in = 7;
      ASSERT_EQ(pthread_create(&th[i], NULL, race_submit, &rs[i]), 0);
    }
    mht_jitter(20000);
    unsigned flags = MH_SHUTDOWN_WAIT | (round % 2 ? MH_SHUTDOWN_CANCEL_FUTURES : 0);
    double t0 = mht_now();
    ASSERT_OK(mh_executor_shutdown(ex, flags));
    ASSERT_LT(mht_now() - t0, 20.0);
    for (int i = 0; i < 3; i++) {
      pthread_join(th[i], NULL);
      for (int k = 0; k < rs[i].n; k++) {
        ASSERT_OK(mh_future_wait(rs[i].fs[k], 10));
        int rc = mh_future_result(rs[i].fs[k], 0);
        if (rc == 0)
          ASSERT_EQ(rs[i].out[k], 49);
        else
          ASSERT(rc == MH_ECANCELED && (flags & MH_SHUTDOWN_CANCEL_FUTURES));
        mh_future_release(rs[i].fs[k]);
      }
    }
    pool_free(ex);
  }
}

static int t_suicide(const void *in, size_t isz, void *out, size_t osz,
                     void *ctx) {
  shm_t *s = ctx;
  atomic_fetch_add(&s->hang_runs, 1);
  raise(SIGKILL);
  return 0;
}

/* An item that kills every worker that runs it: re-run `retries` times on
 * new workers, then it fails; the pool goes on. */
TEST(retries_exhausted) {
  shm_t *s = shm_new();
  mh_executor_t *ex = pool_new(2, 2);
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_suicide, NULL, 0, NULL, 0, s, &f));
  ASSERT_ERR(mh_future_result(f, 30), MH_EWORKERDIED);
  int pid = 0, code = 0;
  ASSERT_OK(mh_future_worker_exit(f, &pid, &code));
  ASSERT_GT(pid, 0);
  ASSERT_EQ(code, -SIGKILL);
  ASSERT_EQ(atomic_load(&s->hang_runs), 3);
  mh_future_release(f);
  check_map(ex, 500, 1);
  pool_free(ex);
  munmap(s, sizeof *s);
}

/* Futures queued behind busy workers can still be cancelled. */
TEST(cancel_queued) {
  mh_executor_t *ex = pool_new(2, 0);
  int hang = 4, ok = 0;
  enum { K = 40 };
  mh_future_t *h[2], *q[K];
  for (int i = 0; i < 2; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &hang, sizeof hang, NULL, 0,
                                 NULL, &h[i]));
  for (int i = 0; i < K; i++)
    ASSERT_OK(mh_executor_submit(ex, t_crash, &ok, sizeof ok, NULL, 0, NULL,
                                 &q[i]));
  mht_sleep(0.1);
  int cancelled = 0;
  for (int i = K - 1; i >= 0; i--)
    if (mh_future_cancel(q[i]) == 0) cancelled++;
  ASSERT_GE(cancelled, K - 2 * 4);
  ASSERT_ERR(mh_future_result(q[K - 1], 0), MH_ECANCELED);
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT |
                                         MH_SHUTDOWN_TERMINATE));
  for (int i = 0; i < 2; i++) mh_future_release(h[i]);
  for (int i = 0; i < K; i++) {
    ASSERT_EQ(mh_future_done(q[i]), 1);
    mh_future_release(q[i]);
  }
  pool_free(ex);
}

static int t_maybe_crash(const void *in, size_t isz, void *out, size_t osz,
                         void *ctx) {
  long v;
  memcpy(&v, in, sizeof v);
  if (v == 1234) {
    volatile uintptr_t addr = 64;
    *(volatile int *)addr = 1; /* segfault */
  }
  v *= 3;
  memcpy(out, &v, sizeof v);
  return 0;
}

/* imap, ordered and unordered, with an item that crashes its worker in the
 * middle of a chunk: that item alone yields MH_EWORKERDIED. */
TEST(imap_crash_fails_that_item_alone) {
  mh_executor_t *ex = pool_new(2, 0);
  enum { N = 3000 };
  static long in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i;
  for (int mode = 0; mode < 2; mode++) {
    mh_map_iter_t *it;
    ASSERT_OK(mh_executor_imap(ex, t_maybe_crash, NULL, in, sizeof(long), out,
                               sizeof(long), N, 100,
                               mode ? MH_MAP_UNORDERED : 0, &it));
    size_t idx;
    int st, rc, n = 0, died = 0;
    while ((rc = mh_map_iter_next(it, 30, &idx, &st)) == 0) {
      n++;
      if (idx == 1234) {
        ASSERT_ERR(st, MH_EWORKERDIED);
        died++;
      } else {
        ASSERT_ERR(st, 0);
        ASSERT_EQ(out[idx], 3L * (long)idx);
      }
    }
    ASSERT_ERR(rc, MH_EEOF);
    ASSERT_EQ(n, N);
    ASSERT_EQ(died, 1);
    mh_map_iter_free(it);
  }
  pool_free(ex);
}

static int init_suicide(void *arg) {
  mht_sleep(0.05); /* usually after mh_executor_new returned */
  raise(SIGKILL);
  return 0;
}

/* Workers that die in their initializer every time: instead of replacing
 * them forever, the pool gives up and fails the tasks; nothing hangs. */
TEST(dying_initializers_fail_tasks_without_hang) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = 2;
  o.initializer = init_suicide;
  mh_executor_t *ex;
  /* The workers may die before mh_executor_new returns: it then says
   * MH_EAGAIN; otherwise the tasks fail. */
  int rc = mh_executor_new(&ex, &o);
  if (rc == MH_EAGAIN) {
    fprintf(stderr, "the workers died while the pool started\n");
    ASSERT_EQ(mht_count_children(), 0);
    return;
  }
  ASSERT_OK(rc);
  long v = 2, out = 0;
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, t_sq, &v, sizeof v, &out, sizeof out, NULL,
                               &f));
  ASSERT_ERR(mh_future_result(f, 30), MH_EWORKERDIED);
  mh_future_release(f);
  ASSERT_ERR(mh_executor_map(ex, t_sq, NULL, &v, sizeof v, &out, sizeof out, 1,
                             1, NULL),
             MH_EWORKERDIED);
  pool_free(ex);
}
