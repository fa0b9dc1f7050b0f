/* SPDX-License-Identifier: MIT */
/* test-sync.c - Lock, RLock, Condition, Semaphore, Event, Barrier: bad input,
 * timeouts, stress with many threads and random delays, barrier abort and
 * reset races, and no allocation.  Process-shared objects (robust locks
 * whose owner died) are test-sync-shared.c. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sync-common.h"

/* ---- bad input ------------------------------------------------------- */

TEST(bad_input) {
  mh_lock_t l;
  mh_rlock_t r;
  mh_cond_t c;
  mh_sem_t s;
  mh_event_t e;
  mh_barrier_t b;
  ASSERT_ERR(mh_lock_init(NULL), MH_EINVAL);
  ASSERT_ERR(mh_lock_init_ex(&l, 0x80), MH_EINVAL);
  ASSERT_ERR(mh_lock_acquire(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_lock_release(NULL), MH_EINVAL);
  ASSERT_ERR(mh_lock_locked(NULL), MH_EINVAL);
  ASSERT_ERR(mh_lock_consistent(NULL), MH_EINVAL);
  ASSERT_ERR(mh_lock_destroy(NULL), MH_EINVAL);
  ASSERT_OK(mh_lock_init(&l));
  ASSERT_ERR(mh_lock_release(&l), MH_EINVAL); /* unheld */
  ASSERT_ERR(mh_lock_acquire(&l, -0.5), MH_EINVAL);
  ASSERT_ERR(mh_lock_acquire(&l, NAN), MH_EINVAL);
  ASSERT_ERR(mh_lock_acquire(&l, -INFINITY), MH_EINVAL);
  ASSERT_ERR(mh_lock_consistent(&l), MH_EINVAL); /* not held */
  ASSERT_OK(mh_lock_acquire(&l, MH_FOREVER));
  ASSERT_ERR(mh_lock_consistent(&l), MH_EINVAL); /* not robust / not dead */
  ASSERT_ERR(mh_lock_acquire(&l, MH_FOREVER), MH_EDEADLK);
  ASSERT_ERR(mh_lock_acquire(&l, 0.01), MH_EDEADLK);
  ASSERT_ERR(mh_lock_destroy(&l), MH_EBUSY);
  ASSERT_OK(mh_lock_release(&l));
  ASSERT_ERR(mh_lock_release(&l), MH_EINVAL); /* twice */
  ASSERT_OK(mh_lock_destroy(&l));

  ASSERT_ERR(mh_rlock_init(NULL), MH_EINVAL);
  ASSERT_ERR(mh_rlock_acquire(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_rlock_release(NULL), MH_EINVAL);
  ASSERT_OK(mh_rlock_init(&r));
  ASSERT_ERR(mh_rlock_release(&r), MH_EINVAL);
  ASSERT_ERR(mh_rlock_acquire(&r, -2), MH_EINVAL);
  ASSERT_ERR(mh_rlock_acquire(&r, NAN), MH_EINVAL);
  ASSERT_OK(mh_rlock_destroy(&r));

  ASSERT_ERR(mh_cond_init(NULL, NULL), MH_EINVAL);
  ASSERT_ERR(mh_cond_wait(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_cond_notify(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_cond_notify_all(NULL), MH_EINVAL);
  ASSERT_ERR(mh_cond_wait_for(NULL, NULL, NULL, 0), MH_EINVAL);
  ASSERT(mh_cond_lock(NULL) == NULL);
  ASSERT_OK(mh_cond_init(&c, NULL));
  ASSERT_ERR(mh_cond_wait(&c, 0), MH_EINVAL);      /* lock not held */
  ASSERT_ERR(mh_cond_notify(&c, 1), MH_EINVAL);    /* lock not held */
  ASSERT_ERR(mh_cond_notify_all(&c), MH_EINVAL);   /* lock not held */
  ASSERT_ERR(mh_cond_release(&c), MH_EINVAL);
  ASSERT_OK(mh_cond_acquire(&c, MH_FOREVER));
  ASSERT_ERR(mh_cond_wait(&c, -3), MH_EINVAL);
  ASSERT_ERR(mh_cond_wait(&c, NAN), MH_EINVAL);
  ASSERT_ERR(mh_cond_wait_for(&c, NULL, NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_cond_wait(&c, 0), MH_ETIMEDOUT);
  ASSERT_OK(mh_cond_notify(&c, 0));
  ASSERT_OK(mh_cond_notify(&c, 0xffffffffu)); /* absurd n: no spinning */
  ASSERT_ERR(mh_cond_destroy(&c), MH_EBUSY);
  ASSERT_OK(mh_cond_release(&c));
  ASSERT_OK(mh_cond_destroy(&c));
  mh_lock_t plain;
  ASSERT_OK(mh_lock_init(&plain));
  /* A shared condition on a private lock cannot work. */
  ASSERT_ERR(mh_cond_init_ex(&c, &plain, MH_SYNC_PROCESS_SHARED), MH_EINVAL);
  ASSERT_OK(mh_lock_destroy(&plain));

  ASSERT_ERR(mh_sem_init(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_sem_init_ex(&s, 5, 2, 0), MH_EINVAL);
  ASSERT_ERR(mh_sem_init_bounded(&s, 0), MH_EINVAL);
  ASSERT_ERR(mh_sem_acquire(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_sem_release(NULL, 1), MH_EINVAL);
  ASSERT_OK(mh_sem_init(&s, 0));
  ASSERT_ERR(mh_sem_release(&s, 0), MH_EINVAL);
  ASSERT_ERR(mh_sem_acquire(&s, -1.5), MH_EINVAL);
  ASSERT_ERR(mh_sem_acquire(&s, NAN), MH_EINVAL);
  ASSERT_ERR(mh_sem_acquire(&s, 0), MH_ETIMEDOUT);
  ASSERT_OK(mh_sem_destroy(&s));
  ASSERT_EQ(mh_sem_value(NULL), 0);

  ASSERT_ERR(mh_event_init(NULL), MH_EINVAL);
  ASSERT_ERR(mh_event_set(NULL), MH_EINVAL);
  ASSERT_ERR(mh_event_clear(NULL), MH_EINVAL);
  ASSERT_ERR(mh_event_is_set(NULL), MH_EINVAL);
  ASSERT_ERR(mh_event_wait(NULL, 0), MH_EINVAL);
  ASSERT_OK(mh_event_init(&e));
  ASSERT_ERR(mh_event_wait(&e, -0.001), MH_EINVAL);
  ASSERT_ERR(mh_event_wait(&e, NAN), MH_EINVAL);
  ASSERT_OK(mh_event_destroy(&e));

  ASSERT_ERR(mh_barrier_init(NULL, 2, NULL, NULL, MH_FOREVER), MH_EINVAL);
  ASSERT_ERR(mh_barrier_init(&b, 0, NULL, NULL, MH_FOREVER), MH_EINVAL);
  ASSERT_ERR(mh_barrier_init(&b, 2, NULL, NULL, -4), MH_EINVAL);
  ASSERT_ERR(mh_barrier_init(&b, 2, NULL, NULL, NAN), MH_EINVAL);
  ASSERT_ERR(mh_barrier_wait(NULL), MH_EINVAL);
  ASSERT_ERR(mh_barrier_wait_timeout(NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_barrier_abort(NULL), MH_EINVAL);
  ASSERT_ERR(mh_barrier_reset(NULL), MH_EINVAL);
  ASSERT_ERR(mh_barrier_parties(NULL), MH_EINVAL);
  ASSERT_ERR(mh_barrier_n_waiting(NULL), MH_EINVAL);
  ASSERT_ERR(mh_barrier_broken(NULL), MH_EINVAL);
  ASSERT_OK(mh_barrier_init(&b, 2, NULL, NULL, MH_FOREVER));
  ASSERT_ERR(mh_barrier_wait_timeout(&b, -2), MH_EINVAL);
  ASSERT_ERR(mh_barrier_wait_timeout(&b, NAN), MH_EINVAL);
  ASSERT_EQ(mh_barrier_parties(&b), 2);
  ASSERT_OK(mh_barrier_destroy(&b));
}

/* ---- Lock ------------------------------------------------------------ */

static mh_lock_t g_lock;

static void *hold_lock_briefly(void *arg) {
  (void)arg;
  ASSERT_OK(mh_lock_acquire(&g_lock, MH_FOREVER));
  mht_sleep(0.5);
  ASSERT_OK(mh_lock_release(&g_lock));
  return NULL;
}

static void *release_foreign(void *arg) {
  (void)arg;
  /* g_lock is held by the main thread: releasing it here is refused. */
  ASSERT_ERR(mh_lock_release(&g_lock), MH_EINVAL);
  return NULL;
}

TEST(lock_basic_and_timeout) {
  ASSERT_OK(mh_lock_init(&g_lock));
  ASSERT_EQ(mh_lock_locked(&g_lock), 0);
  ASSERT_OK(mh_lock_acquire(&g_lock, 0));
  ASSERT_EQ(mh_lock_locked(&g_lock), 1);
  run_threads(1, release_foreign, NULL);
  ASSERT_OK(mh_lock_release(&g_lock));

  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, hold_lock_briefly, NULL), 0);
  while (!mh_lock_locked(&g_lock)) mht_sleep(0.001);
  ASSERT_ERR(mh_lock_acquire(&g_lock, 0), MH_ETIMEDOUT);
  double t0 = mht_now();
  ASSERT_ERR(mh_lock_acquire(&g_lock, 0.05), MH_ETIMEDOUT);
  double took = mht_now() - t0;
  ASSERT(took >= 0.045 && took < 2.0);
  ASSERT_OK(mh_lock_acquire(&g_lock, 5.0)); /* the holder lets go at 0.5 s */
  ASSERT_OK(mh_lock_release(&g_lock));
  pthread_join(t, NULL);
  ASSERT_OK(mh_lock_destroy(&g_lock));
}

struct counter {
  mh_lock_t lock;
  mh_rlock_t rlock;
  long value;
  long iters;
};

static void *lock_stress_fn(void *arg) {
  struct counter *c = arg;
  for (long i = 0; i < c->iters; i++) {
    int rc;
    /* Mix blocking, try and timed acquisition. */
    switch (i % 3) {
    case 0:
      rc = mh_lock_acquire(&c->lock, MH_FOREVER);
      break;
    case 1:
      while ((rc = mh_lock_acquire(&c->lock, 0)) == MH_ETIMEDOUT) {
      }
      break;
    default:
      while ((rc = mh_lock_acquire(&c->lock, 0.0005)) == MH_ETIMEDOUT) {
      }
      break;
    }
    ASSERT_OK(rc);
    long v = c->value;
    if ((i & 63) == 0) mht_jitter(50);
    c->value = v + 1;
    ASSERT_OK(mh_lock_release(&c->lock));
  }
  return NULL;
}

TEST(lock_stress) {
  struct counter c = {.iters = mht_scaled(20000)};
  ASSERT_OK(mh_lock_init(&c.lock));
  run_threads(8, lock_stress_fn, &c);
  ASSERT_EQ(c.value, 8 * c.iters);
  ASSERT_OK(mh_lock_destroy(&c.lock));
}

/* ---- RLock ----------------------------------------------------------- */

static void *rlock_stress_fn(void *arg) {
  struct counter *c = arg;
  for (long i = 0; i < c->iters; i++) {
    int depth = 1 + (int)(mht_rand() % 4);
    for (int d = 0; d < depth; d++) ASSERT_OK(mh_rlock_acquire(&c->rlock, d ? 0 : MH_FOREVER));
    long v = c->value;
    if ((i & 63) == 0) mht_jitter(50);
    c->value = v + 1;
    for (int d = 0; d < depth; d++) ASSERT_OK(mh_rlock_release(&c->rlock));
  }
  ASSERT_ERR(mh_rlock_release(&c->rlock), MH_EINVAL);
  return NULL;
}

static void *rlock_try_foreign(void *arg) {
  struct counter *c = arg;
  ASSERT_ERR(mh_rlock_acquire(&c->rlock, 0), MH_ETIMEDOUT);
  ASSERT_ERR(mh_rlock_acquire(&c->rlock, 0.02), MH_ETIMEDOUT);
  ASSERT_ERR(mh_rlock_release(&c->rlock), MH_EINVAL);
  return NULL;
}

TEST(rlock) {
  struct counter c = {.iters = mht_scaled(10000)};
  ASSERT_OK(mh_rlock_init(&c.rlock));
  ASSERT_OK(mh_rlock_acquire(&c.rlock, MH_FOREVER));
  ASSERT_OK(mh_rlock_acquire(&c.rlock, 0));
  ASSERT_OK(mh_rlock_acquire(&c.rlock, 1));
  ASSERT_ERR(mh_rlock_destroy(&c.rlock), MH_EBUSY);
  run_threads(1, rlock_try_foreign, &c);
  for (int i = 0; i < 3; i++) ASSERT_OK(mh_rlock_release(&c.rlock));
  ASSERT_ERR(mh_rlock_release(&c.rlock), MH_EINVAL);
  run_threads(6, rlock_stress_fn, &c);
  ASSERT_EQ(c.value, 6 * c.iters);
  ASSERT_OK(mh_rlock_destroy(&c.rlock));
}

/* ---- Condition ------------------------------------------------------- */

struct pc {
  mh_cond_t cond;
  long items;    /* produced, not yet consumed */
  long produced; /* total */
  long consumed;
  long per_producer;
  int producers_done;
  int nproducers;
};

static int pc_has_item_or_done(void *arg) {
  struct pc *p = arg;
  return p->items > 0 || p->producers_done == p->nproducers;
}

static void *pc_producer(void *arg) {
  struct pc *p = arg;
  for (long i = 0; i < p->per_producer; i++) {
    ASSERT_OK(mh_cond_acquire(&p->cond, MH_FOREVER));
    p->items++;
    p->produced++;
    ASSERT_OK(mh_cond_notify(&p->cond, 1));
    ASSERT_OK(mh_cond_release(&p->cond));
    if ((i & 127) == 0) mht_jitter(100);
  }
  ASSERT_OK(mh_cond_acquire(&p->cond, MH_FOREVER));
  p->producers_done++;
  ASSERT_OK(mh_cond_notify_all(&p->cond));
  ASSERT_OK(mh_cond_release(&p->cond));
  return NULL;
}

static void *pc_consumer(void *arg) {
  struct pc *p = arg;
  ASSERT_OK(mh_cond_acquire(&p->cond, MH_FOREVER));
  for (;;) {
    int rc = mh_cond_wait_for(&p->cond, pc_has_item_or_done, p, 0.01);
    if (rc == MH_ETIMEDOUT) continue; /* timed waits in the mix */
    ASSERT_OK(rc);
    if (p->items == 0) break; /* all producers done */
    p->items--;
    p->consumed++;
  }
  ASSERT_OK(mh_cond_release(&p->cond));
  return NULL;
}

static void *pc_any(void *arg) {
  /* Threads with an even id produce, odd ones consume. */
  static atomic_int next;
  int id = atomic_fetch_add(&next, 1);
  return (id & 1) ? pc_consumer(arg) : pc_producer(arg);
}

TEST(cond_producer_consumer) {
  struct pc p = {.per_producer = mht_scaled(20000), .nproducers = 4};
  mh_lock_t lock;
  ASSERT_OK(mh_lock_init(&lock));
  ASSERT_OK(mh_cond_init(&p.cond, &lock));
  ASSERT(mh_cond_lock(&p.cond) == &lock);
  run_threads(8, pc_any, &p);
  ASSERT_EQ(p.produced, 4 * p.per_producer);
  ASSERT_EQ(p.consumed, p.produced);
  ASSERT_EQ(p.items, 0);
  ASSERT_OK(mh_cond_destroy(&p.cond));
  ASSERT_OK(mh_lock_destroy(&lock));
}

struct notify_n {
  mh_cond_t cond;
  int waiting, woken, go;
};

static void *notify_n_waiter(void *arg) {
  struct notify_n *n = arg;
  ASSERT_OK(mh_cond_acquire(&n->cond, MH_FOREVER));
  n->waiting++;
  while (!n->go) ASSERT_OK(mh_cond_wait(&n->cond, MH_FOREVER));
  n->go--;
  n->woken++;
  ASSERT_OK(mh_cond_release(&n->cond));
  return NULL;
}

TEST(cond_timeouts_and_notify_n) {
  mh_cond_t c;
  ASSERT_OK(mh_cond_init(&c, NULL));
  ASSERT_OK(mh_cond_acquire(&c, MH_FOREVER));
  double t0 = mht_now();
  ASSERT_ERR(mh_cond_wait_for(&c, never, NULL, 0.1), MH_ETIMEDOUT);
  double took = mht_now() - t0;
  ASSERT(took >= 0.095 && took < 2.0);
  ASSERT_EQ(mh_lock_locked(mh_cond_lock(&c)), 1); /* held again */
  ASSERT_ERR(mh_cond_wait_for(&c, never, NULL, 0), MH_ETIMEDOUT);
  ASSERT_OK(mh_cond_release(&c));
  ASSERT_OK(mh_cond_destroy(&c));

  /* notify(2) with 4 waiters lets exactly the ones given a ticket go. */
  struct notify_n n = {0};
  ASSERT_OK(mh_cond_init(&n.cond, NULL));
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, notify_n_waiter, &n);
  for (;;) {
    mh_cond_acquire(&n.cond, MH_FOREVER);
    int w = n.waiting;
    mh_cond_release(&n.cond);
    if (w == 4) break;
    mht_sleep(0.001);
  }
  ASSERT_OK(mh_cond_acquire(&n.cond, MH_FOREVER));
  n.go = 2;
  ASSERT_OK(mh_cond_notify(&n.cond, 2));
  ASSERT_OK(mh_cond_release(&n.cond));
  for (;;) {
    mh_cond_acquire(&n.cond, MH_FOREVER);
    int w = n.woken;
    mh_cond_release(&n.cond);
    if (w == 2) break;
    mht_sleep(0.001);
  }
  mht_sleep(0.05);
  ASSERT_OK(mh_cond_acquire(&n.cond, MH_FOREVER));
  ASSERT_EQ(n.woken, 2);
  n.go = 2;
  ASSERT_OK(mh_cond_notify_all(&n.cond));
  ASSERT_OK(mh_cond_release(&n.cond));
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  ASSERT_EQ(n.woken, 4);
  ASSERT_OK(mh_cond_destroy(&n.cond));
}

/* Condition over an RLock, Python's default: a waiter holding it three
 * times releases every level (or the notifier could never take it), and
 * gets all three back. */
struct rcond {
  mh_rlock_t r;
  mh_cond_t c;
  int items; /* guarded by r */
  int rounds;
};

static void *rcond_notifier(void *arg) {
  struct rcond *t = arg;
  for (int i = 0; i < t->rounds; i++) {
    if ((i & 15) == 0) mht_jitter(300);
    ASSERT_OK(mh_cond_acquire(&t->c, 20.0));
    ASSERT_OK(mh_rlock_acquire(&t->r, 0)); /* nested, as the waiter is */
    t->items++;
    ASSERT_OK(mh_cond_notify(&t->c, 1));
    ASSERT_OK(mh_rlock_release(&t->r));
    ASSERT_OK(mh_cond_release(&t->c));
  }
  return NULL;
}

static int rcond_has_item(void *arg) { return ((struct rcond *)arg)->items > 0; }

TEST(cond_over_rlock) {
  struct rcond t = {.rounds = (int)mht_scaled(2000)};
  ASSERT_OK(mh_rlock_init(&t.r));
  ASSERT_ERR(mh_cond_init_rlock(&t.c, NULL), MH_EINVAL);
  ASSERT_ERR(mh_cond_init_rlock(NULL, &t.r), MH_EINVAL);
  ASSERT_OK(mh_cond_init_rlock(&t.c, &t.r));
  ASSERT(mh_cond_rlock(&t.c) == &t.r);
  ASSERT(mh_cond_lock(&t.c) == NULL);
  /* Not held: wait and notify refuse. */
  ASSERT_ERR(mh_cond_wait(&t.c, 0.01), MH_EINVAL);
  ASSERT_ERR(mh_cond_notify(&t.c, 1), MH_EINVAL);
  /* Held three times: a timed-out wait still gives back all three. */
  for (int i = 0; i < 3; i++) ASSERT_OK(mh_rlock_acquire(&t.r, 0));
  ASSERT_ERR(mh_cond_wait(&t.c, 0.01), MH_ETIMEDOUT);
  for (int i = 0; i < 3; i++) ASSERT_OK(mh_rlock_release(&t.r));
  ASSERT_ERR(mh_rlock_release(&t.r), MH_EINVAL);

  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, rcond_notifier, &t), 0);
  for (int got = 0; got < t.rounds; got++) {
    ASSERT_OK(mh_cond_acquire(&t.c, 20.0));
    ASSERT_OK(mh_rlock_acquire(&t.r, 0));
    ASSERT_OK(mh_rlock_acquire(&t.r, 0));
    ASSERT_OK(mh_cond_wait_for(&t.c, rcond_has_item, &t, 20.0));
    t.items--;
    /* All three levels are back: three releases work, a fourth does not. */
    for (int i = 0; i < 3; i++) ASSERT_OK(mh_rlock_release(&t.r));
    ASSERT_ERR(mh_rlock_release(&t.r), MH_EINVAL);
  }
  ASSERT_EQ(pthread_join(th, NULL), 0);
  ASSERT_EQ(t.items, 0);
  ASSERT_OK(mh_cond_destroy(&t.c));
  ASSERT_OK(mh_rlock_destroy(&t.r));
}

/* ---- Semaphore ------------------------------------------------------- */

struct semtest {
  mh_sem_t sem;
  atomic_int inside;
  atomic_int max_inside;
  long iters;
};

static void *sem_stress_fn(void *arg) {
  struct semtest *s = arg;
  for (long i = 0; i < s->iters; i++) {
    int rc;
    if (i & 1) {
      while ((rc = mh_sem_acquire(&s->sem, 0.001)) == MH_ETIMEDOUT) {
      }
    } else {
      rc = mh_sem_acquire(&s->sem, MH_FOREVER);
    }
    ASSERT_OK(rc);
    int now = atomic_fetch_add(&s->inside, 1) + 1;
    int m = atomic_load(&s->max_inside);
    while (now > m && !atomic_compare_exchange_weak(&s->max_inside, &m, now)) {
    }
    if ((i & 15) == 0) mht_jitter(100);
    atomic_fetch_sub(&s->inside, 1);
    ASSERT_OK(mh_sem_release(&s->sem, 1));
  }
  return NULL;
}

TEST(semaphore_stress) {
  struct semtest s = {.iters = mht_scaled(5000)};
  ASSERT_OK(mh_sem_init_bounded(&s.sem, 3));
  run_threads(10, sem_stress_fn, &s);
  ASSERT_LE(atomic_load(&s.max_inside), 3);
  ASSERT_GE(atomic_load(&s.max_inside), 1);
  ASSERT_EQ(mh_sem_value(&s.sem), 3);
  ASSERT_OK(mh_sem_destroy(&s.sem));
}

static void *sem_release_later(void *arg) {
  mht_sleep(0.1);
  ASSERT_OK(mh_sem_release(arg, 2));
  return NULL;
}

TEST(semaphore_bounds_and_timeout) {
  mh_sem_t s;
  ASSERT_OK(mh_sem_init_bounded(&s, 2));
  ASSERT_ERR(mh_sem_release(&s, 1), MH_EINVAL); /* past the bound */
  ASSERT_EQ(mh_sem_value(&s), 2);
  ASSERT_OK(mh_sem_acquire(&s, 0));
  ASSERT_ERR(mh_sem_release(&s, 2), MH_EINVAL); /* 1 + 2 > 2: nothing added */
  ASSERT_EQ(mh_sem_value(&s), 1);
  ASSERT_OK(mh_sem_release(&s, 1));
  ASSERT_OK(mh_sem_acquire(&s, 0));
  ASSERT_OK(mh_sem_acquire(&s, 0));
  double t0 = mht_now();
  ASSERT_ERR(mh_sem_acquire(&s, 0.05), MH_ETIMEDOUT);
  ASSERT(mht_now() - t0 >= 0.045);
  pthread_t t;
  pthread_create(&t, NULL, sem_release_later, &s);
  ASSERT_OK(mh_sem_acquire(&s, 10));
  ASSERT_OK(mh_sem_acquire(&s, 10));
  pthread_join(t, NULL);
  ASSERT_OK(mh_sem_destroy(&s));

  /* Unbounded: release many at once; the counter refuses to wrap. */
  ASSERT_OK(mh_sem_init(&s, 0));
  ASSERT_OK(mh_sem_release(&s, 5));
  ASSERT_EQ(mh_sem_value(&s), 5);
  ASSERT_ERR(mh_sem_release(&s, (unsigned long)-1), MH_EOVERFLOW);
  ASSERT_EQ(mh_sem_value(&s), 5);
  ASSERT_OK(mh_sem_destroy(&s));
}

/* ---- Event ----------------------------------------------------------- */

static void *event_set_later(void *arg) {
  mht_sleep(0.1);
  ASSERT_OK(mh_event_set(arg));
  return NULL;
}

struct evstress {
  mh_event_t go;
  mh_event_t done;
  atomic_int seen;
  int waiters;
};

static void *event_waiter(void *arg) {
  struct evstress *e = arg;
  mht_jitter(2000);
  ASSERT_OK(mh_event_wait(&e->go, MH_FOREVER));
  ASSERT_EQ(mh_event_is_set(&e->go), 1);
  if (atomic_fetch_add(&e->seen, 1) + 1 == e->waiters) ASSERT_OK(mh_event_set(&e->done));
  return NULL;
}

TEST(event) {
  mh_event_t e;
  ASSERT_OK(mh_event_init(&e));
  ASSERT_EQ(mh_event_is_set(&e), 0);
  ASSERT_ERR(mh_event_wait(&e, 0), MH_ETIMEDOUT);
  double t0 = mht_now();
  ASSERT_ERR(mh_event_wait(&e, 0.1), MH_ETIMEDOUT);
  double took = mht_now() - t0;
  ASSERT(took >= 0.095 && took < 2.0);
  pthread_t t;
  pthread_create(&t, NULL, event_set_later, &e);
  t0 = mht_now();
  ASSERT_OK(mh_event_wait(&e, 10));
  ASSERT(mht_now() - t0 < 5.0);
  pthread_join(t, NULL);
  ASSERT_EQ(mh_event_is_set(&e), 1);
  ASSERT_OK(mh_event_wait(&e, 0));
  ASSERT_OK(mh_event_clear(&e));
  ASSERT_EQ(mh_event_is_set(&e), 0);
  ASSERT_ERR(mh_event_wait(&e, 0), MH_ETIMEDOUT);
  ASSERT_OK(mh_event_destroy(&e));

  /* Many waiters, one set, repeated: everyone wakes every round. */
  for (int round = 0; round < mht_scaled(50); round++) {
    struct evstress s = {.waiters = 16};
    ASSERT_OK(mh_event_init(&s.go));
    ASSERT_OK(mh_event_init(&s.done));
    pthread_t th[16];
    for (int i = 0; i < 16; i++) pthread_create(&th[i], NULL, event_waiter, &s);
    mht_jitter(1000);
    ASSERT_OK(mh_event_set(&s.go));
    ASSERT_OK(mh_event_wait(&s.done, 20));
    for (int i = 0; i < 16; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&s.seen), 16);
    ASSERT_OK(mh_event_destroy(&s.go));
    ASSERT_OK(mh_event_destroy(&s.done));
  }
}

struct evrace {
  mh_event_t ev;
  atomic_int stop;
  atomic_long woke, timed_out;
};

static void *evrace_waiter(void *arg) {
  struct evrace *r = arg;
  while (!atomic_load(&r->stop)) {
    int rc = mh_event_wait(&r->ev, (double)(mht_rand() % 3) * 0.0005);
    if (rc == 0) atomic_fetch_add(&r->woke, 1);
    else if (rc == MH_ETIMEDOUT) atomic_fetch_add(&r->timed_out, 1);
    else ASSERT_OK(rc);
  }
  return NULL;
}

static void *evrace_toggler(void *arg) {
  struct evrace *r = arg;
  for (long i = 0; i < mht_scaled(20000); i++) {
    ASSERT_OK((i & 1) ? mh_event_clear(&r->ev) : mh_event_set(&r->ev));
    if ((i & 255) == 0) mht_jitter(200);
  }
  return NULL;
}

TEST(event_waits_end_under_set_clear_storm) {
  /* Waiters with short timeouts against a set/clear storm: every wait
   * ends with 0 or MH_ETIMEDOUT, and when the event ends up set, every
   * waiter sees it. */
  struct evrace r;
  memset(&r, 0, sizeof r);
  ASSERT_OK(mh_event_init(&r.ev));
  pthread_t w[6], tg[2];
  for (int i = 0; i < 6; i++) pthread_create(&w[i], NULL, evrace_waiter, &r);
  for (int i = 0; i < 2; i++) pthread_create(&tg[i], NULL, evrace_toggler, &r);
  for (int i = 0; i < 2; i++) pthread_join(tg[i], NULL);
  ASSERT_OK(mh_event_set(&r.ev));
  atomic_store(&r.stop, 1);
  for (int i = 0; i < 6; i++) pthread_join(w[i], NULL);
  ASSERT_GT(atomic_load(&r.woke) + atomic_load(&r.timed_out), 0);
  ASSERT_OK(mh_event_wait(&r.ev, 0));
  ASSERT_OK(mh_event_destroy(&r.ev));
}

/* CPython's test for bpo-13502: a waiter that was waiting when set() ran
 * must return success even when clear() follows at once, before it woke. */
struct evpulse {
  mh_event_t *ev;
  mh_barrier_t *start;
  atomic_int ready;
  atomic_int failed;
  int rounds;
};

static void *evpulse_waiter(void *arg) {
  struct evpulse *p = arg;
  for (int r = 0; r < p->rounds; r++) {
    ASSERT(mh_barrier_wait(p->start) >= 0);
    atomic_fetch_add(&p->ready, 1);
    int rc = mh_event_wait(p->ev, 10.0);
    if (rc != 0) atomic_fetch_add(&p->failed, 1);
    ASSERT(mh_barrier_wait(p->start) >= 0);
  }
  return NULL;
}

/* Number of threads inside mh_event_wait (a private field, read under the
 * event's own mutex as the library does). */
static unsigned ev_waiters(mh_event_t *ev) {
  ASSERT_EQ(pthread_mutex_lock(&ev->mutex), 0);
  unsigned n = ev->waiters;
  pthread_mutex_unlock(&ev->mutex);
  return n;
}

/* The set must come after every waiter's first look at the flag, or the
 * waiter was not waiting when it happened: wait until all `n` are counted
 * inside mh_event_wait (they took the generation there, under the mutex),
 * then set and clear at once. */
static void evpulse_round(struct evpulse *p, mh_barrier_t *start, int n, int round) {
  ASSERT(mh_barrier_wait(start) >= 0);
  while (atomic_load(&p->ready) < n * (round + 1)) sched_yield();
  double t0 = mht_now();
  while (ev_waiters(p->ev) < (unsigned)n) {
    ASSERT(mht_now() - t0 < 20.0);
    mht_sleep(0.0002);
  }
  if (round & 1) mht_sleep(0.001); /* some rounds: the waiters asleep for sure */
  ASSERT_OK(mh_event_set(p->ev));
  ASSERT_OK(mh_event_clear(p->ev));
  ASSERT(mh_barrier_wait(start) >= 0);
}

static void evpulse_run(mh_event_t *ev, mh_barrier_t *start, int rounds) {
  enum { N = 5 };
  struct evpulse p = {.ev = ev, .start = start, .rounds = rounds};
  pthread_t th[N];
  for (int i = 0; i < N; i++) ASSERT_EQ(pthread_create(&th[i], NULL, evpulse_waiter, &p), 0);
  for (int r = 0; r < rounds; r++) evpulse_round(&p, start, N, r);
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  ASSERT_EQ(atomic_load(&p.failed), 0);
}

TEST(event_set_then_clear) {
  mh_event_t ev;
  mh_barrier_t start;
  ASSERT_OK(mh_event_init(&ev));
  ASSERT_OK(mh_barrier_init(&start, 6, NULL, NULL, MH_FOREVER));
  evpulse_run(&ev, &start, (int)mht_scaled(200));
  ASSERT_EQ(mh_event_is_set(&ev), 0);
  ASSERT_OK(mh_barrier_destroy(&start));
  ASSERT_OK(mh_event_destroy(&ev));
}

/* The same on a process-shared event (and barrier), used by threads of
 * one process: the generation lives in the shared object. */
TEST(shared_event_set_then_clear) {
  struct {
    mh_event_t ev;
    mh_barrier_t start;
  } *s = shared_map(sizeof *s);
  ASSERT_OK(mh_event_init_ex(&s->ev, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_barrier_init_ex(&s->start, 6, NULL, NULL, MH_FOREVER, MH_SYNC_PROCESS_SHARED));
  evpulse_run(&s->ev, &s->start, (int)mht_scaled(200));
  ASSERT_OK(mh_barrier_destroy(&s->start));
  ASSERT_OK(mh_event_destroy(&s->ev));
  munmap(s, sizeof *s);
}

/* ---- Barrier --------------------------------------------------------- */

struct bartest {
  mh_barrier_t b;
  int rounds;
  int parties;
  atomic_int actions;
  atomic_int last_index_count; /* how many got index parties-1 */
  atomic_long sum;             /* every party adds its round number */
  atomic_int broken;
  atomic_int arrived;
};

static int bar_action(void *arg) {
  struct bartest *t = arg;
  atomic_fetch_add(&t->actions, 1);
  return 0;
}

static void *bar_party(void *arg) {
  struct bartest *t = arg;
  for (int r = 0; r < t->rounds; r++) {
    if ((r & 7) == 0) mht_jitter(300);
    int idx = mh_barrier_wait(&t->b);
    ASSERT(idx >= 0 && idx < t->parties);
    if (idx == t->parties - 1) atomic_fetch_add(&t->last_index_count, 1);
    /* Nobody may pass round r before every party has reached it. */
    ASSERT_GE(atomic_load(&t->actions), r + 1);
    atomic_fetch_add(&t->sum, r);
  }
  return NULL;
}

TEST(barrier_stress) {
  struct bartest t = {.rounds = (int)mht_scaled(2000), .parties = 6};
  ASSERT_OK(mh_barrier_init(&t.b, 6, bar_action, &t, MH_FOREVER));
  run_threads(6, bar_party, &t);
  ASSERT_EQ(atomic_load(&t.actions), t.rounds);
  ASSERT_EQ(atomic_load(&t.last_index_count), t.rounds);
  ASSERT_EQ(atomic_load(&t.sum), 6L * t.rounds * (t.rounds - 1) / 2);
  ASSERT_EQ(mh_barrier_n_waiting(&t.b), 0);
  ASSERT_EQ(mh_barrier_broken(&t.b), 0);
  ASSERT_OK(mh_barrier_destroy(&t.b));
}

static void *bar_wait_expect_broken(void *arg) {
  struct bartest *t = arg;
  atomic_fetch_add(&t->arrived, 1);
  int rc = mh_barrier_wait(&t->b);
  ASSERT_ERR(rc, MH_EBROKEN);
  atomic_fetch_add(&t->broken, 1);
  return NULL;
}

static void wait_n_waiting(mh_barrier_t *b, int n) {
  double t0 = mht_now();
  while (mh_barrier_n_waiting(b) != n) {
    ASSERT(mht_now() - t0 < 20);
    mht_sleep(0.001);
  }
}

TEST(barrier_abort_while_waiting) {
  struct bartest t = {.parties = 5};
  ASSERT_OK(mh_barrier_init(&t.b, 5, NULL, NULL, MH_FOREVER));
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, bar_wait_expect_broken, &t);
  wait_n_waiting(&t.b, 4);
  ASSERT_OK(mh_barrier_abort(&t.b));
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  ASSERT_EQ(atomic_load(&t.broken), 4);
  ASSERT_EQ(mh_barrier_broken(&t.b), 1);
  ASSERT_ERR(mh_barrier_wait(&t.b), MH_EBROKEN); /* stays broken */
  ASSERT_OK(mh_barrier_reset(&t.b));
  ASSERT_EQ(mh_barrier_broken(&t.b), 0);
  ASSERT_OK(mh_barrier_destroy(&t.b));

  /* Parties 1: every wait trips at once with index 0. */
  ASSERT_OK(mh_barrier_init(&t.b, 1, NULL, NULL, MH_FOREVER));
  ASSERT_EQ(mh_barrier_wait(&t.b), 0);
  ASSERT_EQ(mh_barrier_wait(&t.b), 0);
  ASSERT_OK(mh_barrier_destroy(&t.b));
}

static void *bar_pass(void *arg) {
  struct bartest *t = arg;
  for (int r = 0; r < 3; r++) ASSERT(mh_barrier_wait(&t->b) >= 0);
  return NULL;
}

TEST(barrier_reset_while_waiting) {
  for (int round = 0; round < mht_scaled(20); round++) {
    struct bartest t = {.parties = 4};
    ASSERT_OK(mh_barrier_init(&t.b, 4, NULL, NULL, MH_FOREVER));
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, bar_wait_expect_broken, &t);
    if (round & 1) {
      /* All three wait: the reset alone must break them out. */
      wait_n_waiting(&t.b, 3);
      ASSERT_OK(mh_barrier_reset(&t.b));
    } else {
      /* Reset races with the arrivals; late arrivals wait on, and an
       * abort (also racing) breaks them out. */
      mht_jitter(2000);
      ASSERT_OK(mh_barrier_reset(&t.b));
      mht_jitter(2000);
      ASSERT_OK(mh_barrier_abort(&t.b));
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&t.broken), 3);
    /* After a reset the barrier works again, round after round. */
    ASSERT_OK(mh_barrier_reset(&t.b));
    ASSERT_EQ(mh_barrier_broken(&t.b), 0);
    ASSERT_EQ(mh_barrier_n_waiting(&t.b), 0);
    run_threads(4, bar_pass, &t);
    ASSERT_OK(mh_barrier_destroy(&t.b));
  }
}

