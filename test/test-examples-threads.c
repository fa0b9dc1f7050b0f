/* SPDX-License-Identifier: MIT */
/* test-examples-threads.c - run the tutorial's threading programs
 * (examples/thread_example and examples/daemon) and check what the tutorial
 * says they show: the lines, their order and roughly how long they take. */
#include "test.h"

#define THREAD_EXAMPLE MHT_BUILD_DIR "/examples/thread_example"
#define DAEMON MHT_BUILD_DIR "/examples/daemon"

/* ThreadSanitizer sleeps 1 s at exit while other threads still run (its
 * atexit_sleep_ms), so there "at once" can only mean "well before the
 * daemon thread's 2 s". */
#define DAEMON_MAX_SECONDS (MH__TSAN ? 1.9 : 1.0)

/* The program's log lines (from stderr) with the "HH:MM:SS: " stamps
 * checked and removed, in order. */
typedef struct {
  int n;
  char line[16][128];
} lines_t;

static void split_log(const char *err, lines_t *out) {
  out->n = 0;
  const char *p = err;
  while (*p) {
    const char *nl = strchr(p, '\n');
    ASSERT(nl != NULL);
    ASSERT(out->n < 16);
    ASSERT(nl - p > 10 && nl - p < 128);
    for (int i = 0; i < 8; i++)
      ASSERT((i == 2 || i == 5) ? p[i] == ':' : (p[i] >= '0' && p[i] <= '9'));
    ASSERT(p[8] == ':' && p[9] == ' ');
    memcpy(out->line[out->n], p + 10, (size_t)(nl - p - 10));
    out->line[out->n][nl - p - 10] = 0;
    out->n++;
    p = nl + 1;
  }
}

/* Run `prog` with at most one option (NULL for none). */
static void run(const char *prog, const char *opt, mht_proc_result_t *r) {
  char p[4096], o[64];
  snprintf(p, sizeof p, "%s", prog);
  snprintf(o, sizeof o, "%s", opt ? opt : "");
  char *argv[] = {p, opt ? o : NULL, NULL};
  ASSERT_EQ(mht_run(argv, 30, r), 0);
}

static int find(const lines_t *l, const char *s) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->line[i], s) == 0) return i;
  return -1;
}

/* Lines every variant prints, in this order.  `need_start`: the thread's
 * "starting" line must be there (a daemon thread may be killed by the exit
 * before it gets to log even that on a busy machine). */
static void check_main_lines(const lines_t *l, int need_start) {
  int a = find(l, "Main    : before creating thread");
  int b = find(l, "Main    : before running thread");
  int c = find(l, "Main    : wait for the thread to finish");
  int d = find(l, "Main    : all done");
  int s = find(l, "Thread 1: starting");
  ASSERT(a == 0 && b == 1);
  ASSERT(c > b && d > c);
  if (need_start || s >= 0) ASSERT(s > b); /* after main starts it */
}

TEST(thread_example_without_join) {
  mht_proc_result_t r;
  run(THREAD_EXAMPLE, NULL, &r);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(r.out_len, 0); /* logging goes to stderr, as Python's does */
  lines_t l;
  split_log(r.err, &l);
  ASSERT_EQ(l.n, 6);
  check_main_lines(&l, 1);
  /* Main's "all done" comes before the thread finishes, and the program
   * still waits for the thread: "finishing" is the last line, ~2 s in. */
  ASSERT_EQ(find(&l, "Thread 1: finishing"), 5);
  ASSERT_LT(find(&l, "Main    : all done"), 5);
  ASSERT(r.seconds >= 1.9 && r.seconds < 10);
  mht_proc_free(&r);
}

TEST(thread_example_with_join) {
  mht_proc_result_t r;
  run(THREAD_EXAMPLE, "--join", &r);
  ASSERT(r.exited && r.status == 0);
  lines_t l;
  split_log(r.err, &l);
  ASSERT_EQ(l.n, 6);
  check_main_lines(&l, 1);
  /* The tutorial's joined order: the thread finishes, then "all done". */
  ASSERT_EQ(find(&l, "Thread 1: finishing"), 4);
  ASSERT_EQ(find(&l, "Main    : all done"), 5);
  ASSERT(r.seconds >= 1.9 && r.seconds < 10);
  mht_proc_free(&r);
}

TEST(daemon_exits_at_once) {
  mht_proc_result_t r;
  run(DAEMON, NULL, &r);
  ASSERT(r.exited && r.status == 0);
  lines_t l;
  split_log(r.err, &l);
  check_main_lines(&l, 0);
  /* The daemon thread is killed with the process: no "finishing", and no
   * 2-second wait. */
  ASSERT_EQ(find(&l, "Thread 1: finishing"), -1);
  ASSERT_EQ(l.n, find(&l, "Thread 1: starting") >= 0 ? 5 : 4);
  ASSERT(r.seconds < DAEMON_MAX_SECONDS);
  mht_proc_free(&r);
}

TEST(help_and_bad_options) {
  const char *progs[] = {THREAD_EXAMPLE, DAEMON};
  for (int i = 0; i < 2; i++) {
    mht_proc_result_t r;
    run(progs[i], "--help", &r);
    ASSERT(r.exited && r.status == 0);
    ASSERT(strstr(r.out, "usage:") != NULL);
    ASSERT(r.seconds < 1.5); /* --help starts no thread */
    mht_proc_free(&r);
    run(progs[i], "--bogus", &r);
    ASSERT(r.exited && r.status == 2);
    ASSERT(strstr(r.err, "usage:") != NULL);
    mht_proc_free(&r);
  }
}
