/* SPDX-License-Identifier: MIT */
/* test-cli.c - the manyhands command: its pure parts (parsing, sweep maths)
 * checked directly, then argument errors, option forms, help and version.
 *
 * The pure parts of the command (cli/parse.c, cli/sweep.c, and plot.c and
 * report.c, whose messages and printers need no state) are compiled into
 * this binary and checked directly on synthetic data; everything else runs
 * the real binary at MHT_BUILD_DIR "/manyhands" through mht_run.  Runs and
 * their output are test-cli-run.c; Ctrl-C and killed workers are
 * test-cli-signals.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli-common.h"

#include "../cli/parse.c"
#include "../cli/sweep.c"
#include "../cli/plot.c"
#include "../cli/report.c"

/* ---- parsing (unit) ------------------------------------------------------ */

TEST(parse_points_forms) {
  static const struct {
    const char *s;
    uint64_t v;
  } good[] = {
      {"10000000", 10000000},
      {"1e7", 10000000},
      {"1E7", 10000000},
      {"1e+7", 10000000},
      {"10^7", 10000000},
      {"10**7", 10000000},
      {"1_000_000", 1000000},
      {"2.5e6", 2500000},
      {"1.0e0", 1},
      {"1000e-3", 1},
      {"1", 1},
      {"007", 7},
      {"2^0", 1},
      {"1^1000", 1},
      {"2^62", UINT64_C(4611686018427387904)},
      {"2**62", UINT64_C(4611686018427387904)},
      {"1e18", UINT64_C(1000000000000000000)},
      {"10^18", UINT64_C(1000000000000000000)},
      {"9223372036854775807", UINT64_C(9223372036854775807)},
      {"9_223_372_036_854_775_807", UINT64_C(9223372036854775807)},
      /* Exactness: a double would round these to 2^63 or to neighbours. */
      {"9.223372036854775807e18", UINT64_C(9223372036854775807)},
      {"9223372036854775806", UINT64_C(9223372036854775806)},
      {"4611686018427387903", UINT64_C(4611686018427387903)},
      {"9007199254740993", UINT64_C(9007199254740993)},
      {"3037000499^2", UINT64_C(9223372030926249001)},
      {"1_0e1_0", UINT64_C(100000000000)},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint64_t v = 0;
    if (mhc_parse_points(good[i].s, &v) != 0)
      mht_fail(__FILE__, __LINE__, "'%s' was rejected", good[i].s);
    if (v != good[i].v)
      mht_fail(__FILE__, __LINE__, "'%s' gave %" PRIu64 ", want %" PRIu64,
               good[i].s, v, good[i].v);
  }
  static const char *bad[] = {
      "0", "-1", "2^63", "2**63", "1e19", "9223372036854775808",
      "18446744073709551616", "99999999999999999999999", "1.5e0", "1.5",
      "junk", "", "1e", "e7", "1__0", "_1", "1_", "10^", "^7", "1e7x", " 1",
      "1 ", "+1", "0x10", "0^0", "0e5", "0^5", "1e-1", "10***7", "10*7",
      "1e7.0", "1.e7", ".5e1", "1e--7", "9.2233720368547758075e18",
      "3037000500^2", "2^1000000", "1e100000000000000000000", "1,000",
      "1000000000000000000000000000000e-11", "1e7 ", "NaN", "inf"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 12345;
    if (mhc_parse_points(bad[i], &v) == 0)
      mht_fail(__FILE__, __LINE__, "'%s' was accepted as %" PRIu64, bad[i], v);
    ASSERT_UEQ(v, 12345); /* untouched on failure */
  }
  /* A mantissa with many digits that still is a whole number in range. */
  uint64_t v;
  ASSERT_EQ(mhc_parse_points("1000000000000000000000000000000e-24", &v), 0);
  ASSERT_UEQ(v, 1000000);
  ASSERT_EQ(mhc_parse_points("1000000000000000000000000000000e-12", &v), 0);
  ASSERT_UEQ(v, UINT64_C(1000000000000000000));
}

