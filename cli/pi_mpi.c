/* SPDX-License-Identifier: MIT */
/* pi_mpi.c - the hook that runs `manyhands pi --backend mpi` over MPI ranks.
 *
 * Built into manyhands-mpi only (MH_WITH_MPI, linked with manyhands_mpi); the
 * plain manyhands compiles this file empty.  Every rank runs the same
 * command line and so makes the same collective calls in the same order;
 * mh_mpi_pi_run takes n, seed and kernel from rank 0, so even a random seed
 * drawn on each rank gives one run.  Ranks other than 0 send their stdout to
 * /dev/null: rank 0 alone prints, exactly what one machine prints.
 */
#include "cli.h"

#ifdef MH_WITH_MPI
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include <manyhands/mpi.h>

/* The layout of the next runs: ranks 0 .. g_ranks-1 take part with
 * g_threads threads each, the others sit out (a --sweep over ranks). */
static int g_threads = 1, g_ranks = 0;

static void finalize_at_exit(void) { mh_mpi_finalize(); }

int mhc_mpi_start(void) {
  int rc = mh_mpi_init(NULL, NULL);
  if (rc != 0) {
    mhc_error("MPI could not start: %s", mh_strerror(rc));
    return MHC_EXIT_FAIL;
  }
  atexit(finalize_at_exit);
  if (mh_mpi_rank() != 0 && !freopen("/dev/null", "w", stdout)) {
    mhc_error("cannot silence rank %d's output", mh_mpi_rank());
    return MHC_EXIT_FAIL;
  }
  return 0;
}

void mhc_mpi_set_layout(int ranks, int threads) {
  g_ranks = ranks;
  g_threads = threads;
}

int mhc_mpi_size(void) { return mh_mpi_size(); }

int mhc_mpi_rank(void) { return mh_mpi_rank(); }

/* Launchers bind ranks to CPUs by default (Open MPI binds each of up to two
 * ranks to one core), and then a rank's threads share that core: the run is
 * right but P times slower, without a word.  Say so once per rank, on its
 * stderr (the launcher forwards it), and carry on. */
static void note_binding(int threads) {
  static int said;
  cpu_set_t set;
  if (said || threads <= 1 || sched_getaffinity(0, sizeof set, &set) != 0) return;
  int cpus = CPU_COUNT(&set);
  if (cpus >= threads) return;
  said = 1;
  mhc_error("note: MPI rank %d runs %d threads on %d CPU%s it is bound to; "
            "to give it more, ask the launcher (Open MPI: --bind-to none, or "
            "--map-by slot:PE=%d; Slurm: --cpus-per-task=%d)",
            mh_mpi_rank(), threads, cpus, cpus == 1 ? "" : "s", threads, threads);
}

int mhc_mpi_pi_run(const mh_pi_options_t *opts, mh_pi_result_t *res) {
  int mine = g_ranks <= 0 || mh_mpi_rank() < g_ranks ? g_threads : 0;
  note_binding(mine);
  return mh_mpi_pi_run(opts, mine, res, NULL);
}
#else
typedef int mhc_no_mpi_t; /* ISO C wants something in a translation unit */
#endif
