/* SPDX-License-Identifier: MIT */
/* mpi-common.c - what the MPI test files share: the skip without MPI and
 * the launch environment, mpiexec runs of a program, a JSON field, and the
 * marks that find one test's processes (linked into test-mpi and
 * test-mpi-pi; declared in mpi-common.h). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi-common.h"

void need_mpi(void) {
#if !MHT_HAVE_MPI
  printf("MPI not found: skipped\n");
  exit(77);
#endif
  mht_mpi_launch_env("150", MHT_SOURCE_DIR);
}

/* argv of "mpiexec -n <ranks> [--oversubscribe] prog args...": fills `v`
 * (room for 32) with copies (free with free_argv). */
void mpiexec_argv(char **v, const char *ranks, const char *prog,
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

void free_argv(char **v) {
  for (int i = 0; v[i]; i++) free(v[i]);
}

void run_mpi(const char *ranks, const char *prog, const char *const args[],
             double timeout, mht_proc_result_t *res) {
  char *v[32];
  mpiexec_argv(v, ranks, prog, args);
  int rc = mht_run(v, timeout, res);
  free_argv(v);
  ASSERT_EQ(rc, 0);
  ASSERT(!res->timed_out);
}

/* The number in `"key":<n>` of a JSON line. */
uint64_t json_u64(const char *s, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(s, pat);
  if (!p) mht_fail(__FILE__, __LINE__, "no %s in %s", key, s);
  return strtoull(p + strlen(pat), NULL, 10);
}

/* The processes whose command line holds prog and mark; with no_sentinels,
 * not counting the rank's sentinels (forks of the rank: same command line,
 * named mh-sentinel). */
int count_marked_in(const char *prog, const char *mark, int no_sentinels) {
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

int count_marked_prog(const char *prog, const char *mark) {
  return count_marked_in(prog, mark, 0);
}

/* A mark for the command lines of one test's processes. */
void make_mark(char *buf, size_t len) {
  snprintf(buf, len, "%d", 900000 + (int)getpid() % 99999);
}

/* After a failed job: every process of it (ranks, sentinels) is gone within
 * a few seconds. */
void assert_none_left(const char *prog, const char *mark) {
  double t0 = mht_now();
  while (count_marked_prog(prog, mark) > 0 && mht_now() - t0 < 5)
    mht_sleep(0.05);
  ASSERT_EQ(count_marked_prog(prog, mark), 0);
}
