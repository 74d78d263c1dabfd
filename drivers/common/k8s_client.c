/*
 * k8s_client.c — the Kubernetes client shared by the kubernetes, karpenter, keda and kyverno
 * drivers (compiled into each; see k8s_client.h for what it does and the contract).
 *
 * How it works, in one place:
 *   - create/update: PATCH the object's path with Content-Type application/apply-patch+yaml
 *     (JSON is YAML), fieldManager=mlengine, force=<force_conflicts>. The server merges what
 *     the stack declares with what other managers own and removes fields mlengine applied
 *     before but no longer declares. Every applied object carries ownership labels (the stack's
 *     lineage and its address), so a create never takes over an object someone else made.
 *   - API discovery maps (apiVersion, kind) to the resource name and scope, cached per run in
 *     the driver context and fetched again on a miss, so a custom resource whose CRD the same
 *     stack declares works as soon as the CRD is established.
 *   - waits (CRD Established, Namespace Active, Deployment Available, a type's own CRD before
 *     its custom resource is applied) and deletions in progress are answered
 *     MLE_OP_IN_PROGRESS and polled by the engine: no worker is held and nothing sleeps.
 *   - read: the live values of the fields the stack sets (for drift), plus the fields the
 *     mlengine field manager owns according to the server's managedFields.
 *
 * Sections: helpers; the connection (options, kubeconfig, HTTP, the ONE place an API server's
 * answer becomes an mle_error); the field projections used for drift; the context and
 * discovery; references; ownership labels; settings; waits; attributes; the type's CRD;
 * operations; render; init/fini; building objects from attribute tables. Everything but the
 * mle_k8s_* functions of k8s_client.h is static, and those are hidden by -fvisibility=hidden:
 * a driver still exports only mle_driver_entry.
 */
#include "k8s_client.h"

#include "eks_token.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K8S_FIELD_MANAGER MLE_K8S_FIELD_MANAGER
#define K8S_LABEL_STACK MLE_K8S_LABEL_STACK
#define K8S_LABEL_ADDRESS MLE_K8S_LABEL_ADDRESS
#define K8S_ANNOTATION_ADDRESS MLE_K8S_ANNOTATION_ADDRESS
#define K8S_DISCOVERY_RETRY_MS 1500 /* a kind not served yet is asked for again this soon */
#define K8S_POLL_FAST_MS 250         /* first seconds of a wait: most finish within them */
#define K8S_POLL_SLOW_MS 2000
#define K8S_POLL_FAST_FOR_MS 5000
/* A poll that finds its deadline passed by more than this is not the run that timed out (that
 * one polls within K8S_POLL_SLOW_MS of the deadline) but a later run resuming the operation
 * the engine still records as in progress; see k8s_poll. */
#define K8S_STALE_AFTER_MS 5000
#define K8S_WAIT_TIMED_OUT "timed out: "

/* ------------------------------------------------------------------------------------------
 * Small helpers. Memory the driver keeps for itself is libc's; what the host returns is
 * freed with the host's free.
 * ------------------------------------------------------------------------------------------ */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

/* Caller frees with free. */
static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

/* Caller frees with free. */
static char *xasprintf(const char *fmt, ...) MLE_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* A new error with a printf-style message (caller owns). Messages are formatted here so that
 * a '%' inside a server's message can never be read as a conversion by the host. */
static mle_error *kerr(const mle_host *h, mle_error_code code, const char *fmt, ...)
    MLE_PRINTF(3, 4);
static mle_error *kerr(const mle_host *h, mle_error_code code, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return h->error_new(h, code, "%s", buf);
}

/* obj[key] when obj is an object and the value is not null (borrowed), else NULL. */
static const mle_value *vget(const mle_host *h, const mle_value *obj, const char *key)
{
    if (!obj || h->v_kind(obj) != MLE_V_OBJECT)
        return NULL;
    const mle_value *v = h->v_get(obj, key);
    return v && h->v_kind(v) != MLE_V_NULL ? v : NULL;
}

/* obj[key] as a string (borrowed), or NULL. */
static const char *vstr(const mle_host *h, const mle_value *obj, const char *key)
{
    const mle_value *v = vget(h, obj, key);
    return v ? h->v_str(v) : NULL;
}

/* obj[key] as a non-empty string (borrowed), or NULL. */
static const char *vstr_ne(const mle_host *h, const mle_value *obj, const char *key)
{
    const char *s = vstr(h, obj, key);
    return s && *s ? s : NULL;
}

/* obj.k1.k2... (NULL-terminated keys), borrowed, or NULL. */
static const mle_value *vpath_(const mle_host *h, const mle_value *obj, ...)
{
    va_list ap;
    va_start(ap, obj);
    const mle_value *v = obj;
    for (const char *k; v && (k = va_arg(ap, const char *)) != NULL;)
        v = vget(h, v, k);
    va_end(ap);
    return v;
}
#define vpath(h, obj, ...) vpath_((h), (obj), __VA_ARGS__, (const char *)NULL)

static int vbool(const mle_host *h, const mle_value *obj, const char *key, int dflt)
{
    const mle_value *v = vget(h, obj, key);
    return v && h->v_kind(v) == MLE_V_BOOL ? h->v_bool_of(v) : dflt;
}

static int64_t vint(const mle_host *h, const mle_value *obj, const char *key, int64_t dflt)
{
    const mle_value *v = vget(h, obj, key);
    return v && (h->v_kind(v) == MLE_V_INT || h->v_kind(v) == MLE_V_REAL) ? h->v_int_of(v)
                                                                          : dflt;
}

/* obj[key], creating an empty object there when absent (borrowed). NULL when obj[key]
 * exists and is not an object. */
static mle_value *v_child_object(const mle_host *h, mle_value *obj, const char *key)
{
    mle_value *v = h->v_get(obj, key);
    if (!v || h->v_kind(v) == MLE_V_NULL) {
        h->v_set(obj, key, h->v_object());
        v = h->v_get(obj, key);
    }
    return h->v_kind(v) == MLE_V_OBJECT ? v : NULL;
}


/* ==== connection (was k8s_conn.c) ==== */
/* ------------------------------------------------------------------------------------------
 * Files.
 * ------------------------------------------------------------------------------------------ */

#define K8S_MAX_FILE (16u << 20) /* a kubeconfig or PEM larger than this is not one */

/* The whole file as a NUL-terminated string (caller frees with free), or NULL with errno. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 8192, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= K8S_MAX_FILE) {
                fclose(f);
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                int saved = errno;
                fclose(f);
                free(buf);
                errno = saved ? saved : EIO;
                return NULL;
            }
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* `path` resolved against the directory of `base_file` when relative, as kubectl does for
 * paths inside a kubeconfig. Caller frees with free. */
static char *path_relative_to(const char *base_file, const char *path)
{
    if (path[0] == '/' || !base_file)
        return xstrdup(path);
    const char *slash = strrchr(base_file, '/');
    if (!slash)
        return xstrdup(path);
    return xasprintf("%.*s/%s", (int)(slash - base_file), base_file, path);
}

/* ------------------------------------------------------------------------------------------
 * The connection.
 * ------------------------------------------------------------------------------------------ */

typedef struct k8s_conn {
    char *server;    /* "https://host:port[/prefix]", no trailing slash */
    char *ca_pem;    /* the cluster CA (PEM); NULL trusts the system store */
    char *token;     /* bearer token, or NULL */
    char *cert_pem;  /* client certificate (PEM), or NULL */
    char *key_pem;   /* its private key (PEM), or NULL */
    char *namespace; /* for namespaced objects that name none: the context's, else "default" */
    char *source;    /* where the connection came from, for messages */
    const char *driver; /* "kubernetes", "karpenter"...: static, for messages and logs */
    struct k8s_tokprov *prov; /* the token provider (token_provider option), or NULL; its
                                 token changes over the run, behind its own mutex */
} k8s_conn;

typedef struct k8s_tokprov k8s_tokprov;
static void tokprov_free(k8s_tokprov *p);

static void conn_clear(k8s_conn *k)
{
    free(k->server);
    free(k->ca_pem);
    free(k->token);
    free(k->cert_pem);
    free(k->key_pem);
    free(k->namespace);
    free(k->source);
    tokprov_free(k->prov);
    const char *driver = k->driver;
    memset(k, 0, sizeof(*k));
    k->driver = driver;
}

/* A PEM given as text, or as base64 of the PEM (what EKS and kubeconfig *-data fields hold).
 * Returns a malloc'd PEM (caller frees), or NULL when `s` is neither. */
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

/* One kubeconfig file, parsed. */
typedef struct kc_file {
    char *path;
    mle_value *doc; /* the first YAML document (owned) */
} kc_file;

/* The entry named `name` in the list `list_key` ("clusters", "users", "contexts") of the
 * first file that has one; returns its inner object (borrowed from files[]) and sets *from
 * to the file it came from (paths inside it are relative to that file). */
static const mle_value *kc_find(const mle_host *h, const kc_file *files, size_t n,
                                const char *list_key, const char *inner_key, const char *name,
                                const char **from)
{
    for (size_t i = 0; i < n; i++) {
        const mle_value *list = vget(h, files[i].doc, list_key);
        if (!list || h->v_kind(list) != MLE_V_ARRAY)
            continue;
        for (size_t j = 0; j < h->v_len(list); j++) {
            const mle_value *e = h->v_at(list, j);
            const char *nm = vstr(h, e, "name");
            if (nm && strcmp(nm, name) == 0) {
                const mle_value *inner = vget(h, e, inner_key);
                if (inner && h->v_kind(inner) == MLE_V_OBJECT) {
                    *from = files[i].path;
                    return inner;
                }
            }
        }
    }
    return NULL;
}

/* A credential that kubeconfig gives either inline (`<key>-data`, base64) or as a file
 * (`<key>`, relative to the kubeconfig). Returns 1 and *out (malloc'd PEM), 0 when neither
 * is set, -1 with *err. */
static int kc_pem(const mle_host *h, const mle_value *obj, const char *key, const char *from,
                  const char *what, char **out, mle_error **err)
{
    char data_key[64];
    snprintf(data_key, sizeof data_key, "%s-data", key);
    const char *data = vstr_ne(h, obj, data_key);
    const char *file = vstr_ne(h, obj, key);
    if (data) {
        *out = pem_or_base64(h, data);
        if (!*out) {
            *err = kerr(h, MLE_E_INVALID, "kubeconfig %s: %s of the %s is not base64 of a PEM",
                        from, data_key, what);
            return -1;
        }
        return 1;
    }
    if (file) {
        char *p = path_relative_to(from, file);
        char *text = read_file(p, NULL);
        if (!text) {
            *err = kerr(h, MLE_E_IO, "kubeconfig %s: reading %s (%s of the %s): %s", from, p,
                        key, what, strerror(errno));
            free(p);
            return -1;
        }
        free(p);
        *out = text;
        return 1;
    }
    return 0;
}

/* Fill `k` from kubeconfig files. `paths` is a colon-separated list (KUBECONFIG rules:
 * files that do not exist are skipped, the first file to set a value wins); `context` may be
 * NULL for current-context. Returns 0 or -1 with *err. */
static int conn_from_kubeconfig(const mle_host *h, const char *paths, int explicit_path,
                                const char *context, k8s_conn *k, mle_error **err)
{
    kc_file files[16];
    size_t n = 0;
    int rc = -1;
    char *list = xstrdup(paths);
    for (char *save = NULL, *p = strtok_r(list, ":", &save); p && n < 16;
         p = strtok_r(NULL, ":", &save)) {
        size_t len = 0;
        char *text = read_file(p, &len);
        if (!text) {
            if (errno == ENOENT && !explicit_path)
                continue;
            *err = kerr(h, MLE_E_IO, "reading kubeconfig %s: %s", p, strerror(errno));
            goto out;
        }
        mle_error *e = NULL;
        mle_value *docs = h->v_parse_yaml(h, text, len, &e);
        free(text);
        if (!docs) {
            *err = kerr(h, MLE_E_INVALID, "kubeconfig %s is not valid YAML: %s", p,
                        e ? h->error_message(e) : "?");
            h->error_free(e);
            goto out;
        }
        const mle_value *d0 = h->v_len(docs) > 0 ? h->v_at(docs, 0) : NULL;
        if (d0 && h->v_kind(d0) == MLE_V_OBJECT) {
            files[n].path = xstrdup(p);
            files[n].doc = h->v_incref((mle_value *)d0);
            n++;
        }
        h->v_decref(docs);
    }
    if (n == 0) {
        *err = kerr(h, MLE_E_AUTH, "no Kubernetes connection: no kubeconfig file found at %s",
                    paths);
        char *hint = xasprintf("set the %s driver option `kubeconfig`, the KUBECONFIG "
                               "environment variable, or `host` + `cluster_ca_certificate` + "
                               "`token`", k->driver);
        h->error_set_hint(*err, hint);
        free(hint);
        goto out;
    }
    const char *ctx_name = context && *context ? context : NULL;
    for (size_t i = 0; i < n && !ctx_name; i++)
        ctx_name = vstr_ne(h, files[i].doc, "current-context");
    if (!ctx_name) {
        *err = kerr(h, MLE_E_AUTH, "kubeconfig %s sets no current-context", paths);
        char *hint = xasprintf("set the %s driver option `context`", k->driver);
        h->error_set_hint(*err, hint);
        free(hint);
        goto out;
    }
    const char *from = NULL, *cl_from = NULL, *us_from = NULL;
    const mle_value *ctx = kc_find(h, files, n, "contexts", "context", ctx_name, &from);
    if (!ctx) {
        *err = kerr(h, MLE_E_INVALID, "kubeconfig %s has no context \"%s\"", paths, ctx_name);
        goto out;
    }
    const char *cl_name = vstr_ne(h, ctx, "cluster"), *us_name = vstr_ne(h, ctx, "user");
    const mle_value *cl = cl_name ? kc_find(h, files, n, "clusters", "cluster", cl_name, &cl_from)
                                  : NULL;
    if (!cl) {
        *err = kerr(h, MLE_E_INVALID, "kubeconfig %s: context \"%s\" names cluster \"%s\", "
                    "which is not defined", paths, ctx_name, cl_name ? cl_name : "");
        goto out;
    }
    const mle_value *us = us_name ? kc_find(h, files, n, "users", "user", us_name, &us_from)
                                  : NULL;
    const char *server = vstr_ne(h, cl, "server");
    if (!server) {
        *err = kerr(h, MLE_E_INVALID, "kubeconfig %s: cluster \"%s\" has no server", cl_from,
                    cl_name);
        goto out;
    }
    const mle_value *insecure = vget(h, cl, "insecure-skip-tls-verify");
    if (insecure && h->v_kind(insecure) == MLE_V_BOOL && h->v_bool_of(insecure)) {
        /* The house rule: TLS verification is always on. */
        *err = kerr(h, MLE_E_INVALID, "kubeconfig %s: cluster \"%s\" sets "
                    "insecure-skip-tls-verify, which mlengine refuses", cl_from, cl_name);
        h->error_set_hint(*err, "give the cluster's CA (certificate-authority-data) instead");
        goto out;
    }
    k->server = xstrdup(server);
    if (kc_pem(h, cl, "certificate-authority", cl_from, "cluster CA", &k->ca_pem, err) < 0)
        goto out;
    if (us) {
        if (vget(h, us, "exec") || vget(h, us, "auth-provider")) {
            *err = kerr(h, MLE_E_UNSUPPORTED, "kubeconfig %s: user \"%s\" gets its credentials "
                        "from an exec or auth-provider plugin, which the %s driver does "
                        "not run", us_from, us_name, k->driver);
            h->error_set_hint(*err, "give the driver `host`, `cluster_ca_certificate` and "
                                    "`token` (e.g. from the cluster resource's outputs)");
            goto out;
        }
        if (vstr_ne(h, us, "username") || vstr_ne(h, us, "password")) {
            *err = kerr(h, MLE_E_UNSUPPORTED, "kubeconfig %s: user \"%s\" uses basic "
                        "authentication, which Kubernetes removed in 1.19", us_from, us_name);
            goto out;
        }
        const char *tok = vstr_ne(h, us, "token"), *tok_file = vstr_ne(h, us, "tokenFile");
        if (tok) {
            k->token = xstrdup(tok);
        } else if (tok_file) {
            char *p = path_relative_to(us_from, tok_file);
            char *t = read_file(p, NULL);
            if (!t) {
                *err = kerr(h, MLE_E_IO, "kubeconfig %s: reading tokenFile %s: %s", us_from, p,
                            strerror(errno));
                free(p);
                goto out;
            }
            free(p);
            t[strcspn(t, "\r\n")] = '\0';
            k->token = t;
        }
        if (kc_pem(h, us, "client-certificate", us_from, "client certificate", &k->cert_pem,
                   err) < 0 ||
            kc_pem(h, us, "client-key", us_from, "client key", &k->key_pem, err) < 0)
            goto out;
        if (!k->cert_pem != !k->key_pem) {
            *err = kerr(h, MLE_E_INVALID, "kubeconfig %s: user \"%s\" has a client certificate "
                        "without its key, or a key without its certificate", us_from, us_name);
            goto out;
        }
    }
    const char *ns = vstr_ne(h, ctx, "namespace");
    k->namespace = xstrdup(ns ? ns : "default");
    k->source = xasprintf("kubeconfig %s, context \"%s\"", from, ctx_name);
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        free(files[i].path);
        h->v_decref(files[i].doc);
    }
    free(list);
    return rc;
}

