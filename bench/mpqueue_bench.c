/* SPDX-License-Identifier: MIT */
/* mpqueue_bench.c - throughput of mh_mpqueue between two processes (1 -> 1).
 *
 * usage: mpqueue_bench [-s SIZE] [-n N] [-m MAXSIZE] [-B MAXBYTES]
 *
 * A producer process puts N messages of SIZE bytes through a queue of
 * MAXSIZE messages (default 1024) and MAXBYTES bytes (default 64 MiB) to a
 * consumer process, both started with mh_process_start.  The clock runs from
 * the moment both are ready until the consumer has got the last message.
 * Prints "<messages/s> msgs/s <bytes/s> B/s" and exits 1 when the consumer
 * did not get N messages of SIZE bytes with the producer's first and last
 * bytes (a cheap check; the tests check every byte).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manyhands.h"
#include "bench.h"

typedef struct shared_state {
  atomic_int ready, go;
  _Atomic long got;
  atomic_int bad;
  double t_end;
} shared_state_t;

static mh_mpqueue_t *q;
static shared_state_t *st;
static size_t size = 64;
static long n = 1000000;

static void wait_go(void) {
  atomic_fetch_add(&st->ready, 1);
  while (!atomic_load(&st->go)) {
  }
}

static int producer(void *arg) {
  (void)arg;
  unsigned char *buf = malloc(size ? size : 1);
  memset(buf, 0x5a, size);
  wait_go();
  for (long i = 0; i < n; i++) {
    if (size) buf[0] = (unsigned char)i;
    if (mh_mpqueue_put(q, buf, size, MH_FOREVER)) return 1;
  }
  return 0;
}

static int consumer(void *arg) {
  (void)arg;
  unsigned char *buf = malloc(size ? size : 1);
  size_t len;
  wait_go();
  for (long i = 0; i < n; i++) {
    if (mh_mpqueue_get(q, buf, size, &len, MH_FOREVER) || len != size ||
        (size && (buf[0] != (unsigned char)i || buf[size - 1] != 0x5a)))
      atomic_store(&st->bad, 1);
  }
  st->t_end = bench_now();
  atomic_store(&st->got, n);
  return 0;
}

int main(int argc, char **argv) {
  size_t maxsize = 1024, maxbytes = (size_t)64 << 20;
  int opt;
  while ((opt = getopt(argc, argv, "s:n:m:B:")) != -1) {
    switch (opt) {
    case 's': size = (size_t)atof(optarg); break;
    case 'n': n = (long)atof(optarg); break;
    case 'm': maxsize = (size_t)atof(optarg); break;
    case 'B': maxbytes = (size_t)atof(optarg); break;
    default:
      fprintf(stderr, "usage: mpqueue_bench [-s SIZE] [-n N] [-m MAXSIZE] [-B MAXBYTES]\n");
      return 2;
    }
  }
  if (n < 1 || maxbytes < size) {
    fprintf(stderr, "manyhands: bad -n or -B\n");
    return 2;
  }
  void *mem;
  if (mh_shared_mem_new(&mem, sizeof *st) || mh_mpqueue_new(&q, maxsize, maxbytes)) return 1;
  st = mem;
  mh_process_t *p, *c;
  if (mh_process_start(&c, consumer, NULL, NULL) || mh_process_start(&p, producer, NULL, NULL))
    return 1;
  while (atomic_load(&st->ready) < 2) usleep(100);
  double t0 = bench_now();
  atomic_store(&st->go, 1);
  mh_process_join(p, MH_FOREVER);
  mh_process_join(c, MH_FOREVER);
  int pc = -1, cc = -1;
  mh_process_exitcode(p, &pc);
  mh_process_exitcode(c, &cc);
  if (pc || cc || atomic_load(&st->bad) || atomic_load(&st->got) != n) {
    fprintf(stderr, "mpqueue_bench: messages lost or wrong\n");
    return 1;
  }
  double secs = st->t_end - t0;
  printf("%.0f msgs/s %.0f B/s\n", (double)n / secs, (double)n * (double)size / secs);
  mh_process_free(p);
  mh_process_free(c);
  mh_mpqueue_free(q);
  mh_shared_mem_free(mem);
  return 0;
}
