/* test-vardata.c - a task context that cannot go stale (issue 10 item 5).
 *
 * The new user's program: a pool counts primes below a limit read through
 * `ctx` and adds into a total.  With plain memory as ctx the process
 * backend must refuse at submit / map / imap time (no silent total = 0);
 * with the executor's by-value context or shared memory made before the
 * pool it must give the right answer, and a context changed between maps
 * must reach the workers.
 */
#include <stdatomic.h>
#include <string.h>

#include "test.h"

typedef struct {
  long limit;         /* count primes in [in, in + step) below limit */
  long step;
  _Atomic long total; /* used when the context is shared memory */
} prime_ctx_t;

static int is_prime(long v) {
  if (v < 2) return 0;
  for (long d = 2; d * d <= v; d++)
    if (v % d == 0) return 0;
  return 1;
}

/* in: a block start; out: the primes counted in it (also added to total). */
static int t_primes(const void *in, size_t isz, void *out, size_t osz,
                    void *ctx) {
  (void)isz, (void)osz;
  prime_ctx_t *c = ctx;
  long lo = *(const long *)in, n = 0;
  for (long v = lo; v < lo + c->step && v < c->limit; v++) n += is_prime(v);
  *(long *)out = n;
  atomic_fetch_add(&c->total, n);
  return 0;
}

static long primes_below(long limit) {
  long n = 0;
  for (long v = 0; v < limit; v++) n += is_prime(v);
  return n;
}

static mh_executor_t *pool(mh_backend_t b, int workers) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = b;
  o.workers = workers;
  mh_executor_t *ex = NULL;
  ASSERT_OK(mh_executor_new(&ex, &o));
  return ex;
}

enum { NB = 64 };

static long sum(const long *v, size_t n) {
  long s = 0;
  for (size_t i = 0; i < n; i++) s += v[i];
  return s;
}

/* out: the first byte of ctx, or -1 for NULL. */
static int t_first_byte(const void *in, size_t isz, void *out, size_t osz,
                        void *ctx) {
  (void)in, (void)isz, (void)osz;
  *(long *)out = ctx ? *(const char *)ctx : -1;
  return 0;
}

static prime_ctx_t plain_global; /* .bss: copied into the workers at fork */

/* The user's program as it was written: ctx is plain memory (a global, the
 * heap, the stack, an integer) on the process backend.  Every entry point
 * refuses it, before any work starts; the thread backend accepts it. */
TEST(plain_ctx_refused) {
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  prime_ctx_t on_stack = {20000, 20000 / NB + 1, 0};
  plain_global = on_stack;
  prime_ctx_t *on_heap = malloc(sizeof *on_heap);
  ASSERT(on_heap);
  *on_heap = on_stack;
  void *bad[] = {&on_stack, &plain_global, on_heap, (void *)(intptr_t)12345};
  long in[NB], out[NB];
  for (int i = 0; i < NB; i++) in[i] = i * on_stack.step, out[i] = -1;
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ASSERT_ERR(mh_executor_map(ex, t_primes, bad[k], in, sizeof(long), out,
                               sizeof(long), NB, 0, NULL),
               MH_EINVAL);
    mh_future_t *f = NULL;
    ASSERT_ERR(mh_executor_submit(ex, t_primes, in, sizeof(long), out,
                                  sizeof(long), bad[k], &f),
               MH_EINVAL);
    ASSERT(f == NULL);
    mh_map_iter_t *it = NULL;
    ASSERT_ERR(mh_executor_imap(ex, t_primes, bad[k], in, sizeof(long), out,
                                sizeof(long), NB, 0, 0, &it),
               MH_EINVAL);
    ASSERT(it == NULL);
  }
  for (int i = 0; i < NB; i++) ASSERT_EQ(out[i], -1); /* nothing ran */
  /* A block shared after the pool was made is not visible to the workers
   * either: refused. */
  void *late = NULL;
  ASSERT_OK(mh_shared_mem_new(&late, sizeof(prime_ctx_t)));
  ASSERT_ERR(mh_executor_map(ex, t_primes, late, in, sizeof(long), out,
                             sizeof(long), NB, 0, NULL),
             MH_EINVAL);
  /* NULL and a string literal (read-only at fork) are fine. */
  mh_future_t *f = NULL;
  ASSERT_OK(mh_executor_submit(ex, t_first_byte, NULL, 0, out, sizeof(long),
                               (void *)(uintptr_t) "xyz", &f));
  ASSERT_OK(mh_future_result(f, 30));
  ASSERT_EQ(out[0], 'x');
  mh_future_release(f);
  ASSERT_OK(mh_executor_submit(ex, t_first_byte, NULL, 0, out, sizeof(long),
                               NULL, &f));
  ASSERT_OK(mh_future_result(f, 30));
  ASSERT_EQ(out[0], -1);
  mh_future_release(f);
  mh_executor_free(ex);
  mh_shared_mem_free(late);
  /* Threads: the same program is right with plain memory. */
  ex = pool(MH_BACKEND_THREADS, 3);
  ASSERT_OK(mh_executor_map(ex, t_primes, on_heap, in, sizeof(long), out,
                            sizeof(long), NB, 0, NULL));
  ASSERT_EQ(atomic_load(&on_heap->total), primes_below(on_stack.limit));
  ASSERT_EQ(sum(out, NB), primes_below(on_stack.limit));
  mh_executor_free(ex);
  free(on_heap);
}

