/* SPDX-License-Identifier: MIT */
/* procpool_internal.h - the process pool engine's shared layout and records.
 *
 * Read by the six files of the engine, never outside it (executor_procs.c
 * and the tests see procpool.h only):
 *   procpool.c        the dispatcher thread's loop, and the API that
 *                     starts, feeds and joins it
 *   procpool_workers.c the dispatcher: spawning, exits, a broken pool, a
 *                     lost server, the boot
 *   procpool_jobs.c   the dispatcher: jobs into rings, results out, the
 *                     map's entries and dead chunks
 *   procpool_child.c  the fork server and the worker loops (other processes)
 *   procpool_map.c    the claim-based map, run on the caller's thread
 *   procpool_io.c     socket messages with fds, the fd/mapping registry,
 *                     wake-ups
 * Calls go one way: procpool.c -> procpool_workers.c -> procpool_jobs.c
 * -> procpool_io.c, procpool_workers.c -> procpool_child.c -> procpool_io.c,
 * and procpool_map.c -> procpool_io.c.  Nothing calls back up.
 *
 * Names say who runs them, as Concurrency Kit's do: pp_disp_* the
 * dispatcher thread, pp_child_* the server or a worker, pp_call_* a caller's
 * thread (a submitter, the map's thread), pp_io_* any of them.  Functions
 * shared between the files carry the library's internal prefix (mh__pp_*)
 * so that they cannot collide with a program's names when linked statically.
 *
 * Processes: the parent (the program; one dispatcher thread per pool), the
 * fork server (forked once by the dispatcher, single-threaded), the workers
 * (children of the server).  Shared memory: `ctl` (one anonymous MAP_SHARED
 * arena: per worker slot a ring of PP_RING entries), one memfd of data per
 * slot, and the map's header and window (`msh`, `mdata`).  Both mappings are
 * made before the server is forked, so every worker inherits them.
 *
 * Who may touch what.  Each field below carries one or more of these tags:
 *   I  set by mh__pp_new before the dispatcher starts, read-only after
 *   D  the dispatcher thread only
 *   M  written under pp->mu (read under it too, unless also tagged A)
 *   J  written under pp->join_mu
 *   A  atomic: read by anyone without a lock; the other tags say who writes
 *   C  the thread running mh__pp_map, while it holds map_busy
 *   V  the server process's own copy only (meaningless in the parent)
 * and, for memory mapped by several processes:
 *   SP written by the parent's dispatcher, read by the worker after the
 *      release store that publishes it (ring entries, head)
 *   SW written by the slot's worker, read by the dispatcher (acquire)
 *   SC written by the map's thread while no worker is attached to its map,
 *      read-only for the workers after the K_MAP entry is published
 *   SX changed by compare-and-swap by the map's thread, the workers and the
 *      dispatcher, following the protocol written beside the field
 * Hooks are called on the dispatcher thread with no lock held.
 *
 * Lock order: join_mu, then mu.  No other lock is ever taken by the engine;
 * no lock is held across a hook, a futex wait or a system call that blocks.
 */
#ifndef MH_PROCPOOL_INTERNAL_H
#define MH_PROCPOOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "procpool.h"

/* ==== sizes ============================================================== */

#define PP_RING 16u /* entries in a worker's ring */
/* Jobs handed to one worker ahead of time.  A handed job counts as running
 * (it can no longer be cancelled, as in ProcessPoolExecutor's call queue),
 * so the depth stays small; 4 covers the generic map's window of 4 chunks
 * per worker. */
#define PP_DEPTH 4u
#define PP_DATA_INIT (256u << 10) /* first size of a slot's data memfd */
#define PP_ALIGN 64u              /* alignment of the parts of an entry's data */

static inline size_t pp_round(size_t n) {
  return (n + PP_ALIGN - 1) & ~(size_t)(PP_ALIGN - 1);
}

