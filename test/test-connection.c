/* SPDX-License-Identifier: MIT */
/* test-connection.c - pipes and connections: framing of any size, one-way
 * ends, a buffer too small, end of file on close and on SIGKILL of the
 * peer at random moments, 100 MB messages, wait() on 64 pipes and process
 * sentinels, many threads on one end, allocation failure, bad input. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "test.h"

/* The bytes of message `seq` of `len` bytes: a pattern a torn or shifted
 * message cannot match. */
static unsigned char pat(uint64_t seq, size_t i) {
  return (unsigned char)((seq * 131u + i * 7u + (i >> 8)) & 0xff);
}

static void fill(unsigned char *p, size_t len, uint64_t seq) {
  for (size_t i = 0; i < len; i++) p[i] = pat(seq, i);
}

static int check(const unsigned char *p, size_t len, uint64_t seq) {
  for (size_t i = 0; i < len; i++)
    if (p[i] != pat(seq, i)) return 0;
  return 1;
}

/* A message that says which it is: 8 bytes of seq, then the pattern. */
static size_t make_msg(unsigned char *p, size_t len, uint64_t seq) {
  if (len < 8) len = 8;
  memcpy(p, &seq, 8);
  fill(p + 8, len - 8, seq);
  return len;
}

static int check_msg(const unsigned char *p, size_t len, uint64_t *seq) {
  if (len < 8) return 0;
  memcpy(seq, p, 8);
  return check(p + 8, len - 8, *seq);
}

static void assert_no_children(void) {
  for (int i = 0; i < 200 && mht_count_children() > 0; i++) mht_sleep(0.01);
  ASSERT_EQ(mht_count_children(), 0);
}

/* ---- one process ------------------------------------------------------- */

typedef struct sender_arg {
  mh_conn_t *conn;
  const size_t *sizes;
  int n;
  int rc;
} sender_arg_t;

static void send_sizes(void *arg) {
  sender_arg_t *s = arg;
  unsigned char *buf = malloc(4u << 20);
  s->rc = buf ? 0 : -1;
  for (int i = 0; i < s->n && buf && !s->rc; i++) {
    fill(buf, s->sizes[i], (uint64_t)i);
    s->rc = mh_conn_send(s->conn, buf, s->sizes[i]);
  }
  free(buf);
}

TEST(sizes_keep_boundaries) {
  /* Every size around the header and the receive buffer's edges, both
   * ways, sent from a thread so that large ones do not fill the socket. */
  static const size_t sizes[] = {0,     1,     7,     8,         9,        100,     65527,
                                 65528, 65535, 65536, 65537,     200000,   0,       1,
                                 3,     1u << 20,  (4u << 20) - 1,   5,    131072,  0};
  int n = (int)(sizeof sizes / sizeof sizes[0]);
  for (int dir = 0; dir < 2; dir++) {
    mh_conn_t *a, *b;
    ASSERT_OK(mh_pipe(&a, &b, 1));
    mh_conn_t *tx = dir ? a : b, *rx = dir ? b : a;
    sender_arg_t s = {tx, sizes, n, 0};
    mh_thread_t *t;
    ASSERT_OK(mh_thread_start(&t, send_sizes, &s, NULL));
    unsigned char *buf = malloc(4u << 20);
    ASSERT(buf);
    for (int i = 0; i < n; i++) {
      size_t len = 12345;
      ASSERT_OK(mh_conn_recv(rx, buf, 4u << 20, &len));
      ASSERT_UEQ(len, sizes[i]);
      ASSERT(check(buf, len, (uint64_t)i));
    }
    ASSERT_OK(mh_thread_join(t, MH_FOREVER));
    mh_thread_free(t);
    ASSERT_OK(s.rc);
    ASSERT_EQ(mh_conn_poll(rx, 0), 0);
    free(buf);
    mh_conn_close(a);
    mh_conn_close(b);
  }
}

