/* slot_start.c: where a session starts: the slot against the checkpoint, first start, a lost slot. */
#include "slot_start.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "capture.h"
#include "checkpoint.h"
#include "clock.h"
#include "eos.h"
#include "log.h"
#include "lsn.h"
#include "metrics.h"
#include "outbox_table.h"
#include "pg_stream.h"
#include "session.h"
#include "snapshot.h"
#include "strbuf.h"
#include "timeline.h"
#include "txn.h"
#include "xalloc.h"

/* True when a source publishes logical messages (outbox.emit()): they leave no row to recover. */
static bool has_message_sources(const relay_config *cfg)
{
	for (int i = 0; i < cfg->n_sources; i++)
		if (!cfg->sources[i].table[0])
			return true;
	return false;
}

/* The newest checkpoint in Kafka: what it says, its recovery fields, and snapshot progress. */
typedef struct {
	checkpoint_result res;
	checkpoint cp;
	checkpoint_recovery rec;
} stored_checkpoint;

/*
 * Reads the checkpoint (taking the snapshot progress along); OUTCOME_RETRY when Kafka did not
 * answer. The read may wait for another producer's open transaction, after READY=1 too (a
 * failover, a takeover): its tick pings the watchdog and a SIGTERM ends it (OUTCOME_STOP).
 */
static outcome read_checkpoint(relay *r, stored_checkpoint *sc, char *err, size_t errlen)
{
	checkpoint_read_opts opts = {.wait_ms = CHECKPOINT_WAIT_MS, .tick = txn_init_tick, .ctx = r,
				     .no_state = !r->snap}; /* the state matters to a snapshot only */
	checkpoint_extra x;

	sc->res = checkpoint_load_state(r->cfg, r->cfg->checkpoint_topic, r->eos.txn_id, false,
					&opts, &sc->cp, &x, err, errlen);
	if (sc->res == CHECKPOINT_STOPPED) {
		log_info("stop requested while reading the checkpoint");
		return OUTCOME_STOP;
	}
	if (sc->res == CHECKPOINT_ERROR)
		return OUTCOME_RETRY;
	sc->rec = x.rec; /* moved */
	memset(&x.rec, 0, sizeof(x.rec));
	if (x.state && r->snap && snapshot_load_state(r->snap, x.state, strlen(x.state)) < 0) {
		snprintf(err, errlen, "checkpoint topic %s holds a malformed snapshot state for %s: %.200s",
			 r->cfg->checkpoint_topic, r->eos.txn_id, x.state);
		checkpoint_extra_free(&x);
		return OUTCOME_FATAL;
	}
	if (r->snap)
		metrics_set_snapshot_tables((uint64_t)snapshot_tables_queued(r->snap));
	if (x.state && r->snap && snapshot_current(r->snap)[0])
		log_info("snapshot progress from Kafka: resuming %s", snapshot_current(r->snap));
	checkpoint_extra_free(&x);
	return OUTCOME_OK;
}

/* The server's clock, us since 1970 (before a slot is created: see backfill.h). */
static outcome server_clock_us(relay *r, int64_t *us, char *err, size_t errlen)
{
	PGconn *conn = session_sql(r, err, errlen);
	if (!conn)
		return OUTCOME_RETRY;
	PGresult *res = PQexec(conn, "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8");
	outcome pr = PQresultStatus(res) == PGRES_TUPLES_OK ? OUTCOME_OK : OUTCOME_RETRY;
	if (pr == OUTCOME_OK)
		*us = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		snprintf(err, errlen, "reading the server's clock: %s", PQerrorMessage(conn));
	PQclear(res);
	return pr;
}

