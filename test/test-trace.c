/* SPDX-License-Identifier: MIT */
/* test-trace.c - the trace: valid JSON, every task once, one track per
 * worker, deaths, retries and cancellations marked, MH_TRACE. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manyhands.h"
#include "test.h"

/* ---- a small JSON checker (RFC 8259 grammar, no semantics) -------------- */

static const char *js_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  return p;
}
static const char *js_value(const char *p, int depth);
static const char *js_string(const char *p) {
  if (*p != '"') return NULL;
  for (p++; *p != '"'; p++) {
    if ((unsigned char)*p < 0x20) return NULL;
    if (*p == '\\') {
      p++;
      if (*p == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) return NULL;
        p += 4;
      } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
        return NULL;
      }
    }
  }
  return p + 1;
}
static const char *js_number(const char *p) {
  if (*p == '-') p++;
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
  else return NULL;
  if (*p == '.') {
    p++;
    if (!(*p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  return p;
}
static const char *js_value(const char *p, int depth) {
  if (depth > 64) return NULL;
  p = js_ws(p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    int obj = *p == '{';
    p = js_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
      if (obj) {
        p = js_string(js_ws(p));
        if (!p) return NULL;
        p = js_ws(p);
        if (*p++ != ':') return NULL;
      }
      p = js_value(p, depth + 1);
      if (!p) return NULL;
      p = js_ws(p);
      if (*p == ',') { p++; continue; }
      if (*p == close) return p + 1;
      return NULL;
    }
  }
  if (*p == '"') return js_string(p);
  if (!strncmp(p, "true", 4)) return p + 4;
  if (!strncmp(p, "false", 5)) return p + 5;
  if (!strncmp(p, "null", 4)) return p + 4;
  return js_number(p);
}
static int json_valid(const char *s) {
  const char *p = js_value(s, 0);
  return p && *js_ws(p) == '\0';
}

/* ---- reading the trace back --------------------------------------------- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  size_t r;
  while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n < 2) b = realloc(b, cap *= 2);
  }
  fclose(f);
  b[n] = 0;
  return b;
}

/* One event per line (the writer's layout, checked by the JSON parse). */
typedef struct {
  char name[32], ph[4], tname[64];
  int pid, tid, status;
  double ts, dur;
  long long index, items;
} ev_t;

static int str_field(const char *line, const char *key, char *out, size_t n) {
  const char *p = strstr(line, key);
  if (!p) return 0;
  p += strlen(key);
  size_t i = 0;
  while (*p && *p != '"' && i + 1 < n) out[i++] = *p++;
  out[i] = 0;
  return 1;
}
static int num_field(const char *line, const char *key, double *v) {
  const char *p = strstr(line, key);
  if (!p) return 0;
  *v = strtod(p + strlen(key), NULL);
  return 1;
}

static size_t parse_events(char *text, ev_t **out) {
  size_t n = 0, cap = 1024;
  ev_t *evs = calloc(cap, sizeof *evs);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (strncmp(line, "{\"name\"", 7)) continue;
    if (n == cap) evs = realloc(evs, (cap *= 2) * sizeof *evs);
    ev_t *e = &evs[n++];
    memset(e, 0, sizeof *e);
    double v;
    str_field(line, "{\"name\":\"", e->name, sizeof e->name);
    str_field(line, "\"ph\":\"", e->ph, sizeof e->ph);
    if (num_field(line, "\"pid\":", &v)) e->pid = (int)v;
    if (num_field(line, "\"tid\":", &v)) e->tid = (int)v;
    if (num_field(line, "\"ts\":", &v)) e->ts = v;
    e->dur = -1;
    if (num_field(line, "\"dur\":", &v)) e->dur = v;
    e->index = e->items = -1;
    if (num_field(line, "\"index\":", &v)) e->index = (long long)v;
    if (num_field(line, "\"items\":", &v)) e->items = (long long)v;
    if (num_field(line, "\"status\":", &v)) e->status = (int)v;
    if (e->ph[0] == 'M') str_field(line, "\"args\":{\"name\":\"", e->tname, sizeof e->tname);
  }
  *out = evs;
  return n;
}

typedef struct {
  char *text;
  ev_t *ev;
  size_t n;
} trace_t;

/* Read and check the file: valid JSON, every slice with dur >= 0. */
static void trace_load(const char *path, trace_t *t) {
  t->text = slurp(path);
  ASSERT(t->text != NULL);
  ASSERT(json_valid(t->text));
  ASSERT(strstr(t->text, "\"traceEvents\":[") != NULL);
  t->n = parse_events(t->text, &t->ev);
  for (size_t i = 0; i < t->n; i++)
    if (t->ev[i].ph[0] == 'X') ASSERT(t->ev[i].dur >= 0 && t->ev[i].ts >= 0);
}

static void trace_free(trace_t *t) {
  free(t->text);
  free(t->ev);
}

static size_t count(const trace_t *t, const char *name, const char *ph) {
  size_t c = 0;
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->ev[i].name, name) && !strcmp(t->ev[i].ph, ph)) c++;
  return c;
}

