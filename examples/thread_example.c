/* SPDX-License-Identifier: MIT */
/* thread_example.c - the tutorial's first threading program, in C.
 *
 *   thread_example           start a thread that sleeps 2 s and do not join
 *                            it: main says "all done" first, and the program
 *                            still waits for the thread before it exits
 *   thread_example --join    join it: "finishing" comes before "all done"
 *
 * Python original (the tutorial's thread_example.py):
 *
 *   def thread_function(name):
 *       logging.info("Thread %s: starting", name)
 *       time.sleep(2)
 *       logging.info("Thread %s: finishing", name)
 *
 *   logging.info("Main    : before creating thread")
 *   x = threading.Thread(target=thread_function, args=(1,))
 *   logging.info("Main    : before running thread")
 *   x.start()
 *   logging.info("Main    : wait for the thread to finish")
 *   # x.join()
 *   logging.info("Main    : all done")
 */
#include <stdio.h>
#include <string.h>

#include <manyhands.h>

static void thread_function(void *arg) {
  int name = *(const int *)arg;
  mh_log_info("Thread %d: starting", name);
  mh_thread_sleep(2);
  mh_log_info("Thread %d: finishing", name);
}

static void usage(FILE *to) {
  fprintf(to,
          "usage: thread_example [--join]\n"
          "Start a thread that sleeps 2 seconds and log in the tutorial's format.\n"
          "  --join   wait for the thread (x.join()) before \"all done\";\n"
          "           without it, main finishes first and the program still\n"
          "           waits for the (non-daemon) thread before exiting.\n");
}

int main(int argc, char **argv) {
  int join = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--join") == 0) {
      join = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "thread_example: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  /* The thread's argument must outlive main: main may return first. */
  static const int one = 1;

  mh_log_info("Main    : before creating thread");
  mh_thread_t *x;
  mh_log_info("Main    : before running thread");
  int rc = mh_thread_start(&x, thread_function, (void *)(uintptr_t)&one, NULL);
  if (rc) {
    fprintf(stderr, "thread_example: cannot start a thread: %s\n", mh_strerror(rc));
    return 1;
  }
  mh_log_info("Main    : wait for the thread to finish");
  if (join) mh_thread_join(x, MH_FOREVER);
  mh_log_info("Main    : all done");
  mh_thread_free(x);
  return 0; /* exit waits for x, a non-daemon thread, as Python does */
}
