/*
 * helm.c — the `helm` driver: Helm releases (`helm_release`) installed, upgraded, read and
 * uninstalled through the helm CLI.
 *
 * Why the CLI and not a reimplementation: a chart is Go templates plus Helm's own release
 * bookkeeping (release Secrets, hooks, rollbacks); only Helm does that faithfully, and every
 * platform team already trusts the `helm` binary it pins. The driver runs it with fork/execve
 * (an argv array, never a shell), reads its stdout/stderr through pipes, and bounds each call
 * with a timeout.
 *
 * What never appears on a command line (where `ps` would show it): the values and the
 * cluster token. Values go to a private temporary file, a kubeconfig generated from the
 * driver's host/CA/token options likewise; both live in a fresh 0700 directory, are 0600, and
 * are removed as soon as the call returns.
 *
 * Ownership: every release this driver installs carries the Helm release label
 * mlengine.io/lineage=<stack lineage> (and mlengine.io/token=<create token>), so a create
 * refuses to take over a release some other stack or person made, and crash recovery (adopt)
 * only adopts a release that is provably this stack's.
 *
 * Helm missing: init fails with one clear error. The core initialises a driver at plan time
 * for every resource a stack declares, so a stack with a helm_release fails at `plan`, never
 * half way through an apply.
 *
 * Only <mlengine/driver.h> and libc.
 */
#include <mlengine/driver.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define HELM_DRIVER_VERSION "1.0.0"
#define HELM_INSTALL_HINT                                                                   \
    "install it (https://helm.sh/docs/intro/install/ or `go install "                       \
    "helm.sh/helm/v3/cmd/helm@v3.22.0`) or set the helm driver option `helm`"
#define HELM_READ_TIMEOUT_MS (120 * 1000)  /* status, get, list, version */
#define HELM_KILL_GRACE_MS (5 * 1000)      /* SIGTERM, then this long, then SIGKILL */
#define HELM_MAX_OUTPUT (64u << 20)        /* per stream; a release's JSON is far smaller */
#define HELM_STDERR_IN_ERROR 2000          /* bytes of helm's stderr kept in an error */
#define LABEL_LINEAGE "mlengine.io/lineage"
#define LABEL_TOKEN "mlengine.io/token"

/* ---------------------------------------------------------------------------------------
 * Context: the driver's options, resolved once at init.
 * --------------------------------------------------------------------------------------- */

typedef struct helm_ctx {
    char *helm;       /* path of the helm binary (malloc'd) */
    int labels;       /* helm >= 3.13: releases carry our ownership labels */
    char *kubeconfig; /* option `kubeconfig`, or NULL (helm's usual rules then) */
    char *context;    /* option `context`, or NULL */
    char *server;     /* option `host`, made an https URL, or NULL */
    char *ca_pem;     /* option `cluster_ca_certificate` as PEM text, or NULL */
    char *token;      /* option `token`, or NULL; registered as a secret */
} helm_ctx;

static void ctx_free(helm_ctx *c)
{
    if (!c)
        return;
    free(c->helm);
    free(c->kubeconfig);
    free(c->context);
    free(c->server);
    free(c->ca_pem);
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    free(c);
}

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

/* A malloc'd formatted string (caller frees with free). */
static char *xasprintf(const char *fmt, ...) MLE_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

/* host->error_new is variadic only; formatting here keeps call sites short. */
static mle_error *herr(const mle_host *h, mle_error_code code, const char *fmt, ...)
    MLE_PRINTF(3, 4);
static mle_error *herr(const mle_host *h, mle_error_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    mle_error *e = h->error_new(h, code, "%s", s);
    free(s);
    return e;
}

static mle_op_status fail(const mle_host *h, const mle_op *op, mle_error *e, const char *attr)
{
    if (attr)
        h->error_set_attribute(e, attr);
    return h->op_error(h, op, e);
}

/* A present, non-null attribute (borrowed), or NULL. */
static const mle_value *attr(const mle_host *h, const mle_value *obj, const char *key)
{
    if (!obj || h->v_kind(obj) != MLE_V_OBJECT)
        return NULL;
    const mle_value *v = h->v_get(obj, key);
    return v && h->v_kind(v) != MLE_V_NULL ? v : NULL;
}

static const char *attr_str(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = attr(h, obj, key);
    const char *s = v ? h->v_str(v) : NULL;
    return s && *s ? s : NULL;
}

static int attr_bool(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = attr(h, obj, key);
    return v && h->v_kind(v) == MLE_V_BOOL && h->v_bool_of(v);
}

/* A DNS-1123 label of at most `max` characters: what Helm accepts for release names and
 * Kubernetes for namespaces. Checked before a name goes into a `--filter` regex. */
static int dns_label(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return 0;
    }
    return 1;
}

/* A Go duration ("5m0s", "90s", "1h30m", "500ms") in milliseconds, or -1. */
static int64_t go_duration_ms(const char *s)
{
    if (!s || !*s)
        return -1;
    if (strcmp(s, "0") == 0)
        return 0;
    double total = 0;
    const char *p = s;
    while (*p) {
        /* Digits and one optional '.', as Go writes them: strtod alone would also take
         * "inf", "nan", hex and exponents. */
        size_t digits = strspn(p, "0123456789.");
        if (digits == 0 || memchr(p, '.', digits) != memrchr(p, '.', digits))
            return -1;
        char num[32];
        if (digits >= sizeof(num))
            return -1;
        memcpy(num, p, digits);
        num[digits] = '\0';
        double n = strtod(num, NULL);
        p += digits;
        double unit;
        if (strncmp(p, "ms", 2) == 0)
            unit = 1, p += 2;
        else if (strncmp(p, "us", 2) == 0)
            unit = 0.001, p += 2;
        else if (strncmp(p, "\xc2\xb5s", 3) == 0)
            unit = 0.001, p += 3;
        else if (strncmp(p, "ns", 2) == 0)
            unit = 0.000001, p += 2;
        else if (*p == 'h')
            unit = 3600000, p++;
        else if (*p == 'm')
            unit = 60000, p++;
        else if (*p == 's')
            unit = 1000, p++;
        else
            return -1;
        total += n * unit;
        if (total > 1e15)
            return -1;
    }
    return (int64_t)total;
}

/* "v3.22.0+g1234" -> 3, 22. 0 when it does not parse. */
static int parse_version(const char *s, int *major, int *minor)
{
    while (*s == ' ' || *s == '\n' || *s == '"')
        s++;
    if (*s == 'v')
        s++;
    return sscanf(s, "%d.%d", major, minor) == 2;
}

/* ---------------------------------------------------------------------------------------
 * Running helm: fork/execve with pipes and a deadline.
 * --------------------------------------------------------------------------------------- */

/* A growing argv (owned strings), NULL-terminated for execve. */
typedef struct argv_t {
    char **v;
    size_t n, cap;
} argv_t;

