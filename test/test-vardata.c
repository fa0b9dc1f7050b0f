/* SPDX-License-Identifier: MIT */
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
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

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

/* ---- results of any size (issue 10 item 4) ------------------------------ */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static size_t size_of_item(uint64_t i, size_t max) {
  uint64_t h = mix(i + 1);
  if (h % 5 == 0) return 0;
  if (h % 5 == 1) return (size_t)(h >> 8) % 41; /* inline sizes */
  return (size_t)(h >> 8) % (max + 1);
}

/* in: {index, max}.  The result: size_of_item bytes of a pattern; odd
 * indices grow their buffer in two steps to test the resize. */
static int t_var(const void *in, size_t isz, void *out, size_t osz,
                 void *ctx) {
  (void)isz, (void)ctx;
  ASSERT(out == NULL && osz == 0);
  const uint64_t *a = in;
  size_t n = size_of_item(a[0], (size_t)a[1]);
  unsigned char *p;
  if (a[0] % 2) {
    p = mh_task_output(n / 2);
    if (!p) return MH_ENOMEM;
    for (size_t k = 0; k < n / 2; k++) p[k] = (unsigned char)(a[0] * 7 + k);
  }
  p = mh_task_output(n);
  if (!p) return MH_ENOMEM;
  for (size_t k = a[0] % 2 ? n / 2 : 0; k < n; k++)
    p[k] = (unsigned char)(a[0] * 7 + k);
  if (a[0] % 97 == 13) return MH_EUSER - 1; /* fails: no result */
  return 0;
}

static void check_var(uint64_t i, size_t max, int st, void *data,
                      size_t size) {
  if (i % 97 == 13) {
    ASSERT_ERR(st, MH_EUSER - 1);
    ASSERT(data == NULL && size == 0);
    return;
  }
  ASSERT_OK(st);
  ASSERT_EQ(size, size_of_item(i, max));
  ASSERT(size == 0 ? data == NULL : data != NULL);
  const unsigned char *p = data;
  for (size_t k = 0; k < size; k++)
    if (p[k] != (unsigned char)(i * 7 + k))
      ASSERT_EQ(p[k], (unsigned char)(i * 7 + k));
  mh_bytes_free(data);
}

static void var_results(mh_backend_t b) {
  mh_executor_t *ex = pool(b, 3);
  enum { N = 150 };
  const size_t max = 1 << 20;
  static uint64_t in[N][2];
  for (int i = 0; i < N; i++) in[i][0] = (uint64_t)i, in[i][1] = max;
  /* map, several chunk sizes */
  static void *outs[N];
  static size_t sizes[N];
  static int st[N];
  size_t chunks[] = {0, 1, 7};
  for (int r = 0; r < 3; r++) {
    int rc = mh_executor_map_bytes(ex, t_var, NULL, in, sizeof in[0], N,
                                   chunks[r], st, outs, sizes);
    ASSERT_ERR(rc, MH_EUSER - 1); /* item 13 is the lowest failing one */
    for (int i = 0; i < N; i++) check_var((uint64_t)i, max, st[i], outs[i], sizes[i]);
  }
  /* imap, ordered and not */
  for (unsigned fl = 0; fl <= MH_MAP_UNORDERED; fl++) {
    mh_bytes_iter_t *it;
    ASSERT_OK(mh_executor_imap_bytes(ex, t_var, NULL, in, sizeof in[0], N, 0,
                                     fl, &it));
    size_t idx, got = 0, prev = 0;
    int s;
    void *data;
    size_t size;
    while (mh_bytes_iter_next(it, 60, &idx, &s, &data, &size) == 0) {
      if (!fl) ASSERT(got == 0 || idx == prev + 1);
      prev = idx;
      check_var(idx, max, s, data, size);
      got++;
    }
    ASSERT_EQ(got, N);
    mh_bytes_iter_free(it);
  }
  /* an iterator freed before its results were taken frees them */
  mh_bytes_iter_t *it;
  ASSERT_OK(mh_executor_imap_bytes(ex, t_var, NULL, in, sizeof in[0], N, 3, 0,
                                   &it));
  mh_bytes_iter_free(it);
  /* submit */
  enum { S = 40 };
  mh_future_t *fs[S];
  static mh_bytes_slot_t slots[S];
  for (int i = 0; i < S; i++)
    ASSERT_OK(mh_executor_submit_bytes(ex, t_var, in[i], sizeof in[i], NULL,
                                       &slots[i], &fs[i]));
  for (int i = 0; i < S; i++) {
    void *data;
    size_t size;
    int rc = mh_future_result_bytes(fs[i], &slots[i], 60, &data, &size);
    check_var((uint64_t)i, max, rc, data, size);
    ASSERT_ERR(mh_future_result_bytes(fs[i], &slots[i], 60, &data, &size),
               i % 97 == 13 ? MH_EUSER - 1 : 0);
    ASSERT(data == NULL && size == 0); /* taken once */
    mh_future_release(fs[i]);
  }
  /* bad input */
  void *o1;
  size_t s1;
  ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, in, sizeof in[0], 1, 0,
                                   NULL, NULL, &s1),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_map_bytes(NULL, t_var, NULL, in, sizeof in[0], 1, 0,
                                   NULL, &o1, &s1),
             MH_EINVAL);
  ASSERT_ERR(mh_executor_imap_bytes(ex, t_var, NULL, in, sizeof in[0], 1, 0,
                                    0, NULL),
             MH_EINVAL);
  ASSERT(mh_task_output(10) == NULL); /* not inside a task */
  mh_executor_free(ex);
}

