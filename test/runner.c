/* SPDX-License-Identifier: MIT */
/* runner.c - the test runner linked into every test-<area> binary.
 *
 *   test-<area> --list           print the names of the tests
 *   test-<area> NAME             run one test in this process (what CTest does)
 *   test-<area>                  run every test, each in a child, and print
 *                                "N passed, N failed"
 *   test-<area> --helper NAME .. run a helper program (used by the tests)
 *
 * The registry is filled by constructors before main, from one thread, so it
 * needs no lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define MHT_MAX 512

static struct {
  const char *name;
  mht_test_fn fn;
} mht_tests[MHT_MAX];
static int mht_ntests;

static struct {
  const char *name;
  mht_helper_fn fn;
} mht_helpers[MHT_MAX];
static int mht_nhelpers;

static char mht_self_path[4096];

void mht_register_test(const char *name, mht_test_fn fn) {
  if (mht_ntests == MHT_MAX) abort();
  mht_tests[mht_ntests].name = name;
  mht_tests[mht_ntests].fn = fn;
  mht_ntests++;
}

void mht_register_helper(const char *name, mht_helper_fn fn) {
  if (mht_nhelpers == MHT_MAX) abort();
  mht_helpers[mht_nhelpers].name = name;
  mht_helpers[mht_nhelpers].fn = fn;
  mht_nhelpers++;
}

void mht_fail(const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s:%d: %s\n", file, line, msg);
  fflush(stderr);
  _exit(1);
}

const char *mht_self(void) { return mht_self_path; }

double mht_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mht_sleep(double seconds) {
  if (!(seconds > 0)) return;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

int mht_wait_child_for(pid_t pid, double limit) {
  double end = mht_now() + limit;
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 || mht_now() > end) break;
    mht_sleep(0.002);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

long mht_scaled(long n) {
  const char *d = getenv("MH_TEST_DIVISOR");
  long div = d ? atol(d) : 1;
  if (div < 1) div = 1;
  return n / div > 0 ? n / div : 1;
}

uint64_t mht_rand(void) {
  static _Thread_local uint64_t s;
  if (s == 0) s = (uint64_t)(uintptr_t)&s ^ (uint64_t)mht_now() * 0x9E3779B97F4A7C15u ^ 0x2545F4914F6CDD1Du;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

void mht_jitter(unsigned max_us) {
  if (max_us) mht_sleep((double)(mht_rand() % max_us) * 1e-6);
}

int mht_each_process(const char *file, mht_proc_visit_fn fn, void *arg) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[4096];
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/%s", e->d_name, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue; /* gone meanwhile, or not ours to read */
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) continue;
    buf[len] = 0;
    if (fn((pid_t)atoi(e->d_name), buf, arg)) break;
  }
  closedir(d);
  return 0;
}

static int mht_count_child(pid_t pid, const char *status, void *arg) {
  (void)pid;
  const char *p = strstr(status, "\nPPid:");
  if (p && atoi(p + 6) == getpid()) ++*(int *)arg;
  return 0;
}

int mht_count_children(void) {
  /* Children are the processes whose PPid is us. */
  int n = 0;
  return mht_each_process("status", mht_count_child, &n) < 0 ? -1 : n;
}

