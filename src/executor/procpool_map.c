/* SPDX-License-Identifier: MIT */
/* procpool_map.c - the claim-based map, the caller's side: fill the shared
 * window, collect the chunks the workers finished, refill, and end the map.
 *
 * Maps (mh__pp_map) bypass jobs: the calling thread fills a shared window,
 * the dispatcher gives each live worker one K_MAP entry, and workers claim
 * chunks from the window themselves (the protocol is written beside
 * pp_map_sh_t in procpool_internal.h).  The dispatcher only settles the
 * chunk of a worker that dies.
 *
 * Invariants:
 *   - One map at a time per pool: the thread that set map_busy (under mu)
 *     owns the map's parameters (SC) until it clears it; a second thread
 *     gets MH__MAP_GENERIC and uses job futures.
 *   - The parameters in msh are written only while no worker is attached
 *     (map_attached == 0): the previous map waited for every worker to leave
 *     before it returned.
 *   - A window slot belongs to the map's thread while it is not READY and
 *     not owned (it fills it, or settles it as MS_PARENT), to its owner
 *     while owned; the map's thread takes results out only of DONE slots,
 *     in chunk order.
 *   - The map returns only after every chunk was collected or settled, and
 *     every worker has left it, so the next map can reuse the window.
 * Lock order: only pp->mu, held briefly to change map_busy/map_on; never
 * held across a wait.  Calls procpool_io.c only.
 */
#include <stdatomic.h>
#include <string.h>

#include "procpool_internal.h"
#include "spin.h"

/* ==== one call's bookkeeping ============================================== */

typedef struct pp_mapcall {
  const char *in;
  char *out;
  int *status;
  size_t in_size, out_size, n, chunk, nchunks, wc;
  int first; /* code of the lowest failing item collected so far */
  size_t pf_out, pf_st; /* bytes of out / status faulted in ahead so far */
} pp_mapcall_t;

/* The caller's output buffers are faulted in ahead of the copies into them,
 * a slice at a time: a fresh buffer would otherwise cost a page fault per
 * page, which on some virtual machines is dearer than the whole copy. */
#define PP_PREFAULT_SLICE ((size_t)4 << 20)

static void pp_call_prefault(char *base, size_t *done, size_t upto, size_t total) {
  if (upto <= *done) return;
  size_t to = *done + PP_PREFAULT_SLICE;
  if (to < upto) to = upto;
  if (to > total) to = total;
  mh__prefault(base + *done, to - *done);
  *done = to;
}

/* ==== the window ========================================================== */

/* Copy the inputs of chunk j into its window slot and make it READY. */
static void pp_call_fill(mh__pp_t *pp, pp_mapcall_t *c, size_t j) {
  pp_map_sh_t *m = pp->msh;
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t cnt = c->n - lo < c->chunk ? c->n - lo : c->chunk;
  if (c->in_size)
    memcpy(pp->mdata + k * c->chunk * c->in_size, c->in + lo * c->in_size,
           cnt * c->in_size);
  m->start[k] = lo;
  m->code[k] = 0;
  pp->mtries[k] = 0;
  atomic_store_explicit(&m->state[k], MS_TAG(j, MS_READY), memory_order_release);
}

/* The bytes path's hook (see procpool.h): this thread's only. */
static _Thread_local mh__pp_take_fn take_fn;
static _Thread_local void *take_arg;
static _Thread_local size_t take_slots;

void mh__pp_take_hook(mh__pp_take_fn fn, void *arg, size_t max_slots) {
  take_fn = fn;
  take_arg = arg;
  take_slots = fn && max_slots > 1 ? max_slots : 0;
}

/* Copy the results of the DONE chunk j out of the window. */
static void pp_call_take(mh__pp_t *pp, pp_mapcall_t *c, size_t j) {
  pp_map_sh_t *m = pp->msh;
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t cnt = c->n - lo < c->chunk ? c->n - lo : c->chunk;
  if (c->out_size) {
    pp_call_prefault(c->out, &c->pf_out, (lo + cnt) * c->out_size,
                     c->n * c->out_size);
    memcpy(c->out + lo * c->out_size,
           pp->mdata + m->out_off + k * c->chunk * c->out_size, cnt * c->out_size);
  }
  if (c->status) {
    pp_call_prefault((char *)c->status, &c->pf_st, (lo + cnt) * sizeof(int),
                     c->n * sizeof(int));
    memcpy(c->status + lo, pp->mdata + m->st_off + k * c->chunk * sizeof(int),
           cnt * sizeof(int));
  }
  if (!c->first && m->code[k]) c->first = m->code[k];
  if (take_fn) take_fn(take_arg, lo, cnt);
}

/* Settle chunk j here with `code`, if its state is still `sv`: take it
 * (MS_PARENT), give its unrun items the code, mark it DONE.  1 if it did. */
