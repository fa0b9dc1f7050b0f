/* SPDX-License-Identifier: MIT */
/* executor-common.c - the tasks and helpers test-executor.c and
 * test-future.c share (see executor-common.h). */
#include <stdatomic.h>

#include "executor-common.h"

int t_noop(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)in, (void)is, (void)out, (void)os, (void)ctx;
  return 0;
}

/* out = 2 * in; the item 13 (mod 1000) fails with an application code. */
int t_double(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)is, (void)os, (void)ctx;
  long v = *(const long *)in;
  *(long *)out = 2 * v;
  return v % 1000 == 13 ? MH_EUSER - (int)(v % 7) : 0;
}

/* Returns the int it is given as its code. */
int t_code(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)is, (void)out, (void)os, (void)ctx;
  return *(const int *)in;
}

/* Blocks until *ctx (an atomic_int gate) is non-zero, then returns 0. */
int t_gate(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)in, (void)is, (void)out, (void)os;
  atomic_int *gate = ctx;
  while (!atomic_load(gate)) mht_sleep(0.001);
  return 0;
}

/* Counts how often each index ran: ctx is an array of atomic_int. */
int t_count(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)is, (void)out, (void)os;
  atomic_int *runs = ctx;
  atomic_fetch_add(&runs[*(const size_t *)in], 1);
  return 0;
}

int t_sleep(const void *in, size_t is, void *out, size_t os, void *ctx) {
  (void)is, (void)out, (void)os, (void)ctx;
  mht_sleep(*(const double *)in);
  return 0;
}

mh_executor_t *threads(int n) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = n;
  mh_executor_t *ex = NULL;
  ASSERT_OK(mh_executor_new(&ex, &o));
  return ex;
}

void cb_tick(mh_future_t *f, void *arg) {
  (void)f;
  atomic_fetch_add((atomic_int *)arg, 1);
}
