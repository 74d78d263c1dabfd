/*
 * sim.c — the `sim` driver: simulated cloud resources for tests and benchmarks.
 *
 * The sim is a small but honest "cloud": every resource is a JSON file in a store directory
 * that outlives the process, so a run killed with -9 leaves behind exactly what a real cloud
 * would, and the next run must find it. Its side of the crash-safety bargain is that a
 * resource's ID is derived from the create's idempotency token, so `adopt` (and a repeated
 * create) finds what an earlier, interrupted create made.
 *
 * Knobs in the resource's own attributes let a stack model a real API: latency per call,
 * long operations answered "in progress", fatal failures and throttling at a seeded rate.
 * Every real create and delete is appended to a journal so tests can count side effects.
 *
 * Only <mlengine/driver.h> and libc: everything else comes through struct mle_host.
 * See README.md beside this file for the store's file format and the journal's line format.
 */
#include <mlengine/driver.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SIM_VERSION "1.0.0"
#define SIM_ID_PREFIX "sim-"
#define SIM_ID_HEX 16                    /* hex chars of sha256(token) kept in the ID */
#define SIM_ID_LEN (4 + SIM_ID_HEX)      /* "sim-" + hex */
#define SIM_POLL_CAP_MS 1000             /* never ask to be polled later than this */
#define SIM_THROTTLE_RETRY_MS 50
#define SIM_DEFAULT_STORE "./.sim-store"

/* ---------------------------------------------------------------------------------------
 * Driver context: options, and the per-address call counters that make the seeded
 * failure/throttle draws reproducible.
 * --------------------------------------------------------------------------------------- */

/* One address's call count. Chained hash table: the counter set grows with the stack. */
typedef struct sim_counter {
    struct sim_counter *next;
    uint64_t calls;
    char addr[];
} sim_counter;

typedef struct sim_ctx {
    char *store;        /* directory holding <id>.json files (malloc'd) */
    int journal_fd;     /* O_APPEND fd, or -1 when no journal is configured */
    char *journal_path; /* malloc'd, or NULL */
    int fsync;          /* option `fsync`: flush resource files to disk before renaming */
    pthread_mutex_t mu; /* guards the counter table */
    sim_counter **buckets;
    size_t n_buckets, n_counters;
} sim_ctx;

/* Which operation a shared helper is acting for (only for messages and draws). */
typedef enum sim_call { SIM_CREATE, SIM_UPDATE, SIM_DELETE, SIM_READ } sim_call;

static const char *const sim_call_names[] = {"create", "update", "delete", "read"};

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------------------------- */

/* Build an error with a printf-style message; host->error_new is variadic only, so format
 * here first. The message is short by construction (addresses, IDs, errno text). */
static mle_error *sim_err(const mle_host *h, mle_error_code code, const char *fmt, ...)
    MLE_PRINTF(3, 4);
static mle_error *sim_err(const mle_host *h, mle_error_code code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return h->error_new(h, code, "%s", buf);
}

/* Attribute readers: a missing or null attribute gives the default. */
static const mle_value *attr(const mle_host *h, const mle_value *obj, const char *key)
{
    if (!obj)
        return NULL;
    const mle_value *v = h->v_get(obj, key);
    if (!v || h->v_kind(v) == MLE_V_NULL)
        return NULL;
    return v;
}

static int64_t attr_int(const mle_host *h, const mle_value *obj, const char *key, int64_t dflt)
{
    const mle_value *v = attr(h, obj, key);
    return v ? h->v_int_of(v) : dflt;
}

static double attr_real(const mle_host *h, const mle_value *obj, const char *key, double dflt)
{
    const mle_value *v = attr(h, obj, key);
    return v ? h->v_real_of(v) : dflt;
}

static int attr_bool(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = attr(h, obj, key);
    return v && h->v_kind(v) == MLE_V_BOOL && h->v_bool_of(v);
}

static const char *attr_str(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = attr(h, obj, key);
    return v ? h->v_str(v) : NULL;
}

/* A valid sim ID is "sim-" + 16 lower-case hex chars. Checked before an ID becomes part of a
 * path, so a hand-written import ID can never reach outside the store. */
