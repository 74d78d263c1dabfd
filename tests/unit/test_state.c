/*
 * test_state.c — unit tests of core/state.c: lineage and serial, resource round-trips, foreign
 * and corrupt files refused without a byte written, the lock across processes (live and
 * stale), move, export, survival of kill -9, and a 10,000-resource timing print.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "state.h"

/* ---- fixture: one scratch directory per test ---------------------------------------- */

typedef struct fixture {
    char dir[256];
    char path[300]; /* dir/state.db */
} fixture;

static int setup(void **ts) {
    fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/mle-state-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!f->dir[0] || !mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    *ts = f;
    return 0;
}

static int teardown(void **ts) {
    fixture *f = *ts;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ---- helpers ------------------------------------------------------------------------ */

static mle_state *open_ok(const char *path, int create) {
    mle_state *st = NULL;
    mle_error *err = NULL;
    int rc = mle_state_open(path, create, &st, &err);
    if (rc != 0)
        print_message("open %s: %s\n", path, err ? err->message : "?");
    assert_int_equal(rc, 0);
    assert_non_null(st);
    mle_error_free(err);
    return st;
}

/* Assert a failure with this code whose message contains `needle`. */
static void expect_error(int rc, mle_error **errp, mle_error_code code, const char *needle) {
    mle_error *err = *errp;
    *errp = NULL;
    assert_int_equal(rc, -1);
    assert_non_null(err);
    if (err->code != code || (needle && !strstr(err->message, needle)))
        print_message("unexpected error %d: %s\n", err->code, err->message);
    assert_int_equal(err->code, code);
    if (needle)
        assert_non_null(strstr(err->message, needle));
    mle_error_free(err);
}

static mle_state_resource make_res(const char *address, const char *type) {
    mle_state_resource r = {0};
    r.address = (char *)address;
    r.type = (char *)type;
    r.driver = "sim";
    r.id = "id-1";
    r.status = MLE_RS_OK;
    return r;
}

static void put_ok(mle_state *st, const mle_state_resource *r) {
    mle_error *err = NULL;
    int rc = mle_state_put(st, r, &err);
    if (rc != 0)
        print_message("put %s: %s\n", r->address, err ? err->message : "?");
    assert_int_equal(rc, 0);
}

/* Whole file contents (NULL and *n = 0 when it does not exist). */
static char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void sidecar(const char *path, const char *suffix, char *out, size_t n) {
    snprintf(out, n, "%s%s", path, suffix);
}

/* Open must fail with `needle`, and the file must be byte-for-byte what it was, with no
 * journal files left behind when there were none (wal_ok: an empty -wal may appear — what any
 * read-only SQLite reader leaves beside a WAL database). */
static void expect_refused_untouched_wal(const char *path, mle_error_code code,
                                         const char *needle, int wal_ok) {
    char wal[400], journal[400];
    sidecar(path, "-wal", wal, sizeof wal);
    sidecar(path, "-journal", journal, sizeof journal);
    int had_wal = exists(wal);
    size_t n0, n1;
    char *before = slurp(path, &n0);
    assert_non_null(before);
    for (int create = 0; create <= 1; create++) {
        mle_state *st = NULL;
        mle_error *err = NULL;
        int rc = mle_state_open(path, create, &st, &err);
        assert_null(st);
        expect_error(rc, &err, code, needle);
    }
    char *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    if (!wal_ok)
        assert_int_equal(exists(wal), had_wal);
    if (wal_ok && !had_wal && exists(wal)) {
        size_t nw;
        free(slurp(wal, &nw));
        assert_int_equal(nw, 0);
    }
    assert_false(exists(journal));
    free(before);
    free(after);
}

static void expect_refused_untouched(const char *path, mle_error_code code, const char *needle) {
    expect_refused_untouched_wal(path, code, needle, 0);
}

static void raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        print_message("sqlite: %s\n", msg ? msg : "?");
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_free(msg);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- open, lineage, serial ------------------------------------------------------------ */

static void test_missing_without_create(void **ts) {
    fixture *f = *ts;
    mle_state *st = NULL;
    mle_error *err = NULL;
    int rc = mle_state_open(f->path, 0, &st, &err);
    assert_null(st);
    assert_non_null(err);
    assert_non_null(err->hint);
    expect_error(rc, &err, MLE_E_NOT_FOUND, f->path);
    assert_false(exists(f->path));
}

static void test_create_reopen_keeps_lineage(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    char lineage[40];
    snprintf(lineage, sizeof lineage, "%s", mle_state_lineage(st));
    assert_int_equal(strlen(lineage), 36);
    assert_int_equal(lineage[14], '4'); /* UUID v4 */
    assert_true(mle_state_serial(st) == 0);
    assert_string_equal(mle_state_path(st), f->path);
    char *created = mle_state_meta_get(st, "created");
    assert_non_null(created);
    free(created);
    mle_state_close(st);

    st = open_ok(f->path, 0);
    assert_string_equal(mle_state_lineage(st), lineage);
    assert_true(mle_state_serial(st) == 0);
    mle_state_close(st);

    st = open_ok(f->path, 1); /* create=1 on an existing state must not re-create it */
    assert_string_equal(mle_state_lineage(st), lineage);
    mle_state_close(st);

    /* Two states never share a lineage. */
    char other[400];
    snprintf(other, sizeof other, "%s/other.db", f->dir);
    st = open_ok(other, 1);
    assert_string_not_equal(mle_state_lineage(st), lineage);
    mle_state_close(st);
}

static void test_empty_file(void **ts) {
    fixture *f = *ts;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fclose(fp);
    mle_state *st = NULL;
    mle_error *err = NULL;
    expect_error(mle_state_open(f->path, 0, &st, &err), &err, MLE_E_NOT_FOUND, "empty");
    st = open_ok(f->path, 1);
    assert_int_equal(strlen(mle_state_lineage(st)), 36);
    mle_state_close(st);
}

static void test_serial_increments(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    mle_state_resource a = make_res("sim_a.one", "sim_a");
    put_ok(st, &a);
    assert_true(mle_state_serial(st) == 1);
    put_ok(st, &a); /* a replace is a change too */
    assert_true(mle_state_serial(st) == 2);
    assert_int_equal(mle_state_move(st, "sim_a.one", "sim_a.two", &err), 0);
    assert_true(mle_state_serial(st) == 3);
    json_t *outs = json_pack("{s:{s:i, s:b}}", "n", "value", 7, "sensitive", 0);
    assert_int_equal(mle_state_set_outputs(st, outs, &err), 0);
    json_decref(outs);
    assert_true(mle_state_serial(st) == 4);
    assert_int_equal(mle_state_meta_set(st, "key_check", "abc", &err), 0);
    assert_true(mle_state_serial(st) == 5);
    assert_int_equal(mle_state_delete(st, "sim_a.two", &err), 0);
    assert_true(mle_state_serial(st) == 6);
    /* Deleting what is absent changes nothing, so the serial stays. */
    assert_int_equal(mle_state_delete(st, "sim_a.two", &err), 0);
    assert_true(mle_state_serial(st) == 6);
    /* A failed mutation does not move it either. */
    expect_error(mle_state_move(st, "nope.x", "nope.y", &err), &err, MLE_E_NOT_FOUND, "nope.x");
    assert_true(mle_state_serial(st) == 6);
    /* Taking and releasing the lock is not a state change. */
    assert_int_equal(mle_state_lock(st, "apply", NULL, &err), 0);
    assert_int_equal(mle_state_unlock(st, &err), 0);
    assert_true(mle_state_serial(st) == 6);
    mle_state_close(st);

    st = open_ok(f->path, 0);
    assert_true(mle_state_serial(st) == 6);
    /* A second handle (another process, in effect) sees the first one's commits. */
    mle_state *st2 = open_ok(f->path, 0);
    put_ok(st2, &a);
    assert_true(mle_state_serial(st2) == 7);
    put_ok(st, &a); /* re-reads the serial inside its transaction */
    assert_true(mle_state_serial(st) == 8);
    mle_state_close(st2);
    mle_state_close(st);
}

/* A batch: puts and deletes join one transaction, invisible to another handle until
 * batch_end, and the serial still counts every step. */
static void test_batch(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_state *other = open_ok(f->path, 0);
    mle_error *err = NULL;
    mle_state_resource a = make_res("sim_a.one", "sim_a");
    mle_state_resource b = make_res("sim_a.two", "sim_a");
    put_ok(st, &a);
    assert_true(mle_state_serial(st) == 1);
    assert_int_equal(mle_state_batch_begin(st, &err), 0);
    expect_error(mle_state_batch_begin(st, &err), &err, MLE_E_INTERNAL, "already open");
    put_ok(st, &b);
    assert_int_equal(mle_state_delete(st, "sim_a.one", &err), 0);
    assert_int_equal(mle_state_delete(st, "sim_a.none", &err), 0); /* no change */
    assert_true(mle_state_serial(st) == 3);
    mle_state_resource got;
    assert_int_equal(mle_state_get(st, "sim_a.two", &got, &err), 1); /* its own writes */
    mle_state_resource_clear(&got);
    /* Another connection still sees the state before the batch. */
    assert_int_equal(mle_state_get(other, "sim_a.two", &got, &err), 0);
    assert_int_equal(mle_state_get(other, "sim_a.one", &got, &err), 1);
    mle_state_resource_clear(&got);
    assert_int_equal(mle_state_batch_end(st, &err), 0);
    assert_int_equal(mle_state_get(other, "sim_a.two", &got, &err), 1);
    mle_state_resource_clear(&got);
    assert_int_equal(mle_state_get(other, "sim_a.one", &got, &err), 0);
    /* An empty batch commits nothing and keeps the serial. */
    assert_int_equal(mle_state_batch_begin(st, &err), 0);
    assert_int_equal(mle_state_batch_end(st, &err), 0);
    assert_true(mle_state_serial(st) == 3);
    mle_state_close(other);
    mle_state_close(st);
    st = open_ok(f->path, 0);
    assert_true(mle_state_serial(st) == 3);
    mle_state_close(st);
    /* A batch never ended (a crash) leaves nothing behind. */
    st = open_ok(f->path, 0);
    assert_int_equal(mle_state_batch_begin(st, &err), 0);
    put_ok(st, &a);
    mle_state_close(st);
    st = open_ok(f->path, 0);
    assert_true(mle_state_serial(st) == 3);
    assert_int_equal(mle_state_get(st, "sim_a.one", &got, &err), 0);
    mle_state_close(st);
}

static void test_meta(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    assert_null(mle_state_meta_get(st, "key_check"));
    assert_int_equal(mle_state_meta_set(st, "key_check", "v1", &err), 0);
    char *v = mle_state_meta_get(st, "key_check");
    assert_string_equal(v, "v1");
    free(v);
    expect_error(mle_state_meta_set(st, "serial", "99", &err), &err, MLE_E_INVALID, "reserved");
    expect_error(mle_state_meta_set(st, "lineage", "x", &err), &err, MLE_E_INVALID, "reserved");
    mle_state_close(st);
}

/* ---- resources --------------------------------------------------------------------- */

static void test_put_get_roundtrip(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    mle_state_resource r = make_res("aws_eks_cluster.main", "aws_eks_cluster");
    r.driver = "aws";
    r.id = "arn:aws:eks:eu-west-1:123:cluster/main";
    r.attrs = json_pack("{s:s, s:i, s:[s,s], s:{s:b}, s:n, s:f}", "name", "main", "port", 443,
                        "subnets", "a", "b", "flags", "x", 1, "nothing", "ratio", 0.5);
    r.config = json_pack("{s:s}", "version", "1.30");
    r.deps = json_pack("[s,s]", "aws_vpc.main", "aws_iam_role.eks");
    r.status = MLE_RS_IN_PROGRESS;
    r.token = "tok-123";
    r.poll_token = "arn:...:update/abc";
    r.poll_kind = 3;
    r.poll_at_ms = 1767225600123;
    r.updated_ms = 42; /* ignored: the store stamps the time of the put */
    int64_t t0 = (int64_t)time(NULL) * 1000 - 1000;
    put_ok(st, &r);
    int64_t t1 = (int64_t)time(NULL) * 1000 + 1000;
    mle_state_close(st);

    st = open_ok(f->path, 0);
    mle_state_resource g;
    assert_int_equal(mle_state_get(st, "aws_eks_cluster.main", &g, &err), 1);
    assert_string_equal(g.address, r.address);
    assert_string_equal(g.type, r.type);
    assert_string_equal(g.driver, r.driver);
    assert_string_equal(g.id, r.id);
    assert_true(json_equal(g.attrs, r.attrs));
    assert_true(json_equal(g.config, r.config));
    assert_true(json_equal(g.deps, r.deps));
    assert_int_equal(g.status, MLE_RS_IN_PROGRESS);
    assert_string_equal(g.token, r.token);
    assert_string_equal(g.poll_token, r.poll_token);
    assert_int_equal(g.poll_kind, 3);
    assert_true(g.poll_at_ms == r.poll_at_ms);
    assert_true(g.updated_ms >= t0 && g.updated_ms <= t1);
    mle_state_resource_clear(&g);
    assert_null(g.address);

    /* NULLs round-trip as NULLs (a pending create has no id and no attributes yet). */
    mle_state_resource p = make_res("sim_b.pending", "sim_b");
    p.id = NULL;
    p.status = MLE_RS_PENDING_CREATE;
    p.token = "tok-p";
    put_ok(st, &p);
    assert_int_equal(mle_state_get(st, "sim_b.pending", &g, &err), 1);
    assert_null(g.id);
    assert_null(g.attrs);
    assert_null(g.config);
    assert_null(g.deps);
    assert_null(g.poll_token);
    assert_int_equal(g.status, MLE_RS_PENDING_CREATE);
    assert_string_equal(g.token, "tok-p");
    mle_state_resource_clear(&g);

    assert_int_equal(mle_state_get(st, "sim_b.absent", &g, &err), 0);

    /* A malformed resource is refused before anything is written. */
    mle_state_resource bad = make_res("sim_b.bad", "sim_b");
    bad.deps = json_object();
    int64_t serial = mle_state_serial(st);
    expect_error(mle_state_put(st, &bad, &err), &err, MLE_E_INTERNAL, "dependencies");
    json_decref(bad.deps);
    bad = make_res("sim_b.bad", NULL);
    expect_error(mle_state_put(st, &bad, &err), &err, MLE_E_INTERNAL, "type");
    assert_true(mle_state_serial(st) == serial);

    json_decref(r.attrs);
    json_decref(r.config);
    json_decref(r.deps);
    mle_state_close(st);
}

static void test_list_sorted(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    const char *addrs[] = {"zeta.z", "alpha.a", "mid.m", "alpha.b", "Beta.c", "alpha.a1"};
    for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
        mle_state_resource r = make_res(addrs[i], "t");
        put_ok(st, &r);
    }
    mle_state_resource *rs = NULL;
    size_t n = 0;
    assert_int_equal(mle_state_list(st, &rs, &n, &err), 0);
    assert_int_equal(n, sizeof addrs / sizeof *addrs);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(rs[i - 1].address, rs[i].address) < 0);
    assert_string_equal(rs[0].address, "Beta.c");
    assert_string_equal(rs[n - 1].address, "zeta.z");
    mle_state_resources_free(rs, n);

    /* An empty state lists nothing. */
    char other[400];
    snprintf(other, sizeof other, "%s/empty.db", f->dir);
    mle_state *e = open_ok(other, 1);
    assert_int_equal(mle_state_list(e, &rs, &n, &err), 0);
    assert_int_equal(n, 0);
    mle_state_resources_free(rs, n);
    mle_state_close(e);
    mle_state_close(st);
}

