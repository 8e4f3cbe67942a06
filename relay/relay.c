/* relay.c: the event loop: reads wal2json records, produces outbox records, confirms the slot. */
#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "log.h"
#include "pg_stream.h"
#include "progress.h"
#include "route.h"
#include "w2j.h"

/* After the flush position moves, tell the server within this many ms (not on every ack). */
#define STATUS_MIN_GAP_MS 100
/* Records read from libpq's buffer before timers and deliveries get a turn. */
#define READ_BATCH 1024
#define BACKOFF_START_MS 500
/* How long the server gets to end the stream cleanly (and apply the last status). */
#define CLOSE_TIMEOUT_MS 5000

/* How a streaming session ended. */
typedef enum {
	STREAM_CONTINUE, /* not ended: go on */
	STREAM_STOP,   /* SIGTERM or SIGINT */
	STREAM_BROKEN, /* the replication connection was lost */
	STREAM_REWIND, /* Kafka refused a record for a reason that may pass: read again */
	STREAM_FATAL,  /* nothing to retry: exit non-zero */
} stream_end;

typedef struct {
	const relay_config *cfg;
	router *router;
	kafka_producer *kp;
	pg_stream *pg;
	progress prog;
	bool in_txn;       /* between a B and its C */
	bool skip_txn;     /* the open transaction was confirmed already */
	uint64_t txn_seq;
	lsn_t received;    /* newest WAL position seen on the stream */
	lsn_t sent_flush;  /* flush position last sent to the server */
	int64_t last_status_ms;
	bool delivery_failed;
	rd_kafka_resp_err_t delivery_err;
	uint64_t records_out;
	unsigned rewinds; /* refusals in a row, for the backoff; reset by an ack */
	int64_t stop_deadline; /* set at the first look at a stop request */
} relay;

static volatile sig_atomic_t stop_requested;
static sigset_t wait_mask; /* the signal mask ppoll waits with: our signals unblocked */

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Signals stay blocked except while waiting in ppoll, so a SIGTERM never slips past a check. */
static void setup_signals(void)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A stop request ends the stream at the next transaction boundary, so a clean stop leaves no
 * half-published transaction to be produced again at the next start; the shutdown timeout
 * bounds the wait for that boundary and for the acks together.
 */
static bool should_stop(relay *r)
{
	if (!stop_requested)
		return false;
	if (r->stop_deadline == 0)
		r->stop_deadline = now_ms() + r->cfg->shutdown_timeout_ms;
	return !r->in_txn || now_ms() >= r->stop_deadline;
}

/* Permanent refusals: retrying the same record cannot succeed. */
static bool error_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
	case RD_KAFKA_RESP_ERR__FATAL:
		return true;
	default:
		return false;
	}
}

/* Delivery report: an ack moves the tracker; a failure stops the stream before anything moves. */
static void on_delivery(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err)
{
	relay *r = opaque;
	uint64_t seq = (uint64_t)(uintptr_t)msg_opaque;

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		progress_acked(&r->prog, seq);
		r->rewinds = 0;
		return;
	}
	progress_lost(&r->prog, seq);
	if (!r->delivery_failed)
		log_error("Kafka did not take a record: %s", rd_kafka_err2str(err));
	r->delivery_failed = true;
	if (!r->delivery_err || error_is_permanent(err))
		r->delivery_err = err;
}

/*
 * Sends a status update when the server asked, when the interval passed, or soon after the
 * flush position moved. The flush position is only ever what Kafka acknowledged.
 */
static int send_status(relay *r, bool force)
{
	int64_t now = now_ms();
	lsn_t flush = r->prog.acked;
	bool due = force || now - r->last_status_ms >= r->cfg->status_interval_ms ||
		   (flush > r->sent_flush && now - r->last_status_ms >= STATUS_MIN_GAP_MS);

	if (!due || !r->pg)
		return 0;
	if (pg_stream_send_status(r->pg, r->received > flush ? r->received : flush, flush) < 0)
		return -1;
	if (flush != r->sent_flush) {
		char a[LSN_TEXT_MAX];
		log_debug("confirmed %s to the server", lsn_format(flush, a));
	}
	r->sent_flush = flush;
	r->last_status_ms = now;
	return 0;
}

