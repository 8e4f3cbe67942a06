/* backfill.c: outbox rows read back from their tables for a new slot (see backfill.h). */
#include "backfill.h"

#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgvalue.h"
#include "xalloc.h"

#define FETCH_ROWS 1000
#define CURSOR "outbox_relay_backfill"

/* A row's place in the backfill's order: commit time (-1: unknown), full xid, command id, ctid. */
typedef struct {
	int64_t ts, xid, cid;
	char tid[32];
} place;

struct backfill {
	const relay_config *cfg;
	bool active, done;
	char reason[32];
	char *snapshot;   /* pg_current_snapshot() of the new slot's exported snapshot */
	char slot_lsn[LSN_TEXT_MAX];
	int64_t started_us;
	int table;        /* index in cfg->sources */
	bool have_after;  /* rows of this table up to `after` are in Kafka (or its open transaction) */
	place after;
	uint64_t rows;
	uint32_t skip_xid; /* leave out the first skip_rows rows of this transaction (0: none) */
	uint64_t skip_rows;
	char *committed;  /* the state Kafka committed */
	backfill_tick_fn tick; /* called while a long query runs (the watchdog, Kafka events) */
	void *tick_ctx;
	/* reading */
	bool cursor_open;
	PGresult *batch;
	int batch_i;
	place last;       /* the row returned last */
};

backfill *backfill_new(const relay_config *cfg)
{
	backfill *b = xcalloc(1, sizeof(*b));
	b->cfg = cfg;
	return b;
}

void backfill_set_tick(backfill *b, backfill_tick_fn tick, void *ctx)
{
	b->tick = tick;
	b->tick_ctx = ctx;
}

/*
 * Runs a query that may take long (a sort or scan of the whole outbox table) without blocking
 * the process: the tick runs every 500 ms meanwhile. The last result is returned.
 */
static PGresult *exec_ticking(backfill *b, PGconn *conn, const char *sql)
{
	PGresult *res, *last = NULL;

	if (!b->tick || !PQsendQuery(conn, sql))
		return PQexec(conn, sql);
	for (;;) {
		while (PQisBusy(conn)) {
			struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
			if (poll(&pfd, 1, 500) == 0)
				b->tick(b->tick_ctx);
			if (!PQconsumeInput(conn))
				break;
		}
		if (!(res = PQgetResult(conn)))
			return last;
		PQclear(last);
		last = res;
	}
}

void backfill_free(backfill *b)
{
	if (!b)
		return;
	PQclear(b->batch);
	free(b->snapshot);
	free(b->committed);
	free(b);
}

/*
 * The snapshot a new slot exports can say xmin > xmax (built from the slot's historic snapshot),
 * which pg_snapshot's input refuses. PostgreSQL tests xmin first (XidInMVCCSnapshot): an xid
 * below xmin is finished, so committed xids below xmin are visible, and none at or above it.
 * That is "xmin:xmin:". Returns the text to store (malloc'd).
 */
static char *normalized_snapshot(const char *text)
{
	unsigned long long xmin, xmax;
	char *end, out[64];

	xmin = strtoull(text, &end, 10);
	if (*end != ':')
		return xstrdup(text);
	xmax = strtoull(end + 1, &end, 10);
	if (*end != ':' || xmin <= xmax)
		return xstrdup(text);
	snprintf(out, sizeof(out), "%llu:%llu:", xmin, xmin);
	return xstrdup(out);
}

void backfill_plan(backfill *b, const char *reason, const char *snapshot, lsn_t slot_lsn,
		   int64_t started_us)
{
	snprintf(b->reason, sizeof(b->reason), "%s", reason);
	free(b->snapshot);
	b->snapshot = normalized_snapshot(snapshot);
	lsn_format(slot_lsn, b->slot_lsn);
	b->started_us = started_us;
	b->active = true;
	b->done = false;
	b->table = 0;
	b->have_after = false;
	b->rows = 0;
	b->skip_xid = 0;
	b->skip_rows = 0;
	free(b->committed);
	b->committed = NULL;
}

