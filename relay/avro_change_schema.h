/* avro_change_schema.h: the Avro schema derived from a captured table: envelope, row record, names, nullability. */
#ifndef RELAY_AVRO_CHANGE_SCHEMA_H
#define RELAY_AVRO_CHANGE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "avro_change_type.h"
#include "capture.h"
#include "strbuf.h"

/*
 * What the protect rules (docs/privacy.md) make of each column of a table in its derived
 * schemas, one per column of capture_table.cols; NULL: no column is protected.
 */
typedef enum {
	AVRO_CHANGE_CLEAR,     /* no rule: the column's own mapping */
	AVRO_CHANGE_PROTECTED, /* masked, hashed or encrypted: a string (the protected text) */
	AVRO_CHANGE_DROPPED,   /* dropped: the row has no field for it */
} avro_change_protect;

/*
 * Appends to out the Avro schema (compact JSON, one text per column set) of a captured table's
 * envelope: op, before and after (a record named after the table, one field per published
 * column, docs/schemas.md), source, unchanged_toast. Fields of NOT NULL columns that every
 * before and after carries (key columns, every column with REPLICA IDENTITY FULL) are plain
 * types; the others are ["null", T] with default null.
 */
void avro_change_schema(strbuf *out, const capture_table *t, const char *topic_prefix);
/*
 * The same with extra row fields after the table's columns: extra holds extra_len bytes of
 * NUL-terminated column names (columns a change has that the catalog entry does not know), each
 * a nullable string. extra NULL: none. all_nullable: every row field but the key's nullable (the variant for a
 * change older than the entry that lacks a value the entry requires). prot (NULL: none): a
 * protected column's field is a string, nullable as the column's would be; a dropped column has
 * no field (avro_change_column_type, avro_change_in_row).
 */
void avro_change_schema_with(strbuf *out, const capture_table *t, const char *topic_prefix,
			     const char *extra, size_t extra_len, bool all_nullable,
			     const avro_change_protect *prot);
/*
 * Appends to out the Avro schema (compact JSON) of a captured table's record key: a record
 * "Key" in the namespace "<prefix>.<schema>.<table>" (Debezium's name) with one field per key
 * column in key order, named (the same name, a clash's suffix included: one naming for
 * both) and typed as in the row record, but a string for a key column a rule takes (prot,
 * NULL: none; hashed in the key, whatever the action); a field is nullable only when its
 * column is (a configured key_columns column without NOT NULL).
 */
void avro_change_key_schema(strbuf *out, const capture_table *t, const char *topic_prefix,
			    const avro_change_protect *prot);
/*
 * The Avro type of column col's field (key: in the key record) under prot (NULL: none): the
 * column's mapping (avro_change_map_column), or a string for a protected column, and in the key
 * for any column a rule takes (a protected key column is always hashed there, a dropped one too).
 */
void avro_change_column_type(const capture_table *t, int col, const avro_change_protect *prot,
			     bool key, avro_change_type *out);
/* True when column col has a field in the row record: published and not dropped by a rule. */
bool avro_change_in_row(const capture_table *t, int col, const avro_change_protect *prot);
/* Whether key column col's field in the key record is nullable: the column is. */
bool avro_change_key_nullable(const capture_table *t, int col);
/*
 * Whether column col's field is nullable: the column is, or some record may lack its value (a
 * delete's before holds only the identity's key columns; an update leaves out an unchanged
 * TOASTed value unless the old row is whole, REPLICA IDENTITY FULL).
 */
bool avro_change_nullable(const capture_table *t, int col);
/* The same, in the variant with every non-key field nullable when relaxed (all_nullable). */
bool avro_change_field_nullable(const capture_table *t, int col, bool relaxed);
/* True when names (NUL-terminated names one after another) holds name[0..n). */
bool avro_change_name_listed(const strbuf *names, const char *name, size_t n);

#endif
