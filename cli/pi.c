/* pi.c - `manyhands pi`: the Monte Carlo estimate of pi from the command line.
 *
 * Parse the command line, then one of three shapes of run, all on the
 * library's public API (mh_executor_new + mh_pi_run):
 *   - one run, printed as a block of labelled lines (or one JSON object);
 *   - --repeat K: K runs, each from its own stream (mh_pi_repeat_seed), one
 *     estimate per line, then the total time, as the tutorial's timeit does;
 *   - --sweep LIST: the same runs at each worker count, a speedup table and
 *     Amdahl's serial fraction fitted over it, optionally a chart (plot.c).
 *
 * Ctrl-C: the library installs no signal handler; ours only sets g_cancel,
 * which mh_pi_run polls through opts.cancel, so the run stops handing out
 * blocks and returns MH_ECANCELED with what was counted.  We print that
 * partial result, free the executor (which ends its workers) and exit 130.
 * SA_RESETHAND makes a second Ctrl-C kill at once, as users expect.
 *
 * Nothing goes to stdout before the command line is known to be valid, so a
 * usage error leaves stdout empty.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Set by the SIGINT handler, read by the library through opts.cancel. */
static volatile sig_atomic_t g_cancel;
_Static_assert(sizeof(sig_atomic_t) == sizeof(int),
               "opts.cancel points at an int");

static void on_sigint(int sig) {
  (void)sig;
  g_cancel = 1;
}

typedef struct pi_args {
  uint64_t n;
  int have_n;
  int workers; /* 0 until given */
  mh_backend_t backend;
  uint64_t repeat;
  int have_repeat;
  uint64_t seed;
  int seed_random;
  int sweep[MHC_MAX_WORKERS];
  size_t nsweep;
  const char *plot;
  int json;
  int quiet;
  mh_pi_kernel_t kernel;
} pi_args_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *backend_name(mh_backend_t b) {
  switch (b) {
    case MH_BACKEND_THREADS: return "threads";
    case MH_BACKEND_PROCESSES: return "processes";
    case MH_BACKEND_MPI: return "mpi";
  }
  return "?";
}

/* What one worker of a backend is called, for "with 5 processes". */
static const char *worker_noun(mh_backend_t b, int count) {
  switch (b) {
    case MH_BACKEND_THREADS: return count == 1 ? "thread" : "threads";
    case MH_BACKEND_PROCESSES: return count == 1 ? "process" : "processes";
    case MH_BACKEND_MPI: return count == 1 ? "thread" : "threads";
  }
  return "workers";
}

/* The layout of the MPI runs being printed: ranks taking part and threads
 * of each (0 off MPI).  Set before each run; read by the printers. */
static int g_lay_ranks, g_lay_threads;

/* "4 threads", or for MPI "2 MPI ranks x 2 threads (4 threads)". */
static void describe_workers(mh_backend_t b, int workers, int with_total,
                             char *buf, size_t len) {
  if (b == MH_BACKEND_MPI && g_lay_ranks > 0) {
    int n = snprintf(buf, len, "%d MPI rank%s x %d thread%s", g_lay_ranks,
                     g_lay_ranks == 1 ? "" : "s", g_lay_threads,
                     g_lay_threads == 1 ? "" : "s");
    if (with_total && g_lay_ranks > 1 && g_lay_threads > 1 && n > 0 &&
        (size_t)n < len)
      snprintf(buf + n, len - (size_t)n, " (%d threads)", workers);
  } else {
    snprintf(buf, len, "%d %s", workers, worker_noun(b, workers));
  }
}