static int valid_id(const char *id)
{
    if (!id || strlen(id) != SIM_ID_LEN || strncmp(id, SIM_ID_PREFIX, 4) != 0)
        return 0;
    for (const char *p = id + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* ID = "sim-" + first 16 hex chars of sha256(token): the same token always names the same
 * resource, which is how the sim finds what an interrupted create made. */
static void id_from_token(const mle_host *h, const char *token, char out[SIM_ID_LEN + 1])
{
    uint8_t digest[32];
    h->sha256(token, strlen(token), digest);
    char *hex = h->hex(h, digest, SIM_ID_HEX / 2);
    snprintf(out, SIM_ID_LEN + 1, SIM_ID_PREFIX "%s", hex);
    h->free(h, hex);
}

static char *path_join(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

/* mkdir -p. Returns 0 or -1 with errno set. */
static int mkdir_p(const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        abort();
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            free(copy);
            return -1;
        }
        *p = '/';
    }
    int rc = mkdir(copy, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(copy);
    return rc;
}

/* The sim models a blocking network call, so sleeping the configured latency on the worker
 * thread is the point: it is what a driver doing synchronous HTTP costs the scheduler. */
static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint32_t poll_delay(int64_t remaining_ms)
{
    if (remaining_ms < 1)
        return 1;
    return remaining_ms > SIM_POLL_CAP_MS ? SIM_POLL_CAP_MS : (uint32_t)remaining_ms;
}

/* ---------------------------------------------------------------------------------------
 * Seeded draws: fail_rate and throttle_rate decide by a hash of (address, n) where n counts
 * this address's calls in this process. Per-address counting keeps the verdicts the same
 * from run to run whatever order parallel workers reach the driver in.
 * --------------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a: only for bucket choice */
    for (; *s; s++)
        x = (x ^ (uint8_t)*s) * 1099511628211ull;
    return x;
}

static void counters_grow(sim_ctx *c)
{
    size_t n = c->n_buckets ? c->n_buckets * 2 : 64;
    sim_counter **b = calloc(n, sizeof(*b));
    if (!b)
        abort();
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (sim_counter *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = hash_str(e->addr) & (n - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

/* The number of this call for `addr` (0 for the first). */
static uint64_t next_call(sim_ctx *c, const char *addr)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_counters >= c->n_buckets)
        counters_grow(c);
    size_t k = hash_str(addr) & (c->n_buckets - 1);
    sim_counter *e = c->buckets[k];
    while (e && strcmp(e->addr, addr) != 0)
        e = e->next;
    if (!e) {
        size_t len = strlen(addr) + 1;
        e = calloc(1, sizeof(*e) + len);
        if (!e)
            abort();
        memcpy(e->addr, addr, len);
        e->next = c->buckets[k];
        c->buckets[k] = e;
        c->n_counters++;
    }
    uint64_t n = e->calls++;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* A uniform number in [0, 1) from sha256(salt, address, n). */
static double draw(const mle_host *h, const char *salt, const char *addr, uint64_t n)
{
    char *text = h->sprintf(h, "%s\n%s\n%llu", salt, addr, (unsigned long long)n);
    uint8_t d[32];
    h->sha256(text, strlen(text), d);
    h->free(h, text);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | d[i];
    return (double)(x >> 11) * 0x1p-53;
}

/* ---------------------------------------------------------------------------------------
 * Journal: one line per REAL create/delete, each a single write() on an O_APPEND fd, so
 * concurrent workers never interleave and a kill -9 never tears a line.
 * --------------------------------------------------------------------------------------- */

/* Addresses are written verbatim except control characters (a newline would split the
 * line); readers should take the ID (and token) from the right, since an address may hold
 * spaces (for_each keys). */
static char *journal_line(const mle_host *h, const char *verb, const char *address,
                          const char *id, const char *token)
{
    char *line = token ? h->sprintf(h, "%s %s %s %s\n", verb, address, id, token)
                       : h->sprintf(h, "%s %s %s\n", verb, address, id);
    size_t n = strlen(line);
    for (size_t i = 0; i + 1 < n; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = '?';
    return line;
}

static int journal_append(const mle_host *h, sim_ctx *c, const char *line, mle_error **err)
{
    size_t n = strlen(line);
    ssize_t w;
    do {
        w = write(c->journal_fd, line, n);
    } while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n)
        return 0;
    *err = sim_err(h, MLE_E_IO, "sim: appending to journal %s: %s", c->journal_path,
                   w < 0 ? strerror(errno) : "short write");
    return -1;
}

/* Is `line` already in the journal? Only used to repair after a crash (see doc_load), so a
 * full read is fine. Returns 1, 0, or -1 with *err. */
static int journal_has(const mle_host *h, sim_ctx *c, const char *line, mle_error **err)
{
    int fd = open(c->journal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = sim_err(h, MLE_E_IO, "sim: reading journal %s: %s", c->journal_path,
                       strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        abort();
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            if (!buf)
                abort();
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    size_t n = strlen(line);
    int found = 0;
    for (const char *p = buf; (p = strstr(p, line)) != NULL; p += n) {
        if (p == buf || p[-1] == '\n') {
            found = 1;
            break;
        }
    }
    free(buf);
    return found;
}

/* Append `line` unless a crash left it already written. */
static int journal_repair(const mle_host *h, sim_ctx *c, const char *line, mle_error **err)
{
    int has = journal_has(h, c, line, err);
    if (has < 0)
        return -1;
    if (has)
        return 0;
    h->log(h, MLE_LOG_INFO, "sim: journal repaired after an interrupted run: %.*s",
           (int)strlen(line) - 1, line);
    return journal_append(h, c, line, err);
}

/* ---------------------------------------------------------------------------------------
 * The store: <store>/<id>.json, one document per resource, written atomically.
 *
 * Document: {"id", "type", "address", "lineage", "token", "status", "ready_at_ms",
 *            "attributes": {...}, "journal_pending"?: "create"|"delete"}
 *
 * The file and the journal line are two writes, and a kill -9 can fall between them. So the
 * document carries "journal_pending" while its journal line is being written: whoever next
 * loads a document that still has it (only possible after a crash) looks the line up in the
 * journal and appends it if missing. The journal then holds exactly one line per real
 * create/delete, which is what the crash tests count.
 * --------------------------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write tmp + fsync + rename. `durable` = 0 skips the fsync for writes whose loss is
 * repaired anyway (clearing journal_pending): that saves one disk flush per create. The
 * option fsync = false skips it everywhere: a kill -9 loses nothing the kernel already has,
 * only a power cut would, and benchmarks should measure the engine, not the disk. */
static int doc_write(const mle_host *h, sim_ctx *c, const char *id, const mle_value *doc,
                     int durable, mle_error **err)
{
    char *json = h->v_to_json(h, doc);
    char *path = path_join(c->store, id, ".json");
    /* A unique temporary beside the target, so rename is atomic and writers never collide. */
    size_t tn = strlen(c->store) + strlen(id) + 16;
    char *tmp = malloc(tn);
    if (!tmp)
        abort();
    snprintf(tmp, tn, "%s/.%s.XXXXXX", c->store, id);
    int rc = -1, fd = mkstemp(tmp);
    if (fd < 0) {
        *err = sim_err(h, MLE_E_IO, "sim: creating a file in store %s: %s", c->store,
                       strerror(errno));
        goto out;
    }
    /* mkstemp makes 0600; the store is plain data, readable like any other file. */
    int ok = fchmod(fd, 0644) == 0 && write_all(fd, json, strlen(json)) == 0 &&
             write_all(fd, "\n", 1) == 0 && (!durable || !c->fsync || fsync(fd) == 0);
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) == 0) {
        rc = 0;
        goto out;
    }
    if (ok)
        saved = errno;
    unlink(tmp);
    *err = sim_err(h, MLE_E_IO, "sim: writing %s: %s", path, strerror(saved));
out:
    h->free(h, json);
    free(path);
    free(tmp);
    return rc;
}

/* Read <store>/<id>.json raw. 1 with *doc, 0 when absent, -1 with *err. */
static int doc_read(const mle_host *h, sim_ctx *c, const char *id, mle_value **doc,
                    mle_error **err)
{
    char *path = path_join(c->store, id, ".json");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT)
            *err = sim_err(h, MLE_E_IO, "sim: opening %s: %s", path, strerror(e));
        free(path);
        return e == ENOENT ? 0 : -1;
    }
    struct stat st;
    char *buf = NULL;
    ssize_t got = -1;
    if (fstat(fd, &st) == 0) {
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
            abort();
        size_t len = 0;
        while (len < (size_t)st.st_size) {
            ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            len += (size_t)r;
        }
        got = (ssize_t)len;
    }
    close(fd);
    int rc = -1;
    if (got < 0) {
        *err = sim_err(h, MLE_E_IO, "sim: reading %s: %s", path, strerror(errno));
    } else {
        mle_error *perr = NULL;
        *doc = h->v_parse_json(h, buf, (size_t)got, &perr);
        if (*doc && h->v_kind(*doc) == MLE_V_OBJECT) {
            rc = 1;
        } else {
            h->v_decref(*doc);
            *doc = NULL;
            *err = sim_err(h, MLE_E_IO, "sim: %s is not a sim resource document: %s", path,
                           perr ? h->error_message(perr) : "not an object");
            h->error_set_hint(*err, "the store is edited by hand? see drivers/sim/README.md");
        }
        if (perr)
            h->error_free(perr);
    }
    free(buf);
    free(path);
    return rc;
}

/* Unlink a resource file; an already absent file is fine (someone finished first). */
static int doc_remove(const mle_host *h, sim_ctx *c, const char *id, mle_error **err)
{
    char *path = path_join(c->store, id, ".json");
    int rc = 0;
    if (unlink(path) != 0 && errno != ENOENT) {
        *err = sim_err(h, MLE_E_IO, "sim: removing %s: %s", path, strerror(errno));
        rc = -1;
    }
    free(path);
    return rc;
}

/* Finish what a crash interrupted between the file write and its journal line.
 * 0: the document stands, 1: it was a half-done delete and is now gone, -1 with *err. */
static int doc_recover(const mle_host *h, sim_ctx *c, const char *id, mle_value *doc,
                       mle_error **err)
{
    const char *pending = attr_str(h, doc, "journal_pending");
    if (!pending)
        return 0;
    const char *address = attr_str(h, doc, "address");
    const char *token = attr_str(h, doc, "token");
    int is_delete = strcmp(pending, "delete") == 0;
    if (c->journal_fd >= 0) {
        char *line = journal_line(h, is_delete ? "delete" : "create", address ? address : "?",
                                  id, is_delete ? NULL : (token ? token : "?"));
        int rc = journal_repair(h, c, line, err);
        h->free(h, line);
        if (rc != 0)
            return -1;
    }
    if (is_delete)
        return doc_remove(h, c, id, err) != 0 ? -1 : 1;
    h->v_del(doc, "journal_pending");
    return doc_write(h, c, id, doc, 1, err);
}

/* Load a resource document, repairing a crash's leftovers first. 1 with *doc (caller
 * decrefs), 0 when the resource does not exist, -1 with *err. */
static int doc_load(const mle_host *h, sim_ctx *c, const char *id, mle_value **doc,
                    mle_error **err)
{
    int rc = doc_read(h, c, id, doc, err);
    if (rc <= 0)
        return rc;
    rc = doc_recover(h, c, id, *doc, err);
    if (rc == 0)
        return 1;
    h->v_decref(*doc);
    *doc = NULL;
    return rc == 1 ? 0 : -1;
}

/* The real create: the file appears (that is the side effect), then its journal line. */
static int doc_create(const mle_host *h, sim_ctx *c, const char *id, mle_value *doc,
                      mle_error **err)
{
    if (c->journal_fd < 0)
        return doc_write(h, c, id, doc, 1, err);
    h->v_set(doc, "journal_pending", h->v_string("create"));
    if (doc_write(h, c, id, doc, 1, err) != 0)
        return -1;
    char *line = journal_line(h, "create", attr_str(h, doc, "address"), id,
                              attr_str(h, doc, "token"));
    int rc = journal_append(h, c, line, err);
    h->free(h, line);
    if (rc != 0)
        return -1;
    h->v_del(doc, "journal_pending");
    return doc_write(h, c, id, doc, 0, err);
}

/* The real delete: mark, journal, unlink — so a crash anywhere is repaired by doc_load. */
static int doc_destroy(const mle_host *h, sim_ctx *c, const char *id, mle_value *doc,
                       mle_error **err)
{
    if (c->journal_fd < 0)
        return doc_remove(h, c, id, err);
    h->v_set(doc, "journal_pending", h->v_string("delete"));
    if (doc_write(h, c, id, doc, 1, err) != 0)
        return -1;
    const char *address = attr_str(h, doc, "address");
    char *line = journal_line(h, "delete", address ? address : "?", id, NULL);
    int rc = journal_append(h, c, line, err);
    h->free(h, line);
    return rc != 0 ? -1 : doc_remove(h, c, id, err);
}

/* ---------------------------------------------------------------------------------------
 * Operation plumbing
 * --------------------------------------------------------------------------------------- */

static mle_op_status no_ctx(const mle_host *h, const mle_op *op)
{
    return h->op_error(h, op, sim_err(h, MLE_E_INTERNAL, "sim: operation without a context "
                                                      "(init was not called)"));
}

/* The sensitive `secret` must never reach a log line. */
static void register_secret(const mle_host *h, const mle_value *attrs)
{
    const char *s = attr_str(h, attrs, "secret");
    if (s && *s)
        h->secret_register(h, s);
}

static mle_error *invalid_attr(const mle_host *h, const char *attr_name, const char *why)
{
    mle_error *e = sim_err(h, MLE_E_INVALID, "sim: %s %s", attr_name, why);
    h->error_set_attribute(e, attr_name);
    return e;
}

/* Range checks the schema's types cannot express. NULL when the config is fine. */
static mle_error *check_config(const mle_host *h, const mle_value *cfg)
{
    if (attr_int(h, cfg, "latency_ms", 0) < 0)
        return invalid_attr(h, "latency_ms", "must be >= 0");
    if (attr_int(h, cfg, "pending_ms", 0) < 0)
        return invalid_attr(h, "pending_ms", "must be >= 0");
    double f = attr_real(h, cfg, "fail_rate", 0), t = attr_real(h, cfg, "throttle_rate", 0);
    if (!(f >= 0 && f <= 1))
        return invalid_attr(h, "fail_rate", "must be between 0 and 1");
    if (!(t >= 0 && t <= 1))
        return invalid_attr(h, "throttle_rate", "must be between 0 and 1");
    return NULL;
}

/* What every create/update/delete/read call pays before doing anything: the network
 * latency, then the seeded throttle and failure draws. NULL when the call may proceed. */
static mle_error *simulate_call(const mle_host *h, sim_ctx *c, const mle_op *op,
                                const mle_value *params, sim_call call)
{
    sleep_ms(attr_int(h, params, "latency_ms", 0));
    const char *addr = op->address ? op->address : "?";
    uint64_t n = next_call(c, addr);
    double throttle = attr_real(h, params, "throttle_rate", 0);
    if (throttle > 0 && draw(h, "throttle", addr, n) < throttle) {
        mle_error *e = sim_err(h, MLE_E_THROTTLED, "sim: %s of %s throttled (throttle_rate %g)",
                               sim_call_names[call], addr, throttle);
        h->error_set_provider(e, 429, "Throttling", "Rate exceeded");
        h->error_set_retry_after(e, SIM_THROTTLE_RETRY_MS);
        return e;
    }
    /* Failures only hit create and update: a stack that sets fail_rate must still be
     * destroyable and refreshable. */
    if (call != SIM_CREATE && call != SIM_UPDATE)
        return NULL;
    if (attr_bool(h, params, "fail")) {
        mle_error *e = sim_err(h, MLE_E_PROVIDER, "sim: resource configured to fail");
        h->error_set_provider(e, 0, "SimFailure", "resource configured to fail");
        h->error_set_attribute(e, "fail");
        return e;
    }
    double fail = attr_real(h, params, "fail_rate", 0);
    if (fail > 0 && draw(h, "fail", addr, n) < fail) {
        mle_error *e = sim_err(h, MLE_E_PROVIDER, "sim: simulated failure (fail_rate %g)", fail);
        h->error_set_provider(e, 0, "SimFailure", "simulated failure");
        h->error_set_attribute(e, "fail_rate");
        return e;
    }
    return NULL;
}

/* The attributes a create/update stores: the config as given plus the computed ones. */
static mle_value *make_attrs(const mle_host *h, const mle_value *cfg, const char *id,
                             int64_t created_at, int64_t generation)
{
    mle_value *a = cfg && h->v_kind(cfg) == MLE_V_OBJECT ? h->v_deep_copy(cfg) : h->v_object();
    h->v_set(a, "id", h->v_string(id));
    h->v_set(a, "created_at", h->v_int(created_at));
    h->v_set(a, "generation", h->v_int(generation));
    return a;
}

static mle_value *attrs_copy(const mle_host *h, const mle_value *doc)
{
    const mle_value *a = attr(h, doc, "attributes");
    return a ? h->v_deep_copy(a) : h->v_object();
}

static const char *doc_status(const mle_host *h, const mle_value *doc)
{
    const char *s = attr_str(h, doc, "status");
    return s ? s : "ready";
}

/* Answer from an existing document: DONE when ready, IN_PROGRESS while still creating (or
 * updating), so a caller that finds a half-made resource resumes polling it. */
static mle_op_status answer_doc(const mle_host *h, const mle_op *op, const char *id,
                                const mle_value *doc)
{
    const char *status = doc_status(h, doc);
    if (strcmp(status, "creating") == 0 || strcmp(status, "updating") == 0) {
        int64_t left = attr_int(h, doc, "ready_at_ms", 0) - h->now_unix_ms();
        return h->op_in_progress(h, op, id, poll_delay(left));
    }
    return h->op_done(h, op, id, attrs_copy(h, doc));
}

/* ---------------------------------------------------------------------------------------
 * Operations
 * --------------------------------------------------------------------------------------- */

/* The create's idempotency token (caller frees). Without one the resource cannot be adopted
 * after a crash; the create still happens, under a random token, with a warning. */
static char *create_token(const mle_host *h, const mle_op *op)
{
    if (op->token && *op->token)
        return h->strdup(h, op->token);
    uint8_t r[16] = {0};
    if (h->random_bytes(r, sizeof(r)) != 0)
        h->log(h, MLE_LOG_WARN, "sim: the host's random source failed");
    h->log(h, MLE_LOG_WARN, "sim: create of %s without an idempotency token",
           op->address ? op->address : "?");
    return h->hex(h, r, sizeof(r));
}

/* The store document of a new resource. */
static mle_value *new_doc(const mle_host *h, const mle_op *op, const char *id, const char *token,
                          int64_t now, int64_t pending)
{
    mle_value *doc = h->v_object();
    h->v_set(doc, "id", h->v_string(id));
    h->v_set(doc, "type", h->v_string(op->type));
    h->v_set(doc, "address", h->v_string(op->address ? op->address : "?"));
    h->v_set(doc, "lineage", h->v_string(op->lineage));
    h->v_set(doc, "token", h->v_string(token));
    h->v_set(doc, "status", h->v_string(pending > 0 ? "creating" : "ready"));
    h->v_set(doc, "ready_at_ms", h->v_int(now + pending));
    h->v_set(doc, "attributes", make_attrs(h, op->config, id, now, 1));
    return doc;
}

/* A create whose token already names a resource: the cloud's idempotency-token semantics,
 * so a retried create yields no second resource and no second journal line. */
static mle_op_status create_again(const mle_host *h, const mle_op *op, const char *id,
                                  const char *token, const mle_value *doc)
{
    const char *have = attr_str(h, doc, "token");
    if (have && strcmp(have, token) == 0)
        return answer_doc(h, op, id, doc);
    return h->op_error(h, op, sim_err(h, MLE_E_CONFLICT, "sim: %s already exists", id));
}

static mle_op_status sim_create(const mle_host *h, const mle_op *op)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    mle_error *e = check_config(h, op->config);
    if (e)
        return h->op_error(h, op, e);
    register_secret(h, op->config);
    if ((e = simulate_call(h, c, op, op->config, SIM_CREATE)) != NULL)
        return h->op_error(h, op, e);

    char *token = create_token(h, op);
    char id[SIM_ID_LEN + 1];
    id_from_token(h, token, id);
    h->log(h, MLE_LOG_DEBUG, "sim: create %s id=%s", op->address ? op->address : "?", id);
    mle_value *doc = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    mle_op_status st;
    if (rc < 0) {
        st = h->op_error(h, op, e);
    } else if (rc == 1) {
        st = create_again(h, op, id, token, doc);
    } else {
        int64_t now = h->now_unix_ms(), pending = attr_int(h, op->config, "pending_ms", 0);
        doc = new_doc(h, op, id, token, now, pending);
        if (doc_create(h, c, id, doc, &e) != 0)
            st = h->op_error(h, op, e);
        else if (pending > 0)
            st = h->op_in_progress(h, op, id, poll_delay(pending));
        else
            st = h->op_done(h, op, id, attrs_copy(h, doc));
    }
    h->v_decref(doc);
    h->free(h, token);
    return st;
}

