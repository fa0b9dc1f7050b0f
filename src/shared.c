/* SPDX-License-Identifier: MIT */
/* shared.c - values, arrays and sync primitives in anonymous shared mappings.
 *
 * Every object is one mapping: a 64-byte header (magic, kind, sizes, the
 * creator's pid) followed by the payload.  The pointer handed out is the
 * mapping's start plus 64, so a pointer can be checked cheaply (its offset in
 * the page must be 64) before its header is read.
 *
 * Invariants:
 * - The header is written once, by the creator, before any other process can
 *   see the mapping, and never changes: it is read without locking.
 * - A value/array block (mh__block) starts with its robust shared recursive
 *   lock.  Elements are read and written with C11 atomic operations: relaxed
 *   loads and stores under the lock for get/set (so that they never tear
 *   against a concurrent lock-free add), sequentially consistent
 *   fetch-and-add without the lock for add.
 * - Only the creator (header.creator == getpid()) destroys the primitive in a
 *   mapping; other processes only unmap their view.
 * Lock order: only one lock (an element block's) is ever taken here.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "manyhands/shared.h"
#include "internal.h"

#define MH__SHM_MAGIC 0x6d68736861726564ull /* "mhshared" */
#define MH__SHM_HEADER 64u

enum {
  MH__KIND_MEM = 1,
  MH__KIND_VALUE,
  MH__KIND_ARRAY,
  MH__KIND_LOCK,
  MH__KIND_RLOCK,
  MH__KIND_SEM,
  MH__KIND_EVENT,
  MH__KIND_COND,
  MH__KIND_BARRIER
};

typedef struct mh__shm_header {
  uint64_t magic;
  uint32_t kind;
  pid_t creator;
  size_t size;    /* payload bytes asked for */
  size_t map_len; /* bytes mapped, header included */
} mh__shm_header_t;

_Static_assert(sizeof(mh__shm_header_t) <= MH__SHM_HEADER, "header fits");

static size_t page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (size_t)ps : 4096u;
}

/* Map a zeroed payload of `size` bytes tagged with `kind`. */
static int shm_map(void **out, size_t size, uint32_t kind) {
  size_t ps = page_size();
  if (size == 0 || size > SIZE_MAX / 2 - ps - MH__SHM_HEADER) return MH_EINVAL;
  size_t len = (size + MH__SHM_HEADER + ps - 1) / ps * ps;
  void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return MH_ENOMEM;
  mh__shm_header_t *h = base;
  h->magic = MH__SHM_MAGIC;
  h->kind = kind;
  h->creator = getpid();
  h->size = size;
  h->map_len = len;
  *out = (char *)base + MH__SHM_HEADER;
  return 0;
}

/* The header of a payload pointer, or NULL when it is not one of ours (of
 * the expected kind, when `kind` is not 0). */
static mh__shm_header_t *shm_header(const void *mem, uint32_t kind) {
  if (!mem || ((uintptr_t)mem & (page_size() - 1)) != MH__SHM_HEADER) return NULL;
  mh__shm_header_t *h = (mh__shm_header_t *)((uintptr_t)mem - MH__SHM_HEADER);
  if (h->magic != MH__SHM_MAGIC || (kind && h->kind != kind)) return NULL;
  return h;
}

static int is_creator(const mh__shm_header_t *h) { return h->creator == getpid(); }

static void shm_unmap(mh__shm_header_t *h) { munmap(h, h->map_len); }

/* ---- raw memory ------------------------------------------------------------ */

int mh_shared_mem_new(void **mem, size_t size) {
  if (!mem) return MH_EINVAL;
  *mem = NULL;
  return shm_map(mem, size, MH__KIND_MEM);
}

int mh_shared_mem_free(void *mem) {
  mh__shm_header_t *h = shm_header(mem, MH__KIND_MEM);
  if (!h) return MH_EINVAL;
  shm_unmap(h);
  return 0;
}

size_t mh_shared_mem_size(const void *mem) {
  const mh__shm_header_t *h = shm_header(mem, MH__KIND_MEM);
  return h ? h->size : 0;
}

/* ---- typed element blocks (Value, Array) ------------------------------------ */

typedef struct mh__block {
  mh_rlock_t lock;
  int type;
  size_t len;
  size_t elem;
  size_t data_off; /* bytes from the block's start to element 0 */
} mh__block_t;

