/* backfill.c: outbox rows read back from their tables for a new slot (see backfill.h). */
#include "backfill.h"

#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "outbox_table.h"
#include "pgvalue.h"
#include "strbuf.h"
#include "xalloc.h"

#define FETCH_SQL "FETCH 1000 FROM outbox_relay_backfill"
#define UNDEFINED_TABLE "42P01"

/* A row's place in the backfill's order: commit time (-1: unknown), top-level xid, write order,
 * ctid. */
typedef struct {
	int64_t ts, xid, cid;
	char tid[32];
} place;

struct backfill {
	const relay_config *cfg;
	bool active;
	char reason[32];
	char *snapshot;   /* pg_current_snapshot() of the new slot's exported snapshot */
	char slot_lsn[LSN_TEXT_MAX];
	int64_t started_us;
	bool commit_ts;   /* rows are ordered by commit time (track_commit_timestamp was on) */
	int table;        /* index in cfg->sources */
	char table_name[520]; /* its name, checked on resume */
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
	b->commit_ts = false;
	b->active = true;
	b->table = 0;
	b->table_name[0] = '\0';
	b->have_after = false;
	b->rows = 0;
	b->skip_xid = 0;
	b->skip_rows = 0;
	free(b->committed);
	b->committed = backfill_state_json(b); /* an abort before the first commit comes back here */
}

void backfill_skip_first(backfill *b, uint32_t xid, uint64_t rows)
{
	b->skip_xid = xid;
	b->skip_rows = rows;
	free(b->committed);
	b->committed = backfill_state_json(b);
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
		json_object_set_new(o, "table_name", json_string(b->table_name));
		json_object_set_new(o, "commit_ts", json_boolean(b->commit_ts));
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
	json_t *name = json_object_get(o, "table_name");
	snprintf(b->table_name, sizeof(b->table_name), "%s", json_is_string(name) ? json_string_value(name) : "");
	b->commit_ts = json_is_true(json_object_get(o, "commit_ts"));
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
	b->batch_i = 0;
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

/* True when a failed query's error is "no such table" (SQLSTATE, not the message's language). */
static bool undefined_table(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return state && strcmp(state, UNDEFINED_TABLE) == 0;
}

/* (ordinal, name, type, value as json) of each column: VALUES rows of wal2json's "columns". */
static int add_columns(PGconn *conn, const outbox_table *t, strbuf *q, char *err, size_t errlen)
{
	const char *params[1] = {t->qualified};
	PGresult *res = PQexecParams(conn,
		"SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid FROM pg_attribute a "
		"WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
		"ORDER BY a.attnum", 1, NULL, params, NULL, NULL, 0);
	char expr[1024];
	int n = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "reading the columns of %s: %s", t->name, PQerrorMessage(conn));
		goto out;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *name = PQgetvalue(res, i, 0), *type = PQgetvalue(res, i, 1);
		char *qc = PQescapeIdentifier(conn, name, strlen(name));
		char *ln = PQescapeLiteral(conn, name, strlen(name));
		char *lt = PQescapeLiteral(conn, type, strlen(type));
		pgvalue_expr(expr, sizeof(expr), qc, (unsigned)strtoul(PQgetvalue(res, i, 2), NULL, 10),
			     true);
		strbuf_addf(q, "%s(%d, %s, %s, to_json(%s))", i ? ", " : "", i, ln, lt, expr);
		PQfreemem(qc);
		PQfreemem(ln);
		PQfreemem(lt);
	}
out:
	PQclear(res);
	return n;
}

/*
 * The cursor over the rows of one table the backfill publishes, with their places, in order:
 * seen by the slot's snapshot, not covered by the checkpoint (lo), after the committed progress,
 * and not among the first rows of a split transaction that Kafka has.
 */