TEST(var_results_processes) { var_results(MH_BACKEND_PROCESSES); }
TEST(var_results_threads) { var_results(MH_BACKEND_THREADS); }

/* Under a sanitizer resident memory counts its shadow and quarantine
 * (MH__ASAN, MH__TSAN, MH__SANITIZED: src/sanitizer.h, through test.h). */

static long rss_kib(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  long total = 0, v;
  while (fp && fgets(line, sizeof line, fp))
    if (sscanf(line, "RssAnon: %ld", &v) == 1 ||
        sscanf(line, "RssShmem: %ld", &v) == 1)
      total += v;
  if (fp) fclose(fp);
  return total;
}

/* 10^5 items of up to 32 KiB each (about 1 GB in all) through imap: the
 * parent's resident memory stays flat (the per-item records aside). */
static void long_imap(mh_backend_t b) {
  mh_executor_t *ex = pool(b, 2);
  enum { N = 100000 };
  const size_t max = 32 << 10;
  uint64_t(*in)[2] = malloc(sizeof *in * N);
  ASSERT(in);
  for (size_t i = 0; i < N; i++) in[i][0] = i, in[i][1] = max;
  mh_bytes_iter_t *it;
  ASSERT_OK(mh_executor_imap_bytes(ex, t_var, NULL, in, sizeof in[0], N, 0,
                                   0, &it));
  size_t idx, got = 0;
  int s;
  void *data;
  size_t size;
  long base = 0, peak = 0;
  uint64_t bytes = 0;
  while (mh_bytes_iter_next(it, 120, &idx, &s, &data, &size) == 0) {
    ASSERT_EQ(idx, got);
    bytes += size;
    check_var(idx, max, s, data, size);
    got++;
    if (got == 2000) base = rss_kib();
    if (got > 2000 && got % 1000 == 0) {
      long r = rss_kib();
      if (r > peak) peak = r;
    }
  }
  ASSERT_EQ(got, N);
  mh_bytes_iter_free(it);
  printf("imap of %d items, %.2f GB: resident %ld KiB after 2000 items, "
         "peak %ld KiB\n",
         N, bytes / 1e9, base, peak);
  ASSERT(bytes > (uint64_t)512 << 20);
  /* < 64 MiB of growth for 1 GB; ASan keeps 256 MiB of freed blocks in
   * quarantine, so there the bound only says "not 1 GB"; TSan's shadow of
   * every heap address the parent copied from counts as resident, so the
   * bound is not checked there (the plain and ASan builds check it). */
#if MH__TSAN
  (void)peak;
#else
  ASSERT(peak < base + (MH__ASAN ? 400 : 64) * 1024);
#endif
  mh_executor_free(ex);
  free(in);
}

TEST(long_imap_flat_processes) { long_imap(MH_BACKEND_PROCESSES); }
TEST(long_imap_flat_threads) { long_imap(MH_BACKEND_THREADS); }

