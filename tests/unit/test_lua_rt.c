/*
 * test_lua_rt.c — unit tests of the Lua runtime (core/lua_rt.c): the JSON of an evaluated
 * stack, markers, variables, the sandbox and its limits, file and data helpers, require,
 * hooks. Every test works in its own temporary folder (it becomes the working directory, so
 * the stack is "stack.lua" as a user would give it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>

#include "lua_rt.h"

typedef struct fx {
    char root[256]; /* the temporary folder; the stack's folder is root/stack */
    char dir[512];
    char old_cwd[PATH_MAX];
    mle_lua *rt;
    mle_stack *stack;
    mle_error *err;
} fx;

/* ---------------------------------------------------------------------------------------
 * Helpers
 * --------------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%.200s/mle-lua-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/stack", f->root);
    assert_int_equal(mkdir(f->dir, 0755), 0);
    assert_non_null(getcwd(f->old_cwd, sizeof f->old_cwd));
    assert_int_equal(chdir(f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    mle_stack_free(f->stack);
    mle_error_free(f->err);
    mle_lua_free(f->rt);
    assert_int_equal(chdir(f->old_cwd), 0);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Write `text` to path (relative to the test folder), creating folders on the way. */
static void write_file(const char *path, const char *text)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    static const size_t cap = 65536;
    char *buf = calloc(1, cap);
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

#define assert_contains(hay, needle)                                                        \
    do {                                                                                    \
        const char *h_ = (hay);                                                             \
        if (!h_ || !strstr(h_, (needle))) {                                                 \
            print_error("expected \"%s\" in:\n%s\n", (needle), h_ ? h_ : "(null)");        \
            fail();                                                                         \
        }                                                                                   \
    } while (0)

