/* SPDX-License-Identifier: MIT */
/* executor_ctx.c - the executor's context area and the check that keeps a
 * process worker from reading a stale copy of the parent's memory.
 *
 * A process worker is forked from the pool's fork server, which was forked
 * when the pool was made: private memory it sees is a copy frozen at that
 * moment.  Memory the two share for real is a MAP_SHARED mapping that
 * already existed then (mh_shared_*, raw mmap, a shared memory segment...),
 * and this file's own context area, made before the backend starts.  So
 * mh__exctx_new reads /proc/self/maps once, before the fork, and keeps the
 * shared ranges (and the read-only private ones, whose bytes cannot have
 * changed); a ctx is accepted only inside one of them.  Reading the maps
 * file once costs tens of microseconds at pool creation; each check is a
 * binary search.
 *
 * Not detected: a shared block freed after the pool was made and a new one
 * mapped at the same address (the workers still see the old one).  The
 * header says so.
 *
 * Invariants: `ranges` is sorted by start, disjoint, set before the record is
 * handed to executor.c and read-only after.  `area` is mapped for the
 * record's lifetime with `cap` bytes reserved (MAP_NORESERVE: untouched
 * pages cost nothing).
 *
 * Who may touch what: I = set by mh__exctx_new, read-only after;
 * U = the user's thread calling mh_executor_set_context (the caller
 * serialises those calls and keeps them away from running tasks, as the
 * header says).  No lock.
 */
#include "executor_ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef MH_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "internal.h"
#include "manyhands/error.h"

/* Bytes reserved for a context: address space only until written. */
#define CTX_CAP ((size_t)64 << 20)

typedef struct {
  uintptr_t lo, hi;
} range_t;

struct mh__exctx {
  char *area;      /* I: the context area, shared with the workers */
  size_t cap;      /* I */
  size_t size;     /* U: bytes of the current context */
  int check;       /* I: ctx pointers are checked (process backend) */
  char *heap;      /* I: executor_bytes.c's result heap, or NULL */
  size_t heap_len; /* I */
  range_t *ranges; /* I: memory a later-forked worker really shares */
  size_t nranges;  /* I */
};

/* Append every mapping of /proc/self/maps that is shared, or private and
 * not writable, to cx->ranges.  Lines look like
 * "7f..-7f.. rw-s 00000000 00:01 1234   /dev/zero (deleted)". */
static int read_maps(mh__exctx_t *cx) {
  FILE *fp = fopen("/proc/self/maps", "re");
  if (!fp) return MH_ENOSYS;
  size_t cap = 0;
  char line[512];
  int rc = 0;
  while (fgets(line, sizeof line, fp)) {
    size_t len = strlen(line);
    int whole = len && line[len - 1] == '\n';
    unsigned long lo, hi;
    char perm[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perm) == 3 && perm[0] == 'r' &&
        (perm[3] == 's' || perm[1] != 'w')) {
      if (cx->nranges == cap) {
        size_t nc = cap ? 2 * cap : 64;
        range_t *nr = mh__realloc(cx->ranges, nc * sizeof *nr);
        if (!nr) {
          rc = MH_ENOMEM;
          break;
        }
        cx->ranges = nr;
        cap = nc;
      }
      cx->ranges[cx->nranges].lo = lo;
      cx->ranges[cx->nranges].hi = hi;
      cx->nranges++;
    }
    /* A path longer than the buffer: skip the rest of that line. */
    while (!whole && fgets(line, sizeof line, fp)) {
      len = strlen(line);
      whole = len && line[len - 1] == '\n';
    }
  }
  fclose(fp);
  return rc; /* the kernel lists mappings in address order */
}

/* The result heap's first try: 16 GiB of address space, or 256 MiB under
 * valgrind, whose memcheck would spend minutes marking 16 GiB for every
 * executor (a result larger than the heap fails the same way everywhere:
 * see executor_bytes.c). */
static size_t heap_reserve(void) {
#ifdef MH_HAVE_VALGRIND_H
  if (RUNNING_ON_VALGRIND) return (size_t)256 << 20;
#endif
  return (size_t)16 << 30;
}

int mh__exctx_new(mh__exctx_t **out, int check) {
  mh__exctx_t *cx = mh__calloc(1, sizeof *cx);
  if (!cx) return MH_ENOMEM;
  void *p = mmap(NULL, CTX_CAP, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    mh__free(cx);
    return MH_ENOMEM;
  }
  cx->area = p;
  cx->cap = CTX_CAP;
  cx->check = check;
  /* The result heap: address space only (pages are given back as results
   * are freed).  As large as the system lets us. */
  for (size_t len = heap_reserve(); len >= ((size_t)64 << 20);
       len /= 4) {
    p = mmap(NULL, len, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      cx->heap = p;
      cx->heap_len = len;
      mh__bytes_heap_init(p, len);
      break;
    }
  }
  if (check) {
    int rc = read_maps(cx);
    if (rc < 0) {
      mh__exctx_free(cx);
      return rc;
    }
  }
  *out = cx;
  return 0;
}

void mh__exctx_free(mh__exctx_t *cx) {
  if (!cx) return;
  munmap(cx->area, cx->cap);
  /* The heap stays mapped while the caller holds results that lie in it. */
  if (cx->heap) mh__bytes_heap_unref(cx->heap, cx->heap_len);
  mh__free(cx->ranges);
  mh__free(cx);
}

int mh__exctx_check(const mh__exctx_t *cx, const void *ctx) {
  if (!ctx || !cx->check) return 0;
  uintptr_t p = (uintptr_t)ctx;
  size_t lo = 0, hi = cx->nranges;
  while (lo < hi) { /* first range ending above p */
    size_t mid = lo + (hi - lo) / 2;
    if (cx->ranges[mid].hi <= p)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < cx->nranges && cx->ranges[lo].lo <= p) return 0;
  return MH_EINVAL;
}

int mh__exctx_set(mh__exctx_t *cx, const void *data, size_t size) {
  if ((!data && size) || size > cx->cap) return MH_EINVAL;
  if (size) memmove(cx->area, data, size);
  /* Give back pages a larger earlier context touched, so that memory
   * follows the current size. */
  long ps = sysconf(_SC_PAGESIZE);
  size_t page = ps > 0 ? (size_t)ps : 4096, keep = (size + page - 1) & ~(page - 1);
  if (cx->size > keep) madvise(cx->area + keep, cx->size - keep, MADV_REMOVE);
  cx->size = size;
  return 0;
}

void *mh__exctx_ptr(const mh__exctx_t *cx) { return cx->area; }
size_t mh__exctx_size(const mh__exctx_t *cx) { return cx->size; }

void *mh__exctx_heap(const mh__exctx_t *cx, size_t *len) {
  *len = cx->heap_len;
  return cx->heap;
}
