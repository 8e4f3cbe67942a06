/* avro_change_value.h: one column value of a captured change (wal2json's JSON or PostgreSQL's text) into an Avro value. */
#ifndef RELAY_AVRO_CHANGE_VALUE_H
#define RELAY_AVRO_CHANGE_VALUE_H

#include <avro.h>
#include <stddef.h>

#include "avro_change_type.h"
#include "json_scan.h"
#include "strbuf.h"

/*
 * Sets v (of t's Avro type, not the nullable union around it) from a non-null value of the
 * change envelope: numbers bare, booleans, bytea as hex, arrays as PostgreSQL's array text,
 * json as JSON, everything else as PostgreSQL prints it. Nothing is rounded: a value the type
 * cannot hold exactly is refused. 0, or -1 with a reason in why (NUL-terminated, cut to whylen).
 * scratch is the caller's buffer, reused.
 */
int avro_change_value_set(avro_value_t *v, const avro_change_type *t, const json_span *j,
			  strbuf *scratch, char *why, size_t whylen);

/*
 * The same from PostgreSQL's output text of one value (an array's element: booleans t/f, bytea
 * \x<hex>), for the fuzz target and the unit tests as well.
 */
int avro_change_text_set(avro_value_t *v, avro_change_kind kind, const char *text, size_t len,
			 char *why, size_t whylen);

/* The same by a whole column type: an array's text ("{{1,2},{3,NULL}}"), a range's, ... */
int avro_change_text_set_type(avro_value_t *v, const avro_change_type *t, const char *text,
			      size_t len, char *why, size_t whylen);

#endif
