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
  double points_per_second;
  double speedup;    /* t_base / seconds */
  double efficiency; /* speedup / workers */
  double karp_flatt; /* NaN at one worker */
} mhc_sweep_row_t;

/* Fill speedup, efficiency and Karp-Flatt in rows[0 .. n) (sorted by
 * workers, seconds and points_per_second set) and return the one-worker time
 * they are measured against: the measured time at one worker when the sweep
 * has it, else the fitted t1 when `fit` is ok, else workers * seconds of the
 * first row (perfect scaling up to it assumed). */
double mhc_sweep_fill(mhc_sweep_row_t *rows, size_t n, const mhc_amdahl_t *fit);

/* Median of n values (sorts `v` in place).  NaN for n = 0. */
double mhc_median(double *v, size_t n);

/* ---- plot.c ------------------------------------------------------------ */

/* Kind of chart from the file name: 1 = SVG, 2 = PNG, 0 = neither. */
int mhc_plot_kind(const char *path);

/* The full path of `prog` found on PATH (in buf), or NULL. */
const char *mhc_find_on_path(const char *prog, char *buf, size_t size);

/* Draw the speedup chart of a sweep into `path` with gnuplot.  Returns 0,
 * 1 when gnuplot is not installed (a message was printed), -1 when it
 * failed (a message was printed). */
int mhc_plot_sweep(const char *path, const mhc_sweep_row_t *rows, size_t n,
                   const mhc_amdahl_t *fit, const char *title);

/* ---- pi.c / main.c ------------------------------------------------------ */

int mhc_cmd_pi(int argc, char **argv);

/* ---- pi_mpi.c: --backend mpi in manyhands-mpi (MH_WITH_MPI only) ---- */
#ifdef MH_WITH_MPI
int mhc_mpi_start(void);                /* 0 or an exit code */
/* The next runs use ranks 0 .. ranks-1 (all when ranks <= 0) with `threads`
 * threads each; the other ranks sit them out. */
void mhc_mpi_set_layout(int ranks, int threads);
int mhc_mpi_size(void);                 /* ranks in the job */
int mhc_mpi_pi_run(const mh_pi_options_t *opts, mh_pi_result_t *res);
#endif

/* Print "manyhands: <message>" on stderr. */
void mhc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* MHC_CLI_H */
