/*
 * aws_creds.c — where the driver's AWS credentials come from, in the AWS SDK order:
 *   1. environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME)
 *      -> STS AssumeRoleWithWebIdentity, sent unsigned (the OIDC token is the proof);
 *   3. shared files: ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE,
 *      AWS_CONFIG_FILE), profile from the option `profile`, AWS_PROFILE, or "default":
 *      static keys, or role_arn + source_profile (or credential_source = Environment, or
 *      web_identity_token_file) -> STS AssumeRole;
 *   then one error listing what was tried.
 *
 * Resolution happens at the first request, under the context's mutex (operations run on
 * many threads); temporary credentials are resolved again, the whole chain, 5 minutes
 * before they expire. Secrets are registered with the host so logs never show them.
 *
 * The shared files are INI. No library for that format is in the project's set, so a
 * small reader lives here (ini_parse): "[section]" headers ("[profile x]" in the config
 * file), "key = value" lines, full-line comments with '#' or ';', inline comments only after
 * whitespace, and indented continuation lines (nested settings such as "s3 =" blocks) are
 * skipped, as the AWS CLI reads them.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */
#include <errno.h>

static void creds_free(aws_creds *cr) {
    if (!cr)
        return;
    free(cr->akid);
    free_secret(cr->secret);
    free_secret(cr->token);
    memset(cr, 0, sizeof *cr);
}

/* Deep copy (out is overwritten). */
static void creds_copy(aws_creds *out, const aws_creds *in) {
    out->akid = xstrdup(in->akid);
    out->secret = xstrdup(in->secret);
    out->token = xstrdup(in->token);
    out->expires_ms = in->expires_ms;
}

/* Next request resolves again (temporary credentials the service called expired). */
static void creds_invalidate(aws_ctx *c) {
    pthread_mutex_lock(&c->mu);
    c->resolved = 0;
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------------------------------
 * INI.
 * ------------------------------------------------------------------------------------------ */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Parse INI text into {section: {key: value}} (new reference). In the config file
 * (is_config) "[profile name]" is section "name" and "[default]" stays "default"; other
 * prefixed sections ("[sso-session x]", "[services x]") keep their full name so they never
 * shadow a profile. Keys are lower-cased. */
static mle_value *ini_parse(const mle_host *h, const char *text, int is_config) {
    mle_value *root = h->v_object();
    mle_value *sec = NULL;
    char *copy = xstrdup(text ? text : "");
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == ' ' || line[0] == '\t') {
            /* Continuation of a nested setting: not a profile key. */
            continue;
        }
        char *l = trim(line);
        if (!*l || *l == '#' || *l == ';')
            continue;
        if (*l == '[') {
            char *end = strchr(l, ']');
            if (!end) {
                sec = NULL;
                continue;
            }
            *end = '\0';
            char *name = trim(l + 1);
            if (is_config && strncmp(name, "profile", 7) == 0 &&
                (name[7] == ' ' || name[7] == '\t'))
                name = trim(name + 8);
            sec = h->v_get(root, name);
            if (!sec) {
                sec = h->v_object();
                h->v_set(root, name, sec);
            }
            continue;
        }
        char *eq = strchr(l, '=');
        if (!sec || !eq)
            continue;
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        /* Inline comments need whitespace before them: "a#b" is a value. */
        for (char *p = v; *p; p++) {
            if ((*p == '#' || *p == ';') && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
                *p = '\0';
                v = trim(v);
                break;
            }
        }
        for (char *p = k; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        h->v_set(sec, k, h->v_string(v));
    }
    free(copy);
    return root;
}

/* Whole file (caller frees with free()), or NULL with errno set. */
static char *read_file(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    aws_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_putn(&b, chunk, n);
        if (b.len > max) {
            fclose(f);
            buf_free(&b);
            errno = EFBIG;
            return NULL;
        }
    }
    fclose(f);
    return buf_take(&b);
}

