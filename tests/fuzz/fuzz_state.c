/*
 * fuzz_state.c — the state file (--state PATH, `state pull`): arbitrary bytes as state.db.
 *
 * mle_state_open must refuse a file that is not an mlengine state (corrupt, foreign, newer)
 * with a message, never crash. What it accepts is then read the way the commands read it:
 * every resource and output, the lock, the metadata, the sealed secrets (opened with the
 * fuzzing key, as `state show` and planning do), and the JSON export of `state pull`.
 *
 * Round trips checked: the export encodes, reads back equal, and holds every resource the
 * list returns; a resource written back with mle_state_put reads back the same.
 */
#include <sqlite3.h>

#include "fuzz_common.h"
#include "engine.h"
#include "secrets.h"
#include "state.h"

static char db_path[PATH_MAX];

static void remove_db(void)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s%s", db_path, suffix[i]);
        unlink(p);
    }
}

static int same_json(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b;
    return json_equal((json_t *)a, (json_t *)b);
}

static int same_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* SQLite's own verdict on the file (through a second, read-only connection). In a file whose
 * b-trees disagree (an index without its row), a put can succeed and the get miss it: that
 * is SQLite's behaviour on corrupt files, not a bug of the store. */
static int sqlite_says_corrupt(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int corrupt = 1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        corrupt = !t || strcmp((const char *)t, "ok") != 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return corrupt;
}

static void fail_round_trip(const char *what, const char *address)
{
    if (sqlite_says_corrupt())
        return;
    fz_fail("state round trip: %s of %s differs after put/get", what, address);
}

/* Put a resource back as read and read it again: nothing may change but updated_ms. */
static void put_get(mle_state *st, const mle_state_resource *r)
{
    mle_error *err = NULL;
    int rc = mle_state_put(st, r, &err);
    fz_check_result("mle_state_put", rc != 0, err);
    mle_error_free(err);
    if (rc != 0)
        return;
    mle_state_resource g;
    err = NULL;
    rc = mle_state_get(st, r->address, &g, &err);
    fz_check_result("mle_state_get", rc < 0, err);
    mle_error_free(err);
    if (rc < 0)
        return; /* the file went bad under SQLite (a corrupt page met by the write) */
    if (rc == 0) {
        fail_round_trip("the resource", r->address);
        return;
    }
    if (!same_str(g.type, r->type))
        fail_round_trip("type", r->address);
    if (!same_str(g.driver, r->driver))
        fail_round_trip("driver", r->address);
    if (!same_str(g.id, r->id))
        fail_round_trip("id", r->address);
    if (!same_json(g.attrs, r->attrs))
        fail_round_trip("attributes", r->address);
    if (!same_json(g.config, r->config))
        fail_round_trip("config", r->address);
    if (!same_json(g.deps, r->deps))
        fail_round_trip("dependencies", r->address);
    if (g.status != r->status || !same_str(g.token, r->token) ||
        !same_str(g.poll_token, r->poll_token) || g.poll_kind != r->poll_kind ||
        g.poll_at_ms != r->poll_at_ms)
        fail_round_trip("status", r->address);
    mle_state_resource_clear(&g);
}

static void export_round_trip(mle_state *st, size_t listed)
{
    mle_error *err = NULL;
    json_t *doc = mle_state_export(st, &err);
    fz_check_result("mle_state_export", doc == NULL, err);
    mle_error_free(err);
    if (!doc)
        return;
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) {
        fz_fail("the state export cannot be encoded as JSON");
    }
    json_error_t je;
    json_t *back = json_loads(text, 0, &je);
    if (!back || !json_equal(doc, back)) {
        fz_fail("the state export does not read back the same (%s)",
                back ? "differs" : je.text);
    }
    if (json_array_size(json_object_get(doc, "resources")) != listed) {
        fz_fail("the state export holds %zu resources, the list %zu",
                json_array_size(json_object_get(doc, "resources")), listed);
    }
    json_decref(back);
    free(text);
    json_decref(doc);
}

static void read_all(mle_state *st)
{
    mle_error *err = NULL;
    if (!mle_state_lineage(st)[0] || !mle_state_path(st)) {
        fz_fail("an open state without a lineage");
    }
    (void)mle_state_serial(st);

    /* Secrets open through an engine that has only this state, as planning does. */
    mle_engine e;
    memset(&e, 0, sizeof e);
    e.state = st;

    mle_state_resource *rs = NULL;
    size_t n = 0;
    int rc = mle_state_list(st, &rs, &n, &err);
    fz_check_result("mle_state_list", rc != 0, err);
    mle_error_free(err);
    err = NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        fz_check_dumps("state attributes", rs[i].attrs);
        fz_check_dumps("state config", rs[i].config);
        fz_check_dumps("state dependencies", rs[i].deps);
        mle_state_resource copy = rs[i];
        copy.attrs = rs[i].attrs ? json_deep_copy(rs[i].attrs) : NULL;
        copy.config = rs[i].config ? json_deep_copy(rs[i].config) : NULL;
        int orc = mle_secrets_open_resource(&e, &copy, &err);
        fz_check_result("mle_secrets_open_resource", orc != 0, err);
        mle_error_free(err);
        err = NULL;
        json_decref(copy.attrs);
        json_decref(copy.config);
    }

    json_t *outs = mle_state_outputs(st, &err);
    fz_check_result("mle_state_outputs", outs == NULL, err);
    mle_error_free(err);
    err = NULL;
    if (outs) {
        json_t *open = mle_secrets_open_outputs(&e, outs, &err);
        fz_check_result("mle_secrets_open_outputs", open == NULL, err);
        mle_error_free(err);
        err = NULL;
        json_decref(open);
        json_decref(outs);
    }

    mle_state_lock_info info;
    int held = mle_state_lock_holder(st, &info, &err);
    fz_check_result("mle_state_lock_holder", held < 0, err);
    mle_error_free(err);
    err = NULL;
    if (held == 1)
        mle_state_lock_info_clear(&info);
    free(mle_state_meta_get(st, "key_check"));

    export_round_trip(st, rc == 0 ? n : 0);

    /* Writes, as an apply makes them: a few resources put back, the lock taken and given. */
    for (size_t i = 0; rc == 0 && i < n && i < 4; i++)
        put_get(st, &rs[i]);
    mle_state_resources_free(rs, n);
    rc = mle_state_lock(st, "fuzz", NULL, &err);
    fz_check_result("mle_state_lock", rc != 0, err);
    mle_error_free(err);
    err = NULL;
    if (rc == 0) {
        rc = mle_state_unlock(st, &err);
        fz_check_result("mle_state_unlock", rc != 0, err);
        mle_error_free(err);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("MLENGINE_STATE_KEY", FUZZ_STATE_KEY, 1);
    unsetenv("MLENGINE_STATE_KEY_FILE");
    unsetenv("MLENGINE_STATE_PASSPHRASE");
    fz_path(db_path, sizeof db_path, "state.db");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    remove_db();
    fz_write(db_path, data, size);
    mle_state *st = NULL;
    mle_error *err = NULL;
    int rc = mle_state_open(db_path, 0, &st, &err);
    fz_check_result("mle_state_open", rc != 0, err);
    mle_error_free(err);
    if (rc == 0 && !st) {
        fz_fail("mle_state_open succeeded without a handle");
    }
    if (st)
        read_all(st);
    mle_state_close(st);
    remove_db();
    return 0;
}
