/* capture.h: change capture of existing tables: their catalog facts and the change envelope. */
#ifndef RELAY_CAPTURE_H
#define RELAY_CAPTURE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture_names.h"
#include "config.h"
#include "route.h"
#include "w2j.h"

/* A column as the catalog describes it. */
typedef struct {
	char *name;
	unsigned type_oid;
	bool toastable; /* variable length: an update may leave it out when it did not change */
	bool published; /* not left out by include_columns / exclude_columns */
	char *type_name; /* format_type of its type (a domain's: the base type's), wal2json's "type" */
	bool not_null;   /* attnotnull (a domain's NOT NULL does not keep nulls out of every row) */
	int ndims;       /* an array's declared dimensions (0 or 1: one; not enforced): attndims, a
			    domain's typndims or a parent's attndims, the largest */
} capture_column;

/* A captured table: which entry of the capture list took it, its columns and its key. */
typedef struct capture_table {
	char *schema;
	char *table;
	char *name; /* "schema.table" */
	const capture_config *cfg;
	char *topic;
	bool topic_ok; /* topic is a valid Kafka topic name (else the table is refused) */
	capture_column *cols;
	int n_cols;
	int *keys; /* indexes into cols, in key order */
	int n_keys;
	char replident;   /* pg_class.relreplident: d(efault), f(ull), i(ndex), n(othing) */
	bool ordered;     /* the key is a unique not-null index's columns: snapshots can use it */
	const char *refusal; /* why its changes cannot be published (no key), or NULL */
	lsn_t catalog_lsn;   /* the server's WAL position when the catalog entry was read */
	int64_t read_us;     /* the server's clock (µs since 1970) just before the entry was read */
	int64_t ddl_us;      /* commit time of the newest of its catalog rows (INT64_MIN: older than the slot) */
	bool ddl_known;      /* ddl_us is known (track_commit_timestamp on when they were written) */
	const char *slot;    /* the relay's slot: its catalog_xmin dates old catalog rows */
} capture_table;

/*
 * The session settings of the connections an Avro capture reads through (the replication
 * stream, catalog reads and snapshots): the texts of dates, timestamps and bytea it converts
 * are PostgreSQL's in ISO DateStyle, hex bytea_output and the postgres IntervalStyle, whatever
 * the database or role sets.
 */
#define CAPTURE_AVRO_SESSION_SQL                                                                   \
	"SET DateStyle = 'ISO, MDY'; SET bytea_output = 'hex'; SET extra_float_digits = 1; "       \
	"SET IntervalStyle = 'postgres'"

typedef struct capture capture;

capture *capture_new(const relay_config *cfg);
void capture_free(capture *c);
/* True when the file captures any table. */
bool capture_enabled(const capture *c);
/* The entry (of the capture list) whose pattern takes schema.table, or NULL. */
const capture_config *capture_entry_for(const capture *c, const char *schema, const char *table);
/*
 * The captured table a change belongs to (looked up in the catalog the first time): 1 with *out
 * set, 0 when the table is not captured, -1 when the catalog could not be read (err says why),
 * -2 when conn is NULL and the catalog must be read.
 */
int capture_lookup(capture *c, PGconn *conn, const char *schema, const char *table,
		   capture_table **out, char *err, size_t errlen);
/*
 * Reads a change's columns and identity once, for capture_stale and the builds below (which
 * use what it read). -1 when they are malformed: capture_build then says so.
 */
int capture_read(capture *c, const w2j_record *rec);
/*
 * True when a change of a transaction that committed after the catalog entry was read
 * (commit_end: its commit record's end) does not fit the entry: a column the entry does not
 * know, or one missing that cannot be an unchanged TOASTed value. A column was added, dropped
 * or renamed since (the catalog read could not see that transaction's own ALTER TABLE): read
 * the entry again with capture_refresh.
 */
bool capture_stale(capture *c, const capture_table *t, const w2j_record *rec, lsn_t commit_end);
/*
 * Whether an update's unchanged_toast can be known (after capture_read and capture_stale): the
 * columns wal2json left out are those of the table as it was at the change, and the catalog entry
 * is that table only when no ALTER TABLE of it committed between the two. EXACT: it is (or no
 * column could be missing); READ_AGAIN: the entry was read before the change committed and lacks
 * values, read it again (capture_refresh) and ask again with may_read false; UNKNOWN: the entry
 * may not be the table of the change (the relay is behind an ALTER TABLE of it, or commit
 * timestamps are off), and the record says "unchanged_toast": null.
 */
typedef enum { CAPTURE_TOAST_EXACT, CAPTURE_TOAST_READ_AGAIN, CAPTURE_TOAST_UNKNOWN } capture_toast;
capture_toast capture_toast_check(capture *c, const capture_table *t, const w2j_record *rec,
				  bool may_read);
/*
 * Reads the catalog entry of t again, in place (pointers to t stay valid); -1 with err. A table
 * gone from the catalog (dropped or renamed since) keeps the entry it had.
 */
int capture_refresh(PGconn *conn, capture_table *t, char *err, size_t errlen);
/*
 * Same, for the schema and table of a wal2json record (names of any escaped length), and
 * CAPTURE_BAD_NAME (err says why) when a name cannot be decoded: such a change cannot be
 * matched against the capture list, and must be dead-lettered rather than skipped.
 */
#define CAPTURE_BAD_NAME (-3)
int capture_lookup_record(capture *c, PGconn *conn, const w2j_record *rec, capture_table **out,
			  char *err, size_t errlen);
/*
 * Every existing table the capture list takes, looked up in the catalog; n gets the count and
 * the array stays owned by c. -1 with err when the catalog could not be read.
 */
int capture_resolve_all(capture *c, PGconn *conn, capture_table ***tables, int *n, char *err,
			size_t errlen);

/* How many of the tables looked up so far cannot be captured (refusal set). */
int capture_refused_count(const capture *c);
/* True when a capture entry names its tables by a pattern (a * in schema or table). */
bool capture_is_pattern(const capture_config *e);

/*
 * The record of a change (insert, update, delete or truncate), after capture_read: key = the
 * key columns as a JSON object, value = the envelope (docs/change-capture.md). Pointers stay valid until the next
 * build. -1 with *why when it cannot be published (a key column missing, a table without key).
 */
int capture_build(capture *c, const capture_table *t, const w2j_record *rec, route_msg *m,
		  const char **why);
/*
 * An update that changed the key (after capture_read): 1 with the delete record of the old key in m (published
 * before the update, which goes out under the new key); 0 for any other change.
 */
int capture_build_key_change(capture *c, const capture_table *t, const w2j_record *rec,
			     route_msg *m);
/*
 * The record of a snapshot row: row and key are JSON objects as PostgreSQL built them
 * (snapshot.c's query prints values the way wal2json does); lsn and ts are those of the
 * transaction that ends the snapshot chunk.
 */
void capture_build_snapshot(capture *c, const capture_table *t, const char *key, size_t key_len,
			    const char *row, size_t row_len, lsn_t lsn, const json_span *ts,
			    route_msg *m);

#endif
