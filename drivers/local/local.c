/*
 * local.c — the `local` driver: resources that live on this machine, for real uses in
 * stacks (a rendered values file, a generated database password, a random suffix).
 *
 *   local_file       a file written atomically (tmp in the same directory + fsync + rename)
 *   random_password  a password from the host's CSPRNG; sensitive
 *   random_id        random bytes as hex / base64
 *
 * Only <mlengine/driver.h> and libc: hashing, encoding, randomness and secret redaction come
 * through struct mle_host. The driver keeps no state of its own, so it has no init/fini.
 */
#include <mlengine/driver.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCAL_VERSION "1.0.0"
#define LOCAL_MAX_FILE (64u << 20)   /* read-back limit: this is for config files, not data */
#define PASSWORD_MAX_LENGTH 4096
#define RANDOM_ID_MAX_BYTES 1024

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------------------------- */

/* host->error_new is variadic only, so messages are formatted here first. */
static mle_error *lerr(const mle_host *h, mle_error_code code, const char *fmt, ...)
    MLE_PRINTF(3, 4);
static mle_error *lerr(const mle_host *h, mle_error_code code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return h->error_new(h, code, "%s", buf);
}

static mle_op_status fail_attr(const mle_host *h, const mle_op *op, mle_error *e,
                               const char *attribute)
{
    if (attribute)
        h->error_set_attribute(e, attribute);
    return h->op_error(h, op, e);
}

static const mle_value *attr(const mle_host *h, const mle_value *obj, const char *key)
{
    if (!obj)
        return NULL;
    const mle_value *v = h->v_get(obj, key);
    return v && h->v_kind(v) != MLE_V_NULL ? v : NULL;
}

static const char *attr_str(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = attr(h, obj, key);
    return v ? h->v_str(v) : NULL;
}

static int64_t attr_int(const mle_host *h, const mle_value *obj, const char *key, int64_t dflt)
{
    const mle_value *v = attr(h, obj, key);
    return v ? h->v_int_of(v) : dflt;
}

static int attr_bool(const mle_host *h, const mle_value *obj, const char *key, int dflt)
{
    const mle_value *v = attr(h, obj, key);
    return v && h->v_kind(v) == MLE_V_BOOL ? h->v_bool_of(v) : dflt;
}

static mle_value *copy_or_object(const mle_host *h, const mle_value *v)
{
    return v && h->v_kind(v) == MLE_V_OBJECT ? h->v_deep_copy(v) : h->v_object();
}

static char *sha256_hex(const mle_host *h, const void *data, size_t len)
{
    uint8_t d[32];
    h->sha256(data, len, d);
    return h->hex(h, d, sizeof(d));
}

/* A random identifier for resources that exist only in state. */
static char *random_hex(const mle_host *h, size_t nbytes, mle_error **err)
{
    uint8_t buf[32];
    if (nbytes > sizeof(buf) || h->random_bytes(buf, nbytes) != 0) {
        *err = lerr(h, MLE_E_INTERNAL, "local: the host's random source failed");
        return NULL;
    }
    return h->hex(h, buf, nbytes);
}

static mle_op_status rng_failed(const mle_host *h, const mle_op *op)
{
    return h->op_error(h, op, lerr(h, MLE_E_INTERNAL, "local: the host's random source failed"));
}

/* Read-only types: state is the only place they exist, so read hands back what it holds. */
static mle_op_status read_from_state(const mle_host *h, const mle_op *op)
{
    if (!op->state)
        return h->op_not_found(h, op);
    return h->op_done(h, op, op->id, h->v_deep_copy(op->state));
}

/* Nothing exists outside state, so deleting is forgetting. */
static mle_op_status delete_noop(const mle_host *h, const mle_op *op)
{
    return h->op_done(h, op, op->id, NULL);
}

/* Nothing external to look up after a crash: the intent is dropped and the value is made
 * again, which is safe because no one has seen it yet (it was never committed). */
static mle_op_status adopt_none(const mle_host *h, const mle_op *op)
{
    return h->op_not_found(h, op);
}

/* ---------------------------------------------------------------------------------------
 * local_file
 * --------------------------------------------------------------------------------------- */

