/* SPDX-License-Identifier: MIT */
/* future.h - the future record, its state bits, and what future.c and
 * future_alloc.c offer the rest of src/executor/.  Never installed.
 *
 * A future is small (104 bytes) so that a million pending ones fit in little
 * memory: it has no mutex and no condition variable.  Its life is one 32-bit
 * state word (the low half of a 64-bit atomic whose high half is the
 * reference count):
 *
 *     PENDING -> RUNNING -> FINISHED        (a backend ran it)
 *     PENDING -> CANCELLED                  (mh_future_cancel, or a
 *                                            cancelling shutdown)
 *     RUNNING -> PENDING                    (a backend re-queues it)
 *
 * plus flag bits: F_WAITERS (a thread sleeps on the word with a futex, so the
 * thread that completes it must wake it), F_CBS (callbacks may be attached,
 * so the completing thread must look at the list), F_DIED (the worker died),
 * F_SLAB (the memory comes from future_alloc.c's slabs).  Every transition is
 * one compare-and-swap that keeps the flags and the count.
 *
 * Invariants:
 *   - FINISHED and CANCELLED are final: no CAS leaves them.
 *   - `code` and `died_pid` are written only by the one thread whose CAS moves
 *     the future to FINISHED, before that (release) CAS; nobody writes them
 *     after.  A cancelled future's result comes from the state, never from
 *     `code`.
 *   - `cbs` is non-empty only while F_CBS is set and the future is not done,
 *     or between the completing CAS and the detach in completed().
 *   - The memory is returned to future_alloc.c when the count drops to 0.
 *
 * Who may touch what (the tags on the fields below, as in Linux's
 * kernel/workqueue.c):
 *   I: set when the future is made (mh__future_make), read-only after.
 *   A: atomic; any thread, with the orders future.c gives.
 *   F: written once by the finishing thread before its release-CAS to
 *      FINISHED; read by anyone after an acquire load that shows FINISHED.
 *   S: the future's stripe mutex (stripe_of in future.c).
 *   B: the backend that holds the future (from submit until it finishes or
 *      cancels it); while the future is free, future_alloc.c's free lists.
 *
 * Lock order: see future.c (stripe -> nothing) and future_alloc.c (fa_lock is
 * a leaf).  This header calls nothing; future.c calls the allocator
 * (future_alloc.h, future_alloc.c), the shell (executor.c) calls future.c
 * and future_alloc.h's inline mh__future_make (a new future), never the
 * other way round.
 */
#ifndef MH_EXECUTOR_FUTURE_H
#define MH_EXECUTOR_FUTURE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "executor_internal.h"
#include "internal.h"

/* ---- the state word ---------------------------------------------------- */

enum {
  S_PENDING = 0,
  S_RUNNING = 1,
  S_FINISHED = 2,
  S_CANCELLED = 3,
  S_MASK = 3,
  F_WAITERS = 4,
  F_CBS = 8,
  F_DIED = 16,
  F_SLAB = 32 /* the future's memory comes from the slab cache */
};

#define IS_DONE(s) (((s) & S_MASK) >= S_FINISHED)

/* The state word (low half) and the reference count (high half) share one
 * 64-bit atomic, so that a worker can finish a future and drop its own
 * reference in one step (mh__future_finish_release).  Waiters sleep with a
 * futex on the low half alone. */
#define REF_ONE ((uint64_t)1 << 32)
#define REFS(w) ((uint32_t)((w) >> 32))

/* ---- the records ------------------------------------------------------- */

typedef struct mh__cb mh__cb_t;
typedef struct mh__cq mh__cq_t; /* a completion queue; private to future.c */

/* A callback node: either a user callback (heap, freed after it ran) or a
 * completion-queue node (part of a cq's array). */
struct mh__cb {
  mh__cb_t *next; /* S: while on a future's list */
  mh__cq_t *cq;   /* I: NULL for a user callback */
  union {
    struct {
      mh_future_cb fn;
      void *arg;
    } user;       /* I */
    size_t index; /* I: the node's index in its cq */
  } u;
};

struct mh_future_s {
  _Atomic uint64_t word; /* A: state, flags and reference count */
  /* F.  With F_DIED it holds the dead worker's exit status instead: the
   * result is then MH_EWORKERDIED whatever it says.  Sharing the field keeps
   * a future at 104 bytes, which matters when a million of them are pending
   * (each is fresh memory the kernel must clear). */
  int code;
  int died_pid;      /* F: valid when F_DIED */
  mh_future_t *link; /* B: the backend's queue link (mh__future_link) */
  mh__cb_t *cbs;     /* S: callbacks and cq nodes, newest first */
  mh__task_t task;   /* I */
};
/* The size the comments above give; x86-64 and other LP64 targets. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct mh_future_s) == 104,
               "a future is 104 bytes on LP64");

/* ---- future.c: futures and completion queues for the shell ------------- */

/* A new future: mh__future_make in future_alloc.h (inline on the submit
 * path). */

/* Wait for f until the deadline: 0 once done, or MH_ETIMEDOUT. */
int mh__future_wait_dl(mh_future_t *f, const mh__deadline_t *dl);

/* A completion queue of `cap` nodes: node i, armed on a future, pushes i on
 * the queue's ready ring when that future completes.  One owner thread arms,
 * disarms and pops; completing threads push.  0 or MH_ENOMEM. */
int mh__cq_new(mh__cq_t **out, size_t cap);
/* Drop the owner's reference (nodes still armed keep the queue alive). */
void mh__cq_unref(mh__cq_t *cq);
/* Arm node `index` on f (pushed at once if f is already done). */
void mh__cq_arm(mh__cq_t *cq, size_t index, mh_future_t *f);
/* Push `index` as if its node had fired (a slot with no future). */
void mh__cq_push(mh__cq_t *cq, size_t index);
/* Pop a ready index, waiting until the deadline: 0 or MH_ETIMEDOUT.  The
 * popped node is no longer armed (it may be armed again). */
int mh__cq_pop(mh__cq_t *cq, const mh__deadline_t *dl, size_t *index);
/* Take node `index` off its future's list if it is still on it. */
void mh__cq_disarm(mh__cq_t *cq, size_t index);

#endif /* MH_EXECUTOR_FUTURE_H */
