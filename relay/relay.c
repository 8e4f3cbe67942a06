/* relay.c: the event loop: reads wal2json records, produces outbox records, confirms the slot. */
#include "relay.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backfill.h"
#include "capture.h"
#include "checkpoint.h"
#include "clock.h"
#include "eos.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outbox_table.h"
#include "pg_stream.h"
#include "pgtime.h"
#include "progress.h"
#include "route.h"
#include "snapshot.h"
#include "w2j.h"
#include "xalloc.h"

/* After the flush position moves, tell the server within this many ms (not on every ack). */
#define STATUS_MIN_GAP_MS 100
/* Records read from libpq's buffer before timers and deliveries get a turn. */
#define READ_BATCH 1024
#define BACKOFF_START_MS 500
/* How long the server gets to end the stream cleanly (and apply the last status). */
#define CLOSE_TIMEOUT_MS 5000
/*
 * Catching up (the transactions read committed at least GATHER_BEHIND_MS ago), the relay lets
 * the server's records gather for GATHER_MS before reading on, instead of waking for every few
 * of them: a wake-up costs as much CPU as several rows.
 */
#define GATHER_BEHIND_MS 200
#define GATHER_MS 1
/*
 * Far behind (the transactions read committed at least STRETCH_BEHIND_MS ago: a backlog, not a
 * hiccup of live traffic), how long a Kafka transaction may stay open when
 * relay.transaction_max_ms is less.
 */
#define STRETCH_BEHIND_MS 2000
#define CATCHUP_TXN_MS 1000
/*
 * What librdkafka holds per queued record besides its key and value (its message structure,
 * the header list): counted against relay.max_in_flight_bytes, so the limit bounds memory.
 */
#define RECORD_OVERHEAD 256
#define HEADER_OVERHEAD 32

/*
 * What a delivery report needs to know about its record: its PostgreSQL transaction (for the
 * tracker) and, for the metrics, its topic series, size, dead-letter flag and start time. The
 * record's opaque is its slot's index; slots are reused through a free list, and the table
 * only grows when more records are in flight than ever before (no allocation per record).
 */
typedef struct {
	uint64_t seq;     /* PostgreSQL transaction (progress), UINT64_MAX: none */
	int64_t start_ms; /* its commit time (or when read, without one), for the latency */
	uint64_t bytes;   /* key and value */
	uint32_t held;    /* what it takes in librdkafka's queue (relay.max_in_flight_bytes) */
	uint16_t topic;   /* metrics_topic() */
	bool dead_letter;
	bool alone;       /* produced while looking for a refused record: nothing else in its batch */
	lsn_t txn_end;    /* its source row: the transaction's commit end and the row's ordinal */
	uint64_t row;     /* (NO_ROW: not a source row's record: a snapshot row, a checkpoint) */
} in_flight;

#define NO_ROW UINT64_MAX

/*
 * A record the broker refused for itself (too large for the topic's max.message.bytes), in
 * dead-letter mode. The broker refuses a whole batch, so every record in it reports the error:
 * the session is read again with each source row's records produced alone (waiting for their
 * delivery) until one is refused alone. The next reading dead-letters that row whole.
 */
typedef struct {
	bool searching;         /* a refusal was seen: produce records alone */
	lsn_t seen_end;         /* the newest transaction (commit end) a refused record belonged to */
	lsn_t txn_end;          /* the refused row, once it was refused alone (0: not known yet) */
	uint64_t row;
	rd_kafka_resp_err_t err;
} broker_refusal;

typedef struct {
	in_flight *slots;
	uint32_t *free_ids;
	size_t cap, n_free;
} in_flight_table;

/* Records of the open Kafka transaction, counted as published when it commits (exactly-once). */
typedef struct {
	uint64_t records[METRICS_TOPIC_SLOTS];
	uint64_t bytes[METRICS_TOPIC_SLOTS];
	uint64_t dead_letters;
	struct latency_run {
		int64_t start_ms;
		uint64_t n;
	} *runs; /* records by start time, in produce order: one run per PostgreSQL transaction */
	size_t n_runs, cap_runs;
	bool any;
} eos_pending_metrics;

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
	lsn_t txn_end;     /* the open transaction's commit record end (its B record's nextlsn) */
	bool skip_txn;     /* the open transaction was confirmed already */
	uint64_t txn_seq;
	lsn_t received;    /* newest WAL position seen on the stream */
	lsn_t sent_flush;  /* flush position last sent to the server */
	int64_t last_status_ms;
	int64_t last_notify_ms; /* last STATUS= line to systemd */
	int64_t last_lag_check_ms;
	bool delivery_failed;
	rd_kafka_resp_err_t delivery_err;
	uint64_t records_out;
	unsigned rewinds; /* refusals in a row, for the backoff; reset by an ack */
	int64_t stop_deadline; /* set at the first look at a stop request */
	bool eos_on;           /* exactly-once: Kafka transactions with checkpoints */
	eos eos;
	bool eos_loaded;       /* the checkpoint was read from Kafka */
	bool pg_lost;          /* sending to the server failed: the session must end */
	backfill *bf;          /* outbox rows a new slot cannot deliver, read from the tables */
	checkpoint_recovery lo; /* what the checkpoint covered when the running backfill began */
	bool backfilling;      /* the rows being published come from the backfill */
	uint64_t backfill_counted; /* backfill rows counted in the metrics (committed) */
	int64_t disorder_told;  /* commit-time disorder last reported (us) */
	in_flight_table flight; /* the records librdkafka has not reported yet */
	int64_t txn_commit_ms;  /* commit time of the open PostgreSQL transaction (0: unknown) */
	lsn_t wal_end_seen;     /* newest server WAL position known (for replication_lag_bytes) */
	uint64_t flight_bytes;  /* held by the records librdkafka has not reported yet */
	bool paused;            /* not reading the stream: flight_bytes reached the limit */
	bool pause_told;        /* the pause was logged (it lasted) */
	int64_t paused_ms;      /* when the pause began */
	bool streamed;          /* a session was streaming before: the next one is a reconnect */
	eos_pending_metrics pend;
	capture *cap;           /* change capture of existing tables, or NULL */
	snapshot *snap;         /* their snapshots (exactly-once only), or NULL */
	PGconn *sql;            /* normal connection: catalog reads and snapshot chunks */
	uint64_t txn_xid;       /* xid of the open PostgreSQL transaction */
	bool hold_commit;       /* a group of records that must share one Kafka transaction is going
				 * out (set while unfinished: then the open transaction is aborted) */
	int64_t next_chunk_ms;  /* no snapshot chunk before this time (after a failed attempt) */
	uint64_t txn_rows;      /* source rows of the open PostgreSQL transaction read so far */
	uint64_t cur_row;       /* the ordinal of the source row being published, or NO_ROW */
	broker_refusal refusal;
	bool alone_waiting;     /* a record produced alone has no delivery report yet */
} relay;

static volatile sig_atomic_t stop_requested;
static sigset_t wait_mask; /* the signal mask ppoll waits with: our signals unblocked */

static volatile sig_atomic_t reload_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_reload_signal(int sig)
{
	(void)sig;
	reload_requested = 1;
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
	sa.sa_handler = on_reload_signal;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGHUP);
}

static uint32_t flight_take(in_flight_table *t)
{
	if (t->n_free == 0) {
		size_t ncap = t->cap ? t->cap * 2 : 1024;
		in_flight *slots = realloc(t->slots, ncap * sizeof(*slots));
		if (slots)
			t->slots = slots;
		uint32_t *ids = slots ? realloc(t->free_ids, ncap * sizeof(*ids)) : NULL;
		if (!ids) {
			log_error("out of memory");
			abort();
		}
		t->free_ids = ids;
		for (size_t i = ncap; i > t->cap; i--)
			t->free_ids[t->n_free++] = (uint32_t)(i - 1);
		t->cap = ncap;
	}
	return t->free_ids[--t->n_free];
}

static void flight_give(in_flight_table *t, uint32_t id) { t->free_ids[t->n_free++] = id; }

static void flight_free(in_flight_table *t)
{
	free(t->slots);
	free(t->free_ids);
	memset(t, 0, sizeof(*t));
}

/* Exactly-once: a record went into the open Kafka transaction. */
static void pending_add(eos_pending_metrics *p, const in_flight *f)
{
	p->records[f->topic]++;
	p->bytes[f->topic] += f->bytes;
	p->dead_letters += f->dead_letter;
	p->any = true;
	if (p->n_runs > 0 && p->runs[p->n_runs - 1].start_ms == f->start_ms) {
		p->runs[p->n_runs - 1].n++;
		return;
	}
	if (p->n_runs == p->cap_runs) {
		size_t ncap = p->cap_runs ? p->cap_runs * 2 : 256;
		struct latency_run *runs = realloc(p->runs, ncap * sizeof(*runs));
		if (!runs) {
			log_error("out of memory");
			abort();
		}
		p->runs = runs;
		p->cap_runs = ncap;
	}
	p->runs[p->n_runs].start_ms = f->start_ms;
	p->runs[p->n_runs++].n = 1;
}

/* The open Kafka transaction was aborted (or given up): its records were not published. */
static void pending_drop(eos_pending_metrics *p)
{
	if (!p->any)
		return;
	memset(p->records, 0, sizeof(p->records));
	memset(p->bytes, 0, sizeof(p->bytes));
	p->dead_letters = 0;
	p->n_runs = 0;
	p->any = false;
}

