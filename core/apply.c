/*
 * apply.c — owns the apply scheduler: worker threads that make driver calls, the
 * coordinating loop that commits state after every operation, parks in-progress operations
 * and retries on timers, propagates failures to dependents only, and stops cleanly on a
 * signal. Also crash recovery (adopt / resume) through the same loop.
 */
#include "apply.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "progress.h"
#include "schema.h"
#include "secrets.h"

/* ---------------------------------------------------------------- clock */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------- one call */

void mle_call_run(mle_engine *e, mle_call *c)
{
    mle_op_fn fn = NULL;
    switch (c->op.kind) {
    case MLE_OPK_CREATE: fn = c->rt->create; break;
    case MLE_OPK_READ: fn = c->rt->read; break;
    case MLE_OPK_UPDATE: fn = c->rt->update; break;
    case MLE_OPK_DELETE: fn = c->rt->del; break;
    case MLE_OPK_IMPORT: fn = c->rt->import ? c->rt->import : c->rt->read; break;
    case MLE_OPK_POLL: fn = c->rt->poll; break;
    case MLE_OPK_ADOPT: fn = c->rt->adopt; break;
    case MLE_OPK_RENDER:
        fn = MLE_HAS_FIELD(c->rt, mle_resource_type, render) ? c->rt->render : NULL;
        break;
    }
    mle_op_result_clear(&c->result);
    c->op.struct_size = sizeof(mle_op);
    c->op.ctx = c->drv->ctx;
    c->op.core = &c->result;
    int64_t t0 = mono_ms();
    if (!fn) {
        c->result.status = MLE_OP_ERROR;
        c->result.error = mle_error_new(MLE_E_UNSUPPORTED, "%s does not support this operation",
                                        c->rt->name);
    } else {
        mle_op_status st = fn(c->drv->host, &c->op);
        if (!c->result.set) {
            c->result.status = MLE_OP_ERROR;
            c->result.error = mle_error_new(MLE_E_INTERNAL,
                                            "driver %s returned from %s without a result",
                                            c->drv->name, c->rt->name);
        } else if (st != c->result.status) {
            mle_log(e->log, MLE_LOG_DEBUG, c->drv->name,
                    "%s: returned status %d but set %d; using what it set", c->op.address, st,
                    c->result.status);
        }
    }
    if (c->result.status == MLE_OP_ERROR && !c->result.error)
        c->result.error = mle_error_new(MLE_E_INTERNAL, "driver error without details");
    if (c->result.status == MLE_OP_ERROR)
        mle_error_set_address(c->result.error, c->op.address);
    c->duration_ms = mono_ms() - t0;
}

int64_t mle_backoff_ms(const mle_engine *e, int attempt, const mle_error *err, unsigned *seed)
{
    if (err && err->has_retry_after)
        return err->retry_after_ms;
    int64_t base = e->retry_base_ms > 0 ? e->retry_base_ms : 500;
    int64_t cap = 30000, ceiling = base;
    for (int i = 1; i < attempt && ceiling < cap; i++)
        ceiling *= 2;
    if (ceiling > cap)
        ceiling = cap;
    /* Full jitter (AWS architecture blog): uniform in [0, ceiling]. */
    return (int64_t)((double)rand_r(seed) / RAND_MAX * (double)ceiling);
}

static int retry_allowed(const mle_engine *e, int attempt, int64_t first_ms, int64_t delay,
                         const mle_error *err)
{
    if (!err || !mle_error_retryable(err))
        return 0;
    int max = e->retry_max_attempts > 0 ? e->retry_max_attempts : 8;
    int64_t max_elapsed = e->retry_max_elapsed_ms > 0 ? e->retry_max_elapsed_ms : 600000;
    return attempt < max && (mono_ms() - first_ms) + delay <= max_elapsed;
}

static void log_retry(mle_engine *e, const mle_call *c, int attempt, int64_t delay)
{
    char *msg = mle_error_format(c->result.error);
    mle_log(e->log, MLE_LOG_WARN, c->drv->name, "%s: retry %d/%d in %" PRId64 " ms after: %s",
            c->op.address, attempt,
            e->retry_max_attempts > 0 ? e->retry_max_attempts : 8, delay, msg);
    free(msg);
}

typedef struct many_ctx {
    mle_engine *e;
    mle_call *calls;
    size_t n, next;
    pthread_mutex_t mu;
} many_ctx;

static void call_with_retries(mle_engine *e, mle_call *c, unsigned *seed)
{
    int64_t first = mono_ms();
    for (int attempt = 1;; attempt++) {
        mle_call_run(e, c);
        if (c->result.status != MLE_OP_ERROR)
            return;
        int64_t delay = mle_backoff_ms(e, attempt, c->result.error, seed);
        if (!retry_allowed(e, attempt, first, delay, c->result.error))
            return;
        log_retry(e, c, attempt, delay);
        sleep_ms(delay);
    }
}

static void *many_worker(void *arg)
{
    many_ctx *m = arg;
    unsigned seed = (unsigned)(uintptr_t)arg ^ (unsigned)mono_ms();
    for (;;) {
        pthread_mutex_lock(&m->mu);
        size_t i = m->next++;
        pthread_mutex_unlock(&m->mu);
        if (i >= m->n)
            return NULL;
        call_with_retries(m->e, &m->calls[i], &seed);
    }
}

