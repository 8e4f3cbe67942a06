/* session.c: the life of a session: open, settle, stream, end; one place decides what follows. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "backfill_run.h"
#include "capture.h"
#include "checkpoint.h"
#include "clock.h"
#include "eos.h"
#include "eos_names.h"
#include "kafka.h"
#include "log.h"
#include "loop.h"
#include "lsn.h"
#include "metrics.h"
#include "notify.h"
#include "pending.h"
#include "pg_stream.h"
#include "progress.h"
#include "protect_scope.h"
#include "pipeline.h"
#include "publish.h"
#include "relay.h"
#include "signals.h"
#include "slot_start.h"
#include "snapshot.h"
#include "standby.h"
#include "status.h"
#include "strbuf.h"
#include "txn.h"
#include "w2j_filter.h"

/* The first wait before connecting again; it doubles up to relay.reconnect_max_backoff_ms. */
#define BACKOFF_START_MS 500

/* How long the server gets to end the stream cleanly (and apply the last status). */
#define CLOSE_TIMEOUT_MS 5000

/* The normal connection for catalog reads and snapshots, (re)opened when needed; NULL if down. */
PGconn *session_sql(relay *r, char *err, size_t errlen)
{
	if (r->sql && PQstatus(r->sql) == CONNECTION_OK)
		return r->sql;
	PQfinish(r->sql);
	r->sql = pg_sql_connect(r->cfg->pg_conninfo, r->cfg->pg_password, "outbox-relay-capture", 10);
	/* Its queries block the main loop: a lock or a slow scan must not stop status updates. */
	if (PQstatus(r->sql) == CONNECTION_OK) {
		PGresult *res = PQexec(r->sql, "SET statement_timeout = '30s'; SET lock_timeout = '5s'");
		PQclear(res);
		if (r->cfg->capture_avro) /* the snapshot's texts as the stream's (capture.h) */
			PQclear(PQexec(r->sql, CAPTURE_AVRO_SESSION_SQL));
		return r->sql;
	}
	snprintf(err, errlen, "connecting for catalog reads and snapshots: %s", PQerrorMessage(r->sql));
	PQfinish(r->sql);
	r->sql = NULL;
	return NULL;
}

/*
 * Forgets what is not acknowledged (or committed) and closes the stream; the next session starts
 * right after the confirmed position, so what follows it is read and produced again.
 */
static void end_session(relay *r)
{
	progress_reset(&r->prog);
	r->in_txn = false;
	r->idle_end = 0; /* a position of this server's stream */
	r->hold_commit = false;
	r->delivery_failed = false;
	r->delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	pg_stream_close(r->pg, r->pg_lost ? 0 : CLOSE_TIMEOUT_MS);
	r->pg = NULL;
	r->pg_lost = false;
	if (r->gate)
		standby_gate_reset(r->gate); /* the next session may read another server */
}

/* Creates the producer once; in exactly-once mode also fences older instances of this relay. */
static outcome setup_kafka(relay *r, char *err, size_t errlen)
{
	strbuf id = {0};
	outcome res = OUTCOME_OK;

	if (r->kp)
		return OUTCOME_OK;
	eos_transactional_id(r->cfg, pg_stream_sysid(r->pg), &id);
	/* Hand-off: the producer calls publish_on_delivery with r from kafka_serve, on this thread. */
	r->kp = kafka_producer_new(r->cfg, r->eos_on ? strbuf_str(&id) : NULL, publish_on_delivery, r,
				   err, errlen);
	if (!r->kp) {
		res = OUTCOME_FATAL;
	} else if (r->eos_on) {
		eos_init(&r->eos, r->cfg, strbuf_str(&id));
		log_info("exactly-once: transactional.id %s, checkpoints in %s", strbuf_str(&id),
			 r->cfg->checkpoint_topic);
		if (eos_start(&r->eos, r->kp, txn_init_tick, r) != OUTCOME_OK) {
			snprintf(err, errlen, "Kafka transactions could not start (see above)");
			res = OUTCOME_FATAL;
		}
	}
	strbuf_free(&id);
	return res;
}

