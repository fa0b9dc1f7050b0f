/* SPDX-License-Identifier: MIT */
/* timeline.c - one bar per worker over time, drawn by gnuplot from a trace.
 *
 * Reads back the file mh_trace_stop() wrote (one event per line, the layout
 * docs/trace.md describes), keeps the slices and marks of the worker tracks
 * (thread, process and rank workers; the main thread and the dispatcher are
 * left out), and draws for each worker: idle time as a pale bar from the
 * start of the trace to the end of the last slice of any worker, busy time
 * (the innermost slices: blocks, tasks, chunks) filled, the tail (after the worker's own last slice,
 * while others still work) in a colour of its own, deaths as crosses.  The
 * gap before the first slice is the serial start-up the tutorial's Amdahl
 * talks about.  Single-threaded; everything is freed before return.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct slice {
  double t0, t1; /* seconds since the trace started */
} slice_t;

typedef struct track {
  int pid, tid;
  char name[64];
  int worker;    /* named as a worker */
  int order;     /* its number, for sorting */
  slice_t *s;
  size_t n, cap;
  double *deaths;
  size_t nd, capd;
  double busy, last;
} track_t;

typedef struct timeline {
  const char *chart, *title;
  int kind;
  track_t *t;
  size_t n;
  double end;
} timeline_t;

static track_t *track_of(timeline_t *tl, size_t *cap, int pid, int tid) {
  for (size_t i = 0; i < tl->n; i++)
    if (tl->t[i].pid == pid && tl->t[i].tid == tid) return &tl->t[i];
  if (tl->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    track_t *t = realloc(tl->t, nc * sizeof *t);
    if (!t) return NULL;
    tl->t = t;
    *cap = nc;
  }
  track_t *t = &tl->t[tl->n++];
  memset(t, 0, sizeof *t);
  t->pid = pid;
  t->tid = tid;
  return t;
}

static int num_after(const char *line, const char *key, double *v) {
  const char *p = strstr(line, key);
  if (!p) return 0;
  *v = strtod(p + strlen(key), NULL);
  return 1;
}

static int push(void **arr, size_t *n, size_t *cap, size_t size) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, nc * size);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
  }
  (*n)++;
  return 0;
}

/* Read the trace; -1 when it cannot be read. */
static int timeline_read(timeline_t *tl, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[1024];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "{\"name\":\"", 9)) continue;
    double pid, tid, ts, dur;
    if (!num_after(line, "\"pid\":", &pid) || !num_after(line, "\"tid\":", &tid)) continue;
    track_t *t = track_of(tl, &cap, (int)pid, (int)tid);
    if (!t) goto oom;
    if (strstr(line, "\"ph\":\"M\"")) {
      const char *p = strstr(line, "\"args\":{\"name\":\"");
      if (!p || strncmp(line, "{\"name\":\"thread_name\"", 21)) continue;
      p += 16;
      size_t k = 0;
      while (*p && *p != '"' && k + 1 < sizeof t->name) t->name[k++] = *p++;
      t->name[k] = 0;
      int num = 0;
      if (sscanf(t->name, "thread worker %d", &num) == 1 ||
          sscanf(t->name, "process worker %d", &num) == 1 ||
          sscanf(t->name, "rank %d", &num) == 1) {
        t->worker = 1;
        t->order = num;
      }
      continue;
    }
    if (!num_after(line, "\"ts\":", &ts)) continue;
    if (strstr(line, "\"ph\":\"X\"") && num_after(line, "\"dur\":", &dur)) {
      if (push((void **)&t->s, &t->n, &t->cap, sizeof *t->s)) goto oom;
      t->s[t->n - 1] = (slice_t){ts * 1e-6, (ts + dur) * 1e-6};
    } else if (strstr(line, "\"name\":\"worker died\"")) {
      if (push((void **)&t->deaths, &t->nd, &t->capd, sizeof *t->deaths)) goto oom;
      t->deaths[t->nd - 1] = ts * 1e-6;
    }
  }
  fclose(f);
  return 0;
oom:
  fclose(f);
  return -1;
}

static int slice_cmp(const void *a, const void *b) {
  const slice_t *x = a, *y = b;
  if (x->t0 != y->t0) return x->t0 < y->t0 ? -1 : 1;
  return x->t1 > y->t1 ? -1 : x->t1 < y->t1; /* the outer one first */
}

/* Slices of one track nest (a task that runs a block, a worker that helps
 * while it waits, a stolen spawn that runs its subtree): keep the innermost
 * ones, which do not overlap, so that busy time is the work itself and not
 * the wait of a task around it (the pi job on threads is one root task
 * whose worker spends its end waiting for a thief's blocks).  Then sum. */
static void keep_leaves(track_t *t) {
  qsort(t->s, t->n, sizeof *t->s, slice_cmp);
  size_t k = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (i + 1 < t->n && t->s[i + 1].t0 < t->s[i].t1) continue; /* holds the next */
    t->s[k++] = t->s[i];
  }
  t->n = k;
  t->busy = 0;
  for (size_t i = 0; i < k; i++) {
    t->busy += t->s[i].t1 - t->s[i].t0;
    if (t->s[i].t1 > t->last) t->last = t->s[i].t1;
  }
}