TEST(one_way) {
  mh_conn_t *r, *w;
  ASSERT_OK(mh_pipe(&r, &w, 0));
  ASSERT_EQ(mh_conn_readable(r), 1);
  ASSERT_EQ(mh_conn_writable(r), 0);
  ASSERT_EQ(mh_conn_readable(w), 0);
  ASSERT_EQ(mh_conn_writable(w), 1);
  char c = 'x';
  size_t len;
  ASSERT_ERR(mh_conn_send(r, &c, 1), MH_EBADF);
  ASSERT_ERR(mh_conn_recv(w, &c, 1, &len), MH_EBADF);
  ASSERT_ERR(mh_conn_poll(w, 0), MH_EBADF);
  ASSERT_OK(mh_conn_send(w, "hello", 5));
  ASSERT_EQ(mh_conn_poll(r, 0), 1);
  char buf[8];
  ASSERT_OK(mh_conn_recv(r, buf, sizeof buf, &len));
  ASSERT_UEQ(len, 5);
  ASSERT(memcmp(buf, "hello", 5) == 0);
  mh_conn_close(w);
  ASSERT_EQ(mh_conn_poll(r, 1), 1);
  ASSERT_ERR(mh_conn_recv(r, buf, sizeof buf, &len), MH_EEOF);
  ASSERT_ERR(mh_conn_recv(r, buf, sizeof buf, &len), MH_EEOF);
  mh_conn_close(r);
}

TEST(buffer_too_small_keeps_message) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  unsigned char msg[300], buf[300];
  fill(msg, sizeof msg, 9);
  ASSERT_OK(mh_conn_send(b, msg, sizeof msg));
  ASSERT_OK(mh_conn_send(b, msg, 3));
  size_t len = 0;
  ASSERT_ERR(mh_conn_recv(a, buf, 10, &len), MH_EOVERFLOW);
  ASSERT_UEQ(len, 300);
  len = 0;
  ASSERT_ERR(mh_conn_recv(a, NULL, 0, &len), MH_EOVERFLOW); /* a size query */
  ASSERT_UEQ(len, 300);
  ASSERT_ERR(mh_conn_recv(a, buf, 299, NULL), MH_EOVERFLOW);
  ASSERT_OK(mh_conn_recv(a, buf, 300, &len));
  ASSERT_UEQ(len, 300);
  ASSERT(check(buf, 300, 9));
  void *m;
  ASSERT_OK(mh_conn_recv_alloc(a, &m, &len));
  ASSERT_UEQ(len, 3);
  ASSERT(check(m, 3, 9));
  mh_conn_msg_free(m);
  /* An empty message: into no buffer at all, and allocated. */
  ASSERT_OK(mh_conn_send(b, NULL, 0));
  ASSERT_OK(mh_conn_send(b, NULL, 0));
  ASSERT_OK(mh_conn_recv(a, NULL, 0, &len));
  ASSERT_UEQ(len, 0);
  ASSERT_OK(mh_conn_recv_alloc(a, &m, &len));
  ASSERT(m != NULL);
  ASSERT_UEQ(len, 0);
  mh_conn_msg_free(m);
  mh_conn_close(a);
  mh_conn_close(b);
}

TEST(close_gives_eof_and_epipe) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  ASSERT_OK(mh_conn_send(b, "one", 3));
  ASSERT_OK(mh_conn_send(b, "two!", 4));
  mh_conn_close(b);
  /* Messages sent before the close still come, then end of file. */
  char buf[8];
  size_t len;
  ASSERT_OK(mh_conn_recv(a, buf, sizeof buf, &len));
  ASSERT_UEQ(len, 3);
  ASSERT_OK(mh_conn_recv(a, buf, sizeof buf, &len));
  ASSERT_UEQ(len, 4);
  ASSERT_EQ(mh_conn_poll(a, MH_FOREVER), 1);
  ASSERT_ERR(mh_conn_recv(a, buf, sizeof buf, &len), MH_EEOF);
  void *m;
  ASSERT_ERR(mh_conn_recv_alloc(a, &m, &len), MH_EEOF);
  ASSERT(m == NULL);
  /* SIGPIPE keeps its default (killing) action here: only MSG_NOSIGNAL
   * lets this test live to see the code. */
  static char big[1 << 20];
  ASSERT_ERR(mh_conn_send(a, "x", 1), MH_EPIPE);
  ASSERT_ERR(mh_conn_send(a, big, sizeof big), MH_EPIPE);
  mh_conn_close(a);
}

TEST(poll_times_out) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  ASSERT_EQ(mh_conn_poll(a, 0), 0);
  double t0 = mht_now();
  ASSERT_EQ(mh_conn_poll(a, 0.05), 0);
  ASSERT_GE((mht_now() - t0) * 1000, 49); /* never early; no upper bound */
  ASSERT_OK(mh_conn_send(b, "x", 1));
  ASSERT_EQ(mh_conn_poll(a, MH_FOREVER), 1);
  ASSERT_EQ(mh_conn_poll(b, 0), 0);
  ASSERT_ERR(mh_conn_poll(a, -2), MH_EINVAL);
  mh_conn_close(a);
  mh_conn_close(b);
}

