/* checkpoint.h: the relay's PostgreSQL position stored in Kafka, written in each Kafka transaction. */
#ifndef RELAY_CHECKPOINT_H
#define RELAY_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "lsn.h"

/*
 * Everything up to and including the PostgreSQL transaction that ends at lsn is in Kafka. When a
 * large transaction was split across Kafka transactions, partial_nextlsn names it (by the end of
 * its commit record) and partial_rows says how many of its outbox rows are in Kafka already.
 */
typedef struct {
	lsn_t lsn;
	lsn_t partial_nextlsn; /* 0: no transaction is partly published */
	uint64_t partial_rows;
} checkpoint;

/* JSON text of a checkpoint record (malloc'd), e.g. {"version":1,"slot":"s","lsn":"0/16B3748"}. */
char *checkpoint_encode(const checkpoint *cp, const char *slot);
/* Parses a checkpoint record; -1 when it is not one. */
int checkpoint_decode(const char *text, size_t len, checkpoint *cp);

/* Outcome of loading: found, none stored for this key, or an error (err says what). */
typedef enum {
	CHECKPOINT_FOUND,
	CHECKPOINT_NONE,     /* the topic has no checkpoint for this key */
	CHECKPOINT_NO_TOPIC, /* the topic is missing and may not be created */
	CHECKPOINT_ERROR,    /* Kafka did not answer as expected: try again later */
} checkpoint_result;

/*
 * Reads the newest committed checkpoint of key from topic (read_committed, to the end). When the
 * topic does not exist: creates it (compacted, one partition) if create is true, else an error.
 */
checkpoint_result checkpoint_load(const relay_config *cfg, const char *topic, const char *key,
				  bool create, checkpoint *cp, char *err, size_t errlen);
/*
 * The same, also returning in *state the newest committed record of key "<key>.snapshot" (the
 * snapshot progress, malloc'd; NULL when there is none or no checkpoint was found).
 */
/*
 * Creates the checkpoint topic when it does not exist (compacted, one partition). Done before
 * the slot is created, so that a slot never exists without its checkpoint topic: that pair is
 * refused, as the topic was deleted. 0, or -1 with a message in err.
 */
int checkpoint_create_topic(const relay_config *cfg, const char *topic, char *err, size_t errlen);
checkpoint_result checkpoint_load_state(const relay_config *cfg, const char *topic, const char *key,
					bool create, checkpoint *cp, char **state, char *err,
					size_t errlen);

#endif