/* The open Kafka transaction committed: its records count as published now. */
static void pending_publish(eos_pending_metrics *p)
{
	int64_t now = clock_wall_ms();

	if (!p->any)
		return;
	for (unsigned t = 0; t < METRICS_TOPIC_SLOTS; t++)
		if (p->records[t])
			metrics_published(t, p->records[t], p->bytes[t]);
	metrics_dead_letters(p->dead_letters);
	for (size_t i = 0; i < p->n_runs; i++)
		metrics_latency(now - p->runs[i].start_ms, p->runs[i].n);
	pending_drop(p);
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
		r->stop_deadline = clock_mono_ms() + r->cfg->shutdown_timeout_ms;
	return !r->in_txn || clock_mono_ms() >= r->stop_deadline;
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

/* Refusals of one record for what it is (its size), not of the topic or the producer. */
static bool error_is_the_records(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

/*
 * A source row's record the broker refused for itself, in dead-letter mode: noted so that the
 * row is found (records produced alone) and dead-lettered when it is read again.
 */
static void note_refusal(relay *r, const in_flight *f, rd_kafka_resp_err_t err)
{
	broker_refusal *b = &r->refusal;

	if (!r->cfg->dead_letter || f->dead_letter || f->row == NO_ROW || !error_is_the_records(err))
		return;
	if (!b->searching)
		log_warn("the broker refused a record for its size (%s): reading again with each row's "
			 "records alone, to dead-letter the row it belongs to", rd_kafka_err2str(err));
	b->searching = true;
	if (f->txn_end > b->seen_end)
		b->seen_end = f->txn_end;
	if (f->alone && b->txn_end == 0) {
		b->txn_end = f->txn_end;
		b->row = f->row;
		b->err = err;
	}
}

/* Delivery report: an ack moves the tracker; a failure stops the stream before anything moves. */
static void on_delivery(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err)
{
	relay *r = opaque;
	uintptr_t id = (uintptr_t)msg_opaque;
	uint64_t seq = UINT64_MAX; /* the checkpoint record (eos.c): no PostgreSQL transaction */

	if (id < r->flight.cap) {
		const in_flight *f = &r->flight.slots[id];
		seq = f->seq;
		if (f->alone)
			r->alone_waiting = false;
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			note_refusal(r, f, err);
		/* At-least-once: an acknowledged record is published (exactly-once: at the commit). */
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR && !r->eos_on) {
			metrics_published(f->topic, 1, f->bytes);
			if (f->dead_letter)
				metrics_dead_letters(1);
			metrics_latency(clock_wall_ms() - f->start_ms, 1);
		}
		r->flight_bytes -= f->held;
		flight_give(&r->flight, (uint32_t)id);
	}
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
/*
 * The server keeps WAL for the slot: warn, at most once a minute, while that passes
 * relay.lag_warn_mb (max_slot_wal_keep_size would invalidate the slot). It is asked over a
 * short normal connection, since the stream is not read while Kafka blocks the relay.
 */
static void warn_lag(relay *r, int64_t now)
{
	uint64_t retained, limit = (uint64_t)r->cfg->lag_warn_mb * 1024 * 1024;
	int64_t every = r->cfg->status_interval_ms * 6 < 60000 ? r->cfg->status_interval_ms * 6 : 60000;

	if ((limit == 0 && !r->cfg->metrics_listen[0]) || now - r->last_lag_check_ms < every)
		return;
	r->last_lag_check_ms = now;
	if (pg_slot_retained_wal(r->cfg->pg_conninfo, r->cfg->pg_password, r->cfg->slot, &retained) < 0)
		return;
	metrics_set_retained_wal(retained);
	if (limit == 0 || retained < limit)
		return;
	log_warn("the server keeps %llu MB of WAL for slot \"%s\": Kafka is slow or down, or the "
		 "relay is catching up (relay.lag_warn_mb = %d; max_slot_wal_keep_size would "
		 "invalidate the slot)", (unsigned long long)(retained / (1024 * 1024)), r->cfg->slot,
		 r->cfg->lag_warn_mb);
}

/* What may be confirmed: committed in Kafka (exactly-once) or acknowledged (at-least-once). */
static lsn_t flush_lsn(const relay *r)
{
	return r->eos_on ? r->eos.committed.lsn : r->prog.acked;
}

static int send_status(relay *r, bool force)
{
	int64_t now = clock_mono_ms();
	lsn_t flush = flush_lsn(r);
	bool due = force || now - r->last_status_ms >= r->cfg->status_interval_ms ||
		   (flush > r->sent_flush && now - r->last_status_ms >= STATUS_MIN_GAP_MS);

	if (!due || !r->pg || r->pg_lost)
		return r->pg_lost ? -1 : 0;
	if (pg_stream_send_status(r->pg, r->received > flush ? r->received : flush, flush) < 0) {
		/* The stream loop notices and reconnects; waits elsewhere go on without status. */
		r->pg_lost = true;
		return -1;
	}
	if (flush != r->sent_flush) {
		char a[LSN_TEXT_MAX];
		log_debug("confirmed %s to the server", lsn_format(flush, a));
		metrics_set_confirmed(flush);
	}
	if (now - r->last_notify_ms >= r->cfg->status_interval_ms) {
		char a[LSN_TEXT_MAX];
		notify_status("streaming; confirmed %s; %llu records published", lsn_format(flush, a),
			      (unsigned long long)r->records_out);
		r->last_notify_ms = now;
	}
	r->sent_flush = flush;
	r->last_status_ms = now;
	warn_lag(r, now);
	return 0;
}

/* Milliseconds until the next status update is due. */
static int64_t status_due_in(const relay *r)
{
	int64_t gap = flush_lsn(r) > r->sent_flush ? STATUS_MIN_GAP_MS : r->cfg->status_interval_ms;
	int64_t left = r->last_status_ms + gap - clock_mono_ms();
	return left < 0 ? 0 : left;
}

/*
 * Waits for the replication socket (when read_pg), Kafka events or the next timer, at most
 * until deadline (a clock_mono_ms time, or -1). Serves Kafka events and the status timer afterwards.
 */
static int wait_events(relay *r, bool read_pg, int64_t deadline)
{
	struct pollfd fds[2];
	nfds_t n = 0;
	int64_t timeout = r->pg && !r->pg_lost ? status_due_in(r) : 1000;
	struct timespec ts;

	if (r->kp) {
		fds[n].fd = kafka_event_fd(r->kp);
		fds[n++].events = POLLIN;
	}
	if (r->pg && !r->pg_lost) {
		fds[n].fd = pg_stream_socket(r->pg);
		fds[n].events = (short)((read_pg ? POLLIN : 0) | (pg_stream_flush(r->pg) > 0 ? POLLOUT : 0));
		n++;
	}
	if (deadline >= 0 && deadline - clock_mono_ms() < timeout)
		timeout = deadline - clock_mono_ms();
	int64_t wd = notify_watchdog_interval_ms();
	if (wd > 0 && timeout > wd)
		timeout = wd;
	if (timeout < 0)
		timeout = 0;
	notify_watchdog();
	ts.tv_sec = timeout / 1000;
	ts.tv_nsec = (timeout % 1000) * 1000000;
	if (ppoll(fds, n, &ts, &wait_mask) < 0 && errno != EINTR) {
		log_error("poll: %s", strerror(errno));
		return -1;
	}
	if (r->kp)
		kafka_serve(r->kp);
	send_status(r, false); /* a failure marks pg_lost, which the stream loop acts on */
	return 0;
}

/* Between slices of a blocking Kafka call: serve events, keep status flowing; -1 to give up. */
static int eos_tick(void *ctx)
{
	relay *r = ctx;
	if (wait_events(r, false, clock_mono_ms() + 1) < 0)
		return -1;
	if (stop_requested && r->stop_deadline == 0)
		r->stop_deadline = clock_mono_ms() + r->cfg->shutdown_timeout_ms;
	return stop_requested && clock_mono_ms() >= r->stop_deadline ? -1 : 0;
}

/* While Kafka transactions start nothing is open: a stop request ends the wait at once. */
static int eos_init_tick(void *ctx)
{
	relay *r = ctx;
	if (wait_events(r, false, clock_mono_ms() + 1) < 0)
		return -1;
	return stop_requested ? -1 : 0;
}

static stream_end eos_to_stream(eos_result e)
{
	return e == EOS_OK ? STREAM_CONTINUE : e == EOS_REPLAY ? STREAM_REWIND : STREAM_FATAL;
}

/*
 * eos_commit, counted: a commit publishes the transaction's records (for the metrics); an
 * abort (eos_commit aborts when Kafka requires it) or a transaction left open drops them.
 */
static eos_result commit_kafka(relay *r)
{
	bool was_open = r->eos.open;
	eos_result res;

	if (r->snap && snapshot_dirty(r->snap))
		eos_attach_state(&r->eos, snapshot_state_json(r->snap));
	if (backfill_active(r->bf))
		eos_set_backfill(&r->eos, backfill_state_json(r->bf));
	res = eos_commit(&r->eos, eos_tick, r);
	if (res == EOS_OK) {
		if (r->snap)
			snapshot_committed(r->snap);
		if (backfill_active(r->bf)) {
			backfill_committed(r->bf);
			metrics_backfilled(backfill_rows(r->bf) - r->backfill_counted);
			r->backfill_counted = backfill_rows(r->bf);
		}
		metrics_txn_committed();
		pending_publish(&r->pend);
	} else if (!r->eos.open) {
		if (res == EOS_REPLAY && was_open)
			metrics_txn_aborted();
		pending_drop(&r->pend);
	}
	return res;
}

/* eos_abort, counted. */
static eos_result abort_kafka(relay *r)
{
	bool was_open = r->eos.open;
	eos_result res = eos_abort(&r->eos, eos_tick, r);

	if (was_open && res == EOS_OK)
		metrics_txn_aborted();
	pending_drop(&r->pend);
	return res;
}

/* True while reading transactions that committed at least behind_ms ago. */
static bool behind_by(const relay *r, int64_t behind_ms)
{
	return r->txn_commit_ms > 0 && clock_wall_ms() - r->txn_commit_ms >= behind_ms;
}

/*
 * Catching up on a backlog, each commit stops reading while it runs and nobody waits for these
 * rows yet: a transaction due only by its age (relay.transaction_max_ms) stays open up to
 * CATCHUP_TXN_MS. Its size bound and an idle input still commit it at once.
 */
static bool stretch_txn(const relay *r, bool input_idle)
{
	const eos *e = &r->eos;

	if ((input_idle && !e->in_pg_txn) || e->records >= (uint64_t)r->cfg->transaction_max_records)
		return false;
	return clock_mono_ms() - e->opened_ms < CATCHUP_TXN_MS && behind_by(r, STRETCH_BEHIND_MS);
}

/*
 * A split transaction whose last part was committed right before its C record: only a checkpoint
 * saying it is complete is missing. Due at once (the idle checkpoint would come an interval later).
 */
static bool split_end_due(const relay *r)
{
	const eos *e = &r->eos;
	return !e->open && !e->in_pg_txn && e->committed.partial_nextlsn != LSN_INVALID &&
	       e->committed.partial_nextlsn <= e->done_lsn;
}

/* Commits the open Kafka transaction, with its checkpoint, when it is due. */
static stream_end maybe_commit(relay *r, bool input_idle)
{
	if (!r->eos_on || r->hold_commit) /* a group of records is still going out */
		return STREAM_CONTINUE;
	if (split_end_due(r))
		return eos_to_stream(commit_kafka(r));
	if (!eos_commit_due(&r->eos, input_idle) || stretch_txn(r, input_idle))
		return STREAM_CONTINUE;
	return eos_to_stream(commit_kafka(r));
}

/* Before a topic's first record: it must exist (or be created); a missing one stops the relay. */
static stream_end ensure_topic(relay *r, const char *topic)
{
	char err[512];
	int rc = kafka_topic_ready(r->kp, topic, r->cfg->auto_create_topics, r->cfg->topic_partitions,
				   r->cfg->topic_replication_factor, err, sizeof(err));
	if (rc == 0)
		return STREAM_CONTINUE;
	if (rc == -1) {
		log_error("%s", err);
		return STREAM_FATAL;
	}
	log_warn("%s", err);
	return STREAM_REWIND;
}

/* Memory a record takes in librdkafka until its delivery report: what the in-flight limit counts. */
static uint32_t record_held(const route_msg *m)
{
	size_t n = RECORD_OVERHEAD + m->key_len + m->value_len;
	for (size_t i = 0; i < m->n_headers; i++)
		n += HEADER_OVERHEAD + m->headers[i].name_len + m->headers[i].value_len;
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/*
 * While a refused record is looked for: waits for the delivery report of the record just
 * produced, so that it was in a batch of its own (the broker refuses whole batches).
 */
static stream_end wait_alone(relay *r)
{
	r->alone_waiting = true;
	while (r->alone_waiting && !r->delivery_failed) {
		if (wait_events(r, false, -1) < 0)
			return STREAM_BROKEN;
		if (stop_requested)
			return STREAM_STOP;
	}
	return r->delivery_failed ? STREAM_REWIND : STREAM_CONTINUE;
}

/*
 * Hands one record to Kafka for one partition (RD_KAFKA_PARTITION_UA: by key), waiting (with
 * status updates flowing) while its queue is full. *refused gets librdkafka's error when it
 * refuses the record itself (too large, ...). dead_letter: a row's dead letter (for the metrics).
 */
static stream_end produce_to(relay *r, const route_msg *m, int32_t partition, bool dead_letter,
			     rd_kafka_resp_err_t *refused)
{
	stream_end e;

	/* The slot goes back with the record's delivery report, or below when Kafka did not take it. */
	uint32_t id = flight_take(&r->flight);
	in_flight f = {
		.seq = r->txn_seq,
		.start_ms = r->txn_commit_ms > 0 ? r->txn_commit_ms : clock_wall_ms(),
		.bytes = m->key_len + m->value_len,
		.held = record_held(m),
		.topic = (uint16_t)metrics_topic(m->topic),
		.dead_letter = dead_letter,
		.alone = r->refusal.searching && !dead_letter && r->cur_row != NO_ROW,
		.txn_end = r->txn_end,
		.row = dead_letter ? NO_ROW : r->cur_row,
	};
	r->flight.slots[id] = f;
	for (;;) {
		rd_kafka_resp_err_t err = kafka_produce(r->kp, m, partition, (void *)(uintptr_t)id);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			r->flight_bytes += f.held;
			progress_produced(&r->prog, r->txn_seq);
			r->records_out++;
			if (r->eos_on) {
				eos_produced(&r->eos);
				pending_add(&r->pend, &f);
			}
			if (f.alone && (e = wait_alone(r)) != STREAM_CONTINUE)
				return e;
			return maybe_commit(r, false);
		}
		if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
			*refused = err; /* about this record: it can be dead-lettered */
			e = STREAM_FATAL;
		} else if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			/* About the producer (an abortable transaction: _STATE; fatal: _FATAL). */
			log_warn("Kafka did not take a record for %s: %s", m->topic, rd_kafka_err2str(err));
			e = err == RD_KAFKA_RESP_ERR__FATAL ? STREAM_FATAL : STREAM_REWIND;
		} else if (wait_events(r, false, -1) < 0) {
			e = STREAM_BROKEN;
		} else if (should_stop(r)) {
			e = STREAM_STOP;
		} else if (r->delivery_failed) {
			e = STREAM_REWIND;
		} else {
			continue;
		}
		flight_give(&r->flight, id);
		return e;
	}
}

