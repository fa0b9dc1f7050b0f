/* SPDX-License-Identifier: MIT */
/* forkjoin.c - task groups, parallel_for and parallel_reduce over a thread
 * executor's fork-join support (help-first waits, work-stealing deques; see
 * executor_threads.c).
 *
 * Groups are built from mh_executor_submit and waits.  parallel_for and
 * parallel_reduce are built from spawn records (mh_spawn, in
 * executor_threads.c): a node that splits a range spawns one half (onto its
 * worker's deque) and runs the other itself, then joins the first, running
 * it on the spot unless a thief took it.  Nodes of the split tree, their
 * spawn records and their accumulators live on the stack of the node that
 * joins them, so a split allocates nothing.
 *
 * Task groups.  `live` counts the members submitted and not yet ended; its
 * top bit (WAITBIT) says an outside waiter sleeps on it with a futex.  A
 * member's last touch of the group is the decrement (and, when it reached
 * zero with WAITBIT set, a futex wake on the word's address, which is
 * harmless even if the group was freed meanwhile: the kernel only looks the
 * address up).  So once live is 0 nothing refers to the group, and
 * mh_task_group_free refuses while it is not 0: no member outlives it.
 *
 * Invariants: live counts exactly the members whose trampoline has not
 * passed its decrement; `first` changes once, from 0 to a failing code.
 *
 * Who may touch what (tags of mh_task_group_s):
 *   I: set by mh_task_group_new, read-only after.
 *   A: atomic; any thread.
 *
 * Lock order: no locks here; waits go through spin.h and the worker's
 * mh__helper.
 */
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "executor_internal.h"
#include "internal.h"
#include "spin.h"

/* ---- helping waits on a counter ---------------------------------------- */

#define WAITBIT 0x80000000u

/* Wait until (*word & ~WAITBIT) == 0.  A worker helps; other threads spin a
 * little, then sleep on the word with WAITBIT set. */
static void wait_zero(_Atomic uint32_t *word) {
  mh__helper_fn help = mh__helper;
  const mh__spin_policy_t pol = help ? MH__SPIN_HELP_WAIT : MH__SPIN_FUTURE_WAIT;
  mh__spin_t sp = MH__SPIN_INIT;
  uint32_t v;
  while ((v = atomic_load_explicit(word, memory_order_acquire)) & ~WAITBIT) {
    if (help && help()) {
      mh__spin_reset(&sp);
      continue;
    }
    if (mh__spin_again(&sp, &pol)) continue;
    if (!(v & WAITBIT)) {
      if (!atomic_compare_exchange_weak(word, &v, v | WAITBIT)) continue;
      v |= WAITBIT;
    }
    mh__deadline_t dl;
    mh__deadline_init(&dl, help ? MH__HELP_NAP : MH_FOREVER);
    mh__futex_wait((void *)(uintptr_t)word, v, &dl, MH__FUTEX_PRIVATE);
    mh__spin_reset(&sp);
  }
}

/* ---- task groups -------------------------------------------------------- */

struct mh_task_group_s {
  mh_executor_t *ex;      /* I */
  _Atomic uint32_t live;  /* A: members not yet ended, and WAITBIT */
  _Atomic int cancelled;  /* A: 0 or 1 */
  _Atomic int first;      /* A: the first failing member's code, or 0 */
};

/* A member on its way to a worker (heap: it outlives mh_task_group_run). */
typedef struct {
  mh_task_group_t *g;
  mh_group_fn fn;
  void *arg;
} member_t;

static void member_end(mh_task_group_t *g) {
  uint32_t old = atomic_fetch_sub_explicit(&g->live, 1, memory_order_acq_rel);
  if ((old & ~WAITBIT) == 1 && (old & WAITBIT))
    mh__futex_wake((void *)(uintptr_t)&g->live, INT_MAX, MH__FUTEX_PRIVATE);
}

static int member_task(const void *in, size_t in_size, void *out, size_t out_size,
                       void *ctx) {
  (void)in_size;
  (void)out;
  (void)out_size;
  (void)ctx;
  member_t m = *(const member_t *)in;
  mh__free((void *)(uintptr_t)in);
  int rc = MH_ECANCELED;
  if (!atomic_load_explicit(&m.g->cancelled, memory_order_relaxed)) {
    rc = m.fn(m.arg, m.g);
    if (rc) {
      int zero = 0;
      atomic_compare_exchange_strong(&m.g->first, &zero, rc);
    }
  }
  member_end(m.g);
  return rc;
}

int mh_task_group_new(mh_task_group_t **out, mh_executor_t *ex) {
  if (!out || !ex) return MH_EINVAL;
  mh_task_group_t *g = mh__calloc(1, sizeof *g);
  if (!g) return MH_ENOMEM;
  g->ex = ex;
  *out = g;
  return 0;
}

int mh_task_group_run(mh_task_group_t *g, mh_group_fn fn, void *arg) {
  if (!g || !fn) return MH_EINVAL;
  if (atomic_load_explicit(&g->cancelled, memory_order_relaxed)) return MH_ECANCELED;
  member_t *m = mh__malloc(sizeof *m);
  if (!m) return MH_ENOMEM;
  m->g = g;
  m->fn = fn;
  m->arg = arg;
  atomic_fetch_add_explicit(&g->live, 1, memory_order_relaxed);
  mh_future_t *f;
  int rc = mh_executor_submit(g->ex, member_task, m, sizeof *m, NULL, 0, NULL, &f);
  if (rc) {
    mh__free(m);
    member_end(g);
    return rc;
  }
  /* The backend holds the future until the member ends. */
  mh_future_release(f);
  return 0;
}

