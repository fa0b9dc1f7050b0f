/* SPDX-License-Identifier: MIT */
/* forkjoin_body.c - the loop bodies of the parallel_for and parallel_reduce
 * rows, compiled once (one object file, one set of flags) and linked into
 * forkjoin_bench, forkjoin_omp and forkjoin_tbb alike.
 *
 * Why: when each program carried its own copy of the loop, the compilers
 * made different loops of it.  gcc unrolled OpenMP's outlined no-op loop
 * twice (one taken branch per two indices) and not manyhands' body, whose
 * three-instruction loop also straddled a 64-byte line: 3.5x the cycles
 * per index, so the row measured code generation, not the runtimes.  Here
 * the runtimes call the same bytes at the same alignment (a function
 * aligned on 64 bytes keeps its loops' offsets within a cache line in
 * every program), once per chunk, and the rows compare what is left: the
 * splitting, stealing, waking and joining. */
#include "forkjoin_body.h"

__attribute__((noinline, aligned(64))) void fj_noop_range(size_t lo, size_t hi) {
  for (size_t i = lo; i < hi; i++) __asm__ volatile("" ::"r"(i));
}

__attribute__((noinline, aligned(64))) double fj_sum_range(const double *x, size_t lo,
                                                          size_t hi, double acc) {
  for (size_t i = lo; i < hi; i++) acc += x[i];
  return acc;
}
