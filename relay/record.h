/* record.h: a record between the build stage and the produce stage, with where it came from. */
#ifndef RELAY_RECORD_H
#define RELAY_RECORD_H

#include "route.h"

struct capture_table;

/* What built a record: the stages after it (transform, encode) may treat each kind its own way. */
typedef enum {
	RECORD_OUTBOX,       /* an outbox row or message of a source (route.c) */
	RECORD_CHANGE,       /* a change of a captured table: its envelope (capture.c) */
	RECORD_SNAPSHOT_ROW, /* a row a snapshot read (capture.c, op "r") */
} record_kind;

/*
 * A built record: topic, key, value and headers (route_msg, JSON text today), its kind and
 * source ("schema.table", or the message prefix). The pointers in msg belong to the stage that
 * set them last and stay valid until that stage's next call.
 */
typedef struct {
	record_kind kind;
	const char *source;
	const char *format; /* the source's format ("json", "avro"); NULL: "json" */
	const struct capture_table *table; /* a change's or snapshot row's table (capture.h), or NULL */
	route_msg *msg;
} record;

#endif