/* Tracks whose thread_name starts with `prefix`. */
static size_t tracks(const trace_t *t, const char *prefix) {
  size_t c = 0;
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->ev[i].name, "thread_name") &&
        !strncmp(t->ev[i].tname, prefix, strlen(prefix)))
      c++;
  return c;
}

/* Every slice named `name` has a distinct index in 0..n-1 and all n are
 * there; returns the sum of their items. */
static long long each_once(const trace_t *t, const char *name, size_t n) {
  unsigned char *seen = calloc(n, 1);
  long long items = 0;
  size_t got = 0;
  for (size_t i = 0; i < t->n; i++) {
    const ev_t *e = &t->ev[i];
    if (strcmp(e->name, name) || e->ph[0] != 'X') continue;
    ASSERT(e->index >= 0 && (size_t)e->index < n);
    ASSERT_EQ(seen[e->index], 0);
    seen[e->index] = 1;
    items += e->items;
    got++;
  }
  ASSERT_UEQ(got, n);
  free(seen);
  return items;
}

static void tmp_path(char *buf, size_t n, const char *what) {
  snprintf(buf, n, "/tmp/mh-trace-%d-%s.json", (int)getpid(), what);
}

/* ---- tasks -------------------------------------------------------------- */

/* Shared between processes: made before a pool is, so workers inherit it. */
typedef struct {
  _Atomic int running;
  _Atomic int killed;
  int want;
} shared_t;

static shared_t *shared_new(int want) {
  shared_t *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT(s != MAP_FAILED);
  memset(s, 0, sizeof *s);
  s->want = want;
  return s;
}

/* Wait until `want` of these run at once: each is on a worker of its own. */
static int meet(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)in, (void)isz, (void)out, (void)osz;
  shared_t *s = ctx;
  atomic_fetch_add(&s->running, 1);
  for (int i = 0; i < 20000 && atomic_load(&s->running) < s->want; i++)
    usleep(500);
  return atomic_load(&s->running) >= s->want ? 0 : MH_ETIMEDOUT;
}

static int jitter_task(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)isz, (void)out, (void)osz, (void)ctx;
  mht_jitter(200);
  return in && *(const int *)in < 0 ? -1 : 0;
}

/* Item 5 kills its worker the first time it runs. */
static int kill_once(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)isz, (void)out, (void)osz;
  shared_t *s = ctx;
  mht_jitter(100);
  if (*(const int *)in == 5 && !atomic_exchange(&s->killed, 1)) raise(SIGKILL);
  return 0;
}

static void run_tasks(mh_backend_t backend, int workers, int ntasks, int retries,
                      mh_task_fn fn, shared_t *s, int *ins) {
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = backend;
  o.workers = workers;
  o.retries = retries;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  mh_future_t **fs = calloc((size_t)ntasks + (size_t)workers, sizeof *fs);
  /* First one task per worker that waits for all the others: every worker
   * runs at least one task, so each has a track. */
  for (int i = 0; i < workers; i++)
    ASSERT_OK(mh_executor_submit(ex, meet, NULL, 0, NULL, 0, s, &fs[i]));
  for (int i = 0; i < workers; i++) ASSERT_OK(mh_future_result(fs[i], 30));
  for (int i = 0; i < ntasks; i++) {
    ins[i] = i;
    ASSERT_OK(mh_executor_submit(ex, fn, &ins[i], sizeof ins[i], NULL, 0, s,
                                 &fs[workers + i]));
  }
  for (int i = 0; i < ntasks + workers; i++) {
    mh_future_wait(fs[i], MH_FOREVER);
    mh_future_release(fs[i]);
  }
  free(fs);
  mh_executor_free(ex);
}

