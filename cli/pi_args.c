/* SPDX-License-Identifier: MIT */
/* pi_args.c - the command line of `manyhands pi`: its help and its parser.
 *
 * Nothing goes to stdout before the command line is known to be valid
 * (except --help and --version, which end the parse), so a usage error
 * leaves stdout empty.  Every check that needs no work is made here, so a
 * wrong command line fails at once with exit 2, never after a long run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

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
      "                   a warm-up run, then each count K times (--repeat,\n"
      "                   default 3), interleaved: median, min and max;\n"
      "                   with --backend mpi LIST is threads per rank and\n"
      "                   the sweep also runs on 1..R of the job's R ranks\n"
      "      --plot FILE  with --sweep: speedup chart, FILE.svg or FILE.png,\n"
      "                   drawn by gnuplot (needed on PATH); FILE is checked\n"
      "                   and created before the sweep runs\n"
      "      --trace FILE write what ran where as Chrome trace-event JSON\n"
      "                   (open it in ui.perfetto.dev or chrome://tracing)\n"
      "      --timeline FILE  one bar per worker over time, FILE.svg or\n"
      "                   FILE.png, drawn by gnuplot: busy, idle, the tail\n"
      "      --json       one JSON object per run on stdout\n"
      "  -k, --kernel K   auto (default: the best this CPU has), scalar, avx2,\n"
      "                   avx512; one the CPU lacks is an error (exit 1)\n"
      "  -q, --quiet      no progress bar (it is shown on stderr only when\n"
      "                   stderr is a terminal and the run lasts over 1 s)\n"
      "  -h, --help       show this help\n"
      "  -V, --version    show the version\n"
      "\n"
      "Long options may be abbreviated (--rep 3), short ones bundled (-qr3).\n"
      "Ctrl-C stops the run, prints the partial result and exits with 130.\n"
      "exit status: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.\n"
      "\n"
      "examples:\n"
      "  manyhands pi 1e9                      all CPUs, threads\n"
      "  manyhands pi 10000000 5 --repeat 10   the tutorial's montecarlo2.py\n"
      "  manyhands pi 1e10 --sweep 1-4 --plot speedup.svg\n",
      stdout);
}

/* ---- parsing ------------------------------------------------------------ */

static int usage_error_n(const char *s) {
  mhc_error("invalid number of points '%s': expected a whole number from 1 to "
            "9223372036854775807, written like 10000000, 1e7, 10^7, 10**7 or "
            "1_000_000", s);
  return -1;
}

/* The options.  A long option with a short form returns the short letter,
 * so both spellings take the same path; the others return codes past any
 * letter. */
enum { OPT_SWEEP = 256, OPT_PLOT, OPT_JSON, OPT_TRACE, OPT_TIMELINE };

