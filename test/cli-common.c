/* SPDX-License-Identifier: MIT */
/* cli-common.c - the helpers the test-cli*.c files share (see cli-common.h). */
#include <math.h>
#include <signal.h>
#include <stdarg.h>

#include "cli-common.h"

void cli(mht_proc_result_t *res, double timeout, ...) {
  char *argv[64];
  int n = 0;
  static char path[] = CLI;
  argv[n++] = path;
  va_list ap;
  va_start(ap, timeout);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 63) argv[n++] = (char *)(uintptr_t)a;
  va_end(ap);
  argv[n] = NULL;
  ASSERT_EQ(mht_run(argv, timeout, res), 0);
  ASSERT(!res->timed_out);
}

void assert_usage_error(const mht_proc_result_t *r, const char *what) {
  if (!(r->exited && r->status == 2 && r->out_len == 0 &&
        strncmp(r->err, "manyhands: ", 11) == 0)) {
    mht_fail(__FILE__, __LINE__, "%s: exit %d (exited %d), stdout '%s', stderr '%s'",
             what, r->status, r->exited, r->out, r->err);
  }
  /* One line, not a usage dump. */
  ASSERT(strchr(r->err, '\n') == r->err + r->err_len - 1);
}

void assert_ok(const mht_proc_result_t *r, const char *what) {
  if (!(r->exited && r->status == 0))
    mht_fail(__FILE__, __LINE__, "%s: exit %d (exited %d), stderr '%s'", what,
             r->status, r->exited, r->err);
}

/* ---- a small reader for our flat JSON objects ---------------------------- */

const char *json_at(const char *obj, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(obj, pat);
  if (!p) mht_fail(__FILE__, __LINE__, "no key %s in %s", key, obj);
  return p + strlen(pat);
}

uint64_t json_u64(const char *obj, const char *key) {
  return strtoull(json_at(obj, key), NULL, 10);
}

double json_num(const char *obj, const char *key) {
  return strtod(json_at(obj, key), NULL);
}

void json_str(const char *obj, const char *key, char *buf, size_t size) {
  const char *p = json_at(obj, key);
  ASSERT(*p == '"');
  const char *e = strchr(p + 1, '"');
  ASSERT(e != NULL);
  snprintf(buf, size, "%.*s", (int)(e - p - 1), p + 1);
}

int split_lines(char *s, char **lines, int cap) {
  int n = 0;
  char *save = NULL;
  for (char *l = strtok_r(s, "\n", &save); l && n < cap; l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;
  return n;
}

void check_run_object(const char *o, uint64_t n, int workers) {
  uint64_t inside = json_u64(o, "inside");
  ASSERT_UEQ(json_u64(o, "n"), n);
  ASSERT_UEQ(json_u64(o, "done"), n);
  ASSERT_EQ(json_u64(o, "workers"), workers);
  ASSERT_ULE(inside, n);
  double pi = json_num(o, "pi");
  ASSERT_DEQ(pi, 4.0 * (double)inside / (double)n, 1e-12);
  double p = (double)inside / (double)n;
  ASSERT_DEQ(json_num(o, "stderr"), 4.0 * sqrt(p * (1 - p) / (double)n), 1e-9);
  ASSERT_DEQ(json_num(o, "abs_error"), fabs(pi - M_PI), 1e-12);
  double sec = json_num(o, "seconds");
  ASSERT(sec > 0);
  ASSERT_DEQ(json_num(o, "points_per_second") * sec / (double)n, 1.0, 1e-6);
  char kernel[32];
  mh_pi_kernel_t k;
  json_str(o, "kernel", kernel, sizeof kernel);
  ASSERT_OK(mh_pi_kernel_parse(kernel, &k));
  ASSERT(k != MH_PI_KERNEL_AUTO);
  ASSERT(strstr(o, "\"interrupted\":false") != NULL);
}

void wait_sigint_caught(pid_t pid) {
  char status_path[64];
  snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)pid);
  double t0 = mht_now();
  for (;;) {
    char sb[4096];
    FILE *sf = fopen(status_path, "r");
    ASSERT(sf != NULL);
    size_t sl = fread(sb, 1, sizeof sb - 1, sf);
    fclose(sf);
    sb[sl] = 0;
    const char *cgt = strstr(sb, "SigCgt:");
    if (cgt && (strtoull(cgt + 7, NULL, 16) & (1u << (SIGINT - 1)))) return;
    if (mht_now() - t0 > 20) {
      kill(-pid, SIGKILL);
      mht_fail(__FILE__, __LINE__, "the command never installed its SIGINT handler");
    }
    mht_sleep(0.005);
  }
}

size_t read_text_file(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  if (!f) mht_fail(__FILE__, __LINE__, "cannot open %s", path);
  size_t len = fread(buf, 1, size - 1, f);
  buf[len] = 0;
  fclose(f);
  return len;
}