/* Imports the snapshot the new slot exported: its pg_current_snapshot() text (malloc'd). */
static outcome import_snapshot(relay *r, char **out, char *err, size_t errlen)
{
	PGconn *conn = session_sql(r, err, errlen);
	char sql[256];
	outcome pr = OUTCOME_RETRY;

	*out = NULL;
	if (!conn)
		return OUTCOME_RETRY;
	snprintf(sql, sizeof(sql), "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '%s'",
		 pg_stream_snapshot_name(r->pg));
	PGresult *res = PQexec(conn, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		res = PQexec(conn, "SELECT pg_current_snapshot()::text");
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			*out = xstrdup(PQgetvalue(res, 0, 0));
			pr = OUTCOME_OK;
		}
	}
	if (pr != OUTCOME_OK)
		snprintf(err, errlen, "importing the new slot's snapshot: %s", PQerrorMessage(conn));
	PQclear(res);
	PQclear(PQexec(conn, "COMMIT"));
	return pr;
}

/*
 * Creates the slot, exporting its snapshot when a backfill follows, and plans that backfill.
 * The checkpoint position becomes the slot's consistent point: what the slot streams comes
 * after it, what the backfill publishes before.
 */
static outcome new_slot(relay *r, const char *reason, const checkpoint_recovery *lo, char *err,
			  size_t errlen)
{
	int64_t started_us = 0;
	char *snap = NULL;
	outcome pr = server_clock_us(r, &started_us, err, errlen);
	/* Without a backfill, the slot's start bounds the commit times after it (horizon.h). */
	checkpoint_recovery at_start = {.commit_us = started_us,
					.window_ms = r->cfg->recovery_window_ms};

	if (pr == OUTCOME_OK)
		pr = pg_stream_create_slot(r->pg, r->cfg->slot, reason != NULL, err, errlen);
	if (pr == OUTCOME_OK && reason)
		pr = import_snapshot(r, &snap, err, errlen);
	if (pr != OUTCOME_OK)
		return pr;
	checkpoint cp = {.lsn = pg_stream_start_lsn(r->pg), .tli = pg_stream_timeline(r->pg)};
	eos_resume(&r->eos, &cp);
	eos_resume_recovery(&r->eos, reason ? lo : &at_start);
	r->eos.creating = false;
	r->eos_loaded = true;
	if (reason) {
		backfill_plan(r->bf, reason, snap, cp.lsn, started_us);
		free(snap);
		r->backfill_counted = 0;
		checkpoint_recovery_free(&r->lo);
		if (lo) {
			r->lo = *lo;
			r->lo.xids = xmalloc((lo->n_xids + 1) * sizeof(uint32_t));
			memcpy(r->lo.xids, lo->xids, lo->n_xids * sizeof(uint32_t));
			r->lo.ends = NULL; /* lo's own: the backfill needs only the xids */
			r->lo.backfill = NULL;
			r->lo.txn_counts = NULL;
		}
		log_info("backfill planned (%s): outbox rows committed before slot \"%s\" was created"
			 "%s", reason, r->cfg->slot, lo ? " and after the checkpoint" : "");
	}
	return OUTCOME_OK;
}

/*
 * First start: no checkpoint, no slot. With first_start = backfill, a checkpoint saying the slot
 * is being created goes first, so a crash before the backfill's first checkpoint is not taken
 * for an operator's "start from the slot" (no checkpoint, a slot) at the next start.
 */
static outcome first_start(relay *r, char *err, size_t errlen)
{
	bool fill = strcmp(r->cfg->first_start, "backfill") == 0;

	if (!r->cfg->create_slot) {
		snprintf(err, errlen, "replication slot \"%s\" does not exist and postgresql.create_slot "
			 "is false: create it or allow the relay to", r->cfg->slot);
		return OUTCOME_FATAL;
	}
	/* Exactly-once: the checkpoint topic exists before the slot (see checkpoint.h). */
	if (checkpoint_create_topic(r->cfg, r->cfg->checkpoint_topic, err, errlen) < 0)
		return OUTCOME_RETRY;
	if (fill) {
		checkpoint none = {0};
		eos_resume(&r->eos, &none);
		r->eos.creating = true;
		if (txn_commit(r) != OUTCOME_OK) {
			snprintf(err, errlen, "could not write the first checkpoint to Kafka (see above)");
			return OUTCOME_RETRY;
		}
	} else {
		log_info("first start with relay.first_start = \"from-now\": outbox rows committed "
			 "before the slot is created are not published");
	}
	return new_slot(r, fill ? "first start" : NULL, NULL, err, errlen);
}

