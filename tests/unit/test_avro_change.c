/* test_avro_change.c: captured tables in Avro: the type mapping, the derived schema, an envelope converted and read back by libavro. */
#include "unit.h"

#include <avro.h>
#include <time.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "avro_change.h"
#include "avro_change_type.h"
#include "avro_change_value.h"
#include "config.h"
#include "protect_column.h"

/* The Interval record as a schema defines it at its first use. */
#define INTERVAL_RECORD                                                                            \
	"{\"type\":\"record\",\"name\":\"Interval\",\"namespace\":\"outbox_relay\",\"fields\":[{\"name\":"   \
	"\"months\",\"type\":\"int\"},{\"name\":\"days\",\"type\":\"int\"},{\"name\":\"microseconds\","     \
	"\"type\":\"long\"}]}"

/* A PostgreSQL type name and the Avro type it maps to. */
static const struct {
	const char *pg, *avro;
} MAPPING[] = {
	{"smallint", "\"int\""},
	{"integer", "\"int\""},
	{"bigint", "\"long\""},
	{"oid", "\"long\""},
	{"real", "\"float\""},
	{"double precision", "\"double\""},
	{"numeric(10,2)", "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":10,\"scale\":2}"},
	{"numeric(5,0)", "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":0}"},
	{"numeric", "{\"type\":\"record\",\"name\":\"VariableScaleDecimal\",\"namespace\":\"outbox_relay\",\"fields\":[{\"name\":\"scale\",\"type\":\"int\"},{\"name\":\"value\",\"type\":\"bytes\"}]}"},
	{"numeric(3,-2)", "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":0}"},
	{"numeric(2,5)", "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":5}"},
	{"boolean", "\"boolean\""},
	{"text", "\"string\""},
	{"character varying(10)", "\"string\""},
	{"character(5)", "\"string\""},
	{"bytea", "\"bytes\""},
	{"date", "{\"type\":\"int\",\"logicalType\":\"date\"}"},
	{"timestamp without time zone", "{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}"},
	{"timestamp(3) without time zone", "{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}"},
	{"timestamp with time zone", "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}"},
	{"time without time zone", "{\"type\":\"long\",\"logicalType\":\"time-micros\"}"},
	{"time with time zone", "\"string\""},
	{"uuid", "{\"type\":\"string\",\"logicalType\":\"uuid\"}"},
	{"json", "\"string\""},
	{"jsonb", "\"string\""},
	{"interval", INTERVAL_RECORD},
	/* an interval's fields and precision limit its values, not its text */
	{"interval(3)", INTERVAL_RECORD},
	{"interval day to second(3)", INTERVAL_RECORD},
	{"interval year to month", INTERVAL_RECORD},
	{"interval hour", INTERVAL_RECORD},
	{"interval minute to second(0)[]", "{\"type\":\"array\",\"items\":[\"null\"," INTERVAL_RECORD "]}"},
	{"intervals", "\"string\""},
	{"money", "\"string\""},
	{"int4range", "{\"type\":\"record\",\"name\":\"Int4Range\",\"namespace\":\"outbox_relay\","
		      "\"fields\":[{\"name\":\"lower\",\"type\":[\"null\",\"int\"]},{\"name\":\"upper\","
		      "\"type\":[\"null\",\"int\"]},{\"name\":\"lower_inclusive\",\"type\":\"boolean\"},"
		      "{\"name\":\"upper_inclusive\",\"type\":\"boolean\"},{\"name\":\"empty\","
		      "\"type\":\"boolean\"}]}"},
	{"numrange", "{\"type\":\"record\",\"name\":\"NumRange\",\"namespace\":\"outbox_relay\","
		     "\"fields\":[{\"name\":\"lower\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"VariableScaleDecimal\",\"namespace\":\"outbox_relay\",\"fields\":[{\"name\":\"scale\",\"type\":\"int\"},{\"name\":\"value\",\"type\":\"bytes\"}]}]},{\"name\":\"upper\","
		     "\"type\":[\"null\",\"outbox_relay.VariableScaleDecimal\"]},{\"name\":"
		     "\"lower_inclusive\",\"type\":\"boolean\"},{\"name\":\"upper_inclusive\",\"type\":"
		     "\"boolean\"},{\"name\":\"empty\",\"type\":\"boolean\"}]}"},
	{"int4multirange", "\"string\""},
	{"public.mood", "\"string\""},
	{"integer[]", "{\"type\":\"array\",\"items\":[\"null\",\"int\"]}"},
	{"text[]", "{\"type\":\"array\",\"items\":[\"null\",\"string\"]}"},
	{"numeric(4,1)[]", "{\"type\":\"array\",\"items\":[\"null\",{\"type\":\"bytes\",\"logicalType\":"
			   "\"decimal\",\"precision\":4,\"scale\":1}]}"},
	{"box[]", "\"string\""},
	{NULL, "\"string\""},
};

/* Every mapped type gives the Avro type of docs/schemas.md's table; the rest is a string. */
static void test_postgresql_types_map_to_avro_types(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(MAPPING) / sizeof(MAPPING[0]); i++) {
		avro_change_type t;
		strbuf b = {0};
		avro_change_map(MAPPING[i].pg, &t);
		avro_change_type_json(&b, &t, NULL);
		if (strcmp(strbuf_str(&b), MAPPING[i].avro) != 0)
			fail_msg("%s: got %s, want %s", MAPPING[i].pg ? MAPPING[i].pg : "(null)",
				 strbuf_str(&b), MAPPING[i].avro);
		strbuf_free(&b);
	}
}

/* Names that are not Avro names are made into ones. */
static void test_names_become_valid_avro_names(void **state)
{
	static const char *const in[] = {"Col With Space", "1st", "", "ok_Name9", "q\"uote"};
	static const char *const out[] = {"Col_With_Space", "_1st", "_", "ok_Name9", "q_uote"};
	(void)state;
	for (size_t i = 0; i < 5; i++) {
		strbuf b = {0};
		avro_change_name(&b, in[i], strlen(in[i]));
		assert_string_equal(strbuf_str(&b), out[i]);
		strbuf_free(&b);
	}
}

/* A table public.<table> (name) of n published columns, keyed by the first: one fixture shape. */
static void fill_table(capture_table *t, capture_column *cols, int *keys, const char *table,
		       const char *name, const char *const *names, const char *const *types,
		       const bool *not_null, int n, char replident)
{
	for (int i = 0; i < n; i++) {
		cols[i].name = (char *)names[i];
		cols[i].type_name = (char *)types[i];
		cols[i].not_null = not_null[i];
		cols[i].published = true;
	}
	keys[0] = 0;
	t->schema = "public";
	t->table = (char *)table;
	t->name = (char *)name;
	t->cols = cols;
	t->n_cols = n;
	t->keys = keys;
	t->n_keys = 1;
	t->replident = replident;
	t->catalog_lsn = 1;
}

/* A table: id bigint (key), owner text NOT NULL, note text, level int NOT NULL, "a b" and "a_b". */
typedef struct {
	capture_table t;
	capture_column cols[6];
	int keys[2];
} table_fixture;

static void fixture(table_fixture *f, char replident)
{
	static const char *const names[] = {"id", "owner", "note", "level", "a b", "a_b"};
	static const char *const types[] = {"bigint", "text", "text", "integer", "numeric(6,2)",
					    "timestamp with time zone"};
	static const bool not_null[] = {true, true, false, true, false, false};

	memset(f, 0, sizeof(*f));
	fill_table(&f->t, f->cols, f->keys, "acct", "public.acct", names, types, not_null, 6, replident);
}

