/* eos.c: Kafka transactions + checkpoint records: when a PostgreSQL position may be confirmed. */
#include "eos.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "commit_policy.h"
#include "log.h"
#include "strbuf.h"
#include "xalloc.h"

/* Each blocking Kafka call runs in slices this long, with the tick in between. */
#define EOS_SLICE_MS 100
/* Opaque of the checkpoint record's delivery report: no PostgreSQL transaction. */
#define EOS_CHECKPOINT_OPAQUE ((void *)UINTPTR_MAX)

void eos_transactional_id(const relay_config *cfg, const char *sysid, strbuf *out)
{
	const char *set = config_kafka_get(cfg, "transactional.id");

	if (set)
		strbuf_add(out, set);
	else
		strbuf_addf(out, "outbox-relay-%s-%s", sysid, cfg->slot);
}

void eos_init(eos *e, const relay_config *cfg, const char *txn_id)
{
	memset(e, 0, sizeof(*e));
	e->cfg = cfg;
	e->txn_id = xstrdup(txn_id);
	horizon_init(&e->hz, cfg->recovery_window_ms);
}

void eos_free(eos *e)
{
	free(e->txn_id);
	free(e->attached);
	free(e->backfill);
	free(e->cur_counts);
	free(e->committed_counts);
	horizon_free(&e->hz);
}

typedef kafka_txn_result (*txn_call)(kafka_producer *kp, int timeout_ms, char *err, size_t errlen);

/*
 * One warning when a transactional call has waited half of transaction.timeout.ms: usually a
 * broker that is down, but librdkafka 2.0.2 can also wait here on a metadata request stuck on
 * one unreachable broker while the others are up (librdkafka #4970, fixed in 2.10.0), which a
 * restart of the relay ends. Either way nothing is lost: the slot holds.
 */
static void warn_if_slow(int64_t since_ms, int64_t after_ms, bool *warned, const char *err)
{
	int64_t waited = clock_mono_ms() - since_ms;

	if (*warned || waited < after_ms)
		return;
	*warned = true;
	log_warn("Kafka transaction call waiting for %lld s (last: %s); the slot holds, nothing is "
		 "lost. If every broker is up, restart the relay (librdkafka 2.0.2 can wait on a "
		 "metadata request stuck on an unreachable broker)", (long long)(waited / 1000), err);
}

/* Repeats a resumable transactional call until it is not a retry, ticking in between. */
static kafka_txn_result until_done(eos *e, txn_call call, eos_tick_fn tick, void *ctx, char *err,
				   size_t errlen)
{
	kafka_txn_result r;
	int64_t since_ms = clock_mono_ms();
	int64_t warn_after_ms = kafka_txn_timeout_ms(e->kp) / 2;
	bool warned = false;

	while ((r = call(e->kp, EOS_SLICE_MS, err, errlen)) == KAFKA_TXN_RETRY) {
		warn_if_slow(since_ms, warn_after_ms, &warned, err);
		if (tick(ctx) < 0)
			break;
	}
	return r;
}

outcome eos_start(eos *e, kafka_producer *kp, eos_tick_fn tick, void *ctx)
{
	char err[512];
	kafka_txn_result r;

	e->kp = kp;
	r = until_done(e, kafka_txn_init, tick, ctx, err, sizeof(err));
	if (r == KAFKA_TXN_RETRY)
		return OUTCOME_FATAL; /* stopped while waiting */
	if (r != KAFKA_TXN_OK) {
		log_error("Kafka transactions for transactional.id %s: %s", e->txn_id, err);
		return OUTCOME_FATAL;
	}
	return OUTCOME_OK;
}

void eos_resume(eos *e, const checkpoint *cp)
{
	e->committed = *cp;
	e->done_lsn = cp->lsn;
	e->in_pg_txn = false;
	e->open = false;
	e->records = 0;
	horizon_rewind(&e->hz);
}

void eos_set_timeline(eos *e, uint32_t tli) { e->tli = tli; }

void eos_resume_recovery(eos *e, const checkpoint_recovery *rec)
{
	horizon_load(&e->hz, rec, e->committed.lsn);
	free(e->committed_counts);
	e->committed_counts = rec && rec->txn_counts ? xstrdup(rec->txn_counts) : NULL;
	e->committed_counts_bad = rec && rec->txn_counts_bad;
}

