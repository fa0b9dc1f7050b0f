/* SPDX-License-Identifier: MIT */
/* manyhands/trace.h - record what ran where, as a Chrome trace-event file.
 *
 * Switched on by the environment (MH_TRACE=FILE.json, read when the library
 * is loaded, written when the program exits) or by mh_trace_start() /
 * mh_trace_stop().  The file is the JSON that Perfetto (ui.perfetto.dev) and
 * chrome://tracing open: one track per worker (a thread of the thread
 * backend, a process of the process backend, each named), one slice per
 * task or map chunk (args: index, items, status), one per spawn record
 * (mh_spawn) that a worker took off a deque, a thief's steal above all (one
 * joined where it was spawned runs inside its parent and is not recorded),
 * one per block of the pi job, and instant marks for a worker's death, a
 * retry and a cancellation.  Process workers write into
 * one buffer of shared memory made at start, so the events of every
 * process land in the one file.  In an MPI job (manyhands/mpi.h) every rank
 * records and rank 0 alone writes the file, with every rank's records
 * (gathered after each mh_mpi_pi_run and at mh_mpi_finalize); on the other
 * ranks mh_trace_start opens no file and mh_trace_stop writes none.
 *
 * Limits: a process pool made before tracing started has workers that were
 * forked without the buffer, so their tasks are not recorded (start first,
 * or use MH_TRACE).  The buffer holds MH_TRACE_EVENTS events (default
 * 1048576); beyond that events are counted as dropped (the file says how
 * many in "otherData").  Off, a worker pays one relaxed load and a branch
 * per task.  Python has no counterpart.
 */
#ifndef MANYHANDS_TRACE_H
#define MANYHANDS_TRACE_H

/** @defgroup mh_trace trace.h: what ran where (Chrome trace-event JSON)
 * @brief Tracing for every executor (Chrome trace-event JSON).
 *
 * Part of <manyhands.h>.  The overview of the module opens the header
 * <manyhands/trace.h>.
 * @{
 */

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Start recording; the trace goes to `path` at mh_trace_stop().
 * The file is created (truncated) now, so a path that cannot be written is
 * reported here, before any work.
 * @param path  where the JSON goes (a new or existing file name)
 * @return 0; MH_EINVAL for a NULL or empty path; MH_EBUSY when a trace is
 *         already recording; MH_ENOMEM when the buffer cannot be mapped; a
 *         negative errno code (e.g. MH_EACCES, MH_ENOENT) when the file cannot
 *         be opened. */
MH_EXTERN int mh_trace_start(const char *path);

/** Stop recording and write the file given to mh_trace_start().
 * Only the process that started the trace writes it (a forked child that
 * calls it gets MH_EINVAL).  Events that workers are still writing when this
 * is called are left out.
 * @return 0; MH_EINVAL when no trace is recording in this process; a
 *         negative errno code when writing the file failed. */
MH_EXTERN int mh_trace_stop(void);

/** Whether a trace is recording.
 * @return 1 while recording (between start and stop), else 0. */
MH_EXTERN int mh_trace_active(void);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* MANYHANDS_TRACE_H */