static int pp_call_settle(mh__pp_t *pp, pp_mapcall_t *c, size_t j, uint64_t sv,
                          int code) {
  pp_map_sh_t *m = pp->msh;
  size_t k = j % c->wc, lo = j * c->chunk;
  size_t hi = lo + c->chunk < c->n ? lo + c->chunk : c->n;
  if (!atomic_compare_exchange_strong(&m->state[k], &sv, MS_TAG(j, MS_PARENT)))
    return 0;
  size_t from = (size_t)m->start[k];
  if (c->status)
    for (size_t i = from; i < hi; i++)
      ((int *)(void *)(pp->mdata + m->st_off))[k * c->chunk + i - lo] = code;
  if (from < hi && !m->code[k]) m->code[k] = code;
  atomic_store_explicit(&m->state[k], MS_TAG(j, MS_DONE), memory_order_release);
  return 1;
}

/* ==== the map ============================================================= */

/* Take the map for this thread: 0, MH_ESHUTDOWN, or MH__MAP_GENERIC when
 * another thread maps or the pool is broken (chunk futures do it then). */
static int pp_call_begin(mh__pp_t *pp) {
  int rc = 0;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->shut))
    rc = MH_ESHUTDOWN;
  else if (atomic_load(&pp->map_busy) || atomic_load(&pp->broken_flag))
    rc = MH__MAP_GENERIC;
  else
    atomic_store(&pp->map_busy, 1);
  pthread_mutex_unlock(&pp->mu);
  return rc;
}

/* Write the map's parameters (no worker is attached) and fill the window. */
static void pp_call_start(mh__pp_t *pp, pp_mapcall_t *c, mh_task_fn fn, void *ctx) {
  pp_map_sh_t *m = pp->msh;
  atomic_fetch_add(&m->gen, 1);
  m->fn = fn;
  m->ctx = ctx;
  m->n = c->n;
  m->chunk = c->chunk;
  m->nchunks = c->nchunks;
  m->wc = c->wc;
  m->in_size = c->in_size;
  m->out_size = c->out_size;
  m->want_st = c->status != NULL;
  m->out_off = pp_round(c->wc * c->chunk * c->in_size);
  m->st_off = m->out_off + pp_round(c->wc * c->chunk * c->out_size);
  atomic_store(&m->hint, 0);
  atomic_store(&m->ndone, 0);
  atomic_store(&m->wake_at, 0);
  atomic_store(&m->pwait, 0);
  atomic_store(&m->stop, 0);
  for (size_t k = 0; k < c->wc; k++) atomic_store(&m->state[k], 0);
  if (!pp->mpopulated) {
    /* One call faults the window in instead of one fault per page. */
    pp->mpopulated = 1;
    mh__prefault(pp->mdata, PP_MAP_DATA);
  }
  for (size_t j = 0; j < c->wc; j++) pp_call_fill(pp, c, j);
}

/* Tell the workers the map is over, wait until every one has left it (or
 * died), and give the map up. */
static void pp_call_end(mh__pp_t *pp) {
  pp_map_sh_t *m = pp->msh;
  atomic_store(&m->stop, 1);
  mh__pp_io_map_bump_workers(m);
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_on, 0);
  pthread_mutex_unlock(&pp->mu);
  mh__pp_io_wake_disp(pp, 1);
  uint32_t a;
  while ((a = atomic_load(&pp->map_attached)) != 0)
    mh__futex_wait_for(&pp->map_attached, a, 0.1, MH__FUTEX_PRIVATE);
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_busy, 0);
  pthread_mutex_unlock(&pp->mu);
  mh__pp_io_wake_disp(pp, 1); /* a shutdown may wait for this map */
}

