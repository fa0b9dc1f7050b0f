/* SPDX-License-Identifier: MIT */
/* test-mpi-pi.c - the pi job over MPI ranks, run for real under mpiexec:
 * the same count for any layout of ranks and threads, the output of
 * repeats and of the sweep, a slow rank taking fewer blocks, an idle rank
 * that sleeps, and a run that loses a rank (killed, terminated, silent,
 * interrupted), which must end, name the rank and leave nothing behind.
 * The core, the backend and the map over ranks are in test-mpi.c; the
 * helpers both use in mpi-common.c.
 *
 * The tests launch `mpiexec -n R` on manyhands-mpi or on this binary's own
 * HELPERs (MPI programs: this binary links manyhands_mpi when MPI is
 * found).  Without MPI every test prints "MPI not found: skipped" and exits
 * 77, which CTest reports as skipped.
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

static int count_our_files(const char *dir);

/* The count by definition: every block counted here, one after another. */
static uint64_t reference_inside(uint64_t n, uint64_t seed) {
  uint64_t inside = 0;
  for (uint64_t b = 0; b * BLOCK < n; b++) {
    uint64_t np = n - b * BLOCK < BLOCK ? n - b * BLOCK : BLOCK;
    uint64_t in = 0;
    ASSERT_OK(mh_pi_count_block(seed, b, np, MH_PI_KERNEL_AUTO, &in));
    inside += in;
  }
  return inside;
}

/* `inside` is the same for 1 and 2 ranks x 1, 2, 3 threads, and equals the
 * block-by-block definition (a partial last block included). */
TEST(pi_identical_any_layout) {
  need_mpi();
  uint64_t n = 21 * BLOCK + 12345, seed = 4242;
  uint64_t want = reference_inside(n, seed);
  char ns[32];
  snprintf(ns, sizeof ns, "%llu", (unsigned long long)n);
  const char *layouts[][2] = {{"1", "1"}, {"1", "3"}, {"2", "1"},
                              {"2", "2"}, {"2", "3"}};
  for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
    const char *args[] = {"pi", ns, layouts[i][1], "--backend", "mpi",
                    "--seed", "4242", "--json", NULL};
    mht_proc_result_t r;
    run_mpi(layouts[i][0], CLI, args, 60, &r);
    if (r.status != 0) fprintf(stderr, "%s", r.err);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 0);
    /* Only rank 0 prints: one line. */
    ASSERT(strchr(r.out, '\n') == r.out + r.out_len - 1);
    ASSERT_UEQ(json_u64(r.out, "inside"), want);
    ASSERT_UEQ(json_u64(r.out, "done"), n);
    ASSERT(strstr(r.out, "\"backend\":\"mpi\""));
    mht_proc_free(&r);
  }
}

/* --repeat K prints K estimates and the total time on rank 0 only, and
 * the estimates do not depend on the layout. */
TEST(pi_repeat_output) {
  need_mpi();
  const char *args1[] = {"pi", "1e7", "1", "--repeat", "4", "--backend", "mpi", NULL};
  const char *args2[] = {"pi", "1e7", "2", "--repeat", "4", "--backend", "mpi", NULL};
  mht_proc_result_t a, b;
  run_mpi("2", CLI, args1, 60, &a);
  run_mpi("1", CLI, args2, 60, &b);
  if (a.status || b.status) fprintf(stderr, "%s%s", a.err, b.err);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(b.status, 0);
  int lines = 0;
  for (char *p = a.out; *p; p++) lines += *p == '\n';
  ASSERT_GE(lines, 6);
  /* The four estimates are the same lines in both runs. */
  ASSERT_EQ(strncmp(a.out, b.out, 4 * 10), 0);
  /* The layout in words: ranks x threads, not threads called ranks. */
  if (!strstr(a.out, "10000000 total iterations with 2 MPI ranks x 1 thread\n") ||
      !strstr(b.out, "10000000 total iterations with 1 MPI rank x 2 threads\n"))
    mht_fail(__FILE__, __LINE__, "layout wording:\n%s\n%s", a.out, b.out);
  mht_proc_free(&a);
  mht_proc_free(&b);
}

