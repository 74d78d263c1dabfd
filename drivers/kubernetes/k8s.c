/*
 * k8s.c — the `kubernetes` driver: any Kubernetes object, built-in or custom, as a
 * `k8s_manifest` resource applied with server-side apply.
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
 *   - waits (CRD Established, Namespace Active, Deployment Available) and deletions in
 *     progress are answered MLE_OP_IN_PROGRESS and polled by the engine: no worker is held and
 *     nothing sleeps.
 *   - read: the live values of the fields the stack sets (for drift), plus the fields the
 *     mlengine field manager owns according to the server's managedFields.
 *
 * The driver is one translation unit (this file includes its parts), so everything but
 * mle_driver_entry is static:
 *   k8s_conn.c    connection options, kubeconfig, HTTP, the error mapping
 *   k8s_fields.c  the projections used for drift
 * README.md beside this file is the user documentation.
 */
#include <mlengine/driver.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K8S_VERSION "0.1.0"
#define K8S_FIELD_MANAGER "mlengine"
#define K8S_LABEL_STACK "mlengine.io/stack"
#define K8S_LABEL_ADDRESS "mlengine.io/address"
#define K8S_ANNOTATION_ADDRESS "mlengine.io/address"
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

#include "k8s_conn.c"
#include "k8s_fields.c"

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
    k8s_conn conn;
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

/* The attributes of a resource whose live object is `live`. `manifest` is what to record as
 * the stack's manifest (borrowed; NULL: the live object cleaned). The settings are copied
 * from `settings_src` so an unchanged stack plans no change. Caller owns the result. */
static mle_value *make_attrs(const mle_host *h, const mle_value *live, const mle_value *manifest,
                             const mle_value *settings_src)
{
    mle_value *a = h->v_object();
    h->v_set(a, "manifest", manifest ? h->v_deep_copy(manifest) : clean_object(h, live));
    h->v_set(a, "force_conflicts", h->v_bool(vbool(h, settings_src, "force_conflicts", 0)));
    const char *w = vstr(h, settings_src, "wait");
    h->v_set(a, "wait", h->v_string(w ? w : ""));
    const char *p = vstr_ne(h, settings_src, "delete_propagation");
    h->v_set(a, "delete_propagation", h->v_string(p ? p : "Background"));
    h->v_set(a, "wait_timeout", h->v_int(vint(h, settings_src, "wait_timeout", 600)));
    h->v_set(a, "uid", h->v_string(vstr(h, vget(h, live, "metadata"), "uid")));
    h->v_set(a, "resource_version",
             h->v_string(vstr(h, vget(h, live, "metadata"), "resourceVersion")));
    h->v_set(a, "live", owned_fields(h, live));
    return a;
}

/* The manifest to record for an apply answered now: the config's, unless a resumed poll
 * brought unresolved markers (borrowed, or NULL for "the live object"). */
static const mle_value *recordable_manifest(const mle_host *h, const mle_value *config)
{
    const mle_value *m = vget(h, config, "manifest");
    return m && h->v_kind(m) == MLE_V_OBJECT && !has_markers(h, m) ? m : NULL;
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
 * Operations.
 * ------------------------------------------------------------------------------------------ */

static mle_op_status no_ctx(const mle_host *h, const mle_op *op)
{
    return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "kubernetes: operation without the "
                                   "driver's context (init did not run)"));
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

