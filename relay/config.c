/* config.c: one table drives loading, defaults, validation and the description of every key. */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"
#include "route.h"

typedef enum { OPT_STRING, OPT_BOOL, OPT_INT, OPT_STRING_LIST } opt_type;

typedef struct {
	const char *path; /* "group.key" (a source's keys: just "key") */
	opt_type type;
	size_t offset; /* into relay_config or source_config; a list is a char** then its count */
	const char *def; /* default as text; NULL: required */
	long min, max;   /* OPT_INT range */
	const char *doc;
} opt_def;

#define OFF(field) offsetof(relay_config, field)
#define SRC(field) offsetof(source_config, field)
#define CAP(field) offsetof(capture_config, field)

/* A list field is a char ** followed by its int count. */
_Static_assert(offsetof(source_config, n_headers) == offsetof(source_config, headers) + sizeof(char **),
	       "list count must follow the list");
_Static_assert(offsetof(capture_config, n_key_columns) ==
		       offsetof(capture_config, key_columns) + sizeof(char **) &&
		       offsetof(capture_config, n_include_columns) ==
			       offsetof(capture_config, include_columns) + sizeof(char **) &&
		       offsetof(capture_config, n_exclude_columns) ==
			       offsetof(capture_config, exclude_columns) + sizeof(char **),
	       "list count must follow the list");

