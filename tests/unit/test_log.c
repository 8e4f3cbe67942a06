/* test_log.c: log lines in the three formats: one line per message, whatever a name holds. */
/* Not unit.h: its json_scan.h and jansson, which checks the JSON lines, share names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "log.h"

#define FORGED "public.x\n2099-01-01T00:00:00.000Z error forged"
#define TS "2026-12-02T10:00:00.000Z"

/* Formats msg as one line; fails unless it is exactly one line, ending in its newline. */
static const char *line_of(log_format_t fmt, const char *prefix, const char *msg)
{
	static char line[4096];
	size_t n = log_format_line(line, sizeof(line) - 1, fmt, LOG_LVL_WARN, prefix, TS, msg);

	line[n] = '\0';
	assert_true(n > 0 && line[n - 1] == '\n');
	assert_ptr_equal(strchr(line, '\n'), line + n - 1);
	assert_null(strchr(line, '\r'));
	return line;
}

static void test_text_escapes_control_characters(void **state)
{
	(void)state;
	assert_string_equal(line_of(LOG_FORMAT_TEXT, "", "cannot capture " FORGED),
			    TS " warn  cannot capture public.x\\n2099-01-01T00:00:00.000Z error forged\n");
	assert_string_equal(line_of(LOG_FORMAT_TEXT, "", "a\r\tb\x01\x1b[31m\x7f \\n \"q\""),
			    TS " warn  a\\r\\tb\\x01\\x1b[31m\\x7f \\\\n \"q\"\n");
	/* Under journald: the priority prefix, no timestamp of ours. */
	char line[256];
	size_t n = log_format_line(line, sizeof(line), LOG_FORMAT_TEXT, LOG_LVL_ERROR, "<3>", "",
				   "x\ny");
	assert_memory_equal(line, "<3>error x\\ny\n", n);
}

static void test_text_escapes_what_hides_or_breaks_lines(void **state)
{
	(void)state;
	/* U+0085 NEL, U+2028 LINE SEPARATOR, U+202E RIGHT-TO-LEFT OVERRIDE; é stays as it is. */
	assert_string_equal(line_of(LOG_FORMAT_TEXT, "", "a\xc2\x85" "b\xe2\x80\xa8" "c\xe2\x80\xae" "d\xc3\xa9"),
			    TS " warn  a\\u0085b\\u2028c\\u202ed\xc3\xa9\n");
	/* Bytes that are not UTF-8 (a SQL_ASCII database's names): shown as bytes. */
	assert_string_equal(line_of(LOG_FORMAT_TEXT, "", "a\xff\xc3(b"), TS " warn  a\\xff\\xc3(b\n");
}

static void test_trailing_newline_is_dropped(void **state)
{
	(void)state;
	/* PostgreSQL's error texts end with a newline. */
	assert_string_equal(line_of(LOG_FORMAT_TEXT, "", "connection refused\n"),
			    TS " warn  connection refused\n");
}

static void test_logfmt_quotes_and_escapes(void **state)
{
	(void)state;
	assert_string_equal(line_of(LOG_FORMAT_LOGFMT, "", "say \"hi\" " FORGED),
			    "ts=" TS " level=warn msg=\"say \\\"hi\\\" public.x\\n2099-01-01T00:00:00.000Z "
			    "error forged\"\n");
}

/* The JSON line parses, and its msg is the message (bytes that are not UTF-8 become U+FFFD). */
static void expect_json_msg(const char *msg, const char *want)
{
	const char *line = line_of(LOG_FORMAT_JSON, "", msg);
	json_error_t err;
	json_t *obj = json_loads(line, 0, &err);

	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "msg")), want);
	assert_string_equal(json_string_value(json_object_get(obj, "ts")), TS);
	assert_string_equal(json_string_value(json_object_get(obj, "level")), "warn");
	json_decref(obj);
}

static void test_json_escapes_and_stays_valid(void **state)
{
	(void)state;
	expect_json_msg("dead-lettering " FORGED " \"q\" \\ \x01", "dead-lettering " FORGED " \"q\" \\ \x01");
	expect_json_msg("a\xe2\x80\xa8" "b", "a\xe2\x80\xa8" "b");
	expect_json_msg("a\xff" "b", "a\xef\xbf\xbd" "b");
	/* json_out's escapes: short forms, DEL as \u007f; no raw control byte in the line. */
	expect_json_msg("\b\f\x7f\x1b", "\b\f\x7f\x1b");
	assert_non_null(strstr(line_of(LOG_FORMAT_JSON, "", "x\x7fy\bz"), "x\\u007fy\\bz"));
}

static void test_long_message_is_cut_whole(void **state)
{
	char msg[2048], line[300];

	(void)state;
	for (size_t i = 0; i + 1 < sizeof(msg); i++)
		msg[i] = "\n\x01" "ab"[i % 4];
	msg[sizeof(msg) - 1] = '\0';
	for (int fmt = LOG_FORMAT_TEXT; fmt <= LOG_FORMAT_JSON; fmt++) {
		size_t n = log_format_line(line, sizeof(line), (log_format_t)fmt, LOG_LVL_INFO, "", TS, msg);
		assert_true(n <= sizeof(line) && line[n - 1] == '\n');
		assert_ptr_equal(memchr(line, '\n', n), line + n - 1);
		if (fmt == LOG_FORMAT_JSON) {
			json_error_t err;
			line[n - 1] = '\0';
			json_t *obj = json_loads(line, 0, &err);
			assert_non_null(obj);
			json_decref(obj);
		}
	}
}

static void test_escape_text_for_other_output(void **state)
{
	char out[32];

	(void)state;
	/* preflight's lines: escaped the same way, NUL-terminated, cut whole. */
	assert_int_equal(log_escape_text(out, sizeof(out), "FAIL x\nok   y"), 14);
	assert_string_equal(out, "FAIL x\\nok   y");
	log_escape_text(out, 8, "abcdef\n");
	assert_string_equal(out, "abcdef");
	log_escape_text(out, 8, "abcde\x01");
	assert_string_equal(out, "abcde");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_escapes_control_characters),
		cmocka_unit_test(test_text_escapes_what_hides_or_breaks_lines),
		cmocka_unit_test(test_trailing_newline_is_dropped),
		cmocka_unit_test(test_logfmt_quotes_and_escapes),
		cmocka_unit_test(test_json_escapes_and_stays_valid),
		cmocka_unit_test(test_long_message_is_cut_whole),
		cmocka_unit_test(test_escape_text_for_other_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