TEST(threads_tasks_once_and_tracks) {
  char path[128];
  tmp_path(path, sizeof path, "threads");
  ASSERT_OK(mh_trace_start(path));
  ASSERT_EQ(mh_trace_active(), 1);
  enum { W = 4, N = 500 };
  shared_t *s = shared_new(W);
  int ins[N];
  run_tasks(MH_BACKEND_THREADS, W, N, 0, jitter_task, s, ins);
  ASSERT_OK(mh_trace_stop());
  ASSERT_EQ(mh_trace_active(), 0);
  trace_t t;
  trace_load(path, &t);
  /* The meeting tasks and the others, each once (numbered in order of end). */
  ASSERT_EQ(each_once(&t, "task", N + W), N + W);
  ASSERT_UEQ(tracks(&t, "thread worker"), W);
  ASSERT_UEQ(count(&t, "process_name", "M"), 1);
  trace_free(&t);
  munmap(s, sizeof *s);
  unlink(path);
}

TEST(processes_tasks_and_map_chunks) {
  char path[128];
  tmp_path(path, sizeof path, "procs");
  ASSERT_OK(mh_trace_start(path));
  enum { W = 3, N = 200, M = 10000, CH = 100 };
  shared_t *s = shared_new(W);
  int ins[N];
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = MH_BACKEND_PROCESSES;
  o.workers = W;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  mh_future_t *fs[W + N];
  for (int i = 0; i < W; i++)
    ASSERT_OK(mh_executor_submit(ex, meet, NULL, 0, NULL, 0, s, &fs[i]));
  for (int i = 0; i < N; i++) {
    ins[i] = i;
    ASSERT_OK(mh_executor_submit(ex, jitter_task, &ins[i], sizeof ins[i], NULL, 0,
                                 NULL, &fs[W + i]));
  }
  for (int i = 0; i < W + N; i++) {
    ASSERT_OK(mh_future_result(fs[i], 60));
    mh_future_release(fs[i]);
  }
  int *in = malloc(M * sizeof *in);
  for (int i = 0; i < M; i++) in[i] = i;
  ASSERT_OK(mh_executor_map(ex, jitter_task, NULL, in, sizeof *in, NULL, 0, M, CH, NULL));
  (void)0;
  mh_executor_free(ex);
  ASSERT_OK(mh_trace_stop());
  trace_t t;
  trace_load(path, &t);
  ASSERT_EQ(each_once(&t, "task", N + W), N + W);
  ASSERT_EQ(each_once(&t, "chunk", M / CH), M);
  ASSERT_UEQ(tracks(&t, "process worker"), W);
  /* Each worker is a process of its own, named, plus the parent. */
  ASSERT_UEQ(count(&t, "process_name", "M"), W + 1);
  trace_free(&t);
  free(in);
  munmap(s, sizeof *s);
  unlink(path);
}

TEST(killed_worker_marked_and_retried) {
  char path[128];
  tmp_path(path, sizeof path, "kill");
  ASSERT_OK(mh_trace_start(path));
  enum { W = 2, N = 20 };
  shared_t *s = shared_new(W);
  int ins[N];
  run_tasks(MH_BACKEND_PROCESSES, W, N, 1, kill_once, s, ins);
  ASSERT_OK(mh_trace_stop());
  trace_t t;
  trace_load(path, &t);
  ASSERT_EQ(atomic_load(&s->killed), 1);
  /* The killed attempt left no slice; its retry did. */
  ASSERT_EQ(each_once(&t, "task", N + W), N + W);
  ASSERT_UEQ(count(&t, "worker died", "i"), 1);
  ASSERT_UEQ(count(&t, "retry", "i"), 1);
  int died = 0;
  for (size_t i = 0; i < t.n; i++)
    if (!strcmp(t.ev[i].name, "worker died")) {
      ASSERT_EQ(t.ev[i].status, -SIGKILL);
      died = t.ev[i].pid;
    }
  /* The mark sits on the dead worker's own track, which is named. */
  int named = 0;
  for (size_t i = 0; i < t.n; i++)
    if (!strcmp(t.ev[i].name, "thread_name") && t.ev[i].pid == died) named = 1;
  ASSERT(named);
  /* The replacement is a track of its own once it ran something (the
   * survivor may have taken every task left). */
  ASSERT(tracks(&t, "process worker") >= W && tracks(&t, "process worker") <= W + 1);
  trace_free(&t);
  munmap(s, sizeof *s);
  unlink(path);
}

