/* outbox_table.c: SQL over outbox tables read back by the relay (see outbox_table.h). */
#include "outbox_table.h"

#include <stdio.h>
#include <string.h>

/* xmin as a full xid: in the epoch of the next xid now, or the one before when that would be
 * in the future (rows newer than any snapshot have xids past its xmax: not from it). */
#define XMIN8 "(n.base + t.xmin::text::int8 - CASE WHEN n.base + t.xmin::text::int8 >= n.next " \
	      "THEN 4294967296 ELSE 0 END)"

int outbox_table_read(PGconn *conn, const char *name, outbox_table *t, char *err, size_t errlen)
{
	const char *dot = strchr(name, '.');
	char *qs, *qt;
	const char *params[1] = {name};
	PGresult *res;

	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->schema, sizeof(t->schema), "%.*s", dot ? (int)(dot - name) : 0, name);
	snprintf(t->table, sizeof(t->table), "%s", dot ? dot + 1 : name);
	qs = PQescapeIdentifier(conn, t->schema, strlen(t->schema));
	qt = PQescapeIdentifier(conn, t->table, strlen(t->table));
	snprintf(t->qualified, sizeof(t->qualified), "%s.%s", qs ? qs : "", qt ? qt : "");
	PQfreemem(qs);
	PQfreemem(qt);
	params[0] = t->qualified;
	res = PQexecParams(conn,
		"SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT FROM pg_attribute WHERE attrelid = "
		"to_regclass($1) AND attname = 'seq' AND atttypid = 'int8'::regtype AND NOT "
		"attisdropped), EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) AND "
		"attname = 'txid' AND atttypid = 'xid8'::regtype AND NOT attisdropped)",
		1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "reading the shape of %s: %s", name, PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	t->exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	t->has_seq = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	t->has_txid = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	PQclear(res);
	return 0;
}

void outbox_table_from(const outbox_table *t, bool commit_ts, strbuf *q)
{
	strbuf_addf(q, " FROM ONLY %s t CROSS JOIN (SELECT x - mod(x, 4294967296) AS base, x AS next "
		    "FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS x) x) n "
		    "CROSS JOIN LATERAL (SELECT %s AS ts) c", t->qualified,
		    commit_ts ? "pg_xact_commit_timestamp(t.xmin)" : "NULL::timestamptz");
}

void outbox_table_txid(const outbox_table *t, strbuf *q)
{
	strbuf_add(q, t->has_txid ? "coalesce(t.txid::text::int8, " XMIN8 ")" : XMIN8);
}

void outbox_table_write_order(const outbox_table *t, strbuf *q)
{
	strbuf_add(q, t->has_seq ? "coalesce(t.seq, t.cmin::text::int8)" : "t.cmin::text::int8");
}

void outbox_table_seen_by(PGconn *conn, const outbox_table *t, const char *snapshot, strbuf *q)
{
	char *lit = PQescapeLiteral(conn, snapshot, strlen(snapshot));
	strbuf_add(q, "pg_visible_in_snapshot(");
	outbox_table_txid(t, q);
	strbuf_addf(q, "::text::xid8, %s::pg_snapshot)", lit ? lit : "NULL");
	PQfreemem(lit);
}

void outbox_table_after(const outbox_table *t, const checkpoint_recovery *lo, strbuf *q)
{
	strbuf_addf(q, "c.ts > 'epoch'::timestamptz + %lld * interval '1 microsecond' AND mod(",
		    (long long)(lo->commit_us - lo->window_ms * 1000));
	outbox_table_txid(t, q);
	strbuf_add(q, ", 4294967296) <> ALL ('{");
	for (size_t i = 0; i < lo->n_xids; i++)
		strbuf_addf(q, "%s%u", i ? "," : "", lo->xids[i]);
	strbuf_add(q, "}'::int8[])");
}
