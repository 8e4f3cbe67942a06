/* standby.c: active/passive (relay.takeover = "wait"): one active relay per slot, the others stand by. */
#include "standby.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "pg_stream.h"
#include "signals.h"

/* STANDBY_LOCK_CLASS as SQL text. */
#define TEXT_OF(x) #x
#define SQL_NUMBER(x) TEXT_OF(x)
#define LOCK_CLASS SQL_NUMBER(STANDBY_LOCK_CLASS)

/* The lock's connection is looked at no more often than this while streaming (ms). */
#define LOCK_CHECK_MS 1000

/* Who holds the lock, named by its holder's connection (a relay's replication application_name). */
#define HOLDER_COLUMNS "a.pid, a.application_name, host(a.client_addr)"

void standby_holder_text(const standby_holder *h, char *buf, size_t len)
{
	if (!h->held)
		snprintf(buf, len, "nobody");
	else if (h->app[0] && h->addr[0])
		snprintf(buf, len, "%s (%s, backend PID %ld)", h->app, h->addr, h->pid);
	else if (h->app[0])
		snprintf(buf, len, "%s (backend PID %ld)", h->app, h->pid);
	else if (h->pid > 0)
		snprintf(buf, len, "backend PID %ld%s%s", h->pid, h->addr[0] ? " from " : "", h->addr);
	else
		snprintf(buf, len, "another process");
}

/* The server's notices on the lock's connection (a shutdown's WARNING) as log lines, not raw stderr. */
static void on_notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("active/passive lock connection: %s", message);
}

/*
 * The lock's own connection: the relay's name (outbox-relay[PID]@HOST) and TCP keepalives on
 * both ends, so that the server lets go of the lock of a host that died without closing its
 * connections in about 25 s, and this relay notices a server gone as quickly.
 */
static PGconn *lock_connect(relay *r, char *err, size_t errlen)
{
	char app[64];
	/* Before dbname: the conninfo's own values win. */
	const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
			      "keepalives_count", "dbname", "fallback_application_name",
			      r->cfg->pg_password ? "password" : NULL, NULL};
	const char *vals[] = {"10", "10", "5", "3", r->cfg->pg_conninfo, app, r->cfg->pg_password, NULL};
	PGconn *c;

	pg_stream_application_name(app, sizeof(app));
	c = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c) == CONNECTION_OK) {
		PQsetNoticeProcessor(c, on_notice, NULL);
		PQclear(PQexec(c, "SET statement_timeout = '10s'; SET tcp_keepalives_idle = 10; "
				  "SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"));
		return c;
	}
	snprintf(err, errlen, "connecting for the active/passive lock: %s", PQerrorMessage(c));
	PQfinish(c);
	return NULL;
}

/* The lock's connection, (re)opened when needed; NULL (err) when the server cannot be reached. */
static PGconn *lock_conn(relay *r, char *err, size_t errlen)
{
	if (r->lock_conn && PQstatus(r->lock_conn) == CONNECTION_OK)
		return r->lock_conn;
	standby_release(r);
	r->lock_conn = lock_connect(r, err, errlen);
	return r->lock_conn;
}

/* Runs a one-row query with the slot name as $1; NULL (err) unless it returned tuples. */
static PGresult *query_slot(relay *r, PGconn *c, const char *sql, char *err, size_t errlen)
{
	const char *params[1] = {r->cfg->slot};
	PGresult *res = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	snprintf(err, errlen, "%s", PQerrorMessage(c));
	PQclear(res);
	return NULL;
}

/* A holder from a result row (pid, application_name, address) ; not held without a row. */
static void holder_of(const PGresult *res, standby_holder *h)
{
	memset(h, 0, sizeof(*h));
	if (PQntuples(res) < 1)
		return;
	h->held = true;
	h->pid = PQgetisnull(res, 0, 0) ? 0 : atol(PQgetvalue(res, 0, 0));
	snprintf(h->app, sizeof(h->app), "%s", PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1));
	snprintf(h->addr, sizeof(h->addr), "%s", PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2));
}

/*
 * Tries to take the lock; when another holds it, *h names the holder. OUTCOME_OK (taken or
 * already held), OUTCOME_RETRY with h->held (another relay is active), or OUTCOME_RETRY (err).
 */
