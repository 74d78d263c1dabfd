/*
 * test_yaml.c — unit tests of core/yaml.c: multi-document streams, YAML 1.2 core-schema
 * scalars, anchors/aliases and merge keys, the refusals (alias bomb, nesting, duplicate and
 * complex keys, syntax errors with positions), and emit -> parse round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "yaml.h"

static json_t *parse_ok(const char *y)
{
    mle_error *err = NULL;
    json_t *j = mle_yaml_parse(y, strlen(y), &err);
    if (!j)
        fail_msg("YAML did not parse: %s\n---\n%s", err ? err->message : "?", y);
    assert_true(json_is_array(j));
    return j;
}

/* The first document of y. */
static json_t *doc0(const char *y)
{
    json_t *all = parse_ok(y);
    json_t *d = json_incref(json_array_get(all, 0));
    json_decref(all);
    return d;
}

static void parse_fails(const char *y, const char *in_message)
{
    mle_error *err = NULL;
    assert_null(mle_yaml_parse(y, strlen(y), &err));
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_INVALID);
    if (in_message && !strstr(err->message, in_message))
        fail_msg("error \"%s\" does not mention \"%s\"", err->message, in_message);
    mle_error_free(err);
}

static void assert_json(const json_t *j, const char *expect_json)
{
    json_t *e = json_loads(expect_json, JSON_DECODE_ANY, NULL);
    assert_non_null(e);
    if (!json_equal(j, e)) {
        char *got = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("got %s, expected %s", got, expect_json);
    }
    json_decref(e);
}

static void test_multi_document(void **state)
{
    json_t *j = parse_ok("# leading comment\n"
                         "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ml\n"
                         "---\n- x\n- y\n"
                         "---\nplain text\n"
                         "---\n"
                         "...\n");
    assert_json(j, "[{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"ml\"}},"
                   "[\"x\",\"y\"],\"plain text\",null]");
    json_decref(j);
    j = parse_ok("");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    j = parse_ok("# only a comment\n");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
}

static void test_core_schema_scalars(void **state)
{
    json_t *d = doc0("n1: null\nn2: Null\nn3: NULL\nn4: ~\nn5:\n"
                     "b1: true\nb2: True\nb3: FALSE\n"
                     "i1: 42\ni2: -17\ni3: +5\ni4: 0o17\ni5: 0x1F\ni6: 012\ni7: 0\n"
                     "f1: 3.14\nf2: -1.5e3\nf3: .5\nf4: 1e3\nf5: 2.\nf6: +.25\n");
    assert_json(d, "{\"n1\":null,\"n2\":null,\"n3\":null,\"n4\":null,\"n5\":null,"
                   "\"b1\":true,\"b2\":true,\"b3\":false,"
                   "\"i1\":42,\"i2\":-17,\"i3\":5,\"i4\":15,\"i5\":31,\"i6\":12,\"i7\":0,"
                   "\"f1\":3.14,\"f2\":-1500.0,\"f3\":0.5,\"f4\":1000.0,\"f5\":2.0,\"f6\":0.25}");
    assert_true(json_is_integer(json_object_get(d, "i6")));
    assert_true(json_is_real(json_object_get(d, "f4")));
    json_decref(d);

    /* Strings: quoted, YAML 1.1 booleans, non-finite floats, too-big ints, near misses. */
    d = doc0("q1: \"true\"\nq2: '42'\nq3: \"null\"\nq4: ''\n"
             "s1: yes\ns2: off\ns3: .inf\ns4: .nan\ns5: 99999999999999999999\n"
             "s6: 1_000\ns7: 0x\ns8: 1.2.3\ns9: +\ns10: 0o8\ns11: TRUE1\ns12: nULL\n"
             "t1: !!str 42\nt2: !!int \"42\"\nt3: ! 12\n");
    assert_json(d, "{\"q1\":\"true\",\"q2\":\"42\",\"q3\":\"null\",\"q4\":\"\","
                   "\"s1\":\"yes\",\"s2\":\"off\",\"s3\":\".inf\",\"s4\":\".nan\","
                   "\"s5\":\"99999999999999999999\",\"s6\":\"1_000\",\"s7\":\"0x\","
                   "\"s8\":\"1.2.3\",\"s9\":\"+\",\"s10\":\"0o8\",\"s11\":\"TRUE1\","
                   "\"s12\":\"nULL\",\"t1\":\"42\",\"t2\":42,\"t3\":\"12\"}");
    json_decref(d);

    /* Keys keep their written text. */
    d = doc0("1: one\ntrue: yes\nnull: x\n");
    assert_json(d, "{\"1\":\"one\",\"true\":\"yes\",\"null\":\"x\"}");
    json_decref(d);
}