/*
 * Kafka's transaction coordinator completes a commit (writes its markers) a millisecond or two
 * after EndTxn returns. An AddPartitionsToTxn that comes sooner is refused with
 * CONCURRENT_TRANSACTIONS, and librdkafka retries it only 20 ms later: one transaction in eight
 * at 5,000 rows/s. Waiting TXN_GAP_MS after a commit before the next transaction's first record
 * (serving Kafka and status updates meanwhile) took that rate's exactly-once p99 from 58 to
 * about 32 ms (docs/performance.md).
 */
#define TXN_GAP_MS 2
static stream_end wait_txn_gap(relay *r)
{
	int64_t until = r->eos.last_commit_ms + TXN_GAP_MS;

	while (clock_mono_ms() < until)
		if (wait_events(r, false, until) < 0)
			return STREAM_BROKEN;
	return STREAM_CONTINUE;
}

/*
 * Hands one record to Kafka once its topic exists and a Kafka transaction is open. A record
 * for every partition (a truncate) goes to each partition the topic has now, so a consumer of
 * any partition sees it after that partition's earlier records.
 */
static stream_end produce(relay *r, const route_msg *m, bool dead_letter, rd_kafka_resp_err_t *refused)
{
	char err[512];
	int n = 1;
	stream_end e = ensure_topic(r, m->topic);

	*refused = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (e != STREAM_CONTINUE)
		return e;
	if (r->eos_on && !r->eos.open && (e = wait_txn_gap(r)) != STREAM_CONTINUE)
		return e;
	if (r->eos_on) {
		eos_result er = eos_ensure_open(&r->eos, err, sizeof(err));
		if (er != EOS_OK) {
			log_error("%s", err);
			return eos_to_stream(er);
		}
	}
	if (!m->every_partition)
		return produce_to(r, m, RD_KAFKA_PARTITION_UA, dead_letter, refused);
	if ((n = kafka_partition_count(r->kp, m->topic, err, sizeof(err))) < 0) {
		log_warn("cannot send a record to every partition: %s", err);
		return STREAM_REWIND;
	}
	for (int32_t p = 0; p < n && e == STREAM_CONTINUE && !*refused; p++)
		e = produce_to(r, m, p, dead_letter, refused);
	return e;
}

/*
 * A row that cannot be published goes to the dead-letter topic (and the relay goes on), or,
 * with on_error = stop or when even that fails, stops the relay before the slot moves past it.
 */
static stream_end reject_row(relay *r, const char *source, const w2j_record *rec,
			     const char *data, size_t len, const char *why, route_msg *m)
{
	char a[LSN_TEXT_MAX];
	rd_kafka_resp_err_t refused;
	const char *topic = m->topic;

	lsn_format(rec->lsn, a);
	if (!r->cfg->dead_letter) {
		log_error("cannot publish the row of %s at LSN %s (xid %llu): %s; stopping so that "
			  "it is not skipped (relay.on_error = stop): fix it and restart",
			  source, a, (unsigned long long)rec->xid, why);
		return STREAM_FATAL;
	}
	log_warn("dead-lettering the row of %s at LSN %s (xid %llu): %s", source, a,
		 (unsigned long long)rec->xid, why);
	router_dead_letter_named(r->router, source, rec, data, len, why, topic, m);
	stream_end e = produce(r, m, true, &refused);
	if (refused) {
		log_error("the dead-letter topic %s refused the row too: %s; stopping", m->topic,
			  rd_kafka_err2str(refused));
		return STREAM_FATAL;
	}
	return e;
}

/* True for the row the broker refused alone, read again now: it is dead-lettered whole. */
static bool refused_row(const relay *r)
{
	const broker_refusal *b = &r->refusal;
	return b->txn_end != 0 && b->txn_end == r->txn_end && b->row == r->cur_row;
}

/* Dead-letters the refused row (m: its record as built, for the key); the search is over. */
static stream_end reject_refused(relay *r, const char *source, const w2j_record *rec,
				 const char *data, size_t len, route_msg *m)
{
	char why[160];

	snprintf(why, sizeof(why), "%s (the broker refused its record)",
		 rd_kafka_err2str(r->refusal.err));
	memset(&r->refusal, 0, sizeof(r->refusal));
	return reject_row(r, source, rec, data, len, why, m);
}

/*
 * The records of one source row (an outbox record or its dead letter, a change with its
 * tombstone, a snapshot chunk) go into one Kafka transaction: nothing commits from group_begin
 * to group_end. A group left unfinished by an error keeps hold_commit set, so the session's end
 * aborts the open transaction instead of committing half a group.
 */
static void group_begin(relay *r) { r->hold_commit = true; }

/* Ends a group that went out whole; a source row is counted for split transactions. */
static stream_end group_end(relay *r, stream_end e, bool source_row)
{
	if (e != STREAM_CONTINUE)
		return e;
	r->hold_commit = false;
	if (source_row && r->eos_on)
		eos_row_done(&r->eos);
	if (source_row && r->backfilling)
		backfill_row_done(r->bf); /* before a commit: its checkpoint counts this row in */
	return maybe_commit(r, false);
}

/* Routes and produces a matched row or message; what fails goes to reject_row. */
static stream_end publish(relay *r, const route_source *src, const w2j_record *rec,
			  const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	rd_kafka_resp_err_t refused;
	stream_end e;

	metrics_rows_read(1);
	group_begin(r);
	if (r->eos_on && rec->action == W2J_INSERT && !r->backfilling)
		eos_outbox_row(&r->eos); /* its xid is listed for a lost slot's recovery */
	if (router_build(r->router, src, rec, &m, &why) < 0) {
		e = reject_row(r, router_source_name(src), rec, data, len, why, &m);
	} else if (refused_row(r)) {
		e = reject_refused(r, router_source_name(src), rec, data, len, &m);
	} else {
		e = produce(r, &m, false, &refused);
		if (refused)
			e = reject_row(r, router_source_name(src), rec, data, len,
				       rd_kafka_err2str(refused), &m);
	}
	return group_end(r, e, true);
}

/*
 * A non-transactional message has no transaction to keep its place in: it is dead-lettered (or
 * stops the relay), never published into another transaction's order. In exactly-once mode its
 * dead letter rides in the open Kafka transaction; it may be dead-lettered again after a crash.
 */
static stream_end publish_outside(relay *r, const route_source *src, const w2j_record *rec,
				  const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	uint64_t seq = r->txn_seq;
	int64_t commit_ms = r->txn_commit_ms;
	stream_end e;

	metrics_rows_read(1);
	router_build(r->router, src, rec, &m, &why);
	r->cur_row = NO_ROW;
	r->txn_seq = UINT64_MAX; /* no PostgreSQL transaction to account it to */
	r->txn_commit_ms = 0;    /* nor a commit time: its latency counts from now */
	e = reject_row(r, router_source_name(src), rec, data, len, why, &m);
	r->txn_seq = seq;
	r->txn_commit_ms = commit_ms;
	return e;
}

/* The normal connection for catalog reads and snapshots, (re)opened when needed; NULL if down. */
static PGconn *sql_conn(relay *r, char *err, size_t errlen)
{
	if (r->sql && PQstatus(r->sql) == CONNECTION_OK)
		return r->sql;
	PQfinish(r->sql);
	r->sql = pg_sql_connect(r->cfg->pg_conninfo, r->cfg->pg_password, "outbox-relay-capture", 10);
	/* Its queries block the main loop: a lock or a slow scan must not stop status updates. */
	if (PQstatus(r->sql) == CONNECTION_OK) {
		PGresult *res = PQexec(r->sql, "SET statement_timeout = '30s'; SET lock_timeout = '5s'");
		PQclear(res);
		return r->sql;
	}
	snprintf(err, errlen, "connecting for catalog reads and snapshots: %s", PQerrorMessage(r->sql));
	PQfinish(r->sql);
	r->sql = NULL;
	return NULL;
}

/* A delete's record, then (tombstone) the same key with a null value for compacted topics. */
static stream_end produce_then_tombstone(relay *r, route_msg *m, bool tombstone,
					 rd_kafka_resp_err_t *refused)
{
	stream_end e = produce(r, m, false, refused);
	if (e != STREAM_CONTINUE || *refused || !tombstone)
		return e;
	m->value = NULL;
	m->value_len = 0;
	return produce(r, m, false, refused);
}

/*
 * Why a key change cannot go out whole, or NULL. Its delete of the old key and its update are
 * checked before either is produced (text that is not UTF-8; a size librdkafka refuses), so the
 * change is published or dead-lettered as one unit: never the old key deleted without the update.
 */
static const char *key_change_unfit(relay *r, const route_msg *del, const route_msg *upd)
{
	if (router_utf8_valid_prefix(del->value, del->value_len) != del->value_len ||
	    router_utf8_valid_prefix(del->key, del->key_len) != del->key_len)
		return "invalid UTF-8 in the row (its text is not UTF-8)";
	if (!kafka_record_fits(r->kp, del))
		return "Broker: Message size too large (the delete of the old key of this key change; "
		       "nothing of the change was published)";
	if (!kafka_record_fits(r->kp, upd))
		return "Broker: Message size too large (the update of this key change; nothing of "
		       "the change was published)";
	return NULL;
}

/*
 * The records of a key change once checked: the delete (and tombstone) of the old key, then the
 * update under the new key. A refusal before any of them went out dead-letters the change
 * whole; one after that cannot be taken back, so it stops the relay before the open Kafka
 * transaction commits.
 */
static stream_end produce_key_change(relay *r, const capture_table *t, const w2j_record *rec,
				     route_msg *del, route_msg *upd, const char *data, size_t len)
{
	uint64_t out = r->records_out;
	rd_kafka_resp_err_t refused;
	stream_end e;

	if (r->snap)
		snapshot_saw_change(r->snap, t, rec->xid, del->key, del->key_len);
	e = produce_then_tombstone(r, del, t->cfg->tombstones, &refused);
	if (refused && r->records_out == out)
		return reject_row(r, t->name, rec, data, len, rd_kafka_err2str(refused), upd);
	if (e == STREAM_CONTINUE && !refused) {
		if (r->snap)
			snapshot_saw_change(r->snap, t, rec->xid, upd->key, upd->key_len);
		e = produce(r, upd, false, &refused);
	}
	if (refused) {
		log_error("Kafka refused a record of the key change of %s after part of it went out: "
			  "%s; stopping (the open Kafka transaction is not committed)", t->name,
			  rd_kafka_err2str(refused));
		return STREAM_FATAL;
	}
	return e;
}

/*
 * An update that changed the key (del: its delete of the old key, as built): checked whole,
 * then published, or dead-lettered whole. The delete is copied, since building the update
 * reuses capture's buffers.
 */
static stream_end publish_key_change(relay *r, const capture_table *t, const w2j_record *rec,
				     const route_msg *built, const char *data, size_t len)
{
	route_msg del = *built, upd;
	char *copy = xmalloc(built->key_len + built->value_len + 1);
	const char *why = NULL;
	stream_end e;

	memcpy(copy, built->key, built->key_len);
	memcpy(copy + built->key_len, built->value, built->value_len);
	del.key = copy;
	del.value = copy + built->key_len;
	if (capture_build(r->cap, t, rec, &upd, &why) == 0)
		why = key_change_unfit(r, &del, &upd);
	if (why)
		e = reject_row(r, t->name, rec, data, len, why, &upd);
	else
		e = produce_key_change(r, t, rec, &del, &upd, data, len);
	free(copy);
	return e;
}