void backfill_skip_first(backfill *b, uint32_t xid, uint64_t rows)
{
	b->skip_xid = xid;
	b->skip_rows = rows;
}

bool backfill_has_write_order(PGconn *conn, const char *table)
{
	const char *params[1] = {table};
	PGresult *res = PQexecParams(conn,
		"SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'seq' AND "
		"atttypid = 'int8'::regtype AND NOT attisdropped", 1, NULL, params, NULL, NULL, 0);
	bool has = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	PQclear(res);
	return has;
}

bool backfill_active(const backfill *b) { return b && b->active; }
uint64_t backfill_rows(const backfill *b) { return b->rows; }
const char *backfill_reason(const backfill *b) { return b->reason; }

char *backfill_state_json(const backfill *b)
{
	json_t *o = json_pack("{s:s, s:b, s:I}", "reason", b->reason, "done", !b->active,
			      "rows", (json_int_t)b->rows);
	if (b->active) {
		json_object_set_new(o, "snapshot", json_string(b->snapshot));
		json_object_set_new(o, "slot_lsn", json_string(b->slot_lsn));
		json_object_set_new(o, "started_us", json_integer(b->started_us));
		json_object_set_new(o, "table", json_integer(b->table));
		if (b->skip_xid)
			json_object_set_new(o, "skip", json_pack("[I, I]", (json_int_t)b->skip_xid,
								 (json_int_t)b->skip_rows));
		if (b->have_after)
			json_object_set_new(o, "after", json_pack("[I, I, I, s]", (json_int_t)b->after.ts,
								  (json_int_t)b->after.xid,
								  (json_int_t)b->after.cid, b->after.tid));
	}
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}

/* Reads the progress fields of an active state. */
static int load_progress(backfill *b, json_t *o)
{
	const char *snap = NULL, *lsn = NULL, *tid = NULL;
	json_int_t started = 0, table = 0, ts, xid, cid;
	json_t *after = json_object_get(o, "after"), *skip = json_object_get(o, "skip");
	json_int_t skip_xid = 0, skip_rows = 0;

	if (json_unpack(o, "{s:s, s:s, s:I, s:I}", "snapshot", &snap, "slot_lsn", &lsn, "started_us",
			&started, "table", &table) < 0 || table < 0)
		return -1;
	free(b->snapshot);
	b->snapshot = xstrdup(snap);
	snprintf(b->slot_lsn, sizeof(b->slot_lsn), "%s", lsn);
	b->started_us = started;
	b->table = (int)table;
	if (skip && (json_unpack(skip, "[I, I]", &skip_xid, &skip_rows) < 0 || skip_xid <= 0 ||
		     skip_xid > UINT32_MAX || skip_rows < 0))
		return -1;
	b->skip_xid = (uint32_t)skip_xid;
	b->skip_rows = (uint64_t)skip_rows;
	b->have_after = after != NULL;
	if (after && (json_unpack(after, "[I, I, I, s]", &ts, &xid, &cid, &tid) < 0 ||
		      strlen(tid) >= sizeof(b->after.tid)))
		return -1;
	if (after) {
		b->after = (place){.ts = ts, .xid = xid, .cid = cid};
		snprintf(b->after.tid, sizeof(b->after.tid), "%s", tid);
	}
	return 0;
}

int backfill_load(backfill *b, const char *json)
{
	json_t *o = json_loads(json, 0, NULL);
	const char *reason = NULL;
	json_int_t rows = 0;
	int done = 0, r = -1;

	if (!o || json_unpack(o, "{s:s, s:b, s:I}", "reason", &reason, "done", &done, "rows", &rows) < 0)
		goto out;
	snprintf(b->reason, sizeof(b->reason), "%s", reason);
	b->rows = (uint64_t)rows;
	b->active = !done;
	if (b->active && load_progress(b, o) < 0)
		goto out;
	free(b->committed);
	b->committed = xstrdup(json);
	r = 0;
out:
	json_decref(o);
	return r;
}

