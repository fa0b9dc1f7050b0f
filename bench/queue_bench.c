/* queue_bench.c - throughput of a bounded mh_queue with P producers and C consumers.
 *
 * usage: queue_bench [-p P] [-c C] [-n N] [-m MAXSIZE] [-b BATCH]
 *
 * P producers put N 8-byte items in all through a queue of MAXSIZE slots to
 * C consumers; with -b > 1 both sides use put_many / get_many with batches of
 * that size.  When the producers are done the queue is shut down, so the
 * consumers drain it and stop.  Prints "<items/s> items/s <items/cpu-s>
 * items/cpu-s" on one line (the second divides by the CPU time the process
 * used, which says more than wall time on a machine shared with other work)
 * and fails (exit 1) if the items received do not add up to the items sent.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "manyhands.h"
#include "bench.h"

static mh_queue_t *q;
static long n_items, per_producer[64];
static int producers = 1, consumers = 1;
static size_t batch = 1;
static atomic_int ready;
static atomic_ullong got_sum, got_count;

static void start_line(void) {
  atomic_fetch_add(&ready, 1);
  while (atomic_load(&ready) < producers + consumers + 1) {
  }
}

static void *producer(void *arg) {
  long id = (long)(intptr_t)arg;
  uint64_t buf[256];
  start_line();
  long n = per_producer[id];
  if (batch <= 1) {
    for (long i = 0; i < n; i++) {
      uint64_t v = (uint64_t)i + 1;
      if (mh_queue_put(q, &v, MH_FOREVER)) abort();
    }
  } else {
    for (long i = 0; i < n;) {
      size_t k = (size_t)(n - i) < batch ? (size_t)(n - i) : batch;
      for (size_t j = 0; j < k; j++) buf[j] = (uint64_t)(i + (long)j) + 1;
      if (mh_queue_put_many(q, buf, k, NULL, MH_FOREVER)) abort();
      i += (long)k;
    }
  }
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  uint64_t buf[256], sum = 0, count = 0;
  start_line();
  if (batch <= 1) {
    uint64_t v;
    while (mh_queue_get(q, &v, MH_FOREVER) == 0) {
      sum += v;
      count++;
    }
  } else {
    size_t k;
    while (mh_queue_get_many(q, buf, batch, &k, MH_FOREVER) == 0) {
      for (size_t j = 0; j < k; j++) sum += buf[j];
      count += k;
    }
  }
  atomic_fetch_add(&got_sum, sum);
  atomic_fetch_add(&got_count, count);
  return NULL;
}

int main(int argc, char **argv) {
  long maxsize = 1024;
  n_items = 10000000;
  int opt;
  while ((opt = getopt(argc, argv, "p:c:n:m:b:")) != -1) {
    switch (opt) {
    case 'p': producers = atoi(optarg); break;
    case 'c': consumers = atoi(optarg); break;
    case 'n': n_items = (long)atof(optarg); break;
    case 'm': maxsize = atol(optarg); break;
    case 'b': batch = (size_t)atol(optarg); break;
    default:
      fprintf(stderr, "usage: %s [-p P] [-c C] [-n N] [-m MAXSIZE] [-b BATCH]\n", argv[0]);
      return 2;
    }
  }
  if (producers < 1 || producers > 64 || consumers < 1 || consumers > 64 || n_items < 1 ||
      maxsize < 0 || batch < 1 || batch > 256) {
    fprintf(stderr, "queue_bench: bad arguments\n");
    return 2;
  }
  int rc = mh_queue_new(&q, sizeof(uint64_t), (size_t)maxsize);
  if (rc) {
    fprintf(stderr, "queue_bench: %s\n", mh_strerror(rc));
    return 1;
  }
  uint64_t want = 0;
  for (int i = 0; i < producers; i++) {
    per_producer[i] = n_items / producers + (i < n_items % producers);
    want += (uint64_t)per_producer[i] * (uint64_t)(per_producer[i] + 1) / 2;
  }
  pthread_t pt[64], ct[64];
  for (int i = 0; i < producers; i++) pthread_create(&pt[i], NULL, producer, (void *)(intptr_t)i);
  for (int i = 0; i < consumers; i++) pthread_create(&ct[i], NULL, consumer, NULL);
  start_line();
  double t0 = bench_now(), c0 = bench_cpu_seconds();
  for (int i = 0; i < producers; i++) pthread_join(pt[i], NULL);
  mh_queue_shutdown(q, 0);
  for (int i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
  double secs = bench_now() - t0, cpu = bench_cpu_seconds() - c0;
  mh_queue_free(q);
  if (atomic_load(&got_count) != (uint64_t)n_items || atomic_load(&got_sum) != want) {
    fprintf(stderr, "queue_bench: lost or duplicated items\n");
    return 1;
  }
  printf("%.0f items/s %.0f items/cpu-s\n", (double)n_items / secs, (double)n_items / cpu);
  return 0;
}
