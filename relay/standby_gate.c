/* standby_gate.c: Kafka commits held back until chosen standbys have flushed the WAL they cover. */
#include "standby_gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

struct standby_gate {
	PGconn *conn;   /* to the records' server (NULL: not connected) */
	strbuf server;  /* "host|hostaddr|port" it was made for */
	strbuf asked;   /* the names and count it read positions for */
	lsn_t flushed;  /* what enough standbys had flushed at the last reading */
	strbuf seen;    /* that reading, for the log */
};

standby_gate *standby_gate_new(void) { return xcalloc(1, sizeof(standby_gate)); }

void standby_gate_reset(standby_gate *g)
{
	PQfinish(g->conn);
	g->conn = NULL;
	g->flushed = LSN_INVALID;
	strbuf_reset(&g->server);
	strbuf_reset(&g->asked);
}

void standby_gate_free(standby_gate *g)
{
	if (!g)
		return;
	standby_gate_reset(g);
	strbuf_free(&g->server);
	strbuf_free(&g->asked);
	strbuf_free(&g->seen);
	free(g);
}

bool standby_gate_on(const relay_config *cfg) { return cfg->n_wait_for_standbys > 0; }

const char *standby_gate_seen(const standby_gate *g) { return strbuf_str(&g->seen); }

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
	for (int i = 0; i < cfg->n_wait_for_standbys && i < GATE_MAX_STANDBYS; i++)
		if (strcmp(cfg->wait_for_standbys[i], name) == 0)
			return i;
	return -1;
}

/* One line of libpq's message (it ends with a newline, and may hold several). */
static void put_error(char *err, size_t errlen, const char *what, PGconn *conn)
{
	size_t n;

	snprintf(err, errlen, "postgresql.wait_for_standbys: %s: %s", what, PQerrorMessage(conn));
	for (n = strlen(err); n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '); n--)
		err[n - 1] = '\0';
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
}

/*
 * Starts afresh when the server or the settings are not those of the last reading: a reading
 * says nothing about another server's WAL, nor about another quorum.
 */
static void same_or_reset(standby_gate *g, const relay_config *cfg, const gate_server *srv)
{
	strbuf server = {0}, asked = {0};

	strbuf_addf(&server, "%s|%s|%s", srv->host ? srv->host : "",
		    srv->hostaddr ? srv->hostaddr : "", srv->port ? srv->port : "");
	strbuf_addf(&asked, "%d", cfg->wait_for_standbys_count);
	for (int i = 0; i < cfg->n_wait_for_standbys; i++)
		strbuf_addf(&asked, "|%s", cfg->wait_for_standbys[i]);
	if (strcmp(strbuf_str(&server), strbuf_str(&g->server)) != 0 ||
	    strcmp(strbuf_str(&asked), strbuf_str(&g->asked)) != 0) {
		standby_gate_reset(g);
		strbuf_add(&g->server, strbuf_str(&server));
		strbuf_add(&g->asked, strbuf_str(&asked));
	}
	strbuf_free(&server);
	strbuf_free(&asked);
}

/*
 * Connects to the records' server: its host, address and port override the conninfo's (which
 * may list several); keepalives and timeouts bound how long a vanished server can hold a query.
 */
static bool gate_connect(standby_gate *g, const relay_config *cfg, const gate_server *srv,
			 char *err, size_t errlen)
{
	const char *keys[12], *vals[12];
	int n = 0;

	if (g->conn && PQstatus(g->conn) == CONNECTION_OK)
		return true;
	PQfinish(g->conn);
	keys[n] = "connect_timeout", vals[n++] = "5";
	keys[n] = "dbname", vals[n++] = cfg->pg_conninfo;
	keys[n] = "host", vals[n++] = srv->host;
	keys[n] = "port", vals[n++] = srv->port;
	keys[n] = "hostaddr", vals[n++] = srv->hostaddr && srv->hostaddr[0] ? srv->hostaddr : "";
	keys[n] = "keepalives_idle", vals[n++] = "5";
	keys[n] = "keepalives_interval", vals[n++] = "2";
	keys[n] = "keepalives_count", vals[n++] = "2";
	keys[n] = "tcp_user_timeout", vals[n++] = "5000";
	keys[n] = "options", vals[n++] = "-c statement_timeout=5000";
	keys[n] = "application_name", vals[n++] = "outbox-relay-standbys";
	if (cfg->pg_password)
		keys[n] = "password", vals[n++] = cfg->pg_password;
	keys[n] = NULL, vals[n] = NULL;
	g->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(g->conn) == CONNECTION_OK)
		return true;
	put_error(err, errlen, "connecting to read the standbys' positions", g->conn);
	PQfinish(g->conn);
	g->conn = NULL;
	return false;
}

/* What one reading found. */
typedef struct {
	lsn_t flushed[GATE_MAX_STANDBYS];
	bool have[GATE_MAX_STANDBYS];
	int hidden;       /* named standbys whose positions the role cannot see */
	bool stream_seen; /* the stream's walsender was among the rows */
} gate_reading;

