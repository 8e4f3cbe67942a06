/* snapshot.c: initial and on-demand snapshots of captured tables, by key-ordered chunks and watermarks. */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json_out.h"
#include "log.h"
#include "pgvalue.h"
#include "strbuf.h"
#include "xalloc.h"

/* Recently committed transactions the stream read: a chunk whose snapshot still saw one of
 * them in progress is taken again (its commit was read before the chunk could note it). */
#define RECENT_XIDS 8192
#define WINDOW_BUCKETS 1024

typedef struct window_key {
	struct window_key *next;
	size_t len;
	char text[];
} window_key;

/* Offsets of one row of the chunk in the arena. */
typedef struct {
	size_t key_off, key_len, row_off, row_len;
} chunk_row;

typedef struct {
	char **v;
	int n;
} name_list;

struct snapshot {
	const relay_config *cfg;
	transform *tf; /* seals the stored position (NULL: stored in clear) */
	capture *cap;
	char *prefix; /* snapshot_prefix_build */
	/* progress: what is stored */
	name_list done, queue;
	name_list after; /* key values (text) of the last row published; none: from the start */
	unsigned long long table_rows; /* rows of the current table published so far */
	uint64_t rows_uncommitted; /* handed out since the last commit or rewind */
	bool dirty;
	char *committed; /* the stored state Kafka committed (NULL: none yet) */
	/* the chunk waiting for its watermark */
	bool pending;
	char chunk_id[64];
	unsigned long long seq;
	capture_table *table;
	uint32_t xmax;
	uint32_t *xip;
	size_t n_xip;
	char *arena;
	size_t arena_len, arena_cap;
	chunk_row *rows;
	size_t n_rows, rows_cap, next;
	name_list last_key;
	bool chunk_short; /* fewer rows than asked: the table's end */
	window_key *window[WINDOW_BUCKETS];
	uint32_t recent[RECENT_XIDS];
	size_t recent_pos;
	char current[400];
};

static void list_add(name_list *l, const char *v)
{
	l->v = xrealloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
	l->v[l->n++] = xstrdup(v);
}

static void list_clear(name_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static bool list_has(const name_list *l, const char *v)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->v[i], v) == 0)
			return true;
	return false;
}

/* Removes the head of the queue. */
static void queue_pop(snapshot *s)
{
	if (s->queue.n == 0)
		return;
	free(s->queue.v[0]);
	memmove(s->queue.v, s->queue.v + 1, sizeof(char *) * (size_t)(s->queue.n - 1));
	s->queue.n--;
	list_clear(&s->after);
	s->table_rows = 0;
	s->dirty = true;
}

snapshot *snapshot_new(const relay_config *cfg, capture *cap)
{
	snapshot *s = xcalloc(1, sizeof(*s));
	s->cfg = cfg;
	s->cap = cap;
	strbuf prefix = {0};
	snapshot_prefix_build(cfg->slot, &prefix);
	s->prefix = strbuf_detach(&prefix);
	return s;
}

void snapshot_prefix_build(const char *slot, strbuf *out) { strbuf_addf(out, "outbox-relay:%s", slot); }

static void window_clear(snapshot *s)
{
	for (size_t i = 0; i < WINDOW_BUCKETS; i++) {
		for (window_key *k = s->window[i], *n; k; k = n) {
			n = k->next;
			free(k);
		}
		s->window[i] = NULL;
	}
}

/* Forgets the pending chunk (its rows, snapshot and window). */
static void chunk_drop(snapshot *s)
{
	s->pending = false;
	s->table = NULL;
	s->n_rows = s->next = 0;
	s->arena_len = 0;
	s->n_xip = 0;
	list_clear(&s->last_key);
	window_clear(s);
}

void snapshot_free(snapshot *s)
{
	if (!s)
		return;
	chunk_drop(s);
	list_clear(&s->done);
	list_clear(&s->queue);
	list_clear(&s->after);
	free(s->committed);
	free(s->xip);
	free(s->arena);
	free(s->rows);
	free(s->prefix);
	free(s);
}

const char *snapshot_prefix(const snapshot *s) { return s->prefix; }

