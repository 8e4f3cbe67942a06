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
 * Asks for the topic's max.message.bytes (the broker's limit on a record batch) without waiting:
 * the answer arrives on the returned queue, which the caller owns (kafka_admin_max_message_bytes
 * reads it; rd_kafka_queue_destroy drops it, answered or not).
 */
rd_kafka_queue_t *kafka_admin_describe_topic(rd_kafka_t *rk, const char *topic);
/*
 * The answer on q, waiting up to timeout_ms: 1 and *bytes (0 when the broker did not say);
 * 0 when there is none yet; -1 with err when the broker refused (no DescribeConfigs ACL, ...).
 */
int kafka_admin_max_message_bytes(rd_kafka_queue_t *q, const char *topic, int timeout_ms,
				  size_t *bytes, char *err, size_t errlen);

#endif
