/* SPDX-License-Identifier: MIT */
/* test-cli-signals.c - the manyhands command interrupted and hurt: Ctrl-C
 * on every backend and during a sweep, a worker SIGKILLed mid-task, Ctrl-C
 * with a stopped worker and during start-up.  Each case checks the exit
 * code, the partial result and that no process is left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli-common.h"

/* ---- Ctrl-C ------------------------------------------------------------------------ */

/* Start the command in its own process group with stdout/stderr to files,
 * send SIGINT to the whole group after `delay` seconds (as a terminal does),
 * and check: exit 130, quickly, a partial result, nothing left behind. */
static void sigint_run(const char *backend, int json /* 2: a sweep */) {
  /* Skip a backend this build does not have (there is nothing to stop). */
  mht_proc_result_t probe;
  cli(&probe, 60, "pi", "1", "1", "--backend", backend, NULL);
  int missing = probe.exited && probe.status == 1 && strstr(probe.err, "not available");
  mht_proc_free(&probe);
  if (missing) {
    fprintf(stderr, "the %s backend is not in this build: skipped\n", backend);
    return;
  }
  /* Orphans of the command would be re-parented to us, so that a worker
   * left behind shows up among our children. */
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  char out[64], err[64];
  snprintf(out, sizeof out, "/tmp/mht-cli-int-%d.out", (int)getpid());
  snprintf(err, sizeof err, "/tmp/mht-cli-int-%d.err", (int)getpid());
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || nul < 0) _exit(126);
    dup2(nul, 0);
    dup2(o, 1);
    dup2(e, 2);
    if (json == 2) /* a sweep whose first worker count never finishes */
      execl(CLI, CLI, "pi", "1e13", "--sweep", "1-2", "--backend", backend,
            "--quiet", (char *)NULL);
    else
      execl(CLI, CLI, "pi", "1e13", "2", "--backend", backend,
            json ? "--json" : "--quiet", (char *)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  wait_sigint_caught(pid);
  mht_sleep(0.5);
  int st;
  pid_t w = waitpid(pid, &st, WNOHANG);
  ASSERT_EQ(w, 0); /* still running */
  double t0 = mht_now();
  ASSERT_EQ(kill(-pid, SIGINT), 0);
  for (;;) {
    w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (mht_now() - t0 > 10) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      mht_fail(__FILE__, __LINE__, "no exit 10 s after SIGINT");
    }
    mht_sleep(0.001);
  }
  double took = mht_now() - t0;
  fprintf(stderr, "%s: exited %.3f s after SIGINT\n", backend, took);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 130);
  /* The goal is 0.1 s; the bound is generous for a loaded machine, and more
   * so under the sanitizers, where the workers' teardown alone took 2.8 s
   * beside two busy processes. */
  ASSERT(took < (MH__SANITIZED ? 8.0 : 2.0));
  /* Nothing of the command's process group is left... */
  ASSERT_EQ(kill(-pid, 0), -1);
  ASSERT_EQ(errno, ESRCH);
  /* ...and no worker was re-parented to us. */
  double t1 = mht_now();
  int left;
  while ((left = mht_count_children()) > 0 && mht_now() - t1 < 0.5) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    mht_sleep(0.01);
  }
  ASSERT_EQ(left, 0);

  static char buf[65536];
  read_text_file(out, buf, sizeof buf);
  if (json == 1) {
    ASSERT(strstr(buf, "\"interrupted\":true") != NULL);
    uint64_t done = json_u64(buf, "done"), inside = json_u64(buf, "inside");
    ASSERT_UEQ(json_u64(buf, "n"), UINT64_C(10000000000000));
    ASSERT(done > 0 && done < UINT64_C(10000000000000));
    ASSERT_DEQ(json_num(buf, "pi"), 4.0 * (double)inside / (double)done, 1e-12);
  } else {
    unsigned long long done = 0, n = 0;
    ASSERT(sscanf(buf, "interrupted %llu of %llu points counted", &done, &n) == 2);
    ASSERT_UEQ(n, UINT64_C(10000000000000));
    ASSERT(done > 0);
    ASSERT(strstr(buf, "\npi          3.1") != NULL);
  }
  read_text_file(err, buf, sizeof buf);
  ASSERT(strstr(buf, "manyhands: interrupted") != NULL);
  unlink(out);
  unlink(err);
}

TEST(sigint_threads) { sigint_run("threads", 0); }
TEST(sigint_threads_json) { sigint_run("threads", 1); }
TEST(sigint_processes) { sigint_run("processes", 0); }
TEST(sigint_sweep) { sigint_run("threads", 2); }


/* ---- a worker killed mid-task ---------------------------------------------------- */

