/* test_w2j.c: the wal2json v2 decoder on real plugin output (tests/data/wal2json) and bad records. */
#include "unit.h"

#include "lsn.h"
#include "w2j.h"

#define RECORDS "tests/data/wal2json/records.jsonl"
#define META "tests/data/wal2json/records.meta"

/* The texts tests/data/gen_wal2json.py wrote, as PostgreSQL gives them back. */
#define TRICKY_TEXT                                                                                \
	"say \"hi\" \\ back\\slash\nnew line\ttab \xF0\x9F\x98\x80 caf\xC3\xA9 "                   \
	"\xE6\x97\xA5\xE6\x9C\xAC \xC3\xBF"
#define JB_TEXT                                                                                    \
	"{\"q\": \"x\\\"y\", \"u\": \"\xC3\xA9\xF0\x9F\x98\x80\", \"bs\": \"a\\\\b\", "            \
	"\"big\": 9007199254740993, \"num\": 12345678901234567890.123}"
#define JS_TEXT "{ \"kept\" : \"as typed\",  \"n\": 1.0e2 }"

/* Sample records with what pg_logical_slot_get_changes reported next to each. */
typedef struct {
	unit_file recs;
	unit_file meta;
} sample;

static sample S;

/* The exact-size copy of the last hand-written record (its spans point into it). */
static char *last_text;

static int load_sample(void **state)
{
	(void)state;
	unit_load_lines(&S.recs, RECORDS);
	unit_load_lines(&S.meta, META);
	return S.recs.n_lines > 0 && S.recs.n_lines == S.meta.n_lines ? 0 : -1;
}

static int free_sample(void **state)
{
	(void)state;
	unit_file_free(&S.recs);
	unit_file_free(&S.meta);
	free(last_text);
	last_text = NULL;
	return 0;
}

/* Parses line i of records.meta ("LSN XID"). */
static void meta_of(size_t i, lsn_t *lsn, uint64_t *xid)
{
	const unit_line *m = &S.meta.lines[i];
	const char *sp = memchr(m->ptr, ' ', m->len);

	assert_non_null(sp);
	assert_true(lsn_parse(m->ptr, (size_t)(sp - m->ptr), lsn));
	*xid = strtoull(sp + 1, NULL, 10);
}

/* Decodes line i of the sample into rec; the line's bytes stay in S (spans point into them). */
static void decode_line(size_t i, w2j_record *rec)
{
	const char *why = NULL;
	const unit_line *l = &S.recs.lines[i];

	if (w2j_decode(l->ptr, l->len, rec, &why) != 0)
		fail_msg("line %zu: %s: %.*s", i + 1, why, (int)l->len, l->ptr);
}

