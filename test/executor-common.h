/* SPDX-License-Identifier: MIT */
/* executor-common.h - what test-executor.c and test-future.c share: small
 * tasks, a thread-backend executor, a done callback that counts (defined in
 * executor-common.c). */
#ifndef MHT_EXECUTOR_COMMON_H
#define MHT_EXECUTOR_COMMON_H

#include "test.h"

/* Does nothing and returns 0. */
int t_noop(const void *in, size_t is, void *out, size_t os, void *ctx);

/* out = 2 * in; the item 13 (mod 1000) fails with an application code. */
int t_double(const void *in, size_t is, void *out, size_t os, void *ctx);

/* Returns the int it is given as its code. */
int t_code(const void *in, size_t is, void *out, size_t os, void *ctx);

/* Blocks until *ctx (an atomic_int gate) is non-zero, then returns 0. */
int t_gate(const void *in, size_t is, void *out, size_t os, void *ctx);

/* Counts how often each index ran: ctx is an array of atomic_int. */
int t_count(const void *in, size_t is, void *out, size_t os, void *ctx);

/* Sleeps *in (a double) seconds. */
int t_sleep(const void *in, size_t is, void *out, size_t os, void *ctx);

/* A thread-backend executor of n workers (asserted to start). */
mh_executor_t *threads(int n);

/* A done callback: adds 1 to the atomic_int at arg. */
void cb_tick(mh_future_t *f, void *arg);

#endif
