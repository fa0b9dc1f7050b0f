/* SPDX-License-Identifier: MIT */
/* cli.h - declarations shared by the files of the manyhands command.
 *
 * The command is a client of the library like any other program: it includes
 * only the public header <manyhands.h>.  Its own names carry the mhc_ prefix.
 * parse.c and sweep.c are pure functions (no I/O, no global state), so the
 * tests compile them straight into test-cli and check them on synthetic data.
 */
#ifndef MHC_CLI_H
#define MHC_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <manyhands.h>

/* Exit codes of the command (documented in docs/manyhands.1). */
enum {
  MHC_EXIT_OK = 0,
  MHC_EXIT_FAIL = 1,         /* the run could not be done here */
  MHC_EXIT_USAGE = 2,        /* the command line is wrong */
  MHC_EXIT_INTERRUPTED = 130 /* SIGINT: 128 + 2, as shells report it */
};

/* The largest N: 2^63 - 1, so that counts fit a signed 64-bit integer too. */
#define MHC_MAX_POINTS UINT64_C(0x7fffffffffffffff)
/* The most workers an executor accepts. */
#define MHC_MAX_WORKERS 4096

/* ---- parse.c ---------------------------------------------------------- */

/* A number of points: "10000000", "1_000_000", "1e7", "2.5e6", "10^7",
 * "10**7".  The value is computed exactly in integers (never through a
 * double), must be a whole number and lie in 1 .. MHC_MAX_POINTS.
 * Returns 0 or -1. */
int mhc_parse_points(const char *s, uint64_t *out);

/* Plain decimal digits (no sign, no spaces) with value in lo .. hi.
 * Returns 0 or -1. */
int mhc_parse_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* A seed: decimal or 0x-prefixed hexadecimal, 0 .. 2^64 - 1.  0 or -1. */
int mhc_parse_seed(const char *s, uint64_t *out);

/* A sweep list such as "1,2,4" or "1-8" or "1-4,8,16": worker counts in
 * 1 .. MHC_MAX_WORKERS, returned sorted and without duplicates in
 * out[0 .. *n).  Returns 0 or -1 (syntax, range, or more than `cap`). */
int mhc_parse_list(const char *s, int *out, size_t cap, size_t *n);

/* ---- sweep.c: the maths of a speedup sweep ------------------------------ */

/* Amdahl's law fitted by least squares to measured times: the model is
 * T(p) = a + b / p (a = serial time, b = parallelisable time at one worker),
 * linear in 1/p.  serial = a / (a + b) is the serial fraction f and
 * t1 = a + b the modelled one-worker time. */
typedef struct mhc_amdahl {
  int ok;        /* 0 when fewer than two distinct worker counts */
  double a, b;   /* seconds */
  double t1;     /* a + b */
  double serial; /* a / (a + b): Amdahl's serial fraction */
} mhc_amdahl_t;

/* Fit over n points (p[i], t[i]).  Returns 0, or -1 (and fit->ok = 0) when
 * there are fewer than two distinct p or a time is not positive. */
int mhc_amdahl_fit(const int *p, const double *t, size_t n, mhc_amdahl_t *fit);

/* Amdahl's speedup with serial fraction f on p workers: 1 / (f + (1-f)/p). */
double mhc_amdahl_speedup(double f, double p);

/* The Karp-Flatt metric: the serial fraction that explains a measured
 * speedup s on p workers, e = (1/s - 1/p) / (1 - 1/p).  NaN for p = 1. */
double mhc_karp_flatt(double speedup, int p);

/* One line of the sweep table. */
typedef struct mhc_sweep_row {
  int workers;       /* ranks x threads */
  int ranks;         /* MPI ranks taking part (1 off MPI) */
  int threads;       /* threads of each rank (= workers off MPI) */
  double seconds;    /* median over the repetitions */
  double seconds_min, seconds_max; /* their spread (0: not known) */
  int runs;          /* repetitions measured */
  double points_per_second;
  double speedup;    /* t_base / seconds */
  double speedup_min, speedup_max; /* t_base / seconds_max, / seconds_min */
  double efficiency; /* speedup / workers */
  double karp_flatt; /* NaN at one worker */
} mhc_sweep_row_t;