static const opt_def opts[] = {
	{"postgresql.conninfo", OPT_STRING, OFF(pg_conninfo), NULL, 0, 0,
	 "libpq connection string of the database to read (replication=database is added)"},
	{"postgresql.slot", OPT_STRING, OFF(slot), "outbox_relay", 0, 0,
	 "logical replication slot; one slot per relay"},
	{"postgresql.create_slot", OPT_BOOL, OFF(create_slot), "true", 0, 0,
	 "create the slot with the wal2json plugin when it does not exist"},
	{"postgresql.status_interval_ms", OPT_INT, OFF(status_interval_ms), "10000", 100, 3600000,
	 "longest time between two status messages to the server; keep it below wal_sender_timeout"},
	{"relay.delivery", OPT_STRING, OFF(delivery), "exactly-once", 0, 0,
	 "exactly-once (Kafka transactions, position stored in Kafka) or at-least-once "
	 "(idempotent producer only; duplicates possible after a crash)"},
	{"relay.checkpoint_topic", OPT_STRING, OFF(checkpoint_topic), "outbox-relay.checkpoints", 0, 0,
	 "compacted topic holding each relay's PostgreSQL position (exactly-once); created on first start"},
	{"relay.transaction_max_records", OPT_INT, OFF(transaction_max_records), "10000", 1, 10000000,
	 "exactly-once: most records in one Kafka transaction (a larger PostgreSQL transaction is split)"},
	{"relay.transaction_max_ms", OPT_INT, OFF(transaction_max_ms), "100", 1, 60000,
	 "exactly-once: longest time a Kafka transaction stays open while rows keep coming (catching "
	 "up on transactions 2 s old or more: at least 1000)"},
	{"relay.first_start", OPT_STRING, OFF(first_start), "backfill", 0, 0,
	 "exactly-once, when the relay creates its slot for the first time: backfill (first publish "
	 "the outbox rows committed before the slot existed) or from-now (only rows committed after)"},
	{"relay.slot_loss", OPT_STRING, OFF(slot_loss), "recover", 0, 0,
	 "exactly-once, when the slot is gone but a checkpoint exists (dropped, failover, invalidated): "
	 "recover (a new slot; the outbox rows committed after the checkpoint come from the table), "
	 "recover-rows (the same, accepting the loss of outbox.emit() events) or stop"},
	{"relay.recovery_window_ms", OPT_INT, OFF(recovery_window_ms), "1000", 10, 600000,
	 "slot-loss recovery: how far commit timestamps may run out of commit order; checkpoints list "
	 "the outbox transactions of this last stretch"},
	{"relay.capture_on_slot_loss", OPT_STRING, OFF(capture_on_slot_loss), "stop", 0, 0,
	 "captured tables when the slot is lost: stop (refuse to start) or resnapshot (publish every "
	 "captured table again, op r)"},
	{"relay.on_error", OPT_STRING, OFF(on_error), "dead-letter", 0, 0,
	 "a row that cannot be published: dead-letter (to relay.dead_letter_topic, and go on) or stop"},
	{"relay.dead_letter_topic", OPT_STRING, OFF(dead_letter_topic), "outbox-relay.dead-letters", 0, 0,
	 "topic for rows that cannot be published, with headers saying why and where from"},
	{"relay.auto_create_topics", OPT_BOOL, OFF(auto_create_topics), "true", 0, 0,
	 "create a missing topic (admin API) at its first record; false: a missing topic stops the relay"},
	{"relay.topic_partitions", OPT_INT, OFF(topic_partitions), "-1", -1, 100000,
	 "partitions of topics the relay creates (-1: the broker's num.partitions)"},
	{"relay.topic_replication_factor", OPT_INT, OFF(topic_replication_factor), "-1", -1, 100,
	 "replication factor of topics the relay creates (-1: the broker's default)"},
	{"relay.log_level", OPT_STRING, OFF(log_level), "info", 0, 0,
	 "error, warn, info or debug"},
	{"relay.lag_warn_mb", OPT_INT, OFF(lag_warn_mb), "1024", 0, 10000000,
	 "warn (at most once a minute) while the server keeps this many MB of WAL for the slot (0: never)"},
	{"relay.log_format", OPT_STRING, OFF(log_format), "text", 0, 0,
	 "text, logfmt (key=value) or json (one object per line)"},
	{"relay.max_in_flight_bytes", OPT_INT, OFF(max_in_flight_bytes), "8388608", 65536, 2147483647,
	 "records handed to Kafka and not yet acknowledged, in bytes (with librdkafka's overhead): "
	 "at this size the relay stops reading the stream until Kafka catches up"},
	{"relay.shutdown_timeout_ms", OPT_INT, OFF(shutdown_timeout_ms), "30000", 0, 3600000,
	 "on SIGTERM, how long to wait for Kafka to acknowledge what is in flight"},
	{"relay.reconnect_max_backoff_ms", OPT_INT, OFF(reconnect_max_backoff_ms), "30000", 100,
	 3600000, "longest wait between two reconnection attempts (the wait doubles from 500 ms)"},
	{"relay.topic_prefix", OPT_STRING, OFF(topic_prefix), "cdc", 0, 0,
	 "${prefix} of the capture topic templates"},
	{"relay.snapshot_chunk_rows", OPT_INT, OFF(snapshot_chunk_rows), "4096", 1, 1000000,
	 "rows a snapshot reads (and holds in memory) at a time, by key order"},
	{"relay.metrics_listen", OPT_STRING, OFF(metrics_listen), "", 0, 0,
	 "host:port of the HTTP server for /metrics (Prometheus), /healthz and /readyz; \":9187\" "
	 "binds 127.0.0.1; \"\": off"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Keys SIGHUP may change while the relay runs; everything else needs a restart. */
static const char *const reloadable[] = {
	"relay.log_level",	       "relay.transaction_max_records", "relay.transaction_max_ms",
	"relay.shutdown_timeout_ms", "relay.reconnect_max_backoff_ms", "postgresql.status_interval_ms",
	"relay.lag_warn_mb",	       "relay.max_in_flight_bytes",
};

static bool is_reloadable(const char *path)
{
	for (size_t i = 0; i < sizeof(reloadable) / sizeof(reloadable[0]); i++)
		if (strcmp(reloadable[i], path) == 0)
			return true;
	return false;
}

/* The keys of each element of the sources list. */
static const opt_def source_opts[] = {
	{"table", OPT_STRING, SRC(table), "", 0, 0,
	 "outbox table (schema.table); or set message_prefix"},
	{"message_prefix", OPT_STRING, SRC(message_prefix), "", 0, 0,
	 "publish pg_logical_emit_message messages with this prefix (see docs/sql.md: outbox.emit)"},
	{"topic", OPT_STRING, SRC(topic), "outbox.${aggregate_type}", 0, 0,
	 "topic template: ${column} (or envelope member), ${schema}, ${table}, ${prefix}"},
	{"key", OPT_STRING, SRC(key), "aggregate_id", 0, 0, "column giving the record key"},
	{"value", OPT_STRING, SRC(value), "payload", 0, 0,
	 "column giving the record value, copied byte for byte"},
	{"event_id", OPT_STRING, SRC(event_id), "id", 0, 0, "column giving the event_id header"},
	{"event_type", OPT_STRING, SRC(event_type), "event_type", 0, 0,
	 "column giving the event_type header"},
	{"timestamp", OPT_STRING, SRC(timestamp), "", 0, 0,
	 "record timestamp: a timestamptz column, \"commit\" (commit time) or \"\" (produce time)"},
	{"headers_column", OPT_STRING, SRC(headers_column), "headers", 0, 0,
	 "column holding a JSON object; each member becomes a header (W3C traceparent passes through)"},
	{"headers", OPT_STRING_LIST, SRC(headers), "", 0, 0,
	 "more columns copied to headers under their own names (schema_version, tenant, ...)"},
	{"tombstones", OPT_BOOL, SRC(tombstones), "false", 0, 0,
	 "a null or empty value becomes a tombstone (null value); false: a null value is dead-lettered"},
	{"cloudevents", OPT_BOOL, SRC(cloudevents), "false", 0, 0,
	 "add CloudEvents binary-mode headers: ce_specversion ce_id ce_type ce_source ce_time"},
	{"ce_source", OPT_STRING, SRC(ce_source), "", 0, 0,
	 "the ce_source header (default /outbox-relay/<schema>.<table>, or /outbox-relay/<prefix>)"},
};

#define N_SOURCE_OPTS (sizeof(source_opts) / sizeof(source_opts[0]))
#define SOURCES "sources"

/* The keys of each element of the capture list. */
static const opt_def capture_opts[] = {
	{"tables", OPT_STRING, CAP(tables), "", 0, 0,
	 "tables to capture: schema.table, either part may be * (all)"},
	{"topic", OPT_STRING, CAP(topic), "${prefix}.${schema}.${table}", 0, 0,
	 "topic template: ${prefix} (relay.topic_prefix), ${schema}, ${table}"},
	{"key_columns", OPT_STRING_LIST, CAP(key_columns), "", 0, 0,
	 "columns of the record key (default: the primary key, else the replica identity index)"},
	{"include_columns", OPT_STRING_LIST, CAP(include_columns), "", 0, 0,
	 "publish only these columns (default: all)"},
	{"exclude_columns", OPT_STRING_LIST, CAP(exclude_columns), "", 0, 0,
	 "never publish these columns (e.g. password_hash)"},
	{"unkeyed", OPT_BOOL, CAP(unkeyed), "false", 0, 0,
	 "publish a table without primary key or replica identity index with null keys (else refused)"},
	{"tombstones", OPT_BOOL, CAP(tombstones), "true", 0, 0,
	 "follow each delete with a tombstone (null value) for compacted topics"},
	{"snapshot", OPT_BOOL, CAP(snapshot), "true", 0, 0,
	 "publish the existing rows (op r) when a table is first captured (needs exactly-once)"},
};

#define N_CAPTURE_OPTS (sizeof(capture_opts) / sizeof(capture_opts[0]))
#define CAPTURE "capture"

/* A list of groups in the file, each loaded through its own table of keys. */
typedef struct {
	const char *name;
	const opt_def *opts;
	size_t n_opts;
} list_spec;

static const list_spec source_list = {SOURCES, source_opts, N_SOURCE_OPTS};
static const list_spec capture_list = {CAPTURE, capture_opts, N_CAPTURE_OPTS};

static const char *const type_names[] = {"string", "bool", "integer", "list of strings"};
static const char *const type_articles[] = {"a", "a", "an", "a"};

/* The group that passes its keys to librdkafka (names with '_' for '.'). */
#define KAFKA_GROUP "kafka"

static void *field(void *base, const opt_def *o) { return (char *)base + o->offset; }

static int setting_line(const config_setting_t *s)
{
	int line = (int)config_setting_source_line(s);
	return line > 0 ? line : 1;
}

/* Splits a comma-separated default into a list. */
static void set_list(char ***list, int *n, const char *text)
{
	char *copy = xstrdup(text), *save = NULL;
	*n = 0;
	*list = xcalloc(1, sizeof(char *));
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		*list = xrealloc(*list, sizeof(char *) * (size_t)(*n + 1));
		(*list)[(*n)++] = xstrdup(tok);
	}
	free(copy);
}

static void apply_default(void *base, const opt_def *o)
{
	void *f = field(base, o);
	switch (o->type) {
	case OPT_STRING:
		*(char **)f = xstrdup(o->def);
		break;
	case OPT_BOOL:
		*(bool *)f = strcmp(o->def, "true") == 0;
		break;
	case OPT_INT:
		*(int *)f = atoi(o->def);
		break;
	case OPT_STRING_LIST:
		set_list((char ***)f, (int *)((char *)f + sizeof(char **)), o->def);
		break;
	}
}

/*
 * Reads one setting of a table into base; reports a wrong type or range at the setting's line,
 * naming it as name (the path, or "sources[2].key").
 */
static int load_opt(const relay_config *cfg, void *base, const opt_def *o, const char *name,
		    const config_setting_t *s, FILE *err)
{
	void *f = field(base, o);
	int type = config_setting_type(s);

	switch (o->type) {
	case OPT_STRING:
		if (type != CONFIG_TYPE_STRING)
			goto wrong_type;
		*(char **)f = xstrdup(config_setting_get_string(s));
		return 0;
	case OPT_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			goto wrong_type;
		*(bool *)f = config_setting_get_bool(s);
		return 0;
	case OPT_INT: {
		long long v;
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			goto wrong_type;
		v = config_setting_get_int64(s);
		if (v < o->min || v > o->max) {
			fprintf(err, "%s:%d: %s = %lld is out of range (%ld to %ld)\n", cfg->path,
				setting_line(s), name, v, o->min, o->max);
			return -1;
		}
		*(int *)f = (int)v;
		return 0;
	}
	case OPT_STRING_LIST: {
		char ***list = (char ***)f;
		int *n = (int *)((char *)f + sizeof(char **));
		int count = config_setting_length(s);
		if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
			goto wrong_type;
		*list = xcalloc((size_t)count + 1, sizeof(char *));
		*n = 0;
		for (int i = 0; i < count; i++) {
			const char *v = config_setting_get_string_elem(s, i);
			if (!v)
				goto wrong_type;
			(*list)[(*n)++] = xstrdup(v);
		}
		return 0;
	}
	}
wrong_type:
	fprintf(err, "%s:%d: %s must be %s %s\n", cfg->path, setting_line(s), name,
		type_articles[o->type], type_names[o->type]);
	return -1;
}

static const opt_def *find_opt(const char *group, const char *name)
{
	size_t glen = strlen(group);
	for (size_t i = 0; i < N_OPTS; i++) {
		const char *p = opts[i].path;
		if (strncmp(p, group, glen) == 0 && p[glen] == '.' && strcmp(p + glen + 1, name) == 0)
			return &opts[i];
	}
	return NULL;
}

/*
 * Turns a setting value into the text librdkafka expects (a new string), NULL for a group,
 * list or array. Strings are copied whole: PEM certificates run to many kilobytes.
 */
static char *kafka_value_text(const config_setting_t *s)
{
	char buf[64];

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return xstrdup(config_setting_get_string(s));
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(buf, sizeof(buf), "%lld", config_setting_get_int64(s));
		return xstrdup(buf);
	case CONFIG_TYPE_BOOL:
		return xstrdup(config_setting_get_bool(s) ? "true" : "false");
	case CONFIG_TYPE_FLOAT:
		/* 15 digits: 0.123456789 stays as written, 1e7 becomes 10000000. */
		snprintf(buf, sizeof(buf), "%.15g", config_setting_get_float(s));
		return xstrdup(buf);
	default:
		return NULL;
	}
}

