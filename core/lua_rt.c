/*
 * lua_rt.c — owns the Lua 5.4 runtime that evaluates a stack: the sandbox (chosen libraries,
 * frozen standard tables, text-only load, confined require), the memory and instruction
 * limits, the `mlengine` module (resources, references, expressions, variables, outputs,
 * drivers, hooks, file and data helpers) and the conversion of Lua values to the JSON of
 * mle_stack, markers included.
 *
 * No static state: every C function reaches its runtime through the allocator's user data
 * (the runtime counts memory for its lua_State, so the two are one-to-one).
 */
#include "lua_rt.h"
#include "yaml.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MT_RESOURCE "mlengine.resource"
#define MT_REF "mlengine.reference"
#define MT_EXPR "mlengine.expression"
#define MT_SENSITIVE "mlengine.sensitive"
#define MT_JBOX "mlengine.jsonbox"

#define DEFAULT_INSTR_LIMIT 200000000ull
#define DEFAULT_MEM_LIMIT ((size_t)512 * 1024 * 1024)
#define HOOK_STEP 10000u /* instructions between two budget checks */
#define MAX_DEPTH 100    /* nesting of values: deeper is almost surely a cycle */
#define RANDOM_SEED 0    /* plans must be reproducible */
#define MSG_MAX 2048
/* Stack slots reserved by the C function at the base of every entry (see reserve_stack). */
#define STACK_RESERVE 16384

enum rt_phase {
    PH_IDLE,       /* between entries */
    PH_EVAL,       /* the stack file runs: declarations allowed */
    PH_HOOKS_FILE, /* a --hooks file runs: only hooks may be registered */
    PH_HOOK,       /* a hook function runs */
};

struct mle_lua {
    lua_State *L;
    enum rt_phase phase;
    int evaluated;

    char *stack_path;  /* as given: the chunk name and the "where" of declarations */
    char *stack_shown; /* its folder as given ("" or "examples/aws/"), for module names */
    char *stack_dir;   /* realpath of its folder, or NULL when it does not exist */
    char *scripts_shown;
    char *scripts_dir; /* realpath of the scripts library, or NULL */
    json_t *vars;

    mle_lua_validate_fn validate;
    void *validate_ud;

    /* limits: memory counted by the allocator, instructions by the count hook */
    size_t mem_limit, mem_used;
    int mem_refused;
    uint64_t instr_limit, instr_used;
    unsigned hook_step;
    int instr_hit;
    char *limit_where;

    /* the result of one entry into Lua */
    char *traceback;
    mle_error *pending; /* an error raised with its own code (validate, I/O) */

    /* the declarations */
    json_t *resources; /* array, as in mle_stack */
    json_t *addrs;     /* handle index -> address */
    json_t *addr_where; /* address -> "file:line" of its declaration */
    json_t *outputs, *drivers, *driver_where, *variables, *hooks;
    char *cloud; /* mle.cloud(), or NULL */

    /* registry references */
    int ref_env, ref_module, ref_loaded, ref_hooks, ref_ctx_mt;
    char null_tag;    /* &null_tag is mle.null */
    char loading_tag; /* &loading_tag marks a module being loaded */

    /* during mle_lua_run_hook */
    const char *report_dir;
    json_t *vetoes;
};

static const char *const hook_names[] = {"pre_plan", "post_plan", "pre_apply", "post_apply",
                                         "on_resource", NULL};

/* ---------------------------------------------------------------------------------------
 * Runtime access, allocator, small helpers
 * --------------------------------------------------------------------------------------- */

static mle_lua *rt_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void count_hook(lua_State *L, lua_Debug *ar);

/* Memory cap (the HAProxy model). With ptr NULL, osize is a type tag, not a size.
 * Bytes allocated also count against the instruction budget, one instruction per
 * ALLOC_BYTES_PER_INSTR: a library call (string.rep, .., table.concat) does work in C that
 * the count hook never sees, so `while true do local s = ("x"):rep(1e7) end` would otherwise
 * run for hours inside its budget. Once the budget is spent, the hook is made to run at the
 * next instruction, where it ends the run. */
#define ALLOC_BYTES_PER_INSTR 16
static void *rt_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mle_lua *rt = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        rt->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > rt->mem_limit - rt->mem_used) {
        rt->mem_refused = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return nsize <= old ? ptr : NULL; /* Lua assumes a shrink never fails */
    rt->mem_used = rt->mem_used - old + nsize;
    if (nsize > old) {
        rt->instr_used += (nsize - old) / ALLOC_BYTES_PER_INSTR;
        if (rt->instr_used >= rt->instr_limit && !rt->instr_hit && rt->L)
            lua_sethook(rt->L, count_hook, LUA_MASKCOUNT, 1);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return 1;
    return 0;
}

/* "file:line" of the nearest Lua function on the call stack (level 1 is our caller when
 * called from a C function), or "?" when there is none. */
static void push_where(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    }
    lua_pushliteral(L, "?");
}

/* Raise "file:line: message". The message is formatted in C first so that any printf
 * conversion works and nothing is left half-built when lua_error jumps. */
static int rt_error(lua_State *L, const char *fmt, ...) MLE_PRINTF(2, 3);
static int rt_error(lua_State *L, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    push_where(L);
    if (!strcmp(lua_tostring(L, -1), "?"))
        lua_pushstring(L, msg);
    else
        lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), msg);
    return lua_error(L);
}

/* Raise an error that keeps its own code and details: mle_lua_eval/run_hook return `e`
 * itself when this is the error that reaches the top. Takes e. */
static int raise_error(lua_State *L, mle_error *e)
{
    mle_lua *rt = rt_of(L);
    mle_error_free(rt->pending);
    rt->pending = e;
    lua_pushstring(L, e->message);
    return lua_error(L);
}

static void push_registry(lua_State *L, int ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

static int is_ident(const char *s, int allow_dash)
{
    if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || (allow_dash && *s == '-')))
            return 0;
    return 1;
}

static int is_null(lua_State *L, mle_lua *rt, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &rt->null_tag;
}

/* ---------------------------------------------------------------------------------------
 * JSON boxes: a json_t under construction is owned by a userdata with __gc, so a Lua error
 * (or an out-of-memory jump) in the middle of a conversion leaks nothing.
 * --------------------------------------------------------------------------------------- */

typedef struct jbox {
    json_t *v;
} jbox;

static int jbox_gc(lua_State *L)
{
    jbox *b = lua_touserdata(L, 1);
    json_decref(b->v);
    b->v = NULL;
    return 0;
}

/* Push an empty box; the caller stores a new json_t in it right away. */
static jbox *jbox_push(lua_State *L)
{
    jbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->v = NULL;
    luaL_setmetatable(L, MT_JBOX);
    return b;
}

static json_t *jbox_take(jbox *b)
{
    json_t *v = b->v;
    b->v = NULL;
    return v;
}

/* ---------------------------------------------------------------------------------------
 * Handles, references, expressions, sensitive values
 * --------------------------------------------------------------------------------------- */

static int is_udata(lua_State *L, int idx, const char *mt)
{
    return luaL_testudata(L, idx, mt) != NULL;
}

static const char *handle_address(lua_State *L, int idx)
{
    mle_lua *rt = rt_of(L);
    const int *h = lua_touserdata(L, idx);
    return json_string_value(json_array_get(rt->addrs, (size_t)*h));
}

/* Push "address.path" of the reference at idx. */
static const char *push_ref_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 1);
    lua_getiuservalue(L, idx, 2);
    lua_pushfstring(L, "%s.%s", lua_tostring(L, -2), lua_tostring(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return lua_tostring(L, -1);
}

static void push_ref(lua_State *L, const char *address, const char *path)
{
    lua_newuserdatauv(L, 0, 2);
    lua_pushstring(L, address);
    lua_setiuservalue(L, -2, 1);
    lua_pushstring(L, path);
    lua_setiuservalue(L, -2, 2);
    luaL_setmetatable(L, MT_REF);
}

/* Push the path step for the key at kidx: a string key, or a 1-based Lua index stored
 * 0-based. Keys a dot-separated path cannot express are refused. */
static void push_path_step(lua_State *L, int kidx, const char *base)
{
    if (lua_type(L, kidx) == LUA_TNUMBER) {
        int ok = 0;
        lua_Integer i = lua_tointegerx(L, kidx, &ok);
        if (!ok || i < 1)
            rt_error(L, "%s[%s]: a list index must be a whole number from 1", base,
                     lua_tostring(L, kidx));
        lua_pushinteger(L, i - 1);
        lua_tostring(L, -1);
        return;
    }
    if (lua_type(L, kidx) != LUA_TSTRING)
        rt_error(L, "%s: an attribute name must be a string or a list index, not a %s", base,
                 luaL_typename(L, kidx));
    const char *k = lua_tostring(L, kidx);
    if (!*k || strchr(k, '.'))
        rt_error(L, "%s[\"%s\"]: an attribute path cannot hold an empty key or a key with a dot",
                 base, k);
    lua_pushvalue(L, kidx);
}

static void push_expr(lua_State *L, int parts)
{
    lua_newuserdatauv(L, 0, 1);
    lua_pushvalue(L, parts);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, MT_EXPR);
}

static void push_sensitive(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (is_udata(L, idx, MT_SENSITIVE)) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_newuserdatauv(L, 0, 1);
    lua_pushvalue(L, idx);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, MT_SENSITIVE);
}

/* A short description of an opaque value for messages. Pushes nothing. Uses buf. */
static const char *describe(lua_State *L, int idx, char *buf, size_t n)
{
    idx = lua_absindex(L, idx);
    if (is_udata(L, idx, MT_RESOURCE))
        snprintf(buf, n, "a resource handle (%s)", handle_address(L, idx));
    else if (is_udata(L, idx, MT_REF)) {
        snprintf(buf, n, "a reference (%s)", push_ref_text(L, idx));
        lua_pop(L, 1);
    } else if (is_udata(L, idx, MT_EXPR))
        snprintf(buf, n, "an expression");
    else if (is_udata(L, idx, MT_SENSITIVE))
        snprintf(buf, n, "a sensitive value");
    else
        snprintf(buf, n, "a %s value", luaL_typename(L, idx));
    return buf;
}

/* Append the value at v to the expression parts table at `parts`, merging adjacent
 * literal strings. */
