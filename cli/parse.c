/* SPDX-License-Identifier: MIT */
/* parse.c - exact parsing of the numbers on the command line.
 *
 * Pure functions: no I/O, no state.  Counts of points are parsed in integer
 * arithmetic only, because a double holds 53 bits and 2^63 - 1 has 63: going
 * through strtod would silently round "9223372036854775807" up to 2^63.
 * Every function rejects what it does not fully understand (signs, spaces,
 * trailing junk), so that a typo is a usage error rather than a surprise.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Longest digit string a number may have; longer ones are rejected. */
#define MHC_MAX_DIGITS 512

/* Read a group of decimal digits in which single underscores may separate
 * digits ("1_000_000").  The digits (without underscores) are copied into
 * buf, NUL-terminated.  Returns the end of the group, or NULL when there is
 * no digit, an underscore is misplaced, or the group is too long. */
static const char *digit_group(const char *s, char *buf, size_t *len) {
  size_t n = 0;
  if (*s < '0' || *s > '9') return NULL;
  while (*s) {
    if (*s >= '0' && *s <= '9') {
      if (n + 1 >= MHC_MAX_DIGITS) return NULL;
      buf[n++] = *s++;
    } else if (*s == '_') {
      /* An underscore must sit between two digits. */
      if (s[1] < '0' || s[1] > '9') return NULL;
      s++;
    } else {
      break;
    }
  }
  buf[n] = 0;
  *len = n;
  return s;
}

