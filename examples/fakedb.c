/* SPDX-License-Identifier: MIT */
/* fakedb.c - the tutorial's race condition on a fake database, and its fix
 * with a lock (run with --lock).
 *
 *   Python                                   C
 *   ThreadPoolExecutor(max_workers=2)        mh_executor_new (workers 2)
 *   executor.submit(database.update, index)  mh_executor_submit(update, &index)
 *   threading.Lock(); with self._lock:       mh_lock_acquire / mh_lock_release
 *   logging.basicConfig(level=DEBUG)         mh_log_set_level(MH_LOG_DEBUG)
 *
 * Without the lock both threads read 0, sleep 0.1 s, and write 1: the ending
 * value is 1.  With it the second update waits for the first: 2.
 *
 * `value` is an atomic read and written with separate plain loads and
 * stores: the lost update is the same as in Python, but it is a race of the
 * program's logic, not a data race (which C leaves undefined). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <manyhands.h>

typedef struct fake_database {
  atomic_int value;
  mh_lock_t lock;
} fake_database_t;

static void sleep_seconds(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int update(const void *in, size_t in_size, void *out, size_t out_size,
                  void *ctx) {
  (void)in_size, (void)out, (void)out_size;
  fake_database_t *db = ctx;
  int name = *(const int *)in;
  mh_log_info("Thread %d: starting update", name);
  int local_copy = atomic_load_explicit(&db->value, memory_order_relaxed);
  local_copy += 1;
  sleep_seconds(0.1);
  atomic_store_explicit(&db->value, local_copy, memory_order_relaxed);
  mh_log_info("Thread %d: finishing update", name);
  return 0;
}

static int locked_update(const void *in, size_t in_size, void *out,
                         size_t out_size, void *ctx) {
  (void)in_size, (void)out, (void)out_size;
  fake_database_t *db = ctx;
  int name = *(const int *)in;
  mh_log_info("Thread %d: starting update", name);
  mh_log_debug("Thread %d: about to lock", name);
  mh_lock_acquire(&db->lock, MH_FOREVER);
  mh_log_debug("Thread %d: has lock", name);
  int local_copy = atomic_load_explicit(&db->value, memory_order_relaxed);
  local_copy += 1;
  sleep_seconds(0.1);
  atomic_store_explicit(&db->value, local_copy, memory_order_relaxed);
  mh_log_debug("Thread %d: about to release lock", name);
  mh_lock_release(&db->lock);
  mh_log_debug("Thread %d: after release", name);
  mh_log_info("Thread %d: finishing update", name);
  return 0;
}

static void usage(FILE *to) {
  fputs("usage: fakedb [--lock] [--help]\n"
        "Two workers update one value without a lock (one update is lost);\n"
        "with --lock they take turns and log each step.\n", to);
}

int main(int argc, char **argv) {
  int use_lock = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--lock") == 0) {
      use_lock = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "fakedb: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (use_lock) mh_log_set_level(MH_LOG_DEBUG);
  fake_database_t database;
  atomic_init(&database.value, 0);
  if (mh_lock_init(&database.lock)) return 1;

  mh_log_info("Testing update. Starting value is %d.",
              atomic_load(&database.value));
  mh_executor_options_t opts;
  mh_executor_options_init(&opts);
  opts.workers = 2;
  mh_executor_t *executor;
  if (mh_executor_new(&executor, &opts)) return 1;
  int index[2] = {0, 1};
  for (int i = 0; i < 2; i++) {
    mh_future_t *f;
    if (mh_executor_submit(executor, use_lock ? locked_update : update,
                           &index[i], sizeof index[i], NULL, 0, &database, &f))
      return 1;
    mh_future_release(f); /* nobody asks for its result, as in Python */
  }
  mh_executor_free(executor); /* the end of the with block: waits */
  mh_log_info("Testing update. Ending value is %d.",
              atomic_load(&database.value));
  mh_lock_destroy(&database.lock);
  return 0;
}
