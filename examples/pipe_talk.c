/* SPDX-License-Identifier: MIT */
/* pipe_talk.c - a parent and a child talking over a pipe: the parent asks
 * for the squares of 1..N, the child answers each question, then both say
 * goodbye and the child's end of file tells the parent it is gone.
 *
 * Python                                   C
 *   parent, child = multiprocessing.Pipe()   mh_pipe(&parent, &child, 1)
 *   p = Process(target=f, args=(child,))     mh_process_start(&p, f, &ends, NULL)
 *   child.close()   # in the parent          mh_conn_close(child)
 *   parent.send_bytes(b"...")                mh_conn_send(parent, buf, len)
 *   parent.recv_bytes()                      mh_conn_recv(parent, buf, cap, &len)
 *   parent.poll(timeout)                     mh_conn_poll(parent, timeout)
 *   except EOFError:                         rc == MH_EEOF
 *
 * usage: pipe_talk [N]   (N questions, default 5)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manyhands.h"

typedef struct ends {
  mh_conn_t *parent, *child;
} ends_t;

/* The child: answer "square K" with "K*K = ..." until "bye". */
static int child_main(void *arg) {
  ends_t *e = arg;
  /* Our copy of the parent's end must go, or the parent's end would never
   * see end of file from us (the same rule as with Python's Pipe). */
  mh_conn_close(e->parent);
  char buf[128];
  for (;;) {
    size_t len;
    int rc = mh_conn_recv(e->child, buf, sizeof buf - 1, &len);
    if (rc) {
      fprintf(stderr, "pipe_talk: child: %s\n", mh_strerror(rc));
      return 1;
    }
    buf[len] = 0;
    if (strcmp(buf, "bye") == 0) break;
    long k = strtol(buf + strlen("square "), NULL, 10);
    char answer[128];
    int n = snprintf(answer, sizeof answer, "%ld*%ld = %ld", k, k, k * k);
    if (mh_conn_send(e->child, answer, (size_t)n)) return 1;
  }
  mh_conn_send(e->child, "bye", 3);
  mh_conn_close(e->child);
  return 0;
}

int main(int argc, char **argv) {
  long n = 5;
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs("usage: pipe_talk [N]\nAsk a child process for N squares over a pipe"
          " (N > 0, default 5).\n", stdout);
    return 0;
  }
  if (argc > 2) {
    fputs("pipe_talk: too many arguments (try --help)\n", stderr);
    return 2;
  }
  if (argc == 2) {
    char *end;
    errno = 0;
    n = strtol(argv[1], &end, 10);
    if (argv[1][0] == '-' && (argv[1][1] < '0' || argv[1][1] > '9')) {
      fprintf(stderr, "pipe_talk: unknown option '%s' (try --help)\n", argv[1]);
      return 2;
    }
    if (errno || end == argv[1] || *end || n <= 0) {
      fprintf(stderr, "pipe_talk: N must be a whole number above 0, not '%s'\n", argv[1]);
      return 2;
    }
  }
  ends_t e;
  int rc = mh_pipe(&e.parent, &e.child, 1);
  if (rc) {
    fprintf(stderr, "pipe_talk: cannot make a pipe: %s\n", mh_strerror(rc));
    return 1;
  }
  mh_process_t *p;
  rc = mh_process_start(&p, child_main, &e, NULL);
  if (rc) {
    fprintf(stderr, "pipe_talk: cannot start the child: %s\n", mh_strerror(rc));
    return 1;
  }
  mh_conn_close(e.child);
  char buf[128];
  size_t len;
  for (long k = 1; k <= n && !rc; k++) {
    int m = snprintf(buf, sizeof buf, "square %ld", k);
    printf("parent: %s?\n", buf);
    rc = mh_conn_send(e.parent, buf, (size_t)m);
    if (!rc) rc = mh_conn_recv(e.parent, buf, sizeof buf - 1, &len);
    if (!rc) {
      buf[len] = 0;
      printf("child:  %s\n", buf);
    }
  }
  if (!rc) rc = mh_conn_send(e.parent, "bye", 3);
  if (!rc) rc = mh_conn_recv(e.parent, buf, sizeof buf - 1, &len);
  if (!rc) printf("child:  bye\n");
  /* The child has closed its end and exits: the next receive says so. */
  int eof = rc ? rc : mh_conn_recv(e.parent, buf, sizeof buf, &len);
  printf("parent: the child is gone (%s)\n", mh_err_name(eof));
  mh_process_join(p, MH_FOREVER);
  int code = -1;
  mh_process_exitcode(p, &code);
  mh_process_free(p);
  mh_conn_close(e.parent);
  printf("child exit code: %d\n", code);
  if (rc) fprintf(stderr, "pipe_talk: %s\n", mh_strerror(rc));
  return rc || eof != MH_EEOF || code != 0;
}
