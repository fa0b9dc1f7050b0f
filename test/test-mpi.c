/* SPDX-License-Identifier: MIT */
/* test-mpi.c - the MPI core, the backend and the map over ranks, run for
 * real under mpiexec: mh_mpi_map and the executor's MH_BACKEND_MPI (map,
 * submit, shutdown), a rank that stops or never returns, the API's errors,
 * a rank's children and its sentinel.  The pi job over ranks is in
 * test-mpi-pi.c; the helpers both use in mpi-common.c.
 *
 * The tests launch `mpiexec -n R` on this binary's own HELPERs (which are
 * MPI programs: this binary links manyhands_mpi when MPI is found).  Without
 * MPI every test prints "MPI not found: skipped" and exits 77, which CTest
 * reports as skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mpi-common.h"

/* ---- map over ranks ---------------------------------------------------- */

#if MHT_HAVE_MPI
typedef struct sq_out {
  int64_t square;
  int rank;
} sq_out_t;

static int square(const void *in, size_t in_size, void *out, size_t out_size,
                  void *ctx) {
  (void)in_size, (void)out_size, (void)ctx;
  int64_t x;
  memcpy(&x, in, sizeof x);
  sq_out_t o = {x * x, mh_mpi_rank()};
  memcpy(out, &o, sizeof o);
  if (x % 100 == 7) mht_sleep(0.001); /* uneven items */
  return x % 97 == 13 ? MH_EUSER - (int)x : 0;
}

HELPER(map_square) {
  (void)argc, (void)argv;
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  /* Every rank registers the same names: pointers do not cross machines. */
  if (mh_task_register("square", square) != 0) return 4;
  int code = 0;
  if (mh_mpi_rank() == 0) {
    enum { N = 2000 };
    static int64_t in[N];
    static sq_out_t out[N];
    static int st[N];
    for (int i = 0; i < N; i++) in[i] = i;
    int rc = mh_mpi_map("square", NULL, in, sizeof in[0], out, sizeof out[0],
                        N, 7, st);
    int per_rank[2] = {0, 0};
    for (int i = 0; i < N && code == 0; i++) {
      if (out[i].square != (int64_t)i * i) code = 10;
      if (st[i] != (i % 97 == 13 ? MH_EUSER - i : 0)) code = 11;
      if (out[i].rank >= 0 && out[i].rank < 2) per_rank[out[i].rank]++;
    }
    if (rc != MH_EUSER - 13) code = 12;
    if (per_rank[0] == 0 || per_rank[1] == 0) code = 13;
    /* Unknown names and bad arguments are refused, not sent. */
    if (mh_mpi_map("nope", NULL, in, 8, out, 16, 1, 0, NULL) != MH_EINVAL)
      code = 14;
    if (mh_mpi_map("square", NULL, NULL, 8, out, 16, 1, 0, NULL) != MH_EINVAL)
      code = 15;
    /* A second map on the same ranks, default chunks. */
    if (mh_mpi_map("square", NULL, in, sizeof in[0], out, sizeof out[0], 10,
                   0, NULL) != 0)
      code = 16;
    printf("map ok %d per rank %d %d\n", code, per_rank[0], per_rank[1]);
    mh_mpi_serve_stop();
  } else {
    if (mh_mpi_serve() != 0) code = 20;
    if (mh_mpi_map("square", NULL, NULL, 0, NULL, 0, 0, 0, NULL) != MH_EINVAL)
      code = 21;
  }
  mh_mpi_finalize();
  return code;
}
#endif

#if MHT_HAVE_MPI
static int cube(const void *in, size_t in_size, void *out, size_t out_size,
                void *ctx) {
  (void)in_size, (void)out_size, (void)ctx;
  int64_t x;
  memcpy(&x, in, sizeof x);
  x = x * x * x;
  memcpy(out, &x, sizeof x);
  mht_sleep(0.02);
  return 0;
}