/* Bytes a job's remaining items need in a slot's data; 0 on overflow. */
static inline size_t pp_job_len(const mh__task_t *t, size_t first) {
  size_t n = t->count - first, a, b, c;
  if (__builtin_mul_overflow(n, t->in_size, &a) ||
      __builtin_mul_overflow(n, t->out_size, &b) ||
      __builtin_mul_overflow(n, sizeof(int), &c))
    return 0;
  if (a > SIZE_MAX / 4 || b > SIZE_MAX / 4 || c > SIZE_MAX / 4) return 0;
  return pp_round(a) + pp_round(b) + pp_round(c);
}

/* ==== shared layout: the rings ============================================ *
 *
 * Hand-off without a system call per item: the parent publishes entries by
 * a release store of `head`; the worker spins briefly on it before sleeping
 * on the futex, and the parent only wakes it when `wsleep` says it sleeps.
 * The worker publishes each finished item in the entry's `progress` and
 * each finished entry in `tail`; it writes the parent's eventfd only when
 * `parent_sleeping` is set.  Both sleep protocols are Dekker-style: store
 * own flag, full fence (seq_cst), re-check the other side.
 *
 * Crash accounting: `progress` tells which items of an entry were finished
 * (they keep their results), which one was running when the worker died (it
 * fails with MH_EWORKERDIED or is re-run when retries allow) and which were
 * never started (re-queued).  Each entry's bytes (inputs, outputs, item
 * statuses) are carved from the slot's data as a circular buffer: entries
 * finish in ring order, so space is released in the order it was taken. */

enum { E_QUEUED = 0, E_TAKEN = 1, E_REVOKED = 2 };
enum { K_RUN = 1, K_EXIT = 2, K_MAP = 3 };

typedef struct pp_entry {
  _Atomic uint32_t claim; /* SX: QUEUED -> TAKEN (worker) or REVOKED (parent) */
  uint32_t kind;          /* SP */
  mh_task_fn fn;          /* SP */
  void *ctx;              /* SP */
  uint64_t first, count;  /* SP: run items first..count-1 (K_MAP: first = gen) */
  uint64_t in_off, in_size, out_off, out_size, st_off; /* SP, in the data */
  _Atomic uint64_t progress; /* SW: items < progress are finished */
  _Atomic uint64_t started;  /* SW: items < started were begun */
} pp_entry_t;

typedef struct pp_slot {
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t head; /* SP: published (futex) */
  _Atomic uint32_t wsleep;                        /* SW: worker sleeps on head */
  _Atomic uint64_t data_size;                     /* SP: size of the memfd */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t tail; /* SW: finished entries */
  /* Claim-based map: the worker stores i + 1 in m_started before it runs
   * item i of its chunk and in m_done after; the dispatcher reads them when
   * the worker died (the dispatcher resets both before each spawn). */
  _Atomic uint64_t m_started, m_done; /* SW (SP before a spawn) */
  _Atomic uint32_t ready; /* SW: 1 once past its initializer (SP: 0 before a
                             spawn); a death before it is a failed start */
  _Alignas(MH__CACHE_LINE) pp_entry_t ring[PP_RING]; /* see pp_entry_t */
} pp_slot_t;

typedef struct pp_ctl {
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t parent_sleeping; /* SP */
  _Alignas(MH__CACHE_LINE) pp_slot_t slots[];                /* one per worker */
} pp_ctl_t;

