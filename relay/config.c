/* config.c: one table drives loading, defaults, validation and the description of every key. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "xalloc.h"
#include "config_check.h"
#include "config_tls.h"
#include "protect.h"
#include "standby_gate.h"

typedef enum { OPT_STRING, OPT_BOOL, OPT_INT, OPT_STRING_LIST } opt_type;

/*
 * A check of a string value beyond its type and choices (a template, a pattern, an address):
 * 0, or -1 after writing the whole message (without "FILE:LINE: ") to msg. name is how the
 * message names the key ("relay.metrics_listen", "capture[2].topic").
 */
typedef int (*opt_check_fn)(const char *name, const char *value, char *msg, size_t len);

/* SIGHUP applies a new value while the relay runs; without it a change needs a restart. */
#define OPT_RELOAD 1u

/* Everything about one key: loading, default, validation, reloading and its description. */
typedef struct {
	const char *path; /* "group.key" (a source's keys: just "key") */
	opt_type type;
	size_t offset; /* into relay_config or source_config; a list is a char** then its count */
	const char *def; /* default as text; NULL: required */
	unsigned flags;  /* OPT_RELOAD */
	long min, max;   /* OPT_INT range */
	const char *const *choices; /* OPT_STRING: the only words accepted (NULL-terminated) */
	opt_check_fn check;         /* OPT_STRING: NULL, or a check of the value */
	const char *doc;
} opt_def;

#define OFF(field) offsetof(relay_config, field)
#define SRC(field) offsetof(source_config, field)
#define CAP(field) offsetof(capture_config, field)
#define PRO(field) offsetof(protect_config, field)

/* A list field is a char ** followed by its int count. */
_Static_assert(offsetof(relay_config, n_wait_for_standbys) ==
		       offsetof(relay_config, wait_for_standbys) + sizeof(char **),
	       "list count must follow the list");
_Static_assert(offsetof(source_config, n_headers) == offsetof(source_config, headers) + sizeof(char **),
	       "list count must follow the list");
_Static_assert(offsetof(capture_config, n_key_columns) ==
		       offsetof(capture_config, key_columns) + sizeof(char **) &&
		       offsetof(capture_config, n_include_columns) ==
			       offsetof(capture_config, include_columns) + sizeof(char **) &&
		       offsetof(capture_config, n_exclude_columns) ==
			       offsetof(capture_config, exclude_columns) + sizeof(char **),
	       "list count must follow the list");

/* The words of the enumerated keys (log.c parses the log ones with the same names). */
static const char *const delivery_modes[] = {"exactly-once", "at-least-once", NULL};
static const char *const first_starts[] = {"backfill", "from-now", NULL};
static const char *const slot_adoptions[] = {"no", "recreate", "as-is", NULL};
static const char *const slot_losses[] = {"recover", "recover-rows", "stop", NULL};
static const char *const capture_slot_losses[] = {"stop", "resnapshot", NULL};
static const char *const error_actions[] = {"dead-letter", "stop", NULL};
static const char *const takeovers[] = {"fence", "wait", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "logfmt", "json", NULL};
static const char *const source_formats[] = {"json", "avro", NULL};
static const char *const key_formats[] = {"string", "avro", NULL};
static const char *const subject_strategies[] = {"TopicNameStrategy", "RecordNameStrategy",
						 "TopicRecordNameStrategy", NULL};