static void pi_help(void) {
  fputs(
      "usage: manyhands pi [options] N [P]\n"
      "\n"
      "Estimate pi from N random points on P workers: the fraction of the\n"
      "points of a square that fall in its inscribed circle is pi/4.  The\n"
      "points are cut into fixed blocks, each with its own random stream, so\n"
      "the count inside is the same for every P, backend and kernel.\n"
      "\n"
      "  N   points: 10000000, 1e7, 2.5e6, 10^7, 10**7 or 1_000_000;\n"
      "      1 <= N <= 9223372036854775807 (2^63 - 1)\n"
      "  P   workers, 1..4096 (default: the online CPUs)\n"
      "\n"
      "options:\n"
      "  -b, --backend B  threads (default), processes, or mpi (only in\n"
      "                   manyhands-mpi under mpirun: P threads per rank)\n"
      "  -r, --repeat K   K estimates from K independent streams, one per\n"
      "                   line, then the total time (like timeit(number=K))\n"
      "  -s, --seed S     stream seed, decimal or 0x-hex (default 20260101,\n"
      "                   so runs repeat exactly); 'random' draws a fresh one\n"
      "                   from the kernel and prints it\n"
      "      --sweep LIST run at each worker count of LIST ('1,2,4', '1-8',\n"
      "                   '1-4,8'): speedup table and fitted Amdahl fraction;\n"
      "                   with --repeat K each count runs K times (median);\n"
      "                   with --backend mpi LIST is threads per rank and\n"
      "                   the sweep also runs on 1..R of the job's R ranks\n"
      "      --plot FILE  with --sweep: speedup chart, FILE.svg or FILE.png,\n"
      "                   drawn by gnuplot if it is on PATH\n"
      "      --json       one JSON object per run on stdout\n"
      "  -k, --kernel K   auto (default: the best this CPU has), scalar, avx2,\n"
      "                   avx512; one the CPU lacks is an error (exit 1)\n"
      "  -q, --quiet      no progress bar (it is shown on stderr only when\n"
      "                   stderr is a terminal and the run lasts over 1 s)\n"
      "  -h, --help       show this help\n"
      "  -V, --version    show the version\n"
      "\n"
      "Ctrl-C stops the run, prints the partial result and exits with 130.\n"
      "exit status: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.\n"
      "\n"
      "examples:\n"
      "  manyhands pi 1e9                      all CPUs, threads\n"
      "  manyhands pi 10000000 5 --repeat 10   the tutorial's montecarlo2.py\n"
      "  manyhands pi 1e10 --sweep 1-4 --plot speedup.svg\n",
      stdout);
}

/* ---- command line ------------------------------------------------------ */

static int usage_error_n(const char *s) {
  mhc_error("invalid number of points '%s': expected a whole number from 1 to "
            "9223372036854775807, written like 10000000, 1e7, 10^7, 10**7 or "
            "1_000_000", s);
  return -1;
}

/* The value of option `opt`: "--opt=value", "-xVALUE" or the next argument. */
static const char *opt_value(int argc, char **argv, int *i, const char *eq,
                             const char *opt) {
  if (eq) return eq;
  if (*i + 1 >= argc) {
    mhc_error("option '%s' needs a value (try 'manyhands pi --help')", opt);
    return NULL;
  }
  return argv[++*i];
}

/* Returns 0 to run, 1 when help or the version was printed, -1 on a usage
 * error (already reported). */