static outcome take_lock(relay *r, standby_holder *h, char *err, size_t errlen)
{
	PGconn *c = lock_conn(r, err, errlen);
	PGresult *res;
	bool taken;

	memset(h, 0, sizeof(*h));
	if (!c)
		return OUTCOME_RETRY;
	res = query_slot(r, c, "SELECT pg_try_advisory_lock(" LOCK_CLASS ", hashtext($1))", err, errlen);
	if (!res)
		return OUTCOME_RETRY;
	taken = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (taken)
		return OUTCOME_OK;
	res = query_slot(r, c, "SELECT " HOLDER_COLUMNS " FROM pg_locks l LEFT JOIN pg_stat_activity a "
			 "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = "
			 LOCK_CLASS " AND l.objid = hashtext($1)::oid AND l.objsubid = 2 AND l.database = "
			 "(SELECT oid FROM pg_database WHERE datname = current_database())", err, errlen);
	if (!res)
		return OUTCOME_RETRY;
	holder_of(res, h);
	h->held = true; /* even when it let go since: it was held a moment ago */
	PQclear(res);
	return OUTCOME_RETRY;
}

/* Who streams from the slot now (h->held false: nobody); OUTCOME_RETRY (err) when unknown. */
static outcome read_slot_holder(relay *r, standby_holder *h, char *err, size_t errlen)
{
	PGconn *c = lock_conn(r, err, errlen);
	PGresult *res = c ? query_slot(r, c, "SELECT " HOLDER_COLUMNS " FROM pg_replication_slots s "
				       "LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid "
				       "WHERE s.slot_name = $1 AND s.active", err, errlen)
			  : NULL;

	if (!res)
		return OUTCOME_RETRY;
	holder_of(res, h);
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

/* Says what the standby sees: once per change in the log, at every look to systemd. */
static void tell(relay *r, const char *seen, bool known, char *last, size_t len)
{
	notify_status("standby: %s", seen);
	if (strcmp(seen, last) == 0)
		return;
	snprintf(last, len, "%s", seen);
	if (known)
		log_info("standby: %s", seen);
	else
		log_warn("standby: %s; looking again every %d ms", seen, STANDBY_POLL_MS);
	if (known && !r->standby_saw_holder) {
		r->standby_saw_holder = true;
		notify_ready(); /* standing by is how this relay runs: its start is over */
	}
}

/*
 * A session left on the slot by a relay that no longer holds the lock: a relay frozen or cut
 * off keeps its walsender, and a walsender told to end while its client reads nothing may wait
 * on that client (in ClientWrite) until told again. The relay holding the lock ends it once it
 * stayed STALE_AFTER_MS, asking again at each look; a relay killed a moment ago lets go sooner.
 */
#define STALE_AFTER_MS 2000

typedef struct {
	long pid;         /* the backend seen streaming the slot while this relay holds the lock */
	int64_t since_ms; /* since when */
	bool told;        /* its ending was logged */
} stale_session;

/* Ends the stale session on the slot (pg_terminate_backend on the lock's connection). */
static void end_stale_session(relay *r, const standby_holder *h, stale_session *st)
{
	char who[256], pid[24];
	const char *params[1] = {pid};
	PGresult *res;

	if (h->pid != st->pid) {
		st->pid = h->pid;
		st->since_ms = clock_mono_ms();
		st->told = false;
	}
	if (h->pid <= 0 || clock_mono_ms() - st->since_ms < STALE_AFTER_MS || !r->lock_conn)
		return;
	snprintf(pid, sizeof(pid), "%ld", h->pid);
	res = PQexecParams(r->lock_conn, "SELECT pg_terminate_backend($1::int)", 1, NULL, params,
			   NULL, NULL, 0);
	if (!st->told) {
		st->told = true;
		standby_holder_text(h, who, sizeof(who));
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			log_warn("standby: slot \"%s\" is still streamed by %s, which no longer holds the "
				 "active/passive lock (a relay frozen or cut off): ending that session",
				 r->cfg->slot, who);
		else
			log_warn("standby: slot \"%s\" is still streamed by %s, which no longer holds the "
				 "active/passive lock, and this relay cannot end that session: %s; run the "
				 "relays as one role or GRANT pg_signal_backend to this relay's role",
				 r->cfg->slot, who, PQerrorMessage(r->lock_conn));
	}
	PQclear(res);
}

/*
 * One look: OUTCOME_OK when the lock is held and the slot free; else seen says why not, and
 * *slot names who streams the slot when this relay holds the lock (slot->held false otherwise).
 */
static outcome look(relay *r, char *seen, size_t len, bool *known, standby_holder *slot)
{
	char err[400], who[256];
	standby_holder h;

	*known = false;
	memset(slot, 0, sizeof(*slot));
	if (take_lock(r, &h, err, sizeof(err)) != OUTCOME_OK) {
		if (!h.held) {
			snprintf(seen, len, "cannot see who is active on slot \"%s\": %s", r->cfg->slot, err);
			return OUTCOME_RETRY;
		}
		standby_holder_text(&h, who, sizeof(who));
		snprintf(seen, len, "slot \"%s\" is in use by %s; taking over once it lets go "
			 "(relay.takeover = \"wait\")", r->cfg->slot, who);
		*known = true;
		return OUTCOME_RETRY;
	}
	if (read_slot_holder(r, &h, err, sizeof(err)) != OUTCOME_OK) {
		snprintf(seen, len, "cannot read slot \"%s\": %s", r->cfg->slot, err);
		return OUTCOME_RETRY;
	}
	if (!h.held)
		return OUTCOME_OK;
	standby_holder_text(&h, who, sizeof(who));
	snprintf(seen, len, "slot \"%s\" is still streamed by %s; taking over once it lets go",
		 r->cfg->slot, who);
	*known = true;
	*slot = h;
	return OUTCOME_RETRY;
}

outcome standby_wait(relay *r)
{
	char seen[768], last[768] = "";
	bool known;
	standby_holder slot;
	stale_session stale = {0};

	r->standby_since_ms = clock_mono_ms();
	r->lock_lost = false;
	metrics_set_ready(false);
	metrics_set_standby(true);
	while (!signals_stop_requested() && look(r, seen, sizeof(seen), &known, &slot) != OUTCOME_OK) {
		tell(r, seen, known, last, sizeof(last));
		if (slot.held)
			end_stale_session(r, &slot, &stale);
		else
			stale.pid = 0;
		if (!pause_ms(r, STANDBY_POLL_MS))
			break;
	}
	metrics_set_standby(false);
	if (signals_stop_requested())
		return OUTCOME_STOP;
	r->lock_taken_ms = clock_mono_ms();
	r->lock_checked_ms = r->lock_taken_ms;
	if (r->standby_saw_holder)
		log_info("standby: slot \"%s\" is free: taking over", r->cfg->slot);
	return OUTCOME_OK;
}

outcome standby_keep_lock(relay *r, char *err, size_t errlen)
{
	standby_holder h;
	char who[256];

	bool had = r->lock_conn && PQstatus(r->lock_conn) == CONNECTION_OK;

	/* Asked again even when held: a connection that looks fine may be gone (a server restart);
	 * a lock taken twice on one connection is still one lock, released with it. */
	if (take_lock(r, &h, err, errlen) == OUTCOME_OK) {
		if (!had)
			log_info("took the active/passive lock of slot \"%s\" again (its connection was "
				 "lost)", r->cfg->slot);
		return OUTCOME_OK;
	}
	if (h.held) {
		r->lock_lost = true;
		standby_holder_text(&h, who, sizeof(who));
		snprintf(err, errlen, "another relay became active on slot \"%s\": %s", r->cfg->slot, who);
	}
	return OUTCOME_RETRY;
}

bool standby_lock_alive(relay *r)
{
	int64_t now = clock_mono_ms();

	if (!r->lock_conn)
		return false;
	if (now - r->lock_checked_ms < LOCK_CHECK_MS)
		return true;
	r->lock_checked_ms = now;
	/* Reads what the server sent without waiting: a closed or reset connection shows here. */
	if (!PQconsumeInput(r->lock_conn) || PQstatus(r->lock_conn) != CONNECTION_OK)
		return false;
	for (PGnotify *n; (n = PQnotifies(r->lock_conn)) != NULL;)
		PQfreemem(n);
	return true;
}

void standby_release(relay *r)
{
	PQfinish(r->lock_conn);
	r->lock_conn = NULL;
}

void standby_took_over(relay *r)
{
	int64_t now = clock_mono_ms();

	if (!r->standby_saw_holder)
		return;
	r->standby_saw_holder = false;
	log_info("took over slot \"%s\" %lld ms after taking the active/passive lock (standing by "
		 "for %lld ms)", r->cfg->slot, (long long)(now - r->lock_taken_ms),
		 (long long)(now - r->standby_since_ms));
	metrics_takeover();
}