/* A driver option as a non-empty string (borrowed), or NULL. A sensitive value arrives as
 * the engine's {"$sensitive": value} marker and is unwrapped; a reference to another
 * resource's attribute that reached init unresolved is an error (*err set, returns NULL). */
static const char *opt_str(const mle_host *h, const mle_value *options, const char *key,
                           const char *driver, mle_error **err)
{
    const mle_value *v = vget(h, options, key);
    const mle_value *inner = vget(h, v, "$sensitive");
    if (inner)
        v = inner;
    if (v && (vget(h, v, "$ref") || vget(h, v, "$expr"))) {
        *err = kerr(h, MLE_E_INVALID, "%s option %s refers to another resource's "
                    "attribute, which was not resolved before the driver started", driver, key);
        h->error_set_hint(*err, "give the option a known value (a variable or a file), or "
                                "apply the resource it refers to first");
        return NULL;
    }
    const char *s = v ? h->v_str(v) : NULL;
    return s && *s ? s : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Token providers: the bearer token of a managed cluster, from the cloud's identity
 * (option token_provider, with host + cluster_ca_certificate from the cluster's outputs).
 *
 *   eks: a presigned STS GetCallerIdentity URL (eks_token.c, signed by aws_sigv4.c), from the
 *        AWS credentials in the environment; used for 14 minutes.
 *   aks: an Azure AD (Entra ID) access token for the AKS server application (scope
 *        6dae42f8-4368-4678-94ff-3960e28e3630/.default), client-credentials grant at
 *        {AZURE_AUTHORITY_HOST}/{AZURE_TENANT_ID}/oauth2/v2.0/token with a federated token
 *        (workload identity: AZURE_FEDERATED_TOKEN_FILE, read again on every refresh since
 *        it is rotated) or a client secret.
 *   gke: a Google OAuth access token: $GOOGLE_OAUTH_ACCESS_TOKEN as given, else the
 *        application-default credentials file (a service account key: a JWT signed RS256
 *        with its key, exchanged at its token_uri; or gcloud's authorized_user refresh token).
 *
 * Every token, and every credential sent to get one, is registered as a secret before it
 * can reach a log line. A token is cached until shortly before it expires and fetched again
 * by the request that finds it stale, under the provider's mutex (one fetch at a time; the
 * other workers wait for it). A failed refresh keeps using a token that has not expired yet.
 * ------------------------------------------------------------------------------------------ */

enum { TP_EKS = 1, TP_AKS, TP_GKE };

#define TP_AKS_SCOPE "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
#define TP_GKE_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define TP_GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"
#define TP_AZURE_AUTHORITY "https://login.microsoftonline.com/"
#define TP_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define TP_ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define TP_MARGIN_MS (5 * 60 * 1000LL) /* refresh an OAuth token this long before it expires */
#define TP_JWT_LIFETIME_S 3600         /* Google's maximum for a service-account assertion */

struct k8s_tokprov {
    pthread_mutex_t mu;
    int kind;
    const char *name;     /* "eks", "aks", "gke" (static) */
    const char *driver;   /* static */
    char *eks_cluster;    /* eks */
    char *aws_region;     /* eks */
    char *token;          /* the cached token, or NULL */
    int64_t refresh_at;   /* wall clock ms: fetch a new one from then on (0: now) */
    int64_t expires_at;   /* wall clock ms: the cached one is refused from then on */
};

static void tokprov_free(k8s_tokprov *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->eks_cluster);
    free(p->aws_region);
    free(p->token);
    free(p);
}

static const char *env_ne(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static mle_error *tp_err(const mle_host *h, const k8s_tokprov *p, mle_error_code code,
                         const char *hint, const char *fmt, ...) MLE_PRINTF(5, 6);
static mle_error *tp_err(const mle_host *h, const k8s_tokprov *p, mle_error_code code,
                         const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mle_error *e = h->error_new(h, code, "%s driver, token_provider \"%s\": %s", p->driver,
                                p->name, msg);
    if (hint)
        h->error_set_hint(e, hint);
    return e;
}

/* A token endpoint must be https; plain http only on loopback (a local emulator or test
 * peer: nothing leaves the machine). */
static int tp_url_ok(const char *url)
{
    if (strncmp(url, "https://", 8) == 0)
        return 1;
    if (strncmp(url, "http://", 7) != 0)
        return 0;
    const char *host = url + 7;
    static const char *const loop[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < sizeof loop / sizeof *loop; i++) {
        size_t n = strlen(loop[i]);
        if (strncmp(host, loop[i], n) == 0 &&
            (host[n] == ':' || host[n] == '/' || host[n] == '\0'))
            return 1;
    }
    return 0;
}

/* The form field `s` percent-encoded, malloc'd. */
static char *form_enc(const mle_host *h, const char *s)
{
    char *e = h->url_encode(h, s, 0);
    char *out = xstrdup(e ? e : "");
    h->free(h, e);
    return out;
}

/* POST an OAuth 2.0 token request (form body) and read {"access_token", "expires_in"}.
 * Returns 0 with *token (malloc'd, registered as a secret) and *expires_in_s, or -1 with
 * *err. */
static int tp_oauth_post(const mle_host *h, const k8s_tokprov *p, const char *url,
                         const char *body, char **token, int64_t *expires_in_s,
                         mle_error **err)
{
    if (!tp_url_ok(url)) {
        *err = tp_err(h, p, MLE_E_INVALID, NULL, "the token endpoint %s is not https "
                      "(plain http is accepted on loopback only)", url);
        return -1;
    }
    mle_http_header hdrs[] = {
        {"Content-Type", "application/x-www-form-urlencoded"},
        {"Accept", "application/json"},
    };
    mle_http_request req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = url,
        .headers = hdrs,
        .n_headers = 2,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = 30000,
    };
    h->log(h, MLE_LOG_DEBUG, "%s: token_provider %s: requesting a token from %s", p->driver,
           p->name, url);
    mle_http_response *resp = NULL;
    mle_error *he = NULL;
    if (h->http(h, &req, &resp, &he) != 0) {
        *err = tp_err(h, p, MLE_E_TRANSIENT, "is the token endpoint reachable?",
                      "requesting a token from %s: %s", url, he ? h->error_message(he) : "?");
        h->error_free(he);
        return -1;
    }
    mle_error *pe = NULL;
    mle_value *doc = resp->body_len ? h->v_parse_json(h, resp->body, resp->body_len, &pe) : NULL;
    if (pe)
        h->error_free(pe);
    const char *tok = doc ? vstr_ne(h, doc, "access_token") : NULL;
    int rc = -1;
    if (resp->status == 200 && tok) {
        h->secret_register(h, tok);
        *token = xstrdup(tok);
        const mle_value *ei = vget(h, doc, "expires_in");
        int64_t s = 3600;
        if (ei && (h->v_kind(ei) == MLE_V_INT || h->v_kind(ei) == MLE_V_REAL))
            s = h->v_int_of(ei);
        else if (ei && h->v_str(ei)) /* the v1 endpoints answer it as a string */
            s = strtoll(h->v_str(ei), NULL, 10);
        *expires_in_s = s > 0 ? s : 3600;
        rc = 0;
    } else {
        const char *code = doc ? vstr_ne(h, doc, "error") : NULL;
        const char *desc = doc ? vstr_ne(h, doc, "error_description") : NULL;
        mle_error_code ec = resp->status == 429   ? MLE_E_THROTTLED
                            : resp->status >= 500 ? MLE_E_TRANSIENT
                            : resp->status == 200 ? MLE_E_PROVIDER
                                                  : MLE_E_AUTH;
        *err = tp_err(h, p, ec, NULL, "the token endpoint %s answered %ld%s%s%s%s", url,
                      resp->status, code ? ": " : "", code ? code : "",
                      desc ? " — " : "", desc ? desc : "");
        h->error_set_provider(*err, resp->status, code, desc);
    }
    h->v_decref(doc);
    h->http_response_free(h, resp);
    return rc;
}

/* Read a whole small file (a web identity token). malloc'd, or NULL. */
static char *slurp_small(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    while (buf && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    return buf;
}

/* The CI path with no static keys (GitHub/GitLab OIDC, IRSA): AWS_WEB_IDENTITY_TOKEN_FILE +
 * AWS_ROLE_ARN exchanged at STS AssumeRoleWithWebIdentity (an unsigned Query call) for
 * temporary credentials. The endpoint follows the SDK convention (AWS_ENDPOINT_URL_STS,
 * AWS_ENDPOINT_URL, else the regional STS). Fills *creds with malloc'd strings. */
static int tp_web_identity(const mle_host *h, const k8s_tokprov *p, const char *token_file,
                           const char *role, mle_aws_credentials *creds, mle_error **err)
{
    char *jwt = slurp_small(token_file);
    if (!jwt || !*jwt) {
        free(jwt);
        *err = tp_err(h, p, MLE_E_AUTH, NULL, "cannot read the web identity token file %s",
                      token_file);
        return -1;
    }
    h->secret_register(h, jwt);
    const char *session = env_ne("AWS_ROLE_SESSION_NAME");
    char *e_role = form_enc(h, role), *e_jwt = form_enc(h, jwt),
         *e_sess = form_enc(h, session ? session : "mlengine");
    char *body = h->sprintf(h, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s"
                               "&RoleSessionName=%s&WebIdentityToken=%s&DurationSeconds=3600",
                            e_role, e_sess, e_jwt);
    free(e_role);
    free(e_jwt);
    free(e_sess);
    free(jwt);
    const char *ep = env_ne("AWS_ENDPOINT_URL_STS") ? env_ne("AWS_ENDPOINT_URL_STS")
                                                     : env_ne("AWS_ENDPOINT_URL");
    char *url = ep ? xstrdup(ep) : h->sprintf(h, "https://sts.%s.amazonaws.com/", p->aws_region);
    int rc = -1;
    if (!tp_url_ok(url)) {
        *err = tp_err(h, p, MLE_E_INVALID, NULL, "the STS endpoint %s is not https (plain "
                      "http is accepted on loopback only)", url);
        goto out;
    }
    mle_http_header hdrs[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
    mle_http_request req = {.struct_size = sizeof(req), .method = "POST", .url = url,
                            .headers = hdrs, .n_headers = 1, .body = body,
                            .body_len = strlen(body), .timeout_ms = 30000};
    mle_http_response *resp = NULL;
    mle_error *he = NULL;
    if (h->http(h, &req, &resp, &he) != 0) {
        *err = tp_err(h, p, MLE_E_TRANSIENT, NULL, "AssumeRoleWithWebIdentity at %s: %s", url,
                      he ? h->error_message(he) : "?");
        h->error_free(he);
        goto out;
    }
    mle_error *pe = NULL;
    mle_value *doc = h->v_parse_xml(h, resp->body, resp->body_len, &pe);
    h->error_free(pe);
    const mle_value *c = vget(h, vget(h, doc, "AssumeRoleWithWebIdentityResult"), "Credentials");
    const char *ak = vstr_ne(h, c, "AccessKeyId"), *sk = vstr_ne(h, c, "SecretAccessKey"),
               *st = vstr_ne(h, c, "SessionToken");
    if (resp->status == 200 && ak && sk && st) {
        h->secret_register(h, sk);
        h->secret_register(h, st);
        creds->access_key_id = xstrdup(ak);
        creds->secret_access_key = xstrdup(sk);
        creds->session_token = xstrdup(st);
        rc = 0;
    } else {
        const mle_value *er = vget(h, doc, "Error");
        const char *code = vstr_ne(h, er, "Code"), *msg = vstr_ne(h, er, "Message");
        *err = tp_err(h, p, resp->status >= 500 ? MLE_E_TRANSIENT : MLE_E_AUTH, NULL,
                      "AssumeRoleWithWebIdentity for %s answered %ld%s%s%s%s", role,
                      resp->status, code ? ": " : "", code ? code : "", msg ? " — " : "",
                      msg ? msg : "");
    }
    h->v_decref(doc);
    h->http_response_free(h, resp);
out:
    h->free(h, body);
    if (ep)
        free(url);
    else
        h->free(h, url);
    return rc;
}

/* Credentials in the AWS SDK order this module knows: the environment's keys, then a web
 * identity (OIDC) token. Profiles stay with the aws driver (drivers/aws/aws_creds.c).
 * On success the strings of *creds are malloc'd (free with free()). */
static int tp_aws_creds(const mle_host *h, const k8s_tokprov *p, mle_aws_credentials *creds,
                        mle_error **err)
{
    const char *ak = env_ne("AWS_ACCESS_KEY_ID"), *sk = env_ne("AWS_SECRET_ACCESS_KEY");
    const char *st = env_ne("AWS_SESSION_TOKEN");
    if (ak && sk) {
        h->secret_register(h, sk);
        if (st)
            h->secret_register(h, st);
        creds->access_key_id = xstrdup(ak);
        creds->secret_access_key = xstrdup(sk);
        creds->session_token = st ? xstrdup(st) : NULL;
        return 0;
    }
    const char *file = env_ne("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env_ne("AWS_ROLE_ARN");
    if (file && role)
        return tp_web_identity(h, p, file, role, creds, err);
    *err = tp_err(h, p, MLE_E_AUTH,
                  "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for "
                  "temporary credentials), or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (the "
                  "OIDC path of CI); profiles are read only by the aws driver so far",
                  "no AWS credentials: tried AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and "
                  "AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN");
    return -1;
}

static int tp_fetch_eks(const mle_host *h, k8s_tokprov *p, char **token, int64_t *refresh_at,
                        int64_t *expires_at, mle_error **err)
{
    mle_aws_credentials creds = {0};
    if (tp_aws_creds(h, p, &creds, err) != 0)
        return -1;
    int64_t now = h->now_unix_ms();
    mle_error *e = NULL;
    char *t = mle_eks_token(h, &creds, p->aws_region, p->eks_cluster, now, &e);
    free((char *)creds.access_key_id);
    free((char *)creds.secret_access_key);
    free((char *)creds.session_token);
    if (!t) {
        *err = tp_err(h, p, e ? h->error_code(e) : MLE_E_INTERNAL, NULL, "%s",
                      e ? h->error_message(e) : "no token");
        h->error_free(e);
        return -1;
    }
    h->secret_register(h, t);
    *token = t;
    *refresh_at = mle_eks_token_expiry_ms(now);
    *expires_at = now + MLE_EKS_TOKEN_LIFETIME_MS;
    return 0;
}

static int tp_fetch_aks(const mle_host *h, k8s_tokprov *p, char **token, int64_t *refresh_at,
                        int64_t *expires_at, mle_error **err)
{
    const char *client = env_ne("AZURE_CLIENT_ID"), *tenant = env_ne("AZURE_TENANT_ID");
    const char *fed_file = env_ne("AZURE_FEDERATED_TOKEN_FILE");
    const char *secret = env_ne("AZURE_CLIENT_SECRET");
    const char *authority = env_ne("AZURE_AUTHORITY_HOST");
    const char *hint = "set AZURE_CLIENT_ID and AZURE_TENANT_ID, and AZURE_FEDERATED_TOKEN_FILE "
                       "(workload identity) or AZURE_CLIENT_SECRET";
    if (!client || !tenant) {
        *err = tp_err(h, p, MLE_E_AUTH, hint, "AZURE_CLIENT_ID and AZURE_TENANT_ID must be set");
        return -1;
    }
    for (const char *c = tenant; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '.')) {
            *err = tp_err(h, p, MLE_E_INVALID, NULL, "AZURE_TENANT_ID \"%s\" is not a tenant "
                          "ID or domain", tenant);
            return -1;
        }
    }
    char *cred_field = NULL;
    if (fed_file) {
        char *a = read_file(fed_file, NULL);
        if (!a) {
            *err = tp_err(h, p, MLE_E_IO, NULL, "reading AZURE_FEDERATED_TOKEN_FILE %s: %s",
                          fed_file, strerror(errno));
            return -1;
        }
        size_t n = strlen(a);
        while (n > 0 && (a[n - 1] == '\n' || a[n - 1] == '\r' || a[n - 1] == ' '))
            a[--n] = '\0';
        if (!*a) {
            free(a);
            *err = tp_err(h, p, MLE_E_AUTH, NULL, "AZURE_FEDERATED_TOKEN_FILE %s is empty",
                          fed_file);
            return -1;
        }
        h->secret_register(h, a);
        char *enc = form_enc(h, a);
        cred_field = xasprintf("client_assertion_type=%s&client_assertion=%s",
                               "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
                               enc);
        free(enc);
        free(a);
    } else if (secret) {
        h->secret_register(h, secret);
        char *enc = form_enc(h, secret);
        cred_field = xasprintf("client_secret=%s", enc);
        free(enc);
    } else {
        *err = tp_err(h, p, MLE_E_AUTH, hint,
                      "neither AZURE_FEDERATED_TOKEN_FILE nor AZURE_CLIENT_SECRET is set");
        return -1;
    }
    const char *auth = authority ? authority : TP_AZURE_AUTHORITY;
    size_t an = strlen(auth);
    while (an > 0 && auth[an - 1] == '/')
        an--;
    char *url = xasprintf("%.*s/%s/oauth2/v2.0/token", (int)an, auth, tenant);
    char *cid = form_enc(h, client), *scope = form_enc(h, TP_AKS_SCOPE);
    char *body = xasprintf("grant_type=client_credentials&client_id=%s&scope=%s&%s", cid, scope,
                           cred_field);
    free(cid);
    free(scope);
    free(cred_field);
    int64_t now = h->now_unix_ms(), ttl = 0;
    int rc = tp_oauth_post(h, p, url, body, token, &ttl, err);
    free(url);
    free(body);
    if (rc == 0) {
        int64_t ms = ttl * 1000, margin = ms > 2 * TP_MARGIN_MS ? TP_MARGIN_MS : ms / 2;
        *refresh_at = now + ms - margin;
        *expires_at = now + ms;
    }
    return rc;
}

/* RS256 JWT for a service account key (obj: the key file). Returns malloc'd JWT or NULL. */
static char *tp_google_jwt(const mle_host *h, k8s_tokprov *p, const mle_value *key,
                           const char *token_uri, int64_t now_s, mle_error **err)
{
    const char *email = vstr_ne(h, key, "client_email");
    const char *pem = vstr_ne(h, key, "private_key");
    const char *kid = vstr_ne(h, key, "private_key_id");
    if (!email || !pem) {
        *err = tp_err(h, p, MLE_E_INVALID, NULL, "the service account key has no client_email "
                      "or private_key");
        return NULL;
    }
    h->secret_register(h, pem);
    mle_value *hdr = h->v_object(), *cl = h->v_object();
    h->v_set(hdr, "alg", h->v_string("RS256"));
    h->v_set(hdr, "typ", h->v_string("JWT"));
    if (kid)
        h->v_set(hdr, "kid", h->v_string(kid));
    h->v_set(cl, "iss", h->v_string(email));
    h->v_set(cl, "scope", h->v_string(TP_GKE_SCOPE));
    h->v_set(cl, "aud", h->v_string(token_uri));
    h->v_set(cl, "iat", h->v_int(now_s));
    h->v_set(cl, "exp", h->v_int(now_s + TP_JWT_LIFETIME_S));
    char *hj = h->v_to_json(h, hdr), *cj = h->v_to_json(h, cl);
    h->v_decref(hdr);
    h->v_decref(cl);
    char *hb = h->base64_encode(h, hj, strlen(hj), 1), *cb = h->base64_encode(h, cj, strlen(cj), 1);
    h->free(h, hj);
    h->free(h, cj);
    char *input = xasprintf("%s.%s", hb, cb);
    h->free(h, hb);
    h->free(h, cb);
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    mle_error *se = NULL;
    if (h->sign_pem(h, pem, MLE_SIGN_RS256, input, strlen(input), &sig, &sig_len, &se) != 0) {
        *err = tp_err(h, p, MLE_E_INVALID, NULL, "signing the service account assertion: %s",
                      se ? h->error_message(se) : "?");
        h->error_free(se);
        free(input);
        return NULL;
    }
    char *sb = h->base64_encode(h, sig, sig_len, 1);
    h->free(h, sig);
    char *jwt = xasprintf("%s.%s", input, sb);
    h->free(h, sb);
    free(input);
    h->secret_register(h, jwt);
    return jwt;
}

static int tp_fetch_gke(const mle_host *h, k8s_tokprov *p, char **token, int64_t *refresh_at,
                        int64_t *expires_at, mle_error **err)
{
    const char *at = env_ne("GOOGLE_OAUTH_ACCESS_TOKEN");
    if (at) {
        /* Given as is (`gcloud auth print-access-token`): its expiry is not known here. */
        h->secret_register(h, at);
        *token = xstrdup(at);
        *refresh_at = *expires_at = INT64_MAX;
        return 0;
    }
    const char *hint = "set GOOGLE_OAUTH_ACCESS_TOKEN (e.g. `gcloud auth print-access-token`) "
                       "or GOOGLE_APPLICATION_CREDENTIALS (a service account key file)";
    const char *path = env_ne("GOOGLE_APPLICATION_CREDENTIALS");
    char *adc = NULL;
    if (!path) {
        const char *cfg = env_ne("CLOUDSDK_CONFIG"), *home = env_ne("HOME");
        adc = cfg ? xasprintf("%s/application_default_credentials.json", cfg)
                  : xasprintf("%s/.config/gcloud/application_default_credentials.json",
                              home ? home : ".");
        path = adc;
    }
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        *err = adc ? tp_err(h, p, MLE_E_AUTH, hint, "no Google credentials: neither "
                            "GOOGLE_OAUTH_ACCESS_TOKEN nor GOOGLE_APPLICATION_CREDENTIALS is "
                            "set, and %s cannot be read", path)
                   : tp_err(h, p, MLE_E_IO, NULL, "reading GOOGLE_APPLICATION_CREDENTIALS %s: "
                            "%s", path, strerror(errno));
        free(adc);
        return -1;
    }
    mle_error *pe = NULL;
    mle_value *key = h->v_parse_json(h, text, len, &pe);
    free(text);
    if (!key || h->v_kind(key) != MLE_V_OBJECT) {
        *err = tp_err(h, p, MLE_E_INVALID, NULL, "%s is not a JSON credentials file", path);
        if (pe)
            h->error_free(pe);
        h->v_decref(key);
        free(adc);
        return -1;
    }
    const char *type = vstr_ne(h, key, "type");
    const char *uri = vstr_ne(h, key, "token_uri");
    if (!uri)
        uri = TP_GOOGLE_TOKEN_URI;
    int64_t now = h->now_unix_ms(), ttl = 0;
    char *body = NULL;
    int rc = -1;
    if (type && strcmp(type, "service_account") == 0) {
        char *jwt = tp_google_jwt(h, p, key, uri, now / 1000, err);
        if (jwt) {
            body = xasprintf("grant_type=%s&assertion=%s",
                             "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer", jwt);
            free(jwt);
        }
    } else if (type && strcmp(type, "authorized_user") == 0) {
        const char *id = vstr_ne(h, key, "client_id"), *sec = vstr_ne(h, key, "client_secret");
        const char *rt = vstr_ne(h, key, "refresh_token");
        if (!id || !sec || !rt) {
            *err = tp_err(h, p, MLE_E_INVALID, NULL, "%s (authorized_user) lacks client_id, "
                          "client_secret or refresh_token", path);
        } else {
            h->secret_register(h, sec);
            h->secret_register(h, rt);
            char *a = form_enc(h, id), *b = form_enc(h, sec), *c = form_enc(h, rt);
            body = xasprintf("grant_type=refresh_token&client_id=%s&client_secret=%s"
                             "&refresh_token=%s", a, b, c);
            free(a);
            free(b);
            free(c);
        }
    } else {
        *err = tp_err(h, p, MLE_E_UNSUPPORTED, hint, "%s has credentials of type \"%s\", which "
                      "the Kubernetes drivers do not exchange (service_account and "
                      "authorized_user are supported; external_account — workload identity "
                      "federation — is not yet)", path, type ? type : "(none)");
    }
    if (body)
        rc = tp_oauth_post(h, p, uri, body, token, &ttl, err);
    free(body);
    h->v_decref(key);
    free(adc);
    if (rc == 0) {
        int64_t ms = ttl * 1000, margin = ms > 2 * TP_MARGIN_MS ? TP_MARGIN_MS : ms / 2;
        *refresh_at = now + ms - margin;
        *expires_at = now + ms;
    }
    return rc;
}

/* The current token (malloc'd copy), fetched again when stale. NULL with *err. */
static char *tokprov_token(const mle_host *h, k8s_tokprov *p, mle_error **err)
{
    pthread_mutex_lock(&p->mu);
    int64_t now = h->now_unix_ms();
    char *out = NULL;
    if (!p->token || now >= p->refresh_at) {
        char *t = NULL;
        int64_t refresh_at = 0, expires_at = 0;
        mle_error *e = NULL;
        int rc = p->kind == TP_EKS   ? tp_fetch_eks(h, p, &t, &refresh_at, &expires_at, &e)
                 : p->kind == TP_AKS ? tp_fetch_aks(h, p, &t, &refresh_at, &expires_at, &e)
                                     : tp_fetch_gke(h, p, &t, &refresh_at, &expires_at, &e);
        if (rc == 0) {
            free(p->token);
            p->token = t;
            p->refresh_at = refresh_at;
            p->expires_at = expires_at;
            h->log(h, MLE_LOG_DEBUG, "%s: token_provider %s: new token, valid for %lld s",
                   p->driver, p->name,
                   expires_at == INT64_MAX ? -1LL : (long long)((expires_at - now) / 1000));
        } else if (p->token && now < p->expires_at) {
            h->log(h, MLE_LOG_WARN, "%s: token_provider %s: refreshing the token failed (%s); "
                   "using the current one until it expires", p->driver, p->name,
                   e ? h->error_message(e) : "?");
            h->error_free(e);
        } else {
            *err = e;
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
    }
    out = xstrdup(p->token);
    pthread_mutex_unlock(&p->mu);
    return out;
}

/* The API server refused the token (401): fetch a new one for the next request. */
static void tokprov_invalidate(k8s_tokprov *p)
{
    pthread_mutex_lock(&p->mu);
    p->refresh_at = 0;
    pthread_mutex_unlock(&p->mu);
}

/* The provider the options name, checked (no I/O). 0 with *out (NULL when none), or -1. */
static int tokprov_new(const mle_host *h, const mle_value *options, const char *driver,
                       const char *name, k8s_tokprov **out, mle_error **err)
{
    *out = NULL;
    if (!name)
        return 0;
    int kind = strcmp(name, "eks") == 0   ? TP_EKS
               : strcmp(name, "aks") == 0 ? TP_AKS
               : strcmp(name, "gke") == 0 ? TP_GKE
                                          : 0;
    if (!kind) {
        *err = kerr(h, MLE_E_INVALID, "%s option token_provider is \"%s\": it must be \"eks\", "
                    "\"aks\" or \"gke\" (or unset)", driver, name);
        h->error_set_attribute(*err, "token_provider");
        return -1;
    }
    k8s_tokprov *p = xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->kind = kind;
    p->name = kind == TP_EKS ? "eks" : kind == TP_AKS ? "aks" : "gke";
    p->driver = driver;
    if (kind == TP_EKS) {
        mle_error *e = NULL;
        const char *cl = opt_str(h, options, "eks_cluster_name", driver, &e);
        const char *rg = e ? NULL : opt_str(h, options, "aws_region", driver, &e);
        if (!e && !rg)
            rg = env_ne("AWS_REGION") ? env_ne("AWS_REGION") : env_ne("AWS_DEFAULT_REGION");
        if (!e && (!cl || !rg)) {
            e = kerr(h, MLE_E_INVALID, "%s option token_provider \"eks\" needs %s", driver,
                     !cl ? "eks_cluster_name (the EKS cluster's name)"
                         : "aws_region (or AWS_REGION in the environment)");
            h->error_set_attribute(e, !cl ? "eks_cluster_name" : "aws_region");
        }
        if (e) {
            *err = e;
            tokprov_free(p);
            return -1;
        }
        p->eks_cluster = xstrdup(cl);
        p->aws_region = xstrdup(rg);
    }
    *out = p;
    return 0;
}

/* Resolve the connection from the driver options:
 *   host (+ cluster_ca_certificate, token) given directly — a cluster resource's outputs;
 *   else the kubeconfig option, else $KUBECONFIG, else ~/.kube/config (+ the context option).
 * Returns 0 or -1 with *err. */
static int conn_resolve(const mle_host *h, const mle_value *options, k8s_conn *k,
                        mle_error **err)
{
    mle_error *e = NULL;
    const char *host = opt_str(h, options, "host", k->driver, &e);
    const char *context = opt_str(h, options, "context", k->driver, &e);
    const char *ca = opt_str(h, options, "cluster_ca_certificate", k->driver, &e);
    const char *token = opt_str(h, options, "token", k->driver, &e);
    const char *kc = opt_str(h, options, "kubeconfig", k->driver, &e);
    const char *ns = opt_str(h, options, "namespace", k->driver, &e);
    const char *provider = opt_str(h, options, "token_provider", k->driver, &e);
    if (e) {
        *err = e;
        return -1;
    }
    if (provider && (!host || token)) {
        *err = kerr(h, MLE_E_INVALID, "%s option token_provider \"%s\" %s", k->driver,
                    provider, !host ? "needs host (and cluster_ca_certificate): the cluster's "
                                      "endpoint and CA, e.g. from the cluster resource's outputs"
                                    : "and the option token both give the bearer token: set one");
        h->error_set_attribute(*err, !host ? "host" : "token");
        return -1;
    }
    if (tokprov_new(h, options, k->driver, provider, &k->prov, err) != 0)
        return -1;
    if (host) {
        k->server = strstr(host, "://") ? xstrdup(host) : xasprintf("https://%s", host);
        if (ca && !(k->ca_pem = pem_or_base64(h, ca))) {
            *err = kerr(h, MLE_E_INVALID, "%s option cluster_ca_certificate is neither "
                        "a PEM certificate nor base64 of one", k->driver);
            h->error_set_attribute(*err, "cluster_ca_certificate");
            return -1;
        }
        k->token = token ? xstrdup(token) : NULL;
        k->namespace = xstrdup(ns ? ns : "default");
        k->source = k->prov ? xasprintf("host option %s, token_provider %s", k->server,
                                        k->prov->name)
                            : xasprintf("host option %s", k->server);
    } else {
        const char *env = getenv("KUBECONFIG");
        int explicit_path = kc != NULL;
        char *paths;
        if (kc) {
            paths = xstrdup(kc);
        } else if (env && *env) {
            paths = xstrdup(env);
        } else {
            const char *home = getenv("HOME");
            paths = xasprintf("%s/.kube/config", home && *home ? home : ".");
        }
        int rc = conn_from_kubeconfig(h, paths, explicit_path, context, k, err);
        free(paths);
        if (rc != 0)
            return -1;
        if (ns) {
            free(k->namespace);
            k->namespace = xstrdup(ns);
        }
    }
    size_t n = strlen(k->server);
    while (n > 0 && k->server[n - 1] == '/')
        k->server[--n] = '\0';
    if (strncmp(k->server, "https://", 8) != 0) {
        *err = kerr(h, MLE_E_INVALID, "Kubernetes API server %s (from %s) is not https: "
                    "mlengine talks to API servers over TLS only", k->server, k->source);
        return -1;
    }
    if (k->token)
        h->secret_register(h, k->token);
    if (k->key_pem)
        h->secret_register(h, k->key_pem);
    if (k->prov) {
        /* The first token now, so a provider that cannot give one fails the first operation
         * with its own message (and the next operation tries again). */
        char *t = tokprov_token(h, k->prov, err);
        if (!t)
            return -1;
        free(t);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Requests and the error mapping.
 * ------------------------------------------------------------------------------------------ */

/* Send one request to the API server. `path` starts with '/' and carries any query;
 * `content_type` and `body` may be NULL. Returns 0 with *resp (caller frees with
 * http_response_free) for every HTTP status, or -1 with *err when no answer was had. */
static int k8s_send(const mle_host *h, const k8s_conn *k, const char *method, const char *path,
                    const char *content_type, const char *body, mle_http_response **resp,
                    mle_error **err)
{
    char *url = xasprintf("%s%s", k->server, path);
    char *auth = NULL;
    if (k->prov) {
        char *t = tokprov_token(h, k->prov, err);
        if (!t)
            return -1;
        auth = xasprintf("Bearer %s", t);
        free(t);
    } else if (k->token) {
        auth = xasprintf("Bearer %s", k->token);
    }
    char *agent = xasprintf("mlengine-%s/" MLE_K8S_VERSION, k->driver);
    mle_http_header hdrs[4];
    size_t nh = 0;
    hdrs[nh++] = (mle_http_header){"Accept", "application/json"};
    hdrs[nh++] = (mle_http_header){"User-Agent", agent};
    if (content_type)
        hdrs[nh++] = (mle_http_header){"Content-Type", content_type};
    if (auth)
        hdrs[nh++] = (mle_http_header){"Authorization", auth};
    mle_http_request req = {
        .struct_size = sizeof(req),
        .method = method,
        .url = url,
        .headers = hdrs,
        .n_headers = nh,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .ca_pem = k->ca_pem,
        .client_cert_pem = k->cert_pem,
        .client_key_pem = k->key_pem,
    };
    h->log(h, MLE_LOG_DEBUG, "%s: %s %s", k->driver, method, path);
    int rc = h->http(h, &req, resp, err);
    if (rc == 0 && k->prov && (*resp)->status == 401)
        tokprov_invalidate(k->prov);
    if (rc != 0 && *err) {
        const char *m = h->error_message(*err);
        if (m && (strstr(m, "SSL") || strstr(m, "certificate")))
            h->error_set_hint(*err, "the API server's certificate is not signed by the cluster "
                                    "CA the driver was given (certificate-authority-data in the "
                                    "kubeconfig, or cluster_ca_certificate)");
        else
            h->error_set_hint(*err, "is the API server reachable? (the server comes from the "
                                    "driver's kubeconfig, context or host option)");
    }
    free(url);
    free(auth);
    free(agent);
    return rc;
}

/* The error an API server's non-2xx answer means. `what` names the call ("applying
 * ConfigMap default/x"). Kubernetes answers a Status object: {"reason", "message", "code"}.
 * Returns a new error (caller owns). */
static mle_error *k8s_status_error(const mle_host *h, const mle_http_response *resp,
                                   const char *what)
{
    mle_error *pe = NULL;
    mle_value *st = resp->body_len ? h->v_parse_json(h, resp->body, resp->body_len, &pe) : NULL;
    if (pe)
        h->error_free(pe);
    const char *reason = st ? vstr_ne(h, st, "reason") : NULL;
    const char *message = st ? vstr_ne(h, st, "message") : NULL;
    char snippet[200];
    if (!message) {
        snprintf(snippet, sizeof snippet, "%.*s", (int)(resp->body_len < 160 ? resp->body_len : 160),
                 resp->body ? resp->body : "");
        message = snippet;
    }
    mle_error_code code;
    long s = resp->status;
    if (s == 400 || s == 422 || s == 415 || s == 405)
        code = MLE_E_INVALID;
    else if (s == 401)
        code = MLE_E_AUTH;
    else if (s == 403)
        code = MLE_E_PERMISSION;
    else if (s == 404 || s == 410)
        code = MLE_E_NOT_FOUND;
    else if (s == 409)
        code = MLE_E_CONFLICT;
    else if (s == 429)
        code = MLE_E_THROTTLED;
    else if (s == 500 && strstr(message, "failed to create typed patch object"))
        code = MLE_E_INVALID; /* server-side apply answers a manifest its schema refuses with
                                 a 500; retrying cannot help */
    else if (s >= 500 || s == 408)
        code = MLE_E_TRANSIENT;
    else
        code = MLE_E_PROVIDER;
    /* The server's message goes in the text; the provider part adds reason and status. */
    mle_error *e = kerr(h, code, "%s: %s", what, message);
    h->error_set_provider(e, s, reason, NULL);
    if (s == 429 || s == 503) {
        const char *ra = h->http_header(resp, "retry-after");
        long secs = ra ? strtol(ra, NULL, 10) : 1;
        h->error_set_retry_after(e, (uint32_t)(secs > 0 && secs < 600 ? secs : 1) * 1000u);
    }
    if (s == 401)
        h->error_set_hint(e, "the API server rejected the credentials (token or client "
                             "certificate) of the driver's connection");
    else if (s == 403)
        h->error_set_hint(e, "the identity of the driver's connection lacks RBAC "
                             "permission for this");
    else if (s == 409 && reason && strcmp(reason, "Conflict") == 0 && strstr(message, "conflict"))
        h->error_set_hint(e, "another field manager owns these fields (changed with kubectl?): "
                             "set force_conflicts = true to take them back, or stop declaring "
                             "them");
    h->v_decref(st);
    return e;
}

/* ==== fields (was k8s_fields.c) ==== */
/* Is this an empty object or array? (A stack's `{}` that the server drops.) */
static int v_is_empty_container(const mle_host *h, const mle_value *v)
{
    mle_value_kind k = h->v_kind(v);
    return (k == MLE_V_OBJECT || k == MLE_V_ARRAY) && h->v_len(v) == 0;
}

/* True when every element of the array is an object with a string "name": Kubernetes lists
 * of that shape (containers, env, ports, volumes) merge by name, so elements are matched by
 * name, not by position. */
static int list_keyed_by_name(const mle_host *h, const mle_value *arr)
{
    size_t n = h->v_len(arr);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const mle_value *e = h->v_at(arr, i);
        if (h->v_kind(e) != MLE_V_OBJECT || !vstr(h, e, "name"))
            return 0;
    }
    return 1;
}

static int list_all_objects(const mle_host *h, const mle_value *arr)
{
    for (size_t i = 0; i < h->v_len(arr); i++)
        if (h->v_kind(h->v_at(arr, i)) != MLE_V_OBJECT)
            return 0;
    return 1;
}

/* The live value cut to the shape of `want` (what the stack declares). A key the stack sets
 * but the live object lacks is left out, so the difference shows; a stack's empty map or list
 * that the server dropped counts as present. Returns a new value (caller owns). */
static mle_value *shape_project(const mle_host *h, const mle_value *live, const mle_value *want)
{
    mle_value_kind wk = h->v_kind(want), lk = h->v_kind(live);
    if (wk == MLE_V_OBJECT && lk == MLE_V_OBJECT) {
        mle_value *out = h->v_object();
        void *it = NULL;
        mle_value *wv;
        for (const char *key; (key = h->v_next(want, &it, &wv)) != NULL;) {
            const mle_value *lv = h->v_get(live, key);
            if (lv && h->v_kind(lv) != MLE_V_NULL)
                h->v_set(out, key, shape_project(h, lv, wv));
            else if (v_is_empty_container(h, wv) || h->v_kind(wv) == MLE_V_NULL)
                h->v_set(out, key, h->v_deep_copy(wv));
        }
        return out;
    }
    if (wk == MLE_V_ARRAY && lk == MLE_V_ARRAY) {
        mle_value *out = h->v_array();
        size_t nw = h->v_len(want), nl = h->v_len(live);
        if (list_keyed_by_name(h, want) && list_all_objects(h, live)) {
            for (size_t i = 0; i < nw; i++) {
                const mle_value *w = h->v_at(want, i);
                const char *name = vstr(h, w, "name");
                for (size_t j = 0; j < nl; j++) {
                    const mle_value *l = h->v_at(live, j);
                    const char *ln = vstr(h, l, "name");
                    if (ln && strcmp(ln, name) == 0) {
                        h->v_append(out, shape_project(h, l, w));
                        break;
                    }
                }
            }
            return out;
        }
        if (list_all_objects(h, want) && list_all_objects(h, live)) {
            /* Positional: elements past the stack's own count belong to someone else. */
            for (size_t i = 0; i < nw && i < nl; i++)
                h->v_append(out, shape_project(h, h->v_at(live, i), h->v_at(want, i)));
            return out;
        }
        h->v_decref(out);
    }
    /* Scalars, lists of scalars (atomic in Kubernetes) and type changes: the live value. */
    return h->v_deep_copy(live);
}

/* The fieldsV1 trie of the `mlengine` Apply manager, or NULL (borrowed from obj). */
static const mle_value *mlengine_fieldset(const mle_host *h, const mle_value *obj)
{
    const mle_value *mf = vpath(h, obj, "metadata", "managedFields");
    if (!mf || h->v_kind(mf) != MLE_V_ARRAY)
        return NULL;
    for (size_t i = 0; i < h->v_len(mf); i++) {
        const mle_value *e = h->v_at(mf, i);
        const char *mgr = vstr(h, e, "manager"), *op = vstr(h, e, "operation");
        if (mgr && op && strcmp(mgr, K8S_FIELD_MANAGER) == 0 && strcmp(op, "Apply") == 0 &&
            !vstr_ne(h, e, "subresource")) {
            const mle_value *fs = vget(h, e, "fieldsV1");
            return fs && h->v_kind(fs) == MLE_V_OBJECT ? fs : NULL;
        }
    }
    return NULL;
}

/* Does live list element `elem` match the fieldsV1 list key `key` ("k:{json}", "v:json",
 * "i:N") at position `index`? */
static int fs_elem_matches(const mle_host *h, const char *key, const mle_value *elem,
                           size_t index)
{
    if (strncmp(key, "i:", 2) == 0)
        return strtoull(key + 2, NULL, 10) == index;
    if (strncmp(key, "k:", 2) != 0 && strncmp(key, "v:", 2) != 0)
        return 0;
    mle_error *e = NULL;
    mle_value *want = h->v_parse_json(h, key + 2, strlen(key + 2), &e);
    if (!want) {
        h->error_free(e);
        return 0;
    }
    int ok;
    if (key[0] == 'v') {
        ok = h->v_equal(want, elem);
    } else {
        ok = h->v_kind(want) == MLE_V_OBJECT && h->v_kind(elem) == MLE_V_OBJECT;
        void *it = NULL;
        mle_value *kv;
        for (const char *k; ok && (k = h->v_next(want, &it, &kv)) != NULL;) {
            const mle_value *ev = h->v_get(elem, k);
            ok = ev && h->v_equal(ev, kv);
        }
    }
    h->v_decref(want);
    return ok;
}

/* The parts of `live` that the fieldsV1 trie `fs` names. A trie node with no children is a
 * leaf: the whole value. Returns a new value (caller owns). */
static mle_value *fs_project(const mle_host *h, const mle_value *live, const mle_value *fs)
{
    int has_children = 0;
    void *it = NULL;
    mle_value *sub;
    for (const char *k; (k = h->v_next(fs, &it, &sub)) != NULL;)
        if (strcmp(k, ".") != 0)
            has_children = 1;
    mle_value_kind lk = h->v_kind(live);
    if (!has_children) {
        /* "." alone marks a map or list the manager owns with no member of its own. */
        if (h->v_len(fs) > 0 && lk == MLE_V_OBJECT)
            return h->v_object();
        if (h->v_len(fs) > 0 && lk == MLE_V_ARRAY)
            return h->v_array();
        return h->v_deep_copy(live);
    }
    if (lk == MLE_V_OBJECT) {
        mle_value *out = h->v_object();
        it = NULL;
        for (const char *k; (k = h->v_next(fs, &it, &sub)) != NULL;) {
            if (strncmp(k, "f:", 2) != 0)
                continue;
            const mle_value *lv = h->v_get(live, k + 2);
            if (lv)
                h->v_set(out, k + 2, fs_project(h, lv, sub));
        }
        return out;
    }
    if (lk == MLE_V_ARRAY) {
        mle_value *out = h->v_array();
        for (size_t i = 0; i < h->v_len(live); i++) {
            const mle_value *el = h->v_at(live, i);
            it = NULL;
            for (const char *k; (k = h->v_next(fs, &it, &sub)) != NULL;) {
                if (strcmp(k, ".") != 0 && fs_elem_matches(h, k, el, i)) {
                    h->v_append(out, fs_project(h, el, sub));
                    break;
                }
            }
        }
        return out;
    }
    return h->v_deep_copy(live);
}

/* The fields of `obj` that mlengine's field manager owns, as an object (possibly empty).
 * Caller owns the result. */
static mle_value *owned_fields(const mle_host *h, const mle_value *obj)
{
    const mle_value *fs = mlengine_fieldset(h, obj);
    return fs ? fs_project(h, obj, fs) : h->v_object();
}

/* A live object as a manifest: without status and the metadata the server writes.
 * Caller owns the result. */
static mle_value *clean_object(const mle_host *h, const mle_value *obj)
{
    mle_value *out = h->v_deep_copy(obj);
    h->v_del(out, "status");
    mle_value *md = h->v_get(out, "metadata");
    if (md && h->v_kind(md) == MLE_V_OBJECT) {
        static const char *const server_owned[] = {"managedFields", "uid", "resourceVersion",
                                                   "creationTimestamp", "generation",
                                                   "selfLink", NULL};
        for (const char *const *k = server_owned; *k; k++)
            h->v_del(md, *k);
    }
    return out;
}

/* Does the value hold one of the engine's unresolved markers ($ref, $expr)? Such a config
 * (possible when a poll resumes after a crash) must not be stored as the applied manifest. */
static int has_markers(const mle_host *h, const mle_value *v)
{
    mle_value_kind k = h->v_kind(v);
    if (k == MLE_V_ARRAY) {
        for (size_t i = 0; i < h->v_len(v); i++)
            if (has_markers(h, h->v_at(v, i)))
                return 1;
    } else if (k == MLE_V_OBJECT) {
        void *it = NULL;
        mle_value *sub;
        for (const char *key; (key = h->v_next(v, &it, &sub)) != NULL;) {
            if (strcmp(key, "$ref") == 0 || strcmp(key, "$expr") == 0 ||
                strcmp(key, "$sensitive") == 0 || has_markers(h, sub))
                return 1;
        }
    }
    return 0;
}


/* ------------------------------------------------------------------------------------------
 * The driver context: the connection and the discovery cache.
 * ------------------------------------------------------------------------------------------ */

typedef struct k8s_kind {
    char *kind;     /* "ConfigMap" */
    char *resource; /* "configmaps" */
    int namespaced;
} k8s_kind;

/* What one group/version serves, as fetched from /api/v1 or /apis/<group>/<version>. */
typedef struct k8s_gv {
    struct k8s_gv *next;
    char *gv;
    k8s_kind *kinds;
    size_t n;
} k8s_gv;

typedef struct k8s_ctx {
    const char *driver; /* static: "kubernetes", "karpenter", ... */
    mle_value *options; /* the driver options (a copy): the connection is resolved from them
                           by the first operation that needs it (ctx_conn) */
    pthread_mutex_t conn_mu; /* guards conn_ok and the connection while it is resolved */
    int conn_ok;
    k8s_conn conn; /* read without the lock once conn_ok: it never changes after, except
                      the token provider's token, behind the provider's own mutex */
    pthread_mutex_t mu; /* guards gvs: operations run on several workers at once */
    k8s_gv *gvs;
} k8s_ctx;

static void gv_free(k8s_gv *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->kinds[i].kind);
        free(g->kinds[i].resource);
    }
    free(g->kinds);
    free(g->gv);
    free(g);
}

/* Under c->mu: 1 and the kind's resource (copied; caller frees) when cached, 0 when the group
 * version is cached without it, -1 when the group version was never fetched. */
static int gv_lookup_locked(k8s_ctx *c, const char *gv, const char *kind, char **resource,
                            int *namespaced)
{
    for (k8s_gv *g = c->gvs; g; g = g->next) {
        if (strcmp(g->gv, gv) != 0)
            continue;
        for (size_t i = 0; i < g->n; i++) {
            if (strcmp(g->kinds[i].kind, kind) == 0) {
                *resource = xstrdup(g->kinds[i].resource);
                *namespaced = g->kinds[i].namespaced;
                return 1;
            }
        }
        return 0;
    }
    return -1;
}

/* Fetch what a group version serves and put it in the cache (replacing an older answer).
 * A group version the server does not know (404) is cached as serving nothing.
 * Returns 0 or -1 with *err. */
static int gv_fetch(const mle_host *h, k8s_ctx *c, const char *gv, mle_error **err)
{
    char *path = strchr(gv, '/') ? xasprintf("/apis/%s", gv) : xasprintf("/api/%s", gv);
    mle_http_response *resp = NULL;
    int rc = k8s_send(h, &c->conn, "GET", path, NULL, NULL, &resp, err);
    free(path);
    if (rc != 0)
        return -1;
    k8s_gv *g = xmalloc(sizeof *g);
    memset(g, 0, sizeof *g);
    g->gv = xstrdup(gv);
    if (resp->status == 200) {
        mle_error *pe = NULL;
        mle_value *list = h->v_parse_json(h, resp->body, resp->body_len, &pe);
        const mle_value *res = list ? vget(h, list, "resources") : NULL;
        size_t n = res && h->v_kind(res) == MLE_V_ARRAY ? h->v_len(res) : 0;
        g->kinds = xmalloc(sizeof(k8s_kind) * (n ? n : 1));
        for (size_t i = 0; i < n; i++) {
            const mle_value *r = h->v_at(res, i);
            const char *name = vstr_ne(h, r, "name"), *kind = vstr_ne(h, r, "kind");
            /* "deployments/status" and the like are subresources, not kinds. */
            if (!name || !kind || strchr(name, '/'))
                continue;
            g->kinds[g->n].kind = xstrdup(kind);
            g->kinds[g->n].resource = xstrdup(name);
            g->kinds[g->n].namespaced = vbool(h, r, "namespaced", 0);
            g->n++;
        }
        h->v_decref(list);
        if (pe)
            h->error_free(pe);
    } else if (resp->status != 404) {
        char *what = xasprintf("discovering the kinds of %s", gv);
        *err = k8s_status_error(h, resp, what);
        free(what);
        h->http_response_free(h, resp);
        gv_free(g);
        return -1;
    }
    h->http_response_free(h, resp);
    pthread_mutex_lock(&c->mu);
    for (k8s_gv **pp = &c->gvs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->gv, gv) == 0) {
            k8s_gv *old = *pp;
            *pp = old->next;
            gv_free(old);
            break;
        }
    }
    g->next = c->gvs;
    c->gvs = g;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* Map (apiVersion, kind) to its resource name and scope: from the cache, else fetched again
 * (a CRD may have been established since). Returns 1 with *resource (caller frees), 0 when
 * the server does not serve the kind, -1 with *err. */
