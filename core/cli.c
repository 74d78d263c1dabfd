/*
 * cli.c — owns the command line: option parsing shared by every command, variable
 * collection (--var, MLENGINE_VAR_*, --var-file), the commands themselves and their help.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "apply.h"
#include "engine.h"
#include "plan.h"
#include "render.h"
#include "schema.h"
#include "secrets.h"
#include "vars.h"

#define MAX_LIST 64

typedef struct cli {
    const char *command;
    const char *args[8]; /* positional arguments */
    int nargs;
    const char *vars[MAX_LIST];
    int nvars;
    const char *var_files[MAX_LIST];
    int nvar_files;
    const char *targets[MAX_LIST];
    int ntargets;
    const char *driver_dirs[MAX_LIST];
    int ndriver_dirs;
    const char *state_path, *out_path, *hooks_file;
    int parallelism;
    int auto_approve, json, detailed, help, json_events, verbose, quiet;
    int refresh; /* -1 default, 0 off, 1 on */
    int destroy_flag; /* plan --destroy */
    volatile sig_atomic_t *interrupted;
} cli;

/* ---------------------------------------------------------------- help */

static const char *usage_main =
    "Usage: mlengine <command> [options]\n"
    "\n"
    "Infrastructure as code: a Lua stack in, clouds provisioned, state kept.\n"
    "\n"
    "Commands:\n"
    "  plan [STACK]            Show what apply would change\n"
    "  apply [STACK|PLANFILE]  Make the infrastructure match the stack (or a saved plan)\n"
    "  destroy [STACK]         Delete everything this stack's state holds\n"
    "  validate [STACK]        Check the stack without touching state or clouds\n"
    "  render [STACK] --out DIR  Write every manifest and merged values file for review\n"
    "  import STACK ADDR ID    Adopt an existing resource into state\n"
    "  drivers [schema NAME]   List drivers and their types, or print a driver's JSON Schema\n"
    "  state SUBCOMMAND        list | show ADDR | rm ADDR | mv FROM TO | pull | unlock ID\n"
    "  version                 Print the version and ABI\n"
    "\n"
    "STACK defaults to ./stack.lua. Run `mlengine <command> --help` for a command's options.\n"
    "\n"
    "Exit codes: 0 success, 1 error, 2 changes present (plan --detailed-exitcode),\n"
    "130 interrupted.\n";

static const char *opts_common =
    "  --var NAME=VALUE        Set a variable (repeatable); also MLENGINE_VAR_NAME\n"
    "  --var-file FILE         Variables from a JSON or YAML file (repeatable)\n"
    "  --state PATH            State file (default: <stack dir>/.mlengine/state.db)\n"
    "  --driver-path DIR       Look for drivers here first (repeatable); also\n"
    "                          MLENGINE_DRIVER_PATH\n"
    "  -v, --verbose           Debug logging; -q, --quiet: errors only\n";

typedef struct help_entry {
    const char *name, *text;
} help_entry;