/* The one table source, or NULL when there are several or none. */
static const char *only_table_source(const relay_config *cfg)
{
	const char *t = NULL;
	for (int i = 0; i < cfg->n_sources; i++) {
		if (!cfg->sources[i].table[0])
			continue;
		if (t)
			return NULL;
		t = cfg->sources[i].table;
	}
	return t;
}

/*
 * A checkpoint inside a transaction published in parts names the transaction and how many of
 * its rows are in Kafka; the backfill leaves those out, in write order. Why it cannot (NULL: it
 * can); -1 when the table's shape cannot be read.
 */
static int split_refusal(relay *r, PGconn *conn, const stored_checkpoint *sc, const char **why,
			 char *err, size_t errlen)
{
	const char *name = only_table_source(r->cfg);
	outbox_table t;

	*why = NULL;
	if (sc->cp.partial_nextlsn == LSN_INVALID)
		return 0;
	if (!sc->cp.partial_xid)
		*why = "the checkpoint lies inside a transaction published in parts, written by an "
		       "older relay (no xid)";
	else if (!name || has_message_sources(r->cfg) || r->cfg->n_captures > 0)
		*why = "the checkpoint lies inside a transaction published in parts, and rows of more "
		       "than one outbox table, messages or captured tables count in it";
	else if (outbox_table_read(conn, name, &t, err, errlen) < 0)
		return -1;
	else if (!t.has_seq || !t.has_txid)
		*why = "the checkpoint lies inside a transaction published in parts, and the outbox "
		       "table has no seq and txid columns (SQL kit 1.2) telling its first rows";
	return 0;
}

/* The end of a refusal line: how to accept a loss. With the slot lost, the next start is a
 * first start, which would publish the whole table again: it must start from now. */
#define ACCEPT_LOSS "to start over from a new slot and accept the loss, delete the checkpoint and " \
		    "start once with relay.first_start = \"from-now\" (docs/exactly-once.md)"

/* What the recovery checks need from the server: commit timestamps, purges, unlisted rows. */
typedef struct {
	int cts;
	int64_t purged_us;
	int64_t unlisted;
	const char *split;
} recovery_facts;

/* Reads the recovery facts; OUTCOME_RETRY (err) when the server did not answer: never a refusal. */
static outcome read_recovery_facts(relay *r, const stored_checkpoint *sc, recovery_facts *f,
				     char *err, size_t errlen)
{
	PGconn *conn = session_sql(r, err, errlen);

	memset(f, 0, sizeof(*f));
	if (!conn || (f->cts = backfill_commit_ts_on(conn, err, errlen)) < 0)
		return OUTCOME_RETRY;
	if (f->cts == 0 || sc->rec.commit_us <= 0)
		return OUTCOME_OK;
	if (backfill_purged_through_us(r->cfg, conn, &f->purged_us, err, errlen) < 0 ||
	    backfill_unlisted_near(r->cfg, conn, &sc->rec, &f->unlisted, err, errlen) < 0 ||
	    split_refusal(r, conn, sc, &f->split, err, errlen) < 0)
		return OUTCOME_RETRY;
	return OUTCOME_OK;
}

