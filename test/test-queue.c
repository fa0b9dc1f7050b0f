/* SPDX-License-Identifier: MIT */
/* test-queue.c - mh_queue_*: semantics of every call, shutdown while threads
 * block, stress with many producers and consumers, allocation failure. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

/* Queue shapes the generic tests run over.  A bounded FIFO is a lock-free
 * ring when its storage is small and a growing locked store when it is
 * large, so both are exercised. */
enum { RING, LOCKED_FIFO, UNBOUNDED, LIFO, PRIO };
static const char *const shape_names[] = {"ring", "locked_fifo", "unbounded", "lifo", "prio"};

static int cmp_u64(const void *a, const void *b, void *arg) {
  uint64_t x, y;
  memcpy(&x, a, 8);
  memcpy(&y, b, 8);
  if (arg) (*(atomic_long *)arg)++;
  return x < y ? -1 : x > y;
}

/* With 8-byte items, a bound this large is too much storage for the ring. */
#define BIG_BOUND ((size_t)1 << 22)

static mh_queue_t *make(int shape, size_t maxsize) {
  mh_queue_t *q = NULL;
  switch (shape) {
  case RING: ASSERT_OK(mh_queue_new(&q, 8, maxsize)); break;
  case LOCKED_FIFO: ASSERT_OK(mh_queue_new(&q, 8, BIG_BOUND)); break; /* bound ignored */
  case UNBOUNDED: ASSERT_OK(mh_queue_new(&q, 8, 0)); break;
  case LIFO: ASSERT_OK(mh_queue_new_lifo(&q, 8, maxsize)); break;
  default: ASSERT_OK(mh_queue_new_priority(&q, 8, maxsize, cmp_u64, NULL)); break;
  }
  return q;
}

static void put_u64(mh_queue_t *q, uint64_t v) { ASSERT_OK(mh_queue_put(q, &v, MH_FOREVER)); }

static uint64_t get_u64(mh_queue_t *q) {
  uint64_t v = 0;
  ASSERT_OK(mh_queue_get(q, &v, MH_FOREVER));
  return v;
}

/* ---- bad input ---------------------------------------------------------- */