static const help_entry helps[] = {
    {"plan", "Usage: mlengine plan [STACK] [options]\n\n"
             "Compare the stack with the state and show what apply would do.\n\n"
             "Options:\n"
             "  --refresh               Read every resource through its driver first and\n"
             "                          show drift (changed outside mlengine)\n"
             "  --detailed-exitcode     Exit 0 when nothing changes, 2 when something does\n"
             "  --json                  Print the plan as JSON (schemas/plan.schema.json)\n"
             "  -out FILE               Save the plan for `mlengine apply FILE`\n"
             "  -target ADDR            Only this resource and what it needs (repeatable)\n"
             "  --destroy               Plan to destroy\n"},
    {"apply", "Usage: mlengine apply [STACK|PLANFILE] [options]\n\n"
              "Plan, confirm, and make the changes. Interrupted operations of an earlier run\n"
              "are finished first. Without a terminal, --auto-approve is required.\n\n"
              "Options:\n"
              "  --auto-approve          Do not ask for confirmation\n"
              "  --parallelism N         Operations at once (default 256)\n"
              "  --refresh=false         Skip reading resources before planning\n"
              "  -target ADDR            Only this resource and what it needs (repeatable)\n"
              "  --json-events           Progress as one JSON object per line\n"
              "  --hooks FILE            Load extra hooks (Lua) into the stack's sandbox\n"},
    {"destroy", "Usage: mlengine destroy [STACK] [options]\n\n"
                "Delete every resource in this stack's state, dependents first.\n\n"
                "Options:\n"
                "  --auto-approve          Do not ask for confirmation\n"
                "  --parallelism N         Operations at once (default 256)\n"
                "  -target ADDR            Only this resource and what depends on it\n"},
    {"validate", "Usage: mlengine validate [STACK] [options]\n\n"
                 "Evaluate the stack, check every resource against its driver's schema and\n"
                 "the graph for cycles. Touches no state and no cloud.\n"},
    {"render", "Usage: mlengine render [STACK] --out DIR [options]\n\n"
               "Write every document the stack would apply (Kubernetes manifests, merged Helm\n"
               "values), one file per object under DIR/<address>/, for review in a pull\n"
               "request. Values known only after apply show as \"(known after apply)\".\n"},
    {"import", "Usage: mlengine import STACK ADDR ID [options]\n\n"
               "Read the resource with provider ID through its driver and record it in\n"
               "state under ADDR (which the stack must declare).\n"},
    {"drivers", "Usage: mlengine drivers [schema NAME] [--driver-path DIR]\n\n"
                "List the drivers found, their versions, clouds and resource types; or print\n"
                "the JSON Schema of one driver's types.\n"},
    {"state", "Usage: mlengine state list|show ADDR|rm ADDR|mv FROM TO|pull|unlock ID "
              "[--state PATH] [STACK]\n\n"
              "  list          Addresses in state\n"
              "  show ADDR     One resource (secrets redacted)\n"
              "  rm ADDR       Forget a resource (it keeps existing in the cloud)\n"
              "  mv FROM TO    Rename an address\n"
              "  pull          The whole state as JSON (schemas/state.schema.json)\n"
              "  unlock ID     Remove a lock left by a process that is gone\n"},
    {"version", "Usage: mlengine version\n"},
};

static int print_help(const char *command)
{
    for (size_t i = 0; command && i < sizeof(helps) / sizeof(helps[0]); i++)
        if (strcmp(helps[i].name, command) == 0) {
            printf("%s\nCommon options:\n%s", helps[i].text, opts_common);
            return 0;
        }
    fputs(usage_main, stdout);
    return 0;
}

/* ---------------------------------------------------------------- parsing */

static int push(const char **list, int *n, const char *v, const char *what)
{
    if (*n >= MAX_LIST) {
        fprintf(stderr, "error: too many %s options (at most %d)\n", what, MAX_LIST);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

/* Options that take a value: "--name VALUE" or "--name=VALUE"; "-target" and "-out" keep
 * Terraform's single-dash spelling too. */
static const char *opt_value(const char *arg, const char *name, int argc, char **argv, int *i)
{
    const char *a = arg[1] == '-' ? arg + 2 : arg + 1;
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "error: %s needs a value\n", arg);
        return "";
    }
    return argv[++*i];
}

static int flag(const char *arg, const char *name)
{
    const char *a = arg[1] == '-' ? arg + 2 : arg + 1;
    return strcmp(a, name) == 0;
}

static int parse_bool_opt(const char *arg, const char *name, int *out)
{
    const char *a = arg[1] == '-' ? arg + 2 : arg + 1;
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == 0) {
        *out = 1;
        return 1;
    }
    if (a[n] != '=')
        return 0;
    *out = strcmp(a + n + 1, "false") != 0 && strcmp(a + n + 1, "0") != 0;
    return 1;
}

