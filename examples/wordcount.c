/* SPDX-License-Identifier: MIT */
/* wordcount.c - a process pool reads text files and returns, per file, its
 * word counts: a result whose size only the task knows (issue 10 item 4).
 *
 *     def count(path):
 *         words = collections.Counter(open(path).read().split())
 *         return "".join(f"{w} {n}\n" for w, n in words.most_common())
 *     with multiprocessing.Pool() as p:
 *         for path, text in zip(paths, p.map(count, paths)): print(path, text)
 *
 * Usage: wordcount [--workers N] FILE...   Each file's block starts with
 * "== FILE (W words, U distinct)" and lists "word count" lines, most
 * frequent first (ties in byte order).  A word is a run of bytes that are
 * not white space.  Exit 0, 1 when a file could not be read (its block says
 * why), 2 on bad usage.  The report is built with mh_task_output, grown as
 * lines are added, and mh_executor_map_bytes hands each one to main.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manyhands.h"

/* One task's input: the path, plain data (the pool copies it). */
typedef struct {
  char path[4096];
} job_t;

typedef struct {
  char *w;
  size_t len;
  long n;
} word_t;

static int by_count(const void *a, const void *b) {
  const word_t *x = a, *y = b;
  if (x->n != y->n) return x->n < y->n ? 1 : -1;
  size_t m = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->w, y->w, m);
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' ||
         c == '\f';
}

/* Read the whole file into a NUL-free buffer; 0 or -errno. */
static int slurp(const char *path, char **buf, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return -errno;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  for (;;) {
    if (!b) {
      fclose(fp);
      return -ENOMEM;
    }
    n += fread(b + n, 1, cap - n, fp);
    if (n < cap) break;
    char *nb = realloc(b, cap *= 2);
    if (!nb) free(b);
    b = nb;
  }
  int err = ferror(fp) ? -EIO : 0;
  fclose(fp);
  *buf = b, *len = n;
  return err;
}

/* The task: count the words of one file and write the report with
 * mh_task_output, growing it as lines are added. */
static int count_words(const void *in, size_t in_size, void *out,
                       size_t out_size, void *ctx) {
  (void)in_size, (void)out, (void)out_size, (void)ctx;
  const job_t *job = in;
  char *text = NULL;
  size_t len = 0;
  int rc = slurp(job->path, &text, &len);
  if (rc) {
    free(text);
    return rc; /* -errno: MH_ENOENT, MH_EACCES, ... (a failed task has no output) */
  }
  /* An open-addressing table of words, grown at half load. */
  size_t cap = 1024, used = 0, total = 0;
  word_t *tab = calloc(cap, sizeof *tab);
  for (size_t i = 0; tab && i < len;) {
    while (i < len && is_space(text[i])) i++;
    size_t s = i;
    while (i < len && !is_space(text[i])) i++;
    if (i == s) break;
    total++;
    uint64_t h = 1469598103934665603ULL;
    for (size_t k = s; k < i; k++) h = (h ^ (unsigned char)text[k]) * 1099511628211ULL;
    size_t j = h & (cap - 1);
    while (tab[j].w && !(tab[j].len == i - s && memcmp(tab[j].w, text + s, i - s) == 0))
      j = (j + 1) & (cap - 1);
    if (tab[j].w) {
      tab[j].n++;
      continue;
    }
    tab[j] = (word_t){text + s, i - s, 1};
    if (++used * 2 > cap) { /* rehash */
      word_t *nt = calloc(cap * 2, sizeof *nt);
      if (!nt) {
        free(tab);
        tab = NULL;
        break;
      }
      for (size_t k = 0; k < cap; k++) {
        if (!tab[k].w) continue;
        uint64_t g = 1469598103934665603ULL;
        for (size_t q = 0; q < tab[k].len; q++)
          g = (g ^ (unsigned char)tab[k].w[q]) * 1099511628211ULL;
        size_t p = g & (cap * 2 - 1);
        while (nt[p].w) p = (p + 1) & (cap * 2 - 1);
        nt[p] = tab[k];
      }
      free(tab);
      tab = nt;
      cap *= 2;
    }
  }
  if (!tab) {
    free(text);
    return MH_ENOMEM;
  }
  size_t m = 0;
  for (size_t k = 0; k < cap; k++)
    if (tab[k].w) tab[m++] = tab[k];
  qsort(tab, m, sizeof *tab, by_count);
  /* The report: a header line, then one line per distinct word. */
  size_t ocap = 256, olen = 0;
  char *o = mh_task_output(ocap);
  if (o) olen = (size_t)snprintf(o, ocap, "(%zu words, %zu distinct)\n", total, m);
  for (size_t k = 0; o && k < m; k++) {
    size_t need = olen + tab[k].len + 24;
    if (need > ocap) {
      while (ocap < need) ocap *= 2;
      o = mh_task_output(ocap);
      if (!o) break;
    }
    memcpy(o + olen, tab[k].w, tab[k].len);
    olen += tab[k].len;
    olen += (size_t)snprintf(o + olen, ocap - olen, " %ld\n", tab[k].n);
  }
  if (o) mh_task_output(olen); /* the exact size */
  free(tab);
  free(text);
  return o ? 0 : MH_ENOMEM;
}

