/* SPDX-License-Identifier: MIT */
/* mpi_map.c - tasks registered by name, and a map over MPI ranks.
 *
 * Function pointers mean nothing on another machine, so a task travels as
 * its registered name and its plain-data input.  Rank 0 (mh_mpi_map) cuts
 * the items into chunks and keeps one chunk in flight on every rank waiting
 * in mh_mpi_serve(), and one on a thread of its own; each rank sends back the
 * chunk's output bytes and item codes, which land straight in the caller's
 * arrays.  Messages of one chunk, in order on the same communicator:
 *   rank 0 -> r: CMD (header), IN (count * in_size bytes, when non-empty)
 *   r -> rank 0: HDR beat ... HDR done (with the chunk's code), OUT, STATUS
 *
 * Hang detection.  A server runs the chunk on a thread of its own while its
 * main thread sends a heartbeat (a HDR marked as a beat) every second, or a
 * quarter of the timeout when that is shorter.  Beats and the final HDR share
 * one tag, so they arrive in order and none is left over after a chunk.  Rank
 * 0 ends the job with our message naming the rank (mh__mpi_fatal) when a busy
 * rank sends nothing for MH_MPI_TIMEOUT seconds (stopped, hung in the
 * kernel, or cut off), and, when MH_MPI_TASK_TIMEOUT is set, when a chunk
 * (its own thread's included) runs longer than that: a task that never
 * returns.  Rank 0's sends and receives of a chunk's data poll under the
 * same heartbeat timeout, so a large message to a stopped rank cannot block
 * it either.  An idle server waits for rank 0 without limit: rank 0 may do
 * other work between maps.
 *
 * The registry is a small array guarded by reg_mu; entries are never
 * removed, only replaced.  The local worker's slot (local_slot_t) is guarded
 * by its mutex; only the main thread calls MPI.
 */
#include <string.h>

#include "../executor/executor_internal.h"
#include "../trace_internal.h"
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
  uint64_t beat; /* 1: a heartbeat while the chunk runs; 0: the chunk is done */
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

/* A chunk a server runs on a thread while its main thread sends beats.
 * mu guards done. */
typedef struct chunk_run {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int code;
  mh_task_fn fn;
  const char *in;
  size_t in_size;
  char *out;
  size_t out_size;
  size_t count;
  size_t first; /* the chunk's first item (its trace index) */
  int *st;
} chunk_run_t;

static void *chunk_main(void *arg) {
  chunk_run_t *cr = arg;
  mh__trace_role(MH__TR_ROLE_RANK, 0);
  uint64_t t0 = mh__trace_begin();
  int code = run_items(cr->fn, NULL, cr->in, cr->in_size, cr->out,
                       cr->out_size, cr->count, cr->st);
  mh__trace_end(t0, MH__TR_CHUNK, cr->first, cr->count, code);
  pthread_mutex_lock(&cr->mu);
  cr->code = code;
  cr->done = 1;
  pthread_cond_signal(&cr->cv);
  pthread_mutex_unlock(&cr->mu);
  return NULL;
}

/* Seconds between heartbeats: a quarter of the timeout, at most one. */
static double beat_interval(void) {
  return mh__mpi.timeout / 4 < 1.0 ? mh__mpi.timeout / 4 : 1.0;
}

/* Run the chunk on a thread; beat to rank 0 until it is done.  0 or
 * MH_EMPI. */
