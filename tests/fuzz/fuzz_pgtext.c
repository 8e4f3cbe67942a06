/* fuzz_pgtext.c: libFuzzer target for relay/pgtext.c and the array conversion: intervals, ranges and nested arrays parsed, printed again and parsed to the same value. */
#include <avro.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avro_change_type.h"
#include "avro_change_value.h"
#include "fuzz.h"
#include "pgtext.h"

/* Appends one part of an interval as PostgreSQL's EncodeInterval (IntervalStyle postgres) does. */
static void interval_part(strbuf *b, int64_t value, const char *unit, bool *is_zero, bool *is_before)
{
	if (value == 0)
		return;
	strbuf_addf(b, "%s%s%" PRId64 " %s%s", *is_zero ? "" : " ", *is_before && value > 0 ? "+" : "",
		    value, unit, value != 1 ? "s" : "");
	*is_before = value < 0;
	*is_zero = false;
}

/* An interval printed as PostgreSQL prints it (IntervalStyle postgres). */
static void interval_print(strbuf *b, const pgtext_interval *iv)
{
	bool is_zero = true, is_before = false, neg = iv->us < 0;
	uint64_t mag = neg ? 0 - (uint64_t)iv->us : (uint64_t)iv->us;

	interval_part(b, iv->months / 12, "year", &is_zero, &is_before);
	interval_part(b, iv->months % 12, "mon", &is_zero, &is_before);
	interval_part(b, iv->days, "day", &is_zero, &is_before);
	if (!is_zero && iv->us == 0)
		return;
	strbuf_addf(b, "%s%s%02" PRIu64 ":%02u:%02u", is_zero ? "" : " ",
		    neg ? "-" : (is_before ? "+" : ""), mag / 3600000000u,
		    (unsigned)(mag / 60000000u % 60), (unsigned)(mag / 1000000u % 60));
	if (mag % 1000000u) {
		char frac[8];
		snprintf(frac, sizeof(frac), "%06u", (unsigned)(mag % 1000000u));
		for (int i = 5; frac[i] == '0'; i--)
			frac[i] = '\0';
		strbuf_addf(b, ".%s", frac);
	}
}

/* An interval read, printed as PostgreSQL would and read again: the same three fields. */
static void check_interval(const char *text, size_t len)
{
	pgtext_interval a, b;
	strbuf out = {0};

	if (!pgtext_interval_parse(text, len, &a))
		return;
	interval_print(&out, &a);
	if (!pgtext_interval_parse(out.s, out.len, &b) || a.months != b.months || a.days != b.days ||
	    a.us != b.us) {
		fprintf(stderr, "interval %.*s printed as %s reads back otherwise\n", (int)len, text, out.s);
		abort();
	}
	strbuf_free(&out);
}

/* A bound quoted with range_out's escapes (always quoted: PostgreSQL reads that too). */
static void bound_print(strbuf *b, const strbuf *bound)
{
	strbuf_addc(b, '"');
	for (size_t i = 0; i < bound->len; i++) {
		if (bound->s[i] == '"' || bound->s[i] == '\\')
			strbuf_addc(b, bound->s[i]);
		strbuf_addc(b, bound->s[i]);
	}
	strbuf_addc(b, '"');
}

/* A range read, printed again and read again: the same flags and bound texts. */
static void check_range(const char *text, size_t len)
{
	pgtext_range a, b;
	strbuf lo = {0}, up = {0}, lo2 = {0}, up2 = {0}, out = {0};

	if (pgtext_range_parse(text, len, &a, &lo, &up)) {
		if (a.empty) {
			STRBUF_ADD_LIT(&out, "empty");
		} else {
			strbuf_addc(&out, a.lower_inc ? '[' : '(');
			if (!a.lower_inf)
				bound_print(&out, &lo);
			strbuf_addc(&out, ',');
			if (!a.upper_inf)
				bound_print(&out, &up);
			strbuf_addc(&out, a.upper_inc ? ']' : ')');
		}
		FUZZ_CHECK(pgtext_range_parse(out.s, out.len, &b, &lo2, &up2));
		FUZZ_CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		FUZZ_CHECK(lo.len == lo2.len && (lo.len == 0 || memcmp(lo.s, lo2.s, lo.len) == 0));
		FUZZ_CHECK(up.len == up2.len && (up.len == 0 || memcmp(up.s, up2.s, up.len) == 0));
	}
	strbuf_free(&lo);
	strbuf_free(&up);
	strbuf_free(&lo2);
	strbuf_free(&up2);
	strbuf_free(&out);
}

