/* test_route.c: outbox rows (real wal2json samples and hand-written ones) to Kafka records. */
#include "unit.h"

#include "config.h"
#include "route.h"
#include "w2j.h"

#define RECORDS "tests/data/wal2json/records.jsonl"

static char *default_tables[] = {"outbox.events"};

/* A configuration with only what the router reads. */
static relay_config make_cfg(const char *tmpl, char **tables, int n_tables)
{
	relay_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.topic_template = (char *)tmpl;
	cfg.tables = tables;
	cfg.n_tables = n_tables;
	return cfg;
}

/* A router for the template over outbox.events; fails the test when router_new refuses it. */
static router *new_router(const char *tmpl)
{
	relay_config cfg = make_cfg(tmpl, default_tables, 1);
	char err[512] = "";
	router *r = router_new(&cfg, err, sizeof(err));

	if (!r)
		fail_msg("router_new(%s): %s", tmpl, err);
	return r;
}

/*
 * A hand-written outbox insert. Each argument is the raw JSON text of the column's value as
 * wal2json would print it (e.g. "\"order\"" or "null"), or NULL to leave the column out.
 */
typedef struct {
	char *text;
	w2j_record rec;
} row;

static void make_row(row *out, const char *id, const char *agg_type, const char *agg_id,
		     const char *event_type, const char *payload, const char *headers)
{
	const char *names[] = {"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
	const char *types[] = {"uuid", "text", "text", "text", "jsonb", "jsonb"};
	const char *vals[] = {id, agg_type, agg_id, event_type, payload, headers};
	size_t cap = 256, len;
	const char *why = NULL;
	bool first = true;

	for (int i = 0; i < 6; i++)
		cap += vals[i] ? strlen(vals[i]) + 64 : 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	len = (size_t)snprintf(buf, cap, "{\"action\":\"I\",\"xid\":7,\"lsn\":\"0/10\",\"schema\":\"outbox\","
				       "\"table\":\"events\",\"columns\":[");
	for (int i = 0; i < 6; i++) {
		if (!vals[i])
			continue;
		len += (size_t)snprintf(buf + len, cap - len, "%s{\"name\":\"%s\",\"type\":\"%s\",\"value\":%s}",
					first ? "" : ",", names[i], types[i], vals[i]);
		first = false;
	}
	len += (size_t)snprintf(buf + len, cap - len, "]}");
	/* An exact-size copy, so that reads past the record show up under ASan. */
	out->text = unit_dup(buf, len);
	free(buf);
	if (w2j_decode(out->text, len, &out->rec, &why) != 0)
		fail_msg("hand-written row does not decode: %s", why);
}

static void free_row(row *r)
{
	free(r->text);
}

/* A row with the usual columns and the given payload and headers values. */
static void simple_row(row *out, const char *payload, const char *headers)
{
	make_row(out, "\"6f1c4b1e-0000-4000-8000-000000000001\"", "\"order\"", "\"order-1\"",
		 "\"OrderPlaced\"", payload, headers);
}

static void check_header(const route_msg *m, size_t i, const char *name, const char *value,
			 size_t value_len)
{
	assert_true(i < m->n_headers);
	const route_header *h = &m->headers[i];
	unit_bytes_equal(h->name, h->name_len, name, strlen(name), "header name", __FILE__, __LINE__);
	if (!value) {
		if (h->value)
			fail_msg("header %s: want NULL, got [%.*s]", name, (int)h->value_len, h->value);
		return;
	}
	assert_non_null(h->value);
	unit_bytes_equal(h->value, h->value_len, value, value_len, name, __FILE__, __LINE__);
}

#define HEADER(m, i, name, lit) check_header((m), (i), (name), (lit), sizeof(lit) - 1)
#define HEADER_NULL(m, i, name) check_header((m), (i), (name), NULL, 0)

/* The nth outbox.events insert of the sample file, decoded into rec (text owned by uf). */
static void sample_outbox_insert(unit_file *uf, int nth, w2j_record *rec)
{
	for (size_t i = 0; i < uf->n_lines; i++) {
		const char *why;
		if (w2j_decode(uf->lines[i].ptr, uf->lines[i].len, rec, &why) != 0)
			fail_msg("line %zu: %s", i + 1, why);
		if (rec->action == W2J_INSERT && rec->table.len == 6 &&
		    memcmp(rec->table.ptr, "events", 6) == 0 && nth-- == 0)
			return;
	}
	fail_msg("no outbox insert in %s", RECORDS);
}

/* The decoded text of a column of rec (for comparing with what the router made). */
static void column_text(const w2j_record *rec, const char *name, char *out, size_t *len)
{
	json_cursor it;
	w2j_column col;

	*len = 0;
	assert_int_equal(w2j_columns_open(&it, &rec->columns), 0);
	while (w2j_columns_next(&it, &col) == 1) {
		if (json_key_is(&col.name, name, strlen(name))) {
			long n = json_unescape(&col.value, out);
			assert_true(n >= 0);
			*len = (size_t)n;
			return;
		}
	}
	fail_msg("no column %s", name);
}

static void test_sample_outbox_rows(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	unit_file uf;
	w2j_record rec;
	route_msg m;
	const char *why = NULL;
	char id[64];
	size_t id_len;

	unit_load_lines(&uf, RECORDS);

	/* 1: payload and headers with escapes, non-ASCII, big numbers. */
	sample_outbox_insert(&uf, 0, &rec);
	assert_true(router_is_outbox(r, &rec));
	if (router_outbox(r, &rec, &m, &why) != 0)
		fail_msg("router_outbox: %s", why);
	assert_string_equal(m.topic, "outbox.order");
	assert_bytes(m.key, m.key_len, "order-42");
	assert_bytes(m.value, m.value_len,
		     "{\"id\": 9007199254740993, \"gift\": false, \"memo\": null, \"note\": \"say "
		     "\\\"hi\\\" \\\\ caf\xC3\xA9 \xF0\x9F\x98\x80\", \"lines\": [1, 2.50, "
		     "-0.00000000005], \"total\": 12345678901234567890.123}");
	assert_int_equal(m.n_headers, 8);
	column_text(&rec, "id", id, &id_len);
	assert_int_equal(id_len, 36);
	check_header(&m, 0, "event_id", id, id_len);
	HEADER(&m, 1, "event_type", "OrderPlaced");
	/* One per member, in the order jsonb keeps them (shorter keys first). */
	HEADER(&m, 2, "obj", "{\"a\": [1, 2]}");
	HEADER(&m, 3, "uni", "\xC3\xA9\xF0\x9F\x98\x80");
	HEADER_NULL(&m, 4, "none");
	HEADER(&m, 5, "retries", "3");
	HEADER(&m, 6, "sampled", "true");
	HEADER(&m, 7, "trace-id", "abc\"def");

	/* 2: headers NULL: only the two fixed headers; non-ASCII key. */
	sample_outbox_insert(&uf, 1, &rec);
	assert_int_equal(router_outbox(r, &rec, &m, &why), 0);
	assert_string_equal(m.topic, "outbox.customer");
	assert_bytes(m.key, m.key_len, "c\xC3\xA9-7");
	assert_bytes(m.value, m.value_len, "{\"name\": \"Zo\xC3\xAB\"}");
	assert_int_equal(m.n_headers, 2);
	HEADER(&m, 1, "event_type", "CustomerRenamed");

	/* 3: an empty headers object and a non-object payload. */
	sample_outbox_insert(&uf, 2, &rec);
	assert_int_equal(router_outbox(r, &rec, &m, &why), 0);
	assert_string_equal(m.topic, "outbox.order");
	assert_bytes(m.key, m.key_len, "order-43");
	assert_bytes(m.value, m.value_len, "[]");
	assert_int_equal(m.n_headers, 2);
	HEADER(&m, 1, "event_type", "OrderShipped");

	unit_file_free(&uf);
	router_free(r);
}

static void test_is_outbox(void **state)
{
	(void)state;
	char *tables[] = {"outbox.events", "billing.outbox"};
	relay_config cfg = make_cfg("t", tables, 2);
	char err[256];
	router *r = router_new(&cfg, err, sizeof(err));
	unit_file uf;
	int outbox = 0, other = 0;

	assert_non_null(r);
	unit_load_lines(&uf, RECORDS);
	for (size_t i = 0; i < uf.n_lines; i++) {
		w2j_record rec;
		const char *why;
		assert_int_equal(w2j_decode(uf.lines[i].ptr, uf.lines[i].len, &rec, &why), 0);
		bool want = rec.schema.len == 6 && memcmp(rec.schema.ptr, "outbox", 6) == 0;
		assert_int_equal(router_is_outbox(r, &rec), want);
		if (want)
			outbox++;
		else
			other++;
	}
	assert_int_equal(outbox, 3);
	assert_true(other > 0);
	unit_file_free(&uf);

	static const struct {
		const char *text;
		bool want;
	} recs[] = {
		{"{\"action\":\"I\",\"schema\":\"billing\",\"table\":\"outbox\",\"columns\":[]}", true},
		{"{\"action\":\"I\",\"schema\":\"billing\",\"table\":\"events\",\"columns\":[]}", false},
		{"{\"action\":\"I\",\"schema\":\"outbox\",\"table\":\"event\",\"columns\":[]}", false},
		{"{\"action\":\"I\",\"schema\":\"outbox\",\"table\":\"eventss\",\"columns\":[]}", false},
		{"{\"action\":\"I\",\"schema\":\"Outbox\",\"table\":\"events\",\"columns\":[]}", false},
		{"{\"action\":\"T\",\"schema\":\"outbox\",\"table\":\"events\"}", true},
		{"{\"action\":\"M\",\"prefix\":\"outbox\",\"content\":\"events\"}", false},
		{"{\"action\":\"B\",\"nextlsn\":\"0/1\"}", false},
	};
	for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		w2j_record rec;
		const char *why;
		assert_int_equal(w2j_decode(recs[i].text, strlen(recs[i].text), &rec, &why), 0);
		if (router_is_outbox(r, &rec) != recs[i].want)
			fail_msg("router_is_outbox(%s) != %d", recs[i].text, recs[i].want);
	}
	router_free(r);
}

