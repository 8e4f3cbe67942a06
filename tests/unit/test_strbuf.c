/* test_strbuf.c: the one string builder and the one JSON string escaper (strbuf.c, json_out.c). */
#include "unit.h"

#include "json_out.h"
#include "strbuf.h"

/* Appends of every kind build the whole text, far past any fixed buffer the relay had. */
static void test_strbuf_grows_whole(void **state)
{
	strbuf b = {0};

	(void)state;
	assert_string_equal(strbuf_str(&b), "");
	for (int i = 0; i < 3000; i++) {
		strbuf_add(&b, "ab");
		strbuf_addf(&b, "%d", i % 10);
		strbuf_addc(&b, ',');
	}
	assert_int_equal(b.len, 3000 * 4);
	assert_int_equal(strlen(b.s), b.len);
	assert_memory_equal(b.s + b.len - 4, "ab9,", 4);
	strbuf_reset(&b);
	assert_string_equal(strbuf_str(&b), "");
	strbuf_addn(&b, "x\0y", 3); /* bytes, NUL included */
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.s, "x\0y", 4);
	char *room = strbuf_room(&b, 10);
	memcpy(room, "12345", 5);
	strbuf_setlen(&b, b.len + 5);
	assert_memory_equal(b.s, "x\0y12345", 9);
	char *text = strbuf_detach(&b);
	assert_null(b.s);
	assert_int_equal(b.len, 0);
	free(text);
	text = strbuf_detach(&b); /* empty: "" the caller frees */
	assert_string_equal(text, "");
	free(text);
	strbuf_free(&b);
}

/* The JSON text of s (escaped, quoted). */
static char *json_of(const char *s, size_t n)
{
	strbuf b = {0};
	json_out_string(&b, s, n);
	return strbuf_detach(&b);
}

static void expect_json(const char *s, size_t n, const char *want)
{
	char *got = json_of(s, n);
	assert_string_equal(got, want);
	/* And it reads back as the same bytes (json_scan, what the relay parses with). */
	json_span v;
	json_cursor c;
	json_cursor_init(&c, got, strlen(got));
	assert_int_equal(json_read_value(&c, &v), 0);
	assert_int_equal(v.kind, JSON_STRING);
	char *back = malloc(v.len + 1);
	assert_int_equal(json_unescape(&v, back), (long)n);
	assert_memory_equal(back, s, n);
	free(back);
	free(got);
}

static void test_json_out_escapes(void **state)
{
	(void)state;
	expect_json("plain", 5, "\"plain\"");
	expect_json("", 0, "\"\"");
	/* Quotes and backslash. */
	expect_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
	/* Control characters: PostgreSQL's escape_json short forms, else \u00xx. */
	expect_json("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
	expect_json("\x01\x1b\x1f", 3, "\"\\u0001\\u001b\\u001f\"");
	/* NUL inside the span (the caller gave its length). */
	expect_json("a\0b", 3, "\"a\\u0000b\"");
	/* DEL passes, as PostgreSQL's escape_json writes it: captured keys keep their bytes. */
	expect_json("x\x7fy", 3, "\"x\x7fy\"");
	/* Non-ASCII UTF-8 passed through as it is (é, U+2028, an emoji). */
	expect_json("\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\"");
	/* Space and printable ASCII stay. */
	expect_json(" ~/", 3, "\" ~/\"");
}

static void test_json_out_escape_table(void **state)
{
	char buf[JSON_OUT_ESC_MAX];

	(void)state;
	for (int ch = 0; ch < 256; ch++) {
		const char *esc = json_out_escape((unsigned char)ch, buf);
		bool plain = ch >= 0x20 && ch != '"' && ch != '\\';
		assert_true(plain == (esc == NULL));
	}
	assert_string_equal(json_out_escape(0x00, buf), "\\u0000");
	assert_null(json_out_escape(0x7F, buf));
}

/* Many appends past the initial buffer: the escaper grows the buffer as it goes. */
static void test_json_out_long(void **state)
{
	char s[10000];

	(void)state;
	for (size_t i = 0; i < sizeof(s); i++)
		s[i] = i % 3 ? 'a' : '\n';
	char *got = json_of(s, sizeof(s));
	assert_int_equal(strlen(got), 2 + sizeof(s) / 3 * 2 + sizeof(s) / 3 * 2 + 2);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strbuf_grows_whole),
		cmocka_unit_test(test_json_out_escapes),
		cmocka_unit_test(test_json_out_escape_table),
		cmocka_unit_test(test_json_out_long),
	};
	return cmocka_run_group_tests_name("strbuf", tests, NULL, NULL);
}
