/* test_metrics.c: relay.metrics_listen parsing, the exposition text, and the HTTP server itself. */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"

/* The value of the sample whose line starts with prefix ("name{labels} "), or -1 when absent. */
static double sample_value(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, n) == 0)
			return strtod(p + n, NULL);
	return -1;
}

static double scrape(const char *prefix)
{
	size_t len;
	char *text = metrics_render(&len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	double v = sample_value(text, prefix);
	free(text);
	return v;
}

static void test_listen_accepted(void **state)
{
	(void)state;
	static const struct {
		const char *text, *host, *port;
	} ok[] = {
		{"", "", ""},
		{"127.0.0.1:9187", "127.0.0.1", "9187"},
		{":9187", "127.0.0.1", "9187"},
		{"0.0.0.0:1", "0.0.0.0", "1"},
		{"[::1]:65535", "::1", "65535"},
		{"localhost:80", "localhost", "80"},
		{"metrics-1.example.com:9187", "metrics-1.example.com", "9187"},
	};
	char host[256], port[8];
	const char *why;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		why = NULL;
		if (metrics_parse_listen(ok[i].text, host, sizeof(host), port, sizeof(port), &why) != 0)
			fail_msg("'%s' refused: %s", ok[i].text, why);
		assert_string_equal(host, ok[i].host);
		assert_string_equal(port, ok[i].port);
	}
}

static void test_listen_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"9187",         "127.0.0.1",         "127.0.0.1:",      "127.0.0.1:0",
		"127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:+80",  "127.0.0.1:80 ",
		"::1:9187",     "[::1]9187",         "[::1]",           "[127.0.0.1]:80",
		"[nope]:80",    "http://x:80",       "x:80/metrics",    "300.1.1.1:80",
		"a b:80",       "-x:80",             ".x:80",           " :80",
		"host:port",    ":",                 "1.2.3:80",        "x:8080:1",
	};
	char host[256], port[8];
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (metrics_parse_listen(bad[i], host, sizeof(host), port, sizeof(port), &why) == 0)
			fail_msg("'%s' accepted as host '%s' port '%s'", bad[i], host, port);
		assert_non_null(why);
	}
}


static void test_topics_and_the_other_bucket(void **state)
{
	(void)state;
	char name[32], prefix[128];
	unsigned first = metrics_topic("orders");

	assert_int_equal(metrics_topic("orders"), first);
	metrics_published(first, 3, 300);
	metrics_published(metrics_topic("orders"), 1, 12);
	assert_true(scrape("outbox_relay_records_published_total{topic=\"orders\"} ") == 4);
	assert_true(scrape("outbox_relay_bytes_published_total{topic=\"orders\"} ") == 312);
	/* Without a topic beyond the table, no "(other)" series. */
	assert_true(scrape("outbox_relay_records_published_total{topic=\"" METRICS_OTHER_LABEL "\"} ") == -1);

	for (unsigned i = 0; i < METRICS_MAX_TOPICS + 10; i++) {
		snprintf(name, sizeof(name), "topic.%u", i);
		unsigned id = metrics_topic(name);
		assert_true(id <= METRICS_TOPIC_OTHER);
		assert_int_equal(metrics_topic(name), id); /* the same each time */
		metrics_published(id, 1, 10);
	}
	/* 64 series, "orders" among them; the 11 topics beyond share "(other)". */
	assert_int_equal(metrics_topic("topic.62"), 63);
	assert_int_equal(metrics_topic("topic.63"), METRICS_TOPIC_OTHER);
	assert_int_equal(metrics_topic("orders"), first);
	assert_true(scrape("outbox_relay_records_published_total{topic=\"topic.62\"} ") == 1);
	assert_true(scrape("outbox_relay_records_published_total{topic=\"topic.63\"} ") == -1);
	assert_true(scrape("outbox_relay_records_published_total{topic=\"" METRICS_OTHER_LABEL "\"} ") == 11);
	assert_true(scrape("outbox_relay_bytes_published_total{topic=\"" METRICS_OTHER_LABEL "\"} ") == 110);
	snprintf(prefix, sizeof(prefix), "outbox_relay_records_published_total{topic=\"topic.%u\"} ", 0);
	assert_true(scrape(prefix) == 1);
}

