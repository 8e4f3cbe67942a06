/* kafka.c: librdkafka producer setup, produce, and delivery reports served on the main loop. */
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kafka_admin.h"
#include "log.h"
#include "txctx.h"
#include "xalloc.h"

struct kafka_producer {
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;
	int pipe_fds[2]; /* librdkafka writes to [1] when the main queue gets events */
	kafka_delivery_fn on_delivery;
	void *opaque;
	kafka_topic *topics; /* known to exist */
	size_t n_topics;
	size_t last; /* the topic kafka_topic_ready found last (the next record's, usually) */
	size_t max_msg_size; /* message.max.bytes: the largest record librdkafka takes */
	bool compressed;     /* compression.type is set: the broker sees smaller batches */
	bool describe_unanswered; /* a topic's DescribeConfigs went unanswered: do not wait again */
};

/* A topic known to exist: its handle (producing with one skips librdkafka's lookup). */
struct kafka_topic {
	char *name;
	rd_kafka_topic_t *rkt;
	int partitions;    /* as the broker last said (0: not asked yet) */
	int64_t counted_ms; /* when */
	size_t max_bytes;  /* the topic's max.message.bytes, checked before producing (0: unknown) */
	rd_kafka_queue_t *describing; /* where its max.message.bytes will arrive (NULL: done) */
};

/* A record batch's header (magic 2): a record alone in a batch takes this much more. */
#define BATCH_OVERHEAD 61

/* How long a partition count is trusted (partitions can be added to a topic, never removed). */
#define PARTITIONS_TTL_MS 60000

/* How long a topic check or creation may wait for the broker. */
#define KAFKA_ADMIN_TIMEOUT_MS 10000

/*
 * How long a new topic waits for its max.message.bytes. A broker that answers does so in
 * milliseconds; one that does not (librdkafka's mock cluster, a broker going down) costs this
 * once per producer, and the answer is still taken when it comes.
 */
#define DESCRIBE_WAIT_MS 2000

/* Settings the relay's guarantees rest on; the file may repeat them but not change them. */
static const struct {
	const char *name;
	const char *value;
	const char *also_ok;
} fixed_props[] = {
	{"enable.idempotence", "true", NULL},
	{"acks", "all", "-1"},
};

/* Defaults the file may override. */
static const struct {
	const char *name;
	const char *value;
} default_props[] = {
	{"client.id", "outbox-relay"},
	/* the Java client's partitioner: the same key lands on the same partition */
	{"partitioner", "murmur2_random"},
	/* a missing topic is created by the relay (relay.auto_create_topics) or reported */
	{"allow.auto.create.topics", "false"},
	/* relay.max_in_flight_bytes bounds the queue; this count should not come first */
	{"queue.buffering.max.messages", "1000000"},
};

static int fixed_conflict(const kafka_property *p, const char *path, FILE *err)
{
	for (size_t i = 0; i < sizeof(fixed_props) / sizeof(fixed_props[0]); i++) {
		if (strcmp(p->name, fixed_props[i].name) != 0)
			continue;
		if (strcmp(p->value, fixed_props[i].value) == 0 ||
		    (fixed_props[i].also_ok && strcmp(p->value, fixed_props[i].also_ok) == 0))
			return 0;
		fprintf(err, "%s:%d: kafka %s must be %s: the relay's delivery guarantee needs it\n",
			path, p->line, p->name, fixed_props[i].value);
		return -1;
	}
	return 0;
}

rd_kafka_conf_t *kafka_conf_build(const relay_config *cfg, FILE *err)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];
	int bad = 0;

	for (size_t i = 0; i < sizeof(default_props) / sizeof(default_props[0]); i++)
		rd_kafka_conf_set(conf, default_props[i].name, default_props[i].value, errstr,
				  sizeof(errstr));
	for (size_t i = 0; i < sizeof(fixed_props) / sizeof(fixed_props[0]); i++)
		rd_kafka_conf_set(conf, fixed_props[i].name, fixed_props[i].value, errstr,
				  sizeof(errstr));
	for (int i = 0; i < cfg->n_kafka; i++) {
		const kafka_property *p = &cfg->kafka[i];
		if (fixed_conflict(p, cfg->path, err) < 0) {
			bad = -1;
			continue;
		}
		if (rd_kafka_conf_set(conf, p->name, p->value, errstr, sizeof(errstr)) !=
		    RD_KAFKA_CONF_OK) {
			fprintf(err, "%s:%d: kafka %s: %s\n", cfg->path, p->line, p->name, errstr);
			bad = -1;
		}
	}
	if (bad) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/* Facilities whose error lines the relay says again itself (see kafka_log_level). */