static int discover(const mle_host *h, k8s_ctx *c, const char *gv, const char *kind,
                    char **resource, int *namespaced, mle_error **err)
{
    pthread_mutex_lock(&c->mu);
    int found = gv_lookup_locked(c, gv, kind, resource, namespaced);
    pthread_mutex_unlock(&c->mu);
    if (found == 1)
        return 1;
    if (gv_fetch(h, c, gv, err) != 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    found = gv_lookup_locked(c, gv, kind, resource, namespaced);
    pthread_mutex_unlock(&c->mu);
    return found == 1;
}

/* ------------------------------------------------------------------------------------------
 * Object references: which object a manifest or an ID names, and its path.
 *
 * The ID is "apiVersion=<v>,kind=<k>,namespace=<ns>,name=<n>" (namespace left out for
 * cluster-scoped kinds): names and namespaces cannot hold ',' or '=', so it splits cleanly,
 * and it is what `mlengine import` takes.
 * ------------------------------------------------------------------------------------------ */

typedef struct k8s_ref {
    char *api_version, *kind, *ns, *name; /* ns NULL: none given (or cluster-scoped) */
    char *resource;                       /* after ref_resolve */
    int namespaced;
    char *path; /* "/api/v1/namespaces/default/configmaps/x", after ref_resolve */
    char *id;   /* after ref_resolve */
    char *desc; /* "ConfigMap default/x", for messages */
} k8s_ref;

static void ref_clear(k8s_ref *r)
{
    free(r->api_version);
    free(r->kind);
    free(r->ns);
    free(r->name);
    free(r->resource);
    free(r->path);
    free(r->id);
    free(r->desc);
    memset(r, 0, sizeof *r);
}

/* The object a manifest names. Returns 0 or -1 with *err. */
static int ref_from_manifest(const mle_host *h, const mle_value *m, k8s_ref *r, mle_error **err)
{
    memset(r, 0, sizeof *r);
    if (!m || h->v_kind(m) != MLE_V_OBJECT) {
        *err = kerr(h, MLE_E_INVALID, "manifest must be a table (an object decoded from YAML "
                    "or written in Lua)");
        h->error_set_attribute(*err, "manifest");
        return -1;
    }
    const char *av = vstr_ne(h, m, "apiVersion"), *kind = vstr_ne(h, m, "kind");
    const char *name = vstr_ne(h, vget(h, m, "metadata"), "name");
    const char *ns = vstr_ne(h, vget(h, m, "metadata"), "namespace");
    if (!av || !kind || !name) {
        *err = kerr(h, MLE_E_INVALID, "manifest needs apiVersion, kind and metadata.name "
                    "(missing: %s%s%s)", av ? "" : "apiVersion ", kind ? "" : "kind ",
                    name ? "" : "metadata.name");
        if (!name && vstr_ne(h, vget(h, m, "metadata"), "generateName"))
            h->error_set_hint(*err, "metadata.generateName is not supported: an object must "
                                    "have a name the stack can find again");
        h->error_set_attribute(*err, "manifest");
        return -1;
    }
    r->api_version = xstrdup(av);
    r->kind = xstrdup(kind);
    r->name = xstrdup(name);
    r->ns = ns ? xstrdup(ns) : NULL;
    return 0;
}

/* The object an ID names. Returns 0 or -1 with *err. */
static int ref_from_id(const mle_host *h, const char *id, k8s_ref *r, mle_error **err)
{
    memset(r, 0, sizeof *r);
    char *copy = xstrdup(id ? id : "");
    for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(p, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char **slot = !strcmp(p, "apiVersion") ? &r->api_version
                      : !strcmp(p, "kind")     ? &r->kind
                      : !strcmp(p, "namespace") ? &r->ns
                      : !strcmp(p, "name")     ? &r->name
                                               : NULL;
        if (slot && eq[1]) {
            free(*slot);
            *slot = xstrdup(eq + 1);
        }
    }
    free(copy);
    if (!r->api_version || !r->kind || !r->name) {
        *err = kerr(h, MLE_E_INVALID, "\"%s\" is not a kubernetes object ID", id ? id : "");
        h->error_set_hint(*err, "write it as apiVersion=v1,kind=ConfigMap,namespace=default,"
                                "name=NAME (leave namespace out for cluster-scoped kinds)");
        ref_clear(r);
        return -1;
    }
    return 0;
}

/* Discover the kind and complete the reference: scope, namespace, path, ID. Returns 1, 0
 * when the server does not serve the kind, -1 with *err. */
static int ref_resolve(const mle_host *h, k8s_ctx *c, k8s_ref *r, mle_error **err)
{
    int found = discover(h, c, r->api_version, r->kind, &r->resource, &r->namespaced, err);
    if (found <= 0)
        return found;
    if (r->namespaced && !r->ns)
        r->ns = xstrdup(c->conn.namespace);
    if (!r->namespaced && r->ns) {
        *err = kerr(h, MLE_E_INVALID, "%s %s is cluster-scoped, but the manifest gives it "
                    "metadata.namespace \"%s\"", r->kind, r->name, r->ns);
        h->error_set_attribute(*err, "manifest");
        return -1;
    }
    char *name = h->url_encode(h, r->name, 0);
    char *ns = r->ns ? h->url_encode(h, r->ns, 0) : NULL;
    const char *root = strchr(r->api_version, '/') ? "/apis/" : "/api/";
    if (ns)
        r->path = xasprintf("%s%s/namespaces/%s/%s/%s", root, r->api_version, ns, r->resource,
                            name);
    else
        r->path = xasprintf("%s%s/%s/%s", root, r->api_version, r->resource, name);
    h->free(h, name);
    h->free(h, ns);
    if (r->ns) {
        r->id = xasprintf("apiVersion=%s,kind=%s,namespace=%s,name=%s", r->api_version, r->kind,
                          r->ns, r->name);
        r->desc = xasprintf("%s %s/%s", r->kind, r->ns, r->name);
    } else {
        r->id = xasprintf("apiVersion=%s,kind=%s,name=%s", r->api_version, r->kind, r->name);
        r->desc = xasprintf("%s %s", r->kind, r->name);
    }
    return 1;
}

/* A message-friendly name before discovery ran. Caller frees. */
static char *ref_name(const k8s_ref *r)
{
    return r->ns ? xasprintf("%s %s/%s (%s)", r->kind, r->ns, r->name, r->api_version)
                 : xasprintf("%s %s (%s)", r->kind, r->name, r->api_version);
}

/* GET the object. Returns 1 with *obj (caller owns), 0 when it does not exist, -1 with
 * *err. */
static int get_object(const mle_host *h, k8s_ctx *c, const k8s_ref *r, mle_value **obj,
                      mle_error **err)
{
    mle_http_response *resp = NULL;
    if (k8s_send(h, &c->conn, "GET", r->path, NULL, NULL, &resp, err) != 0)
        return -1;
    int rc;
    if (resp->status == 404) {
        rc = 0;
    } else if (resp->status == 200) {
        *obj = h->v_parse_json(h, resp->body, resp->body_len, err);
        rc = *obj ? 1 : -1;
    } else {
        char *what = xasprintf("reading %s", r->desc);
        *err = k8s_status_error(h, resp, what);
        free(what);
        rc = -1;
    }
    h->http_response_free(h, resp);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Ownership labels.
 * ------------------------------------------------------------------------------------------ */

static int label_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

static int label_alnum(char ch)
{
    return label_char(ch) && ch != '-' && ch != '_' && ch != '.';
}

/* The address as a label value: itself when it is one (at most 63 of [A-Za-z0-9._-], alnum
 * at both ends: "k8s_manifest.ns" is), else "sha256-" + 40 hex chars of its SHA-256 (for_each
 * keys bring brackets and quotes). The full address is kept in an annotation.
 * Caller frees with free. */
static char *address_label(const mle_host *h, const char *addr)
{
    size_t n = strlen(addr);
    int ok = n > 0 && n <= 63 && label_alnum(addr[0]) && label_alnum(addr[n - 1]);
    for (size_t i = 0; ok && i < n; i++)
        ok = label_char(addr[i]);
    if (ok)
        return xstrdup(addr);
    uint8_t d[32];
    h->sha256(addr, n, d);
    char *hex = h->hex(h, d, 20);
    char *out = xasprintf("sha256-%s", hex);
    h->free(h, hex);
    return out;
}

/* Does the live object carry this stack's ownership labels for this address? */
static int owned_by_us(const mle_host *h, const mle_value *obj, const mle_op *op)
{
    const mle_value *labels = vpath(h, obj, "metadata", "labels");
    const char *stack = vstr(h, labels, K8S_LABEL_STACK);
    const char *addr = vstr(h, labels, K8S_LABEL_ADDRESS);
    if (!stack || !addr || !op->lineage || !op->address || strcmp(stack, op->lineage) != 0)
        return 0;
    char *want = address_label(h, op->address);
    int ok = strcmp(addr, want) == 0;
    free(want);
    return ok;
}

/* The body to apply: the manifest plus the ownership labels and annotation, and the
 * namespace discovery settled. Caller owns the result. */
static mle_value *apply_body(const mle_host *h, const mle_op *op, const mle_value *manifest,
                             const k8s_ref *r, mle_error **err)
{
    mle_value *body = h->v_deep_copy(manifest);
    mle_value *md = v_child_object(h, body, "metadata");
    mle_value *labels = md ? v_child_object(h, md, "labels") : NULL;
    mle_value *ann = md ? v_child_object(h, md, "annotations") : NULL;
    if (!labels || !ann) {
        *err = kerr(h, MLE_E_INVALID, "manifest of %s: metadata, metadata.labels and "
                    "metadata.annotations must be tables", r->desc);
        h->error_set_attribute(*err, "manifest");
        h->v_decref(body);
        return NULL;
    }
    if (r->ns && !vget(h, md, "namespace"))
        h->v_set(md, "namespace", h->v_string(r->ns));
    char *addr = address_label(h, op->address);
    h->v_set(labels, K8S_LABEL_STACK, h->v_string(op->lineage));
    h->v_set(labels, K8S_LABEL_ADDRESS, h->v_string(addr));
    h->v_set(ann, K8S_ANNOTATION_ADDRESS, h->v_string(op->address));
    free(addr);
    return body;
}

/* ------------------------------------------------------------------------------------------
 * Settings and attributes.
 * ------------------------------------------------------------------------------------------ */

typedef struct k8s_settings {
    int force;
    const char *wait;        /* "", "established", "active", "available" (borrowed) */
    const char *propagation; /* "Background", "Foreground", "Orphan" (borrowed) */
    int64_t wait_timeout_s;
} k8s_settings;

/* The settings from `src` (the config, or the state on delete). Returns 0 or -1 with *err. */
static int settings_read(const mle_host *h, const mle_value *src, k8s_settings *s,
                         mle_error **err)
{
    s->force = vbool(h, src, "force_conflicts", 0);
    s->wait = vstr(h, src, "wait");
    if (!s->wait)
        s->wait = "";
    if (strncmp(s->wait, K8S_WAIT_TIMED_OUT, strlen(K8S_WAIT_TIMED_OUT)) == 0)
        s->wait += strlen(K8S_WAIT_TIMED_OUT); /* state after a timed-out wait (k8s_poll) */
    s->propagation = vstr_ne(h, src, "delete_propagation");
    if (!s->propagation)
        s->propagation = "Background";
    s->wait_timeout_s = vint(h, src, "wait_timeout", 600);
    if (*s->wait && strcmp(s->wait, "established") && strcmp(s->wait, "active") &&
        strcmp(s->wait, "available")) {
        *err = kerr(h, MLE_E_INVALID, "wait = \"%s\": expected \"\", \"established\" (a CRD), "
                    "\"active\" (a Namespace) or \"available\" (a Deployment)", s->wait);
        h->error_set_attribute(*err, "wait");
        return -1;
    }
    if (strcmp(s->propagation, "Background") && strcmp(s->propagation, "Foreground") &&
        strcmp(s->propagation, "Orphan")) {
        *err = kerr(h, MLE_E_INVALID, "delete_propagation = \"%s\": expected \"Background\", "
                    "\"Foreground\" or \"Orphan\"", s->propagation);
        h->error_set_attribute(*err, "delete_propagation");
        return -1;
    }
    if (s->wait_timeout_s <= 0)
        s->wait_timeout_s = 600;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Waits.
 * ------------------------------------------------------------------------------------------ */

/* status.conditions[type] (borrowed), or NULL. */
static const mle_value *condition(const mle_host *h, const mle_value *obj, const char *type)
{
    const mle_value *conds = vpath(h, obj, "status", "conditions");
    if (!conds || h->v_kind(conds) != MLE_V_ARRAY)
        return NULL;
    for (size_t i = 0; i < h->v_len(conds); i++) {
        const mle_value *c = h->v_at(conds, i);
        const char *t = vstr(h, c, "type");
        if (t && strcmp(t, type) == 0)
            return c;
    }
    return NULL;
}

static int condition_true(const mle_host *h, const mle_value *obj, const char *type)
{
    const char *s = vstr(h, condition(h, obj, type), "status");
    return s && strcmp(s, "True") == 0;
}

/* Is the wait over? 1 yes, 0 not yet (*why says what is awaited), -1 it never will be
 * (*err set). */
static int wait_done(const mle_host *h, const mle_value *obj, const char *wait, const char *desc,
                     char *why, size_t why_n, mle_error **err)
{
    if (!*wait)
        return 1;
    if (strcmp(wait, "established") == 0) {
        const mle_value *names = condition(h, obj, "NamesAccepted");
        const char *ns = vstr(h, names, "status");
        if (ns && strcmp(ns, "False") == 0) {
            *err = kerr(h, MLE_E_PROVIDER, "%s: names not accepted: %s", desc,
                        vstr(h, names, "message") ? vstr(h, names, "message") : "");
            return -1;
        }
        snprintf(why, why_n, "condition Established");
        return condition_true(h, obj, "Established");
    }
    if (strcmp(wait, "active") == 0) {
        const char *phase = vstr(h, vget(h, obj, "status"), "phase");
        snprintf(why, why_n, "status.phase Active (now %s)", phase ? phase : "unset");
        return phase && strcmp(phase, "Active") == 0;
    }
    /* available: the controller has seen this generation and reports Available. */
    int64_t gen = vint(h, vget(h, obj, "metadata"), "generation", 0);
    int64_t seen = vint(h, vget(h, obj, "status"), "observedGeneration", -1);
    const mle_value *prog = condition(h, obj, "Progressing");
    const char *reason = vstr(h, prog, "reason");
    if (reason && strcmp(reason, "ProgressDeadlineExceeded") == 0) {
        *err = kerr(h, MLE_E_PROVIDER, "%s did not become available: %s", desc,
                    vstr(h, prog, "message") ? vstr(h, prog, "message") : reason);
        return -1;
    }
    snprintf(why, why_n, "condition Available for generation %lld", (long long)gen);
    return seen >= gen && condition_true(h, obj, "Available");
}

/* Poll tokens, stored in state (small, no secrets): "<tag>|<start ms>|<deadline ms>|<extra>|<id>"
 *   w: waiting for a condition (extra: the wait);
 *   g: waiting for a deletion to finish (extra: the object's uid). */
typedef struct k8s_token {
    char tag;
    int64_t start_ms, deadline_ms;
    char *extra, *id; /* malloc'd */
} k8s_token;

static int token_parse(const char *s, k8s_token *t)
{
    memset(t, 0, sizeof *t);
    if (!s || !s[0] || s[1] != '|')
        return -1;
    t->tag = s[0];
    char *end = NULL;
    t->start_ms = strtoll(s + 2, &end, 10);
    if (!end || *end != '|')
        return -1;
    t->deadline_ms = strtoll(end + 1, &end, 10);
    if (!end || *end != '|')
        return -1;
    const char *extra = end + 1, *bar = strchr(extra, '|');
    if (!bar)
        return -1;
    t->extra = xasprintf("%.*s", (int)(bar - extra), extra);
    t->id = xstrdup(bar + 1);
    return 0;
}

static void token_clear(k8s_token *t)
{
    free(t->extra);
    free(t->id);
    memset(t, 0, sizeof *t);
}

static mle_op_status in_progress(const mle_host *h, const mle_op *op, char tag, int64_t start,
                                 int64_t deadline, const char *extra, const char *id)
{
    char *tok = xasprintf("%c|%lld|%lld|%s|%s", tag, (long long)start, (long long)deadline,
                          extra && *extra ? extra : "-", id ? id : "-");
    int64_t elapsed = h->now_unix_ms() - start;
    mle_op_status st = h->op_in_progress(h, op, tok,
                                         elapsed < K8S_POLL_FAST_FOR_MS ? K8S_POLL_FAST_MS
                                                                        : K8S_POLL_SLOW_MS);
    free(tok);
    return st;
}


/* ------------------------------------------------------------------------------------------
 * Attributes: what a resource records in state, from a type's glue.
 * ------------------------------------------------------------------------------------------ */

/* Does any of the type's own attributes in `config` hold an unresolved marker ($ref, $expr),
 * as a config resumed after a crash can? Such a config must not be applied or recorded. */
static int own_attrs_have_markers(const mle_host *h, const mle_k8s_glue *g,
                                  const mle_value *config)
{
    for (const char *const *a = g->own_attrs; *a; a++) {
        const mle_value *v = vget(h, config, *a);
        if (v && has_markers(h, v))
            return 1;
    }
    return 0;
}

/* The object the stack declares, built from `src` (a config, or the state that recorded
 * one), or NULL when src cannot give one (absent, unresolved, or refused by the type).
 * Caller owns. */
static mle_value *declared_object(const mle_host *h, const mle_k8s_glue *g, const mle_value *src)
{
    if (!src || h->v_kind(src) != MLE_V_OBJECT || own_attrs_have_markers(h, g, src))
        return NULL;
    mle_error *e = NULL;
    mle_value *m = g->build(h, src, &e);
    if (e)
        h->error_free(e);
    if (m && h->v_kind(m) != MLE_V_OBJECT) {
        h->v_decref(m);
        m = NULL;
    }
    return m;
}

/* The settings and what the server says, added to attrs. The settings are copied from
 * `settings_src` so an unchanged stack plans no change. */
static void add_common_attrs(const mle_host *h, const mle_k8s_glue *g, mle_value *a,
                             const mle_value *live, const mle_value *settings_src)
{
    h->v_set(a, "force_conflicts", h->v_bool(vbool(h, settings_src, "force_conflicts", 0)));
    if (g->has_wait) {
        const char *w = vstr(h, settings_src, "wait");
        h->v_set(a, "wait", h->v_string(w ? w : ""));
    }
    const char *p = vstr_ne(h, settings_src, "delete_propagation");
    h->v_set(a, "delete_propagation", h->v_string(p ? p : "Background"));
    h->v_set(a, "wait_timeout", h->v_int(vint(h, settings_src, "wait_timeout", 600)));
    h->v_set(a, "uid", h->v_string(vstr(h, vget(h, live, "metadata"), "uid")));
    h->v_set(a, "resource_version",
             h->v_string(vstr(h, vget(h, live, "metadata"), "resourceVersion")));
    h->v_set(a, "live", owned_fields(h, live));
}

/* The attributes after an apply of `config` answered with `live`: the type's own attributes
 * as the stack gave them (or, from a resumed poll whose config is unusable, read back from
 * the live object). Caller owns. */
static mle_value *attrs_applied(const mle_host *h, const mle_k8s_glue *g, const mle_value *live,
                                const mle_value *config, const mle_value *settings_src)
{
    mle_value *a = h->v_object();
    mle_value *declared = declared_object(h, g, config);
    if (declared) {
        for (const char *const *n = g->own_attrs; *n; n++) {
            const mle_value *v = vget(h, config, *n);
            if (v)
                h->v_set(a, *n, h->v_deep_copy(v));
        }
    } else {
        mle_value *clean = clean_object(h, live);
        g->unbuild(h, clean, a);
        h->v_decref(clean);
    }
    h->v_decref(declared);
    add_common_attrs(h, g, a, live, settings_src);
    return a;
}

/* The attributes a read reports: the live values of the fields the stack declares (the
 * object built from `want_src`), or the whole cleaned object when there is nothing to
 * compare to. Caller owns. */
static mle_value *attrs_read(const mle_host *h, const mle_k8s_glue *g, const mle_value *live,
                             const mle_value *want_src, const mle_value *alt_src,
                             const mle_value *settings_src)
{
    mle_value *a = h->v_object();
    mle_value *want = declared_object(h, g, want_src);
    if (!want)
        want = declared_object(h, g, alt_src);
    mle_value *proj = want ? shape_project(h, live, want) : clean_object(h, live);
    g->unbuild(h, proj, a);
    h->v_decref(proj);
    h->v_decref(want);
    add_common_attrs(h, g, a, live, settings_src);
    return a;
}

/* ------------------------------------------------------------------------------------------
 * The type's CRD, before its custom resource is applied.
 * ------------------------------------------------------------------------------------------ */

/* Is the type's CRD Established and its kind served? 1 yes (and *r resolved), 0 not yet
 * (*why says what is awaited), -1 with *err. */
static int crd_ready(const mle_host *h, k8s_ctx *c, const mle_k8s_glue *g, k8s_ref *r,
                     char *why, size_t why_n, mle_error **err)
{
    char *name = h->url_encode(h, g->crd, 0);
    char *path = xasprintf("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/%s", name);
    h->free(h, name);
    mle_http_response *resp = NULL;
    int rc = k8s_send(h, &c->conn, "GET", path, NULL, NULL, &resp, err);
    free(path);
    if (rc != 0)
        return -1;
    mle_value *crd = NULL;
    int ready = 0;
    if (resp->status == 404) {
        snprintf(why, why_n, "it is not installed");
    } else if (resp->status != 200) {
        char *what = xasprintf("reading CustomResourceDefinition %s", g->crd);
        *err = k8s_status_error(h, resp, what);
        free(what);
        ready = -1;
    } else if (!(crd = h->v_parse_json(h, resp->body, resp->body_len, err))) {
        ready = -1;
    } else {
        char desc[200];
        snprintf(desc, sizeof desc, "CustomResourceDefinition %s", g->crd);
        ready = wait_done(h, crd, "established", desc, why, why_n, err);
        if (ready == 0)
            snprintf(why, why_n, "it is installed but not Established yet");
    }
    h->http_response_free(h, resp);
    h->v_decref(crd);
    if (ready != 1)
        return ready;
    /* Established; discovery lags a moment behind. */
    int found = ref_resolve(h, c, r, err);
    if (found == 0)
        snprintf(why, why_n, "it is Established but the API server does not serve kind %s in "
                 "%s yet", r->kind, r->api_version);
    return found;
}

/* ------------------------------------------------------------------------------------------
 * Operations.
 * ------------------------------------------------------------------------------------------ */

static mle_op_status no_ctx(const mle_host *h, const mle_op *op)
{
    return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "%s: operation without the driver's "
                                   "context (init did not run)", op->type ? op->type : "?"));
}

/* The connection, resolved from the driver options by the first operation that needs it
 * (init does not, so render needs no cluster and no kubeconfig). 0, or -1 with *err (a new
 * error each time: every operation reports the same clear message). */
static int ctx_conn(const mle_host *h, k8s_ctx *c, mle_error **err)
{
    pthread_mutex_lock(&c->conn_mu);
    int rc = 0;
    if (!c->conn_ok) {
        conn_clear(&c->conn);
        if (conn_resolve(h, c->options, &c->conn, err) == 0) {
            c->conn_ok = 1;
            h->log(h, MLE_LOG_DEBUG, "%s: API server %s (%s)", c->driver, c->conn.server,
                   c->conn.source);
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&c->conn_mu);
    return rc;
}

/* The context of an operation with its connection ready, or NULL after answering the
 * operation's error (*st). */
static k8s_ctx *op_ctx(const mle_host *h, const mle_op *op, mle_op_status *st)
{
    k8s_ctx *c = op->ctx;
    if (!c) {
        *st = no_ctx(h, op);
        return NULL;
    }
    mle_error *err = NULL;
    if (ctx_conn(h, c, &err) != 0) {
        *st = h->op_error(h, op, err);
        return NULL;
    }
    return c;
}

/* Delete the object `id` names if it is still the one with `uid` (best effort: a missing
 * object is fine). Used when an update moves an object to another name or namespace.
 * Returns 0 or -1 with *err. */
static int delete_old(const mle_host *h, k8s_ctx *c, const char *id, const char *uid,
                      const char *propagation, mle_error **err)
{
    k8s_ref old;
    if (ref_from_id(h, id, &old, err) != 0)
        return -1;
    int rc = ref_resolve(h, c, &old, err);
    if (rc <= 0) {
        ref_clear(&old);
        return rc;
    }
    mle_value *opts = h->v_object();
    h->v_set(opts, "apiVersion", h->v_string("v1"));
    h->v_set(opts, "kind", h->v_string("DeleteOptions"));
    h->v_set(opts, "propagationPolicy", h->v_string(propagation));
    if (uid) {
        mle_value *pre = h->v_object();
        h->v_set(pre, "uid", h->v_string(uid));
        h->v_set(opts, "preconditions", pre);
    }
    char *body = h->v_to_json(h, opts);
    h->v_decref(opts);
    mle_http_response *resp = NULL;
    rc = k8s_send(h, &c->conn, "DELETE", old.path, "application/json", body, &resp, err);
    h->free(h, body);
    if (rc == 0) {
        if (resp->status >= 300 && resp->status != 404 && resp->status != 409) {
            char *what = xasprintf("deleting %s (moved away from)", old.desc);
            *err = k8s_status_error(h, resp, what);
            free(what);
            rc = -1;
        }
        h->http_response_free(h, resp);
    }
    ref_clear(&old);
    return rc;
}

/* create and update: server-side apply of the object the type builds from op->config, then
 * the wait if any. A type that names its CRD first waits (in progress, polled with tag 'c')
 * until the CRD is Established and its kind served; crd_start/crd_deadline carry that wait's
 * window across polls (0: a fresh operation). */
static mle_op_status do_apply(const mle_host *h, const mle_op *op, const mle_k8s_glue *g,
                              k8s_ctx *c, int is_update, int64_t crd_start, int64_t crd_deadline)
{
    mle_error *err = NULL;
    k8s_settings s;
    if (!op->lineage || !*op->lineage || !op->address)
        return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "%s: an apply without the stack's "
                                       "lineage or the resource's address", g->driver));
    if (settings_read(h, op->config, &s, &err) != 0)
        return h->op_error(h, op, err);
    if (own_attrs_have_markers(h, g, op->config))
        return h->op_error(h, op, kerr(h, MLE_E_INVALID, "the %s still holds unresolved "
                                       "references: run the apply again",
                                       g->has_wait ? "manifest" : "resource's configuration"));
    mle_value *manifest = g->build(h, op->config, &err);
    if (!manifest)
        return h->op_error(h, op, err);
    k8s_ref r;
    if (ref_from_manifest(h, manifest, &r, &err) != 0) {
        h->v_decref(manifest);
        return h->op_error(h, op, err);
    }
    mle_value *obj = NULL, *body = NULL;
    char *json = NULL, *path = NULL, *what = NULL;
    mle_http_response *resp = NULL;
    mle_op_status st;
    int found;
    if (g->crd) {
        char why[200] = "";
        found = crd_ready(h, c, g, &r, why, sizeof why, &err);
        if (found < 0)
            goto fail;
        if (found == 0) {
            int64_t now = h->now_unix_ms();
            int64_t start = crd_start ? crd_start : now;
            int64_t deadline = crd_start ? crd_deadline : now + s.wait_timeout_s * 1000;
            if (now <= deadline) {
                h->log(h, MLE_LOG_DEBUG, "%s: %s waits for CustomResourceDefinition %s: %s",
                       g->driver, op->address, g->crd, why);
                st = in_progress(h, op, 'c', start, deadline, g->crd, "-");
                goto out;
            }
            err = kerr(h, MLE_E_TIMEOUT, "CustomResourceDefinition %s was not established "
                       "after %lld s (%s): %s %s cannot be applied", g->crd,
                       (long long)((now - start) / 1000), why, r.kind, r.name);
            char *hint = xasprintf("install %s first (%s): make this resource depend on it "
                                   "(depends_on), or raise wait_timeout", g->crd,
                                   g->crd_source ? g->crd_source : "the add-on's Helm release");
            h->error_set_hint(err, hint);
            free(hint);
            goto fail;
        }
    } else {
        found = ref_resolve(h, c, &r, &err);
        if (found < 0)
            goto fail;
        if (found == 0) {
            /* Not served (yet): a CRD this stack or a Helm release installs may be on its
             * way (discovery lags a moment behind Established). A retryable error parks the
             * operation in the engine, holding no worker; when the retries run out the
             * create's intent is dropped, as nothing was made. */
            char *nm = ref_name(&r);
            err = kerr(h, MLE_E_NOT_FOUND, "the API server does not serve kind %s in %s, "
                       "needed for %s", r.kind, r.api_version, nm);
            free(nm);
            h->error_set_hint(err, "is its CustomResourceDefinition installed? Declare it in "
                                   "the stack with wait = \"established\" and make this "
                                   "resource depend on it (depends_on)");
            h->error_set_attribute(err, "manifest");
            h->error_set_retry_after(err, K8S_DISCOVERY_RETRY_MS);
            goto fail;
        }
    }
    int moved = is_update && op->id && strcmp(op->id, r.id) != 0;
    if (!is_update || moved) {
        /* A create never takes over what someone else made: an object that exists without
         * this stack's labels for this address is refused. (One that has them is what an
         * interrupted earlier create made: applying again is exactly right.) */
        int rc = get_object(h, c, &r, &obj, &err);
        if (rc < 0)
            goto fail;
        if (rc == 1 && !owned_by_us(h, obj, op)) {
            err = kerr(h, MLE_E_CONFLICT, "%s already exists and is not managed by this stack "
                       "(it lacks the labels %s=%s, %s)", r.desc, K8S_LABEL_STACK, op->lineage,
                       K8S_LABEL_ADDRESS);
            char *hint = xasprintf("import it (`mlengine import STACK %s %s`), delete it, or "
                                   "give the manifest another name", op->address, r.id);
            h->error_set_hint(err, hint);
            free(hint);
            goto fail;
        }
        h->v_decref(obj);
        obj = NULL;
    }
    body = apply_body(h, op, manifest, &r, &err);
    if (!body)
        goto fail;
    json = h->v_to_json(h, body);
    path = xasprintf("%s?fieldManager=%s&force=%s", r.path, K8S_FIELD_MANAGER,
                     s.force ? "true" : "false");
    if (k8s_send(h, &c->conn, "PATCH", path, "application/apply-patch+yaml", json, &resp,
                 &err) != 0)
        goto fail;
    if (resp->status < 200 || resp->status >= 300) {
        what = xasprintf("applying %s", r.desc);
        err = k8s_status_error(h, resp, what);
        goto fail;
    }
    obj = h->v_parse_json(h, resp->body, resp->body_len, &err);
    if (!obj)
        goto fail;
    if (moved && delete_old(h, c, op->id, vstr(h, op->state, "uid"), s.propagation, &err) != 0)
        goto fail;
    h->log(h, MLE_LOG_DEBUG, "%s: applied %s (%s)", g->driver, r.desc, op->address);
    char why[160];
    int done = wait_done(h, obj, s.wait, r.desc, why, sizeof why, &err);
    if (done < 0)
        goto fail;
    if (done == 0) {
        int64_t now = h->now_unix_ms();
        st = in_progress(h, op, 'w', now, now + s.wait_timeout_s * 1000, s.wait, r.id);
    } else {
        st = h->op_done(h, op, r.id, attrs_applied(h, g, obj, op->config, op->config));
    }
    goto out;
fail:
    st = h->op_error(h, op, err);
out:
    h->http_response_free(h, resp);
    h->v_decref(obj);
    h->v_decref(body);
    h->v_decref(manifest);
    h->free(h, json);
    free(path);
    free(what);
    ref_clear(&r);
    return st;
}