/* Both public handle types are this block; the distinct names only keep
 * values and arrays apart at compile time. */
struct mh_shared_value_s {
  mh__block_t b;
};
struct mh_shared_array_s {
  mh__block_t b;
};

static size_t type_size(int type) {
  switch (type) {
  case MH_SHARED_INT8:
  case MH_SHARED_UINT8:
    return 1;
  case MH_SHARED_INT16:
  case MH_SHARED_UINT16:
    return 2;
  case MH_SHARED_INT32:
  case MH_SHARED_UINT32:
  case MH_SHARED_FLOAT:
    return 4;
  case MH_SHARED_INT64:
  case MH_SHARED_UINT64:
  case MH_SHARED_DOUBLE:
    return 8;
  default:
    return 0;
  }
}

static int is_float(int type) { return type == MH_SHARED_FLOAT || type == MH_SHARED_DOUBLE; }

static int block_new(mh__block_t **out, uint32_t kind, int type, size_t len,
                     const void *initial) {
  size_t elem = type_size(type);
  if (!out || !elem || len == 0) return MH_EINVAL;
  size_t off = (sizeof(mh__block_t) + MH__CACHE_LINE - 1) / MH__CACHE_LINE * MH__CACHE_LINE;
  if (len > (SIZE_MAX / 4 - off) / elem) return MH_EINVAL;
  void *mem;
  int rc = shm_map(&mem, off + len * elem, kind);
  if (rc) return rc;
  mh__block_t *b = mem;
  rc = mh_rlock_init_ex(&b->lock, MH_SYNC_PROCESS_SHARED);
  if (rc) {
    shm_unmap(shm_header(mem, kind));
    return rc;
  }
  b->type = type;
  b->len = len;
  b->elem = elem;
  b->data_off = off;
  if (initial) memcpy((char *)b + off, initial, len * elem);
  *out = b;
  return 0;
}

static int block_free(mh__block_t *b, uint32_t kind) {
  mh__shm_header_t *h = shm_header(b, kind);
  if (!h) return MH_EINVAL;
  if (is_creator(h)) mh_rlock_destroy(&b->lock);
  shm_unmap(h);
  return 0;
}

static void *elem_ptr(mh__block_t *b, size_t i) {
  return (char *)b + b->data_off + i * b->elem;
}

/* Take the block's lock; an owner that died is forgiven (see shared.h: each
 * element is written by one store, so none can be torn). */
static int block_lock(mh__block_t *b) {
  int rc = mh_rlock_acquire(&b->lock, MH_FOREVER);
  if (rc == MH_EOWNERDEAD) rc = mh_rlock_consistent(&b->lock);
  return rc;
}

static void block_unlock(mh__block_t *b) { mh_rlock_release(&b->lock); }

/* Relaxed atomic load of an integer element, as its exact value in the
 * widest types: signed ones into *s, unsigned ones into *u. */
