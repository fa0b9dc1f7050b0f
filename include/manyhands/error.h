/* SPDX-License-Identifier: MIT */
/* manyhands/error.h - the status codes every manyhands function returns.
 *
 * Functions return 0 on success or a negative MH_E* code.  Codes that have an
 * errno twin are exactly -errno (as libuv does), so a code from a system call
 * passes through unchanged.  Codes of manyhands' own live in -4000..-4095.
 * Codes at or below MH_EUSER are free for applications: a task may return
 * them and the future carries them unchanged.
 */
#ifndef MANYHANDS_ERROR_H
#define MANYHANDS_ERROR_H

/** @defgroup mh_error error.h: the status codes every manyhands function returns
 * @brief The status codes every manyhands function returns.
 *
 * Part of <manyhands.h>.  The overview of the module (what maps to
 * which Python name, and how it behaves) opens the header
 * <manyhands/error.h>.
 * @{
 */


#include <errno.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One list generates the enum, mh_strerror() and mh_err_name():
 * XX(name, value, message), for MH_name = value.  The codes on Linux are
 * minus the errno values of the same name where one exists. */
#define MH_ERROR_MAP(XX)                                                     \
  XX(EINVAL, -EINVAL, "invalid argument")                                    \
  XX(ENOMEM, -ENOMEM, "out of memory")                                       \
  XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                    \
  XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                     \
  XX(ECANCELED, -ECANCELED, "operation canceled")                            \
  XX(EBUSY, -EBUSY, "resource busy")                                         \
  XX(EPERM, -EPERM, "operation not permitted")                               \
  XX(EDEADLK, -EDEADLK, "resource deadlock would occur")                     \
  XX(EOWNERDEAD, -EOWNERDEAD, "previous owner died holding the lock")        \
  XX(ENOTRECOVERABLE, -ENOTRECOVERABLE, "state not recoverable")             \
  XX(ESHUTDOWN, -ESHUTDOWN, "already shut down")                             \
  XX(ECHILD, -ECHILD, "no child process")                                    \
  XX(ESRCH, -ESRCH, "no such process")                                       \
  XX(ENOTSUP, -ENOTSUP, "operation not supported")                           \
  XX(ENOSYS, -ENOSYS, "function not implemented")                            \
  XX(EOVERFLOW, -EOVERFLOW, "value too large")                               \
  XX(ERANGE, -ERANGE, "result out of range")                                 \
  XX(EMFILE, -EMFILE, "too many open files")                                 \
  XX(ENFILE, -ENFILE, "file table overflow")                                 \
  XX(ENOSPC, -ENOSPC, "no space left on device")                             \
  XX(ENOENT, -ENOENT, "no such file or directory")                           \
  XX(EACCES, -EACCES, "permission denied")                                   \
  XX(EEXIST, -EEXIST, "already exists")                                      \
  XX(EINTR, -EINTR, "interrupted")                                           \
  XX(EIO, -EIO, "i/o error")                                                 \
  XX(EPIPE, -EPIPE, "broken pipe")                                           \
  XX(EBADF, -EBADF, "bad file descriptor")                                   \
  XX(EMSGSIZE, -EMSGSIZE, "message too long")                                \
  XX(EBROKEN, -4001, "barrier is broken")                                    \
  XX(EWORKERDIED, -4002, "worker died while running the task")               \
  XX(EMPI, -4003, "MPI error")                                               \
  XX(ERANKDIED, -4004, "an MPI rank died")                                   \
  XX(EEOF, -4095, "end of iteration")

/** The status codes: MH_EINVAL, MH_ENOMEM, ... as listed in MH_ERROR_MAP. */
typedef enum {
#define MH__ERR_ENUM(name, value, msg) MH_##name = (value),
  MH_ERROR_MAP(MH__ERR_ENUM)
#undef MH__ERR_ENUM
  /** Codes at or below this value belong to the application. */
  MH_EUSER = -5000
} mh_errno_t;

/** A short English description of `code`.  Never NULL: unknown negative codes
 * give "unknown error", codes at or below MH_EUSER give "application error",
 * 0 gives "success".
 * @param code a status code (0 or a negative MH_E* value)
 * @return what the description above says */
MH_EXTERN const char *mh_strerror(int code);

/** The code's name, e.g. "EINVAL" for MH_EINVAL.  Never NULL ("UNKNOWN",
 * "EUSER" or "OK" for the cases mh_strerror() describes).
 * @param code a status code (0 or a negative MH_E* value)
 * @return what the description above says */
MH_EXTERN const char *mh_err_name(int code);

#ifdef __cplusplus
}
#endif
/** @} */
#endif /* MANYHANDS_ERROR_H */
