/*
 * xml.c — owns the conversion of XML documents (libxml2) into JSON values in the shape of
 * host->v_parse_xml, with the parser locked down: no network, no entity substitution, no
 * DTD loading, documents that carry a DTD refused, nesting capped.
 *
 * libxml2's global init runs once (pthread_once) because xmlInitParser is not safe to race.
 */
#include "xml.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define MLE_XML_MAX_DEPTH 256

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

/* libxml2 reports some errors (input encoding, I/O) through its process-wide generic handler
 * rather than the parser context, which XML_PARSE_NOERROR does not silence: a malformed
 * provider answer would print "encoding error : ..." on mlengine's stderr. The parser
 * context still records them for parse_failed. */
static void xml_quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void xml_init_once(void)
{
    xmlInitParser();
    xmlThrDefSetGenericErrorFunc(NULL, xml_quiet); /* threads that start using libxml2 later */
    xmlSetGenericErrorFunc(NULL, xml_quiet);       /* this one */
}

static int is_text(const xmlNode *n)
{
    return n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE;
}

static int has_element_child(const xmlNode *n)
{
    for (const xmlNode *c = n->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return 1;
    return 0;
}

/* Whitespace-only text that spans lines is the indentation of a pretty-printed empty
 * element (AWS answers are indented), not a value. */
static int is_layout(const char *s)
{
    if (!strchr(s, '\n'))
        return 0;
    return s[strspn(s, " \t\r\n")] == '\0';
}

static json_t *element_text(const xmlNode *n)
{
    size_t len = 0;
    for (const xmlNode *c = n->children; c; c = c->next)
        if (is_text(c) && c->content)
            len += strlen((const char *)c->content);
    char *buf = malloc(len + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (!is_text(c) || !c->content)
            continue;
        size_t l = strlen((const char *)c->content);
        memcpy(buf + o, c->content, l);
        o += l;
    }
    buf[o] = '\0';
    json_t *s = json_string(is_layout(buf) ? "" : buf);
    free(buf);
    return s;
}

static json_t *element_value(const xmlNode *n, int depth, mle_error **err);

/* Children under their local names. An element's own value is never an array, so an array
 * in a slot always means "this name was repeated". */
static json_t *element_object(const xmlNode *n, int depth, mle_error **err)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *name = (const char *)c->name;
        json_t *v = element_value(c, depth + 1, err);
        if (!v) {
            json_decref(obj);
            return NULL;
        }
        json_t *prev = json_object_get(obj, name);
        if (!prev) {
            json_object_set_new(obj, name, v);
            continue;
        }
        if (!json_is_array(prev)) {
            json_t *arr = json_array();
            json_array_append(arr, prev);
            json_object_set_new(obj, name, arr);
            prev = arr;
        }
        json_array_append_new(prev, v);
    }
    return obj;
}

static json_t *element_value(const xmlNode *n, int depth, mle_error **err)
{
    if (depth > MLE_XML_MAX_DEPTH) {
        mle_fail(err, MLE_E_INVALID, "XML line %d: elements nest deeper than %d levels",
                 n->line, MLE_XML_MAX_DEPTH);
        return NULL;
    }
    json_t *v = has_element_child(n) ? element_object(n, depth, err) : element_text(n);
    if (!v && err && !*err)
        mle_fail(err, MLE_E_INVALID, "XML line %d: element <%s> has text that is not UTF-8",
                 n->line, (const char *)n->name);
    return v;
}

static void parse_failed(xmlParserCtxtPtr ctxt, mle_error **err)
{
    const xmlError *e = xmlCtxtGetLastError(ctxt);
    if (!e || !e->message) {
        mle_fail(err, MLE_E_INVALID, "XML: not a well-formed document");
        return;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s", e->message);
    msg[strcspn(msg, "\n")] = '\0';
    mle_fail(err, MLE_E_INVALID, "XML line %d: %s", e->line, msg);
}

json_t *mle_xml_parse(const char *text, size_t len, mle_error **err)
{
    if (!text || len == 0 || len > (size_t)INT32_MAX) {
        mle_fail(err, MLE_E_INVALID, "XML: empty or oversized document (%zu bytes)", len);
        return NULL;
    }
    pthread_once(&xml_once, xml_init_once);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        mle_fail(err, MLE_E_INTERNAL, "XML: out of memory");
        return NULL;
    }
    /* No XML_PARSE_NOENT (it would substitute entities) and no DTDLOAD/DTDATTR. */
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, text, (int)len, NULL, NULL, opts);
    if (!doc) {
        parse_failed(ctxt, err);
        xmlFreeParserCtxt(ctxt);
        return NULL;
    }
    json_t *out = NULL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (doc->intSubset || doc->extSubset)
        mle_fail(err, MLE_E_INVALID, "XML: documents with a DTD are not accepted");
    else if (!root)
        mle_fail(err, MLE_E_INVALID, "XML: no root element");
    else
        out = element_value(root, 1, err);
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    return out;
}
