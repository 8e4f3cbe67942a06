/* w2j_filter.h: wal2json's add-tables and add-msg-prefixes lists, built whole from the configuration. */
#ifndef RELAY_W2J_FILTER_H
#define RELAY_W2J_FILTER_H

#include <stdbool.h>

#include "config.h"
#include "strbuf.h"

/*
 * Appends "schema.table" (split at its first dot, as the configuration reads it) to a wal2json
 * 2.5 add-tables list, comma-separated. wal2json splits the list at commas and white space and
 * the name at its dot, and drops a backslash before any character, so each part is written with
 * a backslash before , . \ * and white space. With pattern, a part that is exactly "*" stays
 * a bare * (all schemas or all tables); without, it is a table named "*". Without a dot the
 * whole text is the table name of an empty schema (the configuration refuses that).
 */
void w2j_filter_add_table(strbuf *list, const char *name, bool pattern);

/*
 * The add-tables list (outbox tables and capture patterns) and the add-msg-prefixes list
 * (message sources, then snapshot_prefix unless NULL) of a relay, appended whole to tables
 * and prefixes; an empty tables list means no table at all (pg_stream_start then filters every
 * table). Message prefixes are written as they are: wal2json keeps a backslash in a prefix,
 * so a prefix holding a comma or white space cannot be named to it.
 */
void w2j_filter_lists(const relay_config *cfg, const char *snapshot_prefix, strbuf *tables,
		      strbuf *prefixes);

#endif
