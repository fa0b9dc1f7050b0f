/* SPDX-License-Identifier: MIT */
/* test.h - the manyhands test framework.
 *
 * A test file test/test-<area>.c holds TEST(name) { ... } blocks; CMake scans
 * for lines starting with "TEST(" and makes one CTest entry "<area>.<name>"
 * per test, running `test-<area> <name>`.  HELPER(name) blocks are child
 * programs that tests start by re-running their own binary
 * (`test-<area> --helper name args...`, see mht_run_helper).
 *
 * Assertions stay on under NDEBUG, print both operands, and end the test
 * process with exit status 1.
 */
#ifndef MH_TEST_H
#define MH_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manyhands.h"
#include "sanitizer.h" /* src/: MH__ASAN, MH__TSAN, MH__SANITIZED */

typedef void (*mht_test_fn)(void);
typedef int (*mht_helper_fn)(int argc, char **argv);

void mht_register_test(const char *name, mht_test_fn fn);
void mht_register_helper(const char *name, mht_helper_fn fn);

#define TEST(name)                                                   \
  static void mht_test_##name(void);                                 \
  __attribute__((constructor)) static void mht_reg_test_##name(void) { \
    mht_register_test(#name, mht_test_##name);                       \
  }                                                                  \
  static void mht_test_##name(void)

#define HELPER(name)                                                     \
  static int mht_helper_##name(int argc, char **argv);                   \
  __attribute__((constructor)) static void mht_reg_helper_##name(void) { \
    mht_register_helper(#name, mht_helper_##name);                       \
  }                                                                      \
  static int mht_helper_##name(int argc, char **argv)

