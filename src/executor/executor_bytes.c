/* SPDX-License-Identifier: MIT */
/* executor_bytes.c - results whose size the task decides when it runs
 * (issue 10 item 4): mh_task_output, submit / map / imap "_bytes".
 *
 * The task is the user's mh_task_fn, called with out = NULL and
 * out_size = 0 by a trampoline (bytes_tramp) that the ordinary submit / map
 * / imap run; inside it, mh_task_output(size) gives the result buffer.  The
 * trampoline's fixed-size `out` is a 16-byte descriptor (desc_t) saying
 * where the bytes are:
 *   - thread backend: a block from the library's allocator, handed to the
 *     caller as is (no copy);
 *   - process backend: the executor's result heap, a MAP_SHARED
 *     reservation made before the workers were forked (executor_ctx.c), so
 *     it is at the same address in every process.  Results up to 64 KiB
 *     are packed into 1 MiB blocks of it (see heap_hdr_t); those up to
 *     SHARE_MAX bytes are handed to the caller where they lie (no copy:
 *     the block goes back when the last of its results was freed).  The
 *     others, and results over 64 KiB (a page-aligned range each of the
 *     heap's range part), the parent copies into memory of its own (one
 *     allocation per chunk of a map, an arena, see res_t, carved from
 *     huge-page slabs, see slab_t), and the worker reuses their room (a
 *     block) or the pages go back at once (a range, MADV_REMOVE), so
 *     resident memory follows the results not yet taken.
 * The range part is a bump allocator on one shared 64-bit counter (workers
 * take ranges with compare-and-swap; a range never straddles the end, the
 * counter's lap wraps it).  It relies on the ranges in flight being far
 * fewer than that part (8 GiB of address space where the system allows):
 * a lap cannot catch up with a range nobody took yet while the window of
 * a map keeps at most a few chunks per worker in flight.  Ranges are only
 * in flight: a result the caller holds lies in a block or in its own
 * memory.
 *
 * A worker killed while it writes a result: its item fails with
 * MH_EWORKERDIED and its descriptor is never read; the pages it touched
 * stay until the executor is freed (at most one result and its 2 x NBLK
 * blocks per death).
 *
 * The user's (fn, ctx) pair reaches the worker through a record in the heap
 * header, published before the task is submitted and never changed after
 * (a table with linear probing, filled under rec_mu; workers only read).
 *
 * Who may touch what: rec_mu guards the records' insertion (parent);
 * the heap header's fields are marked (SX: compare-and-swap or atomic
 * add by every process); a descriptor is written by the task's worker,
 * read by the parent after the task completed; a block's first word is
 * set by its worker when it takes or reuses the block and otherwise only
 * decreased (atomically, by mh_bytes_free in the heap's owner and by the
 * worker dropping it); an arena's count is decreased by whoever frees one
 * of its results; `cur` and the worker's blocks are thread-local.  Lock order: rec_mu alone, never held while calling out.
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
#include "procpool.h"


#define NREC 65536u
#define REC_OFF 4096u
#define DATA_OFF ((size_t)4 << 20)

enum { D_NONE = 0, D_HEAP = 2, D_BLOCK = 3, D_SUB = 4, D_COPY = 5 };

/* Results in blocks of up to SHARE_MAX bytes are handed over where they
 * lie (D_SUB); larger ones are copied out by the parent (D_COPY), which
 * frees their room in the block at once.  Past a few KiB a result's bytes
 * cost more than its handling: in fresh shared pages faulted by a worker
 * (the blocks of results the caller keeps cannot be reused) they cost
 * more than the parent's copy into huge pages out of blocks the workers
 * reuse warm (bench/bytes.sh, 0..64 KiB: 0.94x when all were shared). */
#define SHARE_MAX 4096u

/* Results of 0..SMALL bytes are packed into blocks of BLK bytes that a
 * worker takes from the heap (a page fault per result would cost more than
 * the result), each after a 16-byte res_t.  A block's first word counts
 * references, biased: the worker sets it to BLK_BIAS when it takes the
 * block, counts the results it hands out from it in `given` (its own
 * memory, no shared write per result), and one is subtracted per result
 * when the parent copied it out or the caller freed it.  So the word is
 * BLK_BIAS - given exactly when no result handed out is still needed;
 * the worker then reuses the block from its start, pages warm and mapped
 * in both processes (an imap whose caller frees as it goes runs in the
 * same few blocks).  A worker keeps NBLK blocks in each of two sets (see
 * bset_t); when none of a set is idle it drops the oldest (subtracting
 * BLK_BIAS - given: whoever brings the word to 0 frees the block) and
 * takes another (blk_take).  When every block is out (the caller holds half the heap),
 * results go to ranges and are copied.  A worker that dies leaves its
 * 2 x NBLK blocks until the executor is freed and its results freed. */
