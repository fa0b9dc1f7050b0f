/* SPDX-License-Identifier: MIT */
/* procpool.c - the process pool's dispatcher: one thread per pool that forks
 * the fork server, feeds jobs to the workers' rings, collects results,
 * notices deaths and asks the server for replacements; and the engine's API,
 * which starts, feeds and joins that thread.
 *
 * Worker processes come from a fork server and are fed through shared
 * memory (procpool_internal.h describes the layout and who may touch each
 * field; procpool_child.c is the code that runs in the server and the
 * workers; procpool_map.c the claim-based map, which runs on the caller's
 * thread and needs the dispatcher only to attach workers to it and to
 * settle the chunk of a worker that dies).
 *
 * Invariants:
 *   - Everything of the parent side tagged D (wk[], the private queue ph/pt,
 *     timers, the ring heads) is touched by the dispatcher thread alone; a
 *     caller reaches it only through mu (the submission queue, the shutdown
 *     flags, map_on/map_busy) and the eventfd that wakes the dispatcher.
 *   - A job is in exactly one place: the submission queue (M), the private
 *     queue (D), one ring entry (w->job[]), or the free lists.  It leaves the
 *     engine through exactly one hook: finish, or cancel.
 *   - Entries of a ring are collected in order (coll .. head), so the slot's
 *     data is a circular buffer released in the order it was taken.
 *   - A dead worker's entries are settled before its slot is respawned:
 *     finished items keep their results, the running one fails or is re-run
 *     (retries), the rest go back to the front of the queue in order.
 *   - A dead server is the death of all its workers: it is reaped, they are
 *     settled so, and a new server respawns every slot (pp_disp_server_lost);
 *     the pool breaks only if servers keep dying before spawning anything.
 *   - The dispatcher exits only when shutdown was asked, nothing is queued
 *     or in flight (no map either), and every worker has exited.
 * Lock order: join_mu, then mu.  The dispatcher takes mu only to move the
 * submission queue and to attach workers to a map; hooks are called with no
 * lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procpool_internal.h"
#include "spin.h"
#include "trace_internal.h"

/* ==== dispatcher: jobs ==================================================== */

/* A job's time limit per item in seconds, 0 = none. */
static double pp_job_lim(const mh__pp_t *pp, const pp_job_t *j) {
  double t = j->t->timeout;
  return t > 0 ? t : t < 0 ? 0 : pp->cfg.task_timeout;
}

static void pp_disp_recycle(mh__pp_t *pp, pp_job_t *j) {
  j->next = pp->pfree;
  pp->pfree = j;
}

static void pp_disp_push_front(mh__pp_t *pp, pp_job_t *first, pp_job_t *last) {
  last->next = pp->ph;
  pp->ph = first;
  if (!pp->pt) pp->pt = last;
}