static void assert_json(const json_t *got, const char *expected_text)
{
    json_error_t je;
    json_t *want = json_loads(expected_text, JSON_DECODE_ANY, &je);
    if (!want) {
        print_error("bad expected JSON: %s\n", je.text);
        fail();
    }
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("JSON differs\n got:  %s\n want: %s\n", g, w);
        free(g);
        free(w);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

typedef struct run_opts {
    const char *vars;        /* JSON text or NULL */
    const char *scripts_dir; /* or NULL */
    uint64_t instr_limit;
    size_t mem_limit;
    mle_lua_validate_fn validate;
} run_opts;

static mle_lua *new_rt(const run_opts *o)
{
    json_t *vars = o && o->vars ? json_loads(o->vars, 0, NULL) : NULL;
    mle_lua_opts opts = {
        .stack_path = "stack.lua",
        .scripts_dir = o ? o->scripts_dir : NULL,
        .vars = vars,
        .instr_limit = o ? o->instr_limit : 0,
        .mem_limit = o ? o->mem_limit : 0,
        .validate = o ? o->validate : NULL,
    };
    mle_error *err = NULL;
    mle_lua *rt = mle_lua_new(&opts, &err);
    if (!rt)
        print_error("mle_lua_new: %s\n", err ? err->message : "?");
    assert_non_null(rt);
    json_decref(vars);
    return rt;
}

/* Write stack.lua and evaluate it into f->stack / f->err. Returns the eval's result. */
static int eval_with(fx *f, const char *text, const run_opts *o)
{
    write_file("stack.lua", text);
    f->rt = new_rt(o);
    return mle_lua_eval(f->rt, &f->stack, &f->err);
}

static void eval_ok(fx *f, const char *text, const run_opts *o)
{
    if (eval_with(f, text, o) != 0) {
        print_error("eval failed: %s\nhint: %s\n", f->err->message,
                    f->err->hint ? f->err->hint : "");
        fail();
    }
    assert_non_null(f->stack);
}

static const char *eval_fail(fx *f, const char *text, const run_opts *o)
{
    int rc = eval_with(f, text, o);
    assert_int_equal(rc, -1);
    assert_non_null(f->err);
    assert_null(f->stack);
    return f->err->message;
}

static json_t *output_value(fx *f, const char *name)
{
    json_t *o = json_object_get(f->stack->outputs, name);
    if (!o)
        print_error("no output %s\n", name);
    assert_non_null(o);
    return json_object_get(o, "value");
}

/* ---------------------------------------------------------------------------------------
 * The stack as JSON
 * --------------------------------------------------------------------------------------- */

static void test_resources_to_json(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require(\"mlengine\")\n"
            "local azs = mle.data(\"aws_availability_zones\", \"available\", {state = "
            "\"available\"})\n"
            "local vpc = mle.resource(\"aws_vpc\", \"main\", {\n"
            "  cidr_block = \"10.0.0.0/16\", count = 3, ratio = 0.5, enabled = true,\n"
            "  skip = nil, tags = {Name = \"main\", Team = \"ml\"}, ports = {80, 443},\n"
            "  nested = {a = {b = {1, 2}}}, empty = {}, explicit = mle.null,\n"
            "})\n"
            "mle.output(\"vpc_id\", vpc.id, {description = \"the VPC\"})\n"
            "mle.driver(\"aws\", {region = \"eu-west-1\", retries = 3})\n",
            NULL);
    json_t *res = f->stack->resources;
    assert_int_equal(json_array_size(res), 2);
    assert_json(json_array_get(res, 0),
                "{\"address\":\"data.aws_availability_zones.available\","
                "\"type\":\"aws_availability_zones\",\"name\":\"available\",\"data\":true,"
                "\"config\":{\"state\":\"available\"},\"depends_on\":[],"
                "\"where\":\"stack.lua:2\"}");
    assert_json(json_array_get(res, 1),
                "{\"address\":\"aws_vpc.main\",\"type\":\"aws_vpc\",\"name\":\"main\","
                "\"data\":false,\"config\":{\"cidr_block\":\"10.0.0.0/16\",\"count\":3,"
                "\"ratio\":0.5,\"enabled\":true,\"tags\":{\"Name\":\"main\",\"Team\":\"ml\"},"
                "\"ports\":[80,443],\"nested\":{\"a\":{\"b\":[1,2]}},\"empty\":{},"
                "\"explicit\":null},\"depends_on\":[],\"where\":\"stack.lua:3\"}");
    /* integers stay integers */
    json_t *cfg = json_object_get(json_array_get(res, 1), "config");
    assert_true(json_is_integer(json_object_get(cfg, "count")));
    assert_true(json_is_real(json_object_get(cfg, "ratio")));
    /* keys are sorted, so the JSON text is stable */
    char *text = json_dumps(cfg, JSON_COMPACT);
    assert_contains(text, "{\"cidr_block\":\"10.0.0.0/16\",\"count\":3,\"empty\":{}");
    free(text);
    assert_json(f->stack->outputs,
                "{\"vpc_id\":{\"value\":{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"id\"}},"
                "\"sensitive\":false,\"description\":\"the VPC\",\"where\":\"stack.lua:8\"}}");
    assert_json(f->stack->drivers, "{\"aws\":{\"region\":\"eu-west-1\",\"retries\":3}}");
    assert_json(f->stack->variables, "{}");
    assert_json(f->stack->hooks, "[]");
}

static void test_refs_and_expressions(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require(\"mlengine\")\n"
            "local azs = mle.data(\"aws_availability_zones\", \"available\")\n"
            "local vpc = mle.resource(\"aws_vpc\", \"main\", {cidr_block = \"10.0.0.0/16\"})\n"
            "local c = mle.resource(\"aws_eks_cluster\", \"c\", {name = \"ml\"})\n"
            "mle.output(\"az\", azs.names[1])\n"
            "mle.output(\"tag\", c.tags.Name)\n"
            "mle.output(\"deep\", c.status.conditions[3].type)\n"
            "mle.output(\"pre\", \"vpc-\" .. vpc.id)\n"
            "mle.output(\"two\", vpc.id .. \":\" .. vpc.arn)\n"
            "mle.output(\"num\", vpc.id .. 5)\n"
            "mle.output(\"ext\", (\"a\" .. vpc.id) .. \"b\" .. 1.5)\n"
            "mle.output(\"fmt\", mle.format(\"%s-%d-%s/%05.1f\", vpc.id, 7, c.name, 2.5))\n"
            "mle.output(\"sfmt\", string.format(\"%s!\", vpc.id))\n"
            "mle.output(\"plain\", mle.format(\"%s-%d\", \"a\", 3))\n"
            "assert(tostring(vpc.id) == \"${aws_vpc.main.id}\", tostring(vpc.id))\n"
            "assert(tostring(azs.names[2]) ==\n"
            "  \"${data.aws_availability_zones.available.names.1}\")\n"
            "assert(tostring(\"x-\" .. vpc.id .. \"-y\") == \"x-${aws_vpc.main.id}-y\")\n"
            "assert(mle.address(vpc) == \"aws_vpc.main\")\n"
            "assert(mle.address(azs.names) == \"data.aws_availability_zones.available\")\n"
            "assert(vpc.id == vpc.id and vpc.id ~= vpc.arn)\n"
            "assert(tostring(vpc) == \"aws_vpc.main\")\n",
            NULL);
    assert_json(output_value(f, "az"),
                "{\"$ref\":{\"address\":\"data.aws_availability_zones.available\","
                "\"path\":\"names.0\"}}");
    assert_json(output_value(f, "tag"),
                "{\"$ref\":{\"address\":\"aws_eks_cluster.c\",\"path\":\"tags.Name\"}}");
    assert_json(output_value(f, "deep"),
                "{\"$ref\":{\"address\":\"aws_eks_cluster.c\","
                "\"path\":\"status.conditions.2.type\"}}");
    const char *id = "{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"id\"}}";
    const char *arn = "{\"$ref\":{\"address\":\"aws_vpc.main\",\"path\":\"arn\"}}";
    char want[1024];
    snprintf(want, sizeof want, "{\"$expr\":[\"vpc-\",%s]}", id);
    assert_json(output_value(f, "pre"), want);
    snprintf(want, sizeof want, "{\"$expr\":[%s,\":\",%s]}", id, arn);
    assert_json(output_value(f, "two"), want);
    snprintf(want, sizeof want, "{\"$expr\":[%s,\"5\"]}", id);
    assert_json(output_value(f, "num"), want);
    snprintf(want, sizeof want, "{\"$expr\":[\"a\",%s,\"b1.5\"]}", id);
    assert_json(output_value(f, "ext"), want);
    snprintf(want, sizeof want,
             "{\"$expr\":[%s,\"-7-\",{\"$ref\":{\"address\":\"aws_eks_cluster.c\","
             "\"path\":\"name\"}},\"/002.5\"]}", id);
    assert_json(output_value(f, "fmt"), want);
    snprintf(want, sizeof want, "{\"$expr\":[%s,\"!\"]}", id);
    assert_json(output_value(f, "sfmt"), want);
    assert_json(output_value(f, "plain"), "\"a-3\"");
    assert_int_equal(mle_marker_is_ref(output_value(f, "az")), 1);
    assert_int_equal(mle_marker_is_expr(output_value(f, "pre")), 1);
    assert_int_equal(mle_marker_contains(output_value(f, "pre")), 1);
}

static void test_format_ref_needs_s_or_d(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f,
                                "local mle = require(\"mlengine\")\n"
                                "local v = mle.resource(\"aws_vpc\", \"main\")\n"
                                "mle.output(\"x\", mle.format(\"%q\", v.id))\n",
                                NULL);
    assert_contains(msg, "stack.lua:3: mle.format: argument #2 is known only at apply: "
                         "format it with %s or %d, not %q");
}