/* A map of more items than one batch (executor_bytes.c's MAP_BATCH) with
 * small results: the chunks' results are taken while the workers run, the
 * workers reuse their blocks, and the results live in shared arenas.  Every
 * byte is checked, and the results are freed out of order (the even ones
 * first), so that an arena outlives most of its results. */
/* A map's arrays: inputs (item i, largest size max) and its results. */
typedef struct {
  uint64_t (*in)[2];
  void **outs;
  size_t *sizes;
  int *st;
} map_bufs_t;

static map_bufs_t bufs_new(size_t n, size_t max) {
  map_bufs_t b = {malloc(sizeof *b.in * n), malloc(sizeof *b.outs * n),
                  malloc(sizeof *b.sizes * n), malloc(sizeof *b.st * n)};
  ASSERT(b.in && b.outs && b.sizes && b.st);
  for (size_t i = 0; i < n; i++) b.in[i][0] = i, b.in[i][1] = max;
  return b;
}

static void bufs_free(map_bufs_t *b) { free(b->in), free(b->outs), free(b->sizes), free(b->st); }

static void big_map(mh_backend_t b) {
  mh_executor_t *ex = pool(b, 2);
  enum { N = 300000 };
  const size_t max = 300;
  map_bufs_t m = bufs_new(N, max);
  uint64_t(*in)[2] = m.in;
  void **outs = m.outs;
  size_t *sizes = m.sizes;
  int *st = m.st;
  size_t chunks[] = {0, 1000};
  for (int r = 0; r < 2; r++) {
    int rc = mh_executor_map_bytes(ex, t_var, NULL, in, sizeof in[0], N, chunks[r], st,
                                   outs, sizes);
    ASSERT_ERR(rc, MH_EUSER - 1);
    for (size_t i = 0; i < N; i += 2) check_var(i, max, st[i], outs[i], sizes[i]);
    for (size_t i = 1; i < N; i += 2) check_var(i, max, st[i], outs[i], sizes[i]);
  }
  mh_executor_free(ex);
  bufs_free(&m);
}

TEST(big_map_small_results_processes) { big_map(MH_BACKEND_PROCESSES); }
TEST(big_map_small_results_threads) { big_map(MH_BACKEND_THREADS); }

/* Results of 0..64 KiB, three maps: the first learns the size per item (a
 * probe batch, then chunks sized in bytes and a capped window), the others
 * start from what was learnt.  Every byte is checked; the results are
 * freed last first; once they are all freed the parent's memory is back
 * where it was (the blocks the results lay in are given back, but for the
 * few kept warm for the next map). */
TEST(big_map_64k_results_processes) {
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  const size_t n = MH__SANITIZED ? 1500 : 6000, max = 65536;
  map_bufs_t m = bufs_new(n, max);
  uint64_t(*in)[2] = m.in;
  void **outs = m.outs;
  size_t *sizes = m.sizes;
  int *st = m.st;
  long base = 0;
  for (int r = 0; r < 3; r++) {
    int rc = mh_executor_map_bytes(ex, t_var, NULL, in, sizeof in[0], n, 0, st, outs,
                                   sizes);
    ASSERT_ERR(rc, MH_EUSER - 1);
    size_t total = 0;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < n; i++) { /* read them: resident here too */
      total += sizes[i];
      for (size_t k = 0; k < sizes[i]; k += 1024) sum += ((const unsigned char *)outs[i])[k];
    }
    (void)sum;
    long held = rss_kib();
    for (size_t i = n; i-- > 0;) check_var(i, max, st[i], outs[i], sizes[i]);
    long after = rss_kib();
    printf("map %d: %zu MiB of results, resident %ld KiB held, %ld KiB freed\n", r,
           total >> 20, held, after);
    ASSERT(held > after); /* the results were resident, and went */
    if (r == 0) base = after;
    else ASSERT(MH__SANITIZED || after < base + 8 * 1024);
  }
  mh_executor_free(ex);
  bufs_free(&m);
}

static int t_64(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)isz, (void)out, (void)osz, (void)ctx;
  uint64_t i = *(const uint64_t *)in;
  unsigned char *p = mh_task_output(64);
  if (!p) return MH_ENOMEM;
  for (size_t k = 0; k < 64; k++) p[k] = (unsigned char)(i * 7 + k);
  return 0;
}