void backfill_committed(backfill *b)
{
	free(b->committed);
	b->committed = backfill_state_json(b);
}

/* Ends the reading transaction (its cursor with it). */
static void close_cursor(backfill *b, PGconn *conn)
{
	PQclear(b->batch);
	b->batch = NULL;
	if (b->cursor_open && conn)
		PQclear(PQexec(conn, "ROLLBACK"));
	b->cursor_open = false;
}

void backfill_rewind(backfill *b, PGconn *conn)
{
	close_cursor(b, conn);
	if (b->committed) {
		char *c = xstrdup(b->committed);
		backfill_load(b, c);
		free(c);
	}
}

/* Appends text to a growing query. */
static void add(char **q, size_t *len, size_t *cap, const char *text)
{
	size_t n = strlen(text);
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*q = xrealloc(*q, *cap);
	}
	memcpy(*q + *len, text, n + 1);
	*len += n;
}

/* The same with an escaped literal. */
static void add_literal(PGconn *conn, char **q, size_t *len, size_t *cap, const char *text)
{
	char *lit = PQescapeLiteral(conn, text, strlen(text));
	add(q, len, cap, lit ? lit : "NULL");
	PQfreemem(lit);
}

/*
 * json_build_object(...) of each column, as wal2json's "columns" array members. *has_seq: the
 * table has the SQL kit's bigint column seq (the write order inside a transaction).
 */
static int add_columns(PGconn *conn, const char *qualified, bool *has_seq, char **q, size_t *len,
		       size_t *cap, char *err, size_t errlen)
{
	const char *params[1] = {qualified};
	PGresult *res = PQexecParams(conn,
		"SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid FROM pg_attribute a "
		"WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
		"ORDER BY a.attnum", 1, NULL, params, NULL, NULL, 0);
	char expr[1024];
	int n = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "reading the columns of %s: %s", qualified, PQerrorMessage(conn));
		goto out;
	}
	n = PQntuples(res);
	*has_seq = false;
	for (int i = 0; i < n; i++) {
		const char *name = PQgetvalue(res, i, 0);
		*has_seq |= strcmp(name, "seq") == 0 && strcmp(PQgetvalue(res, i, 1), "bigint") == 0;
		char *qc = PQescapeIdentifier(conn, name, strlen(name));
		pgvalue_expr(expr, sizeof(expr), qc, (unsigned)strtoul(PQgetvalue(res, i, 2), NULL, 10),
			     true);
		add(q, len, cap, i ? ", json_build_object('name', " : "json_build_object('name', ");
		add_literal(conn, q, len, cap, name);
		add(q, len, cap, ", 'type', ");
		add_literal(conn, q, len, cap, PQgetvalue(res, i, 1));
		add(q, len, cap, ", 'value', ");
		add(q, len, cap, expr);
		add(q, len, cap, ")");
		PQfreemem(qc);
	}
out:
	PQclear(res);
	return n;
}

/*
 * The full (epoch-qualified) xid of t.xmin, for pg_visible_in_snapshot(): in the epoch of the
 * next xid now, or the one before when that would be in the future. Rows committed after the
 * slot's snapshot have xids past its xmax, so the epoch comes from the current xid, not from it.
 */
#define XMIN8 "(n.base + t.xmin::text::int8 - CASE WHEN n.base + t.xmin::text::int8 >= n.next " \
	      "THEN 4294967296 ELSE 0 END)"
#define NEXT_XID " CROSS JOIN (SELECT x - mod(x, 4294967296) AS base, x AS next FROM (SELECT " \
		 "pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS x) c) n"

/*
 * The rows of one source table the backfill publishes, with their places, in order: seen by
 * the slot's snapshot, not covered by the checkpoint (lo), after the committed progress.
 */