/* Key columns are required; other NOT NULL columns only when every record carries them (FULL). */
static void test_schema_nullability_follows_the_replica_identity(void **state)
{
	table_fixture f;
	strbuf b = {0};
	(void)state;

	fixture(&f, 'd');
	avro_change_schema(&b, &f.t, "app.cdc");
	const char *s = strbuf_str(&b);
	assert_non_null(strstr(s, "\"name\":\"Envelope\",\"namespace\":\"app.cdc.public.acct\""));
	assert_non_null(strstr(s, "\"name\":\"acct\",\"namespace\":\"app.cdc.public\""));
	assert_non_null(strstr(s, "{\"name\":\"id\",\"type\":\"long\"}"));
	assert_non_null(strstr(s, "{\"name\":\"owner\",\"type\":[\"null\",\"string\"],\"default\":null}"));
	assert_non_null(strstr(s, "{\"name\":\"a_b\",\"pg_column\":\"a b\""));
	assert_non_null(strstr(s, "{\"name\":\"a_b_6\",\"pg_column\":\"a_b\""));
	avro_schema_t parsed;
	assert_int_equal(avro_schema_from_json_length(s, b.len, &parsed), 0);
	avro_schema_decref(parsed);
	strbuf_reset(&b);
	fixture(&f, 'f');
	avro_change_schema(&b, &f.t, "");
	s = strbuf_str(&b);
	assert_non_null(strstr(s, "\"namespace\":\"public.acct\""));
	assert_non_null(strstr(s, "{\"name\":\"owner\",\"type\":\"string\"}"));
	assert_non_null(strstr(s, "{\"name\":\"level\",\"type\":\"int\"}"));
	strbuf_free(&b);
}

/* Avro bytes read back by libavro with the schema text in b (freed), as libavro's JSON. */
static char *read_back_by(strbuf b, const char *out, size_t len)
{
	avro_schema_t s;
	avro_value_t v;
	char *text = NULL;

	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &s), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	avro_generic_value_new(iface, &v);
	avro_reader_t r = avro_reader_memory(out, (int64_t)len);
	assert_int_equal(avro_value_read(r, &v), 0);
	assert_int_equal(avro_value_to_json(&v, 1, &text), 0);
	avro_reader_free(r);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	strbuf_free(&b);
	return text;
}

/* The Avro bytes read back by libavro with the derived schema, as libavro's JSON. */
static char *read_back(const capture_table *t, const char *out, size_t len)
{
	strbuf b = {0};

	avro_change_schema(&b, t, "app");
	return read_back_by(b, out, len);
}

#define SOURCE ",\"source\":{\"lsn\":\"0/16B3748\",\"xid\":743,\"ts\":\"2026-11-22 10:00:00+00\"," \
	       "\"schema\":\"public\",\"table\":\"acct\",\"snapshot\":false}"

/* An update's envelope: before absent (key-only identity), every type of the row, toast names. */
static void test_an_envelope_converts_and_reads_back(void **state)
{
	static const char env[] = "{\"op\":\"u\",\"before\":null,\"after\":{\"id\":9223372036854775807,"
				  "\"owner\":\"J\\u00f6rg\",\"level\":-1,\"a b\":-12.5,"
				  "\"a_b\":\"1970-01-02 01:00:00+01\"}" SOURCE
				  ",\"unchanged_toast\":[\"note\"]}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out;
	size_t len;
	(void)state;

	fixture(&f, 'd');
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 5, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	char *text = read_back(&f.t, out + 5, len - 5);
	assert_non_null(strstr(text, "\"op\": \"u\""));
	assert_non_null(strstr(text, "\"before\": null"));
	assert_non_null(strstr(text, "\"id\": 9223372036854775807"));
	assert_non_null(strstr(text, "\"note\": null"));
	assert_non_null(strstr(text, "\"a_b_6\": {\"long\": 86400000000}")); /* 1970-01-02 00:00 UTC */
	assert_non_null(strstr(text, "\"unchanged_toast\": {\"array\": [\"note\"]}"));
	assert_non_null(strstr(text, "\"xid\": {\"long\": 743}"));
	free(text);
	avro_change_free(a);
}

/*
 * A change with a column the catalog entry does not know (written before it was dropped, read
 * after): converted by a variant schema with that column as a nullable string, not lost.
 */
static void test_a_column_the_catalog_no_longer_has_is_kept_as_a_string(void **state)
{
	static const char env[] = "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":1,"
				  "\"gone col\":{\"x\":2.50},\"owner\":\"o\"}" SOURCE "}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out, *text = NULL;
	size_t len;
	avro_schema_t s;
	avro_value_t v;
	(void)state;

	fixture(&f, 'd');
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	const char *used = avro_change_last_schema(a);
	assert_non_null(strstr(used, "{\"name\":\"gone_col\",\"pg_column\":\"gone col\",\"type\":"
				     "[\"null\",\"string\"],\"default\":null}]}"));
	assert_int_equal(avro_schema_from_json_length(used, strlen(used), &s), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	avro_generic_value_new(iface, &v);
	avro_reader_t r = avro_reader_memory(out, (int64_t)len);
	assert_int_equal(avro_value_read(r, &v), 0);
	avro_value_to_json(&v, 1, &text);
	assert_non_null(strstr(text, "\"owner\": {\"string\": \"o\"}"));
	assert_non_null(strstr(text, "\"gone_col\": {\"string\": \"{\\\"x\\\":2.50}\"}"));
	free(text);
	avro_reader_free(r);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	avro_change_free(a);
}

/* Replaces the fixture's column names by heap copies (freeing the previous ones, if heap). */
static void renew_names(table_fixture *f, char **heap)
{
	for (int i = 0; i < 6; i++) {
		char *copy = strdup(f->cols[i].name);
		free(heap[i]);
		heap[i] = copy;
		f->cols[i].name = copy;
	}
}

/*
 * A catalog entry read again (capture_refresh frees the column names and reads them anew) that
 * derives the same schema text: the conversion after it reads no freed name (run under ASan).
 */
static void test_a_re_read_entry_with_the_same_schema_frees_nothing_in_use(void **state)
{
	static const char env[] = "{\"op\":\"u\",\"before\":null,\"after\":{\"id\":1,"
				  "\"owner\":\"o\",\"level\":2}" SOURCE ",\"unchanged_toast\":[\"note\"]}";
	table_fixture f;
	char *heap[6] = {0};
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out;
	size_t len;
	(void)state;

	fixture(&f, 'd');
	renew_names(&f, heap);
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 0, &out, &len, &why) < 0)
		fail_msg("first: %s", why);
	renew_names(&f, heap); /* the entry read again: the old names are freed */
	f.t.catalog_lsn = 2;
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 0, &out, &len, &why) < 0)
		fail_msg("after the re-read: %s", why);
	char *text = read_back(&f.t, out, len);
	assert_non_null(strstr(text, "\"owner\": {\"string\": \"o\"}"));
	free(text);
	avro_change_free(a);
	for (int i = 0; i < 6; i++)
		free(heap[i]);
}

/*
 * A column retyped between types whose schema text is the same ("string": jsonb to text, as
 * ALTER COLUMN ... TYPE text): the entry read again keeps the compiled schema but converts by
 * the new type (a text value without JSON quotes), not by the one the schema was compiled for.
 */
static void test_a_re_read_entry_with_the_same_schema_text_converts_by_the_new_types(void **state)
{
	static const char env[] = "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":1,\"owner\":\"o\","
				  "\"note\":\"hello\",\"level\":2}" SOURCE "}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL, *first;
	char *out;
	size_t len;
	(void)state;

	fixture(&f, 'd');
	f.cols[2].type_name = "jsonb";
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 0, &out, &len, &why) < 0)
		fail_msg("as jsonb: %s", why);
	first = avro_change_last_schema(a);
	f.cols[2].type_name = "text"; /* ALTER COLUMN note TYPE text: the entry read again */
	f.t.catalog_lsn = 2;
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 0, &out, &len, &why) < 0)
		fail_msg("as text: %s", why);
	assert_ptr_equal(avro_change_last_schema(a), first); /* the same compiled schema */
	char *text = read_back(&f.t, out, len);
	assert_non_null(strstr(text, "\"note\": {\"string\": \"hello\"}"));
	free(text);
	avro_change_free(a);
}

