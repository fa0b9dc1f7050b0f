/* SPDX-License-Identifier: MIT */
/* manyhands.h - the whole public API of libmanyhands.
 *
 * Include this one header.  Layers, bottom up: primitives (thread, log, sync,
 * queue, process, shared, connection, shm), the executor with its backends, and the Monte
 * Carlo pi job.  See docs/guide.md for the Python -> C map.
 */
#ifndef MANYHANDS_H
#define MANYHANDS_H

#include "manyhands/common.h"
#include "manyhands/version.h"
#include "manyhands/error.h"
#include "manyhands/thread.h"
#include "manyhands/log.h"
#include "manyhands/sync.h"
#include "manyhands/queue.h"
#include "manyhands/executor.h"
#include "manyhands/process.h"
#include "manyhands/shared.h"
#include "manyhands/connection.h"
#include "manyhands/shm.h"
#include "manyhands/mpqueue.h"
#include "manyhands/pi.h"
#include "manyhands/trace.h"

#endif /* MANYHANDS_H */
