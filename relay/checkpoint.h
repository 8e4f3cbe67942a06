/* checkpoint.h: the relay's PostgreSQL position stored in Kafka, written in each Kafka transaction. */
#ifndef RELAY_CHECKPOINT_H
#define RELAY_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "lsn.h"

/*
 * Everything up to and including the PostgreSQL transaction that ends at lsn is in Kafka. When a
 * large transaction was split across Kafka transactions, partial_nextlsn names it (by the end of
 * its commit record) and partial_rows says how many of its outbox rows are in Kafka already.
 * tli is the server's timeline the position was read on: after a failover, the new timeline's
 * history says whether the position lies beyond the fork (slot_start.c, timeline.h).
 */
typedef struct {
	lsn_t lsn;
	lsn_t partial_nextlsn; /* 0: no transaction is partly published */
	uint64_t partial_rows;
	uint32_t partial_xid;  /* its xid (0: not recorded, by an older relay) */
	uint32_t tli;          /* timeline (0: not recorded, by an older relay) */
} checkpoint;

/*
 * What recovering from a lost slot needs (docs/exactly-once.md, "The life of a deployment"):
 * which outbox rows the checkpoint covers, told from the outbox table alone by commit times.
 * Every transaction after the checkpoint committed later than commit_us - window_ms (commit
 * times run out of commit order by less than the window); the outbox transactions covered
 * that committed within that last stretch are listed by xid. A backfill under way (the rows
 * committed before a new slot, being published) is kept as its own JSON state.
 */
typedef struct {
	int64_t commit_us;  /* newest commit time covered, us since 1970-01-01 (0: not recorded) */
	int64_t window_ms;
	uint32_t *xids;     /* covered outbox transactions that committed in the last window */
	size_t n_xids;
	/*
	 * For telling which of them a failover's fork left out (timeline.h): ends[i] is where the
	 * commit record of xids[i] ends, ascending (NULL: not recorded, by an older relay or while
	 * some are unknown); every covered outbox transaction that ends after xids_after is listed
	 * (0: not recorded). Stored as "ends", each the distance to the next one's end (the last
	 * one's to lsn): a few bytes each.
	 */
	lsn_t *ends;
	lsn_t xids_after;
	char *backfill;     /* JSON object of an unfinished backfill (malloc'd), or NULL */
	bool creating;      /* written before the slot is created: nothing of it published yet */
	bool deletes_in_txn; /* outbox rows were deleted by the transaction writing them (sticky) */
	/* The split transaction's records in Kafka so far, in all and per topic (txctx.h's JSON
	 * object, malloc'd), or NULL: the transaction context goes on counting from them. */
	char *txn_counts;
	bool txn_counts_bad; /* the checkpoint had counts that are not valid (txctx_counts_valid) */
} checkpoint_recovery;

void checkpoint_recovery_free(checkpoint_recovery *rec);

/*
 * JSON text of a checkpoint record (malloc'd), e.g. {"version":1,"slot":"s","lsn":"0/16B3748"};
 * NULL when slot is not UTF-8 (no JSON string can hold it).
 */
char *checkpoint_encode(const checkpoint *cp, const char *slot);
/* The same with the recovery fields (rec may be NULL). */
char *checkpoint_encode_with(const checkpoint *cp, const checkpoint_recovery *rec, const char *slot);
/* Parses a checkpoint record; -1 when it is not one. */
int checkpoint_decode(const char *text, size_t len, checkpoint *cp);
/* The same, filling rec too (freed and zeroed first; absent fields stay zero). */
int checkpoint_decode_with(const char *text, size_t len, checkpoint *cp, checkpoint_recovery *rec);

/* What is read besides the position: the recovery fields and the snapshot progress record. */
typedef struct {
	checkpoint_recovery rec;
	char *state; /* newest "<key>.snapshot" record (malloc'd), or NULL */
	/* Empty, or what kept the read from its end when checkpoint_read_opts.partial_ok let it
	 * stop there: "an open transaction at offset N of partition P". */
	char incomplete[128];
} checkpoint_extra;

void checkpoint_extra_free(checkpoint_extra *x);

/* Outcome of loading: found, none stored for this key, or an error (err says what). */
typedef enum {
	CHECKPOINT_FOUND,
	CHECKPOINT_NONE,     /* the topic has no checkpoint for this key */
	CHECKPOINT_NO_TOPIC, /* the topic is missing and may not be created */
	CHECKPOINT_ERROR,    /* Kafka did not answer as expected: try again later */
	CHECKPOINT_STOPPED,  /* the tick asked to stop (a SIGTERM): nothing was read to the end */
} checkpoint_result;