#define SMALL 65536u
#define BLK ((size_t)1 << 20)
#define NBLK 8
#define BLK_HDR 64u
#define BLK_BIAS ((int64_t)1 << 40)

/* What a task's fixed-size output says about its result.  16 bytes: the
 * map's transport moves each item's output through its window, and at 64
 * bytes (a descriptor that carried small results inline) that move alone
 * capped a map at a third of the items per second. */
typedef struct desc {
  uint64_t where; /* the result's first byte (D_NONE: 0) */
  uint64_t sk;    /* its bytes << 8 | D_* */
} desc_t;
_Static_assert(sizeof(desc_t) == 16, "a descriptor is 16 bytes");
/* A submit's slot: the descriptor, then the heap (for take). */
_Static_assert(sizeof(mh_bytes_slot_t) >= sizeof(desc_t) + sizeof(char *), "slot too small");

static unsigned d_kind(const desc_t *d) { return (unsigned)(d->sk & 0xffu); }
static size_t d_size(const desc_t *d) { return (size_t)(d->sk >> 8); }
static void d_set(desc_t *d, unsigned kind, size_t size, const void *where) {
  d->where = (uint64_t)(uintptr_t)where;
  d->sk = (uint64_t)size << 8 | kind;
}

/* The caller's side.  Every result handed to the caller is preceded by a
 * res_t: a block of its own (arena NULL: the thread backend's output, or one
 * result of submit / imap), or one of the results of a map's batch, copied
 * into one allocation (an arena) that goes when its last result is freed.
 * One allocation per batch instead of one per result: malloc and free were
 * a third of the parent's time in bench/bytes.sh. */
typedef struct slab slab_t;
typedef struct arena {
  _Atomic int64_t refs; /* results not yet freed */
  slab_t *slab;         /* the slab it was carved from; NULL: malloc'd */
} arena_t;
typedef struct res {
  arena_t *arena;
  uint64_t pad; /* keeps the result 16-byte aligned */
} res_t;
_Static_assert(sizeof(res_t) == 16 && sizeof(arena_t) == 16, "16-byte headers");

static res_t *res_of(void *p) { return (res_t *)p - 1; }

/* Slabs.  A map's results fill fresh memory (the caller holds them), and
 * at 4 KiB a page the parent's faults cost more than its copies (per
 * page: zeroing, the memory cgroup's charge, the LRU lists).  So an arena
 * of SLAB_MIN bytes or more is carved from a slab: a SLAB-byte mapping,
 * aligned to 2 MiB and asking for transparent huge pages, faulted in one
 * huge page for 512 small ones where the system grants them (ordinary
 * pages otherwise; nothing else changes).  A slab counts its arenas (and
 * one more while a map carves from it) and is unmapped when the last goes:
 * a result the caller keeps holds its whole slab, at most SLAB bytes of
 * touched memory.  Only with the C library's allocator (a replaced
 * allocator sees every arena, as before). */
#define SLAB ((size_t)16 << 20)
#define SLAB_MIN ((size_t)64 << 10)
#define HUGE ((size_t)2 << 20)

struct slab {
  _Atomic int64_t refs; /* arenas not yet freed, +1 while a map carves */
  uint64_t len;         /* bytes of the mapping */
};

/* A map's carving point: its current slab and the bytes of it used. */
typedef struct carver {
  slab_t *s;
  size_t used;
} carver_t;

static void slab_unref(slab_t *s) {
  if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
    munmap(s, s->len);
}

static slab_t *slab_new(size_t need) {
  size_t len = need + 64 > SLAB ? (need + 64 + HUGE - 1) & ~(HUGE - 1) : SLAB;
  char *m = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (m == MAP_FAILED) return NULL;
  char *a = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
  if (a > m) munmap(m, (size_t)(a - m));
  munmap(a + len, HUGE - (size_t)(a - m)); /* m is page-aligned: a tail always remains */
#ifdef MADV_HUGEPAGE
  (void)madvise(a, len, MADV_HUGEPAGE); /* a hint: refused, small pages */
#endif
  slab_t *s = (slab_t *)(void *)a;
  atomic_init(&s->refs, 1);
  s->len = len;
  return s;
}

/* An arena of `size` bytes (its header included), from the carver's slab
 * when it is large enough to be worth one, else from the allocator. */
