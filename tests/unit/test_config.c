/* test_config.c: the libconfig loader: defaults, sources, the kafka group, and errors naming FILE:LINE. */
#include "unit.h"

#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

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
	/* The message with the words is one at that line. */
	if (line > 0) {
		bool found = false;
		for (const char *p = l.err; *p && !found; p = strchr(p, '\n') + 1) {
			const char *nl = strchr(p, '\n');
			assert_non_null(nl);
			char *one = strndup(p, (size_t)(nl - p));
			found = strncmp(one, prefix, strlen(prefix)) == 0 && strstr(one, words);
			free(one);
		}
		if (!found)
			fail_msg("want '%s' in a line starting %s in: %s", words, prefix, l.err);
	}
	unload(&l);
}

/* The source defaults, as docs/configuration.md and the example file give them. */
static void assert_default_source(const source_config *s)
{
	assert_string_equal(s->message_prefix, "");
	assert_string_equal(s->topic, "outbox.${aggregate_type}");
	assert_string_equal(s->key, "aggregate_id");
	assert_string_equal(s->value, "payload");
	assert_string_equal(s->event_id, "id");
	assert_string_equal(s->event_type, "event_type");
	assert_string_equal(s->timestamp, "");
	assert_string_equal(s->headers_column, "headers");
	assert_int_equal(s->n_headers, 0);
	assert_non_null(s->headers);
	assert_false(s->tombstones);
	assert_false(s->cloudevents);
	assert_string_equal(s->ce_source, "");
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
	assert_int_equal(c->status_interval_ms, 10000);
	/* Without a sources list: one source, outbox.events, every default. */
	assert_int_equal(c->n_sources, 1);
	assert_string_equal(c->sources[0].table, "outbox.events");
	assert_int_equal(c->sources[0].line, 1);
	assert_default_source(&c->sources[0]);
	/* relay */
	assert_string_equal(c->delivery, "exactly-once");
	assert_true(c->exactly_once);
	assert_string_equal(c->checkpoint_topic, "outbox-relay.checkpoints");
	assert_string_equal(c->on_error, "dead-letter");
	assert_true(c->dead_letter);
	assert_string_equal(c->dead_letter_topic, "outbox-relay.dead-letters");
	assert_true(c->auto_create_topics);
	assert_int_equal(c->topic_partitions, -1);
	assert_int_equal(c->topic_replication_factor, -1);
	assert_int_equal(c->transaction_max_records, 10000);
	assert_int_equal(c->transaction_max_ms, 100);
	assert_int_equal(c->transaction_gather_ms, 25);
	assert_string_equal(c->log_level, "info");
	assert_int_equal(c->shutdown_timeout_ms, 30000);
	assert_int_equal(c->reconnect_max_backoff_ms, 30000);
	/* kafka */
	assert_int_equal(c->n_kafka, 1);
	assert_string_equal(c->kafka[0].name, "bootstrap.servers");
	assert_string_equal(c->kafka[0].value, "k1:9092,k2:9092");
	assert_int_equal(c->kafka[0].line, 2);
	assert_string_equal(config_kafka_get(c, "bootstrap.servers"), "k1:9092,k2:9092");
	assert_null(config_kafka_get(c, "bootstrap_servers"));
	assert_null(config_kafka_get(c, "linger.ms"));
	unload(&l);
}

/* The default of a sources[] key as config_describe prints it (straight from source_opts). */
static char *described_default(const char *describe, const char *key)
{
	char want[64];
	const char *p, *end;

	snprintf(want, sizeof(want), "| `sources[].%s` | ", key);
	p = strstr(describe, want);
	if (!p)
		fail_msg("sources[].%s not described", key);
	p = strchr(p + strlen(want), '|'); /* past the type */
	assert_non_null(p);
	p += 2;
	end = strstr(p, " |");
	assert_non_null(end);
	if (end - p == 2 && memcmp(p, "\"\"", 2) == 0)
		return strdup("");
	return strndup(p, (size_t)(end - p));
}

static void test_default_source_matches_describe(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	loaded l;

	assert_non_null(f);
	config_describe(f);
	fclose(f);
	load_ok(&l, MINIMAL);
	const source_config *s = &l.cfg->sources[0];
	const struct {
		const char *key;
		const char *value;
	} strings[] = {
		{"message_prefix", s->message_prefix}, {"topic", s->topic},
		{"key", s->key},                       {"value", s->value},
		{"event_id", s->event_id},             {"event_type", s->event_type},
		{"timestamp", s->timestamp},           {"headers_column", s->headers_column},
		{"ce_source", s->ce_source},
	};
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		char *def = described_default(text, strings[i].key);
		if (strcmp(def, strings[i].value) != 0)
			fail_msg("sources[].%s: described default '%s', loaded '%s'", strings[i].key, def,
				 strings[i].value);
		free(def);
	}
	/* The table's own default is empty: only the implicit source reads outbox.events. */
	char *def = described_default(text, "table");
	assert_string_equal(def, "");
	free(def);
	def = described_default(text, "tombstones");
	assert_string_equal(def, s->tombstones ? "true" : "false");
	free(def);
	def = described_default(text, "cloudevents");
	assert_string_equal(def, s->cloudevents ? "true" : "false");
	free(def);
	def = described_default(text, "headers");
	assert_string_equal(def, "");
	assert_int_equal(s->n_headers, 0);
	free(def);
	unload(&l);
	free(text);
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
		    "  status_interval_ms = 100;\n"
		    "};\n"
		    "sources = (\n"
		    "  {\n"
		    "    table = \"kyc.outbox\";\n"
		    "    message_prefix = \"\";\n"
		    "    topic = \"kyc.${event_type}\";\n"
		    "    key = \"applicant_id\";\n"
		    "    value = \"body\";\n"
		    "    event_id = \"event_uuid\";\n"
		    "    event_type = \"kind\";\n"
		    "    timestamp = \"occurred_at\";\n"
		    "    headers_column = \"\";\n"
		    "    headers = [ \"schema_version\", \"tenant\" ];\n"
		    "    tombstones = true;\n"
		    "    cloudevents = true;\n"
		    "    ce_source = \"/kyc/screening\";\n"
		    "  }\n"
		    ");\n"
		    "relay = {\n"
		    "  delivery = \"at-least-once\";\n"
		    "  checkpoint_topic = \"cp\";\n"
		    "  transaction_max_records = 1;\n"
		    "  transaction_max_ms = 60000;\n"
		    "  on_error = \"stop\";\n"
		    "  dead_letter_topic = \"dlq\";\n"
		    "  auto_create_topics = false;\n"
		    "  topic_partitions = 12;\n"
		    "  topic_replication_factor = 3;\n"
		    "  log_level = \"debug\";\n"
		    "  shutdown_timeout_ms = 0;\n"
		    "  reconnect_max_backoff_ms = 3600000L;\n"
		    "};\n"
		    "kafka = { bootstrap_servers = \"k:1\"; };\n");
	relay_config *c = l.cfg;
	assert_string_equal(c->pg_conninfo, "host=x");
	assert_string_equal(c->slot, "s1");
	assert_false(c->create_slot);
	assert_int_equal(c->status_interval_ms, 100);
	assert_int_equal(c->n_sources, 1);
	const source_config *s = &c->sources[0];
	assert_int_equal(s->line, 9);
	assert_string_equal(s->table, "kyc.outbox");
	assert_string_equal(s->message_prefix, "");
	assert_string_equal(s->topic, "kyc.${event_type}");
	assert_string_equal(s->key, "applicant_id");
	assert_string_equal(s->value, "body");
	assert_string_equal(s->event_id, "event_uuid");
	assert_string_equal(s->event_type, "kind");
	assert_string_equal(s->timestamp, "occurred_at");
	assert_string_equal(s->headers_column, "");
	assert_int_equal(s->n_headers, 2);
	assert_string_equal(s->headers[0], "schema_version");
	assert_string_equal(s->headers[1], "tenant");
	assert_true(s->tombstones);
	assert_true(s->cloudevents);
	assert_string_equal(s->ce_source, "/kyc/screening");
	assert_string_equal(c->delivery, "at-least-once");
	assert_false(c->exactly_once);
	assert_string_equal(c->checkpoint_topic, "cp");
	assert_int_equal(c->transaction_max_records, 1);
	assert_int_equal(c->transaction_max_ms, 60000);
	assert_string_equal(c->on_error, "stop");
	assert_false(c->dead_letter);
	assert_string_equal(c->dead_letter_topic, "dlq");
	assert_false(c->auto_create_topics);
	assert_int_equal(c->topic_partitions, 12);
	assert_int_equal(c->topic_replication_factor, 3);
	assert_string_equal(c->log_level, "debug");
	assert_int_equal(c->shutdown_timeout_ms, 0);
	assert_int_equal(c->reconnect_max_backoff_ms, 3600000);
	unload(&l);

	/* Empty known groups are fine. */
	load_ok(&l, MINIMAL "relay = { };\n");
	unload(&l);
	/* A libconfig list ( ) works for headers too, and so does an empty array. */
	load_ok(&l, MINIMAL "sources = ( { table = \"s.t\"; headers = ( \"a\", \"b\" ); },\n"
			    "            { table = \"s.u\"; headers = [ ]; } );\n");
	assert_int_equal(l.cfg->n_sources, 2);
	assert_int_equal(l.cfg->sources[0].n_headers, 2);
	assert_string_equal(l.cfg->sources[0].headers[1], "b");
	assert_int_equal(l.cfg->sources[1].n_headers, 0);
	unload(&l);
}