TEST(bad_input) {
  mh_conn_t *a = (mh_conn_t *)1, *b = (mh_conn_t *)1;
  ASSERT_ERR(mh_pipe(NULL, &b, 1), MH_EINVAL);
  ASSERT(b == NULL);
  ASSERT_ERR(mh_pipe(&a, NULL, 1), MH_EINVAL);
  ASSERT(a == NULL);
  size_t len;
  void *m = (void *)1;
  char c;
  ASSERT_ERR(mh_conn_send(NULL, "x", 1), MH_EINVAL);
  ASSERT_ERR(mh_conn_recv(NULL, &c, 1, &len), MH_EINVAL);
  ASSERT_ERR(mh_conn_recv_alloc(NULL, &m, &len), MH_EINVAL);
  ASSERT(m == NULL);
  ASSERT_ERR(mh_conn_poll(NULL, 0), MH_EINVAL);
  ASSERT_ERR(mh_conn_fileno(NULL), MH_EINVAL);
  ASSERT_ERR(mh_conn_readable(NULL), MH_EINVAL);
  ASSERT_ERR(mh_conn_writable(NULL), MH_EINVAL);
  mh_conn_close(NULL);
  mh_conn_msg_free(NULL);
  ASSERT_OK(mh_pipe(&a, &b, 1));
  ASSERT_ERR(mh_conn_send(a, NULL, 1), MH_EINVAL);
  ASSERT_ERR(mh_conn_recv(a, NULL, 1, &len), MH_EINVAL);
  ASSERT_ERR(mh_conn_recv_alloc(a, NULL, &len), MH_EINVAL);
  ASSERT_ERR(mh_conn_recv_alloc(a, &m, NULL), MH_EINVAL);
  ASSERT_ERR(mh_conn_poll(a, 0.0 / 0.0), MH_EINVAL);
  ASSERT_GE(mh_conn_fileno(a), 0);
  mh_waitable_t w[2];
  memset(w, 0, sizeof w);
  ASSERT_ERR(mh_wait(NULL, 1, 0), MH_EINVAL);
  ASSERT_EQ(mh_wait(NULL, 0, 0), 0);
  ASSERT_ERR(mh_wait(w, 1, 0), MH_EINVAL); /* kind 0 */
  w[0].kind = MH_WAIT_CONN;
  ASSERT_ERR(mh_wait(w, 1, 0), MH_EINVAL); /* NULL conn */
  w[0].conn = a;
  w[1].kind = MH_WAIT_FD;
  w[1].fd = -1;
  ASSERT_ERR(mh_wait(w, 2, 0), MH_EINVAL);
  w[1].kind = MH_WAIT_PROCESS;
  ASSERT_ERR(mh_wait(w, 2, 0), MH_EINVAL); /* NULL process */
  ASSERT_ERR(mh_wait(w, 1, -5), MH_EINVAL);
  ASSERT_EQ(mh_wait(w, 1, 0), 0);
  mh_conn_close(a);
  mh_conn_close(b);
  ASSERT_ERR(mh_process_sentinel(NULL), MH_EINVAL);
}

TEST(recv_alloc_out_of_memory_keeps_message) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  unsigned char msg[5000];
  fill(msg, sizeof msg, 3);
  ASSERT_OK(mh_conn_send(b, msg, 1));
  size_t len;
  ASSERT_OK(mh_conn_recv(a, msg, 1, &len)); /* the receive buffer exists now */
  ASSERT_OK(mh_conn_send(b, msg, sizeof msg));
  void *m = NULL;
  mht_alloc_fail_after(0);
  int rc = mh_conn_recv_alloc(a, &m, &len);
  mht_alloc_reset();
  ASSERT_ERR(rc, MH_ENOMEM);
  ASSERT(m == NULL);
  ASSERT_OK(mh_conn_recv_alloc(a, &m, &len));
  ASSERT_UEQ(len, sizeof msg);
  ASSERT(check(m, len, 3));
  mh_conn_msg_free(m);
  /* And a pipe that cannot be made leaves nothing behind. */
  for (long n = 0; n < 3; n++) {
    mht_alloc_fail_after(n);
    mh_conn_t *x = NULL, *y = NULL;
    rc = mh_pipe(&x, &y, 1);
    long live = mht_alloc_live();
    mht_alloc_reset();
    if (rc == 0) {
      mh_conn_close(x);
      mh_conn_close(y);
    } else {
      ASSERT_ERR(rc, MH_ENOMEM);
      ASSERT_EQ(live, 0);
    }
  }
  mh_conn_close(a);
  mh_conn_close(b);
}

