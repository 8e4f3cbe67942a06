/* config_check.h: checks of single configuration values (patterns, templates, addresses) that the key table runs. */
#ifndef RELAY_CONFIG_CHECK_H
#define RELAY_CONFIG_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Each check takes the key's name as messages give it ("sources[1].topic") and its value; it
 * returns 0, or -1 after writing the whole message (without "FILE:LINE: ") to msg.
 */

/* sources[].table: "" (a message source) or schema.table with both parts non-empty. */
int config_check_source_table(const char *name, const char *value, char *msg, size_t len);
/* sources[].topic: a template of ${column}, ${schema}, ${table}, ${prefix} (template.h). */
int config_check_outbox_topic(const char *name, const char *value, char *msg, size_t len);
/* A key naming a column (sources[].key, sources[].value): not empty. */
int config_check_column(const char *name, const char *value, char *msg, size_t len);
/* capture[].tables: schema.table where either part is a name or "*". */
int config_check_capture_tables(const char *name, const char *value, char *msg, size_t len);
/* capture[].topic: a template of ${prefix}, ${schema}, ${table} only. */
int config_check_capture_topic(const char *name, const char *value, char *msg, size_t len);
/* relay.metrics_listen: "" or an address metrics_parse_listen accepts. */
int config_check_metrics_listen(const char *name, const char *value, char *msg, size_t len);

/* postgresql.slot: 1 to 63 of a-z 0-9 _ (PostgreSQL's rule for replication slot names). */
int config_check_slot_name(const char *name, const char *value, char *msg, size_t len);

/* protection.key_id: 1 to 32 of A-Z a-z 0-9 . _ - (it is written into encrypted values). */
int config_check_key_id(const char *name, const char *value, char *msg, size_t len);

/* True when one part of a capture pattern (plen bytes: a name or "*") takes name. */
bool config_pattern_part_matches(const char *pat, size_t plen, const char *name);

#endif
