/* jansson_oracle.h: jansson's verdict on a JSON text, for fuzz_json (its names clash with json_scan.h). */
#ifndef RELAY_JANSSON_ORACLE_H
#define RELAY_JANSSON_ORACLE_H

#include <stdbool.h>
#include <stddef.h>

/* What jansson made of a whole document. */
typedef enum { ORACLE_REJECTED, ORACLE_OBJECT, ORACLE_ARRAY, ORACLE_STRING, ORACLE_NUMBER,
	       ORACLE_TRUE, ORACLE_FALSE, ORACLE_NULL } oracle_kind;

/*
 * Parses buf as one JSON value (any type, NUL escapes allowed). For a string, *str gets a
 * malloc'd copy of its decoded bytes (free it) and *str_len their count.
 */
oracle_kind jansson_oracle(const char *buf, size_t len, char **str, size_t *str_len);

/*
 * True when buf is JSON and every value the JSON pointer parts[0..n_parts) reaches in it (a
 * part "*" is every member or element; digits an array index too) is null or a string whose
 * first byte is one of marks: fuzz_protect's check that no taken value stayed as it was.
 */
bool jansson_oracle_replaced(const char *buf, size_t len, const char *const *parts,
			     const size_t *lens, int n_parts, const char *marks);

#endif