static char *table_query(backfill *b, PGconn *conn, const char *schema, const char *table,
			 const char *qualified, bool commit_ts, const checkpoint_recovery *lo,
			 char *err, size_t errlen)
{
	size_t len = 0, cap = 4096, clen = 0, ccap = 1024;
	char *q = xmalloc(cap), *cols = xmalloc(ccap), num[256];
	bool has_seq;

	q[0] = cols[0] = '\0';
	if (add_columns(conn, qualified, &has_seq, &cols, &clen, &ccap, err, errlen) < 0) {
		free(q);
		free(cols);
		return NULL;
	}
	/* Inside a transaction: the kit's seq; else cmin (0 for rows that crash recovery or a
	 * standby replayed), then ctid. A transaction's rows all have a seq, or none do. */
	add(&q, &len, &cap, "DECLARE " CURSOR " NO SCROLL CURSOR FOR SELECT o.k_ts, o.k_x, o.k_c, "
	    "o.k_t::text, o.rec FROM (SELECT coalesce((extract(epoch FROM c.ts) * 1000000)::int8, -1) "
	    "AS k_ts, x.x8 AS k_x, ");
	add(&q, &len, &cap, has_seq ? "coalesce(t.seq, t.cmin::text::int8)" : "t.cmin::text::int8");
	add(&q, &len, &cap, " AS k_c, t.ctid AS k_t, ");
	if (b->skip_xid) {
		/* The split transaction's rows in write order: the first skip_rows are in Kafka. */
		snprintf(num, sizeof(num), "t.xmin::text::int8 = %u AND row_number() OVER (PARTITION "
			 "BY t.xmin::text::int8 = %u ORDER BY t.seq, t.ctid) <= %llu AS k_skip, ",
			 b->skip_xid, b->skip_xid, (unsigned long long)b->skip_rows);
		add(&q, &len, &cap, num);
	} else {
		add(&q, &len, &cap, "false AS k_skip, ");
	}
	add(&q, &len, &cap, "json_build_object('action', 'I', 'xid', "
	    "t.xmin::text::int8, 'timestamp', coalesce(c.ts, transaction_timestamp())::text, 'lsn', ");
	add_literal(conn, &q, &len, &cap, b->slot_lsn);
	add(&q, &len, &cap, ", 'schema', ");
	add_literal(conn, &q, &len, &cap, schema);
	add(&q, &len, &cap, ", 'table', ");
	add_literal(conn, &q, &len, &cap, table);
	add(&q, &len, &cap, ", 'columns', json_build_array(");
	add(&q, &len, &cap, cols);
	free(cols);
	add(&q, &len, &cap, "))::text AS rec FROM ONLY ");
	add(&q, &len, &cap, qualified);
	add(&q, &len, &cap, commit_ts ? " t CROSS JOIN LATERAL (SELECT pg_xact_commit_timestamp(t.xmin) AS ts) c"
				      : " t CROSS JOIN LATERAL (SELECT NULL::timestamptz AS ts) c");
	add(&q, &len, &cap, NEXT_XID " CROSS JOIN LATERAL (SELECT " XMIN8 " AS x8) x WHERE (x.x8 < 3 "
	    "OR pg_visible_in_snapshot(x.x8::text::xid8, ");
	add_literal(conn, &q, &len, &cap, b->snapshot);
	add(&q, &len, &cap, "::pg_snapshot))");
	if (lo && lo->commit_us > 0) {
		snprintf(num, sizeof(num), " AND c.ts > 'epoch'::timestamptz + %lld * interval '1 "
			 "microsecond' AND t.xmin::text::int8 <> ALL ('{", (long long)(lo->commit_us -
			 lo->window_ms * 1000));
		add(&q, &len, &cap, num);
		for (size_t i = 0; i < lo->n_xids; i++) {
			snprintf(num, sizeof(num), "%s%u", i ? "," : "", lo->xids[i]);
			add(&q, &len, &cap, num);
		}
		add(&q, &len, &cap, "}'::int8[])");
	}
	add(&q, &len, &cap, ") o WHERE NOT o.k_skip");
	if (b->have_after) {
		snprintf(num, sizeof(num), " AND (o.k_ts, o.k_x, o.k_c, o.k_t) > (%lld, %lld, %lld, ",
			 (long long)b->after.ts, (long long)b->after.xid, (long long)b->after.cid);
		add(&q, &len, &cap, num);
		add_literal(conn, &q, &len, &cap, b->after.tid);
		add(&q, &len, &cap, "::tid)");
	}
	add(&q, &len, &cap, " ORDER BY 1, 2, 3, 4");
	return q;
}

