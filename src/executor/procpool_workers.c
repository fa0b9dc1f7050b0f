/* SPDX-License-Identifier: MIT */
/* procpool_workers.c - the process pool's dispatcher, its workers' side:
 * spawning a slot, a worker's exit and what it held, a broken pool, a lost
 * fork server and its replacement, and the boot that starts them all.
 *
 * Everything here runs on the dispatcher thread (pp_disp_*), called by the
 * loop of procpool.c; it hands jobs back to that file's queue and ring code
 * (pp_disp_take, pp_disp_finish, pp_disp_collect, ...), which procpool.c
 * shares with this file alone.
 *
 * Invariants:
 *   - A slot is W_NONE, W_SPAWNING (asked of the server, no pid yet),
 *     W_LIVE (pid known, ring in use) or W_DEAD; only W_LIVE slots hold
 *     ring entries, and a slot becomes W_LIVE again only after its dead
 *     worker's entries were settled (pp_disp_exited).
 *   - A worker's exit is settled once: finished items keep their results,
 *     the item it died in fails with MH_EWORKERDIED or runs again within
 *     its retries, the rest go back to the front of the private queue in
 *     order.
 *   - A dead server is the death of all its workers: it is reaped before a
 *     new one is forked, so no worker of the old one runs on in a slot the
 *     new one fills; the pool breaks only if PP_SERVER_RESTARTS servers in
 *     a row die before spawning anything, or its workers never start.
 *   - Once broken, a pool stays broken: its live workers are killed and
 *     settled, every slot is W_DEAD, the server's socket is closed, and the
 *     loop fails every job queued then or later (pp_disp_fail_queue).
 *
 * Who may touch what (the tags of procpool_internal.h, where every field
 * carries one): this file touches
 *   D  the dispatcher's own fields (wk[], ph/pt, srv, broken, bad_starts,
 *      srv_lost, srv_restarts, exits_sent, cancelling, up), freely;
 *   A  srv_pid, a worker's pid and broken_flag, stored for other threads
 *      to read without a lock;
 *   SP a slot's ring entries and head, written before the release store
 *      that publishes them to the worker;
 *   SW a slot's worker-written fields (ready, tail, m_started, m_done),
 *      read with acquire; reset only while no worker owns the slot;
 *   I  cfg, n, ctl, msh, read only.
 * Lock order: takes no lock (the dispatcher takes mu in procpool.c only);
 * hooks are called with no lock held.  Calls procpool.c's queue code,
 * procpool_child.c (to start a server) and procpool_io.c.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procpool_internal.h"
#include "trace_internal.h"

/* ==== dispatcher: workers ================================================= */

int pp_disp_spawn(mh__pp_t *pp, int slot) {
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

void pp_disp_kill(mh__pp_t *pp, int slot, int sig) {
  pp_wk_t *w = &pp->wk[slot];
  int pid = atomic_load(&w->pid);
  if (pid <= 0 || pp->srv < 0) return;
  pp_msg_t m = {M_KILL, slot, pid, sig};
  mh__pp_io_send(pp->srv, &m, -1);
}

void pp_disp_send_exit(mh__pp_t *pp, int slot) {
  pp_wk_t *w = &pp->wk[slot];
  if (w->exit_sent || w->head - w->coll >= PP_RING) return;
  pp_disp_ctl_entry(pp, slot, K_EXIT);
  w->exit_sent = 1;
  mh__pp_io_publish(pp, slot);
}

static void pp_disp_broken(mh__pp_t *pp);

/* The worker of `slot` ended with wait status st: settle what it held,
 * re-running an item it died in at most `retries` times. */
void pp_disp_exited(mh__pp_t *pp, int slot, int pid, int st, int retries) {
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

void pp_disp_fail_queue(mh__pp_t *pp) {
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
int pp_disp_server_msgs(mh__pp_t *pp, int block) {
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

void pp_disp_stop_server(mh__pp_t *pp) {
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
int pp_disp_boot(mh__pp_t *pp) {
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