/* A truncate and a delete with a key-only identity: the NOT NULL non-key columns are null. */
static void test_a_truncate_and_a_key_only_delete_convert(void **state)
{
	static const char trunc[] = "{\"op\":\"t\",\"before\":null,\"after\":null" SOURCE "}";
	static const char del[] = "{\"op\":\"d\",\"before\":{\"id\":7},\"after\":null" SOURCE "}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out, *text;
	size_t len;
	(void)state;

	fixture(&f, 'd');
	if (avro_change_convert(a, &f.t, trunc, sizeof(trunc) - 1, 0, &out, &len, &why) < 0)
		fail_msg("truncate: %s", why);
	text = read_back(&f.t, out, len);
	assert_non_null(strstr(text, "\"op\": \"t\", \"before\": null, \"after\": null"));
	assert_non_null(strstr(text, "\"unchanged_toast\": {\"array\": []}"));
	free(text);
	if (avro_change_convert(a, &f.t, del, sizeof(del) - 1, 0, &out, &len, &why) < 0)
		fail_msg("delete: %s", why);
	text = read_back(&f.t, out, len);
	assert_non_null(strstr(text, "\"id\": 7, \"owner\": null, \"note\": null, \"level\": null"));
	free(text);
	avro_change_free(a);
}

/*
 * A change older than the catalog entry (written before REPLICA IDENTITY FULL or SET NOT NULL):
 * a key-only delete and a null in a NOT NULL column go out by the variant with every non-key
 * field nullable, not dead-lettered; a null key is still refused.
 */
static void test_a_change_older_than_the_entry_lacking_a_required_value_is_published(void **state)
{
	static const char del[] = "{\"op\":\"d\",\"before\":{\"id\":7},\"after\":null" SOURCE "}";
	static const char ins[] = "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":8,\"owner\":null,"
				  "\"note\":null,\"level\":1,\"a b\":null,\"a_b\":null}" SOURCE "}";
	static const char bad[] = "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":null,\"owner\":\"o\","
				  "\"note\":null,\"level\":1,\"a b\":null,\"a_b\":null}" SOURCE "}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out;
	size_t len;
	(void)state;

	fixture(&f, 'f'); /* owner and level are required fields */
	if (avro_change_convert(a, &f.t, del, sizeof(del) - 1, 0, &out, &len, &why) < 0)
		fail_msg("key-only delete: %s", why);
	assert_non_null(strstr(avro_change_last_schema(a), "{\"name\":\"owner\",\"type\":[\"null\",\"string\"]"));
	assert_non_null(strstr(avro_change_last_schema(a), "{\"name\":\"id\",\"type\":\"long\"}"));
	if (avro_change_convert(a, &f.t, ins, sizeof(ins) - 1, 0, &out, &len, &why) < 0)
		fail_msg("null owner: %s", why);
	assert_int_equal(avro_change_convert(a, &f.t, bad, sizeof(bad) - 1, 0, &out, &len, &why), -1);
	assert_non_null(strstr(why, "column \"id\" of public.acct is null"));
	avro_change_free(a);
}

/* What the types cannot hold exactly is refused with the column and the rule, never rounded. */
static void test_values_the_schema_cannot_hold_are_refused_with_the_column(void **state)
{
	static const struct {
		const char *after, *why;
	} cases[] = {
		{"\"a b\":1.005", "column \"a b\" of public.acct: 1.005 has more than 2 fraction digits"},
		{"\"a b\":12345.5", "more than 6 digits (decimal precision 6)"},
		{"\"level\":2147483648", "column \"level\" of public.acct: not an int: 2147483648"},
		{"\"id\":null", "column \"id\" of public.acct is null"},
		{"\"a_b\":\"2026-01-01 10:00:00\"", "not a timestamp with a UTC offset"},
	};
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	(void)state;

	fixture(&f, 'd');
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char env[512], *out;
		size_t len;
		const char *why = NULL;
		snprintf(env, sizeof(env), "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":1,%s}" SOURCE "}",
			 cases[i].after);
		if (strstr(cases[i].after, "\"id\""))
			snprintf(env, sizeof(env), "{\"op\":\"c\",\"before\":null,\"after\":{%s}" SOURCE "}",
				 cases[i].after);
		assert_int_equal(avro_change_convert(a, &f.t, env, strlen(env), 0, &out, &len, &why), -1);
		if (!strstr(why, cases[i].why))
			fail_msg("case %zu: %s", i, why);
	}
	avro_change_free(a);
}

/* PostgreSQL's texts of dates, times, arrays and bytea into Avro values. */
static void test_postgresql_texts_convert_exactly(void **state)
{
	static const struct {
		avro_change_kind kind;
		const char *text;
		int64_t want;
	} cases[] = {
		{ACT_DATE, "1970-01-01", 0},
		{ACT_DATE, "2000-03-01", 11017},
		{ACT_DATE, "0001-01-01 BC", -719528}, /* year 0, a leap year */
		{ACT_DATE, "infinity", INT32_MAX},
		{ACT_LOCAL_TS, "1970-01-01 00:00:01.5", 1500000},
		{ACT_LOCAL_TS, "-infinity", INT64_MIN},
		{ACT_TS, "1970-01-01 05:30:00+05:30", 0},
		{ACT_TS, "1969-12-31 23:59:59.999999-00:00:01", 999999}, /* UTC = local + 1 s */
		{ACT_TIME, "24:00:00", 86400000000},
		{ACT_TIME, "00:00:00.000001", 1},
	};
	avro_schema_t s[] = {avro_schema_int(), avro_schema_long()};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		avro_schema_t sch = cases[i].kind == ACT_DATE ? s[0] : s[1];
		avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
		avro_value_t v;
		char why[200];
		avro_generic_value_new(iface, &v);
		if (avro_change_text_set(&v, cases[i].kind, cases[i].text, strlen(cases[i].text), why,
					 sizeof(why)) != 0)
			fail_msg("%s: %s", cases[i].text, why);
		int64_t got;
		int32_t got32;
		if (cases[i].kind == ACT_DATE) {
			avro_value_get_int(&v, &got32);
			got = got32;
		} else {
			avro_value_get_long(&v, &got);
		}
		if (got != cases[i].want)
			fail_msg("%s: got %lld, want %lld", cases[i].text, (long long)got,
				 (long long)cases[i].want);
		avro_value_decref(&v);
		avro_value_iface_decref(iface);
	}
	avro_schema_decref(s[0]);
	avro_schema_decref(s[1]);
}

/* Dates and timestamps past 64-bit microseconds (PostgreSQL's own range is wider) are refused. */
static void test_timestamps_beyond_64_bit_microseconds_are_refused_not_wrapped(void **state)
{
	static const struct {
		avro_change_kind kind;
		const char *text;
	} cases[] = {
		{ACT_LOCAL_TS, "294276-12-31 23:59:59.999999"},
		{ACT_TS, "294276-12-31 23:59:59.999999+00"},
		{ACT_LOCAL_TS, "4713-01-01 00:00:00 BC"},
		{ACT_TS, "262143-12-31 23:59:59-15:59:59"},
		{ACT_DATE, "9999999-01-01"},
	};
	avro_schema_t s[] = {avro_schema_int(), avro_schema_long()};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		avro_value_iface_t *iface = avro_generic_class_from_schema(cases[i].kind == ACT_DATE ? s[0] : s[1]);
		avro_value_t v;
		char why[200] = "";
		avro_generic_value_new(iface, &v);
		int rc = avro_change_text_set(&v, cases[i].kind, cases[i].text, strlen(cases[i].text),
					      why, sizeof(why));
		if (strstr(cases[i].text, "262143") || strstr(cases[i].text, "4713")) {
			if (rc != 0) /* within the range: converted */
				fail_msg("%s: %s", cases[i].text, why);
		} else if (rc == 0 || !strstr(why, "out of the range")) {
			fail_msg("%s: not refused (%s)", cases[i].text, why);
		}
		avro_value_decref(&v);
		avro_value_iface_decref(iface);
	}
	avro_schema_decref(s[0]);
	avro_schema_decref(s[1]);
}

