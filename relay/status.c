/* status.c: the flush position told to the server (and systemd), and the lag warning. */
#include "status.h"

#include "clock.h"
#include "eos.h"
#include "log.h"
#include "lsn.h"
#include "metrics.h"
#include "notify.h"
#include "pg_stream.h"

/* After the flush position moves, tell the server within this many ms (not on every ack). */
#define STATUS_MIN_GAP_MS 100

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
lsn_t status_flush_lsn(const relay *r)
{
	return r->eos_on ? r->eos.committed.lsn : r->prog.acked;
}

/* The flush position is only ever what Kafka committed or acknowledged (status_flush_lsn). */
int status_send(relay *r, bool force)
{
	int64_t now = clock_mono_ms();
	lsn_t flush = status_flush_lsn(r);
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
int64_t status_due_in(const relay *r)
{
	int64_t gap = status_flush_lsn(r) > r->sent_flush ? STATUS_MIN_GAP_MS : r->cfg->status_interval_ms;
	int64_t left = r->last_status_ms + gap - clock_mono_ms();
	return left < 0 ? 0 : left;
}