/* The ID an operation on an existing resource names, checked. NULL with *e set. */
static const char *existing_id(const mle_host *h, const char *id, mle_error **e)
{
    if (valid_id(id))
        return id;
    *e = sim_err(h, MLE_E_INVALID, "sim: \"%s\" is not a sim resource ID", id ? id : "(null)");
    h->error_set_hint(*e, "sim IDs look like sim-0123456789abcdef");
    return NULL;
}

/* Apply the new config to a loaded document: in place, generation + 1. */
static mle_op_status update_doc(const mle_host *h, const mle_op *op, sim_ctx *c,
                                const char *id, mle_value *doc)
{
    const mle_value *old = attr(h, doc, "attributes");
    int64_t now = h->now_unix_ms(), pending = attr_int(h, op->config, "pending_ms", 0);
    mle_value *attrs = make_attrs(h, op->config, id, attr_int(h, old, "created_at", now),
                                  attr_int(h, old, "generation", 1) + 1);
    h->v_set(doc, "attributes", attrs);
    h->v_set(doc, "status", h->v_string(pending > 0 ? "updating" : "ready"));
    h->v_set(doc, "ready_at_ms", h->v_int(now + pending));
    mle_error *e = NULL;
    if (doc_write(h, c, id, doc, 1, &e) != 0)
        return h->op_error(h, op, e);
    if (pending > 0)
        return h->op_in_progress(h, op, id, poll_delay(pending));
    return h->op_done(h, op, id, attrs_copy(h, doc));
}