static const opt_def opts[] = {
	{.path = "postgresql.conninfo", .type = OPT_STRING, .offset = OFF(pg_conninfo),
	 .doc = "libpq connection string of the database to read (replication=database is added)"},
	{.path = "postgresql.slot", .type = OPT_STRING, .offset = OFF(slot), .def = "outbox_relay",
	 .check = config_check_slot_name,
	 .doc = "logical replication slot; one slot per relay (a-z, 0-9, _; at most 63)"},
	{.path = "postgresql.create_slot", .type = OPT_BOOL, .offset = OFF(create_slot), .def = "true",
	 .doc = "create the slot with the wal2json plugin when it does not exist"},
	{.path = "postgresql.adopt_slot", .type = OPT_STRING, .offset = OFF(adopt_slot), .def = "no",
	 .choices = slot_adoptions,
	 .doc = "exactly-once, a slot that exists before the relay's first start (no checkpoint "
		"topic yet; an HA manager's permanent slot): no (refuse: the topic may be deleted or "
		"renamed), recreate (make it again with a snapshot and backfill; needs create_slot) or "
		"as-is (start at its position; earlier rows are not backfilled)"},
	{.path = "postgresql.status_interval_ms", .type = OPT_INT, .offset = OFF(status_interval_ms),
	 .def = "10000", .flags = OPT_RELOAD, .min = 100, .max = 3600000,
	 .doc = "longest time between two status messages to the server; keep it below "
		"wal_sender_timeout"},
	{.path = "postgresql.wait_for_standbys", .type = OPT_STRING_LIST,
	 .offset = OFF(wait_for_standbys), .def = "", .flags = OPT_RELOAD,
	 .doc = "exactly-once: commit a Kafka transaction only once wait_for_standbys_count of these "
		"standbys (application_name in pg_stat_replication) have flushed the WAL it covers, so "
		"a failover to one of them never lacks a published event (empty: do not wait)"},
	{.path = "postgresql.wait_for_standbys_count", .type = OPT_INT,
	 .offset = OFF(wait_for_standbys_count), .def = "1", .flags = OPT_RELOAD, .min = 1, .max = 64,
	 .doc = "how many of postgresql.wait_for_standbys must have flushed (as ANY n in "
		"synchronous_standby_names)"},
	{.path = "relay.delivery", .type = OPT_STRING, .offset = OFF(delivery), .def = "exactly-once",
	 .choices = delivery_modes,
	 .doc = "exactly-once (Kafka transactions, position stored in Kafka) or at-least-once "
		"(idempotent producer only; duplicates possible after a crash)"},
	{.path = "relay.checkpoint_topic", .type = OPT_STRING, .offset = OFF(checkpoint_topic),
	 .def = "outbox-relay.checkpoints",
	 .doc = "compacted topic holding each relay's PostgreSQL position (exactly-once); created on "
		"first start"},
	{.path = "relay.transaction_max_records", .type = OPT_INT,
	 .offset = OFF(transaction_max_records), .def = "10000", .flags = OPT_RELOAD, .min = 1,
	 .max = 10000000,
	 .doc = "exactly-once: most records in one Kafka transaction (a larger PostgreSQL transaction "
		"is split)"},
	{.path = "relay.transaction_max_ms", .type = OPT_INT, .offset = OFF(transaction_max_ms),
	 .def = "100", .flags = OPT_RELOAD, .min = 1, .max = 60000,
	 .doc = "exactly-once: longest time a Kafka transaction stays open while rows keep coming "
		"(catching up on transactions 2 s old or more: at least 1000)"},
	{.path = "relay.transaction_gather_ms", .type = OPT_INT, .offset = OFF(transaction_gather_ms),
	 .def = "25", .flags = OPT_RELOAD, .min = 0, .max = 1000,
	 .doc = "exactly-once: after a Kafka transaction began committing, the stream is read again "
		"this long after, or as soon as 32 rows (or one per ms of this, if more) are due at the "
		"recent rate, so that each transaction carries more rows (each costs the relay 3 to 5 ms "
		"of CPU; 64 meets 100 us per row at 1,000 rows/s); 0: read again as soon as a commit ends"},
	{.path = "relay.transaction_headers", .type = OPT_BOOL, .offset = OFF(transaction_headers),
	 .def = "false",
	 .doc = "every record of a PostgreSQL transaction carries the headers pg_xid, pg_commit_lsn "
		"and pg_txn_index (its 0-based index among the records the transaction published; "
		"docs/privacy.md); off by default: librdkafka's work for three more headers costs "
		"about 1 us of CPU per record or more"},
	{.path = "relay.transaction_topic", .type = OPT_STRING, .offset = OFF(transaction_topic),
	 .def = "",
	 .doc = "topic for a BEGIN and an END record of each PostgreSQL transaction that published "
		"records, END with the count per topic (docs/privacy.md); not the checkpoint or "
		"dead-letter topic; \"\": none"},
	{.path = "relay.first_start", .type = OPT_STRING, .offset = OFF(first_start), .def = "backfill",
	 .choices = first_starts,
	 .doc = "exactly-once, when the relay creates its slot for the first time: backfill (first "
		"publish the outbox rows committed before the slot existed) or from-now (only rows "
		"committed after)"},
	{.path = "relay.slot_loss", .type = OPT_STRING, .offset = OFF(slot_loss), .def = "recover",
	 .choices = slot_losses,
	 .doc = "exactly-once, when the slot is gone but a checkpoint exists (dropped, failover, "
		"invalidated): recover (a new slot; the outbox rows committed after the checkpoint "
		"come from the table), recover-rows (the same, accepting the loss of outbox.emit() "
		"events) or stop"},
	{.path = "relay.recovery_window_ms", .type = OPT_INT, .offset = OFF(recovery_window_ms),
	 .def = "1000", .min = 10, .max = 600000,
	 .doc = "slot-loss recovery: how far commit timestamps may run out of commit order; "
		"checkpoints list the outbox transactions of this last stretch"},
	{.path = "relay.capture_on_slot_loss", .type = OPT_STRING, .offset = OFF(capture_on_slot_loss),
	 .def = "stop", .choices = capture_slot_losses,
	 .doc = "captured tables when the slot is lost: stop (refuse to start) or resnapshot "
		"(publish every captured table again, op r)"},
	{.path = "relay.takeover", .type = OPT_STRING, .offset = OFF(takeover), .def = "fence",
	 .choices = takeovers,
	 .doc = "another relay with the same slot (and transactional.id) is running: fence (this one "
		"takes over at start; the other, fenced, exits 3) or wait (active/passive: this one "
		"stands by until the slot is free, and stands by again instead of exiting when fenced)"},
	{.path = "relay.on_error", .type = OPT_STRING, .offset = OFF(on_error), .def = "dead-letter",
	 .choices = error_actions,
	 .doc = "a row that cannot be published: dead-letter (to relay.dead_letter_topic, and go on) "
		"or stop"},
	{.path = "relay.dead_letter_topic", .type = OPT_STRING, .offset = OFF(dead_letter_topic),
	 .def = "outbox-relay.dead-letters",
	 .doc = "topic for rows that cannot be published, with headers saying why and where from"},
	{.path = "relay.auto_create_topics", .type = OPT_BOOL, .offset = OFF(auto_create_topics),
	 .def = "true",
	 .doc = "create a missing topic (admin API) at its first record; false: a missing topic "
		"stops the relay"},
	{.path = "relay.topic_partitions", .type = OPT_INT, .offset = OFF(topic_partitions),
	 .def = "-1", .min = -1, .max = 100000,
	 .doc = "partitions of topics the relay creates (-1: the broker's num.partitions)"},
	{.path = "relay.topic_replication_factor", .type = OPT_INT,
	 .offset = OFF(topic_replication_factor), .def = "-1", .min = -1, .max = 100,
	 .doc = "replication factor of topics the relay creates (-1: the broker's default)"},
	{.path = "relay.log_level", .type = OPT_STRING, .offset = OFF(log_level), .def = "info",
	 .flags = OPT_RELOAD, .choices = log_levels, .doc = "error, warn, info or debug"},
	{.path = "relay.lag_warn_mb", .type = OPT_INT, .offset = OFF(lag_warn_mb), .def = "1024",
	 .flags = OPT_RELOAD, .min = 0, .max = 10000000,
	 .doc = "warn (at most once a minute) while the server keeps this many MB of WAL for the "
		"slot (0: never)"},
	{.path = "relay.log_format", .type = OPT_STRING, .offset = OFF(log_format), .def = "text",
	 .choices = log_formats, .doc = "text, logfmt (key=value) or json (one object per line)"},
	{.path = "relay.max_in_flight_bytes", .type = OPT_INT, .offset = OFF(max_in_flight_bytes),
	 .def = "8388608", .flags = OPT_RELOAD, .min = 65536, .max = 2147483647,
	 .doc = "records handed to Kafka and not yet acknowledged, in bytes (with librdkafka's "
		"overhead): at this size the relay stops reading the stream until Kafka catches up"},
	{.path = "relay.shutdown_timeout_ms", .type = OPT_INT, .offset = OFF(shutdown_timeout_ms),
	 .def = "30000", .flags = OPT_RELOAD, .min = 0, .max = 3600000,
	 .doc = "on SIGTERM, how long to wait for Kafka to acknowledge what is in flight"},
	{.path = "relay.reconnect_max_backoff_ms", .type = OPT_INT,
	 .offset = OFF(reconnect_max_backoff_ms), .def = "30000", .flags = OPT_RELOAD, .min = 100,
	 .max = 3600000,
	 .doc = "longest wait between two reconnection attempts (the wait doubles from 500 ms)"},
	{.path = "relay.topic_prefix", .type = OPT_STRING, .offset = OFF(topic_prefix), .def = "cdc",
	 .doc = "${prefix} of the capture topic templates"},
	{.path = "relay.snapshot_chunk_rows", .type = OPT_INT, .offset = OFF(snapshot_chunk_rows),
	 .def = "4096", .min = 1, .max = 1000000,
	 .doc = "rows a snapshot reads (and holds in memory) at a time, by key order"},
	{.path = "relay.metrics_listen", .type = OPT_STRING, .offset = OFF(metrics_listen), .def = "",
	 .check = config_check_metrics_listen,
	 .doc = "host:port of the HTTP server for /metrics (Prometheus), /healthz and /readyz; "
		"\":9187\" binds 127.0.0.1; \"\": off"},
	{.path = "schema_registry.url", .type = OPT_STRING, .offset = OFF(registry_url), .def = "",
	 .doc = "base URL of a schema registry speaking Confluent's REST API (Apicurio: "
		"http://host:port/apis/ccompat/v7); required when a source or capture has format = "
		"\"avro\""},
	{.path = "schema_registry.user", .type = OPT_STRING, .offset = OFF(registry_user), .def = "",
	 .doc = "basic auth user of the schema registry; the password comes from the systemd "
		"credential schema-registry-password"},
	{.path = "schema_registry.ca_file", .type = OPT_STRING, .offset = OFF(registry_ca_file),
	 .def = "", .doc = "CA certificates (PEM) for an https registry; \"\": the system's"},
	{.path = "schema_registry.cert_file", .type = OPT_STRING, .offset = OFF(registry_cert_file),
	 .def = "",
	 .doc = "client certificate (PEM, may hold the chain) for a registry that wants mutual TLS; "
		"needs key_file and an https url; \"\": none"},
	{.path = "schema_registry.key_file", .type = OPT_STRING, .offset = OFF(registry_key_file),
	 .def = "",
	 .doc = "private key (PEM) of cert_file, checked against it at start; an encrypted key's "
		"passphrase comes from the systemd credential schema-registry-key-password"},
	{.path = "schema_registry.timeout_ms", .type = OPT_INT, .offset = OFF(registry_timeout_ms),
	 .def = "5000", .min = 100, .max = 10000,
	 .doc = "longest wait for one registry request (at most 10000: the loop waits meanwhile); a "
		"registry that does not answer holds the stream back (docs/schemas.md)"},
	{.path = "schema_registry.auto_register", .type = OPT_BOOL,
	 .offset = OFF(registry_auto_register), .def = "true",
	 .doc = "register a schema under its subject at its first event; false: use only a version "
		"already registered with the same text (else the relay stops at that event)"},
	{.path = "schema_registry.subject_strategy", .type = OPT_STRING,
	 .offset = OFF(registry_subject_strategy), .def = "TopicNameStrategy",
	 .choices = subject_strategies,
	 .doc = "the subject a value's schema is registered under, named as Confluent's serializers "
		"do: TopicNameStrategy (<topic>-value), RecordNameStrategy (<record full name>) or "
		"TopicRecordNameStrategy (<topic>-<record full name>); outbox sources only: captured "
		"tables use <topic>-value and <topic>-key whatever it says"},
	{.path = "schema_registry.schema_dir", .type = OPT_STRING, .offset = OFF(schema_dir),
	 .def = "",
	 .doc = "directory of Avro schemas: <event_type>.avsc per event type, <event_type>.v<N>.avsc "
		"per schema version (docs/schemas.md); required when a source has format = \"avro\" "
		"or contract = true (or schema_registry.contract_prefix instead)"},
	{.path = "schema_registry.contract_prefix", .type = OPT_STRING,
	 .offset = OFF(contract_prefix), .def = "",
	 .doc = "take the contracts from the schema registry instead of schema_dir: subject "
		"<prefix><event_type>, version N for events of schema_version N, the latest for "
		"events without one, fetched at start (docs/schemas.md)"},
	{.path = "protection.key_id", .type = OPT_STRING, .offset = OFF(protect_key_id), .def = "k1",
	 .check = config_check_key_id,
	 .doc = "the id written into every encrypted value (enc:v1:<key_id>:...): change it with "
		"the credential protect-encrypt-key when rotating keys (docs/privacy.md)"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* The keys of each element of the sources list. */
static const opt_def source_opts[] = {
	{.path = "table", .type = OPT_STRING, .offset = SRC(table), .def = "",
	 .check = config_check_source_table, .doc = "outbox table (schema.table); or set message_prefix"},
	{.path = "message_prefix", .type = OPT_STRING, .offset = SRC(message_prefix), .def = "",
	 .doc = "publish pg_logical_emit_message messages with this prefix (see docs/sql.md: "
		"outbox.emit)"},
	{.path = "topic", .type = OPT_STRING, .offset = SRC(topic), .def = "outbox.${aggregate_type}",
	 .check = config_check_outbox_topic,
	 .doc = "topic template: ${column} (or envelope member), ${schema}, ${table}, ${prefix}"},
	{.path = "key", .type = OPT_STRING, .offset = SRC(key), .def = "aggregate_id",
	 .check = config_check_column, .doc = "column giving the record key"},
	{.path = "value", .type = OPT_STRING, .offset = SRC(value), .def = "payload",
	 .check = config_check_column, .doc = "column giving the record value, copied byte for byte"},
	{.path = "event_id", .type = OPT_STRING, .offset = SRC(event_id), .def = "id",
	 .doc = "column giving the event_id header"},
	{.path = "event_type", .type = OPT_STRING, .offset = SRC(event_type), .def = "event_type",
	 .doc = "column giving the event_type header"},
	{.path = "schema_version", .type = OPT_STRING, .offset = SRC(schema_version),
	 .def = "schema_version",
	 .doc = "column (or envelope member) giving the schema_version header when not null: the "
		"version of the event type's contract, <event_type>.v<N>.avsc (docs/schemas.md); \"\": "
		"none"},
	{.path = "timestamp", .type = OPT_STRING, .offset = SRC(timestamp), .def = "",
	 .doc = "record timestamp: a timestamptz column, \"commit\" (commit time) or \"\" (produce "
		"time)"},
	{.path = "headers_column", .type = OPT_STRING, .offset = SRC(headers_column), .def = "headers",
	 .doc = "column holding a JSON object; each member becomes a header (W3C traceparent passes "
		"through)"},
	{.path = "headers", .type = OPT_STRING_LIST, .offset = SRC(headers), .def = "",
	 .doc = "more columns copied to headers under their own names (tenant, correlation_id, ...); the "
		"contract version comes from schema_version only"},
	{.path = "tombstones", .type = OPT_BOOL, .offset = SRC(tombstones), .def = "false",
	 .doc = "a null or empty value becomes a tombstone (null value); false: a null value is "
		"dead-lettered"},
	{.path = "cloudevents", .type = OPT_BOOL, .offset = SRC(cloudevents), .def = "false",
	 .doc = "add CloudEvents binary-mode headers: ce_specversion ce_id ce_type ce_source ce_time"},
	{.path = "ce_source", .type = OPT_STRING, .offset = SRC(ce_source), .def = "",
	 .doc = "the ce_source header (default /outbox-relay/<schema>.<table>, or "
		"/outbox-relay/<prefix>)"},
	{.path = "format", .type = OPT_STRING, .offset = SRC(format), .def = "json",
	 .choices = source_formats,
	 .doc = "json (the value column byte for byte) or avro (the JSON value converted by the "
		"event type's schema, Confluent wire format; docs/schemas.md)"},
	{.path = "key_format", .type = OPT_STRING, .offset = SRC(key_format), .def = "string",
	 .choices = key_formats,
	 .doc = "string (the key column's text, as it is) or avro (format = \"avro\" only: the key as "
		"an Avro string in Confluent's wire format, its schema registered under <topic>-key)"},
	{.path = "contract", .type = OPT_BOOL, .offset = SRC(contract), .def = "false",
	 .doc = "json: check each event's value against its event type's Avro schema file "
		"(schema_registry.schema_dir) and publish it unchanged; a value that does not fit is "
		"dead-lettered (avro sources always are checked)"},
};

#define N_SOURCE_OPTS (sizeof(source_opts) / sizeof(source_opts[0]))
#define SOURCES "sources"

/* The keys of each element of the capture list. */
static const opt_def capture_opts[] = {
	{.path = "tables", .type = OPT_STRING, .offset = CAP(tables), .def = "",
	 .check = config_check_capture_tables,
	 .doc = "tables to capture: schema.table, either part may be * (all)"},
	{.path = "topic", .type = OPT_STRING, .offset = CAP(topic),
	 .def = "${prefix}.${schema}.${table}", .check = config_check_capture_topic,
	 .doc = "topic template: ${prefix} (relay.topic_prefix), ${schema}, ${table}"},
	{.path = "key_columns", .type = OPT_STRING_LIST, .offset = CAP(key_columns), .def = "",
	 .doc = "columns of the record key (default: the primary key, else the replica identity "
		"index)"},
	{.path = "include_columns", .type = OPT_STRING_LIST, .offset = CAP(include_columns), .def = "",
	 .doc = "publish only these columns (default: all)"},
	{.path = "exclude_columns", .type = OPT_STRING_LIST, .offset = CAP(exclude_columns), .def = "",
	 .doc = "never publish these columns (e.g. password_hash)"},
	{.path = "unkeyed", .type = OPT_BOOL, .offset = CAP(unkeyed), .def = "false",
	 .doc = "publish a table without primary key or replica identity index with null keys (else "
		"refused)"},
	{.path = "tombstones", .type = OPT_BOOL, .offset = CAP(tombstones), .def = "true",
	 .doc = "follow each delete with a tombstone (null value) for compacted topics"},
	{.path = "snapshot", .type = OPT_BOOL, .offset = CAP(snapshot), .def = "true",
	 .doc = "publish the existing rows (op r) when a table is first captured (needs exactly-once)"},
	{.path = "format", .type = OPT_STRING, .offset = CAP(format), .def = "json",
	 .choices = source_formats,
	 .doc = "json (the change envelope) or avro (the envelope in a schema derived from the "
		"table, Confluent wire format; needs schema_registry.url and ${table} in the "
		"topic; docs/schemas.md)"},
	{.path = "key_format", .type = OPT_STRING, .offset = CAP(key_format), .def = "string",
	 .choices = key_formats,
	 .doc = "string (the key columns as a JSON object) or avro (format = \"avro\" only: the key "
		"as an Avro record of the key columns in Confluent's wire format, its schema derived "
		"from the table and registered under <topic>-key; docs/schemas.md)"},
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

/* Field protection (docs/privacy.md): the keys of each element of the protect list. */
_Static_assert(offsetof(protect_config, n_fields) == offsetof(protect_config, fields) + sizeof(char **) &&
		       offsetof(protect_config, n_event_types) ==
			       offsetof(protect_config, event_types) + sizeof(char **) &&
		       offsetof(protect_config, n_columns) ==
			       offsetof(protect_config, columns) + sizeof(char **) &&
		       offsetof(protect_config, n_tables) == offsetof(protect_config, tables) + sizeof(char **),
	       "list count must follow the list");

static const char *const protect_actions[] = {"drop", "mask", "hash", "encrypt", NULL};

static const opt_def protect_opts[] = {
	{.path = "fields", .type = OPT_STRING_LIST, .offset = PRO(fields), .def = "",
	 .doc = "JSON paths of outbox payload fields to protect (\"/email\", \"/document/number\"; "
		"\"*\" is every member or element)"},
	{.path = "event_types", .type = OPT_STRING_LIST, .offset = PRO(event_types), .def = "*",
	 .doc = "the outbox event types whose payloads fields applies to (glob patterns)"},
	{.path = "columns", .type = OPT_STRING_LIST, .offset = PRO(columns), .def = "",
	 .doc = "captured columns to protect, by name (in after and before by the action; a key "
		"column is hashed in the record key)"},
	{.path = "tables", .type = OPT_STRING_LIST, .offset = PRO(tables), .def = "*.*",
	 .doc = "the captured tables columns applies to (glob patterns of schema.table)"},
	{.path = "action", .type = OPT_STRING, .offset = PRO(action), .def = "",
	 .doc = "drop, mask (keep the last keep_last characters), hash (HMAC-SHA-256, hex; "
		"credential protect-hash-key) or encrypt (AES-256-GCM; credential protect-encrypt-key)"},
	{.path = "keep_last", .type = OPT_INT, .offset = PRO(keep_last), .def = "4", .min = 0,
	 .max = 1000, .doc = "mask: how many characters stay at the end of a longer string (a shorter "
		"one, or a value that is not a string, is masked whole)"},
};

#define N_PROTECT_OPTS (sizeof(protect_opts) / sizeof(protect_opts[0]))
#define PROTECT "protect"

static const list_spec protect_list = {PROTECT, protect_opts, N_PROTECT_OPTS};

static const char *const type_names[] = {"string", "bool", "integer", "list of strings"};
static const char *const type_articles[] = {"a", "a", "an", "a"};

/* The group that passes its keys to librdkafka (names with '_' for '.'). */
#define KAFKA_GROUP "kafka"

static void *field(void *base, const opt_def *o) { return (char *)base + o->offset; }

static void free_opts_one(void *base, const opt_def *o);

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

/* Sets one key to its default; a required key (no default) to "", false or 0. */
static void apply_default(void *base, const opt_def *o)
{
	void *f = field(base, o);
	const char *def = o->def ? o->def : "";

	switch (o->type) {
	case OPT_STRING:
		*(char **)f = xstrdup(def);
		break;
	case OPT_BOOL:
		*(bool *)f = strcmp(def, "true") == 0;
		break;
	case OPT_INT:
		*(int *)f = atoi(def);
		break;
	case OPT_STRING_LIST:
		set_list((char ***)f, (int *)((char *)f + sizeof(char **)), def);
		break;
	}
}

/* Every key of a table to its default. */
static void apply_defaults(void *base, const opt_def *table, size_t n_opts)
{
	for (size_t i = 0; i < n_opts; i++)
		apply_default(base, &table[i]);
}

/* The flags the words of relay.delivery, relay.on_error and relay.takeover stand for. */
static void derive_flags(relay_config *cfg)
{
	cfg->exactly_once = strcmp(cfg->delivery, "exactly-once") == 0;
	cfg->dead_letter = strcmp(cfg->on_error, "dead-letter") == 0;
	cfg->takeover_wait = strcmp(cfg->takeover, "wait") == 0;
}

relay_config *config_defaults(int n_sources, int n_captures)
{
	relay_config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->path = xstrdup("(defaults)");
	apply_defaults(cfg, opts, N_OPTS);
	derive_flags(cfg);
	cfg->sources = xcalloc((size_t)n_sources + 1, sizeof(source_config));
	cfg->n_sources = n_sources;
	for (int i = 0; i < n_sources; i++) {
		apply_defaults(&cfg->sources[i], source_opts, N_SOURCE_OPTS);
		cfg->sources[i].line = 1;
	}
	cfg->captures = xcalloc((size_t)n_captures + 1, sizeof(capture_config));
	cfg->n_captures = n_captures;
	for (int i = 0; i < n_captures; i++) {
		apply_defaults(&cfg->captures[i], capture_opts, N_CAPTURE_OPTS);
		cfg->captures[i].line = 1;
	}
	return cfg;
}

protect_config *config_add_protect(relay_config *cfg)
{
	protect_config *p;

	cfg->protects = xrealloc(cfg->protects, sizeof(protect_config) * (size_t)(cfg->n_protects + 1));
	p = &cfg->protects[cfg->n_protects++];
	memset(p, 0, sizeof(*p));
	apply_defaults(p, protect_opts, N_PROTECT_OPTS);
	p->line = 1;
	return p;
}

void config_set_string(char **field_p, const char *value)
{
	free(*field_p);
	*field_p = xstrdup(value);
}

void config_set_list(char ***list, int *n, const char *text)
{
	for (int k = 0; k < *n; k++)
		free((*list)[k]);
	free(*list);
	set_list(list, n, text);
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

/* True when value is one of the NULL-terminated words. */
static bool is_choice(const char *const *choices, const char *value)
{
	for (size_t i = 0; choices[i]; i++)
		if (strcmp(choices[i], value) == 0)
			return true;
	return false;
}

/*
 * Writes the words as "one of a, b, c"; with two_as_or, two words as "a or b" (the way the
 * messages say them; the key table in the docs always lists "one of").
 */
static void choices_text(const char *const *choices, bool two_as_or, char *out, size_t len)
{
	size_t n = 0, used;

	while (choices[n])
		n++;
	if (n == 2 && two_as_or) {
		snprintf(out, len, "%s or %s", choices[0], choices[1]);
		return;
	}
	used = (size_t)snprintf(out, len, "one of ");
	for (size_t i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s%s", i ? ", " : "", choices[i]);
}

/*
 * A value of the right type that the key still refuses: not one of its choices, or failing its
 * check. Reported at line, naming the key as name.
 */
static int check_value(const relay_config *cfg, const void *base, const opt_def *o,
		       const char *name, int line, FILE *err)
{
	char msg[768];
	const char *v;

	if (o->type != OPT_STRING)
		return 0;
	v = *(char *const *)((const char *)base + o->offset);
	if (o->choices && !is_choice(o->choices, v)) {
		choices_text(o->choices, true, msg, sizeof(msg));
		fprintf(err, "%s:%d: %s '%s' is not %s\n", cfg->path, line, name, v, msg);
		return -1;
	}
	if (o->check && o->check(name, v, msg, sizeof(msg)) < 0) {
		fprintf(err, "%s:%d: %s\n", cfg->path, line, msg);
		return -1;
	}
	return 0;
}

/*
 * One key of a table into base, as start-up, check-config and SIGHUP all load it: the file's
 * setting s (or the default when s is NULL) through its type, range, choices and check, at the
 * setting's line (else at line). A refused value is reported and replaced by the default, so
 * that the checks spanning keys see a sane value. -1 when refused.
 */
static int load_key(const relay_config *cfg, void *base, const opt_def *o, const char *name,
		    const config_setting_t *s, int line, FILE *err)
{
	if (!s)
		apply_default(base, o);
	else
		line = setting_line(s);
	if ((s && load_opt(cfg, base, o, name, s, err) < 0) ||
	    check_value(cfg, base, o, name, line, err) < 0) {
		free_opts_one(base, o);
		apply_default(base, o);
		return -1;
	}
	return 0;
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
	    strcmp(gname, CAPTURE) == 0 || strcmp(gname, PROTECT) == 0)
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
		if (strcmp(gname, SOURCES) == 0 || strcmp(gname, CAPTURE) == 0 ||
		    strcmp(gname, PROTECT) == 0)
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
		bad |= load_key(cfg, base, &ls->opts[k], name, s, *line, err);
	}
	return bad;
}

/* A source reads exactly one of a table and a message prefix, which no earlier source reads. */
static int check_source(const relay_config *cfg, const source_config *src, int idx, FILE *err)
{
	bool has_table = src->table[0], has_prefix = src->message_prefix[0];

	if (has_table == has_prefix) {
		fprintf(err, "%s:%d: sources[%d] needs exactly one of table and message_prefix\n",
			cfg->path, src->line, idx);
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

/*
 * A capture entry's keys together: columns either included or excluded; snapshots need
 * exactly-once; Avro keys need Avro values (the registry).
 */
static int check_capture(const relay_config *cfg, const capture_config *c, int idx, FILE *err)
{
	int bad = 0;

	if (c->n_include_columns > 0 && c->n_exclude_columns > 0) {
		fprintf(err, "%s:%d: capture[%d] sets both include_columns and exclude_columns: "
			"keep one\n", cfg->path, c->line, idx);
		bad = -1;
	}
	if (strcmp(c->key_format, "avro") == 0 && strcmp(c->format, "avro") != 0) {
		fprintf(err, "%s:%d: capture[%d]: key_format = \"avro\" needs format = \"avro\" (the "
			"key's schema goes to the schema registry)\n", cfg->path, c->line, idx);
		bad = -1;
	}
	if (c->snapshot && !cfg->exactly_once) {
		fprintf(err, "%s:%d: capture[%d].snapshot needs relay.delivery = \"exactly-once\" "
			"(a snapshot's progress is stored with the checkpoint); set snapshot = false\n",
			cfg->path, c->line, idx);
		bad = -1;
	}
	return bad;
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
		int b = load_entry(cfg, &capture_list, c, &c->line, g, i, err);
		if (b == 0)
			b = check_capture(cfg, c, i, err);
		bad |= b;
	}
	return bad;
}

/* A JSON path of a protect rule: the transform stage's own parser decides (one validator). */
static bool protect_path_ok(const char *path)
{
	protect_path p;

	if (protect_path_parse(path, 0, false, &p) < 0)
		return false;
	protect_path_free(&p);
	return true;
}

/* A list that is not its default ["<def>"]: the file set it. */
static bool list_set(char *const *l, int n, const char *def)
{
	return n != 1 || strcmp(l[0], def) != 0;
}

/* Keys of a protect rule that have no effect with its other keys: a warning each, not an error. */
static int warn_protect_unused(const relay_config *cfg, const protect_config *p, int idx, FILE *err)
{
	if (p->keep_last != 4 && strcmp(p->action, "mask") != 0)
		fprintf(err, "%s:%d: warning: protect[%d].keep_last has no effect: the action is "
			"'%s', not mask\n", cfg->path, p->line, idx, p->action);
	if (p->n_fields == 0 && list_set(p->event_types, p->n_event_types, "*"))
		fprintf(err, "%s:%d: warning: protect[%d].event_types has no effect without fields "
			"(columns use tables)\n", cfg->path, p->line, idx);
	if (p->n_columns == 0 && list_set(p->tables, p->n_tables, "*.*"))
		fprintf(err, "%s:%d: warning: protect[%d].tables has no effect without columns "
			"(fields use event_types)\n", cfg->path, p->line, idx);
	return 0;
}

/*
 * A protect rule's keys together: an action it knows, something to protect (fields or
 * columns), paths that are JSON paths, scopes that are not empty.
 */
static int check_protect(const relay_config *cfg, const protect_config *p, int idx, FILE *err)
{
	int bad = 0;
	const char *const *a = protect_actions;

	while (*a && strcmp(*a, p->action) != 0)
		a++;
	if (!*a) {
		fprintf(err, "%s:%d: protect[%d].action '%s' is not one of drop, mask, hash, encrypt\n",
			cfg->path, p->line, idx, p->action);
		bad = -1;
	}
	if (p->n_fields == 0 && p->n_columns == 0) {
		fprintf(err, "%s:%d: protect[%d] names nothing: give fields (JSON paths of outbox "
			"payloads, \"/email\") or columns (of captured tables, \"email\")\n", cfg->path,
			p->line, idx);
		bad = -1;
	}
	for (int i = 0; i < p->n_fields; i++)
		if (!protect_path_ok(p->fields[i])) {
			fprintf(err, "%s:%d: protect[%d].fields: '%s' is not a JSON path such as "
				"\"/email\" or \"/document/number\" (no empty part, at most 16 parts, '~' "
				"only as ~0 for '~' or ~1 for '/')\n",
				cfg->path, p->line, idx, p->fields[i]);
			bad = -1;
		}
	for (int i = 0; i < p->n_columns; i++)
		if (!p->columns[i][0]) {
			fprintf(err, "%s:%d: protect[%d].columns: an empty column name\n", cfg->path,
				p->line, idx);
			bad = -1;
		}
	if ((p->n_fields > 0 && p->n_event_types == 0) || (p->n_columns > 0 && p->n_tables == 0)) {
		fprintf(err, "%s:%d: protect[%d] has an empty %s list: it would protect nothing\n",
			cfg->path, p->line, idx, p->n_fields > 0 && p->n_event_types == 0 ? "event_types"
										  : "tables");
		bad = -1;
	}
	if (p->n_columns > 0 && cfg->n_captures == 0) {
		fprintf(err, "%s:%d: protect[%d].columns: no table is captured (no capture list), "
			"so the columns protect nothing\n", cfg->path, p->line, idx);
		bad = -1;
	}
	return bad | warn_protect_unused(cfg, p, idx, err);
}

/* The protect list (optional): every rule checked, every problem reported. */
static int load_protects(relay_config *cfg, const config_t *lc, FILE *err)
{
	int n, bad = 0;
	const config_setting_t *list = list_groups(cfg, lc, PROTECT, &n, &bad, err);

	if (!list)
		return bad;
	cfg->protects = xcalloc((size_t)n, sizeof(protect_config));
	cfg->n_protects = n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = list_group(cfg, list, i, PROTECT, &bad, err);
		protect_config *p = &cfg->protects[i];
		int b = load_entry(cfg, &protect_list, p, &p->line, g, i, err);
		bad |= b | check_protect(cfg, p, i, err);
	}
	return bad;
}

/* postgresql.wait_for_standbys: at most GATE_MAX_STANDBYS names, none empty, none twice. */
static int check_standby_names(const relay_config *cfg, const config_t *lc, FILE *err)
{
	int line = line_of(lc, "postgresql.wait_for_standbys"), bad = 0;

	if (cfg->n_wait_for_standbys > GATE_MAX_STANDBYS) {
		fprintf(err, "%s:%d: postgresql.wait_for_standbys names %d standbys; at most %d\n",
			cfg->path, line, cfg->n_wait_for_standbys, GATE_MAX_STANDBYS);
		bad = -1;
	}
	for (int i = 0; i < cfg->n_wait_for_standbys; i++) {
		if (!cfg->wait_for_standbys[i][0]) {
			fprintf(err, "%s:%d: postgresql.wait_for_standbys: an empty name\n", cfg->path, line);
			bad = -1;
		}
		for (int j = 0; j < i; j++)
			if (strcmp(cfg->wait_for_standbys[i], cfg->wait_for_standbys[j]) == 0) {
				fprintf(err, "%s:%d: postgresql.wait_for_standbys names %s twice\n",
					cfg->path, line, cfg->wait_for_standbys[i]);
				bad = -1;
			}
	}
	return bad;
}

/* The line of the first Avro source (avro) or json source with a contract (!avro), for errors. */
static int first_source_line(const relay_config *cfg, bool avro)
{
	for (int i = 0; i < cfg->n_sources; i++) {
		const source_config *s = &cfg->sources[i];
		bool is_avro = strcmp(s->format, "avro") == 0;
		if (avro ? is_avro : (s->contract && !is_avro))
			return s->line;
	}
	return 1;
}

/*
 * The transaction topic shares no topic with the relay's own: a consumer of it (or the
 * relay reading its checkpoints back) would meet records it cannot read.
 */
static int check_transaction_topic(const relay_config *cfg, const config_t *lc, FILE *err)
{
	const char *t = cfg->transaction_topic, *clash = NULL;

	if (t[0] && strcmp(t, cfg->checkpoint_topic) == 0)
		clash = "relay.checkpoint_topic";
	else if (t[0] && strcmp(t, cfg->dead_letter_topic) == 0)
		clash = "relay.dead_letter_topic";
	if (!clash)
		return 0;
	fprintf(err, "%s:%d: relay.transaction_topic \"%s\" is also %s: give the transaction "
		"topic a name of its own\n", cfg->path, line_of(lc, "relay.transaction_topic"), t, clash);
	return -1;
}

/* Checks that span groups: the kafka group against the relay group. */
static int check_values(const relay_config *cfg, const config_t *lc, FILE *err)
{
	int bad = 0;

	if (!config_kafka_get(cfg, "bootstrap.servers")) {
		fprintf(err, "%s:%d: kafka.bootstrap_servers is required\n", cfg->path,
			line_of(lc, KAFKA_GROUP));
		bad = -1;
	}
	bool contracts = cfg->schema_dir[0] || cfg->contract_prefix[0];
	if (cfg->schema_dir[0] && cfg->contract_prefix[0]) {
		fprintf(err, "%s:%d: set one of schema_registry.schema_dir and "
			"schema_registry.contract_prefix: contracts come from files or from the registry\n",
			cfg->path, cfg->schema_dir_line);
		bad = -1;
	} else if (cfg->any_avro && (!cfg->registry_url[0] || !contracts)) {
		fprintf(err, "%s:%d: a source with format = \"avro\" needs schema_registry.url and "
			"schema_registry.schema_dir (or contract_prefix)\n", cfg->path,
			first_source_line(cfg, true));
		bad = -1;
	} else if (cfg->any_contract && (!contracts || (cfg->contract_prefix[0] &&
							 !cfg->registry_url[0]))) {
		fprintf(err, "%s:%d: a source with contract = true needs schema_registry.schema_dir "
			"(or schema_registry.url and contract_prefix)\n", cfg->path,
			first_source_line(cfg, false));
		bad = -1;
	}
	for (int i = 0; i < cfg->n_sources; i++)
		if (strcmp(cfg->sources[i].key_format, "avro") == 0 &&
		    strcmp(cfg->sources[i].format, "avro") != 0) {
			fprintf(err, "%s:%d: key_format = \"avro\" needs format = \"avro\" (the key's "
				"schema goes to the schema registry)\n", cfg->path, cfg->sources[i].line);
			bad = -1;
		}
	for (int i = 0; i < cfg->n_captures && !cfg->registry_url[0]; i++) {
		if (strcmp(cfg->captures[i].format, "avro") != 0)
			continue;
		fprintf(err, "%s:%d: capture[%d] has format = \"avro\": it needs schema_registry.url\n",
			cfg->path, cfg->captures[i].line, i);
		bad = -1;
		break;
	}
	for (int i = 0; i < cfg->n_captures; i++) {
		const capture_config *e = &cfg->captures[i];
		if (strcmp(e->format, "avro") != 0 || strstr(e->topic, "${table}"))
			continue;
		fprintf(err, "%s:%d: capture[%d] has format = \"avro\" and topic \"%s\" without "
			"${table}: the schema of each table goes under the subject <topic>-value, so "
			"each table needs its own topic (put ${table} in it)\n", cfg->path, e->line, i,
			e->topic);
		bad = -1;
	}
	if (!cfg->exactly_once && cfg->n_wait_for_standbys > 0) {
		fprintf(err, "%s:%d: postgresql.wait_for_standbys needs relay.delivery = "
			"\"exactly-once\" (it holds back Kafka commits)\n", cfg->path,
			line_of(lc, "postgresql.wait_for_standbys"));
		bad = -1;
	}
	bad |= check_standby_names(cfg, lc, err);
	bad |= config_tls_check(cfg, line_of(lc, "schema_registry.cert_file"),
				line_of(lc, "schema_registry.key_file"), err);
	if (strcmp(cfg->adopt_slot, "recreate") == 0 && !cfg->create_slot) {
		fprintf(err, "%s:%d: postgresql.adopt_slot = \"recreate\" needs postgresql.create_slot = "
			"true\n", cfg->path, line_of(lc, "postgresql.adopt_slot"));
		bad = -1;
	}
	if (cfg->n_wait_for_standbys > 0 && cfg->wait_for_standbys_count > cfg->n_wait_for_standbys) {
		fprintf(err, "%s:%d: postgresql.wait_for_standbys_count is %d but only %d standbys are "
			"named\n", cfg->path, line_of(lc, "postgresql.wait_for_standbys_count"),
			cfg->wait_for_standbys_count, cfg->n_wait_for_standbys);
		bad = -1;
	}
	if (!cfg->exactly_once && config_kafka_get(cfg, "transactional.id")) {
		fprintf(err, "%s:%d: kafka.transactional_id needs relay.delivery = \"exactly-once\"\n",
			cfg->path, line_of(lc, KAFKA_GROUP));
		bad = -1;
	}
	return bad | check_transaction_topic(cfg, lc, err);
}

/* The top-level keys (each reported where it is wrong), then the flags they imply. */
static int load_top(relay_config *cfg, const config_t *lc, FILE *err)
{
	int bad = 0;

	for (size_t i = 0; i < N_OPTS; i++) {
		const config_setting_t *s = config_lookup(lc, opts[i].path);
		if (!s && !opts[i].def) {
			fprintf(err, "%s:1: %s is required\n", cfg->path, opts[i].path);
			bad = -1;
			continue;
		}
		bad |= load_key(cfg, cfg, &opts[i], opts[i].path, s, 1, err);
	}
	derive_flags(cfg);
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
	bad |= load_top(cfg, &lc, err);
	bad |= load_sources(cfg, &lc, err);
	bad |= load_captures(cfg, &lc, err);
	bad |= load_protects(cfg, &lc, err);
	const config_setting_t *kg = config_lookup(&lc, KAFKA_GROUP);
	if (kg && config_setting_is_group(kg))
		bad |= load_kafka(cfg, kg, err);
	for (int i = 0; i < cfg->n_sources; i++) {
		cfg->any_avro |= strcmp(cfg->sources[i].format, "avro") == 0;
		cfg->any_contract |= cfg->sources[i].contract && strcmp(cfg->sources[i].format, "json") == 0;
	}
	for (int i = 0; i < cfg->n_captures; i++)
		cfg->capture_avro |= strcmp(cfg->captures[i].format, "avro") == 0;
	cfg->schema_dir_line = line_of(&lc, "schema_registry.schema_dir");
	cfg->subject_strategy_line = line_of(&lc, "schema_registry.subject_strategy");
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
	for (int i = 0; i < cfg->n_protects; i++)
		free_opts(&cfg->protects[i], protect_opts, N_PROTECT_OPTS);
	free(cfg->protects);
	if (cfg->pg_password) {
		explicit_bzero(cfg->pg_password, strlen(cfg->pg_password));
		free(cfg->pg_password);
	}
	if (cfg->registry_password) {
		explicit_bzero(cfg->registry_password, strlen(cfg->registry_password));
		free(cfg->registry_password);
	}
	if (cfg->registry_key_password) {
		explicit_bzero(cfg->registry_key_password, strlen(cfg->registry_key_password));
		free(cfg->registry_key_password);
	}
	for (int i = 0; i < cfg->n_kafka; i++) {
		free(cfg->kafka[i].name);
		free(cfg->kafka[i].value);
	}
	free(cfg->kafka);
	free(cfg->path);
	free(cfg);
}

const capture_config *config_capture_for(const relay_config *cfg, const char *schema,
					 const char *table)
{
	for (int i = 0; i < cfg->n_captures; i++) {
		const capture_config *e = &cfg->captures[i];
		const char *dot = strchr(e->tables, '.');
		if (config_pattern_part_matches(e->tables, (size_t)(dot - e->tables), schema) &&
		    config_pattern_part_matches(dot + 1, strlen(dot + 1), table))
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

/* One row of the key table: its type (an enumerated key: its words), default and reloading. */
static void describe_row(FILE *out, const char *prefix, const opt_def *o)
{
	char type[256];
	const char *def = o->def ? o->def : "(required)";

	if (o->choices)
		choices_text(o->choices, false, type, sizeof(type));
	else
		snprintf(type, sizeof(type), "%s", type_names[o->type]);
	if (prefix[0] && !def[0])
		def = "\"\"";
	fprintf(out, "| `%s%s` | %s | %s | %s | %s |\n", prefix, o->path, type, def,
		o->flags & OPT_RELOAD ? "SIGHUP" : "restart", o->doc);
}

void config_describe(FILE *out)
{
	fprintf(out, "| key | type | default | changes by | meaning |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < N_OPTS; i++)
		describe_row(out, "", &opts[i]);
	for (size_t i = 0; i < N_SOURCE_OPTS; i++)
		describe_row(out, "sources[].", &source_opts[i]);
	for (size_t i = 0; i < N_CAPTURE_OPTS; i++)
		describe_row(out, "capture[].", &capture_opts[i]);
	for (size_t i = 0; i < N_PROTECT_OPTS; i++)
		describe_row(out, "protect[].", &protect_opts[i]);
	fprintf(out, "| `kafka.*` | any | | restart | librdkafka properties, `_` written for `.` "
		     "(`bootstrap_servers` is `bootstrap.servers`); `bootstrap_servers` is required |\n");
}

/* True when a key of the opts table holds the same value in both. */
/* True when two list fields (a char ** followed by its count) hold the same words. */
static bool same_list(const void *fa, const void *fb)
{
	int na = *(const int *)((const char *)fa + sizeof(char **));
	int nb = *(const int *)((const char *)fb + sizeof(char **));

	if (na != nb)
		return false;
	for (int j = 0; j < na; j++)
		if (strcmp((*(char **const *)fa)[j], (*(char **const *)fb)[j]) != 0)
			return false;
	return true;
}

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
	case OPT_STRING_LIST:
		return same_list(fa, fb);
	}
	return true;
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
		if (o->type == OPT_STRING_LIST && !same_list(fa, fb))
			return false;
	}
	return true;
}

/* True when sources, captures and kafka settings are the same (they need a restart to change). */
static bool same_sources_and_kafka(const relay_config *a, const relay_config *b)
{
	if (a->n_sources != b->n_sources || a->n_kafka != b->n_kafka ||
	    a->n_captures != b->n_captures || a->n_protects != b->n_protects)
		return false;
	for (int i = 0; i < a->n_protects; i++)
		if (!same_entry(&protect_list, &a->protects[i], &b->protects[i]))
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

/* A list key of fresh copied over running's. */
static void copy_list(relay_config *running, const relay_config *fresh, const opt_def *o)
{
	const char *nf = (const char *)fresh + o->offset;
	char **from = *(char **const *)nf;
	int n = *(const int *)(nf + sizeof(char **));
	char ***list = (char ***)field(running, o);

	free_opts_one(running, o);
	*list = xcalloc((size_t)n + 1, sizeof(char *));
	for (int k = 0; k < n; k++)
		(*list)[k] = xstrdup(from[k]);
	*(int *)((char *)list + sizeof(char **)) = n;
}

void config_reload(relay_config *running, const relay_config *fresh)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		const opt_def *o = &opts[i];
		if (same_value(running, fresh, o))
			continue;
		if (!(o->flags & OPT_RELOAD)) {
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
		} else if (o->type == OPT_STRING_LIST) {
			copy_list(running, fresh, o);
		}
		log_info("reload: %s changed", o->path);
	}
	if (!same_sources_and_kafka(running, fresh))
		log_warn("reload: sources, capture, protect or kafka settings changed, which needs a restart; keeping the "
			 "running ones");
}

/*
 * Reads all of fd into a buffer that never leaves a copy behind: read(2), no stdio buffer, and
 * a buffer that grows is copied and the old one wiped before it is freed. NULL on a read error.
 */
static char *read_secret(int fd, size_t *len)
{
	size_t cap = 256;
	char *buf = xmalloc(cap);
	ssize_t n;

	*len = 0;
	while ((n = read(fd, buf + *len, cap - *len - 1)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			explicit_bzero(buf, cap);
			free(buf);
			return NULL;
		}
		*len += (size_t)n;
		if (cap - *len < 2) {
			char *bigger = xmalloc(cap * 2);
			memcpy(bigger, buf, *len);
			explicit_bzero(buf, cap);
			free(buf);
			buf = bigger;
			cap *= 2;
		}
	}
	buf[*len] = '\0';
	return buf;
}

char *config_read_credential(const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	size_t len;
	int fd;
	char *text;

	if (!dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	text = read_secret(fd, &len);
	close(fd);
	while (text && len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

void config_load_credentials(relay_config *cfg)
{
	char *kafka_pw = config_read_credential("kafka-sasl-password");

	cfg->pg_password = config_read_credential("pgpassword");
	cfg->registry_password = config_read_credential("schema-registry-password");
	cfg->registry_key_password = config_read_credential(CONFIG_TLS_KEY_CREDENTIAL);
	if (kafka_pw) {
		cfg->kafka = xrealloc(cfg->kafka, sizeof(kafka_property) * (size_t)(cfg->n_kafka + 1));
		kafka_property *p = &cfg->kafka[cfg->n_kafka++];
		p->name = xstrdup("sasl.password");
		p->value = kafka_pw;
		p->line = 0;
	}
}