static void test_counters_gauges_and_histogram(void **state)
{
	(void)state;
	metrics_rows_read(5);
	metrics_dead_letters(2);
	metrics_txn_committed();
	metrics_txn_committed();
	metrics_txn_aborted();
	metrics_reconnect();
	assert_true(scrape("outbox_relay_rows_read_total ") == 5);
	assert_true(scrape("outbox_relay_dead_letters_total ") == 2);
	assert_true(scrape("outbox_relay_kafka_transactions_committed_total ") == 2);
	assert_true(scrape("outbox_relay_kafka_transactions_aborted_total ") == 1);
	assert_true(scrape("outbox_relay_reconnects_total ") == 1);
	assert_true(scrape("outbox_relay_up ") == 1);
	assert_true(scrape("outbox_relay_standby ") == 0);
	metrics_set_standby(true);
	assert_true(scrape("outbox_relay_standby ") == 1);
	metrics_set_standby(false);
	assert_true(scrape("outbox_relay_standby ") == 0);
	metrics_takeover();
	assert_true(scrape("outbox_relay_takeovers_total ") == 1);
	metrics_fenced();
	assert_true(scrape("outbox_relay_fenced_total ") == 1);
	metrics_kafka_transaction_expired();
	assert_true(scrape("outbox_relay_kafka_transactions_expired_total ") == 1);
	metrics_snapshot_rows(4096);
	metrics_snapshot_rows(10);
	assert_true(scrape("outbox_relay_snapshot_rows_total ") == 4106);
	metrics_set_snapshot_tables(3);
	assert_true(scrape("outbox_relay_snapshot_tables_queued ") == 3);
	metrics_set_snapshot_tables(0);
	assert_true(scrape("outbox_relay_snapshot_tables_queued ") == 0);

	metrics_latency(-20, 1);  /* clock skew: counted as 0 */
	metrics_latency(5, 2);    /* on a bound: in that bucket (le is <=) */
	metrics_latency(7, 1);
	metrics_latency(2000, 3);
	metrics_latency(600000, 1); /* beyond 60 s: only +Inf */
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"0.005\"} ") == 3);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"0.01\"} ") == 4);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"1\"} ") == 4);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"2.5\"} ") == 7);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"60\"} ") == 7);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_bucket{le=\"+Inf\"} ") == 8);
	assert_true(scrape("outbox_relay_delivery_latency_seconds_count ") == 8);
	double sum = scrape("outbox_relay_delivery_latency_seconds_sum ");
	assert_true(sum > 606.0169 && sum < 606.0171); /* 10 + 7 + 6000 + 600000 ms */

	metrics_set_wal_end(0x3000);
	metrics_set_confirmed(0x1000);
	assert_true(scrape("outbox_relay_replication_lag_bytes ") == 0x2000);
	assert_true(scrape("outbox_relay_confirmed_lsn ") == 0x1000);
	metrics_set_confirmed(0x4000); /* confirmed past what the server said: no negative lag */
	assert_true(scrape("outbox_relay_replication_lag_bytes ") == 0);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	metrics_set_read_commit_time((int64_t)ts.tv_sec * 1000 - 90000);
	double lag = scrape("outbox_relay_replication_lag_seconds ");
	assert_true(lag >= 90 && lag < 100);
	metrics_set_caught_up();
	assert_true(scrape("outbox_relay_replication_lag_seconds ") == 0);
}