/* 4 x 10^5 results of 64 B through imap: resident memory stays flat (the
 * workers' blocks are reused once the parent took their results). */
TEST(long_imap_64b_flat) {
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  enum { N = 400000 };
  uint64_t *in = malloc(sizeof *in * N);
  ASSERT(in);
  for (size_t i = 0; i < N; i++) in[i] = i;
  mh_bytes_iter_t *it;
  ASSERT_OK(mh_executor_imap_bytes(ex, t_64, NULL, in, sizeof in[0], N, 0, 0, &it));
  size_t idx, got = 0;
  int s;
  void *data;
  size_t size;
  long base = 0, peak = 0;
  while (mh_bytes_iter_next(it, 120, &idx, &s, &data, &size) == 0) {
    ASSERT_EQ(idx, got);
    ASSERT_OK(s);
    ASSERT_EQ(size, 64);
    const unsigned char *p = data;
    for (size_t k = 0; k < 64; k++) ASSERT_EQ(p[k], (unsigned char)(idx * 7 + k));
    mh_bytes_free(data);
    got++;
    if (got == 20000) base = rss_kib();
    if (got > 20000 && got % 10000 == 0) {
      long r = rss_kib();
      if (r > peak) peak = r;
    }
  }
  ASSERT_EQ(got, N);
  mh_bytes_iter_free(it);
  printf("imap of %d results of 64 B: resident %ld KiB after 20000, peak %ld KiB\n", N, base,
         peak);
  /* The per-item descriptors (16 B each, 6.4 MB in all) are allocated up
   * front and touched as results arrive, and the workers cycle through at
   * most 2 x 8 blocks of 1 MiB (22.4 MB at worst): that may grow.  Blocks
   * the workers failed to reuse would show as shared pages the parent
   * read: 4 x 10^5 results of 80 B with their headers are 32 MB (38 MB of
   * growth in all).  Measured: 8-9 MB. */
  ASSERT(MH__SANITIZED || peak < base + 31 * 1024);
  mh_executor_free(ex);
  free(in);
}

/* Check result i without freeing it (check_var frees). */
static void check_kept(uint64_t i, size_t max, int st, const void *data, size_t size) {
  if (i % 97 == 13) {
    ASSERT_ERR(st, MH_EUSER - 1);
    return;
  }
  ASSERT_OK(st);
  ASSERT_EQ(size, size_of_item(i, max));
  const unsigned char *p = data;
  for (size_t k = 0; k < size; k++)
    if (p[k] != (unsigned char)(i * 7 + k)) ASSERT_EQ(p[k], (unsigned char)(i * 7 + k));
}

/* On processes a result lies in memory shared with the workers (the
 * executor's result heap) until it is freed.  Results outlive their
 * executor: the heap stays mapped until the last one is freed. */
TEST(results_outlive_the_executor) {
  enum { N = 20000 };
  const size_t max = 2000;
  map_bufs_t m = bufs_new(N, max);
  for (int round = 0; round < 2; round++) {
    mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
    ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m.in, sizeof m.in[0], N, 0, m.st,
                                     m.outs, m.sizes),
               MH_EUSER - 1);
    mh_executor_free(ex); /* every worker gone */
    for (size_t i = 0; i < N; i++) check_kept(i, max, m.st[i], m.outs[i], m.sizes[i]);
    /* Freed in two halves, the second after a new executor was made and
     * used (its heap is another mapping, so nothing mixes). */
    for (size_t i = 0; i < N; i += 2) mh_bytes_free(m.outs[i]);
    ex = pool(MH_BACKEND_PROCESSES, 2);
    void *o[64];
    size_t sz[64];
    int st2[64];
    ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m.in, sizeof m.in[0], 64, 0, st2, o,
                                     sz),
               MH_EUSER - 1);
    for (size_t i = 0; i < 64; i++) check_var(i, max, st2[i], o[i], sz[i]);
    for (size_t i = 1; i < N; i += 2) check_kept(i, max, m.st[i], m.outs[i], m.sizes[i]);
    if (round == 0) mh_executor_free(ex); /* round 1: the results go last */
    for (size_t i = 1; i < N; i += 2) mh_bytes_free(m.outs[i]);
    if (round == 1) mh_executor_free(ex);
  }
  bufs_free(&m);
}

