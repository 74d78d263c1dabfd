/*
 * state.c — the embedded state store: one SQLite file per stack holding resources, outputs,
 * lineage + serial, the lock row and crash-recovery intents (see state.h for the contract).
 *
 * Durability model. The journal is WAL with synchronous=NORMAL: a commit appends to the WAL and
 * returns without fsync (fsync happens at checkpoints). That is durable against a process crash
 * — the crash mlengine promises to survive is kill -9 in the middle of an apply — because the
 * committed frames are already in the OS page cache, and it keeps a commit at ~1 ms so every
 * single cloud operation can be committed on its own. A power loss may lose the last few commits
 * but never corrupts the file (WAL frames are checksummed); intents plus ownership tags make the
 * engine recover from that too.
 *
 * Foreign files. Before anything is written the file is sniffed (SQLite magic) and inspected
 * through a read-only connection (a read-write one could roll back another program's hot
 * journal, which is a write). Only an mlengine state or an empty file is opened read-write.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* PRAGMA application_id of every mlengine state: "MLE1". */
#define MLE_STATE_APP_ID 0x4D4C4531
/* How long a writer waits for another connection's write transaction before giving up. */
#define MLE_STATE_BUSY_MS 5000

/* Every statement the store runs, prepared once per handle (the put/list budgets depend on it). */
enum {
    S_BEGIN_WRITE,
    S_BEGIN_READ,
    S_COMMIT,
    S_ROLLBACK,
    S_SERIAL_GET,
    S_SERIAL_SET,
    S_META_GET,
    S_META_SET,
    S_RES_PUT,
    S_RES_GET,
    S_RES_LIST,
    S_RES_LIST_UNFINISHED,
    S_RES_DEL,
    S_RES_RENAME,
    S_RES_DEPS_MENTION,
    S_RES_SET_DEPS,
    S_OUT_CLEAR,
    S_OUT_PUT,
    S_OUT_LIST,
    S_LOCK_GET,
    S_LOCK_PUT,
    S_LOCK_DEL,
    S__COUNT
};

#define RES_COLS                                                                            \
    "address, type, driver, id, attrs, config, deps, status, token, poll_token, poll_kind, " \
    "poll_at_ms, updated_ms"

static const char *const stmt_sql[S__COUNT] = {
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SERIAL_GET] = "SELECT value FROM meta WHERE key = 'serial'",
    [S_SERIAL_SET] = "UPDATE meta SET value = ?1 WHERE key = 'serial'",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [S_RES_PUT] = "INSERT OR REPLACE INTO resources(" RES_COLS ") "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [S_RES_GET] = "SELECT " RES_COLS " FROM resources WHERE address = ?1",
    [S_RES_LIST] = "SELECT " RES_COLS " FROM resources ORDER BY address",
    [S_RES_LIST_UNFINISHED] = "SELECT " RES_COLS " FROM resources WHERE status != 0 "
                              "ORDER BY address",
    [S_RES_DEL] = "DELETE FROM resources WHERE address = ?1",
    [S_RES_RENAME] = "UPDATE resources SET address = ?2 WHERE address = ?1",
    /* A cheap pre-filter on the JSON text; each hit is parsed and compared exactly. */
    [S_RES_DEPS_MENTION] = "SELECT address, deps FROM resources "
                           "WHERE deps IS NOT NULL AND instr(deps, ?1) > 0",
    [S_RES_SET_DEPS] = "UPDATE resources SET deps = ?2 WHERE address = ?1",
    [S_OUT_CLEAR] = "DELETE FROM outputs",
    [S_OUT_PUT] = "INSERT INTO outputs(name, value, sensitive) VALUES (?1, ?2, ?3)",
    [S_OUT_LIST] = "SELECT name, value, sensitive FROM outputs ORDER BY name",
    [S_LOCK_GET] = "SELECT id, user, host, pid, command, started_ms FROM lock",
    [S_LOCK_PUT] = "INSERT INTO lock(slot, id, user, host, pid, command, started_ms) "
                   "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
    [S_LOCK_DEL] = "DELETE FROM lock WHERE id = ?1",
};

/* The schema of format 1, created in one transaction together with the header stamps, so a
 * crash during creation leaves either an empty file or a complete state. */
static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value);"
    "CREATE TABLE resources("
    " address TEXT PRIMARY KEY NOT NULL, type TEXT NOT NULL, driver TEXT NOT NULL, id TEXT,"
    " attrs TEXT, config TEXT, deps TEXT, status INTEGER NOT NULL DEFAULT 0, token TEXT,"
    " poll_token TEXT, poll_kind INTEGER NOT NULL DEFAULT 0,"
    " poll_at_ms INTEGER NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE outputs(name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    " sensitive INTEGER NOT NULL DEFAULT 0);"
    /* slot pins the table to one row: a second lock cannot exist even by mistake. */
    "CREATE TABLE lock(slot INTEGER PRIMARY KEY CHECK (slot = 1), id TEXT NOT NULL,"
    " user TEXT, host TEXT, pid INTEGER, command TEXT, started_ms INTEGER);"
    "PRAGMA application_id = 1296844081;" /* MLE_STATE_APP_ID */
    "PRAGMA user_version = 1;";           /* MLE_STATE_FORMAT */

static const char *const schema_tables[] = {"meta", "resources", "outputs", "lock"};

struct mle_state {
    sqlite3 *db;
    char *path;
    char lineage[40];
    int64_t serial;   /* as of the last transaction this handle ran */
    char *lock_id;    /* the lock this handle holds, or NULL */
    char *takeover;   /* what mle_state_lock took over, or NULL */
    int batch;        /* inside mle_state_batch_begin/end: puts and deletes join one
                         transaction; batch_dirty: one of them changed something */
    int batch_dirty;
    sqlite3_stmt *stmt[S__COUNT];
};

/* ----------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort(); /* the error convention: allocation failure is not recoverable */
    return d;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "2026-05-01T12:00:00Z" */
static void format_utc(int64_t ms, char buf[32]) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, 32, "%lld ms", (long long)ms);
}

/* A random UUID v4 (RFC 9562): lineages and lock IDs. */
static int uuid_v4(char out[37]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

static char *col_text(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? xstrdup((const char *)t) : NULL;
}

/* Is s (NULL counts as valid) well-formed UTF-8, as JSON strings must be? A state file is
 * untrusted input: text that jansson cannot hold would silently vanish from exports. */
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (p && *p) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int more;
        uint32_t c;
        if ((*p & 0xE0) == 0xC0)
            more = 1, c = *p & 0x1F;
        else if ((*p & 0xF0) == 0xE0)
            more = 2, c = *p & 0x0F;
        else if ((*p & 0xF8) == 0xF0)
            more = 3, c = *p & 0x07;
        else
            return 0;
        p++;
        for (int i = 0; i < more; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (*p & 0x3F);
        }
        if ((more == 1 && c < 0x80) || (more == 2 && c < 0x800) || (more == 3 && c < 0x10000) ||
            c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
    }
    return 1;
}

