/*
 * test_xml.c — unit tests of core/xml.c: a real EC2 DescribeVpcs answer and AWS error
 * answers (shapes from ../shared/specs/aws/ec2/2016-11-15/service-2.json: DescribeVpcsResult
 * -> vpcSet/item, Vpc members by locationName), namespaces, CDATA, entities, and the
 * refusals: DTDs (XXE, billion laughs), malformed input, deep nesting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xml.h"

static json_t *parse_ok(const char *xml)
{
    mle_error *err = NULL;
    json_t *j = mle_xml_parse(xml, strlen(xml), &err);
    if (!j)
        fail_msg("XML did not parse: %s", err ? err->message : "?");
    return j;
}

static void parse_fails(const char *xml, const char *in_message)
{
    mle_error *err = NULL;
    json_t *j = mle_xml_parse(xml, strlen(xml), &err);
    assert_null(j);
    assert_non_null(err);
    assert_int_equal(err->code, MLE_E_INVALID);
    if (in_message && !strstr(err->message, in_message))
        fail_msg("error \"%s\" does not mention \"%s\"", err->message, in_message);
    mle_error_free(err);
}

static const char *str_at(const json_t *j, const char *path)
{
    /* Tiny dotted walk for assertions: numbers index arrays. */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = j;
    for (char *seg = strtok(buf, "."); seg && v; seg = strtok(NULL, ".")) {
        if (json_is_array(v))
            v = json_array_get(v, (size_t)atoi(seg));
        else
            v = json_object_get(v, seg);
    }
    return json_string_value(v);
}

static const char describe_vpcs[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n"
    "    <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>\n"
    "    <vpcSet>\n"
    "        <item>\n"
    "            <vpcId>vpc-0a60eb65b4EXAMPLE</vpcId>\n"
    "            <ownerId>111122223333</ownerId>\n"
    "            <state>available</state>\n"
    "            <cidrBlock>10.0.0.0/16</cidrBlock>\n"
    "            <cidrBlockAssociationSet>\n"
    "                <item>\n"
    "                    <associationId>vpc-cidr-assoc-0e1b2EXAMPLE</associationId>\n"
    "                    <cidrBlock>10.0.0.0/16</cidrBlock>\n"
    "                    <cidrBlockState>\n"
    "                        <state>associated</state>\n"
    "                    </cidrBlockState>\n"
    "                </item>\n"
    "            </cidrBlockAssociationSet>\n"
    "            <ipv6CidrBlockAssociationSet/>\n"
    "            <dhcpOptionsId>dopt-19edf471</dhcpOptionsId>\n"
    "            <tagSet>\n"
    "                <item>\n"
    "                    <key>Name</key>\n"
    "                    <value>main</value>\n"
    "                </item>\n"
    "                <item>\n"
    "                    <key>mlengine:address</key>\n"
    "                    <value>aws_vpc.main</value>\n"
    "                </item>\n"
    "            </tagSet>\n"
    "            <instanceTenancy>default</instanceTenancy>\n"
    "            <isDefault>false</isDefault>\n"
    "        </item>\n"
    "        <item>\n"
    "            <vpcId>vpc-06e4ab6c6cEXAMPLE</vpcId>\n"
    "            <ownerId>111122223333</ownerId>\n"
    "            <state>pending</state>\n"
    "            <cidrBlock>172.31.0.0/16</cidrBlock>\n"
    "            <tagSet>\n"
    "            </tagSet>\n"
    "            <isDefault>true</isDefault>\n"
    "        </item>\n"
    "    </vpcSet>\n"
    "</DescribeVpcsResponse>\n";

static void test_describe_vpcs(void **state)
{
    json_t *j = parse_ok(describe_vpcs);
    assert_true(json_is_object(j));
    assert_null(json_object_get(j, "DescribeVpcsResponse")); /* root name not kept */
    assert_string_equal(str_at(j, "requestId"), "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE");

    json_t *items = json_object_get(json_object_get(j, "vpcSet"), "item");
    assert_true(json_is_array(items)); /* repeated name -> array */
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(str_at(j, "vpcSet.item.0.vpcId"), "vpc-0a60eb65b4EXAMPLE");
    assert_string_equal(str_at(j, "vpcSet.item.0.cidrBlock"), "10.0.0.0/16");
    assert_string_equal(str_at(j, "vpcSet.item.0.isDefault"), "false"); /* text stays text */
    /* A set with one item is an object, not a one-element array. */
    assert_string_equal(str_at(j, "vpcSet.item.0.cidrBlockAssociationSet.item.cidrBlockState"
                               ".state"), "associated");
    assert_string_equal(str_at(j, "vpcSet.item.0.ipv6CidrBlockAssociationSet"), "");
    assert_string_equal(str_at(j, "vpcSet.item.0.tagSet.item.1.key"), "mlengine:address");
    assert_string_equal(str_at(j, "vpcSet.item.0.tagSet.item.1.value"), "aws_vpc.main");
    assert_string_equal(str_at(j, "vpcSet.item.1.state"), "pending");
    /* A pretty-printed empty element is "", not its indentation. */
    assert_string_equal(str_at(j, "vpcSet.item.1.tagSet"), "");
    json_decref(j);
}

/* The EC2 spec the answer above must agree with. Fails (never skips) when it is missing. */
static json_t *load_ec2_spec(void)
{
    const char *dir = getenv("MLE_SPECS_DIR");
    char path[1024];
    if (dir && *dir) {
        snprintf(path, sizeof path, "%s/aws/ec2/2016-11-15/service-2.json", dir);
    } else {
        const char *me = __FILE__;
        const char *slash = strrchr(me, '/');
        snprintf(path, sizeof path, "%.*s/../../../shared/specs/aws/ec2/2016-11-15/"
                 "service-2.json", slash ? (int)(slash - me) : 1, slash ? me : ".");
    }
    json_error_t je;
    json_t *spec = json_load_file(path, 0, &je);
    if (!spec)
        fail_msg("cannot load the EC2 spec %s: %s (set MLE_SPECS_DIR)", path, je.text);
    return spec;
}

/* Every element name the parsed structure uses is a member locationName in the spec. */
static void assert_members_in_spec(const json_t *spec, const char *shape, const json_t *obj)
{
    const json_t *members = json_object_get(
        json_object_get(json_object_get(spec, "shapes"), shape), "members");
    assert_non_null(members);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int found = 0;
        const char *m;
        const json_t *def;
        json_object_foreach((json_t *)members, m, def) {
            const char *loc = json_string_value(json_object_get(def, "locationName"));
            if (loc && strcmp(loc, key) == 0)
                found = 1;
        }
        if (!found && strcmp(key, "requestId") != 0)
            fail_msg("<%s> is not a member of %s in the EC2 spec", key, shape);
    }
}

