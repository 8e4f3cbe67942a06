/* txn.c: the loop's Kafka transactions: when one commits, with its checkpoint, and what it counts. */
#include "txn.h"

#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "clock.h"
#include "commit_policy.h"
#include "eos.h"
#include "gate.h"
#include "loop.h"
#include "metrics.h"
#include "pending.h"
#include "signals.h"
#include "snapshot.h"
#include "txctx.h"

/* Between slices of a blocking Kafka call: serve events, keep status flowing; -1 to give up. */
static int txn_tick(void *ctx)
{
	relay *r = ctx;
	if (loop_wait(r, false, clock_mono_ms() + 1) < 0)
		return -1;
	if (signals_stop_requested() && r->stop_deadline == 0)
		r->stop_deadline = clock_mono_ms() + r->cfg->shutdown_timeout_ms;
	return signals_stop_requested() && clock_mono_ms() >= r->stop_deadline ? -1 : 0;
}

/* While Kafka transactions start nothing is open: a stop request ends the wait at once. */
int txn_init_tick(void *ctx)
{
	relay *r = ctx;
	if (loop_wait(r, false, clock_mono_ms() + 1) < 0)
		return -1;
	return signals_stop_requested() ? -1 : 0;
}

/*
 * eos_commit, counted: a commit publishes the transaction's records (for the metrics); an
 * abort (eos_commit aborts when Kafka requires it) or a transaction left open drops them.
 */
outcome txn_commit(relay *r)
{
	bool was_open = r->eos.open;
	outcome res;

	/* Before anything is attached: a commit held back attaches nothing. */
	if ((res = gate_before_commit(r)) != OUTCOME_OK)
		return res; /* still open: the caller aborts it */
	if (r->snap && snapshot_dirty(r->snap))
		eos_attach_state(&r->eos, snapshot_state_json(r->snap));
	if (backfill_active(r->bf))
		eos_set_backfill(&r->eos, backfill_state_json(r->bf));
	/* Inside a transaction (a split): its counts so far, for the transaction context. */
	eos_set_counts(&r->eos, r->eos.in_pg_txn && r->eos.cur_rows > 0 ? txctx_counts_json(&r->tx, r->eos.cur_rows) : NULL);
	res = eos_commit(&r->eos, txn_tick, r);
	if (res == OUTCOME_OK) {
		if (r->snap) {
			metrics_snapshot_rows(snapshot_committed(r->snap));
			metrics_set_snapshot_tables((uint64_t)snapshot_tables_queued(r->snap));
		}
		if (backfill_active(r->bf)) {
			backfill_committed(r->bf);
			metrics_backfilled(backfill_rows(r->bf) - r->backfill_counted);
			r->backfill_counted = backfill_rows(r->bf);
		}
		metrics_txn_committed();
		pending_publish(&r->pend);
	} else if (!r->eos.open) {
		if (res == OUTCOME_REWIND && was_open)
			metrics_txn_aborted();
		pending_drop(&r->pend);
	}
	return res;
}

/* eos_abort, counted. */
outcome txn_abort(relay *r)
{
	bool was_open = r->eos.open;
	outcome res = eos_abort(&r->eos, txn_tick, r);

	if (was_open && res == OUTCOME_OK)
		metrics_txn_aborted();
	pending_drop(&r->pend);
	return res;
}

/* How long ago the transaction being read committed (-1: unknown). */
static int64_t behind_ms(const relay *r)
{
	return r->txn_commit_ms > 0 ? clock_wall_ms() - r->txn_commit_ms : -1;
}

/* True while reading transactions that committed at least ms ago. */
bool txn_behind_by(const relay *r, int64_t ms)
{
	int64_t b = behind_ms(r);
	return b >= 0 && b >= ms;
}

/* The facts commit_policy decides from. */
static commit_facts commit_facts_of(const relay *r, bool input_idle)
{
	const eos *e = &r->eos;
	commit_facts f = {
		.open = e->open,
		.in_pg_txn = e->in_pg_txn,
		.holding = r->hold_commit,
		.input_idle = input_idle,
		.split_end = e->committed.partial_nextlsn != LSN_INVALID &&
			     e->committed.partial_nextlsn <= e->done_lsn,
		.records = e->records,
		.age_ms = clock_mono_ms() - e->opened_ms,
		.behind_ms = behind_ms(r),
	};
	return f;
}

/* Commits the open Kafka transaction, with its checkpoint, when commit_policy says it is due. */
outcome txn_maybe_commit(relay *r, bool input_idle)
{
	commit_limits lim = {.max_records = (uint64_t)r->cfg->transaction_max_records,
			     .max_ms = r->cfg->transaction_max_ms};
	commit_facts f;

	if (!r->eos_on)
		return OUTCOME_OK;
	f = commit_facts_of(r, input_idle);
	return commit_policy_due(&f, &lim) ? txn_commit(r) : OUTCOME_OK;
}

/*
 * Kafka's transaction coordinator completes a commit (writes its markers) a millisecond or two
 * after EndTxn returns. An AddPartitionsToTxn that comes sooner is refused with
 * CONCURRENT_TRANSACTIONS, and librdkafka retries it only 20 ms later: one transaction in eight
 * at 5,000 rows/s. Waiting TXN_GAP_MS after a commit before the next transaction's first record
 * (serving Kafka and status updates meanwhile) took that rate's exactly-once p99 from 58 to
 * about 32 ms (docs/performance.md).
 */
#define TXN_GAP_MS 2
outcome txn_wait_gap(relay *r)
{
	int64_t until = r->eos.last_commit_ms + TXN_GAP_MS;

	while (clock_mono_ms() < until)
		if (loop_wait(r, false, until) < 0)
			return OUTCOME_RETRY;
	return OUTCOME_OK;
}

/*
 * How long to leave the stream unread between Kafka transactions (commit_policy_gather_ms).
 * The clocks are read only between transactions: the loop asks before every read.
 */
int64_t txn_gather_ms(const relay *r)
{
	gather_facts f = {
		.between = r->eos_on && !r->eos.open && !r->eos.in_pg_txn && !r->in_txn &&
			   !r->hold_commit && r->eos.commit_began_ms > 0 &&
			   r->cfg->transaction_gather_ms > 0,
	};

	if (!f.between)
		return 0;
	f.since_commit_ms = clock_mono_ms() - r->eos.commit_began_ms;
	f.rate = r->eos.rate;
	f.behind_ms = behind_ms(r);
	return commit_policy_gather_ms(&f, r->cfg->transaction_gather_ms);
}

/* A group opens: see txn.h. */
void txn_group_begin(relay *r) { r->hold_commit = true; }

/* Ends a group that went out whole; a source row is counted for split transactions. */
outcome txn_group_end(relay *r, outcome e, bool source_row)
{
	if (e != OUTCOME_OK)
		return e;
	r->hold_commit = false;
	if (source_row && r->eos_on)
		eos_row_done(&r->eos);
	if (source_row && r->backfilling)
		backfill_row_done(r->bf); /* before a commit: its checkpoint counts this row in */
	return txn_maybe_commit(r, false);
}
