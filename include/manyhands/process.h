/* SPDX-License-Identifier: MIT */
/* manyhands/process.h - child processes (multiprocessing.Process).
 *
 * A process runs `int fn(void *arg)` in a forked copy of the caller; the
 * function's return value is the child's exit status.  The handle is opaque
 * and owned by the caller, who releases it with mh_process_free().
 *
 * Guarantees:
 * - A child never outlives its parent: it is started with the parent-death
 *   signal set to SIGKILL, and a child whose parent died before that was in
 *   place exits at once.  Linux ties this signal to the *thread* that forks,
 *   so calls from threads other than the main one have the fork done by one
 *   long-lived internal "launcher" thread (made on first need, all signals
 *   blocked): a child outlives the thread that started it, as in Python.
 *   Only if the main thread itself ends with pthread_exit() while the
 *   program goes on are the children it started killed.
 * - Every child is reaped: by mh_process_join(), mh_process_is_alive(),
 *   mh_process_exitcode() or, for a process still running when its handle is
 *   freed, by a small background reaper.  No zombies are left.
 * - The library installs no signal handlers and does not touch SIGCHLD.
 *
 * - Python's exit rules: when the program exits normally (returns from
 *   main or calls exit()), it first waits for its non-daemon threads, then
 *   sends SIGTERM to its daemon children still running and waits for every
 *   child still running, daemon or not, also those whose handles were
 *   freed.  A child started here does the same when its function returns:
 *   it waits for its own non-daemon threads and children, then exits with
 *   the function's value.  A process that dies (a signal, _exit()) waits
 *   for nothing: its children get the parent-death signal.  These waits
 *   need pidfds (Linux 5.3); without them a program's exit does not wait
 *   for its children (they are killed by the parent-death signal).
 * - A daemon child may not start children of its own (MH_EPERM), as in
 *   Python.
 *
 * A handle may be used from several threads at once (the calls below take an
 * internal lock), except mh_process_free(), which must be the last call.
 * The handle belongs to the process that started the child: a copy inherited
 * by a forked child is not its child, and calls on it report MH_ECHILD.
 */
#ifndef MANYHANDS_PROCESS_H
#define MANYHANDS_PROCESS_H

/** @defgroup mh_process process.h: child processes (multiprocessing.Process)
 * @brief Child processes (multiprocessing.Process).
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/process.h>.
 * @{
 */


#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque handle on one child process. */
typedef struct mh_process_s mh_process_t;

/** What a child runs.  Its return value becomes the exit status (only the low
 * 8 bits survive, as with exit(): return 0..255). */
typedef int (*mh_process_fn)(void *arg);

/** Flag: the child ignores SIGINT (Ctrl-C goes to the parent only). */
#define MH_PROCESS_IGNORE_SIGINT 1u

/** Options for mh_process_start().  Zero-initialise it: more fields may be
 * added, and a zeroed field keeps its default. */
typedef struct mh_process_options_s {
  unsigned flags;   /**< MH_PROCESS_* flags; unknown bits are rejected */
  const char *name; /**< Process.name; NULL gives "Process-N" (N counts the
                         children this process started; a child's children
                         are "Process-N:M"), as in Python; copied */
  int daemon;       /**< Process.daemon: non-zero makes a daemon child,
                         terminated (SIGTERM) and joined when this process
                         exits; a non-daemon child is joined at exit */
} mh_process_options_t;

/** Start a child process that runs fn(arg) and exits with its return value
 * (with _exit(): the parent's atexit handlers do not run in the child),
 * after waiting for the non-daemon threads and children it started, as a
 * Python child does (see the exit rules above).
 * stdout and stderr are flushed when fn returns, as Python's child flushes
 * sys.stdout and sys.stderr; streams the program opened itself are not (as
 * with Python's files): fclose or fflush them in fn.  The parent's stdio
 * buffers are all flushed before the fork, so nothing is printed twice.
 * `arg` is copied with the rest of the address space; it is not shared
 * afterwards (see shared.h).  `opts` may be NULL.  On success *process is a
 * new handle; on failure it is set to NULL (when `process` is not NULL).
 *
 * The call returns as soon as the child exists: it does not wait for the
 * child to run.  The child's set-up (the parent-death signal; SIGINT ignored
 * with MH_PROCESS_IGNORE_SIGINT, which holds from the moment this returns)
 * cannot fail unless a seccomp filter denies it; so only when the calling
 * thread runs under a seccomp filter does the child report its set-up back
 * over a pipe, and this call wait for that report.
 * @param process receives the new process handle
 * @param fn the function the child runs
 * @param arg passed to fn in the child
 * @param opts the options; NULL for the defaults
 * @return 0, or
 * - MH_EINVAL: `process` or `fn` is NULL, or unknown option flags;
 * - MH_EPERM: the caller is a daemon child (daemons have no children);
 * - MH_ENOMEM: no memory for the handle (nothing was started);
 * - MH_EAGAIN / MH_ENOMEM: fork() failed (process limit, memory);
 * - MH_EMFILE / MH_ENFILE: under a seccomp filter, no file descriptor for
 *   the report pipe;
 * - another negative code (MH_EPERM, typically): under a seccomp filter, the
 *   child failed to set itself up; it was reaped, nothing is left running.
 *   (Without a filter the set-up cannot fail; should it all the same, the
 *   child says so on stderr and exits with status 127 before running fn.) */
