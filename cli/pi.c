/* SPDX-License-Identifier: MIT */
/* pi.c - `manyhands pi`: running the Monte Carlo estimate of pi.
 *
 * After the command line is parsed, one of three shapes of run, all on the
 * library's public API (mh_executor_new + mh_pi_run):
 *   - one run, printed as a block of labelled lines (or one JSON object);
 *   - --repeat K: K runs, each from its own stream (mh_pi_repeat_seed), one
 *     estimate per line, then the total time, as the tutorial's timeit does;
 *   - --sweep LIST: a warm-up run, then K rounds (default 3) over the worker
 *     counts, interleaved; per count the median, min and max time, a speedup
 *     table and Amdahl's serial fraction fitted over the medians, optionally
 *     a chart (plot.c), whose path pi_args.c has already opened.
 *
 * Ctrl-C: the library installs no signal handler; ours only sets g_cancel,
 * which mh_pi_run polls through opts.cancel, so the run stops handing out
 * blocks and returns MH_ECANCELED with what was counted.  We print that
 * partial result, free the executor (which ends its workers) and exit 130.
 * SA_RESETHAND makes a second Ctrl-C kill at once, as users expect.
 * g_cancel is the only state shared with a handler: written by it, read by
 * the library's polling (the thread that called mh_pi_run) and by us.
 *
 * The first Ctrl-C ends the command within 0.5 s whatever its workers do
 * (a stopped or hung worker would make the run wait for its task): the
 * handler also posts g_sigsem, and the watcher thread escalates.  After
 * 0.1 s it terminates the live executor (MH_SHUTDOWN_TERMINATE: running
 * tasks are cancelled, their workers get SIGTERM, then SIGKILL after the
 * 0.1 s grace we give process pools); if the command is still there at
 * 0.4 s (a pool of thousands still starting, say), it says "interrupted"
 * and _exits with 130 (the pool's processes die with us).  g_ex, the
 * executor the watcher may terminate, is guarded by g_ex_mu.
 *
 * The command line is parsed by pi_args.c and everything printed goes
 * through report.c; the MPI layout of each run reaches the printers in an
 * mhc_run_info_t, not through globals.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"

/* Set by the SIGINT handler, read by the library through opts.cancel. */
static volatile sig_atomic_t g_cancel;
_Static_assert(sizeof(sig_atomic_t) == sizeof(int),
               "opts.cancel points at an int");

static sem_t g_sigsem; /* posted by the handler (async-signal-safe) */
static pthread_mutex_t g_ex_mu = PTHREAD_MUTEX_INITIALIZER;
static mh_executor_t *g_ex; /* under g_ex_mu: the executor running now */

static volatile sig_atomic_t g_watching; /* the watcher thread runs */

static void on_sigint(int sig) {
  (void)sig;
  g_cancel = 1;
  if (g_watching) sem_post(&g_sigsem);
}

static void set_live_executor(mh_executor_t *ex) {
  pthread_mutex_lock(&g_ex_mu);
  g_ex = ex;
  pthread_mutex_unlock(&g_ex_mu);
}

/* Free an executor the watcher may be terminating. */
static void free_executor(mh_executor_t *ex) {
  set_live_executor(NULL);
  mh_executor_free(ex);
}

static void *ctrl_c_watcher(void *arg) {
  (void)arg;
  while (sem_wait(&g_sigsem) != 0) {
  }
  struct timespec t = {0, 100 * 1000 * 1000};
  nanosleep(&t, NULL);
  pthread_mutex_lock(&g_ex_mu);
  if (g_ex) mh_executor_shutdown(g_ex, MH_SHUTDOWN_TERMINATE);
  pthread_mutex_unlock(&g_ex_mu);
  t.tv_nsec = 300 * 1000 * 1000;
  nanosleep(&t, NULL);
  static const char msg[] = "manyhands: interrupted\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)w;
  _exit(MHC_EXIT_INTERRUPTED);
}

/* ---- kernels ------------------------------------------------------------ */

/* MANYHANDS_KERNELS=scalar,avx2 makes the command treat only those kernels
 * as present, as if the CPU lacked the others: a way to try the fallback and
 * the error on any machine.  Returns a bit mask (bit k for kernel k), or -1
 * after reporting a bad value. */