static mle_error_code code_of_sqlite(int rc) {
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return MLE_E_TIMEOUT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return MLE_E_INVALID;
    case SQLITE_CONSTRAINT:
        return MLE_E_CONFLICT;
    default:
        return MLE_E_IO;
    }
}

/* Fail with the connection's last SQLite error: "state PATH: WHAT: sqlite: MSG". */
static int db_fail(const mle_state *st, mle_error **err, const char *what) {
    int rc = sqlite3_extended_errcode(st->db);
    if (!err)
        return -1;
    *err = mle_error_new(code_of_sqlite(rc), "state %s: %s: sqlite: %s", st->path, what,
                         sqlite3_errmsg(st->db));
    if ((rc & 0xff) == SQLITE_BUSY)
        mle_error_set_hint(*err, "another mlengine process is writing this state; retry when "
                                 "it has finished");
    return -1;
}

/* The cached statement, prepared on first use. Reset by the caller through done(). */
static sqlite3_stmt *stmt(mle_state *st, int k, mle_error **err) {
    if (st->stmt[k])
        return st->stmt[k];
    if (sqlite3_prepare_v3(st->db, stmt_sql[k], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[k],
                           NULL) != SQLITE_OK) {
        db_fail(st, err, "preparing a statement");
        return NULL;
    }
    return st->stmt[k];
}

/* Return a statement to its cache: reset and drop bindings (they may point at caller data). */
static void done(sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows. */
static int exec_stmt(mle_state *st, sqlite3_stmt *s, const char *what, mle_error **err) {
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        db_fail(st, err, what);
        done(s);
        return -1;
    }
    done(s);
    return 0;
}

static int exec_k(mle_state *st, int k, const char *what, mle_error **err) {
    sqlite3_stmt *s = stmt(st, k, err);
    return s ? exec_stmt(st, s, what, err) : -1;
}

static int bind_text(sqlite3_stmt *s, int i, const char *v) {
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* Bind a JSON value as its compact text (NULL value -> SQL NULL). *buf receives the text, which
 * must outlive the step (it is bound SQLITE_STATIC to spare a copy); caller frees it. */
static int bind_json(sqlite3_stmt *s, int i, const json_t *v, char **buf) {
    *buf = NULL;
    if (!v)
        return sqlite3_bind_null(s, i) == SQLITE_OK ? 0 : -1;
    *buf = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!*buf)
        return -1;
    return sqlite3_bind_text(s, i, *buf, -1, SQLITE_STATIC) == SQLITE_OK ? 0 : -1;
}

/* Parse a JSON column; SQL NULL -> *out = NULL. */
static int col_json(const mle_state *st, sqlite3_stmt *s, int i, const char *what,
                    const char *address, json_t **out, mle_error **err) {
    *out = NULL;
    const char *t = (const char *)sqlite3_column_text(s, i);
    if (!t)
        return 0;
    json_error_t je;
    *out = json_loadb(t, (size_t)sqlite3_column_bytes(s, i), JSON_DECODE_ANY, &je);
    if (*out)
        return 0;
    return mle_fail(err, MLE_E_INVALID, "state %s: %s of %s is not valid JSON: %s", st->path,
                    what, address, je.text);
}

/* ----------------------------------------------------------------------------------------
 * Transactions: every mutation is BEGIN IMMEDIATE … serial + 1 … COMMIT.
 * ---------------------------------------------------------------------------------------- */

static int read_serial(mle_state *st, int64_t *out, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_SERIAL_GET, err);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            mle_fail(err, MLE_E_INVALID, "state %s has no serial in its meta table", st->path);
        else
            db_fail(st, err, "reading the serial");
        done(s);
        return -1;
    }
    *out = sqlite3_column_int64(s, 0);
    done(s);
    return 0;
}

static void tx_rollback(mle_state *st) {
    /* In a batch a failed step leaves the batch's other steps alone: SQLite has already
     * undone the failed statement itself. */
    if (st->batch || sqlite3_get_autocommit(st->db))
        return; /* SQLite already rolled back (e.g. after an I/O error) */
    sqlite3_stmt *s = stmt(st, S_ROLLBACK, NULL);
    if (s) {
        sqlite3_step(s);
        done(s);
    }
}

/* Start a write transaction and re-read the serial inside it: another process may have
 * committed since this handle last looked (the lock normally prevents it, the check is cheap). */
static int tx_begin(mle_state *st, mle_error **err) {
    if (st->batch) {
        /* The batch's transaction is still open unless SQLite rolled it back on an error. */
        if (sqlite3_get_autocommit(st->db))
            return mle_fail(err, MLE_E_IO, "state %s: the batch transaction was rolled back "
                            "after an earlier error", st->path);
        return 0;
    }
    if (exec_k(st, S_BEGIN_WRITE, "starting a transaction", err) != 0)
        return -1;
    if (read_serial(st, &st->serial, err) != 0) {
        tx_rollback(st);
        return -1;
    }
    return 0;
}

/* Bump the serial and commit; on failure everything is rolled back. */
static int tx_commit_bump(mle_state *st, mle_error **err) {
    int64_t next = st->serial + 1;
    if (st->batch) {
        /* Counted now, written once when the batch commits. */
        st->serial = next;
        st->batch_dirty = 1;
        return 0;
    }
    sqlite3_stmt *s = stmt(st, S_SERIAL_SET, err);
    if (!s) {
        tx_rollback(st);
        return -1;
    }
    sqlite3_bind_int64(s, 1, next);
    if (exec_stmt(st, s, "writing the serial", err) != 0 ||
        exec_k(st, S_COMMIT, "committing", err) != 0) {
        tx_rollback(st);
        return -1;
    }
    st->serial = next;
    return 0;
}

/* Commit without touching the serial (lock rows are not state content). */
static int tx_commit_plain(mle_state *st, mle_error **err) {
    if (exec_k(st, S_COMMIT, "committing", err) != 0) {
        tx_rollback(st);
        return -1;
    }
    return 0;
}

int mle_state_batch_begin(mle_state *st, mle_error **err) {
    if (st->batch)
        return mle_fail(err, MLE_E_INTERNAL, "state %s: a batch is already open", st->path);
    if (tx_begin(st, err) != 0)
        return -1;
    st->batch = 1;
    st->batch_dirty = 0;
    return 0;
}

int mle_state_batch_end(mle_state *st, mle_error **err) {
    if (!st->batch)
        return 0;
    st->batch = 0;
    if (sqlite3_get_autocommit(st->db))
        return mle_fail(err, MLE_E_IO, "state %s: the batch transaction was rolled back after "
                        "an error", st->path);
    if (!st->batch_dirty)
        return tx_commit_plain(st, err);
    /* Every step bumped st->serial; write where it got to. */
    st->serial--;
    return tx_commit_bump(st, err);
}