static void expr_append(lua_State *L, int parts, int v)
{
    v = lua_absindex(L, v);
    lua_Integer n = (lua_Integer)lua_rawlen(L, parts);
    int t = lua_type(L, v);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        lua_pushvalue(L, v);
        size_t len = 0;
        lua_tolstring(L, -1, &len);
        if (len == 0) {
            lua_pop(L, 1);
            return;
        }
        if (n > 0 && lua_rawgeti(L, parts, n) == LUA_TSTRING) {
            lua_insert(L, -2);
            lua_concat(L, 2);
            lua_rawseti(L, parts, n);
            return;
        }
        if (n > 0)
            lua_pop(L, 1);
        lua_rawseti(L, parts, n + 1);
        return;
    }
    if (is_udata(L, v, MT_REF)) {
        lua_pushvalue(L, v);
        lua_rawseti(L, parts, n + 1);
        return;
    }
    if (is_udata(L, v, MT_EXPR)) {
        lua_getiuservalue(L, v, 1);
        int src = lua_gettop(L);
        lua_Integer m = (lua_Integer)lua_rawlen(L, src);
        for (lua_Integer i = 1; i <= m; i++) {
            lua_rawgeti(L, src, i);
            expr_append(L, parts, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return;
    }
    char d[256];
    if (is_udata(L, v, MT_RESOURCE))
        rt_error(L, "cannot concatenate %s: use one of its attributes, e.g. %s.id",
                 describe(L, v, d, sizeof d), handle_address(L, v));
    rt_error(L, "attempt to concatenate %s with a reference", describe(L, v, d, sizeof d));
}

static void concat_values(lua_State *L)
{
    lua_settop(L, 2);
    if (is_udata(L, 1, MT_SENSITIVE) || is_udata(L, 2, MT_SENSITIVE)) {
        /* The whole result is secret: concatenate the inner values, wrap the result. */
        for (int i = 1; i <= 2; i++) {
            if (is_udata(L, i, MT_SENSITIVE)) {
                lua_getiuservalue(L, i, 1);
                lua_replace(L, i);
            }
        }
        lua_concat(L, 2);
        push_sensitive(L, -1);
        return;
    }
    lua_newtable(L);
    expr_append(L, 3, 1);
    expr_append(L, 3, 2);
    push_expr(L, 3);
}

/* `..` on a reference, expression or sensitive value.
 *
 * Debian 12's liblua5.4 (5.4.4-3+deb12u1) carries the upstream fix for CVE-2022-33099
 * (lua commit 42d40581) without its follow-up 603b2c64: luaV_concat keeps a pointer into
 * the Lua stack across the __concat call, so the process crashes if the stack is moved
 * (grown or shrunk) meanwhile. The stack cannot grow here thanks to reserve_stack; it
 * could still be shrunk by a GC step that one of our allocations triggers, so the
 * incremental collector pauses for the length of this call. (An error jumping out leaves
 * it paused until the next concatenation or the end of the entry; an emergency collection
 * still runs when memory runs short, and it never moves stacks.) */
static int mm_concat(lua_State *L)
{
    int gc_was_running = lua_gc(L, LUA_GCISRUNNING);
    if (gc_was_running)
        lua_gc(L, LUA_GCSTOP);
    concat_values(L);
    if (gc_was_running)
        lua_gc(L, LUA_GCRESTART);
    return 1;
}

static int mm_resource_index(lua_State *L)
{
    const char *address = handle_address(L, 1);
    push_path_step(L, 2, address);
    push_ref(L, address, lua_tostring(L, -1));
    return 1;
}

static int mm_ref_index(lua_State *L)
{
    lua_getiuservalue(L, 1, 1); /* 3: address */
    lua_getiuservalue(L, 1, 2); /* 4: path */
    const char *base = push_ref_text(L, 1);
    push_path_step(L, 2, base);
    lua_pushfstring(L, "%s.%s", lua_tostring(L, 4), lua_tostring(L, -1));
    push_ref(L, lua_tostring(L, 3), lua_tostring(L, -1));
    return 1;
}

static int mm_ref_eq(lua_State *L)
{
    if (!is_udata(L, 1, MT_REF) || !is_udata(L, 2, MT_REF)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    push_ref_text(L, 1);
    push_ref_text(L, 2);
    lua_pushboolean(L, lua_rawequal(L, -1, -2));
    return 1;
}

static int mm_resource_tostring(lua_State *L)
{
    lua_pushstring(L, handle_address(L, 1));
    return 1;
}

static int mm_ref_tostring(lua_State *L)
{
    lua_pushfstring(L, "${%s}", push_ref_text(L, 1));
    return 1;
}

static int mm_expr_tostring(lua_State *L)
{
    luaL_Buffer b;
    lua_getiuservalue(L, 1, 1);
    int parts = lua_gettop(L);
    luaL_buffinit(L, &b);
    lua_Integer n = (lua_Integer)lua_rawlen(L, parts);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, parts, i);
        if (is_udata(L, -1, MT_REF)) {
            lua_pushfstring(L, "${%s}", push_ref_text(L, -1));
            lua_replace(L, -3); /* drop the reference and its text, keep "${...}" */
            lua_pop(L, 1);
        }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return 1;
}

static int mm_sensitive_tostring(lua_State *L)
{
    lua_pushliteral(L, "(sensitive)");
    return 1;
}

/* sensitive(t).key is sensitive(t.key): a secret map stays secret field by field. */
static int mm_sensitive_index(lua_State *L)
{
    lua_getiuservalue(L, 1, 1);
    int t = lua_type(L, -1);
    if (t != LUA_TTABLE && t != LUA_TUSERDATA)
        return rt_error(L, "a sensitive %s cannot be indexed", luaL_typename(L, -1));
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    if (lua_isnil(L, -1))
        return 1;
    push_sensitive(L, -1);
    return 1;
}

/* Every other operation on an opaque value: say why it cannot work. */
static int mm_opaque(lua_State *L)
{
    char d[256];
    int i = (lua_type(L, 1) == LUA_TUSERDATA) ? 1 : 2;
    describe(L, i, d, sizeof d);
    if (is_udata(L, i, MT_SENSITIVE))
        return rt_error(L, "%s cannot be used in this operation: pass it as an attribute value, "
                           "concatenate it, or format it with mle.format", d);
    if (is_udata(L, i, MT_RESOURCE))
        return rt_error(L, "%s cannot be used in this operation: use one of its attributes, "
                           "e.g. %s.id", d, handle_address(L, i));
    return rt_error(L, "%s is known only at apply: it cannot be measured, iterated, compared or "
                       "used in arithmetic (use it as a value, with .. or mle.format)", d);
}

static int mm_readonly_handle(lua_State *L)
{
    char d[256];
    return rt_error(L, "%s is read-only: set attributes in the mle.resource call",
                    describe(L, 1, d, sizeof d));
}

static void set_opaque_ops(lua_State *L, int with_len)
{
    static const char *const ops[] = {"__add", "__sub", "__mul", "__div", "__mod", "__pow",
                                      "__unm", "__idiv", "__band", "__bor", "__bxor", "__shl",
                                      "__shr", "__bnot", "__lt", "__le", "__pairs", "__call",
                                      NULL};
    for (const char *const *op = ops; *op; op++) {
        lua_pushcfunction(L, mm_opaque);
        lua_setfield(L, -2, *op);
    }
    if (with_len) {
        lua_pushcfunction(L, mm_opaque);
        lua_setfield(L, -2, "__len");
    }
}

static void new_metatable(lua_State *L, const char *name, const luaL_Reg *fns, int opaque)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, fns, 0);
    if (opaque)
        set_opaque_ops(L, 1);
    /* getmetatable() on our values gives this string, so a stack cannot rewire them */
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

static void register_metatables(lua_State *L)
{
    static const luaL_Reg resource[] = {{"__index", mm_resource_index},
                                        {"__newindex", mm_readonly_handle},
                                        {"__tostring", mm_resource_tostring},
                                        {"__concat", mm_concat},
                                        {NULL, NULL}};
    static const luaL_Reg ref[] = {{"__index", mm_ref_index},
                                   {"__newindex", mm_readonly_handle},
                                   {"__tostring", mm_ref_tostring},
                                   {"__concat", mm_concat},
                                   {"__eq", mm_ref_eq},
                                   {NULL, NULL}};
    static const luaL_Reg expr[] = {{"__index", mm_opaque},
                                    {"__newindex", mm_readonly_handle},
                                    {"__tostring", mm_expr_tostring},
                                    {"__concat", mm_concat},
                                    {NULL, NULL}};
    static const luaL_Reg sens[] = {{"__index", mm_sensitive_index},
                                    {"__newindex", mm_readonly_handle},
                                    {"__tostring", mm_sensitive_tostring},
                                    {"__concat", mm_concat},
                                    {NULL, NULL}};
    static const luaL_Reg box[] = {{"__gc", jbox_gc}, {NULL, NULL}};
    new_metatable(L, MT_RESOURCE, resource, 1);
    new_metatable(L, MT_REF, ref, 1);
    new_metatable(L, MT_EXPR, expr, 1);
    luaL_newmetatable(L, MT_SENSITIVE);
    luaL_setfuncs(L, sens, 0);
    set_opaque_ops(L, 0); /* no __len: ipairs over a secret list works through __index */
    lua_pushstring(L, MT_SENSITIVE);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    new_metatable(L, MT_JBOX, box, 0);
}

/* ---------------------------------------------------------------------------------------
 * Lua -> JSON
 * --------------------------------------------------------------------------------------- */

typedef struct conv {
    mle_lua *rt;
    const char *what;   /* "attribute", "output \"vpc_id\"", "mle.jsonencode" ... */
    int markers;        /* references, expressions, sensitive values become markers */
    int sensitive_seen; /* markers == 0: a sensitive value was unwrapped */
    const char *skip;   /* a key of the top-level table to leave out (depends_on) */
    size_t plen;
    char path[256];     /* where in the value we are, for messages: "tags.Name", "ports[2]" */
} conv;

static int conv_fail(lua_State *L, conv *cx, const char *fmt, ...) MLE_PRINTF(3, 4);
static int conv_fail(lua_State *L, conv *cx, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cx->plen)
        return rt_error(L, "%s \"%s\": %s", cx->what, cx->path, msg);
    return rt_error(L, "%s: %s", cx->what, msg);
}

/* Account for n bytes appended to the path (snprintf's answer; truncation keeps it full). */
static void path_grow(conv *cx, int n)
{
    size_t room = sizeof cx->path - 1;
    if (n > 0)
        cx->plen = cx->plen + (size_t)n < room ? cx->plen + (size_t)n : room;
}

static size_t path_key(conv *cx, const char *k)
{
    size_t old = cx->plen;
    path_grow(cx, snprintf(cx->path + old, sizeof cx->path - old, "%s%s", old ? "." : "", k));
    return old;
}

static size_t path_index(conv *cx, lua_Integer i)
{
    size_t old = cx->plen;
    path_grow(cx, snprintf(cx->path + old, sizeof cx->path - old, "[%lld]", (long long)i));
    return old;
}

static void path_pop(conv *cx, size_t old)
{
    cx->plen = old;
    cx->path[old] = 0;
}

/* Attach v (new reference, may be NULL on failure) to parent: append to an array, or set
 * `key` of an object. Nothing between creating v and this call may raise. */
static void attach(lua_State *L, conv *cx, json_t *parent, const char *key, size_t klen,
                   json_t *v)
{
    if (!v)
        conv_fail(L, cx, "a string that is not valid UTF-8 cannot be a value (JSON holds text)");
    int rc = json_is_array(parent) ? json_array_append_new(parent, v)
                                   : json_object_setn_new(parent, key, klen, v);
    if (rc)
        conv_fail(L, cx, "the key is not valid UTF-8");
}

static void conv_value(lua_State *L, conv *cx, int idx, json_t *parent, const char *key,
                       size_t klen, int depth);

typedef struct skey {
    const char *s;
    size_t n;
} skey;

static int skey_cmp(const void *a, const void *b)
{
    const skey *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Classify the table at idx: a list (keys 1..n, returns n > 0 in *nlist) or a map (string
 * keys, count in *nmap). A mixed table is an error naming the key. */
static void table_shape(lua_State *L, conv *cx, int idx, int depth, lua_Integer *nlist,
                        size_t *nmap)
{
    lua_Integer ints = 0, maxi = 0;
    size_t nstr = 0;
    const char *skey_name = NULL;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            if (depth == 0 && cx->skip && !strcmp(k, cx->skip))
                continue;
            if (!skey_name)
                skey_name = k;
            nstr++;
        } else if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k < 1)
                conv_fail(L, cx, "list index %lld is not a position 1..n", (long long)k);
            ints++;
            if (k > maxi)
                maxi = k;
        } else {
            conv_fail(L, cx, "a table key must be a string or a list position, not a %s",
                      luaL_typename(L, -1));
        }
        if (ints && nstr)
            conv_fail(L, cx, "the table mixes list items and the key \"%s\": use either a list "
                             "{a, b} or a map {key = value}", skey_name);
    }
    if (ints && maxi != ints)
        conv_fail(L, cx, "the list has a hole: %lld items but an item at index %lld (a nil "
                         "inside a list?)", (long long)ints, (long long)maxi);
    *nlist = ints;
    *nmap = nstr;
}

