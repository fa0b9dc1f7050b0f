/* SPDX-License-Identifier: MIT */
/* test-forkjoin.c - tasks that wait on tasks: help-first waits, work
 * stealing, task groups, parallel_for and parallel_reduce (issue 11). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---- a recursive sum: each node spawns its left half and runs the right */

typedef struct {
  uint64_t lo, hi;   /* the leaves lo..hi-1; leaf i adds i */
  unsigned sleep_us; /* a random sleep of up to this at each leaf, or 0 */
  uint64_t fail_at;  /* the leaf that fails with MH_EUSER - 1, or UINT64_MAX */
  int inline_waits;  /* 0: mh_future_result; 1: mh_futures_wait; 2: as_completed */
} span_t;

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size,
                     void *ctx);

static uint64_t rnd_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static int tree_sum(mh_executor_t *ex, const span_t *sp, uint64_t *sum) {
  if (sp->hi - sp->lo == 1) {
    if (sp->sleep_us) {
      uint64_t s = sp->lo * 0x9e3779b97f4a7c15ull + 1;
      usleep((useconds_t)(rnd_next(&s) % sp->sleep_us));
    }
    if (sp->lo == sp->fail_at) return MH_EUSER - 1;
    *sum = sp->lo;
    return 0;
  }
  uint64_t mid = sp->lo + (sp->hi - sp->lo) / 2;
  span_t left = *sp, right = *sp;
  left.hi = mid;
  right.lo = mid;
  uint64_t ls = 0, rs = 0;
  mh_future_t *f;
  int rc = mh_executor_submit(ex, tree_task, &left, sizeof left, &ls, sizeof ls, ex, &f);
  if (rc == MH_ESHUTDOWN) {
    /* Shut down meanwhile: do it here. */
    rc = tree_sum(ex, &left, &ls);
    f = NULL;
  } else if (rc) {
    return rc;
  }
  int rrc = tree_sum(ex, &right, &rs);
  int lrc = rc;
  if (f) {
    if (sp->inline_waits == 1) {
      size_t nd = 0;
      ASSERT_EQ(mh_futures_wait(&f, 1, MH_FIRST_COMPLETED, MH_FOREVER, &nd), 0);
      ASSERT_EQ(nd, 1);
    } else if (sp->inline_waits == 2) {
      mh_as_completed_t *ac;
      ASSERT_EQ(mh_as_completed_new(&ac, &f, 1), 0);
      mh_future_t *g;
      ASSERT_EQ(mh_as_completed_next(ac, MH_FOREVER, &g), 0);
      ASSERT(g == f);
      mh_as_completed_free(ac);
    }
    lrc = mh_future_result(f, MH_FOREVER);
    mh_future_release(f);
  }
  *sum = ls + rs;
  return lrc ? lrc : rrc;
}

static int tree_task(const void *in, size_t in_size, void *out, size_t out_size,
                     void *ctx) {
  (void)in_size;
  (void)out_size;
  return tree_sum(ctx, in, out);
}

static mh_executor_t *threads(int n) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = n;
  mh_executor_t *ex;
  ASSERT_EQ(mh_executor_new(&ex, &o), 0);
  return ex;
}

/* Run the whole tree as one task submitted from outside. */
static int run_tree(mh_executor_t *ex, span_t sp, uint64_t *sum) {
  mh_future_t *f;
  int rc = mh_executor_submit(ex, tree_task, &sp, sizeof sp, sum, sizeof *sum, ex, &f);
  if (rc) return rc;
  rc = mh_future_result(f, MH_FOREVER);
  mh_future_release(f);
  return rc;
}