static int parse_args(int argc, char **argv, pi_args_t *a) {
  const char *pos[3];
  int npos = 0, only_pos = 0;
  memset(a, 0, sizeof *a);
  a->backend = MH_BACKEND_THREADS;
  a->repeat = 1;
  a->seed = MH_PI_DEFAULT_SEED;
  a->kernel = MH_PI_KERNEL_AUTO;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    /* "-1" is a (bad) number, not an option: let the number parser say so. */
    if (only_pos || arg[0] != '-' || arg[1] == 0 ||
        (arg[1] >= '0' && arg[1] <= '9')) {
      if (npos == 2) {
        mhc_error("too many arguments: '%s' (usage: manyhands pi [options] N [P])", arg);
        return -1;
      }
      pos[npos++] = arg;
      continue;
    }
    if (strcmp(arg, "--") == 0) {
      only_pos = 1;
      continue;
    }
    /* Split "--name=value" and "-xVALUE". */
    char name[32];
    const char *eq = NULL;
    if (arg[1] == '-') {
      const char *e = strchr(arg, '=');
      size_t len = e ? (size_t)(e - arg) : strlen(arg);
      if (len >= sizeof name) len = sizeof name - 1;
      memcpy(name, arg, len);
      name[len] = 0;
      if (e) eq = e + 1;
    } else {
      name[0] = '-';
      name[1] = arg[1];
      name[2] = 0;
      if (arg[2]) eq = arg + 2;
    }
#define IS(s, l) (strcmp(name, s) == 0 || strcmp(name, l) == 0)
    int flag = 1; /* options without a value must not get one */
    if (IS("-h", "--help")) {
      if (!eq) {
        pi_help();
        return 1;
      }
    } else if (IS("-V", "--version")) {
      if (!eq) {
        printf("manyhands %s (libmanyhands %s)\n", MH_VERSION_STRING,
               mh_version_string());
        return 1;
      }
    } else if (IS("-q", "--quiet")) {
      a->quiet = 1;
    } else if (IS("--json", "--json")) {
      a->json = 1;
    } else {
      flag = 0;
    }
    if (flag) {
      if (eq) {
        mhc_error("option '%s' takes no value", name);
        return -1;
      }
      continue;
    }
    const char *v;
    if (IS("-b", "--backend")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (strcmp(v, "threads") == 0)
        a->backend = MH_BACKEND_THREADS;
      else if (strcmp(v, "processes") == 0)
        a->backend = MH_BACKEND_PROCESSES;
      else if (strcmp(v, "mpi") == 0)
        a->backend = MH_BACKEND_MPI;
      else {
        mhc_error("unknown backend '%s': expected threads, processes or mpi", v);
        return -1;
      }
    } else if (IS("-r", "--repeat")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (mhc_parse_range(v, 1, 1000000, &a->repeat) != 0) {
        mhc_error("invalid --repeat '%s': expected a count from 1 to 1000000", v);
        return -1;
      }
      a->have_repeat = 1;
    } else if (IS("-s", "--seed")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (strcmp(v, "random") == 0) {
        a->seed_random = 1;
      } else if (mhc_parse_seed(v, &a->seed) != 0) {
        mhc_error("invalid --seed '%s': expected 0..18446744073709551615, "
                  "0x-hex, or 'random'", v);
        return -1;
      } else {
        a->seed_random = 0;
      }
    } else if (IS("--sweep", "--sweep")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (mhc_parse_list(v, a->sweep, MHC_MAX_WORKERS, &a->nsweep) != 0) {
        mhc_error("invalid --sweep '%s': expected worker counts from 1 to 4096 "
                  "like 1,2,4 or 1-8 or 1-4,8", v);
        return -1;
      }
    } else if (IS("--plot", "--plot")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (mhc_plot_kind(v) == 0) {
        mhc_error("invalid --plot '%s': the chart file must end in .svg or .png", v);
        return -1;
      }
      a->plot = v;
    } else if (IS("-k", "--kernel")) {
      if (!(v = opt_value(argc, argv, &i, eq, name))) return -1;
      if (mh_pi_kernel_parse(v, &a->kernel) != 0) {
        mhc_error("unknown kernel '%s': expected auto, scalar, avx2 or avx512", v);
        return -1;
      }
    } else {
      mhc_error("unknown option '%s' (try 'manyhands pi --help')", arg);
      return -1;
    }
#undef IS
  }
  if (npos == 0) {
    mhc_error("missing N, the number of points (usage: manyhands pi [options] N [P])");
    return -1;
  }
  if (mhc_parse_points(pos[0], &a->n) != 0) return usage_error_n(pos[0]);
  a->have_n = 1;
  if (npos == 2) {
    uint64_t p;
    if (mhc_parse_range(pos[1], 1, MHC_MAX_WORKERS, &p) != 0) {
      mhc_error("invalid number of workers '%s': expected a whole number from "
                "1 to 4096", pos[1]);
      return -1;
    }
    a->workers = (int)p;
  }
  if (a->nsweep && npos == 2) {
    mhc_error("give either P or --sweep, not both");
    return -1;
  }
  if (a->plot && !a->nsweep) {
    mhc_error("--plot draws the chart of a sweep: add --sweep LIST");
    return -1;
  }
  return 0;
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
static int resolve_kernel(pi_args_t *a) {
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

/* ---- progress bar ------------------------------------------------------- */

typedef struct progress {
  int enabled; /* stderr is a terminal and not --quiet */
  int shown;   /* a bar is on the screen and must be cleared */
  double start, last;
} progress_t;

static void progress_cb(uint64_t done, uint64_t total, void *arg) {
  progress_t *pg = arg;
  double t = now();
  /* Short runs never show a bar: it would only flicker. */
  if (!pg->enabled || t - pg->start < 1.0) return;
  if (pg->shown && t - pg->last < 0.1 && done < total) return;
  pg->last = t;
  pg->shown = 1;
  double frac = total ? (double)done / (double)total : 1.0;
  char bar[31];
  int fill = (int)(frac * 30);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  double rate = (double)done / (t - pg->start);
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  char left[32];
  if (eta < 60)
    snprintf(left, sizeof left, "%.0f s", eta);
  else if (eta < 3600)
    snprintf(left, sizeof left, "%d min %02d s", (int)(eta / 60), (int)eta % 60);
  else if (eta < 1e7)
    snprintf(left, sizeof left, "%d h %02d min", (int)(eta / 3600),
             (int)(eta / 60) % 60);
  else
    snprintf(left, sizeof left, "%.2g days", eta / 86400);
  fprintf(stderr, "\r[%s] %5.1f%%  %.3g points/s  %s left \033[K", bar,
          100.0 * frac, rate, left);
  fflush(stderr);
}

static void progress_clear(progress_t *pg) {
  if (pg->shown) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
    pg->shown = 0;
  }
}