/* Copy the results of items [e->first, upto) of job j out of w's data. */
static void pp_disp_take(pp_wk_t *w, const pp_entry_t *e, pp_job_t *j,
                    uint64_t upto) {
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

static void pp_disp_finish(mh__pp_t *pp, pp_job_t *j) {
  pp->cfg.hooks.finish(pp->cfg.hooks.arg, j->user, j->code,
                       j->died ? j->died_pid : 0, j->died_exit);
  pp_disp_recycle(pp, j);
}

/* Release the data of the oldest entry of w (it was just collected). */
static void pp_disp_map_detach(mh__pp_t *pp, pp_wk_t *w);

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

static int pp_disp_collect(mh__pp_t *pp, int slot) {
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
static int pp_disp_assign(mh__pp_t *pp) {
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
static void pp_disp_map_detach(mh__pp_t *pp, pp_wk_t *w) {
  if (!w->in_map) return;
  w->in_map = 0;
  if (atomic_fetch_sub(&pp->map_attached, 1) == 1)
    mh__futex_wake(&pp->map_attached, INT_MAX, MH__FUTEX_PRIVATE);
}

/* Take the next entry of slot's ring for a control entry (K_MAP, K_EXIT):
 * no job, no data.  The caller fills the rest and publishes (the ring has
 * room: checked by the caller). */
static pp_entry_t *pp_disp_ctl_entry(mh__pp_t *pp, int slot, uint32_t kind) {
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
static int pp_disp_map_post(mh__pp_t *pp) {
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
static void pp_disp_map_dead(mh__pp_t *pp, int slot) {
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

/* ==== dispatcher: workers ================================================= */

static int pp_disp_spawn(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  pp_slot_t *s = &pp->ctl->slots[slot];
  if (w->data_fd < 0) {
    int fd = memfd_create("manyhands-pool", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    mh__pp_io_fd_add(fd);
    if (ftruncate(fd, PP_DATA_INIT) < 0) {
      int err = -errno;
      mh__pp_io_fd_close(fd);
      return err;
    }
    void *p = mmap(NULL, PP_DATA_INIT, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      mh__pp_io_fd_close(fd);
      return MH_ENOMEM;
    }
    w->data_fd = fd;
    w->data = p;
    w->cap = PP_DATA_INIT;
    atomic_store(&s->data_size, w->cap);
  }
  atomic_store(&s->head, 0);
  atomic_store(&s->tail, 0);
  atomic_store(&s->wsleep, 0);
  atomic_store(&s->m_started, UINT64_MAX);
  atomic_store(&s->m_done, UINT64_MAX);
  atomic_store(&s->ready, 0);
  memset(w->kmap, 0, sizeof w->kmap);
  w->in_map = 0;
  w->head = w->coll = 0;
  w->dhead = w->dtail = 0;
  w->assigned = 0;
  w->exit_sent = 0;
  w->kill_at = 0;
  w->respawn_at = 0;
  w->wd_key = 0;
  w->timed_out = 0;
  pp_msg_t m = {M_SPAWN, slot, 0, 0};
  int rc = mh__pp_io_send(pp->srv, &m, w->data_fd);
  if (rc < 0) return rc;
  w->state = W_SPAWNING;
  return 0;
}

static void pp_disp_kill(mh__pp_t *pp, int slot, int sig) {
  pp_wk_t *w = &pp->wk[slot];
  int pid = atomic_load(&w->pid);
  if (pid <= 0 || pp->srv < 0) return;
  pp_msg_t m = {M_KILL, slot, pid, sig};
  mh__pp_io_send(pp->srv, &m, -1);
}

static void pp_disp_send_exit(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  if (w->exit_sent || w->head - w->coll >= PP_RING) return;
  pp_disp_ctl_entry(pp, slot, K_EXIT);
  w->exit_sent = 1;
  mh__pp_io_publish(pp, slot);
}

static void pp_disp_broken(mh__pp_t *pp);

/* The worker of `slot` ended with wait status st: settle what it held,
 * re-running an item it died in at most `retries` times. */
static void pp_disp_exited(mh__pp_t *pp, int slot, int pid, int st, int retries) {
  pp_wk_t *w = &pp->wk[slot];
  if (w->state != W_LIVE || atomic_load(&w->pid) != pid) return;
  int exitcode = WIFEXITED(st) ? WEXITSTATUS(st)
                 : WIFSIGNALED(st) ? -WTERMSIG(st)
                                   : st;
  if (exitcode) mh__trace_mark(MH__TR_DEATH, pid, slot, 0, exitcode);
  pp_disp_collect(pp, slot);
  pp_slot_t *s = &pp->ctl->slots[slot];
  /* A worker that dies before finishing or even starting anything (its
   * initializer crashes, say) would be replaced forever; after a few such
   * deaths in a row the pool is declared broken instead of hanging. */
  int productive = w->coll > 0;
  for (uint32_t i = w->coll; i != w->head; i++)
    productive |= atomic_load(&s->ring[i % PP_RING].claim) == E_TAKEN;
  /* A worker that got past its initializer did start: killed before it
   * took a task (a replacement killed from outside at once, which a loaded
   * machine makes likely), it says nothing against the pool.  Counting those
   * broke the pool of a pi run after a few kills in a row.  Killed with its
   * server, it says nothing either. */
  productive |= atomic_load_explicit(&s->ready, memory_order_acquire) != 0;
  if (productive)
    pp->bad_starts = 0;
  else if (!pp->srv_lost)
    pp->bad_starts++;
  pp_job_t *rh = NULL, *rt = NULL; /* jobs to re-queue, in order */
  for (uint32_t i = w->coll; i != w->head; i++) {
    unsigned idx = i % PP_RING;
    pp_job_t *j = w->job[idx];
    w->job[idx] = NULL;
    if (!j) continue;
    pp_entry_t *e = &s->ring[idx];
    int requeue = 0;
    if (atomic_load(&e->claim) == E_TAKEN) {
      uint64_t prog = atomic_load_explicit(&e->progress, memory_order_acquire);
      pp_disp_take(w, e, j, prog);
      if (prog < e->count && atomic_load(&e->started) <= prog) {
        requeue = 1; /* died between two items: none of the rest began */
      } else if (prog < e->count) {
        size_t d = (size_t)prog;
        if (pp->terminating) {
          /* Ended by MH_SHUTDOWN_TERMINATE: cancelled, as the future says
           * (a job of which nothing finished is cancelled outright below). */
          for (size_t k = d; k < j->t->count; k++)
            if (j->t->statuses) j->t->statuses[k] = MH_ECANCELED;
          if (!j->code) j->code = MH_ECANCELED;
          j->next_item = j->t->count;
          if (d == 0) {
            pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, 1);
            pp_disp_recycle(pp, j);
            continue;
          }
        } else if (j->tries < retries) {
          j->tries++;
          mh__trace_mark(MH__TR_RETRY, pid, slot, d, j->tries);
          j->next_item = d;
          requeue = 1;
        } else if (w->timed_out) {
          /* Killed by the watchdog: the item ran past its limit. */
          if (j->t->statuses) j->t->statuses[d] = MH_ETIMEDOUT;
          if (!j->code) j->code = MH_ETIMEDOUT;
          j->tries = 0;
          j->next_item = d + 1;
          requeue = j->next_item < j->t->count;
        } else {
          if (j->t->statuses) j->t->statuses[d] = MH_EWORKERDIED;
          if (!j->code) j->code = MH_EWORKERDIED;
          if (!j->died) {
            j->died = 1;
            j->died_pid = pid;
            j->died_exit = exitcode;
          }
          j->tries = 0;
          j->next_item = d + 1;
          requeue = j->next_item < j->t->count;
        }
      }
    } else {
      requeue = 1; /* never started */
    }
    if (requeue && pp->cancelling && j->next_item > 0) {
      /* Part of it ran: the rest is cancelled item by item. */
      for (size_t k = j->next_item; k < j->t->count; k++)
        if (j->t->statuses) j->t->statuses[k] = MH_ECANCELED;
      if (!j->code) j->code = MH_ECANCELED;
      pp_disp_finish(pp, j);
    } else if (requeue && pp->cancelling) {
      pp->cfg.hooks.requeue(pp->cfg.hooks.arg, j->user);
      pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, 0);
      pp_disp_recycle(pp, j);
    } else if (requeue) {
      pp->cfg.hooks.requeue(pp->cfg.hooks.arg, j->user);
      j->began = 0;
      j->next = NULL;
      if (rt)
        rt->next = j;
      else
        rh = j;
      rt = j;
    } else {
      pp_disp_finish(pp, j);
    }
  }
  if (rh) pp_disp_push_front(pp, rh, rt);
  if (w->in_map) {
    pp_disp_map_dead(pp, slot);
    pp_disp_map_detach(pp, w);
  }
  memset(w->kmap, 0, sizeof w->kmap);
  w->coll = w->head;
  w->dhead = w->dtail = 0;
  w->state = W_DEAD;
  atomic_store(&w->pid, 0);
  if (pp->bad_starts >= 3 + pp->n && !pp->broken) {
    pp_disp_broken(pp);
    return;
  }
  if (!pp->cancelling && !pp->exits_sent && !pp->broken && !pp->srv_lost) {
    if (pp_disp_spawn(pp, slot) < 0) w->respawn_at = mh__now() + 0.05;
  }
}

/* Kill a worker of ours that is given up for dead, and wait (boundedly)
 * until it has exited.  It is the server's child, not ours, so we cannot
 * reap it; a pidfd still tells when it is gone.  A worker still running
 * after its chunk was settled could write into a window slot the map has
 * refilled since, and an item of another chunk would come back "done" with
 * its output.  (A pid already reaped by the server and reused is the one
 * risk left; the server reaps only after it reports, so the window is the
 * report's time in flight.) */
static void pp_disp_kill_and_wait(int pid) {
  if (pid <= 0) return;
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    struct pollfd p = {fd, POLLIN, 0};
    for (int i = 0; i < 200; i++) { /* at most about 2 s */
      int r = poll(&p, 1, 10);
      if (r > 0 || (r < 0 && errno != EINTR)) break;
    }
    close(fd);
    return;
  }
  if (errno == ESRCH) return; /* gone already */
#endif
  kill(pid, SIGKILL); /* no pidfds: best effort, without the wait */
}

/* The pool gives up: its server is gone and cannot be replaced (at boot, in
 * a shutdown, or it keeps dying), or its workers keep dying before doing
 * anything.  Kill what is left, and fail everything, now and later, rather
 * than hang. */
static void pp_disp_broken(mh__pp_t *pp) {
  pp->broken = 1;
  atomic_store(&pp->broken_flag, 1);
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    int pid = atomic_load(&w->pid);
    if (w->state == W_LIVE) {
      pp_disp_kill_and_wait(pid); /* before its chunk is settled below */
      /* SIGKILL: the wait status of "killed by SIGKILL"; no re-runs. */
      pp_disp_exited(pp, i, pid, SIGKILL, 0);
    }
    w->state = W_DEAD;
    atomic_store(&w->pid, 0);
  }
  mh__pp_io_fd_close(pp->srv);
  pp->srv = -1;
  mh__pp_io_map_wake_parent(pp->msh); /* the map's thread sees broken_flag */
}

static int pp_disp_fork_server(mh__pp_t *pp);

/* Servers forked in a row, each lost before it spawned a single worker,
 * after which the pool gives up (a server that cannot even start). */
#define PP_SERVER_RESTARTS 3

/* The server died while the pool runs (killed from outside, say by a user's
 * kill -9 or the OOM killer).  Its workers die with it (PR_SET_PDEATHSIG),
 * so each is settled as a worker death: what it was running fails with
 * MH_EWORKERDIED or runs again within the retries, what it had not begun
 * goes back to the queue.  Then a new server is forked (by this thread, as
 * the first one was, so its death signal is tied to the same thread) and
 * every slot respawned: the pool lives on, as it does when one worker dies.
 * Only a server that dies PP_SERVER_RESTARTS times in a row before spawning
 * anything breaks the pool, and so does a shutdown under way (its workers
 * were told to exit: there is nothing left to run them for).
 *
 * The old server is reaped first: once it is a zombie, the kernel has sent
 * every child of it its death signal, so no worker of the old server (not
 * even one whose M_SPAWNED report was still in its outbox, whose pid we never
 * learned) runs on in a slot that the new worker is about to take. */
static void pp_disp_server_lost(mh__pp_t *pp) {
  pid_t spid = atomic_load(&pp->srv_pid);
  mh__pp_io_fd_close(pp->srv);
  pp->srv = -1;
  if (spid > 0) {
    kill(spid, SIGKILL); /* a socket error need not mean it is gone */
    while (waitpid(spid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  atomic_store(&pp->srv_pid, 0);
  mh__trace_mark(MH__TR_DEATH, spid, -1, 0, -SIGKILL);
  pp->srv_lost = 1;
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    int pid = atomic_load(&w->pid);
    if (w->state == W_LIVE) {
      pp_disp_kill_and_wait(pid); /* before its entries are settled */
      pp_disp_exited(pp, i, pid, SIGKILL, pp->cfg.retries);
    }
    w->state = W_DEAD;
    w->respawn_at = 0;
    atomic_store(&w->pid, 0);
  }
  pp->srv_lost = 0;
  if (pp->broken) return; /* settled by pp_disp_broken already */
  if (pp->cancelling || pp->exits_sent ||
      ++pp->srv_restarts > PP_SERVER_RESTARTS || pp_disp_fork_server(pp) < 0) {
    pp_disp_broken(pp);
    return;
  }
  double now = mh__now();
  for (int i = 0; i < pp->n; i++)
    if (pp_disp_spawn(pp, i) < 0) pp->wk[i].respawn_at = now + 0.05;
}

static void pp_disp_fail_queue(mh__pp_t *pp) {
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    pp->ph = j->next;
    if (j->began || pp->cfg.hooks.begin(pp->cfg.hooks.arg, j->user)) {
      if (!j->code) j->code = MH_EWORKERDIED;
      pp_disp_finish(pp, j);
    } else {
      pp_disp_recycle(pp, j);
    }
  }
  pp->pt = NULL;
}

/* Read what the server has to say.  Returns how many messages. */
static int pp_disp_server_msgs(mh__pp_t *pp, int block) {
  int did = 0;
  while (pp->srv >= 0) {
    pp_msg_t m;
    int r = mh__pp_io_recv(pp->srv, &m, NULL, block && !did ? 0 : MSG_DONTWAIT);
    if (r == MH_EAGAIN) break;
    if (r <= 0) {
      if (pp->up)
        pp_disp_server_lost(pp); /* srv is the new server's, or -1 */
      else
        pp_disp_broken(pp); /* at boot: mh_executor_new fails */
      did++;
      continue;
    }
    did++;
    if (m.slot < 0 || m.slot >= pp->n) continue;
    pp_wk_t *w = &pp->wk[m.slot];
    if (m.op == M_SPAWNED) {
      if (m.pid > 0) {
        pp->srv_restarts = 0;
        atomic_store(&w->pid, m.pid);
        w->state = W_LIVE;
        if (pp->exits_sent) pp_disp_send_exit(pp, m.slot);
      } else {
        w->state = W_DEAD;
        w->respawn_at = mh__now() + 0.05;
      }
    } else if (m.op == M_EXITED) {
      pp_disp_exited(pp, m.slot, m.pid, m.arg, pp->cfg.retries);
    }
  }
  return did;
}

static int pp_disp_fork_server(mh__pp_t *pp) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return -errno;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    close(sv[0]);
    close(sv[1]);
    return err == MH_ENOMEM ? MH_EAGAIN : err;
  }
  if (pid == 0) {
    close(sv[0]);
    mh__pp_child_server(pp, sv[1], parent);
  }
  close(sv[1]);
  mh__pp_io_fd_add(sv[0]);
  pp->srv = sv[0];
  atomic_store(&pp->srv_pid, pid);
  return 0;
}

static void pp_disp_stop_server(mh__pp_t *pp) {
  if (pp->srv >= 0) {
    /* Say so rather than rely on EOF alone: a process forked by the program
     * in the meantime may hold a copy of our end. */
    pp_msg_t m = {M_QUIT, 0, 0, 0};
    mh__pp_io_send(pp->srv, &m, -1);
  }
  mh__pp_io_fd_close(pp->srv);
  pp->srv = -1;
  pid_t pid = atomic_load(&pp->srv_pid);
  if (pid > 0) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  atomic_store(&pp->srv_pid, 0);
}

/* Fork the server and the first workers; wait until each is running. */
static int pp_disp_boot(mh__pp_t *pp) {
  int rc = pp_disp_fork_server(pp);
  if (rc < 0) return rc;
  for (int i = 0; i < pp->n && rc == 0; i++) rc = pp_disp_spawn(pp, i);
  for (;;) {
    int waiting = 0, failed = 0;
    for (int i = 0; i < pp->n; i++) {
      waiting += pp->wk[i].state == W_SPAWNING;
      failed += pp->wk[i].state == W_DEAD;
    }
    if (failed || pp->broken) rc = MH_EAGAIN;
    if (rc < 0 || !waiting) break;
    pp_disp_server_msgs(pp, 1);
  }
  if (rc < 0) {
    pp_disp_stop_server(pp); /* the server kills and reaps its workers */
    for (int i = 0; i < pp->n; i++) pp->wk[i].state = W_DEAD;
  }
  return rc;
}

/* ==== dispatcher: the loop ================================================ */

/* Move submitted jobs to the private queue; note the shutdown flags. */
static int pp_disp_take_queue(mh__pp_t *pp, int *shut) {
  /* A submission that succeeded before the shutdown flag was set has
   * already counted itself in nq (both happen under mu). */
  *shut = atomic_load(&pp->shut);
  if (!atomic_load(&pp->nq)) return 0;
  pthread_mutex_lock(&pp->mu);
  pp_job_t *h = pp->qh, *t = pp->qt;
  pp->qh = pp->qt = NULL;
  atomic_store(&pp->nq, 0);
  if (pp->pfree) {
    pp_job_t *last = pp->pfree;
    while (last->next) last = last->next;
    last->next = pp->freelist;
    pp->freelist = pp->pfree;
    pp->pfree = NULL;
  }
  *shut = atomic_load(&pp->shut);
  pthread_mutex_unlock(&pp->mu);
  if (!h) return 0;
  if (pp->pt)
    pp->pt->next = h;
  else
    pp->ph = h;
  pp->pt = t;
  return 1;
}

/* First sight of a cancelling shutdown: drop what is queued, revoke what
 * waits in rings; running tasks go on (Python's cancel_futures=True). */
static void pp_disp_cancel_all(mh__pp_t *pp) {
  pp->cancelling = 1;
  mh__trace_mark(MH__TR_CANCEL, 0, -1, 0, MH_ECANCELED);
  /* A claim-based map stops handing out chunks; its thread cancels what
   * was not claimed. */
  atomic_store(&pp->msh->stop, 2);
  mh__pp_io_map_bump_workers(pp->msh);
  mh__pp_io_map_wake_parent(pp->msh);
  while (pp->ph) {
    pp_job_t *j = pp->ph;
    pp->ph = j->next;
    pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, j->began);
    pp_disp_recycle(pp, j);
  }
  pp->pt = NULL;
  double now = mh__now();
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    pp_slot_t *s = &pp->ctl->slots[i];
    int running = 0;
    for (uint32_t k = w->coll; k != w->head; k++) {
      unsigned idx = k % PP_RING;
      pp_job_t *j = w->job[idx];
      if (!j) continue;
      /* Its future already says running (begin() ran when it went into the
       * ring), and a running future is not cancelled (Python runs what sits
       * in its call queue too): revoked only when terminating. */
      uint32_t q = E_QUEUED;
      if (pp->terminating &&
          atomic_compare_exchange_strong(&s->ring[idx].claim, &q, E_REVOKED)) {
        w->job[idx] = NULL;
        pp->cfg.hooks.cancel(pp->cfg.hooks.arg, j->user, 1);
        pp_disp_recycle(pp, j);
      } else {
        running = 1;
      }
    }
    if (w->in_map) running = 1;
    if (running && w->state == W_LIVE && pp->terminating) {
      pp_disp_kill(pp, i, SIGTERM);
      w->kill_at = now + pp->cfg.grace;
    }
  }
}