TEST(bad_input) {
  mh_queue_t *q = (mh_queue_t *)1;
  ASSERT_ERR(mh_queue_new(NULL, 8, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_new(&q, 0, 0), MH_EINVAL);
  ASSERT(q == NULL);
  ASSERT_ERR(mh_queue_new(&q, MH_QUEUE_MAX_ITEM_SIZE + 1, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_new(&q, SIZE_MAX, 10), MH_EINVAL);
  ASSERT_ERR(mh_queue_new(&q, 8, SIZE_MAX), MH_EINVAL);
  ASSERT_ERR(mh_queue_new(&q, 8, SIZE_MAX / 16), MH_EINVAL);
  ASSERT_ERR(mh_queue_new_lifo(&q, 0, 5), MH_EINVAL);
  ASSERT_ERR(mh_queue_new_lifo(NULL, 4, 5), MH_EINVAL);
  ASSERT_ERR(mh_queue_new_priority(&q, 8, 0, NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_queue_new_priority(&q, 0, 0, cmp_u64, NULL), MH_EINVAL);
  ASSERT(q == NULL);

  uint64_t v = 1, buf[4];
  size_t n = 99;
  ASSERT_ERR(mh_queue_put(NULL, &v, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_get(NULL, &v, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_put_many(NULL, buf, 1, &n, 0), MH_EINVAL);
  ASSERT_EQ(n, 0);
  ASSERT_ERR(mh_queue_get_many(NULL, buf, 4, &n, 0), MH_EINVAL);
  ASSERT_EQ(mh_queue_qsize(NULL), 0);
  ASSERT_EQ(mh_queue_maxsize(NULL), 0);
  ASSERT_ERR(mh_queue_empty(NULL), MH_EINVAL);
  ASSERT_ERR(mh_queue_full(NULL), MH_EINVAL);
  ASSERT_ERR(mh_queue_task_done(NULL), MH_EINVAL);
  ASSERT_ERR(mh_queue_join(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_shutdown(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_queue_is_shutdown(NULL), MH_EINVAL);
  mh_queue_free(NULL);

  for (int shape = RING; shape <= PRIO; shape++) {
    q = make(shape, 4);
    const double bad[] = {-0.5, -2.0, NAN, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      ASSERT_ERR(mh_queue_put(q, &v, bad[i]), MH_EINVAL);
      ASSERT_ERR(mh_queue_get(q, &v, bad[i]), MH_EINVAL);
      ASSERT_ERR(mh_queue_put_many(q, buf, 1, &n, bad[i]), MH_EINVAL);
      ASSERT_ERR(mh_queue_get_many(q, buf, 1, &n, bad[i]), MH_EINVAL);
      ASSERT_ERR(mh_queue_join(q, bad[i]), MH_EINVAL);
    }
    ASSERT_ERR(mh_queue_put(q, NULL, 0), MH_EINVAL);
    ASSERT_ERR(mh_queue_get(q, NULL, 0), MH_EINVAL);
    ASSERT_ERR(mh_queue_put_many(q, NULL, 2, &n, 0), MH_EINVAL);
    ASSERT_ERR(mh_queue_get_many(q, NULL, 2, &n, 0), MH_EINVAL);
    ASSERT_ERR(mh_queue_get_many(q, buf, 0, &n, 0), MH_EINVAL);
    ASSERT_ERR(mh_queue_get_many(q, buf, 2, NULL, 0), MH_EINVAL);
    ASSERT_OK(mh_queue_put_many(q, NULL, 0, &n, 0));
    ASSERT_EQ(n, 0);
    /* Nothing above changed the queue; task_done with nothing put fails. */
    ASSERT_EQ(mh_queue_qsize(q), 0);
    ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
    /* Infinity is as good as forever, and an item there makes it return. */
    ASSERT_OK(mh_queue_put(q, &v, INFINITY));
    ASSERT_OK(mh_queue_get(q, &v, INFINITY));
    mh_queue_free(q);
  }
}

/* ---- single-threaded semantics ------------------------------------------ */

/* A bounded FIFO of maxsize 3, whatever store it uses. */
static void check_bounded_fifo(mh_queue_t *q, size_t maxsize) {
  uint64_t v;
  ASSERT_EQ(mh_queue_maxsize(q), maxsize);
  ASSERT_EQ(mh_queue_empty(q), 1);
  ASSERT_EQ(mh_queue_full(q), 0);
  for (uint64_t i = 1; i <= maxsize; i++) {
    ASSERT_OK(mh_queue_put(q, &i, 0));
    ASSERT_EQ(mh_queue_qsize(q), i);
  }
  ASSERT_EQ(mh_queue_full(q), 1);
  ASSERT_EQ(mh_queue_empty(q), 0);
  v = 99;
  ASSERT_ERR(mh_queue_put(q, &v, 0), MH_EAGAIN);
  double t0 = mht_now();
  ASSERT_ERR(mh_queue_put(q, &v, 0.05), MH_ETIMEDOUT);
  double dt = mht_now() - t0;
  ASSERT_GE(dt * 1000, 45);
  ASSERT_LT(dt, 5.0);
  ASSERT_EQ(mh_queue_qsize(q), maxsize);
  /* Wrap around the storage several times, checking order. */
  uint64_t next_in = maxsize + 1, next_out = 1;
  for (int round = 0; round < 50; round++) {
    ASSERT_OK(mh_queue_get(q, &v, 0));
    ASSERT_UEQ(v, next_out++);
    ASSERT_OK(mh_queue_put(q, &next_in, 0));
    next_in++;
  }
  while (next_out < next_in) {
    ASSERT_OK(mh_queue_get(q, &v, 0.5));
    ASSERT_UEQ(v, next_out++);
  }
  ASSERT_EQ(mh_queue_empty(q), 1);
  ASSERT_ERR(mh_queue_get(q, &v, 0), MH_EAGAIN);
  t0 = mht_now();
  ASSERT_ERR(mh_queue_get(q, &v, 0.05), MH_ETIMEDOUT);
  dt = mht_now() - t0;
  ASSERT_GE(dt * 1000, 45);
  ASSERT_LT(dt, 5.0);
}

TEST(fifo_bounded_ring) {
  mh_queue_t *q;
  ASSERT_OK(mh_queue_new(&q, 8, 3));
  check_bounded_fifo(q, 3);
  mh_queue_free(q);
  ASSERT_OK(mh_queue_new(&q, 8, 1));
  check_bounded_fifo(q, 1);
  mh_queue_free(q);
  ASSERT_OK(mh_queue_new(&q, 8, 8));
  check_bounded_fifo(q, 8);
  mh_queue_free(q);
}

TEST(fifo_bounded_locked) {
  /* Items of 1 MiB with a bound of 64 are 64 MiB of storage: too much to
   * allocate up front, so this queue grows in the locked store. */
  mh_queue_t *q;
  ASSERT_OK(mh_queue_new(&q, MH_QUEUE_MAX_ITEM_SIZE, 64));
  ASSERT_EQ(mh_queue_maxsize(q), 64);
  mh_queue_free(q);
  /* Same checks with 8-byte items: a bound of 3 with the ring, and here a
   * large bound to force the locked store, filled only to 3 by hand. */
  q = make(LOCKED_FIFO, 0);
  uint64_t v;
  for (uint64_t i = 1; i <= 100; i++) put_u64(q, i);
  ASSERT_EQ(mh_queue_qsize(q), 100);
  ASSERT_EQ(mh_queue_full(q), 0);
  for (uint64_t i = 1; i <= 100; i++) ASSERT_UEQ(get_u64(q), i);
  ASSERT_ERR(mh_queue_get(q, &v, 0), MH_EAGAIN);
  mh_queue_free(q);
}

TEST(struct_items) {
  struct rec {
    char name[13];
    double x;
    void *p;
  } in = {"hello world", 2.5, NULL}, out;
  struct rec *self = &in;
  in.p = self;
  for (int shape = 0; shape < 3; shape++) {
    mh_queue_t *q;
    if (shape == 0) ASSERT_OK(mh_queue_new(&q, sizeof in, 2));
    else if (shape == 1) ASSERT_OK(mh_queue_new(&q, sizeof in, 0));
    else ASSERT_OK(mh_queue_new_lifo(&q, sizeof in, 0));
    for (int i = 0; i < 2; i++) {
      in.x = i;
      ASSERT_OK(mh_queue_put(q, &in, 0));
    }
    for (int i = 0; i < 2; i++) {
      memset(&out, 0, sizeof out);
      ASSERT_OK(mh_queue_get(q, &out, 0));
      ASSERT_STREQ(out.name, "hello world");
      ASSERT_DEQ(out.x, shape == 2 ? 1 - i : i, 0);
      ASSERT(out.p == self);
    }
    mh_queue_free(q);
  }
  /* Odd sizes (3 bytes) pass through both stores intact. */
  for (int shape = 0; shape < 2; shape++) {
    mh_queue_t *q;
    ASSERT_OK(mh_queue_new(&q, 3, shape ? 0 : 5));
    for (int i = 0; i < 5; i++) {
      unsigned char b[3] = {(unsigned char)i, (unsigned char)(i * 7), 0xA5};
      ASSERT_OK(mh_queue_put(q, b, 0));
    }
    for (int i = 0; i < 5; i++) {
      unsigned char b[4] = {0, 0, 0, 0x5A};
      ASSERT_OK(mh_queue_get(q, b, 0));
      ASSERT_EQ(b[0], i);
      ASSERT_EQ(b[1], i * 7);
      ASSERT_EQ(b[2], 0xA5);
      ASSERT_EQ(b[3], 0x5A); /* nothing written past the item */
    }
    mh_queue_free(q);
  }
}

TEST(unbounded_growth) {
  mh_queue_t *q;
  ASSERT_OK(mh_queue_new(&q, 8, 0));
  ASSERT_EQ(mh_queue_maxsize(q), 0);
  /* Offset the head so that the ring has wrapped when it must grow. */
  uint64_t in = 0, out = 0;
  for (int i = 0; i < 10; i++) put_u64(q, in++);
  for (int i = 0; i < 7; i++) ASSERT_UEQ(get_u64(q), out++);
  for (int round = 0; round < 12; round++) {
    long n = 10L << round;
    for (long i = 0; i < n; i++) put_u64(q, in++);
    ASSERT_EQ(mh_queue_full(q), 0);
    for (long i = 0; i < n / 2; i++) ASSERT_UEQ(get_u64(q), out++);
  }
  ASSERT_UEQ(mh_queue_qsize(q), in - out);
  uint64_t buf[100];
  size_t k;
  while (out < in) {
    ASSERT_OK(mh_queue_get_many(q, buf, 100, &k, 0));
    ASSERT_GE(k, 1);
    for (size_t j = 0; j < k; j++) ASSERT_UEQ(buf[j], out++);
  }
  ASSERT_UEQ(out, in);
  ASSERT_ERR(mh_queue_get_many(q, buf, 100, &k, 0), MH_EAGAIN);
  ASSERT_EQ(k, 0);
  mh_queue_free(q);

  /* One batch far larger than the array goes in whole, growing it as it
   * goes, in every unbounded kind. */
  enum { BIG = 100000 };
  uint64_t *big = malloc(BIG * sizeof *big);
  ASSERT(big != NULL);
  for (int shape = UNBOUNDED; shape <= PRIO; shape++) {
    q = make(shape, 0);
    for (uint64_t i = 0; i < BIG; i++) big[i] = i;
    ASSERT_OK(mh_queue_put_many(q, big, BIG, &k, 0));
    ASSERT_EQ(k, BIG);
    ASSERT_EQ(mh_queue_qsize(q), BIG);
    memset(big, 0xff, BIG * sizeof *big);
    size_t got = 0;
    while (got < BIG) {
      ASSERT_OK(mh_queue_get_many(q, big + got, BIG - got, &k, 0));
      got += k;
    }
    for (uint64_t i = 0; i < BIG; i++) ASSERT_UEQ(big[i], shape == LIFO ? BIG - 1 - i : i);
    mh_queue_free(q);
  }
  free(big);
}

TEST(lifo_order) {
  mh_queue_t *q;
  ASSERT_OK(mh_queue_new_lifo(&q, 8, 5));
  uint64_t v = 0;
  for (uint64_t i = 1; i <= 5; i++) ASSERT_OK(mh_queue_put(q, &i, 0));
  ASSERT_EQ(mh_queue_full(q), 1);
  ASSERT_ERR(mh_queue_put(q, &v, 0), MH_EAGAIN);
  ASSERT_ERR(mh_queue_put(q, &v, 0.02), MH_ETIMEDOUT);
  ASSERT_UEQ(get_u64(q), 5);
  ASSERT_UEQ(get_u64(q), 4);
  v = 10;
  ASSERT_OK(mh_queue_put(q, &v, 0));
  uint64_t buf[8];
  size_t k;
  ASSERT_OK(mh_queue_get_many(q, buf, 8, &k, 0));
  ASSERT_EQ(k, 4);
  ASSERT_UEQ(buf[0], 10);
  ASSERT_UEQ(buf[1], 3);
  ASSERT_UEQ(buf[2], 2);
  ASSERT_UEQ(buf[3], 1);
  ASSERT_ERR(mh_queue_get(q, &v, 0), MH_EAGAIN);
  mh_queue_free(q);

  /* Unbounded LIFO across growth. */
  ASSERT_OK(mh_queue_new_lifo(&q, 8, 0));
  for (uint64_t i = 0; i < 5000; i++) put_u64(q, i);
  for (uint64_t i = 5000; i-- > 0;) ASSERT_UEQ(get_u64(q), i);
  mh_queue_free(q);
}

struct job {
  int prio;
  int seq;
};

static int cmp_job(const void *a, const void *b, void *arg) {
  const struct job *x = a, *y = b;
  (void)arg;
  return (x->prio > y->prio) - (x->prio < y->prio);
}

TEST(priority_order) {
  mh_queue_t *q;
  atomic_long calls = 0;
  ASSERT_OK(mh_queue_new_priority(&q, 8, 0, cmp_u64, &calls));
  uint64_t vals[2000];
  for (int i = 0; i < 2000; i++) {
    vals[i] = mht_rand() % 500;
    put_u64(q, vals[i]);
  }
  ASSERT_GT(atomic_load(&calls), 0); /* the user's argument reaches cmp */
  uint64_t prev = 0;
  uint64_t sum_in = 0, sum_out = 0;
  for (int i = 0; i < 2000; i++) sum_in += vals[i];
  for (int i = 0; i < 2000; i++) {
    uint64_t v = get_u64(q);
    ASSERT_ULE(prev, v);
    prev = v;
    sum_out += v;
  }
  ASSERT_UEQ(sum_in, sum_out);
  mh_queue_free(q);

  /* Equal priorities leave in the order they came, also through get_many
   * and with a bound. */
  ASSERT_OK(mh_queue_new_priority(&q, sizeof(struct job), 300, cmp_job, NULL));
  int seq = 0;
  for (int i = 0; i < 300; i++) {
    struct job j = {(int)(mht_rand() % 4), seq++};
    ASSERT_OK(mh_queue_put(q, &j, 0));
  }
  struct job extra = {0, -1};
  ASSERT_ERR(mh_queue_put(q, &extra, 0), MH_EAGAIN);
  struct job got[300];
  size_t n = 0, k;
  while (n < 300) {
    ASSERT_OK(mh_queue_get_many(q, got + n, 7, &k, 0));
    n += k;
  }
  for (int i = 1; i < 300; i++) {
    ASSERT_LE(got[i - 1].prio, got[i].prio);
    if (got[i - 1].prio == got[i].prio) ASSERT_LT(got[i - 1].seq, got[i].seq);
  }
  mh_queue_free(q);
}

TEST(batch_calls) {
  for (int shape = RING; shape <= PRIO; shape++) {
    if (shape == LOCKED_FIFO) continue; /* its bound is too large to fill here */
    mh_queue_t *q = make(shape, 10);
    uint64_t in[25], out[25];
    for (int i = 0; i < 25; i++) in[i] = (uint64_t)i;
    size_t n = 99;
    if (shape == UNBOUNDED) {
      ASSERT_OK(mh_queue_put_many(q, in, 25, &n, 0));
      ASSERT_EQ(n, 25);
    } else {
      /* Only 10 fit: the first ten go in, then the queue is full. */
      ASSERT_ERR(mh_queue_put_many(q, in, 25, &n, 0), MH_EAGAIN);
      ASSERT_EQ(n, 10);
      ASSERT_ERR(mh_queue_put_many(q, in + 10, 15, &n, 0.02), MH_ETIMEDOUT);
      ASSERT_EQ(n, 0);
      ASSERT_EQ(mh_queue_full(q), 1);
    }
    size_t total = shape == UNBOUNDED ? 25 : 10;
    ASSERT_OK(mh_queue_get_many(q, out, 4, &n, 0));
    ASSERT_EQ(n, 4);
    ASSERT_OK(mh_queue_get_many(q, out + 4, 25, &n, 0));
    ASSERT_EQ(n, total - 4);
    for (size_t i = 0; i < total; i++)
      ASSERT_UEQ(out[i], shape == LIFO ? total - 1 - i : i);
    /* NULL nput is allowed. */
    ASSERT_OK(mh_queue_put_many(q, in, 3, NULL, 0));
    ASSERT_EQ(mh_queue_qsize(q), 3);
    mh_queue_free(q);
  }
}

/* ---- threads ------------------------------------------------------------ */

struct waiter {
  mh_queue_t *q;
  int op; /* 0 get, 1 put, 2 join, 3 get_many, 4 put_many */
  double timeout;
  atomic_int started;
  atomic_int finished;
  int rc;
  uint64_t value;
  double seconds;
  pthread_t tid;
};

static void *waiter_main(void *arg) {
  struct waiter *w = arg;
  uint64_t buf[4] = {w->value, w->value, w->value, w->value};
  size_t n;
  atomic_store(&w->started, 1);
  double t0 = mht_now();
  switch (w->op) {
  case 0: w->rc = mh_queue_get(w->q, &w->value, w->timeout); break;
  case 1: w->rc = mh_queue_put(w->q, &w->value, w->timeout); break;
  case 2: w->rc = mh_queue_join(w->q, w->timeout); break;
  case 3: w->rc = mh_queue_get_many(w->q, buf, 4, &n, w->timeout); break;
  default: w->rc = mh_queue_put_many(w->q, buf, 4, &n, w->timeout); break;
  }
  w->seconds = mht_now() - t0;
  atomic_store(&w->finished, 1);
  return NULL;
}

static void start_waiter(struct waiter *w, mh_queue_t *q, int op, double timeout, uint64_t v) {
  w->q = q;
  w->op = op;
  w->timeout = timeout;
  w->value = v;
  w->rc = 12345;
  atomic_store(&w->started, 0);
  atomic_store(&w->finished, 0);
  ASSERT_EQ(pthread_create(&w->tid, NULL, waiter_main, w), 0);
  while (!atomic_load(&w->started)) mht_sleep(0.001);
}

static void join_waiter(struct waiter *w) { ASSERT_EQ(pthread_join(w->tid, NULL), 0); }

TEST(blocking_handoff) {
  /* A get blocked on an empty queue returns the item a later put brings,
   * and a put blocked on a full queue goes in when a get makes room. */
  for (int shape = RING; shape <= PRIO; shape++) {
    mh_queue_t *q = make(shape, 1);
    struct waiter w[3];
    start_waiter(&w[0], q, 0, MH_FOREVER, 0);
    start_waiter(&w[1], q, 0, 5.0, 0);
    start_waiter(&w[2], q, 3, MH_FOREVER, 0);
    mht_sleep(0.05);
    for (uint64_t i = 1; i <= 3; i++) {
      ASSERT_OK(mh_queue_put(q, &i, 2.0));
      mht_sleep(0.01);
    }
    for (int i = 0; i < 3; i++) {
      join_waiter(&w[i]);
      ASSERT_OK(w[i].rc);
    }
    if (shape == UNBOUNDED) {
      mh_queue_free(q);
      continue;
    }
    if (shape != LOCKED_FIFO) {
      /* Bound 1: a second put blocks until a get. */
      uint64_t v = 7;
      ASSERT_OK(mh_queue_put(q, &v, 0));
      start_waiter(&w[0], q, 1, MH_FOREVER, 8);
      start_waiter(&w[1], q, 4, 5.0, 9);
      mht_sleep(0.05);
      ASSERT_EQ(mh_queue_qsize(q), 1);
      /* 7, then 8 and four 9s as room appears. */
      uint64_t sum = 0;
      for (int i = 0; i < 6; i++) {
        ASSERT_OK(mh_queue_get(q, &v, 2.0));
        sum += v;
      }
      ASSERT_UEQ(sum, 7 + 8 + 4 * 9);
      join_waiter(&w[0]);
      join_waiter(&w[1]);
      ASSERT_OK(w[0].rc);
      ASSERT_OK(w[1].rc);
      ASSERT_ERR(mh_queue_get(q, &v, 0), MH_EAGAIN);
    }
    mh_queue_free(q);
  }
}

TEST(task_done_join) {
  for (int shape = RING; shape <= PRIO; shape++) {
    mh_queue_t *q = make(shape, 8);
    ASSERT_OK(mh_queue_join(q, 0)); /* nothing put: nothing to wait for */
    for (uint64_t i = 0; i < 3; i++) put_u64(q, i);
    ASSERT_ERR(mh_queue_join(q, 0), MH_ETIMEDOUT);
    double t0 = mht_now();
    ASSERT_ERR(mh_queue_join(q, 0.05), MH_ETIMEDOUT);
    ASSERT_GE((mht_now() - t0) * 1000, 45);
    struct waiter j1, j2;
    start_waiter(&j1, q, 2, MH_FOREVER, 0);
    start_waiter(&j2, q, 2, 10.0, 0);
    for (int i = 0; i < 3; i++) {
      get_u64(q);
      mht_sleep(0.01);
      ASSERT_OK(mh_queue_task_done(q));
    }
    join_waiter(&j1);
    join_waiter(&j2);
    ASSERT_OK(j1.rc);
    ASSERT_OK(j2.rc);
    ASSERT_GE(j1.seconds * 1000, 25);
    /* One more task_done than items: ValueError. */
    ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
    ASSERT_OK(mh_queue_join(q, 0));
    /* task_done may come before the get (Python counts only puts). */
    put_u64(q, 5);
    ASSERT_OK(mh_queue_task_done(q));
    ASSERT_OK(mh_queue_join(q, 0));
    ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
    mh_queue_free(q);
  }
}

TEST(shutdown_normal) {
  for (int shape = RING; shape <= PRIO; shape++) {
    mh_queue_t *q = make(shape, 4);
    ASSERT_EQ(mh_queue_is_shutdown(q), 0);
    for (uint64_t i = 1; i <= 3; i++) put_u64(q, i);
    /* A joiner blocked across a normal shutdown keeps waiting for the
     * three items to be done. */
    struct waiter j;
    start_waiter(&j, q, 2, 30.0, 0);
    ASSERT_OK(mh_queue_shutdown(q, 0));
    ASSERT_EQ(mh_queue_is_shutdown(q), 1);
    uint64_t v = 9;
    size_t n;
    ASSERT_ERR(mh_queue_put(q, &v, 0), MH_ESHUTDOWN);
    ASSERT_ERR(mh_queue_put(q, &v, MH_FOREVER), MH_ESHUTDOWN);
    ASSERT_ERR(mh_queue_put_many(q, &v, 1, &n, 1.0), MH_ESHUTDOWN);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(mh_queue_qsize(q), 3);
    /* The rest is still there to get, then get fails without waiting. */
    uint64_t sum = 0;
    for (int i = 0; i < 3; i++) sum += get_u64(q);
    ASSERT_UEQ(sum, 6);
    ASSERT_ERR(mh_queue_get(q, &v, MH_FOREVER), MH_ESHUTDOWN);
    ASSERT_ERR(mh_queue_get(q, &v, 0), MH_ESHUTDOWN);
    ASSERT_ERR(mh_queue_get_many(q, &v, 1, &n, 5.0), MH_ESHUTDOWN);
    /* join still counts the three items. */
    ASSERT_ERR(mh_queue_join(q, 0), MH_ETIMEDOUT);
    mht_sleep(0.03);
    ASSERT_EQ(atomic_load(&j.finished), 0); /* still blocked */
    for (int i = 0; i < 3; i++) ASSERT_OK(mh_queue_task_done(q));
    join_waiter(&j);
    ASSERT_OK(j.rc);
    ASSERT_GE(j.seconds * 1000, 25);
    ASSERT_OK(mh_queue_join(q, 0));
    ASSERT_OK(mh_queue_shutdown(q, 0)); /* again: harmless */
    mh_queue_free(q);
  }
}

/* Threads blocked in get (empty queue) and put (full queue) when the queue
 * is shut down, in both modes. */
TEST(shutdown_wakes_waiters) {
  for (int immediate = 0; immediate <= 1; immediate++) {
    for (int shape = RING; shape <= PRIO; shape++) {
      /* Getters on an empty queue. */
      mh_queue_t *q = make(shape, 2);
      struct waiter w[4];
      for (int i = 0; i < 4; i++) start_waiter(&w[i], q, i % 2 ? 3 : 0, i < 2 ? MH_FOREVER : 30.0, 0);
      mht_sleep(0.05);
      double t0 = mht_now();
      ASSERT_OK(mh_queue_shutdown(q, immediate));
      for (int i = 0; i < 4; i++) {
        join_waiter(&w[i]);
        ASSERT_ERR(w[i].rc, MH_ESHUTDOWN);
      }
      ASSERT_LT(mht_now() - t0, 10.0);
      mh_queue_free(q);
      if (shape == UNBOUNDED || shape == LOCKED_FIFO) continue;

      /* Putters on a full queue; its two items stay (normal) or go
       * (immediate). */
      q = make(shape, 2);
      put_u64(q, 1);
      put_u64(q, 2);
      for (int i = 0; i < 4; i++) start_waiter(&w[i], q, i % 2 ? 4 : 1, i < 2 ? MH_FOREVER : 30.0, 5);
      mht_sleep(0.05);
      ASSERT_OK(mh_queue_shutdown(q, immediate));
      for (int i = 0; i < 4; i++) {
        join_waiter(&w[i]);
        ASSERT_ERR(w[i].rc, MH_ESHUTDOWN);
      }
      uint64_t v;
      if (!immediate) {
        ASSERT_EQ(mh_queue_qsize(q), 2);
        get_u64(q);
        get_u64(q);
        ASSERT_OK(mh_queue_task_done(q));
        ASSERT_OK(mh_queue_task_done(q));
      }
      ASSERT_EQ(mh_queue_qsize(q), 0);
      ASSERT_ERR(mh_queue_get(q, &v, MH_FOREVER), MH_ESHUTDOWN);
      /* Either way every put item is now done. */
      ASSERT_OK(mh_queue_join(q, 0));
      ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
      mh_queue_free(q);
    }
  }
}

TEST(shutdown_immediate_join) {
  for (int shape = RING; shape <= PRIO; shape++) {
    mh_queue_t *q = make(shape, 8);
    for (uint64_t i = 1; i <= 5; i++) put_u64(q, i);
    /* One item taken and still being worked on. */
    get_u64(q);
    struct waiter j[2];
    start_waiter(&j[0], q, 2, MH_FOREVER, 0);
    start_waiter(&j[1], q, 2, 30.0, 0);
    mht_sleep(0.03);
    ASSERT_OK(mh_queue_shutdown(q, 1));
    ASSERT_EQ(mh_queue_qsize(q), 0);
    ASSERT_EQ(mh_queue_empty(q), 1);
    uint64_t v;
    ASSERT_ERR(mh_queue_get(q, &v, 0), MH_ESHUTDOWN);
    ASSERT_ERR(mh_queue_put(q, &v, 0), MH_ESHUTDOWN);
    /* The four discarded items count as done; the taken one does not. */
    mht_sleep(0.03);
    ASSERT_ERR(mh_queue_join(q, 0), MH_ETIMEDOUT);
    ASSERT_OK(mh_queue_task_done(q));
    for (int i = 0; i < 2; i++) {
      join_waiter(&j[i]);
      ASSERT_OK(j[i].rc);
      ASSERT_GE(j[i].seconds * 1000, 40);
    }
    ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
    mh_queue_free(q);
  }

  /* Immediate after normal discards what the normal one left; task_done
   * calls made early are not counted twice. */
  mh_queue_t *q = make(RING, 8);
  for (uint64_t i = 1; i <= 4; i++) put_u64(q, i);
  ASSERT_OK(mh_queue_task_done(q));
  ASSERT_OK(mh_queue_task_done(q));
  ASSERT_OK(mh_queue_shutdown(q, 0));
  ASSERT_EQ(mh_queue_qsize(q), 4);
  ASSERT_OK(mh_queue_shutdown(q, 1));
  ASSERT_EQ(mh_queue_qsize(q), 0);
  ASSERT_OK(mh_queue_join(q, 0));
  ASSERT_ERR(mh_queue_task_done(q), MH_EINVAL);
  mh_queue_free(q);
}

/* A non-blocking call must not fail while the queue, as seen through calls
 * that have returned, has an item (get) or room (put): in the ring a peer
 * that has claimed a slot and not yet finished copying must be waited for. */
struct nowait {
  mh_queue_t *q;
  long n;
  atomic_long done; /* calls of the busy side that have returned */
};

static void *nowait_putter(void *p) {
  struct nowait *w = p;
  for (long i = 0; i < w->n; i++) {
    uint64_t v = (uint64_t)i;
    ASSERT_OK(mh_queue_put(w->q, &v, MH_FOREVER));
    atomic_fetch_add(&w->done, 1);
  }
  return NULL;
}

static void *nowait_getter(void *p) {
  struct nowait *w = p;
  for (long i = 0; i < w->n; i++) {
    uint64_t v;
    ASSERT_OK(mh_queue_get(w->q, &v, MH_FOREVER));
    atomic_fetch_add(&w->done, 1);
  }
  return NULL;
}

TEST(nowait_is_exact) {
  long n = mht_scaled(100000);
  mh_queue_t *q;
  ASSERT_OK(mh_queue_new(&q, 8, 64));
  /* Two putters; this thread gets without waiting. */
  struct nowait w = {q, n, 0};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, nowait_putter, &w), 0);
  long got = 0;
  while (got < 2 * n) {
    long ready = atomic_load(&w.done);
    uint64_t v;
    int rc = mh_queue_get(q, &v, 0);
    if (ready > got) ASSERT_OK(rc);
    if (rc == 0) got++;
    else ASSERT_ERR(rc, MH_EAGAIN);
  }
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  /* Two getters; this thread puts without waiting. */
  atomic_store(&w.done, 0);
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, nowait_getter, &w), 0);
  long put = 0;
  while (put < 2 * n) {
    long taken = atomic_load(&w.done);
    uint64_t v = 1;
    int rc = mh_queue_put(q, &v, 0);
    if (put - taken < 64) ASSERT_OK(rc);
    if (rc == 0) put++;
    else ASSERT_ERR(rc, MH_EAGAIN);
  }
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  ASSERT_EQ(mh_queue_qsize(q), 0);
  mh_queue_free(q);
}

/* Every exchange needs a wake-up when the other side sleeps, so a lost
 * wake-up shows as a timed-out get. */
struct pingpong {
  mh_queue_t *there, *back;
  long rounds;
};

static void *pong(void *p) {
  struct pingpong *pp = p;
  for (long i = 0; i < pp->rounds; i++) {
    uint64_t v;
    ASSERT_OK(mh_queue_get(pp->there, &v, 20.0));
    v++;
    ASSERT_OK(mh_queue_put(pp->back, &v, 20.0));
  }
  return NULL;
}

TEST(ping_pong) {
  for (int shape = RING; shape <= PRIO; shape++) {
    struct pingpong pp = {make(shape, 2), make(shape, 2), mht_scaled(30000)};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, pong, &pp), 0);
    for (long i = 0; i < pp.rounds; i++) {
      uint64_t v = (uint64_t)i;
      ASSERT_OK(mh_queue_put(pp.there, &v, 20.0));
      ASSERT_OK(mh_queue_get(pp.back, &v, 20.0));
      ASSERT_UEQ(v, (uint64_t)i + 1);
      if (i % 1024 == 0) mht_jitter(200);
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);
    mh_queue_free(pp.there);
    mh_queue_free(pp.back);
  }
}

/* Several getters asleep, then a burst of single puts: wake-ups skipped while
 * one is pending must be passed on, so that every getter gets an item. */
TEST(burst_wakes_all) {
  long rounds = mht_scaled(200);
  if (rounds < 10) rounds = 10;
  for (long r = 0; r < rounds; r++) {
    int shape = (int)(r % 5);
    mh_queue_t *q = make(shape, 8);
    struct waiter w[4];
    for (int i = 0; i < 4; i++) start_waiter(&w[i], q, 0, 20.0, 0);
    mht_sleep(0.002);
    for (uint64_t i = 1; i <= 4; i++) put_u64(q, i);
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++) {
      join_waiter(&w[i]);
      ASSERT_OK(w[i].rc);
      /* A lost wake-up shows as a get that found its item only on its last
       * look, when its 20 s ran out. */
      ASSERT_LT(w[i].seconds, 10.0);
      sum += w[i].value;
    }
    ASSERT_UEQ(sum, 10);
    /* The same for putters asleep on a full queue and a burst of gets. */
    if (shape != UNBOUNDED && shape != LOCKED_FIFO) {
      for (uint64_t i = 0; i < 8; i++) put_u64(q, 100);
      for (int i = 0; i < 4; i++) start_waiter(&w[i], q, 1, 20.0, 1);
      mht_sleep(0.002);
      for (int i = 0; i < 4; i++) get_u64(q);
      for (int i = 0; i < 4; i++) {
        join_waiter(&w[i]);
        ASSERT_OK(w[i].rc);
        ASSERT_LT(w[i].seconds, 10.0);
      }
      ASSERT_EQ(mh_queue_qsize(q), 8);
    }
    mh_queue_free(q);
  }
}

