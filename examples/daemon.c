/* SPDX-License-Identifier: MIT */
/* daemon.c - the tutorial's daemon-thread program, in C.
 *
 * The same thread as thread_example, started with daemon=True: main does
 * not wait for it, the program exits at once, and the thread's "finishing"
 * line never appears.
 *
 * Python original (the tutorial's daemon.py):
 *
 *   logging.info("Main    : before creating thread")
 *   x = threading.Thread(target=thread_function, args=(1,), daemon=True)
 *   logging.info("Main    : before running thread")
 *   x.start()
 *   logging.info("Main    : wait for the thread to finish")
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

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    FILE *to = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? stdout : stderr;
    if (to == stderr) fprintf(stderr, "daemon: unknown option '%s'\n", argv[i]);
    fprintf(to,
            "usage: daemon\n"
            "Start a daemon thread that would sleep 2 seconds; the program\n"
            "exits at once and the thread never logs \"finishing\".\n");
    return to == stdout ? 0 : 2;
  }
  static const int one = 1;

  mh_log_info("Main    : before creating thread");
  mh_thread_options_t opts = {0};
  opts.daemon = 1;
  mh_thread_t *x;
  mh_log_info("Main    : before running thread");
  int rc = mh_thread_start(&x, thread_function, (void *)(uintptr_t)&one, &opts);
  if (rc) {
    fprintf(stderr, "daemon: cannot start a thread: %s\n", mh_strerror(rc));
    return 1;
  }
  mh_log_info("Main    : wait for the thread to finish");
  mh_log_info("Main    : all done");
  mh_thread_free(x);
  return 0; /* a daemon thread is not waited for */
}