static bool span_eq(const json_span *s, const char *text)
{
	return s->kind == JSON_STRING && s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

/* Index of the nth (0-based) record of an action on a table (NULL: any), or fails the test. */
static size_t find_record(char action, const char *table, int nth)
{
	for (size_t i = 0; i < S.recs.n_lines; i++) {
		w2j_record rec;
		decode_line(i, &rec);
		if ((char)rec.action == action && (!table || span_eq(&rec.table, table)) && nth-- == 0)
			return i;
	}
	fail_msg("no record %c of %s in the sample", action, table ? table : "(any)");
	return 0;
}

/* Finds a column by name in a columns or identity array; fails when it is absent. */
static w2j_column column(const json_span *array, const char *name)
{
	json_cursor it;
	w2j_column col;
	int r;

	assert_int_equal(w2j_columns_open(&it, array), 0);
	while ((r = w2j_columns_next(&it, &col)) == 1)
		if (span_eq(&col.name, name))
			return col;
	assert_int_equal(r, 0);
	fail_msg("no column %s", name);
	return col;
}

/* Number of columns in an array (-1 when malformed). */
static int count_columns(const json_span *array)
{
	json_cursor it;
	w2j_column col;
	int r, n = 0;

	if (w2j_columns_open(&it, array) < 0)
		return -1;
	while ((r = w2j_columns_next(&it, &col)) == 1)
		n++;
	return r < 0 ? -1 : n;
}

static void test_sample_every_record_matches_slot_metadata(void **state)
{
	(void)state;
	int counts[128] = {0};
	size_t open_b = SIZE_MAX;
	w2j_record b = {0};

	for (size_t i = 0; i < S.recs.n_lines; i++) {
		w2j_record rec;
		lsn_t mlsn;
		uint64_t mxid;

		decode_line(i, &rec);
		meta_of(i, &mlsn, &mxid);
		counts[rec.action & 127]++;
		if (mxid == 0) {
			assert_false(rec.has_xid);
		} else {
			assert_true(rec.has_xid);
			assert_int_equal(rec.xid, mxid);
		}
		switch (rec.action) {
		case W2J_BEGIN:
			assert_true(open_b == SIZE_MAX);
			open_b = i;
			b = rec;
			assert_true(rec.lsn != LSN_INVALID);
			assert_true(rec.nextlsn > rec.lsn);
			assert_true(mlsn <= rec.lsn); /* the slot reports the first change's LSN */
			assert_int_equal(rec.timestamp.kind, JSON_STRING);
			break;
		case W2J_COMMIT:
			assert_true(open_b != SIZE_MAX);
			assert_int_equal(rec.nextlsn, mlsn); /* the position to confirm */
			assert_int_equal(rec.lsn, b.lsn);
			assert_int_equal(rec.nextlsn, b.nextlsn);
			assert_int_equal(rec.xid, b.xid);
			assert_true(b.timestamp.len == rec.timestamp.len &&
				    memcmp(b.timestamp.ptr, rec.timestamp.ptr, b.timestamp.len) == 0);
			open_b = SIZE_MAX;
			break;
		default:
			assert_int_equal(rec.lsn, mlsn);
			if (open_b != SIZE_MAX) {
				/* A change of the open transaction: same xid, before the commit. */
				assert_true(rec.has_xid);
				assert_int_equal(rec.xid, b.xid);
				assert_true(rec.lsn <= b.lsn);
			} else {
				/* Only non-transactional messages come outside B/C. */
				assert_int_equal(rec.action, W2J_MESSAGE);
				assert_false(rec.transactional);
				assert_int_equal(rec.timestamp.kind, JSON_NULL);
			}
			break;
		}
	}
	assert_true(open_b == SIZE_MAX);
	/* Every kind occurs. */
	for (const char *k = "BCIUDMT"; *k; k++)
		if (counts[(int)*k] == 0)
			fail_msg("the sample has no %c record", *k);
	assert_int_equal(counts['B'], counts['C']);
}

static void test_sample_insert_all_types(void **state)
{
	(void)state;
	w2j_record rec;
	w2j_column c;

	decode_line(find_record('I', "types", 0), &rec);
	assert_span_text(rec.schema, JSON_STRING, "public");
	assert_span_text(rec.table, JSON_STRING, "types");
	assert_int_equal(rec.identity.kind, JSON_NONE);
	assert_int_equal(count_columns(&rec.columns), 18);

	c = column(&rec.columns, "id");
	assert_span_text(c.value, JSON_NUMBER, "1");
	assert_span_text(c.type, JSON_STRING, "bigint");
	c = column(&rec.columns, "big");
	assert_span_text(c.value, JSON_NUMBER, "9007199254740993");
	c = column(&rec.columns, "num");
	assert_span_text(c.value, JSON_NUMBER, "12345678901234567890.123");
	assert_span_text(c.type, JSON_STRING, "numeric");
	/* wal2json prints numeric NaN and float Infinity as null (JSON has no such numbers). */
	c = column(&rec.columns, "nan");
	assert_span_text(c.value, JSON_NULL, "null");
	c = column(&rec.columns, "inf");
	assert_span_text(c.value, JSON_NULL, "null");
	assert_span_text(c.type, JSON_STRING, "double precision");
	c = column(&rec.columns, "ninf");
	assert_int_equal(c.value.kind, JSON_NULL);
	c = column(&rec.columns, "f4");
	assert_span_text(c.value, JSON_NUMBER, "1.5");
	c = column(&rec.columns, "txt");
	assert_true(c.value.escaped);
	assert_span_decoded(c.value, TRICKY_TEXT);
	c = column(&rec.columns, "vc");
	assert_span_text(c.value, JSON_STRING, "plain ascii");
	assert_span_text(c.type, JSON_STRING, "character varying(40)");
	c = column(&rec.columns, "by");
	assert_span_text(c.value, JSON_STRING, "00010200ff00");
	assert_span_text(c.type, JSON_STRING, "bytea");
	c = column(&rec.columns, "jb");
	assert_span_decoded(c.value, JB_TEXT);
	c = column(&rec.columns, "js");
	assert_span_decoded(c.value, JS_TEXT);
	c = column(&rec.columns, "ints");
	assert_span_text(c.value, JSON_STRING, "{1,NULL,3}");
	assert_span_text(c.type, JSON_STRING, "integer[]");
	c = column(&rec.columns, "texts");
	assert_span_decoded(c.value, "{\"a\\\"b\",\"c\\\\d\",NULL}");
	c = column(&rec.columns, "ts");
	assert_span_text(c.value, JSON_STRING, "2024-02-29 12:34:56.789+00");
	assert_span_text(c.type, JSON_STRING, "timestamp with time zone");
	c = column(&rec.columns, "flag");
	assert_span_text(c.value, JSON_TRUE, "true");
	c = column(&rec.columns, "u");
	assert_span_text(c.value, JSON_STRING, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
	c = column(&rec.columns, "nothing");
	assert_int_equal(c.value.kind, JSON_NULL);
}

static void test_sample_insert_all_nulls(void **state)
{
	(void)state;
	w2j_record rec;
	json_cursor it;
	w2j_column c;
	int r, n = 0;

	decode_line(find_record('I', "types", 1), &rec);
	assert_int_equal(w2j_columns_open(&it, &rec.columns), 0);
	while ((r = w2j_columns_next(&it, &c)) == 1) {
		if (span_eq(&c.name, "id"))
			assert_span_text(c.value, JSON_NUMBER, "2");
		else
			assert_int_equal(c.value.kind, JSON_NULL);
		assert_int_equal(c.type.kind, JSON_STRING);
		n++;
	}
	assert_int_equal(r, 0);
	assert_int_equal(n, 18);
}

static void test_sample_updates_and_deletes(void **state)
{
	(void)state;
	w2j_record rec;
	w2j_column c;

	/* UPDATE ... WHERE id = 1: the identity is the primary key. */
	decode_line(find_record('U', "types", 0), &rec);
	assert_int_equal(rec.columns.kind, JSON_ARRAY);
	assert_int_equal(count_columns(&rec.identity), 1);
	c = column(&rec.identity, "id");
	assert_span_text(c.value, JSON_NUMBER, "1");
	c = column(&rec.columns, "big");
	assert_span_text(c.value, JSON_NUMBER, "-9007199254740993");
	c = column(&rec.columns, "txt");
	assert_span_text(c.value, JSON_STRING, "updated");
	c = column(&rec.columns, "jb");
	assert_span_decoded(c.value, JB_TEXT);

	/* The key changed from 2 to 3: old key in identity, new in columns. */
	decode_line(find_record('U', "types", 1), &rec);
	c = column(&rec.identity, "id");
	assert_span_text(c.value, JSON_NUMBER, "2");
	c = column(&rec.columns, "id");
	assert_span_text(c.value, JSON_NUMBER, "3");

	decode_line(find_record('D', "types", 0), &rec);
	assert_int_equal(rec.columns.kind, JSON_NONE);
	assert_int_equal(count_columns(&rec.identity), 1);
	c = column(&rec.identity, "id");
	assert_span_text(c.value, JSON_NUMBER, "3");

	/* REPLICA IDENTITY FULL: the whole old row. */
	decode_line(find_record('U', "full_ident", 0), &rec);
	assert_int_equal(count_columns(&rec.identity), 2);
	c = column(&rec.identity, "note");
	assert_span_text(c.value, JSON_STRING, "before");
	c = column(&rec.columns, "note");
	assert_span_text(c.value, JSON_STRING, "after");
	assert_span_text(c.type, JSON_STRING, "text");
	decode_line(find_record('D', "full_ident", 0), &rec);
	assert_int_equal(count_columns(&rec.identity), 2);
	c = column(&rec.identity, "note");
	assert_span_text(c.value, JSON_STRING, "after");
	c = column(&rec.identity, "id");
	assert_span_text(c.value, JSON_NUMBER, "1");
	assert_span_text(c.type, JSON_STRING, "integer");
}

static void test_sample_messages(void **state)
{
	(void)state;
	w2j_record rec;
	size_t i;

	/* pg_logical_emit_message(true, 'p', 'c'): inside its own transaction. */
	i = find_record('M', NULL, 0);
	decode_line(i, &rec);
	assert_true(rec.transactional);
	assert_true(rec.has_xid);
	assert_span_text(rec.prefix, JSON_STRING, "p");
	assert_span_text(rec.content, JSON_STRING, "c");
	assert_int_equal(rec.schema.kind, JSON_NONE);
	w2j_record b, cm;
	decode_line(i - 1, &b);
	decode_line(i + 1, &cm);
	assert_int_equal(b.action, W2J_BEGIN);
	assert_int_equal(cm.action, W2J_COMMIT);
	assert_int_equal(b.xid, rec.xid);

	/* (false, 'p', 'c'): alone, no xid, null timestamp. */
	decode_line(find_record('M', NULL, 1), &rec);
	assert_false(rec.transactional);
	assert_false(rec.has_xid);
	assert_int_equal(rec.timestamp.kind, JSON_NULL);
	assert_true(rec.lsn != LSN_INVALID);
	assert_span_text(rec.prefix, JSON_STRING, "p");
	assert_span_text(rec.content, JSON_STRING, "c");

	/* (false, 'pre"fix', 'con\tent é'): escaped prefix and content. */
	decode_line(find_record('M', NULL, 2), &rec);
	assert_false(rec.transactional);
	assert_span_decoded(rec.prefix, "pre\"fix");
	assert_span_decoded(rec.content, "con\\tent \xC3\xA9");

	/* The transactional marker between two outbox inserts. */
	decode_line(find_record('M', NULL, 3), &rec);
	assert_true(rec.transactional);
	assert_true(rec.has_xid);
	assert_span_text(rec.prefix, JSON_STRING, "outbox");
	assert_span_text(rec.content, JSON_STRING, "marker");
}

static void test_sample_truncate(void **state)
{
	(void)state;
	w2j_record t1, t2;
	size_t i = find_record('T', NULL, 0);

	decode_line(i, &t1);
	decode_line(i + 1, &t2);
	assert_int_equal(t2.action, W2J_TRUNCATE);
	assert_span_text(t1.schema, JSON_STRING, "public");
	assert_span_text(t1.table, JSON_STRING, "types");
	assert_span_text(t2.table, JSON_STRING, "full_ident");
	assert_int_equal(t1.columns.kind, JSON_NONE);
	assert_int_equal(t1.identity.kind, JSON_NONE);
	assert_int_equal(t1.xid, t2.xid);
	assert_int_equal(t1.lsn, t2.lsn);
}

static void test_sample_outbox_inserts(void **state)
{
	(void)state;
	w2j_record rec;
	w2j_column c;

	decode_line(find_record('I', "events", 0), &rec);
	assert_span_text(rec.schema, JSON_STRING, "outbox");
	c = column(&rec.columns, "aggregate_type");
	assert_span_text(c.value, JSON_STRING, "order");
	c = column(&rec.columns, "payload");
	assert_span_text(c.type, JSON_STRING, "jsonb");
	assert_span_decoded(c.value,
			    "{\"id\": 9007199254740993, \"gift\": false, \"memo\": null, \"note\": "
			    "\"say \\\"hi\\\" \\\\ caf\xC3\xA9 \xF0\x9F\x98\x80\", \"lines\": [1, 2.50, "
			    "-0.00000000005], \"total\": 12345678901234567890.123}");
	c = column(&rec.columns, "id");
	assert_int_equal(c.value.kind, JSON_STRING);
	assert_int_equal(c.value.len, 36);

	decode_line(find_record('I', "events", 1), &rec);
	c = column(&rec.columns, "aggregate_id");
	assert_span_text(c.value, JSON_STRING, "c\xC3\xA9-7");
	c = column(&rec.columns, "headers");
	assert_int_equal(c.value.kind, JSON_NULL);
}

/* Every proper prefix of every sample line fails with a reason; nothing reads past the end. */
static void test_sample_truncated_records_fail_cleanly(void **state)
{
	(void)state;
	for (size_t i = 0; i < S.recs.n_lines; i++) {
		const unit_line *l = &S.recs.lines[i];
		for (size_t n = 0; n < l->len; n++) {
			char *buf = unit_dup(l->ptr, n);
			w2j_record rec;
			const char *why = NULL;
			if (w2j_decode(buf, n, &rec, &why) != -1)
				fail_msg("line %zu: a prefix of %zu bytes decoded", i + 1, n);
			assert_non_null(why);
			free(buf);
		}
	}
}

/*
 * Decodes a hand-written record: the return value, with why checked to be set on errors.
 * The record stays usable until the next call.
 */
static int decode_text(const char *text, w2j_record *rec, const char **why)
{
	size_t len = strlen(text);
	int r;

	free(last_text);
	last_text = unit_dup(text, len);
	*why = NULL;
	r = w2j_decode(last_text, len, rec, why);
	if (r != 0 && r != -1)
		fail_msg("w2j_decode returned %d", r);
	if (r == -1 && (!*why || !**why))
		fail_msg("no reason for rejecting %s", text);
	return r;
}

static void test_malformed_records_rejected_with_reason(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *why; /* a word the reason must hold */
	} bad[] = {
		{"", "JSON object"},
		{"not json", "JSON object"},
		{"[]", "JSON object"},
		{"\"action\"", "JSON object"},
		{"{\"action\":\"I\"", "malformed"},
		{"{\"action\":\"C\",\"nextlsn\":\"0/1\"} x", "malformed"},
		{"{\"action\":\"C\",\"nextlsn\":\"0/1\",}", "malformed"},
		{"{\"action\" \"C\"}", "malformed"},
		{"{}", "action"},
		{"{\"xid\":1,\"nextlsn\":\"0/1\"}", "action"},
		{"{\"action\":\"X\",\"nextlsn\":\"0/1\"}", "unknown action"},
		{"{\"action\":\"b\",\"nextlsn\":\"0/1\"}", "unknown action"},
		{"{\"action\":\"BB\",\"nextlsn\":\"0/1\"}", "action"},
		{"{\"action\":\"\",\"nextlsn\":\"0/1\"}", "action"},
		{"{\"action\":\"\\u0042\",\"nextlsn\":\"0/1\"}", "action"},
		{"{\"action\":66,\"nextlsn\":\"0/1\"}", "action"},
		{"{\"action\":null}", "action"},
		{"{\"action\":\"B\",\"xid\":1,\"lsn\":\"0/1\"}", "nextlsn"},
		{"{\"action\":\"C\",\"xid\":1}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/0\"}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":null}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":5}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"zz\"}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1/2\"}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"0\\/1\"}", "nextlsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"lsn\":1}", "lsn"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":\"1\"}", "xid"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":-1}", "xid"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":1.5}", "xid"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":1e3}", "xid"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":18446744073709551616}", "xid"},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\",\"xid\":true}", "xid"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\"}", "columns"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":{}}", "columns"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":null}", "columns"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":\"[]\"}", "columns"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"columns\":[]}", "table"},
		{"{\"action\":\"I\",\"table\":\"t\",\"columns\":[]}", "schema"},
		{"{\"action\":\"I\",\"schema\":5,\"table\":\"t\",\"columns\":[]}", "schema"},
		{"{\"action\":\"I\",\"schema\":\"s\",\"table\":[],\"columns\":[]}", "table"},
		{"{\"action\":\"U\",\"schema\":\"s\",\"table\":\"t\",\"identity\":[]}", "columns"},
		{"{\"action\":\"U\",\"schema\":\"s\",\"table\":\"t\",\"columns\":[],\"identity\":{}}",
		 "identity"},
		{"{\"action\":\"D\",\"schema\":\"s\",\"table\":\"t\"}", "identity"},
		{"{\"action\":\"D\",\"schema\":\"s\",\"table\":\"t\",\"identity\":null}", "identity"},
		{"{\"action\":\"D\",\"schema\":\"s\",\"table\":\"t\",\"columns\":[]}", "identity"},
		{"{\"action\":\"T\",\"schema\":\"s\"}", "table"},
		{"{\"action\":\"T\",\"schema\":\"s\",\"table\":\"t\",\"identity\":1}", "identity"},
		{"{\"action\":\"M\",\"prefix\":\"p\"}", "content"},
		{"{\"action\":\"M\",\"content\":\"c\"}", "prefix"},
		{"{\"action\":\"M\",\"prefix\":null,\"content\":\"c\"}", "prefix"},
		{"{\"action\":\"M\",\"prefix\":\"p\",\"content\":1}", "content"},
		{"{\"action\":\"M\",\"prefix\":\"p\",\"content\":\"c\",\"lsn\":\"x\"}", "lsn"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w2j_record rec;
		const char *why;
		if (decode_text(bad[i].text, &rec, &why) != -1)
			fail_msg("accepted %s", bad[i].text);
		if (!strstr(why, bad[i].why))
			fail_msg("%s: reason '%s' does not mention '%s'", bad[i].text, why, bad[i].why);
	}
}

