/* avro_change.h: captured tables in Avro: a schema derived from each table, and its changes and snapshot rows encoded by it. */
#ifndef RELAY_AVRO_CHANGE_H
#define RELAY_AVRO_CHANGE_H

#include <stddef.h>

#include "avro_change_schema.h"
#include "capture.h"
#include "record.h"
#include "registry.h"
#include "strbuf.h"

/* The schemas derived so far (one per captured table and catalog entry) and the output buffers. */
typedef struct avro_change avro_change;

/*
 * An empty cache; topic_prefix (relay.topic_prefix) names the schemas' namespace. rules (NULL:
 * none) holds the protect rules the transform stage applies before encoding (docs/privacy.md):
 * a column a rule protects is a string in the derived schemas (its masked, hashed or encrypted
 * text), a column a rule drops has no field in the row, and a key column any rule takes is a
 * string in the key record (hashed there). rules must outlive the cache.
 */
avro_change *avro_change_new(const char *topic_prefix, const relay_config *rules);
void avro_change_free(avro_change *a);

/*
 * Rewrites rec's value (the JSON envelope capture.c built for rec->table) into the Confluent
 * wire format: magic byte 0, the schema id (big-endian), the envelope in Avro by the table's
 * derived schema, registered under "<topic>-value" through reg. The key stays as built, unless
 * the table's capture entry has key_format = "avro": then the key (the JSON object of the key
 * columns) becomes the table's key record (avro_change_key_schema) in the wire format,
 * registered under "<topic>-key" (captured tables name both subjects by topic, whatever
 * schema_registry.subject_strategy says), and m->text_key keeps the built key for a dead
 * letter; a record without key (an unkeyed table's, a truncate's) keeps none. A tombstone stays one (its key
 * encoded likewise). Headers schema_id and schema_subject (of the value) are added. The value,
 * key and headers then point into a's buffers until its next call. A change with columns the catalog entry does
 * not know (written before an ALTER TABLE the entry already has) is encoded by a variant of the
 * schema with those columns as nullable strings; one lacking a value (or with a null) where the
 * entry requires one (written before SET NOT NULL or REPLICA IDENTITY FULL), by the variant with
 * every non-key field nullable. A tombstone gets no headers. ENCODE_OK; ENCODE_REJECT with *why
 * (a value the type cannot hold); ENCODE_HOLD (the registry is down); ENCODE_STOP (the registry
 * refuses the schema: *why names table and subject, and quotes the registry's reason).
 */
int avro_change_encode(avro_change *a, registry *reg, record *rec, const char **why);

/*
 * The envelope converted alone (no registry): 0 with *out and *len (a's buffer, prefix bytes
 * left free before the Avro), or -1 with *why. For the fuzz target and the unit tests.
 */
int avro_change_convert(avro_change *a, const capture_table *t, const char *json, size_t len,
			size_t prefix, char **out, size_t *out_len, const char **why);
/*
 * The record key capture built (a JSON object of the key columns) converted alone by t's key
 * record: 0 with *out and *len (a's key buffer, prefix bytes left free), or -1 with *why.
 */
int avro_change_convert_key(avro_change *a, const capture_table *t, const char *json, size_t len,
			    size_t prefix, char **out, size_t *out_len, const char **why);
/*
 * The schema text the last successful conversion (of an envelope or a key) used (the table's, or a variant: columns the
 * catalog entry does not know as nullable strings, or every non-key field nullable), valid until a's next
 * conversion or avro_change_free.
 */
const char *avro_change_last_schema(const avro_change *a);

#endif
