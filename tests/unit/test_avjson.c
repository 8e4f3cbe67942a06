/* test_avjson.c: JSON to Avro binary by a schema: read back with libavro, and each refusal's reason. */
#include "unit.h"

#include <avro.h>

#include "avjson.h"

static const char SCHEMA[] =
	"{\"type\": \"record\", \"name\": \"Verified\", \"namespace\": \"id.events\", \"fields\": [\n"
	"  {\"name\": \"id\", \"type\": \"long\"},\n"
	"  {\"name\": \"age\", \"type\": \"int\"},\n"
	"  {\"name\": \"name\", \"type\": \"string\"},\n"
	"  {\"name\": \"ok\", \"type\": \"boolean\"},\n"
	"  {\"name\": \"score\", \"type\": \"double\"},\n"
	"  {\"name\": \"note\", \"type\": [\"null\", \"string\"], \"default\": null},\n"
	"  {\"name\": \"level\", \"type\": {\"type\": \"enum\", \"name\": \"Level\", \"symbols\": [\"LOW\", \"HIGH\"]}},\n"
	"  {\"name\": \"tags\", \"type\": {\"type\": \"array\", \"items\": \"string\"}},\n"
	"  {\"name\": \"attrs\", \"type\": {\"type\": \"map\", \"values\": \"long\"}},\n"
	"  {\"name\": \"address\", \"type\": {\"type\": \"record\", \"name\": \"Address\", \"fields\": [\n"
	"     {\"name\": \"zip\", \"type\": \"int\"}]}},\n"
	"  {\"name\": \"amount\", \"type\": {\"type\": \"bytes\", \"logicalType\": \"decimal\", \"precision\": 10, \"scale\": 2}},\n"
	"  {\"name\": \"at\", \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"}},\n"
	"  {\"name\": \"born\", \"type\": {\"type\": \"int\", \"logicalType\": \"date\"}}\n"
	"]}";

static const char GOOD[] =
	"{\"id\": 9007199254740993, \"age\": 41, \"name\": \"J\\u00F6rg\", \"ok\": true, \"score\": 0.5,"
	" \"level\": \"HIGH\", \"tags\": [\"a\", \"b\"], \"attrs\": {\"x\": -1},"
	" \"address\": {\"zip\": 10115}, \"amount\": 12.34, \"at\": \"2026-01-02 03:04:05.678+00\","
	" \"born\": \"1970-01-11\"}";

static avjson_codec *codec(void)
{
	char err[256];
	avjson_codec *c = avjson_new(SCHEMA, sizeof(SCHEMA) - 1, err, sizeof(err));
	if (!c)
		fail_msg("schema: %s", err);
	return c;
}

/* The payload's Avro bytes read back by libavro, as libavro's JSON. */
static char *read_back(avjson_codec *c, const char *json, size_t prefix)
{
	char why[256], *out, *text = NULL;
	size_t len;
	avro_schema_t s;
	avro_value_t v;

	if (avjson_encode(c, json, strlen(json), prefix, &out, &len, why, sizeof(why)) < 0)
		fail_msg("encode: %s", why);
	assert_int_equal(avro_schema_from_json_length(avjson_schema_text(c), strlen(avjson_schema_text(c)), &s), 0);
	avro_value_iface_t *iface = avro_generic_class_from_schema(s);
	avro_generic_value_new(iface, &v);
	avro_reader_t r = avro_reader_memory(out + prefix, (int64_t)(len - prefix));
	assert_int_equal(avro_value_read(r, &v), 0);
	assert_int_equal(avro_value_to_json(&v, 1, &text), 0);
	avro_reader_free(r);
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(s);
	return text;
}

/* The reason a payload is refused with. */
static void assert_refused(avjson_codec *c, const char *json, const char *reason)
{
	char why[256], *out;
	size_t len;

	assert_int_equal(avjson_encode(c, json, strlen(json), 0, &out, &len, why, sizeof(why)), -1);
	assert_string_equal(why, reason);
}

