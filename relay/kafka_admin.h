/* kafka_admin.h: topic metadata and topic creation, shared by the producer and the checkpoint reader. */
#ifndef RELAY_KAFKA_ADMIN_H
#define RELAY_KAFKA_ADMIN_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

/* Partitions of topic: 0 when it does not exist, -1 (err set) when Kafka did not answer. */
int kafka_admin_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err,
			   size_t errlen);
/*
 * Creates a topic (partitions and replication factor -1: the broker's defaults; cleanup_policy
 * NULL: the broker's). 0 also when it exists already; -1 with err set.
 */
int kafka_admin_create(rd_kafka_t *rk, const char *topic, int partitions, int replication_factor,
		       const char *cleanup_policy, int timeout_ms, char *err, size_t errlen);

/*
 * The topic's max.message.bytes (the broker's limit on a record batch): 0 and *bytes, which is 0
 * when the broker did not say; -1 with err when it did not answer (no DescribeConfigs ACL, ...).
 */
int kafka_admin_max_message_bytes(rd_kafka_t *rk, const char *topic, int timeout_ms, size_t *bytes,
				  char *err, size_t errlen);

#endif
