/* loop.c: the event loop: waits on every wake-up source, reads the stream, commits when due. */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "dispatch.h"
#include "eos.h"
#include "gate.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "pg_stream.h"
#include "refusal.h"
#include "session.h"
#include "signals.h"
#include "snapshot.h"
#include "standby.h"
#include "status.h"
#include "txn.h"

/* Records read from libpq's buffer before timers and deliveries get a turn. */
#define READ_BATCH 1024

/*
 * Catching up (the transactions read committed at least GATHER_BEHIND_MS ago), the relay lets
 * the server's records gather for GATHER_MS before reading on, instead of waking for every few
 * of them: a wake-up costs as much CPU as several rows.
 */
#define GATHER_BEHIND_MS 200
#define GATHER_MS 1

/*
 * A stop request ends the stream at the next transaction boundary, so a clean stop leaves no
 * half-published transaction to be produced again at the next start; the shutdown timeout
 * bounds the wait for that boundary and for the acks together.
 */
bool loop_should_stop(relay *r)
{
	if (!signals_stop_requested())
		return false;
	if (r->stop_deadline == 0)
		r->stop_deadline = clock_mono_ms() + r->cfg->shutdown_timeout_ms;
	return !r->in_txn || clock_mono_ms() >= r->stop_deadline;
}

/*
 * The earlier of t and a timer's next time (a clock_mono_ms time), as ms from now. A time
 * already past is the caller's to act on between waits, not a reason to wake at once.
 */
static int64_t sooner(int64_t t, int64_t due, int64_t now)
{
	return due > now && due - now < t ? due - now : t;
}

/*
 * Milliseconds until the nearest wake-up besides I/O: the caller's deadline, the status update,
 * the systemd watchdog, a snapshot chunk's retry and the idle checkpoint.
 */
static int64_t wake_in(const relay *r, int64_t deadline)
{
	int64_t now = clock_mono_ms();
	int64_t t = r->pg && !r->pg_lost ? status_due_in(r) : 1000;
	int64_t wd = notify_watchdog_interval_ms();

	if (deadline >= 0 && deadline - now < t)
		t = deadline - now;
	if (wd > 0 && t > wd)
		t = wd;
	if (r->snap && !r->in_txn && snapshot_wants_chunk(r->snap))
		t = sooner(t, r->next_chunk_ms, now);
	if (r->eos_on && !r->eos.open && !r->eos.in_pg_txn)
		t = sooner(t, r->eos.last_commit_ms + r->cfg->status_interval_ms, now);
	return t < 0 ? 0 : t;
}

/*
 * Waits for the replication socket (when read_pg), Kafka events or the next timer, at most
 * until deadline (a clock_mono_ms time, or -1). Serves Kafka events and the status timer afterwards.
 */
int loop_wait(relay *r, bool read_pg, int64_t deadline)
{
	struct pollfd fds[2];
	nfds_t n = 0;
	int64_t timeout = wake_in(r, deadline);
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
	notify_watchdog();
	ts.tv_sec = timeout / 1000;
	ts.tv_nsec = (timeout % 1000) * 1000000;
	if (ppoll(fds, n, &ts, signals_wait_mask()) < 0 && errno != EINTR) {
		log_error("poll: %s", strerror(errno));
		return -1;
	}
	if (r->kp)
		kafka_serve(r->kp);
	status_send(r, false); /* a failure marks pg_lost, which the stream loop acts on */
	return 0;
}

/*
 * SIGHUP: reads the file again and applies what can change while running (config_reload says
 * which); a file that does not load keeps the old settings.
 */