static void test_a_payload_reads_back_as_written(void **state)
{
	(void)state;
	avjson_codec *c = codec();
	char *text = read_back(c, GOOD, 5);

	assert_string_equal(text,
		"{\"id\": 9007199254740993, \"age\": 41, \"name\": \"J\\u00F6rg\", \"ok\": true, "
		"\"score\": 0.5, \"note\": null, \"level\": \"HIGH\", \"tags\": [\"a\", \"b\"], "
		"\"attrs\": {\"x\": -1}, \"address\": {\"zip\": 10115}, \"amount\": \"\\u0004\\u00D2\", "
		"\"at\": 1767323045678, \"born\": 10}");
	free(text);
	avjson_free(c);
}

static void test_a_union_takes_the_branch_of_the_value(void **state)
{
	(void)state;
	avjson_codec *c = codec();
	char buf[1024];

	snprintf(buf, sizeof(buf), "%.*s, \"note\": \"hi\"}", (int)strlen(GOOD) - 1, GOOD);
	char *text = read_back(c, buf, 0);
	assert_non_null(strstr(text, "\"note\": {\"string\": \"hi\"}"));
	free(text);
	avjson_free(c);
}

static void test_the_canonical_text_is_the_file_compacted(void **state)
{
	(void)state;
	avjson_codec *c = codec();
	assert_non_null(strstr(avjson_schema_text(c),
			       "{\"type\":\"record\",\"name\":\"Verified\",\"namespace\":\"id.events\","
			       "\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"));
	assert_null(strchr(avjson_schema_text(c), '\n'));
	avjson_free(c);
}

/* GOOD with one member's value replaced (the member's text "\"name\": value"). */
static const char *with(const char *member, const char *replacement)
{
	static char buf[1024];
	const char *at = strstr(GOOD, member);
	const char *end = at;
	int depth = 0;

	for (end = strchr(at, ':') + 1; *end && (depth > 0 || (*end != ',' && *end != '}')); end++)
		depth += (*end == '{' || *end == '[') - (*end == '}' || *end == ']');
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - GOOD), GOOD, replacement, end);
	return buf;
}

static void test_values_that_do_not_fit_are_refused_naming_the_field(void **state)
{
	(void)state;
	avjson_codec *c = codec();

	assert_refused(c, with("\"age\"", "\"age\": 3000000000"), "field age: 3000000000 does not fit in int");
	assert_refused(c, with("\"age\"", "\"age\": 4.5"), "field age: int needs an integer, got 4.5");
	assert_refused(c, with("\"age\"", "\"age\": \"41\""), "field age: expected int, got a string");
	assert_refused(c, with("\"id\"", "\"id\": 9223372036854775808"),
		       "field id: 9223372036854775808 does not fit in long");
	assert_refused(c, with("\"score\"", "\"score\": 1e400"), "field score: 1e400 is beyond the range of double");
	assert_refused(c, with("\"address\"", "\"address\": {\"zip\": \"10115\"}"),
		       "field address.zip: expected int, got a string");
	assert_refused(c, with("\"tags\"", "\"tags\": [\"a\", 2]"), "field tags[1]: expected string, got a number");
	assert_refused(c, with("\"level\"", "\"level\": \"MID\""),
		       "field level: \"MID\" is not a symbol of enum id.events.Level");
	assert_refused(c, with("\"name\"", "\"nom\": \"x\""),
		       "field nom: not a field of record id.events.Verified");
	assert_refused(c, with("\"amount\"", "\"amount\": 12.345"),
		       "field amount: 12.345 has more than 2 fraction digits (decimal scale 2)");
	assert_refused(c, with("\"amount\"", "\"amount\": 123456789.01"),
		       "field amount: 123456789.01 has more than 10 digits (decimal precision 10)");
	assert_refused(c, with("\"born\"", "\"born\": \"1970-02-30\""),
		       "field born: date needs YYYY-MM-DD or a number of days");
	assert_refused(c, "[1]", "the payload: expected record id.events.Verified, got an array");
	assert_refused(c, "{\"id\": 1", "the payload: not valid JSON");
	avjson_free(c);
}