static int parse_option(cli *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    if ((v = opt_value(a, "var-file", argc, argv, i)))
        return *v ? push(c->var_files, &c->nvar_files, v, "--var-file") : -1;
    if ((v = opt_value(a, "var", argc, argv, i)))
        return *v ? push(c->vars, &c->nvars, v, "--var") : -1;
    if ((v = opt_value(a, "target", argc, argv, i)))
        return *v ? push(c->targets, &c->ntargets, v, "-target") : -1;
    if ((v = opt_value(a, "driver-path", argc, argv, i)))
        return *v ? push(c->driver_dirs, &c->ndriver_dirs, v, "--driver-path") : -1;
    if ((v = opt_value(a, "state", argc, argv, i)))
        return *v ? (c->state_path = v, 0) : -1;
    if ((v = opt_value(a, "out", argc, argv, i)))
        return *v ? (c->out_path = v, 0) : -1;
    if ((v = opt_value(a, "hooks", argc, argv, i)))
        return *v ? (c->hooks_file = v, 0) : -1;
    if ((v = opt_value(a, "parallelism", argc, argv, i))) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > 1024) {
            fprintf(stderr, "error: --parallelism must be a number from 1 to 1024, not \"%s\"\n",
                    v);
            return -1;
        }
        c->parallelism = (int)n;
        return 0;
    }
    if (parse_bool_opt(a, "refresh", &c->refresh))
        return 0;
    if (flag(a, "auto-approve"))
        return c->auto_approve = 1, 0;
    if (flag(a, "json"))
        return c->json = 1, 0;
    if (flag(a, "json-events"))
        return c->json_events = 1, 0;
    if (flag(a, "detailed-exitcode"))
        return c->detailed = 1, 0;
    if (flag(a, "destroy"))
        return c->destroy_flag = 1, 0;
    if (flag(a, "help") || flag(a, "h"))
        return c->help = 1, 0;
    if (flag(a, "verbose") || flag(a, "v"))
        return c->verbose = 1, 0;
    if (flag(a, "quiet") || flag(a, "q"))
        return c->quiet = 1, 0;
    fprintf(stderr, "error: unknown option %s (see `mlengine %s --help`)\n", a,
            c->command ? c->command : "");
    return -1;
}

static int parse(cli *c, int argc, char **argv)
{
    c->refresh = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] != 0) {
            if (parse_option(c, argc, argv, &i) != 0)
                return -1;
        } else if (!c->command) {
            c->command = a;
        } else if (c->nargs < 8) {
            c->args[c->nargs++] = a;
        } else {
            fprintf(stderr, "error: too many arguments\n");
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- variables */

/* Terraform's precedence: environment, then files in order, then --var in order. */
static json_t *collect_vars(const cli *c, mle_error **err)
{
    return mle_vars_collect(c->var_files, (size_t)c->nvar_files, c->vars, (size_t)c->nvars,
                            err);
}

/* ---------------------------------------------------------------- shared helpers */

static int report(mle_engine *e, mle_error *err)
{
    char *msg = mle_error_format(err);
    char *red = e ? mle_redact(e->log, msg) : strdup(msg);
    fprintf(stderr, "error: %s\n", red);
    free(red);
    free(msg);
    mle_error_free(err);
    return 1;
}

static const char *stack_arg(const cli *c)
{
    return c->nargs > 0 ? c->args[0] : "stack.lua";
}

static mle_progress_mode progress_mode(const cli *c)
{
    if (c->json_events)
        return MLE_PROGRESS_JSON;
    return isatty(STDERR_FILENO) ? MLE_PROGRESS_TTY : MLE_PROGRESS_LINES;
}

static int open_engine(const cli *c, const char *stack, int state, const char *lock,
                       mle_engine **e, mle_error **err)
{
    json_t *vars = collect_vars(c, err);
    if (!vars)
        return -1;
    mle_engine_opts o = {
        .stack_path = stack,
        .state_path = c->state_path,
        .driver_dirs = c->driver_dirs,
        .n_driver_dirs = (size_t)c->ndriver_dirs,
        .vars = vars,
        .hooks_file = c->hooks_file,
        .parallelism = c->parallelism,
        .log_level = c->verbose ? MLE_LOG_DEBUG : c->quiet ? MLE_LOG_ERROR : MLE_LOG_INFO,
        .progress = progress_mode(c),
        .open_state = state,
        .create_state = lock != NULL,
        .lock_command = lock,
        .interrupted = c->interrupted,
    };
    int rc = mle_engine_open(&o, e, err);
    json_decref(vars);
    return rc;
}

static json_t *targets_json(const cli *c)
{
    if (c->ntargets == 0)
        return NULL;
    json_t *t = json_array();
    for (int i = 0; i < c->ntargets; i++)
        json_array_append_new(t, json_string(c->targets[i]));
    return t;
}

static int confirm(const cli *c, const char *what)
{
    if (c->auto_approve)
        return 1;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "error: %s needs confirmation, and there is no terminal to ask on: "
                        "pass --auto-approve\n",
                what);
        return 0;
    }
    printf("\nDo you want to %s? Only 'yes' will be accepted: ", what);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 0;
    line[strcspn(line, "\r\n")] = 0;
    if (strcmp(line, "yes") != 0) {
        printf("Cancelled: nothing was changed.\n");
        return 0;
    }
    return 1;
}

