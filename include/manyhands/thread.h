/* SPDX-License-Identifier: MIT */
/* manyhands/thread.h - threads (threading.Thread) and the current thread's name.
 *
 *   Python                                   manyhands
 *   t = Thread(target=f, args=(x,),          mh_thread_options_t o = {0};
 *              name="w", daemon=True)        o.name = "w"; o.daemon = 1;
 *   t.start()                                mh_thread_start(&t, f, x, &o);
 *   t.join(timeout)                          mh_thread_join(t, timeout);
 *   t.is_alive()                             mh_thread_is_alive(t);
 *   t.name / t.daemon                        mh_thread_name(t) / mh_thread_daemon(t)
 *   threading.current_thread().name          mh_thread_current_name()
 *   threading.get_native_id()                mh_thread_native_id()
 *   time.sleep(s)                            mh_thread_sleep(s)
 *   (the object goes away)                   mh_thread_free(t);
 *
 * Exit semantics, as in Python: once a thread has been started, returning
 * from main() or calling exit() first waits for every non-daemon thread that
 * is still running (an atexit handler, registered once); daemon threads are
 * not waited for and simply vanish with the process.  A non-daemon thread
 * that calls exit() itself does not wait for itself.  After that wait, new
 * threads can no longer be started (MH_ESHUTDOWN).  In a child made by
 * fork(), the parent's other threads do not exist and are not waited for.
 */
#ifndef MANYHANDS_THREAD_H
#define MANYHANDS_THREAD_H

/** @defgroup mh_thread thread.h: threads (threading.Thread) and the current thread's name
 * @brief Threads (threading.Thread) and the current thread's name.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/thread.h>.
 * @{
 */


#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A started thread (opaque).  The handle has one owner, who releases it with
 * mh_thread_free(); the thread itself keeps what it needs until it ends. */
typedef struct mh_thread_s mh_thread_t;

/** The function a thread runs (Thread's `target`, with one argument). */
typedef void (*mh_thread_fn)(void *arg);

/** Options for mh_thread_start().  Zero-initialise the whole struct (more
 * fields may be added; zero always means "the default"). */
typedef struct mh_thread_options_s {
  unsigned flags;         /**< reserved for future use; must be 0 */
  const char *name;       /**< thread name (copied); NULL: "Thread-N" */
  int daemon;             /**< non-zero: not waited for at exit */
  size_t stack_size;      /**< bytes; 0: the system default */
} mh_thread_options_t;

/** Thread(target=fn, args=(arg,), ...).start(): start a thread running
 * fn(arg).  `opts` may be NULL for the defaults.  On success *thread is the
 * new handle, and the thread is running (like Python's start(), this returns
 * only once the thread has begun); on failure *thread is set to NULL (when
 * `thread` is not NULL).
 * @param thread receives the new thread handle
 * @param fn the thread's function (its target)
 * @param arg passed to fn
 * @param opts the options; NULL for the defaults
 * @return 0, MH_EINVAL (NULL thread or fn, non-zero flags, stack size below
 * the system minimum), MH_ENOMEM (no memory for the record or for the
 * thread's stack, e.g. under `ulimit -v`), MH_EAGAIN (the system cannot
 * start another thread now: a thread or process limit), MH_ENOTSUP (the
 * process called unshare(CLONE_NEWPID), after which Linux allows it no new
 * thread; its child processes may), MH_ESHUTDOWN (the process is exiting). */
MH_EXTERN int mh_thread_start(mh_thread_t **thread, mh_thread_fn fn, void *arg,
                              const mh_thread_options_t *opts);

/** Thread.join(timeout): wait until the thread has finished (its function
 * returned or it called pthread_exit).  Several threads may join the same
 * thread.
 * @return 0 (finished), MH_ETIMEDOUT (still running), MH_EINVAL
 * (NULL, bad timeout), MH_EDEADLK (a thread joining itself).
 * @param thread the thread handle
 * @param timeout seconds to wait: MH_FOREVER blocks, 0 does not block */
MH_EXTERN int mh_thread_join(mh_thread_t *thread, double timeout);

/** Thread.is_alive(): 1 while the thread runs, 0 after it finished,
 * MH_EINVAL for NULL.
 * @param thread the thread handle
 * @return what the description above says */
MH_EXTERN int mh_thread_is_alive(mh_thread_t *thread);

/** Release the handle.  A thread still running is not stopped: it runs on,
 * detached, and cleans up after itself (a non-daemon one is still waited for
 * at exit).  NULL is ignored.  Do not use the handle afterwards, and do not
 * free it while another thread is joining it.
 * @param thread the thread handle */
MH_EXTERN void mh_thread_free(mh_thread_t *thread);

/** Thread.name: the thread's name, valid until mh_thread_free().  NULL for
 * a NULL handle.
 * @param thread the thread handle
 * @return what the description above says */
MH_EXTERN const char *mh_thread_name(const mh_thread_t *thread);

/** Thread.daemon: 1 or 0, MH_EINVAL for NULL.
 * @param thread the thread handle
 * @return what the description above says */
MH_EXTERN int mh_thread_daemon(const mh_thread_t *thread);

/** threading.current_thread().name: the calling thread's name.  "MainThread"
 * in the process's initial thread, the start name in a thread started by
 * mh_thread_start(), "Dummy-N" in threads started otherwise.  Valid while the
 * calling thread runs.
 * @return what the description above says */
MH_EXTERN const char *mh_thread_current_name(void);

/** threading.get_native_id(): the calling thread's kernel thread id.
 * @return what the description above says */
MH_EXTERN long mh_thread_native_id(void);

/** time.sleep(seconds): suspend the calling thread, on the monotonic clock,
 * resuming after signals.
 * @return 0, or MH_EINVAL for NaN or a negative
 * value (the thread does not sleep then).
 * @param seconds how long to sleep */
MH_EXTERN int mh_thread_sleep(double seconds);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_THREAD_H */
