/* fuzz_json.c: libFuzzer target for relay/json_scan.c: values, object/array iteration, unescaping. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "jansson_oracle.h"
#include "json_scan.h"

/* Nesting the harness itself follows (the scanner skips deeper values without recursion). */
#define WALK_DEPTH 64

static const char *g_buf;
static size_t g_len;

static void walk(const json_span *v, int depth);

static void visit(const json_span *v, int depth)
{
	fuzz_span_inside(v, g_buf, g_len);
	if (v->kind == JSON_STRING)
		fuzz_unescape(v, NULL);
	else if (depth < WALK_DEPTH)
		walk(v, depth + 1);
}

/* Iterates an object or array span in place; a span the scanner returned must iterate cleanly. */
static void walk(const json_span *v, int depth)
{
	json_cursor c;
	json_span key, val;
	int r;

	if (v->kind == JSON_OBJECT) {
		FUZZ_CHECK(json_object_open(&c, v) == 0);
		while ((r = json_object_next(&c, &key, &val)) == 1) {
			FUZZ_CHECK(key.kind == JSON_STRING);
			visit(&key, depth);
			visit(&val, depth);
		}
		FUZZ_CHECK(r == 0 && json_at_end(&c));
	} else if (v->kind == JSON_ARRAY) {
		FUZZ_CHECK(json_array_open(&c, v) == 0);
		while ((r = json_array_next(&c, &val)) == 1)
			visit(&val, depth);
		FUZZ_CHECK(r == 0 && json_at_end(&c));
	} else {
		FUZZ_CHECK(json_object_open(&c, v) < 0 && json_array_open(&c, v) < 0);
	}
}

/* Jansson as an oracle: a document it accepts is valid JSON, which the scanner must accept too. */
static void compare_with_jansson(const json_span *v, bool ok)
{
	static const json_kind kinds[] = {
		[ORACLE_OBJECT] = JSON_OBJECT, [ORACLE_ARRAY] = JSON_ARRAY, [ORACLE_STRING] = JSON_STRING,
		[ORACLE_NUMBER] = JSON_NUMBER, [ORACLE_TRUE] = JSON_TRUE, [ORACLE_FALSE] = JSON_FALSE,
		[ORACLE_NULL] = JSON_NULL,
	};
	char *want = NULL, *got = NULL;
	size_t want_len;
	oracle_kind k = jansson_oracle(g_buf, g_len, &want, &want_len);

	if (k == ORACLE_REJECTED)
		return;
	/* jansson's json_loadb stops at a NUL byte as if the text ended there; JSON text has none. */
	if (memchr(g_buf, '\0', g_len))
		k = ORACLE_REJECTED;
	if (k == ORACLE_REJECTED) {
		free(want);
		return;
	}
	if (!ok) {
		fprintf(stderr, "jansson accepts the input, json_read_value/json_at_end do not\n");
		abort();
	}
	FUZZ_CHECK(kinds[k] == v->kind);
	if (k == ORACLE_STRING) {
		long n = fuzz_unescape(v, &got);
		FUZZ_CHECK(n == (long)want_len && memcmp(got, want, want_len) == 0);
	}
	free(got);
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_cursor c;
	json_span v, key;
	bool whole;
	int r;

	g_buf = (const char *)data;
	g_len = size;

	/* One value, as the relay reads a headers column. */
	json_cursor_init(&c, g_buf, size);
	r = json_read_value(&c, &v);
	FUZZ_CHECK(r == 0 || r == -1);
	whole = r == 0 && json_at_end(&c);
	if (r == 0)
		visit(&v, 0);
	compare_with_jansson(&v, whole);

	/* In-place iteration, as w2j reads a record (no pre-scan of the object). */
	json_cursor_init(&c, g_buf, size);
	if (json_enter_object(&c) == 0) {
		while ((r = json_object_next(&c, &key, &v)) == 1) {
			visit(&key, 0);
			visit(&v, 0);
		}
		FUZZ_CHECK(r == 0 || r == -1);
		json_at_end(&c);
	}
	json_cursor_init(&c, g_buf, size);
	if (json_enter_array(&c) == 0) {
		while ((r = json_array_next(&c, &v)) == 1)
			visit(&v, 0);
		FUZZ_CHECK(r == 0 || r == -1);
	}
	/* An array of objects stepped into one by one, as w2j reads columns. */
	json_cursor_init(&c, g_buf, size);
	if (json_enter_array(&c) == 0) {
		while ((r = json_array_next_enter(&c)) == 1) {
			int m;
			while ((m = json_object_next(&c, &key, &v)) == 1) {
				visit(&key, 0);
				visit(&v, 0);
			}
			if (m < 0)
				break;
		}
	}
	return 0;
}
