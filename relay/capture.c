/* capture.c: change capture of existing tables: catalog lookups, keys, and the change envelope. */
#include "capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change_type.h"
#include "json_out.h"
#include "log.h"
#include "pgtime.h"
#include "template.h"
#include "strbuf.h"
#include "xalloc.h"

/* Type OIDs whose values wal2json writes as bare JSON (pg_type.dat). */
#define OID_JSON 114
#define OID_JSONB 3802

/* A column of the record: its name, value and type spans. */
typedef struct {
	json_span name, type, value;
} cap_field;

/* The columns (or identity) array of the record being built. */
typedef struct {
	cap_field *f;
	size_t n, cap;
} field_list;

struct capture {
	const relay_config *cfg;
	capture_table **tables;
	int n_tables, cap_tables;
	int last; /* the table of the previous change: the next is often the same */
	strbuf value, key, scratch; /* scratch: unchanged_toast names, an old key */
	field_list now, old; /* columns and identity of the current record (capture_read) */
	bool read_ok;        /* they were read whole */
	bool toast_unknown;  /* capture_toast_check could not know this update's unchanged_toast */
};

/* Writes a span as JSON: a string with its quotes (escapes kept), anything else as it is. */
static void put_span(strbuf *b, const json_span *v)
{
	if (v->kind == JSON_NONE) {
		STRBUF_ADD_LIT(b, "null");
		return;
	}
	if (v->kind != JSON_STRING) {
		strbuf_addn(b, v->ptr, v->len);
		return;
	}
	strbuf_grow(b, v->len + 2);
	strbuf_addc(b, '"');
	strbuf_addn(b, v->ptr, v->len);
	strbuf_addc(b, '"');
}

/* A column value: json and jsonb arrive as strings holding JSON, and are written as that JSON. */
static void put_value(strbuf *b, const cap_field *f)
{
	bool is_json = f->type.kind == JSON_STRING &&
		       ((f->type.len == 4 && memcmp(f->type.ptr, "json", 4) == 0) ||
			(f->type.len == 5 && memcmp(f->type.ptr, "jsonb", 5) == 0));
	if (!is_json || f->value.kind != JSON_STRING) {
		put_span(b, &f->value);
		return;
	}
	long n = json_unescape(&f->value, strbuf_room(b, f->value.len));
	if (n < 0) {
		put_span(b, &f->value); /* not valid text: keep the string as it came */
		return;
	}
	strbuf_setlen(b, b->len + (size_t)n);
}

capture *capture_new(const relay_config *cfg)
{
	capture *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	return c;
}

/* Frees what the catalog entry filled in (columns, key), leaving names and topic. */
static void table_clear_catalog(capture_table *t)
{
	for (int i = 0; i < t->n_cols; i++) {
		free(t->cols[i].name);
		free(t->cols[i].type_name);
	}
	free(t->cols);
	free(t->keys);
	t->cols = NULL;
	t->keys = NULL;
	t->n_cols = t->n_keys = 0;
	t->refusal = NULL;
	t->ordered = false;
}

static void table_free(capture_table *t)
{
	if (!t)
		return;
	table_clear_catalog(t);
	free(t->schema);
	free(t->table);
	free(t->name);
	free(t->topic);
	free(t);
}

void capture_free(capture *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_tables; i++)
		table_free(c->tables[i]);
	free(c->tables);
	strbuf_free(&c->value);
	strbuf_free(&c->key);
	strbuf_free(&c->scratch);
	free(c->now.f);
	free(c->old.f);
	free(c);
}

bool capture_enabled(const capture *c) { return c->cfg->n_captures > 0; }

const capture_config *capture_entry_for(const capture *c, const char *schema, const char *table)
{
	return config_capture_for(c->cfg, schema, table);
}

