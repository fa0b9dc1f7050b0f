/* SPDX-License-Identifier: MIT */
/* test-log.c - the "HH:MM:SS: message" format, levels, errors, long lines,
 * and many threads and processes logging into one pipe with every line
 * intact. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* Read everything available from a non-blocking pipe into buf. */
static size_t drain(int fd, char *buf, size_t cap) {
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r <= 0) break;
    len += (size_t)r;
    if (len == cap - 1) break;
  }
  buf[len] = 0;
  return len;
}

static int log_pipe(int p[2]) {
  if (pipe2(p, O_CLOEXEC)) return -1;
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  return 0;
}

/* "HH:MM:SS: " with plausible digits. */
static int has_stamp(const char *s) {
  for (int i = 0; i < 8; i++) {
    if (i == 2 || i == 5) {
      if (s[i] != ':') return 0;
    } else if (s[i] < '0' || s[i] > '9') {
      return 0;
    }
  }
  return s[8] == ':' && s[9] == ' ';
}

TEST(format_and_levels) {
  int p[2];
  ASSERT_EQ(log_pipe(p), 0);
  int old_fd = mh_log_set_fd(p[1]);
  ASSERT_EQ(old_fd, 2); /* the default is standard error */
  ASSERT_EQ(mh_log_get_level(), MH_LOG_INFO);
  char buf[4096];

  /* The log reads CLOCK_REALTIME; time() may read a coarser clock that lags
   * it by a tick, which made this check fail when a second began between. */
  struct timespec tsb, tsa;
  clock_gettime(CLOCK_REALTIME, &tsb);
  ASSERT_OK(mh_log_info("Thread %d: starting", 1));
  clock_gettime(CLOCK_REALTIME, &tsa);
  time_t before = tsb.tv_sec, after = tsa.tv_sec;
  ASSERT_EQ(drain(p[0], buf, sizeof buf), 10 + strlen("Thread 1: starting") + 1);
  ASSERT(has_stamp(buf));
  ASSERT_STREQ(buf + 10, "Thread 1: starting\n");
  /* The stamp is the local wall-clock time of the call. */
  struct tm tb, ta;
  localtime_r(&before, &tb);
  localtime_r(&after, &ta);
  int h = atoi(buf), m = atoi(buf + 3), sec = atoi(buf + 6);
  int got = h * 3600 + m * 60 + sec;
  int lo = tb.tm_hour * 3600 + tb.tm_min * 60 + tb.tm_sec;
  int hi = ta.tm_hour * 3600 + ta.tm_min * 60 + ta.tm_sec;
  ASSERT((got >= lo && got <= hi) || hi < lo); /* hi < lo: midnight passed */

  /* DEBUG is filtered at the default level INFO. */
  ASSERT_OK(mh_log_debug("hidden %s", "debug"));
  ASSERT_EQ(drain(p[0], buf, sizeof buf), 0);
  ASSERT_EQ(mh_log_set_level(MH_LOG_DEBUG), MH_LOG_INFO);
  ASSERT_OK(mh_log_debug("shown %s", "debug"));
  ASSERT_OK(mh_log_warning("w"));
  ASSERT_OK(mh_log_error("e"));
  ASSERT_OK(mh_log(MH_LOG_CRITICAL, "c%c", '!'));
  drain(p[0], buf, sizeof buf);
  ASSERT(strstr(buf, ": shown debug\n") != NULL);
  ASSERT(strstr(buf, ": w\n") != NULL);
  ASSERT(strstr(buf, ": e\n") != NULL);
  ASSERT(strstr(buf, ": c!\n") != NULL);
  ASSERT_EQ(mh_log_set_level(MH_LOG_ERROR), MH_LOG_DEBUG);
  ASSERT_OK(mh_log_info("no"));
  ASSERT_OK(mh_log_warning("no"));
  ASSERT_EQ(drain(p[0], buf, sizeof buf), 0);
  ASSERT_OK(mh_log_error("yes"));
  ASSERT(drain(p[0], buf, sizeof buf) > 0);
  mh_log_set_level(MH_LOG_INFO);

  /* An empty message is still one stamped line. */
  ASSERT_OK(mh_log_info("%s", ""));
  ASSERT_EQ(drain(p[0], buf, sizeof buf), 11);
  ASSERT_EQ(buf[10], '\n');

  ASSERT_EQ(mh_log_set_fd(old_fd), p[1]);
  close(p[0]);
  close(p[1]);
}

TEST(bad_input) {
  ASSERT_ERR(mh_log_set_fd(-1), MH_EINVAL);
  ASSERT_EQ(mh_log_set_fd(2), 2); /* unchanged by the failure */
  ASSERT_ERR(mh_log_info(NULL), MH_EINVAL);
  ASSERT_ERR(mh_log(MH_LOG_ERROR, NULL), MH_EINVAL);
  /* A closed descriptor: the write error comes back. */
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  close(p[0]);
  close(p[1]);
  int old = mh_log_set_fd(p[1]);
  ASSERT_ERR(mh_log_info("x"), MH_EBADF);
  mh_log_set_fd(old);
}