static int run_with_beats(chunk_run_t *cr, const map_hdr_t *h) {
  pthread_t tid;
  int rc = 0;
  pthread_mutex_init(&cr->mu, NULL);
  if (mh__cond_init(&cr->cv, false) != 0 ||
      pthread_create(&tid, NULL, chunk_main, cr) != 0)
    mh__mpi_fatal("rank %d cannot start a thread for its chunk", mh__mpi.rank);
  map_hdr_t beat = *h;
  beat.beat = 1;
  pthread_mutex_lock(&cr->mu);
  while (!cr->done) {
    mh__deadline_t dl;
    mh__deadline_init(&dl, beat_interval());
    while (!cr->done && mh__cond_wait(&cr->cv, &cr->mu, &dl) == 0) {
    }
    if (cr->done) break;
    pthread_mutex_unlock(&cr->mu);
    /* Only this thread calls MPI in this rank. */
    if (rc == 0 && MPI_Send(&beat, (int)sizeof beat, MPI_BYTE, 0,
                            MH__TAG_MAP_HDR, mh__mpi.comm) != MPI_SUCCESS)
      rc = MH_EMPI;
    pthread_mutex_lock(&cr->mu);
  }
  pthread_mutex_unlock(&cr->mu);
  pthread_join(tid, NULL);
  pthread_cond_destroy(&cr->cv);
  pthread_mutex_destroy(&cr->mu);
  return rc;
}

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
  map_hdr_t h = {cmd->first, cmd->count, 0, 0};
  if (!fn) {
    /* Not registered here: every item fails with the same clear code. */
    for (size_t i = 0; i < count; i++) (*stb)[i] = MH_ENOSYS;
    h.code = MH_ENOSYS;
  } else {
    chunk_run_t cr;
    memset(&cr, 0, sizeof cr);
    cr.fn = fn;
    cr.in = *inb;
    cr.in_size = (size_t)cmd->in_size;
    cr.out = *outb;
    cr.out_size = (size_t)cmd->out_size;
    cr.count = count;
    cr.first = (size_t)cmd->first;
    cr.st = *stb;
    int rc = run_with_beats(&cr, &h);
    if (rc != 0) return rc;
    h.code = cr.code;
  }
  h.beat = 0;
  if (MPI_Send(&h, (int)sizeof h, MPI_BYTE, 0, MH__TAG_MAP_HDR,
               mh__mpi.comm) != MPI_SUCCESS ||
      (out_bytes && MPI_Send(*outb, (int)out_bytes, MPI_BYTE, 0,
                             MH__TAG_MAP_OUT, mh__mpi.comm) != MPI_SUCCESS) ||
      MPI_Send(*stb, (int)(count * sizeof(int)), MPI_BYTE, 0, TAG_MAP_STATUS,
               mh__mpi.comm) != MPI_SUCCESS)
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