static const char *const reserved_keys[] = {"$ref", "$expr", "$sensitive", NULL};

static void conv_table(lua_State *L, conv *cx, int idx, json_t *parent, const char *key,
                       size_t klen, int depth)
{
    if (depth >= MAX_DEPTH)
        conv_fail(L, cx, "the value nests deeper than %d levels (does a table contain itself?)",
                  MAX_DEPTH);
    luaL_checkstack(L, 8, "value nesting");
    lua_Integer nlist = 0;
    size_t nmap = 0;
    table_shape(L, cx, idx, depth, &nlist, &nmap);
    if (nlist > 0) {
        json_t *arr = json_array();
        attach(L, cx, parent, key, klen, arr);
        for (lua_Integer i = 1; i <= nlist; i++) {
            size_t old = path_index(cx, i);
            lua_rawgeti(L, idx, i);
            conv_value(L, cx, lua_gettop(L), arr, NULL, 0, depth + 1);
            lua_pop(L, 1);
            path_pop(cx, old);
        }
        return;
    }
    /* A map. An empty table is an empty object (the lua-cjson convention). */
    json_t *obj = json_object();
    attach(L, cx, parent, key, klen, obj);
    if (nmap == 0)
        return;
    /* Keys sorted, so the JSON of a stack is the same on every run (Lua's table order is
     * not). The key strings stay alive: the table holds them. */
    skey *keys = lua_newuserdatauv(L, nmap * sizeof *keys, 0);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || n == nmap)
            continue;
        const char *k = lua_tolstring(L, -1, &keys[n].n);
        if (depth == 0 && cx->skip && !strcmp(k, cx->skip))
            continue;
        keys[n++].s = k;
    }
    qsort(keys, n, sizeof *keys, skey_cmp);
    if (n == 1 && in_list(keys[0].s, reserved_keys))
        conv_fail(L, cx, "the key \"%s\" alone in a table is reserved for mlengine markers",
                  keys[0].s);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, keys[i].s, keys[i].n);
        lua_rawget(L, idx);
        size_t old = path_key(cx, keys[i].s);
        conv_value(L, cx, lua_gettop(L), obj, keys[i].s, keys[i].n, depth + 1);
        path_pop(cx, old);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* {"$ref": {"address": .., "path": ..}} for the reference at idx. Raises nothing. */
static json_t *ref_marker(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    lua_getiuservalue(L, idx, 2);
    json_t *m = json_pack("{s:{s:s,s:s}}", "$ref", "address", lua_tostring(L, -2), "path",
                          lua_tostring(L, -1));
    lua_pop(L, 2);
    return m;
}

static void conv_expr(lua_State *L, conv *cx, int idx, json_t *parent, const char *key,
                      size_t klen)
{
    json_t *m = json_object();
    attach(L, cx, parent, key, klen, m);
    json_t *arr = json_array();
    json_object_set_new(m, "$expr", arr);
    lua_getiuservalue(L, idx, 1);
    int parts = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, parts);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, parts, i);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len = 0;
            const char *s = lua_tolstring(L, -1, &len);
            attach(L, cx, arr, NULL, 0, json_stringn(s, len));
        } else {
            attach(L, cx, arr, NULL, 0, ref_marker(L, lua_gettop(L)));
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void conv_userdata(lua_State *L, conv *cx, int idx, json_t *parent, const char *key,
                          size_t klen, int depth)
{
    char d[256];
    if (is_udata(L, idx, MT_RESOURCE))
        conv_fail(L, cx, "%s cannot be a value: use %s.id or another attribute",
                  describe(L, idx, d, sizeof d), handle_address(L, idx));
    if (is_udata(L, idx, MT_SENSITIVE)) {
        lua_getiuservalue(L, idx, 1);
        int in = lua_gettop(L);
        if (!cx->markers) {
            cx->sensitive_seen = 1;
            conv_value(L, cx, in, parent, key, klen, depth);
        } else {
            json_t *m = json_object();
            attach(L, cx, parent, key, klen, m);
            conv_value(L, cx, in, m, "$sensitive", strlen("$sensitive"), depth + 1);
        }
        lua_pop(L, 1);
        return;
    }
    int ref = is_udata(L, idx, MT_REF);
    if (ref || is_udata(L, idx, MT_EXPR)) {
        if (!cx->markers)
            conv_fail(L, cx, "%s is known only at apply and cannot be encoded here: pass the "
                             "table itself as the attribute value (a nested value) instead",
                      describe(L, idx, d, sizeof d));
        if (ref)
            attach(L, cx, parent, key, klen, ref_marker(L, idx));
        else
            conv_expr(L, cx, idx, parent, key, klen);
        return;
    }
    conv_fail(L, cx, "%s cannot be a value", describe(L, idx, d, sizeof d));
}

static void conv_value(lua_State *L, conv *cx, int idx, json_t *parent, const char *key,
                       size_t klen, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        attach(L, cx, parent, key, klen, json_null());
        return;
    case LUA_TBOOLEAN:
        attach(L, cx, parent, key, klen, json_boolean(lua_toboolean(L, idx)));
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            attach(L, cx, parent, key, klen, json_integer((json_int_t)lua_tointeger(L, idx)));
            return;
        }
        if (!isfinite(lua_tonumber(L, idx)))
            conv_fail(L, cx, "%s is not a finite number (JSON has no NaN or infinity)",
                      lua_tostring(L, idx));
        attach(L, cx, parent, key, klen, json_real((double)lua_tonumber(L, idx)));
        return;
    case LUA_TSTRING: {
        size_t len = 0;
        const char *s = lua_tolstring(L, idx, &len);
        attach(L, cx, parent, key, klen, json_stringn(s, len));
        return;
    }
    case LUA_TTABLE:
        conv_table(L, cx, idx, parent, key, klen, depth);
        return;
    case LUA_TLIGHTUSERDATA:
        if (is_null(L, cx->rt, idx)) {
            attach(L, cx, parent, key, klen, json_null());
            return;
        }
        break;
    case LUA_TUSERDATA:
        conv_userdata(L, cx, idx, parent, key, klen, depth);
        return;
    default:
        break;
    }
    conv_fail(L, cx, "a %s cannot be a value", luaL_typename(L, idx));
}

/* Convert the value at idx. Pushes a box that owns the result until jbox_take. */
static jbox *to_json(lua_State *L, conv *cx, int idx)
{
    idx = lua_absindex(L, idx);
    jbox *b = jbox_push(L);
    b->v = json_array();
    conv_value(L, cx, idx, b->v, NULL, 0, 0);
    json_t *item = json_incref(json_array_get(b->v, 0));
    json_decref(b->v);
    b->v = item;
    return b;
}

static int json_has_sensitive(const json_t *v)
{
    if (mle_marker_is_sensitive(v))
        return 1;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (json_has_sensitive(x)) return 1;
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (json_has_sensitive(x)) return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * JSON -> Lua (JSON null becomes mle.null so that explicit nulls survive)
 * --------------------------------------------------------------------------------------- */

static void push_json(lua_State *L, const json_t *v)
{
    luaL_checkstack(L, 4, "JSON nesting");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            push_json(L, json_object_iter_value(it));
            lua_rawset(L, -3);
        }
        return;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        return;
    case JSON_REAL:
        lua_pushnumber(L, (lua_Number)json_real_value(v));
        return;
    case JSON_TRUE:
    case JSON_FALSE:
        lua_pushboolean(L, json_is_true(v));
        return;
    case JSON_NULL:
        lua_pushlightuserdata(L, &rt_of(L)->null_tag);
        return;
    }
}

/* ---------------------------------------------------------------------------------------
 * mle.resource, mle.data, mle.address
 * --------------------------------------------------------------------------------------- */

static void require_phase(lua_State *L, const char *fn)
{
    if (rt_of(L)->phase != PH_EVAL)
        rt_error(L, "%s can only be called while the stack is evaluated (not in a hooks file "
                    "or a hook)", fn);
}

static int is_type_name(const char *s)
{
    if (!(*s >= 'a' && *s <= 'z'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    return v ? v : json_string("?");
}

static void deps_add(lua_State *L, json_t *deps, const char *address)
{
    size_t i;
    json_t *x;
    json_array_foreach(deps, i, x) if (!strcmp(json_string_value(x), address)) return;
    json_t *s = json_string(address);
    if (!s)
        rt_error(L, "depends_on: the address is not valid UTF-8");
    json_array_append_new(deps, s);
}

static void deps_item(lua_State *L, json_t *deps, int idx, lua_Integer pos)
{
    char d[256];
    if (is_udata(L, idx, MT_RESOURCE)) {
        deps_add(L, deps, handle_address(L, idx));
        return;
    }
    if (lua_type(L, idx) == LUA_TSTRING && lua_rawlen(L, idx) > 0) {
        deps_add(L, deps, lua_tostring(L, idx));
        return;
    }
    const char *hint = is_udata(L, idx, MT_REF) ? ": use the resource handle itself" : "";
    rt_error(L, "depends_on[%lld]: expected a resource handle or an address string, got %s%s",
             (long long)pos, describe(L, idx, d, sizeof d), hint);
}

/* depends_on: one handle or address, or a list of them. */
static void conv_depends(lua_State *L, int v, json_t *deps)
{
    if (lua_type(L, v) != LUA_TTABLE) {
        deps_item(L, deps, v, 1);
        return;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, v), count = 0;
    lua_pushnil(L);
    while (lua_next(L, v)) {
        lua_pop(L, 1);
        count++;
    }
    if (count != n)
        rt_error(L, "depends_on must be a list of resource handles or addresses");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, v, i);
        deps_item(L, deps, lua_gettop(L), i);
        lua_pop(L, 1);
    }
}

static void run_validate(lua_State *L, const char *type, int data, const json_t *config,
                         const char *address, const char *where)
{
    mle_lua *rt = rt_of(L);
    if (!rt->validate)
        return;
    mle_error *e = NULL;
    if (rt->validate(rt->validate_ud, type, data, config, &e) == 0) {
        mle_error_free(e);
        return;
    }
    if (!e)
        e = mle_error_new(MLE_E_INVALID, "%s is not valid", address);
    mle_error_prefix(e, "%s: ", where);
    if (!e->address)
        mle_error_set_address(e, address);
    raise_error(L, e);
}

static int declare(lua_State *L, int data)
{
    mle_lua *rt = rt_of(L);
    const char *fn = data ? "mle.data" : "mle.resource";
    require_phase(L, fn);
    const char *type = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    if (!is_type_name(type))
        return rt_error(L, "%s: type \"%s\" is not valid: use lower-case letters, digits and '_' "
                           "(e.g. \"aws_vpc\")", fn, type);
    if (!is_ident(name, 1))
        return rt_error(L, "%s(\"%s\", \"%s\"): the name is not valid: start with a letter or "
                           "'_', then letters, digits, '_' or '-'", fn, type, name);
    const char *address = data ? lua_pushfstring(L, "data.%s.%s", type, name)
                               : lua_pushfstring(L, "%s.%s", type, name); /* 4 */
    json_t *first = json_object_get(rt->addr_where, address);
    if (first)
        return rt_error(L, "duplicate resource address \"%s\" (first declared at %s)", address,
                        json_string_value(first));
    push_where(L); /* 5 */
    const char *where = lua_tostring(L, 5);
    const char *what = lua_pushfstring(L, "%s attribute", address); /* 6 */

    jbox *deps = jbox_push(L); /* 7 */
    deps->v = json_array();
    jbox *cfg;
    if (lua_istable(L, 3)) {
        lua_pushliteral(L, "depends_on");
        if (lua_rawget(L, 3) != LUA_TNIL)
            conv_depends(L, lua_gettop(L), deps->v);
        lua_pop(L, 1);
        conv cx = {.rt = rt, .what = what, .markers = 1, .skip = "depends_on"};
        cfg = to_json(L, &cx, 3);
        if (!json_is_object(cfg->v))
            return rt_error(L, "%s(\"%s\", \"%s\"): attributes must be a table of name = value, "
                               "not a list", fn, type, name);
    } else {
        cfg = jbox_push(L);
        cfg->v = json_object();
    }
    run_validate(L, type, data, cfg->v, address, where);

    int *h = lua_newuserdatauv(L, sizeof *h, 0);
    luaL_setmetatable(L, MT_RESOURCE);
    *h = (int)json_array_size(rt->addrs);
    /* From here on nothing raises: commit the declaration. */
    json_t *res = json_object();
    json_object_set_new(res, "address", json_string(address));
    json_object_set_new(res, "type", json_string(type));
    json_object_set_new(res, "name", json_string(name));
    json_object_set_new(res, "data", json_boolean(data));
    json_object_set_new(res, "config", jbox_take(cfg));
    json_object_set_new(res, "depends_on", jbox_take(deps));
    json_object_set_new(res, "where", jstr(where));
    json_array_append_new(rt->resources, res);
    json_array_append_new(rt->addrs, json_string(address));
    json_object_set_new(rt->addr_where, address, jstr(where));
    return 1;
}

