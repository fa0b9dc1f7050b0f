/* SPDX-License-Identifier: MIT */
/* mpi_internal.h - state shared by the MPI modules (src/mpi/).  Never
 * installed.
 *
 * mh__mpi is written by mh_mpi_init / mh_mpi_finalize on the main thread
 * before the watchdog starts and after it stops; everything else only reads
 * it.  MPI is initialised with MPI_THREAD_SERIALIZED and manyhands makes its
 * MPI calls from one thread at a time (the caller's): worker threads never
 * call MPI.
 */
#ifndef MH_MPI_INTERNAL_H
#define MH_MPI_INTERNAL_H

#include <mpi.h>
#include <sys/types.h>

#include "../internal.h"
#include "manyhands/mpi.h"

#define MH__MPI_HOST_MAX 64

/* Tags on manyhands' private communicator. */
enum {
  MH__TAG_PI_UP = 10,   /* worker rank -> rank 0: request / heartbeat / result */
  MH__TAG_PI_DOWN = 11, /* rank 0 -> worker rank: a range of blocks */
  MH__TAG_MAP_CMD = 20, /* rank 0 -> server: a chunk header, or stop */
  MH__TAG_MAP_IN = 21,  /* rank 0 -> server: the chunk's input bytes */
  MH__TAG_MAP_OUT = 22, /* server -> rank 0: the chunk's output + statuses */
  MH__TAG_MAP_HDR = 23  /* server -> rank 0: which chunk finished */
};

typedef struct mh__mpi_state {
  int inited;
  int we_init_mpi;       /* 1 if mh_mpi_init called MPI_Init_thread */
  MPI_Comm comm;         /* a duplicate of MPI_COMM_WORLD */
  int rank, size;
  pid_t *pids;           /* pid of every rank */
  char *hosts;           /* size * MH__MPI_HOST_MAX host names */
  double timeout;        /* seconds without a heartbeat before a rank is
                            declared stuck (MH_MPI_TIMEOUT) */
  double task_timeout;   /* seconds a map's chunk may run, 0 = no limit
                            (MH_MPI_TASK_TIMEOUT) */
  int serve_stopped;     /* rank 0: mh_mpi_serve_stop was sent */
} mh__mpi_state_t;

extern mh__mpi_state_t mh__mpi;

/* Host name of rank r. */
const char *mh__mpi_host(int r);

/* Quiet this rank's sentinel and watchdog (our message explains the end),
 * print "manyhands: <msg>" on stderr, and MPI_Abort.  Never returns. */
void mh__mpi_fatal(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* Sleep briefly while polling MPI (Open MPI's blocking calls spin on a core
 * that the compute threads need). */
void mh__mpi_nap(long microseconds);

/* mh_mpi_init's work (mpi_core.c): MPI, the rank table, the sentinel, the
 * watchdog.  0, MH_EBUSY (already initialised), MH_ENOMEM, MH_EAGAIN or
 * MH_EMPI. */
int mh__mpi_core_init(int *argc, char ***argv);

/* The second half of mh_mpi_finalize (mpi.c, after mh__mpi_map_stop): wait
 * for every rank, stop the watchdog and the sentinel, free the
 * communicator, finalize MPI if we initialised it (mpi_core.c). */
void mh__mpi_core_finalize(void);

/* The first half of mh_mpi_finalize (mpi_map.c): rank 0 sends the map
 * protocol's stop unless mh_mpi_serve_stop did; every other rank takes it
 * unless mh_mpi_serve did. */
void mh__mpi_map_stop(void);

/* The trace of an MPI job (mpi_trace.c).  Whether rank 0 records (0 on
 * the other ranks). */
int mh__mpi_trace_tracing(void);
/* Collective, called on every rank only when rank 0 records (it says so
 * first): rank 0 takes every rank's new records into its trace. */
int mh__mpi_trace_gather(void);
/* Rank 0, when the job ends early: mark the death of `dead_rank` (-1: none
 * known; ranks of this host that are gone are found and marked too) and
 * write the trace now.  Nothing on other ranks or when not recording. */
void mh__mpi_trace_end(int dead_rank, int status);

/* Map an MPI error code to MH_EMPI (0 stays 0). */
int mh__mpi_err(int mpi_rc);

#endif /* MH_MPI_INTERNAL_H */
