/* test_json_scan.c: the zero-copy JSON scanner: strings, escapes, numbers, nesting, malformed input. */
#include "unit.h"

/* Scans text (copied to an exact-size heap buffer) as one whole document: 0 or -1. */
static int scan_whole_n(const char *text, size_t len, json_span *out)
{
	char *buf = unit_dup(text, len);
	json_cursor c;
	json_span tmp;
	int r;

	json_cursor_init(&c, buf, len);
	r = json_read_value(&c, out ? out : &tmp);
	if (r == 0 && !json_at_end(&c))
		r = -1;
	if (r == 0 && out) {
		/* Point the span back into the caller's text (buf is freed). */
		out->ptr = text + (out->ptr - buf);
	}
	free(buf);
	return r;
}

static int scan_whole(const char *text, json_span *out)
{
	return scan_whole_n(text, strlen(text), out);
}

/* Walks every element of an array in place (json_enter_array + json_array_next): 0 or -1. */
static int iterate_array(const char *text)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	json_cursor c;
	json_span v;
	int r;

	json_cursor_init(&c, buf, len);
	r = json_enter_array(&c);
	if (r == 0) {
		while ((r = json_array_next(&c, &v)) == 1)
			;
		if (r == 0 && !json_at_end(&c))
			r = -1;
	}
	free(buf);
	return r;
}

/* Walks every member of an object in place (json_enter_object + json_object_next): 0 or -1. */
static int iterate_object(const char *text)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	json_cursor c;
	json_span k, v;
	int r;

	json_cursor_init(&c, buf, len);
	r = json_enter_object(&c);
	if (r == 0) {
		while ((r = json_object_next(&c, &k, &v)) == 1)
			;
		if (r == 0 && !json_at_end(&c))
			r = -1;
	}
	free(buf);
	return r;
}

/* Scans a one-string document and returns its span; fails the test if it does not scan. */
static json_span scan_string_doc(const char *text)
{
	json_span s;
	assert_int_equal(scan_whole(text, &s), 0);
	assert_int_equal(s.kind, JSON_STRING);
	return s;
}

static void test_string_plain(void **state)
{
	(void)state;
	json_span s = scan_string_doc("\"hello world\"");
	assert_false(s.escaped);
	assert_span_text(s, JSON_STRING, "hello world");
	assert_span_decoded(s, "hello world");

	s = scan_string_doc("\"\"");
	assert_false(s.escaped);
	assert_int_equal(s.len, 0);
	assert_span_decoded(s, "");
}

static void test_string_simple_escapes(void **state)
{
	(void)state;
	json_span s = scan_string_doc("\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t.\"");
	assert_true(s.escaped);
	assert_span_text(s, JSON_STRING, "q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t.");
	assert_span_decoded(s, "q\"b\\s/b\bf\fn\nr\rt\t.");

	/* Escapes back to back and at both ends. */
	s = scan_string_doc("\"\\\\\\\"\\n\"");
	assert_span_decoded(s, "\\\"\n");
	s = scan_string_doc("\"\\\\\"");
	assert_span_decoded(s, "\\");
}