/* Four threads send on one end; every frame arrives whole. */
typedef struct mt_arg {
  mh_conn_t *conn;
  int id, n;
  int rc;
} mt_arg_t;

static void mt_send(void *arg) {
  mt_arg_t *m = arg;
  unsigned char *buf = malloc(70000);
  for (int i = 0; i < m->n && !m->rc; i++) {
    uint64_t seq = ((uint64_t)m->id << 32) | (uint64_t)i;
    size_t len = make_msg(buf, (size_t)(mht_rand() % 70000), seq);
    m->rc = mh_conn_send(m->conn, buf, len);
  }
  free(buf);
}

TEST(threads_share_an_end) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  enum { T = 4 };
  int n = (int)mht_scaled(2000);
  mt_arg_t args[T];
  mh_thread_t *th[T];
  for (int i = 0; i < T; i++) {
    args[i] = (mt_arg_t){b, i, n, 0};
    ASSERT_OK(mh_thread_start(&th[i], mt_send, &args[i], NULL));
  }
  int next[T] = {0};
  for (int k = 0; k < T * n; k++) {
    void *m;
    size_t len;
    ASSERT_OK(mh_conn_recv_alloc(a, &m, &len));
    uint64_t seq;
    ASSERT(check_msg(m, len, &seq));
    int id = (int)(seq >> 32);
    ASSERT(id >= 0 && id < T);
    ASSERT_EQ((int)(seq & 0xffffffffu), next[id]); /* in order per sender */
    next[id]++;
    mh_conn_msg_free(m);
  }
  for (int i = 0; i < T; i++) {
    ASSERT_OK(mh_thread_join(th[i], MH_FOREVER));
    mh_thread_free(th[i]);
    ASSERT_OK(args[i].rc);
  }
  mh_conn_close(a);
  mh_conn_close(b);
}

/* ---- across processes ------------------------------------------------- */

typedef struct child_arg {
  mh_conn_t *mine, *theirs;
  size_t size;
} child_arg_t;

/* Sends numbered messages of random sizes until killed. */
static int child_sends_forever(void *arg) {
  child_arg_t *c = arg;
  mh_conn_close(c->theirs);
  unsigned char *buf = malloc(200000);
  for (uint64_t seq = 0;; seq++) {
    size_t len = make_msg(buf, (size_t)(mht_rand() % 200000), seq);
    if (mh_conn_send(c->mine, buf, len)) return 3;
  }
}

/* Receives until killed. */
static int child_recvs_forever(void *arg) {
  child_arg_t *c = arg;
  mh_conn_close(c->theirs);
  for (;;) {
    void *m;
    size_t len;
    if (mh_conn_recv_alloc(c->mine, &m, &len)) return 3;
    mh_conn_msg_free(m);
  }
}

TEST(peer_killed_at_random_gives_eof) {
  /* The sender is SIGKILLed at a random moment, often half-way through a
   * frame: the receiver gets every whole message in order, then MH_EEOF -
   * never a torn message, never a hang.  And the other way round: a sender
   * whose receiver is killed gets MH_EPIPE. */
  long rounds = mht_scaled(600);
  for (long r = 0; r < rounds; r++) {
    mh_conn_t *a, *b;
    ASSERT_OK(mh_pipe(&a, &b, 1));
    int child_sends = (r % 2) == 0;
    child_arg_t arg = {b, a, 0};
    mh_process_t *p;
    ASSERT_OK(mh_process_start(&p, child_sends ? child_sends_forever : child_recvs_forever,
                               &arg, NULL));
    mh_conn_close(b);
    double kill_at = mht_now() + (double)(mht_rand() % 3000) * 1e-6;
    int killed = 0;
    uint64_t expect = 0;
    unsigned char *buf = malloc(200000);
    for (;;) {
      if (!killed && mht_now() >= kill_at) {
        ASSERT_OK(mh_process_kill(p));
        killed = 1;
      }
      int rc;
      if (child_sends) {
        /* Never a hang: the poll must see data or end of file. */
        ASSERT_EQ(mh_conn_poll(a, killed ? 30 : 0.0005) >= 0, 1);
        if (!killed && mh_conn_poll(a, 0) == 0) continue;
        size_t len;
        rc = mh_conn_recv(a, buf, 200000, &len);
        if (rc == 0) {
          uint64_t seq;
          ASSERT(check_msg(buf, len, &seq));
          ASSERT_UEQ(seq, expect);
          expect++;
          continue;
        }
        ASSERT_ERR(rc, MH_EEOF);
        break;
      }
      size_t len = make_msg(buf, (size_t)(mht_rand() % 200000), expect++);
      rc = mh_conn_send(a, buf, len);
      if (rc == 0) continue;
      ASSERT_ERR(rc, MH_EPIPE);
      break;
    }
    ASSERT(killed || !child_sends);
    if (!killed) ASSERT_OK(mh_process_kill(p));
    free(buf);
    ASSERT_OK(mh_process_join(p, 30));
    int code;
    ASSERT_OK(mh_process_exitcode(p, &code));
    ASSERT_EQ(code, -SIGKILL);
    mh_process_free(p);
    mh_conn_close(a);
  }
  assert_no_children();
}

