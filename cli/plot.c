/* SPDX-License-Identifier: MIT */
/* plot.c - the speedup chart of a sweep, drawn by gnuplot.
 *
 * gnuplot is looked up on PATH when a chart is asked for, not at build time,
 * so the command builds and runs without it; when it is missing the caller
 * prints its table anyway and this file says how to get the chart.  The
 * script goes to gnuplot's standard input with the data inline (a gnuplot 5
 * data block), so no temporary file is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

int mhc_plot_kind(const char *path) {
  size_t len = path ? strlen(path) : 0;
  if (len < 5) return 0; /* at least one character before the extension */
  if (strcasecmp(path + len - 4, ".svg") == 0) return 1;
  if (strcasecmp(path + len - 4, ".png") == 0) return 2;
  return 0;
}

static int has_control(const char *s);

const char *mhc_plot_bad_name(const char *path) {
  if (!path || !*path) return "the chart file name is empty";
  if (has_control(path)) return "control characters in the chart file name";
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  /* "dir/.svg" is a hidden file named ".svg", not a chart name. */
  if (strlen(base) < 5 || mhc_plot_kind(base) == 0)
    return "the chart file must be named NAME.svg or NAME.png";
  return NULL;
}

int mhc_plot_probe(const char *path, int *created) {
  *created = 0;
  /* Create it if it is new (and remember that we did, so a run that fails
   * can take it away again); an existing file is opened as it is, not
   * truncated, so a failed run leaves the old chart untouched. */
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
  if (fd >= 0) {
    *created = 1;
  } else if (errno == EEXIST) {
    fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  }
  if (fd < 0) return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0)
    rc = -errno;
  else if (!S_ISREG(st.st_mode))
    rc = -EINVAL; /* a FIFO or a device is not a place for a chart */
  close(fd);
  if (rc != 0 && *created) {
    unlink(path);
    *created = 0;
  }
  return rc;
}

const char *mhc_find_on_path(const char *prog, char *buf, size_t size) {
  const char *path = getenv("PATH");
  if (!path || !*path) return NULL;
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t len = colon ? (size_t)(colon - path) : strlen(path);
    /* An empty PATH entry means the current directory. */
    int n = len ? snprintf(buf, size, "%.*s/%s", (int)len, path, prog)
                : snprintf(buf, size, "./%s", prog);
    struct stat st;
    if (n > 0 && (size_t)n < size && stat(buf, &st) == 0 &&
        S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
      return buf;
    if (!colon) break;
    path = colon + 1;
  }
  return NULL;
}

/* Write a string as a gnuplot single-quoted literal, where '' stands for '. */
static void put_quoted(FILE *f, const char *s) {
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'') fputc('\'', f);
    fputc(*s, f);
  }
  fputc('\'', f);
}

static int has_control(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
  return 0;
}

void mhc_plot_put_quoted(FILE *f, const char *s) { put_quoted(f, s); }

