/* SPDX-License-Identifier: MIT */
/* test-shared.c - shared values, arrays and process-shared primitives used
 * across real processes: exact totals, robust locks after a crash, no
 * leftovers in /dev/shm, bad input. */
#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

static void assert_no_children(void) {
  double end = mht_now() + 10;
  while (mht_count_children() != 0 && mht_now() < end) mht_sleep(0.01);
  ASSERT_EQ(mht_count_children(), 0);
}

/* Start `n` children running fn(arg) and join them; every child must exit 0. */
static void run_children(int n, mh_process_fn fn, void *arg) {
  mh_process_t *p[64];
  ASSERT(n <= 64);
  for (int i = 0; i < n; i++) ASSERT_OK(mh_process_start(&p[i], fn, arg, NULL));
  for (int i = 0; i < n; i++) {
    int code = -1;
    ASSERT_OK(mh_process_join(p[i], 120));
    ASSERT_OK(mh_process_exitcode(p[i], &code));
    ASSERT_EQ(code, 0);
    mh_process_free(p[i]);
  }
}

/* ---- values and arrays in one process --------------------------------------- */

TEST(value_basics) {
  mh_shared_value_t *v;
  int32_t initial = 100;
  int64_t x = 0;
  double d = 0;
  ASSERT_OK(mh_shared_value_new(&v, MH_SHARED_INT32, &initial));
  ASSERT_EQ(mh_shared_value_type(v), MH_SHARED_INT32);
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_EQ(x, 100);
  ASSERT_EQ(*(int32_t *)mh_shared_value_ptr(v), 100);
  ASSERT_OK(mh_shared_value_set_i64(v, -7));
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_EQ(x, -7);
  ASSERT_ERR(mh_shared_value_set_i64(v, (int64_t)INT32_MAX + 1), MH_ERANGE);
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_EQ(x, -7);
  ASSERT_ERR(mh_shared_value_get_double(v, &d), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_set_double(v, 1.5), MH_EINVAL);
  ASSERT_OK(mh_shared_value_add(v, 10, &x));
  ASSERT_EQ(x, -7);
  ASSERT_OK(mh_shared_value_add(v, 0, &x));
  ASSERT_EQ(x, 3);
  /* get/set may be called with the (recursive) lock held, as in Python's
   * `with v.get_lock(): v.value += 1`. */
  mh_rlock_t *lk = mh_shared_value_get_lock(v);
  ASSERT(lk != NULL);
  ASSERT_OK(mh_rlock_acquire(lk, 1));
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_OK(mh_shared_value_set_i64(v, x + 1));
  ASSERT_OK(mh_rlock_release(lk));
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_EQ(x, 4);
  ASSERT_OK(mh_shared_value_free(v));

  ASSERT_OK(mh_shared_value_new(&v, MH_SHARED_DOUBLE, NULL));
  ASSERT_OK(mh_shared_value_get_double(v, &d));
  ASSERT_DEQ(d, 0.0, 0);
  ASSERT_OK(mh_shared_value_set_double(v, 2.25));
  ASSERT_OK(mh_shared_value_get_double(v, &d));
  ASSERT_DEQ(d, 2.25, 0);
  ASSERT_ERR(mh_shared_value_get_i64(v, &x), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_add(v, 1, NULL), MH_EINVAL);
  ASSERT_OK(mh_shared_value_free(v));
}

