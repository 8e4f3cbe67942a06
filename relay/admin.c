/* admin.c: preflight and status: plain SQL and Kafka metadata, never touching the stream. */
#include "admin.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backfill.h"
#include "capture_names.h"
#include "checkpoint.h"
#include "eos_names.h"
#include "json_out.h"
#include "outbox_table.h"
#include "log.h"
#include "lsn.h"
#include "pg_stream.h"
#include "snapshot_names.h"
#include "strbuf.h"
#include "xalloc.h"

#define ADMIN_KAFKA_TIMEOUT_MS 10000
/* How long `status` waits for an open transaction on the checkpoint topic before saying so. */
#define ADMIN_CHECKPOINT_WAIT_MS 2000

/* A normal (not replication) connection with the relay's conninfo and password. */
static PGconn *admin_connect(const relay_config *cfg)
{
	return pg_sql_connect(cfg->pg_conninfo, cfg->pg_password, "outbox-relay-admin", 10);
}

/* The first value of a one-row query as a new string; NULL on error or no row. */
static char *query_value(PGconn *c, const char *sql, const char *param)
{
	const char *params[1] = {param};
	PGresult *res = PQexecParams(c, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
	char *v = NULL;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		v = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

typedef struct {
	int failed;
} report;

/*
 * One preflight line: "ok" or "FAIL" with what to change. Escaped like a log line: a table name
 * holding a newline cannot add a line ("ok ...") of its own.
 */
static void check(report *rp, bool ok, const char *what, const char *fix_fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void check(report *rp, bool ok, const char *what, const char *fix_fmt, ...)
{
	char line[2048], out[4096];
	size_t n;
	va_list ap;

	n = (size_t)snprintf(line, sizeof(line), "%-4s %s", ok ? "ok" : "FAIL", what);
	if (!ok && n + 2 < sizeof(line)) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": ");
		va_start(ap, fix_fmt);
		vsnprintf(line + n, sizeof(line) - n, fix_fmt, ap);
		va_end(ap);
	}
	rp->failed += !ok;
	log_escape_text(out, sizeof(out), line);
	printf("%s\n", out);
}

/* Compares a setting against what one relay needs. */
static void check_setting_at_least(report *rp, PGconn *c, const char *name, const char *used_sql)
{
	char *max = query_value(c, "SELECT setting FROM pg_settings WHERE name = $1", name);
	char *used = query_value(c, used_sql, NULL);
	char what[128];
	int free_n = (max ? atoi(max) : 0) - (used ? atoi(used) : 0);

	snprintf(what, sizeof(what), "%s = %s (%s in use)", name, max ? max : "?", used ? used : "?");
	check(rp, free_n >= 1, what, "raise %s in postgresql.conf and restart PostgreSQL", name);
	free(max);
	free(used);
}

/* wal2json loads for this role: a temporary slot proves the plugin, its allow-list and REPLICATION. */
static void check_wal2json(report *rp, PGconn *c)
{
	PGresult *res;

	PQclear(PQexec(c, "SET statement_timeout = '10s'"));
	res = PQexec(c, "SELECT pg_create_logical_replication_slot('outbox_relay_preflight', "
			"'wal2json', true)");
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	const char *msg = PQresultErrorMessage(res);
	if (ok)
		check(rp, true, "wal2json loads (a temporary slot was created)", " ");
	else if (strstr(msg, "could not access file"))
		check(rp, false, "wal2json loads", "install the package postgresql-<version>-wal2json");
	else if (strstr(msg, "output_plugin_libraries"))
		check(rp, false, "wal2json loads", "ALTER SYSTEM SET output_plugin_libraries = pgoutput, "
		      "wal2json; SELECT pg_reload_conf();");
	else if (strstr(msg, "REPLICATION") || strstr(msg, "replication"))
		check(rp, false, "wal2json loads", "ALTER ROLE <role> REPLICATION; (%.*s)",
		      (int)strcspn(msg, "\n"), msg);
	else
		check(rp, false, "wal2json loads", "%.*s", (int)strcspn(msg, "\n"), msg);
	PQclear(res);
	PQclear(PQexec(c, "RESET statement_timeout"));
}

#define CAPTURE_SQL                                                                                \
	"SELECT n.nspname || '.' || c.relname, has_table_privilege(c.oid, 'SELECT'), "              \
	"EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR "           \
	"i.indisreplident)), c.relreplident = 'f' OR EXISTS (SELECT FROM pg_index i WHERE "       \
	"i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR "                   \
	"(c.relreplident = 'i' AND i.indisreplident))), n.nspname, c.relname "                    \
	"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "                           \
	"WHERE c.relkind = 'r' AND ($1 = '*' OR n.nspname = $1) AND ($2 = '*' OR c.relname = $2) "  \
	"AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"

/* A table's topic: the entry's template must give it a valid Kafka topic name. */
static bool check_capture_topic(report *rp, const relay_config *cfg, const capture_config *e,
				PGresult *res, int i)
{
	char what[600], topic[400];
	bool ok = capture_topic_valid(cfg, e, PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), topic,
				      sizeof(topic));

	snprintf(what, sizeof(what), "captured table %s has a valid topic name", PQgetvalue(res, i, 0));
	if (!ok)
		check(rp, false, what, "the template %s gives \"%s\" (a Kafka topic name is at most "
		      "249 of a-z A-Z 0-9 . _ -): set the entry's topic", e->topic, topic);
	return ok;
}

