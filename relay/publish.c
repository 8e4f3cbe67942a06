/* publish.c: the produce path: a built record into Kafka, or its row dead-lettered. */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "eos.h"
#include "gate.h"
#include "inflight.h"
#include "kafka.h"
#include "log.h"
#include "encode.h"
#include "pipeline.h"
#include "loop.h"
#include "lsn.h"
#include "metrics.h"
#include "pending.h"
#include "progress.h"
#include "refusal.h"
#include "route.h"
#include "signals.h"
#include "txctx.h"
#include "txn.h"
#include "txtopic.h"
#include "w2j.h"
#include "xalloc.h"

/* Before a topic's first record: it must exist (or be created); a missing one stops the relay. */
static outcome ensure_topic(relay *r, const char *topic)
{
	char err[512];
	int rc = kafka_topic_ready(r->kp, topic, r->cfg->auto_create_topics, r->cfg->topic_partitions,
				   r->cfg->topic_replication_factor, err, sizeof(err));
	if (rc == 0)
		return OUTCOME_OK;
	if (rc == -1) {
		log_error("%s", err);
		return OUTCOME_FATAL;
	}
	log_warn("%s", err);
	return OUTCOME_REWIND;
}

/*
 * While a refused record is looked for: waits for the delivery report of the record just
 * produced, so that it was in a batch of its own (the broker refuses whole batches).
 */
static outcome wait_alone(relay *r)
{
	r->alone_waiting = true;
	while (r->alone_waiting && !r->delivery_failed) {
		if (loop_wait(r, false, -1) < 0)
			return OUTCOME_RETRY;
		if (signals_stop_requested())
			return OUTCOME_STOP;
	}
	return r->delivery_failed ? OUTCOME_REWIND : OUTCOME_OK;
}

/*
 * The level of a failed delivery's line: debug when another line reports its cause already
 * (records purged by an abort, or failed with a producer that failed for good).
 */
static log_level_t delivery_failure_level(relay *r, rd_kafka_resp_err_t err)
{
	char why[8];

	if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
		return LOG_LVL_DEBUG;
	return r->kp && kafka_fatal(r->kp, why, sizeof(why)) ? LOG_LVL_DEBUG : LOG_LVL_ERROR;
}

/* Delivery report: an ack moves the tracker; a failure stops the stream before anything moves. */
void publish_on_delivery(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err)
{
	relay *r = opaque;
	uintptr_t id = (uintptr_t)msg_opaque;
	uint64_t seq = UINT64_MAX; /* the checkpoint record (eos.c): no PostgreSQL transaction */

	if (id < r->flight.cap) {
		const in_flight *f = &r->flight.slots[id];
		seq = f->seq;
		if (f->alone)
			r->alone_waiting = false;
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			refusal_note(&r->refusal, r->cfg->dead_letter, f, err);
		/* At-least-once: an acknowledged record is published (exactly-once: at the commit). */
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && !r->eos_on) {
			metrics_published(f->topic, 1, f->bytes);
			if (f->dead_letter)
				metrics_dead_letters(1);
			metrics_latency(clock_wall_ms() - f->start_ms, 1);
		}
		r->flight_bytes -= f->held;
		inflight_give(&r->flight, (uint32_t)id);
	}
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		progress_acked(&r->prog, seq);
		r->rewinds = 0;
		return;
	}
	progress_lost(&r->prog, seq);
	/* One line per event: see delivery_failure_level. */
	if (!r->delivery_failed)
		log_msg(delivery_failure_level(r, err), "Kafka did not take a record: %s",
			rd_kafka_err2str(err));
	r->delivery_failed = true;
	if (!r->delivery_err || refusal_is_permanent(err))
		r->delivery_err = err;
}

/* What a produced record is: a row's own, a row's dead letter, or a transaction topic record. */
typedef enum { REC_ROW, REC_DEAD_LETTER, REC_META } record_role;

/*
 * True when the record being produced is one of a source row of a PostgreSQL transaction
 * (outbox row, change, their dead letters): it carries the transaction context and is counted.
 * Snapshot rows, backfilled rows and messages outside a transaction are not.
 */
static bool in_txn_context(const relay *r)
{
	return r->in_txn && !r->skip_txn && r->cur_row != NO_ROW && !r->backfilling;
}

/* Size checks ahead of producing count the headers only when the record will carry them. */
size_t publish_context_room(const relay *r)
{
	return r->cfg->transaction_headers && in_txn_context(r) ? TXCTX_HEADERS_ROOM : 0;
}

