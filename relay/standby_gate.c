/* standby_gate.c: Kafka commits held back until chosen standbys have flushed the WAL they cover. */
#include "standby_gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_stream.h"
#include "strbuf.h"
#include "xalloc.h"

/* Standbys named in postgresql.wait_for_standbys: at most the config table's maximum count. */
#define GATE_MAX_STANDBYS 64

struct standby_gate {
	PGconn *conn;   /* to the stream's server, for one session (NULL: not connected) */
	lsn_t flushed;  /* what enough standbys had flushed at the last reading */
	strbuf seen;    /* that reading, for the log */
};

standby_gate *standby_gate_new(void) { return xcalloc(1, sizeof(standby_gate)); }

void standby_gate_reset(standby_gate *g)
{
	PQfinish(g->conn);
	g->conn = NULL;
	g->flushed = LSN_INVALID;
}

void standby_gate_free(standby_gate *g)
{
	if (!g)
		return;
	standby_gate_reset(g);
	strbuf_free(&g->seen);
	free(g);
}

bool standby_gate_on(const relay_config *cfg) { return cfg->n_wait_for_standbys > 0; }

const char *standby_gate_seen(const standby_gate *g) { return g->seen.len ? strbuf_str(&g->seen) : ""; }

/* Descending order of LSNs, for the quorum. */
static int lsn_desc(const void *a, const void *b)
{
	lsn_t x = *(const lsn_t *)a, y = *(const lsn_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

lsn_t standby_gate_quorum(lsn_t *flushed, int n, int count)
{
	if (count < 1 || n < count)
		return LSN_INVALID;
	qsort(flushed, (size_t)n, sizeof(lsn_t), lsn_desc);
	return flushed[count - 1];
}

/* The position in cfg's list of a standby's application_name, or -1 when not named. */
static int named(const relay_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_wait_for_standbys; i++)
		if (strcmp(cfg->wait_for_standbys[i], name) == 0)
			return i;
	return -1;
}

/* Connects to the stream's server (host and port override the conninfo's, which may list several). */
static bool gate_connect(standby_gate *g, const relay_config *cfg, const char *host,
			 const char *port, char *err, size_t errlen)
{
	const char *keys[] = {"dbname", "host", "port", "connect_timeout", "fallback_application_name",
			      cfg->pg_password ? "password" : NULL, NULL};
	const char *vals[] = {cfg->pg_conninfo, host, port, "5", "outbox-relay-standbys",
			      cfg->pg_password, NULL};

	if (g->conn && PQstatus(g->conn) == CONNECTION_OK)
		return true;
	PQfinish(g->conn);
	g->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(g->conn) == CONNECTION_OK)
		return true;
	snprintf(err, errlen, "postgresql.wait_for_standbys: connecting to %s:%s to read the "
		 "standbys' positions: %s", host, port, PQerrorMessage(g->conn));
	PQfinish(g->conn);
	g->conn = NULL;
	return false;
}

/*
 * One row of pg_stat_replication: a named standby's flush position into flushed[] (and the log
 * text). -1 when its position is hidden from the relay's role.
 */
static int take_row(standby_gate *g, const relay_config *cfg, PGresult *res, int row,
		    lsn_t *flushed, bool *have)
{
	const char *name = PQgetvalue(res, row, 0);
	const char *lsn = PQgetvalue(res, row, 1);
	int i = named(cfg, name);
	lsn_t v;

	if (i < 0)
		return 0;
	if (PQgetisnull(res, row, 2))
		return -1; /* pg_stat_replication hides the positions from this role */
	if (PQgetisnull(res, row, 1) || !lsn_parse(lsn, strlen(lsn), &v))
		v = LSN_INVALID;
	if (!have[i] || v > flushed[i])
		flushed[i] = v;
	have[i] = true;
	strbuf_addf(&g->seen, "%s%s %s", g->seen.len ? ", " : "", name,
		       PQgetisnull(res, row, 1) ? "(no flush position)" : lsn);
	return 0;
}

/* Reads the named standbys' flush positions; the quorum's goes to g->flushed. */
static gate_state read_positions(standby_gate *g, const relay_config *cfg, char *err, size_t errlen)
{
	lsn_t flushed[GATE_MAX_STANDBYS], got[GATE_MAX_STANDBYS];
	bool have[GATE_MAX_STANDBYS] = {false};
	int n = 0, hidden = 0;
	PGresult *res = PQexec(g->conn, "SELECT application_name, flush_lsn::text, state "
					"FROM pg_stat_replication");

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgresql.wait_for_standbys: reading pg_stat_replication: %s",
			 PQerrorMessage(g->conn));
		PQclear(res);
		return GATE_ERROR;
	}
	strbuf_reset(&g->seen);
	for (int row = 0; row < PQntuples(res); row++)
		hidden += take_row(g, cfg, res, row, flushed, have) < 0;
	PQclear(res);
	if (hidden) {
		snprintf(err, errlen, "postgresql.wait_for_standbys: role %s cannot see the standbys' "
			 "positions in pg_stat_replication: GRANT pg_read_all_stats TO %s",
			 PQuser(g->conn), PQuser(g->conn));
		return GATE_ERROR;
	}
	for (int i = 0; i < cfg->n_wait_for_standbys && i < GATE_MAX_STANDBYS; i++) {
		if (have[i])
			got[n++] = flushed[i];
		else
			strbuf_addf(&g->seen, "%s%s not connected", g->seen.len ? ", " : "",
				    cfg->wait_for_standbys[i]);
	}
	g->flushed = standby_gate_quorum(got, n, cfg->wait_for_standbys_count);
	return GATE_OPEN;
}

gate_state standby_gate_check(standby_gate *g, const relay_config *cfg, const char *host,
			      const char *port, lsn_t lsn, char *err, size_t errlen)
{
	gate_state s;

	if (!standby_gate_on(cfg) || lsn <= g->flushed)
		return GATE_OPEN;
	if (!gate_connect(g, cfg, host, port, err, errlen))
		return GATE_ERROR;
	if ((s = read_positions(g, cfg, err, errlen)) != GATE_OPEN) {
		standby_gate_reset(g);
		return s;
	}
	return lsn <= g->flushed ? GATE_OPEN : GATE_WAIT;
}
