/* test_capture.c: the change envelope (ops, keys, TOAST, json values) and snapshot progress texts. */
#include "unit.h"

#include "capture.h"
#include "pgtime.h"
#include "snapshot.h"

/* A config with one capture entry, and a table as the catalog would describe it. */
typedef struct {
	relay_config cfg;
	capture_config entry;
	capture_table t;
	capture_column cols[4];
	int keys[1];
	char *excluded[1];
	capture *cap;
} fixture;

static void setup_table(fixture *f, char replident, bool exclude_secret)
{
	memset(f, 0, sizeof(*f));
	f->cfg.captures = &f->entry;
	f->cfg.n_captures = 1;
	f->cfg.slot = "s1";
	f->cfg.snapshot_chunk_rows = 100;
	f->entry.tables = "public.users";
	f->entry.tombstones = true;
	if (exclude_secret) {
		f->excluded[0] = "secret";
		f->entry.exclude_columns = f->excluded;
		f->entry.n_exclude_columns = 1;
	}
	const char *names[] = {"id", "body", "secret", "doc"};
	for (int i = 0; i < 4; i++) {
		f->cols[i].name = (char *)names[i];
		f->cols[i].published = !(exclude_secret && i == 2);
	}
	f->t.schema = "public";
	f->t.table = "users";
	f->t.name = "public.users";
	f->t.cfg = &f->entry;
	f->t.topic = "cdc.public.users";
	f->t.cols = f->cols;
	f->t.n_cols = 4;
	f->keys[0] = 0;
	f->t.keys = f->keys;
	f->t.n_keys = 1;
	f->t.replident = replident;
	f->cap = capture_new(&f->cfg);
}

/* Builds the record of one wal2json text; returns the value as a string (static buffer). */
static const char *build(fixture *f, const char *text, route_msg *m)
{
	static char out[8192];
	w2j_record rec;
	const char *why = NULL;

	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	capture_read(f->cap, &rec);
	if (capture_build(f->cap, &f->t, &rec, m, &why) < 0)
		return why;
	snprintf(out, sizeof(out), "%.*s", (int)m->value_len, m->value);
	return out;
}

#define COL(n, t, v) "{\"name\":\"" n "\",\"type\":\"" t "\",\"value\":" v "}"
#define HEAD(a) "{\"action\":\"" a "\",\"xid\":77,\"lsn\":\"0/16B3748\",\"timestamp\":\"2026-11-22 10:00:00+00\",\"schema\":\"public\",\"table\":\"users\""
#define SOURCE ",\"source\":{\"lsn\":\"0/16B3748\",\"xid\":77,\"ts\":\"2026-11-22 10:00:00+00\",\"schema\":\"public\",\"table\":\"users\",\"snapshot\":false}"

static void test_insert_envelope(void **state)
{
	fixture f;
	route_msg m;

	(void)state;
	setup_table(&f, 'd', true);
	const char *v = build(&f, HEAD("I") ",\"columns\":[" COL("id", "bigint", "12345678901234567890")
				  "," COL("body", "text", "\"a\\\"b\"") "," COL("secret", "text", "\"pw\"")
				  "," COL("doc", "jsonb", "\"{\\\"k\\\": [1, 2.50]}\"") "]}", &m);
	assert_string_equal(v, "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":12345678901234567890,"
			       "\"body\":\"a\\\"b\",\"doc\":{\"k\": [1, 2.50]}}" SOURCE "}");
	assert_string_equal(m.topic, "cdc.public.users");
	assert_memory_equal(m.key, "{\"id\":12345678901234567890}", m.key_len);
	capture_free(f.cap);
}

static void test_update_unchanged_toast(void **state)
{
	fixture f;
	route_msg m;

	(void)state;
	setup_table(&f, 'd', false);
	/* body is TOASTed and unchanged: wal2json leaves it out. */
	const char *v = build(&f, HEAD("U") ",\"columns\":[" COL("id", "int", "1") "," COL("secret", "text", "null")
				  "," COL("doc", "json", "null") "],\"identity\":[" COL("id", "int", "1") "]}", &m);
	assert_string_equal(v, "{\"op\":\"u\",\"before\":null,\"after\":{\"id\":1,\"secret\":null,\"doc\":null}"
			       SOURCE ",\"unchanged_toast\":[\"body\"]}");
	capture_free(f.cap);
}