static mle_op_status sim_update(const mle_host *h, const mle_op *op)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    mle_error *e = NULL;
    const char *id = existing_id(h, op->id, &e);
    if (!id || (e = check_config(h, op->config)) != NULL)
        return h->op_error(h, op, e);
    register_secret(h, op->config);
    if ((e = simulate_call(h, c, op, op->config, SIM_UPDATE)) != NULL)
        return h->op_error(h, op, e);
    h->log(h, MLE_LOG_DEBUG, "sim: update %s id=%s", op->address ? op->address : "?", id);

    mle_value *doc = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_error(h, op, sim_err(h, MLE_E_NOT_FOUND, "sim: %s no longer exists", id));
    mle_op_status st = update_doc(h, op, c, id, doc);
    h->v_decref(doc);
    return st;
}

/* Continue a delete: the file goes (and the journal line is written) once due. */
static mle_op_status poll_delete(const mle_host *h, const mle_op *op, sim_ctx *c,
                                 const char *id, mle_value *doc)
{
    int64_t left = attr_int(h, doc, "ready_at_ms", 0) - h->now_unix_ms();
    if (left > 0)
        return h->op_in_progress(h, op, id, poll_delay(left));
    mle_error *e = NULL;
    if (doc_destroy(h, c, id, doc, &e) != 0)
        return h->op_error(h, op, e);
    return h->op_done(h, op, id, NULL);
}