/* Fills l from a JSON array of strings; -1 when it is something else. */
static int list_from_json(name_list *l, const json_span *a)
{
	json_cursor c;
	json_span v;
	int rc;

	list_clear(l);
	if (a->kind != JSON_ARRAY || json_array_open(&c, a) < 0)
		return -1;
	while ((rc = json_array_next(&c, &v)) == 1) {
		char *text = xmalloc(v.len + 1);
		long n = v.kind == JSON_STRING ? json_unescape(&v, text) : -1;
		if (n < 0) {
			free(text);
			return -1;
		}
		text[n] = '\0';
		l->v = xrealloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
		l->v[l->n++] = text;
	}
	return rc;
}

void snapshot_protect(snapshot *s, transform *tf)
{
	s->tf = s->cfg->n_protects > 0 && transform_can_seal(tf) ? tf : NULL;
}

/* Opens a sealed position (a string "enc:v1:...") into the after list; -1 when it cannot. */
static int after_unseal(snapshot *s, const json_span *v)
{
	strbuf sealed = {0}, clear = {0};
	json_cursor c;
	json_span a;
	long n;
	int rc = -1;

	if (v->kind != JSON_STRING || !s->tf)
		return -1;
	n = json_unescape(v, strbuf_room(&sealed, v->len + 1));
	if (n >= 0 && transform_unseal(s->tf, sealed.s, (size_t)n, &clear) == 0) {
		json_cursor_init(&c, clear.s, clear.len);
		if (json_read_value(&c, &a) == 0)
			rc = list_from_json(&s->after, &a) < 0 ? -1 : 0;
	}
	if (clear.s)
		explicit_bzero(clear.s, clear.len);
	strbuf_free(&clear);
	strbuf_free(&sealed);
	return rc;
}

/* Sets the progress from a stored state object; -1 when malformed. */
static int state_from_json(snapshot *s, const char *text, size_t len)
{
	json_cursor c;
	json_span k, v;
	int rc;

	list_clear(&s->done);
	list_clear(&s->queue);
	list_clear(&s->after);
	s->table_rows = 0;
	json_cursor_init(&c, text, len);
	if (json_enter_object(&c) < 0)
		return -1;
	while ((rc = json_object_next(&c, &k, &v)) == 1) {
		if (JSON_KEY_IS(&k, "done") && list_from_json(&s->done, &v) < 0)
			return -1;
		if (JSON_KEY_IS(&k, "queue") && list_from_json(&s->queue, &v) < 0)
			return -1;
		if (JSON_KEY_IS(&k, "after") && list_from_json(&s->after, &v) < 0)
			return -1;
		if (JSON_KEY_IS(&k, "after_sealed") && after_unseal(s, &v) < 0)
			return -1;
		if (JSON_KEY_IS(&k, "table_rows") && v.kind == JSON_NUMBER)
			s->table_rows = strtoull(v.ptr, NULL, 10);
	}
	return rc;
}

int snapshot_load_state(snapshot *s, const char *json, size_t len)
{
	if (state_from_json(s, json, len) < 0)
		return -1;
	free(s->committed);
	s->committed = xstrndup(json, len);
	s->dirty = false;
	return 0;
}

/* ["a","b"] */
static void put_array(strbuf *q, const name_list *l)
{
	strbuf_addc(q, '[');
	for (int i = 0; i < l->n; i++) {
		if (i)
			strbuf_addc(q, ',');
		json_out_string(q, l->v[i], strlen(l->v[i]));
	}
	strbuf_addc(q, ']');
}

/* ,"name":["a","b"] of the state text. */
static void put_list(strbuf *q, const char *name, const name_list *l)
{
	strbuf_addf(q, ",\"%s\":", name);
	put_array(q, l);
}

/*
 * ,"after_sealed":"enc:v1:..." : the position's key values encrypted (they may be protected
 * key columns). When OpenSSL fails, no position: the table's snapshot starts over.
 */
static void put_sealed_after(strbuf *q, const snapshot *s)
{
	strbuf clear = {0};

	put_array(&clear, &s->after);
	strbuf_add(q, ",\"after_sealed\":\"");
	if (transform_seal(s->tf, clear.s, clear.len, q) < 0) {
		log_error("snapshot: cannot encrypt the snapshot position (OpenSSL): not stored");
		strbuf_setlen(q, q->len - strlen(",\"after_sealed\":\""));
	} else {
		strbuf_addc(q, '"');
	}
	explicit_bzero(clear.s, clear.len);
	strbuf_free(&clear);
}