static void test_move_rewrites_deps(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    mle_state_resource vpc = make_res("aws_vpc.main", "aws_vpc");
    mle_state_resource sub = make_res("aws_subnet.a", "aws_subnet");
    sub.deps = json_pack("[s,s]", "aws_vpc.main", "aws_vpc.main2");
    mle_state_resource sg = make_res("aws_sg.x", "aws_sg");
    sg.deps = json_pack("[s]", "aws_vpc.main2"); /* a near miss that must stay untouched */
    mle_state_resource other = make_res("aws_vpc.other", "aws_vpc");
    put_ok(st, &vpc);
    put_ok(st, &sub);
    put_ok(st, &sg);
    put_ok(st, &other);

    expect_error(mle_state_move(st, "aws_vpc.nope", "aws_vpc.x", &err), &err, MLE_E_NOT_FOUND,
                 "aws_vpc.nope");
    expect_error(mle_state_move(st, "aws_vpc.main", "aws_vpc.other", &err), &err, MLE_E_CONFLICT,
                 "aws_vpc.other");
    assert_int_equal(mle_state_move(st, "aws_vpc.main", "aws_vpc.core", &err), 0);

    mle_state_resource g;
    assert_int_equal(mle_state_get(st, "aws_vpc.main", &g, &err), 0);
    assert_int_equal(mle_state_get(st, "aws_vpc.core", &g, &err), 1);
    assert_string_equal(g.type, "aws_vpc");
    mle_state_resource_clear(&g);
    assert_int_equal(mle_state_get(st, "aws_subnet.a", &g, &err), 1);
    json_t *want = json_pack("[s,s]", "aws_vpc.core", "aws_vpc.main2");
    assert_true(json_equal(g.deps, want));
    json_decref(want);
    mle_state_resource_clear(&g);
    assert_int_equal(mle_state_get(st, "aws_sg.x", &g, &err), 1);
    assert_true(json_equal(g.deps, sg.deps));
    mle_state_resource_clear(&g);

    json_decref(sub.deps);
    json_decref(sg.deps);
    mle_state_close(st);
}

