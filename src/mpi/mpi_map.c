/* mpi_map.c - tasks registered by name, and a map over MPI ranks.
 *
 * Function pointers mean nothing on another machine, so a task travels as
 * its registered name and its plain-data input.  Rank 0 (mh_mpi_map) cuts
 * the items into chunks and keeps one chunk in flight on every rank waiting
 * in mh_mpi_serve(), and one on a thread of its own; each rank sends back the
 * chunk's output bytes and item codes, which land straight in the caller's
 * arrays.  Messages of one chunk, in order on the same communicator:
 *   rank 0 -> r: CMD (header), IN (count * in_size bytes, when non-empty)
 *   r -> rank 0: HDR (header with the chunk's code), OUT (bytes), STATUS
 *
 * The registry is a small array guarded by reg_mu; entries are never
 * removed, only replaced.  The local worker's slot (local_slot_t) is guarded
 * by its mutex; only the main thread calls MPI.
 */
#include <string.h>

#include "../executor_internal.h"
#include "mpi_internal.h"

#define NAME_MAX_LEN 63
#define MAX_TASKS 256
#define MAX_CHUNK_BYTES ((size_t)1 << 30)

enum { TAG_MAP_STATUS = 24 };
enum { CMD_CHUNK = 1, CMD_STOP = 2 };

typedef struct map_cmd {
  uint64_t kind, first, count, in_size, out_size;
  char name[NAME_MAX_LEN + 1];
} map_cmd_t;

typedef struct map_hdr {
  uint64_t first, count;
  int64_t code;
} map_hdr_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char name[NAME_MAX_LEN + 1];
  mh_task_fn fn;
} reg[MAX_TASKS];
static int reg_count;
/* Ranks > 0: the stop message of rank 0 was received. */
static int got_stop;

int mh_task_register(const char *name, mh_task_fn fn) {
  if (!name || !fn || !*name || strlen(name) > NAME_MAX_LEN) return MH_EINVAL;
  pthread_mutex_lock(&reg_mu);
  int i = 0;
  while (i < reg_count && strcmp(reg[i].name, name) != 0) i++;
  if (i == reg_count) {
    if (reg_count == MAX_TASKS) {
      pthread_mutex_unlock(&reg_mu);
      return MH_ENOMEM;
    }
    reg_count++;
    strcpy(reg[i].name, name);
  }
  reg[i].fn = fn;
  pthread_mutex_unlock(&reg_mu);
  return 0;
}

mh_task_fn mh_task_lookup(const char *name) {
  mh_task_fn fn = NULL;
  if (!name) return NULL;
  pthread_mutex_lock(&reg_mu);
  for (int i = 0; i < reg_count && !fn; i++)
    if (strcmp(reg[i].name, name) == 0) fn = reg[i].fn;
  pthread_mutex_unlock(&reg_mu);
  return fn;
}

const char *mh_task_name(mh_task_fn fn) {
  const char *name = NULL;
  pthread_mutex_lock(&reg_mu);
  for (int i = 0; i < reg_count && !name; i++)
    if (reg[i].fn == fn) name = reg[i].name;
  pthread_mutex_unlock(&reg_mu);
  return name;
}

/* Run items [0, count) of a chunk; the chunk's code is its lowest failure. */
static int run_items(mh_task_fn fn, void *ctx, const char *in, size_t in_size,
                     char *out, size_t out_size, size_t count, int *st) {
  int code = 0;
  for (size_t i = 0; i < count; i++) {
    int rc = fn(in + i * in_size, in_size, out + i * out_size, out_size, ctx);
    st[i] = rc;
    if (rc != 0 && code == 0) code = rc;
  }
  return code;
}

/* ---- ranks > 0 ------------------------------------------------------------ */