/* ==== shared layout: the claim-based map ================================== *
 *
 * A map's items are cut into chunks on a fixed grid (chunk j is items
 * [j*chunk, min(n, (j+1)*chunk))).  The parent copies the inputs of chunks
 * j .. j+wc-1 into a window of wc chunk slots (slot j % wc) in `mdata`, a
 * shared mapping made with the pool and reused by every map, so its pages
 * fault once.  Each slot has a state word: the chunk's tag (j + 1) in the
 * high bits, and in the low 16 bits READY, DONE, or the number of the
 * worker slot that owns it.  A worker claims a chunk with one
 * compare-and-swap READY -> owner, so the owner is recorded in the same
 * atomic step that takes the chunk: a worker killed at any instant either
 * owns the chunk (the dispatcher settles it) or does not (it stays READY).
 * `hint` is only where to look first: workers advance it past chunks they
 * see taken, and the dispatcher lowers it when it puts a chunk back.
 *
 * The worker writes outputs, item statuses (when the caller wants them) and
 * the chunk's first failing code straight into the window, then stores DONE
 * (release).  The parent collects DONE chunks in order, copies the results
 * out and refills the slot with chunk j + wc.  Wake-ups: workers that find
 * nothing to claim spin, then sleep on `ready_seq`; the parent sleeps on
 * `done_seq` until `ndone` reaches `wake_at`.  Both are Dekker-style (own
 * flag, seq_cst, re-check the other side). */
#define PP_MAP_DATA (1u << 21)  /* bytes of the window */
#define PP_MAP_SLOTS 4096u      /* most chunk slots in the window */
#define PP_MAP_CHUNK_CAP 16384u /* automatic chunks have at most this many items */
#define MS_READY 0xFFFFu
#define MS_DONE 0xFFFEu
#define MS_PARENT 0xFFFDu /* the map's own thread settles it */
#define MS_TAG(j, k) ((((uint64_t)(j) + 1) << 16) | (k))

typedef struct pp_map_sh {
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t hint; /* SX: where to look first */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t ready_seq; /* SX: futex, bumped to wake workers */
  _Atomic uint32_t wwait; /* SX: workers sleeping on ready_seq */
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t ndone; /* SX: chunks done, this map */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t done_seq; /* SX: futex, bumped to wake the parent */
  _Atomic uint32_t pwait;   /* SC: the map's thread sleeps on done_seq */
  _Atomic uint64_t wake_at; /* SC: ... until ndone reaches this */
  _Alignas(MH__CACHE_LINE) _Atomic uint32_t stop; /* SC, SP: 1 = over, 2 = cancelled */
  _Atomic uint32_t gen;                            /* SC: map number */
  /* Parameters: written before the workers are told (K_MAP entries). */
  mh_task_fn fn;                                            /* SC */
  void *ctx;                                                /* SC */
  uint64_t n, chunk, nchunks, wc, in_size, out_size, want_st; /* SC */
  uint64_t out_off, st_off; /* SC: in the window; inputs at 0 */
  _Alignas(MH__CACHE_LINE) _Atomic uint64_t state[PP_MAP_SLOTS]; /* SX: slot states */
  /* The next two belong to whoever the slot's state names: the map's thread
   * while it fills the slot (not READY yet) or settles it (MS_PARENT), the
   * owning worker while it runs the chunk, the dispatcher when that worker
   * died. */
  uint64_t start[PP_MAP_SLOTS]; /* SX: first item still to run */
  int32_t code[PP_MAP_SLOTS];   /* SX: code of the chunk's lowest failing item */
} pp_map_sh_t;

/* ==== the parent <-> server socket ======================================== */

/* Messages on the socket (SOCK_SEQPACKET): the dispatcher asks, the server
 * answers and reports exits. */
enum { M_SPAWN = 1, M_KILL, M_QUIT, M_SPAWNED, M_EXITED };
typedef struct pp_msg {
  int32_t op, slot, pid, arg; /* arg: signal, or wait status, or -errno */
} pp_msg_t;

/* ==== parent-side records ================================================= */

typedef struct pp_job pp_job_t;
struct pp_job {
  pp_job_t *next;         /* M in the submission queue and free list, else D */
  void *user;             /* M at submission, D after */
  const mh__task_t *t;    /* M at submission, D after */
  size_t next_item;       /* D: first item not finished yet */
  int code;               /* D: code of the lowest failing item so far */
  int began;              /* D: begin() said yes and no requeue since */
  int tries;              /* D: deaths while running item next_item */
  int died, died_pid, died_exit; /* D: the first death that failed an item */
};

enum { W_NONE = 0, W_SPAWNING, W_LIVE, W_DEAD };

