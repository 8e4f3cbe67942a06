/* avro_change_type.h: a PostgreSQL column type (format_type's text) mapped to the Avro type of captured tables. */
#ifndef RELAY_AVRO_CHANGE_TYPE_H
#define RELAY_AVRO_CHANGE_TYPE_H

#include <stdbool.h>

#include "strbuf.h"

/* What a column's values become in Avro (docs/schemas.md, "Captured tables in Avro"). */
typedef enum {
	ACT_STRING,       /* text, varchar, char, and every type without a mapping: its text */
	ACT_INT,          /* smallint, integer */
	ACT_LONG,         /* bigint, oid */
	ACT_FLOAT,        /* real */
	ACT_DOUBLE,       /* double precision */
	ACT_DECIMAL,      /* numeric(p,s): bytes, logical decimal */
	ACT_NUMERIC_TEXT, /* numeric without typmod: the exact decimal text, a string */
	ACT_BOOLEAN,
	ACT_BYTES,        /* bytea */
	ACT_DATE,         /* int, logical date */
	ACT_LOCAL_TS,     /* timestamp without time zone: long, local-timestamp-micros */
	ACT_TS,           /* timestamp with time zone: long, timestamp-micros (UTC) */
	ACT_TIME,         /* time without time zone: long, time-micros */
	ACT_UUID,         /* string, logical uuid */
	ACT_JSON,         /* json, jsonb: the JSON text, a string */
} avro_change_kind;

/* A column's Avro type: its kind, whether it is an array of that kind, a decimal's digits. */
typedef struct {
	avro_change_kind kind;
	bool array; /* "<element>[]": an Avro array of nullable elements */
	int precision, scale;
} avro_change_type;

/*
 * The Avro type of a column from PostgreSQL's name of its type as format_type prints it (the
 * "type" wal2json writes: "numeric(10,2)", "timestamp(3) with time zone", "integer[]"). A NULL
 * or unknown name is ACT_STRING: the value's text.
 */
void avro_change_map(const char *pg_type, avro_change_type *out);

/* Appends the Avro schema JSON of t (not nullable: the caller wraps a nullable column). */
void avro_change_type_json(strbuf *b, const avro_change_type *t);

/*
 * Appends name as a valid Avro name: characters other than [A-Za-z0-9_] become '_', a leading
 * digit gets a '_' before it, an empty name is "_".
 */
void avro_change_name(strbuf *b, const char *name, size_t len);

#endif
