/* SPDX-License-Identifier: MIT */
/* test-mpqueue.c - the queue between processes (mpqueue.h): semantics in one
 * process, then many producer and consumer processes, processes killed at
 * random moments and processes that die in the middle of copying a message.
 *
 * Messages carry their id in their first 8 bytes (when 8 or more long) and
 * bytes that follow from the id, so a consumer can tell a whole message from
 * a torn or mixed one; the length follows from the id too. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#include "test.h"
#include "../src/mpqueue_internal.h"

#define MB ((size_t)1 << 20)

/* A sanitizer catches the SIGSEGV of a copy that faults and exits with its
 * own code (TSan 66, ASan 1) instead of dying by the signal. */
#if MH__TSAN
#define DIED_BY_SANITIZER 66
#elif MH__ASAN
#define DIED_BY_SANITIZER 1
#else
#define DIED_BY_SANITIZER (-SIGSEGV)
#endif

/* ---- messages ---------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

/* Sizes 0..64 KiB, spread over every power of two (uniform in log size), so
 * that small and large messages (both copy paths) are frequent. */
static size_t len_of(uint64_t id, size_t max) {
  uint64_t h = mix(id + 1);
  unsigned bits = (unsigned)(h % 18); /* 0..17: up to 64 KiB */
  size_t len = bits ? (size_t)((h >> 8) & (((uint64_t)1 << bits) - 1)) : 0;
  if (len > max) len = max;
  return len;
}

static void fill(unsigned char *p, size_t len, uint64_t id) {
  uint64_t w = mix(id ^ 0x5555);
  size_t i = 0;
  if (len >= 8) {
    memcpy(p, &id, 8);
    i = 8;
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t v = w + i;
    memcpy(p + i, &v, 8);
  }
  for (; i < len; i++) p[i] = (unsigned char)(w >> (i % 8 * 8));
}

/* Whether p[0..len) is message `id`, whole. */
static int check(const unsigned char *p, size_t len, uint64_t id) {
  uint64_t w = mix(id ^ 0x5555);
  size_t i = 0;
  if (len >= 8) {
    uint64_t got;
    memcpy(&got, p, 8);
    if (got != id) return 0;
    i = 8;
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    if (v != w + i) return 0;
  }
  for (; i < len; i++)
    if (p[i] != (unsigned char)(w >> (i % 8 * 8))) return 0;
  return 1;
}

static mh_mpqueue_t *new_queue(size_t maxsize, size_t maxbytes) {
  mh_mpqueue_t *q;
  ASSERT_OK(mh_mpqueue_new(&q, maxsize, maxbytes));
  return q;
}

static void *shared(size_t n) {
  void *p;
  ASSERT_OK(mh_shared_mem_new(&p, n));
  return p;
}

static mh_process_t *start(mh_process_fn fn, void *arg) {
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, fn, arg, NULL));
  return p;
}

static int join_ok(mh_process_t *p, double timeout) {
  int rc = mh_process_join(p, timeout), code = -1000;
  if (rc == MH_ETIMEDOUT) mht_report_stuck(mh_process_pid(p), "not ended at its join");
  ASSERT_OK(rc);
  ASSERT_OK(mh_process_exitcode(p, &code));
  mh_process_free(p);
  return code;
}

/* ---- one process -------------------------------------------------------- */

TEST(fifo_sizes_and_codes) {
  mh_mpqueue_t *q = new_queue(4, 1 * MB);
  unsigned char buf[70000], *big = malloc(MB + 1);
  size_t len = 99;
  ASSERT_EQ(mh_mpqueue_empty(q), 1);
  ASSERT_ERR(mh_mpqueue_get(q, buf, sizeof buf, &len, 0), MH_EAGAIN);
  double t0 = mht_now();
  ASSERT_ERR(mh_mpqueue_get(q, buf, sizeof buf, &len, 0.05), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 >= 0.049);
  /* 0-byte, small and large messages keep their order and bytes. */
  size_t lens[4] = {0, 100, 5000, 65536};
  for (int i = 0; i < 4; i++) {
    fill(buf, lens[i], (uint64_t)i);
    ASSERT_OK(mh_mpqueue_put(q, i ? buf : NULL, lens[i], MH_FOREVER));
  }
  ASSERT_EQ(mh_mpqueue_qsize(q), 4);
  ASSERT_EQ(mh_mpqueue_full(q), 1);
  ASSERT_UEQ(mh_mpqueue_qbytes(q), 100 + 5000 + 65536);
  ASSERT_ERR(mh_mpqueue_put(q, buf, 1, 0), MH_EAGAIN);
  ASSERT_ERR(mh_mpqueue_put(q, buf, 1, 0.02), MH_ETIMEDOUT);
  for (int i = 0; i < 4; i++) {
    memset(buf, 0xee, sizeof buf);
    if (i == 3) {
      /* Too small a buffer: the size is reported, the message stays. */
      ASSERT_ERR(mh_mpqueue_get(q, buf, 100, &len, 0), MH_ERANGE);
      ASSERT_UEQ(len, 65536);
      ASSERT_EQ(mh_mpqueue_qsize(q), 1);
    }
    ASSERT_OK(mh_mpqueue_get(q, i ? buf : NULL, i ? sizeof buf : 0, &len, 0));
    ASSERT_UEQ(len, lens[i]);
    ASSERT(check(buf, len, (uint64_t)i));
  }
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(q), 0);
  /* Over the byte bound: refused at once, nothing queued. */
  ASSERT_ERR(mh_mpqueue_put(q, big, MB + 1, MH_FOREVER), MH_EMSGSIZE);
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  /* The byte bound: exactly maxbytes fits; one byte more waits. */
  ASSERT_OK(mh_mpqueue_put(q, big, MB, 0));
  ASSERT_ERR(mh_mpqueue_put(q, big, 1, 0), MH_EAGAIN);
  void *m;
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &len, 0));
  ASSERT_UEQ(len, MB);
  mh_mpqueue_msg_free(m);
  ASSERT_OK(mh_mpqueue_put(q, NULL, 0, 0));
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &len, 0));
  ASSERT_UEQ(len, 0);
  ASSERT(m != NULL);
  mh_mpqueue_msg_free(m);
  size_t ms, mb;
  ASSERT_OK(mh_mpqueue_bounds(q, &ms, &mb));
  ASSERT_UEQ(ms, 4);
  ASSERT_UEQ(mb, MB);
  free(big);
  mh_mpqueue_free(q);
}

TEST(many_laps_keep_order) {
  /* A small ring, many laps, messages of every size: the wrap and the pad
   * records, and order kept across them. */
  mh_mpqueue_t *q = new_queue(0, 256 << 10);
  unsigned char *buf = malloc(1 << 17);
  uint64_t put = 0, got = 0;
  for (int round = 0; round < 3000; round++) {
    int k = (int)(mht_rand() % 6);
    for (int i = 0; i < k; i++) {
      size_t len = len_of(put, 64 << 10);
      fill(buf, len, put);
      int rc = mh_mpqueue_put(q, buf, len, 0);
      if (rc == MH_EAGAIN) break;
      ASSERT_OK(rc);
      put++;
    }
    k = (int)(mht_rand() % 6);
    for (int i = 0; i < k && got < put; i++) {
      size_t len;
      ASSERT_OK(mh_mpqueue_get(q, buf, 1 << 17, &len, 0));
      ASSERT_UEQ(len, len_of(got, 64 << 10));
      ASSERT(check(buf, len, got));
      got++;
    }
  }
  ASSERT_UEQ(mh_mpqueue_qsize(q), put - got);
  free(buf);
  mh_mpqueue_free(q);
}