void mle_call_many(mle_engine *e, mle_call *calls, size_t n)
{
    if (n == 0)
        return;
    many_ctx m = {.e = e, .calls = calls, .n = n};
    pthread_mutex_init(&m.mu, NULL);
    size_t nt = (size_t)(e->parallelism > 0 ? e->parallelism : 1);
    if (nt > n)
        nt = n;
    if (nt == 1) {
        many_worker(&m);
    } else {
        pthread_t *th = calloc(nt, sizeof(pthread_t));
        for (size_t i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, many_worker, &m);
        for (size_t i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        free(th);
    }
    pthread_mutex_destroy(&m.mu);
}

/* ---------------------------------------------------------------- scheduler nodes */

typedef enum node_state {
    N_WAITING = 0, /* dependencies not done */
    N_READY,       /* may start */
    N_RUNNING,     /* a worker is making its call */
    N_PARKED,      /* waiting on a timer: poll or retry */
    N_DONE,
    N_FAILED,
    N_SKIPPED,     /* a dependency failed */
    N_STOPPED,     /* interrupted before it could start */
} node_state;

typedef struct node {
    mle_plan_item *it;
    node_state st;
    size_t pending;       /* dependencies not yet done */
    size_t *rdeps, nrdeps;
    int step;             /* replace: 0 first op, 1 second */
    mle_call call;
    mle_op_kind kind;     /* the operation being made (its POLL continues poll_kind) */
    mle_op_kind poll_kind;
    char *poll_token;
    char *token;          /* create idempotency token */
    char *id;             /* current provider ID */
    char *op_address;     /* the address the current op acts on (deposed for cbd delete) */
    json_t *config;       /* resolved config for the current op */
    json_t *state_attrs;  /* attrs passed as op->state */
    int attempt;
    int64_t first_ms, due_ms, started_ms;
    unsigned seed;
    struct node *qnext;
} node;

typedef struct sched {
    mle_engine *e;
    mle_plan *p;
    node *nodes;
    size_t n;
    mle_apply_summary *sum;
    /* worker pool: threads are started as work needs them, up to max_threads */
    pthread_t *threads;
    size_t nthreads, max_threads;
    size_t idle, queued; /* workers waiting for work; calls queued for a worker */
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    node *work_head, *work_tail, *done_head, *done_tail;
    int quit;
    size_t running, parked;
    /* nodes made ready, in the order they became so (a FIFO: entries whose node has moved
     * on, e.g. skipped, are dropped when popped) */
    size_t *ready, ready_head, ready_tail;
    /* One pass of the loop commits in one state transaction (mle_state_batch_begin); the
     * calls it starts wait in `deferred` until that transaction is durable. */
    int batching;
    node **deferred;
    size_t ndeferred;
    mle_progress *prog;
    int engine_error;
    mle_error *err;
    int hooks;       /* an on_resource hook is registered */
    int hook_failed; /* an after-hook failed: the run ends non-zero */
    /* What recording operations in state costs (the benchmark's commit_ms_at_10k; logged at
     * debug): operations recorded, the time spent (sealing, SQLite statements and commits),
     * and the transactions that carried them. */
    size_t commits, transactions, commits_at_open;
    int64_t commit_ns;
} sched;

static void q_push(node **head, node **tail, node *n)
{
    n->qnext = NULL;
    if (*tail)
        (*tail)->qnext = n;
    else
        *head = n;
    *tail = n;
}

static node *q_pop(node **head, node **tail)
{
    node *n = *head;
    if (n) {
        *head = n->qnext;
        if (!*head)
            *tail = NULL;
    }
    return n;
}

static void *worker(void *arg)
{
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->work_head && !s->quit) {
            s->idle++;
            pthread_cond_wait(&s->work_cv, &s->mu);
            s->idle--;
        }
        if (s->quit && !s->work_head)
            break;
        node *n = q_pop(&s->work_head, &s->work_tail);
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        mle_call_run(s->e, &n->call);
        pthread_mutex_lock(&s->mu);
        q_push(&s->done_head, &s->done_tail, n);
        pthread_cond_signal(&s->done_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* One worker to begin with; pool_push adds more while every worker is busy. A large
 * parallelism therefore costs threads only when that many calls are ready at once. */
static void pool_start(sched *s)
{
    size_t want = (size_t)(s->e->parallelism > 0 ? s->e->parallelism : 1);
    if (want > s->n)
        want = s->n ? s->n : 1;
    s->max_threads = want;
    s->threads = calloc(want, sizeof(pthread_t));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_mutex_init(&s->mu, NULL);
    if (pthread_create(&s->threads[0], NULL, worker, s) == 0)
        s->nthreads++;
}

/* Queue a call for the workers, starting one more when none is free. While a state batch
 * is open the call waits for its commit: nothing reaches a driver before the state that
 * precedes it (an intent, a dependency's result) is durable. */
static void pool_push_locked(sched *s, node *n)
{
    q_push(&s->work_head, &s->work_tail, n);
    s->queued++;
    if (s->idle < s->queued && s->nthreads < s->max_threads &&
        pthread_create(&s->threads[s->nthreads], NULL, worker, s) == 0)
        s->nthreads++;
    pthread_cond_signal(&s->work_cv);
}

static void pool_push(sched *s, node *n)
{
    if (s->batching) {
        s->deferred[s->ndeferred++] = n;
        return;
    }
    pthread_mutex_lock(&s->mu);
    pool_push_locked(s, n);
    pthread_mutex_unlock(&s->mu);
}

static void pool_stop(sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    free(s->threads);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_mutex_destroy(&s->mu);
}

/* ---------------------------------------------------------------- state commits */

static int commit(sched *s, mle_state_resource *r, const json_t *extra_sensitive)
{
    mle_error *err = NULL;
    mle_state_resource sealed = *r;
    json_t *attrs = NULL, *config = NULL;
    int64_t t0 = mono_ns();
    if (mle_secrets_seal_resource(s->e, r->type, extra_sensitive, r->attrs, r->config,
                                  &attrs, &config, &err) != 0)
        goto fail;
    sealed.attrs = attrs;
    sealed.config = config;
    int rc = mle_state_put(s->e->state, &sealed, &err);
    json_decref(attrs);
    json_decref(config);
    s->commits++;
    s->commit_ns += mono_ns() - t0;
    if (rc == 0)
        return 0;
fail:
    /* A state that cannot be written is the one failure no branch can work around. */
    if (!s->err)
        s->err = err;
    else
        mle_error_free(err);
    s->engine_error = 1;
    return -1;
}

static int commit_node(sched *s, node *n, mle_res_status status, json_t *attrs)
{
    mle_plan_item *it = n->it;
    mle_state_resource r = {
        .address = n->op_address,
        .type = it->type,
        .driver = it->driver,
        .id = n->id,
        .attrs = attrs,
        .config = n->config,
        .deps = it->deps,
        .status = status,
        .token = n->token,
        .poll_token = status == MLE_RS_IN_PROGRESS ? n->poll_token : NULL,
        .poll_kind = (int)n->poll_kind,
        .poll_at_ms = status == MLE_RS_IN_PROGRESS ? wall_ms() + (n->due_ms - mono_ms()) : 0,
        .updated_ms = wall_ms(),
    };
    return commit(s, &r, it->sensitive);
}

static int drop_row(sched *s, const char *address)
{
    mle_error *err = NULL;
    int64_t t0 = mono_ns();
    int rc = mle_state_delete(s->e->state, address, &err);
    s->commits++;
    s->commit_ns += mono_ns() - t0;
    if (rc == 0)
        return 0;
    if (!s->err)
        s->err = err;
    else
        mle_error_free(err);
    s->engine_error = 1;
    return -1;
}

/* ---------------------------------------------------------------- node lifecycle */

static void finish(sched *s, node *n, node_state st);

static void skip_dependents(sched *s, node *n)
{
    for (size_t k = 0; k < n->nrdeps; k++) {
        node *d = &s->nodes[n->rdeps[k]];
        if (d->st != N_WAITING && d->st != N_READY)
            continue;
        d->st = N_SKIPPED;
        s->sum->skipped++;
        mle_progress_event(s->prog, d->it->address, mle_action_name(d->it->action), "skipped",
                           "a dependency failed", 0);
        skip_dependents(s, d);
    }
}

/* on_resource: before and after each resource's operations (main thread: Lua is here). */
static int resource_hook(sched *s, node *n, const char *phase, const char *result,
                         mle_error **err)
{
    if (!s->hooks)
        return 0;
    json_t *ctx = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I}", "address", n->it->address, "type",
                            n->it->type, "action", mle_action_name(n->it->action), "phase", phase,
                            "result", result, "duration_ms",
                            (json_int_t)(n->started_ms ? mono_ms() - n->started_ms : 0));
    return mle_engine_hook(s->e, "on_resource", ctx, err);
}

