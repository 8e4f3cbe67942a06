/* headers.h: a stage's own copy of a record's headers, so it can add some without touching the router's. */
#ifndef RELAY_HEADERS_H
#define RELAY_HEADERS_H

#include <stddef.h>

#include "route.h"

/* An array a stage owns and reuses record after record; zero-initialised is empty. */
typedef struct {
	route_header *h;
	size_t cap;
} header_list;

/*
 * Points m's headers at l's array, a copy of them with room for `more` additions. When m already
 * uses l's array (a header added by this stage before), they stay as they are. The copy holds
 * the same name and value pointers: they must outlive the record, as the router's do.
 */
void header_list_adopt(header_list *l, route_msg *m, size_t more);
/* Appends one header to m (room made by header_list_adopt); name and value are NUL-terminated
 * and stay valid until the record is produced (librdkafka copies them then). */
void header_list_add(header_list *l, route_msg *m, const char *name, const char *value);
/*
 * Adopts m's headers (room for `more` after ours) and appends the two that name an Avro record's
 * schema: schema_id (its id's text) and schema_subject. Both Avro formats (outbox events and
 * captured tables) add them so; the texts must outlive the record, as header_list_add's.
 */
void header_list_add_schema(header_list *l, route_msg *m, const char *id_text, const char *subject,
			    size_t more);
/* Frees the array (the names and values are not the list's); l is empty again. */
void header_list_free(header_list *l);

#endif