static bool in_list(char *const *list, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* The names a capture topic's placeholders stand for. */
typedef struct {
	const char *prefix, *schema, *table;
} topic_names;

/* ${prefix}, ${schema} or ${table} (the template was checked at load: nothing else). */
static int topic_value(void *ctx, const char *name, const char **text, size_t *len,
		       const char **why)
{
	const topic_names *n = ctx;

	*text = strcmp(name, "prefix") == 0   ? n->prefix
		: strcmp(name, "schema") == 0 ? n->schema
		: strcmp(name, "table") == 0  ? n->table
					      : NULL;
	*len = *text ? strlen(*text) : 0;
	if (!*text)
		*why = "unknown placeholder";
	return *text ? 0 : -1;
}

/*
 * Writes to topic (TEMPLATE_TOPIC_MAX + 1 bytes) the entry's template with the names filled in;
 * false when that is not a valid Kafka topic name (topic then holds what fit, or the template).
 */
static bool expand_topic(const relay_config *cfg, const capture_config *e, const char *schema,
			 const char *table, char *topic)
{
	topic_names n = {cfg->topic_prefix, schema, table};
	topic_template t;
	char err[256];
	const char *why;
	bool ok;

	if (template_compile(&t, e->topic, &template_capture_vars, err, sizeof(err)) < 0) {
		snprintf(topic, TEMPLATE_TOPIC_MAX + 1, "%s", e->topic);
		return false;
	}
	ok = template_expand(&t, topic_value, &n, topic, &why) >= 0;
	template_free(&t);
	return ok;
}

/* True when position array pos marks at least one column (an index exists). */
static bool has_index(const capture_table *t, const int *pos)
{
	for (int i = 0; i < t->n_cols; i++)
		if (pos[i] > 0)
			return true;
	return false;
}

/* The columns of an index, in index order (the n-th key column is at position n). */
static void keys_from_index(capture_table *t, const int *pos)
{
	t->n_keys = 0;
	for (int n = 1; n <= t->n_cols; n++)
		for (int i = 0; i < t->n_cols; i++)
			if (pos[i] == n)
				t->keys[t->n_keys++] = i;
}

/* The configured key columns; false when one is not in the table. */
static bool keys_from_config(capture_table *t)
{
	const capture_config *e = t->cfg;
	for (int k = 0; k < e->n_key_columns; k++) {
		int i;
		for (i = 0; i < t->n_cols && strcmp(t->cols[i].name, e->key_columns[k]) != 0; i++)
			;
		if (i == t->n_cols)
			return false;
		t->keys[t->n_keys++] = i;
	}
	return true;
}

/* True when every key column is in the set pos marks (or all columns: identity FULL). */
static bool keys_within(const capture_table *t, const int *pos)
{
	if (t->replident == 'f')
		return true;
	for (int k = 0; k < t->n_keys; k++)
		if (!pos || pos[t->keys[k]] == 0)
			return false;
	return true;
}

/* True when the key is exactly the columns of an index (unique, not null: it orders a scan). */
static bool keys_are_index(const capture_table *t, const int *pos)
{
	int n = 0;
	for (int i = 0; i < t->n_cols; i++)
		n += pos[i] > 0;
	if (n == 0 || n != t->n_keys)
		return false;
	for (int k = 0; k < t->n_keys; k++)
		if (pos[t->keys[k]] == 0)
			return false;
	return true;
}

/*
 * Picks the key: the configured columns, else the primary key, else the replica identity index.
 * wal2json drops updates and deletes of a table without replica identity, and a delete carries
 * only the identity's columns: such tables, and keys outside the identity, are refused.
 */
static void choose_key(capture_table *t, const int *pk_pos, const int *ri_pos)
{
	const capture_config *e = t->cfg;
	/* The columns an update's or delete's identity holds (NULL: none; FULL: all). */
	const int *identity = t->replident == 'd' && has_index(t, pk_pos) ? pk_pos
			      : t->replident == 'i' && has_index(t, ri_pos) ? ri_pos
									  : NULL;

	t->keys = xcalloc((size_t)t->n_cols + 1, sizeof(int));
	if (!identity && t->replident != 'f') {
		t->refusal = "wal2json drops its updates and deletes: it has no replica identity (add a "
			     "primary key, or ALTER TABLE ... REPLICA IDENTITY FULL)";
		return;
	}
	if (e->n_key_columns > 0 && !keys_from_config(t)) {
		t->refusal = "a column of key_columns is not in the table";
		t->n_keys = 0;
		return;
	}
	if (e->n_key_columns == 0 && has_index(t, pk_pos))
		keys_from_index(t, pk_pos);
	if (e->n_key_columns == 0 && (t->n_keys == 0 || !keys_within(t, identity)) &&
	    has_index(t, ri_pos))
		keys_from_index(t, ri_pos); /* REPLICA IDENTITY USING INDEX: deletes carry these */
	if (t->n_keys == 0 && !e->unkeyed) {
		t->refusal = "the table has no primary key or replica identity index (add one, set "
			     "key_columns, or set unkeyed = true for records without keys)";
		return;
	}
	if (!keys_within(t, identity)) {
		t->refusal = "its key columns are not all in its replica identity, so deletes would not "
			     "carry the key (use the identity's columns, or ALTER TABLE ... REPLICA "
			     "IDENTITY FULL)";
		t->n_keys = 0;
		return;
	}
	/* A snapshot reads in key order and resumes after a key: the key must be unique, not null. */
	t->ordered = t->n_keys > 0 && (keys_are_index(t, pk_pos) || keys_are_index(t, ri_pos));
}

/*
 * A table's columns in order, with their type (a domain over json or jsonb as that type: the
 * stream names the base type too, include-domain-data-type, so both print its JSON; a domain
 * over a domain: the last base type, as wal2json's getBaseTypeAndTypmod), key
 * positions, replica identity, whether they are variable-length, the type's name as
 * format_type prints it (a domain's base type, as wal2json's "type" with include-domain-data-type:
 * the Avro schema of the table is derived from it), whether the column is NOT NULL and its
 * declared array dimensions: attndims, or those of a domain over an array (typndims) or of the
 * column in a parent (a partition or an inheritance child has attndims 0, and cannot declare
 * its own).
 */
#define TABLE_SQL                                                                                  \
	"SELECT a.attname, CASE WHEN bt.id IN (114, 3802) THEN bt.id ELSE a.atttypid END, "        \
	"coalesce((SELECT k.n FROM unnest(pk.indkey) WITH ORDINALITY k(att, n) "                 \
	"WHERE k.att = a.attnum), 0), "                                                            \
	"coalesce((SELECT k.n FROM unnest(ri.indkey) WITH ORDINALITY k(att, n) "                 \
	"WHERE k.att = a.attnum), 0), c.relreplident, a.attlen = -1, "                             \
	"CASE WHEN bt.id IS NOT NULL THEN format_type(bt.id, bt.mod) "                             \
	"ELSE format_type(a.atttypid, a.atttypmod) END, a.attnotnull, "                             \
	"greatest(a.attndims, ty.typndims, (SELECT max(pa.attndims) FROM pg_attribute pa "         \
	"WHERE pa.attname = a.attname AND pa.attrelid IN (WITH RECURSIVE up(id) AS (SELECT "       \
	"i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid UNION SELECT i.inhparent FROM "   \
	"pg_inherits i JOIN up ON i.inhrelid = up.id) SELECT id FROM up))) "                       \
	"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "                           \
	"JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "       \
	"JOIN pg_type ty ON ty.oid = a.atttypid "                                                  \
	"LEFT JOIN LATERAL (WITH RECURSIVE d(id, mod) AS (SELECT ty.typbasetype, ty.typtypmod "   \
	"WHERE ty.typtype = 'd' UNION ALL SELECT b.typbasetype, b.typtypmod FROM d "              \
	"JOIN pg_type b ON b.oid = d.id AND b.typtype = 'd') SELECT d.id, d.mod FROM d "          \
	"JOIN pg_type e ON e.oid = d.id AND e.typtype <> 'd') bt ON true "                        \
	"LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary "                        \
	"LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident "                      \
	"WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') ORDER BY a.attnum"

/*
 * When the catalog entry was read (WAL position and clock, taken before it) and the commit time
 * of the newest of its rows (read after it): capture_toast_check dates the entry with them.
 */
typedef struct {
	lsn_t lsn;
	int64_t read_us, ddl_us;
	bool ddl_known;
} catalog_time;

/*
 * The commit time of the newest catalog row of the table (pg_class, pg_attribute with dropped
 * columns): its last ALTER TABLE. Rows older than the slot's catalog_xmin were written before
 * anything the slot can show (INT64_MIN); a row without commit timestamp makes it unknown.
 */
#define DDL_SQL                                                                                    \
	"WITH rel AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "  \
	"WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')), "                   \
	"x AS (SELECT xmin FROM pg_class WHERE oid IN (SELECT oid FROM rel) UNION ALL "           \
	"SELECT xmin FROM pg_attribute WHERE attrelid IN (SELECT oid FROM rel) AND attnum > 0), "  \
	"d AS (SELECT age(xmin) > coalesce((SELECT age(catalog_xmin) FROM pg_replication_slots "   \
	"WHERE slot_name = $3), 2147483647) AS old, CASE WHEN "                                    \
	"current_setting('track_commit_timestamp')::bool THEN pg_xact_commit_timestamp(xmin) END " \
	"AS ts FROM x) SELECT coalesce(bool_and(old OR ts IS NOT NULL), false), "                  \
	"coalesce(floor(extract(epoch FROM max(ts) FILTER (WHERE NOT old)) * 1000000)::int8, "     \
	"-9223372036854775807 - 1) FROM d"

/* Reads DDL_SQL into when (unknown when it cannot be read). */
static void read_ddl_time(PGconn *conn, const char *schema, const char *table, const char *slot,
			  catalog_time *when)
{
	const char *params[3] = {schema, table, slot};
	PGresult *res = PQexecParams(conn, DDL_SQL, 3, NULL, params, NULL, NULL, 0);

	when->ddl_known = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		when->ddl_known = PQgetvalue(res, 0, 0)[0] == 't';
		when->ddl_us = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	} else {
		log_warn("capture: the time of the last ALTER TABLE of %s.%s cannot be read (its "
			 "unchanged_toast lists may say null): %s", schema, table, PQerrorMessage(conn));
	}
	PQclear(res);
}