/* Why a lost slot cannot be recovered exactly (NULL: it can), from the facts read. */
static const char *recovery_refusal(relay *r, const stored_checkpoint *sc, const recovery_facts *f,
				    char *buf, size_t len)
{
	if (sc->rec.backfill && strstr(sc->rec.backfill, "\"done\":false"))
		snprintf(buf, len, "the slot was lost again while a backfill was under way; %s",
			 ACCEPT_LOSS);
	else if (!f->cts)
		snprintf(buf, len, "track_commit_timestamp is off: the outbox rows committed after the "
			 "checkpoint cannot be told apart; turn it on (it needs a restart) before a slot "
			 "is lost, or %s", ACCEPT_LOSS);
	else if (sc->rec.commit_us <= 0)
		snprintf(buf, len, "the checkpoint records no commit time (written by an older relay or "
			 "before any transaction): the rows after it cannot be told apart; %s", ACCEPT_LOSS);
	else if (f->purged_us > sc->rec.commit_us - sc->rec.window_ms * 1000)
		snprintf(buf, len, "outbox.purge() deleted rows committed after the checkpoint "
			 "(outbox.purge_state); %s", ACCEPT_LOSS);
	else if (f->unlisted > 0)
		snprintf(buf, len, "%lld outbox rows committed near the checkpoint cannot be told apart "
			 "(written under a savepoint, or after it): the table has no txid column (SQL kit "
			 "1.2's); %s", (long long)f->unlisted, ACCEPT_LOSS);
	else if (f->split)
		snprintf(buf, len, "%s; %s", f->split, ACCEPT_LOSS);
	else if (sc->rec.deletes_in_txn)
		snprintf(buf, len, "outbox rows are deleted by the transactions that write them (they "
			 "never stay in the table); %s", ACCEPT_LOSS);
	else if (has_message_sources(r->cfg) && strcmp(r->cfg->slot_loss, "recover-rows") != 0)
		snprintf(buf, len, "events sent with outbox.emit() (message sources) leave no row and "
			 "those after the checkpoint would be lost; to publish the outbox rows and accept "
			 "that loss, set relay.slot_loss = \"recover-rows\"");
	else if (r->cfg->n_captures > 0 && strcmp(r->cfg->capture_on_slot_loss, "resnapshot") != 0)
		snprintf(buf, len, "the changes of captured tables after the checkpoint cannot be read "
			 "back; set relay.capture_on_slot_loss = \"resnapshot\" to publish those tables "
			 "again (op r), or %s", ACCEPT_LOSS);
	else
		return NULL;
	return buf;
}

/*
 * capture_on_slot_loss = resnapshot: every captured table is queued for a snapshot. Queued
 * before the backfill, the queue commits with its first checkpoint, so a crash keeps it.
 */
static outcome resnapshot_all(relay *r, char *err, size_t errlen)
{
	capture_table **tables;
	int n;
	PGconn *conn = session_sql(r, err, errlen);

	if (!conn)
		return OUTCOME_RETRY;
	if (capture_resolve_all(r->cap, conn, &tables, &n, err, errlen) < 0)
		return PQstatus(conn) == CONNECTION_OK ? OUTCOME_FATAL : OUTCOME_RETRY;
	snapshot_queue_again(r->snap, tables, n);
	return OUTCOME_OK;
}

/*
 * The slot is gone (dropped, failover, invalidated) or ahead of the checkpoint (recreated or
 * advanced by someone else): a new slot, and the outbox rows after the checkpoint from the table.
 */