typedef struct pp_wk {
  int state;            /* D: W_* */
  _Atomic int pid;      /* D, A: read by mh__pp_worker_pids from other threads */
  int data_fd;          /* D (I once made): the slot's memfd */
  char *data;           /* D: the parent's mapping of it */
  size_t cap;           /* D: its size */
  size_t dhead, dtail;  /* D: circular allocation in data */
  uint32_t head, coll;  /* D: published / collected entries */
  pp_job_t *job[PP_RING];             /* D: the job of each entry, or NULL */
  size_t off[PP_RING], len[PP_RING];  /* D: each entry's bytes in data */
  unsigned assigned;    /* D: chunks given to this process */
  int in_map;           /* D: a K_MAP entry of the current map is in its ring */
  unsigned char kmap[PP_RING]; /* D: the entry is a K_MAP */
  int exit_sent;        /* D: a K_EXIT is in the ring */
  double kill_at;       /* D: SIGKILL after SIGTERM, 0 = none */
  double respawn_at;    /* D: retry a failed spawn, 0 = none */
  uint64_t wd_key;      /* D: watchdog: the item seen running (0 = none) */
  double wd_since;      /* D: when wd_key was first seen */
  int timed_out;        /* D: SIGKILLed for running past its time limit */
} pp_wk_t;

struct mh__pp {
  mh__pp_config_t cfg;  /* I */
  int n;                /* I: worker slots */
  pp_ctl_t *ctl;        /* I: the rings (shared, see pp_ctl_t) */
  size_t ctl_len;       /* I */
  int evfd;             /* I: eventfd the workers and callers wake the
                           dispatcher with */
  int srv;              /* D: parent end of the server socket, -1 when closed */
  _Atomic int srv_pid;  /* D, A: the server, 0 once it is reaped */
  int *srv_pids;        /* V: the server's table of its workers */
  pp_msg_t *srv_out;    /* V: reports the socket could not take yet, a ring
                           of srv_out_cap (see procpool_child.c) */
  unsigned srv_out_cap, srv_out_h, srv_out_n; /* V: its size, head, count */
  pp_wk_t *wk;          /* I: the array; each record is D (see pp_wk_t) */

  pthread_t thread;     /* I: the dispatcher */
  int joined;           /* J: the dispatcher was joined */
  pthread_mutex_t join_mu; /* I: serialises joining the dispatcher */

  pthread_mutex_t mu;   /* I */
  pthread_cond_t cv;    /* I: start handshake */
  int start_done, start_rc; /* M: the dispatcher's boot finished, its code */
  pp_job_t *qh, *qt, *freelist; /* M: submission queue, spare records */
  _Atomic size_t nq;    /* M, A: jobs in the submission queue */
  _Atomic int shut;     /* M, A: bits 1 = shutting, 2 = cancelling what has
                           not started, 4 = terminating what runs */

  pp_job_t *ph, *pt, *pfree; /* D: private queue, records to give back */
  unsigned rr;          /* D: where round robin looks first */
  int cancelling;       /* D: a cancelling shutdown was seen */
  int terminating;      /* D: running workers were told to end (SIGTERM) */
  int wd_on;            /* D: some task has a time limit: the watchdog runs */
  _Atomic int64_t map_lim_us; /* A, written by the map's caller before
                           map_on: the running map's per-item limit, 0 = none */
  int exits_sent;       /* D: every worker was told to exit */
  int broken;           /* D: the pool gave up (its server cannot be had,
                           or its workers cannot start); everything fails */
  int bad_starts;       /* D: workers in a row that died before doing anything */
  int up;               /* D: the boot succeeded: a lost server is replaced */
  int srv_lost;         /* D: settling the workers of a server that died */
  int srv_restarts;     /* D: servers forked in a row with no worker spawned */
  double exit_deadline; /* D: SIGKILL the workers left after this */

