/* metrics.c: Prometheus metrics, /healthz and /readyz, served by libmicrohttpd in its own thread. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

#define TOPIC_NAME_MAX 256 /* Kafka allows 249 characters */
#define TOPIC_INDEX_SIZE 128 /* open addressing, at most half full */
#define HTTP_CONNECTION_LIMIT 32
#define HTTP_TIMEOUT_S 10
#ifndef RELAY_VERSION
#define RELAY_VERSION "0.0.0-dev"
#endif

typedef struct {
	char name[TOPIC_NAME_MAX]; /* written once, before the entry is published */
	_Atomic uint64_t records;
	_Atomic uint64_t bytes;
} topic_stat;

/* Upper bounds of delivery_latency_seconds in ms, and their le labels. */
static const int64_t latency_bounds_ms[] = {5,   10,   25,   50,   100,   250,   500,
					    1000, 2500, 5000, 10000, 30000, 60000};
static const char *const latency_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
					 "1",     "2.5",  "5",     "10",   "30",  "60"};
#define N_BOUNDS (sizeof(latency_bounds_ms) / sizeof(latency_bounds_ms[0]))

static struct {
	topic_stat topics[METRICS_TOPIC_SLOTS];
	_Atomic unsigned n_topics; /* entries [0, n_topics) are published (release/acquire) */
	_Atomic uint64_t rows_read;
	_Atomic uint64_t dead_letters;
	_Atomic uint64_t txn_committed;
	_Atomic uint64_t txn_aborted;
	_Atomic uint64_t reconnects;
	_Atomic uint64_t latency_buckets[N_BOUNDS + 1]; /* per bucket, not cumulative; last: +Inf */
	_Atomic uint64_t latency_sum_ms;
	_Atomic uint64_t wal_end;
	_Atomic uint64_t confirmed;
	_Atomic uint64_t retained_wal;
	_Atomic uint64_t commit_disorder_us;
	_Atomic uint64_t backfilled;
	_Atomic uint64_t refused_tables;
	_Atomic uint64_t standby_waits;
	_Atomic uint64_t standby_wait_us;
	_Atomic uint64_t phantoms;
	_Atomic uint64_t forks_with_phantoms;
	_Atomic uint64_t backfilling; /* 0 or 1 */
	_Atomic uint64_t standby;  /* 0 or 1 */
	_Atomic uint64_t takeovers;
	_Atomic uint64_t fenced;
	_Atomic uint64_t txn_expired;
	_Atomic uint64_t snapshot_rows;
	_Atomic uint64_t snapshot_tables;
	_Atomic int64_t start_ms; /* 0: metrics_start not called yet */
	_Atomic int64_t read_commit_ms; /* 0: no transaction read yet */
	_Atomic bool caught_up;
	_Atomic bool ready;
	_Atomic bool exactly_once;
} st;

/* Main thread only: topic name hash to index + 1 (0: empty), and each entry's hash. */
static uint8_t topic_index[TOPIC_INDEX_SIZE];
static uint32_t topic_hash[METRICS_MAX_TOPICS];

static struct MHD_Daemon *daemon_;

/*
 * One writer (the main thread), so an add is a relaxed load and store: plain moves, no locked
 * read-modify-write; the HTTP thread's relaxed loads never see a torn value.
 */
#define ADD_TO(var, n)                                                                             \
	atomic_store_explicit(&(var), atomic_load_explicit(&(var), memory_order_relaxed) + (n),     \
			      memory_order_relaxed)
#define ADD(field, n) ADD_TO(st.field, n)
#define SET(field, v) atomic_store_explicit(&st.field, (v), memory_order_relaxed)
#define GET(field) atomic_load_explicit(&st.field, memory_order_relaxed)

/* ---- the main thread's side */

unsigned metrics_topic(const char *topic)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	size_t len = 0;

	for (const unsigned char *p = (const unsigned char *)topic; *p; p++, len++)
		h = (h ^ *p) * 16777619u;
	if (len >= TOPIC_NAME_MAX)
		return METRICS_TOPIC_OTHER;
	for (unsigned i = h % TOPIC_INDEX_SIZE;; i = (i + 1) % TOPIC_INDEX_SIZE) {
		unsigned id = topic_index[i];
		if (id == 0) {
			unsigned n = atomic_load_explicit(&st.n_topics, memory_order_relaxed);
			if (n >= METRICS_MAX_TOPICS)
				return METRICS_TOPIC_OTHER; /* not registered: found again by this probe */
			memcpy(st.topics[n].name, topic, len + 1);
			topic_hash[n] = h;
			topic_index[i] = (uint8_t)(n + 1);
			atomic_store_explicit(&st.n_topics, n + 1, memory_order_release);
			return n;
		}
		if (topic_hash[id - 1] == h && strcmp(st.topics[id - 1].name, topic) == 0)
			return id - 1;
	}
}

