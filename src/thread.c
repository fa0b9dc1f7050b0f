/* SPDX-License-Identifier: MIT */
/* thread.c - threads with names, timed joins and Python's exit semantics.
 *
 * Every thread is created detached; its record (mh_thread_t) is shared by the
 * handle and the running thread and freed when both have let go (`refs`).
 * Joining waits on the record's `done` condition instead of pthread_join, so
 * that a join can time out on the monotonic clock and several threads may
 * join the same one.
 *
 * mh_thread_start() returns once the new thread has set `started` (Python's
 * start() waits the same way), so a started thread is really running.
 *
 * One registry mutex, `reg.mutex`, guards: every record's `refs`,
 * `started`, `alive` and list links, the list of alive threads, the count
 * of alive non-daemon threads and the `exiting` flag.  Records' `fn`, `arg`, `daemon` and `name`
 * never change after start and are read without it.  It is the only mutex in
 * this file, and nothing else is locked while it is held.
 *
 * Exit: the first start (or the first mh__tid) registers an atexit handler
 * that waits until no non-daemon thread other than the caller is alive, so a
 * non-daemon thread calling exit() does not wait for itself.  A fork handler
 * keeps the registry true in the child: only the forking thread survives
 * fork(), so every other record is marked finished there.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "manyhands/thread.h"
#include "internal.h"
#include "thread_internal.h"

struct mh_thread_s {
  mh_thread_fn fn;
  void *arg;
  pthread_cond_t done; /* broadcast when `started` is set, `alive` drops */
  int refs;            /* handle + running thread */
  int started;         /* the thread runs its trampoline */
  int alive;
  int daemon;
  mh_thread_t *prev, *next; /* the alive list */
  char name[];
};

static struct {
  pthread_mutex_t mutex;
  pthread_cond_t exit_cond; /* broadcast when a non-daemon thread ends */
  mh_thread_t *alive_head;
  unsigned long nondaemon; /* alive non-daemon threads */
  int exiting;             /* the at-exit wait is over */
} reg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static atomic_ulong thread_counter; /* for "Thread-N" */
static atomic_ulong dummy_counter;  /* for "Dummy-N" */

static _Thread_local mh_thread_t *tls_self;
static _Thread_local int tls_tid;
static _Thread_local char tls_dummy_name[32];

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void);
static atomic_int threads_used; /* global_init has run (here or before a fork) */

/* ---- registry ----------------------------------------------------------- */

static void link_alive(mh_thread_t *t) {
  t->prev = NULL;
  t->next = reg.alive_head;
  if (reg.alive_head) reg.alive_head->prev = t;
  reg.alive_head = t;
}