static const struct option long_opts[] = {
    {"backend", required_argument, NULL, 'b'},
    {"repeat", required_argument, NULL, 'r'},
    {"seed", required_argument, NULL, 's'},
    {"sweep", required_argument, NULL, OPT_SWEEP},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"json", no_argument, NULL, OPT_JSON},
    {"trace", required_argument, NULL, OPT_TRACE},
    {"timeline", required_argument, NULL, OPT_TIMELINE},
    {"kernel", required_argument, NULL, 'k'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* '+': stop at the first operand (we take operands ourselves, see below);
 * ':': report a missing value as ':' rather than '?', and print nothing. */
static const char short_opts[] = "+:b:r:s:k:qhV";

/* The name the user would recognise for option code `val`: "--json" for a
 * long-only one, "--repeat" when they wrote a long form, else "-r". */
static void opt_name(int val, int long_form, char *buf, size_t size) {
  for (const struct option *o = long_opts; o->name; o++) {
    if (o->val != val) continue;
    if (long_form || val > 255)
      snprintf(buf, size, "--%s", o->name);
    else
      snprintf(buf, size, "-%c", val);
    return;
  }
  snprintf(buf, size, "-%c", val > 0 && val < 128 ? val : '?');
}

/* The long options that "--" + arg (up to '=') abbreviates: their count, and
 * the first in *one. */
static int long_matches(const char *arg, const struct option **one, char *list,
                        size_t size) {
  size_t len = strcspn(arg, "=");
  int n = 0;
  list[0] = 0;
  for (const struct option *o = long_opts; o->name; o++) {
    if (strncmp(o->name, arg, len) != 0) continue;
    if (strlen(o->name) == len) { /* an exact name is never ambiguous */
      *one = o;
      return 1;
    }
    if (n++ == 0) *one = o;
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s--%s", used ? ", " : "", o->name);
  }
  return n;
}

/* getopt_long said '?' about argv[at] (the element it was reading): say
 * what is wrong in our words. */
static void report_bad_option(char **argv, int at, int optopt_) {
  const char *arg = argv[at];
  if (strncmp(arg, "--", 2) == 0) {
    const struct option *o = NULL;
    char list[256];
    int n = long_matches(arg + 2, &o, list, sizeof list);
    size_t len = strcspn(arg, "=");
    if (n > 1)
      mhc_error("ambiguous option '%.*s': it could be %s (try 'manyhands pi "
                "--help')", (int)len, arg, list);
    else if (n == 1 && o->has_arg == no_argument && arg[len] == '=')
      mhc_error("option '--%s' takes no value", o->name);
    else
      mhc_error("unknown option '%.*s' (try 'manyhands pi --help')", (int)len, arg);
  } else {
    mhc_error("unknown option '-%c' (try 'manyhands pi --help')",
              optopt_ > 0 && optopt_ < 128 ? optopt_ : '?');
  }
}

/* Options go through getopt_long, so abbreviations (--rep 3), bundles
 * (-qr2), "--name=value", "-xVALUE" and "--" work as in other tools.
 * Operands (N, P) we take ourselves, whenever getopt stands at the start of
 * an element: an element that does not start with '-', "-" itself, every
 * element after "--", and "-<digit>...", which is a (bad) number, so the
 * number parser, not getopt, says what is wrong with "-1".  getopt is at an
 * element's start when the previous call moved optind (a bundle in progress
 * leaves it in place). */
int mhc_pi_parse(int argc, char **argv, mhc_pi_args_t *a) {
  const char *pos[3];
  int npos = 0, only_pos = 0, at_start = 1;
  memset(a, 0, sizeof *a);
  a->backend = MH_BACKEND_THREADS;
  a->repeat = 1;
  a->seed = MH_PI_DEFAULT_SEED;
  a->kernel = MH_PI_KERNEL_AUTO;
  opterr = 0;
  optind = 1; /* the command parses one command line per process */
  for (;;) {
    if (at_start && optind < argc) {
      const char *arg = argv[optind];
      if (!only_pos && strcmp(arg, "--") == 0) {
        only_pos = 1;
        optind++;
        continue;
      }
      if (only_pos || arg[0] != '-' || arg[1] == 0 ||
          (arg[1] >= '0' && arg[1] <= '9')) {
        if (npos == 2) {
          mhc_error("too many arguments: '%s' (usage: manyhands pi [options] N [P])", arg);
          return -1;
        }
        pos[npos++] = arg;
        optind++;
        continue;
      }
    }
    if (optind >= argc) break;
    int before = optind, at = optind;
    int c = getopt_long(argc, argv, short_opts, long_opts, NULL);
    at_start = optind != before;
    if (c == -1) break;
    const char *v = optarg;
    char name[32];
    switch (c) {
      case 'h':
        pi_help();
        return 1;
      case 'V':
        mhc_print_version();
        return 1;
      case 'q':
        a->quiet = 1;
        break;
      case OPT_JSON:
        a->json = 1;
        break;
      case 'b':
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
        break;
      case 'r':
        if (mhc_parse_range(v, 1, 1000000, &a->repeat) != 0) {
          mhc_error("invalid --repeat '%s': expected a count from 1 to 1000000", v);
          return -1;
        }
        a->have_repeat = 1;
        break;
      case 's':
        if (strcmp(v, "random") == 0) {
          a->seed_random = 1;
        } else if (mhc_parse_seed(v, &a->seed) != 0) {
          mhc_error("invalid --seed '%s': expected 0..18446744073709551615, "
                    "0x-hex, or 'random'", v);
          return -1;
        } else {
          a->seed_random = 0;
        }
        break;
      case OPT_SWEEP:
        if (mhc_parse_list(v, a->sweep, MHC_MAX_WORKERS, &a->nsweep) != 0) {
          mhc_error("invalid --sweep '%s': expected worker counts from 1 to 4096 "
                    "like 1,2,4 or 1-8 or 1-4,8", v);
          return -1;
        }
        break;
      case OPT_PLOT: {
        const char *why = mhc_plot_bad_name(v);
        if (why) {
          /* A name with a newline in it would break the one-line message. */
          if (strstr(why, "control characters"))
            mhc_error("invalid --plot: %s", why);
          else
            mhc_error("invalid --plot '%s': %s", v, why);
          return -1;
        }
        a->plot = v;
        break;
      }
      case OPT_TRACE:
        if (!*v) {
          mhc_error("invalid --trace: the file name is empty");
          return -1;
        }
        a->trace = v;
        break;
      case OPT_TIMELINE: {
        const char *why = mhc_plot_bad_name(v);
        if (why) {
          if (strstr(why, "control characters"))
            mhc_error("invalid --timeline: %s", why);
          else
            mhc_error("invalid --timeline '%s': %s", v, why);
          return -1;
        }
        a->timeline = v;
        break;
      }
      case 'k':
        if (mh_pi_kernel_parse(v, &a->kernel) != 0) {
          mhc_error("unknown kernel '%s': expected auto, scalar, avx2 or avx512", v);
          return -1;
        }
        break;
      case ':':
        opt_name(optopt, strncmp(argv[at], "--", 2) == 0, name, sizeof name);
        mhc_error("option '%s' needs a value (try 'manyhands pi --help')", name);
        return -1;
      default:
        report_bad_option(argv, at, optopt);
        return -1;
    }
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
  /* Last, once the rest is known to be right (so a usage error creates no
   * file): the chart's path must be writable now, not found unwritable
   * after a sweep of an hour. */
  if ((a->trace || a->timeline) && a->nsweep) {
    mhc_error("--trace and --timeline record one run: give P, not --sweep");
    return -1;
  }
  if (a->timeline) {
    int rc = mhc_plot_probe(a->timeline, &a->timeline_created);
    if (rc != 0) {
      mhc_error("cannot write the timeline '%s': %s", a->timeline,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
      return -1;
    }
  }
  if (a->plot) {
    int rc = mhc_plot_probe(a->plot, &a->plot_created);
    if (rc != 0) {
      mhc_error("cannot write the chart '%s': %s", a->plot,
                rc == -EINVAL ? "not a regular file" : strerror(-rc));
      return -1;
    }
  }
  return 0;
}