/* Fills columns, key and refusal of t from the catalog rows of TABLE_SQL, read at when. */
static void table_fill(capture_table *t, PGresult *res, const catalog_time *when)
{
	const capture_config *e = t->cfg;
	int n = PQntuples(res);
	int *pk = xcalloc((size_t)n + 1, sizeof(int)), *ri = xcalloc((size_t)n + 1, sizeof(int));

	t->cols = xcalloc((size_t)n + 1, sizeof(capture_column));
	t->n_cols = n;
	t->replident = n > 0 ? PQgetvalue(res, 0, 4)[0] : 'd';
	t->catalog_lsn = when->lsn;
	t->read_us = when->read_us;
	t->ddl_us = when->ddl_us;
	t->ddl_known = when->ddl_known;
	for (int i = 0; i < n; i++) {
		capture_column *col = &t->cols[i];
		col->name = xstrdup(PQgetvalue(res, i, 0));
		col->type_oid = (unsigned)strtoul(PQgetvalue(res, i, 1), NULL, 10);
		col->toastable = PQgetvalue(res, i, 5)[0] == 't';
		col->type_name = xstrdup(PQgetvalue(res, i, 6));
		col->not_null = PQgetvalue(res, i, 7)[0] == 't';
		col->ndims = atoi(PQgetvalue(res, i, 8));
		col->published = e->n_include_columns > 0
					 ? in_list(e->include_columns, e->n_include_columns, col->name)
					 : !in_list(e->exclude_columns, e->n_exclude_columns, col->name);
		pk[i] = atoi(PQgetvalue(res, i, 2));
		ri[i] = atoi(PQgetvalue(res, i, 3));
	}
	choose_key(t, pk, ri);
	free(pk);
	free(ri);
	if (n == 0)
		t->refusal = "the table is not in the catalog (dropped or renamed since its change "
			     "was written), so its key cannot be known";
	if (!t->refusal && !t->topic_ok)
		t->refusal = "the topic name made from the template is not a valid Kafka topic name";
}

