/* SPDX-License-Identifier: MIT */
/* test-cli-run.c - the manyhands command's runs and what they print: JSON
 * and human output, seeds, repeats, the sweep table, the chart, kernels, the
 * progress bar on a terminal, and the tutorial's montecarlo example.
 *
 * cli/sweep.c, plot.c and report.c are compiled in to parse and check what
 * the real binary (MHT_BUILD_DIR "/manyhands") prints.
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

#include "../cli/sweep.c"
#include "../cli/plot.c"
#include "../cli/report.c"

/* ---- the command: results ---------------------------------------------------- */

TEST(json_consistent_across_workers_and_backends) {
  static const char *backends[] = {"threads", "processes"};
  uint64_t inside0 = 0;
  int runs = 0;
  const char *n = "9000001"; /* three blocks, the last one short */
  for (int b = 0; b < 2; b++) {
    for (int p = 1; p <= 4; p++) {
      char ps[8];
      snprintf(ps, sizeof ps, "%d", p);
      mht_proc_result_t r;
      cli(&r, 60, "pi", n, ps, "--backend", backends[b], "--json", NULL);
      if (b == 1 && r.exited && r.status == 1 && strstr(r.err, "not available")) {
        /* The process backend is not in this build yet. */
        ASSERT_EQ(r.out_len, 0);
        mht_proc_free(&r);
        break;
      }
      assert_ok(&r, backends[b]);
      check_run_object(r.out, 9000001, p);
      char be[32];
      json_str(r.out, "backend", be, sizeof be);
      ASSERT_STREQ(be, backends[b]);
      ASSERT_UEQ(json_u64(r.out, "seed"), MH_PI_DEFAULT_SEED);
      uint64_t inside = json_u64(r.out, "inside");
      if (runs++ == 0)
        inside0 = inside;
      else
        ASSERT_UEQ(inside, inside0);
      /* Exactly one line. */
      ASSERT(strchr(r.out, '\n') == r.out + r.out_len - 1);
      mht_proc_free(&r);
    }
  }
  ASSERT_GE(runs, 4);
  /* Every kernel this CPU has gives the same count too. */
  for (int k = MH_PI_KERNEL_SCALAR; k <= MH_PI_KERNEL_AVX512; k++) {
    if (!mh_pi_kernel_supported((mh_pi_kernel_t)k)) continue;
    mht_proc_result_t r;
    cli(&r, 60, "pi", n, "2", "--kernel", mh_pi_kernel_name((mh_pi_kernel_t)k),
        "--json", NULL);
    assert_ok(&r, "kernel");
    char kn[32];
    json_str(r.out, "kernel", kn, sizeof kn);
    ASSERT_STREQ(kn, mh_pi_kernel_name((mh_pi_kernel_t)k));
    ASSERT_UEQ(json_u64(r.out, "inside"), inside0);
    mht_proc_free(&r);
  }
}

TEST(human_output) {
  mht_proc_result_t r, j;
  cli(&r, 30, "pi", "1e6", "2", "--seed", "42", NULL);
  assert_ok(&r, "human");
  cli(&j, 30, "pi", "1e6", "2", "--seed", "42", "--json", NULL);
  assert_ok(&j, "json");
  static const char *labels[] = {"pi ", "stderr ", "|pi_hat-pi| ", "N ",
                                 "workers ", "backend ", "kernel ", "seconds ",
                                 "points/s ", "seed ", "inside "};
  for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
    char pat[32];
    snprintf(pat, sizeof pat, "\n%s", labels[i]);
    if (strncmp(r.out, labels[i], strlen(labels[i])) != 0 && !strstr(r.out, pat))
      mht_fail(__FILE__, __LINE__, "no line '%s' in:\n%s", labels[i], r.out);
  }
  /* The human numbers agree with the JSON of the same run. */
  char want[64];
  snprintf(want, sizeof want, "inside      %" PRIu64 "\n", json_u64(j.out, "inside"));
  ASSERT(strstr(r.out, want) != NULL);
  snprintf(want, sizeof want, "pi          %.10f\n", json_num(j.out, "pi"));
  ASSERT(strstr(r.out, want) != NULL);
  ASSERT(strstr(r.out, "N           1000000\n") != NULL);
  ASSERT(strstr(r.out, "workers     2\n") != NULL);
  ASSERT(strstr(r.out, "backend     threads\n") != NULL);
  ASSERT(strstr(r.out, "seed        42\n") != NULL);
  ASSERT_EQ(r.err_len, 0); /* no progress bar: stderr is not a terminal */
  mht_proc_free(&r);
  mht_proc_free(&j);
}

