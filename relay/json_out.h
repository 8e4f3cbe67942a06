/* json_out.h: JSON text the relay writes itself: the one JSON string escaper. */
#ifndef RELAY_JSON_OUT_H
#define RELAY_JSON_OUT_H

#include <stddef.h>

#include "strbuf.h"

/* Room for the longest escape json_out_escape writes ("\u00XX" and its NUL). */
#define JSON_OUT_ESC_MAX 8

/*
 * The escape of one byte inside a JSON string, or NULL when the byte is written as it is.
 * As PostgreSQL's escape_json (what wal2json and row_to_json write): \" \\ \b \f \n \r \t, other
 * control bytes as \u00xx (lowercase hex); DEL passes, as PostgreSQL writes it, so captured
 * keys and envelopes keep their bytes (log.c escapes it in log lines). Bytes from 0x80 up pass through: UTF-8 is
 * the caller's to check (log.c replaces what is not UTF-8; names from the catalog are text).
 * buf is used for the \u00xx forms.
 */
const char *json_out_escape(unsigned char ch, char buf[JSON_OUT_ESC_MAX]);

/* Appends s[0..n) as a JSON string with its quotes, escaped by json_out_escape. */
void json_out_string(strbuf *b, const char *s, size_t n);

#endif
