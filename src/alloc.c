/* SPDX-License-Identifier: MIT */
/* alloc.c - the replaceable allocator and small process-wide facts.
 *
 * The four hooks are plain pointers written only by mh_replace_allocator(),
 * which the caller must use before any other manyhands call (as libuv's
 * uv_replace_allocator); they are read without locking afterwards.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static mh_malloc_fn mh__malloc_fn = malloc;
static mh_realloc_fn mh__realloc_fn = realloc;
static mh_calloc_fn mh__calloc_fn = calloc;
static mh_free_fn mh__free_fn = free;

int mh_replace_allocator(mh_malloc_fn malloc_fn, mh_realloc_fn realloc_fn,
                         mh_calloc_fn calloc_fn, mh_free_fn free_fn) {
  int nulls = !malloc_fn + !realloc_fn + !calloc_fn + !free_fn;
  if (nulls == 4) {
    malloc_fn = malloc;
    realloc_fn = realloc;
    calloc_fn = calloc;
    free_fn = free;
  } else if (nulls != 0) {
    return MH_EINVAL;
  }
  mh__malloc_fn = malloc_fn;
  mh__realloc_fn = realloc_fn;
  mh__calloc_fn = calloc_fn;
  mh__free_fn = free_fn;
  return 0;
}

bool mh__allocator_is_default(void) { return mh__malloc_fn == malloc; }

void *mh__malloc(size_t size) { return size ? mh__malloc_fn(size) : NULL; }

void *mh__calloc(size_t count, size_t size) {
  return (count && size) ? mh__calloc_fn(count, size) : NULL;
}

void *mh__realloc(void *ptr, size_t size) {
  if (size == 0) {
    mh__free(ptr);
    return NULL;
  }
  return mh__realloc_fn(ptr, size);
}

void mh__free(void *ptr) {
  if (ptr) mh__free_fn(ptr);
}

static _Atomic int pid_cache;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static void pid_forked(void) { atomic_store_explicit(&pid_cache, 0, memory_order_relaxed); }
static void pid_register(void) { pthread_atfork(NULL, NULL, pid_forked); }

int mh__pid(void) {
  int p = atomic_load_explicit(&pid_cache, memory_order_relaxed);
  if (!p) {
    /* The handler first: a fork between the two leaves 0 in the child. */
    pthread_once(&pid_once, pid_register);
    p = (int)getpid();
    atomic_store_explicit(&pid_cache, p, memory_order_relaxed);
  }
  return p;
}

int mh_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 4096 ? 4096 : (int)n);
}

void mh__prefault(void *p, size_t len) {
#ifdef MADV_POPULATE_WRITE
  /* Below a few pages the faults cost less than deciding. */
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  if (!p || len < 16 * page) return;
  uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t hi = ((uintptr_t)p + len) & ~(page - 1);
  /* Failure (an old kernel, a read-only mapping) only loses the saving. */
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)len;
#endif
}
