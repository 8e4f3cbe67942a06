/* refusal.h: what a Kafka refusal means, and the search for a record the broker refused. */
#ifndef RELAY_REFUSAL_H
#define RELAY_REFUSAL_H

#include <stdbool.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "inflight.h"
#include "lsn.h"

/*
 * A record the broker refused for itself (too large for the topic's max.message.bytes), in
 * dead-letter mode. The broker refuses a whole batch, so every record in it reports the error:
 * the session is read again with each source row's records produced alone (waiting for their
 * delivery) until one is refused alone. The next reading dead-letters that row whole.
 * A zeroed value: no search.
 */
typedef struct {
	bool searching;         /* a refusal was seen: produce records alone */
	lsn_t seen_end;         /* the newest transaction (commit end) a refused record belonged to */
	lsn_t txn_end;          /* the refused row, once it was refused alone (0: not known yet) */
	uint64_t row;
	rd_kafka_resp_err_t err;
} broker_refusal;

/* Refusals that retrying the same record cannot get past. */
bool refusal_is_permanent(rd_kafka_resp_err_t err);
/* Whether a failed delivery (err) stops the relay (true) or the session is read again. */
bool refusal_delivery_fatal(const broker_refusal *b, rd_kafka_resp_err_t err);
/*
 * A delivery report's failure (err) of record f: in dead-letter mode, a source row's record
 * refused for its size starts (or narrows) the search.
 */
void refusal_note(broker_refusal *b, bool dead_letter_mode, const in_flight *f,
		  rd_kafka_resp_err_t err);
/* True for the row the broker refused alone (transaction txn_end, ordinal row), read again. */
bool refusal_is_row(const broker_refusal *b, lsn_t txn_end, uint64_t row);
/*
 * At a transaction's BEGIN (its commit end nextlsn): a search that found nothing ends once the
 * stream passed every transaction a refused record belonged to, each record taken alone.
 */
void refusal_search_over(broker_refusal *b, lsn_t nextlsn, bool delivery_failed);

/* The records Kafka may refuse for themselves (too large, ...): each has one answer, in refusal.c. */
typedef enum {
	REFUSED_OUTBOX_ROW,      /* an outbox row's or message's record */
	REFUSED_CHANGE,          /* a captured change's record or tombstone */
	REFUSED_KEY_CHANGE_WHOLE, /* a key change's first record: nothing of it went out */
	REFUSED_KEY_CHANGE_PART, /* a key change's record after part of it went out */
	REFUSED_SNAPSHOT_ROW,    /* a snapshot row's record */
	REFUSED_DEAD_LETTER,     /* a dead letter */
} refused_record;

/*
 * What follows Kafka's refusal of a record of this kind: true, its row is dead-lettered (with
 * relay.on_error = dead-letter); false, the relay stops before anything moves (*why says why:
 * nothing can be taken back, or there is nowhere else for it to go).
 */
bool refusal_dead_letters(refused_record kind, const char **why);

#endif