/* A rank bound to fewer CPUs than it runs threads (here: the whole job is
 * confined to one CPU) says so on stderr, still exits 0 with the right
 * answer; a rank with one thread, or with CPUs enough, says nothing. */
TEST(bound_rank_is_noted) {
  need_mpi();
  cpu_set_t all, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &all)) {
      CPU_SET(c, &one);
      break;
    }
  const char *two[] = {"pi", "1e6", "2", "--backend", "mpi", "--json", NULL};
  const char *single[] = {"pi", "1e6", "1", "--backend", "mpi", "--json", NULL};
  mht_proc_result_t a, b;
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0); /* children inherit it */
  /* Bounds of 150 s (MPIEXEC_TIMEOUT's): a job confined to one CPU of a
   * loaded machine starts slowly, and time is not what is checked here. */
  run_mpi("1", CLI, two, 150, &a);
  run_mpi("1", CLI, single, 150, &b);
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
  if (a.status || b.status) fprintf(stderr, "%s%s", a.err, b.err);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(b.status, 0);
  if (!strstr(a.err, "manyhands: note: MPI rank 0 runs 2 threads on 1 CPU it is bound to"))
    mht_fail(__FILE__, __LINE__, "no note on stderr:\n%s", a.err);
  ASSERT(strstr(b.err, "bound to") == NULL);
  ASSERT_UEQ(json_u64(a.out, "inside"), json_u64(b.out, "inside"));
  mht_proc_free(&a);
  mht_proc_free(&b);
  const char *extra = MHT_MPIEXEC_EXTRA; /* set for Open MPI */
  if (CPU_COUNT(&all) >= 2 && extra[0]) {
    /* Open MPI, both CPUs, no binding: the same run is silent. */
    const char *free2[] = {"--bind-to", "none", CLI, "pi", "1e6", "2",
                           "--backend", "mpi", NULL};
    mht_proc_result_t c;
    run_mpi("1", free2[0], free2 + 1, 150, &c);
    ASSERT_EQ(c.status, 0);
    ASSERT(strstr(c.err, "bound to") == NULL);
    mht_proc_free(&c);
  }
}

/* --sweep with --backend mpi varies the ranks taking part (1..2) as well as
 * the threads per rank: one JSON line per ranks x threads pair, ordered by
 * workers = ranks x threads, the same count inside everywhere, speed-up
 * measured against 1 rank x 1 thread.  The table shows both columns. */
