/* avro_change_schema.c: the Avro schema derived from a captured table: envelope, row record, names, nullability. */
#include "avro_change_schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change_type.h"
#include "json_out.h"
#include "xalloc.h"

/* True when col is one of the table's key columns. */
static bool is_key(const capture_table *t, int col)
{
	for (int k = 0; k < t->n_keys; k++)
		if (t->keys[k] == col)
			return true;
	return false;
}

/* (Declared in avro_change_schema.h: NOT NULL is a plain type only where every record has it.) */
bool avro_change_nullable(const capture_table *t, int col)
{
	return !t->cols[col].not_null || !(is_key(t, col) || t->replident == 'f');
}

/* (Declared in avro_change_schema.h: a key column's own NOT NULL, whatever the identity.) */
bool avro_change_key_nullable(const capture_table *t, int col)
{
	return !t->cols[col].not_null;
}

/* (Declared in avro_change_schema.h: the key stays required, the Kafka key is built of it.) */
bool avro_change_field_nullable(const capture_table *t, int col, bool relaxed)
{
	return avro_change_nullable(t, col) || (relaxed && !is_key(t, col));
}

/* (Declared in avro_change_schema.h: the row leaves out unpublished and dropped columns.) */
bool avro_change_in_row(const capture_table *t, int col, const avro_change_protect *prot)
{
	return t->cols[col].published && !(prot && prot[col] == AVRO_CHANGE_DROPPED);
}

/* (Declared in avro_change_schema.h: a protected value is its protected text, a string.) */
void avro_change_column_type(const capture_table *t, int col, const avro_change_protect *prot,
			     bool key, avro_change_type *out)
{
	bool as_text = prot && (key ? prot[col] != AVRO_CHANGE_CLEAR : prot[col] == AVRO_CHANGE_PROTECTED);

	if (as_text)
		avro_change_map(NULL, out); /* a string, an array's too: its whole text is protected */
	else
		avro_change_map_column(t->cols[col].type_name, t->cols[col].ndims, out);
}

/* The namespace: each dot-separated part of the prefix, then the schema, as Avro names. */
static void put_namespace(strbuf *b, const char *prefix, const char *schema)
{
	const char *p = prefix;

	while (*p) {
		size_t n = strcspn(p, ".");
		if (n > 0) {
			avro_change_name(b, p, n);
			strbuf_addc(b, '.');
		}
		p += n + (p[n] == '.');
	}
	avro_change_name(b, schema, strlen(schema));
}

/* (Declared in avro_change_schema.h: a walk of a NUL-separated list.) */
bool avro_change_name_listed(const strbuf *names, const char *name, size_t n)
{
	for (const char *p = names->s; p && p < names->s + names->len; p += strlen(p) + 1)
		if (strlen(p) == n && memcmp(p, name, n) == 0)
			return true;
	return false;
}

/*
 * Sets name to column's field name in a record whose earlier names are listed in names
 * (NUL-separated): sanitized, and unique (a clash gets _<ordinal>, again while it still
 * clashes); the name is added to the list.
 */
static void unique_name(strbuf *names, const char *column, int ordinal, strbuf *name)
{
	strbuf_reset(name);
	avro_change_name(name, column, strlen(column));
	while (avro_change_name_listed(names, name->s, name->len))
		strbuf_addf(name, "_%d", ordinal); /* two names sanitized alike */
	strbuf_addn(names, name->s, name->len + 1);
}

/*
 * The field name of each column, one naming for the row record and the key record (a key
 * field is named as its column's field in the row): the row's columns in column order, then
 * the key columns the row leaves out (unpublished or dropped). Offsets into names (the
 * NUL-separated list, which extra names continue), SIZE_MAX for a column in neither; freed by
 * the caller.
 */
static size_t *column_names(const capture_table *t, const avro_change_protect *prot, strbuf *names)
{
	size_t *at = xcalloc((size_t)t->n_cols + 1, sizeof(*at));
	strbuf name = {0};

	for (int i = 0; i < t->n_cols; i++)
		at[i] = SIZE_MAX;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < t->n_cols; i++) {
			bool in_row = avro_change_in_row(t, i, prot);
			if (pass == 0 ? !in_row : in_row || !is_key(t, i))
				continue;
			at[i] = names->len;
			unique_name(names, t->cols[i].name, i + 1, &name);
		}
	strbuf_free(&name);
	return at;
}

/*
 * One field: its Avro name, the column's own name when it differs, its type (named records
 * defined once per schema, in *defined).
 */
static void put_field(strbuf *b, const char *name, const char *column, const avro_change_type *type,
		      bool nullable, uint64_t *defined)
{
	STRBUF_ADD_LIT(b, "{\"name\":\"");
	strbuf_addn(b, name, strlen(name));
	STRBUF_ADD_LIT(b, "\",");
	if (strcmp(name, column) != 0) {
		STRBUF_ADD_LIT(b, "\"pg_column\":");
		json_out_string(b, column, strlen(column));
		STRBUF_ADD_LIT(b, ",");
	}
	STRBUF_ADD_LIT(b, "\"type\":");
	if (nullable) {
		STRBUF_ADD_LIT(b, "[\"null\",");
		avro_change_type_json(b, type, defined);
		STRBUF_ADD_LIT(b, "],\"default\":null}");
	} else {
		avro_change_type_json(b, type, defined);
		STRBUF_ADD_LIT(b, "}");
	}
}