/* A read transaction gives multi-statement reads (export) one consistent snapshot. */
static int tx_read_begin(mle_state *st, mle_error **err) {
    return exec_k(st, S_BEGIN_READ, "starting a read transaction", err);
}

static void tx_read_end(mle_state *st) {
    if (!sqlite3_get_autocommit(st->db)) {
        sqlite3_stmt *s = stmt(st, S_COMMIT, NULL);
        if (s) {
            sqlite3_step(s);
            done(s);
        }
    }
}

/* ----------------------------------------------------------------------------------------
 * Open: sniff, inspect read-only, then open read-write and create or load.
 * ---------------------------------------------------------------------------------------- */

typedef enum { INSPECT_EMPTY, INSPECT_OURS } inspect_kind;

static int not_state(const char *path, const char *why, mle_error **err) {
    if (!err)
        return -1;
    *err = mle_error_new(MLE_E_INVALID, "%s is not an mlengine state file (%s)", path, why);
    mle_error_set_hint(*err, "mlengine never writes to such a file; check the --state path");
    return -1;
}

static int foreign_db(const char *path, mle_error **err) {
    if (!err)
        return -1;
    *err = mle_error_new(MLE_E_INVALID, "%s is a SQLite database of another application", path);
    mle_error_set_hint(*err, "mlengine never writes to it; check the --state path");
    return -1;
}

static int newer_format(const char *path, int64_t version, mle_error **err) {
    if (!err)
        return -1;
    *err = mle_error_new(MLE_E_INVALID,
                         "%s: state format %lld is newer than this mlengine supports (%d); "
                         "upgrade mlengine",
                         path, (long long)version, MLE_STATE_FORMAT);
    mle_error_set_hint(*err, "a newer mlengine wrote this state; this one never writes to it");
    return -1;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Read the 100-byte SQLite header ourselves and refuse what is certainly not ours before SQLite
 * opens the file at all: random bytes, another application's stamp, a newer format. (Even a
 * read-only SQLite connection leaves empty -wal/-shm files beside a WAL database.) The header
 * may lag behind an uncheckpointed WAL, so anything that passes is inspected again through
 * SQLite. */
static int sniff_header(const char *path, mle_error **err) {
    static const char magic[16] = "SQLite format 3";
    unsigned char head[100];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mle_fail(err, MLE_E_IO, "cannot read state %s: %s", path, strerror(errno));
    ssize_t n = read(fd, head, sizeof head);
    int saved = errno;
    close(fd);
    if (n < 0)
        return mle_fail(err, MLE_E_IO, "cannot read state %s: %s", path, strerror(saved));
    if ((size_t)n < sizeof head)
        return not_state(path, "too short to be a SQLite database", err);
    if (memcmp(head, magic, sizeof magic) != 0)
        return not_state(path, "no SQLite header", err);
    unsigned page = (unsigned)head[16] << 8 | head[17];
    int page_ok = page == 1 || (page >= 512 && (page & (page - 1)) == 0);
    if (!page_ok || head[21] != 64 || head[22] != 32 || head[23] != 32)
        return not_state(path, "corrupt SQLite header", err);
    uint32_t app = be32(head + 68), version = be32(head + 60), schema_cookie = be32(head + 40);
    /* No stamp but a schema: another program's database (an empty one has cookie 0). */
    if (app != MLE_STATE_APP_ID && (app != 0 || schema_cookie != 0))
        return foreign_db(path, err);
    if (app == MLE_STATE_APP_ID && version > MLE_STATE_FORMAT)
        return newer_format(path, version, err);
    return 0;
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out) {
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(s, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK)
        rc = sqlite3_extended_errcode(db);
    sqlite3_finalize(s);
    return rc;
}

/* Which of our tables exist, and how many schema objects there are at all. */
static int schema_census(sqlite3 *db, int64_t *objects, int *ours) {
    sqlite3_stmt *s = NULL;
    *objects = 0;
    *ours = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT type, name FROM sqlite_master", -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        (*objects)++;
        const char *type = (const char *)sqlite3_column_text(s, 0);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        for (size_t i = 0; type && name && i < sizeof schema_tables / sizeof *schema_tables; i++)
            if (strcmp(type, "table") == 0 && strcmp(name, schema_tables[i]) == 0)
                *ours |= 1 << i;
        rc = SQLITE_OK;
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK)
        rc = sqlite3_extended_errcode(db);
    sqlite3_finalize(s);
    return rc;
}

/* Classify an open connection's file: an mlengine state, an empty database (safe to
 * initialize: it holds nothing of anyone), or refused with the reason. Reads only. */
static int inspect(sqlite3 *db, const char *path, inspect_kind *kind, mle_error **err) {
    int64_t app = 0, version = 0, objects = 0;
    int ours = 0, rc;
    if ((rc = pragma_int(db, "PRAGMA application_id", &app)) != SQLITE_OK ||
        (rc = pragma_int(db, "PRAGMA user_version", &version)) != SQLITE_OK ||
        (rc = schema_census(db, &objects, &ours)) != SQLITE_OK) {
        if (code_of_sqlite(rc) == MLE_E_INVALID)
            return not_state(path, sqlite3_errmsg(db), err);
        return mle_fail(err, code_of_sqlite(rc), "cannot read state %s: sqlite: %s", path,
                        sqlite3_errmsg(db));
    }
    if (app == 0 && version == 0 && objects == 0) {
        *kind = INSPECT_EMPTY;
        return 0;
    }
    if ((uint32_t)app != MLE_STATE_APP_ID)
        return foreign_db(path, err);
    if (version > MLE_STATE_FORMAT)
        return newer_format(path, version, err);
    if (version < 1)
        return not_state(path, "format 0", err);
    for (size_t i = 0; i < sizeof schema_tables / sizeof *schema_tables; i++) {
        if (!(ours & (1 << i))) {
            char why[64];
            snprintf(why, sizeof why, "table %s is missing", schema_tables[i]);
            return not_state(path, why, err);
        }
    }
    *kind = INSPECT_OURS;
    return 0;
}

/* Harden a connection to a file that may come from anywhere: no schema-defined functions
 * or triggers run with our privileges, and no writes to sqlite_master by accident. */
static void harden(sqlite3 *db) {
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
}