/* The shared files, parsed. */
typedef struct aws_files {
    char *cred_path, *conf_path;
    mle_value *cred, *conf; /* {} when the file is absent */
    int cred_present, conf_present;
} aws_files;

static void files_load(const mle_host *h, aws_files *f) {
    memset(f, 0, sizeof *f);
    const char *home = getenv("HOME");
    const char *cp = getenv("AWS_SHARED_CREDENTIALS_FILE");
    const char *fp = getenv("AWS_CONFIG_FILE");
    f->cred_path = cp && *cp ? xstrdup(cp) : xasprintf("%s/.aws/credentials", home ? home : "");
    f->conf_path = fp && *fp ? xstrdup(fp) : xasprintf("%s/.aws/config", home ? home : "");
    char *t = read_file(f->cred_path, 1 << 20);
    f->cred_present = t != NULL;
    f->cred = ini_parse(h, t, 0);
    free(t);
    t = read_file(f->conf_path, 1 << 20);
    f->conf_present = t != NULL;
    f->conf = ini_parse(h, t, 1);
    free(t);
}

static void files_free(const mle_host *h, aws_files *f) {
    free(f->cred_path);
    free(f->conf_path);
    h->v_decref(f->cred);
    h->v_decref(f->conf);
    memset(f, 0, sizeof *f);
}

/* A profile's settings: the config file's, overridden by the credentials file's (the SDK
 * rule). New reference, or NULL when neither file has the profile. */
static mle_value *profile_get(const mle_host *h, const aws_files *f, const char *name) {
    mle_value *a = h->v_get(f->conf, name), *b = h->v_get(f->cred, name);
    if (!a && !b)
        return NULL;
    mle_value *p = a ? h->v_deep_copy(a) : h->v_object();
    void *it = NULL;
    mle_value *v;
    const char *k;
    while (b && (k = h->v_next(b, &it, &v)))
        h->v_set(p, k, h->v_deep_copy(v));
    return p;
}

/* The profile name in use (borrowed from the context or the environment). */
static const char *profile_name(aws_ctx *c) {
    if (c->profile && *c->profile)
        return c->profile;
    const char *p = getenv("AWS_PROFILE");
    return p && *p ? p : "default";
}

/* ------------------------------------------------------------------------------------------
 * STS.
 * ------------------------------------------------------------------------------------------ */

/* Read {AccessKeyId, SecretAccessKey, SessionToken, Expiration} from an STS result. */
static int sts_creds_from(const mle_host *h, const mle_value *res, const char *action,
                          aws_creds *out, mle_error **err) {
    mle_value *cv = vpath(h, res, "Credentials");
    const char *ak = vstr_ne(h, cv, "AccessKeyId"), *sk = vstr_ne(h, cv, "SecretAccessKey");
    const char *tk = vstr_ne(h, cv, "SessionToken");
    if (!ak || !sk || !tk) {
        *err = h->error_new(h, MLE_E_AUTH, "sts %s: the answer holds no credentials", action);
        return -1;
    }
    out->akid = xstrdup(ak);
    out->secret = xstrdup(sk);
    out->token = xstrdup(tk);
    out->expires_ms = parse_time_ms(h, vpath(h, cv, "Expiration"));
    if (out->expires_ms == 0) /* unreadable: assume the STS default lifetime */
        out->expires_ms = h->now_unix_ms() + 3600 * 1000;
    h->secret_register(h, out->secret);
    h->secret_register(h, out->token);
    return 0;
}

static char *default_session_name(const mle_host *h) {
    return xasprintf("mlengine-%lld", (long long)(h->now_unix_ms() / 1000));
}

/* STS AssumeRoleWithWebIdentity with the token in `token_file` (read afresh each time:
 * Kubernetes and CI runners rotate it). */