static int l_resource(lua_State *L)
{
    return declare(L, 0);
}

static int l_data(lua_State *L)
{
    return declare(L, 1);
}

static int l_address(lua_State *L)
{
    if (is_udata(L, 1, MT_RESOURCE)) {
        lua_pushstring(L, handle_address(L, 1));
        return 1;
    }
    if (is_udata(L, 1, MT_REF)) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    return luaL_typeerror(L, 1, "resource handle or reference");
}

static int l_sensitive(lua_State *L)
{
    luaL_checkany(L, 1);
    if (lua_isnil(L, 1))
        return rt_error(L, "mle.sensitive needs a value (got nil)");
    if (is_udata(L, 1, MT_RESOURCE))
        return rt_error(L, "mle.sensitive: a resource handle cannot be a value: use one of its "
                           "attributes, e.g. %s.id", handle_address(L, 1));
    push_sensitive(L, 1);
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * mle.format (and string.format in the sandbox): references make an expression
 * --------------------------------------------------------------------------------------- */

/* Format one non-reference argument with its own conversion through the real
 * string.format (upvalue 1). Pushes the string. */
static void format_one(lua_State *L, const char *spec, size_t speclen, int arg)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushlstring(L, spec, speclen);
    lua_pushvalue(L, arg);
    lua_call(L, 2, 1);
}

static void format_expr(lua_State *L, int nargs)
{
    size_t flen = 0;
    const char *fmt = luaL_checklstring(L, 1, &flen), *p = fmt, *end = fmt + flen;
    lua_newtable(L);
    int parts = lua_gettop(L);
    int arg = 2;
    while (p < end) {
        const char *pct = memchr(p, '%', (size_t)(end - p));
        size_t lit = pct ? (size_t)(pct - p) : (size_t)(end - p);
        if (lit) {
            lua_pushlstring(L, p, lit);
            expr_append(L, parts, -1);
            lua_pop(L, 1);
        }
        if (!pct)
            break;
        if (pct + 1 < end && pct[1] == '%') {
            lua_pushliteral(L, "%");
            expr_append(L, parts, -1);
            lua_pop(L, 1);
            p = pct + 2;
            continue;
        }
        const char *q = pct + 1;
        while (q < end && strchr("-+ #0", *q))
            q++;
        while (q < end && isdigit((unsigned char)*q))
            q++;
        if (q < end && *q == '.')
            for (q++; q < end && isdigit((unsigned char)*q); q++)
                ;
        if (q >= end)
            rt_error(L, "mle.format: the format ends inside a conversion (\"%s\")", pct);
        if (arg > nargs)
            luaL_argerror(L, arg, "no value");
        if (is_udata(L, arg, MT_REF) || is_udata(L, arg, MT_EXPR)) {
            if (q != pct + 1 || (*q != 's' && *q != 'd'))
                rt_error(L, "mle.format: argument #%d is known only at apply: format it with "
                            "%%s or %%d, not %.*s", arg, (int)(q - pct + 1), pct);
            expr_append(L, parts, arg);
        } else {
            format_one(L, pct, (size_t)(q - pct + 1), arg);
            expr_append(L, parts, -1);
            lua_pop(L, 1);
        }
        arg++;
        p = q + 1;
    }
    push_expr(L, parts);
}

static int l_format(lua_State *L)
{
    int n = lua_gettop(L), refs = 0, secret = 0;
    char d[256];
    for (int i = 2; i <= n; i++) {
        if (is_udata(L, i, MT_SENSITIVE)) {
            lua_getiuservalue(L, i, 1);
            lua_replace(L, i);
            secret = 1;
        }
        if (is_udata(L, i, MT_RESOURCE))
            return rt_error(L, "format: argument #%d is %s: use one of its attributes, e.g. "
                               "%s.id", i, describe(L, i, d, sizeof d), handle_address(L, i));
        if (is_udata(L, i, MT_REF) || is_udata(L, i, MT_EXPR))
            refs = 1;
    }
    if (refs) {
        format_expr(L, n);
    } else {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_insert(L, 1);
        lua_call(L, n, 1);
    }
    if (secret)
        push_sensitive(L, -1);
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * mle.var
 * --------------------------------------------------------------------------------------- */

static const char *const var_types[] = {"string", "number", "bool", "list", "map", NULL};

/* How a given value reads in a message; a secret is never echoed. */
static void shown_value(const json_t *v, int secret, char *buf, size_t n)
{
    if (secret)
        snprintf(buf, n, "the given (sensitive) value");
    else if (json_is_string(v))
        snprintf(buf, n, "\"%.60s\"", json_string_value(v));
    else
        snprintf(buf, n, "a JSON %s",
                 json_is_object(v) ? "object" : json_is_array(v) ? "array"
                 : json_is_boolean(v) ? "boolean" : json_is_null(v) ? "null" : "number");
}

static json_t *parse_number(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*s && !*end && errno == 0)
        return json_integer(i);
    errno = 0;
    double d = strtod(s, &end);
    if (*s && !*end && errno == 0 && isfinite(d))
        return json_real(d);
    return NULL;
}

/* Convert a variable's value to `type` ("table": a list or a map, inferred from an empty
 * default). New reference, or NULL with msg. */
static json_t *var_convert(const json_t *v, const char *type, const char *name, int secret,
                           char *msg, size_t msz)
{
    char shown[128];
    shown_value(v, secret, shown, sizeof shown);
    const char *s = json_string_value(v);
    if (!type)
        return json_incref((json_t *)v);
    if (!strcmp(type, "string")) {
        char buf[64];
        if (s)
            return json_incref((json_t *)v);
        if (json_is_integer(v))
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(buf, sizeof buf, "%s", json_is_true(v) ? "true" : "false");
        else
            goto bad;
        return json_string(buf);
    }
    if (!strcmp(type, "number")) {
        if (json_is_number(v))
            return json_incref((json_t *)v);
        json_t *r = s ? parse_number(s) : NULL;
        if (r)
            return r;
        goto bad;
    }
    if (!strcmp(type, "bool")) {
        if (json_is_boolean(v))
            return json_incref((json_t *)v);
        if (s && !strcmp(s, "true"))
            return json_true();
        if (s && !strcmp(s, "false"))
            return json_false();
        goto bad;
    }
    /* list, map, table */
    int want_list = !strcmp(type, "list"), want_map = !strcmp(type, "map");
    json_t *r = s ? json_loads(s, 0, NULL) : json_incref((json_t *)v);
    if (r && ((json_is_array(r) && !want_map) || (json_is_object(r) && !want_list)))
        return r;
    json_decref(r);
bad:
    if (!strcmp(type, "list") || !strcmp(type, "map") || !strcmp(type, "table"))
        snprintf(msg, msz, "variable \"%s\": %s is not a %s: give JSON text such as %s", name,
                 shown, type, !strcmp(type, "map") ? "{\"team\":\"ml\"}" : "[\"a\",\"b\"]");
    else
        snprintf(msg, msz, "variable \"%s\": %s is not a %s%s", name, shown, type,
                 !strcmp(type, "bool") ? " (use true or false)" : "");
    return NULL;
}

/* The type a default implies when no `type` is given, so that --var count=3 is a number
 * when the default is one. */
static const char *infer_type(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (is_udata(L, idx, MT_SENSITIVE)) {
        lua_getiuservalue(L, idx, 1);
        const char *t = infer_type(L, -1);
        lua_pop(L, 1);
        return t;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: return "number";
    case LUA_TBOOLEAN: return "bool";
    case LUA_TSTRING: return "string";
    case LUA_TTABLE:
        if (lua_rawlen(L, idx) > 0)
            return "list";
        lua_pushnil(L);
        if (lua_next(L, idx)) {
            lua_pop(L, 2);
            return "map";
        }
        return "table";
    default: return NULL;
    }
}

/* Refuse option keys that are not in `allowed` (a typo would otherwise be silent). */
static void check_options(lua_State *L, int idx, const char *fn, const char *const *allowed)
{
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !in_list(lua_tostring(L, -1), allowed))
            rt_error(L, "%s: unknown option \"%s\"", fn, luaL_tolstring(L, -1, NULL));
    }
}

static int opt_field(lua_State *L, int opts, const char *key)
{
    if (lua_isnoneornil(L, opts)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, opts, key);
}

static int l_var(lua_State *L)
{
    static const char *const opts_keys[] = {"default", "description", "sensitive", "type", NULL};
    mle_lua *rt = rt_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    if (!is_ident(name, 0))
        return rt_error(L, "mle.var: \"%s\" is not a valid variable name: use letters, digits "
                           "and '_'", name);
    check_options(L, 2, "mle.var", opts_keys);
    opt_field(L, 2, "default");   /* 3 */
    opt_field(L, 2, "sensitive"); /* 4 */
    opt_field(L, 2, "type");      /* 5 */
    int secret = lua_toboolean(L, 4) || is_udata(L, 3, MT_SENSITIVE);
    const char *type = lua_isnil(L, 5) ? NULL : luaL_checkstring(L, 5);
    if (type && !in_list(type, var_types))
        return rt_error(L, "mle.var(\"%s\"): unknown type \"%s\": use string, number, bool, list "
                           "or map", name, type);
    if (!type && !lua_isnil(L, 3))
        type = infer_type(L, 3);

    char msg[512];
    jbox *val = jbox_push(L); /* 6 */
    const json_t *given = json_object_get(rt->vars, name);
    if (given) {
        val->v = var_convert(given, type, name, secret, msg, sizeof msg);
    } else if (!lua_isnil(L, 3)) {
        conv cx = {.rt = rt, .what = lua_pushfstring(L, "variable \"%s\" default", name)};
        jbox *def = to_json(L, &cx, 3);
        secret = secret || cx.sensitive_seen;
        val->v = var_convert(def->v, type, name, secret, msg, sizeof msg);
    } else {
        return rt_error(L, "variable \"%s\" is required: set it with --var %s=VALUE, "
                           "MLENGINE_VAR_%s or a --var-file", name, name, name);
    }
    if (!val->v)
        return rt_error(L, "%s", msg);
    json_object_set_new(rt->variables, name,
                        json_pack("{s:O,s:b}", "value", val->v, "sensitive", secret));
    push_json(L, val->v);
    if (secret)
        push_sensitive(L, -1);
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * mle.output, mle.driver, mle.hook
 * --------------------------------------------------------------------------------------- */

static int l_output(lua_State *L)
{
    static const char *const opts_keys[] = {"sensitive", "description", NULL};
    mle_lua *rt = rt_of(L);
    require_phase(L, "mle.output");
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 3);
    if (!is_ident(name, 1))
        return rt_error(L, "mle.output: \"%s\" is not a valid output name", name);
    json_t *first = json_object_get(rt->outputs, name);
    if (first)
        return rt_error(L, "duplicate output \"%s\" (first declared at %s)", name,
                        json_string_value(json_object_get(first, "where")));
    if (lua_isnil(L, 2))
        return rt_error(L, "output \"%s\" has no value (nil)", name);
    check_options(L, 3, "mle.output", opts_keys);
    opt_field(L, 3, "sensitive");   /* 4 */
    opt_field(L, 3, "description"); /* 5 */
    const char *desc = lua_isnil(L, 5) ? NULL : luaL_checkstring(L, 5);
    push_where(L); /* 6 */
    conv cx = {.rt = rt, .what = lua_pushfstring(L, "output \"%s\"", name), .markers = 1};
    jbox *val = to_json(L, &cx, 2);
    /* An output built from a secret is secret, whatever the flag says. */
    int secret = lua_toboolean(L, 4) || json_has_sensitive(val->v);
    json_t *o = json_pack("{s:o,s:b,s:o}", "value", jbox_take(val), "sensitive", secret, "where",
                          jstr(lua_tostring(L, 6)));
    if (desc)
        json_object_set_new(o, "description", jstr(desc));
    json_object_set_new(rt->outputs, name, o);
    return 0;
}