static int block_task(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)in, (void)isz, (void)out, (void)osz;
  shared_t *s = ctx;
  atomic_store(&s->running, 1);
  while (!atomic_load(&s->killed)) usleep(200);
  return 0;
}

TEST(cancellation_marked) {
  char path[128];
  tmp_path(path, sizeof path, "cancel");
  ASSERT_OK(mh_trace_start(path));
  shared_t *s = shared_new(1);
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 1;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  mh_future_t *b, *fs[10];
  ASSERT_OK(mh_executor_submit(ex, block_task, NULL, 0, NULL, 0, s, &b));
  while (!atomic_load(&s->running)) usleep(200);
  for (int i = 0; i < 10; i++)
    ASSERT_OK(mh_executor_submit(ex, jitter_task, NULL, 0, NULL, 0, NULL, &fs[i]));
  ASSERT_OK(mh_executor_shutdown(ex, MH_SHUTDOWN_CANCEL_FUTURES));
  atomic_store(&s->killed, 1);
  for (int i = 0; i < 10; i++) {
    ASSERT_ERR(mh_future_result(fs[i], 30), MH_ECANCELED);
    mh_future_release(fs[i]);
  }
  ASSERT_OK(mh_future_result(b, 30));
  mh_future_release(b);
  mh_executor_free(ex);
  ASSERT_OK(mh_trace_stop());
  trace_t t;
  trace_load(path, &t);
  ASSERT_UEQ(count(&t, "cancelled", "i"), 1);
  ASSERT_UEQ(count(&t, "task", "X"), 1);
  trace_free(&t);
  munmap(s, sizeof *s);
  unlink(path);
}

/* ---- the pi job's blocks and fork-join's spawn records ------------------ */

/* The name of the track (pid, tid), or "" when it has none. */
static const char *track_of(const trace_t *t, int pid, int tid) {
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->ev[i].name, "thread_name") && t->ev[i].pid == pid && t->ev[i].tid == tid)
      return t->ev[i].tname;
  return "";
}

/* The pi job on a backend, traced: every block once (its points as items,
 * N in all), each on a worker's track; returns how many worker tracks
 * counted blocks. */
static int pi_blocks_traced(mh_backend_t backend, const char *what, const char *worker) {
  char path[128];
  tmp_path(path, sizeof path, what);
  ASSERT_OK(mh_trace_start(path));
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.backend = backend;
  o.workers = 2;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  const uint64_t blocks = 24, n = blocks * MH_PI_BLOCK_POINTS - 7;
  mh_pi_options_t po;
  mh_pi_options_init(&po);
  po.n = n;
  mh_pi_result_t r;
  ASSERT_OK(mh_pi_run(ex, &po, &r));
  mh_executor_free(ex);
  ASSERT_OK(mh_trace_stop());
  trace_t t;
  trace_load(path, &t);
  ASSERT_EQ(each_once(&t, "block", blocks), (long long)n);
  int on[2] = {-1, -1}, tracks_with_blocks = 0;
  for (size_t i = 0; i < t.n; i++) {
    const ev_t *e = &t.ev[i];
    if (strcmp(e->name, "block")) continue;
    const char *name = track_of(&t, e->pid, e->tid);
    ASSERT(!strncmp(name, worker, strlen(worker)));
    if (on[0] != e->tid && on[1] != e->tid && tracks_with_blocks < 2)
      on[tracks_with_blocks++] = e->tid;
  }
  trace_free(&t);
  unlink(path);
  return tracks_with_blocks;
}

/* On threads the pi job is one fork-join tree: its root is one task, and
 * the blocks a thief counts are inside the spawn records it stole. */