static int declare_cursor(backfill *b, PGconn *conn, const outbox_table *t,
			  const checkpoint_recovery *lo, strbuf *q, char *err, size_t errlen)
{
	strbuf cols = {0};
	char *lsn = PQescapeLiteral(conn, b->slot_lsn, strlen(b->slot_lsn));
	char *sch = PQescapeLiteral(conn, t->schema, strlen(t->schema));
	char *tab = PQescapeLiteral(conn, t->table, strlen(t->table));
	int r = add_columns(conn, t, &cols, err, errlen);

	strbuf_add(q, "DECLARE outbox_relay_backfill NO SCROLL CURSOR FOR SELECT o.k_ts, o.k_x, o.k_c, "
		   "o.k_t, o.rec FROM (SELECT coalesce((extract(epoch FROM c.ts) * 1000000)::int8, -1) "
		   "AS k_ts, ");
	outbox_table_txid(t, q);
	strbuf_add(q, " AS k_x, ");
	outbox_table_write_order(t, q);
	strbuf_add(q, " AS k_c, t.ctid AS k_t, ");
	if (b->skip_xid) { /* the split transaction's rows in write order: the first are in Kafka */
		strbuf_add(q, "mod(");
		outbox_table_txid(t, q);
		strbuf_addf(q, ", 4294967296) = %u AND row_number() OVER (PARTITION BY mod(", b->skip_xid);
		outbox_table_txid(t, q);
		strbuf_addf(q, ", 4294967296) = %u ORDER BY ", b->skip_xid);
		outbox_table_write_order(t, q);
		strbuf_addf(q, ", t.ctid) <= %llu AS k_skip, ", (unsigned long long)b->skip_rows);
	} else {
		strbuf_add(q, "false AS k_skip, ");
	}
	strbuf_add(q, "json_build_object('action', 'I', 'xid', mod(");
	outbox_table_txid(t, q);
	/* json_agg over VALUES: a function takes at most 100 arguments, a table more columns. */
	strbuf_addf(q, ", 4294967296), 'timestamp', coalesce(c.ts, transaction_timestamp())::text, "
		    "'lsn', %s, 'schema', %s, 'table', %s, 'columns', (SELECT coalesce(json_agg("
		    "json_build_object('name', v.n, 'type', v.ty, 'value', v.val) ORDER BY v.o), '[]') "
		    "FROM (VALUES %s) v(o, n, ty, val)))::text AS rec",
		    lsn, sch, tab, strbuf_str(&cols));
	outbox_table_from(t, b->commit_ts, q);
	strbuf_add(q, " WHERE ");
	outbox_table_seen_by(conn, t, b->snapshot, q);
	if (lo && lo->commit_us > 0) {
		strbuf_add(q, " AND ");
		outbox_table_after(t, lo, q);
	}
	strbuf_add(q, ") o WHERE NOT o.k_skip");
	if (b->have_after) {
		char *tid = PQescapeLiteral(conn, b->after.tid, strlen(b->after.tid));
		strbuf_addf(q, " AND (o.k_ts, o.k_x, o.k_c, o.k_t) > (%lld, %lld, %lld, %s::tid)",
			    (long long)b->after.ts, (long long)b->after.xid, (long long)b->after.cid, tid);
		PQfreemem(tid);
	}
	strbuf_add(q, " ORDER BY 1, 2, 3, 4");
	strbuf_free(&cols);
	PQfreemem(lsn);
	PQfreemem(sch);
	PQfreemem(tab);
	return r < 0 ? -1 : 0;
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
int backfill_commit_ts_on(PGconn *conn, char *err, size_t errlen)
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

/*
 * The order of the whole backfill is fixed at its first table: commit times on or off. A
 * resumed backfill whose server changed it since would skip or repeat rows: refused.
 */
static int check_commit_ts(backfill *b, PGconn *conn, char *err, size_t errlen)
{
	int cts = backfill_commit_ts_on(conn, err, errlen);
	if (cts < 0)
		return -1;
	if (b->table == next_table(b->cfg, 0) && !b->have_after && b->rows == 0)
		b->commit_ts = cts == 1;
	if (b->commit_ts && cts != 1) {
		snprintf(err, errlen, "track_commit_timestamp was turned off during the backfill, "
			 "which orders rows by commit time: turn it on again to finish it");
		return -1;
	}
	return 0;
}

/* Opens the cursor over the current table: 1, 0 when the table does not exist, -1 on an error. */
static int open_cursor(backfill *b, PGconn *conn, const checkpoint_recovery *lo, char *err,
		       size_t errlen)
{
	outbox_table t;
	strbuf q = {0};
	PGresult *res;

	if (check_commit_ts(b, conn, err, errlen) < 0 ||
	    outbox_table_read(conn, b->cfg->sources[b->table].table, &t, err, errlen) < 0)
		return -1;
	if (!t.exists)
		return 0;
	if (b->table_name[0] && strcmp(b->table_name, t.name) != 0) {
		snprintf(err, errlen, "the backfill was at table %s, but sources[%d] is now %s: restore "
			 "the sources' order to finish it", b->table_name, b->table, t.name);
		return -1;
	}
	snprintf(b->table_name, sizeof(b->table_name), "%s", t.name);
	PQclear(PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
	b->cursor_open = true;
	if (declare_cursor(b, conn, &t, lo, &q, err, errlen) < 0) {
		strbuf_free(&q);
		close_cursor(b, conn);
		return -1;
	}
	res = exec_ticking(b, conn, strbuf_str(&q));
	strbuf_free(&q);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		int missing = undefined_table(res);
		snprintf(err, errlen, "backfill of %s: %s", t.name, PQerrorMessage(conn));
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
	b->batch = exec_ticking(b, conn, FETCH_SQL);
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
	b->table_name[0] = '\0';
	b->have_after = false;
}

int backfill_next(backfill *b, PGconn *conn, const checkpoint_recovery *lo, const char **record,
		  size_t *len, char *err, size_t errlen)
{
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

/* One int8 (NULL: 0) from a query; -1 with err when it fails (a missing table: 0). */
static int query_int8(backfill *b, PGconn *conn, const char *sql, int64_t *out, char *err,
		      size_t errlen)
{
	PGresult *res = b ? exec_ticking(b, conn, sql) : PQexec(conn, sql);
	int r = 0;

	*out = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK && !undefined_table(res)) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		r = -1;
	} else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
		   !PQgetisnull(res, 0, 0)) {
		*out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	PQclear(res);
	return r;
}

/* The newest commit time among the rows the slot's snapshot sees in one table. */
static int table_newest(backfill *b, PGconn *conn, const outbox_table *t, int64_t *newest,
			char *err, size_t errlen)
{
	strbuf q = {0};
	int64_t v;

	strbuf_add(&q, "SELECT max((extract(epoch FROM c.ts) * 1000000)::int8)");
	outbox_table_from(t, true, &q);
	strbuf_add(&q, " WHERE ");
	outbox_table_seen_by(conn, t, b->snapshot, &q);
	int r = query_int8(b, conn, strbuf_str(&q), &v, err, errlen);
	strbuf_free(&q);
	if (r == 0 && v > *newest)
		*newest = v;
	return r;
}

/* Adds the xids of the rows the snapshot sees in one table that committed after after_us. */
static int table_xids(backfill *b, PGconn *conn, const outbox_table *t, int64_t after_us,
		      checkpoint_recovery *out, char *err, size_t errlen)
{
	strbuf q = {0};

	strbuf_add(&q, "SELECT DISTINCT mod(");
	outbox_table_txid(t, &q);
	strbuf_add(&q, ", 4294967296)");
	outbox_table_from(t, true, &q);
	strbuf_addf(&q, " WHERE c.ts > 'epoch'::timestamptz + %lld * interval '1 microsecond' AND ",
		    (long long)after_us);
	outbox_table_seen_by(conn, t, b->snapshot, &q);
	PGresult *res = exec_ticking(b, conn, strbuf_str(&q));
	strbuf_free(&q);
	int r = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		int n = PQntuples(res);
		out->xids = xrealloc(out->xids, (out->n_xids + (size_t)n + 1) * sizeof(uint32_t));
		for (int i = 0; i < n; i++)
			out->xids[out->n_xids++] = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
		r = 0;
	} else {
		snprintf(err, errlen, "backfill: reading xids of %s: %s", t->name, PQerrorMessage(conn));
	}
	PQclear(res);
	return r;
}

