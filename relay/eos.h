/* eos.h: exactly-once delivery: Kafka transactions that carry the PostgreSQL position with them. */
#ifndef RELAY_EOS_H
#define RELAY_EOS_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "config.h"
#include "eos_names.h"
#include "horizon.h"
#include "kafka.h"
#include "outcome.h"

/*
 * The state of the Kafka transaction being filled, and what the last committed one recorded.
 * Each Kafka transaction holds whole PostgreSQL transactions (or a counted part of one) plus a
 * checkpoint record saying how far they reach; only a committed checkpoint may be confirmed to
 * PostgreSQL, and on restart everything at or below it is skipped.
 */
typedef struct {
	const relay_config *cfg;
	kafka_producer *kp;
	char *txn_id;        /* transactional.id, also the checkpoint record's key */
	checkpoint committed; /* the newest checkpoint Kafka committed */
	bool open;           /* a Kafka transaction was begun */
	int64_t opened_ms;
	uint64_t records;    /* outbox records in the open Kafka transaction */
	lsn_t done_lsn;      /* end of the newest PostgreSQL transaction read completely */
	bool in_pg_txn;      /* between B and C of a transaction not skipped */
	lsn_t cur_nextlsn;   /* that transaction's end */
	uint64_t cur_rows;   /* its source rows in Kafka so far (eos_row_done) */
	uint32_t cur_xid;    /* its xid (eos_pg_txn_info) */
	uint32_t info_xid;   /* the xid eos_pg_txn_info gave for the next eos_pg_begin */
	uint64_t skip_rows;  /* of them, how many the committed checkpoint covers */
	int64_t last_commit_ms;
	int64_t commit_began_ms; /* when the last successful commit began (0: none yet) */
	double rate;         /* records per second of the recent commits (commit_policy_rate) */
	char *attached;      /* a state record for the next commit (snapshot progress), or NULL */
	horizon hz;          /* commit times and outbox xids the checkpoints record (recovery) */
	char *backfill;      /* the backfill state the checkpoints carry (JSON, owned), or NULL */
	bool creating;       /* the next checkpoint says the slot is about to be created */
	uint32_t tli;        /* the server's timeline this session reads: the checkpoints' */
	char *cur_counts;    /* the current transaction's record counts for the next commit (owned) */
	char *committed_counts; /* those the committed checkpoint's split transaction holds, or NULL */
	bool committed_counts_bad; /* that checkpoint held counts that were not valid */
	bool expired;        /* failed for good after its transaction outlived transaction.timeout.ms */
} eos;

/*
 * Steps return an outcome (outcome.h): OUTCOME_OK, OUTCOME_REWIND (read again; the open
 * transaction is aborted, or left for the session's end to abort) or OUTCOME_FATAL.
 */

/* Called between slices of a blocking Kafka call: keeps status updates flowing. -1 gives up. */
typedef int (*eos_tick_fn)(void *ctx);

void eos_init(eos *e, const relay_config *cfg, const char *txn_id);
void eos_free(eos *e);
/* init_transactions (fencing older instances), retried until done or tick gives up. */
outcome eos_start(eos *e, kafka_producer *kp, eos_tick_fn tick, void *ctx);
/* Sets the starting point: from a stored checkpoint, or (found false) from the slot's position. */
void eos_resume(eos *e, const checkpoint *cp);
/* The timeline of the server the session reads (set before anything is committed in it). */
void eos_set_timeline(eos *e, uint32_t tli);
/* Starts the recovery fields from a stored checkpoint's (after eos_resume with its position). */
void eos_resume_recovery(eos *e, const checkpoint_recovery *rec);
/*
 * The record counts (txctx_counts_json) of the transaction being read, kept by the next commit's
 * checkpoint when it falls inside that transaction (eos owns json; NULL: none).
 */
void eos_set_counts(eos *e, char *json);
/* The counts the committed checkpoint kept of the split transaction ending at nextlsn, or NULL. */
const char *eos_committed_counts(const eos *e, lsn_t nextlsn);
/* Whether that checkpoint had counts of it that were not valid (then the above is NULL). */
bool eos_committed_counts_bad(const eos *e, lsn_t nextlsn);
/* A transaction's B record: its commit time (us, 0: unknown) and xid, for the recovery fields. */
void eos_pg_txn_info(eos *e, lsn_t nextlsn, int64_t commit_us, uint32_t xid);
/* The transaction read last has an outbox row in Kafka's open transaction (recovery fields). */
void eos_outbox_row(eos *e);
/* The backfill state that the next checkpoints carry (eos owns json; NULL: none). */
void eos_set_backfill(eos *e, char *json);
/* A PostgreSQL transaction begins; false when the committed checkpoint covers it (skip it). */
bool eos_pg_begin(eos *e, lsn_t nextlsn);
/* One outbox row of the open PostgreSQL transaction: false when Kafka has it already. */
bool eos_pg_row(eos *e);
/* Makes sure a Kafka transaction is open before producing. */
outcome eos_ensure_open(eos *e, char *err, size_t errlen);
/* A record was produced in the open transaction. */
void eos_produced(eos *e);
/*
 * Every record of one source row (an outbox record or its dead letter; a change with its
 * tombstone) is in the open transaction: the row counts towards a split transaction's partial
 * count, which eos_pg_row skips on replay. Snapshot rows and checkpoints do not count.
 */
void eos_row_done(eos *e);
/* The open PostgreSQL transaction was read to its C record. */
void eos_pg_commit(eos *e);
/* With nothing open or in flight, the server's keepalive position is done too. */
void eos_idle_at(eos *e, lsn_t wal_end);
/* True when the open Kafka transaction should be committed now (size, age, or input idle). */
bool eos_commit_due(const eos *e, bool input_idle);
/* True when an idle checkpoint is due (once per status interval; it also detects fencing). */
bool eos_idle_checkpoint_due(const eos *e);
/* The checkpoint a commit now would store: all done transactions, and the rows read of the
 * current one (or, until it is reached again, the committed count of a split transaction), on
 * the session's timeline. */
checkpoint eos_pending(const eos *e);
/*
 * Adds a record to the next commit: value under the key "<transactional.id>.snapshot" of the
 * checkpoint topic, in the same Kafka transaction (eos owns value from here; it replaces an
 * earlier one not committed yet).
 */
void eos_attach_state(eos *e, char *value);
/* Produces the checkpoint and commits; OUTCOME_REWIND: not committed, read again. */
outcome eos_commit(eos *e, eos_tick_fn tick, void *ctx);
/* Aborts the open transaction (if any) and forgets the session's reading state. */
outcome eos_abort(eos *e, eos_tick_fn tick, void *ctx);
/*
 * True when the producer failed for good (fenced, or an invalid transaction state) while its
 * transaction had been open longer than transaction.timeout.ms: the broker's own abort of that
 * transaction bumped the epoch (Kafka unreachable meanwhile), not another relay. The relay then
 * starts over (session.h).
 */
bool eos_expired(eos *e);

#endif
