/* SPDX-License-Identifier: MIT */
/* test-examples-exec.c - run the tutorial's executor programs (multithreading,
 * fakedb, producer_consumer) and check what the tutorial says they show. */
#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>

#include "test.h"

/* Split `text` into lines in place; returns the count. */
static size_t split_lines(char *text, char **lines, size_t max) {
  size_t n = 0;
  char *save = NULL;
  for (char *l = strtok_r(text, "\n", &save); l && n < max;
       l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;
  return n;
}

/* Every line has the tutorial's "HH:MM:SS: " prefix; returns the message. */
static const char *message_of(const char *line) {
  ASSERT(strlen(line) > 10);
  ASSERT(isdigit((unsigned char)line[0]) && isdigit((unsigned char)line[1]));
  ASSERT(line[2] == ':' && line[5] == ':' && line[8] == ':' && line[9] == ' ');
  return line + 10;
}

static size_t find(char **lines, size_t n, const char *msg) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(message_of(lines[i]), msg) == 0) return i;
  mht_fail(__FILE__, __LINE__, "line \"%s\" not found", msg);
}

static void run_example(const char *name, char *arg, mht_proc_result_t *res) {
  char path[4096];
  snprintf(path, sizeof path, "%s/examples/%s", MHT_BUILD_DIR, name);
  char *argv[] = {path, arg, NULL};
  ASSERT_EQ(mht_run(argv, 60, res), 0);
  if (!res->exited || res->status != 0)
    fprintf(stderr, "%s stderr:\n%s\n", name, res->err);
  ASSERT_EQ(res->exited, 1);
  ASSERT_EQ(res->status, 0);
}

TEST(multithreading) {
  mht_proc_result_t res;
  run_example("multithreading", NULL, &res);
  char *lines[64];
  size_t n = split_lines(res.err, lines, 64);
  ASSERT_EQ(n, 6);
  /* The three start together: all "starting" lines come before any
   * "finishing" line, and each name appears once in each. */
  int started[3] = {0}, finished[3] = {0};
  for (size_t i = 0; i < n; i++) {
    int name;
    char what[16];
    ASSERT_EQ(sscanf(message_of(lines[i]), "Thread %d: %15s", &name, what), 2);
    ASSERT(name >= 0 && name < 3);
    if (i < 3) {
      ASSERT_STREQ(what, "starting");
      started[name]++;
    } else {
      ASSERT_STREQ(what, "finishing");
      finished[name]++;
    }
  }
  for (int k = 0; k < 3; k++) {
    ASSERT_EQ(started[k], 1);
    ASSERT_EQ(finished[k], 1);
  }
  /* About two seconds, not six. */
  ASSERT(res.seconds >= 1.95);
  ASSERT(res.seconds < 5.0);
  mht_proc_free(&res);
}

/* Both updates start before either finishes (each sleeps 0.1 s between its
 * read and its write), and one is lost.  That overlap is the tutorial's
 * point but a matter of timing: on a loaded machine the second thread may
 * first run after the first finished, and then nothing is lost.  So each
 * run must be consistent (ending value 1 only with overlapping updates,
 * else 2), and within five runs an update must be lost. */
TEST(fakedb_shows_lost_update) {
  int lost = 0;
  for (int run = 0; run < 5 && !lost; run++) {
    mht_proc_result_t res;
    run_example("fakedb", NULL, &res);
    char *lines[64];
    size_t n = split_lines(res.err, lines, 64);
    ASSERT_EQ(n, 6);
    ASSERT_STREQ(message_of(lines[0]), "Testing update. Starting value is 0.");
    size_t s0 = find(lines, n, "Thread 0: starting update");
    size_t s1 = find(lines, n, "Thread 1: starting update");
    size_t f0 = find(lines, n, "Thread 0: finishing update");
    size_t f1 = find(lines, n, "Thread 1: finishing update");
    ASSERT(s0 < f0 && s1 < f1);
    int overlap = s0 < f1 && s1 < f0;
    const char *end = message_of(lines[5]);
    lost = !strcmp(end, "Testing update. Ending value is 1.");
    /* A lost update needs the overlap; without it both updates land.
     * (Overlapping lines with both updates landed can happen too: the
     * second read came between the first one's write and its message.) */
    if (lost) ASSERT(overlap);
    else ASSERT_STREQ(end, "Testing update. Ending value is 2.");
    if (!lost) printf("run %d: no update lost (the threads did not overlap)\n", run);
    mht_proc_free(&res);
  }
  ASSERT(lost);
}