static int assume_web_identity(const mle_host *h, aws_ctx *c, const char *role_arn,
                               const char *token_file, const char *session, aws_creds *out,
                               mle_error **err) {
    char *tok = read_file(token_file, 64 * 1024);
    if (!tok) {
        *err = h->error_new(h, MLE_E_AUTH, "aws: cannot read the web identity token file %s: %s",
                            token_file, strerror(errno));
        return -1;
    }
    char *t = trim(tok);
    size_t tl = strlen(t);
    while (tl > 0 && (t[tl - 1] == '\n' || t[tl - 1] == '\r'))
        t[--tl] = '\0';
    h->secret_register(h, t);
    char *sess = session && *session ? xstrdup(session) : default_session_name(h);
    aws_form f = {0};
    form_add(&f, "RoleArn", role_arn);
    form_add(&f, "RoleSessionName", sess);
    form_add(&f, "WebIdentityToken", t);
    aws_buf body = {0};
    buf_printf(&body, "Action=AssumeRoleWithWebIdentity&Version=%s&%s",
               aws_services[AWS_STS].version, f.b.p);
    aws_req r = {.svc = AWS_STS,
                 .method = "POST",
                 .path = "/",
                 .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                 .body = body.p,
                 .body_len = body.len,
                 .action = "AssumeRoleWithWebIdentity",
                 .unsigned_req = 1};
    mle_http_response *resp = NULL;
    int rc = aws_send(h, c, &r, &resp, NULL, err);
    memset(body.p, 0, body.len);
    buf_free(&body);
    memset(f.b.p, 0, f.b.len);
    form_free(&f);
    free_secret(tok);
    free(sess);
    if (rc != 0)
        return -1;
    mle_value *v = parse_body(h, &r, resp, 1, err);
    h->http_response_free(h, resp);
    if (!v)
        return -1;
    rc = sts_creds_from(h, vpath(h, v, "AssumeRoleWithWebIdentityResult"),
                        "AssumeRoleWithWebIdentity", out, err);
    h->v_decref(v);
    return rc;
}