static void after_hook(sched *s, node *n, const char *result)
{
    mle_error *err = NULL;
    if (resource_hook(s, n, "after", result, &err) == 0)
        return;
    char *msg = mle_error_format(err);
    mle_log(s->e->log, MLE_LOG_ERROR, NULL, "%s: %s", n->it->address, msg);
    free(msg);
    mle_error_free(err);
    s->hook_failed = 1;
}

static void fail_node(sched *s, node *n, mle_error *err)
{
    char *msg = mle_error_format(err);
    json_array_append_new(s->sum->failures,
                          json_pack("{s:s,s:s,s:s}", "address", n->it->address, "action",
                                    mle_action_name(n->it->action), "error", msg));
    mle_progress_event(s->prog, n->it->address, mle_action_name(n->it->action), "failed", msg,
                       mono_ms() - n->started_ms);
    free(msg);
    mle_error_free(err);
    s->sum->failed++;
    finish(s, n, N_FAILED);
    after_hook(s, n, "failed");
}

static void count_success(sched *s, node *n)
{
    mle_apply_summary *m = s->sum;
    switch (n->it->action) {
    case MLE_ACT_CREATE: m->created++; break;
    case MLE_ACT_UPDATE: m->updated++; break;
    case MLE_ACT_REPLACE: m->replaced++; break;
    case MLE_ACT_DELETE: m->deleted++; break;
    case MLE_ACT_READ: m->read++; break;
    case MLE_ACT_ADOPT: m->adopted++; break;
    case MLE_ACT_RESUME: m->resumed++; break;
    case MLE_ACT_NOOP: break;
    }
}

static void make_ready(sched *s, node *n)
{
    n->st = N_READY;
    s->ready[s->ready_tail++] = (size_t)(n - s->nodes);
}

static void finish(sched *s, node *n, node_state st)
{
    n->st = st;
    if (st == N_FAILED) {
        skip_dependents(s, n);
        return;
    }
    count_success(s, n);
    mle_progress_event(s->prog, n->it->address, mle_action_name(n->it->action), "done", NULL,
                       mono_ms() - n->started_ms);
    if (n->it->action != MLE_ACT_NOOP)
        after_hook(s, n, "done");
    for (size_t k = 0; k < n->nrdeps; k++) {
        node *d = &s->nodes[n->rdeps[k]];
        if (d->st == N_WAITING && --d->pending == 0)
            make_ready(s, d);
    }
}

