/* SPDX-License-Identifier: MIT */
/* report.c - everything `manyhands` writes: errors, the progress bar, and
 * the human, JSON and table printers of a run's results.
 *
 * Every other file of the command reports through here, and this file calls
 * no other file of the command (it only reads the types of cli.h), so the
 * call graph of cli/ has no circle: main -> pi -> {pi_args, report, sweep,
 * plot, pi_mpi}; pi_args -> {parse, plot, report}; plot, pi_mpi -> report.
 *
 * A printer takes the result and an mhc_run_info_t (seed, repetition, MPI
 * layout, sweep row) by pointer: no global says what is being printed.  A
 * new report (a trace, a timeline) is one more function of that shape.
 *
 * Results go to stdout, messages and the progress bar to stderr; stdout is
 * flushed before every message so the two keep their order on a terminal.
 * Single-threaded: the progress callback runs on the thread that called
 * mh_pi_run.  The one piece of shared state is rep_winch, written only by
 * the SIGWINCH handler (set) and the progress callback (clear).
 */
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- messages ------------------------------------------------------------ */

void mhc_error(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("manyhands: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void mhc_print_version(void) {
  printf("manyhands %s (libmanyhands %s)\n", MH_VERSION_STRING,
         mh_version_string());
}

/* ---- names --------------------------------------------------------------- */

double mhc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *mhc_backend_name(mh_backend_t b) {
  switch (b) {
    case MH_BACKEND_THREADS: return "threads";
    case MH_BACKEND_PROCESSES: return "processes";
    case MH_BACKEND_MPI: return "mpi";
  }
  return "?";
}

const char *mhc_worker_noun(mh_backend_t b, int count) {
  switch (b) {
    case MH_BACKEND_THREADS: return count == 1 ? "thread" : "threads";
    case MH_BACKEND_PROCESSES: return count == 1 ? "process" : "processes";
    case MH_BACKEND_MPI: return count == 1 ? "thread" : "threads";
  }
  return "workers";
}

void mhc_describe_workers(mh_backend_t b, int workers, const mhc_layout_t *lay,
                          int with_total, char *buf, size_t len) {
  if (b == MH_BACKEND_MPI && lay && lay->ranks > 0) {
    int n = snprintf(buf, len, "%d MPI rank%s x %d thread%s", lay->ranks,
                     lay->ranks == 1 ? "" : "s", lay->threads,
                     lay->threads == 1 ? "" : "s");
    if (with_total && lay->ranks > 1 && lay->threads > 1 && n > 0 &&
        (size_t)n < len)
      snprintf(buf + n, len - (size_t)n, " (%d threads)", workers);
  } else {
    snprintf(buf, len, "%d %s", workers, mhc_worker_noun(b, workers));
  }
}

/* ---- progress bar ------------------------------------------------------------ */

/* The bar is one line that is redrawn in place with "\r": it must never be
 * wider than the terminal, or every redraw wraps and leaves a new line
 * behind.  The width comes from TIOCGWINSZ on stderr (COLUMNS, then 80, when
 * the terminal does not know its size, as a fresh pty does), is read again
 * after SIGWINCH, and the text stops one column short of the edge so that no
 * terminal's automatic margin ever moves the cursor to the next line. */

/* Set by the SIGWINCH handler; the next progress call reads the new width.
 * Atomic, not just volatile: the handler may run on any thread of the
 * process (a worker's), and a lock-free atomic is safe in a handler. */
static atomic_int rep_winch;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the SIGWINCH flag must be lock-free");

static void rep_on_winch(int sig) {
  (void)sig;
  atomic_store_explicit(&rep_winch, 1, memory_order_relaxed);
}

static int rep_columns(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  const char *env = getenv("COLUMNS");
  if (env && *env) {
    char *end;
    long c = strtol(env, &end, 10);
    if (*end == 0 && c > 0 && c < 100000) return (int)c;
  }
  return 80;
}

void mhc_progress_init(mhc_progress_t *pg, int enabled) {
  memset(pg, 0, sizeof *pg);
  pg->enabled = enabled;
  if (!enabled) return;
  pg->cols = rep_columns();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = rep_on_winch;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGWINCH, &sa, NULL);
}

void mhc_progress_start(mhc_progress_t *pg) { pg->start = pg->last = mhc_now(); }

/* "3 s", "2 min 05 s", "1 h 02 min", "3.2e+02 days". */
static void rep_eta(char *buf, size_t size, double eta) {
  if (eta < 60)
    snprintf(buf, size, "%.0f s", eta);
  else if (eta < 3600)
    snprintf(buf, size, "%d min %02d s", (int)(eta / 60), (int)eta % 60);
  else if (eta < 1e7)
    snprintf(buf, size, "%d h %02d min", (int)(eta / 3600), (int)(eta / 60) % 60);
  else
    snprintf(buf, size, "%.2g days", eta / 86400);
}

