/* SPDX-License-Identifier: MIT */
/* test-pi.c - the Monte Carlo pi job: kernels agree, counts are pinned and
 * exact, the statistics are sound, and runs do not depend on the workers. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "test.h"
#include "../src/pi/pi_internal.h"
#include "executor/procpool.h"

static const mh_pi_kernel_t all_kernels[] = {
    MH_PI_KERNEL_SCALAR, MH_PI_KERNEL_AVX2, MH_PI_KERNEL_AVX512};
#define NKERNELS 3

static uint64_t count(uint64_t seed, uint64_t block, uint64_t n,
                      mh_pi_kernel_t k) {
  uint64_t inside = UINT64_MAX;
  ASSERT_OK(mh_pi_count_block(seed, block, n, k, &inside));
  ASSERT(inside <= n);
  return inside;
}

TEST(kernel_names) {
  mh_pi_kernel_t k;
  for (int i = 0; i < 4; i++) {
    const char *name = mh_pi_kernel_name((mh_pi_kernel_t)i);
    ASSERT(name != NULL);
    ASSERT_OK(mh_pi_kernel_parse(name, &k));
    ASSERT_EQ(k, i);
  }
  ASSERT_STREQ(mh_pi_kernel_name(MH_PI_KERNEL_AVX512), "avx512");
  ASSERT(mh_pi_kernel_name((mh_pi_kernel_t)4) == NULL);
  ASSERT(mh_pi_kernel_name((mh_pi_kernel_t)-1) == NULL);
  ASSERT_ERR(mh_pi_kernel_parse("avx1024", &k), MH_EINVAL);
  ASSERT_ERR(mh_pi_kernel_parse("", &k), MH_EINVAL);
  ASSERT_ERR(mh_pi_kernel_parse(NULL, &k), MH_EINVAL);
  ASSERT_ERR(mh_pi_kernel_parse("auto", NULL), MH_EINVAL);
  ASSERT_EQ(mh_pi_kernel_supported(MH_PI_KERNEL_AUTO), 1);
  ASSERT_EQ(mh_pi_kernel_supported(MH_PI_KERNEL_SCALAR), 1);
  ASSERT_EQ(mh_pi_kernel_supported((mh_pi_kernel_t)9), 0);
  mh_pi_kernel_t best = mh_pi_kernel_best();
  ASSERT(best != MH_PI_KERNEL_AUTO);
  ASSERT_EQ(mh_pi_kernel_supported(best), 1);
  printf("best kernel here: %s\n", mh_pi_kernel_name(best));
}

TEST(count_block_errors) {
  uint64_t in;
  ASSERT_ERR(mh_pi_count_block(1, 0, 0, MH_PI_KERNEL_AUTO, &in), MH_EINVAL);
  ASSERT_ERR(mh_pi_count_block(1, 0, MH_PI_BLOCK_POINTS + 1, MH_PI_KERNEL_AUTO, &in),
             MH_EINVAL);
  ASSERT_ERR(mh_pi_count_block(1, 0, UINT64_MAX, MH_PI_KERNEL_AUTO, &in), MH_EINVAL);
  ASSERT_ERR(mh_pi_count_block(1, 0, 10, MH_PI_KERNEL_AUTO, NULL), MH_EINVAL);
  ASSERT_ERR(mh_pi_count_block(1, 0, 10, (mh_pi_kernel_t)7, &in), MH_EINVAL);
  ASSERT_ERR(mh_pi_count_block(1, 0, 10, (mh_pi_kernel_t)-2, &in), MH_EINVAL);
  /* A CPU without AVX-512 / AVX2 (simulated): asking for them is ENOTSUP,
   * AUTO falls back, and the answer stays the same. */
  uint64_t want = count(5, 3, 5000, MH_PI_KERNEL_SCALAR);
  mh__pi_test_disabled_kernels = 1u << MH_PI_KERNEL_AVX512;
  ASSERT_ERR(mh_pi_count_block(5, 3, 5000, MH_PI_KERNEL_AVX512, &in), MH_ENOTSUP);
  ASSERT(mh_pi_kernel_best() != MH_PI_KERNEL_AVX512);
  ASSERT_UEQ(count(5, 3, 5000, MH_PI_KERNEL_AUTO), want);
  mh__pi_test_disabled_kernels |= 1u << MH_PI_KERNEL_AVX2;
  ASSERT_ERR(mh_pi_count_block(5, 3, 5000, MH_PI_KERNEL_AVX2, &in), MH_ENOTSUP);
  ASSERT_EQ(mh_pi_kernel_best(), MH_PI_KERNEL_SCALAR);
  ASSERT_EQ(mh_pi_kernel_supported(MH_PI_KERNEL_AVX2), 0);
  ASSERT_UEQ(count(5, 3, 5000, MH_PI_KERNEL_AUTO), want);
  mh__pi_test_disabled_kernels = 0;
}