static void argv_add(argv_t *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = realloc(a->v, a->cap * sizeof(char *));
        if (!a->v)
            abort();
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void argv_free(argv_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* The command line for logs: every argument is a path, a name or a flag, never a secret. */
static char *argv_text(const argv_t *a)
{
    size_t n = 1;
    for (size_t i = 0; i < a->n; i++)
        n += strlen(a->v[i]) + 1;
    char *s = xmalloc(n);
    s[0] = '\0';
    for (size_t i = 0; i < a->n; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, a->v[i]);
    }
    return s;
}

typedef struct buf_t {
    char *p;
    size_t len, cap;
    int truncated;
} buf_t;

static void buf_put(buf_t *b, const char *data, size_t n)
{
    if (b->len + n > HELM_MAX_OUTPUT) {
        b->truncated = 1;
        n = HELM_MAX_OUTPUT - b->len;
    }
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 8192;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

typedef struct run_result {
    int exit_code; /* the exit status, or -1 when killed by a signal */
    int timed_out;
    buf_t out, err; /* NUL-terminated when non-empty; freed by run_result_free */
} run_result;

static void run_result_free(run_result *r)
{
    free(r->out.p);
    free(r->err.p);
    memset(r, 0, sizeof(*r));
}

static const char *run_stderr(const run_result *r)
{
    return r->err.p ? r->err.p : "";
}

/* The environment helm runs with: ours, minus what must not reach it. MLENGINE_* holds the
 * state key and stack variables, which helm (or a plugin it runs) has no business seeing.
 * When the driver names the cluster itself (kubeconfig or host options), the variables that
 * would silently point helm elsewhere go too. The strings are borrowed from environ; the
 * array is malloc'd (caller frees it alone). */
static char **child_env(int explicit_cluster)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **out = xmalloc((n + 1) * sizeof(char *));
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "MLENGINE_", 9) == 0)
            continue;
        if (explicit_cluster &&
            (strncmp(*e, "KUBECONFIG=", 11) == 0 || strncmp(*e, "HELM_KUBE", 9) == 0))
            continue;
        out[k++] = *e;
    }
    out[k] = NULL;
    return out;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Run argv (argv[0] an absolute or relative path; no PATH search, no shell) and collect its
 * output. Returns 0 when it ran (whatever its exit code; r->timed_out when the deadline
 * killed it), or -1 with *err when it could not be started. r is freed by the caller. */
static int run_process(const mle_host *h, const argv_t *a, int explicit_cluster,
                       int64_t timeout_ms, run_result *r, mle_error **err)
{
    memset(r, 0, sizeof(*r));
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
        pipe2(execp, O_CLOEXEC) != 0) {
        *err = herr(h, MLE_E_IO, "helm: creating pipes: %s", strerror(errno));
        close_fd(&devnull), close_fd(&outp[0]), close_fd(&outp[1]), close_fd(&errp[0]);
        close_fd(&errp[1]), close_fd(&execp[0]), close_fd(&execp[1]);
        return -1;
    }
    /* Everything the child needs is built before fork: between fork and execve a child of a
     * multi-threaded process may only call async-signal-safe functions. */
    char **envp = child_env(explicit_cluster);
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = fork();
    if (pid == 0) {
        /* Its own process group, so a timeout kills helm and anything it started, and a
         * Ctrl-C at the terminal reaches only mlengine, which lets running operations
         * finish rather than leave a release pending. */
        setpgid(0, 0);
        /* Signal state is inherited through execve: start helm with the defaults, not with
         * whatever mask this worker thread or the core's signal handling had. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(126);
        execve(a->v[0], a->v, envp);
        int e = errno;
        ssize_t w = write(execp[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    free(envp);
    close_fd(&devnull), close_fd(&outp[1]), close_fd(&errp[1]), close_fd(&execp[1]);
    if (pid < 0) {
        close_fd(&outp[0]), close_fd(&errp[0]), close_fd(&execp[0]);
        *err = herr(h, MLE_E_IO, "helm: fork: %s", strerror(fork_errno));
        return -1;
    }
    /* The exec pipe closes on a successful execve (CLOEXEC) or carries the child's errno. */
    int child_errno = 0;
    ssize_t got;
    do
        got = read(execp[0], &child_errno, sizeof(child_errno));
    while (got < 0 && errno == EINTR);
    close_fd(&execp[0]);
    if (got == (ssize_t)sizeof(child_errno)) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        close_fd(&outp[0]), close_fd(&errp[0]);
        *err = herr(h, MLE_E_IO, "helm: cannot run %s: %s", a->v[0], strerror(child_errno));
        h->error_set_hint(*err, HELM_INSTALL_HINT);
        return -1;
    }

    int64_t start = h->monotonic_ms(), deadline = start + timeout_ms, kill_at = -1;
    int term_sent = 0;
    while (outp[0] >= 0 || errp[0] >= 0) {
        struct pollfd fds[2];
        int nf = 0, oi = -1;
        if (outp[0] >= 0)
            oi = nf, fds[nf++] = (struct pollfd){.fd = outp[0], .events = POLLIN};
        if (errp[0] >= 0)
            fds[nf++] = (struct pollfd){.fd = errp[0], .events = POLLIN};
        int64_t now = h->monotonic_ms();
        if (!term_sent && now >= deadline) {
            /* Past the deadline: ask helm to stop (it releases its locks on SIGTERM), then
             * insist. */
            r->timed_out = 1;
            term_sent = 1;
            kill(-pid, SIGTERM);
            kill_at = now + HELM_KILL_GRACE_MS;
        }
        if (term_sent && kill_at >= 0 && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = -1;
        }
        int64_t wait_ms = term_sent ? (kill_at >= 0 ? kill_at - now : 1000) : deadline - now;
        if (wait_ms < 0)
            wait_ms = 0;
        if (wait_ms > 1000)
            wait_ms = 1000;
        int pr = poll(fds, (nfds_t)nf, (int)wait_ms);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        char chunk[16384];
        for (int i = 0; i < nf; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int *fd = i == oi ? &outp[0] : &errp[0];
            buf_t *b = i == oi ? &r->out : &r->err;
            ssize_t n = read(*fd, chunk, sizeof(chunk));
            if (n > 0)
                buf_put(b, chunk, (size_t)n);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                close_fd(fd);
        }
    }
    close_fd(&outp[0]), close_fd(&errp[0]);
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    /* No status (someone reaped it: SIGCHLD ignored) is not success. */
    r->exit_code = w == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    h->log(h, MLE_LOG_DEBUG, "helm: exit %d after %lld ms%s", r->exit_code,
           (long long)(h->monotonic_ms() - start), r->timed_out ? " (timed out)" : "");
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Private temporary files: values and a generated kubeconfig.
 * --------------------------------------------------------------------------------------- */

typedef struct tmpdir_t {
    char *dir;      /* mkdtemp'd, mode 0700 (malloc'd), or NULL */
    char *files[2]; /* paths inside it (malloc'd) */
    int n;
} tmpdir_t;

static int tmpdir_make(const mle_host *h, tmpdir_t *t, mle_error **err)
{
    memset(t, 0, sizeof(*t));
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    t->dir = xasprintf("%s/mlengine-helm-XXXXXX", base);
    if (!mkdtemp(t->dir)) { /* mkdtemp makes it 0700 */
        *err = herr(h, MLE_E_IO, "helm: creating a private temporary directory in %s: %s",
                    base, strerror(errno));
        free(t->dir);
        t->dir = NULL;
        return -1;
    }
    return 0;
}

/* Write text to a new 0600 file in the private directory; returns its path (borrowed from
 * t) or NULL with *err. */
static const char *tmpdir_write(const mle_host *h, tmpdir_t *t, const char *stem,
                                const char *text, mle_error **err)
{
    char *path = xasprintf("%s/%s-XXXXXX", t->dir, stem);
    int fd = mkstemp(path); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        *err = herr(h, MLE_E_IO, "helm: creating a temporary file in %s: %s", t->dir,
                    strerror(errno));
        free(path);
        return NULL;
    }
    t->files[t->n++] = path;
    size_t len = strlen(text), off = 0;
    int ok = fchmod(fd, 0600) == 0;
    while (ok && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            ok = 0;
        else
            off += (size_t)w;
    }
    int saved = errno;
    if (close(fd) != 0 && ok)
        ok = 0, saved = errno;
    if (!ok) {
        *err = herr(h, MLE_E_IO, "helm: writing %s: %s", path, strerror(saved));
        return NULL;
    }
    return path;
}

