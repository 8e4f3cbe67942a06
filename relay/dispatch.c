/* dispatch.c: each wal2json record to its handler, as PostgreSQL's apply_dispatch does. */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "eos.h"
#include "gate.h"
#include "horizon.h"
#include "json_scan.h"
#include "log.h"
#include "lsn.h"
#include "metrics.h"
#include "pg_stream.h"
#include "pgtime.h"
#include "progress.h"
#include "publish.h"
#include "publish_change.h"
#include "refusal.h"
#include "route.h"
#include "session.h"
#include "snapshot.h"
#include "status.h"
#include "txctx.h"
#include "txn.h"
#include "txtopic.h"
#include "w2j.h"
#include "xalloc.h"

/*
 * A change that does not fit its table's columns as read (ALTER TABLE since), or an update whose
 * unchanged TOASTed columns the entry read before it cannot tell (why says which): the catalog
 * entry is read again, so that added, dropped and renamed columns (and keys) are right from here on.
 */
static int refresh_table(relay *r, capture_table *t, const w2j_record *rec, const char *why,
			 log_level_t level)
{
	char err[1024], a[LSN_TEXT_MAX];
	PGconn *conn = session_sql(r, err, sizeof(err));

	if (!conn || capture_refresh(conn, t, err, sizeof(err)) < 0) {
		log_warn("%s", err);
		return -1;
	}
	metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap)); /* a key lost? */
	log_msg(level, "capture: the change at %s %s %s as read: its catalog entry was read again "
		"(%d columns)", lsn_format(rec->lsn, a), why, t->name, t->n_cols);
	return 0;
}

/* An insert, update, delete or truncate that no outbox source took: change capture's, maybe. */
static outcome handle_change(relay *r, const w2j_record *rec, const char *data, size_t len)
{
	capture_table *t;
	char err[1024];
	PGconn *conn;
	int found;

	if (!r->cap || !r->in_txn || r->skip_txn)
		return OUTCOME_OK;
	found = capture_lookup_record(r->cap, r->sql, rec, &t, err, sizeof(err));
	if (found == -2 && !(conn = session_sql(r, err, sizeof(err)))) {
		log_warn("%s", err);
		return OUTCOME_REWIND;
	}
	if (found == -2) {
		found = capture_lookup_record(r->cap, conn, rec, &t, err, sizeof(err));
		metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap));
	}
	if (found < 0 && found != CAPTURE_BAD_NAME) {
		log_warn("%s", err);
		return OUTCOME_REWIND;
	}
	if (found == 0)
		return OUTCOME_OK;
	r->cur_row = r->txn_rows++; /* counted also when skipped just below: the same on replay */
	if (r->eos_on && !eos_pg_row(&r->eos))
		return OUTCOME_OK; /* Kafka has it: a committed part of a split transaction */
	if (found == CAPTURE_BAD_NAME)
		return publish_unnamed(r, rec, data, len, err);
	capture_read(r->cap, rec); /* once, for the checks and builds below */
	if (capture_stale(r->cap, t, rec, r->txn_end) &&
	    refresh_table(r, t, rec, "does not fit the columns of", LOG_LVL_INFO) < 0)
		return OUTCOME_REWIND;
	if (capture_toast_check(r->cap, t, rec, true) == CAPTURE_TOAST_READ_AGAIN) {
		/* Debug: while the relay keeps up, one per update leaving out a TOASTed value. */
		if (refresh_table(r, t, rec, "lacks columns (unchanged TOASTed values?) of",
				  LOG_LVL_DEBUG) < 0)
			return OUTCOME_REWIND;
		capture_toast_check(r->cap, t, rec, false);
	}
	return publish_change(r, t, rec, data, len);
}

/*
 * A message with this relay's snapshot prefix: a chunk's watermark (its rows go out now, in the
 * open Kafka transaction with the progress they make) or a request to snapshot tables.
 */