/* The index of the next table source at or after i, or -1. */
static int next_table(const relay_config *cfg, int i)
{
	for (; i < cfg->n_sources; i++)
		if (cfg->sources[i].table[0])
			return i;
	return -1;
}

/* 1 when commit timestamps can be read, 0 when not, -1 on an error. */
static int commit_ts_on(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, "SELECT current_setting('track_commit_timestamp')::bool");
	int r = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		r = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	else
		snprintf(err, errlen, "reading track_commit_timestamp: %s", PQerrorMessage(conn));
	PQclear(res);
	return r;
}

/* Splits "schema.table" and quotes both parts. */
static void qualify(PGconn *conn, const char *name, char *schema, char *table, char *out, size_t len)
{
	const char *dot = strchr(name, '.');
	snprintf(schema, 256, "%.*s", (int)(dot - name), name);
	snprintf(table, 256, "%s", dot + 1);
	char *qs = PQescapeIdentifier(conn, schema, strlen(schema));
	char *qt = PQescapeIdentifier(conn, table, strlen(table));
	snprintf(out, len, "%s.%s", qs, qt);
	PQfreemem(qs);
	PQfreemem(qt);
}

/* Opens the cursor over the current table: 1, 0 when the table does not exist, -1 on an error. */
static int open_cursor(backfill *b, PGconn *conn, const checkpoint_recovery *lo, char *err,
		       size_t errlen)
{
	char schema[256], table[256], qualified[1100];
	int cts = commit_ts_on(conn, err, errlen);
	PGresult *res;

	if (cts < 0)
		return -1;
	qualify(conn, b->cfg->sources[b->table].table, schema, table, qualified, sizeof(qualified));
	res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	PQclear(res);
	b->cursor_open = true;
	char *q = table_query(b, conn, schema, table, qualified, cts == 1, lo, err, errlen);
	if (!q)
		return -1;
	res = exec_ticking(b, conn, q);
	free(q);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		bool missing = strstr(PQerrorMessage(conn), "does not exist") != NULL;
		snprintf(err, errlen, "backfill of %s: %s", b->cfg->sources[b->table].table,
			 PQerrorMessage(conn));
		PQclear(res);
		close_cursor(b, conn);
		return missing ? 0 : -1;
	}
	PQclear(res);
	return 1;
}

/* Fetches the next batch of the open cursor: rows in it, or -1. */
static int fetch(backfill *b, PGconn *conn, char *err, size_t errlen)
{
	PQclear(b->batch);
	b->batch = exec_ticking(b, conn, "FETCH " "1000" " FROM " CURSOR);
	b->batch_i = 0;
	if (PQresultStatus(b->batch) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "backfill of %s: %s", b->cfg->sources[b->table].table,
			 PQerrorMessage(conn));
		return -1;
	}
	return PQntuples(b->batch);
}

/* Moves to the next table source (or the end). */
static void table_done(backfill *b, PGconn *conn)
{
	close_cursor(b, conn);
	b->table++;
	b->have_after = false;
}