/* Delete a loaded document now, or start a long delete that a poll finishes. */
static mle_op_status delete_doc(const mle_host *h, const mle_op *op, sim_ctx *c,
                                const char *id, mle_value *doc)
{
    /* An earlier delete is still running (its poll was lost): carry on with it. */
    if (strcmp(doc_status(h, doc), "deleting") == 0)
        return poll_delete(h, op, c, id, doc);
    mle_error *e = NULL;
    int64_t pending = attr_int(h, op->state, "pending_ms", 0);
    if (pending <= 0) {
        if (doc_destroy(h, c, id, doc, &e) != 0)
            return h->op_error(h, op, e);
        return h->op_done(h, op, id, NULL);
    }
    h->v_set(doc, "status", h->v_string("deleting"));
    h->v_set(doc, "ready_at_ms", h->v_int(h->now_unix_ms() + pending));
    if (doc_write(h, c, id, doc, 1, &e) != 0)
        return h->op_error(h, op, e);
    return h->op_in_progress(h, op, id, poll_delay(pending));
}

static mle_op_status sim_delete(const mle_host *h, const mle_op *op)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    mle_error *e = NULL;
    const char *id = existing_id(h, op->id, &e);
    if (!id)
        return h->op_error(h, op, e);
    /* A delete carries no config: the knobs come from the last known attributes. */
    if ((e = simulate_call(h, c, op, op->state, SIM_DELETE)) != NULL)
        return h->op_error(h, op, e);
    h->log(h, MLE_LOG_DEBUG, "sim: delete %s id=%s", op->address ? op->address : "?", id);

    mle_value *doc = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    mle_op_status st = delete_doc(h, op, c, id, doc);
    h->v_decref(doc);
    return st;
}