TEST(barrier_timeout_breaks) {
  struct bartest t = {.parties = 3};
  ASSERT_OK(mh_barrier_init(&t.b, 3, NULL, NULL, MH_FOREVER));
  pthread_t th;
  pthread_create(&th, NULL, bar_wait_expect_broken, &t);
  wait_n_waiting(&t.b, 1);
  double t0 = mht_now();
  ASSERT_ERR(mh_barrier_wait_timeout(&t.b, 0.1), MH_EBROKEN);
  ASSERT(mht_now() - t0 >= 0.095);
  pthread_join(th, NULL);
  ASSERT_EQ(atomic_load(&t.broken), 1);
  ASSERT_EQ(mh_barrier_broken(&t.b), 1);
  ASSERT_OK(mh_barrier_destroy(&t.b));

  /* The default timeout from init applies to mh_barrier_wait(). */
  ASSERT_OK(mh_barrier_init(&t.b, 2, NULL, NULL, 0.05));
  ASSERT_ERR(mh_barrier_wait(&t.b), MH_EBROKEN);
  ASSERT_OK(mh_barrier_destroy(&t.b));
}

static int failing_action(void *arg) {
  (void)arg;
  return -1;
}

TEST(barrier_action_fails) {
  struct bartest t = {.parties = 3};
  ASSERT_OK(mh_barrier_init(&t.b, 3, failing_action, NULL, MH_FOREVER));
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, bar_wait_expect_broken, &t);
  wait_n_waiting(&t.b, 2);
  ASSERT_ERR(mh_barrier_wait(&t.b), MH_EBROKEN);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  ASSERT_EQ(atomic_load(&t.broken), 2);
  ASSERT_OK(mh_barrier_destroy(&t.b));
}

