/* SPDX-License-Identifier: MIT */
/* pi_kernel_scalar.c - the reference kernel of the pi job: plain C, one point
 * at a time, in canonical order.
 *
 * This file defines the stream that the SIMD kernels reproduce (see
 * pi_stream.h): step by step, lane by lane, low half before high half.  It
 * is compiled for baseline x86-64 and runs on any CPU.
 */
#include "pi_stream.h"

uint64_t mh__pi_kernel_scalar(mh__pi_stream_t *st, uint64_t npoints) {
  uint64_t inside = 0;
  uint64_t done = 0;
  while (done < npoints) {
    for (int l = 0; l < MH__PI_LANES && done < npoints; l++) {
      uint64_t o = mh__pi_xoshiro_next(&st->s[0][l], &st->s[1][l],
                                       &st->s[2][l], &st->s[3][l]);
      inside += (uint64_t)mh__pi_point(st, (uint32_t)o);
      if (++done == npoints) break;
      inside += (uint64_t)mh__pi_point(st, (uint32_t)(o >> 32));
      done++;
    }
  }
  return inside;
}
