/* SPDX-License-Identifier: MIT */
/* pi_omp.c - OpenMP peers of the pi job: what a C programmer would write.
 *
 *   pi_omp scalar N THREADS REPS   one xoshiro256+ per thread, two doubles per
 *                                  point, x*x + y*y <= 1
 *   pi_omp lanes  N THREADS REPS   16 xoshiro256+ streams per thread stepped
 *                                  together (the compiler vectorises the lane
 *                                  loop with -O3 -march=native); one point per
 *                                  output, its two 32-bit halves as floats
 *
 * Prints one line per repetition: "seconds cpu pi" (cpu: CPU seconds of all
 * threads during the run).  Built with -O3
 * -march=native and OpenMP (bench/CMakeLists.txt, *_omp.c).
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "bench.h"

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256+ (the fast variant for floating point). */
static inline uint64_t next(uint64_t s[4]) {
  uint64_t r = s[0] + s[3], t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}

static uint64_t run_scalar(uint64_t n, uint64_t seed) {
  uint64_t inside = 0;
#pragma omp parallel reduction(+ : inside)
  {
    uint64_t sm = seed + (uint64_t)omp_get_thread_num() * 1000003u, s[4];
    for (int i = 0; i < 4; i++) s[i] = splitmix(&sm);
#pragma omp for schedule(static)
    for (uint64_t i = 0; i < n; i++) {
      double x = (double)(next(s) >> 11) * 0x1.0p-53;
      double y = (double)(next(s) >> 11) * 0x1.0p-53;
      inside += x * x + y * y <= 1.0;
    }
  }
  return inside;
}

#define LANES 16

static uint64_t run_lanes(uint64_t n, uint64_t seed) {
  uint64_t inside = 0;
  int nt = omp_get_max_threads();
#pragma omp parallel reduction(+ : inside)
  {
    int id = omp_get_thread_num();
    uint64_t per = n / (uint64_t)nt, lo = per * (uint64_t)id;
    uint64_t hi = id == nt - 1 ? n : lo + per;
    uint64_t s0[LANES], s1[LANES], s2[LANES], s3[LANES];
    uint64_t sm = seed + (uint64_t)id * 1000003u;
    for (int l = 0; l < LANES; l++) {
      s0[l] = splitmix(&sm);
      s1[l] = splitmix(&sm);
      s2[l] = splitmix(&sm);
      s3[l] = splitmix(&sm);
    }
    uint32_t cnt[LANES] = {0};
    uint64_t steps = (hi - lo) / LANES, local = 0;
    for (uint64_t i = 0; i < steps; i++) {
      for (int l = 0; l < LANES; l++) {
        uint64_t r = s0[l] + s3[l], t = s1[l] << 17;
        s2[l] ^= s0[l];
        s3[l] ^= s1[l];
        s1[l] ^= s2[l];
        s0[l] ^= s3[l];
        s2[l] ^= t;
        s3[l] = (s3[l] << 45) | (s3[l] >> 19);
        float x = (float)(uint32_t)r * 0x1.0p-32f;
        float y = (float)(uint32_t)(r >> 32) * 0x1.0p-32f;
        cnt[l] += x * x + y * y <= 1.0f;
      }
      if ((i & 0xfffff) == 0xfffff) { /* keep the 32-bit counters small */
        for (int l = 0; l < LANES; l++) local += cnt[l], cnt[l] = 0;
      }
    }
    for (int l = 0; l < LANES; l++) local += cnt[l];
    inside += local; /* the remainder (< 16 points per thread) is dropped */
  }
  return inside;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: pi_omp scalar|lanes N THREADS [REPS]\n");
    return 2;
  }
  uint64_t n = strtoull(argv[2], NULL, 10);
  int threads = atoi(argv[3]), reps = argc > 4 ? atoi(argv[4]) : 1;
  int lanes = strcmp(argv[1], "lanes") == 0;
  omp_set_num_threads(threads);
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now(), c0 = bench_cpu_seconds();
    uint64_t in = lanes ? run_lanes(n, (uint64_t)r + 1) : run_scalar(n, (uint64_t)r + 1);
    double dt = bench_now() - t0, cpu = bench_cpu_seconds() - c0;
    printf("%.6f %.6f %.6f\n", dt, cpu, 4.0 * (double)in / (double)(lanes ? n - n % ((uint64_t)LANES * (uint64_t)threads) : n));
  }
  return 0;
}
