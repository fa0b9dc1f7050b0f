/* manyhands/log.h - logging in the tutorial's format. */
#ifndef MANYHANDS_LOG_H
#define MANYHANDS_LOG_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declarations are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_LOG_H */