/* numeric with a negative scale or a scale above its precision: every value it holds converts. */
static void test_numeric_scales_outside_zero_to_precision_convert(void **state)
{
	static const struct {
		const char *pg, *text;
	} cases[] = {
		{"numeric(3,-2)", "12300"},
		{"numeric(3,-2)", "-99900"},
		{"numeric(2,5)", "0.00012"},
		{"numeric(2,5)", "-0.00099"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		avro_change_type t;
		strbuf b = {0}, scratch = {0};
		avro_schema_t sch;
		avro_value_t v;
		char why[200];
		json_span val = {JSON_STRING, false, cases[i].text, strlen(cases[i].text)};
		avro_change_map(cases[i].pg, &t);
		assert_true(t.precision >= t.scale);
		avro_change_type_json(&b, &t, NULL);
		assert_int_equal(avro_schema_from_json_length(b.s, b.len, &sch), 0);
		avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
		avro_generic_value_new(iface, &v);
		if (avro_change_value_set(&v, &t, &val, &scratch, why, sizeof(why)) != 0)
			fail_msg("%s %s: %s", cases[i].pg, cases[i].text, why);
		avro_value_decref(&v);
		avro_value_iface_decref(iface);
		avro_schema_decref(sch);
		strbuf_free(&b);
		strbuf_free(&scratch);
	}
}

/* A bytea array's elements need the \x of hex output: an escape-format element is refused. */
static void test_bytea_array_elements_need_the_hex_prefix(void **state)
{
	avro_change_type t;
	strbuf b = {0}, scratch = {0};
	avro_schema_t sch;
	avro_value_t v;
	char why[200];
	json_span hex = {JSON_STRING, false, "{\"\\\\x00ff\",NULL}", 16};
	json_span esc = {JSON_STRING, false, "{abcd}", 6};
	(void)state;

	avro_change_map("bytea[]", &t);
	avro_change_type_json(&b, &t, NULL);
	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &sch), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
	avro_generic_value_new(iface, &v);
	if (avro_change_value_set(&v, &t, &hex, &scratch, why, sizeof(why)) != 0)
		fail_msg("%s", why);
	avro_value_reset(&v);
	assert_int_equal(avro_change_value_set(&v, &t, &esc, &scratch, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "bytea_output"));
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(sch);
	strbuf_free(&b);
	strbuf_free(&scratch);
}

/*
 * Converts text (a JSON string's contents, or a bare number with number set) of a column of
 * type pg with attndims ndims; 0 with libavro's JSON of the value in *json, or -1 with why.
 */
static int convert_text(const char *pg, int ndims, bool number, const char *text, char **json,
			char *why, size_t whylen)
{
	avro_change_type t;
	strbuf b = {0}, scratch = {0};
	avro_schema_t sch;
	avro_value_t v;
	json_span val = {number ? JSON_NUMBER : JSON_STRING, false, text, strlen(text)};

	avro_change_map_column(pg, ndims, &t);
	avro_change_type_json(&b, &t, NULL);
	if (avro_schema_from_json_length(b.s, b.len, &sch) != 0)
		fail_msg("%s: the schema does not compile: %s (%s)", pg, avro_strerror(), b.s);
	avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
	avro_generic_value_new(iface, &v);
	int rc = avro_change_value_set(&v, &t, &val, &scratch, why, whylen);
	*json = NULL;
	if (rc == 0)
		avro_value_to_json(&v, 1, json);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(sch);
	strbuf_free(&b);
	strbuf_free(&scratch);
	return rc;
}

/* A PostgreSQL type, attndims, a value's text and libavro's JSON of the Avro value (NULL: refused, with this in the reason). */
typedef struct {
	const char *pg;
	int ndims;
	bool number;
	const char *text, *want, *refusal;
} value_case;

/* Runs cases: each converts to its JSON, or is refused with its reason. */
static void run_value_cases(const value_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char why[300] = "", *json;
		int rc = convert_text(cases[i].pg, cases[i].ndims, cases[i].number, cases[i].text, &json,
				      why, sizeof(why));
		if (cases[i].want && (rc != 0 || strcmp(json, cases[i].want) != 0))
			fail_msg("%s %s: got %s (%s), want %s", cases[i].pg, cases[i].text,
				 json ? json : "refused", why, cases[i].want);
		if (!cases[i].want && (rc == 0 || !strstr(why, cases[i].refusal)))
			fail_msg("%s %s: not refused with \"%s\": %s %s", cases[i].pg, cases[i].text,
				 cases[i].refusal, json ? json : "", why);
		free(json);
	}
}

/* numeric without typmod: the exact value at the scale PostgreSQL prints; NaN has none. */
static void test_numeric_without_typmod_is_an_exact_variable_scale_decimal(void **state)
{
	static const struct {
		const char *text;
		int scale;
		size_t n;
		const char *bytes; /* the unscaled value, big-endian two's complement */
	} exact[] = {
		{"1.50", 2, 2, "\x00\x96"},
		{"-1", 0, 1, "\xff"},
		{"0", 0, 1, "\x00"},
		{"-0.000000000000000000001", 21, 1, "\xff"},
		{"12345678901234567890.123456789", 9, 12, "\x27\xe4\x1b\x32\x46\xbe\xc9\xb1\x6e\x39\x81\x15"},
		{"-128", 0, 2, "\xff\x80"},
	};
	static const value_case refused[] = {
		{"numeric", 0, false, "NaN", NULL, "VariableScaleDecimal has no value for NaN"},
		{"numeric", 0, false, "1e5", NULL, "only numbers"},
		{"numeric", 0, false, "1.2.3", NULL, "only numbers"},
		{"numeric", 0, false, "-", NULL, "not a decimal"},
	};
	avro_change_type t;
	strbuf b = {0}, scratch = {0};
	avro_schema_t sch;
	(void)state;

	avro_change_map("numeric", &t);
	avro_change_type_json(&b, &t, NULL);
	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &sch), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		avro_value_t v, f;
		char why[200];
		int32_t scale;
		const void *got;
		size_t n;
		json_span val = {JSON_NUMBER, false, exact[i].text, strlen(exact[i].text)};
		avro_generic_value_new(iface, &v);
		if (avro_change_value_set(&v, &t, &val, &scratch, why, sizeof(why)) != 0)
			fail_msg("%s: %s", exact[i].text, why);
		avro_value_get_by_index(&v, 0, &f, NULL);
		avro_value_get_int(&f, &scale);
		avro_value_get_by_index(&v, 1, &f, NULL);
		avro_value_get_bytes(&f, &got, &n);
		if (scale != exact[i].scale || n != exact[i].n || memcmp(got, exact[i].bytes, n) != 0)
			fail_msg("%s: scale %d, %zu bytes", exact[i].text, scale, n);
		avro_value_decref(&v);
	}
	avro_value_iface_decref(iface);
	avro_schema_decref(sch);
	strbuf_free(&b);
	strbuf_free(&scratch);
	run_value_cases(refused, sizeof(refused) / sizeof(refused[0]));
}

