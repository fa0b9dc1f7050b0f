/* thread_internal.h - what thread.c offers the other modules.  Never installed. */
#ifndef MH_THREAD_INTERNAL_H
#define MH_THREAD_INTERNAL_H

/* The calling thread's kernel thread id (gettid), cached per thread and
 * refreshed in a child after fork().  Thread ids are unique system-wide, so
 * the locks use them as owner marks that also work across processes. */
int mh__tid(void);

/* Wait until no non-daemon thread but the caller is alive, as at exit, and
 * refuse new threads from then on (MH_ESHUTDOWN).  process.c calls it in a
 * child whose function returned, as Python's child waits for its threads. */
void mh__threads_wait_at_exit(void);

#endif /* MH_THREAD_INTERNAL_H */