mle_op_status mle_k8s_create(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    return c ? do_apply(h, op, g, c, 0, 0, 0) : st;
}

mle_op_status mle_k8s_update(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    return c ? do_apply(h, op, g, c, 1, 0, 0) : st;
}

/* Resolve the object an ID names and GET it. Returns 1 with *obj, 0 when it (or its kind)
 * does not exist, -1 with *err. */
static int fetch_by_id(const mle_host *h, k8s_ctx *c, const char *id, k8s_ref *r,
                       mle_value **obj, mle_error **err)
{
    if (ref_from_id(h, id, r, err) != 0)
        return -1;
    int rc = ref_resolve(h, c, r, err);
    if (rc <= 0)
        return rc; /* a kind that is not served has no objects */
    return get_object(h, c, r, obj, err);
}

/* read and import: the live object, as the fields the stack sets (the type's attributes)
 * and the fields mlengine owns (live). */
static mle_op_status read_common(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    if (!c)
        return st;
    k8s_ref r;
    mle_value *obj = NULL;
    mle_error *err = NULL;
    int rc = fetch_by_id(h, c, op->id, &r, &obj, &err);
    if (rc <= 0) {
        ref_clear(&r);
        return rc < 0 ? h->op_error(h, op, err) : h->op_not_found(h, op);
    }
    /* Compare against what the stack last applied: the config in state on refresh, the
     * stack's config on import; nothing to compare to gives the whole (cleaned) object. The
     * settings are what state recorded (a timed-out wait stays marked so; see mle_k8s_poll);
     * import has no state and takes the stack's. */
    const mle_value *settings_src = op->state ? op->state : op->config;
    mle_value *attrs = attrs_read(h, g, obj, op->config, op->state, settings_src);
    /* resourceVersion moves with every write by anyone (a controller updating status): it is
     * reported as it was when this driver last applied or last saw its own fields change,
     * so that a refresh shows drift only where the stack's fields moved. */
    const char *old_rv = vstr_ne(h, op->state, "resource_version");
    const char *old_uid = vstr_ne(h, op->state, "uid");
    const char *new_uid = vstr_ne(h, attrs, "uid");
    int same = old_rv && old_uid && new_uid && strcmp(old_uid, new_uid) == 0 &&
               h->v_equal(vget(h, attrs, "live"), vget(h, op->state, "live"));
    for (const char *const *a = g->own_attrs; same && *a; a++) {
        const mle_value *x = vget(h, attrs, *a), *y = vget(h, op->state, *a);
        same = (!x && !y) || (x && y && h->v_equal(x, y));
    }
    if (same)
        h->v_set(attrs, "resource_version", h->v_string(old_rv));
    h->v_decref(obj);
    st = h->op_done(h, op, r.id, attrs);
    ref_clear(&r);
    return st;
}