/* Every kernel this CPU has gives the same count as the scalar reference,
 * for full and partial blocks, npoints of every residue modulo the step. */
TEST(kernels_agree) {
  static const uint64_t sizes[] = {1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65,
                                   1000, 4097, 99999, 123457,
                                   MH_PI_BLOCK_POINTS - 1, MH_PI_BLOCK_POINTS};
  uint64_t seeds[] = {0, 1, MH_PI_DEFAULT_SEED, UINT64_MAX, 0x123456789abcdefULL};
  int compared = 0;
  for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; si++) {
    for (size_t ni = 0; ni < sizeof sizes / sizeof sizes[0]; ni++) {
      uint64_t n = sizes[ni];
      /* Large blocks are slow on the scalar kernel: fewer seeds for them. */
      if (n > 200000 && si >= 2) continue;
      uint64_t block = (si * 7919 + ni * 104729) % ((uint64_t)1 << 41);
      uint64_t want = count(seeds[si], block, n, MH_PI_KERNEL_SCALAR);
      for (int k = 1; k < NKERNELS; k++) {
        if (!mh_pi_kernel_supported(all_kernels[k])) continue;
        ASSERT_UEQ(count(seeds[si], block, n, all_kernels[k]), want);
        compared++;
      }
    }
  }
  /* Random sizes and blocks, including the last block of a huge run. */
  for (int i = 0; i < 60; i++) {
    uint64_t seed = mht_rand();
    uint64_t block = i == 0 ? ((UINT64_C(1) << 63) - 1) / MH_PI_BLOCK_POINTS
                            : mht_rand();
    uint64_t n = 1 + mht_rand() % 70000;
    uint64_t want = count(seed, block, n, MH_PI_KERNEL_SCALAR);
    for (int k = 1; k < NKERNELS; k++) {
      if (!mh_pi_kernel_supported(all_kernels[k])) continue;
      ASSERT_UEQ(count(seed, block, n, all_kernels[k]), want);
      compared++;
    }
  }
  printf("%d SIMD comparisons (avx2 %s, avx512 %s)\n", compared,
         mh_pi_kernel_supported(MH_PI_KERNEL_AVX2) ? "yes" : "absent",
         mh_pi_kernel_supported(MH_PI_KERNEL_AVX512) ? "yes" : "absent");
}

/* The points of a block are one sequence: a block of n + 1 points counts the
 * same as n points plus 0 or 1, on every kernel.  This checks that partial
 * steps and the order of auxiliary draws follow the canonical order. */
TEST(prefix_property) {
  for (int k = 0; k < NKERNELS; k++) {
    if (!mh_pi_kernel_supported(all_kernels[k])) continue;
    uint64_t prev = 0;
    for (uint64_t n = 1; n <= 3000; n++) {
      uint64_t c = count(42, 9, n, all_kernels[k]);
      ASSERT(c == prev || c == prev + 1);
      prev = c;
    }
    /* Deep in the block, after many auxiliary draws: a shorter walk. */
    prev = count(42, 9, 200000, all_kernels[k]);
    for (uint64_t n = 200001; n < 200000 + 320; n++) {
      uint64_t c = count(42, 9, n, all_kernels[k]);
      ASSERT(c == prev || c == prev + 1);
      prev = c;
    }
  }
}

/* Pinned counts: any change of the stream, the seeding or the test shows
 * here (and in docs/pi.md's promise that old results can be reproduced). */
TEST(known_answer) {
  for (int k = 0; k < NKERNELS; k++) {
    if (!mh_pi_kernel_supported(all_kernels[k])) continue;
    ASSERT_UEQ(count(MH_PI_DEFAULT_SEED, 0, MH_PI_BLOCK_POINTS, all_kernels[k]),
               3293545);
    ASSERT_UEQ(count(MH_PI_DEFAULT_SEED, 12345, 1000003, all_kernels[k]), 785215);
    ASSERT_UEQ(count(MH_PI_DEFAULT_SEED, 0, 1000, all_kernels[k]), 785);
  }
  ASSERT_EQ(mh_pi_repeat_seed(77, 0), 77);
  ASSERT(mh_pi_repeat_seed(77, 1) != 77);
  ASSERT(mh_pi_repeat_seed(77, 1) != mh_pi_repeat_seed(77, 2));
  ASSERT(mh_pi_repeat_seed(77, 1) != mh_pi_repeat_seed(78, 1));
}

