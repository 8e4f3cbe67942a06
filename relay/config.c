/* config.c: one table drives loading, defaults, validation and the description of every key. */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef enum { OPT_STRING, OPT_BOOL, OPT_INT, OPT_STRING_LIST } opt_type;

typedef struct {
	const char *path; /* "group.key" */
	opt_type type;
	size_t offset; /* into relay_config; for lists, the char** (the count follows it) */
	const char *def; /* default as text; NULL: required */
	long min, max;   /* OPT_INT range */
	const char *doc;
} opt_def;

#define OFF(field) offsetof(relay_config, field)

/* A list field is a char ** followed by its int count. */
_Static_assert(offsetof(relay_config, n_tables) == offsetof(relay_config, tables) + sizeof(char **),
	       "list count must follow the list");

static const opt_def opts[] = {
	{"postgresql.conninfo", OPT_STRING, OFF(pg_conninfo), NULL, 0, 0,
	 "libpq connection string of the database to read (replication=database is added)"},
	{"postgresql.slot", OPT_STRING, OFF(slot), "outbox_relay", 0, 0,
	 "logical replication slot; one slot per relay"},
	{"postgresql.create_slot", OPT_BOOL, OFF(create_slot), "true", 0, 0,
	 "create the slot with the wal2json plugin when it does not exist"},
	{"postgresql.tables", OPT_STRING_LIST, OFF(tables), "outbox.events", 0, 0,
	 "outbox tables to read (schema.table)"},
	{"postgresql.status_interval_ms", OPT_INT, OFF(status_interval_ms), "10000", 100, 3600000,
	 "longest time between two status messages to the server; keep it below wal_sender_timeout"},
	{"outbox.topic", OPT_STRING, OFF(topic_template), "outbox.${aggregate_type}", 0, 0,
	 "topic template; placeholders: ${aggregate_type} ${event_type} ${schema} ${table}"},
	{"relay.delivery", OPT_STRING, OFF(delivery), "exactly-once", 0, 0,
	 "exactly-once (Kafka transactions, position stored in Kafka) or at-least-once "
	 "(idempotent producer only; duplicates possible after a crash)"},
	{"relay.checkpoint_topic", OPT_STRING, OFF(checkpoint_topic), "outbox-relay.checkpoints", 0, 0,
	 "compacted topic holding each relay's PostgreSQL position (exactly-once); created on first start"},
	{"relay.transaction_max_records", OPT_INT, OFF(transaction_max_records), "10000", 1, 10000000,
	 "exactly-once: most records in one Kafka transaction (a larger PostgreSQL transaction is split)"},
	{"relay.transaction_max_ms", OPT_INT, OFF(transaction_max_ms), "100", 1, 60000,
	 "exactly-once: longest time a Kafka transaction stays open while rows keep coming"},
	{"relay.log_level", OPT_STRING, OFF(log_level), "info", 0, 0,
	 "error, warn, info or debug"},
	{"relay.shutdown_timeout_ms", OPT_INT, OFF(shutdown_timeout_ms), "30000", 0, 3600000,
	 "on SIGTERM, how long to wait for Kafka to acknowledge what is in flight"},
	{"relay.reconnect_max_backoff_ms", OPT_INT, OFF(reconnect_max_backoff_ms), "30000", 100,
	 3600000, "longest wait between two reconnection attempts (the wait doubles from 500 ms)"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const type_names[] = {"string", "bool", "integer", "list of strings"};
static const char *const type_articles[] = {"a", "a", "an", "a"};

/* The group that passes its keys to librdkafka (names with '_' for '.'). */
#define KAFKA_GROUP "kafka"

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		log_error("out of memory");
		abort();
	}
	return d;
}

static void *field(relay_config *cfg, const opt_def *o) { return (char *)cfg + o->offset; }

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
	*list = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		*list = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
		(*list)[(*n)++] = xstrdup(tok);
	}
	free(copy);
}

static void apply_default(relay_config *cfg, const opt_def *o)
{
	void *f = field(cfg, o);
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

/* Reads one setting of the table; reports a wrong type or range at the setting's line. */
static int load_opt(relay_config *cfg, const opt_def *o, const config_setting_t *s, FILE *err)
{
	void *f = field(cfg, o);
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
				setting_line(s), o->path, v, o->min, o->max);
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
		*list = calloc((size_t)count + 1, sizeof(char *));
		*n = 0;
		for (int i = 0; i < count; i++) {
			const char *v = config_setting_get_string_elem(s, i);
			if (!v)
				goto wrong_type;
			(*list)[(*n)++] = xstrdup(v);
		}
		if (count == 0) {
			fprintf(err, "%s:%d: %s must not be empty\n", cfg->path, setting_line(s),
				o->path);
			return -1;
		}
		return 0;
	}
	}
wrong_type:
	fprintf(err, "%s:%d: %s must be %s %s\n", cfg->path, setting_line(s), o->path,
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

	cfg->kafka = calloc((size_t)n + 1, sizeof(kafka_property));
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
	if (strcmp(gname, KAFKA_GROUP) == 0)
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

/* The line of element i of a list setting, or 1 when it came from the default. */
static int elem_line(const config_t *lc, const char *path, int i)
{
	const config_setting_t *s = config_lookup(lc, path);
	const config_setting_t *e = s ? config_setting_get_elem(s, (unsigned)i) : NULL;
	return e ? setting_line(e) : 1;
}

/* "schema.table" with both parts non-empty. */
static bool table_name_ok(const char *name)
{
	const char *dot = strchr(name, '.');
	return dot && dot != name && dot[1] != '\0';
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
	for (int i = 0; i < cfg->n_tables; i++) {
		if (!table_name_ok(cfg->tables[i])) {
			fprintf(err, "%s:%d: postgresql.tables entry '%s' must be schema.table\n",
				cfg->path, elem_line(lc, "postgresql.tables", i), cfg->tables[i]);
			bad = -1;
		}
	}
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
			buf = realloc(buf, cap);
			if (!buf) {
				log_error("out of memory");
				abort();
			}
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
	relay_config *cfg = calloc(1, sizeof(*cfg));
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
			bad |= load_opt(cfg, &opts[i], s, err);
		} else if (opts[i].def) {
			apply_default(cfg, &opts[i]);
		} else {
			fprintf(err, "%s:1: %s is required\n", path, opts[i].path);
			bad = -1;
		}
	}
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

void config_free(relay_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_OPTS; i++) {
		void *f = field(cfg, &opts[i]);
		if (opts[i].type == OPT_STRING) {
			free(*(char **)f);
		} else if (opts[i].type == OPT_STRING_LIST) {
			char **list = *(char ***)f;
			int n = *(int *)((char *)f + sizeof(char **));
			for (int k = 0; k < n; k++)
				free(list[k]);
			free(list);
		}
	}
	for (int i = 0; i < cfg->n_kafka; i++) {
		free(cfg->kafka[i].name);
		free(cfg->kafka[i].value);
	}
	free(cfg->kafka);
	free(cfg->path);
	free(cfg);
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
	fprintf(out, "| `kafka.*` | any | | librdkafka properties, `_` written for `.` "
		     "(`bootstrap_servers` is `bootstrap.servers`); `bootstrap_servers` is required |\n");
}