static void dispatch(sched *s, node *n, mle_op_kind kind)
{
    mle_plan_item *it = n->it;
    mle_call *c = &n->call;
    mle_op_result_clear(&c->result);
    memset(&c->op, 0, sizeof(c->op));
    c->op.kind = kind;
    c->op.type = it->type;
    c->op.address = n->op_address;
    c->op.id = n->id;
    c->op.config = MLE_V(kind == MLE_OPK_DELETE ? NULL : n->config);
    c->op.state = MLE_V(n->state_attrs);
    c->op.token = n->token;
    c->op.lineage = s->p->lineage;
    c->op.poll_token = kind == MLE_OPK_POLL ? n->poll_token : NULL;
    c->op.poll_kind = n->poll_kind;
    n->kind = kind;
    n->st = N_RUNNING;
    s->running++;
    pool_push(s, n);
}

static void park(sched *s, node *n, int64_t delay_ms)
{
    n->due_ms = mono_ms() + delay_ms;
    n->st = N_PARKED;
    s->parked++;
}

/* The config for a create/update, with every reference resolved now. */
static int resolve_now(sched *s, node *n, mle_error **err)
{
    int unknown = 0, sens = 0;
    json_decref(n->config);
    n->config = mle_resolve(s->e, n->it->config, &unknown, &sens);
    if (unknown)
        return mle_fail(err, MLE_E_INVALID,
                        "%s: a value it refers to is still unknown after its dependencies "
                        "were applied (an attribute the provider did not return?)",
                        n->it->address);
    return mle_schema_validate(n->call.rt, n->config, err);
}

static void start_create(sched *s, node *n)
{
    mle_error *err = NULL;
    if (resolve_now(s, n, &err) != 0) {
        fail_node(s, n, err);
        return;
    }
    free(n->token);
    n->token = mle_uuid4();
    free(n->id);
    n->id = NULL;
    json_decref(n->state_attrs);
    n->state_attrs = NULL;
    /* The intent is durable before the cloud hears of it: a crash from here on leaves a
     * row that recovery resolves by asking the driver to find the resource by token. */
    if (commit_node(s, n, MLE_RS_PENDING_CREATE, NULL) != 0)
        return;
    dispatch(s, n, MLE_OPK_CREATE);
}

static void start_delete(sched *s, node *n)
{
    dispatch(s, n, MLE_OPK_DELETE);
}

static void start_replace(sched *s, node *n)
{
    if (!n->it->cbd) {
        start_delete(s, n);
        return;
    }
    /* Create before destroy: the old resource moves aside under a deposed address, so a
     * crash between the two steps leaves it in state, to be deleted by the next apply. */
    char *deposed = NULL;
    if (asprintf(&deposed, "%s~deposed", n->it->address) < 0)
        abort();
    mle_error *err = NULL;
    mle_state_resource r;
    int found = mle_state_get(s->e->state, n->it->address, &r, &err);
    if (found == 1) {
        /* A copy, not a move: a move would repoint the dependents' recorded deps. */
        free(r.address);
        r.address = deposed;
        deposed = NULL;
        found = mle_state_put(s->e->state, &r, &err) == 0 ? 1 : -1;
        mle_state_resource_clear(&r);
    }
    free(deposed);
    if (found != 1) {
        fail_node(s, n, err ? err : mle_error_new(MLE_E_INTERNAL, "%s vanished from state",
                                                  n->it->address));
        return;
    }
    start_create(s, n);
}

static void start(sched *s, node *n)
{
    mle_error *err = NULL;
    n->started_ms = mono_ms();
    n->first_ms = n->started_ms;
    n->attempt = 0;
    if (mle_engine_driver_ready(s->e, n->call.drv, &err) != 0) {
        fail_node(s, n, err);
        return;
    }
    mle_progress_event(s->prog, n->it->address, mle_action_name(n->it->action), "start", NULL, 0);
    if (n->it->action != MLE_ACT_NOOP && resource_hook(s, n, "before", NULL, &err) != 0) {
        fail_node(s, n, err);
        return;
    }
    switch (n->it->action) {
    case MLE_ACT_CREATE:
        start_create(s, n);
        break;
    case MLE_ACT_UPDATE:
    case MLE_ACT_READ:
        if (resolve_now(s, n, &err) != 0) {
            fail_node(s, n, err);
            return;
        }
        dispatch(s, n, n->it->action == MLE_ACT_READ ? MLE_OPK_READ : MLE_OPK_UPDATE);
        break;
    case MLE_ACT_REPLACE:
        start_replace(s, n);
        break;
    case MLE_ACT_DELETE:
        start_delete(s, n);
        break;
    case MLE_ACT_ADOPT:
        dispatch(s, n, MLE_OPK_ADOPT);
        break;
    case MLE_ACT_RESUME:
        dispatch(s, n, MLE_OPK_POLL);
        break;
    case MLE_ACT_NOOP:
        finish(s, n, N_DONE);
        break;
    }
}

/* The operation that a DONE answers: the polled kind for a poll. */
static mle_op_kind effective_kind(const node *n)
{
    if (n->kind == MLE_OPK_POLL)
        return n->poll_kind;
    if (n->kind == MLE_OPK_ADOPT)
        return MLE_OPK_CREATE;
    return n->kind;
}

/* The replace's second step, or the end of the node. */
static void step_done(sched *s, node *n)
{
    if (n->it->action == MLE_ACT_REPLACE && n->step == 0) {
        n->step = 1;
        n->attempt = 0;
        n->first_ms = mono_ms();
        if (n->it->cbd) {
            /* The new one exists; now delete the deposed old one. */
            free(n->op_address);
            if (asprintf(&n->op_address, "%s~deposed", n->it->address) < 0)
                abort();
            free(n->id);
            n->id = n->it->id ? strdup(n->it->id) : NULL;
            json_decref(n->state_attrs);
            n->state_attrs = json_incref(n->it->before);
            dispatch(s, n, MLE_OPK_DELETE);
        } else {
            start_create(s, n);
        }
        return;
    }
    if (n->it->cbd && n->it->action == MLE_ACT_REPLACE) {
        free(n->op_address);
        n->op_address = strdup(n->it->address);
    }
    finish(s, n, N_DONE);
}