/* Builds a table from the catalog rows of TABLE_SQL. */
static capture_table *table_from(capture *c, const capture_config *e, const char *schema,
				 const char *table, PGresult *res, const catalog_time *when)
{
	capture_table *t = xcalloc(1, sizeof(*t));
	size_t n = strlen(schema) + strlen(table) + 2;

	t->schema = xstrdup(schema);
	t->table = xstrdup(table);
	t->name = xmalloc(n);
	snprintf(t->name, n, "%s.%s", schema, table);
	t->cfg = e;
	char topic[TEMPLATE_TOPIC_MAX + 1];
	t->topic_ok = expand_topic(c->cfg, e, schema, table, topic);
	t->topic = xstrdup(topic);
	t->slot = c->cfg->slot;
	table_fill(t, res, when);
	return t;
}

/*
 * The catalog rows of schema.table (TABLE_SQL), or NULL with err. when gets the server's WAL
 * position and clock read just before (the entry holds every change of the catalog written
 * before them) and the time of the table's last ALTER TABLE, read just after.
 */
static PGresult *read_catalog(PGconn *conn, const char *schema, const char *table,
			      const char *slot, catalog_time *when, char *err, size_t errlen)
{
	const char *params[2] = {schema, table};
	PGresult *res = PQexec(conn, "SELECT pg_current_wal_lsn(), "
				     "floor(extract(epoch FROM clock_timestamp()) * 1000000)::int8");

	memset(when, 0, sizeof(*when));
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		lsn_parse(PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)), &when->lsn);
		when->read_us = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	if (when->lsn == 0) {
		snprintf(err, errlen, "reading the WAL position for the catalog entry of %s.%s: %s",
			 schema, table, PQerrorMessage(conn));
		return NULL;
	}
	res = PQexecParams(conn, TABLE_SQL, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		read_ddl_time(conn, schema, table, slot, when);
		return res;
	}
	snprintf(err, errlen, "reading the catalog entry of %s.%s: %s", schema, table,
		 PQerrorMessage(conn));
	PQclear(res);
	return NULL;
}

int capture_refresh(PGconn *conn, capture_table *t, char *err, size_t errlen)
{
	catalog_time when;
	PGresult *res = read_catalog(conn, t->schema, t->table, t->slot, &when, err, errlen);

	if (!res)
		return -1;
	if (PQntuples(res) == 0) {
		/* Dropped or renamed since the change was written: the entry it had fits it best. */
		log_warn("capture: %s is no longer in the catalog (dropped or renamed?): its changes "
			 "still being read keep the columns and key read before", t->name);
		t->catalog_lsn = when.lsn;
		t->read_us = when.read_us;
		t->ddl_known = false; /* which ALTER TABLE came before the drop cannot be told */
	} else {
		table_clear_catalog(t);
		table_fill(t, res, &when);
	}
	PQclear(res);
	return 0;
}

int capture_lookup(capture *c, PGconn *conn, const char *schema, const char *table,
		   capture_table **out, char *err, size_t errlen)
{
	const capture_config *e;
	PGresult *res;
	catalog_time when;

	for (int i = 0; i < c->n_tables; i++) {
		if (strcmp(c->tables[i]->table, table) == 0 && strcmp(c->tables[i]->schema, schema) == 0) {
			*out = c->tables[i];
			return 1;
		}
	}
	e = capture_entry_for(c, schema, table);
	if (!e)
		return 0;
	if (!conn)
		return -2; /* the catalog must be read: the caller connects and asks again */
	if (!(res = read_catalog(conn, schema, table, c->cfg->slot, &when, err, errlen)))
		return -1;
	if (c->n_tables == c->cap_tables) {
		c->cap_tables = c->cap_tables ? c->cap_tables * 2 : 16;
		c->tables = xrealloc(c->tables, sizeof(capture_table *) * (size_t)c->cap_tables);
	}
	*out = c->tables[c->n_tables++] = table_from(c, e, schema, table, res, &when);
	PQclear(res);
	return 1;
}

/*
 * Decodes a name span of a record into stack (when it fits) or the heap (*heap, to free). No
 * length limit: a 63-byte PostgreSQL name of control characters is 378 bytes escaped. NULL for
 * an escape that is not valid UTF-16 or a NUL, which no PostgreSQL name holds.
 */
static char *decode_name(const json_span *s, char *stack, size_t stack_len, char **heap)
{
	char *out = s->len < stack_len ? stack : (*heap = xmalloc(s->len + 1));
	long n = json_unescape(s, out);

	if (n < 0 || memchr(out, '\0', (size_t)n))
		return NULL;
	out[n] = '\0';
	return out;
}