static int l_driver(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    require_phase(L, "mle.driver");
    const char *name = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    if (!is_type_name(name))
        return rt_error(L, "mle.driver: \"%s\" is not a valid driver name", name);
    json_t *first = json_object_get(rt->driver_where, name);
    if (first)
        return rt_error(L, "driver \"%s\" is configured twice (first at %s)", name,
                        json_string_value(first));
    push_where(L); /* 3 */
    conv cx = {.rt = rt, .what = lua_pushfstring(L, "driver \"%s\" option", name), .markers = 1};
    jbox *o;
    if (lua_isnil(L, 2)) {
        o = jbox_push(L);
        o->v = json_object();
    } else {
        o = to_json(L, &cx, 2);
    }
    if (!json_is_object(o->v))
        return rt_error(L, "mle.driver(\"%s\"): options must be a table of name = value", name);
    json_object_set_new(rt->drivers, name, jbox_take(o));
    json_object_set_new(rt->driver_where, name, jstr(lua_tostring(L, 3)));
    return 0;
}

/* mle.cloud("aws"): the cloud this stack targets, so add-on drivers that do not support it
 * are refused with their own explanation (Karpenter is AWS-only). Once per stack. */
static int l_cloud(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    require_phase(L, "mle.cloud");
    const char *name = luaL_checkstring(L, 1);
    if (!is_type_name(name))
        return rt_error(L, "mle.cloud: \"%s\" is not a cloud name (aws, azure, gcp)", name);
    if (rt->cloud && strcmp(rt->cloud, name) != 0)
        return rt_error(L, "mle.cloud: the stack already targets \"%s\"", rt->cloud);
    free(rt->cloud);
    rt->cloud = xstrdup(name);
    return 0;
}

static int l_hook(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    if (rt->phase != PH_EVAL && rt->phase != PH_HOOKS_FILE)
        return rt_error(L, "mle.hook cannot be called from inside a hook");
    if (!in_list(name, hook_names))
        return rt_error(L, "mle.hook: unknown hook \"%s\": use pre_plan, post_plan, pre_apply, "
                           "post_apply or on_resource", name);
    push_registry(L, rt->ref_hooks);
    if (lua_getfield(L, 3, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 3, name);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    size_t i;
    json_t *x;
    json_array_foreach(rt->hooks, i, x) if (!strcmp(json_string_value(x), name)) return 0;
    json_array_append_new(rt->hooks, json_string(name));
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Files: mle.file, the stack file, modules. Paths stay inside their folder.
 * --------------------------------------------------------------------------------------- */

/* Push the contents of the regular file at `path` as a Lua string. Returns 0, or an errno
 * value with nothing pushed. The buffer is a userdata, so a Lua error leaks nothing; the
 * descriptor is closed before anything can raise. */
static int push_file(lua_State *L, const char *path)
{
    mle_lua *rt = rt_of(L);
    struct stat st;
    if (stat(path, &st) != 0)
        return errno;
    if (S_ISDIR(st.st_mode))
        return EISDIR;
    if (!S_ISREG(st.st_mode))
        return EINVAL;
    if ((uint64_t)st.st_size > (uint64_t)rt->mem_limit)
        return EFBIG;
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = lua_newuserdatauv(L, size ? size : 1, 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        lua_pop(L, 1);
        return e;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            lua_pop(L, 1);
            return e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    lua_pushlstring(L, buf, got);
    lua_remove(L, -2);
    return 0;
}

static int path_inside(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (!strcmp(root, "/"))
        return 1;
    return !strncmp(real, root, n) && (real[n] == '/' || real[n] == 0);
}

/* Resolve `rel` against `root` (symbolic links followed) into out[PATH_MAX]; the result must
 * stay inside root. Returns 0, or -1 with msg. */
static int resolve_inside(const char *root, const char *rel, const char *what, char *out,
                          char *msg, size_t msz)
{
    char joined[PATH_MAX];
    int n = rel[0] == '/' ? snprintf(joined, sizeof joined, "%s", rel)
                          : snprintf(joined, sizeof joined, "%s/%s", root, rel);
    if (!*rel || n < 0 || (size_t)n >= sizeof joined) {
        snprintf(msg, msz, "\"%s\" is not a usable path", rel);
        return -1;
    }
    if (!realpath(joined, out)) {
        snprintf(msg, msz, "\"%s\": %s (looked in %s)", rel, strerror(errno), what);
        return -1;
    }
    if (!path_inside(root, out)) {
        snprintf(msg, msz, "\"%.400s\" resolves to %.600s, outside %s (%.600s): only files "
                           "inside it can be read (symbolic links included)", rel, out, what, root);
        return -1;
    }
    return 0;
}

static int l_file(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    const char *rel = luaL_checkstring(L, 1);
    char real[PATH_MAX], msg[MSG_MAX];
    if (!rt->stack_dir)
        return rt_error(L, "mle.file: the stack's folder is unknown");
    if (resolve_inside(rt->stack_dir, rel, "the stack's folder", real, msg, sizeof msg))
        return rt_error(L, "mle.file: %s", msg);
    int e = push_file(L, real);
    if (e)
        return rt_error(L, "mle.file(\"%s\"): %s", rel, strerror(e));
    return 1;
}

/* mle.dir("manifests", ".yaml"): the names of the regular files in a folder inside the
 * stack's folder, sorted (so plans do not depend on the file system's order), optionally
 * only those ending with a suffix. For a folder of manifests. */
static int l_dir(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    const char *rel = luaL_checkstring(L, 1);
    const char *suffix = luaL_optstring(L, 2, "");
    char real[PATH_MAX], msg[MSG_MAX];
    if (!rt->stack_dir)
        return rt_error(L, "mle.dir: the stack's folder is unknown");
    if (resolve_inside(rt->stack_dir, rel, "the stack's folder", real, msg, sizeof msg))
        return rt_error(L, "mle.dir: %s", msg);
    struct dirent **list = NULL;
    int n = scandir(real, &list, NULL, alphasort);
    if (n < 0)
        return rt_error(L, "mle.dir(\"%s\"): %s", rel, strerror(errno));
    lua_createtable(L, n, 0);
    size_t slen = strlen(suffix);
    lua_Integer k = 1;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        char path[PATH_MAX];
        struct stat st;
        int keep = name[0] != '.' && len >= slen && strcmp(name + len - slen, suffix) == 0 &&
                   snprintf(path, sizeof path, "%s/%s", real, name) < (int)sizeof path &&
                   stat(path, &st) == 0 && S_ISREG(st.st_mode);
        if (keep) {
            lua_pushstring(L, name);
            lua_rawseti(L, -2, k++);
        }
        free(list[i]);
    }
    free(list);
    return 1;
}

/* Compile text (never bytecode) into a function whose _ENV is the sandbox. */
static void load_chunk(lua_State *L, const char *src, size_t len, const char *chunkname)
{
    mle_lua *rt = rt_of(L);
    if (len > 0 && src[0] == '#') { /* a #! line: skip it, keep its newline for line numbers */
        const char *nl = memchr(src, '\n', len);
        len = nl ? len - (size_t)(nl - src) : 0;
        src = nl ? nl : src;
    }
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK)
        lua_error(L);
    push_registry(L, rt->ref_env);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
}

static int valid_module_name(const char *s)
{
    int after_dot = 1;
    for (; *s; s++) {
        if (*s == '.') {
            if (after_dot)
                return 0;
            after_dot = 1;
            continue;
        }
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
        after_dot = 0;
    }
    return !after_dot;
}

/* Look for module file `rel` ("net/vpc") under root. 1: found (real path in out, file name
 * relative to root in shown); 0: not there; -1: there but it leaves root (msg). */
static int find_module(const char *root, const char *rel, char *out, char *shown,
                       char *msg, size_t msz)
{
    static const char *const forms[] = {"%s.lua", "%s/init.lua", NULL};
    for (const char *const *f = forms; *f; f++) {
        char cand[PATH_MAX], path[PATH_MAX];
        struct stat st;
        snprintf(cand, sizeof cand, *f, rel);
        if (snprintf(path, sizeof path, "%s/%s", root, cand) >= (int)sizeof path)
            continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !realpath(path, out))
            continue;
        if (!path_inside(root, out)) {
            snprintf(msg, msz, "%.600s resolves to %.600s, outside %.600s: refused", path, out,
                     root);
            return -1;
        }
        snprintf(shown, PATH_MAX, "%s", cand);
        return 1;
    }
    return 0;
}

static int l_require(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!strcmp(name, "mlengine")) {
        push_registry(L, rt->ref_module);
        return 1;
    }
    push_registry(L, rt->ref_loaded); /* 2 */
    lua_getfield(L, 2, name);
    if (lua_touserdata(L, -1) == &rt->loading_tag)
        return rt_error(L, "require(\"%s\"): the module is already being loaded (a require "
                           "cycle, or an earlier error while loading it)", name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    if (!valid_module_name(name))
        return rt_error(L, "require(\"%s\"): not a module name: use a dotted name such as "
                           "\"net.vpc\" (the file net/vpc.lua in the stack's folder or the "
                           "scripts library); paths are refused", name);
    char rel[PATH_MAX], real[PATH_MAX], shown[PATH_MAX], msg[MSG_MAX];
    snprintf(rel, sizeof rel, "%s", name);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    const char *prefix = rt->stack_shown;
    int found = rt->stack_dir ? find_module(rt->stack_dir, rel, real, shown, msg, sizeof msg) : 0;
    if (found == 0 && rt->scripts_dir) {
        prefix = rt->scripts_shown;
        found = find_module(rt->scripts_dir, rel, real, shown, msg, sizeof msg);
    }
    if (found < 0)
        return rt_error(L, "require(\"%s\"): %s", name, msg);
    if (found == 0)
        return rt_error(L, "require(\"%s\"): module not found: looked for %s.lua and "
                           "%s/init.lua in the stack's folder (%s) and the scripts library (%s)",
                        name, rel, rel, rt->stack_dir ? rt->stack_dir : "unknown",
                        rt->scripts_dir ? rt->scripts_dir
                                        : (rt->scripts_shown ? "missing" : "not set"));
    lua_pushlightuserdata(L, &rt->loading_tag);
    lua_setfield(L, 2, name);
    const char *chunkname = lua_pushfstring(L, "@%s%s", prefix, shown); /* 3 */
    int e = push_file(L, real);                                         /* 4 */
    if (e)
        return rt_error(L, "require(\"%s\"): %s: %s", name, real, strerror(e));
    size_t len = 0;
    const char *src = lua_tolstring(L, 4, &len);
    load_chunk(L, src, len, chunkname);
    lua_pushvalue(L, 1);
    lua_pushstring(L, real);
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * mle.yamldecode, mle.jsondecode, mle.jsonencode, mle.merge
 * --------------------------------------------------------------------------------------- */

static int yaml_decode(lua_State *L, int all)
{
    const char *fn = all ? "mle.yamldecode_all" : "mle.yamldecode";
    size_t len = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    jbox *b = jbox_push(L);
    mle_error *e = NULL;
    b->v = mle_yaml_parse(s, len, &e);
    if (!b->v) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "%s", e && e->message ? e->message : "not valid YAML");
        mle_error_free(e);
        return rt_error(L, "%s: %s", fn, msg);
    }
    mle_error_free(e);
    if (all) {
        push_json(L, b->v);
        return 1;
    }
    size_t n = json_array_size(b->v);
    if (n > 1)
        return rt_error(L, "mle.yamldecode: the text holds %zu YAML documents: use "
                           "mle.yamldecode_all to get them as a list", n);
    if (n == 0)
        lua_pushnil(L);
    else
        push_json(L, json_array_get(b->v, 0));
    return 1;
}