/*
 * Change capture: the tables the patterns take now, each with a key (or refused, loudly); on
 * the first session, the snapshots of tables never snapshotted are queued.
 */
static outcome setup_capture(relay *r, char *err, size_t errlen)
{
	capture_table **tables;
	int n;
	PGconn *conn;

	if (!r->cap)
		return OUTCOME_OK;
	if (!(conn = session_sql(r, err, errlen)))
		return OUTCOME_RETRY;
	if (capture_resolve_all(r->cap, conn, &tables, &n, err, errlen) < 0)
		return PQstatus(conn) == CONNECTION_OK ? OUTCOME_FATAL : OUTCOME_RETRY;
	for (int i = 0; i < n; i++) {
		if (!tables[i]->refusal)
			continue;
		if (!capture_is_pattern(tables[i]->cfg)) {
			snprintf(err, errlen, "cannot capture table %s: %s", tables[i]->name,
				 tables[i]->refusal);
			return OUTCOME_FATAL;
		}
		/* One table a pattern takes must not keep the others from streaming. */
		log_warn("capture: cannot capture table %s (taken by the pattern %s): %s; its changes "
			 "go to the dead-letter topic while the other tables stream", tables[i]->name,
			 tables[i]->cfg->tables, tables[i]->refusal);
	}
	if (protect_scope_check(r->cfg, tables, n, pipeline_can_hash(r->pipe),
				r->snap && !transform_can_seal(pipeline_transform(r->pipe)), err, errlen) < 0)
		return OUTCOME_FATAL;
	metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap));
	if (n == 0)
		log_warn("capture: no table matches the capture list yet");
	/* Each session: a rewind may have dropped what was queued but never committed. */
	if (r->snap)
		snapshot_queue_initial(r->snap, tables, n);
	return OUTCOME_OK;
}

/* Connects, starts Kafka (once), and settles the slot (and the checkpoint, exactly-once). */
static outcome connect_and_settle(relay *r, char *err, size_t errlen)
{
	outcome res = pg_stream_connect(&r->pg, r->cfg->pg_conninfo, r->cfg->pg_password, err, errlen);

	if (res == OUTCOME_OK && r->cfg->capture_avro) /* wal2json's texts (capture.h) */
		res = pg_stream_set(r->pg, CAPTURE_AVRO_SESSION_SQL, err, errlen);
	if (res == OUTCOME_OK)
		res = setup_kafka(r, err, errlen);
	if (res == OUTCOME_OK && r->eos_on)
		res = slot_start_prepare(r, err, errlen);
	else if (res == OUTCOME_OK)
		res = pg_stream_check_slot(r->pg, r->cfg->slot, r->cfg->create_slot, NULL, NULL, err,
					   errlen);
	return res;
}

/* A reading of the standbys from another server (a failover meanwhile) never carries over. */
static void forget_standbys(relay *r)
{
	if (r->gate)
		standby_gate_reset(r->gate);
}

/*
 * One attempt at a session: (active/passive: still the active relay,) connect, settle the slot,
 * backfill if due, start streaming.
 */
static outcome open_session(relay *r, char *err, size_t errlen)
{
	outcome res = OUTCOME_OK;

	forget_standbys(r);

	if (r->cfg->takeover_wait)
		res = standby_keep_lock(r, err, errlen);
	if (res == OUTCOME_OK)
		res = connect_and_settle(r, err, errlen);

	while (res == OUTCOME_OK && backfill_active(r->bf)) {
		/* The replication connection waits for nothing during a backfill: closed, reopened. */
		pg_stream_close(r->pg, 0);
		r->pg = NULL;
		metrics_set_backfilling(true);
		res = backfill_run(r, err, errlen);
		metrics_set_backfilling(false);
		forget_standbys(r);
		if (res == OUTCOME_OK)
			res = connect_and_settle(r, err, errlen);
	}
	if (res == OUTCOME_OK)
		res = setup_capture(r, err, errlen);
	if (res == OUTCOME_OK) {
		if (!r->eos_on && pg_stream_start_lsn(r->pg) > r->prog.acked)
			r->prog.acked = pg_stream_start_lsn(r->pg);
		strbuf tables = {0}, prefixes = {0};
		w2j_filter_lists(r->cfg, r->snap ? snapshot_prefix(r->snap) : NULL, &tables, &prefixes);
		res = pg_stream_start(r->pg, r->cfg->slot, strbuf_str(&tables), strbuf_str(&prefixes),
				      status_flush_lsn(r), err, errlen);
		strbuf_free(&tables);
		strbuf_free(&prefixes);
	}
	if (res != OUTCOME_OK) {
		pg_stream_close(r->pg, 0);
		r->pg = NULL;
	}
	return res;
}

