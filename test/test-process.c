/* test-process.c - mh_process_*: exit codes, signals, timeouts, reaping,
 * parent death, bad input and allocation failure. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* Sanitizer runtimes install their own SIGSEGV handler, which turns a crash
 * into an exit with a status instead of death by the signal. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MHT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MHT_SANITIZED 1
#endif
#endif
#ifndef MHT_SANITIZED
#define MHT_SANITIZED 0
#endif

static void assert_no_children(void) {
  /* A child freed while running is reaped in the background: give the
   * reaper a moment before insisting. */
  double end = mht_now() + 10;
  while (mht_count_children() != 0 && mht_now() < end) mht_sleep(0.01);
  ASSERT_EQ(mht_count_children(), 0);
}

static int ret_arg(void *arg) { return (int)(intptr_t)arg; }

static int sleep_arg_ms(void *arg) {
  mht_sleep((double)(intptr_t)arg / 1000.0);
  return 3;
}

static int sleep_forever(void *arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

static int segfault(void *arg) {
  (void)arg;
  signal(SIGSEGV, SIG_DFL);
  volatile int *volatile nowhere = NULL;
  *nowhere = 1;
  return 0;
}

static int self_abort(void *arg) {
  (void)arg;
  signal(SIGABRT, SIG_DFL);
  abort();
}

TEST(exitcode_normal) {
  mh_process_t *p;
  int code = 12345;
  ASSERT_OK(mh_process_start(&p, ret_arg, (void *)(intptr_t)7, NULL));
  ASSERT_GT(mh_process_pid(p), 0);
  ASSERT_NE(mh_process_pid(p), getpid());
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  ASSERT_EQ(mh_process_is_alive(p), 0);
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 7);
  /* Joining again is harmless and keeps the code. */
  ASSERT_OK(mh_process_join(p, 0));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 7);
  mh_process_free(p);

  /* Only the low 8 bits of the return value survive, as with exit(). */
  ASSERT_OK(mh_process_start(&p, ret_arg, (void *)(intptr_t)258, NULL));
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 2);
  mh_process_free(p);
  assert_no_children();
}

TEST(exitcode_many) {
  /* Many short children one after another: every code is its own. */
  long n = mht_scaled(200);
  for (long i = 0; i < n; i++) {
    mh_process_t *p;
    int code = -1;
    ASSERT_OK(mh_process_start(&p, ret_arg, (void *)(intptr_t)(i % 256), NULL));
    ASSERT_OK(mh_process_join(p, MH_FOREVER));
    ASSERT_OK(mh_process_exitcode(p, &code));
    ASSERT_EQ(code, i % 256);
    mh_process_free(p);
  }
  assert_no_children();
}

TEST(exitcode_signal) {
  mh_process_t *p;
  int code = 0;
  ASSERT_OK(mh_process_start(&p, segfault, NULL, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  if (MHT_SANITIZED)
    ASSERT(code == -SIGSEGV || code > 0); /* the sanitizer reports and exits */
  else
    ASSERT_EQ(code, -SIGSEGV);
  mh_process_free(p);

  ASSERT_OK(mh_process_start(&p, self_abort, NULL, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGABRT);
  mh_process_free(p);
  assert_no_children();
}

TEST(terminate_and_kill) {
  mh_process_t *p;
  int code = 0;
  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, NULL));
  ASSERT_EQ(mh_process_is_alive(p), 1);
  ASSERT_ERR(mh_process_exitcode(p, &code), MH_EBUSY);
  ASSERT_ERR(mh_process_join(p, 0.05), MH_ETIMEDOUT);
  ASSERT_OK(mh_process_terminate(p));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_EQ(mh_process_is_alive(p), 0);
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGTERM);
  /* Signalling a finished process does nothing and is not an error. */
  ASSERT_OK(mh_process_terminate(p));
  ASSERT_OK(mh_process_kill(p));
  mh_process_free(p);

  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, NULL));
  /* A child that ignores SIGTERM still dies by SIGKILL. */
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  mh_process_free(p);
  assert_no_children();
}

static int ignore_term_then_sleep(void *arg) {
  (void)arg;
  signal(SIGTERM, SIG_IGN);
  for (;;) pause();
  return 0;
}