static void test_a_missing_field_is_null_only_when_nullable(void **state)
{
	(void)state;
	avjson_codec *c = codec();

	assert_refused(c, with("\"name\"", "\"x_\": 0"), "field x_: not a field of record id.events.Verified");
	assert_refused(c, "{\"id\": 1}", "field age: missing, and int is not nullable");
	avjson_free(c);
}

/* The Avro bytes of a decimal(10, 2) (a length, zigzag-encoded, then two's complement). */
static void assert_decimal(const char *number, const char *want, size_t want_len)
{
	static const char schema[] = "{\"type\": \"bytes\", \"logicalType\": \"decimal\", "
				     "\"precision\": 10, \"scale\": 2}";
	char err[256], why[256], *out;
	size_t len;
	avjson_codec *c = avjson_new(schema, sizeof(schema) - 1, err, sizeof(err));

	assert_non_null(c);
	if (avjson_encode(c, number, strlen(number), 0, &out, &len, why, sizeof(why)) < 0)
		fail_msg("%s: %s", number, why);
	assert_int_equal(len, want_len + 1);
	assert_int_equal((unsigned char)out[0], want_len * 2);
	assert_memory_equal(out + 1, want, want_len);
	avjson_free(c);
}

static void test_decimals_are_exact(void **state)
{
	(void)state;
	assert_decimal("0", "\x00", 1);
	assert_decimal("-1", "\x9c", 1);        /* -100 */
	assert_decimal("1.27", "\x7f", 1);      /* 127 */
	assert_decimal("1.28", "\x00\x80", 2);  /* 128: a sign byte */
	assert_decimal("-1.28", "\xff\x80", 2); /* -128 (not minimal, still exact) */
	assert_decimal("\"12.30\"", "\x04\xce", 2); /* a string: 1230 */
	assert_decimal("1.2e1", "\x04\xb0", 2);  /* 1200 */
	assert_decimal("12.3400", "\x04\xd2", 2); /* zeros beyond the scale go */
	assert_decimal("99999999.99", "\x02\x54\x0b\xe3\xff", 5); /* 10 digits: 0x2540be3ff */
}

static void test_a_bad_schema_is_refused_with_a_message(void **state)
{
	(void)state;
	char err[256];

	assert_null(avjson_new("{\"type\": \"record\"", 17, err, sizeof(err)));
	assert_non_null(strstr(err, "not JSON"));
	assert_null(avjson_new("{\"type\": \"nope\"}", 16, err, sizeof(err)));
	assert_null(avjson_new("{\"type\": \"bytes\", \"logicalType\": \"decimal\"}", 43, err, sizeof(err)));
	assert_non_null(strstr(err, "precision"));
}

/* A record no value can end (it must contain itself) is refused before libavro, which would
 * recurse without end building it; a record that may contain itself (a list) still works. */