static int l_yamldecode(lua_State *L)
{
    return yaml_decode(L, 0);
}

static int l_yamldecode_all(lua_State *L)
{
    return yaml_decode(L, 1);
}

static int l_jsondecode(lua_State *L)
{
    size_t len = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    jbox *b = jbox_push(L);
    json_error_t je;
    b->v = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!b->v)
        return rt_error(L, "mle.jsondecode: line %d column %d: %s", je.line, je.column, je.text);
    push_json(L, b->v);
    return 1;
}

static int l_jsonencode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    conv cx = {.rt = rt_of(L), .what = "mle.jsonencode"};
    jbox *b = to_json(L, &cx, 1);
    /* Sorted keys and 15 significant digits: stable text, and 0.1 reads as 0.1. */
    size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15);
    size_t n = json_dumpb(b->v, NULL, 0, flags);
    char *buf = lua_newuserdatauv(L, n ? n : 1, 0);
    n = json_dumpb(b->v, buf, n, flags);
    lua_pushlstring(L, buf, n);
    if (cx.sensitive_seen)
        push_sensitive(L, -1); /* the text holds a secret: it stays one */
    return 1;
}

static int is_map_table(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TTABLE && lua_rawlen(L, idx) == 0;
}

/* Push a deep copy of the value at src, so the result of mle.merge shares no table with
 * its inputs. */
static void copy_value(lua_State *L, int src, int depth)
{
    src = lua_absindex(L, src);
    if (lua_type(L, src) != LUA_TTABLE) {
        lua_pushvalue(L, src);
        return;
    }
    if (depth >= MAX_DEPTH)
        rt_error(L, "mle.merge: the values nest deeper than %d levels (does a table contain "
                    "itself?)", MAX_DEPTH);
    luaL_checkstack(L, 6, "mle.merge");
    lua_newtable(L);
    int dst = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        copy_value(L, -2, depth + 1);
        lua_rawset(L, dst);
        lua_pop(L, 1);
    }
}

/* Maps merge key by key, anything else (lists included) replaces, mle.null deletes. */
static void merge_into(lua_State *L, int dst, int src, int depth)
{
    mle_lua *rt = rt_of(L);
    if (depth >= MAX_DEPTH)
        rt_error(L, "mle.merge: the values nest deeper than %d levels (does a table contain "
                    "itself?)", MAX_DEPTH);
    luaL_checkstack(L, 8, "mle.merge");
    lua_pushnil(L);
    while (lua_next(L, src)) {
        int k = lua_gettop(L) - 1, v = lua_gettop(L);
        lua_pushvalue(L, k);
        if (is_null(L, rt, v)) {
            lua_pushnil(L);
            lua_rawset(L, dst);
        } else if (is_map_table(L, v)) {
            lua_pushvalue(L, k);
            if (!(lua_rawget(L, dst) == LUA_TTABLE && lua_rawlen(L, -1) == 0)) {
                lua_pop(L, 1);
                lua_newtable(L);
            }
            merge_into(L, lua_gettop(L), v, depth + 1);
            lua_rawset(L, dst);
        } else {
            copy_value(L, v, depth + 1);
            lua_rawset(L, dst);
        }
        lua_pop(L, 1);
    }
}

static int l_merge(lua_State *L)
{
    int n = lua_gettop(L);
    lua_newtable(L);
    int out = n + 1;
    for (int i = 1; i <= n; i++) {
        if (lua_isnil(L, i))
            continue; /* mle.merge(common, overrides[cloud]) with no override */
        luaL_checktype(L, i, LUA_TTABLE);
        if (!is_map_table(L, i))
            return rt_error(L, "mle.merge: argument #%d is a list: mle.merge merges maps", i);
        merge_into(L, out, i, 0);
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Hooks: the context object and its two methods
 * --------------------------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int report_fail(int dfd, char *msg, size_t msz, const char *fmt, const char *a,
                       const char *b)
{
    if (dfd >= 0)
        close(dfd);
    snprintf(msg, msz, fmt, a, b);
    return -1;
}

/* Write `text` to dir/rel without leaving dir: no absolute path, no "..", and no symbolic
 * link on the way (every step opened with O_NOFOLLOW relative to the one before). */
static int write_report(const char *dir, const char *rel, const char *text, size_t len,
                        char *msg, size_t msz)
{
    char parts[PATH_MAX];
    const char *link_msg = "\"%.255s\" is a symbolic link or not a folder%s: a report stays "
                           "inside "
                           "the report directory";
    if (!*rel || rel[0] == '/' || strlen(rel) >= sizeof parts)
        return report_fail(-1, msg, msz, "\"%s\" must be a relative path inside the report "
                                         "directory%s", rel, "");
    snprintf(parts, sizeof parts, "%s", rel);
    for (const char *c = parts; c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return report_fail(-1, msg, msz, "\"%s\" leaves the report directory (..)%s", rel,
                               "");
        c = slash ? slash + 1 : NULL;
    }
    if (mkdir_p(dir) != 0)
        return report_fail(-1, msg, msz, "cannot create the report directory %s: %s", dir,
                           strerror(errno));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return report_fail(-1, msg, msz, "cannot open the report directory %s: %s", dir,
                           strerror(errno));
    char *comp = parts;
    for (char *slash; (slash = strchr(comp, '/')); comp = slash + 1) {
        *slash = 0;
        if (!*comp || !strcmp(comp, "."))
            continue;
        if (mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST)
            return report_fail(dfd, msg, msz, "cannot create folder \"%.255s\": %s", comp,
                               strerror(errno));
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0)
            return report_fail(dfd, msg, msz, link_msg, comp, "");
        close(dfd);
        dfd = nfd;
    }
    if (!*comp || !strcmp(comp, "."))
        return report_fail(dfd, msg, msz, "\"%s\" names a folder, not a file%s", rel, "");
    int fd = openat(dfd, comp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return report_fail(dfd, msg, msz, link_msg, comp, " (an existing link)");
        return report_fail(dfd, msg, msz, "cannot write \"%s\": %s", rel, strerror(e));
    }
    close(dfd);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return report_fail(-1, msg, msz, "cannot write \"%s\": %s", rel, strerror(e));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0)
        return report_fail(-1, msg, msz, "cannot write \"%s\": %s", rel, strerror(errno));
    return 0;
}

static int l_ctx_veto(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    if (lua_type(L, 1) != LUA_TTABLE)
        return rt_error(L, "call it as ctx:veto(message), with a colon");
    const char *msg = luaL_checkstring(L, 2);
    if (!rt->vetoes)
        return rt_error(L, "ctx:veto can only be called while its hook runs");
    push_where(L);
    char buf[MSG_MAX];
    snprintf(buf, sizeof buf, "%s (%s)", msg, lua_tostring(L, -1));
    json_array_append_new(rt->vetoes, jstr(buf));
    return 0;
}

static int l_ctx_write_report(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    if (lua_type(L, 1) != LUA_TTABLE)
        return rt_error(L, "call it as ctx:write_report(path, text), with a colon");
    const char *rel = luaL_checkstring(L, 2);
    if (is_udata(L, 3, MT_SENSITIVE))
        return rt_error(L, "ctx:write_report: a sensitive value cannot be written to a report");
    size_t len = 0;
    const char *text = luaL_checklstring(L, 3, &len);
    if (!rt->report_dir)
        return rt_error(L, "ctx:write_report: this run has no report directory");
    char msg[MSG_MAX];
    if (write_report(rt->report_dir, rel, text, len, msg, sizeof msg) != 0)
        return rt_error(L, "ctx:write_report: %s", msg);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The sandbox
 * --------------------------------------------------------------------------------------- */

/* load(): text only (crafted bytecode can crash the VM), and the sandbox as the default
 * environment. Upvalue 1: the real load. */
static int l_load(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    int n = lua_gettop(L);
    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (n < 4) {
        push_registry(L, rt->ref_env);
        lua_replace(L, 4);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

/* ipairs() on a reference would walk __index forever: say why it cannot work. */
static int l_ipairs(lua_State *L)
{
    char d[256];
    if (is_udata(L, 1, MT_REF) || is_udata(L, 1, MT_EXPR) || is_udata(L, 1, MT_RESOURCE))
        return rt_error(L, "ipairs: %s cannot be iterated: its items are known only at apply",
                        describe(L, 1, d, sizeof d));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 3);
    return 3;
}

/* print() writes to stderr: stdout belongs to the CLI (plan JSON). */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len = 0;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            fputc('\t', stderr);
        fwrite(s, 1, len, stderr);
        lua_pop(L, 1);
    }
    fputc('\n', stderr);
    return 0;
}

/* setmetatable() refusing __concat where the Lua library cannot survive a stack move
 * during one (see mm_concat): our own metamethod guards itself, a stack's cannot.
 * Upvalue 1: the real setmetatable. */
static int l_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__concat");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return rt_error(L, "setmetatable: __concat metamethods are refused in an mlengine "
                               "stack: the %s library of this build can crash on them "
                               "(upstream bug fixed in 5.4.5); build the string with .. on "
                               "its fields or with string.format", LUA_RELEASE);
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int l_randomseed(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        return rt_error(L, "math.randomseed needs an explicit seed in an mlengine stack: plans "
                           "must be reproducible");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int ro_newindex(lua_State *L)
{
    const char *lib = lua_tostring(L, lua_upvalueindex(1));
    return rt_error(L, "%s is read-only in an mlengine stack: cannot set %s.%s (keep your own "
                       "functions in a local table)", lib, lib, luaL_tolstring(L, 2, NULL));
}

static int ro_pairs(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1)); /* next */
    lua_pushvalue(L, lua_upvalueindex(2)); /* the real table */
    lua_pushnil(L);
    return 3;
}

/* __index of os/io/debug/package: present keys from the real table (upvalue 1, may be
 * nil), a clear message for the rest. */
static int sandbox_index(lua_State *L)
{
    if (lua_istable(L, lua_upvalueindex(1))) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
            return 1;
    }
    return rt_error(L, "%s.%s is not available in an mlengine stack%s",
                    lua_tostring(L, lua_upvalueindex(2)), luaL_tolstring(L, 2, NULL),
                    lua_tostring(L, lua_upvalueindex(3)));
}

/* Push a read-only view of the table at `real` (0: none). With `suffix`, a missing key is
 * an error ending with it. Writes always fail. rawset on the view only changes the view,
 * which belongs to this run alone: the freeze catches mistakes, it is not the boundary. */