TEST(value_all_types) {
  static const struct {
    mh_shared_type_t type;
    int64_t min, max;
  } t[] = {
      {MH_SHARED_INT8, INT8_MIN, INT8_MAX},      {MH_SHARED_UINT8, 0, UINT8_MAX},
      {MH_SHARED_INT16, INT16_MIN, INT16_MAX},   {MH_SHARED_UINT16, 0, UINT16_MAX},
      {MH_SHARED_INT32, INT32_MIN, INT32_MAX},   {MH_SHARED_UINT32, 0, UINT32_MAX},
      {MH_SHARED_INT64, INT64_MIN, INT64_MAX},   {MH_SHARED_UINT64, 0, INT64_MAX},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    mh_shared_value_t *v;
    int64_t x, old;
    ASSERT_OK(mh_shared_value_new(&v, t[i].type, NULL));
    ASSERT_OK(mh_shared_value_set_i64(v, t[i].max));
    ASSERT_OK(mh_shared_value_get_i64(v, &x));
    ASSERT_EQ(x, t[i].max);
    ASSERT_OK(mh_shared_value_set_i64(v, t[i].min));
    ASSERT_OK(mh_shared_value_get_i64(v, &x));
    ASSERT_EQ(x, t[i].min);
    if (t[i].min > INT64_MIN) ASSERT_ERR(mh_shared_value_set_i64(v, t[i].min - 1), MH_ERANGE);
    if (t[i].type != MH_SHARED_UINT64 && t[i].max < INT64_MAX)
      ASSERT_ERR(mh_shared_value_set_i64(v, t[i].max + 1), MH_ERANGE);
    /* The lock-free add wraps around modulo the width. */
    ASSERT_OK(mh_shared_value_add(v, -1, &old));
    ASSERT_EQ(old, t[i].min);
    if (t[i].type != MH_SHARED_UINT64) {
      ASSERT_OK(mh_shared_value_get_i64(v, &x));
      ASSERT_EQ(x, t[i].max);
    } else {
      /* 0 - 1 is UINT64_MAX, which does not fit an int64 */
      ASSERT_ERR(mh_shared_value_get_i64(v, &x), MH_ERANGE);
      ASSERT_EQ(*(uint64_t *)mh_shared_value_ptr(v), UINT64_MAX);
    }
    ASSERT_OK(mh_shared_value_free(v));
  }
  mh_shared_value_t *f;
  float one = 1.5f;
  double d;
  ASSERT_OK(mh_shared_value_new(&f, MH_SHARED_FLOAT, &one));
  ASSERT_OK(mh_shared_value_get_double(f, &d));
  ASSERT_DEQ(d, 1.5, 0);
  ASSERT_OK(mh_shared_value_free(f));
}

TEST(array_basics) {
  mh_shared_array_t *a;
  int64_t init[5] = {1, 2, 3, 4, 5}, x;
  ASSERT_OK(mh_shared_array_new(&a, MH_SHARED_INT64, 5, init));
  ASSERT_UEQ(mh_shared_array_len(a), 5);
  ASSERT_EQ(mh_shared_array_type(a), MH_SHARED_INT64);
  for (size_t i = 0; i < 5; i++) {
    ASSERT_OK(mh_shared_array_get_i64(a, i, &x));
    ASSERT_EQ(x, (int64_t)i + 1);
  }
  ASSERT_ERR(mh_shared_array_get_i64(a, 5, &x), MH_ERANGE);
  ASSERT_ERR(mh_shared_array_set_i64(a, 5, 1), MH_ERANGE);
  ASSERT_ERR(mh_shared_array_add(a, 5, 1, NULL), MH_ERANGE);
  ASSERT_OK(mh_shared_array_set_i64(a, 4, 50));
  ASSERT_OK(mh_shared_array_add(a, 0, 9, &x));
  ASSERT_EQ(x, 1);
  int64_t *raw = mh_shared_array_ptr(a);
  ASSERT_EQ(raw[0], 10);
  ASSERT_EQ(raw[4], 50);
  ASSERT(mh_shared_array_get_lock(a) != NULL);
  ASSERT_OK(mh_shared_array_free(a));

  mh_shared_array_t *dbl;
  double d;
  ASSERT_OK(mh_shared_array_new(&dbl, MH_SHARED_DOUBLE, 1000, NULL));
  ASSERT_OK(mh_shared_array_set_double(dbl, 999, -3.5));
  ASSERT_OK(mh_shared_array_get_double(dbl, 999, &d));
  ASSERT_DEQ(d, -3.5, 0);
  ASSERT_OK(mh_shared_array_get_double(dbl, 0, &d));
  ASSERT_DEQ(d, 0.0, 0);
  ASSERT_ERR(mh_shared_array_get_double(dbl, 1000, &d), MH_ERANGE);
  ASSERT_OK(mh_shared_array_free(dbl));
}