char *snapshot_state_json(const snapshot *s)
{
	strbuf q = {0};

	strbuf_add(&q, "{\"version\":1");
	put_list(&q, "done", &s->done);
	put_list(&q, "queue", &s->queue);
	if (s->after.n > 0 && s->tf)
		put_sealed_after(&q, s);
	else if (s->after.n > 0)
		put_list(&q, "after", &s->after);
	strbuf_addf(&q, ",\"table_rows\":%llu}", s->table_rows);
	return strbuf_detach(&q);
}

void snapshot_queue_initial(snapshot *s, capture_table *const *tables, int n)
{
	for (int i = 0; i < n; i++) {
		const capture_table *t = tables[i];
		if (!t->cfg->snapshot || t->refusal || list_has(&s->done, t->name) ||
		    list_has(&s->queue, t->name))
			continue;
		list_add(&s->queue, t->name);
		s->dirty = true;
		log_info("snapshot of %s queued (first time captured)", t->name);
	}
}

void snapshot_queue_again(snapshot *s, capture_table *const *tables, int n)
{
	for (int i = 0; i < n; i++) {
		if (list_has(&s->queue, tables[i]->name))
			continue;
		list_add(&s->queue, tables[i]->name);
		s->dirty = true;
		log_info("snapshot of %s queued (its changes while the slot was lost cannot be read "
			 "back)", tables[i]->name);
	}
}

bool snapshot_dirty(const snapshot *s) { return s->dirty; }

uint64_t snapshot_committed(snapshot *s)
{
	uint64_t rows = s->rows_uncommitted;

	free(s->committed);
	s->committed = snapshot_state_json(s);
	s->dirty = false;
	s->rows_uncommitted = 0;
	return rows;
}

void snapshot_rewind(snapshot *s)
{
	chunk_drop(s);
	list_clear(&s->done);
	list_clear(&s->queue);
	list_clear(&s->after);
	s->table_rows = 0;
	s->rows_uncommitted = 0;
	if (s->committed)
		state_from_json(s, s->committed, strlen(s->committed));
	s->dirty = false;
}

const char *snapshot_current(const snapshot *s)
{
	snapshot *m = (snapshot *)s; /* the text is a cache */
	if (s->queue.n == 0)
		return "";
	snprintf(m->current, sizeof(m->current), "%s (%llu rows so far, %d more tables queued)",
		 s->queue.v[0], s->table_rows, s->queue.n - 1);
	return m->current;
}

int snapshot_tables_queued(const snapshot *s) { return s->queue.n; }

bool snapshot_wants_chunk(const snapshot *s) { return s->queue.n > 0 && !s->pending; }

/* "expr AS "col", ..." for the published columns (all = false) or the key columns (all = true). */
static void add_select_list(PGconn *conn, const capture_table *t, bool keys, strbuf *q)
{
	char expr[1024];
	int n = keys ? t->n_keys : t->n_cols, written = 0;

	for (int j = 0; j < n; j++) {
		const capture_column *col = &t->cols[keys ? t->keys[j] : j];
		if (!keys && !col->published)
			continue;
		char *qc = PQescapeIdentifier(conn, col->name, strlen(col->name));
		pgvalue_expr(expr, sizeof(expr), qc, col->type_oid, false);
		strbuf_addf(q, "%s%s AS %s", written++ ? ", " : "", expr, qc);
		PQfreemem(qc);
	}
	if (written == 0)
		strbuf_add(q, "1 AS \"?\"");
}

/*
 * The chunk query: each row as JSON, its key as JSON, and the key columns as text (the next
 * chunk starts after them), in key order, after the given key.
 */
