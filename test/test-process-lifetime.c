/* SPDX-License-Identifier: MIT */
/* test-process-lifetime.c - mh_process_* and who outlives whom: a child
 * dies with its parent (even one that dies before the child is set up),
 * daemons, active_children and sentinels, exit waiting for non-daemon
 * children and threads; and Python's names for processes.  Exit codes,
 * signals, timeouts and bad input are test-process.c. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <math.h>
#include <sched.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process-common.h"

/* ---- parent death ------------------------------------------------------- */

static int write_pid_sleep_forever(void *arg) {
  pid_t me = getpid();
  if (write((int)(intptr_t)arg, &me, sizeof me) != (ssize_t)sizeof me) return 1;
  for (;;) pause();
  return 0;
}

HELPER(orphan_maker) {
  (void)argc;
  (void)argv;
  /* The child tells us its pid from its function, so it has its parent-death
   * signal in place when we die: this tests the signal, not the check. */
  int fds[2];
  if (pipe(fds) != 0) return 2;
  mh_process_t *p;
  if (mh_process_start(&p, write_pid_sleep_forever, (void *)(intptr_t)fds[1], NULL)) return 3;
  pid_t pid = 0;
  if (read(fds[0], &pid, sizeof pid) != (ssize_t)sizeof pid || pid != mh_process_pid(p)) return 4;
  printf("%d\n", (int)pid);
  fflush(stdout);
  /* Die without joining, freeing or exiting cleanly. */
  kill(getpid(), SIGKILL);
  return 0;
}

TEST(parent_death_kills_child) {
  /* Become a subreaper so that the orphaned grandchild is handed to us: we
   * can then reap it and see exactly how it ended. */
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("orphan_maker", NULL, 30, &r), 0);
  ASSERT_EQ(r.exited, 0);
  ASSERT_EQ(r.status, SIGKILL);
  pid_t grandchild = (pid_t)atoi(r.out);
  mht_proc_free(&r);
  ASSERT_GT(grandchild, 0);
  int st = 0;
  pid_t w = 0;
  double end = mht_now() + 10;
  while ((w = waitpid(grandchild, &st, WNOHANG)) == 0 && mht_now() < end) mht_sleep(0.01);
  if (w == 0) kill(grandchild, SIGKILL); /* do not leave it behind */
  ASSERT_EQ(w, grandchild);
  ASSERT(WIFSIGNALED(st));
  ASSERT_EQ(WTERMSIG(st), SIGKILL);
  assert_no_children();
}

static mh_process_t *orphan_handle; /* kept reachable: not a leak */