static void on_done(sched *s, node *n)
{
    mle_op_result *r = &n->call.result;
    mle_op_kind k = effective_kind(n);
    if (k == MLE_OPK_DELETE) {
        if (drop_row(s, n->op_address) != 0)
            return;
        mle_engine_forget(s->e, n->op_address);
        step_done(s, n);
        return;
    }
    if (r->id) {
        free(n->id);
        n->id = strdup(r->id);
    }
    if (k == MLE_OPK_READ && n->it->data) {
        mle_engine_know(s->e, n->it->address, n->it->type, r->attrs, n->it->sensitive);
        step_done(s, n);
        return;
    }
    if (commit_node(s, n, MLE_RS_OK, r->attrs) != 0)
        return;
    mle_engine_know(s->e, n->op_address, n->it->type, r->attrs, n->it->sensitive);
    step_done(s, n);
}

static void on_not_found(sched *s, node *n)
{
    mle_op_kind k = effective_kind(n);
    if (k == MLE_OPK_DELETE || n->kind == MLE_OPK_ADOPT) {
        /* Already gone, or the interrupted create never reached the cloud. */
        if (drop_row(s, n->op_address) != 0)
            return;
        mle_engine_forget(s->e, n->op_address);
        if (n->kind == MLE_OPK_ADOPT)
            mle_log(s->e->log, MLE_LOG_INFO, NULL,
                    "%s: the interrupted create had not reached the provider; intent dropped",
                    n->it->address);
        step_done(s, n);
        return;
    }
    /* It vanished while being created or updated: state must not keep a row that every
     * later run would try to resume; the next plan creates it again. */
    if (n->kind == MLE_OPK_POLL && drop_row(s, n->op_address) != 0)
        return;
    fail_node(s, n, mle_error_new(MLE_E_NOT_FOUND,
                                  "%s no longer exists (deleted outside mlengine?): run "
                                  "`mlengine plan --refresh` to see and recreate it",
                                  n->it->address));
}

static void on_in_progress(sched *s, node *n)
{
    mle_op_result *r = &n->call.result;
    if (n->kind != MLE_OPK_POLL)
        n->poll_kind = n->kind == MLE_OPK_ADOPT ? MLE_OPK_CREATE : n->kind;
    free(n->poll_token);
    n->poll_token = strdup(r->poll_token ? r->poll_token : "");
    park(s, n, r->poll_after_ms ? r->poll_after_ms : 1000);
    json_t *keep = json_incref(n->state_attrs);
    commit_node(s, n, MLE_RS_IN_PROGRESS, keep);
    json_decref(keep);
    mle_progress_event(s->prog, n->it->address, mle_action_name(n->it->action), "waiting",
                       NULL, mono_ms() - n->started_ms);
}

/* What state says after an operation failed for good. A create the provider refused made
 * nothing: its intent goes. An operation that failed while being polled may have left
 * something behind: a create keeps its intent (the next run's recovery asks the driver to
 * find it by token), an update or delete leaves the resource as it was known before —
 * never an in-progress row that every later run would resume. */
static int settle_failed_row(sched *s, node *n)
{
    if (n->kind == MLE_OPK_CREATE)
        return drop_row(s, n->op_address);
    if (n->kind != MLE_OPK_POLL)
        return 0;
    if (n->poll_kind == MLE_OPK_CREATE)
        return commit_node(s, n, MLE_RS_PENDING_CREATE, NULL);
    return commit_node(s, n, MLE_RS_OK, n->state_attrs);
}

static void on_error(sched *s, node *n)
{
    mle_op_result *r = &n->call.result;
    n->attempt++;
    int64_t delay = mle_backoff_ms(s->e, n->attempt, r->error, &n->seed);
    if (retry_allowed(s->e, n->attempt, n->first_ms, delay, r->error) && !*s->e->interrupted) {
        log_retry(s->e, &n->call, n->attempt, delay);
        mle_progress_event(s->prog, n->it->address, mle_action_name(n->it->action), "retry",
                           NULL, mono_ms() - n->started_ms);
        park(s, n, delay);
        return;
    }
    mle_error *err = r->error;
    r->error = NULL;
    if (settle_failed_row(s, n) != 0) {
        mle_error_free(err);
        return;
    }
    fail_node(s, n, err);
}

static void handle(sched *s, node *n)
{
    s->running--;
    switch (n->call.result.status) {
    case MLE_OP_DONE: on_done(s, n); break;
    case MLE_OP_NOT_FOUND: on_not_found(s, n); break;
    case MLE_OP_IN_PROGRESS: on_in_progress(s, n); break;
    case MLE_OP_ERROR: on_error(s, n); break;
    }
}

/* Re-dispatch a parked node: a poll for in-progress operations, the same call for retries. */
static void wake(sched *s, node *n)
{
    s->parked--;
    if (n->call.result.status == MLE_OP_IN_PROGRESS) {
        dispatch(s, n, MLE_OPK_POLL);
        return;
    }
    n->st = N_RUNNING;
    s->running++;
    mle_op_result_clear(&n->call.result);
    pool_push(s, n);
}

/* ---------------------------------------------------------------- the loop */

static int64_t next_due(sched *s)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < s->n; i++)
        if (s->nodes[i].st == N_PARKED && s->nodes[i].due_ms < due)
            due = s->nodes[i].due_ms;
    return due;
}