/* MH_SHUTDOWN_TERMINATE (also after a plain or cancelling shutdown began):
 * cancel what waits, SIGTERM every worker that runs something, SIGKILL
 * after the grace (pp_disp_timers). */
static void pp_disp_terminate(mh__pp_t *pp) {
  pp->terminating = 1;
  pp->cancelling = 0; /* pp_disp_cancel_all runs again, now killing too */
  pp_disp_cancel_all(pp);
}

static int pp_disp_in_flight(mh__pp_t *pp) {
  if (atomic_load(&pp->map_busy) || atomic_load(&pp->map_on) ||
      atomic_load(&pp->map_attached))
    return 1;
  for (int i = 0; i < pp->n; i++) {
    const pp_wk_t *w = &pp->wk[i];
    for (uint32_t k = w->coll; k != w->head; k++)
      if (w->job[k % PP_RING]) return 1;
  }
  return 0;
}

/* The watchdog (task time limits).  What worker `slot` runs now: a key that
 * differs for every item it begins (0 = nothing), and that item's limit in
 * *lim (0 = none).  Seen from here only, with no clock read in the worker:
 * the time an item runs is counted from the first time the dispatcher saw
 * its key, so a limit is noticed at most one check late. */
#define PP_START_GRACE 10.0 /* seconds a starting worker gets beyond a limit */