static int track_cmp(const void *a, const void *b) {
  const track_t *x = a, *y = b;
  int c = strncmp(x->name, y->name, 7); /* "thread " / "process" / "rank" */
  if (c) return c;
  if (x->order != y->order) return x->order < y->order ? -1 : 1;
  return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void timeline_script(FILE *f, void *arg) {
  timeline_t *tl = arg;
  size_t n = tl->n;
  int h = 140 + 34 * (int)n;
  if (tl->kind == 1)
    fprintf(f, "set terminal svg size 900,%d dynamic enhanced font 'Sans,12' "
               "background rgb 'white'\n", h);
  else
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
               "  set terminal pngcairo size 900,%d enhanced font 'Sans,11'\n"
               "} else {\n  set terminal png size 900,%d\n}\n", h, h);
  fputs("set encoding utf8\nset output ", f);
  mhc_plot_put_quoted(f, tl->chart);
  fputs("\nset title ", f);
  mhc_plot_put_quoted(f, tl->title);
  fprintf(f, "\nset xlabel 'seconds since tracing started'\n"
             "set xrange [0:%.9g]\nset yrange [%g:%g]\n"
             "set key outside bottom center horizontal\n"
             "set style fill solid 1.0 noborder\nset grid xtics\nset ytics (",
          tl->end * 1.02, (double)n - 0.3, -0.7); /* worker 0 on top */
  for (size_t i = 0; i < n; i++) {
    char label[128];
    /* '%%' in gnuplot: a tic label is a format, where % must be doubled. */
    snprintf(label, sizeof label, "%s  %.0f%%%% busy", tl->t[i].name,
             tl->end > 0 ? 100.0 * tl->t[i].busy / tl->end : 0.0);
    fputs(i ? ", " : "", f);
    mhc_plot_put_quoted(f, label);
    fprintf(f, " %zu", i);
  }
  fputs(")\n$idle << EOD\n", f);
  for (size_t i = 0; i < n; i++) fprintf(f, "%.9g %zu %.9g\n", tl->end / 2, i, tl->end / 2);
  fputs("EOD\n$busy << EOD\n", f);
  size_t nbusy = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < tl->t[i].n; k++, nbusy++) {
      const slice_t *s = &tl->t[i].s[k];
      fprintf(f, "%.9g %zu %.9g\n", (s->t0 + s->t1) / 2, i, (s->t1 - s->t0) / 2);
    }
  fputs("EOD\n$tail << EOD\n", f);
  size_t ntail = 0;
  for (size_t i = 0; i < n; i++) {
    const track_t *t = &tl->t[i];
    if (!t->n || t->nd || tl->end - t->last <= 0) continue;
    fprintf(f, "%.9g %zu %.9g\n", (t->last + tl->end) / 2, i, (tl->end - t->last) / 2);
    ntail++;
  }
  fputs("EOD\n$deaths << EOD\n", f);
  size_t ndeath = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < tl->t[i].nd; k++, ndeath++)
      fprintf(f, "%.9g %zu\n", tl->t[i].deaths[k], i);
  fputs("EOD\n", f);
  fputs("plot $idle using 1:2:3:(0.34) with boxxyerror fc rgb '#e6e6e6' "
        "title 'idle'", f);
  if (nbusy)
    fputs(", \\\n  $busy using 1:2:3:(0.34) with boxxyerror fc rgb '#1f77b4' "
          "title 'busy (a block, task or chunk)'", f);
  if (ntail)
    fputs(", \\\n  $tail using 1:2:3:(0.34) with boxxyerror fc rgb '#ff9f40' "
          "title 'tail: done, waiting for the others'", f);
  if (ndeath)
    fputs(", \\\n  $deaths using 1:2 with points pt 2 ps 2 lw 2 lc rgb '#d62728' "
          "title 'worker died'", f);
  fputs("\nset output\n", f);
}

int mhc_timeline_draw(const char *trace, const char *chart, const char *title) {
  timeline_t tl = {chart, title, mhc_plot_kind(chart), NULL, 0, 0};
  int rc = -1;
  if (timeline_read(&tl, trace) != 0) {
    mhc_error("cannot read the trace %s to draw the timeline", trace);
    goto out;
  }
  /* Keep the workers' tracks only, in worker order. */
  size_t w = 0;
  for (size_t i = 0; i < tl.n; i++) {
    if (tl.t[i].worker) {
      tl.t[w++] = tl.t[i];
    } else {
      free(tl.t[i].s);
      free(tl.t[i].deaths);
    }
  }
  tl.n = w;
  if (!tl.n) {
    mhc_error("the trace has no worker activity: no timeline drawn");
    goto out;
  }
  qsort(tl.t, tl.n, sizeof *tl.t, track_cmp);
  for (size_t i = 0; i < tl.n; i++) {
    keep_leaves(&tl.t[i]);
    if (tl.t[i].last > tl.end) tl.end = tl.t[i].last;
    for (size_t k = 0; k < tl.t[i].nd; k++)
      if (tl.t[i].deaths[k] > tl.end) tl.end = tl.t[i].deaths[k];
  }
  rc = mhc_gnuplot(chart, timeline_script, &tl);
out:
  for (size_t i = 0; i < tl.n; i++) {
    free(tl.t[i].s);
    free(tl.t[i].deaths);
  }
  free(tl.t);
  return rc;
}