static arena_t *arena_new(carver_t *c, size_t size) {
  if (!c || size < SLAB_MIN || !mh__allocator_is_default()) {
    arena_t *a = mh__malloc(size);
    if (a) a->slab = NULL;
    return a;
  }
  size_t need = (size + 63) & ~(size_t)63;
  if (!c->s || c->used + need > c->s->len) {
    slab_t *s = slab_new(need);
    if (!s) return arena_new(NULL, size); /* no mapping: the allocator */
    slab_unref(c->s);
    c->s = s, c->used = 64;
  }
  arena_t *a = (arena_t *)(void *)((char *)c->s + c->used);
  c->used += need;
  atomic_fetch_add_explicit(&c->s->refs, 1, memory_order_relaxed);
  a->slab = c->s;
  return a;
}

static void arena_free(arena_t *a) {
  if (a->slab)
    slab_unref(a->slab);
  else
    mh__free(a);
}

static void *res_solo(size_t n) {
  res_t *h = mh__malloc(sizeof *h + n);
  if (!h) return NULL;
  h->arena = NULL;
  return h + 1;
}

/* ---- the heap's header and its blocks -----------------------------------
 * The heap, reserved by executor_ctx.c before the workers are forked, is
 *   [0, REC_OFF)               this header
 *   [REC_OFF, DATA_OFF)        the (fn, ctx) records
 *   [DATA_OFF, +nblk x BLK)    the blocks, for results of 0..SMALL bytes
 *   the rest                   page-aligned ranges for larger results
 * A block's results are handed to the caller where they lie (no copy):
 * each is preceded by a res_t naming its block (tagged with the low bit)
 * and its heap, and mh_bytes_free drops the block's count.  A block goes
 * back on the free stack when its last result was freed and its worker
 * let go of it; the ranges' bump counter laps over the ranges only, so a
 * result the caller keeps is never written over.  The heap is unmapped
 * when the executor was freed and the caller freed its last such result
 * (`held`).  Up to WARM_MAX free blocks keep their pages (a new map then
 * fills warm memory); the others give them back. */
typedef struct heap_hdr {
  _Atomic uint64_t next;  /* SX: the ranges' bump counter (heap_alloc) */
  char pad0[56];
  _Atomic uint64_t bnext; /* SX: blocks never handed out yet */
  _Atomic uint64_t bfree; /* SX: the free stack, (tag << 32) | (index + 1) */
  _Atomic int64_t nwarm;  /* SX: free blocks whose pages are kept (about) */
  uint64_t nblk;          /* I: blocks */
  uint64_t len;           /* I: bytes of the heap */
  int32_t owner;          /* I: the process that made the heap */
  char pad1[20];
  _Atomic int64_t held;   /* owner only: 1 for the executor, + results in blocks */
} heap_hdr_t;
_Static_assert(sizeof(heap_hdr_t) <= REC_OFF, "the header overruns the records");

#define WARM_MAX 16

static heap_hdr_t *hdr_of(const char *heap) { return (heap_hdr_t *)(uintptr_t)heap; }
static size_t heap_ranges_off(const char *heap) { return DATA_OFF + hdr_of(heap)->nblk * BLK; }

void mh__bytes_heap_init(char *heap, size_t len) {
  heap_hdr_t *h = hdr_of(heap);
  h->nblk = len > DATA_OFF ? (len - DATA_OFF) / 2 / BLK : 0;
  h->len = len;
  h->owner = mh__pid();
  atomic_init(&h->held, 1);
}

static void heap_unref(char *heap) {
  heap_hdr_t *h = hdr_of(heap);
  size_t len = h->len;
  if (atomic_fetch_sub_explicit(&h->held, 1, memory_order_acq_rel) == 1) munmap(heap, len);
}

void mh__bytes_heap_unref(char *heap, size_t len) {
  if (hdr_of(heap)->owner != mh__pid())
    munmap(heap, len); /* an inherited copy of the mapping */
  else
    heap_unref(heap);
}

/* A block's header words: its count (blk_refs, below), its link on the
 * free stack, and whether its pages were kept. */
static char *blk_at(char *heap, uint64_t i) { return heap + DATA_OFF + i * BLK; }
static _Atomic uint64_t *blk_link(char *b) { return (_Atomic uint64_t *)(void *)(b + 8); }
static _Atomic uint64_t *blk_warm(char *b) { return (_Atomic uint64_t *)(void *)(b + 16); }

static void blk_push(char *heap, char *b) {
  heap_hdr_t *h = hdr_of(heap);
  uint64_t idx = (uint64_t)(b - blk_at(heap, 0)) / BLK + 1;
  uint64_t top = atomic_load_explicit(&h->bfree, memory_order_relaxed), nt;
  do {
    atomic_store_explicit(blk_link(b), top & 0xffffffffu, memory_order_relaxed);
    nt = (((top >> 32) + 1) << 32) | idx;
  } while (!atomic_compare_exchange_weak_explicit(&h->bfree, &top, nt, memory_order_release,
                                                  memory_order_relaxed));
}