static void start_ready(sched *s)
{
    while (s->ready_head < s->ready_tail && !s->engine_error) {
        node *n = &s->nodes[s->ready[s->ready_head]];
        /* A driver is set up (maybe over the network) outside the state transaction: the
         * next pass does it first (init_ready_drivers). */
        if (n->st == N_READY && s->batching && !n->call.drv->initialized)
            break;
        s->ready_head++;
        if (n->st == N_READY)
            start(s, n);
    }
}

static void init_ready_drivers(sched *s)
{
    for (size_t i = s->ready_head; i < s->ready_tail; i++) {
        node *n = &s->nodes[s->ready[i]];
        mle_error *err = NULL;
        if (n->st != N_READY || n->call.drv->initialized ||
            mle_engine_driver_ready(s->e, n->call.drv, &err) == 0)
            continue;
        n->started_ms = mono_ms();
        fail_node(s, n, err);
    }
}

static void wake_due(sched *s)
{
    if (!s->parked)
        return;
    int64_t now = mono_ms();
    for (size_t i = 0; i < s->n; i++)
        if (s->nodes[i].st == N_PARKED && s->nodes[i].due_ms <= now)
            wake(s, &s->nodes[i]);
}

/* Sleep until a worker finishes, the next timer is due, or 200 ms pass (so a signal and
 * the live progress display are noticed even when nothing else happens). */
static void wait_for_event(sched *s)
{
    int64_t deadline = mono_ms() + 200;
    if (s->parked) {
        int64_t due = next_due(s);
        if (due < deadline)
            deadline = due;
    }
    struct timespec ts;
    ts.tv_sec = deadline / 1000;
    ts.tv_nsec = (deadline % 1000) * 1000000;
    pthread_mutex_lock(&s->mu);
    while (!s->done_head && !*s->e->interrupted && mono_ms() < deadline)
        pthread_cond_timedwait(&s->done_cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
    mle_progress_tick(s->prog);
}

/* Results handled per pass of the loop. Calls that end together (a layer of the graph)
 * would otherwise all be committed before the first dependent starts; in chunks, the
 * dependents of the first ones are on their way while the rest are handled. */
#define DRAIN_CHUNK 16

static void drain_done(sched *s)
{
    for (size_t k = 0; k < DRAIN_CHUNK; k++) {
        pthread_mutex_lock(&s->mu);
        node *n = q_pop(&s->done_head, &s->done_tail);
        pthread_mutex_unlock(&s->mu);
        if (!n)
            return;
        handle(s, n);
    }
}

static int any_done(sched *s)
{
    pthread_mutex_lock(&s->mu);
    int any = s->done_head != NULL;
    pthread_mutex_unlock(&s->mu);
    return any;
}

static int any_ready(const sched *s)
{
    return s->ready_head < s->ready_tail;
}

/* Parked creates keep their intent row and in-progress ones their poll token, so the next
 * run's recovery finishes them; nothing here needs undoing. */
static void mark_stopped(sched *s)
{
    for (size_t i = 0; i < s->n; i++) {
        node *n = &s->nodes[i];
        if (n->st == N_READY || n->st == N_WAITING || n->st == N_PARKED) {
            n->st = N_STOPPED;
            s->sum->interrupted++;
        }
    }
}

static void engine_failure(sched *s, mle_error *err)
{
    if (!s->err)
        s->err = err;
    else
        mle_error_free(err);
    s->engine_error = 1;
}

static void batch_open(sched *s)
{
    mle_error *err = NULL;
    s->commits_at_open = s->commits;
    if (mle_state_batch_begin(s->e->state, &err) == 0)
        s->batching = 1;
    else
        engine_failure(s, err);
}

/* Commit the pass, then hand its calls to the workers. If the commit fails, none of them
 * is made: they are stopped like operations an interrupt kept from starting. */
static void batch_close(sched *s)
{
    if (!s->batching)
        return;
    s->batching = 0;
    mle_error *err = NULL;
    int64_t t0 = mono_ns();
    int rc = mle_state_batch_end(s->e->state, &err);
    s->commit_ns += mono_ns() - t0;
    s->transactions += s->commits > s->commits_at_open;
    if (rc != 0)
        engine_failure(s, err);
    if (rc == 0 && s->ndeferred) {
        /* All at once under one lock: the workers woken first wait for it rather than
         * contend with each push. */
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->ndeferred; i++)
            pool_push_locked(s, s->deferred[i]);
        pthread_mutex_unlock(&s->mu);
    }
    for (size_t i = 0; rc != 0 && i < s->ndeferred; i++) {
        s->running--;
        s->deferred[i]->st = N_STOPPED;
        s->sum->interrupted++;
    }
    s->ndeferred = 0;
}

static void run_loop(sched *s)
{
    for (;;) {
        /* Results first, so the dependents they release start in the same pass and one
         * commit covers both. */
        if (!*s->e->interrupted && !s->engine_error)
            init_ready_drivers(s);
        batch_open(s);
        drain_done(s);
        if (!*s->e->interrupted && !s->engine_error) {
            start_ready(s);
            wake_due(s);
        }
        batch_close(s);
        if (s->engine_error || *s->e->interrupted) {
            if (s->running == 0)
                break;
        } else if (any_ready(s) || any_done(s)) {
            continue;
        } else if (s->running == 0 && s->parked == 0) {
            break;
        }
        wait_for_event(s);
    }
    if (*s->e->interrupted || s->engine_error)
        mark_stopped(s);
}

/* ---------------------------------------------------------------- set-up */