static outcome recover_slot(relay *r, slot_state st, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX], why[768];
	const char *what = st == SLOT_MISSING ? "does not exist (dropped, or lost in a failover)"
			   : st == SLOT_LOST  ? "was invalidated (its WAL was removed)"
					      : "is ahead of the checkpoint (recreated or advanced by someone else)";
	const char *refusal = "relay.slot_loss = \"stop\"";
	recovery_facts facts;

	if (strcmp(r->cfg->slot_loss, "stop") != 0) {
		if (read_recovery_facts(r, sc, &facts, err, errlen) != OUTCOME_OK)
			return OUTCOME_RETRY;
		refusal = recovery_refusal(r, sc, &facts, why, sizeof(why));
	}
	lsn_format(sc->cp.lsn, a);
	if (refusal) {
		snprintf(err, errlen, "slot \"%s\" %s, but this relay's checkpoint in Kafka is at %s: "
			 "events after it may never be published. Refusing to start: %s", r->cfg->slot,
			 what, a, refusal);
		return OUTCOME_FATAL;
	}
	log_warn("slot \"%s\" %s; checkpoint at %s: recovering the outbox rows committed after it "
		 "from the outbox table", r->cfg->slot, what, a);
	outcome pr = st == SLOT_MISSING ? OUTCOME_OK : pg_stream_drop_slot(r->pg, r->cfg->slot, err, errlen);
	if (pr != OUTCOME_OK)
		return pr;
	if (r->snap && (pr = resnapshot_all(r, err, errlen)) != OUTCOME_OK)
		return pr;
	pr = new_slot(r, "slot lost", &sc->rec, err, errlen);
	if (pr == OUTCOME_OK && sc->cp.partial_nextlsn != LSN_INVALID)
		backfill_skip_first(r->bf, sc->cp.partial_xid, sc->cp.partial_rows);
	return pr;
}

/* Goes on from a stored checkpoint (and its unfinished backfill, if any). */
static outcome resume_from(relay *r, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX];

	eos_resume(&r->eos, &sc->cp);
	eos_resume_recovery(&r->eos, &sc->rec);
	r->eos_loaded = true;
	if (sc->rec.backfill && backfill_load(r->bf, sc->rec.backfill) < 0) {
		snprintf(err, errlen, "checkpoint topic %s holds a malformed backfill state for %s",
			 r->cfg->checkpoint_topic, r->eos.txn_id);
		return OUTCOME_FATAL;
	}
	if (sc->rec.backfill)
		eos_set_backfill(&r->eos, xstrdup(sc->rec.backfill));
	if (backfill_active(r->bf)) {
		checkpoint_recovery_free(&r->lo);
		r->lo = sc->rec;
		memset(&sc->rec, 0, sizeof(sc->rec));
		free(r->lo.backfill);
		r->lo.backfill = NULL;
		r->backfill_counted = backfill_rows(r->bf);
		log_info("resuming the backfill (%s) after %llu rows", backfill_reason(r->bf),
			 (unsigned long long)backfill_rows(r->bf));
	}
	log_info("checkpoint in Kafka: %s%s", lsn_format(sc->cp.lsn, a),
		 sc->cp.partial_nextlsn ? " (inside a split transaction)" : "");
	return OUTCOME_OK;
}

/* No checkpoint but a slot: the operator's "start from the slot" (docs/exactly-once.md). */
static outcome start_at_slot(relay *r)
{
	char a[LSN_TEXT_MAX];
	checkpoint cp = {.lsn = pg_stream_start_lsn(r->pg), .tli = pg_stream_timeline(r->pg)};

	log_warn("no checkpoint for %s, but slot \"%s\" exists: starting at the slot's position %s; "
		 "outbox rows committed before it are not published", r->eos.txn_id, r->cfg->slot,
		 lsn_format(cp.lsn, a));
	eos_resume(&r->eos, &cp);
	eos_resume_recovery(&r->eos, NULL);
	r->eos_loaded = true;
	return OUTCOME_OK;
}

/*
 * A slot, but no checkpoint topic, and postgresql.adopt_slot says the slot was made by someone
 * else before this relay's first start (an HA manager's permanent slot: Patroni's "slots:"). A
 * first start: recreate makes the slot again with a snapshot (Patroni keeps the new one as its
 * permanent slot); as-is starts at the slot's position. Without adopt_slot this pair is refused:
 * the topic may have been deleted or renamed, and the slot hold what the relay has not read.
 */
