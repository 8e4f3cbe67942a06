/* mock_kafka.c: a librdkafka mock cluster driven by commands on stdin, for the fault-injection tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/*
 * Usage: mock_kafka [BROKERS]   (1 by default; broker ids are 1..BROKERS)
 *
 * Prints "BOOTSTRAP=host:port,..." and then answers each command line with "OK" (queries:
 * "OK <value>") or "ERR <reason>". Errors are numbers or librdkafka names without the
 * RD_KAFKA_RESP_ERR_ prefix (NOT_COORDINATOR, _TRANSPORT). Ends cleanly at EOF or "quit".
 *
 *   topic NAME PARTITIONS [REPLICATION]      create a topic (the mock has no CreateTopics)
 *   errors APIKEY ERR [ERR...]               the next requests of APIKEY (any broker) fail
 *   broker_errors ID APIKEY ERR[@RTT_MS]...  same on one broker, with a response delay
 *   pending ID APIKEY                        "OK n": how many broker_errors are still unused
 *   clear APIKEY                             drop the cluster-wide errors of APIKEY
 *   broker_down ID / broker_up ID            ID -1: all brokers
 *   rtt ID MS                                delay every response of broker ID
 *   coordinator TYPE KEY ID                  TYPE: transaction or group
 *   apiversion APIKEY MIN MAX                the versions of APIKEY the brokers offer (-1 -1:
 *                                            none, as a broker too old for it); before clients
 *                                            connect, since they ask once per connection
 */

#define MAX_ARGS 64

static int parse_long(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

/* A protocol error by number or by name (with or without the RD_KAFKA_RESP_ERR_ prefix). */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t n;
	long v;

	if (parse_long(s, &v) == 0) {
		*out = (rd_kafka_resp_err_t)v;
		return 0;
	}
	if (strncmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
		s += 18;
	rd_kafka_get_err_descs(&descs, &n);
	for (size_t i = 0; i < n; i++) {
		if (descs[i].name && strcmp(descs[i].name, s) == 0) {
			*out = descs[i].code;
			return 0;
		}
	}
	return -1;
}

/* Runs one command; returns NULL (done, "OK" printed) or an error text. */
static const char *run(rd_kafka_mock_cluster_t *mc, int argc, char **argv)
{
	long a, b, c;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_resp_err_t errs[MAX_ARGS];
	const char *cmd = argv[0];

	if (strcmp(cmd, "topic") == 0 && (argc == 3 || argc == 4)) {
		if (parse_long(argv[2], &a) < 0 || (argc == 4 && parse_long(argv[3], &b) < 0))
			return "bad number";
		err = rd_kafka_mock_topic_create(mc, argv[1], (int)a, argc == 4 ? (int)b : 1);
	} else if (strcmp(cmd, "errors") == 0 && argc >= 3) {
		if (parse_long(argv[1], &a) < 0)
			return "bad ApiKey";
		for (int i = 2; i < argc; i++)
			if (parse_err(argv[i], &errs[i - 2]) < 0)
				return "unknown error name";
		rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)(argc - 2), errs);
	} else if (strcmp(cmd, "broker_errors") == 0 && argc >= 4) {
		if (parse_long(argv[1], &a) < 0 || parse_long(argv[2], &b) < 0)
			return "bad broker id or ApiKey";
		for (int i = 3; i < argc && !err; i++) {
			char *at = strchr(argv[i], '@');
			c = 0;
			if (at) {
				*at = '\0';
				if (parse_long(at + 1, &c) < 0)
					return "bad rtt";
			}
			if (parse_err(argv[i], &errs[0]) < 0)
				return "unknown error name";
			err = rd_kafka_mock_broker_push_request_error_rtts(mc, (int32_t)a, (int16_t)b, 1,
									    errs[0], (int)c);
		}
	} else if (strcmp(cmd, "pending") == 0 && argc == 3) {
		size_t cnt = 0;
		if (parse_long(argv[1], &a) < 0 || parse_long(argv[2], &b) < 0)
			return "bad broker id or ApiKey";
		err = rd_kafka_mock_broker_error_stack_cnt(mc, (int32_t)a, (int16_t)b, &cnt);
		if (!err) {
			printf("OK %zu\n", cnt);
			return NULL;
		}
	} else if (strcmp(cmd, "clear") == 0 && argc == 2) {
		if (parse_long(argv[1], &a) < 0)
			return "bad ApiKey";
		rd_kafka_mock_clear_request_errors(mc, (int16_t)a);
	} else if ((strcmp(cmd, "broker_down") == 0 || strcmp(cmd, "broker_up") == 0) && argc == 2) {
		if (parse_long(argv[1], &a) < 0)
			return "bad broker id";
		err = cmd[7] == 'd' ? rd_kafka_mock_broker_set_down(mc, (int32_t)a)
				    : rd_kafka_mock_broker_set_up(mc, (int32_t)a);
	} else if (strcmp(cmd, "rtt") == 0 && argc == 3) {
		if (parse_long(argv[1], &a) < 0 || parse_long(argv[2], &b) < 0)
			return "bad broker id or ms";
		err = rd_kafka_mock_broker_set_rtt(mc, (int32_t)a, (int)b);
	} else if (strcmp(cmd, "coordinator") == 0 && argc == 4) {
		if (parse_long(argv[3], &a) < 0)
			return "bad broker id";
		err = rd_kafka_mock_coordinator_set(mc, argv[1], argv[2], (int32_t)a);
	} else if (strcmp(cmd, "apiversion") == 0 && argc == 4) {
		if (parse_long(argv[1], &a) < 0 || parse_long(argv[2], &b) < 0 || parse_long(argv[3], &c) < 0)
			return "bad ApiKey or version";
		err = rd_kafka_mock_set_apiversion(mc, (int16_t)a, (int16_t)b, (int16_t)c);
	} else {
		return "unknown command or wrong number of arguments";
	}
	if (err)
		return rd_kafka_err2name(err);
	printf("OK\n");
	return NULL;
}

int main(int argc, char **argv)
{
	char errstr[512], line[4096];
	long brokers = 1;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;

	if (argc > 2 || (argc == 2 && (parse_long(argv[1], &brokers) < 0 || brokers < 1))) {
		fprintf(stderr, "usage: %s [BROKERS]\n", argv[0]);
		return 2;
	}
	/* The handle only hosts the cluster; it never connects anywhere. */
	rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "rd_kafka_new: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
	if (!mc) {
		fprintf(stderr, "cannot create the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	printf("BOOTSTRAP=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		char *args[MAX_ARGS], *save = NULL;
		int n = 0;
		for (char *t = strtok_r(line, " \t\r\n", &save); t && n < MAX_ARGS;
		     t = strtok_r(NULL, " \t\r\n", &save))
			args[n++] = t;
		if (n == 0)
			continue;
		if (strcmp(args[0], "quit") == 0)
			break;
		const char *why = run(mc, n, args);
		if (why)
			printf("ERR %s\n", why);
		fflush(stdout);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
