/* manyhands/queue.h - queue.Queue: bounded and unbounded FIFO, LIFO and priority queues. */
#ifndef MANYHANDS_QUEUE_H
#define MANYHANDS_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declarations are added by the module that implements them. */

#ifdef __cplusplus
}
#endif
#endif /* MANYHANDS_QUEUE_H */