static void print_outputs(mle_engine *e)
{
    mle_error *err = NULL;
    json_t *raw = mle_state_outputs(e->state, &err);
    if (!raw) {
        mle_error_free(err);
        return;
    }
    if (json_object_size(raw) > 0)
        printf("\nOutputs:\n");
    const char *k;
    json_t *o;
    json_object_foreach(raw, k, o) {
        if (json_is_true(json_object_get(o, "sensitive"))) {
            printf("  %s = (sensitive)\n", k);
            continue;
        }
        char *v = json_dumps(json_object_get(o, "value"), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("  %s = %s\n", k, v ? v : "null");
        free(v);
    }
    json_decref(raw);
}

static void print_summary(const mle_apply_summary *s, int destroy)
{
    if (destroy)
        printf("\nDestroy %s: %zu deleted", s->failed ? "incomplete" : "complete", s->deleted);
    else
        printf("\nApply %s: %zu created, %zu updated, %zu replaced, %zu deleted",
               s->failed || s->interrupted ? "incomplete" : "complete", s->created, s->updated,
               s->replaced, s->deleted);
    if (s->failed)
        printf(", %zu failed", s->failed);
    if (s->skipped)
        printf(", %zu skipped (a dependency failed)", s->skipped);
    if (s->interrupted)
        printf(", %zu not started (interrupted)", s->interrupted);
    printf(".\n");
    if (!s->failed)
        return;
    printf("\nFailed:\n");
    size_t i;
    json_t *f;
    json_array_foreach(s->failures, i, f)
        printf("  %s (%s): %s\n", json_string_value(json_object_get(f, "address")),
               json_string_value(json_object_get(f, "action")),
               json_string_value(json_object_get(f, "error")));
}

/* ---------------------------------------------------------------- commands */

static int cmd_validate(cli *c)
{
    mle_engine *e = NULL;
    mle_error *err = NULL;
    int rc = open_engine(c, stack_arg(c), 0, NULL, &e, &err);
    if (rc == 0)
        rc = mle_stack_check(e, &err);
    if (rc == 0) {
        printf("The stack is valid: %zu resources, %zu outputs.\n",
               json_array_size(e->stack->resources), json_object_size(e->stack->outputs));
    }
    if (rc != 0)
        rc = report(e, err);
    mle_engine_close(e);
    return rc;
}

static int run_recovery(mle_engine *e)
{
    mle_apply_summary sum = {0};
    mle_error *err = NULL;
    int rc = mle_recover(e, &sum, &err);
    if (rc < 0)
        rc = report(e, err);
    else if (rc == 1)
        print_summary(&sum, 0);
    mle_apply_summary_clear(&sum);
    return rc;
}

static json_t *run_ctx(mle_engine *e, const char *command)
{
    return json_pack("{s:s,s:s?,s:s,s:I}", "command", command, "stack", e->stack_path,
                     "lineage", mle_state_lineage(e->state), "serial",
                     (json_int_t)mle_state_serial(e->state));
}

/* A pre_* hook that vetoes or fails stops the command before anything changes. */
static int pre_hook(mle_engine *e, const char *name, json_t *ctx)
{
    mle_error *err = NULL;
    if (mle_engine_hook(e, name, ctx, &err) == 0)
        return 0;
    return report(e, err);
}

/* A post_* hook failure is reported and makes the exit code non-zero. */
static int post_hook(mle_engine *e, const char *name, json_t *ctx, int rc)
{
    mle_error *err = NULL;
    if (mle_engine_hook(e, name, ctx, &err) == 0)
        return rc;
    report(e, err);
    return rc ? rc : 1;
}

/* The plan is rendered only for a hook that is registered: for 10,000 resources rendering
 * it costs more than the rest of a no-op plan's diff (tests/bench/run). */
static json_t *plan_ctx_json(mle_engine *e, const char *hook, const char *command,
                             const mle_plan *p)
{
    json_t *ctx = run_ctx(e, command);
    if (mle_engine_has_hook(e, hook))
        json_object_set_new(ctx, "plan", mle_plan_json(e, p));
    return ctx;
}

static int do_plan(cli *c, int destroy, int refresh_default, mle_engine *e, mle_plan **out)
{
    mle_error *err = NULL;
    if (pre_hook(e, "pre_plan", run_ctx(e, destroy ? "destroy" : "plan")) != 0)
        return 1;
    json_t *targets = targets_json(c);
    mle_plan_opts po = {
        .destroy = destroy,
        .refresh = c->refresh < 0 ? refresh_default : c->refresh,
        .targets = targets,
    };
    int rc = mle_plan_build(e, &po, out, &err);
    json_decref(targets);
    if (rc != 0)
        return report(e, err);
    return 0;
}

static int cmd_plan(cli *c, int destroy)
{
    mle_engine *e = NULL;
    mle_error *err = NULL;
    if (open_engine(c, stack_arg(c), 1, "plan", &e, &err) != 0) {
        int rc = report(e, err);
        mle_engine_close(e);
        return rc;
    }
    mle_plan *p = NULL;
    int rc = do_plan(c, destroy, 0, e, &p);
    if (rc == 0 && c->json) {
        json_t *j = mle_plan_json(e, p);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else if (rc == 0) {
        mle_plan_print(e, p, stdout);
    }
    if (rc == 0)
        rc = post_hook(e, "post_plan", plan_ctx_json(e, "post_plan", "plan", p), rc);
    if (rc == 0 && c->out_path) {
        if (mle_plan_save(e, p, c->out_path, &err) != 0)
            rc = report(e, err);
        else if (!c->json)
            printf("\nSaved the plan to %s: apply it with `mlengine apply %s`.\n", c->out_path,
                   c->out_path);
    }
    if (rc == 0 && c->detailed && mle_plan_changes(p) > 0)
        rc = 2;
    mle_plan_free(p);
    mle_engine_close(e);
    return rc;
}

static int is_plan_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char head[32] = {0};
    size_t n = fread(head, 1, sizeof(head) - 1, f);
    fclose(f);
    return n > 0 && strstr(head, "mlengine-plan") != NULL;
}

static int execute(mle_engine *e, mle_plan *p, int destroy)
{
    mle_apply_summary sum = {0};
    mle_error *err = NULL;
    int rc = mle_apply(e, p, &sum, &err);
    if (rc < 0) {
        rc = report(e, err);
    } else {
        json_t *ctx = run_ctx(e, destroy ? "destroy" : "apply");
        json_object_set_new(ctx, "summary",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:O}", "created",
                                      (json_int_t)sum.created, "updated",
                                      (json_int_t)sum.updated, "replaced",
                                      (json_int_t)sum.replaced, "deleted",
                                      (json_int_t)sum.deleted, "failed", (json_int_t)sum.failed,
                                      "skipped", (json_int_t)sum.skipped, "failures",
                                      sum.failures));
        json_object_set_new(ctx, "exit_code", json_integer(rc));
        rc = post_hook(e, "post_apply", ctx, rc);
        print_summary(&sum, destroy);
        if (!destroy)
            print_outputs(e);
        if (rc == 130)
            fprintf(stderr, "interrupted: state is saved; run the same command again to "
                            "finish what was started\n");
    }
    mle_apply_summary_clear(&sum);
    return rc;
}

