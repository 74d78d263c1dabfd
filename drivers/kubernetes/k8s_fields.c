/*
 * k8s_fields.c — which parts of a live object mlengine compares, for drift:
 *   - shape_project: the live values of exactly the fields the stack sets (its manifest's
 *     shape), so that defaults the server adds, and fields other managers own, are no drift;
 *   - owned_fields: the fields the `mlengine` field manager owns, read from the object's
 *     managedFields (the server's own record), so that a field another manager took over
 *     (kubectl edit/patch) disappears from it;
 *   - clean_object: a live object as a manifest (for import with nothing to compare to).
 *
 * Part of the k8s.c translation unit.
 */

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
