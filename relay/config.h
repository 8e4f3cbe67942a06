/* config.h: the relay's settings, loaded from a libconfig file through one table of keys. */
#ifndef RELAY_CONFIG_H
#define RELAY_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

/* One librdkafka property, passed through as it is; line is where the config file set it. */
typedef struct {
	char *name;
	char *value;
	int line;
} kafka_property;

typedef struct {
	char *path; /* the file it was read from */

	/* postgresql */
	char *pg_conninfo;
	char *slot;
	bool create_slot;
	char **tables;
	int n_tables;
	int status_interval_ms;

	/* outbox */
	char *topic_template;

	/* relay */
	char *delivery; /* "exactly-once" or "at-least-once" */
	bool exactly_once;
	char *checkpoint_topic;
	int transaction_max_records;
	int transaction_max_ms;
	char *log_level;
	int shutdown_timeout_ms;
	int reconnect_max_backoff_ms;

	/* kafka: librdkafka properties */
	kafka_property *kafka;
	int n_kafka;
} relay_config;

/*
 * Loads and validates a file. On error returns NULL and writes one message per problem,
 * each starting with "FILE:LINE: ", to err (a FILE such as stderr).
 */
relay_config *config_load(const char *path, FILE *err);
void config_free(relay_config *cfg);
/* Prints every key with its type, default and meaning (the source of the docs' key table). */
void config_describe(FILE *out);
/* Finds a kafka property by its librdkafka name; NULL when the file does not set it. */
const char *config_kafka_get(const relay_config *cfg, const char *name);

#endif
