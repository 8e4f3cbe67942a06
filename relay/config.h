/* config.h: the relay's settings, loaded from a libconfig file through one table of keys. */
#ifndef RELAY_CONFIG_H
#define RELAY_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

/* One librdkafka property, passed through as it is; line is where the config file set it. */
typedef struct {
	char *name;
	char *value;
	int line;
} kafka_property;

/*
 * Where events come from and how each becomes a Kafka record: an outbox table (table) or the
 * messages of pg_logical_emit_message with a prefix (message_prefix). Field names (key, value,
 * ...) name a column of the table, or a member of the message's JSON envelope.
 */
typedef struct {
	char *table;          /* "schema.table", or "" */
	char *message_prefix; /* or "" */
	char *topic;          /* template: ${column} placeholders, plus ${schema} ${table} ${prefix} */
	char *key;
	char *value;
	char *event_id;
	char *event_type;
	char *schema_version; /* the column (envelope member) giving the schema_version header, or "" */
	char *timestamp;      /* a column, "commit" (the commit time) or "" (produce time) */
	char *headers_column; /* a JSON object of headers, or "" */
	char **headers;       /* columns copied to headers under their own names */
	int n_headers;
	bool tombstones;      /* a null or empty value becomes a tombstone */
	bool cloudevents;     /* add CloudEvents binary-mode headers (ce_*) */
	char *ce_source;      /* ce_source; "" : /outbox-relay/<schema>.<table> or <prefix> */
	char *format;         /* "json" (the value as built) or "avro" (docs/schemas.md) */
	bool contract;        /* json: check the value against its event type's schema file */
	char *key_format;     /* "string" (the key column's text) or "avro" (an Avro string) */
	int line;             /* where the file defines it (1 for the default source) */
} source_config;

/*
 * Change capture of existing tables (docs/change-capture.md): every insert, update, delete and
 * truncate of the tables matching a pattern becomes a record with an envelope, and existing rows
 * are published by snapshots.
 */
typedef struct {
	char *tables;          /* "schema.table"; either part may be "*" (all) */
	char *topic;           /* template: ${prefix} ${schema} ${table} */
	char **key_columns;    /* empty: the primary key, else the replica identity index */
	int n_key_columns;
	char **include_columns; /* empty: all */
	int n_include_columns;
	char **exclude_columns;
	int n_exclude_columns;
	bool unkeyed;          /* a table without a key is published with null keys (else refused) */
	bool tombstones;       /* a delete is followed by a null-value record */
	bool snapshot;         /* publish the existing rows when the table is first captured */
	char *format;          /* "json" (the envelope) or "avro" (derived schema: docs/schemas.md) */
	char *key_format;      /* "string" (the key columns as a JSON object) or "avro" (a record) */
	int line;
} capture_config;

/*
 * A field protection rule (docs/privacy.md): the fields (JSON paths of outbox payloads, for
 * the event types matching event_types) and the columns (of the captured tables matching
 * tables: in after, before and the key) it protects, and how (action).
 */
typedef struct {
	char **fields;       /* JSON paths, "/a/b" (RFC 6901; "*" is every member or element) */
	int n_fields;
	char **event_types;  /* glob patterns of outbox event types ("*": all) */
	int n_event_types;
	char **columns;      /* captured column names */
	int n_columns;
	char **tables;       /* glob patterns of "schema.table" ("*.*": all) */
	int n_tables;
	char *action;        /* "drop", "mask", "hash" or "encrypt" */
	int keep_last;       /* mask: characters kept at the end */
	int line;
} protect_config;

