/* backfill_run.c: a backfill's rows published through the loop, then the checkpoint that ends it. */
#include "backfill_run.h"

#include <stdio.h>
#include <stdlib.h>

#include "backfill.h"
#include "checkpoint.h"
#include "clock.h"
#include "dispatch.h"
#include "eos.h"
#include "horizon.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "pg_stream.h"
#include "publish.h"
#include "route.h"
#include "session.h"
#include "signals.h"
#include "txn.h"
#include "w2j.h"

/* While a backfill query runs: Kafka events and the systemd watchdog keep being served. */
static void backfill_tick(void *ctx)
{
	relay *r = ctx;
	loop_wait(r, false, clock_mono_ms());
}

/* One backfilled row, a wal2json insert record as the stream would carry it, published. */
static outcome backfill_publish(relay *r, const char *text, size_t len)
{
	w2j_record rec;
	const char *why = NULL;
	const route_source *src;

	if (w2j_decode(text, len, &rec, &why) < 0 || !(src = router_match(r->router, &rec))) {
		/* Its text may hold fields the protect rules cover: then it is not logged. */
		if (r->cfg->n_protects > 0)
			log_error("backfill: a row did not read back as an outbox insert (%s; its text "
				  "is not logged: protect rules are set)", why ? why : "no source takes it");
		else
			log_error("backfill: a row did not read back as an outbox insert (%s): %.200s",
				  why ? why : "no source takes it", text);
		return OUTCOME_FATAL;
	}
	r->txn_commit_ms = dispatch_commit_us(&rec) / 1000;
	return publish_row(r, src, &rec, text, len);
}

/* After a failed backfill step: back to what Kafka committed, to be read again. */
static outcome backfill_failed(relay *r, PGconn *conn, outcome e)
{
	r->backfilling = false;
	if (r->eos.open || r->hold_commit)
		txn_abort(r);
	r->hold_commit = false;
	backfill_rewind(r->bf, conn);
	return e == OUTCOME_FATAL ? OUTCOME_FATAL : OUTCOME_RETRY;
}

/*
 * The backfill read its last row: the rows still in the open Kafka transaction commit first
 * (no Kafka transaction stays open during the scans that follow), then a checkpoint with the
 * recovery fields covering the slot's snapshot marks it done. Until that commits, it is active.
 */
static outcome end_backfill(relay *r, PGconn *conn, char *err, size_t errlen)
{
	checkpoint_recovery rec = {0};

	if (r->eos.open && txn_commit(r) != OUTCOME_OK) {
		snprintf(err, errlen, "the backfill's last rows could not be committed (see above)");
		return backfill_failed(r, conn, OUTCOME_REWIND);
	}
	if (backfill_finish(r->bf, conn, &r->lo, r->cfg->recovery_window_ms, &rec, err, errlen) < 0) {
		checkpoint_recovery_free(&rec);
		return backfill_failed(r, conn, OUTCOME_REWIND);
	}
	horizon_load(&r->eos.hz, &rec, r->eos.committed.lsn);
	checkpoint_recovery_free(&rec);
	backfill_done(r->bf);
	eos_set_backfill(&r->eos, backfill_state_json(r->bf));
	if (txn_commit(r) != OUTCOME_OK) {
		snprintf(err, errlen, "the backfill's last checkpoint could not be committed (see above)");
		backfill_rewind(r->bf, conn); /* active again, at its end: finished again next time */
		return OUTCOME_RETRY;
	}
	metrics_backfilled(backfill_rows(r->bf) - r->backfill_counted);
	log_info("backfill done: %llu events (%s)", (unsigned long long)backfill_rows(r->bf),
		 backfill_reason(r->bf));
	return OUTCOME_OK;
}

/*
 * Publishes the backfill's rows in Kafka transactions (each with its progress), then the
 * checkpoint that ends it. A stop commits what is open; the next start resumes after it.
 */
outcome backfill_run(relay *r, char *err, size_t errlen)
{
	PGconn *conn = session_sql(r, err, errlen);
	const char *text;
	size_t len;
	int n;

	if (!conn)
		return OUTCOME_RETRY;
	PQclear(PQexec(conn, "SET statement_timeout = 0"));
	r->txn_seq = UINT64_MAX; /* not a streamed transaction: eos commits decide what is safe */
	r->txn_end = 0;
	r->cur_row = NO_ROW;    /* not searched for one at a time when the broker refuses a batch */
	r->backfilling = true;
	while ((n = backfill_next(r->bf, conn, &r->lo, &text, &len, err, errlen)) > 0) {
		outcome e = backfill_publish(r, text, len);
		if (e == OUTCOME_OK && signals_stop_requested())
			e = OUTCOME_STOP;
		if (e == OUTCOME_STOP && !r->hold_commit && txn_commit(r) == OUTCOME_OK) {
			r->backfilling = false;
			snprintf(err, errlen, "stopped during the backfill");
			return OUTCOME_RETRY;
		}
		if (e != OUTCOME_OK) {
			snprintf(err, errlen, "the backfill was interrupted; it resumes after the last "
				 "committed row");
			return backfill_failed(r, conn, e);
		}
	}
	r->backfilling = false;
	outcome pr = n < 0 ? backfill_failed(r, conn, OUTCOME_REWIND) : end_backfill(r, conn, err, errlen);
	PQclear(PQexec(conn, "SET statement_timeout = '30s'"));
	return pr;
}

void backfill_run_attach(relay *r)
{
	backfill_set_tick(r->bf, backfill_tick, r); /* r outlives the backfill */
}