TEST(kill_beats_ignored_term) {
  mh_process_t *p;
  int code = 0;
  ASSERT_OK(mh_process_start(&p, ignore_term_then_sleep, NULL, NULL));
  mht_sleep(0.05); /* let it install SIG_IGN */
  ASSERT_OK(mh_process_terminate(p));
  ASSERT_ERR(mh_process_join(p, 0.2), MH_ETIMEDOUT);
  ASSERT_EQ(mh_process_is_alive(p), 1);
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  mh_process_free(p);
  assert_no_children();
}

TEST(join_timeouts) {
  mh_process_t *p;
  int code = 0;
  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, NULL));
  double t0 = mht_now();
  ASSERT_ERR(mh_process_join(p, 0), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 < 1.0); /* generous: busy machines, sanitizers */
  for (int i = 0; i < 3; i++) {
    double want = 0.05 * (i + 1);
    t0 = mht_now();
    ASSERT_ERR(mh_process_join(p, want), MH_ETIMEDOUT);
    double took = mht_now() - t0;
    ASSERT(took >= want - 1e-4); /* never early */
    ASSERT(took < want + 2.0);
  }
  ASSERT_EQ(mh_process_is_alive(p), 1);
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  mh_process_free(p);

  /* A child that ends by itself while we wait: the join returns early. */
  ASSERT_OK(mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)300, NULL));
  t0 = mht_now();
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT(mht_now() - t0 < 20);
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 3);
  mh_process_free(p);
  assert_no_children();
}

/* Several threads join (and poll) the same child at once; exactly one reaps
 * it and all see the same exit code. */
typedef struct {
  mh_process_t *p;
  int rc;
  int code;
} joiner_t;

static void *joiner(void *arg) {
  joiner_t *j = arg;
  while (mh_process_is_alive(j->p) == 1) mht_jitter(2000);
  j->rc = mh_process_join(j->p, 30);
  if (j->rc == 0) j->rc = mh_process_exitcode(j->p, &j->code);
  return NULL;
}

static void *waiter(void *arg) {
  joiner_t *j = arg;
  j->rc = mh_process_join(j->p, MH_FOREVER);
  if (j->rc == 0) j->rc = mh_process_exitcode(j->p, &j->code);
  return NULL;
}

TEST(join_from_many_threads) {
  for (int round = 0; round < 5; round++) {
    mh_process_t *p;
    ASSERT_OK(mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)(20 * round), NULL));
    pthread_t t[6];
    joiner_t j[6];
    for (int i = 0; i < 6; i++) {
      j[i].p = p;
      j[i].rc = -1;
      j[i].code = -1;
      ASSERT_EQ(pthread_create(&t[i], NULL, i % 2 ? joiner : waiter, &j[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
      ASSERT_EQ(pthread_join(t[i], NULL), 0);
      ASSERT_OK(j[i].rc);
      ASSERT_EQ(j[i].code, 3);
    }
    mh_process_free(p);
  }
  assert_no_children();
}

TEST(free_running_is_reaped) {
  /* Freeing does not kill: the child keeps running, and is reaped in the
   * background once it ends (its exit is checked by assert_no_children). */
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)1500, NULL));
  pid_t pid = mh_process_pid(p);
  mh_process_free(p);
  ASSERT_EQ(kill(pid, 0), 0); /* still there */
  ASSERT_EQ(mht_count_children(), 1);
  assert_no_children();
  /* A finished, never joined child is reaped by free itself. */
  ASSERT_OK(mh_process_start(&p, ret_arg, NULL, NULL));
  mht_sleep(0.1);
  mh_process_free(p);
  assert_no_children();
}

TEST(reaped_elsewhere) {
  /* Someone else reaps our child: the handle says so instead of hanging or
   * inventing an exit code. */
  mh_process_t *p;
  int code = 99;
  ASSERT_OK(mh_process_start(&p, ret_arg, (void *)(intptr_t)5, NULL));
  int st;
  ASSERT_EQ(waitpid(mh_process_pid(p), &st, 0), mh_process_pid(p));
  ASSERT_OK(mh_process_join(p, 5));
  ASSERT_EQ(mh_process_is_alive(p), 0);
  ASSERT_ERR(mh_process_exitcode(p, &code), MH_ECHILD);
  ASSERT_EQ(code, 99);
  ASSERT_OK(mh_process_kill(p));
  mh_process_free(p);
  assert_no_children();
}

