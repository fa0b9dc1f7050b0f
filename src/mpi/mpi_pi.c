/* SPDX-License-Identifier: MIT */
/* mpi_pi.c - the pi job over MPI ranks x threads, with blocks handed out on
 * demand.
 *
 * Rank 0 owns the global block counter, an atomic: its own threads take
 * blocks from it one at a time (no hop through a feeding thread, which on a
 * loaded machine may wait milliseconds for a core), and its main thread
 * grants ranges from it to the other ranks.  A rank > 0 feeds its threads
 * from a local range [next, end) plus one range fetched ahead: its main
 * thread asks for the next range when half of the current one is done (or
 * only a block per thread is left).  Grants shrink with the work left
 * (guided scheduling: the requester's share of a quarter of what remains),
 * so a slow rank asks less often and ends up with fewer blocks, and the tail
 * is one block per thread.
 * A block is defined by (seed, block index) only and counts are integers, so
 * the sum is the same whatever rank counted which block.
 *
 * Only the main thread of each rank calls MPI; it polls with short naps
 * because Open MPI's blocking calls spin on a core the counting threads need.
 * Ranks > 0 send a heartbeat every second; rank 0 declares a rank stuck after
 * mh__mpi.timeout seconds of silence, and a rank > 0 declares rank 0 stuck
 * when a request is not answered in that time.  Either ends the job with our
 * message (mh__mpi_fatal).
 *
 * Locking: local_t.mu guards next, end, cur_size, pend_*, have_pend and
 * finished (ranks > 0); rank 0's counter, stop flag and exited count are
 * atomics;
 * each thread's counter is written only by its thread (on its own cache line)
 * and read by the main thread after pthread_join.
 */
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trace_internal.h"
#include "mpi_internal.h"

/* Messages up to rank 0: {kind, a, b, c, d}. */
enum { UP_REQUEST = 1, UP_HEARTBEAT = 2, UP_RESULT = 3 };
#define MSG_WORDS 5

typedef struct counter {
  _Alignas(MH__CACHE_LINE) uint64_t inside;
  uint64_t blocks;
  uint64_t points;
  int err;
} counter_t;

typedef struct local {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t next, end;             /* the range being counted */
  uint64_t cur_size;              /* its size when it was started */
  uint64_t pend_start, pend_count; /* the range fetched ahead */
  int have_pend;
  int finished;                   /* no more ranges will come */
  /* Fixed during the run. */
  uint64_t n, seed, nblocks;
  mh_pi_kernel_t kernel;
  long slow_us;                   /* test hook: sleep per block */
  int die_after_first;            /* test hook: SIGKILL self */
  counter_t *counters;
  /* Rank 0 only: the global counter, shared by its threads and its main
   * thread's grants; a stop flag (cancel, error); threads that are done. */
  _Atomic uint64_t *shared_next;
  _Atomic int stop;
  _Atomic int exited;
  _Atomic int nthreads;           /* rank 0: threads started (the last to
                                     exit signals cv) */
} local_t;

typedef struct thread_arg {
  local_t *l;
  counter_t *c;
  int number; /* the thread's number in its rank (its trace track) */
} thread_arg_t;

static void *count_main(void *arg) {
  thread_arg_t *ta = arg;
  local_t *l = ta->l;
  counter_t *c = ta->c;
  mh__trace_role(MH__TR_ROLE_RANK, ta->number);
  for (;;) {
    uint64_t b;
    if (l->shared_next) {
      if (atomic_load_explicit(&l->stop, memory_order_relaxed)) break;
      b = atomic_fetch_add_explicit(l->shared_next, 1, memory_order_relaxed);
      if (b >= l->nblocks) break;
    } else {
      pthread_mutex_lock(&l->mu);
      while (l->next == l->end) {
        if (l->have_pend) {
          l->next = l->pend_start;
          l->end = l->pend_start + l->pend_count;
          l->cur_size = l->pend_count;
          l->have_pend = 0;
          break;
        }
        if (l->finished) {
          pthread_mutex_unlock(&l->mu);
          return NULL;
        }
        pthread_cond_wait(&l->cv, &l->mu);
      }
      b = l->next++;
      pthread_mutex_unlock(&l->mu);
    }

    uint64_t first = b * MH_PI_BLOCK_POINTS;
    uint64_t np = l->n - first < MH_PI_BLOCK_POINTS ? l->n - first
                                                     : MH_PI_BLOCK_POINTS;
    uint64_t in = 0; /* the block's trace slice is mh_pi_count_block's */
    if (c->err == 0) {
      int rc = mh_pi_count_block(l->seed, b, np, l->kernel, &in);
      if (rc != 0) c->err = rc;
    }
    if (c->err == 0) {
      c->inside += in;
      c->blocks++;
      c->points += np;
    }
    if (l->slow_us > 0) mh__sleep((double)l->slow_us * 1e-6);
    if (l->die_after_first) raise(SIGKILL);
  }
  /* Rank 0's main thread may be asleep waiting for the last of us. */
  if (atomic_fetch_add(&l->exited, 1) + 1 == atomic_load(&l->nthreads)) {
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
  }
  return NULL;
}

