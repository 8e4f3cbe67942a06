/* snapshot_names.h: the message prefix of snapshot watermarks and requests, for code that cannot include snapshot.h (jansson's JSON_* names clash). */
#ifndef RELAY_SNAPSHOT_NAMES_H
#define RELAY_SNAPSHOT_NAMES_H

#include "strbuf.h"

/*
 * Appends to out the pg_logical_emit_message prefix of the relay on slot: "outbox-relay:<slot>".
 * The relay's watermarks and `outbox-relay snapshot` requests carry it; the relay reads only
 * messages with it (add-msg-prefixes).
 */
void snapshot_prefix_build(const char *slot, strbuf *out);

#endif