static void test_depends_on(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require(\"mlengine\")\n"
            "local vpc = mle.resource(\"aws_vpc\", \"main\")\n"
            "local igw = mle.resource(\"aws_internet_gateway\", \"gw\", {vpc_id = vpc.id})\n"
            "mle.resource(\"aws_nat_gateway\", \"nat\", {depends_on = {igw, "
            "\"aws_vpc.main\", igw}, name = \"n\"})\n"
            "mle.resource(\"aws_route\", \"r\", {depends_on = vpc})\n",
            NULL);
    json_t *nat = json_array_get(f->stack->resources, 2);
    assert_json(json_object_get(nat, "depends_on"),
                "[\"aws_internet_gateway.gw\",\"aws_vpc.main\"]");
    assert_json(json_object_get(nat, "config"), "{\"name\":\"n\"}");
    json_t *r = json_array_get(f->stack->resources, 3);
    assert_json(json_object_get(r, "depends_on"), "[\"aws_vpc.main\"]");
    assert_json(json_object_get(r, "config"), "{}");
    /* the implicit edge lives in the marker */
    assert_int_equal(mle_marker_contains(
                         json_object_get(json_array_get(f->stack->resources, 1), "config")),
                     1);
}

static void test_depends_on_ref_refused(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f,
                                "local mle = require(\"mlengine\")\n"
                                "local vpc = mle.resource(\"aws_vpc\", \"main\")\n"
                                "mle.resource(\"aws_subnet\", \"a\", {depends_on = {vpc.id}})\n",
                                NULL);
    assert_contains(msg, "stack.lua:3: depends_on[1]: expected a resource handle or an address "
                         "string, got a reference (aws_vpc.main.id): use the resource handle "
                         "itself");
}

static void test_duplicate_address(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f,
                                "local mle = require(\"mlengine\")\n"
                                "mle.resource(\"aws_vpc\", \"main\", {})\n"
                                "\n"
                                "mle.resource(\"aws_vpc\", \"main\", {})\n",
                                NULL);
    assert_string_equal(msg, "stack.lua:4: duplicate resource address \"aws_vpc.main\" (first "
                             "declared at stack.lua:2)");
    assert_int_equal(f->err->code, MLE_E_INVALID);
    assert_contains(f->err->hint, "stack traceback");
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *stack;
        const char *msg;
    } cases[] = {
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "mle.resource('aws_subnet', 'b', {vpc = v})\n",
         "stack.lua:3: aws_subnet.b attribute \"vpc\": a resource handle (aws_vpc.a) cannot be "
         "a value: use aws_vpc.a.id or another attribute"},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a', {tags = {1, x = 2}})\n",
         "stack.lua:2: aws_vpc.a attribute \"tags\": the table mixes list items and the key "
         "\"x\""},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a', {l = {1, nil, 3}})\n",
         "stack.lua:2: aws_vpc.a attribute \"l\": the list has a hole"},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a', {f = print})\n",
         "stack.lua:2: aws_vpc.a attribute \"f\": a function cannot be a value"},
        {"local mle = require('mlengine')\nlocal t = {}\nt.self = t\n"
         "mle.resource('aws_vpc', 'a', {t = t})\n",
         "nests deeper than 100 levels"},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a', {x = 0/0})\n",
         "is not a finite number"},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a', {x = {['$ref'] = 1}})\n",
         "the key \"$ref\" alone in a table is reserved"},
        {"local mle = require('mlengine')\nmle.resource('AWS', 'a')\n",
         "stack.lua:2: mle.resource: type \"AWS\" is not valid"},
        {"local mle = require('mlengine')\nmle.resource('aws_vpc', 'a.b')\n",
         "the name is not valid"},
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "local x = v.id + 1\n",
         "stack.lua:3: a reference (aws_vpc.a.id) is known only at apply"},
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "for _, s in ipairs(v.subnets) do end\n",
         "stack.lua:3: ipairs: a reference (aws_vpc.a.subnets) cannot be iterated"},
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "local x = v['a.b']\n",
         "an attribute path cannot hold an empty key or a key with a dot"},
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "local x = 'p' .. v\n",
         "stack.lua:3: cannot concatenate a resource handle (aws_vpc.a): use one of its "
         "attributes, e.g. aws_vpc.a.id"},
        {"local mle = require('mlengine')\nmle.output('o', 1)\nmle.output('o', 2)\n",
         "stack.lua:3: duplicate output \"o\" (first declared at stack.lua:2)"},
        {"local mle = require('mlengine')\nmle.driver('aws', {})\nmle.driver('aws', {})\n",
         "stack.lua:3: driver \"aws\" is configured twice (first at stack.lua:2)"},
        {"local mle = require('mlengine')\nmle.var('x', {defualt = 1})\n",
         "stack.lua:2: mle.var: unknown option \"defualt\""},
        {"local mle = require('mlengine')\nmle.hook('pre_destroy', function() end)\n",
         "stack.lua:2: mle.hook: unknown hook \"pre_destroy\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx *f = *state;
        const char *msg = eval_fail(f, cases[i].stack, NULL);
        assert_contains(msg, cases[i].msg);
        mle_error_free(f->err);
        f->err = NULL;
        mle_lua_free(f->rt);
        f->rt = NULL;
    }
}

/* Debian 12's liblua5.4 crashes when the Lua stack moves during a __concat metamethod
 * (see mm_concat in lua_rt.c). Concatenate references at many stack depths while making
 * garbage, so that the stack would grow and the collector would shrink it. */
static void test_concat_while_stack_moves(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "local vpc = mle.resource('aws_vpc', 'main')\n"
            "local pw = mle.sensitive('pw')\n"
            "local function deep(n, a, b)\n"
            "  if n == 0 then\n"
            "    local junk = {}\n"
            "    for i = 1, 30 do junk[i] = {i} end\n"
            "    return 'a' .. vpc.id .. '-' .. vpc.arn .. '-' .. n .. pw\n"
            "  end\n"
            "  return deep(n - 1, a, b)\n"
            "end\n"
            "for i = 1, 60000, 997 do local r = deep(i) end\n"
            "for i = 1, 3000, 3 do local r = deep(i) end\n"
            "local t = {}\n"
            "for i = 1, 300 do t[i] = {'x' .. vpc.id .. 'y' .. pw .. i} end\n"
            "mle.output('last', t[300][1])\n",
            NULL);
    assert_json(output_value(f, "last"),
                "{\"$sensitive\":{\"$expr\":[\"x\",{\"$ref\":{\"address\":\"aws_vpc.main\","
                "\"path\":\"id\"}},\"ypw300\"]}}");
}

