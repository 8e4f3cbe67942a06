/* fuzz_avro_change.c: libFuzzer target for relay/avro_change.c: any change envelope (and record key) against a table of every mapped type, with and without protect rules, read back by libavro. */
#include <avro.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change.h"
#include "config.h"
#include "fuzz.h"

/* A table with a column of every mapped type (and arrays); the key is id, or id and u. */
static const char *const names[] = {"id", "i", "n", "dec", "f", "d", "b", "by", "day", "ts", "tz",
				    "t", "u", "j", "s", "ia", "da", "ta", "iv", "m", "ir", "nr",
				    "tr", "i2", "t3", "na", "ra", "mo"};
static const char *const types[] = {
	"bigint", "integer", "numeric", "numeric(12,3)", "real", "double precision", "boolean", "bytea",
	"date", "timestamp without time zone", "timestamp with time zone", "time without time zone",
	"uuid", "jsonb", "text", "integer[]", "numeric(5,2)[]", "timestamp with time zone[]",
	"interval", "interval[]", "int4range", "numrange", "tstzrange", "integer[]", "text[]",
	"numeric[]", "daterange[]", "money"};
/* attndims per column: i2 has two dimensions, t3 three (the rest as the catalog says 0 or 1). */
static const int ndims[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1,
			    0, 1, 0, 0, 0, 2, 3, 1, 0, 0};
#define N_COLS ((int)(sizeof(names) / sizeof(names[0])))

/*
 * The protect rules of the second pass and what they make of each column: day hashed, n
 * encrypted, i dropped, u (a key column with a composite key) masked, ia hashed (an array: one
 * string), dec dropped by the first rule that takes it (the second would hash it).
 */
static relay_config *make_rules(avro_change_protect *prot)
{
	static const struct {
		const char *columns, *action;
	} rules[] = {{"day,ia", "hash"}, {"n", "encrypt"}, {"i,dec", "drop"}, {"u", "mask"},
		     {"dec", "hash"}};
	relay_config *cfg = config_defaults(0, 1);

	for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
		protect_config *p = config_add_protect(cfg);
		config_set_list(&p->columns, &p->n_columns, rules[r].columns);
		config_set_list(&p->tables, &p->n_tables, "public.f*");
		config_set_string(&p->action, rules[r].action);
	}
	for (int i = 0; i < N_COLS; i++) {
		bool dropped = strcmp(names[i], "i") == 0 || strcmp(names[i], "dec") == 0;
		bool other = strcmp(names[i], "day") == 0 || strcmp(names[i], "ia") == 0 ||
			     strcmp(names[i], "n") == 0 || strcmp(names[i], "u") == 0;
		prot[i] = dropped ? AVRO_CHANGE_DROPPED : other ? AVRO_CHANGE_PROTECTED : AVRO_CHANGE_CLEAR;
	}
	return cfg;
}

/* The table; the first input byte picks its replica identity, its key and which columns are NOT NULL. */
static void make_table(capture_table *t, capture_column *cols, int *key, uint8_t pick)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < N_COLS; i++) {
		memset(&cols[i], 0, sizeof(cols[i]));
		cols[i].name = (char *)names[i];
		cols[i].type_name = (char *)types[i];
		cols[i].ndims = ndims[i];
		cols[i].published = true;
		cols[i].not_null = i == 0 || ((pick >> (i % 7)) & 1);
	}
	key[0] = 0;
	key[1] = 12; /* u uuid: a composite key */
	t->schema = "public";
	t->table = "fuzz";
	t->name = "public.fuzz";
	t->cols = cols;
	t->n_cols = N_COLS;
	t->keys = key;
	t->n_keys = 1 + ((pick >> 6) & 1);
	t->replident = (pick & 0x80) ? 'f' : 'd';
	t->catalog_lsn = 1;
}

/*
 * Converts the envelope; an accepted one must read back whole by the derived schema (base), or by
 * the variant it used when the rows have columns the table does not.
 */
