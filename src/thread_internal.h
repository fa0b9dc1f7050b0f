/* SPDX-License-Identifier: MIT */
/* thread_internal.h - what thread.c offers the other modules.  Never installed. */
#ifndef MH_THREAD_INTERNAL_H
#define MH_THREAD_INTERNAL_H

#include <pthread.h>

/* The calling thread's kernel thread id (gettid), cached per thread and
 * refreshed in a child after fork().  Thread ids are unique system-wide, so
 * the locks use them as owner marks that also work across processes. */
int mh__tid(void);

/* Wait until no non-daemon thread but the caller is alive, as at exit, and
 * refuse new threads from then on (MH_ESHUTDOWN).  process.c calls it in a
 * child whose function returned, as Python's child waits for its threads. */
void mh__threads_wait_at_exit(void);

/* The MH_E* code for a failed pthread_create(rc) with `attr` (NULL: the
 * defaults).  glibc says EAGAIN both when the system is out of threads and
 * when the new thread's stack could not be mapped (RLIMIT_AS, overcommit):
 * this maps a stack of the same size to tell the two apart, and answers
 * MH_ENOMEM for the second; and MH_ENOTSUP for EINVAL in a process that
 * unshared CLONE_NEWPID, where Linux allows no new thread. */
int mh__thread_create_error(int rc, const pthread_attr_t *attr);

#endif /* MH_THREAD_INTERNAL_H */