/* ---------------------------------------------------------------------------------------
 * Variables, sensitive values
 * --------------------------------------------------------------------------------------- */

static void test_var_required(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f,
                                "local mle = require(\"mlengine\")\n"
                                "local r = mle.var(\"region\", {description = \"where\"})\n",
                                NULL);
    assert_string_equal(msg, "stack.lua:2: variable \"region\" is required: set it with --var "
                             "region=VALUE, MLENGINE_VAR_region or a --var-file");
    assert_int_equal(f->err->code, MLE_E_INVALID);
}

static void test_var_types(void **state)
{
    fx *f = *state;
    run_opts o = {.vars = "{\"count\":\"5\",\"enabled\":\"false\","
                          "\"zones\":\"[\\\"a\\\",\\\"b\\\"]\","
                          "\"tags\":\"{\\\"team\\\":\\\"ml\\\"}\",\"ratio\":\"0.5\",\"name\":\"x\","
                          "\"inferred\":\"7\",\"from_file\":[1,2],\"str\":12}"};
    eval_ok(f,
            "local mle = require(\"mlengine\")\n"
            "local count = mle.var(\"count\", {type = \"number\"})\n"
            "assert(math.type(count) == \"integer\" and count == 5)\n"
            "local enabled = mle.var(\"enabled\", {type = \"bool\"})\n"
            "assert(enabled == false)\n"
            "local zones = mle.var(\"zones\", {type = \"list\"})\n"
            "assert(#zones == 2 and zones[2] == \"b\")\n"
            "local tags = mle.var(\"tags\", {type = \"map\"})\n"
            "assert(tags.team == \"ml\")\n"
            "assert(mle.var(\"ratio\", {type = \"number\"}) == 0.5)\n"
            "assert(mle.var(\"name\") == \"x\")\n"
            "assert(mle.var(\"inferred\", {default = 3}) == 7)\n"
            "assert(mle.var(\"unset\", {default = \"d\"}) == \"d\")\n"
            "assert(mle.var(\"from_file\", {type = \"list\"})[2] == 2)\n"
            "assert(mle.var(\"str\", {type = \"string\"}) == \"12\")\n"
            "mle.resource(\"sim_thing\", \"t\", {n = count, zones = zones})\n",
            &o);
    json_t *vars = f->stack->variables;
    assert_json(json_object_get(vars, "count"), "{\"value\":5,\"sensitive\":false}");
    assert_json(json_object_get(vars, "enabled"), "{\"value\":false,\"sensitive\":false}");
    assert_json(json_object_get(vars, "zones"), "{\"value\":[\"a\",\"b\"],\"sensitive\":false}");
    assert_json(json_object_get(vars, "tags"), "{\"value\":{\"team\":\"ml\"},\"sensitive\":false}");
    assert_json(json_object_get(vars, "unset"), "{\"value\":\"d\",\"sensitive\":false}");
    assert_json(json_object_get(json_array_get(f->stack->resources, 0), "config"),
                "{\"n\":5,\"zones\":[\"a\",\"b\"]}");
}

static void test_var_bad_conversion(void **state)
{
    fx *f = *state;
    run_opts o = {.vars = "{\"count\":\"many\",\"pw\":\"hunter22\"}"};
    const char *msg = eval_fail(f,
                                "local mle = require(\"mlengine\")\n"
                                "mle.var(\"count\", {type = \"number\"})\n",
                                &o);
    assert_string_equal(msg, "stack.lua:2: variable \"count\": \"many\" is not a number");
    mle_error_free(f->err);
    f->err = NULL;
    mle_lua_free(f->rt);
    f->rt = NULL;
    /* a secret is never echoed in an error */
    msg = eval_fail(f,
                    "local mle = require(\"mlengine\")\n"
                    "mle.var(\"pw\", {type = \"number\", sensitive = true})\n",
                    &o);
    assert_null(strstr(msg, "hunter22"));
    assert_contains(msg, "variable \"pw\": the given (sensitive) value is not a number");
}

static void test_sensitive(void **state)
{
    fx *f = *state;
    run_opts o = {.vars = "{\"db_password\":\"s3cret-pw\"}"};
    eval_ok(f,
            "local mle = require(\"mlengine\")\n"
            "local pw = mle.var(\"db_password\", {sensitive = true})\n"
            "assert(tostring(pw) == \"(sensitive)\")\n"
            "local db = mle.resource(\"aws_db_instance\", \"db\", {password = pw,\n"
            "  url = \"postgres://u:\" .. pw .. \"@h\", key = mle.sensitive({a = 1})})\n"
            "mle.output(\"conn\", mle.format(\"%s@%s\", pw, db.address))\n"
            "mle.output(\"plain\", \"x\")\n"
            "local key = mle.var(\"api_key\", {default = mle.sensitive(\"k-123\")})\n"
            "assert(tostring(key) == \"(sensitive)\")\n",
            &o);
    assert_json(json_object_get(f->stack->variables, "api_key"),
                "{\"value\":\"k-123\",\"sensitive\":true}");
    assert_json(json_object_get(f->stack->variables, "db_password"),
                "{\"value\":\"s3cret-pw\",\"sensitive\":true}");
    json_t *cfg = json_object_get(json_array_get(f->stack->resources, 0), "config");
    assert_json(cfg, "{\"password\":{\"$sensitive\":\"s3cret-pw\"},"
                     "\"url\":{\"$sensitive\":\"postgres://u:s3cret-pw@h\"},"
                     "\"key\":{\"$sensitive\":{\"a\":1}}}");
    assert_int_equal(mle_marker_is_sensitive(json_object_get(cfg, "password")), 1);
    assert_int_equal(mle_marker_contains(cfg), 0);
    json_t *conn = json_object_get(f->stack->outputs, "conn");
    assert_json(json_object_get(conn, "value"),
                "{\"$sensitive\":{\"$expr\":[\"s3cret-pw@\",{\"$ref\":{\"address\":"
                "\"aws_db_instance.db\",\"path\":\"address\"}}]}}");
    assert_true(json_is_true(json_object_get(conn, "sensitive")));
    assert_int_equal(mle_marker_contains(json_object_get(conn, "value")), 1);
    assert_true(json_is_false(json_object_get(json_object_get(f->stack->outputs, "plain"),
                                              "sensitive")));
}