  /* The claim-based map. */
  pp_map_sh_t *msh;     /* I: shared with the workers (see pp_map_sh_t) */
  char *mdata;          /* I: the window, after the header in the same mapping */
  size_t msh_len;       /* I */
  /* A thread runs a claim-based map (from before it fills the window, so
   * that a shutdown arriving meanwhile waits for it). */
  _Atomic int map_busy;          /* M, A */
  _Atomic int map_on;            /* M, A: workers should join the map */
  _Atomic uint32_t map_attached; /* D, A: K_MAP entries in rings (private futex) */
  _Atomic int broken_flag;       /* D, A: pp->broken, for the map's thread */
  int *mtries;          /* D per window slot, reset by C before the slot is READY */
  int mpopulated;       /* C: the parent faulted the window in */
};

/* ==== procpool_io.c: messages, registry, wake-ups (any thread) ============ */

/* The registry of every pool's descriptors and shared mappings, so that a
 * new fork server can drop those of other pools. */
void mh__pp_io_fd_add(int fd);
void mh__pp_io_fd_close(int fd); /* -1 ignored */
void mh__pp_io_maps_add(void *p, size_t len);
void mh__pp_io_maps_del(void *p);
/* In a freshly forked server: close every registered descriptor but `keep1`
 * and `keep2`, unmap every registered mapping but `keep_a` and `keep_b`. */
void mh__pp_io_drop_others(int keep1, int keep2, const void *keep_a,
                           const void *keep_b);

/* One message, optionally with a descriptor (fd >= 0), on the socket:
 * 0 or a negative code. */
int mh__pp_io_send(int sock, const pp_msg_t *m, int fd);
/* The same with extra sendmsg flags (MSG_DONTWAIT): MH_EAGAIN when full. */
int mh__pp_io_send_flags(int sock, const pp_msg_t *m, int fd, int flags);
/* Receive one message (and an fd if one came, -1 if none; pass NULL to close
 * any).  Returns 1, 0 at EOF, or a negative code (MH_EAGAIN when
 * non-blocking and nothing is there). */
int mh__pp_io_recv(int sock, pp_msg_t *m, int *fd, int flags);

/* Write 1 to an eventfd. */
void mh__pp_io_wake_fd(int fd);
/* Wake the dispatcher: always, or only when it says it sleeps. */
void mh__pp_io_wake_disp(mh__pp_t *pp, int always);
/* Publish slot's entries up to wk[slot].head; wake its worker if it sleeps.
 * (The dispatcher's.) */
void mh__pp_io_publish(mh__pp_t *pp, int slot);
/* Map wake-ups: workers that sleep for chunks (only if some do, after the
 * slots were made READY), all of them in any case (stop, a chunk put back),
 * and the map's thread. */
void mh__pp_io_map_wake_workers(pp_map_sh_t *m);
void mh__pp_io_map_bump_workers(pp_map_sh_t *m);
void mh__pp_io_map_wake_parent(pp_map_sh_t *m);

/* ==== the dispatcher's three files (the dispatcher thread only) =========== */

/* The dispatcher is one thread whose code lies in three files, called one
 * way: procpool.c (its loop) -> procpool_workers.c (spawning, exits, a lost
 * server, the boot) -> procpool_jobs.c (jobs into rings, results out, the
 * map's entries), and procpool.c -> procpool_jobs.c.  Their shared functions
 * keep the pp_disp_* names that say who runs them; each name is a macro for
 * the library's internal prefix, so that linked statically they cannot
 * collide with a program's names. */

/* A job's time limit per item in seconds, 0 = none. */
static inline double pp_job_lim(const mh__pp_t *pp, const pp_job_t *j) {
  double t = j->t->timeout;
  return t > 0 ? t : t < 0 ? 0 : pp->cfg.task_timeout;
}

