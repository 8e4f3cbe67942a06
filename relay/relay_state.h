/* relay_state.h: the running relay's state, shared by the loop's modules (one struct, by part). */
#ifndef RELAY_RELAY_STATE_H
#define RELAY_RELAY_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "backfill.h"
#include "capture.h"
#include "checkpoint.h"
#include "config.h"
#include "eos.h"
#include "inflight.h"
#include "kafka.h"
#include "outcome.h"
#include "pending.h"
#include "pg_stream.h"
#include "pipeline.h"
#include "progress.h"
#include "refusal.h"
#include "route.h"
#include "snapshot.h"
#include "standby_gate.h"
#include "txctx.h"


/*
 * The relay: its parts (owned, built and freed by relay_run), then the state of each concern.
 * The module named in a group's comment owns it; others set some of its fields where a step
 * crosses modules (a backfill or a message outside a transaction sets the transaction fields,
 * the session's end resets them).
 */
typedef struct {
	/* parts */
	const relay_config *cfg;
	router *router;
	pipeline *pipe;         /* transform and encode (their state: schemas, the registry client) */
	kafka_producer *kp;
	pg_stream *pg;          /* the replication connection of the session, or NULL */
	PGconn *sql;            /* normal connection: catalog reads and snapshot chunks (session.c) */
	capture *cap;           /* change capture of existing tables, or NULL */
	snapshot *snap;         /* their snapshots (exactly-once only), or NULL */
	backfill *bf;           /* outbox rows a new slot cannot deliver (exactly-once only) */
	standby_gate *gate;     /* publishing held back until standbys flushed (exactly-once only) */
	int64_t gate_idle_asked_ms; /* when an idle checkpoint last asked it (gate.c) */

	/* the PostgreSQL transaction being read (dispatch.c) */
	bool in_txn;            /* between a B and its C */
	lsn_t txn_end;          /* the open transaction's commit record end (its B record's nextlsn) */
	bool skip_txn;          /* the open transaction was confirmed already */
	uint64_t txn_seq;       /* its progress sequence */
	uint64_t txn_xid;
	int64_t txn_commit_ms;  /* its commit time (0: unknown) */
	uint64_t txn_rows;      /* source rows of the open transaction read so far */
	uint64_t cur_row;       /* the ordinal of the source row being published, or NO_ROW */
	progress prog;          /* what is produced and acknowledged, by transaction */
	txctx tx;               /* its context: the headers, the counts for its END record (publish.c) */

	/* Kafka transactions (txn.c, exactly-once) */
	bool eos_on;
	eos eos;
	bool eos_loaded;        /* the checkpoint was read from Kafka (slot_start.c) */
	bool hold_commit;       /* a group of records that must share one Kafka transaction is going
				 * out (set while unfinished: then the open transaction is aborted) */
	eos_pending_metrics pend;

	/* records in flight and their delivery reports (publish.c) */
	in_flight_table flight;
	uint64_t flight_bytes;  /* held by the records librdkafka has not reported yet */
	bool delivery_failed;
	rd_kafka_resp_err_t delivery_err;
	uint64_t records_out;
	broker_refusal refusal;
	bool alone_waiting;     /* a record produced alone has no delivery report yet */

	/* backpressure (loop.c) */
	bool paused;            /* not reading the stream: flight_bytes reached the limit */
	bool pause_told;        /* the pause was logged (it lasted) */
	int64_t paused_ms;      /* when the pause began */
	int64_t next_chunk_ms;  /* no snapshot chunk before this time (after a failed attempt) */

	/* the server's side: positions and status updates (status.c) */
	lsn_t received;         /* newest WAL position seen on the stream */
	lsn_t idle_end;         /* walEnd of the last keepalive between transactions that no record
				 * followed (0: a record came since): safe once nothing is in flight */
	lsn_t sent_flush;       /* flush position last sent to the server */
	lsn_t wal_end_seen;     /* newest server WAL position known (for replication_lag_bytes) */
	int64_t last_status_ms;
	int64_t last_notify_ms; /* last STATUS= line to systemd */
	int64_t last_lag_check_ms;
	bool pg_lost;           /* sending to the server failed: the session must end */

	/* session life (session.c, slot_start.c, backfill_run.c) */
	unsigned rewinds;       /* refusals in a row, for the backoff; reset by an ack */
	int64_t stop_deadline;  /* set at the first look at a stop request */
	bool streamed;          /* a session was streaming before: the next one is a reconnect */
	checkpoint_recovery lo; /* what the checkpoint covered when the running backfill began */
	bool backfilling;       /* the rows being published come from the backfill */
	uint64_t backfill_counted; /* backfill rows counted in the metrics (committed) */
	int64_t disorder_told;  /* commit-time disorder last reported (us) */

	/* active/passive, relay.takeover = "wait" (standby.c; session.c acts on lock_lost) */
	PGconn *lock_conn;      /* holds the active/passive lock while this relay is active */
	bool lock_lost;         /* another relay holds the lock now: stand by */
	int64_t lock_checked_ms; /* the lock's connection was last looked at */
	int64_t lock_taken_ms;  /* when standing by ended with the lock taken */
	int64_t standby_since_ms; /* when standing by began */
	bool standby_saw_holder; /* another relay was seen active while this one stood by */
} relay;

#endif