/* Continue a create/update: finished once ready_at_ms has passed. */
static mle_op_status poll_ready(const mle_host *h, const mle_op *op, sim_ctx *c,
                                const char *id, mle_value *doc)
{
    const char *status = doc_status(h, doc);
    if (strcmp(status, "creating") != 0 && strcmp(status, "updating") != 0)
        return answer_doc(h, op, id, doc);
    int64_t left = attr_int(h, doc, "ready_at_ms", 0) - h->now_unix_ms();
    if (left > 0)
        return h->op_in_progress(h, op, id, poll_delay(left));
    h->v_set(doc, "status", h->v_string("ready"));
    mle_error *e = NULL;
    if (doc_write(h, c, id, doc, 1, &e) != 0)
        return h->op_error(h, op, e);
    return h->op_done(h, op, id, attrs_copy(h, doc));
}

static mle_op_status sim_poll(const mle_host *h, const mle_op *op)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    mle_error *e = NULL;
    const char *id = existing_id(h, op->poll_token, &e);
    if (!id)
        return h->op_error(h, op, e);
    h->log(h, MLE_LOG_DEBUG, "sim: poll %s id=%s", op->address ? op->address : "?", id);
    mle_value *doc = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0) {
        /* Gone while deleting is the goal reached; gone while creating is a real loss. */
        if (op->poll_kind == MLE_OPK_DELETE)
            return h->op_done(h, op, id, NULL);
        e = sim_err(h, MLE_E_NOT_FOUND, "sim: %s vanished while being %s", id,
                    op->poll_kind == MLE_OPK_UPDATE ? "updated" : "created");
        return h->op_error(h, op, e);
    }
    mle_op_status st = op->poll_kind == MLE_OPK_DELETE ? poll_delete(h, op, c, id, doc)
                                                       : poll_ready(h, op, c, id, doc);
    h->v_decref(doc);
    return st;
}

