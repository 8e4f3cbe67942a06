/* main.c: the outbox-relay command line: run, check-config, --describe-config, --help, --version. */
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "admin.h"
#include "config.h"
#include "kafka.h"
#include "log.h"
#include "pipeline.h"
#include "relay.h"
#include "route.h"

#ifndef RELAY_VERSION
#define RELAY_VERSION "0.0.0-dev"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"outbox-relay %s: publishes PostgreSQL outbox rows to Kafka (wal2json logical replication)\n"
		"\n"
		"Usage:\n"
		"  outbox-relay --config FILE        run the relay\n"
		"  outbox-relay check-config FILE    validate FILE and exit (0: valid)\n"
		"  outbox-relay preflight FILE       check the server and the broker, one line each (0: ok)\n"
		"  outbox-relay status FILE [--json] slot, confirmed position, retained WAL, checkpoint\n"
		"  outbox-relay snapshot FILE TABLE...  ask the running relay to publish the rows of\n"
		"                                    captured tables again (op r), while it streams\n"
		"  outbox-relay --describe-config    print every configuration key with its default\n"
		"  outbox-relay --help | --version\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE    configuration file (libconfig syntax)\n"
		"  -h, --help           this text\n"
		"  -V, --version        version of the relay and of librdkafka\n"
		"\n"
		"Exit codes: 0 stopped cleanly, 1 fatal error (see the log), 2 bad usage or configuration,\n"
		"3 fenced: another relay with the same transactional.id took over (relay.takeover =\n"
		"\"fence\"; with \"wait\", active/passive, a fenced relay stands by again).\n"
		"Docs: README.md and docs/ (configuration, operations, guarantees).\n",
		RELAY_VERSION);
}

/* Loads the file, the Kafka settings and the Avro schema files the way a run would; errors go
 * to stderr as FILE:LINE (a schema file: its path and what is wrong). */
static relay_config *load_checked(const char *path)
{
	relay_config *cfg = config_load(path, stderr);
	if (!cfg)
		return NULL;
	rd_kafka_conf_t *conf = kafka_conf_build(cfg, stderr);
	char err[512];
	router *r = conf ? router_new(cfg, err, sizeof(err)) : NULL;
	if (conf && !r)
		fprintf(stderr, "%s: %s\n", path, err);
	pipeline *p = r ? pipeline_new(cfg, err, sizeof(err)) : NULL;
	if (r && !p) {
		/* The transform stage's errors name file and line themselves ("FILE:LINE: ..."). */
		if (strncmp(err, path, strlen(path)) == 0)
			fprintf(stderr, "%s\n", err);
		else
			fprintf(stderr, "%s: %s\n", path, err);
		router_free(r);
		r = NULL;
	}
	pipeline_free(p);
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (!r) {
		config_free(cfg);
		return NULL;
	}
	router_free(r);
	return cfg;
}

/* preflight FILE | status FILE [--json] */
static int admin_command(int argc, char **argv)
{
	bool json = argc == 4 && strcmp(argv[3], "--json") == 0;
	relay_config *cfg;
	int code;

	if (argc > 4 || (argc == 4 && !json)) {
		usage(stderr);
		return RELAY_EXIT_USAGE;
	}
	cfg = load_checked(argv[2]);
	if (!cfg)
		return RELAY_EXIT_USAGE;
	config_load_credentials(cfg);
	log_set_level(LOG_LVL_ERROR);
	code = strcmp(argv[1], "preflight") == 0 ? admin_preflight(cfg) : admin_status(cfg, json);
	config_free(cfg);
	return code;
}

/* snapshot FILE schema.table... */
static int snapshot_command(int argc, char **argv)
{
	relay_config *cfg = load_checked(argv[2]);
	int code;

	if (!cfg)
		return RELAY_EXIT_USAGE;
	config_load_credentials(cfg);
	log_set_level(LOG_LVL_ERROR);
	code = admin_request_snapshot(cfg, (const char *const *)argv + 3, argc - 3);
	config_free(cfg);
	return code;
}

static int run(const char *path)
{
	relay_config *cfg = load_checked(path);
	log_level_t lvl;
	int code;

	if (!cfg)
		return RELAY_EXIT_USAGE;
	config_load_credentials(cfg);
	log_format_t fmt;
	log_parse_format(cfg->log_format, &fmt);
	log_set_format(fmt);
	log_parse_level(cfg->log_level, &lvl);
	log_set_level(lvl);
	log_info("outbox-relay %s (librdkafka %s) starting with %s", RELAY_VERSION,
		 rd_kafka_version_str(), path);
	code = relay_run(cfg);
	config_free(cfg);
	return code;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"describe-config", no_argument, NULL, 'D'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	int opt;

	/* Under systemd, journald reads the priority from a "<N>" prefix. */
	log_set_journal_prefix(getenv("JOURNAL_STREAM") != NULL);
	if (argc >= 3 && (strcmp(argv[1], "preflight") == 0 || strcmp(argv[1], "status") == 0))
		return admin_command(argc, argv);
	if (argc >= 4 && strcmp(argv[1], "snapshot") == 0)
		return snapshot_command(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "check-config") == 0) {
		if (argc != 3) {
			usage(stderr);
			return RELAY_EXIT_USAGE;
		}
		relay_config *cfg = load_checked(argv[2]);
		if (!cfg)
			return RELAY_EXIT_USAGE;
		printf("%s: valid\n", argv[2]);
		config_free(cfg);
		return RELAY_EXIT_OK;
	}
	while ((opt = getopt_long(argc, argv, "c:hV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return RELAY_EXIT_OK;
		case 'V':
			printf("outbox-relay %s (librdkafka %s)\n", RELAY_VERSION, rd_kafka_version_str());
			return RELAY_EXIT_OK;
		case 'D':
			config_describe(stdout);
			return RELAY_EXIT_OK;
		default:
			usage(stderr);
			return RELAY_EXIT_USAGE;
		}
	}
	if (!config_path || optind != argc) {
		usage(stderr);
		return RELAY_EXIT_USAGE;
	}
	return run(config_path);
}
