/* pg_stream.h: the logical replication connection: slot checks, START_REPLICATION, CopyData I/O. */
#ifndef RELAY_PG_STREAM_H
#define RELAY_PG_STREAM_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsn.h"
#include "outcome.h"

typedef struct pg_stream pg_stream;

/* One message from the server. */
typedef struct {
	char kind;         /* 'w': XLogData (a wal2json record), 'k': keepalive */
	lsn_t wal_start;   /* 'w': where the record's data starts */
	lsn_t wal_end;     /* the server's current end of WAL */
	bool reply_requested; /* 'k': answer now or be disconnected */
	const char *data;  /* 'w': the record, valid until the next pg_stream_read */
	size_t len;
} pg_msg;

/* Attempts return an outcome (outcome.h): OUTCOME_OK, OUTCOME_RETRY (a retry may help: the
 * connection was lost) or OUTCOME_FATAL (it will not: fix the setup). */

/*
 * Connects in replication mode and checks the server's setup. On failure, *out is NULL and err
 * holds one line saying what to change.
 */
outcome pg_stream_connect(pg_stream **out, const char *conninfo, const char *password, char *err,
			    size_t errlen);
/* What pg_replication_slots says of the slot. */
typedef enum { SLOT_MISSING, SLOT_OK, SLOT_LOST } slot_state;

/*
 * Reads the slot: missing, invalidated (lost), or usable (its confirmed position then is
 * pg_stream_start_lsn). Another plugin, kind or database is OUTCOME_FATAL; in use, OUTCOME_RETRY.
 */
outcome pg_stream_inspect_slot(pg_stream *s, const char *slot, slot_state *state, char *err,
				 size_t errlen);
/* Creates the slot; with export, its snapshot's name is pg_stream_snapshot_name until the next
 * command on this connection (import it at once). */
outcome pg_stream_create_slot(pg_stream *s, const char *slot, bool export, char *err, size_t errlen);
/* Drops the slot (it must not be in use). */
outcome pg_stream_drop_slot(pg_stream *s, const char *slot, char *err, size_t errlen);
/* The snapshot exported by pg_stream_create_slot, or "". */
const char *pg_stream_snapshot_name(const pg_stream *s);
/* Called right before the slot is created: what must exist before the slot does. */
typedef outcome (*pg_slot_prepare_fn)(void *arg, char *err, size_t errlen);
/* Checks the slot: logical, wal2json, this database, not in use, not invalidated; creates it
 * when missing and create is true, after prepare (NULL: nothing) succeeded. */
outcome pg_stream_check_slot(pg_stream *s, const char *slot, bool create,
			       pg_slot_prepare_fn prepare, void *arg, char *err, size_t errlen);
/*
 * Starts streaming after `from` (0: the slot's confirmed position). add_tables and
 * add_msg_prefixes are wal2json's comma-separated filters ("" : no tables; all messages), as
 * w2j_filter_lists builds them; the command holds them whole, whatever their length.
 */
outcome pg_stream_start(pg_stream *s, const char *slot, const char *add_tables,
			  const char *add_msg_prefixes, lsn_t from, char *err, size_t errlen);
/* The server's system identifier (unique per cluster), as text. */
const char *pg_stream_sysid(const pg_stream *s);
/*
 * WAL the server keeps for the slot (current WAL position minus the slot's restart_lsn), read
 * over a short normal connection: 0 and *bytes set, or -1 when it cannot be read now.
 */
int pg_slot_retained_wal(const char *conninfo, const char *password, const char *slot,
			 uint64_t *bytes);
/* The server's WAL position when the connection was made. */
lsn_t pg_stream_server_lsn(const pg_stream *s);
/* The server's timeline when the connection was made (a primary's does not change). */
uint32_t pg_stream_timeline(const pg_stream *s);
/*
 * The history file of timeline tli (TIMELINE_HISTORY; tli > 1: timeline 1 has none) into *text
 * (malloc'd, NUL-terminated after *len bytes; free it), for timeline.h's parser. Not while
 * streaming.
 */
outcome pg_stream_timeline_history(pg_stream *s, uint32_t tli, char **text, size_t *len, char *err,
				     size_t errlen);
/*
 * The application_name of the replication connection (and of the active/passive lock's) unless
 * the conninfo sets one: "outbox-relay[PID]@HOST", so a relay standing by can name the active one.
 */
void pg_stream_application_name(char *buf, size_t len);
/* True when pg_stream_check_slot created the slot. */
bool pg_stream_slot_created(const pg_stream *s);
void pg_stream_close(pg_stream *s, int timeout_ms);
int pg_stream_socket(const pg_stream *s);
/* 1: a message in *msg; 0: nothing buffered (wait for the socket); -1: stream ended or broke. */
int pg_stream_read(pg_stream *s, pg_msg *msg);
/* Sends a status update: received up to write, safe up to flush. -1 when the connection broke. */
int pg_stream_send_status(pg_stream *s, lsn_t write, lsn_t flush);
/* Pushes buffered output; 1 while some is left (wait for POLLOUT), 0 done, -1 broken. */
int pg_stream_flush(pg_stream *s);
/* The last error from the server or libpq, one line. */
const char *pg_stream_error(const pg_stream *s);
/* The slot's confirmed_flush_lsn when the connection checked it. */
lsn_t pg_stream_start_lsn(const pg_stream *s);
/* The server the stream reads (of the conninfo's hosts, the one it connected to). */
/*
 * Runs SET commands (sql) in the replication session, before START_REPLICATION: wal2json prints
 * values through the walsender's output functions, so its DateStyle and bytea_output shape the
 * stream's texts. OUTCOME_RETRY with err when the server refuses them.
 */
outcome pg_stream_set(pg_stream *s, const char *sql, char *err, size_t errlen);
const char *pg_stream_host(const pg_stream *s);
const char *pg_stream_port(const pg_stream *s);
/* Its address when the conninfo gave one (hostaddr), else "" or NULL. */
const char *pg_stream_hostaddr(const pg_stream *s);
/* The walsender's pid on the server (PQbackendPID). */
int pg_stream_backend_pid(const pg_stream *s);

/*
 * A normal (not replication) connection with the relay's conninfo and password (NULL: libpq's
 * own ways), for catalog reads, snapshots and checks; the caller checks PQstatus and PQfinishes.
 */
PGconn *pg_sql_connect(const char *conninfo, const char *password, const char *app, int timeout_s);

#endif
