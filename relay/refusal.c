/* refusal.c: what a Kafka refusal means, and the search for a record the broker refused. */
#include "refusal.h"

#include <string.h>

#include "log.h"

/* Permanent refusals: retrying the same record cannot succeed. */
bool refusal_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
	case RD_KAFKA_RESP_ERR__FATAL:
		return true;
	default:
		return false;
	}
}

/* Refusals of one record for what it is (its size), not of the topic or the producer. */
static bool refusal_is_the_records(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

/*
 * A source row's record the broker refused for itself, in dead-letter mode: noted so that the
 * row is found (records produced alone) and dead-lettered when it is read again.
 */
void refusal_note(broker_refusal *b, bool dead_letter_mode, const in_flight *f,
		  rd_kafka_resp_err_t err)
{
	if (!dead_letter_mode || f->dead_letter || f->row == NO_ROW || !refusal_is_the_records(err))
		return;
	if (!b->searching)
		log_warn("the broker refused a record for its size (%s): reading again with each row's "
			 "records alone, to dead-letter the row it belongs to", rd_kafka_err2str(err));
	b->searching = true;
	if (f->txn_end > b->seen_end)
		b->seen_end = f->txn_end;
	if (f->alone && b->txn_end == 0) {
		b->txn_end = f->txn_end;
		b->row = f->row;
		b->err = err;
	}
}

/* True for the row the broker refused alone, read again now: it is dead-lettered whole. */
bool refusal_is_row(const broker_refusal *b, lsn_t txn_end, uint64_t row)
{
	return b->txn_end != 0 && b->txn_end == txn_end && b->row == row;
}

/*
 * A search for a refused record ends without one when the stream passes the transactions the
 * refused records belonged to, each of their records taken alone (the refusal did not repeat).
 */
void refusal_search_over(broker_refusal *b, lsn_t nextlsn, bool delivery_failed)
{
	if (!b->searching || b->txn_end != 0 || nextlsn <= b->seen_end || delivery_failed)
		return;
	log_info("the records refused for their size were all taken one at a time: records are "
		 "batched again");
	memset(b, 0, sizeof(*b));
}

/*
 * A failed delivery stops the relay when retrying cannot help, except a record refused for its
 * size while the refused row is searched for: reading again finds and dead-letters it.
 */
bool refusal_delivery_fatal(const broker_refusal *b, rd_kafka_resp_err_t err)
{
	return refusal_is_permanent(err) && !(b->searching && refusal_is_the_records(err));
}

/* One row per kind of record: what its refusal leads to. */
static const struct {
	bool dead_letter;
	const char *why; /* when it stops the relay */
} refusal_answers[] = {
	[REFUSED_OUTBOX_ROW] = {true, NULL},
	[REFUSED_CHANGE] = {true, NULL},
	[REFUSED_KEY_CHANGE_WHOLE] = {true, NULL},
	[REFUSED_KEY_CHANGE_PART] = {false, "part of the key change went out already (the open "
					    "Kafka transaction is not committed)"},
	[REFUSED_SNAPSHOT_ROW] = {true, NULL},
	[REFUSED_DEAD_LETTER] = {false, "the dead-letter topic refused the row too"},
};

bool refusal_dead_letters(refused_record kind, const char **why)
{
	*why = refusal_answers[kind].why;
	return refusal_answers[kind].dead_letter;
}