/* ---- stress -------------------------------------------------------------- */

#define NPROD 4
#define NCONS 4

struct stress {
  mh_queue_t *q;
  int shape;
  long per_producer;
  atomic_ullong sum, count;
  atomic_ullong put_sum, put_count; /* for the shutdown race */
  int racing;                       /* producers stop at the first ESHUTDOWN */
};

struct stress_arg {
  struct stress *s;
  int id;
};

static void *stress_producer(void *p) {
  struct stress_arg *a = p;
  struct stress *s = a->s;
  uint64_t buf[16];
  uint64_t sum = 0, count = 0;
  for (long i = 1; i <= s->per_producer;) {
    unsigned r = (unsigned)(mht_rand() % 16);
    int rc;
    if (r < 4) {
      /* A batch of up to 16. */
      size_t k = 1 + mht_rand() % 16, n = 0;
      if ((long)k > s->per_producer - i + 1) k = (size_t)(s->per_producer - i + 1);
      for (size_t j = 0; j < k; j++) buf[j] = ((uint64_t)a->id << 40) | (uint64_t)(i + (long)j);
      rc = mh_queue_put_many(s->q, buf, k, &n, r == 0 ? 0.0 : MH_FOREVER);
      for (size_t j = 0; j < n; j++) sum += buf[j];
      count += n;
      i += (long)n;
    } else {
      uint64_t v = ((uint64_t)a->id << 40) | (uint64_t)i;
      rc = mh_queue_put(s->q, &v, r < 6 ? 0.0 : (r < 8 ? 0.001 : MH_FOREVER));
      if (rc == 0) {
        sum += v;
        count++;
        i++;
      }
    }
    if (rc == MH_ESHUTDOWN && s->racing) break;
    if (rc != 0 && rc != MH_EAGAIN && rc != MH_ETIMEDOUT)
      mht_fail(__FILE__, __LINE__, "put: %s", mh_err_name(rc));
    if (r == 15) mht_jitter(20);
  }
  atomic_fetch_add(&s->put_sum, sum);
  atomic_fetch_add(&s->put_count, count);
  return NULL;
}