void metrics_published(unsigned topic, uint64_t records, uint64_t bytes)
{
	if (topic > METRICS_TOPIC_OTHER)
		topic = METRICS_TOPIC_OTHER;
	ADD_TO(st.topics[topic].records, records);
	ADD_TO(st.topics[topic].bytes, bytes);
}

void metrics_dead_letters(uint64_t n) { ADD(dead_letters, n); }
void metrics_rows_read(uint64_t n) { ADD(rows_read, n); }
void metrics_txn_committed(void) { ADD(txn_committed, 1); }
void metrics_txn_aborted(void) { ADD(txn_aborted, 1); }
void metrics_reconnect(void) { ADD(reconnects, 1); }

void metrics_latency(int64_t latency_ms, uint64_t n)
{
	size_t b = 0;

	if (latency_ms < 0)
		latency_ms = 0;
	while (b < N_BOUNDS && latency_ms > latency_bounds_ms[b])
		b++;
	ADD(latency_buckets[b], n);
	ADD(latency_sum_ms, (uint64_t)latency_ms * n);
}

void metrics_set_wal_end(lsn_t lsn) { SET(wal_end, lsn); }
void metrics_set_confirmed(lsn_t lsn) { SET(confirmed, lsn); }

void metrics_set_retained_wal(uint64_t bytes) { SET(retained_wal, bytes); }
void metrics_set_commit_disorder(int64_t us) { SET(commit_disorder_us, us > 0 ? (uint64_t)us : 0); }
void metrics_backfilled(uint64_t n) { ADD(backfilled, n); }
void metrics_phantoms(uint64_t n) { ADD(phantoms, n); }
void metrics_fork_with_phantoms(void) { ADD(forks_with_phantoms, 1); }
void metrics_set_backfilling(bool backfilling) { SET(backfilling, backfilling ? 1 : 0); }
void metrics_set_delivery(bool exactly_once) { SET(exactly_once, exactly_once); }

void metrics_set_refused_tables(uint64_t n) { SET(refused_tables, n); }

void metrics_standby_wait(int64_t us)
{
	ADD(standby_waits, 1);
	ADD(standby_wait_us, us > 0 ? (uint64_t)us : 0);
}

void metrics_set_read_commit_time(int64_t ms)
{
	SET(read_commit_ms, ms);
	SET(caught_up, false);
}

void metrics_set_caught_up(void) { SET(caught_up, true); }
void metrics_set_ready(bool ready) { SET(ready, ready); }
void metrics_set_standby(bool standby) { SET(standby, standby ? 1 : 0); }
void metrics_takeover(void) { ADD(takeovers, 1); }
void metrics_fenced(void) { ADD(fenced, 1); }
void metrics_kafka_transaction_expired(void) { ADD(txn_expired, 1); }
void metrics_snapshot_rows(uint64_t n) { ADD(snapshot_rows, n); }
void metrics_set_snapshot_tables(uint64_t n) { SET(snapshot_tables, n); }
bool metrics_ready(void) { return GET(ready); }

