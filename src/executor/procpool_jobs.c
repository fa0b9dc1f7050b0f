/* SPDX-License-Identifier: MIT */
/* procpool_jobs.c - the process pool's dispatcher, its rings' side: jobs
 * handed to workers' rings with their inputs, results collected out of
 * them, and the claim-based map's entries (attaching workers to a map,
 * settling the chunk of a worker that died).
 *
 * Everything here runs on the dispatcher thread (pp_disp_*), called by the
 * loop of procpool.c and by the worker lifecycle of procpool_workers.c.
 *
 * Invariants:
 *   - A job is in exactly one place: the private queue ph/pt, one or more
 *     ring entries of one worker (w->job[]), or the free list pfree (the
 *     submission queue is procpool.c's).  It leaves through exactly one
 *     hook, finish (pp_disp_finish) here, or cancel in procpool.c.
 *   - Entries of a ring are collected in order (coll .. head), so a slot's
 *     data is a circular buffer (dtail .. dhead) released in the order it
 *     was taken; an entry's inputs and outputs lie whole inside it.
 *   - A worker is handed a job only while fewer than PP_DEPTH entries of
 *     its ring are uncollected (a handed job can no longer be cancelled),
 *     and a ring never holds more than PP_RING entries; a K_MAP entry counts in
 *     map_attached from its publication until it is collected or its
 *     worker's death is settled (pp_disp_map_detach), and the map's thread
 *     waits for that count to reach 0.
 *
 * Who may touch what (the tags of procpool_internal.h, where every field
 * carries one): this file touches
 *   D  the dispatcher's own fields (wk[], ph/pt/pfree, rr, wd_on,
 *      cancelling, terminating, broken, mtries), freely;
 *   M  map_on, read under mu while attaching workers to a map;
 *   A  map_attached, counted for the map's thread (futex-woken at 0);
 *   SP a ring's entries and their data, written before the release store
 *      that publishes them (mh__pp_io_publish);
 *   SW what a worker wrote back (tail, progress, its outputs), read after
 *      an acquire;
 *   SX the map's slot states, settled by compare-and-swap for a dead
 *      worker;
 *   I  cfg, n, ctl, msh, mdata, read only.
 * Lock order: mu only, taken by pp_disp_map_post alone and never with
 * another lock; hooks are called with no lock held.  Calls procpool_io.c
 * only.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "procpool_internal.h"
#include "spin.h"
#include "trace_internal.h"

/* ==== dispatcher: jobs ==================================================== */

void pp_disp_recycle(mh__pp_t *pp, pp_job_t *j) {
  j->next = pp->pfree;
  pp->pfree = j;
}

void pp_disp_push_front(mh__pp_t *pp, pp_job_t *first, pp_job_t *last) {
  last->next = pp->ph;
  pp->ph = first;
  if (!pp->pt) pp->pt = last;
}

/* Copy the results of items [e->first, upto) of job j out of w's data. */
void pp_disp_take(pp_wk_t *w, const pp_entry_t *e, pp_job_t *j, uint64_t upto) {
  const mh__task_t *t = j->t;
  size_t first = (size_t)e->first, n = (size_t)(upto - e->first);
  if (upto <= e->first) return;
  if (t->out_size && t->out)
    memcpy((char *)t->out + first * t->out_size, w->data + e->out_off,
           n * t->out_size);
  const int *st = (const int *)(const void *)(w->data + e->st_off);
  for (size_t i = 0; i < n; i++) {
    if (t->statuses) t->statuses[first + i] = st[i];
    if (!j->code && st[i]) j->code = st[i];
  }
  j->next_item = (size_t)upto;
}

void pp_disp_finish(mh__pp_t *pp, pp_job_t *j) {
  pp->cfg.hooks.finish(pp->cfg.hooks.arg, j->user, j->code,
                       j->died ? j->died_pid : 0, j->died_exit);
  pp_disp_recycle(pp, j);
}

/* Release the data of the oldest entry of w (it was just collected). */
static void pp_disp_release(mh__pp_t *pp, pp_wk_t *w) {
  if (w->kmap[w->coll % PP_RING]) {
    w->kmap[w->coll % PP_RING] = 0;
    pp_disp_map_detach(pp, w);
  }
  w->job[w->coll % PP_RING] = NULL;
  w->coll++;
  if (w->coll == w->head)
    w->dhead = w->dtail = 0;
  else
    w->dtail = w->off[w->coll % PP_RING];
}

int pp_disp_collect(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  pp_slot_t *s = &pp->ctl->slots[slot];
  uint32_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
  int did = 0;
  while (w->coll != tail && w->coll != w->head) {
    unsigned idx = w->coll % PP_RING;
    pp_job_t *j = w->job[idx];
    if (j) {
      pp_entry_t *e = &s->ring[idx];
      pp_disp_take(w, e, j, e->count);
      pp_disp_finish(pp, j);
    }
    pp_disp_release(pp, w);
    did++;
  }
  return did;
}