static int kernel_mask(void) {
  const char *env = getenv("MANYHANDS_KERNELS");
  if (!env) return 0xe;
  int mask = 0;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", env);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    mh_pi_kernel_t k;
    if (mh_pi_kernel_parse(tok, &k) != 0 || k == MH_PI_KERNEL_AUTO) {
      mhc_error("MANYHANDS_KERNELS: unknown kernel '%s' (expected scalar, avx2, "
                "avx512 separated by commas)", tok);
      return -1;
    }
    mask |= 1 << k;
  }
  return mask;
}

static int kernel_available(mh_pi_kernel_t k, int mask) {
  return (mask & (1 << k)) && mh_pi_kernel_supported(k);
}

/* Turn the requested kernel into the one to pass to the library.  Returns 0,
 * or an exit code after reporting. */
static int resolve_kernel(mhc_pi_args_t *a) {
  static const mh_pi_kernel_t order[] = {MH_PI_KERNEL_AVX512, MH_PI_KERNEL_AVX2,
                                         MH_PI_KERNEL_SCALAR};
  int mask = kernel_mask();
  if (mask < 0) return MHC_EXIT_USAGE;
  if (a->kernel != MH_PI_KERNEL_AUTO) {
    if (kernel_available(a->kernel, mask)) return 0;
    char have[64] = "";
    for (int i = 2; i >= 0; i--) {
      if (!kernel_available(order[i], mask)) continue;
      if (have[0]) strcat(have, ", ");
      strcat(have, mh_pi_kernel_name(order[i]));
    }
    mhc_error("the %s kernel is not available on this CPU (available: %s); "
              "use --kernel auto", mh_pi_kernel_name(a->kernel),
              have[0] ? have : "none");
    return MHC_EXIT_FAIL;
  }
  if (mask == 0xe) return 0; /* the library picks the best at run time */
  for (int i = 0; i < 3; i++) {
    if (kernel_available(order[i], mask)) {
      a->kernel = order[i];
      return 0;
    }
  }
  mhc_error("MANYHANDS_KERNELS leaves no kernel this CPU can run");
  return MHC_EXIT_FAIL;
}

/* ---- running ------------------------------------------------------------ */

/* An executor for `workers` workers; for MPI no executor, but the layout
 * of the next runs: `ranks` ranks (0: all of the job's) x `workers` threads
 * each. */
static int make_executor(const mhc_pi_args_t *a, int ranks, int workers,
                         mh_executor_t **ex, mhc_layout_t *lay) {
  lay->ranks = lay->threads = 0;
#ifdef MH_WITH_MPI
  if (a->backend == MH_BACKEND_MPI) { /* ranks x threads: see pi_mpi.c */
    if (ranks <= 0) ranks = mhc_mpi_size();
    mhc_mpi_set_layout(ranks, workers);
    lay->ranks = ranks;
    lay->threads = workers;
    *ex = NULL;
    return 0;
  }
#else
  (void)ranks;
#endif
  mh_executor_options_t eo;
  mh_executor_options_init(&eo);
  eo.backend = a->backend;
  eo.workers = workers;
  eo.grace = 0.1; /* Ctrl-C: SIGKILL soon after SIGTERM (see the top) */
  int rc = mh_executor_new(ex, &eo);
  if (rc == 0) {
    set_live_executor(*ex);
    return 0;
  }
  if (rc == MH_ENOTSUP)
    mhc_error("the %s backend is not available in this build",
              mhc_backend_name(a->backend));
  else
    mhc_error("cannot start %d %s: %s", workers,
              mhc_worker_noun(a->backend, workers), mh_strerror(rc));
  return MHC_EXIT_FAIL;
}

static int run_one(mh_executor_t *ex, const mhc_pi_args_t *a, uint64_t seed,
                   mhc_progress_t *pg, mh_pi_result_t *res) {
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = a->n;
  o.seed = seed;
  o.kernel = a->kernel;
  o.progress = mhc_progress_cb;
  o.progress_arg = pg;
  o.cancel = &g_cancel;
  mhc_progress_start(pg);
  memset(res, 0, sizeof *res);
#ifdef MH_WITH_MPI
  int rc = a->backend == MH_BACKEND_MPI ? mhc_mpi_pi_run(&o, res)
                                        : mh_pi_run(ex, &o, res);
#else
  int rc = mh_pi_run(ex, &o, res);
#endif
  mhc_progress_clear(pg);
  return rc;
}

static int run_failed(int rc) {
  if (rc == MH_ENOTSUP)
    mhc_error("the requested kernel is not supported on this CPU");
  else
    mhc_error("the run failed: %s (%s)", mh_strerror(rc), mh_err_name(rc));
  return MHC_EXIT_FAIL;
}