static void test_sources_list(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL
		    "sources = (\n"                                       /* 3 */
		    "  { table = \"outbox.events\"; },\n"                 /* 4 */
		    "  {\n"                                               /* 5 */
		    "    table = \"billing.outbox\";\n"                   /* 6 */
		    "    topic = \"${schema}.${table}\";\n"               /* 7 */
		    "    tombstones = true;\n"                            /* 8 */
		    "  },\n"                                              /* 9 */
		    "  { message_prefix = \"outbox\"; cloudevents = true; }\n" /* 10 */
		    ");\n");
	relay_config *c = l.cfg;
	assert_int_equal(c->n_sources, 3);

	assert_string_equal(c->sources[0].table, "outbox.events");
	assert_int_equal(c->sources[0].line, 4);
	assert_default_source(&c->sources[0]);

	assert_string_equal(c->sources[1].table, "billing.outbox");
	assert_string_equal(c->sources[1].message_prefix, "");
	assert_string_equal(c->sources[1].topic, "${schema}.${table}");
	assert_true(c->sources[1].tombstones);
	assert_string_equal(c->sources[1].key, "aggregate_id");
	assert_string_equal(c->sources[1].headers_column, "headers");
	assert_int_equal(c->sources[1].line, 5);

	assert_string_equal(c->sources[2].table, "");
	assert_string_equal(c->sources[2].message_prefix, "outbox");
	assert_true(c->sources[2].cloudevents);
	assert_false(c->sources[2].tombstones);
	assert_string_equal(c->sources[2].topic, "outbox.${aggregate_type}");
	assert_string_equal(c->sources[2].value, "payload");
	assert_int_equal(c->sources[2].line, 10);
	unload(&l);

	/* The list may come before the groups it does not depend on. */
	load_ok(&l, "sources = ( { message_prefix = \"p\"; } );\n" MINIMAL);
	assert_int_equal(l.cfg->n_sources, 1);
	assert_string_equal(l.cfg->sources[0].message_prefix, "p");
	assert_string_equal(l.cfg->sources[0].table, "");
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
	/* "Every key is shown with its default": the example's source is the default one. */
	assert_int_equal(l.cfg->n_sources, 1);
	assert_string_equal(l.cfg->sources[0].table, "outbox.events");
	assert_default_source(&l.cfg->sources[0]);
	assert_true(l.cfg->exactly_once);
	assert_true(l.cfg->dead_letter);
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

	/* transactional_id is a kafka property like any other in exactly-once mode. */
	load_ok(&l, "postgresql = { conninfo = \"x\"; };\n"
		    "kafka = { bootstrap_servers = \"k:1\"; transactional_id = \"my_relay\"; };\n");
	assert_string_equal(config_kafka_get(l.cfg, "transactional.id"), "my_relay");
	assert_true(l.cfg->exactly_once);
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
	expect_error(MINIMAL "relay = { slot = \"s\"; };\n", 3, "unknown setting 'relay.slot'");
	/* A nested group inside a known one. */
	expect_error(MINIMAL "relay = { sub = { a = 1; }; };\n", 3, "unknown setting 'relay.sub'");
	/* The keys the sources list replaced are unknown now, not silently ignored. */
	expect_error("postgresql = {\n conninfo = \"x\";\n tables = [ \"a.b\" ];\n};\n"
		     "kafka = { bootstrap_servers = \"k:1\"; };\n",
		     3, "unknown setting 'postgresql.tables'");
	expect_error(MINIMAL "outbox = { topic = \"t\"; };\n", 3, "unknown group 'outbox'");
	/* A source's keys are only known inside a source. */
	expect_error(MINIMAL "relay = { topic = \"t\"; };\n", 3, "unknown setting 'relay.topic'");
	expect_error(MINIMAL "sources = ( { table = \"a.b\"; slot = \"s\"; } );\n", 3,
		     "unknown setting 'sources[0].slot'");
}

static void test_unknown_key_in_source(void **state)
{
	(void)state;
	expect_error(MINIMAL "sources = (\n"
			     "  { table = \"a.b\"; },\n"
			     "  {\n"
			     "    table = \"c.d\";\n"
			     "    bogus = 1;\n"
			     "  }\n"
			     ");\n",
		     7, "unknown setting 'sources[1].bogus'");
	/* A group inside a source, and a source key's near-miss. */
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n sub = { x = 1; }; } );\n", 4,
		     "unknown setting 'sources[0].sub'");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n\n tombstone = true; } );\n", 5,
		     "unknown setting 'sources[0].tombstone'");
}

static void test_unknown_group(void **state)
{
	(void)state;
	expect_error(MINIMAL "kafak = { linger_ms = 5; };\n", 3, "unknown group 'kafak'");
	expect_error("\n\nfoo = 1;\n" MINIMAL, 3, "unknown setting 'foo'");
	/* A known group written as a plain setting. */
	expect_error(MINIMAL "relay = 5;\n", 3, "'relay'");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = 5;\n", 2, "'kafka'");
	/* "source" is not "sources". */
	expect_error(MINIMAL "source = ( { table = \"a.b\"; } );\n", 3, "unknown setting 'source'");
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
	expect_error(MINIMAL "relay = {\n auto_create_topics = \"true\";\n};\n", 4,
		     "relay.auto_create_topics must be a bool");
	expect_error(MINIMAL "relay = {\n topic_partitions = \"3\";\n};\n", 4,
		     "relay.topic_partitions must be an integer");
	expect_error(MINIMAL "relay = {\n on_error = false;\n};\n", 4, "relay.on_error must be a string");
	/* Keys of a source, named by their index. */
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n headers = \"tenant\"; } );\n", 4,
		     "sources[0].headers must be a list of strings");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n headers = [ 1, 2 ]; } );\n", 4,
		     "sources[0].headers must be a list of strings");
	expect_error(MINIMAL "sources = ( { table = \"a.b\"; },\n { table = \"c.d\";\n"
			     " headers = ( \"a\", 2 ); } );\n",
		     5, "sources[1].headers must be a list of strings");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n topic = [ \"a\" ]; } );\n", 4,
		     "sources[0].topic must be a string");
	expect_error(MINIMAL "sources = ( { table = 5; } );\n", 3, "sources[0].table must be a string");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n tombstones = 1; } );\n", 4,
		     "sources[0].tombstones must be a bool");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n cloudevents = \"yes\"; } );\n", 4,
		     "sources[0].cloudevents must be a bool");
	expect_error(MINIMAL "sources = ( { message_prefix = \"p\";\n key = 1; } );\n", 4,
		     "sources[0].key must be a string");
	/* kafka values. */
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = {\n bootstrap_servers = \"k\";\n"
		     " linger_ms = [ 1 ];\n};\n",
		     4, "kafka.linger_ms must be a string, number or bool");
	expect_error("postgresql = { conninfo = \"x\"; };\nkafka = {\n bootstrap_servers = \"k\";\n"
		     " sub = { a = 1; };\n};\n",
		     4, "kafka.sub");
}

