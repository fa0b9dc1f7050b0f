/* SPDX-License-Identifier: MIT */
/* forkjoin_body.h - the loop bodies of the fork-join benchmarks, shared by
 * manyhands, oneTBB and OpenMP peers (see forkjoin_body.c). */
#ifndef MH_FORKJOIN_BODY_H
#define MH_FORKJOIN_BODY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A no-op per index of [lo, hi): the loop is kept, its body is empty. */
void fj_noop_range(size_t lo, size_t hi);

/* acc + x[lo] + ... + x[hi - 1], added left to right. */
double fj_sum_range(const double *x, size_t lo, size_t hi, double acc);

#ifdef __cplusplus
}
#endif

#endif /* MH_FORKJOIN_BODY_H */