/* One run, or K of them with --repeat. */
static int run_plain(const mhc_pi_args_t *a, mhc_progress_t *pg) {
  int workers = a->workers ? a->workers : mh_cpu_count();
  if (workers > MHC_MAX_WORKERS) workers = MHC_MAX_WORKERS;
  mh_executor_t *ex;
  mhc_run_info_t info = {.repeat = a->repeat};
  int code = make_executor(a, 0, workers, &ex, &info.layout);
  if (code) return code;
  code = MHC_EXIT_OK;
  int tutorial = a->repeat > 1 && !a->json;
  double t0 = mhc_now(), sum = 0, sumsq = 0, points = 0, busy = 0;
  uint64_t reps = 0;
  mh_pi_kernel_t used = a->kernel;
  for (uint64_t rep = 0; rep < a->repeat; rep++) {
    uint64_t seed = mh_pi_repeat_seed(a->seed, rep);
    mh_pi_result_t res;
    int rc = run_one(ex, a, seed, pg, &res);
    if (rc != 0 && rc != MH_ECANCELED) {
      code = run_failed(rc);
      break;
    }
    int interrupted = rc == MH_ECANCELED;
    info.seed = seed;
    info.rep = rep;
    info.interrupted = interrupted;
    if (a->json) {
      mhc_print_json(&info, &res);
    } else if (!tutorial || interrupted) {
      mhc_print_human(&info, &res);
    } else {
      printf("%.7f\n", res.pi);
      fflush(stdout);
    }
    if (interrupted) {
      code = MHC_EXIT_INTERRUPTED;
      break;
    }
    used = res.kernel;
    sum += res.pi;
    sumsq += res.pi * res.pi;
    points += (double)res.done;
    busy += res.seconds;
    reps++;
  }
  double total = mhc_now() - t0;
  free_executor(ex);
  if (tutorial && code == MHC_EXIT_OK) {
    double mean = sum / (double)reps;
    double var = (sumsq - sum * mean) / (double)(reps - 1);
    char who[96];
    int ranks = info.layout.ranks > 0 ? info.layout.ranks : 1;
    mhc_describe_workers(a->backend, workers * ranks, &info.layout, 1, who,
                         sizeof who);
    printf("%.6f\n", total);
    printf("%llu total iterations with %s\n", (unsigned long long)a->n, who);
    printf("mean %.9f, standard error of the mean %.9f; kernel %s, seed %llu, "
           "%.4g points/s\n", mean, var > 0 ? sqrt(var / (double)reps) : 0.0,
           mh_pi_kernel_name(used), (unsigned long long)a->seed,
           busy > 0 ? points / busy : 0.0);
  }
  if (code == MHC_EXIT_INTERRUPTED) mhc_error("interrupted");
  return code;
}

/* The points of a sweep: worker counts of LIST on one machine; on MPI every
 * ranks x threads pair for 1..R ranks of the job and LIST threads per rank,
 * ordered by total workers, then by ranks.  Returns the count, or 0 when out
 * of memory. */
static size_t sweep_layout(const mhc_pi_args_t *a, mhc_sweep_row_t **out) {
  int ranks = 1;
#ifdef MH_WITH_MPI
  if (a->backend == MH_BACKEND_MPI) ranks = mhc_mpi_size();
#endif
  size_t n = (size_t)ranks * a->nsweep, k = 0;
  mhc_sweep_row_t *rows = calloc(n, sizeof *rows);
  if (!rows) return 0;
  for (int r = 1; r <= ranks; r++)
    for (size_t i = 0; i < a->nsweep; i++, k++) {
      rows[k].ranks = r;
      rows[k].threads = a->sweep[i];
      rows[k].workers = r * a->sweep[i];
    }
  /* Insertion sort: stable, and n is small. */
  for (size_t i = 1; i < n; i++) {
    mhc_sweep_row_t t = rows[i];
    size_t j = i;
    while (j > 0 && (rows[j - 1].workers > t.workers ||
                     (rows[j - 1].workers == t.workers &&
                      rows[j - 1].ranks > t.ranks))) {
      rows[j] = rows[j - 1];
      j--;
    }
    rows[j] = t;
  }
  *out = rows;
  return n;
}

/* Runs per worker count of a sweep when --repeat does not say: enough for a
 * median that one disturbed run cannot move. */
#define SWEEP_RUNS 3