/* "0644" / "644" / "0600" -> mode. -1 when not 1..4 octal digits. */
static long parse_mode(const char *s)
{
    if (!s || !*s || strlen(s) > 4)
        return -1;
    long m = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '7')
            return -1;
        m = m * 8 + (*p - '0');
    }
    return m;
}

/* mkdir -p of the directory part of `path`. 0 or -1 with errno. */
static int mkdir_parents(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        abort();
    int rc = 0;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            rc = -1;
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

/* The directory part of `path` ("." when there is none) and the base name. */
static void split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = strdup(".");
        *base = path;
    } else if (slash == path) {
        *dir = strdup("/");
        *base = slash + 1;
    } else {
        *dir = strndup(path, (size_t)(slash - path));
        *base = slash + 1;
    }
    if (!*dir)
        abort();
}

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

/* Make a directory entry durable after a rename (best effort: some filesystems refuse). */
static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

/* Write `content` to `path` atomically: a reader sees the old file or the new one, never a
 * half-written one. The mode is set on the temporary before the rename, so the file never
 * appears with other permissions (and the mode is exact, not masked by the umask). Returns 0
 * or -1 with *err. */
static int write_atomic(const mle_host *h, const char *path, const char *content, size_t len,
                        mode_t mode, mle_error **err)
{
    if (mkdir_parents(path) != 0) {
        *err = lerr(h, MLE_E_IO, "local_file: creating the directories of %s: %s", path,
                    strerror(errno));
        return -1;
    }
    char *dir;
    const char *base;
    split_path(path, &dir, &base);
    size_t tn = strlen(dir) + strlen(base) + 16;
    char *tmp = malloc(tn);
    if (!tmp)
        abort();
    snprintf(tmp, tn, "%s/.%s.XXXXXX", dir, base);
    int rc = -1, fd = mkstemp(tmp);
    if (fd < 0) {
        *err = lerr(h, MLE_E_IO, "local_file: creating a temporary beside %s: %s", path,
                    strerror(errno));
        goto out;
    }
    int ok = write_all(fd, content, len) == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) == 0) {
        fsync_dir(dir);
        rc = 0;
        goto out;
    }
    if (ok)
        saved = errno;
    unlink(tmp);
    *err = lerr(h, MLE_E_IO, "local_file: writing %s: %s", path, strerror(saved));
out:
    free(tmp);
    free(dir);
    return rc;
}

/* Read a whole file. 1 with *buf (malloc'd, NUL-terminated) and *len, 0 when it does not
 * exist, -1 with *err. */