TEST(parse_list_seed_range) {
  int out[MHC_MAX_WORKERS];
  size_t n;
  ASSERT_EQ(mhc_parse_list("1,2,4", out, MHC_MAX_WORKERS, &n), 0);
  ASSERT_EQ(n, 3);
  ASSERT_EQ(out[0], 1);
  ASSERT_EQ(out[1], 2);
  ASSERT_EQ(out[2], 4);
  ASSERT_EQ(mhc_parse_list("1-8", out, MHC_MAX_WORKERS, &n), 0);
  ASSERT_EQ(n, 8);
  for (int i = 0; i < 8; i++) ASSERT_EQ(out[i], i + 1);
  /* Sorted and without duplicates, whatever the order and overlap. */
  ASSERT_EQ(mhc_parse_list("8,2-3,1,3,2", out, MHC_MAX_WORKERS, &n), 0);
  ASSERT_EQ(n, 4);
  ASSERT_EQ(out[0], 1);
  ASSERT_EQ(out[3], 8);
  ASSERT_EQ(mhc_parse_list("1-4096,1-4096", out, MHC_MAX_WORKERS, &n), 0);
  ASSERT_EQ(n, 4096);
  ASSERT_EQ(out[4095], 4096);
  ASSERT_EQ(mhc_parse_list("1-5", out, 4, &n), -1); /* over capacity */
  static const char *bad[] = {"", "0", "1-", "-1", "3-1", "1,,2", ",1", "1,",
                              "4097", "1-4097", "a", "1.5", "1 ,2", "2-2-3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (mhc_parse_list(bad[i], out, MHC_MAX_WORKERS, &n) == 0)
      mht_fail(__FILE__, __LINE__, "sweep list '%s' was accepted", bad[i]);

  uint64_t s;
  ASSERT_EQ(mhc_parse_seed("18446744073709551615", &s), 0);
  ASSERT_UEQ(s, UINT64_MAX);
  ASSERT_EQ(mhc_parse_seed("0xFFFFffffFFFFffff", &s), 0);
  ASSERT_UEQ(s, UINT64_MAX);
  ASSERT_EQ(mhc_parse_seed("0x0000000000000000001", &s), 0);
  ASSERT_UEQ(s, 1);
  ASSERT_EQ(mhc_parse_seed("0", &s), 0);
  ASSERT_UEQ(s, 0);
  static const char *badseed[] = {"18446744073709551616", "0x", "0x1_0", "-1",
                                  "0x10000000000000000", "12a", "", "0xg"};
  for (size_t i = 0; i < sizeof badseed / sizeof badseed[0]; i++)
    ASSERT_EQ(mhc_parse_seed(badseed[i], &s), -1);

  ASSERT_EQ(mhc_parse_range("4096", 1, 4096, &s), 0);
  ASSERT_EQ(mhc_parse_range("4097", 1, 4096, &s), -1);
  ASSERT_EQ(mhc_parse_range("0", 1, 4096, &s), -1);
  ASSERT_EQ(mhc_parse_range("99999999999999999999999", 1, 4096, &s), -1);
}

/* ---- sweep maths (unit) ---------------------------------------------------- */

TEST(amdahl_fit_synthetic) {
  /* Times that follow Amdahl's law exactly: the fit must recover f and T1,
   * and Karp-Flatt must equal f at every worker count. */
  static const double fs[] = {0.0, 0.03, 0.1, 0.5, 0.9};
  for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
    double f = fs[k], t1 = 7.5;
    int p[8];
    double t[8];
    mhc_sweep_row_t rows[8];
    for (int i = 0; i < 8; i++) {
      p[i] = i + 1;
      t[i] = t1 * (f + (1 - f) / p[i]);
      rows[i].workers = p[i];
      rows[i].seconds = t[i];
    }
    mhc_amdahl_t fit;
    ASSERT_EQ(mhc_amdahl_fit(p, t, 8, &fit), 0);
    ASSERT(fit.ok);
    ASSERT_DEQ(fit.serial, f, 1e-12);
    ASSERT_DEQ(fit.t1, t1, 1e-12);
    ASSERT_DEQ(fit.a, f * t1, 1e-12);
    double base = mhc_sweep_fill(rows, 8, &fit);
    ASSERT_DEQ(base, t1, 1e-12); /* measured at one worker */
    for (int i = 0; i < 8; i++) {
      ASSERT_DEQ(rows[i].speedup, mhc_amdahl_speedup(f, p[i]), 1e-12);
      ASSERT_DEQ(rows[i].efficiency, rows[i].speedup / p[i], 1e-12);
      if (i == 0)
        ASSERT(isnan(rows[i].karp_flatt));
      else
        ASSERT_DEQ(rows[i].karp_flatt, f, 1e-12);
    }
    /* Without the one-worker run the fit still finds f, and the speedups
     * are measured against the fitted T1. */
    ASSERT_EQ(mhc_amdahl_fit(p + 1, t + 1, 3, &fit), 0);
    ASSERT_DEQ(fit.serial, f, 1e-12);
    base = mhc_sweep_fill(rows + 1, 3, &fit);
    ASSERT_DEQ(base, t1, 1e-12);
    ASSERT_DEQ(rows[1].speedup, mhc_amdahl_speedup(f, 2), 1e-12);
  }
  /* Noisy data: least squares, checked against the normal equations solved
   * by hand for p = 1, 2, 4 and times 10, 6, 4: x = 1, 0.5, 0.25. */
  int p3[] = {1, 2, 4};
  double t3[] = {10, 6, 4};
  mhc_amdahl_t fit;
  ASSERT_EQ(mhc_amdahl_fit(p3, t3, 3, &fit), 0);
  /* mean x = 7/12, mean t = 20/3, Sxx = 0.2916667, Sxt = 2.3333333. */
  double b = (2.0 + 1.0 / 3.0) / (0.21875 + 0.0052083333333 + 0.0677083333333);
  ASSERT_DEQ(fit.b, b, 1e-9);
  ASSERT_DEQ(fit.a, 20.0 / 3.0 - b * 7.0 / 12.0, 1e-9);
  ASSERT_DEQ(fit.serial, fit.a / (fit.a + fit.b), 1e-12);
  /* Degenerate inputs. */
  int p1[] = {2, 2};
  double t1v[] = {1, 1};
  ASSERT_EQ(mhc_amdahl_fit(p1, t1v, 2, &fit), -1);
  ASSERT_EQ(fit.ok, 0);
  ASSERT_EQ(mhc_amdahl_fit(p3, t3, 1, &fit), -1);
  double tz[] = {1, 0, 1};
  ASSERT_EQ(mhc_amdahl_fit(p3, tz, 3, &fit), -1);
  /* A single row: perfect scaling up to its count is assumed. */
  mhc_sweep_row_t one = {.workers = 4, .seconds = 2.0};
  ASSERT_DEQ(mhc_sweep_fill(&one, 1, &fit), 8.0, 1e-12);
  ASSERT_DEQ(one.speedup, 4.0, 1e-12);
  ASSERT_DEQ(one.karp_flatt, 0.0, 1e-12);
  /* Karp-Flatt by its definition, and the median. */
  ASSERT_DEQ(mhc_karp_flatt(1.5, 2), (1 / 1.5 - 0.5) / 0.5, 1e-12);
  ASSERT(isnan(mhc_karp_flatt(1.0, 1)));
  double v[] = {5, 1, 4, 2, 3};
  ASSERT_DEQ(mhc_median(v, 5), 3, 0);
  double w[] = {4, 1, 3, 2};
  ASSERT_DEQ(mhc_median(w, 4), 2.5, 0);
  ASSERT(isnan(mhc_median(w, 0)));
}