static void test_block_scalars_and_flow(void **state)
{
    json_t *d = doc0("script: |\n  set -e\n  echo hi\nfolded: >-\n  one\n  two\n"
                     "flow: {a: [1, 2, {b: c}], d: \"e\\tf\"}\n"
                     "utf: caf\xC3\xA9 \xF0\x9F\x9A\x80\n");
    assert_json(d, "{\"script\":\"set -e\\necho hi\\n\",\"folded\":\"one two\","
                   "\"flow\":{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"e\\tf\"},"
                   "\"utf\":\"caf\\u00e9 \\ud83d\\ude80\"}");
    json_decref(d);
}

static void test_anchors_aliases_merge(void **state)
{
    json_t *d = doc0("base: &b\n  cpu: 1\n  labels: &l {team: ml}\n"
                     "copy: *b\n"
                     "labels2: *l\n"
                     "scalar: &s hello\nagain: *s\n"
                     "merged:\n  <<: *b\n  cpu: 4\n  extra: true\n"
                     "multi:\n  name: m\n  <<: [{name: ignored, a: 1}, {a: 2, b: 2}]\n");
    assert_json(d, "{\"base\":{\"cpu\":1,\"labels\":{\"team\":\"ml\"}},"
                   "\"copy\":{\"cpu\":1,\"labels\":{\"team\":\"ml\"}},"
                   "\"labels2\":{\"team\":\"ml\"},\"scalar\":\"hello\",\"again\":\"hello\","
                   "\"merged\":{\"cpu\":4,\"labels\":{\"team\":\"ml\"},\"extra\":true},"
                   "\"multi\":{\"name\":\"m\",\"a\":1,\"b\":2}}");
    /* Aliases are copies: changing one place changes no other. */
    json_object_set_new(json_object_get(json_object_get(d, "copy"), "labels"), "team",
                        json_string("changed"));
    assert_json(json_object_get(d, "base"), "{\"cpu\":1,\"labels\":{\"team\":\"ml\"}}");
    json_decref(d);

    /* A quoted "<<" is an ordinary key. */
    d = doc0("m:\n  \"<<\": {a: 1}\n");
    assert_json(d, "{\"m\":{\"<<\":{\"a\":1}}}");
    json_decref(d);

    /* Anchors belong to their document. */
    parse_fails("a: &x 1\n---\nb: *x\n", "alias");
}

static void test_alias_bomb_refused(void **state)
{
    parse_fails("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
                "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
                "alias");
    /* A self-referencing anchor is not defined yet where it is used. */
    parse_fails("a: &a [1, *a]\n", "alias");
    parse_fails("a: *nowhere\n", "nowhere");
}

static char *nested(size_t depth)
{
    char *s = malloc(depth * 2 + 8);
    memset(s, '[', depth);
    s[depth] = '1';
    memset(s + depth + 1, ']', depth);
    strcpy(s + 2 * depth + 1, "\n");
    return s;
}

static void test_refusals(void **state)
{
    char *deep = nested(300);
    parse_fails(deep, "nesting");
    free(deep);
    char *ok = nested(200);
    json_t *j = parse_ok(ok);
    free(ok);
    json_decref(j);

    parse_fails("a: 1\nb: 2\na: 3\n", "duplicate key \"a\"");
    parse_fails("? [a, b]\n: 1\n", "keys");
    parse_fails("? {a: b}\n: 1\n", "keys");
    parse_fails("a: b\n  c: d\n", "YAML line 2");
    parse_fails("key: [unclosed\n", "YAML line");
    parse_fails("a:\n\t- tab\n", "YAML line 2");
    mle_error *err = NULL;
    assert_null(mle_yaml_parse(NULL, 0, &err));
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    /* Invalid UTF-8 is refused by the reader. */
    parse_fails("a: caf\xe9\n", "YAML");
}