static void test_payload_bytes_exact(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why;
	row w;

	/* The jsonb text as wal2json escapes it: \" \\ \n, \u escapes, raw UTF-8. */
	simple_row(&w, "\"{\\\"q\\\": \\\"a\\\\\\\"b\\\", \\\"big\\\": 9007199254740993, \\\"num\\\": "
		       "12345678901234567890.123, \\\"u\\\": \\\"\\u00e9\\uD83D\\uDE00\xC3\xA9\\\", "
		       "\\\"nl\\\": \\\"x\\\\ny\\\"}\"",
		   NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_bytes(m.value, m.value_len,
		     "{\"q\": \"a\\\"b\", \"big\": 9007199254740993, \"num\": 12345678901234567890.123, "
		     "\"u\": \"\xC3\xA9\xF0\x9F\x98\x80\xC3\xA9\", \"nl\": \"x\\ny\"}");
	free_row(&w);

	/* A payload that is a JSON number (e.g. a numeric column) keeps its text. */
	simple_row(&w, "12345678901234567890.123", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_bytes(m.value, m.value_len, "12345678901234567890.123");
	free_row(&w);

	/* A NULL payload is a null value (a tombstone), not an error. */
	simple_row(&w, "null", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_null(m.value);
	assert_int_equal(m.value_len, 0);
	free_row(&w);

	/* An empty string payload is an empty value, not a null one. */
	simple_row(&w, "\"\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_non_null(m.value);
	assert_int_equal(m.value_len, 0);
	free_row(&w);

	/* A NUL byte inside the payload survives (lengths, not C strings). */
	simple_row(&w, "\"a\\u0000b\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_bytes(m.value, m.value_len, "a\0b");
	free_row(&w);
	router_free(r);
}

static void test_json_headers(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why = NULL;
	row w;

	simple_row(&w, "\"{}\"",
		   "\"{\\\"s\\\": \\\"plain\\\", \\\"e\\\": \\\"q\\\\\\\"b\\\\\\\\n\\\\u00e9\\\", "
		   "\\\"k\\\\u00e9y\\\": \\\"v\\\", \\\"big\\\": 9007199254740993, "
		   "\\\"num\\\": 12345678901234567890.123, \\\"neg\\\": -0.5e-10, \\\"t\\\": true, "
		   "\\\"f\\\": false, \\\"z\\\": null, \\\"arr\\\": [1, \\\"x\\\", null], "
		   "\\\"obj\\\": {\\\"in\\\": \\\"q\\\\\\\"\\\"}, \\\"empty\\\": \\\"\\\"}\"");
	if (router_outbox(r, &w.rec, &m, &why) != 0)
		fail_msg("router_outbox: %s", why);
	assert_int_equal(m.n_headers, 14);
	HEADER(&m, 0, "event_id", "6f1c4b1e-0000-4000-8000-000000000001");
	HEADER(&m, 1, "event_type", "OrderPlaced");
	HEADER(&m, 2, "s", "plain");
	HEADER(&m, 3, "e", "q\"b\\n\xC3\xA9");
	HEADER(&m, 4, "k\xC3\xA9y", "v");
	HEADER(&m, 5, "big", "9007199254740993");
	HEADER(&m, 6, "num", "12345678901234567890.123");
	HEADER(&m, 7, "neg", "-0.5e-10");
	HEADER(&m, 8, "t", "true");
	HEADER(&m, 9, "f", "false");
	HEADER_NULL(&m, 10, "z");
	HEADER(&m, 11, "arr", "[1, \"x\", null]");
	HEADER(&m, 12, "obj", "{\"in\": \"q\\\"\"}");
	HEADER(&m, 13, "empty", "");
	assert_non_null(m.headers[13].value);
	free_row(&w);

	/* Headers absent, NULL or empty: the two fixed ones only. */
	const char *none[] = {NULL, "null", "\"{}\"", "\" { } \""};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		simple_row(&w, "\"{}\"", none[i]);
		assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
		assert_int_equal(m.n_headers, 2);
		free_row(&w);
	}
	router_free(r);
}

static void test_many_headers_and_reuse(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why = NULL;
	row w;
	size_t cap = 200 * 40 + 16, len = 0;
	char *h = malloc(cap);
	char name[16];

	assert_non_null(h);
	len += (size_t)snprintf(h + len, cap - len, "\"{");
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(h + len, cap - len, "%s\\\"h%03d\\\": \\\"v%d\\\"", i ? ", " : "", i, i);
	snprintf(h + len, cap - len, "}\"");

	/* A small row first, then a much bigger one: buffers grow between calls. */
	simple_row(&w, "\"{}\"", "\"{\\\"a\\\": \\\"b\\\"}\"");
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_int_equal(m.n_headers, 3);
	free_row(&w);

	simple_row(&w, "\"{}\"", h);
	if (router_outbox(r, &w.rec, &m, &why) != 0)
		fail_msg("router_outbox: %s", why);
	assert_int_equal(m.n_headers, 202);
	for (int i = 0; i < 200; i++) {
		char val[16];
		snprintf(name, sizeof(name), "h%03d", i);
		snprintf(val, sizeof(val), "v%d", i);
		check_header(&m, (size_t)i + 2, name, val, strlen(val));
	}
	assert_string_equal(m.topic, "outbox.order");
	free_row(&w);
	free(h);

	/* And small again: nothing left over from the big one. */
	simple_row(&w, "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_int_equal(m.n_headers, 2);
	free_row(&w);
	router_free(r);
}

static void test_headers_not_an_object(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"\"[]\"", "\"[1]\"", "\"1\"", "\"\\\"s\\\"\"", "\"null\"", "\"true\"", "\"\"", "\"{\"",
		"\"{} {}\"", "\"{}x\"", "\"{\\\"a\\\":1,}\"", "\"{\\\"a\\\"}\"", "5", "true",
		"[\"{}\"]",
	};
	router *r = new_router("outbox.${aggregate_type}");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		route_msg m;
		const char *why = NULL;
		row w;
		simple_row(&w, "\"{}\"", bad[i]);
		if (router_outbox(r, &w.rec, &m, &why) != -1)
			fail_msg("headers %s accepted", bad[i]);
		assert_non_null(why);
		if (!strstr(why, "headers"))
			fail_msg("headers %s: reason '%s'", bad[i], why);
		free_row(&w);
	}
	router_free(r);
}

static void test_template_placeholders(void **state)
{
	(void)state;
	static const struct {
		const char *tmpl, *topic;
	} cases[] = {
		{"outbox.${aggregate_type}", "outbox.order"},
		{"${aggregate_type}", "order"},
		{"${schema}.${table}", "outbox.events"},
		{"${aggregate_type}-${event_type}", "order-OrderPlaced"},
		{"${aggregate_type}${event_type}${aggregate_type}", "orderOrderPlacedorder"},
		{"events", "events"},
		{"a.${table}.b_${schema}-c", "a.events.b_outbox-c"},
		{"${event_type}", "OrderPlaced"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		router *r = new_router(cases[i].tmpl);
		route_msg m;
		const char *why = NULL;
		row w;
		simple_row(&w, "\"{}\"", NULL);
		if (router_outbox(r, &w.rec, &m, &why) != 0)
			fail_msg("%s: %s", cases[i].tmpl, why);
		assert_string_equal(m.topic, cases[i].topic);
		free_row(&w);
		router_free(r);
	}

	/* Escaped values are decoded before they go into the name. */
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why = NULL;
	row w;
	make_row(&w, "\"i\"", "\"\\u006frder\\/x\"", "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1); /* '/' is not allowed */
	free_row(&w);
	make_row(&w, "\"i\"", "\"\\u006frder\"", "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_string_equal(m.topic, "outbox.order");
	free_row(&w);
	router_free(r);
}

static void test_invalid_templates_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"outbox.${aggregate_type",
		"outbox.${",
		"${}",
		"outbox.${nope}",
		"outbox.${Aggregate_type}",
		"outbox.${ aggregate_type }",
		"outbox.${aggregate_type}.${tables}",
		"outbox events.${aggregate_type}",
		"outbox/${aggregate_type}",
		"outbox.$aggregate_type",
		"outbox.{aggregate_type}",
		"caf\xC3\xA9.${aggregate_type}",
		".",
		"..",
		"x:y",
	};
	char long_tmpl[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		relay_config cfg = make_cfg(bad[i], default_tables, 1);
		char err[512] = "";
		router *r = router_new(&cfg, err, sizeof(err));
		if (r) {
			router_free(r);
			fail_msg("template '%s' accepted", bad[i]);
		}
		if (err[0] == '\0')
			fail_msg("template '%s': no message", bad[i]);
	}
	/* Literal text longer than a topic name can be. */
	memset(long_tmpl, 'a', 250);
	strcpy(long_tmpl + 250, "${table}");
	relay_config cfg = make_cfg(long_tmpl, default_tables, 1);
	char err[512] = "";
	assert_null(router_new(&cfg, err, sizeof(err)));
	assert_true(err[0] != '\0');
	/* 249 characters is still fine. */
	long_tmpl[249] = '\0';
	router_free(new_router(long_tmpl));
}

static void test_invalid_tables_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {"events", ".events", "outbox.", ""};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *tables[] = {"outbox.events", (char *)bad[i]};
		relay_config cfg = make_cfg("t", tables, 2);
		char err[256] = "";
		router *r = router_new(&cfg, err, sizeof(err));
		if (r) {
			router_free(r);
			fail_msg("table '%s' accepted", bad[i]);
		}
		assert_non_null(strstr(err, "schema.table"));
	}
	/* A name with more dots keeps everything after the first in the table name. */
	char *tables[] = {"outbox.events.v2"};
	relay_config cfg = make_cfg("t", tables, 1);
	char err[256];
	router *r = router_new(&cfg, err, sizeof(err));
	w2j_record rec;
	const char *why;
	const char *text = "{\"action\":\"T\",\"schema\":\"outbox\",\"table\":\"events.v2\"}";
	assert_non_null(r);
	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	assert_true(router_is_outbox(r, &rec));
	router_free(r);
}

static void test_topic_names_kafka_rejects(void **state)
{
	(void)state;
	static const char *const bad_types[] = {
		"\"has space\"", "\"slash/x\"", "\"caf\xC3\xA9\"", "\"caf\\u00e9\"", "\"colon:x\"",
		"\"star*\"", "\"nul\\u0000x\"", "\"tab\\tx\"", "\"quote\\\"\"", "\"back\\\\slash\"",
	};
	router *r = new_router("outbox.${aggregate_type}");
	router *bare = new_router("${aggregate_type}");
	route_msg m;
	const char *why;
	row w;

	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		make_row(&w, "\"i\"", bad_types[i], "\"k\"", "\"E\"", "\"{}\"", NULL);
		why = NULL;
		if (router_outbox(r, &w.rec, &m, &why) != -1)
			fail_msg("aggregate_type %s accepted: topic %s", bad_types[i], m.topic);
		assert_non_null(why);
		assert_non_null(strstr(why, "topic"));
		free_row(&w);
	}

	/* Names that are empty, "." or "..", or too long. */
	static const char *const bad_names[] = {"\"\"", "\".\"", "\"..\""};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		make_row(&w, "\"i\"", bad_names[i], "\"k\"", "\"E\"", "\"{}\"", NULL);
		assert_int_equal(router_outbox(bare, &w.rec, &m, &why), -1);
		free_row(&w);
	}
	char name[300];
	name[0] = '"';
	memset(name + 1, 'x', 250);
	strcpy(name + 251, "\"");
	make_row(&w, "\"i\"", name, "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(bare, &w.rec, &m, &why), -1);
	free_row(&w);
	strcpy(name + 250, "\""); /* 249 x */
	make_row(&w, "\"i\"", name, "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(bare, &w.rec, &m, &why), 0);
	assert_int_equal(strlen(m.topic), 249);
	free_row(&w);
	/* "..." and ".x" are legal names. */
	make_row(&w, "\"i\"", "\"...\"", "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(bare, &w.rec, &m, &why), 0);
	assert_string_equal(m.topic, "...");
	free_row(&w);

	/* The template needs a column that is null, missing or not a string. */
	const char *missing[] = {"null", NULL, "5"};
	for (size_t i = 0; i < 3; i++) {
		make_row(&w, "\"i\"", missing[i], "\"k\"", "\"E\"", "\"{}\"", NULL);
		why = NULL;
		assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
		assert_non_null(why);
		free_row(&w);
	}
	router_free(r);
	router_free(bare);
}

static void test_missing_and_null_columns(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why;
	row w;

	/* No payload column, or no aggregate_id column: refused. */
	make_row(&w, "\"i\"", "\"order\"", "\"k\"", "\"E\"", NULL, NULL);
	why = NULL;
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	assert_non_null(strstr(why, "payload"));
	free_row(&w);
	make_row(&w, "\"i\"", "\"order\"", NULL, "\"E\"", "\"{}\"", NULL);
	why = NULL;
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	assert_non_null(strstr(why, "aggregate_id"));
	free_row(&w);

	/* A NULL aggregate_id: no key. A numeric one: its text. No id, no event_type: NULL headers. */
	make_row(&w, NULL, "\"order\"", "null", NULL, "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_null(m.key);
	assert_int_equal(m.n_headers, 2);
	HEADER_NULL(&m, 0, "event_id");
	HEADER_NULL(&m, 1, "event_type");
	free_row(&w);
	make_row(&w, "42", "\"order\"", "9007199254740993", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), 0);
	assert_bytes(m.key, m.key_len, "9007199254740993");
	HEADER(&m, 0, "event_id", "42");
	free_row(&w);

	/* A record whose columns are not what wal2json writes. */
	const char *text = "{\"action\":\"I\",\"schema\":\"outbox\",\"table\":\"events\",\"columns\":[1]}";
	w2j_record rec;
	assert_int_equal(w2j_decode(text, strlen(text), &rec, &why), 0);
	why = NULL;
	assert_int_equal(router_outbox(r, &rec, &m, &why), -1);
	assert_non_null(why);
	router_free(r);
}

static void test_invalid_escapes_refused(void **state)
{
	(void)state;
	router *r = new_router("outbox.${aggregate_type}");
	route_msg m;
	const char *why;
	row w;
	const char *lone = "\"\\ud800\"";

	make_row(&w, "\"i\"", "\"order\"", "\"k\"", "\"E\"", lone, NULL);
	why = NULL;
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	assert_non_null(why);
	free_row(&w);
	make_row(&w, "\"i\"", "\"order\"", lone, "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	make_row(&w, lone, "\"order\"", "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	make_row(&w, "\"i\"", "\"order\"", "\"k\"", lone, "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	make_row(&w, "\"i\"", lone, "\"k\"", "\"E\"", "\"{}\"", NULL);
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	/* In the headers column itself, and inside the headers object (escaped twice). */
	make_row(&w, "\"i\"", "\"order\"", "\"k\"", "\"E\"", "\"{}\"", "\"{\\\"a\\\": \\udc00}\"");
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	make_row(&w, "\"i\"", "\"order\"", "\"k\"", "\"E\"", "\"{}\"", "\"{\\\"a\\\": \\\"\\\\ud800\\\"}\"");
	why = NULL;
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	assert_non_null(strstr(why, "escape"));
	free_row(&w);
	make_row(&w, "\"i\"", "\"order\"", "\"k\"", "\"E\"", "\"{}\"", "\"{\\\"\\\\udfff\\\": 1}\"");
	assert_int_equal(router_outbox(r, &w.rec, &m, &why), -1);
	free_row(&w);
	router_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample_outbox_rows),
		cmocka_unit_test(test_is_outbox),
		cmocka_unit_test(test_payload_bytes_exact),
		cmocka_unit_test(test_json_headers),
		cmocka_unit_test(test_many_headers_and_reuse),
		cmocka_unit_test(test_headers_not_an_object),
		cmocka_unit_test(test_template_placeholders),
		cmocka_unit_test(test_invalid_templates_rejected),
		cmocka_unit_test(test_invalid_tables_rejected),
		cmocka_unit_test(test_topic_names_kafka_rejects),
		cmocka_unit_test(test_missing_and_null_columns),
		cmocka_unit_test(test_invalid_escapes_refused),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