static void write_script(FILE *f, const char *path, int kind,
                         const mhc_sweep_row_t *rows, size_t n,
                         const mhc_amdahl_t *fit, const char *title, int cpus) {
  int pmax = rows[n - 1].workers;
  double ymax = pmax;
  for (size_t i = 0; i < n; i++) {
    if (rows[i].speedup > ymax) ymax = rows[i].speedup;
    if (rows[i].speedup_max > ymax) ymax = rows[i].speedup_max;
  }
  if (kind == 1) {
    fputs("set terminal svg size 800,520 dynamic enhanced "
          "font 'Sans,12' background rgb 'white'\n", f);
  } else {
    /* pngcairo draws smooth lines; the plain png terminal is the fallback. */
    fputs("if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 800,520 enhanced font 'Sans,11'\n"
          "} else {\n"
          "  set terminal png size 800,520\n"
          "}\n", f);
  }
  fputs("set encoding utf8\nset output ", f);
  put_quoted(f, path);
  fputs("\nset title ", f);
  put_quoted(f, title);
  double xmax = pmax + (pmax < 10 ? 0.5 : pmax * 0.05);
  fprintf(f, "\nset xlabel 'workers'\nset ylabel 'speedup'\n"
             "set key left top box opaque\nset grid\n"
             "set xrange [0:%g]\nset yrange [0:%g]\n",
          xmax, ymax * 1.35 + 0.3);
  if (pmax <= 16) fputs("set xtics 1\n", f);
  /* The CPU count: past it workers share CPUs, so the curve must flatten.
   * A vertical line when it falls on the chart, else a note. */
  if (cpus > 0 && cpus <= pmax) {
    fprintf(f, "set arrow from %d, graph 0 to %d, graph 1 nohead dt 4 lw 1.5 "
               "lc rgb '#2ca02c' back\n", cpus, cpus);
    /* Low on the chart: the key's box covers the top left. */
    fprintf(f, "set label '%d online CPU%s' at %d, graph 0.05 left offset "
               "0.6,0 textcolor rgb '#2ca02c' front\n", cpus,
            cpus == 1 ? "" : "s", cpus);
  } else if (cpus > 0) {
    fprintf(f, "set label '%d online CPUs (beyond the chart)' at graph 0.98, "
               "graph 0.97 right textcolor rgb '#2ca02c'\n", cpus);
  }
  fputs("set samples 400\n", f);
  fputs("$measured << EOD\n", f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%d %.9g %.9g %.9g\n", rows[i].workers, rows[i].speedup,
            rows[i].speedup_min, rows[i].speedup_max);
  fputs("EOD\n", f);
  /* Drawn in this order, so the fit (dashed) lies on top of the measured
   * line and shows where the two coincide.  The curves exist from one
   * worker on; 1/0 is gnuplot's "undefined". */
  fputs("plot (x >= 1 ? x : 1/0) title 'ideal (linear)' with lines dt 3 lw 1.5 "
        "lc rgb '#777777'", f);
  fprintf(f, ", \\\n  $measured using 1:2 notitle with lines lw 2 lc rgb '#d62728'"
             ", \\\n  $measured using 1:2:3:4 title 'measured: median, min..max "
             "of %d run%s' with yerrorbars pt 7 ps 1.2 lw 1.5 lc rgb '#d62728'",
          rows[0].runs, rows[0].runs == 1 ? "" : "s");
  if (fit && fit->ok && isfinite(fit->serial)) {
    fprintf(f, ", \\\n  (x >= 1 ? 1/(%.9g + (1-(%.9g))/x) : 1/0) title "
               "'Amdahl fit, serial fraction %.4f' with lines dt (10,6) lw 2.5 "
               "lc rgb '#1f77b4'",
            fit->serial, fit->serial, fit->serial);
  }
  fputs("\nset output\n", f);
}

typedef struct sweep_chart {
  const char *path;
  int kind;
  const mhc_sweep_row_t *rows;
  size_t n;
  const mhc_amdahl_t *fit;
  const char *title;
  int cpus;
} sweep_chart_t;

static void write_sweep(FILE *f, void *arg) {
  const sweep_chart_t *c = arg;
  write_script(f, c->path, c->kind, c->rows, c->n, c->fit, c->title, c->cpus);
}

int mhc_plot_sweep(const char *path, const mhc_sweep_row_t *rows, size_t n,
                   const mhc_amdahl_t *fit, const char *title, int cpus) {
  int kind = mhc_plot_kind(path);
  if (kind == 0 || n == 0) {
    mhc_error("cannot draw '%s': the chart file must end in .svg or .png", path);
    return -1;
  }
  if (has_control(title)) {
    mhc_error("cannot draw '%s': control characters in the title", path);
    return -1;
  }
  sweep_chart_t c = {path, kind, rows, n, fit, title, cpus};
  return mhc_gnuplot(path, write_sweep, &c);
}

int mhc_gnuplot(const char *path, void (*write)(FILE *f, void *arg), void *arg) {
  char gp[4096];
  if (has_control(path)) {
    mhc_error("cannot draw '%s': control characters in the file name", path);
    return -1;
  }
  if (!mhc_find_on_path("gnuplot", gp, sizeof gp)) {
    mhc_error("gnuplot was not found on PATH, so the chart %s was not drawn; "
              "install it (Debian/Ubuntu: apt-get install gnuplot-nox) and "
              "run again; the results above are complete", path);
    return 1;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    mhc_error("cannot start gnuplot: %s", strerror(errno));
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  char *argv[] = {gp, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, gp, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    mhc_error("cannot start %s: %s", gp, strerror(rc));
    return -1;
  }
  /* If gnuplot dies early the writes fail with EPIPE instead of killing us. */
  struct sigaction ign, old;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);
  FILE *f = fdopen(fds[1], "w");
  if (f) {
    write(f, arg);
    fclose(f);
  } else {
    close(fds[1]);
  }
  sigaction(SIGPIPE, &old, NULL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) {
      st = -1;
      break;
    }
  }
  struct stat sb;
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
      stat(path, &sb) != 0 || sb.st_size == 0) {
    mhc_error("gnuplot (%s) could not draw %s", gp, path);
    return -1;
  }
  return 0;
}