static char *chunk_query(PGconn *conn, const capture_table *t, bool from_start, int limit)
{
	strbuf q = {0}, keys = {0}, params = {0};
	char *qs = PQescapeIdentifier(conn, t->schema, strlen(t->schema));
	char *qt = PQescapeIdentifier(conn, t->table, strlen(t->table));

	for (int j = 0; j < t->n_keys; j++) {
		char *qc = PQescapeIdentifier(conn, t->cols[t->keys[j]].name,
					      strlen(t->cols[t->keys[j]].name));
		strbuf_addf(&keys, "%st.%s", j ? ", " : "", qc);
		strbuf_addf(&params, "%s$%d", j ? ", " : "", j + 1);
		PQfreemem(qc);
	}
	/* Whole-row references as rel.* with unusual names: a column "v" of the table must not win. */
	strbuf_add(&q, "SELECT (SELECT row_to_json(outbox_relay_v.*) FROM (SELECT ");
	add_select_list(conn, t, false, &q);
	strbuf_add(&q, ") outbox_relay_v)::text, ");
	strbuf_add(&q, "(SELECT row_to_json(outbox_relay_k.*) FROM (SELECT ");
	add_select_list(conn, t, true, &q);
	strbuf_add(&q, ") outbox_relay_k)::text");
	for (int j = 0; j < t->n_keys; j++) {
		char *qc = PQescapeIdentifier(conn, t->cols[t->keys[j]].name,
					      strlen(t->cols[t->keys[j]].name));
		strbuf_addf(&q, ", t.%s::text", qc);
		PQfreemem(qc);
	}
	strbuf_addf(&q, " FROM ONLY %s.%s t", qs, qt);
	if (!from_start)
		strbuf_addf(&q, " WHERE (%s) > (%s)", strbuf_str(&keys), strbuf_str(&params));
	strbuf_addf(&q, " ORDER BY %s LIMIT %d", strbuf_str(&keys), limit);
	PQfreemem(qs);
	PQfreemem(qt);
	strbuf_free(&keys);
	strbuf_free(&params);
	return strbuf_detach(&q);
}

