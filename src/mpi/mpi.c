/* SPDX-License-Identifier: MIT */
/* mpi.c - the MPI unit's entry points: mh_mpi_init starts the core and
 * registers the MPI backend with the executor; mh_mpi_finalize stops the
 * map protocol, gathers the ranks' trace records, then stops the core.
 *
 * This file is the top of src/mpi/: it calls the core (mpi_core.c) and the
 * map protocol (mpi_map.c), and neither calls back into it (the map protocol
 * is built on the core; the core knows neither).  The base library names no MPI symbol: the executor learns of
 * the MPI backend only from the registration here, so a program built
 * without libmanyhands_mpi gets MH_ENOTSUP for MH_BACKEND_MPI, plainly, and
 * a program that uses it links this file because it calls mh_mpi_init.
 *
 * Both calls run on the main thread, like the core's state they change
 * (mpi_internal.h); the backend table itself is atomic (executor.c).
 */
#include "../executor/executor_internal.h"
#include "mpi_internal.h"

int mh_mpi_init(int *argc, char ***argv) {
  int rc = mh__mpi_core_init(argc, argv);
  if (rc) return rc;
  /* The backend stays registered after mh_mpi_finalize: its start then
   * says MH_EINVAL (not initialised), as the header promises. */
  return mh__executor_register_backend(MH_BACKEND_MPI, &mh__backend_mpi);
}

int mh_mpi_finalize(void) {
  if (!mh__mpi.inited) return MH_EINVAL;
  mh__mpi_map_stop();
  /* Rank 0 says whether it traces; then every rank hands it the records
   * (the chunks a server ran) since the last gather (mpi_trace.c). */
  int tracing = mh__mpi_trace_tracing();
  if (MPI_Bcast(&tracing, 1, MPI_INT, 0, mh__mpi.comm) == MPI_SUCCESS && tracing)
    mh__mpi_trace_gather();
  mh__mpi_core_finalize();
  return 0;
}