/* ---------------------------------------------------------------------------------------
 * Sandbox and limits
 * --------------------------------------------------------------------------------------- */

static void test_sandbox_denials(void **state)
{
    static const struct {
        const char *stack;
        const char *msg;
    } cases[] = {
        {"os.execute('true')\n", "stack.lua:1: os.execute is not available in an mlengine "
                                 "stack (sandbox)"},
        {"local x = 1\nos.getenv('HOME')\n", "stack.lua:2: os.getenv is not available"},
        {"os.exit(1)\n", "os.exit is not available"},
        {"io.open('/etc/passwd')\n", "stack.lua:1: io.open is not available in an mlengine "
                                     "stack: use mlengine.file"},
        {"loadfile('/etc/passwd')\n", "attempt to call a nil value (global 'loadfile')"},
        {"dofile('/etc/passwd')\n", "attempt to call a nil value (global 'dofile')"},
        {"collectgarbage()\n", "attempt to call a nil value (global 'collectgarbage')"},
        {"string.dump(print)\n", "attempt to call a nil value (field 'dump')"},
        {"debug.traceback()\n", "debug.traceback is not available in an mlengine stack"},
        {"package.loadlib('x', 'y')\n", "package.loadlib is not available"},
        {"require('../secret')\n", "require(\"../secret\"): not a module name"},
        {"require('/etc/passwd')\n", "require(\"/etc/passwd\"): not a module name"},
        {"require('a/b')\n", "not a module name"},
        {"require('nope.missing')\n", "require(\"nope.missing\"): module not found"},
        {"assert(load('\\27LuaT\\0\\25\\147\\13\\n\\26\\n'))\n",
         "attempt to load a binary chunk (mode is 't')"},
        {"assert(load('\\27Lua', 'x', 'b'))\n", "attempt to load a binary chunk"},
        {"string.upper = nil\n", "string is read-only in an mlengine stack"},
        {"math.pi = 3\n", "math is read-only"},
        {"local mle = require('mlengine')\nmle.resource = nil\n", "mlengine is read-only"},
        {"math.randomseed()\n", "math.randomseed needs an explicit seed"},
#if LUA_VERSION_RELEASE_NUM == 50404
        {"local t = setmetatable({}, {__concat = function() return '' end})\n",
         "stack.lua:1: setmetatable: __concat metamethods are refused in an mlengine stack"},
#endif
        {"local mt = getmetatable('')\nmt.__index = {}\n", "attempt to index a boolean value"},
        {"local mle = require('mlengine')\nlocal v = mle.resource('aws_vpc', 'a')\n"
         "getmetatable(v).__index = nil\n", "attempt to index a string value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx *f = *state;
        const char *msg = eval_fail(f, cases[i].stack, NULL);
        assert_contains(msg, cases[i].msg);
        mle_error_free(f->err);
        f->err = NULL;
        mle_lua_free(f->rt);
        f->rt = NULL;
    }
}

static void test_sandbox_allows(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "assert(type(os.time()) == 'number' and type(os.clock()) == 'number')\n"
            "assert(type(os.date('%Y')) == 'string')\n"
            "assert(('abc'):upper() == 'ABC' and string.rep('x', 3) == 'xxx')\n"
            "assert(table.concat({1, 2}, ',') == '1,2' and utf8.char(72) == 'H')\n"
            "local f = assert(load('return 1 + x', 'chunk', 't', {x = 2}))\n"
            "assert(f() == 3)\n"
            "y = 5\n"
            "assert(load('return y')() == 5)\n"
            "local ok, err = pcall(error, 'boom')\n"
            "assert(not ok and err == 'boom')\n"
            "local n = 0\n"
            "for k in pairs(string) do n = n + 1 end\n"
            "assert(n > 10)\n"
            "assert(_G.y == 5)\n"
            "math.randomseed(42)\n",
            NULL);
}

static void test_instruction_limit(void **state)
{
    fx *f = *state;
    run_opts o = {.instr_limit = 1000000};
    const char *msg = eval_fail(f, "local x = 1\nwhile true do end\n", &o);
    assert_string_equal(msg, "stack.lua:2: stack exceeded the instruction limit (1000000 "
                             "instructions): an endless loop?");
    assert_int_equal(f->err->code, MLE_E_INVALID);
}

static void test_instruction_limit_pcall(void **state)
{
    fx *f = *state;
    run_opts o = {.instr_limit = 1000000};
    const char *msg = eval_fail(f,
                                "while true do\n"
                                "  pcall(function() while true do end end)\n"
                                "end\n",
                                &o);
    assert_contains(msg, "stack exceeded the instruction limit (1000000 instructions)");
    mle_error_free(f->err);
    f->err = NULL;
    mle_lua_free(f->rt);
    f->rt = NULL;
    /* a pcall that swallows the stop and lets the stack end still fails the run */
    msg = eval_fail(f,
                    "local ok = pcall(function() while true do end end)\n"
                    "return ok\n",
                    &o);
    assert_contains(msg, "stack exceeded the instruction limit");
}

static void test_memory_limit(void **state)
{
    fx *f = *state;
    run_opts o = {.mem_limit = (size_t)32 * 1024 * 1024};
    const char *msg = eval_fail(f,
                                "local t, i = {}, 0\n"
                                "while true do i = i + 1; t[i] = string.rep('x', 4096) .. i end\n",
                                &o);
    assert_string_equal(msg, "stack exceeded the memory limit of 32 MiB");
    assert_int_equal(f->err->code, MLE_E_INVALID);
    mle_error_free(f->err);
    f->err = NULL;
    mle_lua_free(f->rt);
    f->rt = NULL;
    msg = eval_fail(f, "local s = string.rep('x', 64 * 1024 * 1024)\n", &o);
    assert_string_equal(msg, "stack exceeded the memory limit of 32 MiB");
}