/* The read-only check of an existing file. No connection that could write exists yet. */
static int inspect_readonly(const char *path, inspect_kind *kind, mle_error **err) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK) {
        mle_fail(err, MLE_E_IO, "cannot open state %s: sqlite: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    harden(db);
    sqlite3_busy_timeout(db, MLE_STATE_BUSY_MS);
    rc = inspect(db, path, kind, err);
    sqlite3_close(db);
    return rc;
}

static int exec_sql(mle_state *st, const char *sql, const char *what, mle_error **err) {
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(st, err, what);
    return 0;
}

/* WAL + NORMAL: see the file comment. */
static int configure(mle_state *st, mle_error **err) {
    sqlite3_busy_timeout(st->db, MLE_STATE_BUSY_MS);
    if (exec_sql(st, "PRAGMA foreign_keys = OFF; PRAGMA synchronous = NORMAL;",
                 "configuring", err) != 0)
        return -1;
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) == SQLITE_OK &&
             sqlite3_step(s) == SQLITE_ROW;
    const char *mode = ok ? (const char *)sqlite3_column_text(s, 0) : NULL;
    int wal = mode && strcmp(mode, "wal") == 0;
    if (!ok)
        db_fail(st, err, "enabling WAL");
    else if (!wal)
        mle_fail(err, MLE_E_IO,
                 "state %s: the file system does not support SQLite WAL (journal mode %s)",
                 st->path, mode ? mode : "?");
    sqlite3_finalize(s);
    return wal ? 0 : -1;
}

/* Create the schema in an empty file. Re-inspects inside the write transaction, so two
 * processes creating the same state at once end up with one lineage. */
static int init_schema(mle_state *st, mle_error **err) {
    inspect_kind kind;
    if (exec_sql(st, "BEGIN IMMEDIATE", "starting the creation transaction", err) != 0)
        return -1;
    if (inspect(st->db, st->path, &kind, err) != 0)
        goto fail;
    if (kind == INSPECT_OURS)
        return exec_sql(st, "COMMIT", "committing", err); /* someone else created it */
    char lineage[37], created[32];
    if (uuid_v4(lineage) != 0) {
        mle_fail(err, MLE_E_IO, "state %s: no randomness for the lineage: %s", st->path,
                 strerror(errno));
        goto fail;
    }
    format_utc(now_ms(), created);
    if (exec_sql(st, schema_sql, "creating the schema", err) != 0)
        goto fail;
    char *ins = sqlite3_mprintf("INSERT INTO meta(key, value) VALUES ('lineage', %Q), "
                                "('serial', 0), ('created', %Q)",
                                lineage, created);
    int rc = ins ? exec_sql(st, ins, "writing the lineage", err) : -1;
    sqlite3_free(ins);
    if (rc != 0 || exec_sql(st, "COMMIT", "committing the new state", err) != 0)
        goto fail;
    return 0;
fail:
    tx_rollback(st);
    return -1;
}

static int load_meta(mle_state *st, mle_error **err) {
    char *lineage = mle_state_meta_get(st, "lineage");
    if (!lineage || !*lineage || strlen(lineage) >= sizeof st->lineage || !utf8_ok(lineage)) {
        free(lineage);
        return not_state(st->path, "no lineage", err);
    }
    snprintf(st->lineage, sizeof st->lineage, "%s", lineage);
    free(lineage);
    return read_serial(st, &st->serial, err);
}

/* Decide, from the file as it is on disk, whether it may be opened read-write. */
static int precheck(const char *path, int create, mle_error **err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return mle_fail(err, MLE_E_IO, "cannot stat state %s: %s", path, strerror(errno));
        if (create)
            return 0;
        if (err) {
            *err = mle_error_new(MLE_E_NOT_FOUND, "no state at %s", path);
            mle_error_set_hint(*err, "run `mlengine apply` to create it, or point --state at "
                                     "an existing state file");
        }
        return -1;
    }
    if (!S_ISREG(sb.st_mode))
        return not_state(path, "not a regular file", err);
    if (sb.st_size == 0) {
        if (create)
            return 0;
        if (err) {
            *err = mle_error_new(MLE_E_NOT_FOUND, "%s is empty: no state has been written yet",
                                 path);
            mle_error_set_hint(*err, "run `mlengine apply` to create it");
        }
        return -1;
    }
    if (sniff_header(path, err) != 0)
        return -1;
    inspect_kind kind;
    if (inspect_readonly(path, &kind, err) != 0)
        return -1;
    if (kind == INSPECT_EMPTY && !create)
        return mle_fail(err, MLE_E_NOT_FOUND, "%s is an empty database: no state yet", path);
    return 0;
}

