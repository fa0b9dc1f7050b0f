/* SPDX-License-Identifier: MIT */
/* connection_bench.c - pipe round trip: the parent sends a message of SIZE
 * bytes, a child sends it back, N times.  usage: connection_bench [N] [SIZE]
 * Prints "mh <N> <seconds> <us-per-round-trip>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manyhands.h"

typedef struct ends {
  mh_conn_t *parent, *child;
  size_t size;
} ends_t;

static int echo(void *arg) {
  ends_t *e = arg;
  mh_conn_close(e->parent);
  char *buf = malloc(e->size + 1);
  size_t len;
  while (buf && mh_conn_recv(e->child, buf, e->size + 1, &len) == 0)
    if (mh_conn_send(e->child, buf, len)) break;
  free(buf);
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
  size_t size = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 64;
  if (n <= 0) {
    fputs("usage: connection_bench [N] [SIZE]\n", stderr);
    return 2;
  }
  ends_t e = {NULL, NULL, size};
  if (mh_pipe(&e.parent, &e.child, 1)) return 1;
  mh_process_t *p;
  if (mh_process_start(&p, echo, &e, NULL)) return 1;
  mh_conn_close(e.child);
  char *buf = calloc(1, size + 1);
  size_t len;
  /* A few round trips first, so that the child is running and warm. */
  for (int i = 0; i < 100; i++)
    if (mh_conn_send(e.parent, buf, size) || mh_conn_recv(e.parent, buf, size + 1, &len))
      return 1;
  double t0 = now();
  for (long i = 0; i < n; i++)
    if (mh_conn_send(e.parent, buf, size) || mh_conn_recv(e.parent, buf, size + 1, &len))
      return 1;
  double dt = now() - t0;
  mh_conn_close(e.parent);
  mh_process_join(p, MH_FOREVER);
  mh_process_free(p);
  free(buf);
  printf("mh %ld %.6f %.3f\n", n, dt, dt / (double)n * 1e6);
  return 0;
}