static void test_random_seed(void **state)
{
    fx *f = *state;
    const char *stack = "local mle = require('mlengine')\n"
                        "mle.output('r', {math.random(), math.random(1, 1000000), "
                        "math.random(1, 1000000)})\n";
    eval_ok(f, stack, NULL);
    json_t *first = json_deep_copy(output_value(f, "r"));
    mle_stack_free(f->stack);
    f->stack = NULL;
    mle_lua_free(f->rt);
    f->rt = NULL;
    eval_ok(f, stack, NULL);
    assert_true(json_equal(first, output_value(f, "r")));
    json_decref(first);
}

/* ---------------------------------------------------------------------------------------
 * Files and data helpers
 * --------------------------------------------------------------------------------------- */

static void test_file_confinement(void **state)
{
    fx *f = *state;
    write_file("values/common.yaml", "replicas: 2\n");
    write_file("../mle-outside.txt", "secret\n"); /* outside the stack's folder */
    assert_int_equal(symlink("../mle-outside.txt", "escape.txt"), 0);
    assert_int_equal(symlink("values", "inside"), 0);
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "assert(mle.file('values/common.yaml') == 'replicas: 2\\n')\n"
            "assert(mle.file('inside/common.yaml') == 'replicas: 2\\n')\n"
            "assert(mle.file('./values/../values/common.yaml') == 'replicas: 2\\n')\n",
            NULL);
    static const struct {
        const char *call;
        const char *msg;
    } cases[] = {
        {"mle.file('../mle-outside.txt')", "outside the stack's folder"},
        {"mle.file('escape.txt')", "outside the stack's folder"},
        {"mle.file('/etc/hostname')", "outside the stack's folder"},
        {"mle.file('missing.txt')", "mle.file: \"missing.txt\": No such file or directory"},
        {"mle.file('values')", "Is a directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "local mle = require('mlengine')\n%s\n", cases[i].call);
        mle_stack_free(f->stack);
        f->stack = NULL;
        mle_lua_free(f->rt);
        f->rt = NULL;
        const char *msg = eval_fail(f, text, NULL);
        assert_contains(msg, "stack.lua:2: mle.file");
        assert_contains(msg, cases[i].msg);
        mle_error_free(f->err);
        f->err = NULL;
    }
}

static void test_yaml_json(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "local y = mle.yamldecode('a: 1\\nb: [x, y]\\nc: null\\n')\n"
            "assert(y.a == 1 and y.b[2] == 'y' and y.c == mle.null)\n"
            "local all = mle.yamldecode_all('a: 1\\n---\\nb: 2\\n')\n"
            "assert(#all == 2 and all[2].b == 2)\n"
            "local ok, err = pcall(mle.yamldecode, 'a: 1\\n---\\nb: 2\\n')\n"
            "assert(not ok and err:find('use mle.yamldecode_all', 1, true), err)\n"
            "ok, err = pcall(mle.yamldecode, 'a: [1, 2')\n"
            "assert(not ok and err:find('mle.yamldecode: ', 1, true), err)\n"
            "assert(err:find('line %d'), err)\n"
            "local j = mle.jsondecode('{\"n\": 1, \"f\": 1.5, \"l\": [true, null], '\n"
            "  .. '\"s\": \"x\"}')\n"
            "assert(math.type(j.n) == 'integer' and j.f == 1.5 and j.l[1] == true)\n"
            "assert(j.l[2] == mle.null)\n"
            "ok, err = pcall(mle.jsondecode, '{\"a\":')\n"
            "assert(not ok and err:find('mle.jsondecode: line 1', 1, true), err)\n"
            "assert(mle.jsonencode({b = 1, a = {1, 2.5, 'x'}, c = true, d = {}}) == "
            "'{\"a\":[1,2.5,\"x\"],\"b\":1,\"c\":true,\"d\":{}}')\n"
            "assert(mle.jsonencode(0.1) == '0.1' and mle.jsonencode('x') == '\"x\"')\n"
            "assert(mle.jsonencode(mle.jsondecode('{\"a\":null,\"b\":[null]}')) == "
            "'{\"a\":null,\"b\":[null]}')\n"
            "local s = mle.jsonencode({pw = mle.sensitive('p')})\n"
            "assert(tostring(s) == '(sensitive)')\n"
            "mle.resource('sim_thing', 't', {doc = y, secret_doc = s, n = mle.null})\n",
            NULL);
    assert_json(json_object_get(json_array_get(f->stack->resources, 0), "config"),
                "{\"doc\":{\"a\":1,\"b\":[\"x\",\"y\"],\"c\":null},"
                "\"secret_doc\":{\"$sensitive\":\"{\\\"pw\\\":\\\"p\\\"}\"},\"n\":null}");
}

static void test_jsonencode_ref_refused(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f,
                                "local mle = require('mlengine')\n"
                                "local b = mle.resource('aws_s3_bucket', 'b')\n"
                                "local p = mle.jsonencode({Statement = {{Resource = b.arn}}})\n",
                                NULL);
    assert_contains(msg, "stack.lua:3: mle.jsonencode \"Statement[1].Resource\": a reference "
                         "(aws_s3_bucket.b.arn) is known only at apply");
}