/* Fill speedup, efficiency and Karp-Flatt in rows[0 .. n) (sorted by
 * workers, seconds and points_per_second set) and return the one-worker time
 * they are measured against: the measured time at one worker when the sweep
 * has it, else the fitted t1 when `fit` is ok, else workers * seconds of the
 * first row (perfect scaling up to it assumed). */
/* speedup_min/max come from seconds_max/min when those are set, else they
 * equal the speedup. */
double mhc_sweep_fill(mhc_sweep_row_t *rows, size_t n, const mhc_amdahl_t *fit);

/* The row whose speedup exceeds `cpus` by the most, or -1 when none does:
 * more speedup than CPUs means the runs were disturbed (the one-worker time
 * slowed by load), not that the job scales past the machine. */
int mhc_sweep_beyond_cpus(const mhc_sweep_row_t *rows, size_t n, int cpus);

/* Median of n values (sorts `v` in place).  NaN for n = 0. */
double mhc_median(double *v, size_t n);

/* ---- plot.c ------------------------------------------------------------ */

/* Kind of chart from the file name: 1 = SVG, 2 = PNG, 0 = neither. */
int mhc_plot_kind(const char *path);

/* Why `path` cannot name a chart (a static message), or NULL when it can:
 * a non-empty file name NAME.svg or NAME.png without control characters. */
const char *mhc_plot_bad_name(const char *path);

/* Open `path` for writing, creating it if it does not exist (*created = 1
 * then), and close it again: proof that gnuplot will be able to write it.
 * Returns 0 or -errno (-EINVAL: not a regular file). */
int mhc_plot_probe(const char *path, int *created);

/* The full path of `prog` found on PATH (in buf), or NULL. */
const char *mhc_find_on_path(const char *prog, char *buf, size_t size);

/* Draw the speedup chart of a sweep into `path` with gnuplot: the measured
 * medians with min..max error bars, the ideal line, the Amdahl fit (dashed,
 * drawn last so the measured line never hides it) and, when cpus > 0, a
 * mark at the CPU count.  Returns 0,
 * 1 when gnuplot is not installed (a message was printed), -1 when it
 * failed (a message was printed). */
int mhc_plot_sweep(const char *path, const mhc_sweep_row_t *rows, size_t n,
                   const mhc_amdahl_t *fit, const char *title, int cpus);

/* Run gnuplot with the script `write` prints (to its standard input) and
 * check that it drew `path`.  Returns 0, 1 when gnuplot is not installed,
 * -1 when it failed (a message was printed either way). */
int mhc_gnuplot(const char *path, void (*write)(FILE *f, void *arg), void *arg);

/* Write s as a gnuplot single-quoted string. */
void mhc_plot_put_quoted(FILE *f, const char *s);

/* ---- timeline.c -------------------------------------------------------- */

/* Draw `chart` (.svg or .png) from the trace file `trace` (as written by
 * mh_trace_stop): one bar per worker over time, busy slices filled, the
 * idle tail after each worker's last task marked.  Same returns as
 * mhc_gnuplot. */
int mhc_timeline_draw(const char *trace, const char *chart, const char *title);

/* ---- pi_args.c: the command line of `manyhands pi` ------------------- */

/* What `manyhands pi` was asked to do.  Filled by mhc_pi_parse, read-only
 * after it (pi.c may only resolve the kernel and draw a random seed). */
typedef struct mhc_pi_args {
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
  int plot_created; /* the parser created the chart file (remove on failure) */
  const char *trace;    /* --trace FILE.json */
  const char *timeline; /* --timeline FILE.svg|png */
  int timeline_created; /* the parser created the timeline file */
  int json;
  int quiet;
  mh_pi_kernel_t kernel;
} mhc_pi_args_t;

/* Parse argv[1 .. argc) of `manyhands pi`.  Returns 0 to run, 1 when help
 * or the version was printed, -1 on a usage error (already reported). */
int mhc_pi_parse(int argc, char **argv, mhc_pi_args_t *a);

/* ---- pi.c: running ------------------------------------------------------ */

int mhc_cmd_pi(int argc, char **argv);