mle_op_status mle_k8s_read(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    return read_common(h, op, g);
}

mle_op_status mle_k8s_import(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    return read_common(h, op, g);
}

/* Crash recovery: an interrupted create may have applied the object. It is adopted only if
 * it carries this stack's ownership labels for this address; anything else is not ours. */
mle_op_status mle_k8s_adopt(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    if (!c)
        return st;
    mle_value *manifest = declared_object(h, g, op->config);
    if (!manifest) /* the name is not known without the config: nothing can be found */
        return h->op_not_found(h, op);
    k8s_ref r;
    mle_error *err = NULL;
    mle_value *obj = NULL;
    if (ref_from_manifest(h, manifest, &r, &err) != 0) {
        h->v_decref(manifest);
        return h->op_error(h, op, err);
    }
    h->v_decref(manifest);
    int rc = ref_resolve(h, c, &r, &err);
    if (rc > 0)
        rc = get_object(h, c, &r, &obj, &err);
    if (rc < 0) {
        st = h->op_error(h, op, err);
    } else if (rc == 0 || !owned_by_us(h, obj, op)) {
        if (rc == 1)
            h->log(h, MLE_LOG_INFO, "%s: %s exists but without this stack's labels for %s: "
                   "not adopted", g->driver, r.desc, op->address);
        st = h->op_not_found(h, op);
    } else {
        /* Ours. The interrupted create may not have finished its wait: carry it on. */
        k8s_settings s;
        char why[160];
        int done = settings_read(h, op->config, &s, &err);
        if (done == 0)
            done = wait_done(h, obj, s.wait, r.desc, why, sizeof why, &err);
        if (done < 0) {
            st = h->op_error(h, op, err);
        } else if (done == 0) {
            int64_t now = h->now_unix_ms();
            st = in_progress(h, op, 'w', now, now + s.wait_timeout_s * 1000, s.wait, r.id);
        } else {
            st = h->op_done(h, op, r.id, attrs_applied(h, g, obj, op->config, op->config));
        }
    }
    h->v_decref(obj);
    ref_clear(&r);
    return st;
}