void mht_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define ASSERT(expr)                                                   \
  do {                                                                 \
    if (!(expr)) mht_fail(__FILE__, __LINE__, "ASSERT(%s) failed", #expr); \
  } while (0)

#define MHT__CMP(a, op, b, type, fmt)                                       \
  do {                                                                      \
    type mht_a_ = (type)(a), mht_b_ = (type)(b);                            \
    if (!(mht_a_ op mht_b_))                                                \
      mht_fail(__FILE__, __LINE__, "%s %s %s failed: " fmt " vs " fmt, #a, \
               #op, #b, mht_a_, mht_b_);                                    \
  } while (0)

#define ASSERT_EQ(a, b) MHT__CMP(a, ==, b, intmax_t, "%" PRIdMAX)
#define ASSERT_NE(a, b) MHT__CMP(a, !=, b, intmax_t, "%" PRIdMAX)
#define ASSERT_LT(a, b) MHT__CMP(a, <, b, intmax_t, "%" PRIdMAX)
#define ASSERT_LE(a, b) MHT__CMP(a, <=, b, intmax_t, "%" PRIdMAX)
#define ASSERT_GT(a, b) MHT__CMP(a, >, b, intmax_t, "%" PRIdMAX)
#define ASSERT_GE(a, b) MHT__CMP(a, >=, b, intmax_t, "%" PRIdMAX)
#define ASSERT_UEQ(a, b) MHT__CMP(a, ==, b, uintmax_t, "%" PRIuMAX)
#define ASSERT_ULE(a, b) MHT__CMP(a, <=, b, uintmax_t, "%" PRIuMAX)
#define ASSERT_DEQ(a, b, eps)                                               \
  do {                                                                      \
    double mht_a_ = (a), mht_b_ = (b);                                      \
    if (!(mht_a_ - mht_b_ <= (eps) && mht_b_ - mht_a_ <= (eps)))           \
      mht_fail(__FILE__, __LINE__, "%s ~= %s failed: %.17g vs %.17g", #a, \
               #b, mht_a_, mht_b_);                                         \
  } while (0)
#define ASSERT_STREQ(a, b)                                                  \
  do {                                                                      \
    const char *mht_a_ = (a), *mht_b_ = (b);                                \
    if (!mht_a_ || !mht_b_ || strcmp(mht_a_, mht_b_) != 0)                  \
      mht_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" vs \"%s\"", #a, \
               #b, mht_a_ ? mht_a_ : "(null)", mht_b_ ? mht_b_ : "(null)");  \
  } while (0)

/* A manyhands call that must succeed / must fail with a given code; prints
 * the code's name when it does not. */
#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)
#define ASSERT_ERR(expr, code)                                              \
  do {                                                                      \
    int mht_rc_ = (expr), mht_want_ = (code);                               \
    if (mht_rc_ != mht_want_)                                               \
      mht_fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", \
               #expr, mht_rc_, mh_err_name(mht_rc_), mht_want_,             \
               mh_err_name(mht_want_));                                     \
  } while (0)

/* ---- child programs ---------------------------------------------------- */

typedef struct mht_proc_result {
  int exited;       /* 1 if it exited, 0 if a signal ended it */
  int status;       /* exit status, or the signal number */
  int timed_out;    /* 1 if it was killed because of the timeout */
  double seconds;   /* wall time */
  char *out;        /* its stdout, NUL-terminated (free with mht_proc_free) */
  size_t out_len;
  char *err;        /* its stderr */
  size_t err_len;
} mht_proc_result_t;

/* In a child the test forked, before it execs: SIGTERM it when the test
 * process dies (a failed assertion, CTest's timeout), so that no program a
 * test started, an mpiexec with its ranks say, runs on after the test. */
void mht_child_dies_with_parent(pid_t parent);

/* Run argv[0] (a path) with argv, stdin from /dev/null, capturing stdout and
 * stderr; kill it (and its process group) after `timeout` seconds, or with
 * SIGTERM if the test process dies first.  Returns 0 or -1 if it could not
 * be started. */
int mht_run(char *const argv[], double timeout, mht_proc_result_t *res);

/* Run this test binary's HELPER(name) with extra arguments (NULL-ended). */
int mht_run_helper(const char *name, char *const args[], double timeout,
                   mht_proc_result_t *res);

void mht_proc_free(mht_proc_result_t *res);

/* Path of the running test binary. */
const char *mht_self(void);

/* ---- allocation failure ------------------------------------------------ */

/* Install a counting allocator that fails every allocation after the next
 * `n` successful ones (n < 0: never fail).  mht_alloc_live() is the number
 * of blocks allocated through it and not yet freed. */
void mht_alloc_fail_after(long n);
long mht_alloc_live(void);
/* Restore the C library's allocator. */
void mht_alloc_reset(void);

/* ---- misc -------------------------------------------------------------- */

/* `n` divided by the MH_TEST_DIVISOR environment variable (default 1, at
 * least 1 is returned).  CI sets it under the sanitizers, which run code 5-20x
 * slower, so stress tests keep their shape with fewer iterations. */
long mht_scaled(long n);

double mht_now(void);
/* Print to stderr what process `pid` (one of ours that should have ended)
 * is doing: each thread's state, wait channel and kernel stack, and its
 * user stacks from gdb when installed (as the hang watchdog does). */
void mht_report_stuck(pid_t pid, const char *why);
void mht_sleep(double seconds);
/* Wait for child `pid` at most `limit` seconds; SIGKILL it past that.
 * Returns its wait status, or -1 when it had to be killed. */
int mht_wait_child_for(pid_t pid, double limit);
/* A small fast per-thread random number (xorshift), for random delays. */
uint64_t mht_rand(void);
/* Sleep a random time in [0, max_us) microseconds. */
void mht_jitter(unsigned max_us);
/* A count of the current process's live child processes (from /proc). */
int mht_count_children(void);

/* Call fn(pid, text, arg) with the text of /proc/<pid>/<file> ("stat",
 * "status", ...) of every process whose file can be read, until fn returns
 * non-zero.  -1 if /proc cannot be listed, else 0. */
typedef int (*mht_proc_visit_fn)(pid_t pid, const char *text, void *arg);
int mht_each_process(const char *file, mht_proc_visit_fn fn, void *arg);

/* Give this process a private, empty /dev/shm (a new mount namespace, in a
 * user namespace of its own when not root, with its own tmpfs there), so
 * that a listing shows only what the test made: other programs on the
 * machine use /dev/shm too.  1 on success, 0 when the machine does not
 * allow it. */
int mht_private_dev_shm(void);

/* Unshare CLONE_NEWPID, so that this process's next child is the first of
 * a new PID namespace (pid 1), or print why not and _exit(77) (a skip).
 * Call it in a child of the test of its own, which leaves by _exit too:
 * once that first process has ended this one can fork no more (and
 * LeakSanitizer forks at exit). */
void mht_new_pid_namespace_or_skip(void);

/* The state of process `pid` as /proc/<pid>/stat says it ('R', 'S', 'T'
 * stopped, 'Z' zombie, ...), '-' when it is gone, '?' when unreadable. */
char mht_proc_state(pid_t pid);

/* The number of entries in /dev/shm (0 when it cannot be read). */
int mht_dev_shm_entries(void);

/* Points Open MPI's session folder (OMPI_MCA_orte_tmpdir_base) at a
 * folder of this test process's own, removed at exit, so that two launches
 * at the same moment do not race on one folder in /tmp. */
void mht_private_ompi_tmpdir(void);

/* The environment of a test that launches MPI jobs: MPIEXEC_TIMEOUT (a
 * bound on each job, in seconds), the private session folder above, root
 * allowed, and the sanitizers told to leave the MPI library's own leaks and
 * locks alone (`source_dir` holds test/tsan-mpi.supp). */
void mht_mpi_launch_env(const char *timeout_s, const char *source_dir);

#endif /* MH_TEST_H */
