/* SPDX-License-Identifier: MIT */
/* pi_stream.h - the canonical point stream of the pi job, shared by the
 * scalar, AVX2 and AVX-512 kernels: the generators, the thresholds, the exact
 * test of a band point and the kernels' contract.  Never installed.  Only
 * <stdint.h>: the kernels are compiled for their own instruction sets and
 * see nothing of the rest of the library.
 *
 * The stream (docs/pi.md has the reasoning):
 *  - A block has MH__PI_LANES = 16 xoshiro256++ generators ("lanes") and one
 *    auxiliary xoshiro256++ generator.  All 17 are seeded from (seed, block)
 *    only, by SplitMix64 (mh__pi_stream_init).
 *  - Step t draws one 64-bit output from every lane, in lane order.  Output o
 *    of lane l holds two points: its low 32 bits are point 2l, its high 32
 *    bits point 2l + 1 of the step, so step t covers points 32t .. 32t + 31.
 *  - A point's 32 bits are two signed 16-bit words, a (low) and b (high): the
 *    coarse coordinates, the point lies in the cell (a, a+1) x (b, b+1) in
 *    units of 2^-15.  s = a*a + b*b as an unsigned 32-bit number (it reaches
 *    2^31 only for a = b = -2^15).
 *  - s <= MH__PI_IN_MAX: inside, wherever in the cell the point is.
 *    s >= MH__PI_OUT_MIN: outside, wherever in the cell.
 *    Otherwise (the band, about 2 points in 10^4) the point takes 32 more
 *    bits per coordinate from the next output of the auxiliary generator,
 *    drawn in canonical point order, and is tested exactly (mh__pi_refine).
 *  - A block of n points uses steps 0 .. ceil(n/32)-1 and, in the last step,
 *    only the first n mod 32 points (when that is not 0).
 * So the count is a pure function of (seed, block, n); every kernel computes
 * this same function, only faster.
 */
#ifndef MH_PI_STREAM_H
#define MH_PI_STREAM_H

#include <stdint.h>

#define MH__PI_LANES 16
#define MH__PI_STEP_POINTS 32

/* Square of the radius in coarse units: (2^15)^2. */
#define MH__PI_R2 (UINT32_C(1) << 30)
/* Moving a coordinate anywhere inside its cell changes s by less than
 * 2 * 2^15 + 1 per coordinate, hence the margins (see mh__pi_refine). */
#define MH__PI_IN_MAX (MH__PI_R2 - (UINT32_C(1) << 17) - 2)
#define MH__PI_OUT_MIN (MH__PI_R2 + (UINT32_C(1) << 17))

/* The generators of one block, lane states as structure of arrays so that
 * the SIMD kernels load them directly. */
typedef struct mh__pi_stream {
  _Alignas(64) uint64_t s[4][MH__PI_LANES];
  uint64_t aux[4];
} mh__pi_stream_t;

/* SplitMix64's output function (a bijection of 64-bit words). */
static inline uint64_t mh__pi_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline uint64_t mh__pi_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* One xoshiro256++ step on a state held in four words. */
static inline uint64_t mh__pi_xoshiro_next(uint64_t *s0, uint64_t *s1,
                                           uint64_t *s2, uint64_t *s3) {
  uint64_t out = mh__pi_rotl(*s0 + *s3, 23) + *s0;
  uint64_t t = *s1 << 17;
  *s2 ^= *s0;
  *s3 ^= *s1;
  *s1 ^= *s2;
  *s0 ^= *s3;
  *s2 ^= t;
  *s3 = mh__pi_rotl(*s3, 45);
  return out;
}

static inline uint64_t mh__pi_aux_next(mh__pi_stream_t *st) {
  return mh__pi_xoshiro_next(&st->aux[0], &st->aux[1], &st->aux[2],
                             &st->aux[3]);
}

__extension__ typedef unsigned __int128 mh__pi_u128;

/* The exact test of a band point.  `w` holds the coarse words, `fine` the
 * auxiliary output: its low 32 bits refine a, its high 32 bits refine b.
 * The point is x = X / 2^48 with the odd integer X = a*2^33 + 2*fx + 1,
 * |X| < 2^48 (the centre of a fine cell, so the grid is symmetric about 0),
 * likewise y; it is inside when X^2 + Y^2 < 2^96.  Equality cannot happen:
 * a sum of two odd squares is 2 mod 8.  The sum is below 2^97 and fits in
 * 128 bits.  Returns 1 inside, 0 outside. */
static inline int mh__pi_refine(uint32_t w, uint64_t fine) {
  int64_t a = (int16_t)(uint16_t)(w & 0xffffu);
  int64_t b = (int16_t)(uint16_t)(w >> 16);
  int64_t x = a * (INT64_C(1) << 33) + (int64_t)(2 * (fine & 0xffffffffu) + 1);
  int64_t y = b * (INT64_C(1) << 33) + (int64_t)(2 * (fine >> 32) + 1);
  mh__pi_u128 r = (mh__pi_u128)((__int128)x * x) + (mh__pi_u128)((__int128)y * y);
  return r < ((mh__pi_u128)1 << 96);
}

/* Decide one point (its 32 bits) completely: coarse test, and the exact test
 * with an auxiliary draw when it falls in the band.  The scalar kernel uses
 * it for every point, the SIMD kernels for the band points only. */
static inline int mh__pi_point(mh__pi_stream_t *st, uint32_t w) {
  int32_t a = (int16_t)(uint16_t)(w & 0xffffu);
  int32_t b = (int16_t)(uint16_t)(w >> 16);
  uint32_t s = (uint32_t)(a * a) + (uint32_t)(b * b);
  /* One unsigned compare finds the band; the common case has no
   * unpredictable branch. */
  if (__builtin_expect(s - (MH__PI_IN_MAX + 1) <
                           MH__PI_OUT_MIN - (MH__PI_IN_MAX + 1), 0))
    return mh__pi_refine(w, mh__pi_aux_next(st));
  return s <= MH__PI_IN_MAX;
}

/* Seed the 17 generators of `block` (pi.c). */
void mh__pi_stream_init(mh__pi_stream_t *st, uint64_t seed, uint64_t block);

/* Count the inside points among the first `npoints` (1 .. MH_PI_BLOCK_POINTS)
 * of the stream; the state is consumed. */
uint64_t mh__pi_kernel_scalar(mh__pi_stream_t *st, uint64_t npoints);
uint64_t mh__pi_kernel_avx2(mh__pi_stream_t *st, uint64_t npoints);
uint64_t mh__pi_kernel_avx512(mh__pi_stream_t *st, uint64_t npoints);

#endif /* MH_PI_STREAM_H */
