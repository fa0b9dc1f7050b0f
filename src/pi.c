/* pi.c - the Monte Carlo pi job: streams, kernel dispatch, the plan of
 * blocks, and mh_pi_run on any executor.
 *
 * Invariants:
 *  - The count of a block is a pure function of (seed, block, npoints)
 *    (pi_internal.h defines the stream); which kernel computes it, on which
 *    worker, in which order, changes nothing.
 *  - A run of n points is blocks 0 .. ceil(n / MH_PI_BLOCK_POINTS) - 1, all
 *    full but the last; the split does not depend on the worker count.
 *  - mh_pi_run keeps at most a fixed window of blocks in flight; its memory
 *    does not depend on n.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "pi_internal.h"

int mh__pi_test_broken_streams = 0;
unsigned mh__pi_test_disabled_kernels = 0;

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
  if (mh__pi_test_broken_streams) block = 0;
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
    if (mh__pi_test_disabled_kernels & (1u << MH_PI_KERNEL_AVX2)) return 0;
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's and compiler-rt's checks include the OS's XSAVE support. */
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
  case MH_PI_KERNEL_AVX512:
    if (mh__pi_test_disabled_kernels & (1u << MH_PI_KERNEL_AVX512)) return 0;
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

/* Count a block with a resolved kernel. */
static uint64_t count_block(uint64_t seed, uint64_t block, uint64_t npoints,
                            mh_pi_kernel_t kernel) {
  mh__pi_stream_t st;
  mh__pi_stream_init(&st, seed, block);
  switch (kernel) {
  case MH_PI_KERNEL_AVX512:
    return mh__pi_kernel_avx512(&st, npoints);
  case MH_PI_KERNEL_AVX2:
    return mh__pi_kernel_avx2(&st, npoints);
  default:
    return mh__pi_kernel_scalar(&st, npoints);
  }
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
