/* test_config.c: the libconfig loader: defaults, the kafka group, and errors naming FILE:LINE. */
#include "unit.h"

#include <sys/stat.h>

#include "config.h"

#define MINIMAL                                                                                    \
	"postgresql = { conninfo = \"host=db dbname=app\"; };\n"                                   \
	"kafka = { bootstrap_servers = \"k1:9092,k2:9092\"; };\n"

/* One load of a config text: the result, the path it had and everything written to err. */
typedef struct {
	relay_config *cfg;
	char *path;
	char *err;
	size_t err_len;
} loaded;

static void load_path(loaded *l, const char *path)
{
	FILE *err = open_memstream(&l->err, &l->err_len);

	assert_non_null(err);
	l->cfg = config_load(path, err);
	fclose(err);
}

static void load_text(loaded *l, const char *text)
{
	memset(l, 0, sizeof(*l));
	l->path = unit_temp_file(text);
	load_path(l, l->path);
}

static void unload(loaded *l)
{
	config_free(l->cfg);
	if (l->path)
		unlink(l->path);
	free(l->path);
	free(l->err);
	memset(l, 0, sizeof(*l));
}

/* Loads text that must be accepted, with nothing written to err. */
static void load_ok(loaded *l, const char *text)
{
	load_text(l, text);
	if (!l->cfg || l->err_len != 0)
		fail_msg("config refused: %s", l->err);
}

/*
 * Loads text that must be refused with a message "PATH:LINE: ..." holding the given words.
 * line 0 skips the line check.
 */
static void expect_error(const char *text, int line, const char *words)
{
	loaded l;
	char prefix[256];

	load_text(&l, text);
	if (l.cfg)
		fail_msg("accepted:\n%s", text);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", l.path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s:", l.path);
	if (strncmp(l.err, prefix, strlen(prefix)) != 0 && !strstr(l.err, prefix))
		fail_msg("want an error at %s, got: %s", prefix, l.err);
	if (!strstr(l.err, words))
		fail_msg("want '%s' in: %s", words, l.err);
	unload(&l);
}

static void test_minimal_file_gets_defaults(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL);
	relay_config *c = l.cfg;
	assert_string_equal(c->path, l.path);
	assert_string_equal(c->pg_conninfo, "host=db dbname=app");
	assert_string_equal(c->slot, "outbox_relay");
	assert_true(c->create_slot);
	assert_int_equal(c->n_tables, 1);
	assert_string_equal(c->tables[0], "outbox.events");
	assert_int_equal(c->status_interval_ms, 10000);
	assert_string_equal(c->topic_template, "outbox.${aggregate_type}");
	assert_string_equal(c->log_level, "info");
	assert_int_equal(c->shutdown_timeout_ms, 30000);
	assert_int_equal(c->reconnect_max_backoff_ms, 30000);
	assert_int_equal(c->n_kafka, 1);
	assert_string_equal(c->kafka[0].name, "bootstrap.servers");
	assert_string_equal(c->kafka[0].value, "k1:9092,k2:9092");
	assert_int_equal(c->kafka[0].line, 2);
	assert_string_equal(config_kafka_get(c, "bootstrap.servers"), "k1:9092,k2:9092");
	assert_null(config_kafka_get(c, "bootstrap_servers"));
	assert_null(config_kafka_get(c, "linger.ms"));
	unload(&l);
}

static void test_every_key_set(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, "# a comment\n"
		    "postgresql = {\n"
		    "  conninfo = \"host=x\";\n"
		    "  slot = \"s1\";\n"
		    "  create_slot = false;\n"
		    "  tables = [ \"a.b\", \"c.d\" ];\n"
		    "  status_interval_ms = 100;\n"
		    "};\n"
		    "outbox = { topic = \"${schema}.${table}\"; };\n"
		    "relay = {\n"
		    "  log_level = \"debug\";\n"
		    "  shutdown_timeout_ms = 0;\n"
		    "  reconnect_max_backoff_ms = 3600000L;\n"
		    "};\n"
		    "kafka = { bootstrap_servers = \"k:1\"; };\n");
	relay_config *c = l.cfg;
	assert_string_equal(c->slot, "s1");
	assert_false(c->create_slot);
	assert_int_equal(c->n_tables, 2);
	assert_string_equal(c->tables[0], "a.b");
	assert_string_equal(c->tables[1], "c.d");
	assert_int_equal(c->status_interval_ms, 100);
	assert_string_equal(c->topic_template, "${schema}.${table}");
	assert_string_equal(c->log_level, "debug");
	assert_int_equal(c->shutdown_timeout_ms, 0);
	assert_int_equal(c->reconnect_max_backoff_ms, 3600000);
	unload(&l);

	/* A libconfig list ( ) works for tables too. */
	/* Empty known groups are fine. */
	load_ok(&l, MINIMAL "outbox = { };\nrelay = { };\n");
	unload(&l);
	load_ok(&l, "postgresql = { conninfo = \"x\"; tables = ( \"s.t\" ); };\n"
		    "kafka = { bootstrap_servers = \"k:1\"; };\n");
	assert_int_equal(l.cfg->n_tables, 1);
	assert_string_equal(l.cfg->tables[0], "s.t");
	unload(&l);
}

