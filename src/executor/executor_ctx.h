/* SPDX-License-Identifier: MIT */
/* executor_ctx.h - a task context that cannot go stale (executor_ctx.c).
 * Never installed.
 *
 * executor.c makes one record per executor before the backend starts, asks
 * it whether a ctx pointer is safe on the backend, and frees it last.
 */
#ifndef MH_EXECUTOR_CTX_H
#define MH_EXECUTOR_CTX_H

#include <stddef.h>

typedef struct mh__exctx mh__exctx_t;

/* Make the context area (shared, so it is inherited by every worker forked
 * after this call) and, when `check` is set, record which mappings every
 * later-forked worker shares with the parent.  MH_ENOMEM. */
int mh__exctx_new(mh__exctx_t **cx, int check);
void mh__exctx_free(mh__exctx_t *cx); /* NULL ignored */

/* 0 when a task may be given `ctx`, MH_EINVAL when it points at memory the
 * workers would only see as a copy (always 0 when check was not set). */
int mh__exctx_check(const mh__exctx_t *cx, const void *ctx);

/* mh_executor_set_context / mh_executor_context / ..._context_size. */
int mh__exctx_set(mh__exctx_t *cx, const void *data, size_t size);
void *mh__exctx_ptr(const mh__exctx_t *cx);
size_t mh__exctx_size(const mh__exctx_t *cx);

/* The result heap of the bytes calls (executor_bytes.c): shared with the
 * workers, made with the context area.  NULL when it could not be reserved
 * (the bytes calls then say MH_ENOMEM on the process backend). */
void *mh__exctx_heap(const mh__exctx_t *cx, size_t *len);

/* executor_bytes.c: lay out a new heap's header (before any fork), and
 * drop the executor's reference to it (it is unmapped once no result the
 * caller holds lies in it). */
void mh__bytes_heap_init(char *heap, size_t len);
void mh__bytes_heap_unref(char *heap, size_t len);

/* The record of an executor (executor.c). */
struct mh_executor_s;
mh__exctx_t *mh__executor_ctx(const struct mh_executor_s *ex);

#endif /* MH_EXECUTOR_CTX_H */