/* Copies the kafka group; a key such as bootstrap_servers becomes bootstrap.servers. */
static int load_kafka(relay_config *cfg, const config_setting_t *group, FILE *err)
{
	int n = config_setting_length(group), bad = 0;

	cfg->kafka = xcalloc((size_t)n + 1, sizeof(kafka_property));
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		char *value = kafka_value_text(s);
		if (!value) {
			fprintf(err, "%s:%d: kafka.%s must be a string, number or bool\n", cfg->path,
				setting_line(s), config_setting_name(s));
			bad = -1;
			continue;
		}
		kafka_property *p = &cfg->kafka[cfg->n_kafka++];
		p->name = xstrdup(config_setting_name(s));
		for (char *c = p->name; *c; c++)
			if (*c == '_')
				*c = '.';
		p->value = value;
		p->line = setting_line(s);
	}
	return bad;
}

static bool group_known(const char *gname)
{
	size_t glen = strlen(gname);
	if (strcmp(gname, KAFKA_GROUP) == 0 || strcmp(gname, SOURCES) == 0 ||
	    strcmp(gname, CAPTURE) == 0)
		return true;
	for (size_t i = 0; i < N_OPTS; i++)
		if (strncmp(opts[i].path, gname, glen) == 0 && opts[i].path[glen] == '.')
			return true;
	return false;
}