static void test_merge(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "local common = {image = {repo = 'mlflow', tag = '2.9'}, replicas = 1,\n"
            "  args = {'--a', '--b'}, ingress = {enabled = true, class = 'nginx'}}\n"
            "local aws = {image = {tag = '2.10'}, args = {'--c'},\n"
            "  ingress = {class = mle.null}, storage = {s3 = {bucket = 'b'}}}\n"
            "local m = mle.merge(common, aws, nil, {replicas = 3})\n"
            "mle.output('merged', m)\n"
            "mle.output('common', common)\n"
            "m.image.repo = 'changed'\n"
            "assert(common.image.repo == 'mlflow')\n"
            "local ok, err = pcall(mle.merge, {1, 2}, {})\n"
            "assert(not ok and err:find('is a list', 1, true))\n",
            NULL);
    assert_json(output_value(f, "merged"),
                "{\"image\":{\"repo\":\"mlflow\",\"tag\":\"2.10\"},\"replicas\":3,"
                "\"args\":[\"--c\"],\"ingress\":{\"enabled\":true},"
                "\"storage\":{\"s3\":{\"bucket\":\"b\"}}}");
    assert_json(output_value(f, "common"),
                "{\"image\":{\"repo\":\"mlflow\",\"tag\":\"2.9\"},\"replicas\":1,"
                "\"args\":[\"--a\",\"--b\"],\"ingress\":{\"enabled\":true,\"class\":\"nginx\"}}");
}

/* ---------------------------------------------------------------------------------------
 * validate callback, require, hooks
 * --------------------------------------------------------------------------------------- */

static int validate_types(void *ud, const char *type, int data_source, const json_t *config,
                          mle_error **err)
{
    int *calls = ud;
    (*calls)++;
    if (!strcmp(type, "aws_vcp")) {
        mle_error *e = mle_error_new(MLE_E_INVALID, "unknown resource type \"aws_vcp\" (did you "
                                                    "mean \"aws_vpc\"?)");
        mle_error_set_hint(e, "types come from the loaded drivers");
        *err = e;
        return -1;
    }
    if (!json_is_object(config))
        return mle_fail(err, MLE_E_INTERNAL, "config is not an object");
    return 0;
}

static void test_validate_callback(void **state)
{
    fx *f = *state;
    int calls = 0;
    write_file("stack.lua", "local mle = require('mlengine')\n"
                            "mle.resource('aws_vpc', 'ok', {cidr_block = '10.0.0.0/16'})\n"
                            "mle.resource('aws_vcp', 'main', {})\n");
    mle_lua_opts opts = {.stack_path = "stack.lua", .validate = validate_types,
                         .validate_ud = &calls};
    f->rt = mle_lua_new(&opts, &f->err);
    assert_non_null(f->rt);
    assert_int_equal(mle_lua_eval(f->rt, &f->stack, &f->err), -1);
    assert_int_equal(calls, 2);
    assert_string_equal(f->err->message, "stack.lua:3: unknown resource type \"aws_vcp\" (did "
                                         "you mean \"aws_vpc\"?)");
    assert_string_equal(f->err->address, "aws_vcp.main");
    assert_contains(f->err->hint, "types come from the loaded drivers\nstack traceback:");
    assert_contains(f->err->hint, "stack.lua:3");
}

static void test_require_modules(void **state)
{
    fx *f = *state;
    write_file("net/vpc.lua", "local mle = require('mlengine')\n"
                              "local M = {}\n"
                              "function M.vpc(name)\n"
                              "  return mle.resource('aws_vpc', name,\n"
                              "    {cidr_block = '10.0.0.0/16'})\n"
                              "end\n"
                              "return M\n");
    write_file("lib/mlops/platform.lua",
               "local net = require('net.vpc')\n"
               "return {platform = function(o) return net.vpc(o.name) end}\n");
    write_file("lib/mlops/init.lua", "return {version = 1}\n");
    char lib[PATH_MAX];
    snprintf(lib, sizeof lib, "%s/lib", f->dir);
    run_opts o = {.scripts_dir = lib};
    eval_ok(f,
            "local net = require('net.vpc')\n"
            "assert(require('net.vpc') == net)\n"
            "local mlops = require('mlops.platform')\n"
            "assert(require('mlops').version == 1)\n"
            "local v = mlops.platform{name = 'main'}\n"
            "require('mlengine').output('id', v.id)\n",
            &o);
    json_t *r = json_array_get(f->stack->resources, 0);
    assert_string_equal(json_string_value(json_object_get(r, "address")), "aws_vpc.main");
    assert_string_equal(json_string_value(json_object_get(r, "where")), "net/vpc.lua:4");
}

static void test_require_symlink_escape(void **state)
{
    fx *f = *state;
    write_file("../mle-outside-mod.lua", "return 1\n");
    assert_int_equal(symlink("../mle-outside-mod.lua", "evil.lua"), 0);
    const char *msg = eval_fail(f, "require('evil')\n", NULL);
    assert_contains(msg, "require(\"evil\"):");
    assert_contains(msg, "refused");
}

