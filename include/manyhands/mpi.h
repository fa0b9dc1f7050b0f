/* SPDX-License-Identifier: MIT */
/* manyhands/mpi.h - the pi job and a map over MPI ranks (built when CMake
 * finds MPI; link manyhands_mpi).  Installed only in such builds.
 *
 * manyhands does not bring a network layer: it runs on the MPI you launch it
 * with (`mpirun`, `mpiexec`, Slurm's `srun`).  Every rank runs the same
 * program (SPMD).  Call mh_mpi_init() first thing in main, mh_mpi_finalize()
 * before returning.  Functions marked "collective" must be called by every
 * rank, in the same order.
 *
 * Failure: a sentinel process beside every rank (forked by mh_mpi_init,
 * `mh-sentinel` in ps) turns the rank's death into our own message on its
 * stderr naming it ("manyhands: MPI rank 1 (pid 123 on node7) died ..."),
 * from whatever node it ran on; a rank that stops answering (no heartbeat
 * for MH_MPI_TIMEOUT seconds, default 30, in pi and in a map) is named by
 * rank 0 ("rank 1 ... stopped responding") followed by MPI_Abort; with
 * MH_MPI_TASK_TIMEOUT=seconds set, a map's task running longer ends the job
 * the same way ("task 'name' on MPI rank 1 ... has not returned").  No rank
 * waits forever on a stopped peer during a run or a map, and mpirun exits
 * non-zero.  Nothing is written to any file system.
 */
#ifndef MANYHANDS_MPI_H
#define MANYHANDS_MPI_H

/** @defgroup mh_mpi mpi.h: the pi job and a map over MPI ranks
 * @brief The pi job and a map over MPI ranks (link manyhands_mpi; installed by
 * builds that found MPI).
 *
 * Not part of <manyhands.h>: include <manyhands/mpi.h>.  The overview of
 * the module (what maps to which Python name, and how it behaves) opens
 * that header.
 * @{
 */


#include "common.h"
#include "executor.h"
#include "pi.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Initialise MPI (MPI_Init_thread, unless the program did it already) and
 * manyhands' own communicator, learn where every rank runs, and start the
 * watchdog.  Collective.  argc/argv may be NULL.
 * @param argc main()'s argc, passed on to MPI_Init
 * @param argv main()'s argv, passed on to MPI_Init
 * @return 0 on success, or one of these errors: MH_EMPI (MPI failed to start or lacks MPI_THREAD_SERIALIZED),
 * MH_EBUSY (already initialised), MH_ENOMEM, MH_EAGAIN (no watchdog
 * thread). */
MH_EXTERN int mh_mpi_init(int *argc, char ***argv);

/** Stop the watchdog, free manyhands' communicator and finalise MPI if
 * mh_mpi_init started it.  Collective.  On rank 0 it first releases ranks
 * waiting in mh_mpi_serve().
 * @return 0 on success, or one of these errors: MH_EINVAL (not initialised). */
MH_EXTERN int mh_mpi_finalize(void);

/** This rank (0 .. size-1), or MH_EINVAL before mh_mpi_init.
 * @return what the description above says */
MH_EXTERN int mh_mpi_rank(void);
/** Number of ranks, or MH_EINVAL before mh_mpi_init.
 * @return what the description above says */
MH_EXTERN int mh_mpi_size(void);

/* ---- pi over ranks x threads ------------------------------------------- */

/** Per-run figures of mh_mpi_pi_run beyond mh_pi_result_t. */
typedef struct mh_mpi_pi_stats_s {
  int ranks;                /**< ranks that took part (threads > 0) */
  int threads;              /**< threads of this rank */
  uint64_t blocks;          /**< blocks counted by this rank */
  /** On rank 0: blocks counted by each rank, if the caller set this to an
   * array of mh_mpi_size() entries; left alone when NULL. */
  uint64_t *rank_blocks;
} mh_mpi_pi_stats_t;

/** Estimate pi over every rank, each running `threads` threads (1..4096)
 * over the blocks it is handed; a rank other than 0 passing threads = 0
 * sits the run out (it still makes the collective call), so a program can
 * measure 1..R ranks within one job of R, as `manyhands pi --sweep` does.  Collective; rank 0's `opts` decide n, seed
 * and kernel, and rank 0 hands blocks out on demand in shrinking ranges, so a
 * slow rank takes fewer.  A block is defined by (seed, block index) only, so
 * `inside` is identical to mh_pi_run's for the same n and seed, for any ranks
 * and threads.  Every rank gets rank 0's whole result in `res` (workers = the
 * total thread count, backend MH_BACKEND_MPI) and rank 0's return code, so
 * all ranks take the same branches afterwards.  `stats` may be NULL.
 * @param opts the run's options (N, seed, ...); NULL for the defaults
 * @param threads worker threads per rank; 0: one per online CPU
 * @param res receives the result (on every rank)
 * @param stats NULL, or receives per-rank figures
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL opts/res, threads out of range or 0 on rank 0,
 * n == 0 or > 2^63-1, not initialised), MH_ENOTSUP (kernel not supported on a rank),
 * MH_ECANCELED (rank 0's opts->cancel was set; `res` holds the partial
 * result), MH_ENOMEM, MH_EAGAIN, MH_EMPI. */