static outcome handle_snapshot_message(relay *r, const w2j_record *rec)
{
	char *text;
	capture_table *t = NULL;
	snapshot_row row;
	outcome e = OUTCOME_OK;
	long n;

	if (!r->in_txn || r->skip_txn || rec->content.kind != JSON_STRING)
		return OUTCOME_OK;
	if (!r->snap) {
		log_warn("ignoring a snapshot request: snapshots need relay.delivery = \"exactly-once\"");
		return OUTCOME_OK;
	}
	text = xmalloc(rec->content.len + 1);
	n = json_unescape(&rec->content, text);
	snapshot_msg kind = n < 0 ? SNAPSHOT_MSG_OTHER : snapshot_message(r->snap, text, (size_t)n, &t);
	free(text);
	if (kind != SNAPSHOT_MSG_CHUNK)
		return OUTCOME_OK;
	txn_group_begin(r); /* the chunk's rows and its progress: one Kafka transaction */
	r->cur_row = NO_ROW; /* not source rows: never produced alone */
	while (e == OUTCOME_OK && snapshot_next_row(r->snap, &row))
		e = publish_snapshot_row(r, t, rec, &row);
	if (e != OUTCOME_OK)
		return e;
	snapshot_chunk_done(r->snap);
	log_info("snapshot: %s", snapshot_current(r->snap)[0] ? snapshot_current(r->snap) : "all done");
	return txn_group_end(r, e, false);
}

/* A B record's commit time in us since 1970 (0 when absent or not PostgreSQL's form). */
int64_t dispatch_commit_us(const w2j_record *rec)
{
	int64_t us;
	if (rec->timestamp.kind != JSON_STRING || rec->timestamp.escaped ||
	    !pgtime_parse_us(rec->timestamp.ptr, rec->timestamp.len, &us))
		return 0;
	return us;
}

/*
 * Slot-loss recovery assumes commit times run out of commit order by less than the window
 * (horizon.h): the largest disorder seen is a metric, and a warning past half the window.
 */
static void watch_disorder(relay *r)
{
	int64_t d = r->eos.hz.max_disorder_us;

	if (d <= r->disorder_told)
		return;
	r->disorder_told = d;
	metrics_set_commit_disorder(d);
	if (d * 2 > r->eos.hz.window_us)
		log_warn("commit times ran %lld ms out of commit order, over half of "
			 "relay.recovery_window_ms (%lld): a lost slot's recovery could miss rows; raise "
			 "it, or check the database server's clock", (long long)(d / 1000),
			 (long long)(r->eos.hz.window_us / 1000));
}

/*
 * The transaction context (txctx.h) of a transaction beginning: a split one whose first parts
 * Kafka committed counts on from what the checkpoint kept of them. Counts that cannot be used
 * stop the relay when headers or the transaction topic need them: indexes counted from 0 again
 * would repeat (commit LSN, index) pairs of records already committed. A checkpoint without
 * counts (written by a relay without them) is the one documented exception: a warning.
 */
static outcome begin_context(relay *r, const w2j_record *rec)
{
	char a[LSN_TEXT_MAX];
	bool needed = r->cfg->transaction_headers || r->cfg->transaction_topic[0];
	const char *counts;

	txctx_begin(&r->tx, rec->xid, rec->nextlsn, r->txn_commit_ms);
	if (!r->eos_on || r->skip_txn || r->eos.skip_rows == 0)
		return OUTCOME_OK;
	counts = eos_committed_counts(&r->eos, rec->nextlsn);
	lsn_format(rec->nextlsn, a);
	if (!counts && !eos_committed_counts_bad(&r->eos, rec->nextlsn)) {
		txctx_restore(&r->tx, NULL, 0);
		if (needed)
			log_warn("the checkpoint inside the transaction ending at %s has no record counts "
				 "(written by a relay without them): its pg_txn_index headers and END "
				 "counts start from 0 again", a);
		return OUTCOME_OK;
	}
	if (txctx_restore(&r->tx, counts, r->eos.committed.partial_rows) == 0 || !needed)
		return OUTCOME_OK;
	log_error("the checkpoint's record counts of the split transaction ending at %s are not "
		  "valid or do not match its %llu rows read: counting from 0 again would repeat "
		  "pg_txn_index values of records already in Kafka, so the relay stops (docs/privacy.md, "
		  "\"Transaction context\")", a, (unsigned long long)r->eos.committed.partial_rows);
	return OUTCOME_FATAL;
}

