/* capture_names.h: the topic names of captured tables, for code that cannot include capture.h (jansson's JSON_* names clash). */
#ifndef RELAY_CAPTURE_NAMES_H
#define RELAY_CAPTURE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Writes to topic (len bytes, cut to fit) the topic name the entry's template gives
 * schema.table; true when it is a valid Kafka topic name.
 */
bool capture_topic_valid(const relay_config *cfg, const capture_config *e, const char *schema,
			 const char *table, char *topic, size_t len);

#endif
