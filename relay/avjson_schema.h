/* avjson_schema.h: an Avro schema's JSON compiled (jansson) into the nodes avjson.c converts by. */
#ifndef RELAY_AVJSON_SCHEMA_H
#define RELAY_AVJSON_SCHEMA_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The logical types libavro 1.11 does not keep: read from the schema's JSON here. */
typedef enum { AVJ_PLAIN, AVJ_DECIMAL, AVJ_DATE, AVJ_TS_MILLIS, AVJ_TS_MICROS } avjson_logical;

/* One type of the schema as the conversion needs it (named types are shared, may recurse). */
typedef struct avjson_node avjson_node;
struct avjson_node {
	avro_type_t type;
	avjson_logical logical;
	long precision, scale; /* decimal */
	int64_t size;          /* fixed */
	size_t n;              /* record fields, union branches */
	avjson_node **kids;    /* field types, branches; an array's items or a map's values: kids[0] */
	char **names;          /* record field names */
	size_t *name_lens;     /* their lengths */
	size_t *guess;         /* record: the field the last payload had at each position (a hint);
				* NULL when two fields share a name */
	char *fullname;        /* record, enum, fixed */
	avjson_node *next;     /* every node of the codec, to free them */
	unsigned char visit;   /* the check for records that must contain themselves (compile only) */
};

/* A compiled schema: its canonical text and its nodes (all of them owned, freed together). */
typedef struct {
	char *text;        /* compact JSON, members in the file's order (malloc'd by jansson) */
	avjson_node *root;
	avjson_node *all;
	bool has_lists;    /* an array or a map somewhere: values must be reset between payloads */
} avjson_schema;

/*
 * Compiles the JSON text of a schema (named types resolved, logical types kept). 0, or -1 with a
 * message in err (not JSON, not a shape of Avro schema, or a record no value can end because it
 * must contain itself); out is freed either way by avjson_schema_free. out->text is NULL when
 * the schema must not be given to libavro (not JSON; a record that must contain itself, which
 * libavro would recurse on without end). Otherwise the structure is checked by libavro.
 */
int avjson_schema_compile(const char *json, size_t len, avjson_schema *out, char *err, size_t errlen);
void avjson_schema_free(avjson_schema *s);

#endif