/* Circular allocation of len bytes in w's data. */
static int pp_disp_fit(pp_wk_t *w, size_t len, size_t *off) {
  if (w->head == w->coll) {
    w->dhead = w->dtail = 0;
    *off = 0;
    return len <= w->cap;
  }
  if (w->dhead >= w->dtail) {
    if (w->cap - w->dhead >= len) {
      *off = w->dhead;
      return 1;
    }
    if (w->dtail > len) {
      *off = 0;
      return 1;
    }
    return 0;
  }
  if (w->dtail - w->dhead > len) {
    *off = w->dhead;
    return 1;
  }
  return 0;
}

static int pp_disp_grow(mh__pp_t *pp, int slot, size_t len) {
  pp_wk_t *w = &pp->wk[slot];
  size_t cap = w->cap;
  while (cap < len) {
    if (cap > SIZE_MAX / 2) return MH_ENOMEM;
    cap *= 2;
  }
  if (ftruncate(w->data_fd, (off_t)cap) < 0) return MH_ENOMEM;
  void *p = mremap(w->data, w->cap, cap, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    if (ftruncate(w->data_fd, (off_t)w->cap) < 0) {
    }
    return MH_ENOMEM;
  }
  w->data = p;
  w->cap = cap;
  atomic_store_explicit(&pp->ctl->slots[slot].data_size, cap,
                        memory_order_release);
  return 0;
}

static int pp_disp_can_take(const mh__pp_t *pp, const pp_wk_t *w) {
  return w->state == W_LIVE && !w->exit_sent && w->head - w->coll < PP_DEPTH &&
         (!pp->cfg.max_tasks_per_child ||
          w->assigned < (unsigned)pp->cfg.max_tasks_per_child);
}

/* Hand queued jobs to workers with room, round robin.  Returns how many. */
int pp_disp_assign(mh__pp_t *pp) {
  int did = 0;
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    const mh__task_t *t = j->t;
    size_t len = pp_job_len(t, j->next_item), off = 0;
    int slot = -1, empty = -1;
    for (int k = 0; k < pp->n; k++) {
      int i = (int)((pp->rr + (unsigned)k) % (unsigned)pp->n);
      pp_wk_t *w = &pp->wk[i];
      if (!pp_disp_can_take(pp, w)) continue;
      if (w->head == w->coll && empty < 0) empty = i;
      if (pp_disp_fit(w, len, &off)) {
        slot = i;
        break;
      }
    }
    if (slot < 0 && empty >= 0) {
      /* Too big for every worker with entries in flight: grow an idle one. */
      int rc = pp_disp_grow(pp, empty, len);
      if (rc < 0) {
        pp->ph = j->next;
        if (!pp->ph) pp->pt = NULL;
        if (j->began || pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
          j->code = rc;
          pp_disp_finish(pp, j);
        } else {
          pp_disp_recycle(pp, j);
        }
        did++;
        continue;
      }
      slot = empty;
      off = 0;
      pp->wk[slot].dhead = pp->wk[slot].dtail = 0;
    }
    if (slot < 0) break;
    pp->ph = j->next;
    if (!pp->ph) pp->pt = NULL;
    did++;
    if (!j->began) {
      if (!pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
        pp_disp_recycle(pp, j);
        continue;
      }
      j->began = 1;
    }
    pp_wk_t *w = &pp->wk[slot];
    pp_slot_t *s = &pp->ctl->slots[slot];
    unsigned idx = w->head % PP_RING;
    pp_entry_t *e = &s->ring[idx];
    size_t first = j->next_item, n = t->count - first;
    e->kind = K_RUN;
    e->fn = t->fn;
    e->ctx = t->ctx;
    e->first = first;
    e->count = t->count;
    e->in_size = t->in_size;
    e->out_size = t->out_size;
    e->in_off = off;
    e->out_off = off + pp_round(n * t->in_size);
    e->st_off = e->out_off + pp_round(n * t->out_size);
    if (n && t->in_size)
      memcpy(w->data + off, (const char *)t->in + first * t->in_size,
             n * t->in_size);
    atomic_store_explicit(&e->progress, first, memory_order_relaxed);
    atomic_store_explicit(&e->started, first, memory_order_relaxed);
    atomic_store_explicit(&e->claim, E_QUEUED, memory_order_relaxed);
    w->job[idx] = j;
    if (pp_job_lim(pp, j) > 0) pp->wd_on = 1;
    w->off[idx] = off;
    w->len[idx] = len;
    w->dhead = off + len;
    w->head++;
    w->assigned++;
    mh__pp_io_publish(pp, slot);
    pp->rr = (unsigned)slot + 1;
  }
  return did;
}

/* ==== dispatcher: the claim-based map ===================================== */

/* The K_MAP entry of w was collected, or w died holding it. */
void pp_disp_map_detach(mh__pp_t *pp, pp_wk_t *w) {
  if (!w->in_map) return;
  w->in_map = 0;
  if (atomic_fetch_sub(&pp->map_attached, 1) == 1)
    mh__futex_wake(&pp->map_attached, INT_MAX, MH__FUTEX_PRIVATE);
}