static uint64_t pp_disp_running(mh__pp_t *pp, int slot, double *lim) {
  pp_wk_t *w = &pp->wk[slot];
  pp_slot_t *s = &pp->ctl->slots[slot];
  *lim = 0;
  if (w->in_map) {
    uint64_t st = atomic_load(&s->m_started), d = atomic_load(&s->m_done);
    *lim = (double)atomic_load(&pp->map_lim_us) / 1e6;
    if (st != UINT64_MAX && st > d) return st | (1ull << 63);
    /* The map is over and it has not let go within the limit (a stopped
     * worker): the map's caller waits for it, so it counts as hung. */
    if (atomic_load(&pp->msh->stop)) {
      /* (One still starting gets the grace described below.) */
      int ready = atomic_load_explicit(&s->ready, memory_order_acquire) != 0;
      if (*lim > 0 && !ready) *lim += PP_START_GRACE;
      return ((3ull << 61) ^ d) ^ ((uint64_t)ready << 59);
    }
  }
  for (uint32_t k = w->coll; k != w->head; k++) {
    unsigned idx = k % PP_RING;
    pp_job_t *j = w->job[idx];
    if (!j) continue;
    pp_entry_t *e = &s->ring[idx];
    if (atomic_load(&e->claim) != E_TAKEN) {
      /* Next to run and not taken: a healthy worker takes it at once, one
       * stopped while idle never does; that too is past the limit.  A
       * worker still starting (not ready: its fork, its initializer) has
       * not had its chance: a slow initializer, or any start on a loaded
       * machine, took longer than a short limit, and the watchdog killed
       * every replacement, counted each as a bad start and broke the pool.
       * It gets PP_START_GRACE more (a worker stopped while it starts is
       * still caught), and its clock starts again once it is ready (the
       * key changes). */
      int ready = atomic_load_explicit(&s->ready, memory_order_acquire) != 0;
      if (*lim == 0) *lim = pp_job_lim(pp, j);
      if (*lim > 0 && !ready) *lim += PP_START_GRACE;
      return ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull) | (1ull << 62) |
             ((uint64_t)ready << 60);
    }
    uint64_t st = atomic_load(&e->started), pr = atomic_load(&e->progress);
    if (st > pr) {
      *lim = pp_job_lim(pp, j);
      return ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull) ^ st;
    }
  }
  return 0;
}