/* procpool_jobs.c: jobs and the map's entries. */
#define pp_disp_recycle mh__pp_disp_recycle
#define pp_disp_push_front mh__pp_disp_push_front
#define pp_disp_take mh__pp_disp_take
#define pp_disp_finish mh__pp_disp_finish
#define pp_disp_collect mh__pp_disp_collect
#define pp_disp_assign mh__pp_disp_assign
#define pp_disp_map_detach mh__pp_disp_map_detach
#define pp_disp_ctl_entry mh__pp_disp_ctl_entry
#define pp_disp_map_post mh__pp_disp_map_post
#define pp_disp_map_dead mh__pp_disp_map_dead
/* Give a job record back to the free list (returned to mu's list later). */
void pp_disp_recycle(mh__pp_t *pp, pp_job_t *j);
/* Put the chain first .. last back at the front of the private queue. */
void pp_disp_push_front(mh__pp_t *pp, pp_job_t *first, pp_job_t *last);
/* Copy the results of items [e->first, upto) of job j out of w's data. */
void pp_disp_take(pp_wk_t *w, const pp_entry_t *e, pp_job_t *j, uint64_t upto);
/* The job is over: call the finish hook and recycle its record. */
void pp_disp_finish(mh__pp_t *pp, pp_job_t *j);
/* Collect the entries slot's worker finished.  Returns how many. */
int pp_disp_collect(mh__pp_t *pp, int slot);
/* Hand queued jobs to workers with room, round robin.  Returns how many. */
int pp_disp_assign(mh__pp_t *pp);
/* The K_MAP entry of w was collected, or w died holding it. */
void pp_disp_map_detach(mh__pp_t *pp, pp_wk_t *w);
/* Take the next entry of slot's ring for a control entry (K_MAP, K_EXIT). */
pp_entry_t *pp_disp_ctl_entry(mh__pp_t *pp, int slot, uint32_t kind);
/* Attach the live workers to a running map (takes mu).  Returns how many. */
int pp_disp_map_post(mh__pp_t *pp);
/* Settle the map chunk of slot's worker, which died. */
void pp_disp_map_dead(mh__pp_t *pp, int slot);

/* procpool_workers.c: the workers' and the server's lifecycle. */
#define pp_disp_spawn mh__pp_disp_spawn
#define pp_disp_kill mh__pp_disp_kill
#define pp_disp_send_exit mh__pp_disp_send_exit
#define pp_disp_exited mh__pp_disp_exited
#define pp_disp_fail_queue mh__pp_disp_fail_queue
#define pp_disp_server_msgs mh__pp_disp_server_msgs
#define pp_disp_stop_server mh__pp_disp_stop_server
#define pp_disp_boot mh__pp_disp_boot
/* Ask the server for a worker in slot (W_SPAWNING).  0 or a negative code. */
int pp_disp_spawn(mh__pp_t *pp, int slot);
/* Ask the server to send sig to slot's worker. */
void pp_disp_kill(mh__pp_t *pp, int slot, int sig);
/* Put a K_EXIT entry in slot's ring: the worker exits when it reaches it. */
void pp_disp_send_exit(mh__pp_t *pp, int slot);
/* Slot's worker (pid) ended with wait status st: settle what it held,
 * re-running an item it died in at most `retries` times. */
void pp_disp_exited(mh__pp_t *pp, int slot, int pid, int st, int retries);
/* The pool is broken: every job of the private queue that begins fails
 * (MH_EWORKERDIED unless it has a code already). */
void pp_disp_fail_queue(mh__pp_t *pp);
/* Read what the server has to say (blocking or not).  Returns how many
 * messages. */
int pp_disp_server_msgs(mh__pp_t *pp, int block);
/* Tell the server to quit (it kills and reaps its workers) and reap it. */
void pp_disp_stop_server(mh__pp_t *pp);
/* Fork the server and the first workers; wait until each is running.
 * 0 or a negative code. */
int pp_disp_boot(mh__pp_t *pp);

/* ==== procpool_child.c: the fork server (runs in its own process) ========= */

/* The fork server's main loop, in the child the dispatcher just forked;
 * never returns. */
void mh__pp_child_server(mh__pp_t *pp, int sock, pid_t parent) __attribute__((noreturn));

#endif /* MH_PROCPOOL_INTERNAL_H */