static void test_hand_written_records(void **state)
{
	(void)state;
	w2j_record rec;
	const char *why;

	/* Key order does not matter, unknown keys are ignored, whitespace is allowed. */
	assert_int_equal(decode_text(" { \"nextlsn\" : \"16/B374D848\" , \"future\": {\"x\": [1]},"
				     "\"xid\": 18446744073709551615, \"action\": \"C\" } \n",
				     &rec, &why), 0);
	assert_int_equal(rec.action, W2J_COMMIT);
	assert_int_equal(rec.nextlsn, 0x16B374D848ull);
	assert_true(rec.has_xid);
	assert_int_equal(rec.xid, UINT64_MAX);
	assert_int_equal(rec.lsn, LSN_INVALID);

	/* B without xid (include-xids off) is fine; the later of duplicate keys wins. */
	assert_int_equal(decode_text("{\"action\":\"B\",\"nextlsn\":\"0/1\",\"nextlsn\":\"0/2\"}", &rec, &why), 0);
	assert_false(rec.has_xid);
	assert_int_equal(rec.nextlsn, 2);

	/* An insert without include-types: the columns carry no type. */
	assert_int_equal(decode_text("{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\","
				     "\"columns\":[{\"name\":\"a\",\"value\":\"x\"},{\"value\":[1,{}],\"name\":\"b\"}]}",
				     &rec, &why), 0);
	assert_int_equal(count_columns(&rec.columns), 2);
	w2j_column c = column(&rec.columns, "a");
	assert_int_equal(c.type.kind, JSON_NONE);
	assert_span_text(c.value, JSON_STRING, "x");
	c = column(&rec.columns, "b");
	assert_span_text(c.value, JSON_ARRAY, "[1,{}]");

	/* An insert with an empty columns array (a table without columns). */
	assert_int_equal(decode_text("{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":[]}",
				     &rec, &why), 0);
	assert_int_equal(count_columns(&rec.columns), 0);

	/* A message with transactional absent counts as non-transactional. */
	assert_int_equal(decode_text("{\"action\":\"M\",\"prefix\":\"\",\"content\":\"\"}", &rec, &why), 0);
	assert_false(rec.transactional);
	assert_int_equal(rec.prefix.len, 0);
	assert_int_equal(decode_text("{\"action\":\"M\",\"transactional\":true,\"xid\":null,"
				     "\"prefix\":\"a\",\"content\":\"b\"}", &rec, &why), 0);
	assert_true(rec.transactional);
	assert_false(rec.has_xid);

	/* A truncate and a delete need no columns. */
	assert_int_equal(decode_text("{\"action\":\"T\",\"schema\":\"s\",\"table\":\"t\"}", &rec, &why), 0);
	assert_int_equal(decode_text("{\"action\":\"D\",\"schema\":\"s\",\"table\":\"t\",\"identity\":[]}",
				     &rec, &why), 0);
	/* A second decode into the same record starts from scratch. */
	assert_int_equal(rec.columns.kind, JSON_NONE);
	assert_false(rec.transactional);
}