/* The coarse decision never contradicts the exact one: for every a, the b
 * just inside/outside both thresholds, with the extreme refinements, the
 * exact test agrees with "clearly inside" / "clearly outside". */
TEST(coarse_margins_exact) {
  long checked = 0, band = 0;
  for (int32_t a = -32768; a < 32768; a++) {
    int64_t lims[2] = {MH__PI_IN_MAX, MH__PI_OUT_MIN};
    for (int li = 0; li < 2; li++) {
      int64_t rest = lims[li] - (int64_t)a * a;
      if (rest < 0) continue;
      int32_t r = (int32_t)sqrt((double)rest);
      for (int32_t bb = r - 2; bb <= r + 2; bb++) {
        for (int sign = -1; sign <= 1; sign += 2) {
          int32_t b = sign * bb - (sign < 0 ? 1 : 0);
          if (b < -32768 || b > 32767) continue;
          uint32_t w = (uint32_t)(uint16_t)(int16_t)a |
                       ((uint32_t)(uint16_t)(int16_t)b << 16);
          uint32_t s = (uint32_t)(a * a) + (uint32_t)(b * b);
          static const uint64_t fines[] = {0, 0xffffffffULL,
                                           0xffffffff00000000ULL,
                                           0xffffffffffffffffULL,
                                           0x8000000080000000ULL};
          for (int f = 0; f < 5; f++) {
            int exact = mh__pi_refine(w, fines[f]);
            if (s <= MH__PI_IN_MAX) ASSERT_EQ(exact, 1);
            else if (s >= MH__PI_OUT_MIN) ASSERT_EQ(exact, 0);
            else band++;
            checked++;
          }
        }
      }
    }
  }
  /* The exact test itself against long double on random points. */
  for (int i = 0; i < 100000; i++) {
    uint32_t w = (uint32_t)mht_rand();
    uint64_t fine = mht_rand();
    int32_t a = (int16_t)(w & 0xffff), b = (int16_t)(w >> 16);
    long double x = ((long double)a * 8589934592.0L + 2.0L * (long double)(fine & 0xffffffffu) + 1) /
                    281474976710656.0L; /* 2^48 */
    long double y = ((long double)b * 8589934592.0L + 2.0L * (long double)(fine >> 32) + 1) /
                    281474976710656.0L;
    long double r = x * x + y * y;
    if (fabsl(r - 1.0L) > 1e-12L) ASSERT_EQ(mh__pi_refine(w, fine), r < 1.0L);
  }
  /* Corner a = b = -2^15: s = 2^31 wraps in a signed view; it is outside. */
  ASSERT_EQ(mh__pi_refine(0x80008000u, 0), 0);
  ASSERT_GT(checked, 100000);
  ASSERT_GT(band, 1000);
}

/* z = (pi_hat - pi) / stderr over `seeds` runs of n points each. */
static void z_stats(int seeds, uint64_t n, double *mean, double *sd) {
  double sum = 0, sum2 = 0;
  for (int i = 0; i < seeds; i++) {
    uint64_t seed = mh_pi_repeat_seed(0xabcdef, (uint64_t)i + 1);
    uint64_t inside = 0, left = n, block = 0;
    while (left) {
      uint64_t m = left < MH_PI_BLOCK_POINTS ? left : MH_PI_BLOCK_POINTS;
      inside += count(seed, block++, m, MH_PI_KERNEL_AUTO);
      left -= m;
    }
    double pi, se;
    mh_pi_estimate(inside, n, &pi, &se);
    double z = (pi - M_PI) / se;
    sum += z;
    sum2 += z * z;
  }
  *mean = sum / seeds;
  *sd = sqrt((sum2 - seeds * *mean * *mean) / (seeds - 1));
}

/* Over 200 seeds z is standard normal: its mean has standard deviation
 * 1/sqrt(200) = 0.071 and its sample spread 0.05, so the bounds below are
 * more than 5 standard deviations wide.  A generator whose blocks repeat the
 * same stream (the test hook) gives a spread near 2 and fails them. */