#define BIG ((size_t)100 << 20)

static int child_big_echo(void *arg) {
  child_arg_t *c = arg;
  mh_conn_close(c->theirs);
  void *m;
  size_t len;
  if (mh_conn_recv_alloc(c->mine, &m, &len)) return 3;
  if (len != c->size || !check(m, len, 77)) return 4;
  /* Send it back, changed, so that the parent sees it was read. */
  fill(m, len, 78);
  if (mh_conn_send(c->mine, m, len)) return 5;
  mh_conn_msg_free(m);
  return 0;
}

TEST(hundred_megabytes) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 1));
  child_arg_t arg = {b, a, BIG};
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, child_big_echo, &arg, NULL));
  mh_conn_close(b);
  unsigned char *buf = malloc(BIG);
  ASSERT(buf);
  fill(buf, BIG, 77);
  ASSERT_OK(mh_conn_send(a, buf, BIG));
  memset(buf, 0, BIG);
  size_t len = 0;
  ASSERT_ERR(mh_conn_recv(a, buf, BIG - 1, &len), MH_EOVERFLOW);
  ASSERT_UEQ(len, BIG);
  ASSERT_OK(mh_conn_recv(a, buf, BIG, &len));
  ASSERT_UEQ(len, BIG);
  ASSERT(check(buf, BIG, 78));
  free(buf);
  ASSERT_OK(mh_process_join(p, MH_FOREVER));
  int code;
  ASSERT_OK(mh_process_exitcode(p, &code));
  ASSERT_EQ(code, 0);
  mh_process_free(p);
  ASSERT_ERR(mh_conn_recv(a, NULL, 0, &len), MH_EEOF);
  mh_conn_close(a);
}

/* ---- wait on many --------------------------------------------------------- */

enum { NPIPES = 64, NPROCS = 8 };

typedef struct waiter_arg {
  mh_conn_t **ends; /* the children's ends of every pipe */
  mh_conn_t **ours; /* the parent's ends */
  int first, count; /* the pipes this child answers on */
} waiter_arg_t;

static int child_answers(void *arg) {
  waiter_arg_t *w = arg;
  for (int i = 0; i < NPIPES; i++) mh_conn_close(w->ours[i]);
  for (int i = 0; i < w->first; i++) mh_conn_close(w->ends[i]);
  for (int i = w->first + w->count; i < NPIPES; i++) mh_conn_close(w->ends[i]);
  for (int i = w->first; i < w->first + w->count; i++) {
    mht_jitter(3000);
    uint64_t v = (uint64_t)i * 1000003u;
    if (mh_conn_send(w->ends[i], &v, sizeof v)) return 3;
  }
  mht_jitter(3000);
  return 0;
}