static void test_string_unicode_escapes(void **state)
{
	(void)state;
	json_span s = scan_string_doc("\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"");
	assert_span_decoded(s, "A\xC3\xA9\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF");

	/* A surrogate pair is one code point outside the BMP: 4 bytes of UTF-8. */
	s = scan_string_doc("\"\\uD83D\\uDE00\"");
	assert_span_decoded(s, "\xF0\x9F\x98\x80");
	s = scan_string_doc("\"x\\ud83d\\ude00y\\uDBFF\\uDFFFz\\uD800\\uDC00\"");
	assert_span_decoded(s, "x\xF0\x9F\x98\x80y\xF4\x8F\xBF\xBFz\xF0\x90\x80\x80");

	/* Boundaries of the 1-, 2- and 3-byte forms, and NUL. */
	s = scan_string_doc("\"\\u007f\\u0080\\u07FF\\u0800\\u0000.\"");
	assert_span_decoded(s, "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\0.");
}

static void test_string_raw_utf8_passes_through(void **state)
{
	(void)state;
	/* café 😀 日本 ÿ as raw UTF-8, plus DEL (0x7F is not a control character for JSON). */
	const char *doc = "\"caf\xC3\xA9 \xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC \xC3\xBF \x7F\"";
	json_span s = scan_string_doc(doc);
	assert_false(s.escaped);
	assert_span_decoded(s, "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC \xC3\xBF \x7F");

	/* Raw UTF-8 next to escapes. */
	s = scan_string_doc("\"\xC3\xA9\\n\xF0\x9F\x98\x80\\u00e9\"");
	assert_true(s.escaped);
	assert_span_decoded(s, "\xC3\xA9\n\xF0\x9F\x98\x80\xC3\xA9");
}

static void test_unescape_rejects_lone_surrogates(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"\"\\uD83D\"",	      /* high at the end */
		"\"\\uDE00\"",	      /* low alone */
		"\"\\uD83Dx\"",       /* high then a character */
		"\"\\uD83D\\u0041\"", /* high then a non-surrogate escape */
		"\"\\uD83D\\uD83D\"", /* high then high */
		"\"\\uDE00\\uD83D\"", /* low then high (reversed pair) */
		"\"\\uD83D\\n\"",     /* high then another kind of escape */
		"\"ok\\uDFFF\"",
		"\"\\uDBFF\\uE000\"", /* high then one past the low range */
	};
	char out[64];

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		json_span s = scan_string_doc(docs[i]); /* the shape is valid JSON */
		assert_true(s.len < sizeof(out));
		if (json_unescape(&s, out) != -1)
			fail_msg("json_unescape accepted %s", docs[i]);
	}
}

/* Names compare by their decoded text: escaped, plain, longer than the stack buffer. */
static void test_string_is_compares_decoded_text(void **state)
{
	(void)state;
	char long_doc[1400], long_name[700];
	json_span s = scan_string_doc("\"pre\\\"fix\"");

	assert_true(s.escaped);
	assert_true(json_string_is(&s, "pre\"fix", 7));
	assert_false(json_string_is(&s, "pre\\\"fix", 9));
	assert_false(json_string_is(&s, "pre\"fi", 6));
	s = scan_string_doc("\"plain\"");
	assert_true(json_string_is(&s, "plain", 5));
	assert_false(json_string_is(&s, "plai", 4));
	/* 300 escapes (600 characters, beyond the 512-byte stack buffer) decode to 300 bytes. */
	strcpy(long_doc, "\"");
	for (int i = 0; i < 300; i++)
		strcat(long_doc, "\\n");
	strcat(long_doc, "\"");
	memset(long_name, 0, sizeof(long_name));
	for (int i = 0; i < 300; i++)
		long_name[i] = '\n';
	s = scan_string_doc(long_doc);
	assert_true(json_string_is(&s, long_name, 300));
	long_name[299] = 'x';
	assert_false(json_string_is(&s, long_name, 300));
}

static void test_string_rejects_controls_and_bad_escapes(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"\"a\x01z\"", "\"a\nb\"", "\"tab\there\"", "\"\x1f\"", "\"cr\r\"",
		"\"\\x41\"", "\"\\U0041\"", "\"\\u12G4\"", "\"\\u12\"", "\"\\u\"", "\"\\'\"",
		"\"\\a\"", "\"\\0\"", "\"\\", "\"abc", "\"", "\"\\\"", "'single'",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan_whole(bad[i], NULL) != -1)
			fail_msg("accepted bad string %s", bad[i]);
	/* A NUL byte inside the quotes is a control character too. */
	assert_int_equal(scan_whole_n("\"a\0b\"", 5, NULL), -1);
}