/* Every group and key in the file must be known: a typo is an error, not a silent default. */
static int check_unknown(relay_config *cfg, const config_setting_t *root, FILE *err)
{
	int bad = 0, n = config_setting_length(root);

	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
		const char *gname = config_setting_name(g);
		if (strcmp(gname, SOURCES) == 0 || strcmp(gname, CAPTURE) == 0)
			continue; /* a list: load_list checks it */
		if (!group_known(gname) || !config_setting_is_group(g)) {
			fprintf(err, "%s:%d: unknown %s '%s'\n", cfg->path, setting_line(g),
				config_setting_is_group(g) ? "group" : "setting", gname);
			bad = -1;
			continue;
		}
		if (strcmp(gname, KAFKA_GROUP) == 0)
			continue;
		for (int j = 0; j < config_setting_length(g); j++) {
			const config_setting_t *s = config_setting_get_elem(g, (unsigned)j);
			if (!find_opt(gname, config_setting_name(s))) {
				fprintf(err, "%s:%d: unknown setting '%s.%s'\n", cfg->path,
					setting_line(s), gname, config_setting_name(s));
				bad = -1;
			}
		}
	}
	return bad;
}

/* The line of a setting, or 1 when the file does not have it (a default, a missing key). */
static int line_of(const config_t *lc, const char *path)
{
	const config_setting_t *s = config_lookup(lc, path);
	return s ? setting_line(s) : 1;
}

/* "schema.table" with both parts non-empty. */
static bool table_name_ok(const char *name)
{
	const char *dot = strchr(name, '.');
	return dot && dot != name && dot[1] != '\0';
}

/* Frees what one key of a table holds (a wrong-typed list may be half built). */
static void free_opts_one(void *base, const opt_def *o)
{
	void *f = field(base, o);
	if (o->type == OPT_STRING) {
		free(*(char **)f);
		*(char **)f = NULL;
	} else if (o->type == OPT_STRING_LIST) {
		char **list = *(char ***)f;
		int *n = (int *)((char *)f + sizeof(char **));
		for (int k = 0; list && k < *n; k++)
			free(list[k]);
		free(list);
		*(char ***)f = NULL;
		*n = 0;
	}
}

/* Loads one element of a list; its keys come from the list's table or their defaults. */
static int load_entry(relay_config *cfg, const list_spec *ls, void *base, int *line,
		      const config_setting_t *g, int idx, FILE *err)
{
	char name[128];
	int bad = 0;

	*line = g ? setting_line(g) : 1;
	for (int j = 0; g && j < config_setting_length(g); j++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)j);
		const char *key = config_setting_name(s);
		size_t k;
		for (k = 0; k < ls->n_opts && strcmp(ls->opts[k].path, key) != 0; k++)
			;
		if (k == ls->n_opts) {
			fprintf(err, "%s:%d: unknown setting '%s[%d].%s'\n", cfg->path,
				setting_line(s), ls->name, idx, key ? key : "?");
			bad = -1;
		}
	}
	for (size_t k = 0; k < ls->n_opts; k++) {
		const config_setting_t *s = g ? config_setting_get_member(g, ls->opts[k].path) : NULL;
		snprintf(name, sizeof(name), "%s[%d].%s", ls->name, idx, ls->opts[k].path);
		if (!s) {
			apply_default(base, &ls->opts[k]);
		} else if (load_opt(cfg, base, &ls->opts[k], name, s, err) < 0) {
			/* Reported; the default keeps the entry whole for the checks that follow. */
			free_opts_one(base, &ls->opts[k]);
			apply_default(base, &ls->opts[k]);
			bad = -1;
		}
	}
	return bad;
}