static int pin_to_one_cpu(void) {
  int cpu = sched_getcpu();
  if (cpu < 0) return -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* Reap the one orphan that was handed to us (a subreaper), waiting at most
 * 10 s; returns its wait status, or -1 when it did not end. */
static int reap_orphan(void) {
  double end = mht_now() + 10;
  for (;;) {
    int st = 0;
    pid_t w = waitpid(-1, &st, WNOHANG);
    if (w > 0) return st;
    if (w < 0 && errno != EINTR) return -1;
    if (mht_now() > end) return -1;
    mht_sleep(0.0005);
  }
}

TEST(parent_dies_before_deathsig) {
  /* The race before the parent-death signal is in place: a process starts a
   * child and dies at once.  mh_process_start() returns as soon as fork()
   * does, and on one CPU the parent runs on and exits before its child is
   * first scheduled, so the child's prctl(PR_SET_PDEATHSIG) comes too late
   * to fire: only its getppid() check can catch that.  We are a subreaper,
   * so each orphan is handed to us, and we see how it ended: exit status 1
   * (the getppid check) or SIGKILL (the signal) - never still running (its
   * function sleeps forever). */
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pinned = pin_to_one_cpu() == 0;
  long n = mht_scaled(200);
  int by_check = 0, by_signal = 0;
  for (long i = 0; i < n; i++) {
    pid_t mid = fork();
    ASSERT(mid >= 0);
    if (mid == 0) {
      if (i % 4 == 3) mht_jitter(200); /* now and then, die a little later */
      _exit(mh_process_start(&orphan_handle, sleep_forever, NULL, NULL) == 0 ? 0 : 3);
    }
    int st = 0;
    ASSERT_EQ(waitpid(mid, &st, 0), mid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = reap_orphan();
    /* The orphan ended within 10 s.  (Should one survive, the test fails, and
     * its parent-death signal, set after it was handed to us, ends it.) */
    ASSERT(st != -1);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1)
      by_check++;
    else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
      by_signal++;
    else
      mht_fail(__FILE__, __LINE__, "orphan ended with status %#x", st);
  }
  ASSERT_EQ(by_check + by_signal, n);
  /* Pinned, the parent nearly always wins the race: the check did work. */
  if (pinned) ASSERT_GT(by_check, 0);
  printf("orphans: %d caught by the getppid check, %d by the signal\n", by_check, by_signal);
  assert_no_children();
}

HELPER(start_and_die) {
  (void)argc;
  (void)argv;
  pin_to_one_cpu();
  /* The child says which pid it runs in, if it gets as far as running. */
  mh_process_t *p;
  if (mh_process_start(&p, print_pid_sleep_forever, NULL, NULL)) return 3;
  _exit(0); /* at once: no join, no free, no flush */
}

TEST(parent_dies_before_deathsig_helper) {
  /* The same race with a separate helper program, started afresh each
   * time.  The orphan keeps the helper's stdout open until it ends, so a
   * survivor would also show as a helper run that times out. */
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  long n = mht_scaled(30);
  for (long i = 0; i < n; i++) {
    mht_proc_result_t r;
    ASSERT_EQ(mht_run_helper("start_and_die", NULL, 20, &r), 0);
    ASSERT_EQ(r.timed_out, 0);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 0);
    pid_t said = (pid_t)atoi(r.out);
    mht_proc_free(&r);
    int st = reap_orphan();
    ASSERT(st != -1);
    ASSERT((WIFEXITED(st) && WEXITSTATUS(st) == 1) ||
           (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    /* If it got as far as saying its pid, it is gone now. */
    if (said > 0) ASSERT(kill(said, 0) != 0 && errno == ESRCH);
  }
  assert_no_children();
}

/* ---- Python's names, daemons, exit rules ------------------------------------ */

static char name_p1[] = "Process-1", name_talker[] = "talker";

static int check_identity(void *arg) {
  const char *want = arg;
  if (strcmp(mh_process_current_name(), want) != 0) return 3;
  if (mh_process_current_daemon() != 0) return 4;
  if (mh_process_parent_pid() != getppid()) return 5;
  /* A grandchild is named after us, "Process-N:1". */
  mh_process_t *g;
  if (mh_process_start(&g, ret_arg, NULL, NULL)) return 6;
  char expect[128];
  const char *colon = strchr(want, '-');
  snprintf(expect, sizeof expect, "Process-%s:1", colon ? colon + 1 : "?");
  int ok = strncmp(want, "Process-", 8) != 0 || strcmp(mh_process_name(g), expect) == 0;
  mh_process_join(g, MH_FOREVER);
  mh_process_free(g);
  return ok ? 0 : 7;
}

static void expect_exit(mh_process_t *p, int want) {
  int code = -1000;
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, want);
}

TEST(names_and_current_process) {
  ASSERT_STREQ(mh_process_current_name(), "MainProcess");
  ASSERT_EQ(mh_process_current_daemon(), 0);
  ASSERT_EQ(mh_process_parent_pid(), 0);
  mh_process_t *p, *q;
  ASSERT_OK(mh_process_start(&p, check_identity, name_p1, NULL));
  ASSERT_STREQ(mh_process_name(p), "Process-1");
  ASSERT_EQ(mh_process_daemon(p), 0);
  expect_exit(p, 0);
  mh_process_free(p);
  mh_process_options_t o = {.name = "talker"};
  ASSERT_OK(mh_process_start(&q, check_identity, name_talker, &o));
  ASSERT_STREQ(mh_process_name(q), "talker");
  expect_exit(q, 0);
  mh_process_free(q);
  /* The counter goes on: the third child is Process-3. */
  ASSERT_OK(mh_process_start(&p, ret_arg, NULL, NULL));
  ASSERT_STREQ(mh_process_name(p), "Process-3");
  expect_exit(p, 0);
  mh_process_free(p);
  ASSERT(mh_process_name(NULL) == NULL);
  ASSERT_ERR(mh_process_daemon(NULL), MH_EINVAL);
  assert_no_children();
}

static int daemon_tries_children(void *arg) {
  (void)arg;
  if (!mh_process_current_daemon()) return 3;
  mh_process_t *p = (mh_process_t *)1;
  int rc = mh_process_start(&p, ret_arg, NULL, NULL);
  return rc == MH_EPERM && p == NULL ? 0 : 4;
}

TEST(daemon_has_no_children) {
  mh_process_options_t o = {.daemon = 1};
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, daemon_tries_children, NULL, &o));
  ASSERT_EQ(mh_process_daemon(p), 1);
  expect_exit(p, 0);
  mh_process_free(p);
}