/* The bar's widths: at most this many cells, and no bar below the least. */
enum { REP_BAR_MAX = 40, REP_BAR_MIN = 10 };

size_t mhc_progress_format(char *buf, size_t size, int cols, double frac,
                           double rate, double eta) {
  char pct[16], speed[48], left[48];
  if (!(frac >= 0)) frac = 0;
  if (frac > 1) frac = 1;
  snprintf(pct, sizeof pct, "%5.1f%%", 100.0 * frac);
  snprintf(speed, sizeof speed, "  %.3g points/s", rate);
  rep_eta(left, sizeof left, eta);
  snprintf(left + strlen(left), sizeof left - strlen(left), " left");
  int room = cols - 1; /* never the last column */
  buf[0] = 0;
  if (size == 0) return 0;
  /* Drop the speed first, then the time left, then the bar itself. */
  for (int drop = 0; drop < 3; drop++) {
    const char *sp = drop >= 1 ? "" : speed;
    int has_left = drop < 2;
    int text = (int)strlen(pct) + (int)strlen(sp) +
               (has_left ? 2 + (int)strlen(left) : 0);
    int bar = room - 3 - text; /* "[" bar "] " */
    if (bar > REP_BAR_MAX) bar = REP_BAR_MAX;
    if (bar < REP_BAR_MIN) continue;
    char cells[REP_BAR_MAX + 1];
    int fill = (int)(frac * bar);
    for (int k = 0; k < bar; k++) cells[k] = k < fill ? '#' : '.';
    cells[bar] = 0;
    snprintf(buf, size, "[%s] %s%s%s%s", cells, pct, sp, has_left ? "  " : "",
             has_left ? left : "");
    return strlen(buf);
  }
  if ((int)strlen(pct) <= room) snprintf(buf, size, "%s", pct);
  return strlen(buf);
}

void mhc_progress_cb(uint64_t done, uint64_t total, void *arg) {
  mhc_progress_t *pg = arg;
  double t = mhc_now();
  /* Short runs never show a bar: it would only flicker. */
  if (!pg->enabled || t - pg->start < 1.0) return;
  int resized = 0;
  if (atomic_exchange_explicit(&rep_winch, 0, memory_order_relaxed)) {
    pg->cols = rep_columns();
    resized = 1;
  }
  if (pg->shown && !resized && t - pg->last < 0.1 && done < total) return;
  pg->last = t;
  pg->shown = 1;
  double frac = total ? (double)done / (double)total : 1.0;
  double rate = (double)done / (t - pg->start);
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  char line[512];
  mhc_progress_format(line, sizeof line, pg->cols, frac, rate, eta);
  /* "\r" to the line's start, the text, then erase what a longer line left
   * (the escape takes no column). */
  fprintf(stderr, "\r%s\033[K", line);
  fflush(stderr);
}

void mhc_progress_clear(mhc_progress_t *pg) {
  if (pg->shown) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
    pg->shown = 0;
  }
}

/* ---- one run ---------------------------------------------------------------- */

static double rep_points_per_second(const mh_pi_result_t *r) {
  return r->seconds > 0 ? (double)r->done / r->seconds : 0;
}

/* A double as a JSON member: non-finite values become null. */
static void rep_json_num(const char *key, double v) {
  if (isfinite(v))
    printf(",\"%s\":%.17g", key, v);
  else
    printf(",\"%s\":null", key);
}

void mhc_print_json(const mhc_run_info_t *in, const mh_pi_result_t *r) {
  const char *kn = mh_pi_kernel_name(r->kernel);
  /* The seed also as a string: JSON tools that read numbers as doubles (jq
   * 1.6, JavaScript) round a 64-bit seed, and the rounded seed replays
   * another stream; "seed_hex" goes back through --seed as it is. */
  printf("{\"n\":%llu,\"done\":%llu,\"workers\":%d,\"backend\":\"%s\","
         "\"seed\":%llu,\"seed_hex\":\"0x%llx\",\"rep\":%llu,"
         "\"kernel\":\"%s\",\"inside\":%llu",
         (unsigned long long)r->n, (unsigned long long)r->done, r->workers,
         mhc_backend_name(r->backend), (unsigned long long)in->seed,
         (unsigned long long)in->seed, (unsigned long long)in->rep, kn ? kn : "?",
         (unsigned long long)r->inside);
  if (r->backend == MH_BACKEND_MPI && in->layout.ranks > 0)
    printf(",\"ranks\":%d,\"threads_per_rank\":%d", in->layout.ranks,
           in->layout.threads);
  rep_json_num("pi", r->done ? r->pi : NAN);
  rep_json_num("stderr", r->done ? r->stderr_pi : NAN);
  rep_json_num("abs_error", r->done ? r->abs_error : NAN);
  rep_json_num("seconds", r->seconds);
  rep_json_num("points_per_second", rep_points_per_second(r));
  if (in->row) {
    rep_json_num("sweep_seconds", in->row->seconds);
    rep_json_num("seconds_min", in->row->seconds_min);
    rep_json_num("seconds_max", in->row->seconds_max);
    printf(",\"runs\":%d", in->row->runs);
    rep_json_num("speedup", in->row->speedup);
    rep_json_num("speedup_min", in->row->speedup_min);
    rep_json_num("speedup_max", in->row->speedup_max);
    rep_json_num("efficiency", in->row->efficiency);
    rep_json_num("karp_flatt", in->row->karp_flatt);
    rep_json_num("amdahl_serial_fraction",
                 in->fit && in->fit->ok ? in->fit->serial : NAN);
  }
  printf(",\"reruns\":%llu", (unsigned long long)r->reruns);
  printf(",\"repeat\":%llu,\"interrupted\":%s}\n",
         (unsigned long long)in->repeat, in->interrupted ? "true" : "false");
  fflush(stdout);
}