static const char *const restated_facilities[] = {"TXNERR", "ADDPARTS", "FATAL"};

log_level_t kafka_log_level(int syslog_level, const char *fac)
{
	for (size_t i = 0; i < sizeof(restated_facilities) / sizeof(restated_facilities[0]); i++)
		if (syslog_level <= 4 && strcmp(fac, restated_facilities[i]) == 0)
			return LOG_LVL_DEBUG;
	return syslog_level <= 3 ? LOG_LVL_ERROR : syslog_level == 4 ? LOG_LVL_WARN
	       : syslog_level <= 6 ? LOG_LVL_INFO : LOG_LVL_DEBUG;
}

/* librdkafka's log lines in the relay's format; called from librdkafka's threads. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	log_msg(kafka_log_level(level, fac), "kafka: %s: %s", fac, buf);
}

/*
 * Errors librdkafka reports besides deliveries: mostly transient (it retries by itself), and
 * then the only report of the problem, so they stay visible. A fatal error is the exception:
 * the relay reads it (kafka_fatal, the transaction calls) and logs it in its own words, so
 * librdkafka's text of it goes to debug.
 */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		log_debug("kafka: fatal error: %s", reason);
	else if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION)
		log_error("kafka: authentication failed: %s: check kafka.security_protocol, "
			  "kafka.sasl_mechanisms, kafka.sasl_username and the password (the "
			  "kafka-sasl-password credential); retrying", reason);
	else
		log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	kafka_producer *kp = opaque;
	(void)rk;
	kp->on_delivery(kp->opaque, m->_private, m->err);
}

/* The producer's message.max.bytes as librdkafka took it (the file may set it). */
static size_t max_message_bytes(rd_kafka_t *rk)
{
	char buf[32];
	size_t n = sizeof(buf);

	if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", buf, &n) != RD_KAFKA_CONF_OK)
		return 1000000; /* librdkafka's default */
	return (size_t)strtoull(buf, NULL, 10);
}

/* True when the producer compresses batches (compression.type other than none). */
static bool compression_on(rd_kafka_t *rk)
{
	char buf[32];
	size_t n = sizeof(buf);

	if (rd_kafka_conf_get(rd_kafka_conf(rk), "compression.type", buf, &n) != RD_KAFKA_CONF_OK)
		return false;
	return strcmp(buf, "none") != 0;
}

