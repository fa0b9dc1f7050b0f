/* SPDX-License-Identifier: MIT */
/* test-examples-proc.c - the tutorial's multiprocessing programs in C
 * (examples/processes, examples/bank) print what the tutorial shows. */
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

static void run_example(const char *name, const char *a1, const char *a2, const char *a3,
                        mht_proc_result_t *r) {
  char path[4096];
  snprintf(path, sizeof path, "%s/examples/%s", MHT_BUILD_DIR, name);
  /* mht_run takes writable strings: copy the arguments. */
  char b1[64], b2[64], b3[64];
  snprintf(b1, sizeof b1, "%s", a1 ? a1 : "");
  snprintf(b2, sizeof b2, "%s", a2 ? a2 : "");
  snprintf(b3, sizeof b3, "%s", a3 ? a3 : "");
  char *argv[] = {path, a1 ? b1 : NULL, a2 ? b2 : NULL, a3 ? b3 : NULL, NULL};
  ASSERT_EQ(mht_run(argv, 120, r), 0);
  ASSERT_EQ(r->timed_out, 0);
}

/* The number after "prefix" on the line that starts with it, or -1. */
static long number_after(const char *out, const char *prefix) {
  size_t pl = strlen(prefix);
  for (const char *line = out; line && *line;) {
    if (strncmp(line, prefix, pl) == 0) return strtol(line + pl, NULL, 10);
    line = strchr(line, '\n');
    if (line) line++;
  }
  return -1;
}

static int count_lines(const char *out) {
  int n = 0;
  for (; *out; out++) n += *out == '\n';
  return n;
}

TEST(processes_output) {
  for (int round = 0; round < 3; round++) {
    mht_proc_result_t r;
    run_example("processes", NULL, NULL, NULL, &r);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(count_lines(r.out), 8);
    long main_pid = number_after(r.out, "ID of main process: ");
    long p1 = number_after(r.out, "ID of process p1: ");
    long p2 = number_after(r.out, "ID of process p2: ");
    long w1 = number_after(r.out, "ID of process running worker1: ");
    long w2 = number_after(r.out, "ID of process running worker2: ");
    ASSERT_GT(main_pid, 0);
    ASSERT_GT(p1, 0);
    ASSERT_GT(p2, 0);
    /* The pid the parent reports for p1 is the one worker1 runs in. */
    ASSERT_EQ(p1, w1);
    ASSERT_EQ(p2, w2);
    ASSERT_NE(p1, p2);
    ASSERT_NE(p1, main_pid);
    ASSERT_NE(p2, main_pid);
    /* The main pid comes first; the end comes after both joins. */
    ASSERT(strncmp(r.out, "ID of main process: ", 20) == 0);
    const char *tail = strstr(r.out, "Both processes finished execution!\n");
    ASSERT(tail != NULL);
    ASSERT(strstr(r.out, "worker1") < tail);
    ASSERT(strstr(r.out, "worker2") < tail);
    ASSERT_STREQ(tail, "Both processes finished execution!\n"
                       "Process p1 is alive: False\n"
                       "Process p2 is alive: False\n");
    mht_proc_free(&r);
  }
}

TEST(processes_help) {
  mht_proc_result_t r;
  run_example("processes", "--help", NULL, NULL, &r);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "usage: processes") != NULL);
  mht_proc_free(&r);
  run_example("processes", "--bogus", NULL, NULL, &r);
  ASSERT_EQ(r.status, 2);
  ASSERT(strstr(r.err, "usage") != NULL);
  mht_proc_free(&r);
}