/* SIGKILL a worker whose item ran past its limit; its death is then
 * settled as MH_ETIMEDOUT (pp_disp_exited).  Returns the next check due. */
static double pp_disp_watchdog(mh__pp_t *pp, double now, double next) {
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    if (w->state != W_LIVE || w->timed_out) continue;
    if (w->coll == w->head && !w->in_map) {
      w->wd_key = 0;
      continue;
    }
    double lim;
    uint64_t key = pp_disp_running(pp, i, &lim);
    if (!key || lim <= 0) {
      w->wd_key = 0;
      /* Work is queued on it with a limit: look again soon, since its start
       * wakes nobody. */
      if (lim > 0) {
        double t = now + (lim / 4 < 0.01 ? lim / 4 : 0.01);
        if (next < 0 || t < next) next = t;
      }
      continue;
    }
    if (key != w->wd_key) {
      w->wd_key = key;
      w->wd_since = now;
    }
    double due = w->wd_since + lim;
    if (now >= due) {
      w->timed_out = 1;
      pp_disp_kill(pp, i, SIGKILL);
      continue;
    }
    if (next < 0 || due < next) next = due;
  }
  return next;
}

/* Timers: respawns to retry, SIGKILLs due, the watchdog.  Returns the poll
 * timeout in ms until the next one (-1 = none). */