/* create and update: server-side apply of op->config.manifest, then the wait if any. */
static mle_op_status do_apply(const mle_host *h, const mle_op *op, int is_update)
{
    k8s_ctx *c = op->ctx;
    mle_error *err = NULL;
    k8s_settings s;
    const mle_value *manifest = vget(h, op->config, "manifest");
    if (!op->lineage || !*op->lineage || !op->address)
        return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "kubernetes: an apply without the "
                                       "stack's lineage or the resource's address"));
    if (settings_read(h, op->config, &s, &err) != 0)
        return h->op_error(h, op, err);
    if (manifest && has_markers(h, manifest))
        return h->op_error(h, op, kerr(h, MLE_E_INVALID, "the manifest still holds unresolved "
                                       "references: run the apply again"));
    k8s_ref r;
    if (ref_from_manifest(h, manifest, &r, &err) != 0)
        return h->op_error(h, op, err);
    mle_value *obj = NULL, *body = NULL;
    char *json = NULL, *path = NULL, *what = NULL;
    mle_http_response *resp = NULL;
    mle_op_status st;
    int found = ref_resolve(h, c, &r, &err);
    if (found < 0)
        goto fail;
    if (found == 0) {
        /* Not served (yet): a CRD this stack or a Helm release installs may be on its way
         * (discovery lags a moment behind Established). A retryable error parks the
         * operation in the engine, holding no worker; when the retries run out the create's
         * intent is dropped, as nothing was made. */
        char *nm = ref_name(&r);
        err = kerr(h, MLE_E_NOT_FOUND, "the API server does not serve kind %s in %s, needed "
                   "for %s", r.kind, r.api_version, nm);
        free(nm);
        h->error_set_hint(err, "is its CustomResourceDefinition installed? Declare it in the "
                               "stack with wait = \"established\" and make this resource "
                               "depend on it (depends_on)");
        h->error_set_attribute(err, "manifest");
        h->error_set_retry_after(err, K8S_DISCOVERY_RETRY_MS);
        goto fail;
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
    h->log(h, MLE_LOG_DEBUG, "kubernetes: applied %s (%s)", r.desc, op->address);
    char why[160];
    int done = wait_done(h, obj, s.wait, r.desc, why, sizeof why, &err);
    if (done < 0)
        goto fail;
    if (done == 0) {
        int64_t now = h->now_unix_ms();
        st = in_progress(h, op, 'w', now, now + s.wait_timeout_s * 1000, s.wait, r.id);
    } else {
        st = h->op_done(h, op, r.id, make_attrs(h, obj, manifest, op->config));
    }
    goto out;
fail:
    st = h->op_error(h, op, err);
out:
    h->http_response_free(h, resp);
    h->v_decref(obj);
    h->v_decref(body);
    h->free(h, json);
    free(path);
    free(what);
    ref_clear(&r);
    return st;
}

static mle_op_status k8s_create(const mle_host *h, const mle_op *op)
{
    return op->ctx ? do_apply(h, op, 0) : no_ctx(h, op);
}