static int cmd_apply(cli *c, int destroy)
{
    const char *arg = stack_arg(c);
    int saved = !destroy && c->nargs > 0 && is_plan_file(arg);
    mle_engine *e = NULL;
    mle_error *err = NULL;
    mle_plan *p = NULL;
    char *plan_state = NULL;
    int rc = 0;
    if (saved) {
        if (mle_plan_peek_state(arg, &plan_state, &err) != 0)
            return report(NULL, err);
        if (!c->state_path)
            c->state_path = plan_state;
    }
    if (open_engine(c, saved ? NULL : arg, 1, destroy ? "destroy" : "apply", &e, &err) != 0) {
        rc = report(e, err);
        goto out;
    }
    rc = run_recovery(e);
    if (rc != 0)
        goto out;
    if (saved) {
        if (mle_plan_load(e, arg, &p, &err) != 0) {
            rc = report(e, err);
            goto out;
        }
    } else if ((rc = do_plan(c, destroy, !destroy, e, &p)) != 0) {
        goto out;
    }
    mle_plan_print(e, p, stdout);
    const char *command = destroy ? "destroy" : "apply";
    if (!saved &&
        (rc = post_hook(e, "post_plan", plan_ctx_json(e, "post_plan", command, p), 0)) != 0)
        goto out;
    /* A saved plan was reviewed when it was made: applying it is the approval. */
    if (mle_plan_changes(p) > 0 && !saved &&
        !confirm(c, destroy ? "destroy these resources" : "perform these actions")) {
        rc = 1;
        goto out;
    }
    if ((rc = pre_hook(e, "pre_apply", plan_ctx_json(e, "pre_apply", command, p))) != 0)
        goto out;
    rc = execute(e, p, destroy);
out:
    free(plan_state);
    mle_plan_free(p);
    mle_engine_close(e);
    return rc;
}

