/* SPDX-License-Identifier: MIT */
/* time.c - the monotonic clock, deadlines and timed condition waits.
 *
 * A timeout (seconds, double) is turned once into an absolute deadline on
 * CLOCK_MONOTONIC; every condition variable in the library is created on that
 * clock, so changes of the wall clock never shorten or stretch a wait.
 */
#include <errno.h>
#include <math.h>

#include "internal.h"

double mh__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int mh__deadline_init(mh__deadline_t *dl, double timeout) {
  if (isnan(timeout)) return MH_EINVAL;
  if (timeout == MH_FOREVER || isinf(timeout)) {
    if (timeout < 0 && timeout != MH_FOREVER) return MH_EINVAL;
    dl->kind = MH__DL_FOREVER;
    return 0;
  }
  if (timeout < 0) return MH_EINVAL;
  if (timeout == 0) {
    dl->kind = MH__DL_NOW;
    return 0;
  }
  /* Beyond ~30 years a deadline is as good as forever, and this keeps the
   * tv_sec arithmetic far from overflow. */
  if (timeout > 1e9) {
    dl->kind = MH__DL_FOREVER;
    return 0;
  }
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double whole = floor(timeout);
  long nsec = now.tv_nsec + (long)((timeout - whole) * 1e9);
  dl->at.tv_sec = now.tv_sec + (time_t)whole + nsec / 1000000000L;
  dl->at.tv_nsec = nsec % 1000000000L;
  dl->kind = MH__DL_AT;
  return 0;
}

int mh__cond_init(pthread_cond_t *cond, bool pshared) {
  pthread_condattr_t attr;
  int rc = pthread_condattr_init(&attr);
  if (rc) return -rc;
  rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (!rc && pshared)
    rc = pthread_condattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (!rc) rc = pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
  return -rc;
}

int mh__cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                  const mh__deadline_t *dl) {
  int rc;
  switch (dl->kind) {
  case MH__DL_NOW:
    return MH_ETIMEDOUT;
  case MH__DL_FOREVER:
    rc = pthread_cond_wait(cond, mutex);
    return rc == EOWNERDEAD ? MH_EOWNERDEAD : 0;
  case MH__DL_AT:
  default:
    rc = pthread_cond_timedwait(cond, mutex, &dl->at);
    if (rc == ETIMEDOUT) return MH_ETIMEDOUT;
    return rc == EOWNERDEAD ? MH_EOWNERDEAD : 0;
  }
}

void mh__sleep(double seconds) {
  if (!(seconds > 0)) return;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}