int capture_lookup_record(capture *c, PGconn *conn, const w2j_record *rec, capture_table **out,
			  char *err, size_t errlen)
{
	char schema_buf[128], table_buf[128], *heap_s = NULL, *heap_t = NULL;
	const char *schema, *table;
	int rc;

	/* Fast path: names without escapes compared in place against the tables seen. */
	for (int k = 0; k < c->n_tables; k++) {
		int i = (c->last + k) % c->n_tables;
		const capture_table *t = c->tables[i];
		if (json_key_is(&rec->table, t->table, strlen(t->table)) &&
		    json_key_is(&rec->schema, t->schema, strlen(t->schema))) {
			c->last = i;
			*out = c->tables[i];
			return 1;
		}
	}
	schema = decode_name(&rec->schema, schema_buf, sizeof(schema_buf), &heap_s);
	table = decode_name(&rec->table, table_buf, sizeof(table_buf), &heap_t);
	if (schema && table) {
		rc = capture_lookup(c, conn, schema, table, out, err, errlen);
	} else {
		snprintf(err, errlen, "its schema or table name holds an escape that is not valid "
			 "text (\\u0000 or half a UTF-16 pair), so the capture list cannot be matched");
		rc = CAPTURE_BAD_NAME;
	}
	free(heap_s);
	free(heap_t);
	return rc;
}

#define ALL_TABLES_SQL                                                                             \
	"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " \
	"WHERE c.relkind = 'r' AND n.nspname NOT IN "             \
	"('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "                 \
	"AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"

int capture_resolve_all(capture *c, PGconn *conn, capture_table ***tables, int *n, char *err,
			size_t errlen)
{
	PGresult *res = PQexec(conn, ALL_TABLES_SQL);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "listing the tables to capture: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < PQntuples(res) && rc >= 0; i++) {
		capture_table *t;
		rc = capture_lookup(c, conn, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), &t, err, errlen);
	}
	PQclear(res);
	*tables = c->tables;
	*n = c->n_tables;
	return rc < 0 ? -1 : 0;
}

bool capture_topic_valid(const relay_config *cfg, const capture_config *e, const char *schema,
			 const char *table, char *topic, size_t len)
{
	char name[TEMPLATE_TOPIC_MAX + 1];
	bool ok = expand_topic(cfg, e, schema, table, name);

	snprintf(topic, len, "%s", name);
	return ok;
}

int capture_refused_count(const capture *c)
{
	int n = 0;
	for (int i = 0; i < c->n_tables; i++)
		n += c->tables[i]->refusal != NULL;
	return n;
}

bool capture_is_pattern(const capture_config *e) { return strchr(e->tables, '*') != NULL; }

/* Reads a columns or identity array into l; -1 when malformed. */
static int read_fields(field_list *l, const json_span *array)
{
	json_cursor it;
	w2j_column col;
	int rc;

	l->n = 0;
	if (array->kind == JSON_NONE)
		return 0;
	if (w2j_columns_open(&it, array) < 0)
		return -1;
	while ((rc = w2j_columns_next(&it, &col)) == 1) {
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 32;
			l->f = xrealloc(l->f, sizeof(cap_field) * l->cap);
		}
		l->f[l->n].name = col.name;
		l->f[l->n].type = col.type;
		l->f[l->n].value = col.value;
		l->n++;
	}
	return rc;
}

/* A column name span equals a catalog name (names with quotes or controls arrive escaped). */
static const cap_field *field_named(const field_list *l, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < l->n; i++)
		if (json_string_is(&l->f[i].name, name, n))
			return &l->f[i];
	return NULL;
}

/* True for a capture entry in Avro: its schema depends on each column's type and nullability. */
static bool is_avro(const capture_table *t)
{
	return t->cfg && t->cfg->format && strcmp(t->cfg->format, "avro") == 0;
}

/*
 * Whether a field of a change fits column col of an Avro capture's entry: wal2json's type maps
 * to the same Avro type as the entry's (an ALTER COLUMN TYPE since the entry was read changes
 * it: real to double precision, bytea to text), and a null is in a column the entry has nullable
 * (DROP NOT NULL). Names only for a JSON capture.
 */
static bool avro_column_fits(const capture_table *t, int col, const cap_field *f)
{
	char name[128];
	avro_change_type was, now;

	if (!is_avro(t))
		return true;
	if (f->value.kind == JSON_NULL && t->cols[col].not_null)
		return false;
	if (json_string_is(&f->type, t->cols[col].type_name, strlen(t->cols[col].type_name)))
		return true; /* the same text: the usual case, no mapping needed */
	long n = f->type.kind == JSON_STRING && f->type.len < sizeof(name)
			 ? json_unescape(&f->type, name) : -1;
	if (n < 0)
		return true; /* not a type name it could compare */
	name[n] = '\0';
	avro_change_map_column(t->cols[col].type_name, t->cols[col].ndims, &was);
	avro_change_map_column(name, t->cols[col].ndims, &now); /* wal2json prints no dimensions */
	return memcmp(&was, &now, sizeof(was)) == 0;
}

/*
 * Whether a delete's or update's identity fits an Avro capture's replica identity: the whole
 * row where the entry says FULL (more than the key), the key alone where it does not (an ALTER
 * TABLE ... REPLICA IDENTITY since the entry was read changes which fields are required).
 */
static bool identity_fits(const capture_table *t, const field_list *old)
{
	if (!is_avro(t) || old->n == 0 || t->n_cols == t->n_keys)
		return true;
	if (t->replident == 'f')
		return (int)old->n == t->n_cols;
	return (int)old->n < t->n_cols;
}

