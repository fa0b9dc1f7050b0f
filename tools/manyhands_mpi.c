/* manyhands_mpi.c - a small stand-in for `manyhands pi --backend mpi`, built
 * as manyhands-mpi while the full command (cli/) is not in the tree.
 *
 *   mpirun -np R manyhands-mpi pi N [P] [--backend mpi] [--json]
 *          [--repeat K] [--seed S] [--kernel K] [--sweep LIST]
 *
 * Every rank parses the same command line and makes the same collective
 * calls; only rank 0 prints.  --sweep runs each thread count of LIST on every
 * rank (the rank count is mpirun's).  Exit codes as the command's: 0 ok,
 * 1 runtime failure, 2 usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <manyhands.h>
#include <manyhands/mpi.h>

static int usage(const char *msg) {
  fprintf(stderr, "manyhands: %s\nusage: manyhands-mpi pi N [P] [--backend mpi] "
                  "[--json] [--repeat K] [--seed S] [--kernel K] [--sweep a,b,c]\n",
          msg);
  return 2;
}

/* N as digits, 1e9 (1 * 10^9), 10^9 or 10**9. */
static int parse_n(const char *s, uint64_t *n) {
  char *end;
  uint64_t a = strtoull(s, &end, 10), e, v;
  if (end == s || *s == '-') return -1;
  if (*end == '\0') {
    v = a;
  } else {
    int sci = *end == 'e' || *end == 'E';
    const char *p = end + (sci || *end == '^' ? 1 : 0);
    if (!sci && *end != '^') {
      if (end[0] != '*' || end[1] != '*') return -1;
      p = end + 2;
    }
    e = strtoull(p, &end, 10);
    if (*end || e > 64) return -1;
    uint64_t m = sci ? 10 : a;
    v = sci ? a : 1;
    for (uint64_t i = 0; i < e; i++) {
      if (m != 0 && v > UINT64_MAX / m) return -1;
      v *= m;
    }
  }
  *n = v;
  return v >= 1 && v <= (uint64_t)INT64_MAX ? 0 : -1;
}

static void print_one(const mh_pi_result_t *r, uint64_t seed, int ranks,
                      int threads, int json, const uint64_t *rank_blocks) {
  double pps = r->seconds > 0 ? (double)r->done / r->seconds : 0;
  if (json) {
    printf("{\"n\":%" PRIu64 ",\"done\":%" PRIu64 ",\"workers\":%d,\"ranks\":%d,"
           "\"threads\":%d,\"backend\":\"mpi\",\"seed\":%" PRIu64
           ",\"kernel\":\"%s\",\"inside\":%" PRIu64 ",\"pi\":%.17g,\"stderr\":%.17g,"
           "\"abs_error\":%.17g,\"seconds\":%.9f,\"points_per_second\":%.6g,"
           "\"rank_blocks\":[",
           r->n, r->done, r->workers, ranks, threads, seed,
           mh_pi_kernel_name(r->kernel), r->inside, r->pi, r->stderr_pi,
           r->abs_error, r->seconds, pps);
    for (int i = 0; i < ranks; i++)
      printf("%s%" PRIu64, i ? "," : "", rank_blocks[i]);
    printf("]}\n");
  } else {
    printf("pi          %.10f\nstderr      %.3g\n|pi - pi^|  %.3g\n"
           "N           %" PRIu64 "\nworkers     %d (%d MPI ranks x %d threads)\n"
           "backend     mpi\nkernel      %s\nseconds     %.3f\n"
           "points/s    %.4g\ninside      %" PRIu64 "\n",
           r->pi, r->stderr_pi, r->abs_error, r->n, r->workers, ranks, threads,
           mh_pi_kernel_name(r->kernel), r->seconds, pps, r->inside);
  }
}

int main(int argc, char **argv) {
  if (mh_mpi_init(&argc, &argv) != 0) {
    fprintf(stderr, "manyhands: MPI could not start\n");
    return 1;
  }
  int rank = mh_mpi_rank(), ranks = mh_mpi_size(), code = 0;
  if (rank != 0 && !freopen("/dev/null", "w", stdout)) code = 1;
  uint64_t n = 0, repeat = 1, seed = MH_PI_DEFAULT_SEED;
  int threads = mh_cpu_count(), json = 0, have_n = 0, have_p = 0;
  int sweep[64], nsweep = 0;
  mh_pi_kernel_t kernel = MH_PI_KERNEL_AUTO;
  if (argc < 2 || strcmp(argv[1], "pi") != 0) {
    code = usage("expected the subcommand 'pi'");
    goto done;
  }
  for (int i = 2; i < argc && code == 0; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--backend") && v) {
      if (strcmp(v, "mpi") != 0) code = usage("manyhands-mpi runs --backend mpi");
      i++;
    } else if (!strcmp(a, "--repeat") && v) {
      repeat = strtoull(v, NULL, 10);
      if (repeat < 1) code = usage("bad --repeat");
      i++;
    } else if (!strcmp(a, "--seed") && v) {
      seed = strtoull(v, NULL, 0);
      i++;
    } else if (!strcmp(a, "--kernel") && v) {
      if (mh_pi_kernel_parse(v, &kernel) != 0) code = usage("bad --kernel");
      i++;
    } else if (!strcmp(a, "--sweep") && v) {
      for (char *p = argv[++i]; *p && nsweep < 64;) {
        sweep[nsweep++] = (int)strtol(p, &p, 10);
        if (*p == ',') p++;
        else if (*p) { code = usage("bad --sweep"); break; }
      }
    } else if (!have_n) {
      if (parse_n(a, &n) != 0) code = usage("bad N");
      have_n = 1;
    } else if (!have_p) {
      threads = atoi(a);
      if (threads < 1 || threads > 4096) code = usage("bad P");
      have_p = 1;
    } else {
      code = usage("too many arguments");
    }
  }
  if (code == 0 && !have_n) code = usage("N is missing");
  if (code != 0) goto done;
  if (nsweep == 0) sweep[nsweep++] = threads;

  uint64_t *rank_blocks = calloc((size_t)ranks, sizeof *rank_blocks);
  double total = 0;
  for (int s = 0; s < nsweep && code == 0; s++) {
    for (uint64_t k = 0; k < repeat && code == 0; k++) {
      mh_pi_options_t o;
      mh_pi_options_init(&o);
      o.n = n;
      o.seed = mh_pi_repeat_seed(seed, k);
      o.kernel = kernel;
      mh_pi_result_t r;
      mh_mpi_pi_stats_t st = {0};
      st.rank_blocks = rank_blocks;
      int rc = mh_mpi_pi_run(&o, sweep[s], &r, &st);
      if (rc != 0) {
        if (rank == 0) fprintf(stderr, "manyhands: %s\n", mh_strerror(rc));
        code = 1;
        break;
      }
      total += r.seconds;
      if (json || (repeat == 1 && nsweep == 1))
        print_one(&r, o.seed, ranks, sweep[s], json, rank_blocks);
      else if (nsweep == 1)
        printf("%.7f\n", r.pi);
      else
        printf("%d ranks x %d threads: %.3f s, %.4g points/s, pi %.10f\n",
               ranks, sweep[s], r.seconds, (double)r.done / r.seconds, r.pi);
    }
  }
  if (code == 0 && repeat > 1 && !json && nsweep == 1)
    printf("%.6f\n%" PRIu64 " total iterations with %d MPI ranks x %d threads\n",
           total, n, ranks, sweep[0]);
  free(rank_blocks);
done:
  fflush(stdout);
  mh_mpi_finalize();
  return code;
}