int mle_state_open(const char *path, int create, mle_state **out, mle_error **err) {
    *out = NULL;
    if (!path || !*path)
        return mle_fail(err, MLE_E_INVALID, "state path is empty");
    if (precheck(path, create, err) != 0)
        return -1;
    mle_state *st = calloc(1, sizeof *st);
    if (!st)
        abort();
    st->path = xstrdup(path);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        mle_fail(err, MLE_E_IO, "cannot open state %s: sqlite: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : "out of memory");
        mle_state_close(st);
        return -1;
    }
    harden(st->db);
    sqlite3_busy_timeout(st->db, MLE_STATE_BUSY_MS);
    /* Again on the read-write connection: the file may have changed since the precheck. */
    inspect_kind kind;
    if (inspect(st->db, path, &kind, err) != 0 || configure(st, err) != 0 ||
        (kind == INSPECT_EMPTY && init_schema(st, err) != 0) || load_meta(st, err) != 0) {
        mle_state_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void mle_state_close(mle_state *st) {
    if (!st)
        return;
    /* A handle closed while still holding its lock (an error path) releases it: a lock left
     * behind by a process that is alive is never reported stale. */
    if (st->lock_id && st->db)
        mle_state_unlock(st, NULL);
    for (int k = 0; k < S__COUNT; k++)
        sqlite3_finalize(st->stmt[k]);
    sqlite3_close(st->db);
    free(st->lock_id);
    free(st->takeover);
    free(st->path);
    free(st);
}

const char *mle_state_lineage(const mle_state *st) { return st->lineage; }
int64_t mle_state_serial(const mle_state *st) { return st->serial; }
const char *mle_state_path(const mle_state *st) { return st->path; }

/* ----------------------------------------------------------------------------------------
 * Resources
 * ---------------------------------------------------------------------------------------- */

void mle_state_resource_clear(mle_state_resource *r) {
    if (!r)
        return;
    free(r->address);
    free(r->type);
    free(r->driver);
    free(r->id);
    json_decref(r->attrs);
    json_decref(r->config);
    json_decref(r->deps);
    free(r->token);
    free(r->poll_token);
    memset(r, 0, sizeof *r);
}

void mle_state_resources_free(mle_state_resource *rs, size_t n) {
    for (size_t i = 0; rs && i < n; i++)
        mle_state_resource_clear(&rs[i]);
    free(rs);
}

/* What a resource must have to be stored (and to be read back): NULL when it has it all,
 * else what it lacks, for "resource X put without ...". */
static const char *resource_defect(const mle_state_resource *r) {
    if (!r->address || !*r->address)
        return "an address";
    if (!r->type || !*r->type)
        return "a type";
    if (!r->driver || !*r->driver)
        return "a driver";
    if (r->status < MLE_RS_OK || r->status > MLE_RS_IN_PROGRESS)
        return "a known status";
    if (r->attrs && !json_is_object(r->attrs))
        return "attributes that are an object";
    if (r->config && !json_is_object(r->config))
        return "a config that is an object";
    if (r->deps && !json_is_array(r->deps))
        return "dependencies that are an array";
    return NULL;
}

/* Decode one row of RES_COLS. */
static int row_to_resource(const mle_state *st, sqlite3_stmt *s, mle_state_resource *r,
                           mle_error **err) {
    memset(r, 0, sizeof *r);
    r->address = col_text(s, 0);
    r->type = col_text(s, 1);
    r->driver = col_text(s, 2);
    r->id = col_text(s, 3);
    r->status = (mle_res_status)sqlite3_column_int(s, 7);
    r->token = col_text(s, 8);
    r->poll_token = col_text(s, 9);
    r->poll_kind = sqlite3_column_int(s, 10);
    r->poll_at_ms = sqlite3_column_int64(s, 11);
    r->updated_ms = sqlite3_column_int64(s, 12);
    const char *a = r->address ? r->address : "?";
    if (col_json(st, s, 4, "attributes", a, &r->attrs, err) != 0 ||
        col_json(st, s, 5, "config", a, &r->config, err) != 0 ||
        col_json(st, s, 6, "dependencies", a, &r->deps, err) != 0) {
        mle_state_resource_clear(r);
        return -1;
    }
    /* A row mlengine did not write (a corrupt or edited file) is refused like bad JSON: the
     * planner and the exports rely on what mle_state_put guarantees. */
    const char *bad = resource_defect(r);
    if (!bad && !(utf8_ok(r->address) && utf8_ok(r->type) && utf8_ok(r->driver) &&
                  utf8_ok(r->id) && utf8_ok(r->token) && utf8_ok(r->poll_token)))
        bad = "text that is UTF-8";
    for (size_t i = 0; !bad && i < json_array_size(r->deps); i++)
        if (!json_is_string(json_array_get(r->deps, i)))
            bad = "dependencies that are addresses";
    if (bad) {
        mle_fail(err, MLE_E_INVALID, "state %s: a resource row (%s) without %s: the state is "
                 "corrupt", st->path, utf8_ok(r->address) && r->address ? r->address : "?", bad);
        mle_state_resource_clear(r);
        return -1;
    }
    return 0;
}

/* The list, without its own transaction (export wraps it in one). */
static int list_rows_k(mle_state *st, int k, mle_state_resource **out, size_t *n,
                       mle_error **err) {
    sqlite3_stmt *s = stmt(st, k, err);
    if (!s)
        return -1;
    mle_state_resource *rs = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 64;
            mle_state_resource *grown = realloc(rs, cap * sizeof *rs);
            if (!grown)
                abort();
            rs = grown;
        }
        if (row_to_resource(st, s, &rs[len], err) != 0)
            goto fail;
        len++;
    }
    if (rc != SQLITE_DONE) {
        db_fail(st, err, "listing resources");
        goto fail;
    }
    done(s);
    *out = rs;
    *n = len;
    return 0;
fail:
    done(s);
    mle_state_resources_free(rs, len);
    return -1;
}

int mle_state_list(mle_state *st, mle_state_resource **out, size_t *n, mle_error **err) {
    *out = NULL;
    *n = 0;
    return list_rows_k(st, S_RES_LIST, out, n, err);
}

int mle_state_list_unfinished(mle_state *st, mle_state_resource **out, size_t *n,
                              mle_error **err) {
    *out = NULL;
    *n = 0;
    return list_rows_k(st, S_RES_LIST_UNFINISHED, out, n, err);
}

int mle_state_get(mle_state *st, const char *address, mle_state_resource *out, mle_error **err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(st, S_RES_GET, err);
    if (!s)
        return -1;
    bind_text(s, 1, address);
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW)
        ret = row_to_resource(st, s, out, err) == 0 ? 1 : -1;
    else if (rc != SQLITE_DONE)
        ret = db_fail(st, err, "reading a resource");
    done(s);
    return ret;
}

static int check_resource(const mle_state *st, const mle_state_resource *r, mle_error **err) {
    const char *bad = resource_defect(r);
    if (!bad)
        return 0;
    return mle_fail(err, MLE_E_INTERNAL, "state %s: resource %s put without %s", st->path,
                    r->address ? r->address : "(no address)", bad);
}

/* Bind every column of r; the JSON texts land in json_buf[3] (caller frees). */
static int bind_resource(sqlite3_stmt *s, const mle_state_resource *r, int64_t updated,
                         char *json_buf[3]) {
    int bad = bind_text(s, 1, r->address) | bind_text(s, 2, r->type) |
              bind_text(s, 3, r->driver) | bind_text(s, 4, r->id);
    if (bind_json(s, 5, r->attrs, &json_buf[0]) != 0 ||
        bind_json(s, 6, r->config, &json_buf[1]) != 0 ||
        bind_json(s, 7, r->deps, &json_buf[2]) != 0)
        return -1;
    bad |= sqlite3_bind_int(s, 8, (int)r->status) | bind_text(s, 9, r->token) |
           bind_text(s, 10, r->poll_token) | sqlite3_bind_int(s, 11, r->poll_kind) |
           sqlite3_bind_int64(s, 12, r->poll_at_ms) | sqlite3_bind_int64(s, 13, updated);
    return bad == SQLITE_OK ? 0 : -1;
}

/* updated_ms is the store's own stamp: the time of this put, whatever r says. */
int mle_state_put(mle_state *st, const mle_state_resource *r, mle_error **err) {
    if (check_resource(st, r, err) != 0)
        return -1;
    sqlite3_stmt *s = stmt(st, S_RES_PUT, err);
    if (!s || tx_begin(st, err) != 0)
        return -1;
    char *json_buf[3] = {NULL, NULL, NULL};
    int rc = -1;
    if (bind_resource(s, r, now_ms(), json_buf) != 0) {
        done(s);
        mle_fail(err, MLE_E_INVALID, "state %s: resource %s has a value JSON cannot encode",
                 st->path, r->address);
    } else {
        rc = exec_stmt(st, s, "writing a resource", err);
    }
    for (int i = 0; i < 3; i++)
        free(json_buf[i]);
    if (rc != 0) {
        tx_rollback(st);
        return -1;
    }
    return tx_commit_bump(st, err);
}

