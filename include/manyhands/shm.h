/* SPDX-License-Identifier: MIT */
/* manyhands/shm.h - named shared memory (multiprocessing.shared_memory).
 *
 * A segment is a POSIX shared memory object (a file under /dev/shm) that
 * any process of the same user can attach by name: children, and also
 * programs not forked from the creator.  Unlike the anonymous mappings of
 * shared.h, it has a name that outlives a fork-less hand-over.
 *
 * Guarantees (and how):
 * - No segment is left behind when every process using it has died, even
 *   by SIGKILL.  Every process that has the segment attached holds a shared
 *   flock() on its file for as long as it is attached; the kernel drops it
 *   when the process closes the segment or dies.  For each segment a small
 *   tracker process (forked twice, in a session of its own, so neither the
 *   creator's death nor a signal to its process group ends it) blocks
 *   taking an exclusive flock on the same file; it gets it only when no
 *   process has the segment attached, then removes the name (if it still
 *   names this segment) and exits.
 * - No segment is removed while someone still uses it (cpython#82300): the
 *   tracker cannot take the exclusive lock while any shared one is held.  A
 *   process attaching takes its shared lock and then checks that the name
 *   still names the file it opened, so it never attaches a segment that the
 *   tracker is removing.
 * - mh_shm_unlink() removes the name at once (Python's unlink()); processes
 *   attached keep their memory until they close it, and the tracker then
 *   leaves a new segment of the same name alone.
 * - A process forked while it has a segment attached shares the attachment
 *   (the lock belongs to the open file, which the fork shares): the segment
 *   stays while either of them lives.  The descriptor is close-on-exec.
 *
 * Cost: one sleeping tracker process per live segment.  It is a fork of
 * the creator; first thing, it unmaps the large anonymous mappings it
 * inherited (malloc's big blocks and arenas, other threads' stacks), so it
 * does not keep memory the creator frees later.  What it keeps (the brk
 * heap, mappings under 256 KiB, its stack) stays shared copy-on-write.
 * Under ASan/TSan nothing is unmapped (their shadow memory is anonymous).
 *
 * Differences from Python: the tracker is one process per segment (Python
 * has one resource tracker per program, which unlinks segments at exit
 * even when other programs still use them); a segment is removed when its
 * last user is gone, not when its creator exits.  The size is exactly what
 * was asked (Python may round up to a page on some systems).
 */
#ifndef MANYHANDS_SHM_H
#define MANYHANDS_SHM_H

/** @defgroup mh_shm shm.h: named shared memory (multiprocessing.shared_memory.SharedMemory)
 * @brief Named shared memory (multiprocessing.shared_memory.SharedMemory).
 *
 * Part of <manyhands.h>.  The overview of the module opens the header
 * <manyhands/shm.h>.
 * @{
 */

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque handle on one attachment of a named segment. */
typedef struct mh_shm_s mh_shm_t;

/** Longest name accepted, without the leading '/'. */
#define MH_SHM_NAME_MAX 200

/** Create a new segment of `size` bytes, zero-filled, and attach it
 * (Python's SharedMemory(name, create=True, size=size)).
 * @param shm   receives the handle; set to NULL on failure
 * @param name  the name (letters, digits, '.', '_', '-'; an optional leading
 *              '/'; at most MH_SHM_NAME_MAX characters), or NULL for a new
 *              unique name (see mh_shm_name())
 * @param size  bytes, at least 1
 * @return 0, or MH_EINVAL (NULL shm, size 0, a bad name), MH_EEXIST (the
 *         name is taken), MH_ENOMEM / MH_ENOSPC (no memory for it),
 *         MH_EACCES, MH_EMFILE, MH_EAGAIN (the tracker could not be
 *         started; nothing is left behind). */
MH_EXTERN int mh_shm_create(mh_shm_t **shm, const char *name, size_t size);

/** Attach an existing segment by name (Python's SharedMemory(name)).
 * @param shm   receives the handle; set to NULL on failure
 * @param name  the segment's name, as mh_shm_name() gives it (with or
 *              without the leading '/')
 * @return 0, or MH_EINVAL (NULL argument, a bad name), MH_ENOENT (no such
 *         segment, or it is being removed because nobody used it),
 *         MH_EACCES, MH_EMFILE, MH_ENOMEM. */
MH_EXTERN int mh_shm_attach(mh_shm_t **shm, const char *name);

/** The segment's memory (Python's buf), valid until mh_shm_close().
 * @param shm  the handle
 * @return the address, or NULL for a NULL handle. */
MH_EXTERN void *mh_shm_buf(const mh_shm_t *shm);

/** The segment's size in bytes (Python's size).
 * @param shm  the handle
 * @return the size, or 0 for a NULL handle. */
MH_EXTERN size_t mh_shm_size(const mh_shm_t *shm);

/** The segment's name, without the leading '/' (Python's name).
 * @param shm  the handle
 * @return the name, owned by the handle, or NULL for a NULL handle. */
MH_EXTERN const char *mh_shm_name(const mh_shm_t *shm);

/** Remove the segment's name now (Python's unlink()): nobody can attach it
 * any more; processes attached keep using the memory until they close it.
 * Any attached process may call it (as in Python); usually the creator does.
 * @param shm  the handle
 * @return 0, MH_EINVAL for NULL, MH_ENOENT when the name was already
 *         removed or now names another segment (which is left alone). */
MH_EXTERN int mh_shm_unlink(mh_shm_t *shm);

/** Detach and free the handle (Python's close()).  The memory is unmapped;
 * when this was the last attachment anywhere, the tracker removes the name.
 * @param shm  the handle; NULL is ignored */
MH_EXTERN void mh_shm_close(mh_shm_t *shm);

/** @} */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_SHM_H */