/* The facts besides an outcome that decide what follows (session_next_step). */
static session_facts facts_of(relay *r)
{
	session_facts f = {.fenced = r->kp && kafka_fenced(r->kp), .lock_lost = r->lock_lost,
			   .wait = r->cfg->takeover_wait, .expired = r->eos_on && eos_expired(&r->eos)};
	return f;
}

/* Opens the replication stream; retries with backoff until it works, a stop, or a fatal error. */
static outcome connect_stream(relay *r)
{
	int64_t backoff = BACKOFF_START_MS;
	char err[1024], a[LSN_TEXT_MAX];

	metrics_set_ready(false);
	if (r->streamed)
		metrics_reconnect(); /* the previous session ended (lost, or read again) */
	for (;;) {
		outcome res = open_session(r, err, sizeof(err));
		if (res == OUTCOME_OK)
			break;
		if (signals_stop_requested())
			return OUTCOME_STOP;
		session_next next = session_next_step(res, facts_of(r));
		if (next == SESSION_EXIT) {
			log_error("%s", err);
			return OUTCOME_FATAL;
		}
		if (next == SESSION_STAND_BY || next == SESSION_START_OVER) {
			log_debug("%s", err); /* give_up_slot or start_over says it in one line */
			return res;
		}
		log_warn("%s; retrying in %lld ms", err, (long long)backoff);
		notify_status("not streaming: %s; retrying in %lld ms", err, (long long)backoff);
		int64_t until = clock_mono_ms() + backoff;
		while (!signals_stop_requested() && clock_mono_ms() < until)
			loop_wait(r, false, until);
		if (signals_stop_requested())
			return OUTCOME_STOP;
		backoff = backoff * 2 > r->cfg->reconnect_max_backoff_ms ? r->cfg->reconnect_max_backoff_ms
									  : backoff * 2;
	}
	r->sent_flush = status_flush_lsn(r);
	r->last_status_ms = clock_mono_ms();
	if (pg_stream_server_lsn(r->pg) > r->wal_end_seen)
		r->wal_end_seen = pg_stream_server_lsn(r->pg);
	metrics_set_wal_end(r->wal_end_seen);
	metrics_set_confirmed(r->sent_flush);
	r->streamed = true;
	metrics_set_ready(true);
	log_info("streaming from slot \"%s\" after %s (%s)", r->cfg->slot, lsn_format(status_flush_lsn(r), a),
		 r->eos_on ? "exactly-once" : "at-least-once");
	standby_took_over(r);
	notify_ready();
	notify_status("streaming from slot %s after %s", r->cfg->slot, a);
	return OUTCOME_OK;
}

/* SIGTERM: no more reading; bounded wait for acks (and the commit); the final position goes out. */
static void shut_down(relay *r)
{
	char a[LSN_TEXT_MAX];
	int64_t deadline;

	loop_should_stop(r);
	notify_stopping();
	notify_status("stopping");
	deadline = r->stop_deadline;
	log_info("stopping: waiting up to %lld ms for Kafka to acknowledge %llu records",
		 (long long)(deadline - clock_mono_ms()), (unsigned long long)r->prog.in_flight);
	if (r->eos_on && r->eos.open && r->hold_commit) {
		/* Stopped inside a group of records that belong together: read it all again. */
		log_warn("stopped in the middle of a row's records: the open Kafka transaction is "
			 "aborted and read again at the next start");
		txn_abort(r);
	} else if (r->eos_on && r->eos.open && txn_commit(r) != OUTCOME_OK) {
		log_warn("the last Kafka transaction was not committed; it will be read again");
		if (r->eos.open)
			txn_abort(r); /* held back by the standbys: it must not linger either */
	}
	if (!loop_drain(r, deadline))
		log_warn("%llu records were not acknowledged in time; they will be read again at the "
			 "next start", (unsigned long long)r->prog.in_flight);
	if (r->pg && status_send(r, true) < 0)
		log_warn("could not send the final position: %s", pg_stream_error(r->pg));
	log_info("stopped; confirmed up to %s", lsn_format(status_flush_lsn(r), a));
}