/* Each capture entry: the tables it takes, each with a key, a topic and (for snapshots) SELECT. */
static void check_capture(report *rp, PGconn *c, const relay_config *cfg, const capture_config *e)
{
	char schema[256], what[600];
	const char *dot = strchr(e->tables, '.');
	const char *params[2] = {schema, dot + 1};
	int bad = 0;

	snprintf(schema, sizeof(schema), "%.*s", (int)(dot - e->tables), e->tables);
	PGresult *res = PQexecParams(c, CAPTURE_SQL, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(what, sizeof(what), "capture %s", e->tables);
		check(rp, false, what, "%s", PQerrorMessage(c));
		PQclear(res);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *name = PQgetvalue(res, i, 0);
		bool keyed = strcmp(PQgetvalue(res, i, 2), "t") == 0 || e->n_key_columns > 0;
		snprintf(what, sizeof(what), "captured table %s has a replica identity", name);
		if (strcmp(PQgetvalue(res, i, 3), "t") != 0 && ++bad)
			check(rp, false, what, "wal2json would drop its updates and deletes: ALTER TABLE "
			      "%s ADD PRIMARY KEY (...), or ALTER TABLE %s REPLICA IDENTITY FULL", name, name);
		snprintf(what, sizeof(what), "captured table %s has a key", name);
		if (!keyed && !e->unkeyed && ++bad)
			check(rp, false, what, "ALTER TABLE %s ADD PRIMARY KEY (...), or set key_columns "
			      "or unkeyed = true in its capture entry", name);
		bad += !check_capture_topic(rp, cfg, e, res, i);
		snprintf(what, sizeof(what), "the role may read %s (for snapshots)", name);
		if (e->snapshot && strcmp(PQgetvalue(res, i, 1), "t") != 0 && ++bad)
			check(rp, false, what, "GRANT SELECT ON %s TO <role>; (and USAGE on its schema)", name);
	}
	snprintf(what, sizeof(what), "capture %s takes %d table%s", e->tables, PQntuples(res),
		 PQntuples(res) == 1 ? "" : "s");
	if (!bad)
		check(rp, true, what, " ");
	PQclear(res);
}

/* The relay's slot: fine when missing (it is created), else wal2json, this database, alive. */
static void check_slot(report *rp, PGconn *c, const char *slot)
{
	const char *params[1] = {slot};
	PGresult *res = PQexecParams(c, "SELECT plugin, database = current_database(), active, "
				     "coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
				     1, NULL, params, NULL, NULL, 0);
	char what[256];

	snprintf(what, sizeof(what), "slot \"%s\"", slot);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		check(rp, false, what, "%s", PQresultErrorMessage(res));
	else if (PQntuples(res) == 0)
		check(rp, true, what, " "), printf("     (does not exist yet: the relay creates it)\n");
	else if (strcmp(PQgetvalue(res, 0, 0), "wal2json") != 0)
		check(rp, false, what, "is a slot of plugin %s; use another slot name", PQgetvalue(res, 0, 0));
	else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		check(rp, false, what, "belongs to another database");
	else if (strcmp(PQgetvalue(res, 0, 3), "lost") == 0)
		check(rp, false, what, "was invalidated (WAL removed): events were lost upstream; drop "
		      "it and start again from a new snapshot");
	else
		check(rp, true, what, " "), printf("     (%s)\n", strcmp(PQgetvalue(res, 0, 2), "t") == 0
							   ? "in use by a relay" : "not in use");
	PQclear(res);
}