static void test_numbers_keep_exact_text(void **state)
{
	(void)state;
	static const char *const good[] = {
		"0", "-0", "7", "-7", "9007199254740993", "-9007199254740993",
		"18446744073709551616", "12345678901234567890.123", "-0.5e-10", "1E5", "1e+5",
		"1.0e-0", "0.000", "123456789012345678901234567890123456789012345678901234567890",
		"2.50", "1.0E+308", "4.9e-324999",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		json_span s;
		if (scan_whole(good[i], &s) != 0)
			fail_msg("rejected number %s", good[i]);
		assert_int_equal(s.kind, JSON_NUMBER);
		assert_false(s.escaped);
		unit_bytes_equal(s.ptr, s.len, good[i], strlen(good[i]), good[i], __FILE__, __LINE__);
	}
	/* Inside an array the exact text is kept too. */
	json_cursor c;
	json_span v;
	const char *doc = "[9007199254740993, 12345678901234567890.123,-0.5e-10]";
	json_cursor_init(&c, doc, strlen(doc));
	assert_int_equal(json_enter_array(&c), 0);
	assert_int_equal(json_array_next(&c, &v), 1);
	assert_span_text(v, JSON_NUMBER, "9007199254740993");
	assert_int_equal(json_array_next(&c, &v), 1);
	assert_span_text(v, JSON_NUMBER, "12345678901234567890.123");
	assert_int_equal(json_array_next(&c, &v), 1);
	assert_span_text(v, JSON_NUMBER, "-0.5e-10");
	assert_int_equal(json_array_next(&c, &v), 0);
	assert_true(json_at_end(&c));
}

static void test_numbers_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"01", "-01", "00", "1.", ".5", "-", "1e", "1e+", "1E-", "+1", "--1", "1.e5",
		"0x10", "NaN", "Infinity", "-Infinity", "1.5.", "1e5.0", "- 1", "1 2", "1,", "1a",
		"0.5e", "-.5", "1..2", "١",
	};
	char arr[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan_whole(bad[i], NULL) != -1)
			fail_msg("accepted number %s", bad[i]);
		/* Also when skipped inside a container and when iterated in place. */
		snprintf(arr, sizeof(arr), "[%s]", bad[i]);
		if (scan_whole(arr, NULL) != -1)
			fail_msg("accepted %s", arr);
		if (iterate_array(arr) != -1)
			fail_msg("iterated %s", arr);
		snprintf(arr, sizeof(arr), "{\"n\":%s}", bad[i]);
		if (scan_whole(arr, NULL) != -1 || iterate_object(arr) != -1)
			fail_msg("accepted %s", arr);
	}
}

static void test_literals(void **state)
{
	(void)state;
	json_span s;

	assert_int_equal(scan_whole("true", &s), 0);
	assert_span_text(s, JSON_TRUE, "true");
	assert_int_equal(scan_whole(" false ", &s), 0);
	assert_span_text(s, JSON_FALSE, "false");
	assert_int_equal(scan_whole("null", &s), 0);
	assert_span_text(s, JSON_NULL, "null");

	static const char *const bad[] = {
		"tru", "t", "nul", "fals", "True", "NULL", "nulll", "falsey", "true1", "[truefalse]",
		"[true false]", "[nul]", "{\"a\":tru}", "undefined",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan_whole(bad[i], NULL) != -1)
			fail_msg("accepted %s", bad[i]);
}