kafka_producer *kafka_producer_new(const relay_config *cfg, const char *transactional_id,
				   kafka_delivery_fn on_delivery_fn, void *opaque, char *errbuf,
				   size_t errlen)
{
	kafka_producer *kp = xcalloc(1, sizeof(*kp));
	rd_kafka_conf_t *conf = kafka_conf_build(cfg, stderr);
	char errstr[512];

	kp->pipe_fds[0] = kp->pipe_fds[1] = -1;
	kp->on_delivery = on_delivery_fn;
	kp->opaque = opaque;
	if (!conf) {
		snprintf(errbuf, errlen, "invalid kafka settings in %s", cfg->path);
		goto fail;
	}
	if (transactional_id &&
	    rd_kafka_conf_set(conf, "transactional.id", transactional_id, errstr, sizeof(errstr)) !=
		    RD_KAFKA_CONF_OK) {
		snprintf(errbuf, errlen, "transactional.id: %s", errstr);
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, kp);
	/* Hand-off: on success rd_kafka_new owns conf; on failure we still do. */
	kp->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
	if (!kp->rk) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	if (pipe2(kp->pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(errbuf, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	kp->mainq = rd_kafka_queue_get_main(kp->rk);
	rd_kafka_queue_io_event_enable(kp->mainq, kp->pipe_fds[1], "1", 1);
	kp->max_msg_size = max_message_bytes(kp->rk);
	kp->compressed = compression_on(kp->rk);
	return kp;
fail:
	kafka_producer_free(kp);
	return NULL;
}

void kafka_producer_free(kafka_producer *kp)
{
	if (!kp)
		return;
	if (kp->mainq) {
		rd_kafka_queue_io_event_enable(kp->mainq, -1, NULL, 0);
		rd_kafka_queue_destroy(kp->mainq);
	}
	for (size_t i = 0; i < kp->n_topics; i++) {
		if (kp->topics[i].rkt)
			rd_kafka_topic_destroy(kp->topics[i].rkt);
		if (kp->topics[i].describing)
			rd_kafka_queue_destroy(kp->topics[i].describing);
	}
	if (kp->rk) {
		/* Whatever is still queued is dropped: the slot was not confirmed for it. */
		rd_kafka_purge(kp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(kp->rk, 0);
		rd_kafka_destroy(kp->rk);
	}
	for (int i = 0; i < 2; i++)
		if (kp->pipe_fds[i] >= 0)
			close(kp->pipe_fds[i]);
	for (size_t i = 0; i < kp->n_topics; i++)
		free(kp->topics[i].name);
	free(kp->topics);
	free(kp);
}

/* A known topic (the one kafka_topic_ready found last, usually); NULL: unknown. */
static kafka_topic *topic_find(kafka_producer *kp, const char *topic)
{
	if (kp->last < kp->n_topics && strcmp(kp->topics[kp->last].name, topic) == 0)
		return &kp->topics[kp->last];
	for (size_t i = 0; i < kp->n_topics; i++) {
		if (strcmp(kp->topics[i].name, topic) == 0) {
			kp->last = i;
			return &kp->topics[i];
		}
	}
	return NULL;
}

/*
 * Takes the topic's max.message.bytes once the broker has answered (waiting up to wait_ms).
 * Until then, or when it refuses to say (no DescribeConfigs ACL), the limit is unknown and the
 * broker's refusal is the only check, as before.
 */
static void topic_limit_poll(kafka_topic *t, int wait_ms)
{
	char err[256];
	size_t bytes;
	int rc;

	if (!t->describing)
		return;
	rc = kafka_admin_max_message_bytes(t->describing, t->name, wait_ms, &bytes, err, sizeof(err));
	if (rc == 0)
		return;
	if (rc < 0)
		log_debug("%s: the broker's size limit for its records stays unknown", err);
	t->max_bytes = bytes;
	rd_kafka_queue_destroy(t->describing);
	t->describing = NULL;
}

/* Bytes of a zigzag varint (how Kafka record headers write their lengths). */
static size_t varint_size(int64_t v)
{
	uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 1;

	while (u >= 0x80)
		u >>= 7, n++;
	return n;
}

/*
 * Headers' worst-case size on the wire, as librdkafka's own check in rd_kafka_produceva
 * (rdkafka_msg.c, 2.0.2) counts it against message.max.bytes: 36 bytes of varints and
 * attributes, key, value, serialized headers.
 */
static size_t headers_size(const route_header *h, size_t n_headers)
{
	size_t n = 0;

	for (size_t i = 0; i < n_headers; i++)
		n += varint_size((int64_t)h[i].name_len) + h[i].name_len +
		     varint_size((int64_t)h[i].value_len) + h[i].value_len;
	return n;
}

/* The same for a whole record (the extra headers: the transaction context). */
static size_t record_size(const route_msg *m, const route_header *extra, size_t n_extra)
{
	return 36 + m->key_len + m->value_len + headers_size(m->headers, m->n_headers) +
	       headers_size(extra, n_extra);
}

/* Adds headers to a librdkafka header list (it copies them). */
static void add_headers(rd_kafka_headers_t *hdrs, const route_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rd_kafka_header_add(hdrs, h[i].name, (ssize_t)h[i].name_len, h[i].value,
				    (ssize_t)h[i].value_len);
}

/*
 * The topic's own limit, as the broker applies it to a batch: a record that cannot fit even
 * alone is refused here, so it is dead-lettered like one librdkafka refuses (with compression
 * the broker sees less: left to it).
 */
static bool fits_topic(const kafka_producer *kp, kafka_topic *t, size_t n)
{
	if (t)
		topic_limit_poll(t, 0);
	return !t || !t->max_bytes || kp->compressed || n + BATCH_OVERHEAD <= t->max_bytes;
}

rd_kafka_resp_err_t kafka_produce(kafka_producer *kp, const route_msg *m, int32_t partition,
				  const route_header *extra, size_t n_extra, void *msg_opaque)
{
	kafka_topic *t = topic_find(kp, m->topic);
	if (!fits_topic(kp, t, record_size(m, extra, n_extra)))
		return RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; /* as librdkafka says for its own limit */
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->n_headers + n_extra);
	rd_kafka_topic_t *rkt = t ? t->rkt : NULL;
	rd_kafka_vu_t vu[8];
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err;

	add_headers(hdrs, m->headers, m->n_headers);
	add_headers(hdrs, extra, n_extra);
	if (rkt) {
		vu[0].vtype = RD_KAFKA_VTYPE_RKT;
		vu[0].u.rkt = rkt;
	} else {
		vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
		vu[0].u.cstr = m->topic;
	}
	vu[1].vtype = RD_KAFKA_VTYPE_KEY;
	vu[1].u.mem.ptr = (void *)m->key;
	vu[1].u.mem.size = m->key_len;
	vu[2].vtype = RD_KAFKA_VTYPE_VALUE;
	vu[2].u.mem.ptr = (void *)m->value;
	vu[2].u.mem.size = m->value_len;
	vu[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
	vu[3].u.i = RD_KAFKA_MSG_F_COPY;
	vu[4].vtype = RD_KAFKA_VTYPE_HEADERS;
	vu[4].u.headers = hdrs;
	vu[5].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
	vu[5].u.i64 = m->timestamp_ms;
	vu[6].vtype = RD_KAFKA_VTYPE_OPAQUE;
	vu[6].u.ptr = msg_opaque;
	vu[7].vtype = RD_KAFKA_VTYPE_PARTITION;
	vu[7].u.i32 = partition;
	/* Hand-off: key, value and topic are copied; hdrs is owned by librdkafka on success. */
	error = rd_kafka_produceva(kp->rk, vu, sizeof(vu) / sizeof(vu[0]));
	err = error ? rd_kafka_error_code(error) : RD_KAFKA_RESP_ERR_NO_ERROR;
	if (error) {
		rd_kafka_error_destroy(error);
		rd_kafka_headers_destroy(hdrs);
	}
	return err;
}

bool kafka_record_fits(kafka_producer *kp, const route_msg *m, size_t extra)
{
	size_t n = record_size(m, NULL, 0) + extra;
	return n <= kp->max_msg_size && fits_topic(kp, topic_find(kp, m->topic), n);
}

int kafka_event_fd(const kafka_producer *kp) { return kp->pipe_fds[0]; }

void kafka_serve(kafka_producer *kp)
{
	char buf[256];

	/* Empty the wake-up pipe first, so an event queued while serving wakes us again. */
	while (read(kp->pipe_fds[0], buf, sizeof(buf)) > 0)
		;
	while (rd_kafka_poll(kp->rk, 0) > 0)
		;
}

void kafka_purge(kafka_producer *kp)
{
	rd_kafka_purge(kp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
				       RD_KAFKA_PURGE_F_NON_BLOCKING);
}

int kafka_outq_len(kafka_producer *kp) { return rd_kafka_outq_len(kp->rk); }

bool kafka_fenced(kafka_producer *kp)
{
	char buf[256];
	rd_kafka_resp_err_t e = rd_kafka_fatal_error(kp->rk, buf, sizeof(buf));
	return e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	       e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

int kafka_txn_timeout_ms(kafka_producer *kp)
{
	char buf[32];
	size_t n = sizeof(buf);

	if (rd_kafka_conf_get(rd_kafka_conf(kp->rk), "transaction.timeout.ms", buf, &n) !=
	    RD_KAFKA_CONF_OK)
		return 60000; /* librdkafka's default */
	return atoi(buf);
}

bool kafka_fatal(kafka_producer *kp, char *buf, size_t len)
{
	return rd_kafka_fatal_error(kp->rk, buf, len) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/*
 * True for a broker's authorization refusal, which no retry fixes; err (holding the error
 * text) gets what to change appended.
 */
static bool kafka_not_authorized(rd_kafka_resp_err_t code, char *err, size_t errlen)
{
	const char *what;

	switch (code) {
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		what = "WRITE and DESCRIBE on the topic";
		break;
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
		what = "WRITE and DESCRIBE on the transactional id (exactly-once)";
		break;
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
		what = "IDEMPOTENT_WRITE on the cluster";
		break;
	default:
		return false;
	}
	size_t n = strlen(err);
	snprintf(err + n, errlen - n, " (Kafka authorization: the relay's principal needs an ACL "
		 "allowing %s)", what);
	return true;
}

/* Classifies a transactional API error; err gets its text. Takes ownership of e. */
static kafka_txn_result txn_result(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
	kafka_txn_result r;

	if (!e)
		return KAFKA_TXN_OK;
	snprintf(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
	if (kafka_not_authorized(rd_kafka_error_code(e), err, errlen))
		r = KAFKA_TXN_FATAL; /* retrying cannot help: an ACL is missing */
	else if (rd_kafka_error_is_fatal(e))
		r = KAFKA_TXN_FATAL;
	else if (rd_kafka_error_txn_requires_abort(e))
		r = KAFKA_TXN_ABORT;
	else if (rd_kafka_error_is_retriable(e) || rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__TIMED_OUT)
		r = KAFKA_TXN_RETRY;
	else
		r = KAFKA_TXN_FATAL;
	rd_kafka_error_destroy(e);
	return r;
}

kafka_txn_result kafka_txn_init(kafka_producer *kp, int timeout_ms, char *err, size_t errlen)
{
	return txn_result(rd_kafka_init_transactions(kp->rk, timeout_ms), "init_transactions", err,
			  errlen);
}

kafka_txn_result kafka_txn_begin(kafka_producer *kp, char *err, size_t errlen)
{
	return txn_result(rd_kafka_begin_transaction(kp->rk), "begin_transaction", err, errlen);
}

kafka_txn_result kafka_txn_commit(kafka_producer *kp, int timeout_ms, char *err, size_t errlen)
{
	return txn_result(rd_kafka_commit_transaction(kp->rk, timeout_ms), "commit_transaction", err,
			  errlen);
}

kafka_txn_result kafka_txn_abort(kafka_producer *kp, int timeout_ms, char *err, size_t errlen)
{
	return txn_result(rd_kafka_abort_transaction(kp->rk, timeout_ms), "abort_transaction", err,
			  errlen);
}

rd_kafka_resp_err_t kafka_produce_plain(kafka_producer *kp, const char *topic, const char *key,
					const char *value, void *msg_opaque)
{
	/* Hand-off: topic, key and value are copied by librdkafka. */
	return rd_kafka_producev(kp->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
				 RD_KAFKA_V_VALUE((void *)value, strlen(value)),
				 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg_opaque),
				 RD_KAFKA_V_END);
}

int kafka_partition_count(kafka_producer *kp, const char *topic, char *err, size_t errlen)
{
	kafka_topic *t = topic_find(kp, topic);
	int64_t now = clock_mono_ms();

	if (t && t->partitions > 0 && now - t->counted_ms < PARTITIONS_TTL_MS)
		return t->partitions;
	int n = kafka_admin_partitions(kp->rk, topic, KAFKA_ADMIN_TIMEOUT_MS, err, errlen);
	if (n == 0)
		snprintf(err, errlen, "topic %s has no partitions", topic);
	if (n <= 0)
		return -1;
	if (t) {
		t->partitions = n;
		t->counted_ms = now;
	}
	return n;
}

int kafka_topic_ready(kafka_producer *kp, const char *topic, bool create, int partitions,
		      int replication_factor, char *err, size_t errlen)
{
	if (topic_find(kp, topic))
		return 0;
	int n = kafka_admin_partitions(kp->rk, topic, KAFKA_ADMIN_TIMEOUT_MS, err, errlen);
	if (n < 0)
		return -2;
	if (n == 0) {
		if (!create) {
			snprintf(err, errlen, "topic %s does not exist: create it, or set "
				 "relay.auto_create_topics = true", topic);
			return -1;
		}
		if (kafka_admin_create(kp->rk, topic, partitions, replication_factor, NULL,
				       KAFKA_ADMIN_TIMEOUT_MS, err, errlen) < 0)
			return -2;
	}
	kafka_topic *topics = realloc(kp->topics, sizeof(*topics) * (kp->n_topics + 1));
	char *name = strdup(topic);
	if (!topics || !name) {
		free(name);
		if (topics)
			kp->topics = topics;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	kp->topics = topics;
	kafka_topic *t = &topics[kp->n_topics];
	t->name = name;
	/* Held until kafka_producer_free (NULL: records name the topic instead). */
	t->rkt = rd_kafka_topic_new(kp->rk, topic, NULL);
	t->partitions = n; /* 0 when just created: asked at the first record for every partition */
	t->counted_ms = clock_mono_ms();
	t->max_bytes = 0;
	t->describing = kafka_admin_describe_topic(kp->rk, topic);
	kp->last = kp->n_topics++;
	topic_limit_poll(t, kp->describe_unanswered ? 0 : DESCRIBE_WAIT_MS);
	if (t->describing && !kp->describe_unanswered) {
		kp->describe_unanswered = true;
		log_debug("topic %s: no answer to DescribeConfigs in %d ms: the broker's refusal is "
			  "the size check until it answers", topic, DESCRIBE_WAIT_MS);
	}
	return 0;
}