static void test_sources_not_a_list(void **state)
{
	(void)state;
	/* A group, an array, a string, a number, an empty list. */
	expect_error(MINIMAL "\nsources = { table = \"a.b\"; };\n", 4,
		     "sources must be a non-empty list of groups");
	expect_error(MINIMAL "sources = [ \"a.b\" ];\n", 3, "sources must be a non-empty list of groups");
	expect_error(MINIMAL "sources = \"a.b\";\n", 3, "sources must be a non-empty list of groups");
	expect_error(MINIMAL "sources = 1;\n", 3, "sources must be a non-empty list of groups");
	expect_error(MINIMAL "sources = ( );\n", 3, "sources must be a non-empty list of groups");
	/* Elements that are not groups. */
	expect_error(MINIMAL "sources = ( \"a.b\" );\n", 3, "sources[0] must be a group");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; },\n 5\n);\n", 5,
		     "sources[1] must be a group");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; },\n ( \"c.d\" )\n);\n", 5,
		     "sources[1] must be a group");
}

static void test_source_table_or_prefix(void **state)
{
	(void)state;
	/* Both, at the line of the source's group. */
	expect_error(MINIMAL "sources = (\n"
			     "  { table = \"a.b\"; },\n"
			     "  {\n"
			     "    table = \"c.d\";\n"
			     "    message_prefix = \"outbox\";\n"
			     "  }\n"
			     ");\n",
		     5, "sources[1] needs exactly one of table and message_prefix");
	/* Neither: an empty group, empty strings, only other keys. */
	expect_error(MINIMAL "sources = ( { } );\n", 3,
		     "sources[0] needs exactly one of table and message_prefix");
	expect_error(MINIMAL "sources = (\n { table = \"\"; message_prefix = \"\"; }\n);\n", 4,
		     "sources[0] needs exactly one of table and message_prefix");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; },\n { topic = \"t\"; }\n);\n", 5,
		     "sources[1] needs exactly one of table and message_prefix");
}

/* format: json by default; avro needs the registry's URL and the schema directory. */
static void test_avro_format_needs_a_registry_and_schemas(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL "sources = ( { table = \"a.b\"; } );\n");
	assert_string_equal(l.cfg->sources[0].format, "json");
	assert_false(l.cfg->any_avro);
	assert_int_equal(l.cfg->registry_timeout_ms, 5000);
	unload(&l);
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; format = \"xml\"; }\n);\n", 4,
		     "json or avro");
	expect_error(MINIMAL "sources = ( { table = \"a.b\"; format = \"avro\"; } );\n", 0,
		     "a source with format = \"avro\" needs schema_registry.url and "
		     "schema_registry.schema_dir");
	expect_error(MINIMAL "sources = ( { table = \"a.b\"; format = \"avro\"; } );\n"
			     "schema_registry = { url = \"http://r/apis/ccompat/v7\"; };\n",
		     0, "needs schema_registry.url and schema_registry.schema_dir");
	load_ok(&l, MINIMAL "sources = ( { table = \"a.b\"; format = \"avro\"; }, { table = \"c.d\"; } );\n"
			    "schema_registry = { url = \"http://r/apis/ccompat/v7\"; user = \"u\";\n"
			    "  schema_dir = \"/etc/s\"; timeout_ms = 250; ca_file = \"/ca.pem\"; };\n");
	assert_true(l.cfg->any_avro);
	assert_string_equal(l.cfg->sources[0].format, "avro");
	assert_string_equal(l.cfg->sources[1].format, "json");
	assert_string_equal(l.cfg->registry_url, "http://r/apis/ccompat/v7");
	assert_string_equal(l.cfg->registry_user, "u");
	assert_string_equal(l.cfg->schema_dir, "/etc/s");
	assert_string_equal(l.cfg->registry_ca_file, "/ca.pem");
	assert_int_equal(l.cfg->registry_timeout_ms, 250);
	unload(&l);
}

/* Throwaway client TLS files in a temporary directory: a certificate, its key, another key. */
typedef struct {
	char dir[64];
	char cert[128], key[128], other[128], enc[128], creds[128];
} tls_files;

/* A P-256 key written to path as PEM (encrypted with pass when pass is not NULL). */
static EVP_PKEY *write_key(const char *path, const char *pass)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	FILE *f = fopen(path, "w");

	assert_non_null(k);
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, pass ? EVP_aes_256_cbc() : NULL,
					      (unsigned char *)pass, pass ? (int)strlen(pass) : 0,
					      NULL, NULL), 1);
	fclose(f);
	return k;
}

/* A self-signed certificate of k written to path as PEM. */
static void write_cert(const char *path, EVP_PKEY *k)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_get_subject_name(x);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"relay", -1, -1, 0);
	X509_set_issuer_name(x, n);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	X509_free(x);
}

static void tls_files_make(tls_files *t)
{
	strcpy(t->dir, "/tmp/relay-unit-tls-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->cert, sizeof(t->cert), "%s/client.crt", t->dir);
	snprintf(t->key, sizeof(t->key), "%s/client.key", t->dir);
	snprintf(t->other, sizeof(t->other), "%s/other.key", t->dir);
	snprintf(t->enc, sizeof(t->enc), "%s/enc.key", t->dir);
	snprintf(t->creds, sizeof(t->creds), "%s/schema-registry-key-password", t->dir);
	EVP_PKEY *k = write_key(t->key, NULL);
	write_cert(t->cert, k);
	EVP_PKEY_free(k);
	EVP_PKEY_free(write_key(t->other, NULL));
}

static void tls_files_remove(tls_files *t)
{
	unlink(t->cert);
	unlink(t->key);
	unlink(t->other);
	unlink(t->enc);
	unlink(t->creds);
	rmdir(t->dir);
}

/* A registry group with url and the given extra lines (one key per line from line 4 on). */
static char *registry_text(const char *url, const char *lines)
{
	char *text;
	assert_true(asprintf(&text, MINIMAL "schema_registry = {\n  url = \"%s\";\n%s};\n", url,
			     lines) > 0);
	return text;
}

/* Loads a registry group that must be refused at line with words in the message. */
static void expect_registry_error(const char *url, const char *lines, int line, const char *words)
{
	char *text = registry_text(url, lines);
	expect_error(text, line, words);
	free(text);
}

/* schema_registry.cert_file and key_file: a pair, over https, readable, the key the cert's. */
static void test_registry_client_certificate_is_checked_at_load(void **state)
{
	(void)state;
	tls_files t;
	char lines[512];
	loaded l;

	tls_files_make(&t);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n", t.cert);
	expect_registry_error("https://r/", lines, 5, "cert_file needs schema_registry.key_file");
	snprintf(lines, sizeof(lines), "  key_file = \"%s\";\n", t.key);
	expect_registry_error("https://r/", lines, 5, "key_file needs schema_registry.cert_file");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.key);
	expect_registry_error("http://r/", lines, 5, "needs an https schema_registry.url");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.other);
	expect_registry_error("https://r/", lines, 6, "is not the private key of the certificate");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s/none.crt\";\n  key_file = \"%s\";\n", t.dir,
		 t.key);
	expect_registry_error("https://r/", lines, 5, "none.crt\" cannot be read: No such file");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.cert);
	expect_registry_error("https://r/", lines, 6, "holds no PEM private key");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.key);
	char *text = registry_text("https://r/", lines);
	load_ok(&l, text);
	free(text);
	assert_string_equal(l.cfg->registry_cert_file, t.cert);
	assert_string_equal(l.cfg->registry_key_file, t.key);
	unload(&l);
	tls_files_remove(&t);
}