static void test_update_full_identity_fills_toast(void **state)
{
	fixture f;
	route_msg m;

	(void)state;
	setup_table(&f, 'f', false);
	const char *v = build(&f, HEAD("U") ",\"columns\":[" COL("id", "int", "1") "," COL("secret", "text", "\"n\"")
				  "," COL("doc", "json", "null") "],\"identity\":[" COL("id", "int", "1")
				  "," COL("body", "text", "\"long\"") "," COL("secret", "text", "\"o\"")
				  "," COL("doc", "json", "null") "]}", &m);
	assert_string_equal(v, "{\"op\":\"u\",\"before\":{\"id\":1,\"body\":\"long\",\"secret\":\"o\",\"doc\":null},"
			       "\"after\":{\"id\":1,\"secret\":\"n\",\"doc\":null,\"body\":\"long\"}" SOURCE "}");
	capture_free(f.cap);
}

/* Before: the change's own identity when it is the whole old row, whatever the catalog says. */
static void test_update_before_follows_the_identity_not_the_catalog(void **state)
{
	fixture f;
	route_msg m;

	(void)state;
	setup_table(&f, 'd', false); /* read before ALTER TABLE ... REPLICA IDENTITY FULL */
	const char *v = build(&f, HEAD("U") ",\"columns\":[" COL("id", "int", "1") "," COL("body", "text", "\"b\"")
				  "," COL("secret", "text", "\"n\"") "," COL("doc", "json", "null")
				  "],\"identity\":[" COL("id", "int", "1") "," COL("body", "text", "\"b\"")
				  "," COL("secret", "text", "\"o\"") "," COL("doc", "json", "null") "]}", &m);
	assert_string_equal(v, "{\"op\":\"u\",\"before\":{\"id\":1,\"body\":\"b\",\"secret\":\"o\",\"doc\":null},"
			       "\"after\":{\"id\":1,\"body\":\"b\",\"secret\":\"n\",\"doc\":null}" SOURCE "}");
	capture_free(f.cap);
}

/* The toast check of an update without body, against an entry read at read_us with ddl_us. */
static capture_toast toast_check(fixture *f, int64_t read_delta, int64_t ddl_delta, bool may_read,
				 const char **value, route_msg *m)
{
	static const char text[] = HEAD("U") ",\"columns\":[" COL("id", "int", "1") "," COL("secret", "text", "null")
				   "," COL("doc", "json", "null") "],\"identity\":[" COL("id", "int", "1") "]}";
	int64_t commit_us;
	w2j_record rec;
	const char *why = NULL;
	capture_toast res;

	assert_true(pgtime_parse_us("2026-11-22 10:00:00+00", 22, &commit_us));
	f->t.read_us = commit_us + read_delta;
	f->t.ddl_us = commit_us + ddl_delta;
	f->t.ddl_known = true;
	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	capture_read(f->cap, &rec);
	res = capture_toast_check(f->cap, &f->t, &rec, may_read);
	static char out[4096];

	assert_int_equal(capture_build(f->cap, &f->t, &rec, m, &why), 0);
	snprintf(out, sizeof(out), "%.*s", (int)m->value_len, m->value);
	*value = out;
	return res;
}

/* unchanged_toast: exact when the entry is the table of the change, else null, never a guess. */
static void test_update_unchanged_toast_known_or_null(void **state)
{
	fixture f;
	route_msg m;
	const char *v;

	(void)state;
	setup_table(&f, 'd', false);
	/* Read after the commit, last ALTER before it: exact. */
	assert_int_equal(toast_check(&f, 5, -5, true, &v, &m), CAPTURE_TOAST_EXACT);
	assert_non_null(strstr(v, ",\"unchanged_toast\":[\"body\"]}"));
	/* Read after the commit, last ALTER after it too: the entry may not be its table. */
	assert_int_equal(toast_check(&f, 10, 5, true, &v, &m), CAPTURE_TOAST_UNKNOWN);
	assert_non_null(strstr(v, ",\"unchanged_toast\":null}"));
	/* Read before the commit with a column missing: read again, then (still before) null. */
	assert_int_equal(toast_check(&f, -5, -10, true, &v, &m), CAPTURE_TOAST_READ_AGAIN);
	assert_int_equal(toast_check(&f, -5, -10, false, &v, &m), CAPTURE_TOAST_UNKNOWN);
	assert_non_null(strstr(v, ",\"unchanged_toast\":null}"));
	capture_free(f.cap);
}

