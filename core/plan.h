/*
 * plan.h — the plan as a value: desired graph vs state, per-resource actions with an
 * attribute-level diff, rendered for people (a diff a reviewer reads in a pull request) or as
 * JSON (schemas/plan.schema.json), saved to a file and loaded back.
 *
 * Markers (lua_rt.h) are resolved while planning wherever the referenced value is already
 * known; what stays unknown prints as "(known after apply)" and is resolved by the apply
 * scheduler.
 */
#ifndef MLE_CORE_PLAN_H
#define MLE_CORE_PLAN_H

#include <stdio.h>
#include <jansson.h>
#include "engine.h"
#include "error.h"

typedef enum mle_action {
    MLE_ACT_NOOP = 0,
    MLE_ACT_CREATE,
    MLE_ACT_UPDATE,
    MLE_ACT_REPLACE,
    MLE_ACT_DELETE,
    MLE_ACT_READ,    /* a data source read during apply (its inputs were unknown at plan) */
    MLE_ACT_ADOPT,   /* recovery: a create intent left by a crash */
    MLE_ACT_RESUME,  /* recovery: an operation that was in progress when the run stopped */
} mle_action;

typedef struct mle_plan_item {
    char *address, *type, *driver;
    mle_action action;
    int data;         /* a data source */
    int cbd;          /* replace creates the new one before deleting the old */
    char *id;         /* current provider ID (update, replace, delete, resume) */
    json_t *before;   /* attributes in state (new ref) or NULL */
    json_t *config;   /* desired inputs, defaults applied, markers where unknown, or NULL */
    json_t *changed;  /* array of attribute names that change */
    json_t *force;    /* array of attribute names forcing replacement */
    json_t *sensitive;/* array of attribute names whose values are secret (beyond schema) */
    json_t *deps;     /* array of addresses this item waits for (already oriented) */
    json_t *resume;   /* RESUME/ADOPT: {"token","poll_token","poll_kind"} */
} mle_plan_item;

typedef struct mle_plan {
    char *lineage;
    int64_t serial;
    int destroy;
    mle_plan_item *items;
    size_t n;
    json_t *outputs; /* from the stack: name -> {value (markers), sensitive} */
    json_t *drift;   /* array: {"address", "deleted": bool, "changes": {attr: [before, after]}} */
    json_t *data;    /* address -> attributes of data sources read at plan time */
} mle_plan;

typedef struct mle_plan_opts {
    int destroy;       /* plan to delete everything (targets: and their dependents) */
    int refresh;       /* read every resource through its driver first */
    json_t *targets;   /* borrowed array of addresses, or NULL for all */
} mle_plan_opts;

/* Build a plan for the engine's evaluated stack against its state. May call drivers (refresh,
 * data sources). Caller frees with mle_plan_free. */
int mle_plan_build(mle_engine *e, const mle_plan_opts *o, mle_plan **out, mle_error **err);
void mle_plan_free(mle_plan *p);

/* Count of items that change something (create, update, replace, delete, read). */
size_t mle_plan_changes(const mle_plan *p);

/* Human diff to f. Secrets show as (sensitive), unknowns as (known after apply). */
void mle_plan_print(mle_engine *e, const mle_plan *p, FILE *f);
/* JSON per schemas/plan.schema.json, redacted. New reference. */
json_t *mle_plan_json(mle_engine *e, const mle_plan *p);

/* Saved plans: everything apply needs, with secret values sealed under the state key. */
int mle_plan_save(mle_engine *e, const mle_plan *p, const char *path, mle_error **err);
/* Load a saved plan: refuses another format, another state (lineage) or a state that moved
 * since (serial). Without an evaluated stack, the engine gets the driver options saved in
 * the plan. */
int mle_plan_load(mle_engine *e, const char *path, mle_plan **out, mle_error **err);
/* The state file a saved plan was made against (caller frees). */
int mle_plan_peek_state(const char *path, char **state_path, mle_error **err);

/* Addresses referenced anywhere in v, added to the set `deps` (a JSON object). */
void mle_collect_refs(const json_t *v, json_t *deps);

/* Check the evaluated stack's graph: references to undeclared resources and cycles. */
int mle_stack_check(mle_engine *e, mle_error **err);

const char *mle_action_name(mle_action a);

/* Resolve markers in v (borrowed) against the engine's known attributes. Returns a new
 * reference; *unknown is set when a marker could not be resolved (it stays in place);
 * *sensitive when any resolved value was secret. */
json_t *mle_resolve(mle_engine *e, const json_t *v, int *unknown, int *sensitive);

#endif