TEST(bad_input) {
  mh_mpqueue_t *q = (mh_mpqueue_t *)1;
  ASSERT_ERR(mh_mpqueue_new(NULL, 0, MB), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_new(&q, 0, 0), MH_EINVAL);
  ASSERT(q == NULL);
  ASSERT_ERR(mh_mpqueue_new(&q, 0, MH_MPQUEUE_MAX_MAXBYTES + 1), MH_EINVAL);
  q = new_queue(0, MB);
  char b[8];
  size_t len;
  void *m = (void *)1;
  ASSERT_ERR(mh_mpqueue_put(NULL, b, 1, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_put(q, NULL, 1, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_put(q, b, 1, -2.0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_put(q, b, 1, 0.0 / 0.0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get(NULL, b, 8, &len, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get(q, b, 8, NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get(q, NULL, 8, &len, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get(q, b, 8, &len, -0.5), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get_alloc(q, NULL, &len, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_get_alloc(q, &m, NULL, 0), MH_EINVAL);
  ASSERT(m == NULL);
  ASSERT_ERR(mh_mpqueue_get_alloc(NULL, &m, &len, 0), MH_EINVAL);
  ASSERT_EQ(mh_mpqueue_qsize(NULL), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(NULL), 0);
  ASSERT_ERR(mh_mpqueue_empty(NULL), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_full(NULL), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_bounds(NULL, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_task_done(NULL), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_task_done(q), MH_EINVAL); /* more done than put */
  ASSERT_ERR(mh_mpqueue_join(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_join(q, -3), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_shutdown(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_is_shutdown(NULL), MH_EINVAL);
  ASSERT_ERR(mh_mpqueue_close(NULL), MH_EINVAL);
  mh_mpqueue_free(NULL);
  mh_mpqueue_msg_free(NULL);
  mh_mpqueue_free(q);
}

TEST(task_done_join_shutdown) {
  mh_mpqueue_t *q = new_queue(0, MB);
  char b[16] = "x";
  size_t len;
  ASSERT_OK(mh_mpqueue_join(q, 0));
  for (int i = 0; i < 3; i++) ASSERT_OK(mh_mpqueue_put(q, b, sizeof b, 0));
  ASSERT_ERR(mh_mpqueue_join(q, 0), MH_ETIMEDOUT);
  ASSERT_ERR(mh_mpqueue_join(q, 0.02), MH_ETIMEDOUT);
  ASSERT_OK(mh_mpqueue_get(q, b, sizeof b, &len, 0));
  ASSERT_OK(mh_mpqueue_task_done(q));
  /* Normal shutdown: puts fail, the rest is still got, then ESHUTDOWN. */
  ASSERT_OK(mh_mpqueue_shutdown(q, 0));
  ASSERT_EQ(mh_mpqueue_is_shutdown(q), 1);
  ASSERT_ERR(mh_mpqueue_put(q, b, 1, MH_FOREVER), MH_ESHUTDOWN);
  ASSERT_OK(mh_mpqueue_get(q, b, sizeof b, &len, MH_FOREVER));
  ASSERT_OK(mh_mpqueue_task_done(q));
  /* Immediate: the last one is discarded and counted done. */
  ASSERT_OK(mh_mpqueue_shutdown(q, 1));
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  ASSERT_ERR(mh_mpqueue_get(q, b, sizeof b, &len, MH_FOREVER), MH_ESHUTDOWN);
  ASSERT_OK(mh_mpqueue_join(q, 0));
  ASSERT_ERR(mh_mpqueue_task_done(q), MH_EINVAL);
  mh_mpqueue_free(q);
}

TEST(close_is_per_process) {
  mh_mpqueue_t *q = new_queue(0, MB);
  char b[4] = "abc";
  size_t len;
  ASSERT_OK(mh_mpqueue_put(q, b, 3, 0));
  ASSERT_OK(mh_mpqueue_close(q));
  ASSERT_ERR(mh_mpqueue_put(q, b, 3, 0), MH_EBADF);
  ASSERT_ERR(mh_mpqueue_get(q, b, 4, &len, 0), MH_EBADF);
  ASSERT_EQ(mh_mpqueue_qsize(q), 1);
  mh_mpqueue_free(q);
}

/* ---- across processes --------------------------------------------------- */

typedef struct wake_arg {
  mh_mpqueue_t *q;
  double delay;
  int mode; /* 0 put, 1 shutdown, 2 task_done, 3 get */
} wake_arg_t;

static int waker(void *arg) {
  wake_arg_t *a = arg;
  char b[32] = "hello";
  size_t len;
  mht_sleep(a->delay);
  switch (a->mode) {
  case 0: return mh_mpqueue_put(a->q, b, 6, MH_FOREVER) ? 1 : 0;
  case 1: return mh_mpqueue_shutdown(a->q, 0) ? 1 : 0;
  case 2: return mh_mpqueue_task_done(a->q) ? 1 : 0;
  default: return mh_mpqueue_get(a->q, b, sizeof b, &len, MH_FOREVER) ? 1 : 0;
  }
}

TEST(blocking_calls_woken_by_other_processes) {
  mh_mpqueue_t *q = new_queue(1, MB);
  char b[32];
  size_t len;
  /* A get waiting on an empty queue wakes for another process's put. */
  wake_arg_t a = {q, 0.05, 0};
  mh_process_t *p = start(waker, &a);
  ASSERT_OK(mh_mpqueue_get(q, b, sizeof b, &len, 10));
  ASSERT_STREQ(b, "hello");
  ASSERT_EQ(join_ok(p, 10), 0);
  /* A put waiting on a full queue wakes for another process's get. */
  ASSERT_OK(mh_mpqueue_put(q, "x", 2, 0));
  a.mode = 3;
  p = start(waker, &a);
  double t0 = mht_now();
  ASSERT_OK(mh_mpqueue_put(q, "y", 2, 10));
  ASSERT(mht_now() - t0 < 5);
  ASSERT_EQ(join_ok(p, 10), 0);
  /* join waits for another process's task_done (three puts, three done). */
  ASSERT_OK(mh_mpqueue_task_done(q));
  ASSERT_OK(mh_mpqueue_task_done(q));
  ASSERT_ERR(mh_mpqueue_join(q, 0.01), MH_ETIMEDOUT);
  a.mode = 2;
  p = start(waker, &a);
  ASSERT_OK(mh_mpqueue_join(q, 10));
  ASSERT_EQ(join_ok(p, 10), 0);
  /* A get waiting on an empty queue fails when another process shuts it. */
  ASSERT_OK(mh_mpqueue_get(q, b, sizeof b, &len, 0));
  a.mode = 1;
  p = start(waker, &a);
  ASSERT_ERR(mh_mpqueue_get(q, b, sizeof b, &len, 10), MH_ESHUTDOWN);
  ASSERT_EQ(join_ok(p, 10), 0);
  mh_mpqueue_free(q);
}

/* A lane message too long for the buffer stays (its size reported), and
 * get_alloc gives it whole; 0-byte lane messages too. */
TEST(lane_erange_and_alloc) {
  mh_mpqueue_t *q = new_queue(8, MB);
  unsigned char b[104];
  size_t len = 0;
  void *m;
  fill(b, 104, 5);
  ASSERT_OK(mh_mpqueue_put(q, b, 104, 0));
  ASSERT_OK(mh_mpqueue_put(q, NULL, 0, 0));
  ASSERT_ERR(mh_mpqueue_get(q, b, 103, &len, 0), MH_ERANGE);
  ASSERT_UEQ(len, 104);
  ASSERT_EQ(mh_mpqueue_qsize(q), 2);
  ASSERT_UEQ(mh_mpqueue_qbytes(q), 104);
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &len, 0));
  ASSERT_UEQ(len, 104);
  ASSERT(check(m, len, 5));
  mh_mpqueue_msg_free(m);
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &len, 0));
  ASSERT_UEQ(len, 0);
  ASSERT(m != NULL);
  mh_mpqueue_msg_free(m);
  ASSERT_ERR(mh_mpqueue_get(q, b, sizeof b, &len, 0), MH_EAGAIN);
  mh_mpqueue_free(q);
}

static int get_and_mark_done(void *arg) {
  mh_mpqueue_t *q = arg;
  char b[128];
  size_t len;
  int rc;
  while ((rc = mh_mpqueue_get(q, b, sizeof b, &len, 30)) == 0)
    if (mh_mpqueue_task_done(q)) return 1;
  return rc == MH_ESHUTDOWN ? 0 : 2;
}

/* task_done and join across processes with lane messages (whose puts are
 * counted apart from the record ring's): join returns when the other
 * process has marked every message done, and not before. */
TEST(join_across_processes_lane) {
  mh_mpqueue_t *q = new_queue(64, MB);
  char b[128] = "lane";
  for (int i = 0; i < 64; i++) ASSERT_OK(mh_mpqueue_put(q, b, 1 + (size_t)i % 64, 0));
  ASSERT_ERR(mh_mpqueue_join(q, 0), MH_ETIMEDOUT);
  mh_process_t *p = start(get_and_mark_done, q);
  for (int i = 0; i < 2000; i++) ASSERT_OK(mh_mpqueue_put(q, b, (size_t)i % 100, 30));
  ASSERT_OK(mh_mpqueue_join(q, 60));
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  ASSERT_OK(mh_mpqueue_shutdown(q, 0));
  ASSERT_EQ(join_ok(p, 60), 0);
  ASSERT_ERR(mh_mpqueue_task_done(q), MH_EINVAL); /* more done than put */
  mh_mpqueue_free(q);
}

/* ---- 4 x 4 processes, every message exactly once ----------------------------- */

typedef struct stress {
  mh_mpqueue_t *q;
  long n, nprod;
  _Atomic unsigned char *seen; /* shared: deliveries per id */
  _Atomic long *bad;           /* shared: torn or wrong messages seen */
  _Atomic uint64_t *sum;       /* shared: sum of ids got */
  _Atomic uint64_t *nshort;    /* shared: messages under 8 bytes got */
  _Atomic uint64_t *short_sum; /* shared: their checksum */
  int id;
} stress_t;

/* A message under 8 bytes cannot carry its id: it carries the id's low
 * bytes, and such messages are checked by count and checksum. */
static uint64_t short_value(uint64_t id, size_t len) {
  return len ? (id & (~(uint64_t)0 >> (64 - 8 * len))) : 0;
}

static uint64_t short_check(uint64_t v, size_t len) { return mix(v * 8 + len); }

static int stress_producer(void *arg) {
  stress_t *s = arg;
  unsigned char *buf = malloc(64 << 10);
  long lo = s->n * s->id / s->nprod, hi = s->n * (s->id + 1) / s->nprod;
  for (long i = lo; i < hi; i++) {
    size_t len = len_of((uint64_t)i, 64 << 10);
    if (len < 8) {
      uint64_t v = short_value((uint64_t)i, len);
      memcpy(buf, &v, len);
    } else {
      fill(buf, len, (uint64_t)i);
    }
    if (mh_mpqueue_put(s->q, buf, len, MH_FOREVER)) return 1;
  }
  free(buf);
  return 0;
}

static int stress_consumer(void *arg) {
  stress_t *s = arg;
  unsigned char *buf = malloc(64 << 10);
  size_t len;
  int rc;
  while ((rc = mh_mpqueue_get(s->q, buf, 64 << 10, &len, MH_FOREVER)) == 0) {
    uint64_t id = 0;
    if (len < 8) {
      memcpy(&id, buf, len);
      atomic_fetch_add(s->nshort, 1);
      atomic_fetch_add(s->short_sum, short_check(id, len));
      continue;
    }
    memcpy(&id, buf, 8);
    if (id >= (uint64_t)s->n || len != len_of(id, 64 << 10) || !check(buf, len, id)) {
      atomic_fetch_add(s->bad, 1);
      continue;
    }
    atomic_fetch_add(&s->seen[id], 1);
    atomic_fetch_add(s->sum, id);
  }
  free(buf);
  return rc == MH_ESHUTDOWN ? 0 : 2;
}

TEST(four_by_four_exactly_once) {
  long n = mht_scaled(1000000);
  stress_t base = {new_queue(1024, 8 * MB), n, 4, shared((size_t)n), shared(64),
                   shared(64), shared(64), shared(64), 0};
  stress_t args[8];
  mh_process_t *p[8];
  for (int i = 0; i < 8; i++) {
    args[i] = base;
    args[i].id = i % 4;
    p[i] = start(i < 4 ? stress_producer : stress_consumer, &args[i]);
  }
  for (int i = 0; i < 4; i++) ASSERT_EQ(join_ok(p[i], 300), 0);
  ASSERT_OK(mh_mpqueue_shutdown(base.q, 0));
  for (int i = 4; i < 8; i++) ASSERT_EQ(join_ok(p[i], 300), 0);
  ASSERT_EQ(atomic_load(base.bad), 0);
  long missing = 0, dup = 0;
  uint64_t nshort = 0, short_sum = 0, sum = 0;
  for (long i = 0; i < n; i++) {
    size_t len = len_of((uint64_t)i, 64 << 10);
    unsigned v = atomic_load(&base.seen[i]);
    if (len < 8) {
      nshort++;
      short_sum += short_check(short_value((uint64_t)i, len), len);
      continue;
    }
    sum += (uint64_t)i;
    missing += v == 0;
    dup += v > 1;
  }
  ASSERT_EQ(missing, 0);
  ASSERT_EQ(dup, 0);
  ASSERT_UEQ(atomic_load(base.sum), sum);
  ASSERT_GT(nshort, 0);
  ASSERT_UEQ(atomic_load(base.nshort), nshort);
  ASSERT_UEQ(atomic_load(base.short_sum), short_sum);
  ASSERT_EQ(mh_mpqueue_qsize(base.q), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(base.q), 0);
  mh_mpqueue_free(base.q);
}

/* ---- the count bound, with lane and record puts racing -------------------- */

/* A lane put looks at the record ring (empty?) and then claims a slot; a
 * record put racing it, between the two, once counted the lane without
 * that claim, and the queue took maxsize + 1 messages.  Here a child puts
 * a lane message and gets it back, over and over, and after each put that
 * returned 0 looks at qsize.  The parent stops it (SIGSTOP) at a random
 * moment, fills the queue with records (timeout 0, until full), and lets it
 * go on: a child stopped between its look and its claim then finds the
 * queue full of records.  Its put must fail (MH_EAGAIN) or leave no more
 * than maxsize messages. */
#define BOUND_MAXSIZE 4
#define STOP_FLAG ((long)1 << 40)

typedef struct bound_arg {
  mh_mpqueue_t *q;
  _Atomic long *sh; /* [0] trial, [8] trial done, [16] over, [24] net puts */
} bound_arg_t;

static int bound_child(void *arg) {
  bound_arg_t *a = arg;
  _Atomic long *trial = &a->sh[0], *done = &a->sh[8], *over = &a->sh[16], *net = &a->sh[24];
  unsigned char buf[64];
  size_t got;
  fill(buf, 40, 7);
  for (long t = 1;; t++) {
    long now;
    while ((now = atomic_load(trial)) >= 0 && (now & (STOP_FLAG - 1)) < t) sched_yield();
    if (now < 0) return 0;
    /* Until the parent, having filled the queue, says stop. */
    while (!(atomic_load(trial) & STOP_FLAG)) {
      int rc = mh_mpqueue_put(a->q, buf, 40, 0);
      if (rc == MH_EAGAIN) continue;
      if (rc) return 1;
      if (mh_mpqueue_qsize(a->q) > BOUND_MAXSIZE) atomic_fetch_add(over, 1);
      atomic_fetch_add(net, 1);
      if (atomic_load(trial) & STOP_FLAG) break; /* leave it for the count */
      if (mh_mpqueue_get(a->q, buf, sizeof buf, &got, 0) == 0) {
        if (got != 40 || !check(buf, got, 7)) return 2;
        atomic_fetch_sub(net, 1);
      }
    }
    atomic_store(done, t);
  }
}

/* Wait until process `pid` is stopped (state T in /proc). */
static void wait_stopped(pid_t pid) {
  for (double t0 = mht_now(); mht_now() - t0 < 10;) {
    char st = mht_proc_state(pid);
    ASSERT(st != '-');
    if (st == 'T' || st == 't') return;
    sched_yield();
  }
  ASSERT(!"the child did not stop");
}

TEST(maxsize_holds_under_racing_puts) {
  long trials = mht_scaled(3000);
  mh_mpqueue_t *q = new_queue(BOUND_MAXSIZE, MB);
  bound_arg_t a = {q, shared(4 * 64)};
  mh_process_t *p = start(bound_child, &a);
  pid_t pid = mh_process_pid(p);
  unsigned char buf[300];
  size_t got;
  long recs = 0, left = 0, failed_child = 0;
  for (long t = 1; t <= trials; t++) {
    atomic_store(&a.sh[24], 0);
    atomic_store(&a.sh[0], t);
    mht_jitter(50);
    ASSERT_EQ(kill(pid, SIGSTOP), 0);
    wait_stopped(pid);
    long n = 0;
    fill(buf, sizeof buf, 9);
    while (mh_mpqueue_put(q, buf, sizeof buf, 0) == 0) n++;
    recs += n;
    atomic_store(&a.sh[0], t | STOP_FLAG);
    ASSERT_EQ(kill(pid, SIGCONT), 0);
    for (double t0 = mht_now(); atomic_load(&a.sh[8]) < t; ) {
      if (mht_now() - t0 > 30) {
        mht_report_stuck(pid, "not done with its trial");
        failed_child = 1;
        break;
      }
      sched_yield();
    }
    if (failed_child) break;
    long m = 0;
    while (mh_mpqueue_get(q, buf, sizeof buf, &got, 0) == 0) m++;
    /* What the child put and did not get back, and the records. */
    if (m != n + atomic_load(&a.sh[24])) left++;
  }
  atomic_store(&a.sh[0], -1);
  ASSERT_EQ(failed_child, 0);
  ASSERT_EQ(join_ok(p, 30), 0);
  long over = atomic_load(&a.sh[16]);
  if (over) fprintf(stderr, "%ld of %ld trials passed maxsize\n", over, trials);
  ASSERT_EQ(over, 0);
  ASSERT_EQ(left, 0);
  ASSERT_GT(recs, 0);
  mh_mpqueue_free(q);
}

/* ---- processes that die copying a message ------------------------------------ */

/* A buffer of `len` bytes whose last page is not accessible: a copy into or
 * out of it dies with SIGSEGV part-way, at a known point. */
static unsigned char *trap_buffer(size_t len, size_t *usable) {
  size_t ps = (size_t)sysconf(_SC_PAGESIZE);
  size_t total = (len + ps - 1) / ps * ps + ps;
  unsigned char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT(m != MAP_FAILED);
  ASSERT_EQ(mprotect(m + total - ps, ps, PROT_NONE), 0);
  *usable = total - ps;
  return m;
}

typedef struct die_arg {
  mh_mpqueue_t *q;
  size_t len;
} die_arg_t;

/* Put a message of `len` bytes from a buffer that ends part-way. */
static int die_putting(void *arg) {
  die_arg_t *a = arg;
  size_t usable;
  unsigned char *b = trap_buffer(a->len / 2, &usable);
  memset(b, 0x77, usable);
  mh_mpqueue_put(a->q, b + usable - a->len / 2, a->len, MH_FOREVER);
  return 0; /* not reached: the copy faults */
}

/* Get into a buffer that claims `len` bytes but ends half-way. */
static int die_getting(void *arg) {
  die_arg_t *a = arg;
  size_t usable, len;
  unsigned char *b = trap_buffer(a->len / 2, &usable);
  mh_mpqueue_get(a->q, b + usable - a->len / 2, a->len, &len, MH_FOREVER);
  return 0;
}

static void die_mid_copy(size_t len) {
  mh_mpqueue_t *q = new_queue(8, 4 * MB);
  unsigned char *buf = malloc(len);
  size_t got;
  int code;
  /* A producer dies half-way through its message: nothing is delivered,
   * and the queue takes the next message as if nothing happened. */
  die_arg_t a = {q, len};
  mh_process_t *p = start(die_putting, &a);
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT(code == -SIGSEGV || code == DIED_BY_SANITIZER);
  mh_process_free(p);
  ASSERT_ERR(mh_mpqueue_get(q, buf, len, &got, 0.3), MH_ETIMEDOUT);
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(q), 0); /* its room was reclaimed */
  fill(buf, len, 42);
  ASSERT_OK(mh_mpqueue_put(q, buf, len, 1));
  /* A consumer dies half-way through copying it out: the message stays in
   * the queue, whole, for the next get. */
  p = start(die_getting, &a);
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT(code == -SIGSEGV || code == DIED_BY_SANITIZER);
  mh_process_free(p);
  memset(buf, 0, len);
  ASSERT_OK(mh_mpqueue_get(q, buf, len, &got, 5));
  ASSERT_UEQ(got, len);
  ASSERT(check(buf, len, 42));
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  /* And it still works both ways. */
  ASSERT_OK(mh_mpqueue_put(q, buf, len, 1));
  ASSERT_OK(mh_mpqueue_get(q, buf, len, &got, 1));
  ASSERT(check(buf, len, 42));
  free(buf);
  mh_mpqueue_free(q);
}

/* A copy under the lock (small message): the dead process held the lock. */
TEST(die_mid_copy_holding_the_lock) { die_mid_copy(3 * 4096); }

/* A copy outside the lock (large message), in an op slot. */
TEST(die_mid_copy_outside_the_lock) { die_mid_copy(256 << 10); }

/* Small messages go through the lane, without the lock: a producer that
 * dies half-way through one leaves a claimed slot that must be taken out
 * (nothing delivered, nothing left for join), a consumer that dies copying
 * one out leaves it for the next get. */
TEST(die_mid_copy_in_the_lane) { die_mid_copy(100); }

/* A lane producer that dies and is not reaped (a zombie, its parent busy in
 * get): the claimed slot is still taken out, and get does not hang. */
TEST(lane_claim_of_a_zombie) {
  mh_mpqueue_t *q = new_queue(16, MB);
  unsigned char buf[128];
  size_t got;
  die_arg_t a = {q, 100};
  mh_process_t *p = start(die_putting, &a);
  /* Let it die; nobody reaps it until the get below has given up. */
  mht_sleep(0.3);
  double t0 = mht_now();
  ASSERT_ERR(mh_mpqueue_get(q, buf, sizeof buf, &got, 0.5), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 < 5);
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  ASSERT_OK(mh_mpqueue_join(q, 0)); /* the dead put left no task */
  fill(buf, 100, 9);
  ASSERT_OK(mh_mpqueue_put(q, buf, 100, 1));
  ASSERT_OK(mh_mpqueue_get(q, buf, sizeof buf, &got, 1));
  ASSERT_UEQ(got, 100);
  ASSERT(check(buf, got, 9));
  int code;
  ASSERT_OK(mh_mpqueue_task_done(q));
  ASSERT_OK(mh_mpqueue_join(q, 0));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT(code == -SIGSEGV || code == DIED_BY_SANITIZER);
  mh_process_free(p);
  mh_mpqueue_free(q);
}

/* A get in a child: the next two messages must be a 100 B one filled with
 * id 2, then a 1000 B one with id 3 (exit 0), within the parent's join. */
static int get_two_in_order(void *arg) {
  die_arg_t *a = arg;
  unsigned char buf[1000];
  size_t got;
  if (mh_mpqueue_get(a->q, buf, sizeof buf, &got, 30) || got != 100 || !check(buf, got, 2))
    return 1;
  if (mh_mpqueue_get(a->q, buf, sizeof buf, &got, 30) || got != 1000 || !check(buf, got, 3))
    return 2;
  return 0;
}

/* The lane holds, from deq on: a slot still being written (its producer
 * died half-way and nobody has waited since, so nobody took it out), a
 * slot got already (gets skip a slot being written), and a message; and
 * the record ring holds a message put after it.  A get must look past the
 * got slot and return the lane's message first.  It once stopped at the
 * got slot, found nothing, and under the lock spun for ever between that
 * and the READY slot further on, holding the lock (the sigkill loops hit
 * it about once in 40 runs under ThreadSanitizer). */
TEST(lane_get_past_a_got_slot) {
  mh_mpqueue_t *q = new_queue(16, MB);
  unsigned char buf[1000];
  size_t got;
  int code;
  die_arg_t a = {q, 100};
  mh_process_t *p = start(die_putting, &a);
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT(code == -SIGSEGV || code == DIED_BY_SANITIZER);
  mh_process_free(p);
  fill(buf, 100, 1);
  ASSERT_OK(mh_mpqueue_put(q, buf, 100, 0));
  fill(buf, 100, 2);
  ASSERT_OK(mh_mpqueue_put(q, buf, 100, 0));
  ASSERT_OK(mh_mpqueue_get(q, buf, sizeof buf, &got, 0));
  ASSERT_UEQ(got, 100);
  ASSERT(check(buf, got, 1));
  fill(buf, sizeof buf, 3); /* over the lane's 104 B: a record */
  ASSERT_OK(mh_mpqueue_put(q, buf, sizeof buf, 0));
  ASSERT_EQ(mh_mpqueue_qsize(q), 2);
  /* In a child, so that the old spin fails the join instead of hanging. */
  p = start(get_two_in_order, &a);
  ASSERT_EQ(join_ok(p, 30), 0);
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  mh_mpqueue_free(q);
}

/* ---- a claimant's pid taken by a new process ------------------------------ */

/* Puts one message and gets it back (so this process is one of the lane's
 * producers), then claims the next lane slot as a put does, and dies there:
 * before it moved enq or wrote anything else. */
static int claim_and_die(void *arg) {
  mh_mpqueue_t *q = arg;
  unsigned char buf[64];
  size_t got;
  fill(buf, 40, 1);
  if (mh_mpqueue_put(q, buf, 40, 0) || mh_mpqueue_get(q, buf, sizeof buf, &got, 0) ||
      mh_mpqueue_task_done(q))
    return 1;
  uint64_t e = atomic_load(&q->sh->enq), w = SW(e, S_EMPTY, 0);
  if (!atomic_compare_exchange_strong(&lslot(q, e)->word, &w, SW(e, S_WRITING, getpid())))
    return 2;
  _exit(0);
}

static int wait_released(void *arg) {
  _Atomic long *go = arg;
  while (!atomic_load(go)) mht_sleep(0.001);
  return 0;
}

/* The first process of a new PID namespace (so its pids can be chosen):
 * 0, 77 (cannot be set up here), or what failed. */
static int reused_pid_init(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("proc", "/proc", "proc", 0, NULL) != 0)
    return 77;
  mh_mpqueue_t *q;
  if (mh_mpqueue_new(&q, 4, MB)) return 3;
  mh_process_t *x, *y;
  int code = -1;
  if (mh_process_start(&x, claim_and_die, q, NULL)) return 4;
  pid_t xpid = mh_process_pid(x);
  if (mh_process_join(x, 30) || mh_process_exitcode(x, &code) || code != 0) return 5;
  mh_process_free(x);
  /* A later start time (it counts in ticks of 10 ms), and the same pid. */
  mht_sleep(0.05);
  FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
  if (!f) return 77;
  fprintf(f, "%d", (int)xpid - 1);
  if (fclose(f) != 0) return 77;
  void *gomem = shared(64);
  _Atomic long *go = gomem;
  if (mh_process_start(&y, wait_released, gomem, NULL)) return 6;
  if (mh_process_pid(y) != xpid) return 77; /* somebody else took it */
  /* The dead claim holds one of the 4 slots: the fourth put finds the
   * queue full unless it tells the dead claimant from the live process. */
  unsigned char buf[64];
  size_t got;
  int rc = 0;
  for (int i = 0; i < 4 && !rc; i++) {
    fill(buf, 40, (uint64_t)(10 + i));
    if (mh_mpqueue_put(q, buf, 40, 0)) rc = 10 + i;
  }
  for (int i = 0; i < 4 && !rc; i++) {
    uint64_t id = (uint64_t)(10 + i);
    if (mh_mpqueue_get(q, buf, sizeof buf, &got, 0) || got != 40 || !check(buf, got, id))
      rc = 20 + i;
    else if (mh_mpqueue_task_done(q))
      rc = 30;
  }
  if (!rc && mh_mpqueue_join(q, 0)) rc = 31; /* the dead claim left no task */
  atomic_store(go, 1);
  if (mh_process_join(y, 30) || mh_process_exitcode(y, &code) || code != 0) rc = rc ? rc : 7;
  mh_process_free(y);
  mh_mpqueue_free(q);
  return rc;
}

/* Runs reused_pid_init as the first process of a new PID namespace: its
 * code, or 77 (see mht_new_pid_namespace_or_skip). */
static int reused_pid_driver(void *arg) {
  (void)arg;
  mht_new_pid_namespace_or_skip();
  mh_process_t *p;
  int code = -1;
  if (mh_process_start(&p, reused_pid_init, NULL, NULL)) _exit(3);
  if (mh_process_join(p, 60) || mh_process_exitcode(p, &code)) _exit(4);
  if (code == 77) printf("skipped: cannot mount /proc or choose a pid in the new namespace\n");
  fflush(stdout);
  _exit(code);
}

/* A producer killed right after it claimed a lane slot, whose pid a new,
 * live process then has: its slot is still taken out (so that the lane is
 * not one slot short for as long as that process lives).  The claimant's
 * start time is known from before its claim.  Needs the right to make a
 * PID namespace and set its next pid (root). */
TEST(lane_claim_of_a_reused_pid) {
  int code = join_ok(start(reused_pid_driver, NULL), 90);
  if (code == 77) exit(77);
  ASSERT_EQ(code, 0);
}

/* More live lane producers than the table holds (LANE_PRODUCERS): the ones
 * that find it full put records, and every message arrives once, in each
 * producer's order.  A process that found it full takes an entry within
 * LANE_REG_RETRY puts once the others have ended. */
typedef struct many_arg {
  mh_mpqueue_t *q;
  _Atomic long *sh; /* [0] producers that put, [8] go */
  int id;
} many_arg_t;

static int put_two_and_wait(void *arg) {
  many_arg_t *a = arg;
  unsigned char buf[64];
  for (int k = 0; k < 2; k++) {
    fill(buf, 40, (uint64_t)(a->id * 2 + k));
    if (mh_mpqueue_put(a->q, buf, 40, 30)) return 1;
  }
  atomic_fetch_add(&a->sh[0], 1);
  while (!atomic_load(&a->sh[8])) mht_sleep(0.002);
  return 0;
}

TEST(more_lane_producers_than_entries) {
  enum { N = LANE_PRODUCERS + 12 };
  mh_mpqueue_t *q = new_queue(0, MB);
  many_arg_t base = {q, shared(2 * 64), 0}, *args = malloc(N * sizeof *args);
  mh_process_t **p = malloc(N * sizeof *p);
  ASSERT(args && p);
  for (int i = 0; i < N; i++) {
    args[i] = base;
    args[i].id = i;
    p[i] = start(put_two_and_wait, &args[i]);
  }
  for (double t0 = mht_now(); atomic_load(&base.sh[0]) < N;)
    ASSERT(mht_now() - t0 < 120);
  int entries = 0;
  for (int i = 0; i < LANE_PRODUCERS; i++) entries += atomic_load(&q->sh->reg[i].pid) != 0;
  ASSERT_EQ(entries, LANE_PRODUCERS); /* all live: the last ones put records */
  unsigned char seen[2 * N] = {0}, buf[64];
  size_t got;
  for (int k = 0; k < 2 * N; k++) {
    ASSERT_OK(mh_mpqueue_get(q, buf, sizeof buf, &got, 10));
    uint64_t id;
    ASSERT_UEQ(got, 40);
    memcpy(&id, buf, 8);
    ASSERT(id < 2 * N && check(buf, got, id));
    ASSERT(id % 2 == 0 || seen[id - 1]); /* a producer's second after its first */
    ASSERT_EQ(seen[id]++, 0);
  }
  ASSERT_EQ(mh_mpqueue_qsize(q), 0);
  /* This process comes while every entry is a live producer's: records. */
  fill(buf, 40, 0);
  ASSERT_OK(mh_mpqueue_put(q, buf, 40, 0));
  ASSERT(!atomic_load(&q->reg_ok));
  ASSERT_OK(mh_mpqueue_get(q, buf, sizeof buf, &got, 0));
  atomic_store(&base.sh[8], 1);
  for (int i = 0; i < N; i++) ASSERT_EQ(join_ok(p[i], 60), 0);
  /* They have ended: within LANE_REG_RETRY more puts it takes an entry. */
  for (uint64_t k = 1; k <= LANE_REG_RETRY; k++) {
    fill(buf, 40, k);
    ASSERT_OK(mh_mpqueue_put(q, buf, 40, 0));
    ASSERT_OK(mh_mpqueue_get(q, buf, sizeof buf, &got, 0));
    ASSERT(got == 40 && check(buf, got, k));
  }
  ASSERT(atomic_load(&q->reg_ok));
  entries = 0;
  for (int i = 0; i < LANE_PRODUCERS; i++)
    entries += atomic_load(&q->sh->reg[i].pid) == (uint64_t)getpid();
  ASSERT_EQ(entries, 1);
  free(args);
  free(p);
  mh_mpqueue_free(q);
}

/* ---- order: each producer's messages come out in the order it put them ------ */

#define OP 3 /* producers */
#define OC 3 /* consumers */

typedef struct order_arg {
  mh_mpqueue_t *q;
  long n;                      /* per producer */
  size_t maxlen;               /* sizes 16..maxlen (lane and records mixed) */
  _Atomic unsigned char *seen; /* shared: OP * n deliveries */
  _Atomic long *bad;           /* shared: torn, foreign or out of order */
  int id;
} order_arg_t;

static size_t order_len(uint64_t key, size_t maxlen) {
  size_t len = 16 + len_of(key, maxlen);
  return len > maxlen ? maxlen : len;
}

static void order_fill(unsigned char *b, size_t len, uint64_t prod, uint64_t seq) {
  uint64_t key = prod << 40 | seq;
  memcpy(b, &prod, 8);
  memcpy(b + 8, &seq, 8);
  for (size_t i = 16; i < len; i++) b[i] = (unsigned char)(mix(key) >> (i % 8 * 8));
}

static int order_producer(void *arg) {
  order_arg_t *a = arg;
  unsigned char *b = malloc(a->maxlen);
  for (long i = 0; i < a->n; i++) {
    uint64_t key = (uint64_t)a->id << 40 | (uint64_t)i;
    size_t len = order_len(key, a->maxlen);
    order_fill(b, len, (uint64_t)a->id, (uint64_t)i);
    if (mh_mpqueue_put(a->q, b, len, MH_FOREVER)) return 1;
    if (mht_rand() % 4096 == 0) mht_jitter(300);
  }
  free(b);
  return 0;
}

static int order_consumer(void *arg) {
  order_arg_t *a = arg;
  unsigned char *b = malloc(a->maxlen), *want = malloc(a->maxlen);
  long last[OP];
  for (int i = 0; i < OP; i++) last[i] = -1;
  size_t len;
  int rc;
  while ((rc = mh_mpqueue_get(a->q, b, a->maxlen, &len, MH_FOREVER)) == 0) {
    uint64_t prod, seq;
    if (len < 16) {
      atomic_fetch_add(a->bad, 1);
      continue;
    }
    memcpy(&prod, b, 8);
    memcpy(&seq, b + 8, 8);
    if (prod >= OP || seq >= (uint64_t)a->n ||
        len != order_len(prod << 40 | seq, a->maxlen)) {
      atomic_fetch_add(a->bad, 1);
      continue;
    }
    order_fill(want, len, prod, seq);
    /* Later than the last one of its producer this consumer got. */
    if (memcmp(b, want, len) != 0 || (long)seq <= last[prod]) atomic_fetch_add(a->bad, 1);
    last[prod] = (long)seq;
    atomic_fetch_add(&a->seen[prod * (uint64_t)a->n + seq], 1);
    if (mht_rand() % 4096 == 0) mht_jitter(300);
  }
  free(b);
  free(want);
  return rc == MH_ESHUTDOWN ? 0 : 2;
}

static void order_run(int np, int nc, size_t maxsize, size_t maxlen, long n) {
  order_arg_t base = {new_queue(maxsize, 4 * MB), n, maxlen, shared((size_t)(np * n)),
                      shared(64), 0};
  order_arg_t args[OP + OC];
  mh_process_t *p[OP + OC];
  for (int i = 0; i < np + nc; i++) {
    args[i] = base;
    args[i].id = i < np ? i : i - np;
    p[i] = start(i < np ? order_producer : order_consumer, &args[i]);
  }
  for (int i = 0; i < np; i++) ASSERT_EQ(join_ok(p[i], 300), 0);
  ASSERT_OK(mh_mpqueue_shutdown(base.q, 0));
  for (int i = np; i < np + nc; i++) ASSERT_EQ(join_ok(p[i], 300), 0);
  ASSERT_EQ(atomic_load(base.bad), 0);
  for (long i = 0; i < np * n; i++) ASSERT_EQ(atomic_load(&base.seen[i]), 1);
  ASSERT_EQ(mh_mpqueue_qsize(base.q), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(base.q), 0);
  mh_mpqueue_free(base.q);
}

/* 1 -> 1, then 3 producers x 3 consumers: lane messages only (16..104 B), then lane and
 * record messages mixed (16 B..4 KiB), which hand over between the two
 * rings all the time.  Every message exactly once, whole, and each
 * consumer sees each producer's messages in increasing order. */
TEST(order_one_to_one_lane) { order_run(1, 1, 1024, 104, mht_scaled(1000000)); }
TEST(order_per_producer_lane) { order_run(OP, OC, 1024, 104, mht_scaled(300000)); }
TEST(order_per_producer_mixed) { order_run(OP, OC, 64, 4096, mht_scaled(100000)); }

/* The same with threads of one process instead of processes, so that a
 * ThreadSanitizer build sees every access of the lane's protocol (it cannot
 * see across processes). */
typedef struct order_thread {
  order_arg_t a;
  int consumer;
  int rc;
} order_thread_t;

static void *order_thread_main(void *arg) {
  order_thread_t *t = arg;
  t->rc = t->consumer ? order_consumer(&t->a) : order_producer(&t->a);
  return NULL;
}

static void order_threads(size_t maxsize, size_t maxlen, long n) {
  order_arg_t base = {new_queue(maxsize, 4 * MB), n, maxlen, shared((size_t)(OP * n)),
                      shared(64), 0};
  order_thread_t t[OP + OC];
  pthread_t th[OP + OC];
  for (int i = 0; i < OP + OC; i++) {
    t[i].a = base;
    t[i].a.id = i < OP ? i : i - OP;
    t[i].consumer = i >= OP;
    ASSERT_EQ(pthread_create(&th[i], NULL, order_thread_main, &t[i]), 0);
  }
  for (int i = 0; i < OP; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  ASSERT_OK(mh_mpqueue_shutdown(base.q, 0));
  for (int i = OP; i < OP + OC; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < OP + OC; i++) ASSERT_EQ(t[i].rc, 0);
  ASSERT_EQ(atomic_load(base.bad), 0);
  for (long i = 0; i < OP * n; i++) ASSERT_EQ(atomic_load(&base.seen[i]), 1);
  ASSERT_EQ(mh_mpqueue_qsize(base.q), 0);
  mh_mpqueue_free(base.q);
}

TEST(order_threads_lane) { order_threads(1024, 104, mht_scaled(200000)); }
TEST(order_threads_mixed) { order_threads(64, 4096, mht_scaled(50000)); }

/* ---- SIGKILL at random moments ----------------------------------------------- */

#define KP 2 /* producers */
#define KC 2 /* consumers */
#define KMAX (64 << 10) /* receive buffer per consumer */

typedef struct killst {
  mh_mpqueue_t *q;
  long n;
  _Atomic long *next;          /* next id to put */
  _Atomic int *stop;           /* producers: stop taking ids */
  _Atomic unsigned char *ok;   /* put returned 0 */
  _Atomic unsigned char *seen; /* deliveries */
  _Atomic long *bad;
  _Atomic long *cur;           /* per producer role: id being put, or -1 */
  unsigned char *cbuf;         /* per consumer role: KMAX bytes, shared */
  size_t maxlen;               /* longest message */
  int slow;                    /* consumers nap now and then: a backlog */
  int role;
} killst_t;

static int kill_producer(void *arg) {
  killst_t *s = arg;
  unsigned char *buf = malloc(KMAX);
  while (!atomic_load(s->stop)) {
    /* Claim the next id so that cur names it whenever it is taken: a kill
     * after the CAS leaves cur == id. */
    long id = atomic_load(s->next);
    if (id >= s->n) break;
    atomic_store(&s->cur[s->role], id);
    if (!atomic_compare_exchange_strong(s->next, &id, id + 1)) continue;
    size_t len = len_of((uint64_t)id, s->maxlen);
    if (len < 8) len = 8;
    fill(buf, len, (uint64_t)id);
    if (mh_mpqueue_put(s->q, buf, len, MH_FOREVER)) return 1;
    atomic_store(&s->ok[id], 1);
    atomic_store(&s->cur[s->role], -1);
  }
  free(buf);
  return 0;
}

static int kill_consumer(void *arg) {
  killst_t *s = arg;
  unsigned char *buf = s->cbuf + (size_t)(s->role - KP) * KMAX;
  size_t len;
  int rc;
  while ((rc = mh_mpqueue_get(s->q, buf, KMAX, &len, MH_FOREVER)) == 0) {
    uint64_t id;
    memcpy(&id, buf, 8);
    size_t want = len_of(id, s->maxlen);
    if (want < 8) want = 8;
    if (id >= (uint64_t)s->n || len != want || !check(buf, len, id)) {
      atomic_fetch_add(s->bad, 1);
      continue;
    }
    atomic_fetch_add(&s->seen[id], 1);
    if (s->slow && mht_rand() % 32 == 0) mht_sleep(0.001);
  }
  return rc == MH_ESHUTDOWN ? 0 : 2;
}

static void sigkill_loop(long kills, size_t maxsize, size_t maxbytes, size_t maxlen, int slow) {
  killst_t s;
  s.n = 20000000;
  s.maxlen = maxlen;
  s.slow = slow;
  s.stop = shared(64);
  s.q = new_queue(maxsize, maxbytes);
  s.next = shared(64);
  s.ok = shared((size_t)s.n);
  s.seen = shared((size_t)s.n);
  s.bad = shared(64);
  s.cur = shared(64);
  s.cbuf = shared((size_t)KC * KMAX);
  for (int i = 0; i < KP; i++) atomic_store(&s.cur[i], -1);
  killst_t args[KP + KC];
  mh_process_t *p[KP + KC];
  for (int i = 0; i < KP + KC; i++) {
    args[i] = s;
    args[i].role = i;
    p[i] = start(i < KP ? kill_producer : kill_consumer, &args[i]);
  }
  /* Candidates for messages a killed consumer took with it, and the ids a
   * killed producer was putting. */
  long *lost_ok = malloc(sizeof(long) * (size_t)(kills + 1)), nlost = 0;
  long *inflight = malloc(sizeof(long) * (size_t)(kills + 1)), ninflight = 0;
  long consumer_kills = 0;
  for (long k = 0; k < kills && atomic_load(s.next) < s.n; k++) {
    mht_jitter(2000);
    int r = (int)(mht_rand() % (KP + KC));
    ASSERT_OK(mh_process_kill(p[r]));
    ASSERT_OK(mh_process_join(p[r], 30));
    mh_process_free(p[r]);
    if (r < KP) {
      long id = atomic_load(&s.cur[r]);
      if (id >= 0) inflight[ninflight++] = id;
      atomic_store(&s.cur[r], -1);
    } else {
      uint64_t id;
      memcpy(&id, s.cbuf + (size_t)(r - KP) * KMAX, 8);
      lost_ok[nlost++] = (long)id;
      consumer_kills++;
    }
    p[r] = start(r < KP ? kill_producer : kill_consumer, &args[r]);
  }
  /* No survivor hangs: the producers stop, the consumers drain. */
  atomic_store(s.stop, 1);
  for (int i = 0; i < KP; i++) ASSERT_EQ(join_ok(p[i], 120), 0);
  ASSERT_OK(mh_mpqueue_shutdown(s.q, 0));
  for (int i = KP; i < KP + KC; i++) ASSERT_EQ(join_ok(p[i], 120), 0);
  ASSERT_EQ(atomic_load(s.bad), 0); /* nothing torn, mixed or foreign */
  long missing = 0, n = atomic_load(s.next);
  unsigned char *mark = calloc((size_t)s.n, 1);
  for (long j = 0; j < ninflight; j++)
    if (inflight[j] >= 0 && inflight[j] < s.n) mark[inflight[j]] |= 1;
  for (long j = 0; j < nlost; j++)
    if (lost_ok[j] >= 0 && lost_ok[j] < s.n) mark[lost_ok[j]] |= 2;
  ASSERT_GT(n, kills);
  for (long i = 0; i < n; i++) {
    unsigned seen = atomic_load(&s.seen[i]);
    ASSERT_LE(seen, 1); /* never twice */
    int in_flight = (mark[i] & 1) != 0;
    if (atomic_load(&s.ok[i])) {
      if (seen == 0) {
        /* Only a consumer killed after its get returned may lose it, and
         * then the message is in that consumer's buffer. */
        int found = (mark[i] & 2) != 0;
        if (!found) fprintf(stderr, "message %ld lost\n", i);
        ASSERT(found);
        missing++;
      }
    } else {
      /* A put that did not return: only a killed producer's. */
      ASSERT(in_flight);
    }
  }
  ASSERT_LE(missing, consumer_kills);
  fprintf(stderr, "%ld messages, %ld kills (%ld consumers), %ld lost with a killed consumer\n",
          n, kills, consumer_kills, missing);
  ASSERT_EQ(mh_mpqueue_qsize(s.q), 0);
  ASSERT_UEQ(mh_mpqueue_qbytes(s.q), 0);
  free(mark);
  free(lost_ok);
  free(inflight);
  mh_mpqueue_free(s.q);
}

/* A small ring: messages up to 16 KiB, both copy paths, many laps. */
TEST(sigkill_at_random_moments) { sigkill_loop(mht_scaled(1000), 64, 1 * MB, 16 << 10, 0); }

/* Messages of 8..104 B only: all through the lane, whose claims and
 * copy-then-CAS gets are hit by the kills; with and without a count bound. */
TEST(sigkill_in_the_lane) { sigkill_loop(mht_scaled(1000), 256, 1 * MB, 104, 0); }
TEST(sigkill_in_the_lane_unbounded) { sigkill_loop(mht_scaled(500), 0, 1 * MB, 104, 1); }

/* A ring larger than its warm part, no count bound, messages up to 64 KiB:
 * the backlog runs past the warm part, and gets give pages back while
 * processes die around them. */
TEST(sigkill_with_pages_given_back) {
  sigkill_loop(mht_scaled(300), 0, 24 * MB, 64 << 10, 1);
}

/* ---- large messages ------------------------------------------------------------ */

typedef struct big_arg {
  mh_mpqueue_t *q;
  size_t len;
} big_arg_t;

static int put_big_and_exit(void *arg) {
  big_arg_t *a = arg;
  unsigned char *b = malloc(a->len);
  if (!b) return 3;
  fill(b, a->len, 7);
  return mh_mpqueue_put(a->q, b, a->len, MH_FOREVER) ? 1 : 0;
}

TEST(hundred_megabyte_message) {
  size_t len = 100 * 1000 * 1000;
  mh_mpqueue_t *q = new_queue(0, 128 * MB);
  big_arg_t a = {q, len};
  mh_process_t *p = start(put_big_and_exit, &a);
  void *m;
  size_t got;
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &got, 60));
  ASSERT_UEQ(got, len);
  ASSERT(check(m, got, 7));
  mh_mpqueue_msg_free(m);
  ASSERT_EQ(join_ok(p, 60), 0);
  mh_mpqueue_free(q);
}

TEST(join_with_large_message_outstanding) {
  /* cpython#73983: a process that put a large message could not be joined
   * before the message was got.  Here put has copied it when it returns. */
  size_t len = 32 * MB;
  mh_mpqueue_t *q = new_queue(0, MH_MPQUEUE_DEFAULT_MAXBYTES);
  big_arg_t a = {q, len};
  mh_process_t *p = start(put_big_and_exit, &a);
  ASSERT_EQ(join_ok(p, 60), 0);
  ASSERT_EQ(mh_mpqueue_qsize(q), 1);
  ASSERT_ERR(mh_mpqueue_join(q, 0.01), MH_ETIMEDOUT);
  void *m;
  size_t got;
  ASSERT_OK(mh_mpqueue_get_alloc(q, &m, &got, 0));
  ASSERT_UEQ(got, len);
  ASSERT(check(m, got, 7));
  mh_mpqueue_msg_free(m);
  ASSERT_OK(mh_mpqueue_task_done(q));
  ASSERT_OK(mh_mpqueue_join(q, 0));
  mh_mpqueue_free(q);
}