/* CPU ticks (utime + stime) and parent of every process in process group
 * `pgid` other than `skip`: up to `cap` of them into the arrays. */
typedef struct group_scan {
  pid_t pgid, skip;
  pid_t *pids, *ppids;
  unsigned long long *ticks;
  int cap, n;
} group_scan_t;

static int group_scan_one(pid_t pid, const char *stat, void *arg) {
  group_scan_t *g = arg;
  /* After the command name in parentheses: state ppid pgrp ... with
   * utime and stime the 12th and 13th fields from there. */
  const char *p = strrchr(stat, ')');
  if (!p) return 0;
  char state;
  int ppid, pg;
  unsigned long long f[13];
  if (sscanf(p + 2, "%c %d %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &state,
             &ppid, &pg, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8],
             &f[9]) != 13)
    return 0;
  if (pg != g->pgid || pid == g->skip || state == 'Z') return 0;
  g->pids[g->n] = pid;
  g->ppids[g->n] = ppid;
  g->ticks[g->n] = f[8] + f[9];
  return ++g->n == g->cap;
}

static int group_members(pid_t pgid, pid_t skip, pid_t *pids, pid_t *ppids,
                         unsigned long long *ticks, int cap) {
  group_scan_t g = {pgid, skip, pids, ppids, ticks, cap, 0};
  if (cap > 0) mht_each_process("stat", group_scan_one, &g);
  return g.n;
}

/* The busiest worker now: of the command's grandchildren (its pool's
 * workers; its children are fork servers), the one that used the most CPU
 * since the last look, else any.  0 when there is none. */
static pid_t busiest_worker(pid_t cmd, pid_t *seen, unsigned long long *seen_ticks,
                            int *nseen) {
  pid_t pids[64], ppids[64];
  unsigned long long ticks[64];
  int n = group_members(cmd, cmd, pids, ppids, ticks, 64);
  pid_t best = 0;
  long long best_delta = -1;
  for (int i = 0; i < n; i++) {
    if (ppids[i] == cmd) continue; /* the fork server */
    unsigned long long before = 0;
    for (int j = 0; j < *nseen; j++)
      if (seen[j] == pids[i]) before = seen_ticks[j];
    long long delta = (long long)(ticks[i] - before);
    if (delta > best_delta) {
      best_delta = delta;
      best = pids[i];
    }
  }
  *nseen = n < 64 ? n : 64;
  memcpy(seen, pids, (size_t)*nseen * sizeof *seen);
  memcpy(seen_ticks, ticks, (size_t)*nseen * sizeof *seen_ticks);
  return best;
}

/* The pi command on processes gets the same count when its busiest worker is
 * SIGKILLed at random moments, 20 times in one run: a task whose worker died
 * is run again (the pi job re-runs pure tasks; the executor's own retries stay
 * off), so the run neither fails nor miscounts.  The run is 3e10 points
 * (2.5 s with the kills here, 3.6 s under TSan, 10.6 s under ASan), so that
 * it outlasts the 20 kills (about 1 s in all three) with room to spare; at
 * 1e10 the run sometimes ended after 19. */
TEST(pi_processes_survive_killed_workers) {
  const char *n = "3e10";
  mht_proc_result_t ref;
  cli(&ref, 240, "pi", n, "2", "--backend", "threads", "--json", NULL);
  assert_ok(&ref, "undisturbed run");
  uint64_t want = json_u64(ref.out, "inside");
  mht_proc_free(&ref);

  char out[64], err[64];
  snprintf(out, sizeof out, "/tmp/mht-cli-kill-%d.out", (int)getpid());
  snprintf(err, sizeof err, "/tmp/mht-cli-kill-%d.err", (int)getpid());
  pid_t me = getpid();
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    mht_child_dies_with_parent(me);
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, 1);
    dup2(e, 2);
    execl(CLI, CLI, "pi", n, "2", "--backend", "processes", "--json", (char *)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  pid_t seen[64];
  unsigned long long seen_ticks[64];
  int nseen = 0, kills = 0, st = 0;
  double t0 = mht_now();
  pid_t w = 0;
  while (kills < 20) {
    w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (mht_now() - t0 > 200) break;
    mht_sleep((double)(10 + mht_rand() % 70) * 1e-3);
    pid_t victim = busiest_worker(pid, seen, seen_ticks, &nseen);
    if (victim > 0 && kill(victim, SIGKILL) == 0) kills++;
  }
  double t_kills = mht_now() - t0;
  if (w != pid) {
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && mht_now() - t0 < 240) mht_sleep(0.01);
    if (w != pid) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      mht_fail(__FILE__, __LINE__, "the command did not finish after %d kills", kills);
    }
  }
  static char buf[65536];
  read_text_file(err, buf, sizeof buf);
  fprintf(stderr, "%d workers killed in %.2f s, the run done at %.2f s; stderr: %s\n",
          kills, t_kills, mht_now() - t0, buf);
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    mht_fail(__FILE__, __LINE__, "exit status %#x after %d kills: %s", st, kills, buf);
  ASSERT_EQ(kills, 20);
  read_text_file(out, buf, sizeof buf);
  ASSERT_UEQ(json_u64(buf, "inside"), want);
  ASSERT_UEQ(json_u64(buf, "done"), UINT64_C(30000000000));
  /* Most kills land mid-task, each costing one re-run. */
  ASSERT(json_u64(buf, "reruns") >= 1);
  ASSERT_ULE(json_u64(buf, "reruns"), 20 * 4); /* at most a worker's queued tasks each */
  unlink(out);
  unlink(err);
}