static void test_example_file_loads(void **state)
{
	(void)state;
	loaded l;

	memset(&l, 0, sizeof(l));
	load_path(&l, "conf/outbox-relay.conf.example");
	if (!l.cfg)
		fail_msg("the example config is refused: %s", l.err);
	assert_int_equal(l.err_len, 0);
	assert_string_equal(config_kafka_get(l.cfg, "bootstrap.servers"), "127.0.0.1:9092");
	config_free(l.cfg);
	free(l.err);
}

static void test_kafka_group_passes_properties(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, "postgresql = { conninfo = \"x\"; };\n"
		    "kafka = {\n"
		    "  bootstrap_servers = \"k:1\";\n"
		    "  security_protocol = \"SASL_SSL\";\n"
		    "  linger_ms = 5;\n"
		    "  message_timeout_ms = 300000L;\n"
		    "  socket_keepalive_enable = true;\n"
		    "  enable_ssl_certificate_verification = false;\n"
		    "  retry_backoff_ms = -1;\n"
		    "  batch_size = 1.5;\n"
		    "  client_id = \"with_underscore_value\";\n"
		    "};\n");
	relay_config *c = l.cfg;
	assert_int_equal(c->n_kafka, 9);
	assert_string_equal(config_kafka_get(c, "security.protocol"), "SASL_SSL");
	assert_string_equal(config_kafka_get(c, "linger.ms"), "5");
	assert_string_equal(config_kafka_get(c, "message.timeout.ms"), "300000");
	assert_string_equal(config_kafka_get(c, "socket.keepalive.enable"), "true");
	assert_string_equal(config_kafka_get(c, "enable.ssl.certificate.verification"), "false");
	assert_string_equal(config_kafka_get(c, "retry.backoff.ms"), "-1");
	assert_string_equal(config_kafka_get(c, "batch.size"), "1.5");
	/* Only names are mapped; values keep their underscores. */
	assert_string_equal(config_kafka_get(c, "client.id"), "with_underscore_value");
	/* Each property remembers its line (for librdkafka's complaints). */
	for (int i = 0; i < c->n_kafka; i++)
		assert_int_equal(c->kafka[i].line, 3 + i);
	unload(&l);
}

static void test_kafka_values_kept_whole(void **state)
{
	(void)state;
	enum { BIG = 20000 };
	char *text = malloc(BIG + 256);
	char *pem = malloc(BIG + 1);
	loaded l;
	int n;

	assert_non_null(text);
	assert_non_null(pem);
	/* A long string (a PEM certificate chain, say) is passed on whole. */
	for (int i = 0; i < BIG; i++)
		pem[i] = (char)('A' + i % 26);
	pem[BIG] = '\0';
	n = snprintf(text, BIG + 256, "postgresql = { conninfo = \"x\"; };\nkafka = {\n"
		     "  bootstrap_servers = \"k:1\";\n  ssl_ca_pem = \"%s\";\n"
		     "  linger_ms = 0.123456789;\n  batch_num_messages = 1e7;\n};\n", pem);
	assert_true(n > BIG);
	load_ok(&l, text);
	const char *v = config_kafka_get(l.cfg, "ssl.ca.pem");
	assert_non_null(v);
	assert_int_equal(strlen(v), BIG);
	assert_string_equal(v, pem);
	/* Floats keep their digits, and whole ones print as integers. */
	assert_string_equal(config_kafka_get(l.cfg, "linger.ms"), "0.123456789");
	assert_string_equal(config_kafka_get(l.cfg, "batch.num.messages"), "10000000");
	unload(&l);
	free(text);
	free(pem);
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error(MINIMAL "postgresql2 = { };\n", 3, "unknown group 'postgresql2'");
	expect_error("postgresql = {\n  conninfo = \"x\";\n  slott = \"s\";\n};\n"
		     "kafka = { bootstrap_servers = \"k:1\"; };\n",
		     3, "unknown setting 'postgresql.slott'");
	expect_error(MINIMAL "\nrelay = {\n\n  loglevel = \"info\";\n};\n", 6,
		     "unknown setting 'relay.loglevel'");
	/* A key of another group is unknown in this one. */
	expect_error(MINIMAL "outbox = { slot = \"s\"; };\n", 3, "unknown setting 'outbox.slot'");
	/* A nested group inside a known one. */
	expect_error(MINIMAL "relay = { sub = { a = 1; }; };\n", 3, "unknown setting 'relay.sub'");
}

