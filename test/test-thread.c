/* SPDX-License-Identifier: MIT */
/* test-thread.c - threads: start/join/is_alive/names, bad input, ENOMEM,
 * stress with many short threads, and Python's exit semantics proven with
 * child programs (non-daemon threads are waited for, daemon ones are not,
 * a thread calling exit() does not wait for itself, fork children do not
 * wait for their parent's threads). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* ---- helpers --------------------------------------------------------- */

/* Messages threads print (writable: a thread's argument is a void *). */
static char msg_thread_done[] = "thread done\n";
static char msg_daemon_done[] = "daemon done\n";
static char msg_worker_done[] = "worker done\n";
static char msg_other_done[] = "other done\n";
static char msg_grandchild_done[] = "grandchild done\n";
static char msg_parent_thread_done[] = "parent thread done\n";
static char msg_late[] = "late\n";

static void say(const char *s) {
  /* One write per line, so the order in the captured output is the order
   * of the calls. */
  ssize_t n = write(1, s, strlen(s));
  (void)n;
}

static void sleep_then_say(void *arg) {
  mht_sleep(0.5);
  say(arg);
}

static void set_flag(void *arg) { atomic_store((atomic_int *)arg, 1); }

static void wait_event(void *arg) { ASSERT_OK(mh_event_wait(arg, 30)); }

/* Position of `needle` in `hay`, or -1. */
static long pos(const char *hay, const char *needle) {
  const char *p = strstr(hay, needle);
  return p ? (long)(p - hay) : -1;
}

/* ---- basics ---------------------------------------------------------- */

TEST(start_join) {
  atomic_int flag = 0;
  mh_thread_t *t = NULL;
  ASSERT_OK(mh_thread_start(&t, set_flag, &flag, NULL));
  ASSERT(t != NULL);
  ASSERT_OK(mh_thread_join(t, MH_FOREVER));
  ASSERT_EQ(atomic_load(&flag), 1);
  ASSERT_EQ(mh_thread_is_alive(t), 0);
  ASSERT_OK(mh_thread_join(t, 0)); /* joining again is fine */
  ASSERT_EQ(mh_thread_daemon(t), 0);
  ASSERT(strncmp(mh_thread_name(t), "Thread-", 7) == 0);
  mh_thread_free(t);

  mh_thread_options_t o = {0};
  o.name = "worker-with-a-rather-long-name";
  o.daemon = 1;
  o.stack_size = 256 * 1024;
  ASSERT_OK(mh_thread_start(&t, set_flag, &flag, &o));
  ASSERT_STREQ(mh_thread_name(t), "worker-with-a-rather-long-name");
  ASSERT_EQ(mh_thread_daemon(t), 1);
  ASSERT_OK(mh_thread_join(t, 10));
  mh_thread_free(t);
}