/* ---- output ------------------------------------------------------------- */

static double points_per_second(const mh_pi_result_t *r) {
  return r->seconds > 0 ? (double)r->done / r->seconds : 0;
}

/* A double as JSON: non-finite values become null. */
static void json_num(const char *key, double v) {
  if (isfinite(v))
    printf(",\"%s\":%.17g", key, v);
  else
    printf(",\"%s\":null", key);
}

static void print_json(const pi_args_t *a, const mh_pi_result_t *r,
                       uint64_t seed, uint64_t rep, int interrupted,
                       const mhc_sweep_row_t *row, const mhc_amdahl_t *fit) {
  const char *kn = mh_pi_kernel_name(r->kernel);
  printf("{\"n\":%llu,\"done\":%llu,\"workers\":%d,\"backend\":\"%s\","
         "\"seed\":%llu,\"rep\":%llu,\"kernel\":\"%s\",\"inside\":%llu",
         (unsigned long long)r->n, (unsigned long long)r->done, r->workers,
         backend_name(r->backend), (unsigned long long)seed,
         (unsigned long long)rep, kn ? kn : "?",
         (unsigned long long)r->inside);
  if (r->backend == MH_BACKEND_MPI && g_lay_ranks > 0)
    printf(",\"ranks\":%d,\"threads_per_rank\":%d", g_lay_ranks,
           g_lay_threads);
  json_num("pi", r->done ? r->pi : NAN);
  json_num("stderr", r->done ? r->stderr_pi : NAN);
  json_num("abs_error", r->done ? r->abs_error : NAN);
  json_num("seconds", r->seconds);
  json_num("points_per_second", points_per_second(r));
  if (row) {
    json_num("sweep_seconds", row->seconds);
    json_num("speedup", row->speedup);
    json_num("efficiency", row->efficiency);
    json_num("karp_flatt", row->karp_flatt);
    json_num("amdahl_serial_fraction", fit && fit->ok ? fit->serial : NAN);
  }
  printf(",\"repeat\":%llu,\"interrupted\":%s}\n",
         (unsigned long long)a->repeat, interrupted ? "true" : "false");
  fflush(stdout);
}

