/* encode_avro.h: the Avro format: an outbox event's JSON value converted by its event type's schema, Confluent wire format. */
#ifndef RELAY_ENCODE_AVRO_H
#define RELAY_ENCODE_AVRO_H

#include <stddef.h>

#include "config.h"
#include "record.h"

/*
 * The format's state (an encode_avro_state *): every <event_type>.avsc of cfg->schema_dir read
 * when a source is Avro (each parsed and checked now: a bad file stops the start with its name;
 * captures derive their schemas), and the registry client. NULL with err.
 */
void *encode_avro_setup(const relay_config *cfg, char *err, size_t errlen);
/*
 * Before streaming: every schema file checked against the registry's compatibility rules for the
 * subjects it is known to go to (compat.h). ENCODE_OK, or ENCODE_STOP with err: one line naming
 * the file, the subject and the registry's reason. When the registry does not answer, the start
 * goes on (logged) and the check runs again before the first event that needs the registry,
 * which holds the stream back until it answers (ENCODE_HOLD), or stops at that event when a file
 * is refused (ENCODE_STOP): an incompatible file is never registered either way.
 */
int encode_avro_start(void *state, const relay_config *cfg, char *err, size_t errlen);
/* Frees the schemas and the client. */
void encode_avro_teardown(void *state);
/*
 * The record's value (JSON) converted by the schema of its event_type and schema_version headers
 * (contract.h), registered under the subject schema_registry.subject_strategy names
 * (registry_subject): magic byte 0, the schema id (4 bytes, big-endian), Avro binary. The
 * value then points into the state's buffer until its next call. ENCODE_REJECT (no schema for
 * the event type, or the payload does not fit it: *why names the field and the rule),
 * ENCODE_HOLD (the registry is down) or ENCODE_STOP (the registry refuses the schema).
 * A tombstone (NULL value) stays one. A source with key_format = "avro" gets its key as an Avro
 * string in the wire format too (schema {"type":"string"} under <topic>-key, or the strategy's
 * subject for it; a tombstone's key as well). Headers schema_id and schema_subject are added; with
 * CloudEvents, ce_dataschema (<registry url>/schemas/ids/<id>) and content-type
 * application/avro. The headers then point into the state's array until its next call.
 * A captured table's record (rec->kind RECORD_CHANGE or RECORD_SNAPSHOT_ROW) is encoded by the
 * schema derived from its table instead, through the same registry client (avro_change.h).
 */
int encode_avro(void *state, record *rec, const char **why);

#endif