/* The executor's own map and submit, on an executor with MH_BACKEND_MPI. */
HELPER(executor_map) {
  (void)argc, (void)argv;
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  if (mh_task_register("square", square) != 0) return 4;
  int code = 0;
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = MH_BACKEND_MPI;
  mh_executor_t *ex = NULL;
  if (mh_mpi_rank() != 0) {
    /* Only rank 0 holds the executor; the others serve it. */
    if (mh_executor_new(&ex, &eo) != MH_EPERM) code = 30;
    if (mh_mpi_serve() != 0) code = 31;
    mh_mpi_finalize();
    return code;
  }
  if (mh_executor_new(&ex, &eo) != 0) return 5;
  if (mh_executor_backend(ex) != MH_BACKEND_MPI) code = 6;
  for (int round = 0; round < 3 && code == 0; round++) {
    enum { N = 3000 };
    static int64_t in[N];
    static sq_out_t out[N];
    static int st[N];
    for (int i = 0; i < N; i++) in[i] = i + round;
    memset(out, 0, sizeof out);
    int rc = mh_executor_map(ex, square, NULL, in, sizeof in[0], out,
                             sizeof out[0], N, (size_t)(round * 5), st);
    int per_rank[2] = {0, 0}, first_fail = -1;
    for (int i = 0; i < N && code == 0; i++) {
      int64_t x = i + round;
      if (out[i].square != x * x) code = 10;
      if (st[i] != (x % 97 == 13 ? MH_EUSER - (int)x : 0)) code = 11;
      if (st[i] != 0 && first_fail < 0) first_fail = i;
      if (out[i].rank >= 0 && out[i].rank < 2) per_rank[out[i].rank]++;
    }
    if (first_fail < 0 || rc != st[first_fail]) code = 12;
    if (per_rank[0] == 0 || per_rank[1] == 0) code = 13;
  }
  /* A plain submit, and a task nobody registered. */
  int64_t x = 12, y = 0;
  sq_out_t o;
  mh_future_t *f = NULL;
  if (mh_executor_submit(ex, square, &x, sizeof x, &o, sizeof o, NULL, &f) ||
      mh_future_result(f, 30) != 0 || o.square != 144)
    code = 14;
  mh_future_release(f);
  /* cube is not registered.  Two at once: the first goes to rank 0's own
   * thread, which runs it (pointers are valid there, and cube takes 20 ms),
   * the second to rank 1, which cannot: its future says MH_ENOSYS. */
  int64_t y2 = 0;
  mh_future_t *g = NULL;
  if (mh_executor_submit(ex, cube, &x, sizeof x, &y, sizeof y, NULL, &f) ||
      mh_executor_submit(ex, cube, &x, sizeof x, &y2, sizeof y2, NULL, &g))
    code = 15;
  int rf = mh_future_result(f, 30), rg = mh_future_result(g, 30);
  if (!((rf == 0 && y == 1728 && rg == MH_ENOSYS) ||
        (rg == 0 && y2 == 1728 && rf == MH_ENOSYS)))
    code = 16;
  mh_future_release(f);
  mh_future_release(g);
  mh_executor_free(ex);
  printf("executor map ok %d\n", code);
  mh_mpi_finalize();
  return code;
}
#endif

TEST(executor_map_over_two_ranks) {
  need_mpi();
  const char *args[] = {"--helper", "executor_map", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "executor map ok 0"));
  mht_proc_free(&r);
}

/* ---- shutdown on MH_BACKEND_MPI, as Python's shutdown(cancel_futures) ---- */

#if MHT_HAVE_MPI
/* 0.5 s per task: a shutdown right after two have begun finds the rest not
 * begun (the two ranks need 10 s to start them all), whatever the load. */
static int nap_double(const void *in, size_t in_size, void *out,
                      size_t out_size, void *ctx) {
  (void)in_size, (void)out_size, (void)ctx;
  int64_t x;
  memcpy(&x, in, sizeof x);
  mht_sleep(0.5);
  x *= 2;
  memcpy(out, &x, sizeof x);
  return 0;
}

static void *shutdown_waits(void *arg) {
  mh_executor_shutdown(arg, MH_SHUTDOWN_WAIT);
  return NULL;
}