TEST(sweep_spread_and_cpus) {
  /* The spread of the speedup comes from the spread of the times. */
  mhc_sweep_row_t rows[3] = {
      {.workers = 1, .seconds = 4, .seconds_min = 3, .seconds_max = 5},
      {.workers = 2, .seconds = 2, .seconds_min = 1.6, .seconds_max = 2.5},
      {.workers = 4, .seconds = 1.25},
  };
  ASSERT_DEQ(mhc_sweep_fill(rows, 3, NULL), 4, 0);
  ASSERT_DEQ(rows[1].speedup, 2, 1e-12);
  ASSERT_DEQ(rows[1].speedup_min, 4 / 2.5, 1e-12);
  ASSERT_DEQ(rows[1].speedup_max, 4 / 1.6, 1e-12);
  ASSERT_DEQ(rows[2].speedup_min, rows[2].speedup, 0); /* spread unknown */
  ASSERT_DEQ(rows[2].speedup_max, rows[2].speedup, 0);
  /* More speedup than CPUs: the row that exceeds them most. */
  ASSERT_EQ(mhc_sweep_beyond_cpus(rows, 3, 4), -1);
  ASSERT_EQ(mhc_sweep_beyond_cpus(rows, 3, 3), 2);
  ASSERT_EQ(mhc_sweep_beyond_cpus(rows, 3, 1), 2);
  ASSERT_EQ(mhc_sweep_beyond_cpus(rows, 2, 1), 1);
  ASSERT_EQ(mhc_sweep_beyond_cpus(rows, 3, 0), -1); /* unknown CPU count */
}