static void test_nested_values_are_skipped_whole(void **state)
{
	(void)state;
	const char *doc = "{\"a\": {\"b\": [1, {\"c\": [[], {}, \"]}\"]}], \"d\": null}, "
			  "\"e\" : [ [ [ ] ] ] , \"f\":\"x\"}";
	json_cursor c;
	json_span k, v, all;

	assert_int_equal(scan_whole(doc, &all), 0);
	assert_int_equal(all.kind, JSON_OBJECT);
	assert_int_equal(all.len, strlen(doc));

	assert_int_equal(json_object_open(&c, &all), 0);
	assert_int_equal(json_object_next(&c, &k, &v), 1);
	assert_true(JSON_KEY_IS(&k, "a"));
	assert_span_text(v, JSON_OBJECT, "{\"b\": [1, {\"c\": [[], {}, \"]}\"]}], \"d\": null}");
	assert_int_equal(json_object_next(&c, &k, &v), 1);
	assert_true(JSON_KEY_IS(&k, "e"));
	assert_span_text(v, JSON_ARRAY, "[ [ [ ] ] ]");
	assert_int_equal(json_object_next(&c, &k, &v), 1);
	assert_true(JSON_KEY_IS(&k, "f"));
	assert_span_text(v, JSON_STRING, "x");
	assert_int_equal(json_object_next(&c, &k, &v), 0);
	assert_true(json_at_end(&c));

	/* Open a nested span and walk it. */
	json_span a = {0};
	assert_int_equal(json_object_open(&c, &all), 0);
	assert_int_equal(json_object_next(&c, &k, &a), 1);
	json_cursor in;
	assert_int_equal(json_object_open(&in, &a), 0);
	assert_int_equal(json_object_next(&in, &k, &v), 1);
	assert_true(JSON_KEY_IS(&k, "b"));
	json_cursor arr;
	assert_int_equal(json_array_open(&arr, &v), 0);
	assert_int_equal(json_array_next(&arr, &v), 1);
	assert_span_text(v, JSON_NUMBER, "1");
	assert_int_equal(json_array_next(&arr, &v), 1);
	assert_span_text(v, JSON_OBJECT, "{\"c\": [[], {}, \"]}\"]}");
	assert_int_equal(json_array_next(&arr, &v), 0);

	/* Opening a span of the wrong kind fails. */
	assert_int_equal(json_array_open(&arr, &a), -1);
	assert_int_equal(json_object_open(&arr, &k), -1);
}

static void test_empty_containers(void **state)
{
	(void)state;
	static const char *const good[] = {
		"{}", "[]", "[{},{}]", "[[],[]]", "[ {} , [] , {\"a\":[]} ]", "{\"a\":{},\"b\":[]}",
		"[[[]],[{}]]", " [ { } ] ",
	};
	static const char *const bad[] = {
		"[{} {}]", "[{}{}]", "[[] []]", "[[][]]", "[{} []]", "{\"a\":{} \"b\":1}",
		"{\"a\":[]\"b\":1}", "[{},{}", "[{}}", "{[]}", "[{]", "[}", "{]",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (scan_whole(good[i], NULL) != 0)
			fail_msg("rejected %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan_whole(bad[i], NULL) != -1)
			fail_msg("accepted %s", bad[i]);
	/* The same through in-place iteration. */
	assert_int_equal(iterate_array("[{},{}]"), 0);
	assert_int_equal(iterate_array("[[],[]]"), 0);
	assert_int_equal(iterate_array("[]"), 0);
	assert_int_equal(iterate_array("[{} {}]"), -1);
	assert_int_equal(iterate_array("[[] []]"), -1);
	assert_int_equal(iterate_object("{}"), 0);
	assert_int_equal(iterate_object("{\"a\":{} \"b\":1}"), -1);
}

/* Counts the objects of an array with json_array_next_enter: n, or -1 when malformed. */
static int count_entered(const char *text)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	json_cursor c;
	json_span k, v;
	int r, n = 0;

	json_cursor_init(&c, buf, len);
	r = json_enter_array(&c);
	while (r == 0 && (r = json_array_next_enter(&c)) == 1) {
		int m;
		while ((m = json_object_next(&c, &k, &v)) == 1)
			;
		r = m < 0 ? -1 : 0;
		n++;
	}
	if (r == 0 && !json_at_end(&c))
		r = -1;
	free(buf);
	return r < 0 ? -1 : n;
}

static void test_array_next_enter(void **state)
{
	(void)state;
	assert_int_equal(count_entered("[]"), 0);
	assert_int_equal(count_entered("[{}]"), 1);
	assert_int_equal(count_entered("[{},{}]"), 2);
	assert_int_equal(count_entered("[ {\"a\":1} , {\"b\":[{}]} , {} ]"), 3);
	assert_int_equal(count_entered("[{} {}]"), -1);
	assert_int_equal(count_entered("[{}{}]"), -1);
	assert_int_equal(count_entered("[{},]"), -1);
	assert_int_equal(count_entered("[,{}]"), -1);
	assert_int_equal(count_entered("[1]"), -1);
	assert_int_equal(count_entered("[[]]"), -1);
	assert_int_equal(count_entered("[{\"a\":1,}]"), -1);
	assert_int_equal(count_entered("[{}"), -1);
	assert_int_equal(count_entered("{}"), -1);
}

static void test_trailing_commas_rejected(void **state)
{
	(void)state;
	static const char *const arrays[] = {
		"[1,]", "[1,,2]", "[,]", "[,1]", "[{\"a\":1},]", "[[],]", "[1 , ]",
	};
	static const char *const objects[] = {
		"{\"a\":1,}", "{,}", "{,\"a\":1}", "{\"a\":1,,\"b\":2}", "{\"a\":[1,],\"b\":2}",
		"{\"a\":{\"b\":1,}}",
	};

	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		if (scan_whole(arrays[i], NULL) != -1 || iterate_array(arrays[i]) != -1)
			fail_msg("accepted %s", arrays[i]);
	}
	for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
		if (scan_whole(objects[i], NULL) != -1 || iterate_object(objects[i]) != -1)
			fail_msg("accepted %s", objects[i]);
	}
}