/* Milliseconds until the next status update is due. */
static int64_t status_due_in(const relay *r)
{
	int64_t gap = r->prog.acked > r->sent_flush ? STATUS_MIN_GAP_MS : r->cfg->status_interval_ms;
	int64_t left = r->last_status_ms + gap - now_ms();
	return left < 0 ? 0 : left;
}

/*
 * Waits for the replication socket (when read_pg), Kafka events or the next timer, at most
 * until deadline (a now_ms time, or -1). Serves Kafka events and the status timer afterwards.
 */
static int wait_events(relay *r, bool read_pg, int64_t deadline)
{
	struct pollfd fds[2];
	nfds_t n = 0;
	int64_t timeout = r->pg ? status_due_in(r) : 1000;
	struct timespec ts;

	fds[n].fd = kafka_event_fd(r->kp);
	fds[n++].events = POLLIN;
	if (r->pg) {
		fds[n].fd = pg_stream_socket(r->pg);
		fds[n].events = (short)((read_pg ? POLLIN : 0) | (pg_stream_flush(r->pg) > 0 ? POLLOUT : 0));
		n++;
	}
	if (deadline >= 0 && deadline - now_ms() < timeout)
		timeout = deadline - now_ms();
	if (timeout < 0)
		timeout = 0;
	ts.tv_sec = timeout / 1000;
	ts.tv_nsec = (timeout % 1000) * 1000000;
	if (ppoll(fds, n, &ts, &wait_mask) < 0 && errno != EINTR) {
		log_error("poll: %s", strerror(errno));
		return -1;
	}
	kafka_serve(r->kp);
	return r->pg ? send_status(r, false) : 0;
}

/* Hands one record to Kafka, waiting (with status updates flowing) while its queue is full. */
static stream_end produce(relay *r, const route_msg *m)
{
	for (;;) {
		rd_kafka_resp_err_t err = kafka_produce(r->kp, m, (void *)(uintptr_t)r->txn_seq);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			progress_produced(&r->prog, r->txn_seq);
			r->records_out++;
			return STREAM_CONTINUE;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			log_error("cannot hand a record for topic %s to Kafka: %s", m->topic,
				  rd_kafka_err2str(err));
			return STREAM_FATAL;
		}
		if (wait_events(r, false, -1) < 0)
			return STREAM_BROKEN;
		if (should_stop(r))
			return STREAM_STOP;
		if (r->delivery_failed)
			return STREAM_REWIND;
	}
}

/* Logs a row that cannot be published; the relay stops before the slot moves past it. */
static stream_end refuse_row(const w2j_record *rec, const char *why)
{
	char a[LSN_TEXT_MAX];
	log_error("cannot publish the row of %.*s.%.*s at LSN %s (xid %llu): %s; stopping so that "
		  "it is not skipped: fix the row (or the outbox.topic template) and restart",
		  (int)rec->schema.len, rec->schema.ptr, (int)rec->table.len, rec->table.ptr,
		  lsn_format(rec->lsn, a), (unsigned long long)rec->xid, why);
	return STREAM_FATAL;
}

/* One wal2json record: transaction bounds feed the tracker, outbox inserts become records. */
static stream_end handle_record(relay *r, const char *data, size_t len)
{
	w2j_record rec;
	route_msg m;
	const char *why = NULL;

	if (w2j_decode(data, len, &rec, &why) < 0) {
		log_error("malformed wal2json record (%s): %.*s", why, (int)(len > 200 ? 200 : len), data);
		return STREAM_FATAL;
	}
	switch (rec.action) {
	case W2J_BEGIN:
		r->in_txn = true;
		r->skip_txn = rec.nextlsn <= r->prog.acked;
		if (!r->skip_txn)
			r->txn_seq = progress_begin(&r->prog, rec.nextlsn);
		return STREAM_CONTINUE;
	case W2J_COMMIT:
		if (r->in_txn && !r->skip_txn)
			progress_commit(&r->prog, r->txn_seq);
		r->in_txn = false;
		return STREAM_CONTINUE;
	case W2J_INSERT:
		if (!r->in_txn || r->skip_txn || !router_is_outbox(r->router, &rec))
			return STREAM_CONTINUE;
		if (router_outbox(r->router, &rec, &m, &why) < 0)
			return refuse_row(&rec, why);
		return produce(r, &m);
	default:
		/* Updates, deletes (e.g. a retention purge), truncates and messages of the outbox
		 * tables carry no events. */
		return STREAM_CONTINUE;
	}
}