static void push_proxy(lua_State *L, int real, const char *lib, const char *suffix)
{
    real = real ? lua_absindex(L, real) : 0;
    lua_newtable(L);
    lua_createtable(L, 0, 4);
    if (suffix) {
        if (real)
            lua_pushvalue(L, real);
        else
            lua_pushnil(L);
        lua_pushstring(L, lib);
        lua_pushstring(L, suffix);
        lua_pushcclosure(L, sandbox_index, 3);
    } else {
        lua_pushvalue(L, real);
    }
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, lib);
    lua_pushcclosure(L, ro_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    if (real) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
        lua_getfield(L, -1, "next");
        lua_remove(L, -2);
        lua_pushvalue(L, real);
        lua_pushcclosure(L, ro_pairs, 2);
        lua_setfield(L, -2, "__pairs");
    }
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static void copy_all(lua_State *L, int from, int to)
{
    lua_pushnil(L);
    while (lua_next(L, from)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, to);
    }
}

static void set_fn(lua_State *L, int t, const char *name, lua_CFunction fn, int wrap_from)
{
    if (wrap_from) {
        lua_getfield(L, wrap_from, name);
        lua_pushcclosure(L, fn, 1);
    } else {
        lua_pushcfunction(L, fn);
    }
    lua_setfield(L, t, name);
}

/* Lua's pattern matcher backtracks inside one C call, where neither the instruction hook
 * nor the memory cap can stop it: ("a"):rep(3000):find(".-.-.-.-x") runs for hours. A call
 * whose estimated worst case passes PATTERN_MAX_STEPS is refused before it starts. The
 * estimate for an n-byte subject and k repetitions (*, +, -, %b) is n^k, or n^(k+1) when a
 * repetition is of '.', which can run on to the end of the subject from every start
 * position. Ordinary uses pass: "(%w+): (%w+)" over 300 KB, "(.-)\n" over 300 KB. */
#define PATTERN_MAX_STEPS 1e11

static int pattern_repetitions(const char *p, size_t len, int *dot)
{
    int reps = 0;
    *dot = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '%') {
            reps += i + 1 < len && p[i + 1] == 'b';
            i++;
        } else if (p[i] == '[') {
            /* a set: its ']' right after '[' or '[^' is a member, %x escapes */
            size_t j = i + 1 + (i + 1 < len && p[i + 1] == '^');
            for (j += j < len && p[j] == ']'; j < len && p[j] != ']'; j++)
                j += p[j] == '%';
            i = j;
        } else if ((p[i] == '*' || p[i] == '+' || p[i] == '-') && i > 0) {
            reps++;
            *dot |= p[i - 1] == '.' && (i < 2 || p[i - 2] != '%');
        }
    }
    return reps;
}

/* Upvalue 1: the real string function; upvalue 2: its name. */
static int l_pattern_guard(lua_State *L)
{
    size_t n = 0, plen = 0;
    const char *subject = luaL_checklstring(L, 1, &n);
    const char *pat = luaL_checklstring(L, 2, &plen);
    (void)subject;
    int plain = lua_toboolean(L, 4) && strcmp(lua_tostring(L, lua_upvalueindex(2)), "find") == 0;
    int dot = 0;
    int reps = plain ? 0 : pattern_repetitions(pat, plen, &dot);
    if (reps > 0 && pow((double)n + 1, reps + dot) > PATTERN_MAX_STEPS)
        return rt_error(L, "string.%s: a pattern with %d repetitions on a %zu-byte string "
                           "could run for hours (Lua patterns backtrack); match a shorter "
                           "string or use fewer repetitions",
                        lua_tostring(L, lua_upvalueindex(2)), reps, n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void guard_patterns(lua_State *L, int copy, int real)
{
    static const char *const fns[] = {"find", "match", "gmatch", "gsub", NULL};
    for (const char *const *f = fns; *f; f++) {
        lua_getfield(L, real, *f);
        lua_pushstring(L, *f);
        lua_pushcclosure(L, l_pattern_guard, 2);
        lua_setfield(L, copy, *f);
    }
}

static void open_string(lua_State *L, int env, int real)
{
    lua_newtable(L);
    int copy = lua_gettop(L);
    copy_all(L, real, copy);
    set_fn(L, copy, "format", l_format, real);
    guard_patterns(L, copy, real);
    push_proxy(L, copy, "string", NULL);
    /* ("%s"):format(x) and friends go through the same frozen copy */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_setfield(L, env, "string");
    lua_pop(L, 1);
}

static void open_math(lua_State *L, int env, int real)
{
    lua_getfield(L, real, "randomseed");
    lua_pushinteger(L, RANDOM_SEED);
    lua_call(L, 1, 0);
    lua_newtable(L);
    int copy = lua_gettop(L);
    copy_all(L, real, copy);
    set_fn(L, copy, "randomseed", l_randomseed, real);
    push_proxy(L, copy, "math", NULL);
    lua_setfield(L, env, "math");
    lua_pop(L, 1);
}

static void open_os(lua_State *L, int env, int real)
{
    static const char *const keep[] = {"time", "clock", "date", NULL};
    lua_newtable(L);
    for (const char *const *k = keep; *k; k++) {
        lua_getfield(L, real, *k);
        lua_setfield(L, -2, *k);
    }
    push_proxy(L, -1, "os", " (sandbox): only os.time, os.clock and os.date are");
    lua_setfield(L, env, "os");
    lua_pop(L, 1);
}

static void open_frozen(lua_State *L, int env, int real, const char *name)
{
    lua_newtable(L);
    copy_all(L, real, lua_gettop(L));
    push_proxy(L, -1, name, NULL);
    lua_setfield(L, env, name);
    lua_pop(L, 1);
}

static void open_absent(lua_State *L, int env, const char *name, const char *suffix)
{
    push_proxy(L, 0, name, suffix);
    lua_setfield(L, env, name);
}

static void open_module(lua_State *L, int string_real)
{
    static const luaL_Reg fns[] = {
        {"resource", l_resource},     {"data", l_data},
        {"address", l_address},       {"var", l_var},
        {"sensitive", l_sensitive},   {"output", l_output},
        {"driver", l_driver},         {"hook", l_hook},
        {"cloud", l_cloud},
        {"file", l_file},             {"dir", l_dir},
        {"yamldecode", l_yamldecode},
        {"yamldecode_all", l_yamldecode_all}, {"jsondecode", l_jsondecode},
        {"jsonencode", l_jsonencode}, {"merge", l_merge},
        {NULL, NULL}};
    mle_lua *rt = rt_of(L);
    luaL_newlib(L, fns);
    set_fn(L, lua_gettop(L), "format", l_format, string_real);
    lua_pushlightuserdata(L, &rt->null_tag);
    lua_setfield(L, -2, "null");
    push_proxy(L, -1, "mlengine", NULL);
    rt->ref_module = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
}

static void open_registry(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    static const luaL_Reg ctx_fns[] = {{"veto", l_ctx_veto},
                                       {"write_report", l_ctx_write_report},
                                       {NULL, NULL}};
    lua_newtable(L);
    rt->ref_loaded = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    rt->ref_hooks = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 2);
    luaL_newlib(L, ctx_fns);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    rt->ref_ctx_mt = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Build the sandbox. Runs protected, like every entry into Lua. */
static int sandbox_open(lua_State *L)
{
    static const char *const base_keep[] = {
        "assert", "error", "getmetatable", "next", "pairs", "pcall", "rawequal", "rawget",
        "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
        "xpcall", "_VERSION", NULL};
    static const char *const base_drop[] = {"dofile", "loadfile", "collectgarbage", NULL};
    mle_lua *rt = rt_of(L);
    register_metatables(L);
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);         /* 1 */
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);  /* 2 */
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);   /* 3 */
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);   /* 4 */
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);   /* 5 */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);       /* 6 */
    /* Even the real tables, which the sandbox never sees, lose what reaches outside. */
    for (const char *const *k = base_drop; *k; k++) {
        lua_pushnil(L);
        lua_setfield(L, 1, *k);
    }
    lua_pushnil(L);
    lua_setfield(L, 2, "dump"); /* string.dump makes bytecode */

    lua_newtable(L); /* 7: the stack's environment */
    int env = 7;
    for (const char *const *k = base_keep; *k; k++) {
        lua_getfield(L, 1, *k);
        lua_setfield(L, env, *k);
    }
#if LUA_VERSION_RELEASE_NUM == 50404
    set_fn(L, env, "setmetatable", l_setmetatable, 1);
#endif
    set_fn(L, env, "load", l_load, 1);
    set_fn(L, env, "ipairs", l_ipairs, 1);
    set_fn(L, env, "print", l_print, 0);
    set_fn(L, env, "require", l_require, 0);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    open_string(L, env, 2);
    open_frozen(L, env, 3, "table");
    open_math(L, env, 4);
    open_frozen(L, env, 5, "utf8");
    open_os(L, env, 6);
    open_absent(L, env, "io", ": use mlengine.file");
    open_absent(L, env, "debug", " (sandbox)");
    open_absent(L, env, "package", ": require looks in the stack's folder and the scripts "
                                   "library");
    open_module(L, 2);
    open_registry(L);
    lua_pushvalue(L, env);
    rt->ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Entries into Lua: budget, traceback, errors
 * --------------------------------------------------------------------------------------- */

/* Message handler: keep the traceback aside (it becomes the error's hint). */
static int msgh(lua_State *L)
{
    mle_lua *rt = rt_of(L);
    const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1)
                                                    : luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, NULL, 1);
    free(rt->traceback);
    rt->traceback = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushstring(L, msg);
    return 1;
}

/* The instruction budget (the Redis model): once spent, raise on every instruction, so
 * that a pcall in the stack cannot swallow the stop; rt_pcall checks the flag as well. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    mle_lua *rt = rt_of(L);
    if (!rt->instr_hit) {
        rt->instr_used += rt->hook_step;
        if (rt->instr_used < rt->instr_limit)
            return;
        rt->instr_hit = 1;
        luaL_where(L, 0);
        rt->limit_where = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushfstring(L, "%sstack exceeded the instruction limit (%I instructions): an endless "
                       "loop?", rt->limit_where ? rt->limit_where : "",
                    (lua_Integer)rt->instr_limit);
    lua_error(L);
}

static void reset_entry(mle_lua *rt)
{
    rt->instr_used = 0;
    rt->instr_hit = 0;
    rt->mem_refused = 0;
    free(rt->limit_where);
    rt->limit_where = NULL;
    free(rt->traceback);
    rt->traceback = NULL;
    mle_error_free(rt->pending);
    rt->pending = NULL;
}

static mle_error *entry_error(mle_lua *rt, int status)
{
    mle_error *e;
    if (rt->instr_hit) {
        e = mle_error_new(MLE_E_INVALID, "%sstack exceeded the instruction limit (%llu "
                                         "instructions): an endless loop?",
                          rt->limit_where ? rt->limit_where : "",
                          (unsigned long long)rt->instr_limit);
    } else if (status == LUA_ERRMEM) {
        const size_t mib = (size_t)1024 * 1024;
        if (!rt->mem_refused)
            e = mle_error_new(MLE_E_INTERNAL, "out of memory while running Lua");
        else if (rt->mem_limit % mib == 0)
            e = mle_error_new(MLE_E_INVALID, "stack exceeded the memory limit of %zu MiB",
                              rt->mem_limit / mib);
        else
            e = mle_error_new(MLE_E_INVALID, "stack exceeded the memory limit of %.1f MiB",
                              (double)rt->mem_limit / (double)mib);
        mle_error_set_hint(e, "a table or a string that grows without end? Lua reports no "
                              "position for this error");
        return e;
    } else {
        const char *msg = lua_tostring(rt->L, -1);
        if (!msg)
            msg = "(an error without a message)";
        if (rt->pending && !strcmp(rt->pending->message, msg)) {
            e = rt->pending;
            rt->pending = NULL;
        } else {
            e = mle_error_new(MLE_E_INVALID, "%s", msg);
        }
    }
    if (rt->traceback) {
        if (!e->hint) {
            mle_error_set_hint(e, rt->traceback);
        } else {
            char *h = NULL;
            if (asprintf(&h, "%s\n%s", e->hint, rt->traceback) < 0)
                abort();
            mle_error_set_hint(e, h);
            free(h);
        }
    }
    return e;
}

/* Call the function below the nargs arguments on top of the stack, protected, with the
 * traceback handler and a fresh budget. Pushes nothing that allocates before lua_pcall, so
 * nothing can fail outside protection. */
