/* SPDX-License-Identifier: MIT */
/* process-common.c - the helpers test-process.c and test-process-lifetime.c
 * share (see process-common.h). */
#include <stdint.h>
#include <unistd.h>

#include "process-common.h"

void assert_no_children(void) {
  /* A child freed while running is reaped in the background: give the
   * reaper a moment before insisting. */
  double end = mht_now() + 10;
  while (mht_count_children() != 0 && mht_now() < end) mht_sleep(0.01);
  ASSERT_EQ(mht_count_children(), 0);
}

int ret_arg(void *arg) { return (int)(intptr_t)arg; }

int sleep_forever(void *arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}

int print_pid_sleep_forever(void *arg) {
  (void)arg;
  printf("%d\n", (int)getpid());
  fflush(stdout);
  for (;;) pause();
  return 0;
}
