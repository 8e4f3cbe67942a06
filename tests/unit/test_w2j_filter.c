/* test_w2j_filter.c: wal2json's add-tables list: names escaped as wal2json 2.5 reads them, never cut. */
#include "unit.h"

#include <ctype.h>

#include "w2j_filter.h"

/*
 * wal2json 2.5's reading of add-tables (string_to_SelectTable, parse_table_identifier), redone
 * here: entries split at unescaped commas and white space; "*." starts an all-schemas entry, a
 * bare "*" table all tables (both tested before backslashes are dropped); a backslash keeps the
 * next character. Writes entry i as "schema|table" (a part that is all: "<all>").
 */
static int wal2json_reads(const char *list, char out[][600], int max)
{
	int n = 0;
	const char *p = list;

	while (*p && n < max) {
		const char *start = p;
		while (*p && *p != ',' && !isspace((unsigned char)*p))
			p += (*p == '\\' && p[1]) ? 2 : 1;
		char entry[256], schema[256] = "", table[256] = "";
		size_t len = (size_t)(p - start);
		assert_true(len < sizeof(entry));
		memcpy(entry, start, len);
		entry[len] = '\0';
		bool all_schemas = entry[0] == '*' && entry[1] == '.';
		size_t i = 0, o = 0;
		for (; entry[i] && entry[i] != '.'; i++, o++) {
			if (entry[i] == '\\')
				i++;
			schema[o] = entry[i];
		}
		schema[o] = '\0';
		assert_int_equal(entry[i], '.');
		i++;
		bool all_tables = entry[i] == '*' && entry[i + 1] == '\0';
		for (o = 0; entry[i]; i++, o++) {
			if (entry[i] == '\\')
				i++;
			table[o] = entry[i];
		}
		table[o] = '\0';
		snprintf(out[n++], 600, "%s|%s", all_schemas ? "<all>" : schema, all_tables ? "<all>" : table);
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
	}
	return n;
}

static void test_names_are_escaped_as_wal2json_reads_them(void **state)
{
	strbuf list = {0};
	char got[8][600];

	(void)state;
	w2j_filter_add_table(&list, "outbox.events", false);
	w2j_filter_add_table(&list, "odd.we,ird t.x\\y", false);
	w2j_filter_add_table(&list, "public.*", true);
	w2j_filter_add_table(&list, "*.orders", true);
	w2j_filter_add_table(&list, "s.*", false); /* an outbox table named "*" */
	w2j_filter_add_table(&list, "s.a*b", true);
	assert_string_equal(strbuf_str(&list), "outbox.events,odd.we\\,ird\\ t\\.x\\\\y,public.*,*.orders,"
					       "s.\\*,s.a\\*b");
	assert_int_equal(wal2json_reads(strbuf_str(&list), got, 8), 6);
	assert_string_equal(got[0], "outbox|events");
	assert_string_equal(got[1], "odd|we,ird t.x\\y");
	assert_string_equal(got[2], "public|<all>");
	assert_string_equal(got[3], "<all>|orders");
	assert_string_equal(got[4], "s|*");
	assert_string_equal(got[5], "s|a*b");
	strbuf_free(&list);
}

/* The relay's lists from a configuration of 300 capture entries: far past 4,095 bytes, whole. */
static void test_long_lists_are_built_whole(void **state)
{
	enum { N = 300 };
	relay_config cfg;
	source_config src[2];
	capture_config cap[N];
	char names[N][64];
	strbuf tables = {0}, prefixes = {0};

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(src, 0, sizeof(src));
	memset(cap, 0, sizeof(cap));
	src[0].table = "outbox.events", src[0].message_prefix = "";
	src[1].table = "", src[1].message_prefix = "outbox";
	cfg.sources = src, cfg.n_sources = 2;
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "sales_%03d.order_lines_with_a_long_name_%03d", i, i);
		cap[i].tables = names[i];
	}
	cfg.captures = cap, cfg.n_captures = N;
	w2j_filter_lists(&cfg, "outbox-relay:s1", &tables, &prefixes);
	assert_true(tables.len > 4095 * 3);
	assert_string_equal(prefixes.s, "outbox,outbox-relay:s1");
	/* Every entry is there, the last one too, in order. */
	const char *p = tables.s;
	assert_true(strncmp(p, "outbox.events,", 14) == 0);
	for (int i = 0; i < N; i++) {
		p = strstr(p, names[i]);
		assert_non_null(p);
	}
	assert_string_equal(p, names[N - 1]);
	strbuf_free(&tables);
	strbuf_free(&prefixes);
	/* No sources of a kind: empty lists (no table at all; all messages). */
	cfg.n_sources = 0, cfg.n_captures = 0;
	w2j_filter_lists(&cfg, NULL, &tables, &prefixes);
	assert_string_equal(strbuf_str(&tables), "");
	assert_string_equal(strbuf_str(&prefixes), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_are_escaped_as_wal2json_reads_them),
		cmocka_unit_test(test_long_lists_are_built_whole),
	};
	return cmocka_run_group_tests_name("w2j_filter", tests, NULL, NULL);
}
