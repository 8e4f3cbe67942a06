/* backfill.h: publishes outbox rows the slot cannot deliver (first start, lost slot) from the tables. */
#ifndef RELAY_BACKFILL_H
#define RELAY_BACKFILL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "config.h"

/*
 * A new slot streams the transactions that commit after its consistent point; the snapshot it
 * exports sees exactly those that committed before (docs/exactly-once.md). A backfill publishes
 * the outbox rows that snapshot sees and, after a lost slot, that the checkpoint does not cover
 * (lower bound: commit time above the checkpoint's newest minus the window, xid not listed).
 *
 * The snapshot is kept as pg_current_snapshot() text, so the rows it saw are found again with
 * pg_visible_in_snapshot() after a crash, without the exported snapshot. Rows go out table by
 * table (the sources' order), each in commit-time order, then xid, command id and ctid (write
 * order within a transaction); progress (the last row's place in that order) rides in every
 * checkpoint, so a crash resumes after the last committed row.
 */
typedef struct backfill backfill;

backfill *backfill_new(const relay_config *cfg);
/* Called every 500 ms while a long query runs (a sort or scan of a big outbox table). */
typedef void (*backfill_tick_fn)(void *ctx);
void backfill_set_tick(backfill *b, backfill_tick_fn tick, void *ctx);
void backfill_free(backfill *b);
/*
 * Plans a backfill: reason ("first start", "slot lost"), the new slot's snapshot (text) and
 * consistent point, and the server's clock before the slot was made (us since 1970).
 */
void backfill_plan(backfill *b, const char *reason, const char *snapshot, lsn_t slot_lsn,
		   int64_t started_us);
/*
 * The checkpoint lies inside a transaction whose first rows are in Kafka: the backfill leaves
 * out the first `rows` rows of transaction xid, in write order (the SQL kit's seq column).
 */
void backfill_skip_first(backfill *b, uint32_t xid, uint64_t rows);

/* Takes a stored state (a checkpoint's "backfill"); -1 when it is not one. */
int backfill_load(backfill *b, const char *json);
/* True between planning and the end of the last table. */
bool backfill_active(const backfill *b);
/* The state as JSON (malloc'd): progress while active, a summary once done. */
char *backfill_state_json(const backfill *b);
/* The state was committed to Kafka / Kafka aborted (back to the committed state). */
void backfill_committed(backfill *b);
void backfill_rewind(backfill *b, PGconn *conn);
/*
 * The next row as a wal2json insert record (text valid until the next call): 1; 0 at the end
 * of the last table; -1 on an error (err says what). lo: the checkpoint's fields (commit_us 0:
 * no lower bound). The SQL connection's transaction holds the reading cursor between calls.
 */
int backfill_next(backfill *b, PGconn *conn, const checkpoint_recovery *lo, const char **record,
		  size_t *len, char *err, size_t errlen);
/* The row returned last is in the open Kafka transaction: progress moves past it. */
void backfill_row_done(backfill *b);
/*
 * At the end: the recovery fields of the checkpoint that covers the snapshot, from lo and the
 * rows the snapshot sees (newest commit time, xids of the last window). 0, or -1 with err. The
 * backfill stays active until backfill_done (once a checkpoint saying so is committed).
 */
int backfill_finish(backfill *b, PGconn *conn, const checkpoint_recovery *lo, int64_t window_ms,
		    checkpoint_recovery *out, char *err, size_t errlen);
/* The backfill is over: its state is a summary from here on. */
void backfill_done(backfill *b);
/* track_commit_timestamp now: 1 on, 0 off, -1 when it cannot be read (err). */
int backfill_commit_ts_on(PGconn *conn, char *err, size_t errlen);
/*
 * Rows of tables without the kit's txid column that committed inside the checkpoint's window
 * without being listed: written under a savepoint of a listed transaction (their xmin is the
 * savepoint's) or after the checkpoint, which cannot be told apart. 0, or -1 with err.
 */
int backfill_unlisted_near(const relay_config *cfg, PGconn *conn, const checkpoint_recovery *lo,
			   int64_t *rows, char *err, size_t errlen);
/*
 * The oldest commit time of a row in the outbox tables (us since 1970; 0: they are empty or
 * commit times are off), for status. 0, or -1 with err.
 */
int backfill_oldest_row_us(const relay_config *cfg, PGconn *conn, int64_t *oldest, char *err,
			   size_t errlen);
/*
 * The newest commit time among the rows outbox.purge() deleted from outbox.events (SQL kit
 * 1.2's outbox.purge_state; us since 1970, 0: none recorded, or no source reads outbox.events).
 * A lost slot is recovered only when it is older than the checkpoint's boundary. 0, or -1.
 */
int backfill_purged_through_us(const relay_config *cfg, PGconn *conn, int64_t *us, char *err,
			       size_t errlen);
uint64_t backfill_rows(const backfill *b);
const char *backfill_reason(const backfill *b);

#endif