/* Deleting what is not there changes nothing, so it commits nothing and keeps the serial. */
int mle_state_delete(mle_state *st, const char *address, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_RES_DEL, err);
    if (!s || tx_begin(st, err) != 0)
        return -1;
    bind_text(s, 1, address);
    if (exec_stmt(st, s, "deleting a resource", err) != 0) {
        tx_rollback(st);
        return -1;
    }
    if (sqlite3_changes(st->db) == 0) {
        tx_rollback(st);
        return 0;
    }
    return tx_commit_bump(st, err);
}

static int resource_exists(mle_state *st, const char *address, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_RES_GET, err);
    if (!s)
        return -1;
    bind_text(s, 1, address);
    int rc = sqlite3_step(s);
    int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_fail(st, err, "reading a resource");
    done(s);
    return ret;
}

/* deps with every `from` replaced by `to`; NULL when from is not an element (a false hit of
 * the text pre-filter). New reference. */
static json_t *deps_renamed(json_t *deps, const char *from, const char *to) {
    if (!json_is_array(deps))
        return NULL;
    json_t *copy = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(deps, i, v) {
        if (!json_is_string(v) || strcmp(json_string_value(v), from) != 0)
            continue;
        if (!copy)
            copy = json_deep_copy(deps);
        json_array_set_new(copy, i, json_string(to));
    }
    return copy;
}

typedef struct deps_fix {
    char *address;
    json_t *deps;
} deps_fix;

/* Collect the rewritten deps first: the rows cannot be updated while the select is open. */
static int collect_dep_fixes(mle_state *st, const char *from, const char *to, deps_fix **out,
                             size_t *n, mle_error **err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = stmt(st, S_RES_DEPS_MENTION, err);
    if (!s)
        return -1;
    json_t *needle = json_string(from);
    char *text = needle ? json_dumps(needle, JSON_ENCODE_ANY) : NULL;
    json_decref(needle);
    if (!text)
        return mle_fail(err, MLE_E_INVALID, "address %s cannot be encoded as JSON", from);
    sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *deps = NULL;
        const char *addr = (const char *)sqlite3_column_text(s, 0);
        if (col_json(st, s, 1, "dependencies", addr ? addr : "?", &deps, err) != 0)
            break;
        json_t *fixed = deps_renamed(deps, from, to);
        json_decref(deps);
        if (!fixed)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            deps_fix *grown = realloc(*out, cap * sizeof **out);
            if (!grown)
                abort();
            *out = grown;
        }
        (*out)[(*n)++] = (deps_fix){xstrdup(addr), fixed};
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        db_fail(st, err, "reading dependencies");
    done(s);
    free(text);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void free_dep_fixes(deps_fix *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(f[i].address);
        json_decref(f[i].deps);
    }
    free(f);
}

static int apply_dep_fixes(mle_state *st, const deps_fix *f, size_t n, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_RES_SET_DEPS, err);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *text = NULL;
        bind_text(s, 1, f[i].address);
        if (bind_json(s, 2, f[i].deps, &text) != 0) {
            done(s);
            free(text);
            return mle_fail(err, MLE_E_INTERNAL, "cannot encode dependencies of %s",
                            f[i].address);
        }
        int rc = exec_stmt(st, s, "rewriting dependencies", err);
        free(text);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int move_in_tx(mle_state *st, const char *from, const char *to, mle_error **err) {
    int e = resource_exists(st, from, err);
    if (e <= 0)
        return e < 0 ? -1
                     : mle_fail(err, MLE_E_NOT_FOUND, "state %s has no resource %s", st->path,
                                from);
    e = resource_exists(st, to, err);
    if (e != 0)
        return e < 0 ? -1
                     : mle_fail(err, MLE_E_CONFLICT, "state %s already has a resource %s",
                                st->path, to);
    sqlite3_stmt *s = stmt(st, S_RES_RENAME, err);
    if (!s)
        return -1;
    bind_text(s, 1, from);
    bind_text(s, 2, to);
    if (exec_stmt(st, s, "renaming a resource", err) != 0)
        return -1;
    deps_fix *fixes;
    size_t n;
    if (collect_dep_fixes(st, from, to, &fixes, &n, err) != 0)
        return -1;
    int rc = apply_dep_fixes(st, fixes, n, err);
    free_dep_fixes(fixes, n);
    return rc;
}

int mle_state_move(mle_state *st, const char *from, const char *to, mle_error **err) {
    if (!from || !*from || !to || !*to)
        return mle_fail(err, MLE_E_INVALID, "state move needs two addresses");
    if (strcmp(from, to) == 0)
        return mle_fail(err, MLE_E_CONFLICT, "cannot move %s onto itself", from);
    if (tx_begin(st, err) != 0)
        return -1;
    if (move_in_tx(st, from, to, err) != 0) {
        tx_rollback(st);
        return -1;
    }
    return tx_commit_bump(st, err);
}

/* ----------------------------------------------------------------------------------------
 * Outputs
 * ---------------------------------------------------------------------------------------- */

static int put_output(mle_state *st, sqlite3_stmt *s, const char *name, json_t *o,
                      mle_error **err) {
    json_t *value = json_object_get(o, "value");
    json_t *sens = json_object_get(o, "sensitive");
    if (!json_is_object(o) || !value || (sens && !json_is_boolean(sens)))
        return mle_fail(err, MLE_E_INTERNAL,
                        "output %s must be {\"value\": v, \"sensitive\": bool}", name);
    char *text = NULL;
    bind_text(s, 1, name);
    sqlite3_bind_int(s, 3, json_is_true(sens));
    if (bind_json(s, 2, value, &text) != 0) {
        done(s);
        free(text);
        return mle_fail(err, MLE_E_INVALID, "output %s has a value JSON cannot encode", name);
    }
    int rc = exec_stmt(st, s, "writing an output", err);
    free(text);
    return rc;
}

int mle_state_set_outputs(mle_state *st, json_t *outputs, mle_error **err) {
    if (outputs && !json_is_object(outputs))
        return mle_fail(err, MLE_E_INTERNAL, "outputs must be a JSON object");
    sqlite3_stmt *s = stmt(st, S_OUT_PUT, err);
    if (!s || tx_begin(st, err) != 0)
        return -1;
    if (exec_k(st, S_OUT_CLEAR, "clearing outputs", err) != 0)
        goto fail;
    const char *name;
    json_t *o;
    json_object_foreach(outputs, name, o) {
        if (put_output(st, s, name, o, err) != 0)
            goto fail;
    }
    return tx_commit_bump(st, err);
fail:
    tx_rollback(st);
    return -1;
}

