/* SPDX-License-Identifier: MIT */
/* pi_bench.c - the manyhands pi job as a benchmark program (public API only).
 *
 *   pi_bench N WORKERS [threads|processes] [REPS] [KERNEL]
 *
 * Creates one executor (like the tutorial's pool, outside the timing) and
 * prints one line per repetition: "seconds cpu inside pi", where seconds is
 * the job time mh_pi_run reports and cpu the CPU seconds this process used
 * meanwhile (all threads; 0 for the process backend, whose workers are other
 * processes), so a loaded machine can be told from a slow job.  Exit status 1 when the backend or the run
 * fails (so bench/pi.sh can skip a backend that is not built).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "manyhands.h"
#include "bench.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pi_bench N WORKERS [threads|processes] [REPS] [KERNEL]\n");
    return 2;
  }
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.workers = atoi(argv[2]);
  if (argc > 3 && strcmp(argv[3], "processes") == 0) eo.backend = MH_BACKEND_PROCESSES;
  int reps = argc > 4 ? atoi(argv[4]) : 1;
  mh_pi_options_t po;
  mh_pi_options_init(&po);
  po.n = strtoull(argv[1], NULL, 10);
  if (argc > 5 && mh_pi_kernel_parse(argv[5], &po.kernel) != 0) {
    fprintf(stderr, "pi_bench: unknown kernel %s\n", argv[5]);
    return 2;
  }
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &eo);
  if (rc) {
    fprintf(stderr, "pi_bench: executor: %s\n", mh_strerror(rc));
    return 1;
  }
  for (int r = 0; r < reps; r++) {
    mh_pi_result_t res;
    po.seed = mh_pi_repeat_seed(MH_PI_DEFAULT_SEED, (uint64_t)r);
    double c0 = bench_cpu_seconds();
    rc = mh_pi_run(ex, &po, &res);
    double cpu = eo.backend == MH_BACKEND_THREADS ? bench_cpu_seconds() - c0 : 0.0;
    if (rc) {
      fprintf(stderr, "pi_bench: run: %s\n", mh_strerror(rc));
      mh_executor_free(ex);
      return 1;
    }
    printf("%.9f %.6f %llu %.8f\n", res.seconds, cpu, (unsigned long long)res.inside,
           res.pi);
  }
  mh_executor_free(ex);
  return 0;
}
