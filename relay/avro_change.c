/* avro_change.c: captured tables in Avro: a schema derived from each table, and its changes and snapshot rows encoded by it. */
#include "avro_change.h"

#include <avro.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change_schema.h"
#include "avro_change_type.h"
#include "avro_change_value.h"
#include "encode.h"
#include "headers.h"
#include "log.h"
#include "protect_column.h"
#include "xalloc.h"


/* Envelope fields, in the schema's order (the JSON envelope's order). */
enum { F_OP, F_BEFORE, F_AFTER, F_SOURCE, F_TOAST, N_ENVELOPE };
/* Source fields, in the schema's order. */
enum { S_LSN, S_XID, S_TS, S_SCHEMA, S_TABLE, S_SNAPSHOT, N_SOURCE };

/* One row field: the catalog column it is and its Avro type. */
typedef struct {
	char *column; /* the catalog's name (a copy: a re-read entry frees its own) */
	avro_change_type type;
	bool nullable;
} ac_field;

/* A schema id under one subject. */
typedef struct {
	char *subject;
	int id;
} ac_id;

/* The schema derived from one captured table's catalog entry (its envelope or its key), compiled, with its ids. */
typedef struct {
	const capture_table *t;
	bool key;          /* the key record (avro_change_key_schema), not the envelope */
	lsn_t catalog_lsn; /* of the entry it was derived from: a steady table is derived once */
	char *extra;       /* columns the entry does not know (NUL-separated; NULL: none) */
	bool relaxed;      /* every row field nullable: a change older than the entry */
	size_t extra_len;
	char *text;
	ac_field *fields;
	int n_fields;
	bool *seen; /* per field, while a row is converted */
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t value;
	bool has_value;
	ac_id *ids;
	size_t n_ids;
} ac_table;

struct avro_change {
	char *prefix;
	const relay_config *rules; /* the protect rules (NULL: none) */
	avro_change_protect *prot; /* per column of the table being derived (NULL: none protected) */
	size_t prot_cap;
	ac_table **tables;
	size_t n;
	strbuf text, scratch, extra;
	bool unknown; /* the last conversion met a column its schema does not have */
	bool nullity; /* the last conversion met a null or missing value in a required field */
	const char *last; /* the schema text of the last successful conversion */
	char *buf, *key_buf; /* the value's and the key's wire format */
	size_t cap, key_cap;
	avro_writer_t writer;
	char why[1400];
	char reason[600];
	char subject[REGISTRY_SUBJECT_MAX]; /* the value's (its schema_subject header) */
	char key_subject[REGISTRY_SUBJECT_MAX];
	char id_text[16];
	header_list headers; /* the record's headers and ours (the router's stay as they were) */
};

avro_change *avro_change_new(const char *topic_prefix, const relay_config *rules)
{
	avro_change *a = xcalloc(1, sizeof(*a));
	a->prefix = xstrdup(topic_prefix ? topic_prefix : "");
	a->rules = rules;
	return a;
}

/* Frees a table's compiled schema and ids (not the entry itself). */
static void table_clear(ac_table *at)
{
	for (size_t k = 0; k < at->n_ids; k++)
		free(at->ids[k].subject);
	free(at->ids);
	free(at->text);
	free(at->extra);
	for (int i = 0; i < at->n_fields; i++)
		free(at->fields[i].column);
	free(at->fields);
	free(at->seen);
	if (at->has_value)
		avro_value_decref(&at->value);
	if (at->iface)
		avro_value_iface_decref(at->iface);
	if (at->schema)
		avro_schema_decref(at->schema);
	memset(at, 0, sizeof(*at));
}

void avro_change_free(avro_change *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++) {
		table_clear(a->tables[i]);
		free(a->tables[i]);
	}
	free(a->tables);
	free(a->prefix);
	free(a->prot);
	strbuf_free(&a->text);
	strbuf_free(&a->scratch);
	strbuf_free(&a->extra);
	free(a->buf);
	free(a->key_buf);
	if (a->writer)
		avro_writer_free(a->writer);
	header_list_free(&a->headers);
	free(a);
}


