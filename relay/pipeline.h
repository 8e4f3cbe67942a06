/* pipeline.h: the stages a built record passes before it is produced: transform, then encode. */
#ifndef RELAY_PIPELINE_H
#define RELAY_PIPELINE_H

#include <stddef.h>

#include "config.h"
#include "record.h"
#include "transform.h"

/* The stages' state for one configuration (schemas, the registry client, transforms). */
typedef struct pipeline pipeline;

/*
 * The stages for cfg, made once per run of the relay (and by check-config, to check the schema
 * files): NULL with a message in err when a stage cannot work (the relay does not start); the
 * message starts with the config file and line ("FILE:LINE: ").
 */
pipeline *pipeline_new(const relay_config *cfg, char *err, size_t errlen);
/*
 * The stages' checks before streaming (encode_start: the Avro schema files against the
 * registry's compatibility rules): ENCODE_OK, or ENCODE_STOP with err, the one line saying why
 * the relay does not start. A service that is down does not stop the start (encode_avro.h).
 */
int pipeline_start(pipeline *p, const relay_config *cfg, char *err, size_t errlen);
/* Frees what pipeline_new made (NULL: nothing). */
void pipeline_free(pipeline *p);
/*
 * The stages after build, in order: transform (transform.h), then encode (encode.h) in the
 * record's format ("json", "avro"; NULL: JSON). Every builder's record passes here before its
 * size is checked and before it is produced, so those see the bytes that go out. The builders
 * check UTF-8 of outbox rows and changes themselves (route.c, capture.c; a snapshot row's and a
 * key change's after this stage): a transform that writes text must write UTF-8. ENCODE_OK (0),
 * or with *why: ENCODE_REJECT (-1: the row is dead-lettered, or stops the relay, like any row
 * that cannot be published), ENCODE_HOLD (a service the format needs is down: read again later)
 * or ENCODE_STOP (encode.h). m's pointers then belong to the last stage that set them, until
 * that stage's next call.
 *
 *   stream -> decode (w2j) -> dispatch -> build (route, capture) -> pipeline_finish ->
 *   produce (publish) -> delivery report (inflight) -> commit (txn) -> confirm (status)
 */
int pipeline_finish(pipeline *p, record_kind kind, const char *source, const char *format,
		    route_msg *m, const char **why);
/*
 * The same for a captured table's record (RECORD_CHANGE, RECORD_SNAPSHOT_ROW): its source is the
 * table's name, its format the capture entry's, and the encoder gets the table (its columns and
 * their types: the Avro format derives the schema from them).
 */
int pipeline_finish_capture(pipeline *p, record_kind kind, const struct capture_table *t,
			    route_msg *m, const char **why);

/*
 * A row's dead letter (router_dead_letter: the raw row as its value), before it is produced:
 * protected by the transform stage (transform_dead_letter), so that no dead letter carries in
 * clear a field the main topic would have protected. m's pointers then belong to the stage.
 */
void pipeline_dead_letter(pipeline *p, const char *source, route_msg *m);
/* The transform stage (a snapshot seals its stored position with it). */
transform *pipeline_transform(pipeline *p);
/* True when the transform stage has the hash key (protected key columns are hashed in keys). */
bool pipeline_can_hash(const pipeline *p);

#endif