/* An encrypted key is read with the passphrase of credential schema-registry-key-password. */
static void test_registry_encrypted_key_takes_its_passphrase_from_a_credential(void **state)
{
	(void)state;
	tls_files t;
	char lines[512];
	loaded l;

	tls_files_make(&t);
	EVP_PKEY *k = write_key(t.enc, "hunter2");
	write_cert(t.cert, k); /* the certificate of the encrypted key now */
	EVP_PKEY_free(k);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.enc);
	char *text = registry_text("https://r/", lines);
	unsetenv("CREDENTIALS_DIRECTORY");
	expect_error(text, 6, "is encrypted: its passphrase comes from the systemd credential "
			      "schema-registry-key-password, which is not there");
	setenv("CREDENTIALS_DIRECTORY", t.dir, 1);
	FILE *f = fopen(t.creds, "w");
	fputs("wrong\n", f);
	fclose(f);
	expect_error(text, 6, "cannot be decrypted with the passphrase of the credential");
	f = fopen(t.creds, "w");
	fputs("hunter2\n", f);
	fclose(f);
	load_ok(&l, text);
	config_load_credentials(l.cfg);
	assert_string_equal(l.cfg->registry_key_password, "hunter2");
	unload(&l);
	unsetenv("CREDENTIALS_DIRECTORY");
	free(text);
	tls_files_remove(&t);
}

/*
 * A certificate PEM block with an encryption header is refused without a passphrase prompt on
 * the terminal (OpenSSL's default callback would ask on /dev/tty); a directory or a FIFO is
 * refused at once (a FIFO would block the load until someone writes to it).
 */
static void test_registry_cert_file_never_prompts_nor_blocks(void **state)
{
	(void)state;
	tls_files t;
	char lines[512], path[160];
	static const unsigned char junk[48] = {1, 2, 3};

	tls_files_make(&t);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(path, sizeof(path), "%s/enc.crt", t.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_true(PEM_write(f, "CERTIFICATE", "Proc-Type: 4,ENCRYPTED\n"
				"DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n",
			      junk, sizeof(junk)) > 0);
	fclose(f);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", path, t.key);
	expect_registry_error("https://r/", lines, 5, "holds an encrypted certificate; give it in plain");
	unlink(path);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.dir, t.key);
	expect_registry_error("https://r/", lines, 5, "cert_file \"/tmp/relay-unit-tls-");
	expect_registry_error("https://r/", lines, 5, "\" is not a regular file");
	snprintf(path, sizeof(path), "%s/fifo.key", t.dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, path);
	expect_registry_error("https://r/", lines, 6, "fifo.key\" is not a regular file");
	unlink(path);
	tls_files_remove(&t);
}

/* A passphrase libcurl would not take (as long as OpenSSL's buffer) is refused at load, by name. */
static void test_registry_key_passphrase_too_long_for_libcurl_is_refused(void **state)
{
	(void)state;
	tls_files t;
	char lines[512], pass[1025];
	loaded l;

	memset(pass, 'p', 1024);
	pass[1024] = '\0';
	tls_files_make(&t);
	EVP_PKEY *k = write_key(t.enc, pass);
	write_cert(t.cert, k);
	EVP_PKEY_free(k);
	setenv("CREDENTIALS_DIRECTORY", t.dir, 1);
	FILE *f = fopen(t.creds, "w");
	fputs(pass, f);
	fclose(f);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.enc);
	expect_registry_error("https://r/", lines, 6, "schema-registry-key-password is too long (at "
			      "most 1023 bytes)");
	pass[1023] = '\0'; /* the longest that fits: the same key encrypted again with it */
	k = write_key(t.enc, pass);
	write_cert(t.cert, k);
	EVP_PKEY_free(k);
	f = fopen(t.creds, "w");
	fputs(pass, f);
	fclose(f);
	char *text = registry_text("https://r/", lines);
	load_ok(&l, text);
	free(text);
	unload(&l);
	unsetenv("CREDENTIALS_DIRECTORY");
	tls_files_remove(&t);
}

/* A client certificate and key of other files on SIGHUP need a restart: the running ones stay. */
static void test_reload_keeps_the_registry_client_certificate(void **state)
{
	(void)state;
	tls_files t;
	char lines[512], cert2[160];
	loaded run, fresh;

	tls_files_make(&t);
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", t.cert, t.key);
	char *text = registry_text("https://r/", lines);
	load_ok(&run, text);
	free(text);
	snprintf(cert2, sizeof(cert2), "%s/other.crt", t.dir);
	EVP_PKEY *k = write_key(t.other, NULL);
	write_cert(cert2, k);
	EVP_PKEY_free(k);
	snprintf(lines, sizeof(lines), "  cert_file = \"%s\";\n  key_file = \"%s\";\n", cert2, t.other);
	text = registry_text("https://r/", lines);
	load_ok(&fresh, text);
	free(text);
	config_reload(run.cfg, fresh.cfg);
	assert_string_equal(run.cfg->registry_cert_file, t.cert);
	assert_string_equal(run.cfg->registry_key_file, t.key);
	unload(&run);
	unload(&fresh);
	unlink(cert2);
	tls_files_remove(&t);
}

/* A capture's format: json by default; avro needs the registry's URL only (no schema files). */
static void test_capture_avro_needs_only_the_registry_url(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL "capture = ( { tables = \"a.b\"; } );\n");
	assert_string_equal(l.cfg->captures[0].format, "json");
	assert_false(l.cfg->capture_avro);
	unload(&l);
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; format = \"xml\"; }\n);\n", 4,
		     "json or avro");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; },\n { tables = \"c.d\"; format = \"avro\"; }\n);\n",
		     5, "capture[1] has format = \"avro\": it needs schema_registry.url");
	load_ok(&l, MINIMAL "capture = ( { tables = \"a.b\"; format = \"avro\"; }, { tables = \"c.d\"; } );\n"
			    "schema_registry = { url = \"http://r/apis/ccompat/v7\"; };\n");
	assert_true(l.cfg->capture_avro);
	assert_false(l.cfg->any_avro); /* no schema_dir needed */
	assert_string_equal(l.cfg->captures[0].format, "avro");
	assert_string_equal(l.cfg->captures[1].format, "json");
	unload(&l);
	/* One subject per topic: an Avro entry's topic must name its table. */
	expect_error(MINIMAL "schema_registry = { url = \"http://r\"; };\ncapture = (\n"
		     " { tables = \"a.*\"; format = \"avro\"; topic = \"all\"; }\n);\n",
		     5, "capture[0] has format = \"avro\" and topic \"all\" without ${table}");
}

/* A capture's key_format: string by default; avro only with format = "avro", else file:line. */
static void test_capture_avro_keys_need_an_avro_format(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL "schema_registry = { url = \"http://r\"; };\n"
			    "capture = ( { tables = \"a.b\"; format = \"avro\"; key_format = \"avro\"; },"
			    " { tables = \"c.d\"; } );\n");
	assert_string_equal(l.cfg->captures[0].key_format, "avro");
	assert_string_equal(l.cfg->captures[1].key_format, "string");
	unload(&l);
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; },\n { tables = \"c.d\"; key_format = \"avro\"; }\n);\n",
		     5, "capture[1]: key_format = \"avro\" needs format = \"avro\"");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; key_format = \"json\"; }\n);\n", 4,
		     "string or avro");
}

