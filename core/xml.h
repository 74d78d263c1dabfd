/*
 * xml.h — XML (libxml2) to JSON values, in the shape documented for host->v_parse_xml:
 * an element becomes an object keyed by child local names, a repeated name an array, a
 * text-only element a string, an empty element "". Attributes are dropped. No network, no
 * entity expansion, no DTD loading.
 */
#ifndef MLE_CORE_XML_H
#define MLE_CORE_XML_H

#include <jansson.h>
#include "error.h"

/* New reference (the root element's content) or NULL with *err. */
json_t *mle_xml_parse(const char *text, size_t len, mle_error **err);

#endif