TEST(seeds) {
  /* The same seed repeats exactly; another seed gives another count. */
  mht_proc_result_t a, b, c;
  cli(&a, 30, "pi", "2e6", "2", "--json", "--seed", "0x2a", NULL);
  cli(&b, 30, "pi", "2e6", "1", "--json", "--seed=42", NULL);
  cli(&c, 30, "pi", "2e6", "2", "--json", "-s", "43", NULL);
  assert_ok(&a, "a");
  assert_ok(&b, "b");
  assert_ok(&c, "c");
  ASSERT_UEQ(json_u64(a.out, "seed"), 42);
  ASSERT_UEQ(json_u64(a.out, "inside"), json_u64(b.out, "inside"));
  ASSERT(json_u64(a.out, "inside") != json_u64(c.out, "inside"));
  mht_proc_free(&a);
  mht_proc_free(&b);
  mht_proc_free(&c);
  /* --seed random: a fresh seed each time, reported so it can be replayed. */
  cli(&a, 30, "pi", "1e6", "2", "--json", "--seed", "random", NULL);
  cli(&b, 30, "pi", "1e6", "2", "--json", "--seed", "random", NULL);
  assert_ok(&a, "random a");
  assert_ok(&b, "random b");
  uint64_t sa = json_u64(a.out, "seed");
  ASSERT(sa != json_u64(b.out, "seed"));
  char seed[32];
  snprintf(seed, sizeof seed, "%" PRIu64, sa);
  cli(&c, 30, "pi", "1e6", "3", "--json", "--seed", seed, NULL);
  assert_ok(&c, "replay");
  ASSERT_UEQ(json_u64(c.out, "inside"), json_u64(a.out, "inside"));
  mht_proc_free(&a);
  mht_proc_free(&b);
  mht_proc_free(&c);
  /* seed_hex: the same seed as a string, and --seed takes it back. */
  cli(&a, 30, "pi", "1e6", "2", "--json", "--seed", "random", NULL);
  assert_ok(&a, "random for seed_hex");
  char hex[40];
  json_str(a.out, "seed_hex", hex, sizeof hex);
  ASSERT(strncmp(hex, "0x", 2) == 0);
  ASSERT_UEQ(strtoull(hex, NULL, 16), json_u64(a.out, "seed"));
  cli(&b, 30, "pi", "1e6", "3", "--json", "--seed", hex, NULL);
  assert_ok(&b, "replay seed_hex");
  ASSERT_UEQ(json_u64(b.out, "inside"), json_u64(a.out, "inside"));
  json_str(b.out, "seed_hex", seed, sizeof seed);
  ASSERT_STREQ(seed, hex);
  mht_proc_free(&a);
  mht_proc_free(&b);
  cli(&a, 30, "pi", "1e3", "1", "--json", "--seed", "18446744073709551615", NULL);
  assert_ok(&a, "max seed");
  json_str(a.out, "seed_hex", hex, sizeof hex);
  ASSERT_STREQ(hex, "0xffffffffffffffff");
  mht_proc_free(&a);
  cli(&a, 30, "pi", "1e5", "1", "--seed", "random", NULL);
  assert_ok(&a, "random human");
  ASSERT(strstr(a.out, "\nseed        ") != NULL);
  mht_proc_free(&a);
}

TEST(repeat_lines) {
  /* The tutorial's montecarlo2.py 10000000 5, at a smaller N. */
  mht_proc_result_t r;
  cli(&r, 60, "pi", "100000", "5", "--repeat", "10", NULL);
  assert_ok(&r, "repeat");
  char *lines[32];
  int n = split_lines(r.out, lines, 32);
  ASSERT_EQ(n, 13);
  double est[10];
  for (int i = 0; i < 10; i++) {
    /* 3.1415927: seven decimals, as the tutorial prints them. */
    char *end;
    est[i] = strtod(lines[i], &end);
    ASSERT(*end == 0);
    ASSERT_EQ(strlen(lines[i]), 9);
    ASSERT(est[i] > 3.0 && est[i] < 3.3);
  }
  /* Each estimate comes from its own stream: not all equal. */
  int distinct = 0;
  for (int i = 1; i < 10; i++) distinct += est[i] != est[0];
  ASSERT_GE(distinct, 5);
  char *end;
  double total = strtod(lines[10], &end);
  ASSERT(*end == 0 && total > 0);
  ASSERT_STREQ(lines[11], "100000 total iterations with 5 threads");
  ASSERT(strncmp(lines[12], "mean 3.", 7) == 0);
  mht_proc_free(&r);

  /* --json --repeat K: K objects, rep 0..K-1, rep 0 on the given seed. */
  cli(&r, 60, "pi", "100000", "2", "--repeat", "4", "--json", "--seed", "7", NULL);
  assert_ok(&r, "repeat json");
  n = split_lines(r.out, lines, 32);
  ASSERT_EQ(n, 4);
  uint64_t seeds[4];
  for (int i = 0; i < 4; i++) {
    check_run_object(lines[i], 100000, 2);
    ASSERT_UEQ(json_u64(lines[i], "rep"), i);
    seeds[i] = json_u64(lines[i], "seed");
    ASSERT_UEQ(seeds[i], mh_pi_repeat_seed(7, (uint64_t)i));
    for (int j = 0; j < i; j++) ASSERT(seeds[i] != seeds[j]);
  }
  ASSERT_UEQ(seeds[0], 7);
  mht_proc_free(&r);
  /* Repetition i is the same run as a plain run with its seed. */
  char s2[32];
  snprintf(s2, sizeof s2, "%" PRIu64, seeds[2]);
  cli(&r, 60, "pi", "100000", "3", "--repeat", "3", "--json", "--seed", "7", NULL);
  mht_proc_result_t one;
  cli(&one, 60, "pi", "100000", "1", "--json", "--seed", s2, NULL);
  assert_ok(&one, "one");
  n = split_lines(r.out, lines, 32);
  ASSERT_EQ(n, 3);
  ASSERT_UEQ(json_u64(lines[2], "inside"), json_u64(one.out, "inside"));
  mht_proc_free(&r);
  mht_proc_free(&one);
}