/* One timed run of a sweep at rows[i]'s layout, on a fresh executor (pool
 * start-up is not part of the job: mh_pi_run times the run alone).  Returns
 * 0, MH_ECANCELED (res holds the partial result) or an exit code. */
static int sweep_run(const mhc_pi_args_t *a, const mhc_sweep_row_t *row,
                     mhc_progress_t *pg, mh_pi_result_t *res, mhc_layout_t *lay) {
  mh_executor_t *ex;
  int code = make_executor(a, row->ranks, row->threads, &ex, lay);
  if (code) return code;
  int rc = run_one(ex, a, a->seed, pg, res);
  free_executor(ex);
  if (rc == 0 || rc == MH_ECANCELED) return rc;
  return run_failed(rc);
}

/* --sweep: a warm-up run, then K rounds over the worker counts (1, 2, .., P,
 * 1, 2, .., P, ...): interleaved, so a slow spell of the machine spreads
 * over every count instead of spoiling one; the median of each count's K
 * times goes in the table, min and max beside it.  Every run uses the same
 * seed, so every run must count the same points, and is checked to. */
static int run_sweep(const mhc_pi_args_t *a, mhc_progress_t *pg) {
  mhc_sweep_row_t *rows = NULL;
  size_t n = sweep_layout(a, &rows);
  uint64_t runs = a->have_repeat ? a->repeat : SWEEP_RUNS;
  double *times = calloc(n * runs, sizeof *times);
  int *ps = calloc(n, sizeof *ps);
  double *ts = calloc(n, sizeof *ts);
  int code = MHC_EXIT_OK, mpi = a->backend == MH_BACKEND_MPI;
  int cpus = mpi ? 0 : mh_cpu_count(); /* an MPI job's CPUs are not ours to count */
  size_t done_rows = 0;
  mh_pi_result_t first, partial;
  /* What the printers are told about the interrupted run. */
  mhc_run_info_t pinfo = {.seed = a->seed, .repeat = runs, .interrupted = 1};
  int interrupted = 0;
  if (!n || !rows || !times || !ps || !ts) {
    mhc_error("out of memory");
    code = MHC_EXIT_FAIL;
    goto out;
  }
  if (cpus > 0 && rows[n - 1].workers > cpus)
    mhc_error("warning: the sweep goes up to %d workers on %d online CPU%s: "
              "past %d the workers share CPUs, and their times show how well "
              "they share, not how the job scales", rows[n - 1].workers, cpus,
              cpus == 1 ? "" : "s", cpus);
  /* The warm-up: the widest layout, untimed; it wakes the CPUs from their
   * idle clocks and faults in the code and the stacks, which would
   * otherwise be charged to whichever count ran first.  Its count inside is
   * the one every run must match. */
  int rc = sweep_run(a, &rows[n - 1], pg, &first, &pinfo.layout);
  if (rc == MH_ECANCELED) {
    partial = first;
    interrupted = 1;
    code = MHC_EXIT_INTERRUPTED;
  } else if (rc != 0) {
    code = rc;
  }
  for (uint64_t round = 0; round < runs && code == MHC_EXIT_OK; round++) {
    for (size_t i = 0; i < n; i++) {
      mh_pi_result_t res;
      mhc_layout_t lay;
      rc = sweep_run(a, &rows[i], pg, &res, &lay);
      if (rc == MH_ECANCELED) {
        partial = res;
        pinfo.layout = lay;
        interrupted = 1;
        code = MHC_EXIT_INTERRUPTED;
        break;
      }
      if (rc != 0) {
        code = rc;
        break;
      }
      /* Every worker count must count the same points: the library's
       * promise, checked here where it is cheap. */
      if (res.inside != first.inside) {
        mhc_error("the count inside differs between %d and %d workers (%llu "
                  "vs %llu): please report this bug", rows[n - 1].workers,
                  rows[i].workers, (unsigned long long)first.inside,
                  (unsigned long long)res.inside);
        code = MHC_EXIT_FAIL;
        break;
      }
      times[i * runs + round] = res.seconds;
      rows[i].runs = (int)round + 1;
    }
  }
  /* The counts measured at least once: all of them, or after Ctrl-C in the
   * first round the ones before it. */
  while (done_rows < n && rows[done_rows].runs > 0) done_rows++;
  if (code == MHC_EXIT_FAIL || done_rows == 0) {
    if (interrupted) {
      if (a->json)
        mhc_print_json(&pinfo, &partial);
      else
        mhc_print_human(&pinfo, &partial);
      mhc_error("interrupted");
    }
    goto out;
  }
  for (size_t i = 0; i < done_rows; i++) {
    double *t = &times[i * runs];
    size_t k = (size_t)rows[i].runs;
    rows[i].seconds = mhc_median(t, k); /* sorts t */
    rows[i].seconds_min = t[0];
    rows[i].seconds_max = t[k - 1];
    rows[i].points_per_second =
        rows[i].seconds > 0 ? (double)a->n / rows[i].seconds : 0;
    ps[i] = rows[i].workers;
    ts[i] = rows[i].seconds;
  }
  mhc_amdahl_t fit;
  mhc_amdahl_fit(ps, ts, done_rows, &fit);
  double base = mhc_sweep_fill(rows, done_rows, &fit);
  if (a->json) {
    /* One object per worker count: its run, timed by the median. */
    for (size_t i = 0; i < done_rows; i++) {
      mhc_run_info_t info = {.seed = a->seed, .repeat = runs, .row = &rows[i],
                             .fit = &fit};
      if (mpi) {
        info.layout.ranks = rows[i].ranks;
        info.layout.threads = rows[i].threads;
      }
      mh_pi_result_t r = first;
      r.workers = rows[i].workers;
      r.seconds = rows[i].seconds;
      mhc_print_json(&info, &r);
    }
  } else {
    mhc_print_table(a, runs, rows, done_rows, &fit, base, &first);
  }
  int beyond = mhc_sweep_beyond_cpus(rows, done_rows, cpus);
  if (beyond >= 0)
    mhc_error("warning: the speedup at %d workers (%.2f) exceeds the %d online "
              "CPU%s, which no job can do: the runs were disturbed (a busy "
              "machine slowed the one-worker runs); measure on a quiet machine "
              "or with more runs (--repeat)", rows[beyond].workers,
              rows[beyond].speedup, cpus, cpus == 1 ? "" : "s");
  if (interrupted) {
    if (a->json)
      mhc_print_json(&pinfo, &partial);
    else {
      printf("\n");
      mhc_print_human(&pinfo, &partial);
    }
    mhc_error("interrupted");
    goto out;
  }
  int draw = a->plot != NULL;
#ifdef MH_WITH_MPI
  /* Rank 0 alone draws, as it alone prints: one gnuplot, one writer. */
  if (mpi && mhc_mpi_rank() != 0) draw = 0;
#endif
  if (draw) {
    char title[256];
    snprintf(title, sizeof title, "manyhands pi: speedup, N = %llu, %s, kernel %s",
             (unsigned long long)a->n, mhc_backend_name(a->backend),
             mh_pi_kernel_name(first.kernel));
    /* 1: gnuplot vanished since the start; the user asked for a file and
     * did not get it, so that is a failure too. */
    if (mhc_plot_sweep(a->plot, rows, done_rows, &fit, title, cpus) != 0)
      code = MHC_EXIT_FAIL;
    /* Ctrl-C while gnuplot draws reaches gnuplot too (same process group). */
    if (g_cancel) {
      mhc_error("interrupted");
      code = MHC_EXIT_INTERRUPTED;
    }
  }
out:
  free(rows);
  free(times);
  free(ps);
  free(ts);
  return code;
}

