/* SPDX-License-Identifier: MIT */
/* procpool_child.c - the process pool's children: the fork server and the
 * worker loops (jobs and the claim-based map).
 *
 * Processes:
 *   server   forked once, by the dispatcher thread, when the pool is made.
 *            Single-threaded; it only forks workers on request, kills them on
 *            request and reports each worker's exit status.  So workers are
 *            never forked from the multi-threaded parent after the pool
 *            exists.  PR_SET_PDEATHSIG(SIGKILL) is tied to the dispatcher
 *            thread, which lives exactly as long as the pool.
 *   workers  children of the server (PR_SET_PDEATHSIG too), so they die with
 *            it, and it dies with the parent.  They ignore SIGINT.
 *
 * Invariants:
 *   - The server makes only system calls: no locks, no allocation (it is a
 *     fork of a multi-threaded parent, whose locks may be held forever).
 *   - The server signals only a child it has not reaped yet, so a recycled
 *     pid is never hit.
 *   - A worker touches only its own slot of ctl (SW fields), the map's
 *     shared state by the protocol of procpool_internal.h, and the data it
 *     was handed; it reads SP/SC fields only after the acquire that
 *     published them.
 *   - A worker records its progress (started, then progress / m_started,
 *     then m_done) around every item, so that its death at any instruction
 *     leaves the dispatcher enough to settle each item once.
 * Lock order: no locks (processes of their own).  Calls procpool_io.c only.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procpool_internal.h"
#include "spin.h"
#include "trace_internal.h"

static const mh__deadline_t pp_child_forever = {MH__DL_FOREVER, {0, 0}};

static void pp_child_worker(mh__pp_t *pp, int slot, int dfd, pid_t server)
    __attribute__((noreturn));

/* ==== both children ====================================================== */

/* In a freshly forked server or worker: signals the parent may have set up
 * must not change how we end.  SIGINT is ignored (Ctrl-C is the parent's to
 * handle); crash and termination signals get their default action so that a
 * crash is reported as the signal (a sanitizer's or the program's handler
 * would otherwise turn it into an exit status). */
static void pp_child_signals(void) {
  static const int dfl[] = {SIGTERM, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                            SIGABRT, SIGCHLD, SIGPIPE, SIGHUP, SIGQUIT};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++)
    sigaction(dfl[i], &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGINT, &sa, NULL);
}

/* ==== the fork server ==================================================== */

/* Send a report to the parent without ever blocking: a server blocked in a
 * send stops reading, and a dispatcher that sends spawn requests faster than
 * it reads the replies (a pool of thousands starting) then blocks too, for
 * ever.  What the socket cannot take waits in the outbox, in order, and
 * goes out when poll says there is room. */
static void pp_child_server_flush(mh__pp_t *pp, int sock) {
  while (pp->srv_out_n) {
    if (mh__pp_io_send_flags(sock, &pp->srv_out[pp->srv_out_h], -1,
                             MSG_DONTWAIT) == MH_EAGAIN)
      return;
    pp->srv_out_h = (pp->srv_out_h + 1) % pp->srv_out_cap;
    pp->srv_out_n--;
  }
}

static void pp_child_server_report(mh__pp_t *pp, int sock, const pp_msg_t *m) {
  pp_child_server_flush(pp, sock);
  if (!pp->srv_out_n &&
      mh__pp_io_send_flags(sock, m, -1, MSG_DONTWAIT) != MH_EAGAIN)
    return;
  if (pp->srv_out_n == pp->srv_out_cap) {
    /* Cannot happen (see srv_out_cap); blocking beats losing a report. */
    mh__pp_io_send(sock, m, -1);
    return;
  }
  pp->srv_out[(pp->srv_out_h + pp->srv_out_n) % pp->srv_out_cap] = *m;
  pp->srv_out_n++;
}

/* Reap every exited worker and tell the parent about each. */
static void pp_child_server_reap(mh__pp_t *pp, int sock, int *pids) {
  int st;
  pid_t w;
  while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
    pp_msg_t m = {M_EXITED, -1, (int32_t)w, st};
    for (int i = 0; i < pp->n; i++)
      if (pids[i] == w) {
        pids[i] = 0;
        m.slot = i;
      }
    pp_child_server_report(pp, sock, &m);
  }
}