static void test_exposition_format(void **state)
{
	(void)state;
	size_t len;
	char *text = metrics_render(&len);
	const char *families[] = {"up", "ready", "rows_read_total", "records_published_total",
				  "bytes_published_total", "dead_letters_total",
				  "kafka_transactions_committed_total",
				  "kafka_transactions_aborted_total", "delivery_latency_seconds",
				  "replication_lag_bytes", "replication_lag_seconds", "confirmed_lsn",
				  "reconnects_total", "standby", "takeovers_total", "fenced_total",
				  "kafka_transactions_expired_total",
				  "snapshot_rows_total", "snapshot_tables_queued",
				  "start_time_seconds"};
	char want[160];

	assert_non_null(text);
	assert_true(len > 0 && text[len - 1] == '\n');
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		snprintf(want, sizeof(want), "# TYPE outbox_relay_%s ", families[i]);
		if (!strstr(text, want))
			fail_msg("no %s in:\n%s", want, text);
		snprintf(want, sizeof(want), "# HELP outbox_relay_%s ", families[i]);
		assert_non_null(strstr(text, want));
	}
	/* Each line: a comment, or name[{labels}] value. */
	for (char *line = text; *line; line = strchr(line, '\n') + 1) {
		if (line[0] == '#')
			continue;
		assert_memory_equal(line, "outbox_relay_", 13);
		char *sp = strchr(line, ' ');
		assert_non_null(sp);
		char *end;
		strtod(sp + 1, &end);
		assert_true(*end == '\n');
	}
	free(text);
}

/* One HTTP/1.0 request to 127.0.0.1:port; returns the status, the response in buf. */
static int http(int port, const char *method, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
	size_t n = 0;
	ssize_t got;
	char req[256];

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (n + 1 < cap && (got = read(fd, buf + n, cap - n - 1)) > 0)
		n += (size_t)got;
	buf[n] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	return status;
}

/* A port that was free a moment ago. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Open file descriptors of this process. */
static int count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

