/* pi_fallback.c - a stand-in for the pi module (src/pi.c) while that module
 * is not in this tree, so the MPI layer can be built and tested alone.
 * CMake compiles it only when src/pi.c does not exist.  Same contract as
 * manyhands/pi.h: a block's points depend on (seed, block) only; scalar.
 */
#include <math.h>

#include "mpi_internal.h"

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

int mh_pi_count_block(uint64_t seed, uint64_t block, uint64_t npoints,
                      mh_pi_kernel_t kernel, uint64_t *inside) {
  if (!inside || npoints == 0 || npoints > MH_PI_BLOCK_POINTS) return MH_EINVAL;
  if (kernel != MH_PI_KERNEL_AUTO && kernel != MH_PI_KERNEL_SCALAR)
    return MH_ENOTSUP;
  uint64_t s = seed ^ (block * UINT64_C(0xD1B54A32D192ED03));
  splitmix64(&s);
  uint64_t in = 0;
  for (uint64_t i = 0; i < npoints; i++) {
    uint64_t r = splitmix64(&s);
    uint64_t x = r >> 32, y = r & 0xffffffffu;
    in += x * x <= UINT64_MAX - y * y; /* x^2 + y^2 < 2^64, exactly */
  }
  *inside = in;
  return 0;
}

uint64_t mh_pi_repeat_seed(uint64_t seed, uint64_t rep) {
  if (rep == 0) return seed;
  uint64_t s = seed + rep;
  return splitmix64(&s);
}

void mh_pi_estimate(uint64_t inside, uint64_t n, double *pi,
                    double *stderr_pi) {
  double p = n ? (double)inside / (double)n : 0;
  if (pi) *pi = 4 * p;
  if (stderr_pi) *stderr_pi = n ? 4 * sqrt(p * (1 - p) / (double)n) : 0;
}

mh_pi_kernel_t mh_pi_kernel_best(void) { return MH_PI_KERNEL_SCALAR; }

const char *mh_pi_kernel_name(mh_pi_kernel_t kernel) {
  switch (kernel) {
  case MH_PI_KERNEL_AUTO: return "auto";
  case MH_PI_KERNEL_SCALAR: return "scalar";
  case MH_PI_KERNEL_AVX2: return "avx2";
  case MH_PI_KERNEL_AVX512: return "avx512";
  }
  return NULL;
}

void mh_pi_options_init(mh_pi_options_t *opts) {
  if (!opts) return;
  *opts = (mh_pi_options_t){0};
  opts->seed = MH_PI_DEFAULT_SEED;
}