static void test_malformed_columns(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"[1]",
		"[\"a\"]",
		"[[]]",
		"[{}]",
		"[{\"value\":1}]",
		"[{\"name\":1,\"value\":1}]",
		"[{\"name\":null}]",
		"[{\"name\":\"a\"},2]",
		"[{\"name\":\"a\"} {\"name\":\"b\"}]",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char rec_text[256];
		w2j_record rec;
		const char *why;
		snprintf(rec_text, sizeof(rec_text),
			 "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":%s}", bad[i]);
		if (decode_text(rec_text, &rec, &why) != 0) {
			/* Not even valid JSON: rejected by the decoder already. */
			continue;
		}
		if (count_columns(&rec.columns) != -1)
			fail_msg("columns %s iterated without error", bad[i]);
		if (rec.cols)
			fail_msg("columns %s kept by the decoder", bad[i]);
	}
	/* A span that is not an array cannot be opened. */
	json_cursor it;
	json_span none = {0};
	assert_int_equal(w2j_columns_open(&it, &none), -1);
}

static bool same_span(const json_span *a, const json_span *b)
{
	return a->kind == b->kind && a->ptr == b->ptr && a->len == b->len && a->escaped == b->escaped;
}

/* The columns w2j_decode kept are the ones iterating the array gives, or none were kept. */
static void check_kept_columns(const w2j_record *rec)
{
	json_cursor it;
	w2j_column col;
	size_t n = 0;
	int r;

	if (!rec->cols)
		return;
	assert_int_equal(rec->columns.kind, JSON_ARRAY);
	assert_int_equal(w2j_columns_open(&it, &rec->columns), 0);
	while ((r = w2j_columns_next(&it, &col)) == 1) {
		assert_true(n < rec->n_cols);
		assert_true(same_span(&rec->cols[n].name, &col.name));
		assert_true(same_span(&rec->cols[n].type, &col.type));
		assert_true(same_span(&rec->cols[n].value, &col.value));
		n++;
	}
	assert_int_equal(r, 0);
	assert_int_equal(n, rec->n_cols);
}