/*
 * Called between the slices (at most 200 ms each) of reading the topic: the relay pings the
 * systemd watchdog and takes signals there. 0 goes on; -1 ends the read (CHECKPOINT_STOPPED).
 */
typedef int (*checkpoint_tick_fn)(void *ctx);

/* How a read goes (checkpoint_load_state; NULL: wait_ms CHECKPOINT_WAIT_MS, no tick). */
typedef struct {
	/* How long the read may stand still (an open Kafka transaction holds it back), counted once
	 * the partitions' ends are known; after it, CHECKPOINT_ERROR (or, with partial_ok, what was
	 * read). A read that keeps moving goes on up to CHECKPOINT_WAIT_MS (or wait_ms if longer). */
	int wait_ms;
	/* After wait_ms: the newest checkpoint before the open transaction, with
	 * checkpoint_extra.incomplete saying where it stopped (`outbox-relay status`), not an error.
	 * Never for a start: that checkpoint may be older than this relay's newest. */
	bool partial_ok;
	checkpoint_tick_fn tick; /* NULL: none */
	void *ctx;
	/* The caller has no use for the "<key>.snapshot" record: the read stops at the window that
	 * holds the key's newest record without looking further back for it. */
	bool no_state;
} checkpoint_read_opts;

/*
 * The topic is read backwards in windows: first each partition's last CHECKPOINT_WINDOW offsets
 * (records, commit markers and aborted records alike) to its end, then CHECKPOINT_WINDOW_GROWTH
 * times as many, and so on, until a window holds the key's newest record (and the snapshot
 * record, when asked for) or begins at the log start.
 */
#define CHECKPOINT_WINDOW 2000
#define CHECKPOINT_WINDOW_GROWTH 8

/*
 * Where a window of span offsets of a partition begins: span before its end (high watermark),
 * or span before its last stable offset when that is earlier (an open transaction's first
 * record: a read_committed read stops there, so the window holds span offsets before it, the
 * newest checkpoint a `status` can report; a read begun past it could not tell what holds it),
 * and no earlier than its log start.
 */
int64_t checkpoint_window_start(int64_t low, int64_t end, int64_t lso, int64_t span);

/*
 * Whether a window read is the last one: it holds the key's newest record (key_seen) and, when
 * the caller wants the snapshot record (want_state), that record too (state_seen), unless the
 * key's newest record is a tombstone (key_reset: no checkpoint, so no state either); or it
 * began at the log start of every partition (whole).
 */
bool checkpoint_window_enough(bool key_seen, bool key_reset, bool state_seen, bool want_state,
			      bool whole);

/* What a start waits for an open transaction: 30 s, then an error the start retries. */
#define CHECKPOINT_WAIT_MS 30000

/*
 * Reads the newest committed checkpoint of key from topic (read_committed, to the end: each
 * partition's high watermark when the read began, asked for within 10 s in all; backwards in
 * windows, see CHECKPOINT_WINDOW). A Kafka
 * transaction open on the topic (another relay's) is waited for, up to CHECKPOINT_WAIT_MS; then
 * CHECKPOINT_ERROR, err naming it: never an older checkpoint. No tick. When the topic does not
 * exist: creates it (compacted, one partition) if create is true, else an error.
 */
checkpoint_result checkpoint_load(const relay_config *cfg, const char *topic, const char *key,
				  bool create, checkpoint *cp, char *err, size_t errlen);
/*
 * Creates the checkpoint topic when it does not exist (compacted, one partition). Done before
 * the slot is created, so that a slot never exists without its checkpoint topic: that pair is
 * refused (the topic was deleted or renamed), unless postgresql.adopt_slot says an HA manager
 * made the slot before the relay's first start. 0, or -1 with a message in err.
 */
int checkpoint_create_topic(const relay_config *cfg, const char *topic, char *err, size_t errlen);
/*
 * checkpoint_load, also filling x (when not NULL): the recovery fields, and the newest committed
 * record of key "<key>.snapshot" (the snapshot progress; NULL when none or no checkpoint).
 * opts (NULL: a 30 s wait, no tick) says how long to wait and whom to call while reading; its
 * tick returning -1 ends the read with CHECKPOINT_STOPPED.
 */
checkpoint_result checkpoint_load_state(const relay_config *cfg, const char *topic, const char *key,
					bool create, const checkpoint_read_opts *opts, checkpoint *cp,
					checkpoint_extra *x, char *err, size_t errlen);

#endif