/*
 * A change of a captured table: its envelope record, then (for a delete, when asked) a
 * tombstone, both in one Kafka transaction; a pending snapshot chunk learns of the key.
 */
static stream_end publish_change_records(relay *r, const capture_table *t, const w2j_record *rec,
					 const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	rd_kafka_resp_err_t refused;
	stream_end e;

	if (capture_build(r->cap, t, rec, &m, &why) < 0)
		return reject_row(r, t->name, rec, data, len, why, &m);
	if (r->snap && rec->action == W2J_TRUNCATE)
		snapshot_saw_truncate(r->snap, t, rec->xid);
	else if (r->snap && m.key)
		snapshot_saw_change(r->snap, t, rec->xid, m.key, m.key_len);
	e = produce_then_tombstone(r, &m, rec->action == W2J_DELETE && t->cfg->tombstones && m.key,
				   &refused);
	if (refused)
		return reject_row(r, t->name, rec, data, len, rd_kafka_err2str(refused), &m);
	return e;
}

/* A change, as one group: a key change (checked whole first), or the change's own records. */
static stream_end publish_change(relay *r, const capture_table *t, const w2j_record *rec,
				 const char *data, size_t len)
{
	route_msg del;
	stream_end e;

	metrics_rows_read(1);
	group_begin(r);
	if (refused_row(r)) {
		const char *why;
		capture_build(r->cap, t, rec, &del, &why); /* for its key */
		e = reject_refused(r, t->name, rec, data, len, &del);
	} else if (capture_build_key_change(r->cap, t, rec, &del)) {
		e = publish_key_change(r, t, rec, &del, data, len);
	} else {
		e = publish_change_records(r, t, rec, data, len);
	}
	return group_end(r, e, true);
}

/*
 * A change that does not fit its table's columns as read (ALTER TABLE since), or an update whose
 * unchanged TOASTed columns the entry read before it cannot tell (why says which): the catalog
 * entry is read again, so that added, dropped and renamed columns (and keys) are right from here on.
 */
static int refresh_table(relay *r, capture_table *t, const w2j_record *rec, const char *why,
			 log_level_t level)
{
	char err[1024], a[LSN_TEXT_MAX];
	PGconn *conn = sql_conn(r, err, sizeof(err));

	if (!conn || capture_refresh(conn, t, err, sizeof(err)) < 0) {
		log_warn("%s", err);
		return -1;
	}
	metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap)); /* a key lost? */
	log_msg(level, "capture: the change at %s %s %s as read: its catalog entry was read again "
		"(%d columns)", lsn_format(rec->lsn, a), why, t->name, t->n_cols);
	return 0;
}

/*
 * A change whose table name cannot be decoded (so not matched against the capture list): it
 * may be a captured table's, so it is dead-lettered (source: the name as wal2json wrote it),
 * never skipped.
 */
static stream_end reject_unnamed(relay *r, const w2j_record *rec, const char *data, size_t len,
				 const char *why)
{
	size_t n = rec->schema.len + rec->table.len + 2;
	char *source = xmalloc(n);
	route_msg m;
	stream_end e;

	snprintf(source, n, "%.*s.%.*s", (int)rec->schema.len, rec->schema.ptr, (int)rec->table.len,
		 rec->table.ptr);
	memset(&m, 0, sizeof(m));
	metrics_rows_read(1);
	group_begin(r);
	e = group_end(r, reject_row(r, source, rec, data, len, why, &m), true);
	free(source);
	return e;
}

/* An insert, update, delete or truncate that no outbox source took: change capture's, maybe. */
static stream_end handle_change(relay *r, const w2j_record *rec, const char *data, size_t len)
{
	capture_table *t;
	char err[1024];
	PGconn *conn;
	int found;

	if (!r->cap || !r->in_txn || r->skip_txn)
		return STREAM_CONTINUE;
	found = capture_lookup_record(r->cap, r->sql, rec, &t, err, sizeof(err));
	if (found == -2 && !(conn = sql_conn(r, err, sizeof(err)))) {
		log_warn("%s", err);
		return STREAM_REWIND;
	}
	if (found == -2) {
		found = capture_lookup_record(r->cap, conn, rec, &t, err, sizeof(err));
		metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap));
	}
	if (found < 0 && found != CAPTURE_BAD_NAME) {
		log_warn("%s", err);
		return STREAM_REWIND;
	}
	if (found == 0)
		return STREAM_CONTINUE;
	r->cur_row = r->txn_rows++; /* counted also when skipped just below: the same on replay */
	if (r->eos_on && !eos_pg_row(&r->eos))
		return STREAM_CONTINUE; /* Kafka has it: a committed part of a split transaction */
	if (found == CAPTURE_BAD_NAME)
		return reject_unnamed(r, rec, data, len, err);
	capture_read(r->cap, rec); /* once, for the checks and builds below */
	if (capture_stale(r->cap, t, rec, r->txn_end) &&
	    refresh_table(r, t, rec, "does not fit the columns of", LOG_LVL_INFO) < 0)
		return STREAM_REWIND;
	if (capture_toast_check(r->cap, t, rec, true) == CAPTURE_TOAST_READ_AGAIN) {
		/* Debug: while the relay keeps up, one per update leaving out a TOASTed value. */
		if (refresh_table(r, t, rec, "lacks columns (unchanged TOASTed values?) of",
				  LOG_LVL_DEBUG) < 0)
			return STREAM_REWIND;
		capture_toast_check(r->cap, t, rec, false);
	}
	return publish_change(r, t, rec, data, len);
}

/*
 * A message with this relay's snapshot prefix: a chunk's watermark (its rows go out now, in the
 * open Kafka transaction with the progress they make) or a request to snapshot tables.
 */
static stream_end handle_snapshot_message(relay *r, const w2j_record *rec)
{
	char *text;
	capture_table *t = NULL;
	snapshot_row row;
	route_msg m;
	rd_kafka_resp_err_t refused;
	stream_end e = STREAM_CONTINUE;
	long n;

	if (!r->in_txn || r->skip_txn || rec->content.kind != JSON_STRING)
		return STREAM_CONTINUE;
	if (!r->snap) {
		log_warn("ignoring a snapshot request: snapshots need relay.delivery = \"exactly-once\"");
		return STREAM_CONTINUE;
	}
	text = xmalloc(rec->content.len + 1);
	n = json_unescape(&rec->content, text);
	snapshot_msg kind = n < 0 ? SNAPSHOT_MSG_OTHER : snapshot_message(r->snap, text, (size_t)n, &t);
	free(text);
	if (kind != SNAPSHOT_MSG_CHUNK)
		return STREAM_CONTINUE;
	group_begin(r); /* the chunk's rows and its progress: one Kafka transaction */
	r->cur_row = NO_ROW; /* not source rows: never produced alone */
	while (e == STREAM_CONTINUE && snapshot_next_row(r->snap, &row)) {
		capture_build_snapshot(r->cap, t, row.key, row.key_len, row.row, row.row_len, rec->lsn,
				       &rec->timestamp, &m);
		metrics_rows_read(1);
		if (router_utf8_valid_prefix(m.value, m.value_len) != m.value_len ||
		    router_utf8_valid_prefix(m.key, m.key_len) != m.key_len) {
			/* Its dead letter carries the row as PostgreSQL printed it, at the watermark. */
			e = reject_row(r, t->name, rec, row.row, row.row_len,
				       "invalid UTF-8 in a snapshot row (its text is not UTF-8)", &m);
			continue;
		}
		e = produce(r, &m, false, &refused);
		if (refused) /* too large, ...: dead-lettered (or stops the relay) like a change */
			e = reject_row(r, t->name, rec, row.row, row.row_len, rd_kafka_err2str(refused), &m);
	}
	if (e != STREAM_CONTINUE)
		return e;
	snapshot_chunk_done(r->snap);
	log_info("snapshot: %s", snapshot_current(r->snap)[0] ? snapshot_current(r->snap) : "all done");
	return group_end(r, e, false);
}

/*
 * Reads the next snapshot chunk when one is wanted (between transactions, and not again right
 * after a failed attempt); a lost connection is retried later, not fatal.
 */
static void maybe_take_chunk(relay *r)
{
	char err[1024];
	PGconn *conn;
	int rc;

	if (!r->snap || r->in_txn || !snapshot_wants_chunk(r->snap) || clock_mono_ms() < r->next_chunk_ms)
		return;
	if (!(conn = sql_conn(r, err, sizeof(err)))) {
		log_warn("snapshot: %s", err);
		r->next_chunk_ms = clock_mono_ms() + 5000;
		return;
	}
	rc = snapshot_take_chunk(r->snap, conn, err, sizeof(err));
	if (rc < 0)
		log_warn("snapshot: %s; trying again in 5 s", err);
	if (rc <= 0 && snapshot_wants_chunk(r->snap))
		r->next_chunk_ms = clock_mono_ms() + (rc < 0 ? 5000 : 200);
}

/* A B record's commit time in us since 1970 (0 when absent or not PostgreSQL's form). */
static int64_t txn_commit_us(const w2j_record *rec)
{
	int64_t us;
	if (rec->timestamp.kind != JSON_STRING || rec->timestamp.escaped ||
	    !pgtime_parse_us(rec->timestamp.ptr, rec->timestamp.len, &us))
		return 0;
	return us;
}

/*
 * Slot-loss recovery assumes commit times run out of commit order by less than the window
 * (horizon.h): the largest disorder seen is a metric, and a warning past half the window.
 */
static void watch_disorder(relay *r)
{
	int64_t d = r->eos.hz.max_disorder_us;

	if (d <= r->disorder_told)
		return;
	r->disorder_told = d;
	metrics_set_commit_disorder(d);
	if (d * 2 > r->eos.hz.window_us)
		log_warn("commit times ran %lld ms out of commit order, over half of "
			 "relay.recovery_window_ms (%lld): a lost slot's recovery could miss rows; raise "
			 "it, or check the database server's clock", (long long)(d / 1000),
			 (long long)(r->eos.hz.window_us / 1000));
}

/*
 * A search for a refused record ends without one when the stream passes the transactions the
 * refused records belonged to, each of their records taken alone (the refusal did not repeat).
 */
static void end_refusal_search(relay *r, lsn_t nextlsn)
{
	broker_refusal *b = &r->refusal;

	if (!b->searching || b->txn_end != 0 || nextlsn <= b->seen_end || r->delivery_failed)
		return;
	log_info("the records refused for their size were all taken one at a time: records are "
		 "batched again");
	memset(b, 0, sizeof(*b));
}

/* One wal2json record: transaction bounds feed the tracker, outbox inserts become records. */
static stream_end handle_record(relay *r, const char *data, size_t len)
{
	w2j_record rec;
	const route_source *src;
	const char *why = NULL;
	int64_t commit_us;

	if (w2j_decode(data, len, &rec, &why) < 0) {
		log_error("malformed wal2json record (%s): %.*s", why, (int)(len > 200 ? 200 : len), data);
		return STREAM_FATAL;
	}
	switch (rec.action) {
	case W2J_BEGIN:
		end_refusal_search(r, rec.nextlsn);
		r->in_txn = true;
		r->txn_xid = rec.xid;
		r->txn_end = rec.nextlsn;
		r->txn_rows = 0;
		r->cur_row = NO_ROW;
		/* The commit time (include-timestamp), once per transaction: latency and lag. */
		commit_us = txn_commit_us(&rec);
		r->txn_commit_ms = commit_us / 1000;
		if (r->txn_commit_ms > 0)
			metrics_set_read_commit_time(r->txn_commit_ms);
		if (r->eos_on) {
			eos_pg_txn_info(&r->eos, rec.nextlsn, commit_us, (uint32_t)rec.xid);
			watch_disorder(r);
		}
		r->skip_txn = r->eos_on ? !eos_pg_begin(&r->eos, rec.nextlsn) : rec.nextlsn <= r->prog.acked;
		if (!r->skip_txn)
			r->txn_seq = progress_begin(&r->prog, rec.nextlsn);
		return STREAM_CONTINUE;
	case W2J_COMMIT:
		if (r->snap)
			snapshot_saw_commit(r->snap, r->txn_xid);
		if (r->in_txn && !r->skip_txn) {
			progress_commit(&r->prog, r->txn_seq);
			if (r->eos_on)
				eos_pg_commit(&r->eos);
		}
		r->in_txn = false;
		return maybe_commit(r, false);
	case W2J_INSERT:
	case W2J_MESSAGE:
		src = router_match(r->router, &rec);
		if (!src && rec.action == W2J_INSERT)
			return handle_change(r, &rec, data, len);
		if (!src && r->snap && rec.prefix.kind == JSON_STRING &&
		    json_key_is(&rec.prefix, snapshot_prefix(r->snap), strlen(snapshot_prefix(r->snap))))
			return handle_snapshot_message(r, &rec);
		if (!src)
			return STREAM_CONTINUE;
		if (rec.action == W2J_MESSAGE && !rec.transactional)
			return publish_outside(r, src, &rec, data, len);
		if (!r->in_txn || r->skip_txn)
			return STREAM_CONTINUE;
		r->cur_row = r->txn_rows++;
		if (r->eos_on && !eos_pg_row(&r->eos))
			return STREAM_CONTINUE; /* Kafka has it: a committed part of a split transaction */
		return publish(r, src, &rec, data, len);
	default:
		/* An outbox row deleted by the transaction that wrote it never stays in the table. */
		if (rec.action == W2J_DELETE && r->eos_on && router_is_source_table(r->router, &rec))
			horizon_outbox_delete(&r->eos.hz);
		/* Updates, deletes and truncates: of captured tables (an outbox's carry no events). */
		return handle_change(r, &rec, data, len);
	}
}