/* A source reads exactly one of a table and a message prefix. */
static int check_source(const relay_config *cfg, const source_config *src, int idx, FILE *err)
{
	char why[512];
	bool has_table = src->table && src->table[0], has_prefix = src->message_prefix && src->message_prefix[0];

	if (has_table == has_prefix) {
		fprintf(err, "%s:%d: sources[%d] needs exactly one of table and message_prefix\n",
			cfg->path, src->line, idx);
		return -1;
	}
	if (has_table && !table_name_ok(src->table)) {
		fprintf(err, "%s:%d: sources[%d].table '%s' must be schema.table\n", cfg->path,
			src->line, idx, src->table);
		return -1;
	}
	if (router_check_template(src->topic, why, sizeof(why)) < 0) {
		fprintf(err, "%s:%d: sources[%d].topic: %s\n", cfg->path, src->line, idx, why);
		return -1;
	}
	if (!src->key[0] || !src->value[0]) {
		fprintf(err, "%s:%d: sources[%d].%s must name a column\n", cfg->path, src->line, idx,
			src->key[0] ? "value" : "key");
		return -1;
	}
	for (int k = 0; k < idx; k++) {
		const source_config *o = &cfg->sources[k];
		if (strcmp(o->table, src->table) == 0 && strcmp(o->message_prefix, src->message_prefix) == 0) {
			fprintf(err, "%s:%d: sources[%d] reads the same %s as sources[%d]\n", cfg->path,
				src->line, idx, has_table ? "table" : "message prefix", k);
			return -1;
		}
	}
	return 0;
}

/*
 * The groups of a list: NULL entries (g) when the file has no such list. Returns the list's
 * setting, or NULL; -1 in *bad for a list that is not a non-empty list of groups.
 */
static const config_setting_t *list_groups(relay_config *cfg, const config_t *lc, const char *lname,
					   int *n, int *bad, FILE *err)
{
	const config_setting_t *list = config_lookup(lc, lname);

	*n = list ? config_setting_length(list) : 0;
	if (list && (!config_setting_is_list(list) || *n == 0)) {
		fprintf(err, "%s:%d: %s must be a non-empty list of groups: ( { ... } )\n", cfg->path,
			setting_line(list), lname);
		*bad = -1;
		*n = 0;
		return NULL;
	}
	return list;
}

/* One group of a list, or NULL (reported) when the element is not a group. */
static const config_setting_t *list_group(relay_config *cfg, const config_setting_t *list, int i,
					  const char *lname, int *bad, FILE *err)
{
	const config_setting_t *g = list ? config_setting_get_elem(list, (unsigned)i) : NULL;
	if (g && !config_setting_is_group(g)) {
		fprintf(err, "%s:%d: %s[%d] must be a group { ... }\n", cfg->path, setting_line(g),
			lname, i);
		*bad = -1;
		return NULL;
	}
	return g;
}

/*
 * The sources list; without one, a single source reads outbox.events with the defaults (unless
 * the file captures tables: then there is no outbox source).
 */
static int load_sources(relay_config *cfg, const config_t *lc, FILE *err)
{
	int n, bad = 0;
	const config_setting_t *list = list_groups(cfg, lc, SOURCES, &n, &bad, err);

	if (bad)
		return bad;
	if (!list && config_lookup(lc, CAPTURE))
		return 0;
	if (!list)
		n = 1;
	cfg->sources = xcalloc((size_t)n, sizeof(source_config));
	cfg->n_sources = n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = list_group(cfg, list, i, SOURCES, &bad, err);
		source_config *src = &cfg->sources[i];
		int b = load_entry(cfg, &source_list, src, &src->line, g, i, err);
		if (!list) {
			free(src->table);
			src->table = xstrdup("outbox.events");
		}
		if (b == 0)
			b = check_source(cfg, src, i, err);
		bad |= b;
	}
	return bad;
}

/* One part of a capture pattern: "*" or a name without "*" (wal2json matches whole parts). */
static bool pattern_part_ok(const char *p, size_t len)
{
	if (len == 0)
		return false;
	if (len == 1 && p[0] == '*')
		return true;
	return memchr(p, '*', len) == NULL;
}

