/* gate.c: where publishing waits for postgresql.wait_for_standbys (standby_gate.h says why). */
#include "gate.h"

#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "signals.h"
#include "standby_gate.h"

/* Says once, after GATE_TELL_MS of waiting, what holds publishing back. */
#define GATE_TELL_MS 1000
/* Between two readings of the standbys' positions: from the first, doubling to the second. */
#define GATE_POLL_MIN_MS 2
#define GATE_POLL_MAX_MS 100
/* Idle checkpoints ask the server at most this often. */
#define GATE_IDLE_ASK_MS 500

/* The server the records came from: the stream's, or during a backfill its rows' (sql). */
static bool server_of(const relay *r, gate_server *srv)
{
	if (r->pg) {
		*srv = (gate_server){pg_stream_host(r->pg), pg_stream_hostaddr(r->pg),
				     pg_stream_port(r->pg), pg_stream_backend_pid(r->pg)};
		return true;
	}
	if (r->sql && PQstatus(r->sql) == CONNECTION_OK) {
		*srv = (gate_server){PQhost(r->sql), PQhostaddr(r->sql), PQport(r->sql), 0};
		return true;
	}
	return false;
}

/* One check of lsn against the standbys. */
static gate_state check(relay *r, lsn_t lsn, bool *fatal, char *err, size_t errlen)
{
	gate_server srv;

	*fatal = false;
	if (!standby_gate_on(r->cfg))
		return GATE_OPEN;
	if (!server_of(r, &srv)) {
		snprintf(err, errlen, "postgresql.wait_for_standbys: no connection to the server");
		return GATE_ERROR;
	}
	return standby_gate_check(r->gate, r->cfg, &srv, lsn, fatal, err, errlen);
}

/*
 * Longest wait with a Kafka transaction open: GATE_OPEN_WAIT_MS, and never more than half of
 * transaction.timeout.ms. Longer, the transaction is aborted and read again: the next
 * Kafka transaction then waits before it opens, with nothing open.
 */
#define GATE_OPEN_WAIT_MS 2000
static int64_t open_wait_limit_ms(const relay_config *cfg)
{
	const char *v = config_kafka_get(cfg, "transaction.timeout.ms");
	long t = v ? strtol(v, NULL, 10) : 0;
	int64_t half = (t > 0 ? t : 60000) / 2;
	return half < GATE_OPEN_WAIT_MS ? half : GATE_OPEN_WAIT_MS;
}

/* What ends a wait besides the standbys: a stop, a lost server, Kafka, the open-wait limit. */
static outcome wait_ended(relay *r, bool holding_open, int64_t since)
{
	char reason[512];

	if (signals_stop_requested() && r->stop_deadline == 0)
		r->stop_deadline = clock_mono_ms() + r->cfg->shutdown_timeout_ms;
	if (signals_stop_requested() && (!holding_open || clock_mono_ms() >= r->stop_deadline))
		return holding_open ? OUTCOME_REWIND : OUTCOME_STOP;
	if (r->pg_lost)
		return OUTCOME_RETRY;
	if (r->kp && kafka_fatal(r->kp, reason, sizeof(reason))) {
		log_error("Kafka producer failed: %s", reason);
		return OUTCOME_FATAL;
	}
	if (holding_open && clock_mono_ms() - since >= open_wait_limit_ms(r->cfg)) {
		log_warn("postgresql.wait_for_standbys: the open Kafka transaction waited %lld ms for the "
			 "standbys: aborted, to be read again (the wait goes on with nothing open)",
			 (long long)(clock_mono_ms() - since));
		return OUTCOME_RETRY;
	}
	return OUTCOME_OK;
}

/* The wait is over: counted with what it cost (the query too), and said when it was told. */
static void wait_done(int64_t since_us, bool told)
{
	int64_t took_us = clock_mono_us() - since_us;

	metrics_standby_wait(took_us);
	if (told)
		log_info("standbys flushed after %lld ms: publishing again", (long long)(took_us / 1000));
}

/* Says what publishing waits for (once per wait). */
static void tell(relay *r, lsn_t lsn)
{
	char a[LSN_TEXT_MAX];

	log_warn("holding back publishing until %d of postgresql.wait_for_standbys have flushed %s: "
		 "%s", r->cfg->wait_for_standbys_count, lsn_format(lsn, a), standby_gate_seen(r->gate));
}

/*
 * Waits until enough standbys flushed lsn, serving Kafka, status updates and reloads (taking
 * the standbys out of the file ends the wait). holding_open: a Kafka transaction is open.
 */
static outcome wait_for_lsn(relay *r, lsn_t lsn, bool holding_open)
{
	char err[1024];
	int64_t since = clock_mono_ms(), since_us = clock_mono_us(), poll = GATE_POLL_MIN_MS;
	bool told = false, fatal;
	outcome e;

	for (;;) {
		gate_state s = check(r, lsn, &fatal, err, sizeof(err));
		if (s == GATE_OPEN) {
			wait_done(since_us, told);
			return OUTCOME_OK;
		}
		if (s == GATE_ERROR) {
			log_warn("%s; %s", err, holding_open ? "the Kafka transaction is not committed"
							   : "reconnecting");
			return fatal ? OUTCOME_FATAL : OUTCOME_RETRY;
		}
		if (!told && clock_mono_ms() - since >= GATE_TELL_MS) {
			tell(r, lsn);
			told = true;
		}
		if ((e = wait_ended(r, holding_open, since)) != OUTCOME_OK)
			return e;
		loop_take_reload(r);
		if (loop_wait(r, false, clock_mono_ms() + poll) < 0)
			return OUTCOME_RETRY;
		poll = poll * 2 > GATE_POLL_MAX_MS ? GATE_POLL_MAX_MS : poll * 2;
	}
}

/* The WAL a commit now would cover: to the open PostgreSQL transaction's end when inside one. */
static lsn_t covered_lsn(const relay *r)
{
	const eos *e = &r->eos;
	return e->in_pg_txn && e->cur_nextlsn > e->done_lsn ? e->cur_nextlsn : e->done_lsn;
}

outcome gate_before_open(relay *r)
{
	if (!r->eos_on || !standby_gate_on(r->cfg))
		return OUTCOME_OK;
	return wait_for_lsn(r, covered_lsn(r), false);
}

outcome gate_before_commit(relay *r)
{
	lsn_t lsn = covered_lsn(r);

	if (!r->eos_on || !standby_gate_on(r->cfg) ||
	    (lsn <= r->eos.committed.lsn && r->eos.records == 0))
		return OUTCOME_OK;
	return wait_for_lsn(r, lsn, r->eos.open);
}

bool gate_idle_checkpoint_ok(relay *r)
{
	char err[1024];
	bool fatal;
	int64_t now = clock_mono_ms();

	/* Nothing new (the commit only proves this relay was not fenced): nothing to wait for. */
	if (!r->eos_on || !standby_gate_on(r->cfg) || r->eos.done_lsn <= r->eos.committed.lsn)
		return true;
	if (now - r->gate_idle_asked_ms < GATE_IDLE_ASK_MS)
		return false;
	r->gate_idle_asked_ms = now;
	return check(r, r->eos.done_lsn, &fatal, err, sizeof(err)) == GATE_OPEN;
}
