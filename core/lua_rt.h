/*
 * lua_rt.h — the Lua 5.4 runtime that evaluates a stack: the sandbox, the `mlengine` module,
 * references and deferred expressions, variables, outputs, hooks.
 *
 * One runtime per run, used from one thread. Evaluating a stack does no cloud I/O: it yields
 * a description of the desired graph (mle_stack) in which every value that depends on another
 * resource is a marker (see "Markers" below), resolved later by the planner and the apply
 * scheduler.
 *
 * Sandbox: base (without dofile/loadfile/load of binary chunks), string, table, math, utf8,
 * a reduced os (time, clock, date only); no io, debug, package. `require` resolves only inside
 * the stack's folder and the scripts library. Instruction and memory limits end the run with
 * MLE_E_INVALID and a message naming the limit. math.random is seeded with a fixed seed.
 *
 * Markers inside config/output values (JSON objects with one reserved key):
 *   {"$ref": {"address": "aws_vpc.main", "path": "id"}}    reference to an attribute
 *        (path is dot-separated; list indexes are 0-based numbers: "names.0")
 *   {"$expr": [part, ...]}   string concatenation; each part a string, number or $ref marker
 *   {"$sensitive": v}        a secret (mlengine.sensitive, sensitive variables): v is any
 *        value, markers included; redact it everywhere, encrypt it at rest
 * A table of the stack whose only key is one of these three names is refused, so a marker
 * always comes from the runtime. Object keys of config values are sorted (stable JSON).
 */
#ifndef MLE_CORE_LUA_RT_H
#define MLE_CORE_LUA_RT_H

#include <stdint.h>
#include <jansson.h>
#include "error.h"

typedef struct mle_lua mle_lua;

/* Called for every declared resource so that an unknown type or attribute is reported at the
 * stack line that declared it. Return 0, or -1 with *err (its message gets "file:line: "
 * prepended by the runtime). `config` is borrowed. */
typedef int (*mle_lua_validate_fn)(void *ud, const char *type, int data_source,
                                   const json_t *config, mle_error **err);

typedef struct mle_lua_opts {
    const char *stack_path;  /* the stack file */
    const char *scripts_dir; /* the installed scripts/ library (for require), or NULL */
    json_t *vars;            /* borrowed: object name -> value given by --var/env/var-file */
    uint64_t instr_limit;    /* 0: default 200M instructions per entry into Lua */
    size_t mem_limit;        /* bytes; 0: default 512 MiB */
    mle_lua_validate_fn validate; /* may be NULL */
    void *validate_ud;
} mle_lua_opts;

/* The evaluated stack. All fields are owned JSON (free with mle_stack_free).
 *   resources: array of {"address", "type", "name", "data": bool, "config": {...},
 *                        "depends_on": [addr...], "where": "stack.lua:12"}
 *              in declaration order. Addresses: "type.name"; data sources "data.type.name".
 *   outputs:   object name -> {"value": v (may hold markers), "sensitive": bool,
 *                              "description": s (only when given), "where": "stack.lua:40"}
 *              (sensitive is true as well when v holds a $sensitive marker)
 *   drivers:   object driver name -> options object (from mlengine.driver(name, opts))
 *   variables: object name -> {"value": v, "sensitive": bool}  (the resolved values)
 *   hooks:     array of hook names registered (pre_plan, post_plan, ...)
 */
typedef struct mle_stack {
    json_t *resources;
    json_t *outputs;
    json_t *drivers;
    json_t *variables;
    json_t *hooks;
    char *cloud; /* mle.cloud("aws"), or NULL when the stack names none */
} mle_stack;

/* New runtime. Caller frees with mle_lua_free. opts is copied. */
mle_lua *mle_lua_new(const mle_lua_opts *opts, mle_error **err);
void mle_lua_free(mle_lua *rt);

/* Evaluate the stack file. On error: -1 and *err with "file:line: message" and a traceback
 * in the hint. *out is owned by the caller (mle_stack_free). */
int mle_lua_eval(mle_lua *rt, mle_stack **out, mle_error **err);
void mle_stack_free(mle_stack *s);

/* Load an extra hooks file (--hooks FILE) into the same sandbox, before or after
 * mle_lua_eval. The file may register hooks; declaring resources there is an error. */
int mle_lua_load_hooks(mle_lua *rt, const char *path, mle_error **err);

/* Run every hook registered under `name` with a context built from `ctx` (borrowed JSON,
 * already redacted). Returns 0; 1 when a hook vetoed (*err holds its message); -1 on a Lua
 * error (*err). `report_dir` bounds where ctx:write_report may write. All hooks of the name
 * run in registration order; several vetoes are joined with "; " in one message. The
 * instruction limit applies to each call (as to mle_lua_eval and mle_lua_load_hooks). */
int mle_lua_run_hook(mle_lua *rt, const char *name, const json_t *ctx, const char *report_dir,
                     mle_error **err);

/* Helpers on markers, shared by planner and scheduler. */
int mle_marker_is_ref(const json_t *v);
int mle_marker_is_expr(const json_t *v);
int mle_marker_is_sensitive(const json_t *v);
/* Does `v` (any JSON) contain a $ref or $expr marker anywhere (a value known only at apply)?
 * The content of a $sensitive wrapper is searched too; the wrapper alone does not count. */
int mle_marker_contains(const json_t *v);

#endif