TEST(active_children_and_sentinel) {
  enum { N = 4 };
  mh_process_t *p[N];
  pid_t pids[N + 2];
  ASSERT_EQ(mh_process_active_children(NULL, 0), 0);
  ASSERT_ERR(mh_process_active_children(NULL, 1), MH_EINVAL);
  for (int i = 0; i < N; i++) ASSERT_OK(mh_process_start(&p[i], sleep_forever, NULL, NULL));
  ASSERT_EQ(mh_process_active_children(pids, N + 2), N);
  for (int i = 0; i < N; i++) {
    int found = 0;
    for (int j = 0; j < N; j++) found |= pids[j] == mh_process_pid(p[i]);
    ASSERT(found);
  }
  ASSERT_EQ(mh_process_active_children(pids, 1), N); /* the count, not the room */
  /* A sentinel is readable exactly once its child has ended. */
  int fd = mh_process_sentinel(p[0]);
  ASSERT_GE(fd, 0);
  struct pollfd pf = {fd, POLLIN, 0};
  ASSERT_EQ(poll(&pf, 1, 0), 0);
  ASSERT_OK(mh_process_kill(p[0]));
  ASSERT_EQ(poll(&pf, 1, 30000), 1);
  ASSERT_EQ(mh_process_active_children(pids, N + 2), N - 1); /* ended, not yet reaped */
  expect_exit(p[0], -SIGKILL);
  ASSERT_EQ(mh_process_active_children(pids, N + 2), N - 1);
  /* A freed handle's child still counts while it runs. */
  pid_t freed = mh_process_pid(p[1]);
  mh_process_free(p[1]);
  ASSERT_EQ(mh_process_active_children(pids, N + 2), N - 1);
  ASSERT_EQ(kill(freed, SIGKILL), 0);
  for (int i = 0; i < 1000 && mh_process_active_children(pids, N + 2) != N - 2; i++)
    mht_sleep(0.01);
  ASSERT_EQ(mh_process_active_children(pids, N + 2), N - 2);
  for (int i = 2; i < N; i++) {
    ASSERT_OK(mh_process_kill(p[i]));
    expect_exit(p[i], -SIGKILL);
  }
  ASSERT_EQ(mh_process_active_children(pids, N + 2), 0);
  mh_process_free(p[0]);
  for (int i = 2; i < N; i++) mh_process_free(p[i]);
  assert_no_children();
}

/* A marker file in the test's own temporary name. */
static void marker_path(char *buf, size_t n, const char *what, pid_t who) {
  snprintf(buf, n, "/tmp/mh-test-process-%d-%s", (int)who, what);
}

static int read_marker(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t got = fread(out, 1, n - 1, f);
  out[got] = 0;
  fclose(f);
  unlink(path);
  return 1;
}