static void test_a_record_that_must_contain_itself_is_refused(void **state)
{
	(void)state;
	char err[256];
	static const char *const endless[] = {
		"{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":\"A\"}]}",
		"{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":[\"A\"]}]}",
		"{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"},"
		"{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"B\",\"fields\":"
		"[{\"name\":\"a\",\"type\":\"A\"}]}}]}",
		/* through another namespace, back by full name */
		"{\"type\":\"record\",\"name\":\"x.A\",\"fields\":[{\"name\":\"b\",\"type\":"
		"{\"type\":\"record\",\"name\":\"B\",\"namespace\":\"y\",\"fields\":"
		"[{\"name\":\"a\",\"type\":\"x.A\"}]}}]}",
	};
	for (size_t i = 0; i < sizeof(endless) / sizeof(endless[0]); i++) {
		err[0] = '\0';
		assert_null(avjson_new(endless[i], strlen(endless[i]), err, sizeof(err)));
		assert_non_null(strstr(err, "must contain itself")); /* A, or B on the way back to A */
	}
	const char *list = "{\"type\":\"record\",\"name\":\"Node\",\"fields\":[{\"name\":\"v\",\"type\":\"int\"},"
			   "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]},"
			   "{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"Node\"}}]}";
	avjson_codec *c = avjson_new(list, strlen(list), err, sizeof(err));
	assert_non_null(c);
	char *out, why[256];
	size_t len;
	const char *payload = "{\"v\":1,\"next\":{\"v\":2,\"next\":null,\"kids\":[]},\"kids\":[]}";
	assert_int_equal(avjson_encode(c, payload, strlen(payload), 0, &out, &len, why, sizeof(why)), 0);
	avjson_free(c);
	/* one record in two fields (seen twice, no cycle), in two namespaces of one short name */
	const char *twice = "{\"type\":\"record\",\"name\":\"x.A\",\"fields\":[{\"name\":\"b\",\"type\":"
			    "{\"type\":\"record\",\"name\":\"y.A\",\"fields\":[{\"name\":\"v\","
			    "\"type\":\"int\"}]}},{\"name\":\"c\",\"type\":\"y.A\"}]}";
	c = avjson_new(twice, strlen(twice), err, sizeof(err));
	assert_non_null(c);
	avjson_free(c);
}

/* A record that must contain itself in a schema our compile refuses for another reason (a
 * decimal without precision, which libavro accepts) is not built by libavro either. */
static void test_a_record_that_must_contain_itself_is_refused_after_another_fault(void **state)
{
	(void)state;
	char err[256];
	static const char *const bad[] = {
		"{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":\"A\"},"
		"{\"name\":\"d\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\"}}]}",
		"{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"d\",\"type\":"
		"{\"type\":\"bytes\",\"logicalType\":\"decimal\"}},{\"name\":\"a\",\"type\":\"A\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_null(avjson_new(bad[i], strlen(bad[i]), err, sizeof(err)));
		assert_non_null(strstr(err, "precision"));
	}
}

/* jsonb's key order (shorter keys first) rather than the schema's reads back the same. */
static void test_fields_in_any_order_read_back_the_same(void **state)
{
	(void)state;
	avjson_codec *c = codec();
	char *want = read_back(c, GOOD, 0);
	char *text = read_back(c,
		"{\"at\": \"2026-01-02 03:04:05.678+00\", \"id\": 9007199254740993, \"ok\": true, "
		"\"age\": 41, \"born\": \"1970-01-11\", \"name\": \"J\\u00F6rg\", \"tags\": [\"a\", \"b\"], "
		"\"attrs\": {\"x\": -1}, \"level\": \"HIGH\", \"score\": 0.5, \"amount\": 12.34, "
		"\"address\": {\"zip\": 10115}}", 0);

	assert_string_equal(text, want);
	free(text);
	text = read_back(c, with("\"id\"", "\"i\\u0064\": 9007199254740993"), 0); /* an escaped key */
	assert_string_equal(text, want);
	free(text);
	free(want);
	avjson_free(c);
}