static void round_trip(const char *json_text)
{
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    mle_error *err = NULL;
    char *y = mle_yaml_emit(v, &err);
    if (!y)
        fail_msg("emit failed: %s", err ? err->message : "?");
    json_t *back = mle_yaml_parse(y, strlen(y), &err);
    if (!back)
        fail_msg("emitted YAML does not parse: %s\n%s", err->message, y);
    assert_int_equal(json_array_size(back), 1);
    if (!json_equal(json_array_get(back, 0), v)) {
        char *got = json_dumps(json_array_get(back, 0), JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("round trip changed the value:\n%s\nYAML:\n%s\nback: %s", json_text, y, got);
    }
    json_decref(back);
    json_decref(v);
    free(y);
}

static void test_emit_round_trip(void **state)
{
    round_trip("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
               "\"metadata\":{\"name\":\"mlflow\",\"labels\":{\"app\":\"mlflow\"}},"
               "\"spec\":{\"replicas\":3,\"template\":{\"spec\":{\"containers\":[{\"name\":"
               "\"server\",\"args\":[\"--port\",\"5000\"],\"env\":[]}]}}}}");
    /* Strings that would read as something else if written plain. */
    round_trip("[\"true\",\"False\",\"null\",\"~\",\"\",\"123\",\"-1.5\",\"0x10\",\"0o7\","
               "\".5\",\"1e3\",\"<<\",\"a: b\",\"- x\",\"#c\",\"x #y\",\"[1]\",\"{a}\","
               "\"&anchor\",\"*alias\",\"!tag\",\"%p\",\"@at\",\"`tick\",\"' q\",\"\\\" dq\","
               "\" lead\",\"trail \",\"yes\",\"on\",\".inf\",\"tab\\there\"]");
    round_trip("{\"script\":\"set -e\\necho hi\\n\",\"nofinal\":\"a\\nb\",\"blank\":\"\\n\\n\","
               "\"trailing\":\"x  \\ny\\n\\n\",\"ctrl\":\"bell\\u0007\",\"utf\":\"caf\\u00e9 "
               "\\ud83d\\ude80\"}");
    round_trip("{\"i\":0,\"neg\":-9223372036854775807,\"big\":9223372036854775807,"
               "\"r1\":0.1,\"r2\":1.0,\"r3\":-2.5e-300,\"r4\":1e300,\"r5\":123456789.123,"
               "\"t\":true,\"f\":false,\"n\":null,\"eo\":{},\"ea\":[],\"nested\":[[[]],[{}]]}");
    round_trip("\"just a string\"");
    round_trip("42");
    round_trip("[]");
    round_trip("{\"1\":\"numeric key\",\"true\":\"bool key\",\"\":\"empty key\"}");
}

static void test_emit_shape(void **state)
{
    json_t *v = json_loads("{\"name\":\"app\",\"replicas\":3,\"ports\":[80,443],"
                           "\"script\":\"a\\nb\\n\",\"flag\":\"true\",\"none\":{}}", 0, NULL);
    char *y = mle_yaml_emit(v, NULL);
    /* Block style, object order kept, literal block for text, quotes only where needed. */
    assert_string_equal(y, "name: app\n"
                           "replicas: 3\n"
                           "ports:\n"
                           "- 80\n"
                           "- 443\n"
                           "script: |\n"
                           "  a\n"
                           "  b\n"
                           "flag: \"true\"\n"
                           "none: {}\n");
    free(y);
    json_decref(v);
    mle_error *err = NULL;
    assert_null(mle_yaml_emit(NULL, &err));
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
}

/* Strings a YAML 1.1 reader (helm, kubectl) would take for booleans or numbers are quoted. */
static void test_emit_quotes_yaml11_lookalikes(void **state)
{
    (void)state;
    const char *words[] = {"on", "off", "yes", "no", "y", "N", "0755", "1_000", "12:30", NULL};
    json_t *v = json_object();
    for (int i = 0; words[i]; i++)
        json_object_set_new(v, words[i], json_string(words[i]));
    json_object_set_new(v, "plain", json_string("mlflow"));
    json_object_set_new(v, "version", json_string("1.2.3"));
    char *text = mle_yaml_emit(v, NULL);
    assert_non_null(text);
    for (int i = 0; words[i]; i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"%s\": \"%s\"", words[i], words[i]);
        if (!strstr(text, want))
            fail_msg("%s not quoted in:\n%s", words[i], text);
    }
    assert_non_null(strstr(text, "plain: mlflow"));
    assert_non_null(strstr(text, "version: 1.2.3"));
    json_t *back = mle_yaml_parse(text, strlen(text), NULL);
    assert_true(json_equal(json_array_get(back, 0), v));
    json_decref(back);
    free(text);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_document),
        cmocka_unit_test(test_core_schema_scalars),
        cmocka_unit_test(test_block_scalars_and_flow),
        cmocka_unit_test(test_anchors_aliases_merge),
        cmocka_unit_test(test_alias_bomb_refused),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_emit_round_trip),
        cmocka_unit_test(test_emit_shape),
        cmocka_unit_test(test_emit_quotes_yaml11_lookalikes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