TEST(sweep_over_ranks_and_threads) {
  need_mpi();
  const char *args[] = {"pi", "3e7", "--backend", "mpi", "--sweep", "1,2",
                        "--json", NULL};
  mht_proc_result_t r;
  run_mpi("2", CLI, args, 150, &r); /* a bound, not the rule: see above */
  if (r.status != 0) fprintf(stderr, "%s", r.err);
  ASSERT_EQ(r.status, 0);
  static const int want[4][2] = {{1, 1}, {1, 2}, {2, 1}, {2, 2}};
  char *line = r.out;
  uint64_t inside = 0;
  for (int i = 0; i < 4; i++) {
    ASSERT(line && *line);
    char *nl = strchr(line, '\n');
    ASSERT(nl);
    *nl = '\0';
    ASSERT_UEQ(json_u64(line, "ranks"), want[i][0]);
    ASSERT_UEQ(json_u64(line, "threads_per_rank"), want[i][1]);
    ASSERT_UEQ(json_u64(line, "workers"), want[i][0] * want[i][1]);
    if (i == 0) {
      inside = json_u64(line, "inside");
      ASSERT(strstr(line, "\"speedup\":1,") || strstr(line, "\"speedup\":1}"));
    }
    ASSERT_UEQ(json_u64(line, "inside"), inside);
    ASSERT(strstr(line, "\"karp_flatt\":"));
    line = nl + 1;
  }
  ASSERT_EQ(*line, '\0');
  ASSERT_UEQ(inside, reference_inside(30000000, MH_PI_DEFAULT_SEED));
  mht_proc_free(&r);

  const char *targs[] = {"pi", "3e7", "--backend", "mpi", "--sweep", "1,2",
                         NULL};
  run_mpi("2", CLI, targs, 150, &r);
  ASSERT_EQ(r.status, 0);
  if (!strstr(r.out, "ranks threads workers") ||
      !strstr(r.out, "    1       1       1 ") ||
      !strstr(r.out, "    2       2       4 ") ||
      !strstr(r.out, "measured at 1 rank x 1 thread") ||
      /* Times are not the rule here: on a loaded machine they may fit no
       * Amdahl curve, and the table says so. */
      !(strstr(r.out, "Amdahl fit (least squares") ||
        strstr(r.out, "Amdahl fit: none (these times fit no")))
    mht_fail(__FILE__, __LINE__, "sweep table:\n%s", r.out);
  mht_proc_free(&r);
}

/* The plain command (built without MPI) refuses --backend mpi as a usage
 * error and says where MPI runs are made; nothing on stdout. */
TEST(plain_cli_refuses_mpi) {
  char cli[] = MHT_BUILD_DIR "/manyhands", pi[] = "pi", n[] = "1e6",
       p[] = "2", opt[] = "--backend", mpi[] = "mpi";
  char *v[] = {cli, pi, n, p, opt, mpi, NULL};
  mht_proc_result_t r;
  ASSERT_EQ(mht_run(v, 30, &r), 0);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 2);
  ASSERT_EQ(r.out_len, 0);
  if (strncmp(r.err, "manyhands: --backend mpi runs ", 30) != 0 ||
      !strstr(r.err, "manyhands-mpi") || !strstr(r.err, "mpirun -np RANKS") ||
      strstr(r.err, "built without") || strchr(r.err, '\n') != r.err + r.err_len - 1)
    mht_fail(__FILE__, __LINE__, "refusal:\n%s", r.err);
#if MHT_HAVE_MPI
  /* This build has the MPI command: the message gives its path. */
  ASSERT(strstr(r.err, MHT_BUILD_DIR "/manyhands-mpi pi N [P] --backend mpi"));
#endif
  mht_proc_free(&r);
}

#if MHT_HAVE_MPI
/* One run of mh_mpi_pi_run; rank 0 prints "inside <n> blocks <b0> <b1>". */
HELPER(pi_blocks) {
  if (argc < 2 || mh_mpi_init(&argc, &argv) != 0) return 3;
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = strtoull(argv[0], NULL, 10);
  o.seed = strtoull(argv[1], NULL, 10);
  uint64_t blocks[2] = {0, 0};
  mh_mpi_pi_stats_t st = {0};
  st.rank_blocks = mh_mpi_size() == 2 ? blocks : NULL;
  mh_pi_result_t r;
  int rc = mh_mpi_pi_run(&o, 1, &r, &st);
  if (rc == 0 && mh_mpi_rank() == 0)
    printf("inside %llu blocks %llu %llu\n", (unsigned long long)r.inside,
           (unsigned long long)blocks[0], (unsigned long long)blocks[1]);
  mh_mpi_finalize();
  return rc == 0 ? 0 : 4;
}
#endif

/* A rank slowed down (100 ms per block) takes fewer blocks; the answer does
 * not change. */