json_t *mle_state_outputs(mle_state *st, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_OUT_LIST, err);
    if (!s)
        return NULL;
    json_t *all = json_object();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        json_t *value = NULL;
        if (!name || !utf8_ok(name)) {
            mle_fail(err, MLE_E_INVALID, "state %s: an output without a name in UTF-8: the "
                     "state is corrupt", st->path);
            goto fail;
        }
        if (col_json(st, s, 1, "output", name, &value, err) != 0)
            goto fail;
        json_object_set_new(all, name,
                            json_pack("{s:o?, s:b}", "value", value, "sensitive",
                                      sqlite3_column_int(s, 2)));
    }
    if (rc != SQLITE_DONE) {
        db_fail(st, err, "reading outputs");
        goto fail;
    }
    done(s);
    return all;
fail:
    done(s);
    json_decref(all);
    return NULL;
}

/* ----------------------------------------------------------------------------------------
 * Export
 * ---------------------------------------------------------------------------------------- */

static const char *status_name(mle_res_status s) {
    switch (s) {
    case MLE_RS_PENDING_CREATE:
        return "pending_create";
    case MLE_RS_IN_PROGRESS:
        return "in_progress";
    default:
        return "ok";
    }
}

static json_t *export_resource(const mle_state_resource *r) {
    json_t *attrs = r->attrs ? json_incref(r->attrs) : json_object();
    json_t *deps = r->deps ? json_incref(r->deps) : json_array();
    json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:o, s:o}", "address", r->address, "type",
                          r->type, "driver", r->driver, "id", r->id, "status",
                          status_name(r->status), "attributes", attrs, "dependencies", deps);
    if (o && r->token)
        json_object_set_new(o, "token", json_string(r->token));
    if (o && r->poll_token)
        json_object_set_new(o, "poll_token", json_string(r->poll_token));
    return o;
}

static json_t *export_in_tx(mle_state *st, mle_error **err) {
    int64_t serial;
    mle_state_resource *rs = NULL;
    size_t n = 0;
    if (read_serial(st, &serial, err) != 0 || list_rows_k(st, S_RES_LIST, &rs, &n, err) != 0)
        return NULL;
    json_t *outputs = mle_state_outputs(st, err);
    if (!outputs) {
        mle_state_resources_free(rs, n);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = export_resource(&rs[i]);
        if (!o || json_array_append_new(arr, o) != 0) {
            mle_fail(err, MLE_E_INVALID, "state %s: resource %s cannot be exported as JSON",
                     st->path, rs[i].address);
            mle_state_resources_free(rs, n);
            json_decref(arr);
            json_decref(outputs);
            return NULL;
        }
    }
    mle_state_resources_free(rs, n);
    json_t *doc = json_pack("{s:i, s:s, s:I, s:o, s:o}", "format_version", MLE_STATE_FORMAT,
                            "lineage", st->lineage, "serial", (json_int_t)serial, "resources",
                            arr, "outputs", outputs);
    if (!doc)
        mle_fail(err, MLE_E_INVALID, "state %s cannot be exported as JSON", st->path);
    return doc;
}

json_t *mle_state_export(mle_state *st, mle_error **err) {
    if (tx_read_begin(st, err) != 0)
        return NULL;
    json_t *doc = export_in_tx(st, err);
    tx_read_end(st);
    return doc;
}

/* ----------------------------------------------------------------------------------------
 * The lock
 * ---------------------------------------------------------------------------------------- */

void mle_state_lock_info_clear(mle_state_lock_info *info) {
    if (!info)
        return;
    free(info->id);
    free(info->user);
    free(info->host);
    free(info->command);
    memset(info, 0, sizeof *info);
}

static char *current_user(void) {
    char buf[1024];
    struct passwd pw, *res = NULL;
    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res) == 0 && res && res->pw_name)
        return xstrdup(res->pw_name);
    const char *env = getenv("USER");
    if (env && *env)
        return xstrdup(env);
    snprintf(buf, sizeof buf, "uid%ld", (long)geteuid());
    return xstrdup(buf);
}

static void current_host(char buf[256]) {
    if (gethostname(buf, 256) != 0)
        snprintf(buf, 256, "unknown-host");
    buf[255] = '\0';
}

/* 1 and *info when a lock row exists, 0 when not, -1 on error. No transaction of its own. */
static int read_lock(mle_state *st, mle_state_lock_info *info, mle_error **err) {
    memset(info, 0, sizeof *info);
    sqlite3_stmt *s = stmt(st, S_LOCK_GET, err);
    if (!s)
        return -1;
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW) {
        info->id = col_text(s, 0);
        info->user = col_text(s, 1);
        info->host = col_text(s, 2);
        info->pid = (long)sqlite3_column_int64(s, 3);
        info->command = col_text(s, 4);
        info->started_ms = sqlite3_column_int64(s, 5);
        ret = 1;
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(st, err, "reading the lock");
    }
    done(s);
    return ret;
}

/* Stale: the holder ran on this host and its pid no longer exists. A recycled pid looks alive,
 * which errs on the safe side (the user is told to check, not that it is stale). */
static int lock_is_stale(const mle_state_lock_info *h) {
    char host[256];
    current_host(host);
    if (!h->host || strcmp(h->host, host) != 0 || h->pid <= 0)
        return 0;
    return kill((pid_t)h->pid, 0) != 0 && errno == ESRCH;
}

static int locked_error(const mle_state *st, const mle_state_lock_info *h, mle_error **err) {
    char since[32];
    format_utc(h->started_ms, since);
    const char *user = h->user ? h->user : "?", *host = h->host ? h->host : "?";
    const char *cmd = h->command ? h->command : "?", *id = h->id ? h->id : "?";
    if (lock_is_stale(h))
        return mle_fail(err, MLE_E_CONFLICT,
                        "state is locked by %s@%s (pid %ld, command %s, since %s) — that process "
                        "no longer exists: the lock is stale; run `mlengine state unlock %s`",
                        user, host, h->pid, cmd, since, id);
    return mle_fail(err, MLE_E_CONFLICT,
                    "state is locked by %s@%s (pid %ld, command %s, since %s); wait for it to "
                    "finish, or if you are sure it is gone run `mlengine state unlock %s`",
                    user, host, h->pid, cmd, since, id);
}

static int delete_lock(mle_state *st, const char *id, int *deleted, mle_error **err);

static int insert_lock(mle_state *st, const mle_state_lock_info *me, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_LOCK_PUT, err);
    if (!s)
        return -1;
    bind_text(s, 1, me->id);
    bind_text(s, 2, me->user);
    bind_text(s, 3, me->host);
    sqlite3_bind_int64(s, 4, me->pid);
    bind_text(s, 5, me->command);
    sqlite3_bind_int64(s, 6, me->started_ms);
    return exec_stmt(st, s, "writing the lock", err);
}

/* The lock is not state content, so taking or releasing it leaves the serial alone: a saved
 * plan is applied under the lock and must still match the serial it was made against. */
