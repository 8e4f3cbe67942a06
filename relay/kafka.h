/* kafka.h: the idempotent librdkafka producer; delivery reports come back through a callback. */
#ifndef RELAY_KAFKA_H
#define RELAY_KAFKA_H

#include <stdbool.h>
#include <stdio.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"
#include "route.h"

/* Called from kafka_serve for each delivery report: msg_opaque as given to kafka_produce. */
typedef void (*kafka_delivery_fn)(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err);

typedef struct kafka_producer kafka_producer;
typedef struct kafka_topic kafka_topic;

/*
 * Builds the librdkafka configuration from the kafka group (our defaults first, then the file's
 * properties as they are). Reports each rejected property as "FILE:LINE: ..." on err.
 */
rd_kafka_conf_t *kafka_conf_build(const relay_config *cfg, FILE *err);
/*
 * The relay's level for a line of librdkafka's log (syslog level, facility). One event, one
 * line: errors the relay reports again in its own words go to debug. Those are transaction
 * errors (facilities TXNERR, ADDPARTS: the transaction call returns them and eos.c logs them)
 * and fatal errors (FATAL: the relay reads them with rd_kafka_fatal_error and logs them). Every other
 * line keeps its level (error, warn, info; debug above 6): authentication, TLS and unreachable
 * brokers are reported by librdkafka alone.
 */
log_level_t kafka_log_level(int syslog_level, const char *fac);
/*
 * Creates the producer; NULL with a message in errbuf on failure. transactional_id: NULL for
 * the idempotent-only (at-least-once) producer. librdkafka's log lines go through kafka_log_level.
 */
kafka_producer *kafka_producer_new(const relay_config *cfg, const char *transactional_id,
				   kafka_delivery_fn on_delivery, void *opaque, char *errbuf,
				   size_t errlen);
void kafka_producer_free(kafka_producer *kp);
/*
 * Hands one record to librdkafka (copied). Returns 0, RD_KAFKA_RESP_ERR__QUEUE_FULL when the
 * local queue is full (serve delivery reports, then try again), or another error. partition:
 * RD_KAFKA_PARTITION_UA lets the partitioner choose by key. extra: n_extra headers added after
 * m's own (the transaction context; NULL: none), copied too.
 */
rd_kafka_resp_err_t kafka_produce(kafka_producer *kp, const route_msg *m, int32_t partition,
				  const route_header *extra, size_t n_extra, void *msg_opaque);
/*
 * Whether a record of this size can be published: librdkafka's message.max.bytes, and the
 * topic's own max.message.bytes (read when the topic was first used, without compression),
 * asked before any record of a group that must go out whole is produced. kafka_produce refuses
 * one that cannot with RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, as librdkafka does for its limit.
 * extra: bytes the record will carry besides m's own (the transaction context headers:
 * publish_context_room), counted in.
 */
bool kafka_record_fits(kafka_producer *kp, const route_msg *m, size_t extra);
/* Outcome of a transactional call, by librdkafka's error classes. */
typedef enum {
	KAFKA_TXN_OK,
	KAFKA_TXN_RETRY, /* timed out or retriable: call the same function again */
	KAFKA_TXN_ABORT, /* the transaction must be aborted and its input read again */
	KAFKA_TXN_FATAL, /* fenced or a fatal producer error: exit */
} kafka_txn_result;

/* init_transactions: fences older producers with the same transactional.id. */
kafka_txn_result kafka_txn_init(kafka_producer *kp, int timeout_ms, char *err, size_t errlen);
kafka_txn_result kafka_txn_begin(kafka_producer *kp, char *err, size_t errlen);
/* commit_transaction for at most timeout_ms; RETRY means call again (it resumes). */
kafka_txn_result kafka_txn_commit(kafka_producer *kp, int timeout_ms, char *err, size_t errlen);
kafka_txn_result kafka_txn_abort(kafka_producer *kp, int timeout_ms, char *err, size_t errlen);
/* Produces one record with a plain key and value (the checkpoint), copied. */
rd_kafka_resp_err_t kafka_produce_plain(kafka_producer *kp, const char *topic, const char *key,
					const char *value, void *msg_opaque);

/*
 * Makes sure a topic exists before its first record (known topics are remembered): creates it
 * through the admin API when create is true. 0: it exists; -1: it does not (and was not
 * created); -2: Kafka did not answer (try again later). err says which.
 */
int kafka_topic_ready(kafka_producer *kp, const char *topic, bool create, int partitions,
		      int replication_factor, char *err, size_t errlen);

/* The topic's partition count as the broker said at most a minute ago (asked when older; that
 * waits for the broker); -1 with a message when it did not say. */
int kafka_partition_count(kafka_producer *kp, const char *topic, char *err, size_t errlen);

/* Readable when delivery reports or errors wait to be served. */
int kafka_event_fd(const kafka_producer *kp);
/* Serves waiting delivery reports and errors (calls on_delivery); never blocks. */
void kafka_serve(kafka_producer *kp);
/* Drops everything queued or in flight; each gets a delivery report with a purge error. */
void kafka_purge(kafka_producer *kp);
/* Records handed over and not yet reported. */
int kafka_outq_len(kafka_producer *kp);
/* True when the producer's fatal error is a fencing: a newer instance took over. */
bool kafka_fenced(kafka_producer *kp);
/* The producer's transaction.timeout.ms as librdkafka took it (60000 unless the file sets it). */
int kafka_txn_timeout_ms(kafka_producer *kp);
/* True (with the reason) once the producer hit a fatal error and must be recreated. */
bool kafka_fatal(kafka_producer *kp, char *buf, size_t len);

#endif