TEST(statistics) {
  const int seeds = 200;
  const uint64_t n = 4 * MH_PI_BLOCK_POINTS + 777777;
  double mean, sd;
  z_stats(seeds, n, &mean, &sd);
  printf("good generator: mean z %.3f, sd %.3f\n", mean, sd);
  ASSERT(fabs(mean) < 0.40);
  ASSERT(sd > 0.75 && sd < 1.30);

  mh__pi_test_broken_streams = 1;
  z_stats(seeds, n, &mean, &sd);
  mh__pi_test_broken_streams = 0;
  printf("blocks repeating: mean z %.3f, sd %.3f\n", mean, sd);
  ASSERT(!(fabs(mean) < 0.40 && sd > 0.75 && sd < 1.30));
  ASSERT(sd > 1.5);
}

TEST(estimate) {
  double pi, se;
  mh_pi_estimate(785, 1000, &pi, &se);
  ASSERT_DEQ(pi, 3.14, 1e-12);
  ASSERT_DEQ(se, 4 * sqrt(0.785 * 0.215 / 1000), 1e-12);
  mh_pi_estimate(0, 0, &pi, &se);
  ASSERT_DEQ(pi, 0, 0);
  mh_pi_estimate(1, 1, NULL, NULL);
  mh_pi_options_t o;
  memset(&o, 0xff, sizeof o);
  mh_pi_options_init(&o);
  ASSERT_UEQ(o.seed, MH_PI_DEFAULT_SEED);
  ASSERT_EQ(o.kernel, MH_PI_KERNEL_AUTO);
  ASSERT_UEQ(o.n, 0);
  ASSERT(o.progress == NULL && o.cancel == NULL);
  mh_pi_options_init(NULL);
}

/* ---- the plan and mh_pi_run --------------------------------------------- */

/* The count of a run computed block by block on this thread. */
static uint64_t serial_count(uint64_t seed, uint64_t n, mh_pi_kernel_t k) {
  uint64_t inside = 0, block = 0;
  while (n) {
    uint64_t m = n < MH_PI_BLOCK_POINTS ? n : MH_PI_BLOCK_POINTS;
    inside += count(seed, block++, m, k);
    n -= m;
  }
  return inside;
}

static mh_executor_t *new_executor(mh_backend_t backend, int workers) {
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = backend;
  eo.workers = workers;
  mh_executor_t *ex = NULL;
  int rc = mh_executor_new(&ex, &eo);
  if (rc == MH_ENOTSUP) return NULL;
  ASSERT_OK(rc);
  return ex;
}

static mh_pi_result_t run(mh_executor_t *ex, uint64_t n, uint64_t seed,
                          mh_pi_kernel_t k) {
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = n;
  o.seed = seed;
  o.kernel = k;
  mh_pi_result_t r;
  ASSERT_OK(mh_pi_run(ex, &o, &r));
  ASSERT_UEQ(r.n, n);
  ASSERT_UEQ(r.done, n);
  ASSERT(r.kernel != MH_PI_KERNEL_AUTO);
  ASSERT(r.seconds >= 0);
  double pi, se;
  mh_pi_estimate(r.inside, n, &pi, &se);
  ASSERT_DEQ(r.pi, pi, 0);
  ASSERT_DEQ(r.stderr_pi, se, 0);
  ASSERT_DEQ(r.abs_error, fabs(pi - M_PI), 1e-15);
  return r;
}

TEST(plan) {
  mh__pi_plan_t p;
  const uint64_t max = (UINT64_C(1) << 63) - 1;
  static const int ws[] = {1, 2, 3, 8, 4096};
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(mh__pi_plan(max, ws[i], &p));
    ASSERT_UEQ(p.nblocks, UINT64_C(1) << 41);
    ASSERT_UEQ(p.last_points, MH_PI_BLOCK_POINTS - 1);
    ASSERT_UEQ((p.nblocks - 1) * MH_PI_BLOCK_POINTS + p.last_points, max);
    ASSERT(p.blocks_per_task >= 1 && p.blocks_per_task <= MH__PI_MAX_TASK_BLOCKS);
    ASSERT(p.ntasks * p.blocks_per_task >= p.nblocks);
    ASSERT((p.ntasks - 1) * p.blocks_per_task < p.nblocks);
    ASSERT_ULE(p.window, (uint64_t)ws[i] * 2 + 2);
  }
  ASSERT_OK(mh__pi_plan(1, 4, &p));
  ASSERT_UEQ(p.nblocks, 1);
  ASSERT_UEQ(p.last_points, 1);
  ASSERT_UEQ(p.window, 1);
  ASSERT_OK(mh__pi_plan(MH_PI_BLOCK_POINTS, 1, &p));
  ASSERT_UEQ(p.nblocks, 1);
  ASSERT_UEQ(p.last_points, MH_PI_BLOCK_POINTS);
  ASSERT_OK(mh__pi_plan(MH_PI_BLOCK_POINTS + 1, 1, &p));
  ASSERT_UEQ(p.nblocks, 2);
  ASSERT_UEQ(p.last_points, 1);
  /* The blocks never depend on the workers. */
  for (int w = 1; w <= 64; w++) {
    mh__pi_plan_t q;
    ASSERT_OK(mh__pi_plan(1000 * MH_PI_BLOCK_POINTS + 5, w, &q));
    ASSERT_UEQ(q.nblocks, 1001);
    ASSERT_UEQ(q.last_points, 5);
  }
  ASSERT_ERR(mh__pi_plan(0, 1, &p), MH_EINVAL);
  ASSERT_ERR(mh__pi_plan(max + 1, 1, &p), MH_EINVAL);
  ASSERT_ERR(mh__pi_plan(UINT64_MAX, 1, &p), MH_EINVAL);
  ASSERT_ERR(mh__pi_plan(10, 0, &p), MH_EINVAL);
  ASSERT_ERR(mh__pi_plan(10, 1, NULL), MH_EINVAL);
}

