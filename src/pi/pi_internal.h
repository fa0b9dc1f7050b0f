/* SPDX-License-Identifier: MIT */
/* pi_internal.h - what pi.c shares with the tests and the MPI backend: the
 * plan that cuts a run into blocks and tasks, and the test hooks.  The stream
 * itself is in pi_stream.h.  Never installed.
 */
#ifndef MH_PI_INTERNAL_H
#define MH_PI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "manyhands/pi.h"
#include "pi_stream.h"

/* Most blocks in one task of the window (pi.c): about 35 ms of one core. */
#define MH__PI_MAX_TASK_BLOCKS 32

/* How mh_pi_run cuts n points into blocks and tasks (pi.c). */
typedef struct mh__pi_plan {
  uint64_t n;
  uint64_t nblocks;         /* ceil(n / MH_PI_BLOCK_POINTS) */
  uint64_t last_points;     /* points of the last block, 1 .. BLOCK_POINTS */
  uint64_t blocks_per_task; /* 1 .. MH__PI_MAX_TASK_BLOCKS, from n and the
                               worker count */
  uint64_t ntasks;          /* ceil(nblocks / blocks_per_task): tasks of
                               full size; the last ones are smaller */
  size_t window;            /* tasks in flight at most */
} mh__pi_plan_t;

/* Plan a run: MH_EINVAL for n == 0, n > 2^63 - 1, workers < 1. */
int mh__pi_plan(uint64_t n, int workers, mh__pi_plan_t *plan);

/* The test hooks exist only in test builds (-DMH_TEST_HOOKS, the
 * manyhands_test library the tests link); the installed library has none, and
 * its hot paths no check of them. */
#ifdef MH_TEST_HOOKS
/* Test hook: when non-zero, mh__pi_stream_init ignores the block index, so
 * every block repeats the same stream.  Only the statistics test sets it, to
 * show that the test catches such a broken generator. */
extern int mh__pi_test_broken_streams;

/* Test hook: bit k set makes mh_pi_kernel_supported(k) report 0 for the SIMD
 * kernels, as on a CPU without them (the scalar kernel cannot be disabled). */
extern unsigned mh__pi_test_disabled_kernels;

/* Test hook: when mh__pi_test_kill_armed points at a non-zero int (in shared
 * memory, so that process workers see one flag), the task that counts block
 * mh__pi_test_kill_block clears it and kills its own process with SIGKILL -
 * a worker dying mid-run, once. */
extern uint64_t mh__pi_test_kill_block;
extern int *mh__pi_test_kill_armed;
#endif /* MH_TEST_HOOKS */

#endif /* MH_PI_INTERNAL_H */