/* The by-value context on both backends: the right answer for map, imap
 * and submit, and a context changed between maps reaches the workers. */
static void by_value(mh_backend_t b) {
  mh_executor_t *ex = pool(b, 3);
  long limits[] = {5000, 30000, 1, 12000, 30000};
  for (size_t r = 0; r < sizeof limits / sizeof limits[0]; r++) {
    prime_ctx_t c = {limits[r], 30000 / NB + 1, 0};
    ASSERT_OK(mh_executor_set_context(ex, &c, sizeof c));
    ASSERT_EQ(mh_executor_context_size(ex), sizeof c);
    prime_ctx_t *cp = mh_executor_context(ex);
    ASSERT(cp);
    long in[NB], out[NB];
    for (int i = 0; i < NB; i++) in[i] = i * c.step, out[i] = -1;
    long want = primes_below(limits[r]);
    ASSERT_OK(mh_executor_map(ex, t_primes, cp, in, sizeof(long), out,
                              sizeof(long), NB, (size_t)r, NULL));
    ASSERT_EQ(sum(out, NB), want);
    ASSERT_EQ(atomic_load(&cp->total), want); /* workers added into it */
    /* imap, unordered */
    mh_map_iter_t *it;
    for (int i = 0; i < NB; i++) out[i] = -1;
    ASSERT_OK(mh_executor_imap(ex, t_primes, cp, in, sizeof(long), out,
                               sizeof(long), NB, 1, MH_MAP_UNORDERED, &it));
    size_t idx;
    int st, got = 0;
    while (mh_map_iter_next(it, 30, &idx, &st) == 0) {
      ASSERT_OK(st);
      got++;
    }
    mh_map_iter_free(it);
    ASSERT_EQ(got, NB);
    ASSERT_EQ(sum(out, NB), want);
    /* submit */
    mh_future_t *fs[NB];
    for (int i = 0; i < NB; i++)
      ASSERT_OK(mh_executor_submit(ex, t_primes, &in[i], sizeof(long),
                                   &out[i], sizeof(long), cp, &fs[i]));
    for (int i = 0; i < NB; i++) {
      ASSERT_OK(mh_future_result(fs[i], 30));
      mh_future_release(fs[i]);
    }
    ASSERT_EQ(sum(out, NB), want);
    ASSERT_EQ(atomic_load(&cp->total), 3 * want);
  }
  /* Bad input. */
  ASSERT_ERR(mh_executor_set_context(NULL, "x", 1), MH_EINVAL);
  ASSERT_ERR(mh_executor_set_context(ex, NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_executor_set_context(ex, "x", ((size_t)64 << 20) + 1),
             MH_EINVAL);
  ASSERT_OK(mh_executor_set_context(ex, NULL, 0));
  ASSERT_EQ(mh_executor_context_size(ex), 0);
  ASSERT(mh_executor_context(NULL) == NULL);
  ASSERT_EQ(mh_executor_context_size(NULL), 0);
  mh_executor_free(ex);
}

TEST(by_value_processes) { by_value(MH_BACKEND_PROCESSES); }
TEST(by_value_threads) { by_value(MH_BACKEND_THREADS); }

/* A large context (8 MiB) changed between maps: every worker reads the
 * current bytes, not those of an earlier map. */
static int t_ctx_sum(const void *in, size_t isz, void *out, size_t osz,
                     void *ctx) {
  (void)isz, (void)osz;
  const unsigned char *c = ctx;
  size_t lo = *(const size_t *)in, s = 0;
  for (size_t i = lo; i < lo + (1u << 17); i++) s += c[i];
  *(size_t *)out = s;
  return 0;
}

TEST(big_context_changes) {
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  enum { SZ = 8 << 20, N = SZ >> 17 };
  unsigned char *buf = malloc(SZ);
  ASSERT(buf);
  size_t in[N], out[N];
  for (size_t i = 0; i < N; i++) in[i] = i << 17;
  for (int r = 0; r < 6; r++) {
    memset(buf, r * 37 + 1, SZ);
    ASSERT_OK(mh_executor_set_context(ex, buf, SZ));
    ASSERT_OK(mh_executor_map(ex, t_ctx_sum, mh_executor_context(ex), in,
                              sizeof(size_t), out, sizeof(size_t), N, 1,
                              NULL));
    for (size_t i = 0; i < N; i++)
      ASSERT_EQ(out[i], (size_t)(r * 37 + 1) << 17);
  }
  mh_executor_free(ex);
  free(buf);
}

/* Shared memory made before the pool: the user's program is right. */
TEST(shared_ctx_processes) {
  prime_ctx_t *c = NULL;
  ASSERT_OK(mh_shared_mem_new((void **)&c, sizeof *c));
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 3);
  for (long limit = 1000; limit <= 30000; limit *= 3) {
    c->limit = limit;
    c->step = 30000 / NB + 1;
    atomic_store(&c->total, 0);
    long in[NB], out[NB];
    for (int i = 0; i < NB; i++) in[i] = i * c->step;
    ASSERT_OK(mh_executor_map(ex, t_primes, c, in, sizeof(long), out,
                              sizeof(long), NB, 0, NULL));
    ASSERT_EQ(atomic_load(&c->total), primes_below(limit));
    ASSERT_EQ(sum(out, NB), primes_below(limit));
  }
  mh_executor_free(ex);
  mh_shared_mem_free(c);
}