static void test_outputs(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    json_t *o = json_pack("{s:{s:s, s:b}, s:{s:[i,i], s:b}, s:{s:n, s:b}}", "endpoint", "value",
                          "https://x", "sensitive", 0, "ports", "value", 80, 443, "sensitive", 0,
                          "secret", "value", "sensitive", 1);
    assert_int_equal(mle_state_set_outputs(st, o, &err), 0);
    json_t *got = mle_state_outputs(st, &err);
    assert_non_null(got);
    assert_true(json_equal(got, o));
    json_decref(got);
    json_decref(o);

    /* Replaces all outputs. */
    o = json_pack("{s:{s:i}}", "only", "value", 1);
    assert_int_equal(mle_state_set_outputs(st, o, &err), 0);
    json_decref(o);
    got = mle_state_outputs(st, &err);
    json_t *want = json_pack("{s:{s:i, s:b}}", "only", "value", 1, "sensitive", 0);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    /* A malformed entry rolls the whole call back. */
    int64_t serial = mle_state_serial(st);
    o = json_pack("{s:{s:i}, s:i}", "fine", "value", 2, "broken", 3);
    expect_error(mle_state_set_outputs(st, o, &err), &err, MLE_E_INTERNAL, "broken");
    json_decref(o);
    assert_true(mle_state_serial(st) == serial);
    got = mle_state_outputs(st, &err);
    assert_non_null(json_object_get(got, "only"));
    assert_null(json_object_get(got, "fine"));
    json_decref(got);
    mle_state_close(st);
}