static int pp_disp_timers(mh__pp_t *pp) {
  double now = mh__now(), next = -1;
  if (!pp->wd_on && atomic_load_explicit(&pp->map_lim_us, memory_order_relaxed))
    pp->wd_on = 1;
  if (pp->wd_on) next = pp_disp_watchdog(pp, now, next);
  for (int i = 0; i < pp->n; i++) {
    pp_wk_t *w = &pp->wk[i];
    if (w->kill_at > 0) {
      if (w->state != W_LIVE) {
        w->kill_at = 0;
      } else if (now >= w->kill_at) {
        pp_disp_kill(pp, i, SIGKILL);
        w->kill_at = 0;
      } else if (next < 0 || w->kill_at < next) {
        next = w->kill_at;
      }
    }
    if (w->respawn_at > 0 && w->state == W_DEAD) {
      if (pp->cancelling || pp->exits_sent || pp->broken) {
        w->respawn_at = 0;
      } else if (now >= w->respawn_at) {
        w->respawn_at = 0;
        if (pp_disp_spawn(pp, i) < 0) w->respawn_at = now + 0.05;
      }
      if (w->respawn_at > 0 && (next < 0 || w->respawn_at < next))
        next = w->respawn_at;
    }
  }
  if (pp->exits_sent && pp->exit_deadline > 0) {
    if (now >= pp->exit_deadline) {
      for (int i = 0; i < pp->n; i++)
        if (pp->wk[i].state == W_LIVE) pp_disp_kill(pp, i, SIGKILL);
      pp->exit_deadline = 0;
    } else if (next < 0 || pp->exit_deadline < next) {
      next = pp->exit_deadline;
    }
  }
  if (next < 0) return -1;
  double ms = (next - now) * 1e3 + 1;
  return ms > 1e6 ? 1000000 : (int)ms;
}

/* Anything for the dispatcher to do right now? (Checked after announcing
 * that it sleeps.) */
static int pp_disp_pending_work(mh__pp_t *pp) {
  if (atomic_load(&pp->nq)) return 1;
  for (int i = 0; i < pp->n; i++)
    if (pp->wk[i].coll != pp->wk[i].head &&
        atomic_load(&pp->ctl->slots[i].tail) != pp->wk[i].coll)
      return 1;
  return 0;
}

static void pp_disp_loop(mh__pp_t *pp) {
  unsigned iter = 0;
  mh__spin_t spell = MH__SPIN_INIT; /* this idle spell's look-agains */
  /* How long to poll while entries are in flight, adapted to the work: when
   * a poll ends in sleep (tasks take longer than the poll), the next poll is
   * halved; when work shows up while polling, it doubles again up to
   * MH__SPIN_PP_BUSY.  Short tasks keep the fast hand-off; long ones (pi blocks
   * of milliseconds) no longer lose a slice of a core to a parent that
   * polls for nothing after every completion. */
  double spin_busy = MH__SPIN_PP_BUSY;
  for (;;) {
    int did = 0, shut;
    if ((++iter & 127) == 0) did += pp_disp_server_msgs(pp, 0);
    for (int i = 0; i < pp->n; i++) did += pp_disp_collect(pp, i);
    did += pp_disp_take_queue(pp, &shut);
    if ((shut & 4) && !pp->terminating)
      pp_disp_terminate(pp);
    else if ((shut & 2) && !pp->cancelling)
      pp_disp_cancel_all(pp);
    if (pp->broken) pp_disp_fail_queue(pp);
    did += pp_disp_assign(pp);
    did += pp_disp_map_post(pp);
    int timeout = pp_disp_timers(pp);
    if (shut && !pp->ph && !atomic_load(&pp->nq) && !pp_disp_in_flight(pp)) {
      if (!pp->exits_sent) {
        pp->exits_sent = 1;
        pp->exit_deadline = mh__now() + (pp->cfg.grace > 2 ? pp->cfg.grace : 2);
        for (int i = 0; i < pp->n; i++)
          if (pp->wk[i].state == W_LIVE) pp_disp_send_exit(pp, i);
        did++;
      }
      int alive = 0;
      for (int i = 0; i < pp->n; i++)
        alive += pp->wk[i].state == W_LIVE || pp->wk[i].state == W_SPAWNING;
      if (!alive) break;
    }
    if (did) {
      if (spell.rounds && spin_busy < MH__SPIN_PP_BUSY) spin_busy *= 2;
      mh__spin_reset(&spell);
      continue;
    }
    int busy = pp_disp_in_flight(pp) != 0;
    mh__spin_policy_t pol = MH__SPIN_PP_POLL(busy ? spin_busy : MH__SPIN_PP_IDLE);
    /* The poll's budget counts from the spell's start, pauses included (one
     * clock read per spell: this loop's rounds do real work). */
    if (!spell.rounds) spell.since = mh__now();
    if (mh__spin_again(&spell, &pol)) continue;
    if (busy && spin_busy > MH__SPIN_PP_MIN) spin_busy /= 2;
    /* Sleep until a worker, a submitter or the server wakes us. */
    atomic_store(&pp->ctl->parent_sleeping, 1);
    if (!pp_disp_pending_work(pp)) {
      struct pollfd p[2] = {{.fd = pp->evfd, .events = POLLIN},
                            {.fd = pp->srv, .events = POLLIN}};
      int r = poll(p, pp->srv >= 0 ? 2 : 1, timeout);
      if (r > 0 && p[0].revents) {
        uint64_t v;
        while (read(pp->evfd, &v, sizeof v) < 0 && errno == EINTR) {
        }
      }
      if (r > 0 && pp->srv >= 0 && p[1].revents) pp_disp_server_msgs(pp, 0);
    }
    atomic_store(&pp->ctl->parent_sleeping, 0);
    mh__spin_reset(&spell);
  }
  pp_disp_stop_server(pp);
}