static outcome start_on_foreign_slot(relay *r, char *err, size_t errlen)
{
	bool fill = strcmp(r->cfg->first_start, "backfill") == 0;

	if (strcmp(r->cfg->adopt_slot, "recreate") == 0) {
		log_warn("slot \"%s\" exists but checkpoint topic %s does not: a first start on a slot "
			 "made by someone else (an HA manager's permanent slot?); making it again with a "
			 "snapshot, to backfill the outbox rows committed before it", r->cfg->slot,
			 r->cfg->checkpoint_topic);
		if (pg_stream_drop_slot(r->pg, r->cfg->slot, err, errlen) != OUTCOME_OK)
			return OUTCOME_RETRY;
		return first_start(r, err, errlen);
	}
	if (checkpoint_create_topic(r->cfg, r->cfg->checkpoint_topic, err, errlen) < 0)
		return OUTCOME_RETRY;
	if (fill)
		log_warn("first start on slot \"%s\", made by someone else: with postgresql.adopt_slot = "
			 "\"as-is\" outbox rows committed before it are not backfilled", r->cfg->slot);
	return start_at_slot(r);
}

/* The bytes of xids a log line holds (log.c cuts a message at 2 kB). */
#define FORK_XIDS_PER_LINE 1200

/* Says what ph found beyond the fork, into line: which published transactions are phantoms. */
static void describe_phantoms(relay *r, const timeline_phantoms *ph, strbuf *line, size_t *shown)
{
	*shown = 0;
	if (ph->unnamed) {
		strbuf_add(line, "which ones cannot be told (the checkpoint records no commit positions: "
			   "written by an older relay, or right after a backfill)");
	} else if (ph->n_xids == 0) {
		strbuf_add(line, ph->maybe_more ? "no outbox transaction listed"
				 : "none: no outbox transaction was published there");
	} else {
		strbuf_addf(line, "%zu outbox transaction%s, xid%s ", ph->n_xids,
			    ph->n_xids == 1 ? "" : "s", ph->n_xids == 1 ? "" : "s");
		*shown = timeline_format_xids(line, ph->xids, ph->n_xids, FORK_XIDS_PER_LINE);
		if (*shown < ph->n_xids)
			strbuf_addf(line, " and %zu more (next lines)", ph->n_xids - *shown);
	}
	if (ph->partial)
		strbuf_addf(line, "; and the first %llu rows of xid %u (published in parts)",
			    (unsigned long long)ph->partial_rows, ph->partial_xid);
	if (ph->maybe_more && !ph->unnamed)
		strbuf_addf(line, "; and possibly more: the standby was more than "
			    "relay.recovery_window_ms (%d ms) behind", r->cfg->recovery_window_ms);
	if (has_message_sources(r->cfg) || r->cfg->n_captures > 0)
		strbuf_add(line, "; messages (outbox.emit()) and changes of captured tables are not named");
}

/*
 * One error line for the operator: the two timelines, the fork, the checkpoint and the phantom
 * xids (those that do not fit follow on info lines); counted in phantom_transactions_total
 * (named transactions) and timeline_forks_with_phantoms_total (forks with any phantom). A
 * warning instead when nothing was published beyond the fork (idle checkpoints only).
 */