/* Does this rank (> 0) want another range?  When half of the current one
 * is done, so that the answer comes long before the threads run dry.
 * (Caller holds mu.) */
static int wants_more(const local_t *l, int threads) {
  uint64_t left = l->end - l->next;
  return !l->finished && !l->have_pend &&
         (left * 2 <= l->cur_size || left <= (uint64_t)threads);
}

/* Hand [start, start+count) to the local threads; count 0 = no more. */
static void give(local_t *l, uint64_t start, uint64_t count) {
  pthread_mutex_lock(&l->mu);
  if (count == 0) {
    l->finished = 1;
  } else {
    l->pend_start = start;
    l->pend_count = count;
    l->have_pend = 1;
  }
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* Stop counting as soon as the blocks in hand are done (cancel). */
static void drop_all(local_t *l) {
  atomic_store(&l->stop, 1);
  pthread_mutex_lock(&l->mu);
  l->next = l->end;
  l->have_pend = 0;
  l->finished = 1;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* The guided share of what remains for a requester with `threads` threads. */
static uint64_t grant_size(uint64_t remaining, int threads, int total) {
  if (remaining == 0) return 0;
  uint64_t g = remaining / (4 * (uint64_t)total) * (uint64_t)threads;
  if (g < 1) g = 1;
  if (g > remaining) g = remaining;
  return g;
}

/* Test hooks, read from the environment: MH_MPI_TEST_SLOW="rank:us" sleeps
 * that long after each block on that rank; MH_MPI_TEST_DIE=rank kills that
 * rank after its first block; MH_MPI_TEST_HANG=rank stops that rank's main
 * thread (no more heartbeats or requests) after its first range.  Read only
 * in test builds (MH_TEST_HOOKS: the tests' manyhands-mpi in build/test/);
 * the installed manyhands-mpi ignores these variables. */
static void read_hooks(local_t *l, int *hang) {
#ifndef MH_TEST_HOOKS
  MH__UNUSED(l);
  *hang = 0;
#else
  const char *s = getenv("MH_MPI_TEST_SLOW");
  int r;
  long us;
  if (s && sscanf(s, "%d:%ld", &r, &us) == 2 && r == mh__mpi.rank)
    l->slow_us = us;
  s = getenv("MH_MPI_TEST_DIE");
  if (s && *s && atoi(s) == mh__mpi.rank) l->die_after_first = 1;
  s = getenv("MH_MPI_TEST_HANG");
  *hang = s && *s && atoi(s) == mh__mpi.rank;
#endif
}

/* ---- rank 0 -------------------------------------------------------------- */

typedef struct server {
  int total_threads;
  int *threads;       /* threads of each rank */
  double *last_seen;  /* last message from each rank */
  int *done;          /* RESULT received */
  uint64_t *blocks;   /* blocks of each rank */
  uint64_t inside, points;
  int err;
} server_t;

static int serve_message(server_t *sv, local_t *l, const uint64_t *m,
                         int src, int cancelled) {
  sv->last_seen[src] = mh__now();
  if (m[0] == UP_REQUEST) {
    uint64_t g[2] = {0, 0};
    uint64_t seen = atomic_load(l->shared_next);
    if (!cancelled && seen < l->nblocks) {
      uint64_t want = grant_size(l->nblocks - seen, sv->threads[src],
                                 sv->total_threads);
      /* Rank 0's threads take blocks meanwhile: claim, then clamp. */
      g[0] = atomic_fetch_add(l->shared_next, want);
      if (g[0] < l->nblocks)
        g[1] = l->nblocks - g[0] < want ? l->nblocks - g[0] : want;
    }
    return mh__mpi_err(MPI_Send(g, 2, MPI_UINT64_T, src, MH__TAG_PI_DOWN,
                                mh__mpi.comm));
  }
  if (m[0] == UP_RESULT) {
    sv->done[src] = 1;
    sv->inside += m[1];
    sv->blocks[src] = m[2];
    sv->points += m[3];
    if (m[4] != 0 && sv->err == 0) sv->err = (int)(int64_t)m[4];
  }
  return 0;
}

static int run_rank0(local_t *l, int threads, server_t *sv,
                     const volatile int *cancel) {
  uint64_t msg[MSG_WORDS];
  MPI_Request req;
  MPI_Status st;
  int pending = mh__mpi.size - 1, rc = 0, cancelled = 0;
  if (pending > 0 &&
      MPI_Irecv(msg, MSG_WORDS, MPI_UINT64_T, MPI_ANY_SOURCE, MH__TAG_PI_UP,
                mh__mpi.comm, &req) != MPI_SUCCESS)
    return MH_EMPI;
  for (;;) {
    /* Answer every message that is in. */
    while (pending > 0) {
      int got = 0;
      if (MPI_Test(&req, &got, &st) != MPI_SUCCESS) return MH_EMPI;
      if (!got) break;
      rc = serve_message(sv, l, msg, st.MPI_SOURCE, cancelled);
      if (rc != 0) return rc;
      if (msg[0] == UP_RESULT) pending--;
      if (pending > 0 &&
          MPI_Irecv(msg, MSG_WORDS, MPI_UINT64_T, MPI_ANY_SOURCE,
                    MH__TAG_PI_UP, mh__mpi.comm, &req) != MPI_SUCCESS)
        return MH_EMPI;
    }
    if (!cancelled && cancel && *cancel) {
      cancelled = 1;
      drop_all(l);
    }
    /* Our own threads take blocks from the counter themselves. */
    int local_done = atomic_load(&l->exited) == threads;
    if (local_done && pending == 0) break;
    if (pending == 0) {
      /* Only our own threads are left: sleep until the last one exits (it
       * signals cv), waking every 20 ms for the cancel flag.  A 1 ms nap
       * here would wake this thread a thousand times a second, each time
       * taking a core from a counting thread on a busy machine. */
      mh__deadline_t dl;
      mh__deadline_init(&dl, 0.02);
      pthread_mutex_lock(&l->mu);
      while (atomic_load(&l->exited) != threads &&
             mh__cond_wait(&l->cv, &l->mu, &dl) == 0) {
      }
      pthread_mutex_unlock(&l->mu);
      continue;
    }
    double now = mh__now();
    for (int r = 1; r < mh__mpi.size; r++) {
      if (!sv->done[r] && now - sv->last_seen[r] > mh__mpi.timeout) {
        mh__mpi_trace_end(r, MH_ETIMEDOUT);
        mh__mpi_fatal("MPI rank %d (pid %d on %s) stopped responding: no "
                      "heartbeat for %.0f s; stopping the job",
                      r, (int)mh__mpi.pids[r], mh__mpi_host(r),
                      mh__mpi.timeout);
      }
    }
    mh__mpi_nap(1000);
  }
  return cancelled ? MH_ECANCELED : 0;
}

/* ---- ranks > 0 ----------------------------------------------------------- */

static int send_up(uint64_t kind, uint64_t a, uint64_t b, uint64_t c,
                   uint64_t d) {
  uint64_t m[MSG_WORDS] = {kind, a, b, c, d};
  return mh__mpi_err(
      MPI_Send(m, MSG_WORDS, MPI_UINT64_T, 0, MH__TAG_PI_UP, mh__mpi.comm));
}

static int run_worker(local_t *l, int threads, int hang) {
  uint64_t g[2];
  MPI_Request req = MPI_REQUEST_NULL;
  int asked = 0;
  double asked_at = 0, beat_at = mh__now();
  double beat_every = mh__mpi.timeout / 4 < 1.0 ? mh__mpi.timeout / 4 : 1.0;
  for (;;) {
    pthread_mutex_lock(&l->mu);
    int want = wants_more(l, threads), finished = l->finished;
    pthread_mutex_unlock(&l->mu);
    if (finished) break;
    if (want && !asked) {
      if (send_up(UP_REQUEST, 0, 0, 0, 0) != 0 ||
          MPI_Irecv(g, 2, MPI_UINT64_T, 0, MH__TAG_PI_DOWN, mh__mpi.comm,
                    &req) != MPI_SUCCESS)
        return MH_EMPI;
      asked = 1;
      asked_at = mh__now();
    }
    if (asked) {
      int got = 0;
      if (MPI_Test(&req, &got, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return MH_EMPI;
      if (got) {
        asked = 0;
        give(l, g[0], g[1]);
        while (hang) mh__sleep(3600); /* test hook: a stuck rank */
        continue;
      }
      if (mh__now() - asked_at > mh__mpi.timeout)
        mh__mpi_fatal("MPI rank 0 (pid %d on %s) stopped responding: no "
                      "answer for %.0f s; stopping the job",
                      (int)mh__mpi.pids[0], mh__mpi_host(0), mh__mpi.timeout);
    }
    double now = mh__now();
    if (now - beat_at >= beat_every) {
      if (send_up(UP_HEARTBEAT, 0, 0, 0, 0) != 0) return MH_EMPI;
      beat_at = now;
    }
    mh__mpi_nap(1000);
  }
  return 0;
}

/* ---- the collective call --------------------------------------------------- */

int mh_mpi_pi_run(const mh_pi_options_t *opts, int threads,
                  mh_pi_result_t *res, mh_mpi_pi_stats_t *stats) {
  if (!mh__mpi.inited || !opts || !res || threads < 0 || threads > 4096 ||
      (threads == 0 && mh__mpi.rank == 0))
    return MH_EINVAL;
  /* Rank 0's options decide; every rank learns them here. */
  uint64_t params[3] = {opts->n, opts->seed, (uint64_t)opts->kernel};
  if (MPI_Bcast(params, 3, MPI_UINT64_T, 0, mh__mpi.comm) != MPI_SUCCESS)
    return MH_EMPI;
  if (params[0] == 0 || params[0] > (uint64_t)INT64_MAX) return MH_EINVAL;
  int all_threads = 0;
  int *per_rank = mh__calloc((size_t)mh__mpi.size, sizeof *per_rank);
  /* The other ranks are already in the run: one that cannot take part
   * must end the job rather than leave them waiting. */
  if (!per_rank) mh__mpi_fatal("rank %d is out of memory", mh__mpi.rank);
  if (MPI_Allgather(&threads, 1, MPI_INT, per_rank, 1, MPI_INT,
                    mh__mpi.comm) != MPI_SUCCESS) {
    mh__free(per_rank);
    return MH_EMPI;
  }
  int taking_part = 0;
  for (int r = 0; r < mh__mpi.size; r++) {
    all_threads += per_rank[r];
    taking_part += per_rank[r] > 0;
  }

  double t0 = mh__now();
  int rc = 0, hang = 0;
  local_t l;
  memset(&l, 0, sizeof l);
  l.n = params[0];
  l.seed = params[1];
  l.kernel = (mh_pi_kernel_t)params[2];
  l.nblocks = (l.n + MH_PI_BLOCK_POINTS - 1) / MH_PI_BLOCK_POINTS;
  read_hooks(&l, &hang);
  _Atomic uint64_t counter;
  atomic_init(&counter, 0);
  atomic_init(&l.stop, 0);
  atomic_init(&l.exited, 0);
  if (mh__mpi.rank == 0) l.shared_next = &counter;
  server_t sv;
  memset(&sv, 0, sizeof sv);
  /* A rank with no threads sits this run out: it only reports zeros. */
  size_t nthr = threads > 0 ? (size_t)threads : 1;
  pthread_t *tids = mh__calloc(nthr, sizeof *tids);
  thread_arg_t *args = mh__calloc(nthr, sizeof *args);
  /* One spare counter's room to align the array on a cache line (calloc
   * guarantees only 16 bytes). */
  void *counters_raw = mh__calloc(nthr + 1, sizeof *l.counters);
  if (counters_raw)
    l.counters = (counter_t *)(((uintptr_t)counters_raw + MH__CACHE_LINE - 1) &
                               ~(uintptr_t)(MH__CACHE_LINE - 1));
  if (mh__mpi.rank == 0) {
    size_t n = (size_t)mh__mpi.size;
    sv.last_seen = mh__calloc(n, sizeof *sv.last_seen);
    sv.done = mh__calloc(n, sizeof *sv.done);
    sv.blocks = mh__calloc(n, sizeof *sv.blocks);
  }
  if (!tids || !args || !l.counters ||
      (mh__mpi.rank == 0 && (!sv.last_seen || !sv.done || !sv.blocks))) {
    mh__mpi_fatal("rank %d is out of memory", mh__mpi.rank);
  }
  pthread_mutex_init(&l.mu, NULL);
  if (mh__cond_init(&l.cv, false) != 0)
    mh__mpi_fatal("rank %d cannot make a condition variable", mh__mpi.rank);
  atomic_store(&l.nthreads, threads);
  int started = 0;
  for (; started < threads; started++) {
    args[started].l = &l;
    args[started].c = &l.counters[started];
    args[started].number = started;
    if (pthread_create(&tids[started], NULL, count_main, &args[started]))
      break;
  }
  if (started < threads) {
    /* Count with the threads we have; the answer does not change.  (A rank
     * with threads == 0 starts none and never asks for blocks.) */
    if (started == 0) mh__mpi_fatal("rank %d could not start a thread",
                                    mh__mpi.rank);
    threads = started;
    /* A thread may already have exited unnoticed: rank 0's wait below
     * re-checks the count every 20 ms anyway. */
    atomic_store(&l.nthreads, started);
  }
  if (mh__mpi.rank == 0) {
    sv.threads = per_rank;
    sv.total_threads = all_threads;
    for (int r = 0; r < mh__mpi.size; r++) sv.last_seen[r] = mh__now();
    rc = run_rank0(&l, threads, &sv, opts->cancel);
  } else if (threads > 0) {
    rc = run_worker(&l, threads, hang);
  }
  if (rc != 0 && rc != MH_ECANCELED) drop_all(&l);
  for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
  pthread_mutex_destroy(&l.mu);
  pthread_cond_destroy(&l.cv);

  uint64_t inside = 0, blocks = 0, points = 0;
  int err = 0;
  for (int i = 0; i < threads; i++) {
    inside += l.counters[i].inside;
    blocks += l.counters[i].blocks;
    points += l.counters[i].points;
    if (!err) err = l.counters[i].err;
  }
  if (mh__mpi.rank != 0 && rc == 0)
    rc = send_up(UP_RESULT, inside, blocks, points, (uint64_t)(int64_t)err);
  if (mh__mpi.rank == 0) {
    sv.blocks[0] = blocks;
    inside += sv.inside;
    points += sv.points;
    if (!err) err = sv.err;
    if (stats && stats->rank_blocks)
      memcpy(stats->rank_blocks, sv.blocks,
             (size_t)mh__mpi.size * sizeof *sv.blocks);
  }
  if (rc == 0 && err != 0) rc = err;
  /* Every rank returns rank 0's result and code, so that a program (the
   * command above all) takes the same branches on every rank and keeps
   * making the same collective calls. */
  double seconds = mh__now() - t0;
  /* The last word says whether rank 0 traces: then every rank hands it
   * this run's records. */
  uint64_t fin[5] = {(uint64_t)(int64_t)rc, inside, points, 0,
                     (uint64_t)mh__mpi_trace_tracing()};
  memcpy(&fin[3], &seconds, sizeof seconds);
  /* Polled with naps, not a blocking MPI_Bcast: Open MPI's blocking calls
   * spin, and a rank that sits a run out (0 threads) or is done early would
   * otherwise spin here for the rest of the run, taking a core from the
   * ranks still counting. */
  MPI_Request breq;
  if (MPI_Ibcast(fin, 5, MPI_UINT64_T, 0, mh__mpi.comm, &breq) != MPI_SUCCESS)
    mh__mpi_fatal("rank %d lost rank 0 at the end of a run", mh__mpi.rank);
  for (long nap = 20;;) {
    int got = 0;
    if (MPI_Test(&breq, &got, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      mh__mpi_fatal("rank %d lost rank 0 at the end of a run", mh__mpi.rank);
    if (got) break;
    mh__mpi_nap(nap);
    if (nap < 1000) nap *= 2;
  }
  if (fin[4] && mh__mpi_trace_gather() != 0)
    mh__mpi_fatal("rank %d lost rank 0 while gathering the trace", mh__mpi.rank);
  rc = (int)(int64_t)fin[0];
  inside = fin[1];
  points = fin[2];
  memcpy(&seconds, &fin[3], sizeof seconds);

  memset(res, 0, sizeof *res);
  res->n = l.n;
  res->done = points;
  res->inside = inside;
  if (points > 0) mh_pi_estimate(inside, points, &res->pi, &res->stderr_pi);
  res->abs_error = fabs(res->pi - M_PI);
  res->seconds = seconds;
  res->kernel = l.kernel == MH_PI_KERNEL_AUTO ? mh_pi_kernel_best() : l.kernel;
  res->workers = all_threads;
  res->backend = MH_BACKEND_MPI;
  if (stats) {
    stats->ranks = taking_part;
    stats->threads = threads;
    stats->blocks = blocks;
  }
  mh__free(tids);
  mh__free(args);
  mh__free(counters_raw);
  mh__free(sv.last_seen);
  mh__free(sv.done);
  mh__free(sv.blocks);
  mh__free(per_rank);
  return rc;
}