/* A text array value printed as array_out would (every element quoted: it reads that too). */
static void array_print(strbuf *b, avro_value_t *v, int depth)
{
	size_t n = 0;

	avro_value_get_size(v, &n);
	strbuf_addc(b, '{');
	for (size_t i = 0; i < n; i++) {
		avro_value_t item, branch;
		int disc = 0;
		const char *s = NULL;
		size_t sl = 0;
		if (i)
			strbuf_addc(b, ',');
		avro_value_get_by_index(v, i, &item, NULL);
		if (depth > 1) {
			array_print(b, &item, depth - 1);
			continue;
		}
		avro_value_get_discriminant(&item, &disc);
		if (disc == 0) {
			STRBUF_ADD_LIT(b, "NULL");
			continue;
		}
		avro_value_get_current_branch(&item, &branch);
		avro_value_get_string(&branch, &s, &sl);
		strbuf_addc(b, '"');
		for (size_t k = 0; k + 1 < sl; k++) { /* sl counts the NUL */
			if (s[k] == '"' || s[k] == '\\')
				strbuf_addc(b, '\\');
			strbuf_addc(b, s[k]);
		}
		strbuf_addc(b, '"');
	}
	strbuf_addc(b, '}');
}

/* v serialized and read back by libavro: the same size and an equal value. */
static void check_readback(avro_value_iface_t *iface, avro_value_t *v)
{
	size_t n = 0, again = 0;
	avro_value_t back;

	FUZZ_CHECK(avro_value_sizeof(v, &n) == 0);
	char *buf = malloc(n + 1);
	avro_writer_t w = avro_writer_memory(buf, (int64_t)n);
	FUZZ_CHECK(avro_value_write(w, v) == 0);
	avro_reader_t r = avro_reader_memory(buf, (int64_t)n);
	avro_generic_value_new(iface, &back);
	FUZZ_CHECK(avro_value_read(r, &back) == 0);
	FUZZ_CHECK(avro_value_sizeof(&back, &again) == 0 && again == n);
	FUZZ_CHECK(avro_value_equal(v, &back));
	avro_value_decref(&back);
	avro_reader_free(r);
	avro_writer_free(w);
	free(buf);
}

/*
 * An array text converted as a text[] of dims dimensions: refused with a reason, or read back
 * whole by libavro, printed again as array_out would and converted to an equal value.
 */
static void check_array(const char *text, size_t len, int dims)
{
	avro_change_type t;
	strbuf schema = {0}, out = {0};
	avro_schema_t s;
	avro_value_t v, again;
	char why[300] = "";

	avro_change_map_column("text[]", dims, &t);
	avro_change_type_json(&schema, &t, NULL);
	FUZZ_CHECK(avro_schema_from_json_length(schema.s, schema.len, &s) == 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	avro_generic_value_new(iface, &v);
	avro_generic_value_new(iface, &again);
	if (avro_change_text_set_type(&v, &t, text, len, why, sizeof(why)) != 0) {
		FUZZ_CHECK(why[0] != '\0');
	} else {
		check_readback(iface, &v);
		array_print(&out, &v, dims);
		if (avro_change_text_set_type(&again, &t, out.s, out.len, why, sizeof(why)) != 0) {
			fprintf(stderr, "%.*s printed as %s is refused: %s\n", (int)len, text, out.s, why);
			abort();
		}
		FUZZ_CHECK(avro_value_equal(&v, &again));
	}
	avro_value_decref(&v);
	avro_value_decref(&again);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	strbuf_free(&schema);
	strbuf_free(&out);
}

/* The first byte picks the parser (and an array's dimensions); the rest is the text. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 3) {
	case 0: check_interval(text, len); break;
	case 1: check_range(text, len); break;
	default: check_array(text, len, 1 + data[0] / 3 % 3); break;
	}
	return 0;
}