/*
 * Whether the fields (wal2json prints them in column order) are columns of the catalog entry,
 * in order. A column may be missing from them only when some_may_miss allows it: any column
 * (an identity), TOASTed ones (an update leaves out unchanged ones), none (an insert).
 */
enum { MISS_NONE, MISS_TOASTABLE, MISS_ANY };
static bool fields_fit(const capture_table *t, const field_list *l, int some_may_miss)
{
	int i = 0;
	for (size_t j = 0; j <= l->n; j++, i++) {
		if (i > 0 && j > 0 && !avro_column_fits(t, i - 1, &l->f[j - 1]))
			return false;
		/* Past the last field: the rest of the columns are missing. */
		while (i < t->n_cols && (j == l->n || !json_string_is(&l->f[j].name, t->cols[i].name,
								      strlen(t->cols[i].name)))) {
			if (some_may_miss == MISS_NONE ||
			    (some_may_miss == MISS_TOASTABLE && !t->cols[i].toastable))
				return false;
			i++;
		}
		if (i == t->n_cols && j < l->n)
			return false; /* a field the catalog entry does not know */
	}
	return true;
}

int capture_read(capture *c, const w2j_record *rec)
{
	c->read_ok = read_fields(&c->now, &rec->columns) == 0 && read_fields(&c->old, &rec->identity) == 0;
	c->toast_unknown = false;
	return c->read_ok ? 0 : -1;
}

bool capture_stale(capture *c, const capture_table *t, const w2j_record *rec, lsn_t commit_end)
{
	/* A transaction committed before the catalog was read: the read saw its ALTER TABLE. */
	if (commit_end <= t->catalog_lsn || rec->action == W2J_TRUNCATE)
		return false;
	if (!c->read_ok)
		return false; /* malformed: capture_build says so */
	if (rec->action != W2J_DELETE &&
	    !fields_fit(t, &c->now, rec->action == W2J_INSERT ? MISS_NONE : MISS_TOASTABLE))
		return true;
	return !fields_fit(t, &c->old, MISS_ANY) || !identity_fits(t, &c->old);
}

/* Whether the table publishes a column of the record (include_columns / exclude_columns). */
static bool field_published(const capture_table *t, const cap_field *f)
{
	const capture_config *e = t->cfg;
	if (e->n_include_columns == 0 && e->n_exclude_columns == 0)
		return true;
	for (int i = 0; i < t->n_cols; i++)
		if (json_string_is(&f->name, t->cols[i].name, strlen(t->cols[i].name)))
			return t->cols[i].published;
	return e->n_include_columns == 0; /* not in the catalog we read: a new column */
}

/* "col": value, ... of the published fields of l; returns how many were written. */
static int put_fields(strbuf *b, const capture_table *t, const field_list *l)
{
	int n = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (!field_published(t, &l->f[i]))
			continue;
		if (n++)
			STRBUF_ADD_LIT(b, ",");
		put_span(b, &l->f[i].name);
		STRBUF_ADD_LIT(b, ":");
		put_value(b, &l->f[i]);
	}
	return n;
}

static void put_row(strbuf *b, const capture_table *t, const field_list *l)
{
	STRBUF_ADD_LIT(b, "{");
	put_fields(b, t, l);
	STRBUF_ADD_LIT(b, "}");
}

