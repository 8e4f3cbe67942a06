/* json_scan.h: a zero-copy JSON scanner: spans into the input instead of a DOM, numbers kept as text. */
#ifndef RELAY_JSON_SCAN_H
#define RELAY_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
	JSON_NONE = 0, /* absent: the span of a key that was not in the object */
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
	JSON_OBJECT,
	JSON_ARRAY,
} json_kind;

/*
 * One value inside the scanned buffer. For a string, ptr/len cover the text between the quotes,
 * still escaped (escaped says whether a backslash occurs); for anything else, the whole value text.
 */
typedef struct {
	json_kind kind;
	bool escaped;
	const char *ptr;
	size_t len;
} json_span;

/* A position inside an object or array being iterated; first is true until a member was read. */
typedef struct {
	const char *p;
	const char *end;
	bool first;
} json_cursor;

void json_cursor_init(json_cursor *c, const char *buf, size_t len);
/* Reads one value and moves past it (nested values are skipped, not built). 0 or -1 if malformed. */
int json_read_value(json_cursor *c, json_span *out);
/* True when only whitespace is left. */
bool json_at_end(json_cursor *c);

/* Steps into the object or array at the cursor, to iterate it in place with the _next calls. */
int json_enter_object(json_cursor *c);
int json_enter_array(json_cursor *c);
/* Opens the object or array a span holds, for json_object_next / json_array_next. */
int json_object_open(json_cursor *c, const json_span *obj);
int json_array_open(json_cursor *c, const json_span *arr);
/* 1: a member was read; 0: the closing brace was passed; -1: malformed. */
int json_object_next(json_cursor *c, json_span *key, json_span *val);
/* json_object_next without the value: the cursor stays at it (read it, or step into it). */
int json_object_next_key(json_cursor *c, json_span *key);
/* 1: an element was read; 0: end of the array; -1: malformed. */
int json_array_next(json_cursor *c, json_span *val);

/* Moves to the next element of an array of objects and steps into it: 1, 0 at the end, -1. */
int json_array_next_enter(json_cursor *c);

/*
 * Decodes the escapes of a string span into out, which needs span->len bytes (decoding never
 * grows the text). Returns the decoded length, or -1 for an escape that is not valid UTF-16.
 */
long json_unescape(const json_span *s, char *out);

/* True when a key span equals the plain ASCII name (keys of wal2json records have no escapes). */
bool json_key_is(const json_span *key, const char *name, size_t name_len);
#define JSON_KEY_IS(key, lit) json_key_is((key), (lit), sizeof(lit) - 1)

/* True when a string span, once its escapes are decoded, equals text[0..n) (names: wal2json
 * escapes quotes and control characters in identifiers). */
bool json_string_is(const json_span *s, const char *text, size_t n);

#endif
