/* manyhands/shared.h - values, arrays and locks in shared memory (multiprocessing.Value, Array, Lock). */
#ifndef MANYHANDS_SHARED_H
#define MANYHANDS_SHARED_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declarations are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_SHARED_H */