static int cmd_render(cli *c)
{
    if (!c->out_path) {
        fprintf(stderr, "error: render needs --out DIR (where to write the documents)\n");
        return 1;
    }
    mle_engine *e = NULL;
    mle_error *err = NULL;
    mle_plan *p = NULL;
    size_t n = 0;
    int rc = open_engine(c, stack_arg(c), 1, "render", &e, &err);
    if (rc == 0) {
        json_t *targets = targets_json(c);
        mle_plan_opts po = {.targets = targets};
        rc = mle_plan_build(e, &po, &p, &err);
        json_decref(targets);
    }
    if (rc == 0)
        rc = mle_render(e, p, c->out_path, &n, &err);
    if (rc != 0)
        rc = report(e, err);
    else
        printf("Rendered %zu file(s) into %s.\n", n, c->out_path);
    mle_plan_free(p);
    mle_engine_close(e);
    return rc;
}

static int cmd_import(cli *c)
{
    if (c->nargs != 3) {
        fprintf(stderr, "error: usage: mlengine import STACK ADDR ID\n");
        return 1;
    }
    mle_engine *e = NULL;
    mle_error *err = NULL;
    int rc = open_engine(c, c->args[0], 1, "import", &e, &err);
    if (rc == 0)
        rc = mle_import(e, c->args[1], c->args[2], &err);
    if (rc != 0)
        rc = report(e, err);
    else
        printf("Imported %s (ID %s) into state.\n", c->args[1], c->args[2]);
    mle_engine_close(e);
    return rc;
}

static int cmd_version(void)
{
    printf("mlengine %s (driver ABI %d.%d)\n", MLE_VERSION, MLE_ABI_MAJOR, MLE_ABI_MINOR);
    return 0;
}

static void print_driver(mle_loaded_driver *d)
{
    printf("%s %s  clouds:", d->name, d->desc->version ? d->desc->version : "?");
    for (const char *const *cl = d->desc->clouds; cl && *cl; cl++)
        printf(" %s", *cl);
    printf("  (%s)\n", d->path);
    if (d->desc->description)
        printf("  %s\n", d->desc->description);
    printf("  types:");
    for (const mle_resource_type *const *t = d->desc->types; *t; t++)
        printf(" %s%s", (*t)->name, ((*t)->flags & MLE_RT_DATA_SOURCE) ? " (data)" : "");
    printf("\n");
}