TEST(fakedb_lock) {
  mht_proc_result_t res;
  char lock[] = "--lock";
  run_example("fakedb", lock, &res);
  char *lines[64];
  size_t n = split_lines(res.err, lines, 64);
  ASSERT_EQ(n, 14);
  ASSERT_STREQ(message_of(lines[0]), "Testing update. Starting value is 0.");
  ASSERT_STREQ(message_of(lines[13]), "Testing update. Ending value is 2.");
  size_t at[2][6];
  static const char *steps[6] = {"starting update", "about to lock",
                                 "has lock",        "about to release lock",
                                 "after release",   "finishing update"};
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 6; k++) {
      char msg[64];
      snprintf(msg, sizeof msg, "Thread %d: %s", t, steps[k]);
      at[t][k] = find(lines, n, msg);
      if (k) ASSERT(at[t][k] > at[t][k - 1]);
    }
  /* The locked sections do not overlap: one thread releases before the
   * other has the lock. */
  int first = at[0][2] < at[1][2] ? 0 : 1;
  ASSERT(at[first][3] < at[!first][2]);
  mht_proc_free(&res);
}

/* The pipeline's log, threads or --processes: every message the producer
 * got is stored in order, the lines come in the tutorial's order, and the
 * paced producer prints a readable few dozen lines, not thousands. */
static void check_producer_consumer(char *opt) {
  mht_proc_result_t res;
  run_example("producer_consumer", opt, &res);
  size_t cap = res.err_len / 8 + 16;
  char **lines = malloc(cap * sizeof *lines);
  size_t n = split_lines(res.err, lines, cap);
  int *got = malloc(n * sizeof *got), *stored = malloc(n * sizeof *stored);
  size_t ngot = 0, nstored = 0;
  int main_set = 0, producer_exit = 0, consumer_exit = 0;
  for (size_t i = 0; i < n; i++) {
    const char *m = message_of(lines[i]);
    int v;
    size_t size;
    if (sscanf(m, "Producer got message: %d", &v) == 1) {
      ASSERT(v >= 1 && v <= 101);
      ASSERT_EQ(producer_exit, 0);
      got[ngot++] = v;
    } else if (sscanf(m, "Consumer storing message: %d (size=%zu)", &v,
                      &size) == 2) {
      ASSERT_EQ(consumer_exit, 0);
      ASSERT_LE(size, 10); /* Queue(maxsize=10) */
      stored[nstored++] = v;
    } else if (strcmp(m, "Main: about to set event") == 0) {
      main_set++;
    } else if (strcmp(m, "Producer received event. Exiting") == 0) {
      ASSERT_EQ(main_set, 1);
      producer_exit++;
    } else if (strcmp(m, "Consumer received event. Exiting") == 0) {
      ASSERT_EQ(producer_exit, 1);
      consumer_exit++;
    } else {
      mht_fail(__FILE__, __LINE__, "unexpected line \"%s\"", lines[i]);
    }
  }
  ASSERT_EQ(main_set, 1);
  ASSERT_EQ(producer_exit, 1);
  ASSERT_EQ(consumer_exit, 1);
  /* Every message the producer got was stored, in order. */
  ASSERT(ngot > 0);
  ASSERT_EQ(nstored, ngot);
  for (size_t i = 0; i < ngot; i++) ASSERT_EQ(stored[i], got[i]);
  /* The event ends it shortly after 0.1 s. */
  ASSERT(res.seconds >= 0.099);
  ASSERT(res.seconds < 20);
  ASSERT_LE(ngot, 400);
  free(got);
  free(stored);
  free(lines);
  mht_proc_free(&res);
}

TEST(producer_consumer) { check_producer_consumer(NULL); }

TEST(producer_consumer_processes) {
  char opt[] = "--processes";
  check_producer_consumer(opt);
}

TEST(producer_consumer_options) {
  mht_proc_result_t res;
  char path[4096], help[] = "--help", bad[] = "--bogus";
  snprintf(path, sizeof path, "%s/examples/producer_consumer", MHT_BUILD_DIR);
  char *argv[] = {path, help, NULL};
  ASSERT_EQ(mht_run(argv, 30, &res), 0);
  ASSERT_EQ(res.exited, 1);
  ASSERT_EQ(res.status, 0);
  ASSERT(strstr(res.out, "--processes") != NULL);
  mht_proc_free(&res);
  argv[1] = bad;
  ASSERT_EQ(mht_run(argv, 30, &res), 0);
  ASSERT_EQ(res.exited, 1);
  ASSERT_EQ(res.status, 2);
  ASSERT(strstr(res.err, "manyhands: unknown option '--bogus'") != NULL);
  mht_proc_free(&res);
}

/* Every tutorial program (producer_consumer has tests of its own) answers
 * --help on stdout with exit 0, and rejects an unknown option with exit 2
 * and a "<prog>: ..." line on stderr, running nothing. */