int mht_private_dev_shm(void) {
  if (unshare(CLONE_NEWNS) != 0) {
    /* Not root: a user namespace of our own first, mapping us to its root,
     * gives the right to make the mount namespace. */
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return 0;
    char buf[64];
    FILE *f = fopen("/proc/self/setgroups", "w");
    if (f) {
      fputs("deny", f);
      fclose(f);
    }
    f = fopen("/proc/self/uid_map", "w");
    if (!f) return 0;
    snprintf(buf, sizeof buf, "0 %u 1", (unsigned)uid);
    fputs(buf, f);
    fclose(f);
    f = fopen("/proc/self/gid_map", "w");
    if (!f) return 0;
    snprintf(buf, sizeof buf, "0 %u 1", (unsigned)gid);
    fputs(buf, f);
    fclose(f);
  }
  /* Private propagation, so the tmpfs below stays in our namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 0;
  if (mount("none", "/dev/shm", "tmpfs", 0, NULL) != 0) return 0;
  return 1;
}

void mht_new_pid_namespace_or_skip(void) {
  if (unshare(CLONE_NEWPID) == 0) return;
  printf("skipped: cannot make a PID namespace here (%s)\n", strerror(errno));
  fflush(stdout);
  _exit(77);
}

char mht_proc_state(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (!fp) return '-';
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  return p && p[1] == ' ' ? p[2] : '?';
}

int mht_dev_shm_entries(void) {
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

/* ---- counting, failing allocator ------------------------------------- */

static atomic_long mht_alloc_budget = -1;
static atomic_long mht_alloc_count;

static int mht_alloc_take(void) {
  long b = atomic_load(&mht_alloc_budget);
  while (b >= 0) {
    if (b == 0) return 0;
    if (atomic_compare_exchange_weak(&mht_alloc_budget, &b, b - 1)) break;
  }
  return 1;
}

static void *mht_malloc(size_t n) {
  if (!mht_alloc_take()) return NULL;
  void *p = malloc(n);
  if (p) atomic_fetch_add(&mht_alloc_count, 1);
  return p;
}

static void *mht_calloc(size_t c, size_t n) {
  if (!mht_alloc_take()) return NULL;
  void *p = calloc(c, n);
  if (p) atomic_fetch_add(&mht_alloc_count, 1);
  return p;
}

static void *mht_realloc(void *old, size_t n) {
  if (!mht_alloc_take()) return NULL;
  void *p = realloc(old, n);
  if (p && !old) atomic_fetch_add(&mht_alloc_count, 1);
  return p;
}

static void mht_free(void *p) {
  if (p) atomic_fetch_sub(&mht_alloc_count, 1);
  free(p);
}

void mht_alloc_fail_after(long n) {
  atomic_store(&mht_alloc_budget, n);
  mh_replace_allocator(mht_malloc, mht_realloc, mht_calloc, mht_free);
}

long mht_alloc_live(void) { return atomic_load(&mht_alloc_count); }

void mht_alloc_reset(void) {
  atomic_store(&mht_alloc_budget, -1);
  mh_replace_allocator(NULL, NULL, NULL, NULL);
}

/* ---- child processes ------------------------------------------------- */

static int mht_read_into(int fd, char **buf, size_t *len, size_t *cap) {
  if (*cap - *len < 4096) {
    size_t ncap = *cap ? *cap * 2 : 8192;
    char *nb = realloc(*buf, ncap);
    if (!nb) return -1;
    *buf = nb;
    *cap = ncap;
  }
  ssize_t r = read(fd, *buf + *len, *cap - *len - 1);
  if (r < 0) return errno == EINTR || errno == EAGAIN ? 1 : -1;
  if (r == 0) return 0;
  *len += (size_t)r;
  (*buf)[*len] = 0;
  return 1;
}

void mht_child_dies_with_parent(pid_t parent) {
  /* The signal is kept across execve; the check covers a parent that died
   * before the request took effect. */
  if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() != parent)
    _exit(125);
}