/* Remove the files and the directory. Called right after the helm call, on every path. */
static void tmpdir_remove(tmpdir_t *t)
{
    for (int i = 0; i < t->n; i++) {
        unlink(t->files[i]);
        free(t->files[i]);
    }
    if (t->dir)
        rmdir(t->dir);
    free(t->dir);
    memset(t, 0, sizeof(*t));
}

/* A kubeconfig for the host/CA/token options (JSON, which kubeconfig readers accept as the
 * YAML it is a subset of). Caller frees with host free. */
static char *generated_kubeconfig(const mle_host *h, const helm_ctx *c)
{
    mle_value *cluster = h->v_object();
    h->v_set(cluster, "server", h->v_string(c->server));
    if (c->ca_pem) {
        char *b64 = h->base64_encode(h, c->ca_pem, strlen(c->ca_pem), 0);
        h->v_set(cluster, "certificate-authority-data", h->v_string(b64));
        h->free(h, b64);
    }
    mle_value *user = h->v_object();
    if (c->token)
        h->v_set(user, "token", h->v_string(c->token));
    mle_value *context = h->v_object();
    h->v_set(context, "cluster", h->v_string("mlengine"));
    h->v_set(context, "user", h->v_string("mlengine"));

    mle_value *named;
    mle_value *kc = h->v_object();
    h->v_set(kc, "apiVersion", h->v_string("v1"));
    h->v_set(kc, "kind", h->v_string("Config"));
    mle_value *list = h->v_array();
    named = h->v_object();
    h->v_set(named, "name", h->v_string("mlengine"));
    h->v_set(named, "cluster", cluster);
    h->v_append(list, named);
    h->v_set(kc, "clusters", list);
    list = h->v_array();
    named = h->v_object();
    h->v_set(named, "name", h->v_string("mlengine"));
    h->v_set(named, "user", user);
    h->v_append(list, named);
    h->v_set(kc, "users", list);
    list = h->v_array();
    named = h->v_object();
    h->v_set(named, "name", h->v_string("mlengine"));
    h->v_set(named, "context", context);
    h->v_append(list, named);
    h->v_set(kc, "contexts", list);
    h->v_set(kc, "current-context", h->v_string("mlengine"));
    char *text = h->v_to_json(h, kc);
    h->v_decref(kc);
    return text;
}

/* ---------------------------------------------------------------------------------------
 * One helm call with the connection flags, and helm's errors as mle_errors.
 * --------------------------------------------------------------------------------------- */

/* Helm's message for "no such release", in every command that reports it. */
static int says_not_found(const char *stderr_text)
{
    return strstr(stderr_text, "release: not found") != NULL;
}

/* Helm prints Go errors; the stable parts of their text say what kind of failure it was. */
static mle_error_code classify(const char *s)
{
    static const struct {
        const char *needle;
        mle_error_code code;
    } table[] = {
        {"release: not found", MLE_E_NOT_FOUND},
        {"another operation (install/upgrade/rollback) is in progress", MLE_E_CONFLICT},
        {"cannot re-use a name that is still in use", MLE_E_CONFLICT},
        /* Credentials first: helm wraps them in "Kubernetes cluster unreachable: ...". */
        {"Unauthorized", MLE_E_AUTH},
        {"provide credentials", MLE_E_AUTH},
        {"x509:", MLE_E_AUTH},
        {"tls: failed to verify", MLE_E_AUTH},
        {"forbidden", MLE_E_PERMISSION},
        {"connection refused", MLE_E_TRANSIENT},
        {"i/o timeout", MLE_E_TRANSIENT},
        {"TLS handshake timeout", MLE_E_TRANSIENT},
        {"connection reset by peer", MLE_E_TRANSIENT},
        {"the server is currently unable to handle the request", MLE_E_TRANSIENT},
        {"etcdserver: request timed out", MLE_E_TRANSIENT},
        {"timed out waiting for the condition", MLE_E_TIMEOUT},
        {"context deadline exceeded", MLE_E_TIMEOUT},
        {"no such file or directory", MLE_E_NOT_FOUND}, /* a chart or kubeconfig path */
        {"Kubernetes cluster unreachable", MLE_E_TRANSIENT},
        {"not found", MLE_E_NOT_FOUND},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strstr(s, table[i].needle))
            return table[i].code;
    return MLE_E_PROVIDER;
}

/* The tail of helm's stderr, trimmed, for an error message (malloc'd). Secrets registered
 * with the host (the token) are redacted by the core wherever the message is shown. */
static char *stderr_excerpt(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    const char *start = s;
    if (n > HELM_STDERR_IN_ERROR) {
        start = s + n - HELM_STDERR_IN_ERROR;
        n = HELM_STDERR_IN_ERROR;
    }
    while (n > 0 && (*start == '\n' || *start == ' ')) /* leading blank lines */
        start++, n--;
    return xasprintf("%s%.*s", start == s ? "" : "...", (int)n, start);
}

/* An error for a helm call that exited non-zero or timed out. */
static mle_error *helm_failed(const mle_host *h, const char *what, const run_result *r,
                              int64_t timeout_ms)
{
    if (r->timed_out) {
        mle_error *e = herr(h, MLE_E_TIMEOUT, "helm %s did not finish within %lld s and was "
                            "stopped", what, (long long)(timeout_ms / 1000));
        h->error_set_hint(e, "raise the release's `timeout`, or look at the release with "
                             "`helm status` (a stopped upgrade may leave it pending)");
        return e;
    }
    char *tail = stderr_excerpt(run_stderr(r));
    mle_error *e = herr(h, classify(tail), "helm %s failed (exit %d): %s", what, r->exit_code,
                        *tail ? tail : "(helm printed nothing on stderr)");
    if (strstr(tail, "another operation (install/upgrade/rollback) is in progress"))
        h->error_set_hint(e, "an earlier helm call on this release was interrupted: finish "
                             "or undo it with `helm rollback` (or `helm uninstall` if it never "
                             "installed), then apply again");
    free(tail);
    return e;
}

/* argv with the helm binary first; connection flags are added by helm_call. */
static void argv_start(argv_t *a, const helm_ctx *c, const char *const *words)
{
    memset(a, 0, sizeof(*a));
    argv_add(a, c->helm);
    for (; *words; words++)
        argv_add(a, *words);
}

/* Run one helm command with the connection flags (a generated kubeconfig, or the kubeconfig
 * and context options). `values_json`, when given, goes to a private file passed with -f.
 * Returns 0 and *r when helm ran, -1 with *err when it could not. */
