/* SPDX-License-Identifier: MIT */
/* sync-common.h - what test-sync.c and test-sync-shared.c share (defined in
 * sync-common.c). */
#ifndef MHT_SYNC_COMMON_H
#define MHT_SYNC_COMMON_H

#include <sys/types.h>

#include "test.h"

typedef void *(*thr_fn)(void *);

/* Start n (at most 64) threads on fn(arg) and join them all. */
void run_threads(int n, thr_fn fn, void *arg);

/* size zeroed bytes of MAP_SHARED memory, inherited by fork. */
void *shared_map(size_t size);

/* waitpid for pid, retried until it answers; returns the wait status. */
int wait_child(pid_t pid);

/* A barrier action that does nothing and returns 0. */
int never(void *arg);

#endif