static void *stress_consumer(void *p) {
  struct stress_arg *a = p;
  struct stress *s = a->s;
  uint64_t last[NPROD] = {0}, buf[16], sum = 0, count = 0;
  for (;;) {
    unsigned r = (unsigned)(mht_rand() % 16);
    size_t n = 0;
    int rc;
    if (r < 4) {
      rc = mh_queue_get_many(s->q, buf, 1 + mht_rand() % 16, &n, r == 0 ? 0.0 : MH_FOREVER);
    } else {
      rc = mh_queue_get(s->q, buf, r < 6 ? 0.0 : (r < 8 ? 0.001 : MH_FOREVER));
      n = rc == 0;
    }
    if (rc == MH_ESHUTDOWN) break;
    if (rc != 0 && rc != MH_EAGAIN && rc != MH_ETIMEDOUT)
      mht_fail(__FILE__, __LINE__, "get: %s", mh_err_name(rc));
    for (size_t j = 0; j < n; j++) {
      uint64_t v = buf[j], prod = v >> 40, seq = v & ((1ull << 40) - 1);
      ASSERT_LT(prod, NPROD);
      /* A FIFO hands each consumer every producer's items in order. */
      if (s->shape == RING || s->shape == LOCKED_FIFO || s->shape == UNBOUNDED)
        ASSERT_GT(seq, last[prod]);
      last[prod] = seq;
      sum += v;
      count++;
      ASSERT_OK(mh_queue_task_done(s->q));
    }
    if (r == 15) mht_jitter(20);
  }
  atomic_fetch_add(&s->sum, sum);
  atomic_fetch_add(&s->count, count);
  return NULL;
}

