/*
 * aws_ops.c — the operation plumbing every resource type shares: the context check, the
 * read/import/adopt shapes built on a type's `fetch` function, and poll tokens.
 *
 * A type's fetch reads one resource by ID and builds its attributes exactly in the shape the
 * schema declares (the same shape for create, read and import, so the core's diff of config
 * against state and of state against a refresh sees only real changes).
 *
 * Poll tokens are "<id>|<awaited>|<deadline>": the provider ID, the state awaited
 * ("available", "ACTIVE", "deleted", "exists") and a Unix-seconds deadline after which the
 * poll gives up with MLE_E_TIMEOUT. Small, free of secrets, and enough to resume after a
 * crash.
 *
 * Part of the aws.c translation unit (see aws_internal.h).
 */

/* 1 found (*attrs new reference), 0 gone, -1 error (*err). */
typedef int (*aws_fetch_fn)(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                            mle_value **attrs, mle_error **err);

static mle_op_status no_ctx(const mle_host *h, const mle_op *op) {
    return h->op_error(h, op, h->error_new(h, MLE_E_INTERNAL, "aws: operation on %s without a "
                                                              "driver context (init not run)",
                                           op->address ? op->address : "?"));
}

#define AWS_CTX(h, op)                                                                       \
    aws_ctx *c = (aws_ctx *)(op)->ctx;                                                        \
    if (!c)                                                                                   \
        return no_ctx((h), (op));

static mle_op_status op_fail(const mle_host *h, const mle_op *op, mle_error *e) {
    if (!e) /* a driver bug; say so rather than hand the core nothing */
        e = h->error_new(h, MLE_E_INTERNAL, "aws: %s failed without an error (driver bug)",
                         op->address ? op->address : "?");
    return h->op_error(h, op, e);
}

/* A failed call's error e: 1 when it says not found (e freed), else -1 with *err = e. */
static int gone_or_err(const mle_host *h, mle_error *e, mle_error **err) {
    if (h->error_code(e) == MLE_E_NOT_FOUND) {
        h->error_free(e);
        return 1;
    }
    *err = e;
    return -1;
}

/* The same for a lookup: 0 when not found (e freed), else -1 with *err = e. */
static int missing_or_err(const mle_host *h, mle_error *e, mle_error **err) {
    return gone_or_err(h, e, err) > 0 ? 0 : -1;
}

/* An operation's call failed with e: NOT_FOUND when it says so, else the error. */
static mle_op_status op_fail_or_gone(const mle_host *h, const mle_op *op, mle_error *e) {
    if (h->error_code(e) == MLE_E_NOT_FOUND) {
        h->error_free(e);
        return h->op_not_found(h, op);
    }
    return op_fail(h, op, e);
}

static mle_error *err_invalid_attr(const mle_host *h, const char *attr, const char *fmt, ...)
    MLE_PRINTF(3, 4);
static mle_error *err_invalid_attr(const mle_host *h, const char *attr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        abort();
    va_end(ap);
    mle_error *e = h->error_new(h, MLE_E_INVALID, "aws: %s: %s", attr, m);
    free(m);
    h->error_set_attribute(e, attr);
    return e;
}

/* The ID an op works on: op->id, checked. */
static const char *need_id(const mle_host *h, const mle_op *op, mle_error **err) {
    if (op->id && *op->id)
        return op->id;
    *err = h->error_new(h, MLE_E_INVALID, "aws: %s has no provider ID", op->address ? op->address : "?");
    return NULL;
}