int mh_task_group_wait(mh_task_group_t *g) {
  if (!g) return MH_EINVAL;
  wait_zero(&g->live);
  int first = atomic_load(&g->first);
  if (first) return first;
  return atomic_load(&g->cancelled) ? MH_ECANCELED : 0;
}

int mh_task_group_cancel(mh_task_group_t *g) {
  if (!g) return MH_EINVAL;
  atomic_store(&g->cancelled, 1);
  return 0;
}

int mh_task_group_cancelled(const mh_task_group_t *g) {
  return g ? atomic_load_explicit(&g->cancelled, memory_order_relaxed) : 0;
}

int mh_task_group_free(mh_task_group_t *g) {
  if (!g) return 0;
  if (atomic_load_explicit(&g->live, memory_order_acquire) & ~WAITBIT) return MH_EBUSY;
  mh__free(g);
  return 0;
}

/* ---- running a split tree from anywhere -------------------------------- */

/* Run the root node fn(arg) on ex: here when this thread is one of ex's
 * workers (the tree then grows on its deque), else handed to a worker as a
 * root record the caller waits for (no future: a first parallel_for in a
 * process used to fault in a 2 MiB slab of futures for its one future, and
 * an idle worker a spare one, inside the loop's time). */
static int run_root(mh_executor_t *ex, mh_spawn_fn fn, void *arg) {
  if (mh_executor_backend(ex) != MH_BACKEND_THREADS) return MH_ENOTSUP;
  if (mh__worker_executor() == ex) return fn(arg);
  return mh__threads_run_outside(ex, fn, arg, 0, NULL, NULL);
}

/* ---- parallel_for ------------------------------------------------------- */

typedef struct {
  mh_executor_t *ex;
  size_t lo, hi, grain;
  mh_range_fn body;
  void *ctx;
} pf_node_t;

static int pf_run(void *arg) {
  const pf_node_t *n = arg;
  if (n->hi - n->lo <= n->grain) return n->body(n->lo, n->hi, n->ctx);
  pf_node_t left = *n, right = *n;
  left.hi = right.lo = n->lo + (n->hi - n->lo) / 2;
  mh_spawn_t t;
  (void)mh_spawn(n->ex, &t, pf_run, &right); /* cannot fail: all set */
  int lrc = pf_run(&left);
  int rrc = mh_spawn_join(&t);
  return lrc ? lrc : rrc;
}

int mh_parallel_for(mh_executor_t *ex, size_t begin, size_t end, size_t grain,
                    mh_range_fn body, void *ctx) {
  if (!ex || !body || end < begin) return MH_EINVAL;
  if (end == begin) return 0;
  size_t n = end - begin;
  if (grain == 0) {
    /* About 8 chunks per worker: enough for stealing to even out a load
     * imbalance, few enough that splitting costs nothing beside the body. */
    int w = mh_executor_workers(ex);
    grain = n / ((size_t)(w > 0 ? w : 1) * 8);
    if (grain == 0) grain = 1;
  }
  pf_node_t root = {ex, begin, end, grain, body, ctx};
  return run_root(ex, pf_run, &root);
}

/* ---- parallel_reduce ---------------------------------------------------- */

typedef struct {
  mh_executor_t *ex;
  size_t grain, acc_size;
  const void *identity;
  mh_reduce_leaf_fn leaf;
  mh_reduce_join_fn join;
  void *ctx;
} rd_shared_t;

/* A node of the split tree and where its result goes. */
typedef struct {
  const rd_shared_t *sh;
  size_t lo, hi;
  void *acc;
} rd_node_t;

typedef struct {
  alignas(max_align_t) unsigned char b[MH_REDUCE_MAX_ACC];
} rd_acc_t;

/* The split points depend on lo, hi and grain only: the tree, and so the
 * order of every join, is the same whoever runs which node. */
static int rd_run(void *arg) {
  const rd_node_t *n = arg;
  const rd_shared_t *sh = n->sh;
  if (n->hi - n->lo <= sh->grain) {
    memcpy(n->acc, sh->identity, sh->acc_size);
    return sh->leaf(n->lo, n->hi, n->acc, sh->ctx);
  }
  rd_acc_t racc;
  rd_node_t left = *n, right = *n;
  left.hi = right.lo = n->lo + (n->hi - n->lo) / 2;
  right.acc = racc.b;
  mh_spawn_t t;
  (void)mh_spawn(sh->ex, &t, rd_run, &right); /* cannot fail: all set */
  int lrc = rd_run(&left);
  int rrc = mh_spawn_join(&t);
  if (lrc || rrc) return lrc ? lrc : rrc;
  sh->join(n->acc, racc.b, sh->ctx);
  return 0;
}

int mh_parallel_reduce(mh_executor_t *ex, size_t begin, size_t end, size_t grain,
                       size_t acc_size, const void *identity, mh_reduce_leaf_fn leaf,
                       mh_reduce_join_fn join, void *ctx, void *result) {
  if (!ex || !identity || !leaf || !join || !result || end < begin || acc_size == 0 ||
      acc_size > MH_REDUCE_MAX_ACC)
    return MH_EINVAL;
  size_t n = end - begin;
  if (grain == 0) {
    /* From the range alone, never from the worker count. */
    grain = (n + 4095) / 4096;
    if (grain < 1024) grain = 1024;
  }
  rd_shared_t sh = {ex, grain, acc_size, identity, leaf, join, ctx};
  rd_acc_t acc;
  rd_node_t root = {&sh, begin, end, acc.b};
  int rc = run_root(ex, rd_run, &root);
  if (!rc) memcpy(result, acc.b, acc_size);
  return rc;
}