/* A process forked while the parent holds results inherits them; its
 * mh_bytes_free must not count against the parent's blocks (else the
 * workers would reuse blocks whose results the parent still holds and
 * write over them).  The child frees every result; then the parent runs
 * more maps on the same workers and finds its results intact. */
TEST(forked_child_frees_inherited_results) {
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  enum { N = 50000 };
  const size_t max = 300;
  map_bufs_t m = bufs_new(N, max);
  map_bufs_t m2 = bufs_new(N, max);
  ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m.in, sizeof m.in[0], N, 0, m.st,
                                   m.outs, m.sizes),
             MH_EUSER - 1);
  pid_t c = fork();
  ASSERT(c >= 0);
  if (c == 0) {
    for (size_t i = 0; i < N; i++) mh_bytes_free(m.outs[i]);
    _exit(0);
  }
  int ws;
  ASSERT_EQ(waitpid(c, &ws, 0), c);
  ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
  for (int r = 0; r < 3; r++) {
    ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m2.in, sizeof m2.in[0], N, 0, m2.st,
                                     m2.outs, m2.sizes),
               MH_EUSER - 1);
    for (size_t i = 0; i < N; i++) check_var(i, max, m2.st[i], m2.outs[i], m2.sizes[i]);
  }
  for (size_t i = 0; i < N; i++) check_var(i, max, m.st[i], m.outs[i], m.sizes[i]);
  mh_executor_free(ex);
  bufs_free(&m);
  bufs_free(&m2);
}

static long vmsize_kib(void) {
  FILE *fp = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (fp && fgets(line, sizeof line, fp))
    if (sscanf(line, "VmSize: %ld", &v) == 1) break;
  if (fp) fclose(fp);
  return v;
}

/* When every block of the result heap is out, results go to the heap's
 * ranges and are copied: nothing fails, nothing is lost.  An address-space
 * limit makes the heap small (the sizes tried first, 16, 4 and 1 GiB, do
 * not fit, so 256 MiB is reserved: 126 blocks of 1 MiB), and the map's
 * results (about 370 MB, all held) could not fit the whole heap, so most
 * of them must have taken the other way. */
TEST(blocks_run_out) {
  if (MH__SANITIZED) {
    printf("skipped under a sanitizer (its shadow memory needs the address space)\n");
    exit(77);
  }
  enum { N = 300000 };
  const size_t max = 4096;
  map_bufs_t m = bufs_new(N, max);
  pid_t c = fork();
  ASSERT(c >= 0);
  if (c == 0) {
    long vm = vmsize_kib();
    ASSERT(vm > 0);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = ((rlim_t)vm + 920 * 1024) * 1024;
    ASSERT(setrlimit(RLIMIT_AS, &rl) == 0);
    mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
    ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m.in, sizeof m.in[0], N, 0, m.st,
                                     m.outs, m.sizes),
               MH_EUSER - 1);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++) total += m.sizes[i];
    printf("%d results, %.0f MB held at once\n", N, total / 1e6);
    ASSERT(total > (uint64_t)300 << 20);
    for (size_t i = 0; i < N; i++) check_var(i, max, m.st[i], m.outs[i], m.sizes[i]);
    mh_executor_free(ex);
    _exit(0);
  }
  int ws;
  ASSERT_EQ(waitpid(c, &ws, 0), c);
  ASSERT(WIFEXITED(ws));
  ASSERT_EQ(WEXITSTATUS(ws), 0);
  bufs_free(&m);
}

/* A worker SIGKILLed while it writes a large result: that item fails with
 * MH_EWORKERDIED, every other result is right, and the pool goes on. */
typedef struct {
  _Atomic int pid;
} kpid_t;

static int t_slow_big(const void *in, size_t isz, void *out, size_t osz,
                      void *ctx) {
  (void)isz, (void)out, (void)osz;
  kpid_t *kp = ctx;
  _Atomic int *pid = &kp->pid;
  uint64_t i = *(const uint64_t *)in;
  size_t n = i == 5 ? (8u << 20) : 1000 + i;
  unsigned char *p = mh_task_output(n);
  if (!p) return MH_ENOMEM;
  for (size_t k = 0; k < n; k++) {
    p[k] = (unsigned char)(i + k);
    if (i == 5 && k == n / 2) {
      atomic_store(pid, (int)getpid());
      for (;;) pause(); /* half-way through its result */
    }
  }
  return 0;
}