static void unlink_alive(mh_thread_t *t) {
  if (t->prev) t->prev->next = t->next;
  else reg.alive_head = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static void record_free(mh_thread_t *t) {
  pthread_cond_destroy(&t->done);
  mh__free(t);
}

/* Mark `t` finished.  Called with reg.mutex held.  Returns 1 when the caller
 * dropped the last reference and must free the record (after unlocking). */
static int finish_locked(mh_thread_t *t) {
  t->alive = 0;
  unlink_alive(t);
  if (!t->daemon) {
    reg.nondaemon--;
    pthread_cond_broadcast(&reg.exit_cond);
  }
  pthread_cond_broadcast(&t->done);
  return --t->refs == 0;
}

/* ---- exit and fork ------------------------------------------------------ */

static void at_exit_wait(void) {
  mh_thread_t *self = tls_self;
  pthread_mutex_lock(&reg.mutex);
  unsigned long mine = (self && self->alive && !self->daemon) ? 1 : 0;
  while (reg.nondaemon > mine) pthread_cond_wait(&reg.exit_cond, &reg.mutex);
  reg.exiting = 1;
  pthread_mutex_unlock(&reg.mutex);
}

void mh__threads_wait_at_exit(void) {
  /* No thread was ever started here (nor in the process we were forked
   * from): nothing to wait for, and no lock to write - in a new child
   * that write would cost a copy-on-write page fault. */
  if (!atomic_load_explicit(&threads_used, memory_order_acquire)) return;
  at_exit_wait();
}

static void fork_prepare(void) { pthread_mutex_lock(&reg.mutex); }

static void fork_parent(void) { pthread_mutex_unlock(&reg.mutex); }

static void fork_child(void) {
  /* Only this thread exists in the child.  The others' records are marked
   * finished, and their condition variables are re-made: waiters of the
   * parent that do not exist here would otherwise stay counted in them. */
  tls_tid = 0;
  mh_thread_t *t = reg.alive_head, *next;
  for (; t; t = next) {
    next = t->next;
    mh__cond_init(&t->done, false);
    if (t != tls_self && finish_locked(t)) record_free(t);
  }
  pthread_cond_t fresh = PTHREAD_COND_INITIALIZER;
  memcpy(&reg.exit_cond, &fresh, sizeof fresh);
  pthread_mutex_unlock(&reg.mutex);
}

static void global_init(void) {
  atomic_store_explicit(&threads_used, 1, memory_order_release);
  atexit(at_exit_wait);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int mh__tid(void) {
  int tid = tls_tid;
  if (tid) return tid;
  /* The fork handler that resets the cache must exist before it is filled. */
  pthread_once(&global_once, global_init);
  tid = (int)syscall(SYS_gettid);
  tls_tid = tid;
  return tid;
}

/* ---- the thread --------------------------------------------------------- */

static void thread_end(void *arg) {
  mh_thread_t *t = arg;
  pthread_mutex_lock(&reg.mutex);
  int last = finish_locked(t);
  pthread_mutex_unlock(&reg.mutex);
  tls_self = NULL;
  if (last) record_free(t);
}

static void *trampoline(void *arg) {
  mh_thread_t *t = arg;
  tls_self = t;
  pthread_mutex_lock(&reg.mutex);
  t->started = 1;
  pthread_cond_broadcast(&t->done);
  pthread_mutex_unlock(&reg.mutex);
  /* The kernel keeps 15 characters; the full name stays in the record. */
  char short_name[16];
  snprintf(short_name, sizeof short_name, "%s", t->name);
  pthread_setname_np(pthread_self(), short_name);
  /* A cleanup handler, so that pthread_exit() in fn also ends the thread
   * properly. */
  pthread_cleanup_push(thread_end, t);
  t->fn(t->arg);
  pthread_cleanup_pop(1);
  return NULL;
}

/* Linux refuses new threads (clone with CLONE_THREAD fails with EINVAL) in
 * a process that called unshare(CLONE_NEWPID): its children would live in
 * a PID namespace other than its own.  Such a process has a pid_for_children
 * link that differs from its pid link, or none at all before its first
 * child. */
static int pid_namespace_forbids_threads(void) {
  char own[64], kids[64];
  ssize_t n = readlink("/proc/self/ns/pid", own, sizeof own);
  if (n <= 0) return 0; /* no /proc: cannot tell */
  ssize_t m = readlink("/proc/self/ns/pid_for_children", kids, sizeof kids);
  if (m < 0) return errno == ENOENT;
  return m != n || memcmp(own, kids, (size_t)n) != 0;
}

int mh__thread_create_error(int rc, const pthread_attr_t *attr) {
  if (rc == EINVAL && pid_namespace_forbids_threads()) return MH_ENOTSUP;
  if (rc != EAGAIN) return rc == ENOMEM ? MH_ENOMEM : -rc;
  size_t stack = 0, guard = 0;
  pthread_attr_t def;
  if (!attr) {
    if (pthread_attr_init(&def)) return MH_EAGAIN;
    attr = &def;
  }
  /* An attribute without a size gives the default (RLIMIT_STACK's, as the
   * new thread would have had). */
  pthread_attr_getstacksize(attr, &stack);
  pthread_attr_getguardsize(attr, &guard);
  if (attr == &def) pthread_attr_destroy(&def);
  if (stack == 0) return MH_EAGAIN;
  /* The mapping glibc makes for a stack; if it fails now for want of memory,
   * so did pthread_create's (a thread limit leaves mmap alone). */
  void *p = mmap(NULL, stack + guard, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) return errno == ENOMEM ? MH_ENOMEM : MH_EAGAIN;
  munmap(p, stack + guard);
  return MH_EAGAIN;
}

int mh_thread_start(mh_thread_t **thread, mh_thread_fn fn, void *arg,
                    const mh_thread_options_t *opts) {
  if (thread) *thread = NULL;
  if (!thread || !fn) return MH_EINVAL;
  mh_thread_options_t o;
  memset(&o, 0, sizeof o);
  if (opts) o = *opts;
  if (o.flags != 0) return MH_EINVAL;
  if (o.stack_size && o.stack_size < (size_t)PTHREAD_STACK_MIN) return MH_EINVAL;
  pthread_once(&global_once, global_init);

  char auto_name[32];
  const char *name = o.name;
  if (!name) {
    snprintf(auto_name, sizeof auto_name, "Thread-%lu",
             atomic_fetch_add(&thread_counter, 1) + 1);
    name = auto_name;
  }
  size_t len = strlen(name);
  mh_thread_t *t = mh__malloc(sizeof *t + len + 1);
  if (!t) return MH_ENOMEM;
  memcpy(t->name, name, len + 1);
  t->fn = fn;
  t->arg = arg;
  t->daemon = o.daemon != 0;
  int rc = mh__cond_init(&t->done, false);
  if (rc) {
    mh__free(t);
    return rc;
  }

  pthread_attr_t attr;
  if ((rc = pthread_attr_init(&attr)) != 0) {
    record_free(t);
    return -rc;
  }
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (o.stack_size && (rc = pthread_attr_setstacksize(&attr, o.stack_size))) {
    pthread_attr_destroy(&attr);
    record_free(t);
    return MH_EINVAL;
  }

  /* Registered before it runs, so that an exit racing with this start
   * already waits for it. */
  pthread_mutex_lock(&reg.mutex);
  if (reg.exiting) {
    pthread_mutex_unlock(&reg.mutex);
    pthread_attr_destroy(&attr);
    record_free(t);
    return MH_ESHUTDOWN;
  }
  t->refs = 2;
  t->started = 0;
  t->alive = 1;
  link_alive(t);
  if (!t->daemon) reg.nondaemon++;
  pthread_t tid;
  rc = pthread_create(&tid, &attr, trampoline, t);
  if (rc) {
    t->refs = 1;
    finish_locked(t);
  } else {
    /* As Python's Thread.start(): return once the thread runs. */
    while (!t->started) pthread_cond_wait(&t->done, &reg.mutex);
  }
  pthread_mutex_unlock(&reg.mutex);
  if (rc) rc = mh__thread_create_error(rc, &attr);
  pthread_attr_destroy(&attr);
  if (rc) {
    record_free(t);
    return rc;
  }
  *thread = t;
  return 0;
}

int mh_thread_join(mh_thread_t *t, double timeout) {
  if (!t) return MH_EINVAL;
  mh__deadline_t dl;
  int rc = mh__deadline_init(&dl, timeout);
  if (rc) return rc;
  if (t == tls_self) return MH_EDEADLK;
  pthread_mutex_lock(&reg.mutex);
  while (t->alive) {
    if (mh__cond_wait(&t->done, &reg.mutex, &dl) == MH_ETIMEDOUT && t->alive) {
      rc = MH_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&reg.mutex);
  return rc;
}

int mh_thread_is_alive(mh_thread_t *t) {
  if (!t) return MH_EINVAL;
  pthread_mutex_lock(&reg.mutex);
  int alive = t->alive;
  pthread_mutex_unlock(&reg.mutex);
  return alive;
}

void mh_thread_free(mh_thread_t *t) {
  if (!t) return;
  pthread_mutex_lock(&reg.mutex);
  int last = --t->refs == 0;
  pthread_mutex_unlock(&reg.mutex);
  if (last) record_free(t);
}

const char *mh_thread_name(const mh_thread_t *t) { return t ? t->name : NULL; }

int mh_thread_daemon(const mh_thread_t *t) { return t ? t->daemon : MH_EINVAL; }

const char *mh_thread_current_name(void) {
  if (tls_self) return tls_self->name;
  if (mh__tid() == (int)getpid()) return "MainThread";
  if (!tls_dummy_name[0])
    snprintf(tls_dummy_name, sizeof tls_dummy_name, "Dummy-%lu",
             atomic_fetch_add(&dummy_counter, 1) + 1);
  return tls_dummy_name;
}

long mh_thread_native_id(void) { return mh__tid(); }

int mh_thread_sleep(double seconds) {
  if (!(seconds >= 0)) return MH_EINVAL;
  /* In slices, so that huge values (even infinity) stay well-defined. */
  while (seconds > 1e6) {
    mh__sleep(1e6);
    seconds -= 1e6;
  }
  mh__sleep(seconds);
  return 0;
}