/* BEGIN: a PostgreSQL transaction opens; the tracker, eos and the refusal search learn of it. */
static outcome handle_begin(relay *r, const w2j_record *rec)
{
	/* The commit time (include-timestamp), once per transaction: latency and lag. */
	int64_t commit_us = dispatch_commit_us(rec);

	refusal_search_over(&r->refusal, rec->nextlsn, r->delivery_failed);
	r->in_txn = true;
	r->txn_xid = rec->xid;
	r->txn_end = rec->nextlsn;
	r->txn_rows = 0;
	r->cur_row = NO_ROW;
	r->txn_commit_ms = commit_us / 1000;
	if (r->txn_commit_ms > 0)
		metrics_set_read_commit_time(r->txn_commit_ms);
	if (r->eos_on) {
		eos_pg_txn_info(&r->eos, rec->nextlsn, commit_us, (uint32_t)rec->xid);
		watch_disorder(r);
	}
	r->skip_txn = r->eos_on ? !eos_pg_begin(&r->eos, rec->nextlsn) : rec->nextlsn <= r->prog.acked;
	if (!r->skip_txn)
		r->txn_seq = progress_begin(&r->prog, rec->nextlsn);
	return begin_context(r, rec);
}

/*
 * COMMIT: the transaction was read whole; a commit may fall due. Its END record (transaction
 * topic) goes out first, with commits held until the transaction is marked read whole: a
 * checkpoint never covers it without its END, nor holds its END without the mark.
 */
static outcome handle_commit(relay *r)
{
	bool end = r->in_txn && !r->skip_txn && r->tx.begun && r->cfg->transaction_topic[0];

	if (end) {
		txn_group_begin(r);
		outcome e = txtopic_end(r);
		if (e != OUTCOME_OK)
			return e; /* the group stays unfinished: the open transaction is aborted */
	}
	if (r->snap)
		snapshot_saw_commit(r->snap, r->txn_xid);
	if (r->in_txn && !r->skip_txn) {
		progress_commit(&r->prog, r->txn_seq);
		if (r->eos_on)
			eos_pg_commit(&r->eos);
	}
	r->in_txn = false;
	if (end)
		r->hold_commit = false;
	return txn_maybe_commit(r, false);
}

/* True for a logical message with this relay's snapshot prefix (a chunk's watermark). */
static bool is_snapshot_message(const relay *r, const w2j_record *rec)
{
	const char *prefix = r->snap ? snapshot_prefix(r->snap) : NULL;
	return prefix && rec->prefix.kind == JSON_STRING &&
	       json_key_is(&rec->prefix, prefix, strlen(prefix));
}

/* A row or message a source takes, inside a transaction not confirmed yet: published. */
static outcome handle_source_row(relay *r, const route_source *src, const w2j_record *rec,
				    const char *data, size_t len)
{
	if (!r->in_txn || r->skip_txn)
		return OUTCOME_OK;
	r->cur_row = r->txn_rows++;
	if (r->eos_on && !eos_pg_row(&r->eos))
		return OUTCOME_OK; /* Kafka has it: a committed part of a split transaction */
	return publish_row(r, src, rec, data, len);
}

/* INSERT: an outbox row of a source, or a change of a captured table. */
static outcome handle_insert(relay *r, const w2j_record *rec, const char *data, size_t len)
{
	const route_source *src = router_match(r->router, rec);
	return src ? handle_source_row(r, src, rec, data, len) : handle_change(r, rec, data, len);
}