void eos_set_counts(eos *e, char *json)
{
	free(e->cur_counts);
	e->cur_counts = json;
}

const char *eos_committed_counts(const eos *e, lsn_t nextlsn)
{
	return nextlsn == e->committed.partial_nextlsn ? e->committed_counts : NULL;
}

bool eos_committed_counts_bad(const eos *e, lsn_t nextlsn)
{
	return nextlsn == e->committed.partial_nextlsn && e->committed_counts_bad;
}

/* The counts the checkpoint cp keeps of its split transaction (as eos_pending chose it). */
static const char *counts_for(const eos *e, const checkpoint *cp)
{
	if (cp->partial_nextlsn == LSN_INVALID)
		return NULL;
	if (e->in_pg_txn && cp->partial_nextlsn == e->cur_nextlsn && e->cur_rows > 0)
		return e->cur_counts;
	return e->committed_counts;
}

/* After a commit: what its checkpoint kept is what a restart counts from. */
static void counts_committed(eos *e, const char *counts)
{
	char *copy = counts ? xstrdup(counts) : NULL;
	free(e->committed_counts);
	e->committed_counts = copy;
	e->committed_counts_bad = false;
}

void eos_pg_txn_info(eos *e, lsn_t nextlsn, int64_t commit_us, uint32_t xid)
{
	horizon_txn_read(&e->hz, nextlsn, commit_us, xid);
	e->info_xid = xid;
}

void eos_outbox_row(eos *e) { horizon_outbox_row(&e->hz); }

void eos_set_backfill(eos *e, char *json)
{
	free(e->backfill);
	e->backfill = json;
}

bool eos_pg_begin(eos *e, lsn_t nextlsn)
{
	if (nextlsn <= e->committed.lsn)
		return false;
	e->in_pg_txn = true;
	e->cur_nextlsn = nextlsn;
	e->cur_xid = e->info_xid;
	e->cur_rows = 0;
	e->skip_rows = nextlsn == e->committed.partial_nextlsn ? e->committed.partial_rows : 0;
	return true;
}

bool eos_pg_row(eos *e)
{
	if (e->cur_rows >= e->skip_rows)
		return true;
	e->cur_rows++; /* counted as in Kafka: the committed checkpoint covers it */
	return false;
}

outcome eos_ensure_open(eos *e, char *err, size_t errlen)
{
	if (e->open)
		return OUTCOME_OK;
	kafka_txn_result r = kafka_txn_begin(e->kp, err, errlen);
	if (r != KAFKA_TXN_OK)
		return r == KAFKA_TXN_FATAL ? OUTCOME_FATAL : OUTCOME_REWIND;
	e->open = true;
	e->opened_ms = clock_mono_ms();
	e->records = 0;
	return OUTCOME_OK;
}

void eos_produced(eos *e) { e->records++; }

void eos_row_done(eos *e)
{
	if (e->in_pg_txn)
		e->cur_rows++; /* counted only once Kafka has all its records in the open transaction */
}

void eos_pg_commit(eos *e)
{
	if (!e->in_pg_txn)
		return;
	e->in_pg_txn = false;
	if (e->cur_nextlsn > e->done_lsn)
		e->done_lsn = e->cur_nextlsn;
}

void eos_idle_at(eos *e, lsn_t wal_end)
{
	if (!e->in_pg_txn && !e->open && wal_end > e->done_lsn)
		e->done_lsn = wal_end;
}

/* The rule without what only the loop knows (groups, split ends, how far behind it reads). */
bool eos_commit_due(const eos *e, bool input_idle)
{
	commit_facts f = {.open = e->open, .in_pg_txn = e->in_pg_txn, .input_idle = input_idle,
			  .records = e->records, .age_ms = clock_mono_ms() - e->opened_ms,
			  .behind_ms = -1};
	commit_limits lim = {.max_records = (uint64_t)e->cfg->transaction_max_records,
			     .max_ms = e->cfg->transaction_max_ms};
	return commit_policy_due(&f, &lim);
}