/* ---- the exposition text (the HTTP thread's side) */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP outbox_relay_%s %s\n# TYPE outbox_relay_%s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, unsigned long long v)
{
	fprintf(f, "outbox_relay_%s %llu\n", name, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f), fputc(*s, f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void per_topic(FILE *f, const char *name, unsigned n, bool bytes)
{
	for (unsigned i = 0; i <= n; i++) {
		unsigned id = i < n ? i : METRICS_TOPIC_OTHER;
		const topic_stat *t = &st.topics[id];
		uint64_t records = atomic_load_explicit(&t->records, memory_order_relaxed);
		uint64_t v = bytes ? atomic_load_explicit(&t->bytes, memory_order_relaxed) : records;
		if (id == METRICS_TOPIC_OTHER && records == 0)
			continue;
		fprintf(f, "outbox_relay_%s{topic=\"", name);
		label_value(f, id == METRICS_TOPIC_OTHER ? METRICS_OTHER_LABEL : t->name);
		fprintf(f, "\"} %llu\n", (unsigned long long)v);
	}
}

/* The series that are one counter or gauge each, read as they are. */
static const struct {
	const char *name, *type, *help;
	_Atomic uint64_t *value;
} plain_series[] = {
	{"rows_read_total", "counter",
	 "Outbox rows and messages read from the replication stream to be published (again after a replay).",
	 &st.rows_read},
	{"dead_letters_total", "counter",
	 "Rows published to the dead-letter topic instead of their own.",
	 &st.dead_letters},
	{"kafka_transactions_committed_total", "counter",
	 "Kafka transactions committed (exactly-once; idle checkpoints included).",
	 &st.txn_committed},
	{"kafka_transactions_aborted_total", "counter",
	 "Kafka transactions aborted (exactly-once); their rows are read again.",
	 &st.txn_aborted},
	{"retained_wal_bytes", "gauge",
	 "WAL the server keeps for the slot (current WAL position minus restart_lsn), checked at most once a minute.",
	 &st.retained_wal},
	{"backfilled_rows_total", "counter",
	 "Outbox rows published from their table for a new slot (first start, lost slot).",
	 &st.backfilled},
	{"capture_refused_tables", "gauge",
	 "Tables a capture pattern takes that cannot be captured (no replica identity or key, no valid topic name): their changes are dead-lettered.",
	 &st.refused_tables},
	{"standby_waits_total", "counter",
	 "Times publishing asked postgresql.wait_for_standbys whether they flushed what it reads (once per Kafka transaction, or per transaction read while none is open).",
	 &st.standby_waits},
	{"standby_wait_microseconds_total", "counter",
	 "Time those asks took, queries and waits (the latency postgresql.wait_for_standbys adds).",
	 &st.standby_wait_us},
	{"reconnects_total", "counter",
	 "Replication sessions ended (connection lost, or a replay) and opened again.",
	 &st.reconnects},
	{"phantom_transactions_total", "counter",
	 "Transactions published whose commit the new timeline does not have (a failover forked before the checkpoint), as far as the checkpoint names them.",
	 &st.phantoms},
	{"timeline_forks_with_phantoms_total", "counter",
	 "Failovers found to have forked behind published events (the \"timeline fork\" error line), whether or not the checkpoint names their transactions.",
	 &st.forks_with_phantoms},
	{"backfilling", "gauge",
	 "1 while a backfill runs (outbox rows published from their table for a new slot): not streaming, not ready.",
	 &st.backfilling},
	{"standby", "gauge",
	 "1 while standing by: another relay holds the slot (relay.takeover = \"wait\").",
	 &st.standby},
	{"takeovers_total", "counter",
	 "Times this relay stood by, then took the slot over (relay.takeover = \"wait\").",
	 &st.takeovers},
	{"fenced_total", "counter",
	 "Times another relay took the slot over from this one (fenced in Kafka, or the active/passive lock taken) and this one stood by again (relay.takeover = \"wait\"; with \"fence\" it exits 3).",
	 &st.fenced},
	{"kafka_transactions_expired_total", "counter",
	 "Exactly-once: times the broker aborted a transaction of this relay's that stayed open longer than transaction.timeout.ms (Kafka unreachable meanwhile) and the relay started over from the committed checkpoint with a new producer.",
	 &st.txn_expired},
	{"snapshot_rows_total", "counter",
	 "Rows of captured tables published by snapshots (op r), counted when their Kafka transaction committed.",
	 &st.snapshot_rows},
	{"snapshot_tables_queued", "gauge",
	 "Tables waiting for a snapshot, the one in progress included (as last committed to Kafka).",
	 &st.snapshot_tables},
};

/* Each plain series: its HELP, TYPE and value. */
static void render_plain(FILE *f)
{
	for (size_t i = 0; i < sizeof(plain_series) / sizeof(plain_series[0]); i++) {
		family(f, plain_series[i].name, plain_series[i].type, plain_series[i].help);
		sample(f, plain_series[i].name,
		       atomic_load_explicit(plain_series[i].value, memory_order_relaxed));
	}
}

/* The build and delivery mode as labels, so that rules can tell the two modes apart. */
static void render_info(FILE *f)
{
	family(f, "info", "gauge", "Always 1; the labels say the relay's version and delivery mode.");
	fputs("outbox_relay_info{version=\"", f);
	label_value(f, RELAY_VERSION);
	fprintf(f, "\",delivery=\"%s\"} 1\n", GET(exactly_once) ? "exactly-once" : "at-least-once");
}

/* Seconds since the epoch when the process started: a change means a restart. */
static void render_start_time(FILE *f)
{
	int64_t ms = GET(start_ms);

	family(f, "start_time_seconds", "gauge",
	       "When the relay process started, in seconds since the epoch (a new value: it restarted).");
	fprintf(f, "outbox_relay_start_time_seconds %lld.%03d\n", (long long)(ms / 1000), (int)(ms % 1000));
}

char *metrics_render(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	unsigned n = atomic_load_explicit(&st.n_topics, memory_order_acquire);
	uint64_t cum = 0, wal_end = GET(wal_end), confirmed = GET(confirmed);
	int64_t commit_ms = GET(read_commit_ms), lag_ms = 0;

	if (!f)
		return NULL;
	family(f, "up", "gauge", "1 while the relay process runs.");
	sample(f, "up", 1);
	render_info(f);
	family(f, "ready", "gauge",
	       "1 while streaming from PostgreSQL with the Kafka producer up (what /readyz says).");
	sample(f, "ready", GET(ready));
	render_plain(f);
	family(f, "records_published_total", "counter",
	       "Kafka records published, per topic (dead letters included): acknowledged (at-least-once) or committed (exactly-once).");
	per_topic(f, "records_published_total", n, false);
	family(f, "bytes_published_total", "counter",
	       "Key and value bytes of the records counted by records_published_total, per topic.");
	per_topic(f, "bytes_published_total", n, true);
	family(f, "delivery_latency_seconds", "histogram",
	       "From the PostgreSQL commit to the Kafka acknowledgement (at-least-once) or commit (exactly-once), per record.");
	for (size_t b = 0; b <= N_BOUNDS; b++) {
		cum += GET(latency_buckets[b]);
		fprintf(f, "outbox_relay_delivery_latency_seconds_bucket{le=\"%s\"} %llu\n",
			b < N_BOUNDS ? latency_le[b] : "+Inf", (unsigned long long)cum);
	}
	uint64_t sum_ms = GET(latency_sum_ms);
	fprintf(f, "outbox_relay_delivery_latency_seconds_sum %llu.%03u\n",
		(unsigned long long)(sum_ms / 1000), (unsigned)(sum_ms % 1000));
	fprintf(f, "outbox_relay_delivery_latency_seconds_count %llu\n", (unsigned long long)cum);
	render_start_time(f);
	family(f, "replication_lag_bytes", "gauge",
	       "Bytes of WAL between the newest server position known and the confirmed position.");
	sample(f, "replication_lag_bytes", wal_end > confirmed ? wal_end - confirmed : 0);
	if (!GET(caught_up) && commit_ms > 0)
		lag_ms = clock_wall_ms() - commit_ms;
	family(f, "replication_lag_seconds", "gauge",
	       "Now minus the commit time of the newest transaction read; 0 while caught up with the server.");
	fprintf(f, "outbox_relay_replication_lag_seconds %lld.%03d\n",
		(long long)(lag_ms > 0 ? lag_ms / 1000 : 0), (int)(lag_ms > 0 ? lag_ms % 1000 : 0));
	family(f, "commit_time_disorder_seconds", "gauge",
	       "Most a transaction's commit time fell behind an earlier one in commit order (slot-loss recovery needs it below relay.recovery_window_ms).");
	fprintf(f, "outbox_relay_commit_time_disorder_seconds %llu.%06llu\n",
		(unsigned long long)(GET(commit_disorder_us) / 1000000),
		(unsigned long long)(GET(commit_disorder_us) % 1000000));
	family(f, "confirmed_lsn", "gauge",
	       "The WAL position confirmed to PostgreSQL (the slot's confirmed_flush_lsn), as a number.");
	sample(f, "confirmed_lsn", confirmed);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- HTTP */

static mhd_result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body,
			size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *res = MHD_create_response_from_buffer(len, body, mode);
	mhd_result ret;

	if (!res) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, res);
	MHD_destroy_response(res);
	return ret;
}

static mhd_result reply_text(struct MHD_Connection *c, unsigned status, const char *body)
{
	return reply(c, status, "text/plain; charset=utf-8", (char *)body, strlen(body),
		     MHD_RESPMEM_PERSISTENT);
}

static mhd_result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			     const char *version, const char *upload_data, size_t *upload_data_size,
			     void **con_cls)
{
	(void)cls;
	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
	*upload_data_size = 0;
	if (strcmp(url, "/metrics") == 0) {
		size_t len;
		char *body = metrics_render(&len);
		if (!body)
			return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
			     MHD_RESPMEM_MUST_FREE);
	}
	if (strcmp(url, "/healthz") == 0)
		return reply_text(c, MHD_HTTP_OK, "ok\n");
	if (strcmp(url, "/readyz") == 0)
		return GET(ready)     ? reply_text(c, MHD_HTTP_OK, "ready\n")
		       : GET(standby) ? reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "standby\n")
				      : reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
	return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
}