TEST(pi_slow_rank_takes_fewer_blocks) {
  need_mpi();
  uint64_t n = 40 * BLOCK, seed = 777;
  uint64_t want = reference_inside(n, seed);
  setenv("MH_MPI_TEST_SLOW", "1:100000", 1);
  char ns[32];
  snprintf(ns, sizeof ns, "%llu", (unsigned long long)n);
  const char *args[] = {"--helper", "pi_blocks", ns, "777", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  unsetenv("MH_MPI_TEST_SLOW");
  if (r.status != 0) fprintf(stderr, "%s", r.err);
  ASSERT_EQ(r.status, 0);
  unsigned long long inside = 0, b0 = 0, b1 = 0;
  fprintf(stderr, "%s", r.out); /* the split, when a check fails */
  ASSERT_EQ(sscanf(r.out, "inside %llu blocks %llu %llu", &inside, &b0, &b1), 3);
  ASSERT_UEQ(inside, want);
  ASSERT_UEQ(b0 + b1, 40);
  /* The slow rank is 100 ms per block; the fast one a few ms (tens under
   * the sanitizers on a loaded machine). */
  ASSERT_GT(b0, 2 * b1);
  ASSERT_GE(b1, 1);
  mht_proc_free(&r);
}

/* A rank killed mid-run: the job ends, with our message naming it, no rank
 * hangs, and mpiexec's status is non-zero. */
TEST(rank_dies) {
  need_mpi();
  int shm0 = count_our_files("/dev/shm"), tmp0 = count_our_files("/tmp");
  setenv("MH_MPI_TEST_DIE", "1", 1);
  const char *args[] = {"pi", "2e9", "1", "--backend", "mpi", NULL};
  mht_proc_result_t r;
  run_mpi("2", CLI, args, 60, &r);
  unsetenv("MH_MPI_TEST_DIE");
  /* Nothing of ours is left on disk (no marker files any more). */
  ASSERT_EQ(count_our_files("/dev/shm"), shm0);
  ASSERT_EQ(count_our_files("/tmp"), tmp0);
  ASSERT(!(r.exited && r.status == 0));
  if (!strstr(r.err, "manyhands: MPI rank 1 (pid"))
    mht_fail(__FILE__, __LINE__, "no message naming rank 1:\n%s", r.err);
  ASSERT(strstr(r.err, "died"));
  ASSERT(r.seconds < 30);
  mht_proc_free(&r);
}

/* A rank that stops answering (alive, but silent) is named after the
 * heartbeat timeout and the job is aborted. */
TEST(silent_rank_named_and_job_aborted) {
  need_mpi();
  int shm0 = count_our_files("/dev/shm"), tmp0 = count_our_files("/tmp");
  setenv("MH_MPI_TEST_HANG", "1", 1);
  setenv("MH_MPI_TIMEOUT", "2", 1);
  const char *args[] = {"pi", "1e10", "1", "--backend", "mpi", NULL};
  mht_proc_result_t r;
  run_mpi("2", CLI, args, 60, &r);
  unsetenv("MH_MPI_TEST_HANG");
  unsetenv("MH_MPI_TIMEOUT");
  /* A deliberate abort leaves no marker file behind. */
  ASSERT_EQ(count_our_files("/dev/shm"), shm0);
  ASSERT_EQ(count_our_files("/tmp"), tmp0);
  ASSERT(!(r.exited && r.status == 0));
  if (!strstr(r.err, "MPI rank 1 (pid") || !strstr(r.err, "stopped responding"))
    mht_fail(__FILE__, __LINE__, "no message naming rank 1:\n%s", r.err);
  /* Rank 0's deliberate abort is not reported as a death. */
  ASSERT(!strstr(r.err, "died"));
  ASSERT(r.seconds < 30);
  mht_proc_free(&r);
}

static int count_marked(const char *mark) {
  return count_marked_prog("manyhands-mpi", mark);
}

/* Ctrl-C on mpiexec (SIGINT to its process group) stops every rank. */
TEST(interrupt_stops_every_rank) {
  need_mpi();
  char mark[32];
  make_mark(mark, sizeof mark);
  const char *args[] = {"pi", "1e13", "1", "--backend", "mpi", "--seed", mark, NULL};
  char *v[32];
  mpiexec_argv(v, "2", CLI, args);
  pid_t parent = getpid();
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    mht_child_dies_with_parent(parent);
    setpgid(0, 0);
    int fd = open("/dev/null", 0);
    dup2(fd, 1);
    execv(v[0], v);
    _exit(127);
  }
  free_argv(v);
  setpgid(pid, pid);
  /* Wait until both ranks run. */
  double t0 = mht_now();
  /* (Sentinels not counted: with them, 3 could be mpiexec, rank 0 and its
   * sentinel before rank 1 exists.) */
  while (count_marked_in("manyhands-mpi", mark, 1) < 3 && mht_now() - t0 < 20)
    mht_sleep(0.05);
  ASSERT_GE(count_marked_in("manyhands-mpi", mark, 1), 3); /* mpiexec + 2 ranks */
  mht_sleep(0.5);
  kill(-pid, SIGINT);
  int st = 0;
  t0 = mht_now();
  while (waitpid(pid, &st, WNOHANG) == 0) {
    if (mht_now() - t0 > 20) {
      kill(-pid, SIGKILL);
      mht_fail(__FILE__, __LINE__, "mpiexec did not end after SIGINT");
    }
    mht_sleep(0.02);
  }
  ASSERT(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
  t0 = mht_now();
  while (count_marked(mark) > 0 && mht_now() - t0 < 5) mht_sleep(0.05);
  ASSERT_EQ(count_marked(mark), 0);
}

/* The pid of rank `rank` of the job whose command line holds `mark` (not
 * its sentinel), or 0. */
static pid_t find_rank(const char *mark, int rank) {
  DIR *d = opendir("/proc");
  pid_t found = 0;
  struct dirent *e;
  char want[48];
  snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
  while (d && !found && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[1 << 15];
    snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t len = fread(buf, 1, 64, f);
    fclose(f);
    buf[len] = '\0';
    if (strncmp(buf, "manyhands-mpi", 13) != 0) continue; /* sentinels too */
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (!(f = fopen(path, "r"))) continue;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    buf[len] = '\0';
    if (!strstr(buf, mark)) continue;
    snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
    if (!(f = fopen(path, "r"))) continue;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    for (size_t i = 0; i < len;) {
      if (strcmp(buf + i, want) == 0) found = (pid_t)atoi(e->d_name);
      i += strlen(buf + i) + 1;
    }
  }
  if (d) closedir(d);
  return found;
}

/* Entries of `dir` whose name holds "manyhands". */
static int count_our_files(const char *dir) {
  DIR *d = opendir(dir);
  int count = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, "manyhands")) count++;
  if (d) closedir(d);
  return count;
}

