/* SPDX-License-Identifier: MIT */
/* sync_lock.c - lock throughput: acquire + release pairs per second.
 *
 *   sync_lock KIND THREADS N
 *
 * KIND: mh_lock, mh_rlock, mh_lock_timed (acquire with a 1 s timeout),
 * mh_lock_shared (process-shared robust lock), mh_sem (acquire + release of
 * a Semaphore(1)), pthread (a plain pthread mutex, the floor).  THREADS
 * threads each do N pairs on one lock, incrementing a shared counter inside;
 * prints "<pairs per second>" on one line.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <manyhands.h>

static const char *kind;
static long n_per_thread;
static mh_lock_t lock;
static mh_rlock_t rlock;
static mh_sem_t sem;
static pthread_mutex_t pmutex = PTHREAD_MUTEX_INITIALIZER;
static volatile long counter;

static void *run(void *arg) {
  (void)arg;
  if (strcmp(kind, "pthread") == 0) {
    for (long i = 0; i < n_per_thread; i++) {
      pthread_mutex_lock(&pmutex);
      counter++;
      pthread_mutex_unlock(&pmutex);
    }
  } else if (strcmp(kind, "mh_rlock") == 0) {
    for (long i = 0; i < n_per_thread; i++) {
      mh_rlock_acquire(&rlock, MH_FOREVER);
      counter++;
      mh_rlock_release(&rlock);
    }
  } else if (strcmp(kind, "mh_sem") == 0) {
    for (long i = 0; i < n_per_thread; i++) {
      mh_sem_acquire(&sem, MH_FOREVER);
      counter++;
      mh_sem_release(&sem, 1);
    }
  } else {
    double timeout = strcmp(kind, "mh_lock_timed") == 0 ? 1.0 : MH_FOREVER;
    for (long i = 0; i < n_per_thread; i++) {
      mh_lock_acquire(&lock, timeout);
      counter++;
      mh_lock_release(&lock);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: sync_lock KIND THREADS N\n");
    return 2;
  }
  kind = argv[1];
  int threads = atoi(argv[2]);
  n_per_thread = atol(argv[3]);
  if (threads < 1 || threads > 64 || n_per_thread < 1) return 2;
  mh_lock_init_ex(&lock, strcmp(kind, "mh_lock_shared") == 0 ? MH_SYNC_PROCESS_SHARED : 0);
  mh_rlock_init(&rlock);
  mh_sem_init(&sem, 1);
  pthread_t t[64];
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
  if (counter != (long)threads * n_per_thread) {
    fprintf(stderr, "sync_lock: lost updates\n");
    return 1;
  }
  printf("%.0f\n", (double)threads * (double)n_per_thread / s);
  return 0;
}