/*
 * Rows read back from an outbox table (first start, lost slot) are told by the SQL kit's txid and
 * seq columns: the kit's own table must have them; another table is noted when it lacks them.
 */
static void check_read_back(report *rp, PGconn *c, const char *table)
{
	outbox_table t;
	char err[256], what[600];

	if (outbox_table_read(c, table, &t, err, sizeof(err)) < 0 || !t.exists)
		return;
	snprintf(what, sizeof(what), "table %s has txid and seq (rows read back exactly)", table);
	if (strcmp(table, "outbox.events") == 0)
		check(rp, t.has_txid && t.has_seq, what,
		      "upgrade the SQL kit to 1.2: psql -v ON_ERROR_STOP=1 -f sql/outbox.sql");
	else if (!t.has_txid || !t.has_seq)
		printf("note %s: no (add txid xid8 DEFAULT pg_current_xact_id() and seq bigint from a "
		       "sequence, as in sql/outbox.sql, for an exact recovery of a lost slot)\n", what);
}

/* A lost slot is recovered from the outbox table by commit times (docs/exactly-once.md). */
static void check_commit_ts(report *rp, PGconn *c)
{
	char *v = query_value(c, "SHOW track_commit_timestamp", NULL);
	char what[96];

	snprintf(what, sizeof(what), "track_commit_timestamp = %s", v ? v : "?");
	check(rp, v && strcmp(v, "on") == 0, what,
	      "set track_commit_timestamp = on in postgresql.conf and restart PostgreSQL, so that a "
	      "lost slot can be recovered from the outbox table (or set relay.slot_loss = \"stop\")");
	free(v);
}

static void preflight_postgres(report *rp, const relay_config *cfg)
{
	PGconn *c = admin_connect(cfg);
	char *v;

	if (PQstatus(c) != CONNECTION_OK) {
		check(rp, false, "connect to PostgreSQL", "%.*s", (int)strcspn(PQerrorMessage(c), "\n"),
		      PQerrorMessage(c));
		PQfinish(c);
		return;
	}
	check(rp, true, "connect to PostgreSQL", " ");
	v = query_value(c, "SHOW wal_level", NULL);
	char what[128];
	snprintf(what, sizeof(what), "wal_level = %s", v ? v : "?");
	bool logical = v && strcmp(v, "logical") == 0;
	check(rp, logical, what, "set wal_level = logical in postgresql.conf and restart PostgreSQL");
	free(v);
	check_setting_at_least(rp, c, "max_replication_slots", "SELECT count(*) FROM pg_replication_slots");
	check_setting_at_least(rp, c, "max_wal_senders",
			       "SELECT count(*) FROM pg_stat_replication");
	v = query_value(c, "SELECT rolreplication FROM pg_roles WHERE rolname = current_user", NULL);
	check(rp, v && strcmp(v, "t") == 0, "the role has REPLICATION",
	      "ALTER ROLE <role> REPLICATION; (see sql/relay-role.sql)");
	free(v);
	if (logical) /* else no logical slot can be made: wal_level's line says it all */
		check_wal2json(rp, c);
	else
		printf("skip wal2json loads (needs wal_level = logical)\n");
	for (int i = 0; i < cfg->n_sources; i++) {
		if (!cfg->sources[i].table[0])
			continue;
		v = query_value(c, "SELECT to_regclass($1) IS NOT NULL", cfg->sources[i].table);
		snprintf(what, sizeof(what), "table %s exists", cfg->sources[i].table);
		check(rp, v && strcmp(v, "t") == 0, what, "create it (psql -f sql/outbox.sql for outbox.events)");
		free(v);
		if (cfg->exactly_once)
			check_read_back(rp, c, cfg->sources[i].table);
	}
	for (int i = 0; i < cfg->n_captures; i++)
		check_capture(rp, c, cfg, &cfg->captures[i]);
	if (cfg->exactly_once && strcmp(cfg->slot_loss, "stop") != 0)
		check_commit_ts(rp, c);
	check_slot(rp, c, cfg->slot);
	PQfinish(c);
}

/* librdkafka's last error (a TLS or SASL failure says more than "transport failure"). */
static char kafka_last_error[512];

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && kafka_last_error[0])
		return; /* the cause (refused, TLS, SASL) says more */
	snprintf(kafka_last_error, sizeof(kafka_last_error), "%s", reason);
}