TEST(run_errors) {
  mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, 2);
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  mh_pi_result_t r;
  o.n = 1000;
  ASSERT_ERR(mh_pi_run(NULL, &o, &r), MH_EINVAL);
  ASSERT_ERR(mh_pi_run(ex, NULL, &r), MH_EINVAL);
  ASSERT_ERR(mh_pi_run(ex, &o, NULL), MH_EINVAL);
  o.n = 0;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_EINVAL);
  o.n = UINT64_C(1) << 63;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_EINVAL);
  o.n = UINT64_MAX;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_EINVAL);
  o.n = 1000;
  o.flags = 1;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_EINVAL);
  o.flags = 0;
  o.kernel = (mh_pi_kernel_t)17;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_EINVAL);
  o.kernel = MH_PI_KERNEL_AVX512;
  mh__pi_test_disabled_kernels = 1u << MH_PI_KERNEL_AVX512;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_ENOTSUP);
  mh__pi_test_disabled_kernels = 0;
  /* A shut-down executor refuses the tasks: the run reports it. */
  o.kernel = MH_PI_KERNEL_AUTO;
  o.n = 3 * MH_PI_BLOCK_POINTS;
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_WAIT));
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_ESHUTDOWN);
  ASSERT_UEQ(r.done, 0);
  mh_executor_free(ex);
}

/* Small and odd sizes: N = 1, N not a multiple of anything, one block, one
 * block and one point. */
TEST(run_sizes) {
  mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, 3);
  static const uint64_t ns[] = {1, 2, 31, 33, 1000, 65536, 65537, 999983,
                                MH_PI_BLOCK_POINTS, MH_PI_BLOCK_POINTS + 1,
                                3 * MH_PI_BLOCK_POINTS + 4099};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    mh_pi_result_t r = run(ex, ns[i], 99, MH_PI_KERNEL_AUTO);
    ASSERT_UEQ(r.inside, serial_count(99, ns[i], MH_PI_KERNEL_SCALAR));
    ASSERT_EQ(r.workers, 3);
    ASSERT_EQ(r.backend, MH_BACKEND_THREADS);
  }
  /* N = 1000: well under a millisecond of job time (printed, not asserted:
   * the machine is shared). */
  double best = 1e9;
  for (int i = 0; i < 20; i++) {
    mh_pi_result_t r = run(ex, 1000, (uint64_t)i, MH_PI_KERNEL_AUTO);
    if (r.seconds < best) best = r.seconds;
  }
  printf("N=1000: best job time %.1f us\n", best * 1e6);
  mh_executor_free(ex);
}

/* The count does not depend on the worker count, nor on the kernel. */
TEST(run_workers_agree) {
  const uint64_t n = 20 * MH_PI_BLOCK_POINTS + 12345;
  const uint64_t want = serial_count(7, n, MH_PI_KERNEL_AUTO);
  for (int w = 1; w <= 8; w++) {
    mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, w);
    ASSERT_UEQ(run(ex, n, 7, MH_PI_KERNEL_AUTO).inside, want);
    if (w <= 3) {
      for (int k = 0; k < NKERNELS; k++) {
        if (!mh_pi_kernel_supported(all_kernels[k])) continue;
        uint64_t m = 2 * MH_PI_BLOCK_POINTS + 777;
        ASSERT_UEQ(run(ex, m, 8, all_kernels[k]).inside,
                   serial_count(8, m, MH_PI_KERNEL_SCALAR));
      }
    }
    mh_executor_free(ex);
  }
}