/* Parse the sweep table: rows "workers seconds min max points/s speedup
 * eff% kf". */
static int parse_table(char *out, mhc_sweep_row_t *rows, int cap, double *serial) {
  char *lines[64];
  int n = split_lines(out, lines, 64), nrows = 0, header = -1;
  *serial = NAN;
  for (int i = 0; i < n; i++) {
    if (strncmp(lines[i], "workers", 7) == 0 || strstr(lines[i], "workers     seconds")) {
      header = i;
      continue;
    }
    const char *f = strstr(lines[i], "serial fraction f = ");
    if (f) *serial = strtod(f + 20, NULL);
    if (header < 0 || nrows == cap) continue;
    mhc_sweep_row_t r;
    char kf[32];
    if (sscanf(lines[i], "%d %lf %lf %lf %lf %lf %lf%% %31s", &r.workers,
               &r.seconds, &r.seconds_min, &r.seconds_max, &r.points_per_second,
               &r.speedup, &r.efficiency, kf) == 8) {
      r.efficiency /= 100;
      r.karp_flatt = strcmp(kf, "-") == 0 ? NAN : strtod(kf, NULL);
      rows[nrows++] = r;
    } else {
      header = -1; /* the table ended */
    }
  }
  return nrows;
}

TEST(sweep_table) {
  mht_proc_result_t r;
  cli(&r, 120, "pi", "4e7", "--sweep", "1-3", "--repeat", "2", NULL);
  assert_ok(&r, "sweep");
  ASSERT(strstr(r.out, "the same for every worker count") != NULL);
  ASSERT(strstr(r.out, "2 runs per worker count (median time, interleaved) "
                "after a warm-up run") != NULL);
  char *copy = strdup(r.out);
  mhc_sweep_row_t rows[8];
  double serial;
  int n = parse_table(copy, rows, 8, &serial);
  if (n != 3) mht_fail(__FILE__, __LINE__, "%d rows in:\n%s", n, r.out);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(rows[i].workers, i + 1);
    ASSERT(rows[i].seconds > 0);
    ASSERT(rows[i].seconds_min <= rows[i].seconds);
    ASSERT(rows[i].seconds <= rows[i].seconds_max);
    /* The columns agree with each other, to their printed precision:
     * seconds to 0.5 us, points/s to 4 digits, speedup to 0.0005,
     * efficiency to 0.05 %, Karp-Flatt to 0.00005. */
    double t = rows[i].seconds, t0 = rows[0].seconds, s = rows[i].speedup;
    ASSERT_DEQ(rows[i].points_per_second * t / 4e7, 1, 1e-3 + 1e-6 / t);
    ASSERT_DEQ(s, t0 / t, 5e-4 + (t0 / t) * (1e-6 / t + 1e-6 / t0));
    ASSERT_DEQ(rows[i].efficiency, s / (i + 1), 5e-4 + 5e-4 / (i + 1));
    if (i == 0) {
      ASSERT(isnan(rows[i].karp_flatt));
    } else {
      double p = i + 1;
      ASSERT_DEQ(rows[i].karp_flatt, mhc_karp_flatt(s, i + 1),
                 1e-4 + 5e-4 / (s * s * (1 - 1 / p)) * 1.01);
    }
  }
  /* The printed fraction is the least-squares fit of the printed times. */
  int ps[3] = {1, 2, 3};
  double ts[3] = {rows[0].seconds, rows[1].seconds, rows[2].seconds};
  mhc_amdahl_t fit;
  ASSERT_EQ(mhc_amdahl_fit(ps, ts, 3, &fit), 0);
  ASSERT(isfinite(serial));
  ASSERT_DEQ(serial, fit.serial, 2e-3 + fabs(fit.serial) * 1e-2);
  free(copy);
  mht_proc_free(&r);

  /* JSON: one object per worker count, timed by the median of its runs
   * (3 by default), the spread beside it. */
  cli(&r, 120, "pi", "5e6", "--sweep", "1,3", "--json", NULL);
  assert_ok(&r, "sweep json");
  char *lines[8];
  n = split_lines(r.out, lines, 8);
  ASSERT_EQ(n, 2);
  for (int i = 0; i < 2; i++) {
    check_run_object(lines[i], 5000000, i == 0 ? 1 : 3);
    ASSERT_DEQ(json_num(lines[i], "speedup") * json_num(lines[i], "sweep_seconds"),
               json_num(lines[0], "sweep_seconds"), 1e-9);
    ASSERT(strstr(lines[i], "\"karp_flatt\":") != NULL);
    ASSERT_EQ(json_u64(lines[i], "runs"), 3);
    ASSERT_EQ(json_u64(lines[i], "repeat"), 3);
    double med = json_num(lines[i], "sweep_seconds");
    ASSERT_DEQ(json_num(lines[i], "seconds"), med, 0);
    ASSERT(json_num(lines[i], "seconds_min") <= med);
    ASSERT(med <= json_num(lines[i], "seconds_max"));
    ASSERT(json_num(lines[i], "speedup_min") <= json_num(lines[i], "speedup"));
    ASSERT(json_num(lines[i], "speedup") <= json_num(lines[i], "speedup_max"));
    ASSERT_DEQ(json_num(lines[i], "speedup_min") * json_num(lines[i], "seconds_max"),
               json_num(lines[0], "sweep_seconds"), 1e-9);
  }
  /* At full precision the fraction is exactly the fit of the two medians. */
  int p2[2] = {1, 3};
  double t2[2] = {json_num(lines[0], "sweep_seconds"), json_num(lines[1], "sweep_seconds")};
  mhc_amdahl_t fit2;
  ASSERT_EQ(mhc_amdahl_fit(p2, t2, 2, &fit2), 0);
  ASSERT_DEQ(json_num(lines[1], "amdahl_serial_fraction"), fit2.serial, 1e-12);
  ASSERT_DEQ(json_num(lines[1], "karp_flatt"),
             mhc_karp_flatt(t2[0] / t2[1], 3), 1e-12);
  ASSERT(strstr(lines[0], "\"karp_flatt\":null") != NULL);
  ASSERT_UEQ(json_u64(lines[0], "inside"), json_u64(lines[1], "inside"));
  mht_proc_free(&r);
}