typedef struct bg_job {
  const char *ranks;
  const char *const *args;
  mht_proc_result_t res;
} bg_job_t;

static void *bg_main(void *arg) {
  bg_job_t *j = arg;
  run_mpi(j->ranks, CLI, j->args, 60, &j->res);
  return NULL;
}

/* Start a long pi job on `ranks` ranks, send `sig` to rank `victim` from
 * here (not the launcher), and check the job ends with a message naming
 * that rank with its pid and host, non-zero, leaving no process and no file
 * of ours in /dev/shm or /tmp. */
static void kill_rank_from_outside(const char *ranks, int victim, int sig,
                                   const char *want) {
  char mark[32];
  make_mark(mark, sizeof mark);
  int shm0 = count_our_files("/dev/shm"), tmp0 = count_our_files("/tmp");
  const char *args[] = {"pi", "1e13", "1", "--backend", "mpi", "--seed", mark,
                        NULL};
  bg_job_t job = {ranks, args, {0}};
  pthread_t tid;
  ASSERT_EQ(pthread_create(&tid, NULL, bg_main, &job), 0);
  pid_t pid = 0;
  double t0 = mht_now();
  while (!(pid = find_rank(mark, victim)) && mht_now() - t0 < 20)
    mht_sleep(0.05);
  ASSERT(pid > 0);
  /* Well into the run: the victim has counted for a while (its CPU time,
   * fields 14 and 15 of /proc/<pid>/stat, in clock ticks). */
  long ticks = 0, hz = sysconf(_SC_CLK_TCK);
  while (ticks < hz / 2 && mht_now() - t0 < 20) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) break;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                    &ut, &st) == 2)
      ticks = (long)(ut + st);
    mht_sleep(0.05);
  }
  ASSERT_EQ(kill(pid, sig), 0);
  pthread_join(tid, NULL);
  mht_proc_result_t *r = &job.res;
  ASSERT(!(r->exited && r->status == 0));
  char host[64] = {0}, name[160];
  gethostname(host, sizeof host - 1);
  snprintf(name, sizeof name, "manyhands: MPI rank %d (pid %d on %s) %s",
           victim, (int)pid, host, want);
  if (!strstr(r->err, name))
    mht_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", name, r->err);
  ASSERT(r->seconds < 30);
  mht_proc_free(r);
  assert_none_left("manyhands-mpi", mark);
  ASSERT_EQ(count_our_files("/dev/shm"), shm0);
  ASSERT_EQ(count_our_files("/tmp"), tmp0);
}