static void run_stress(int shape, long total, int racing, int immediate) {
  struct stress s;
  memset(&s, 0, sizeof s);
  s.shape = shape;
  s.per_producer = total / NPROD;
  s.racing = racing;
  s.q = make(shape, 64);
  pthread_t pt[NPROD], ct[NCONS];
  struct stress_arg pa[NPROD], ca[NCONS];
  for (int i = 0; i < NCONS; i++) {
    ca[i] = (struct stress_arg){&s, i};
    ASSERT_EQ(pthread_create(&ct[i], NULL, stress_consumer, &ca[i]), 0);
  }
  for (int i = 0; i < NPROD; i++) {
    pa[i] = (struct stress_arg){&s, i};
    ASSERT_EQ(pthread_create(&pt[i], NULL, stress_producer, &pa[i]), 0);
  }
  if (racing) {
    /* Shut down while everyone is busy. */
    mht_sleep(0.01 + (double)(mht_rand() % 20) / 1000);
    ASSERT_OK(mh_queue_shutdown(s.q, immediate));
  }
  for (int i = 0; i < NPROD; i++) ASSERT_EQ(pthread_join(pt[i], NULL), 0);
  if (!racing) ASSERT_OK(mh_queue_shutdown(s.q, 0));
  for (int i = 0; i < NCONS; i++) ASSERT_EQ(pthread_join(ct[i], NULL), 0);
  ASSERT_EQ(mh_queue_qsize(s.q), 0);
  uint64_t got = atomic_load(&s.count), put = atomic_load(&s.put_count);
  if (!racing) {
    uint64_t want_sum = 0;
    for (uint64_t p = 0; p < NPROD; p++)
      for (uint64_t i = 1; i <= (uint64_t)s.per_producer; i++) want_sum += (p << 40) | i;
    ASSERT_UEQ(put, (uint64_t)(s.per_producer * NPROD));
    ASSERT_UEQ(atomic_load(&s.put_sum), want_sum);
  }
  if (racing && immediate) {
    ASSERT_ULE(got, put);
  } else {
    /* Every item that went in came out exactly once. */
    ASSERT_UEQ(got, put);
    ASSERT_UEQ(atomic_load(&s.sum), atomic_load(&s.put_sum));
  }
  /* Every item was got and marked done, or discarded. */
  ASSERT_OK(mh_queue_join(s.q, 10.0));
  ASSERT_ERR(mh_queue_task_done(s.q), MH_EINVAL);
  mh_queue_free(s.q);
}