int mle_state_lock(mle_state *st, const char *command, mle_state_lock_info *info,
                   mle_error **err) {
    char id[37], host[256];
    if (uuid_v4(id) != 0)
        return mle_fail(err, MLE_E_IO, "no randomness for a lock ID: %s", strerror(errno));
    current_host(host);
    mle_state_lock_info me = {.id = id, .host = host, .command = (char *)(command ? command : ""),
                              .pid = (long)getpid(), .started_ms = now_ms()};
    me.user = current_user();
    mle_state_lock_info holder;
    int rc = -1;
    if (exec_k(st, S_BEGIN_WRITE, "starting a transaction", err) != 0)
        goto out;
    int held = read_lock(st, &holder, err);
    if (held > 0 && lock_is_stale(&holder)) {
        /* The holder ran on this host and is gone (kill -9, a crash): like an OS file lock,
         * its lock went with it. Take it over in the same transaction and say so. */
        int deleted = 0;
        char since[32];
        format_utc(holder.started_ms, since);
        free(st->takeover);
        if (asprintf(&st->takeover, "took over a stale lock of %s@%s (pid %ld, command %s, "
                                    "since %s): that process no longer exists",
                     holder.user ? holder.user : "?", holder.host ? holder.host : "?",
                     holder.pid, holder.command ? holder.command : "?", since) < 0)
            st->takeover = NULL;
        held = delete_lock(st, holder.id, &deleted, err) == 0 ? 0 : -1;
        mle_state_lock_info_clear(&holder);
    }
    if (held != 0) {
        if (held > 0) {
            locked_error(st, &holder, err);
            mle_state_lock_info_clear(&holder);
        }
        tx_rollback(st);
        goto out;
    }
    if (insert_lock(st, &me, err) != 0) {
        tx_rollback(st);
        goto out;
    }
    if (tx_commit_plain(st, err) != 0)
        goto out;
    free(st->lock_id);
    st->lock_id = xstrdup(id);
    if (info) {
        *info = me;
        info->id = xstrdup(id);
        info->host = xstrdup(host);
        info->command = xstrdup(me.command);
        me.user = NULL; /* moved into info */
    }
    rc = 0;
out:
    free(me.user);
    return rc;
}

static int delete_lock(mle_state *st, const char *id, int *deleted, mle_error **err) {
    sqlite3_stmt *s = stmt(st, S_LOCK_DEL, err);
    if (!s)
        return -1;
    bind_text(s, 1, id);
    if (exec_stmt(st, s, "removing the lock", err) != 0)
        return -1;
    *deleted = sqlite3_changes(st->db) > 0;
    return 0;
}

const char *mle_state_lock_takeover(const mle_state *st) { return st->takeover; }

/* Releasing when this handle holds no lock is a no-op (cleanup paths call it freely). If our
 * row is gone — someone force-unlocked it — nothing else is touched and that is reported. */
int mle_state_unlock(mle_state *st, mle_error **err) {
    if (!st->lock_id)
        return 0;
    int deleted = 0;
    if (delete_lock(st, st->lock_id, &deleted, err) != 0)
        return -1;
    char *id = st->lock_id;
    st->lock_id = NULL;
    int rc = deleted ? 0
                     : mle_fail(err, MLE_E_CONFLICT,
                                "state %s: our lock %s was removed by someone else while held "
                                "(`mlengine state unlock`?)",
                                st->path, id);
    free(id);
    return rc;
}

static int force_unlock_in_tx(mle_state *st, const char *lock_id, mle_error **err) {
    mle_state_lock_info h;
    int held = read_lock(st, &h, err);
    if (held <= 0)
        return held < 0 ? -1
                        : mle_fail(err, MLE_E_NOT_FOUND, "state %s is not locked", st->path);
    int rc = 0, deleted = 0;
    if (!h.id || strcmp(h.id, lock_id) != 0) {
        char since[32];
        format_utc(h.started_ms, since);
        rc = mle_fail(err, MLE_E_CONFLICT,
                      "lock ID %s does not match the lock on state %s (held by %s@%s, pid %ld, "
                      "command %s, since %s, lock ID %s)",
                      lock_id, st->path, h.user ? h.user : "?", h.host ? h.host : "?", h.pid,
                      h.command ? h.command : "?", since, h.id ? h.id : "?");
    } else {
        rc = delete_lock(st, lock_id, &deleted, err);
    }
    mle_state_lock_info_clear(&h);
    return rc;
}

int mle_state_force_unlock(mle_state *st, const char *lock_id, mle_error **err) {
    if (!lock_id || !*lock_id)
        return mle_fail(err, MLE_E_INVALID, "state unlock needs a lock ID");
    if (exec_k(st, S_BEGIN_WRITE, "starting a transaction", err) != 0)
        return -1;
    if (force_unlock_in_tx(st, lock_id, err) != 0) {
        tx_rollback(st);
        return -1;
    }
    if (tx_commit_plain(st, err) != 0)
        return -1;
    if (st->lock_id && strcmp(st->lock_id, lock_id) == 0) {
        free(st->lock_id);
        st->lock_id = NULL;
    }
    return 0;
}

int mle_state_lock_holder(mle_state *st, mle_state_lock_info *info, mle_error **err) {
    mle_state_lock_info h;
    int rc = read_lock(st, &h, err);
    if (rc == 1 && info)
        *info = h;
    else
        mle_state_lock_info_clear(&h);
    if (rc == 0 && info)
        memset(info, 0, sizeof *info);
    return rc;
}

/* ----------------------------------------------------------------------------------------
 * Metadata
 * ---------------------------------------------------------------------------------------- */

char *mle_state_meta_get(mle_state *st, const char *key) {
    sqlite3_stmt *s = stmt(st, S_META_GET, NULL);
    if (!s || !key)
        return NULL;
    bind_text(s, 1, key);
    char *v = sqlite3_step(s) == SQLITE_ROW ? col_text(s, 0) : NULL;
    done(s);
    return v;
}

/* Metadata is state content (e.g. the encryption key check), so a change bumps the serial. The
 * store's own keys are not writable from outside. */
int mle_state_meta_set(mle_state *st, const char *key, const char *value, mle_error **err) {
    if (!key || !*key || !value)
        return mle_fail(err, MLE_E_INVALID, "state metadata needs a key and a value");
    if (strcmp(key, "lineage") == 0 || strcmp(key, "serial") == 0 || strcmp(key, "created") == 0)
        return mle_fail(err, MLE_E_INVALID, "state metadata key %s is reserved", key);
    sqlite3_stmt *s = stmt(st, S_META_SET, err);
    if (!s || tx_begin(st, err) != 0)
        return -1;
    bind_text(s, 1, key);
    bind_text(s, 2, value);
    if (exec_stmt(st, s, "writing metadata", err) != 0) {
        tx_rollback(st);
        return -1;
    }
    return tx_commit_bump(st, err);
}
