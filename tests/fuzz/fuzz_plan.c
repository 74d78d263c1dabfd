/*
 * fuzz_plan.c — saved plan files (`apply FILE`): mle_plan_peek_state and mle_plan_load on
 * arbitrary bytes, then what `apply FILE` does with a loaded plan before any driver is called:
 * print it (mle_plan_print) and give it to hooks as JSON (mle_plan_json). A plan that loads
 * is also saved again (mle_plan_save) and must load back as the same plan.
 *
 * The engine is set up once, as `apply FILE` sets it up: no stack, the sim and local drivers
 * of this build (their schemas decide what is secret and what is a default), and a copy of a
 * real applied state (tests/fuzz/data/plan-state.db, from tests/fuzz/make-corpus) whose
 * secrets are sealed with the fuzzing key.
 *
 * Each input is loaded twice: as it is (most inputs stop at the format, version, lineage or
 * serial check, which is the first line of defence), and — when it is a JSON object — with its
 * "lineage" and "serial" replaced by the state's, so that the fuzzer reaches the items, sealed
 * values, drivers, outputs, data and drift of a plan that passes those checks.
 */
#include "fuzz_common.h"
#include "engine.h"
#include "plan.h"

#ifndef FUZZ_DATA_DIR
#error "FUZZ_DATA_DIR: the folder of plan-state.db (tests/fuzz/meson.build sets it)"
#endif

static mle_engine *eng;
static FILE *devnull;
static char raw_path[PATH_MAX], fixed_path[PATH_MAX], saved_path[PATH_MAX];

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) {
        fz_fail("cannot read %s: %s (run tests/fuzz/make-corpus?)", from,
                strerror(errno));
    }
    FILE *out = fopen(to, "wb");
    if (!out)
        abort();
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k)
            abort();
    fclose(in);
    if (fclose(out) != 0)
        abort();
}

/* What apply does with a loaded plan before it reaches a driver. */
static void use_plan(mle_plan *p)
{
    (void)mle_plan_changes(p);
    mle_plan_print(eng, p, devnull);
    json_t *j = mle_plan_json(eng, p);
    if (!j) {
        fz_fail("mle_plan_json gave nothing for a plan that loaded");
    }
    fz_check_dumps("mle_plan_json", j);
    json_decref(j);
    fflush(devnull);
}

/* A plan that loaded, saved again and loaded back, is the same plan (as apply and hooks see
 * it): sealing what was opened must give back what was opened. */
static void round_trip(mle_plan *p)
{
    mle_error *err = NULL;
    int rc = mle_plan_save(eng, p, saved_path, &err);
    fz_check_result("mle_plan_save", rc != 0, err);
    mle_error_free(err);
    if (rc != 0)
        return;
    mle_plan *q = NULL;
    err = NULL;
    rc = mle_plan_load(eng, saved_path, &q, &err);
    if (rc != 0)
        fz_fail("a plan saved from a loaded plan does not load: %s",
                err && err->message ? err->message : "?");
    json_t *a = mle_plan_json(eng, p), *b = mle_plan_json(eng, q);
    if (!json_equal(a, b) || q->n != p->n || !json_equal(q->data, p->data) ||
        !json_equal(q->outputs, p->outputs)) {
        char *ta = json_dumps(a, JSON_SORT_KEYS), *tb = json_dumps(b, JSON_SORT_KEYS);
        fz_fail("plan save/load changed the plan:\n  before: %.1500s\n  after:  %.1500s",
                ta ? ta : "?", tb ? tb : "?");
    }
    json_decref(a);
    json_decref(b);
    mle_plan_free(q);
}

static void load(const char *path)
{
    mle_error *err = NULL;
    char *state_path = NULL;
    int rc = mle_plan_peek_state(path, &state_path, &err);
    fz_check_result("mle_plan_peek_state", rc != 0, err);
    mle_error_free(err);
    free(state_path);

    err = NULL;
    mle_plan *p = NULL;
    rc = mle_plan_load(eng, path, &p, &err);
    fz_check_result("mle_plan_load", rc != 0, err);
    mle_error_free(err);
    if (rc == 0) {
        if (!p) {
            fz_fail("mle_plan_load succeeded without a plan");
        }
        use_plan(p);
        round_trip(p);
        mle_plan_free(p);
    }
    /* Loading without a stack gives the engine one made from the plan: undo it, so every
     * input starts from the same engine. */
    mle_stack_free(eng->stack);
    eng->stack = NULL;
    json_object_clear(eng->known);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("MLENGINE_STATE_KEY", FUZZ_STATE_KEY, 1);
    unsetenv("MLENGINE_STATE_KEY_FILE");
    unsetenv("MLENGINE_STATE_PASSPHRASE");
    unsetenv("MLENGINE_DRIVER_PATH");
    char state[PATH_MAX];
    fz_path(state, sizeof state, "state.db");
    copy_file(FUZZ_DATA_DIR "/plan-state.db", state);
    fz_path(raw_path, sizeof raw_path, "raw.plan");
    fz_path(fixed_path, sizeof fixed_path, "fixed.plan");
    fz_path(saved_path, sizeof saved_path, "saved.plan");
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    mle_engine_opts o = {
        .state_path = state,
        .log_level = MLE_LOG_ERROR,
        .open_state = 1,
    };
    mle_error *err = NULL;
    if (mle_engine_open(&o, &eng, &err) != 0) {
        char *m = mle_error_format(err);
        fz_fail("cannot set up the engine: %s", m);
    }
    eng->out = devnull;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(raw_path, data, size);
    load(raw_path);

    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    if (json_is_object(doc)) {
        json_object_set_new(doc, "lineage", json_string(mle_state_lineage(eng->state)));
        json_object_set_new(doc, "serial", json_integer(mle_state_serial(eng->state)));
        if (json_dump_file(doc, fixed_path, JSON_PRESERVE_ORDER) != 0)
            abort();
        load(fixed_path);
    }
    json_decref(doc);
    return 0;
}