typedef struct {
	char *path; /* the file it was read from */

	/* postgresql */
	char *pg_conninfo;
	char *slot;
	bool create_slot;
	char *adopt_slot; /* "no", "recreate" or "as-is" */
	int status_interval_ms;
	char **wait_for_standbys; /* application_name of standbys that must flush a commit first */
	int n_wait_for_standbys;  /* (its count: follows the list) */
	int wait_for_standbys_count; /* how many of them */

	/* sources */
	source_config *sources;
	int n_sources;

	/* capture */
	capture_config *captures;
	int n_captures;
	char *topic_prefix;      /* ${prefix} of capture topics */
	int snapshot_chunk_rows; /* rows per snapshot chunk */

	/* relay */
	char *delivery; /* "exactly-once" or "at-least-once" */
	bool exactly_once;
	char *checkpoint_topic;
	char *dead_letter_topic;
	char *first_start;          /* "backfill" or "from-now" */
	char *slot_loss;            /* "recover", "recover-rows" or "stop" */
	int recovery_window_ms;     /* commit-time disorder the slot-loss recovery allows for */
	char *capture_on_slot_loss; /* "stop" or "resnapshot" */
	char *takeover;   /* "fence" or "wait": what a second relay on the slot does */
	bool takeover_wait; /* "wait": active/passive; stand by while another relay holds the slot */
	char *on_error; /* "dead-letter" or "stop" */
	bool dead_letter;
	bool auto_create_topics;
	int topic_partitions;
	int topic_replication_factor;
	int transaction_max_records;
	int transaction_max_ms;
	int transaction_gather_ms; /* exactly-once: gather rows this long at low rates (commit_policy.h) */
	bool transaction_headers; /* pg_xid, pg_commit_lsn, pg_txn_index on each record */
	char *transaction_topic;  /* BEGIN and END records of PostgreSQL transactions; "": none */
	char *log_level;
	char *log_format;
	int lag_warn_mb;
	int max_in_flight_bytes; /* backpressure: stop reading at this many bytes in librdkafka */
	int shutdown_timeout_ms;
	int reconnect_max_backoff_ms;
	char *metrics_listen; /* "" (off) or host:port of the metrics server */

	/* schema_registry: Avro sources (docs/schemas.md) */
	char *registry_url;     /* Confluent REST API base, "" when no source is Avro */
	char *registry_user;    /* basic auth user, "" for none */
	char *registry_ca_file; /* CA bundle for https, "" for the system's */
	char *registry_cert_file; /* client certificate (PEM) for mutual TLS, "" for none */
	char *registry_key_file;  /* its private key (PEM), "" exactly when cert_file is */
	int registry_timeout_ms;
	bool registry_auto_register; /* register new schemas; false: use what is registered */
	char *registry_subject_strategy; /* TopicNameStrategy, RecordNameStrategy, TopicRecordNameStrategy */
	char *schema_dir;       /* <event_type>.avsc files */
	char *contract_prefix;  /* or the registry's subjects <prefix><event_type>; "": the files */
	int schema_dir_line;    /* where the file sets schema_dir (1: not set), for errors */
	int subject_strategy_line; /* the same for subject_strategy */
	bool any_avro;          /* some source has format = "avro" */
	bool any_contract;      /* some json source has contract = true */
	bool capture_avro;      /* some capture entry has format = "avro" */

	/* protect: field protection rules (docs/privacy.md); keys come from credentials */
	protect_config *protects;
	int n_protects;
	char *protect_key_id; /* protection.key_id: names the encryption key in encrypted values */

	/* secrets from systemd credentials ($CREDENTIALS_DIRECTORY), never from the file */
	char *pg_password; /* NULL: libpq's own ways (~/.pgpass, PGPASSWORD) */
	char *registry_password; /* NULL: none (credential schema-registry-password) */
	char *registry_key_password; /* NULL: none (credential schema-registry-key-password) */

	/* kafka: librdkafka properties */
	kafka_property *kafka;
	int n_kafka;
} relay_config;

/*
 * Loads and validates a file. On error returns NULL and writes one message per problem,
 * each starting with "FILE:LINE: ", to err (a FILE such as stderr).
 */
relay_config *config_load(const char *path, FILE *err);
void config_free(relay_config *cfg);
/*
 * A configuration holding every key's default, with n_sources sources and n_captures capture
 * entries holding the defaults of sources[] and capture[] keys (tables "", line 1), required keys
 * empty and no kafka settings: for code that builds one without a file (fuzz targets, tests).
 * Change its strings and lists with the two functions below; config_free frees it.
 */
relay_config *config_defaults(int n_sources, int n_captures);
/*
 * Appends a protect rule holding the defaults of protect[] keys (action "", line 1) to cfg: for
 * code that builds a configuration without a file. Set its keys like the others.
 */
protect_config *config_add_protect(relay_config *cfg);
/* Replaces a string of a configuration with a copy of value. */
void config_set_string(char **field, const char *value);
/* Replaces a list of a configuration with the comma-separated words of text. */
void config_set_list(char ***list, int *n, const char *text);
/*
 * Reads secrets from systemd credentials: pgpassword (the PostgreSQL password),
 * kafka-sasl-password (librdkafka's sasl.password), schema-registry-password (the schema
 * registry's basic auth password) and schema-registry-key-password (the passphrase of
 * schema_registry.key_file). Absent files are fine.
 */
void config_load_credentials(relay_config *cfg);
/*
 * Applies a freshly loaded file to the running configuration: the keys marked reloadable change,
 * every other key that differs is logged as needing a restart and keeps its running value.
 */
void config_reload(relay_config *running, const relay_config *fresh);
/*
 * The content of the systemd credential name ($CREDENTIALS_DIRECTORY/name) without its trailing
 * newline, malloc'd; NULL when absent (the field protection keys: transform.c reads them).
 */
char *config_read_credential(const char *name);
/* Prints every key with its type, default and meaning (the source of the docs' key table). */
void config_describe(FILE *out);
/* The first entry of the capture list whose pattern takes schema.table, or NULL. */
const capture_config *config_capture_for(const relay_config *cfg, const char *schema,
					 const char *table);
/* Finds a kafka property by its librdkafka name; NULL when the file does not set it. */
const char *config_kafka_get(const relay_config *cfg, const char *name);

#endif