TEST(bad_input) {
  mh_thread_t *t = (mh_thread_t *)&t;
  ASSERT_ERR(mh_thread_start(NULL, set_flag, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_thread_start(&t, NULL, NULL, NULL), MH_EINVAL);
  ASSERT(t == NULL); /* cleared on failure */
  mh_thread_options_t o = {0};
  o.flags = 1;
  ASSERT_ERR(mh_thread_start(&t, set_flag, NULL, &o), MH_EINVAL);
  o.flags = 0;
  o.stack_size = 100; /* below PTHREAD_STACK_MIN */
  ASSERT_ERR(mh_thread_start(&t, set_flag, NULL, &o), MH_EINVAL);
  ASSERT_ERR(mh_thread_join(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_thread_is_alive(NULL), MH_EINVAL);
  ASSERT_ERR(mh_thread_daemon(NULL), MH_EINVAL);
  ASSERT(mh_thread_name(NULL) == NULL);
  mh_thread_free(NULL);

  mh_event_t ev;
  ASSERT_OK(mh_event_init(&ev));
  ASSERT_OK(mh_thread_start(&t, wait_event, &ev, NULL));
  ASSERT_ERR(mh_thread_join(t, -0.5), MH_EINVAL);
  ASSERT_ERR(mh_thread_join(t, NAN), MH_EINVAL);
  ASSERT_ERR(mh_thread_join(t, -INFINITY), MH_EINVAL);
  ASSERT_OK(mh_event_set(&ev));
  ASSERT_OK(mh_thread_join(t, MH_FOREVER));
  mh_thread_free(t);
  ASSERT_OK(mh_event_destroy(&ev));
}

static mh_thread_t *self_handle;
static atomic_int self_join_rc;

static void join_self(void *arg) {
  mh_event_t *ready = arg;
  ASSERT_OK(mh_event_wait(ready, 30));
  atomic_store(&self_join_rc, mh_thread_join(self_handle, 1));
}

TEST(join_self_is_deadlock) {
  mh_event_t ready;
  ASSERT_OK(mh_event_init(&ready));
  ASSERT_OK(mh_thread_start(&self_handle, join_self, &ready, NULL));
  ASSERT_OK(mh_event_set(&ready));
  ASSERT_OK(mh_thread_join(self_handle, 30));
  ASSERT_EQ(atomic_load(&self_join_rc), MH_EDEADLK);
  mh_thread_free(self_handle);
  ASSERT_OK(mh_event_destroy(&ready));
}

TEST(join_timeout) {
  mh_event_t ev;
  ASSERT_OK(mh_event_init(&ev));
  mh_thread_t *t;
  ASSERT_OK(mh_thread_start(&t, wait_event, &ev, NULL));
  ASSERT_ERR(mh_thread_join(t, 0), MH_ETIMEDOUT);
  double t0 = mht_now();
  ASSERT_ERR(mh_thread_join(t, 0.1), MH_ETIMEDOUT);
  double took = mht_now() - t0;
  ASSERT(took >= 0.095 && took < 2.0);
  ASSERT_EQ(mh_thread_is_alive(t), 1);
  ASSERT_OK(mh_event_set(&ev));
  ASSERT_OK(mh_thread_join(t, 30));
  ASSERT_EQ(mh_thread_is_alive(t), 0);
  mh_thread_free(t);
  ASSERT_OK(mh_event_destroy(&ev));
}

/* ---- names ----------------------------------------------------------- */

static char seen_name[64];

static void record_name(void *arg) {
  (void)arg;
  snprintf(seen_name, sizeof seen_name, "%s", mh_thread_current_name());
}

static void *raw_record_name(void *arg) {
  record_name(arg);
  return NULL;
}

TEST(current_name) {
  ASSERT_STREQ(mh_thread_current_name(), "MainThread");
  ASSERT_EQ(mh_thread_native_id(), (long)getpid());
  mh_thread_options_t o = {0};
  o.name = "alpha";
  mh_thread_t *t;
  ASSERT_OK(mh_thread_start(&t, record_name, NULL, &o));
  ASSERT_OK(mh_thread_join(t, 30));
  ASSERT_STREQ(seen_name, "alpha");
  mh_thread_free(t);
  ASSERT_OK(mh_thread_start(&t, record_name, NULL, NULL));
  ASSERT_OK(mh_thread_join(t, 30));
  ASSERT_STREQ(seen_name, mh_thread_name(t));
  mh_thread_free(t);
  pthread_t p;
  pthread_create(&p, NULL, raw_record_name, NULL);
  pthread_join(p, NULL);
  ASSERT(strncmp(seen_name, "Dummy-", 6) == 0);
}

/* ---- lifetime -------------------------------------------------------- */

static void slow_set(void *arg) {
  mht_sleep(0.05);
  atomic_fetch_add((atomic_int *)arg, 1);
}

static void exit_early(void *arg) {
  atomic_fetch_add((atomic_int *)arg, 1);
  pthread_exit(NULL);
}

TEST(free_while_running_and_pthread_exit) {
  atomic_int n = 0;
  mh_thread_t *t;
  ASSERT_OK(mh_thread_start(&t, slow_set, &n, NULL));
  mh_thread_free(t); /* detached: it finishes and cleans up alone */
  ASSERT_OK(mh_thread_start(&t, exit_early, &n, NULL));
  ASSERT_OK(mh_thread_join(t, 30)); /* pthread_exit also ends it properly */
  ASSERT_EQ(mh_thread_is_alive(t), 0);
  mh_thread_free(t);
  double t0 = mht_now();
  while (atomic_load(&n) < 2) {
    ASSERT(mht_now() - t0 < 20);
    mht_sleep(0.001);
  }
}

static mh_thread_t *shared_target;

static void joiner(void *arg) {
  ASSERT_OK(mh_thread_join(shared_target, 30));
  atomic_fetch_add((atomic_int *)arg, 1);
}

TEST(many_joiners) {
  mh_event_t ev;
  ASSERT_OK(mh_event_init(&ev));
  ASSERT_OK(mh_thread_start(&shared_target, wait_event, &ev, NULL));
  atomic_int done = 0;
  mh_thread_t *j[8];
  for (int i = 0; i < 8; i++) ASSERT_OK(mh_thread_start(&j[i], joiner, &done, NULL));
  mht_sleep(0.02);
  ASSERT_EQ(atomic_load(&done), 0);
  ASSERT_OK(mh_event_set(&ev));
  for (int i = 0; i < 8; i++) {
    ASSERT_OK(mh_thread_join(j[i], 30));
    mh_thread_free(j[i]);
  }
  ASSERT_EQ(atomic_load(&done), 8);
  mh_thread_free(shared_target);
  ASSERT_OK(mh_event_destroy(&ev));
}

static void tiny(void *arg) {
  mht_jitter(200);
  atomic_fetch_add((atomic_int *)arg, 1);
}

static void starter(void *arg) {
  /* Start short threads; join some (with timeouts first), free others
   * while they may still run. */
  for (int round = 0; round < mht_scaled(40); round++) {
    mh_thread_t *t[8];
    for (int i = 0; i < 8; i++) {
      mh_thread_options_t o = {0};
      o.daemon = i & 1;
      ASSERT_OK(mh_thread_start(&t[i], tiny, arg, &o));
    }
    for (int i = 0; i < 8; i++) {
      if (i % 3 == 0) {
        mh_thread_free(t[i]);
        continue;
      }
      int rc;
      while ((rc = mh_thread_join(t[i], 0.0001)) == MH_ETIMEDOUT) {
      }
      ASSERT_OK(rc);
      mh_thread_free(t[i]);
    }
  }
}

TEST(stress_many_threads) {
  atomic_int n = 0;
  mh_thread_t *s[4];
  for (int i = 0; i < 4; i++) ASSERT_OK(mh_thread_start(&s[i], starter, &n, NULL));
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(mh_thread_join(s[i], MH_FOREVER));
    mh_thread_free(s[i]);
  }
  long want = 4 * 8 * mht_scaled(40);
  double t0 = mht_now();
  while (atomic_load(&n) < want) { /* the freed ones may still be finishing */
    ASSERT(mht_now() - t0 < 30);
    mht_sleep(0.001);
  }
  ASSERT_EQ(atomic_load(&n), want);
}

TEST(enomem_leaks_nothing) {
  atomic_int flag = 0;
  int ok = 0;
  for (long n = 0; n < 10 && !ok; n++) {
    mht_alloc_fail_after(n);
    mh_thread_t *t = NULL;
    int rc = mh_thread_start(&t, set_flag, &flag, NULL);
    if (rc == 0) {
      ASSERT_OK(mh_thread_join(t, 30));
      mh_thread_free(t);
      ok = 1;
    } else {
      ASSERT_ERR(rc, MH_ENOMEM);
      ASSERT(t == NULL);
    }
    ASSERT_EQ(mht_alloc_live(), 0);
  }
  mht_alloc_reset();
  ASSERT(ok);
  ASSERT_EQ(atomic_load(&flag), 1);
}

/* Under a small address-space limit (`ulimit -v`) pthread_create cannot map
 * the new thread's stack and says EAGAIN, as it does when the system is out
 * of threads: the answer must be MH_ENOMEM, "out of memory".  In a child
 * process, since the limit is for the whole process. */

/* Address space the process maps now, in bytes (/proc/self/statm). */
static size_t vm_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  ASSERT(f != NULL);
  unsigned long pages = 0;
  ASSERT_EQ(fscanf(f, "%lu", &pages), 1);
  fclose(f);
  return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void as_limit(rlim_t bytes) {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &rl), 0);
  rl.rlim_cur = bytes;
  ASSERT_EQ(setrlimit(RLIMIT_AS, &rl), 0);
}