/* Two name spans as wal2json wrote them (it escapes a name the same way each time). */
static bool same_name(const json_span *a, const json_span *b)
{
	return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

/*
 * Whether l holds a field named like f at or after *from (fields are in column order in both
 * lists, so a walk finds them); on a hit, *from moves past it.
 */
static bool has_field_from(const field_list *l, const cap_field *f, size_t *from)
{
	for (size_t k = *from; k < l->n; k++) {
		if (same_name(&l->f[k].name, &f->name)) {
			*from = k + 1;
			return true;
		}
	}
	return false;
}

/* True when the identity holds a column that is not one of the table's key columns. */
static bool has_non_key(const capture_table *t, const field_list *old)
{
	for (size_t k = 0; k < old->n; k++) {
		bool key = false;
		for (int j = 0; j < t->n_keys && !key; j++) {
			const char *name = t->cols[t->keys[j]].name;
			key = json_string_is(&old->f[k].name, name, strlen(name));
		}
		if (!key)
			return true;
	}
	return false;
}

/*
 * Whether an update's identity is its whole old row, as the change itself says: an old value
 * for every column of the new row, and more than the key (REPLICA IDENTITY FULL at the time of
 * the change, whatever the catalog says now). A key-only identity also covers a new row whose
 * other columns were all left out as unchanged TOAST: that is not the old row. A table of key
 * columns only has its whole row in its key.
 */
static bool identity_whole(const capture_table *t, const field_list *now, const field_list *old)
{
	size_t from = 0;

	if (old->n == 0)
		return false;
	for (size_t i = 0; i < now->n; i++)
		if (!has_field_from(old, &now->f[i], &from))
			return false;
	return t->n_cols == t->n_keys || has_non_key(t, old);
}

/*
 * The columns of the catalog entry an update has no value for, neither new nor old: what
 * wal2json left out as unchanged TOASTed values, if the entry is the table as it was at the
 * change (capture_toast_check). Written to toast as a JSON array's members; returns how many.
 */
static int put_toast_names(strbuf *toast, const capture_table *t, const field_list *now,
			   const field_list *old)
{
	int n_toast = 0;
	size_t j = 0;

	for (int i = 0; i < t->n_cols; i++) {
		const capture_column *col = &t->cols[i];
		size_t len = strlen(col->name);
		if (j < now->n && json_string_is(&now->f[j].name, col->name, len)) {
			j++;
			continue;
		}
		if (!col->published || field_named(now, col->name) || field_named(old, col->name))
			continue; /* left out, out of order (a catalog older than the row), or old value */
		if (n_toast++)
			STRBUF_ADD_LIT(toast, ",");
		json_out_string(toast, col->name, len);
	}
	return n_toast;
}

/*
 * The new row of an update. wal2json leaves out unchanged TOASTed columns; the old row has
 * their values when it is whole (REPLICA IDENTITY FULL), so every identity column the new row
 * lacks is filled from it. What neither has is named in unchanged_toast (toast).
 */
static int put_after(strbuf *b, strbuf *toast, const capture_table *t, const field_list *now,
		     const field_list *old)
{
	int n = 0;
	size_t from = 0;

	STRBUF_ADD_LIT(b, "{");
	n = put_fields(b, t, now);
	for (size_t i = 0; i < old->n; i++) {
		const cap_field *f = &old->f[i];
		if (has_field_from(now, f, &from) || !field_published(t, f))
			continue;
		if (n++)
			STRBUF_ADD_LIT(b, ",");
		put_span(b, &f->name);
		STRBUF_ADD_LIT(b, ":");
		put_value(b, f);
	}
	STRBUF_ADD_LIT(b, "}");
	return put_toast_names(toast, t, now, old);
}

/* (Declared in capture.h: whether the entry can tell what an update left out.) */
capture_toast capture_toast_check(capture *c, const capture_table *t, const w2j_record *rec,
				  bool may_read)
{
	int64_t commit_us;
	int missing;

	if (rec->action != W2J_UPDATE || !c->read_ok || t->refusal)
		return CAPTURE_TOAST_EXACT;
	strbuf_reset(&c->scratch);
	missing = put_toast_names(&c->scratch, t, &c->now, &c->old);
	strbuf_reset(&c->scratch);
	if (rec->timestamp.kind != JSON_STRING ||
	    !pgtime_parse_us(rec->timestamp.ptr, rec->timestamp.len, &commit_us)) {
		c->toast_unknown = true;
		return CAPTURE_TOAST_UNKNOWN;
	}
	/* Read before the change committed: an ALTER TABLE may have come between. */
	if (t->read_us < commit_us) {
		if (missing == 0)
			return CAPTURE_TOAST_EXACT; /* nothing is missing from what the entry knows */
		if (may_read)
			return CAPTURE_TOAST_READ_AGAIN;
		c->toast_unknown = true;
		return CAPTURE_TOAST_UNKNOWN;
	}
	/* Read after it: the entry is the table of the change if its last ALTER came before. */
	c->toast_unknown = !t->ddl_known || t->ddl_us >= commit_us;
	return c->toast_unknown ? CAPTURE_TOAST_UNKNOWN : CAPTURE_TOAST_EXACT;
}

/* The key object from one field list (else the fallback); -1 when a key column is missing. */
static int put_key_from(strbuf *b, const capture_table *t, const field_list *l,
			const field_list *fallback)
{
	strbuf_reset(b);
	STRBUF_ADD_LIT(b, "{");
	for (int k = 0; k < t->n_keys; k++) {
		const char *name = t->cols[t->keys[k]].name;
		const cap_field *f = field_named(l, name);
		if (!f && fallback)
			f = field_named(fallback, name);
		if (!f)
			return -1;
		if (k)
			STRBUF_ADD_LIT(b, ",");
		json_out_string(b, name, strlen(name));
		STRBUF_ADD_LIT(b, ":");
		put_value(b, f);
	}
	STRBUF_ADD_LIT(b, "}");
	return 0;
}

/* The key object; -1 with *why when a key column has no value in the record. */
static int put_key(capture *c, const capture_table *t, const w2j_record *rec, const char **why)
{
	const field_list *l = rec->action == W2J_DELETE ? &c->old : &c->now;
	if (put_key_from(&c->key, t, l, rec->action == W2J_UPDATE ? &c->old : NULL) < 0)
		return *why = "a key column has no value in the change (is it a TOASTed value "
			      "that did not change?)", -1;
	return 0;
}

/* ,"source":{...}} closing the envelope. */
static void put_source(strbuf *b, const capture_table *t, lsn_t lsn, uint64_t xid, bool has_xid,
		       const json_span *ts, bool snapshot)
{
	char num[64];

	STRBUF_ADD_LIT(b, ",\"source\":{\"lsn\":\"");
	lsn_format(lsn, num);
	strbuf_addn(b, num, strlen(num));
	STRBUF_ADD_LIT(b, "\",\"xid\":");
	if (has_xid)
		strbuf_addn(b, num, (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)xid));
	else
		STRBUF_ADD_LIT(b, "null");
	STRBUF_ADD_LIT(b, ",\"ts\":");
	put_span(b, ts);
	STRBUF_ADD_LIT(b, ",\"schema\":");
	json_out_string(b, t->schema, strlen(t->schema));
	STRBUF_ADD_LIT(b, ",\"table\":");
	json_out_string(b, t->table, strlen(t->table));
	if (snapshot)
		STRBUF_ADD_LIT(b, ",\"snapshot\":true}");
	else
		STRBUF_ADD_LIT(b, ",\"snapshot\":false}");
}

