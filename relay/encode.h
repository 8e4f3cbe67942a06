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

/*
 * One output format (kcat's format.c/json.c/avro.c): a row of encode.c's table. A format with
 * state (Avro: schemas, the registry client) makes it in setup and gets it back in encode.
 */
typedef struct {
	const char *name; /* the format's name in the configuration */
	/* Its state for this configuration: NULL with err when it cannot work (the relay does not
	 * start); setup NULL: the format has no state. */
	void *(*setup)(const relay_config *cfg, char *err, size_t errlen);
	void (*teardown)(void *state);
	/* Rewrites rec->msg's key and value into the format: ENCODE_OK, or another ENCODE_* with *why. */
	int (*encode)(void *state, record *rec, const char **why);
	/* Checks before streaming (Avro: the registry's compatibility rules): ENCODE_OK, or
	 * ENCODE_STOP with err (the relay does not start). NULL: none. */
	int (*start)(void *state, const relay_config *cfg, char *err, size_t errlen);
} encoder;

/* The formats of one configuration, each with its state. */
typedef struct encoders encoders;

/* The encoder of a format name, or NULL when there is none by that name. */
const encoder *encode_find(const char *name);
/*
 * Prepares the formats the configuration uses (Avro: the schema directory read, the registry
 * client made): the stage, or NULL with a message in err (the relay does not start).
 */
encoders *encode_new(const relay_config *cfg, char *err, size_t errlen);
/* Frees what encode_new made (NULL: nothing). */
void encode_free(encoders *e);
/*
 * The formats' checks before streaming (encoder.start), in table order: ENCODE_OK, or the first
 * ENCODE_STOP with err.
 */
int encode_start(encoders *e, const relay_config *cfg, char *err, size_t errlen);
/* Encodes rec with its format (rec->format, NULL: JSON): ENCODE_OK or another ENCODE_* with *why. */
int encode_record(encoders *e, record *rec, const char **why);

#endif