/* Records of n columns "c0".."c<n-1>", each an integer value. */
static char *wide_record(int n)
{
	size_t cap = 64 + (size_t)n * 40, len;
	char *text = malloc(cap);

	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\":[");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len, "%s{\"name\":\"c%d\",\"value\":%d}",
					i ? "," : "", i, i);
	snprintf(text + len, cap - len, "]}");
	return text;
}

/* w2j_decode keeps the columns as it reads them (one pass); the router uses them. */
static void test_kept_columns(void **state)
{
	(void)state;
	w2j_record rec;
	const char *why;
	size_t kept = 0;

	for (size_t i = 0; i < S.recs.n_lines; i++) {
		decode_line(i, &rec);
		check_kept_columns(&rec);
		if (rec.columns.kind == JSON_ARRAY) {
			assert_non_null(rec.cols); /* real wal2json columns are always kept */
			assert_int_equal((int)rec.n_cols, count_columns(&rec.columns));
			kept++;
		} else {
			assert_null(rec.cols);
		}
	}
	assert_true(kept > 0);
	/* The span covers the array as written, whitespace inside included. */
	assert_int_equal(decode_text("{\"action\":\"I\",\"schema\":\"s\",\"table\":\"t\",\"columns\": "
				     "[ {\"name\":\"a\" , \"value\":1} ] }", &rec, &why), 0);
	assert_span_text(rec.columns, JSON_ARRAY, "[ {\"name\":\"a\" , \"value\":1} ]");
	assert_int_equal(rec.n_cols, 1);
	check_kept_columns(&rec);
	/* Up to W2J_KEPT_COLUMNS are kept; a wider row is left to iteration. */
	for (int n = W2J_KEPT_COLUMNS; n <= W2J_KEPT_COLUMNS + 1; n++) {
		char *text = wide_record(n);
		assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
		assert_int_equal(count_columns(&rec.columns), n);
		if (n <= W2J_KEPT_COLUMNS) {
			assert_non_null(rec.cols);
			assert_int_equal((int)rec.n_cols, n);
			check_kept_columns(&rec);
		} else {
			assert_null(rec.cols);
		}
		free(text);
	}
}