/* A producer-less client for metadata: the file's kafka settings. */
static rd_kafka_t *admin_kafka(const relay_config *cfg, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];

	for (int i = 0; i < cfg->n_kafka; i++)
		if (strcmp(cfg->kafka[i].name, "transactional.id") != 0)
			rd_kafka_conf_set(conf, cfg->kafka[i].name, cfg->kafka[i].value, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
	rd_kafka_conf_set_error_cb(conf, on_kafka_error);
	/* Hand-off: rd_kafka_new owns conf on success. */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
	if (!rk)
		rd_kafka_conf_destroy(conf);
	return rk;
}

static void preflight_kafka(report *rp, const relay_config *cfg)
{
	char err[512], what[512];
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_t *rk = admin_kafka(cfg, err, sizeof(err));

	if (!rk) {
		check(rp, false, "Kafka client", "%s", err);
		return;
	}
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_KAFKA_TIMEOUT_MS);
	if (e)
		rd_kafka_poll(rk, 0); /* serves the error callbacks: kafka_last_error */
	snprintf(what, sizeof(what), "reach Kafka at %s", config_kafka_get(cfg, "bootstrap.servers"));
	check(rp, !e, what, "%s%s%s (check kafka.bootstrap_servers and the security settings)",
	      rd_kafka_err2str(e), kafka_last_error[0] ? ": " : "", kafka_last_error);
	if (!e) {
		const char *topics[] = {cfg->checkpoint_topic, cfg->dead_letter_topic,
					cfg->transaction_topic};
		const char *later[] = {"created at the relay's first start",
				       "created at the first dead letter",
				       "created at the first transaction published"};
		for (int t = 0; t < 3; t++) {
			bool found = false;
			if (!topics[t][0])
				continue; /* no transaction topic configured */
			for (int i = 0; i < md->topic_cnt; i++)
				found |= strcmp(md->topics[i].topic, topics[t]) == 0;
			snprintf(what, sizeof(what), "topic %s", topics[t]);
			check(rp, found || cfg->auto_create_topics || t == 0, what,
			      "create it, or set relay.auto_create_topics = true");
			if (!found)
				printf("     (missing: %s)\n", later[t]);
		}
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_destroy(rk);
}

int admin_preflight(const relay_config *cfg)
{
	report rp = {0};

	preflight_postgres(&rp, cfg);
	preflight_kafka(&rp, cfg);
	printf("%s\n", rp.failed ? "preflight: FAILED" : "preflight: all checks passed");
	return rp.failed ? 1 : 0;
}

/*
 * The server's timeline: a primary's current WAL file name begins with it (a standby cannot
 * say: then none). Compared with the checkpoint's, it shows a failover the relay has not met yet.
 */
static void add_server_timeline(json_t *o, PGconn *c)
{
	char *tli = query_value(c, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))"
				"::bit(32)::int8", NULL);

	if (tli)
		json_object_set_new(o, "server_timeline", json_integer(atoll(tli)));
	free(tli);
}

/* Status facts as a JSON object; NULL (with the reason printed) when PostgreSQL is unreachable. */
static json_t *collect_status(const relay_config *cfg)
{
	PGconn *c = admin_connect(cfg);
	const char *params[1] = {cfg->slot};
	json_t *o;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	o = json_object();
	json_object_set_new(o, "slot", json_string(cfg->slot));
	PGresult *res = PQexecParams(c,
		"SELECT s.plugin, s.active, s.active_pid, s.confirmed_flush_lsn::text, s.restart_lsn::text, "
		"pg_current_wal_lsn() - s.restart_lsn, coalesce(s.wal_status, ''), "
		"(SELECT system_identifier::text FROM pg_control_system()), "
		"(SELECT count(*) FROM pg_stat_replication r WHERE r.pid = s.active_pid) "
		"FROM pg_replication_slots s WHERE s.slot_name = $1", 1, NULL, params, NULL, NULL, 0);
	bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	json_object_set_new(o, "slot_exists", json_boolean(exists));
	if (exists) {
		json_object_set_new(o, "plugin", json_string(PQgetvalue(res, 0, 0)));
		json_object_set_new(o, "relay_connected", json_boolean(strcmp(PQgetvalue(res, 0, 1), "t") == 0));
		if (!PQgetisnull(res, 0, 2))
			json_object_set_new(o, "active_pid", json_integer(atoll(PQgetvalue(res, 0, 2))));
		json_object_set_new(o, "confirmed_lsn", json_string(PQgetvalue(res, 0, 3)));
		json_object_set_new(o, "restart_lsn", json_string(PQgetvalue(res, 0, 4)));
		json_object_set_new(o, "retained_wal_bytes", json_integer(atoll(PQgetvalue(res, 0, 5))));
		json_object_set_new(o, "wal_status", json_string(PQgetvalue(res, 0, 6)));
		json_object_set_new(o, "system_identifier", json_string(PQgetvalue(res, 0, 7)));
	}
	PQclear(res);
	add_server_timeline(o, c);
	PQfinish(c);
	return o;
}