/* libmicrohttpd's own messages, from its thread (log lines are written whole). */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warn("metrics: %s", buf);
}

/* ---- relay.metrics_listen */

static bool port_ok(const char *p, char *port, size_t portlen)
{
	long v = 0;
	size_t len = strlen(p);

	if (len == 0 || len > 5 || len >= portlen)
		return false;
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (*c - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	memcpy(port, p, len + 1);
	return true;
}

/* A host name or IPv4 address: letters, digits, '-' and '.'. */
static bool host_ok(const char *h, size_t len)
{
	bool digits_only = true;
	char copy[256];

	if (len == 0 || len >= sizeof(copy))
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = h[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
		if (!alnum && ch != '-' && ch != '.')
			return false;
		if (!(ch >= '0' && ch <= '9') && ch != '.')
			digits_only = false;
	}
	if (!digits_only)
		return h[0] != '-' && h[0] != '.';
	struct in_addr a;
	memcpy(copy, h, len);
	copy[len] = '\0';
	return inet_pton(AF_INET, copy, &a) == 1;
}

int metrics_parse_listen(const char *text, char *host, size_t hostlen, char *port, size_t portlen,
			 const char **why)
{
	const char *colon;
	size_t hlen;

	host[0] = port[0] = '\0';
	if (text[0] == '\0')
		return 0;
	*why = "is not host:port (for example \"127.0.0.1:9187\", \":9187\" for loopback, or "
	       "\"[::1]:9187\")";
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		char v6[INET6_ADDRSTRLEN];
		struct in6_addr a;
		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(v6))
			return -1;
		hlen = (size_t)(close - text - 1);
		memcpy(v6, text + 1, hlen);
		v6[hlen] = '\0';
		if (inet_pton(AF_INET6, v6, &a) != 1 || hlen >= hostlen) {
			*why = "has a bracketed host that is not an IPv6 address";
			return -1;
		}
		memcpy(host, v6, hlen + 1);
		colon = close + 1;
	} else {
		colon = strchr(text, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -1; /* no port, or an IPv6 address without brackets */
		hlen = (size_t)(colon - text);
		if (hlen == 0) {
			snprintf(host, hostlen, "127.0.0.1");
		} else if (!host_ok(text, hlen) || hlen >= hostlen) {
			*why = "does not start with a host name or IPv4 address (host:port)";
			return -1;
		} else {
			memcpy(host, text, hlen);
			host[hlen] = '\0';
		}
	}
	if (!port_ok(colon + 1, port, portlen)) {
		*why = "does not end with a port from 1 to 65535 (host:port)";
		host[0] = '\0';
		return -1;
	}
	return 0;
}