/* The transaction context headers of the next record (h points into th). */
static void context_headers(const relay *r, txctx_headers *th, route_header h[3])
{
	txctx_peek(&r->tx, th);
	h[0] = (route_header){TXCTX_H_XID, sizeof(TXCTX_H_XID) - 1, th->xid, strlen(th->xid)};
	h[1] = (route_header){TXCTX_H_LSN, sizeof(TXCTX_H_LSN) - 1, th->lsn, strlen(th->lsn)};
	h[2] = (route_header){TXCTX_H_INDEX, sizeof(TXCTX_H_INDEX) - 1, th->index, strlen(th->index)};
}

/*
 * Hands one record to Kafka for one partition (RD_KAFKA_PARTITION_UA: by key), waiting (with
 * status updates flowing) while its queue is full. *refused gets librdkafka's error when it
 * refuses the record itself (too large, ...). role: a dead letter counts in the metrics; a
 * transaction topic record is no row's. counted: it is counted in its PostgreSQL transaction
 * (and carries the transaction context headers, unless relay.transaction_headers is off).
 */
static outcome produce_to(relay *r, const route_msg *m, int32_t partition, record_role role,
			     bool counted, rd_kafka_resp_err_t *refused)
{
	bool dead_letter = role == REC_DEAD_LETTER, own = role == REC_ROW;
	bool with_headers = counted && r->cfg->transaction_headers;
	txctx_headers th;
	route_header h[3];
	outcome e;

	if (with_headers)
		context_headers(r, &th, h);
	/* The slot goes back with the record's delivery report, or below when Kafka did not take it. */
	uint32_t id = inflight_take(&r->flight);
	in_flight f = {
		.seq = r->txn_seq,
		.start_ms = r->txn_commit_ms > 0 ? r->txn_commit_ms : clock_wall_ms(),
		.bytes = m->key_len + m->value_len,
		.held = inflight_record_held(m),
		.topic = (uint16_t)metrics_topic(m->topic),
		.dead_letter = dead_letter,
		.alone = r->refusal.searching && own && r->cur_row != NO_ROW,
		.txn_end = r->txn_end,
		.row = own ? r->cur_row : NO_ROW,
	};
	r->flight.slots[id] = f;
	for (;;) {
		char reason[512];
		rd_kafka_resp_err_t err = kafka_produce(r->kp, m, partition, with_headers ? h : NULL,
							with_headers ? 3 : 0, (void *)(uintptr_t)id);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (counted)
				txctx_count(&r->tx, m->topic);
			r->flight_bytes += f.held;
			progress_produced(&r->prog, r->txn_seq);
			r->records_out++;
			if (r->eos_on) {
				eos_produced(&r->eos);
				pending_add(&r->pend, &f);
			}
			if (f.alone && (e = wait_alone(r)) != OUTCOME_OK)
				return e;
			return txn_maybe_commit(r, false);
		}
		if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
			*refused = err; /* about this record: it can be dead-lettered */
			e = OUTCOME_FATAL;
		} else if (err == RD_KAFKA_RESP_ERR__FATAL || kafka_fatal(r->kp, reason, sizeof(reason))) {
			/* The producer failed for good (librdkafka 2.0.2 may return the fatal error's
			 * own code): its reason (librdkafka's lines are at debug). */
			kafka_fatal(r->kp, reason, sizeof(reason));
			log_error("Kafka producer failed: %s", reason);
			e = OUTCOME_FATAL;
		} else if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			/* About the producer's transaction (abortable: _STATE): read again. */
			log_warn("Kafka did not take a record for %s: %s", m->topic, rd_kafka_err2str(err));
			e = OUTCOME_REWIND;
		} else if (loop_wait(r, false, -1) < 0) {
			e = OUTCOME_RETRY;
		} else if (loop_should_stop(r)) {
			e = OUTCOME_STOP;
		} else if (r->delivery_failed) {
			e = OUTCOME_REWIND;
		} else {
			continue;
		}
		inflight_give(&r->flight, id);
		return e;
	}
}

/*
 * Hands one record to Kafka once its topic exists and a Kafka transaction is open (role: whose
 * record). A record of a source row of a PostgreSQL transaction gets the transaction context
 * and is counted; its transaction's BEGIN record goes first. A record for every partition (a
 * truncate) goes to each partition the topic has now, so a consumer of any partition sees it
 * after that partition's earlier records.
 */