static void test_unknown_group(void **state)
{
	(void)state;
	expect_error(MINIMAL "kafak = { linger_ms = 5; };\n", 3, "unknown group 'kafak'");
	expect_error("\n\nfoo = 1;\n" MINIMAL, 3, "unknown setting 'foo'");
	/* A known group written as a plain setting. */
	expect_error(MINIMAL "relay = 5;\n", 3, "'relay'");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = 5;\n", 2, "'kafka'");
}

static void test_wrong_type(void **state)
{
	(void)state;
	expect_error("postgresql = {\n conninfo = 5;\n};\nkafka = { bootstrap_servers = \"k\"; };\n", 2,
		     "postgresql.conninfo must be a string");
	expect_error("postgresql = {\n conninfo = \"x\";\n create_slot = \"yes\";\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.create_slot must be a bool");
	expect_error("postgresql = {\n conninfo = \"x\";\n create_slot = 1;\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.create_slot must be a bool");
	expect_error("postgresql = {\n conninfo = \"x\";\n\n status_interval_ms = \"1000\";\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     4, "postgresql.status_interval_ms must be an integer");
	expect_error("postgresql = {\n conninfo = \"x\";\n status_interval_ms = 1000.0;\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.status_interval_ms must be an integer");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = \"outbox.events\";\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.tables must be a list of strings");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ 1, 2 ];\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.tables must be a list of strings");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = ( \"a.b\", 2 );\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.tables must be a list of strings");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ ];\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.tables must not be empty");
	expect_error(MINIMAL "outbox = {\n topic = [ \"a\" ];\n};\n", 4, "outbox.topic must be a string");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = {\n bootstrap_servers = \"k\";\n"
		     " linger_ms = [ 1 ];\n};\n",
		     4, "kafka.linger_ms must be a string, number or bool");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = {\n bootstrap_servers = \"k\";\n"
		     " sub = { a = 1; };\n};\n",
		     4, "kafka.sub");
}

static void test_out_of_range(void **state)
{
	(void)state;
	expect_error("postgresql = {\n conninfo = \"x\";\n status_interval_ms = 99;\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "postgresql.status_interval_ms = 99 is out of range (100 to 3600000)");
	expect_error("postgresql = {\n conninfo = \"x\";\n status_interval_ms = 3600001;\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "out of range");
	expect_error(MINIMAL "relay = {\n shutdown_timeout_ms = -1;\n};\n", 4,
		     "relay.shutdown_timeout_ms = -1 is out of range (0 to 3600000)");
	/* 64-bit values (libconfig 1.5 needs the L suffix for them; without it, it truncates). */
	expect_error(MINIMAL "relay = {\n reconnect_max_backoff_ms = 99999999999L;\n};\n", 4,
		     "relay.reconnect_max_backoff_ms = 99999999999 is out of range");
	expect_error(MINIMAL "relay = {\n reconnect_max_backoff_ms = 4294967396L;\n};\n", 4,
		     "= 4294967396 is out of range");
	/* The bounds themselves are fine. */
	loaded l;
	load_ok(&l, MINIMAL "relay = { shutdown_timeout_ms = 3600000; reconnect_max_backoff_ms = 100; };\n");
	assert_int_equal(l.cfg->shutdown_timeout_ms, 3600000);
	assert_int_equal(l.cfg->reconnect_max_backoff_ms, 100);
	unload(&l);
}

static void test_missing_required_key(void **state)
{
	(void)state;
	expect_error("postgresql = { slot = \"s\"; };\nkafka = { bootstrap_servers = \"k\"; };\n", 1,
		     "postgresql.conninfo is required");
	expect_error("kafka = { bootstrap_servers = \"k\"; };\n", 1, "postgresql.conninfo is required");
	expect_error("postgresql = { conninfo = \"x\"; };\n", 1, "kafka.bootstrap_servers is required");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = { linger_ms = 5; };\n", 2,
		     "kafka.bootstrap_servers is required");
}

static void test_invalid_values(void **state)
{
	(void)state;
	expect_error(MINIMAL "relay = {\n\n log_level = \"verbose\";\n};\n", 5,
		     "relay.log_level 'verbose' is not one of error, warn, info, debug");
	expect_error(MINIMAL "relay = { log_level = \"INFO\"; };\n", 3, "relay.log_level");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ \"a.b\",\n \"events\" ];\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     4, "postgresql.tables entry 'events' must be schema.table");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ \".events\" ];\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "must be schema.table");
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ \"outbox.\" ];\n};\n"
		     "kafka = { bootstrap_servers = \"k\"; };\n",
		     3, "must be schema.table");
}