/* Parses pg_current_snapshot()'s "xmin:xmax:xip,..." into the low 32 bits wal2json prints. */
static int parse_snapshot(snapshot *s, const char *text)
{
	char *end;
	unsigned long long xmax;

	strtoull(text, &end, 10);
	if (*end != ':')
		return -1;
	xmax = strtoull(end + 1, &end, 10);
	if (*end != ':')
		return -1;
	s->xmax = (uint32_t)xmax;
	s->n_xip = 0;
	for (const char *p = end + 1; *p;) {
		unsigned long long x = strtoull(p, &end, 10);
		if (end == p)
			return -1;
		s->xip = xrealloc(s->xip, sizeof(uint32_t) * (s->n_xip + 1));
		s->xip[s->n_xip++] = (uint32_t)x;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/* True when the chunk's snapshot did not see transaction xid (in progress, or started later). */
static bool invisible(const snapshot *s, uint32_t xid)
{
	if ((int32_t)(xid - s->xmax) >= 0)
		return true;
	for (size_t i = 0; i < s->n_xip; i++)
		if (s->xip[i] == xid)
			return true;
	return false;
}

/* A transaction in progress for the snapshot whose commit the stream already read. */
static bool saw_commit_of_running(const snapshot *s)
{
	for (size_t i = 0; i < s->n_xip; i++)
		for (size_t k = 0; k < RECENT_XIDS; k++)
			if (s->recent[k] == s->xip[i] && s->xip[i] != 0)
				return true;
	return false;
}

static void arena_put(snapshot *s, const char *text, size_t len, size_t *off)
{
	if (s->arena_len + len > s->arena_cap) {
		s->arena_cap = (s->arena_len + len) * 2;
		s->arena = xrealloc(s->arena, s->arena_cap);
	}
	memcpy(s->arena + s->arena_len, text, len);
	*off = s->arena_len;
	s->arena_len += len;
}

/* Keeps the rows of a chunk result; its last row's key values start the next chunk. */
static void keep_rows(snapshot *s, PGresult *res)
{
	int n = PQntuples(res);

	if ((size_t)n > s->rows_cap) {
		s->rows_cap = (size_t)n;
		s->rows = xrealloc(s->rows, sizeof(chunk_row) * s->rows_cap);
	}
	for (int i = 0; i < n; i++) {
		chunk_row *r = &s->rows[i];
		r->row_len = (size_t)PQgetlength(res, i, 0);
		r->key_len = (size_t)PQgetlength(res, i, 1);
		arena_put(s, PQgetvalue(res, i, 0), r->row_len, &r->row_off);
		arena_put(s, PQgetvalue(res, i, 1), r->key_len, &r->key_off);
	}
	s->n_rows = (size_t)n;
	list_clear(&s->last_key);
	for (int j = 0; n > 0 && j < PQnfields(res) - 2; j++)
		list_add(&s->last_key, PQgetvalue(res, n - 1, j + 2));
}

/* Runs one statement of the chunk's transaction; false (and the transaction rolled back) if not ok. */
static bool exec_ok(PGconn *conn, PGresult *res, ExecStatusType want, const char *what, char *err,
		    size_t errlen)
{
	bool ok = PQresultStatus(res) == want;
	if (!ok) {
		snprintf(err, errlen, "%s: %s", what, PQerrorMessage(conn));
		PQclear(PQexec(conn, "ROLLBACK"));
	}
	PQclear(res);
	return ok;
}

/*
 * Before the chunk's snapshot: a commit that waits as long as any synchronous commit can
 * (remote_apply). Once it returns, every transaction whose commit record came before it is
 * visible (a synchronous standby acknowledges in WAL order), except for the moment between a
 * commit's acknowledgement and its backend making it visible, which the recent-commits check
 * covers. Without it, a commit waiting for a stalled standby could be read by the stream long
 * before the chunk sees it.
 */
static int write_barrier(snapshot *s, PGconn *conn, char *err, size_t errlen)
{
	const char *params[2] = {s->prefix, "{\"barrier\":true}"};

	if (!exec_ok(conn, PQexec(conn, "BEGIN"), PGRES_COMMAND_OK, "snapshot barrier", err, errlen) ||
	    !exec_ok(conn, PQexec(conn, "SET LOCAL synchronous_commit = remote_apply"),
		     PGRES_COMMAND_OK, "snapshot barrier", err, errlen) ||
	    !exec_ok(conn,
		     PQexecParams(conn, "SELECT pg_logical_emit_message(true, $1, $2)", 2, NULL, params,
				  NULL, NULL, 0),
		     PGRES_TUPLES_OK, "snapshot barrier", err, errlen))
		return -1;
	return exec_ok(conn, PQexec(conn, "COMMIT"), PGRES_COMMAND_OK, "snapshot barrier", err, errlen)
		       ? 0
		       : -1;
}

/* Reads the chunk in a REPEATABLE READ transaction, learning the snapshot it saw. */
static int read_chunk(snapshot *s, PGconn *conn, capture_table *t, char *err, size_t errlen)
{
	char *q = chunk_query(conn, t, s->after.n == 0, s->cfg->snapshot_chunk_rows);
	const char **params = xcalloc((size_t)s->after.n + 1, sizeof(char *));
	Oid *types = xcalloc((size_t)t->n_keys + 1, sizeof(Oid));
	PGresult *res;
	int rc = -1;

	for (int j = 0; j < s->after.n && j < t->n_keys; j++) {
		params[j] = s->after.v[j];
		types[j] = t->cols[t->keys[j]].type_oid;
	}
	if (!exec_ok(conn, PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
		     PGRES_COMMAND_OK, "snapshot", err, errlen))
		goto done;
	res = PQexec(conn, "SELECT pg_current_snapshot()::text");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && parse_snapshot(s, PQgetvalue(res, 0, 0)) < 0) {
		snprintf(err, errlen, "unexpected pg_current_snapshot() text: %s", PQgetvalue(res, 0, 0));
		PQclear(res);
		PQclear(PQexec(conn, "ROLLBACK"));
		goto done;
	}
	if (!exec_ok(conn, res, PGRES_TUPLES_OK, "snapshot", err, errlen))
		goto done;
	res = PQexecParams(conn, q, s->after.n, types, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		keep_rows(s, res);
	if (!exec_ok(conn, res, PGRES_TUPLES_OK, t->name, err, errlen))
		goto done;
	rc = exec_ok(conn, PQexec(conn, "COMMIT"), PGRES_COMMAND_OK, "snapshot", err, errlen) ? 0 : -1;
done:
	free(q);
	free(params);
	free(types);
	return rc;
}

/* Writes the chunk's watermark: a transactional message the stream will meet after every
 * transaction the chunk saw. */
static int write_watermark(snapshot *s, PGconn *conn, char *err, size_t errlen)
{
	char content[128];
	const char *params[2] = {s->prefix, content};

	snprintf(s->chunk_id, sizeof(s->chunk_id), "%ld-%lld-%llu", (long)getpid(),
		 (long long)time(NULL), ++s->seq);
	snprintf(content, sizeof(content), "{\"chunk\":\"%s\"}", s->chunk_id);
	return exec_ok(conn,
		       PQexecParams(conn, "SELECT pg_logical_emit_message(true, $1, $2)", 2, NULL,
				    params, NULL, NULL, 0),
		       PGRES_TUPLES_OK, "snapshot watermark", err, errlen)
		       ? 0
		       : -1;
}

/* The current table, when it can be snapshotted; drops it from the queue (logged) when not. */
static capture_table *current_table(snapshot *s, PGconn *conn, char *err, size_t errlen, int *rc)
{
	capture_table *t = NULL;
	const char *name = s->queue.v[0], *dot = strchr(name, '.');
	char *schema = dot ? xmalloc((size_t)(dot - name) + 1) : NULL; /* no length limit */

	*rc = 0;
	if (schema)
		memcpy(schema, name, (size_t)(dot - name)), schema[dot - name] = '\0';
	int found = schema ? capture_lookup(s->cap, conn, schema, dot + 1, &t, err, errlen) : 0;
	free(schema);
	if (found < 0) {
		*rc = -1;
		return NULL;
	}
	if (found == 0 || t->refusal || !t->ordered) {
		log_warn("snapshot of %s skipped: %s", name,
			 found == 0 ? "the table is not captured (see capture in the configuration)"
			 : t->refusal ? t->refusal
				      : "its key is not a primary key or replica identity index, so "
					"it cannot be read in key order");
		queue_pop(s);
		return NULL;
	}
	return t;
}

int snapshot_take_chunk(snapshot *s, PGconn *conn, char *err, size_t errlen)
{
	int rc;
	capture_table *t;

	if (!snapshot_wants_chunk(s))
		return 0;
	if (!(t = current_table(s, conn, err, errlen, &rc)))
		return rc;
	chunk_drop(s);
	if (s->after.n > 0 && s->after.n != t->n_keys) {
		log_warn("snapshot of %s: its key changed since the snapshot began; starting it over",
			 t->name);
		list_clear(&s->after);
		s->table_rows = 0;
		s->dirty = true;
	}
	if (write_barrier(s, conn, err, errlen) < 0 || read_chunk(s, conn, t, err, errlen) < 0) {
		chunk_drop(s);
		return -1; /* e.g. no SELECT privilege: the caller logs err and tries again later */
	}
	if (saw_commit_of_running(s)) {
		log_debug("snapshot of %s: a transaction still in progress for the chunk was read "
			  "already; reading the chunk again", t->name);
		chunk_drop(s);
		return 0;
	}
	s->chunk_short = s->n_rows < (size_t)s->cfg->snapshot_chunk_rows;
	if (s->n_rows == 0) { /* the table's end: no rows to place, nothing to wait for */
		snapshot_chunk_done(s);
		return 0;
	}
	if (write_watermark(s, conn, err, errlen) < 0) {
		chunk_drop(s);
		return -1;
	}
	s->table = t;
	s->pending = true;
	return 1;
}

void snapshot_saw_commit(snapshot *s, uint64_t xid)
{
	s->recent[s->recent_pos] = (uint32_t)xid;
	s->recent_pos = (s->recent_pos + 1) % RECENT_XIDS;
}

static size_t key_hash(const char *k, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)k[i]) * 16777619u;
	return h % WINDOW_BUCKETS;
}