bool eos_idle_checkpoint_due(const eos *e)
{
	/* Also when nothing moved: the commit proves this relay was not fenced by a newer one,
	 * which then waits for the slot this one holds. */
	return !e->open && !e->in_pg_txn && clock_mono_ms() - e->last_commit_ms >= e->cfg->status_interval_ms;
}

checkpoint eos_pending(const eos *e)
{
	checkpoint cp = {.lsn = e->done_lsn, .tli = e->tli};
	if (e->in_pg_txn && e->cur_rows > 0) {
		cp.partial_nextlsn = e->cur_nextlsn;
		cp.partial_rows = e->cur_rows;
		cp.partial_xid = e->cur_xid;
	} else if (e->committed.partial_nextlsn > e->done_lsn) {
		/* The split transaction was not reached again yet (after a restart, keepalives come
		 * while the server reads its WAL): what Kafka has of it still counts. */
		cp.partial_nextlsn = e->committed.partial_nextlsn;
		cp.partial_rows = e->committed.partial_rows;
		cp.partial_xid = e->committed.partial_xid;
	}
	return cp;
}

static void failed_for_good(eos *e, const char *err);

/* The open transaction is older than transaction.timeout.ms: the broker aborts it itself. */
static bool outlived_timeout(const eos *e)
{
	return e->open && e->kp && clock_mono_ms() - e->opened_ms >= kafka_txn_timeout_ms(e->kp);
}

/* The producer failed for good (fenced, or another fatal error): nothing more commits with it. */
static outcome producer_failed(eos *e)
{
	char why[512];

	kafka_fatal(e->kp, why, sizeof(why));
	failed_for_good(e, why);
	return OUTCOME_FATAL;
}