static int build_nodes(sched *s, mle_error **err)
{
    mle_plan *p = s->p;
    s->n = p->n;
    s->nodes = calloc(p->n + 1, sizeof(node));
    s->ready = calloc(p->n + 1, sizeof(size_t));
    s->deferred = calloc(p->n + 1, sizeof(node *));
    json_t *index = json_object();
    for (size_t i = 0; i < p->n; i++)
        json_object_set_new(index, p->items[i].address, json_integer((json_int_t)i));
    size_t *cnt = calloc(p->n + 1, sizeof(size_t));
    for (size_t i = 0; i < p->n; i++) {
        node *n = &s->nodes[i];
        n->it = &p->items[i];
        n->op_address = strdup(n->it->address);
        n->id = n->it->id ? strdup(n->it->id) : NULL;
        n->state_attrs = json_incref(n->it->before);
        n->config = json_incref(n->it->config);
        n->seed = (unsigned)(i * 2654435761u) ^ (unsigned)wall_ms();
        if (n->it->resume) {
            const char *t = json_string_value(json_object_get(n->it->resume, "token"));
            const char *pt = json_string_value(json_object_get(n->it->resume, "poll_token"));
            n->token = t ? strdup(t) : NULL;
            n->poll_token = pt ? strdup(pt) : NULL;
            n->poll_kind = (mle_op_kind)json_integer_value(
                json_object_get(n->it->resume, "poll_kind"));
        }
        n->call.rt = mle_engine_type(s->e, n->it->type, &n->call.drv, err);
        if (!n->call.rt) {
            free(cnt);
            json_decref(index);
            return -1;
        }
        size_t k;
        json_t *d;
        json_array_foreach(n->it->deps, k, d) {
            json_t *ix = json_object_get(index, json_string_value(d));
            if (!ix)
                continue;
            cnt[json_integer_value(ix)]++;
        }
    }
    for (size_t i = 0; i < p->n; i++)
        s->nodes[i].rdeps = calloc(cnt[i] + 1, sizeof(size_t));
    for (size_t i = 0; i < p->n; i++) {
        size_t k;
        json_t *d;
        json_array_foreach(p->items[i].deps, k, d) {
            json_t *ix = json_object_get(index, json_string_value(d));
            if (!ix)
                continue;
            node *dep = &s->nodes[json_integer_value(ix)];
            dep->rdeps[dep->nrdeps++] = i;
            s->nodes[i].pending++;
        }
    }
    free(cnt);
    json_decref(index);
    /* No-ops are done before anything starts; their dependents count them as done. */
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].action == MLE_ACT_NOOP)
            for (size_t k = 0; k < s->nodes[i].nrdeps; k++)
                s->nodes[s->nodes[i].rdeps[k]].pending--;
    for (size_t i = 0; i < p->n; i++) {
        node *n = &s->nodes[i];
        if (n->it->action == MLE_ACT_NOOP)
            n->st = N_DONE;
        else
            n->st = N_WAITING;
        if (n->st == N_WAITING && n->pending == 0)
            make_ready(s, n);
    }
    return 0;
}

static void free_nodes(sched *s)
{
    for (size_t i = 0; i < s->n; i++) {
        node *n = &s->nodes[i];
        mle_op_result_clear(&n->call.result);
        free(n->rdeps);
        free(n->poll_token);
        free(n->token);
        free(n->id);
        free(n->op_address);
        json_decref(n->config);
        json_decref(n->state_attrs);
    }
    free(s->nodes);
    free(s->ready);
    free(s->deferred);
}

static void resolve_outputs(mle_engine *e, mle_plan *p)
{
    if (!p->outputs || p->destroy)
        return;
    json_t *out = json_object();
    const char *k;
    json_t *o;
    json_object_foreach(p->outputs, k, o) {
        int unknown = 0, sens = json_is_true(json_object_get(o, "sensitive"));
        json_t *v = mle_resolve(e, json_object_get(o, "value"), &unknown, &sens);
        if (unknown) {
            json_decref(v);
            continue;
        }
        json_object_set_new(out, k, json_pack("{s:o,s:b}", "value", v, "sensitive", sens));
    }
    mle_error *err = NULL;
    json_t *sealed = mle_secrets_seal_outputs(e, out, &err);
    if (!sealed || mle_state_set_outputs(e->state, sealed, &err) != 0) {
        char *msg = mle_error_format(err);
        mle_log(e->log, MLE_LOG_ERROR, NULL, "saving outputs: %s", msg);
        free(msg);
        mle_error_free(err);
    }
    json_decref(sealed);
    json_decref(out);
}

void mle_apply_summary_clear(mle_apply_summary *s)
{
    json_decref(s->failures);
    memset(s, 0, sizeof(*s));
}

int mle_apply(mle_engine *e, mle_plan *p, mle_apply_summary *sum, mle_error **err)
{
    if (!sum->failures)
        sum->failures = json_array();
    sched s = {.e = e, .p = p, .sum = sum, .hooks = mle_engine_has_hook(e, "on_resource")};
    if (build_nodes(&s, err) != 0) {
        free_nodes(&s);
        return -1;
    }
    size_t todo = 0;
    for (size_t i = 0; i < s.n; i++)
        todo += s.nodes[i].st != N_DONE;
    s.prog = mle_progress_new(e->progress, e->out == stdout ? stderr : e->out, todo);
    pool_start(&s);
    run_loop(&s);
    pool_stop(&s);
    mle_progress_free(s.prog);
    if (s.commits)
        mle_log(e->log, MLE_LOG_DEBUG, NULL,
                "apply: %zu operations committed to state in %.3f ms (%.3f ms each, %zu "
                "transactions)",
                s.commits, (double)s.commit_ns / 1e6,
                (double)s.commit_ns / 1e6 / (double)s.commits, s.transactions);
    if (!s.engine_error)
        resolve_outputs(e, p);
    free_nodes(&s);
    if (s.engine_error) {
        if (err)
            *err = s.err;
        else
            mle_error_free(s.err);
        return -1;
    }
    if (*e->interrupted)
        return 130;
    return sum->failed || s.hook_failed ? 1 : 0;
}

