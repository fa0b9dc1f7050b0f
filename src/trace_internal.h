/* SPDX-License-Identifier: MIT */
/* trace_internal.h - the hooks the executors call to record a trace.
 * Never installed.  trace.c is ground level: it sees no executor header;
 * the backends call these, one or two lines per hook.
 *
 * Off, a hook costs one relaxed load of mh__trace_on and a predictable
 * branch: mh__trace_begin() returns 0 and mh__trace_end() does nothing for
 * a zero start time.
 */
#ifndef MH_TRACE_INTERNAL_H
#define MH_TRACE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "manyhands/trace.h"

/* A: 1 while this process records (a forked child inherits its copy). */
extern _Atomic int mh__trace_on;

/* What a record is. */
enum {
  MH__TR_TASK = 1, /* slice: a task (or a chunk of the generic map) */
  MH__TR_CHUNK,    /* slice: a chunk of the process backend's map */
  MH__TR_JOB,      /* slice: items of a job run by a process worker */
  MH__TR_DEATH,    /* mark: a worker died (status: exit code or -signal) */
  MH__TR_RETRY,    /* mark: an item is run again after its worker died */
  MH__TR_CANCEL,   /* mark: queued work was cancelled (items: how many) */
  MH__TR_SPAWN,    /* slice: a spawn record (mh_spawn) a worker took off a
                      deque: a thief's steal, or its own between tasks; one
                      joined where it was spawned runs inside its parent's
                      slice and is not recorded (no cost on the fast path) */
  MH__TR_BLOCK     /* slice: one block of the pi job (index: its number) */
};

/* Whether records of kind k are slices (a start and an end), not marks. */
static inline int mh__trace_is_slice(int k) {
  return k == MH__TR_TASK || k == MH__TR_CHUNK || k == MH__TR_JOB || k == MH__TR_SPAWN ||
         k == MH__TR_BLOCK;
}

/* Who the calling thread is (its track's name). */
enum { MH__TR_ROLE_NONE = 0, MH__TR_ROLE_THREAD, MH__TR_ROLE_PROCESS, MH__TR_ROLE_RANK };

/* Index meaning "number the slices in the order they end". */
#define MH__TR_SEQ UINT64_MAX

uint64_t mh__trace_clock(void);
void mh__trace_slice(uint64_t t0, int kind, uint64_t index, uint64_t items, int status);
void mh__trace_mark_(int kind, int pid, int number, uint64_t index, int status);

/* Say, once at a worker's start, who this thread is: worker `number` of a
 * role (-1: numbered by the trace in order of first event).  Costs a store
 * to thread-local memory, tracing or not, so a trace started later still
 * names the track. */
void mh__trace_role(int role, int number);

/* ---- MPI ranks (src/mpi/ calls these; trace.c knows nothing of MPI) ----
 * Records are opaque here: MH__TRACE_REC_BYTES each. */
#define MH__TRACE_REC_BYTES 64

/* Say that this process is MPI rank `rank` of `size`; hosts holds the host
 * name of every rank, `stride` bytes apart.  A rank > 0 then records
 * without a file of its own (it lets go of one opened already) and hands
 * its records to rank 0, whose file names each rank's tracks. */
void mh__trace_mpi(int rank, int size, const char *hosts, size_t stride);

/* A rank > 0: a copy (mh__malloc'd, the caller frees it) of the records of
 * the trace this process records that were not exported yet, *n of them;
 * NULL with *n = 0 when none. */
void *mh__trace_export(size_t *n);

/* Rank 0: add n records exported by another rank, whose clock reads
 * `offset` ns more than ours. */
void mh__trace_import(const void *recs, size_t n, int64_t offset);

/* Rank 0: an instant mark (MH__TR_DEATH) on the track of rank `rank`
 * (process pid), status its exit code, -signal, or an error code. */
void mh__trace_rank_mark(int kind, int rank, int pid, int status);

#ifdef MH_NO_TRACE_HOOKS
/* Built with MH_TRACE_HOOKS=OFF: every hook is nothing at all, the
 * baseline bench/trace.sh measures the hooks against. */
#define mh__trace_begin() ((uint64_t)0)
#define mh__trace_end(t0, kind, index, items, status) ((void)(t0))
#define mh__trace_mark(kind, pid, number, index, status) ((void)0)
#define mh__trace_role(role, number) ((void)0)
#else
/* Start time of a slice, or 0 when not tracing. */
static inline uint64_t mh__trace_begin(void) {
  if (__builtin_expect(atomic_load_explicit(&mh__trace_on, memory_order_relaxed), 0))
    return mh__trace_clock();
  return 0;
}

/* End the slice begun at t0 (nothing when t0 is 0).  A macro, so that the
 * arguments (a call to fetch a task's item count, say) are evaluated only
 * when tracing. */
#define mh__trace_end(t0, kind, index, items, status)               \
  do {                                                              \
    uint64_t mh__tr_t0_ = (t0);                                     \
    if (__builtin_expect(mh__tr_t0_ != 0, 0))                       \
      mh__trace_slice(mh__tr_t0_, (kind), (index), (items), (status)); \
  } while (0)

/* An instant mark on the track of worker process `pid` (0: the calling
 * thread's own track), `number` its worker number. */
static inline void mh__trace_mark(int kind, int pid, int number, uint64_t index,
                                  int status) {
  if (__builtin_expect(atomic_load_explicit(&mh__trace_on, memory_order_relaxed), 0))
    mh__trace_mark_(kind, pid, number, index, status);
}

#endif /* MH_NO_TRACE_HOOKS */

#endif /* MH_TRACE_INTERNAL_H */
