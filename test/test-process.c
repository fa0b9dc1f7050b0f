/* SPDX-License-Identifier: MIT */
/* test-process.c - mh_process_*: exit codes, signals, timeouts, reaping,
 * interrupted system calls, starting from threads, output, set-up failure,
 * running out of descriptors, bad input and allocation failure.  Parent
 * death, daemons and exit rules are test-process-lifetime.c. */
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

static int sleep_arg_ms(void *arg) {
  mht_sleep((double)(intptr_t)arg / 1000.0);
  return 3;
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
  /* A sanitizer's own SIGSEGV handler turns a crash into an exit status. */
  if (MH__SANITIZED)
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

static int call_exit(void *arg) { exit((int)(intptr_t)arg); }

static int call__exit(void *arg) { _exit((int)(intptr_t)arg); }

static int self_kill(void *arg) {
  (void)arg;
  raise(SIGKILL);
  return 0;
}

static int self_term_ignored_then_kill(void *arg) {
  (void)arg;
  signal(SIGTERM, SIG_IGN);
  raise(SIGTERM); /* ignored: not how it ends */
  kill(getpid(), SIGKILL);
  return 0;
}

TEST(exitcode_every_way) {
  /* Every way a child can end, each several times (a fast start must not
   * lose or mix up any status), started back to back and joined in the
   * reverse order, with and without a timeout. */
  struct {
    mh_process_fn fn;
    intptr_t arg;
    int want;
  } ways[] = {
      {ret_arg, 0, 0},        {ret_arg, 42, 42},        {ret_arg, 255, 255},
      {call_exit, 5, 5},      {call_exit, 0, 0},        {call__exit, 6, 6},
      {call__exit, 200, 200}, {self_kill, 0, -SIGKILL}, {segfault, 0, -SIGSEGV},
      {self_abort, 0, -SIGABRT}, {self_term_ignored_then_kill, 0, -SIGKILL},
  };
  enum { NW = sizeof ways / sizeof ways[0] };
  for (int round = 0; round < 3; round++) {
    mh_process_t *p[NW];
    for (int i = 0; i < NW; i++)
      ASSERT_OK(mh_process_start(&p[i], ways[i].fn, (void *)ways[i].arg, NULL));
    for (int i = NW - 1; i >= 0; i--) {
      int code = 12345;
      ASSERT_OK(mh_process_join(p[i], round == 1 ? 30.0 : MH_FOREVER));
      ASSERT_EQ(mh_process_is_alive(p[i]), 0);
      ASSERT_OK(mh_process_exitcode(p[i], &code));
      if (ways[i].want == -SIGSEGV && MH__SANITIZED)
        ASSERT(code == -SIGSEGV || code > 0); /* the sanitizer reports and exits */
      else
        ASSERT_EQ(code, ways[i].want);
      mh_process_free(p[i]);
    }
  }
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
  signal(SIGTERM, SIG_IGN);
  char ready = 1; /* tell the parent SIGTERM is ignored now */
  if (write((int)(intptr_t)arg, &ready, 1) != 1) return 1;
  for (;;) pause();
  return 0;
}

TEST(kill_beats_ignored_term) {
  mh_process_t *p;
  int code = 0;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_OK(mh_process_start(&p, ignore_term_then_sleep, (void *)(intptr_t)fds[1], NULL));
  char ready = 0;
  ASSERT_EQ(read(fds[0], &ready, 1), 1); /* it has installed SIG_IGN */
  close(fds[0]);
  close(fds[1]);
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
  mh_process_options_t opts = {.flags = MH_PROCESS_IGNORE_SIGINT};
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

/* A timed join of a child that never ends times out, and only after the
 * whole timeout, even while signals interrupt the wait; then it is killed
 * and reaped. */
static void join_times_out_in_full(void) {
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, sleep_forever, NULL, NULL));
  double t0 = mht_now();
  ASSERT_ERR(mh_process_join(p, 0.2), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 >= 0.2 - 1e-4);
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  mh_process_free(p);
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
  join_times_out_in_full();
  struct itimerval off = {{0, 0}, {0, 0}};
  ASSERT_EQ(setitimer(ITIMER_REAL, &off, NULL), 0);
  ASSERT_GT(atomic_load(&alarms), 10); /* the signals did come */
  assert_no_children();
}

/* A thread that sends SIGUSR1 to one thread as fast as it can (with tiny
 * pauses), until told to stop.  The handler is installed without SA_RESTART,
 * so every blocking call of the target is interrupted again and again. */