/* ---------------------------------------------------------------- recovery */

static void add_recovery_item(mle_plan *p, const mle_state_resource *r)
{
    p->items = realloc(p->items, (p->n + 1) * sizeof(*p->items));
    mle_plan_item *it = &p->items[p->n++];
    memset(it, 0, sizeof(*it));
    it->address = strdup(r->address);
    it->type = strdup(r->type);
    it->driver = strdup(r->driver ? r->driver : "");
    it->action = r->status == MLE_RS_PENDING_CREATE ? MLE_ACT_ADOPT : MLE_ACT_RESUME;
    it->id = r->id ? strdup(r->id) : NULL;
    it->before = r->attrs ? json_incref(r->attrs) : NULL;
    it->config = r->config ? json_incref(r->config) : json_object();
    it->changed = json_array();
    it->force = json_array();
    it->sensitive = json_array();
    it->deps = json_array();
    it->resume = json_pack("{s:s?,s:s?,s:i}", "token", r->token, "poll_token", r->poll_token,
                           "poll_kind", r->poll_kind);
}

int mle_recover(mle_engine *e, mle_apply_summary *sum, mle_error **err)
{
    mle_state_resource *rs = NULL;
    size_t n = 0;
    if (mle_state_list_unfinished(e->state, &rs, &n, err) != 0)
        return -1;
    mle_plan *p = calloc(1, sizeof(*p));
    p->lineage = strdup(mle_state_lineage(e->state));
    p->serial = mle_state_serial(e->state);
    for (size_t i = 0; i < n; i++) {
        if (rs[i].status == MLE_RS_OK)
            continue;
        if (mle_secrets_open_resource(e, &rs[i], err) != 0) {
            mle_state_resources_free(rs, n);
            mle_plan_free(p);
            return -1;
        }
        add_recovery_item(p, &rs[i]);
    }
    mle_state_resources_free(rs, n);
    int rc = 0;
    if (p->n > 0) {
        mle_log(e->log, MLE_LOG_INFO, NULL,
                "recovering %zu operation(s) left unfinished by an earlier run", p->n);
        rc = mle_apply(e, p, sum, err);
    }
    mle_plan_free(p);
    return rc;
}

/* ---------------------------------------------------------------- import */

static const json_t *declared(mle_engine *e, const char *address)
{
    size_t i;
    json_t *r;
    json_array_foreach(e->stack->resources, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "address")), address) == 0)
            return r;
    }
    return NULL;
}

static int import_commit(mle_engine *e, const char *address, const char *type,
                         const char *driver, const char *id, json_t *attrs, json_t *config,
                         mle_error **err)
{
    json_t *sa = NULL, *sc = NULL;
    if (mle_secrets_seal_resource(e, type, NULL, attrs, config, &sa, &sc, err) != 0)
        return -1;
    mle_state_resource r = {.address = (char *)address, .type = (char *)type,
                            .driver = (char *)driver, .id = (char *)id, .attrs = sa,
                            .config = sc, .status = MLE_RS_OK, .updated_ms = wall_ms()};
    int rc = mle_state_put(e->state, &r, err);
    json_decref(sa);
    json_decref(sc);
    return rc;
}

int mle_import(mle_engine *e, const char *address, const char *id, mle_error **err)
{
    const json_t *decl = declared(e, address);
    if (!decl)
        return mle_fail(err, MLE_E_INVALID, "%s is not declared in the stack: declare it "
                        "first, then import it", address);
    mle_state_resource existing;
    int found = mle_state_get(e->state, address, &existing, err);
    if (found < 0)
        return -1;
    if (found) {
        mle_state_resource_clear(&existing);
        return mle_fail(err, MLE_E_CONFLICT, "%s is already in state; `mlengine state rm %s` "
                        "first to import another resource there", address, address);
    }
    mle_call c;
    memset(&c, 0, sizeof(c));
    const char *type = json_string_value(json_object_get(decl, "type"));
    c.rt = mle_engine_type(e, type, &c.drv, err);
    if (!c.rt || mle_engine_driver_ready(e, c.drv, err) != 0)
        return -1;
    int unknown = 0, sens = 0;
    json_t *config = json_deep_copy(json_object_get(decl, "config"));
    mle_schema_apply_defaults(c.rt, config);
    json_t *resolved = mle_resolve(e, config, &unknown, &sens);
    json_decref(config);
    c.op.kind = MLE_OPK_IMPORT;
    c.op.type = type;
    c.op.address = address;
    c.op.id = id;
    c.op.config = MLE_V(resolved);
    call_with_retries(e, &c, &(unsigned){1});
    int rc = 0;
    if (c.result.status == MLE_OP_DONE) {
        rc = import_commit(e, address, type, c.drv->name, c.result.id ? c.result.id : id,
                           c.result.attrs, resolved, err);
    } else if (c.result.status == MLE_OP_NOT_FOUND) {
        rc = mle_fail(err, MLE_E_NOT_FOUND, "no %s with ID %s was found", type, id);
    } else {
        if (err) {
            *err = c.result.error ? c.result.error
                                  : mle_error_new(MLE_E_INTERNAL, "import did not finish");
            c.result.error = NULL;
        }
        rc = -1;
    }
    mle_op_result_clear(&c.result);
    json_decref(resolved);
    return rc;
}