TEST(ignore_sigint) {
  mh_process_t *p, *q;
  int code = 0;
  mh_process_options_t opts = {MH_PROCESS_IGNORE_SIGINT};
  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, &opts));
  ASSERT_OK(mh_process_start(&q, sleep_forever, NULL, NULL));
  ASSERT_EQ(kill(mh_process_pid(p), SIGINT), 0);
  ASSERT_EQ(kill(mh_process_pid(q), SIGINT), 0);
  ASSERT_OK(mh_process_join(q, 30));
  ASSERT_OK(mh_process_exitcode(q, &code));
  ASSERT_EQ(code, -SIGINT);
  ASSERT_ERR(mh_process_join(p, 0.1), MH_ETIMEDOUT);
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, 30));
  mh_process_free(p);
  mh_process_free(q);
  assert_no_children();
}

/* ---- interrupted system calls ------------------------------------------- */

static atomic_int alarms;

static void on_alarm(int sig) {
  (void)sig;
  atomic_fetch_add(&alarms, 1);
}

TEST(signals_interrupt_nothing) {
  /* A signal handler installed without SA_RESTART fires every millisecond:
   * every read, poll and waitpid inside gets EINTR and must carry on. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
  struct itimerval it = {{0, 1000}, {0, 1000}};
  ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
  for (int i = 0; i < 20; i++) {
    mh_process_t *p;
    int code = -1;
    ASSERT_OK(mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)(i % 4 * 10), NULL));
    ASSERT_OK(mh_process_join(p, MH_FOREVER));
    ASSERT_OK(mh_process_exitcode(p, &code));
    ASSERT_EQ(code, 3);
    mh_process_free(p);
  }
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, NULL));
  double t0 = mht_now();
  ASSERT_ERR(mh_process_join(p, 0.2), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 >= 0.2 - 1e-4);
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  mh_process_free(p);
  struct itimerval off = {{0, 0}, {0, 0}};
  ASSERT_EQ(setitimer(ITIMER_REAL, &off, NULL), 0);
  ASSERT_GT(atomic_load(&alarms), 10); /* the signals did come */
  assert_no_children();
}

/* ---- starting from threads ----------------------------------------------- */

static void *start_and_leave(void *arg) {
  mh_process_t **out = arg;
  if (mh_process_start(out, sleep_arg_ms, (void *)(intptr_t)400, NULL) != 0) *out = NULL;
  return NULL; /* the thread ends long before its child */
}

TEST(child_outlives_starting_thread) {
  /* The parent-death signal follows the thread that forks; a child started
   * from a thread that then ends must live on (as in Python). */
  mh_process_t *p = NULL;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, start_and_leave, &p), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT(p != NULL);
  mht_sleep(0.1);
  ASSERT_EQ(mh_process_is_alive(p), 1);
  int code = -1;
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 3); /* it finished its sleep: not killed */
  mh_process_free(p);
  assert_no_children();
}

typedef struct {
  int base;
  int ok;
} starter_t;

static void *start_many(void *arg) {
  starter_t *s = arg;
  s->ok = 1;
  for (int i = 0; i < 20; i++) {
    mh_process_t *p;
    int code = -1, want = (s->base + i) % 256;
    if (mh_process_start(&p, ret_arg, (void *)(intptr_t)want, NULL) != 0 ||
        mh_process_join(p, 60) != 0 || mh_process_exitcode(p, &code) != 0 || code != want)
      s->ok = 0;
    if (p) mh_process_free(p);
  }
  return NULL;
}

TEST(start_from_many_threads) {
  pthread_t t[4];
  starter_t s[4];
  for (int i = 0; i < 4; i++) {
    s[i].base = 40 * i;
    ASSERT_EQ(pthread_create(&t[i], NULL, start_many, &s[i]), 0);
  }
  /* The main thread starts some at the same time, directly. */
  starter_t mine = {200, 0};
  start_many(&mine);
  ASSERT_EQ(mine.ok, 1);
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(pthread_join(t[i], NULL), 0);
    ASSERT_EQ(s[i].ok, 1);
  }
  assert_no_children();
}

/* ---- output: prints from the child appear once ------------------------- */

static int print_child(void *arg) {
  (void)arg;
  printf("child %d\n", 42);
  fputs("no newline at exit", stdout); /* flushed by the library */
  return 0;
}