/* Past the online CPUs a sweep says what it measures. */
TEST(sweep_warns_past_cpus) {
  int cpus = mh_cpu_count();
  char list[32];
  snprintf(list, sizeof list, "%d,%d", cpus, cpus + 1);
  mht_proc_result_t r;
  cli(&r, 120, "pi", "2e6", "--sweep", list, "--repeat", "1", NULL);
  assert_ok(&r, "sweep past cpus");
  char want[128];
  snprintf(want, sizeof want, "manyhands: warning: the sweep goes up to %d "
           "workers on %d online CPU", cpus + 1, cpus);
  if (strncmp(r.err, want, strlen(want)) != 0)
    mht_fail(__FILE__, __LINE__, "stderr '%s', want '%s...'", r.err, want);
  ASSERT(strstr(r.out, "Karp-Flatt") != NULL);
  mht_proc_free(&r);
  /* Within the CPUs: no word about them (unless a loaded machine made the
   * speedup exceed them, which is the other warning). */
  cli(&r, 120, "pi", "2e6", "--sweep", "1", "--repeat", "1", NULL);
  assert_ok(&r, "sweep within cpus");
  ASSERT(strstr(r.err, "the sweep goes up to") == NULL);
  mht_proc_free(&r);
}

/* ---- the command: argument errors ------------------------------------------ */

TEST(n_forms_run) {
  static const struct {
    const char *s;
    uint64_t v;
  } forms[] = {{"1000", 1000}, {"1e3", 1000}, {"10^3", 1000}, {"10**3", 1000},
               {"1_000", 1000}, {"2.5e3", 2500}, {"1", 1}, {"4194305", 4194305}};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    mht_proc_result_t r;
    cli(&r, 30, "pi", forms[i].s, "2", "--json", NULL);
    assert_ok(&r, forms[i].s);
    check_run_object(r.out, forms[i].v, 2);
    ASSERT_EQ(r.err_len, 0);
    mht_proc_free(&r);
  }
}

TEST(n_rejections) {
  static const char *bad[] = {"0", "-1", "2^63", "1e19", "9223372036854775808",
                              "junk", "1.5e0", "1.5", "", "1e-3", "0x10",
                              "-0", "--1", "1e7x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mht_proc_result_t r;
    cli(&r, 10, "pi", bad[i], NULL);
    assert_usage_error(&r, bad[i]);
    mht_proc_free(&r);
  }
}

TEST(p_bounds) {
  static const char *bad[] = {"0", "4097", "-3", "x", "1.5", "1e2", "", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mht_proc_result_t r;
    cli(&r, 10, "pi", "1000", bad[i], NULL);
    assert_usage_error(&r, bad[i]);
    mht_proc_free(&r);
  }
  static const char *good[] = {"1", "7", "64"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    mht_proc_result_t r;
    cli(&r, 30, "pi", "100000", good[i], "--json", NULL);
    assert_ok(&r, good[i]);
    check_run_object(r.out, 100000, atoi(good[i]));
    mht_proc_free(&r);
  }
  /* Default: one worker per online CPU. */
  mht_proc_result_t r;
  cli(&r, 30, "pi", "1000", "--json", NULL);
  assert_ok(&r, "default P");
  ASSERT_EQ(json_u64(r.out, "workers"), mh_cpu_count());
  mht_proc_free(&r);
}

