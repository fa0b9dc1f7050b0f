/* SPDX-License-Identifier: MIT */
/* A program that links the installed MPI backend (manyhands-mpi.pc or
 * find_package(manyhands COMPONENTS mpi)); run without mpirun, it only checks
 * that the backend answers MH_EINVAL before mh_mpi_init(). */
#include <manyhands.h>
#include <manyhands/mpi.h>
#include <stdio.h>

int main(void) {
  if (mh_mpi_size() != MH_EINVAL) return 1;
  printf("mpi consumer ok: manyhands %s\n", mh_version_string());
  return 0;
}
