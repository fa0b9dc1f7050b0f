/* SPDX-License-Identifier: MIT */
/* pooling.c - the tutorial's pooling.py: a process pool maps square over
 * [1, 2, 3, 4, 5]; each call prints the pid of the worker process it runs in.
 *
 *     def square(n):
 *         print("Worker process id for {0}: {1}".format(n, os.getpid()))
 *         return (n*n)
 *     p = multiprocessing.Pool()
 *     result = p.map(square, mylist)
 *     print(result)
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "manyhands.h"

/* The task: reads one int, writes its square.  It runs in a worker process,
 * so getpid() is the worker's pid; the pool copies `in` and `out` through
 * shared memory. */
static int square(const void *in, size_t in_size, void *out, size_t out_size,
                  void *ctx) {
  (void)in_size, (void)out_size, (void)ctx;
  int n = *(const int *)in;
  printf("Worker process id for %d: %d\n", n, (int)getpid());
  fflush(stdout); /* stdout may be a pipe: hand the line over now */
  /* Python's workers start one after another and take items as they come;
   * here a fork-server worker would square all five before the next one has
   * woken.  A 50 ms pause per item lets every worker take some, so the pids
   * differ, as the tutorial shows. */
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  *(int *)out = n * n;
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
    if (!help) fprintf(stderr, "pooling: unknown option '%s'\n", argv[i]);
    fputs("usage: pooling [--help]\n"
          "A process pool squares 1..5; each item prints the worker's pid.\n",
          help ? stdout : stderr);
    return help ? 0 : 2;
  }
  int mylist[] = {1, 2, 3, 4, 5};
  int result[5];

  mh_executor_options_t opts;
  mh_executor_options_init(&opts);
  opts.backend = MH_BACKEND_PROCESSES; /* workers = 0: one per CPU */
  mh_executor_t *p;
  int rc = mh_executor_new(&p, &opts);
  if (rc < 0) {
    fprintf(stderr, "pooling: %s\n", mh_strerror(rc));
    return 1;
  }
  /* chunksize 1: each item is a task of its own, handed to whichever worker
   * is free (Pool.map would group them for five items on few CPUs). */
  rc = mh_executor_map(p, square, NULL, mylist, sizeof mylist[0], result,
                       sizeof result[0], 5, 1, NULL);
  mh_executor_free(p);
  if (rc < 0) {
    fprintf(stderr, "pooling: %s\n", mh_strerror(rc));
    return 1;
  }
  printf("[");
  for (int i = 0; i < 5; i++) printf(i ? ", %d" : "%d", result[i]);
  printf("]\n");
  return 0;
}