static void tree_on(int workers, uint64_t leaves, int inline_waits) {
  mh_executor_t *ex = threads(workers);
  span_t sp = {0, leaves, 0, UINT64_MAX, inline_waits};
  uint64_t sum = 0;
  ASSERT_EQ(run_tree(ex, sp, &sum), 0);
  ASSERT_EQ(sum, leaves * (leaves - 1) / 2);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

/* The deadlock of the executor before issue 11: one worker, a task that
 * waits for its child.  It hung forever there; here it must finish. */
TEST(child_wait_one_worker) { tree_on(1, 2, 0); }

TEST(tree_1e6_one_worker) { tree_on(1, 1000000, 0); }
TEST(tree_1e6_two_workers) { tree_on(2, 1000000, 0); }
TEST(tree_1e6_eight_workers) { tree_on(8, 1000000, 0); }
TEST(tree_futures_wait_inside) { tree_on(2, 100000, 1); }
TEST(tree_as_completed_inside) { tree_on(3, 100000, 2); }

/* Trees started from many outside threads at once share the workers. */
static void outside_thread(void *arg) {
  mh_executor_t *ex = arg;
  for (int i = 0; i < 20; i++) {
    span_t sp = {0, 5000, 0, UINT64_MAX, 0};
    uint64_t sum = 0;
    ASSERT_EQ(run_tree(ex, sp, &sum), 0);
    ASSERT_EQ(sum, 5000ull * 4999 / 2);
  }
}

TEST(trees_from_many_threads) {
  mh_executor_t *ex = threads(3);
  mh_thread_t *t[6];
  for (int i = 0; i < 6; i++) ASSERT_EQ(mh_thread_start(&t[i], outside_thread, ex, NULL), 0);
  for (int i = 0; i < 6; i++) ASSERT_EQ(mh_thread_join(t[i], MH_FOREVER), 0);
  for (int i = 0; i < 6; i++) mh_thread_free(t[i]);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

/* ---- a chain: each task submits one child and waits for it ------------ */

/* ThreadSanitizer keeps each thread's calls in a shadow stack of 65,536
 * entries (kShadowStackSize in its runtime).  It is never grown and, in the
 * runtime's release build, never bounds-checked: past the end, each call
 * writes over the runtime's own memory.  A nested wait here costs 7
 * instrumented frames (chain_task, mh_future_result, mh__future_wait_dl,
 * help_once, run_item, run_one, mh__task_run), so 10^4 levels need 70,004
 * entries (read with gdb from __tsan_testonly_shadow_stack_current_size).
 * The overflow is the likely cause of this test's rare TSan hang in CI: the
 * watchdog's stacks showed the process spinning in the runtime's free()
 * (MetaMap::FreeRange) while the worker was joined, after the chain had
 * given the right answer.  So under TSan the chain is 8,000 deep, and the
 * test checks that its bottom stayed inside the shadow stack; elsewhere it
 * is the 10^4 the issue asks for. */
#if MH__TSAN
#define CHAIN_DEPTH 8000
#define TSAN_SHADOW_STACK 65536
extern unsigned long __tsan_testonly_shadow_stack_current_size(void) __attribute__((weak));
static _Atomic unsigned long chain_bottom_frames; /* at depth 0 */
#else
#define CHAIN_DEPTH 10000
#endif

static int chain_task(const void *in, size_t in_size, void *out, size_t out_size,
                      void *ctx) {
  (void)in_size;
  (void)out_size;
  int depth = *(const int *)in;
  if (depth == 0) {
#if MH__TSAN
    if (__tsan_testonly_shadow_stack_current_size)
      atomic_store(&chain_bottom_frames, __tsan_testonly_shadow_stack_current_size());
#endif
    *(int *)out = 0;
    return 0;
  }
  int next = depth - 1, got = -1;
  mh_future_t *f;
  int rc = mh_executor_submit(ctx, chain_task, &next, sizeof next, &got, sizeof got, ctx, &f);
  if (rc) return rc;
  rc = mh_future_result(f, MH_FOREVER);
  mh_future_release(f);
  *(int *)out = got + 1;
  return rc;
}

/* A chain `depth` deep on ex, from outside: it must count every level. */
static void run_chain(mh_executor_t *ex, int depth) {
  int got = -1;
  mh_future_t *f;
  ASSERT_EQ(mh_executor_submit(ex, chain_task, &depth, sizeof depth, &got, sizeof got, ex, &f), 0);
  ASSERT_EQ(mh_future_result(f, MH_FOREVER), 0);
  mh_future_release(f);
  ASSERT_EQ(got, depth);
#if MH__TSAN
  /* The run above is only as good as TSan's view of it. */
  if (__tsan_testonly_shadow_stack_current_size)
    ASSERT_LT(atomic_load(&chain_bottom_frames), TSAN_SHADOW_STACK);
#endif
}

static void chain_on(int workers, int depth) {
  mh_executor_t *ex = threads(workers);
  run_chain(ex, depth);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

TEST(chain_1e4_one_worker) { chain_on(1, CHAIN_DEPTH); }
TEST(chain_1e4_two_workers) { chain_on(2, CHAIN_DEPTH); }

/* ---- nesting deeper than a worker's stack ------------------------------
 * A level of nested waits takes about 350 bytes of a worker's 64 MiB stack,
 * so a chain 2 x 10^5 deep on one worker died of SIGSEGV before helping
 * waiters moved to a fresh stack segment when theirs is nearly spent
 * (help_hop in executor_threads.c).  10^6 levels are about 350 MB of
 * segments; fewer under ASan (bigger frames, and its shadow), still past
 * one stack.  Not under TSan: its shadow stack bounds nesting at about
 * 9,000 waits (above), and the executor does not switch stacks there. */
#if MH__ASAN
#define DEEP_LEVELS 300000
#else
#define DEEP_LEVELS 1000000
#endif

static void skip_under_tsan(void) {
  if (MH__TSAN) {
    printf("skipped under TSan: its shadow stack holds about 9,000 nested waits\n");
    exit(77);
  }
}

TEST(chain_past_one_stack_one_worker) {
  skip_under_tsan();
  chain_on(1, DEEP_LEVELS);
}

TEST(chain_past_one_stack_two_workers) {
  skip_under_tsan();
  chain_on(2, DEEP_LEVELS);
}

/* The same depth through task groups: each member makes a group, runs one
 * member a level down in it and waits for the group (wait_zero's helping
 * loop, not mh_future_result's). */
typedef struct {
  mh_executor_t *ex;
  int depth;
  int *reached; /* the deepest member's depth: 0 */
} nest_t;

static int nest_member(void *arg, mh_task_group_t *g) {
  (void)g;
  nest_t *n = arg;
  if (n->depth == 0) {
    *n->reached = 0;
    return 0;
  }
  nest_t down = {n->ex, n->depth - 1, n->reached};
  mh_task_group_t *sub;
  int rc = mh_task_group_new(&sub, n->ex);
  if (rc) return rc;
  rc = mh_task_group_run(sub, nest_member, &down);
  int wrc = mh_task_group_wait(sub);
  int frc = mh_task_group_free(sub);
  return rc ? rc : wrc ? wrc : frc;
}

TEST(groups_nested_past_one_stack) {
  skip_under_tsan();
  mh_executor_t *ex = threads(1);
  int reached = -1;
  nest_t top = {ex, DEEP_LEVELS / 2, &reached};
  mh_task_group_t *g;
  ASSERT_EQ(mh_task_group_new(&g, ex), 0);
  ASSERT_EQ(mh_task_group_run(g, nest_member, &top), 0);
  ASSERT_EQ(mh_task_group_wait(g), 0);
  ASSERT_EQ(mh_task_group_free(g), 0);
  ASSERT_EQ(reached, 0);
  /* After the hops, the worker still runs nested work (its spare segment
   * reused, or its own stack). */
  run_chain(ex, 1000);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

/* ---- spawn records (mh_spawn / mh_spawn_join) ------------------------- */

typedef struct {
  mh_executor_t *ex;
  uint64_t lo, hi, sum;
  unsigned sleep_us; /* a random sleep of up to this at some leaves, or 0 */
  uint64_t fail_at;  /* the leaf that fails with MH_EUSER - 2, or UINT64_MAX */
  int mix;           /* also submit a future at every 64th node */
} sp_node_t;

static int sp_tree(void *arg);

static int sp_future_task(const void *in, size_t in_size, void *out, size_t out_size,
                          void *ctx) {
  (void)in_size;
  (void)out_size;
  (void)ctx;
  sp_node_t n = *(const sp_node_t *)in;
  int rc = sp_tree(&n);
  *(uint64_t *)out = n.sum;
  return rc;
}

/* Spawns the left half (and, when `mix`, runs a quarter of it through a
 * future instead at some nodes), computes the right half, joins. */
static int sp_tree(void *arg) {
  sp_node_t *n = arg;
  if (n->hi - n->lo == 1) {
    if (n->sleep_us && n->lo % 7 == 0) {
      uint64_t s = n->lo * 0x9e3779b97f4a7c15ull + 1;
      usleep((useconds_t)(rnd_next(&s) % n->sleep_us));
    }
    if (n->lo == n->fail_at) return MH_EUSER - 2;
    n->sum = n->lo;
    return 0;
  }
  uint64_t mid = n->lo + (n->hi - n->lo) / 2;
  sp_node_t left = *n, right = *n;
  left.hi = mid;
  right.lo = mid;
  mh_spawn_t t;
  mh_future_t *f = NULL;
  uint64_t fsum = 0;
  int frc = 1;
  if (n->mix && (n->lo / 2) % 64 == 0 && n->hi - n->lo >= 4) {
    /* A submit fails once shutdown began; a spawn never does. */
    frc = mh_executor_submit(n->ex, sp_future_task, &left, sizeof left, &fsum,
                             sizeof fsum, NULL, &f);
    if (frc) {
      ASSERT_EQ(frc, MH_ESHUTDOWN);
      f = NULL;
    }
  }
  if (!f) ASSERT_EQ(mh_spawn(n->ex, &t, sp_tree, &left), 0);
  int rrc = sp_tree(&right);
  int lrc;
  if (f) {
    lrc = mh_future_result(f, MH_FOREVER);
    mh_future_release(f);
    left.sum = fsum;
  } else {
    lrc = mh_spawn_join(&t);
  }
  n->sum = left.sum + right.sum;
  return lrc ? lrc : rrc;
}

static int sp_root_task(const void *in, size_t in_size, void *out, size_t out_size,
                        void *ctx) {
  return sp_future_task(in, in_size, out, out_size, ctx);
}

static int sp_run(mh_executor_t *ex, sp_node_t root, uint64_t *sum) {
  mh_future_t *f;
  int rc = mh_executor_submit(ex, sp_root_task, &root, sizeof root, sum, sizeof *sum, NULL, &f);
  if (rc) return rc;
  rc = mh_future_result(f, MH_FOREVER);
  mh_future_release(f);
  return rc;
}

static void spawn_tree_on(int workers, uint64_t leaves, unsigned sleep_us, int mix) {
  mh_executor_t *ex = threads(workers);
  sp_node_t root = {ex, 0, leaves, 0, sleep_us, UINT64_MAX, mix};
  for (int rep = 0; rep < 3; rep++) {
    uint64_t sum = 0;
    ASSERT_EQ(sp_run(ex, root, &sum), 0);
    ASSERT_UEQ(sum, leaves * (leaves - 1) / 2);
  }
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

TEST(spawn_tree_1e6_one_worker) { spawn_tree_on(1, 1000000, 0, 0); }
TEST(spawn_tree_1e6_two_workers) { spawn_tree_on(2, 1000000, 0, 0); }
TEST(spawn_tree_1e6_eight_workers) { spawn_tree_on(8, 1000000, 0, 0); }
/* Sleeping leaves make thieves hold records long enough for their joiners
 * to run out of work and sleep on the record's word. */
TEST(spawn_tree_random_sleeps) { spawn_tree_on(4, 3000, 400, 0); }
TEST(spawn_tree_mixed_with_futures) { spawn_tree_on(3, 200000, 0, 1); }

TEST(spawn_error_leaf_to_root) {
  for (int w = 1; w <= 4; w += 3) {
    mh_executor_t *ex = threads(w);
    sp_node_t root = {ex, 0, 100000, 0, 0, 4242, 0};
    uint64_t sum = 0;
    ASSERT_EQ(sp_run(ex, root, &sum), MH_EUSER - 2);
    mh_executor_free(ex);
  }
}

static int sp_add(void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 7;
}

/* Outside a worker (or on another executor) the child runs at once. */
TEST(spawn_outside_runs_inline) {
  mh_executor_t *ex = threads(2);
  _Atomic int n = 0;
  mh_spawn_t t;
  ASSERT_EQ(mh_spawn(ex, &t, sp_add, &n), 0);
  ASSERT_EQ(atomic_load(&n), 1);
  ASSERT_EQ(mh_spawn_join(&t), 7);
  ASSERT_EQ(mh_spawn(NULL, &t, sp_add, &n), MH_EINVAL);
  ASSERT_EQ(mh_spawn(ex, &t, NULL, &n), MH_EINVAL);
  ASSERT_EQ(mh_spawn_join(NULL), MH_EINVAL);
  mh_executor_free(ex);
}

/* A spawned child that its parent does not join but waits for by spinning
 * must be stolen by the other worker.  In a fresh pool nothing has marked
 * the deques as used (a spawn does not), so the idle worker finds the child
 * only on its way to sleep: this checks that that path finds it and that
 * the worker then steals it.  A fresh pool each round, with random delays
 * before the spawn so that the other worker is spinning, asleep or between
 * the two. */
typedef struct {
  mh_executor_t *ex;
  _Atomic int ran;
  _Atomic unsigned long who; /* the child's thread */
  int delay_us;
} steal_t;

static int steal_child(void *arg) {
  steal_t *st = arg;
  atomic_store(&st->who, (unsigned long)pthread_self());
  atomic_store(&st->ran, 1);
  return 5;
}

static int steal_parent(const void *in, size_t in_size, void *out, size_t out_size,
                        void *ctx) {
  (void)in;
  (void)in_size;
  (void)out;
  (void)out_size;
  steal_t *st = ctx;
  if (st->delay_us) usleep((useconds_t)st->delay_us);
  mh_spawn_t t;
  ASSERT_EQ(mh_spawn(st->ex, &t, steal_child, st), 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int seen = 0;
  for (;;) {
    if (atomic_load(&st->ran)) {
      seen = 1;
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (t1.tv_sec - t0.tv_sec > 60) break; /* generous: a loaded machine */
    sched_yield();
  }
  ASSERT(seen); /* stolen while the parent did not join */
  ASSERT(atomic_load(&st->who) != (unsigned long)pthread_self());
  ASSERT_EQ(mh_spawn_join(&t), 5);
  return 0;
}

/* rounds lone spawns, each in a fresh pool or all in one warm pool (whose
 * other worker has found deque items before, spins less and sleeps on its
 * timed first nap: a spawn does not fence before it looks for sleepers,
 * so this is where a missed wake-up would show, as a round that never
 * ends). */
static void stolen_rounds(int rounds, int fresh) {
  unsigned seed = (unsigned)time(NULL);
  mh_executor_t *ex = fresh ? NULL : threads(2);
  for (int round = 0; round < rounds; round++) {
    if (fresh) ex = threads(2);
    steal_t st = {ex, 0, 0, 0};
    seed = seed * 1103515245u + 12345u;
    st.delay_us = (int)((seed >> 16) % 3000);
    mh_future_t *f;
    ASSERT_EQ(mh_executor_submit(ex, steal_parent, NULL, 0, NULL, 0, &st, &f), 0);
    ASSERT_EQ(mh_future_result(f, MH_FOREVER), 0);
    mh_future_release(f);
    ASSERT_EQ(atomic_load(&st.ran), 1);
    if (fresh) mh_executor_free(ex);
  }
  if (!fresh) mh_executor_free(ex);
}

TEST(spawn_stolen_in_fresh_pool) { stolen_rounds(40, 1); }
TEST(spawn_stolen_in_warm_pool) { stolen_rounds(300, 0); }

/* Many children spawned at once, joined in an order unlike the spawn
 * order (oldest first, so the join must run the newer ones first). */
typedef struct {
  mh_executor_t *ex;
  _Atomic int *count;
} fan_t;

static int fan_task(const void *in, size_t in_size, void *out, size_t out_size, void *ctx) {
  (void)in_size;
  (void)out;
  (void)out_size;
  (void)ctx;
  const fan_t *fa = in;
  enum { K = 300 };
  mh_spawn_t t[K];
  for (int i = 0; i < K; i++) ASSERT_EQ(mh_spawn(fa->ex, &t[i], sp_add, fa->count), 0);
  for (int i = 0; i < K; i += 2) ASSERT_EQ(mh_spawn_join(&t[i]), 7);
  for (int i = K - 1; i > 0; i -= 2) ASSERT_EQ(mh_spawn_join(&t[i]), 7);
  return 0;
}

TEST(spawn_fan_join_any_order) {
  for (int w = 1; w <= 4; w++) {
    mh_executor_t *ex = threads(w);
    _Atomic int count = 0;
    fan_t fa = {ex, &count};
    mh_future_t *fs[16];
    for (int i = 0; i < 16; i++)
      ASSERT_EQ(mh_executor_submit(ex, fan_task, &fa, sizeof fa, NULL, 0, NULL, &fs[i]), 0);
    for (int i = 0; i < 16; i++) {
      ASSERT_EQ(mh_future_result(fs[i], MH_FOREVER), 0);
      mh_future_release(fs[i]);
    }
    ASSERT_EQ(atomic_load(&count), 16 * 300);
    mh_executor_free(ex);
  }
}

/* A tree grown by a thread of its own while the test shuts the executor
 * down (waiting, and cancelling in odd rounds): no hang, and the tree either
 * completes right (the sum of 0..leaves-1) or says why it did not.  `grow`
 * is the futures tree or the spawn tree. */
typedef struct {
  mh_executor_t *ex;
  int rc;
  uint64_t sum;
} bg_t;

static void shutdown_while_growing(void (*grow)(void *), uint64_t leaves) {
  for (int round = 0; round < 6; round++) {
    mh_executor_t *ex = threads(1 + round % 3);
    bg_t b = {ex, 1, 0};
    mh_thread_t *t;
    ASSERT_EQ(mh_thread_start(&t, grow, &b, NULL), 0);
    usleep((useconds_t)(1000 * (1 + round * 3)));
    unsigned fl = MH_SHUTDOWN_WAIT | ((round & 1) ? MH_SHUTDOWN_CANCEL_FUTURES : 0);
    ASSERT_EQ(mh_executor_shutdown(ex, fl), 0);
    ASSERT_EQ(mh_thread_join(t, MH_FOREVER), 0);
    mh_thread_free(t);
    if (b.rc == 0)
      ASSERT_UEQ(b.sum, leaves * (leaves - 1) / 2);
    else
      ASSERT(b.rc == MH_ECANCELED || b.rc == MH_ESHUTDOWN);
    mh_executor_free(ex);
  }
}

static void bg_spawn_tree(void *arg) {
  bg_t *b = arg;
  sp_node_t root = {b->ex, 0, 2000000, 0, 0, UINT64_MAX, 1};
  b->rc = sp_run(b->ex, root, &b->sum);
}

/* Shutdown, waiting or cancelling, while a spawn tree grows. */
TEST(spawn_shutdown_while_tree_runs) { shutdown_while_growing(bg_spawn_tree, 2000000); }

/* ---- random sleeps, errors, shutdown ---------------------------------- */

TEST(tree_random_sleeps) {
  mh_executor_t *ex = threads(4);
  span_t sp = {0, 2000, 300, UINT64_MAX, 0};
  uint64_t sum = 0;
  ASSERT_EQ(run_tree(ex, sp, &sum), 0);
  ASSERT_EQ(sum, 2000ull * 1999 / 2);
  ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
  mh_executor_free(ex);
}

TEST(error_leaf_to_root) {
  for (int w = 1; w <= 4; w += 3) {
    mh_executor_t *ex = threads(w);
    span_t sp = {0, 100000, 0, 77777, 0};
    uint64_t sum = 0;
    ASSERT_EQ(run_tree(ex, sp, &sum), MH_EUSER - 1);
    ASSERT_EQ(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT), 0);
    mh_executor_free(ex);
  }
}

static void bg_tree(void *arg) {
  bg_t *b = arg;
  span_t sp = {0, 1000000, 0, UINT64_MAX, 0};
  b->rc = run_tree(b->ex, sp, &b->sum);
}

/* Shut down (waiting, and cancelling) while a futures tree grows. */
TEST(shutdown_while_tree_runs) { shutdown_while_growing(bg_tree, 1000000); }

/* ---- task groups ------------------------------------------------------ */

typedef struct gnode gnode_t;

typedef struct {
  _Atomic uint64_t sum;
  _Atomic int ran;
  uint64_t fail_at; /* the node that fails, or UINT64_MAX */
  int grow_forever; /* keep spawning until cancelled */
  /* The nodes come from an arena freed after the wait: a member cancelled
   * before it started never runs, so it cannot free its own argument. */
  gnode_t *arena;
  _Atomic size_t used;
  size_t cap;
} gshared_t;

struct gnode {
  gshared_t *sh;
  uint64_t lo, hi;
};

#define ARENA_CAP 400000

static gnode_t *gnode_alloc(gshared_t *sh) {
  size_t i = atomic_fetch_add(&sh->used, 1);
  return i < sh->cap ? &sh->arena[i] : NULL;
}

/* A member that splits its range in two new members (heap nodes), or adds
 * its leaf. */
static int gnode_fn(void *arg, mh_task_group_t *g) {
  gnode_t n = *(gnode_t *)arg;
  atomic_fetch_add(&n.sh->ran, 1);
  if (mh_task_group_cancelled(g)) return 0;
  if (n.hi - n.lo == 1 && !n.sh->grow_forever) {
    if (n.lo == n.sh->fail_at) return MH_EUSER - 2;
    atomic_fetch_add(&n.sh->sum, n.lo);
    return 0;
  }
  uint64_t mid = n.lo + (n.hi - n.lo) / 2;
  if (n.sh->grow_forever) mid = n.lo; /* never ends by itself */
  for (int k = 0; k < 2; k++) {
    gnode_t *c = gnode_alloc(n.sh);
    if (!c) {
      ASSERT(n.sh->grow_forever); /* a finite tree fits */
      return 0;
    }
    *c = n;
    if (!n.sh->grow_forever) {
      if (k == 0) c->hi = mid;
      else c->lo = mid;
    }
    int rc = mh_task_group_run(g, gnode_fn, c);
    if (rc) ASSERT(rc == MH_ECANCELED);
  }
  return 0;
}

static int group_tree(mh_executor_t *ex, gshared_t *sh, uint64_t leaves, int cancel_after_us) {
  mh_task_group_t *g;
  ASSERT_EQ(mh_task_group_new(&g, ex), 0);
  sh->cap = ARENA_CAP;
  sh->arena = malloc(ARENA_CAP * sizeof *sh->arena);
  ASSERT(sh->arena);
  gnode_t *root = gnode_alloc(sh);
  root->sh = sh;
  root->lo = 0;
  root->hi = leaves;
  ASSERT_EQ(mh_task_group_run(g, gnode_fn, root), 0);
  if (cancel_after_us >= 0) {
    usleep((useconds_t)cancel_after_us);
    ASSERT_EQ(mh_task_group_cancel(g), 0);
  }
  int rc = mh_task_group_wait(g);
  ASSERT_EQ(mh_task_group_free(g), 0);
  free(sh->arena);
  sh->arena = NULL;
  return rc;
}

TEST(group_tree_sum) {
  for (int w = 1; w <= 4; w *= 2) {
    mh_executor_t *ex = threads(w);
    gshared_t sh = {0, 0, UINT64_MAX, 0, NULL, 0, 0};
    ASSERT_EQ(group_tree(ex, &sh, 100000, -1), 0);
    ASSERT_EQ(atomic_load(&sh.sum), 100000ull * 99999 / 2);
    ASSERT_EQ(atomic_load(&sh.ran), 2 * 100000 - 1);
    mh_executor_free(ex);
  }
}

TEST(group_first_failure) {
  mh_executor_t *ex = threads(2);
  gshared_t sh = {0, 0, 4321, 0, NULL, 0, 0};
  ASSERT_EQ(group_tree(ex, &sh, 10000, -1), MH_EUSER - 2);
  mh_executor_free(ex);
}

/* Cancel while the tree grows without end: the wait returns, every member
 * ended, and the group can be freed. */
TEST(group_cancel_while_growing) {
  for (int round = 0; round < 8; round++) {
    mh_executor_t *ex = threads(1 + round % 4);
    gshared_t sh = {0, 0, UINT64_MAX, 1, NULL, 0, 0};
    ASSERT_EQ(group_tree(ex, &sh, 2, 500 * round), MH_ECANCELED);
    /* Nothing outlives the group: no member runs after the wait. */
    int ran = atomic_load(&sh.ran);
    usleep(5000);
    ASSERT_EQ(atomic_load(&sh.ran), ran);
    mh_executor_free(ex);
  }
}

/* Waiting for a group from inside a member of another group. */
static int inner_group(void *arg, mh_task_group_t *outer) {
  (void)outer;
  mh_executor_t *ex = arg;
  gshared_t sh = {0, 0, UINT64_MAX, 0, NULL, 0, 0};
  ASSERT_EQ(group_tree(ex, &sh, 1000, -1), 0);
  ASSERT_EQ(atomic_load(&sh.sum), 1000ull * 999 / 2);
  return 0;
}

TEST(group_nested_waits_one_worker) {
  mh_executor_t *ex = threads(1);
  mh_task_group_t *g;
  ASSERT_EQ(mh_task_group_new(&g, ex), 0);
  for (int i = 0; i < 8; i++) ASSERT_EQ(mh_task_group_run(g, inner_group, ex), 0);
  ASSERT_EQ(mh_task_group_wait(g), 0);
  ASSERT_EQ(mh_task_group_free(g), 0);
  mh_executor_free(ex);
}

static int slow_member(void *arg, mh_task_group_t *g) {
  (void)g;
  usleep(50000);
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

TEST(group_free_busy) {
  mh_executor_t *ex = threads(1);
  mh_task_group_t *g;
  _Atomic int done = 0;
  ASSERT_EQ(mh_task_group_new(&g, ex), 0);
  ASSERT_EQ(mh_task_group_run(g, slow_member, &done), 0);
  ASSERT_EQ(mh_task_group_free(g), MH_EBUSY);
  ASSERT_EQ(mh_task_group_wait(g), 0);
  ASSERT_EQ(atomic_load(&done), 1);
  ASSERT_EQ(mh_task_group_free(g), 0);
  ASSERT_EQ(mh_task_group_run(NULL, slow_member, NULL), MH_EINVAL);
  mh_executor_free(ex);
}

/* ---- parallel_for and parallel_reduce --------------------------------- */

typedef struct {
  unsigned char *seen;
  size_t fail_at;
} pf_ctx_t;

static int mark_range(size_t lo, size_t hi, void *ctx) {
  pf_ctx_t *c = ctx;
  for (size_t i = lo; i < hi; i++) {
    if (i == c->fail_at) return MH_EUSER - 3;
    c->seen[i]++;
  }
  return 0;
}

TEST(parallel_for_covers_once) {
  size_t n = 1000003;
  unsigned char *seen = calloc(n, 1);
  ASSERT(seen);
  for (int w = 1; w <= 8; w *= 2) {
    mh_executor_t *ex = threads(w);
    size_t grains[] = {0, 1000, 7, 1u << 30};
    for (int gi = 0; gi < 4; gi++) {
      memset(seen, 0, n);
      pf_ctx_t c = {seen, SIZE_MAX};
      ASSERT_EQ(mh_parallel_for(ex, 3, n, grains[gi], mark_range, &c), 0);
      for (size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], i >= 3 ? 1 : 0);
    }
    pf_ctx_t c = {seen, 500000};
    ASSERT_EQ(mh_parallel_for(ex, 0, n, 0, mark_range, &c), MH_EUSER - 3);
    ASSERT_EQ(mh_parallel_for(ex, 5, 5, 0, mark_range, &c), 0);
    ASSERT_EQ(mh_parallel_for(ex, 6, 5, 0, mark_range, &c), MH_EINVAL);
    mh_executor_free(ex);
  }
  free(seen);
}

static int sum_leaf(size_t lo, size_t hi, void *acc, void *ctx) {
  const double *x = ctx;
  double s = *(double *)acc;
  for (size_t i = lo; i < hi; i++) s += x[i];
  *(double *)acc = s;
  return 0;
}

static void sum_join(void *l, const void *r, void *ctx) {
  (void)ctx;
  *(double *)l += *(const double *)r;
}

/* The same bits for every worker count: the split tree is fixed. */
TEST(parallel_reduce_reproducible) {
  size_t n = 3000017;
  double *x = malloc(n * sizeof *x);
  ASSERT(x);
  uint64_t s = 12345;
  for (size_t i = 0; i < n; i++) x[i] = (double)(rnd_next(&s) % 1000000) * 1e-7 + 1e-3 / (double)(i + 1);
  double ref = 0, zero = 0;
  int ws[] = {1, 2, 3, 8};
  for (int k = 0; k < 4; k++) {
    mh_executor_t *ex = threads(ws[k]);
    for (int rep = 0; rep < 3; rep++) {
      double got = -1;
      ASSERT_EQ(mh_parallel_reduce(ex, 0, n, 0, sizeof got, &zero, sum_leaf, sum_join, x, &got), 0);
      if (k == 0 && rep == 0) ref = got;
      ASSERT(memcmp(&got, &ref, sizeof got) == 0);
    }
    double g2 = -1;
    ASSERT_EQ(mh_parallel_reduce(ex, 0, n, 1000, sizeof g2, &zero, sum_leaf, sum_join, x, &g2), 0);
    ASSERT(g2 > ref * 0.999999 && g2 < ref * 1.000001);
    ASSERT_EQ(mh_parallel_reduce(ex, 0, n, 0, 0, &zero, sum_leaf, sum_join, x, &g2), MH_EINVAL);
    mh_executor_free(ex);
  }
  free(x);
}

/* ---- parallel_for / parallel_reduce called from outside ---------------- */

/* From outside, the root goes to a worker without a future: the call
 * allocates nothing (it failed with MH_ENOMEM while the root was a future
 * and every allocation failed). */
TEST(parallel_outside_allocates_nothing) {
  size_t n = 200000;
  unsigned char *seen = calloc(n, 1);
  double *x = malloc(n * sizeof *x);
  ASSERT(seen && x);
  for (size_t i = 0; i < n; i++) x[i] = 1.0;
  for (int w = 1; w <= 2; w++) {
    mh_executor_t *ex = threads(w);
    mht_alloc_fail_after(0);
    for (int rep = 0; rep < 20; rep++) {
      memset(seen, 0, n);
      pf_ctx_t c = {seen, SIZE_MAX};
      int rc = mh_parallel_for(ex, 0, n, 1000, mark_range, &c);
      double zero = 0, got = -1;
      int rrc = mh_parallel_reduce(ex, 0, n, 1000, sizeof got, &zero, sum_leaf, sum_join, x, &got);
      mht_alloc_reset();
      ASSERT_EQ(rc, 0);
      ASSERT_EQ(rrc, 0);
      ASSERT(got == (double)n);
      for (size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], 1);
      mht_alloc_fail_after(0);
    }
    mht_alloc_reset();
    mh_executor_free(ex);
  }
  free(seen);
  free(x);
}

/* A worker whose initializer failed gives its code, as for a task. */
static int failing_init(void *arg) {
  (void)arg;
  return MH_EUSER - 7;
}

TEST(parallel_outside_broken_worker) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 1;
  o.initializer = failing_init;
  mh_executor_t *ex;
  ASSERT_EQ(mh_executor_new(&ex, &o), 0);
  unsigned char seen[100] = {0};
  pf_ctx_t c = {seen, SIZE_MAX};
  ASSERT_EQ(mh_parallel_for(ex, 0, 100, 1, mark_range, &c), MH_EUSER - 7);
  for (int i = 0; i < 100; i++) ASSERT_EQ(seen[i], 0);
  mh_executor_free(ex);
}

/* Many outside threads (some of them workers of another executor) run
 * parallel_for and parallel_reduce on one executor at once, while trees of
 * spawns keep its workers waiting inside tasks (where a helping wait may take
 * a root); then the executor is shut down under them, with or without
 * cancelling.  Every call ends: 0 with every index seen once and the right
 * sum, or MH_ESHUTDOWN (refused), or MH_ECANCELED (cancelling shutdown). */
typedef struct {
  mh_executor_t *ex;
  _Atomic int *stop;
  _Atomic long *calls;
  int cancelling;
} po_arg_t;

static void parallel_outside_loop(void *arg) {
  const po_arg_t *a = arg;
  size_t n = 20000 + (size_t)(mht_rand() % 20000);
  unsigned char *seen = malloc(n);
  double *x = malloc(n * sizeof *x);
  ASSERT(seen && x);
  for (size_t i = 0; i < n; i++) x[i] = (double)(i % 7);
  double want = 0;
  for (size_t i = 0; i < n; i++) want += x[i];
  size_t grains[] = {0, 1, 97, 5000};
  for (long k = 0; !atomic_load(a->stop) || k < 3; k++) {
    size_t g = grains[mht_rand() % 4];
    memset(seen, 0, n);
    pf_ctx_t c = {seen, SIZE_MAX};
    int rc = mh_parallel_for(a->ex, 0, n, g, mark_range, &c);
    if (rc == 0) {
      for (size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], 1);
    } else if (rc == MH_ECANCELED) {
      ASSERT(a->cancelling);
    } else {
      ASSERT_EQ(rc, MH_ESHUTDOWN);
      break;
    }
    double zero = 0, got = -1;
    rc = mh_parallel_reduce(a->ex, 0, n, g ? g : 0, sizeof got, &zero, sum_leaf, sum_join, x, &got);
    if (rc == 0) {
      ASSERT(got == want); /* small integers: exact in any order */
    } else if (rc == MH_ECANCELED) {
      ASSERT(a->cancelling);
    } else {
      ASSERT_EQ(rc, MH_ESHUTDOWN);
      break;
    }
    atomic_fetch_add(a->calls, 1);
  }
  free(seen);
  free(x);
}

static int outside_via_worker(const void *in, size_t in_size, void *out, size_t out_size,
                              void *ctx) {
  (void)in_size;
  (void)out;
  (void)out_size;
  (void)ctx;
  parallel_outside_loop((void *)(uintptr_t)in);
  return 0;
}

static void parallel_outside_round(int workers, int cancelling) {
  mh_executor_t *ex = threads(workers), *other = threads(2);
  _Atomic int stop = 0;
  _Atomic long calls = 0;
  po_arg_t a = {ex, &stop, &calls, cancelling};
  enum { NT = 4 };
  mh_thread_t *t[NT];
  for (int i = 0; i < NT; i++)
    ASSERT_EQ(mh_thread_start(&t[i], parallel_outside_loop, &a, NULL), 0);
  /* Two more loops on the workers of another executor: outside for ex. */
  mh_future_t *of[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(mh_executor_submit(other, outside_via_worker, &a, sizeof a, NULL, 0, NULL, &of[i]), 0);
  /* Trees of spawns on ex meanwhile. */
  mh_future_t *tf[3];
  uint64_t sums[3] = {0};
  sp_node_t roots[3];
  for (int i = 0; i < 3; i++) {
    roots[i] = (sp_node_t){ex, 0, 20000, 0, 0, UINT64_MAX, 0};
    ASSERT_EQ(mh_executor_submit(ex, sp_root_task, &roots[i], sizeof roots[i], &sums[i],
                                 sizeof sums[i], NULL, &tf[i]),
              0);
  }
  /* Every loop has finished a call (no time bound: before the shutdown
   * every call must succeed), then the shutdown comes at a random moment. */
  while (atomic_load(&calls) < NT + 2) mht_sleep(1e-3);
  mht_jitter(30000);
  atomic_store(&stop, 1);
  ASSERT_EQ(mh_executor_shutdown(ex, cancelling ? MH_SHUTDOWN_WAIT | MH_SHUTDOWN_CANCEL_FUTURES
                                                : MH_SHUTDOWN_WAIT),
            0);
  for (int i = 0; i < NT; i++) ASSERT_EQ(mh_thread_join(t[i], MH_FOREVER), 0);
  for (int i = 0; i < NT; i++) mh_thread_free(t[i]);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(mh_future_result(of[i], MH_FOREVER), 0);
    mh_future_release(of[i]);
  }
  for (int i = 0; i < 3; i++) {
    int rc = mh_future_result(tf[i], MH_FOREVER);
    if (rc == 0) ASSERT_EQ(sums[i], 20000ull * 19999 / 2);
    else ASSERT(cancelling && rc == MH_ECANCELED);
    mh_future_release(tf[i]);
  }
  /* After the shutdown, a call is refused at once. */
  unsigned char seen[10];
  pf_ctx_t c = {seen, SIZE_MAX};
  ASSERT_EQ(mh_parallel_for(ex, 0, 10, 1, mark_range, &c), MH_ESHUTDOWN);
  mh_executor_free(ex);
  mh_executor_free(other);
}

TEST(parallel_outside_many_threads_and_shutdown) {
  long rounds = mht_scaled(12);
  if (rounds < 4) rounds = 4;
  for (long r = 0; r < rounds; r++) parallel_outside_round(1 + (int)(r % 3), (int)(r & 1));
}

/* ---- the process backend: no way back to the executor ------------------ */

static int submit_from_worker(const void *in, size_t in_size, void *out, size_t out_size,
                              void *ctx) {
  (void)in;
  (void)in_size;
  (void)out_size;
  mh_executor_t *ex = *(mh_executor_t *const *)in;
  (void)ctx;
  mh_future_t *f;
  int rc = mh_executor_submit(ex, submit_from_worker, in, in_size, NULL, 0, NULL, &f);
  *(int *)out = rc;
  return 0;
}

TEST(process_worker_submit_eperm) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 2;
  o.backend = MH_BACKEND_PROCESSES;
  mh_executor_t *ex;
  ASSERT_EQ(mh_executor_new(&ex, &o), 0);
  int got = 1;
  mh_future_t *f;
  ASSERT_EQ(mh_executor_submit(ex, submit_from_worker, &ex, sizeof ex, &got, sizeof got, NULL, &f), 0);
  ASSERT_EQ(mh_future_result(f, 30.0), 0);
  mh_future_release(f);
  ASSERT_EQ(got, MH_EPERM);
  mh_executor_free(ex);
}