/* read and import: the resource's current attributes, or NOT_FOUND. */
static mle_op_status read_common(const mle_host *h, const mle_op *op, const char *verb)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    mle_error *e = NULL;
    const char *id = existing_id(h, op->id, &e);
    if (!id)
        return h->op_error(h, op, e);
    if ((e = simulate_call(h, c, op, op->state, SIM_READ)) != NULL)
        return h->op_error(h, op, e);
    h->log(h, MLE_LOG_DEBUG, "sim: %s %s id=%s", verb, op->address ? op->address : "?", id);
    mle_value *doc = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    mle_value *attrs = attrs_copy(h, doc);
    register_secret(h, attrs);
    h->v_decref(doc);
    return h->op_done(h, op, id, attrs);
}

static mle_op_status sim_read(const mle_host *h, const mle_op *op)
{
    return read_common(h, op, "read");
}

static mle_op_status sim_import(const mle_host *h, const mle_op *op)
{
    return read_common(h, op, "import");
}

/* Crash recovery: the resource a create with op->token made, if any. No latency and no
 * draws: recovery must be deterministic whatever the knobs say. */
static mle_op_status sim_adopt(const mle_host *h, const mle_op *op)
{
    sim_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    if (!op->token || !*op->token)
        return h->op_not_found(h, op);
    char id[SIM_ID_LEN + 1];
    id_from_token(h, op->token, id);
    mle_value *doc = NULL;
    mle_error *e = NULL;
    int rc = doc_load(h, c, id, &doc, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    const char *have = rc == 1 ? attr_str(h, doc, "token") : NULL;
    mle_op_status st;
    if (!have || strcmp(have, op->token) != 0) {
        st = h->op_not_found(h, op);
    } else {
        register_secret(h, attr(h, doc, "attributes"));
        st = answer_doc(h, op, id, doc);
    }
    h->log(h, MLE_LOG_DEBUG, "sim: adopt %s id=%s: %s", op->address ? op->address : "?", id,
           st == MLE_OP_DONE ? "found" : st == MLE_OP_IN_PROGRESS ? "found, still in progress"
                                                                  : "not found");
    h->v_decref(doc);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * init / fini
 * --------------------------------------------------------------------------------------- */

/* Option, else environment variable, else fallback (may be NULL). Empty means unset. */
static const char *option_or_env(const mle_host *h, const mle_value *options, const char *name,
                                 const char *env, const char *fallback)
{
    const char *v = attr_str(h, options, name);
    if (v && *v)
        return v;
    v = getenv(env);
    return v && *v ? v : fallback;
}

static void ctx_free(sim_ctx *c)
{
    if (!c)
        return;
    if (c->journal_fd >= 0)
        close(c->journal_fd);
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (sim_counter *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c->store);
    free(c->journal_path);
    free(c);
}

static int sim_init(const mle_host *h, const mle_value *options, void **ctx, mle_error **err)
{
    sim_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->journal_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    c->store = strdup(option_or_env(h, options, "store", "MLE_SIM_STORE", SIM_DEFAULT_STORE));
    const char *journal = option_or_env(h, options, "journal", "MLE_SIM_JOURNAL", NULL);
    const mle_value *fs = attr(h, options, "fsync");
    c->fsync = fs ? h->v_bool_of(fs) : 1;
    if (!c->store)
        abort();
    if (mkdir_p(c->store) != 0) {
        *err = sim_err(h, MLE_E_IO, "sim: creating store directory %s: %s", c->store,
                       strerror(errno));
        h->error_set_hint(*err, "set the driver option `store` or MLE_SIM_STORE");
        ctx_free(c);
        return -1;
    }
    if (journal) {
        c->journal_path = strdup(journal);
        if (!c->journal_path)
            abort();
        c->journal_fd = open(journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (c->journal_fd < 0) {
            *err = sim_err(h, MLE_E_IO, "sim: opening journal %s: %s", journal, strerror(errno));
            h->error_set_hint(*err, "set the driver option `journal` or MLE_SIM_JOURNAL");
            ctx_free(c);
            return -1;
        }
    }
    h->log(h, MLE_LOG_DEBUG, "sim: store %s, journal %s, fsync %s", c->store,
           journal ? journal : "(none)", c->fsync ? "on" : "off");
    *ctx = c;
    return 0;
}

static void sim_fini(const mle_host *h, void *ctx)
{
    (void)h;
    ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------
 * Descriptor
 * --------------------------------------------------------------------------------------- */

static const mle_attr_schema sim_attrs[] = {
    {"name", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL, "A name; a change updates in place."},
    {"value", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "A free value; a change updates in place (drift tests edit it in the store)."},
    {"zone", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "A placement; a change replaces the resource."},
    {"secret", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_SENSITIVE, NULL,
     "A sensitive value: redacted in plans and logs, encrypted in state."},
    {"tags", MLE_T_MAP, MLE_T_STRING, MLE_A_OPTIONAL, NULL, "Tags; a change updates in place."},
    {"latency_ms", MLE_T_INT, 0, MLE_A_OPTIONAL, "0",
     "Each create/update/delete/read call blocks this long, like a network call."},
    {"pending_ms", MLE_T_INT, 0, MLE_A_OPTIONAL, "0",
     "Create/update/delete answer \"in progress\" and finish on a poll this long after the "
     "start."},
    {"fail", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Create and update fail with a fatal provider error (SimFailure)."},
    {"fail_rate", MLE_T_NUMBER, 0, MLE_A_OPTIONAL, "0",
     "Share (0..1) of create/update calls that fail fatally; seeded by address and call "
     "number."},
    {"throttle_rate", MLE_T_NUMBER, 0, MLE_A_OPTIONAL, "0",
     "Share (0..1) of create/update/delete/read calls answered \"throttled\" (retry after 50 "
     "ms); seeded by address and call number."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "sim- and the first 16 hex chars of sha256(idempotency token)."},
    {"created_at", MLE_T_INT, 0, MLE_A_COMPUTED, NULL, "Creation time, unix milliseconds."},
    {"generation", MLE_T_INT, 0, MLE_A_COMPUTED, NULL, "1 at create, +1 per update."},
};

#define SIM_TYPE(type_name, desc, type_flags)                                               \
    {                                                                                       \
        .struct_size = sizeof(mle_resource_type), .name = (type_name), .description = (desc), \
        .attrs = sim_attrs, .n_attrs = sizeof(sim_attrs) / sizeof(sim_attrs[0]),            \
        .flags = (type_flags), .create = sim_create, .read = sim_read, .update = sim_update, \
        .del = sim_delete, .import = sim_import, .poll = sim_poll, .adopt = sim_adopt,      \
    }

static const mle_resource_type sim_resource =
    SIM_TYPE("sim_resource", "A simulated cloud resource (a JSON file in the sim store).", 0);

static const mle_resource_type sim_cbd_resource =
    SIM_TYPE("sim_cbd_resource",
             "sim_resource whose replacement creates the new one before destroying the old.",
             MLE_RT_CREATE_BEFORE_DESTROY);

static const mle_resource_type *const sim_types[] = {&sim_resource, &sim_cbd_resource, NULL};

static const mle_option sim_options[] = {
    {"store", MLE_T_STRING, NULL,
     "Directory holding the simulated resources (default: $MLE_SIM_STORE, else ./.sim-store).",
     0},
    {"journal", MLE_T_STRING, NULL,
     "File every real create/delete is appended to (default: $MLE_SIM_JOURNAL, else none).", 0},
    {"fsync", MLE_T_BOOL, "true",
     "Flush each resource file to disk before renaming it into place. false is still safe "
     "against kill -9 (not against power loss); for benchmarks.",
     0},
};

static const char *const sim_clouds[] = {"any", NULL};

static const mle_driver sim_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "sim",
    .version = SIM_VERSION,
    .description = "Simulated cloud resources with latency, long operations, failures and a "
                   "journal, for tests and benchmarks",
    .clouds = sim_clouds,
    .types = sim_types,
    .options = sim_options,
    .n_options = sizeof(sim_options) / sizeof(sim_options[0]),
    .init = sim_init,
    .fini = sim_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &sim_driver; }
