/* SPDX-License-Identifier: MIT */
/* multithreading.c - the tutorial's "Working with many threads": an executor
 * with three workers maps thread_function over range(3).
 *
 *   Python                                          C
 *   with ThreadPoolExecutor(max_workers=3) as ex:   mh_executor_new (workers 3)
 *       ex.map(thread_function, range(3))           mh_executor_map
 *   (leaving the with block)                        mh_executor_free
 *
 * All three "starting" lines come together and the program ends after about
 * two seconds, because the three calls run at the same time. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <manyhands.h>

static void sleep_seconds(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* The task: `in` is the item, the thread's name. */
static int thread_function(const void *in, size_t in_size, void *out,
                           size_t out_size, void *ctx) {
  (void)in_size, (void)out, (void)out_size, (void)ctx;
  int name = *(const int *)in;
  mh_log_info("Thread %d: starting", name);
  sleep_seconds(2);
  mh_log_info("Thread %d: finishing", name);
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
    if (!help) fprintf(stderr, "multithreading: unknown option '%s'\n", argv[i]);
    fputs("usage: multithreading [--help]\n"
          "Three workers of a thread pool each log a start, wait 2 s, log an end.\n",
          help ? stdout : stderr);
    return help ? 0 : 2;
  }
  mh_executor_options_t opts;
  mh_executor_options_init(&opts);
  opts.workers = 3;
  mh_executor_t *executor;
  int rc = mh_executor_new(&executor, &opts);
  if (rc) {
    mh_log_error("executor: %s", mh_strerror(rc));
    return 1;
  }
  int names[3] = {0, 1, 2}; /* range(3) */
  rc = mh_executor_map(executor, thread_function, NULL, names, sizeof names[0],
                       NULL, 0, 3, 1, NULL);
  mh_executor_free(executor);
  return rc ? 1 : 0;
}