static void test_other_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", " ", "{\"a\" 1}", "{\"a\"}", "{\"a\":}", "{a:1}", "{1:1}", "{'a':1}", "{\"a\"::1}",
		"{\"a\":1 \"b\":2}", "[1 2]", "[", "]", "{", "}", "{}}", "[]]", "[]{}", "\"a\" \"b\"",
		"{\"a\":1}x", "\v1", "\f[]", "[\v]", "\xC2\xA0\x31", "/*c*/1", "[1]//",
		"{\"a\":1,\"a\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan_whole(bad[i], NULL) != -1)
			fail_msg("accepted [%s]", bad[i]);
	assert_int_equal(iterate_object("{\"a\" 1}"), -1);
	assert_int_equal(iterate_object("{\"a\":1 \"b\":2}"), -1);
	assert_int_equal(iterate_object("{a:1}"), -1);
	assert_int_equal(iterate_object("[]"), -1);
	assert_int_equal(iterate_array("{}"), -1);
	assert_int_equal(iterate_array("[1 2]"), -1);
	assert_int_equal(iterate_array("[1]x"), -1);
}

static void test_whitespace(void **state)
{
	(void)state;
	json_span s;

	assert_int_equal(scan_whole(" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ 1 \n, 2 ] \r\n} \t\r\n", &s), 0);
	assert_int_equal(s.kind, JSON_OBJECT);
	assert_int_equal(iterate_object(" \t{ \"a\" : 1 ,\n\"b\":[ ] }\r\n"), 0);
}

/* Every proper prefix of a document must fail cleanly; the whole must pass. */
static void check_prefixes(const char *doc)
{
	size_t len = strlen(doc);

	assert_int_equal(scan_whole_n(doc, len, NULL), 0);
	for (size_t n = 0; n < len; n++) {
		char *buf = unit_dup(doc, n);
		json_cursor c;
		json_span v, k;
		int r;

		/* Whole-value scan (skipping nested values). */
		json_cursor_init(&c, buf, n);
		r = json_read_value(&c, &v);
		if (r == 0 && json_at_end(&c))
			fail_msg("prefix of %zu bytes accepted: %.*s", n, (int)n, doc);
		/* In-place iteration of the members. */
		json_cursor_init(&c, buf, n);
		r = json_enter_object(&c);
		while (r == 0 && (r = json_object_next(&c, &k, &v)) == 1)
			r = 0;
		if (r == 0 && json_at_end(&c))
			fail_msg("prefix of %zu bytes iterated: %.*s", n, (int)n, doc);
		free(buf);
	}
}