static outcome produce_record(relay *r, const route_msg *m, record_role role,
				 rd_kafka_resp_err_t *refused)
{
	char err[512];
	int n = 1;
	bool counted = role != REC_META && in_txn_context(r);
	outcome e = ensure_topic(r, m->topic);

	*refused = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (e != OUTCOME_OK)
		return e;
	if (r->eos_on && !r->eos.open &&
	    ((e = gate_before_open(r)) != OUTCOME_OK || (e = txn_wait_gap(r)) != OUTCOME_OK))
		return e;
	if (r->eos_on) {
		outcome er = eos_ensure_open(&r->eos, err, sizeof(err));
		if (er != OUTCOME_OK) {
			log_error("%s", err);
			return er;
		}
	}
	if (counted && !r->tx.begun && (e = txtopic_begin(r)) != OUTCOME_OK)
		return e; /* the transaction topic's BEGIN goes before its first record */
	if (!m->every_partition)
		return produce_to(r, m, RD_KAFKA_PARTITION_UA, role, counted, refused);
	if ((n = kafka_partition_count(r->kp, m->topic, err, sizeof(err))) < 0) {
		log_warn("cannot send a record to every partition: %s", err);
		return OUTCOME_REWIND;
	}
	for (int32_t p = 0; p < n && e == OUTCOME_OK && !*refused; p++)
		e = produce_to(r, m, p, role, counted, refused);
	return e;
}

outcome publish_produce(relay *r, const route_msg *m, bool dead_letter, rd_kafka_resp_err_t *refused)
{
	return produce_record(r, m, dead_letter ? REC_DEAD_LETTER : REC_ROW, refused);
}

outcome publish_produce_meta(relay *r, const route_msg *m)
{
	rd_kafka_resp_err_t refused;
	outcome e = produce_record(r, m, REC_META, &refused);

	if (refused) {
		log_error("Kafka refused a record of the transaction topic %s: %s; stopping", m->topic,
			  rd_kafka_err2str(refused));
		return OUTCOME_FATAL;
	}
	return e;
}

/*
 * A row that cannot be published goes to the dead-letter topic (and the relay goes on), or,
 * with on_error = stop or when even that fails, stops the relay before the slot moves past it.
 */
outcome publish_reject_row(relay *r, const char *source, const w2j_record *rec,
			     const char *data, size_t len, const char *why, route_msg *m)
{
	char a[LSN_TEXT_MAX];
	rd_kafka_resp_err_t refused;
	const char *topic = m->topic;

	lsn_format(rec->lsn, a);
	if (!r->cfg->dead_letter) {
		log_error("cannot publish the row of %s at LSN %s (xid %llu): %s; stopping so that "
			  "it is not skipped (relay.on_error = stop): fix it and restart",
			  source, a, (unsigned long long)rec->xid, why);
		return OUTCOME_FATAL;
	}
	log_warn("dead-lettering the row of %s at LSN %s (xid %llu): %s", source, a,
		 (unsigned long long)rec->xid, why);
	router_dead_letter_named(r->router, source, rec, data, len, why, topic, m);
	pipeline_dead_letter(r->pipe, source, m);
	outcome e = publish_produce(r, m, true, &refused);
	if (refused)
		return publish_refused(r, REFUSED_DEAD_LETTER, source, rec, data, len, refused, m);
	return e;
}

/*
 * Kafka refused a record for itself (err): refusal.c's table says whether its row is
 * dead-lettered or the relay stops, for each kind of record, here and nowhere else.
 */
outcome publish_refused(relay *r, refused_record kind, const char *source,
			   const w2j_record *rec, const char *data, size_t len,
			   rd_kafka_resp_err_t err, route_msg *m)
{
	const char *why = "the dead-letter topic refused the row too";

	if (kind != REFUSED_DEAD_LETTER && refusal_dead_letters(kind, &why)) /* never loops */
		return publish_reject_row(r, source, rec, data, len, rd_kafka_err2str(err), m);
	log_error("Kafka refused a record of the row of %s (topic %s): %s; %s; stopping", source,
		  m->topic, rd_kafka_err2str(err), why);
	return OUTCOME_FATAL;
}

