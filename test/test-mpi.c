/* SPDX-License-Identifier: MIT */
/* test-mpi.c - pi and map over MPI ranks, run for real under mpiexec -n 2.
 *
 * The tests launch `mpiexec -n R` on manyhands-mpi or on this binary's own
 * HELPERs (which are MPI programs: this binary links manyhands_mpi when MPI
 * is found).  Without MPI every test prints "MPI not found: skipped" and
 * exits 77, which CTest reports as skipped.
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

#include "test.h"
#include "mh_mpi_config.h"

#if MHT_HAVE_MPI
#include "manyhands/mpi.h"
#endif

/* The tests' own manyhands-mpi, built with the test hooks (MH_MPI_TEST_*). */
#define CLI MHT_BUILD_DIR "/test/manyhands-mpi"
#define BLOCK MH_PI_BLOCK_POINTS


static void need_mpi(void) {
#if !MHT_HAVE_MPI
  printf("MPI not found: skipped\n");
  exit(77);
#endif
  mht_mpi_launch_env("150", MHT_SOURCE_DIR);
}

/* argv of "mpiexec -n <ranks> [--oversubscribe] prog args...": fills `v`
 * (room for 32) with copies (free with free_argv). */
static void mpiexec_argv(char **v, const char *ranks, const char *prog,
                         const char *const args[]) {
  int k = 0;
  v[k++] = strdup(MHT_MPIEXEC);
  v[k++] = strdup(MHT_MPIEXEC_NUMPROC_FLAG);
  v[k++] = strdup(ranks);
  if (MHT_MPIEXEC_EXTRA[0]) v[k++] = strdup(MHT_MPIEXEC_EXTRA);
  v[k++] = strdup(prog);
  for (int i = 0; args[i] && k < 31; i++) v[k++] = strdup(args[i]);
  v[k] = NULL;
}

static void free_argv(char **v) {
  for (int i = 0; v[i]; i++) free(v[i]);
}

static void run_mpi(const char *ranks, const char *prog,
                    const char *const args[], double timeout,
                    mht_proc_result_t *res) {
  char *v[32];
  mpiexec_argv(v, ranks, prog, args);
  int rc = mht_run(v, timeout, res);
  free_argv(v);
  ASSERT_EQ(rc, 0);
  ASSERT(!res->timed_out);
}

static int count_our_files(const char *dir);

/* The number in `"key":<n>` of a JSON line. */
static uint64_t json_u64(const char *s, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(s, pat);
  if (!p) mht_fail(__FILE__, __LINE__, "no %s in %s", key, s);
  return strtoull(p + strlen(pat), NULL, 10);
}

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

/* Processes whose command line holds `prog` and `mark`. */
/* The processes whose command line holds prog and mark; with no_sentinels,
 * not counting the rank's sentinels (forks of the rank: same command line,
 * named mh-sentinel). */
static int count_marked_in(const char *prog, const char *mark, int no_sentinels) {
  DIR *d = opendir("/proc");
  int count = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    char path[300], buf[4096];
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (no_sentinels) {
      char comm[32] = "";
      snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
      FILE *c = fopen(path, "r");
      if (!c) continue;
      if (!fgets(comm, sizeof comm, c)) comm[0] = 0;
      fclose(c);
      if (strncmp(comm, "mh-sentinel", 11) == 0) continue;
    }
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    buf[len] = '\0';
    if (strstr(buf, prog) && strstr(buf, mark)) count++;
  }
  if (d) closedir(d);
  return count;
}

static int count_marked_prog(const char *prog, const char *mark) {
  return count_marked_in(prog, mark, 0);
}

static int count_marked(const char *mark) {
  return count_marked_prog("manyhands-mpi", mark);
}

/* A mark for the command lines of one test's processes. */
static void make_mark(char *buf, size_t len) {
  snprintf(buf, len, "%d", 900000 + (int)getpid() % 99999);
}

/* After a failed job: every process of it (ranks, sentinels) is gone within
 * a few seconds. */
static void assert_none_left(const char *prog, const char *mark) {
  double t0 = mht_now();
  while (count_marked_prog(prog, mark) > 0 && mht_now() - t0 < 5)
    mht_sleep(0.05);
  ASSERT_EQ(count_marked_prog(prog, mark), 0);
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