static void test_export(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    mle_state_resource a = make_res("sim_a.one", "sim_a");
    a.attrs = json_pack("{s:s}", "name", "one");
    a.deps = json_pack("[s]", "sim_b.two");
    mle_state_resource b = make_res("sim_b.two", "sim_b");
    b.id = NULL;
    b.status = MLE_RS_PENDING_CREATE;
    b.token = "tok-b";
    mle_state_resource c = make_res("sim_c.three", "sim_c");
    c.status = MLE_RS_IN_PROGRESS;
    c.poll_token = "op/123";
    c.poll_kind = 1;
    put_ok(st, &a);
    put_ok(st, &b);
    put_ok(st, &c);
    json_t *o = json_pack("{s:{s:s, s:b}}", "url", "value", "http://x", "sensitive", 0);
    assert_int_equal(mle_state_set_outputs(st, o, &err), 0);
    json_decref(o);

    json_t *doc = mle_state_export(st, &err);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "format_version")), 1);
    assert_string_equal(json_string_value(json_object_get(doc, "lineage")),
                        mle_state_lineage(st));
    assert_true(json_integer_value(json_object_get(doc, "serial")) == mle_state_serial(st));
    assert_int_equal(json_object_size(doc), 5);
    json_t *res = json_object_get(doc, "resources");
    assert_true(json_is_array(res));
    assert_int_equal(json_array_size(res), 3);

    json_t *r0 = json_array_get(res, 0), *r1 = json_array_get(res, 1),
           *r2 = json_array_get(res, 2);
    assert_string_equal(json_string_value(json_object_get(r0, "address")), "sim_a.one");
    assert_string_equal(json_string_value(json_object_get(r0, "type")), "sim_a");
    assert_string_equal(json_string_value(json_object_get(r0, "driver")), "sim");
    assert_string_equal(json_string_value(json_object_get(r0, "id")), "id-1");
    assert_string_equal(json_string_value(json_object_get(r0, "status")), "ok");
    assert_true(json_equal(json_object_get(r0, "attributes"), a.attrs));
    assert_true(json_equal(json_object_get(r0, "dependencies"), a.deps));
    assert_null(json_object_get(r0, "token"));
    assert_null(json_object_get(r0, "poll_token"));

    assert_true(json_is_null(json_object_get(r1, "id")));
    assert_string_equal(json_string_value(json_object_get(r1, "status")), "pending_create");
    assert_string_equal(json_string_value(json_object_get(r1, "token")), "tok-b");
    assert_true(json_is_object(json_object_get(r1, "attributes")));
    assert_int_equal(json_object_size(json_object_get(r1, "attributes")), 0);
    assert_true(json_is_array(json_object_get(r1, "dependencies")));

    assert_string_equal(json_string_value(json_object_get(r2, "status")), "in_progress");
    assert_string_equal(json_string_value(json_object_get(r2, "poll_token")), "op/123");

    json_t *outs = json_object_get(doc, "outputs");
    assert_string_equal(json_string_value(json_object_get(json_object_get(outs, "url"), "value")),
                        "http://x");
    assert_true(json_is_false(json_object_get(json_object_get(outs, "url"), "sensitive")));

    /* MLE_STATE_EXPORT_TO=file: write the document for an external schema check. */
    const char *to = getenv("MLE_STATE_EXPORT_TO");
    if (to && *to)
        assert_int_equal(json_dump_file(doc, to, JSON_INDENT(2)), 0);
    json_decref(doc);
    json_decref(a.attrs);
    json_decref(a.deps);
    mle_state_close(st);
}