static void test_describe_vpcs_matches_spec(void **state)
{
    json_t *spec = load_ec2_spec();
    const json_t *op = json_object_get(json_object_get(spec, "operations"), "DescribeVpcs");
    assert_string_equal(json_string_value(json_object_get(json_object_get(op, "output"),
                                                          "shape")), "DescribeVpcsResult");
    json_t *j = parse_ok(describe_vpcs);
    assert_members_in_spec(spec, "DescribeVpcsResult", j);
    json_t *item0 = json_array_get(json_object_get(json_object_get(j, "vpcSet"), "item"), 0);
    assert_members_in_spec(spec, "Vpc", item0);
    assert_members_in_spec(spec, "Tag",
                           json_array_get(json_object_get(json_object_get(item0, "tagSet"),
                                                          "item"), 0));
    /* The list member name the spec gives VpcList is the element we turned into an array. */
    const json_t *vpc_list = json_object_get(json_object_get(spec, "shapes"), "VpcList");
    assert_string_equal(json_string_value(json_object_get(json_object_get(vpc_list, "member"),
                                                          "locationName")), "item");
    json_decref(j);
    json_decref(spec);
}

static void test_aws_error_responses(void **state)
{
    /* EC2 protocol error. */
    json_t *j = parse_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code>"
                         "<Message>The vpc ID 'vpc-1' does not exist</Message></Error>"
                         "</Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID>"
                         "</Response>");
    assert_string_equal(str_at(j, "Errors.Error.Code"), "InvalidVpcID.NotFound");
    assert_string_equal(str_at(j, "Errors.Error.Message"), "The vpc ID 'vpc-1' does not exist");
    assert_string_equal(str_at(j, "RequestID"), "ea966190-f9aa-478e-9ede-example");
    json_decref(j);

    /* Query protocol error (IAM, STS). */
    j = parse_ok("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\n"
                 "  <Error>\n    <Type>Sender</Type>\n    <Code>NoSuchEntity</Code>\n"
                 "    <Message>The role with name x cannot be found.</Message>\n  </Error>\n"
                 "  <RequestId>4d8a5e2c</RequestId>\n</ErrorResponse>\n");
    assert_string_equal(str_at(j, "Error.Code"), "NoSuchEntity");
    assert_string_equal(str_at(j, "Error.Type"), "Sender");
    json_decref(j);
}