static stream_end handle_message(relay *r, const pg_msg *msg)
{
	if (msg->wal_end > r->received && msg->kind == 'k')
		r->received = msg->wal_end;
	if (msg->kind == 'w' && msg->wal_start > r->received)
		r->received = msg->wal_start;
	if (r->received > r->wal_end_seen) {
		r->wal_end_seen = r->received;
		metrics_set_wal_end(r->wal_end_seen);
	}
	if (msg->kind == 'w')
		return handle_record(r, msg->data, msg->len);
	/* A keepalive that asks for nothing is what the server sends before it waits for WAL: the
	 * relay has read all there is (for replication_lag_seconds). */
	if (!msg->reply_requested && !r->in_txn)
		metrics_set_caught_up();
	/* Keepalive: with nothing open or in flight, everything up to walEnd is safe. In
	 * exactly-once mode that position is committed to Kafka first (at most once per interval). */
	if (!r->in_txn && progress_idle(&r->prog)) {
		progress_skip_to(&r->prog, msg->wal_end);
		if (r->eos_on) {
			eos_idle_at(&r->eos, msg->wal_end);
			if (eos_idle_checkpoint_due(&r->eos)) {
				stream_end e = eos_to_stream(commit_kafka(r));
				if (e != STREAM_CONTINUE)
					return e;
			}
		}
	}
	if (msg->reply_requested && send_status(r, true) < 0)
		return STREAM_BROKEN;
	return STREAM_CONTINUE;
}

/*
 * SIGHUP: reads the file again and applies what can change while running (config_reload says
 * which); a file that does not load keeps the old settings.
 */
static void reload_config(relay *r)
{
	relay_config *fresh = config_load(r->cfg->path, stderr);
	log_level_t lvl;

	if (fresh && metrics_check_config(fresh, stderr) < 0) {
		config_free(fresh);
		fresh = NULL;
	}
	if (!fresh) {
		log_error("reload: %s has errors (above); keeping the running configuration", r->cfg->path);
		return;
	}
	config_load_credentials(fresh);
	config_reload((relay_config *)r->cfg, fresh);
	config_free(fresh);
	log_parse_level(r->cfg->log_level, &lvl);
	log_set_level(lvl);
	log_info("reloaded %s", r->cfg->path);
}

/*
 * Backpressure: once the records librdkafka holds reach relay.max_in_flight_bytes the stream is
 * not read (the server waits on TCP, and the slot stays where Kafka is); reading resumes when
 * delivery reports bring them down to three quarters of the limit. True while paused.
 */
static bool in_flight_full(relay *r)
{
	uint64_t limit = (uint64_t)r->cfg->max_in_flight_bytes;
	int64_t took;

	if (!r->paused && r->flight_bytes >= limit) {
		r->paused = true;
		r->pause_told = false;
		r->paused_ms = clock_mono_ms();
		log_debug("pausing the stream: %llu bytes in flight", (unsigned long long)r->flight_bytes);
	} else if (r->paused && r->flight_bytes <= limit - limit / 4) {
		r->paused = false;
		took = clock_mono_ms() - r->paused_ms;
		if (r->pause_told)
			log_info("reading the stream again after %lld ms paused", (long long)took);
	}
	return r->paused;
}

/*
 * While paused: serve delivery reports, status updates (so wal_sender_timeout does not end the
 * session) and a commit that falls due; say so once when the pause lasts.
 */
static stream_end wait_paused(relay *r)
{
	stream_end e;

	if (!r->pause_told && clock_mono_ms() - r->paused_ms >= 1000) {
		log_warn("stream paused: %llu bytes handed to Kafka are not acknowledged yet "
			 "(relay.max_in_flight_bytes = %d); Kafka is slow or down",
			 (unsigned long long)r->flight_bytes, r->cfg->max_in_flight_bytes);
		r->pause_told = true;
	}
	if ((e = maybe_commit(r, false)) != STREAM_CONTINUE)
		return e;
	if (wait_events(r, false, stop_requested ? r->stop_deadline : -1) < 0)
		return STREAM_BROKEN;
	return STREAM_CONTINUE;
}

/* A long backlog without outbox rows still moves the checkpoint (and frees WAL). */
static stream_end backlog_checkpoint(relay *r)
{
	if (r->eos_on && !r->in_txn && eos_idle_checkpoint_due(&r->eos) &&
	    r->eos.done_lsn > r->eos.committed.lsn)
		return eos_to_stream(commit_kafka(r));
	return STREAM_CONTINUE;
}

/*
 * Catching up, libpq's buffer ran dry: sleep GATHER_MS while the server's next records gather in
 * the socket, then serve Kafka and the status timer (as wait_events does) and read them in one go.
 */
static int gather_input(relay *r)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = GATHER_MS * 1000000L};

	notify_watchdog();
	if (ppoll(NULL, 0, &ts, &wait_mask) < 0 && errno != EINTR) {
		log_error("poll: %s", strerror(errno));
		return -1;
	}
	kafka_serve(r->kp);
	send_status(r, false); /* a failure marks pg_lost, which the stream loop acts on */
	return 0;
}

/* Streams until something ends the session. */
static stream_end stream(relay *r)
{
	for (;;) {
		pg_msg msg;
		int n = 0, records = 0, got = 0;
		stream_end e;
		char reason[512];

		if (should_stop(r))
			return STREAM_STOP;
		if (reload_requested) {
			reload_requested = 0;
			notify_reloading();
			reload_config(r);
			notify_ready();
		}
		if (r->pg_lost) {
			log_warn("replication connection lost: %s", pg_stream_error(r->pg));
			return STREAM_BROKEN;
		}
		if (r->delivery_failed)
			return error_is_permanent(r->delivery_err) &&
					       !(r->refusal.searching && error_is_the_records(r->delivery_err))
				       ? STREAM_FATAL
				       : STREAM_REWIND;
		if (kafka_fatal(r->kp, reason, sizeof(reason))) {
			log_error("Kafka producer failed: %s", reason);
			return STREAM_FATAL;
		}
		while (n < READ_BATCH && !in_flight_full(r) && (got = pg_stream_read(r->pg, &msg)) == 1) {
			n++;
			records += msg.kind == 'w';
			if ((e = handle_message(r, &msg)) != STREAM_CONTINUE)
				return e;
		}
		if (got < 0) {
			log_warn("replication connection lost: %s", pg_stream_error(r->pg));
			return STREAM_BROKEN;
		}
		if (r->paused) {
			if ((e = wait_paused(r)) != STREAM_CONTINUE)
				return e;
			continue;
		}
		/*
		 * Reading on without an idle pass (below) must not keep the open Kafka transaction
		 * open: only records commit it by its age (produce, a C record), and a server
		 * stopping sends nothing but keepalives, one per status update, until the slot is
		 * confirmed to its end: the open transaction is committed here when due.
		 */
		if (n == READ_BATCH) {
			/* More may be buffered in libpq: serve Kafka and timers, then read on. */
			kafka_serve(r->kp);
			notify_watchdog();
			if (send_status(r, false) < 0)
				return STREAM_BROKEN;
			if ((e = maybe_commit(r, false)) != STREAM_CONTINUE ||
			    (e = backlog_checkpoint(r)) != STREAM_CONTINUE)
				return e;
			maybe_take_chunk(r); /* a busy stream must not starve a snapshot */
			continue;
		}
		/*
		 * Records came, more are on their way: gather them (until a pass finds none).
		 * Keepalives alone are not records: a pass that read only keepalives is idle input.
		 * Counting them once kept a relay gathering forever while a stopping server answered
		 * each status update with a keepalive (txn_commit_ms, the last transaction's, stays
		 * old): the Kafka transaction was never committed, the slot never confirmed, and the
		 * server's fast stop waited for it until pg_ctl gave up.
		 */
		if (records > 0 && behind_by(r, GATHER_BEHIND_MS)) {
			if ((e = maybe_commit(r, false)) != STREAM_CONTINUE ||
			    (e = backlog_checkpoint(r)) != STREAM_CONTINUE)
				return e;
			if (gather_input(r) < 0)
				return STREAM_BROKEN;
			continue;
		}
		/* Input is idle: commit what is open; now and then store (and prove) the position. */
		if ((e = maybe_commit(r, true)) != STREAM_CONTINUE)
			return e;
		/* Snapshot progress without records (a table's end) is stored on its own. */
		if (r->snap && !r->in_txn && snapshot_dirty(r->snap) &&
		    (e = eos_to_stream(commit_kafka(r))) != STREAM_CONTINUE)
			return e;
		maybe_take_chunk(r);
		if (r->eos_on && !r->in_txn && eos_idle_checkpoint_due(&r->eos) &&
		    (e = eos_to_stream(commit_kafka(r))) != STREAM_CONTINUE)
			return e;
		if (wait_events(r, true, stop_requested ? r->stop_deadline : -1) < 0)
			return STREAM_BROKEN;
	}
}

/* Waits until Kafka has reported every record handed to it, or the deadline (-1: none). */
static bool drain(relay *r, int64_t deadline)
{
	while (r->prog.in_flight > 0) {
		if (deadline >= 0 && clock_mono_ms() >= deadline)
			return false;
		if (wait_events(r, false, deadline) < 0)
			return false;
		if (deadline < 0 && stop_requested)
			return false;
	}
	return true;
}

/*
 * Forgets what is not acknowledged (or committed) and closes the stream; the next session starts
 * right after the confirmed position, so what follows it is read and produced again.
 */
static void end_session(relay *r)
{
	progress_reset(&r->prog);
	r->in_txn = false;
	r->hold_commit = false;
	r->delivery_failed = false;
	r->delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	pg_stream_close(r->pg, r->pg_lost ? 0 : CLOSE_TIMEOUT_MS);
	r->pg = NULL;
	r->pg_lost = false;
}

/* The transactional.id: the file's, or one derived from the cluster and the slot. */
static void transactional_id(const relay *r, char *buf, size_t len)
{
	const char *set = config_kafka_get(r->cfg, "transactional.id");
	if (set)
		snprintf(buf, len, "%s", set);
	else
		snprintf(buf, len, "outbox-relay-%s-%s", pg_stream_sysid(r->pg), r->cfg->slot);
}