static void *pp_disp_main(void *arg) {
  mh__pp_t *pp = arg;
  int rc = pp_disp_boot(pp);
  pp->up = rc == 0;
  pthread_mutex_lock(&pp->mu);
  pp->start_rc = rc;
  pp->start_done = 1;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  if (rc == 0) pp_disp_loop(pp);
  return NULL;
}

/* ==== the API: caller's threads =========================================== */

static void pp_call_free_mem(mh__pp_t *pp) {
  pp_job_t *lists[3] = {pp->freelist, pp->pfree, pp->qh};
  for (int k = 0; k < 3; k++)
    for (pp_job_t *j = lists[k], *nx; j; j = nx) {
      nx = j->next;
      mh__free(j);
    }
  if (pp->wk)
    for (int i = 0; i < pp->n; i++) {
      if (pp->wk[i].data) munmap(pp->wk[i].data, pp->wk[i].cap);
      mh__pp_io_fd_close(pp->wk[i].data_fd);
    }
  if (pp->ctl) {
    mh__pp_io_maps_del(pp->ctl);
    munmap(pp->ctl, pp->ctl_len);
  }
  if (pp->msh) {
    mh__pp_io_maps_del(pp->msh);
    munmap(pp->msh, pp->msh_len);
  }
  mh__free(pp->mtries);
  mh__pp_io_fd_close(pp->evfd);
  mh__free(pp->wk);
  mh__free(pp->srv_pids);
  mh__free(pp->srv_out);
  mh__free(pp);
}