static void reload_config(relay *r)
{
	relay_config *fresh = config_load(r->cfg->path, stderr);
	log_level_t lvl;

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

void loop_take_reload(relay *r)
{
	if (!signals_take_reload())
		return;
	notify_reloading();
	reload_config(r);
	notify_ready();
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
static outcome wait_paused(relay *r)
{
	outcome e;

	if (!r->pause_told && clock_mono_ms() - r->paused_ms >= 1000) {
		log_warn("stream paused: %llu bytes handed to Kafka are not acknowledged yet "
			 "(relay.max_in_flight_bytes = %d); Kafka is slow or down",
			 (unsigned long long)r->flight_bytes, r->cfg->max_in_flight_bytes);
		r->pause_told = true;
	}
	if ((e = txn_maybe_commit(r, false)) != OUTCOME_OK)
		return e;
	if (loop_wait(r, false, signals_stop_requested() ? r->stop_deadline : -1) < 0)
		return OUTCOME_RETRY;
	return OUTCOME_OK;
}

/* A long backlog without outbox rows still moves the checkpoint (and frees WAL). */
static outcome backlog_checkpoint(relay *r)
{
	if (r->eos_on && !r->in_txn && eos_idle_checkpoint_due(&r->eos) &&
	    r->eos.done_lsn > r->eos.committed.lsn && gate_idle_checkpoint_ok(r))
		return txn_commit(r);
	return OUTCOME_OK;
}

/*
 * Catching up, libpq's buffer ran dry: sleep GATHER_MS while the server's next records gather in
 * the socket, then serve Kafka and the status timer (as loop_wait does) and read them in one go.
 */
static int gather_input(relay *r)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = GATHER_MS * 1000000L};

	notify_watchdog();
	if (ppoll(NULL, 0, &ts, signals_wait_mask()) < 0 && errno != EINTR) {
		log_error("poll: %s", strerror(errno));
		return -1;
	}
	kafka_serve(r->kp);
	status_send(r, false); /* a failure marks pg_lost, which the stream loop acts on */
	return 0;
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
	if (!(conn = session_sql(r, err, sizeof(err)))) {
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

/* What ends the session before the next read: a stop, a lost server or lock, a refusal, a fatal producer. */
static outcome check_session(relay *r)
{
	char reason[512];

	if (loop_should_stop(r))
		return OUTCOME_STOP;
	loop_take_reload(r);
	if (r->pg_lost) {
		log_warn("replication connection lost: %s", pg_stream_error(r->pg));
		return OUTCOME_RETRY;
	}
	if (r->cfg->takeover_wait && !standby_lock_alive(r)) {
		log_warn("the connection holding the active/passive lock of slot \"%s\" was lost: %s",
			 r->cfg->slot, PQerrorMessage(r->lock_conn));
		return OUTCOME_RETRY;
	}
	if (r->delivery_failed)
		return refusal_delivery_fatal(&r->refusal, r->delivery_err) ? OUTCOME_FATAL : OUTCOME_REWIND;
	if (kafka_fatal(r->kp, reason, sizeof(reason))) {
		log_error("Kafka producer failed: %s", reason);
		return OUTCOME_FATAL;
	}
	return OUTCOME_OK;
}

/*
 * Reads what libpq has (up to READ_BATCH messages, fewer while paused): *n messages, *records of
 * them wal2json records (keepalives are not), each dispatched.
 */
static outcome read_batch(relay *r, int *n, int *records)
{
	pg_msg msg;
	int got = 0;
	outcome e;

	*n = *records = 0;
	while (*n < READ_BATCH && !in_flight_full(r) && (got = pg_stream_read(r->pg, &msg)) == 1) {
		(*n)++;
		*records += msg.kind == 'w';
		if ((e = dispatch_message(r, &msg)) != OUTCOME_OK)
			return e;
	}
	if (got < 0) {
		log_warn("replication connection lost: %s", pg_stream_error(r->pg));
		return OUTCOME_RETRY;
	}
	return OUTCOME_OK;
}

/*
 * A full batch: more may be buffered in libpq. Kafka and the timers are served and a commit
 * that fell due goes out before reading on: a server stopping sends nothing but keepalives,
 * one per status update, until the slot is confirmed to its end.
 */
static outcome after_full_batch(relay *r)
{
	outcome e;

	kafka_serve(r->kp);
	notify_watchdog();
	if (status_send(r, false) < 0)
		return OUTCOME_RETRY;
	if ((e = txn_maybe_commit(r, false)) != OUTCOME_OK ||
	    (e = backlog_checkpoint(r)) != OUTCOME_OK)
		return e;
	maybe_take_chunk(r); /* a busy stream must not starve a snapshot */
	return OUTCOME_OK;
}

/*
 * Records came while catching up, more are on their way: gather them. Keepalives alone are not
 * records (a pass that read only keepalives is idle input): counting them kept a relay
 * gathering forever while a stopping server answered each status update with a keepalive.
 */
static outcome after_catching_up(relay *r)
{
	outcome e;

	if ((e = txn_maybe_commit(r, false)) != OUTCOME_OK ||
	    (e = backlog_checkpoint(r)) != OUTCOME_OK)
		return e;
	return gather_input(r) < 0 ? OUTCOME_RETRY : OUTCOME_OK;
}

/*
 * Input is idle: commit what is open, store snapshot progress, move past idle WAL and (now and
 * then) store the position, take a snapshot chunk, then wait for the nearest wake-up.
 */
static outcome when_idle(relay *r)
{
	outcome e;

	if ((e = txn_maybe_commit(r, true)) != OUTCOME_OK)
		return e;
	/* Snapshot progress without records (a table's end) is stored on its own. */
	if (r->snap && !r->in_txn && snapshot_dirty(r->snap) &&
	    (e = txn_commit(r)) != OUTCOME_OK)
		return e;
	maybe_take_chunk(r);
	dispatch_skip_idle(r); /* the last acks may have come after the server's last keepalive */
	if (r->eos_on && !r->in_txn && eos_idle_checkpoint_due(&r->eos) &&
	    gate_idle_checkpoint_ok(r) && (e = txn_commit(r)) != OUTCOME_OK)
		return e;
	if (loop_wait(r, true, signals_stop_requested() ? r->stop_deadline : -1) < 0)
		return OUTCOME_RETRY;
	return OUTCOME_OK;
}

/*
 * Between Kafka transactions at a low rate: rows gather unread (in the socket) for ms, while
 * Kafka, status updates and signals are served; the next transaction takes them all at once.
 */
static outcome gather_rows(relay *r, int64_t ms)
{
	return loop_wait(r, false, clock_mono_ms() + ms) < 0 ? OUTCOME_RETRY : OUTCOME_OK;
}

/* Streams until something ends the session (receivelog.c's HandleCopyStream, in named steps). */
outcome loop_stream(relay *r)
{
	outcome e = OUTCOME_OK;

	while (e == OUTCOME_OK) {
		int n, records;
		int64_t gather;

		if ((e = check_session(r)) != OUTCOME_OK)
			break;
		if ((gather = txn_gather_ms(r)) > 0) {
			e = gather_rows(r, gather);
			continue;
		}
		if ((e = read_batch(r, &n, &records)) != OUTCOME_OK)
			break;
		if (r->paused)
			e = wait_paused(r);
		else if (n == READ_BATCH)
			e = after_full_batch(r);
		else if (records > 0 && txn_behind_by(r, GATHER_BEHIND_MS))
			e = after_catching_up(r);
		else
			e = when_idle(r);
	}
	return e;
}

/* Waits until Kafka has reported every record handed to it, or the deadline (-1: none). */
bool loop_drain(relay *r, int64_t deadline)
{
	while (r->prog.in_flight > 0) {
		if (deadline >= 0 && clock_mono_ms() >= deadline)
			return false;
		if (loop_wait(r, false, deadline) < 0)
			return false;
		if (deadline < 0 && signals_stop_requested())
			return false;
	}
	return true;
}