/* ---- Ctrl-C with a stopped worker, and during start-up --------------------------- */

/* Start the command in its own process group, output to /dev/null. */
static pid_t start_quiet(const char *const argv[]) {
  pid_t me = getpid();
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    mht_child_dies_with_parent(me);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(CLI, (char *const *)(uintptr_t)argv);
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

/* SIGINT, then how long until the command exited, with its status. */
static double interrupt_and_time(pid_t pid, int *st, double limit) {
  double t0 = mht_now();
  ASSERT_OK(kill(pid, SIGINT));
  pid_t w;
  while ((w = waitpid(pid, st, WNOHANG)) == 0 && mht_now() - t0 < limit)
    mht_sleep(0.002);
  double took = mht_now() - t0;
  if (w != pid) {
    kill(-pid, SIGKILL);
    waitpid(pid, st, 0);
    mht_fail(__FILE__, __LINE__, "still running %.1f s after Ctrl-C", took);
  }
  return took;
}

/* Issue 12 item 3: with one worker SIGSTOPped, Ctrl-C used to wait for its
 * task for ever; now the command exits 130 within 0.5 s. */
TEST(pi_ctrl_c_with_stopped_worker) {
  const char *argv[] = {CLI, "pi", "1e12", "2", "--backend", "processes", NULL};
  pid_t pid = start_quiet(argv);
  pid_t seen[64], victim = 0;
  unsigned long long seen_ticks[64];
  int nseen = 0, st = 0;
  double t0 = mht_now();
  while (!victim && mht_now() - t0 < 60) {
    mht_sleep(0.05);
    victim = busiest_worker(pid, seen, seen_ticks, &nseen);
  }
  ASSERT(victim > 0);
  mht_sleep(0.2); /* let it be mid-task */
  ASSERT_OK(kill(victim, SIGSTOP));
  mht_sleep(0.05);
  double took = interrupt_and_time(pid, &st, 30);
  fprintf(stderr, "  exit %#x %.3f s after Ctrl-C\n", st, took);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 130);
  /* The command's watcher ends it 0.4 s after the signal at the latest; on
   * a loaded machine the test's own look at it can come later, so the bound
   * here leaves room for the scheduler (the figure is printed above). */
  ASSERT(took < (MH__SANITIZED ? 3.0 : 1.5));
}

/* Issue 12 item 2: Ctrl-C while a pool of 4096 processes starts ends the
 * command too (it used to hang in start-up, and Ctrl-C only set a flag). */
TEST(pi_ctrl_c_during_startup) {
  const char *argv[] = {CLI, "pi", "1e9", "4096", "--backend", "processes", NULL};
  pid_t pid = start_quiet(argv);
  mht_sleep(0.5);
  int st = 0;
  double took = interrupt_and_time(pid, &st, 30);
  fprintf(stderr, "  exit %#x %.3f s after Ctrl-C\n", st, took);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 130);
  /* The command's watcher ends it 0.4 s after the signal at the latest; on
   * a loaded machine the test's own look at it can come later, so the bound
   * here leaves room for the scheduler (the figure is printed above). */
  ASSERT(took < (MH__SANITIZED ? 3.0 : 1.5));
  /* Nothing is left: workers still being forked end with their fork server
   * (parent-death signals, one generation after another), which on a slow
   * machine (the sanitizers) takes a moment; a worker left behind for good
   * keeps the count up and fails here. */
  pid_t pids[64], ppids[64];
  unsigned long long ticks[64];
  int left = 0;
  double t1 = mht_now();
  do {
    mht_sleep(0.1);
    left = group_members(pid, pid, pids, ppids, ticks, 64);
  } while (left > 0 && mht_now() - t1 < 20);
  ASSERT_EQ(left, 0);
}