/* Is `obj` the object with this uid? (No uid known: assume it is.) */
static int same_uid(const mle_host *h, const mle_value *obj, const char *uid)
{
    const char *live = vstr(h, vget(h, obj, "metadata"), "uid");
    return !uid || !*uid || strcmp(uid, "-") == 0 || (live && strcmp(live, uid) == 0);
}

mle_op_status mle_k8s_delete(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    if (!c)
        return st;
    mle_error *err = NULL;
    k8s_settings s;
    if (settings_read(h, op->state, &s, &err) != 0)
        return h->op_error(h, op, err);
    k8s_ref r;
    if (ref_from_id(h, op->id, &r, &err) != 0)
        return h->op_error(h, op, err);
    int rc = ref_resolve(h, c, &r, &err);
    if (rc <= 0) {
        ref_clear(&r);
        return rc < 0 ? h->op_error(h, op, err) : h->op_not_found(h, op);
    }
    /* The uid precondition: if the name now belongs to another object (deleted and made
     * again outside mlengine), that object is not ours to delete. */
    const char *uid = vstr_ne(h, op->state, "uid");
    mle_value *opts = h->v_object();
    h->v_set(opts, "apiVersion", h->v_string("v1"));
    h->v_set(opts, "kind", h->v_string("DeleteOptions"));
    h->v_set(opts, "propagationPolicy", h->v_string(s.propagation));
    if (uid) {
        mle_value *pre = h->v_object();
        h->v_set(pre, "uid", h->v_string(uid));
        h->v_set(opts, "preconditions", pre);
    }
    char *body = h->v_to_json(h, opts);
    h->v_decref(opts);
    mle_http_response *resp = NULL;
    mle_value *obj = NULL;
    rc = k8s_send(h, &c->conn, "DELETE", r.path, "application/json", body, &resp, &err);
    h->free(h, body);
    if (rc != 0) {
        st = h->op_error(h, op, err);
    } else if (resp->status == 404) {
        st = h->op_not_found(h, op);
    } else if (resp->status == 409 && uid) {
        h->log(h, MLE_LOG_WARN, "%s: %s is no longer the object %s created (uid %s): left "
               "alone", g->driver, r.desc, op->address, uid);
        st = h->op_not_found(h, op);
    } else if (resp->status < 200 || resp->status >= 300) {
        char *what = xasprintf("deleting %s", r.desc);
        st = h->op_error(h, op, k8s_status_error(h, resp, what));
        free(what);
    } else if ((rc = get_object(h, c, &r, &obj, &err)) < 0) {
        st = h->op_error(h, op, err);
    } else if (rc == 0 || !same_uid(h, obj, uid)) {
        st = h->op_done(h, op, r.id, NULL);
    } else {
        /* Finalizers (a namespace's contents, a CRD's instances) are still running. */
        int64_t now = h->now_unix_ms();
        st = in_progress(h, op, 'g', now, now + s.wait_timeout_s * 1000, uid, r.id);
    }
    h->http_response_free(h, resp);
    h->v_decref(obj);
    ref_clear(&r);
    return st;
}