static void test_truncated_prefixes_fail_cleanly(void **state)
{
	(void)state;
	check_prefixes("{\"s\":\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00 caf\xC3\xA9\","
		       "\"n\":[0,-0.5e-10,12345678901234567890.123,9007199254740993,1E+2],"
		       "\"l\":[true,false,null],\"o\":{\"e\":{},\"a\":[],\"x\":[{},{\"y\":[[]]}]},"
		       "\"z\" : \"\"}");
	check_prefixes("{}");
	check_prefixes("{\"a\":[{}]}");
}

/* "[[[...1...]]]" or objects nested depth deep. */
static char *nested(size_t depth, bool objects)
{
	size_t unit = objects ? 5 : 1; /* {"a": */
	char *s = malloc(depth * (unit + 1) + 2);
	char *p = s;

	assert_non_null(s);
	for (size_t i = 0; i < depth; i++) {
		if (objects) {
			memcpy(p, "{\"a\":", 5);
			p += 5;
		} else {
			*p++ = '[';
		}
	}
	*p++ = '1';
	for (size_t i = 0; i < depth; i++)
		*p++ = objects ? '}' : ']';
	*p = '\0';
	return s;
}

static void test_deep_nesting(void **state)
{
	(void)state;
	char *s;
	json_span v;

	s = nested(10000, false);
	assert_int_equal(scan_whole(s, &v), 0);
	assert_int_equal(v.kind, JSON_ARRAY);
	assert_int_equal(v.len, strlen(s));
	assert_int_equal(iterate_array(s), 0);
	free(s);

	s = nested(10000, true);
	assert_int_equal(scan_whole(s, &v), 0);
	assert_int_equal(v.kind, JSON_OBJECT);
	assert_int_equal(iterate_object(s), 0);
	free(s);

	s = nested(20000, false);
	assert_int_equal(scan_whole(s, NULL), -1);
	assert_int_equal(iterate_array(s), -1);
	free(s);

	s = nested(20000, true);
	assert_int_equal(scan_whole(s, NULL), -1);
	assert_int_equal(iterate_object(s), -1);
	free(s);

	/* Open brackets only, a million of them: rejected, no stack overflow. */
	size_t n = 1000000;
	s = malloc(n + 1);
	assert_non_null(s);
	memset(s, '[', n);
	s[n] = '\0';
	assert_int_equal(scan_whole(s, NULL), -1);
	free(s);
}

/*
 * The string scanner looks at sixteen (SSE2) or eight bytes at a time: a quote, backslash or
 * control character at every offset of strings of every length up to 40 (two blocks of sixteen
 * and the tail, with bytes >= 0x80 around) must be found exactly where a byte-by-byte reading
 * finds it.
 */