/* Runs fn over every existing table source; -1 at the first failure. */
typedef int (*table_fn)(PGconn *conn, const outbox_table *t, void *arg, char *err, size_t errlen);
static int each_table(const relay_config *cfg, PGconn *conn, table_fn fn, void *arg, char *err,
		      size_t errlen)
{
	for (int i = next_table(cfg, 0); i >= 0; i = next_table(cfg, i + 1)) {
		outbox_table t;
		if (outbox_table_read(conn, cfg->sources[i].table, &t, err, errlen) < 0)
			return -1;
		if (t.exists && fn(conn, &t, arg, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* What the finishing scans carry: the backfill, the newest commit time, the fields filled. */
typedef struct {
	backfill *b;
	int64_t newest;
	checkpoint_recovery *out;
} finish_scan;

static int newest_of(PGconn *conn, const outbox_table *t, void *arg, char *err, size_t errlen)
{
	finish_scan *f = arg;
	return table_newest(f->b, conn, t, &f->newest, err, errlen);
}

static int xids_of(PGconn *conn, const outbox_table *t, void *arg, char *err, size_t errlen)
{
	finish_scan *f = arg;
	return table_xids(f->b, conn, t, f->out->commit_us - f->out->window_ms * 1000, f->out, err,
			  errlen);
}

int backfill_finish(backfill *b, PGconn *conn, const checkpoint_recovery *lo, int64_t window_ms,
		    checkpoint_recovery *out, char *err, size_t errlen)
{
	finish_scan f = {.b = b, .newest = b->started_us, .out = out};
	int cts = backfill_commit_ts_on(conn, err, errlen);

	close_cursor(b, conn);
	free(out->xids);
	out->xids = NULL;
	out->n_xids = 0;
	if (cts < 0)
		return -1;
	if (lo && lo->commit_us > f.newest)
		f.newest = lo->commit_us;
	if (cts == 1 && each_table(b->cfg, conn, newest_of, &f, err, errlen) < 0)
		return -1;
	out->commit_us = f.newest;
	out->window_ms = window_ms;
	if (cts == 1 && each_table(b->cfg, conn, xids_of, &f, err, errlen) < 0)
		return -1;
	return 0;
}

void backfill_done(backfill *b) { b->active = false; }

/* The oldest commit time of one table's rows, folded into *arg (0: none yet). */
static int oldest_of(PGconn *conn, const outbox_table *t, void *arg, char *err, size_t errlen)
{
	int64_t *oldest = arg, v;
	strbuf q = {0};

	strbuf_add(&q, "SELECT min((extract(epoch FROM c.ts) * 1000000)::int8)");
	outbox_table_from(t, true, &q);
	int r = query_int8(NULL, conn, strbuf_str(&q), &v, err, errlen);
	strbuf_free(&q);
	if (r == 0 && v > 0 && (*oldest == 0 || v < *oldest))
		*oldest = v;
	return r;
}

int backfill_oldest_row_us(const relay_config *cfg, PGconn *conn, int64_t *oldest, char *err,
			   size_t errlen)
{
	*oldest = 0;
	return each_table(cfg, conn, oldest_of, oldest, err, errlen);
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
	if (query_int8(NULL, conn, "SELECT (to_regclass('outbox.purge_state') IS NOT NULL)::int",
		       &exists, err, errlen) < 0)
		return -1;
	if (!exists)
		return 0; /* SQL kit 1.1 or older: purge() records nothing */
	return query_int8(NULL, conn, "SELECT (extract(epoch FROM max(purged_through)) * 1000000)::int8 "
			  "FROM outbox.purge_state", us, err, errlen);
}

/* What the unlisted-rows scan carries: the checkpoint's fields, the count so far. */
typedef struct {
	const checkpoint_recovery *lo;
	int64_t rows;
} unlisted_scan;

/* Rows of a table without txid inside the checkpoint's window and not listed, added up. */
static int unlisted_of(PGconn *conn, const outbox_table *t, void *arg, char *err, size_t errlen)
{
	unlisted_scan *u = arg;
	strbuf q = {0};
	int64_t v;

	if (t->has_txid)
		return 0;
	strbuf_add(&q, "SELECT count(*)");
	outbox_table_from(t, true, &q);
	strbuf_addf(&q, " WHERE c.ts <= 'epoch'::timestamptz + %lld * interval '1 microsecond' AND ",
		    (long long)u->lo->commit_us);
	outbox_table_after(t, u->lo, &q);
	int r = query_int8(NULL, conn, strbuf_str(&q), &v, err, errlen);
	strbuf_free(&q);
	u->rows += r == 0 ? v : 0;
	return r;
}

int backfill_unlisted_near(const relay_config *cfg, PGconn *conn, const checkpoint_recovery *lo,
			   int64_t *rows, char *err, size_t errlen)
{
	unlisted_scan u = {.lo = lo};
	int r = each_table(cfg, conn, unlisted_of, &u, err, errlen);
	*rows = u.rows;
	return r;
}
