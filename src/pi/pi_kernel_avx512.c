/* SPDX-License-Identifier: MIT */
/* pi_kernel_avx512.c - the AVX-512 kernel of the pi job.
 *
 * Compiled with -mavx512f/bw (CMake adds the flags for *_avx512.c) and called
 * only after pi.c has checked the CPU.  The 16 lanes live in two groups of
 * eight 64-bit elements (zmm registers), four state words each.  One step
 * gives two output vectors; as 32-bit elements, element j of the first is
 * canonical point j of the step and element j of the second point 16 + j,
 * exactly the order of pi_stream.h.  vpmaddwd squares and adds the two
 * signed 16-bit words of every element: s = a*a + b*b for 16 points per
 * instruction.  One unsigned compare decides "clearly inside"; a second,
 * masked by the first, finds band points, which are rare, so the loop only
 * tests whether there is any and leaves them to band_points() in canonical
 * order.
 */
#include <immintrin.h>

#include "pi_stream.h"

typedef struct {
  __m512i s0, s1, s2, s3;
} lanes8_t;

/* xoshiro256++ on eight lanes at once (the same steps as
 * mh__pi_xoshiro_next); vprolq does each rotation in one instruction. */
static inline __m512i next8(lanes8_t *g) {
  __m512i out = _mm512_add_epi64(
      _mm512_rol_epi64(_mm512_add_epi64(g->s0, g->s3), 23), g->s0);
  __m512i t = _mm512_slli_epi64(g->s1, 17);
  /* 0x96 is the truth table of a ^ b ^ c: two xors in one instruction. */
  __m512i s2 = _mm512_ternarylogic_epi64(g->s2, g->s0, t, 0x96);
  __m512i s1 = _mm512_ternarylogic_epi64(g->s1, g->s2, g->s0, 0x96);
  __m512i s3 = _mm512_xor_si512(g->s3, g->s1);
  g->s0 = _mm512_xor_si512(g->s0, s3);
  g->s1 = s1;
  g->s2 = s2;
  g->s3 = _mm512_rol_epi64(s3, 45);
  return out;
}

/* The band points of one step, bit j of `band` standing for canonical point
 * j, decided exactly in canonical order.  Kept out of line: the hot loop
 * stays small, and this runs for fewer than 1 step in 100. */
static __attribute__((noinline)) uint64_t band_points(mh__pi_stream_t *st,
                                                      __m512i o0, __m512i o1,
                                                      uint32_t band) {
  _Alignas(64) uint32_t w[MH__PI_STEP_POINTS];
  _mm512_store_si512((void *)w, o0);
  _mm512_store_si512((void *)(w + 16), o1);
  uint64_t inside = 0;
  while (band) {
    int j = __builtin_ctz(band);
    band &= band - 1;
    inside += (uint64_t)mh__pi_refine(w[j], mh__pi_aux_next(st));
  }
  return inside;
}

/* The running state of a kernel call. */
typedef struct {
  lanes8_t g0, g1;
  uint64_t inside; /* clearly inside points */
  uint64_t band_inside;
} kstate_t;

/* One step; `take` has bit j set when canonical point j counts (all ones but
 * in the last step of a partial block, where the constant folds away). */
static inline __attribute__((always_inline)) void step(mh__pi_stream_t *st,
                                                       kstate_t *k,
                                                       uint32_t take) {
  const __m512i in_max = _mm512_set1_epi32((int)MH__PI_IN_MAX);
  const __m512i out_min = _mm512_set1_epi32((int)MH__PI_OUT_MIN);
  __m512i o0 = next8(&k->g0), o1 = next8(&k->g1);
  __m512i q0 = _mm512_madd_epi16(o0, o0);
  __m512i q1 = _mm512_madd_epi16(o1, o1);
  __mmask16 in0 = _mm512_mask_cmple_epu32_mask((__mmask16)take, q0, in_max);
  __mmask16 in1 =
      _mm512_mask_cmple_epu32_mask((__mmask16)(take >> 16), q1, in_max);
  /* Counting with popcnt on the integer side leaves the vector units to
   * the generator (measured faster than masked vector adds). */
  k->inside += (uint64_t)__builtin_popcount(
      (uint32_t)_mm512_kunpackw(in1, in0));
  /* Band: counted, not clearly inside, and not clearly outside. */
  __mmask16 bd0 = _mm512_mask_cmplt_epu32_mask(
      (__mmask16)(take & ~(uint32_t)in0), q0, out_min);
  __mmask16 bd1 = _mm512_mask_cmplt_epu32_mask(
      (__mmask16)((take >> 16) & ~(uint32_t)in1), q1, out_min);
  uint32_t band = (uint32_t)bd0 | ((uint32_t)bd1 << 16);
  if (__builtin_expect(band != 0, 0))
    k->band_inside += band_points(st, o0, o1, band);
}

uint64_t mh__pi_kernel_avx512(mh__pi_stream_t *st, uint64_t npoints) {
  kstate_t k;
  k.g0.s0 = _mm512_load_si512((const void *)&st->s[0][0]);
  k.g0.s1 = _mm512_load_si512((const void *)&st->s[1][0]);
  k.g0.s2 = _mm512_load_si512((const void *)&st->s[2][0]);
  k.g0.s3 = _mm512_load_si512((const void *)&st->s[3][0]);
  k.g1.s0 = _mm512_load_si512((const void *)&st->s[0][8]);
  k.g1.s1 = _mm512_load_si512((const void *)&st->s[1][8]);
  k.g1.s2 = _mm512_load_si512((const void *)&st->s[2][8]);
  k.g1.s3 = _mm512_load_si512((const void *)&st->s[3][8]);
  k.inside = 0;
  k.band_inside = 0;
  uint64_t steps = npoints / MH__PI_STEP_POINTS;
  uint32_t rem = (uint32_t)(npoints % MH__PI_STEP_POINTS);
  for (uint64_t t = 0; t < steps; t++) step(st, &k, 0xffffffffu);
  if (rem) step(st, &k, (UINT32_C(1) << rem) - 1);
  return k.inside + k.band_inside;
}