TEST(pi_threads_every_block_once) {
  ASSERT(pi_blocks_traced(MH_BACKEND_THREADS, "pithreads", "thread worker") >= 1);
}

TEST(pi_processes_every_block_once) {
  ASSERT(pi_blocks_traced(MH_BACKEND_PROCESSES, "piprocs", "process worker") >= 1);
}

/* A fork-join tree whose first leaf waits until a leaf ran on another
 * thread, which only a thief can do: the stolen records are `spawn` slices
 * on a worker's track other than the root task's, and each leaf ran once. */
typedef struct {
  _Atomic int leaves, stolen;
  _Atomic long root_tid;
  mh_executor_t *ex;
} fj_t;

typedef struct {
  fj_t *sh;
  int lo, hi;
} fj_node_t;

static long my_tid(void) { return (long)syscall(SYS_gettid); }

static int fj_node(void *arg) {
  fj_node_t *n = arg;
  fj_t *sh = n->sh;
  if (n->hi - n->lo == 1) {
    atomic_fetch_add(&sh->leaves, 1);
    if (my_tid() != atomic_load(&sh->root_tid)) atomic_store(&sh->stolen, 1);
    /* Leaf 0 holds its worker until a thief ran a leaf (30 s at most). */
    for (int i = 0; n->lo == 0 && i < 60000 && !atomic_load(&sh->stolen); i++) usleep(500);
    return n->lo == 0 && !atomic_load(&sh->stolen) ? MH_ETIMEDOUT : 0;
  }
  int mid = n->lo + (n->hi - n->lo) / 2;
  fj_node_t left = {sh, n->lo, mid}, right = {sh, mid, n->hi};
  mh_spawn_t sp;
  ASSERT_OK(mh_spawn(sh->ex, &sp, fj_node, &right));
  int lrc = fj_node(&left);
  int rrc = mh_spawn_join(&sp);
  return lrc ? lrc : rrc;
}

static int fj_root(const void *in, size_t isz, void *out, size_t osz, void *ctx) {
  (void)in, (void)isz, (void)out, (void)osz;
  fj_t *sh = ctx;
  atomic_store(&sh->root_tid, my_tid());
  fj_node_t root = {sh, 0, 64};
  return fj_node(&root);
}

TEST(stolen_spawns_are_slices) {
  char path[128];
  tmp_path(path, sizeof path, "spawn");
  ASSERT_OK(mh_trace_start(path));
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 2;
  mh_executor_t *ex;
  ASSERT_OK(mh_executor_new(&ex, &o));
  fj_t sh = {0};
  sh.root_tid = -1;
  sh.ex = ex;
  mh_future_t *f;
  ASSERT_OK(mh_executor_submit(ex, fj_root, NULL, 0, NULL, 0, &sh, &f));
  ASSERT_OK(mh_future_result(f, 60));
  mh_future_release(f);
  mh_executor_free(ex);
  ASSERT_OK(mh_trace_stop());
  ASSERT_EQ(atomic_load(&sh.leaves), 64);
  trace_t t;
  trace_load(path, &t);
  ASSERT_UEQ(count(&t, "task", "X"), 1);
  size_t spawns = 0;
  for (size_t i = 0; i < t.n; i++) {
    const ev_t *e = &t.ev[i];
    if (strcmp(e->name, "spawn")) continue;
    ASSERT_EQ(e->ph[0], 'X');
    ASSERT_EQ(e->status, 0);
    ASSERT(!strncmp(track_of(&t, e->pid, e->tid), "thread worker", 13));
    if (e->tid != (int)atomic_load(&sh.root_tid)) spawns++;
  }
  ASSERT(spawns >= 1);
  trace_free(&t);
  unlink(path);
}

TEST(api_errors) {
  char path[128];
  tmp_path(path, sizeof path, "api");
  ASSERT_ERR(mh_trace_start(NULL), MH_EINVAL);
  ASSERT_ERR(mh_trace_start(""), MH_EINVAL);
  ASSERT_ERR(mh_trace_stop(), MH_EINVAL);
  ASSERT(mh_trace_start("/nonexistent-dir/x.json") < 0);
  ASSERT_EQ(mh_trace_active(), 0);
  ASSERT_OK(mh_trace_start(path));
  ASSERT_ERR(mh_trace_start(path), MH_EBUSY);
  ASSERT_OK(mh_trace_stop());
  ASSERT_ERR(mh_trace_stop(), MH_EINVAL);
  /* An empty trace is still a valid file; a second trace starts afresh. */
  trace_t t;
  trace_load(path, &t);
  ASSERT_UEQ(count(&t, "task", "X"), 0);
  trace_free(&t);
  unlink(path);
}

