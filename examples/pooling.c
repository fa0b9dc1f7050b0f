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
#include <unistd.h>

#include "manyhands.h"

/* The task: reads one int, writes its square.  It runs in a worker process,
 * so getpid() is the worker's pid; the pool copies `in` and `out` through
 * shared memory. */
static int square(const void *in, size_t in_size, void *out, size_t out_size,
                  void *ctx) {
  int n = *(const int *)in;
  printf("Worker process id for %d: %d\n", n, (int)getpid());
  fflush(stdout); /* stdout may be a pipe: hand the line over now */
  *(int *)out = n * n;
  return 0;
}

int main(void) {
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
  rc = mh_executor_map(p, square, NULL, mylist, sizeof mylist[0], result,
                       sizeof result[0], 5, 0, NULL);
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