/* Continue a wait: for the type's CRD before applying (c), a condition (w) or a deletion
 * (g). */
mle_op_status mle_k8s_poll(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    mle_op_status st;
    k8s_ctx *c = op_ctx(h, op, &st);
    if (!c)
        return st;
    k8s_token t;
    if (token_parse(op->poll_token, &t) != 0) {
        token_clear(&t);
        return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "%s: unreadable poll token \"%s\"",
                                       g->driver, op->poll_token ? op->poll_token : ""));
    }
    /* The engine keeps an operation "in progress" in state after its poll failed, and every
     * later run resumes it. A wait that already timed out in an earlier run must not fail
     * that run again (the state would never move): a stale 'g' or 'c' wait starts afresh,
     * and a stale 'w' wait is recorded as done with its wait marked timed out, which the
     * next plan shows as a change, so the next apply applies and waits again. */
    int64_t now = h->now_unix_ms();
    int stale = now > t.deadline_ms + K8S_STALE_AFTER_MS;
    if (stale && (t.tag == 'g' || t.tag == 'c')) {
        int64_t span = t.deadline_ms - t.start_ms;
        t.start_ms = now;
        t.deadline_ms = now + (span > 0 ? span : 600000);
    }
    if (t.tag == 'c') {
        /* Nothing was applied yet: apply now if the CRD is ready, else keep waiting. */
        st = do_apply(h, op, g, c, op->poll_kind == MLE_OPK_UPDATE, t.start_ms, t.deadline_ms);
        token_clear(&t);
        return st;
    }
    k8s_ref r;
    mle_value *obj = NULL;
    mle_error *err = NULL;
    int rc = fetch_by_id(h, c, t.id, &r, &obj, &err);
    if (rc < 0) {
        st = h->op_error(h, op, err);
    } else if (t.tag == 'g') {
        if (rc == 0 || !same_uid(h, obj, t.extra)) {
            st = h->op_done(h, op, t.id, NULL);
        } else if (now > t.deadline_ms) {
            const mle_value *fin = vpath(h, obj, "metadata", "finalizers");
            char *fj = fin ? h->v_to_json(h, fin) : NULL;
            err = kerr(h, MLE_E_TIMEOUT, "%s was still being deleted after %lld s (finalizers: "
                       "%s)", r.desc, (long long)((now - t.start_ms) / 1000), fj ? fj : "none");
            h->error_set_hint(err, "a finalizer's controller is not running or is stuck; "
                                   "raise wait_timeout, or fix the controller and apply again");
            h->free(h, fj);
            st = h->op_error(h, op, err);
        } else {
            st = in_progress(h, op, 'g', t.start_ms, t.deadline_ms, t.extra, t.id);
        }
    } else if (t.tag == 'w') {
        char why[160] = "";
        int done = rc == 0 ? -1 : wait_done(h, obj, t.extra, r.desc, why, sizeof why, &err);
        const mle_value *settings_src = op->config ? op->config : op->state;
        if (rc == 0) {
            st = h->op_error(h, op, kerr(h, MLE_E_NOT_FOUND, "%s vanished while mlengine waited "
                                         "for it", r.desc ? r.desc : t.id));
        } else if (done < 0) {
            st = h->op_error(h, op, err);
        } else if (done == 1) {
            st = h->op_done(h, op, r.id, attrs_applied(h, g, obj, op->config, settings_src));
        } else if (stale) {
            mle_value *attrs = attrs_applied(h, g, obj, op->config, settings_src);
            char *marked = xasprintf(K8S_WAIT_TIMED_OUT "%s", t.extra);
            h->v_set(attrs, "wait", h->v_string(marked));
            free(marked);
            h->log(h, MLE_LOG_WARN, "%s: the wait for %s timed out in an earlier run; "
                   "recorded as applied, and the next apply waits again", g->driver, r.desc);
            st = h->op_done(h, op, r.id, attrs);
        } else if (now > t.deadline_ms) {
            err = kerr(h, MLE_E_TIMEOUT, "%s: gave up after %lld s waiting for %s", r.desc,
                       (long long)((now - t.start_ms) / 1000), why);
            h->error_set_hint(err, "raise wait_timeout, or check the controller that sets it "
                                   "(kubectl describe)");
            st = h->op_error(h, op, err);
        } else {
            st = in_progress(h, op, 'w', t.start_ms, t.deadline_ms, t.extra, t.id);
        }
    } else {
        st = h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "%s: unknown poll token \"%s\"",
                                     g->driver, op->poll_token));
    }
    h->v_decref(obj);
    ref_clear(&r);
    token_clear(&t);
    return st;
}