/* A free block, or a block never used, or NULL when all are out. */
static char *blk_take(char *heap) {
  heap_hdr_t *h = hdr_of(heap);
  uint64_t top = atomic_load_explicit(&h->bfree, memory_order_acquire);
  while (top & 0xffffffffu) {
    char *b = blk_at(heap, (top & 0xffffffffu) - 1);
    uint64_t nt = (((top >> 32) + 1) << 32) |
                  (atomic_load_explicit(blk_link(b), memory_order_relaxed) & 0xffffffffu);
    if (atomic_compare_exchange_weak_explicit(&h->bfree, &top, nt, memory_order_acquire,
                                              memory_order_acquire)) {
      if (atomic_load_explicit(blk_warm(b), memory_order_relaxed))
        atomic_fetch_sub_explicit(&h->nwarm, 1, memory_order_relaxed);
      return b;
    }
  }
  uint64_t i = atomic_fetch_add_explicit(&h->bnext, 1, memory_order_relaxed);
  return i < h->nblk ? blk_at(heap, i) : NULL;
}

/* Fault a cold block in with one call (a fault per page cost more). */
static void blk_populate(char *b) {
  if (!atomic_load_explicit(blk_warm(b), memory_order_relaxed)) mh__prefault(b, BLK);
}

/* The last reference to block b went: back on the free stack. */
static void blk_release(char *heap, char *b) {
  heap_hdr_t *h = hdr_of(heap);
  uint64_t warm = 1;
  if (atomic_fetch_add_explicit(&h->nwarm, 1, memory_order_relaxed) >= WARM_MAX) {
    atomic_fetch_sub_explicit(&h->nwarm, 1, memory_order_relaxed);
    madvise(b, BLK, MADV_REMOVE);
    warm = 0;
  }
  atomic_store_explicit(blk_warm(b), warm, memory_order_relaxed);
  blk_push(heap, b);
}

typedef struct rec {
  mh_task_fn fn; /* NULL: free entry */
  void *ctx;
  char *heap;    /* the heap's first byte (the same in every process) */
  uint64_t cap;  /* bytes of its range part (after the blocks) */
  int procs;     /* results go to the heap, not to the allocator */
  _Atomic uint64_t avg; /* parent only: bytes per item its last map saw, +1 */
} rec_t;
_Static_assert(REC_OFF + NREC * sizeof(rec_t) <= DATA_OFF, "records overrun the data");

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
      r->cap = len - heap_ranges_off(heap);
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
  int sub;          /* buf lies in a block of the worker's: */
  int set;          /* ... of this set, */
  char *blk;        /* ... this one */
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
  return r->heap + heap_ranges_off(r->heap) + start % r->cap;
}

/* The worker's blocks (a worker process runs one task at a time), in two
 * sets: results handed over where they lie (BS_SHARE, up to SHARE_MAX
 * bytes) and results the parent copies out (BS_COPY).  Apart, because one
 * result the caller keeps holds its whole block: mixed in, the few small
 * results of a map of large ones would keep every block from being
 * reused.  A set packs into blks[cur]; given[i] results were handed out
 * of blks[i]. */
enum { BS_SHARE = 0, BS_COPY = 1 };
typedef struct bset {
  char *blks[NBLK];
  int64_t given[NBLK];
  int cur;
  size_t used;
} bset_t;
static _Thread_local bset_t bsets[2];
static _Thread_local char *blk_heap; /* the heap bsets belong to */
static _Thread_local int blk_pid;    /* ... in this process (not a forked copy) */

static _Atomic int64_t *blk_refs(char *b) { return (_Atomic int64_t *)(void *)b; }

/* Drop `k` references to block b of heap; the last one frees it. */
static void blk_unref_n(char *heap, char *b, int64_t k) {
  if (atomic_fetch_sub_explicit(blk_refs(b), k, memory_order_acq_rel) == k)
    blk_release(heap, b);
}

/* Every result handed out of block i was freed or copied out (acquire
 * pairs with the release in blk_unref_n). */
static int blk_idle(const bset_t *bs, int i) {
  return bs->blks[i] && atomic_load_explicit(blk_refs(bs->blks[i]), memory_order_acquire) ==
                            BLK_BIAS - bs->given[i];
}

/* Start block i again from its header.  Its word is ours alone (no result
 * of it is out, or it is new), so it is set back to the bias. */
static void blk_restart(bset_t *bs, int i) {
  bs->cur = i;
  bs->given[i] = 0;
  atomic_store_explicit(blk_refs(bs->blks[i]), BLK_BIAS, memory_order_relaxed);
  bs->used = BLK_HDR;
}