/* Dead-letters the refused row (m: its record as built, for the key); the search is over. */
outcome publish_reject_refused(relay *r, const char *source, const w2j_record *rec,
				 const char *data, size_t len, route_msg *m)
{
	char why[160];

	snprintf(why, sizeof(why), "%s (the broker refused its record)",
		 rd_kafka_err2str(r->refusal.err));
	memset(&r->refusal, 0, sizeof(r->refusal));
	return publish_reject_row(r, source, rec, data, len, why, m);
}

/* (Declared in publish.h: a row the registry holds back or refuses.) */
outcome publish_held(relay *r, const char *source, const w2j_record *rec, int enc,
			    const char *why)
{
	char a[LSN_TEXT_MAX];

	(void)r;
	lsn_format(rec->lsn, a);
	if (enc == ENCODE_HOLD) {
		log_warn("holding back the row of %s at LSN %s: %s", source, a, why);
		return OUTCOME_REWIND;
	}
	log_error("cannot publish the row of %s at LSN %s: %s; stopping", source, a, why);
	return OUTCOME_FATAL;
}

/* Routes and produces a matched row or message; what fails goes to publish_reject_row. */
outcome publish_row(relay *r, const route_source *src, const w2j_record *rec,
			  const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	rd_kafka_resp_err_t refused;
	int enc = ENCODE_OK;
	outcome e;

	metrics_rows_read(1);
	txn_group_begin(r);
	if (r->eos_on && rec->action == W2J_INSERT && !r->backfilling)
		eos_outbox_row(&r->eos); /* its xid is listed for a lost slot's recovery */
	if (router_build(r->router, src, rec, &m, &why) < 0 ||
	    (enc = pipeline_finish(r->pipe, RECORD_OUTBOX, router_source_name(src),
				   router_source_format(src), &m, &why)) == ENCODE_REJECT) {
		e = publish_reject_row(r, router_source_name(src), rec, data, len, why, &m);
	} else if (enc != ENCODE_OK) {
		e = publish_held(r, router_source_name(src), rec, enc, why);
	} else if (refusal_is_row(&r->refusal, r->txn_end, r->cur_row)) {
		e = publish_reject_refused(r, router_source_name(src), rec, data, len, &m);
	} else {
		e = publish_produce(r, &m, false, &refused);
		if (refused)
			e = publish_refused(r, REFUSED_OUTBOX_ROW, router_source_name(src), rec, data,
					    len, refused, &m);
	}
	return txn_group_end(r, e, true);
}

/*
 * A non-transactional message has no transaction to keep its place in: it is dead-lettered (or
 * stops the relay), never published into another transaction's order. In exactly-once mode its
 * dead letter rides in the open Kafka transaction; it may be dead-lettered again after a crash.
 */
outcome publish_outside(relay *r, const route_source *src, const w2j_record *rec,
				  const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	uint64_t seq = r->txn_seq;
	int64_t commit_ms = r->txn_commit_ms;
	outcome e;

	metrics_rows_read(1);
	router_build(r->router, src, rec, &m, &why);
	r->cur_row = NO_ROW;
	/* No PostgreSQL transaction to account it to: an entry of its own, which moves no position
	 * but keeps the relay from being idle (a keepalive moving the slot past it) until Kafka has
	 * it; a failed delivery leaves it unfinished, so it is read again. */
	r->txn_seq = progress_begin(&r->prog, 0);
	r->txn_commit_ms = 0;    /* nor a commit time: its latency counts from now */
	e = publish_reject_row(r, router_source_name(src), rec, data, len, why, &m);
	progress_commit(&r->prog, r->txn_seq);
	r->txn_seq = seq;
	r->txn_commit_ms = commit_ms;
	return e;
}

/*
 * A change whose table name cannot be decoded (so not matched against the capture list): it
 * may be a captured table's, so it is dead-lettered (source: the name as wal2json wrote it),
 * never skipped.
 */
outcome publish_unnamed(relay *r, const w2j_record *rec, const char *data, size_t len,
				 const char *why)
{
	size_t n = rec->schema.len + rec->table.len + 2;
	char *source = xmalloc(n);
	route_msg m;
	outcome e;

	snprintf(source, n, "%.*s.%.*s", (int)rec->schema.len, rec->schema.ptr, (int)rec->table.len,
		 rec->table.ptr);
	memset(&m, 0, sizeof(m));
	metrics_rows_read(1);
	txn_group_begin(r);
	e = txn_group_end(r, publish_reject_row(r, source, rec, data, len, why, &m), true);
	free(source);
	return e;
}