TEST(stress_ring) { run_stress(RING, mht_scaled(1000000), 0, 0); }
TEST(stress_locked_fifo) { run_stress(LOCKED_FIFO, mht_scaled(400000), 0, 0); }
TEST(stress_unbounded) { run_stress(UNBOUNDED, mht_scaled(400000), 0, 0); }
TEST(stress_lifo) { run_stress(LIFO, mht_scaled(400000), 0, 0); }
TEST(stress_priority) { run_stress(PRIO, mht_scaled(400000), 0, 0); }

TEST(shutdown_mid_stress_loses_no_item) {
  long rounds = mht_scaled(40);
  if (rounds < 4) rounds = 4;
  for (long r = 0; r < rounds; r++) {
    int shape = (int)(r % 5), immediate = (int)((r / 5) % 2);
    run_stress(shape, 1L << 40, 1, immediate);
  }
}

/* ---- allocation failure -------------------------------------------------- */

TEST(alloc_fail_new) {
  for (int shape = RING; shape <= PRIO; shape++) {
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
      mht_alloc_fail_after(n);
      mh_queue_t *q = NULL;
      int rc;
      switch (shape) {
      case RING: rc = mh_queue_new(&q, 8, 64); break;
      case LOCKED_FIFO: rc = mh_queue_new(&q, 8, BIG_BOUND); break;
      case UNBOUNDED: rc = mh_queue_new(&q, 8, 0); break;
      case LIFO: rc = mh_queue_new_lifo(&q, 8, 0); break;
      default: rc = mh_queue_new_priority(&q, 8, 0, cmp_u64, NULL); break;
      }
      if (rc == 0) {
        ok = 1;
        ASSERT(q != NULL);
        uint64_t v = 1;
        ASSERT_OK(mh_queue_put(q, &v, 0));
        mh_queue_free(q);
      } else {
        if (rc != MH_ENOMEM)
          mht_fail(__FILE__, __LINE__, "%s: %s", shape_names[shape], mh_err_name(rc));
        ASSERT(q == NULL);
      }
      ASSERT_EQ(mht_alloc_live(), 0);
    }
    ASSERT(ok);
    mht_alloc_reset();
  }
}