HELPER(env_trace) {
  (void)argc, (void)argv;
  mh_executor_options_t o;
  mh_executor_options_init(&o);
  o.workers = 2;
  mh_executor_t *ex;
  if (mh_executor_new(&ex, &o)) return 1;
  int in[64];
  for (int i = 0; i < 64; i++) in[i] = i;
  if (mh_executor_map(ex, jitter_task, NULL, in, sizeof *in, NULL, 0, 64, 4, NULL)) return 1;
  mh_executor_free(ex);
  return 0; /* the file is written at exit */
}

TEST(env_variable_writes_at_exit) {
  char path[128];
  tmp_path(path, sizeof path, "env");
  unlink(path);
  setenv("MH_TRACE", path, 1);
  mht_proc_result_t r;
  ASSERT_OK(mht_run_helper("env_trace", (char *[]){NULL}, 60, &r));
  unsetenv("MH_TRACE");
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  trace_t t;
  trace_load(path, &t);
  /* The generic map's chunks, 64 items in all. */
  long long items = 0;
  for (size_t i = 0; i < t.n; i++)
    if (!strcmp(t.ev[i].name, "task")) items += t.ev[i].items;
  ASSERT_EQ(items, 64);
  trace_free(&t);
  unlink(path);
}

/* ---- the command: --trace and --timeline --------------------------------- */

#define CLI MHT_BUILD_DIR "/manyhands"

/* Run the command with these arguments (NULL-ended), copied so that
 * string literals stay const. */
static int run_cli(mht_proc_result_t *r, const char *const *args) {
  char *argv[16];
  size_t n = 0;
  argv[n++] = strdup(CLI);
  for (; *args && n < 15; args++) argv[n++] = strdup(*args);
  argv[n] = NULL;
  int rc = mht_run(argv, 120, r);
  for (size_t i = 0; i < n; i++) free(argv[i]);
  return rc;
}

static int have_gnuplot(void) {
  const char *path = getenv("PATH");
  char buf[4096];
  while (path && *path) {
    size_t len = strcspn(path, ":");
    snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)len, path);
    if (access(buf, X_OK) == 0) return 1;
    path += len + (path[len] == ':');
  }
  return 0;
}

static void cli_trace_and_timeline(const char *backend, const char *ext) {
  char json[128], chart[128];
  tmp_path(json, sizeof json, backend);
  snprintf(chart, sizeof chart, "/tmp/mh-trace-%d-%s.%s", (int)getpid(), backend, ext);
  unlink(chart);
  mht_proc_result_t r;
  ASSERT_OK(run_cli(&r, (const char *[]){"pi", "2e7", "3", "--backend", backend, "-q",
                                         "--trace", json, "--timeline", chart, NULL}));
  if (!have_gnuplot()) {
    /* The trace is written anyway; the missing chart is a failure (exit 1). */
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "gnuplot") != NULL);
    mht_proc_free(&r);
    unlink(json);
    return;
  }
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  trace_t t;
  trace_load(json, &t);
  /* The pi job's 5 blocks of 2e7 points, and one track per worker asked for. */
  ASSERT_EQ(each_once(&t, "block", 5), 20000000);
  ASSERT(tracks(&t, strcmp(backend, "threads") ? "process worker" : "thread worker") <= 3);
  trace_free(&t);
  char *img = slurp(chart);
  ASSERT(img != NULL);
  if (!strcmp(ext, "svg")) {
    ASSERT(strstr(img, "<svg") != NULL);
    ASSERT(strstr(img, "worker 0") != NULL);
  } else {
    ASSERT(!memcmp(img, "\x89PNG", 4));
  }
  free(img);
  unlink(json);
  unlink(chart);
}

TEST(cli_threads_svg) { cli_trace_and_timeline("threads", "svg"); }
TEST(cli_processes_png) { cli_trace_and_timeline("processes", "png"); }