/* The start time is set once per process, by the first metrics_start (even with metrics off). */
static void test_start_time_is_the_first_start(void **state)
{
	(void)state;
	char err[256];
	struct timespec ts;

	assert_true(scrape("outbox_relay_start_time_seconds ") == 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	assert_int_equal(metrics_start("", err, sizeof(err)), 0);
	double first = scrape("outbox_relay_start_time_seconds ");
	assert_true(first >= (double)ts.tv_sec && first < (double)ts.tv_sec + 5);
	/* Until the wall clock has passed the recorded start (ms): a second start would differ. */
	while (clock_gettime(CLOCK_REALTIME, &ts) == 0 &&
	       (double)ts.tv_sec + ts.tv_nsec / 1e9 < first + 0.002)
		;
	assert_int_equal(metrics_start("", err, sizeof(err)), 0);
	assert_true(scrape("outbox_relay_start_time_seconds ") == first);
}

static void test_http_server(void **state)
{
	(void)state;
	static char buf[65536];
	char listen_on[64], err[512];
	int port = free_port();

	snprintf(listen_on, sizeof(listen_on), ":%d", port);
	if (metrics_start(listen_on, err, sizeof(err)) != 0)
		fail_msg("metrics_start: %s", err);
	assert_int_equal(http(port, "GET", "/healthz", buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, "\r\n\r\nok\n"));
	metrics_set_ready(false);
	assert_int_equal(http(port, "GET", "/readyz", buf, sizeof(buf)), 503);
	assert_non_null(strstr(buf, "\r\n\r\nnot ready\n"));
	/* A relay standing by (relay.takeover = "wait") is not ready, and says why. */
	metrics_set_standby(true);
	assert_int_equal(http(port, "GET", "/readyz", buf, sizeof(buf)), 503);
	assert_non_null(strstr(buf, "\r\n\r\nstandby\n"));
	metrics_set_standby(false);
	metrics_set_ready(true);
	assert_int_equal(http(port, "GET", "/readyz", buf, sizeof(buf)), 200);
	assert_int_equal(http(port, "GET", "/metrics", buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(buf, "\noutbox_relay_up 1\n"));
	assert_non_null(strstr(buf, "\noutbox_relay_ready 1\n"));
	assert_int_equal(http(port, "HEAD", "/metrics", buf, sizeof(buf)), 200);
	assert_null(strstr(buf, "outbox_relay_up"));
	assert_int_equal(http(port, "GET", "/nothing", buf, sizeof(buf)), 404);
	assert_int_equal(http(port, "POST", "/metrics", buf, sizeof(buf)), 405);
	metrics_set_ready(false);

	/* The port is taken while it runs: a second server says why it cannot listen. */
	metrics_stop();
	snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%d", port);
	assert_int_equal(metrics_start(listen_on, err, sizeof(err)), 0);
	int fds_running = count_fds();
	metrics_stop();
	assert_true(count_fds() < fds_running); /* the listening socket was closed */
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* past TIME_WAIT, not a listener */
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(metrics_start(listen_on, err, sizeof(err)), -1);
	if (!strstr(err, "Address already in use"))
		fail_msg("unexpected error: %s", err);
	close(fd);
	metrics_stop(); /* not started: nothing to do */
	assert_int_equal(metrics_start("", err, sizeof(err)), 0); /* off */
	metrics_stop();
}

/* A fork with phantoms is counted even when the checkpoint names none of their transactions. */
static void test_forks_with_phantoms_counted_apart_from_named_ones(void **state)
{
	(void)state;
	double forks = scrape("outbox_relay_timeline_forks_with_phantoms_total ");
	double named = scrape("outbox_relay_phantom_transactions_total ");

	assert_true(forks >= 0 && named >= 0);
	metrics_phantoms(0); /* unnamed: a checkpoint after a backfill, or messages only */
	metrics_fork_with_phantoms();
	assert_true(scrape("outbox_relay_timeline_forks_with_phantoms_total ") == forks + 1);
	assert_true(scrape("outbox_relay_phantom_transactions_total ") == named);
	metrics_phantoms(3);
	metrics_fork_with_phantoms();
	assert_true(scrape("outbox_relay_timeline_forks_with_phantoms_total ") == forks + 2);
	assert_true(scrape("outbox_relay_phantom_transactions_total ") == named + 3);
}

/* outbox_relay_info names the delivery mode, so rules can pick exactly-once relays. */
static void test_info_says_the_delivery_mode(void **state)
{
	(void)state;
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "outbox_relay_info{version=\"%s\",delivery=\"at-least-once\"} ",
		 RELAY_VERSION);
	assert_true(scrape(prefix) == 1);
	metrics_set_delivery(true);
	snprintf(prefix, sizeof(prefix), "outbox_relay_info{version=\"%s\",delivery=\"exactly-once\"} ",
		 RELAY_VERSION);
	assert_true(scrape(prefix) == 1);
	assert_true(scrape("outbox_relay_info{version=\"\",delivery=\"at-least-once\"} ") == -1);
	metrics_set_delivery(false);
}

/* The backfilling gauge follows metrics_set_backfilling. */
static void test_backfilling_gauge(void **state)
{
	(void)state;
	assert_true(scrape("outbox_relay_backfilling ") == 0);
	metrics_set_backfilling(true);
	assert_true(scrape("outbox_relay_backfilling ") == 1);
	metrics_set_backfilling(false);
	assert_true(scrape("outbox_relay_backfilling ") == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_accepted),
		cmocka_unit_test(test_listen_refused),
		cmocka_unit_test(test_start_time_is_the_first_start),
		cmocka_unit_test(test_topics_and_the_other_bucket),
		cmocka_unit_test(test_counters_gauges_and_histogram),
		cmocka_unit_test(test_exposition_format),
		cmocka_unit_test(test_forks_with_phantoms_counted_apart_from_named_ones),
		cmocka_unit_test(test_info_says_the_delivery_mode),
		cmocka_unit_test(test_backfilling_gauge),
		cmocka_unit_test(test_http_server),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