static bool window_has(const snapshot *s, const char *key, size_t len)
{
	for (const window_key *k = s->window[key_hash(key, len)]; k; k = k->next)
		if (k->len == len && memcmp(k->text, key, len) == 0)
			return true;
	return false;
}

void snapshot_saw_change(snapshot *s, const capture_table *t, uint64_t xid, const char *key,
			 size_t key_len)
{
	if (!s->pending || t != s->table || !invisible(s, (uint32_t)xid) || window_has(s, key, key_len))
		return;
	window_key *k = xmalloc(sizeof(*k) + key_len);
	k->len = key_len;
	memcpy(k->text, key, key_len);
	size_t b = key_hash(key, key_len);
	k->next = s->window[b];
	s->window[b] = k;
}

void snapshot_saw_truncate(snapshot *s, const capture_table *t, uint64_t xid)
{
	if (s->pending && t == s->table && invisible(s, (uint32_t)xid)) {
		log_info("snapshot of %s: the table was truncated; reading the chunk again", t->name);
		chunk_drop(s);
	}
}

/* Queues the tables of a request ({"snapshot": ["schema.table", ...]}). */
static void take_request(snapshot *s, const json_span *tables)
{
	name_list l = {0};

	if (list_from_json(&l, tables) < 0) {
		log_warn("ignoring a snapshot request whose \"snapshot\" is not a list of table names");
		list_clear(&l);
		return;
	}
	for (int i = 0; i < l.n; i++) {
		const char *name = l.v[i];
		if (s->queue.n > 0 && strcmp(s->queue.v[0], name) == 0) {
			log_info("snapshot of %s requested again: starting it over", name);
			if (s->pending)
				chunk_drop(s);
			list_clear(&s->after);
			s->table_rows = 0;
		} else if (!list_has(&s->queue, name)) {
			list_add(&s->queue, name);
			log_info("snapshot of %s requested: queued", name);
		}
		s->dirty = true;
	}
	list_clear(&l);
}