static void convert(avro_change *a, const capture_table *t, const char *base, avro_value_t *readback,
		    const char *json, size_t len)
{
	char *out;
	size_t n, again = 0;
	const char *why = NULL;

	if (avro_change_convert(a, t, json, len, 5, &out, &n, &why) < 0) {
		FUZZ_CHECK(why != NULL && why[0] != '\0'); /* refused: always with a reason */
		return;
	}
	FUZZ_CHECK(n >= 5);
	const char *used = avro_change_last_schema(a);
	avro_schema_t variant = NULL;
	avro_value_iface_t *iface = NULL;
	avro_value_t other;
	if (strcmp(used, base) != 0) { /* columns the table does not have: read by the variant */
		FUZZ_CHECK(avro_schema_from_json_length(used, strlen(used), &variant) == 0);
		iface = avro_generic_class_from_schema(variant);
		FUZZ_CHECK(avro_generic_value_new(iface, &other) == 0);
		readback = &other;
	}
	avro_reader_t r = avro_reader_memory(out + 5, (int64_t)(n - 5));
	avro_value_reset(readback);
	FUZZ_CHECK(avro_value_read(r, readback) == 0);
	FUZZ_CHECK(avro_value_sizeof(readback, &again) == 0 && again == n - 5);
	avro_reader_free(r);
	if (variant) {
		avro_value_decref(&other);
		avro_value_iface_decref(iface);
		avro_schema_decref(variant);
	}
}

/* The input as a record key (key_format = "avro"): an accepted one reads back whole by the key schema. */
static void convert_key(avro_change *a, const capture_table *t, const avro_change_protect *prot,
			const char *json, size_t len)
{
	strbuf text = {0};
	avro_schema_t s;
	avro_value_t v;
	char *out;
	size_t n, again = 0;
	const char *why = NULL;

	if (avro_change_convert_key(a, t, json, len, 5, &out, &n, &why) < 0) {
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		return;
	}
	avro_change_key_schema(&text, t, "fuzz.prefix", prot);
	FUZZ_CHECK(strcmp(avro_change_last_schema(a), text.s) == 0);
	FUZZ_CHECK(avro_schema_from_json_length(text.s, text.len, &s) == 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	FUZZ_CHECK(avro_generic_value_new(iface, &v) == 0);
	avro_reader_t r = avro_reader_memory(out + 5, (int64_t)(n - 5));
	FUZZ_CHECK(avro_value_read(r, &v) == 0);
	FUZZ_CHECK(avro_value_sizeof(&v, &again) == 0 && again == n - 5);
	avro_reader_free(r);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	strbuf_free(&text);
}

/*
 * One pass over the input under rules (NULL: none; prot what they make of the columns): a fresh
 * cache (its leaks would show), the envelope converted twice, then as a key.
 */
static void one_pass(const capture_table *t, const relay_config *rules,
		     const avro_change_protect *prot, const uint8_t *data, size_t size)
{
	strbuf text = {0};
	avro_schema_t s;
	avro_value_t readback;

	avro_change_schema_with(&text, t, "fuzz.prefix", NULL, 0, false, prot);
	FUZZ_CHECK(avro_schema_from_json_length(text.s, text.len, &s) == 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	FUZZ_CHECK(avro_generic_value_new(iface, &readback) == 0);
	avro_change *a = avro_change_new("fuzz.prefix", rules);
	convert(a, t, text.s, &readback, (const char *)data, size);
	/* The same cached schema again: its reused value must not keep the first's. */
	convert(a, t, text.s, &readback, (const char *)data, size);
	convert_key(a, t, prot, (const char *)data, size);
	avro_change_free(a);
	avro_value_decref(&readback);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	strbuf_free(&text);
}

/*
 * The input without protect rules (an even length) or with them (odd: the schema the rules
 * derive); one pass each, as a pass compiles libavro schemas, most of an execution's time.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	capture_table t;
	capture_column cols[N_COLS];
	avro_change_protect prot[N_COLS];
	int key[2];

	if (size < 1)
		return 0;
	make_table(&t, cols, key, data[0]);
	if (size % 2 == 0) {
		one_pass(&t, NULL, NULL, data + 1, size - 1);
		return 0;
	}
	relay_config *rules = make_rules(prot);
	one_pass(&t, rules, prot, data + 1, size - 1);
	config_free(rules);
	return 0;
}