static mle_op_status k8s_update(const mle_host *h, const mle_op *op)
{
    return op->ctx ? do_apply(h, op, 1) : no_ctx(h, op);
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

/* read and import: the live object, as the fields the stack sets (manifest) and the fields
 * mlengine owns (live). */
static mle_op_status read_common(const mle_host *h, const mle_op *op, const char *id)
{
    k8s_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    k8s_ref r;
    mle_value *obj = NULL;
    mle_error *err = NULL;
    int rc = fetch_by_id(h, c, id, &r, &obj, &err);
    if (rc <= 0) {
        ref_clear(&r);
        return rc < 0 ? h->op_error(h, op, err) : h->op_not_found(h, op);
    }
    /* Compare against what the stack last applied: the config in state on refresh, the
     * stack's config on import; nothing to compare to gives the whole (cleaned) object. */
    const mle_value *want = recordable_manifest(h, op->config);
    if (!want)
        want = recordable_manifest(h, op->state);
    mle_value *proj = want ? shape_project(h, obj, want) : NULL;
    /* The settings are what state recorded (a timed-out wait stays marked so; see
     * k8s_poll); import has no state and takes the stack's. */
    const mle_value *settings_src = op->state ? op->state : op->config;
    mle_value *attrs = make_attrs(h, obj, proj, settings_src);
    /* resourceVersion moves with every write by anyone (a controller updating status): it is
     * reported as it was when this driver last applied or last saw its own fields change,
     * so that a refresh shows drift only where the stack's fields moved. */
    const char *old_rv = vstr_ne(h, op->state, "resource_version");
    const char *old_uid = vstr_ne(h, op->state, "uid");
    const char *new_uid = vstr_ne(h, attrs, "uid");
    if (old_rv && old_uid && new_uid && strcmp(old_uid, new_uid) == 0 &&
        h->v_equal(vget(h, attrs, "manifest"), vget(h, op->state, "manifest")) &&
        h->v_equal(vget(h, attrs, "live"), vget(h, op->state, "live")))
        h->v_set(attrs, "resource_version", h->v_string(old_rv));
    h->v_decref(proj);
    h->v_decref(obj);
    mle_op_status st = h->op_done(h, op, r.id, attrs);
    ref_clear(&r);
    return st;
}

static mle_op_status k8s_read(const mle_host *h, const mle_op *op)
{
    return read_common(h, op, op->id);
}

static mle_op_status k8s_import(const mle_host *h, const mle_op *op)
{
    return read_common(h, op, op->id);
}

/* Crash recovery: an interrupted create may have applied the object. It is adopted only if
 * it carries this stack's ownership labels for this address; anything else is not ours. */
static mle_op_status k8s_adopt(const mle_host *h, const mle_op *op)
{
    k8s_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    const mle_value *manifest = recordable_manifest(h, op->config);
    if (!manifest) /* the name is not known without the manifest: nothing can be found */
        return h->op_not_found(h, op);
    k8s_ref r;
    mle_error *err = NULL;
    mle_value *obj = NULL;
    if (ref_from_manifest(h, manifest, &r, &err) != 0)
        return h->op_error(h, op, err);
    int rc = ref_resolve(h, c, &r, &err);
    if (rc > 0)
        rc = get_object(h, c, &r, &obj, &err);
    mle_op_status st;
    if (rc < 0) {
        st = h->op_error(h, op, err);
    } else if (rc == 0 || !owned_by_us(h, obj, op)) {
        if (rc == 1)
            h->log(h, MLE_LOG_INFO, "kubernetes: %s exists but without this stack's labels "
                   "for %s: not adopted", r.desc, op->address);
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
            st = h->op_done(h, op, r.id, make_attrs(h, obj, manifest, op->config));
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

static mle_op_status k8s_delete(const mle_host *h, const mle_op *op)
{
    k8s_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
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
    mle_op_status st;
    rc = k8s_send(h, &c->conn, "DELETE", r.path, "application/json", body, &resp, &err);
    h->free(h, body);
    if (rc != 0) {
        st = h->op_error(h, op, err);
    } else if (resp->status == 404) {
        st = h->op_not_found(h, op);
    } else if (resp->status == 409 && uid) {
        h->log(h, MLE_LOG_WARN, "kubernetes: %s is no longer the object %s created (uid %s): "
               "left alone", r.desc, op->address, uid);
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

/* Continue a wait: for a condition (w) or a deletion (g). */
static mle_op_status k8s_poll(const mle_host *h, const mle_op *op)
{
    k8s_ctx *c = op->ctx;
    if (!c)
        return no_ctx(h, op);
    k8s_token t;
    if (token_parse(op->poll_token, &t) != 0) {
        token_clear(&t);
        return h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "kubernetes: unreadable poll token "
                                       "\"%s\"", op->poll_token ? op->poll_token : ""));
    }
    /* The engine keeps an operation "in progress" in state after its poll failed, and every
     * later run resumes it. A wait that already timed out in an earlier run must not fail
     * that run again (the state would never move): a stale 'g' wait starts afresh,
     * and a stale 'w' wait is recorded as done with its wait marked timed out, which the
     * next plan shows as a change, so the next apply applies and waits again. */
    int64_t now = h->now_unix_ms();
    int stale = now > t.deadline_ms + K8S_STALE_AFTER_MS;
    if (stale && t.tag == 'g') {
        int64_t span = t.deadline_ms - t.start_ms;
        t.start_ms = now;
        t.deadline_ms = now + (span > 0 ? span : 600000);
    }
    k8s_ref r;
    mle_value *obj = NULL;
    mle_error *err = NULL;
    mle_op_status st;
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
        if (rc == 0) {
            st = h->op_error(h, op, kerr(h, MLE_E_NOT_FOUND, "%s vanished while mlengine waited "
                                         "for it", r.desc ? r.desc : t.id));
        } else if (done < 0) {
            st = h->op_error(h, op, err);
        } else if (done == 1) {
            const mle_value *settings_src = op->config ? op->config : op->state;
            st = h->op_done(h, op, r.id,
                            make_attrs(h, obj, recordable_manifest(h, op->config), settings_src));
        } else if (stale) {
            const mle_value *settings_src = op->config ? op->config : op->state;
            mle_value *attrs = make_attrs(h, obj, recordable_manifest(h, op->config),
                                          settings_src);
            char *marked = xasprintf(K8S_WAIT_TIMED_OUT "%s", t.extra);
            h->v_set(attrs, "wait", h->v_string(marked));
            free(marked);
            h->log(h, MLE_LOG_WARN, "kubernetes: the wait for %s timed out in an earlier run; "
                   "recorded as applied, and the next apply waits again", r.desc);
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
        st = h->op_error(h, op, kerr(h, MLE_E_INTERNAL, "kubernetes: unknown poll token \"%s\"",
                                     op->poll_token));
    }
    h->v_decref(obj);
    ref_clear(&r);
    token_clear(&t);
    return st;
}

/* ------------------------------------------------------------------------------------------
 * init / fini
 * ------------------------------------------------------------------------------------------ */

static void ctx_free(k8s_ctx *c)
{
    if (!c)
        return;
    for (k8s_gv *g = c->gvs, *next; g; g = next) {
        next = g->next;
        gv_free(g);
    }
    conn_clear(&c->conn);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int k8s_init(const mle_host *h, const mle_value *options, void **ctx, mle_error **err)
{
    k8s_ctx *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    if (conn_resolve(h, options, &c->conn, err) != 0) {
        ctx_free(c);
        return -1;
    }
    h->log(h, MLE_LOG_DEBUG, "kubernetes: API server %s (%s)", c->conn.server, c->conn.source);
    *ctx = c;
    return 0;
}

static void k8s_fini(const mle_host *h, void *ctx)
{
    (void)h;
    ctx_free(ctx);
}

/* ------------------------------------------------------------------------------------------
 * Descriptor
 * ------------------------------------------------------------------------------------------ */

static const mle_attr_schema k8s_manifest_attrs[] = {
    {"manifest", MLE_T_ANY, 0, MLE_A_REQUIRED, NULL,
     "The object: apiVersion, kind, metadata.name (and metadata.namespace for namespaced "
     "kinds; default: the context's namespace), and its fields, as a table (written in Lua or "
     "decoded with mle.yamldecode). A change is applied in place with server-side apply; a "
     "change of kind, name or namespace moves the object (the old one is deleted)."},
    {"force_conflicts", MLE_T_BOOL, 0, MLE_A_OPTIONAL, "false",
     "Apply with force=true: take over fields another field manager (kubectl, a controller) "
     "owns instead of failing with a conflict."},
    {"wait", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"\"",
     "After applying, wait until: \"established\" (a CustomResourceDefinition's Established "
     "condition), \"active\" (a Namespace's phase), \"available\" (a Deployment's Available "
     "condition for the applied generation); \"\" does not wait. Waits hold no worker."},
    {"wait_timeout", MLE_T_INT, 0, MLE_A_OPTIONAL, "600",
     "Seconds a wait, or a deletion held up by finalizers, may take before the operation "
     "fails."},
    {"delete_propagation", MLE_T_STRING, 0, MLE_A_OPTIONAL, "\"Background\"",
     "propagationPolicy of the delete: Background, Foreground or Orphan."},
    {"uid", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL, "metadata.uid of the live object."},
    {"resource_version", MLE_T_STRING, 0, MLE_A_COMPUTED, NULL,
     "metadata.resourceVersion as of the last apply, or of the last refresh that found the "
     "stack's fields changed (writes by others to other fields do not move it)."},
    {"live", MLE_T_ANY, 0, MLE_A_COMPUTED, NULL,
     "The fields of the live object that the mlengine field manager owns (from "
     "metadata.managedFields): a field someone else took over disappears from it."},
};

static const mle_resource_type k8s_manifest_type = {
    .struct_size = sizeof(mle_resource_type),
    .name = "k8s_manifest",
    .description = "Any Kubernetes object, built-in or custom, applied with server-side apply "
                   "(field manager mlengine) and labelled with the stack's ownership labels.",
    .attrs = k8s_manifest_attrs,
    .n_attrs = sizeof(k8s_manifest_attrs) / sizeof(k8s_manifest_attrs[0]),
    .flags = 0,
    .create = k8s_create,
    .read = k8s_read,
    .update = k8s_update,
    .del = k8s_delete,
    .import = k8s_import,
    .poll = k8s_poll,
    .adopt = k8s_adopt,
};

static const mle_resource_type *const k8s_types[] = {&k8s_manifest_type, NULL};

static const mle_option k8s_options[] = {
    {"kubeconfig", MLE_T_STRING, NULL,
     "Path of a kubeconfig file (default: $KUBECONFIG, a colon-separated list, else "
     "~/.kube/config).", 0},
    {"context", MLE_T_STRING, NULL, "The kubeconfig context (default: its current-context).", 0},
    {"host", MLE_T_STRING, NULL,
     "The API server URL, given directly (a cluster resource's endpoint); set, it is used "
     "instead of a kubeconfig.", 0},
    {"cluster_ca_certificate", MLE_T_STRING, NULL,
     "With host: the cluster CA, PEM or base64 of the PEM. TLS is always verified.", 0},
    {"token", MLE_T_STRING, NULL, "With host: a bearer token.", 1},
    {"namespace", MLE_T_STRING, NULL,
     "Namespace for namespaced objects whose manifest names none (default: the context's, "
     "else \"default\").", 0},
};

static const char *const k8s_clouds[] = {"any", NULL};

static const mle_driver k8s_driver = {
    .struct_size = sizeof(mle_driver),
    .abi_major = MLE_ABI_MAJOR,
    .abi_minor = MLE_ABI_MINOR,
    .name = "kubernetes",
    .version = K8S_VERSION,
    .description = "Kubernetes objects (built-in and custom) through server-side apply",
    .clouds = k8s_clouds,
    .types = k8s_types,
    .options = k8s_options,
    .n_options = sizeof(k8s_options) / sizeof(k8s_options[0]),
    .init = k8s_init,
    .fini = k8s_fini,
};

MLE_EXPORT const mle_driver *mle_driver_entry(void);
MLE_EXPORT const mle_driver *mle_driver_entry(void) { return &k8s_driver; }
