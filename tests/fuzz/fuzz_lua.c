/*
 * fuzz_lua.c — the stack loader: mle_lua_new + mle_lua_eval on arbitrary text as stack.lua,
 * under small limits (2 million instructions, 32 MiB), with the declarations validated
 * against the sim and local drivers' schemas as the engine validates them; then every hook the
 * stack registered is run with a context like the one apply gives.
 *
 * The stack's folder holds a few files the seed stacks use (values.yaml, policy.json, a
 * module lib/util.lua), so mlengine.file, yamldecode, jsondecode and require are reachable.
 *
 * Checks beyond "no crash, no leak": the error convention, the limits end the run with an
 * error (never a hang: libFuzzer's -timeout catches one), and the evaluated stack is JSON that
 * encodes, with the shapes lua_rt.h documents.
 */
#include "fuzz_common.h"
#include "loader.h"
#include "lua_rt.h"
#include "schema.h"

#ifndef FUZZ_SCRIPTS_DIR
#error "FUZZ_SCRIPTS_DIR: the scripts library (tests/fuzz/meson.build sets it)"
#endif

#define FUZZ_INSTR_LIMIT 2000000u
#define FUZZ_MEM_LIMIT ((size_t)32 * 1024 * 1024)

static mle_registry *reg;
static json_t *vars, *hook_ctx;
static char stack_path[PATH_MAX], report_dir[PATH_MAX];

static const char values_yaml[] =
    "replicas: 2\n"
    "image: {repository: ghcr.io/mlflow/mlflow, tag: v2.9.2}\n"
    "env: &env [{name: MLFLOW_S3_ENDPOINT_URL, value: null}]\n"
    "extraEnv: *env\n";
static const char policy_json[] =
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
    "\"Action\":[\"s3:GetObject\"],\"Resource\":\"*\"}]}";
static const char util_lua[] =
    "local mle = require(\"mlengine\")\n"
    "local M = {}\n"
    "function M.bucket(name, tags)\n"
    "  return mle.resource(\"sim_resource\", name, { name = name, tags = tags })\n"
    "end\n"
    "return M\n";

/* As the engine validates a declaration (engine.c validate_decl). */
static int validate(void *ud, const char *type, int data_source, const json_t *config,
                    mle_error **err)
{
    (void)ud;
    const mle_resource_type *rt = mle_registry_type(reg, type, NULL);
    if (!rt)
        return mle_fail(err, MLE_E_INVALID, "unknown resource type \"%s\"", type);
    int is_data = (rt->flags & MLE_RT_DATA_SOURCE) != 0;
    if (is_data != (data_source != 0))
        return mle_fail(err, MLE_E_INVALID, "%s: wrong kind of declaration", type);
    return mle_schema_validate(rt, config, err);
}

static void write_text(const char *name, const char *text)
{
    char p[PATH_MAX];
    fz_path(p, sizeof p, name);
    fz_write(p, (const uint8_t *)text, strlen(text));
}

static void check_stack(const mle_stack *s)
{
    if (!json_is_array(s->resources) || !json_is_object(s->outputs) ||
        !json_is_object(s->drivers) || !json_is_object(s->variables) ||
        !json_is_array(s->hooks)) {
        fz_fail("an evaluated stack without the documented shape");
    }
    size_t i;
    json_t *r;
    json_array_foreach(s->resources, i, r) {
        if (!json_is_string(json_object_get(r, "address")) ||
            !json_is_string(json_object_get(r, "type")) ||
            !json_is_object(json_object_get(r, "config"))) {
            fz_fail("a declared resource without address, type or config");
        }
        (void)mle_marker_contains(json_object_get(r, "config"));
    }
    fz_check_dumps("resources", s->resources);
    fz_check_dumps("outputs", s->outputs);
    fz_check_dumps("drivers", s->drivers);
    fz_check_dumps("variables", s->variables);
    fz_check_dumps("hooks", s->hooks);
}

static void run_hooks(mle_lua *rt, const mle_stack *s)
{
    size_t i;
    json_t *h;
    json_array_foreach(s->hooks, i, h) {
        const char *name = json_string_value(h);
        if (!name)
            continue;
        mle_error *err = NULL;
        int rc = mle_lua_run_hook(rt, name, hook_ctx, report_dir, &err);
        fz_check_result("mle_lua_run_hook", rc != 0, err);
        mle_error_free(err);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsetenv("MLENGINE_DRIVER_PATH");
    mle_error *err = NULL;
    if (mle_registry_load(NULL, 0, &reg, &err) != 0) {
        char *m = mle_error_format(err);
        fz_fail("cannot load the drivers: %s", m);
    }
    char dir[PATH_MAX];
    fz_path(dir, sizeof dir, "stack");
    mkdir(dir, 0700);
    fz_path(dir, sizeof dir, "stack/lib");
    mkdir(dir, 0700);
    write_text("stack/values.yaml", values_yaml);
    write_text("stack/policy.json", policy_json);
    write_text("stack/lib/util.lua", util_lua);
    fz_path(stack_path, sizeof stack_path, "stack/stack.lua");
    fz_path(report_dir, sizeof report_dir, "reports");
    vars = json_pack("{s:s,s:i,s:[s,s],s:{s:s},s:s,s:s}", "environment", "dev", "node_count",
                     3, "zones", "a", "b", "tags", "team", "ml", "db_password", "hunter2",
                     "region", "eu-west-1");
    hook_ctx = json_pack("{s:s,s:s,s:{s:i,s:i,s:i,s:i},s:{s:s,s:s,s:s,s:f}}", "command",
                         "apply", "workspace", "prod", "summary", "create", 2, "update", 1,
                         "replace", 0, "delete", 1, "resource", "address",
                         "sim_resource.network", "action", "create", "result", "ok",
                         "duration_s", 0.25);
    if (!vars || !hook_ctx)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(stack_path, data, size);
    mle_lua_opts o = {
        .stack_path = stack_path,
        .scripts_dir = FUZZ_SCRIPTS_DIR,
        .vars = vars,
        .instr_limit = FUZZ_INSTR_LIMIT,
        .mem_limit = FUZZ_MEM_LIMIT,
        .validate = validate,
    };
    mle_error *err = NULL;
    mle_lua *rt = mle_lua_new(&o, &err);
    fz_check_result("mle_lua_new", rt == NULL, err);
    mle_error_free(err);
    if (!rt)
        abort(); /* a fixed setup: it cannot depend on the input */
    mle_stack *s = NULL;
    err = NULL;
    int rc = mle_lua_eval(rt, &s, &err);
    fz_check_result("mle_lua_eval", rc != 0, err);
    mle_error_free(err);
    if (rc == 0) {
        check_stack(s);
        run_hooks(rt, s);
    }
    mle_stack_free(s);
    mle_lua_free(rt);
    fz_rm_tree(report_dir);
    return 0;
}