static void stack_enomem_child(void) {
  atomic_int flag = 0;
  mh_thread_t *t = NULL;
  /* Start (and finish) one thread first, so the library's one-time state
   * and the allocator's arenas are in place before the limit. */
  ASSERT_OK(mh_thread_start(&t, set_flag, &flag, NULL));
  ASSERT_OK(mh_thread_join(t, 30));
  mh_thread_free(t);
  mh_executor_t *ex = NULL;
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.workers = 4;

  as_limit((rlim_t)(vm_bytes() + ((size_t)1 << 20)));
  mh_thread_options_t o = {.stack_size = (size_t)64 << 20};
  ASSERT_ERR(mh_thread_start(&t, set_flag, &flag, &o), MH_ENOMEM);
  ASSERT(t == NULL);
  ASSERT_STREQ(mh_strerror(MH_ENOMEM), "out of memory");
  /* The thread pool's workers, on default stacks: the same answer (glibc
   * may reuse the first thread's cached stack for one of them, not for
   * all four). */
  ASSERT_ERR(mh_executor_new(&ex, &eo), MH_ENOMEM);

  /* With the limit lifted the same starts work: it was the memory. */
  as_limit(RLIM_INFINITY);
  ASSERT_OK(mh_thread_start(&t, set_flag, &flag, &o));
  ASSERT_OK(mh_thread_join(t, 30));
  mh_thread_free(t);
  ASSERT_OK(mh_executor_new(&ex, &eo));
  mh_executor_free(ex);
  ASSERT_EQ(atomic_load(&flag), 1);
}

