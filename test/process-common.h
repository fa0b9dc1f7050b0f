/* SPDX-License-Identifier: MIT */
/* process-common.h - what test-process.c and test-process-lifetime.c share
 * (defined in process-common.c). */
#ifndef MHT_PROCESS_COMMON_H
#define MHT_PROCESS_COMMON_H

#include "test.h"

/* Check (waiting up to 10 s for the background reaper) that this process
 * has no child left. */
void assert_no_children(void);

/* Child bodies: exit with the int in arg; pause forever; print the pid on
 * stdout and pause forever. */
int ret_arg(void *arg);
int sleep_forever(void *arg);
int print_pid_sleep_forever(void *arg);

#endif
