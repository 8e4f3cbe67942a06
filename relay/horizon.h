/* horizon.h: which outbox transactions a checkpoint covers, in commit-time terms (slot-loss recovery). */
#ifndef RELAY_HORIZON_H
#define RELAY_HORIZON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "lsn.h"

/*
 * The stream gives each transaction's commit time; a checkpoint at LSN L records the newest
 * commit time T it covers and the xids of the outbox transactions it covers that committed in
 * (T - window, T]. When the slot is lost, the outbox rows committed after L are the rows whose
 * commit time (track_commit_timestamp) is above T - window and whose xid is not listed, provided
 * commit times run out of commit order by less than the window. The largest disorder the stream
 * showed is kept, so the assumption is watched (metrics, a warning).
 *
 * The list may hold more covered xids than needed (never harmful: they have no rows to recover),
 * but never one that is not covered: entries are taken only up to the checkpoint's LSN.
 *
 * After a failover, the xids that end beyond the new timeline's fork are the phantoms
 * (timeline.h): so the list also records each xid's commit end, and xids_after, below which the
 * list may miss outbox transactions (the newest end of one that left the window).
 */
typedef struct {
	lsn_t nextlsn;
	int64_t commit_us;
	uint32_t xid;
	bool outbox;    /* wrote an outbox row */
	bool end_known; /* nextlsn is its end (not the loaded checkpoint's lsn, standing in) */
} horizon_txn;

typedef struct {
	int64_t window_us;
	/* Transactions read since the committed checkpoint, and the outbox ones it covers that are
	 * still in the window; a loaded checkpoint's xids come with its commit time as theirs. */
	horizon_txn *q;
	size_t n, cap;
	lsn_t committed_lsn;
	int64_t committed_us; /* the newest commit time the committed checkpoint covers */
	int64_t newest_us;       /* newest commit time read */
	int64_t max_disorder_us; /* most a commit time fell behind an earlier one in commit order */
	lsn_t xids_after;        /* every covered outbox transaction ending after it is listed */
	bool deletes_in_txn;     /* see checkpoint_recovery (sticky once seen) */
} horizon;

void horizon_init(horizon *h, int64_t window_ms);
void horizon_free(horizon *h);
/* Starts from a stored checkpoint's fields at lsn (what was read after it is forgotten). */
void horizon_load(horizon *h, const checkpoint_recovery *rec, lsn_t lsn);
/* A transaction was read (its B record): commit time (0: unknown) and xid. */
void horizon_txn_read(horizon *h, lsn_t nextlsn, int64_t commit_us, uint32_t xid);
/* The transaction read last wrote an outbox row that is going to Kafka. */
void horizon_outbox_row(horizon *h);
/* The transaction read last deleted an outbox row: when it wrote outbox rows too, its rows may
 * never stay in the table, and a lost slot cannot be recovered from it (sticky). */
void horizon_outbox_delete(horizon *h);
/* The recovery fields of a checkpoint at lsn (out's xids and ends malloc'd; backfill left
 * alone); ends only when every listed xid's end is known (not so for a loaded older checkpoint's
 * or a backfill's xids, until they leave the window). */
void horizon_fill(const horizon *h, lsn_t lsn, checkpoint_recovery *out);
/* A checkpoint with these fields at lsn was committed: older entries can go. */
void horizon_committed(horizon *h, const checkpoint_recovery *rec, lsn_t lsn);
/* Kafka aborted: what was read after the committed checkpoint will be read again. */
void horizon_rewind(horizon *h);

#endif
