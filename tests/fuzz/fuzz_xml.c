/*
 * fuzz_xml.c — XML to JSON (mle_xml_parse), the path every XML answer of a provider API (AWS
 * query and S3 APIs) takes through host->v_parse_xml.
 *
 * Checks beyond "no crash, no leak": the error convention, an encodable result, and the shape
 * the header promises (strings, objects and arrays only: no numbers, booleans or nulls).
 */
#include "fuzz_common.h"
#include "xml.h"

static void check_shape(const json_t *v, int depth)
{
    if (depth > 300) {
        fz_fail("mle_xml_parse nested deeper than its limit");
    }
    size_t i;
    const char *k;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, x) check_shape(x, depth + 1);
        return;
    case JSON_ARRAY:
        json_array_foreach(v, i, x) check_shape(x, depth + 1);
        return;
    default:
        fz_fail("mle_xml_parse made a JSON %d (only strings, objects, arrays)",
                (int)json_typeof(v));
    }
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
    json_t *v = mle_xml_parse((const char *)data, size, &err);
    fz_check_result("mle_xml_parse", v == NULL, err);
    mle_error_free(err);
    if (!v)
        return 0;
    check_shape(v, 0);
    fz_check_dumps("mle_xml_parse", v);
    json_decref(v);
    return 0;
}