static void test_delete_truncate_and_key_change(void **state)
{
	fixture f;
	route_msg m;
	w2j_record rec;
	const char *why;

	(void)state;
	setup_table(&f, 'd', false);
	assert_string_equal(build(&f, HEAD("D") ",\"identity\":[" COL("id", "int", "9") "]}", &m),
			    "{\"op\":\"d\",\"before\":{\"id\":9},\"after\":null" SOURCE "}");
	assert_memory_equal(m.key, "{\"id\":9}", m.key_len);
	assert_string_equal(build(&f, HEAD("T") "}", &m),
			    "{\"op\":\"t\",\"before\":null,\"after\":null" SOURCE "}");
	assert_null(m.key);
	/* A key change: the old key's delete comes first. */
	const char *u = HEAD("U") ",\"columns\":[" COL("id", "int", "10") "],\"identity\":[" COL("id", "int", "9") "]}";
	assert_int_equal(w2j_decode(u, strlen(u), &rec, &why), 0);
	capture_read(f.cap, &rec);
	assert_int_equal(capture_build_key_change(f.cap, &f.t, &rec, &m), 1);
	assert_memory_equal(m.key, "{\"id\":9}", m.key_len);
	assert_memory_equal(m.value, "{\"op\":\"d\",\"before\":{\"id\":9},\"after\":null", 38);
	/* The same key: no delete. */
	const char *same = HEAD("U") ",\"columns\":[" COL("id", "int", "9") "],\"identity\":[" COL("id", "int", "9") "]}";
	assert_int_equal(w2j_decode(same, strlen(same), &rec, &why), 0);
	capture_read(f.cap, &rec);
	assert_int_equal(capture_build_key_change(f.cap, &f.t, &rec, &m), 0);
	capture_free(f.cap);
}

static void test_missing_key_and_refusal(void **state)
{
	fixture f;
	route_msg m;

	(void)state;
	setup_table(&f, 'd', false);
	assert_non_null(strstr(build(&f, HEAD("I") ",\"columns\":[" COL("body", "text", "\"x\"") "]}", &m),
			       "a key column has no value"));
	f.t.refusal = "the table has no primary key";
	assert_string_equal(build(&f, HEAD("I") ",\"columns\":[" COL("id", "int", "1") "]}", &m),
			    "the table has no primary key");
	capture_free(f.cap);
}

/* Whether one wal2json text fits the fixture's columns (capture_stale inverted). */
static bool fits(fixture *f, const char *text)
{
	w2j_record rec;
	const char *why = NULL;

	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	capture_read(f->cap, &rec);
	return !capture_stale(f->cap, &f->t, &rec, 0x16B3750 /* the commit's end */);
}

/* A change that does not fit the columns as read asks for the catalog again (ALTER TABLE). */
static void test_stale_catalog(void **state)
{
	fixture f;

	(void)state;
	setup_table(&f, 'd', false);
	f.cols[1].toastable = f.cols[2].toastable = f.cols[3].toastable = true;
	const char *all = COL("id", "int", "1") "," COL("body", "text", "null") ","
		COL("secret", "text", "null") "," COL("doc", "json", "null");
	char text[1024];
	snprintf(text, sizeof(text), HEAD("I") ",\"columns\":[%s]}", all);
	assert_true(fits(&f, text));
	/* An insert without a column: it was dropped. */
	assert_false(fits(&f, HEAD("I") ",\"columns\":[" COL("id", "int", "1") "]}"));
	/* A column the catalog does not know: added or renamed. */
	snprintf(text, sizeof(text), HEAD("I") ",\"columns\":[%s," COL("new", "int", "2") "]}", all);
	assert_false(fits(&f, text));
	/* An update may leave out TOASTed columns, never a fixed-length one. */
	assert_true(fits(&f, HEAD("U") ",\"columns\":[" COL("id", "int", "1") "," COL("doc", "json", "null")
			 "],\"identity\":[" COL("id", "int", "1") "]}"));
	assert_false(fits(&f, HEAD("U") ",\"columns\":[" COL("body", "text", "null")
			  "],\"identity\":[" COL("id", "int", "1") "]}"));
	/* A delete carries the identity only; its key renamed is not a column. */
	assert_true(fits(&f, HEAD("D") ",\"identity\":[" COL("id", "int", "1") "]}"));
	assert_false(fits(&f, HEAD("D") ",\"identity\":[" COL("uid", "int", "1") "]}"));
	/* Transactions that committed before the catalog was read are not compared: it saw them. */
	f.t.catalog_lsn = 0x16B3750;
	assert_true(fits(&f, HEAD("I") ",\"columns\":[" COL("id", "int", "1") "]}"));
	capture_free(f.cap);
}