/* ---- the chart ------------------------------------------------------------------ */

static int have_gnuplot(void) {
  char buf[4096];
  return mhc_find_on_path("gnuplot", buf, sizeof buf) != NULL;
}

static void tmp_name(char *buf, size_t size, const char *ext) {
  snprintf(buf, size, "/tmp/mht-cli-%d-%llx.%s", (int)getpid(),
           (unsigned long long)mht_rand(), ext);
}

TEST(plot_chart) {
  static const char *exts[] = {"svg", "png", "SVG"};
  for (int i = 0; i < 3; i++) {
    char file[256];
    tmp_name(file, sizeof file, exts[i]);
    mht_proc_result_t r;
    cli(&r, 120, "pi", "3e6", "--sweep", "1-2", "--plot", file, NULL);
    struct stat st;
    if (have_gnuplot()) {
      assert_ok(&r, file);
      ASSERT(strstr(r.out, "serial fraction") != NULL);
      ASSERT_EQ(stat(file, &st), 0);
      ASSERT_GT(st.st_size, 500);
      char head[512] = {0};
      FILE *f = fopen(file, "rb");
      ASSERT(f != NULL);
      size_t got = fread(head, 1, sizeof head - 1, f);
      fclose(f);
      ASSERT_GT(got, 8);
      if (i == 1)
        ASSERT(memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0);
      else
        ASSERT(strstr(head, "<svg") != NULL);
      /* Nothing on stderr but warnings (a short run on a busy machine may
       * show more speedup than CPUs, and the command says so). */
      ASSERT(r.err_len == 0 || strncmp(r.err, "manyhands: warning: ", 20) == 0);
    } else {
      /* Without gnuplot: exit 1, a message, no file. */
      ASSERT(r.exited && r.status == 1);
      ASSERT(strstr(r.err, "gnuplot was not found") != NULL);
      ASSERT_EQ(stat(file, &st), -1);
    }
    unlink(file);
    mht_proc_free(&r);
  }
  /* The SVG holds the three curves. */
  if (have_gnuplot()) {
    char file[256];
    tmp_name(file, sizeof file, "svg");
    mht_proc_result_t r;
    cli(&r, 120, "pi", "2e6", "--sweep", "1,2", "--plot", file, NULL);
    assert_ok(&r, file);
    FILE *f = fopen(file, "r");
    ASSERT(f != NULL);
    static char svg[1 << 20];
    size_t len = fread(svg, 1, sizeof svg - 1, f);
    svg[len] = 0;
    fclose(f);
    ASSERT(strstr(svg, "ideal (linear)") != NULL);
    const char *fitc = strstr(svg, "Amdahl fit, serial fraction");
    const char *meas = strstr(svg, "measured: median, min..max of 3 runs");
    ASSERT(fitc != NULL && meas != NULL);
    /* The fit is drawn after the measured line, so it lies on top. */
    ASSERT(fitc > meas);
    /* The CPU count is marked. */
    ASSERT(strstr(svg, "online CPU") != NULL);
    unlink(file);
    mht_proc_free(&r);
  }
}

TEST(plot_without_gnuplot) {
  /* As if gnuplot were not installed: the user asked for a file and cannot
   * get it, so it is a failure (exit 1), said before the sweep runs, with
   * nothing on stdout and no file left behind. */
  char file[256];
  tmp_name(file, sizeof file, "png");
  setenv("PATH", "/nonexistent", 1);
  mht_proc_result_t r;
  double t0 = mht_now();
  cli(&r, 120, "pi", "1e12", "--sweep", "1-2", "--plot", file, NULL);
  ASSERT(mht_now() - t0 < 5); /* 1e12 points would take minutes */
  ASSERT(r.exited && r.status == 1);
  ASSERT_EQ(r.out_len, 0);
  ASSERT(strncmp(r.err, "manyhands: gnuplot was not found on PATH", 40) == 0);
  ASSERT(strstr(r.err, file) != NULL);
  ASSERT(strstr(r.err, "gnuplot-nox") != NULL);
  struct stat st;
  ASSERT_EQ(stat(file, &st), -1);
  mht_proc_free(&r);
}