/* Creates the producer once; in exactly-once mode also fences older instances of this relay. */
static pg_result setup_kafka(relay *r, char *err, size_t errlen)
{
	char txn_id[512];

	if (r->kp)
		return PG_OK;
	transactional_id(r, txn_id, sizeof(txn_id));
	/* Hand-off: the producer calls on_delivery with r from kafka_serve, on this thread. */
	r->kp = kafka_producer_new(r->cfg, r->eos_on ? txn_id : NULL, on_delivery, r, err, errlen);
	if (!r->kp)
		return PG_FATAL;
	if (!r->eos_on)
		return PG_OK;
	eos_init(&r->eos, r->cfg, txn_id);
	log_info("exactly-once: transactional.id %s, checkpoints in %s", txn_id, r->cfg->checkpoint_topic);
	if (eos_start(&r->eos, r->kp, eos_init_tick, r) != EOS_OK) {
		snprintf(err, errlen, "Kafka transactions could not start (see above)");
		return PG_FATAL;
	}
	return PG_OK;
}

/* True when a source publishes logical messages (outbox.emit()): they leave no row to recover. */
static bool has_message_sources(const relay_config *cfg)
{
	for (int i = 0; i < cfg->n_sources; i++)
		if (!cfg->sources[i].table[0])
			return true;
	return false;
}

/* While a backfill query runs: Kafka events and the systemd watchdog keep being served. */
static void backfill_tick(void *ctx)
{
	relay *r = ctx;
	wait_events(r, false, clock_mono_ms());
}

/* One backfilled row, a wal2json insert record as the stream would carry it, published. */
static stream_end backfill_publish(relay *r, const char *text, size_t len)
{
	w2j_record rec;
	const char *why = NULL;
	const route_source *src;

	if (w2j_decode(text, len, &rec, &why) < 0 || !(src = router_match(r->router, &rec))) {
		log_error("backfill: a row did not read back as an outbox insert (%s): %.200s",
			  why ? why : "no source takes it", text);
		return STREAM_FATAL;
	}
	r->txn_commit_ms = txn_commit_us(&rec) / 1000;
	return publish(r, src, &rec, text, len);
}

/* After a failed backfill step: back to what Kafka committed, to be read again. */
static pg_result backfill_failed(relay *r, PGconn *conn, stream_end e)
{
	r->backfilling = false;
	if (r->eos.open || r->hold_commit)
		abort_kafka(r);
	r->hold_commit = false;
	backfill_rewind(r->bf, conn);
	return e == STREAM_FATAL ? PG_FATAL : PG_RETRY;
}

/*
 * The backfill read its last row: the rows still in the open Kafka transaction commit first
 * (no Kafka transaction stays open during the scans that follow), then a checkpoint with the
 * recovery fields covering the slot's snapshot marks it done. Until that commits, it is active.
 */
static pg_result end_backfill(relay *r, PGconn *conn, char *err, size_t errlen)
{
	checkpoint_recovery rec = {0};

	if (r->eos.open && commit_kafka(r) != EOS_OK) {
		snprintf(err, errlen, "the backfill's last rows could not be committed (see above)");
		return backfill_failed(r, conn, STREAM_REWIND);
	}
	if (backfill_finish(r->bf, conn, &r->lo, r->cfg->recovery_window_ms, &rec, err, errlen) < 0) {
		checkpoint_recovery_free(&rec);
		return backfill_failed(r, conn, STREAM_REWIND);
	}
	horizon_load(&r->eos.hz, &rec, r->eos.committed.lsn);
	checkpoint_recovery_free(&rec);
	backfill_done(r->bf);
	eos_set_backfill(&r->eos, backfill_state_json(r->bf));
	if (commit_kafka(r) != EOS_OK) {
		snprintf(err, errlen, "the backfill's last checkpoint could not be committed (see above)");
		backfill_rewind(r->bf, conn); /* active again, at its end: finished again next time */
		return PG_RETRY;
	}
	metrics_backfilled(backfill_rows(r->bf) - r->backfill_counted);
	log_info("backfill done: %llu events (%s)", (unsigned long long)backfill_rows(r->bf),
		 backfill_reason(r->bf));
	return PG_OK;
}


/*
 * Publishes the backfill's rows in Kafka transactions (each with its progress), then the
 * checkpoint that ends it. A stop commits what is open; the next start resumes after it.
 */
static pg_result run_backfill(relay *r, char *err, size_t errlen)
{
	PGconn *conn = sql_conn(r, err, errlen);
	const char *text;
	size_t len;
	int n;

	if (!conn)
		return PG_RETRY;
	PQclear(PQexec(conn, "SET statement_timeout = 0"));
	r->txn_seq = UINT64_MAX; /* not a streamed transaction: eos commits decide what is safe */
	r->txn_end = 0;
	r->cur_row = NO_ROW;    /* not searched for one at a time when the broker refuses a batch */
	r->backfilling = true;
	while ((n = backfill_next(r->bf, conn, &r->lo, &text, &len, err, errlen)) > 0) {
		stream_end e = backfill_publish(r, text, len);
		if (e == STREAM_CONTINUE && stop_requested)
			e = STREAM_STOP;
		if (e == STREAM_STOP && !r->hold_commit && commit_kafka(r) == EOS_OK) {
			r->backfilling = false;
			snprintf(err, errlen, "stopped during the backfill");
			return PG_RETRY;
		}
		if (e != STREAM_CONTINUE) {
			snprintf(err, errlen, "the backfill was interrupted; it resumes after the last "
				 "committed row");
			return backfill_failed(r, conn, e);
		}
	}
	r->backfilling = false;
	pg_result pr = n < 0 ? backfill_failed(r, conn, STREAM_REWIND) : end_backfill(r, conn, err, errlen);
	PQclear(PQexec(conn, "SET statement_timeout = '30s'"));
	return pr;
}

/* The newest checkpoint in Kafka: what it says, its recovery fields, and snapshot progress. */
typedef struct {
	checkpoint_result res;
	checkpoint cp;
	checkpoint_recovery rec;
} stored_checkpoint;

/* Reads the checkpoint (taking the snapshot progress along); PG_RETRY when Kafka did not answer. */
static pg_result read_checkpoint(relay *r, stored_checkpoint *sc, char *err, size_t errlen)
{
	checkpoint_extra x;

	sc->res = checkpoint_load_state(r->cfg, r->cfg->checkpoint_topic, r->eos.txn_id, false,
					&sc->cp, &x, err, errlen);
	if (sc->res == CHECKPOINT_ERROR)
		return PG_RETRY;
	sc->rec = x.rec; /* moved */
	memset(&x.rec, 0, sizeof(x.rec));
	if (x.state && r->snap && snapshot_load_state(r->snap, x.state, strlen(x.state)) < 0) {
		snprintf(err, errlen, "checkpoint topic %s holds a malformed snapshot state for %s: %.200s",
			 r->cfg->checkpoint_topic, r->eos.txn_id, x.state);
		checkpoint_extra_free(&x);
		return PG_FATAL;
	}
	if (x.state && r->snap && snapshot_current(r->snap)[0])
		log_info("snapshot progress from Kafka: resuming %s", snapshot_current(r->snap));
	checkpoint_extra_free(&x);
	return PG_OK;
}

/* The server's clock, us since 1970 (before a slot is created: see backfill.h). */
static pg_result server_clock_us(relay *r, int64_t *us, char *err, size_t errlen)
{
	PGconn *conn = sql_conn(r, err, errlen);
	if (!conn)
		return PG_RETRY;
	PGresult *res = PQexec(conn, "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8");
	pg_result pr = PQresultStatus(res) == PGRES_TUPLES_OK ? PG_OK : PG_RETRY;
	if (pr == PG_OK)
		*us = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		snprintf(err, errlen, "reading the server's clock: %s", PQerrorMessage(conn));
	PQclear(res);
	return pr;
}

/* Imports the snapshot the new slot exported: its pg_current_snapshot() text (malloc'd). */
static pg_result import_snapshot(relay *r, char **out, char *err, size_t errlen)
{
	PGconn *conn = sql_conn(r, err, errlen);
	char sql[256];
	pg_result pr = PG_RETRY;

	*out = NULL;
	if (!conn)
		return PG_RETRY;
	snprintf(sql, sizeof(sql), "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '%s'",
		 pg_stream_snapshot_name(r->pg));
	PGresult *res = PQexec(conn, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		res = PQexec(conn, "SELECT pg_current_snapshot()::text");
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			*out = xstrdup(PQgetvalue(res, 0, 0));
			pr = PG_OK;
		}
	}
	if (pr != PG_OK)
		snprintf(err, errlen, "importing the new slot's snapshot: %s", PQerrorMessage(conn));
	PQclear(res);
	PQclear(PQexec(conn, "COMMIT"));
	return pr;
}

/*
 * Creates the slot, exporting its snapshot when a backfill follows, and plans that backfill.
 * The checkpoint position becomes the slot's consistent point: what the slot streams comes
 * after it, what the backfill publishes before.
 */
static pg_result new_slot(relay *r, const char *reason, const checkpoint_recovery *lo, char *err,
			  size_t errlen)
{
	int64_t started_us = 0;
	char *snap = NULL;
	pg_result pr = server_clock_us(r, &started_us, err, errlen);
	/* Without a backfill, the slot's start bounds the commit times after it (horizon.h). */
	checkpoint_recovery at_start = {.commit_us = started_us,
					.window_ms = r->cfg->recovery_window_ms};

	if (pr == PG_OK)
		pr = pg_stream_create_slot(r->pg, r->cfg->slot, reason != NULL, err, errlen);
	if (pr == PG_OK && reason)
		pr = import_snapshot(r, &snap, err, errlen);
	if (pr != PG_OK)
		return pr;
	checkpoint cp = {.lsn = pg_stream_start_lsn(r->pg)};
	eos_resume(&r->eos, &cp);
	eos_resume_recovery(&r->eos, reason ? lo : &at_start);
	r->eos.creating = false;
	r->eos_loaded = true;
	if (reason) {
		backfill_plan(r->bf, reason, snap, cp.lsn, started_us);
		free(snap);
		r->backfill_counted = 0;
		checkpoint_recovery_free(&r->lo);
		if (lo) {
			r->lo = *lo;
			r->lo.xids = xmalloc((lo->n_xids + 1) * sizeof(uint32_t));
			memcpy(r->lo.xids, lo->xids, lo->n_xids * sizeof(uint32_t));
			r->lo.backfill = NULL;
		}
		log_info("backfill planned (%s): outbox rows committed before slot \"%s\" was created"
			 "%s", reason, r->cfg->slot, lo ? " and after the checkpoint" : "");
	}
	return PG_OK;
}

/*
 * First start: no checkpoint, no slot. With first_start = backfill, a checkpoint saying the slot
 * is being created goes first, so a crash before the backfill's first checkpoint is not taken
 * for an operator's "start from the slot" (no checkpoint, a slot) at the next start.
 */
static pg_result first_start(relay *r, char *err, size_t errlen)
{
	bool fill = strcmp(r->cfg->first_start, "backfill") == 0;

	if (!r->cfg->create_slot) {
		snprintf(err, errlen, "replication slot \"%s\" does not exist and postgresql.create_slot "
			 "is false: create it or allow the relay to", r->cfg->slot);
		return PG_FATAL;
	}
	/* Exactly-once: the checkpoint topic exists before the slot (see checkpoint.h). */
	if (checkpoint_create_topic(r->cfg, r->cfg->checkpoint_topic, err, errlen) < 0)
		return PG_RETRY;
	if (fill) {
		checkpoint none = {0};
		eos_resume(&r->eos, &none);
		r->eos.creating = true;
		if (commit_kafka(r) != EOS_OK) {
			snprintf(err, errlen, "could not write the first checkpoint to Kafka (see above)");
			return PG_RETRY;
		}
	} else {
		log_info("first start with relay.first_start = \"from-now\": outbox rows committed "
			 "before the slot is created are not published");
	}
	return new_slot(r, fill ? "first start" : NULL, NULL, err, errlen);
}

/* The one table source, or NULL when there are several or none. */
static const char *only_table_source(const relay_config *cfg)
{
	const char *t = NULL;
	for (int i = 0; i < cfg->n_sources; i++) {
		if (!cfg->sources[i].table[0])
			continue;
		if (t)
			return NULL;
		t = cfg->sources[i].table;
	}
	return t;
}

/*
 * A checkpoint inside a transaction published in parts names the transaction and how many of
 * its rows are in Kafka; the backfill leaves those out, in write order. Why it cannot (NULL: it
 * can); -1 when the table's shape cannot be read.
 */