/* Take the next entry of slot's ring for a control entry (K_MAP, K_EXIT):
 * no job, no data.  The caller fills the rest and publishes (the ring has
 * room: checked by the caller). */
pp_entry_t *pp_disp_ctl_entry(mh__pp_t *pp, int slot, uint32_t kind) {
  pp_wk_t *w = &pp->wk[slot];
  unsigned idx = w->head % PP_RING;
  pp_entry_t *e = &pp->ctl->slots[slot].ring[idx];
  e->kind = kind;
  w->job[idx] = NULL;
  w->kmap[idx] = kind == K_MAP;
  w->off[idx] = w->dhead;
  w->len[idx] = 0;
  w->head++;
  return e;
}

/* While a map is on, every live worker gets a K_MAP entry (once). */
int pp_disp_map_post(mh__pp_t *pp) {
  if (!atomic_load_explicit(&pp->map_on, memory_order_relaxed) ||
      pp->cancelling)
    return 0; /* (a cancelled map's thread settles what is left itself) */
  int did = 0;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->map_on)) {
    for (int i = 0; i < pp->n; i++) {
      pp_wk_t *w = &pp->wk[i];
      if (w->state != W_LIVE || w->exit_sent || w->in_map ||
          w->head - w->coll >= PP_RING)
        continue;
      pp_entry_t *e = pp_disp_ctl_entry(pp, i, K_MAP);
      e->first = atomic_load(&pp->msh->gen);
      e->count = 0;
      atomic_store_explicit(&e->claim, E_QUEUED, memory_order_relaxed);
      w->in_map = 1;
      atomic_fetch_add(&pp->map_attached, 1);
      mh__pp_io_publish(pp, i);
      did++;
    }
  }
  pthread_mutex_unlock(&pp->mu);
  return did;
}

/* The worker of `slot` died during a map: settle the chunk it owned.  Items
 * it finished keep their results; the item it was running fails with
 * MH_EWORKERDIED (or runs again, within the retries), or is cancelled when a
 * cancelling shutdown is on; the items it had not begun go back to be
 * claimed by any worker. */
void pp_disp_map_dead(mh__pp_t *pp, int slot) {
  pp_map_sh_t *m = pp->msh;
  pp_slot_t *s = &pp->ctl->slots[slot];
  uint64_t wc = m->wc;
  for (uint64_t k = 0; k < wc; k++) {
    uint64_t sv = atomic_load_explicit(&m->state[k], memory_order_acquire);
    if ((sv & 0xFFFF) != (uint64_t)slot || (sv >> 16) == 0) continue;
    uint64_t j = (sv >> 16) - 1, lo = j * m->chunk;
    uint64_t hi = lo + m->chunk < m->n ? lo + m->chunk : m->n;
    uint64_t first = m->start[k];
    uint64_t d = atomic_load(&s->m_done), st = atomic_load(&s->m_started);
    uint64_t upto = d >= first && d <= hi ? d : first;
    int running = upto < hi && st == upto + 1;
    int *sts = m->want_st ? (int *)(void *)(pp->mdata + m->st_off) : NULL;
    size_t base = (size_t)(k * m->chunk - lo);
    uint64_t next = upto;
    int done = 0;
    if (pp->cancelling || pp->broken) {
      /* The item it ran fails as a death unless we ended it (terminating);
       * the ones it had not begun are cancelled. */
      int code = pp->cancelling ? MH_ECANCELED : MH_EWORKERDIED;
      int rcode = pp->terminating || pp->broken ? code : MH_EWORKERDIED;
      for (uint64_t i = upto; i < hi; i++)
        if (sts) sts[base + i] = i == upto && running ? rcode : code;
      if (upto < hi && !m->code[k]) m->code[k] = running ? rcode : code;
      done = 1;
    } else if (running) {
      int dcode = pp->wk[slot].timed_out ? MH_ETIMEDOUT : MH_EWORKERDIED;
      if (pp->mtries[k] < pp->cfg.retries) {
        pp->mtries[k]++;
        mh__trace_mark(MH__TR_RETRY, atomic_load(&pp->wk[slot].pid), slot, upto, pp->mtries[k]);
      } else {
        if (sts) sts[base + upto] = dcode;
        if (!m->code[k]) m->code[k] = dcode;
        pp->mtries[k] = 0;
        next = upto + 1;
      }
    }
    if (next >= hi) done = 1;
    if (done) {
      atomic_store_explicit(&m->state[k], MS_TAG(j, MS_DONE),
                            memory_order_release);
      atomic_fetch_add(&m->ndone, 1);
      mh__pp_io_map_wake_parent(m);
    } else {
      m->start[k] = next;
      atomic_store(&m->state[k], MS_TAG(j, MS_READY));
      uint64_t h = atomic_load(&m->hint);
      while (h > j && !atomic_compare_exchange_weak(&m->hint, &h, j)) {
      }
      mh__pp_io_map_bump_workers(m);
    }
  }
}