/* A capture entry: a valid pattern and template, and columns either included or excluded. */
static int check_capture(const relay_config *cfg, const capture_config *c, int idx, FILE *err)
{
	char why[512];
	const char *dot = strchr(c->tables, '.');

	if (!dot || !pattern_part_ok(c->tables, (size_t)(dot - c->tables)) ||
	    !pattern_part_ok(dot + 1, strlen(dot + 1))) {
		fprintf(err, "%s:%d: capture[%d].tables '%s' must be schema.table, where either part "
			"may be * (for example public.users, public.*, *.orders)\n", cfg->path, c->line,
			idx, c->tables);
		return -1;
	}
	if (router_check_template(c->topic, why, sizeof(why)) < 0) {
		fprintf(err, "%s:%d: capture[%d].topic: %s\n", cfg->path, c->line, idx, why);
		return -1;
	}
	if (c->n_include_columns > 0 && c->n_exclude_columns > 0) {
		fprintf(err, "%s:%d: capture[%d] sets both include_columns and exclude_columns: "
			"keep one\n", cfg->path, c->line, idx);
		return -1;
	}
	if (c->snapshot && !cfg->exactly_once) {
		fprintf(err, "%s:%d: capture[%d].snapshot needs relay.delivery = \"exactly-once\" "
			"(a snapshot's progress is stored with the checkpoint); set snapshot = false\n",
			cfg->path, c->line, idx);
		return -1;
	}
	return 0;
}

/* The capture list (optional). */
static int load_captures(relay_config *cfg, const config_t *lc, FILE *err)
{
	int n, bad = 0;
	const config_setting_t *list = list_groups(cfg, lc, CAPTURE, &n, &bad, err);

	if (!list)
		return bad;
	cfg->captures = xcalloc((size_t)n, sizeof(capture_config));
	cfg->n_captures = n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = list_group(cfg, list, i, CAPTURE, &bad, err);
		capture_config *c = &cfg->captures[i];
		bad |= load_entry(cfg, &capture_list, c, &c->line, g, i, err);
	}
	return bad;
}

/* A word-valued key must be one of the comma-separated choices; -1 with a FILE:LINE message. */
static int check_choice(const relay_config *cfg, const config_t *lc, const char *key,
			const char *value, const char *choices, FILE *err)
{
	size_t n = strlen(value);
	for (const char *p = choices; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, value, n) == 0)
			return 0;
		p = end ? end + 2 : p + len;
	}
	fprintf(err, "%s:%d: %s '%s' is not one of %s\n", cfg->path, line_of(lc, key), key, value,
		choices);
	return -1;
}

/* Checks values that span keys (done after each key is valid on its own). */
static int check_values(relay_config *cfg, const config_t *lc, FILE *err)
{
	log_level_t lvl;
	int bad = 0;

	if (!log_parse_level(cfg->log_level, &lvl)) {
		fprintf(err, "%s:%d: relay.log_level '%s' is not one of error, warn, info, debug\n",
			cfg->path, line_of(lc, "relay.log_level"), cfg->log_level);
		bad = -1;
	}
	log_format_t fmt;
	if (!log_parse_format(cfg->log_format, &fmt)) {
		fprintf(err, "%s:%d: relay.log_format '%s' is not one of text, logfmt, json\n",
			cfg->path, line_of(lc, "relay.log_format"), cfg->log_format);
		bad = -1;
	}
	cfg->dead_letter = strcmp(cfg->on_error, "dead-letter") == 0;
	if (!cfg->dead_letter && strcmp(cfg->on_error, "stop") != 0) {
		fprintf(err, "%s:%d: relay.on_error '%s' is not dead-letter or stop\n", cfg->path,
			line_of(lc, "relay.on_error"), cfg->on_error);
		bad = -1;
	}
	bad |= check_choice(cfg, lc, "relay.first_start", cfg->first_start, "backfill, from-now", err);
	bad |= check_choice(cfg, lc, "relay.slot_loss", cfg->slot_loss, "recover, recover-rows, stop",
			    err);
	bad |= check_choice(cfg, lc, "relay.capture_on_slot_loss", cfg->capture_on_slot_loss,
			    "stop, resnapshot", err);
	if (!config_kafka_get(cfg, "bootstrap.servers")) {
		fprintf(err, "%s:%d: kafka.bootstrap_servers is required\n", cfg->path,
			line_of(lc, KAFKA_GROUP));
		bad = -1;
	}
	cfg->exactly_once = strcmp(cfg->delivery, "exactly-once") == 0;
	if (!cfg->exactly_once && strcmp(cfg->delivery, "at-least-once") != 0) {
		fprintf(err, "%s:%d: relay.delivery '%s' is not exactly-once or at-least-once\n",
			cfg->path, line_of(lc, "relay.delivery"), cfg->delivery);
		bad = -1;
	}
	for (int i = 0; i < cfg->n_captures; i++)
		bad |= check_capture(cfg, &cfg->captures[i], i, err);
	if (!cfg->exactly_once && config_kafka_get(cfg, "transactional.id")) {
		fprintf(err, "%s:%d: kafka.transactional_id needs relay.delivery = \"exactly-once\"\n",
			cfg->path, line_of(lc, KAFKA_GROUP));
		bad = -1;
	}
	return bad;
}

/*
 * Reads the whole file into a NUL-terminated buffer; NULL with errno set on a read error.
 * (libconfig's own reader exits the process when a read fails, e.g. on a directory.)
 */