MH_EXTERN int mh_process_start(mh_process_t **process, mh_process_fn fn, void *arg,
                               const mh_process_options_t *opts);

/** The child's process id (also after it ended), or MH_EINVAL for NULL.
 * @param process the process handle
 * @return what the description above says */
MH_EXTERN pid_t mh_process_pid(const mh_process_t *process);

/** A file descriptor that becomes readable once the child has ended
 * (Python's Process.sentinel): a pidfd, owned by the handle, valid until
 * mh_process_free().  Pass it to mh_wait() (MH_WAIT_FD) or to poll().
 * @param process  the handle
 * @return the descriptor, or MH_EINVAL for NULL, MH_ENOSYS when the kernel
 *         has no pidfds (Linux before 5.3). */
MH_EXTERN int mh_process_sentinel(const mh_process_t *process);

/** Wait until the child ends, at most `timeout` seconds (MH_FOREVER: as long
 * as it takes; 0: only check).  Waits without spinning (a pidfd on Linux 5.3
 * and later, else short sleeps).  Interrupting signals are retried.
 * @param process the process handle
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block
 * @return 0 once the child has ended and been reaped, or
 * - MH_ETIMEDOUT: still running when the timeout passed;
 * - MH_EINVAL: NULL handle, or a negative timeout other than MH_FOREVER, NaN. */
MH_EXTERN int mh_process_join(mh_process_t *process, double timeout);

/** 1 while the child runs, 0 once it has ended (reaping it), MH_EINVAL for
 * NULL.
 * @param process the process handle
 * @return what the description above says */
MH_EXTERN int mh_process_is_alive(mh_process_t *process);

/** How the child ended: *exitcode is its exit status (0..255), or minus the
 * number of the signal that ended it (-9 after mh_process_kill()), as Python's
 * Process.exitcode.  Does not wait.
 * @param process the process handle
 * @param exitcode receives the exit status (>= 0) or minus the signal number
 * @return 0 when *exitcode was set, or
 * - MH_EBUSY: the child is still running (*exitcode untouched) - Python's None;
 * - MH_ECHILD: the child was reaped by someone else (waitpid(-1) elsewhere in
 *   the program, SIGCHLD ignored, or a handle inherited by a child process),
 *   so its status is unknown;
 * - MH_EINVAL: NULL argument. */
MH_EXTERN int mh_process_exitcode(mh_process_t *process, int *exitcode);

/** Send SIGTERM (Process.terminate).  The child's own handlers, if any, run;
 * join to wait for it.  A child that has already ended is left alone.
 * @param process the process handle
 * @return 0, MH_EINVAL for NULL, or the code of a failed kill (MH_EPERM). */
MH_EXTERN int mh_process_terminate(mh_process_t *process);

/** Send SIGKILL (Process.kill).  As mh_process_terminate() otherwise.
 * @param process the process handle
 * @return what the description above says */
MH_EXTERN int mh_process_kill(mh_process_t *process);

/** The child's name (Process.name): the option's, or "Process-N".
 * @param process  the handle
 * @return the name, owned by the handle, or NULL for a NULL handle. */
MH_EXTERN const char *mh_process_name(const mh_process_t *process);

/** Whether the child is a daemon (Process.daemon).
 * @param process  the handle
 * @return 1 or 0, or MH_EINVAL for NULL. */
MH_EXTERN int mh_process_daemon(const mh_process_t *process);

/** The children this process started with mh_process_start() that are
 * still running (multiprocessing.active_children()), as process ids.
 * Handles freed while their child runs count too.  Unlike Python's, it
 * does not join finished children (they are reaped by their handles or in
 * the background anyway).
 * @param pids  where the ids go; may be NULL when `cap` is 0
 * @param cap   room in `pids`
 * @return the number of running children (may exceed `cap`: only the first
 *         `cap` are written), or MH_EINVAL (NULL pids with cap > 0),
 *         MH_ENOSYS (no pidfds: the kernel cannot tell without reaping). */
MH_EXTERN int mh_process_active_children(pid_t *pids, size_t cap);

/** The calling process's name (current_process().name): "MainProcess" in a
 * program, the child's name in a child started by mh_process_start().
 * Processes forked by other means (pool workers, a raw fork()) keep the
 * name of the process that forked them.
 * @return the name; never NULL. */
MH_EXTERN const char *mh_process_current_name(void);

/** Whether the calling process is a daemon child (current_process().daemon).
 * @return 1 or 0. */
MH_EXTERN int mh_process_current_daemon(void);

/** The process id of the process that started this one with
 * mh_process_start() (parent_process().pid); 0 in a program's main process
 * (Python's None).
 * @return the id, or 0. */
MH_EXTERN pid_t mh_process_parent_pid(void);

/** Release the handle.  This does NOT stop the child: a child still running
 * keeps running (until it ends or its parent dies) and is reaped in the
 * background when it ends, so it never becomes a zombie (only when not even
 * a small thread can be created for that is the child killed and reaped at
 * once).  To stop it first, call mh_process_kill() and mh_process_join().
 * NULL is ignored.
 * @param process the process handle */
MH_EXTERN void mh_process_free(mh_process_t *process);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_PROCESS_H */