/*
 * An Avro capture also asks for the catalog again when a change's types map to other Avro types
 * (ALTER COLUMN TYPE), a NOT NULL column is null (DROP NOT NULL), or the identity does not fit
 * the replica identity; types that map alike do not.
 */
static void test_stale_catalog_of_an_avro_capture_compares_types_nulls_and_identity(void **state)
{
	fixture f;

	(void)state;
	setup_table(&f, 'd', false);
	f.entry.format = "avro";
	const char *types[] = {"integer", "real", "bytea", "json"};
	for (int i = 0; i < 4; i++)
		f.cols[i].type_name = (char *)types[i];
	f.cols[1].not_null = true;
#define ROW(body_type, body, secret_type) COL("id", "integer", "1") "," COL("body", body_type, body) \
	"," COL("secret", secret_type, "\"00\"") "," COL("doc", "json", "null")
	assert_true(fits(&f, HEAD("I") ",\"columns\":[" ROW("real", "1.5", "bytea") "]}"));
	assert_false(fits(&f, HEAD("I") ",\"columns\":[" ROW("double precision", "1.5", "bytea") "]}"));
	assert_false(fits(&f, HEAD("I") ",\"columns\":[" ROW("real", "1.5", "text") "]}"));
	assert_false(fits(&f, HEAD("I") ",\"columns\":[" ROW("real", "null", "bytea") "]}"));
	f.cols[2].type_name = "text";
	assert_true(fits(&f, HEAD("I") ",\"columns\":[" ROW("real", "1.5", "character varying(5)") "]}"));
	/* A whole old row where the entry says the key only, and the reverse. */
	assert_false(fits(&f, HEAD("D") ",\"identity\":[" ROW("real", "1.5", "text") "]}"));
	f.t.replident = 'f';
	assert_true(fits(&f, HEAD("D") ",\"identity\":[" ROW("real", "1.5", "text") "]}"));
	assert_false(fits(&f, HEAD("D") ",\"identity\":[" COL("id", "integer", "1") "]}"));
	/* A JSON capture compares names only. */
	f.entry.format = "json";
	assert_true(fits(&f, HEAD("I") ",\"columns\":[" ROW("double precision", "null", "bytea") "]}"));
#undef ROW
	capture_free(f.cap);
}

/* Looks a record's table up without a catalog connection: -2 means "read the catalog". */
static int lookup_without_catalog(fixture *f, const char *text)
{
	w2j_record rec;
	capture_table *t = NULL;
	const char *why = NULL;
	char err[256];

	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	return capture_lookup_record(f->cap, NULL, &rec, &t, err, sizeof(err));
}

static void test_lookup_takes_names_of_any_escaped_length(void **state)
{
	fixture f;
	char text[2048], name[64 * 6 + 1] = "";

	(void)state;
	setup_table(&f, 'd', false);
	f.entry.tables = "odd.*";
	/* 63 x U+0001: a PostgreSQL name of 63 bytes, 378 bytes as wal2json escapes it. */
	for (int i = 0; i < 63; i++)
		strcat(name, "\\u0001");
	snprintf(text, sizeof(text), "{\"action\":\"I\",\"xid\":7,\"lsn\":\"0/1\",\"schema\":\"odd\","
		 "\"table\":\"%s\",\"columns\":[" COL("id", "int", "1") "]}", name);
	assert_int_equal(lookup_without_catalog(&f, text), -2); /* captured: the catalog is read */
	snprintf(text, sizeof(text), "{\"action\":\"I\",\"xid\":7,\"lsn\":\"0/1\",\"schema\":\"other\","
		 "\"table\":\"%s\",\"columns\":[" COL("id", "int", "1") "]}", name);
	assert_int_equal(lookup_without_catalog(&f, text), 0); /* not captured */
	/* A name that cannot be decoded is never taken for "not captured". */
	assert_int_equal(lookup_without_catalog(&f, "{\"action\":\"I\",\"xid\":7,\"lsn\":\"0/1\","
				"\"schema\":\"odd\",\"table\":\"a\\ud800\",\"columns\":[]}"),
			 CAPTURE_BAD_NAME);
	capture_free(f.cap);
}