static void print_human(const mh_pi_result_t *r, uint64_t seed) {
  if (r->done < r->n)
    printf("interrupted %llu of %llu points counted\n",
           (unsigned long long)r->done, (unsigned long long)r->n);
  if (r->done) {
    printf("pi          %.10f\n", r->pi);
    printf("stderr      %.10f  (standard error of the estimate)\n", r->stderr_pi);
    printf("|pi_hat-pi| %.10f  (%.2f standard errors)\n", r->abs_error,
           r->stderr_pi > 0 ? r->abs_error / r->stderr_pi : 0.0);
  } else {
    printf("pi          (no points counted)\n");
  }
  printf("inside      %llu\n", (unsigned long long)r->inside);
  printf("N           %llu\n", (unsigned long long)r->done);
  if (r->backend == MH_BACKEND_MPI && g_lay_ranks > 0) {
    char who[96];
    describe_workers(r->backend, r->workers, 0, who, sizeof who);
    printf("workers     %d (%s)\n", r->workers, who);
  } else {
    printf("workers     %d\n", r->workers);
  }
  printf("backend     %s\n", backend_name(r->backend));
  printf("kernel      %s\n", mh_pi_kernel_name(r->kernel));
  printf("seed        %llu\n", (unsigned long long)seed);
  printf("seconds     %.6f\n", r->seconds);
  printf("points/s    %.4g\n", points_per_second(r));
  fflush(stdout);
}

/* ---- running ------------------------------------------------------------ */

/* An executor for `workers` workers; for MPI no executor, but the layout
 * of the next runs: `ranks` ranks (0: all of the job's) x `workers` threads
 * each. */
