/* test_loader.c — loading real driver files, descriptor checks, the type registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"

static char *built(const char *name)
{
    const char *dir = getenv("MLE_BUILD_DIR");
    assert_non_null(dir);
    char *p = NULL;
    assert_true(asprintf(&p, "%s/drivers/%s/%s.so", dir, name, name) > 0);
    return p;
}

static void test_loads_sim_and_local(void **s)
{
    (void)s;
    mle_registry *reg = mle_registry_new();
    char *sim = built("sim"), *loc = built("local");
    assert_int_equal(mle_registry_load_file(reg, sim, NULL), 0);
    assert_int_equal(mle_registry_load_file(reg, loc, NULL), 0);
    /* The same driver found again later in the path is shadowed, not an error. */
    assert_int_equal(mle_registry_load_file(reg, sim, NULL), 0);
    assert_int_equal(mle_registry_count(reg), 2);
    mle_loaded_driver *d = NULL;
    const mle_resource_type *t = mle_registry_type(reg, "sim_resource", &d);
    assert_non_null(t);
    assert_string_equal(d->name, "sim");
    assert_string_equal(d->path, sim);
    assert_non_null(mle_registry_type(reg, "random_password", NULL));
    assert_null(mle_registry_type(reg, "nope", NULL));
    assert_string_equal(mle_registry_suggest(reg, "sim_resorce"), "sim_resource");
    assert_string_equal(mle_registry_suggest(reg, "random_pasword"), "random_password");
    assert_null(mle_registry_suggest(reg, "aws_eks_cluster"));
    assert_true(mle_driver_supports_cloud(d->desc, "gcp"));
    free(sim);
    free(loc);
    mle_registry_free(reg);
}

static void expect_load_error(const char *path, const char *needle)
{
    mle_registry *reg = mle_registry_new();
    mle_error *err = NULL;
    assert_int_equal(mle_registry_load_file(reg, path, &err), -1);
    assert_non_null(err);
    if (!strstr(err->message, needle))
        fail_msg("\"%s\" not in \"%s\"", needle, err->message);
    assert_non_null(strstr(err->message, path));
    mle_error_free(err);
    mle_registry_free(reg);
}

static void test_refuses_what_is_not_a_driver(void **s)
{
    (void)s;
    char tmpl[] = "/tmp/mle-loader-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage", 7), 7);
    close(fd);
    expect_load_error(tmpl, "not a loadable shared object");
    unlink(tmpl);
    /* A real shared object without the entry symbol. */
    const char *libm = "/lib/x86_64-linux-gnu/libm.so.6";
    if (access(libm, R_OK) != 0)
        libm = "/usr/lib/x86_64-linux-gnu/libm.so.6";
    expect_load_error(libm, "not an mlengine driver");
}

static void test_missing_dirs_are_fine(void **s)
{
    (void)s;
    const char *dirs[] = {"/nonexistent/mlengine"};
    mle_registry *reg = NULL;
    mle_error *err = NULL;
    /* An explicit --driver-path that does not exist is an error... */
    assert_int_equal(mle_registry_load(dirs, 1, &reg, &err), -1);
    assert_non_null(strstr(err->message, "no such directory"));
    mle_error_free(err);
    /* ... the default search path finds the built drivers. */
    assert_int_equal(mle_registry_load(NULL, 0, &reg, NULL), 0);
    assert_non_null(mle_registry_type(reg, "sim_resource", NULL));
    mle_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_sim_and_local),
        cmocka_unit_test(test_refuses_what_is_not_a_driver),
        cmocka_unit_test(test_missing_dirs_are_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