TEST(bank_with_lock) {
  mht_proc_result_t r;
  run_example("bank", NULL, NULL, NULL, &r);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  char want[1024] = "";
  for (int i = 0; i < 10; i++) strcat(want, "Final balance = 100\n");
  ASSERT_STREQ(r.out, want);
  mht_proc_free(&r);
  /* Longer loops, still exact. */
  run_example("bank", "--iterations", "40000", NULL, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT_STREQ(r.out, want);
  mht_proc_free(&r);
}

TEST(bank_without_lock_loses_updates) {
  /* Without the lock the balance must come out wrong at least once; a few
   * runs of a few rounds make that practically certain even on a busy
   * machine (each round's loops overlap; see examples/bank.c). */
  int wrong = 0, rounds = 0;
  for (int run = 0; run < 5 && wrong == 0; run++) {
    mht_proc_result_t r;
    run_example("bank", "--no-lock", "--rounds", "5", &r);
    ASSERT_EQ(r.exited, 1);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(count_lines(r.out), 5);
    for (const char *line = r.out; (line = strstr(line, "Final balance = ")) != NULL; line++) {
      long v = strtol(line + 16, NULL, 10);
      rounds++;
      if (v != 100) wrong++;
    }
    mht_proc_free(&r);
  }
  printf("without the lock: %d of %d rounds lost updates\n", wrong, rounds);
  ASSERT_GT(wrong, 0);
}

TEST(bank_help_and_bad_args) {
  mht_proc_result_t r;
  run_example("bank", "--help", NULL, NULL, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "--no-lock") != NULL);
  mht_proc_free(&r);
  run_example("bank", "--rounds", "0", NULL, &r);
  ASSERT_EQ(r.status, 2);
  mht_proc_free(&r);
  run_example("bank", "--frobnicate", NULL, NULL, &r);
  ASSERT_EQ(r.status, 2);
  ASSERT_STREQ(r.out, "");
  mht_proc_free(&r);
  run_example("bank", "--rounds", "2", NULL, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT_STREQ(r.out, "Final balance = 100\nFinal balance = 100\n");
  mht_proc_free(&r);
}

/* wordcount: per-file word counts of very different sizes (a file of 20,000
 * distinct words gives a report of ~200 KB, another one line), in argument
 * order; an unreadable file is named with its reason; --help and unknown
 * options. */
TEST(wordcount_files) {
  char dir[] = "/tmp/mh-wc-XXXXXX";
  ASSERT(mkdtemp(dir));
  char big[256], small[256], missing[256];
  snprintf(big, sizeof big, "%s/big.txt", dir);
  snprintf(small, sizeof small, "%s/small.txt", dir);
  snprintf(missing, sizeof missing, "%s/none.txt", dir);
  FILE *fp = fopen(big, "w");
  ASSERT(fp);
  for (int i = 0; i < 20000; i++) fprintf(fp, "w%05d%s", i, i % 10 ? " " : "\n");
  fprintf(fp, "the the the\n");
  fclose(fp);
  fp = fopen(small, "w");
  ASSERT(fp);
  fprintf(fp, "hello world hello\n");
  fclose(fp);
  mht_proc_result_t r;
  run_example("wordcount", big, small, NULL, &r);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "(20003 words, 20001 distinct)\nthe 3\nw00000 1\n"));
  ASSERT(strstr(r.out, "w19999 1\n== "));
  ASSERT(strstr(r.out, "small.txt (3 words, 2 distinct)\nhello 2\nworld 1\n"));
  ASSERT(strstr(r.out, "big.txt") < strstr(r.out, "small.txt"));
  ASSERT_EQ(count_lines(r.out), 1 + 20001 + 1 + 2);
  mht_proc_free(&r);
  run_example("wordcount", small, missing, NULL, &r);
  ASSERT_EQ(r.status, 1);
  ASSERT(strstr(r.out, "none.txt cannot be counted: no such file"));
  ASSERT(strstr(r.out, "hello 2\n"));
  mht_proc_free(&r);
  run_example("wordcount", "--help", NULL, NULL, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "usage: wordcount"));
  mht_proc_free(&r);
  run_example("wordcount", "--frob", small, NULL, &r);
  ASSERT_EQ(r.status, 2);
  ASSERT(strstr(r.err, "manyhands: unknown option '--frob'"));
  mht_proc_free(&r);
  run_example("wordcount", NULL, NULL, NULL, &r);
  ASSERT_EQ(r.status, 2);
  mht_proc_free(&r);
  unlink(big), unlink(small), rmdir(dir);
}
