/* thread_internal.h - what thread.c offers the other modules.  Never installed. */
#ifndef MH_THREAD_INTERNAL_H
#define MH_THREAD_INTERNAL_H

/* The calling thread's kernel thread id (gettid), cached per thread and
 * refreshed in a child after fork().  Thread ids are unique system-wide, so
 * the locks use them as owner marks that also work across processes. */
int mh__tid(void);

#endif /* MH_THREAD_INTERNAL_H */
