/* SPDX-License-Identifier: MIT */
/* pi.c - the Monte Carlo pi job: streams, kernel dispatch, the plan of
 * blocks, and mh_pi_run on any executor.
 *
 * Invariants:
 *  - The count of a block is a pure function of (seed, block, npoints)
 *    (pi_stream.h defines the stream); which kernel computes it, on which
 *    worker, in which order, changes nothing.
 *  - A run of n points is blocks 0 .. ceil(n / MH_PI_BLOCK_POINTS) - 1, all
 *    full but the last; the split does not depend on the worker count.
 *  - mh_pi_run keeps at most a fixed window of blocks in flight; its memory
 *    does not depend on n.
 *
 * Two ways to run the blocks, with the same counts:
 *  - Thread executors: one root handed to a worker splits the block
 *    range in halves down to single blocks with spawn records (mh_spawn),
 *    so the workers balance the load by stealing and never wait for the
 *    caller; the tail is at most one block per worker.  The caller only
 *    waits, waking to report progress (a counter the leaves add to) and to
 *    poll the cancel flag (which sets `stop`, which every node reads before
 *    it splits or counts).  From outside the executor the root goes without
 *    a future (mh__threads_run_outside: no slab of futures to fault in, none
 *    for an idle worker to prepare at the tail); from one of its workers,
 *    as a task whose future the caller waits for, helping.
 *  - Other backends (processes, MPI): the window below, where the caller
 *    keeps a fixed number of multi-block tasks in flight and takes each
 *    one's count as it completes, in any order (a worker process cannot
 *    spawn, and a dead worker's task is submitted again in its slot).
 */
#include <math.h>
#include <signal.h>
#include <string.h>

#include "../executor/executor_internal.h"
#include "../executor/future.h"
#include "../internal.h"
#include "../trace_internal.h"
#include "pi_internal.h"

#ifdef MH_TEST_HOOKS
/* Test builds only (manyhands_test): see pi_internal.h. */
int mh__pi_test_broken_streams = 0;
unsigned mh__pi_test_disabled_kernels = 0;
uint64_t mh__pi_test_kill_block = 0;
int *mh__pi_test_kill_armed = NULL;
#define TEST_HOOK(stmt) stmt
#else
#define TEST_HOOK(stmt)
#endif

/* The golden-ratio increment of SplitMix64. */
#define MH__PI_GAMMA UINT64_C(0x9e3779b97f4a7c15)
/* Generators per block: 16 lanes and the auxiliary one. */
#define MH__PI_GENS (MH__PI_LANES + 1)

/* Generator j of `block` is seeded with four consecutive SplitMix64 outputs
 * of a sequence started at mix64(seed), at offset 4 * (block * 17 + j).  The
 * windows of different (block, j) in one run never overlap, and SplitMix64's
 * outputs within one sequence are all distinct (the output function is a
 * bijection of distinct inputs), so no two generators of a run start from the
 * same state, and no state is all zero.  This is the seeding Vigna recommends
 * for the xoshiro family. */
void mh__pi_stream_init(mh__pi_stream_t *st, uint64_t seed, uint64_t block) {
  uint64_t base = mh__pi_mix64(seed);
  TEST_HOOK(if (mh__pi_test_broken_streams) block = 0;)
  for (int j = 0; j < MH__PI_GENS; j++) {
    uint64_t z = base + (block * MH__PI_GENS + (uint64_t)j) * 4 * MH__PI_GAMMA;
    for (int w = 0; w < 4; w++) {
      uint64_t v = mh__pi_mix64(z + (uint64_t)(w + 1) * MH__PI_GAMMA);
      if (j < MH__PI_LANES)
        st->s[w][j] = v;
      else
        st->aux[w] = v;
    }
  }
}

uint64_t mh_pi_repeat_seed(uint64_t seed, uint64_t rep) {
  if (rep == 0) return seed;
  return mh__pi_mix64(mh__pi_mix64(seed ^ UINT64_C(0x5851f42d4c957f2d)) +
                      rep * MH__PI_GAMMA);
}