static void usage(FILE *to) {
  fprintf(to, "usage: wordcount [--workers N] FILE...\n"
              "Count the words of each FILE on a process pool; print, per file,\n"
              "\"word count\" lines, most frequent first.\n"
              "  --workers N  worker processes (default: one per CPU)\n"
              "  --help       this text\n");
}

int main(int argc, char **argv) {
  int workers = 0, first = 1;
  for (; first < argc; first++) {
    const char *a = argv[first];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--workers") == 0 && first + 1 < argc) {
      char *end;
      long v = strtol(argv[++first], &end, 10);
      if (*end || v < 1 || v > 4096) {
        fprintf(stderr, "manyhands: --workers wants 1..4096, not '%s'\n", argv[first]);
        return 2;
      }
      workers = (int)v;
    } else if (strcmp(a, "--") == 0) {
      first++;
      break;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "manyhands: unknown option '%s' (try --help)\n", a);
      return 2;
    } else {
      break;
    }
  }
  size_t n = (size_t)(argc - first);
  if (n == 0) {
    fprintf(stderr, "manyhands: no files given (try --help)\n");
    return 2;
  }
  job_t *jobs = calloc(n, sizeof *jobs);
  void **outs = calloc(n, sizeof *outs);
  size_t *sizes = calloc(n, sizeof *sizes);
  int *st = calloc(n, sizeof *st);
  if (!jobs || !outs || !sizes || !st) {
    fprintf(stderr, "manyhands: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (strlen(argv[first + i]) >= sizeof jobs[i].path) {
      fprintf(stderr, "manyhands: path too long: %s\n", argv[first + i]);
      return 2;
    }
    strcpy(jobs[i].path, argv[first + i]);
  }
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = workers;
  mh_executor_t *ex;
  int rc = mh_executor_new(&ex, &o);
  if (rc) {
    fprintf(stderr, "manyhands: cannot start the pool: %s\n", mh_strerror(rc));
    return 1;
  }
  rc = mh_executor_map_bytes(ex, count_words, NULL, jobs, sizeof *jobs, n, 1, st,
                             outs, sizes);
  mh_executor_free(ex);
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    printf("== %s ", jobs[i].path);
    if (st[i] == 0)
      fwrite(outs[i], 1, sizes[i], stdout);
    else
      printf("cannot be counted: %s\n", mh_strerror(st[i]));
    bad |= st[i] != 0;
    mh_bytes_free(outs[i]);
  }
  (void)rc;
  free(jobs), free(outs), free(sizes), free(st);
  return bad ? 1 : 0;
}
