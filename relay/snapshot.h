/* snapshot.h: publishes the existing rows of captured tables, in key-ordered chunks between watermarks. */
#ifndef RELAY_SNAPSHOT_H
#define RELAY_SNAPSHOT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture.h"
#include "config.h"
#include "snapshot_names.h"
#include "transform.h"

/*
 * How a chunk stays consistent with the stream (docs/change-capture.md): the relay reads a chunk
 * of rows in a REPEATABLE READ transaction and learns its snapshot (xmin, xmax, in-progress
 * xids); then it writes a watermark message. While the stream runs up to that watermark, every
 * change made by a transaction the chunk could not see is noted by key. At the watermark the
 * chunk's rows are published (op r), except those keys: the stream has published newer states
 * of them already. Rows the chunk saw were committed before the watermark, so each published
 * row is the key's state at the watermark's place in the stream.
 *
 * Progress (the tables done, the queue, the last key published) is a JSON state, stored in the
 * checkpoint topic in the same Kafka transaction as the chunk, so a crash resumes after the
 * last committed chunk.
 */
typedef struct snapshot snapshot;

/* One row of a chunk, as PostgreSQL printed it. */
typedef struct {
	const char *key, *row;
	size_t key_len, row_len;
} snapshot_row;

snapshot *snapshot_new(const relay_config *cfg, capture *cap);
void snapshot_free(snapshot *s);
/* The message prefix of this relay's watermarks and requests ("outbox-relay:<slot>"). */
const char *snapshot_prefix(const snapshot *s);
/*
 * With protect rules and the encryption key (transform_can_seal), the stored position's key
 * values (after) are sealed: they may be protected columns (docs/privacy.md). tf outlives s.
 */
void snapshot_protect(snapshot *s, transform *tf);
/* Takes a stored state (the checkpoint topic's); -1 when it is not one (or cannot be opened). */
int snapshot_load_state(snapshot *s, const char *json, size_t len);
/* The state as JSON (malloc'd), to store. */
char *snapshot_state_json(const snapshot *s);
/* Queues the tables whose entry asks for a snapshot and that were never snapshotted. */
void snapshot_queue_initial(snapshot *s, capture_table *const *tables, int n);
/* Queues every table given, snapshotted before or not (a lost slot: their changes in between
 * cannot be read back). */
void snapshot_queue_again(snapshot *s, capture_table *const *tables, int n);
/* True when the state changed since it was last stored. */
bool snapshot_dirty(const snapshot *s);
/*
 * The stored state was committed to Kafka: it is the one to come back to. Returns the rows
 * snapshot_next_row handed out since the last commit or rewind (now published, for metrics).
 */
uint64_t snapshot_committed(snapshot *s);
/* Kafka aborted: back to the committed state; a pending chunk is dropped (read again later). */
void snapshot_rewind(snapshot *s);
/* Tables queued, the one in progress included (0: no snapshot to do). */
int snapshot_tables_queued(const snapshot *s);
/* "public.users (1,024 rows so far)" style progress for logs and status; "" when idle. */
const char *snapshot_current(const snapshot *s);

/* True when a table is queued and no chunk is waiting for its watermark. */
bool snapshot_wants_chunk(const snapshot *s);
/*
 * Reads the next chunk of the current table and writes its watermark. 1: a chunk waits for its
 * watermark; 0: nothing to do now (retry soon); -1: it failed (err says why: the connection,
 * a missing SELECT privilege, ...).
 */
int snapshot_take_chunk(snapshot *s, PGconn *conn, char *err, size_t errlen);

/* The stream read the commit of transaction xid (kept for the check of the next chunk). */
void snapshot_saw_commit(snapshot *s, uint64_t xid);
/* The stream read a change of table t by transaction xid, with this key object. */
void snapshot_saw_change(snapshot *s, const capture_table *t, uint64_t xid, const char *key,
			 size_t key_len);
/* The stream read a truncate of table t by transaction xid. */
void snapshot_saw_truncate(snapshot *s, const capture_table *t, uint64_t xid);

/* What a message with the snapshot prefix was. */
typedef enum {
	SNAPSHOT_MSG_OTHER,   /* not for this process (an older chunk's watermark) */
	SNAPSHOT_MSG_CHUNK,   /* the pending chunk's watermark: publish its rows now */
	SNAPSHOT_MSG_REQUEST, /* a request to snapshot tables: queued */
} snapshot_msg;

/* Reads a message (its content as text); for CHUNK, *t is the chunk's table. */
snapshot_msg snapshot_message(snapshot *s, const char *content, size_t len, capture_table **t);
/* The next row of the chunk to publish (keys changed in the window are left out); false at end. */
bool snapshot_next_row(snapshot *s, snapshot_row *row);
/* The chunk is published: progress moves past it (the state becomes dirty). */
void snapshot_chunk_done(snapshot *s);

#endif