snapshot_msg snapshot_message(snapshot *s, const char *content, size_t len, capture_table **t)
{
	json_cursor c;
	json_span k, v, chunk = {0}, tables = {0};
	int rc;

	json_cursor_init(&c, content, len);
	if (json_enter_object(&c) < 0) {
		/* Its text may hold fields the protect rules cover: then it is not logged. */
		if (s->cfg->n_protects > 0)
			log_warn("ignoring a message with prefix %s that is not a JSON object (its text "
				 "is not logged: protect rules are set)", s->prefix);
		else
			log_warn("ignoring a message with prefix %s that is not a JSON object: %.*s",
				 s->prefix, (int)(len > 200 ? 200 : len), content);
		return SNAPSHOT_MSG_OTHER;
	}
	while ((rc = json_object_next(&c, &k, &v)) == 1) {
		if (JSON_KEY_IS(&k, "chunk"))
			chunk = v;
		else if (JSON_KEY_IS(&k, "snapshot"))
			tables = v;
	}
	if (tables.kind == JSON_ARRAY) {
		take_request(s, &tables);
		return SNAPSHOT_MSG_REQUEST;
	}
	if (chunk.kind == JSON_STRING && s->pending && chunk.len == strlen(s->chunk_id) &&
	    memcmp(chunk.ptr, s->chunk_id, chunk.len) == 0) {
		*t = s->table;
		s->next = 0;
		return SNAPSHOT_MSG_CHUNK;
	}
	return SNAPSHOT_MSG_OTHER;
}

bool snapshot_next_row(snapshot *s, snapshot_row *row)
{
	while (s->next < s->n_rows) {
		const chunk_row *r = &s->rows[s->next++];
		const char *key = s->arena + r->key_off;
		if (window_has(s, key, r->key_len))
			continue; /* the stream published a newer state of this key */
		row->key = key;
		row->key_len = r->key_len;
		row->row = s->arena + r->row_off;
		row->row_len = r->row_len;
		s->rows_uncommitted++;
		return true;
	}
	return false;
}

void snapshot_chunk_done(snapshot *s)
{
	const char *name = s->queue.n > 0 ? s->queue.v[0] : "?";

	s->table_rows += s->n_rows;
	if (s->chunk_short) {
		log_info("snapshot of %s done: %llu rows", name, s->table_rows);
		if (!list_has(&s->done, name))
			list_add(&s->done, name);
		queue_pop(s);
	} else {
		list_clear(&s->after);
		for (int j = 0; j < s->last_key.n; j++)
			list_add(&s->after, s->last_key.v[j]);
	}
	s->dirty = true;
	chunk_drop(s);
}