/*
 * What the protect rules make of each column of t (avro_change_schema.h), in a->prot; NULL when
 * they take none of its columns (the schema of a table without protected columns).
 */
static const avro_change_protect *protect_of(avro_change *a, const capture_table *t)
{
	bool any = false;

	if (!a->rules || a->rules->n_protects == 0)
		return NULL;
	if (a->prot_cap < (size_t)t->n_cols + 1) {
		a->prot_cap = (size_t)t->n_cols + 1;
		a->prot = xrealloc(a->prot, a->prot_cap * sizeof(*a->prot));
	}
	for (int i = 0; i < t->n_cols; i++) {
		int kind = protect_column_action(a->rules, t->name, t->cols[i].name);
		a->prot[i] = kind < 0 ? AVRO_CHANGE_CLEAR
			     : kind == PROTECT_DROP ? AVRO_CHANGE_DROPPED : AVRO_CHANGE_PROTECTED;
		any |= kind >= 0;
	}
	return any ? a->prot : NULL;
}

/* The key record's fields: the key columns in key order (avro_change_key_schema). */
static void fill_key_fields(ac_table *at, const avro_change_protect *prot)
{
	const capture_table *t = at->t;

	at->fields = xcalloc((size_t)t->n_keys + 1, sizeof(*at->fields));
	at->seen = xcalloc((size_t)t->n_keys + 1, sizeof(*at->seen));
	for (int k = 0; k < t->n_keys; k++) {
		ac_field *f = &at->fields[at->n_fields++];
		f->column = xstrdup(t->cols[t->keys[k]].name);
		avro_change_column_type(t, t->keys[k], prot, true, &f->type);
		f->nullable = avro_change_key_nullable(t, t->keys[k]);
	}
}

/*
 * The fields of the derived schema, in its order (the row's columns: published, not dropped by
 * prot; a key's: key columns), typed as avro_change_schema_with types them.
 */
static void fill_fields(ac_table *at, const avro_change_protect *prot)
{
	const capture_table *t = at->t;

	size_t n_extra = 0;

	if (at->key) {
		fill_key_fields(at, prot);
		return;
	}
	for (const char *x = at->extra; x && x < at->extra + at->extra_len; x += strlen(x) + 1)
		n_extra++;
	at->fields = xcalloc((size_t)t->n_cols + n_extra + 1, sizeof(*at->fields));
	at->seen = xcalloc((size_t)t->n_cols + n_extra + 1, sizeof(*at->seen));
	at->n_fields = 0;
	for (int i = 0; i < t->n_cols; i++) {
		if (!avro_change_in_row(t, i, prot))
			continue;
		ac_field *f = &at->fields[at->n_fields++];
		f->column = xstrdup(t->cols[i].name);
		avro_change_column_type(t, i, prot, false, &f->type);
		f->nullable = avro_change_field_nullable(t, i, at->relaxed);
	}
	for (const char *x = at->extra; x && x < at->extra + at->extra_len; x += strlen(x) + 1) {
		ac_field *f = &at->fields[at->n_fields++];
		f->column = xstrdup(x); /* a string: its text */
		f->nullable = true;
	}
}

/*
 * The fields of at derived again from its entry (the compiled schema and ids kept): a text
 * that stays the same may still convert otherwise (json and text are both "string").
 */
static void refill_fields(ac_table *at, const avro_change_protect *prot)
{
	for (int i = 0; i < at->n_fields; i++)
		free(at->fields[i].column);
	free(at->fields);
	free(at->seen);
	at->fields = NULL;
	at->seen = NULL;
	at->n_fields = 0;
	fill_fields(at, prot);
}

/*
 * Compiles a's text (just derived, under prot) into at: libavro's schema, class and value. -1
 * with why.
 */