static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 0;
	char *buf = NULL;

	*len = 0;
	for (;;) {
		if (cap - *len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		size_t n = fread(buf + *len, 1, cap - *len - 1, f);
		*len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		int e = errno;
		free(buf);
		errno = e;
		return NULL;
	}
	buf[*len] = '\0';
	return buf;
}

/* Opens, reads and parses the file into lc; reports why not at FILE:LINE. */
static int parse_file(config_t *lc, const char *path, FILE *err)
{
	FILE *f = fopen(path, "r");
	size_t len;
	char *text;
	int ok;

	if (!f) {
		fprintf(err, "%s:0: cannot open: %s\n", path, strerror(errno));
		return -1;
	}
	text = read_all(f, &len);
	if (!text)
		fprintf(err, "%s:0: cannot read: %s\n", path, strerror(errno));
	fclose(f);
	if (!text)
		return -1;
	if (strlen(text) != len) {
		fprintf(err, "%s:0: the file holds a NUL byte: not a text file\n", path);
		free(text);
		return -1;
	}
	ok = config_read_string(lc, text) == CONFIG_TRUE;
	free(text);
	if (!ok) {
		fprintf(err, "%s:%d: %s\n", path, config_error_line(lc), config_error_text(lc));
		return -1;
	}
	return 0;
}

relay_config *config_load(const char *path, FILE *err)
{
	config_t lc;
	relay_config *cfg = xcalloc(1, sizeof(*cfg));
	int bad = 0;

	cfg->path = xstrdup(path);
	config_init(&lc);
	if (parse_file(&lc, path, err) < 0)
		goto fail;
	if (config_setting_length(config_root_setting(&lc)) == 0) {
		fprintf(err, "%s:1: the file is empty; at least postgresql.conninfo and "
			     "kafka.bootstrap_servers are needed\n", path);
		goto fail;
	}
	bad |= check_unknown(cfg, config_root_setting(&lc), err);
	for (size_t i = 0; i < N_OPTS; i++) {
		const config_setting_t *s = config_lookup(&lc, opts[i].path);
		if (s) {
			bad |= load_opt(cfg, cfg, &opts[i], opts[i].path, s, err);
		} else if (opts[i].def) {
			apply_default(cfg, &opts[i]);
		} else {
			fprintf(err, "%s:1: %s is required\n", path, opts[i].path);
			bad = -1;
		}
	}
	bad |= load_sources(cfg, &lc, err);
	bad |= load_captures(cfg, &lc, err);
	const config_setting_t *kg = config_lookup(&lc, KAFKA_GROUP);
	if (kg && config_setting_is_group(kg))
		bad |= load_kafka(cfg, kg, err);
	if (bad == 0)
		bad |= check_values(cfg, &lc, err);
	if (bad)
		goto fail;
	config_destroy(&lc);
	return cfg;
fail:
	config_destroy(&lc);
	config_free(cfg);
	return NULL;
}

/* Frees the strings and lists a table of keys loaded into base. */
static void free_opts(void *base, const opt_def *table, size_t n_opts)
{
	for (size_t i = 0; i < n_opts; i++) {
		void *f = field(base, &table[i]);
		if (table[i].type == OPT_STRING) {
			free(*(char **)f);
		} else if (table[i].type == OPT_STRING_LIST) {
			char **list = *(char ***)f;
			int n = *(int *)((char *)f + sizeof(char **));
			for (int k = 0; k < n; k++)
				free(list[k]);
			free(list);
		}
	}
}

void config_free(relay_config *cfg)
{
	if (!cfg)
		return;
	free_opts(cfg, opts, N_OPTS);
	for (int i = 0; i < cfg->n_sources; i++)
		free_opts(&cfg->sources[i], source_opts, N_SOURCE_OPTS);
	free(cfg->sources);
	for (int i = 0; i < cfg->n_captures; i++)
		free_opts(&cfg->captures[i], capture_opts, N_CAPTURE_OPTS);
	free(cfg->captures);
	if (cfg->pg_password) {
		explicit_bzero(cfg->pg_password, strlen(cfg->pg_password));
		free(cfg->pg_password);
	}
	for (int i = 0; i < cfg->n_kafka; i++) {
		free(cfg->kafka[i].name);
		free(cfg->kafka[i].value);
	}
	free(cfg->kafka);
	free(cfg->path);
	free(cfg);
}

/* One part of a capture pattern: "*" takes any name. */
static bool part_matches(const char *pat, size_t plen, const char *name)
{
	return (plen == 1 && pat[0] == '*') || (strlen(name) == plen && memcmp(pat, name, plen) == 0);
}

const capture_config *config_capture_for(const relay_config *cfg, const char *schema,
					 const char *table)
{
	for (int i = 0; i < cfg->n_captures; i++) {
		const capture_config *e = &cfg->captures[i];
		const char *dot = strchr(e->tables, '.');
		if (part_matches(e->tables, (size_t)(dot - e->tables), schema) &&
		    part_matches(dot + 1, strlen(dot + 1), table))
			return e;
	}
	return NULL;
}

