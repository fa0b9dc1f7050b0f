/* SPDX-License-Identifier: MIT */
/* mpi_trace.c - one trace for an MPI job: rank 0 gathers every rank's
 * records into its own and writes the one file.
 *
 * Each rank records into its own buffer, like any process (src/trace.c):
 * one track per counting thread, named with the rank, in a process named
 * with the rank and its host.  A rank > 0 has no file (mh__trace_mpi, from
 * mh_mpi_init): at the end of every collective run (mh_mpi_pi_run) and at
 * mh_mpi_finalize, rank 0 asks each rank in turn for the records it has not
 * sent yet, and adds them to its own buffer, so whenever rank 0's trace is
 * written it holds every rank's work up to the last gather.
 *
 * Clocks: ranks on rank 0's host share its CLOCK_MONOTONIC.  For a rank on
 * another host, rank 0 sends a ping, the rank answers with its clock, and
 * rank 0 takes the middle of its send and receive times as the same
 * instant: the offset is good to half a round trip (tens of microseconds on
 * a LAN), far below a block's time.
 *
 * Deaths: a rank that dies ends the job (the launcher stops every rank), so
 * its records since the last gather are lost; rank 0 marks the death on
 * that rank's track and writes its file before it ends (mh__mpi_trace_end,
 * from the watchdog and the fatal paths).  A rank on rank 0's host whose
 * process is gone is found by kill(pid, 0); a rank that stopped responding
 * is named by whoever noticed it.
 *
 * Only the main thread of each rank calls MPI here (MPI_THREAD_SERIALIZED),
 * and only when rank 0 traces: off, a run pays one more word in the
 * broadcast that ends it (and mh_mpi_finalize one broadcast of an int).
 *
 * Invariants: a record goes to rank 0 at most once (mh__trace_export marks
 * what it copied); the messages of one gather are, per rank and in order,
 * PING (0 -> r), INFO (r -> 0), then INFO's count of records in RECS
 * messages, and rank 0 takes the ranks one after the other.
 * Locks: none of its own; mh__trace_export takes trace.c's g_mu inside.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "../trace_internal.h"
#include "mpi_internal.h"

enum { TAG_TRACE_PING = 30, TAG_TRACE_INFO = 31, TAG_TRACE_RECS = 32 };

/* Records per message: 64 MiB, well inside MPI's int counts. */
#define RECS_PER_MSG ((size_t)1 << 20)

int mh__mpi_trace_tracing(void) { return mh__mpi.rank == 0 && mh_trace_active(); }

static int same_host(int r) { return !strcmp(mh__mpi_host(r), mh__mpi_host(0)); }

/* Rank r > 0: answer rank 0's ping with our clock and record count, then
 * send the records. */
static int gather_send(void) {
  size_t n = 0;
  char *recs = mh__trace_export(&n);
  uint64_t ping;
  int rc = mh__mpi_err(MPI_Recv(&ping, 1, MPI_UINT64_T, 0, TAG_TRACE_PING,
                                mh__mpi.comm, MPI_STATUS_IGNORE));
  uint64_t info[2] = {mh__trace_clock(), (uint64_t)n};
  if (!rc)
    rc = mh__mpi_err(MPI_Send(info, 2, MPI_UINT64_T, 0, TAG_TRACE_INFO, mh__mpi.comm));
  for (size_t at = 0; !rc && at < n; at += RECS_PER_MSG) {
    size_t k = n - at < RECS_PER_MSG ? n - at : RECS_PER_MSG;
    rc = mh__mpi_err(MPI_Send(recs + at * MH__TRACE_REC_BYTES,
                              (int)(k * MH__TRACE_REC_BYTES), MPI_BYTE, 0,
                              TAG_TRACE_RECS, mh__mpi.comm));
  }
  mh__free(recs);
  return rc;
}

/* Rank 0: take rank r's records. */
static int gather_recv(int r) {
  uint64_t t_a = mh__trace_clock(), info[2];
  int rc = mh__mpi_err(MPI_Send(&t_a, 1, MPI_UINT64_T, r, TAG_TRACE_PING, mh__mpi.comm));
  if (!rc)
    rc = mh__mpi_err(MPI_Recv(info, 2, MPI_UINT64_T, r, TAG_TRACE_INFO, mh__mpi.comm,
                              MPI_STATUS_IGNORE));
  if (rc) return rc;
  uint64_t t_b = mh__trace_clock();
  int64_t offset = same_host(r) ? 0 : (int64_t)(info[0] - (t_a + (t_b - t_a) / 2));
  size_t n = (size_t)info[1];
  size_t cap = n < RECS_PER_MSG ? n : RECS_PER_MSG;
  char *buf = n ? mh__malloc(cap * MH__TRACE_REC_BYTES) : NULL;
  /* Out of memory: the messages must still be taken, into a small buffer
   * whose contents are then dropped. */
  char small[MH__TRACE_REC_BYTES];
  for (size_t at = 0; !rc && at < n; at += RECS_PER_MSG) {
    size_t k = n - at < RECS_PER_MSG ? n - at : RECS_PER_MSG;
    if (buf) {
      rc = mh__mpi_err(MPI_Recv(buf, (int)(k * MH__TRACE_REC_BYTES), MPI_BYTE, r,
                                TAG_TRACE_RECS, mh__mpi.comm, MPI_STATUS_IGNORE));
      if (!rc) mh__trace_import(buf, k, offset);
    } else {
      MPI_Status st;
      rc = mh__mpi_err(MPI_Recv(small, 0, MPI_BYTE, r, TAG_TRACE_RECS, mh__mpi.comm, &st));
      rc = 0; /* truncated on purpose: the records are lost, not the job */
    }
  }
  mh__free(buf);
  return rc;
}

int mh__mpi_trace_gather(void) {
  if (mh__mpi.rank != 0) return gather_send();
  int rc = 0;
  for (int r = 1; r < mh__mpi.size; r++) {
    int e = gather_recv(r);
    if (!rc) rc = e;
  }
  return rc;
}

void mh__mpi_trace_end(int dead_rank, int status) {
  if (!mh__mpi_trace_tracing()) return;
  for (int r = 1; r < mh__mpi.size; r++) {
    if (r == dead_rank) {
      mh__trace_rank_mark(MH__TR_DEATH, r, (int)mh__mpi.pids[r], status);
    } else if (same_host(r) && kill(mh__mpi.pids[r], 0) != 0 && errno == ESRCH) {
      /* Gone, its exit status unknown here (its parent is the launcher). */
      mh__trace_rank_mark(MH__TR_DEATH, r, (int)mh__mpi.pids[r], 0);
    }
  }
  mh_trace_stop();
}