int mht_run(char *const argv[], double timeout, mht_proc_result_t *res) {
  memset(res, 0, sizeof *res);
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) return -1;
  double start = mht_now();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    mht_child_dies_with_parent(parent);
    setpgid(0, 0);
    int nul = open("/dev/null", O_RDONLY);
    dup2(nul, 0);
    dup2(po[1], 1);
    dup2(pe[1], 2);
    execv(argv[0], argv);
    _exit(127);
  }
  setpgid(pid, pid);
  close(po[1]);
  close(pe[1]);
  size_t ocap = 0, ecap = 0;
  res->out = calloc(1, 1);
  res->err = calloc(1, 1);
  int open_o = 1, open_e = 1;
  while (open_o || open_e) {
    double left = timeout - (mht_now() - start);
    if (left <= 0) {
      res->timed_out = 1;
      kill(-pid, SIGKILL);
      break;
    }
    struct pollfd fds[2] = {{open_o ? po[0] : -1, POLLIN, 0},
                            {open_e ? pe[0] : -1, POLLIN, 0}};
    int pr = poll(fds, 2, (int)(left * 1000) + 1);
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    if (open_o && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
      open_o = mht_read_into(po[0], &res->out, &res->out_len, &ocap) > 0;
    if (open_e && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
      open_e = mht_read_into(pe[0], &res->err, &res->err_len, &ecap) > 0;
  }
  close(po[0]);
  close(pe[0]);
  int st = 0;
  for (;;) {
    pid_t w = waitpid(pid, &st, res->timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      if (mht_now() - start > timeout) {
        res->timed_out = 1;
        kill(-pid, SIGKILL);
        continue;
      }
      mht_sleep(0.002);
    }
  }
  res->seconds = mht_now() - start;
  if (WIFEXITED(st)) {
    res->exited = 1;
    res->status = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    res->status = WTERMSIG(st);
  }
  return 0;
}

int mht_run_helper(const char *name, char *const args[], double timeout,
                   mht_proc_result_t *res) {
  char *argv[64];
  int n = 0;
  argv[n++] = mht_self_path;
  static char helper_flag[] = "--helper";
  char name_buf[256];
  snprintf(name_buf, sizeof name_buf, "%s", name);
  argv[n++] = helper_flag;
  argv[n++] = name_buf;
  for (int i = 0; args && args[i] && n < 63; i++) argv[n++] = args[i];
  argv[n] = NULL;
  return mht_run(argv, timeout, res);
}

void mht_proc_free(mht_proc_result_t *res) {
  free(res->out);
  free(res->err);
  res->out = res->err = NULL;
}

/* ---- main ------------------------------------------------------------ */

/* ---- the hang watchdog --------------------------------------------------
 *
 * CTest ends a test that passes its TIMEOUT with SIGKILL and prints only
 * "Timeout": a rare hang leaves nothing to read.  So when CTest starts a test
 * it sets MHT_WATCHDOG (seconds, a little under the TIMEOUT; CMakeLists.txt),
 * and the runner forks: the child runs the test, and the parent waits for it
 * with that limit.  When the limit passes, the parent prints, for every
 * thread of the child and every process under it, the scheduler state (R, S,
 * D, T, ...), the kernel's wait channel, the system call it sits in and its
 * kernel stack where readable, then the user stacks of every thread from gdb
 * (when installed; 30 s at most), kills the child and exits 124.  Otherwise
 * it exits as the child did (its code, 77 for a skip, or its signal).
 *
 * A separate process, not a timer signal in the test itself: under
 * ThreadSanitizer a signal waits until its thread makes an intercepted call,
 * and a thread blocked in a raw futex wait never does, so a hang there would
 * print nothing.  The child is the test process as before (its own pid, its
 * own children, subreaper and process group as the test sets them); it dies
 * with the parent (PR_SET_PDEATHSIG), so CTest's own kill still ends it. */

static char mht_wd_gdb[256]; /* the path of gdb, found when armed; "" if none */

static void wd_puts(const char *s) {
  size_t n = strlen(s);
  while (n) {
    ssize_t w = write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

/* dir/<id>/leaf, built in buf. */
static void wd_path(char *buf, size_t cap, const char *dir, long id, const char *leaf) {
  snprintf(buf, cap, "%s%ld/%s", dir, id, leaf);
}

/* Read a small file into buf (NUL-terminated, trailing newline dropped);
 * its length, or -1. */
static ssize_t wd_read(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  while (n > 0 && buf[n - 1] == '\n') n--;
  buf[n] = 0;
  return n;
}

/* One task (a thread of the test, or a process under it): "  tid N (comm)
 * state X wchan W syscall S", then its kernel stack, indented. */
static void wd_task(const char *dir, long id, const char *what) {
  char path[96], buf[2048], line[64];
  snprintf(line, sizeof line, "  %s %ld", what, id);
  wd_puts(line);
  wd_path(path, sizeof path, dir, id, "stat");
  if (wd_read(path, buf, sizeof buf) > 0) {
    char *open_ = strchr(buf, '('), *close_ = strrchr(buf, ')');
    if (open_ && close_ && close_[1] == ' ') {
      close_[1] = 0;
      wd_puts(" ");
      wd_puts(open_);
      char st[2] = {close_[2], 0};
      wd_puts(" state ");
      wd_puts(st);
    }
  }
  wd_path(path, sizeof path, dir, id, "wchan");
  if (wd_read(path, buf, sizeof buf) > 0) {
    wd_puts(" wchan ");
    wd_puts(buf);
  }
  wd_path(path, sizeof path, dir, id, "syscall");
  if (wd_read(path, buf, sizeof buf) > 0) {
    wd_puts(" syscall ");
    wd_puts(buf);
  }
  wd_puts("\n");
  wd_path(path, sizeof path, dir, id, "stack");
  if (wd_read(path, buf, sizeof buf) > 0) {
    wd_puts("    ");
    for (char *s = buf; *s; s++) {
      char c[2] = {*s, 0};
      wd_puts(c);
      if (*s == '\n') wd_puts("    ");
    }
    wd_puts("\n");
  }
}

/* The pids listed in a /proc/.../children file, at most cap; how many. */
static int wd_kids(const char *path, long *out, int cap) {
  char kids[1024];
  int n = 0;
  if (wd_read(path, kids, sizeof kids) <= 0) return 0;
  for (char *s = kids; *s && n < cap;) {
    while (*s == ' ') s++;
    if (!*s) break;
    long pid = strtol(s, &s, 10);
    if (pid <= 0) break;
    out[n++] = pid;
  }
  return n;
}

/* /proc/<pid>/task/<pid>/children: the children of a process's main
 * thread. */
static void wd_main_children_path(char *buf, size_t cap, long pid) {
  snprintf(buf, cap, "/proc/%ld/task/%ld/children", pid, pid);
}

/* The children of task `id` (under dir), and theirs down to depth 3 (a
 * pool's fork server and its workers). */
static void wd_children(const char *dir, long id, int depth) {
  static const char *const label[] = {"", "  child", "    grandchild", "      great-grandchild"};
  char path[96];
  long kids[256];
  if (depth > 3) return;
  if (depth == 1)
    wd_path(path, sizeof path, dir, id, "children");
  else
    wd_main_children_path(path, sizeof path, id);
  int n = wd_kids(path, kids, 256);
  for (int i = 0; i < n; i++) {
    wd_task("/proc/", kids[i], label[depth]);
    wd_children("/proc/", kids[i], depth + 1);
  }
}

/* Every thread of process `pid`, and the children each has. */
static void wd_threads(pid_t pid) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%ld/task/", (long)pid);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    long tid = strtol(e->d_name, NULL, 10);
    wd_task(dir, tid, "thread");
    wd_children(dir, tid, 1);
  }
  closedir(d);
}

/* gdb's "thread apply all bt" of process `pid`, 30 s at most. */
static void wd_gdb(pid_t pid) {
  if (!mht_wd_gdb[0]) {
    wd_puts("(gdb is not installed: no user stacks)\n");
    return;
  }
  char num[24];
  snprintf(num, sizeof num, "%ld", (long)pid);
  static char nx[] = "-nx", batch[] = "-batch", p[] = "-p", ex[] = "-ex",
              nopage[] = "set pagination off", bt[] = "thread apply all bt";
  char *argv[] = {mht_wd_gdb, nx, batch, p, num, ex, nopage, ex, bt, NULL};
  char *envp[] = {NULL};
  /* gdb writes to our stdout, which CTest keeps too. */
  pid_t g = -1;
  if (posix_spawn(&g, mht_wd_gdb, NULL, NULL, argv, envp) != 0) return;
  for (int t = 0; t < 300; t++) {
    int st;
    if (waitpid(g, &st, WNOHANG) == g) return;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  kill(g, SIGKILL);
  waitpid(g, NULL, 0);
  wd_puts("(gdb did not finish within 30 s)\n");
}

static void wd_find_gdb(void) {
  const char *dirs[] = {"/usr/bin/gdb", "/usr/local/bin/gdb", "/bin/gdb"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    if (access(dirs[i], X_OK) == 0) {
      snprintf(mht_wd_gdb, sizeof mht_wd_gdb, "%s", dirs[i]);
      break;
    }
}

/* "\n=== <title>; load average <it>\n". */
static void wd_title(const char *title) {
  char buf[128];
  wd_puts("\n=== ");
  wd_puts(title);
  wd_puts("; load average ");
  if (wd_read("/proc/loadavg", buf, sizeof buf) > 0) wd_puts(buf);
  wd_puts("\n");
}

static void wd_report(const char *test, pid_t pid, int secs) {
  char buf[256];
  snprintf(buf, sizeof buf, "test watchdog: %s still running after %d s (CTest's limit is near)",
           test, secs);
  wd_title(buf);
  wd_puts("--- threads and children (state, wait channel, system call, kernel stack)\n");
  wd_threads(pid);
  wd_puts("--- user stacks\n");
  wd_gdb(pid);
  wd_puts("=== test watchdog: giving up on the test\n");
}

void mht_report_stuck(pid_t pid, const char *why) {
  if (!mht_wd_gdb[0]) wd_find_gdb();
  char buf[256];
  snprintf(buf, sizeof buf, "process %ld is stuck: %s", (long)pid, why);
  wd_title(buf);
  wd_threads(pid);
  wd_gdb(pid);
  /* Its siblings too (the other children of this process): one of them may
   * hold what it waits for. */
  char path[64];
  long kids[256];
  wd_main_children_path(path, sizeof path, (long)getpid());
  int n = wd_kids(path, kids, 256);
  for (int i = 0; i < n; i++) {
    if (kids[i] == (long)pid) continue;
    snprintf(buf, sizeof buf, "--- sibling %ld\n", kids[i]);
    wd_puts(buf);
    wd_threads((pid_t)kids[i]);
    wd_gdb((pid_t)kids[i]);
  }
  wd_puts("=== end of the report\n");
}

/* If CTest asked for a watchdog (MHT_WATCHDOG=seconds), fork: return in the
 * child, which runs the test; the parent never returns (it exits as the
 * child did, or 124 after a report).  Without the variable, or if fork
 * fails, return at once and the test runs in this process. */
static void mht_watchdog(const char *test) {
  const char *e = getenv("MHT_WATCHDOG");
  int secs = e ? atoi(e) : 0;
  if (secs <= 0) return;
  wd_find_gdb();
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(124);
    return;
  }
  /* A pidfd becomes readable when the child ends: no polling delay. */
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  double deadline = mht_now() + secs;
  int st = 0;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) _exit(125);
    double left = deadline - mht_now();
    if (left <= 0) {
      wd_report(test, pid, secs);
      kill(pid, SIGKILL);
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      _exit(124);
    }
    if (pfd >= 0) {
      struct pollfd p = {.fd = pfd, .events = POLLIN};
      poll(&p, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
    } else {
      struct timespec ts = {0, 20 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
  /* Die of the child's signal, so CTest reports it as before (no second
   * core file). */
  int sig = WTERMSIG(st);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  _exit(128 + sig);
}

static int mht_run_all(void) {
  int passed = 0, failed = 0;
  for (int i = 0; i < mht_ntests; i++) {
    fflush(stdout);
    double t0 = mht_now();
    pid_t pid = fork();
    if (pid == 0) {
      mht_tests[i].fn();
      fflush(stdout);
      _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("%s %s (%.2fs)\n", ok ? "ok  " : "FAIL", mht_tests[i].name,
           mht_now() - t0);
    if (ok)
      passed++;
    else
      failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

int main(int argc, char **argv) {
  ssize_t n = readlink("/proc/self/exe", mht_self_path, sizeof mht_self_path - 1);
  if (n < 0) {
    snprintf(mht_self_path, sizeof mht_self_path, "%s", argv[0]);
  } else {
    mht_self_path[n] = 0;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < mht_ntests; i++) printf("%s\n", mht_tests[i].name);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "--helper") == 0) {
    for (int i = 0; i < mht_nhelpers; i++)
      if (strcmp(mht_helpers[i].name, argv[2]) == 0)
        return mht_helpers[i].fn(argc - 3, argv + 3);
    fprintf(stderr, "no helper named %s\n", argv[2]);
    return 2;
  }
  if (argc == 1) return mht_run_all();
  for (int i = 0; i < mht_ntests; i++) {
    if (strcmp(mht_tests[i].name, argv[1]) == 0) {
      mht_watchdog(mht_tests[i].name);
      mht_tests[i].fn();
      printf("ok %s\n", argv[1]);
      return 0;
    }
  }
  fprintf(stderr, "no test named %s (try --list)\n", argv[1]);
  return 2;
}

/* Open MPI's launcher makes its session folder <base>/ompi.<host>.<uid>;
 * two launches at the same moment (other tests, other users' jobs on the
 * machine) can race on it in a shared /tmp and fail with "File exists".
 * Each test process gets a base of its own, removed when it ends (Open MPI
 * removes what it made inside). */
static char mht_ompi_base[64];
static void mht_ompi_base_remove(void) {
  if (mht_ompi_base[0]) rmdir(mht_ompi_base);
}
void mht_private_ompi_tmpdir(void) {
  if (mht_ompi_base[0]) return;
  snprintf(mht_ompi_base, sizeof mht_ompi_base, "/tmp/mh-ompi-%d", (int)getpid());
  if (mkdir(mht_ompi_base, 0700) != 0 && errno != EEXIST) {
    mht_ompi_base[0] = 0;
    return;
  }
  setenv("OMPI_MCA_orte_tmpdir_base", mht_ompi_base, 1);
  atexit(mht_ompi_base_remove);
}

void mht_mpi_launch_env(const char *timeout_s, const char *source_dir) {
  /* A bound on every job a test starts (Open MPI's mpirun and MPICH's
   * mpiexec both honour it): a test that dies half-way (a failed check, the
   * CTest timeout) must not leave a 10^13-point job spinning behind it. */
  setenv("MPIEXEC_TIMEOUT", timeout_s, 1);
  mht_private_ompi_tmpdir();
  /* Open MPI refuses to run as root without these. */
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  /* Ranks are separate programs under mpiexec: keep the sanitizers' leak
   * reports about the MPI library itself out of them.  (Suppressions cannot
   * do it: Open MPI unloads its plugins at MPI_Finalize, so their frames in
   * the leak reports have no module name left to match.) */
  setenv("LSAN_OPTIONS", "detect_leaks=0", 1);
  setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
  /* ... and TSan's reports about Open MPI's own (uninstrumented) locks. */
  const char *tsan = getenv("TSAN_OPTIONS");
  char buf[1024];
  snprintf(buf, sizeof buf,
           "%s ignore_noninstrumented_modules=1 suppressions=%s/test/tsan-mpi.supp",
           tsan ? tsan : "", source_dir);
  setenv("TSAN_OPTIONS", buf, 1);
}