const char *config_kafka_get(const relay_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_kafka; i++)
		if (strcmp(cfg->kafka[i].name, name) == 0)
			return cfg->kafka[i].value;
	return NULL;
}

void config_describe(FILE *out)
{
	fprintf(out, "| key | type | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < N_OPTS; i++)
		fprintf(out, "| `%s` | %s | %s | %s |\n", opts[i].path, type_names[opts[i].type],
			opts[i].def ? opts[i].def : "(required)", opts[i].doc);
	for (size_t i = 0; i < N_SOURCE_OPTS; i++)
		fprintf(out, "| `sources[].%s` | %s | %s | %s |\n", source_opts[i].path,
			type_names[source_opts[i].type],
			source_opts[i].def[0] ? source_opts[i].def : "\"\"", source_opts[i].doc);
	for (size_t i = 0; i < N_CAPTURE_OPTS; i++)
		fprintf(out, "| `capture[].%s` | %s | %s | %s |\n", capture_opts[i].path,
			type_names[capture_opts[i].type],
			capture_opts[i].def[0] ? capture_opts[i].def : "\"\"", capture_opts[i].doc);
	fprintf(out, "| `kafka.*` | any | | librdkafka properties, `_` written for `.` "
		     "(`bootstrap_servers` is `bootstrap.servers`); `bootstrap_servers` is required |\n");
}

/* True when a key of the opts table holds the same value in both. */
static bool same_value(const relay_config *a, const relay_config *b, const opt_def *o)
{
	const void *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
	switch (o->type) {
	case OPT_STRING:
		return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
	case OPT_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case OPT_INT:
		return *(const int *)fa == *(const int *)fb;
	default:
		return true; /* no list keys at the top level */
	}
}

/* True when two entries of a list hold the same values for every key of its table. */
static bool same_entry(const list_spec *ls, const void *a, const void *b)
{
	for (size_t k = 0; k < ls->n_opts; k++) {
		const opt_def *o = &ls->opts[k];
		const void *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
		if (o->type == OPT_STRING && strcmp(*(char *const *)fa, *(char *const *)fb) != 0)
			return false;
		if (o->type == OPT_BOOL && *(const bool *)fa != *(const bool *)fb)
			return false;
		if (o->type == OPT_STRING_LIST) {
			int na = *(const int *)((const char *)fa + sizeof(char **));
			int nb = *(const int *)((const char *)fb + sizeof(char **));
			if (na != nb)
				return false;
			for (int j = 0; j < na; j++)
				if (strcmp((*(char **const *)fa)[j], (*(char **const *)fb)[j]) != 0)
					return false;
		}
	}
	return true;
}

/* True when sources, captures and kafka settings are the same (they need a restart to change). */
static bool same_sources_and_kafka(const relay_config *a, const relay_config *b)
{
	if (a->n_sources != b->n_sources || a->n_kafka != b->n_kafka || a->n_captures != b->n_captures)
		return false;
	for (int i = 0; i < a->n_kafka; i++)
		if (strcmp(a->kafka[i].name, b->kafka[i].name) != 0 ||
		    strcmp(a->kafka[i].value, b->kafka[i].value) != 0)
			return false;
	for (int i = 0; i < a->n_sources; i++)
		if (!same_entry(&source_list, &a->sources[i], &b->sources[i]))
			return false;
	for (int i = 0; i < a->n_captures; i++)
		if (!same_entry(&capture_list, &a->captures[i], &b->captures[i]))
			return false;
	return true;
}

void config_reload(relay_config *running, const relay_config *fresh)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt_def *o = &opts[i];
		if (same_value(running, fresh, o))
			continue;
		if (!is_reloadable(o->path)) {
			log_warn("reload: %s changed, which needs a restart; keeping the running value",
				 o->path);
			continue;
		}
		void *f = field(running, o);
		const void *nf = (const char *)fresh + o->offset;
		if (o->type == OPT_STRING) {
			free(*(char **)f);
			*(char **)f = xstrdup(*(char *const *)nf);
		} else if (o->type == OPT_INT) {
			*(int *)f = *(const int *)nf;
		} else if (o->type == OPT_BOOL) {
			*(bool *)f = *(const bool *)nf;
		}
		log_info("reload: %s changed", o->path);
	}
	if (!same_sources_and_kafka(running, fresh))
		log_warn("reload: sources, capture or kafka settings changed, which needs a restart; keeping the "
			 "running ones");
}

/* The content of $CREDENTIALS_DIRECTORY/name without its trailing newline; NULL when absent. */
static char *read_credential(const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	size_t len;
	FILE *f;
	char *text;

	if (!dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	text = read_all(f, &len);
	fclose(f);
	while (text && len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

void config_load_credentials(relay_config *cfg)
{
	char *kafka_pw = read_credential("kafka-sasl-password");

	cfg->pg_password = read_credential("pgpassword");
	if (kafka_pw) {
		cfg->kafka = xrealloc(cfg->kafka, sizeof(kafka_property) * (size_t)(cfg->n_kafka + 1));
		kafka_property *p = &cfg->kafka[cfg->n_kafka++];
		p->name = xstrdup("sasl.password");
		p->value = kafka_pw;
		p->line = 0;
	}
}