/* ---- refusing what is not ours ------------------------------------------------------ */

static void test_corrupt_file_refused_untouched(void **ts) {
    fixture *f = *ts;
    unsigned char junk[8192];
    int fd = open("/dev/urandom", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);
    expect_refused_untouched(f->path, MLE_E_INVALID, "is not an mlengine state file");

    /* A SQLite header followed by garbage reaches SQLite, which must refuse it too. */
    memcpy(junk, "SQLite format 3", 16);
    fp = fopen(f->path, "wb");
    assert_int_equal(fwrite(junk, 1, sizeof junk, fp), sizeof junk);
    fclose(fp);
    expect_refused_untouched(f->path, MLE_E_INVALID, "is not an mlengine state file");

    /* A real state whose schema page is overwritten: the header is ours, SQLite finds the
     * damage. */
    unlink(f->path);
    mle_state *st = open_ok(f->path, 1);
    mle_state_resource r = make_res("sim_a.one", "sim_a");
    put_ok(st, &r);
    mle_state_close(st);
    fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk + 100, 3996, 100), 3996);
    close(fd);
    expect_refused_untouched_wal(f->path, MLE_E_INVALID, "is not an mlengine state file", 1);

    /* Too short to be anything. */
    fp = fopen(f->path, "wb");
    fputs("hello", fp);
    fclose(fp);
    expect_refused_untouched(f->path, MLE_E_INVALID, "is not an mlengine state file");
}