static int split_refusal(relay *r, PGconn *conn, const stored_checkpoint *sc, const char **why,
			 char *err, size_t errlen)
{
	const char *name = only_table_source(r->cfg);
	outbox_table t;

	*why = NULL;
	if (sc->cp.partial_nextlsn == LSN_INVALID)
		return 0;
	if (!sc->cp.partial_xid)
		*why = "the checkpoint lies inside a transaction published in parts, written by an "
		       "older relay (no xid)";
	else if (!name || has_message_sources(r->cfg) || r->cfg->n_captures > 0)
		*why = "the checkpoint lies inside a transaction published in parts, and rows of more "
		       "than one outbox table, messages or captured tables count in it";
	else if (outbox_table_read(conn, name, &t, err, errlen) < 0)
		return -1;
	else if (!t.has_seq || !t.has_txid)
		*why = "the checkpoint lies inside a transaction published in parts, and the outbox "
		       "table has no seq and txid columns (SQL kit 1.2) telling its first rows";
	return 0;
}

/* The end of a refusal line: how to accept a loss. With the slot lost, the next start is a
 * first start, which would publish the whole table again: it must start from now. */
#define ACCEPT_LOSS "to start over from a new slot and accept the loss, delete the checkpoint and " \
		    "start once with relay.first_start = \"from-now\" (docs/exactly-once.md)"

/* What the recovery checks need from the server: commit timestamps, purges, unlisted rows. */
typedef struct {
	int cts;
	int64_t purged_us;
	int64_t unlisted;
	const char *split;
} recovery_facts;

/* Reads the recovery facts; PG_RETRY (err) when the server did not answer: never a refusal. */
static pg_result read_recovery_facts(relay *r, const stored_checkpoint *sc, recovery_facts *f,
				     char *err, size_t errlen)
{
	PGconn *conn = sql_conn(r, err, errlen);

	memset(f, 0, sizeof(*f));
	if (!conn || (f->cts = backfill_commit_ts_on(conn, err, errlen)) < 0)
		return PG_RETRY;
	if (f->cts == 0 || sc->rec.commit_us <= 0)
		return PG_OK;
	if (backfill_purged_through_us(r->cfg, conn, &f->purged_us, err, errlen) < 0 ||
	    backfill_unlisted_near(r->cfg, conn, &sc->rec, &f->unlisted, err, errlen) < 0 ||
	    split_refusal(r, conn, sc, &f->split, err, errlen) < 0)
		return PG_RETRY;
	return PG_OK;
}

/* Why a lost slot cannot be recovered exactly (NULL: it can), from the facts read. */
static const char *recovery_refusal(relay *r, const stored_checkpoint *sc, const recovery_facts *f,
				    char *buf, size_t len)
{
	if (sc->rec.backfill && strstr(sc->rec.backfill, "\"done\":false"))
		snprintf(buf, len, "the slot was lost again while a backfill was under way; %s",
			 ACCEPT_LOSS);
	else if (!f->cts)
		snprintf(buf, len, "track_commit_timestamp is off: the outbox rows committed after the "
			 "checkpoint cannot be told apart; turn it on (it needs a restart) before a slot "
			 "is lost, or %s", ACCEPT_LOSS);
	else if (sc->rec.commit_us <= 0)
		snprintf(buf, len, "the checkpoint records no commit time (written by an older relay or "
			 "before any transaction): the rows after it cannot be told apart; %s", ACCEPT_LOSS);
	else if (f->purged_us > sc->rec.commit_us - sc->rec.window_ms * 1000)
		snprintf(buf, len, "outbox.purge() deleted rows committed after the checkpoint "
			 "(outbox.purge_state); %s", ACCEPT_LOSS);
	else if (f->unlisted > 0)
		snprintf(buf, len, "%lld outbox rows committed near the checkpoint cannot be told apart "
			 "(written under a savepoint, or after it): the table has no txid column (SQL kit "
			 "1.2's); %s", (long long)f->unlisted, ACCEPT_LOSS);
	else if (f->split)
		snprintf(buf, len, "%s; %s", f->split, ACCEPT_LOSS);
	else if (sc->rec.deletes_in_txn)
		snprintf(buf, len, "outbox rows are deleted by the transactions that write them (they "
			 "never stay in the table); %s", ACCEPT_LOSS);
	else if (has_message_sources(r->cfg) && strcmp(r->cfg->slot_loss, "recover-rows") != 0)
		snprintf(buf, len, "events sent with outbox.emit() (message sources) leave no row and "
			 "those after the checkpoint would be lost; to publish the outbox rows and accept "
			 "that loss, set relay.slot_loss = \"recover-rows\"");
	else if (r->cfg->n_captures > 0 && strcmp(r->cfg->capture_on_slot_loss, "resnapshot") != 0)
		snprintf(buf, len, "the changes of captured tables after the checkpoint cannot be read "
			 "back; set relay.capture_on_slot_loss = \"resnapshot\" to publish those tables "
			 "again (op r), or %s", ACCEPT_LOSS);
	else
		return NULL;
	return buf;
}

/*
 * capture_on_slot_loss = resnapshot: every captured table is queued for a snapshot. Queued
 * before the backfill, the queue commits with its first checkpoint, so a crash keeps it.
 */
static pg_result resnapshot_all(relay *r, char *err, size_t errlen)
{
	capture_table **tables;
	int n;
	PGconn *conn = sql_conn(r, err, errlen);

	if (!conn)
		return PG_RETRY;
	if (capture_resolve_all(r->cap, conn, &tables, &n, err, errlen) < 0)
		return PQstatus(conn) == CONNECTION_OK ? PG_FATAL : PG_RETRY;
	snapshot_queue_again(r->snap, tables, n);
	return PG_OK;
}

/*
 * The slot is gone (dropped, failover, invalidated) or ahead of the checkpoint (recreated or
 * advanced by someone else): a new slot, and the outbox rows after the checkpoint from the table.
 */
static pg_result recover_slot(relay *r, slot_state st, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX], why[768];
	const char *what = st == SLOT_MISSING ? "does not exist (dropped, or lost in a failover)"
			   : st == SLOT_LOST  ? "was invalidated (its WAL was removed)"
					      : "is ahead of the checkpoint (recreated or advanced by someone else)";
	const char *refusal = "relay.slot_loss = \"stop\"";
	recovery_facts facts;

	if (strcmp(r->cfg->slot_loss, "stop") != 0) {
		if (read_recovery_facts(r, sc, &facts, err, errlen) != PG_OK)
			return PG_RETRY;
		refusal = recovery_refusal(r, sc, &facts, why, sizeof(why));
	}
	lsn_format(sc->cp.lsn, a);
	if (refusal) {
		snprintf(err, errlen, "slot \"%s\" %s, but this relay's checkpoint in Kafka is at %s: "
			 "events after it may never be published. Refusing to start: %s", r->cfg->slot,
			 what, a, refusal);
		return PG_FATAL;
	}
	log_warn("slot \"%s\" %s; checkpoint at %s: recovering the outbox rows committed after it "
		 "from the outbox table", r->cfg->slot, what, a);
	pg_result pr = st == SLOT_MISSING ? PG_OK : pg_stream_drop_slot(r->pg, r->cfg->slot, err, errlen);
	if (pr != PG_OK)
		return pr;
	if (r->snap && (pr = resnapshot_all(r, err, errlen)) != PG_OK)
		return pr;
	pr = new_slot(r, "slot lost", &sc->rec, err, errlen);
	if (pr == PG_OK && sc->cp.partial_nextlsn != LSN_INVALID)
		backfill_skip_first(r->bf, sc->cp.partial_xid, sc->cp.partial_rows);
	return pr;
}

/* Goes on from a stored checkpoint (and its unfinished backfill, if any). */
static pg_result resume_from(relay *r, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX];

	eos_resume(&r->eos, &sc->cp);
	eos_resume_recovery(&r->eos, &sc->rec);
	r->eos_loaded = true;
	if (sc->rec.backfill && backfill_load(r->bf, sc->rec.backfill) < 0) {
		snprintf(err, errlen, "checkpoint topic %s holds a malformed backfill state for %s",
			 r->cfg->checkpoint_topic, r->eos.txn_id);
		return PG_FATAL;
	}
	if (sc->rec.backfill)
		eos_set_backfill(&r->eos, xstrdup(sc->rec.backfill));
	if (backfill_active(r->bf)) {
		checkpoint_recovery_free(&r->lo);
		r->lo = sc->rec;
		memset(&sc->rec, 0, sizeof(sc->rec));
		free(r->lo.backfill);
		r->lo.backfill = NULL;
		r->backfill_counted = backfill_rows(r->bf);
		log_info("resuming the backfill (%s) after %llu rows", backfill_reason(r->bf),
			 (unsigned long long)backfill_rows(r->bf));
	}
	log_info("checkpoint in Kafka: %s%s", lsn_format(sc->cp.lsn, a),
		 sc->cp.partial_nextlsn ? " (inside a split transaction)" : "");
	return PG_OK;
}

/* No checkpoint but a slot: the operator's "start from the slot" (docs/exactly-once.md). */
static pg_result start_at_slot(relay *r)
{
	char a[LSN_TEXT_MAX];
	checkpoint cp = {.lsn = pg_stream_start_lsn(r->pg)};

	log_warn("no checkpoint for %s, but slot \"%s\" exists: starting at the slot's position %s; "
		 "outbox rows committed before it are not published", r->eos.txn_id, r->cfg->slot,
		 lsn_format(cp.lsn, a));
	eos_resume(&r->eos, &cp);
	eos_resume_recovery(&r->eos, NULL);
	r->eos_loaded = true;
	return PG_OK;
}

/* What the slot and the checkpoint say decides how this session starts (docs/exactly-once.md). */
static pg_result settle_slot(relay *r, slot_state st, stored_checkpoint *sc, char *err, size_t errlen)
{
	char a[LSN_TEXT_MAX], b[LSN_TEXT_MAX];
	bool found = sc->res == CHECKPOINT_FOUND;

	if (sc->res == CHECKPOINT_NO_TOPIC && st != SLOT_MISSING)
		return PG_FATAL; /* err says the topic was deleted */
	if (!found || sc->rec.creating) {
		if (st == SLOT_OK && !found)
			return start_at_slot(r);
		if (st == SLOT_LOST && !found) {
			snprintf(err, errlen, "replication slot \"%s\" was invalidated (its WAL was "
				 "removed) and this relay has no checkpoint: changes were lost to it; drop the "
				 "slot and start again from a new snapshot", r->cfg->slot);
			return PG_FATAL;
		}
		/* A slot made by a start that wrote only the "creating" checkpoint published nothing. */
		if (st != SLOT_MISSING && pg_stream_drop_slot(r->pg, r->cfg->slot, err, errlen) != PG_OK)
			return PG_RETRY;
		return first_start(r, err, errlen);
	}
	if (sc->cp.lsn > pg_stream_server_lsn(r->pg)) {
		snprintf(err, errlen, "this relay's checkpoint in Kafka (%s) is beyond the server's WAL "
			 "(%s): the server was restored or failed over to an older copy. Refusing to start "
			 "(see docs/exactly-once.md)", lsn_format(sc->cp.lsn, a),
			 lsn_format(pg_stream_server_lsn(r->pg), b));
		return PG_FATAL;
	}
	if (st == SLOT_OK && pg_stream_start_lsn(r->pg) <= sc->cp.lsn)
		return resume_from(r, sc, err, errlen);
	return recover_slot(r, st, sc, err, errlen);
}

/*
 * Exactly-once: the slot checked against the checkpoint. The checkpoint is read from Kafka at
 * the first session and whenever the slot is not where this process left it.
 */
static pg_result prepare_slot(relay *r, char *err, size_t errlen)
{
	slot_state st;
	stored_checkpoint sc = {0};
	pg_result pr = pg_stream_inspect_slot(r->pg, r->cfg->slot, &st, err, errlen);

	if (pr != PG_OK)
		return pr;
	if (r->eos_loaded && st == SLOT_OK && pg_stream_start_lsn(r->pg) <= r->eos.committed.lsn &&
	    r->eos.committed.lsn <= pg_stream_server_lsn(r->pg))
		return PG_OK;
	pr = read_checkpoint(r, &sc, err, errlen);
	if (pr == PG_OK)
		pr = settle_slot(r, st, &sc, err, errlen);
	checkpoint_recovery_free(&sc.rec);
	return pr;
}

