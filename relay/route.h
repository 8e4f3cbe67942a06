/* route.h: turns a decoded outbox row or message into a Kafka record (topic, key, value, headers). */
#ifndef RELAY_ROUTE_H
#define RELAY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "w2j.h"

typedef struct {
	const char *name;
	size_t name_len;
	const char *value; /* NULL for a JSON null */
	size_t value_len;
} route_header;

/* A record ready to produce; pointers stay valid until the router's next call. */
typedef struct {
	const char *topic; /* NUL-terminated */
	const char *key;   /* NULL: no key */
	size_t key_len;
	const char *value; /* NULL: a null value (tombstone) */
	size_t value_len;
	int64_t timestamp_ms; /* 0: librdkafka's produce time */
	route_header *headers;
	size_t n_headers;
	bool every_partition; /* one copy to each partition (a truncate: ordered after every key) */
	/* The contract version: the text of the sources[].schema_version column (envelope member),
	 * never a member of the headers object; NULL: none. */
	const char *schema_version;
	size_t schema_version_len;
	/* The key column's text when an encoder replaced key (Avro keys): a dead letter carries
	 * this one; NULL: key is the text. */
	const char *text_key;
	size_t text_key_len;
} route_msg;

typedef struct router router;
typedef struct route_source route_source;

/* Compiles the sources (topic templates, tables, prefixes); NULL with a message when invalid. */
router *router_new(const relay_config *cfg, char *err, size_t errlen);
void router_free(router *r);
/* The source a record belongs to: an insert into a source table, or a message with a source
 * prefix; NULL for anything else (other tables, updates, deletes, other messages). */
const route_source *router_match(const router *r, const w2j_record *rec);
/* True when the record (any action) is of a source table. */
bool router_is_source_table(const router *r, const w2j_record *rec);
/*
 * Maps a matched record to a Kafka record. Returns 0, or -1 with *why set when it cannot be
 * published as it is (no key, a null value without tombstones, a topic name Kafka would reject,
 * a malformed message envelope or headers object, a non-transactional message).
 */
int router_build(router *r, const route_source *src, const w2j_record *rec, route_msg *out,
		 const char **why);
/*
 * The dead-letter record of a row that could not be published: the wal2json record as it came
 * (raw, cut to its first 64 KiB when longer: header dlq_truncated_from gives the length), with
 * headers dlq_reason, dlq_source, dlq_lsn, dlq_xid and, when known, dlq_topic.
 */
void router_dead_letter(router *r, const route_source *src, const w2j_record *rec, const char *raw,
			size_t rawlen, const char *why, const char *topic, route_msg *out);
/* The same with the source named (a captured table: "schema.table"). */
void router_dead_letter_named(router *r, const char *source, const w2j_record *rec, const char *raw,
			      size_t rawlen, const char *why, const char *topic, route_msg *out);
/* How many leading bytes of text are valid UTF-8 (len when all are). */
size_t router_utf8_valid_prefix(const char *text, size_t len);
/*
 * The encoder of the source's records (encode.h): its sources[].format ("json", "avro"), or
 * "json-contract" for a json source with contract = true.
 */
const char *router_source_format(const route_source *src);
/* "schema.table" or "message:prefix", for logs. */
const char *router_source_name(const route_source *src);

#endif