/* STS AssumeRole, signed with `source`. */
static int assume_role(const mle_host *h, aws_ctx *c, const aws_creds *source,
                       const char *role_arn, const char *session, const char *external_id,
                       const char *duration, aws_creds *out, mle_error **err) {
    char *sess = session && *session ? xstrdup(session) : default_session_name(h);
    aws_form f = {0};
    form_add(&f, "RoleArn", role_arn);
    form_add(&f, "RoleSessionName", sess);
    if (external_id && *external_id)
        form_add(&f, "ExternalId", external_id);
    if (duration && *duration)
        form_add(&f, "DurationSeconds", duration);
    aws_buf body = {0};
    buf_printf(&body, "Action=AssumeRole&Version=%s&%s", aws_services[AWS_STS].version, f.b.p);
    form_free(&f);
    free(sess);
    aws_req r = {.svc = AWS_STS,
                 .method = "POST",
                 .path = "/",
                 .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                 .body = body.p,
                 .body_len = body.len,
                 .action = "AssumeRole",
                 .creds = source};
    mle_http_response *resp = NULL;
    int rc = aws_send(h, c, &r, &resp, NULL, err);
    buf_free(&body);
    if (rc != 0)
        return -1;
    mle_value *v = parse_body(h, &r, resp, 1, err);
    h->http_response_free(h, resp);
    if (!v)
        return -1;
    rc = sts_creds_from(h, vpath(h, v, "AssumeRoleResult"), "AssumeRole", out, err);
    h->v_decref(v);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The chain.
 * ------------------------------------------------------------------------------------------ */

/* Static keys from the environment. 1 found, 0 not set. */
static int env_creds(const mle_host *h, aws_creds *out) {
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (!ak || !*ak || !sk || !*sk)
        return 0;
    const char *tk = getenv("AWS_SESSION_TOKEN");
    out->akid = xstrdup(ak);
    out->secret = xstrdup(sk);
    out->token = tk && *tk ? xstrdup(tk) : NULL;
    out->expires_ms = 0;
    h->secret_register(h, sk);
    if (out->token)
        h->secret_register(h, out->token);
    return 1;
}

/* Credentials of a profile: 1 found (out set), 0 the profile has none (why appended to
 * tried), -1 a real failure (*err). Follows source_profile chains up to 5 deep; *temp is
 * set when the result expires. */
static int profile_creds(const mle_host *h, aws_ctx *c, const aws_files *f, const char *name,
                         int depth, aws_creds *out, aws_buf *tried, mle_error **err) {
    if (depth > 5) {
        *err = h->error_new(h, MLE_E_INVALID, "aws: profile \"%s\": source_profile chain is "
                                              "longer than 5 (a loop?)", name);
        return -1;
    }
    mle_value *p = profile_get(h, f, name);
    if (!p) {
        buf_printf(tried, "profile \"%s\" not found in %s%s or %s%s", name, f->cred_path,
                   f->cred_present ? "" : " (absent)", f->conf_path,
                   f->conf_present ? "" : " (absent)");
        return 0;
    }
    int rc = 0;
    const char *role = vstr_ne(h, p, "role_arn");
    if (role) {
        aws_creds src = {0};
        const char *sp = vstr_ne(h, p, "source_profile");
        const char *cs = vstr_ne(h, p, "credential_source");
        const char *wi = vstr_ne(h, p, "web_identity_token_file");
        if (wi) {
            rc = assume_web_identity(h, c, role, wi, vstr(h, p, "role_session_name"), out, err);
            rc = rc == 0 ? 1 : -1;
            goto done;
        }
        if (sp) {
            /* A profile that names itself as source uses its own static keys. */
            if (str_eq(sp, name)) {
                const char *ak = vstr_ne(h, p, "aws_access_key_id");
                const char *sk = vstr_ne(h, p, "aws_secret_access_key");
                if (!ak || !sk) {
                    *err = h->error_new(h, MLE_E_AUTH, "aws: profile \"%s\" is its own "
                                                       "source_profile but has no keys", name);
                    rc = -1;
                    goto done;
                }
                src.akid = xstrdup(ak);
                src.secret = xstrdup(sk);
                src.token = xstrdup(vstr_ne(h, p, "aws_session_token"));
                h->secret_register(h, sk);
            } else {
                aws_buf sub = {0};
                int src_rc = profile_creds(h, c, f, sp, depth + 1, &src, &sub, err);
                if (src_rc <= 0) {
                    if (src_rc == 0)
                        *err = h->error_new(h, MLE_E_AUTH,
                                            "aws: profile \"%s\": its source_profile has no "
                                            "credentials: %s", name, sub.p ? sub.p : "");
                    buf_free(&sub);
                    rc = -1;
                    goto done;
                }
                buf_free(&sub);
            }
        } else if (cs && strcasecmp(cs, "Environment") == 0) {
            if (!env_creds(h, &src)) {
                *err = h->error_new(h, MLE_E_AUTH, "aws: profile \"%s\" has credential_source "
                                                   "= Environment but AWS_ACCESS_KEY_ID/"
                                                   "AWS_SECRET_ACCESS_KEY are not set", name);
                rc = -1;
                goto done;
            }
        } else {
            *err = h->error_new(h, MLE_E_AUTH, "aws: profile \"%s\" has role_arn but neither "
                                               "source_profile, credential_source = Environment "
                                               "nor web_identity_token_file", name);
            if (cs)
                h->error_set_hint(*err, "credential_source Ec2InstanceMetadata and "
                                        "EcsContainer are not supported by this driver");
            rc = -1;
            goto done;
        }
        rc = assume_role(h, c, &src, role, vstr(h, p, "role_session_name"),
                         vstr(h, p, "external_id"), vstr(h, p, "duration_seconds"), out, err);
        rc = rc == 0 ? 1 : -1;
        creds_free(&src);
        goto done;
    }
    const char *ak = vstr_ne(h, p, "aws_access_key_id"), *sk = vstr_ne(h, p, "aws_secret_access_key");
    if (ak && sk) {
        out->akid = xstrdup(ak);
        out->secret = xstrdup(sk);
        out->token = xstrdup(vstr_ne(h, p, "aws_session_token"));
        out->expires_ms = 0;
        h->secret_register(h, sk);
        if (out->token)
            h->secret_register(h, out->token);
        rc = 1;
    } else {
        buf_printf(tried, "profile \"%s\" has neither aws_access_key_id/aws_secret_access_key "
                          "nor role_arn", name);
        rc = 0;
    }
done:
    h->v_decref(p);
    return rc;
}

/* Run the chain. 0 with c->creds/src set, or -1 with *err. Called with c->mu held. */
static int creds_resolve(const mle_host *h, aws_ctx *c, mle_error **err) {
    aws_creds cr = {0};
    aws_buf tried = {0};
    free(c->src_desc);
    c->src_desc = NULL;

    if (env_creds(h, &cr)) {
        c->src = AWS_CS_ENV;
        c->src_desc = xstrdup("environment (AWS_ACCESS_KEY_ID)");
        goto found;
    }
    buf_puts(&tried, "environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set; ");

    const char *tf = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *ra = getenv("AWS_ROLE_ARN");
    if (tf && *tf && ra && *ra) {
        if (assume_web_identity(h, c, ra, tf, getenv("AWS_ROLE_SESSION_NAME"), &cr, err) != 0) {
            buf_free(&tried);
            return -1;
        }
        c->src = AWS_CS_WEB_IDENTITY;
        c->src_desc = xasprintf("web identity (role %s)", ra);
        goto found;
    }
    if (tf && *tf)
        buf_puts(&tried, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE set but AWS_ROLE_ARN not; ");
    else
        buf_puts(&tried, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set; ");

    aws_files f;
    files_load(h, &f);
    const char *pn = profile_name(c);
    buf_puts(&tried, "shared files: ");
    int rc = profile_creds(h, c, &f, pn, 0, &cr, &tried, err);
    files_free(h, &f);
    if (rc < 0) {
        buf_free(&tried);
        return -1;
    }
    if (rc > 0) {
        c->src = cr.expires_ms ? AWS_CS_ASSUME_ROLE : AWS_CS_PROFILE;
        c->src_desc = xasprintf("profile \"%s\"", pn);
        goto found;
    }
    *err = h->error_new(h, MLE_E_AUTH, "aws: no credentials found; tried %s", tried.p);
    h->error_set_hint(*err, "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                            "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or set AWS_PROFILE "
                            "to a profile of ~/.aws/credentials");
    buf_free(&tried);
    return -1;

found:
    buf_free(&tried);
    creds_free(&c->creds);
    c->creds = cr;
    c->resolved = 1;
    h->log(h, MLE_LOG_INFO, "aws: credentials from %s%s", c->src_desc,
           cr.expires_ms ? " (temporary, refreshed before they expire)" : "");
    return 0;
}

/* The credentials to sign with, resolved or refreshed as needed. 0 with *out (a copy:
 * release with creds_free), or -1 with *err. Thread-safe: one thread resolves while the
 * others wait for it, so a refresh happens once, not once per worker. */
static int creds_get(const mle_host *h, aws_ctx *c, aws_creds *out, mle_error **err) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    int stale = c->resolved && c->creds.expires_ms &&
                h->now_unix_ms() >= c->creds.expires_ms - AWS_CREDS_REFRESH_MS;
    if (!c->resolved || stale) {
        if (stale)
            h->log(h, MLE_LOG_INFO, "aws: temporary credentials from %s expire soon; "
                                    "refreshing", c->src_desc ? c->src_desc : "?");
        rc = creds_resolve(h, c, err);
    }
    if (rc == 0)
        creds_copy(out, &c->creds);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