static void test_hooks(void **state)
{
    fx *f = *state;
    eval_ok(f,
            "local mle = require('mlengine')\n"
            "mle.hook('post_plan', function(ctx)\n"
            "  ctx:write_report('plans/summary.txt', 'changes: ' .. ctx.changes)\n"
            "end)\n"
            "mle.hook('pre_apply', function(ctx)\n"
            "  if ctx.changes > 2 then ctx:veto('too many changes: ' .. ctx.changes) end\n"
            "end)\n"
            "mle.hook('pre_apply', function(ctx) ctx:veto('second') end)\n"
            "mle.hook('post_apply', function(ctx) ctx:write_report('../x.txt', 'no') end)\n"
            "mle.hook('on_resource', function(ctx) error('hook broke') end)\n"
            "mle.hook('pre_plan', function(ctx) mle.resource('aws_vpc', 'late') end)\n",
            NULL);
    assert_json(f->stack->hooks,
                "[\"post_plan\",\"pre_apply\",\"post_apply\",\"on_resource\",\"pre_plan\"]");
    char reports[PATH_MAX];
    snprintf(reports, sizeof reports, "%s/reports", f->dir);
    json_t *ctx = json_pack("{s:i,s:{s:s}}", "changes", 3, "plan", "a", "b");
    mle_error *err = NULL;

    assert_int_equal(mle_lua_run_hook(f->rt, "post_plan", ctx, reports, &err), 0);
    char *text = read_text("reports/plans/summary.txt");
    assert_non_null(text);
    assert_string_equal(text, "changes: 3");
    free(text);

    assert_int_equal(mle_lua_run_hook(f->rt, "pre_apply", ctx, reports, &err), 1);
    assert_string_equal(err->message, "pre_apply hook vetoed: too many changes: 3 "
                                      "(stack.lua:6); second (stack.lua:8)");
    mle_error_free(err);
    err = NULL;

    assert_int_equal(mle_lua_run_hook(f->rt, "post_apply", ctx, reports, &err), -1);
    assert_contains(err->message, "stack.lua:9: ctx:write_report: \"../x.txt\" leaves the "
                                  "report directory");
    mle_error_free(err);
    err = NULL;

    assert_int_equal(mle_lua_run_hook(f->rt, "on_resource", ctx, reports, &err), -1);
    assert_string_equal(err->message, "stack.lua:10: hook broke");
    assert_contains(err->hint, "stack traceback");
    mle_error_free(err);
    err = NULL;

    assert_int_equal(mle_lua_run_hook(f->rt, "pre_plan", ctx, reports, &err), -1);
    assert_contains(err->message, "mle.resource can only be called while the stack is "
                                  "evaluated");
    mle_error_free(err);
    err = NULL;

    assert_int_equal(mle_lua_run_hook(f->rt, "nope", ctx, reports, &err), -1);
    mle_error_free(err);
    err = NULL;
    json_decref(ctx);
}

static void test_hooks_file_and_report_symlink(void **state)
{
    fx *f = *state;
    eval_ok(f, "local mle = require('mlengine')\nmle.resource('aws_vpc', 'main')\n", NULL);
    write_file("hooks.lua", "local mle = require('mlengine')\n"
                            "mle.hook('post_plan', function(ctx)\n"
                            "  ctx:write_report('out/r.txt', ctx.name)\n"
                            "end)\n"
                            "mle.hook('pre_plan', function(ctx)\n"
                            "  ctx:write_report('ok.txt', 'fine')\n"
                            "end)\n");
    write_file("bad_hooks.lua", "require('mlengine').resource('aws_vpc', 'x')\n");
    mle_error *err = NULL;
    assert_int_equal(mle_lua_load_hooks(f->rt, "hooks.lua", &err), 0);
    assert_int_equal(mle_lua_load_hooks(f->rt, "bad_hooks.lua", &err), -1);
    assert_contains(err->message, "bad_hooks.lua:1: mle.resource can only be called while the "
                                  "stack is evaluated");
    mle_error_free(err);
    err = NULL;
    assert_int_equal(mle_lua_load_hooks(f->rt, "missing.lua", &err), -1);
    assert_int_equal(err->code, MLE_E_IO);
    mle_error_free(err);
    err = NULL;

    /* a link inside the report directory cannot lead out of it */
    mkdir("reports", 0755);
    mkdir("elsewhere", 0755);
    assert_int_equal(symlink("../elsewhere", "reports/out"), 0);
    json_t *ctx = json_pack("{s:s}", "name", "x");
    assert_int_equal(mle_lua_run_hook(f->rt, "post_plan", ctx, "reports", &err), -1);
    assert_contains(err->message, "\"out\" is a symbolic link or not a folder");
    mle_error_free(err);
    err = NULL;
    assert_int_equal(access("elsewhere/r.txt", F_OK), -1);
    /* a hook with no report directory */
    assert_int_equal(mle_lua_run_hook(f->rt, "pre_plan", ctx, NULL, &err), -1);
    assert_contains(err->message, "this run has no report directory");
    mle_error_free(err);
    err = NULL;
    json_decref(ctx);
}

static void test_stack_errors(void **state)
{
    fx *f = *state;
    const char *msg = eval_fail(f, "local x = = 1\n", NULL);
    assert_contains(msg, "stack.lua:1: unexpected symbol near '='");
    mle_error_free(f->err);
    f->err = NULL;
    /* a stack file that does not exist is an I/O error */
    mle_lua_free(f->rt);
    mle_lua_opts opts = {.stack_path = "absent.lua"};
    f->rt = mle_lua_new(&opts, &f->err);
    assert_non_null(f->rt);
    assert_int_equal(mle_lua_eval(f->rt, &f->stack, &f->err), -1);
    assert_int_equal(f->err->code, MLE_E_IO);
    assert_contains(f->err->message, "cannot read the stack file absent.lua");
    mle_error_free(f->err);
    f->err = NULL;
    /* a runtime evaluates once */
    assert_int_equal(mle_lua_eval(f->rt, &f->stack, &f->err), -1);
}

static void test_marker_helpers(void **state)
{
    (void)state;
    json_t *ref = json_loads("{\"$ref\":{\"address\":\"a.b\",\"path\":\"id\"}}", 0, NULL);
    json_t *expr = json_loads("{\"$expr\":[\"x\"]}", 0, NULL);
    json_t *sens = json_loads("{\"$sensitive\":{\"k\":[{\"$expr\":[]}]}}", 0, NULL);
    json_t *plain = json_loads("{\"$ref\":\"#/definitions/x\",\"other\":1}", 0, NULL);
    assert_true(mle_marker_is_ref(ref));
    assert_false(mle_marker_is_ref(expr));
    assert_true(mle_marker_is_expr(expr));
    assert_true(mle_marker_is_sensitive(sens));
    assert_true(mle_marker_contains(sens));
    assert_false(mle_marker_is_ref(plain));
    assert_false(mle_marker_contains(plain));
    json_decref(ref);
    json_decref(expr);
    json_decref(sens);
    json_decref(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resources_to_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs_and_expressions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_ref_needs_s_or_d, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depends_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depends_on_ref_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concat_while_stack_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_var_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_var_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_var_bad_conversion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sensitive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_denials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_allows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instruction_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instruction_limit_pcall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_confinement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonencode_ref_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_require_modules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_require_symlink_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_file_and_report_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stack_errors, setup, teardown),
        cmocka_unit_test(test_marker_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