/* Room for a result of `size` bytes in set `set`.  `live`: the task's
 * current output lies in that set's current block (so it may not be
 * reused from its start).  The result's res_t goes before it. */
static void *blk_alloc(const rec_t *r, int set, size_t size, int live, char **blk) {
  size_t need = sizeof(res_t) + ((size + 15) & ~(size_t)15);
  if (blk_heap != r->heap || blk_pid != mh__pid()) {
    /* Blocks of another heap, or a parent's (this process was forked
     * while they were in use): not ours to reuse or drop. */
    memset(bsets, 0, sizeof bsets);
    blk_heap = r->heap;
    blk_pid = mh__pid();
  }
  bset_t *bs = &bsets[set];
  if (!bs->blks[bs->cur] || bs->used + need > BLK) {
    /* The current block, then the others in turn, oldest first: the first
     * idle one is reused warm.  None idle: a new block takes the slot of
     * the oldest, which is dropped (whoever brings its word to 0, this
     * worker or the parent letting go of its last result, frees it). */
    int pick = -1;
    if (bs->blks[bs->cur] && !live && blk_idle(bs, bs->cur)) pick = bs->cur;
    for (int k = 1; pick < 0 && k < NBLK; k++) {
      int i = (bs->cur + k) % NBLK;
      if (blk_idle(bs, i)) pick = i;
    }
    if (pick < 0) {
      char *nb = blk_take(r->heap);
      if (!nb) return NULL; /* every block is out: a range instead */
      blk_populate(nb);
      pick = (bs->cur + 1) % NBLK;
      if (bs->blks[pick])
        blk_unref_n(r->heap, bs->blks[pick], BLK_BIAS - bs->given[pick]);
      bs->blks[pick] = nb;
    }
    blk_restart(bs, pick);
  }
  *blk = bs->blks[bs->cur];
  void *p = *blk + bs->used + sizeof(res_t);
  bs->used += need;
  return p;
}

static void cur_release(cur_t *c) {
  if (!c->buf) return;
  if (!c->rec->procs)
    mh__free(res_of(c->buf));
  else if (!c->sub)
    heap_give_back(c->buf, c->alen);
  c->buf = NULL;
  c->size = c->alen = 0;
}

void *mh_task_output(size_t size) {
  cur_t *c = &cur;
  if (!c->rec) return NULL;
  if (!c->rec->procs) {
    res_t *h = mh__realloc(c->buf ? res_of(c->buf) : NULL, sizeof(res_t) + size);
    if (!h) return NULL;
    h->arena = NULL;
    c->buf = h + 1;
    c->size = size;
    return c->buf;
  }
  size_t alen = 0;
  int sub = 0;
  void *p;
  int set = size <= SHARE_MAX ? BS_SHARE : BS_COPY;
  char *blk = NULL;
  if (size <= SMALL && !(c->sub && size <= c->size) &&
      (p = blk_alloc(c->rec, set, size, c->sub && c->set == set, &blk)) != NULL)
    sub = 1;
  else if (c->sub && size <= c->size)
    p = c->buf, sub = 1, set = c->set, blk = c->blk; /* shrinking in place */
  else
    p = heap_alloc(c->rec, size, &alen);
  if (!p) return NULL;
  if (p != c->buf) {
    if (c->buf) memmove(p, c->buf, c->size < size ? c->size : size);
    if (c->buf && !c->sub) heap_give_back(c->buf, c->alen);
  }
  c->buf = p;
  c->size = size;
  c->alen = alen;
  c->sub = sub;
  c->set = set;
  c->blk = blk;
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
  if (rc != 0 || !cur.buf || !cur.size) {
    d_set(d, D_NONE, 0, NULL);
    cur_release(&cur);
  } else if (!r->procs) {
    d_set(d, D_BLOCK, cur.size, cur.buf);
  } else if (cur.sub) {
    /* Count the result against its block (not found: the set was reset
     * by a task of another heap run inline meanwhile, and the block is
     * no longer the set's: it stays, the result is still good). */
    bset_t *bs = &bsets[cur.set];
    for (int i = 0; i < NBLK; i++)
      if (bs->blks[i] == cur.blk) bs->given[i]++;
    if (cur.set == BS_SHARE) {
      /* The caller gets the result where it lies: its header names the
       * block (low bit set: not an arena) and the heap, for mh_bytes_free. */
      res_t *h = res_of(cur.buf);
      h->arena = (arena_t *)((uintptr_t)cur.blk | 1u);
      h->pad = (uint64_t)(uintptr_t)r->heap;
    }
    d_set(d, cur.set == BS_SHARE ? D_SUB : D_COPY, cur.size, cur.buf);
  } else {
    d_set(d, D_HEAP, cur.size, cur.buf);
  }
  cur = saved;
  return rc;
}