static int compile(avro_change *a, ac_table *at, const avro_change_protect *prot, const char **why)
{
	const capture_table *t = at->t;
	char *extra = at->extra;
	size_t extra_len = at->extra_len;
	bool relaxed = at->relaxed, key = at->key;

	at->extra = NULL; /* kept across the clear */
	table_clear(at);
	at->t = t;
	at->key = key;
	at->relaxed = relaxed;
	at->extra = extra;
	at->extra_len = extra_len;
	at->catalog_lsn = t->catalog_lsn;
	at->text = xstrdup(a->text.s);
	fill_fields(at, prot);
	if (avro_schema_from_json_length(at->text, a->text.len, &at->schema) != 0) {
		at->schema = NULL;
		snprintf(a->why, sizeof(a->why), "the Avro %sschema derived from %s is not valid: %s",
			 key ? "key " : "", t->name, avro_strerror());
		return *why = a->why, -1;
	}
	at->iface = avro_generic_class_from_schema(at->schema);
	if (!at->iface || avro_generic_value_new(at->iface, &at->value) != 0) {
		snprintf(a->why, sizeof(a->why), "libavro cannot build values of the schema of %s: %s",
			 t->name, avro_strerror());
		return *why = a->why, -1;
	}
	at->has_value = true;
	return 0;
}

/* True when at is t's schema (key or envelope) with exactly these extra names and nullability. */
static bool same_variant(const ac_table *at, const capture_table *t, bool key, const char *extra,
			 size_t extra_len, bool relaxed)
{
	return at->t == t && at->key == key && at->extra_len == extra_len && at->relaxed == relaxed &&
	       (extra_len == 0 || memcmp(at->extra, extra, extra_len) == 0);
}

/*
 * The derived schema of t (key: its key record; with extra names: the variant for a change with
 * columns the entry does not know), its columns typed under the protect rules: cached per
 * table, kind, extra names and catalog entry (a re-read entry that gives the same text keeps
 * the compiled schema and its ids). NULL with *why.
 */
static ac_table *table_for(avro_change *a, const capture_table *t, bool key, const char *extra,
			   size_t extra_len, bool relaxed, const char **why)
{
	ac_table *at = NULL;
	const avro_change_protect *prot;

	for (size_t i = 0; i < a->n && !at; i++)
		if (same_variant(a->tables[i], t, key, extra, extra_len, relaxed))
			at = a->tables[i];
	if (at && at->has_value && at->catalog_lsn == t->catalog_lsn)
		return at;
	prot = protect_of(a, t); /* the entry's columns may have changed: looked up again */
	strbuf_reset(&a->text);
	if (key)
		avro_change_key_schema(&a->text, t, a->prefix, prot);
	else
		avro_change_schema_with(&a->text, t, a->prefix, extra, extra_len, relaxed, prot);
	if (at && at->has_value && strcmp(at->text, a->text.s) == 0) {
		at->catalog_lsn = t->catalog_lsn;
		refill_fields(at, prot); /* one text, other conversions: jsonb to text */
		return at;
	}
	if (!at) {
		a->tables = xrealloc(a->tables, sizeof(*a->tables) * (a->n + 1));
		at = a->tables[a->n++] = xcalloc(1, sizeof(*at));
		at->t = t;
		at->key = key;
		at->relaxed = relaxed;
		if (extra_len) {
			at->extra = xmalloc(extra_len);
			memcpy(at->extra, extra, extra_len);
			at->extra_len = extra_len;
		}
	}
	return compile(a, at, prot, why) < 0 ? NULL : at;
}

/* ---- the conversion ---- */