TEST(cli_usage_errors) {
  mht_proc_result_t r;
  ASSERT_OK(run_cli(&r, (const char *[]){"pi", "1e6", "--timeline", "x.txt", NULL}));
  ASSERT_EQ(r.status, 2);
  ASSERT(strstr(r.err, "manyhands: invalid --timeline") != NULL);
  mht_proc_free(&r);
  ASSERT_OK(run_cli(&r, (const char *[]){"pi", "1e6", "--sweep", "1,2", "--trace", "x.json",
                                         NULL}));
  ASSERT_EQ(r.status, 2);
  mht_proc_free(&r);
  ASSERT_OK(run_cli(&r, (const char *[]){"pi", "1e6", "-q", "--trace",
                                         "/nonexistent-dir/t.json", NULL}));
  ASSERT_EQ(r.status, 1);
  ASSERT(strstr(r.err, "manyhands: cannot write the trace") != NULL);
  mht_proc_free(&r);
}

/* ---- MPI ranks: one file from rank 0, a track per rank ------------------- */

#include "mh_mpi_config.h"

#define MPI_CLI MHT_BUILD_DIR "/test/manyhands-mpi"


/* Run `mpiexec -n ranks` on the tests' manyhands-mpi (it has the
 * MH_MPI_TEST_* hooks); 0 when MPI was not found (the test skips). */
static int run_mpi_cli(mht_proc_result_t *r, const char *ranks, const char *const *args) {
#if !MHT_HAVE_MPI
  (void)r, (void)ranks, (void)args;
  printf("MPI not found: skipped\n");
  exit(77);
#else
  mht_mpi_launch_env("100", MHT_SOURCE_DIR);
  char *argv[32];
  size_t n = 0;
  argv[n++] = strdup(MHT_MPIEXEC);
  argv[n++] = strdup(MHT_MPIEXEC_NUMPROC_FLAG);
  argv[n++] = strdup(ranks);
  if (MHT_MPIEXEC_EXTRA[0]) argv[n++] = strdup(MHT_MPIEXEC_EXTRA);
  argv[n++] = strdup(MPI_CLI);
  for (; *args && n < 31; args++) argv[n++] = strdup(*args);
  argv[n] = NULL;
  int rc = mht_run(argv, 120, r);
  for (size_t i = 0; i < n; i++) free(argv[i]);
  return rc;
#endif
}

/* Processes named "rank R on HOST (pid P)": fills pids[R]; how many. */
static int rank_processes(const trace_t *t, int *pids, int max) {
  int c = 0;
  for (size_t i = 0; i < t->n; i++) {
    int r, pid;
    if (strcmp(t->ev[i].name, "process_name")) continue;
    const char *host = strstr(t->ev[i].tname, " on ");
    const char *p = strstr(t->ev[i].tname, "(pid ");
    ASSERT(sscanf(t->ev[i].tname, "rank %d", &r) == 1);
    ASSERT(host && p && host < p && sscanf(p, "(pid %d)", &pid) == 1);
    ASSERT(r >= 0 && r < max);
    ASSERT_EQ(pids[r], 0); /* each rank once */
    pids[r] = t->ev[i].pid;
    ASSERT_EQ(pid, t->ev[i].pid); /* one host: the real pid */
    c++;
  }
  return c;
}

/* 3 ranks x 2 threads, --trace on every rank: rank 0 writes one file with
 * every block exactly once, on the tracks of 3 rank processes; rank 0 is
 * slowed, so every rank gets blocks. */