int mh__pp_map(mh__pp_t *pp, mh_task_fn fn, void *ctx, const void *in,
               size_t in_size, void *out, size_t out_size, size_t n,
               size_t chunksize, int *status, double timeout) {
  if (!pp || !fn || (n && ((!in && in_size) || (!out && out_size))))
    return MH_EINVAL;
  if (n == 0) return 0;
  if (in_size > PP_MAP_DATA || out_size > PP_MAP_DATA) return MH__MAP_GENERIC;
  size_t per = in_size + out_size + (status ? sizeof(int) : 0);
  size_t items = per ? (PP_MAP_DATA - 4 * PP_ALIGN) / per : SIZE_MAX;
  size_t w4 = (size_t)pp->n * 4, chunk = chunksize;
  if (!chunk) {
    /* Pool.map's rule (about four chunks per worker), but no bigger than
     * lets the window hold four chunks per worker: claims are cheap, and
     * the parent copies results out while workers run the next chunks. */
    chunk = n / w4 + (n % w4 != 0);
    size_t cap = items / w4;
    if (chunk > cap) chunk = cap;
    if (chunk > PP_MAP_CHUNK_CAP) chunk = PP_MAP_CHUNK_CAP;
    if (chunk < 1) chunk = 1;
  }
  if (chunk > n) chunk = n;
  size_t nchunks = n / chunk + (n % chunk != 0);
  size_t wc = per ? items / chunk : PP_MAP_SLOTS;
  if (wc > PP_MAP_SLOTS) wc = PP_MAP_SLOTS;
  if (take_slots && wc > take_slots) wc = take_slots;
  if (wc > nchunks) wc = nchunks;
  if (wc < 2 && nchunks > 1) return MH__MAP_GENERIC; /* chunks too big */
  if (wc < 1) return MH__MAP_GENERIC;
  int rc = pp_call_begin(pp);
  if (rc) return rc;

  pp_map_sh_t *m = pp->msh;
  pp_mapcall_t c = {in, out, status, in_size, out_size, n, chunk, nchunks, wc, 0, 0, 0};
  pp_call_start(pp, &c, fn, ctx);
  size_t filled = wc, next = 0;
  double lim = timeout > 0 ? timeout : timeout < 0 ? 0 : pp->cfg.task_timeout;
  atomic_store(&pp->map_lim_us, (int64_t)(lim * 1e6));
  pthread_mutex_lock(&pp->mu);
  atomic_store(&pp->map_on, 1);
  pthread_mutex_unlock(&pp->mu);
  mh__pp_io_wake_disp(pp, 1); /* the dispatcher hands K_MAP entries to the workers */

  int stopping = 0; /* the code the rest gets: cancelled, or broken */
  mh__spin_t idle = MH__SPIN_INIT;
  while (next < filled) {
    int did = 0, refilled = 0;
    while (next < filled) {
      size_t k = next % wc;
      if (atomic_load_explicit(&m->state[k], memory_order_acquire) !=
          MS_TAG(next, MS_DONE))
        break;
      pp_call_take(pp, &c, next);
      if (filled < nchunks && !stopping) {
        pp_call_fill(pp, &c, filled++);
        refilled = 1;
      }
      next++;
      did = 1;
    }
    if (refilled) mh__pp_io_map_wake_workers(m);
    if (!stopping) {
      if (atomic_load(&pp->shut) & 2)
        stopping = MH_ECANCELED;
      else if (atomic_load(&pp->broken_flag))
        stopping = MH_EWORKERDIED;
      if (stopping) {
        atomic_store(&m->stop, 2);
        mh__pp_io_map_bump_workers(m);
      }
    }
    if (stopping) {
      /* Nobody claims any more: settle what is still READY here.  Chunks
       * owned by workers end when they finish or their death is settled. */
      for (size_t j = next; j < filled; j++)
        did |= pp_call_settle(pp, &c, j, MS_TAG(j, MS_READY), stopping);
      /* A broken pool gives its live workers up for dead (pp_disp_broken)
       * before the server's end kills them, so one may still claim a chunk
       * after pp_disp_map_dead settled its slot; nobody would settle that
       * chunk and the map would never end.  Once no worker is attached,
       * every chunk still owned is such a one: it fails here. */
      if (stopping == MH_EWORKERDIED && !atomic_load(&pp->map_attached)) {
        for (size_t j = next; j < filled; j++) {
          uint64_t sv = atomic_load(&m->state[j % wc]);
          if ((sv >> 16) != j + 1 || (sv & 0xFFFF) >= MS_PARENT) continue;
          did |= pp_call_settle(pp, &c, j, sv, stopping);
        }
      }
    }
    if (did) {
      mh__spin_reset(&idle);
      continue;
    }
    if (next >= filled) break;
    if (mh__spin_again(&idle, &MH__SPIN_PP_WORKER)) continue;
    /* Sleep until about half of the chunks in the window are done (or the
     * next one, when fewer remain), or the dispatcher says something. */
    uint64_t nd = atomic_load(&m->ndone);
    uint64_t want = next + (filled - next + 1) / 2;
    atomic_store(&m->wake_at, want > nd + 1 ? want : nd + 1);
    uint32_t seq = atomic_load(&m->done_seq);
    atomic_store(&m->pwait, 1);
    if (atomic_load(&m->ndone) < atomic_load(&m->wake_at) &&
        atomic_load(&m->state[next % wc]) != MS_TAG(next, MS_DONE) &&
        !(atomic_load(&pp->shut) & 2) && !atomic_load(&pp->broken_flag))
      mh__futex_wait_for(&m->done_seq, seq, 0.1, MH__FUTEX_SHARED);
    atomic_store(&m->pwait, 0);
    mh__spin_reset(&idle);
  }
  /* Chunks never copied in (a cancelling shutdown or a broken pool). */
  for (size_t j = filled; j < nchunks; j++) {
    size_t lo = j * chunk, cnt = n - lo < chunk ? n - lo : chunk;
    if (status)
      for (size_t i = 0; i < cnt; i++) status[lo + i] = stopping;
    if (!c.first) c.first = stopping;
  }
  pp_call_end(pp);
  return c.first;
}