static void test_names_text_and_attributes(void **state)
{
    json_t *j = parse_ok("<a:Root xmlns:a=\"urn:a\" xmlns:b=\"urn:b\">"
                         "<a:Child id=\"1\">one</a:Child><b:Child>two</b:Child>"
                         "<Mixed>lead<x>in</x>tail</Mixed>"
                         "<Ent>a &amp; b &lt;c&gt; &#x41;&#66;</Ent>"
                         "<Data><![CDATA[<b>&raw</b>]]></Data>"
                         "<Space> </Space><Utf>caf\xC3\xA9</Utf></a:Root>");
    json_t *child = json_object_get(j, "Child"); /* local names: both prefixes collide */
    assert_true(json_is_array(child));
    assert_string_equal(json_string_value(json_array_get(child, 0)), "one");
    assert_string_equal(json_string_value(json_array_get(child, 1)), "two");
    assert_null(json_object_get(j, "id")); /* attributes dropped */
    assert_string_equal(str_at(j, "Mixed.x"), "in"); /* text beside elements dropped */
    assert_string_equal(str_at(j, "Ent"), "a & b <c> AB");
    assert_string_equal(str_at(j, "Data"), "<b>&raw</b>");
    assert_string_equal(str_at(j, "Space"), " "); /* a real value, kept */
    assert_string_equal(str_at(j, "Utf"), "caf\xC3\xA9");
    json_decref(j);

    j = parse_ok("<R>hello</R>");
    assert_string_equal(json_string_value(j), "hello");
    json_decref(j);
    j = parse_ok("<R/>");
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
}

static void test_refuses_dtds_and_entities(void **state)
{
    /* XXE: must never read the file. */
    parse_fails("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "
                "\"file:///etc/passwd\">]>\n<r><v>&x;</v></r>", NULL);
    /* Billion laughs. */
    parse_fails("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n"
                "<!ENTITY lol \"lol\">\n"
                "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                "]>\n<lolz>&lol4;</lolz>", NULL);
    /* An external DTD is not fetched (NONET) and the document is refused. */
    parse_fails("<?xml version=\"1.0\"?>\n<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/x.dtd\">"
                "<r/>", "DTD");
}

static void test_refuses_bad_input(void **state)
{
    parse_fails("<r><a></r>", "XML line 1");
    parse_fails("<r>\n<a>\n</b></r>", "XML line 3");
    parse_fails("not xml at all", "XML");
    mle_error *err = NULL;
    assert_null(mle_xml_parse(NULL, 0, &err));
    assert_int_equal(err->code, MLE_E_INVALID);
    mle_error_free(err);
    assert_null(mle_xml_parse("", 0, NULL));

    size_t depth = 300;
    char *deep = malloc(depth * 7 + 16);
    char *p = deep;
    for (size_t i = 0; i < depth; i++)
        p += sprintf(p, "<a>");
    p += sprintf(p, "x");
    for (size_t i = 0; i < depth; i++)
        p += sprintf(p, "</a>");
    parse_fails(deep, NULL);
    free(deep);
}

static void test_large_list(void **state)
{
    /* 5000 items: the array path must stay linear and correct. */
    size_t n = 5000;
    char *doc = malloc(n * 48 + 64);
    char *p = doc + sprintf(doc, "<R><set>");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "<item><id>subnet-%05zu</id></item>", i);
    sprintf(p, "</set></R>");
    json_t *j = parse_ok(doc);
    json_t *items = json_object_get(json_object_get(j, "set"), "item");
    assert_int_equal(json_array_size(items), n);
    assert_string_equal(str_at(items, "4999.id"), "subnet-04999");
    json_decref(j);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_vpcs),
        cmocka_unit_test(test_describe_vpcs_matches_spec),
        cmocka_unit_test(test_aws_error_responses),
        cmocka_unit_test(test_names_text_and_attributes),
        cmocka_unit_test(test_refuses_dtds_and_entities),
        cmocka_unit_test(test_refuses_bad_input),
        cmocka_unit_test(test_large_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