static void test_protect_rules_load_and_every_bad_one_is_named_at_its_line(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, MINIMAL "protect = (\n"
			    " { fields = [\"/email\", \"/document/number\"]; action = \"hash\"; },\n"
			    " { columns = [\"email\"]; tables = [\"public.*\"]; action = \"mask\";\n"
			    "   keep_last = 2; }\n);\nprotection = { key_id = \"2026-12\"; };\n"
			    "capture = ( { tables = \"public.*\"; } );\n");
	assert_int_equal(l.cfg->n_protects, 2);
	assert_int_equal(l.cfg->protects[0].n_fields, 2);
	assert_string_equal(l.cfg->protects[0].event_types[0], "*");
	assert_string_equal(l.cfg->protects[1].tables[0], "public.*");
	assert_int_equal(l.cfg->protects[1].keep_last, 2);
	assert_int_equal(l.cfg->protects[1].line, 5);
	assert_string_equal(l.cfg->protect_key_id, "2026-12");
	unload(&l);
	expect_error(MINIMAL "protect = (\n { fields = [\"/a\"]; action = \"scramble\"; }\n);\n", 4,
		     "protect[0].action 'scramble' is not one of drop, mask, hash, encrypt");
	expect_error(MINIMAL "protect = (\n { action = \"drop\"; }\n);\n", 4,
		     "protect[0] names nothing");
	expect_error(MINIMAL "protect = (\n { fields = [\"email\"]; action = \"drop\"; }\n);\n", 4,
		     "'email' is not a JSON path");
	expect_error(MINIMAL "protect = (\n { columns = [\"e\"]; tables = []; action = \"drop\"; }\n);\n",
		     4, "empty tables list");
	expect_error(MINIMAL "protection = { key_id = \"a:b\"; };\n", 3, "protection.key_id 'a:b'");
	/* One validator for paths: a '~' not followed by 0 or 1 is refused here, not skipped later. */
	expect_error(MINIMAL "protect = (\n { fields = [\"/first~name\"]; action = \"drop\"; }\n);\n",
		     4, "protect[0].fields: '/first~name' is not a JSON path");
	expect_error(MINIMAL "protect = (\n { fields = [\"/e~2mail\"]; action = \"drop\"; }\n);\n",
		     4, "protect[0].fields: '/e~2mail' is not a JSON path");
	/* Columns with nothing captured protect nothing. */
	expect_error(MINIMAL "protect = (\n { columns = [\"email\"]; action = \"hash\"; }\n);\n", 4,
		     "protect[0].columns: no table is captured");
	/* Keys that do nothing with the rule's others: a warning at their line, the file loads. */
	load_text(&l, MINIMAL "protect = (\n { fields = [\"/a\"]; action = \"hash\"; keep_last = 2;\n"
			    "   tables = [\"x.*\"]; },\n { columns = [\"c\"]; event_types = [\"E\"]; "
			    "action = \"drop\"; }\n);\ncapture = ( { tables = \"public.*\"; } );\n");
	assert_non_null(l.cfg);
	assert_non_null(strstr(l.err, ":4: warning: protect[0].keep_last has no effect"));
	assert_non_null(strstr(l.err, ":4: warning: protect[0].tables has no effect"));
	assert_non_null(strstr(l.err, ":6: warning: protect[1].event_types has no effect"));
	unload(&l);
	/* Every bad rule is reported, not only the first. */
	load_text(&l, MINIMAL "protect = (\n { action = \"drop\"; },\n"
			      " { fields = [\"/a\"]; action = \"x\"; }\n);\n");
	assert_null(l.cfg);
	assert_non_null(strstr(l.err, ":4: protect[0] names nothing"));
	assert_non_null(strstr(l.err, ":5: protect[1].action 'x'"));
	unload(&l);
}

static void test_bad_table_name(void **state)
{
	(void)state;
	expect_error(MINIMAL "sources = (\n { table = \"events\"; }\n);\n", 4,
		     "sources[0].table 'events' must be schema.table");
	expect_error(MINIMAL "sources = ( { table = \".events\"; } );\n", 3, "must be schema.table");
	expect_error(MINIMAL "sources = ( { table = \"outbox.\"; } );\n", 3, "must be schema.table");
	expect_error(MINIMAL "sources = ( { table = \".\"; } );\n", 3, "must be schema.table");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; },\n { table = \"ab\"; }\n);\n", 5,
		     "sources[1].table 'ab' must be schema.table");
	/* More dots are the table's (a quoted name may hold dots). */
	loaded l;
	load_ok(&l, MINIMAL "sources = ( { table = \"outbox.events.v2\"; } );\n");
	assert_string_equal(l.cfg->sources[0].table, "outbox.events.v2");
	unload(&l);
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
	expect_error(MINIMAL "relay = {\n topic_partitions = -2;\n};\n", 4,
		     "relay.topic_partitions = -2 is out of range (-1 to 100000)");
	expect_error(MINIMAL "relay = {\n topic_partitions = 0;\n topic_partitions2 = 1;\n};\n", 5,
		     "unknown setting 'relay.topic_partitions2'");
	expect_error(MINIMAL "relay = {\n topic_replication_factor = 101;\n};\n", 4,
		     "relay.topic_replication_factor = 101 is out of range (-1 to 100)");
	expect_error(MINIMAL "relay = {\n transaction_max_records = 0;\n};\n", 4,
		     "relay.transaction_max_records = 0 is out of range (1 to 10000000)");
	expect_error(MINIMAL "relay = {\n transaction_max_ms = 60001;\n};\n", 4,
		     "relay.transaction_max_ms = 60001 is out of range (1 to 60000)");
	/* 64-bit values (libconfig 1.5 needs the L suffix for them; without it, it truncates). */
	expect_error(MINIMAL "relay = {\n reconnect_max_backoff_ms = 99999999999L;\n};\n", 4,
		     "relay.reconnect_max_backoff_ms = 99999999999 is out of range");
	expect_error(MINIMAL "relay = {\n reconnect_max_backoff_ms = 4294967396L;\n};\n", 4,
		     "= 4294967396 is out of range");
	/* The bounds themselves are fine. */
	loaded l;
	load_ok(&l, MINIMAL "relay = { shutdown_timeout_ms = 3600000; reconnect_max_backoff_ms = 100;\n"
			    " topic_partitions = 100000; topic_replication_factor = -1;\n"
			    " transaction_max_records = 10000000; transaction_max_ms = 1; };\n");
	assert_int_equal(l.cfg->shutdown_timeout_ms, 3600000);
	assert_int_equal(l.cfg->reconnect_max_backoff_ms, 100);
	assert_int_equal(l.cfg->topic_partitions, 100000);
	assert_int_equal(l.cfg->topic_replication_factor, -1);
	assert_int_equal(l.cfg->transaction_max_records, 10000000);
	assert_int_equal(l.cfg->transaction_max_ms, 1);
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

/*
 * A slot name PostgreSQL would refuse is a config error at its line: upper case, '-', too long,
 * empty, and bytes that are not UTF-8 (they crashed the checkpoint's encoder after start).
 */
static void test_slot_name_outside_postgresqls_rule_is_refused_at_its_line(void **state)
{
	const char *bad[] = {"Relay", "relay-1", "", "r\xe9lay", "\xff\xfe",
			     "a234567890123456789012345678901234567890123456789012345678901234"};
	char text[512];
	loaded l;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "kafka = { bootstrap_servers = \"k\"; };\n"
			 "postgresql = {\n conninfo = \"x\";\n slot = \"%s\";\n};\n", bad[i]);
		expect_error(text, 4, "postgresql.slot must be 1 to 63 lower-case letters");
	}
	load_text(&l, "kafka = { bootstrap_servers = \"k\"; };\npostgresql = { conninfo = \"x\"; "
		      "slot = \"relay_2026_a234567890123456789012345678901234567890123456789012\"; };\n");
	assert_non_null(l.cfg);
	assert_int_equal(strlen(l.cfg->slot), 63);
	unload(&l);
}