/* 2^k in decimal digits (by doubling), with delta (-1, 0) added to its last digit. */
static char *power_of_two(int k, int delta)
{
	size_t cap = (size_t)k / 3 + 2, n = 1;
	char *d = calloc(cap + 1, 1); /* least significant digit first while doubling */
	d[0] = 1;
	for (int i = 0; i < k; i++) {
		int carry = 0;
		for (size_t j = 0; j < n; j++) {
			int x = d[j] * 2 + carry;
			d[j] = (char)(x % 10);
			carry = x / 10;
		}
		if (carry)
			d[n++] = (char)carry;
	}
	d[0] = (char)(d[0] + delta); /* 2^k ends in 2, 4, 6 or 8 */
	for (size_t j = 0; j < n / 2; j++) {
		char c = d[j];
		d[j] = d[n - 1 - j];
		d[n - 1 - j] = c;
	}
	for (size_t j = 0; j < n; j++)
		d[j] = (char)(d[j] + '0');
	return d;
}

/* numeric text into a VariableScaleDecimal; its scale and a copy of its bytes (*n of them). */
static unsigned char *vardecimal_bytes(const char *text, int32_t *scale, size_t *n)
{
	avro_change_type t;
	strbuf b = {0}, scratch = {0};
	avro_schema_t sch;
	avro_value_t v, f;
	char why[200];
	const void *got;
	json_span val = {JSON_NUMBER, false, text, strlen(text)};

	avro_change_map("numeric", &t);
	avro_change_type_json(&b, &t, NULL);
	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &sch), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(sch);
	avro_generic_value_new(iface, &v);
	if (avro_change_value_set(&v, &t, &val, &scratch, why, sizeof(why)) != 0)
		fail_msg("%.40s: %s", text, why);
	avro_value_get_by_index(&v, 0, &f, NULL);
	avro_value_get_int(&f, scale);
	avro_value_get_by_index(&v, 1, &f, NULL);
	avro_value_get_bytes(&f, &got, n);
	unsigned char *copy = malloc(*n);
	memcpy(copy, got, *n);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(sch);
	strbuf_free(&b);
	strbuf_free(&scratch);
	return copy;
}

/*
 * Numerics of thousands of digits convert exactly (2^4000 and 2^4000 - 1, both signs: their
 * two's complement is known byte for byte), and PostgreSQL's largest numeric (131072 digits
 * before the point, 16383 after) within a second of CPU (ASan included; not timed under
 * valgrind), not the seconds a digit-by-byte conversion took, stalling the stream.
 */
static void test_huge_numerics_convert_exactly_and_within_a_second(void **state)
{
	static const struct {
		int delta;
		bool neg;
		unsigned char first, fill, last; /* 501 bytes: first, 499 x fill, last */
		size_t n;
	} cases[] = {
		{0, false, 0x01, 0x00, 0x00, 501}, /* 0x01 then 500 zero bytes */
		{0, true, 0xff, 0x00, 0x00, 501},
		{-1, false, 0x00, 0xff, 0xff, 501}, /* 500 x 0xff needs a sign byte */
		{-1, true, 0xff, 0x00, 0x01, 501},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *digits = power_of_two(4000, cases[i].delta);
		char *text = malloc(strlen(digits) + 2);
		sprintf(text, "%s%s", cases[i].neg ? "-" : "", digits);
		int32_t scale;
		size_t n;
		unsigned char *got = vardecimal_bytes(text, &scale, &n);
		assert_int_equal(scale, 0);
		assert_int_equal(n, cases[i].n);
		assert_int_equal(got[0], cases[i].first);
		for (size_t k = 1; k + 1 < n; k++)
			if (got[k] != cases[i].fill)
				fail_msg("case %zu: byte %zu is %02x", i, k, got[k]);
		assert_int_equal(got[n - 1], cases[i].last);
		free(got);
		free(text);
		free(digits);
	}

	char *max = malloc(131072 + 1 + 16383 + 1);
	memset(max, '9', 131072 + 1 + 16383);
	max[131072] = '.';
	max[131072 + 1 + 16383] = '\0';
	clock_t t0 = clock();
	int32_t scale;
	size_t n;
	unsigned char *got = vardecimal_bytes(max, &scale, &n);
	double cpu = (double)(clock() - t0) / CLOCKS_PER_SEC;
	assert_int_equal(scale, 16383);
	assert_true(n > 61000 && n < 61300); /* 147455 digits: about 61,220 bytes */
	if (cpu > 1.0 && !RUNNING_ON_VALGRIND)
		fail_msg("the largest numeric took %.2f s of CPU", cpu);
	free(got);
	free(max);
}

