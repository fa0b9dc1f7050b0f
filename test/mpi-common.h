/* SPDX-License-Identifier: MIT */
/* mpi-common.h - what the MPI test files share (defined in mpi-common.c,
 * linked into test-mpi, the core, the backend and the map over ranks, and
 * test-mpi-pi, the pi job over ranks, the sweep and a run that loses a
 * rank).  Both launch `mpiexec -n R` on manyhands-mpi or on their own
 * binary's HELPERs; without MPI every test prints "MPI not found: skipped"
 * and exits 77, which CTest reports as skipped. */
#ifndef MHT_MPI_COMMON_H
#define MHT_MPI_COMMON_H

#include <stdint.h>

#include "test.h"
#include "mh_mpi_config.h"

#if MHT_HAVE_MPI
#include "manyhands/mpi.h"
#endif

/* The tests' own manyhands-mpi, built with the test hooks (MH_MPI_TEST_*). */
#define CLI MHT_BUILD_DIR "/test/manyhands-mpi"
#define BLOCK MH_PI_BLOCK_POINTS

/* Skip the test (exit 77) without MPI; else set the launch environment. */
void need_mpi(void);

/* argv of "mpiexec -n <ranks> [--oversubscribe] prog args...": fills `v`
 * (room for 32) with copies (free with free_argv). */
void mpiexec_argv(char **v, const char *ranks, const char *prog,
                  const char *const args[]);
void free_argv(char **v);

/* Run prog on `ranks` ranks under mpiexec, within `timeout` seconds. */
void run_mpi(const char *ranks, const char *prog, const char *const args[],
             double timeout, mht_proc_result_t *res);

/* The number in `"key":<n>` of a JSON line. */
uint64_t json_u64(const char *s, const char *key);

/* The processes whose command line holds prog and mark; with no_sentinels,
 * not counting the rank's sentinels. */
int count_marked_in(const char *prog, const char *mark, int no_sentinels);
int count_marked_prog(const char *prog, const char *mark);

/* A mark for the command lines of one test's processes. */
void make_mark(char *buf, size_t len);

/* After a failed job: every process of it (ranks, sentinels) is gone within
 * a few seconds. */
void assert_none_left(const char *prog, const char *mark);

#endif