static int read_file(const mle_host *h, const char *path, char **buf, size_t *len,
                     struct stat *st, mle_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        *err = lerr(h, MLE_E_IO, "local_file: opening %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > (off_t)LOCAL_MAX_FILE) {
        *err = lerr(h, MLE_E_IO, "local_file: %s is not a regular file of at most %u bytes",
                    path, LOCAL_MAX_FILE);
        close(fd);
        return -1;
    }
    *buf = malloc((size_t)st->st_size + 1);
    if (!*buf)
        abort();
    size_t n = 0;
    while (n < (size_t)st->st_size) {
        ssize_t r = read(fd, *buf + n, (size_t)st->st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    (*buf)[n] = '\0';
    *len = n;
    return 1;
}

/* The inputs of a create/update, checked. 0, or -1 after answering the op with an error. */
static int file_inputs(const mle_host *h, const mle_op *op, const char **filename,
                       const char **content, long *mode, mle_op_status *st)
{
    *filename = attr_str(h, op->config, "filename");
    *content = attr_str(h, op->config, "content");
    if (!*content)
        *content = "";
    const char *perm = attr_str(h, op->config, "file_permission");
    *mode = perm ? parse_mode(perm) : 0644;
    if (!*filename || !**filename) {
        *st = fail_attr(h, op, lerr(h, MLE_E_INVALID, "local_file: filename is empty"),
                        "filename");
        return -1;
    }
    if (*mode < 0) {
        mle_error *e = lerr(h, MLE_E_INVALID,
                            "local_file: file_permission \"%s\" is not an octal mode", perm);
        h->error_set_hint(e, "write it as a string of octal digits, e.g. \"0644\" or \"0600\"");
        *st = fail_attr(h, op, e, "file_permission");
        return -1;
    }
    return 0;
}

/* The attributes of a file: the config's inputs plus the hashes. */
static mle_value *file_attrs(const mle_host *h, const mle_value *base, const char *hash)
{
    mle_value *a = copy_or_object(h, base);
    h->v_set(a, "id", h->v_string(hash));
    h->v_set(a, "content_sha256", h->v_string(hash));
    return a;
}

/* create and update are the same: write the desired content and mode. */
static mle_op_status file_write(const mle_host *h, const mle_op *op)
{
    const char *filename, *content;
    long mode;
    mle_op_status st;
    if (file_inputs(h, op, &filename, &content, &mode, &st) != 0)
        return st;
    h->log(h, MLE_LOG_DEBUG, "local_file: writing %s (mode %04lo)", filename, mode);
    mle_error *e = NULL;
    if (write_atomic(h, filename, content, strlen(content), (mode_t)mode, &e) != 0)
        return fail_attr(h, op, e, "filename");
    char *hash = sha256_hex(h, content, strlen(content));
    mle_value *a = file_attrs(h, op->config, hash);
    st = h->op_done(h, op, hash, a);
    h->free(h, hash);
    return st;
}

/* read and import: what is on disk now, so hand edits show as drift. */
static mle_op_status file_read_path(const mle_host *h, const mle_op *op, const char *filename)
{
    if (!filename || !*filename)
        return fail_attr(h, op, lerr(h, MLE_E_INVALID, "local_file: no filename to read"),
                         "filename");
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    mle_error *e = NULL;
    int rc = read_file(h, filename, &buf, &len, &st, &e);
    if (rc < 0)
        return fail_attr(h, op, e, "filename");
    if (rc == 0)
        return h->op_not_found(h, op);
    char *hash = sha256_hex(h, buf, len);
    mle_value *a = file_attrs(h, op->state, hash);
    h->v_set(a, "filename", h->v_string(filename));
    /* The host replaces bytes that are not UTF-8 (U+FFFD), so a binary edit still differs
     * from the stack's content; content_sha256 is the exact hash of what is on disk. */
    h->v_set(a, "content", h->v_stringn(buf, len));
    /* Keep the spelling the stack used ("644") when it means the same mode, so it is no
     * drift; otherwise report the real mode. */
    long mode = (long)(st.st_mode & 07777);
    const char *known = attr_str(h, op->state, "file_permission");
    if (!known || parse_mode(known) != mode) {
        char mbuf[8];
        snprintf(mbuf, sizeof(mbuf), "%04lo", mode);
        h->v_set(a, "file_permission", h->v_string(mbuf));
    }
    free(buf);
    mle_op_status s = h->op_done(h, op, hash, a);
    h->free(h, hash);
    return s;
}

static mle_op_status file_read(const mle_host *h, const mle_op *op)
{
    return file_read_path(h, op, attr_str(h, op->state, "filename"));
}

/* `mlengine import local_file.x PATH`: the ID given is the file's path. */
static mle_op_status file_import(const mle_host *h, const mle_op *op)
{
    return file_read_path(h, op, op->id);
}

static mle_op_status file_delete(const mle_host *h, const mle_op *op)
{
    const char *filename = attr_str(h, op->state, "filename");
    if (!filename || !*filename)
        return h->op_not_found(h, op);
    h->log(h, MLE_LOG_DEBUG, "local_file: removing %s", filename);
    if (unlink(filename) == 0)
        return h->op_done(h, op, op->id, NULL);
    if (errno == ENOENT || errno == ENOTDIR)
        return h->op_not_found(h, op);
    return fail_attr(h, op, lerr(h, MLE_E_IO, "local_file: removing %s: %s", filename,
                                 strerror(errno)),
                     "filename");
}

/* After a crash: the create may or may not have renamed its file into place. The file is
 * ours exactly when it holds the content the create was writing. */
static mle_op_status file_adopt(const mle_host *h, const mle_op *op)
{
    const char *filename = attr_str(h, op->config, "filename");
    const char *content = attr_str(h, op->config, "content");
    if (!filename || !*filename)
        return h->op_not_found(h, op);
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    mle_error *e = NULL;
    int rc = read_file(h, filename, &buf, &len, &st, &e);
    if (rc < 0)
        return fail_attr(h, op, e, "filename");
    int same = rc == 1 && len == strlen(content ? content : "") &&
               memcmp(buf, content ? content : "", len) == 0;
    free(buf);
    if (!same)
        return h->op_not_found(h, op);
    char *hash = sha256_hex(h, content ? content : "", len);
    mle_op_status s = h->op_done(h, op, hash, file_attrs(h, op->config, hash));
    h->free(h, hash);
    return s;
}

/* ---------------------------------------------------------------------------------------
 * random_password
 * --------------------------------------------------------------------------------------- */

static const char PW_LOWER[] = "abcdefghijklmnopqrstuvwxyz";
static const char PW_UPPER[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char PW_NUMERIC[] = "0123456789";
static const char PW_SPECIAL[] = "!@#$%&*()-_=+[]{}<>:?";

/* A uniform index in [0, n) with no modulo bias: draws that fall in the last, partial
 * block of 2^32 are rejected and drawn again. 0 or -1 when the random source fails. */
static int uniform_below(const mle_host *h, uint32_t n, uint32_t *out)
{
    const uint64_t span = 1ull << 32;
    const uint64_t limit = span - span % n; /* largest multiple of n <= 2^32 */
    for (;;) {
        uint8_t b[4];
        if (h->random_bytes(b, sizeof(b)) != 0)
            return -1;
        uint32_t r = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (r < limit) {
            *out = r % n;
            return 0;
        }
    }
}

/* A character set with duplicates removed, so no character is likelier than another. */
typedef struct charset {
    char c[96];
    uint32_t n;
} charset;

static void charset_add(charset *cs, const char *chars)
{
    for (const char *p = chars; *p; p++)
        if (!memchr(cs->c, *p, cs->n) && cs->n < sizeof(cs->c))
            cs->c[cs->n++] = *p;
}

typedef struct pw_spec {
    int64_t length;
    charset classes[4]; /* the enabled ones */
    int n_classes;
    charset all;
} pw_spec;

/* Read and check the inputs. NULL, or an error naming the attribute at fault. */
static mle_error *pw_spec_read(const mle_host *h, const mle_value *cfg, pw_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->length = attr_int(h, cfg, "length", 16);
    const char *special = attr_str(h, cfg, "override_special");
    if (special) {
        for (const char *p = special; *p; p++) {
            if (*p <= ' ' || *p > '~') {
                mle_error *e = lerr(h, MLE_E_INVALID, "random_password: override_special may "
                                                      "hold only printable ASCII characters");
                h->error_set_attribute(e, "override_special");
                return e;
            }
        }
    }
    const char *sets[4] = {attr_bool(h, cfg, "lower", 1) ? PW_LOWER : NULL,
                           attr_bool(h, cfg, "upper", 1) ? PW_UPPER : NULL,
                           attr_bool(h, cfg, "numeric", 1) ? PW_NUMERIC : NULL,
                           attr_bool(h, cfg, "special", 1) ? (special ? special : PW_SPECIAL)
                                                            : NULL};
    for (int i = 0; i < 4; i++) {
        if (!sets[i])
            continue;
        if (!*sets[i]) {
            mle_error *e = lerr(h, MLE_E_INVALID,
                                "random_password: override_special is empty while special = true");
            h->error_set_attribute(e, "override_special");
            h->error_set_hint(e, "set special = false, or give override_special some characters");
            return e;
        }
        charset_add(&s->classes[s->n_classes++], sets[i]);
        charset_add(&s->all, sets[i]);
    }
    if (s->n_classes == 0) {
        mle_error *e = lerr(h, MLE_E_INVALID, "random_password: every character class is off");
        h->error_set_hint(e, "enable at least one of lower, upper, numeric, special");
        h->error_set_attribute(e, "lower");
        return e;
    }
    if (s->length < s->n_classes || s->length > PASSWORD_MAX_LENGTH) {
        mle_error *e = lerr(h, MLE_E_INVALID,
                            "random_password: length %lld must be between %d (one character of "
                            "each enabled class) and %d",
                            (long long)s->length, s->n_classes, PASSWORD_MAX_LENGTH);
        h->error_set_attribute(e, "length");
        return e;
    }
    return NULL;
}

/* One character of each enabled class first (the guarantee), the rest from the union, then
 * an unbiased Fisher-Yates shuffle so the guaranteed ones sit anywhere. */
static int pw_generate(const mle_host *h, const pw_spec *s, char *out)
{
    size_t len = (size_t)s->length;
    uint32_t k;
    for (size_t i = 0; i < len; i++) {
        const charset *cs = i < (size_t)s->n_classes ? &s->classes[i] : &s->all;
        if (uniform_below(h, cs->n, &k) != 0)
            return -1;
        out[i] = cs->c[k];
    }
    for (size_t i = len - 1; i > 0; i--) {
        if (uniform_below(h, (uint32_t)(i + 1), &k) != 0)
            return -1;
        char t = out[i];
        out[i] = out[k];
        out[k] = t;
    }
    out[len] = '\0';
    return 0;
}

static mle_op_status pw_create(const mle_host *h, const mle_op *op)
{
    pw_spec s;
    mle_error *e = pw_spec_read(h, op->config, &s);
    if (e)
        return h->op_error(h, op, e);
    char *pw = malloc((size_t)s.length + 1);
    if (!pw)
        abort();
    if (pw_generate(h, &s, pw) != 0) {
        free(pw);
        return rng_failed(h, op);
    }
    /* Registered before anything else can print it. */
    h->secret_register(h, pw);
    char *id = random_hex(h, 8, &e);
    if (!id) {
        explicit_bzero(pw, (size_t)s.length);
        free(pw);
        return h->op_error(h, op, e);
    }
    mle_value *a = copy_or_object(h, op->config);
    h->v_set(a, "result", h->v_string(pw));
    h->v_set(a, "id", h->v_string(id));
    explicit_bzero(pw, (size_t)s.length);
    free(pw);
    h->log(h, MLE_LOG_DEBUG, "random_password: generated %s (%lld chars)",
           op->address ? op->address : "?", (long long)s.length);
    mle_op_status st = h->op_done(h, op, id, a);
    h->free(h, id);
    return st;
}

/* A later run reads the password from state; register it again so that run's logs redact
 * it too. */
static mle_op_status pw_read(const mle_host *h, const mle_op *op)
{
    const char *pw = attr_str(h, op->state, "result");
    if (pw && *pw)
        h->secret_register(h, pw);
    return read_from_state(h, op);
}

/* ---------------------------------------------------------------------------------------
 * random_id
 * --------------------------------------------------------------------------------------- */

static mle_op_status rid_create(const mle_host *h, const mle_op *op)
{
    int64_t n = attr_int(h, op->config, "byte_length", 8);
    if (n < 1 || n > RANDOM_ID_MAX_BYTES)
        return fail_attr(h, op,
                         lerr(h, MLE_E_INVALID, "random_id: byte_length %lld must be between 1 "
                                                "and %d", (long long)n, RANDOM_ID_MAX_BYTES),
                         "byte_length");
    const char *prefix = attr_str(h, op->config, "prefix");
    if (!prefix)
        prefix = "";
    uint8_t *bytes = malloc((size_t)n);
    if (!bytes)
        abort();
    if (h->random_bytes(bytes, (size_t)n) != 0) {
        free(bytes);
        return rng_failed(h, op);
    }
    char *hex = h->hex(h, bytes, (size_t)n);
    char *b64u = h->base64_encode(h, bytes, (size_t)n, 1);
    char *b64s = h->base64_encode(h, bytes, (size_t)n, 0);
    free(bytes);
    char *phex = h->sprintf(h, "%s%s", prefix, hex);
    char *pb64u = h->sprintf(h, "%s%s", prefix, b64u);
    char *pb64s = h->sprintf(h, "%s%s", prefix, b64s);
    mle_value *a = copy_or_object(h, op->config);
    h->v_set(a, "hex", h->v_string(phex));
    h->v_set(a, "b64_url", h->v_string(pb64u));
    h->v_set(a, "b64_std", h->v_string(pb64s));
    h->v_set(a, "id", h->v_string(phex));
    mle_op_status st = h->op_done(h, op, phex, a);
    h->free(h, hex);
    h->free(h, b64u);
    h->free(h, b64s);
    h->free(h, phex);
    h->free(h, pb64u);
    h->free(h, pb64s);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Descriptor
 * --------------------------------------------------------------------------------------- */

static const mle_attr_schema file_attrs_schema[] = {
    {"filename", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "Path of the file; relative paths are relative to the directory mlengine runs in."},
    {"content", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"\"", "The file's content (text)."},
    {"file_permission", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"0644\"",
     "Octal mode, applied exactly (not masked by the umask)."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "SHA-256 (hex) of the content."},
    {"content_sha256", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "SHA-256 (hex) of the content on disk: differs from the stack's when edited by hand."},
};

static const mle_attr_schema pw_attrs[] = {
    {"length", MLE_T_INT, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "16", "Number of characters."},
    {"special", MLE_T_BOOL, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "true",
     "Include special characters (at least one)."},
    {"upper", MLE_T_BOOL, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "true",
     "Include upper-case letters (at least one)."},
    {"lower", MLE_T_BOOL, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "true",
     "Include lower-case letters (at least one)."},
    {"numeric", MLE_T_BOOL, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "true",
     "Include digits (at least one)."},
    {"override_special", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "The special characters to use instead of !@#$%&*()-_=+[]{}<>:?"},
    {"keepers", MLE_T_MAP, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "Arbitrary values; changing any of them generates a new password."},
    {"result", MLE_T_STRING, 0, MLE_A_COMPUTED | MLE_A_SENSITIVE, NULL, "The password."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "A random identifier (not the password)."},
};

static const mle_attr_schema rid_attrs[] = {
    {"byte_length", MLE_T_INT, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "8",
     "Number of random bytes."},
    {"prefix", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "Text put before hex, b64_url and b64_std."},
    {"keepers", MLE_T_MAP, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, NULL,
     "Arbitrary values; changing any of them generates a new ID."},
    {"hex", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "prefix + the bytes in lower-case hex."},
    {"b64_url", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "prefix + the bytes in base64url, no padding."},
    {"b64_std", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "prefix + the bytes in standard base64, padded."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "The same as hex."},
};

#define N_ATTRS(a) (sizeof(a) / sizeof((a)[0]))

/* render: the file as it would be written, named by its base name. */
static mle_op_status file_render(const mle_host *h, const mle_op *op)
{
    const char *filename = h->v_str(h->v_get(op->config, "filename"));
    const char *content = h->v_str(h->v_get(op->config, "content"));
    const char *base = filename ? strrchr(filename, '/') : NULL;
    base = base ? base + 1 : filename;
    if (!base || !*base)
        return h->op_error(h, op, h->error_new(h, MLE_E_INVALID, "local_file has no file name"));
    mle_value *files = h->v_object();
    h->v_set(files, base, h->v_string(content ? content : ""));
    mle_value *attrs = h->v_object();
    h->v_set(attrs, "files", files);
    return h->op_done(h, op, NULL, attrs);
}

static const mle_resource_type local_file_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "local_file",
    .description = "A file on this machine, written atomically.",
    .attrs = file_attrs_schema,
    .n_attrs = N_ATTRS(file_attrs_schema),
    .create = file_write,
    .read = file_read,
    .update = file_write,
    .del = file_delete,
    .import = file_import,
    .adopt = file_adopt,
    .render = file_render,
};

static const mle_resource_type random_password_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "random_password",
    .description = "A random password from a cryptographic source (sensitive).",
    .attrs = pw_attrs,
    .n_attrs = N_ATTRS(pw_attrs),
    .create = pw_create,
    .read = pw_read,
    .del = delete_noop,
    .adopt = adopt_none,
};

static const mle_resource_type random_id_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "random_id",
    .description = "Random bytes as hex and base64, e.g. a unique name suffix.",
    .attrs = rid_attrs,
    .n_attrs = N_ATTRS(rid_attrs),
    .create = rid_create,
    .read = read_from_state,
    .del = delete_noop,
    .adopt = adopt_none,
};

static const mle_resource_type *const local_types[] = {&local_file_type, &random_password_type,
                                                       &random_id_type, NULL};

static const char *const local_clouds[] = {"any", NULL};

static const mle_driver local_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "local",
    .version = LOCAL_VERSION,
    .description = "Local files, random passwords and random IDs",
    .clouds = local_clouds,
    .types = local_types,
    .options = NULL,
    .n_options = 0,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &local_driver; }
