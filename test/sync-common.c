/* SPDX-License-Identifier: MIT */
/* sync-common.c - the helpers test-sync.c and test-sync-shared.c share (see
 * sync-common.h). */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "sync-common.h"

void run_threads(int n, thr_fn fn, void *arg) {
  pthread_t t[64];
  ASSERT(n <= 64);
  for (int i = 0; i < n; i++) ASSERT_EQ(pthread_create(&t[i], NULL, fn, arg), 0);
  for (int i = 0; i < n; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
}

void *shared_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  memset(p, 0, size);
  return p;
}

int wait_child(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0) {
  }
  return st;
}

int never(void *arg) {
  (void)arg;
  return 0;
}