#ifndef MH_WITH_MPI
/* --backend mpi given to the plain command: say where MPI runs are made.
 * Returns the usage exit code. */
static int refuse_mpi(void) {
  char self[4096], mpi[4200];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  const char *found = NULL;
  if (len > 0) {
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = '\0';
      snprintf(mpi, sizeof mpi, "%s/manyhands-mpi", self);
      if (access(mpi, X_OK) == 0) found = mpi;
    }
  }
  if (found)
    mhc_error("--backend mpi runs in the MPI build of the command, under an "
              "MPI launcher: mpirun -np RANKS %s pi N [P] --backend mpi "
              "(P threads per rank)", found);
  else
    mhc_error("--backend mpi runs in manyhands-mpi under an MPI launcher "
              "(mpirun -np RANKS manyhands-mpi pi N [P] --backend mpi), and "
              "this build has no manyhands-mpi: CMake did not find MPI (install "
              "Open MPI or MPICH and rebuild), or use --backend threads or "
              "processes");
  return MHC_EXIT_USAGE;
}
#endif

int mhc_cmd_pi(int argc, char **argv) {
  mhc_pi_args_t *a = calloc(1, sizeof *a);
  if (!a) {
    mhc_error("out of memory");
    return MHC_EXIT_FAIL;
  }
  int code = mhc_pi_parse(argc, argv, a);
  if (code != 0) {
    free(a);
    return code > 0 ? MHC_EXIT_OK : MHC_EXIT_USAGE;
  }
#ifdef MH_WITH_MPI
  if (a->backend == MH_BACKEND_MPI && (code = mhc_mpi_start()) != 0) goto out;
#else
  if (a->backend == MH_BACKEND_MPI) {
    code = refuse_mpi();
    goto out;
  }
#endif
  code = resolve_kernel(a);
  if (code) goto out;
  if (a->plot) {
    /* Asked for a chart that cannot be drawn: say so before the sweep,
     * not after it.  A runtime failure (exit 1), not a usage error. */
    char gp[4096];
    if (!mhc_find_on_path("gnuplot", gp, sizeof gp)) {
      mhc_error("gnuplot was not found on PATH, so the chart %s cannot be "
                "drawn: install it (Debian/Ubuntu: apt-get install gnuplot-nox) "
                "or run without --plot", a->plot);
      code = MHC_EXIT_FAIL;
      goto out;
    }
  }
  if (a->seed_random) {
    /* A fresh seed from the kernel; printed with the result so the run can be
     * repeated with --seed. */
    if (getrandom(&a->seed, sizeof a->seed, 0) != (ssize_t)sizeof a->seed) {
      mhc_error("cannot draw a random seed: %s", strerror(errno));
      code = MHC_EXIT_FAIL;
      goto out;
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  /* (Not on MPI: there the ranks end together through the launcher.) */
  pthread_t watcher;
  if (a->backend != MH_BACKEND_MPI && sem_init(&g_sigsem, 0, 0) == 0 &&
      pthread_create(&watcher, NULL, ctrl_c_watcher, NULL) == 0) {
    pthread_detach(watcher);
    g_watching = 1;
  }
  sigaction(SIGINT, &sa, NULL);

  mhc_progress_t pg;
  mhc_progress_init(&pg, !a->quiet && isatty(STDERR_FILENO));
  /* Tracing starts before the executor is made, so that its process
   * workers record too; --timeline alone traces into a temporary file. */
  char tmp[4096] = "";
  const char *trace = a->trace;
  if (a->timeline && !trace) {
    const char *dir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/manyhands-trace-XXXXXX.json",
             dir && *dir ? dir : "/tmp");
    int fd = mkstemps(tmp, 5);
    if (fd < 0) {
      mhc_error("cannot make a temporary trace file in %s: %s",
                dir && *dir ? dir : "/tmp", strerror(errno));
      code = MHC_EXIT_FAIL;
      goto out;
    }
    close(fd);
    trace = tmp;
  }
  if (trace) {
    int rc = mh_trace_start(trace);
    if (rc) {
      mhc_error("cannot write the trace '%s': %s", trace, mh_strerror(rc));
      code = MHC_EXIT_FAIL;
      goto out;
    }
  }
  code = a->nsweep ? run_sweep(a, &pg) : run_plain(a, &pg);
  if (trace) {
    int rc = mh_trace_stop();
    if (rc && code == MHC_EXIT_OK) {
      mhc_error("cannot write the trace '%s': %s", trace, mh_strerror(rc));
      code = MHC_EXIT_FAIL;
    }
  }
  /* Over MPI, rank 0 alone writes the trace (with every rank's tracks)
   * and draws it. */
  int draw_timeline = a->timeline && code == MHC_EXIT_OK;
#ifdef MH_WITH_MPI
  if (a->backend == MH_BACKEND_MPI && mhc_mpi_rank() != 0) draw_timeline = 0;
#endif
  if (draw_timeline) {
    char title[160];
    snprintf(title, sizeof title, "manyhands pi: what ran where (%s)",
             a->backend == MH_BACKEND_PROCESSES ? "processes"
             : a->backend == MH_BACKEND_MPI     ? "MPI ranks"
                                                : "threads");
    if (mhc_timeline_draw(trace, a->timeline, title) != 0) code = MHC_EXIT_FAIL;
  }
  if (tmp[0]) unlink(tmp);
out:
  /* A chart file the parser created and the run did not draw goes again. */
  if (code != MHC_EXIT_OK && a->plot_created) unlink(a->plot);
  if (code != MHC_EXIT_OK && a->timeline_created) unlink(a->timeline);
  free(a);
  return code;
}