/* Value of a digit string, or -1 when it exceeds `max`. */
static int digits_value(const char *d, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  for (; *d; d++) {
    uint64_t digit = (uint64_t)(*d - '0');
    if (v > (max - digit) / 10) return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

/* v * m without exceeding max; -1 when it would. */
static int mul_bounded(uint64_t v, uint64_t m, uint64_t max, uint64_t *out) {
  if (m != 0 && v > max / m) return -1;
  *out = v * m;
  return 0;
}

/* base ^ exp, exactly, or -1 when it exceeds max.  0^0 is refused. */
static int pow_bounded(uint64_t base, uint64_t exp, uint64_t max, uint64_t *out) {
  if (base == 0 && exp == 0) return -1;
  uint64_t v = 1;
  /* With base >= 2 the loop ends after at most 64 rounds by overflow. */
  for (uint64_t i = 0; i < exp; i++) {
    if (base <= 1) {
      v = base;
      break;
    }
    if (mul_bounded(v, base, max, &v) != 0) return -1;
  }
  *out = v;
  return 0;
}

/* "M[.F]e[+-]X": the digits of M and F form the significand, the value is
 * significand * 10^(X - len(F)).  It is an integer exactly when, after
 * dropping the significand's trailing zeros, the power of ten is not
 * negative. */
static int scientific(const char *ip, const char *fp, int neg, const char *xp,
                      uint64_t max, uint64_t *out) {
  char sig[2 * MHC_MAX_DIGITS];
  size_t n = 0;
  const char *p;
  for (p = ip; *p; p++) sig[n++] = *p;
  for (p = fp; *p; p++) sig[n++] = *p;
  sig[n] = 0;
  /* Exponents beyond a few thousand can only give 0 or overflow. */
  uint64_t x;
  if (digits_value(xp, 100000, &x) != 0) return -1;
  int64_t k = (neg ? -(int64_t)x : (int64_t)x) - (int64_t)strlen(fp);
  size_t lead = 0;
  while (sig[lead] == '0') lead++;
  if (sig[lead] == 0) return -1; /* zero */
  while (n > lead && sig[n - 1] == '0') {
    sig[--n] = 0;
    k++;
  }
  if (k < 0) return -1; /* a fraction remains */
  /* 20 significant digits or more is at least 10^19 > 2^64. */
  if ((int64_t)(n - lead) + k > 19) return -1;
  uint64_t v;
  if (digits_value(sig + lead, UINT64_MAX, &v) != 0) return -1;
  for (int64_t i = 0; i < k; i++)
    if (mul_bounded(v, 10, max, &v) != 0) return -1;
  if (v > max) return -1;
  *out = v;
  return 0;
}

int mhc_parse_points(const char *s, uint64_t *out) {
  char ib[MHC_MAX_DIGITS], fb[MHC_MAX_DIGITS], xb[MHC_MAX_DIGITS];
  size_t il, fl, xl;
  uint64_t v;
  if (!s || !out) return -1;
  const char *p = digit_group(s, ib, &il);
  if (!p) return -1;
  if (*p == 0) {
    if (digits_value(ib, MHC_MAX_POINTS, &v) != 0) return -1;
  } else if (*p == '^' || (p[0] == '*' && p[1] == '*')) {
    p += *p == '^' ? 1 : 2;
    p = digit_group(p, xb, &xl);
    if (!p || *p) return -1;
    uint64_t base, exp;
    if (digits_value(ib, MHC_MAX_POINTS, &base) != 0) return -1;
    if (digits_value(xb, 1000, &exp) != 0) return -1;
    if (pow_bounded(base, exp, MHC_MAX_POINTS, &v) != 0) return -1;
  } else {
    fb[0] = 0;
    if (*p == '.') {
      p = digit_group(p + 1, fb, &fl);
      if (!p) return -1;
    }
    if (*p != 'e' && *p != 'E') return -1;
    p++;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    p = digit_group(p, xb, &xl);
    if (!p || *p) return -1;
    if (scientific(ib, fb, neg, xb, MHC_MAX_POINTS, &v) != 0) return -1;
  }
  if (v < 1) return -1;
  *out = v;
  return 0;
}

int mhc_parse_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  uint64_t v = 0;
  if (!s || !out || *s == 0) return -1;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    uint64_t digit = (uint64_t)(*p - '0');
    if (v > (UINT64_MAX - digit) / 10) return -1;
    v = v * 10 + digit;
  }
  if (v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int mhc_parse_seed(const char *s, uint64_t *out) {
  if (!s || !out) return -1;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    const char *p = s + 2;
    uint64_t v = 0;
    if (*p == 0) return -1;
    for (; *p; p++) {
      int d;
      if (*p >= '0' && *p <= '9')
        d = *p - '0';
      else if (*p >= 'a' && *p <= 'f')
        d = *p - 'a' + 10;
      else if (*p >= 'A' && *p <= 'F')
        d = *p - 'A' + 10;
      else
        return -1;
      if (v >> 60) return -1; /* a 17th significant hex digit */
      v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
  }
  return mhc_parse_range(s, 0, UINT64_MAX, out);
}

int mhc_parse_list(const char *s, int *out, size_t cap, size_t *n) {
  /* A set of worker counts; the output is then naturally sorted and free of
   * duplicates, whatever order and overlap the ranges had. */
  unsigned char seen[MHC_MAX_WORKERS + 1];
  char item[64];
  if (!s || !out || !n || *s == 0) return -1;
  memset(seen, 0, sizeof seen);
  const char *p = s;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == 0 || len >= sizeof item) return -1;
    memcpy(item, p, len);
    item[len] = 0;
    uint64_t lo, hi;
    char *dash = strchr(item, '-');
    if (dash) {
      *dash = 0;
      if (mhc_parse_range(item, 1, MHC_MAX_WORKERS, &lo) != 0 ||
          mhc_parse_range(dash + 1, 1, MHC_MAX_WORKERS, &hi) != 0 || lo > hi)
        return -1;
    } else {
      if (mhc_parse_range(item, 1, MHC_MAX_WORKERS, &lo) != 0) return -1;
      hi = lo;
    }
    for (uint64_t w = lo; w <= hi; w++) seen[w] = 1;
    if (!comma) break;
    p = comma + 1;
  }
  size_t count = 0;
  for (int w = 1; w <= MHC_MAX_WORKERS; w++) {
    if (!seen[w]) continue;
    if (count == cap) return -1;
    out[count++] = w;
  }
  *n = count;
  return 0;
}