static void test_foreign_sqlite_refused_untouched(void **ts) {
    fixture *f = *ts;
    /* Another program's database: its own tables, no application_id. */
    raw_exec(f->path, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
                      "INSERT INTO users(name) VALUES ('alice');");
    expect_refused_untouched(f->path, MLE_E_INVALID, "is a SQLite database of another application");

    /* Another program that stamps its own application_id, even with tables named like ours. */
    char other[400];
    snprintf(other, sizeof other, "%s/fossil.db", f->dir);
    raw_exec(other, "PRAGMA application_id = 252006673; PRAGMA user_version = 1;"
                    "CREATE TABLE meta(key, value); CREATE TABLE resources(address);");
    expect_refused_untouched(other, MLE_E_INVALID, "is a SQLite database of another application");

    /* Another program's WAL database without a stamp: only SQLite can tell it apart from an
     * empty file, and reading it must not write to it. */
    snprintf(other, sizeof other, "%s/walapp.db", f->dir);
    raw_exec(other, "PRAGMA journal_mode = WAL; CREATE TABLE kv(k, v); INSERT INTO kv VALUES(1,2);");
    expect_refused_untouched_wal(other, MLE_E_INVALID,
                                 "is a SQLite database of another application", 1);

    /* Ours by its stamp, but not shaped like a state. */
    snprintf(other, sizeof other, "%s/half.db", f->dir);
    raw_exec(other, "PRAGMA application_id = 1296844081; PRAGMA user_version = 1;"
                    "CREATE TABLE meta(key, value);");
    expect_refused_untouched(other, MLE_E_INVALID, "table resources is missing");
}

static void test_newer_format_refused_untouched(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_state_resource r = make_res("sim_a.one", "sim_a");
    put_ok(st, &r);
    mle_state_close(st);
    raw_exec(f->path, "PRAGMA user_version = 7;");
    expect_refused_untouched(f->path, MLE_E_INVALID,
                             "state format 7 is newer than this mlengine supports (1); "
                             "upgrade mlengine");
}

/* ---- surviving kill -9 -------------------------------------------------------------- */

static void test_survives_kill9(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_state_close(st);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mle_state *c = NULL;
        if (mle_state_open(f->path, 0, &c, NULL) != 0)
            _exit(2);
        char addr[64];
        for (int i = 0; i < 200; i++) {
            snprintf(addr, sizeof addr, "sim_a.r%03d", i);
            mle_state_resource r = make_res(addr, "sim_a");
            if (mle_state_put(c, &r, NULL) != 0)
                _exit(3);
        }
        raise(SIGKILL); /* no close, no checkpoint: only the WAL holds the commits */
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    st = open_ok(f->path, 0);
    assert_true(mle_state_serial(st) == 200);
    mle_state_resource *rs = NULL;
    size_t n = 0;
    assert_int_equal(mle_state_list(st, &rs, &n, NULL), 0);
    assert_int_equal(n, 200);
    assert_string_equal(rs[199].address, "sim_a.r199");
    mle_state_resources_free(rs, n);
    mle_state_close(st);
}

