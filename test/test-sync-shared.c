/* SPDX-License-Identifier: MIT */
/* test-sync-shared.c - the process-shared Lock, RLock, Condition, Semaphore
 * and Event: an owner (process or thread) that dies holding a lock, waiters
 * killed, objects used across processes, and chaos with SIGKILL at random
 * moments.  The thread-only objects are test-sync.c. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sync-common.h"

/* ---- process-shared ---------------------------------------------------- */

TEST(shared_lock_owner_dies) {
  mh_lock_t *l = shared_map(sizeof *l);
  ASSERT_OK(mh_lock_init_ex(l, MH_SYNC_PROCESS_SHARED));
  for (int how = 0; how < 2; how++) {
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
      if (mh_lock_acquire(l, MH_FOREVER) != 0) _exit(3);
      if (how == 0) _exit(0); /* dies holding the lock */
      raise(SIGKILL);
      _exit(4);
    }
    int st = wait_child(pid);
    if (how == 0) ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT_ERR(mh_lock_acquire(l, 1.0), MH_EOWNERDEAD);
    ASSERT_EQ(mh_lock_locked(l), 1);
    ASSERT_OK(mh_lock_consistent(l));
    ASSERT_OK(mh_lock_release(l));
    ASSERT_OK(mh_lock_acquire(l, 0));
    ASSERT_OK(mh_lock_release(l));
  }

  /* A waiter already blocked in acquire (forever and timed) is woken by the
   * owner's death and gets the lock with MH_EOWNERDEAD. */
  for (int timed = 0; timed < 2; timed++) {
    int *go = shared_map(sizeof *go);
    pid_t pid = fork();
    if (pid == 0) {
      if (mh_lock_acquire(l, MH_FOREVER) != 0) _exit(3);
      __atomic_store_n(go, 1, __ATOMIC_SEQ_CST);
      mht_sleep(0.2);
      _exit(0);
    }
    while (!__atomic_load_n(go, __ATOMIC_SEQ_CST)) mht_sleep(0.001);
    double t0 = mht_now();
    ASSERT_ERR(mh_lock_acquire(l, timed ? 20.0 : MH_FOREVER), MH_EOWNERDEAD);
    ASSERT(mht_now() - t0 < 10);
    ASSERT_OK(mh_lock_consistent(l));
    ASSERT_OK(mh_lock_release(l));
    wait_child(pid);
    munmap(go, sizeof *go);
  }

  /* Released without repair: unrecoverable for everyone from then on. */
  pid_t pid = fork();
  if (pid == 0) {
    mh_lock_acquire(l, MH_FOREVER);
    _exit(0);
  }
  wait_child(pid);
  ASSERT_ERR(mh_lock_acquire(l, MH_FOREVER), MH_EOWNERDEAD);
  ASSERT_OK(mh_lock_release(l));
  ASSERT_ERR(mh_lock_acquire(l, MH_FOREVER), MH_ENOTRECOVERABLE);
  ASSERT_ERR(mh_lock_acquire(l, 0), MH_ENOTRECOVERABLE);
  ASSERT_ERR(mh_lock_acquire(l, 0.01), MH_ENOTRECOVERABLE);
  ASSERT_OK(mh_lock_destroy(l));
  munmap(l, sizeof *l);
}

static void *die_holding(void *arg) {
  /* A thread (not a process) that ends holding a shared lock. */
  ASSERT_OK(mh_lock_acquire(arg, MH_FOREVER));
  return NULL;
}

TEST(shared_lock_thread_dies) {
  mh_lock_t *l = shared_map(sizeof *l);
  ASSERT_OK(mh_lock_init_ex(l, MH_SYNC_PROCESS_SHARED));
  run_threads(1, die_holding, l);
  ASSERT_ERR(mh_lock_acquire(l, MH_FOREVER), MH_EOWNERDEAD);
  ASSERT_OK(mh_lock_consistent(l));
  ASSERT_OK(mh_lock_release(l));
  ASSERT_OK(mh_lock_destroy(l));
  munmap(l, sizeof *l);
}