/* A small deterministic PRNG for the mutation test (xorshift64*). */
static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545F4914F6CDD1Dull;
}

/* Decodes a record and walks its columns and identity like the router would. */
static void decode_and_walk(const char *buf, size_t len)
{
	w2j_record rec;
	const char *why = NULL;
	json_cursor it;
	w2j_column col;
	char *tmp;

	if (w2j_decode(buf, len, &rec, &why) < 0) {
		assert_non_null(why);
		return;
	}
	check_kept_columns(&rec);
	const json_span *arrays[] = {&rec.columns, &rec.identity};
	for (int a = 0; a < 2; a++) {
		if (w2j_columns_open(&it, arrays[a]) < 0)
			continue;
		while (w2j_columns_next(&it, &col) == 1) {
			if (col.value.kind != JSON_STRING)
				continue;
			tmp = malloc(col.value.len + 1);
			assert_non_null(tmp);
			(void)json_unescape(&col.value, tmp);
			free(tmp);
		}
	}
}

/* Random byte edits of the sample lines: each decode returns 0 or -1 and never misbehaves. */
static void test_mutated_records_never_crash(void **state)
{
	(void)state;
	static const char alphabet[] = "{}[]\",:\\u0123456789abcdefABCDEFtrnl.-+eE \t\n\x01\x7f\xC3\xFF";

	for (int round = 0; round < 20000; round++) {
		const unit_line *l = &S.recs.lines[rnd() % S.recs.n_lines];
		size_t len = l->len;
		char *buf = malloc(len + 8);
		assert_non_null(buf);
		memcpy(buf, l->ptr, len);
		int edits = 1 + (int)(rnd() % 4);
		for (int e = 0; e < edits && len > 0; e++) {
			size_t at = rnd() % len;
			switch (rnd() % 3) {
			case 0: /* replace */
				buf[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
				break;
			case 1: /* delete */
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
				break;
			default: /* truncate */
				len = at;
				break;
			}
		}
		char *exact = unit_dup(buf, len);
		decode_and_walk(exact, len);
		free(exact);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample_every_record_matches_slot_metadata),
		cmocka_unit_test(test_sample_insert_all_types),
		cmocka_unit_test(test_sample_insert_all_nulls),
		cmocka_unit_test(test_sample_updates_and_deletes),
		cmocka_unit_test(test_sample_messages),
		cmocka_unit_test(test_sample_truncate),
		cmocka_unit_test(test_sample_outbox_inserts),
		cmocka_unit_test(test_sample_truncated_records_fail_cleanly),
		cmocka_unit_test(test_malformed_records_rejected_with_reason),
		cmocka_unit_test(test_hand_written_records),
		cmocka_unit_test(test_malformed_columns),
		cmocka_unit_test(test_kept_columns),
		cmocka_unit_test(test_mutated_records_never_crash),
	};
	return cmocka_run_group_tests_name("w2j", tests, load_sample, free_sample);
}