TEST(run_processes) {
  mh_executor_t *ex = new_executor(MH_BACKEND_PROCESSES, 2);
  if (!ex) {
    printf("process backend not built here (MH_ENOTSUP): skipped\n");
    return;
  }
  const uint64_t n = 9 * MH_PI_BLOCK_POINTS + 3;
  const uint64_t want = serial_count(11, n, MH_PI_KERNEL_AUTO);
  mh_executor_free(ex);
  for (int w = 1; w <= 8; w++) {
    ex = new_executor(MH_BACKEND_PROCESSES, w);
    ASSERT(ex != NULL);
    mh_pi_result_t r = run(ex, n, 11, MH_PI_KERNEL_AUTO);
    ASSERT_UEQ(r.inside, want);
    ASSERT_EQ(r.backend, MH_BACKEND_PROCESSES);
    mh_executor_free(ex);
  }
}

/* A process worker killed in the middle of a run: its task is re-run on a
 * replacement worker and the count is unchanged, with the executor's own
 * retries (retries = 1) or without them (retries = 0: mh_pi_run re-runs it). */
static void run_worker_killed(int retries) {
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = MH_BACKEND_PROCESSES;
  eo.workers = 2;
  eo.retries = retries;
  /* The flag lives in shared memory made before the workers are forked. */
  int *armed = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(armed != MAP_FAILED);
  *armed = 1;
  mh__pi_test_kill_armed = armed;
  mh__pi_test_kill_block = 5;
  mh_executor_t *ex = NULL;
  int rc = mh_executor_new(&ex, &eo);
  if (rc == MH_ENOTSUP) {
    printf("process backend not built here (MH_ENOTSUP): skipped\n");
    mh__pi_test_kill_armed = NULL;
    munmap(armed, 4096);
    return;
  }
  ASSERT_OK(rc);
  const uint64_t n = 12 * MH_PI_BLOCK_POINTS + 321;
  mh_pi_result_t r = run(ex, n, 3, MH_PI_KERNEL_AUTO);
  ASSERT_EQ(*armed, 0); /* the worker did die */
  mh__pi_test_kill_armed = NULL;
  ASSERT_UEQ(r.inside, serial_count(3, n, MH_PI_KERNEL_AUTO));
  /* The pool re-ran the task itself, or the pi job did. */
  ASSERT_UEQ(r.reruns, retries ? 0 : 1);
  mh_executor_free(ex);
  munmap(armed, 4096);
}

TEST(run_worker_killed) { run_worker_killed(1); }
TEST(run_worker_killed_without_retries) { run_worker_killed(0); }

/* The fork server SIGKILLed at random moments during a run, again and
 * again: its workers die with it, the pool forks a new server and new
 * workers, the tasks that were running are re-run, and the count is the
 * undisturbed one.  (The pool used to give up after the first such kill,
 * and the run failed with MH_EWORKERDIED.) */
typedef struct {
  mh_executor_t *ex;
  _Atomic int stop;
  int kills, max_kills;
} server_killer_t;

static void *server_killer(void *arg) {
  server_killer_t *k = arg;
  int last = 0;
  while (!atomic_load(&k->stop) && k->kills < k->max_kills) {
    /* The first kill soon (a short run may be over in milliseconds), the
     * later ones spread over the run. */
    mht_jitter(k->kills ? 20000 : 2000);
    int pid = mh__pp_server_pid(mh__executor_impl(k->ex));
    /* Each server once: a killed one stays visible until it is reaped. */
    if (pid > 0 && pid != last && !atomic_load(&k->stop) &&
        kill(pid, SIGKILL) == 0) {
      last = pid;
      k->kills++;
    }
  }
  return NULL;
}

