/* SPDX-License-Identifier: MIT */
/* pool-common.c - the helpers test-pool.c and test-procpool.c share (see
 * pool-common.h). */
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "executor/procpool.h"
#include "pool-common.h"

shm_t *shm_new(void) {
  void *p = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  memset(p, 0, sizeof(shm_t));
  ((shm_t *)p)->hang_item = -1;
  return p;
}

mh_executor_t *pool_new(int workers, int retries) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = workers;
  o.retries = retries;
  o.grace = 0.5;
  mh_executor_t *ex = NULL;
  ASSERT_OK(mh_executor_new(&ex, &o));
  return ex;
}

void pool_free(mh_executor_t *ex) {
  mh_executor_free(ex);
  ASSERT_EQ(mht_count_children(), 0);
}

int pool_pids(mh_executor_t *ex, int *pids, int n) {
  double end = mht_now() + 10;
  int k;
  while ((k = mh__pp_worker_pids(mh__executor_impl(ex), pids, n)) < n &&
         mht_now() < end)
    mht_sleep(0.002);
  return k;
}

int t_sq(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  long v;
  memcpy(&v, in, sizeof v);
  shm_t *s = ctx;
  if (s && v == s->hang_item && atomic_fetch_add(&s->hang_runs, 1) == 0) {
    atomic_store(&s->hang_pid, (int)getpid());
    for (;;) pause();
  }
  v *= v;
  memcpy(out, &v, sizeof v);
  return v % 1000 == 999 ? MH_EUSER - 1 : 0; /* never: squares end 1,4,9.. */
}

void check_map(mh_executor_t *ex, size_t n, size_t chunksize) {
  long *in = calloc(n, sizeof *in), *out = calloc(n, sizeof *out);
  int *st = malloc(n * sizeof *st);
  ASSERT(in && out && st);
  for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = -1, st[i] = 99;
  ASSERT_OK(mh_executor_map(ex, t_sq, NULL, in, sizeof(long), out,
                            sizeof(long), n, chunksize, st));
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(out[i], (long)(i * i));
    ASSERT_EQ(st[i], 0);
  }
  free(in);
  free(out);
  free(st);
}