/* Adds the checkpoint record to the open transaction (waiting while the queue is full). */
static outcome produce_checkpoint(eos *e, const checkpoint *cp, const checkpoint_recovery *rec,
				     eos_tick_fn tick, void *ctx)
{
	char *value = checkpoint_encode_with(cp, rec, e->cfg->slot);
	rd_kafka_resp_err_t err;

	while ((err = kafka_produce_plain(e->kp, e->cfg->checkpoint_topic, e->txn_id, value,
					  EOS_CHECKPOINT_OPAQUE)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		if (tick(ctx) < 0)
			break;
	}
	free(value);
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		return producer_failed(e);
	if (err) {
		log_error("cannot add the checkpoint to the Kafka transaction: %s", rd_kafka_err2str(err));
		return OUTCOME_REWIND;
	}
	return OUTCOME_OK;
}

void eos_attach_state(eos *e, char *value)
{
	free(e->attached);
	e->attached = value;
}

/* Adds the attached state record (if any) to the open transaction. */
static outcome produce_attached(eos *e, eos_tick_fn tick, void *ctx)
{
	strbuf key = {0};
	rd_kafka_resp_err_t err;

	if (!e->attached)
		return OUTCOME_OK;
	strbuf_addf(&key, "%s.snapshot", e->txn_id);
	while ((err = kafka_produce_plain(e->kp, e->cfg->checkpoint_topic, strbuf_str(&key), e->attached,
					  EOS_CHECKPOINT_OPAQUE)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		if (tick(ctx) < 0)
			break;
	}
	strbuf_free(&key);
	free(e->attached);
	e->attached = NULL;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		return producer_failed(e);
	if (err) {
		log_error("cannot add the snapshot state to the Kafka transaction: %s",
			  rd_kafka_err2str(err));
		return OUTCOME_REWIND;
	}
	return OUTCOME_OK;
}

/*
 * A transaction that failed for good. Open longer than transaction.timeout.ms: the broker
 * aborted it itself and bumped the producer's epoch, and the producer's next call fails as
 * fenced or in an invalid state (no other relay needed): the relay starts over. Fenced
 * otherwise: another relay with the same transactional.id took over; with relay.takeover =
 * "wait" that is how active/passive hands over (the relay stands by again), not an error.
 */
static void failed_for_good(eos *e, const char *err)
{
	bool fenced = strstr(err, "fenced") || strstr(err, "Fenced");

	if (eos_expired(e)) /* asked before the open transaction is forgotten */
		log_warn("Kafka transaction failed for good after it was open for %lld ms, longer "
			 "than transaction.timeout.ms (%d ms): the broker aborts such a transaction "
			 "itself (%s)", (long long)(clock_mono_ms() - e->opened_ms),
			 kafka_txn_timeout_ms(e->kp), err);
	else if (fenced && e->cfg->takeover_wait)
		log_warn("Kafka transaction not committed: %s (another relay with the same "
			 "transactional.id took over: standing by)", err);
	else
		log_error("Kafka transaction failed for good: %s%s", err,
			  fenced ? " (another relay with the same transactional.id took over)" : "");
}

/* After a commit that began at began: the rate estimate the gathering between commits follows. */
static void committed_rate(eos *e, int64_t began)
{
	if (e->commit_began_ms > 0)
		e->rate = commit_policy_rate(e->rate, e->records, began - e->commit_began_ms);
	e->commit_began_ms = began;
}

outcome eos_commit(eos *e, eos_tick_fn tick, void *ctx)
{
	char err[512];
	checkpoint cp = eos_pending(e);
	checkpoint_recovery rec = {0};
	int64_t began = clock_mono_ms();
	outcome res;

	if ((res = eos_ensure_open(e, err, sizeof(err))) != OUTCOME_OK) {
		if (res == OUTCOME_FATAL)
			failed_for_good(e, err);
		else
			log_error("%s", err);
		return res;
	}
	horizon_fill(&e->hz, cp.lsn, &rec);
	rec.backfill = e->backfill; /* borrowed */
	rec.txn_counts = (char *)counts_for(e, &cp); /* borrowed */
	rec.creating = e->creating;
	res = produce_attached(e, tick, ctx);
	if (res == OUTCOME_OK)
		res = produce_checkpoint(e, &cp, &rec, tick, ctx);
	rec.backfill = NULL;
	const char *counts = rec.txn_counts;
	rec.txn_counts = NULL;
	if (res != OUTCOME_OK) {
		checkpoint_recovery_free(&rec);
		return res;
	}
	kafka_txn_result r = until_done(e, kafka_txn_commit, tick, ctx, err, sizeof(err));
	if (r == KAFKA_TXN_OK)
		horizon_committed(&e->hz, &rec, cp.lsn);
	checkpoint_recovery_free(&rec);
	if (r == KAFKA_TXN_RETRY)
		return OUTCOME_FATAL; /* the tick gave up (stop deadline): the next start aborts it */
	if (r == KAFKA_TXN_FATAL) {
		failed_for_good(e, err);
		return OUTCOME_FATAL;
	}
	if (r == KAFKA_TXN_ABORT) {
		log_warn("Kafka transaction must be aborted: %s; reading again from the last "
			 "committed position", err);
		return eos_abort(e, tick, ctx) == OUTCOME_FATAL ? OUTCOME_FATAL : OUTCOME_REWIND;
	}
	e->open = false;
	e->committed = cp;
	counts_committed(e, counts);
	e->last_commit_ms = clock_mono_ms();
	committed_rate(e, began);
	return OUTCOME_OK;
}

/*
 * Also for a failure noticed outside a transactional call (a produce, the session's check);
 * latched, so that the clock cannot change the answer between two asks.
 */
bool eos_expired(eos *e)
{
	char why[512];

	if (!e->expired && outlived_timeout(e) && kafka_fatal(e->kp, why, sizeof(why)))
		e->expired = true;
	return e->expired;
}

outcome eos_abort(eos *e, eos_tick_fn tick, void *ctx)
{
	char err[512];
	kafka_txn_result r = KAFKA_TXN_OK;

	if (e->open)
		r = until_done(e, kafka_txn_abort, tick, ctx, err, sizeof(err));
	if (r == KAFKA_TXN_FATAL)
		failed_for_good(e, err); /* while the transaction still counts as open */
	eos_resume(e, &e->committed);
	eos_attach_state(e, NULL); /* its owner goes back to the committed state too */
	if (r == KAFKA_TXN_FATAL)
		return OUTCOME_FATAL;
	if (r != KAFKA_TXN_OK) {
		log_error("cannot abort the Kafka transaction: %s", r == KAFKA_TXN_RETRY ? "gave up" : err);
		return OUTCOME_FATAL;
	}
	return OUTCOME_OK;
}