void mhc_print_human(const mhc_run_info_t *in, const mh_pi_result_t *r) {
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
  if (r->backend == MH_BACKEND_MPI && in->layout.ranks > 0) {
    char who[96];
    mhc_describe_workers(r->backend, r->workers, &in->layout, 0, who, sizeof who);
    printf("workers     %d (%s)\n", r->workers, who);
  } else {
    printf("workers     %d\n", r->workers);
  }
  printf("backend     %s\n", mhc_backend_name(r->backend));
  printf("kernel      %s\n", mh_pi_kernel_name(r->kernel));
  printf("seed        %llu\n", (unsigned long long)in->seed);
  printf("seconds     %.6f\n", r->seconds);
  printf("points/s    %.4g\n", rep_points_per_second(r));
  if (r->reruns) /* only when a worker died: the count is still exact */
    printf("reruns      %llu  (tasks run again after their worker died)\n",
           (unsigned long long)r->reruns);
  fflush(stdout);
}

/* ---- a sweep --------------------------------------------------------------------- */

void mhc_print_table(const mhc_pi_args_t *a, uint64_t runs,
                     const mhc_sweep_row_t *rows, size_t n,
                     const mhc_amdahl_t *fit, double base,
                     const mh_pi_result_t *first) {
  printf("N %llu points, seed %llu, backend %s, kernel %s, %llu run%s per "
         "worker count%s after a warm-up run\n",
         (unsigned long long)a->n, (unsigned long long)a->seed,
         mhc_backend_name(a->backend), mh_pi_kernel_name(first->kernel),
         (unsigned long long)runs, runs == 1 ? "" : "s",
         runs == 1 ? "" : " (median time, interleaved)");
  printf("pi %.10f, standard error %.10f, |pi_hat-pi| %.10f; inside %llu, "
         "the same for every worker count\n\n",
         first->pi, first->stderr_pi, first->abs_error,
         (unsigned long long)first->inside);
  int mpi = a->backend == MH_BACKEND_MPI;
  if (mpi)
    printf("workers = ranks x threads per rank; at each point the job's other "
           "ranks sit the run out\n");
  if (mpi) printf("%5s %7s ", "ranks", "threads");
  printf("%7s %11s %11s %11s %12s %8s %10s %10s\n", "workers", "seconds",
         "min", "max", "points/s", "speedup", "efficiency", "Karp-Flatt");
  for (size_t i = 0; i < n; i++) {
    const mhc_sweep_row_t *r = &rows[i];
    char kf[32];
    if (isfinite(r->karp_flatt))
      snprintf(kf, sizeof kf, "%.4f", r->karp_flatt);
    else
      snprintf(kf, sizeof kf, "-");
    if (mpi) printf("%5d %7d ", r->ranks, r->threads);
    printf("%7d %11.6f %11.6f %11.6f %12.4g %8.3f %9.1f%% %10s\n", r->workers,
           r->seconds, r->seconds_min, r->seconds_max, r->points_per_second,
           r->speedup, 100.0 * r->efficiency, kf);
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
  } else if (n < 2 || rows[0].workers == rows[n - 1].workers) {
    printf("Amdahl fit: needs at least two worker counts\n");
  } else {
    /* Noisy times (a loaded machine) can fit no T(p) = a + b/p with
     * T(1) > 0: say so rather than blame the worker counts. */
    printf("Amdahl fit: none (these times fit no T(p) = a + b/p with "
           "T(1) > 0)\n");
  }
  printf("speedup = T1 / T(p) with T1 = %.6f s (%s)\n", base,
         rows[0].workers == 1 ? (mpi ? "measured at 1 rank x 1 thread"
                                     : "measured at 1 worker")
         : fit->ok            ? "the fit's one-worker time"
                              : "assuming perfect scaling up to the first count");
  fflush(stdout);
}
