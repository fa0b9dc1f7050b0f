/* SPDX-License-Identifier: MIT */
/* processes.c - the tutorial's test_processing.py: two child processes that
 * print their own process id, joined by the parent.
 *
 * Python                                   C
 *   p1 = multiprocessing.Process(target=worker1)
 *   p1.start()                               mh_process_start(&p1, worker1, NULL, NULL)
 *   p1.pid                                   mh_process_pid(p1)
 *   p1.join()                                mh_process_join(p1, MH_FOREVER)
 *   p1.is_alive()                            mh_process_is_alive(p1)
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "manyhands.h"

static int worker1(void *arg) {
  (void)arg;
  /* printing process id */
  printf("ID of process running worker1: %d\n", (int)getpid());
  return 0;
}

static int worker2(void *arg) {
  (void)arg;
  printf("ID of process running worker2: %d\n", (int)getpid());
  return 0;
}

static void usage(FILE *to) {
  fputs("usage: processes [--help]\n"
        "Start two processes that print their process ids, wait for both, and\n"
        "show that they are no longer alive (the tutorial's test_processing.py).\n",
        to);
}

int main(int argc, char **argv) {
  if (argc > 1) {
    int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
    if (!help) fprintf(stderr, "processes: unknown option '%s'\n", argv[1]);
    usage(help ? stdout : stderr);
    return help ? 0 : 2;
  }
  /* printing main program process id */
  printf("ID of main process: %d\n", (int)getpid());

  /* creating and starting processes */
  mh_process_t *p1, *p2;
  int rc = mh_process_start(&p1, worker1, NULL, NULL);
  if (rc) {
    fprintf(stderr, "processes: cannot start p1: %s\n", mh_strerror(rc));
    return 1;
  }
  rc = mh_process_start(&p2, worker2, NULL, NULL);
  if (rc) {
    fprintf(stderr, "processes: cannot start p2: %s\n", mh_strerror(rc));
    mh_process_join(p1, MH_FOREVER);
    mh_process_free(p1);
    return 1;
  }

  /* process IDs */
  printf("ID of process p1: %d\n", (int)mh_process_pid(p1));
  printf("ID of process p2: %d\n", (int)mh_process_pid(p2));
  fflush(stdout);

  /* wait until processes are finished */
  mh_process_join(p1, MH_FOREVER);
  mh_process_join(p2, MH_FOREVER);

  /* both processes finished */
  printf("Both processes finished execution!\n");

  /* check if processes are alive */
  printf("Process p1 is alive: %s\n", mh_process_is_alive(p1) ? "True" : "False");
  printf("Process p2 is alive: %s\n", mh_process_is_alive(p2) ? "True" : "False");

  mh_process_free(p1);
  mh_process_free(p2);
  return 0;
}