static int helm_call(const mle_host *h, const helm_ctx *c, argv_t *a, const char *values_json,
                     int64_t timeout_ms, run_result *r, mle_error **err)
{
    tmpdir_t t;
    int need_tmp = values_json || c->server;
    if (need_tmp && tmpdir_make(h, &t, err) != 0)
        return -1;
    if (!need_tmp)
        memset(&t, 0, sizeof(t));
    int rc = -1;
    if (values_json) {
        const char *vf = tmpdir_write(h, &t, "values", values_json, err);
        if (!vf)
            goto out;
        argv_add(a, "-f");
        argv_add(a, vf);
    }
    if (c->server) {
        char *kc = generated_kubeconfig(h, c);
        const char *kf = tmpdir_write(h, &t, "kubeconfig", kc, err);
        explicit_bzero(kc, strlen(kc));
        h->free(h, kc);
        if (!kf)
            goto out;
        argv_add(a, "--kubeconfig");
        argv_add(a, kf);
    } else {
        if (c->kubeconfig) {
            argv_add(a, "--kubeconfig");
            argv_add(a, c->kubeconfig);
        }
        if (c->context) {
            argv_add(a, "--kube-context");
            argv_add(a, c->context);
        }
    }
    char *line = argv_text(a);
    h->log(h, MLE_LOG_DEBUG, "helm: %s", line);
    free(line);
    rc = run_process(h, a, c->server || c->kubeconfig, timeout_ms, r, err);
out:
    if (need_tmp)
        tmpdir_remove(&t);
    return rc;
}

/* helm's JSON output (the document starts at the first '{' or '['; anything before it is
 * chatter). Returns a new value or NULL with *err. */
static mle_value *parse_output(const mle_host *h, const char *what, const run_result *r,
                               mle_error **err)
{
    const char *s = r->out.p ? r->out.p : "";
    const char *start = strpbrk(s, "{[");
    if (!start || r->out.truncated) {
        *err = herr(h, MLE_E_PROVIDER, "helm %s printed no JSON%s", what,
                    r->out.truncated ? " (its output was too large)" : "");
        return NULL;
    }
    mle_error *pe = NULL;
    mle_value *v = h->v_parse_json(h, start, strlen(start), &pe);
    if (!v) {
        *err = herr(h, MLE_E_PROVIDER, "helm %s printed JSON mlengine cannot read: %s", what,
                    pe ? h->error_message(pe) : "?");
        if (pe)
            h->error_free(pe);
    }
    return v;
}

/* ---------------------------------------------------------------------------------------
 * The release's inputs.
 * --------------------------------------------------------------------------------------- */

typedef struct release_in {
    const char *name, *ns, *chart, *repository, *version, *timeout;
    const mle_value *values; /* borrowed; NULL when absent */
    int create_namespace, atomic, wait;
    int64_t timeout_ms;
} release_in;

