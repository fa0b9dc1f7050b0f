/* SPDX-License-Identifier: MIT */
/* procpool.c - the process pool's dispatcher loop: one thread per pool
 * that takes the submission queue, feeds jobs to the workers' rings,
 * collects results, keeps the timers (time limits, kills, respawns) and
 * ends the pool; and the engine's API, which starts, feeds and joins that
 * thread.
 *
 * Worker processes come from a fork server and are fed through shared
 * memory (procpool_internal.h describes the layout and who may touch each
 * field).  The loop calls the dispatcher's two other files:
 * procpool_jobs.c (jobs into rings and results out, the map's entries) and
 * procpool_workers.c (spawning, a worker's exit, a lost server, the boot).
 * procpool_child.c is the code that runs in the server and the workers;
 * procpool_map.c the claim-based map, which runs on the caller's thread and
 * needs the dispatcher only to attach workers to it and to settle the chunk
 * of a worker that dies.
 *
 * Invariants:
 *   - Everything of the parent side tagged D (wk[], the private queue ph/pt,
 *     timers, the ring heads) is touched by the dispatcher thread alone; a
 *     caller reaches it only through mu (the submission queue, the shutdown
 *     flags, map_on/map_busy) and the eventfd that wakes the dispatcher.
 *   - A job is in exactly one place: the submission queue (M), the private
 *     queue (D), one ring entry (w->job[]), or the free lists.  It leaves the
 *     engine through exactly one hook: finish, or cancel.
 *   - A dead worker's entries are settled before its slot is respawned, and
 *     a dead server is the death of all its workers (procpool_workers.c).
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
#include "thread_internal.h"
#include "trace_internal.h"

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
    rc = mh__thread_create_error(err, NULL);
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