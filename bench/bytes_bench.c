/* SPDX-License-Identifier: MIT */
/* bytes_bench.c - a process-pool map whose items return bytes of a size
 * they decide (mh_executor_map_bytes, mh_task_output).
 *
 *   bytes_bench map N MAXSIZE [WORKERS]   item i returns size(i) bytes,
 *                                         0..MAXSIZE; prints items/s
 * One line of output: the figure only, so scripts can take medians.  The
 * Python peer (bytes_peer.py) returns the same sizes from Pool.map.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "manyhands.h"

static size_t size_of(unsigned long i, size_t max) {
  return (size_t)((i * 2654435761u) % (max + 1));
}

static int var(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)isz, (void)out, (void)osz;
  const unsigned long *a = in;
  size_t n = size_of(a[0], (size_t)a[1]);
  char *p = mh_task_output(n);
  if (!p) return MH_ENOMEM;
  memset(p, (int)(a[0] & 0x7f), n);
  (void)ctx;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[1], "map")) {
    fprintf(stderr, "usage: bytes_bench map N MAXSIZE [WORKERS]\n");
    return 2;
  }
  size_t n = (size_t)strtod(argv[2], NULL), max = (size_t)strtod(argv[3], NULL);
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = argc > 4 ? atoi(argv[4]) : 0;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc < 0) {
    fprintf(stderr, "bytes_bench: %s\n", mh_strerror(rc));
    return 1;
  }
  unsigned long(*in)[2] = malloc(n * sizeof *in);
  void **outs = malloc(n * sizeof *outs);
  size_t *sizes = malloc(n * sizeof *sizes);
  if (!in || !outs || !sizes) return 1;
  for (size_t i = 0; i < n; i++) in[i][0] = i, in[i][1] = max;
  size_t warm = n < 1000 ? n : 1000; /* start the workers, fault the heap */
  mh_executor_map_bytes(ex, var, NULL, in, sizeof *in, warm, 0, NULL, outs, sizes);
  for (size_t i = 0; i < warm; i++) mh_bytes_free(outs[i]);
  double t0 = bench_now();
  rc = mh_executor_map_bytes(ex, var, NULL, in, sizeof *in, n, 0, NULL, outs, sizes);
  double t = bench_now() - t0;
  if (rc) {
    fprintf(stderr, "bytes_bench: %s\n", mh_strerror(rc));
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (sizes[i] != size_of(i, max)) {
      fprintf(stderr, "bytes_bench: item %zu has %zu bytes\n", i, sizes[i]);
      return 1;
    }
    mh_bytes_free(outs[i]);
  }
  printf("%.0f\n", n / t);
  mh_executor_free(ex);
  free(in), free(outs), free(sizes);
  return 0;
}
