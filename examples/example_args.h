/* SPDX-License-Identifier: MIT */
/* example_args.h - the arguments of the fork-join examples.
 *
 * arg_usage answers --help / -h with the usage text (exit 0) and refuses
 * more than max_args arguments (exit 2); arg_number reads a whole number in
 * [lo, hi] from an argument, or exits 2 with "<prog>: ..." saying what is
 * wrong (an option it does not know, a number out of range or malformed).
 * Header-only: each example is one program. */
#ifndef MH_EXAMPLE_ARGS_H
#define MH_EXAMPLE_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void arg_usage(const char *prog, int argc, char **argv, int max_args, const char *usage) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage, stdout);
    exit(0);
  }
  if (argc > max_args + 1) {
    fprintf(stderr, "%s: too many arguments (try --help)\n", prog);
    exit(2);
  }
}

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