TEST(worker_killed_mid_result) {
  void *mem = NULL;
  ASSERT_OK(mh_shared_mem_new(&mem, sizeof(kpid_t)));
  kpid_t *kp = mem;
  _Atomic int *pid = &kp->pid;
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  enum { N = 40 };
  uint64_t in[N];
  for (int i = 0; i < N; i++) in[i] = (uint64_t)i;
  for (int round = 0; round < 3; round++) {
    atomic_store(pid, 0);
    mh_bytes_iter_t *it;
    ASSERT_OK(mh_executor_imap_bytes(ex, t_slow_big, kp, in,
                                     sizeof in[0], N, 1, MH_MAP_UNORDERED,
                                     &it));
    while (atomic_load(pid) == 0) usleep(1000);
    kill(atomic_load(pid), SIGKILL);
    size_t idx, got = 0;
    int s;
    void *data;
    size_t size;
    while (mh_bytes_iter_next(it, 60, &idx, &s, &data, &size) == 0) {
      got++;
      if (idx == 5) {
        ASSERT_ERR(s, MH_EWORKERDIED);
        ASSERT(data == NULL && size == 0);
        continue;
      }
      ASSERT_OK(s);
      ASSERT_EQ(size, 1000 + idx);
      const unsigned char *p = data;
      for (size_t k = 0; k < size; k++)
        ASSERT_EQ(p[k], (unsigned char)(idx + k));
      mh_bytes_free(data);
    }
    ASSERT_EQ(got, N);
    mh_bytes_iter_free(it);
  }
  mh_executor_free(ex);
  mh_shared_mem_free(mem);
}

/* Workers SIGKILLed at random moments during maps of small results (the
 * uncopied ones, in the shared blocks): every item either has its right
 * bytes or failed with MH_EWORKERDIED, and nothing a dead worker left in
 * its blocks is ever handed out or breaks the maps after it. */
static int t_var_pid(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  atomic_store(&((kpid_t *)ctx)->pid, (int)getpid());
  return t_var(in, isz, out, osz, NULL);
}

TEST(small_results_under_kills) {
  void *mem = NULL;
  ASSERT_OK(mh_shared_mem_new(&mem, sizeof(kpid_t)));
  kpid_t *kp = mem;
  mh_executor_t *ex = pool(MH_BACKEND_PROCESSES, 2);
  const size_t n = MH__SANITIZED ? 20000 : 100000, max = 600;
  map_bufs_t m = bufs_new(n, max);
  int rounds = MH__SANITIZED ? 4 : 12, died = 0;
  for (int r = 0; r < rounds; r++) {
    atomic_store(&kp->pid, 0);
    pid_t killer = fork();
    ASSERT(killer >= 0);
    if (killer == 0) { /* kills the worker seen last, after a random delay */
      usleep((useconds_t)(mht_rand() % 20000));
      int pid = atomic_load(&kp->pid);
      if (pid > 0) kill(pid, SIGKILL);
      _exit(0);
    }
    int rc = mh_executor_map_bytes(ex, t_var_pid, kp, m.in, sizeof m.in[0], n, 0, m.st,
                                   m.outs, m.sizes);
    int ws;
    ASSERT_EQ(waitpid(killer, &ws, 0), killer);
    ASSERT(rc == MH_EUSER - 1 || rc == MH_EWORKERDIED);
    for (size_t i = 0; i < n; i++) {
      if (m.st[i] == MH_EWORKERDIED) {
        ASSERT(m.outs[i] == NULL && m.sizes[i] == 0);
        died++;
        continue;
      }
      check_var(i, max, m.st[i], m.outs[i], m.sizes[i]);
    }
  }
  printf("%d rounds, %d items lost to killed workers\n", rounds, died);
  /* And a last map, with nobody killed, is whole. */
  ASSERT_ERR(mh_executor_map_bytes(ex, t_var, NULL, m.in, sizeof m.in[0], n, 0, m.st, m.outs,
                                   m.sizes),
             MH_EUSER - 1);
  for (size_t i = 0; i < n; i++) check_var(i, max, m.st[i], m.outs[i], m.sizes[i]);
  mh_executor_free(ex);
  bufs_free(&m);
  mh_shared_mem_free(mem);
}
