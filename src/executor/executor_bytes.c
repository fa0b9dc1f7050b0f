/* SPDX-License-Identifier: MIT */
/* executor_bytes.c - results whose size the task decides when it runs
 * (issue 10 item 4): mh_task_output, submit / map / imap "_bytes".
 *
 * The task is the user's mh_task_fn, called with out = NULL and
 * out_size = 0 by a trampoline (bytes_tramp) that the ordinary submit / map
 * / imap run; inside it, mh_task_output(size) gives the result buffer.  The
 * trampoline's fixed-size `out` is a 64-byte descriptor (desc_t) saying
 * where the bytes are:
 *   - thread backend: a block from the library's allocator, handed to the
 *     caller as is (no copy);
 *   - process backend: up to 40 bytes inline in the descriptor; up to
 *     4 KiB packed into a 64 KiB block of the worker's (reference counted,
 *     given back when its last result was taken); else a page-aligned range
 *     of the executor's result heap, a MAP_SHARED
 *     reservation made before the workers were forked (executor_ctx.c), so
 *     it is at the same address in every process.  The parent copies the
 *     bytes into a block of its own and gives the pages back at once
 *     (MADV_REMOVE), so resident memory follows the results not yet taken,
 *     not the length of the map.
 * The heap is a bump allocator on one shared 64-bit counter (workers take
 * ranges with compare-and-swap; a range never straddles the end, the
 * counter's lap wraps it).  It relies on the results in flight being far
 * fewer than the heap (16 GiB of address space where the system allows):
 * a lap cannot catch up with a result nobody took yet while the window of
 * a map keeps at most a few chunks per worker in flight.
 *
 * A worker killed while it writes a result: its item fails with
 * MH_EWORKERDIED and its descriptor is never read; the pages it touched
 * stay until the executor is freed (at most one result per death).
 *
 * The user's (fn, ctx) pair reaches the worker through a record in the heap
 * header, published before the task is submitted and never changed after
 * (a table with linear probing, filled under rec_mu; workers only read).
 *
 * Who may touch what: rec_mu guards the records' insertion (parent);
 * `next` is SX (compare-and-swap by every worker); a descriptor is written
 * by the task's worker, read by the parent after the task completed; `cur`
 * is thread-local.  Lock order: rec_mu alone, never held while calling out.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "executor_ctx.h"
#include "executor_internal.h"
#include "internal.h"
#include "manyhands/error.h"


#define INL 40u
#define NREC 65536u
#define REC_OFF 4096u
#define DATA_OFF ((size_t)4 << 20)

enum { D_NONE = 0, D_INLINE = 1, D_HEAP = 2, D_BLOCK = 3, D_SUB = 4 };

/* Results of INL+1..SMALL bytes are packed into blocks of BLK bytes that a
 * worker takes from the heap (a page fault per result would cost more than
 * the result).  A block's first word counts references: one for the worker
 * while it still packs into it, one per result handed out and not yet
 * taken; whoever drops the last gives the block back. */
#define SMALL 4096u
#define BLK ((size_t)64 << 10)
#define BLK_HDR 64u

typedef struct desc {
  uint64_t size;  /* bytes of the result */
  uint64_t where; /* D_HEAP / D_BLOCK: the address */
  uint32_t kind;  /* D_* */
  uint32_t pad;
  unsigned char inl[INL];
} desc_t;
_Static_assert(sizeof(desc_t) == 64, "a descriptor is 64 bytes");
_Static_assert(sizeof(mh_bytes_slot_t) >= sizeof(desc_t), "slot too small");

typedef struct rec {
  mh_task_fn fn; /* NULL: free entry */
  void *ctx;
  char *heap;    /* the heap's first byte (the same in every process) */
  uint64_t cap;  /* bytes of its data part */
  int procs;     /* results go to the heap, not to the allocator */
} rec_t;

static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (size_t)ps : 4096;
}