/* The columns of a record: every one in the row, or the key columns in key order. */
static int record_columns(const capture_table *t, bool key, const avro_change_protect *prot, int *cols)
{
	int n = 0;

	for (int j = 0; j < (key ? t->n_keys : t->n_cols); j++)
		if (key || avro_change_in_row(t, j, prot))
			cols[n++] = key ? t->keys[j] : j;
	return n;
}

/*
 * A record's fields: one per column of the row (published columns a rule does not drop, their
 * nullability by the identity) or of the key (the key columns, nullable only when the column
 * is), typed by prot, then one nullable string per extra name (columns a change has that the
 * entry does not know).
 */
static void put_fields(strbuf *b, const capture_table *t, bool key, const char *extra,
		       size_t extra_len, bool all_nullable, const avro_change_protect *prot)
{
	strbuf names = {0}, name = {0};
	size_t *at = column_names(t, prot, &names);
	uint64_t defined = 0; /* one schema: each named record once */
	int *cols = xcalloc((size_t)t->n_cols + (size_t)t->n_keys + 1, sizeof(int));
	int n = record_columns(t, key, prot, cols), written = 0;
	avro_change_type type;

	for (int j = 0; j < n; j++, written++) {
		int i = cols[j];
		if (written)
			STRBUF_ADD_LIT(b, ",");
		avro_change_column_type(t, i, prot, key, &type);
		put_field(b, names.s + at[i], t->cols[i].name, &type,
			  key ? avro_change_key_nullable(t, i)
			      : avro_change_field_nullable(t, i, all_nullable), &defined);
	}
	avro_change_map(NULL, &type); /* a string: the value's text */
	for (const char *x = extra; x && x < extra + extra_len; x += strlen(x) + 1) {
		if (written++)
			STRBUF_ADD_LIT(b, ",");
		unique_name(&names, x, t->n_cols + written, &name);
		put_field(b, name.s, x, &type, true, &defined);
	}
	free(cols);
	free(at);
	strbuf_free(&name);
	strbuf_free(&names);
}

/* The row record (named after the table, in the namespace) with its fields. */
static void put_row_schema(strbuf *b, const capture_table *t, const char *prefix,
			   const char *extra, size_t extra_len, bool all_nullable,
			   const avro_change_protect *prot)
{
	STRBUF_ADD_LIT(b, "{\"type\":\"record\",\"name\":\"");
	avro_change_name(b, t->table, strlen(t->table));
	STRBUF_ADD_LIT(b, "\",\"namespace\":\"");
	put_namespace(b, prefix, t->schema);
	STRBUF_ADD_LIT(b, "\",\"fields\":[");
	put_fields(b, t, false, extra, extra_len, all_nullable, prot);
	STRBUF_ADD_LIT(b, "]}");
}

/* (Declared in avro_change_schema.h: the key columns' fields, typed as in the row.) */
void avro_change_key_schema(strbuf *b, const capture_table *t, const char *prefix,
			    const avro_change_protect *prot)
{
	STRBUF_ADD_LIT(b, "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"");
	put_namespace(b, prefix, t->schema);
	strbuf_addc(b, '.');
	avro_change_name(b, t->table, strlen(t->table));
	STRBUF_ADD_LIT(b, "\",\"fields\":[");
	put_fields(b, t, true, NULL, 0, false, prot);
	STRBUF_ADD_LIT(b, "]}");
}

/* (Declared in avro_change_schema.h: the envelope, its rows with the extra names too.) */
void avro_change_schema_with(strbuf *b, const capture_table *t, const char *prefix,
			     const char *extra, size_t extra_len, bool all_nullable,
			     const avro_change_protect *prot)
{
	STRBUF_ADD_LIT(b, "{\"type\":\"record\",\"name\":\"Envelope\",\"namespace\":\"");
	put_namespace(b, prefix, t->schema);
	strbuf_addc(b, '.');
	avro_change_name(b, t->table, strlen(t->table));
	STRBUF_ADD_LIT(b, "\",\"fields\":[{\"name\":\"op\",\"type\":\"string\"},"
			  "{\"name\":\"before\",\"type\":[\"null\",");
	put_row_schema(b, t, prefix, extra, extra_len, all_nullable, prot);
	STRBUF_ADD_LIT(b, "],\"default\":null},{\"name\":\"after\",\"type\":[\"null\",\"");
	put_namespace(b, prefix, t->schema);
	strbuf_addc(b, '.');
	avro_change_name(b, t->table, strlen(t->table));
	STRBUF_ADD_LIT(b, "\"],\"default\":null},{\"name\":\"source\",\"type\":{\"type\":\"record\","
			  "\"name\":\"Source\",\"fields\":[{\"name\":\"lsn\",\"type\":\"string\"},"
			  "{\"name\":\"xid\",\"type\":[\"null\",\"long\"],\"default\":null},"
			  "{\"name\":\"ts\",\"type\":[\"null\",\"string\"],\"default\":null},"
			  "{\"name\":\"schema\",\"type\":\"string\"},{\"name\":\"table\",\"type\":"
			  "\"string\"},{\"name\":\"snapshot\",\"type\":\"boolean\"}]}},"
			  "{\"name\":\"unchanged_toast\",\"type\":[\"null\",{\"type\":\"array\","
			  "\"items\":\"string\"}],\"default\":null}]}");
}

/* (Declared in avro_change_schema.h: the table's own schema, no extra names.) */
void avro_change_schema(strbuf *b, const capture_table *t, const char *prefix)
{
	avro_change_schema_with(b, t, prefix, NULL, 0, false, NULL);
}