static int rt_pcall(mle_lua *rt, int nargs, mle_error **err)
{
    lua_State *L = rt->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    reset_entry(rt);
    lua_sethook(L, count_hook, LUA_MASKCOUNT, (int)rt->hook_step);
    int st = lua_pcall(L, nargs, 0, base);
    int rc = 0;
    if (st != LUA_OK || rt->instr_hit) {
        mle_error *e = entry_error(rt, st);
        if (err)
            *err = e;
        else
            mle_error_free(e);
        rc = -1;
    }
    lua_settop(L, base - 1);
    lua_gc(L, LUA_GCRESTART); /* in case an error left the collector paused (mm_concat) */
    mle_error_free(rt->pending);
    rt->pending = NULL;
    return rc;
}

/* Reserve stack slots in the frame of the C function at the base of an entry. Lua never
 * shrinks a stack below three times what its frames claim, and everything the entry runs
 * stacks up inside this reserve: so the stack is not moved while a __concat metamethod
 * runs, which Debian 12's Lua cannot survive (see mm_concat). 16384 slots are 256 KiB. */
static void reserve_stack(lua_State *L)
{
    if (!lua_checkstack(L, STACK_RESERVE))
        luaL_error(L, "cannot reserve the Lua stack");
}

/* Run a file (arg 1: path, light userdata; arg 2: 1 for a hooks file). */
static int run_file(lua_State *L)
{
    reserve_stack(L);
    const char *path = lua_touserdata(L, 1);
    int hooks = (int)lua_tointeger(L, 2);
    int e = push_file(L, path);
    if (e)
        return raise_error(L, mle_error_new(MLE_E_IO, "cannot read the %s %s: %s",
                                            hooks ? "hooks file" : "stack file", path,
                                            strerror(e)));
    size_t len = 0;
    const char *src = lua_tolstring(L, -1, &len);
    load_chunk(L, src, len, lua_pushfstring(L, "@%s", path));
    lua_call(L, 0, 0);
    return 0;
}

/* Run every hook function registered under name (arg 1) with a fresh context built from
 * ctx (arg 2), in registration order. */
static int run_hooks(lua_State *L)
{
    reserve_stack(L);
    mle_lua *rt = rt_of(L);
    const char *name = lua_touserdata(L, 1);
    const json_t *ctx = lua_touserdata(L, 2);
    push_registry(L, rt->ref_hooks); /* 3 */
    if (lua_getfield(L, 3, name) != LUA_TTABLE)
        return 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, 4);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 4, i);
        if (json_is_object(ctx))
            push_json(L, ctx);
        else
            lua_newtable(L);
        push_registry(L, rt->ref_ctx_mt);
        lua_setmetatable(L, -2);
        lua_call(L, 1, 0);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Public API
 * --------------------------------------------------------------------------------------- */

static void set_paths(mle_lua *rt, const mle_lua_opts *opts)
{
    char dir[PATH_MAX] = ".";
    if (opts->stack_path) {
        rt->stack_path = xstrdup(opts->stack_path);
        const char *slash = strrchr(rt->stack_path, '/');
        size_t n = slash ? (size_t)(slash - rt->stack_path) + 1 : 0;
        rt->stack_shown = xstrdup(rt->stack_path);
        rt->stack_shown[n] = 0;
        if (slash)
            snprintf(dir, sizeof dir, "%.*s", n > 1 ? (int)n - 1 : 1, rt->stack_path);
    } else {
        rt->stack_shown = xstrdup("");
    }
    rt->stack_dir = realpath(dir, NULL);
    if (opts->scripts_dir) {
        size_t n = strlen(opts->scripts_dir);
        int slash = n > 0 && opts->scripts_dir[n - 1] == '/';
        if (asprintf(&rt->scripts_shown, "%s%s", opts->scripts_dir, slash ? "" : "/") < 0)
            abort();
        rt->scripts_dir = realpath(opts->scripts_dir, NULL);
    }
}

mle_lua *mle_lua_new(const mle_lua_opts *opts, mle_error **err)
{
    if (!opts)
        return mle_fail(err, MLE_E_INTERNAL, "mle_lua_new: no options"), NULL;
    if (opts->vars && !json_is_object(opts->vars))
        return mle_fail(err, MLE_E_INVALID, "variables must be a JSON object"), NULL;
    mle_lua *rt = calloc(1, sizeof *rt);
    if (!rt)
        return mle_fail(err, MLE_E_INTERNAL, "out of memory"), NULL;
    rt->instr_limit = opts->instr_limit ? opts->instr_limit : DEFAULT_INSTR_LIMIT;
    rt->mem_limit = opts->mem_limit ? opts->mem_limit : DEFAULT_MEM_LIMIT;
    rt->hook_step = rt->instr_limit < HOOK_STEP ? (unsigned)rt->instr_limit : HOOK_STEP;
    rt->validate = opts->validate;
    rt->validate_ud = opts->validate_ud;
    rt->vars = opts->vars ? json_deep_copy(opts->vars) : json_object();
    rt->resources = json_array();
    rt->addrs = json_array();
    rt->addr_where = json_object();
    rt->outputs = json_object();
    rt->drivers = json_object();
    rt->driver_where = json_object();
    rt->variables = json_object();
    rt->hooks = json_array();
    set_paths(rt, opts);
    rt->L = lua_newstate(rt_alloc, rt);
    if (!rt->L) {
        mle_lua_free(rt);
        return mle_fail(err, MLE_E_INVALID, "cannot create the Lua state within the memory "
                                            "limit"), NULL;
    }
    mle_error *e = NULL;
    lua_pushcfunction(rt->L, sandbox_open);
    if (rt_pcall(rt, 0, &e) != 0) {
        mle_error_prefix(e, "setting up the Lua sandbox: ");
        if (err)
            *err = e;
        else
            mle_error_free(e);
        mle_lua_free(rt);
        return NULL;
    }
    return rt;
}

void mle_lua_free(mle_lua *rt)
{
    if (!rt)
        return;
    if (rt->L) {
        reset_entry(rt); /* finalizers run by lua_close get a budget of their own */
        lua_close(rt->L);
    }
    reset_entry(rt);
    free(rt->stack_path);
    free(rt->stack_shown);
    free(rt->stack_dir);
    free(rt->scripts_shown);
    free(rt->scripts_dir);
    json_decref(rt->vars);
    json_decref(rt->resources);
    json_decref(rt->addrs);
    json_decref(rt->addr_where);
    json_decref(rt->outputs);
    json_decref(rt->drivers);
    free(rt->cloud);
    json_decref(rt->driver_where);
    json_decref(rt->variables);
    json_decref(rt->hooks);
    json_decref(rt->vetoes);
    free(rt);
}

int mle_lua_eval(mle_lua *rt, mle_stack **out, mle_error **err)
{
    if (out)
        *out = NULL;
    if (rt->evaluated)
        return mle_fail(err, MLE_E_INTERNAL, "this runtime has already evaluated its stack");
    if (!rt->stack_path)
        return mle_fail(err, MLE_E_INVALID, "no stack file given");
    rt->evaluated = 1;
    rt->phase = PH_EVAL;
    lua_pushcfunction(rt->L, run_file);
    lua_pushlightuserdata(rt->L, rt->stack_path);
    lua_pushinteger(rt->L, 0);
    int rc = rt_pcall(rt, 2, err);
    rt->phase = PH_IDLE;
    if (rc != 0 || !out)
        return rc;
    mle_stack *s = calloc(1, sizeof *s);
    if (!s)
        return mle_fail(err, MLE_E_INTERNAL, "out of memory");
    /* Copies: the caller may change its stack freely. */
    s->resources = json_deep_copy(rt->resources);
    s->outputs = json_deep_copy(rt->outputs);
    s->drivers = json_deep_copy(rt->drivers);
    s->variables = json_deep_copy(rt->variables);
    s->hooks = json_deep_copy(rt->hooks);
    s->cloud = rt->cloud ? strdup(rt->cloud) : NULL;
    *out = s;
    return 0;
}

void mle_stack_free(mle_stack *s)
{
    if (!s)
        return;
    json_decref(s->resources);
    json_decref(s->outputs);
    json_decref(s->drivers);
    json_decref(s->variables);
    json_decref(s->hooks);
    free(s->cloud);
    free(s);
}

int mle_lua_load_hooks(mle_lua *rt, const char *path, mle_error **err)
{
    if (!path)
        return mle_fail(err, MLE_E_INVALID, "no hooks file given");
    if (rt->phase != PH_IDLE)
        return mle_fail(err, MLE_E_INTERNAL, "a hooks file cannot be loaded while Lua runs");
    rt->phase = PH_HOOKS_FILE;
    lua_pushcfunction(rt->L, run_file);
    lua_pushlightuserdata(rt->L, (void *)path);
    lua_pushinteger(rt->L, 1);
    int rc = rt_pcall(rt, 2, err);
    rt->phase = PH_IDLE;
    return rc;
}

static int veto_error(const char *name, json_t *vetoes, mle_error **err)
{
    size_t len = 0, i;
    json_t *x;
    json_array_foreach(vetoes, i, x) len += strlen(json_string_value(x)) + 2;
    char *all = calloc(1, len + 1);
    if (!all)
        abort();
    json_array_foreach(vetoes, i, x)
    {
        if (i)
            strcat(all, "; ");
        strcat(all, json_string_value(x));
    }
    if (err)
        *err = mle_error_new(MLE_E_INVALID, "%s hook vetoed: %s", name, all);
    free(all);
    return 1;
}

int mle_lua_run_hook(mle_lua *rt, const char *name, const json_t *ctx, const char *report_dir,
                     mle_error **err)
{
    if (!name || !in_list(name, hook_names))
        return mle_fail(err, MLE_E_INVALID, "unknown hook \"%s\"", name ? name : "(null)");
    if (rt->phase != PH_IDLE)
        return mle_fail(err, MLE_E_INTERNAL, "a hook cannot run while Lua runs");
    rt->phase = PH_HOOK;
    rt->report_dir = report_dir;
    rt->vetoes = json_array();
    lua_pushcfunction(rt->L, run_hooks);
    lua_pushlightuserdata(rt->L, (void *)name);
    lua_pushlightuserdata(rt->L, (void *)ctx);
    int rc = rt_pcall(rt, 2, err);
    rt->phase = PH_IDLE;
    rt->report_dir = NULL;
    json_t *vetoes = rt->vetoes;
    rt->vetoes = NULL;
    if (rc == 0 && json_array_size(vetoes) > 0)
        rc = veto_error(name, vetoes, err);
    json_decref(vetoes);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Markers
 * --------------------------------------------------------------------------------------- */

int mle_marker_is_ref(const json_t *v)
{
    const json_t *r = json_is_object(v) && json_object_size(v) == 1
                          ? json_object_get(v, "$ref") : NULL;
    return json_is_object(r) && json_is_string(json_object_get(r, "address")) &&
           json_is_string(json_object_get(r, "path"));
}

int mle_marker_is_expr(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 1 &&
           json_is_array(json_object_get(v, "$expr"));
}

int mle_marker_is_sensitive(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, "$sensitive");
}

int mle_marker_contains(const json_t *v)
{
    if (mle_marker_is_ref(v) || mle_marker_is_expr(v))
        return 1;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (mle_marker_contains(x)) return 1;
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (mle_marker_contains(x)) return 1;
    }
    return 0;
}
