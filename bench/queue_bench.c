/* SPDX-License-Identifier: MIT */
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
 *
 * usage: queue_bench -P [-n ROUNDS] [-l LOAD]
 *
 * Ping-pong: two threads hand one item back and forth through two queues of
 * each shape (the bounded ring, unbounded FIFO, LIFO, priority), and through
 * a plain mutex + condition variable for comparison; prints one line per
 * shape, "<shape> <us> us/hand-off".  With -l, LOAD busy processes (a spin
 * loop each) run beside it for the whole run, started and stopped here, so
 * that threads outnumber cores as on a shared machine.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
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

/* ---- ping-pong ----------------------------------------------------------- */

enum { PP_RING, PP_UNBOUNDED, PP_LIFO, PP_PRIO, PP_CONDVAR, PP_SHAPES };
static const char *const pp_names[] = {"ring", "unbounded", "lifo", "priority", "mutex+condvar"};

static int cmp_u64(const void *a, const void *b, void *arg) {
  (void)arg;
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The baseline: a one-item mailbox under a mutex and condition variable. */
typedef struct box {
  pthread_mutex_t m;
  pthread_cond_t c;
  int full;
  uint64_t v;
} box_t;

static void box_put(box_t *b, uint64_t v) {
  pthread_mutex_lock(&b->m);
  b->v = v;
  b->full = 1;
  pthread_cond_signal(&b->c);
  pthread_mutex_unlock(&b->m);
}

static uint64_t box_get(box_t *b) {
  pthread_mutex_lock(&b->m);
  while (!b->full) pthread_cond_wait(&b->c, &b->m);
  b->full = 0;
  uint64_t v = b->v;
  pthread_mutex_unlock(&b->m);
  return v;
}

typedef struct pingpong {
  int shape;
  long rounds;
  mh_queue_t *there, *back;
  box_t bthere, bback;
} pingpong_t;

static void pp_send(pingpong_t *p, int back, uint64_t v) {
  if (p->shape == PP_CONDVAR) {
    box_put(back ? &p->bback : &p->bthere, v);
  } else if (mh_queue_put(back ? p->back : p->there, &v, MH_FOREVER)) {
    abort();
  }
}

static uint64_t pp_recv(pingpong_t *p, int back) {
  if (p->shape == PP_CONDVAR) return box_get(back ? &p->bback : &p->bthere);
  uint64_t v;
  if (mh_queue_get(back ? p->back : p->there, &v, MH_FOREVER)) abort();
  return v;
}

static void *pp_pong(void *arg) {
  pingpong_t *p = arg;
  for (long i = 0; i < p->rounds; i++) pp_send(p, 1, pp_recv(p, 0) + 1);
  return NULL;
}

static mh_queue_t *pp_queue(int shape) {
  mh_queue_t *pq = NULL;
  int rc = shape == PP_RING        ? mh_queue_new(&pq, 8, 2)
           : shape == PP_UNBOUNDED ? mh_queue_new(&pq, 8, 0)
           : shape == PP_LIFO      ? mh_queue_new_lifo(&pq, 8, 2)
                                   : mh_queue_new_priority(&pq, 8, 2, cmp_u64, NULL);
  if (rc) {
    fprintf(stderr, "queue_bench: %s\n", mh_strerror(rc));
    exit(1);
  }
  return pq;
}

/* Microseconds per hand-off (one put + one get) for one shape. */
static double pp_run(int shape, long rounds) {
  pingpong_t p;
  memset(&p, 0, sizeof p);
  p.shape = shape;
  p.rounds = rounds;
  if (shape == PP_CONDVAR) {
    pthread_mutex_init(&p.bthere.m, NULL);
    pthread_cond_init(&p.bthere.c, NULL);
    pthread_mutex_init(&p.bback.m, NULL);
    pthread_cond_init(&p.bback.c, NULL);
  } else {
    p.there = pp_queue(shape);
    p.back = pp_queue(shape);
  }
  pthread_t t;
  pthread_create(&t, NULL, pp_pong, &p);
  double t0 = bench_now();
  for (long i = 0; i < rounds; i++) {
    pp_send(&p, 0, (uint64_t)i);
    if (pp_recv(&p, 1) != (uint64_t)i + 1) {
      fprintf(stderr, "queue_bench: ping-pong lost an item\n");
      exit(1);
    }
  }
  double secs = bench_now() - t0;
  pthread_join(t, NULL);
  if (shape == PP_CONDVAR) {
    pthread_mutex_destroy(&p.bthere.m);
    pthread_cond_destroy(&p.bthere.c);
    pthread_mutex_destroy(&p.bback.m);
    pthread_cond_destroy(&p.bback.c);
  } else {
    mh_queue_free(p.there);
    mh_queue_free(p.back);
  }
  return secs / (double)(2 * rounds) * 1e6;
}

static pid_t hogs[64];
static int n_hogs;

/* Start `n` busy processes that die with this one. */
static void hogs_start(int n) {
  pid_t parent = getpid();
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("queue_bench: fork");
      exit(1);
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      volatile unsigned long x = 0;
      for (;;) x++;
    }
    hogs[n_hogs++] = pid;
  }
}

static void hogs_stop(void) {
  for (int i = 0; i < n_hogs; i++) kill(hogs[i], SIGKILL);
  for (int i = 0; i < n_hogs; i++) waitpid(hogs[i], NULL, 0);
  n_hogs = 0;
}

static int ping_pong_main(long rounds, int load) {
  hogs_start(load);
  for (int shape = 0; shape < PP_SHAPES; shape++)
    printf("%s %.2f us/hand-off\n", pp_names[shape], pp_run(shape, rounds));
  hogs_stop();
  return 0;
}

int main(int argc, char **argv) {
  long maxsize = 1024;
  int ping = 0, load = 0;
  n_items = 10000000;
  int opt;
  while ((opt = getopt(argc, argv, "p:c:n:m:b:Pl:")) != -1) {
    switch (opt) {
    case 'P': ping = 1; break;
    case 'l': load = atoi(optarg); break;
    case 'p': producers = atoi(optarg); break;
    case 'c': consumers = atoi(optarg); break;
    case 'n': n_items = (long)atof(optarg); break;
    case 'm': maxsize = atol(optarg); break;
    case 'b': batch = (size_t)atol(optarg); break;
    default:
      fprintf(stderr, "usage: %s [-p P] [-c C] [-n N] [-m MAXSIZE] [-b BATCH] | -P [-n ROUNDS] [-l LOAD]\n", argv[0]);
      return 2;
    }
  }
  if (ping) {
    if (load < 0 || load > 64 || n_items < 1) {
      fprintf(stderr, "queue_bench: bad arguments\n");
      return 2;
    }
    return ping_pong_main(n_items, load);
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