static void test_string_special_byte_at_every_offset(void **state)
{
	(void)state;
	static const char specials[] = {'"', '\\', 0x01, 0x1F, 0x20, 0x7F, (char)0x80, (char)0xC3,
					(char)0xFF, '!', '#', '[', ']'};

	for (size_t len = 0; len <= 40; len++) {
		for (size_t k = 0; k <= len; k++) {
			for (size_t s = 0; s < sizeof(specials); s++) {
				char buf[64];
				json_cursor c;
				json_span v;
				char sp = k < len ? specials[s] : 'a';
				buf[0] = '"';
				for (size_t i = 0; i < len; i++)
					buf[1 + i] = (char)(i % 2 ? 0xA2 : 'a'); /* 0xA2 ^ '"' = 0x80 */
				if (k < len)
					buf[1 + k] = sp;
				if (sp == '\\')
					buf[1 + k + 1 < len + 1 ? 1 + k + 1 : 1 + k] = k + 1 < len ? 'n' : '\\';
				buf[1 + len] = '"';
				json_cursor_init(&c, buf, len + 2);
				int r = json_read_value(&c, &v);
				/* What a byte-by-byte reading says. */
				int want = 0;
				size_t want_len = len;
				bool want_esc = false;
				for (size_t i = 0; i < len; i++) {
					unsigned char ch = (unsigned char)buf[1 + i];
					if (ch == '"') {
						want_len = i;
						break;
					}
					if (ch < 0x20) {
						want = -1;
						break;
					}
					if (ch == '\\') {
						if (i + 1 >= len || buf[2 + i] != 'n') {
							want = -1;
							break;
						}
						want_esc = true;
						i++;
					}
				}
				if (r != want)
					fail_msg("len %zu, byte 0x%02x at %zu: %d, expected %d", len,
						 (unsigned char)sp, k, r, want);
				if (r == 0) {
					assert_int_equal(v.kind, JSON_STRING);
					assert_int_equal(v.len, want_len);
					assert_true(v.ptr == buf + 1);
					assert_int_equal(v.escaped, want_esc);
				}
			}
		}
	}
}

static void test_key_is(void **state)
{
	(void)state;
	json_span k = scan_string_doc("\"action\"");
	assert_true(JSON_KEY_IS(&k, "action"));
	assert_false(JSON_KEY_IS(&k, "actio"));
	assert_false(JSON_KEY_IS(&k, "actions"));
	assert_false(JSON_KEY_IS(&k, "Action"));
	k = scan_string_doc("\"\"");
	assert_true(JSON_KEY_IS(&k, ""));
	assert_false(JSON_KEY_IS(&k, "a"));
}

static void test_cursor_at_end_and_errors(void **state)
{
	(void)state;
	json_cursor c;
	json_span v;

	json_cursor_init(&c, "", 0);
	assert_true(json_at_end(&c));
	assert_int_equal(json_read_value(&c, &v), -1);
	assert_int_equal(json_enter_object(&c), -1);
	assert_int_equal(json_enter_array(&c), -1);

	json_cursor_init(&c, " 1 2 ", 5);
	assert_int_equal(json_read_value(&c, &v), 0);
	assert_span_text(v, JSON_NUMBER, "1");
	assert_false(json_at_end(&c));
	assert_int_equal(json_read_value(&c, &v), 0);
	assert_span_text(v, JSON_NUMBER, "2");
	assert_true(json_at_end(&c));

	/* Closed containers keep returning 0 / -1, never read past the end. */
	json_cursor_init(&c, "[]", 2);
	assert_int_equal(json_enter_array(&c), 0);
	assert_int_equal(json_array_next(&c, &v), 0);
	assert_int_equal(json_array_next(&c, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_string_plain),
		cmocka_unit_test(test_string_simple_escapes),
		cmocka_unit_test(test_string_unicode_escapes),
		cmocka_unit_test(test_string_raw_utf8_passes_through),
		cmocka_unit_test(test_unescape_rejects_lone_surrogates),
		cmocka_unit_test(test_string_is_compares_decoded_text),
		cmocka_unit_test(test_string_rejects_controls_and_bad_escapes),
		cmocka_unit_test(test_numbers_keep_exact_text),
		cmocka_unit_test(test_numbers_malformed),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_nested_values_are_skipped_whole),
		cmocka_unit_test(test_empty_containers),
		cmocka_unit_test(test_array_next_enter),
		cmocka_unit_test(test_trailing_commas_rejected),
		cmocka_unit_test(test_other_malformed),
		cmocka_unit_test(test_whitespace),
		cmocka_unit_test(test_truncated_prefixes_fail_cleanly),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_string_special_byte_at_every_offset),
		cmocka_unit_test(test_key_is),
		cmocka_unit_test(test_cursor_at_end_and_errors),
	};
	return cmocka_run_group_tests_name("json_scan", tests, NULL, NULL);
}
