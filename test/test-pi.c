/* test-pi.c - the Monte Carlo pi job: kernels agree, counts are pinned and
 * exact, the statistics are sound, and runs do not depend on the workers. */
#include <math.h>

#include "test.h"
#include "../src/pi_internal.h"

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
