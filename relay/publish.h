/* publish.h: the produce path: a built record into Kafka, or its row dead-lettered. */
#ifndef RELAY_PUBLISH_H
#define RELAY_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include "relay_state.h"
#include "w2j.h"

/* librdkafka's delivery report (kafka.h's callback; opaque is the relay). */
void publish_on_delivery(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err);
/*
 * Hands one record to Kafka once its topic exists and a Kafka transaction is open (a record for
 * every partition goes to each). A record of a source row of a PostgreSQL transaction carries its
 * context (pg_xid, pg_commit_lsn, pg_txn_index: relay.transaction_headers) and is counted for
 * the transaction topic's END; its BEGIN goes first. *refused gets librdkafka's error when it refuses the record
 * itself (too large, ...): the caller dead-letters the row. dead_letter: counted as one.
 */
outcome publish_produce(relay *r, const route_msg *m, bool dead_letter, rd_kafka_resp_err_t *refused);
/*
 * The bytes a row's record produced now gets besides its own: TXCTX_HEADERS_ROOM when it will
 * carry the transaction context headers (relay.transaction_headers on, a row of a PostgreSQL
 * transaction), else 0. For size checks made before producing (kafka_record_fits).
 */
size_t publish_context_room(const relay *r);
/*
 * A record of the transaction topic (BEGIN, END): produced in the open Kafka transaction like a
 * row's record, without the transaction context; a refusal stops the relay.
 */
outcome publish_produce_meta(relay *r, const route_msg *m);
/*
 * A row that cannot be published (why) goes to the dead-letter topic, or stops the relay with
 * on_error = stop or when even that fails. m: its record as far as it was built (for the key).
 */
outcome publish_reject_row(relay *r, const char *source, const w2j_record *rec,
			      const char *data, size_t len, const char *why, route_msg *m);
/*
 * Kafka refused a record (err) of a row: dead-lettered or the relay stops, by the kind of record
 * (refusal.h's table). m: the record (its key and topic).
 */
outcome publish_refused(relay *r, refused_record kind, const char *source,
			   const w2j_record *rec, const char *data, size_t len,
			   rd_kafka_resp_err_t err, route_msg *m);
/*
 * A row whose format needs a service that is down (enc ENCODE_HOLD, the schema registry): read
 * it again later (OUTCOME_REWIND: the open Kafka transaction aborts, nothing is dropped or
 * dead-lettered); or a schema the registry refuses (ENCODE_STOP): OUTCOME_FATAL, logged with why,
 * before the slot moves past the row.
 */
outcome publish_held(relay *r, const char *source, const w2j_record *rec, int enc,
		     const char *why);
/* Dead-letters the row the broker refused alone, read again now; the search is over. */
outcome publish_reject_refused(relay *r, const char *source, const w2j_record *rec,
				  const char *data, size_t len, route_msg *m);
/* An outbox row or transactional message of a source, as one group: built, produced or rejected. */
outcome publish_row(relay *r, const route_source *src, const w2j_record *rec, const char *data,
		       size_t len);
/* A non-transactional message: dead-lettered (or stops the relay), never published out of order. */
outcome publish_outside(relay *r, const route_source *src, const w2j_record *rec,
			   const char *data, size_t len);
/* A change whose table name cannot be decoded: dead-lettered as one group, never skipped. */
outcome publish_unnamed(relay *r, const w2j_record *rec, const char *data, size_t len,
			   const char *why);

#endif