typedef struct {
  pthread_t target;
  atomic_int stop;
  atomic_int sent;
} flood_t;

static atomic_int usr1_seen;

static void on_usr1(int sig) {
  (void)sig;
  atomic_fetch_add(&usr1_seen, 1);
}

static void *flood_main(void *arg) {
  flood_t *f = arg;
  while (!atomic_load(&f->stop)) {
    if (pthread_kill(f->target, SIGUSR1) == 0) atomic_fetch_add(&f->sent, 1);
    mht_sleep(50e-6);
  }
  return NULL;
}

static void flood_start(flood_t *f, pthread_t *t, pthread_t target) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART */
  ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
  f->target = target;
  atomic_init(&f->stop, 0);
  atomic_init(&f->sent, 0);
  ASSERT_EQ(pthread_create(t, NULL, flood_main, f), 0);
}

static void flood_stop(flood_t *f, pthread_t t) {
  atomic_store(&f->stop, 1);
  ASSERT_EQ(pthread_join(t, NULL), 0);
}

static void *start_join_many(void *arg) {
  int *ok = arg;
  *ok = 1;
  for (int i = 0; i < 10; i++) {
    mh_process_t *p = NULL;
    int code = -1;
    if (mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)(i % 3 * 5), NULL) != 0 ||
        mh_process_join(p, MH_FOREVER) != 0 || mh_process_exitcode(p, &code) != 0 || code != 3)
      *ok = 0;
    mh_process_free(p);
  }
  return NULL;
}

TEST(signal_flood_from_thread) {
  /* Another thread floods this one with SIGUSR1 while it starts children
   * and joins them every way (forever, with timeouts, polling), and while a
   * second thread starts and joins through the launcher: every call must
   * carry on through the interruptions and report the right results. */
  flood_t f;
  pthread_t ft, other;
  flood_start(&f, &ft, pthread_self());
  int other_ok = 0;
  ASSERT_EQ(pthread_create(&other, NULL, start_join_many, &other_ok), 0);
  int seen0 = atomic_load(&usr1_seen);
  for (int i = 0; i < 30; i++) {
    mh_process_t *p;
    int code = -1;
    ASSERT_OK(mh_process_start(&p, sleep_arg_ms, (void *)(intptr_t)(i % 4 * 7), NULL));
    switch (i % 3) {
      case 0:
        ASSERT_OK(mh_process_join(p, MH_FOREVER));
        break;
      case 1:
        ASSERT_OK(mh_process_join(p, 30));
        break;
      default:
        while (mh_process_is_alive(p) == 1) mht_sleep(0.001);
    }
    ASSERT_OK(mh_process_exitcode(p, &code));
    ASSERT_EQ(code, 3);
    mh_process_free(p);
  }
  /* A timed join that must time out, not return early on a signal. */
  join_times_out_in_full();
  ASSERT_EQ(pthread_join(other, NULL), 0);
  flood_stop(&f, ft);
  ASSERT_EQ(other_ok, 1);
  ASSERT_GT(atomic_load(&usr1_seen) - seen0, 100); /* the signals did come */
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

/* ---- the child's set-up failing (under a seccomp filter) ----------------- */

#if defined(__x86_64__)
#define MHT_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define MHT_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef MHT_AUDIT_ARCH
/* Install a seccomp filter on this thread (and the children it forks) that
 * makes syscall `nr` fail with `err` when its first argument is `arg0`
 * (nr -1: deny nothing, just be under a filter). */
static int deny_syscall(long nr, unsigned arg0, int err) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MHT_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arg0, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}
#endif

