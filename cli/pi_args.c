/* pi_args.c - the command line of `manyhands pi`: its help and its parser.
 *
 * Nothing goes to stdout before the command line is known to be valid
 * (except --help and --version, which end the parse), so a usage error
 * leaves stdout empty.  Every check that needs no work is made here, so a
 * wrong command line fails at once with exit 2, never after a long run.
 */
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

/* ---- parsing ------------------------------------------------------------ */

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

int mhc_pi_parse(int argc, char **argv, mhc_pi_args_t *a) {
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
        mhc_print_version();
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