TEST(run_server_killed) {
  mh_executor_t *ex = new_executor(MH_BACKEND_PROCESSES, 2);
  if (!ex) {
    printf("process backend not built here (MH_ENOTSUP): skipped\n");
    return;
  }
  /* Fewer blocks under the sanitizers (their kernels are slow). */
  long blocks = mht_scaled(40) < 12 ? 12 : mht_scaled(40);
  const uint64_t n = (uint64_t)blocks * MH_PI_BLOCK_POINTS + 77;
  const uint64_t want = serial_count(9, n, MH_PI_KERNEL_AUTO);
  int total = 0;
  uint64_t reruns = 0;
  /* Runs until 8 kills or 40 runs: a fast build (a quiet machine, few
   * blocks) can finish a run before the killer's first random nap ends, so
   * the number of runs is not fixed; at least one kill must land. */
  for (int round = 0; round < 40 && total < 8; round++) {
    server_killer_t k = {.ex = ex, .max_kills = 3};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, server_killer, &k), 0);
    mh_pi_result_t r = run(ex, n, 9, MH_PI_KERNEL_AUTO);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    ASSERT_UEQ(r.inside, want);
    total += k.kills;
    reruns += r.reruns;
  }
  printf("%d fork-server kills survived, %llu tasks re-run\n", total,
         (unsigned long long)reruns);
  ASSERT(total > 0);
  /* The pool lives on: a run after the last kill is whole too. */
  mh_pi_result_t r = run(ex, n, 9, MH_PI_KERNEL_AUTO);
  ASSERT_UEQ(r.inside, want);
  mh_executor_free(ex);
}

typedef struct {
  pthread_t caller;
  int calls;
  uint64_t last_done, total;
  int bad;
  volatile int *cancel;
  uint64_t cancel_at;
} progress_t;

static void on_progress(uint64_t done, uint64_t total, void *arg) {
  progress_t *p = arg;
  if (!pthread_equal(p->caller, pthread_self())) p->bad = 1;
  if (done < p->last_done || done > total) p->bad = 1;
  p->calls++;
  p->last_done = done;
  p->total = total;
  if (p->cancel && done >= p->cancel_at) *p->cancel = 1;
}

TEST(run_progress) {
  mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, 2);
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  /* The scalar kernel: slow enough to last a few ticks. */
  o.kernel = MH_PI_KERNEL_SCALAR;
  o.n = 40 * MH_PI_BLOCK_POINTS + 1;
  progress_t p = {.caller = pthread_self()};
  o.progress = on_progress;
  o.progress_arg = &p;
  mh_pi_result_t r;
  ASSERT_OK(mh_pi_run(ex, &o, &r));
  printf("%d progress calls in %.3f s\n", p.calls, r.seconds);
  ASSERT_EQ(p.bad, 0);
  ASSERT_GE(p.calls, 2);
  ASSERT_UEQ(p.last_done, o.n);
  ASSERT_UEQ(p.total, o.n);
  ASSERT_UEQ(r.inside, serial_count(o.seed, o.n, MH_PI_KERNEL_AUTO));
  mh_executor_free(ex);
}

/* Called from a task of the same executor, the job's root goes as a task
 * whose future the calling worker waits for, helping: progress still comes
 * on the calling thread, the count is the serial one, and 1 worker does
 * not deadlock. */
typedef struct {
  mh_executor_t *ex;
  progress_t p;
  mh_pi_result_t r;
  int rc;
} pi_in_task_t;

static int pi_in_task(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)in, (void)isz, (void)out, (void)osz;
  pi_in_task_t *t = ctx;
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.kernel = MH_PI_KERNEL_SCALAR;
  o.n = 24 * MH_PI_BLOCK_POINTS + 3;
  t->p.caller = pthread_self();
  o.progress = on_progress;
  o.progress_arg = &t->p;
  t->rc = mh_pi_run(t->ex, &o, &t->r);
  return 0;
}

TEST(run_from_a_worker) {
  for (int w = 1; w <= 2; w++) {
    mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, w);
    pi_in_task_t t = {.ex = ex};
    mh_future_t *f;
    ASSERT_OK(mh_executor_submit(ex, pi_in_task, NULL, 0, NULL, 0, &t, &f));
    ASSERT_OK(mh_future_result(f, 120));
    mh_future_release(f);
    ASSERT_OK(t.rc);
    uint64_t n = 24 * MH_PI_BLOCK_POINTS + 3;
    ASSERT_EQ(t.p.bad, 0);
    ASSERT_GE(t.p.calls, 1);
    ASSERT_UEQ(t.p.last_done, n);
    ASSERT_UEQ(t.r.inside, serial_count(MH_PI_DEFAULT_SEED, n, MH_PI_KERNEL_AUTO));
    mh_executor_free(ex);
  }
}