TEST(shared_rlock_owner_dies) {
  mh_rlock_t *r = shared_map(sizeof *r);
  ASSERT_OK(mh_rlock_init_ex(r, MH_SYNC_PROCESS_SHARED));
  pid_t pid = fork();
  if (pid == 0) {
    mh_rlock_acquire(r, MH_FOREVER);
    mh_rlock_acquire(r, MH_FOREVER);
    _exit(0);
  }
  wait_child(pid);
  ASSERT_ERR(mh_rlock_acquire(r, 2), MH_EOWNERDEAD);
  ASSERT_OK(mh_rlock_consistent(r));
  ASSERT_OK(mh_rlock_acquire(r, 0));
  ASSERT_OK(mh_rlock_release(r));
  ASSERT_OK(mh_rlock_release(r));
  ASSERT_ERR(mh_rlock_release(r), MH_EINVAL);
  ASSERT_OK(mh_rlock_destroy(r));
  munmap(r, sizeof *r);
}

TEST(shared_cond_owner_dies) {
  /* A process notifies and dies holding the condition's lock: the waiter
   * wakes, re-takes the lock and learns of the death from the wait. */
  struct {
    mh_cond_t cond;
    int waiting;
  } *s = shared_map(sizeof *s);
  ASSERT_OK(mh_cond_init_ex(&s->cond, NULL, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_cond_acquire(&s->cond, MH_FOREVER));
  s->waiting = 1;
  pid_t pid = fork();
  if (pid == 0) {
    if (mh_cond_acquire(&s->cond, MH_FOREVER) != 0) _exit(3);
    if (!s->waiting) _exit(4);
    mh_cond_notify_all(&s->cond);
    _exit(0); /* holding the lock */
  }
  int rc;
  double t0 = mht_now();
  do {
    rc = mh_cond_wait(&s->cond, 20);
  } while (rc == 0 && mht_now() - t0 < 20);
  ASSERT_ERR(rc, MH_EOWNERDEAD);
  ASSERT_EQ(mh_lock_locked(mh_cond_lock(&s->cond)), 1);
  ASSERT_OK(mh_lock_consistent(mh_cond_lock(&s->cond)));
  ASSERT_OK(mh_cond_release(&s->cond));
  int st = wait_child(pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT_OK(mh_cond_destroy(&s->cond));
  munmap(s, sizeof *s);
}

/* Waiters of a shared condition, notified, re-take its lock while the
 * notifier is SIGKILLed holding it, and 1 to W - 2 of them are SIGKILLed
 * with it.  The kernel marks the lock owner-died and wakes ONE of the
 * re-takers; when the woken one dies before it takes the lock, only the
 * kernel passing the wake-up on (newer kernels) or the re-take's own
 * slices (sync.c's shared conditions) keep the others from sleeping for
 * ever: glibc's condition wait re-takes the mutex with an unbounded sleep.
 * Before the notify, one waiter is killed in its wait, which must cost the
 * notifier and the others nothing.  Each survivor must end within 20 s. */
TEST(shared_cond_owner_and_waiters_killed) {
  enum { W = 6 };
  struct cw {
    mh_cond_t cond;
    int ready, go, notified, woke;
  };
  int rounds = (int)mht_scaled(30);
  for (int r = 0; r < rounds; r++) {
    struct cw *s = shared_map(sizeof *s);
    ASSERT_OK(mh_cond_init_ex(&s->cond, NULL, MH_SYNC_PROCESS_SHARED));
    pid_t w[W];
    for (int k = 0; k < W; k++) {
      w[k] = fork();
      ASSERT(w[k] >= 0);
      if (w[k] == 0) {
        int rc = mh_cond_acquire(&s->cond, MH_FOREVER);
        if (rc == MH_EOWNERDEAD) rc = mh_lock_consistent(mh_cond_lock(&s->cond));
        if (rc) _exit(3);
        s->ready++;
        while (!s->go) {
          rc = mh_cond_wait(&s->cond, 30);
          if (rc == MH_EOWNERDEAD)
            rc = mh_lock_consistent(mh_cond_lock(&s->cond));
          if (rc) _exit(4); /* MH_ETIMEDOUT: a lost wake-up */
        }
        s->woke++;
        mh_cond_release(&s->cond);
        _exit(0);
      }
    }
    /* All W are in their wait once the lock is free and ready says W. */
    double t0 = mht_now();
    for (;;) {
      int rc = mh_cond_acquire(&s->cond, 20);
      if (rc == MH_EOWNERDEAD) rc = mh_lock_consistent(mh_cond_lock(&s->cond));
      ASSERT_OK(rc);
      int n = s->ready;
      ASSERT_OK(mh_cond_release(&s->cond));
      if (n == W) break;
      ASSERT(mht_now() - t0 < 20);
      mht_sleep(0.001);
    }
    mht_sleep(0.005);
    /* One killed while it sleeps in the wait. */
    kill(w[0], SIGKILL);
    ASSERT_EQ(mht_wait_child_for(w[0], 20), SIGKILL);
    pid_t owner = fork();
    ASSERT(owner >= 0);
    if (owner == 0) {
      int rc = mh_cond_acquire(&s->cond, MH_FOREVER);
      if (rc == MH_EOWNERDEAD) rc = mh_lock_consistent(mh_cond_lock(&s->cond));
      if (rc) _exit(3);
      s->go = 1;
      mh_cond_notify_all(&s->cond);
      __atomic_store_n(&s->notified, 1, __ATOMIC_SEQ_CST);
      for (;;) pause(); /* holding the lock until killed */
    }
    t0 = mht_now();
    while (!__atomic_load_n(&s->notified, __ATOMIC_SEQ_CST)) {
      if (mht_now() - t0 > 20)
        mht_fail(__FILE__, __LINE__,
                 "round %d: notify_all did not return in 20 s after a "
                 "waiter was killed in its wait", r);
      mht_sleep(0.0005);
    }
    /* Time for every notified waiter to fall asleep on the held lock (and,
     * now and then, not quite). */
    mht_sleep(0.01 + (double)(mht_rand() % 30) * 1e-3);
    /* The owner and 1 to W - 2 more waiters at once (at least one lives);
     * the rest must go on. */
    kill(owner, SIGKILL);
    int killed[W] = {1};
    int spare = 1 + (int)(mht_rand() % (W - 1)), nkill = 1 + (int)(mht_rand() % (W - 2));
    for (int k = 1, n = 0; k < W && n < nkill; k++) {
      if (k == spare) continue;
      killed[k] = 1;
      kill(w[k], SIGKILL);
      n++;
    }
    ASSERT_EQ(mht_wait_child_for(owner, 20), SIGKILL);
    for (int k = 1; k < W; k++) {
      int st = mht_wait_child_for(w[k], 20);
      if (st == -1)
        mht_fail(__FILE__, __LINE__,
                 "round %d: waiter %d did not end in 20 s (a lost owner-died "
                 "wake-up)", r, k);
      if (!killed[k] || !WIFSIGNALED(st))
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    int rc = mh_cond_acquire(&s->cond, 20);
    if (rc == MH_EOWNERDEAD) rc = mh_lock_consistent(mh_cond_lock(&s->cond));
    ASSERT_OK(rc);
    ASSERT_OK(mh_cond_release(&s->cond));
    ASSERT_OK(mh_cond_destroy(&s->cond));
    munmap(s, sizeof *s);
  }
}

struct shared_all {
  mh_lock_t lock;
  mh_cond_t cond;
  mh_sem_t sem;
  mh_event_t ev;
  mh_barrier_t bar;
  long counter;
  long ready;
};

TEST(shared_across_processes) {
  struct shared_all *s = shared_map(sizeof *s);
  ASSERT_OK(mh_lock_init_ex(&s->lock, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_cond_init_ex(&s->cond, NULL, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_sem_init_ex(&s->sem, 0, 0, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_event_init_ex(&s->ev, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_barrier_init_ex(&s->bar, 4, NULL, NULL, 30, MH_SYNC_PROCESS_SHARED));
  long iters = mht_scaled(20000);
  pid_t kids[3];
  for (int k = 0; k < 3; k++) {
    kids[k] = fork();
    ASSERT(kids[k] >= 0);
    if (kids[k] == 0) {
      int bad = 0;
      for (long i = 0; i < iters; i++) {
        bad |= mh_lock_acquire(&s->lock, MH_FOREVER) != 0;
        s->counter++;
        bad |= mh_lock_release(&s->lock) != 0;
      }
      bad |= mh_barrier_wait(&s->bar) < 0;
      /* Condition: say "ready", then wait for the event. */
      bad |= mh_cond_acquire(&s->cond, MH_FOREVER) != 0;
      s->ready++;
      bad |= mh_cond_notify_all(&s->cond) != 0;
      bad |= mh_cond_release(&s->cond) != 0;
      bad |= mh_event_wait(&s->ev, 30) != 0;
      bad |= mh_sem_release(&s->sem, 1) != 0;
      _exit(bad ? 1 : 0);
    }
  }
  for (long i = 0; i < iters; i++) {
    ASSERT_OK(mh_lock_acquire(&s->lock, MH_FOREVER));
    s->counter++;
    ASSERT_OK(mh_lock_release(&s->lock));
  }
  ASSERT(mh_barrier_wait(&s->bar) >= 0);
  ASSERT_EQ(s->counter, 4 * iters); /* everyone passed the barrier */
  ASSERT_OK(mh_cond_acquire(&s->cond, MH_FOREVER));
  while (s->ready < 3) ASSERT_OK(mh_cond_wait(&s->cond, MH_FOREVER));
  ASSERT_OK(mh_cond_release(&s->cond));
  ASSERT_OK(mh_event_set(&s->ev));
  for (int k = 0; k < 3; k++) ASSERT_OK(mh_sem_acquire(&s->sem, 30));
  for (int k = 0; k < 3; k++) {
    int st = wait_child(kids[k]);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  ASSERT_OK(mh_barrier_destroy(&s->bar));
  ASSERT_OK(mh_event_destroy(&s->ev));
  ASSERT_OK(mh_sem_destroy(&s->sem));
  ASSERT_OK(mh_cond_destroy(&s->cond));
  ASSERT_OK(mh_lock_destroy(&s->lock));
  munmap(s, sizeof *s);
}

TEST(shared_internal_mutex_owner_dies) {
  /* A process that dies inside a semaphore, event or barrier call leaves
   * its internal mutex owner-dead; the next caller repairs it and goes on.
   * The death is staged by taking the internal mutex directly. */
  struct shared_all *s = shared_map(sizeof *s);
  ASSERT_OK(mh_sem_init_ex(&s->sem, 1, 0, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_event_init_ex(&s->ev, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_barrier_init_ex(&s->bar, 2, NULL, NULL, MH_FOREVER, MH_SYNC_PROCESS_SHARED));
  pid_t pid = fork();
  if (pid == 0) {
    pthread_mutex_lock(&s->sem.mutex);
    pthread_mutex_lock(&s->ev.mutex);
    pthread_mutex_lock(&s->bar.mutex);
    _exit(0);
  }
  wait_child(pid);
  ASSERT_OK(mh_sem_acquire(&s->sem, 1));
  ASSERT_OK(mh_sem_release(&s->sem, 1));
  ASSERT_EQ(mh_sem_value(&s->sem), 1);
  ASSERT_OK(mh_event_set(&s->ev));
  ASSERT_OK(mh_event_wait(&s->ev, 1));
  ASSERT_EQ(mh_barrier_n_waiting(&s->bar), 0);

  /* A waiter blocked on a shared event while another process dies holding
   * its mutex still gets woken by the next set. */
  ASSERT_OK(mh_event_clear(&s->ev));
  pid_t waiter = fork();
  if (waiter == 0) _exit(mh_event_wait(&s->ev, 30) == 0 ? 0 : 1);
  mht_sleep(0.05);
  pid = fork();
  if (pid == 0) {
    pthread_mutex_lock(&s->ev.mutex);
    _exit(0);
  }
  wait_child(pid);
  ASSERT_OK(mh_event_set(&s->ev));
  int st = wait_child(waiter);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT_OK(mh_barrier_destroy(&s->bar));
  ASSERT_OK(mh_event_destroy(&s->ev));
  ASSERT_OK(mh_sem_destroy(&s->sem));
  munmap(s, sizeof *s);
}

TEST(shared_waiter_killed_then_destroy) {
  /* Processes killed while waiting on shared objects: the others still
   * work, and destroying the objects afterwards does not hang (glibc's
   * pthread_cond_destroy would wait for the dead waiters forever). */
  struct shared_all *s = shared_map(sizeof *s);
  ASSERT_OK(mh_cond_init_ex(&s->cond, NULL, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_sem_init_ex(&s->sem, 0, 0, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_event_init_ex(&s->ev, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_barrier_init_ex(&s->bar, 3, NULL, NULL, MH_FOREVER, MH_SYNC_PROCESS_SHARED));
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      switch (k) {
      case 0:
        mh_cond_acquire(&s->cond, MH_FOREVER);
        for (;;) mh_cond_wait(&s->cond, MH_FOREVER);
      case 1:
        mh_sem_acquire(&s->sem, MH_FOREVER);
        break;
      case 2:
        mh_event_wait(&s->ev, MH_FOREVER);
        break;
      default:
        mh_barrier_wait(&s->bar);
        break;
      }
      _exit(0);
    }
  }
  /* Let them block, then kill them where they wait. */
  double t0 = mht_now();
  while (mh_barrier_n_waiting(&s->bar) < 1) {
    ASSERT(mht_now() - t0 < 20);
    mht_sleep(0.001);
  }
  mht_sleep(0.1);
  for (int k = 0; k < 4; k++) {
    kill(kids[k], SIGKILL);
    wait_child(kids[k]);
  }
  /* The condition's lock was held by nobody when its waiter died. */
  ASSERT_OK(mh_cond_acquire(&s->cond, 1));
  ASSERT_OK(mh_cond_notify(&s->cond, 1));
  ASSERT_ERR(mh_cond_wait(&s->cond, 0.01), MH_ETIMEDOUT);
  ASSERT_OK(mh_cond_release(&s->cond));
  ASSERT_OK(mh_sem_release(&s->sem, 1));
  ASSERT_OK(mh_sem_acquire(&s->sem, 1));
  ASSERT_OK(mh_event_set(&s->ev));
  ASSERT_OK(mh_event_wait(&s->ev, 1));
  ASSERT_OK(mh_barrier_abort(&s->bar));
  ASSERT_OK(mh_barrier_reset(&s->bar));
  ASSERT_OK(mh_cond_destroy(&s->cond));
  ASSERT_OK(mh_sem_destroy(&s->sem));
  ASSERT_OK(mh_event_destroy(&s->ev));
  ASSERT_OK(mh_barrier_destroy(&s->bar));
  munmap(s, sizeof *s);
}

/* One child's work on the shared objects; returns non-zero on an error
 * that is not explained by another process's death. */
static int chaos_work(struct shared_all *s, long iters) {
  for (long i = 0; iters < 0 || i < iters; i++) {
    int rc = mh_lock_acquire(&s->lock, 5);
    if (rc == MH_EOWNERDEAD) {
      s->ready++; /* "repair": count the deaths seen */
      if (mh_lock_consistent(&s->lock)) return 1;
    } else if (rc) {
      return 2;
    }
    s->counter++;
    if (mh_lock_release(&s->lock)) return 3;
    rc = mh_sem_acquire(&s->sem, 0); /* tokens of killed holders are lost */
    if (rc == 0) {
      if (mh_sem_release(&s->sem, 1)) return 4;
    } else if (rc != MH_ETIMEDOUT) {
      return 5;
    }
    if (i % 64 == 0) {
      if (mh_event_set(&s->ev) || mh_event_clear(&s->ev)) return 6;
      rc = mh_event_wait(&s->ev, 0);
      if (rc != 0 && rc != MH_ETIMEDOUT) return 7;
    }
  }
  return 0;
}

TEST(shared_chaos_kills) {
  /* Processes hammer a shared lock, semaphore and event and are killed at
   * random moments (often inside a call); a survivor and the parent still
   * get everything done, repairing the lock when its owner died. */
  struct shared_all *s = shared_map(sizeof *s);
  ASSERT_OK(mh_lock_init_ex(&s->lock, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_sem_init_ex(&s->sem, 3, 0, MH_SYNC_PROCESS_SHARED));
  ASSERT_OK(mh_event_init_ex(&s->ev, MH_SYNC_PROCESS_SHARED));
  for (int round = 0; round < mht_scaled(10); round++) {
    pid_t victims[4];
    for (int k = 0; k < 4; k++) {
      victims[k] = fork();
      ASSERT(victims[k] >= 0);
      if (victims[k] == 0) _exit(chaos_work(s, -1) + 100);
    }
    pid_t survivor = fork();
    if (survivor == 0) _exit(chaos_work(s, mht_scaled(20000)));
    for (int k = 0; k < 4; k++) {
      mht_jitter(30000);
      kill(victims[k], SIGKILL);
      int st = wait_child(victims[k]);
      /* Killed, never an early error exit. */
      ASSERT(WIFSIGNALED(st));
    }
    int st = wait_child(survivor);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
  }
  int rc = mh_lock_acquire(&s->lock, 5);
  if (rc == MH_EOWNERDEAD) rc = mh_lock_consistent(&s->lock);
  ASSERT_OK(rc);
  ASSERT_GT(s->counter, 0);
  fprintf(stderr, "owner deaths repaired: %ld\n", s->ready);
  ASSERT_OK(mh_lock_release(&s->lock));
  ASSERT_OK(mh_event_set(&s->ev));
  ASSERT_OK(mh_event_wait(&s->ev, 1));
  ASSERT_OK(mh_event_destroy(&s->ev));
  ASSERT_OK(mh_sem_destroy(&s->sem));
  ASSERT_OK(mh_lock_destroy(&s->lock));
  munmap(s, sizeof *s);
}