/* The checkpoint's recovery facts: its newest commit time and the last backfill's summary. */
/* us since 1970 as RFC 3339 UTC, in buf. */
static const char *format_us(int64_t us, char *buf, size_t len)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06lldZ", (long long)(us % 1000000));
	return buf;
}

static void status_recovery(json_t *o, const checkpoint_recovery *rec)
{
	char when[40];
	if (rec->commit_us > 0) {
		json_object_set_new(o, "checkpoint_commit_time",
				    json_string(format_us(rec->commit_us, when, sizeof(when))));
		json_object_set_new(o, "checkpoint_commit_us", json_integer(rec->commit_us));
	}
	if (rec->backfill) {
		json_t *b = json_loads(rec->backfill, 0, NULL);
		if (b)
			json_object_set_new(o, "backfill", b);
	}
}

/* Adds the checkpoint stored in Kafka (exactly-once mode). */
static void add_checkpoint(json_t *o, const relay_config *cfg)
{
	char err[512], a[LSN_TEXT_MAX];
	const char *set = config_kafka_get(cfg, "transactional.id");
	json_t *sysid = json_object_get(o, "system_identifier");
	checkpoint cp;
	checkpoint_extra x;
	strbuf id = {0};

	if (!cfg->exactly_once || (!set && !sysid))
		return;
	eos_transactional_id(cfg, json_string_value(sysid), &id);
	const char *txn_id = strbuf_str(&id);
	json_object_set_new(o, "transactional_id", json_string(txn_id));
	/* A status never waits long for an open transaction (the running relay's commit, another
	 * relay's): it says what it read before it. */
	checkpoint_read_opts opts = {.wait_ms = ADMIN_CHECKPOINT_WAIT_MS, .partial_ok = true,
				     .no_state = cfg->n_captures == 0}; /* snapshots are of captures */
	checkpoint_result r = checkpoint_load_state(cfg, cfg->checkpoint_topic, txn_id, false, &opts,
						    &cp, &x, err, sizeof(err));
	if (x.state) {
		/* Snapshot progress of captured tables: done, queued, rows of the current one. */
		json_t *snap = json_loads(x.state, 0, NULL);
		json_object_set_new(o, "snapshot", snap ? snap : json_string(x.state));
	}
	status_recovery(o, &x.rec);
	if (x.incomplete[0])
		json_object_set_new(o, "checkpoint_incomplete", json_string(x.incomplete));
	checkpoint_extra_free(&x);
	strbuf_free(&id);
	if (r == CHECKPOINT_FOUND) {
		json_object_set_new(o, "checkpoint_lsn", json_string(lsn_format(cp.lsn, a)));
		if (cp.tli)
			json_object_set_new(o, "checkpoint_timeline", json_integer(cp.tli));
		if (cp.partial_nextlsn)
			json_object_set_new(o, "checkpoint_partial_rows", json_integer((json_int_t)cp.partial_rows));
	} else {
		json_object_set_new(o, "checkpoint_lsn", json_null());
		if (r != CHECKPOINT_NONE)
			json_object_set_new(o, "checkpoint_error", json_string(err));
	}
}

/*
 * Whether a lost slot could be recovered now: commit timestamps on, and the oldest outbox row
 * older than the checkpoint's commit time (else rows after it may be purged already).
 */
