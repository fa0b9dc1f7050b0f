/* SPDX-License-Identifier: MIT */
/* sweep.c - the maths of a speedup sweep: Amdahl fit, Karp-Flatt, medians.
 *
 * Pure functions on plain arrays, no I/O and no state, so the tests feed them
 * synthetic timings with a known serial fraction and check the answers.
 *
 * Amdahl's law says a job whose serial part is a fraction f of its one-worker
 * time T1 takes T(p) = T1 * (f + (1 - f) / p) on p workers.  Written as
 * T(p) = a + b * (1/p) it is a straight line in 1/p, so an ordinary least
 * squares fit of the measured times gives a (serial seconds) and b (parallel
 * seconds), and f = a / (a + b), without needing a one-worker run at all.
 * Karp and Flatt's metric inverts the law for a single measured speedup s:
 * e = (1/s - 1/p) / (1 - 1/p); if e grows with p the loss is overhead that
 * grows with the worker count, not a fixed serial part.
 */
#include <math.h>
#include <stdlib.h>

#include "cli.h"

int mhc_amdahl_fit(const int *p, const double *t, size_t n, mhc_amdahl_t *fit) {
  fit->ok = 0;
  fit->a = fit->b = fit->t1 = fit->serial = NAN;
  if (n < 2) return -1;
  double mx = 0, mt = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < 1 || !(t[i] > 0) || !isfinite(t[i])) return -1;
    mx += 1.0 / p[i];
    mt += t[i];
  }
  mx /= (double)n;
  mt /= (double)n;
  /* Centred sums keep the fit accurate when the times are all alike. */
  double sxx = 0, sxt = 0;
  for (size_t i = 0; i < n; i++) {
    double dx = 1.0 / p[i] - mx;
    sxx += dx * dx;
    sxt += dx * (t[i] - mt);
  }
  if (!(sxx > 0)) return -1; /* all worker counts equal */
  double b = sxt / sxx;
  double a = mt - b * mx;
  if (!(a + b > 0)) return -1;
  fit->a = a;
  fit->b = b;
  fit->t1 = a + b;
  fit->serial = a / (a + b);
  fit->ok = 1;
  return 0;
}

double mhc_amdahl_speedup(double f, double p) {
  double d = f + (1.0 - f) / p;
  return d > 0 ? 1.0 / d : INFINITY;
}

double mhc_karp_flatt(double speedup, int p) {
  if (p <= 1 || !(speedup > 0)) return NAN;
  double ip = 1.0 / p;
  return (1.0 / speedup - ip) / (1.0 - ip);
}

double mhc_sweep_fill(mhc_sweep_row_t *rows, size_t n, const mhc_amdahl_t *fit) {
  if (n == 0) return NAN;
  double base;
  if (rows[0].workers == 1)
    base = rows[0].seconds;
  else if (fit && fit->ok)
    base = fit->t1;
  else
    base = rows[0].workers * rows[0].seconds;
  for (size_t i = 0; i < n; i++) {
    mhc_sweep_row_t *r = &rows[i];
    r->speedup = r->seconds > 0 ? base / r->seconds : NAN;
    r->speedup_min = r->seconds_max > 0 ? base / r->seconds_max : r->speedup;
    r->speedup_max = r->seconds_min > 0 ? base / r->seconds_min : r->speedup;
    r->efficiency = r->speedup / r->workers;
    r->karp_flatt = mhc_karp_flatt(r->speedup, r->workers);
  }
  return base;
}

int mhc_sweep_beyond_cpus(const mhc_sweep_row_t *rows, size_t n, int cpus) {
  int worst = -1;
  for (size_t i = 0; i < n; i++)
    if (cpus > 0 && rows[i].speedup > cpus &&
        (worst < 0 || rows[i].speedup > rows[worst].speedup))
      worst = (int)i;
  return worst;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double mhc_median(double *v, size_t n) {
  if (n == 0) return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