/* ---- kernels ------------------------------------------------------------ */

static const char *const kernel_names[] = {"auto", "scalar", "avx2", "avx512"};

const char *mh_pi_kernel_name(mh_pi_kernel_t kernel) {
  if ((int)kernel < 0 || (int)kernel > (int)MH_PI_KERNEL_AVX512) return NULL;
  return kernel_names[kernel];
}

int mh_pi_kernel_parse(const char *name, mh_pi_kernel_t *kernel) {
  if (!name || !kernel) return MH_EINVAL;
  for (int k = 0; k <= (int)MH_PI_KERNEL_AVX512; k++) {
    if (strcmp(name, kernel_names[k]) == 0) {
      *kernel = (mh_pi_kernel_t)k;
      return 0;
    }
  }
  return MH_EINVAL;
}

int mh_pi_kernel_supported(mh_pi_kernel_t kernel) {
  switch (kernel) {
  case MH_PI_KERNEL_AUTO:
  case MH_PI_KERNEL_SCALAR:
    return 1;
  case MH_PI_KERNEL_AVX2:
    TEST_HOOK(if (mh__pi_test_disabled_kernels & (1u << MH_PI_KERNEL_AVX2)) return 0;)
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's and compiler-rt's checks include the OS's XSAVE support. */
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
  case MH_PI_KERNEL_AVX512:
    TEST_HOOK(if (mh__pi_test_disabled_kernels & (1u << MH_PI_KERNEL_AVX512)) return 0;)
#if defined(__x86_64__) || defined(__i386__)
    return (__builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw")) ? 1 : 0;
#else
    return 0;
#endif
  }
  return 0;
}

mh_pi_kernel_t mh_pi_kernel_best(void) {
  if (mh_pi_kernel_supported(MH_PI_KERNEL_AVX512)) return MH_PI_KERNEL_AVX512;
  if (mh_pi_kernel_supported(MH_PI_KERNEL_AVX2)) return MH_PI_KERNEL_AVX2;
  return MH_PI_KERNEL_SCALAR;
}

/* AUTO -> the best; an unknown or unsupported kernel -> MH_EINVAL or
 * MH_ENOTSUP. */
static int resolve_kernel(mh_pi_kernel_t kernel, mh_pi_kernel_t *out) {
  if ((int)kernel < 0 || (int)kernel > (int)MH_PI_KERNEL_AVX512)
    return MH_EINVAL;
  if (kernel == MH_PI_KERNEL_AUTO) kernel = mh_pi_kernel_best();
  if (!mh_pi_kernel_supported(kernel)) return MH_ENOTSUP;
  *out = kernel;
  return 0;
}

/* Count a block with a resolved kernel.  Every backend counts its blocks
 * here, so a trace shows each block once as a `block` slice (index: the
 * block, items: its points) on the track of whoever counted it, inside the
 * task, spawn or rank thread that ran it. */
static uint64_t count_block(uint64_t seed, uint64_t block, uint64_t npoints,
                            mh_pi_kernel_t kernel) {
  uint64_t t0 = mh__trace_begin(), inside;
  mh__pi_stream_t st;
  mh__pi_stream_init(&st, seed, block);
  switch (kernel) {
  case MH_PI_KERNEL_AVX512:
    inside = mh__pi_kernel_avx512(&st, npoints);
    break;
  case MH_PI_KERNEL_AVX2:
    inside = mh__pi_kernel_avx2(&st, npoints);
    break;
  default:
    inside = mh__pi_kernel_scalar(&st, npoints);
  }
  mh__trace_end(t0, MH__TR_BLOCK, block, npoints, 0);
  return inside;
}

int mh_pi_count_block(uint64_t seed, uint64_t block, uint64_t npoints,
                      mh_pi_kernel_t kernel, uint64_t *inside) {
  if (!inside || npoints == 0 || npoints > MH_PI_BLOCK_POINTS)
    return MH_EINVAL;
  mh_pi_kernel_t k;
  int rc = resolve_kernel(kernel, &k);
  if (rc) return rc;
  *inside = count_block(seed, block, npoints, k);
  return 0;
}

void mh_pi_estimate(uint64_t inside, uint64_t n, double *pi,
                    double *stderr_pi) {
  double p = n ? (double)inside / (double)n : 0.0;
  if (pi) *pi = 4.0 * p;
  if (stderr_pi) *stderr_pi = n ? 4.0 * sqrt(p * (1.0 - p) / (double)n) : 0.0;
}

void mh_pi_options_init(mh_pi_options_t *opts) {
  if (!opts) return;
  memset(opts, 0, sizeof *opts);
  opts->seed = MH_PI_DEFAULT_SEED;
  opts->kernel = MH_PI_KERNEL_AUTO;
}

/* ---- the plan ----------------------------------------------------------- */

/* Largest n: 2^63 - 1 (so that n, block counts and sums fit in int64). */
#define MH__PI_MAX_N ((UINT64_C(1) << 63) - 1)

int mh__pi_plan(uint64_t n, int workers, mh__pi_plan_t *plan) {
  if (!plan || n == 0 || n > MH__PI_MAX_N || workers < 1) return MH_EINVAL;
  plan->n = n;
  plan->nblocks = (n - 1) / MH_PI_BLOCK_POINTS + 1; /* no overflow */
  plan->last_points = n - (plan->nblocks - 1) * MH_PI_BLOCK_POINTS;
  /* Several blocks per task amortise the cost of a submission, but at least
   * ~16 tasks per worker keep the load balanced, and a cap keeps
   * cancellation prompt.  On the process backend each task costs the
   * parent's threads two or three wake-ups, and on a machine with as many
   * cores as workers each of those preempts a worker.  With at most 8
   * blocks a task (9 ms), 2 workers took ~1,100 involuntary context
   * switches at N = 1e10 and reached 95.8% of twice the 1-worker rate at
   * N = 2e10; with 32, ~750 and 97.7% (bench/pi.sh).  The last tasks are
   * smaller still (mh_pi_run), so the tail does not grow. */
  uint64_t per = plan->nblocks / ((uint64_t)workers * 16);
  if (per < 1) per = 1;
  if (per > MH__PI_MAX_TASK_BLOCKS) per = MH__PI_MAX_TASK_BLOCKS;
  plan->blocks_per_task = per;
  /* At least this many tasks (mh_pi_run makes the last ones smaller). */
  plan->ntasks = (plan->nblocks - 1) / per + 1;
  /* In flight: enough that every worker has a task queued behind the one it
   * runs while the caller takes a result and refills. */
  uint64_t window = (uint64_t)workers * 2 + 2;
  if (window > plan->ntasks) window = plan->ntasks;
  plan->window = (size_t)window;
  return 0;
}

/* ---- mh_pi_run ---------------------------------------------------------- */

/* What a task receives: plain data only, so the process backend can copy it
 * and a worker in another address space can run it. */
typedef struct pi_task_in {
  uint64_t seed;
  uint64_t first_block;
  uint64_t nblocks;     /* blocks in this task */
  uint64_t last_points; /* points of its last block */
  int32_t kernel;       /* resolved, never AUTO */
} pi_task_in_t;

/* What a task returns, one cache line each, so that workers finishing
 * neighbouring slots never write the same line. */
typedef struct pi_task_out {
  _Alignas(MH__CACHE_LINE) uint64_t inside;
  uint64_t points;
} pi_task_out_t;

typedef struct pi_slot {
  pi_task_out_t out; /* written by the worker */
  _Alignas(MH__CACHE_LINE) pi_task_in_t in;
  mh_future_t *fut; /* NULL when free */
  unsigned reruns;  /* times this task was submitted again */
} pi_slot_t;

_Static_assert(sizeof(pi_task_out_t) == MH__CACHE_LINE &&
                   sizeof(pi_slot_t) % MH__CACHE_LINE == 0,
               "task outputs must each fill one cache line");

static int pi_task(const void *in, size_t in_size, void *out, size_t out_size,
                   void *ctx) {
  MH__UNUSED(ctx);
  if (!in || !out || in_size != sizeof(pi_task_in_t) ||
      out_size != sizeof(pi_task_out_t))
    return MH_EINVAL;
  const pi_task_in_t *t = in;
  pi_task_out_t *o = out;
  mh_pi_kernel_t k = (mh_pi_kernel_t)t->kernel;
  if (k == MH_PI_KERNEL_AUTO || !mh_pi_kernel_supported(k)) return MH_ENOTSUP;
  uint64_t inside = 0, points = 0;
  for (uint64_t i = 0; i < t->nblocks; i++) {
    uint64_t np = i + 1 == t->nblocks ? t->last_points : MH_PI_BLOCK_POINTS;
#ifdef MH_TEST_HOOKS
    if (mh__pi_test_kill_armed && t->first_block + i == mh__pi_test_kill_block &&
        __atomic_exchange_n(mh__pi_test_kill_armed, 0, __ATOMIC_SEQ_CST))
      raise(SIGKILL);
#endif
    inside += count_block(t->seed, t->first_block + i, np, k);
    points += np;
  }
  o->inside = inside;
  o->points = points;
  return 0;
}

static void fill_result(mh_pi_result_t *res, uint64_t inside, uint64_t done) {
  res->inside = inside;
  res->done = done;
  mh_pi_estimate(inside, done, &res->pi, &res->stderr_pi);
  res->abs_error = done ? fabs(res->pi - M_PI) : 0.0;
}

/* Points below which a run of a single block is counted on the calling
 * thread: a hand-off to a worker would cost more than the work. */
#define MH__PI_INLINE_POINTS (UINT64_C(1) << 16)
/* How often progress is reported and the cancel flag polled (seconds). */
#define MH__PI_TICK 0.05
#define MH__PI_CANCEL_POLL 0.01

/* A task whose worker died (a process worker killed, say by the OOM killer
 * or a user's kill -9) is submitted again: a task is a pure function of
 * (seed, blocks), so its re-run counts exactly what the first run would have.
 * The bound only keeps a task that kills every worker it meets (a broken
 * kernel, a machine out of memory) from looping for ever. */
#define MH__PI_RERUNS 64u

/* Cancel every task of the window that has not started (those done or
 * running are left as they are). */
static void pi_cancel_all(pi_slot_t *slots, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (slots[i].fut) (void)mh_future_cancel(slots[i].fut);
}

static int pi_submit(mh_executor_t *ex, pi_slot_t *s) {
  s->out.inside = 0;
  s->out.points = 0;
  int rc = mh_executor_submit(ex, pi_task, &s->in, sizeof s->in, &s->out,
                              sizeof s->out, NULL, &s->fut);
  if (rc) s->fut = NULL;
  return rc;
}

/* The cancel flag is written by another thread or a signal handler: read it
 * atomically (a plain volatile read is a data race for C11 and TSan). */
static int cancelled(const mh_pi_options_t *opts) {
  return opts->cancel && __atomic_load_n(opts->cancel, __ATOMIC_RELAXED);
}

/* ---- the thread backend: a fork-join tree of blocks ---------------------- */

/* Shared by the nodes of one run.  `done` is added to by the leaves (one
 * relaxed add per block, so a few hundred per second per worker) and read
 * by the caller for progress; it sits on its own line so that the leaves'
 * adds do not disturb the read-only fields the nodes load. */
typedef struct {
  uint64_t seed, nblocks, last_points;
  mh_pi_kernel_t kernel;
  mh_executor_t *ex;
  _Alignas(MH__CACHE_LINE) uint64_t done; /* atomic: points counted */
  int stop;                               /* atomic: 1 once cancelled */
} pi_fj_t;

/* A node: blocks lo..hi-1, and what they counted. */
typedef struct {
  pi_fj_t *sh;
  uint64_t lo, hi;
  uint64_t inside, points;
} pi_fj_node_t;

/* Only the caller reads opts->cancel (as on the ring path: a caller may
 * write the flag plainly, from its progress callback); it sets `stop`. */
static int pi_fj_stopped(const pi_fj_t *sh) {
  return __atomic_load_n(&sh->stop, __ATOMIC_RELAXED);
}

static int pi_fj_node(void *arg) {
  pi_fj_node_t *n = arg;
  pi_fj_t *sh = n->sh;
  n->inside = n->points = 0;
  if (pi_fj_stopped(sh)) return MH_ECANCELED;
  if (n->hi - n->lo == 1) {
    uint64_t np = n->lo + 1 == sh->nblocks ? sh->last_points : MH_PI_BLOCK_POINTS;
    n->inside = count_block(sh->seed, n->lo, np, sh->kernel);
    n->points = np;
    __atomic_fetch_add(&sh->done, np, __ATOMIC_RELAXED);
    return 0;
  }
  /* The split depends on lo and hi only.  The right half is spawned: a
   * thief takes the oldest (largest) pieces first, the owner works down
   * the left. */
  uint64_t mid = n->lo + (n->hi - n->lo) / 2;
  pi_fj_node_t left = {sh, n->lo, mid, 0, 0}, right = {sh, mid, n->hi, 0, 0};
  mh_spawn_t t;
  (void)mh_spawn(sh->ex, &t, pi_fj_node, &right); /* cannot fail: all set */
  int lrc = pi_fj_node(&left);
  int rrc = mh_spawn_join(&t);
  /* Cancelled halves still report the whole blocks they counted. */
  n->inside = left.inside + right.inside;
  n->points = left.points + right.points;
  return lrc ? lrc : rrc;
}

typedef struct {
  pi_fj_t *sh;
} pi_fj_root_in_t;

static int pi_fj_root(const void *in, size_t in_size, void *out, size_t out_size,
                      void *ctx) {
  MH__UNUSED(in_size);
  MH__UNUSED(out_size);
  MH__UNUSED(ctx);
  const pi_fj_root_in_t *r = in;
  pi_fj_node_t *root = out;
  root->sh = r->sh;
  root->lo = 0;
  root->hi = r->sh->nblocks;
  return pi_fj_node(root);
}

/* The caller's wake-ups while a root from outside runs: progress when due,
 * and the cancel flag. */
typedef struct {
  const mh_pi_options_t *opts;
  pi_fj_t *sh;
  double next_tick;
} pi_fj_ticker_t;

static void pi_fj_tick(void *arg) {
  pi_fj_ticker_t *tk = arg;
  const mh_pi_options_t *opts = tk->opts;
  if (opts->progress && mh__now() >= tk->next_tick) {
    opts->progress(__atomic_load_n(&tk->sh->done, __ATOMIC_RELAXED), opts->n,
                   opts->progress_arg);
    tk->next_tick = mh__now() + MH__PI_TICK;
  }
  if (cancelled(opts)) __atomic_store_n(&tk->sh->stop, 1, __ATOMIC_RELAXED);
}

static int pi_run_forkjoin(mh_executor_t *ex, const mh_pi_options_t *opts,
                           const mh__pi_plan_t *plan, mh_pi_kernel_t kernel,
                           mh_pi_result_t *res, double t0) {
  pi_fj_t sh;
  memset(&sh, 0, sizeof sh);
  sh.seed = opts->seed;
  sh.nblocks = plan->nblocks;
  sh.last_points = plan->last_points;
  sh.kernel = kernel;
  sh.ex = ex;
  if (cancelled(opts)) sh.stop = 1;
  if (mh__worker_executor() != ex) {
    pi_fj_node_t root = {&sh, 0, sh.nblocks, 0, 0};
    pi_fj_ticker_t tk = {opts, &sh, t0 + MH__PI_TICK};
    double tick = opts->cancel ? MH__PI_CANCEL_POLL : MH__PI_TICK;
    int rc = mh__threads_run_outside(ex, pi_fj_node, &root, tick,
                                     opts->progress || opts->cancel ? pi_fj_tick : NULL, &tk);
    /* A root that never ran (a shutdown, a cancelling shutdown) counted
     * nothing: root still holds zeros then. */
    fill_result(res, root.inside, root.points);
    res->seconds = mh__now() - t0;
    if (rc == 0 && opts->progress) opts->progress(root.points, opts->n, opts->progress_arg);
    return rc;
  }
  pi_fj_root_in_t in = {&sh};
  pi_fj_node_t root = {&sh, 0, 0, 0, 0};
  mh_future_t *f;
  int rc = mh_executor_submit(ex, pi_fj_root, &in, sizeof in, &root, sizeof root, NULL, &f);
  if (rc) {
    fill_result(res, 0, 0);
    res->seconds = mh__now() - t0;
    return rc;
  }
  pi_fj_ticker_t tk = {opts, &sh, t0 + MH__PI_TICK};
  for (;;) {
    double timeout = MH_FOREVER;
    if (opts->progress) {
      timeout = tk.next_tick - mh__now();
      if (timeout < 0) timeout = 0;
    }
    if (opts->cancel && (timeout == MH_FOREVER || timeout > MH__PI_CANCEL_POLL))
      timeout = MH__PI_CANCEL_POLL;
    if (mh_future_wait(f, timeout) == 0) break;
    pi_fj_tick(&tk);
  }
  rc = mh_future_result(f, 0);
  mh_future_release(f);
  /* The root's output is written whenever the task ran, cancelled or not;
   * a task cancelled before it ran (a cancelling shutdown) wrote nothing. */
  if (rc == MH_ECANCELED && root.sh != &sh) root.inside = root.points = 0;
  fill_result(res, root.inside, root.points);
  res->seconds = mh__now() - t0;
  if (rc == 0 && opts->progress) opts->progress(root.points, opts->n, opts->progress_arg);
  return rc;
}

int mh_pi_run(mh_executor_t *ex, const mh_pi_options_t *opts,
              mh_pi_result_t *res) {
  if (!ex || !opts || !res || opts->flags != 0) return MH_EINVAL;
  int workers = mh_executor_workers(ex);
  int backend = mh_executor_backend(ex);
  if (workers < 1 || backend < 0) return MH_EINVAL;
  mh__pi_plan_t plan;
  int rc = mh__pi_plan(opts->n, workers, &plan);
  if (rc) return rc;
  mh_pi_kernel_t kernel;
  rc = resolve_kernel(opts->kernel, &kernel);
  if (rc) return rc;

  double t0 = mh__now();
  memset(res, 0, sizeof *res);
  res->n = opts->n;
  res->kernel = kernel;
  res->workers = workers;
  res->backend = (mh_backend_t)backend;

  if (plan.nblocks == 1 && opts->n <= MH__PI_INLINE_POINTS &&
      !cancelled(opts)) {
    fill_result(res, count_block(opts->seed, 0, opts->n, kernel), opts->n);
    if (opts->progress) opts->progress(opts->n, opts->n, opts->progress_arg);
    res->seconds = mh__now() - t0;
    return 0;
  }

  if (backend == MH_BACKEND_THREADS)
    return pi_run_forkjoin(ex, opts, &plan, kernel, res, t0);

  /* The window of slots: memory bounded by the worker count, never by n.
   * Results are taken as they complete, in any order (the counts are
   * integer sums): taking them in submission order let one slow task hold
   * the window, and the other worker, whose finished tasks filled it, ran
   * dry (2 process workers: a worker idle up to 10 ms at a time, 10% of the
   * run).  A completion queue (one node per slot) says which slot is done. */
  void *raw = mh__malloc(plan.window * (sizeof(pi_slot_t) + sizeof(size_t)) +
                         MH__CACHE_LINE);
  if (!raw) return MH_ENOMEM;
  pi_slot_t *slots =
      (pi_slot_t *)(((uintptr_t)raw + MH__CACHE_LINE - 1) &
                    ~(uintptr_t)(MH__CACHE_LINE - 1));
  memset(slots, 0, plan.window * sizeof(pi_slot_t));
  size_t *freeslot = (size_t *)(void *)(slots + plan.window); /* a stack */
  size_t nfree = plan.window;
  for (size_t i = 0; i < plan.window; i++) freeslot[i] = plan.window - 1 - i;
  mh__cq_t *cq;
  rc = mh__cq_new(&cq, plan.window);
  if (rc) {
    mh__free(raw);
    return rc;
  }

  uint64_t next_block = 0, inside = 0, done = 0;
  int status = 0; /* first failure, or MH_ECANCELED */
  double next_tick = t0 + MH__PI_TICK;
  for (;;) {
    if (status == 0 && cancelled(opts)) {
      status = MH_ECANCELED;
      /* Tasks still queued are dropped; running ones are waited for. */
      pi_cancel_all(slots, plan.window);
    }
    /* Keep the window full. */
    while (status == 0 && nfree > 0 && next_block < plan.nblocks) {
      size_t si = freeslot[nfree - 1];
      pi_slot_t *s = &slots[si];
      /* Guided: full-size tasks while there is plenty left, then smaller
       * ones, so that the workers finish together.  The share is of the
       * window, not of the workers: the tasks in flight are already handed
       * out (a process worker takes several ahead), so the last window's
       * worth must be small for the last wave to be about one block long.
       * The counts do not depend on this. */
      uint64_t first = next_block, left = plan.nblocks - first;
      uint64_t nb = left / (2 * (uint64_t)plan.window);
      if (nb > plan.blocks_per_task) nb = plan.blocks_per_task;
      if (nb < 1) nb = 1;
      s->in.seed = opts->seed;
      s->in.first_block = first;
      s->in.nblocks = nb;
      s->in.last_points = first + nb == plan.nblocks ? plan.last_points
                                                     : MH_PI_BLOCK_POINTS;
      s->in.kernel = (int32_t)kernel;
      s->reruns = 0;
      rc = pi_submit(ex, s);
      if (rc) {
        status = rc;
        break;
      }
      mh__cq_arm(cq, si, s->fut);
      nfree--;
      next_block += nb;
    }
    if (nfree == plan.window) break; /* nothing in flight */

    /* Wait for any task, waking up to report progress and to poll the
     * cancel flag. */
    double timeout = MH_FOREVER;
    if (opts->progress) {
      timeout = next_tick - mh__now();
      if (timeout < 0) timeout = 0;
    }
    if (opts->cancel && status == 0 &&
        (timeout == MH_FOREVER || timeout > MH__PI_CANCEL_POLL))
      timeout = MH__PI_CANCEL_POLL;
    mh__deadline_t dl;
    (void)mh__deadline_init(&dl, timeout); /* valid: >= 0 or MH_FOREVER */
    size_t si;
    if (mh__cq_pop(cq, &dl, &si) == 0) {
      pi_slot_t *s = &slots[si];
      int code = mh_future_result(s->fut, 0);
      if (code == MH_EWORKERDIED && status == 0 && s->reruns < MH__PI_RERUNS) {
        /* Run it again in the same slot. */
        mh_future_release(s->fut);
        s->reruns++;
        res->reruns++;
        rc = pi_submit(ex, s);
        if (rc == 0) {
          mh__cq_arm(cq, si, s->fut);
          continue;
        }
        status = rc;
        freeslot[nfree++] = si;
        pi_cancel_all(slots, plan.window);
        continue;
      }
      if (code == 0) {
        inside += s->out.inside;
        done += s->out.points;
      } else if (status == 0 && code != MH_ECANCELED) {
        status = code;
        pi_cancel_all(slots, plan.window); /* slot si is done: left as it is */
      }
      mh_future_release(s->fut);
      s->fut = NULL;
      freeslot[nfree++] = si;
    }
    if (opts->progress && mh__now() >= next_tick) {
      opts->progress(done, opts->n, opts->progress_arg);
      next_tick = mh__now() + MH__PI_TICK;
    }
  }
  mh__cq_unref(cq); /* every node was popped: none is armed */
  mh__free(raw);
  fill_result(res, inside, done);
  res->seconds = mh__now() - t0;
  if (status == 0 && opts->progress)
    opts->progress(done, opts->n, opts->progress_arg);
  return status;
}