/* A chart that cannot be written is a usage error found while parsing:
 * exit 2 at once, before a sweep that would take minutes. */
TEST(plot_path_checked_first) {
  char dir[256], file[300], keep[256];
  tmp_name(dir, sizeof dir, "svg");
  ASSERT_EQ(mkdir(dir, 0700), 0); /* a directory named like a chart */
  snprintf(file, sizeof file, "%s/x.png", dir);
  static const char *names[] = {".svg", "x.pdf", "x.svg/", "dir/.png", "a\nb.svg",
                                "", "/nonexistent-mht-dir/x.svg", "/proc/mht-x.png"};
  for (size_t i = 0; i < sizeof names / sizeof names[0] + 1; i++) {
    const char *name = i < sizeof names / sizeof names[0] ? names[i] : dir;
    mht_proc_result_t r;
    double t0 = mht_now();
    cli(&r, 30, "pi", "1e12", "--sweep", "1-2", "--plot", name, NULL);
    ASSERT(mht_now() - t0 < 5);
    char what[300];
    snprintf(what, sizeof what, "--plot '%s'", name);
    assert_usage_error(&r, what);
    ASSERT(strstr(r.err, "invalid --plot") || strstr(r.err, "cannot write the chart"));
    mht_proc_free(&r);
  }
  /* A good path is created at once... */
  struct stat st;
  tmp_name(keep, sizeof keep, "png");
  mht_proc_result_t r;
  cli(&r, 60, "pi", "2e6", "--sweep", "1-2", "--plot", file, NULL);
  if (have_gnuplot()) {
    assert_ok(&r, "plot in a directory");
    ASSERT_EQ(stat(file, &st), 0);
    ASSERT_GT(st.st_size, 500);
    unlink(file);
  } else {
    /* Without gnuplot the good path fails after the path checks, on the
     * missing program (exit 1), and leaves no file. */
    ASSERT(r.exited && r.status == 1);
    ASSERT(strstr(r.err, "gnuplot was not found") != NULL);
    ASSERT_EQ(stat(file, &st), -1);
  }
  mht_proc_free(&r);
  /* ...and taken away when the run then fails (here: a kernel the CPU is
   * said to lack, exit 1). */
  setenv("MANYHANDS_KERNELS", "scalar", 1);
  cli(&r, 30, "pi", "2e6", "--sweep", "1-2", "--kernel", "avx2", "--plot", file, NULL);
  unsetenv("MANYHANDS_KERNELS");
  ASSERT(r.exited && r.status == 1);
  ASSERT_EQ(stat(file, &st), -1);
  mht_proc_free(&r);
  /* An existing chart is not touched by a run that fails. */
  FILE *f = fopen(keep, "w");
  ASSERT(f != NULL);
  fputs("old chart", f);
  fclose(f);
  setenv("MANYHANDS_KERNELS", "scalar", 1);
  cli(&r, 30, "pi", "2e6", "--sweep", "1-2", "--kernel", "avx2", "--plot", keep, NULL);
  unsetenv("MANYHANDS_KERNELS");
  ASSERT(r.exited && r.status == 1);
  ASSERT_EQ(stat(keep, &st), 0);
  ASSERT_EQ(st.st_size, 9);
  mht_proc_free(&r);
  /* Not writable (as root every file is, so only as another user). */
  if (geteuid() != 0) {
    ASSERT_EQ(chmod(keep, 0444), 0);
    cli(&r, 30, "pi", "1e12", "--sweep", "1-2", "--plot", keep, NULL);
    assert_usage_error(&r, "read-only chart");
    ASSERT(strstr(r.err, "cannot write the chart") != NULL);
    mht_proc_free(&r);
  }
  unlink(keep);
  rmdir(dir);
  /* Unit: the names. */
  ASSERT(mhc_plot_bad_name("a.svg") == NULL);
  ASSERT(mhc_plot_bad_name("d/a.PNG") == NULL);
  ASSERT(mhc_plot_bad_name("d/.png") != NULL);
  ASSERT(mhc_plot_bad_name("a.svg/") != NULL);
  ASSERT(mhc_plot_bad_name("a\tb.svg") != NULL);
  ASSERT(mhc_plot_bad_name(NULL) != NULL);
}

/* ---- kernels --------------------------------------------------------------------- */