TEST(run_cancel) {
  mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, 2);
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.kernel = MH_PI_KERNEL_SCALAR;
  o.n = 400 * MH_PI_BLOCK_POINTS; /* ~2 s of scalar work: never finished */
  volatile int cancel = 0;
  o.cancel = &cancel;
  progress_t p = {.caller = pthread_self(), .cancel = &cancel,
                  .cancel_at = 2 * MH_PI_BLOCK_POINTS};
  o.progress = on_progress;
  o.progress_arg = &p;
  mh_pi_result_t r;
  double t0 = mht_now();
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_ECANCELED);
  double dt = mht_now() - t0;
  printf("cancelled after %.3f s with %" PRIu64 " points\n", dt, r.done);
  ASSERT_EQ(p.bad, 0);
  ASSERT(r.done >= 2 * MH_PI_BLOCK_POINTS && r.done < o.n);
  ASSERT_UEQ(r.done % MH_PI_BLOCK_POINTS, 0); /* whole blocks only */
  ASSERT(r.inside <= r.done);
  ASSERT(fabs(r.pi - M_PI) < 0.01);
  ASSERT_UEQ(r.n, o.n);

  /* Cancelled before it starts: nothing is counted. */
  cancel = 1;
  o.progress = NULL;
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_ECANCELED);
  ASSERT_UEQ(r.done, 0);
  ASSERT_UEQ(r.inside, 0);

  /* The executor still works afterwards, and a flag that stays 0 changes
   * nothing. */
  cancel = 0;
  o.n = 5 * MH_PI_BLOCK_POINTS + 5;
  o.kernel = MH_PI_KERNEL_AUTO;
  ASSERT_OK(mh_pi_run(ex, &o, &r));
  ASSERT_UEQ(r.inside, serial_count(o.seed, o.n, MH_PI_KERNEL_AUTO));
  mh_executor_free(ex);
}

static volatile int async_cancel;

static void *cancel_later(void *arg) {
  mht_sleep(*(double *)arg);
  __atomic_store_n(&async_cancel, 1, __ATOMIC_RELAXED);
  return NULL;
}

/* A flag set by another thread (as a signal handler would) stops the run
 * promptly: what runs is at most one task per worker. */
TEST(run_cancel_async) {
  mh_executor_t *ex = new_executor(MH_BACKEND_THREADS, 2);
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = (UINT64_C(1) << 63) - 1; /* years of work: only cancel ends it */
  o.cancel = &async_cancel;
  double delay = 0.05;
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, cancel_later, &delay), 0);
  mh_pi_result_t r;
  double t0 = mht_now();
  ASSERT_ERR(mh_pi_run(ex, &o, &r), MH_ECANCELED);
  double dt = mht_now() - t0;
  pthread_join(th, NULL);
  printf("stopped %.1f ms after the flag\n", (dt - delay) * 1e3);
  ASSERT(dt < 5.0); /* generous: sanitizers and a shared machine */
  ASSERT(r.done > 0);
  ASSERT(fabs(r.pi - M_PI) < 0.01);
  mh_executor_free(ex);
}

/* Every allocation can fail and nothing leaks.  On threads, a run called
 * from outside the executor allocates nothing (its root goes to a worker
 * without a future): once the executor exists, the run succeeds.  The
 * allocator is only swapped while no executor thread lives
 * (mh_replace_allocator must not race with library calls), so the budget
 * also covers the executor's own allocations; those k where the executor
 * cannot be created are skipped. */
TEST(run_alloc_failure) {
  mht_alloc_fail_after(-1);
  long base = mht_alloc_live();
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = 30 * MH_PI_BLOCK_POINTS + 9;
  uint64_t want = serial_count(o.seed, o.n, MH_PI_KERNEL_AUTO);
  int failures = 0, successes = 0;
  for (long k = 0; k < 80 && successes < 3; k++) {
    mht_alloc_fail_after(k);
    mh_executor_options_t eo;
    mh_executor_options_init(&eo);
    eo.workers = 2;
    mh_executor_t *ex = NULL;
    int rc = mh_executor_new(&ex, &eo);
    if (rc == 0) {
      mh_pi_result_t r;
      rc = mh_pi_run(ex, &o, &r);
      if (rc == 0) {
        ASSERT_UEQ(r.inside, want);
        successes++;
      } else {
        ASSERT_ERR(rc, MH_ENOMEM);
        ASSERT(r.done < o.n);
        failures++;
      }
      mh_executor_free(ex); /* joins the workers: nothing runs any more */
    } else {
      ASSERT_ERR(rc, MH_ENOMEM);
    }
    ASSERT_EQ(mht_alloc_live(), base);
  }
  ASSERT_EQ(failures, 0);
  ASSERT_GT(successes, 0);
  mht_alloc_reset();
}
