/*
 * fuzz_vars.c — var files (--var-file FILE), read by mle_vars_parse: the same bytes as a
 * .json file (jansson) and as a .yaml file (libyaml through mle_yaml_parse).
 *
 * Checks beyond "no crash, no leak": the error convention, and that what is accepted is an
 * object (the header's promise) whose values encode.
 */
#include "fuzz_common.h"
#include "vars.h"

static void one(const char *name, const uint8_t *data, size_t size)
{
    mle_error *err = NULL;
    json_t *v = mle_vars_parse(name, (const char *)data, size, &err);
    fz_check_result(name, v == NULL, err);
    mle_error_free(err);
    if (!v)
        return;
    if (!json_is_object(v)) {
        fz_fail("mle_vars_parse(%s) accepted something that is not a map", name);
    }
    fz_check_dumps(name, v);
    json_decref(v);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one("vars.json", data, size);
    one("vars.yaml", data, size);
    return 0;
}