TEST(kernel_unsupported) {
  /* A kernel the CPU lacks is a runtime failure: exit 1, a message, no
   * output.  MANYHANDS_KERNELS hides kernels so this runs on any CPU. */
  setenv("MANYHANDS_KERNELS", "scalar", 1);
  static const char *hidden[] = {"avx2", "avx512"};
  for (int i = 0; i < 2; i++) {
    mht_proc_result_t r;
    cli(&r, 10, "pi", "1000", "1", "--kernel", hidden[i], NULL);
    ASSERT(r.exited && r.status == 1);
    ASSERT_EQ(r.out_len, 0);
    ASSERT(strncmp(r.err, "manyhands: the ", 15) == 0);
    ASSERT(strstr(r.err, "kernel is not available on this CPU") != NULL);
    ASSERT(strstr(r.err, "available: scalar") != NULL);
    mht_proc_free(&r);
  }
  /* auto then falls back to what is left. */
  mht_proc_result_t r;
  cli(&r, 10, "pi", "1000", "1", "--json", NULL);
  assert_ok(&r, "auto with scalar only");
  char kn[32];
  json_str(r.out, "kernel", kn, sizeof kn);
  ASSERT_STREQ(kn, "scalar");
  mht_proc_free(&r);
  setenv("MANYHANDS_KERNELS", "scalar,bogus", 1);
  cli(&r, 10, "pi", "1000", "1", NULL);
  assert_usage_error(&r, "bad MANYHANDS_KERNELS");
  mht_proc_free(&r);
  unsetenv("MANYHANDS_KERNELS");
  /* Kernels this CPU really lacks fail the same way. */
  for (int k = MH_PI_KERNEL_SCALAR; k <= MH_PI_KERNEL_AVX512; k++) {
    cli(&r, 10, "pi", "1000", "1", "--kernel", mh_pi_kernel_name((mh_pi_kernel_t)k), NULL);
    if (mh_pi_kernel_supported((mh_pi_kernel_t)k)) {
      assert_ok(&r, "supported kernel");
    } else {
      ASSERT(r.exited && r.status == 1 && r.out_len == 0);
    }
    mht_proc_free(&r);
  }
  /* auto reports what it picked: the best this CPU has. */
  cli(&r, 10, "pi", "1000", "1", "--json", "--kernel", "auto", NULL);
  assert_ok(&r, "auto");
  json_str(r.out, "kernel", kn, sizeof kn);
  ASSERT_STREQ(kn, mh_pi_kernel_name(mh_pi_kernel_best()));
  mht_proc_free(&r);
}


/* ---- the progress bar ------------------------------------------------------------ */

/* Run the command with stderr on a pseudo-terminal (stdout to /dev/null),
 * SIGINT it after `run_for` seconds, and return what it wrote on the
 * terminal in buf. */
/* The terminal's size for run_on_pty_sized: cols 0 leaves the pty's own
 * (0 x 0, "unknown"); resize_cols > 0 changes it at resize_at seconds,
 * which sends SIGWINCH to the command as a terminal window does.
 * min_bars > 0 makes times events, for a loaded machine: the resize waits
 * for a first bar, and SIGINT (after run_for) for min_bars bars, and for two
 * more after the resize; up to 15 s more, after which the checks decide. */
typedef struct pty_size {
  int cols, resize_cols;
  double resize_at;
  int min_bars;
} pty_size_t;

static void run_on_pty_sized(const char *n, int quiet, double run_for, char *buf,
                             size_t size, int *status, const pty_size_t *sz);

static void run_on_pty(const char *n, int quiet, double run_for, char *buf,
                       size_t size, int *status) {
  pty_size_t none = {0, 0, 0, 0};
  run_on_pty_sized(n, quiet, run_for, buf, size, status, &none);
}

static void set_pty_cols(int m, int cols) {
  struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
  ASSERT_EQ(ioctl(m, TIOCSWINSZ, &ws), 0);
}

/* Redraws of the bar in buf[from, len). */
static int bars_in(const char *buf, size_t from, size_t len) {
  int k = 0;
  for (size_t i = from; i + 1 < len; i++) k += buf[i] == '\r' && buf[i + 1] == '[';
  return k;
}