TEST(bad_input) {
  mh_shared_value_t *v = NULL;
  mh_shared_array_t *a = NULL;
  void *m = NULL;
  int64_t x;
  double d;
  ASSERT_ERR(mh_shared_value_new(NULL, MH_SHARED_INT32, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_new(&v, (mh_shared_type_t)0, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_new(&v, (mh_shared_type_t)99, NULL), MH_EINVAL);
  ASSERT(v == NULL);
  ASSERT_ERR(mh_shared_array_new(&a, MH_SHARED_INT32, 0, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_array_new(&a, MH_SHARED_INT32, SIZE_MAX / 2, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_array_new(NULL, MH_SHARED_INT32, 3, NULL), MH_EINVAL);
  ASSERT(a == NULL);
  /* Valid but more than the address space holds: the mapping fails. */
  ASSERT_ERR(mh_shared_array_new(&a, MH_SHARED_DOUBLE, (size_t)1 << 50, NULL), MH_ENOMEM);
  ASSERT_ERR(mh_shared_mem_new(&m, (size_t)1 << 58), MH_ENOMEM);
  ASSERT(a == NULL);
  ASSERT(m == NULL);
  ASSERT_ERR(mh_shared_value_free(NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_array_free(NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_get_i64(NULL, &x), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_set_i64(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_get_double(NULL, &d), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_set_double(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_add(NULL, 1, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_type(NULL), MH_EINVAL);
  ASSERT(mh_shared_value_get_lock(NULL) == NULL);
  ASSERT(mh_shared_value_ptr(NULL) == NULL);
  ASSERT_ERR(mh_shared_array_get_i64(NULL, 0, &x), MH_EINVAL);
  ASSERT_UEQ(mh_shared_array_len(NULL), 0);
  ASSERT_ERR(mh_shared_mem_new(NULL, 10), MH_EINVAL);
  ASSERT_ERR(mh_shared_mem_new(&m, 0), MH_EINVAL);
  ASSERT_ERR(mh_shared_mem_new(&m, SIZE_MAX), MH_EINVAL);
  ASSERT_ERR(mh_shared_mem_free(NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_lock_new(NULL), MH_EINVAL);
  ASSERT_ERR(mh_shared_event_new(NULL), MH_EINVAL);
  mh_barrier_t *b = NULL;
  ASSERT_ERR(mh_shared_barrier_new(&b, 0, NULL, NULL, MH_FOREVER), MH_EINVAL);
  ASSERT(b == NULL);
  mh_sem_t *s = NULL;
  ASSERT_ERR(mh_shared_sem_new(&s, 5, 2), MH_EINVAL);
  ASSERT(s == NULL);

  /* Freeing what did not come from the matching `new` is refused. */
  mh_lock_t heap_lock;
  ASSERT_OK(mh_lock_init(&heap_lock));
  ASSERT_ERR(mh_shared_lock_free(&heap_lock), MH_EINVAL);
  ASSERT_OK(mh_lock_destroy(&heap_lock));
  char *plain = malloc(100);
  ASSERT(plain != NULL);
  ASSERT_ERR(mh_shared_mem_free(plain), MH_EINVAL);
  free(plain);
  mh_event_t *ev;
  ASSERT_OK(mh_shared_event_new(&ev));
  ASSERT_ERR(mh_shared_lock_free((mh_lock_t *)(void *)ev), MH_EINVAL);
  ASSERT_ERR(mh_shared_value_free((mh_shared_value_t *)(void *)ev), MH_EINVAL);
  ASSERT_OK(mh_shared_event_free(ev));
  ASSERT_OK(mh_shared_value_new(&v, MH_SHARED_INT8, NULL));
  ASSERT_ERR(mh_shared_array_free((mh_shared_array_t *)(void *)v), MH_EINVAL);
  ASSERT_OK(mh_shared_value_free(v));
}

/* ---- across processes ----------------------------------------------------- */

typedef struct {
  mh_shared_value_t *v;
  mh_lock_t *lock;
  long n;
} counter_job_t;

static int add_under_value_lock(void *arg) {
  counter_job_t *j = arg;
  mh_rlock_t *lk = mh_shared_value_get_lock(j->v);
  int64_t *p = mh_shared_value_ptr(j->v);
  for (long i = 0; i < j->n; i++) {
    if (mh_rlock_acquire(lk, MH_FOREVER) != 0) return 1;
    /* A plain read-modify-write: only the lock makes it exact. */
    *(volatile int64_t *)p = *(volatile int64_t *)p + 1;
    if (mh_rlock_release(lk) != 0) return 2;
  }
  return 0;
}

static int add_under_shared_lock(void *arg) {
  counter_job_t *j = arg;
  int64_t *p = mh_shared_value_ptr(j->v);
  for (long i = 0; i < j->n; i++) {
    if (mh_lock_acquire(j->lock, MH_FOREVER) != 0) return 1;
    *(volatile int64_t *)p = *(volatile int64_t *)p + 1;
    if (mh_lock_release(j->lock) != 0) return 2;
  }
  return 0;
}

static int add_atomically(void *arg) {
  counter_job_t *j = arg;
  for (long i = 0; i < j->n; i++)
    if (mh_shared_value_add(j->v, 1, NULL) != 0) return 1;
  return 0;
}

TEST(counter_8_procs_value_lock) {
  counter_job_t j = {NULL, NULL, mht_scaled(1000000)};
  ASSERT_OK(mh_shared_value_new(&j.v, MH_SHARED_INT64, NULL));
  run_children(8, add_under_value_lock, &j);
  int64_t total;
  ASSERT_OK(mh_shared_value_get_i64(j.v, &total));
  ASSERT_EQ(total, 8 * j.n);
  ASSERT_OK(mh_shared_value_free(j.v));
  assert_no_children();
}

TEST(counter_8_procs_shared_lock) {
  counter_job_t j = {NULL, NULL, mht_scaled(1000000)};
  ASSERT_OK(mh_shared_value_new(&j.v, MH_SHARED_INT64, NULL));
  ASSERT_OK(mh_shared_lock_new(&j.lock));
  run_children(8, add_under_shared_lock, &j);
  int64_t total;
  ASSERT_OK(mh_shared_value_get_i64(j.v, &total));
  ASSERT_EQ(total, 8 * j.n);
  ASSERT_OK(mh_shared_lock_free(j.lock));
  ASSERT_OK(mh_shared_value_free(j.v));
  assert_no_children();
}

TEST(counter_8_procs_atomic_add) {
  counter_job_t j = {NULL, NULL, mht_scaled(1000000)};
  ASSERT_OK(mh_shared_value_new(&j.v, MH_SHARED_INT64, NULL));
  run_children(8, add_atomically, &j);
  /* The parent adds concurrently-shaped work too, through the array API. */
  int64_t total;
  ASSERT_OK(mh_shared_value_get_i64(j.v, &total));
  ASSERT_EQ(total, 8 * j.n);
  ASSERT_OK(mh_shared_value_free(j.v));
  assert_no_children();
}

/* ---- robust locks ----------------------------------------------------------- */

static int die_holding_lock(void *arg) {
  mh_lock_t *lock = arg;
  if (mh_lock_acquire(lock, MH_FOREVER) != 0) return 1;
  kill(getpid(), SIGKILL); /* crash with the lock held */
  return 2;
}

static int die_holding_value_lock(void *arg) {
  mh_shared_value_t *v = arg;
  if (mh_rlock_acquire(mh_shared_value_get_lock(v), MH_FOREVER) != 0) return 1;
  *(int32_t *)mh_shared_value_ptr(v) = 41;
  _exit(0); /* a clean exit with the lock held is just as dead */
}

static int acquire_once(void *arg) {
  mh_lock_t *lock = arg;
  int rc = mh_lock_acquire(lock, 10);
  if (rc == 0) mh_lock_release(lock);
  return rc == 0 ? 0 : 1;
}

TEST(owner_dead_lock) {
  mh_lock_t *lock;
  ASSERT_OK(mh_shared_lock_new(&lock));
  mh_process_t *p;
  int code = 0;
  ASSERT_OK(mh_process_start(&p, die_holding_lock, lock, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, -SIGKILL);
  mh_process_free(p);
  /* The next locker gets the lock and the news: no hang (the alarm ends
   * the test if it hung).  A blocking acquire: ThreadSanitizer's timed-lock
   * interceptor does not count an owner-died acquisition as taken. */
  double t0 = mht_now();
  alarm(60);
  ASSERT_ERR(mh_lock_acquire(lock, MH_FOREVER), MH_EOWNERDEAD);
  alarm(0);
  ASSERT(mht_now() - t0 < 30);
  ASSERT_OK(mh_lock_consistent(lock));
  ASSERT_OK(mh_lock_release(lock));
  /* Repaired: it works normally again, here and in another process. */
  ASSERT_OK(mh_lock_acquire(lock, 1));
  ASSERT_OK(mh_lock_release(lock));
  run_children(2, acquire_once, lock);

  /* The same news through a timed acquire. */
  ASSERT_OK(mh_process_start(&p, die_holding_lock, lock, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  mh_process_free(p);
  t0 = mht_now();
  ASSERT_ERR(mh_lock_acquire(lock, 10), MH_EOWNERDEAD);
  ASSERT(mht_now() - t0 < 5);
  ASSERT_OK(mh_lock_consistent(lock));
  ASSERT_OK(mh_lock_release(lock));

  /* Releasing without repair makes it unusable, and says so. */
  ASSERT_OK(mh_process_start(&p, die_holding_lock, lock, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  mh_process_free(p);
  alarm(60);
  ASSERT_ERR(mh_lock_acquire(lock, MH_FOREVER), MH_EOWNERDEAD);
  alarm(0);
  ASSERT_OK(mh_lock_release(lock));
  ASSERT_ERR(mh_lock_acquire(lock, 1), MH_ENOTRECOVERABLE);
  mh_shared_lock_free(lock);
  assert_no_children();
}

TEST(owner_dead_value_lock) {
  mh_shared_value_t *v;
  ASSERT_OK(mh_shared_value_new(&v, MH_SHARED_INT32, NULL));
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, die_holding_value_lock, v, NULL));
  ASSERT_OK(mh_process_join(p, 30));
  mh_process_free(p);
  /* get/set recover by themselves: the element written is intact. */
  int64_t x = 0;
  ASSERT_OK(mh_shared_value_get_i64(v, &x));
  ASSERT_EQ(x, 41);
  ASSERT_OK(mh_shared_value_set_i64(v, 42));
  ASSERT_OK(mh_rlock_acquire(mh_shared_value_get_lock(v), 1));
  ASSERT_OK(mh_rlock_release(mh_shared_value_get_lock(v)));
  ASSERT_OK(mh_shared_value_free(v));
  assert_no_children();
}

/* ---- semaphore, event, barrier, condition across processes ---------------- */

typedef struct {
  mh_sem_t *sem;
  mh_shared_value_t *inside, *max_inside, *count;
  mh_event_t *ev;
  mh_barrier_t *bar;
  mh_shared_array_t *rounds;
  int index;
  int nrounds;
} sync_job_t;

static int sem_worker(void *arg) {
  sync_job_t *j = arg;
  for (int i = 0; i < 50; i++) {
    if (mh_sem_acquire(j->sem, 30) != 0) return 1;
    int64_t now_inside;
    mh_shared_value_add(j->inside, 1, &now_inside);
    now_inside += 1;
    if (now_inside > 2) return 3; /* the semaphore let a third one in */
    /* Record the largest number seen inside at once. */
    int64_t seen;
    do {
      mh_shared_value_get_i64(j->max_inside, &seen);
      if (now_inside <= seen) break;
    } while (mh_shared_value_set_i64(j->max_inside, now_inside) != 0);
    mht_jitter(200);
    mh_shared_value_add(j->inside, -1, NULL);
    if (mh_sem_release(j->sem, 1) != 0) return 2;
  }
  return 0;
}

TEST(semaphore_across_processes) {
  sync_job_t j;
  memset(&j, 0, sizeof j);
  ASSERT_OK(mh_shared_sem_new(&j.sem, 2, 2));
  ASSERT_OK(mh_shared_value_new(&j.inside, MH_SHARED_INT64, NULL));
  ASSERT_OK(mh_shared_value_new(&j.max_inside, MH_SHARED_INT64, NULL));
  run_children(6, sem_worker, &j);
  int64_t max_inside, inside;
  ASSERT_OK(mh_shared_value_get_i64(j.max_inside, &max_inside));
  ASSERT_OK(mh_shared_value_get_i64(j.inside, &inside));
  ASSERT_EQ(inside, 0);
  ASSERT_GE(max_inside, 1);
  ASSERT_LE(max_inside, 2);
  ASSERT_UEQ(mh_sem_value(j.sem), 2);
  /* Bounded: one release too many is refused. */
  ASSERT_ERR(mh_sem_release(j.sem, 1), MH_EINVAL);
  ASSERT_OK(mh_shared_sem_free(j.sem));
  ASSERT_OK(mh_shared_value_free(j.inside));
  ASSERT_OK(mh_shared_value_free(j.max_inside));
  assert_no_children();
}

static int event_worker(void *arg) {
  sync_job_t *j = arg;
  if (mh_event_wait(j->ev, 30) != 0) return 1;
  mh_shared_value_add(j->count, 1, NULL);
  return 0;
}

TEST(event_across_processes) {
  sync_job_t j;
  memset(&j, 0, sizeof j);
  ASSERT_OK(mh_shared_event_new(&j.ev));
  ASSERT_OK(mh_shared_value_new(&j.count, MH_SHARED_INT32, NULL));
  mh_process_t *p[4];
  for (int i = 0; i < 4; i++) ASSERT_OK(mh_process_start(&p[i], event_worker, &j, NULL));
  mht_sleep(0.2);
  int64_t count;
  ASSERT_OK(mh_shared_value_get_i64(j.count, &count));
  ASSERT_EQ(count, 0); /* all still waiting */
  for (int i = 0; i < 4; i++) ASSERT_EQ(mh_process_is_alive(p[i]), 1);
  ASSERT_OK(mh_event_set(j.ev));
  for (int i = 0; i < 4; i++) {
    int code = -1;
    ASSERT_OK(mh_process_join(p[i], 30));
    ASSERT_OK(mh_process_exitcode(p[i], &code));
    ASSERT_EQ(code, 0);
    mh_process_free(p[i]);
  }
  ASSERT_OK(mh_shared_value_get_i64(j.count, &count));
  ASSERT_EQ(count, 4);
  ASSERT_OK(mh_shared_event_free(j.ev));
  ASSERT_OK(mh_shared_value_free(j.count));
  assert_no_children();
}

static int barrier_worker(void *arg) {
  sync_job_t *j = arg;
  /* Each child learns its index from a shared ticket. */
  int64_t me;
  mh_shared_value_add(j->count, 1, &me);
  size_t n = mh_shared_array_len(j->rounds);
  for (int r = 1; r <= j->nrounds; r++) {
    mht_jitter(300);
    mh_shared_array_set_i64(j->rounds, (size_t)me, r);
    if (mh_barrier_wait_timeout(j->bar, 30) < 0) return 1;
    /* Past the barrier, every party has finished round r. */
    for (size_t k = 0; k < n; k++) {
      int64_t got;
      mh_shared_array_get_i64(j->rounds, k, &got);
      if (got < r) return 2;
    }
    if (mh_barrier_wait_timeout(j->bar, 30) < 0) return 3;
  }
  return 0;
}

TEST(barrier_across_processes) {
  sync_job_t j;
  memset(&j, 0, sizeof j);
  j.nrounds = (int)mht_scaled(40);
  ASSERT_OK(mh_shared_barrier_new(&j.bar, 4, NULL, NULL, MH_FOREVER));
  ASSERT_OK(mh_shared_array_new(&j.rounds, MH_SHARED_INT64, 4, NULL));
  ASSERT_OK(mh_shared_value_new(&j.count, MH_SHARED_INT32, NULL));
  run_children(4, barrier_worker, &j);
  for (size_t k = 0; k < 4; k++) {
    int64_t got;
    ASSERT_OK(mh_shared_array_get_i64(j.rounds, k, &got));
    ASSERT_EQ(got, j.nrounds);
  }
  ASSERT_OK(mh_shared_barrier_free(j.bar));
  ASSERT_OK(mh_shared_array_free(j.rounds));
  ASSERT_OK(mh_shared_value_free(j.count));
  assert_no_children();
}

typedef struct {
  mh_cond_t *cond;
  int64_t *slot; /* in shared memory, guarded by the condition's lock */
} cond_job_t;

static int cond_consumer(void *arg) {
  cond_job_t *j = arg;
  int64_t sum = 0;
  for (int got = 0; got < 100; got++) {
    if (mh_cond_acquire(j->cond, 30) != 0) return 1;
    while (*j->slot == 0)
      if (mh_cond_wait(j->cond, 30) == MH_ETIMEDOUT) return 2;
    sum += *j->slot;
    *j->slot = 0;
    mh_cond_notify_all(j->cond);
    mh_cond_release(j->cond);
  }
  return sum == 5050 ? 0 : 3;
}

TEST(condition_across_processes) {
  cond_job_t j;
  void *mem;
  ASSERT_OK(mh_shared_cond_new(&j.cond));
  ASSERT_OK(mh_shared_mem_new(&mem, sizeof(int64_t)));
  ASSERT_UEQ(mh_shared_mem_size(mem), sizeof(int64_t));
  j.slot = mem;
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, cond_consumer, &j, NULL));
  for (int64_t i = 1; i <= 100; i++) {
    ASSERT_OK(mh_cond_acquire(j.cond, 30));
    while (*j.slot != 0) ASSERT(mh_cond_wait(j.cond, 30) != MH_ETIMEDOUT);
    *j.slot = i;
    ASSERT_OK(mh_cond_notify_all(j.cond));
    ASSERT_OK(mh_cond_release(j.cond));
  }
  int code = -1;
  ASSERT_OK(mh_process_join(p, 60));
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  mh_process_free(p);
  ASSERT_OK(mh_shared_cond_free(j.cond));
  ASSERT_OK(mh_shared_mem_free(mem));
  assert_no_children();
}

/* ---- ownership and leftovers ---------------------------------------------- */

static int child_frees(void *arg) {
  mh_lock_t *lock = arg;
  /* Not the creator: this only drops the child's own view. */
  return mh_shared_lock_free(lock) == 0 ? 0 : 1;
}

static int find_it_held(void *arg) {
  return mh_lock_acquire((mh_lock_t *)arg, 0) == MH_ETIMEDOUT ? 0 : 1;
}

TEST(child_free_only_unmaps) {
  mh_lock_t *lock;
  ASSERT_OK(mh_shared_lock_new(&lock));
  run_children(3, child_frees, lock);
  /* The lock still works for everyone: held here, it is busy for a child. */
  ASSERT_OK(mh_lock_acquire(lock, 1));
  run_children(1, find_it_held, lock);
  ASSERT_OK(mh_lock_release(lock));
  run_children(1, acquire_once, lock);
  ASSERT_OK(mh_shared_lock_free(lock));
  assert_no_children();
}

/* Whether any mapping of this process is backed by a file in /dev/shm. */
static int maps_mention_dev_shm(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[4096];
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "/dev/shm/")) found = 1;
  fclose(f);
  return found;
}

static int child_checks_maps(void *arg) {
  (void)arg;
  return maps_mention_dev_shm() ? 1 : 0;
}

HELPER(crash_with_objects) {
  (void)argc;
  (void)argv;
  int private_shm = mht_private_dev_shm();
  /* Make one of everything, hand them to a child that crashes holding the
   * lock, then crash ourselves without freeing anything. */
  mh_lock_t *lock;
  mh_rlock_t *rl;
  mh_sem_t *sem;
  mh_event_t *ev;
  mh_cond_t *cond;
  mh_barrier_t *bar;
  mh_shared_value_t *v;
  mh_shared_array_t *a;
  void *mem;
  if (mh_shared_lock_new(&lock) || mh_shared_rlock_new(&rl) || mh_shared_sem_new(&sem, 1, 0) ||
      mh_shared_event_new(&ev) || mh_shared_cond_new(&cond) ||
      mh_shared_barrier_new(&bar, 2, NULL, NULL, MH_FOREVER) ||
      mh_shared_value_new(&v, MH_SHARED_INT64, NULL) ||
      mh_shared_array_new(&a, MH_SHARED_DOUBLE, 100000, NULL) || mh_shared_mem_new(&mem, 1 << 20))
    return 3;
  mh_process_t *p;
  int code = -1;
  if (mh_process_start(&p, die_holding_lock, lock, NULL)) return 4;
  mh_process_join(p, 30);
  mh_process_free(p);
  if (mh_process_start(&p, child_checks_maps, NULL, NULL)) return 4;
  mh_process_join(p, 30);
  if (mh_process_exitcode(p, &code) || code != 0) return 5;
  mh_process_free(p);
  if (maps_mention_dev_shm()) return 5;
  if (private_shm && mht_dev_shm_entries() != 0) return 6;
  printf("private /dev/shm: %s\n", private_shm ? "yes" : "no");
  fflush(stdout);
  kill(getpid(), SIGKILL);
  return 7;
}

TEST(nothing_left_in_dev_shm) {
  /* Nothing is ever made in /dev/shm: no mapping of ours (parent or child)
   * is backed by a file there, and a private, empty /dev/shm stays empty
   * while one of every object exists and a child crashes holding a lock.
   * What never existed cannot be left behind after the crash that follows. */
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("crash_with_objects", NULL, 60, &r), 0);
  ASSERT_EQ(r.exited, 0);
  ASSERT_EQ(r.status, SIGKILL);
  if (strstr(r.out, "private /dev/shm: no"))
    printf("note: no mount namespace here; checked the mappings only\n");
  else
    ASSERT(strstr(r.out, "private /dev/shm: yes") != NULL);
  mht_proc_free(&r);
  /* And in this process, with everything freed normally. */
  mh_lock_t *lock;
  mh_shared_value_t *v;
  ASSERT_OK(mh_shared_lock_new(&lock));
  ASSERT_OK(mh_shared_value_new(&v, MH_SHARED_INT32, NULL));
  run_children(2, acquire_once, lock);
  run_children(1, child_checks_maps, NULL);
  ASSERT(!maps_mention_dev_shm());
  ASSERT_OK(mh_shared_lock_free(lock));
  ASSERT_OK(mh_shared_value_free(v));
  assert_no_children();
}
