/* test_fuzz_regressions.c: inputs that crashed the fuzz targets (tests/fuzz) or the review of them; each must pass once fixed. */
#include "unit.h"

#include "config.h"
#include "route.h"
#include "w2j.h"

/* A source with the configuration file's defaults (sources[].* in relay/config.c). */
static source_config default_source(const char *table, const char *prefix, const char *topic)
{
	source_config s;

	memset(&s, 0, sizeof(s));
	s.table = (char *)table;
	s.message_prefix = (char *)prefix;
	s.topic = (char *)topic;
	s.key = "aggregate_id";
	s.value = "payload";
	s.event_id = "id";
	s.event_type = "event_type";
	s.timestamp = "";
	s.headers_column = "headers";
	s.ce_source = "";
	s.line = 1;
	return s;
}

/* What a test allocated, freed by the teardown even when an assertion stops the test. */
typedef struct {
	router *r;
	char *buf;
} fixture;

static int setup(void **state)
{
	*state = calloc(1, sizeof(fixture));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	fixture *f = *state;
	router_free(f->r);
	free(f->buf);
	free(f);
	return 0;
}

/*
 * router_dead_letter's headers share a 512-byte buffer (router.meta). A long source name (a
 * message prefix of a few hundred characters) plus a long topic fills it; the next header then
 * gets value_len (size_t)-1 and a pointer to the buffer's end, which librdkafka's header copy
 * reads past the router. route.c meta_header: with nothing left, n = sizeof(meta) - used - 1.
 */
static void test_dead_letter_headers_stay_inside_their_buffer(void **state)
{
	fixture *f = *state;
	char prefix[451], topic[250], rec_text[1024];
	source_config src;
	relay_config cfg;
	char err[512] = "";
	w2j_record rec;
	route_msg m;
	const char *why = NULL;

	memset(prefix, 'p', sizeof(prefix) - 1);
	prefix[sizeof(prefix) - 1] = '\0';
	memset(topic, 't', sizeof(topic) - 1);
	topic[sizeof(topic) - 1] = '\0';
	src = default_source("", prefix, "outbox.${aggregate_type}");
	memset(&cfg, 0, sizeof(cfg));
	cfg.sources = &src;
	cfg.n_sources = 1;
	cfg.dead_letter_topic = "outbox-relay.dead-letters";
	cfg.dead_letter = true;
	f->r = router_new(&cfg, err, sizeof(err));
	if (!f->r)
		fail_msg("router_new: %s", err);

	/* A non-transactional message with that prefix: router_build refuses it. */
	int n = snprintf(rec_text, sizeof(rec_text),
			 "{\"action\":\"M\",\"xid\":null,\"lsn\":\"0/16B3748\",\"transactional\":false,"
			 "\"prefix\":\"%s\",\"content\":\"{}\"}", prefix);
	f->buf = unit_dup(rec_text, (size_t)n);
	assert_int_equal(w2j_decode(f->buf, (size_t)n, &rec, &why), 0);
	const route_source *s = router_match(f->r, &rec);
	assert_non_null(s);
	assert_int_equal(router_build(f->r, s, &rec, &m, &why), -1);
	assert_non_null(why);

	router_dead_letter(f->r, s, &rec, f->buf, (size_t)n, why, topic, &m);
	assert_int_equal(m.n_headers, 5);
	for (size_t i = 0; i < m.n_headers; i++) {
		const route_header *h = &m.headers[i];
		if (h->value_len >= 512)
			fail_msg("header %.*s: value_len %zu", (int)h->name_len, h->name, h->value_len);
		assert_non_null(h->value);
		/* Every byte is readable (ASan checks in the build/san binary), none a NUL. */
		for (size_t k = 0; k < h->value_len; k++)
			assert_true(h->value[k] != '\0');
	}
}

/*
 * fuzz_config, crash-8793e3dbd20d7663ee660395f203d0cc70da3319 (minimized): a source whose table
 * has the wrong type keeps table NULL; check_source of a later source then compares the earlier
 * sources' tables with strcmp(NULL, ...) (relay/config.c check_source, "reads the same ... as").
 * check-config and startup die with SIGSEGV instead of reporting the error.
 */
static void test_config_source_of_wrong_type_then_another_source(void **state)
{
	(void)state;
	static const char *const files[] = {
		"postgresql = { conninfo = \"x\"; };\n"
		"sources = ( { table = true; }, { message_prefix = \"p\"; } );\n"
		"kafka = { bootstrap_servers = \"k:1\"; };\n",
		"postgresql = { conninfo = \"x\"; };\n"
		"sources = ( { message_prefix = 5; }, { table = \"a.b\"; } );\n"
		"kafka = { bootstrap_servers = \"k:1\"; };\n",
	};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *path = unit_temp_file(files[i]);
		FILE *err = tmpfile();
		assert_non_null(err);
		relay_config *cfg = config_load(path, err);
		assert_null(cfg); /* refused with a message, not a crash */
		assert_true(ftell(err) > 0);
		fclose(err);
		unlink(path);
		free(path);
	}
}

/*
 * fuzz_route, crash-c0ccadd29ae3067210bb79e5b770261e49e7a6f8: the first record a router sees is
 * a message, so no field array exists yet when its content is decoded; route.c field_of computed
 * fields + n_fields on that NULL pointer (UBSan: applying zero offset to null pointer).
 */
static void test_first_record_a_message_before_any_field(void **state)
{
	fixture *f = *state;
	source_config src = default_source("", "outbox", "outbox.${aggregate_type}");
	relay_config cfg;
	char err[512] = "";
	w2j_record rec;
	route_msg m;
	const char *why = NULL;
	static const char text[] = "{\"action\":\"M\",\"xid\":735,\"timestamp\":\"2026-11-22 "
				   "11:05:42.489609+00\",\"lsn\":\"0/1954C18\",\"transactional\":true,"
				   "\"prefix\":\"outbox\",\"content\":\"marker\"}";

	memset(&cfg, 0, sizeof(cfg));
	cfg.sources = &src;
	cfg.n_sources = 1;
	cfg.dead_letter_topic = "outbox-relay.dead-letters";
	f->r = router_new(&cfg, err, sizeof(err));
	if (!f->r)
		fail_msg("router_new: %s", err);
	f->buf = unit_dup(text, sizeof(text) - 1);
	assert_int_equal(w2j_decode(f->buf, sizeof(text) - 1, &rec, &why), 0);
	const route_source *s = router_match(f->r, &rec);
	assert_non_null(s);
	assert_int_equal(router_build(f->r, s, &rec, &m, &why), -1); /* "marker" is no envelope */
	assert_non_null(strstr(why, "envelope"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dead_letter_headers_stay_inside_their_buffer, setup,
						teardown),
		cmocka_unit_test(test_config_source_of_wrong_type_then_another_source),
		cmocka_unit_test_setup_teardown(test_first_record_a_message_before_any_field, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