/* read and import: the attributes, or NOT_FOUND. */
static mle_op_status generic_read(const mle_host *h, const mle_op *op, aws_fetch_fn fetch) {
    AWS_CTX(h, op);
    mle_error *e = NULL;
    const char *id = need_id(h, op, &e);
    if (!id)
        return op_fail(h, op, e);
    mle_value *attrs = NULL;
    int rc = fetch(h, c, op, id, &attrs, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    return h->op_done(h, op, id, attrs);
}

/* ------------------------------------------------------------------------------------------
 * Poll tokens and timing.
 * ------------------------------------------------------------------------------------------ */

static char *poll_token(const char *id, const char *awaited, int64_t deadline_s) {
    return xasprintf("%s|%s|%lld", id, awaited, (long long)deadline_s);
}

/* Split a token. 0, or -1 when it is not one of ours. */
static int poll_parse(const char *tok, char *id, size_t nid, char *awaited, size_t naw,
                      int64_t *deadline_s) {
    const char *a = tok ? strchr(tok, '|') : NULL;
    const char *b = a ? strchr(a + 1, '|') : NULL;
    if (!a || !b || (size_t)(a - tok) >= nid || (size_t)(b - a - 1) >= naw || a == tok)
        return -1;
    memcpy(id, tok, (size_t)(a - tok));
    id[a - tok] = '\0';
    memcpy(awaited, a + 1, (size_t)(b - a - 1));
    awaited[b - a - 1] = '\0';
    char *end = NULL;
    *deadline_s = strtoll(b + 1, &end, 10);
    return end && *end == '\0' ? 0 : -1;
}

/* When to poll again: the option poll_interval_ms, or the type's own interval. */
static uint32_t poll_after(const aws_ctx *c, uint32_t dflt_ms) { return c->poll_ms ? c->poll_ms : dflt_ms; }

/* The deadline of a long operation: now + the option operation_timeout_s or the type's. */
static int64_t deadline_in(const mle_host *h, const aws_ctx *c, int64_t dflt_s) {
    return h->now_unix_ms() / 1000 + (c->timeout_s > 0 ? c->timeout_s : dflt_s);
}

static mle_op_status in_progress(const mle_host *h, const mle_op *op, const aws_ctx *c,
                                 const char *id, const char *awaited, int64_t deadline_s,
                                 uint32_t dflt_ms) {
    char *t = poll_token(id, awaited, deadline_s);
    mle_op_status st = h->op_in_progress(h, op, t, poll_after(c, dflt_ms));
    free(t);
    return st;
}

static mle_op_status poll_timeout(const mle_host *h, const mle_op *op, const char *id,
                                  const char *awaited, const char *last) {
    mle_error *e = h->error_new(h, MLE_E_TIMEOUT, "aws: gave up waiting for %s (%s) to become "
                                                  "%s; it was last %s",
                                op->address ? op->address : "?", id, awaited,
                                last && *last ? last : "unknown");
    h->error_set_hint(e, "look at the resource in the AWS console; raise the driver option "
                         "operation_timeout_s if it is only slow");
    return op_fail(h, op, e);
}

/* A type's idempotent finishing steps after its creating call (attributes the create call
 * cannot set, associations, rules): they make the resource match op->config from whatever
 * state it is in, so running them twice is harmless. 0, or -1 with *err. */
typedef int (*aws_configure_fn)(const mle_host *h, aws_ctx *c, const mle_op *op, const char *id,
                                mle_error **err);

/* Once the creating call has succeeded, the create must not fail retryably: the core retries
 * a failed create by calling create again, which would make a second resource. So whatever
 * goes wrong after it (throttling, eventual consistency, a describe that does not see the new
 * resource yet) moves the rest into poll, which re-runs configure + fetch until they pass. */
static mle_op_status finish_later(const mle_host *h, const mle_op *op, const aws_ctx *c,
                                  const char *id, mle_error *e) {
    if (e) {
        h->log(h, MLE_LOG_INFO, "aws: %s (%s) exists; finishing it continues in the next poll: %s",
               op->address ? op->address : "?", id, h->error_message(e));
        h->error_free(e);
    }
    return in_progress(h, op, c, id, "exists", deadline_in(h, c, 1800), 1000);
}

/* After the creating call (or an update): configure (may be NULL), then DONE with the
 * attributes when the resource reads back; anything else continues in poll. */
static mle_op_status created(const mle_host *h, const mle_op *op, aws_ctx *c, const char *id,
                             aws_configure_fn configure, aws_fetch_fn fetch) {
    mle_error *e = NULL;
    if (configure && configure(h, c, op, id, &e) != 0)
        return finish_later(h, op, c, id, e);
    mle_value *attrs = NULL;
    int rc = fetch(h, c, op, id, &attrs, &e);
    if (rc < 0)
        return finish_later(h, op, c, id, e);
    if (rc == 0)
        return finish_later(h, op, c, id, NULL);
    return h->op_done(h, op, id, attrs);
}

/* The poll shared by every type for "exists" (configure + fetch) and "deleted". Here errors
 * are returned as they are: the core retries a poll, which is harmless. */
static mle_op_status generic_poll(const mle_host *h, const mle_op *op, aws_configure_fn configure,
                                  aws_fetch_fn fetch) {
    AWS_CTX(h, op);
    char id[512], aw[64];
    int64_t dl;
    if (poll_parse(op->poll_token, id, sizeof id, aw, sizeof aw, &dl) != 0)
        return op_fail(h, op, h->error_new(h, MLE_E_INTERNAL, "aws: unreadable poll token "
                                                              "\"%s\"", op->poll_token ? op->poll_token : ""));
    mle_error *e = NULL;
    int deleting = str_eq(aw, "deleted");
    if (!deleting && configure && op->config && configure(h, c, op, id, &e) != 0) {
        /* Not there yet (eventual consistency) is waited for; anything else is an error. */
        if (h->error_code(e) != MLE_E_NOT_FOUND || h->now_unix_ms() / 1000 > dl)
            return op_fail(h, op, e);
        h->error_free(e);
        return in_progress(h, op, c, id, aw, dl, 2000);
    }
    mle_value *attrs = NULL;
    int rc = fetch(h, c, op, id, &attrs, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (deleting) {
        if (rc == 0)
            return h->op_done(h, op, id, NULL);
        h->v_decref(attrs);
    } else {
        if (rc == 1)
            return h->op_done(h, op, id, attrs);
    }
    if (h->now_unix_ms() / 1000 > dl)
        return poll_timeout(h, op, id, aw, rc ? "present" : "not visible");
    return in_progress(h, op, c, id, aw, dl, 2000);
}

/* A long operation's own answer to a poll for `awaited` (its create/delete states). */
typedef mle_op_status (*aws_answer_fn)(const mle_host *h, const mle_op *op, aws_ctx *c,
                                       const char *id, const char *awaited, int64_t deadline);

/* The poll of a type with long operations: "exists" goes to generic_poll (configure is
 * NULL), any other awaited state to the type's answer. IDs longer than id_max - 1 (at most
 * 511) are not ours. */
static mle_op_status answer_poll(const mle_host *h, const mle_op *op, size_t id_max,
                                 aws_fetch_fn fetch, aws_answer_fn answer) {
    AWS_CTX(h, op);
    char id[512], aw[32];
    int64_t dl;
    if (poll_parse(op->poll_token, id, id_max < sizeof id ? id_max : sizeof id, aw, sizeof aw, &dl) != 0)
        return op_fail(h, op, h->error_new(h, MLE_E_INTERNAL, "aws: unreadable poll token \"%s\"",
                                           op->poll_token ? op->poll_token : ""));
    if (str_eq(aw, "exists"))
        return generic_poll(h, op, NULL, fetch);
    return answer(h, op, c, id, aw, dl);
}

/* A type's lookup of what a create of this op made, by caller-chosen name plus ownership
 * tags: 1 with *id (caller frees), 0 when there is nothing of ours, -1 with *err. */
typedef int (*aws_find_fn)(const mle_host *h, aws_ctx *c, const mle_op *op, char **id,
                           mle_error **err);

/* A create call failed. When it says the thing already exists (a retry of a create whose
 * answer was lost, or one that moto did not dedupe by its token) and the thing carries our
 * ownership tags, it is ours: go on with it. 1 with *id, 0 (e kept: report it), -1 with *e
 * replaced by the lookup's own error. */
static int conflict_is_ours(const mle_host *h, aws_ctx *c, const mle_op *op, aws_find_fn find,
                            char **id, mle_error **e) {
    *id = NULL;
    if (h->error_code(*e) != MLE_E_CONFLICT)
        return 0;
    mle_error *fe = NULL;
    int rc = find(h, c, op, id, &fe);
    if (rc < 0) {
        h->error_free(*e);
        *e = fe;
        return -1;
    }
    if (rc == 0)
        return 0;
    h->log(h, MLE_LOG_INFO, "aws: %s: %s already exists with our ownership tags (an earlier "
                            "attempt of this create made it); going on with it",
           op->address ? op->address : "?", *id);
    h->error_free(*e);
    *e = NULL;
    return 1;
}

/* After a creating call: its answer r (consumed; NULL when it failed with e). A failure
 * that says the thing exists and is ours (find, may be NULL) goes on with it; else the ID
 * at id_path of the answer ("<call>: no <id_label> in the answer" when missing), then
 * created() with configure and fetch. */
static mle_op_status created_from(const mle_host *h, const mle_op *op, aws_ctx *c, mle_value *r,
                                  mle_error *e, aws_find_fn find, const char *id_path,
                                  const char *call, const char *id_label,
                                  aws_configure_fn configure, aws_fetch_fn fetch) {
    char *id = NULL;
    if (!r && (!find || conflict_is_ours(h, c, op, find, &id, &e) != 1))
        return op_fail(h, op, e);
    if (r)
        id = xstrdup(vstr_ne(h, r, id_path));
    h->v_decref(r);
    if (!id)
        return op_fail(h, op, h->error_new(h, MLE_E_PROVIDER, "%s: no %s in the answer", call, id_label));
    mle_op_status st = created(h, op, c, id, configure, fetch);
    free(id);
    return st;
}

/* Adopt by a found ID (NULL: nothing found): the interrupted create is finished first (its
 * configure steps, when the type has them and the op carries the config), then DONE with the
 * attributes, or NOT_FOUND. */
static mle_op_status adopt_id(const mle_host *h, const mle_op *op, aws_ctx *c, const char *id,
                              aws_configure_fn configure, aws_fetch_fn fetch) {
    if (!id)
        return h->op_not_found(h, op);
    mle_error *e = NULL;
    if (configure && op->config && configure(h, c, op, id, &e) != 0)
        return op_fail(h, op, e);
    mle_value *attrs = NULL;
    int rc = fetch(h, c, op, id, &attrs, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    h->log(h, MLE_LOG_INFO, "aws: adopted %s (%s) left by an interrupted create",
           op->address ? op->address : "?", id);
    return h->op_done(h, op, id, attrs);
}

/* adopt through a find function. */
static mle_op_status adopt_by(const mle_host *h, const mle_op *op, aws_find_fn find,
                              aws_configure_fn configure, aws_fetch_fn fetch) {
    AWS_CTX(h, op);
    char *id = NULL;
    mle_error *e = NULL;
    int rc = find(h, c, op, &id, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    mle_op_status st = adopt_id(h, op, c, rc ? id : NULL, configure, fetch);
    free(id);
    return st;
}

/* Adopt through a find function, into the type's answer for "ACTIVE"-like awaited state
 * (a thing found mid-creation goes on in poll rather than being reported half-made).
 * what (may be NULL: no log line) names the thing in the log. */
static mle_op_status adopt_into_poll(const mle_host *h, const mle_op *op, aws_find_fn find,
                                     aws_answer_fn answer, const char *awaited, int64_t timeout_s,
                                     const char *what) {
    AWS_CTX(h, op);
    char *id = NULL;
    mle_error *e = NULL;
    int rc = find(h, c, op, &id, &e);
    if (rc < 0)
        return op_fail(h, op, e);
    if (rc == 0)
        return h->op_not_found(h, op);
    if (what)
        h->log(h, MLE_LOG_INFO, "aws: adopting %s %s left by an interrupted create", what, id);
    mle_op_status st = answer(h, op, c, id, awaited, deadline_in(h, c, timeout_s));
    free(id);
    return st;
}

/* ------------------------------------------------------------------------------------------
 * The query protocol (EC2, IAM): calls and tags shared by the types.
 * ------------------------------------------------------------------------------------------ */

/* A tag map as <list>.N.Key / <list>.N.Value (list: "Tag", "Tags.member", ...). */
static void form_tags(const mle_host *h, aws_form *f, const char *list, const mle_value *tags) {
    void *it = NULL;
    mle_value *v;
    const char *k;
    int i = 1;
    while ((k = h->v_next(tags, &it, &v))) {
        form_addf(f, k, "%s.%d.Key", list, i);
        form_addf(f, h->v_str(v), "%s.%d.Value", list, i);
        i++;
    }
}

/* One query call whose answer is not needed (Delete*, Attach*, ...). The form is freed.
 * 0 done, 1 the resource is gone (NotFound), -1 with *err. */
static int query_simple(const mle_host *h, aws_ctx *c, const mle_op *op, aws_svc svc,
                        const char *action, aws_form *f, mle_error **err) {
    mle_error *e = NULL;
    mle_value *r = aws_query(h, c, op, svc, action, f, &e);
    form_free(f);
    if (r) {
        h->v_decref(r);
        return 0;
    }
    return gone_or_err(h, e, err);
}

/* How a query service tags a resource. */
typedef struct query_tagging {
    aws_svc svc;
    const char *tag_action, *untag_action; /* "CreateTags", "DeleteTags" */
    const char *id_key;                    /* "ResourceId.1" */
    const char *tag_list;                  /* <tag_list>.N.Key/Value: "Tag" */
    const char *untag_list;                /* <untag_list>.N<untag_suffix>: "Tag" */
    const char *untag_suffix;              /* ".Key" */
} query_tagging;

/* Bring a resource's tags from state to config: the tag call for new and changed keys (and
 * the ownership tags), the untag call for removed ones. 0 or -1 with *err. */
static int query_update_tags(const mle_host *h, aws_ctx *c, const mle_op *op,
                             const query_tagging *t, const char *id, mle_error **err) {
    if (!tags_changed(h, op))
        return 0;
    mle_value *set = NULL, *del = NULL;
    tags_diff(h, op, op->state ? h->v_get(op->state, "tags") : NULL, user_tags(h, op), &set, &del);
    aws_form f = {0};
    form_add(&f, t->id_key, id);
    form_tags(h, &f, t->tag_list, set);
    mle_value *r = aws_query(h, c, op, t->svc, t->tag_action, &f, err);
    form_free(&f);
    int rc = r ? 0 : -1;
    h->v_decref(r);
    if (rc == 0 && h->v_len(del) > 0) {
        aws_form d = {0};
        form_add(&d, t->id_key, id);
        for (size_t i = 0; i < h->v_len(del); i++)
            form_addf(&d, h->v_str(h->v_at(del, i)), "%s.%zu%s", t->untag_list, i + 1, t->untag_suffix);
        r = aws_query(h, c, op, t->svc, t->untag_action, &d, err);
        form_free(&d);
        rc = r ? 0 : -1;
        h->v_decref(r);
    }
    h->v_decref(set);
    h->v_decref(del);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Lists in attributes: keep the user's order where the remote set is the same.
 * ------------------------------------------------------------------------------------------ */

/* New array: the items of `prior` that are in `remote` (in prior's order), then those of
 * `remote` that prior lacks (in remote's order). `remote` is stolen. */
static mle_value *order_like(const mle_host *h, mle_value *remote, const mle_value *prior) {
    if (!prior || h->v_kind(prior) != MLE_V_ARRAY)
        return remote;
    size_t nr = h->v_len(remote), np = h->v_len(prior);
    char *used = calloc(nr ? nr : 1, 1);
    if (!used)
        abort();
    mle_value *out = h->v_array();
    for (size_t i = 0; i < np; i++) {
        mle_value *p = h->v_at(prior, i);
        for (size_t j = 0; j < nr; j++) {
            if (!used[j] && h->v_equal(p, h->v_at(remote, j))) {
                used[j] = 1;
                h->v_append(out, h->v_deep_copy(p));
                break;
            }
        }
    }
    for (size_t j = 0; j < nr; j++)
        if (!used[j])
            h->v_append(out, h->v_deep_copy(h->v_at(remote, j)));
    free(used);
    h->v_decref(remote);
    return out;
}

/* Whether `arr` (array) holds an item equal to v. */
static int array_has(const mle_host *h, const mle_value *arr, const mle_value *v) {
    size_t n = arr && h->v_kind(arr) == MLE_V_ARRAY ? h->v_len(arr) : 0;
    for (size_t i = 0; i < n; i++)
        if (h->v_equal(h->v_at(arr, i), v))
            return 1;
    return 0;
}

/* The prior value of an attribute for ordering and document forms: config first (what the
 * user wants it to look like), then state. Borrowed or NULL. */
static const mle_value *prior_attr(const mle_host *h, const mle_op *op, const char *key) {
    return op_attr(h, op, key);
}
