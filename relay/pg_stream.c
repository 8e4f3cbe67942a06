/* pg_stream.c: libpq replication protocol: server checks, the slot, START_REPLICATION, messages. */
#include "pg_stream.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"
#include "xalloc.h"

struct pg_stream {
	PGconn *conn;
	char *buf; /* the last message from PQgetCopyData, freed at the next read */
	lsn_t start_lsn;
	bool slot_created;
	char snapshot_name[64]; /* exported by the slot's creation, "" if none */
	lsn_t server_lsn; /* the server's WAL position at connect (IDENTIFY_SYSTEM xlogpos) */
	uint32_t timeline; /* the server's timeline at connect (IDENTIFY_SYSTEM timeline) */
	bool streaming; /* START_REPLICATION succeeded: status updates can be sent */
	char sysid[32];
	char error[512];
};

/* PostgreSQL keeps 63 bytes of an application_name (NAMEDATALEN - 1). */
#define NAMEDATALEN_APP 64

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_US 946684800000000LL

static uint64_t get_be64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char)p[i];
	return v;
}

static void put_be64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (char)(v & 0xFF);
		v >>= 8;
	}
}

/* Copies a libpq message without its trailing newline. */
static void set_error(pg_stream *s, const char *msg)
{
	snprintf(s->error, sizeof(s->error), "%s", msg ? msg : "unknown error");
	size_t n = strlen(s->error);
	while (n > 0 && (s->error[n - 1] == '\n' || s->error[n - 1] == ' '))
		s->error[--n] = '\0';
	for (char *c = s->error; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

/* Known server and setup problems, each with the one change that fixes it. */
static const struct {
	const char *needle;
	outcome result;
	const char *fix;
} known_errors[] = {
	{"output_plugin_libraries", OUTCOME_FATAL,
	 "add wal2json to output_plugin_libraries: ALTER SYSTEM SET output_plugin_libraries = "
	 "pgoutput, wal2json; SELECT pg_reload_conf();"},
	{"could not access file \"wal2json\"", OUTCOME_FATAL,
	 "wal2json is not installed on the server: install the package postgresql-<version>-wal2json"},
	{"logical decoding requires wal_level", OUTCOME_FATAL,
	 "set wal_level = logical in postgresql.conf and restart PostgreSQL"},
	{"must be superuser or replication role", OUTCOME_FATAL,
	 "the role needs the REPLICATION attribute: ALTER ROLE <role> REPLICATION; (see sql/relay-role.sql)"},
	{"permission denied to start WAL sender", OUTCOME_FATAL,
	 "the role needs the REPLICATION attribute: ALTER ROLE <role> REPLICATION; (see sql/relay-role.sql)"},
	{"no pg_hba.conf entry for replication", OUTCOME_FATAL,
	 "allow the role in pg_hba.conf for the database (a 'host <db> <role> ...' line; logical "
	 "replication connections match the database name, not 'replication')"},
	{"password authentication failed", OUTCOME_FATAL, "check the role's password (see docs/operations.md)"},
	{"all replication slots are in use", OUTCOME_FATAL,
	 "raise max_replication_slots in postgresql.conf and restart PostgreSQL"},
	{"number of requested standby connections exceeds", OUTCOME_FATAL,
	 "raise max_wal_senders in postgresql.conf and restart PostgreSQL"},
	{"is active for PID", OUTCOME_RETRY,
	 "another process streams from this slot (a second relay?); retrying until it is free"},
	{"can no longer get changes from replication slot", OUTCOME_RETRY,
	 "the slot was invalidated (WAL removed); looking at it again (docs/exactly-once.md)"},
	{"replication slot", OUTCOME_RETRY,
	 "the slot changed while the relay connected (dropped?); looking at it again"},
	{"does not exist", OUTCOME_FATAL, "check the database and role names in postgresql.conninfo"},
};

/* Gives a failure its class and, when the problem is known, appends what to change. */
static outcome explain(pg_stream *s, outcome dflt, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(known_errors) / sizeof(known_errors[0]); i++) {
		if (strstr(s->error, known_errors[i].needle)) {
			snprintf(err, errlen, "%s: %s", known_errors[i].fix, s->error);
			return known_errors[i].result;
		}
	}
	snprintf(err, errlen, "%s", s->error);
	return dflt;
}

/* Runs a query in the replication session; NULL (with s->error set) unless it returned rows. */
static PGresult *query(pg_stream *s, const char *sql)
{
	PGresult *res = PQexec(s->conn, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	set_error(s, PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

/* Checks wal_level, which the server can only change with a restart. */
static outcome check_wal_level(pg_stream *s, char *err, size_t errlen)
{
	PGresult *res = query(s, "SHOW wal_level");
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	const char *lvl = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
	outcome r = OUTCOME_OK;
	if (strcmp(lvl, "logical") != 0) {
		snprintf(err, errlen,
			 "wal_level is '%s' on the server: set wal_level = logical in postgresql.conf "
			 "and restart PostgreSQL", lvl);
		r = OUTCOME_FATAL;
	}
	PQclear(res);
	return r;
}

/* CREATE_REPLICATION_SLOT; with export, the snapshot's name is kept (valid until the next command). */
static outcome create_slot(pg_stream *s, const char *slot_ident, bool export, char *err,
			     size_t errlen)
{
	char sql[512];
	PGresult *res;

	snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s LOGICAL wal2json %s", slot_ident,
		 export ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
	res = query(s, sql);
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	lsn_parse(PQgetvalue(res, 0, 1), strlen(PQgetvalue(res, 0, 1)), &s->start_lsn);
	snprintf(s->snapshot_name, sizeof(s->snapshot_name), "%s",
		 export && !PQgetisnull(res, 0, 2) ? PQgetvalue(res, 0, 2) : "");
	s->slot_created = true;
	PQclear(res);
	return OUTCOME_OK;
}

/*
 * Reads the slot's row: SLOT_MISSING, SLOT_LOST (invalidated) or SLOT_OK with its confirmed
 * position; a slot of another kind, plugin or database is refused, one in use is retried.
 */
static outcome inspect_slot(pg_stream *s, const char *slot, slot_state *state, char *err,
			      size_t errlen)
{
	char sql[1024];
	char *lit = PQescapeLiteral(s->conn, slot, strlen(slot));
	PGresult *res;
	outcome r = OUTCOME_OK;

	snprintf(sql, sizeof(sql),
		 "SELECT plugin, slot_type, database = current_database(), active, active_pid, "
		 "confirmed_flush_lsn, wal_status FROM pg_replication_slots WHERE slot_name = %s", lit);
	PQfreemem(lit);
	res = query(s, sql);
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	*state = SLOT_OK;
	if (PQntuples(res) == 0) {
		*state = SLOT_MISSING;
	} else if (strcmp(PQgetvalue(res, 0, 1), "logical") != 0 || strcmp(PQgetvalue(res, 0, 0), "wal2json") != 0) {
		snprintf(err, errlen, "replication slot \"%s\" exists but is a %s slot of plugin '%s': "
			 "it must be a logical slot of wal2json; use another slot name", slot,
			 PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
		r = OUTCOME_FATAL;
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
		snprintf(err, errlen, "replication slot \"%s\" belongs to another database: connect "
			 "to that database or use another slot name", slot);
		r = OUTCOME_FATAL;
	} else if (strcmp(PQgetvalue(res, 0, 3), "t") == 0) {
		snprintf(err, errlen, "replication slot \"%s\" is in use by PID %s (another relay?); "
			 "retrying until it is free", slot, PQgetvalue(res, 0, 4));
		r = OUTCOME_RETRY;
	} else if (strcmp(PQgetvalue(res, 0, 6), "lost") == 0) {
		*state = SLOT_LOST;
	} else {
		const char *c = PQgetvalue(res, 0, 5);
		lsn_parse(c, strlen(c), &s->start_lsn);
	}
	PQclear(res);
	return r;
}

static outcome check_slot(pg_stream *s, const char *slot, bool create, pg_slot_prepare_fn prepare,
			    void *arg, char *err, size_t errlen)
{
	slot_state state;
	outcome r = inspect_slot(s, slot, &state, err, errlen);

	if (r != OUTCOME_OK)
		return r;
	if (state == SLOT_LOST) {
		snprintf(err, errlen, "replication slot \"%s\" was invalidated (its WAL was removed): "
			 "changes were lost to it; drop the slot and start again from a new snapshot", slot);
		return OUTCOME_FATAL;
	}
	if (state == SLOT_OK)
		return OUTCOME_OK;
	if (!create) {
		snprintf(err, errlen, "replication slot \"%s\" does not exist and "
			 "postgresql.create_slot is false: create it or allow the relay to", slot);
		return OUTCOME_FATAL;
	}
	r = prepare ? prepare(arg, err, errlen) : OUTCOME_OK;
	return r == OUTCOME_OK ? pg_stream_create_slot(s, slot, false, err, errlen) : r;
}

outcome pg_stream_inspect_slot(pg_stream *s, const char *slot, slot_state *state, char *err,
				 size_t errlen)
{
	return inspect_slot(s, slot, state, err, errlen);
}

outcome pg_stream_create_slot(pg_stream *s, const char *slot, bool export, char *err, size_t errlen)
{
	char *ident = PQescapeIdentifier(s->conn, slot, strlen(slot));
	outcome r = create_slot(s, ident, export, err, errlen);
	PQfreemem(ident);
	if (r == OUTCOME_OK)
		log_info("created replication slot \"%s\" with wal2json at %s", slot,
			 lsn_format(s->start_lsn, (char[LSN_TEXT_MAX]){0}));
	return r;
}

outcome pg_stream_drop_slot(pg_stream *s, const char *slot, char *err, size_t errlen)
{
	char sql[512];
	char *ident = PQescapeIdentifier(s->conn, slot, strlen(slot));
	PGresult *res;

	snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT %s", ident);
	PQfreemem(ident);
	res = query(s, sql);
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	PQclear(res);
	log_warn("dropped replication slot \"%s\"", slot);
	return OUTCOME_OK;
}

const char *pg_stream_snapshot_name(const pg_stream *s) { return s->snapshot_name; }

/* Appends a replication-command string literal: single quotes doubled (backslashes are plain). */
static void append_quoted(strbuf *cmd, const char *text)
{
	strbuf_addc(cmd, '\'');
	for (const char *c = text; *c; c++) {
		if (*c == '\'')
			strbuf_addc(cmd, '\'');
		strbuf_addc(cmd, *c);
	}
	strbuf_addc(cmd, '\'');
}

static outcome start_streaming(pg_stream *s, const char *slot, const char *add_tables,
				 const char *add_msg_prefixes, lsn_t from, char *err, size_t errlen)
{
	strbuf cmd = {0};
	char lsn[LSN_TEXT_MAX];
	char *ident = PQescapeIdentifier(s->conn, slot, strlen(slot));

	strbuf_addf(&cmd,
		    "START_REPLICATION SLOT %s LOGICAL %s (\"format-version\" '2', "
		    "\"include-transaction\" '1', \"include-xids\" '1', \"include-timestamp\" '1', "
		    "\"include-lsn\" '1', \"include-domain-data-type\" '1', ", ident,
		    lsn_format(from, lsn));
	PQfreemem(ident);
	/* Without outbox tables, no table changes at all. */
	strbuf_add(&cmd, add_tables[0] ? "\"add-tables\" " : "\"filter-tables\" ");
	append_quoted(&cmd, add_tables[0] ? add_tables : "*.*");
	if (add_msg_prefixes[0]) {
		strbuf_add(&cmd, ", \"add-msg-prefixes\" ");
		append_quoted(&cmd, add_msg_prefixes);
	}
	strbuf_addc(&cmd, ')');

	PGresult *res = PQexec(s->conn, strbuf_str(&cmd));
	strbuf_free(&cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH) {
		set_error(s, PQresultErrorMessage(res));
		PQclear(res);
		return explain(s, OUTCOME_RETRY, err, errlen);
	}
	PQclear(res);
	s->streaming = true;
	if (PQsetnonblocking(s->conn, 1) != 0) {
		set_error(s, PQerrorMessage(s->conn));
		return explain(s, OUTCOME_RETRY, err, errlen);
	}
	return OUTCOME_OK;
}

/*
 * Reads the cluster's system identifier, which names the relay's Kafka transactional id, and
 * the timeline and WAL position the checkpoint is checked against.
 */
static outcome identify_system(pg_stream *s, char *err, size_t errlen)
{
	PGresult *res = query(s, "IDENTIFY_SYSTEM");
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	snprintf(s->sysid, sizeof(s->sysid), "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
	if (PQntuples(res) == 1 && PQnfields(res) >= 3) {
		s->timeline = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
		lsn_parse(PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)), &s->server_lsn);
	}
	PQclear(res);
	return OUTCOME_OK;
}

/* TIMELINE_HISTORY: the history file's bytes (the second column, raw, no encoding). */
static outcome timeline_history(pg_stream *s, uint32_t tli, char **text, size_t *len, char *err,
				  size_t errlen)
{
	char cmd[64];
	PGresult *res;

	snprintf(cmd, sizeof(cmd), "TIMELINE_HISTORY %u", tli);
	res = query(s, cmd);
	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	if (PQntuples(res) != 1 || PQnfields(res) < 2) {
		snprintf(err, errlen, "TIMELINE_HISTORY %u returned %d rows of %d columns", tli,
			 PQntuples(res), PQnfields(res));
		PQclear(res);
		return OUTCOME_FATAL;
	}
	*len = (size_t)PQgetlength(res, 0, 1);
	*text = xmalloc(*len + 1);
	memcpy(*text, PQgetvalue(res, 0, 1), *len);
	(*text)[*len] = '\0';
	PQclear(res);
	return OUTCOME_OK;
}

/* What a relay standing by shows of the one holding the slot (pg_stat_activity). */
void pg_stream_application_name(char *buf, size_t len)
{
	char host[256] = "";

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	snprintf(buf, len, "outbox-relay[%ld]@%s", (long)getpid(), host[0] ? host : "?");
}

outcome pg_stream_connect(pg_stream **out, const char *conninfo, const char *password, char *err,
			    size_t errlen)
{
	/* The password (a credential) goes as its own parameter, never into a logged string. */
	/* connect_timeout comes first so that the conninfo's own value wins. */
	const char *keys[] = {"connect_timeout", "dbname", "replication", "fallback_application_name",
			      password ? "password" : NULL, NULL};
	char app[NAMEDATALEN_APP];
	const char *vals[] = {"10", conninfo, "database", app, password, NULL};
	pg_stream *s = xcalloc(1, sizeof(*s));
	outcome r;

	*out = NULL;
	pg_stream_application_name(app, sizeof(app));
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		set_error(s, PQerrorMessage(s->conn));
		r = explain(s, OUTCOME_RETRY, err, errlen);
		goto fail;
	}
	if ((r = check_wal_level(s, err, errlen)) != OUTCOME_OK ||
	    (r = identify_system(s, err, errlen)) != OUTCOME_OK)
		goto fail;
	*out = s;
	return OUTCOME_OK;
fail:
	pg_stream_close(s, 0);
	return r;
}

outcome pg_stream_check_slot(pg_stream *s, const char *slot, bool create,
			       pg_slot_prepare_fn prepare, void *arg, char *err, size_t errlen)
{
	return check_slot(s, slot, create, prepare, arg, err, errlen);
}

outcome pg_stream_start(pg_stream *s, const char *slot, const char *add_tables,
			  const char *add_msg_prefixes, lsn_t from, char *err, size_t errlen)
{
	return start_streaming(s, slot, add_tables, add_msg_prefixes, from, err, errlen);
}

const char *pg_stream_sysid(const pg_stream *s) { return s->sysid; }

bool pg_stream_slot_created(const pg_stream *s) { return s->slot_created; }


lsn_t pg_stream_server_lsn(const pg_stream *s) { return s->server_lsn; }

uint32_t pg_stream_timeline(const pg_stream *s) { return s->timeline; }

outcome pg_stream_timeline_history(pg_stream *s, uint32_t tli, char **text, size_t *len, char *err,
				     size_t errlen)
{
	*text = NULL;
	*len = 0;
	return timeline_history(s, tli, text, len, err, errlen);
}

/*
 * Ends the copy the way the protocol wants: CopyDone, then read (and drop) what the server still
 * sends until its own CopyDone. The server handles messages in order, so once it answers, it has
 * applied every status update sent before; closing at once could lose the last one.
 */
static void finish_copy(pg_stream *s, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	char *buf = NULL;

	if (PQputCopyEnd(s->conn, NULL) <= 0)
		return;
	for (;;) {
		int len = PQgetCopyData(s->conn, &buf, 1);
		if (buf) {
			PQfreemem(buf);
			buf = NULL;
		}
		if (len > 0)
			continue;
		if (len < 0)
			break;
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0)
			return;
		struct pollfd pfd = {.fd = PQsocket(s->conn),
				     .events = (short)(POLLIN | (PQflush(s->conn) > 0 ? POLLOUT : 0))};
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return;
		if (!PQconsumeInput(s->conn))
			return;
	}
	for (PGresult *res; (res = PQgetResult(s->conn)) != NULL;)
		PQclear(res);
}

void pg_stream_close(pg_stream *s, int timeout_ms)
{
	if (!s)
		return;
	if (s->buf)
		PQfreemem(s->buf);
	if (s->conn && PQstatus(s->conn) == CONNECTION_OK && PQisnonblocking(s->conn) && timeout_ms > 0)
		finish_copy(s, timeout_ms);
	PQfinish(s->conn);
	free(s);
}

int pg_stream_socket(const pg_stream *s) { return PQsocket(s->conn); }

const char *pg_stream_error(const pg_stream *s) { return s->error; }

lsn_t pg_stream_start_lsn(const pg_stream *s) { return s->start_lsn; }

/* Parses one CopyData message into msg; -1 for a message we do not understand. */
static int parse_message(pg_stream *s, int len, pg_msg *msg)
{
	const char *b = s->buf;

	memset(msg, 0, sizeof(*msg));
	msg->kind = b[0];
	if (b[0] == 'w' && len >= 25) {
		msg->wal_start = get_be64(b + 1);
		msg->wal_end = get_be64(b + 9);
		msg->data = b + 25;
		msg->len = (size_t)len - 25;
		return 1;
	}
	if (b[0] == 'k' && len >= 18) {
		msg->wal_end = get_be64(b + 1);
		msg->reply_requested = b[17] != 0;
		return 1;
	}
	set_error(s, "unexpected message on the replication stream");
	return -1;
}

/* Reads the final result after the copy ended, to say why. */
static void copy_ended(pg_stream *s)
{
	PGresult *res = PQgetResult(s->conn);
	if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
		set_error(s, PQresultErrorMessage(res));
	else
		set_error(s, PQerrorMessage(s->conn)[0] ? PQerrorMessage(s->conn)
							 : "the server ended the replication stream");
	PQclear(res);
}

int pg_stream_read(pg_stream *s, pg_msg *msg)
{
	int len;

	if (s->buf) {
		PQfreemem(s->buf);
		s->buf = NULL;
	}
	len = PQgetCopyData(s->conn, &s->buf, 1);
	if (len == 0) {
		if (!PQconsumeInput(s->conn)) {
			set_error(s, PQerrorMessage(s->conn));
			return -1;
		}
		len = PQgetCopyData(s->conn, &s->buf, 1);
	}
	if (len == 0)
		return 0;
	if (len == -1) {
		copy_ended(s);
		return -1;
	}
	if (len < 0) {
		set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	return parse_message(s, len, msg);
}

int pg_stream_send_status(pg_stream *s, lsn_t write, lsn_t flush)
{
	char msg[34];
	struct timeval tv;

	if (!s->streaming)
		return 0; /* nothing to confirm before the stream started */
	gettimeofday(&tv, NULL);
	msg[0] = 'r';
	put_be64(msg + 1, write);
	put_be64(msg + 9, flush);
	put_be64(msg + 17, flush); /* apply: nothing is applied after flush for us */
	put_be64(msg + 25, (uint64_t)((int64_t)tv.tv_sec * 1000000 + tv.tv_usec - PG_EPOCH_OFFSET_US));
	msg[33] = 0;
	if (PQputCopyData(s->conn, msg, sizeof(msg)) <= 0) {
		set_error(s, PQerrorMessage(s->conn));
		return -1;
	}
	return pg_stream_flush(s) < 0 ? -1 : 0;
}

int pg_stream_flush(pg_stream *s)
{
	int r = PQflush(s->conn);
	if (r < 0)
		set_error(s, PQerrorMessage(s->conn));
	return r;
}

int pg_slot_retained_wal(const char *conninfo, const char *password, const char *slot,
			 uint64_t *bytes)
{
	const char *params[1] = {slot};
	PGconn *c = pg_sql_connect(conninfo, password, "outbox-relay-watch", 5);
	PGresult *res = NULL;
	int r = -1;

	if (PQstatus(c) != CONNECTION_OK)
		goto done;
	res = PQexecParams(c, "SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots "
			      "WHERE slot_name = $1", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		*bytes = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		r = 0;
	}
done:
	PQclear(res);
	PQfinish(c);
	return r;
}

outcome pg_stream_set(pg_stream *s, const char *sql, char *err, size_t errlen)
{
	PGresult *res = query(s, sql);

	if (!res)
		return explain(s, OUTCOME_RETRY, err, errlen);
	PQclear(res);
	return OUTCOME_OK;
}

const char *pg_stream_host(const pg_stream *s) { return PQhost(s->conn); }
const char *pg_stream_port(const pg_stream *s) { return PQport(s->conn); }
const char *pg_stream_hostaddr(const pg_stream *s) { return PQhostaddr(s->conn); }
int pg_stream_backend_pid(const pg_stream *s) { return PQbackendPID(s->conn); }

PGconn *pg_sql_connect(const char *conninfo, const char *password, const char *app, int timeout_s)
{
	char timeout[16];
	const char *keys[] = {"connect_timeout", "dbname", "fallback_application_name",
			      password ? "password" : NULL, NULL};
	const char *vals[] = {timeout, conninfo, app, password, NULL};

	snprintf(timeout, sizeof(timeout), "%d", timeout_s);
	return PQconnectdbParams(keys, vals, 1);
}