HELPER(setup_fails) {
  /* argv[0]: "deathsig" (prctl(PR_SET_PDEATHSIG) denied with EPERM),
   * "sigint" (sigaction(SIGINT) denied with EACCES, with IGNORE_SIGINT) or
   * "none" (under a filter that denies nothing: the report path works,
   * also under a flood of signals).  Exit status 0 when all went as it
   * should, else the number of the check that failed. */
#ifdef MHT_AUDIT_ARCH
  if (argc < 1) return 2;
  int rc;
  if (strcmp(argv[0], "deathsig") == 0)
    rc = deny_syscall(SYS_prctl, PR_SET_PDEATHSIG, EPERM);
  else if (strcmp(argv[0], "sigint") == 0)
    rc = deny_syscall(SYS_rt_sigaction, SIGINT, EACCES);
  else
    rc = deny_syscall(SYS_getpid + 100000, 0, EPERM); /* matches nothing */
  if (rc != 0) return 4;
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) return 5;
  mh_process_options_t opts = {.flags = MH_PROCESS_IGNORE_SIGINT};
  if (strcmp(argv[0], "none") != 0) {
    for (int i = 0; i < 20; i++) {
      mh_process_t *p = (mh_process_t *)&opts; /* must be reset to NULL */
      int want = strcmp(argv[0], "deathsig") == 0 ? MH_EPERM : MH_EACCES;
      if (mh_process_start(&p, ret_arg, NULL, &opts) != want) return 6;
      if (p != NULL) return 7;
      if (mht_count_children() != 0) return 8; /* reaped: nothing left */
    }
    /* Without IGNORE_SIGINT the sigint filter is harmless. */
    if (strcmp(argv[0], "sigint") == 0) {
      mh_process_t *p;
      int code = -1;
      if (mh_process_start(&p, ret_arg, (void *)(intptr_t)9, NULL) != 0) return 9;
      if (mh_process_join(p, MH_FOREVER) != 0 || mh_process_exitcode(p, &code) != 0) return 10;
      if (code != 9) return 11;
      mh_process_free(p);
    }
    return 0;
  }
  flood_t f;
  pthread_t ft;
  flood_start(&f, &ft, pthread_self());
  for (int i = 0; i < 40; i++) {
    mh_process_t *p;
    int code = -1;
    if (mh_process_start(&p, ret_arg, (void *)(intptr_t)i, i % 2 ? &opts : NULL) != 0) return 12;
    if (mh_process_join(p, i % 3 ? MH_FOREVER : 30) != 0) return 13;
    if (mh_process_exitcode(p, &code) != 0 || code != i) return 14;
    mh_process_free(p);
  }
  flood_stop(&f, ft);
  if (atomic_load(&usr1_seen) < 20) return 15;
  return mht_count_children() == 0 ? 0 : 16;
#else
  (void)argc;
  (void)argv;
  return 77;
#endif
}

TEST(setup_failure_is_reported) {
  /* Under a seccomp filter that denies the child's set-up, the child
   * reports the failure, mh_process_start() returns its code and leaves
   * nothing running; under a filter that denies nothing, children start
   * through the report pipe, whose read survives a flood of signals. */
  static char deathsig[] = "deathsig", sigint[] = "sigint", none[] = "none";
  char *modes[] = {deathsig, sigint, none};
  for (int i = 0; i < 3; i++) {
    char *args[] = {modes[i], NULL};
    mht_proc_result_t r;
    ASSERT_EQ(mht_run_helper("setup_fails", args, 60, &r), 0);
    if (r.exited && r.status == 77) {
      mht_proc_free(&r);
      printf("skipped: no seccomp filter for this architecture\n");
      return;
    }
    if (!r.exited || r.status != 0)
      mht_fail(__FILE__, __LINE__, "mode %s: exited %d status %d, stderr: %s", modes[i],
               r.exited, r.status, r.err);
    mht_proc_free(&r);
  }
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
  mh_process_options_t bad = {.flags = 0x80};
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

/* Ctrl-C while mh_process_start() flushes a stream into a full pipe (output
 * paged and not read): the flush blocks, and SIGINT must still end us. */
static void *sigint_later(void *arg) {
  (void)arg;
  mht_sleep(0.3);
  kill(getpid(), SIGINT); /* this thread blocks it: the main thread takes it */
  return NULL;
}

static int do_nothing(void *arg) {
  (void)arg;
  return 0;
}

HELPER(start_flush_interruptible) {
  (void)argc, (void)argv;
  int p[2];
  if (pipe(p) != 0) return 2;
  /* Fill the pipe, then make it stdout: nobody ever reads it. */
  int fl = fcntl(p[1], F_GETFL);
  fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  while (write(p[1], buf, sizeof buf) > 0) {
  }
  fcntl(p[1], F_SETFL, fl);
  FILE *f = fdopen(p[1], "w"); /* fully buffered: fflush(NULL) flushes it */
  if (!f) return 5;
  fputs("held in the buffer until the flush\n", f);
  signal(SIGINT, SIG_DFL); /* a test runner may have had it ignored */
  sigset_t intr, old;
  sigemptyset(&intr);
  sigaddset(&intr, SIGINT);
  pthread_sigmask(SIG_BLOCK, &intr, &old);
  pthread_t tid;
  if (pthread_create(&tid, NULL, sigint_later, NULL) != 0) return 3;
  (void)old;
  pthread_sigmask(SIG_UNBLOCK, &intr, NULL);
  mh_process_options_t o;
  memset(&o, 0, sizeof o);
  o.flags = MH_PROCESS_IGNORE_SIGINT;
  mh_process_t *c = NULL;
  mh_process_start(&c, do_nothing, NULL, &o); /* blocks in the flush */
  return 4; /* not reached: SIGINT ends us */
}

TEST(start_flush_interruptible) {
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("start_flush_interruptible", NULL, 5, &r), 0);
  ASSERT(!r.timed_out);
  ASSERT_EQ(r.exited, 0);
  ASSERT_EQ(r.status, SIGINT);
  mht_proc_free(&r);
}