TEST(stack_enomem) {
#if MH__SANITIZED
  /* The sanitizers' shadow memory does not live with an address limit. */
  printf("skipped under a sanitizer with shadow memory\n");
  exit(77);
#endif
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    stack_enomem_child();
    _exit(0);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* ---- exit semantics (child programs) ---------------------------------- */

HELPER(exit_returns) {
  /* main returns while a non-daemon thread still runs: the process waits. */
  (void)argc;
  (void)argv;
  mh_thread_t *t;
  if (mh_thread_start(&t, sleep_then_say, msg_thread_done, NULL)) return 2;
  mh_thread_free(t);
  say("main done\n");
  return 0;
}

TEST(exit_waits_for_non_daemon) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_returns", NULL, 30, &r), 0);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 0);
  ASSERT_GE(pos(r.out, "main done"), 0);
  ASSERT_GT(pos(r.out, "thread done"), pos(r.out, "main done"));
  ASSERT(r.seconds >= 0.45);
  mht_proc_free(&r);
}

HELPER(exit_call) {
  /* exit() (not a return) also waits, and keeps its status. */
  (void)argc;
  (void)argv;
  mh_thread_t *t;
  if (mh_thread_start(&t, sleep_then_say, msg_thread_done, NULL)) return 2;
  say("main exits\n");
  exit(3);
}

TEST(exit_call_waits) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_call", NULL, 30, &r), 0);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 3);
  ASSERT_GT(pos(r.out, "thread done"), pos(r.out, "main exits"));
  ASSERT(r.seconds >= 0.45);
  mht_proc_free(&r);
}

static void long_daemon(void *arg) {
  mht_sleep(5);
  say(arg);
}

HELPER(exit_daemon) {
  (void)argc;
  (void)argv;
  mh_thread_options_t o = {0};
  o.daemon = 1;
  mh_thread_t *t;
  if (mh_thread_start(&t, long_daemon, msg_daemon_done, &o)) return 2;
  say("main done\n");
  return 0;
}

TEST(exit_does_not_wait_for_daemon) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_daemon", NULL, 30, &r), 0);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 0);
  ASSERT_GE(pos(r.out, "main done"), 0);
  ASSERT_EQ(pos(r.out, "daemon done"), -1);
  ASSERT(r.seconds < 2.5);
  mht_proc_free(&r);
}

HELPER(exit_mixed) {
  /* A long daemon and a short non-daemon: only the latter is waited for. */
  (void)argc;
  (void)argv;
  mh_thread_options_t o = {0};
  o.daemon = 1;
  mh_thread_t *t;
  if (mh_thread_start(&t, long_daemon, msg_daemon_done, &o)) return 2;
  mh_thread_free(t);
  if (mh_thread_start(&t, sleep_then_say, msg_worker_done, NULL)) return 2;
  mh_thread_free(t);
  return 0;
}

TEST(exit_mixed_daemon_and_not) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_mixed", NULL, 30, &r), 0);
  ASSERT(r.exited && r.status == 0);
  ASSERT_GE(pos(r.out, "worker done"), 0);
  ASSERT_EQ(pos(r.out, "daemon done"), -1);
  ASSERT(r.seconds >= 0.45 && r.seconds < 3.0);
  mht_proc_free(&r);
}

static void exit_from_thread(void *arg) {
  (void)arg;
  mht_sleep(0.1);
  say("thread calls exit\n");
  exit(7);
}