static int serve_one(const map_cmd_t *cmd, char **inb, size_t *incap,
                     char **outb, size_t *outcap, int **stb, size_t *stcap) {
  size_t count = (size_t)cmd->count;
  size_t in_bytes = count * (size_t)cmd->in_size;
  size_t out_bytes = count * (size_t)cmd->out_size;
  /* Grow the reusable buffers; a failure is the job's end (rank 0 waits
   * for this chunk). */
  struct { char **p; size_t *cap; size_t need; } g[3] = {
      {inb, incap, in_bytes}, {outb, outcap, out_bytes},
      {(char **)stb, stcap, count * sizeof(int)}};
  for (int k = 0; k < 3; k++) {
    if (g[k].need > *g[k].cap) {
      char *p = mh__realloc(*g[k].p, g[k].need);
      if (!p) mh__mpi_fatal("rank %d is out of memory", mh__mpi.rank);
      *g[k].p = p;
      *g[k].cap = g[k].need;
    }
  }
  if (in_bytes &&
      MPI_Recv(*inb, (int)in_bytes, MPI_BYTE, 0, MH__TAG_MAP_IN, mh__mpi.comm,
               MPI_STATUS_IGNORE) != MPI_SUCCESS)
    return MH_EMPI;
  mh_task_fn fn = mh_task_lookup(cmd->name);
  map_hdr_t h = {cmd->first, cmd->count, 0};
  if (!fn) {
    /* Not registered here: every item fails with the same clear code. */
    for (size_t i = 0; i < count; i++) (*stb)[i] = MH_ENOSYS;
    h.code = MH_ENOSYS;
  } else {
    h.code = run_items(fn, NULL, *inb, (size_t)cmd->in_size, *outb,
                       (size_t)cmd->out_size, count, *stb);
  }
  if (MPI_Send(&h, (int)sizeof h, MPI_BYTE, 0, MH__TAG_MAP_HDR,
               mh__mpi.comm) != MPI_SUCCESS ||
      (out_bytes && MPI_Send(*outb, (int)out_bytes, MPI_BYTE, 0,
                             MH__TAG_MAP_OUT, mh__mpi.comm) != MPI_SUCCESS) ||
      MPI_Send(*stb, (int)count, MPI_INT, 0, TAG_MAP_STATUS, mh__mpi.comm) !=
          MPI_SUCCESS)
    return MH_EMPI;
  return 0;
}