/* ---- a process that unshared CLONE_NEWPID ---------------------------------- */

/* 40 + its pid: never 1, the code of the old early exit. */
static int report_own_pid(void *arg) {
  (void)arg;
  return 40 + (int)getpid();
}

/* Unshares CLONE_NEWPID, then starts a process: the first of the new
 * namespace, pid 1, whose parent pid reads 0 (it once took that for a dead
 * parent and exited with 1 at once).  It reports its pid; a second start
 * is refused by the kernel once the first has ended, and must say so. */
static int new_pid_namespace_driver(void *arg) {
  (void)arg;
  mht_new_pid_namespace_or_skip();
  mh_process_t *p;
  int code = -1;
  if (mh_process_start(&p, report_own_pid, NULL, NULL)) _exit(2);
  if (mh_process_join(p, 30) || mh_process_exitcode(p, &code)) _exit(3);
  mh_process_free(p);
  if (code != 41) _exit(code == 1 ? 5 : 6);
  /* The namespace died with its first process: fork fails (ENOMEM). */
  if (mh_process_start(&p, report_own_pid, NULL, NULL) == 0) _exit(4);
  _exit(0); /* _exit: LeakSanitizer would fork at exit, and cannot here */
}

/* After unshare(CLONE_NEWPID) Linux forbids new threads: a thread start and
 * an executor of either backend must say MH_ENOTSUP (they once said
 * MH_EINVAL, as if the call's arguments were wrong).  Before and after the
 * namespace's first process alike. */
static void never_runs(void *arg) { (void)arg; }

static int no_threads_driver(void *arg) {
  (void)arg;
  mht_new_pid_namespace_or_skip();
  for (int round = 0; round < 2; round++) {
    mh_thread_t *t = NULL;
    if (mh_thread_start(&t, never_runs, NULL, NULL) != MH_ENOTSUP || t) _exit(10 + round);
    mh_executor_options_t o;
    mh_executor_options_init(&o);
    o.workers = 1;
    for (int b = 0; b < 2; b++) {
      o.backend = b ? MH_BACKEND_PROCESSES : MH_BACKEND_THREADS;
      mh_executor_t *ex = NULL;
      if (mh_executor_new(&ex, &o) != MH_ENOTSUP || ex) _exit(20 + 2 * round + b);
    }
    if (round == 0) { /* the namespace's first process, pid 1 */
      mh_process_t *p;
      int code = -1;
      if (mh_process_start(&p, report_own_pid, NULL, NULL)) _exit(30);
      if (mh_process_join(p, 30) || mh_process_exitcode(p, &code)) _exit(31);
      mh_process_free(p);
      if (code != 41) _exit(32);
    }
  }
  _exit(0); /* as above: LeakSanitizer cannot fork here */
}

/* Runs a driver above in a child of its own: it must end with 0, or skip. */
static void run_namespace_driver(mh_process_fn driver) {
  mh_process_t *p;
  int code = -1;
  ASSERT_OK(mh_process_start(&p, driver, NULL, NULL));
  ASSERT_OK(mh_process_join(p, 60));
  ASSERT_OK(mh_process_exitcode(p, &code));
  mh_process_free(p);
  if (code == 77) exit(77);
  ASSERT_EQ(code, 0);
}

TEST(no_threads_after_unsharing_the_pid_namespace) {
  run_namespace_driver(no_threads_driver);
}

TEST(start_after_unsharing_the_pid_namespace) {
  run_namespace_driver(new_pid_namespace_driver);
}