static void test_invalid_values(void **state)
{
	(void)state;
	expect_error(MINIMAL "relay = {\n\n log_level = \"verbose\";\n};\n", 5,
		     "relay.log_level 'verbose' is not one of error, warn, info, debug");
	expect_error(MINIMAL "relay = { log_level = \"INFO\"; };\n", 3, "relay.log_level");
	/* on_error */
	expect_error(MINIMAL "relay = {\n on_error = \"ignore\";\n};\n", 4,
		     "relay.on_error 'ignore' is not dead-letter or stop");
	expect_error(MINIMAL "relay = {\n on_error = \"dead_letter\";\n};\n", 4,
		     "relay.on_error 'dead_letter' is not dead-letter or stop");
	expect_error(MINIMAL "relay = { on_error = \"\"; };\n", 3, "relay.on_error '' is not");
	/* delivery */
	expect_error(MINIMAL "relay = {\n\n delivery = \"exactly_once\";\n};\n", 5,
		     "relay.delivery 'exactly_once' is not exactly-once or at-least-once");
	expect_error(MINIMAL "relay = { delivery = \"at-most-once\"; };\n", 3, "relay.delivery");
	/* A transactional.id with at-least-once (at the kafka group's line). */
	expect_error("postgresql = { conninfo = \"x\"; };\n"
		     "kafka = { bootstrap_servers = \"k\"; transactional_id = \"t\"; };\n"
		     "relay = { delivery = \"at-least-once\"; };\n",
		     2, "kafka.transactional_id needs relay.delivery = \"exactly-once\"");
	/* Both valid values of each. */
	loaded l;
	load_ok(&l, MINIMAL "relay = { on_error = \"stop\"; delivery = \"exactly-once\"; };\n");
	assert_false(l.cfg->dead_letter);
	assert_true(l.cfg->exactly_once);
	unload(&l);
	load_ok(&l, MINIMAL "relay = { on_error = \"dead-letter\"; delivery = \"at-least-once\"; };\n");
	assert_true(l.cfg->dead_letter);
	assert_false(l.cfg->exactly_once);
	unload(&l);
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
	expect_error(MINIMAL "relay = { log_level = \"info\"; }\n\nsources = (\n", 0, "");
	expect_error("postgresql = { conninfo = \"unterminated; };\n", 0, "");
	expect_error(MINIMAL "sources = ( { table = \"a.b\"; }\n", 0, "");
	/* The same group or key twice. */
	expect_error(MINIMAL "postgresql = { };\n", 3, "duplicate");
	expect_error("postgresql = {\n conninfo = \"x\";\n conninfo = \"y\";\n};\n", 3, "duplicate");
	expect_error(MINIMAL "sources = ( { table = \"a.b\";\n table = \"c.d\"; } );\n", 4, "duplicate");
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

/* Every line of err starts with the path. */
static void assert_lines_start_with_path(const loaded *l)
{
	for (const char *p = l->err; *p; p = strchr(p, '\n') + 1) {
		assert_true(strncmp(p, l->path, strlen(l->path)) == 0);
		assert_non_null(strchr(p, '\n'));
	}
}

/* Each of lines (":LINE: words") is in err after the path, and every line of err names the path. */
static void assert_reported(const loaded *l, const char *const *lines, size_t n)
{
	char want[512];

	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "%s%s", l->path, lines[i]);
		if (!strstr(l->err, want))
			fail_msg("want '%s' in:\n%s", want, l->err);
	}
	assert_lines_start_with_path(l);
}

static void test_every_problem_reported(void **state)
{
	(void)state;
	loaded l;

	load_text(&l, "postgresql = {\n slott = 1;\n status_interval_ms = 5;\n};\nfoo = { };\n"
		      "relay = { create_slot = true; };\n"
		      "sources = (\n { table = \"a.b\"; bogus = 1; },\n { table = 5; }\n);\n");
	assert_null(l.cfg);
	const char *lines[] = {":2: unknown setting 'postgresql.slott'", ":5: unknown group 'foo'",
			       ":6: unknown setting 'relay.create_slot'",
			       ":3: postgresql.status_interval_ms = 5 is out of range",
			       ":1: postgresql.conninfo is required",
			       ":8: unknown setting 'sources[0].bogus'",
			       ":9: sources[1].table must be a string"};
	/* One problem per line, each line starting with the path. */
	assert_reported(&l, lines, sizeof(lines) / sizeof(lines[0]));
	unload(&l);

	/* Problems of values that span keys are all reported too. */
	load_text(&l, MINIMAL "relay = {\n on_error = \"x\";\n delivery = \"y\";\n log_level = \"z\";\n};\n");
	assert_null(l.cfg);
	const char *values[] = {":4: relay.on_error 'x'", ":5: relay.delivery 'y'", ":6: relay.log_level 'z'"};
	assert_reported(&l, values, sizeof(values) / sizeof(values[0]));
	unload(&l);
}

/* A problem in one source does not stop the next source from being checked. */
static void test_every_source_checked(void **state)
{
	(void)state;
	loaded l;
	char want[256];

	load_text(&l, MINIMAL "sources = (\n { table = \"a.b\"; bogus = 1; },\n { }\n);\n");
	assert_null(l.cfg);
	snprintf(want, sizeof(want), "%s:5: sources[1] needs exactly one of table and message_prefix",
		 l.path);
	if (!strstr(l.err, want))
		fail_msg("want '%s' in:\n%s", want, l.err);
	unload(&l);
}

/*
 * config_load refuses what router_new would (one template check, template.c), at the source's
 * line: a template Kafka cannot take, an empty key or value, a table or prefix read twice.
 */
static void test_sources_checked_like_the_router(void **state)
{
	(void)state;
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; topic = \"bad topic\"; }\n);\n", 4,
		     "sources[0].topic");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; topic = \"x.${\"; }\n);\n", 4,
		     "sources[0].topic");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; topic = \"\"; }\n);\n", 4,
		     "sources[0].topic");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; key = \"\"; }\n);\n", 4,
		     "sources[0].key");
	expect_error(MINIMAL "sources = (\n { table = \"a.b\"; },\n { table = \"a.b\"; }\n);\n", 5,
		     "sources[1]");
	expect_error(MINIMAL "sources = (\n { message_prefix = \"p\"; },\n { message_prefix = \"p\"; }\n);\n",
		     5, "sources[1]");
}

/* The capture list: defaults, patterns, and errors at the entry's line. */
static void test_capture_list(void **state)
{
	loaded l;

	(void)state;
	load_ok(&l, MINIMAL "capture = (\n  { tables = \"public.users\"; exclude_columns = "
			    "[\"password_hash\"]; },\n  { tables = \"*.orders\"; snapshot = false; }\n);\n");
	assert_int_equal(l.cfg->n_captures, 2);
	assert_int_equal(l.cfg->n_sources, 0); /* a capture list and no sources: no outbox table */
	assert_string_equal(l.cfg->captures[0].topic, "${prefix}.${schema}.${table}");
	assert_true(l.cfg->captures[0].tombstones && l.cfg->captures[0].snapshot);
	assert_int_equal(l.cfg->captures[0].n_exclude_columns, 1);
	assert_string_equal(l.cfg->topic_prefix, "cdc");
	assert_ptr_equal(config_capture_for(l.cfg, "public", "users"), &l.cfg->captures[0]);
	assert_ptr_equal(config_capture_for(l.cfg, "sales", "orders"), &l.cfg->captures[1]);
	assert_null(config_capture_for(l.cfg, "public", "orders2"));
	unload(&l);
	expect_error(MINIMAL "capture = (\n { tables = \"pub*.x\"; }\n);\n", 4,
		     "capture[0].tables 'pub*.x' must be schema.table");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; include_columns = [\"x\"]; "
			     "exclude_columns = [\"y\"]; }\n);\n", 4, "both include_columns and exclude_columns");
	expect_error(MINIMAL "relay = { delivery = \"at-least-once\"; };\ncapture = (\n { tables = "
			     "\"a.b\"; }\n);\n", 5, "capture[0].snapshot needs relay.delivery");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; colums = []; }\n);\n", 4,
		     "unknown setting 'capture[0].colums'");
	expect_error(MINIMAL "capture = ( );\n", 3, "capture must be a non-empty list");
}

/* A capture topic with a placeholder the capture does not fill is refused at the key's line. */
static void test_capture_topic_placeholders_checked_at_load(void **state)
{
	(void)state;
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\";\n   topic = \"cdc.${foo}.${table}\"; }\n);\n",
		     5, "capture[0].topic: topic template 'cdc.${foo}.${table}': unknown placeholder '${foo}'");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; topic = \"cdc.${table\"; }\n);\n", 4,
		     "'${' without a closing '}'");
	expect_error(MINIMAL "capture = (\n { tables = \"a.b\"; topic = \"cdc.${}\"; }\n);\n", 4,
		     "empty placeholder");
	/* An outbox topic takes any column name. */
	loaded l;
	load_ok(&l, MINIMAL "sources = ( { table = \"a.b\"; topic = \"x.${foo}.${table}\"; } );\n");
	unload(&l);
}