void mh__pp_child_server(mh__pp_t *pp, int sock, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0); /* the parent died before prctl */
  pp_child_signals();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, NULL);
  mh__pp_io_drop_others(pp->evfd, sock, pp->ctl, pp->msh);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) _exit(127);
  int *pids = pp->srv_pids;
  for (;;) {
    struct pollfd p[2] = {
        {.fd = sock, .events = POLLIN | (pp->srv_out_n ? POLLOUT : 0)},
        {.fd = sfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents & POLLOUT) pp_child_server_flush(pp, sock);
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      pp_child_server_reap(pp, sock, pids);
    }
    if (p[0].revents & ~POLLOUT) {
      pp_msg_t m;
      int fd;
      int r = mh__pp_io_recv(sock, &m, &fd, 0);
      if (r == MH_EAGAIN) continue;
      if (r <= 0 || m.op == M_QUIT) break; /* the parent is done, or died */
      if (m.op == M_SPAWN && m.slot >= 0 && m.slot < pp->n && fd >= 0) {
        pid_t me = getpid();
        pid_t pid = fork();
        if (pid == 0) {
          close(sock);
          close(sfd);
          pp_child_worker(pp, m.slot, fd, me);
        }
        int err = errno;
        close(fd);
        if (pid > 0) pids[m.slot] = pid;
        pp_msg_t rep = {M_SPAWNED, m.slot, pid > 0 ? pid : 0,
                        pid > 0 ? 0 : -err};
        pp_child_server_report(pp, sock, &rep);
      } else if (m.op == M_KILL && m.slot >= 0 && m.slot < pp->n) {
        /* Only a child not yet reaped is signalled, so a recycled pid is
         * never hit. */
        if (m.pid > 0 && pids[m.slot] == m.pid) kill(m.pid, m.arg);
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  for (int i = 0; i < pp->n; i++)
    if (pids[i] > 0) kill(pids[i], SIGKILL);
  for (;;) {
    pid_t w = waitpid(-1, NULL, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
  }
  _exit(0);
}

/* ==== a worker: the claim-based map ====================================== */

static void pp_child_exit(int status) __attribute__((noreturn));
static void pp_child_exit(int status) {
  /* Hand over what tasks printed, as a normal exit would, without running
   * the parent program's atexit handlers. */
  fflush(NULL);
  _exit(status);
}

/* Tell the parent a chunk is done when it sleeps and waits for this many. */
static void pp_child_map_done_one(pp_map_sh_t *m) {
  uint64_t nd = atomic_fetch_add(&m->ndone, 1) + 1;
  if (atomic_load(&m->pwait) && nd >= atomic_load(&m->wake_at))
    mh__pp_io_map_wake_parent(m);
}

/* Run chunk j (window slot k) from its first unfinished item. */
static void pp_child_map_run(const pp_map_sh_t *mc, pp_map_sh_t *m, char *data,
                             pp_slot_t *s, uint64_t j, uint64_t k, int init) {
  uint64_t chunk = mc->chunk, lo = j * chunk;
  uint64_t hi = lo + chunk < mc->n ? lo + chunk : mc->n;
  uint64_t first = m->start[k], t0 = mh__trace_begin();
  atomic_store_explicit(&s->m_done, first, memory_order_relaxed);
  atomic_store_explicit(&s->m_started, first, memory_order_relaxed);
  size_t isz = (size_t)mc->in_size, osz = (size_t)mc->out_size;
  uint64_t base = k * chunk - lo; /* window item of item i: base + i */
  const char *in = data;
  char *out = data + mc->out_off;
  int *st = mc->want_st ? (int *)(void *)(data + mc->st_off) : NULL;
  mh_task_fn fn = mc->fn;
  void *ctx = mc->ctx;
  for (uint64_t i = first; i < hi; i++) {
    atomic_store_explicit(&s->m_started, i + 1, memory_order_relaxed);
    size_t w = (size_t)(base + i);
    int rc = init ? init
                  : fn(isz ? in + w * isz : NULL, isz, osz ? out + w * osz : NULL,
                       osz, ctx);
    if (st) st[w] = rc;
    if (rc && !m->code[k]) m->code[k] = rc;
    atomic_store_explicit(&s->m_done, i + 1, memory_order_release);
  }
  mh__trace_end(t0, MH__TR_CHUNK, j, hi - first, m->code[k]);
}

/* A worker's part of a claim-based map: claim chunks until the parent says
 * the map is over.  Returns 1 when max_tasks_per_child says to exit. */
static int pp_child_map(mh__pp_t *pp, int slot, uint32_t gen, int init,
                        unsigned max, unsigned *done, int *populated) {
  pp_map_sh_t *m = pp->msh;
  pp_slot_t *s = &pp->ctl->slots[slot];
  if (atomic_load(&m->gen) != gen) return 0; /* a stale entry */
  if (!*populated) {
    /* Fault the whole window in with one call instead of one fault per
     * page (page faults are what costs most in a VM). */
    *populated = 1;
    mh__prefault(pp->mdata, PP_MAP_DATA);
  }
  pp_map_sh_t mc; /* the parameters, read once */
  mc.fn = m->fn;
  mc.ctx = m->ctx;
  mc.n = m->n;
  mc.chunk = m->chunk;
  mc.nchunks = m->nchunks;
  mc.wc = m->wc;
  mc.in_size = m->in_size;
  mc.out_size = m->out_size;
  mc.want_st = m->want_st;
  mc.out_off = m->out_off;
  mc.st_off = m->st_off;
  uint64_t me = (uint64_t)slot;
  mh__spin_t idle = MH__SPIN_INIT;
  for (;;) {
    if (atomic_load_explicit(&m->stop, memory_order_acquire)) return 0;
    uint64_t j = atomic_load(&m->hint);
    if (j < mc.nchunks) {
      uint64_t k = j % mc.wc;
      uint64_t sv = atomic_load_explicit(&m->state[k], memory_order_acquire);
      uint64_t tj = sv >> 16, kind = sv & 0xFFFF;
      if (tj == j + 1 && kind == MS_READY) {
        /* Forget the last chunk's progress first: killed right after the
         * exchange, we would otherwise leave m_done of a chunk of an earlier
         * map, which may fall inside this chunk, and the dispatcher's
         * pp_disp_map_dead would take items never run for finished (stale
         * outputs, status 0). */
        atomic_store_explicit(&s->m_done, UINT64_MAX, memory_order_relaxed);
        atomic_store_explicit(&s->m_started, UINT64_MAX, memory_order_relaxed);
        if (!atomic_compare_exchange_strong(&m->state[k], &sv, MS_TAG(j, me)))
          continue;
        uint64_t h = j; /* (a failed exchange overwrites h, not j) */
        atomic_compare_exchange_strong(&m->hint, &h, j + 1);
        pp_child_map_run(&mc, m, pp->mdata, s, j, k, init);
        /* An exchange, not a store: a broken pool gives its live workers up
         * for dead and settles their chunks (pp_disp_broken) before they are
         * killed, and the parent may already have refilled the slot with
         * chunk j + wc; a plain store would mark that one DONE unrun, or
         * hide it from every claim and hang the map. */
        uint64_t mine = MS_TAG(j, me);
        if (atomic_compare_exchange_strong_explicit(
                &m->state[k], &mine, MS_TAG(j, MS_DONE), memory_order_acq_rel,
                memory_order_relaxed))
          pp_child_map_done_one(m);
        mh__spin_reset(&idle);
        if (max && ++*done >= max) return 1;
        continue;
      }
      if (tj > j + 1 || (tj == j + 1 && kind != MS_READY)) {
        /* Taken (or long done): look further. */
        uint64_t h = j;
        if (atomic_compare_exchange_strong(&m->hint, &h, j + 1) &&
            tj == j + 1) {
          /* Its owner may have died and pp_disp_map_dead put it back
           * between our look and the exchange, while the hint was still j
           * (so it did not lower it): chunk j would stay READY behind the
           * hint and the map never end.  Dekker with pp_disp_map_dead (it
           * stores READY, then reads the hint): look again and lower the
           * hint back. */
          if (atomic_load(&m->state[k]) == MS_TAG(j, MS_READY)) {
            h = j + 1;
            while (h > j && !atomic_compare_exchange_weak(&m->hint, &h, j)) {
            }
          }
        }
        continue;
      }
    }
    /* Nothing to claim: the parent has not refilled yet, or every chunk is
     * taken.  Spin a little, then sleep until the parent or the dispatcher
     * bumps ready_seq. */
    if (mh__spin_again(&idle, &MH__SPIN_PP_WORKER)) continue;
    atomic_fetch_add(&m->wwait, 1);
    uint32_t seq = atomic_load(&m->ready_seq);
    uint64_t j2 = atomic_load(&m->hint);
    int changed = j2 != j || atomic_load(&m->stop);
    if (!changed && j2 < mc.nchunks) {
      uint64_t sv = atomic_load(&m->state[j2 % mc.wc]);
      changed = (sv >> 16) >= j2 + 1;
    }
    if (!changed)
      mh__futex_wait(&m->ready_seq, seq, &pp_child_forever, MH__FUTEX_SHARED);
    atomic_fetch_sub(&m->wwait, 1);
    mh__spin_reset(&idle);
  }
}

/* ==== a worker: jobs ===================================================== */

/* Wait until the parent published an entry past `tail`: spin a little, then
 * sleep on the futex (Dekker with mh__pp_io_publish: wsleep, then look at
 * head again). */
static void pp_child_wait_entry(pp_slot_t *s, uint32_t tail) {
  mh__spin_t spin = MH__SPIN_INIT;
  while (atomic_load_explicit(&s->head, memory_order_acquire) == tail) {
    if (mh__spin_again(&spin, &MH__SPIN_PP_WORKER)) continue;
    /* (No reset after the sleep: a wake-up without an entry yields a few
     * rounds and sleeps again.) */
    atomic_store(&s->wsleep, 1);
    if (atomic_load(&s->head) == tail)
      mh__futex_wait(&s->head, tail, &pp_child_forever, MH__FUTEX_SHARED);
    atomic_store(&s->wsleep, 0);
  }
}

/* Run the items of a K_RUN entry; the slot's data is remapped first when
 * the entry lies beyond the worker's mapping. */
static void pp_child_run_entry(pp_slot_t *s, pp_entry_t *e, int dfd, char **data,
                               size_t *mapped, int init) {
  uint64_t n = e->count - e->first;
  uint64_t need = e->st_off + n * sizeof(int);
  if (need > *mapped) {
    size_t sz = (size_t)atomic_load_explicit(&s->data_size, memory_order_acquire);
    if (*data) munmap(*data, *mapped);
    *data = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
    if (*data == MAP_FAILED) _exit(126);
    *mapped = sz;
  }
  char *d = *data;
  const char *in = e->in_size ? d + e->in_off : NULL;
  char *out = e->out_size ? d + e->out_off : NULL;
  int *st = (int *)(void *)(d + e->st_off);
  size_t isz = (size_t)e->in_size, osz = (size_t)e->out_size;
  mh_task_fn fn = e->fn;
  void *ctx = e->ctx;
  for (uint64_t i = 0; i < n; i++) {
    atomic_store_explicit(&e->started, e->first + i + 1, memory_order_relaxed);
    uint64_t t0 = mh__trace_begin();
    st[i] = init ? init
                 : fn(in ? in + i * isz : NULL, isz, out ? out + i * osz : NULL,
                      osz, ctx);
    mh__trace_end(t0, MH__TR_TASK, MH__TR_SEQ, 1, st[i]);
    atomic_store_explicit(&e->progress, e->first + i + 1, memory_order_release);
  }
}

static void pp_child_worker(mh__pp_t *pp, int slot, int dfd, pid_t server) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != server) _exit(0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Output the parent had buffered when the server was forked is the
   * parent's to print, not ours. */
  __fpurge(stdout);
  __fpurge(stderr);
  mh__trace_role(MH__TR_ROLE_PROCESS, slot);
  pp_slot_t *s = &pp->ctl->slots[slot];
  _Atomic uint32_t *psleep = &pp->ctl->parent_sleeping;
  int evfd = pp->evfd;
  char *data = NULL;
  size_t mapped = 0;
  int init = 0, populated = 0;
  if (pp->cfg.initializer) init = pp->cfg.initializer(pp->cfg.initarg);
  atomic_store_explicit(&s->ready, 1, memory_order_release);
  unsigned max = (unsigned)pp->cfg.max_tasks_per_child, done = 0;
  uint32_t tail = atomic_load(&s->tail);
  for (;;) {
    pp_child_wait_entry(s, tail);
    pp_entry_t *e = &s->ring[tail % PP_RING];
    if (e->kind == K_EXIT) pp_child_exit(0);
    uint32_t q = E_QUEUED;
    int took = atomic_compare_exchange_strong(&e->claim, &q, E_TAKEN);
    if (took && e->kind == K_MAP) {
      if (pp_child_map(pp, slot, (uint32_t)e->first, init, max, &done, &populated))
        pp_child_exit(0); /* max_tasks_per_child reached inside the map */
      took = 0;          /* counted per chunk already */
    } else if (took) {
      pp_child_run_entry(s, e, dfd, &data, &mapped, init);
    }
    atomic_store(&s->tail, ++tail);
    if (atomic_load(psleep)) mh__pp_io_wake_fd(evfd);
    if (took && max && ++done >= max) pp_child_exit(0);
  }
}