/* ---- the parent side ----------------------------------------------------- */

static size_t round_pages(size_t n) {
  size_t ps = page_size();
  return (n + ps - 1) & ~(ps - 1);
}

/* Where take() copies to: an arena's next free bytes (to = NULL: a block
 * of its own per result), and the block references of D_COPY results it
 * still owes (dropped per run of results from one block, not per result:
 * the block's first word is shared with its worker). */
typedef struct sink {
  char *to;
  arena_t *arena;
  char *owe_blk;
  int64_t owe;
} sink_t;

static void sink_flush(sink_t *k, char *heap) {
  if (k->owe) blk_unref_n(heap, k->owe_blk, k->owe);
  k->owe = 0;
  k->owe_blk = NULL;
}

/* The block that address p of heap lies in. */
static char *blk_of(char *heap, const void *p) {
  return blk_at(heap, (uint64_t)((const char *)p - blk_at(heap, 0)) / BLK);
}

static size_t res_room(size_t n) { return sizeof(res_t) + ((n + 15) & ~(size_t)15); }

/* Hand the result of d (of a task on the executor whose heap is `heap`)
 * to the caller (NULL, 0 for none) and empty d. */
static int take(desc_t *d, char *heap, void **data, size_t *size, sink_t *k) {
  void *p = NULL;
  size_t n = d_size(d);
  int rc = 0;
  switch (d_kind(d)) {
  case D_BLOCK:
    p = (void *)(uintptr_t)d->where;
    break;
  case D_SUB: /* handed over where it lies; the heap counts it */
    atomic_fetch_add_explicit(&hdr_of(heap)->held, 1, memory_order_relaxed);
    p = (void *)(uintptr_t)d->where;
    break;
  case D_HEAP:
  case D_COPY:
    if (k->to) {
      res_t *h = (res_t *)(void *)k->to;
      h->arena = k->arena;
      k->to += res_room(n);
      p = h + 1;
    } else {
      p = res_solo(n);
    }
    if (p) memcpy(p, (const void *)(uintptr_t)d->where, n);
    else rc = MH_ENOMEM;
    if (d_kind(d) == D_HEAP) {
      heap_give_back((void *)(uintptr_t)d->where, round_pages(n));
    } else {
      char *b = blk_of(heap, (const void *)(uintptr_t)d->where);
      if (b != k->owe_blk) sink_flush(k, heap);
      k->owe_blk = b;
      k->owe++;
    }
    break;
  default:
    n = 0;
  }
  if (rc) n = 0;
  d_set(d, D_NONE, 0, NULL);
  *data = p;
  *size = n;
  return rc;
}

/* take() of one result into a block of its own. */
static int take1(desc_t *d, char *heap, void **data, size_t *size) {
  sink_t k = {NULL, NULL, NULL, 0};
  int rc = take(d, heap, data, size, &k);
  sink_flush(&k, heap);
  return rc;
}

static void drop(desc_t *d, char *heap) {
  void *p;
  size_t n;
  if (d_kind(d) == D_NONE) return;
  take1(d, heap, &p, &n);
  mh_bytes_free(p);
}

void mh_bytes_free(void *p) {
  if (!p) return;
  res_t *h = res_of(p);
  arena_t *a = h->arena;
  if ((uintptr_t)a & 1u) { /* in a block of a heap */
    char *b = (char *)((uintptr_t)a & ~(uintptr_t)1), *heap = (char *)(uintptr_t)h->pad;
    if (hdr_of(heap)->owner != mh__pid()) return; /* a forked copy: the owner's memory */
    blk_unref_n(heap, b, 1);
    heap_unref(heap);
  } else if (!a)
    mh__free(h);
  else if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
    arena_free(a);
}

int mh_executor_submit_bytes(mh_executor_t *ex, mh_task_fn fn, const void *in,
                             size_t in_size, void *ctx, mh_bytes_slot_t *slot,
                             mh_future_t **fut) {
  if (!ex || !fn || !slot || !fut || (!in && in_size)) return MH_EINVAL;
  if (mh__exctx_check(mh__executor_ctx(ex), ctx)) return MH_EINVAL;
  rec_t *r;
  int rc = rec_of(ex, fn, ctx, &r);
  if (rc) return rc;
  memset(slot, 0, sizeof *slot);
  memcpy((char *)slot + sizeof(desc_t), &r->heap, sizeof r->heap);
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
  char *heap;
  memcpy(&heap, (char *)slot + sizeof(desc_t), sizeof heap);
  return take1((desc_t *)(void *)slot, heap, data, size);
}