static void list_append(char *list, size_t len, const char *item)
{
	if (list[0])
		strncat(list, ",", len - strlen(list) - 1);
	strncat(list, item, len - strlen(list) - 1);
}

/* wal2json's add-tables and add-msg-prefixes lists: the sources, captures and snapshot marks. */
static void wal2json_filters(const relay *r, char *tables, char *prefixes, size_t len)
{
	const relay_config *cfg = r->cfg;

	tables[0] = prefixes[0] = '\0';
	for (int i = 0; i < cfg->n_sources; i++) {
		const source_config *s = &cfg->sources[i];
		list_append(s->table[0] ? tables : prefixes, len, s->table[0] ? s->table : s->message_prefix);
	}
	for (int i = 0; i < cfg->n_captures; i++)
		list_append(tables, len, cfg->captures[i].tables);
	if (r->snap)
		list_append(prefixes, len, snapshot_prefix(r->snap));
}

/*
 * Change capture: the tables the patterns take now, each with a key (or refused, loudly); on
 * the first session, the snapshots of tables never snapshotted are queued.
 */
static pg_result setup_capture(relay *r, char *err, size_t errlen)
{
	capture_table **tables;
	int n;
	PGconn *conn;

	if (!r->cap)
		return PG_OK;
	if (!(conn = sql_conn(r, err, errlen)))
		return PG_RETRY;
	if (capture_resolve_all(r->cap, conn, &tables, &n, err, errlen) < 0)
		return PQstatus(conn) == CONNECTION_OK ? PG_FATAL : PG_RETRY;
	for (int i = 0; i < n; i++) {
		if (!tables[i]->refusal)
			continue;
		if (!capture_is_pattern(tables[i]->cfg)) {
			snprintf(err, errlen, "cannot capture table %s: %s", tables[i]->name,
				 tables[i]->refusal);
			return PG_FATAL;
		}
		/* One table a pattern takes must not keep the others from streaming. */
		log_warn("capture: cannot capture table %s (taken by the pattern %s): %s; its changes "
			 "go to the dead-letter topic while the other tables stream", tables[i]->name,
			 tables[i]->cfg->tables, tables[i]->refusal);
	}
	metrics_set_refused_tables((uint64_t)capture_refused_count(r->cap));
	if (n == 0)
		log_warn("capture: no table matches the capture list yet");
	/* Each session: a rewind may have dropped what was queued but never committed. */
	if (r->snap)
		snapshot_queue_initial(r->snap, tables, n);
	return PG_OK;
}

/* Connects, starts Kafka (once), and settles the slot (and the checkpoint, exactly-once). */
static pg_result connect_and_settle(relay *r, char *err, size_t errlen)
{
	pg_result res = pg_stream_connect(&r->pg, r->cfg->pg_conninfo, r->cfg->pg_password, err, errlen);

	if (res == PG_OK)
		res = setup_kafka(r, err, errlen);
	if (res == PG_OK && r->eos_on)
		res = prepare_slot(r, err, errlen);
	else if (res == PG_OK)
		res = pg_stream_check_slot(r->pg, r->cfg->slot, r->cfg->create_slot, NULL, NULL, err,
					   errlen);
	return res;
}

/* One attempt at a session: connect, settle the slot, backfill if due, start streaming. */
static pg_result open_session(relay *r, char *err, size_t errlen)
{
	pg_result res = connect_and_settle(r, err, errlen);

	while (res == PG_OK && backfill_active(r->bf)) {
		/* The replication connection waits for nothing during a backfill: closed, reopened. */
		pg_stream_close(r->pg, 0);
		r->pg = NULL;
		res = run_backfill(r, err, errlen);
		if (res == PG_OK)
			res = connect_and_settle(r, err, errlen);
	}
	if (res == PG_OK)
		res = setup_capture(r, err, errlen);
	if (res == PG_OK) {
		if (!r->eos_on && pg_stream_start_lsn(r->pg) > r->prog.acked)
			r->prog.acked = pg_stream_start_lsn(r->pg);
		char tables[4096], prefixes[4096];
		wal2json_filters(r, tables, prefixes, sizeof(tables));
		res = pg_stream_start(r->pg, r->cfg->slot, tables, prefixes, flush_lsn(r), err, errlen);
	}
	if (res != PG_OK) {
		pg_stream_close(r->pg, 0);
		r->pg = NULL;
	}
	return res;
}

/* Opens the replication stream; retries with backoff until it works, a stop, or a fatal error. */
static stream_end connect_stream(relay *r)
{
	int64_t backoff = BACKOFF_START_MS;
	char err[1024], a[LSN_TEXT_MAX];

	metrics_set_ready(false);
	if (r->streamed)
		metrics_reconnect(); /* the previous session ended (lost, or read again) */
	for (;;) {
		pg_result res = open_session(r, err, sizeof(err));
		if (res == PG_OK)
			break;
		if (stop_requested)
			return STREAM_STOP;
		if (res == PG_FATAL) {
			log_error("%s", err);
			return STREAM_FATAL;
		}
		log_warn("%s; retrying in %lld ms", err, (long long)backoff);
		notify_status("not streaming: %s; retrying in %lld ms", err, (long long)backoff);
		int64_t until = clock_mono_ms() + backoff;
		while (!stop_requested && clock_mono_ms() < until)
			wait_events(r, false, until);
		if (stop_requested)
			return STREAM_STOP;
		backoff = backoff * 2 > r->cfg->reconnect_max_backoff_ms ? r->cfg->reconnect_max_backoff_ms
									  : backoff * 2;
	}
	r->sent_flush = flush_lsn(r);
	r->last_status_ms = clock_mono_ms();
	if (pg_stream_server_lsn(r->pg) > r->wal_end_seen)
		r->wal_end_seen = pg_stream_server_lsn(r->pg);
	metrics_set_wal_end(r->wal_end_seen);
	metrics_set_confirmed(r->sent_flush);
	r->streamed = true;
	metrics_set_ready(true);
	log_info("streaming from slot \"%s\" after %s (%s)", r->cfg->slot, lsn_format(flush_lsn(r), a),
		 r->eos_on ? "exactly-once" : "at-least-once");
	notify_ready();
	notify_status("streaming from slot %s after %s", r->cfg->slot, a);
	return STREAM_CONTINUE;
}

/* SIGTERM: no more reading; bounded wait for acks (and the commit); the final position goes out. */
static void shut_down(relay *r)
{
	char a[LSN_TEXT_MAX];
	int64_t deadline;

	should_stop(r);
	notify_stopping();
	notify_status("stopping");
	deadline = r->stop_deadline;
	log_info("stopping: waiting up to %lld ms for Kafka to acknowledge %llu records",
		 (long long)(deadline - clock_mono_ms()), (unsigned long long)r->prog.in_flight);
	if (r->eos_on && r->eos.open && r->hold_commit) {
		/* Stopped inside a group of records that belong together: read it all again. */
		log_warn("stopped in the middle of a row's records: the open Kafka transaction is "
			 "aborted and read again at the next start");
		abort_kafka(r);
	} else if (r->eos_on && r->eos.open && commit_kafka(r) != EOS_OK) {
		log_warn("the last Kafka transaction was not committed; it will be read again");
	}
	if (!drain(r, deadline))
		log_warn("%llu records were not acknowledged in time; they will be read again at the "
			 "next start", (unsigned long long)r->prog.in_flight);
	if (r->pg && send_status(r, true) < 0)
		log_warn("could not send the final position: %s", pg_stream_error(r->pg));
	log_info("stopped; confirmed up to %s", lsn_format(flush_lsn(r), a));
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
	log_warn("reading again from the last confirmed position in %lld ms", (long long)wait);
	int64_t until = clock_mono_ms() + wait;
	while (!stop_requested && clock_mono_ms() < until)
		wait_events(r, false, until);
	return stop_requested ? -1 : 0;
}

/*
 * After a broken connection or a refusal: settle what is in flight, then read again from the
 * confirmed point. After a refusal, what is still queued will be produced again: drop it now.
 * In exactly-once mode a lost database connection still commits what was read (the checkpoint
 * says exactly how far it goes); a refusal aborts the Kafka transaction.
 */
static int settle_session(relay *r, stream_end e)
{
	if (e == STREAM_REWIND)
		kafka_purge(r->kp);
	if (!drain(r, -1) && stop_requested)
		return -1;
	if (r->eos_on && r->eos.open) {
		/* Half a group of records is never committed: abort and read it again. */
		/* Inside a PostgreSQL transaction it is read again whole: a checkpoint in the middle
		 * of one makes a lost slot's recovery depend on the write order (backfill.h). */
		eos_result res = e == STREAM_BROKEN && !r->hold_commit && !r->eos.in_pg_txn
					 ? commit_kafka(r)
					 : EOS_REPLAY;
		if (res == EOS_REPLAY && abort_kafka(r) == EOS_FATAL)
			return -2;
		if (res == EOS_FATAL)
			return -2;
	}
	if (r->eos_on) {
		eos_resume(&r->eos, &r->eos.committed);
		pending_drop(&r->pend);
	}
	if (r->snap)
		snapshot_rewind(r->snap); /* back to what Kafka committed; a pending chunk is read again */
	if (r->pg)
		send_status(r, true);
	end_session(r);
	return 0;
}

/* Runs sessions until stopped: each connects, streams, and on trouble settles and reconnects. */
static int run_sessions(relay *r)
{
	for (;;) {
		stream_end e = connect_stream(r);
		if (e == STREAM_CONTINUE)
			e = stream(r);
		metrics_set_ready(false);
		if (e == STREAM_STOP) {
			shut_down(r);
			return RELAY_EXIT_OK;
		}
		if (e == STREAM_FATAL) {
			/* Keep what Kafka did take: confirm it before leaving. */
			if (r->kp)
				drain(r, clock_mono_ms() + r->cfg->shutdown_timeout_ms);
			if (r->pg)
				send_status(r, true);
			return r->kp && kafka_fenced(r->kp) ? RELAY_EXIT_FENCED : RELAY_EXIT_FATAL;
		}
		int s = settle_session(r, e);
		if (s == -1 || (e == STREAM_REWIND && pause_before_rewind(r) < 0)) {
			shut_down(r);
			return RELAY_EXIT_OK;
		}
		if (s == -2)
			return r->kp && kafka_fenced(r->kp) ? RELAY_EXIT_FENCED : RELAY_EXIT_FATAL;
	}
}

int relay_run(const relay_config *cfg)
{
	relay r;
	char err[512];
	int code = RELAY_EXIT_FATAL;

	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.eos_on = cfg->exactly_once;
	r.cur_row = NO_ROW;
	setup_signals();
	progress_init(&r.prog, LSN_INVALID);
	if (r.eos_on) {
		r.bf = backfill_new(cfg);
		backfill_set_tick(r.bf, backfill_tick, &r); /* r outlives the backfill */
	}
	if (cfg->n_captures > 0) {
		r.cap = capture_new(cfg);
		if (r.eos_on)
			r.snap = snapshot_new(cfg, r.cap);
	}
	r.router = router_new(cfg, err, sizeof(err));
	if (!r.router) {
		log_error("%s: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	/* After setup_signals: the server's thread keeps our signals blocked, as librdkafka's do. */
	if (metrics_start(cfg->metrics_listen, err, sizeof(err)) < 0) {
		log_error("%s: relay.metrics_listen: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	code = run_sessions(&r);
cleanup:
	metrics_set_ready(false);
	metrics_stop();
	pg_stream_close(r.pg, CLOSE_TIMEOUT_MS);
	kafka_producer_free(r.kp); /* its last delivery reports still use r.flight */
	if (r.eos_on)
		eos_free(&r.eos);
	router_free(r.router);
	snapshot_free(r.snap);
	capture_free(r.cap);
	backfill_free(r.bf);
	checkpoint_recovery_free(&r.lo);
	PQfinish(r.sql);
	progress_free(&r.prog);
	flight_free(&r.flight);
	free(r.pend.runs);
	return code;
}