static int make_executor(const pi_args_t *a, int ranks, int workers,
                         mh_executor_t **ex) {
  g_lay_ranks = g_lay_threads = 0;
#ifdef MH_WITH_MPI
  if (a->backend == MH_BACKEND_MPI) { /* ranks x threads: see pi_mpi.c */
    if (ranks <= 0) ranks = mhc_mpi_size();
    mhc_mpi_set_layout(ranks, workers);
    g_lay_ranks = ranks;
    g_lay_threads = workers;
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
  int rc = mh_executor_new(ex, &eo);
  if (rc == 0) return 0;
  if (rc == MH_ENOTSUP)
    mhc_error("the %s backend is not available in this build",
              backend_name(a->backend));
  else
    mhc_error("cannot start %d %s: %s", workers,
              worker_noun(a->backend, workers), mh_strerror(rc));
  return MHC_EXIT_FAIL;
}

static int run_one(mh_executor_t *ex, const pi_args_t *a, uint64_t seed,
                   progress_t *pg, mh_pi_result_t *res) {
  mh_pi_options_t o;
  mh_pi_options_init(&o);
  o.n = a->n;
  o.seed = seed;
  o.kernel = a->kernel;
  o.progress = progress_cb;
  o.progress_arg = pg;
  o.cancel = &g_cancel;
  pg->start = pg->last = now();
  memset(res, 0, sizeof *res);
#ifdef MH_WITH_MPI
  int rc = a->backend == MH_BACKEND_MPI ? mhc_mpi_pi_run(&o, res)
                                        : mh_pi_run(ex, &o, res);
#else
  int rc = mh_pi_run(ex, &o, res);
#endif
  progress_clear(pg);
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
static int run_plain(const pi_args_t *a, progress_t *pg) {
  int workers = a->workers ? a->workers : mh_cpu_count();
  if (workers > MHC_MAX_WORKERS) workers = MHC_MAX_WORKERS;
  mh_executor_t *ex;
  int code = make_executor(a, 0, workers, &ex);
  if (code) return code;
  code = MHC_EXIT_OK;
  int tutorial = a->repeat > 1 && !a->json;
  double t0 = now(), sum = 0, sumsq = 0, points = 0, busy = 0;
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
    if (a->json) {
      print_json(a, &res, seed, rep, interrupted, NULL, NULL);
    } else if (!tutorial || interrupted) {
      print_human(&res, seed);
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
  double total = now() - t0;
  mh_executor_free(ex);
  if (tutorial && code == MHC_EXIT_OK) {
    double mean = sum / (double)reps;
    double var = (sumsq - sum * mean) / (double)(reps - 1);
    char who[96];
    describe_workers(a->backend, workers * (g_lay_ranks > 0 ? g_lay_ranks : 1),
                     1, who, sizeof who);
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

static void print_table(const pi_args_t *a, const mhc_sweep_row_t *rows,
                        size_t n, const mhc_amdahl_t *fit, double base,
                        const mh_pi_result_t *first, mh_pi_kernel_t used) {
  printf("N %llu points, seed %llu, backend %s, kernel %s, %llu run%s per "
         "worker count%s\n",
         (unsigned long long)a->n, (unsigned long long)a->seed,
         backend_name(a->backend), mh_pi_kernel_name(used),
         (unsigned long long)a->repeat, a->repeat == 1 ? "" : "s",
         a->repeat == 1 ? "" : " (median time)");
  printf("pi %.10f, standard error %.10f, |pi_hat-pi| %.10f; inside %llu, "
         "the same for every worker count\n\n",
         first->pi, first->stderr_pi, first->abs_error,
         (unsigned long long)first->inside);
  int mpi = a->backend == MH_BACKEND_MPI;
  if (mpi)
    printf("workers = ranks x threads per rank; at each point the job's other "
           "ranks sit the run out\n");
  if (mpi) printf("%5s %7s ", "ranks", "threads");
  printf("%7s %11s %12s %8s %10s %10s\n", "workers", "seconds", "points/s",
         "speedup", "efficiency", "Karp-Flatt");
  for (size_t i = 0; i < n; i++) {
    const mhc_sweep_row_t *r = &rows[i];
    char kf[32];
    if (isfinite(r->karp_flatt))
      snprintf(kf, sizeof kf, "%.4f", r->karp_flatt);
    else
      snprintf(kf, sizeof kf, "-");
    if (mpi) printf("%5d %7d ", r->ranks, r->threads);
    printf("%7d %11.6f %12.4g %8.3f %9.1f%% %10s\n", r->workers, r->seconds,
           r->points_per_second, r->speedup, 100.0 * r->efficiency, kf);
  }
  printf("\n");
  if (fit->ok) {
    printf("Amdahl fit (least squares on T(p) = a + b/p): serial fraction "
           "f = %.4f\n", fit->serial);
    printf("  serial a = %.6f s, parallel b = %.6f s; speedup limit 1/f = ",
           fit->a, fit->b);
    if (fit->serial >= 1)
      printf("1 (no speedup measured)\n");
    else if (fit->serial > 0)
      printf("%.1f\n", 1.0 / fit->serial);
    else
      printf("none (no serial part measured)\n");
  } else {
    printf("Amdahl fit: needs at least two worker counts\n");
  }
  printf("speedup = T1 / T(p) with T1 = %.6f s (%s)\n", base,
         rows[0].workers == 1 ? (mpi ? "measured at 1 rank x 1 thread"
                                     : "measured at 1 worker")
         : fit->ok            ? "the fit's one-worker time"
                              : "assuming perfect scaling up to the first count");
  fflush(stdout);
}

/* The points of a sweep: worker counts of LIST on one machine; on MPI every
 * ranks x threads pair for 1..R ranks of the job and LIST threads per rank,
 * ordered by total workers, then by ranks.  Returns the count, or 0 when out
 * of memory. */
static size_t sweep_layout(const pi_args_t *a, mhc_sweep_row_t **out) {
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

/* --sweep: K runs at each worker count, a table, the fit, the chart. */
static int run_sweep(const pi_args_t *a, progress_t *pg) {
  mhc_sweep_row_t *rows = NULL;
  size_t n = sweep_layout(a, &rows);
  mh_pi_result_t *results = calloc(n * a->repeat, sizeof *results);
  double *times = calloc(a->repeat, sizeof *times);
  int *ps = calloc(n, sizeof *ps);
  double *ts = calloc(n, sizeof *ts);
  int code = MHC_EXIT_OK;
  size_t done_rows = 0;
  mh_pi_result_t partial;
  uint64_t partial_rep = 0;
  int interrupted = 0;
  if (!n || !rows || !results || !times || !ps || !ts) {
    mhc_error("out of memory");
    code = MHC_EXIT_FAIL;
    goto out;
  }
  for (size_t i = 0; i < n && code == MHC_EXIT_OK; i++) {
    mh_executor_t *ex;
    code = make_executor(a, rows[i].ranks, rows[i].threads, &ex);
    if (code) break;
    for (uint64_t rep = 0; rep < a->repeat; rep++) {
      mh_pi_result_t *res = &results[i * a->repeat + rep];
      int rc = run_one(ex, a, mh_pi_repeat_seed(a->seed, rep), pg, res);
      if (rc == MH_ECANCELED) {
        partial = *res;
        partial_rep = rep;
        interrupted = 1;
        code = MHC_EXIT_INTERRUPTED;
        break;
      }
      if (rc != 0) {
        code = run_failed(rc);
        break;
      }
      /* Every worker count must count the same points: the library's
       * promise, checked here where it is cheap. */
      if (res->inside != results[rep].inside) {
        mhc_error("the count inside differs between %d and %d workers (%llu "
                  "vs %llu): please report this bug", rows[0].workers,
                  rows[i].workers,
                  (unsigned long long)results[rep].inside,
                  (unsigned long long)res->inside);
        code = MHC_EXIT_FAIL;
        break;
      }
      times[rep] = res->seconds;
    }
    mh_executor_free(ex);
    if (code) break;
    rows[i].seconds = mhc_median(times, a->repeat);
    rows[i].points_per_second =
        rows[i].seconds > 0 ? (double)a->n / rows[i].seconds : 0;
    done_rows = i + 1;
  }
  if (code == MHC_EXIT_FAIL || done_rows == 0) {
    if (interrupted) {
      if (a->json)
        print_json(a, &partial, mh_pi_repeat_seed(a->seed, partial_rep),
                   partial_rep, 1, NULL, NULL);
      else
        print_human(&partial, mh_pi_repeat_seed(a->seed, partial_rep));
      mhc_error("interrupted");
    }
    goto out;
  }
  mhc_amdahl_t fit;
  for (size_t i = 0; i < done_rows; i++) {
    ps[i] = rows[i].workers;
    ts[i] = rows[i].seconds;
  }
  mhc_amdahl_fit(ps, ts, done_rows, &fit);
  double base = mhc_sweep_fill(rows, done_rows, &fit);
  if (a->json) {
    for (size_t i = 0; i < done_rows; i++)
      for (uint64_t rep = 0; rep < a->repeat; rep++) {
        if (a->backend == MH_BACKEND_MPI) {
          g_lay_ranks = rows[i].ranks;
          g_lay_threads = rows[i].threads;
        }
        print_json(a, &results[i * a->repeat + rep],
                   mh_pi_repeat_seed(a->seed, rep), rep, 0, &rows[i], &fit);
      }
  } else {
    print_table(a, rows, done_rows, &fit, base, &results[0], results[0].kernel);
  }
  if (interrupted) {
    if (a->json)
      print_json(a, &partial, mh_pi_repeat_seed(a->seed, partial_rep),
                 partial_rep, 1, NULL, NULL);
    else {
      printf("\n");
      print_human(&partial, mh_pi_repeat_seed(a->seed, partial_rep));
    }
    mhc_error("interrupted");
    goto out;
  }
  if (a->plot) {
    char title[256];
    snprintf(title, sizeof title, "manyhands pi: speedup, N = %llu, %s, kernel %s",
             (unsigned long long)a->n, backend_name(a->backend),
             mh_pi_kernel_name(results[0].kernel));
    int prc = mhc_plot_sweep(a->plot, rows, done_rows, &fit, title);
    if (prc < 0) code = MHC_EXIT_FAIL;
    /* prc == 1: gnuplot is missing; the message is out, the run succeeded.
     * Ctrl-C while gnuplot draws reaches gnuplot too (same process group). */
    if (g_cancel) {
      mhc_error("interrupted");
      code = MHC_EXIT_INTERRUPTED;
    }
  }
out:
  free(rows);
  free(results);
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
  pi_args_t *a = calloc(1, sizeof *a);
  if (!a) {
    mhc_error("out of memory");
    return MHC_EXIT_FAIL;
  }
  int code = parse_args(argc, argv, a);
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
  sigaction(SIGINT, &sa, NULL);

  progress_t pg;
  memset(&pg, 0, sizeof pg);
  pg.enabled = !a->quiet && isatty(STDERR_FILENO);
  code = a->nsweep ? run_sweep(a, &pg) : run_plain(a, &pg);
out:
  free(a);
  return code;
}