/* Ranks > 0: receive rank 0's stop message if mh_mpi_serve did not. */
static int take_stop(void) {
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

/* The map protocol's part of mh_mpi_finalize (mpi.c): every rank > 0
 * receives rank 0's stop message exactly once, in mh_mpi_serve or here. */
void mh__mpi_map_stop(void) {
  if (mh__mpi.rank == 0 && !mh__mpi.serve_stopped) mh_mpi_serve_stop();
  if (mh__mpi.rank != 0) take_stop();
}

/* ---- rank 0 --------------------------------------------------------------- */

/* A busy rank r has been silent too long: end the job, naming it. */
static void __attribute__((noreturn)) rank_stuck(int r) {
  mh__mpi_trace_end(r, MH_ETIMEDOUT);
  mh__mpi_fatal("MPI rank %d (pid %d on %s) stopped responding: no heartbeat "
                "for %.0f s during a map (MH_MPI_TIMEOUT); stopping the job",
                r, (int)mh__mpi.pids[r], mh__mpi_host(r), mh__mpi.timeout);
}

/* A chunk on rank r has run longer than MH_MPI_TASK_TIMEOUT. */
static void __attribute__((noreturn)) task_overdue(int r, const char *name,
                                                   double seconds) {
  mh__mpi_fatal("task '%s' on MPI rank %d (pid %d on %s) has not returned "
                "after %.0f s (MH_MPI_TASK_TIMEOUT=%g); stopping the job",
                name ? name : "?", r, (int)mh__mpi.pids[r], mh__mpi_host(r),
                seconds, mh__mpi.task_timeout);
}

/* Complete `req` (a transfer with rank r), giving up on r after the
 * heartbeat timeout.  0 or MH_EMPI. */
static int wait_timed(MPI_Request *req, int r) {
  double t0 = mh__now();
  long nap = 20;
  for (;;) {
    int got = 0;
    if (MPI_Test(req, &got, MPI_STATUS_IGNORE) != MPI_SUCCESS) return MH_EMPI;
    if (got) return 0;
    if (mh__now() - t0 > mh__mpi.timeout) rank_stuck(r);
    mh__mpi_nap(nap);
    if (nap < 1000) nap *= 2;
  }
}

static int send_timed(const void *buf, size_t bytes, int r, int tag) {
  MPI_Request req;
  if (MPI_Isend(buf, (int)bytes, MPI_BYTE, r, tag, mh__mpi.comm, &req) !=
      MPI_SUCCESS)
    return MH_EMPI;
  return wait_timed(&req, r);
}

static int recv_timed(void *buf, size_t bytes, int r, int tag) {
  MPI_Request req;
  if (MPI_Irecv(buf, (int)bytes, MPI_BYTE, r, tag, mh__mpi.comm, &req) !=
      MPI_SUCCESS)
    return MH_EMPI;
  return wait_timed(&req, r);
}

/* Send chunk [first, first+count) of `name` to rank r and post the receive
 * of its first HDR.  0 or MH_EMPI. */
static int send_chunk(int r, const char *name, size_t first, size_t count,
                      const void *in, size_t in_size, size_t out_size,
                      map_hdr_t *hdr, MPI_Request *req) {
  map_cmd_t cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.kind = CMD_CHUNK;
  cmd.first = first;
  cmd.count = count;
  cmd.in_size = in_size;
  cmd.out_size = out_size;
  strcpy(cmd.name, name);
  if (send_timed(&cmd, sizeof cmd, r, MH__TAG_MAP_CMD) != 0 ||
      (count * in_size != 0 &&
       send_timed(in, count * in_size, r, MH__TAG_MAP_IN) != 0) ||
      MPI_Irecv(hdr, (int)sizeof *hdr, MPI_BYTE, r, MH__TAG_MAP_HDR,
                mh__mpi.comm, req) != MPI_SUCCESS)
    return MH_EMPI;
  return 0;
}

/* Has rank r's pending HDR come in?  A beat is taken (last_seen updated,
 * the receive posted again) and reported as "not yet".  1, 0, or MH_EMPI. */
static int hdr_done(int r, map_hdr_t *hdr, MPI_Request *req,
                    double *last_seen) {
  for (;;) {
    int got = 0;
    if (MPI_Test(req, &got, MPI_STATUS_IGNORE) != MPI_SUCCESS) return MH_EMPI;
    if (!got) return 0;
    *last_seen = mh__now();
    if (!hdr->beat) return 1;
    if (MPI_Irecv(hdr, (int)sizeof *hdr, MPI_BYTE, r, MH__TAG_MAP_HDR,
                  mh__mpi.comm, req) != MPI_SUCCESS)
      return MH_EMPI;
  }
}

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
  mh__trace_role(MH__TR_ROLE_RANK, 0);
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->has_job && !s->quit) pthread_cond_wait(&s->cv, &s->mu);
    if (s->quit) break;
    size_t first = s->first, count = s->count;
    pthread_mutex_unlock(&s->mu);
    uint64_t t0 = mh__trace_begin();
    int code = run_items(s->fn, s->ctx, s->in + first * s->in_size,
                         s->in_size, s->out + first * s->out_size,
                         s->out_size, count, s->st + first);
    mh__trace_end(t0, MH__TR_CHUNK, first, count, code);
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
  double *sent_at = mh__calloc((size_t)ranks, sizeof *sent_at);
  double *last_seen = mh__calloc((size_t)ranks, sizeof *last_seen);
  local_slot_t slot;
  memset(&slot, 0, sizeof slot);
  pthread_t tid;
  int rc = 0, have_thread = 0;
  if (!st || !busy_first || !busy || !reqs || !hdrs || !sent_at ||
      !last_seen) {
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
  double local_sent = 0;
  while (done < n) {
    int progress = 0;
    /* Keep every idle rank busy. */
    for (int r = 1; r < ranks && next < n; r++) {
      if (busy[r]) continue;
      size_t count = n - next < chunksize ? n - next : chunksize;
      if (send_chunk(r, name, next, count, (const char *)in + next * in_size,
                     in_size, out_size, &hdrs[r], &reqs[r]) != 0) {
        rc = MH_EMPI;
        goto stop;
      }
      busy[r] = 1;
      busy_first[r] = next;
      sent_at[r] = last_seen[r] = mh__now();
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
      local_sent = mh__now();
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
    /* Collect what has finished; take the beats of what has not. */
    double now = mh__now();
    for (int r = 1; r < ranks; r++) {
      if (!busy[r]) continue;
      int got = hdr_done(r, &hdrs[r], &reqs[r], &last_seen[r]);
      if (got < 0) {
        rc = MH_EMPI;
        goto stop;
      }
      if (!got) {
        if (now - last_seen[r] > mh__mpi.timeout) rank_stuck(r);
        if (mh__mpi.task_timeout > 0 && now - sent_at[r] > mh__mpi.task_timeout)
          task_overdue(r, name, now - sent_at[r]);
        continue;
      }
      size_t first = (size_t)hdrs[r].first, count = (size_t)hdrs[r].count;
      if (first != busy_first[r] || first + count > n) {
        rc = MH_EMPI;
        goto stop;
      }
      if ((count * out_size != 0 &&
           recv_timed((char *)out + first * out_size, count * out_size, r,
                      MH__TAG_MAP_OUT) != 0) ||
          recv_timed(st + first, count * sizeof *st, r, TAG_MAP_STATUS) != 0) {
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
      if (local_busy && mh__mpi.task_timeout > 0 &&
          now - local_sent > mh__mpi.task_timeout)
        task_overdue(0, name, now - local_sent);
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
  mh__free(sent_at);
  mh__free(last_seen);
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
  double local_started;         /* guarded by mu: when local_job began */
  int joined;
  pthread_t dispatcher, local;
  int ranks;
  mh_future_t **remote;         /* dispatcher only: future on each rank */
  double *sent_at, *last_seen;  /* dispatcher only: per rank */
  map_hdr_t *hdrs;
  MPI_Request *reqs;
  int *stbuf;                   /* dispatcher only: statuses of a chunk */
  size_t stcap;
} mpool_t;

static void *mpool_local_main(void *arg) {
  mpool_t *p = arg;
  mh__trace_role(MH__TR_ROLE_RANK, 0);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->local_job && !(p->stopping && !p->head)) {
      pthread_cond_wait(&p->cv, &p->mu);
    }
    mh_future_t *f = p->local_job;
    if (!f) break;
    pthread_mutex_unlock(&p->mu);
    uint64_t t0 = mh__trace_begin();
    int code = mh__task_run(mh__future_task(f));
    mh__trace_end(t0, MH__TR_TASK, MH__TR_SEQ, mh__future_task(f)->count, code);
    mh__future_finish(f, code);
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
  if (send_chunk(r, name, 0, t->count, t->in, t->in_size, t->out_size,
                 &p->hdrs[r], &p->reqs[r]) != 0)
    mh__mpi_fatal("sending a task to MPI rank %d (pid %d on %s) failed", r,
                  (int)mh__mpi.pids[r], mh__mpi_host(r));
  p->sent_at[r] = p->last_seen[r] = mh__now();
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
       recv_timed(t->out, t->count * t->out_size, r, MH__TAG_MAP_OUT) != 0) ||
      recv_timed(st, t->count * sizeof *st, r, TAG_MAP_STATUS) != 0)
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
        p->local_started = mh__now();
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
       * thread): sleep until a submit, a local finish or shutdown, or
       * until the local task's time is up. */
      if (p->local_busy && mh__mpi.task_timeout > 0) {
        double ran = mh__now() - p->local_started;
        if (ran > mh__mpi.task_timeout)
          task_overdue(0, mh_task_name(mh__future_task(p->local_job)->fn),
                       ran);
        mh__deadline_t dl;
        mh__deadline_init(&dl, mh__mpi.task_timeout - ran + 0.01);
        mh__cond_wait(&p->cv, &p->mu, &dl);
      } else {
        pthread_cond_wait(&p->cv, &p->mu);
      }
      pthread_mutex_unlock(&p->mu);
      continue;
    }
    if (p->local_busy && mh__mpi.task_timeout > 0 &&
        mh__now() - p->local_started > mh__mpi.task_timeout)
      task_overdue(0, mh_task_name(mh__future_task(p->local_job)->fn),
                   mh__now() - p->local_started);
    pthread_mutex_unlock(&p->mu);
    double now = mh__now();
    for (int r = 1; r < p->ranks; r++) {
      if (!p->remote[r]) continue;
      int got = hdr_done(r, &p->hdrs[r], &p->reqs[r], &p->last_seen[r]);
      if (got < 0)
        mh__mpi_fatal("waiting for MPI rank %d (pid %d on %s) failed", r,
                      (int)mh__mpi.pids[r], mh__mpi_host(r));
      if (got) {
        mpool_collect(p, r);
        progress = 1;
        continue;
      }
      if (now - p->last_seen[r] > mh__mpi.timeout) rank_stuck(r);
      if (mh__mpi.task_timeout > 0 && now - p->sent_at[r] > mh__mpi.task_timeout)
        task_overdue(r, mh_task_name(mh__future_task(p->remote[r])->fn),
                     now - p->sent_at[r]);
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
  p->sent_at = mh__calloc(n, sizeof *p->sent_at);
  p->last_seen = mh__calloc(n, sizeof *p->last_seen);
  int rc = MH_ENOMEM;
  if (!p->remote || !p->hdrs || !p->reqs || !p->sent_at || !p->last_seen)
    goto fail;
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
  mh__free(p->sent_at);
  mh__free(p->last_seen);
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

/* Python's shutdown(cancel_futures=True): what is still queued (not yet
 * handed to a rank) is cancelled; a future handed out is running and
 * finishes with its result, so mh_future_cancelled and mh_future_result
 * agree.  MH_SHUTDOWN_TERMINATE (the shell adds CANCEL_FUTURES to it) cannot
 * end a running chunk, short of ending the job: it cancels the queue too.
 * The shell may call this again (a TERMINATE escalating a waiting shutdown)
 * while another thread joins the dispatcher here: nothing but the queue is
 * touched then. */
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
  mh__free(p->sent_at);
  mh__free(p->last_seen);
  mh__free(p->stbuf);
  mh__free(p);
}

const mh__backend_ops_t mh__backend_mpi = {
    "mpi", mpool_start, mpool_submit, NULL, mpool_shutdown, mpool_destroy, NULL};