int backfill_next(backfill *b, PGconn *conn, const checkpoint_recovery *lo, const char **record,
		  size_t *len, char *err, size_t errlen)
{
	_Static_assert(FETCH_ROWS == 1000, "FETCH text above");
	for (;;) {
		if ((b->table = next_table(b->cfg, b->table)) < 0) {
			b->table = b->cfg->n_sources;
			return 0;
		}
		if (!b->cursor_open) {
			int o = open_cursor(b, conn, lo, err, errlen);
			if (o < 0)
				return -1;
			if (o == 0) {
				log_info("backfill: %s does not exist (yet): nothing to publish from it",
					 b->cfg->sources[b->table].table);
				table_done(b, conn);
				continue;
			}
		}
		if (!b->batch || b->batch_i >= PQntuples(b->batch)) {
			int n = fetch(b, conn, err, errlen);
			if (n < 0)
				return -1;
			if (n == 0) {
				table_done(b, conn);
				continue;
			}
		}
		int i = b->batch_i++;
		b->last = (place){.ts = strtoll(PQgetvalue(b->batch, i, 0), NULL, 10),
				  .xid = strtoll(PQgetvalue(b->batch, i, 1), NULL, 10),
				  .cid = strtoll(PQgetvalue(b->batch, i, 2), NULL, 10)};
		snprintf(b->last.tid, sizeof(b->last.tid), "%s", PQgetvalue(b->batch, i, 3));
		*record = PQgetvalue(b->batch, i, 4);
		*len = (size_t)PQgetlength(b->batch, i, 4);
		return 1;
	}
}

void backfill_row_done(backfill *b)
{
	b->after = b->last;
	b->have_after = true;
	b->rows++;
}

/* max(commit time) of the rows the snapshot sees in one table, and their xids after `since`. */
static int table_horizon(backfill *b, PGconn *conn, const char *qualified, int64_t *newest,
			 char *err, size_t errlen)
{
	char q[2048];
	char *snap = PQescapeLiteral(conn, b->snapshot, strlen(b->snapshot));

	snprintf(q, sizeof(q), "SELECT coalesce(max((extract(epoch FROM "
		 "pg_xact_commit_timestamp(t.xmin)) * 1000000)::int8), 0) FROM ONLY %s t" NEXT_XID
		 " WHERE pg_visible_in_snapshot(" XMIN8 "::text::xid8, %s::pg_snapshot)", qualified, snap);
	PQfreemem(snap);
	PGresult *res = exec_ticking(b, conn, q);
	int r = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		int64_t t = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (t > *newest)
			*newest = t;
		r = 0;
	} else if (strstr(PQerrorMessage(conn), "does not exist")) {
		r = 0;
	} else {
		snprintf(err, errlen, "backfill: reading commit times of %s: %s", qualified,
			 PQerrorMessage(conn));
	}
	PQclear(res);
	return r;
}

/* The xids of rows the snapshot sees in one table that committed after `after_us`. */
static int table_xids(backfill *b, PGconn *conn, const char *qualified, int64_t after_us,
		      checkpoint_recovery *out, char *err, size_t errlen)
{
	char q[2048];
	char *snap = PQescapeLiteral(conn, b->snapshot, strlen(b->snapshot));

	snprintf(q, sizeof(q), "SELECT DISTINCT t.xmin::text FROM ONLY %s t" NEXT_XID " WHERE "
		 "pg_xact_commit_timestamp(t.xmin) > 'epoch'::timestamptz + %lld * interval "
		 "'1 microsecond' AND pg_visible_in_snapshot(" XMIN8 "::text::xid8, %s::pg_snapshot)",
		 qualified, (long long)after_us, snap);
	PQfreemem(snap);
	PGresult *res = exec_ticking(b, conn, q);
	int r = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		int n = PQntuples(res);
		out->xids = xrealloc(out->xids, (out->n_xids + (size_t)n + 1) * sizeof(uint32_t));
		for (int i = 0; i < n; i++)
			out->xids[out->n_xids++] = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
		r = 0;
	} else if (strstr(PQerrorMessage(conn), "does not exist")) {
		r = 0;
	} else {
		snprintf(err, errlen, "backfill: reading xids of %s: %s", qualified, PQerrorMessage(conn));
	}
	PQclear(res);
	return r;
}