/* SIGKILL (OOM killer, a crash): the rank's sentinel names it. */
TEST(rank_killed_named) {
  need_mpi();
  kill_rank_from_outside("2", 1, SIGKILL, "died");
}

/* SIGTERM to one rank of three from outside the launcher: it names itself. */
TEST(rank_terminated_named) {
  need_mpi();
  kill_rank_from_outside("3", 2, SIGTERM, "was sent signal 15");
}

/* ---- a rank that sits a run out does not spin --------------------------- */

#if MHT_HAVE_MPI
/* Rank 1 sits the run out (0 threads) while rank 0 counts 8 blocks at 100 ms
 * each (MH_MPI_TEST_SLOW): rank 1 must wait for the result without taking
 * a core (Open MPI's blocking calls spin). */
HELPER(idle_rank_sleeps) {
  if (mh_mpi_init(&argc, &argv) != 0) return 3;
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = 8 * (uint64_t)BLOCK;
  mh_pi_result_t res;
  struct rusage u0, u1;
  getrusage(RUSAGE_SELF, &u0);
  double t0 = mht_now();
  int rc = mh_mpi_pi_run(&o, mh_mpi_rank() == 0 ? 1 : 0, &res, NULL);
  double wall = mht_now() - t0;
  getrusage(RUSAGE_SELF, &u1);
  double cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec) +
               (double)(u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
               1e-6 * (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec +
                               u1.ru_stime.tv_usec - u0.ru_stime.tv_usec);
  int code = 0;
  if (rc != 0 || res.done != o.n) code = 4;
  if (mh_mpi_rank() == 1) {
    printf("idle rank cpu %.3f s of %.3f s\n", cpu, wall);
    if (wall < 0.5) code = 5;         /* the hook did not slow rank 0 */
    if (cpu > 0.3 * wall) code = 6;   /* it spun */
  }
  fflush(stdout);
  mh_mpi_finalize();
  return code;
}
#endif

TEST(idle_rank_sleeps) {
  need_mpi();
  setenv("MH_MPI_TEST_SLOW", "0:100000", 1);
  const char *args[] = {"--helper", "idle_rank_sleeps", NULL};
  mht_proc_result_t r;
  run_mpi("2", mht_self(), args, 60, &r);
  unsetenv("MH_MPI_TEST_SLOW");
  if (r.status != 0) fprintf(stderr, "%s%s", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "idle rank cpu"));
  mht_proc_free(&r);
}