static void load_int(int type, void *p, int64_t *s, uint64_t *u) {
  *s = 0;
  *u = 0;
  switch (type) {
  case MH_SHARED_INT8:
    *s = (int8_t)atomic_load_explicit((_Atomic uint8_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_UINT8:
    *u = atomic_load_explicit((_Atomic uint8_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_INT16:
    *s = (int16_t)atomic_load_explicit((_Atomic uint16_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_UINT16:
    *u = atomic_load_explicit((_Atomic uint16_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_INT32:
    *s = (int32_t)atomic_load_explicit((_Atomic uint32_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_UINT32:
    *u = atomic_load_explicit((_Atomic uint32_t *)p, memory_order_relaxed);
    break;
  case MH_SHARED_INT64:
    *s = (int64_t)atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
    break;
  default: /* MH_SHARED_UINT64 */
    *u = atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
    break;
  }
}

static int is_signed(int type) {
  return type == MH_SHARED_INT8 || type == MH_SHARED_INT16 || type == MH_SHARED_INT32 ||
         type == MH_SHARED_INT64;
}

/* Whether x fits the integer type. */
static int fits(int type, int64_t x) {
  switch (type) {
  case MH_SHARED_INT8:
    return x >= INT8_MIN && x <= INT8_MAX;
  case MH_SHARED_UINT8:
    return x >= 0 && x <= UINT8_MAX;
  case MH_SHARED_INT16:
    return x >= INT16_MIN && x <= INT16_MAX;
  case MH_SHARED_UINT16:
    return x >= 0 && x <= UINT16_MAX;
  case MH_SHARED_INT32:
    return x >= INT32_MIN && x <= INT32_MAX;
  case MH_SHARED_UINT32:
    return x >= 0 && x <= (int64_t)UINT32_MAX;
  case MH_SHARED_INT64:
    return 1;
  default: /* MH_SHARED_UINT64 */
    return x >= 0;
  }
}

/* Relaxed atomic store of an integer that fits the type. */
static void store_int(int type, void *p, int64_t x) {
  uint64_t u = (uint64_t)x;
  switch (type) {
  case MH_SHARED_INT8:
  case MH_SHARED_UINT8:
    atomic_store_explicit((_Atomic uint8_t *)p, (uint8_t)u, memory_order_relaxed);
    break;
  case MH_SHARED_INT16:
  case MH_SHARED_UINT16:
    atomic_store_explicit((_Atomic uint16_t *)p, (uint16_t)u, memory_order_relaxed);
    break;
  case MH_SHARED_INT32:
  case MH_SHARED_UINT32:
    atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)u, memory_order_relaxed);
    break;
  default:
    atomic_store_explicit((_Atomic uint64_t *)p, u, memory_order_relaxed);
    break;
  }
}

static int block_get_i64(mh__block_t *b, size_t i, int64_t *out) {
  if (!out || is_float(b->type)) return MH_EINVAL;
  if (i >= b->len) return MH_ERANGE;
  int rc = block_lock(b);
  if (rc) return rc;
  int64_t s;
  uint64_t u;
  load_int(b->type, elem_ptr(b, i), &s, &u);
  block_unlock(b);
  if (!is_signed(b->type)) {
    if (u > (uint64_t)INT64_MAX) return MH_ERANGE;
    s = (int64_t)u;
  }
  *out = s;
  return 0;
}

static int block_set_i64(mh__block_t *b, size_t i, int64_t x) {
  if (is_float(b->type)) return MH_EINVAL;
  if (i >= b->len || !fits(b->type, x)) return MH_ERANGE;
  int rc = block_lock(b);
  if (rc) return rc;
  store_int(b->type, elem_ptr(b, i), x);
  block_unlock(b);
  return 0;
}

static int block_get_double(mh__block_t *b, size_t i, double *out) {
  if (!out || !is_float(b->type)) return MH_EINVAL;
  if (i >= b->len) return MH_ERANGE;
  int rc = block_lock(b);
  if (rc) return rc;
  void *p = elem_ptr(b, i);
  if (b->type == MH_SHARED_FLOAT)
    *out = atomic_load_explicit((_Atomic float *)p, memory_order_relaxed);
  else
    *out = atomic_load_explicit((_Atomic double *)p, memory_order_relaxed);
  block_unlock(b);
  return 0;
}

static int block_set_double(mh__block_t *b, size_t i, double x) {
  if (!is_float(b->type)) return MH_EINVAL;
  if (i >= b->len) return MH_ERANGE;
  int rc = block_lock(b);
  if (rc) return rc;
  void *p = elem_ptr(b, i);
  if (b->type == MH_SHARED_FLOAT)
    atomic_store_explicit((_Atomic float *)p, (float)x, memory_order_relaxed);
  else
    atomic_store_explicit((_Atomic double *)p, x, memory_order_relaxed);
  block_unlock(b);
  return 0;
}

/* Lock-free fetch-and-add.  Unsigned arithmetic of the element's width makes
 * the wrap-around well defined; the old value is read back with the type's
 * signedness. */
static int block_add(mh__block_t *b, size_t i, int64_t delta, int64_t *old) {
  if (is_float(b->type)) return MH_EINVAL;
  if (i >= b->len) return MH_ERANGE;
  void *p = elem_ptr(b, i);
  uint64_t d = (uint64_t)delta, prev;
  int64_t sprev;
  switch (b->type) {
  case MH_SHARED_INT8:
  case MH_SHARED_UINT8:
    prev = atomic_fetch_add((_Atomic uint8_t *)p, (uint8_t)d);
    sprev = b->type == MH_SHARED_INT8 ? (int64_t)(int8_t)prev : (int64_t)prev;
    break;
  case MH_SHARED_INT16:
  case MH_SHARED_UINT16:
    prev = atomic_fetch_add((_Atomic uint16_t *)p, (uint16_t)d);
    sprev = b->type == MH_SHARED_INT16 ? (int64_t)(int16_t)prev : (int64_t)prev;
    break;
  case MH_SHARED_INT32:
  case MH_SHARED_UINT32:
    prev = atomic_fetch_add((_Atomic uint32_t *)p, (uint32_t)d);
    sprev = b->type == MH_SHARED_INT32 ? (int64_t)(int32_t)prev : (int64_t)prev;
    break;
  default:
    prev = atomic_fetch_add((_Atomic uint64_t *)p, d);
    sprev = (int64_t)prev;
    break;
  }
  if (old) *old = sprev;
  return 0;
}

/* ---- Value ------------------------------------------------------------------ */

int mh_shared_value_new(mh_shared_value_t **value, mh_shared_type_t type,
                        const void *initial) {
  if (!value) return MH_EINVAL;
  *value = NULL;
  mh__block_t *b;
  int rc = block_new(&b, MH__KIND_VALUE, (int)type, 1, initial);
  if (rc == 0) *value = (mh_shared_value_t *)b;
  return rc;
}

int mh_shared_value_free(mh_shared_value_t *value) {
  return value ? block_free(&value->b, MH__KIND_VALUE) : MH_EINVAL;
}

mh_rlock_t *mh_shared_value_get_lock(mh_shared_value_t *value) {
  return value ? &value->b.lock : NULL;
}

void *mh_shared_value_ptr(mh_shared_value_t *value) {
  return value ? elem_ptr(&value->b, 0) : NULL;
}

int mh_shared_value_type(const mh_shared_value_t *value) {
  return value ? value->b.type : MH_EINVAL;
}

int mh_shared_value_get_i64(mh_shared_value_t *value, int64_t *out) {
  return value ? block_get_i64(&value->b, 0, out) : MH_EINVAL;
}

int mh_shared_value_set_i64(mh_shared_value_t *value, int64_t x) {
  return value ? block_set_i64(&value->b, 0, x) : MH_EINVAL;
}

int mh_shared_value_get_double(mh_shared_value_t *value, double *out) {
  return value ? block_get_double(&value->b, 0, out) : MH_EINVAL;
}

int mh_shared_value_set_double(mh_shared_value_t *value, double x) {
  return value ? block_set_double(&value->b, 0, x) : MH_EINVAL;
}

int mh_shared_value_add(mh_shared_value_t *value, int64_t delta, int64_t *old) {
  return value ? block_add(&value->b, 0, delta, old) : MH_EINVAL;
}

/* ---- Array ------------------------------------------------------------------ */

int mh_shared_array_new(mh_shared_array_t **array, mh_shared_type_t type, size_t len,
                        const void *initial) {
  if (!array) return MH_EINVAL;
  *array = NULL;
  mh__block_t *b;
  int rc = block_new(&b, MH__KIND_ARRAY, (int)type, len, initial);
  if (rc == 0) *array = (mh_shared_array_t *)b;
  return rc;
}

int mh_shared_array_free(mh_shared_array_t *array) {
  return array ? block_free(&array->b, MH__KIND_ARRAY) : MH_EINVAL;
}

mh_rlock_t *mh_shared_array_get_lock(mh_shared_array_t *array) {
  return array ? &array->b.lock : NULL;
}

void *mh_shared_array_ptr(mh_shared_array_t *array) {
  return array ? elem_ptr(&array->b, 0) : NULL;
}

size_t mh_shared_array_len(const mh_shared_array_t *array) { return array ? array->b.len : 0; }

int mh_shared_array_type(const mh_shared_array_t *array) {
  return array ? array->b.type : MH_EINVAL;
}

int mh_shared_array_get_i64(mh_shared_array_t *array, size_t i, int64_t *out) {
  return array ? block_get_i64(&array->b, i, out) : MH_EINVAL;
}

int mh_shared_array_set_i64(mh_shared_array_t *array, size_t i, int64_t x) {
  return array ? block_set_i64(&array->b, i, x) : MH_EINVAL;
}

int mh_shared_array_get_double(mh_shared_array_t *array, size_t i, double *out) {
  return array ? block_get_double(&array->b, i, out) : MH_EINVAL;
}

int mh_shared_array_set_double(mh_shared_array_t *array, size_t i, double x) {
  return array ? block_set_double(&array->b, i, x) : MH_EINVAL;
}

int mh_shared_array_add(mh_shared_array_t *array, size_t i, int64_t delta, int64_t *old) {
  return array ? block_add(&array->b, i, delta, old) : MH_EINVAL;
}

/* ---- standalone primitives -------------------------------------------------- */

/* Map a primitive of `size` bytes; on a failed init, unmap it again. */
#define MH__SHARED_NEW(out, type, kind, init_call)        \
  do {                                                    \
    if (!(out)) return MH_EINVAL;                         \
    *(out) = NULL;                                        \
    void *mem_;                                           \
    int rc_ = shm_map(&mem_, sizeof(type), (kind));       \
    if (rc_) return rc_;                                  \
    type *obj = mem_;                                     \
    rc_ = (init_call);                                    \
    if (rc_) {                                            \
      shm_unmap(shm_header(mem_, (kind)));                \
      return rc_;                                         \
    }                                                     \
    *(out) = obj;                                         \
    return 0;                                             \
  } while (0)

#define MH__SHARED_FREE(obj, kind, destroy_call) \
  do {                                           \
    mh__shm_header_t *h_ = shm_header((obj), (kind)); \
    if (!h_) return MH_EINVAL;                   \
    if (is_creator(h_)) (void)(destroy_call);    \
    shm_unmap(h_);                               \
    return 0;                                    \
  } while (0)

int mh_shared_lock_new(mh_lock_t **out) {
  MH__SHARED_NEW(out, mh_lock_t, MH__KIND_LOCK, mh_lock_init_ex(obj, MH_SYNC_PROCESS_SHARED));
}

int mh_shared_lock_free(mh_lock_t *lock) {
  MH__SHARED_FREE(lock, MH__KIND_LOCK, mh_lock_destroy(lock));
}

int mh_shared_rlock_new(mh_rlock_t **out) {
  MH__SHARED_NEW(out, mh_rlock_t, MH__KIND_RLOCK,
                 mh_rlock_init_ex(obj, MH_SYNC_PROCESS_SHARED));
}

int mh_shared_rlock_free(mh_rlock_t *rlock) {
  MH__SHARED_FREE(rlock, MH__KIND_RLOCK, mh_rlock_destroy(rlock));
}

int mh_shared_sem_new(mh_sem_t **out, unsigned long value, unsigned long bound) {
  MH__SHARED_NEW(out, mh_sem_t, MH__KIND_SEM,
                 mh_sem_init_ex(obj, value, bound, MH_SYNC_PROCESS_SHARED));
}

int mh_shared_sem_free(mh_sem_t *sem) { MH__SHARED_FREE(sem, MH__KIND_SEM, mh_sem_destroy(sem)); }

int mh_shared_event_new(mh_event_t **out) {
  MH__SHARED_NEW(out, mh_event_t, MH__KIND_EVENT, mh_event_init_ex(obj, MH_SYNC_PROCESS_SHARED));
}

int mh_shared_event_free(mh_event_t *ev) {
  MH__SHARED_FREE(ev, MH__KIND_EVENT, mh_event_destroy(ev));
}

int mh_shared_cond_new(mh_cond_t **out) {
  MH__SHARED_NEW(out, mh_cond_t, MH__KIND_COND,
                 mh_cond_init_ex(obj, NULL, MH_SYNC_PROCESS_SHARED));
}

int mh_shared_cond_free(mh_cond_t *cond) {
  MH__SHARED_FREE(cond, MH__KIND_COND, mh_cond_destroy(cond));
}

int mh_shared_barrier_new(mh_barrier_t **out, unsigned parties, mh_barrier_action_fn action,
                          void *action_arg, double timeout) {
  MH__SHARED_NEW(out, mh_barrier_t, MH__KIND_BARRIER,
                 mh_barrier_init_ex(obj, parties, action, action_arg, timeout,
                                    MH_SYNC_PROCESS_SHARED));
}

int mh_shared_barrier_free(mh_barrier_t *b) {
  MH__SHARED_FREE(b, MH__KIND_BARRIER, mh_barrier_destroy(b));
}
