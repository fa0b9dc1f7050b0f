/* SPDX-License-Identifier: MIT */
/* pi_kernel_avx2.c - the AVX2 kernel of the pi job.
 *
 * Compiled with -mavx2 (CMake adds the flag for *_avx2.c) and called only
 * after pi.c has checked the CPU.  The 16 lanes live in four groups of four
 * 64-bit elements (ymm registers); as 32-bit elements, element j of group g's
 * output is canonical point 8g + j of the step (pi_stream.h).  vpmaddwd
 * gives s = a*a + b*b for eight points per instruction.  AVX2 has no
 * unsigned compare, so s is biased by 2^31 (a xor) and compared signed; no
 * rotate either, so rotations are two shifts and an or.  Band points are
 * found with a vptest per step and decided in canonical order out of line.
 */
#include <immintrin.h>

#include "pi_stream.h"

#define GROUPS 4

typedef struct {
  __m256i s0[GROUPS], s1[GROUPS], s2[GROUPS], s3[GROUPS];
  __m256i acc[GROUPS]; /* minus the per-element counts of clearly inside */
  uint64_t band_inside;
} kstate_t;

static inline __m256i rotl4(__m256i x, int k) {
  return _mm256_or_si256(_mm256_slli_epi64(x, k), _mm256_srli_epi64(x, 64 - k));
}

/* The band points of one step (bit p of `band` is canonical point p),
 * decided exactly in canonical order; rare, so out of line. */
static __attribute__((noinline)) uint64_t band_points(mh__pi_stream_t *st,
                                                      const __m256i *o,
                                                      uint32_t band) {
  _Alignas(32) uint32_t w[MH__PI_STEP_POINTS];
  for (int g = 0; g < GROUPS; g++)
    _mm256_store_si256((__m256i *)(void *)(w + 8 * g), o[g]);
  uint64_t inside = 0;
  while (band) {
    int j = __builtin_ctz(band);
    band &= band - 1;
    inside += (uint64_t)mh__pi_refine(w[j], mh__pi_aux_next(st));
  }
  return inside;
}

/* One step.  `rem` is 0 for a whole step, else the number of points that
 * count (the last step of a partial block). */
static inline __attribute__((always_inline)) void step(mh__pi_stream_t *st,
                                                       kstate_t *k,
                                                       uint32_t rem) {
  const __m256i bias = _mm256_set1_epi32((int)0x80000000u);
  const __m256i in_lim = _mm256_set1_epi32((int)((MH__PI_IN_MAX + 1) ^ 0x80000000u));
  const __m256i out_lim = _mm256_set1_epi32((int)(MH__PI_OUT_MIN ^ 0x80000000u));
  __m256i o[GROUPS], anyband = _mm256_setzero_si256();
  __m256i bandv[GROUPS];
  for (int g = 0; g < GROUPS; g++) {
    __m256i s0 = k->s0[g], s1 = k->s1[g], s2 = k->s2[g], s3 = k->s3[g];
    o[g] = _mm256_add_epi64(rotl4(_mm256_add_epi64(s0, s3), 23), s0);
    __m256i t = _mm256_slli_epi64(s1, 17);
    s2 = _mm256_xor_si256(s2, s0);
    s3 = _mm256_xor_si256(s3, s1);
    s1 = _mm256_xor_si256(s1, s2);
    s0 = _mm256_xor_si256(s0, s3);
    s2 = _mm256_xor_si256(s2, t);
    s3 = rotl4(s3, 45);
    k->s0[g] = s0;
    k->s1[g] = s1;
    k->s2[g] = s2;
    k->s3[g] = s3;
    __m256i q = _mm256_xor_si256(_mm256_madd_epi16(o[g], o[g]), bias);
    __m256i in = _mm256_cmpgt_epi32(in_lim, q);  /* s <= IN_MAX */
    __m256i lt = _mm256_cmpgt_epi32(out_lim, q); /* s < OUT_MIN */
    if (rem) {
      const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      __m256i take = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem - 8 * g), idx);
      in = _mm256_and_si256(in, take);
      lt = _mm256_and_si256(lt, take);
    }
    k->acc[g] = _mm256_add_epi32(k->acc[g], in);
    bandv[g] = _mm256_andnot_si256(in, lt);
    anyband = _mm256_or_si256(anyband, bandv[g]);
  }
  if (__builtin_expect(!_mm256_testz_si256(anyband, anyband), 0)) {
    uint32_t band = 0;
    for (int g = 0; g < GROUPS; g++)
      band |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(bandv[g])) << (8 * g);
    k->band_inside += band_points(st, o, band);
  }
}

uint64_t mh__pi_kernel_avx2(mh__pi_stream_t *st, uint64_t npoints) {
  kstate_t k;
  for (int g = 0; g < GROUPS; g++) {
    k.s0[g] = _mm256_load_si256((const __m256i *)(const void *)&st->s[0][4 * g]);
    k.s1[g] = _mm256_load_si256((const __m256i *)(const void *)&st->s[1][4 * g]);
    k.s2[g] = _mm256_load_si256((const __m256i *)(const void *)&st->s[2][4 * g]);
    k.s3[g] = _mm256_load_si256((const __m256i *)(const void *)&st->s[3][4 * g]);
    k.acc[g] = _mm256_setzero_si256();
  }
  k.band_inside = 0;
  uint64_t steps = npoints / MH__PI_STEP_POINTS;
  uint32_t rem = (uint32_t)(npoints % MH__PI_STEP_POINTS);
  for (uint64_t t = 0; t < steps; t++) step(st, &k, 0);
  if (rem) step(st, &k, rem);
  /* Each element counted at most 2^17 points (as minus ones). */
  _Alignas(32) int32_t c[8];
  uint64_t coarse = 0;
  for (int g = 0; g < GROUPS; g++) {
    _mm256_store_si256((__m256i *)(void *)c, k.acc[g]);
    for (int j = 0; j < 8; j++) coarse += (uint64_t)(-(int64_t)c[j]);
  }
  return coarse + k.band_inside;
}
