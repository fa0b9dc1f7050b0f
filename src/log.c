/* SPDX-License-Identifier: MIT */
/* log.c - one whole "HH:MM:SS: message" line per call, in one write().
 *
 * The level and the descriptor are atomics read once per call, so the calls
 * need no lock; the line is assembled in a buffer on the caller's stack (or
 * an allocated one for long messages) and written with a single write(),
 * which the kernel keeps whole against other writers of the same pipe or
 * file up to PIPE_BUF bytes.  Partial writes (signals, full disks) are
 * continued; nothing here ever locks, so logging from a signal-free
 * multithreaded program cannot deadlock.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "manyhands/log.h"
#include "internal.h"

static atomic_int log_level = MH_LOG_INFO;
static atomic_int log_fd = 2;

int mh_log_set_level(int level) { return atomic_exchange(&log_level, level); }

int mh_log_get_level(void) { return atomic_load(&log_level); }

int mh_log_set_fd(int fd) {
  if (fd < 0) return MH_EINVAL;
  return atomic_exchange(&log_fd, fd);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int mh_vlog(int level, const char *fmt, va_list ap) {
  if (!fmt) return MH_EINVAL;
  if (level < atomic_load(&log_level)) return 0;
  char stackbuf[1024];
  char *buf = stackbuf;
  size_t cap = sizeof stackbuf;

  /* localtime_r() takes a process-wide lock; each thread converts only
   * when the second changes and reuses its last "HH:MM:SS" otherwise. */
  static _Thread_local time_t last_sec = (time_t)-1;
  static _Thread_local char last_stamp[16];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != last_sec) {
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    snprintf(last_stamp, sizeof last_stamp, "%02d:%02d:%02d: ",
             tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
    last_sec = ts.tv_sec;
  }
  int head = (int)strlen(last_stamp);
  memcpy(buf, last_stamp, (size_t)head);
  va_list ap2;
  va_copy(ap2, ap);
  int body = vsnprintf(buf + head, cap - (size_t)head - 1, fmt, ap);
  if (body < 0) body = 0;
  size_t need = (size_t)head + (size_t)body + 1; /* + newline */
  if (need > cap - 1) {
    char *big = mh__malloc(need + 1);
    if (big) {
      memcpy(big, buf, (size_t)head);
      vsnprintf(big + head, (size_t)body + 1, fmt, ap2);
      buf = big;
      cap = need + 1;
    } else {
      need = cap - 1; /* truncated, still one line */
    }
  }
  va_end(ap2);
  buf[need - 1] = '\n';
  int rc = write_all(atomic_load(&log_fd), buf, need);
  if (buf != stackbuf) mh__free(buf);
  return rc;
}

int mh_log(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = mh_vlog(level, fmt, ap);
  va_end(ap);
  return rc;
}

#define MH__LOG_AT(fn, lvl)                 \
  int fn(const char *fmt, ...) {            \
    va_list ap;                             \
    va_start(ap, fmt);                      \
    int rc = mh_vlog(lvl, fmt, ap);         \
    va_end(ap);                             \
    return rc;                              \
  }
MH__LOG_AT(mh_log_debug, MH_LOG_DEBUG)
MH__LOG_AT(mh_log_info, MH_LOG_INFO)
MH__LOG_AT(mh_log_warning, MH_LOG_WARNING)
MH__LOG_AT(mh_log_error, MH_LOG_ERROR)