/* Writes a reason into a->why and returns -1. */
static int fail(avro_change *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(avro_change *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* A union field: null (branch 0) or, with *inner set, its second branch. */
static int set_union(avro_value_t *u, bool null, avro_value_t *inner)
{
	avro_value_t branch;
	if (null)
		return avro_value_set_branch(u, 0, &branch) || avro_value_set_null(&branch);
	return avro_value_set_branch(u, 1, inner);
}

/* A JSON string span (unescaped) as an Avro string. */
static int set_text(avro_change *a, avro_value_t *v, const json_span *j)
{
	if (j->kind != JSON_STRING)
		return fail(a, "the envelope holds a %s where a string belongs", "non-string");
	strbuf_reset(&a->scratch);
	long n = json_unescape(j, strbuf_room(&a->scratch, j->len + 1));
	if (n < 0)
		return fail(a, "the envelope holds an invalid escape");
	strbuf_setlen(&a->scratch, (size_t)n);
	return avro_value_set_string_len(v, a->scratch.s, (size_t)n + 1);
}

/* The field of a row member's name (columns come in field order: from is a hint), or -1. */
static int field_of(const ac_table *at, const json_span *key, int from)
{
	for (int k = 0; k < at->n_fields; k++) {
		int i = (from + k) % at->n_fields;
		if (json_string_is(key, at->fields[i].column, strlen(at->fields[i].column)))
			return i;
	}
	return -1;
}

/* One column value into its field (nullable: the union's branch). */
static int put_column(avro_change *a, ac_table *at, avro_value_t *row, int i, const json_span *val)
{
	const ac_field *f = &at->fields[i];
	avro_value_t field, target;

	if (avro_value_get_by_index(row, (size_t)i, &field, NULL) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (val->kind == JSON_NULL) {
		a->nullity = !f->nullable;
		if (!f->nullable)
			return fail(a, "column \"%.100s\" of %s is null, but its field is not nullable in "
				    "the derived schema (the column was NOT NULL when the catalog was "
				    "read)", f->column, at->t->name);
		return set_union(&field, true, NULL);
	}
	target = field;
	if (f->nullable && set_union(&field, false, &target) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (avro_change_value_set(&target, &f->type, val, &a->scratch, a->reason,
				  sizeof(a->reason)) != 0)
		return fail(a, "column \"%.100s\" of %s: %s", f->column, at->t->name, a->reason);
	return 0;
}

/* A row object (before or after) into the row record: every field set, absent ones null. */
static int put_row(avro_change *a, ac_table *at, avro_value_t *row, const json_span *obj)
{
	json_cursor c;
	json_span key, val;
	int rc, i = 0;

	memset(at->seen, 0, sizeof(*at->seen) * (size_t)(at->n_fields + 1));
	if (json_object_open(&c, obj) < 0)
		return fail(a, "a row of the envelope is not an object");
	while ((rc = json_object_next(&c, &key, &val)) == 1) {
		if ((i = field_of(at, &key, i)) < 0) {
			a->unknown = true; /* the caller converts again with a variant */
			return fail(a, "the change of %s has a column its schema does not have",
				    at->t->name);
		}
		if (at->seen[i] || put_column(a, at, row, i, &val) < 0)
			return at->seen[i] ? fail(a, "a column appears twice in a row") : -1;
		at->seen[i++] = true;
	}
	if (rc < 0)
		return fail(a, "a row of the envelope is malformed");
	for (i = 0; i < at->n_fields; i++) {
		avro_value_t field;
		if (at->seen[i])
			continue;
		a->nullity = !at->fields[i].nullable;
		if (a->nullity)
			return fail(a, "column \"%.100s\" of %s has no value in the change, but its field "
				    "is not nullable in the derived schema", at->fields[i].column,
				    at->t->name);
		if (avro_value_get_by_index(row, (size_t)i, &field, NULL) || set_union(&field, true, NULL))
			return fail(a, "libavro: %s", avro_strerror());
	}
	return 0;
}

/* before or after: null, or the row. */
static int put_image(avro_change *a, ac_table *at, avro_value_t *env, int index, const json_span *j)
{
	avro_value_t field, row;

	if (avro_value_get_by_index(env, (size_t)index, &field, NULL) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (!j || j->kind == JSON_NULL)
		return set_union(&field, true, NULL);
	if (set_union(&field, false, &row) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	return put_row(a, at, &row, j);
}

/* A transaction id: a JSON number, unsigned 32 bits widened by the server to 64 (fits a long). */
static int set_xid(avro_value_t *v, const json_span *j)
{
	int64_t x = 0;

	if (j->kind != JSON_NUMBER || j->len == 0 || j->len > 18)
		return -1;
	for (size_t i = 0; i < j->len; i++) {
		if (j->ptr[i] < '0' || j->ptr[i] > '9')
			return -1;
		x = x * 10 + (j->ptr[i] - '0');
	}
	return avro_value_set_long(v, x);
}

/* The source object: lsn, xid, ts, schema, table, snapshot. */
static int put_source(avro_change *a, avro_value_t *env, const json_span *j)
{
	avro_value_t src, f, inner;
	json_cursor c;
	json_span key, val;
	int rc, got = 0;
	static const char *const names[N_SOURCE] = {"lsn", "xid", "ts", "schema", "table", "snapshot"};

	if (avro_value_get_by_index(env, F_SOURCE, &src, NULL) != 0 || json_object_open(&c, j) < 0)
		return fail(a, "the envelope's source is not an object");
	while ((rc = json_object_next(&c, &key, &val)) == 1) {
		int i = 0;
		while (i < N_SOURCE && !json_key_is(&key, names[i], strlen(names[i])))
			i++;
		if (i == N_SOURCE || avro_value_get_by_index(&src, (size_t)i, &f, NULL) != 0)
			return fail(a, "the envelope's source has a member the Avro schema does not know");
		got |= 1 << i;
		if (i == S_SNAPSHOT)
			rc = avro_value_set_boolean(&f, val.kind == JSON_TRUE);
		else if ((i == S_XID || i == S_TS) && val.kind == JSON_NULL)
			rc = set_union(&f, true, NULL);
		else if (i == S_XID)
			rc = set_union(&f, false, &inner) || set_xid(&inner, &val);
		else if (i == S_TS)
			rc = set_union(&f, false, &inner) || set_text(a, &inner, &val);
		else
			rc = set_text(a, &f, &val);
		if (rc != 0)
			return fail(a, "the envelope's source.%s does not fit its Avro type", names[i]);
	}
	if (rc < 0 || got != (1 << N_SOURCE) - 1)
		return fail(a, "the envelope's source is malformed or incomplete");
	return 0;
}

/* unchanged_toast: absent (nothing left out: an empty array), null (unknown), or the names. */
static int put_toast(avro_change *a, avro_value_t *env, const json_span *j)
{
	avro_value_t f, arr, item;
	json_cursor c;
	json_span name;
	int rc;

	if (avro_value_get_by_index(env, F_TOAST, &f, NULL) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (j && j->kind == JSON_NULL)
		return set_union(&f, true, NULL);
	if (set_union(&f, false, &arr) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (!j)
		return 0;
	if (json_array_open(&c, j) < 0)
		return fail(a, "the envelope's unchanged_toast is not an array");
	while ((rc = json_array_next(&c, &name)) == 1)
		if (avro_value_append(&arr, &item, NULL) != 0 || set_text(a, &item, &name) != 0)
			return -1;
	return rc < 0 ? fail(a, "the envelope's unchanged_toast is malformed") : 0;
}

/* The envelope's members by name (absent: JSON_NONE). */
typedef struct {
	json_span m[N_ENVELOPE];
} envelope;

/* Splits the envelope's text into its members; -1 for one the schema does not know. */
static int read_envelope(avro_change *a, const char *json, size_t len, envelope *e)
{
	static const char *const names[N_ENVELOPE] = {"op", "before", "after", "source",
						      "unchanged_toast"};
	json_cursor c;
	json_span key, val;
	int rc;

	memset(e, 0, sizeof(*e));
	json_cursor_init(&c, json, len);
	if (json_enter_object(&c) < 0)
		return fail(a, "the envelope is not a JSON object");
	while ((rc = json_object_next(&c, &key, &val)) == 1) {
		int i = 0;
		while (i < N_ENVELOPE && !json_key_is(&key, names[i], strlen(names[i])))
			i++;
		if (i == N_ENVELOPE)
			return fail(a, "the envelope has a member its Avro schema does not know");
		e->m[i] = val;
	}
	if (rc < 0 || !json_at_end(&c) || e->m[F_OP].kind != JSON_STRING ||
	    e->m[F_SOURCE].kind != JSON_OBJECT)
		return fail(a, "the envelope is malformed (op and source are needed)");
	return 0;
}

/* The envelope's JSON into at's Avro value. */
static int put_envelope(avro_change *a, ac_table *at, const char *json, size_t len)
{
	envelope e;
	avro_value_t op;

	avro_value_reset(&at->value);
	if (read_envelope(a, json, len, &e) < 0)
		return -1;
	if (avro_value_get_by_index(&at->value, F_OP, &op, NULL) != 0 || set_text(a, &op, &e.m[F_OP]))
		return fail(a, "the envelope's op is not a string");
	if (put_image(a, at, &at->value, F_BEFORE, e.m[F_BEFORE].kind ? &e.m[F_BEFORE] : NULL) < 0 ||
	    put_image(a, at, &at->value, F_AFTER, e.m[F_AFTER].kind ? &e.m[F_AFTER] : NULL) < 0 ||
	    put_source(a, &at->value, &e.m[F_SOURCE]) < 0)
		return -1;
	return put_toast(a, &at->value, e.m[F_TOAST].kind ? &e.m[F_TOAST] : NULL);
}

/* at's value written as Avro binary into *buf (of *cap bytes, grown) after prefix bytes. */
static int write_value(avro_change *a, ac_table *at, char **buf, size_t *cap, size_t prefix,
		       char **out, size_t *out_len)
{
	size_t size = 0;

	if (avro_value_sizeof(&at->value, &size) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	if (*cap < prefix + size + 1) {
		*cap = (prefix + size + 1) * 2;
		*buf = xrealloc(*buf, *cap);
	}
	if (!a->writer)
		a->writer = avro_writer_memory(*buf + prefix, (int64_t)size);
	else
		avro_writer_memory_set_dest(a->writer, *buf + prefix, (int64_t)size);
	if (!a->writer || avro_value_write(a->writer, &at->value) != 0)
		return fail(a, "libavro: %s", avro_strerror());
	*out = *buf;
	*out_len = prefix + size;
	return 0;
}

/* Converts the envelope into at's Avro (after prefix bytes); -1 with a->why. */
static int convert(avro_change *a, ac_table *at, const char *json, size_t len, size_t prefix,
		   char **out, size_t *out_len)
{
	if (put_envelope(a, at, json, len) < 0)
		return -1;
	return write_value(a, at, &a->buf, &a->cap, prefix, out, out_len);
}

/* Adds the names of obj's members that base has no field for to a->extra (once each). */
static void collect_unknown(avro_change *a, const ac_table *base, const json_span *obj)
{
	json_cursor c;
	json_span key, val;

	if (obj->kind != JSON_OBJECT || json_object_open(&c, obj) < 0)
		return;
	while (json_object_next(&c, &key, &val) == 1) {
		char *name;
		long n;
		if (field_of(base, &key, 0) >= 0)
			continue;
		name = xmalloc(key.len + 1);
		n = json_unescape(&key, name);
		if (n >= 0 && !memchr(name, '\0', (size_t)n) && !avro_change_name_listed(&a->extra, name, (size_t)n)) {
			strbuf_addn(&a->extra, name, (size_t)n);
			strbuf_addc(&a->extra, '\0');
		}
		free(name);
	}
}

/*
 * The envelope converted by t's schema; when a row has columns the catalog entry does not know
 * (a change written before a column was dropped or renamed, read after), by the variant of the
 * schema with those columns as nullable strings (their text), so the change is not lost; when a
 * row lacks a value (or has a null) where the entry requires one (a change older than the entry:
 * SET NOT NULL, REPLICA IDENTITY since; a newer change fitting the entry was refreshed for by
 * capture_stale), by the variant with every row field nullable. *atp gets the schema used. -1
 * with *why.
 */
static int convert_change(avro_change *a, const capture_table *t, const char *json, size_t len,
			  size_t prefix, ac_table **atp, char **out, size_t *out_len,
			  const char **why)
{
	const char *extra = NULL;
	size_t extra_len = 0;
	bool relaxed = false;
	envelope e;

	for (;;) {
		ac_table *at = table_for(a, t, false, extra, extra_len, relaxed, why);
		if (!at)
			return -1;
		a->unknown = a->nullity = false;
		if (convert(a, at, json, len, prefix, out, out_len) == 0)
			return a->last = at->text, *atp = at, 0;
		if (a->unknown && !extra && read_envelope(a, json, len, &e) == 0) {
			strbuf_reset(&a->extra);
			collect_unknown(a, at, &e.m[F_BEFORE]);
			collect_unknown(a, at, &e.m[F_AFTER]);
			if (a->extra.len == 0)
				return *why = a->why, -1;
			extra = a->extra.s;
			extra_len = a->extra.len;
		} else if (a->nullity && !relaxed) {
			relaxed = true;
		} else {
			return *why = a->why, -1;
		}
	}
}

const char *avro_change_last_schema(const avro_change *a) { return a->last; }

int avro_change_convert(avro_change *a, const capture_table *t, const char *json, size_t len,
			size_t prefix, char **out, size_t *out_len, const char **why)
{
	ac_table *at;

	return convert_change(a, t, json, len, prefix, &at, out, out_len, why);
}

/* After put_row of a key: every key column had a member (an absent one is not a null). */
static int key_whole(avro_change *a, const ac_table *at)
{
	for (int i = 0; i < at->n_fields; i++)
		if (!at->seen[i])
			return fail(a, "the key of %s has no member for key column \"%.100s\"",
				    at->t->name, at->fields[i].column);
	return 0;
}

/* a->why said of the record key, so that a dead letter's reason names the key, not the row. */
static const char *key_failure(avro_change *a)
{
	char reason[sizeof(a->why)];

	if (strncmp(a->why, "the key of ", 11) == 0)
		return a->why;
	snprintf(reason, sizeof(reason), "%s", a->why);
	snprintf(a->why, sizeof(a->why), "the record key (key_format = \"avro\"): %.1300s", reason);
	return a->why;
}

/*
 * The record key capture built (a JSON object of the key columns, in key order) into t's key
 * record, after prefix bytes of a->key_buf. *atp gets the key schema. -1 with *why.
 */
static int convert_key(avro_change *a, const capture_table *t, const char *json, size_t len,
		       size_t prefix, ac_table **atp, char **out, size_t *out_len, const char **why)
{
	ac_table *at = table_for(a, t, true, NULL, 0, false, why);
	json_cursor c;
	json_span obj;

	if (!at)
		return -1;
	a->unknown = a->nullity = false;
	avro_value_reset(&at->value);
	json_cursor_init(&c, json, len);
	if (json_read_value(&c, &obj) < 0 || obj.kind != JSON_OBJECT || !json_at_end(&c))
		fail(a, "the key of %s is not a JSON object", t->name);
	else if (put_row(a, at, &at->value, &obj) == 0 && key_whole(a, at) == 0 &&
		 write_value(a, at, &a->key_buf, &a->key_cap, prefix, out, out_len) == 0)
		return a->last = at->text, *atp = at, 0;
	return *why = key_failure(a), -1;
}

int avro_change_convert_key(avro_change *a, const capture_table *t, const char *json, size_t len,
			    size_t prefix, char **out, size_t *out_len, const char **why)
{
	ac_table *at;

	return convert_key(a, t, json, len, prefix, &at, out, out_len, why);
}

/* ---- the registry and the wire format ---- */

/* The schema id of at under subject: cached, else asked of the registry. */
static int schema_id(avro_change *a, ac_table *at, registry *reg, const char *subject, int *id,
		     const char **why)
{
	const char *what = at->key ? "key schema" : "schema";

	for (size_t k = 0; k < at->n_ids; k++)
		if (strcmp(at->ids[k].subject, subject) == 0)
			return *id = at->ids[k].id, ENCODE_OK;
	registry_result r = registry_id(reg, subject, at->text, id, a->reason, sizeof(a->reason));
	if (r == REGISTRY_DOWN)
		return *why = a->reason, ENCODE_HOLD;
	if (r != REGISTRY_OK) {
		snprintf(a->why, sizeof(a->why), "captured table %.150s: the registry refuses its "
			 "derived %s under subject %.250s: %.500s (docs/schemas.md: schema "
			 "changes)", at->t->name, what, subject, a->reason);
		return *why = a->why, ENCODE_STOP;
	}
	at->ids = xrealloc(at->ids, sizeof(*at->ids) * (at->n_ids + 1));
	at->ids[at->n_ids].subject = xstrdup(subject);
	at->ids[at->n_ids++].id = *id;
	log_info("Avro: the %s derived from %s (%d columns) is id %d under subject %s", what,
		 at->t->name, at->n_fields, *id, subject);
	return ENCODE_OK;
}

/* True when the table's capture entry has key_format = "avro". */
static bool avro_key(const capture_table *t)
{
	return t && t->cfg && t->cfg->key_format && strcmp(t->cfg->key_format, "avro") == 0;
}

/*
 * The record key as t's key record in the wire format, registered under <topic>-key (the
 * value's subject is <topic>-value whatever subject_strategy says: one naming for both). No key
 * (an unkeyed table's, a truncate's) stays none. The text key is kept for a dead letter.
 */
static int encode_key(avro_change *a, registry *reg, const capture_table *t, route_msg *m,
		      const char **why)
{
	ac_table *at;
	char *out;
	size_t len;
	int id, rc;

	if (!m->key)
		return ENCODE_OK;
	if (convert_key(a, t, m->key, m->key_len, REGISTRY_WIRE_HEADER, &at, &out, &len, why) < 0)
		return ENCODE_REJECT;
	if (registry_key_subject(REGISTRY_TOPIC_NAME, m->topic, NULL, a->key_subject,
				 sizeof(a->key_subject)) < 0)
		return *why = "the key subject is too long", ENCODE_STOP;
	if ((rc = schema_id(a, at, reg, a->key_subject, &id, why)) != ENCODE_OK)
		return rc;
	registry_wire_header(out, id);
	m->text_key = m->key, m->text_key_len = m->key_len; /* for a dead letter */
	m->key = out; /* a's buffer, until its next call; librdkafka copies it */
	m->key_len = len;
	return ENCODE_OK;
}

/* The record's headers (copied) plus schema_id and schema_subject. */
static void with_schema_headers(avro_change *a, route_msg *m, int id)
{
	snprintf(a->id_text, sizeof(a->id_text), "%d", id);
	header_list_add_schema(&a->headers, m, a->id_text, a->subject, 0);
}

int avro_change_encode(avro_change *a, registry *reg, record *rec, const char **why)
{
	route_msg *m = rec->msg;
	ac_table *at;
	char *out;
	size_t len;
	int id, rc;

	if (!m->value) /* a tombstone has no payload to convert: its key is the event's */
		return avro_key(rec->table) ? encode_key(a, reg, rec->table, m, why) : ENCODE_OK;
	if (!rec->table)
		return *why = "a captured table's record without its table", ENCODE_REJECT;
	if (convert_change(a, rec->table, m->value, m->value_len, REGISTRY_WIRE_HEADER, &at, &out, &len,
			   why) < 0)
		return ENCODE_REJECT;
	snprintf(a->subject, sizeof(a->subject), "%s-value", m->topic); /* TopicNameStrategy */
	if ((rc = schema_id(a, at, reg, a->subject, &id, why)) != ENCODE_OK)
		return rc;
	registry_wire_header(out, id);
	m->value = out; /* a's buffer, until its next call; librdkafka copies it */
	m->value_len = len;
	with_schema_headers(a, m, id);
	return avro_key(rec->table) ? encode_key(a, reg, rec->table, m, why) : ENCODE_OK;
}