/* A listening socket of our own, so that a bind failure says why. */
static int open_listener(const char *host, const char *port, bool *v6, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	int fd, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	*v6 = ai->ai_family == AF_INET6;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (*v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)); /* [::] means IPv6 only */
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen on %s%s%s:%s: %s", *v6 ? "[" : "", host,
			 *v6 ? "]" : "", port, strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

int metrics_start(const char *listen_on, char *err, size_t errlen)
{
	char host[256], port[8];
	const char *why = NULL;
	bool v6 = false;
	int fd;

	if (GET(start_ms) == 0)
		SET(start_ms, clock_wall_ms());
	if (metrics_parse_listen(listen_on, host, sizeof(host), port, sizeof(port), &why) < 0) {
		snprintf(err, errlen, "'%s' %s", listen_on, why);
		return -1;
	}
	if (!host[0] || daemon_)
		return 0;
	if ((fd = open_listener(host, port, &v6, err, errlen)) < 0)
		return -1;
	/* Hand-off: the daemon owns fd from here (MHD_stop_daemon closes it). */
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
					   (v6 ? MHD_USE_IPv6 : 0),
				   0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
				   NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
				   (unsigned)HTTP_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
				   (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
	if (!daemon_) {
		close(fd);
		snprintf(err, errlen, "the HTTP server did not start (libmicrohttpd; see above)");
		return -1;
	}
	log_info("metrics on http://%s%s%s:%s/metrics (also /healthz, /readyz)", v6 ? "[" : "", host,
		 v6 ? "]" : "", port);
	return 0;
}

void metrics_stop(void)
{
	if (!daemon_)
		return;
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
