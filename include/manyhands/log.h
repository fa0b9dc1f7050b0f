/* SPDX-License-Identifier: MIT */
/* manyhands/log.h - logging in the tutorial's format.
 *
 * The tutorial configures Python's logging with
 *
 *     logging.basicConfig(format="%(asctime)s: %(message)s",
 *                         level=logging.INFO, datefmt="%H:%M:%S")
 *
 * and that is what these calls print: "HH:MM:SS: message\n" (local time),
 * to standard error unless mh_log_set_fd() says otherwise.  Each call builds
 * its whole line in a buffer and hands it to the kernel in a single write(),
 * so lines from different threads - and from different processes sharing
 * the descriptor - never interleave (on pipes, lines up to PIPE_BUF = 4096
 * bytes are atomic; longer ones are written whole but may be split by
 * other writers).  All calls are thread-safe.
 *
 *   Python                          manyhands
 *   logging.debug(fmt, *args)       mh_log_debug(fmt, ...)
 *   logging.info(fmt, *args)        mh_log_info(fmt, ...)
 *   logging.warning / error         mh_log_warning / mh_log_error
 *   logging.getLogger().setLevel    mh_log_set_level(MH_LOG_DEBUG)
 *
 * Python's "%s" placeholders become printf conversions ("%d" for an int).
 */
#ifndef MANYHANDS_LOG_H
#define MANYHANDS_LOG_H

/** @defgroup mh_log log.h: logging in the tutorial's format
 * @brief Logging in the tutorial's format.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/log.h>.
 * @{
 */


#include <stdarg.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Levels, with Python's numbers. */
typedef enum {
  MH_LOG_DEBUG = 10,
  MH_LOG_INFO = 20,
  MH_LOG_WARNING = 30,
  MH_LOG_ERROR = 40,
  MH_LOG_CRITICAL = 50
} mh_log_level_t;

/** @cond MH_INTERNAL */
#if defined(__GNUC__)
#define MH__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MH__PRINTF(f, a)
#endif
/** @endcond */

/** Messages below `level` are dropped (default MH_LOG_INFO).  Any int is
 * accepted, as Python's setLevel accepts any number.
 * @return the previous
 * level.
 * @param level the log level (MH_LOG_DEBUG ... MH_LOG_ERROR) */
MH_EXTERN int mh_log_set_level(int level);

/** The current level.
 * @return what the description above says */
MH_EXTERN int mh_log_get_level(void);

/** Write log lines to `fd` (default 2, standard error).  The descriptor is
 * not owned: the caller keeps it open while logging to it.
 * @return the
 * previous descriptor, or MH_EINVAL for a negative fd.
 * @param fd the file descriptor log lines are written to */
MH_EXTERN int mh_log_set_fd(int fd);

/** Log one line at `level` if it is enabled.
 * @return 0 (written or
 * filtered out), MH_EINVAL (NULL fmt), or the negative errno of a failed
 * write (e.g. MH_EBADF, MH_EPIPE).  A message that needs more than the
 * stack buffer is built in an allocated one; if that allocation fails, the
 * message is truncated (and still logged).
 * @param level the log level (MH_LOG_DEBUG ... MH_LOG_ERROR)
 * @param fmt a printf format
 * @param ... the values the format names */
MH_EXTERN int mh_log(int level, const char *fmt, ...) MH__PRINTF(2, 3);
/** mh_log() with a va_list.
 * @param level the log level (MH_LOG_DEBUG ... MH_LOG_ERROR)
 * @param fmt a printf format
 * @param ap the values the format names
 * @return what the description above says */
MH_EXTERN int mh_vlog(int level, const char *fmt, va_list ap) MH__PRINTF(2, 0);

/** logging.debug(): mh_log(MH_LOG_DEBUG, fmt, ...).
 * @param fmt a printf format
 * @param ... the values the format names
 * @return as mh_log() */
MH_EXTERN int mh_log_debug(const char *fmt, ...) MH__PRINTF(1, 2);
/** logging.info(): mh_log(MH_LOG_INFO, fmt, ...).
 * @param fmt a printf format
 * @param ... the values the format names
 * @return as mh_log() */
MH_EXTERN int mh_log_info(const char *fmt, ...) MH__PRINTF(1, 2);
/** logging.warning(): mh_log(MH_LOG_WARNING, fmt, ...).
 * @param fmt a printf format
 * @param ... the values the format names
 * @return as mh_log() */
MH_EXTERN int mh_log_warning(const char *fmt, ...) MH__PRINTF(1, 2);
/** logging.error(): mh_log(MH_LOG_ERROR, fmt, ...).
 * @param fmt a printf format
 * @param ... the values the format names
 * @return as mh_log() */
MH_EXTERN int mh_log_error(const char *fmt, ...) MH__PRINTF(1, 2);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_LOG_H */