TEST(long_lines) {
  int p[2];
  ASSERT_EQ(log_pipe(p), 0);
  /* Big enough to hold a whole long line in the pipe. */
  fcntl(p[1], F_SETPIPE_SZ, 1 << 16);
  int old = mh_log_set_fd(p[1]);
  static char msg[20001], buf[30000];
  memset(msg, 'x', 20000);
  msg[20000] = 0;
  ASSERT_OK(mh_log_info("%s|end", msg));
  ASSERT_EQ(drain(p[0], buf, sizeof buf), 10 + 20000 + 4 + 1);
  ASSERT(has_stamp(buf));
  ASSERT_EQ(buf[10 + 20000], '|');
  ASSERT_STREQ(buf + 10 + 20000, "|end\n");

  /* No memory for the big buffer: the line is truncated, still whole. */
  mht_alloc_fail_after(0);
  ASSERT_OK(mh_log_info("%s|end", msg));
  ASSERT_EQ(mht_alloc_live(), 0);
  mht_alloc_reset();
  size_t n = drain(p[0], buf, sizeof buf);
  ASSERT(n > 100 && n < 2048);
  ASSERT_EQ(buf[n - 1], '\n');
  ASSERT(memchr(buf, '\n', n) == buf + n - 1);

  /* Exactly around the stack buffer's size. */
  for (int len = 1000; len < 1030; len++) {
    msg[len] = 0;
    ASSERT_OK(mh_log_info("%s", msg));
    msg[len] = 'x';
    n = drain(p[0], buf, sizeof buf);
    ASSERT_EQ(n, (size_t)(10 + len + 1));
    ASSERT_EQ(buf[n - 1], '\n');
    ASSERT_EQ(buf[n - 2], 'x');
  }
  mh_log_set_fd(old);
  close(p[0]);
  close(p[1]);
}

/* ---- concurrency: every line intact ------------------------------------ */

#define NTHREADS 8

struct reader {
  int fd;
  char *buf;
  size_t len, cap;
};

static void *reader_fn(void *arg) {
  struct reader *r = arg;
  for (;;) {
    if (r->cap - r->len < 65536) {
      r->cap *= 2;
      r->buf = realloc(r->buf, r->cap);
      ASSERT(r->buf != NULL);
    }
    ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
    if (n == 0) break;
    if (n < 0) {
      ASSERT(errno == EINTR);
      continue;
    }
    r->len += (size_t)n;
  }
  r->buf[r->len] = 0;
  return NULL;
}

static long lines_per_writer;

/* A line: "<writer> <seq> <len> <payload of len chars, derived from seq>". */
static void write_lines(int writer) {
  char payload[400];
  for (long i = 0; i < lines_per_writer; i++) {
    int len = (int)((i * 7 + writer * 13) % 300);
    for (int k = 0; k < len; k++) payload[k] = (char)('a' + (i + k) % 26);
    payload[len] = 0;
    ASSERT_OK(mh_log_info("%d %ld %d %s", writer, i, len, payload));
    if ((i & 31) == 0) mht_jitter(50);
  }
}

static void *writer_fn(void *arg) {
  write_lines((int)(intptr_t)arg);
  return NULL;
}

/* Check every line: stamp, fields, payload, and each (writer, seq) once. */
static void check_lines(const char *buf, int writers) {
  char *seen = calloc((size_t)writers * (size_t)lines_per_writer, 1);
  long count = 0;
  const char *p = buf;
  while (*p) {
    const char *nl = strchr(p, '\n');
    ASSERT(nl != NULL);
    ASSERT(has_stamp(p));
    int w, len, consumed = 0;
    long i;
    ASSERT_EQ(sscanf(p + 10, "%d %ld %d%n", &w, &i, &len, &consumed), 3);
    ASSERT(w >= 0 && w < writers && i >= 0 && i < lines_per_writer);
    ASSERT_EQ(len, (int)((i * 7 + w * 13) % 300));
    ASSERT_EQ(p[10 + consumed], ' ');
    const char *pl = p + 10 + consumed + 1;
    ASSERT_EQ(nl - pl, len);
    for (int k = 0; k < len; k++) ASSERT_EQ(pl[k], (char)('a' + (i + k) % 26));
    ASSERT_EQ(seen[w * lines_per_writer + i], 0);
    seen[w * lines_per_writer + i] = 1;
    count++;
    p = nl + 1;
  }
  ASSERT_EQ(count, writers * lines_per_writer);
  free(seen);
}

TEST(threads_never_interleave) {
  lines_per_writer = mht_scaled(2000);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  struct reader r = {p[0], malloc(1 << 20), 0, 1 << 20};
  pthread_t rt, wt[NTHREADS];
  pthread_create(&rt, NULL, reader_fn, &r);
  int old = mh_log_set_fd(p[1]);
  for (intptr_t i = 0; i < NTHREADS; i++) pthread_create(&wt[i], NULL, writer_fn, (void *)i);
  for (int i = 0; i < NTHREADS; i++) pthread_join(wt[i], NULL);
  mh_log_set_fd(old);
  close(p[1]);
  pthread_join(rt, NULL);
  close(p[0]);
  check_lines(r.buf, NTHREADS);
  free(r.buf);
}

TEST(processes_never_interleave) {
  lines_per_writer = mht_scaled(3000);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  struct reader r = {p[0], malloc(1 << 20), 0, 1 << 20};
  pthread_t rt;
  pthread_create(&rt, NULL, reader_fn, &r);
  int old = mh_log_set_fd(p[1]);
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    ASSERT(kids[k] >= 0);
    if (kids[k] == 0) {
      write_lines(k);
      _exit(0);
    }
  }
  for (int k = 0; k < 4; k++) {
    int st;
    while (waitpid(kids[k], &st, 0) < 0) {
    }
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  mh_log_set_fd(old);
  close(p[1]);
  pthread_join(rt, NULL);
  close(p[0]);
  check_lines(r.buf, 4);
  free(r.buf);
}