/* rank 0: for CANCEL_FUTURES, for TERMINATE (which on MPI cannot end a
 * running chunk: it is CANCEL_FUTURES), and for a plain waiting shutdown on
 * another thread escalated to TERMINATE, shut an executor down while two
 * tasks run (one on rank 0's thread, one on rank 1) and 38 wait.  Every
 * future is done after the waiting shutdown; one that ran finished with its
 * result (not cut off, not cancelled); one that did not begin is cancelled,
 * and mh_future_cancelled agrees with mh_future_result for every one. */
HELPER(executor_shutdown) {
  (void)argc, (void)argv;
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  if (mh_task_register("nap_double", nap_double) != 0) return 4;
  if (mh_mpi_rank() != 0) {
    int rc = mh_mpi_serve();
    mh_mpi_finalize();
    return rc ? 31 : 0;
  }
  static const unsigned modes[3] = {
      MH_SHUTDOWN_WAIT | MH_SHUTDOWN_CANCEL_FUTURES,
      MH_SHUTDOWN_WAIT | MH_SHUTDOWN_TERMINATE, MH_SHUTDOWN_TERMINATE};
  int code = 0;
  for (int m = 0; m < 3 && code == 0; m++) {
    enum { N = 40 };
    static int64_t in[N], out[N];
    mh_future_t *f[N];
    mh_executor_options_t eo;
    mh_executor_options_init(&eo);
    eo.backend = MH_BACKEND_MPI;
    mh_executor_t *ex = NULL;
    if (mh_executor_new(&ex, &eo) != 0) return 5;
    for (int i = 0; i < N; i++) {
      in[i] = i + 1;
      out[i] = -1;
      if (mh_executor_submit(ex, nap_double, &in[i], sizeof in[i], &out[i],
                             sizeof out[i], NULL, &f[i]))
        return 6;
    }
    /* Both ranks busy: an event, not a sleep (bounded only for a broken
     * backend). */
    double t0 = mht_now();
    while (!(mh_future_running(f[0]) && mh_future_running(f[1])) &&
           mht_now() - t0 < 60)
      mht_sleep(0.001);
    if (!mh_future_running(f[0]) || !mh_future_running(f[1])) code = 7;
    pthread_t waiter;
    if (m == 2 && pthread_create(&waiter, NULL, shutdown_waits, ex) != 0)
      return 16;
    if (mh_executor_shutdown(ex, modes[m]) != 0) code = 8;
    if (m == 2) pthread_join(waiter, NULL);
    mh_future_t *late = NULL;
    if (mh_executor_submit(ex, nap_double, &in[0], sizeof in[0], &out[0],
                           sizeof out[0], NULL, &late) != MH_ESHUTDOWN)
      code = 9;
    int ran = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
      if (!mh_future_done(f[i])) code = 10;
      int rc = mh_future_result(f[i], 0);
      int c = mh_future_cancelled(f[i]);
      if (c != (rc == MH_ECANCELED)) code = 11;
      if (rc == 0) {
        ran++;
        if (out[i] != 2 * in[i]) code = 12;
      } else if (rc == MH_ECANCELED) {
        cancelled++;
        if (out[i] != -1) code = 13; /* it never ran */
      } else {
        code = 14;
      }
      mh_future_release(f[i]);
    }
    /* The two that were running finished (f[0] and f[1] among them). */
    if (ran < 2 || cancelled < 1 || ran + cancelled != N) code = 15;
    printf("mode %d: %d ran, %d cancelled\n", m, ran, cancelled);
    mh_executor_free(ex);
  }
  printf("executor shutdown ok %d\n", code);
  mh_mpi_finalize();
  return code;
}
#endif

TEST(executor_shutdown_cancels_what_has_not_started) {
  need_mpi();
  const char *args[] = {"--helper", "executor_shutdown", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 120, &r);
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "executor shutdown ok 0"));
  mht_proc_free(&r);
}

TEST(map_over_two_ranks) {
  need_mpi();
  const char *args[] = {"--helper", "map_square", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "map ok 0"));
  mht_proc_free(&r);
}

/* The same map under MH_TRACE: rank 0's file (written at its exit, after
 * mh_mpi_finalize gathered rank 1's records) has every item of both maps
 * in `chunk` slices, on the tracks of both ranks, each named. */
