/*
 * fuzz_yaml.c — YAML to JSON (mle_yaml_parse): var files, mlengine.yamldecode in stacks, and
 * provider answers fed through host->v_parse_yaml all land here.
 *
 * Checks beyond "no crash, no leak": the error convention (NULL comes with a message), the
 * result is an array of encodable values, and every document survives a round trip through
 * mle_yaml_emit: emitting it succeeds or fails with a message, and what was emitted reads back
 * as the same JSON value.
 */
#include "fuzz_common.h"
#include "yaml.h"

static void round_trip(const json_t *doc)
{
    mle_error *err = NULL;
    char *text = mle_yaml_emit(doc, &err);
    fz_check_result("mle_yaml_emit", text == NULL, err);
    mle_error_free(err);
    if (!text)
        return; /* a value nested too deep to emit: refused with a message */
    err = NULL;
    json_t *back = mle_yaml_parse(text, strlen(text), &err);
    if (!back) {
        fz_fail("mle_yaml_emit wrote YAML that mle_yaml_parse refuses (%s):\n%s",
                err && err->message ? err->message : "?", text);
    }
    if (json_array_size(back) != 1 || !json_equal((json_t *)doc, json_array_get(back, 0))) {
        char *a = json_dumps(doc, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        char *b = json_dumps(back, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        fz_fail("YAML round trip changed the value\n  before: %s\n  after:  %s"
                        "  emitted:\n%s\n", a ? a : "?", b ? b : "?", text);
    }
    json_decref(back);
    free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mle_error *err = NULL;
    json_t *docs = mle_yaml_parse((const char *)data, size, &err);
    fz_check_result("mle_yaml_parse", docs == NULL, err);
    mle_error_free(err);
    if (!docs)
        return 0;
    if (!json_is_array(docs)) {
        fz_fail("mle_yaml_parse returned something other than an array");
    }
    fz_check_dumps("mle_yaml_parse", docs);
    size_t i;
    json_t *doc;
    json_array_foreach(docs, i, doc) round_trip(doc);
    json_decref(docs);
    return 0;
}