int backfill_finish(backfill *b, PGconn *conn, const checkpoint_recovery *lo, int64_t window_ms,
		    checkpoint_recovery *out, char *err, size_t errlen)
{
	char schema[256], table[256], qualified[1100];
	int64_t newest = b->started_us;
	int cts = commit_ts_on(conn, err, errlen);

	close_cursor(b, conn);
	b->active = false;
	free(out->xids);
	out->xids = NULL;
	out->n_xids = 0;
	if (cts < 0)
		return -1;
	if (lo && lo->commit_us > newest)
		newest = lo->commit_us;
	for (int i = next_table(b->cfg, 0); cts == 1 && i >= 0; i = next_table(b->cfg, i + 1)) {
		qualify(conn, b->cfg->sources[i].table, schema, table, qualified, sizeof(qualified));
		if (table_horizon(b, conn, qualified, &newest, err, errlen) < 0)
			return -1;
	}
	out->commit_us = newest;
	out->window_ms = window_ms;
	for (int i = next_table(b->cfg, 0); cts == 1 && i >= 0; i = next_table(b->cfg, i + 1)) {
		qualify(conn, b->cfg->sources[i].table, schema, table, qualified, sizeof(qualified));
		if (table_xids(b, conn, qualified, newest - window_ms * 1000, out, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int backfill_oldest_row_us(const relay_config *cfg, PGconn *conn, int64_t *oldest, char *err,
			   size_t errlen)
{
	char schema[256], table[256], qualified[1100], q[1400];

	*oldest = 0;
	for (int i = next_table(cfg, 0); i >= 0; i = next_table(cfg, i + 1)) {
		qualify(conn, cfg->sources[i].table, schema, table, qualified, sizeof(qualified));
		snprintf(q, sizeof(q), "SELECT coalesce(min((extract(epoch FROM "
			 "pg_xact_commit_timestamp(xmin)) * 1000000)::int8), 0) FROM ONLY %s", qualified);
		PGresult *res = PQexec(conn, q);
		bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		int64_t t = ok ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		if (!ok && !strstr(PQerrorMessage(conn), "does not exist")) {
			snprintf(err, errlen, "reading the oldest row of %s: %s", cfg->sources[i].table,
				 PQerrorMessage(conn));
			PQclear(res);
			return -1;
		}
		PQclear(res);
		if (t > 0 && (*oldest == 0 || t < *oldest))
			*oldest = t;
	}
	return 0;
}

/* One int8 (or NULL: 0) from a query; -1 with err when it fails. */
static int query_int8(PGconn *conn, const char *sql, int64_t *out, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	int r = 0;

	*out = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		r = -1;
	} else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
		*out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	PQclear(res);
	return r;
}

int backfill_purged_through_us(const relay_config *cfg, PGconn *conn, int64_t *us, char *err,
			       size_t errlen)
{
	bool reads_kit_table = false;
	int64_t exists;

	*us = 0;
	for (int i = 0; i < cfg->n_sources; i++)
		reads_kit_table |= strcmp(cfg->sources[i].table, "outbox.events") == 0;
	if (!reads_kit_table)
		return 0;
	if (query_int8(conn, "SELECT (to_regclass('outbox.purge_state') IS NOT NULL)::int", &exists,
		       err, errlen) < 0)
		return -1;
	if (!exists)
		return 0; /* SQL kit 1.1 or older: purge() records nothing */
	return query_int8(conn, "SELECT (extract(epoch FROM max(purged_through)) * 1000000)::int8 "
			  "FROM outbox.purge_state", us, err, errlen);
}
