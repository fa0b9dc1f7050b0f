/* manyhands/process.h - child processes (multiprocessing.Process). */
#ifndef MANYHANDS_PROCESS_H
#define MANYHANDS_PROCESS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declarations are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_PROCESS_H */