/* NaN and the infinities in a numeric[] are null, as wal2json prints the column's own. */
static void test_numeric_array_elements_that_are_not_numbers_are_null(void **state)
{
	static const value_case cases[] = {
		{"numeric[]", 0, false, "{1.5,NaN,NULL,-Infinity,Infinity}",
		 "[{\"VariableScaleDecimal\": {\"scale\": 1, \"value\": \"\\u000F\"}}, null, null, null, null]", NULL},
		{"numeric[]", 0, false, "{1.5,nan}", NULL, "only numbers"},
	};
	(void)state;
	run_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Arrays nest to the column's attndims; a value of other dimensions is refused, never flattened. */
static void test_arrays_nest_to_their_declared_dimensions(void **state)
{
	static const value_case cases[] = {
		{"text[]", 0, false, "{a,\"b c\",NULL,\"NULL\",\"q\\\"\\\\\",\"\"}",
		 "[{\"string\": \"a\"}, {\"string\": \"b c\"}, null, {\"string\": \"NULL\"}, "
		 "{\"string\": \"q\\\"\\\\\"}, {\"string\": \"\"}]", NULL},
		{"integer[]", 2, false, "{{1,2},{NULL,4}}",
		 "[[{\"int\": 1}, {\"int\": 2}], [null, {\"int\": 4}]]", NULL},
		{"integer[]", 2, false, "{}", "[]", NULL},
		{"text[]", 3, false, "{{{a,\"{b}\"}},{{NULL,\"c,d\"}}}",
		 "[[[{\"string\": \"a\"}, {\"string\": \"{b}\"}]], [[null, {\"string\": \"c,d\"}]]]", NULL},
		{"integer[]", 1, false, "{{1,2},{3,4}}", NULL, "more dimensions than the column's 1"},
		{"integer[]", 2, false, "{1,2}", NULL, "fewer dimensions than the column's 2"},
		{"integer[]", 2, false, "{{1,2},3}", NULL, "fewer dimensions"},
		{"integer[]", 0, false, "[0:1]={1,2}", NULL, "bounds other than 1"},
		{"integer[]", 0, false, "{1,2", NULL, "malformed"},
		{"integer[]", 0, false, "{1,2}}", NULL, "malformed"},
		{"text[]", 0, false, "{a b\"}", NULL, "malformed"},
		{"text[]", 0, false, "{,}", NULL, "malformed"},
		{"text[]", 0, false, "{\"a}", NULL, "malformed"},
	};
	(void)state;
	run_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* interval: PostgreSQL's months, days and microseconds, each with its sign. */
static void test_intervals_keep_months_days_and_microseconds_apart(void **state)
{
	static const value_case cases[] = {
		{"interval", 0, false, "1 year 2 mons 3 days 04:05:06.789",
		 "{\"months\": 14, \"days\": 3, \"microseconds\": 14706789000}", NULL},
		{"interval", 0, false, "-00:00:01", "{\"months\": 0, \"days\": 0, \"microseconds\": -1000000}", NULL},
		{"interval", 0, false, "00:00:00", "{\"months\": 0, \"days\": 0, \"microseconds\": 0}", NULL},
		{"interval", 0, false, "-1 years -2 mons +3 days -04:05:06.000001",
		 "{\"months\": -14, \"days\": 3, \"microseconds\": -14706000001}", NULL},
		{"interval", 0, false, "1 day", "{\"months\": 0, \"days\": 1, \"microseconds\": 0}", NULL},
		{"interval", 0, false, "-178956970 years -7 mons -2147483648 days -2562047788:00:54.775808",
		 "{\"months\": -2147483647, \"days\": -2147483648, \"microseconds\": -9223372036854775808}", NULL},
		{"interval", 0, false, "2562047788:00:54.775808", NULL, "not an interval"},
		{"interval", 0, false, "P1Y2M", NULL, "IntervalStyle postgres"},
		{"interval", 0, false, "1 fortnight", NULL, "not an interval"},
		{"interval", 0, false, "1 day ", NULL, "not an interval"},
		{"interval", 0, false, "", NULL, "not an interval"},
		{"interval", 0, false, "178956971 years", NULL, "not an interval"},
		{"interval[]", 0, false, "{\"1 day\",NULL}",
		 "[{\"Interval\": {\"months\": 0, \"days\": 1, \"microseconds\": 0}}, null]", NULL},
	};
	(void)state;
	run_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Ranges: bounds by their own type (null: unbounded), the inclusive flags, empty. */
static void test_ranges_convert_bounds_flags_and_empty(void **state)
{
	static const value_case cases[] = {
		{"int4range", 0, false, "[1,5)",
		 "{\"lower\": {\"int\": 1}, \"upper\": {\"int\": 5}, \"lower_inclusive\": true, "
		 "\"upper_inclusive\": false, \"empty\": false}", NULL},
		{"int8range", 0, false, "(,5)",
		 "{\"lower\": null, \"upper\": {\"long\": 5}, \"lower_inclusive\": false, "
		 "\"upper_inclusive\": false, \"empty\": false}", NULL},
		{"daterange", 0, false, "empty",
		 "{\"lower\": null, \"upper\": null, \"lower_inclusive\": false, "
		 "\"upper_inclusive\": false, \"empty\": true}", NULL},
		{"tstzrange", 0, false, "[\"1970-01-01 00:00:01+00\",infinity]",
		 "{\"lower\": {\"long\": 1000000}, \"upper\": {\"long\": 9223372036854775807}, "
		 "\"lower_inclusive\": true, \"upper_inclusive\": true, \"empty\": false}", NULL},
		{"numrange", 0, false, "[1.5,)",
		 "{\"lower\": {\"VariableScaleDecimal\": {\"scale\": 1, \"value\": \"\\u000F\"}}, "
		 "\"upper\": null, \"lower_inclusive\": true, \"upper_inclusive\": false, \"empty\": false}", NULL},
		{"tsrange", 0, false, "[\"2000-01-01 00:00:00\",\"2000-01-02 00:00:00\")",
		 "{\"lower\": {\"long\": 946684800000000}, \"upper\": {\"long\": 946771200000000}, "
		 "\"lower_inclusive\": true, \"upper_inclusive\": false, \"empty\": false}", NULL},
		{"int4range[]", 0, false, "{\"[1,2)\",empty,NULL}",
		 "[{\"Int4Range\": {\"lower\": {\"int\": 1}, \"upper\": {\"int\": 2}, "
		 "\"lower_inclusive\": true, \"upper_inclusive\": false, \"empty\": false}}, "
		 "{\"Int4Range\": {\"lower\": null, \"upper\": null, \"lower_inclusive\": false, "
		 "\"upper_inclusive\": false, \"empty\": true}}, null]", NULL},
		{"numrange", 0, false, "[1,NaN]", NULL, "no value for NaN"},
		{"int4range", 0, false, "[1,5", NULL, "not a range"},
		{"int4range", 0, false, "[1,5)x", NULL, "not a range"},
		{"int4range", 0, false, "1,5", NULL, "not a range"},
		{"int4range", 0, false, "[a,5)", NULL, "not an int"},
	};
	(void)state;
	run_value_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* A table's schema defines each named record once and names it after (libavro compiles it). */
static void test_named_records_are_defined_once_per_schema(void **state)
{
	static const char *const types[] = {"numeric", "numrange", "numeric[]", "interval", "interval",
					    "int4range", "int4range[]"};
	strbuf b = {0};
	uint64_t defined = 0;
	avro_schema_t sch;
	(void)state;

	STRBUF_ADD_LIT(&b, "{\"type\":\"record\",\"name\":\"r\",\"fields\":[");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		avro_change_type t;
		avro_change_map(types[i], &t);
		strbuf_addf(&b, "%s{\"name\":\"f%zu\",\"type\":", i ? "," : "", i);
		avro_change_type_json(&b, &t, &defined);
		strbuf_addc(&b, '}');
	}
	STRBUF_ADD_LIT(&b, "]}");
	if (avro_schema_from_json_length(b.s, b.len, &sch) != 0)
		fail_msg("%s: %s", avro_strerror(), b.s);
	avro_schema_decref(sch);
	const char *first = strstr(b.s, "\"name\":\"VariableScaleDecimal\"");
	assert_non_null(first);
	assert_null(strstr(first + 1, "\"name\":\"VariableScaleDecimal\""));
	strbuf_free(&b);
}

/* The key record's text by the derived key schema (libavro's JSON), from the wire's Avro. */
static char *read_back_key(const capture_table *t, const char *out, size_t len)
{
	strbuf b = {0};

	avro_change_key_schema(&b, t, "app", NULL);
	return read_back_by(b, out, len);
}

/*
 * The key record: named <prefix>.<schema>.<table>.Key (Debezium's name), one field per key
 * column in key order, typed as in the row, nullable only where the column is.
 */
static void test_the_key_schema_is_a_record_of_the_key_columns_in_key_order(void **state)
{
	table_fixture f;
	strbuf b = {0};
	avro_schema_t parsed;
	(void)state;

	fixture(&f, 'f');
	f.keys[0] = 3; /* level integer NOT NULL, then id bigint: a configured key_columns order */
	f.keys[1] = 0;
	f.t.n_keys = 2;
	avro_change_key_schema(&b, &f.t, "app.cdc", NULL);
	assert_string_equal(strbuf_str(&b),
			    "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"app.cdc.public.acct\","
			    "\"fields\":[{\"name\":\"level\",\"type\":\"int\"},"
			    "{\"name\":\"id\",\"type\":\"long\"}]}");
	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &parsed), 0);
	avro_schema_decref(parsed);
	strbuf_reset(&b);
	f.keys[0] = 4; /* "a b" numeric(6,2), nullable: its field is too, its name sanitized */
	avro_change_key_schema(&b, &f.t, "", NULL);
	assert_string_equal(strbuf_str(&b),
			    "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"public.acct\","
			    "\"fields\":[{\"name\":\"a_b\",\"pg_column\":\"a b\",\"type\":[\"null\","
			    "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":6,\"scale\":2}],"
			    "\"default\":null},{\"name\":\"id\",\"type\":\"long\"}]}");
	strbuf_free(&b);
}

/*
 * A key field is named as its column's field in the row, a clash's suffix included ("a_b" is
 * the row's a_b_6: "a b" came first as a_b); a key column the row leaves out gets a name no
 * row field has, so a consumer matching key fields to row fields finds the same column.
 */
static void test_key_fields_are_named_as_the_same_columns_in_the_row(void **state)
{
	table_fixture f;
	strbuf row = {0}, key = {0};
	(void)state;

	fixture(&f, 'f');
	f.keys[0] = 5; /* "a_b" */
	avro_change_schema(&row, &f.t, "app");
	avro_change_key_schema(&key, &f.t, "app", NULL);
	assert_non_null(strstr(strbuf_str(&row), "{\"name\":\"a_b\",\"pg_column\":\"a b\""));
	assert_non_null(strstr(strbuf_str(&row), "{\"name\":\"a_b_6\",\"pg_column\":\"a_b\""));
	assert_string_equal(strbuf_str(&key),
			    "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"app.public.acct\","
			    "\"fields\":[{\"name\":\"a_b_6\",\"pg_column\":\"a_b\",\"type\":[\"null\","
			    "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}],\"default\":null}]}");
	strbuf_reset(&row);
	strbuf_reset(&key);
	f.keys[0] = 4; /* "a b", not published: the row's a_b is "a_b" now */
	f.cols[4].published = false;
	avro_change_schema(&row, &f.t, "app");
	avro_change_key_schema(&key, &f.t, "app", NULL);
	assert_non_null(strstr(strbuf_str(&row), "{\"name\":\"a_b\",\"type\""));
	assert_null(strstr(strbuf_str(&row), "a_b_"));
	assert_non_null(strstr(strbuf_str(&key), "\"fields\":[{\"name\":\"a_b_5\",\"pg_column\":\"a b\""));
	strbuf_free(&row);
	strbuf_free(&key);
}

/* A key as capture builds it converts by the key record and reads back; a bad one is refused. */
static void test_a_key_converts_and_reads_back_and_a_bad_one_is_refused(void **state)
{
	static const char key[] = "{\"id\":9223372036854775807,\"a b\":-12.5}";
	static const char null_part[] = "{\"id\":1,\"a b\":null}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out, *text;
	size_t len;
	(void)state;

	fixture(&f, 'f');
	f.keys[1] = 4;
	f.t.n_keys = 2;
	if (avro_change_convert_key(a, &f.t, key, sizeof(key) - 1, 5, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	assert_non_null(strstr(avro_change_last_schema(a), "\"name\":\"Key\""));
	text = read_back_key(&f.t, out + 5, len - 5);
	assert_non_null(strstr(text, "\"id\": 9223372036854775807"));
	assert_non_null(strstr(text, "\"a_b\": {\"bytes\": \"\\u00FB\\u001E\"}")); /* -1250 */
	free(text);
	if (avro_change_convert_key(a, &f.t, null_part, sizeof(null_part) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	text = read_back_key(&f.t, out, len);
	assert_non_null(strstr(text, "\"a_b\": null"));
	free(text);
	static const char *const bad[] = {"{\"id\":1}", "{\"id\":1,\"a b\":1,\"x\":2}", "[1]",
					  "{\"id\":\"one\",\"a b\":1}", "{\"id\":null,\"a b\":1}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (avro_change_convert_key(a, &f.t, bad[i], strlen(bad[i]), 0, &out, &len, &why) == 0)
			fail_msg("%s: converted", bad[i]);
		assert_non_null(why); /* it names the key, not the row */
		if (strncmp(why, "the record key (key_format = \"avro\"): ", 38) != 0 &&
		    strncmp(why, "the key of public.acct ", 23) != 0)
			fail_msg("%s: %s", bad[i], why);
	}
	avro_change_free(a);
}

/* A catalog entry read again with another key column type derives the key schema again. */
static void test_a_key_column_retyped_derives_the_key_schema_again(void **state)
{
	static const char key[] = "{\"id\":7}";
	table_fixture f;
	avro_change *a = avro_change_new("app", NULL);
	const char *why = NULL;
	char *out;
	size_t len;
	(void)state;

	fixture(&f, 'd');
	if (avro_change_convert_key(a, &f.t, key, sizeof(key) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	assert_non_null(strstr(avro_change_last_schema(a), "{\"name\":\"id\",\"type\":\"long\"}"));
	f.cols[0].type_name = "integer"; /* ALTER COLUMN id TYPE integer, the entry read again */
	f.t.catalog_lsn = 2;
	if (avro_change_convert_key(a, &f.t, key, sizeof(key) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	assert_non_null(strstr(avro_change_last_schema(a), "{\"name\":\"id\",\"type\":\"int\"}"));
	assert_int_equal(len, 1); /* zigzag 7 */
	avro_change_free(a);
}

/* ---- protected columns (docs/privacy.md): strings, or no field when dropped ---- */

/* Adds a protect rule: columns and tables comma-separated, as config_set_list reads them. */
static void add_rule(relay_config *cfg, const char *columns, const char *tables, const char *action)
{
	protect_config *p = config_add_protect(cfg);

	config_set_list(&p->columns, &p->n_columns, columns);
	config_set_list(&p->tables, &p->n_tables, tables);
	config_set_string(&p->action, action);
}

/* The rule for a column: the first rule (in file order) whose tables and columns take it. */
static void test_the_first_rule_whose_tables_take_a_column_gives_its_action(void **state)
{
	relay_config *cfg = config_defaults(0, 1);
	(void)state;

	add_rule(cfg, "dob", "public.*", "drop");
	add_rule(cfg, "dob,doc", "*.*", "hash");
	add_rule(cfg, "doc,score", "public.p[ae]*", "encrypt");
	assert_int_equal(protect_column_action(cfg, "public.people", "dob"), PROTECT_DROP);
	assert_int_equal(protect_column_action(cfg, "kyc.people", "dob"), PROTECT_HASH);
	assert_int_equal(protect_column_action(cfg, "public.people", "doc"), PROTECT_HASH);
	assert_int_equal(protect_column_action(cfg, "public.people", "score"), PROTECT_ENCRYPT);
	assert_int_equal(protect_column_action(cfg, "public.other", "score"), -1);
	assert_int_equal(protect_column_action(cfg, "public.people", "Dob"), -1); /* names are exact */
	assert_int_equal(protect_column_action(NULL, "public.people", "dob"), -1);
	config_free(cfg);
}

/*
 * An identity table: id bigint (key), dob date NOT NULL, doc bigint, score numeric, age int NOT
 * NULL, note jsonb, tags int[]; REPLICA IDENTITY FULL, so NOT NULL fields are required.
 */
typedef struct {
	capture_table t;
	capture_column cols[7];
	int keys[1];
} identity_fixture;

static void identity(identity_fixture *f)
{
	static const char *const names[] = {"id", "dob", "doc", "score", "age", "note", "tags"};
	static const char *const types[] = {"bigint", "date", "bigint", "numeric", "integer", "jsonb",
					    "integer[]"};
	static const bool not_null[] = {true, true, false, false, true, false, false};

	memset(f, 0, sizeof(*f));
	fill_table(&f->t, f->cols, f->keys, "people", "public.people", names, types, not_null, 7, 'f');
}

/* The rules the identity tests use: dob hashed, doc masked, score encrypted, age dropped, note and tags hashed. */
static relay_config *identity_rules(void)
{
	relay_config *cfg = config_defaults(0, 1);

	add_rule(cfg, "dob,note,tags", "public.people", "hash");
	add_rule(cfg, "doc", "*.*", "mask");
	add_rule(cfg, "score", "public.*", "encrypt");
	add_rule(cfg, "age", "public.people", "drop");
	return cfg;
}

/*
 * A protected column's field is a string, nullable as the column's own would be (dob NOT NULL
 * with REPLICA IDENTITY FULL: a plain string), an array's too (its whole text is protected); a
 * dropped column has no field (age, NOT NULL, no longer a required field left empty).
 */
static void test_protected_columns_are_strings_and_a_dropped_one_has_no_field(void **state)
{
	static const avro_change_protect prot[] = {AVRO_CHANGE_CLEAR, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_PROTECTED, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_DROPPED, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_PROTECTED};
	identity_fixture f;
	strbuf b = {0};
	avro_schema_t parsed;
	(void)state;

	identity(&f);
	avro_change_schema_with(&b, &f.t, "app", NULL, 0, false, prot);
	assert_non_null(strstr(strbuf_str(&b),
			       "\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
			       "{\"name\":\"dob\",\"type\":\"string\"},"
			       "{\"name\":\"doc\",\"type\":[\"null\",\"string\"],\"default\":null},"
			       "{\"name\":\"score\",\"type\":[\"null\",\"string\"],\"default\":null},"
			       "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
			       "{\"name\":\"tags\",\"type\":[\"null\",\"string\"],\"default\":null}]}"));
	assert_null(strstr(strbuf_str(&b), "\"age\""));
	assert_null(strstr(strbuf_str(&b), "VariableScaleDecimal")); /* score was its only user */
	assert_int_equal(avro_schema_from_json_length(b.s, b.len, &parsed), 0);
	avro_schema_decref(parsed);
	strbuf_reset(&b);
	avro_change_schema_with(&b, &f.t, "app", NULL, 0, true, prot); /* the relaxed variant */
	assert_non_null(strstr(strbuf_str(&b), "{\"name\":\"dob\",\"type\":[\"null\",\"string\"],"));
	assert_null(strstr(strbuf_str(&b), "\"age\""));
	strbuf_reset(&b);
	avro_change_schema_with(&b, &f.t, "app", NULL, 0, false, NULL); /* no rules: as before */
	assert_non_null(strstr(strbuf_str(&b), "{\"name\":\"dob\",\"type\":{\"type\":\"int\","
					       "\"logicalType\":\"date\"}}"));
	assert_non_null(strstr(strbuf_str(&b), "{\"name\":\"age\",\"type\":\"int\"}"));
	strbuf_free(&b);
}

/*
 * With the rules, an envelope whose before and after hold the protected texts (what the
 * transform stage made: the dropped age is not there) converts by the derived schema, the texts
 * as strings (a hashed jsonb's text without JSON quotes), and reads back; that schema is the one
 * avro_change_schema_with derives from the rules' columns.
 */
static void test_a_protected_change_converts_by_the_schema_the_rules_derive(void **state)
{
	static const char env[] =
		"{\"op\":\"u\",\"before\":{\"id\":1,\"dob\":\"0a1b\",\"doc\":\"****\",\"score\":null,"
		"\"note\":\"77ee\",\"tags\":\"5c5c\"},\"after\":{\"id\":1,\"dob\":\"0a1b\","
		"\"doc\":\"*******890\",\"score\":\"enc:v1:k1:QUJD\",\"note\":null,\"tags\":\"6d6d\"}"
		",\"source\":{\"lsn\":\"0/16B3748\",\"xid\":743,\"ts\":null,\"schema\":\"public\","
		"\"table\":\"people\",\"snapshot\":false}}";
	static const avro_change_protect prot[] = {AVRO_CHANGE_CLEAR, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_PROTECTED, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_DROPPED, AVRO_CHANGE_PROTECTED,
						   AVRO_CHANGE_PROTECTED};
	relay_config *cfg = identity_rules();
	avro_change *a = avro_change_new("app", cfg);
	identity_fixture f;
	strbuf want = {0};
	const char *why = NULL;
	char *out, *text;
	size_t len;
	(void)state;

	identity(&f);
	if (avro_change_convert(a, &f.t, env, sizeof(env) - 1, 5, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	avro_change_schema_with(&want, &f.t, "app", NULL, 0, false, prot);
	assert_string_equal(avro_change_last_schema(a), strbuf_str(&want));
	text = read_back_by(want, out + 5, len - 5);
	assert_non_null(strstr(text, "\"before\": {\"people\": {\"id\": 1, \"dob\": \"0a1b\", "
				     "\"doc\": {\"string\": \"****\"}, \"score\": null, \"note\": "
				     "{\"string\": \"77ee\"}, \"tags\": {\"string\": \"5c5c\"}}}"));
	assert_non_null(strstr(text, "\"doc\": {\"string\": \"*******890\"}, \"score\": {\"string\": "
				     "\"enc:v1:k1:QUJD\"}, \"note\": null, \"tags\": {\"string\": \"6d6d\"}"));
	free(text);
	avro_change_free(a);
	config_free(cfg);
}

/*
 * In the key record a key column any rule takes is a string (always hashed there), a dropped
 * one too; the row leaves the dropped key column out, and the key field keeps the row's naming
 * (named after the row's fields, as a key column the row leaves out is).
 */
static void test_a_protected_key_column_is_a_string_in_the_key_record_whatever_the_action(void **state)
{
	static const char key[] = "{\"id\":\"9f86d081884c7d65\"}";
	relay_config *cfg = config_defaults(0, 1);
	avro_change *a = avro_change_new("app", cfg);
	identity_fixture f;
	const char *why = NULL;
	char *out, *text;
	size_t len;
	(void)state;

	add_rule(cfg, "id", "public.people", "drop");
	add_rule(cfg, "dob", "public.people", "hash");
	identity(&f);
	f.t.n_cols = 2; /* id and dob: a snapshot row of it converts without id */
	if (avro_change_convert_key(a, &f.t, key, sizeof(key) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	assert_string_equal(avro_change_last_schema(a),
			    "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"app.public.people\","
			    "\"fields\":[{\"name\":\"id\",\"type\":\"string\"}]}");
	strbuf b = {0};
	strbuf_add(&b, avro_change_last_schema(a));
	text = read_back_by(b, out, len);
	assert_non_null(strstr(text, "\"id\": \"9f86d081884c7d65\""));
	free(text);
	static const char row[] = "{\"op\":\"r\",\"before\":null,\"after\":{\"dob\":\"0a1b\"}"
				  ",\"source\":{\"lsn\":\"0/1\",\"xid\":7,\"ts\":null,\"schema\":\"public\","
				  "\"table\":\"people\",\"snapshot\":true}}";
	if (avro_change_convert(a, &f.t, row, sizeof(row) - 1, 0, &out, &len, &why) < 0)
		fail_msg("convert: %s", why);
	assert_non_null(strstr(avro_change_last_schema(a),
			       "\"fields\":[{\"name\":\"dob\",\"type\":\"string\"}]}"));
	avro_change_free(a);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postgresql_types_map_to_avro_types),
		cmocka_unit_test(test_names_become_valid_avro_names),
		cmocka_unit_test(test_schema_nullability_follows_the_replica_identity),
		cmocka_unit_test(test_an_envelope_converts_and_reads_back),
		cmocka_unit_test(test_a_truncate_and_a_key_only_delete_convert),
		cmocka_unit_test(test_a_re_read_entry_with_the_same_schema_frees_nothing_in_use),
		cmocka_unit_test(test_a_re_read_entry_with_the_same_schema_text_converts_by_the_new_types),
		cmocka_unit_test(test_a_column_the_catalog_no_longer_has_is_kept_as_a_string),
		cmocka_unit_test(test_values_the_schema_cannot_hold_are_refused_with_the_column),
		cmocka_unit_test(test_postgresql_texts_convert_exactly),
		cmocka_unit_test(test_numeric_without_typmod_is_an_exact_variable_scale_decimal),
		cmocka_unit_test(test_huge_numerics_convert_exactly_and_within_a_second),
		cmocka_unit_test(test_numeric_array_elements_that_are_not_numbers_are_null),
		cmocka_unit_test(test_arrays_nest_to_their_declared_dimensions),
		cmocka_unit_test(test_intervals_keep_months_days_and_microseconds_apart),
		cmocka_unit_test(test_ranges_convert_bounds_flags_and_empty),
		cmocka_unit_test(test_named_records_are_defined_once_per_schema),
		cmocka_unit_test(test_bytea_array_elements_need_the_hex_prefix),
		cmocka_unit_test(test_a_change_older_than_the_entry_lacking_a_required_value_is_published),
		cmocka_unit_test(test_numeric_scales_outside_zero_to_precision_convert),
		cmocka_unit_test(test_timestamps_beyond_64_bit_microseconds_are_refused_not_wrapped),
		cmocka_unit_test(test_the_key_schema_is_a_record_of_the_key_columns_in_key_order),
		cmocka_unit_test(test_key_fields_are_named_as_the_same_columns_in_the_row),
		cmocka_unit_test(test_a_key_converts_and_reads_back_and_a_bad_one_is_refused),
		cmocka_unit_test(test_a_key_column_retyped_derives_the_key_schema_again),
		cmocka_unit_test(test_the_first_rule_whose_tables_take_a_column_gives_its_action),
		cmocka_unit_test(test_protected_columns_are_strings_and_a_dropped_one_has_no_field),
		cmocka_unit_test(test_a_protected_change_converts_by_the_schema_the_rules_derive),
		cmocka_unit_test(test_a_protected_key_column_is_a_string_in_the_key_record_whatever_the_action),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