HELPER(print_once) {
  (void)argc;
  (void)argv;
  /* Pending parent output must not be duplicated by the child. */
  setvbuf(stdout, NULL, _IOFBF, 4096);
  printf("parent before|");
  mh_process_t *p;
  if (mh_process_start(&p, print_child, NULL, NULL)) return 3;
  if (mh_process_join(p, MH_FOREVER)) return 4;
  mh_process_free(p);
  printf("|parent after\n");
  return 0;
}

TEST(child_output_appears_once) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("print_once", NULL, 30, &r), 0);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT_STREQ(r.out, "parent before|child 42\nno newline at exit|parent after\n");
  mht_proc_free(&r);
}

/* ---- parent death ------------------------------------------------------- */

HELPER(orphan_maker) {
  (void)argc;
  (void)argv;
  mh_process_t *p;
  if (mh_process_start(&p, sleep_forever, NULL, NULL)) return 3;
  printf("%d\n", (int)mh_process_pid(p));
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

/* ---- running out of file descriptors ------------------------------------ */

static int out_of_fds(void *arg) {
  (void)arg;
  struct rlimit rl = {64, 64};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
  int fds[64], n = 0;
  while (n < 64 && (fds[n] = dup(0)) >= 0) n++;
  if (n < 3) return 11;
  mh_process_t *p = NULL;
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) > 0) {
    /* Under a seccomp filter the child reports its set-up over a pipe: no
     * descriptor for it, so refused, nothing started. */
    if (mh_process_start(&p, ret_arg, NULL, NULL) != MH_EMFILE) return 12;
    if (p != NULL) return 13;
    close(fds[--n]);
    close(fds[--n]);
  }
  /* No descriptor for a pidfd (nor for a pipe without a filter): it starts,
   * and joins (with a timeout and without) fall back to short sleeps. */
  if (mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)1500, NULL) != 0) return 14;
  if (mh_process_join(p, 0.01) != MH_ETIMEDOUT) return 15;
  if (mh_process_join(p, 30) != 0) return 16;
  int code = -1;
  if (mh_process_exitcode(p, &code) != 0 || code != 3) return 17;
  mh_process_free(p);
  if (mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)20, NULL) != 0) return 18;
  if (mh_process_join(p, MH_FOREVER) != 0) return 19;
  if (mh_process_exitcode(p, &code) != 0 || code != 3) return 20;
  mh_process_free(p);
  while (n > 0) close(fds[--n]);
  return 0;
}

TEST(out_of_file_descriptors) {
  mh_process_t *p;
  int code = -1;
  ASSERT_OK(mh_process_start(&p, out_of_fds, NULL, NULL));
  ASSERT_OK(mh_process_join(p, 60));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  mh_process_free(p);
  assert_no_children();
}

/* ---- bad input and allocation failure ---------------------------------- */

TEST(bad_input) {
  mh_process_t *p = NULL;
  int code;
  mh_process_options_t bad = {0x80};
  ASSERT_ERR(mh_process_start(NULL, ret_arg, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_start(&p, NULL, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_start(&p, ret_arg, NULL, &bad), MH_EINVAL);
  ASSERT(p == NULL);
  ASSERT_EQ(mh_process_pid(NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_join(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_process_is_alive(NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_exitcode(NULL, &code), MH_EINVAL);
  ASSERT_ERR(mh_process_terminate(NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_kill(NULL), MH_EINVAL);
  mh_process_free(NULL);
  ASSERT_OK(mh_process_start(&p, ret_arg, NULL, NULL));
  ASSERT_ERR(mh_process_exitcode(p, NULL), MH_EINVAL);
  ASSERT_ERR(mh_process_join(p, -2), MH_EINVAL);
  ASSERT_ERR(mh_process_join(p, NAN), MH_EINVAL);
  ASSERT_ERR(mh_process_join(p, -INFINITY), MH_EINVAL);
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  mh_process_free(p);
  assert_no_children();
}

TEST(enomem) {
  mh_process_t *p = NULL;
  mht_alloc_fail_after(0);
  ASSERT_ERR(mh_process_start(&p, ret_arg, NULL, NULL), MH_ENOMEM);
  ASSERT(p == NULL);
  ASSERT_EQ(mht_alloc_live(), 0);
  ASSERT_EQ(mht_count_children(), 0);
  mht_alloc_fail_after(-1);
  ASSERT_OK(mh_process_start(&p, ret_arg, NULL, NULL));
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  mh_process_free(p);
  ASSERT_EQ(mht_alloc_live(), 0);
  mht_alloc_reset();
  assert_no_children();
}