/* ---- the lock ----------------------------------------------------------------------- */

/* Fork a child that opens the state, takes the lock and then either waits to be killed
 * (stay = 1) or exits at once without unlocking (stay = 0). Returns once the lock is taken.
 * The parent holds no SQLite connection across the fork. */
static pid_t child_takes_lock(const char *path, int stay) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        mle_state *c = NULL;
        char ok = 'n';
        if (mle_state_open(path, 0, &c, NULL) == 0 && mle_state_lock(c, "apply", NULL, NULL) == 0)
            ok = 'y';
        if (write(p[1], &ok, 1) != 1)
            _exit(1);
        if (stay)
            for (;;)
                pause();
        _exit(0); /* as if killed: the lock row stays behind */
    }
    close(p[1]);
    char ok = 0;
    assert_int_equal(read(p[0], &ok, 1), 1);
    close(p[0]);
    assert_int_equal(ok, 'y');
    return pid;
}

static void test_lock_live_then_stale(void **ts) {
    fixture *f = *ts;
    mle_state_close(open_ok(f->path, 1));
    pid_t child = child_takes_lock(f->path, 1);

    mle_state *st = open_ok(f->path, 0);
    mle_error *err = NULL;
    char pidtxt[64];
    snprintf(pidtxt, sizeof pidtxt, "(pid %ld, command apply, since ", (long)child);
    int rc = mle_state_lock(st, "plan", NULL, &err);
    assert_non_null(err);
    print_message("live: %s\n", err->message);
    assert_non_null(strstr(err->message, pidtxt));
    assert_null(strstr(err->message, "stale"));
    assert_non_null(strstr(err->message, "wait for it to finish"));
    expect_error(rc, &err, MLE_E_CONFLICT, "state is locked by ");

    mle_state_lock_info h;
    assert_int_equal(mle_state_lock_holder(st, &h, &err), 1);
    assert_true(h.pid == (long)child);
    assert_string_equal(h.command, "apply");
    assert_int_equal(strlen(h.id), 36);
    struct passwd *pw = getpwuid(geteuid());
    assert_non_null(pw);
    assert_string_equal(h.user, pw->pw_name); /* the child ran as us */
    char who[300];
    snprintf(who, sizeof who, "locked by %s@%s (pid", h.user, h.host);
    rc = mle_state_lock(st, "plan", NULL, &err);
    assert_non_null(strstr(err->message, who));
    assert_non_null(strstr(err->message, h.id));
    expect_error(rc, &err, MLE_E_CONFLICT, NULL);

    /* kill -9 the holder: the row stays, and now it is stale — taken over, and said so. */
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_null(mle_state_lock_takeover(st));
    mle_state_lock_info mine;
    assert_int_equal(mle_state_lock(st, "plan", &mine, &err), 0);
    assert_null(err);
    const char *took = mle_state_lock_takeover(st);
    assert_non_null(took);
    print_message("stale: %s\n", took);
    assert_non_null(strstr(took, "took over a stale lock"));
    assert_non_null(strstr(took, pidtxt + 1)); /* "pid N, command apply, since " */
    mle_state_lock_info held;
    assert_int_equal(mle_state_lock_holder(st, &held, &err), 1);
    assert_string_equal(held.id, mine.id);
    assert_true(held.pid == (long)getpid());
    mle_state_lock_info_clear(&held);
    mle_state_lock_info_clear(&mine);
    mle_state_lock_info_clear(&h);
    mle_state_close(st);
}