static stream_end handle_message(relay *r, const pg_msg *msg)
{
	if (msg->wal_end > r->received && msg->kind == 'k')
		r->received = msg->wal_end;
	if (msg->kind == 'w') {
		if (msg->wal_start > r->received)
			r->received = msg->wal_start;
		return handle_record(r, msg->data, msg->len);
	}
	/* Keepalive: with nothing open or in flight, everything up to walEnd is safe. */
	if (!r->in_txn && progress_idle(&r->prog))
		progress_skip_to(&r->prog, msg->wal_end);
	if (msg->reply_requested && send_status(r, true) < 0)
		return STREAM_BROKEN;
	return STREAM_CONTINUE;
}

/* Streams until something ends the session. */
static stream_end stream(relay *r)
{
	for (;;) {
		pg_msg msg;
		int n = 0, got = 0;
		stream_end e;
		char reason[512];

		if (should_stop(r))
			return STREAM_STOP;
		if (r->delivery_failed)
			return error_is_permanent(r->delivery_err) ? STREAM_FATAL : STREAM_REWIND;
		if (kafka_fatal(r->kp, reason, sizeof(reason))) {
			log_error("Kafka producer failed: %s", reason);
			return STREAM_FATAL;
		}
		while (n < READ_BATCH && (got = pg_stream_read(r->pg, &msg)) == 1) {
			n++;
			if ((e = handle_message(r, &msg)) != STREAM_CONTINUE)
				return e;
		}
		if (got < 0) {
			log_warn("replication connection lost: %s", pg_stream_error(r->pg));
			return STREAM_BROKEN;
		}
		if (n == READ_BATCH) {
			/* More may be buffered in libpq: serve Kafka and timers, then read on. */
			kafka_serve(r->kp);
			if (send_status(r, false) < 0)
				return STREAM_BROKEN;
			continue;
		}
		if (wait_events(r, true, stop_requested ? r->stop_deadline : -1) < 0)
			return STREAM_BROKEN;
	}
}

/* Waits until Kafka has reported every record handed to it, or the deadline (-1: none). */
static bool drain(relay *r, int64_t deadline)
{
	while (r->prog.in_flight > 0) {
		if (deadline >= 0 && now_ms() >= deadline)
			return false;
		if (wait_events(r, false, deadline) < 0)
			return false;
		if (deadline < 0 && stop_requested)
			return false;
	}
	return true;
}

/*
 * Forgets what is not acknowledged and closes the stream; the next session starts right after
 * the acknowledged position, so what follows it is read and produced again.
 */
static void end_session(relay *r)
{
	progress_reset(&r->prog);
	r->in_txn = false;
	r->delivery_failed = false;
	r->delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	pg_stream_close(r->pg, CLOSE_TIMEOUT_MS);
	r->pg = NULL;
}

/* Opens the replication stream; retries with backoff until it works, a stop, or a fatal error. */
static stream_end connect_stream(relay *r)
{
	int64_t backoff = BACKOFF_START_MS;
	char err[1024], a[LSN_TEXT_MAX];

	for (;;) {
		pg_result res = pg_stream_open(&r->pg, r->cfg->pg_conninfo, r->cfg->slot,
					       r->cfg->create_slot, r->cfg->tables, r->cfg->n_tables,
					       r->prog.acked, err, sizeof(err));
		if (res == PG_OK)
			break;
		if (res == PG_FATAL) {
			log_error("PostgreSQL: %s", err);
			return STREAM_FATAL;
		}
		log_warn("PostgreSQL: %s; retrying in %lld ms", err, (long long)backoff);
		int64_t until = now_ms() + backoff;
		while (!stop_requested && now_ms() < until)
			wait_events(r, false, until);
		if (stop_requested)
			return STREAM_STOP;
		backoff = backoff * 2 > r->cfg->reconnect_max_backoff_ms ? r->cfg->reconnect_max_backoff_ms
									  : backoff * 2;
	}
	if (pg_stream_start_lsn(r->pg) > r->prog.acked)
		r->prog.acked = pg_stream_start_lsn(r->pg);
	r->sent_flush = r->prog.acked;
	r->last_status_ms = now_ms();
	log_info("streaming from slot \"%s\" after %s", r->cfg->slot, lsn_format(r->prog.acked, a));
	return STREAM_CONTINUE;
}