static int cmd_drivers(cli *c)
{
    mle_engine *e = NULL;
    mle_error *err = NULL;
    int rc = open_engine(c, NULL, 0, NULL, &e, &err);
    if (rc != 0) {
        rc = report(e, err);
        mle_engine_close(e);
        return rc;
    }
    if (c->nargs >= 1 && strcmp(c->args[0], "schema") == 0) {
        mle_loaded_driver *d = c->nargs >= 2 ? mle_registry_driver(e->reg, c->args[1]) : NULL;
        if (!d) {
            fprintf(stderr, "error: no driver named \"%s\" (see `mlengine drivers`)\n",
                    c->nargs >= 2 ? c->args[1] : "");
            rc = 1;
        } else {
            json_t *s = mle_schema_export(d->desc);
            char *text = json_dumps(s, JSON_INDENT(2) | JSON_SORT_KEYS);
            printf("%s\n", text);
            free(text);
            json_decref(s);
        }
    } else if (c->nargs > 0) {
        fprintf(stderr, "error: unknown drivers subcommand \"%s\"\n", c->args[0]);
        rc = 1;
    } else {
        for (size_t i = 0; i < mle_registry_count(e->reg); i++)
            print_driver(mle_registry_at(e->reg, i));
        if (mle_registry_count(e->reg) == 0)
            printf("No drivers found (search: --driver-path, MLENGINE_DRIVER_PATH, %s, %s).\n",
                   MLE_BUILD_DRIVER_DIR, MLE_INSTALL_DRIVER_DIR);
    }
    mle_engine_close(e);
    return rc;
}

/* `state` subcommands take the stack as an optional trailing argument (for the default
 * state path) or --state. */
static const char *state_stack(const cli *c, int used)
{
    if (c->state_path)
        return NULL;
    return c->nargs > used ? c->args[used] : "stack.lua";
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", s);
    free(s);
}