static void test_lock_stale_and_force_unlock(void **ts) {
    fixture *f = *ts;
    mle_state_close(open_ok(f->path, 1));
    pid_t child = child_takes_lock(f->path, 0);
    assert_int_equal(waitpid(child, NULL, 0), child);

    mle_state *st = open_ok(f->path, 0);
    mle_error *err = NULL;
    /* The dead holder's row is there until someone locks or force-unlocks. */
    mle_state_lock_info h;
    assert_int_equal(mle_state_lock_holder(st, &h, &err), 1);
    expect_error(mle_state_force_unlock(st, "00000000-0000-4000-8000-000000000000", &err), &err,
                 MLE_E_CONFLICT, "does not match");
    assert_int_equal(mle_state_lock_holder(st, NULL, &err), 1); /* still there */
    assert_int_equal(mle_state_force_unlock(st, h.id, &err), 0);
    assert_int_equal(mle_state_lock_holder(st, NULL, &err), 0);
    expect_error(mle_state_force_unlock(st, h.id, &err), &err, MLE_E_NOT_FOUND, "not locked");
    mle_state_lock_info_clear(&h);

    /* Now it is free: take it, see ourselves as holder, release it. */
    mle_state_lock_info mine;
    assert_int_equal(mle_state_lock(st, "apply", &mine, &err), 0);
    assert_true(mine.pid == (long)getpid());
    assert_string_equal(mine.command, "apply");
    assert_int_equal(mle_state_lock_holder(st, &h, &err), 1);
    assert_string_equal(h.id, mine.id);
    assert_string_equal(h.user, mine.user);
    assert_string_equal(h.host, mine.host);
    assert_true(h.started_ms == mine.started_ms);
    mle_state_lock_info_clear(&h);
    /* A second handle cannot take it while we hold it. */
    mle_state *st2 = open_ok(f->path, 0);
    expect_error(mle_state_lock(st2, "plan", NULL, &err), &err, MLE_E_CONFLICT, mine.id);
    assert_int_equal(mle_state_unlock(st, &err), 0);
    assert_int_equal(mle_state_lock_holder(st, NULL, &err), 0);
    assert_int_equal(mle_state_unlock(st, &err), 0); /* nothing held: a no-op */
    /* Closing a handle that still holds its lock releases it. */
    assert_int_equal(mle_state_lock(st2, "plan", NULL, &err), 0);
    mle_state_close(st2);
    assert_int_equal(mle_state_lock_holder(st, NULL, &err), 0);
    mle_state_lock_info_clear(&mine);
    mle_state_close(st);
}

/* ---- the 10,000-resource figures ---------------------------------------------------- */

static void test_bench_10k(void **ts) {
    fixture *f = *ts;
    mle_state *st = open_ok(f->path, 1);
    mle_error *err = NULL;
    json_t *attrs = json_pack("{s:s, s:s, s:i, s:[s,s,s], s:{s:s, s:s}}", "name", "resource",
                              "arn", "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0abc",
                              "size", 42, "zones", "a", "b", "c", "tags", "mlengine:lineage",
                              mle_state_lineage(st), "mlengine:address", "x");
    json_t *deps = json_pack("[s]", "aws_vpc.main");
    char addr[64];
    double t0 = now_s();
    for (int i = 0; i < 10000; i++) {
        snprintf(addr, sizeof addr, "aws_subnet.s%05d", i);
        mle_state_resource r = make_res(addr, "aws_subnet");
        r.attrs = attrs;
        r.deps = deps;
        put_ok(st, &r);
    }
    double fill = now_s() - t0;

    t0 = now_s();
    for (int i = 0; i < 1000; i++) {
        snprintf(addr, sizeof addr, "aws_subnet.s%05d", (i * 7919) % 10000);
        mle_state_resource r = make_res(addr, "aws_subnet");
        r.attrs = attrs;
        r.deps = deps;
        put_ok(st, &r);
    }
    double put_ms = (now_s() - t0) * 1000.0 / 1000.0;

    t0 = now_s();
    mle_state_resource g;
    for (int i = 0; i < 1000; i++) {
        snprintf(addr, sizeof addr, "aws_subnet.s%05d", (i * 7919) % 10000);
        assert_int_equal(mle_state_get(st, addr, &g, &err), 1);
        mle_state_resource_clear(&g);
    }
    double get_ms = (now_s() - t0) * 1000.0 / 1000.0;

    mle_state_resource *rs = NULL;
    size_t n = 0;
    t0 = now_s();
    assert_int_equal(mle_state_list(st, &rs, &n, &err), 0);
    double list_ms = (now_s() - t0) * 1000.0;
    assert_int_equal(n, 10000);
    mle_state_resources_free(rs, n);

    t0 = now_s();
    json_t *doc = mle_state_export(st, &err);
    double export_ms = (now_s() - t0) * 1000.0;
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "resources")), 10000);
    json_decref(doc);
    assert_true(mle_state_serial(st) == 11000);

    print_message("state bench (%s): fill 10k puts %.0f ms (%.3f ms/put); put with 10k in "
                  "state %.3f ms; get %.3f ms; list 10k %.1f ms; export 10k %.1f ms\n",
                  f->dir, fill * 1000.0, fill * 1000.0 / 10000.0, put_ms, get_ms, list_ms,
                  export_ms);
    json_decref(attrs);
    json_decref(deps);
    mle_state_close(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_without_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_reopen_keeps_lineage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_increments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_sorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_rewrites_deps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_file_refused_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_sqlite_refused_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_format_refused_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_live_then_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_stale_and_force_unlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_10k, setup, teardown),
    };
    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