TEST(usage_errors) {
  static const char *const cases[][8] = {
      {"pi", NULL},
      {"pi", "1000", "2", "3", NULL},
      {"pi", "1000", "--repeat", "0", NULL},
      {"pi", "1000", "--repeat", "x", NULL},
      {"pi", "1000", "--repeat", NULL},
      {"pi", "1000", "--backend", "gpu", NULL},
      {"pi", "1000", "--seed", "-1", NULL},
      {"pi", "1000", "--seed", "0x", NULL},
      {"pi", "1000", "--json=1", NULL},
      {"pi", "1000", "--quiet=yes", NULL},
      {"pi", "1000", "--sweep", "0", NULL},
      {"pi", "1000", "--sweep", "4-2", NULL},
      {"pi", "1000", "2", "--sweep", "1-2", NULL},
      {"pi", "1000", "--plot", "x.svg", NULL},
      {"pi", "1000", "--sweep", "1-2", "--plot", "x.pdf", NULL},
      {"pi", "1000", "--kernel", "sse9", NULL},
      {"pi", "1000", "--frobnicate", NULL},
      {"pi", "1000", "-z", NULL},
      {"pie", "1000", NULL},
      {"--bogus", NULL},
      {"help", "nope", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *argv[10];
    static char path[] = CLI;
    int n = 0;
    argv[n++] = path;
    for (int j = 0; cases[i][j]; j++) argv[n++] = (char *)(uintptr_t)cases[i][j];
    argv[n] = NULL;
    mht_proc_result_t r;
    ASSERT_EQ(mht_run(argv, 10, &r), 0);
    char what[128];
    snprintf(what, sizeof what, "case %zu (%s %s %s)", i, cases[i][0],
             cases[i][1] ? cases[i][1] : "", cases[i][1] && cases[i][2] ? cases[i][2] : "");
    assert_usage_error(&r, what);
    mht_proc_free(&r);
  }
  /* No command at all. */
  char *argv[] = {(char *)(uintptr_t)CLI, NULL};
  mht_proc_result_t r;
  ASSERT_EQ(mht_run(argv, 10, &r), 0);
  assert_usage_error(&r, "no command");
  mht_proc_free(&r);
}

/* Options go through getopt_long: abbreviations, bundles, "=" forms, "--";
 * the messages stay ours, one line each. */
TEST(getopt_forms) {
  mht_proc_result_t r;
  char *lines[16];
  /* An unambiguous abbreviation, and a bundle of flags ending in a value. */
  static const char *const runs[][9] = {
      {"pi", "1e5", "2", "--rep", "3", "--js", NULL},
      {"pi", "1e5", "2", "--repe=3", "--json", NULL},
      {"pi", "-r3", "1e5", "2", "--json", NULL},
      {"pi", "--json", "-qr3", "1e5", "2", NULL},
      {"pi", "-qr", "3", "1e5", "--ba", "threads", "2", "--json"},
      {"pi", "--json", "-r", "3", "--", "1e5", "2", NULL},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    char *argv[12];
    static char path[] = CLI;
    int n = 0;
    argv[n++] = path;
    for (int j = 0; runs[i][j]; j++) argv[n++] = (char *)(uintptr_t)runs[i][j];
    argv[n] = NULL;
    ASSERT_EQ(mht_run(argv, 30, &r), 0);
    char what[32];
    snprintf(what, sizeof what, "getopt run %zu", i);
    assert_ok(&r, what);
    int k = split_lines(r.out, lines, 16);
    if (k != 3) mht_fail(__FILE__, __LINE__, "run %zu: %d lines", i, k);
    for (int j = 0; j < 3; j++) {
      check_run_object(lines[j], 100000, 2);
      ASSERT_UEQ(json_u64(lines[j], "rep"), j);
    }
    ASSERT_EQ(r.err_len, 0);
    mht_proc_free(&r);
  }
  /* -h inside a bundle is help, at once. */
  cli(&r, 10, "pi", "-qh", NULL);
  assert_ok(&r, "-qh");
  ASSERT(strstr(r.out, "usage: manyhands pi") != NULL);
  mht_proc_free(&r);
  /* Errors: exit 2, one line, in the command's words. */
  static const struct {
    const char *args[5];
    const char *msg;
  } bad[] = {
      {{"1e5", "--s", "3", NULL}, "manyhands: ambiguous option '--s': it could be --seed, --sweep"},
      {{"1e5", "--rep", NULL}, "manyhands: option '--repeat' needs a value"},
      {{"1e5", "-r", NULL}, "manyhands: option '-r' needs a value"},
      {{"1e5", "-qz", NULL}, "manyhands: unknown option '-z'"},
      {{"1e5", "--frob=3", NULL}, "manyhands: unknown option '--frob'"},
      {{"1e5", "--qu=1", NULL}, "manyhands: option '--quiet' takes no value"},
      {{"1e5", "--rep", "0", NULL}, "manyhands: invalid --repeat '0'"},
      {{"-1", NULL}, "manyhands: invalid number of points '-1'"},
      {{"1e5", "-3", NULL}, "manyhands: invalid number of workers '-3'"},
      {{"1e5", "2", "--", "-q", NULL}, "manyhands: too many arguments: '-q'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *argv[8];
    static char path[] = CLI, pi[] = "pi";
    int n = 0;
    argv[n++] = path;
    argv[n++] = pi;
    for (int j = 0; bad[i].args[j]; j++) argv[n++] = (char *)(uintptr_t)bad[i].args[j];
    argv[n] = NULL;
    ASSERT_EQ(mht_run(argv, 10, &r), 0);
    assert_usage_error(&r, bad[i].msg);
    if (strncmp(r.err, bad[i].msg, strlen(bad[i].msg)) != 0)
      mht_fail(__FILE__, __LINE__, "got '%s', want '%s...'", r.err, bad[i].msg);
    mht_proc_free(&r);
  }
}

TEST(help_version) {
  mht_proc_result_t r;
  cli(&r, 10, "--help", NULL);
  assert_ok(&r, "--help");
  ASSERT(strstr(r.out, "pi N [P]") != NULL);
  ASSERT(strstr(r.out, "usage: manyhands") != NULL);
  mht_proc_free(&r);
  cli(&r, 10, "pi", "--help", NULL);
  assert_ok(&r, "pi --help");
  static const char *opts[] = {"--backend", "--repeat", "--seed", "--sweep",
                               "--plot", "--json", "--kernel", "--quiet",
                               "--help", "--version", "random", "130"};
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
    if (!strstr(r.out, opts[i]))
      mht_fail(__FILE__, __LINE__, "pi --help does not mention %s", opts[i]);
  ASSERT_EQ(r.err_len, 0);
  mht_proc_free(&r);
  cli(&r, 10, "help", "pi", NULL);
  assert_ok(&r, "help pi");
  ASSERT(strstr(r.out, "usage: manyhands pi") != NULL);
  mht_proc_free(&r);
  /* --help wins over errors that come after it, as in most tools. */
  cli(&r, 10, "pi", "--help", "junk", NULL);
  assert_ok(&r, "pi --help junk");
  mht_proc_free(&r);
  static const char *vers[][2] = {{"--version", NULL}, {"-V", NULL}, {"version", NULL},
                                  {"pi", "--version"}};
  for (size_t i = 0; i < 4; i++) {
    if (vers[i][1])
      cli(&r, 10, vers[i][0], vers[i][1], NULL);
    else
      cli(&r, 10, vers[i][0], NULL);
    assert_ok(&r, vers[i][0]);
    char want[64];
    snprintf(want, sizeof want, "manyhands %s", MH_VERSION_STRING);
    ASSERT(strncmp(r.out, want, strlen(want)) == 0);
    mht_proc_free(&r);
  }
}
