/* headers.c: a stage's own copy of a record's headers (see headers.h). */
#include "headers.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Grows l's array without losing what it holds: m may already point at it. */
void header_list_adopt(header_list *l, route_msg *m, size_t more)
{
	bool own = l->h && m->headers == l->h;

	if (l->cap < m->n_headers + more) {
		l->cap = m->n_headers + more + 4;
		l->h = xrealloc(l->h, sizeof(*l->h) * l->cap);
	}
	if (!own && m->n_headers)
		memcpy(l->h, m->headers, sizeof(*l->h) * m->n_headers);
	m->headers = l->h;
}

/* Names and values are kept as pointers: no copy per record on the hot path. */
void header_list_add(header_list *l, route_msg *m, const char *name, const char *value)
{
	l->h[m->n_headers++] = (route_header){name, strlen(name), value, strlen(value)};
}

/* One helper for both Avro formats: the same two headers, in the same order. */
void header_list_add_schema(header_list *l, route_msg *m, const char *id_text, const char *subject,
			    size_t more)
{
	header_list_adopt(l, m, 2 + more);
	header_list_add(l, m, "schema_id", id_text);
	header_list_add(l, m, "schema_subject", subject);
}

/* The stage's teardown: its array goes, the router's headers were never its own. */
void header_list_free(header_list *l)
{
	free(l->h);
	l->h = NULL;
	l->cap = 0;
}