/* ---- pi_mpi.c: --backend mpi in manyhands-mpi (MH_WITH_MPI only) ---- */
#ifdef MH_WITH_MPI
int mhc_mpi_start(void);                /* 0 or an exit code */
/* The next runs use ranks 0 .. ranks-1 (all when ranks <= 0) with `threads`
 * threads each; the other ranks sit them out. */
void mhc_mpi_set_layout(int ranks, int threads);
int mhc_mpi_size(void);                 /* ranks in the job */
int mhc_mpi_rank(void);                 /* this rank (0 prints and draws) */
int mhc_mpi_pi_run(const mh_pi_options_t *opts, mh_pi_result_t *res);
#endif

/* ---- report.c: everything the command writes ------------------------------
 * Every other file reports through here and report.c calls no other file of
 * the command, so the graph of calls has no circle.  A new kind of report
 * (a trace, a timeline) adds a printer here taking mhc_run_info_t. */

/* Print "manyhands: <message>" on stderr. */
void mhc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "manyhands X (libmanyhands Y)" on stdout. */
void mhc_print_version(void);

double mhc_now(void); /* monotonic seconds */
const char *mhc_backend_name(mh_backend_t b);
/* What `count` workers of a backend are called: "thread", "processes"... */
const char *mhc_worker_noun(mh_backend_t b, int count);

/* How the workers of a run are laid out over MPI ranks: `ranks` ranks
 * taking part with `threads` threads each; ranks = 0 off MPI. */
typedef struct mhc_layout {
  int ranks;
  int threads;
} mhc_layout_t;

/* "4 threads", or for MPI "2 MPI ranks x 2 threads" (with_total adds
 * " (4 threads)"). */
void mhc_describe_workers(mh_backend_t b, int workers, const mhc_layout_t *lay,
                          int with_total, char *buf, size_t len);

/* What a printer needs to know about one run besides its result. */
typedef struct mhc_run_info {
  uint64_t seed;               /* the seed this run used */
  uint64_t rep;                /* its repetition (--repeat) */
  uint64_t repeat;             /* runs asked for */
  int interrupted;             /* stopped by Ctrl-C */
  mhc_layout_t layout;         /* ranks x threads (ranks 0 off MPI) */
  const mhc_sweep_row_t *row;  /* a sweep's row, or NULL */
  const mhc_amdahl_t *fit;     /* a sweep's fit, or NULL */
} mhc_run_info_t;

/* One run as one JSON object on one line of stdout. */
void mhc_print_json(const mhc_run_info_t *info, const mh_pi_result_t *r);
/* One run as labelled lines on stdout. */
void mhc_print_human(const mhc_run_info_t *info, const mh_pi_result_t *r);

/* The progress bar on stderr.  Shown only when enabled (a terminal, not
 * --quiet) and the run has lasted a second. */
typedef struct mhc_progress {
  int enabled; /* stderr is a terminal and not --quiet */
  int shown;   /* a bar is on the screen and must be cleared */
  int cols;    /* the terminal's width, read again after SIGWINCH */
  double start, last;
} mhc_progress_t;

/* Set up the bar (and, when enabled, its SIGWINCH handler). */
void mhc_progress_init(mhc_progress_t *pg, int enabled);
/* The bar's text for a terminal `cols` wide: at most cols - 1 characters
 * (parts are dropped as it narrows: the speed, the time left, the bar).
 * Returns its length. */
size_t mhc_progress_format(char *buf, size_t size, int cols, double frac,
                           double rate, double eta);
void mhc_progress_start(mhc_progress_t *pg); /* a run begins now */
void mhc_progress_cb(uint64_t done, uint64_t total, void *pg); /* mh_pi_options_t.progress */
void mhc_progress_clear(mhc_progress_t *pg); /* wipe the bar, if shown */

/* The table of a sweep: rows[0 .. n), measured against `base` seconds,
 * `first` the result of a run (they all count the same points), `runs`
 * the runs per worker count. */
void mhc_print_table(const mhc_pi_args_t *a, uint64_t runs,
                     const mhc_sweep_row_t *rows, size_t n,
                     const mhc_amdahl_t *fit, double base,
                     const mh_pi_result_t *first);

#endif /* MHC_CLI_H */