static void run_on_pty_sized(const char *n, int quiet, double run_for, char *buf,
                             size_t size, int *status, const pty_size_t *sz) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT(m >= 0);
  ASSERT_EQ(grantpt(m), 0);
  ASSERT_EQ(unlockpt(m), 0);
  if (sz->cols > 0) set_pty_cols(m, sz->cols);
  int resized = 0;
  char *slave = ptsname(m);
  ASSERT(slave != NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setsid();
    int s = open(slave, O_RDWR);
    int nul = open("/dev/null", O_RDWR);
    if (s < 0 || nul < 0) _exit(126);
    dup2(nul, 0);
    dup2(nul, 1);
    dup2(s, 2);
    close(m);
    execl(CLI, CLI, "pi", n, "2", quiet ? "--quiet" : "--json", (char *)NULL);
    _exit(127);
  }
  /* A run that ends by itself may finish before it could be seen. */
  if (run_for < 10) wait_sigint_caught(pid);
  size_t len = 0, resize_len = 0;
  double t0 = mht_now();
  int sent = 0, st = 0, exited = 0;
  while (!exited || mht_now() - t0 < 0.05) {
    struct pollfd pfd = {m, POLLIN, 0};
    if (poll(&pfd, 1, 10) > 0 && (pfd.revents & POLLIN)) {
      ssize_t r = read(m, buf + len, size - 1 - len);
      if (r > 0) len += (size_t)r;
    }
    double t = mht_now() - t0;
    int late = t > run_for + 15; /* stop waiting for events */
    if (sz->resize_cols > 0 && !resized && t > sz->resize_at &&
        (!sz->min_bars || late || bars_in(buf, 0, len) >= 1)) {
      set_pty_cols(m, sz->resize_cols);
      resized = 1;
      resize_len = len;
    }
    if (!sent && t > run_for &&
        (!sz->min_bars || late ||
         (bars_in(buf, 0, len) >= sz->min_bars &&
          (!sz->resize_cols || (resized && bars_in(buf, resize_len, len) >= 2))))) {
      kill(pid, SIGINT);
      sent = 1;
    }
    if (!exited && waitpid(pid, &st, WNOHANG) == pid) exited = 1;
    if (mht_now() - t0 > run_for + 35) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      mht_fail(__FILE__, __LINE__, "the command did not end");
    }
    if (exited && !(pfd.revents & POLLIN)) break;
  }
  /* What the command wrote just before it exited may still wait in the pty
   * (the loop above can see the exit first on a loaded machine): read it
   * all; the master reads EIO once it is empty and the slave closed. */
  while (len < size - 1) {
    struct pollfd pfd = {m, POLLIN, 0};
    if (poll(&pfd, 1, 200) <= 0 || !(pfd.revents & POLLIN)) break;
    ssize_t r = read(m, buf + len, size - 1 - len);
    if (r <= 0) break;
    len += (size_t)r;
  }
  buf[len] = 0;
  close(m);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(progress_bar) {
  static char buf[1 << 16];
  int st;
  /* A long run on a terminal shows the bar, on stderr, after a second. */
  run_on_pty("1e13", 0, 2.0, buf, sizeof buf, &st);
  ASSERT_EQ(st, 130);
  if (!strstr(buf, "points/s") || !strstr(buf, "%") || !strstr(buf, "\r["))
    mht_fail(__FILE__, __LINE__, "no progress bar in '%s'", buf);
  /* The bar is wiped before the command writes anything else. */
  ASSERT(strstr(buf, "\r\033[K") != NULL);
  ASSERT(strstr(buf, "manyhands: interrupted") != NULL);
  /* --quiet: no bar, only the message. */
  run_on_pty("1e13", 1, 2.0, buf, sizeof buf, &st);
  ASSERT_EQ(st, 130);
  ASSERT(strstr(buf, "points/s") == NULL);
  ASSERT(strstr(buf, "manyhands: interrupted") != NULL);
  /* A run shorter than a second never shows it. */
  run_on_pty("1e6", 0, 30.0, buf, sizeof buf, &st);
  ASSERT_EQ(st, 0);
  ASSERT_EQ(strlen(buf), 0);
}

/* The bar's text never reaches the last column, at any width. */
TEST(progress_format_fits) {
  static const double fracs[] = {0, 0.004, 0.5, 0.999, 1};
  static const double rates[] = {0, 1, 3.3e8, 1.234e12};
  static const double etas[] = {0, 59.4, 3599, 86399, 1e7, 1e15};
  char buf[512];
  for (int cols = 1; cols <= 250; cols++)
    for (size_t f = 0; f < 5; f++)
      for (size_t r = 0; r < 4; r++)
        for (size_t e = 0; e < 6; e++) {
          size_t len = mhc_progress_format(buf, sizeof buf, cols, fracs[f],
                                           rates[r], etas[e]);
          ASSERT_EQ(len, strlen(buf));
          if ((int)len > cols - 1 && len > 0)
            mht_fail(__FILE__, __LINE__, "%zu characters at %d columns: '%s'",
                     len, cols, buf);
          ASSERT(strchr(buf, '\n') == NULL && strchr(buf, '\r') == NULL);
        }
  /* What is dropped, and when: all of it at 80, the bar and percentage at
   * 40, only the percentage at 12. */
  mhc_progress_format(buf, sizeof buf, 80, 0.5, 3.3e8, 125);
  ASSERT(buf[0] == '[' && strstr(buf, " 50.0%") && strstr(buf, "points/s") &&
         strstr(buf, "2 min 05 s left"));
  mhc_progress_format(buf, sizeof buf, 40, 0.5, 3.3e8, 125);
  ASSERT(buf[0] == '[' && strstr(buf, " 50.0%") && !strstr(buf, "points/s"));
  mhc_progress_format(buf, sizeof buf, 12, 0.5, 3.3e8, 125);
  ASSERT_STREQ(buf, " 50.0%");
}

/* Check what a run on a `cols`-wide terminal drew: every redraw (the text
 * between two "\r") fits in cols - 1 columns, and no line was left behind
 * before the final message.  Returns the widest redraw. */
static int check_bar_fits(const char *out, int cols, int *bars) {
  const char *msg = strstr(out, "manyhands: interrupted");
  ASSERT(msg != NULL);
  for (const char *p = out; p < msg; p++)
    if (*p == '\n') mht_fail(__FILE__, __LINE__, "a line was left: '%s'", out);
  int widest = 0;
  *bars = 0;
  for (const char *p = out; p < msg;) {
    const char *cr = strchr(p, '\r');
    const char *end = cr && cr < msg ? cr : msg;
    int width = 0;
    for (const char *q = p; q < end; q++) {
      if (*q == '\033') { /* skip an escape sequence up to its final letter */
        while (q < end && !((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))) q++;
        continue;
      }
      width++;
    }
    if (width > cols - 1)
      mht_fail(__FILE__, __LINE__, "a redraw %d wide on %d columns: '%.*s'",
               width, cols, (int)(end - p), p);
    if (width > widest) widest = width;
    if (width > 0) ++*bars;
    p = end + (end == cr);
    if (end == msg) break;
  }
  return widest;
}