TEST(examples_help_and_unknown_option) {
  static const char *const names[] = {"thread_example", "daemon", "multithreading",
                                      "fakedb", "processes", "bank", "pooling",
                                      "montecarlo", "mergesort", "fib", "pipe_talk"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char path[4096], prefix[64];
    snprintf(path, sizeof path, "%s/examples/%s", MHT_BUILD_DIR, names[k]);
    snprintf(prefix, sizeof prefix, "%s: ", names[k]);
    mht_proc_result_t res;
    char help[] = "--help", bad[] = "--no-such-option";
    char *argv_help[] = {path, help, NULL};
    ASSERT_EQ(mht_run(argv_help, 60, &res), 0);
    if (res.status != 0) fprintf(stderr, "%s --help: %s\n", names[k], res.err);
    ASSERT_EQ(res.exited, 1);
    ASSERT_EQ(res.status, 0);
    ASSERT(strstr(res.out, "usage: ") != NULL);
    mht_proc_free(&res);
    char *argv_bad[] = {path, bad, NULL};
    ASSERT_EQ(mht_run(argv_bad, 60, &res), 0);
    if (res.status != 2) fprintf(stderr, "%s --no-such-option: %s\n", names[k], res.err);
    ASSERT_EQ(res.exited, 1);
    ASSERT_EQ(res.status, 2);
    ASSERT(strncmp(res.err, prefix, strlen(prefix)) == 0);
    ASSERT(strstr(res.err, "--no-such-option") != NULL);
    ASSERT_EQ(res.out_len, 0);
    mht_proc_free(&res);
  }
}

/* The fork-join examples (docs/forkjoin.md): a merge sort and Fibonacci,
 * on one worker (where a waiting task must help) and on three. */
static void run_with_args(const char *name, const char *a1, const char *a2,
                          mht_proc_result_t *res) {
  char path[4096], b1[32], b2[32];
  snprintf(path, sizeof path, "%s/examples/%s", MHT_BUILD_DIR, name);
  snprintf(b1, sizeof b1, "%s", a1);
  snprintf(b2, sizeof b2, "%s", a2);
  char *argv[] = {path, b1, b2, NULL};
  ASSERT_EQ(mht_run(argv, 120, res), 0);
  if (!res->exited || res->status != 0) fprintf(stderr, "%s stderr:\n%s\n", name, res->err);
  ASSERT_EQ(res->exited, 1);
  ASSERT_EQ(res->status, 0);
}

TEST(mergesort) {
  mht_proc_result_t res;
  run_with_args("mergesort", "300000", "1", &res);
  ASSERT_STREQ(res.out, "sorted 300000 ints on 1 workers\n");
  mht_proc_free(&res);
  run_with_args("mergesort", "1000000", "3", &res);
  ASSERT_STREQ(res.out, "sorted 1000000 ints on 3 workers\n");
  mht_proc_free(&res);
}

TEST(fib) {
  mht_proc_result_t res;
  run_with_args("fib", "25", "1", &res);
  ASSERT_STREQ(res.out, "fib(25) = 75025 on 1 workers\n");
  mht_proc_free(&res);
  run_with_args("fib", "30", "3", &res);
  ASSERT_STREQ(res.out, "fib(30) = 832040 on 3 workers\n");
  mht_proc_free(&res);
}

/* Every program built in examples/, found by listing the folder (so a new
 * example cannot be forgotten in the list above): --help prints a usage on
 * stdout and exits 0; an unknown option is named on stderr, exits 2, and
 * prints nothing on stdout. */
TEST(every_built_example_honours_help) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/examples", MHT_BUILD_DIR);
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  int seen = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        !(st.st_mode & S_IXUSR))
      continue;
    mht_proc_result_t res;
    char help[] = "--help", bad[] = "--no-such-option";
    char *argv_help[] = {path, help, NULL};
    ASSERT_EQ(mht_run(argv_help, 60, &res), 0);
    if (res.status != 0 || !strstr(res.out, "usage: "))
      mht_fail(__FILE__, __LINE__, "%s --help: status %d\n%s%s", e->d_name, res.status,
               res.out, res.err);
    ASSERT_EQ(res.exited, 1);
    mht_proc_free(&res);
    char *argv_bad[] = {path, bad, NULL};
    ASSERT_EQ(mht_run(argv_bad, 60, &res), 0);
    if (res.status != 2 || !strstr(res.err, "--no-such-option") || res.out_len != 0)
      mht_fail(__FILE__, __LINE__, "%s --no-such-option: status %d\n%s%s", e->d_name,
               res.status, res.out, res.err);
    ASSERT_EQ(res.exited, 1);
    mht_proc_free(&res);
    seen++;
  }
  closedir(d);
  ASSERT_GE(seen, 13); /* the tutorial's programs and wordcount */
}
