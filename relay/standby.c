/* standby.c: active/passive (relay.takeover = "wait"): standing by until the slot is free. */
#include "standby.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "session.h"
#include "signals.h"

bool standby_slot_free(const standby_slot *s)
{
	return !s->exists || !s->active;
}

void standby_holder_text(const standby_slot *s, char *buf, size_t len)
{
	const char *sep = s->holder[0] && s->addr[0] ? ", " : "";

	if (standby_slot_free(s)) {
		snprintf(buf, len, "free");
		return;
	}
	if (s->pid > 0)
		snprintf(buf, len, "held by PID %ld", s->pid);
	else
		snprintf(buf, len, "held by another process");
	if (s->holder[0] || s->addr[0]) {
		size_t n = strlen(buf);
		snprintf(buf + n, len - n, " (%s%s%s)", s->holder, sep, s->addr);
	}
}

/* Copies a column that may be NULL ("" then). */
static void copy_value(const PGresult *res, int col, char *out, size_t len)
{
	snprintf(out, len, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

/* Reads the slot and its holder over the normal connection; OUTCOME_RETRY (err) when it cannot. */
static outcome read_slot(relay *r, standby_slot *s, char *err, size_t errlen)
{
	const char *params[1] = {r->cfg->slot};
	PGconn *conn = session_sql(r, err, errlen);
	PGresult *res;

	memset(s, 0, sizeof(*s));
	if (!conn)
		return OUTCOME_RETRY;
	res = PQexecParams(conn,
			   "SELECT s.active, s.active_pid, a.application_name, host(a.client_addr) "
			   "FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid "
			   "WHERE s.slot_name = $1",
			   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "reading pg_replication_slots: %s", PQerrorMessage(conn));
		PQclear(res);
		return OUTCOME_RETRY;
	}
	if (PQntuples(res) == 1) {
		s->exists = true;
		s->active = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		s->pid = PQgetisnull(res, 0, 1) ? 0 : atol(PQgetvalue(res, 0, 1));
		copy_value(res, 2, s->holder, sizeof(s->holder));
		copy_value(res, 3, s->addr, sizeof(s->addr));
	}
	PQclear(res);
	return OUTCOME_OK;
}

/* Waits ms while serving timers and the watchdog; false on a stop request. */
static bool pause_ms(relay *r, int64_t ms)
{
	int64_t until = clock_mono_ms() + ms;

	while (!signals_stop_requested() && clock_mono_ms() < until)
		if (loop_wait(r, false, until) < 0)
			break;
	return !signals_stop_requested();
}

/* Says what the standby sees, once per change in the log, on every look to systemd. */
static void tell(relay *r, const char *seen, bool held, char *last, size_t len)
{
	if (strcmp(seen, last) != 0) {
		if (held)
			log_info("standby: slot \"%s\" is %s; taking it over once it is free "
				 "(relay.takeover = \"wait\")", r->cfg->slot, seen);
		else
			log_warn("standby: cannot see slot \"%s\": %s; looking again every %d ms",
				 r->cfg->slot, seen, STANDBY_POLL_MS);
		snprintf(last, len, "%s", seen);
	}
	notify_status("standby: slot %s is %s", r->cfg->slot, seen);
	if (held && !r->standby_saw_holder) {
		r->standby_saw_holder = true;
		notify_ready(); /* standing by is how this relay runs: the start is over */
	}
}

outcome standby_wait(relay *r)
{
	char seen[512], last[512] = "", err[400];
	standby_slot s;

	r->standby_since_ms = clock_mono_ms();
	metrics_set_ready(false);
	metrics_set_standby(true);
	for (;;) {
		if (signals_stop_requested())
			break;
		bool readable = read_slot(r, &s, err, sizeof(err)) == OUTCOME_OK;
		if (readable && standby_slot_free(&s))
			break;
		if (readable)
			standby_holder_text(&s, seen, sizeof(seen));
		else
			snprintf(seen, sizeof(seen), "%s", err);
		tell(r, seen, readable, last, sizeof(last));
		if (!pause_ms(r, STANDBY_POLL_MS))
			break;
	}
	metrics_set_standby(false);
	if (signals_stop_requested())
		return OUTCOME_STOP;
	r->slot_free_ms = clock_mono_ms();
	if (r->standby_saw_holder)
		log_info("standby: slot \"%s\" is free: taking it over", r->cfg->slot);
	return OUTCOME_OK;
}

void standby_took_over(relay *r)
{
	int64_t now = clock_mono_ms();

	if (!r->standby_saw_holder)
		return;
	r->standby_saw_holder = false;
	log_info("took over slot \"%s\" %lld ms after finding it free (standing by for %lld ms)",
		 r->cfg->slot, (long long)(now - r->slot_free_ms),
		 (long long)(now - r->standby_since_ms));
	metrics_takeover();
}