/* Waits longer after each refusal in a row, so a Kafka outage does not spin; -1 on a stop. */
static int pause_before_rewind(relay *r)
{
	int64_t wait = BACKOFF_START_MS;
	for (unsigned i = 0; i < r->rewinds && wait < r->cfg->reconnect_max_backoff_ms; i++)
		wait *= 2;
	if (wait > r->cfg->reconnect_max_backoff_ms)
		wait = r->cfg->reconnect_max_backoff_ms;
	r->rewinds++;
	log_warn("reading again from the last confirmed position in %lld ms", (long long)wait);
	int64_t until = clock_mono_ms() + wait;
	while (!signals_stop_requested() && clock_mono_ms() < until)
		loop_wait(r, false, until);
	return signals_stop_requested() ? -1 : 0;
}

/*
 * After a broken connection or a refusal (rewind): settle what is in flight, then read again
 * from the confirmed point. After a refusal, what is still queued will be produced again: drop
 * it now. In exactly-once mode a lost database connection still commits what was read (the
 * checkpoint says exactly how far it goes); a refusal aborts the Kafka transaction.
 * OUTCOME_OK to reconnect; OUTCOME_STOP or OUTCOME_FATAL.
 */
static outcome settle_session(relay *r, bool rewind)
{
	if (rewind)
		kafka_purge(r->kp);
	if (!loop_drain(r, -1) && signals_stop_requested())
		return OUTCOME_STOP;
	if (r->eos_on && r->eos.open) {
		/* Half a group of records is never committed: abort and read it again. */
		/* Inside a PostgreSQL transaction it is read again whole: a checkpoint in the middle
		 * of one makes a lost slot's recovery depend on the write order (backfill.h). */
		outcome res = !rewind && !r->hold_commit && !r->eos.in_pg_txn ? txn_commit(r)
										   : OUTCOME_REWIND;
		/* Not committed (a refusal, or held back by the standbys): aborted, read again. */
		if (res == OUTCOME_FATAL || (res != OUTCOME_OK && txn_abort(r) == OUTCOME_FATAL))
			return OUTCOME_FATAL;
	}
	if (r->eos_on) {
		eos_resume(&r->eos, &r->eos.committed);
		pending_drop(&r->pend);
	}
	if (r->snap)
		snapshot_rewind(r->snap); /* back to what Kafka committed; a pending chunk is read again */
	if (r->pg)
		status_send(r, true);
	end_session(r);
	return OUTCOME_OK;
}

/* Before a fatal exit, what Kafka did take is confirmed: it is published. */
static void keep_what_kafka_took(relay *r)
{
	if (r->kp)
		loop_drain(r, clock_mono_ms() + r->cfg->shutdown_timeout_ms);
	if (r->pg)
		status_send(r, true);
}

session_next session_next_step(outcome e, session_facts f)
{
	if (e == OUTCOME_STOP)
		return SESSION_SHUT_DOWN;
	if (f.expired)
		return SESSION_START_OVER;
	if (f.wait && (f.fenced || f.lock_lost))
		return SESSION_STAND_BY;
	if (f.fenced)
		return SESSION_EXIT;
	switch (e) {
	case OUTCOME_STOP:
	case OUTCOME_FATAL:
		return SESSION_EXIT;
	case OUTCOME_RETRY:
		return SESSION_RECONNECT;
	case OUTCOME_REWIND:
		return SESSION_READ_AGAIN;
	case OUTCOME_OK:
		break;
	}
	return SESSION_RECONNECT; /* a session does not end with "continue": connect again */
}

