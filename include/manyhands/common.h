/* SPDX-License-Identifier: MIT */
/* manyhands/common.h - export macro, the "forever" timeout, shared small types.
 *
 * Every public header includes this one first.  Nothing here allocates or has
 * state; it only fixes conventions that all modules follow.
 */
#ifndef MANYHANDS_COMMON_H
#define MANYHANDS_COMMON_H

/** @defgroup mh_common common.h: export macro, the "forever" timeout, shared small types
 * @brief Export macro, the "forever" timeout, shared small types.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/common.h>.
 * @{
 */


#include <stddef.h>
#include <stdint.h>

/** @cond MH_INTERNAL */
#if defined(MH_STATIC_DEFINE) || !defined(__GNUC__)
#define MH_EXTERN
#else
/* The library is built with -fvisibility=hidden; only what carries this macro
 * is exported from the shared object. */
#define MH_EXTERN __attribute__((visibility("default")))
#endif
/** @endcond */

#ifdef __cplusplus
extern "C" {
#endif

/** Timeout meaning "wait as long as it takes".  Every timeout in manyhands is a
 * number of seconds as a double: MH_FOREVER blocks, 0 never blocks, a positive
 * value is measured on the monotonic clock.  Any other negative value, and NaN,
 * is rejected with MH_EINVAL. */
#define MH_FOREVER (-1.0)

/** A malloc() replacement for mh_replace_allocator(). */
typedef void *(*mh_malloc_fn)(size_t size);
/** A realloc() replacement for mh_replace_allocator(). */
typedef void *(*mh_realloc_fn)(void *ptr, size_t size);
/** A calloc() replacement for mh_replace_allocator(). */
typedef void *(*mh_calloc_fn)(size_t count, size_t size);
/** A free() replacement for mh_replace_allocator(). */
typedef void (*mh_free_fn)(void *ptr);
/** Memory hooks.  All allocations the library makes go through these, so a
 * program (or a test) can count them or make them fail.  Pass NULL for all four
 * to restore the C library's functions.  Call before any other manyhands call.
 * @param malloc_fn replaces malloc
 * @param realloc_fn replaces realloc
 * @param calloc_fn replaces calloc
 * @param free_fn replaces free
 * @return 0, or MH_EINVAL when only some of the four are NULL. */
MH_EXTERN int mh_replace_allocator(mh_malloc_fn malloc_fn, mh_realloc_fn realloc_fn,
                                   mh_calloc_fn calloc_fn, mh_free_fn free_fn);

/** Number of online CPUs (at least 1).
 * @return what the description above says */
MH_EXTERN int mh_cpu_count(void);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_COMMON_H */