TEST(progress_bar_fits_terminal) {
  static char buf[1 << 16];
  int st, bars;
  /* 40 columns from the terminal itself. */
  /* Events, not times: SIGINT once 2 bars are drawn (and 2 after a resize). */
  pty_size_t forty = {40, 0, 0, 2};
  run_on_pty_sized("1e13", 0, 2.5, buf, sizeof buf, &st, &forty);
  ASSERT_EQ(st, 130);
  int w = check_bar_fits(buf, 40, &bars);
  ASSERT_GE(bars, 2);
  ASSERT_GE(w, 20);
  /* A terminal that does not know its size: COLUMNS says it. */
  setenv("COLUMNS", "40", 1);
  pty_size_t unknown = {0, 0, 0, 2};
  run_on_pty_sized("1e13", 0, 2.5, buf, sizeof buf, &st, &unknown);
  unsetenv("COLUMNS");
  ASSERT_EQ(st, 130);
  check_bar_fits(buf, 40, &bars);
  ASSERT_GE(bars, 2);
  /* Widened from 40 to 100 columns mid-run (SIGWINCH): the bar grows, and
   * narrowed from 100 to 30 it shrinks at once. */
  pty_size_t wider = {40, 100, 2.0, 2};
  run_on_pty_sized("1e13", 0, 3.5, buf, sizeof buf, &st, &wider);
  ASSERT_EQ(st, 130);
  ASSERT_GT(check_bar_fits(buf, 100, &bars), 39);
  pty_size_t narrower = {100, 30, 2.0, 2};
  run_on_pty_sized("1e13", 0, 3.5, buf, sizeof buf, &st, &narrower);
  ASSERT_EQ(st, 130);
  /* The last redraw (after the resize) fits 30 columns. */
  const char *msg = strstr(buf, "manyhands: interrupted");
  ASSERT(msg != NULL);
  const char *last = buf, *p;
  for (p = buf; p < msg; p++)
    if (*p == '\r' && p + 1 < msg && p[1] != '\033') last = p + 1;
  const char *esc = strchr(last, '\033');
  ASSERT(esc != NULL);
  if (esc - last > 29)
    mht_fail(__FILE__, __LINE__, "last redraw %d wide after narrowing to 30",
             (int)(esc - last));
}

/* ---- the tutorial's montecarlo.py ------------------------------------------------------ */

TEST(example_montecarlo) {
  /* Full size (N = 10^7) normally; smaller under the sanitizers. */
  const char *n = mht_scaled(10) >= 10 ? "10000000" : "1000000";
  static char path[] = MONTECARLO;
  char *argv[] = {path, (char *)(uintptr_t)n, NULL};
  mht_proc_result_t r;
  ASSERT_EQ(mht_run(argv, 120, &r), 0);
  ASSERT(!r.timed_out);
  assert_ok(&r, "montecarlo");
  char *lines[40];
  int count = split_lines(r.out, lines, 40);
  if (count != 25) mht_fail(__FILE__, __LINE__, "%d lines:\n%s", count, r.out);
  /* The last line compares the two times. */
  ASSERT(strncmp(lines[24], "5 ", 2) == 0 && strstr(lines[24], " took ") != NULL);
  ASSERT(strstr(lines[24], "times as fast") || strstr(lines[24], "no faster"));
  static const int procs[] = {1, 5};
  for (int set = 0; set < 2; set++) {
    char **l = lines + set * 12;
    for (int i = 0; i < 10; i++) {
      char *end;
      double v = strtod(l[i], &end);
      ASSERT(*end == 0);
      ASSERT_EQ(strlen(l[i]), 9); /* 3.1415927 */
      ASSERT(v > 3.1 && v < 3.2);
    }
    char *end;
    ASSERT(strtod(l[10], &end) > 0 && *end == 0);
    /* Processes as in the tutorial; threads when this build has no process
     * backend, which the program then says on stderr. */
    int fallback = strstr(r.err, "using threads") != NULL;
    char want[96];
    snprintf(want, sizeof want, "%s total iterations with %d %s", n, procs[set],
             fallback ? "threads" : "processes");
    ASSERT_STREQ(l[11], want);
  }
  mht_proc_free(&r);
  /* --backend threads is accepted, junk is not. */
  char thr[] = "--backend=threads", small[] = "100000";
  char *argv2[] = {path, thr, small, NULL};
  ASSERT_EQ(mht_run(argv2, 60, &r), 0);
  assert_ok(&r, "montecarlo threads");
  ASSERT(strstr(r.out, "100000 total iterations with 5 processes") == NULL);
  ASSERT(strstr(r.out, "100000 total iterations with 5 threads") != NULL);
  mht_proc_free(&r);
  char nopt[] = "--n", thou[] = "1000";
  char *argv4[] = {path, nopt, thou, NULL};
  ASSERT_EQ(mht_run(argv4, 60, &r), 0);
  assert_ok(&r, "montecarlo --n 1000");
  ASSERT(strstr(r.out, "\n1000 total iterations with 5 ") != NULL);
  mht_proc_free(&r);
  char junk[] = "--backend=gpu";
  char *argv3[] = {path, junk, NULL};
  ASSERT_EQ(mht_run(argv3, 10, &r), 0);
  ASSERT(r.exited && r.status == 2 && r.out_len == 0);
  mht_proc_free(&r);
}
