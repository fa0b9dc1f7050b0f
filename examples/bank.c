/* SPDX-License-Identifier: MIT */
/* bank.c - the tutorial's bank.py: two processes withdraw and deposit 1 on a
 * shared balance 10,000 times each, under a lock, ten times over.  Every
 * round ends with "Final balance = 100".
 *
 * With --no-lock the lock is left out, and the read-modify-write of the
 * balance (a locked read, then a locked write, exactly like Python's
 * `balance.value = balance.value - 1`) races between the processes: updates
 * get lost and the balance drifts.  To make the race show reliably, both
 * processes wait at a shared barrier and start their loops together, and
 * each loop runs 100,000 times instead of 10,000: C does 10,000 iterations
 * in well under a millisecond, shorter than one scheduler time slice, so on
 * a busy machine the two loops could otherwise run one after the other
 * (Python's loop is some 100 times slower and overlaps by itself).
 *
 * Python                                   C
 *   balance = multiprocessing.Value('i', 100)  mh_shared_value_new(&balance, MH_SHARED_INT32, &initial)
 *   lock = multiprocessing.Lock()            mh_shared_lock_new(&lock)
 *   lock.acquire() / lock.release()          mh_lock_acquire(lock, MH_FOREVER) / mh_lock_release(lock)
 *   balance.value                            mh_shared_value_get_i64(balance, &x)
 *   balance.value = x                        mh_shared_value_set_i64(balance, x)
 *   Process(target=withdraw, args=(balance, lock))   mh_process_start(&p1, withdraw, &acct, NULL)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manyhands.h"

typedef struct account {
  mh_shared_value_t *balance; /* shared memory */
  mh_lock_t *lock;            /* shared memory; NULL with --no-lock */
  mh_barrier_t *start;        /* both workers begin together */
  long iterations;
} account_t;

/* balance.value = balance.value + delta, under the lock when there is one. */
static int transact(account_t *a, int delta) {
  int64_t value;
  if (a->lock && mh_lock_acquire(a->lock, MH_FOREVER) != 0) return 1;
  int rc = mh_shared_value_get_i64(a->balance, &value);
  if (rc == 0) rc = mh_shared_value_set_i64(a->balance, value + delta);
  if (a->lock) mh_lock_release(a->lock);
  return rc ? 1 : 0;
}

/* function to withdraw from account */
static int withdraw(void *arg) {
  account_t *a = arg;
  if (mh_barrier_wait(a->start) < 0) return 1;
  for (long i = 0; i < a->iterations; i++)
    if (transact(a, -1)) return 1;
  return 0;
}

/* function to deposit to account */
static int deposit(void *arg) {
  account_t *a = arg;
  if (mh_barrier_wait(a->start) < 0) return 1;
  for (long i = 0; i < a->iterations; i++)
    if (transact(a, +1)) return 1;
  return 0;
}

static int perform_transactions(int use_lock, long iterations) {
  account_t a = {NULL, NULL, NULL, iterations};
  mh_process_t *p1 = NULL, *p2 = NULL;
  int32_t initial = 100;
  int rc;

  /* initial balance (in shared memory), the lock and the starting line;
   * all made before the processes, which inherit them. */
  rc = mh_shared_value_new(&a.balance, MH_SHARED_INT32, &initial);
  if (!rc && use_lock) rc = mh_shared_lock_new(&a.lock);
  if (!rc) rc = mh_shared_barrier_new(&a.start, 2, NULL, NULL, 30.0);
  /* creating and starting the processes */
  if (!rc) rc = mh_process_start(&p1, withdraw, &a, NULL);
  if (!rc) rc = mh_process_start(&p2, deposit, &a, NULL);
  if (rc) {
    fprintf(stderr, "bank: %s\n", mh_strerror(rc));
    if (p1) mh_process_kill(p1);
  }
  /* wait until processes are finished */
  int c1 = 0, c2 = 0;
  if (p1 && mh_process_join(p1, MH_FOREVER) == 0) mh_process_exitcode(p1, &c1);
  if (p2 && mh_process_join(p2, MH_FOREVER) == 0) mh_process_exitcode(p2, &c2);
  if (!rc && (c1 || c2)) {
    fprintf(stderr, "bank: a worker failed (exit codes %d, %d)\n", c1, c2);
    rc = 1;
  }
  if (!rc) {
    int64_t final;
    mh_shared_value_get_i64(a.balance, &final);
    /* print final balance */
    printf("Final balance = %lld\n", (long long)final);
    fflush(stdout);
  }
  mh_process_free(p1);
  mh_process_free(p2);
  if (a.start) mh_shared_barrier_free(a.start);
  if (a.lock) mh_shared_lock_free(a.lock);
  if (a.balance) mh_shared_value_free(a.balance);
  return rc;
}

static void usage(FILE *to) {
  fputs("usage: bank [--no-lock] [--rounds R] [--iterations N] [--help]\n"
        "Two processes withdraw and deposit 1 on a shared balance of 100, N times\n"
        "each (default 10000), guarded by a process-shared lock; R rounds (default\n"
        "10), each printing \"Final balance = 100\" (the tutorial's bank.py).\n"
        "  --no-lock  leave the lock out: updates are lost and the balance drifts\n"
        "             (N defaults to 100000 then, so that the two loops overlap)\n",
        to);
}

int main(int argc, char **argv) {
  int use_lock = 1;
  long rounds = 10, iterations = 0; /* 0: 10,000, or 100,000 without lock */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--no-lock") == 0) {
      use_lock = 0;
    } else if ((strcmp(argv[i], "--rounds") == 0 || strcmp(argv[i], "--iterations") == 0) &&
               i + 1 < argc) {
      char *end;
      long v = strtol(argv[i + 1], &end, 10);
      if (*end || v <= 0 || v > 1000000000L) {
        fprintf(stderr, "bank: bad number %s\n", argv[i + 1]);
        return 2;
      }
      if (argv[i][2] == 'r')
        rounds = v;
      else
        iterations = v;
      i++;
    } else {
      fprintf(stderr, "bank: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (iterations == 0) iterations = use_lock ? 10000 : 100000;
  /* perform same transaction process 10 times */
  for (long r = 0; r < rounds; r++)
    if (perform_transactions(use_lock, iterations)) return 1;
  return 0;
}