static void add_recovery(json_t *o, const relay_config *cfg)
{
	json_t *t = json_object_get(o, "checkpoint_commit_us");
	PGconn *c = admin_connect(cfg);
	char *cts = PQstatus(c) == CONNECTION_OK ? query_value(c, "SHOW track_commit_timestamp", NULL) : NULL;
	int64_t oldest = 0, purged = 0;
	char err[256];
	const char *why = NULL;

	if (!cfg->exactly_once)
		goto out;
	json_object_set_new(o, "track_commit_timestamp", json_boolean(cts && strcmp(cts, "on") == 0));
	if (strcmp(cfg->slot_loss, "stop") == 0)
		why = "relay.slot_loss = stop";
	else if (!cts || strcmp(cts, "on") != 0)
		why = "track_commit_timestamp is off";
	else if (!t)
		why = "the checkpoint records no commit time";
	else if (backfill_purged_through_us(cfg, c, &purged, err, sizeof(err)) < 0)
		why = err;
	else if (purged > json_integer_value(t) - cfg->recovery_window_ms * 1000LL)
		why = "outbox.purge() deleted rows committed after the checkpoint";
	if (cts && strcmp(cts, "on") == 0 &&
	    backfill_oldest_row_us(cfg, c, &oldest, err, sizeof(err)) == 0 && oldest > 0) {
		char when[40];
		json_object_set_new(o, "oldest_outbox_row", json_string(format_us(oldest, when, sizeof(when))));
	}
	json_object_set_new(o, "slot_loss_recovery", json_string(why ? why : "possible"));
out:
	json_object_del(o, "checkpoint_commit_us");
	free(cts);
	PQfinish(c);
}

static void print_human(json_t *o)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v) {
		if (json_is_string(v))
			printf("%-22s %s\n", key, json_string_value(v));
		else if (json_is_integer(v))
			printf("%-22s %lld\n", key, (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			printf("%-22s %s\n", key, json_is_true(v) ? "yes" : "no");
		else if (json_is_object(v)) {
			char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
			printf("%-22s %s\n", key, text);
			free(text);
		} else
			printf("%-22s -\n", key);
	}
}

int admin_status(const relay_config *cfg, bool json)
{
	json_t *o = collect_status(cfg);

	if (!o)
		return 1;
	add_checkpoint(o, cfg);
	add_recovery(o, cfg);
	if (json) {
		char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", text);
		free(text);
	} else {
		print_human(o);
	}
	json_decref(o);
	return 0;
}

/* The request's JSON: {"snapshot":["schema.table",...]} (names checked to be captured first). */
static int snapshot_request_text(const relay_config *cfg, const char *const *tables, int n,
				 strbuf *out)
{
	int bad = 0;

	strbuf_add(out, "{\"snapshot\":[");
	for (int i = 0; i < n; i++) {
		const char *dot = strchr(tables[i], '.');
		strbuf schema = {0};
		if (dot)
			strbuf_addn(&schema, tables[i], (size_t)(dot - tables[i]));
		if (!dot || !config_capture_for(cfg, strbuf_str(&schema), dot + 1)) {
			fprintf(stderr, "%s is not a table the capture list of %s takes (write "
				"schema.table)\n", tables[i], cfg->path);
			bad = 1;
		} else {
			if (out->s[out->len - 1] != '[')
				strbuf_addc(out, ',');
			json_out_string(out, tables[i], strlen(tables[i]));
		}
		strbuf_free(&schema);
	}
	strbuf_add(out, "]}");
	return bad ? -1 : 0;
}

int admin_request_snapshot(const relay_config *cfg, const char *const *tables, int n)
{
	strbuf text = {0}, prefix = {0};
	PGconn *c;
	PGresult *res;
	int code = 1;

	if (!cfg->exactly_once) {
		fprintf(stderr, "%s: snapshots need relay.delivery = \"exactly-once\"\n", cfg->path);
		return 2;
	}
	if (snapshot_request_text(cfg, tables, n, &text) < 0) {
		strbuf_free(&text);
		return 2;
	}
	snapshot_prefix_build(cfg->slot, &prefix);
	const char *params[2] = {strbuf_str(&prefix), strbuf_str(&text)};
	c = admin_connect(cfg);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect to the database: %s", PQerrorMessage(c));
		PQfinish(c);
		strbuf_free(&text);
		strbuf_free(&prefix);
		return 1;
	}
	res = PQexecParams(c, "SELECT pg_logical_emit_message(true, $1, $2)", 2, NULL, params, NULL,
			   NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		printf("snapshot requested (%s); the relay on slot %s takes it in order and logs "
		       "its progress\n", strbuf_str(&text), cfg->slot);
		code = 0;
	} else {
		fprintf(stderr, "cannot write the request: %s", PQerrorMessage(c));
	}
	PQclear(res);
	PQfinish(c);
	strbuf_free(&text);
	strbuf_free(&prefix);
	return code;
}