/* A map runs in batches of at most MAP_BATCH items, so that the
 * descriptors take MAP_BATCH x 16 bytes, not n x 16.  Within a batch the
 * results of each chunk are taken as soon as the map copied the chunk out
 * of its window (mh__pp_take_hook), while the workers run the next chunks:
 * the workers' blocks come free and are reused warm (see blk_alloc).  What
 * the hook did not take (a map on job futures, the thread backend) is taken
 * after the batch.  With a chunksize a batch is a whole number of chunks. */
#define MAP_BATCH ((size_t)1 << 18)

/* Hand the results of d[0, cnt) (statuses st) to the caller: those in
 * blocks where they lie (the common case, one counting of the heap for
 * all), the others copied into one arena. */
static int take_batch(desc_t *d, char *heap, const int *st, size_t cnt, void **outs,
                      size_t *sizes, int *stw, carver_t *cv) {
  size_t room = 0;
  int64_t nres = 0, nsub = 0;
  for (size_t i = 0; i < cnt; i++) {
    unsigned kind = d_kind(&d[i]);
    if (st[i] == 0 && kind == D_SUB) {
      outs[i] = (void *)(uintptr_t)d[i].where;
      sizes[i] = d_size(&d[i]);
      d_set(&d[i], D_NONE, 0, NULL);
      nsub++;
      continue;
    }
    outs[i] = NULL, sizes[i] = 0;
    if (st[i] != 0 || (kind != D_HEAP && kind != D_COPY)) continue;
    room += res_room(d_size(&d[i]));
    nres++;
  }
  if (nsub) atomic_fetch_add_explicit(&hdr_of(heap)->held, nsub, memory_order_relaxed);
  if (nsub == (int64_t)cnt) return 0;
  sink_t k = {NULL, NULL, NULL, 0};
  if (nres > 1) {
    k.arena = arena_new(cv, sizeof(arena_t) + room);
    if (k.arena) {
      /* One call faults the arena in (a fresh allocation this large is new
       * pages): a fault per page cost more than the copies. */
      mh__prefault(k.arena, sizeof(arena_t) + room);
      atomic_store_explicit(&k.arena->refs, nres, memory_order_relaxed);
      k.to = (char *)(k.arena + 1);
    }
  }
  int mem = 0;
  for (size_t i = 0; i < cnt; i++) {
    if (outs[i]) continue; /* taken above */
    if (st[i] != 0) {
      /* A failed item has no result (bytes_tramp released it), and its
       * descriptor is not to be read: for an item whose worker was killed
       * in it, the map copies out what its window slot held from an
       * earlier item (a result taken already, perhaps freed). */
      d_set(&d[i], D_NONE, 0, NULL);
      continue;
    }
    if (take(&d[i], heap, &outs[i], &sizes[i], &k)) {
      stw[i] = MH_ENOMEM;
      mem = MH_ENOMEM;
    }
  }
  sink_flush(&k, heap);
  return mem;
}

/* One batch's hook: the chunks come in order, so what it took is always
 * the items [0, done) of the batch. */
typedef struct map_take {
  desc_t *d;
  char *heap;
  int *st;
  void **outs;
  size_t *sizes;
  size_t done;
  int mem;
  carver_t *cv;
} map_take_t;

static void map_take(void *arg, size_t lo, size_t cnt) {
  map_take_t *t = arg;
  if (lo != t->done) return; /* never: chunks are copied out in order */
  int m = take_batch(t->d + lo, t->heap, t->st + lo, cnt, t->outs + lo, t->sizes + lo,
                     t->st + lo, t->cv);
  if (m && !t->mem) t->mem = m;
  t->done = lo + cnt;
}

/* Automatic chunks on the process backend are sized in bytes, so that
 * what is in flight when the caller frees as it goes (an imap's results,
 * a map's ranges) fits the workers' NBLK blocks and they are reused warm
 * (each result of 32 KiB in fresh shared pages costs its worker eight
 * faults, and the parent eight more).  So a chunk is made about
 * CHUNK_BYTES of results and the window at most WIN_CHUNKS chunks per
 * worker: 2 MiB per worker of the 8 MiB its blocks hold, room enough for
 * one worker far ahead of the other.  The size per item is learnt: a map
 * whose fn (and ctx) never ran starts with a small batch of PROBE items
 * per worker in automatic chunks, and each batch updates the figure kept
 * in the record. */
#define CHUNK_BYTES ((size_t)256 << 10)
#define WIN_CHUNKS 8u
#define PROBE 64u
#define AUTO_ITEMS 2048u