/* MESSAGE: a message source's event (one outside a transaction is dead-lettered), or a snapshot mark. */
static outcome handle_logical_message(relay *r, const w2j_record *rec, const char *data,
					 size_t len)
{
	const route_source *src = router_match(r->router, rec);

	if (!src)
		return is_snapshot_message(r, rec) ? handle_snapshot_message(r, rec) : OUTCOME_OK;
	if (!rec->transactional)
		return publish_outside(r, src, rec, data, len);
	return handle_source_row(r, src, rec, data, len);
}

/* UPDATE, DELETE, TRUNCATE: of captured tables (an outbox's carry no events). */
static outcome handle_other_change(relay *r, const w2j_record *rec, const char *data, size_t len)
{
	/* An outbox row deleted by the transaction that wrote it never stays in the table. */
	if (rec->action == W2J_DELETE && r->eos_on && router_is_source_table(r->router, rec))
		horizon_outbox_delete(&r->eos.hz);
	return handle_change(r, rec, data, len);
}

/* One wal2json record to its handler (PostgreSQL's apply_dispatch): one line per action. */
static outcome handle_record(relay *r, const char *data, size_t len)
{
	w2j_record rec;
	const char *why = NULL;

	if (w2j_decode(data, len, &rec, &why) < 0) {
		/* Its text may hold fields the protect rules cover: then it is not logged. */
		if (r->cfg->n_protects > 0)
			log_error("malformed wal2json record (%s; its text is not logged: protect rules "
				  "are set)", why);
		else
			log_error("malformed wal2json record (%s): %.*s", why,
				  (int)(len > 200 ? 200 : len), data);
		return OUTCOME_FATAL;
	}
	switch (rec.action) {
	case W2J_BEGIN:
		return handle_begin(r, &rec);
	case W2J_COMMIT:
		return handle_commit(r);
	case W2J_INSERT:
		return handle_insert(r, &rec, data, len);
	case W2J_MESSAGE:
		return handle_logical_message(r, &rec, data, len);
	default:
		return handle_other_change(r, &rec, data, len);
	}
}

void dispatch_skip_idle(relay *r)
{
	if (r->in_txn || r->idle_end == 0 || !progress_idle(&r->prog))
		return;
	progress_skip_to(&r->prog, r->idle_end);
	if (r->eos_on)
		eos_idle_at(&r->eos, r->idle_end);
}

outcome dispatch_message(relay *r, const pg_msg *msg)
{
	if (msg->wal_end > r->received && msg->kind == 'k')
		r->received = msg->wal_end;
	if (msg->kind == 'w' && msg->wal_start > r->received)
		r->received = msg->wal_start;
	if (r->received > r->wal_end_seen) {
		r->wal_end_seen = r->received;
		metrics_set_wal_end(r->wal_end_seen);
	}
	if (msg->kind == 'w') {
		r->idle_end = 0;
		return handle_record(r, msg->data, msg->len);
	}
	/* A keepalive that asks for nothing is what the server sends before it waits for WAL: the
	 * relay has read all there is (for replication_lag_seconds). */
	if (!msg->reply_requested && !r->in_txn)
		metrics_set_caught_up();
	/* Keepalive: with nothing open or in flight, everything up to walEnd is safe. In
	 * exactly-once mode that position is committed to Kafka first (at most once per interval). */
	if (!r->in_txn && msg->wal_end > r->idle_end)
		r->idle_end = msg->wal_end;
	if (!r->in_txn && progress_idle(&r->prog)) {
		dispatch_skip_idle(r);
		if (r->eos_on && eos_idle_checkpoint_due(&r->eos) && gate_idle_checkpoint_ok(r)) {
			outcome e = txn_commit(r);
			if (e != OUTCOME_OK)
				return e;
		}
	}
	if (msg->reply_requested && status_send(r, true) < 0)
		return OUTCOME_RETRY;
	return OUTCOME_OK;
}
