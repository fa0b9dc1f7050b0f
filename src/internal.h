/* SPDX-License-Identifier: MIT */
/* internal.h - helpers shared by the library's modules.  Never installed.
 *
 * Internal names carry the mh__ prefix.  Everything here is either stateless
 * or guarded as its comment says.
 */
#ifndef MH_INTERNAL_H
#define MH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Only the ground of the public API: the bottom layer sees nothing above it
 * (each source includes the public headers of what it implements or uses). */
#include "manyhands/common.h"
#include "manyhands/error.h"
#include "sanitizer.h"

/* ---- allocation (alloc.c): every library allocation goes through these, so
 * that mh_replace_allocator() can count them or make them fail. ---------- */
void *mh__malloc(size_t size);
void *mh__calloc(size_t count, size_t size);
void *mh__realloc(void *ptr, size_t size);
void mh__free(void *ptr);
/* True while the C library's allocator is in use (no mh_replace_allocator
 * hook): caches that keep memory outside the hook may be used only then. */
bool mh__allocator_is_default(void);

/* Fault in, in one system call, the whole pages inside [p, p + len) that a
 * caller is about to write: a page fault is dear (on some virtual machines
 * tens of microseconds), the kernel's own loop far less.  Contents are left
 * as they are; a no-op where the kernel cannot do it or the range is small. */
void mh__prefault(void *p, size_t len);

/* This process's pid, cached (getpid is a system call); right in a child
 * made by fork() too (an atfork handler forgets it there). */
int mh__pid(void);

/* ---- time (time.c) --------------------------------------------------- */

/* Seconds on the monotonic clock. */
double mh__now(void);

/* An absolute monotonic deadline made once from a relative timeout, so that
 * spurious wake-ups retry against the same point in time. */
typedef enum mh__deadline_kind {
  MH__DL_NOW = 0,     /* never block: a timeout of 0 */
  MH__DL_AT = 1,      /* block until `at` */
  MH__DL_FOREVER = 2  /* block without a time limit (MH_FOREVER) */
} mh__deadline_kind_t;

typedef struct mh__deadline {
  mh__deadline_kind_t kind;
  struct timespec at; /* CLOCK_MONOTONIC; meaningful for MH__DL_AT only */
} mh__deadline_t;

/* MH_EINVAL for NaN and negative values other than MH_FOREVER, else 0. */
int mh__deadline_init(mh__deadline_t *dl, double timeout);

/* Initialise a condition variable on the monotonic clock (optionally
 * process-shared).  Returns 0 or a negative MH_E* code. */
int mh__cond_init(pthread_cond_t *cond, bool pshared);

/* Wait on `cond` until signalled or the deadline passes: 0 or MH_ETIMEDOUT
 * (a deadline of kind 0 gives MH_ETIMEDOUT at once).  Spurious wake-ups are
 * returned as 0; callers re-check their predicate in a loop. */
int mh__cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                  const mh__deadline_t *dl);

/* Sleep for `seconds` on the monotonic clock, retrying on EINTR. */
void mh__sleep(double seconds);

/* ---- misc ------------------------------------------------------------- */

#define MH__CACHE_LINE 64
#define MH__UNUSED(x) ((void)(x))

#endif /* MH_INTERNAL_H */