static void bytes_chunk(rec_t *r, size_t w, size_t *cnt, size_t *ch, size_t *slots) {
  uint64_t avg = atomic_load_explicit(&r->avg, memory_order_relaxed);
  if (!avg) {
    if (*cnt > PROBE * w) *cnt = PROBE * w;
    return; /* automatic chunks, no cap */
  }
  size_t per = avg > 1 ? (size_t)(avg - 1) : 1;
  size_t c = CHUNK_BYTES / per;
  /* Results this small: the window's bound in items (about 25,000)
   * already keeps what is in flight within the blocks; the pool's own rule
   * picks the chunks. */
  if (c >= AUTO_ITEMS) return;
  if (c < 1) c = 1;
  if (*cnt > c) *cnt -= *cnt % c; /* a batch is whole chunks */
  *ch = c;
  *slots = WIN_CHUNKS * w;
}

/* Learn the bytes per item of a batch's results. */
static void bytes_seen(rec_t *r, const size_t *sizes, size_t cnt) {
  if (!cnt) return;
  uint64_t sum = 0;
  for (size_t i = 0; i < cnt; i++) sum += sizeof(res_t) + ((sizes[i] + 15) & ~(size_t)15);
  atomic_store_explicit(&r->avg, sum / cnt + 1, memory_order_relaxed);
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
  size_t batch = n;
  int procs = mh_executor_backend(ex) == MH_BACKEND_PROCESSES;
  if (procs && n > MAP_BATCH) {
    batch = MAP_BATCH;
    if (chunksize) batch = chunksize >= MAP_BATCH ? chunksize : MAP_BATCH / chunksize * chunksize;
  }
  desc_t *d = mh__calloc(batch, sizeof *d);
  int *stb = status ? NULL : mh__calloc(batch, sizeof *stb);
  if (!d || (!status && !stb)) {
    mh__free(d);
    mh__free(stb);
    return MH_ENOMEM;
  }
  int first = 0, mem = 0;
  size_t lo = 0, cnt = 0;
  carver_t cv = {NULL, 0};
  int learn = procs && !chunksize; /* automatic chunks, sized in bytes */
  int w = mh_executor_workers(ex);
  if (w < 1) w = 1;
  for (; lo < n; lo += cnt) {
    size_t ch = chunksize, slots = 0;
    cnt = n - lo < batch ? n - lo : batch;
    if (learn)
      bytes_chunk(r, (size_t)w, &cnt, &ch, &slots);
    int *st = status ? status + lo : stb;
    map_take_t mt = {d, r->heap, st, outs + lo, sizes + lo, 0, 0, &cv};
    mh__pp_take_hook(map_take, &mt, slots);
    rc = mh_executor_map(ex, bytes_tramp, r, (const char *)in + lo * in_size, in_size, d,
                         sizeof *d, cnt, ch, st);
    mh__pp_take_hook(NULL, NULL, 0);
    if (rc == MH_EINVAL || rc == MH_ESHUTDOWN) {
      /* Nothing of this batch ran. */
      for (size_t i = 0; i < cnt; i++) {
        drop(&d[i], r->heap);
        outs[lo + i] = NULL, sizes[lo + i] = 0;
      }
      if (!first) first = rc;
      lo += cnt;
      break;
    }
    if (rc && !first) first = rc;
    if (mt.mem && !mem) mem = mt.mem;
    size_t k = mt.done;
    int m = take_batch(d + k, r->heap, st + k, cnt - k, outs + lo + k, sizes + lo + k,
                       st + k, &cv);
    if (m && !mem) mem = m;
    if (learn) bytes_seen(r, sizes + lo, cnt);
  }
  for (size_t i = lo < n ? lo : n; i < n; i++) {
    outs[i] = NULL, sizes[i] = 0;
    if (status) status[i] = first;
  }
  slab_unref(cv.s); /* the carver's reference: the slab goes with its last arena */
  mh__free(d);
  mh__free(stb);
  return first ? first : mem;
}

struct mh_bytes_iter_s {
  mh_map_iter_t *it; /* the ordinary iterator over the trampoline */
  desc_t *d;         /* one descriptor per item */
  size_t n;
  char *heap;        /* the executor's result heap */
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
  b->heap = r->heap;
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
  if (*status != 0) { /* no result; the descriptor is not read (see take_batch) */
    d_set(&b->d[*index], D_NONE, 0, NULL);
    return 0;
  }
  if (take1(&b->d[*index], b->heap, data, size)) *status = MH_ENOMEM;
  return 0;
}

void mh_bytes_iter_free(mh_bytes_iter_t *b) {
  if (!b) return;
  mh_map_iter_free(b->it); /* waits for what runs */
  for (size_t i = 0; i < b->n; i++) drop(&b->d[i], b->heap);
  mh__free(b->d);
  mh__free(b);
}