/* SIGTERM: no more reading; bounded wait for acks; the final position goes to the server. */
static void shut_down(relay *r)
{
	char a[LSN_TEXT_MAX];
	int64_t deadline;

	should_stop(r);
	deadline = r->stop_deadline;
	log_info("stopping: waiting up to %lld ms for Kafka to acknowledge %llu records",
		 (long long)(deadline - now_ms()), (unsigned long long)r->prog.in_flight);
	if (!drain(r, deadline))
		log_warn("%llu records were not acknowledged in time; they will be read again at the "
			 "next start", (unsigned long long)r->prog.in_flight);
	if (r->pg && send_status(r, true) < 0)
		log_warn("could not send the final position: %s", pg_stream_error(r->pg));
	log_info("stopped; confirmed up to %s", lsn_format(r->prog.acked, a));
}

/* Waits longer after each refusal in a row, so a Kafka outage does not spin; -1 on a stop. */
static int pause_before_rewind(relay *r)
{
	int64_t wait = BACKOFF_START_MS;
	for (unsigned i = 0; i < r->rewinds && wait < r->cfg->reconnect_max_backoff_ms; i++)
		wait *= 2;
	if (wait > r->cfg->reconnect_max_backoff_ms)
		wait = r->cfg->reconnect_max_backoff_ms;
	r->rewinds++;
	log_warn("reading again from %s in %lld ms", "the last acknowledged position", (long long)wait);
	int64_t until = now_ms() + wait;
	while (!stop_requested && now_ms() < until)
		wait_events(r, false, until);
	return stop_requested ? -1 : 0;
}

/* Runs sessions until stopped: each connects, streams, and on trouble drains and reconnects. */
static int run_sessions(relay *r)
{
	for (;;) {
		stream_end e = connect_stream(r);
		if (e == STREAM_CONTINUE)
			e = stream(r);
		if (e == STREAM_STOP) {
			shut_down(r);
			return RELAY_EXIT_OK;
		}
		if (e == STREAM_FATAL) {
			/* Keep what Kafka did take: confirm it before leaving. */
			drain(r, now_ms() + r->cfg->shutdown_timeout_ms);
			if (r->pg)
				send_status(r, true);
			return RELAY_EXIT_FATAL;
		}
		/* Broken or rewind: settle what is in flight, then read again from the acked point.
		 * After a refusal, what is still queued will be produced again: drop it now. */
		if (e == STREAM_REWIND)
			kafka_purge(r->kp);
		if (!drain(r, -1) && stop_requested) {
			shut_down(r);
			return RELAY_EXIT_OK;
		}
		if (r->pg)
			send_status(r, true);
		end_session(r);
		if (e == STREAM_REWIND && pause_before_rewind(r) < 0) {
			shut_down(r);
			return RELAY_EXIT_OK;
		}
	}
}

int relay_run(const relay_config *cfg)
{
	relay r;
	char err[512];
	int code = RELAY_EXIT_FATAL;

	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	setup_signals();
	progress_init(&r.prog, LSN_INVALID);
	r.router = router_new(cfg, err, sizeof(err));
	if (!r.router) {
		log_error("%s: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	/* Hand-off: the producer calls on_delivery with &r from kafka_serve, on this thread. */
	r.kp = kafka_producer_new(cfg, on_delivery, &r, err, sizeof(err));
	if (!r.kp) {
		log_error("Kafka producer: %s", err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	code = run_sessions(&r);
cleanup:
	pg_stream_close(r.pg, CLOSE_TIMEOUT_MS);
	kafka_producer_free(r.kp);
	router_free(r.router);
	progress_free(&r.prog);
	return code;
}