HELPER(exit_in_thread) {
  /* A non-daemon thread calls exit() while main blocks: the exit must not
   * wait for the calling thread itself (nor for main, which is no mh
   * thread), but it does wait for the other non-daemon thread. */
  (void)argc;
  (void)argv;
  mh_thread_t *t, *other;
  if (mh_thread_start(&other, sleep_then_say, msg_other_done, NULL)) return 2;
  if (mh_thread_start(&t, exit_from_thread, NULL, NULL)) return 2;
  mh_thread_join(t, MH_FOREVER);
  say("main must not get here\n");
  return 0;
}

TEST(exit_from_non_daemon_thread) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_in_thread", NULL, 30, &r), 0);
  ASSERT(!r.timed_out);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 7);
  ASSERT_GT(pos(r.out, "other done"), pos(r.out, "thread calls exit"));
  ASSERT_EQ(pos(r.out, "main must not"), -1);
  ASSERT(r.seconds >= 0.45 && r.seconds < 10);
  mht_proc_free(&r);
}

static void spawn_then_end(void *arg) {
  (void)arg;
  mht_sleep(0.2);
  mh_thread_t *t;
  if (mh_thread_start(&t, sleep_then_say, msg_grandchild_done, NULL) == 0)
    mh_thread_free(t);
}

HELPER(exit_nested) {
  (void)argc;
  (void)argv;
  mh_thread_t *t;
  if (mh_thread_start(&t, spawn_then_end, NULL, NULL)) return 2;
  mh_thread_free(t);
  return 0;
}

TEST(exit_waits_for_threads_started_late) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_nested", NULL, 30, &r), 0);
  ASSERT(r.exited && r.status == 0);
  ASSERT_GE(pos(r.out, "grandchild done"), 0);
  ASSERT(r.seconds >= 0.65);
  mht_proc_free(&r);
}

static mh_event_t fork_go;

static void wait_go_then_say(void *arg) {
  if (mh_event_wait(&fork_go, 60) == 0) say(arg);
}

HELPER(exit_fork) {
  /* The parent has a running non-daemon thread that only ends once the
   * child has exited; a forked child does not have that thread, so its
   * exit must not wait for it (else the two would wait for each other). */
  (void)argc;
  (void)argv;
  mh_thread_t *t;
  if (mh_event_init(&fork_go)) return 2;
  if (mh_thread_start(&t, wait_go_then_say, msg_parent_thread_done, NULL)) return 2;
  pid_t pid = fork();
  if (pid == 0) {
    if (mh_thread_is_alive(t) != 0) _exit(5); /* not alive in the child */
    if (mh_thread_join(t, 0) != 0) _exit(6);
    exit(0); /* runs the exit handler: nothing to wait for */
  }
  int st = 0;
  double t0 = mht_now();
  while (waitpid(pid, &st, WNOHANG) != pid) {
    if (mht_now() - t0 > 10) {
      kill(pid, SIGKILL);
      return 4;
    }
    mht_sleep(0.005);
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 3;
  say("child exited\n");
  mh_event_set(&fork_go);
  mh_thread_free(t);
  return 0;
}

TEST(fork_child_does_not_wait_for_parent_threads) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_fork", NULL, 30, &r), 0);
  ASSERT(r.exited);
  ASSERT_EQ(r.status, 0);
  ASSERT_GT(pos(r.out, "parent thread done"), pos(r.out, "child exited"));
  ASSERT_GE(pos(r.out, "child exited"), 0);
  mht_proc_free(&r);
}

static void late_start(void) {
  /* Registered before the first thread start, so it runs after the
   * library's exit wait: starting now is refused. */
  mh_thread_t *t = NULL;
  int rc = mh_thread_start(&t, sleep_then_say, msg_late, NULL);
  char buf[64];
  snprintf(buf, sizeof buf, "late start: %s\n", mh_err_name(rc));
  say(buf);
}

HELPER(exit_then_start) {
  (void)argc;
  (void)argv;
  atexit(late_start);
  mh_thread_t *t;
  if (mh_thread_start(&t, sleep_then_say, msg_worker_done, NULL)) return 2;
  mh_thread_free(t);
  return 0;
}

TEST(start_during_exit_is_refused) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("exit_then_start", NULL, 30, &r), 0);
  ASSERT(r.exited && r.status == 0);
  ASSERT_GE(pos(r.out, "late start: ESHUTDOWN"), 0);
  ASSERT_GT(pos(r.out, "late start"), pos(r.out, "worker done"));
  mht_proc_free(&r);
}