static void test_empty_file(void **state)
{
	(void)state;
	expect_error("", 1, "the file is empty");
	expect_error("# only a comment\n\n// and another\n", 1, "the file is empty");
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_error("postgresql = {\n  conninfo = \"x\";\n  slot = = \"s\";\n};\n", 3, "syntax error");
	/* (Not `conninfo "x";`: libconfig 1.5 leaks the string token of that one.) */
	expect_error("postgresql = {\n  conninfo = ;\n};\n", 2, "syntax error");
	expect_error("postgresql = {\n  conninfo = \"x\";\n\nkafka = { };\n", 0, "");
	expect_error(MINIMAL "relay = { log_level = \"info\"; }\n\noutbox = {\n", 0, "");
	expect_error("postgresql = { conninfo = \"unterminated; };\n", 0, "");
	/* The same group or key twice. */
	expect_error(MINIMAL "postgresql = { };\n", 3, "duplicate");
	expect_error("postgresql = {\n conninfo = \"x\";\n conninfo = \"y\";\n};\n", 3, "duplicate");
}

static void test_unreadable_file(void **state)
{
	(void)state;
	loaded l;
	char prefix[128];

	memset(&l, 0, sizeof(l));
	load_path(&l, "/nonexistent/relay.conf");
	assert_null(l.cfg);
	assert_non_null(strstr(l.err, "/nonexistent/relay.conf:0: cannot open"));
	assert_non_null(strstr(l.err, "No such file"));
	free(l.err);

	/* A directory opens but cannot be read as a file. */
	char dir[] = "/tmp/relay-unit-dir-XXXXXX";
	assert_non_null(mkdtemp(dir));
	memset(&l, 0, sizeof(l));
	load_path(&l, dir);
	assert_null(l.cfg);
	snprintf(prefix, sizeof(prefix), "%s:0: cannot read: Is a directory", dir);
	if (strncmp(l.err, prefix, strlen(prefix)) != 0)
		fail_msg("want '%s', got: %s", prefix, l.err);
	free(l.err);
	rmdir(dir);

	/* A file that is not text. */
	char bin[] = "/tmp/relay-unit-bin-XXXXXX";
	int fd = mkstemp(bin);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, MINIMAL "\0relay = 5;\n", sizeof(MINIMAL) + 12), sizeof(MINIMAL) + 12);
	close(fd);
	memset(&l, 0, sizeof(l));
	load_path(&l, bin);
	assert_null(l.cfg);
	assert_non_null(strstr(l.err, ":0: the file holds a NUL byte"));
	free(l.err);
	unlink(bin);
}

static void test_every_problem_reported(void **state)
{
	(void)state;
	loaded l;
	char want[256];

	load_text(&l, "postgresql = {\n slott = 1;\n status_interval_ms = 5;\n};\nfoo = { };\n"
		      "relay = { create_slot = true; };\n");
	assert_null(l.cfg);
	const char *lines[] = {":2: unknown setting 'postgresql.slott'", ":5: unknown group 'foo'",
			       ":6: unknown setting 'relay.create_slot'",
			       ":3: postgresql.status_interval_ms = 5 is out of range",
			       ":1: postgresql.conninfo is required"};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		snprintf(want, sizeof(want), "%s%s", l.path, lines[i]);
		if (!strstr(l.err, want))
			fail_msg("want '%s' in:\n%s", want, l.err);
	}
	/* One problem per line, each line starting with the path. */
	for (const char *p = l.err; *p; p = strchr(p, '\n') + 1)
		assert_true(strncmp(p, l.path, strlen(l.path)) == 0);
	unload(&l);
}

static void test_describe_lists_every_key(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	static const char *const keys[] = {
		"postgresql.conninfo", "postgresql.slot", "postgresql.create_slot", "postgresql.tables",
		"postgresql.status_interval_ms", "outbox.topic", "relay.log_level",
		"relay.shutdown_timeout_ms", "relay.reconnect_max_backoff_ms", "kafka.*",
	};

	assert_non_null(f);
	config_describe(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "| `%s` |", keys[i]);
		if (!strstr(text, want))
			fail_msg("%s missing from:\n%s", keys[i], text);
	}
	assert_non_null(strstr(text, "(required)"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_file_gets_defaults),
		cmocka_unit_test(test_every_key_set),
		cmocka_unit_test(test_example_file_loads),
		cmocka_unit_test(test_kafka_group_passes_properties),
		cmocka_unit_test(test_kafka_values_kept_whole),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_unknown_group),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_missing_required_key),
		cmocka_unit_test(test_invalid_values),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unreadable_file),
		cmocka_unit_test(test_every_problem_reported),
		cmocka_unit_test(test_describe_lists_every_key),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