/*
 * Between sessions: what a session's end leads to when the relay goes on (pg_recvlogical's
 * prepareToTerminate). OUTCOME_OK to start the next session; otherwise the outcome that ends
 * the run, which run_sessions acts on (the same decision, session_next_step).
 */
static outcome end_of_session(relay *r, outcome e)
{
	metrics_set_ready(false);
	switch (session_next_step(e, facts_of(r))) {
	case SESSION_SHUT_DOWN:
	case SESSION_EXIT:
	case SESSION_STAND_BY:
	case SESSION_START_OVER:
		return e == OUTCOME_OK ? OUTCOME_FATAL : e;
	case SESSION_RECONNECT:
		return settle_session(r, false);
	case SESSION_READ_AGAIN:
		e = settle_session(r, true);
		return e == OUTCOME_OK && pause_before_rewind(r) < 0 ? OUTCOME_STOP : e;
	}
	return OUTCOME_FATAL;
}

/*
 * Lost the slot to another relay (relay.takeover = "wait"): what this relay committed may be
 * confirmed; what it did not is the other relay's to publish, read from the checkpoint. The
 * producer (fenced, or about to be) and the other parts go with the run.
 */
static void give_up_slot(relay *r)
{
	bool fenced = r->kp && kafka_fenced(r->kp);

	metrics_fenced();
	if (r->pg && !r->pg_lost)
		status_send(r, true);
	log_info("another relay %s slot \"%s\": standing by again (relay.takeover = \"wait\")",
		 fenced ? "with the same transactional.id took over" : "became active on",
		 r->cfg->slot);
	notify_status("standby: lost slot %s to another relay", r->cfg->slot);
}

/*
 * The broker aborted this relay's transaction itself (open longer than transaction.timeout.ms),
 * which fences the producer: nothing it read since the committed checkpoint is in Kafka. The
 * run starts over with a new producer, as a restarted process would (systemd does not restart
 * an exit 3).
 */
static void start_over(relay *r)
{
	log_warn("starting over with a new producer from the checkpoint Kafka committed (%s); "
		 "nothing is lost", r->cfg->checkpoint_topic);
	metrics_kafka_transaction_expired();
	if (r->pg && !r->pg_lost)
		status_send(r, true);
	notify_status("starting over: the broker aborted a Kafka transaction that outlived "
		      "transaction.timeout.ms");
}

/* Runs sessions until stopped: each connects, streams, and on trouble settles and reconnects. */
static int run_sessions(relay *r)
{
	outcome e;

	if (r->cfg->takeover_wait && standby_wait(r) == OUTCOME_STOP) {
		notify_stopping();
		log_info("stopped while standing by");
		return RELAY_EXIT_OK;
	}
	do {
		e = connect_stream(r);
		if (e == OUTCOME_OK)
			e = loop_stream(r);
		e = end_of_session(r, e);
	} while (e == OUTCOME_OK);
	switch (session_next_step(e, facts_of(r))) {
	case SESSION_SHUT_DOWN:
		shut_down(r);
		return RELAY_EXIT_OK;
	case SESSION_STAND_BY:
		give_up_slot(r);
		return SESSION_RUN_STAND_BY;
	case SESSION_START_OVER:
		start_over(r);
		return SESSION_RUN_START_OVER;
	default:
		if (r->kp && kafka_fenced(r->kp))
			metrics_fenced(); /* seen only by a scrape before the exit (3) */
		keep_what_kafka_took(r);
		return r->kp && kafka_fenced(r->kp) ? RELAY_EXIT_FENCED : RELAY_EXIT_FATAL;
	}
}

int session_run_all(relay *r)
{
	int code = run_sessions(r);

	pg_stream_close(r->pg, CLOSE_TIMEOUT_MS);
	r->pg = NULL;
	PQfinish(r->sql);
	r->sql = NULL;
	standby_release(r);
	return code;
}