/* SIGHUP changes exactly the keys the table marks reloadable; the others keep their value. */
static void test_reload_applies_only_reloadable_keys(void **state)
{
	(void)state;
	loaded run, fresh;

	load_ok(&run, MINIMAL);
	load_ok(&fresh, "postgresql = { conninfo = \"host=other\"; slot = \"s2\"; status_interval_ms = 2000; };\n"
			"kafka = { bootstrap_servers = \"k1:9092,k2:9092\"; };\n"
			"relay = { log_level = \"debug\"; transaction_max_records = 7; transaction_max_ms = 50;\n"
			"  shutdown_timeout_ms = 5; reconnect_max_backoff_ms = 1000; lag_warn_mb = 3;\n"
			"  max_in_flight_bytes = 70000; delivery = \"at-least-once\"; log_format = \"json\";\n"
			"  dead_letter_topic = \"dlq2\"; topic_partitions = 3; };\n");
	config_reload(run.cfg, fresh.cfg);
	relay_config *c = run.cfg;
	/* Reloadable. */
	assert_string_equal(c->log_level, "debug");
	assert_int_equal(c->transaction_max_records, 7);
	assert_int_equal(c->transaction_max_ms, 50);
	assert_int_equal(c->shutdown_timeout_ms, 5);
	assert_int_equal(c->reconnect_max_backoff_ms, 1000);
	assert_int_equal(c->lag_warn_mb, 3);
	assert_int_equal(c->max_in_flight_bytes, 70000);
	assert_int_equal(c->status_interval_ms, 2000);
	/* Need a restart: the running values stay. */
	assert_string_equal(c->pg_conninfo, "host=db dbname=app");
	assert_string_equal(c->slot, "outbox_relay");
	assert_string_equal(c->delivery, "exactly-once");
	assert_true(c->exactly_once);
	assert_string_equal(c->log_format, "text");
	assert_string_equal(c->dead_letter_topic, "outbox-relay.dead-letters");
	assert_int_equal(c->topic_partitions, -1);
	unload(&run);
	unload(&fresh);
}

/* Standbys to wait for need Kafka transactions, and no more of them than are named. */
static void test_wait_for_standbys_is_checked_against_the_names_and_the_delivery(void **state)
{
	(void)state;
	loaded l;

	load_ok(&l, "postgresql = { conninfo = \"x\"; wait_for_standbys = [ \"a\", \"b\" ]; };\n"
		    "kafka = { bootstrap_servers = \"k:9092\"; };\n");
	assert_int_equal(l.cfg->n_wait_for_standbys, 2);
	assert_int_equal(l.cfg->wait_for_standbys_count, 1);
	unload(&l);
	expect_error("postgresql = { conninfo = \"x\";\n wait_for_standbys = [ \"a\" ];\n"
		     " wait_for_standbys_count = 2; };\nkafka = { bootstrap_servers = \"k:9092\"; };\n",
		     3, "only 1 standbys are named");
	expect_error("postgresql = { conninfo = \"x\";\n wait_for_standbys = [ \"a\" ]; };\n"
		     "kafka = { bootstrap_servers = \"k:9092\"; };\nrelay = { delivery = \"at-least-once\"; };\n",
		     2, "needs relay.delivery");
	expect_error("postgresql = { conninfo = \"x\";\n wait_for_standbys = [ \"a\", \"b\", \"a\" ]; };\n"
		     "kafka = { bootstrap_servers = \"k:9092\"; };\n", 2, "names a twice");
	expect_error("postgresql = { conninfo = \"x\";\n wait_for_standbys = [ \"\" ]; };\n"
		     "kafka = { bootstrap_servers = \"k:9092\"; };\n", 2, "an empty name");
	expect_error("postgresql = { conninfo = \"x\"; create_slot = false;\n adopt_slot = \"recreate\"; };\n"
		     "kafka = { bootstrap_servers = \"k:9092\"; };\n", 2, "needs postgresql.create_slot");
}

/* A list key at the top level is reloaded whole: the standbys to wait for change with SIGHUP. */
static void test_reload_replaces_the_standbys_to_wait_for(void **state)
{
	(void)state;
	loaded run, fresh;

	load_ok(&run, "postgresql = { conninfo = \"x\"; wait_for_standbys = [ \"old\" ]; };\n"
		      "kafka = { bootstrap_servers = \"k:9092\"; };\n");
	load_ok(&fresh, "postgresql = { conninfo = \"x\"; wait_for_standbys = [ \"pg1\", \"pg2\" ];\n"
			"  wait_for_standbys_count = 2; };\nkafka = { bootstrap_servers = \"k:9092\"; };\n");
	config_reload(run.cfg, fresh.cfg);
	assert_int_equal(run.cfg->n_wait_for_standbys, 2);
	assert_string_equal(run.cfg->wait_for_standbys[0], "pg1");
	assert_string_equal(run.cfg->wait_for_standbys[1], "pg2");
	assert_null(run.cfg->wait_for_standbys[2]);
	assert_int_equal(run.cfg->wait_for_standbys_count, 2);
	unload(&run);
	unload(&fresh);
}

/* --describe-config says which keys SIGHUP changes: the same ones config_reload applies. */
static void test_describe_marks_the_reloadable_keys(void **state)
{
	(void)state;
	static const char *const reloadable[] = {
		"relay.log_level", "relay.transaction_max_records", "relay.transaction_max_ms",
		"relay.transaction_gather_ms", "relay.shutdown_timeout_ms", "relay.reconnect_max_backoff_ms",
		"postgresql.status_interval_ms", "relay.lag_warn_mb", "relay.max_in_flight_bytes",
		"postgresql.wait_for_standbys", "postgresql.wait_for_standbys_count",
	};
	char *text = NULL;
	size_t len = 0, n_sighup = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	config_describe(f);
	fclose(f);
	for (const char *p = text; (p = strstr(p, "| SIGHUP |")); p++)
		n_sighup++;
	assert_int_equal(n_sighup, sizeof(reloadable) / sizeof(reloadable[0]));
	for (size_t i = 0; i < sizeof(reloadable) / sizeof(reloadable[0]); i++) {
		char want[96];
		snprintf(want, sizeof(want), "| `%s` |", reloadable[i]);
		const char *row = strstr(text, want);
		assert_non_null(row);
		const char *nl = strchr(row, '\n');
		const char *mark = strstr(row, "| SIGHUP |");
		if (!mark || mark > nl)
			fail_msg("%s is not marked SIGHUP", reloadable[i]);
	}
	free(text);
}

/* An enumerated key names every word it accepts; each of those words loads. */
static void test_enum_rejection_lists_the_accepted_words(void **state)
{
	(void)state;
	static const struct {
		const char *key, *words[5], *message;
	} enums[] = {
		{"delivery", {"exactly-once", "at-least-once"}, "is not exactly-once or at-least-once"},
		{"first_start", {"backfill", "from-now"}, "is not backfill or from-now"},
		{"slot_loss", {"recover", "recover-rows", "stop"},
		 "is not one of recover, recover-rows, stop"},
		{"capture_on_slot_loss", {"stop", "resnapshot"}, "is not stop or resnapshot"},
		{"on_error", {"dead-letter", "stop"}, "is not dead-letter or stop"},
		{"takeover", {"fence", "wait"}, "is not fence or wait"},
		{"log_level", {"error", "warn", "info", "debug"},
		 "is not one of error, warn, info, debug"},
		{"log_format", {"text", "logfmt", "json"}, "is not one of text, logfmt, json"},
	};
	char text[512], want[256];
	loaded l;

	for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "relay = {\n %s = \"Nope\";\n};\n", enums[i].key);
		snprintf(want, sizeof(want), "relay.%s 'Nope' %s", enums[i].key, enums[i].message);
		expect_error(text, 4, want);
		for (size_t k = 0; enums[i].words[k]; k++) {
			snprintf(text, sizeof(text), MINIMAL "relay = { %s = \"%s\"; };\n",
				 enums[i].key, enums[i].words[k]);
			load_ok(&l, text);
			unload(&l);
		}
	}
}

