/*
 * engine.h — the context of one run, passed everywhere instead of globals: logger, HTTP
 * client, driver registry, state, the evaluated stack, options, and the table of attribute
 * values known so far (what references resolve against).
 */
#ifndef MLE_CORE_ENGINE_H
#define MLE_CORE_ENGINE_H

#include <signal.h>
#include <stdio.h>
#include <jansson.h>
#include "error.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "lua_rt.h"
#include "state.h"

struct mle_http_client;

typedef enum mle_progress_mode {
    MLE_PROGRESS_LINES = 0, /* one log line per event (no terminal) */
    MLE_PROGRESS_TTY,       /* live lines on a terminal */
    MLE_PROGRESS_JSON,      /* --json-events: one JSON object per line */
} mle_progress_mode;

typedef struct mle_engine {
    mle_logger *log;
    struct mle_http_client *http;
    mle_host_services svc;
    mle_registry *reg;
    mle_state *state;
    mle_lua *lua;
    mle_stack *stack;

    char *stack_path; /* absolute */
    char *stack_dir;  /* absolute */
    json_t *vars;     /* name -> value from CLI/env/var-file */

    int parallelism;
    mle_progress_mode progress;
    FILE *out;        /* where plans and summaries go (stdout) */

    /* address -> {"type", "attrs", "sensitive": [names]} of values known so far */
    json_t *known;

    volatile sig_atomic_t *interrupted; /* set by SIGINT/SIGTERM */
    int retry_max_attempts;     /* per operation; default 8 */
    int64_t retry_max_elapsed_ms; /* per operation; default 10 min */
    int64_t retry_base_ms;      /* default 500 */

    uint8_t state_key[32];      /* see secrets.h; loaded on first need */
    int state_key_loaded;
} mle_engine;

/* Driver calls at once when --parallelism is not given. A call that blocks (an HTTP
 * request) holds a worker thread, so with fewer workers than calls ready together an apply
 * waits for threads rather than for the cloud: 1,000 resources in 5 layers of 200 at 200 ms
 * per call take 6.5 s with 32 and 1.1 s with 256 (tests/bench/run). Threads start only
 * when that many calls are ready at once, and operations that answer "in progress" hold
 * none. */
#define MLE_DEFAULT_PARALLELISM 256

typedef struct mle_engine_opts {
    const char *stack_path;      /* NULL: no stack (state and driver commands) */
    const char *state_path;      /* NULL: <stack dir>/.mlengine/state.db */
    const char *const *driver_dirs; /* --driver-path, n_driver_dirs entries */
    size_t n_driver_dirs;
    json_t *vars;                /* borrowed: name -> value */
    const char *hooks_file;      /* --hooks, or NULL */
    int parallelism;             /* 0: MLE_DEFAULT_PARALLELISM */
    mle_log_level log_level;
    mle_progress_mode progress;
    int open_state;              /* 0: no state (validate, drivers) */
    int create_state;            /* create the state file when missing */
    const char *lock_command;    /* non-NULL: take the state lock for this command */
    volatile sig_atomic_t *interrupted;
} mle_engine_opts;

/* Set up a run: logger, HTTP, drivers, state (+ lock), and the evaluated stack. Caller frees
 * with mle_engine_close (which releases the lock). */
int mle_engine_open(const mle_engine_opts *o, mle_engine **out, mle_error **err);
void mle_engine_close(mle_engine *e);

/* Record what is known about a resource. attrs is borrowed and kept by reference (the
 * caller must not modify it afterwards; replace it with a new object instead). */
void mle_engine_know(mle_engine *e, const char *address, const char *type,
                     const json_t *attrs, const json_t *extra_sensitive);
void mle_engine_forget(mle_engine *e, const char *address);

/* The type and driver for a type name, with a "did you mean" error when unknown. */
const mle_resource_type *mle_engine_type(mle_engine *e, const char *type,
                                         mle_loaded_driver **drv, mle_error **err);

/* Run the stack's hooks named `name` (pre_plan, post_plan, pre_apply, post_apply,
 * on_resource) with ctx (stolen; already redacted). 0 when none is registered or all
 * passed, 1 when one vetoed, -1 when one failed; *err says which and why. Main thread only:
 * Lua is single-threaded. */
int mle_engine_hook(mle_engine *e, const char *name, json_t *ctx, mle_error **err);
int mle_engine_has_hook(const mle_engine *e, const char *name);

/* Initialise the driver (once) with the stack's options for it, references in them
 * resolved (an error when one is still unknown). */
int mle_engine_driver_ready(mle_engine *e, mle_loaded_driver *drv, mle_error **err);
/* 1 when the driver is not initialised and its options refer to values not known yet (a
 * Kubernetes driver configured from a cluster this apply creates): it can be initialised
 * only during apply, once those resources exist. */
int mle_engine_driver_deferred(mle_engine *e, mle_loaded_driver *drv);
/* Addresses a driver's options refer to (added to the set `deps`, a JSON object): every
 * resource of that driver depends on them. */
void mle_engine_driver_refs(mle_engine *e, const char *name, json_t *deps);

#endif