static int state_show(mle_engine *e, const char *addr, mle_error **err)
{
    mle_state_resource r;
    int found = mle_state_get(e->state, addr, &r, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return mle_fail(err, MLE_E_NOT_FOUND, "%s is not in state", addr);
    const mle_resource_type *rt = mle_registry_type(e->reg, r.type, NULL);
    json_t *attrs = rt ? mle_schema_redact(rt, r.attrs) : json_deep_copy(r.attrs);
    /* Values sealed because of their origin stay sealed: show them as secrets too. */
    const char *k;
    json_t *v;
    json_object_foreach(attrs, k, v) if (mle_secrets_is_sealed(v))
        json_object_set_new(attrs, k, json_string("(sensitive)"));
    json_t *j = json_pack("{s:s,s:s,s:s?,s:o}", "address", r.address, "type", r.type, "id",
                          r.id, "attributes", attrs ? attrs : json_null());
    print_json(j);
    json_decref(j);
    mle_state_resource_clear(&r);
    return 0;
}

static int state_sub(mle_engine *e, cli *c, const char *sub, mle_error **err)
{
    if (strcmp(sub, "list") == 0) {
        mle_state_resource *rs = NULL;
        size_t n = 0;
        if (mle_state_list(e->state, &rs, &n, err) != 0)
            return -1;
        for (size_t i = 0; i < n; i++)
            printf("%s%s\n", rs[i].address,
                   rs[i].status == MLE_RS_PENDING_CREATE ? " (create interrupted)"
                   : rs[i].status == MLE_RS_IN_PROGRESS  ? " (operation in progress)"
                                                         : "");
        mle_state_resources_free(rs, n);
        return 0;
    }
    if (strcmp(sub, "pull") == 0) {
        json_t *j = mle_state_export(e->state, err);
        if (!j)
            return -1;
        print_json(j);
        json_decref(j);
        return 0;
    }
    if (strcmp(sub, "show") == 0)
        return state_show(e, c->args[1], err);
    if (strcmp(sub, "rm") == 0) {
        mle_state_resource r;
        int found = mle_state_get(e->state, c->args[1], &r, err);
        if (found <= 0)
            return found < 0 ? -1
                             : mle_fail(err, MLE_E_NOT_FOUND, "%s is not in state", c->args[1]);
        mle_state_resource_clear(&r);
        if (mle_state_delete(e->state, c->args[1], err) != 0)
            return -1;
        printf("Removed %s from state (the resource itself was not touched).\n", c->args[1]);
        return 0;
    }
    if (strcmp(sub, "mv") == 0) {
        if (mle_state_move(e->state, c->args[1], c->args[2], err) != 0)
            return -1;
        printf("Moved %s to %s.\n", c->args[1], c->args[2]);
        return 0;
    }
    if (strcmp(sub, "unlock") == 0) {
        if (mle_state_force_unlock(e->state, c->args[1], err) != 0)
            return -1;
        printf("Lock %s removed.\n", c->args[1]);
        return 0;
    }
    return mle_fail(err, MLE_E_INVALID, "unknown state subcommand \"%s\" (list, show, rm, mv, "
                    "pull, unlock)", sub);
}

static int cmd_state(cli *c)
{
    const char *sub = c->nargs > 0 ? c->args[0] : "";
    int want = !strcmp(sub, "show") || !strcmp(sub, "rm") || !strcmp(sub, "unlock") ? 2
               : !strcmp(sub, "mv")                                                ? 3
                                                                                   : 1;
    if (c->nargs < want) {
        fprintf(stderr, "error: missing argument; see `mlengine state --help`\n");
        return 1;
    }
    int mutates = !strcmp(sub, "rm") || !strcmp(sub, "mv");
    mle_engine *e = NULL;
    mle_error *err = NULL;
    mle_engine_opts o = {0};
    json_t *vars = json_object();
    const char *stack = state_stack(c, want);
    char *state_path = NULL;
    if (!c->state_path) {
        char *dir = NULL;
        char buf[4096];
        if (!realpath(stack, buf)) {
            fprintf(stderr, "error: stack file %s not found: give it, or --state PATH\n",
                    stack);
            json_decref(vars);
            return 1;
        }
        dir = strdup(buf);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        if (asprintf(&state_path, "%s/.mlengine/state.db", dir) < 0)
            abort();
        free(dir);
    }
    o.state_path = c->state_path ? c->state_path : state_path;
    o.driver_dirs = c->driver_dirs;
    o.n_driver_dirs = (size_t)c->ndriver_dirs;
    o.vars = vars;
    o.log_level = c->verbose ? MLE_LOG_DEBUG : MLE_LOG_INFO;
    o.open_state = 1;
    o.lock_command = mutates ? "state" : NULL;
    int rc = mle_engine_open(&o, &e, &err);
    if (rc == 0)
        rc = state_sub(e, c, sub, &err);
    if (rc != 0)
        rc = report(e, err);
    mle_engine_close(e);
    json_decref(vars);
    free(state_path);
    return rc;
}

int mle_cli_main(int argc, char **argv, volatile sig_atomic_t *interrupted)
{
    cli c;
    memset(&c, 0, sizeof(c));
    c.interrupted = interrupted;
    if (parse(&c, argc, argv) != 0)
        return 1;
    if (!c.command || c.help)
        return print_help(c.command), c.command || c.help ? 0 : 1;
    if (!strcmp(c.command, "plan"))
        return cmd_plan(&c, c.destroy_flag);
    if (!strcmp(c.command, "apply"))
        return cmd_apply(&c, 0);
    if (!strcmp(c.command, "destroy"))
        return cmd_apply(&c, 1);
    if (!strcmp(c.command, "validate"))
        return cmd_validate(&c);
    if (!strcmp(c.command, "import"))
        return cmd_import(&c);
    if (!strcmp(c.command, "render"))
        return cmd_render(&c);
    if (!strcmp(c.command, "drivers"))
        return cmd_drivers(&c);
    if (!strcmp(c.command, "state"))
        return cmd_state(&c);
    if (!strcmp(c.command, "version") || !strcmp(c.command, "--version"))
        return cmd_version();
    fprintf(stderr, "error: unknown command \"%s\"\n\n%s", c.command, usage_main);
    return 1;
}