TEST(alloc_fail_growth) {
  for (int shape = LOCKED_FIFO; shape <= PRIO; shape++) {
    /* The constructor's allocations succeed, then growth fails. */
    mht_alloc_fail_after(2);
    mh_queue_t *q = NULL;
    switch (shape) {
    case LOCKED_FIFO: ASSERT_OK(mh_queue_new(&q, 8, BIG_BOUND)); break;
    case UNBOUNDED: ASSERT_OK(mh_queue_new(&q, 8, 0)); break;
    case LIFO: ASSERT_OK(mh_queue_new_lifo(&q, 8, 0)); break;
    default: ASSERT_OK(mh_queue_new_priority(&q, 8, 0, cmp_u64, NULL)); break;
    }
    uint64_t v = 0;
    int rc;
    while ((rc = mh_queue_put(q, &v, MH_FOREVER)) == 0) v++;
    ASSERT_ERR(rc, MH_ENOMEM);
    ASSERT_GE(v, 1);
    ASSERT_UEQ(mh_queue_qsize(q), v);
    /* A batch puts what fits and reports the rest. */
    uint64_t buf[4] = {100, 101, 102, 103};
    size_t n = 9;
    ASSERT_ERR(mh_queue_put_many(q, buf, 4, &n, 0), MH_ENOMEM);
    ASSERT_EQ(n, 0);
    /* Memory is back: the queue grows and keeps every item. */
    mht_alloc_fail_after(-1);
    ASSERT_OK(mh_queue_put_many(q, buf, 4, &n, 0));
    ASSERT_UEQ(mh_queue_qsize(q), v + 4);
    uint64_t sum = 0, want = v * (v - 1) / 2 + 100 + 101 + 102 + 103;
    for (uint64_t i = 0; i < v + 4; i++) sum += get_u64(q);
    ASSERT_UEQ(sum, want);
    mh_queue_free(q);
    ASSERT_EQ(mht_alloc_live(), 0);
    mht_alloc_reset();
  }
}