/* A record of more than 32 fields (found by libavro's lookup by name), keys in reverse order. */
static void test_a_large_record_in_any_order(void **state)
{
	(void)state;
	char schema[4096], json[2048], err[256], why[256], *out;
	size_t n = 0, m = 0, len;

	n += (size_t)snprintf(schema, sizeof(schema), "{\"type\":\"record\",\"name\":\"L\",\"fields\":[");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(schema + n, sizeof(schema) - n, "%s{\"name\":\"f%d\",\"type\":\"long\"}",
				      i ? "," : "", i);
	snprintf(schema + n, sizeof(schema) - n, "]}");
	m += (size_t)snprintf(json, sizeof(json), "{");
	for (int i = 39; i >= 0; i--)
		m += (size_t)snprintf(json + m, sizeof(json) - m, "%s\"f%d\": %d", i < 39 ? ", " : "", i, i);
	snprintf(json + m, sizeof(json) - m, "}");
	avjson_codec *c = avjson_new(schema, strlen(schema), err, sizeof(err));
	assert_non_null(c);
	if (avjson_encode(c, json, strlen(json), 0, &out, &len, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	assert_int_equal(len, 40);                /* zigzag 0..39: one byte each */
	assert_int_equal((unsigned char)out[39], 78); /* f39 = 39 */
	assert_refused(c, "{\"f\\u0031\": 1, \"nope\": 2}", "field nope: not a field of record L");
	avjson_free(c);
}

/* A small schema without arrays or maps: its value is not reset between payloads. */
static const char FLAT[] =
	"{\"type\":\"record\",\"name\":\"Flat\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"},"
	"{\"name\":\"bb\",\"type\":\"string\"},{\"name\":\"note\",\"type\":[\"null\",\"string\"],"
	"\"default\":null},{\"name\":\"n\",\"type\":\"int\"}]}";

/* The Avro bytes of a payload by a fresh codec of the schema (no payload before it). */
static size_t fresh_bytes(const char *schema, const char *json, char *dst, size_t cap)
{
	char err[256], why[256], *out;
	size_t len;
	avjson_codec *c = avjson_new(schema, strlen(schema), err, sizeof(err));

	assert_non_null(c);
	if (avjson_encode(c, json, strlen(json), 0, &out, &len, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	assert_true(len <= cap);
	memcpy(dst, out, len);
	avjson_free(c);
	return len;
}

/* Payloads one after another give the bytes each gives alone, whatever came before: keys in
 * another order than the last payload's, a field left out, a refused payload half converted. */
static void test_each_payload_encodes_as_if_it_were_the_first(void **state)
{
	(void)state;
	static const char *const seq[] = {
		"{\"a\": 1, \"bb\": \"x\", \"note\": \"first\", \"n\": 7}",
		"{\"n\": 8, \"bb\": \"yy\", \"a\": 2}",           /* note left out: null, not "first" */
		"{\"n\": 8, \"bb\": \"yy\", \"a\": 3, \"note\": \"z\"}",
		"{\"bb\": \"a longer text than before\", \"n\": 9, \"a\": -4}",
		"{\"a\": 5, \"bb\": \"half\", \"note\": \"left\", \"n\": \"no\"}", /* refused */
		"{\"a\": 6, \"n\": 10, \"bb\": \"\"}",
	};
	char err[256], why[256], want[256], *out;
	size_t len;
	avjson_codec *c = avjson_new(FLAT, sizeof(FLAT) - 1, err, sizeof(err));

	assert_non_null(c);
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		if (i == 4) {
			assert_refused(c, seq[i], "field n: expected int, got a string");
			continue;
		}
		size_t n = fresh_bytes(FLAT, seq[i], want, sizeof(want));
		if (avjson_encode(c, seq[i], strlen(seq[i]), 0, &out, &len, why, sizeof(why)) < 0)
			fail_msg("%s", why);
		assert_int_equal(len, n);
		assert_memory_equal(out, want, n);
	}
	avjson_free(c);
}

/* A schema with two fields of one name (libavro takes it): a key is the field it was before the
 * guesses (the first after the previous member's, else the first), whatever payload came before. */
static void test_a_name_of_two_fields_picks_the_same_field_after_any_payload(void **state)
{
	(void)state;
	static const char twins[] =
		"{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\"a\",\"type\":"
		"[\"null\",\"long\"]},{\"name\":\"b\",\"type\":[\"null\",\"string\"]},{\"name\":\"c\","
		"\"type\":[\"null\",\"long\"]},{\"name\":\"a\",\"type\":[\"null\",\"long\"]}]}";
	static const char *const seq[] = {
		"{\"c\": 1, \"a\": 2}", /* a after c: the second a */
		"{\"b\": \"x\", \"a\": 2}", /* a after b: the first a (c is next) */
		"{\"a\": 3}",
		"{\"c\": 4, \"a\": 5}",
	};
	char err[256], why[256], want[256], *out;
	size_t len;
	avjson_codec *c = avjson_new(twins, sizeof(twins) - 1, err, sizeof(err));

	assert_non_null(c);
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		size_t n = fresh_bytes(twins, seq[i], want, sizeof(want));
		if (avjson_encode(c, seq[i], strlen(seq[i]), 0, &out, &len, why, sizeof(why)) < 0)
			fail_msg("%s", why);
		assert_int_equal(len, n);
		assert_memory_equal(out, want, n);
	}
	avjson_free(c);
}

/* Integers are read exactly up to the types' limits, past 18 digits too, and refused beyond. */
static void test_integers_at_the_limits_of_int_and_long(void **state)
{
	(void)state;
	char err[256];
	const char *schema = "{\"type\":\"record\",\"name\":\"I\",\"fields\":[{\"name\":\"i\",\"type\":"
			     "\"int\"},{\"name\":\"l\",\"type\":\"long\"}]}";
	avjson_codec *c = avjson_new(schema, strlen(schema), err, sizeof(err));
	char *text;

	assert_non_null(c);
	text = read_back(c, "{\"i\": 2147483647, \"l\": 9223372036854775807}", 0);
	assert_string_equal(text, "{\"i\": 2147483647, \"l\": 9223372036854775807}");
	free(text);
	text = read_back(c, "{\"i\": -2147483648, \"l\": -9223372036854775808}", 0);
	assert_string_equal(text, "{\"i\": -2147483648, \"l\": -9223372036854775808}");
	free(text);
	text = read_back(c, "{\"i\": -0, \"l\": 999999999999999999}", 0);
	assert_string_equal(text, "{\"i\": 0, \"l\": 999999999999999999}");
	free(text);
	assert_refused(c, "{\"i\": 2147483648, \"l\": 0}", "field i: 2147483648 does not fit in int");
	assert_refused(c, "{\"i\": -2147483649, \"l\": 0}", "field i: -2147483649 does not fit in int");
	assert_refused(c, "{\"i\": 0, \"l\": 9223372036854775808}",
		       "field l: 9223372036854775808 does not fit in long");
	assert_refused(c, "{\"i\": 1.0, \"l\": 0}", "field i: int needs an integer, got 1.0");
	avjson_free(c);
}

/* The payload is read once: what follows the object, or JSON broken after a field that does not
 * fit, is still "not valid JSON", as when the whole text was checked first. */
static void test_text_that_is_not_one_json_value_is_refused_as_such(void **state)
{
	(void)state;
	avjson_codec *c = codec();
	char buf[1024];

	snprintf(buf, sizeof(buf), "  %s x", GOOD);
	assert_refused(c, buf, "the payload: not valid JSON");
	snprintf(buf, sizeof(buf), "%s}", GOOD);
	assert_refused(c, buf, "the payload: not valid JSON");
	assert_refused(c, "{\"age\": \"41\", \"id\": [", "the payload: not valid JSON");
	assert_refused(c, "{\"nom\": 1,}", "the payload: not valid JSON");
	snprintf(buf, sizeof(buf), "\n%s\n", GOOD);
	char *text = read_back(c, buf, 0);
	free(text);
	avjson_free(c);
}

/* Avro larger than the JSON text (a double is 8 bytes, "0" is one): written whole anyway. */
static void test_output_larger_than_the_payload_is_written_whole(void **state)
{
	(void)state;
	static const char schema[] = "{\"type\": \"array\", \"items\": \"double\"}";
	char err[256], why[256], *out, json[8192];
	size_t len, n = 0;
	avjson_codec *c = avjson_new(schema, sizeof(schema) - 1, err, sizeof(err));

	assert_non_null(c);
	json[n++] = '[';
	for (int i = 0; i < 3000; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, i ? ",0" : "0");
	json[n++] = ']';
	if (avjson_encode(c, json, n, 5, &out, &len, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	/* a block count (3000, zigzag: 2 bytes), 3000 doubles, the end of blocks (1 byte) */
	assert_int_equal(len, 5 + 2 + 3000 * 8 + 1);
	avjson_free(c);
}

/* A double converted by the short path (<= 15 digits) is the one strtod gives, bit for bit. */
static void test_doubles_are_the_nearest_value(void **state)
{
	(void)state;
	static const char schema[] = "{\"type\": \"double\"}";
	static const char *const fixed[] = {"0.987", "-12.5", "0.1", "0.3", "-0", "0", "1.0",
					    "123456789012345", "0.000000000000001", "9007199254740.99",
					    "0.30000000000000004", "1e-5", "2.5E3", "12.50"};
	char err[256], why[256], *out, text[64];
	size_t len;
	avjson_codec *c = avjson_new(schema, sizeof(schema) - 1, err, sizeof(err));
	unsigned long long x = 88172645463325252ULL;

	assert_non_null(c);
	for (int i = 0; i < 20000 + (int)(sizeof(fixed) / sizeof(fixed[0])); i++) {
		if (i < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
			snprintf(text, sizeof(text), "%s", fixed[i]);
		} else { /* xorshift: up to 16 digits, the point anywhere */
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			int digits = 1 + (int)(x % 16), point = (int)((x >> 8) % (unsigned)(digits + 1));
			unsigned long long p = 1;
			for (int d = 0; d < digits; d++)
				p *= 10;
			snprintf(text, sizeof(text), "%s%llu", (x >> 20) & 1 ? "-" : "", (x >> 4) % p);
			size_t tl = strlen(text), at = tl - (size_t)point;
			if (point > 0 && (size_t)point < tl && at > (size_t)(text[0] == '-')) {
				memmove(text + at + 1, text + at, tl - at + 1);
				text[at] = '.';
			}
		}
		if (avjson_encode(c, text, strlen(text), 0, &out, &len, why, sizeof(why)) < 0)
			fail_msg("%s: %s", text, why);
		double want = strtod(text, NULL), got;
		assert_int_equal(len, 8);
		memcpy(&got, out, 8); /* Avro doubles are little-endian, as this machine */
		if (memcmp(&got, &want, 8) != 0)
			fail_msg("%s: %.17g, strtod %.17g", text, got, want);
	}
	avjson_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_payload_reads_back_as_written),
		cmocka_unit_test(test_a_union_takes_the_branch_of_the_value),
		cmocka_unit_test(test_the_canonical_text_is_the_file_compacted),
		cmocka_unit_test(test_values_that_do_not_fit_are_refused_naming_the_field),
		cmocka_unit_test(test_a_missing_field_is_null_only_when_nullable),
		cmocka_unit_test(test_decimals_are_exact),
		cmocka_unit_test(test_a_bad_schema_is_refused_with_a_message),
		cmocka_unit_test(test_fields_in_any_order_read_back_the_same),
		cmocka_unit_test(test_text_that_is_not_one_json_value_is_refused_as_such),
		cmocka_unit_test(test_output_larger_than_the_payload_is_written_whole),
		cmocka_unit_test(test_doubles_are_the_nearest_value),
		cmocka_unit_test(test_a_large_record_in_any_order),
		cmocka_unit_test(test_each_payload_encodes_as_if_it_were_the_first),
		cmocka_unit_test(test_integers_at_the_limits_of_int_and_long),
		cmocka_unit_test(test_a_name_of_two_fields_picks_the_same_field_after_any_payload),
		cmocka_unit_test(test_a_record_that_must_contain_itself_is_refused),
		cmocka_unit_test(test_a_record_that_must_contain_itself_is_refused_after_another_fault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