int mh_mpi_serve(void) {
  if (!mh__mpi.inited) return MH_EINVAL;
  if (mh__mpi.rank == 0 || got_stop) return 0;
  char *inb = NULL, *outb = NULL;
  int *stb = NULL;
  size_t incap = 0, outcap = 0, stcap = 0;
  int rc = 0;
  for (;;) {
    int flag = 0;
    if (MPI_Iprobe(0, MH__TAG_MAP_CMD, mh__mpi.comm, &flag,
                   MPI_STATUS_IGNORE) != MPI_SUCCESS) {
      rc = MH_EMPI;
      break;
    }
    if (!flag) {
      mh__mpi_nap(100);
      continue;
    }
    map_cmd_t cmd;
    if (MPI_Recv(&cmd, (int)sizeof cmd, MPI_BYTE, 0, MH__TAG_MAP_CMD,
                 mh__mpi.comm, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
      rc = MH_EMPI;
      break;
    }
    if (cmd.kind == CMD_STOP) {
      got_stop = 1;
      break;
    }
    cmd.name[NAME_MAX_LEN] = '\0';
    rc = serve_one(&cmd, &inb, &incap, &outb, &outcap, &stb, &stcap);
    if (rc != 0) break;
  }
  mh__free(inb);
  mh__free(outb);
  mh__free(stb);
  return rc;
}

int mh__mpi_take_stop(void) {
  int rc = 0;
  if (!got_stop) {
    map_cmd_t cmd;
    rc = mh__mpi_err(MPI_Recv(&cmd, (int)sizeof cmd, MPI_BYTE, 0,
                              MH__TAG_MAP_CMD, mh__mpi.comm,
                              MPI_STATUS_IGNORE));
  }
  got_stop = 0; /* a later mh_mpi_init starts afresh */
  return rc;
}

int mh_mpi_serve_stop(void) {
  if (!mh__mpi.inited || mh__mpi.rank != 0) return MH_EINVAL;
  if (mh__mpi.serve_stopped) return 0;
  mh__mpi.serve_stopped = 1;
  map_cmd_t cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.kind = CMD_STOP;
  int rc = 0;
  for (int r = 1; r < mh__mpi.size; r++)
    if (MPI_Send(&cmd, (int)sizeof cmd, MPI_BYTE, r, MH__TAG_MAP_CMD,
                 mh__mpi.comm) != MPI_SUCCESS)
      rc = MH_EMPI;
  return rc;
}

/* ---- rank 0 --------------------------------------------------------------- */

/* The chunk rank 0 runs on its own thread. */
typedef struct local_slot {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int has_job, job_done, quit; /* guarded by mu */
  size_t first, count;
  int code;
  /* Fixed for the map. */
  mh_task_fn fn;
  void *ctx;
  const char *in;
  size_t in_size;
  char *out;
  size_t out_size;
  int *st;
} local_slot_t;

static void *local_main(void *arg) {
  local_slot_t *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->has_job && !s->quit) pthread_cond_wait(&s->cv, &s->mu);
    if (s->quit) break;
    size_t first = s->first, count = s->count;
    pthread_mutex_unlock(&s->mu);
    int code = run_items(s->fn, s->ctx, s->in + first * s->in_size,
                         s->in_size, s->out + first * s->out_size,
                         s->out_size, count, s->st + first);
    pthread_mutex_lock(&s->mu);
    s->code = code;
    s->has_job = 0;
    s->job_done = 1;
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int mh_mpi_map(const char *name, void *ctx, const void *in, size_t in_size,
               void *out, size_t out_size, size_t n, size_t chunksize,
               int *status) {
  if (!mh__mpi.inited || mh__mpi.rank != 0 || mh__mpi.serve_stopped || !name)
    return MH_EINVAL;
  if ((!in && in_size) || (!out && out_size)) return MH_EINVAL;
  mh_task_fn fn = mh_task_lookup(name);
  if (!fn || strlen(name) > NAME_MAX_LEN) return MH_EINVAL;
  if (n == 0) return 0;
  int ranks = mh__mpi.size;
  if (chunksize == 0) {
    /* As Pool.map: about four chunks per worker. */
    chunksize = n / ((size_t)ranks * 4);
    if (chunksize == 0) chunksize = 1;
  }
  size_t item = in_size > out_size ? in_size : out_size;
  if (item < sizeof(int)) item = sizeof(int);
  if (item > MAX_CHUNK_BYTES) return MH_EINVAL;
  if (chunksize > MAX_CHUNK_BYTES / item) chunksize = MAX_CHUNK_BYTES / item;

  int *st = status ? status : mh__calloc(n, sizeof *st);
  size_t *busy_first = mh__calloc((size_t)ranks, sizeof *busy_first);
  int *busy = mh__calloc((size_t)ranks, sizeof *busy);
  MPI_Request *reqs = mh__calloc((size_t)ranks, sizeof *reqs);
  map_hdr_t *hdrs = mh__calloc((size_t)ranks, sizeof *hdrs);
  local_slot_t slot;
  memset(&slot, 0, sizeof slot);
  pthread_t tid;
  int rc = 0, have_thread = 0;
  if (!st || !busy_first || !busy || !reqs || !hdrs) {
    rc = MH_ENOMEM;
    goto out;
  }
  slot.fn = fn;
  slot.ctx = ctx;
  slot.in = in;
  slot.in_size = in_size;
  slot.out = out;
  slot.out_size = out_size;
  slot.st = st;
  pthread_mutex_init(&slot.mu, NULL);
  pthread_cond_init(&slot.cv, NULL);
  have_thread = pthread_create(&tid, NULL, local_main, &slot) == 0;

  size_t next = 0, done = 0;
  int local_busy = 0;
  while (done < n) {
    int progress = 0;
    /* Keep every idle rank busy. */
    for (int r = 1; r < ranks && next < n; r++) {
      if (busy[r]) continue;
      size_t count = n - next < chunksize ? n - next : chunksize;
      map_cmd_t cmd;
      memset(&cmd, 0, sizeof cmd);
      cmd.kind = CMD_CHUNK;
      cmd.first = next;
      cmd.count = count;
      cmd.in_size = in_size;
      cmd.out_size = out_size;
      strcpy(cmd.name, name);
      if (MPI_Send(&cmd, (int)sizeof cmd, MPI_BYTE, r, MH__TAG_MAP_CMD,
                   mh__mpi.comm) != MPI_SUCCESS ||
          (count * in_size != 0 &&
           MPI_Send((const char *)in + next * in_size, (int)(count * in_size),
                    MPI_BYTE, r, MH__TAG_MAP_IN, mh__mpi.comm) != MPI_SUCCESS) ||
          MPI_Irecv(&hdrs[r], (int)sizeof hdrs[r], MPI_BYTE, r,
                    MH__TAG_MAP_HDR, mh__mpi.comm, &reqs[r]) != MPI_SUCCESS) {
        rc = MH_EMPI;
        goto stop;
      }
      busy[r] = 1;
      busy_first[r] = next;
      next += count;
      progress = 1;
    }
    if (have_thread && !local_busy && next < n) {
      size_t count = n - next < chunksize ? n - next : chunksize;
      pthread_mutex_lock(&slot.mu);
      slot.first = next;
      slot.count = count;
      slot.has_job = 1;
      slot.job_done = 0;
      pthread_cond_signal(&slot.cv);
      pthread_mutex_unlock(&slot.mu);
      local_busy = 1;
      next += count;
      progress = 1;
    }
    if (!have_thread && ranks == 1 && next < n) {
      /* No thread and no other rank: run it here. */
      size_t count = n - next;
      run_items(fn, ctx, (const char *)in + next * in_size, in_size,
                (char *)out + next * out_size, out_size, count, st + next);
      next += count;
      done += count;
      continue;
    }
    /* Collect what has finished. */
    for (int r = 1; r < ranks; r++) {
      if (!busy[r]) continue;
      int got = 0;
      if (MPI_Test(&reqs[r], &got, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        rc = MH_EMPI;
        goto stop;
      }
      if (!got) continue;
      size_t first = (size_t)hdrs[r].first, count = (size_t)hdrs[r].count;
      if (first != busy_first[r] || first + count > n) {
        rc = MH_EMPI;
        goto stop;
      }
      if ((count * out_size != 0 &&
           MPI_Recv((char *)out + first * out_size, (int)(count * out_size),
                    MPI_BYTE, r, MH__TAG_MAP_OUT, mh__mpi.comm,
                    MPI_STATUS_IGNORE) != MPI_SUCCESS) ||
          MPI_Recv(st + first, (int)count, MPI_INT, r, TAG_MAP_STATUS,
                   mh__mpi.comm, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        rc = MH_EMPI;
        goto stop;
      }
      busy[r] = 0;
      done += count;
      progress = 1;
    }
    if (local_busy) {
      pthread_mutex_lock(&slot.mu);
      if (slot.job_done) {
        local_busy = 0;
        done += slot.count;
        progress = 1;
      }
      pthread_mutex_unlock(&slot.mu);
    }
    if (!progress) mh__mpi_nap(50);
  }
  /* The map's code: that of the lowest-indexed failing item. */
  for (size_t i = 0; i < n && rc == 0; i++) rc = st[i];

stop:
  if (have_thread) {
    pthread_mutex_lock(&slot.mu);
    slot.quit = 1;
    pthread_cond_signal(&slot.cv);
    pthread_mutex_unlock(&slot.mu);
    pthread_join(tid, NULL);
  }
  pthread_mutex_destroy(&slot.mu);
  pthread_cond_destroy(&slot.cv);
out:
  if (st != status) mh__free(st);
  mh__free(busy_first);
  mh__free(busy);
  mh__free(reqs);
  mh__free(hdrs);
  return rc;
}

/* ---- the executor's MPI backend (rank 0) -----------------------------------
 *
 * mh_executor_new with MH_BACKEND_MPI on rank 0 gives an executor whose
 * futures run on the ranks waiting in mh_mpi_serve() and on one thread of
 * rank 0, so mh_executor_submit / map / imap work unchanged for tasks
 * registered by name.  A dispatcher thread makes every MPI call of the
 * executor (MPI_THREAD_SERIALIZED): while an MPI executor lives, rank 0's
 * other threads make no manyhands MPI call.
 *
 * mpool_t.mu guards the queue (head, tail), stopping, local_job and
 * local_busy; busy[] and the remote bookkeeping belong to the dispatcher
 * alone.  No lock is held while a task runs or a future completes.
 */

typedef struct mpool {
  pthread_mutex_t mu;
  pthread_cond_t cv;            /* queue, stopping, local slot changes */
  mh_future_t *head, *tail;     /* guarded by mu */
  int stopping;                 /* guarded by mu */
  mh_future_t *local_job;       /* guarded by mu: rank 0's thread's future */
  int local_busy;               /* guarded by mu */
  int joined;
  pthread_t dispatcher, local;
  int ranks;
  mh_future_t **remote;         /* dispatcher only: future on each rank */
  map_hdr_t *hdrs;
  MPI_Request *reqs;
  int *stbuf;                   /* dispatcher only: statuses of a chunk */
  size_t stcap;
} mpool_t;

static void *mpool_local_main(void *arg) {
  mpool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->local_job && !(p->stopping && !p->head)) {
      pthread_cond_wait(&p->cv, &p->mu);
    }
    mh_future_t *f = p->local_job;
    if (!f) break;
    pthread_mutex_unlock(&p->mu);
    mh__future_finish(f, mh__task_run(mh__future_task(f)));
    mh_future_release(f);
    pthread_mutex_lock(&p->mu);
    p->local_job = NULL;
    p->local_busy = 0;
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Send future f to rank r; 0, or a code with which f is to be finished. */
static int mpool_send(mpool_t *p, int r, mh_future_t *f) {
  const mh__task_t *t = mh__future_task(f);
  const char *name = mh_task_name(t->fn);
  if (!name) return MH_ENOSYS; /* not registered: no rank could run it */
  if (t->count > INT32_MAX || t->count * t->in_size > MAX_CHUNK_BYTES ||
      t->count * t->out_size > MAX_CHUNK_BYTES)
    return MH_EINVAL;
  map_cmd_t cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.kind = CMD_CHUNK;
  cmd.count = t->count;
  cmd.in_size = t->in_size;
  cmd.out_size = t->out_size;
  strcpy(cmd.name, name);
  if (MPI_Send(&cmd, (int)sizeof cmd, MPI_BYTE, r, MH__TAG_MAP_CMD,
               mh__mpi.comm) != MPI_SUCCESS ||
      (t->count * t->in_size != 0 &&
       MPI_Send(t->in, (int)(t->count * t->in_size), MPI_BYTE, r,
                MH__TAG_MAP_IN, mh__mpi.comm) != MPI_SUCCESS) ||
      MPI_Irecv(&p->hdrs[r], (int)sizeof p->hdrs[r], MPI_BYTE, r,
                MH__TAG_MAP_HDR, mh__mpi.comm, &p->reqs[r]) != MPI_SUCCESS)
    mh__mpi_fatal("sending a task to rank %d failed", r);
  return 0;
}

/* Rank r finished its chunk: take its output and finish the future. */
static void mpool_collect(mpool_t *p, int r) {
  mh_future_t *f = p->remote[r];
  const mh__task_t *t = mh__future_task(f);
  int *st = t->statuses;
  if (!st) {
    if (t->count > p->stcap) {
      int *q = mh__realloc(p->stbuf, t->count * sizeof *q);
      if (!q) mh__mpi_fatal("rank 0 is out of memory");
      p->stbuf = q;
      p->stcap = t->count;
    }
    st = p->stbuf;
  }
  if ((t->count * t->out_size != 0 &&
       MPI_Recv(t->out, (int)(t->count * t->out_size), MPI_BYTE, r,
                MH__TAG_MAP_OUT, mh__mpi.comm, MPI_STATUS_IGNORE) !=
           MPI_SUCCESS) ||
      MPI_Recv(st, (int)t->count, MPI_INT, r, TAG_MAP_STATUS, mh__mpi.comm,
               MPI_STATUS_IGNORE) != MPI_SUCCESS)
    mh__mpi_fatal("receiving a result from rank %d failed", r);
  p->remote[r] = NULL;
  mh__future_finish(f, (int)p->hdrs[r].code);
  mh_future_release(f);
}

static void *mpool_dispatch_main(void *arg) {
  mpool_t *p = arg;
  for (;;) {
    int progress = 0, nbusy = 0;
    /* Hand queued futures to idle ranks (the local thread first). */
    pthread_mutex_lock(&p->mu);
    for (int r = 0; r < p->ranks && p->head; r++) {
      if (r == 0 ? p->local_busy : p->remote[r] != NULL) continue;
      mh_future_t *f = p->head;
      p->head = *mh__future_link(f);
      if (!p->head) p->tail = NULL;
      progress = 1;
      if (!mh__future_set_running(f)) { /* cancelled while queued */
        mh_future_release(f);
        r--;
        continue;
      }
      if (r == 0) {
        p->local_job = f;
        p->local_busy = 1;
        pthread_cond_broadcast(&p->cv);
        continue;
      }
      pthread_mutex_unlock(&p->mu);
      int code = mpool_send(p, r, f);
      if (code != 0) {
        mh__future_finish(f, code);
        mh_future_release(f);
      } else {
        p->remote[r] = f;
      }
      pthread_mutex_lock(&p->mu);
    }
    for (int r = 1; r < p->ranks; r++) nbusy += p->remote[r] != NULL;
    if (!nbusy) {
      if (p->stopping && !p->head) {
        pthread_mutex_unlock(&p->mu);
        break;
      }
      /* Nothing in flight remotely (what is queued waits for the local
       * thread): sleep until a submit, a local finish or shutdown. */
      pthread_cond_wait(&p->cv, &p->mu);
      pthread_mutex_unlock(&p->mu);
      continue;
    }
    pthread_mutex_unlock(&p->mu);
    for (int r = 1; r < p->ranks; r++) {
      if (!p->remote[r]) continue;
      int got = 0;
      if (MPI_Test(&p->reqs[r], &got, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        mh__mpi_fatal("waiting for rank %d failed", r);
      if (got) {
        mpool_collect(p, r);
        progress = 1;
      }
    }
    if (!progress) mh__mpi_nap(50);
  }
  return NULL;
}

static int mpool_start(mh_executor_t *ex, const mh_executor_options_t *opts) {
  MH__UNUSED(opts);
  if (!mh__mpi.inited || mh__mpi.serve_stopped) return MH_EINVAL;
  if (mh__mpi.rank != 0) return MH_EPERM; /* the others serve */
  mpool_t *p = mh__calloc(1, sizeof *p);
  if (!p) return MH_ENOMEM;
  p->ranks = mh__mpi.size;
  size_t n = (size_t)p->ranks;
  p->remote = mh__calloc(n, sizeof *p->remote);
  p->hdrs = mh__calloc(n, sizeof *p->hdrs);
  p->reqs = mh__calloc(n, sizeof *p->reqs);
  int rc = MH_ENOMEM;
  if (!p->remote || !p->hdrs || !p->reqs) goto fail;
  rc = -pthread_mutex_init(&p->mu, NULL);
  if (rc) goto fail;
  rc = mh__cond_init(&p->cv, false);
  if (rc) goto fail_mu;
  rc = MH_EAGAIN;
  if (pthread_create(&p->local, NULL, mpool_local_main, p) != 0)
    goto fail_cv;
  if (pthread_create(&p->dispatcher, NULL, mpool_dispatch_main, p) != 0) {
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->local, NULL);
    goto fail_cv;
  }
  mh__executor_set_impl(ex, p);
  return 0;
fail_cv:
  pthread_cond_destroy(&p->cv);
fail_mu:
  pthread_mutex_destroy(&p->mu);
fail:
  mh__free(p->remote);
  mh__free(p->hdrs);
  mh__free(p->reqs);
  mh__free(p);
  return rc;
}

static int mpool_submit(mh_executor_t *ex, mh_future_t *f) {
  mpool_t *p = mh__executor_impl(ex);
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    return MH_ESHUTDOWN;
  }
  mh_future_retain(f);
  *mh__future_link(f) = NULL;
  if (p->tail) {
    *mh__future_link(p->tail) = f;
  } else {
    p->head = f;
  }
  p->tail = f;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

static int mpool_shutdown(mh_executor_t *ex, unsigned flags) {
  mpool_t *p = mh__executor_impl(ex);
  mh_future_t *cancelled = NULL;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  if (flags & MH_SHUTDOWN_CANCEL_FUTURES) {
    cancelled = p->head;
    p->head = p->tail = NULL;
  }
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  while (cancelled) {
    mh_future_t *next = *mh__future_link(cancelled);
    mh__future_cancel_queued(cancelled);
    mh_future_release(cancelled);
    cancelled = next;
  }
  if ((flags & MH_SHUTDOWN_WAIT) && !p->joined) {
    pthread_join(p->dispatcher, NULL);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->local, NULL);
    p->joined = 1;
  }
  return 0;
}

static void mpool_destroy(mh_executor_t *ex) {
  mpool_t *p = mh__executor_impl(ex);
  if (!p) return;
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  mh__free(p->remote);
  mh__free(p->hdrs);
  mh__free(p->reqs);
  mh__free(p->stbuf);
  mh__free(p);
}

const mh__backend_ops_t mh__backend_mpi = {
    "mpi", mpool_start, mpool_submit, NULL, mpool_shutdown, mpool_destroy, NULL};
