/* avro_change_type.h: a PostgreSQL column type (format_type's text) mapped to the Avro type of captured tables. */
#ifndef RELAY_AVRO_CHANGE_TYPE_H
#define RELAY_AVRO_CHANGE_TYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "strbuf.h"

/* What a column's values become in Avro (docs/schemas.md, "Captured tables in Avro"). */
typedef enum {
	ACT_STRING,       /* text, varchar, char, and every type without a mapping: its text */
	ACT_INT,          /* smallint, integer */
	ACT_LONG,         /* bigint, oid */
	ACT_FLOAT,        /* real */
	ACT_DOUBLE,       /* double precision */
	ACT_DECIMAL,      /* numeric(p,s): bytes, logical decimal */
	ACT_VARDECIMAL,   /* numeric without typmod: record VariableScaleDecimal {scale, value} */
	ACT_BOOLEAN,
	ACT_BYTES,        /* bytea */
	ACT_DATE,         /* int, logical date */
	ACT_LOCAL_TS,     /* timestamp without time zone: long, local-timestamp-micros */
	ACT_TS,           /* timestamp with time zone: long, timestamp-micros (UTC) */
	ACT_TIME,         /* time without time zone: long, time-micros */
	ACT_UUID,         /* string, logical uuid */
	ACT_JSON,         /* json, jsonb: the JSON text, a string */
	ACT_INTERVAL,     /* interval: record Interval {months, days, microseconds} */
	ACT_RANGE,        /* the built-in ranges: record <Name>Range {lower, upper, ...} */
} avro_change_kind;

/* The namespace of the records the mapping names (VariableScaleDecimal, Interval, ranges). */
#define AVRO_CHANGE_NAMESPACE "outbox_relay"

/*
 * A column's Avro type: its kind, an array's dimensions, a range's bound kind, a decimal's
 * digits. Zeroed by avro_change_map, so two types compare with memcmp.
 */
typedef struct {
	avro_change_kind kind;
	avro_change_kind range_of; /* ACT_RANGE: the kind of its bounds */
	int dims;                  /* 0: not an array; n: n nested Avro arrays of nullable elements */
	int precision, scale;
} avro_change_type;

/*
 * The Avro type of a column from PostgreSQL's name of its type as format_type prints it (the
 * "type" wal2json writes: "numeric(10,2)", "timestamp(3) with time zone", "integer[]"). A NULL
 * or unknown name is ACT_STRING: the value's text.
 */
void avro_change_map(const char *pg_type, avro_change_type *out);

/*
 * The same for a column whose pg_attribute.attndims is attndims: an array column with attndims
 * above 1 gets that many dimensions (format_type prints "integer[]" for every array; PostgreSQL
 * does not enforce attndims, so a value of another shape is refused when it is converted).
 */
void avro_change_map_column(const char *pg_type, int attndims, avro_change_type *out);

/*
 * Appends the Avro schema JSON of t (not nullable: the caller wraps a nullable column). Named
 * records (VariableScaleDecimal, Interval, ranges) are defined at their first use in a schema
 * and named after it: *defined holds which ones a schema has (start at 0; NULL: a schema of
 * its own, every one defined).
 */
void avro_change_type_json(strbuf *b, const avro_change_type *t, uint64_t *defined);

/*
 * Appends name as a valid Avro name: characters other than [A-Za-z0-9_] become '_', a leading
 * digit gets a '_' before it, an empty name is "_".
 */
void avro_change_name(strbuf *b, const char *name, size_t len);

#endif
