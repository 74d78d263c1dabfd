/*
 * apply.h — the apply scheduler and the one place drivers are called.
 *
 * The scheduler walks the plan's graph with a pool of up to `parallelism` worker threads
 * (started as calls need them). A driver call runs on a worker; the coordinating thread alone
 * commits state, releases dependents and keeps the timers. Every completed operation and
 * every create intent is committed before any call that follows from it starts; what one
 * pass of the coordinator's loop handled (operations that ended together, intents of the
 * creates it starts) shares one transaction. An operation that answers
 * "in progress" goes back to the coordinator and waits on a timer, holding no worker; a
 * retryable error waits on a timer too (exponential backoff with full jitter, honouring
 * retry-after, bounded by attempts and elapsed time). A failure stops only its dependents.
 */
#ifndef MLE_CORE_APPLY_H
#define MLE_CORE_APPLY_H

#include <jansson.h>
#include "engine.h"
#include "error.h"
#include "host.h"
#include "plan.h"

/* One driver call, as a worker makes it. */
typedef struct mle_call {
    mle_op op;                 /* inputs (borrowed pointers, valid during the call) */
    const mle_resource_type *rt;
    mle_loaded_driver *drv;
    mle_op_result result;      /* filled by the call */
    int64_t duration_ms;
} mle_call;

/* Make one call synchronously (on the calling thread). Fills c->result; a driver that
 * returns without setting a result is reported as an internal error. */
void mle_call_run(mle_engine *e, mle_call *c);

/* Make n independent calls on up to e->parallelism threads, retrying retryable errors with
 * backoff (each attempt logged). Used for refresh and plan-time reads. */
void mle_call_many(mle_engine *e, mle_call *calls, size_t n);

/* The backoff delay before attempt `attempt` (1-based): full jitter over base * 2^attempt,
 * capped at 30 s, or the provider's retry-after when it gave one. */
int64_t mle_backoff_ms(const mle_engine *e, int attempt, const mle_error *err,
                       unsigned *seed);

typedef struct mle_apply_summary {
    size_t created, updated, replaced, deleted, read, adopted, resumed;
    size_t failed, skipped, interrupted;
    json_t *failures; /* array of {"address", "action", "error"} */
} mle_apply_summary;

/* Apply a plan. Returns 0 when every item succeeded, 1 when some failed (see sum), 130 when
 * interrupted, -1 on an engine error (*err). Commits state after every operation. */
int mle_apply(mle_engine *e, mle_plan *p, mle_apply_summary *sum, mle_error **err);
void mle_apply_summary_clear(mle_apply_summary *s);

/* Crash recovery before planning: adopt or drop pending create intents and resume
 * operations that were in progress (through the same scheduler). Returns like mle_apply. */
int mle_recover(mle_engine *e, mle_apply_summary *sum, mle_error **err);

/* `mlengine import ADDR ID`: read the resource through its driver (import, or read) and
 * record it in state. ADDR must be declared by the stack and not yet be in state. */
int mle_import(mle_engine *e, const char *address, const char *id, mle_error **err);

#endif
