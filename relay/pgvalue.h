/* pgvalue.h: SQL expressions that print a column's value the way wal2json prints it. */
#ifndef RELAY_PGVALUE_H
#define RELAY_PGVALUE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Writes to out an expression over t.<qcol> (an escaped identifier) of type oid whose JSON
 * form (row_to_json, json_build_object) is wal2json's: numbers bare (NaN and infinities null),
 * bytea as hex, oid as a number, char(n) padded, the rest as text. json and jsonb stay JSON,
 * or, with json_as_text, become their text (a JSON string, as in wal2json's own records).
 */
void pgvalue_expr(char *out, size_t len, const char *qcol, unsigned oid, bool json_as_text);

#endif
