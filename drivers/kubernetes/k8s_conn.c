/*
 * k8s_conn.c — how the driver reaches the API server: the connection options, kubeconfig
 * files (read with the host's YAML parser), HTTP through the host, and the ONE place where an
 * API server's answer becomes an mle_error.
 *
 * Part of the k8s.c translation unit.
 */

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
} k8s_conn;

static void conn_clear(k8s_conn *k)
{
    free(k->server);
    free(k->ca_pem);
    free(k->token);
    free(k->cert_pem);
    free(k->key_pem);
    free(k->namespace);
    free(k->source);
    memset(k, 0, sizeof(*k));
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
        h->error_set_hint(*err, "set the kubernetes driver option `kubeconfig`, the KUBECONFIG "
                                "environment variable, or `host` + `cluster_ca_certificate` + "
                                "`token`");
        goto out;
    }
    const char *ctx_name = context && *context ? context : NULL;
    for (size_t i = 0; i < n && !ctx_name; i++)
        ctx_name = vstr_ne(h, files[i].doc, "current-context");
    if (!ctx_name) {
        *err = kerr(h, MLE_E_AUTH, "kubeconfig %s sets no current-context", paths);
        h->error_set_hint(*err, "set the kubernetes driver option `context`");
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
                        "from an exec or auth-provider plugin, which the kubernetes driver does "
                        "not run", us_from, us_name);
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
                           mle_error **err)
{
    const mle_value *v = vget(h, options, key);
    const mle_value *inner = vget(h, v, "$sensitive");
    if (inner)
        v = inner;
    if (v && (vget(h, v, "$ref") || vget(h, v, "$expr"))) {
        *err = kerr(h, MLE_E_INVALID, "kubernetes option %s refers to another resource's "
                    "attribute, which was not resolved before the driver started", key);
        h->error_set_hint(*err, "give the option a known value (a variable or a file), or "
                                "apply the resource it refers to first");
        return NULL;
    }
    const char *s = v ? h->v_str(v) : NULL;
    return s && *s ? s : NULL;
}

/* Resolve the connection from the driver options:
 *   host (+ cluster_ca_certificate, token) given directly — a cluster resource's outputs;
 *   else the kubeconfig option, else $KUBECONFIG, else ~/.kube/config (+ the context option).
 * Returns 0 or -1 with *err. */
static int conn_resolve(const mle_host *h, const mle_value *options, k8s_conn *k,
                        mle_error **err)
{
    mle_error *e = NULL;
    const char *host = opt_str(h, options, "host", &e);
    const char *context = opt_str(h, options, "context", &e);
    const char *ca = opt_str(h, options, "cluster_ca_certificate", &e);
    const char *token = opt_str(h, options, "token", &e);
    const char *kc = opt_str(h, options, "kubeconfig", &e);
    const char *ns = opt_str(h, options, "namespace", &e);
    if (e) {
        *err = e;
        return -1;
    }
    if (host) {
        k->server = strstr(host, "://") ? xstrdup(host) : xasprintf("https://%s", host);
        if (ca && !(k->ca_pem = pem_or_base64(h, ca))) {
            *err = kerr(h, MLE_E_INVALID, "kubernetes option cluster_ca_certificate is neither "
                        "a PEM certificate nor base64 of one");
            h->error_set_attribute(*err, "cluster_ca_certificate");
            return -1;
        }
        k->token = token ? xstrdup(token) : NULL;
        k->namespace = xstrdup(ns ? ns : "default");
        k->source = xasprintf("host option %s", k->server);
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
    char *auth = k->token ? xasprintf("Bearer %s", k->token) : NULL;
    mle_http_header hdrs[4];
    size_t nh = 0;
    hdrs[nh++] = (mle_http_header){"Accept", "application/json"};
    hdrs[nh++] = (mle_http_header){"User-Agent", "mlengine-kubernetes/" K8S_VERSION};
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
    h->log(h, MLE_LOG_DEBUG, "kubernetes: %s %s", method, path);
    int rc = h->http(h, &req, resp, err);
    if (rc != 0 && *err) {
        const char *m = h->error_message(*err);
        if (m && (strstr(m, "SSL") || strstr(m, "certificate")))
            h->error_set_hint(*err, "the API server's certificate is not signed by the cluster "
                                    "CA the driver was given (certificate-authority-data in the "
                                    "kubeconfig, or cluster_ca_certificate)");
        else
            h->error_set_hint(*err, "is the API server reachable? (the server comes from the "
                                    "kubernetes driver's kubeconfig, context or host option)");
    }
    free(url);
    free(auth);
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
                             "certificate) of the kubernetes driver's connection");
    else if (s == 403)
        h->error_set_hint(e, "the identity of the kubernetes driver's connection lacks RBAC "
                             "permission for this");
    else if (s == 409 && reason && strcmp(reason, "Conflict") == 0 && strstr(message, "conflict"))
        h->error_set_hint(e, "another field manager owns these fields (changed with kubectl?): "
                             "set force_conflicts = true to take them back, or stop declaring "
                             "them");
    h->v_decref(st);
    return e;
}