MH_EXTERN int mh_mpi_pi_run(const mh_pi_options_t *opts, int threads,
                            mh_pi_result_t *res, mh_mpi_pi_stats_t *stats);

/* ---- tasks by name, and a map over ranks -------------------------------- */

/** Register `fn` under `name` (1..63 characters) in this rank.  Pointers do
 * not cross machines, so every rank registers the same names, before
 * mh_mpi_serve / mh_mpi_map.  Registering a name again replaces its function.
 * @param name the name the task is known by on every rank
 * @param fn the task
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL, empty or too long name), MH_ENOMEM. */
MH_EXTERN int mh_task_register(const char *name, mh_task_fn fn);

/** The function registered as `name`, or NULL.
 * @param name a registered name
 * @return what the description above says */
MH_EXTERN mh_task_fn mh_task_lookup(const char *name);

/** The name `fn` was registered under, or NULL.
 * @param fn a registered task
 * @return what the description above says */
MH_EXTERN const char *mh_task_name(mh_task_fn fn);

/** On ranks other than 0: run the chunks rank 0 sends through mh_mpi_map
 * until rank 0 calls mh_mpi_serve_stop() or mh_mpi_finalize().
 * @return at
 * once on rank 0.  Tasks run with ctx NULL (a context is a pointer and
 * does not cross machines).  Errors: MH_EINVAL (not initialised), MH_EMPI. */
MH_EXTERN int mh_mpi_serve(void);

/** On rank 0: release the ranks in mh_mpi_serve().  Harmless twice.
 *
 * @return 0 on success, or one of these errors: MH_EINVAL (not initialised or not rank 0), MH_EMPI. */
MH_EXTERN int mh_mpi_serve_stop(void);

/* The executor on MPI ranks.  On rank 0, mh_executor_new with
 * opts.backend = MH_BACKEND_MPI gives an executor whose futures run on the
 * ranks waiting in mh_mpi_serve() and on one thread of rank 0, so
 * mh_executor_submit / mh_executor_map / mh_executor_imap work unchanged for
 * tasks registered with mh_task_register (a task that is not registered runs
 * on rank 0's thread and fails with MH_ENOSYS on the other ranks).  Only the
 * executor's dispatcher thread calls MPI: while an MPI executor lives, make
 * no other manyhands MPI call on rank 0.  mh_executor_new with
 * MH_BACKEND_MPI returns MH_EPERM on ranks other than 0 (they serve),
 * MH_ENOTSUP before mh_mpi_init (which registers the backend with the
 * executor) and in a program built without MPI, and MH_EINVAL after
 * mh_mpi_finalize or mh_mpi_serve_stop. */

/** On rank 0: mh_executor_map over the ranks without an executor.  Apply the task registered as
 * `name` to n items of plain data (item i reads in + i*in_size, writes
 * out + i*out_size); chunks of `chunksize` items (0: picked from n and the
 * rank count) go to the ranks in mh_mpi_serve() and to a thread of rank 0
 * (which runs them with `ctx`).  `status`, if not NULL, gets each item's
 * code.
 * @return 0, or the code of the lowest-indexed failing item (every
 * item still runs).  A busy rank silent for MH_MPI_TIMEOUT seconds, or a
 * chunk running over MH_MPI_TASK_TIMEOUT (when set), ends the job with a
 * message naming the rank (MPI_Abort): it does not return.  Errors also: MH_EINVAL (NULL, unknown name, not rank 0,
 * a chunk over 1 GiB), MH_ENOMEM, MH_EMPI.
 * @param name the registered name of the task
 * @param ctx passed unchanged to every call of the task
 * @param in the input buffer: item i starts at in + i * in_size
 * @param in_size bytes of one input item (may be 0)
 * @param out the output buffer: item i starts at out + i * out_size
 * @param out_size bytes of one output item (may be 0)
 * @param n the number of items
 * @param chunksize items per chunk; 0 picks one from n and the worker count
 * @param status NULL, or where each item's code is written */
MH_EXTERN int mh_mpi_map(const char *name, void *ctx, const void *in,
                         size_t in_size, void *out, size_t out_size,
                         size_t n, size_t chunksize, int *status);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_MPI_H */