TEST(wait_on_64_pipes_and_sentinels) {
  /* 8 children answer on 64 pipes at random moments and end at random
   * moments; one wait() over the 64 connections and the 8 sentinels sees
   * every message and every end, and a wait with nothing ready times out. */
  long rounds = mht_scaled(20);
  for (long r = 0; r < rounds; r++) {
    mh_conn_t *ours[NPIPES], *ends[NPIPES];
    for (int i = 0; i < NPIPES; i++) ASSERT_OK(mh_pipe(&ours[i], &ends[i], 1));
    mh_waitable_t w[NPIPES + NPROCS];
    memset(w, 0, sizeof w);
    mh_process_t *p[NPROCS];
    ASSERT_EQ(mh_wait(w, 0, 0.001), 0);
    for (int k = 0; k < NPROCS; k++) {
      waiter_arg_t arg = {ends, ours, k * (NPIPES / NPROCS), NPIPES / NPROCS};
      ASSERT_OK(mh_process_start(&p[k], child_answers, &arg, NULL));
      w[NPIPES + k].kind = (k % 2) ? MH_WAIT_PROCESS : MH_WAIT_FD;
      w[NPIPES + k].process = p[k];
      w[NPIPES + k].fd = mh_process_sentinel(p[k]);
      ASSERT_GE(w[NPIPES + k].fd, 0);
    }
    for (int i = 0; i < NPIPES; i++) {
      mh_conn_close(ends[i]);
      w[i].kind = MH_WAIT_CONN;
      w[i].conn = ours[i];
    }
    int got[NPIPES] = {0}, ended[NPROCS] = {0};
    int msgs = 0, ends_seen = 0, eofs = 0;
    while (msgs < NPIPES || ends_seen < NPROCS || eofs < NPIPES) {
      /* Only what is still to come is waited on. */
      mh_waitable_t live[NPIPES + NPROCS];
      int idx[NPIPES + NPROCS], m = 0;
      for (int i = 0; i < NPIPES + NPROCS; i++) {
        if (i < NPIPES && got[i] == 2) continue;
        if (i >= NPIPES && ended[i - NPIPES]) continue;
        live[m] = w[i];
        idx[m++] = i;
      }
      int n = mh_wait(live, (size_t)m, 30);
      ASSERT_GT(n, 0);
      int counted = 0;
      for (int j = 0; j < m; j++) {
        if (!live[j].ready) continue;
        counted++;
        int i = idx[j];
        if (i >= NPIPES) {
          ASSERT_EQ(mh_process_is_alive(p[i - NPIPES]), 0);
          ended[i - NPIPES] = 1;
          ends_seen++;
          continue;
        }
        uint64_t v;
        size_t len;
        int rc = mh_conn_recv(ours[i], &v, sizeof v, &len);
        if (rc == 0) {
          ASSERT_EQ(got[i], 0);
          ASSERT_UEQ(v, (uint64_t)i * 1000003u);
          got[i] = 1;
          msgs++;
        } else {
          ASSERT_ERR(rc, MH_EEOF);
          ASSERT_EQ(got[i], 1);
          got[i] = 2;
          eofs++;
        }
      }
      ASSERT_EQ(counted, n);
    }
    for (int k = 0; k < NPROCS; k++) {
      int code;
      ASSERT_OK(mh_process_join(p[k], MH_FOREVER));
      ASSERT_OK(mh_process_exitcode(p[k], &code));
      ASSERT_EQ(code, 0);
    }
    /* Everything is ready now: ended processes, end-of-file pipes. */
    ASSERT_EQ(mh_wait(w, NPIPES + NPROCS, 0), NPIPES + NPROCS);
    for (int k = 0; k < NPROCS; k++) mh_process_free(p[k]);
    /* Nothing ready: the wait times out with 0. */
    mh_conn_t *x, *y;
    ASSERT_OK(mh_pipe(&x, &y, 1));
    mh_waitable_t one = {MH_WAIT_CONN, x, NULL, 0, 1};
    ASSERT_EQ(mh_wait(&one, 1, 0.01), 0);
    ASSERT_EQ(one.ready, 0);
    mh_conn_close(x);
    mh_conn_close(y);
    for (int i = 0; i < NPIPES; i++) mh_conn_close(ours[i]);
  }
  assert_no_children();
}

/* ---- the example ------------------------------------------------------------- */

TEST(example_pipe_talk) {
  char path[4096], arg[] = "7";
  snprintf(path, sizeof path, "%s/examples/pipe_talk", MHT_BUILD_DIR);
  char *argv[] = {path, arg, NULL};
  mht_proc_result_t r;
  ASSERT_EQ(mht_run(argv, 60, &r), 0);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  /* Every question is answered, in order, and the end is seen. */
  const char *at = r.out;
  for (int k = 1; k <= 7; k++) {
    char line[64];
    snprintf(line, sizeof line, "parent: square %d?\nchild:  %d*%d = %d\n", k, k, k, k * k);
    at = strstr(at, line);
    ASSERT(at != NULL);
  }
  ASSERT(strstr(at, "child:  bye\nparent: the child is gone (EEOF)\nchild exit code: 0\n"));
  mht_proc_free(&r);
  char bad[] = "zero";
  char *argv2[] = {path, bad, NULL};
  ASSERT_EQ(mht_run(argv2, 60, &r), 0);
  ASSERT_EQ(r.status, 2);
  mht_proc_free(&r);
}