static void report_fork(relay *r, const checkpoint *was, uint32_t now, lsn_t fork,
			const timeline_phantoms *ph)
{
	char a[LSN_TEXT_MAX], b[LSN_TEXT_MAX];
	strbuf line = {0};
	size_t shown;

	strbuf_addf(&line, "timeline fork: the server is on timeline %u, which left timeline %u at %s; "
		    "this relay's checkpoint in Kafka is at %s on timeline %u, beyond it. Published "
		    "from %s to %s, with no transaction on the new timeline (phantom events): ", now,
		    was->tli, lsn_format(fork, a), lsn_format(was->lsn, b), was->tli, a, b);
	describe_phantoms(r, ph, &line, &shown);
	strbuf_addf(&line, ". Going on from %s on timeline %u (docs/operations.md: PostgreSQL HA "
		    "with Patroni)", a, now);
	/* Only idle positions beyond the fork (no outbox transaction there): nothing to act on. */
	bool phantoms = ph->n_xids || ph->partial || ph->maybe_more || ph->unnamed;
	log_msg(phantoms ? LOG_LVL_ERROR : LOG_LVL_WARN, "%s", strbuf_str(&line));
	while (shown < ph->n_xids) {
		strbuf_reset(&line);
		shown += timeline_format_xids(&line, ph->xids + shown, ph->n_xids - shown,
					      FORK_XIDS_PER_LINE);
		log_info("timeline fork: phantom xids (continued): %s", strbuf_str(&line));
	}
	metrics_phantoms(ph->n_xids + (ph->partial ? 1 : 0));
	if (phantoms)
		metrics_fork_with_phantoms(); /* also when none is named: unnamed, or messages only */
	strbuf_free(&line);
}

/* Where timeline was ended in the history of the server's timeline now (TIMELINE_HISTORY). */
static outcome fork_point(relay *r, uint32_t was, uint32_t now, lsn_t *fork, char *err,
			  size_t errlen)
{
	char *text;
	size_t len;
	outcome pr = pg_stream_timeline_history(r->pg, now, &text, &len, err, errlen);

	if (pr != OUTCOME_OK)
		return pr;
	timeline_found found = timeline_switchpoint(text, len, now, was, fork);
	if (found == TIMELINE_MALFORMED)
		snprintf(err, errlen, "the server's history file of timeline %u is not one PostgreSQL "
			 "would read: %.300s", now, text);
	else if (found == TIMELINE_NOT_ANCESTOR)
		snprintf(err, errlen, "this relay's checkpoint in Kafka was read on timeline %u, which "
			 "is not in the history of the server's timeline %u: the server is on another "
			 "branch (a standby promoted apart from the one the relay followed, or a restore). "
			 "Refusing to start (docs/exactly-once.md)", was, now);
	free(text);
	return found == TIMELINE_ANCESTOR ? OUTCOME_OK : OUTCOME_FATAL;
}

/*
 * The checkpoint was read on an older timeline than the server's (a failover, or a restore to a
 * point in time): what was published beyond the fork is reported, and the position is cut back
 * to the fork, so that every transaction of the new timeline after it is published; those up to
 * the fork are on both timelines and were published already.
 */
static outcome settle_timeline(relay *r, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX], b[LSN_TEXT_MAX];
	uint32_t now = pg_stream_timeline(r->pg);
	checkpoint was = sc->cp;
	timeline_phantoms ph;
	lsn_t fork;
	outcome pr;

	if (was.tli == 0 || was.tli == now)
		return OUTCOME_OK; /* an older relay's checkpoint: the WAL check below is all there is */
	if (was.tli > now) {
		snprintf(err, errlen, "this relay's checkpoint in Kafka (%s) was read on timeline %u, "
			 "but the server is on timeline %u, an older one: the server was restored, or is "
			 "a former primary that did not follow the failover. Refusing to start (see "
			 "docs/exactly-once.md)", lsn_format(was.lsn, a), was.tli, now);
		return OUTCOME_FATAL;
	}
	if ((pr = fork_point(r, was.tli, now, &fork, err, errlen)) != OUTCOME_OK)
		return pr;
	if (timeline_cut(&sc->cp, &sc->rec, fork, &ph))
		report_fork(r, &was, now, fork, &ph);
	else
		log_info("timeline %u left timeline %u at %s, after this relay's checkpoint %s: "
			 "nothing published is missing on the server", now, was.tli,
			 lsn_format(fork, a), lsn_format(was.lsn, b));
	timeline_phantoms_free(&ph);
	sc->cp.tli = now; /* up to the fork, the new timeline's history is the old one's */
	return OUTCOME_OK;
}

