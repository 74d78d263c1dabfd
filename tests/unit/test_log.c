/*
 * test_log.c — unit tests of core/log.c: the line format, level filtering, the file copy,
 * redaction of registered secrets (overlaps, short strings, duplicates) and concurrent
 * logging from many threads without torn lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <regex.h>

#include <cmocka.h>

#include "log.h"

/* Everything written to f so far (caller frees). */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fseek(f, 0, SEEK_END);
    return s;
}

static int matches(const char *s, const char *re)
{
    regex_t r;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    int ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

static void test_line_format_and_levels(void **state)
{
    FILE *f = tmpfile();
    mle_logger *lg = mle_logger_new(f, MLE_LOG_INFO);
    assert_int_equal(mle_logger_level(lg), MLE_LOG_INFO);
    mle_log(lg, MLE_LOG_INFO, "aws", "created %s in %d s", "vpc-1", 3);
    mle_log(lg, MLE_LOG_DEBUG, "aws", "hidden at INFO");
    mle_log(lg, MLE_LOG_ERROR, NULL, "no source");
    mle_log(lg, MLE_LOG_WARN, "", "empty source");
    mle_logger_set_level(lg, MLE_LOG_DEBUG);
    mle_log(lg, MLE_LOG_DEBUG, "core", "now visible");
    mle_logger_set_level(lg, MLE_LOG_ERROR);
    mle_log(lg, MLE_LOG_WARN, "core", "hidden at ERROR");
    char *out = slurp(f);
    const char *ts = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z";
    char re[512];
    snprintf(re, sizeof re, "^%s INFO \\[aws\\] created vpc-1 in 3 s\n"
                            "%s ERROR no source\n"
                            "%s WARN empty source\n"
                            "%s DEBUG \\[core\\] now visible\n$", ts, ts, ts, ts);
    assert_true(matches(out, re));
    assert_null(strstr(out, "hidden"));
    free(out);
    mle_logger_free(lg);
    fclose(f);
}

static void test_file_copy_and_one_line_records(void **state)
{
    FILE *f = tmpfile(), *copy = tmpfile();
    mle_logger *lg = mle_logger_new(f, MLE_LOG_DEBUG);
    mle_logger_set_file(lg, copy);
    mle_log(lg, MLE_LOG_INFO, "x", "two\nlines\r\nhere");
    mle_logger_set_file(lg, NULL);
    mle_log(lg, MLE_LOG_INFO, "x", "only in the main output");
    char *a = slurp(f), *b = slurp(copy);
    assert_non_null(strstr(a, "[x] two lines  here\n"));
    assert_non_null(strstr(b, "[x] two lines  here\n"));
    assert_non_null(strstr(a, "only in the main output"));
    assert_null(strstr(b, "only in the main output"));
    free(a);
    free(b);
    mle_logger_free(lg);
    fclose(f);
    fclose(copy);
}

static void test_redaction(void **state)
{
    FILE *f = tmpfile();
    mle_logger *lg = mle_logger_new(f, MLE_LOG_DEBUG);
    char *r = mle_redact(lg, "nothing registered yet: hunter2hunter2");
    assert_string_equal(r, "nothing registered yet: hunter2hunter2");
    free(r);

    mle_logger_add_secret(lg, "hunter2hunter2");
    mle_logger_add_secret(lg, "abc"); /* too short: would mangle every line */
    mle_logger_add_secret(lg, "hunter2hunter2"); /* duplicate: harmless */
    mle_logger_add_secret(lg, NULL);
    r = mle_redact(lg, "pw=hunter2hunter2; again hunter2hunter2hunter2hunter2 abc");
    assert_string_equal(r, "pw=(sensitive); again (sensitive)(sensitive) abc");
    free(r);

    /* A secret containing another: the longer one wins, nothing of it leaks. */
    mle_logger_add_secret(lg, "AKIAEXAMPLE");
    mle_logger_add_secret(lg, "AKIAEXAMPLEKEY/SECRET+xyz");
    r = mle_redact(lg, "key AKIAEXAMPLEKEY/SECRET+xyz and id AKIAEXAMPLE.");
    assert_string_equal(r, "key (sensitive) and id (sensitive).");
    free(r);

    /* A secret that occurs inside the replacement text never re-matches it. */
    mle_logger_add_secret(lg, "sensitive");
    r = mle_redact(lg, "a sensitive hunter2hunter2");
    assert_string_equal(r, "a (sensitive) (sensitive)");
    free(r);

    mle_log(lg, MLE_LOG_INFO, "aws", "token is %s", "hunter2hunter2");
    char *out = slurp(f);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "[aws] token is (sensitive)\n"));
    free(out);

    assert_null(mle_redact(lg, NULL));
    r = mle_redact(NULL, "no logger: hunter2hunter2");
    assert_string_equal(r, "no logger: hunter2hunter2");
    free(r);
    mle_logger_free(lg);
    fclose(f);
}

#define N_THREADS 8
#define N_LINES 400

typedef struct worker {
    mle_logger *lg;
    int id;
} worker;

static void *log_worker(void *p)
{
    worker *w = p;
    char secret[32];
    snprintf(secret, sizeof secret, "secret-of-thread-%d", w->id);
    mle_logger_add_secret(w->lg, secret);
    for (int i = 0; i < N_LINES; i++)
        mle_log(w->lg, MLE_LOG_INFO, "t", "thread %d line %d carries %s end", w->id, i, secret);
    return NULL;
}

static void test_concurrent_logging(void **state)
{
    FILE *f = tmpfile();
    mle_logger *lg = mle_logger_new(f, MLE_LOG_INFO);
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){lg, i};
        assert_int_equal(pthread_create(&th[i], NULL, log_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *out = slurp(f);
    size_t lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        /* Whole lines only, and each thread's secret was registered before it logged. */
        assert_true(matches(line, "^[0-9TZ:-]+ INFO \\[t\\] thread [0-9] line [0-9]+ "
                                  "carries \\(sensitive\\) end$"));
    }
    assert_int_equal(lines, N_THREADS * N_LINES);
    free(out);
    mle_logger_free(lg);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format_and_levels),
        cmocka_unit_test(test_file_copy_and_one_line_records),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_concurrent_logging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