static void finish_msg(capture *c, const capture_table *t, route_msg *m, bool keyed)
{
	memset(m, 0, sizeof(*m));
	m->topic = t->topic;
	if (keyed && t->n_keys > 0) {
		m->key = c->key.s;
		m->key_len = c->key.len;
	}
	m->value = c->value.s;
	m->value_len = c->value.len;
}

int capture_build(capture *c, const capture_table *t, const w2j_record *rec, route_msg *m,
		  const char **why)
{
	strbuf *b = &c->value, *toast = &c->scratch;
	static const char ops[] = {[W2J_INSERT] = 'c', [W2J_UPDATE] = 'u', [W2J_DELETE] = 'd',
				   [W2J_TRUNCATE] = 't'};
	int n_toast = 0;

	memset(m, 0, sizeof(*m));
	strbuf_reset(toast);
	if (t->refusal)
		return *why = t->refusal, -1;
	if (!c->read_ok)
		return *why = "malformed columns or identity array", -1;
	if (rec->action != W2J_TRUNCATE && t->n_keys > 0 && put_key(c, t, rec, why) < 0)
		return -1;
	strbuf_reset(b);
	STRBUF_ADD_LIT(b, "{\"op\":\"");
	strbuf_addn(b, &ops[rec->action], 1);
	STRBUF_ADD_LIT(b, "\",\"before\":");
	/* An update's identity is the whole old row only with REPLICA IDENTITY FULL (else its key). */
	if (c->old.n > 0 && (rec->action == W2J_DELETE ||
			     (rec->action == W2J_UPDATE && identity_whole(t, &c->now, &c->old))))
		put_row(b, t, &c->old);
	else
		STRBUF_ADD_LIT(b, "null");
	STRBUF_ADD_LIT(b, ",\"after\":");
	if (rec->action == W2J_UPDATE)
		n_toast = put_after(b, toast, t, &c->now, &c->old);
	else if (rec->action == W2J_INSERT)
		put_row(b, t, &c->now);
	else
		STRBUF_ADD_LIT(b, "null");
	put_source(b, t, rec->lsn, rec->xid, rec->has_xid, &rec->timestamp, false);
	if (rec->action == W2J_UPDATE && c->toast_unknown) {
		STRBUF_ADD_LIT(b, ",\"unchanged_toast\":null"); /* cannot be known: capture_toast_check */
	} else if (n_toast) {
		STRBUF_ADD_LIT(b, ",\"unchanged_toast\":[");
		strbuf_addn(b, toast->s, toast->len);
		STRBUF_ADD_LIT(b, "]");
	}
	STRBUF_ADD_LIT(b, "}");
	finish_msg(c, t, m, rec->action != W2J_TRUNCATE);
	m->every_partition = rec->action == W2J_TRUNCATE;
	/* Text that is not UTF-8 (a SQL_ASCII database) is never published as it is. */
	if (router_utf8_valid_prefix(b->s, b->len) != b->len ||
	    (m->key && router_utf8_valid_prefix(m->key, m->key_len) != m->key_len))
		return *why = "invalid UTF-8 in the row (its text is not UTF-8)", -1;
	return 0;
}

int capture_build_key_change(capture *c, const capture_table *t, const w2j_record *rec,
			     route_msg *m)
{
	strbuf *b = &c->value;

	if (rec->action != W2J_UPDATE || t->n_keys == 0 || t->refusal || !c->read_ok ||
	    put_key_from(&c->key, t, &c->old, NULL) < 0 ||
	    put_key_from(&c->scratch, t, &c->now, &c->old) < 0)
		return 0;
	if (c->key.len == c->scratch.len && memcmp(c->key.s, c->scratch.s, c->key.len) == 0)
		return 0;
	strbuf_reset(b);
	STRBUF_ADD_LIT(b, "{\"op\":\"d\",\"before\":");
	put_row(b, t, &c->old);
	STRBUF_ADD_LIT(b, ",\"after\":null");
	put_source(b, t, rec->lsn, rec->xid, rec->has_xid, &rec->timestamp, false);
	STRBUF_ADD_LIT(b, "}");
	finish_msg(c, t, m, true);
	return 1;
}

void capture_build_snapshot(capture *c, const capture_table *t, const char *key, size_t key_len,
			    const char *row, size_t row_len, lsn_t lsn, const json_span *ts,
			    route_msg *m)
{
	strbuf *b = &c->value;

	strbuf_reset(&c->key);
	strbuf_addn(&c->key, key, key_len);
	strbuf_reset(b);
	STRBUF_ADD_LIT(b, "{\"op\":\"r\",\"before\":null,\"after\":");
	strbuf_addn(b, row, row_len);
	put_source(b, t, lsn, 0, false, ts, true);
	STRBUF_ADD_LIT(b, "}");
	finish_msg(c, t, m, true);
}
