/* manyhands/thread.h - threads (threading.Thread) and the current thread's name. */
#ifndef MANYHANDS_THREAD_H
#define MANYHANDS_THREAD_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declarations are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_THREAD_H */