int mh__pp_new(mh__pp_t **out, const mh__pp_config_t *cfg) {
  if (!out || !cfg || cfg->workers < 1 || cfg->workers > 4096 ||
      cfg->retries < 0 || cfg->max_tasks_per_child < 0 || !cfg->hooks.begin ||
      !cfg->hooks.requeue || !cfg->hooks.finish || !cfg->hooks.cancel ||
      cfg->grace != cfg->grace)
    return MH_EINVAL;
  *out = NULL;
  mh__pp_t *pp = mh__calloc(1, sizeof *pp);
  if (!pp) return MH_ENOMEM;
  pp->cfg = *cfg;
  if (!(pp->cfg.grace > 0)) pp->cfg.grace = 1.0;
  if (pp->cfg.grace > 1e6) pp->cfg.grace = 1e6;
  pp->n = cfg->workers;
  pp->evfd = -1;
  pp->srv = -1;
  int rc = MH_ENOMEM;
  pp->wk = mh__calloc((size_t)pp->n, sizeof *pp->wk);
  pp->srv_pids = mh__calloc((size_t)pp->n, sizeof *pp->srv_pids);
  /* The server's outbox: a slot has at most one M_SPAWNED and one M_EXITED
   * unread (the dispatcher asks for no new worker in a slot before it has
   * read the old one's exit), so 2n entries never overflow. */
  pp->srv_out_cap = 2u * (unsigned)pp->n + 4;
  pp->srv_out = mh__calloc(pp->srv_out_cap, sizeof *pp->srv_out);
  if (!pp->wk || !pp->srv_pids || !pp->srv_out) goto fail;
  for (int i = 0; i < pp->n; i++) pp->wk[i].data_fd = -1;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  pp->ctl_len = (sizeof(pp_ctl_t) + (size_t)pp->n * sizeof(pp_slot_t) + page - 1) &
                ~(page - 1);
  void *ctl = mmap(NULL, pp->ctl_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ctl == MAP_FAILED) goto fail;
  pp->ctl = ctl;
  mh__pp_io_maps_add(ctl, pp->ctl_len);
  /* The map's shared state and window, inherited by every worker. */
  size_t head_len = (sizeof(pp_map_sh_t) + page - 1) & ~(page - 1);
  pp->msh_len = head_len + PP_MAP_DATA;
  void *msh = mmap(NULL, pp->msh_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (msh == MAP_FAILED) goto fail;
  pp->msh = msh;
  mh__pp_io_maps_add(msh, pp->msh_len);
  pp->mdata = (char *)msh + head_len;
  pp->mtries = mh__calloc(PP_MAP_SLOTS, sizeof *pp->mtries);
  if (!pp->mtries) goto fail;
  pp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pp->evfd < 0) {
    rc = -errno;
    goto fail;
  }
  mh__pp_io_fd_add(pp->evfd);
  if (pthread_mutex_init(&pp->mu, NULL)) goto fail;
  if (pthread_mutex_init(&pp->join_mu, NULL)) goto fail_mu;
  if (mh__cond_init(&pp->cv, false)) goto fail_jmu;
  /* Like Python before it forks: what the program printed so far is flushed
   * now, so that no process of the pool inherits it half-written. */
  fflush(stdout);
  fflush(stderr);
  /* The dispatcher blocks every signal: signals meant for the program are
   * handled by its own threads, and the server starts from a known mask. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&pp->thread, NULL, pp_disp_main, pp);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err) {
    rc = MH_EAGAIN;
    goto fail_cv;
  }
  pthread_mutex_lock(&pp->mu);
  while (!pp->start_done) pthread_cond_wait(&pp->cv, &pp->mu);
  rc = pp->start_rc;
  pthread_mutex_unlock(&pp->mu);
  if (rc < 0) {
    pthread_join(pp->thread, NULL);
    goto fail_cv;
  }
  *out = pp;
  return 0;
fail_cv:
  pthread_cond_destroy(&pp->cv);
fail_jmu:
  pthread_mutex_destroy(&pp->join_mu);
fail_mu:
  pthread_mutex_destroy(&pp->mu);
fail:
  pp_call_free_mem(pp);
  return rc;
}

int mh__pp_submit_many(mh__pp_t *pp, void *const *users,
                       const mh__task_t *const *ts, size_t n) {
  if (!pp || (n && (!users || !ts))) return MH_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!ts[i] || !ts[i]->fn || (ts[i]->count && !pp_job_len(ts[i], 0)) ||
        (!ts[i]->in && ts[i]->in_size) || (!ts[i]->out && ts[i]->out_size))
      return MH_EINVAL;
  if (!n) return 0;
  pthread_mutex_lock(&pp->mu);
  if (atomic_load(&pp->shut)) {
    pthread_mutex_unlock(&pp->mu);
    return MH_ESHUTDOWN;
  }
  pp_job_t *h = NULL, *t = NULL;
  for (size_t i = 0; i < n; i++) {
    pp_job_t *j = pp->freelist;
    if (j) {
      pp->freelist = j->next;
    } else {
      j = mh__malloc(sizeof *j);
      if (!j) {
        /* Give back what was taken: all or none. */
        while (h) {
          pp_job_t *nx = h->next;
          h->next = pp->freelist;
          pp->freelist = h;
          h = nx;
        }
        pthread_mutex_unlock(&pp->mu);
        return MH_ENOMEM;
      }
    }
    memset(j, 0, sizeof *j);
    j->user = users[i];
    j->t = ts[i];
    if (t)
      t->next = j;
    else
      h = j;
    t = j;
  }
  if (pp->qt)
    pp->qt->next = h;
  else
    pp->qh = h;
  pp->qt = t;
  atomic_fetch_add(&pp->nq, n);
  pthread_mutex_unlock(&pp->mu);
  mh__pp_io_wake_disp(pp, 0);
  return 0;
}

int mh__pp_submit(mh__pp_t *pp, void *user, const mh__task_t *t) {
  return mh__pp_submit_many(pp, &user, &t, 1);
}

int mh__pp_shutdown(mh__pp_t *pp, unsigned flags) {
  if (!pp) return MH_EINVAL;
  pthread_mutex_lock(&pp->mu);
  int s = atomic_load(&pp->shut) | 1 |
          ((flags & (MH_SHUTDOWN_CANCEL_FUTURES | MH_SHUTDOWN_TERMINATE)) ? 2 : 0) |
          ((flags & MH_SHUTDOWN_TERMINATE) ? 4 : 0);
  atomic_store(&pp->shut, s);
  pthread_mutex_unlock(&pp->mu);
  mh__pp_io_wake_disp(pp, 1);
  if (!(flags & MH_SHUTDOWN_WAIT)) return 0;
  /* A hook that shuts its own pool down cannot wait for itself. */
  if (pthread_equal(pthread_self(), pp->thread)) return MH_EDEADLK;
  pthread_mutex_lock(&pp->join_mu);
  if (!pp->joined) {
    pthread_join(pp->thread, NULL);
    pp->joined = 1;
  }
  pthread_mutex_unlock(&pp->join_mu);
  return 0;
}

void mh__pp_free(mh__pp_t *pp) {
  if (!pp) return;
  mh__pp_shutdown(pp, MH_SHUTDOWN_WAIT);
  pthread_cond_destroy(&pp->cv);
  pthread_mutex_destroy(&pp->join_mu);
  pthread_mutex_destroy(&pp->mu);
  pp_call_free_mem(pp);
}



int mh__pp_worker_pids(mh__pp_t *pp, int *pids, int n) {
  if (!pp || !pids || n < 0) return MH_EINVAL;
  int k = 0;
  for (int i = 0; i < pp->n && k < n; i++) {
    int pid = atomic_load(&pp->wk[i].pid);
    if (pid > 0) pids[k++] = pid;
  }
  return k;
}

int mh__pp_server_pid(mh__pp_t *pp) { return pp ? atomic_load(&pp->srv_pid) : 0; }