TEST(map_traced) {
  need_mpi();
  char path[128];
  snprintf(path, sizeof path, "/tmp/mh-mpi-map-trace-%d.json", (int)getpid());
  unlink(path);
  setenv("MH_TRACE", path, 1);
  const char *args[] = {"--helper", "map_square", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  unsetenv("MH_TRACE");
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  FILE *f = fopen(path, "r");
  ASSERT(f != NULL);
  char line[1024];
  int pid_of[2] = {0, 0};
  long long items = 0;
  int chunk_pids[64], nchunk_pids = 0;
  while (fgets(line, sizeof line, f)) {
    int rank, pid;
    const char *p = strstr(line, "\"args\":{\"name\":\"rank ");
    if (strstr(line, "\"process_name\"") && p &&
        sscanf(p, "\"args\":{\"name\":\"rank %d on %*s (pid %d)", &rank, &pid) == 2) {
      ASSERT(rank == 0 || rank == 1);
      pid_of[rank] = pid;
    }
    if (!strncmp(line, "{\"name\":\"chunk\",", 16)) {
      ASSERT(strstr(line, "\"ph\":\"X\"") && !strstr(line, "\"dur\":-"));
      items += (long long)json_u64(line, "items");
      int cp = (int)json_u64(line, "pid");
      int k = 0;
      while (k < nchunk_pids && chunk_pids[k] != cp) k++;
      if (k == nchunk_pids && k < 64) chunk_pids[nchunk_pids++] = cp;
    }
  }
  fclose(f);
  unlink(path);
  ASSERT_EQ(items, 2000 + 10); /* both maps, every item once */
  ASSERT(pid_of[0] > 0 && pid_of[1] > 0 && pid_of[0] != pid_of[1]);
  ASSERT_EQ(nchunk_pids, 2);
  for (int k = 0; k < 2; k++) ASSERT(chunk_pids[k] == pid_of[0] || chunk_pids[k] == pid_of[1]);
}

/* ---- a map whose rank stops answering ----------------------------------- */

#if MHT_HAVE_MPI
/* 10 ms per item; on rank 1 the item 50 stops the whole process (as
 * SIGSTOP from outside would) or never returns, as argv asks. */
static const char *g_hang_mode = "";

static int slow_item(const void *in, size_t in_size, void *out,
                     size_t out_size, void *ctx) {
  (void)in_size, (void)out_size, (void)ctx;
  int64_t x;
  memcpy(&x, in, sizeof x);
  if (mh_mpi_rank() == 1 && x >= 50) {
    if (strcmp(g_hang_mode, "stop") == 0) raise(SIGSTOP);
    if (strcmp(g_hang_mode, "forever") == 0)
      for (;;) mht_sleep(1);
  }
  mht_sleep(0.01);
  memcpy(out, &x, sizeof x);
  return 0;
}

/* argv: "map" or "executor", "stop" or "forever", a mark (unused). */
HELPER(map_hang) {
  if (argc < 2 || mh_mpi_init(&argc, &argv) != 0) return 3;
  g_hang_mode = argv[1];
  if (mh_task_register("slow", slow_item) != 0) return 4;
  if (mh_mpi_rank() != 0) {
    mh_mpi_serve();
    mh_mpi_finalize();
    return 0;
  }
  enum { N = 400 };
  static int64_t in[N], out[N];
  for (int i = 0; i < N; i++) in[i] = i;
  int rc;
  if (strcmp(argv[0], "map") == 0) {
    rc = mh_mpi_map("slow", NULL, in, sizeof in[0], out, sizeof out[0], N, 10,
                    NULL);
  } else {
    mh_executor_options_t eo;
    mh_executor_options_init(&eo);
    eo.backend = MH_BACKEND_MPI;
    mh_executor_t *ex;
    if (mh_executor_new(&ex, &eo) != 0) return 5;
    rc = mh_executor_map(ex, slow_item, NULL, in, sizeof in[0], out,
                         sizeof out[0], N, 10, NULL);
    mh_executor_free(ex);
  }
  /* Not reached: rank 0 ends the job when rank 1 stops answering. */
  printf("map returned %d\n", rc);
  mh_mpi_finalize();
  return 6;
}
#endif

/* Run map_hang in `how`/`mode` and check that the job ends within the
 * timeout, with our message naming rank 1, and leaves nothing running. */
static void check_map_hang(const char *how, const char *mode,
                           const char *want) {
  char mark[32];
  make_mark(mark, sizeof mark);
  /* One limit short, the other long enough that a loaded machine (a late
   * heartbeat) cannot trip it first. */
  int stop = strcmp(mode, "stop") == 0;
  setenv("MH_MPI_TIMEOUT", stop ? "2" : "25", 1);
  setenv("MH_MPI_TASK_TIMEOUT", stop ? "40" : "3", 1);
  const char *args[] = {"--helper", "map_hang", how, mode, mark, NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  unsetenv("MH_MPI_TIMEOUT");
  unsetenv("MH_MPI_TASK_TIMEOUT");
  ASSERT(!(r.exited && r.status == 0));
  ASSERT(!strstr(r.out, "map returned"));
  if (!strstr(r.err, "manyhands: ") || !strstr(r.err, "MPI rank 1 (pid") ||
      !strstr(r.err, want))
    mht_fail(__FILE__, __LINE__, "no message naming rank 1 (%s):\n%s", want,
             r.err);
  /* Rank 0's deliberate abort is not reported as a death. */
  ASSERT(!strstr(r.err, "died"));
  ASSERT(r.seconds < 30);
  mht_proc_free(&r);
  assert_none_left("test-mpi", mark);
}

/* A rank stopped mid-map (SIGSTOP): no heartbeat for MH_MPI_TIMEOUT. */
TEST(map_rank_stopped) {
  need_mpi();
  check_map_hang("map", "stop", "stopped responding");
}

/* A task that never returns (the rank still beats): MH_MPI_TASK_TIMEOUT. */
TEST(map_task_never_returns) {
  need_mpi();
  check_map_hang("map", "forever", "has not returned");
}

/* The same two through the executor's map on MH_BACKEND_MPI. */
TEST(executor_rank_stopped) {
  need_mpi();
  check_map_hang("executor", "stop", "stopped responding");
}

TEST(executor_task_never_returns) {
  need_mpi();
  check_map_hang("executor", "forever", "has not returned");
}

/* Calls before mh_mpi_init, and the registry's argument checks, need no
 * MPI job. */
TEST(api_errors) {
  need_mpi();
#if MHT_HAVE_MPI
  ASSERT_ERR(mh_mpi_rank(), MH_EINVAL);
  ASSERT_ERR(mh_mpi_size(), MH_EINVAL);
  ASSERT_ERR(mh_mpi_finalize(), MH_EINVAL);
  ASSERT_ERR(mh_mpi_serve(), MH_EINVAL);
  ASSERT_ERR(mh_mpi_serve_stop(), MH_EINVAL);
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = 10;
  mh_pi_result_t res;
  ASSERT_ERR(mh_mpi_pi_run(&o, 1, &res, NULL), MH_EINVAL);
  ASSERT_ERR(mh_task_register(NULL, square), MH_EINVAL);
  ASSERT_ERR(mh_task_register("", square), MH_EINVAL);
  ASSERT_ERR(mh_task_register("sq", NULL), MH_EINVAL);
  char longname[80];
  memset(longname, 'x', sizeof longname - 1);
  longname[79] = '\0';
  ASSERT_ERR(mh_task_register(longname, square), MH_EINVAL);
  ASSERT_OK(mh_task_register("sq", square));
  ASSERT(mh_task_lookup("sq") == square);
  ASSERT(mh_task_lookup("other") == NULL);
  ASSERT_STREQ(mh_task_name(square), "sq");
#endif
}

/* The executor names no MPI symbol: the MPI backend is in its table only
 * once mh_mpi_init has registered it, and before that asking for it is
 * MH_ENOTSUP, a clear code, in a program that links the MPI library too. */
TEST(mpi_backend_registered_by_init) {
  need_mpi();
#if MHT_HAVE_MPI
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = MH_BACKEND_MPI;
  eo.workers = 1;
  mh_executor_t *ex = NULL;
  ASSERT_ERR(mh_executor_new(&ex, &eo), MH_ENOTSUP);
  ASSERT(ex == NULL);
  /* The other backends are built in and need no registration. */
  eo.backend = MH_BACKEND_THREADS;
  ASSERT_OK(mh_executor_new(&ex, &eo));
  mh_executor_free(ex);
#endif
}

/* ---- children of a rank ------------------------------------------------- */

#if MHT_HAVE_MPI
static int sleep_child(void *arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

/* A child started with mh_process_start on a rank (after mh_mpi_init has
 * blocked SIGTERM for its watchdog) must still end on mh_process_terminate:
 * no watchdog runs in the child to take the signal. */
HELPER(rank_child_terminate) {
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  int code = 0;
  /* Plain, and with SIGINT ignored (its own mask handling in the child). */
  for (int k = 0; k < 2 && code == 0; k++) {
    mh_process_options_t po;
    memset(&po, 0, sizeof po);
    po.flags = k ? MH_PROCESS_IGNORE_SIGINT : 0u;
    mh_process_t *p = NULL;
    if (mh_process_start(&p, sleep_child, NULL, &po) != 0) {
      code = 4;
      break;
    }
    /* Past its set-up: a SIGTERM pending from before it would hide a
     * block that the set-up puts back. */
    mht_sleep(0.2);
    mh_process_terminate(p);
    if (mh_process_join(p, 10.0) != 0) {
      code = 5 + 10 * k;
      mh_process_kill(p);
      mh_process_join(p, MH_FOREVER);
    } else {
      int ec = 0;
      if (mh_process_exitcode(p, &ec) != 0 || ec != -SIGTERM) code = 6 + 10 * k;
    }
    mh_process_free(p);
  }
  mh_mpi_finalize();
  /* No child is left, not even a zombie: the sentinel is reaped too. */
  if (code == 0 && (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD))
    code = 7;
  printf("child terminate %d\n", code);
  return code;
}
#endif

TEST(rank_child_terminate) {
  need_mpi();
  const char *args[] = {"--helper", "rank_child_terminate", NULL};
  mht_proc_result_t r;
  run_mpi("1", mht_self(), args, 60, &r);
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "child terminate 0"));
  mht_proc_free(&r);
}

/* ---- the sentinel reads a byte stream ----------------------------------- */

#if MHT_HAVE_MPI
static _Atomic pid_t g_stopped_sentinel;

/* Stop our first child (the sentinel mh_mpi_init forks) as soon as it
 * appears, before it reads what the rank sends it. */
static void *stop_sentinel_main(void *arg) {
  (void)arg;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(),
           (int)getpid());
  double t0 = mht_now();
  while (mht_now() - t0 < 20) {
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f) {
      if (fscanf(f, "%d", &pid) != 1) pid = 0;
      fclose(f);
    }
    if (pid > 0) {
      kill(pid, SIGSTOP);
      g_stopped_sentinel = pid;
      return NULL;
    }
    mht_sleep(0.0005);
  }
  return NULL;
}

/* A rank that ends normally while its sentinel was slow to read: the
 * notices and the quiet byte then reach the sentinel in one read(), and it
 * must still stay quiet. */
HELPER(slow_sentinel_quiet) {
  pthread_t tid;
  if (pthread_create(&tid, NULL, stop_sentinel_main, NULL) != 0) return 2;
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  pthread_join(tid, NULL);
  pid_t s = g_stopped_sentinel;
  mh_mpi_finalize();
  if (s <= 0) return 4;
  kill(s, SIGCONT);
  int code = 5;
  double t0 = mht_now();
  while (mht_now() - t0 < 10) {
    int st = 0;
    if (waitpid(s, &st, WNOHANG) == s) {
      code = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 6;
      break;
    }
    mht_sleep(0.01);
  }
  printf("slow sentinel %d\n", code);
  return code;
}
#endif

TEST(slow_sentinel_quiet) {
  need_mpi();
  const char *args[] = {"--helper", "slow_sentinel_quiet", NULL};
  mht_proc_result_t r;
  run_mpi("1", mht_self(), args, 60, &r);
  if (r.status != 0 || strstr(r.err, "died"))
    fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "slow sentinel 0"));
  ASSERT(!strstr(r.err, "died"));
  mht_proc_free(&r);
}
