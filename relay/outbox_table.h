/* outbox_table.h: SQL over an outbox table read back by the relay: its shape, and which of its rows a snapshot or a checkpoint covers. */
#ifndef RELAY_OUTBOX_TABLE_H
#define RELAY_OUTBOX_TABLE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "checkpoint.h"
#include "strbuf.h"

/*
 * A row is told by its transaction: the SQL kit's txid column (the top-level xid, also for rows
 * written under a savepoint) or, in other tables, its xmin (a savepoint's own xid); its commit
 * time (pg_xact_commit_timestamp, the same for a savepoint's rows); and inside a transaction by
 * the kit's seq column (write order) or else its command id, then ctid.
 */
typedef struct {
	char name[520];       /* "schema.table" as configured */
	char schema[256], table[256];
	char qualified[1100]; /* quoted for SQL */
	bool exists;
	bool has_seq;  /* bigint seq: the order rows were written in */
	bool has_txid; /* xid8 txid: the writing transaction's top-level xid */
} outbox_table;

/* Reads the table's shape. 0, or -1 with err when the catalog could not be read. */
int outbox_table_read(PGconn *conn, const char *name, outbox_table *t, char *err, size_t errlen);

/*
 * " FROM ONLY <table> t ...": row alias t, its commit time c.ts (NULL without commit_ts:
 * pg_xact_commit_timestamp fails while track_commit_timestamp is off), and what the
 * expressions below need.
 */
void outbox_table_from(const outbox_table *t, bool commit_ts, strbuf *q);
/* The full top-level xid (int8) of the transaction that wrote row t. */
void outbox_table_txid(const outbox_table *t, strbuf *q);
/* The order of rows inside a transaction (int8; ctid after it). */
void outbox_table_write_order(const outbox_table *t, strbuf *q);
/* A condition: row t's transaction is visible in the snapshot (pg_current_snapshot() text). */
void outbox_table_seen_by(PGconn *conn, const outbox_table *t, const char *snapshot, strbuf *q);
/*
 * A condition on row t and its commit time c.ts: not covered by a checkpoint with these recovery
 * fields (committed after its boundary and not listed).
 */
void outbox_table_after(const outbox_table *t, const checkpoint_recovery *lo, strbuf *q);

#endif