static void test_snapshot_record(void **state)
{
	fixture f;
	route_msg m;
	json_span ts = {JSON_STRING, false, "2026-11-22 10:00:00+00", 22};

	(void)state;
	setup_table(&f, 'd', false);
	capture_build_snapshot(f.cap, &f.t, "{\"id\":3}", 8, "{\"id\":3,\"body\":\"x\"}", 19, 0x16B3748,
			       &ts, &m);
	assert_memory_equal(m.key, "{\"id\":3}", 8);
	assert_int_equal(m.value_len, strlen("{\"op\":\"r\",\"before\":null,\"after\":{\"id\":3,\"body\":\"x\"},"
					     "\"source\":{\"lsn\":\"0/16B3748\",\"xid\":null,\"ts\":\"2026-11-22 "
					     "10:00:00+00\",\"schema\":\"public\",\"table\":\"users\","
					     "\"snapshot\":true}}"));
	capture_free(f.cap);
}

/* The stored progress goes back and forth, and a request queues tables once. */
static void test_snapshot_state(void **state)
{
	fixture f;
	capture_table *t = NULL;
	const char *text = "{\"version\":1,\"done\":[\"public.a\"],\"queue\":[\"public.users\",\"x.\\\"q\"],"
			   "\"after\":[\"42\"],\"table_rows\":4096}";

	(void)state;
	setup_table(&f, 'd', false);
	snapshot *s = snapshot_new(&f.cfg, f.cap);
	assert_string_equal(snapshot_prefix(s), "outbox-relay:s1");
	assert_int_equal(snapshot_load_state(s, text, strlen(text)), 0);
	char *back = snapshot_state_json(s);
	assert_string_equal(back, text);
	free(back);
	assert_false(snapshot_dirty(s));
	assert_non_null(strstr(snapshot_current(s), "public.users (4096 rows so far, 1 more"));
	assert_int_equal(snapshot_tables_queued(s), 2);
	const char *req = "{\"snapshot\":[\"public.b\",\"public.b\",\"public.a\"]}";
	assert_int_equal(snapshot_message(s, req, strlen(req), &t), SNAPSHOT_MSG_REQUEST);
	assert_true(snapshot_dirty(s));
	back = snapshot_state_json(s);
	assert_non_null(strstr(back, "\"queue\":[\"public.users\",\"x.\\\"q\",\"public.b\",\"public.a\"]"));
	free(back);
	assert_int_equal(snapshot_tables_queued(s), 4);
	/* Back to what was committed. */
	snapshot_rewind(s);
	back = snapshot_state_json(s);
	assert_string_equal(back, text);
	free(back);
	assert_int_equal(snapshot_tables_queued(s), 2);
	/* No chunk was published: a commit makes no rows published. */
	assert_int_equal(snapshot_committed(s), 0);
	/* Not ours, or not JSON: ignored. */
	assert_int_equal(snapshot_message(s, "{\"chunk\":\"1-2-3\"}", 17, &t), SNAPSHOT_MSG_OTHER);
	assert_int_equal(snapshot_message(s, "nope", 4, &t), SNAPSHOT_MSG_OTHER);
	assert_int_equal(snapshot_load_state(s, "{\"done\":3}", 10), -1);
	snapshot_free(s);
	capture_free(f.cap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_envelope),
		cmocka_unit_test(test_update_unchanged_toast),
		cmocka_unit_test(test_update_full_identity_fills_toast),
		cmocka_unit_test(test_update_before_follows_the_identity_not_the_catalog),
		cmocka_unit_test(test_update_unchanged_toast_known_or_null),
		cmocka_unit_test(test_delete_truncate_and_key_change),
		cmocka_unit_test(test_missing_key_and_refusal),
		cmocka_unit_test(test_stale_catalog),
		cmocka_unit_test(test_stale_catalog_of_an_avro_capture_compares_types_nulls_and_identity),
		cmocka_unit_test(test_lookup_takes_names_of_any_escaped_length),
		cmocka_unit_test(test_snapshot_record),
		cmocka_unit_test(test_snapshot_state),
	};
	return cmocka_run_group_tests_name("capture", tests, NULL, NULL);
}