/* Problems of every kind in one file: each is reported at its own line, none hides another. */
static void test_every_problem_of_every_kind_reported(void **state)
{
	(void)state;
	loaded l;

	load_text(&l, "postgresql = {\n conninfo = 5;\n};\n"                     /* 1-3 */
		      "kafka = { transactional_id = \"t\"; };\n"                      /* 4 */
		      "relay = {\n delivery = \"at-least-once\";\n first_start = \"later\";\n" /* 5-7 */
		      " metrics_listen = \"nope\";\n bogus = 1;\n};\n"                /* 8-10 */
		      "capture = (\n { tables = \"public.users\";\n"                  /* 11-12 */
		      "   topic = \"cdc.${foo}.${table}\"; snapshot = false; },\n"     /* 13 */
		      " { tables = \"a\"; snapshot = false; },\n"                      /* 14 */
		      " { tables = \"b.c\"; }\n);\n"                                   /* 15-16 */
		      "sources = (\n { table = \"x.y\";\n   topic = \"t.${\"; },\n"   /* 17-19 */
		      " { message_prefix = \"m\"; value = \"\"; },\n"                  /* 20 */
		      " { }\n);\n");                                                   /* 21-22 */
	assert_null(l.cfg);
	const char *lines[] = {
		":2: postgresql.conninfo must be a string",
		":4: kafka.bootstrap_servers is required",
		":4: kafka.transactional_id needs relay.delivery",
		":7: relay.first_start 'later' is not backfill or from-now",
		":8: relay.metrics_listen 'nope'",
		":9: unknown setting 'relay.bogus'",
		":13: capture[0].topic: topic template 'cdc.${foo}.${table}': unknown placeholder '${foo}'",
		":14: capture[1].tables 'a' must be schema.table",
		":15: capture[2].snapshot needs relay.delivery",
		":19: sources[0].topic: topic template 't.${'",
		":20: sources[1].value must name a column",
		":21: sources[2] needs exactly one of table and message_prefix",
	};
	assert_reported(&l, lines, sizeof(lines) / sizeof(lines[0]));
	unload(&l);
}

/* config_defaults (what fuzz targets and tests build on) holds what a minimal file loads. */
static void test_defaults_are_those_of_a_minimal_file(void **state)
{
	(void)state;
	loaded l;
	relay_config *d = config_defaults(1, 1);

	load_ok(&l, MINIMAL "capture = ( { tables = \"a.b\"; } );\n");
	assert_string_equal(d->pg_conninfo, "");
	assert_string_equal(d->slot, l.cfg->slot);
	assert_string_equal(d->delivery, l.cfg->delivery);
	assert_true(d->exactly_once && d->dead_letter);
	assert_string_equal(d->dead_letter_topic, l.cfg->dead_letter_topic);
	assert_string_equal(d->topic_prefix, l.cfg->topic_prefix);
	assert_int_equal(d->max_in_flight_bytes, l.cfg->max_in_flight_bytes);
	assert_int_equal(d->status_interval_ms, l.cfg->status_interval_ms);
	assert_string_equal(d->sources[0].table, "");
	assert_default_source(&d->sources[0]);
	assert_string_equal(d->captures[0].topic, l.cfg->captures[0].topic);
	assert_true(d->captures[0].snapshot && d->captures[0].tombstones);
	config_set_string(&d->sources[0].table, "outbox.events");
	config_set_list(&d->sources[0].headers, &d->sources[0].n_headers, "tenant,trace");
	assert_int_equal(d->sources[0].n_headers, 2);
	assert_string_equal(d->sources[0].headers[1], "trace");
	config_free(d);
	unload(&l);
}

static void test_describe_lists_every_key(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	static const char *const keys[] = {
		"postgresql.conninfo", "postgresql.slot", "postgresql.create_slot",
		"postgresql.status_interval_ms", "relay.delivery", "relay.checkpoint_topic",
		"relay.transaction_max_records", "relay.transaction_max_ms",
		"relay.transaction_gather_ms", "relay.on_error",
		"relay.dead_letter_topic", "relay.auto_create_topics", "relay.topic_partitions",
		"relay.topic_replication_factor", "relay.log_level", "relay.shutdown_timeout_ms",
		"relay.reconnect_max_backoff_ms", "sources[].table", "sources[].message_prefix",
		"sources[].topic", "sources[].key", "sources[].value", "sources[].event_id",
		"sources[].event_type", "sources[].timestamp", "sources[].headers_column",
		"sources[].headers", "sources[].tombstones", "sources[].cloudevents",
		"sources[].ce_source", "kafka.*",
	};
	static const char *const gone[] = {"postgresql.tables", "outbox.topic"};

	assert_non_null(f);
	config_describe(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char want[64];
		snprintf(want, sizeof(want), "| `%s` |", keys[i]);
		if (!strstr(text, want))
			fail_msg("%s missing from:\n%s", keys[i], text);
	}
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (strstr(text, gone[i]))
			fail_msg("%s still described", gone[i]);
	assert_non_null(strstr(text, "(required)"));
	/* The docs hold the same table (it is generated from this output). */
	size_t doc_len;
	char *doc = unit_read_file("docs/configuration.md", &doc_len);
	for (char *line = text, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (!strstr(doc, line))
			fail_msg("docs/configuration.md lacks the line:\n%s", line);
		*nl = '\n';
	}
	free(doc);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_file_gets_defaults),
		cmocka_unit_test(test_avro_format_needs_a_registry_and_schemas),
		cmocka_unit_test(test_registry_client_certificate_is_checked_at_load),
		cmocka_unit_test(test_registry_encrypted_key_takes_its_passphrase_from_a_credential),
		cmocka_unit_test(test_registry_cert_file_never_prompts_nor_blocks),
		cmocka_unit_test(test_registry_key_passphrase_too_long_for_libcurl_is_refused),
		cmocka_unit_test(test_reload_keeps_the_registry_client_certificate),
		cmocka_unit_test(test_protect_rules_load_and_every_bad_one_is_named_at_its_line),
		cmocka_unit_test(test_default_source_matches_describe),
		cmocka_unit_test(test_every_key_set),
		cmocka_unit_test(test_sources_list),
		cmocka_unit_test(test_example_file_loads),
		cmocka_unit_test(test_kafka_group_passes_properties),
		cmocka_unit_test(test_kafka_values_kept_whole),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_unknown_key_in_source),
		cmocka_unit_test(test_unknown_group),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_sources_not_a_list),
		cmocka_unit_test(test_source_table_or_prefix),
		cmocka_unit_test(test_bad_table_name),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_missing_required_key),
		cmocka_unit_test(test_slot_name_outside_postgresqls_rule_is_refused_at_its_line),
		cmocka_unit_test(test_invalid_values),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unreadable_file),
		cmocka_unit_test(test_every_problem_reported),
		cmocka_unit_test(test_every_source_checked),
		cmocka_unit_test(test_sources_checked_like_the_router),
		cmocka_unit_test(test_capture_list),
		cmocka_unit_test(test_capture_avro_needs_only_the_registry_url),
		cmocka_unit_test(test_capture_avro_keys_need_an_avro_format),
		cmocka_unit_test(test_describe_lists_every_key),
		cmocka_unit_test(test_capture_topic_placeholders_checked_at_load),
		cmocka_unit_test(test_reload_applies_only_reloadable_keys),
		cmocka_unit_test(test_describe_marks_the_reloadable_keys),
		cmocka_unit_test(test_reload_replaces_the_standbys_to_wait_for),
		cmocka_unit_test(test_wait_for_standbys_is_checked_against_the_names_and_the_delivery),
		cmocka_unit_test(test_enum_rejection_lists_the_accepted_words),
		cmocka_unit_test(test_every_problem_of_every_kind_reported),
		cmocka_unit_test(test_defaults_are_those_of_a_minimal_file),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
