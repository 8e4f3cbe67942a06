/* encode.h: the encode stage: a built, transformed record into the bytes of its format. */
#ifndef RELAY_ENCODE_H
#define RELAY_ENCODE_H

#include <stddef.h>

#include "config.h"
#include "record.h"

/* What encoding a record came to (pipeline_finish passes it on). */
enum {
	ENCODE_OK = 0,
	ENCODE_REJECT = -1, /* the row cannot go out as it is: dead-lettered with *why */
	ENCODE_HOLD = -2,   /* a service the format needs (the schema registry) is down: read the
			     * row again later (the Kafka transaction aborts; nothing is dropped) */
	ENCODE_STOP = -3,   /* cannot go on (a schema the registry refuses): stop with *why */
};

/* One output format (kcat's format.c/json.c/avro.c): a row of encode.c's table. */
typedef struct {
	const char *name; /* the format's name in the configuration */
	/* Rewrites rec->msg's key and value into the format: ENCODE_OK, or another ENCODE_* with *why. */
	int (*encode)(record *rec, const char **why);
} encoder;

/* The encoder of a format name, or NULL when there is none by that name. */
const encoder *encode_find(const char *name);
/*
 * Prepares the formats the configuration uses (Avro: the schema directory read, the registry
 * client made): 0, or -1 with a message in err (the relay does not start).
 */
int encode_setup(const relay_config *cfg, char *err, size_t errlen);
/* Frees what encode_setup made. */
void encode_teardown(void);
/* Encodes rec with its format (rec->format, NULL: JSON): ENCODE_OK or another ENCODE_* with *why. */
int encode_record(record *rec, const char **why);

#endif