/* The record of (fn, ctx) in ex's heap, inserted if new. */
static int rec_of(mh_executor_t *ex, mh_task_fn fn, void *ctx, rec_t **out) {
  size_t len;
  char *heap = mh__exctx_heap(mh__executor_ctx(ex), &len);
  if (!heap) return MH_ENOMEM;
  rec_t *tab = (rec_t *)(void *)(heap + REC_OFF);
  uintptr_t h = ((uintptr_t)fn * 31u) ^ (uintptr_t)ctx;
  h ^= h >> 17;
  int rc = MH_ENOMEM;
  pthread_mutex_lock(&rec_mu);
  for (size_t k = 0; k < NREC; k++) {
    rec_t *r = &tab[(h + k) & (NREC - 1)];
    if (r->fn == fn && r->ctx == ctx) {
      *out = r, rc = 0;
      break;
    }
    if (!r->fn) {
      r->ctx = ctx;
      r->heap = heap;
      r->cap = len - DATA_OFF;
      r->procs = mh_executor_backend(ex) == MH_BACKEND_PROCESSES;
      r->fn = fn; /* published to workers by the submission itself */
      *out = r, rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&rec_mu);
  return rc;
}

/* ---- the worker side ---------------------------------------------------- */

typedef struct cur {
  const rec_t *rec; /* NULL: not inside a bytes task */
  void *buf;        /* the current output */
  size_t size;
  size_t alen;      /* D_HEAP: bytes of the heap range (whole pages) */
  int sub;          /* buf lies in the worker's block */
  unsigned char inl[INL];
} cur_t;

static _Thread_local cur_t cur;

static void heap_give_back(void *p, size_t len) {
  if (len) madvise(p, len, MADV_REMOVE);
}

static void *heap_alloc(const rec_t *r, size_t size, size_t *alen) {
  size_t ps = page_size(), len = (size + ps - 1) & ~(ps - 1);
  if (size > r->cap || len > r->cap) return NULL;
  _Atomic uint64_t *next = (_Atomic uint64_t *)(void *)r->heap;
  uint64_t c = atomic_load_explicit(next, memory_order_relaxed), start;
  do {
    uint64_t pos = c % r->cap;
    start = pos + len > r->cap ? c + (r->cap - pos) : c;
  } while (!atomic_compare_exchange_weak_explicit(
      next, &c, start + len, memory_order_relaxed, memory_order_relaxed));
  *alen = len;
  return r->heap + DATA_OFF + start % r->cap;
}

/* The worker's current block (a worker process runs one task at a time). */
static _Thread_local char *blk;
static _Thread_local size_t blk_used;

static void blk_unref(char *b) {
  if (atomic_fetch_sub_explicit((_Atomic int64_t *)(void *)b, 1,
                                memory_order_acq_rel) == 1)
    heap_give_back(b, BLK);
}

static void *blk_alloc(const rec_t *r, size_t size) {
  size_t need = (size + 15) & ~(size_t)15;
  if (!blk || blk_used + need > BLK) {
    size_t alen;
    char *nb = heap_alloc(r, BLK, &alen);
    if (!nb) return NULL;
    atomic_store_explicit((_Atomic int64_t *)(void *)nb, 1, memory_order_relaxed);
    if (blk) blk_unref(blk);
    blk = nb;
    blk_used = BLK_HDR;
  }
  void *p = blk + blk_used;
  blk_used += need;
  return p;
}

static void cur_release(cur_t *c) {
  if (!c->buf) return;
  if (!c->rec->procs)
    mh__free(c->buf);
  else if (c->buf != c->inl && !c->sub)
    heap_give_back(c->buf, c->alen);
  c->buf = NULL;
  c->size = c->alen = 0;
}

void *mh_task_output(size_t size) {
  cur_t *c = &cur;
  if (!c->rec) return NULL;
  if (!c->rec->procs) {
    void *p = mh__realloc(c->buf, size ? size : 1);
    if (!p) return NULL;
    c->buf = p;
    c->size = size;
    return p;
  }
  size_t alen = 0;
  int sub = 0;
  void *p;
  if (size <= INL)
    p = c->inl;
  else if (size <= SMALL && !(c->sub && size <= c->size))
    p = blk_alloc(c->rec, size), sub = 1;
  else if (c->sub && size <= c->size)
    p = c->buf, sub = 1; /* shrinking in place */
  else
    p = heap_alloc(c->rec, size, &alen);
  if (!p) return NULL;
  if (p != c->buf) {
    if (c->buf) memmove(p, c->buf, c->size < size ? c->size : size);
    if (c->buf && c->buf != c->inl && !c->sub) heap_give_back(c->buf, c->alen);
  }
  c->buf = p;
  c->size = size;
  c->alen = alen;
  c->sub = sub;
  return p;
}

static int bytes_tramp(const void *in, size_t isz, void *out, size_t osz,
                       void *ctx) {
  (void)osz;
  const rec_t *r = ctx;
  desc_t *d = out;
  cur_t saved = cur; /* a bytes task may run another executor's inline */
  memset(&cur, 0, sizeof cur);
  cur.rec = r;
  int rc = r->fn(in, isz, NULL, 0, r->ctx);
  d->kind = D_NONE;
  d->size = 0;
  if (rc != 0 || !cur.buf || !cur.size) {
    cur_release(&cur);
  } else if (!r->procs) {
    d->kind = D_BLOCK, d->size = cur.size, d->where = (uintptr_t)cur.buf;
  } else if (cur.buf == cur.inl) {
    d->kind = D_INLINE, d->size = cur.size;
    memcpy(d->inl, cur.inl, cur.size);
  } else if (cur.sub) {
    atomic_fetch_add_explicit((_Atomic int64_t *)(void *)blk, 1,
                              memory_order_relaxed);
    d->kind = D_SUB, d->size = cur.size, d->where = (uintptr_t)cur.buf;
    memcpy(d->inl, &blk, sizeof blk);
  } else {
    d->kind = D_HEAP, d->size = cur.size, d->where = (uintptr_t)cur.buf;
  }
  cur = saved;
  return rc;
}

/* ---- the parent side ----------------------------------------------------- */

static size_t round_pages(size_t n) {
  size_t ps = page_size();
  return (n + ps - 1) & ~(ps - 1);
}

/* Hand the result of d to the caller (NULL, 0 for none) and empty d. */
static int take(desc_t *d, void **data, size_t *size) {
  void *p = NULL;
  size_t n = d->size;
  int rc = 0;
  switch (d->kind) {
  case D_BLOCK:
    p = (void *)(uintptr_t)d->where;
    break;
  case D_INLINE:
  case D_SUB:
  case D_HEAP: {
    const void *src = d->kind == D_INLINE ? (const void *)d->inl
                                          : (const void *)(uintptr_t)d->where;
    p = n ? mh__malloc(n) : NULL;
    if (p) memcpy(p, src, n);
    else if (n) rc = MH_ENOMEM;
    if (d->kind == D_HEAP) heap_give_back((void *)(uintptr_t)d->where, round_pages(n));
    if (d->kind == D_SUB) {
      char *b;
      memcpy(&b, d->inl, sizeof b);
      blk_unref(b);
    }
    break;
  }
  default:
    n = 0;
  }
  if (rc) n = 0;
  d->kind = D_NONE;
  d->size = 0;
  *data = p;
  *size = n;
  return rc;
}

static void drop(desc_t *d) {
  void *p;
  size_t n;
  if (d->kind == D_NONE) return;
  take(d, &p, &n);
  mh__free(p);
}

void mh_bytes_free(void *p) { mh__free(p); }

int mh_executor_submit_bytes(mh_executor_t *ex, mh_task_fn fn, const void *in,
                             size_t in_size, void *ctx, mh_bytes_slot_t *slot,
                             mh_future_t **fut) {
  if (!ex || !fn || !slot || !fut || (!in && in_size)) return MH_EINVAL;
  if (mh__exctx_check(mh__executor_ctx(ex), ctx)) return MH_EINVAL;
  rec_t *r;
  int rc = rec_of(ex, fn, ctx, &r);
  if (rc) return rc;
  memset(slot, 0, sizeof *slot);
  return mh_executor_submit(ex, bytes_tramp, in, in_size, slot, sizeof(desc_t),
                            r, fut);
}

int mh_future_result_bytes(mh_future_t *f, mh_bytes_slot_t *slot,
                           double timeout, void **data, size_t *size) {
  if (!f || !slot || !data || !size) return MH_EINVAL;
  *data = NULL;
  *size = 0;
  int rc = mh_future_wait(f, timeout);
  if (rc) return rc;
  rc = mh_future_result(f, 0);
  if (rc) return rc;
  return take((desc_t *)(void *)slot, data, size);
}

int mh_executor_map_bytes(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                          const void *in, size_t in_size, size_t n,
                          size_t chunksize, int *status, void **outs,
                          size_t *sizes) {
  if (!ex || !fn || (n && (!outs || !sizes || (!in && in_size))))
    return MH_EINVAL;
  if (mh__exctx_check(mh__executor_ctx(ex), ctx)) return MH_EINVAL;
  if (n > SIZE_MAX / sizeof(desc_t)) return MH_EINVAL;
  if (n == 0) return 0;
  rec_t *r;
  int rc = rec_of(ex, fn, ctx, &r);
  if (rc) return rc;
  desc_t *d = mh__calloc(n, sizeof *d);
  int *st = status ? status : mh__calloc(n, sizeof *st);
  if (!d || !st) {
    mh__free(d);
    if (st != status) mh__free(st);
    return MH_ENOMEM;
  }
  rc = mh_executor_map(ex, bytes_tramp, r, in, in_size, d, sizeof *d, n,
                       chunksize, st);
  int mem = 0;
  for (size_t i = 0; i < n; i++) {
    outs[i] = NULL, sizes[i] = 0;
    if (rc == MH_EINVAL || rc == MH_ESHUTDOWN || st[i] != 0) {
      drop(&d[i]);
      continue;
    }
    if (take(&d[i], &outs[i], &sizes[i])) {
      st[i] = MH_ENOMEM;
      if (!mem) mem = MH_ENOMEM;
    }
  }
  mh__free(d);
  if (st != status) mh__free(st);
  return rc ? rc : mem;
}

struct mh_bytes_iter_s {
  mh_map_iter_t *it; /* the ordinary iterator over the trampoline */
  desc_t *d;         /* one descriptor per item */
  size_t n;
};

int mh_executor_imap_bytes(mh_executor_t *ex, mh_task_fn fn, void *ctx,
                           const void *in, size_t in_size, size_t n,
                           size_t chunksize, unsigned flags,
                           mh_bytes_iter_t **out) {
  if (!ex || !fn || !out || (n && !in && in_size)) return MH_EINVAL;
  if (mh__exctx_check(mh__executor_ctx(ex), ctx)) return MH_EINVAL;
  if (n > SIZE_MAX / sizeof(desc_t)) return MH_EINVAL;
  rec_t *r;
  int rc = rec_of(ex, fn, ctx, &r);
  if (rc) return rc;
  mh_bytes_iter_t *b = mh__calloc(1, sizeof *b);
  if (!b) return MH_ENOMEM;
  b->n = n;
  b->d = n ? mh__calloc(n, sizeof *b->d) : NULL;
  if (n && !b->d) {
    mh__free(b);
    return MH_ENOMEM;
  }
  rc = mh_executor_imap(ex, bytes_tramp, r, in, in_size, b->d, sizeof(desc_t),
                        n, chunksize, flags, &b->it);
  if (rc) {
    mh__free(b->d);
    mh__free(b);
    return rc;
  }
  *out = b;
  return 0;
}

int mh_bytes_iter_next(mh_bytes_iter_t *b, double timeout, size_t *index,
                       int *status, void **data, size_t *size) {
  if (!b || !index || !status || !data || !size) return MH_EINVAL;
  *data = NULL;
  *size = 0;
  int rc = mh_map_iter_next(b->it, timeout, index, status);
  if (rc) return rc;
  if (*status != 0) {
    drop(&b->d[*index]);
    return 0;
  }
  if (take(&b->d[*index], data, size)) *status = MH_ENOMEM;
  return 0;
}

void mh_bytes_iter_free(mh_bytes_iter_t *b) {
  if (!b) return;
  mh_map_iter_free(b->it); /* waits for what runs */
  for (size_t i = 0; i < b->n; i++) drop(&b->d[i]);
  mh__free(b->d);
  mh__free(b);
}
