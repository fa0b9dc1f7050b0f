/* SPDX-License-Identifier: MIT */
/* manyhands/pi.h - the Monte Carlo estimate of pi, reproducible at any scale.
 *
 * N points are cut into blocks of MH_PI_BLOCK_POINTS (the last one shorter);
 * the blocks do not depend on the number of workers.  Block b draws from a
 * random stream derived from (seed, b) only, and the inside test is exact
 * integer arithmetic.  So the number of points inside the circle is
 * the same for any worker count, backend and kernel (scalar, AVX2, AVX-512).
 * The generator, the point layout and the kernels are described in docs/pi.md.
 */
#ifndef MANYHANDS_PI_H
#define MANYHANDS_PI_H

/** @defgroup mh_pi pi.h: the Monte Carlo estimate of pi, reproducible at any scale
 * @brief The Monte Carlo estimate of pi, reproducible at any scale.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/pi.h>.
 * @{
 */


#include "common.h"
#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Points in one block (a power of two). */
#define MH_PI_BLOCK_POINTS ((uint64_t)1 << 22)

/** The counting kernels (instruction sets) of the pi job. */
typedef enum {
  MH_PI_KERNEL_AUTO = 0, /**< the best the CPU has, chosen at run time */
  MH_PI_KERNEL_SCALAR = 1,
  MH_PI_KERNEL_AVX2 = 2,
  MH_PI_KERNEL_AVX512 = 3
} mh_pi_kernel_t;

/** The kernel's name: "auto", "scalar", "avx2", "avx512"; NULL for an unknown value.
 * @param kernel the kernel
 * @return what the description above says */
MH_EXTERN const char *mh_pi_kernel_name(mh_pi_kernel_t kernel);
/** Parse a kernel name.  0 or MH_EINVAL.
 * @param name "scalar", "avx2", "avx512" or "auto"
 * @param kernel receives the kernel
 * @return what the description above says */
MH_EXTERN int mh_pi_kernel_parse(const char *name, mh_pi_kernel_t *kernel);
/** 1 if this CPU (and this build) can run `kernel`, else 0.  AUTO: 1.
 * @param kernel the kernel
 * @return what the description above says */
MH_EXTERN int mh_pi_kernel_supported(mh_pi_kernel_t kernel);
/** What MH_PI_KERNEL_AUTO resolves to on this CPU.
 * @return what the description above says */
MH_EXTERN mh_pi_kernel_t mh_pi_kernel_best(void);

/** Count the points inside for block `block` of a run with `seed`, drawing
 * `npoints` (1..MH_PI_BLOCK_POINTS) points.
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL inside,
 * npoints out of range), MH_ENOTSUP (kernel not supported here).
 * @param seed the run's 64-bit seed
 * @param block the block's index in the run
 * @param npoints points in the block
 * @param kernel the kernel
 * @param inside receives the points inside */
MH_EXTERN int mh_pi_count_block(uint64_t seed, uint64_t block,
                                uint64_t npoints, mh_pi_kernel_t kernel,
                                uint64_t *inside);

/** Seed of repetition `rep` of a run seeded with `seed` (rep 0 gives `seed`
 * itself), so `--repeat K` draws K independent estimates.
 * @param seed the run's 64-bit seed
 * @param rep the repeat's index (0 for the first run)
 * @return what the description above says */
MH_EXTERN uint64_t mh_pi_repeat_seed(uint64_t seed, uint64_t rep);

/** Progress callback: `done` of `total` points counted so far. */
typedef void (*mh_pi_progress_fn)(uint64_t done, uint64_t total, void *arg);

/** Options of mh_pi_run(); fill with mh_pi_options_init() first. */
typedef struct mh_pi_options_s {
  unsigned flags;           /**< reserved, 0 */
  uint64_t n;               /**< points, 1 .. 2^63-1 */
  uint64_t seed;            /**< stream seed */
  mh_pi_kernel_t kernel;    /**< default AUTO */
  mh_pi_progress_fn progress; /**< optional; called from the calling thread */
  void *progress_arg;       /**< passed to progress */
  /** Optional: when *cancel becomes non-zero (e.g. set by a SIGINT handler)
   * the run stops handing out blocks, waits for those in flight and returns
   * MH_ECANCELED with the partial result filled in. */
  const volatile int *cancel;
} mh_pi_options_t;

/** Fill `opts` with the defaults: seed MH_PI_DEFAULT_SEED, kernel AUTO.
 * @param opts the options to fill */
MH_EXTERN void mh_pi_options_init(mh_pi_options_t *opts);

/** The default seed, so that runs are reproducible unless a seed is given. */
#define MH_PI_DEFAULT_SEED UINT64_C(20260101)

/** What mh_pi_run() measured. */
typedef struct mh_pi_result_s {
  uint64_t n;          /**< points asked for */
  uint64_t done;       /**< points counted (== n unless cancelled) */
  uint64_t inside;     /**< points inside the circle (the points fill the
                            square [-1,1)^2: the same fraction pi/4 as the
                            tutorial's quarter circle) */
  double pi;           /**< 4 * inside / done */
  double stderr_pi;    /**< its standard error, 4 * sqrt(p(1-p)/done) */
  double abs_error;    /**< |pi - M_PI| */
  double seconds;      /**< wall time of the run */
  mh_pi_kernel_t kernel; /**< the kernel actually used */
  int workers;         /**< the executor's worker count */
  mh_backend_t backend; /**< the executor's backend */
  uint64_t reruns;     /**< tasks run again because their worker died */
} mh_pi_result_t;

/** Run the estimate on `ex` (any backend) and fill `res`.  Memory use does not
 * depend on n: tasks of up to 8 whole blocks are kept in a window of about
 * two per worker.  A run of one block of at most 65536 points is counted on
 * the calling thread (a hand-off would cost more than the work); its count is
 * the same.  opts->progress is called from the calling thread about every
 * 50 ms and once at the end; opts->cancel is polled every 10 ms.
 * A task whose worker died (MH_EWORKERDIED: a process worker killed or
 * crashed) is run again on another worker, up to 64 times per task, whatever
 * the executor's own `retries`: a task is a pure function of (seed, blocks),
 * so the count is the same as an undisturbed run's.  res->reruns counts them.
 * @param ex the executor the blocks run on
 * @param opts the options; NULL for the defaults
 * @param res receives the result
 * @return 0 on success, or one of these errors: MH_EINVAL (NULL, n == 0 or > 2^63-1, flags != 0, unknown kernel),
 * MH_ENOTSUP (kernel not supported here), MH_ECANCELED (stopped through
 * opts->cancel; `res` holds the partial result: whole blocks only), MH_ENOMEM,
 * codes of the executor (MH_ESHUTDOWN, MH_EWORKERDIED, ...), in which case
 * `res` also holds what was counted before the failure. */
MH_EXTERN int mh_pi_run(mh_executor_t *ex, const mh_pi_options_t *opts,
                        mh_pi_result_t *res);

/** pi-hat and its standard error from a count.
 * @param inside points that fell inside the quarter circle
 * @param n points drawn
 * @param pi receives the estimate of pi
 * @param stderr_pi receives its standard error */
MH_EXTERN void mh_pi_estimate(uint64_t inside, uint64_t n, double *pi,
                              double *stderr_pi);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_PI_H */