/* What the slot and the checkpoint say decides how this session starts (docs/exactly-once.md). */
static outcome settle_slot(relay *r, slot_state st, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX], b[LSN_TEXT_MAX];
	bool found = sc->res == CHECKPOINT_FOUND;

	if (sc->res == CHECKPOINT_NO_TOPIC && st == SLOT_OK && strcmp(r->cfg->adopt_slot, "no") != 0)
		return start_on_foreign_slot(r, err, errlen);
	/* An invalidated slot is refused below whatever the topic: no adoption could help it. */
	if (sc->res == CHECKPOINT_NO_TOPIC && st == SLOT_OK)
		return OUTCOME_FATAL; /* err says the topic is missing */
	if (!found || sc->rec.creating) {
		if (st == SLOT_OK && !found)
			return start_at_slot(r);
		if (st == SLOT_LOST && !found) {
			snprintf(err, errlen, "replication slot \"%s\" was invalidated (its WAL was "
				 "removed) and this relay has no checkpoint: changes were lost to it; drop the "
				 "slot and start again from a new snapshot", r->cfg->slot);
			return OUTCOME_FATAL;
		}
		/* A slot made by a start that wrote only the "creating" checkpoint published nothing. */
		if (st != SLOT_MISSING && pg_stream_drop_slot(r->pg, r->cfg->slot, err, errlen) != OUTCOME_OK)
			return OUTCOME_RETRY;
		return first_start(r, err, errlen);
	}
	outcome pr = settle_timeline(r, sc, err, errlen);
	if (pr != OUTCOME_OK)
		return pr;
	/* On the checkpoint's own timeline (or an older relay's checkpoint, without one). */
	if (sc->cp.lsn > pg_stream_server_lsn(r->pg)) {
		snprintf(err, errlen, "this relay's checkpoint in Kafka (%s) is beyond the server's WAL "
			 "(%s) on the same timeline: the server was restored from a copy of itself (or, "
			 "with a checkpoint of an older relay, which does not record its timeline, failed "
			 "over to a standby that had not received it). Refusing to start (see "
			 "docs/exactly-once.md)", lsn_format(sc->cp.lsn, a),
			 lsn_format(pg_stream_server_lsn(r->pg), b));
		return OUTCOME_FATAL;
	}
	if (st == SLOT_OK && pg_stream_start_lsn(r->pg) <= sc->cp.lsn)
		return resume_from(r, sc, err, errlen);
	return recover_slot(r, st, sc, err, errlen);
}

/* The committed checkpoint was read on the server's timeline (or does not say: an older relay's). */
static bool same_timeline(const relay *r)
{
	return r->eos.committed.tli == 0 || r->eos.committed.tli == pg_stream_timeline(r->pg);
}

/*
 * Exactly-once: the slot checked against the checkpoint. The checkpoint is read from Kafka at
 * the first session and whenever the slot is not where this process left it, or the server is
 * on another timeline (a failover).
 */
outcome slot_start_prepare(relay *r, char *err, size_t errlen)
{
	slot_state st;
	stored_checkpoint sc = {0};
	outcome pr = pg_stream_inspect_slot(r->pg, r->cfg->slot, &st, err, errlen);

	if (pr != OUTCOME_OK)
		return pr;
	eos_set_timeline(&r->eos, pg_stream_timeline(r->pg));
	if (r->eos_loaded && st == SLOT_OK && pg_stream_start_lsn(r->pg) <= r->eos.committed.lsn &&
	    r->eos.committed.lsn <= pg_stream_server_lsn(r->pg) && same_timeline(r))
		return OUTCOME_OK;
	pr = read_checkpoint(r, &sc, err, errlen);
	if (pr == OUTCOME_OK)
		pr = settle_slot(r, st, &sc, err, errlen);
	checkpoint_recovery_free(&sc.rec);
	return pr;
}