/* ------------------------------------------------------------------------------------------
 * render
 * ------------------------------------------------------------------------------------------ */

/* Kinds that are cluster-scoped, for naming a rendered file without asking the API server
 * (render does no I/O). A kind not listed is taken as namespaced. */
static int known_cluster_scoped(const char *kind)
{
    static const char *const kinds[] = {
        "Namespace", "Node", "PersistentVolume", "CustomResourceDefinition", "ClusterRole",
        "ClusterRoleBinding", "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass",
        "CSIDriver", "APIService", "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding", "ClusterPolicy", "ClusterCleanupPolicy",
        "NodePool", "EC2NodeClass", "NodeClaim", "ClusterTriggerAuthentication", NULL};
    for (const char *const *k = kinds; *k; k++)
        if (strcmp(*k, kind) == 0)
            return 1;
    return 0;
}

mle_op_status mle_k8s_render(const mle_host *h, const mle_op *op, const mle_k8s_glue *g)
{
    if (!MLE_HAS_FIELD(h, mle_host, v_to_yaml) || !h->v_to_yaml)
        return h->op_error(h, op, kerr(h, MLE_E_UNSUPPORTED, "%s: this mlengine cannot write "
                                       "YAML (ABI 1.1 v_to_yaml missing)", g->driver));
    mle_error *err = NULL;
    mle_value *manifest = g->build(h, op->config, &err);
    if (!manifest)
        return h->op_error(h, op, err);
    k8s_ref r;
    if (ref_from_manifest(h, manifest, &r, &err) != 0) {
        h->v_decref(manifest);
        return h->op_error(h, op, err);
    }
    /* The namespace a namespaced object without one would get: the connection's when it is
     * already known, else the usual default. No kubeconfig is read here. */
    k8s_ctx *c = op->ctx;
    if (!r.ns && !known_cluster_scoped(r.kind))
        r.ns = xstrdup(c && c->conn_ok && c->conn.namespace ? c->conn.namespace : "default");
    r.desc = ref_name(&r);
    /* The ownership labels as an apply would set them; render is given no lineage, so the
     * stack label reads as the engine's placeholder. */
    mle_op labelled = *op;
    if (!labelled.lineage || !*labelled.lineage)
        labelled.lineage = "(known after apply)";
    if (!labelled.address)
        labelled.address = "";
    mle_value *body = apply_body(h, &labelled, manifest, &r, &err);
    h->v_decref(manifest);
    char *yaml = body ? h->v_to_yaml(h, body, &err) : NULL;
    h->v_decref(body);
    if (!yaml) {
        ref_clear(&r);
        return h->op_error(h, op, err);
    }
    char *name = r.ns ? xasprintf("%s-%s-%s.yaml", r.kind, r.ns, r.name)
                      : xasprintf("%s-%s.yaml", r.kind, r.name);
    for (char *p = name; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
        else if (*p == '/')
            *p = '_'; /* a file name stays inside its folder */
    }
    mle_value *files = h->v_object();
    h->v_set(files, name, h->v_string(yaml));
    mle_value *attrs = h->v_object();
    h->v_set(attrs, "files", files);
    h->free(h, yaml);
    free(name);
    ref_clear(&r);
    return h->op_done(h, op, NULL, attrs);
}

/* ------------------------------------------------------------------------------------------
 * init / fini
 * ------------------------------------------------------------------------------------------ */

static void ctx_free(const mle_host *h, k8s_ctx *c)
{
    if (!c)
        return;
    for (k8s_gv *gv = c->gvs, *next; gv; gv = next) {
        next = gv->next;
        gv_free(gv);
    }
    conn_clear(&c->conn);
    h->v_decref(c->options);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->conn_mu);
    free(c);
}

int mle_k8s_init(const mle_host *h, const mle_value *options, const char *driver, void **ctx,
                 mle_error **err)
{
    (void)err;
    k8s_ctx *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->conn_mu, NULL);
    c->driver = driver;
    c->conn.driver = driver;
    c->options = options ? h->v_deep_copy(options) : h->v_object();
    *ctx = c;
    return 0;
}

void mle_k8s_fini(const mle_host *h, void *ctx)
{
    ctx_free(h, ctx);
}

/* ------------------------------------------------------------------------------------------
 * Building objects from attributes.
 * ------------------------------------------------------------------------------------------ */

const mle_value *mle_k8s_get_path(const mle_host *h, const mle_value *obj, const char *path)
{
    if (!*path)
        return obj;
    char *copy = xstrdup(path);
    const mle_value *v = obj;
    for (char *save = NULL, *k = strtok_r(copy, ".", &save); v && k;
         k = strtok_r(NULL, ".", &save))
        v = vget(h, v, k);
    free(copy);
    return v;
}

int mle_k8s_set_path(const mle_host *h, mle_value *obj, const char *path, mle_value *val)
{
    char *copy = xstrdup(path);
    char *last = strrchr(copy, '.');
    mle_value *parent = obj;
    if (last) {
        *last++ = '\0';
        for (char *save = NULL, *k = strtok_r(copy, ".", &save); parent && k;
             k = strtok_r(NULL, ".", &save))
            parent = v_child_object(h, parent, k);
    } else {
        last = copy;
    }
    int rc = parent ? h->v_set(parent, last, val) : (h->v_decref(val), -1);
    free(copy);
    return rc;
}

mle_value *mle_k8s_map_build(const mle_host *h, const mle_value *config, const char *api_version,
                             const char *kind, const mle_k8s_field *fields, size_t n)
{
    mle_value *m = h->v_object();
    h->v_set(m, "apiVersion", h->v_string(api_version));
    h->v_set(m, "kind", h->v_string(kind));
    for (size_t i = 0; i < n; i++) {
        const mle_value *v = vget(h, config, fields[i].attr);
        if (v)
            mle_k8s_set_path(h, m, fields[i].path, h->v_deep_copy(v));
    }
    return m;
}

void mle_k8s_map_unbuild(const mle_host *h, const mle_value *obj, const mle_k8s_field *fields,
                         size_t n, mle_value *attrs)
{
    for (size_t i = 0; i < n; i++) {
        const mle_value *v = mle_k8s_get_path(h, obj, fields[i].path);
        if (v && h->v_kind(v) != MLE_V_NULL)
            h->v_set(attrs, fields[i].attr, h->v_deep_copy(v));
    }
}