/* Read and check a create/update config. 0, or -1 with *err naming the attribute. */
static int release_inputs(const mle_host *h, const mle_value *cfg, release_in *in,
                          mle_error **err)
{
    memset(in, 0, sizeof(*in));
    in->name = attr_str(h, cfg, "name");
    in->ns = attr_str(h, cfg, "namespace");
    if (!in->ns)
        in->ns = "default";
    in->chart = attr_str(h, cfg, "chart");
    in->repository = attr_str(h, cfg, "repository");
    in->version = attr_str(h, cfg, "version");
    in->timeout = attr_str(h, cfg, "timeout");
    if (!in->timeout)
        in->timeout = "5m0s";
    in->values = attr(h, cfg, "values");
    in->create_namespace = attr_bool(h, cfg, "create_namespace");
    in->atomic = attr_bool(h, cfg, "atomic");
    in->wait = attr_bool(h, cfg, "wait");
    const char *bad = NULL;
    if (!dns_label(in->name, 53)) {
        bad = "name";
        *err = herr(h, MLE_E_INVALID, "helm_release name \"%s\" is not a valid release name: "
                    "lower-case letters, digits and '-', at most 53 characters",
                    in->name ? in->name : "");
    } else if (!dns_label(in->ns, 63)) {
        bad = "namespace";
        *err = herr(h, MLE_E_INVALID, "helm_release namespace \"%s\" is not a valid namespace "
                    "name", in->ns);
    } else if (!in->chart) {
        bad = "chart";
        *err = herr(h, MLE_E_INVALID, "helm_release %s: chart is empty", in->name);
    } else if ((in->timeout_ms = go_duration_ms(in->timeout)) < 0) {
        bad = "timeout";
        *err = herr(h, MLE_E_INVALID, "helm_release %s: timeout \"%s\" is not a duration",
                    in->name, in->timeout);
        h->error_set_hint(*err, "write it as helm does: \"300s\", \"5m0s\", \"1h\"");
    } else if (in->values && h->v_kind(in->values) != MLE_V_OBJECT) {
        bad = "values";
        *err = herr(h, MLE_E_INVALID, "helm_release %s: values must be a map (a YAML "
                    "mapping), not a list or a scalar", in->name);
    } else {
        const char *st = attr_str(h, cfg, "status");
        if (st && strcmp(st, "deployed") != 0) {
            bad = "status";
            *err = herr(h, MLE_E_INVALID, "helm_release %s: status can only be \"deployed\" "
                        "(the state a release is brought to)", in->name);
        }
    }
    if (bad) {
        h->error_set_attribute(*err, bad);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Attributes from what helm reports.
 * --------------------------------------------------------------------------------------- */

static int is_number(const mle_host *h, const mle_value *v)
{
    mle_value_kind k = v ? h->v_kind(v) : MLE_V_NULL;
    return k == MLE_V_INT || k == MLE_V_REAL;
}

/* `live` (what helm stored) spelled like `want` (what the stack gave) wherever the two mean
 * the same. Helm keeps values as Go float64, so a stack's 1.0 comes back as 1 and would
 * otherwise show as drift forever. Returns a new value. */
static mle_value *align(const mle_host *h, const mle_value *live, const mle_value *want)
{
    if (!want)
        return h->v_deep_copy(live);
    mle_value_kind lk = h->v_kind(live), wk = h->v_kind(want);
    if (is_number(h, live) && is_number(h, want))
        return h->v_real_of(live) == h->v_real_of(want) ? h->v_deep_copy(want)
                                                        : h->v_deep_copy(live);
    if (lk == MLE_V_OBJECT && wk == MLE_V_OBJECT) {
        mle_value *out = h->v_object();
        void *it = NULL;
        mle_value *v;
        const char *k;
        while ((k = h->v_next(live, &it, &v)) != NULL)
            h->v_set(out, k, align(h, v, h->v_get(want, k)));
        return out;
    }
    if (lk == MLE_V_ARRAY && wk == MLE_V_ARRAY && h->v_len(live) == h->v_len(want)) {
        mle_value *out = h->v_array();
        for (size_t i = 0; i < h->v_len(live); i++)
            h->v_append(out, align(h, h->v_at(live, i), h->v_at(want, i)));
        return out;
    }
    return h->v_deep_copy(live);
}

/* An exact chart version ("1.2.3", "v1.2.3-rc.1") rather than a constraint ("^1.2", "~1",
 * ">=1.0 <2", "1.2.x"): only an exact one can be compared with what is deployed. */
static int exact_version(const char *v)
{
    if (!v || !*v)
        return 0;
    if (!((*v >= '0' && *v <= '9') || *v == 'v'))
        return 0;
    return !strpbrk(v, "^~<>=*|, xX");
}

/* The attributes of a release: `base` (the config or the last state) overlaid with what helm
 * reports. `rel` is a release as `helm status -o json` / `helm upgrade -o json` print it;
 * `meta` (optional) is `helm get metadata -o json`. Returns a new object. */
static mle_value *release_attrs(const mle_host *h, const mle_value *base, const mle_value *rel,
                                const mle_value *meta)
{
    mle_value *a = base && h->v_kind(base) == MLE_V_OBJECT ? h->v_deep_copy(base)
                                                            : h->v_object();
    const char *name = attr_str(h, rel, "name");
    const char *ns = attr_str(h, rel, "namespace");
    if (name)
        h->v_set(a, "name", h->v_string(name));
    if (ns)
        h->v_set(a, "namespace", h->v_string(ns));
    char *id = xasprintf("%s/%s", ns ? ns : "default", name ? name : "");
    h->v_set(a, "id", h->v_string(id));
    free(id);

    /* values: what helm holds as the user-supplied values. Helm stores an empty map as null;
     * that is no drift from an absent or empty `values`. */
    const mle_value *want = attr(h, base, "values");
    const mle_value *live = attr(h, rel, "config");
    if (live && h->v_kind(live) == MLE_V_OBJECT && h->v_len(live) > 0)
        h->v_set(a, "values", align(h, live, want));
    else if (want && h->v_len(want) > 0)
        h->v_set(a, "values", h->v_object()); /* emptied out of band */

    const mle_value *rev = attr(h, rel, "version");
    if (rev)
        h->v_set(a, "revision", h->v_int(h->v_int_of(rev)));
    const char *status = attr_str(h, attr(h, rel, "info"), "status");
    if (!status)
        status = attr_str(h, meta, "status");
    if (status)
        h->v_set(a, "status", h->v_string(status));

    const mle_value *cm = attr(h, attr(h, rel, "chart"), "metadata");
    const char *chart_version = attr_str(h, cm, "version");
    const char *app_version = attr_str(h, cm, "appVersion");
    if (!chart_version)
        chart_version = attr_str(h, meta, "version");
    if (!app_version)
        app_version = attr_str(h, meta, "appVersion");
    if (chart_version)
        h->v_set(a, "chart_version", h->v_string(chart_version));
    if (app_version)
        h->v_set(a, "app_version", h->v_string(app_version));
    /* A pinned exact version that is not what runs is drift (someone rolled back or upgraded
     * by hand); a constraint is left as written. */
    const char *pinned = attr_str(h, base, "version");
    if (chart_version && exact_version(pinned)) {
        const char *p = pinned[0] == 'v' ? pinned + 1 : pinned;
        const char *c = chart_version[0] == 'v' ? chart_version + 1 : chart_version;
        if (strcmp(p, c) != 0)
            h->v_set(a, "version", h->v_string(chart_version));
    }
    return a;
}

/* ---------------------------------------------------------------------------------------
 * Reading a release.
 * --------------------------------------------------------------------------------------- */

/* `helm status` + `helm get metadata`: 1 with *out (new attributes over `base`), 0 when the
 * release does not exist (or only its uninstalled history does), -1 with *err. */
static int release_read(const mle_host *h, const helm_ctx *c, const char *ns, const char *name,
                        const mle_value *base, mle_value **out, mle_error **err)
{
    const char *status_words[] = {"status", name, "--namespace", ns, "--output", "json", NULL};
    argv_t a;
    run_result r;
    argv_start(&a, c, status_words);
    int rc = helm_call(h, c, &a, NULL, HELM_READ_TIMEOUT_MS, &r, err);
    argv_free(&a);
    if (rc != 0)
        return -1;
    if (r.exit_code != 0 || r.timed_out) {
        int missing = !r.timed_out && says_not_found(run_stderr(&r));
        if (!missing)
            *err = helm_failed(h, "status", &r, HELM_READ_TIMEOUT_MS);
        run_result_free(&r);
        return missing ? 0 : -1;
    }
    mle_value *rel = parse_output(h, "status", &r, err);
    run_result_free(&r);
    if (!rel)
        return -1;
    const char *st = attr_str(h, attr(h, rel, "info"), "status");
    if (st && strcmp(st, "uninstalled") == 0) { /* kept history of an uninstall */
        h->v_decref(rel);
        return 0;
    }

    /* The chart's version and appVersion: `helm status` leaves the chart out. */
    const char *meta_words[] = {"get", "metadata", name, "--namespace", ns, "--output", "json",
                                NULL};
    argv_start(&a, c, meta_words);
    rc = helm_call(h, c, &a, NULL, HELM_READ_TIMEOUT_MS, &r, err);
    argv_free(&a);
    mle_value *meta = NULL;
    if (rc == 0 && r.exit_code == 0 && !r.timed_out) {
        meta = parse_output(h, "get metadata", &r, err);
    } else if (rc == 0) {
        *err = helm_failed(h, "get metadata", &r, HELM_READ_TIMEOUT_MS);
    }
    run_result_free(&r);
    if (!meta) {
        h->v_decref(rel);
        return -1;
    }
    *out = release_attrs(h, base, rel, meta);
    h->v_decref(rel);
    h->v_decref(meta);
    return 1;
}

/* Is there a release of this name (in any state)? And is it this stack's (labelled with our
 * lineage)? Returns 0 and sets *exists / *ours, or -1 with *err. */
static int release_owner(const mle_host *h, const helm_ctx *c, const char *ns, const char *name,
                         const char *lineage, int *exists, int *ours, mle_error **err)
{
    *exists = *ours = 0;
    char *filter = xasprintf("^%s$", name); /* name is a DNS label: no regex metacharacters */
    char *selector = lineage && *lineage && c->labels
                         ? xasprintf("%s=%s", LABEL_LINEAGE, lineage)
                         : NULL;
    int rc = 0;
    for (int pass = 0; pass < (selector ? 2 : 1) && rc == 0; pass++) {
        const char *words[] = {"list", "--namespace", ns, "--all", "--filter", filter,
                               "--output", "json", NULL};
        argv_t a;
        run_result r;
        argv_start(&a, c, words);
        if (pass == 1) {
            argv_add(&a, "--selector");
            argv_add(&a, selector);
        }
        rc = helm_call(h, c, &a, NULL, HELM_READ_TIMEOUT_MS, &r, err);
        argv_free(&a);
        if (rc != 0)
            break;
        if (r.exit_code != 0 || r.timed_out) {
            *err = helm_failed(h, "list", &r, HELM_READ_TIMEOUT_MS);
            run_result_free(&r);
            rc = -1;
            break;
        }
        mle_value *list = parse_output(h, "list", &r, err);
        run_result_free(&r);
        if (!list) {
            rc = -1;
            break;
        }
        /* A release uninstalled with --keep-history is history, not a release. */
        int found = 0;
        for (size_t i = 0; h->v_kind(list) == MLE_V_ARRAY && i < h->v_len(list); i++) {
            const char *st = attr_str(h, h->v_at(list, i), "status");
            found |= !st || strcmp(st, "uninstalled") != 0;
        }
        h->v_decref(list);
        if (pass == 0)
            *exists = found;
        else
            *ours = found;
        if (!found)
            break;
    }
    free(filter);
    free(selector);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Operations
 * --------------------------------------------------------------------------------------- */

static mle_op_status no_ctx(const mle_host *h, const mle_op *op)
{
    return h->op_error(h, op, herr(h, MLE_E_INTERNAL, "helm: operation without a context "
                                                      "(init was not called)"));
}

/* `helm upgrade --install`: create and update both bring the release to the config. */
static mle_op_status release_apply(const mle_host *h, const mle_op *op, int creating)
{
    helm_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    release_in in;
    mle_error *e = NULL;
    if (release_inputs(h, op->config, &in, &e) != 0)
        return h->op_error(h, op, e);

    if (creating) {
        /* upgrade --install would quietly take over an existing release of the same name:
         * refuse unless it is this stack's own (an earlier create of ours that failed half
         * way, e.g. --wait timed out without --atomic). */
        int exists, ours;
        if (release_owner(h, c, in.ns, in.name, op->lineage, &exists, &ours, &e) != 0)
            return h->op_error(h, op, e);
        if (exists && !ours) {
            e = herr(h, MLE_E_CONFLICT, "helm release %s/%s already exists and was not "
                     "installed by this stack", in.ns, in.name);
            char *hint = xasprintf("adopt it with `mlengine import STACK %s %s/%s`, or "
                                   "choose another name",
                                   op->address ? op->address : "helm_release.NAME", in.ns,
                                   in.name);
            h->error_set_hint(e, hint);
            free(hint);
            return fail(h, op, e, "name");
        }
    }

    argv_t a;
    const char *words[] = {"upgrade", "--install", in.name, in.chart, "--namespace", in.ns,
                           "--timeout", in.timeout, "--output", "json", NULL};
    argv_start(&a, c, words);
    if (in.version) {
        argv_add(&a, "--version");
        argv_add(&a, in.version);
    }
    if (in.repository) {
        argv_add(&a, "--repo");
        argv_add(&a, in.repository);
    }
    if (in.atomic)
        argv_add(&a, "--atomic");
    if (in.wait)
        argv_add(&a, "--wait");
    if (in.create_namespace)
        argv_add(&a, "--create-namespace");
    /* Exactly the stack's values on every upgrade, never merged with what an earlier revision
     * or a hand edit left (without it helm reuses the old values when the new ones are
     * empty). Ignored by a first install. */
    argv_add(&a, "--reset-values");
    if (c->labels && op->lineage && *op->lineage) {
        char *labels = creating && op->token && *op->token
                           ? xasprintf("%s=%s,%s=%s", LABEL_LINEAGE, op->lineage, LABEL_TOKEN,
                                       op->token)
                           : xasprintf("%s=%s", LABEL_LINEAGE, op->lineage);
        argv_add(&a, "--labels");
        argv_add(&a, labels);
        free(labels);
    }
    /* JSON, not YAML: JSON is YAML, and its quoting leaves helm's YAML 1.1 reader nothing
     * to reinterpret (a string "yes" or "on" stays a string). */
    char *values_json = in.values ? h->v_to_json(h, in.values) : h->strdup(h, "{}");
    /* The process limit is a safety net against a hung CLI, not the release's timeout: helm
     * applies --timeout to each wait and each hook, so a whole upgrade may take a few. */
    int64_t limit = in.timeout_ms * 3 + 120 * 1000;
    run_result r;
    h->log(h, MLE_LOG_INFO, "helm: %s release %s/%s (chart %s)",
           creating ? "installing" : "upgrading", in.ns, in.name, in.chart);
    int rc = helm_call(h, c, &a, values_json, limit, &r, &e);
    argv_free(&a);
    h->free(h, values_json);
    if (rc != 0)
        return h->op_error(h, op, e);
    if (r.exit_code != 0 || r.timed_out) {
        e = helm_failed(h, creating ? "install" : "upgrade", &r, limit);
        run_result_free(&r);
        return fail(h, op, e, NULL);
    }
    mle_value *rel = parse_output(h, "upgrade", &r, &e);
    run_result_free(&r);
    if (!rel)
        return h->op_error(h, op, e);
    mle_value *attrs = release_attrs(h, op->config, rel, NULL);
    h->v_decref(rel);
    char *id = xasprintf("%s/%s", in.ns, in.name);
    mle_op_status st = h->op_done(h, op, id, attrs);
    free(id);
    return st;
}

static mle_op_status op_create(const mle_host *h, const mle_op *op)
{
    return release_apply(h, op, 1);
}

static mle_op_status op_update(const mle_host *h, const mle_op *op)
{
    return release_apply(h, op, 0);
}

/* "ns/name" (or "name" in "default") from an ID. 0, or -1 when it is not one. */
static int split_id(const char *id, char *ns, size_t nsz, char *name, size_t nmz)
{
    if (!id)
        return -1;
    const char *slash = strchr(id, '/');
    if (slash) {
        if ((size_t)(slash - id) >= nsz || strlen(slash + 1) >= nmz)
            return -1;
        memcpy(ns, id, (size_t)(slash - id));
        ns[slash - id] = '\0';
        strcpy(name, slash + 1);
    } else {
        if (strlen(id) >= nmz)
            return -1;
        strcpy(ns, "default");
        strcpy(name, id);
    }
    return dns_label(ns, 63) && dns_label(name, 53) ? 0 : -1;
}

/* Namespace and name of the release an op is about: the state's, else the config's, else
 * the ID's. */
static int op_release(const mle_host *h, const mle_op *op, char ns[64], char name[64])
{
    const mle_value *src = op->state ? op->state : op->config;
    const char *n = attr_str(h, src, "name"), *s = attr_str(h, src, "namespace");
    if (n && dns_label(n, 53) && (!s || dns_label(s, 63))) {
        snprintf(ns, 64, "%s", s ? s : "default");
        snprintf(name, 64, "%s", n);
        return 0;
    }
    return split_id(op->id, ns, 64, name, 64);
}

static mle_op_status op_read(const mle_host *h, const mle_op *op)
{
    helm_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    char ns[64], name[64];
    if (op_release(h, op, ns, name) != 0)
        return h->op_error(h, op, herr(h, MLE_E_INVALID, "helm: %s has no valid release name "
                                       "or namespace", op->address ? op->address : "?"));
    mle_value *attrs = NULL;
    mle_error *e = NULL;
    int rc = release_read(h, c, ns, name, op->state ? op->state : op->config, &attrs, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    char *id = xasprintf("%s/%s", ns, name);
    mle_op_status st = h->op_done(h, op, id, attrs);
    free(id);
    return st;
}

/* `mlengine import helm_release.x NAMESPACE/NAME`: what is deployed, with the inputs helm
 * cannot tell (the chart's source, the flags) at their defaults; the next plan shows the
 * stack's chart and flags as an upgrade. */
static mle_op_status op_import(const mle_host *h, const mle_op *op)
{
    helm_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    char ns[64], name[64];
    if (split_id(op->id, ns, sizeof(ns), name, sizeof(name)) != 0) {
        mle_error *e = herr(h, MLE_E_INVALID, "helm: import ID \"%s\" is not NAMESPACE/NAME",
                            op->id ? op->id : "");
        h->error_set_hint(e, "e.g. `mlengine import stack.lua helm_release.mlflow mlflow/mlflow`");
        return h->op_error(h, op, e);
    }
    mle_value *base = h->v_object();
    h->v_set(base, "name", h->v_string(name));
    h->v_set(base, "namespace", h->v_string(ns));
    mle_value *attrs = NULL;
    mle_error *e = NULL;
    int rc = release_read(h, c, ns, name, base, &attrs, &e);
    h->v_decref(base);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    h->v_set(attrs, "create_namespace", h->v_bool(0));
    h->v_set(attrs, "atomic", h->v_bool(0));
    h->v_set(attrs, "wait", h->v_bool(0));
    h->v_set(attrs, "timeout", h->v_string("5m0s"));
    char *id = xasprintf("%s/%s", ns, name);
    mle_op_status st = h->op_done(h, op, id, attrs);
    free(id);
    return st;
}

static mle_op_status op_delete(const mle_host *h, const mle_op *op)
{
    helm_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    char ns[64], name[64];
    if (op_release(h, op, ns, name) != 0)
        return h->op_not_found(h, op); /* nothing nameable was ever installed */
    const mle_value *src = op->state ? op->state : op->config;
    const char *timeout = attr_str(h, src, "timeout");
    int64_t tms = go_duration_ms(timeout);
    if (tms < 0)
        timeout = "5m0s", tms = 300000;
    const char *words[] = {"uninstall", name, "--namespace", ns, "--timeout", timeout, NULL};
    argv_t a;
    argv_start(&a, c, words);
    if (attr_bool(h, src, "wait"))
        argv_add(&a, "--wait");
    run_result r;
    mle_error *e = NULL;
    int64_t limit = tms * 3 + 120 * 1000;
    h->log(h, MLE_LOG_INFO, "helm: uninstalling release %s/%s", ns, name);
    int rc = helm_call(h, c, &a, NULL, limit, &r, &e);
    argv_free(&a);
    if (rc != 0)
        return h->op_error(h, op, e);
    mle_op_status st;
    if (r.exit_code == 0 && !r.timed_out)
        st = h->op_done(h, op, op->id, NULL);
    else if (!r.timed_out && says_not_found(run_stderr(&r)))
        st = h->op_not_found(h, op);
    else
        st = h->op_error(h, op, helm_failed(h, "uninstall", &r, limit));
    run_result_free(&r);
    return st;
}

/* Crash recovery: a create of ours may have installed the release before the state knew.
 * It is ours when it carries this stack's lineage label; a release of the same name that
 * does not is someone else's, and the create that follows will say so. */
static mle_op_status op_adopt(const mle_host *h, const mle_op *op)
{
    helm_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    char ns[64], name[64];
    if (op_release(h, op, ns, name) != 0)
        return h->op_not_found(h, op);
    mle_error *e = NULL;
    int exists, ours;
    if (release_owner(h, c, ns, name, op->lineage, &exists, &ours, &e) != 0)
        return h->op_error(h, op, e);
    /* Without labels (helm < 3.13) the name is all there is to go on. */
    if (!exists || (c->labels && op->lineage && *op->lineage && !ours))
        return h->op_not_found(h, op);
    mle_value *attrs = NULL;
    int rc = release_read(h, c, ns, name, op->config, &attrs, &e);
    if (rc < 0)
        return h->op_error(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    char *id = xasprintf("%s/%s", ns, name);
    mle_op_status st = h->op_done(h, op, id, attrs);
    free(id);
    return st;
}

/* `mlengine render`: the merged values the release is installed with, as a reviewer reads
 * them. No I/O. */
static mle_op_status op_render(const mle_host *h, const mle_op *op)
{
    if (!MLE_HAS_FIELD(h, mle_host, v_to_yaml) || !h->v_to_yaml)
        return h->op_error(h, op, herr(h, MLE_E_UNSUPPORTED, "helm: this mlengine has no YAML "
                                       "emitter (ABI 1.1 host needed for render)"));
    const mle_value *values = attr(h, op->config, "values");
    mle_value *empty = values ? NULL : h->v_object();
    mle_error *e = NULL;
    char *yaml = h->v_to_yaml(h, values ? values : empty, &e);
    h->v_decref(empty);
    if (!yaml)
        return h->op_error(h, op, e);
    mle_value *files = h->v_object();
    h->v_set(files, "values.yaml", h->v_string(yaml));
    h->free(h, yaml);
    mle_value *attrs = h->v_object();
    h->v_set(attrs, "files", files);
    return h->op_done(h, op, NULL, attrs);
}

/* ---------------------------------------------------------------------------------------
 * init / fini
 * --------------------------------------------------------------------------------------- */

/* A string option: "" and null are unset; a sensitive one arrives wrapped in the engine's
 * {"$sensitive": ...} marker and is unwrapped. A reference to another resource cannot be
 * used: driver options must be known when the plan starts. Returns 0 and *out (borrowed,
 * or NULL), or -1 with *err. */
static int opt_str(const mle_host *h, const mle_value *options, const char *name,
                   const char **out, mle_error **err)
{
    *out = NULL;
    const mle_value *v = attr(h, options, name);
    if (v && h->v_kind(v) == MLE_V_OBJECT) {
        const mle_value *inner = h->v_get(v, "$sensitive");
        if (inner)
            v = inner;
    }
    if (!v || h->v_kind(v) == MLE_V_NULL)
        return 0;
    if (h->v_kind(v) != MLE_V_STRING) {
        int marker = h->v_kind(v) == MLE_V_OBJECT &&
                     (h->v_get(v, "$ref") || h->v_get(v, "$expr"));
        *err = herr(h, MLE_E_INVALID,
                    marker ? "helm driver option `%s` refers to another resource's attribute, "
                             "which is known only at apply; driver options must be known when "
                             "the plan starts"
                           : "helm driver option `%s` must be a string",
                    name);
        if (marker)
            h->error_set_hint(*err, "apply the cluster first (its own stack or -target) and "
                                    "pass its endpoint, CA and token as variables, or a "
                                    "kubeconfig path");
        return -1;
    }
    const char *s = h->v_str(v);
    *out = s && *s ? s : NULL;
    return 0;
}

static int executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* `helm` on PATH (malloc'd), or NULL. */
static char *find_on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = xstrdup(path), *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *cand = xasprintf("%s/%s", *d ? d : ".", prog);
        if (executable_file(cand))
            found = cand;
        else
            free(cand);
    }
    free(copy);
    return found;
}

/* PEM text, or base64 of PEM text (what cloud APIs hand out) -> PEM (malloc'd), or NULL. */
static char *pem_or_base64(const mle_host *h, const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    if (strncmp(s, "-----BEGIN", 10) == 0)
        return xstrdup(s);
    size_t n = 0;
    uint8_t *raw = h->base64_decode(h, s, &n);
    if (!raw)
        return NULL;
    char *out = NULL;
    if (n >= 10 && memcmp(raw, "-----BEGIN", 10) == 0) {
        out = xmalloc(n + 1);
        memcpy(out, raw, n);
        out[n] = '\0';
    }
    h->free(h, raw);
    return out;
}

static int helm_init(const mle_host *h, const mle_value *options, void **out, mle_error **err)
{
    helm_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    const char *helm = NULL, *kubeconfig = NULL, *context = NULL, *host = NULL, *ca = NULL,
               *token = NULL;
    if (opt_str(h, options, "helm", &helm, err) != 0 ||
        opt_str(h, options, "kubeconfig", &kubeconfig, err) != 0 ||
        opt_str(h, options, "context", &context, err) != 0 ||
        opt_str(h, options, "host", &host, err) != 0 ||
        opt_str(h, options, "cluster_ca_certificate", &ca, err) != 0 ||
        opt_str(h, options, "token", &token, err) != 0)
        goto fail;
    /* Registered first, so nothing below (nor any later helm error) can print it. */
    if (token)
        h->secret_register(h, token);

    /* The binary: the `helm` option (a path, or a name looked up on PATH), else PATH. */
    if (helm && strchr(helm, '/')) {
        if (!executable_file(helm)) {
            *err = herr(h, MLE_E_NOT_FOUND, "helm driver option `helm` is %s, which is not an "
                        "executable file: %s", helm, HELM_INSTALL_HINT);
            goto fail;
        }
        c->helm = xstrdup(helm);
    } else if (!(c->helm = find_on_path(helm ? helm : "helm"))) {
        *err = herr(h, MLE_E_NOT_FOUND, "%s not found on PATH: %s", helm ? helm : "helm",
                    HELM_INSTALL_HINT);
        h->error_set_hint(*err, "helm_release resources are installed with the helm CLI "
                                "(Helm 3.13 or later)");
        goto fail;
    }

    /* It must run, and its version decides whether releases can carry labels. */
    {
        argv_t a;
        const char *words[] = {"version", "--template", "{{.Version}}", NULL};
        argv_start(&a, c, words);
        run_result r;
        int rc = run_process(h, &a, 0, HELM_READ_TIMEOUT_MS, &r, err);
        argv_free(&a);
        if (rc != 0)
            goto fail;
        int major = 0, minor = 0;
        if (r.exit_code != 0 || r.timed_out || !r.out.p ||
            !parse_version(r.out.p, &major, &minor)) {
            char *tail = stderr_excerpt(run_stderr(&r));
            *err = herr(h, MLE_E_IO, "%s does not run as helm (`helm version` %s%s%s)", c->helm,
                        r.timed_out ? "timed out" : "failed", *tail ? ": " : "", tail);
            h->error_set_hint(*err, HELM_INSTALL_HINT);
            free(tail);
            run_result_free(&r);
            goto fail;
        }
        run_result_free(&r);
        if (major < 3) {
            *err = herr(h, MLE_E_UNSUPPORTED, "%s is Helm %d.%d; mlengine needs Helm 3 or "
                        "later", c->helm, major, minor);
            h->error_set_hint(*err, HELM_INSTALL_HINT);
            goto fail;
        }
        c->labels = major > 3 || minor >= 13;
        if (!c->labels)
            h->log(h, MLE_LOG_WARN, "helm: %s is Helm %d.%d: releases cannot carry ownership "
                   "labels before 3.13, so crash recovery adopts a release by name alone",
                   c->helm, major, minor);
        h->log(h, MLE_LOG_DEBUG, "helm: using %s (Helm %d.%d)", c->helm, major, minor);
    }

    if (host) {
        c->server = strstr(host, "://") ? xstrdup(host) : xasprintf("https://%s", host);
        if (strncmp(c->server, "https://", 8) != 0) {
            *err = herr(h, MLE_E_INVALID, "helm driver option `host` %s is not https: mlengine "
                        "talks to API servers over TLS only", c->server);
            goto fail;
        }
        if (ca && !(c->ca_pem = pem_or_base64(h, ca))) {
            *err = herr(h, MLE_E_INVALID, "helm driver option `cluster_ca_certificate` is "
                        "neither a PEM certificate nor base64 of one");
            goto fail;
        }
        if (token)
            c->token = xstrdup(token);
        if (kubeconfig || context)
            h->log(h, MLE_LOG_WARN, "helm: option `host` is set, so `kubeconfig` and "
                                    "`context` are ignored");
    } else {
        if (ca || token)
            h->log(h, MLE_LOG_WARN, "helm: `cluster_ca_certificate` and `token` are used only "
                                    "with `host`; they are ignored");
        /* A missing kubeconfig is a plan-time error, not a retried failure of each call. */
        struct stat kst;
        if (kubeconfig && stat(kubeconfig, &kst) != 0) {
            *err = herr(h, MLE_E_NOT_FOUND, "helm driver option `kubeconfig`: %s: %s",
                        kubeconfig, strerror(errno));
            goto fail;
        }
        c->kubeconfig = kubeconfig ? xstrdup(kubeconfig) : NULL;
        c->context = context ? xstrdup(context) : NULL;
    }
    *out = c;
    return 0;
fail:
    ctx_free(c);
    return -1;
}

static void helm_fini(const mle_host *h, void *ctx)
{
    (void)h;
    ctx_free(ctx);
}

/* ---------------------------------------------------------------------------------------
 * Descriptor
 * --------------------------------------------------------------------------------------- */

static const mle_attr_schema release_attrs_schema[] = {
    {"name", MLE_T_STRING, 0, MLE_A_REQUIRED | MLE_A_FORCE_NEW, NULL,
     "Release name: lower-case letters, digits and '-', at most 53 characters."},
    {"namespace", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_FORCE_NEW, "\"default\"",
     "Namespace the release lives in."},
    {"chart", MLE_T_STRING, 0, MLE_A_REQUIRED,
     NULL, "A local chart folder or .tgz (relative to the directory mlengine runs in), a "
           "chart name in `repository`, \"repo/chart\" of a repository added with `helm repo "
           "add`, or an oci:// reference."},
    {"repository", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "Chart repository URL (helm --repo)."},
    {"version", MLE_T_STRING, 0, MLE_A_OPTIONAL, NULL,
     "Chart version or constraint (helm --version). An exact version is compared with what "
     "is deployed, so a hand rollback shows as drift."},
    {"values", MLE_T_ANY, 0, MLE_A_OPTIONAL, NULL,
     "The release's values: a map, usually mle.merge(common, per_cloud). Every upgrade sets "
     "exactly these (helm --reset-values)."},
    {"create_namespace", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Create the namespace when missing (helm --create-namespace)."},
    {"atomic", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Roll back (or uninstall) a failed install/upgrade (helm --atomic; implies wait)."},
    {"wait", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Wait until the release's workloads are ready (helm --wait); on destroy, until its "
     "objects are gone."},
    {"timeout", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"5m0s\"",
     "How long helm waits for each Kubernetes operation (helm --timeout, a Go duration)."},
    {"status", MLE_T_STRING, 0, MLE_A_OPTIONAL | MLE_A_COMPUTED, "\"deployed\"",
     "The release's status as helm reports it. The desired status is always \"deployed\", "
     "so a failed or pending release shows as a change and the next apply upgrades it."},
    {"revision", MLE_T_INT, 0, MLE_A_COMPUTED, NULL, "Helm's revision number of the release."},
    {"chart_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "Version of the deployed chart."},
    {"app_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "appVersion of the deployed chart."},
    {"id", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "NAMESPACE/NAME."},
};

static const mle_resource_type helm_release_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "helm_release",
    .description = "A Helm release installed, upgraded and uninstalled with the helm CLI.",
    .attrs = release_attrs_schema,
    .n_attrs = sizeof(release_attrs_schema) / sizeof(release_attrs_schema[0]),
    .create = op_create,
    .read = op_read,
    .update = op_update,
    .del = op_delete,
    .import = op_import,
    .adopt = op_adopt,
    .render = op_render,
};

static const mle_resource_type *const helm_types[] = {&helm_release_type, NULL};

static const mle_option helm_options[] = {
    {"kubeconfig", MLE_T_STRING, NULL,
     "Path of the kubeconfig (default: helm's usual rules: $KUBECONFIG, else "
     "~/.kube/config).",
     0},
    {"context", MLE_T_STRING, NULL, "kubeconfig context to use (default: its current one).", 0},
    {"host", MLE_T_STRING, NULL,
     "API server URL; with cluster_ca_certificate and token, a private kubeconfig is "
     "generated for each helm call (kubeconfig and context are then ignored).",
     0},
    {"cluster_ca_certificate", MLE_T_STRING, NULL,
     "The cluster CA with `host`: PEM text or base64 of it (default: the system store).", 0},
    {"token", MLE_T_STRING, NULL, "Bearer token with `host`.", 1},
    {"helm", MLE_T_STRING, NULL,
     "The helm binary: a path, or a name looked up on PATH (default: helm on PATH).", 0},
};

static const char *const helm_clouds[] = {"any", NULL};

static const mle_driver helm_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "helm",
    .version = HELM_DRIVER_VERSION,
    .description = "Helm releases through the helm CLI (install, upgrade, drift, uninstall)",
    .clouds = helm_clouds,
    .types = helm_types,
    .options = helm_options,
    .n_options = sizeof(helm_options) / sizeof(helm_options[0]),
    .init = helm_init,
    .fini = helm_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &helm_driver; }
