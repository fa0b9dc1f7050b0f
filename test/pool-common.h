/* SPDX-License-Identifier: MIT */
/* pool-common.h - what the process pool's two test files share: a pool of
 * the executor's process backend, memory shared with its workers, and a
 * checked map (defined in pool-common.c, linked into test-pool and
 * test-procpool). */
#ifndef MHT_POOL_COMMON_H
#define MHT_POOL_COMMON_H

#include "test.h"

/* Memory shared with the workers: made before the pool, inherited by fork. */
typedef struct shm {
  _Atomic int hang_pid;   /* pid of the worker that runs the hanging item */
  _Atomic int hang_runs;  /* how often the hanging item was started */
  _Atomic int inits;      /* initializer calls */
  long hang_item;         /* this item hangs on its first run */
} shm_t;

/* A zeroed shm_t in MAP_SHARED memory, hang_item -1 (nothing hangs). */
shm_t *shm_new(void);

/* A process-backend executor of `workers` workers, `retries` re-runs of a
 * task whose worker died, a 0.5 s grace. */
mh_executor_t *pool_new(int workers, int retries);

/* Free it and check that no child process is left. */
void pool_free(mh_executor_t *ex);

/* The live workers' pids; waits (bounded) until n are live, since a
 * replacement may still be on its way. */
int pool_pids(mh_executor_t *ex, int *pids, int n);

/* out = in * in, and the worker's pid in ctx's shm when in == hang_item. */
int t_sq(const void *in, size_t isz, void *out, size_t osz, void *ctx);

/* Map t_sq over 0..n-1 with the chunksize and check every result. */
void check_map(mh_executor_t *ex, size_t n, size_t chunksize);

#endif