/* One row of pg_stat_replication (pid, application_name, flush_lsn, state) into the reading. */
static void take_row(standby_gate *g, const relay_config *cfg, const gate_server *srv,
		     PGresult *res, int row, gate_reading *rd)
{
	const char *lsn = PQgetvalue(res, row, 2);
	int i = named(cfg, PQgetvalue(res, row, 1));
	lsn_t v;

	if (srv->walsender_pid && atoi(PQgetvalue(res, row, 0)) == srv->walsender_pid)
		rd->stream_seen = true;
	if (i < 0)
		return;
	if (PQgetisnull(res, row, 3)) {
		rd->hidden++; /* pg_stat_replication hides the positions from this role */
		return;
	}
	if (PQgetisnull(res, row, 2) || !lsn_parse(lsn, strlen(lsn), &v))
		v = LSN_INVALID;
	if (!rd->have[i] || v > rd->flushed[i])
		rd->flushed[i] = v;
	rd->have[i] = true;
	strbuf_addf(&g->seen, "%s%s %s", g->seen.len ? ", " : "", cfg->wait_for_standbys[i],
		    PQgetisnull(res, row, 2) ? "(no flush position)" : lsn);
}

/* The reading against what it must show: the stream's server, visible positions. */
static gate_state judge(standby_gate *g, const relay_config *cfg, const gate_server *srv,
			gate_reading *rd, bool *fatal, char *err, size_t errlen)
{
	lsn_t got[GATE_MAX_STANDBYS];
	int n = 0;

	if (rd->hidden) {
		snprintf(err, errlen, "postgresql.wait_for_standbys: role %s cannot see the standbys' "
			 "positions in pg_stat_replication: GRANT pg_read_all_stats TO %s",
			 PQuser(g->conn), PQuser(g->conn));
		*fatal = true;
		return GATE_ERROR;
	}
	if (srv->walsender_pid && !rd->stream_seen) {
		snprintf(err, errlen, "postgresql.wait_for_standbys: the server at %s:%s does not list "
			 "the relay's walsender (pid %d): it is not the server the stream reads",
			 srv->host ? srv->host : "", srv->port ? srv->port : "", srv->walsender_pid);
		return GATE_ERROR;
	}
	for (int i = 0; i < cfg->n_wait_for_standbys && i < GATE_MAX_STANDBYS; i++) {
		if (rd->have[i])
			got[n++] = rd->flushed[i];
		else
			strbuf_addf(&g->seen, "%s%s not connected", g->seen.len ? ", " : "",
				    cfg->wait_for_standbys[i]);
	}
	g->flushed = standby_gate_quorum(got, n, cfg->wait_for_standbys_count);
	return GATE_OPEN;
}

/* Reads the named standbys' flush positions; the quorum's goes to g->flushed. */
static gate_state read_positions(standby_gate *g, const relay_config *cfg, const gate_server *srv,
				 bool *fatal, char *err, size_t errlen)
{
	gate_reading rd;
	PGresult *res = PQexec(g->conn, "SELECT pid, application_name, flush_lsn::text, state "
					"FROM pg_stat_replication");
	gate_state s;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		put_error(err, errlen, "reading pg_stat_replication", g->conn);
		PQclear(res);
		return GATE_ERROR;
	}
	memset(&rd, 0, sizeof(rd));
	strbuf_reset(&g->seen);
	for (int row = 0; row < PQntuples(res); row++)
		take_row(g, cfg, srv, res, row, &rd);
	PQclear(res);
	s = judge(g, cfg, srv, &rd, fatal, err, errlen);
	return s;
}

/* Connects when needed and reads; a connection that broke while idle gets one more try. */
static gate_state ask(standby_gate *g, const relay_config *cfg, const gate_server *srv,
		      bool *fatal, char *err, size_t errlen)
{
	gate_state s = GATE_ERROR;

	for (int attempt = 0; attempt < 2 && s == GATE_ERROR && !*fatal; attempt++) {
		bool was_connected = g->conn != NULL;
		if (!gate_connect(g, cfg, srv, err, errlen))
			return GATE_ERROR;
		s = read_positions(g, cfg, srv, fatal, err, errlen);
		if (s == GATE_ERROR && PQstatus(g->conn) == CONNECTION_OK)
			break; /* the server answered: trying again would say the same */
		if (s == GATE_ERROR) {
			PQfinish(g->conn);
			g->conn = NULL;
			if (!was_connected)
				break;
		}
	}
	return s;
}

gate_state standby_gate_check(standby_gate *g, const relay_config *cfg, const gate_server *srv,
			      lsn_t lsn, bool *fatal, char *err, size_t errlen)
{
	*fatal = false;
	if (!standby_gate_on(cfg))
		return GATE_OPEN;
	same_or_reset(g, cfg, srv);
	if (lsn <= g->flushed)
		return GATE_OPEN;
	if (ask(g, cfg, srv, fatal, err, errlen) != GATE_OPEN) {
		g->flushed = LSN_INVALID;
		return GATE_ERROR;
	}
	return lsn <= g->flushed ? GATE_OPEN : GATE_WAIT;
}