/* With open/write/close only: on_term calls it from a signal handler, where
 * fopen's malloc is not allowed (ThreadSanitizer reports it, and with
 * halt_on_error=1, as in CI, the daemon then died before its marker). */
static void write_marker(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ssize_t w = write(fd, text, strlen(text));
  (void)w;
  close(fd);
}

static char g_marker[256];

static int sleep_then_mark(void *arg) {
  mht_sleep((double)(intptr_t)arg / 1000.0);
  write_marker(g_marker, "finished");
  return 0;
}

static void on_term(int sig) {
  (void)sig;
  write_marker(g_marker, "terminated");
  _exit(0);
}

static mh_conn_t *g_ready_rx, *g_ready_tx; /* the daemon says "handler set" */

static int daemon_waits_for_term(void *arg) {
  (void)arg;
  signal(SIGTERM, on_term);
  mh_conn_close(g_ready_rx);
  if (mh_conn_send(g_ready_tx, "r", 1)) return 3;
  for (;;) pause();
  return 0;
}

HELPER(exit_with_children) {
  /* argv[0]: the marker path; argv[1]: "daemon" or "plain". */
  if (argc < 2) return 2;
  snprintf(g_marker, sizeof g_marker, "%s", argv[0]);
  mh_process_options_t o = {.daemon = strcmp(argv[1], "daemon") == 0};
  mh_process_t *p;
  if (mh_pipe(&g_ready_rx, &g_ready_tx, 0)) return 3;
  if (mh_process_start(&p, o.daemon ? daemon_waits_for_term : sleep_then_mark,
                       (void *)(intptr_t)300, &o))
    return 3;
  mh_conn_close(g_ready_tx);
  /* Wait until the daemon's handler is in place (no sleep: a busy machine
   * may take long to run it). */
  char c;
  size_t len;
  if (o.daemon && mh_conn_recv(g_ready_rx, &c, 1, &len)) return 4;
  mh_conn_close(g_ready_rx);
  /* Freed, not joined: exit must still wait for (or end) the child. */
  mh_process_free(p);
  return 0;
}

TEST(exit_waits_for_children_ends_daemons) {
  /* As Python: a program that returns from main waits for its non-daemon
   * children (the child's marker is there when the program is gone), and
   * sends SIGTERM to its daemon children and waits for them (its handler
   * ran: not the parent-death SIGKILL). */
  for (int daemon = 0; daemon < 2; daemon++) {
    char path[256], buf[64], mode[16];
    marker_path(path, sizeof path, "exit", getpid());
    unlink(path);
    snprintf(mode, sizeof mode, "%s", daemon ? "daemon" : "plain");
    char *args[] = {path, mode, NULL};
    mht_proc_result_t r;
    ASSERT_EQ(mht_run_helper("exit_with_children", args, 60, &r), 0);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 0);
    mht_proc_free(&r);
    ASSERT(read_marker(path, buf, sizeof buf));
    ASSERT_STREQ(buf, daemon ? "terminated" : "finished");
  }
}

static void thread_sleeps_then_marks(void *arg) {
  (void)arg;
  mht_sleep(0.3);
  write_marker(g_marker, "thread done");
}

static int child_leaves_a_thread(void *arg) {
  mh_thread_t *t;
  if (mh_thread_start(&t, thread_sleeps_then_marks, NULL, NULL)) return 3;
  mh_thread_free(t);
  return (int)(intptr_t)arg; /* returns at once; the thread runs on */
}

TEST(child_waits_for_its_threads) {
  /* A child whose function returns while a non-daemon thread runs waits for
   * it, as a Python child does, and keeps the function's exit code. */
  marker_path(g_marker, sizeof g_marker, "thread", getpid());
  unlink(g_marker);
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, child_leaves_a_thread, (void *)(intptr_t)42, NULL));
  expect_exit(p, 42);
  mh_process_free(p);
  char buf[64];
  ASSERT(read_marker(g_marker, buf, sizeof buf));
  ASSERT_STREQ(buf, "thread done");
}
