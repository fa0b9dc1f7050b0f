/* SPDX-License-Identifier: MIT */
/* example_args.h - the number arguments of the fork-join examples.
 *
 * A whole number in [lo, hi] from an argument, or exit 2 with
 * "<prog>: ..." saying what is wrong (an option it does not know, a number
 * out of range or malformed).  Header-only: each example is one program. */
#ifndef MH_EXAMPLE_ARGS_H
#define MH_EXAMPLE_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static long arg_number(const char *prog, const char *s, const char *what, long lo, long hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] == '-' && (s[1] < '0' || s[1] > '9')) {
    fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, s);
    exit(2);
  }
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "%s: %s must be a whole number from %ld to %ld, not '%s'\n", prog, what, lo,
            hi, s);
    exit(2);
  }
  return v;
}

#endif /* MH_EXAMPLE_ARGS_H */