TEST(mpi_ranks_one_file) {
  char json[128], chart[128];
  tmp_path(json, sizeof json, "mpi");
  snprintf(chart, sizeof chart, "/tmp/mh-trace-%d-mpi.svg", (int)getpid());
  unlink(json);
  unlink(chart);
  int gp = have_gnuplot();
  setenv("MH_MPI_TEST_SLOW", "0:3000", 1);
  mht_proc_result_t r;
  const uint64_t blocks = 48;
  char n[32];
  snprintf(n, sizeof n, "%llu", (unsigned long long)(blocks * MH_PI_BLOCK_POINTS - 5));
  ASSERT_OK(run_mpi_cli(&r, "3",
                        (const char *[]){"pi", n, "2", "--backend", "mpi", "-q", "--trace",
                                         json, gp ? "--timeline" : NULL, chart, NULL}));
  unsetenv("MH_MPI_TEST_SLOW");
  if (r.status != 0) printf("stderr: %s\n", r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  trace_t t;
  trace_load(json, &t);
  ASSERT_UEQ(count(&t, "block", "X"), blocks);
  ASSERT_EQ(each_once(&t, "block", blocks), (long long)(blocks * MH_PI_BLOCK_POINTS - 5));
  int pids[3] = {0, 0, 0};
  ASSERT_EQ(rank_processes(&t, pids, 3), 3);
  /* Every slice is on a rank's counting thread, each rank has some. */
  int per[3] = {0, 0, 0};
  for (size_t i = 0; i < t.n; i++) {
    const ev_t *e = &t.ev[i];
    if (e->ph[0] != 'X') continue;
    int k = 0;
    while (k < 3 && pids[k] != e->pid) k++;
    ASSERT(k < 3);
    ASSERT(e->tid != e->pid);
    per[k]++;
  }
  for (int k = 0; k < 3; k++) ASSERT(per[k] >= 1);
  ASSERT(tracks(&t, "rank ") >= 3 && tracks(&t, "rank ") <= 6);
  trace_free(&t);
  if (gp) {
    char *img = slurp(chart);
    ASSERT(img != NULL && strstr(img, "<svg") && strstr(img, "rank 2"));
    free(img);
  }
  unlink(json);
  unlink(chart);
}

/* MH_TRACE on every rank (the launcher passes the environment on): the
 * same one file, written by rank 0 at exit. */
TEST(mpi_env_variable) {
  char json[128];
  tmp_path(json, sizeof json, "mpienv");
  unlink(json);
  setenv("MH_TRACE", json, 1);
  mht_proc_result_t r;
  const uint64_t blocks = 20;
  char n[32];
  snprintf(n, sizeof n, "%llu", (unsigned long long)(blocks * MH_PI_BLOCK_POINTS));
  int rc = run_mpi_cli(&r, "2", (const char *[]){"pi", n, "1", "--backend", "mpi", "-q", NULL});
  unsetenv("MH_TRACE");
  ASSERT_OK(rc);
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  trace_t t;
  trace_load(json, &t);
  ASSERT_EQ(each_once(&t, "block", blocks), (long long)(blocks * MH_PI_BLOCK_POINTS));
  int pids[2] = {0, 0};
  ASSERT_EQ(rank_processes(&t, pids, 2), 2);
  trace_free(&t);
  unlink(json);
}

/* A rank killed mid-run ends the job; rank 0 still writes its trace, with
 * the death marked on the dead rank's track. */
TEST(mpi_rank_death_marked) {
  char json[128];
  tmp_path(json, sizeof json, "mpidie");
  unlink(json);
  setenv("MH_MPI_TEST_DIE", "1", 1);
  setenv("MH_MPI_TEST_SLOW", "0:3000", 1);
  mht_proc_result_t r;
  char n[32];
  snprintf(n, sizeof n, "%llu", (unsigned long long)(400 * MH_PI_BLOCK_POINTS));
  int rc = run_mpi_cli(&r, "2", (const char *[]){"pi", n, "1", "--backend", "mpi", "-q",
                                                 "--trace", json, NULL});
  unsetenv("MH_MPI_TEST_DIE");
  unsetenv("MH_MPI_TEST_SLOW");
  ASSERT_OK(rc);
  ASSERT(r.status != 0);
  mht_proc_free(&r);
  trace_t t;
  trace_load(json, &t);
  int pids[2] = {0, 0};
  ASSERT_EQ(rank_processes(&t, pids, 2), 2);
  size_t deaths = 0;
  for (size_t i = 0; i < t.n; i++)
    if (!strcmp(t.ev[i].name, "worker died")) {
      ASSERT_EQ(t.ev[i].pid, pids[1]);
      deaths++;
    }
  ASSERT_UEQ(deaths, 1);
  ASSERT(count(&t, "block", "X") >= 1); /* rank 0's blocks */
  trace_free(&t);
  unlink(json);
}