/* ---- allocation: none of these allocate ------------------------------- */

TEST(no_allocation) {
  mht_alloc_fail_after(0);
  mh_lock_t l;
  mh_rlock_t r;
  mh_cond_t c;
  mh_sem_t s;
  mh_event_t e;
  mh_barrier_t b;
  ASSERT_OK(mh_lock_init(&l));
  ASSERT_OK(mh_rlock_init(&r));
  ASSERT_OK(mh_cond_init(&c, &l));
  ASSERT_OK(mh_sem_init(&s, 1));
  ASSERT_OK(mh_event_init(&e));
  ASSERT_OK(mh_barrier_init(&b, 1, NULL, NULL, MH_FOREVER));
  ASSERT_OK(mh_lock_acquire(&l, 0));
  ASSERT_OK(mh_lock_release(&l));
  ASSERT_EQ(mh_barrier_wait(&b), 0);
  ASSERT_OK(mh_barrier_destroy(&b));
  ASSERT_OK(mh_event_destroy(&e));
  ASSERT_OK(mh_sem_destroy(&s));
  ASSERT_OK(mh_cond_destroy(&c));
  ASSERT_OK(mh_rlock_destroy(&r));
  ASSERT_OK(mh_lock_destroy(&l));
  ASSERT_EQ(mht_alloc_live(), 0);
  mht_alloc_reset();
}
