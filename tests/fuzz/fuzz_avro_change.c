/* fuzz_avro_change.c: libFuzzer target for relay/avro_change.c: any change envelope (and record key) against a table of every mapped type, read back by libavro. */
#include <avro.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change.h"
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
static void convert_key(avro_change *a, const capture_table *t, const char *json, size_t len)
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
	avro_change_key_schema(&text, t, "fuzz.prefix");
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

/* A fresh cache per input (its leaks would show), each envelope converted twice, then as a key. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	capture_table t;
	capture_column cols[N_COLS];
	int key[2];
	strbuf text = {0};
	avro_schema_t s;
	avro_value_t readback;

	if (size < 1)
		return 0;
	make_table(&t, cols, key, data[0]);
	avro_change_schema(&text, &t, "fuzz.prefix");
	FUZZ_CHECK(avro_schema_from_json_length(text.s, text.len, &s) == 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	FUZZ_CHECK(avro_generic_value_new(iface, &readback) == 0);
	avro_change *a = avro_change_new("fuzz.prefix");
	convert(a, &t, text.s, &readback, (const char *)data + 1, size - 1);
	/* The same cached schema again: its reused value must not keep the first's. */
	convert(a, &t, text.s, &readback, (const char *)data + 1, size - 1);
	convert_key(a, &t, (const char *)data + 1, size - 1);
	avro_change_free(a);
	avro_value_decref(&readback);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	strbuf_free(&text);
	return 0;
}
