/* encode.h: the encode stage: a built, transformed record into the bytes of its format. */
#ifndef RELAY_ENCODE_H
#define RELAY_ENCODE_H

#include "record.h"

/* One output format (kcat's format.c/json.c/avro.c): a row of encode.c's table. */
typedef struct {
	const char *name; /* the format's name in the configuration */
	/* Rewrites rec->msg's key and value into the format; 0, or -1 with *why (dead-lettered). */
	int (*encode)(record *rec, const char **why);
} encoder;

/* The encoder of a format name, or NULL when there is none by that name. */
const encoder *encode_find(const char *name);
/* Encodes rec with the format of its source (JSON today): 0, or -1 with *why. */
int encode_record(record *rec, const char **why);

#endif
